//! The audit log's Citus parts: the functions delegated to a tenant's worker, and the seal
//! keys, numbering and horizon that make the Merkle log's order a worker's own.

use sqlx::{AssertSqlSafe, Executor, PgConnection};

/// The functions the service calls on Citus for one tenant at a time, run by the worker that
/// holds the tenant's shards: Citus delegates a call `SELECT f(tenant, …)` made outside a
/// transaction block to the node holding the shard of `audit_events` for that tenant, where
/// it runs as a local transaction of that node (its argument named here).
pub const DELEGATED_FUNCTIONS: &[(&str, &str)] = &[
    ("audit_seal_tenant(uuid,integer)", "p_tenant"),
    ("audit_record_head_tenant(uuid,bigint,text)", "p_tenant"),
    ("audit_retention_purge_tenant(uuid,timestamp with time zone)", "p_tenant"),
];

/// The audit log on Citus (sql/V21's Merkle log, sealed after commit in the order of the
/// appending transactions). On PostgreSQL that order is (transaction id, seq), sealed below the
/// server's horizon (the oldest transaction still running): every transaction that has not
/// ended has or will get an id at or above it, so nothing committed later can sort before what
/// was sealed. On Citus transaction ids are per node, and a tenant's events are inserted into
/// its shard on one worker — by the row-change trigger running there, or by an INSERT the
/// coordinator routes there — so the order and the horizon must both be that worker's:
///
/// * **The seal key is stamped where the row lands.** A BEFORE INSERT trigger on the shards of
///   `audit_events` and `audit_unsealed` overwrites `xid` with a key made from the *local*
///   transaction id of the worker's transaction (`audit_stamp_seal_key`), whichever node ran
///   `audit_link`. The leaf hash does not cover `xid`. `seq` becomes the column default, and
///   Citus then creates `audit_event_seq` on every node with a range of its own (the worker of
///   group g numbers from g·2⁴⁸ + 1), so a worker's `nextval` never meets another node's
///   number; an event linked on another node (an access event appended from the coordinator)
///   is numbered again from the worker's range and its leaf hash taken again over the row as
///   stored, so a tenant's events are numbered in the order they reach its shard (until the
///   shard moves: the new node's range may lie below the old one's).
/// * **The sealer runs where the shard is.** `audit_seal_tenant` is delegated to the worker
///   holding the tenant's shard (`DELEGATED_FUNCTIONS`); there `audit_seal_horizon()` is that
///   worker's horizon, and refuses to run anywhere else (a call that was not delegated, or a
///   shard that moved meanwhile, fails, and the tenant stays queued). Since the seal key, the
///   horizon and the shard's rows all belong to one node, PostgreSQL's argument holds as it is.
///   The advisory lock that keeps one sealer per tenant is that node's too, and every sealer of
///   the tenant is delegated to that node.
/// * **A shard move starts a new stint.** `citus_move_shard_placement` (and
///   `isolate_tenant_to_new_shard` onto another node) copies the rows with their keys to a node
///   whose transaction ids are unrelated to the old node's, lower or higher. The key therefore
///   carries a stint number above the local transaction id: key = stint·2⁴⁴ + local id, and
///   each event records the node it was written on (`xid_node`, the Citus group id). A writer
///   takes the stint of the tenant's newest event if that event was written on its own node,
///   else the next one (`audit_seal_stint`); the sealer computes its stint the same way, and its
///   horizon is stint·2⁴⁴ + local horizon. Every event of an earlier stint was committed before
///   the move finished — Citus blocks writes to the moving shards and waits for the
///   transactions holding them (their shard metadata locks) before it switches the placement —
///   so they are all final and sort before the new node's: the tree still only grows at its
///   end, in an order the writers' commits allowed. A move back to an earlier node is a new
///   stint too (the newest event was written elsewhere). Concurrent first writers of a stint
///   compute the same number from the same newest event, and nobody waits: no lock is taken.
///   Limits: 2⁴⁴ transactions per node (a writer past it is refused, not misordered) and 2¹⁹
///   stints per tenant; a shard must have one placement (replication factor 1: two placements
///   would give one event two transaction ids).
pub async fn prepare_audit_log(tx: &mut PgConnection) -> Result<(), sqlx::Error> {
    let has_default: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
                         WHERE d.adrelid = 'public.audit_events'::regclass AND a.attname = 'seq')",
    )
    .fetch_one(&mut *tx)
    .await?;
    if !has_default {
        tx.execute("ALTER TABLE public.audit_events ALTER COLUMN seq SET DEFAULT nextval('public.audit_event_seq')")
            .await?;
    }
    tx.execute("ALTER TABLE public.audit_events ADD COLUMN IF NOT EXISTS xid_node integer").await?;
    for function in AUDIT_CITUS_FUNCTIONS {
        tx.execute(*function).await?;
    }
    for (trigger, table, kind) in
        [("audit_events_seal_key", "audit_events", "event"), ("audit_unsealed_seal_key", "audit_unsealed", "queue")]
    {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname = $2)")
                .bind(format!("public.{table}"))
                .bind(trigger)
                .fetch_one(&mut *tx)
                .await?;
        if !exists {
            tx.execute(AssertSqlSafe(format!(
                "CREATE TRIGGER {trigger} BEFORE INSERT ON public.{table} \
                 FOR EACH ROW EXECUTE FUNCTION audit_stamp_seal_key('{kind}')"
            )))
            .await?;
        }
    }
    Ok(())
}

/// The Citus variants and additions of the audit log's functions (see `prepare_audit_log`), one
/// statement each (Citus replays a message's whole text on the workers).
const AUDIT_CITUS_FUNCTIONS: &[&str] = &[
    // The stint of the tenant's events on this node: the newest event's, if it was written here.
    r#"CREATE OR REPLACE FUNCTION audit_seal_stint(p_tenant uuid) RETURNS bigint
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    here   integer := (SELECT groupid FROM pg_dist_local_group);
    latest xid8;
    node   integer;
BEGIN
    SELECT e.xid, e.xid_node INTO latest, node FROM audit_events e
     WHERE e.tenant_id = p_tenant ORDER BY e.xid DESC LIMIT 1;
    IF latest IS NULL THEN
        RETURN 1;
    ELSIF node = here THEN
        RETURN latest::text::bigint >> 44;
    END IF;
    RETURN (latest::text::bigint >> 44) + 1;
END $$"#,
    // BEFORE INSERT on the shards of audit_events ('event') and audit_unsealed ('queue').
    r#"CREATE OR REPLACE FUNCTION audit_stamp_seal_key() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    local_xid bigint := pg_current_xact_id()::text::bigint;
    stint     bigint;
BEGIN
    IF local_xid >= (1::bigint << 44) THEN
        RAISE EXCEPTION 'audit: transaction id % of this node is past what the seal key holds (2^44)', local_xid;
    END IF;
    stint := audit_seal_stint(NEW.tenant_id);
    IF stint >= (1::bigint << 19) THEN
        RAISE EXCEPTION 'audit: tenant % moved more often than the seal key counts (2^19)', NEW.tenant_id;
    END IF;
    NEW.xid := ((stint << 44) + local_xid)::text::xid8;
    IF TG_ARGV[0] = 'event' THEN
        NEW.xid_node := (SELECT groupid FROM pg_dist_local_group);
        -- An event linked on another node (an access event appended from the coordinator)
        -- carries that node's number: it is numbered again from this node's range, and its
        -- leaf hash, which covers the number, taken again over the row as stored, so that a
        -- tenant's events are numbered in the order they reach its shard wherever they came
        -- from. (Not a chain event from before the tree: those are never linked anew.)
        IF NEW.prev_hash IS NULL AND (NEW.seq >> 48) <> NEW.xid_node THEN
            NEW.seq := nextval('audit_event_seq');
            NEW.hash := sha256('\x00'::bytea || audit_leaf(ROW(NEW.*)::audit_events));
        END IF;
    END IF;
    RETURN NEW;
END $$"#,
    // The sealer's horizon in seal keys, on the node holding the current tenant's shard only.
    r#"CREATE OR REPLACE FUNCTION audit_seal_horizon() RETURNS xid8
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    t    uuid := current_tenant();
    here integer := (SELECT groupid FROM pg_dist_local_group);
BEGIN
    IF NOT EXISTS (SELECT FROM pg_dist_placement p
                    WHERE p.shardid = get_shard_id_for_distribution_column('public.audit_events', t)
                      AND p.groupid = here) THEN
        RAISE EXCEPTION 'audit: tenant %''s events are not on this node (group %): seal them with audit_seal_tenant, which runs where they are', t, here;
    END IF;
    RETURN ((audit_seal_stint(t) << 44) + pg_snapshot_xmin(pg_current_snapshot())::text::bigint)::text::xid8;
END $$"#,
    // Which tenants have work: every queued one. Horizons are per node, so whether a queued
    // transaction has ended is for the delegated `audit_seal_tenant` to say, on the tenant's node.
    // PL/pgSQL: Citus cannot plan a SQL function's statement that uses its parameters.
    r#"CREATE OR REPLACE FUNCTION audit_unsealed_tenants(p_limit integer) RETURNS SETOF uuid
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
    AS $$
BEGIN
    RETURN QUERY SELECT u.tenant_id FROM audit_unsealed u GROUP BY u.tenant_id ORDER BY min(u.since) LIMIT p_limit;
END $$"#,
];
