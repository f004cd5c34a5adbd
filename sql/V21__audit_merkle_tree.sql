-- The audit log as a Merkle tree per tenant (RFC 9162 §2.1), sealed after commit.
--
-- Events are still appended by `audit_link`, in the transaction of their change (invariant 6).
-- Their place in the tenant's tree is given afterwards by a sealer (`audit_seal`, called by the
-- service in the background), which takes the committed, not yet sealed events in a fixed
-- order and appends their leaf hashes to the tree:
--
-- * Order: (xid, seq), where xid is the appending transaction's id (`pg_current_xact_id()`,
--   the top-level transaction even inside a savepoint). Events written before this migration
--   carry xid 0 and keep their chain order (seq).
-- * Horizon: the sealer takes only events whose xid is below the oldest transaction still in
--   progress (`pg_snapshot_xmin(pg_current_snapshot())`). Every such transaction has ended, so
--   its events are all visible or were rolled back; every transaction that has not ended — or
--   has no xid yet — has or will get an xid at or above the horizon. So an event that becomes
--   visible later always sorts after everything already sealed: nothing is skipped, and the
--   order never changes once given. Sequence order alone is not commit order (a transaction
--   may take seq 10, commit after the one holding seq 11), which is why seq is not the key.
-- * A long-running writing transaction anywhere on the server (any database of the cluster:
--   the horizon is the cluster's) holds the horizon back for every tenant: the
--   sealer then waits (the backlog metric and a warning show it), and catches up when it ends.
--
-- The tree's storage makes every proof O(log n): `audit_tree_nodes` keeps the root of every
-- complete subtree, (level, index) = leaves [index·2^level, (index+1)·2^level), level 0 being
-- the leaf hashes; `audit_tree_state` keeps the frontier (the complete subtrees the tree is
-- made of, largest first), so an append reads no node back. `audit_tree_leaves` maps a leaf to
-- its event. `audit_tree_heads` keeps the signed tree heads (C2SP checkpoint notes).
--
-- Leaf bytes, version 2: the event's canonical encoding (`audit_canonical`, every field as
-- `len:value`, joined by `|`) preceded by the field `16:rowguard.audit/2|`. Leaf hash =
-- SHA-256(0x00 ‖ leaf bytes); interior node = SHA-256(0x01 ‖ left ‖ right).
--
-- Finding the tenants with work crosses tenants, which RLS forbids the sealer's tenant
-- transactions: `audit_unsealed` (tenant, xid) is a platform table of ids only — one row per
-- appending transaction, written by `audit_link` (ON CONFLICT DO NOTHING: a transaction only
-- ever meets its own row, so writers never wait for each other), read and cleared only by the
-- definer functions below. It carries no event data. (On Citus it is planned as a reference
-- table like the other platform tables, and sealing there is untried: transaction ids are
-- per node. Issue 15.)

ALTER TABLE audit_events ADD COLUMN xid xid8 NOT NULL DEFAULT '0';
ALTER TABLE audit_events ALTER COLUMN xid SET DEFAULT pg_current_xact_id();
CREATE INDEX audit_events_seal_order ON audit_events (tenant_id, xid, seq);

CREATE TABLE audit_tree_nodes (
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    level      smallint NOT NULL CHECK (level BETWEEN 0 AND 63),
    idx        bigint NOT NULL CHECK (idx >= 0),
    hash       bytea NOT NULL CHECK (octet_length(hash) = 32),
    PRIMARY KEY (tenant_id, level, idx)
);

CREATE TABLE audit_tree_leaves (
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    leaf_index  bigint NOT NULL CHECK (leaf_index >= 0),
    seq         bigint NOT NULL,
    -- When the sealer took it: freshness (commit to sealed) is measured from this.
    sealed_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant_id, leaf_index),
    UNIQUE (tenant_id, seq)
);

CREATE TABLE audit_tree_state (
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    size       bigint NOT NULL DEFAULT 0,
    -- Roots of the complete subtrees the tree is made of, largest (leftmost) first: one per
    -- set bit of `size`.
    frontier   bytea[] NOT NULL DEFAULT '{}',
    root       bytea NOT NULL DEFAULT sha256(''),
    -- The last sealed event, in seal order.
    last_xid   xid8 NOT NULL DEFAULT '0',
    last_seq   bigint NOT NULL DEFAULT 0,
    sealed_at  timestamptz,
    PRIMARY KEY (tenant_id)
);

CREATE TABLE audit_tree_heads (
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    size       bigint NOT NULL CHECK (size >= 0),
    root       bytea NOT NULL,
    signed_at  timestamptz NOT NULL,
    -- The signed note: `<origin>\n<size>\n<base64 root>\n\n— <key name> <base64 signature>\n`.
    note       text NOT NULL,
    PRIMARY KEY (tenant_id, size)
);

-- Not a tenant-owned table, so no RLS (DESIGN.md, Platform tables): it holds which tenants
-- have events waiting and nothing of theirs — tenant and transaction ids and a time. The
-- sealer must read it across tenants, which a policy on current_tenant() would forbid. It is
-- named in PLATFORM_TABLES (src/roles.rs), so `policies verify` accepts it and still reports any
-- privilege the app role gains on it; the app role holds none (only the audit role's definers
-- read it), and the platform role may only clear a purged tenant's rows.
CREATE TABLE audit_unsealed (
    tenant_id  uuid NOT NULL,
    xid        xid8 NOT NULL,
    since      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, xid)
);

-- Every tenant with events before this migration has them sealed by the first sealer run.
REVOKE ALL ON audit_unsealed FROM PUBLIC;
INSERT INTO audit_unsealed (tenant_id, xid) SELECT id, '0' FROM tenants;

CREATE FUNCTION audit_leaf(e audit_events) RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT convert_to('16:rowguard.audit/2|', 'UTF8') || audit_canonical(e) $$;

-- Appending without a per-tenant lock. Until now every event was linked onto its tenant's
-- hash chain under the chain head's row lock, so one tenant's writes ran one at a time. Now
-- an event is numbered by one shared sequence (no lock: seq is unique and increasing, with
-- gaps, in every tenant), carries its transaction id and its leaf hash, and waits for the
-- sealer to give it its place in the tree. The chain (prev_hash, audit_chain_heads) stays as
-- it was for the events written before this migration — they are verified as a chain and
-- sealed first, in chain order — and grows no more: new events have no prev_hash.
CREATE SEQUENCE audit_event_seq AS bigint;
ALTER TABLE audit_events ALTER COLUMN prev_hash DROP NOT NULL;

-- The sequence starts past every tenant's chain. Reading every tenant's events needs the
-- owner to be out of RLS's reach for one statement (FORCE off, then on again as it was).
DO $$
DECLARE
    forced boolean;
    top    bigint;
BEGIN
    SELECT relforcerowsecurity INTO forced FROM pg_class WHERE oid = 'audit_events'::regclass;
    IF forced THEN
        ALTER TABLE audit_events NO FORCE ROW LEVEL SECURITY;
    END IF;
    SELECT coalesce(max(seq), 0) INTO top FROM audit_events;
    IF forced THEN
        ALTER TABLE audit_events FORCE ROW LEVEL SECURITY;
    END IF;
    PERFORM setval('audit_event_seq', top + 1, false);
END $$;

CREATE OR REPLACE FUNCTION audit_link(ev audit_events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF ev.tenant_id IS NULL THEN
        RAISE EXCEPTION 'audit: no tenant is set for this transaction';
    END IF;
    ev.seq         := nextval('audit_event_seq');
    -- Microsecond precision is what the canonical form keeps.
    ev.occurred_at := date_trunc('microseconds', ev.occurred_at);
    ev.prev_hash   := NULL;
    ev.xid         := pg_current_xact_id();
    ev.hash        := sha256('\x00'::bytea || audit_leaf(ev));
    INSERT INTO audit_events VALUES (ev.*);
    INSERT INTO audit_unsealed (tenant_id, xid) VALUES (ev.tenant_id, ev.xid) ON CONFLICT DO NOTHING;
END $$;

-- Tenants with committed, unsealed events (any tenant's: this reads ids across tenants, and
-- only ids). For the service's sealer loop.
CREATE FUNCTION audit_unsealed_tenants(p_limit integer) RETURNS SETOF uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
    AS $$
    SELECT tenant_id FROM audit_unsealed
     WHERE xid < pg_snapshot_xmin(pg_current_snapshot())
     GROUP BY tenant_id ORDER BY min(since) LIMIT p_limit
    $$;

-- How far behind sealing is: appending transactions not yet sealed, and the age of the oldest.
CREATE FUNCTION audit_unsealed_backlog(OUT transactions bigint, OUT oldest_seconds double precision)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
    AS $$
    SELECT count(*), coalesce(extract(epoch FROM now() - min(since)), 0)::double precision FROM audit_unsealed
    $$;

-- Seal up to p_max of the current tenant's committed events into its tree, in (xid, seq)
-- order below the horizon. One sealer per tenant at a time across instances: another one
-- holding the tenant's advisory lock makes this return nothing (sealed = -1). Returns the
-- tree after the batch.
CREATE FUNCTION audit_seal(p_max integer, OUT size bigint, OUT root bytea, OUT sealed integer)
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
        SELECT e.xid, e.seq, sha256('\x00'::bytea || audit_leaf(e)) AS h FROM audit_events e
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

-- Keep a signed head of the current tenant's tree as it is now. The service signs (the key
-- never reaches the database); this checks that the note names this size and root.
CREATE FUNCTION audit_record_head(p_size bigint, p_note text) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
    AS $$
DECLARE
    t  uuid := current_tenant();
    st audit_tree_state;
BEGIN
    SELECT * INTO st FROM audit_tree_state s WHERE s.tenant_id = t;
    IF st.tenant_id IS NULL OR st.size <> p_size
       OR position(E'\n' || p_size::text || E'\n' || encode(st.root, 'base64') || E'\n' IN p_note) = 0 THEN
        RETURN false;
    END IF;
    INSERT INTO audit_tree_heads (tenant_id, size, root, signed_at, note)
        VALUES (t, p_size, st.root, clock_timestamp(), p_note)
        ON CONFLICT (tenant_id, size) DO NOTHING;
    RETURN true;
END $$;

-- Seal many tenants in one transaction and one round trip: the service's sealer follows
-- hundreds of tenants, and a transaction of four round trips per tenant left a thousand busy
-- tenants waiting a minute. Each tenant is sealed with the tenant setting switched to it
-- (transaction-local, as a tenant transaction sets it; cleared at the end), so RLS fences
-- every statement of `audit_seal` to that tenant exactly as in a transaction of its own.
CREATE FUNCTION audit_seal_many(p_tenants uuid[], p_max integer)
    RETURNS TABLE (tenant_id uuid, size bigint, root bytea, sealed integer)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
    AS $$
DECLARE
    t      uuid;
    r      record;
    caller text := current_setting('app.tenant_id', true);
BEGIN
    FOREACH t IN ARRAY p_tenants LOOP
        PERFORM set_config('app.tenant_id', t::text, true);
        tenant_id := t;
        -- One tenant's failure (sealed = -2, with a warning) neither rolls back nor blocks the
        -- others: its work is undone to this point and it stays queued for the next pass.
        BEGIN
            SELECT * INTO r FROM audit_seal(p_max);
            size := r.size;
            root := r.root;
            sealed := r.sealed;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'audit: sealing tenant % failed: % (%)', t, SQLERRM, SQLSTATE;
            size := NULL;
            root := NULL;
            sealed := -2;
        END;
        RETURN NEXT;
    END LOOP;
    PERFORM set_config('app.tenant_id', coalesce(caller, ''), true);
END $$;

-- Keep the signed heads of many tenants (what `audit_seal_many` sealed), as `audit_record_head`.
CREATE FUNCTION audit_record_heads(p_tenants uuid[], p_sizes bigint[], p_notes text[]) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
    AS $$
DECLARE
    kept   integer := 0;
    caller text := current_setting('app.tenant_id', true);
BEGIN
    FOR j IN 1 .. coalesce(cardinality(p_tenants), 0) LOOP
        PERFORM set_config('app.tenant_id', p_tenants[j]::text, true);
        IF audit_record_head(p_sizes[j], p_notes[j]) THEN
            kept := kept + 1;
        END IF;
    END LOOP;
    PERFORM set_config('app.tenant_id', coalesce(caller, ''), true);
    RETURN kept;
END $$;

-- Retention as a prefix of the tree: the oldest sealed events, in leaf order, up to the first
-- one not older than the cut (never the newest leaf). Only sealed events go — an event not in
-- the tree yet is never purged — and under the sealer's lock, so none is sealed meanwhile.
-- Their leaf hashes stay in the tree: every signed head and every proof of the remaining
-- events stays valid. The mark names how many leaves lost their event (`purged_leaves`), the
-- only ones the verifier then accepts as gone; for a log begun as a hash chain it also names
-- the last purged chain event and its hash, the anchor the chain's verifier starts from.
CREATE OR REPLACE FUNCTION audit_retention_purge(p_before timestamptz) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    t          uuid := current_tenant();
    tree_size  bigint;
    cut        bigint;
    last_seq   bigint;
    chain_seq  bigint;
    anchor     bytea;
    purged     bigint;
    details    jsonb;
BEGIN
    IF t IS NULL THEN
        RAISE EXCEPTION 'audit: no tenant is set for this transaction';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('rowguard.audit.seal/' || t::text, 0));
    SELECT s.size INTO tree_size FROM audit_tree_state s WHERE s.tenant_id = t;
    IF coalesce(tree_size, 0) < 2 THEN
        RETURN 0;
    END IF;
    -- The first leaf whose event is not older than the cut (or is gone already: a cut is a
    -- prefix, so a gap means an earlier purge reached there), at most the newest leaf.
    SELECT coalesce(min(l.leaf_index), tree_size - 1) INTO cut
      FROM audit_tree_leaves l LEFT JOIN audit_events e ON e.tenant_id = l.tenant_id AND e.seq = l.seq
     WHERE l.tenant_id = t AND e.occurred_at >= p_before;
    cut := least(cut, tree_size - 1);
    SELECT max(l.seq) INTO last_seq FROM audit_tree_leaves l WHERE l.tenant_id = t AND l.leaf_index < cut;
    SELECT e.seq, e.hash INTO chain_seq, anchor FROM audit_events e
      JOIN audit_tree_leaves l ON l.tenant_id = e.tenant_id AND l.seq = e.seq
     WHERE e.tenant_id = t AND l.leaf_index < cut AND e.prev_hash IS NOT NULL
     ORDER BY l.leaf_index DESC LIMIT 1;
    SET LOCAL app.audit_purge = 'on';
    DELETE FROM audit_events e USING audit_tree_leaves l
     WHERE e.tenant_id = t AND l.tenant_id = t AND l.seq = e.seq AND l.leaf_index < cut;
    GET DIAGNOSTICS purged = ROW_COUNT;
    IF chain_seq IS NOT NULL THEN
        DELETE FROM audit_checkpoints WHERE tenant_id = t AND seq <= chain_seq;
    END IF;
    SET LOCAL app.audit_purge = 'off';
    IF purged = 0 THEN
        RETURN 0;
    END IF;
    details := jsonb_build_object('purged_leaves', cut, 'purged_through_seq', last_seq, 'events', purged,
                                  'before', p_before);
    IF chain_seq IS NOT NULL THEN
        details := details || jsonb_build_object('chain_through_seq', chain_seq, 'anchor_hash', encode(anchor, 'hex'));
    END IF;
    PERFORM audit_append('audit.retention_purge', 'audit', NULL, 'success', details, 'operator');
    RETURN purged;
END $$;

-- The tree is append-only as the events are: nodes, leaves and heads are never changed, and
-- deleted only by the purge of a deleted tenant (as the platform role).
CREATE FUNCTION audit_tree_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('app.audit_purge', true) = 'on'
       AND pg_has_role(current_user, 'rowguard_platform', 'MEMBER') THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION '% is append-only (% refused)', TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER audit_tree_nodes_append_only BEFORE UPDATE OR DELETE ON audit_tree_nodes
    FOR EACH ROW EXECUTE FUNCTION audit_tree_refuse_change();
CREATE TRIGGER audit_tree_leaves_append_only BEFORE UPDATE OR DELETE ON audit_tree_leaves
    FOR EACH ROW EXECUTE FUNCTION audit_tree_refuse_change();
CREATE TRIGGER audit_tree_heads_append_only BEFORE UPDATE OR DELETE ON audit_tree_heads
    FOR EACH ROW EXECUTE FUNCTION audit_tree_refuse_change();
-- The state row moves (UPDATE by the sealer) but is deleted only with its tenant: a sealer
-- restarting from an empty state would try to write nodes that exist and stop.
CREATE TRIGGER audit_tree_state_kept BEFORE DELETE ON audit_tree_state
    FOR EACH ROW EXECUTE FUNCTION audit_tree_refuse_change();
CREATE TRIGGER audit_tree_state_no_truncate BEFORE TRUNCATE ON audit_tree_state
    FOR EACH STATEMENT EXECUTE FUNCTION audit_tree_refuse_change();
CREATE TRIGGER audit_tree_no_truncate BEFORE TRUNCATE ON audit_tree_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION audit_tree_refuse_change();
CREATE TRIGGER audit_tree_no_truncate BEFORE TRUNCATE ON audit_tree_leaves
    FOR EACH STATEMENT EXECUTE FUNCTION audit_tree_refuse_change();
CREATE TRIGGER audit_tree_no_truncate BEFORE TRUNCATE ON audit_tree_heads
    FOR EACH STATEMENT EXECUTE FUNCTION audit_tree_refuse_change();

-- The audit role does the sealing; it owns the definers and holds exactly what they need.
GRANT USAGE, CREATE ON SCHEMA public TO rowguard_audit;
ALTER FUNCTION audit_unsealed_tenants(integer) OWNER TO rowguard_audit;
ALTER FUNCTION audit_unsealed_backlog() OWNER TO rowguard_audit;
ALTER FUNCTION audit_seal(integer) OWNER TO rowguard_audit;
ALTER FUNCTION audit_record_head(bigint, text) OWNER TO rowguard_audit;
ALTER FUNCTION audit_seal_many(uuid[], integer) OWNER TO rowguard_audit;
ALTER FUNCTION audit_record_heads(uuid[], bigint[], text[]) OWNER TO rowguard_audit;
REVOKE CREATE ON SCHEMA public FROM rowguard_audit;

GRANT SELECT ON audit_events TO rowguard_audit;
GRANT USAGE ON SEQUENCE audit_event_seq TO rowguard_audit;
GRANT SELECT (id, status) ON tenants TO rowguard_audit;
GRANT SELECT, INSERT, DELETE ON audit_unsealed TO rowguard_audit;
-- The purge of a deleted tenant removes its queue rows with everything else.
GRANT SELECT, DELETE ON audit_unsealed TO rowguard_platform;
GRANT SELECT, INSERT ON audit_tree_nodes, audit_tree_leaves, audit_tree_heads TO rowguard_audit;
GRANT SELECT, INSERT, UPDATE ON audit_tree_state TO rowguard_audit;

-- The app role reads the tree (proofs, heads) and never writes it; the platform role also
-- deletes, for the purge of a deleted tenant.
GRANT SELECT ON audit_tree_nodes, audit_tree_leaves, audit_tree_heads, audit_tree_state
    TO rowguard_app, rowguard_platform;
GRANT DELETE ON audit_tree_nodes, audit_tree_leaves, audit_tree_heads, audit_tree_state TO rowguard_platform;

REVOKE EXECUTE ON FUNCTION audit_unsealed_tenants(integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION audit_unsealed_backlog() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION audit_seal(integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION audit_record_head(bigint, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION audit_seal_many(uuid[], integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION audit_record_heads(uuid[], bigint[], text[]) FROM PUBLIC;
-- The service's sealer (the app role) calls the batch functions only; `audit_seal` and
-- `audit_record_head` run inside them, as the audit role. The platform role seals nothing.
GRANT EXECUTE ON FUNCTION audit_unsealed_tenants(integer), audit_unsealed_backlog(),
    audit_seal_many(uuid[], integer), audit_record_heads(uuid[], bigint[], text[]) TO rowguard_app;
