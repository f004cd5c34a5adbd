//! The adopted tables as the API sees them, read from the live catalog: each table's columns
//! with their types, its key, the columns it may be filtered on, its foreign keys and the roles
//! that may read and write it. This is the allowlist: a request can only ever name a table and
//! columns found here, and every name is quoted when it is put into SQL.

use std::collections::BTreeMap;

use sqlx::PgConnection;

use crate::domain::Role;
use crate::roles::ADOPTED_TABLES_REGISTRY;

/// The scalar types the API reads and writes as JSON (and `Other`: any type PostgreSQL can
/// read from text, sent as a JSON string and checked by PostgreSQL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scalar {
    Int2,
    Int4,
    Int8,
    /// `numeric(p, s)` when declared so: at most `p - s` digits before the point and `s` after
    /// it (PostgreSQL would round more away silently; the API refuses instead).
    Numeric {
        integer_digits: Option<u32>,
        scale: Option<u32>,
    },
    Float4,
    Float8,
    Bool,
    /// text, varchar(n), char(n): `max` characters when declared.
    Text {
        max: Option<usize>,
    },
    Uuid,
    Date,
    Timestamptz,
    Timestamp,
    Jsonb,
    Json,
    /// An enum type: one of its labels.
    Enum(Vec<String>),
    /// Anything else (inet, interval, bytea, …): a string in the type's text form.
    Other,
}

impl Scalar {
    /// From the type's name in `pg_type`, its modifier, and its enum labels if it is one.
    fn of(type_name: &str, typmod: i32, labels: Option<Vec<String>>) -> Scalar {
        if let Some(labels) = labels {
            return Scalar::Enum(labels);
        }
        let declared = usize::try_from(typmod - 4).ok().filter(|_| typmod > 4);
        match type_name {
            "int2" => Scalar::Int2,
            "int4" => Scalar::Int4,
            "int8" => Scalar::Int8,
            "numeric" => Scalar::Numeric {
                // typmod - 4 = precision << 16 | scale
                integer_digits: declared
                    .and_then(|m| u32::try_from(((m >> 16) & 0xffff).saturating_sub(m & 0xffff)).ok()),
                scale: declared.and_then(|m| u32::try_from(m & 0xffff).ok()),
            },
            "float4" => Scalar::Float4,
            "float8" => Scalar::Float8,
            "bool" => Scalar::Bool,
            "text" | "citext" | "name" => Scalar::Text { max: None },
            "varchar" | "bpchar" => Scalar::Text { max: declared },
            "uuid" => Scalar::Uuid,
            "date" => Scalar::Date,
            "timestamptz" => Scalar::Timestamptz,
            "timestamp" => Scalar::Timestamp,
            "jsonb" => Scalar::Jsonb,
            "json" => Scalar::Json,
            _ => Scalar::Other,
        }
    }

    /// Whether a value of this type can name a row in a path (`/v1/data/{table}/{id}`).
    fn can_be_key(&self) -> bool {
        matches!(self, Scalar::Int2 | Scalar::Int4 | Scalar::Int8 | Scalar::Uuid | Scalar::Text { .. })
    }
}

#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub scalar: Scalar,
    /// An array of `scalar` (one dimension as far as the API checks).
    pub array: bool,
    /// The type as SQL spells it without modifiers (`character varying`, `numeric[]`), for casts
    /// of text a request sent (a modifier would truncate silently; the column checks it).
    pub cast: String,
    pub not_null: bool,
    pub has_default: bool,
    /// `GENERATED ALWAYS AS IDENTITY` or a generated column: the database sets it, never a request.
    pub always_generated: bool,
    /// Its default draws from a sequence (identity, serial): the database numbers it. The
    /// sequence is shared by every tenant, so a request never sets such a column — one tenant
    /// picking an id near the sequence's end could later exhaust it for all of them.
    pub sequence: bool,
}

impl Column {
    /// A request may set it (on insert and update).
    pub fn writable(&self) -> bool {
        !self.always_generated && !self.sequence
    }

    /// An insert must carry it.
    pub fn required(&self) -> bool {
        self.not_null && !self.has_default && !self.sequence && !self.always_generated
    }
}

#[derive(Debug, Clone)]
pub struct ForeignKey {
    pub name: String,
    /// Its columns other than tenant_id.
    pub columns: Vec<String>,
    pub references: String,
}

/// One adopted table as the API serves it.
#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    /// Every column but tenant_id, in table order.
    pub columns: Vec<Column>,
    /// The primary key's column after tenant_id, when the key is exactly (tenant_id, that).
    pub key: Option<String>,
    /// Why the table is not served over HTTP (`tables list` shows it), or None.
    pub not_served: Option<String>,
    /// Columns `?column=value` may filter on: the first column after tenant_id of an index.
    pub filterable: Vec<String>,
    pub foreign_keys: Vec<ForeignKey>,
    /// Unique constraints and indexes with their columns other than tenant_id.
    pub uniques: BTreeMap<String, Vec<String>>,
    pub read: Vec<Role>,
    pub write: Vec<Role>,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn key_column(&self) -> Option<&Column> {
        self.key.as_deref().and_then(|k| self.column(k))
    }
}

/// Every adopted table, by name. `generation` changes with every reload, so what is derived
/// from it (the OpenAPI document, prepared statements) knows when to be derived again.
#[derive(Debug, Default)]
pub struct Schema {
    pub tables: BTreeMap<String, Table>,
    pub generation: u64,
}

type ColumnRow = (String, String, String, String, i32, bool, bool, String, String, bool, Option<Vec<String>>, bool);

/// Read the adopted tables from the catalog (as whichever role: the registry and the catalog
/// are readable by the app role). A registry row whose table is gone is skipped.
pub async fn load(conn: &mut PgConnection, generation: u64) -> Result<Schema, sqlx::Error> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(ADOPTED_TABLES_REGISTRY)
        .fetch_one(&mut *conn)
        .await?;
    if !exists {
        return Ok(Schema { tables: BTreeMap::new(), generation });
    }
    // A constant table name; everything else is bound or comes from the catalog.
    let registry: Vec<(String, Vec<String>, Vec<String>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT r.table_name, r.read_roles, r.write_roles FROM {ADOPTED_TABLES_REGISTRY} r
           JOIN pg_class c ON c.relname = r.table_name AND c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
          ORDER BY 1"
    )))
    .fetch_all(&mut *conn)
    .await?;
    let names: Vec<String> = registry.iter().map(|(n, _, _)| n.clone()).collect();
    let columns: Vec<ColumnRow> = sqlx::query_as(
        "SELECT c.relname::text, a.attname::text, coalesce(e.typname, t.typname)::text,
                format_type(a.atttypid, NULL), a.atttypmod, e.oid IS NOT NULL, a.attnotnull,
                a.attidentity::text, a.attgenerated::text, a.atthasdef,
                CASE WHEN coalesce(e.typtype, t.typtype) = 'e' THEN
                  ARRAY(SELECT enumlabel::text FROM pg_enum WHERE enumtypid = coalesce(e.oid, t.oid) ORDER BY enumsortorder)
                END,
                pg_get_serial_sequence(format('%I', c.relname), a.attname) IS NOT NULL
           FROM pg_class c
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
           JOIN pg_type t ON t.oid = a.atttypid
           LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
          WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY($1)
          ORDER BY c.relname, a.attnum",
    )
    .bind(&names)
    .fetch_all(&mut *conn)
    .await?;
    // Indexes (the primary key's among them) as column-name lists.
    let indexes: Vec<(String, String, bool, bool, Vec<String>)> = sqlx::query_as(
        "SELECT c.relname::text, i.indexrelid::regclass::text, i.indisprimary, i.indisunique,
                ARRAY(SELECT coalesce(a.attname::text, '') FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o)
                        LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n ORDER BY k.o)
           FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
          WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY($1) AND i.indpred IS NULL
          ORDER BY 1, 2",
    )
    .bind(&names)
    .fetch_all(&mut *conn)
    .await?;
    let foreign_keys: Vec<(String, String, String, Vec<String>)> = sqlx::query_as(
        "SELECT c.relname::text, con.conname::text, t.relname::text,
                ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, o)
                        JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.o)
           FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_class t ON t.oid = con.confrelid
          WHERE con.contype = 'f' AND c.relnamespace = 'public'::regnamespace AND c.relname = ANY($1)
          ORDER BY 1, 2",
    )
    .bind(&names)
    .fetch_all(&mut *conn)
    .await?;

    let roles = |names: &[String]| Role::ALL.into_iter().filter(|r| names.iter().any(|n| n == r.as_str())).collect();
    let mut tables = BTreeMap::new();
    for (name, read, write) in &registry {
        let mut table = Table {
            name: name.clone(),
            columns: Vec::new(),
            key: None,
            not_served: None,
            filterable: Vec::new(),
            foreign_keys: Vec::new(),
            uniques: BTreeMap::new(),
            read: roles(read),
            write: roles(write),
        };
        for (_, column, type_name, cast, typmod, array, not_null, identity, generated, has_default, labels, sequence) in
            columns.iter().filter(|c| &c.0 == name)
        {
            if column == "tenant_id" {
                continue;
            }
            table.columns.push(Column {
                name: column.clone(),
                scalar: Scalar::of(type_name, *typmod, labels.clone()),
                array: *array,
                cast: cast.clone(),
                not_null: *not_null,
                has_default: *has_default,
                always_generated: identity == "a" || !generated.is_empty(),
                sequence: *sequence,
            });
        }
        let without_tenant = |cols: &[String]| cols.iter().filter(|c| *c != "tenant_id").cloned().collect::<Vec<_>>();
        for (_, index, primary, unique, cols) in indexes.iter().filter(|i| &i.0 == name) {
            let rest = without_tenant(cols);
            if *primary {
                match rest.as_slice() {
                    [key] => table.key = Some(key.clone()),
                    _ => {
                        table.not_served = Some(format!(
                            "its primary key ({}) has {} columns after tenant_id; the API serves tables keyed by \
                             (tenant_id, one column)",
                            cols.join(", "),
                            rest.len()
                        ))
                    }
                }
            } else if *unique {
                table.uniques.insert(index.clone(), rest.clone());
            }
            // Usable for equality on its first column after tenant_id (or its first, if it
            // has no tenant_id: RLS adds the tenant anyway).
            if let Some(first) = rest.first()
                && !first.is_empty()
                && !table.filterable.contains(first)
            {
                table.filterable.push(first.clone());
            }
        }
        if table.not_served.is_none() {
            match table.key_column() {
                None => table.not_served = Some("it has no primary key".into()),
                Some(key) if key.array || !key.scalar.can_be_key() => {
                    table.not_served = Some(format!(
                        "its key column {} is of type {}; the API names rows by integer, uuid or text keys",
                        key.name, key.cast
                    ))
                }
                Some(_) => {}
            }
        }
        for (_, constraint, references, cols) in foreign_keys.iter().filter(|f| &f.0 == name) {
            table.foreign_keys.push(ForeignKey {
                name: constraint.clone(),
                columns: without_tenant(cols),
                references: references.clone(),
            });
        }
        // Filters only on columns the API can parse from a query string.
        table.filterable.retain(|c| table.columns.iter().any(|col| &col.name == c && !col.array));
        tables.insert(name.clone(), table);
    }
    Ok(Schema { tables, generation })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modifiers_give_lengths_and_digits() {
        // varchar(20): typmod 24; numeric(12, 2): (12 << 16 | 2) + 4.
        assert_eq!(Scalar::of("varchar", 24, None), Scalar::Text { max: Some(20) });
        assert_eq!(Scalar::of("text", -1, None), Scalar::Text { max: None });
        assert_eq!(
            Scalar::of("numeric", (12 << 16 | 2) + 4, None),
            Scalar::Numeric { integer_digits: Some(10), scale: Some(2) }
        );
        assert_eq!(Scalar::of("numeric", -1, None), Scalar::Numeric { integer_digits: None, scale: None });
        assert_eq!(Scalar::of("inet", -1, None), Scalar::Other);
        assert_eq!(Scalar::of("mood", -1, Some(vec!["sad".into()])), Scalar::Enum(vec!["sad".into()]));
    }
}
