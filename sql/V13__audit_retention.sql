-- Retention (invariant 6's one exception, besides purging a deleted tenant): drop the current
-- tenant's events older than a cut-off, and record the cut in the chain itself. The new
-- `audit.retention_purge` event names the last purged event and its hash (the anchor), so
-- the verifier checks the remaining events from there; checkpoints of purged events go too.
-- Only the platform role may run it (the app role has no DELETE on audit_events at all).
CREATE FUNCTION audit_retention_purge(p_before timestamptz) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    t         uuid := current_tenant();
    last_seq  bigint;
    anchor    bytea;
    purged    bigint;
    newest    bigint;
BEGIN
    IF t IS NULL THEN
        RAISE EXCEPTION 'audit: no tenant is set for this transaction';
    END IF;
    SELECT max(seq) INTO newest FROM audit_events WHERE tenant_id = t;
    -- Never the newest event: the chain must keep at least its head.
    SELECT e.seq, e.hash INTO last_seq, anchor FROM audit_events e
     WHERE e.tenant_id = t AND e.occurred_at < p_before AND e.seq < newest
     ORDER BY e.seq DESC LIMIT 1;
    IF last_seq IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM set_config('app.audit_purge', 'on', true);
    DELETE FROM audit_events WHERE tenant_id = t AND seq <= last_seq;
    GET DIAGNOSTICS purged = ROW_COUNT;
    DELETE FROM audit_checkpoints WHERE tenant_id = t AND seq <= last_seq;
    PERFORM set_config('app.audit_purge', 'off', true);
    PERFORM audit_append('audit.retention_purge', 'audit', NULL, 'success',
        jsonb_build_object('purged_through_seq', last_seq, 'anchor_hash', encode(anchor, 'hex'),
                           'events', purged, 'before', p_before),
        'operator');
    RETURN purged;
END $$;

REVOKE EXECUTE ON FUNCTION audit_retention_purge(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_retention_purge(timestamptz) TO rowguard_platform;
