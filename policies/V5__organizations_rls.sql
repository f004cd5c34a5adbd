-- organizations: invariant 1, as for contacts.
ALTER TABLE organizations ENABLE ROW LEVEL SECURITY;
ALTER TABLE organizations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON organizations
    USING (tenant_id = current_tenant())
    WITH CHECK (tenant_id = current_tenant());
