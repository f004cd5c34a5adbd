-- Retention purge: the append-only trigger's exception (app.audit_purge) is switched with
-- SET LOCAL instead of set_config(…, true). To PostgreSQL the two are the same (transaction-
-- local, no SET clause on the function, so it lasts until the `off` below or the end of the
-- transaction). On Citus only the SET command reaches the workers: the DELETE runs on the
-- worker holding the tenant's shard, where `audit_refuse_change` reads the setting, and with
-- set_config() it read nothing there and refused the purge ("audit_events is append-only
-- (DELETE refused)"). Citus forwards a SET LOCAL run inside a function as well, as long as
-- the call is in a transaction block, which is how `rowguard audit purge` calls it.
-- Everything else (anchor, checkpoints, the recorded cut, who may run it) is unchanged.
CREATE OR REPLACE FUNCTION audit_retention_purge(p_before timestamptz) RETURNS bigint LANGUAGE plpgsql AS $$
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
    SET LOCAL app.audit_purge = 'on';
    DELETE FROM audit_events WHERE tenant_id = t AND seq <= last_seq;
    GET DIAGNOSTICS purged = ROW_COUNT;
    DELETE FROM audit_checkpoints WHERE tenant_id = t AND seq <= last_seq;
    SET LOCAL app.audit_purge = 'off';
    PERFORM audit_append('audit.retention_purge', 'audit', NULL, 'success',
        jsonb_build_object('purged_through_seq', last_seq, 'anchor_hash', encode(anchor, 'hex'),
                           'events', purged, 'before', p_before),
        'operator');
    RETURN purged;
END $$;
