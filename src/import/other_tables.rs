//! `import schemas --all-tables`, the import's side: the plan over every tenant schema (what
//! `schema` reads and generates), creating and adopting the tables once before the first
//! tenant, and filling them inside each tenant's import transaction.

use super::*;

/// `--all-tables --dry-run`: the tenant schemas' other tables, how each schema differs from
/// the reference (the first tenant's), and the migration rowguard would apply (see `schema`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct AllTablesPlan {
    pub reference_schema: String,
    pub schemas: usize,
    pub tables: Vec<String>,
    /// (schema, table, difference)
    pub differences: Vec<(String, String, String)>,
    pub migration: String,
    /// What the migration could not carry, and why.
    pub notes: Vec<String>,
}

pub async fn all_tables_plan(
    source_url: &str,
    mapping: &Mapping,
    options: &ImportOptions,
) -> Result<AllTablesPlan, ImportError> {
    let mut source = Source::connect(source_url).await?;
    Ok(plan_other_tables(&mut source, mapping, options).await?.0)
}

/// The plan, and the reference schema's tables it was made from.
async fn plan_other_tables(
    source: &mut Source,
    mapping: &Mapping,
    options: &ImportOptions,
) -> Result<(AllTablesPlan, BTreeMap<String, schema::Table>), ImportError> {
    let registry = source.tenants(mapping).await?;
    let skip_schemas: HashSet<&str> = mapping.tenants.skip_schemas.iter().map(String::as_str).collect();
    let schemas: Vec<&str> = registry
        .iter()
        .map(|t| t.schema.as_str())
        .filter(|s| !skip_schemas.contains(s) && (options.only.is_empty() || options.only.iter().any(|o| o == s)))
        .collect();
    let Some(reference_schema) = schemas.first().copied() else {
        return Err(SourceError::Mapping("no tenant schema to read the tables from".into()).into());
    };
    let keep: HashSet<&str> = mapping.all_tables.keep.iter().map(String::as_str).collect();
    let mut skip: std::collections::BTreeSet<String> =
        schema::DJANGO_INTERNAL.iter().filter(|t| !keep.contains(*t)).map(|t| t.to_string()).collect();
    skip.extend(mapping.resource_columns().into_iter().map(|(table, _)| table.to_string()));
    skip.extend(mapping.all_tables.skip.iter().cloned());
    let names: Vec<String> = schemas.iter().map(|s| s.to_string()).collect();
    let mut all = source.table_definitions(&names, &skip).await?;
    let reference = all.remove(reference_schema).unwrap_or_default();
    let mut differences = Vec::new();
    for (other, theirs) in &all {
        differences.extend(schema::differences(&reference, other, theirs));
    }
    // Names are quoted wherever the migration uses them, but a control character (a newline)
    // in one would still end the comment lines it is named in: refused outright.
    for t in reference.values() {
        let names = std::iter::once(&t.name).chain(t.columns.iter().map(|c| &c.name));
        if let Some(bad) = names.into_iter().find(|n| n.chars().any(char::is_control)) {
            return Err(SourceError::Mapping(format!(
                "--all-tables: the name {bad:?} (table {:?}) holds a control character; rename it first",
                t.name
            ))
            .into());
        }
    }
    let mut resources = BTreeMap::new();
    if let Some(u) = &mapping.users {
        resources.insert(u.table.clone(), "users".to_string());
    }
    if let Some(o) = &mapping.organizations {
        resources.insert(o.table.clone(), "organizations".to_string());
    }
    if let Some(c) = &mapping.contacts {
        resources.insert(c.table.clone(), "contacts".to_string());
    }
    if let Some(d) = &mapping.deals {
        resources.insert(d.table.clone(), "deals".to_string());
    }
    let (migration, notes) = schema::migration(&reference, &resources);
    let plan = AllTablesPlan {
        reference_schema: reference_schema.to_string(),
        schemas: schemas.len(),
        tables: reference.keys().cloned().collect(),
        differences,
        migration,
        notes,
    };
    Ok((plan, reference))
}

/// What each tenant's import needs to fill the other tables (`--all-tables`).
pub(super) struct OtherTables {
    pub(super) plan: AllTablesPlan,
    tables: BTreeMap<String, schema::Table>,
    pub(super) order: Vec<String>,
    /// Source table of a built-in resource → (rowguard table, id-map resource name).
    resources: BTreeMap<String, (String, &'static str)>,
}

/// Before any tenant: refuse schemas that differ, then create the tables (as the owner role,
/// in one transaction, if none of them exists yet) and adopt them. Run again, it finds them
/// and only re-adopts (which changes nothing). A dry run only plans: differences are reported
/// with the plan, nothing is created.
pub(super) async fn prepare_other_tables(
    platform: &mut PlatformConn,
    source: &mut Source,
    mapping: &Mapping,
    options: &ImportOptions,
) -> Result<OtherTables, ImportError> {
    use sqlx::{Connection, Executor};
    let (plan, tables) = plan_other_tables(source, mapping, options).await?;
    let mut resources = BTreeMap::new();
    for (table, target, resource) in [
        (mapping.users.as_ref().map(|m| &m.table), "users", "user"),
        (mapping.organizations.as_ref().map(|m| &m.table), "organizations", "organization"),
        (mapping.contacts.as_ref().map(|m| &m.table), "contacts", "contact"),
        (mapping.deals.as_ref().map(|m| &m.table), "deals", "deal"),
    ] {
        if let Some(table) = table {
            resources.insert(table.clone(), (target.to_string(), resource));
        }
    }
    if options.dry_run {
        return Ok(OtherTables { order: schema::fill_order(&tables), tables, resources, plan });
    }
    if let Some((schema, table, what)) = plan.differences.first() {
        return Err(SourceError::Mapping(format!(
            "--all-tables: {} difference(s) between the tenant schemas, e.g. schema {schema}, table {table}: {what}; \
             run with --dry-run to see them all",
            plan.differences.len()
        ))
        .into());
    }
    let names: Vec<String> = tables.keys().cloned().collect();
    let existing: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = ANY($1)")
            .bind(&names)
            .fetch_one(platform.conn())
            .await?;
    let mut plan = plan;
    if existing == 0 && !names.is_empty() {
        match &options.migrations {
            Some(folder) => {
                let file = add_to_folder(&folder.dir, &plan.migration)?;
                crate::migrate::operator::apply(&folder.admin_url, &folder.dir)
                    .await
                    .map_err(|e| SourceError::Mapping(format!("--all-tables: {e}")))?;
                plan.notes.push(format!(
                    "the migration was added to the operator migrations as {} and applied through their history",
                    file.display()
                ));
            }
            None => {
                let citus = crate::backend::Backend::detect(platform.conn()).await? == crate::backend::Backend::Citus;
                let mut tx = platform.conn().begin().await?;
                tx.execute(sqlx::AssertSqlSafe(format!("SET LOCAL ROLE {}", crate::roles::OWNER_ROLE))).await?;
                if citus {
                    crate::migrate::citus::run_placing_tables(&mut tx, &plan.migration).await?;
                } else {
                    tx.execute(sqlx::AssertSqlSafe(plan.migration.clone())).await?;
                }
                tx.commit().await?;
            }
        }
    } else if existing != names.len() as i64 {
        return Err(SourceError::Mapping(format!(
            "--all-tables: {existing} of the {} tables exist in rowguard already; create or drop the rest first",
            names.len()
        ))
        .into());
    }
    for name in &names {
        let adopted = crate::migrate::adopt::adopt(platform.conn(), name, None, None, false)
            .await
            .map_err(|e| SourceError::Mapping(format!("--all-tables: adopting {name}: {e}")))?;
        if let Some(why) = adopted.not_served {
            plan.notes.push(format!("{name}: guarded, but not served over /v1/data: {why}"));
        }
    }
    Ok(OtherTables { order: schema::fill_order(&tables), tables, resources, plan })
}

/// Write `migration` into the operator's folder as the version after its highest
/// (`V{n}__import_all_tables.sql`), unless a file there holds exactly it already (an earlier run
/// that stopped before applying). Returns the file.
fn add_to_folder(dir: &std::path::Path, migration: &str) -> Result<std::path::PathBuf, ImportError> {
    let folder_error =
        |e: String| SourceError::Mapping(format!("--all-tables: the migrations folder {}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(|e| folder_error(e.to_string()))?;
    let existing = crate::migrate::operator::load(dir).map_err(|e| folder_error(e.to_string()))?;
    if let Some(same) = existing.iter().find(|m| m.migration.sql() == Some(migration)) {
        return Ok(same.file.clone());
    }
    let next = existing.iter().map(|m| m.migration.version()).max().unwrap_or(0) + 1;
    let file = dir.join(format!("V{next}__import_all_tables.sql"));
    std::fs::write(&file, migration).map_err(|e| folder_error(e.to_string()))?;
    Ok(file)
}

/// Fill the other tables for the transaction's tenant from its source rows; the problems
/// found (unmapped references, stored rows that differ from the source's, counts that
/// differ) roll the tenant back.
pub(super) async fn fill_other_tables(
    tx: &mut TenantTx<'_>,
    other: &OtherTables,
    data: &SourceData,
    report: &mut TenantReport,
) -> Result<Vec<Problem>, sqlx::Error> {
    let tenant = tx.tenant();
    let mut problems = Vec::new();
    // One `tenant.import` event covers the import (see `write`), not one per row.
    sqlx::query!("SET LOCAL app.audit_import = 'on'").execute(tx.conn()).await?;
    // Stored rows print as the source's did (see `schema::fill_sql`); the settings as they were
    // come back before anything else runs in this transaction.
    let settings: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, setting FROM pg_settings
          WHERE name IN ('TimeZone', 'DateStyle', 'IntervalStyle', 'extra_float_digits', 'bytea_output')",
    )
    .fetch_all(tx.conn())
    .await?;
    sqlx::raw_sql(schema::PIN_OUTPUT).execute(tx.conn()).await?;
    for (name, rows) in &data.other_tables {
        let Some(table) = other.tables.get(name) else { continue };
        for (column, sql) in schema::unmapped_sql(table, &other.resources) {
            let missing: i64 =
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(tenant).bind(rows).fetch_one(tx.conn()).await?;
            if missing > 0 {
                problems.push(Problem::new(
                    name,
                    None,
                    format!("{column}: {missing} row(s) reference a row the import did not bring"),
                ));
            }
        }
        if !problems.is_empty() {
            continue;
        }
        let fill = schema::fill_sql(table, &other.resources);
        let mut differing = 0;
        let mut first = None;
        for chunk in rows.chunks(BATCH) {
            let (_, differ, source_row, stored_row): (i64, i64, Option<String>, Option<String>) =
                sqlx::query_as(sqlx::AssertSqlSafe(fill.as_str()))
                    .bind(tenant)
                    .bind(chunk)
                    .fetch_one(tx.conn())
                    .await?;
            differing += differ;
            if first.is_none() {
                first = source_row.map(|s| schema::describe_difference(table, &s, stored_row.as_deref()));
            }
        }
        if let Some((key, what)) = first {
            problems.push(Problem::new(
                name,
                Some(&key),
                format!("{differing} of {} rows differ from the source once stored; the first: {what}", rows.len()),
            ));
        }
        for (highest, advance) in schema::sequence_sql(table) {
            let highest: Option<i64> =
                sqlx::query_scalar(sqlx::AssertSqlSafe(highest)).bind(tenant).fetch_one(tx.conn()).await?;
            if let Some(highest) = highest {
                sqlx::query(sqlx::AssertSqlSafe(advance)).bind(highest).execute(tx.conn()).await?;
            }
        }
        let count_sql = format!("SELECT count(*) FROM public.{} WHERE tenant_id = $1", source::quote_ident(name));
        let got: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(count_sql)).bind(tenant).fetch_one(tx.conn()).await?;
        if got != rows.len() as i64 {
            problems.push(Problem::new(
                name,
                None,
                format!("count mismatch: the source has {} rows, rowguard has {got}", rows.len()),
            ));
        }
        report.rows.other_tables += rows.len() as u64;
        report.tables.insert(name.clone(), rows.len() as u64);
    }
    for (name, setting) in &settings {
        sqlx::query_scalar!(r#"SELECT set_config($1, $2, true) AS "value!""#, name, setting)
            .fetch_one(tx.conn())
            .await?;
    }
    sqlx::query!("SET LOCAL app.audit_import = 'off'").execute(tx.conn()).await?;
    Ok(problems)
}

/// A dry run's check of the other tables' rows: every reference to a built-in resource names a
/// row this tenant's import would bring (what `fill_other_tables` checks in the database when
/// it writes). Counts the rows into the report.
pub(super) fn check_other_tables(
    other: &OtherTables,
    data: &SourceData,
    plan: &Plan,
    report: &mut TenantReport,
) -> Vec<Problem> {
    let mapped: HashSet<(&str, &str)> =
        plan.map.resources.iter().zip(&plan.map.source_ids).map(|(r, s)| (*r, s.as_str())).collect();
    let mut problems = Vec::new();
    for (name, rows) in &data.other_tables {
        report.rows.other_tables += rows.len() as u64;
        report.tables.insert(name.clone(), rows.len() as u64);
        let Some(table) = other.tables.get(name) else { continue };
        let references: Vec<(&str, &str)> = table
            .foreign_keys
            .iter()
            .filter(|f| f.same_schema && f.columns.len() == 1)
            .filter_map(|f| other.resources.get(&f.table).map(|(_, resource)| (f.columns[0].as_str(), *resource)))
            .collect();
        if references.is_empty() {
            continue;
        }
        for (column, resource) in references {
            let missing = rows
                .iter()
                .filter_map(|row| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(row).ok())
                .filter(|row| match row.get(column) {
                    None | Some(serde_json::Value::Null) => false,
                    Some(serde_json::Value::String(s)) => !mapped.contains(&(resource, s.as_str())),
                    Some(v) => !mapped.contains(&(resource, v.to_string().as_str())),
                })
                .count();
            if missing > 0 {
                problems.push(Problem::new(
                    name,
                    None,
                    format!("{column}: {missing} row(s) reference a row the import would not bring"),
                ));
            }
        }
    }
    problems
}
