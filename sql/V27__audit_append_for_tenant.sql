-- Audit appends that name their tenant, so that on Citus they run where the tenant's shards are
-- (docs/citus.md, "Appends inside a transaction go to the worker too"). On plain PostgreSQL
-- `audit_append_for` is `audit_append` after a check, and `audit_link` writes the same row.

-- `audit_link` names its INSERT's columns instead of inserting `ev.*`: the same row on
-- PostgreSQL. On Citus, `audit_append_for` (below) is force-delegated, and Citus then checks that
-- every statement it runs names the delegated tenant's shard; it cannot see the distribution
-- key in `VALUES (ev.*)` ("queries must filter by the distribution argument").
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
    INSERT INTO audit_events (tenant_id, seq, id, occurred_at, actor_type, actor_id, actor_role, client_ip, user_agent,
                              request_id, action, resource_type, resource_id, outcome, details, prev_hash, hash, xid)
    VALUES (ev.tenant_id, ev.seq, ev.id, ev.occurred_at, ev.actor_type, ev.actor_id, ev.actor_role, ev.client_ip,
            ev.user_agent, ev.request_id, ev.action, ev.resource_type, ev.resource_id, ev.outcome, ev.details,
            ev.prev_hash, ev.hash, ev.xid);
    INSERT INTO audit_unsealed (tenant_id, xid) VALUES (ev.tenant_id, ev.xid) ON CONFLICT DO NOTHING;
END $$;

-- `audit_append` for the tenant `p_tenant`, which must be the transaction's (the event is
-- stamped with the transaction's; the argument only says where the call runs). The service
-- appends through this. On Citus it is force-delegated: inside the caller's transaction, Citus
-- runs it on the worker holding the tenant's shards over the connection the transaction uses
-- there, and `audit_append` switches to the audit role on that worker. Called on the
-- coordinator, the audit role's INSERT would take a connection of its own, and Citus refuses
-- the transaction any other statement on those shards ("cannot perform query on placements
-- that were modified in this transaction by a different user").
CREATE FUNCTION audit_append_for(p_tenant uuid, p_action text, p_resource_type text, p_resource_id text,
                                 p_outcome text, p_details jsonb, p_actor_type text DEFAULT NULL) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF p_tenant IS DISTINCT FROM current_tenant() THEN
        RAISE EXCEPTION 'audit: the event''s tenant % is not the transaction''s', p_tenant;
    END IF;
    PERFORM audit_append(p_action, p_resource_type, p_resource_id, p_outcome, p_details, p_actor_type);
END $$;
REVOKE EXECUTE ON FUNCTION audit_append_for(uuid, text, text, text, text, jsonb, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_append_for(uuid, text, text, text, text, jsonb, text) TO rowguard_app, rowguard_platform;


-- `audit_import` (a tenant export's events, `tenants import`) likewise, for the same reason: the
-- import writes the tenant's rows first, then its events, in one transaction.
CREATE FUNCTION audit_import_for(p_tenant uuid, p_event jsonb) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF p_tenant IS DISTINCT FROM current_tenant() THEN
        RAISE EXCEPTION 'audit: the event''s tenant % is not the transaction''s', p_tenant;
    END IF;
    PERFORM audit_import(p_event);
END $$;
REVOKE EXECUTE ON FUNCTION audit_import_for(uuid, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_import_for(uuid, jsonb) TO rowguard_platform;
