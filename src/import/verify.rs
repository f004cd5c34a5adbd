//! Checking one tenant's written rows before commit: counts against the source's, and every
//! reference inside the tenant.

use super::plan::Plan;
use super::*;

/// Before commit: the tenant's rows per table equal the source's `count(*)`, every reference
/// lands on a row of THIS tenant (checked with the tenant in the join, on top of the composite
/// foreign keys), and as many references are set as the source had.
pub(super) async fn verify(tx: &mut TenantTx<'_>, plan: &Plan) -> Result<Vec<Problem>, sqlx::Error> {
    let tenant = tx.tenant();
    let row: (i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM users WHERE tenant_id = $1),
                (SELECT count(*) FROM organizations WHERE tenant_id = $1),
                (SELECT count(*) FROM contacts WHERE tenant_id = $1),
                (SELECT count(*) FROM deals WHERE tenant_id = $1),
                (SELECT count(*) FROM import_id_map WHERE tenant_id = $1)",
    )
    .bind(tenant)
    .fetch_one(tx.conn())
    .await?;
    let target: BTreeMap<&str, i64> =
        [("users", row.0), ("organizations", row.1), ("contacts", row.2), ("deals", row.3)].into_iter().collect();
    let mut problems = Vec::new();
    for (resource, table, source) in &plan.source_counts {
        let got = target.get(resource).copied().unwrap_or(0);
        if got != *source {
            problems.push(Problem::new(
                table,
                None,
                format!("count mismatch: the source has {source} rows, rowguard {resource} has {got}"),
            ));
        }
    }
    let mapped = plan.map.target_ids.len() as i64 + 1;
    if row.4 != mapped {
        problems.push(Problem::new("import_id_map", None, format!("{} ids mapped, {mapped} expected", row.4)));
    }
    let refs: (i64, i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT
           (SELECT count(*) FROM contacts c WHERE c.tenant_id = $1 AND c.organization_id IS NOT NULL),
           (SELECT count(*) FROM contacts c WHERE c.tenant_id = $1 AND c.organization_id IS NOT NULL AND NOT EXISTS
               (SELECT FROM organizations o WHERE o.tenant_id = c.tenant_id AND o.id = c.organization_id)),
           (SELECT count(*) FROM deals d WHERE d.tenant_id = $1),
           (SELECT count(*) FROM deals d WHERE d.tenant_id = $1 AND NOT EXISTS
               (SELECT FROM contacts c WHERE c.tenant_id = d.tenant_id AND c.id = d.contact_id)),
           (SELECT count(*) FROM deals d WHERE d.tenant_id = $1 AND d.organization_id IS NOT NULL),
           (SELECT count(*) FROM deals d WHERE d.tenant_id = $1 AND d.organization_id IS NOT NULL AND NOT EXISTS
               (SELECT FROM organizations o WHERE o.tenant_id = d.tenant_id AND o.id = d.organization_id))",
    )
    .bind(tenant)
    .fetch_one(tx.conn())
    .await?;
    let expected = [
        ("contacts.organization_id", plan.contacts.organizations.iter().flatten().count() as i64, refs.0, refs.1),
        ("deals.contact_id", plan.deals.contacts.len() as i64, refs.2, refs.3),
        ("deals.organization_id", plan.deals.organizations.iter().flatten().count() as i64, refs.4, refs.5),
    ];
    for (column, want, set, dangling) in expected {
        if set != want || dangling != 0 {
            let table = column.split('.').next().unwrap_or(column);
            problems.push(Problem::new(
                table,
                None,
                format!("{column}: {set} references set ({want} expected), {dangling} not within this tenant"),
            ));
        }
    }
    Ok(problems)
}
