-- The database cannot be taught to lie (invariant 6: the log is append-only and every event is
-- linked by the one function that hashes it; invariant 5: least privilege).
--
-- Before this migration the app role could INSERT into audit_events (a forged event with any
-- actor, time and hash), UPDATE audit_chain_heads (re-point the chain), call audit_link with
-- a record of its own making, and switch the row-change trigger off (app.audit_import) or
-- the append-only trigger's purge exception on (app.audit_purge) by setting a custom GUC,
-- which any session may do. Now:
--
-- * Appends go through ONE narrow entry point, `audit_append`, SECURITY DEFINER and owned by
--   `rowguard_audit`: a NOLOGIN, NOSUPERUSER, NOBYPASSRLS role created by bootstrap, of
--   which only the owner role is a member (so that this migration may hand objects to it).
--   Its caller chooses the action, resource, outcome and details; the function fills in the
--   tenant, time, actor, sequence number and hashes itself, so a caller can add a truthful
--   claim ("user X says Y happened") but never a backdated, mis-attributed or mis-linked
--   event. `audit_import` (re-basing an exported chain) is the same for the platform role
--   only. `audit_link` stays SECURITY INVOKER: it is reachable only from inside those two,
--   where the current user is already rowguard_audit, and no one else may execute it; a
--   second definer entry point would only be a second door to guard.
-- * RLS still holds the definer: rowguard_audit is not the tables' owner and FORCE is on, so
--   the policies (TO PUBLIC, on current_tenant()) fence it to the transaction's tenant exactly
--   as they fence its caller. It gets only the privileges the chain needs.
-- * Each definer has `SET search_path = pg_catalog, public, pg_temp`: its table and function
--   names cannot be captured by objects from the caller's search path (pg_temp last, so a
--   temporary table cannot shadow audit_chain_heads either).
-- * The app and platform roles lose INSERT on audit_events, INSERT/UPDATE on
--   audit_chain_heads and EXECUTE on audit_link. The platform role keeps DELETE on both for
--   the documented purges.
-- * The stand-down switches count only for members of rowguard_platform (the platform login
--   inherits it; the CLI does `SET ROLE rowguard_platform`): the triggers check
--   `pg_has_role(current_user, 'rowguard_platform', 'MEMBER')`. MEMBER rather than USAGE: a
--   NOINHERIT member could `SET ROLE rowguard_platform` and pass anyway, so refusing it would
--   be a speed bump, not a boundary. Superusers pass too, as they pass every check. Trigger
--   functions run as the invoker, so current_user is the session's (SET ROLE'd) role. For
--   anyone else a switch is ignored: the row change is recorded, the DELETE refused.
-- * The checkpoint signer (app role) read the head `FOR SHARE`, which PostgreSQL 15 allows
--   only with UPDATE privilege on the table. `audit_head_locked(tenant)` takes that same lock for
--   it, as rowguard_audit, on the current tenant's head only: the signer still cannot sign a
--   head that a concurrent retention purge is about to cut below. (VOLATILE, the default: a
--   row lock is not allowed in a STABLE function.)
--
-- On Citus, Citus connects to the workers as the current user, and inside a SECURITY DEFINER
-- function that is the definer: bootstrap gives rowguard_audit LOGIN there, as it does the
-- owner and platform roles (not tried on Citus; see README).

-- Hand the append path to the audit role. ALTER ... OWNER needs the new owner to have CREATE
-- on the schema (PostgreSQL 15); it needs it only for the hand-over, so it is taken back.
GRANT USAGE, CREATE ON SCHEMA public TO rowguard_audit;

ALTER FUNCTION audit_link(audit_events) OWNER TO rowguard_audit;

ALTER FUNCTION audit_append(text, text, text, text, jsonb, text)
    SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
ALTER FUNCTION audit_append(text, text, text, text, jsonb, text) OWNER TO rowguard_audit;

ALTER FUNCTION audit_import(jsonb) SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
ALTER FUNCTION audit_import(jsonb) OWNER TO rowguard_audit;

-- The tenant is the caller's to name (and must be the transaction's: RLS adds that condition).
CREATE FUNCTION audit_head_locked(p_tenant uuid) RETURNS TABLE (seq bigint, head bytea)
    LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
    AS $$ SELECT h.seq, h.head FROM audit_chain_heads h WHERE h.tenant_id = p_tenant FOR SHARE $$;
ALTER FUNCTION audit_head_locked(uuid) OWNER TO rowguard_audit;

REVOKE CREATE ON SCHEMA public FROM rowguard_audit;

-- Exactly what linking needs: write events, read and move heads (FOR UPDATE needs UPDATE).
GRANT INSERT ON audit_events TO rowguard_audit;
GRANT SELECT, INSERT, UPDATE ON audit_chain_heads TO rowguard_audit;

-- Nobody else writes the chain directly.
REVOKE INSERT ON audit_events FROM rowguard_app, rowguard_platform;
REVOKE INSERT, UPDATE ON audit_chain_heads FROM rowguard_app, rowguard_platform;
REVOKE EXECUTE ON FUNCTION audit_link(audit_events) FROM PUBLIC, rowguard_app, rowguard_platform;

-- Functions are executable by PUBLIC unless revoked; a definer must name its callers.
REVOKE EXECUTE ON FUNCTION audit_append(text, text, text, text, jsonb, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_append(text, text, text, text, jsonb, text) TO rowguard_app, rowguard_platform;
REVOKE EXECUTE ON FUNCTION audit_import(jsonb) FROM PUBLIC, rowguard_app;
GRANT EXECUTE ON FUNCTION audit_import(jsonb) TO rowguard_platform;
REVOKE EXECUTE ON FUNCTION audit_head_locked(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_head_locked(uuid) TO rowguard_app, rowguard_platform;

-- Row-change trigger: unchanged but for who may silence it. The setting is read first, so
-- the membership lookup costs nothing on the ordinary path.
CREATE OR REPLACE FUNCTION audit_row_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    resource text := TG_ARGV[0];
    old_row  jsonb := CASE WHEN TG_OP IN ('UPDATE', 'DELETE') THEN audit_redact(to_jsonb(OLD)) END;
    new_row  jsonb := CASE WHEN TG_OP IN ('INSERT', 'UPDATE') THEN audit_redact(to_jsonb(NEW)) END;
    action   text;
    details  jsonb;
BEGIN
    -- Purging a deleted tenant removes its log too (see `purge`), and an imported tenant
    -- brings its own log (see `audit_import`): nothing to record for either — when, and only
    -- when, the platform role is the one doing it.
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
    PERFORM audit_append(action, resource, coalesce(new_row, old_row) ->> 'id', 'success', details);
    RETURN NULL;
END $$;

-- Append-only for every role: the purge exception holds only for the platform role.
CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('app.audit_purge', true) = 'on'
       AND pg_has_role(current_user, 'rowguard_platform', 'MEMBER') THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_events is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
