-- One place links an event onto its tenant's chain (lock the head, number, hash, insert, move
-- the head); `audit_append` and `audit_import` had each written it out. Same behaviour: the
-- canonical form, the genesis hash and the lock are unchanged, so existing chains verify.
CREATE FUNCTION audit_link(ev audit_events) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    head_seq bigint;
    prev     bytea;
BEGIN
    IF ev.tenant_id IS NULL THEN
        RAISE EXCEPTION 'audit: no tenant is set for this transaction';
    END IF;
    INSERT INTO audit_chain_heads (tenant_id, seq, head)
        VALUES (ev.tenant_id, 0, '\x0000000000000000000000000000000000000000000000000000000000000000')
        ON CONFLICT (tenant_id) DO NOTHING;
    SELECT h.seq, h.head INTO head_seq, prev FROM audit_chain_heads h WHERE h.tenant_id = ev.tenant_id FOR UPDATE;
    ev.seq         := head_seq + 1;
    -- Microsecond precision is what the canonical form keeps.
    ev.occurred_at := date_trunc('microseconds', ev.occurred_at);
    ev.prev_hash   := prev;
    ev.hash        := sha256(prev || audit_canonical(ev));
    INSERT INTO audit_events VALUES (ev.*);
    UPDATE audit_chain_heads SET seq = ev.seq, head = ev.hash WHERE tenant_id = ev.tenant_id;
END $$;

REVOKE EXECUTE ON FUNCTION audit_link(audit_events) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_link(audit_events) TO rowguard_app, rowguard_platform;

CREATE OR REPLACE FUNCTION audit_append(
    p_action text, p_resource_type text, p_resource_id text, p_outcome text, p_details jsonb,
    p_actor_type text DEFAULT NULL
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    ua_hex text := NULLIF(current_setting('app.user_agent_hex', true), '');
    ev     audit_events;
BEGIN
    ev.tenant_id     := current_tenant();
    ev.id            := gen_random_uuid();
    ev.occurred_at   := clock_timestamp();
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
    PERFORM audit_link(ev);
END $$;

-- Every field of the exported event is kept but the tenant; the link is this tenant's.
CREATE OR REPLACE FUNCTION audit_import(p_event jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    ev audit_events := jsonb_populate_record(NULL::audit_events, p_event);
BEGIN
    ev.tenant_id := current_tenant();
    PERFORM audit_link(ev);
END $$;
