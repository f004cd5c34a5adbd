//! Keys of tenant tables: primary and unique keys and an index leading with tenant_id,
//! foreign keys between tenant tables carrying it.

use super::tables::{Table, is_tenant_table};
use super::{Findings, Rule, Tx};

/// Citus readiness (invariant 1): unique keys lead with tenant_id, an index leads with it,
/// and foreign keys between tenant tables carry it.
pub(super) async fn check_keys(tx: &mut Tx<'_>, tables: &[Table], out: &mut Findings) -> Result<(), sqlx::Error> {
    let indexes: Vec<(String, String, bool, bool)> = sqlx::query_as(
        "SELECT c.relname::text, i.indexrelid::regclass::text, i.indisunique, i.indkey[0] = a.attnum
           FROM pg_index i
           JOIN pg_class c ON c.oid = i.indrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
          WHERE n.nspname = 'public'
          ORDER BY 1, 2",
    )
    .fetch_all(&mut **tx)
    .await?;
    for table in tables.iter().filter(|t| t.is_tenant()) {
        let name = &table.name;
        let own: Vec<_> = indexes.iter().filter(|(t, ..)| t == name).collect();
        if !own.iter().any(|(_, _, _, leads)| *leads) {
            out.add(
                name,
                Rule::NoTenantIdIndex,
                format!("{name} has no index leading with tenant_id; make its primary key (tenant_id, id)"),
            );
        }
        for (_, index, _, _) in own.iter().filter(|(_, _, unique, leads)| *unique && !*leads) {
            out.add(
                name,
                Rule::UniqueKeyNotLeadingTenantId,
                format!(
                    "{name}: unique index {index} does not lead with tenant_id; uniqueness is per tenant \
                     (and Citus needs the distribution column in it), so make it (tenant_id, …)"
                ),
            );
        }
    }

    let foreign_keys: Vec<(String, String, String, bool)> = sqlx::query_as(
        "SELECT c.relname::text, con.conname::text, t.oid::regclass::text,
                EXISTS (SELECT FROM unnest(con.conkey, con.confkey) AS k(src, dst)
                         WHERE k.src = a.attnum AND k.dst = ta.attnum)
           FROM pg_constraint con
           JOIN pg_class c ON c.oid = con.conrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_class t ON t.oid = con.confrelid
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
           LEFT JOIN pg_attribute ta ON ta.attrelid = t.oid AND ta.attname = 'tenant_id' AND NOT ta.attisdropped
          WHERE con.contype = 'f' AND n.nspname = 'public'
          ORDER BY 1, 2",
    )
    .fetch_all(&mut **tx)
    .await?;
    for (table, constraint, target, matches_tenant) in foreign_keys {
        if is_tenant_table(tables, &table) && is_tenant_table(tables, &target) && !matches_tenant {
            out.add(
                &table,
                Rule::ForeignKeyWithoutTenantId,
                format!(
                    "{table}: foreign key {constraint} to tenant table {target} does not match tenant_id to \
                     tenant_id; foreign-key checks ignore RLS, so it can point at another tenant's row — make it \
                     FOREIGN KEY (tenant_id, …) REFERENCES {target} (tenant_id, …)"
                ),
            );
        }
    }
    Ok(())
}
