//! The statements the generic API runs on an adopted table. Table and column names come only
//! from the catalog (`Schema`) and are always quoted; every value a request carries is a bound
//! parameter: `$1` the tenant, then text cast to the column's type, or one JSON object that
//! `json_populate_record` turns into the table's row type (PostgreSQL reads each field with the
//! column type's own input function). Each statement also filters on `tenant_id = $1`: RLS is
//! the guarantee, the filter is the index path — as for the built-in tables.

use super::schema::{Column, Scalar, Table};
use crate::migrate::quote_ident;

/// The JSON object a row is answered as: every column but tenant_id (or the `select`ed ones),
/// numeric as a decimal string, from the row aliased `t`.
fn row_json(columns: &[&Column]) -> String {
    let list: Vec<String> = columns
        .iter()
        .map(|c| {
            let name = quote_ident(&c.name);
            match (&c.scalar, c.array) {
                (Scalar::Numeric { .. }, false) => format!("t.{name}::text AS {name}"),
                (Scalar::Numeric { .. }, true) => format!("t.{name}::text[] AS {name}"),
                _ => format!("t.{name}"),
            }
        })
        .collect();
    if list.is_empty() {
        return "'{}'::text".into();
    }
    // to_json, not to_jsonb: columns in table order, and a json column's text as stored.
    format!("(SELECT to_json(r) FROM (SELECT {}) r)::text", list.join(", "))
}

/// `t.key = $n::text::type`: the key (or a filter) as text, cast by PostgreSQL.
fn equals(column: &Column, param: usize) -> String {
    format!("t.{} = ${param}::text::{}", quote_ident(&column.name), column.cast)
}

fn all_columns(table: &Table) -> Vec<&Column> {
    table.columns.iter().collect()
}

/// One row by key: `$1` tenant, `$2` key text.
pub fn get(table: &Table, key: &Column) -> String {
    format!(
        "SELECT {} FROM {} t WHERE t.tenant_id = $1 AND {}",
        row_json(&all_columns(table)),
        quote_ident(&table.name),
        equals(key, 2)
    )
}

/// One row by key, to be PREPAREd with `(uuid, key type)` (`TenantScope::read_once_adhoc`):
/// `$1` tenant, `$2` the key in its own type.
pub fn get_prepared(table: &Table, key: &Column) -> (String, String) {
    let sql = format!(
        "SELECT {} FROM {} t WHERE t.tenant_id = $1 AND t.{} = $2",
        row_json(&all_columns(table)),
        quote_ident(&table.name),
        quote_ident(&key.name)
    );
    (format!("uuid, {}", key.cast), sql)
}

/// A keyset page: `$1` tenant, `$2` the previous page's last key (text) or NULL, `$3` the limit,
/// then one text parameter per filter, in `filters` order. Answers (key text, row JSON).
pub fn list(table: &Table, key: &Column, filters: &[&Column], select: &[&Column]) -> String {
    let mut sql = format!(
        "SELECT t.{k}::text, {} FROM {} t WHERE t.tenant_id = $1 AND ($2::text IS NULL OR t.{k} > $2::text::{})",
        row_json(select),
        quote_ident(&table.name),
        key.cast,
        k = quote_ident(&key.name),
    );
    for (i, column) in filters.iter().enumerate() {
        sql.push_str(" AND ");
        sql.push_str(&equals(column, 4 + i));
    }
    sql.push_str(&format!(" ORDER BY t.{} LIMIT $3", quote_ident(&key.name)));
    sql
}

/// Insert `$2` (a JSON object holding exactly `columns`) for tenant `$1`; answers the row.
pub fn insert(table: &Table, columns: &[&Column]) -> String {
    let names: Vec<String> = columns.iter().map(|c| quote_ident(&c.name)).collect();
    let from_record: Vec<String> = names.iter().map(|n| format!("v.{n}")).collect();
    let ident = quote_ident(&table.name);
    format!(
        "INSERT INTO {ident} AS t (tenant_id{}) SELECT $1{} FROM json_populate_record(NULL::{ident}, $2::text::json) v \
         RETURNING {}",
        names.iter().map(|n| format!(", {n}")).collect::<String>(),
        from_record.iter().map(|n| format!(", {n}")).collect::<String>(),
        row_json(&all_columns(table)),
    )
}

/// Set `columns` from `$3` (a JSON object) on the row of tenant `$1` whose key is `$2`; answers
/// the row, or nothing when there is no such row.
pub fn update(table: &Table, key: &Column, columns: &[&Column]) -> String {
    let ident = quote_ident(&table.name);
    let sets: Vec<String> = columns
        .iter()
        .map(|c| {
            let n = quote_ident(&c.name);
            format!("{n} = v.{n}")
        })
        .collect();
    format!(
        "UPDATE {ident} AS t SET {} FROM json_populate_record(NULL::{ident}, $3::text::json) v \
         WHERE t.tenant_id = $1 AND {} RETURNING {}",
        sets.join(", "),
        equals(key, 2),
        row_json(&all_columns(table)),
    )
}

/// Delete the row of tenant `$1` whose key is `$2`.
pub fn delete(table: &Table, key: &Column) -> String {
    format!("DELETE FROM {} AS t WHERE t.tenant_id = $1 AND {}", quote_ident(&table.name), equals(key, 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, scalar: Scalar, cast: &str) -> Column {
        Column {
            name: name.into(),
            scalar,
            array: false,
            cast: cast.into(),
            not_null: true,
            has_default: false,
            always_generated: false,
            sequence: false,
        }
    }

    #[test]
    fn names_are_quoted_and_values_are_parameters() {
        let table = Table {
            name: "Odd \"name\"".into(),
            columns: vec![
                column("id", Scalar::Int8, "bigint"),
                column("budget", Scalar::Numeric { integer_digits: None, scale: None }, "numeric"),
            ],
            key: Some("id".into()),
            not_served: None,
            filterable: vec![],
            foreign_keys: vec![],
            uniques: Default::default(),
            read: vec![],
            write: vec![],
        };
        let key = table.key_column().expect("key");
        assert_eq!(
            get(&table, key),
            "SELECT (SELECT to_json(r) FROM (SELECT t.\"id\", t.\"budget\"::text AS \"budget\") r)::text FROM \
             \"Odd \"\"name\"\"\" t WHERE t.tenant_id = $1 AND t.\"id\" = $2::text::bigint"
        );
        let budget = table.column("budget").expect("budget");
        let sql = list(&table, key, &[budget], &[key]);
        assert!(sql.ends_with("AND t.\"budget\" = $4::text::numeric ORDER BY t.\"id\" LIMIT $3"), "{sql}");
        let sql = insert(&table, &[budget]);
        assert!(
            sql.starts_with("INSERT INTO \"Odd \"\"name\"\"\" AS t (tenant_id, \"budget\") SELECT $1, v.\"budget\"")
        );
    }
}
