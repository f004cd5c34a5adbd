-- contacts: invariant 1, as for users.
ALTER TABLE contacts ENABLE ROW LEVEL SECURITY;
ALTER TABLE contacts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON contacts
    USING (tenant_id = current_tenant())
    WITH CHECK (tenant_id = current_tenant());
