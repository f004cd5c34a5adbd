-- users: invariant 1. FORCE so that the owning role is held to the policy too; one policy
-- for every command, USING for the rows a statement sees, WITH CHECK for the rows it writes.
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE users FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON users
    USING (tenant_id = current_tenant())
    WITH CHECK (tenant_id = current_tenant());
