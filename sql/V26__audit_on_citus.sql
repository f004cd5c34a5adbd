-- The audit log's functions made ready for Citus, with nothing changed on plain PostgreSQL
-- (docs/citus.md, "The audit log on Citus"; the Citus-only parts are in src/migrate/citus.rs).
--
-- * `audit_row_change` names the row's tenant as a variable in its webhook probe instead of
--   calling `current_tenant()` in the query. The same rows on PostgreSQL (under RLS the two are
--   equal); on Citus the trigger runs on the worker holding the row's shard, and only a value
--   known when the probe is planned lets Citus route it to that same shard — with the call,
--   the probe fans out to every shard, which Citus refuses inside a trigger on a shard
--   ("cannot execute a distributed query from a query on a shard").
-- * `audit_seal` takes its horizon from `audit_seal_horizon()` instead of computing it: on
--   PostgreSQL exactly the same expression; on Citus a variant (created by `rowguard migrate`)
--   that speaks the seal keys events carry there and refuses to run anywhere but on the node
--   holding the tenant's shard.
-- * `audit_seal` passes the event to `audit_leaf` as `ROW(e.*)::audit_events` instead of `e`:
--   the same value; on Citus the query runs on the worker against the shard, whose row type is
--   the shard's (`audit_events_102008`), and `audit_leaf(audit_events_102008)` does not exist.
-- * `audit_seal` stamps `sealed_at` from a variable set by `clock_timestamp()` just before its
--   UPDATE instead of calling it in the UPDATE: the same time; Citus refuses a volatile
--   function in an UPDATE of a distributed table.
-- * `audit_seal_tenant` and `audit_record_head_tenant`: `audit_seal` and `audit_record_head`
--   for the tenant named by their first argument. On Citus they are distributed functions
--   keyed by that argument, so a call is run by the worker holding the tenant's shard, where
--   the events' transaction ids and the horizon come from the same node. The service's
--   sealer calls them on Citus only; on PostgreSQL it keeps sealing many tenants per call
--   (`audit_seal_many`). `audit_retention_purge_tenant` likewise for retention.

CREATE OR REPLACE FUNCTION audit_row_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    resource    text := TG_ARGV[0];
    old_row     jsonb := CASE WHEN TG_OP IN ('UPDATE', 'DELETE') THEN audit_redact(to_jsonb(OLD)) END;
    new_row     jsonb := CASE WHEN TG_OP IN ('INSERT', 'UPDATE') THEN audit_redact(to_jsonb(NEW)) END;
    action      text;
    details     jsonb;
    resource_id text;
    tenant      uuid := current_tenant();
BEGIN
    -- Purging a deleted tenant removes its log too (see `purge`), and an imported tenant
    -- brings its own log (see `audit_import`): nothing to record for either — when, and only
    -- when, the platform role is the one doing it. Nor anything to send.
    IF current_setting('app.audit_purge', true) = 'on' OR current_setting('app.audit_import', true) = 'on' THEN
        IF pg_has_role(current_user, 'rowguard_platform', 'MEMBER') THEN
            RETURN NULL;
        END IF;
    END IF;
    IF TG_OP = 'INSERT' THEN
        action := resource || '.create';
        details := jsonb_build_object('after', new_row - 'tenant_id');
    ELSIF TG_OP = 'DELETE' THEN
        action := resource || '.delete';
        details := jsonb_build_object('before', old_row - 'tenant_id');
    ELSE
        SELECT jsonb_build_object(
                   'before', coalesce(jsonb_object_agg(n.key, o.value), '{}'),
                   'after', coalesce(jsonb_object_agg(n.key, n.value), '{}'))
          INTO details
          FROM jsonb_each(new_row) n JOIN jsonb_each(old_row) o USING (key)
         WHERE n.value IS DISTINCT FROM o.value AND n.key NOT IN ('updated_at');
        action := CASE
            WHEN resource = 'user' AND details -> 'after' ? 'role' THEN 'user.role_change'
            WHEN resource = 'user' AND details -> 'after' ->> 'status' = 'deactivated' THEN 'user.deactivate'
            ELSE resource || '.update' END;
    END IF;
    IF TG_NARGS > 1 THEN
        FOR i IN 1 .. TG_NARGS - 1 LOOP
            resource_id := concat_ws('/', resource_id, coalesce(new_row, old_row) ->> TG_ARGV[i]);
        END LOOP;
    ELSE
        resource_id := coalesce(new_row, old_row) ->> 'id';
    END IF;
    PERFORM audit_append(action, resource, resource_id, 'success', details);
    IF resource <> 'webhook' AND EXISTS (SELECT FROM webhooks w WHERE w.tenant_id = tenant AND w.enabled) THEN
        PERFORM outbox_emit(action, resource, resource_id, details);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION audit_seal_horizon() RETURNS xid8
    LANGUAGE sql STABLE
    AS $$ SELECT pg_snapshot_xmin(pg_current_snapshot()) $$;

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
    sealed_now timestamptz;
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
    horizon := audit_seal_horizon();
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
               CASE WHEN e.prev_hash IS NULL THEN e.hash
                    ELSE sha256('\x00'::bytea || audit_leaf(ROW(e.*)::audit_events)) END AS h
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
        sealed_now := clock_timestamp();
        UPDATE audit_tree_state s
           SET size = n, frontier = st.frontier, root = h, last_xid = st.last_xid, last_seq = st.last_seq,
               sealed_at = sealed_now
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

-- Seal the tenant `p_tenant` (the tenant setting is switched to it, transaction-locally, and
-- cleared again, as `audit_seal_many` does). `signed_size`: the size of its newest signed
-- head. A tree that grew is left queued in `audit_unsealed` under this transaction's id until
-- a later pass finds its head recorded: sealing and recording the head are two transactions
-- when this runs alone (on Citus), and a sealer stopped between them must not leave a tree
-- that nobody signs.
CREATE FUNCTION audit_seal_tenant(p_tenant uuid, p_max integer,
                                  OUT size bigint, OUT root bytea, OUT sealed integer, OUT signed_size bigint)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
    AS $$
DECLARE
    r      record;
    caller text := current_setting('app.tenant_id', true);
BEGIN
    PERFORM set_config('app.tenant_id', p_tenant::text, true);
    SELECT * INTO r FROM audit_seal(p_max);
    size := r.size;
    root := r.root;
    sealed := r.sealed;
    SELECT coalesce(max(h.size), 0) INTO signed_size FROM audit_tree_heads h WHERE h.tenant_id = p_tenant;
    IF sealed >= 0 AND size > signed_size THEN
        INSERT INTO audit_unsealed (tenant_id, xid) VALUES (p_tenant, pg_current_xact_id()) ON CONFLICT DO NOTHING;
    END IF;
    PERFORM set_config('app.tenant_id', coalesce(caller, ''), true);
END $$;

-- Keep a signed head of `p_tenant`'s tree, as `audit_record_head`.
CREATE FUNCTION audit_record_head_tenant(p_tenant uuid, p_size bigint, p_note text) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
    AS $$
DECLARE
    kept   boolean;
    caller text := current_setting('app.tenant_id', true);
BEGIN
    PERFORM set_config('app.tenant_id', p_tenant::text, true);
    kept := audit_record_head(p_size, p_note);
    PERFORM set_config('app.tenant_id', coalesce(caller, ''), true);
    RETURN kept;
END $$;

-- Retention for the tenant `p_tenant`, as `audit_retention_purge` (the platform role's). On
-- Citus it is delegated like the sealer: it takes the sealer's lock, which is the lock of the
-- node holding the tenant's shard there, and appends its mark after deleting as the platform
-- role — from the coordinator Citus would refuse that append, made as the audit role on
-- placements this transaction changed as another role.
CREATE FUNCTION audit_retention_purge_tenant(p_tenant uuid, p_before timestamptz) RETURNS bigint
    LANGUAGE plpgsql
    AS $$
DECLARE
    purged bigint;
    caller text := current_setting('app.tenant_id', true);
BEGIN
    PERFORM set_config('app.tenant_id', p_tenant::text, true);
    purged := audit_retention_purge(p_before);
    PERFORM set_config('app.tenant_id', coalesce(caller, ''), true);
    RETURN purged;
END $$;
REVOKE EXECUTE ON FUNCTION audit_retention_purge_tenant(uuid, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_retention_purge_tenant(uuid, timestamptz) TO rowguard_platform;

GRANT USAGE, CREATE ON SCHEMA public TO rowguard_audit;
ALTER FUNCTION audit_seal_tenant(uuid, integer) OWNER TO rowguard_audit;
ALTER FUNCTION audit_record_head_tenant(uuid, bigint, text) OWNER TO rowguard_audit;
REVOKE CREATE ON SCHEMA public FROM rowguard_audit;
REVOKE EXECUTE ON FUNCTION audit_seal_tenant(uuid, integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION audit_record_head_tenant(uuid, bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_seal_tenant(uuid, integer), audit_record_head_tenant(uuid, bigint, text)
    TO rowguard_app;
