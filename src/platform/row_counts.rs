//! How many rows a tenant has in each tenant table, for the operator console: counted inside
//! that tenant's own transaction, as the platform role, and only in tables whose row-level
//! security is enabled and forced. Reads only.
//!
//! Why this is safe without a bypass: the platform role is NOSUPERUSER NOBYPASSRLS and owns no
//! table, and `TenantTx::begin_on` sets the tenant transaction-locally, so every count is
//! held by the table's policy to this tenant's rows even if its explicit `tenant_id = $1`
//! filter were wrong (the filter is the index path). A table with `tenant_id` but without
//! forced RLS — a platform table such as `tenant_domains`, or one `policies verify` reports —
//! is not counted at all. Why it is cheap: each table's count stops at `cap` rows (an index
//! range scan of at most `cap` entries), and one statement counts every table.

use sqlx::AssertSqlSafe;

use super::{PlatformConn, PlatformError};
use crate::db::TenantTx;
use crate::domain::TenantId;

/// The tables counted: their names, and the statement that counts them all for one tenant.
pub struct CountedTables {
    pub names: Vec<String>,
    statement: String,
}

impl PlatformConn {
    /// The tenant tables this connection may count (RLS enabled and forced, SELECT granted),
    /// read from the live catalog once for a page of tenants.
    pub async fn countable_tables(&mut self) -> Result<CountedTables, PlatformError> {
        let tables: Vec<(String, String)> = sqlx::query_as(
            "SELECT c.relname::text, format('%I.%I', n.nspname, c.relname)
               FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
              WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
                AND c.relrowsecurity AND c.relforcerowsecurity
                AND has_table_privilege(c.oid, 'SELECT')
                AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
              ORDER BY 1",
        )
        .fetch_all(self.conn())
        .await?;
        // Names are the catalog's, quoted by PostgreSQL's own format('%I.%I'); values are bound.
        let counts: Vec<String> = tables
            .iter()
            .map(|(_, quoted)| format!("(SELECT count(*) FROM (SELECT FROM {quoted} WHERE tenant_id = $1 LIMIT $2) s)"))
            .collect();
        let statement = format!("SELECT ARRAY[{}]::bigint[]", counts.join(", "));
        Ok(CountedTables { names: tables.into_iter().map(|(name, _)| name).collect(), statement })
    }

    /// Rows of `tenant` per table of `tables` (in its order), each counted up to `cap`, in the
    /// tenant's own transaction.
    pub async fn row_counts(
        &mut self,
        tenant: TenantId,
        tables: &CountedTables,
        cap: i64,
    ) -> Result<Vec<(String, i64)>, PlatformError> {
        if tables.names.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = TenantTx::begin_on(self.conn(), tenant).await?;
        let counts: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(tables.statement.clone()))
            .bind(tenant)
            .bind(cap)
            .fetch_one(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(tables.names.iter().cloned().zip(counts).collect())
    }
}
