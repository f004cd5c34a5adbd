-- The row-change trigger, ready for tables rowguard did not write (invariant 6 for adopted
-- tables, `rowguard tables adopt`):
--
-- * Redaction ignores case. Secrets never reach the log: a column whose name mentions a hash,
--   secret, token or password is left out of before/after. Our own columns are lower case;
--   an operator's may be quoted (`"apiToken"`), and a case-sensitive match would let it through.
-- * The resource id is read from the key columns named after the resource:
--   `audit_row_change('projects', 'id')`, or several for a wider key (their values joined by
--   '/'). With no key column named, `id` as before, so the built-in triggers are unchanged.

CREATE OR REPLACE FUNCTION audit_redact(j jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(jsonb_object_agg(key, value), '{}') FROM jsonb_each(j)
     WHERE key !~* '(hash|secret|token|password)'
$$;

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
    IF TG_NARGS > 1 THEN
        FOR i IN 1 .. TG_NARGS - 1 LOOP
            resource_id := concat_ws('/', resource_id, coalesce(new_row, old_row) ->> TG_ARGV[i]);
        END LOOP;
    ELSE
        resource_id := coalesce(new_row, old_row) ->> 'id';
    END IF;
    PERFORM audit_append(action, resource, resource_id, 'success', details);
    RETURN NULL;
END $$;
