//! `import schemas --all-tables`: what the tenant schemas hold beyond the mapped resources,
//! whether every schema holds the same, the row-level tables rowguard makes of it (issue 19),
//! and copying each tenant's rows into them inside that tenant's import transaction.
//!
//! Each tenant schema's catalog is read (columns with their types, NOT NULL, defaults and
//! identity; primary key, unique constraints, foreign keys, CHECKs; plain indexes) and turned
//! into canonical lines, so two schemas are compared line by line and a difference is named
//! per schema rather than guessed. The migration for the reference schema (the first tenant's)
//! puts `tenant_id` first in every key: `PRIMARY KEY (tenant_id, id)`, unique constraints and
//! indexes with `tenant_id` in front, and composite foreign keys `(tenant_id, x) REFERENCES
//! t (tenant_id, id)`, so no row can reference another tenant's. Serial and identity columns
//! become identity columns; names stay the source's, so the project's own SQL keeps working.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::PgConnection;

/// Django's and django-tenants' own tables: never brought by `--all-tables` (the mapping's
/// `[all_tables] keep` brings one anyway; `skip` leaves out more).
pub const DJANGO_INTERNAL: &[&str] = &[
    "django_migrations",
    "django_content_type",
    "django_admin_log",
    "django_session",
    "auth_permission",
    "auth_group",
    "auth_group_permissions",
    "auth_user_groups",
    "auth_user_user_permissions",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// `format_type`: `integer`, `character varying(200)`, `numeric(12,2)`, …
    pub type_name: String,
    pub not_null: bool,
    /// A default other than a sequence's.
    pub default: Option<String>,
    /// A serial (sequence default) or identity column.
    pub identity: bool,
    /// The type is defined in the tenant schema itself (an enum, a domain): not carried.
    pub local_type: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKey {
    pub columns: Vec<String>,
    /// The referenced table, and whether it lives in the tenant schema.
    pub table: String,
    pub same_schema: bool,
    pub referenced: Vec<String>,
    /// pg_constraint's codes: a no action, r restrict, c cascade, n set null, d set default.
    pub on_delete: char,
    pub on_update: char,
    pub deferred: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    pub name: String,
    pub columns: Vec<Column>,
    pub primary_key: Vec<String>,
    pub uniques: Vec<Vec<String>>,
    pub foreign_keys: Vec<ForeignKey>,
    pub checks: Vec<String>,
    /// Plain indexes (not behind a constraint): unique?, key columns with their operator class.
    pub indexes: Vec<(bool, Vec<String>)>,
    /// Indexes on expressions or with a WHERE: named, not carried.
    pub other_indexes: Vec<String>,
}

impl Table {
    /// One line per fact, sorted: two schemas' tables are the same exactly when their lines are.
    pub fn canonical(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for c in &self.columns {
            lines.push(format!(
                "column {} {}{}{}",
                c.name,
                c.type_name,
                if c.not_null { " not null" } else { "" },
                match (&c.default, c.identity) {
                    (_, true) => " identity".to_string(),
                    (Some(d), false) => format!(" default {d}"),
                    (None, false) => String::new(),
                }
            ));
        }
        lines.push(format!("primary key ({})", self.primary_key.join(", ")));
        lines.extend(self.uniques.iter().map(|u| format!("unique ({})", u.join(", "))));
        lines.extend(self.foreign_keys.iter().map(|f| {
            format!(
                "foreign key ({}) references {} ({}) on delete {} on update {}",
                f.columns.join(", "),
                f.table,
                f.referenced.join(", "),
                f.on_delete,
                f.on_update
            )
        }));
        lines.extend(self.checks.iter().map(|c| format!("check {c}")));
        lines.extend(
            self.indexes
                .iter()
                .map(|(u, cols)| format!("{}index ({})", if *u { "unique " } else { "" }, cols.join(", "))),
        );
        lines.extend(self.other_indexes.iter().map(|i| format!("other index {i}")));
        lines.sort();
        lines
    }
}

/// Every table of each of `schemas` but those in `skip`: by schema, by table name. Three
/// catalog queries for all the schemas together (one per schema took 15 s for 1,000).
pub async fn read(
    conn: &mut PgConnection,
    schemas: &[String],
    skip: &BTreeSet<String>,
) -> Result<BTreeMap<String, BTreeMap<String, Table>>, sqlx::Error> {
    let mut all: BTreeMap<String, BTreeMap<String, Table>> =
        schemas.iter().map(|s| (s.clone(), BTreeMap::new())).collect();
    // (schema, table, column, type, not null, default, identity, type local to the schema)
    type ColumnRow = (String, String, String, String, bool, Option<String>, bool, bool);
    let columns: Vec<ColumnRow> = sqlx::query_as(
        "SELECT n.nspname::text, c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                pg_get_expr(d.adbin, d.adrelid), a.attidentity <> '', tn.nspname = n.nspname
           FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
           JOIN pg_type t ON t.oid = a.atttypid
           JOIN pg_namespace tn ON tn.oid = t.typnamespace
           LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
          WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p') AND NOT c.relispartition
          ORDER BY n.nspname, c.relname, a.attnum",
    )
    .bind(schemas)
    .fetch_all(&mut *conn)
    .await?;
    for (schema, table, name, type_name, not_null, default, identity, local_type) in columns {
        let Some(tables) = all.get_mut(&schema).filter(|_| !skip.contains(&table)) else { continue };
        let serial = default.as_deref().is_some_and(|d| d.starts_with("nextval("));
        let t = tables.entry(table.clone()).or_insert_with(|| Table { name: table, ..Table::default() });
        t.columns.push(Column {
            name,
            type_name,
            not_null,
            default: if serial { None } else { default },
            identity: identity || serial,
            local_type,
        });
    }
    type ConstraintRow =
        (String, String, String, Vec<String>, Option<String>, bool, Vec<String>, String, String, bool, String);
    let constraints: Vec<ConstraintRow> = sqlx::query_as(
        "SELECT n.nspname::text, c.relname::text, k.contype::text,
                ARRAY(SELECT a.attname::text FROM unnest(k.conkey) WITH ORDINALITY u(n, o)
                        JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n ORDER BY u.o),
                fc.relname::text, coalesce(fn.nspname = n.nspname, false),
                ARRAY(SELECT a.attname::text FROM unnest(k.confkey) WITH ORDINALITY u(n, o)
                        JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.n ORDER BY u.o),
                k.confdeltype::text, k.confupdtype::text, k.condeferred, pg_get_constraintdef(k.oid)
           FROM pg_constraint k
           JOIN pg_class c ON c.oid = k.conrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           LEFT JOIN pg_class fc ON fc.oid = k.confrelid
           LEFT JOIN pg_namespace fn ON fn.oid = fc.relnamespace
          WHERE n.nspname = ANY($1) AND k.contype IN ('p', 'u', 'f', 'c')
          ORDER BY n.nspname, c.relname, k.contype, k.conname",
    )
    .bind(schemas)
    .fetch_all(&mut *conn)
    .await?;
    for (schema, table, kind, columns, foreign, same_schema, referenced, del, upd, deferred, definition) in constraints
    {
        let Some(t) = all.get_mut(&schema).and_then(|tables| tables.get_mut(&table)) else { continue };
        match kind.as_str() {
            "p" => t.primary_key = columns,
            "u" => t.uniques.push(columns),
            "f" => t.foreign_keys.push(ForeignKey {
                columns,
                table: foreign.unwrap_or_default(),
                same_schema,
                referenced,
                on_delete: del.chars().next().unwrap_or('a'),
                on_update: upd.chars().next().unwrap_or('a'),
                deferred,
            }),
            _ => t.checks.push(definition),
        }
    }
    let indexes: Vec<(String, String, bool, Vec<String>, bool, String)> = sqlx::query_as(
        "SELECT n.nspname::text, c.relname::text, i.indisunique,
                -- A column's text leaves out its operator class; a non-default one (Django's
                -- `_like` indexes: varchar_pattern_ops) is added back, or the index changes meaning.
                ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true)
                             || CASE WHEN o.opcdefault THEN '' ELSE ' ' || quote_ident(o.opcname) END
                        FROM generate_series(1, i.indnkeyatts) k JOIN pg_opclass o ON o.oid = i.indclass[k - 1]
                       ORDER BY k),
                i.indexprs IS NOT NULL OR i.indpred IS NOT NULL, pg_get_indexdef(i.indexrelid)
           FROM pg_index i
           JOIN pg_class c ON c.oid = i.indrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = ANY($1) AND NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = i.indexrelid)
          ORDER BY n.nspname, c.relname, 4",
    )
    .bind(schemas)
    .fetch_all(&mut *conn)
    .await?;
    for (schema, table, unique, columns, other, definition) in indexes {
        let Some(t) = all.get_mut(&schema).and_then(|tables| tables.get_mut(&table)) else { continue };
        if other {
            // The index's own name and schema differ per schema: keep what follows USING.
            let shape = definition.split_once(" USING ").map(|(_, rest)| rest.to_string()).unwrap_or(definition);
            t.other_indexes.push(shape);
        } else {
            t.indexes.push((unique, columns));
        }
    }
    Ok(all)
}

/// How each schema differs from the reference: (schema, table, what), "-" lines the reference
/// has and the schema lacks, "+" lines the schema has and the reference lacks.
pub fn differences(
    reference: &BTreeMap<String, Table>,
    schema: &str,
    other: &BTreeMap<String, Table>,
) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let names: BTreeSet<&String> = reference.keys().chain(other.keys()).collect();
    for name in names {
        match (reference.get(name), other.get(name)) {
            (Some(_), None) => out.push((schema.to_string(), name.clone(), "table missing".into())),
            (None, Some(_)) => out.push((schema.to_string(), name.clone(), "table not in the reference schema".into())),
            (Some(a), Some(b)) => {
                let (a, b): (BTreeSet<String>, BTreeSet<String>) =
                    (a.canonical().into_iter().collect(), b.canonical().into_iter().collect());
                out.extend(a.difference(&b).map(|l| (schema.to_string(), name.clone(), format!("- {l}"))));
                out.extend(b.difference(&a).map(|l| (schema.to_string(), name.clone(), format!("+ {l}"))));
            }
            (None, None) => {}
        }
    }
    out
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_all(names: &[String]) -> String {
    names.iter().map(|n| quote(n)).collect::<Vec<_>>().join(", ")
}

/// The migration for `tables` (the reference schema's), and what it could not carry.
/// `resources`: source tables the mapping brings as built-in resources, by the rowguard table
/// that holds them (`auth_user` → `users`): a reference to one becomes a uuid reference to the
/// built-in table, its values mapped through the import's id map.
pub fn migration(tables: &BTreeMap<String, Table>, resources: &BTreeMap<String, String>) -> (String, Vec<String>) {
    let mut sql = String::from(
        "-- Generated by `rowguard import schemas --all-tables` from the reference tenant schema.\n\
         -- Every key leads with tenant_id; references stay inside one tenant.\n",
    );
    let mut notes = Vec::new();
    let mut keys = String::new();
    for t in tables.values() {
        let mut lines = vec!["    tenant_id uuid NOT NULL REFERENCES tenants (id)".to_string()];
        // Columns referencing a built-in resource hold its rowguard (uuid) id.
        let to_builtin: BTreeMap<&str, &str> = t
            .foreign_keys
            .iter()
            .filter(|f| f.same_schema && f.columns.len() == 1)
            .filter_map(|f| resources.get(&f.table).map(|target| (f.columns[0].as_str(), target.as_str())))
            .collect();
        for c in &t.columns {
            if c.name == "tenant_id" {
                notes.push(format!("{}: has a column tenant_id of its own; rename it before importing", t.name));
            }
            if c.local_type {
                notes.push(format!(
                    "{}.{}: its type {} is defined in the tenant schema; create it in public first",
                    t.name, c.name, c.type_name
                ));
            }
            let type_name = if to_builtin.contains_key(c.name.as_str()) { "uuid" } else { c.type_name.as_str() };
            let mut line = format!("    {} {type_name}", quote(&c.name));
            if c.identity && type_name != "uuid" {
                line.push_str(" GENERATED BY DEFAULT AS IDENTITY");
            } else if let Some(d) = &c.default {
                line.push_str(&format!(" DEFAULT {d}"));
            }
            if c.not_null {
                line.push_str(" NOT NULL");
            }
            lines.push(line);
        }
        if t.primary_key.is_empty() {
            notes.push(format!("{}: no primary key; rowguard serves and imports tables with one", t.name));
        } else {
            lines.push(format!("    PRIMARY KEY (tenant_id, {})", quote_all(&t.primary_key)));
        }
        for u in &t.uniques {
            lines.push(format!("    UNIQUE (tenant_id, {})", quote_all(u)));
        }
        for check in &t.checks {
            lines.push(format!("    {check}"));
        }
        sql.push_str(&format!("\nCREATE TABLE public.{} (\n{}\n);\n", quote(&t.name), lines.join(",\n")));
        let mut made = BTreeSet::new();
        // Two source indexes alike once tenant_id leads (or alike already) make one.
        for (unique, columns) in t.indexes.iter().filter(|index| made.insert((*index).clone())) {
            sql.push_str(&format!(
                "CREATE {}INDEX ON public.{} (tenant_id, {});\n",
                if *unique { "UNIQUE " } else { "" },
                quote(&t.name),
                columns.join(", ")
            ));
        }
        for other in &t.other_indexes {
            notes.push(format!("{}: index on an expression or with a WHERE, not carried: USING {other}", t.name));
        }
        for f in &t.foreign_keys {
            let target = if let (true, Some(builtin)) = (f.same_schema, resources.get(&f.table)) {
                (builtin.clone(), vec!["id".to_string()])
            } else if f.same_schema && tables.contains_key(&f.table) {
                (f.table.clone(), f.referenced.clone())
            } else {
                let place = if f.same_schema { "a table not brought" } else { "outside the tenant schema" };
                notes.push(format!(
                    "{}: its reference ({}) to {}, {place}, is dropped; the column stays",
                    t.name,
                    f.columns.join(", "),
                    f.table
                ));
                continue;
            };
            let action = |code: char, columns: Option<&[String]>| match code {
                'r' => " RESTRICT".to_string(),
                'c' => " CASCADE".to_string(),
                // Only the referencing columns: never tenant_id.
                'n' => format!(" SET NULL{}", columns.map(|c| format!(" ({})", quote_all(c))).unwrap_or_default()),
                'd' => format!(" SET DEFAULT{}", columns.map(|c| format!(" ({})", quote_all(c))).unwrap_or_default()),
                _ => " NO ACTION".to_string(),
            };
            if matches!(f.on_update, 'n' | 'd') {
                notes.push(format!(
                    "{}: ON UPDATE SET NULL/DEFAULT on ({}) becomes NO ACTION (it would clear tenant_id too)",
                    t.name,
                    f.columns.join(", ")
                ));
            }
            let on_update = if matches!(f.on_update, 'n' | 'd') { 'a' } else { f.on_update };
            keys.push_str(&format!(
                "ALTER TABLE public.{} ADD FOREIGN KEY (tenant_id, {}) REFERENCES public.{} (tenant_id, {})\n    ON DELETE{} ON UPDATE{}{};\n",
                quote(&t.name),
                quote_all(&f.columns),
                quote(&target.0),
                quote_all(&target.1),
                action(f.on_delete, Some(&f.columns)),
                action(on_update, None),
                if f.deferred { " DEFERRABLE INITIALLY DEFERRED" } else { "" },
            ));
        }
    }
    if !keys.is_empty() {
        sql.push_str("\n-- Foreign keys last, so tables may reference each other in any order.\n");
        sql.push_str(&keys);
    }
    sql.push_str(
        "\n-- The import adopts each table itself (RLS, the audit trigger, the app role's grants).\n\
         -- Applied by hand, as a migration of your own, adopt them after it:\n",
    );
    for t in tables.values() {
        sql.push_str(&format!("--   rowguard tables adopt {}\n", t.name));
    }
    (sql, notes)
}

/// The order to fill `tables` in: a table after every table it references (references to
/// itself and deferrable ones aside, which hold at commit); a cycle goes last, by name.
pub fn fill_order(tables: &BTreeMap<String, Table>) -> Vec<String> {
    let mut order = Vec::new();
    let mut remaining: BTreeSet<&String> = tables.keys().collect();
    while !remaining.is_empty() {
        let ready: Vec<&String> = remaining
            .iter()
            .copied()
            .filter(|name| {
                tables[*name].foreign_keys.iter().all(|f| {
                    f.deferred || !f.same_schema || &f.table == *name || !remaining.iter().any(|r| **r == f.table)
                })
            })
            .collect();
        let next = if ready.is_empty() { remaining.iter().copied().take(1).collect() } else { ready };
        for name in next {
            remaining.remove(name);
            order.push(name.clone());
        }
    }
    order
}

/// The statement that fills `table` from the source rows (JSON objects, `$2`) for tenant
/// `$1`, and compares what was stored with what was read. Each row goes in as
/// `jsonb_populate_record` reads it, with tenant_id added and every reference to a built-in
/// resource replaced by the rowguard id the import gave that row (`import_id_map`, written
/// earlier in the same transaction). The rows as stored (`RETURNING`, after every default,
/// trigger and type coercion), tenant_id removed and those references mapped back to source
/// ids, must equal the source rows as a multiset of JSON values: it answers (rows written,
/// rows that differ, the first differing source row, the stored row with its key).
/// Timestamps compare as text, so both sides must run with the same `TimeZone` (see
/// `PIN_OUTPUT`). `resources`: source table → (rowguard table, id-map resource name).
pub fn fill_sql(table: &Table, resources: &BTreeMap<String, (String, &'static str)>) -> String {
    let mut overrides = vec!["'tenant_id', $1::uuid".to_string()];
    let mut back = Vec::new();
    for f in &table.foreign_keys {
        if let (true, [column], Some((_, resource))) = (f.same_schema, f.columns.as_slice(), resources.get(&f.table)) {
            let key = column.replace('\'', "''");
            overrides.push(format!(
                "'{key}', (SELECT m.target_id FROM import_id_map m WHERE m.tenant_id = $1 AND m.resource = '{resource}' \
                 AND m.source_id = r ->> '{key}')"
            ));
            let source_type = table.columns.iter().find(|c| &c.name == column).map_or("text", |c| c.type_name.as_str());
            back.push(format!(
                "'{key}', to_jsonb((SELECT m.source_id FROM import_id_map m WHERE m.tenant_id = $1 \
                 AND m.resource = '{resource}' AND m.target_id = ins.{col})::{source_type})",
                col = quote(column)
            ));
        }
    }
    let same_key = if table.primary_key.is_empty() {
        "false".to_string()
    } else {
        let keys: Vec<String> = table
            .primary_key
            .iter()
            .map(|c| {
                let c = c.replace('\'', "''");
                format!("back.b -> '{c}' = first.r -> '{c}'")
            })
            .collect();
        keys.join(" AND ")
    };
    format!(
        "WITH src AS (SELECT x::jsonb AS r, o FROM unnest($2::text[]) WITH ORDINALITY AS u(x, o)),
              ins AS (INSERT INTO public.{t}
                      SELECT (jsonb_populate_record(NULL::public.{t}, r || jsonb_build_object({o}))).*
                        FROM src ORDER BY o RETURNING *),
              back AS (SELECT (to_jsonb(ins) - 'tenant_id') || jsonb_build_object({b}) AS b FROM ins),
              missing AS (SELECT r FROM src EXCEPT ALL SELECT b FROM back),
              first AS (SELECT r FROM missing ORDER BY r LIMIT 1)
         SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM missing), (SELECT r::text FROM first),
                (SELECT back.b::text FROM back, first WHERE {same_key} LIMIT 1)",
        t = quote(&table.name),
        o = overrides.join(", "),
        b = back.join(", "),
    )
}

/// Session settings that change how a row prints as JSON (time zone of timestamptz, interval
/// and float formats): pinned on the source's read and on the target's fill alike, so the two
/// sides of `fill_sql`'s comparison print the same value the same way.
pub const PIN_OUTPUT: &str = "SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, MDY'; \
     SET LOCAL IntervalStyle = 'postgres'; SET LOCAL extra_float_digits = 1; SET LOCAL bytea_output = 'hex'";

/// The first differing row's key (`id=17`, `(a, b)=(1, "x")`) and the columns that differ,
/// from `fill_sql`'s source row and stored row.
pub fn describe_difference(table: &Table, source: &str, stored: Option<&str>) -> (String, String) {
    type Row = serde_json::Map<String, serde_json::Value>;
    let source: Row = serde_json::from_str(source).unwrap_or_default();
    let stored: Option<Row> = stored.and_then(|s| serde_json::from_str(s).ok());
    let value = |row: &Row, c: &str| row.get(c).map_or_else(|| "(none)".to_string(), |v| v.to_string());
    let key = match table.primary_key.as_slice() {
        [] => "(no primary key)".to_string(),
        [one] => format!("{one}={}", value(&source, one)),
        many => {
            format!("({})=({})", many.join(", "), many.iter().map(|c| value(&source, c)).collect::<Vec<_>>().join(", "))
        }
    };
    let Some(stored) = stored else {
        return (key, "no stored row has this key".to_string());
    };
    let shorten = |mut s: String| {
        if s.chars().count() > 80 {
            s = s.chars().take(77).collect::<String>() + "...";
        }
        s
    };
    let columns: Vec<String> = table
        .columns
        .iter()
        .filter(|c| source.get(&c.name) != stored.get(&c.name))
        .take(3)
        .map(|c| {
            format!(
                "{}: source {}, rowguard {}",
                c.name,
                shorten(value(&source, &c.name)),
                shorten(value(&stored, &c.name))
            )
        })
        .collect();
    (key, columns.join("; "))
}

/// References to built-in resources whose source id the import did not map (a user the
/// mapping left out, say): `(column, count)` for the rows about to be written.
pub fn unmapped_sql(table: &Table, resources: &BTreeMap<String, (String, &'static str)>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for f in &table.foreign_keys {
        if let (true, [column], Some((_, resource))) = (f.same_schema, f.columns.as_slice(), resources.get(&f.table)) {
            let key = column.replace('\'', "''");
            out.push((
                column.clone(),
                format!(
                    "SELECT count(*) FROM (SELECT x::jsonb AS r FROM unnest($2::text[]) AS x) AS rows \
                     WHERE r ->> '{key}' IS NOT NULL AND NOT EXISTS \
                     (SELECT FROM import_id_map m WHERE m.tenant_id = $1 AND m.resource = '{resource}' \
                        AND m.source_id = r ->> '{key}')"
                ),
            ));
        }
    }
    out
}

/// Move each identity column's sequence past the highest id this tenant brought: the sequence
/// is every tenant's, so it only ever moves forward. Per column, two statements: the tenant's
/// highest id (`$1` the tenant), then the move (`$1` that id). Two, not one: on Citus a
/// statement reading one tenant's rows is sent whole to the worker holding them, and `setval`
/// there would move that worker's own range of the sequence (Citus gives each worker one), not
/// the coordinator's, from which the service's inserts draw.
pub fn sequence_sql(table: &Table) -> Vec<(String, String)> {
    table
        .columns
        .iter()
        .filter(|c| c.identity)
        .map(|c| {
            let (t, col) = (quote(&table.name), quote(&c.name));
            let target = format!("public.{t}").replace('\'', "''");
            let column = c.name.replace('\'', "''");
            (
                format!("SELECT max({col})::bigint FROM public.{t} WHERE tenant_id = $1"),
                format!(
                    "SELECT setval(s, greatest($1, coalesce(pg_sequence_last_value(s), 0)))
                       FROM (SELECT pg_get_serial_sequence('{target}', '{column}')::regclass AS s) x"
                ),
            )
        })
        .collect()
}
