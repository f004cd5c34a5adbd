-- refresh_tokens: invariant 1, as for users. A token hash is useless to another tenant, but
-- the row also names a user and a session family: no tenant sees another's.
ALTER TABLE refresh_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE refresh_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON refresh_tokens
    USING (tenant_id = current_tenant())
    WITH CHECK (tenant_id = current_tenant());
