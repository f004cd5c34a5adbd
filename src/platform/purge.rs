//! Purging a deleted tenant's rows: every table with a `tenant_id` column, found from the
//! catalog at the time of the purge (so a table added later is covered with no code change),
//! deleted children before parents, inside the tenant's own transaction.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::AssertSqlSafe;

use crate::db::TenantTx;

/// Delete every row of the transaction's tenant from every table that has a `tenant_id`.
/// Returns `(table, rows deleted)` in the order the tables were purged.
///
/// No RLS bypass: the caller's transaction has set the tenant, so even a statement without
/// the explicit filter could not reach another tenant's rows; the filter is the index path.
/// Table names come from the catalog and are quoted by PostgreSQL's own `format('%I.%I')`.
pub async fn purge_tenant_rows(tx: &mut TenantTx<'_>) -> Result<Vec<(String, u64)>, sqlx::Error> {
    let tenant = tx.tenant();
    // The documented exception to the audit log's append-only rule (sql/V10__audit.sql): a
    // deleted tenant's events go with it, and its row changes are not recorded as it goes.
    sqlx::query!("SET LOCAL app.audit_purge = 'on'").execute(tx.conn()).await?;
    // The audit sealer's lock on this tenant (sql/V21): a sealer running now finishes first,
    // and one starting later sees the tenant deleted and leaves its tree alone — else it could
    // write the tree's state back after the purge.
    sqlx::query!("SELECT pg_advisory_xact_lock(hashtextextended('rowguard.audit.seal/' || $1::text, 0))", tenant as _)
        .execute(tx.conn())
        .await?;
    // On Citus the sealer runs on the worker holding the tenant's shards, and its lock is that
    // node's: taken there too, inside this transaction (a call delegated by tenant).
    if crate::backend::Backend::detect(tx.conn()).await? == crate::backend::Backend::Citus {
        sqlx::query("SELECT audit_seal_lock_tenant($1)").bind(tenant.0).execute(tx.conn()).await?;
    }
    let mut report = Vec::new();
    for table in tables_children_first(tx).await? {
        let sql = format!("DELETE FROM {table} WHERE tenant_id = $1");
        let deleted = sqlx::query(AssertSqlSafe(sql)).bind(tenant).execute(tx.conn()).await?.rows_affected();
        report.push((table, deleted));
    }
    Ok(report)
}

/// Tables (quoted, schema-qualified) with a `tenant_id` column, ordered so that a table comes
/// before every table it references by foreign key: deleting in this order never trips a
/// NO ACTION or RESTRICT constraint. Partitions are left to their parent table.
pub async fn tables_children_first(tx: &mut TenantTx<'_>) -> Result<Vec<String>, sqlx::Error> {
    let tables: Vec<(i64, String)> = sqlx::query_as(
        "SELECT c.oid::bigint, format('%I.%I', n.nspname, c.relname)
           FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
          WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
            AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'",
    )
    .fetch_all(tx.conn())
    .await?;
    let references: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT DISTINCT conrelid::bigint, confrelid::bigint FROM pg_constraint
          WHERE contype = 'f' AND conrelid <> confrelid",
    )
    .fetch_all(tx.conn())
    .await?;
    Ok(children_first(&tables, &references))
}

/// Kahn's algorithm over "child references parent" edges: emit a table once no remaining
/// table references it. Ties go by name so the order is stable. A reference cycle (none
/// today) cannot be ordered; its tables go last, by name, and the database will say which
/// constraint stops the purge.
fn children_first(tables: &[(i64, String)], references: &[(i64, i64)]) -> Vec<String> {
    let names: BTreeMap<i64, &str> = tables.iter().map(|(oid, name)| (*oid, name.as_str())).collect();
    let mut referrers: BTreeMap<i64, BTreeSet<i64>> = names.keys().map(|oid| (*oid, BTreeSet::new())).collect();
    for (child, parent) in references {
        if names.contains_key(child)
            && let Some(set) = referrers.get_mut(parent)
        {
            set.insert(*child);
        }
    }
    let mut order = Vec::with_capacity(tables.len());
    let mut remaining: BTreeSet<i64> = names.keys().copied().collect();
    loop {
        let mut ready: Vec<i64> =
            remaining.iter().copied().filter(|t| referrers[t].iter().all(|c| !remaining.contains(c))).collect();
        if ready.is_empty() {
            break;
        }
        ready.sort_by_key(|t| names[t]);
        for t in ready {
            remaining.remove(&t);
            order.push(names[&t].to_string());
        }
    }
    let mut rest: Vec<&str> = remaining.iter().map(|t| names[t]).collect();
    rest.sort();
    order.extend(rest.into_iter().map(str::to_string));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_come_before_the_tables_they_reference() {
        // deals → contacts → organizations, deals → organizations, refresh_tokens → users;
        // tenant_domains → tenants (tenants has no tenant_id, so it is not in the set).
        let tables = [
            (1, "users"),
            (2, "contacts"),
            (3, "organizations"),
            (4, "deals"),
            (5, "refresh_tokens"),
            (6, "tenant_domains"),
        ]
        .map(|(o, n)| (o, n.to_string()));
        let refs = [(4, 2), (4, 3), (2, 3), (5, 1), (6, 99), (1, 99)];
        let order = children_first(&tables, &refs);
        let pos = |n: &str| order.iter().position(|t| t == n).unwrap_or(usize::MAX);
        assert_eq!(order.len(), tables.len());
        for (child, parent) in [
            ("deals", "contacts"),
            ("deals", "organizations"),
            ("contacts", "organizations"),
            ("refresh_tokens", "users"),
        ] {
            assert!(pos(child) < pos(parent), "{child} must come before {parent}: {order:?}");
        }
    }

    #[test]
    fn a_cycle_still_lists_every_table_once() {
        let tables = [(1, "a"), (2, "b"), (3, "c")].map(|(o, n)| (o, n.to_string()));
        let order = children_first(&tables, &[(1, 2), (2, 1), (3, 1)]);
        assert_eq!(order, vec!["c", "a", "b"]);
    }
}
