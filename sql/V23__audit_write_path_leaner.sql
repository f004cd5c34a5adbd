-- Less work per audited write, and a sealer that takes the leaf the writer computed.
--
-- * `audit_redact` looks at the row's JSON text first: when no key can match (the words are
--   letters, which JSON's text form never escapes, so a key containing one shows it there),
--   the row goes through as it is, without the query over its keys. Most rows of most tables
--   take that path; a row whose text mentions a word anywhere (a users row has
--   `password_hash`) still has exactly the matching keys removed.
-- * `audit_canonical` as one expression (concat_ws skips a NULL field as string_agg did; no
--   field is NULL) instead of a loop: PL/pgSQL sets up each expression once per transaction,
--   and this runs in every audited transaction. Same bytes.
-- * `audit_seal` seals an event under the leaf hash `audit_link` stored with it when it was
--   written, instead of computing it a second time. The tree therefore holds what the event
--   was at commit: an event changed by hand before the sealer reaches it no longer gets
--   sealed as changed — `audit verify` recomputes every leaf from its event and names it.
--   Events from the hash chain before V21 store a chain hash, so theirs is still computed.

CREATE OR REPLACE FUNCTION audit_redact(j jsonb) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF j IS NOT NULL AND j::text !~* '(hash|secret|token|password)' THEN
        RETURN j;
    END IF;
    RETURN coalesce(j - ARRAY(SELECT k FROM jsonb_object_keys(j) AS k WHERE k ~* '(hash|secret|token|password)'), '{}');
END $$;

CREATE OR REPLACE FUNCTION audit_canonical(e audit_events) RETURNS bytea
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN convert_to(concat_ws('|',
        octet_length(e.tenant_id::text) || ':' || e.tenant_id::text,
        octet_length(e.seq::text) || ':' || e.seq::text,
        octet_length(e.id::text) || ':' || e.id::text,
        octet_length((extract(epoch FROM e.occurred_at) * 1000000)::bigint::text) || ':'
            || (extract(epoch FROM e.occurred_at) * 1000000)::bigint::text,
        octet_length(e.actor_type) || ':' || e.actor_type,
        octet_length(coalesce(e.actor_id::text, '')) || ':' || coalesce(e.actor_id::text, ''),
        octet_length(coalesce(e.actor_role, '')) || ':' || coalesce(e.actor_role, ''),
        octet_length(coalesce(host(e.client_ip), '')) || ':' || coalesce(host(e.client_ip), ''),
        octet_length(coalesce(e.user_agent, '')) || ':' || coalesce(e.user_agent, ''),
        octet_length(coalesce(e.request_id, '')) || ':' || coalesce(e.request_id, ''),
        octet_length(e.action) || ':' || e.action,
        octet_length(coalesce(e.resource_type, '')) || ':' || coalesce(e.resource_type, ''),
        octet_length(coalesce(e.resource_id, '')) || ':' || coalesce(e.resource_id, ''),
        octet_length(e.outcome) || ':' || e.outcome,
        octet_length(e.details::text) || ':' || e.details::text), 'UTF8');
END $$;

CREATE OR REPLACE FUNCTION audit_seal(p_max integer, OUT size bigint, OUT root bytea, OUT sealed integer)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
    AS $$
DECLARE
    t        uuid := current_tenant();
    horizon  xid8;
    st       audit_tree_state;
    ev       record;
    h        bytea;
    n        bigint;
    lvl      smallint;
    levels   smallint[] := '{}';
    indexes  bigint[] := '{}';
    hashes   bytea[] := '{}';
    leaf_seqs bigint[] := '{}';
    i        bigint;
    k        integer;
BEGIN
    IF t IS NULL THEN
        RAISE EXCEPTION 'audit: no tenant is set for this transaction';
    END IF;
    sealed := 0;
    -- The purge of a deleted tenant takes this lock too (src/platform/purge.rs).
    IF NOT pg_try_advisory_xact_lock(hashtextextended('rowguard.audit.seal/' || t::text, 0)) THEN
        sealed := -1;
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT FROM tenants WHERE id = t AND status <> 'deleted') THEN
        -- A deleted tenant: its log goes with it; forget that it had work.
        DELETE FROM audit_unsealed u WHERE u.tenant_id = t;
        size := 0;
        root := sha256('');
        RETURN;
    END IF;
    horizon := pg_snapshot_xmin(pg_current_snapshot());
    INSERT INTO audit_tree_state (tenant_id) VALUES (t) ON CONFLICT (tenant_id) DO NOTHING;
    SELECT * INTO st FROM audit_tree_state s WHERE s.tenant_id = t FOR UPDATE;
    n := st.size;
    -- Nodes and leaves are gathered in arrays and written with one INSERT each at the end:
    -- a row-by-row INSERT in this loop cost the sealer more than the writers it follows.
    FOR ev IN
        -- An event appended since V21 carries its leaf hash, taken when it was written; one
        -- from the hash chain before it (prev_hash set) carries a chain hash, so its leaf is
        -- computed here.
        SELECT e.xid, e.seq,
               CASE WHEN e.prev_hash IS NULL THEN e.hash ELSE sha256('\x00'::bytea || audit_leaf(e)) END AS h
          FROM audit_events e
         WHERE e.tenant_id = t AND e.xid < horizon AND (e.xid, e.seq) > (st.last_xid, st.last_seq)
         ORDER BY e.xid, e.seq
         LIMIT p_max
    LOOP
        h := ev.h;
        levels := levels || 0::smallint;
        indexes := indexes || n;
        hashes := hashes || h;
        leaf_seqs := leaf_seqs || ev.seq;
        -- Each trailing 1 bit of n closes a complete subtree: merge it with the frontier's last.
        lvl := 0;
        i := n;
        WHILE i % 2 = 1 LOOP
            k := cardinality(st.frontier);
            h := sha256('\x01'::bytea || st.frontier[k] || h);
            st.frontier := st.frontier[1:k - 1];
            lvl := lvl + 1;
            i := i / 2;
            levels := levels || lvl;
            indexes := indexes || i;
            hashes := hashes || h;
        END LOOP;
        st.frontier := st.frontier || h;
        n := n + 1;
        sealed := sealed + 1;
        st.last_xid := ev.xid;
        st.last_seq := ev.seq;
    END LOOP;
    IF sealed > 0 THEN
        INSERT INTO audit_tree_nodes (tenant_id, level, idx, hash)
            SELECT t, u.level, u.idx, u.hash FROM unnest(levels, indexes, hashes) AS u(level, idx, hash);
        INSERT INTO audit_tree_leaves (tenant_id, leaf_index, seq)
            SELECT t, st.size + u.o - 1, u.seq FROM unnest(leaf_seqs) WITH ORDINALITY AS u(seq, o);
    END IF;
    IF sealed > 0 THEN
        -- The root: the frontier folded from the right (RFC 9162's split at the largest power
        -- of two below n, applied recursively, is exactly this).
        k := cardinality(st.frontier);
        h := st.frontier[k];
        FOR j IN REVERSE k - 1 .. 1 LOOP
            h := sha256('\x01'::bytea || st.frontier[j] || h);
        END LOOP;
        UPDATE audit_tree_state s
           SET size = n, frontier = st.frontier, root = h, last_xid = st.last_xid, last_seq = st.last_seq,
               sealed_at = clock_timestamp()
         WHERE s.tenant_id = t;
        st.root := h;
    END IF;
    IF sealed < p_max THEN
        -- Everything below the horizon is sealed: this tenant's finished transactions are done.
        DELETE FROM audit_unsealed u WHERE u.tenant_id = t AND u.xid < horizon;
    END IF;
    size := n;
    root := st.root;
END $$;
