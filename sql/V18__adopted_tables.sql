-- The registry of adopted tables (`rowguard tables adopt`): tenant tables an operator added
-- with migrations of their own and handed to rowguard, with the roles that may read and
-- write each one. A platform table (no tenant_id, no RLS): which tables exist is the same for
-- every tenant.
--
-- Written only by `tables adopt`, as the owner role, in the transaction that enables RLS,
-- creates the policy and the audit trigger and grants DML: the registry never names a table
-- that is not guarded. The app role reads it (the allowlist of what the service may serve)
-- and never writes it: no tenant request can add a table or widen a role set (invariant 5;
-- `policies verify` reports a write grant on a table without tenant_id).
CREATE TABLE rowguard_adopted_tables (
    -- An ordinary table of schema public, as the catalog names it.
    table_name   text PRIMARY KEY CHECK (length(table_name) BETWEEN 1 AND 63),
    -- The tenant roles (src/domain/role.rs) allowed to read and to write its rows.
    read_roles   text[] NOT NULL
                     CHECK (read_roles <@ ARRAY['owner', 'admin', 'manager', 'member', 'auditor']),
    write_roles  text[] NOT NULL
                     CHECK (write_roles <@ ARRAY['owner', 'admin', 'manager', 'member', 'auditor']),
    adopted_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

REVOKE ALL ON rowguard_adopted_tables FROM PUBLIC;
GRANT SELECT ON rowguard_adopted_tables TO rowguard_app, rowguard_platform;
