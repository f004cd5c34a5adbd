-- The one way policies read the tenant (invariants 2 and 4). STABLE, LANGUAGE sql, a single
-- expression, not STRICT, not SECURITY DEFINER: the planner inlines it, so a policy using it
-- is evaluated once per statement. NULLIF makes a missing or expired setting ('' after a
-- SET LOCAL ends on a pooled connection) NULL, and `tenant_id = NULL` matches nothing:
-- fail closed, with no error page.
CREATE FUNCTION current_tenant() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid $$;

GRANT EXECUTE ON FUNCTION current_tenant() TO rowguard_app, rowguard_platform;
