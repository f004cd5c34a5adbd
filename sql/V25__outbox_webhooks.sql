-- Background work in the tenant's context (issue 16): webhook subscriptions, a transactional
-- outbox of deliveries, the delivery log, and the queue the workers claim from.
--
-- * `webhooks`, `outbox` and `webhook_deliveries` are tenant tables like any other: tenant_id,
--   RLS (policies/V10), keys that include tenant_id so that nothing can reference another
--   tenant's row. `webhooks` is audited (its secrets redacted by name, as every `secret`
--   column is); the outbox and the log are the deliveries' bookkeeping (AUDIT_EXEMPT_TABLES).
-- * An event is enqueued by `audit_row_change`, the trigger every audited tenant table already
--   carries (built-in and adopted alike; `policies verify` reports a table without it), in the
--   same transaction as the change: a rolled-back change enqueues nothing, a committed one
--   always has its deliveries. One outbox row per subscribed webhook, with the changed fields.
-- * `outbox_queue` mirrors the pending and dead items (ids, times and a hash; no tenant data) so
--   that workers can find due work across tenants without reading any tenant's rows. Only the
--   jobs role writes it, through the trigger on `outbox` below and `outbox_claim`.

CREATE TABLE webhooks (
    tenant_id             uuid NOT NULL REFERENCES tenants (id),
    id                    uuid NOT NULL,
    url                   text NOT NULL CHECK (length(url) BETWEEN 10 AND 2048),
    events                text[] NOT NULL CHECK (cardinality(events) BETWEEN 1 AND 50),
    description           text CHECK (length(description) <= 500),
    enabled               boolean NOT NULL DEFAULT true,
    -- `whsec_` and the base64 of the key: shown once, kept to sign. The previous one keeps
    -- signing beside it until `previous_secret_until` after a rotation.
    secret                text NOT NULL,
    previous_secret       text,
    previous_secret_until timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
-- The emit path asks "does this tenant subscribe to anything" on every audited write.
CREATE INDEX webhooks_enabled ON webhooks (tenant_id) WHERE enabled;

CREATE TABLE outbox (
    tenant_id       uuid NOT NULL REFERENCES tenants (id),
    id              bigint GENERATED ALWAYS AS IDENTITY,
    webhook_id      uuid NOT NULL,
    -- The idempotency key: the `webhook-id` header, the same on every attempt.
    message_id      uuid NOT NULL,
    event_type      text NOT NULL,
    -- Deliveries of one resource to one webhook go out in order (`outbox_claim`).
    resource_key    text NOT NULL,
    -- The body sent, as stored (jsonb's text form is what is signed and sent).
    payload         jsonb NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead', 'discarded')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, webhook_id) REFERENCES webhooks (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX outbox_by_webhook ON outbox (tenant_id, webhook_id, id);

CREATE TABLE webhook_deliveries (
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    id          bigint GENERATED ALWAYS AS IDENTITY,
    webhook_id  uuid NOT NULL,
    outbox_id   bigint NOT NULL,
    attempt     integer NOT NULL,
    started_at  timestamptz NOT NULL,
    duration_ms integer NOT NULL,
    status_code integer,
    error       text,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, webhook_id) REFERENCES webhooks (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, outbox_id) REFERENCES outbox (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (tenant_id, webhook_id, id);
CREATE INDEX webhook_deliveries_by_item ON webhook_deliveries (tenant_id, outbox_id);

GRANT SELECT, INSERT, UPDATE, DELETE ON webhooks, outbox, webhook_deliveries TO rowguard_app, rowguard_platform;

CREATE TRIGGER audit_row_change AFTER INSERT OR UPDATE OR DELETE ON webhooks
    FOR EACH ROW EXECUTE FUNCTION audit_row_change('webhook');

-- The queue (a platform table, like audit_unsealed: named in PLATFORM_TABLES, no RLS). `chain`
-- is a hash of (webhook, resource); `head` marks the one item of a chain that may be sent now
-- (the earliest live one): the rest wait their turn, so deliveries of one resource to one
-- webhook go out in order, and a claim never wades through a chain's waiting items. `due_at`
-- is when the item may next be claimed: its next attempt, or the end of a claim's lease.
CREATE TABLE outbox_queue (
    tenant_id  uuid NOT NULL,
    outbox_id  bigint NOT NULL,
    chain      bigint NOT NULL,
    due_at     timestamptz NOT NULL,
    since      timestamptz NOT NULL,
    dead       boolean NOT NULL DEFAULT false,
    head       boolean NOT NULL DEFAULT false,
    PRIMARY KEY (tenant_id, outbox_id)
);
CREATE INDEX outbox_queue_ready ON outbox_queue (tenant_id, due_at) WHERE head AND NOT dead;
CREATE INDEX outbox_queue_chain ON outbox_queue (tenant_id, chain, outbox_id) WHERE NOT dead;
REVOKE ALL ON outbox_queue FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON outbox_queue TO rowguard_jobs;
-- `jobs status` reads it; purging a tenant clears it (every table with tenant_id).
GRANT SELECT, DELETE ON outbox_queue TO rowguard_platform;

-- Mirror an outbox row into the queue: pending and dead items are there, delivered and
-- discarded ones are not. Runs as the jobs role (the app role has no privilege on the queue).
-- Heads: a new item is its chain's head when no earlier live item is queued; when the head
-- leaves (sent, discarded, dead, deleted) the next live item of its chain becomes head. A new
-- item first locks its chain's earliest queued row, so it waits for a transaction that is
-- taking that head away and then sees what it did (a fresh statement, a fresh snapshot) —
-- otherwise both could miss each other and leave a chain without a head. Row locks, not
-- advisory ones: a statement that changes thousands of rows takes thousands of them.
CREATE FUNCTION outbox_queue_sync() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
    AS $$
DECLARE
    t        uuid;
    item     bigint;
    c        bigint;
    was_head boolean;
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.status = 'pending' AND NEW.status = 'pending' THEN
        -- A retry scheduled, a lease handed back: only the time changes.
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
        INSERT INTO outbox_queue AS q (tenant_id, outbox_id, chain, due_at, since, dead, head)
        VALUES (t, item, c, NEW.next_attempt_at, NEW.created_at, false,
                NOT EXISTS (SELECT FROM outbox_queue e
                             WHERE e.tenant_id = t AND e.chain = c AND NOT e.dead AND e.outbox_id < item))
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
        UPDATE outbox_queue q SET head = true
         WHERE q.tenant_id = t AND q.outbox_id = (SELECT min(e.outbox_id) FROM outbox_queue e
                                                   WHERE e.tenant_id = t AND e.chain = c AND NOT e.dead);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_queue_sync AFTER INSERT OR UPDATE OR DELETE ON outbox
    FOR EACH ROW EXECUTE FUNCTION outbox_queue_sync();

-- Claim due items for a worker, fairly across tenants: tenants with a sendable item are visited
-- in id order starting after `p_after` (where the worker's last claim stopped), wrapping round,
-- at most `p_tenants` of them, skipping `p_busy` (tenants that already have as many deliveries
-- in flight on this worker as one tenant may); each gives at most `p_per_tenant` items, and the
-- pass at most `p_max`. So one tenant's backlog of any size gets a bounded share per turn while
-- every other tenant with due work is visited in the same turn. Only chain heads are sendable
-- (order per resource). Claiming moves `due_at` a lease ahead, so another worker (here or on
-- another instance) skips the item until the lease ends; SKIP LOCKED lets two claims run at
-- once without waiting for each other. Ids only: the worker reads and records each item in its
-- tenant's transaction, under RLS. The last row carries no item: the tenant the pass stopped
-- at (the next claim's `p_after`) and, as its `outbox_id`, -1 when the turn went all the way
-- round or 0 when it stopped at a limit (there is more to visit right away). The arguments are
-- clamped: no caller can take a thousand items at once or hold them for more than ten minutes.
CREATE FUNCTION outbox_claim(p_after uuid, p_busy uuid[], p_tenants integer, p_per_tenant integer, p_max integer,
                             p_lease_ms integer)
    RETURNS TABLE (tenant_id uuid, outbox_id bigint)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
    AS $$
#variable_conflict use_column
DECLARE
    lease      interval := make_interval(secs => least(greatest(p_lease_ms, 1000), 600000) / 1000.0);
    tenants    integer := least(greatest(p_tenants, 1), 1000);
    per_tenant integer := least(greatest(p_per_tenant, 1), 100);
    max_items  integer := least(greatest(p_max, 0), 1000);
    cur        uuid := p_after;
    nxt        uuid;
    wrapped    boolean := p_after IS NULL;
    complete   boolean := false;
    visited    integer := 0;
    got        integer := 0;
    n          integer;
BEGIN
    WHILE visited < tenants AND got < max_items LOOP
        SELECT q.tenant_id INTO nxt FROM outbox_queue q
         WHERE q.head AND NOT q.dead AND (cur IS NULL OR q.tenant_id > cur)
         ORDER BY q.tenant_id LIMIT 1;
        IF nxt IS NULL THEN
            IF wrapped THEN
                complete := true;
                EXIT;
            END IF;
            wrapped := true;
            cur := NULL;
            CONTINUE;
        END IF;
        -- Round once: the tenant the last pass stopped at comes last.
        IF wrapped AND p_after IS NOT NULL AND nxt > p_after THEN
            complete := true;
            EXIT;
        END IF;
        cur := nxt;
        visited := visited + 1;
        CONTINUE WHEN nxt = ANY (coalesce(p_busy, '{}'));
        RETURN QUERY
        WITH picked AS (
            SELECT c.tenant_id AS t, c.outbox_id AS o FROM outbox_queue c
             WHERE c.tenant_id = nxt AND c.head AND NOT c.dead AND c.due_at <= clock_timestamp()
             ORDER BY c.due_at, c.outbox_id
             LIMIT least(per_tenant, max_items - got)
             FOR UPDATE OF c SKIP LOCKED)
        UPDATE outbox_queue q SET due_at = clock_timestamp() + lease
          FROM picked WHERE q.tenant_id = picked.t AND q.outbox_id = picked.o
        RETURNING q.tenant_id, q.outbox_id;
        GET DIAGNOSTICS n = ROW_COUNT;
        got := got + n;
    END LOOP;
    IF cur IS NOT NULL THEN
        RETURN QUERY SELECT cur, CASE WHEN complete THEN -1 ELSE 0 END::bigint;
    END IF;
END $$;

-- How far behind the workers are, across tenants: queued items, the age of the oldest, dead letters.
CREATE FUNCTION outbox_backlog(OUT pending bigint, OUT oldest_seconds double precision, OUT dead bigint)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
    AS $$
    SELECT count(*) FILTER (WHERE NOT q.dead),
           coalesce(extract(epoch FROM now() - min(q.since) FILTER (WHERE NOT q.dead)), 0)::double precision,
           count(*) FILTER (WHERE q.dead)
      FROM outbox_queue q
    $$;

-- Handing a function to a role needs that role to be able to create in its schema, for a moment.
GRANT USAGE, CREATE ON SCHEMA public TO rowguard_jobs;
ALTER FUNCTION outbox_queue_sync() OWNER TO rowguard_jobs;
ALTER FUNCTION outbox_claim(uuid, uuid[], integer, integer, integer, integer) OWNER TO rowguard_jobs;
ALTER FUNCTION outbox_backlog() OWNER TO rowguard_jobs;
REVOKE CREATE ON SCHEMA public FROM rowguard_jobs;
REVOKE EXECUTE ON FUNCTION outbox_queue_sync() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION outbox_claim(uuid, uuid[], integer, integer, integer, integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION outbox_backlog() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION outbox_claim(uuid, uuid[], integer, integer, integer, integer), outbox_backlog() TO rowguard_app;

-- Enqueue on change: `audit_row_change` (sql/V19), which every audited tenant table carries,
-- also writes one outbox row per enabled webhook of the tenant subscribed to the event, in the
-- same transaction. Event types are `<resource>.created|updated|deleted` (`contact.created`,
-- `bar_projects.updated`); a subscription names them, `<resource>.*` or `*`. The data is what
-- the audit event records: the row after a create, before a delete, and the changed fields
-- before and after an update — secrets left out the same way. The webhooks' own changes are
-- not sent (a subscriber to `*` would be told about its own secret rotation).
-- A tenant without webhooks pays one index probe per changed row.
CREATE FUNCTION outbox_emit(p_action text, p_resource text, p_resource_id text, p_details jsonb)
    RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    event  text;
    msg    uuid;
    body   jsonb;
    tenant uuid := current_tenant();
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
    INSERT INTO outbox (tenant_id, webhook_id, message_id, event_type, resource_key, payload)
    SELECT tenant, w.id, msg, event, p_resource || '/' || coalesce(p_resource_id, ''), body
      FROM webhooks w
     WHERE w.tenant_id = tenant AND w.enabled
       AND (event = ANY (w.events) OR '*' = ANY (w.events) OR p_resource || '.*' = ANY (w.events))
     ORDER BY w.id;
END $$;

CREATE OR REPLACE FUNCTION audit_row_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    resource    text := TG_ARGV[0];
    old_row     jsonb := CASE WHEN TG_OP IN ('UPDATE', 'DELETE') THEN audit_redact(to_jsonb(OLD)) END;
    new_row     jsonb := CASE WHEN TG_OP IN ('INSERT', 'UPDATE') THEN audit_redact(to_jsonb(NEW)) END;
    action      text;
    details     jsonb;
    resource_id text;
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
    IF resource <> 'webhook' AND EXISTS (SELECT FROM webhooks w WHERE w.tenant_id = current_tenant() AND w.enabled) THEN
        PERFORM outbox_emit(action, resource, resource_id, details);
    END IF;
    RETURN NULL;
END $$;
