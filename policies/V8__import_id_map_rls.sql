-- import_id_map: invariant 1, as for contacts. One tenant's trace of old ids is nobody
-- else's business.
ALTER TABLE import_id_map ENABLE ROW LEVEL SECURITY;
ALTER TABLE import_id_map FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON import_id_map
    USING (tenant_id = current_tenant())
    WITH CHECK (tenant_id = current_tenant());
