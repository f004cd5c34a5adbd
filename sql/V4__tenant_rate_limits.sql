-- Per-tenant edge policy on the registry: a rate-limit override (quota otherwise from the
-- plan) and the browser origins the tenant allows (CORS). Both are read by tenant resolution
-- as the app role, so they travel with the cached tenant and a change reaches every instance
-- through the tenants_changed NOTIFY, without a restart. Written only by the platform role
-- (DESIGN.md, Platform tables; invariant 5).

ALTER TABLE tenants
    -- NULL: the plan's quota. Both or neither, so a half-set override cannot exist.
    ADD COLUMN rate_limit_per_second integer CHECK (rate_limit_per_second BETWEEN 1 AND 1000000),
    ADD COLUMN rate_limit_burst integer CHECK (rate_limit_burst BETWEEN 1 AND 1000000),
    ADD CONSTRAINT tenants_rate_limit_both_or_neither
        CHECK ((rate_limit_per_second IS NULL) = (rate_limit_burst IS NULL)),
    -- Exact origins (scheme://host[:port]), lower case; an empty list allows none.
    ADD COLUMN cors_allowed_origins text[] NOT NULL DEFAULT '{}'
        CHECK (cardinality(cors_allowed_origins) <= 100);

-- Column grants only: the app role reads what resolution needs and nothing more.
GRANT SELECT (rate_limit_per_second, rate_limit_burst, cors_allowed_origins) ON tenants TO rowguard_app;
