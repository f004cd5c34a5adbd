-- Organizations and deals record their changes in the audit trail like every tenant table
-- (invariant 6; `policies verify` reports a tenant table without this trigger).
CREATE TRIGGER audit_row_change AFTER INSERT OR UPDATE OR DELETE ON organizations
    FOR EACH ROW EXECUTE FUNCTION audit_row_change('organization');
CREATE TRIGGER audit_row_change AFTER INSERT OR UPDATE OR DELETE ON deals
    FOR EACH ROW EXECUTE FUNCTION audit_row_change('deal');
