-- Platform tables: the tenant registry and its custom domains. Not tenant-owned (no RLS):
-- they are read before a tenant is known. The app role may read only the columns tenant
-- resolution needs; writes come from the platform role (CLI, platform API), never from a
-- tenant request (DESIGN.md, Platform tables; invariant 5).

CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('trial', 'active', 'suspended', 'deleted')),
    plan        text NOT NULL DEFAULT 'free' CHECK (plan IN ('free', 'pro', 'enterprise')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- A custom domain names exactly one tenant; host matching is case-insensitive and ignores a
-- trailing dot, so only the normalised form is stored.
CREATE TABLE tenant_domains (
    domain      text PRIMARY KEY CHECK (domain = lower(domain) AND domain !~ '\.$' AND length(domain) BETWEEN 1 AND 253),
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    is_primary  boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tenant_domains_tenant_idx ON tenant_domains (tenant_id);
CREATE UNIQUE INDEX tenant_domains_one_primary ON tenant_domains (tenant_id) WHERE is_primary;

GRANT SELECT (id, slug, status, plan) ON tenants TO rowguard_app;
GRANT SELECT (domain, tenant_id) ON tenant_domains TO rowguard_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON tenants, tenant_domains TO rowguard_platform;

-- Every instance caches tenant lookups; a change is announced so the caches drop it at once.
CREATE FUNCTION notify_tenant_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('rowguard_tenant_changed', '');
    RETURN NULL;
END $$;

CREATE TRIGGER tenants_changed AFTER INSERT OR UPDATE OR DELETE ON tenants
    FOR EACH STATEMENT EXECUTE FUNCTION notify_tenant_change();
CREATE TRIGGER tenant_domains_changed AFTER INSERT OR UPDATE OR DELETE ON tenant_domains
    FOR EACH STATEMENT EXECUTE FUNCTION notify_tenant_change();
