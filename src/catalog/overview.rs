//! `rowguard tables list`: every tenant table — built-in, adopted, or the operator's and not
//! adopted yet — with its RLS, audit and API state, read from the live catalog. Reads only.

use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::tables::read_tables;
use super::{Finding, verify};
use crate::roles::{ADOPTED_TABLES_REGISTRY, AUDIT_EXEMPT_TABLES, BUILT_IN_TENANT_TABLES};

/// Where a tenant table comes from, and so how the API serves it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TableOrigin {
    /// Created and guarded by rowguard's own migrations; served by its own routes.
    BuiltIn,
    /// Adopted (`tables adopt`), with the tenant roles that may read and write it.
    Adopted { read_roles: Vec<String>, write_roles: Vec<String> },
    /// Has tenant_id but was never adopted: `policies verify` reports it until it is.
    NotAdopted,
}

/// What `tables list` shows for one tenant table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TableOverview {
    pub name: String,
    pub origin: TableOrigin,
    pub rls_enabled: bool,
    pub rls_forced: bool,
    /// The names of the table's policies.
    pub policies: Vec<String>,
    /// `enabled`, `disabled`, `missing`, or `exempt` (AUDIT_EXEMPT_TABLES).
    pub audit: &'static str,
    /// What `policies verify` says about this table (rule ids); empty when nothing.
    pub findings: Vec<String>,
    /// Why the HTTP API does not serve this adopted table although it is guarded (its key,
    /// say), as the service itself decides it (`data::schema::load`); None when it is served
    /// or is not an adopted table.
    pub not_served: Option<String>,
}

/// Every tenant table (the catalog's one definition, `Table::is_tenant`), by name, and the
/// adopted tables the registry names that no longer exist (with `rls_enabled` false and the
/// finding `adopted-table-missing`), so a dropped table does not vanish from the list silently.
pub async fn tenant_tables(conn: &mut PgConnection) -> Result<Vec<TableOverview>, sqlx::Error> {
    let findings: Vec<Finding> = verify(&mut *conn).await?;
    let mut tx = conn.begin().await?;
    sqlx::query!("SET TRANSACTION READ ONLY").execute(&mut *tx).await?;
    let tables = read_tables(&mut tx).await?;
    let has_registry: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(ADOPTED_TABLES_REGISTRY)
        .fetch_one(&mut *tx)
        .await?;
    let adopted: Vec<(String, Vec<String>, Vec<String>)> = if has_registry {
        // A constant table name.
        sqlx::query_as(AssertSqlSafe(format!(
            "SELECT table_name, read_roles, write_roles FROM {ADOPTED_TABLES_REGISTRY} ORDER BY 1"
        )))
        .fetch_all(&mut *tx)
        .await?
    } else {
        Vec::new()
    };
    let policies: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, p.polname::text FROM pg_policy p
           JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' ORDER BY 1, 2",
    )
    .fetch_all(&mut *tx)
    .await?;
    let triggers: Vec<(String, bool)> = sqlx::query_as(
        "SELECT c.relname::text, bool_or(t.tgenabled <> 'D') FROM pg_trigger t
           JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_proc p ON p.oid = t.tgfoid
          WHERE n.nspname = 'public' AND p.proname = 'audit_row_change' AND NOT t.tgisinternal
          GROUP BY 1",
    )
    .fetch_all(&mut *tx)
    .await?;
    // The service's own reading of the adopted tables: what it will not serve, and why.
    let served = crate::data::schema::load(&mut tx, 0).await?;
    tx.rollback().await?;

    let mut out: Vec<TableOverview> = tables
        .iter()
        .filter(|t| t.is_tenant())
        .map(|t| {
            let name = t.name.clone();
            let origin = match adopted.iter().find(|(n, ..)| *n == name) {
                Some((_, read, write)) => TableOrigin::Adopted { read_roles: read.clone(), write_roles: write.clone() },
                None if BUILT_IN_TENANT_TABLES.contains(&name.as_str()) => TableOrigin::BuiltIn,
                None => TableOrigin::NotAdopted,
            };
            let audit = match triggers.iter().find(|(n, _)| *n == name) {
                Some((_, true)) => "enabled",
                Some((_, false)) => "disabled",
                None if AUDIT_EXEMPT_TABLES.contains(&name.as_str()) => "exempt",
                None => "missing",
            };
            TableOverview {
                policies: policies.iter().filter(|(n, _)| *n == name).map(|(_, p)| p.clone()).collect(),
                findings: findings.iter().filter(|f| f.object == name).map(|f| f.rule.id().to_string()).collect(),
                not_served: served.tables.get(&name).and_then(|t| t.not_served.clone()),
                rls_enabled: t.rls_enabled,
                rls_forced: t.rls_forced,
                origin,
                audit,
                name,
            }
        })
        .collect();
    for (name, read, write) in &adopted {
        if !out.iter().any(|t| &t.name == name) {
            out.push(TableOverview {
                name: name.clone(),
                origin: TableOrigin::Adopted { read_roles: read.clone(), write_roles: write.clone() },
                rls_enabled: false,
                rls_forced: false,
                policies: Vec::new(),
                audit: "missing",
                findings: findings.iter().filter(|f| &f.object == name).map(|f| f.rule.id().to_string()).collect(),
                not_served: Some("the table does not exist".into()),
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}
