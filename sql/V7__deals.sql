-- Deals: tenant-owned (invariant 1). A deal names a contact and optionally an organization,
-- both through composite foreign keys, so another tenant's id fails exactly like a missing one.

CREATE TABLE deals (
    tenant_id        uuid NOT NULL REFERENCES tenants (id),
    id               uuid NOT NULL,
    title            text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    contact_id       uuid NOT NULL,
    organization_id  uuid,
    stage            text NOT NULL DEFAULT 'lead'
                         CHECK (stage IN ('lead', 'qualified', 'proposal', 'won', 'lost')),
    -- Money is exact: numeric keeps the scale it was given ('100.50' reads back '100.50').
    amount           numeric NOT NULL CHECK (amount >= 0 AND amount < 1e15 AND scale(amount) <= 4),
    currency         char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    -- A contact with deals cannot be deleted (409); deleting an organization detaches it.
    FOREIGN KEY (tenant_id, contact_id) REFERENCES contacts (tenant_id, id),
    FOREIGN KEY (tenant_id, organization_id) REFERENCES organizations (tenant_id, id)
        ON DELETE SET NULL (organization_id)
);
CREATE INDEX deals_stage_idx ON deals (tenant_id, stage, id);
CREATE INDEX deals_contact_idx ON deals (tenant_id, contact_id);
CREATE INDEX deals_organization_idx ON deals (tenant_id, organization_id);

GRANT SELECT, INSERT, UPDATE, DELETE ON deals TO rowguard_app, rowguard_platform;
