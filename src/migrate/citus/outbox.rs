//! The outbox's Citus variants: its functions cut to what Citus plans inside a trigger on a
//! shard.

/// The Citus variants of the outbox's functions (sql/V25), replaced by every `migrate` once the
/// tables are distributed, one statement each. The same rows, order and locks as on PostgreSQL;
/// only the statements are cut to what Citus plans inside a trigger on a shard, where it may
/// run a statement on the local shard only (anything it cannot route there, it refuses or tries
/// to run through another node, which fails: "the backend has already been assigned a
/// transaction id"). A later migration that changes one of these functions must change its
/// variant here too, or the next `migrate` on Citus puts this one back.
///
/// * `outbox_emit` inserts one row per subscribed webhook in a loop, `INSERT … VALUES`, instead
///   of one `INSERT … SELECT`: Citus cannot push an INSERT … SELECT into `outbox` down to the
///   shard (its identity column), so it pulls the rows to a coordinator, from within the shard.
/// * `outbox_queue_sync` decides whether the new item heads its chain, and which item heads it
///   next, in a statement of its own before the INSERT / UPDATE that uses the answer: Citus
///   refuses a subquery in an INSERT's VALUES. Still a fresh statement after the chain's lock
///   (`PERFORM … FOR UPDATE`), so it sees what the transaction it waited for did.
/// * `outbox_claim` takes the claim's time once per tenant visited instead of calling
///   `clock_timestamp()` in the UPDATE (Citus refuses a volatile function there), and names the
///   tenant in the UPDATE's own WHERE as well as in the picking CTE, so that Citus routes the
///   whole statement to the tenant's shard (without it: an UPDATE of every shard per visit).
///   It reads the turn's tenants once, in at most two queries, instead of one query per tenant
///   visited: each of those reads every shard, and the claim took 21 ms instead of 9 (one tenant
///   queued, dev cluster), which a tenant at its cap pays once per delivery. The same tenants
///   in the same order; one that gets a sendable item during the claim waits for the next.
pub(super) const OUTBOX_CITUS_FUNCTIONS: &[&str] = &[
    r#"CREATE OR REPLACE FUNCTION outbox_emit(p_action text, p_resource text, p_resource_id text, p_details jsonb)
    RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    event  text;
    msg    uuid;
    body   jsonb;
    tenant uuid := current_tenant();
    hook   uuid;
BEGIN
    event := p_resource || CASE
        WHEN p_action = p_resource || '.create' THEN '.created'
        WHEN p_action = p_resource || '.delete' THEN '.deleted'
        ELSE '.updated' END;
    msg := gen_random_uuid();
    body := jsonb_build_object(
        'type', event,
        'timestamp', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'data', jsonb_build_object('resource', p_resource, 'id', p_resource_id) || p_details);
    FOR hook IN
        SELECT w.id FROM webhooks w
         WHERE w.tenant_id = tenant AND w.enabled
           AND (event = ANY (w.events) OR '*' = ANY (w.events) OR p_resource || '.*' = ANY (w.events))
         ORDER BY w.id
    LOOP
        INSERT INTO outbox (tenant_id, webhook_id, message_id, event_type, resource_key, payload)
        VALUES (tenant, hook, msg, event, p_resource || '/' || coalesce(p_resource_id, ''), body);
    END LOOP;
END $$"#,
    r#"CREATE OR REPLACE FUNCTION outbox_queue_sync() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
    AS $$
DECLARE
    t         uuid;
    item      bigint;
    c         bigint;
    was_head  boolean;
    is_head   boolean;
    next_head bigint;
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.status = 'pending' AND NEW.status = 'pending' THEN
        UPDATE outbox_queue q SET due_at = NEW.next_attempt_at
         WHERE q.tenant_id = NEW.tenant_id AND q.outbox_id = NEW.id;
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN
        t := OLD.tenant_id; item := OLD.id;
        c := hashtextextended(OLD.webhook_id::text || ' ' || OLD.resource_key, 0);
    ELSE
        t := NEW.tenant_id; item := NEW.id;
        c := hashtextextended(NEW.webhook_id::text || ' ' || NEW.resource_key, 0);
    END IF;
    SELECT q.head INTO was_head FROM outbox_queue q WHERE q.tenant_id = t AND q.outbox_id = item;
    IF TG_OP <> 'DELETE' AND NEW.status = 'pending' THEN
        PERFORM FROM outbox_queue e WHERE e.tenant_id = t AND e.chain = c AND NOT e.dead AND e.outbox_id <> item
          ORDER BY e.outbox_id LIMIT 1 FOR UPDATE;
        is_head := NOT EXISTS (SELECT FROM outbox_queue e
                                WHERE e.tenant_id = t AND e.chain = c AND NOT e.dead AND e.outbox_id < item);
        INSERT INTO outbox_queue AS q (tenant_id, outbox_id, chain, due_at, since, dead, head)
        VALUES (t, item, c, NEW.next_attempt_at, NEW.created_at, false, is_head)
        ON CONFLICT (tenant_id, outbox_id)
            DO UPDATE SET due_at = excluded.due_at, dead = false, head = excluded.head;
        RETURN NULL;
    ELSIF TG_OP <> 'DELETE' AND NEW.status = 'dead' THEN
        INSERT INTO outbox_queue AS q (tenant_id, outbox_id, chain, due_at, since, dead, head)
        VALUES (t, item, c, NEW.next_attempt_at, NEW.created_at, true, false)
        ON CONFLICT (tenant_id, outbox_id) DO UPDATE SET dead = true, head = false;
    ELSE
        DELETE FROM outbox_queue q WHERE q.tenant_id = t AND q.outbox_id = item;
    END IF;
    IF was_head THEN
        SELECT min(e.outbox_id) INTO next_head FROM outbox_queue e WHERE e.tenant_id = t AND e.chain = c AND NOT e.dead;
        UPDATE outbox_queue q SET head = true WHERE q.tenant_id = t AND q.outbox_id = next_head;
    END IF;
    RETURN NULL;
END $$"#,
    r#"CREATE OR REPLACE FUNCTION outbox_claim(p_after uuid, p_busy uuid[], p_tenants integer, p_per_tenant integer,
                                        p_max integer, p_lease_ms integer)
    RETURNS TABLE (tenant_id uuid, outbox_id bigint)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
    AS $$
#variable_conflict use_column
DECLARE
    lease      interval := make_interval(secs => least(greatest(p_lease_ms, 1000), 600000) / 1000.0);
    tenants    integer := least(greatest(p_tenants, 1), 1000);
    per_tenant integer := least(greatest(p_per_tenant, 1), 100);
    max_items  integer := least(greatest(p_max, 0), 1000);
    turn       uuid[] := '{}';
    cur        uuid;
    nxt        uuid;
    visited    integer := 0;
    got        integer := 0;
    n          integer;
    claimed_at timestamptz;
BEGIN
    -- The turn: tenants with a chain head queued after p_after, then from the start round to it.
    FOR nxt IN SELECT q.tenant_id FROM outbox_queue q
                WHERE q.head AND NOT q.dead AND (p_after IS NULL OR q.tenant_id > p_after)
                GROUP BY q.tenant_id ORDER BY q.tenant_id LIMIT tenants LOOP
        turn := turn || nxt;
    END LOOP;
    IF p_after IS NOT NULL AND cardinality(turn) < tenants THEN
        FOR nxt IN SELECT q.tenant_id FROM outbox_queue q
                    WHERE q.head AND NOT q.dead AND q.tenant_id <= p_after
                    GROUP BY q.tenant_id ORDER BY q.tenant_id LIMIT tenants - cardinality(turn) LOOP
            turn := turn || nxt;
        END LOOP;
    END IF;
    FOREACH nxt IN ARRAY turn LOOP
        EXIT WHEN visited >= tenants OR got >= max_items;
        cur := nxt;
        visited := visited + 1;
        CONTINUE WHEN nxt = ANY (coalesce(p_busy, '{}'));
        claimed_at := clock_timestamp();
        RETURN QUERY
        WITH picked AS (
            SELECT c.tenant_id AS t, c.outbox_id AS o FROM outbox_queue c
             WHERE c.tenant_id = nxt AND c.head AND NOT c.dead AND c.due_at <= claimed_at
             ORDER BY c.due_at, c.outbox_id
             LIMIT least(per_tenant, max_items - got)
             FOR UPDATE OF c SKIP LOCKED)
        UPDATE outbox_queue q SET due_at = claimed_at + lease
          FROM picked WHERE q.tenant_id = nxt AND q.tenant_id = picked.t AND q.outbox_id = picked.o
        RETURNING q.tenant_id, q.outbox_id;
        GET DIAGNOSTICS n = ROW_COUNT;
        got := got + n;
    END LOOP;
    -- -1: the turn went all the way round; 0: it stopped at a limit.
    IF cur IS NOT NULL THEN
        RETURN QUERY SELECT cur, CASE WHEN visited < tenants AND got < max_items THEN -1 ELSE 0 END::bigint;
    END IF;
END $$"#,
];
