-- Organizations: tenant-owned (invariant 1); contacts may belong to one.

CREATE TABLE organizations (
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    id          uuid NOT NULL,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    domain      text CHECK (length(domain) BETWEEN 1 AND 253),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);

GRANT SELECT, INSERT, UPDATE, DELETE ON organizations TO rowguard_app, rowguard_platform;

-- Composite: foreign-key checks ignore RLS, so a plain organization_id could point at (and
-- probe for) another tenant's organization. Deleting an organization only detaches its
-- contacts: SET NULL names the one column, since tenant_id must stay.
ALTER TABLE contacts ADD COLUMN organization_id uuid;
ALTER TABLE contacts ADD CONSTRAINT contacts_organization_fk
    FOREIGN KEY (tenant_id, organization_id) REFERENCES organizations (tenant_id, id)
    ON DELETE SET NULL (organization_id);
-- The filter `?organization_id=` and the foreign key's own checks.
CREATE INDEX contacts_organization_idx ON contacts (tenant_id, organization_id, id);
