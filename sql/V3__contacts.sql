-- Contacts: tenant-owned (invariant 1). Ids are uuid v7, so the primary key
-- (tenant_id, id) is also the keyset-pagination index in creation order.

CREATE TABLE contacts (
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    id          uuid NOT NULL,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    email       text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    phone       text CHECK (length(phone) BETWEEN 3 AND 40),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);

GRANT SELECT, INSERT, UPDATE, DELETE ON contacts TO rowguard_app, rowguard_platform;
