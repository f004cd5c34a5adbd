-- The audit trigger's helpers in PL/pgSQL instead of SQL: same results, byte for byte.
--
-- `audit_canonical`, `audit_leaf` and `audit_redact` were SQL functions built on an aggregate
-- (string_agg, jsonb_object_agg) or on a stable function (convert_to), so the planner could
-- not inline them, and PostgreSQL runs such a function by parsing and planning its body again
-- in every transaction that calls it. Called from the row-change trigger on every audited
-- write, that was a third of the database's CPU under a create load (perf, 32 writers): the
-- parser and planner, not the event. PL/pgSQL keeps each statement's plan for the session.
--
-- The encodings are unchanged: the canonical form still joins `len:value` fields with `|` in
-- the same order (a NULL field would still be skipped, as string_agg skipped it; none is NULL),
-- and redaction still drops the keys matching the pattern, ignoring case. Leaves sealed
-- before and after this migration hash alike; tests/it/audit.rs recomputes them.

CREATE OR REPLACE FUNCTION audit_canonical(e audit_events) RETURNS bytea
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    f   text;
    acc text;
BEGIN
    FOREACH f IN ARRAY ARRAY[
          e.tenant_id::text, e.seq::text, e.id::text,
          (extract(epoch FROM e.occurred_at) * 1000000)::bigint::text,
          e.actor_type, coalesce(e.actor_id::text, ''), coalesce(e.actor_role, ''),
          coalesce(host(e.client_ip), ''), coalesce(e.user_agent, ''), coalesce(e.request_id, ''),
          e.action, coalesce(e.resource_type, ''), coalesce(e.resource_id, ''), e.outcome,
          e.details::text] LOOP
        IF f IS NOT NULL THEN
            acc := CASE WHEN acc IS NULL THEN '' ELSE acc || '|' END || octet_length(f) || ':' || f;
        END IF;
    END LOOP;
    RETURN convert_to(acc, 'UTF8');
END $$;

CREATE OR REPLACE FUNCTION audit_leaf(e audit_events) RETURNS bytea
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN convert_to('16:rowguard.audit/2|', 'UTF8') || audit_canonical(e);
END $$;

CREATE OR REPLACE FUNCTION audit_redact(j jsonb) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN coalesce(j - ARRAY(SELECT k FROM jsonb_object_keys(j) AS k WHERE k ~* '(hash|secret|token|password)'), '{}');
END $$;
