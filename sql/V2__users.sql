-- Users: tenant-owned (invariant 1). The primary key and every unique index lead with
-- tenant_id; the same e-mail may exist in two tenants as two different users.

CREATE TABLE users (
    tenant_id      uuid NOT NULL REFERENCES tenants (id),
    id             uuid NOT NULL,
    email          text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    password_hash  text NOT NULL,
    role           text NOT NULL CHECK (role IN ('owner', 'admin', 'manager', 'member', 'auditor')),
    status         text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'deactivated')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX users_email_unique ON users (tenant_id, lower(email));

GRANT SELECT, INSERT, UPDATE, DELETE ON users TO rowguard_app, rowguard_platform;
