-- The audit log's tree (sql/V21): invariant 1, as for the events. One tenant's nodes, leaves,
-- heads and sealing state are nobody else's; the sealer's definer functions are fenced to the
-- transaction's tenant by these policies like any caller.
ALTER TABLE audit_tree_nodes ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_tree_nodes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_tree_nodes
    USING (tenant_id = current_tenant())
    WITH CHECK (tenant_id = current_tenant());

ALTER TABLE audit_tree_leaves ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_tree_leaves FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_tree_leaves
    USING (tenant_id = current_tenant())
    WITH CHECK (tenant_id = current_tenant());

ALTER TABLE audit_tree_state ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_tree_state FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_tree_state
    USING (tenant_id = current_tenant())
    WITH CHECK (tenant_id = current_tenant());

ALTER TABLE audit_tree_heads ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_tree_heads FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_tree_heads
    USING (tenant_id = current_tenant())
    WITH CHECK (tenant_id = current_tenant());
