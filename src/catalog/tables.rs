//! Reading the catalog's tables: which tables there are in `public`, and which are tenant tables.

use sqlx::PgConnection;

use crate::roles::{BUILT_IN_TENANT_TABLES, PLATFORM_TABLES};

/// A table in schema `public` (also the input of the Citus distribution plan, `migrate::citus`:
/// one definition of a tenant table for both).
pub(crate) struct Table {
    pub(crate) name: String,
    pub(super) rls_enabled: bool,
    pub(super) rls_forced: bool,
    has_tenant_id: bool,
    pub(super) tenant_id_not_null: bool,
}

impl Table {
    /// Tenant-owned: has `tenant_id` and is not one of the named platform tables.
    pub(crate) fn is_tenant(&self) -> bool {
        self.has_tenant_id && !PLATFORM_TABLES.contains(&self.name.as_str())
    }

    /// A tenant table of the operator's own (adopted or not yet): not one rowguard's
    /// migrations create. Its fix is `rowguard tables adopt`, never a rowguard source file.
    pub(super) fn is_operators(&self) -> bool {
        self.is_tenant() && !BUILT_IN_TENANT_TABLES.contains(&self.name.as_str())
    }
}

pub(super) fn is_tenant_table(tables: &[Table], name: &str) -> bool {
    tables.iter().any(|t| t.name == name && t.is_tenant())
}

pub(crate) async fn read_tables(conn: &mut PgConnection) -> Result<Vec<Table>, sqlx::Error> {
    let rows: Vec<(String, bool, bool, bool, bool)> = sqlx::query_as(
        "SELECT c.relname::text, c.relrowsecurity, c.relforcerowsecurity,
                a.attnum IS NOT NULL, coalesce(a.attnotnull, false)
           FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
           LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
          WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
          ORDER BY 1",
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(name, rls_enabled, rls_forced, has_tenant_id, tenant_id_not_null)| Table {
            name,
            rls_enabled,
            rls_forced,
            has_tenant_id,
            tenant_id_not_null,
        })
        .collect())
}
