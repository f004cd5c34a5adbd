//! The audit triggers: every tenant table but the exempt ones records its changes.

use super::tables::Table;
use super::{Findings, Rule, Tx};
use crate::roles::AUDIT_EXEMPT_TABLES;

/// Every tenant table but the exempt ones records its changes (invariant 6).
pub(super) async fn check_audit_triggers(
    tx: &mut Tx<'_>,
    tables: &[Table],
    out: &mut Findings,
) -> Result<(), sqlx::Error> {
    let audited: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT c.relname::text FROM pg_trigger t
           JOIN pg_class c ON c.oid = t.tgrelid
           JOIN pg_proc p ON p.oid = t.tgfoid
          WHERE p.proname = 'audit_row_change' AND t.tgenabled <> 'D' AND NOT t.tgisinternal",
    )
    .fetch_all(&mut **tx)
    .await?;
    for t in tables.iter().filter(|t| t.is_tenant()) {
        if !AUDIT_EXEMPT_TABLES.contains(&t.name.as_str()) && !audited.contains(&t.name) {
            let name = &t.name;
            let fix = if t.is_operators() {
                format!("`rowguard tables adopt {name}` adds the trigger (or enables it)")
            } else {
                format!(
                    "add `CREATE TRIGGER audit_row_change AFTER INSERT OR UPDATE OR DELETE ON {name} FOR EACH ROW \
                     EXECUTE FUNCTION audit_row_change('<resource>')` to its schema migration, or name it in \
                     AUDIT_EXEMPT_TABLES"
                )
            };
            out.add(
                name,
                Rule::AuditTriggerMissing,
                format!("{name} has no enabled audit_row_change trigger, so its changes are not audited; {fix}"),
            );
        }
    }
    Ok(())
}
