-- deals: invariant 1, as for contacts.
ALTER TABLE deals ENABLE ROW LEVEL SECURITY;
ALTER TABLE deals FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON deals
    USING (tenant_id = current_tenant())
    WITH CHECK (tenant_id = current_tenant());
