-- The audit trail (invariant 6): tenant-owned, append-only, hash-chained per tenant.
--
-- Data changes are recorded by triggers, in the same transaction as the change: a committed
-- change has exactly one event, a rolled-back one none, and no handler can forget to audit.
-- Every tenant table gets `audit_row_change`; `rowguard policies verify` reports a tenant
-- table without it (unless listed in rowguard::db::AUDIT_EXEMPT_TABLES), so a new table
-- cannot escape auditing silently. Who acted comes from transaction-local settings that the
-- tenant transaction sets together with the tenant (app.user_id, app.role, app.request_id,
-- app.client_ip, app.user_agent_hex).

CREATE TABLE audit_events (
    tenant_id      uuid NOT NULL REFERENCES tenants (id),
    seq            bigint NOT NULL CHECK (seq > 0),
    id             uuid NOT NULL,
    occurred_at    timestamptz NOT NULL,
    actor_type     text NOT NULL CHECK (actor_type IN ('user', 'operator', 'system', 'anonymous')),
    actor_id       uuid,
    actor_role     text,
    client_ip      inet,
    user_agent     text,
    request_id     text,
    action         text NOT NULL,
    resource_type  text,
    resource_id    text,
    outcome        text NOT NULL CHECK (outcome IN ('success', 'denied', 'failure')),
    details        jsonb NOT NULL DEFAULT '{}',
    prev_hash      bytea NOT NULL,
    hash           bytea NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE UNIQUE INDEX audit_events_id ON audit_events (tenant_id, id);
CREATE INDEX audit_events_time ON audit_events (tenant_id, occurred_at);
CREATE INDEX audit_events_action ON audit_events (tenant_id, action, seq);
CREATE INDEX audit_events_resource ON audit_events (tenant_id, resource_type, resource_id, seq);

-- One row per tenant: the chain's head. Appending locks it, so concurrent writers in one
-- tenant take turns (the chain stays linear) while other tenants never wait.
CREATE TABLE audit_chain_heads (
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    seq        bigint NOT NULL,
    head       bytea NOT NULL,
    PRIMARY KEY (tenant_id)
);

-- Signed checkpoints: (tenant, seq, head, count, time) signed with the service's Ed25519
-- audit key. An auditor holding one can later check the log only grew past it.
CREATE TABLE audit_checkpoints (
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    seq         bigint NOT NULL,
    head        bytea NOT NULL,
    signed_at   timestamptz NOT NULL,
    key_id      text NOT NULL,
    signature   bytea NOT NULL,
    PRIMARY KEY (tenant_id, seq, key_id)
);

-- The canonical encoding of an event that the hash covers: every field as text,
-- length-prefixed (octets), so no value can be confused with a separator. The Rust verifier
-- (src/audit/chain.rs) rebuilds exactly this from the stored row.
CREATE FUNCTION audit_canonical(e audit_events) RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT convert_to(string_agg(octet_length(f)::text || ':' || f, '|' ORDER BY n), 'UTF8')
      FROM unnest(ARRAY[
          e.tenant_id::text, e.seq::text, e.id::text,
          (extract(epoch FROM e.occurred_at) * 1000000)::bigint::text,
          e.actor_type, coalesce(e.actor_id::text, ''), coalesce(e.actor_role, ''),
          coalesce(host(e.client_ip), ''), coalesce(e.user_agent, ''), coalesce(e.request_id, ''),
          e.action, coalesce(e.resource_type, ''), coalesce(e.resource_id, ''), e.outcome,
          e.details::text
      ]) WITH ORDINALITY AS u(f, n)
    $$;

-- Append one event to the current tenant's chain. SECURITY INVOKER: it runs with the
-- caller's rights, under RLS, for the tenant the transaction has set.
CREATE FUNCTION audit_append(
    p_action text, p_resource_type text, p_resource_id text, p_outcome text, p_details jsonb,
    p_actor_type text DEFAULT NULL
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t        uuid := current_tenant();
    ua_hex   text := NULLIF(current_setting('app.user_agent_hex', true), '');
    ev       audit_events;
    head_seq bigint;
    prev     bytea;
BEGIN
    IF t IS NULL THEN
        RAISE EXCEPTION 'audit: no tenant is set for this transaction';
    END IF;
    INSERT INTO audit_chain_heads (tenant_id, seq, head)
        VALUES (t, 0, '\x0000000000000000000000000000000000000000000000000000000000000000')
        ON CONFLICT (tenant_id) DO NOTHING;
    SELECT h.seq, h.head INTO head_seq, prev FROM audit_chain_heads h WHERE h.tenant_id = t FOR UPDATE;
    ev.tenant_id     := t;
    ev.seq           := head_seq + 1;
    ev.id            := gen_random_uuid();
    -- Microsecond precision is what the canonical form keeps.
    ev.occurred_at   := date_trunc('microseconds', clock_timestamp());
    ev.actor_id      := NULLIF(current_setting('app.user_id', true), '')::uuid;
    ev.actor_type    := coalesce(p_actor_type, CASE WHEN ev.actor_id IS NULL THEN 'system' ELSE 'user' END);
    ev.actor_role    := NULLIF(current_setting('app.role', true), '');
    ev.client_ip     := NULLIF(current_setting('app.client_ip', true), '')::inet;
    ev.user_agent    := CASE WHEN ua_hex IS NULL THEN NULL ELSE convert_from(decode(ua_hex, 'hex'), 'UTF8') END;
    ev.request_id    := NULLIF(current_setting('app.request_id', true), '');
    ev.action        := p_action;
    ev.resource_type := p_resource_type;
    ev.resource_id   := p_resource_id;
    ev.outcome       := p_outcome;
    ev.details       := coalesce(p_details, '{}');
    ev.prev_hash     := prev;
    ev.hash          := sha256(prev || audit_canonical(ev));
    INSERT INTO audit_events VALUES (ev.*);
    UPDATE audit_chain_heads SET seq = ev.seq, head = ev.hash WHERE tenant_id = t;
END $$;

-- Import one exported event into the current tenant's chain (`rowguard tenants import`):
-- every field is kept but the tenant, and the event is re-linked and re-hashed onto this
-- tenant's chain — the import re-bases the chain explicitly and says so in a final event.
CREATE FUNCTION audit_import(p_event jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t        uuid := current_tenant();
    ev       audit_events := jsonb_populate_record(NULL::audit_events, p_event);
    head_seq bigint;
    prev     bytea;
BEGIN
    IF t IS NULL THEN
        RAISE EXCEPTION 'audit: no tenant is set for this transaction';
    END IF;
    INSERT INTO audit_chain_heads (tenant_id, seq, head)
        VALUES (t, 0, '\x0000000000000000000000000000000000000000000000000000000000000000')
        ON CONFLICT (tenant_id) DO NOTHING;
    SELECT h.seq, h.head INTO head_seq, prev FROM audit_chain_heads h WHERE h.tenant_id = t FOR UPDATE;
    ev.tenant_id   := t;
    ev.seq         := head_seq + 1;
    ev.occurred_at := date_trunc('microseconds', ev.occurred_at);
    ev.prev_hash   := prev;
    ev.hash        := sha256(prev || audit_canonical(ev));
    INSERT INTO audit_events VALUES (ev.*);
    UPDATE audit_chain_heads SET seq = ev.seq, head = ev.hash WHERE tenant_id = t;
END $$;

-- Secrets never reach the log: any column whose name mentions a hash, secret or token.
CREATE FUNCTION audit_redact(j jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(jsonb_object_agg(key, value), '{}') FROM jsonb_each(j)
     WHERE key !~ '(hash|secret|token|password)'
$$;

-- Row-change trigger: TG_ARGV[0] is the resource name (`contact`, `user`, …). Updates record
-- only the fields that changed, before and after.
CREATE FUNCTION audit_row_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    resource text := TG_ARGV[0];
    old_row  jsonb := CASE WHEN TG_OP IN ('UPDATE', 'DELETE') THEN audit_redact(to_jsonb(OLD)) END;
    new_row  jsonb := CASE WHEN TG_OP IN ('INSERT', 'UPDATE') THEN audit_redact(to_jsonb(NEW)) END;
    action   text;
    details  jsonb;
BEGIN
    -- Purging a deleted tenant removes its log too (see `purge`), and an imported tenant
    -- brings its own log (see `audit_import`): nothing to record for either.
    IF current_setting('app.audit_purge', true) = 'on' OR current_setting('app.audit_import', true) = 'on' THEN
        RETURN NULL;
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
    PERFORM audit_append(action, resource, coalesce(new_row, old_row) ->> 'id', 'success', details);
    RETURN NULL;
END $$;

-- Append-only, for every role: UPDATE and DELETE are refused, except the documented purge of
-- a deleted tenant (app.audit_purge, set only by the platform purge in its tenant
-- transaction); TRUNCATE always.
CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('app.audit_purge', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_events is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

CREATE TRIGGER audit_row_change AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION audit_row_change('user');
CREATE TRIGGER audit_row_change AFTER INSERT OR UPDATE OR DELETE ON contacts
    FOR EACH ROW EXECUTE FUNCTION audit_row_change('contact');

-- The app role appends (through the functions) and reads; it never updates or deletes.
GRANT SELECT, INSERT ON audit_events TO rowguard_app, rowguard_platform;
GRANT DELETE ON audit_events TO rowguard_platform;
GRANT SELECT, INSERT, UPDATE ON audit_chain_heads TO rowguard_app, rowguard_platform;
GRANT DELETE ON audit_chain_heads TO rowguard_platform;
GRANT SELECT, INSERT ON audit_checkpoints TO rowguard_app, rowguard_platform;
GRANT DELETE ON audit_checkpoints TO rowguard_platform;
GRANT EXECUTE ON FUNCTION audit_append(text, text, text, text, jsonb, text) TO rowguard_app, rowguard_platform;
REVOKE EXECUTE ON FUNCTION audit_import(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_import(jsonb) TO rowguard_platform;
