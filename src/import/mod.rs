//! `rowguard import schemas`: a schema-per-tenant (django-tenants) database, read only, into
//! rowguard tenants — each tenant in ONE tenant transaction as the platform role, verified.
//!
//! Per tenant: read its schema in one snapshot, validate every row as the API would (e-mail
//! addresses as Django stored them, `ImportedEmail`), give every row a new uuid v7 (the old
//! ids are kept in `import_id_map`), then in the tenant's own transaction (`SET LOCAL
//! app.tenant_id`, never an RLS bypass) create the tenant, its domains and its rows with
//! batched inserts (`UNNEST` arrays; multi-row `VALUES` on Citus), count and check the
//! references, and commit. Anything wrong rolls that tenant back and the run goes on with the
//! next one; the command then exits non-zero naming what failed. A tenant already imported
//! (`tenants.import_source`) is skipped when its source still has the fingerprint it had then
//! (`tenants.import_fingerprint`), reported as changed (non-zero exit) when not, or replaced
//! (`--replace`); so the command can be re-run, and run tenant by tenant (`--tenant`).
//! `--all-tables` brings the schemas' other tables too (`other_tables`, `schema`).

pub mod mapping;
mod other_tables;
mod plan;
mod report;
pub mod schema;
pub mod source;
mod verify;
mod write;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use crate::db::TenantTx;
use crate::domain::{
    Amount, ContactName, Currency, DealStage, DealTitle, DomainName, ImportedEmail, OrganizationName, Phone, Role,
    Slug, TenantId, TenantName, TenantStatus, WebDomain, parse_unreserved_slug,
};
use crate::platform::PlatformConn;
use mapping::{Mapping, SlugSource};
use source::{Source, SourceData, SourceError, SourceTenant};

pub use other_tables::{AllTablesPlan, all_tables_plan};
use other_tables::{OtherTables, check_other_tables, fill_other_tables, prepare_other_tables};
use plan::{Plan, TenantHead};
pub use report::{Counts, ImportReport, Outcome, Problem, Progress, TenantReport};
use verify::verify;
use write::write;

/// Rows per INSERT statement at most; wide tables get fewer (`batches`: under `MAX_PARAMS`).
const BATCH: usize = 5_000;
/// Problems listed per tenant; the rest are counted.
const MAX_PROBLEMS: usize = 50;

#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Schema names to import; empty means every tenant in the registry.
    pub only: Vec<String>,
    pub dry_run: bool,
    /// Re-import a tenant whose source changed since it was imported (see `import_one`).
    pub replace: bool,
    /// Every other table of the tenant schemas too (`schema`): created, adopted and filled.
    pub all_tables: bool,
    /// rowguard's base domain: source domains under it are not registered as custom domains.
    pub base_domain: String,
    /// `--all-tables` with the operator's migrations folder (`--migrations-dir`,
    /// ROWGUARD_MIGRATIONS_DIR): the generated migration goes into it as the next version and
    /// is applied through the operator migrations' history, so `migrate` and `serve` with the
    /// same folder find it applied. Without one it is applied directly.
    pub migrations: Option<OperatorFolder>,
}

/// The operator's migrations folder and the admin URL its migrations are applied with.
#[derive(Debug, Clone)]
pub struct OperatorFolder {
    pub dir: std::path::PathBuf,
    pub admin_url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The whole run cannot start: the source or its registry is unusable.
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("target database: {0}")]
    Target(#[from] sqlx::Error),
    #[error(transparent)]
    Platform(#[from] crate::platform::PlatformError),
}

/// Import the chosen tenants. `progress` sees each tenant's report as soon as it is done.
pub async fn import_schemas(
    platform: &mut PlatformConn,
    source_url: &str,
    mapping: &Mapping,
    options: &ImportOptions,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<ImportReport, ImportError> {
    let started = Instant::now();
    let mut source = Source::connect(source_url).await?;
    let registry = source.tenants(mapping).await?;
    let other = if options.all_tables {
        Some(prepare_other_tables(platform, &mut source, mapping, options).await?)
    } else {
        None
    };
    let mut reports = Vec::new();

    let skip: HashSet<&str> = mapping.tenants.skip_schemas.iter().map(String::as_str).collect();
    let mut chosen: Vec<&SourceTenant> = registry.iter().filter(|t| !skip.contains(t.schema.as_str())).collect();
    if !options.only.is_empty() {
        for wanted in &options.only {
            if !chosen.iter().any(|t| &t.schema == wanted) {
                let report = TenantReport::new(wanted).fail(vec![Problem::new(
                    &mapping.tenants.table,
                    None,
                    format!("no tenant with schema {wanted:?} in the registry (or it is in skip_schemas)"),
                )]);
                progress(Progress::Tenant(&report));
                reports.push(report);
            }
        }
        chosen.retain(|t| options.only.contains(&t.schema));
    }
    progress(Progress::Started { tenants: chosen.len() + reports.len() });

    // Decided over the whole registry, not just the chosen few: two schemas that map to one
    // slug or share a domain clash whichever of them is imported first.
    let candidates: Vec<&SourceTenant> = registry.iter().filter(|t| !skip.contains(t.schema.as_str())).collect();
    let slugs: HashMap<&str, Result<Slug, String>> =
        candidates.iter().map(|t| (t.schema.as_str(), slug_for(mapping, t))).collect();
    let mut slug_users: HashMap<String, Vec<&str>> = HashMap::new();
    for (schema, slug) in &slugs {
        if let Ok(slug) = slug {
            slug_users.entry(slug.to_string()).or_default().push(schema);
        }
    }
    let mut domain_users: HashMap<String, Vec<&str>> = HashMap::new();
    for t in &candidates {
        for d in &t.domains {
            domain_users.entry(d.domain.trim().trim_end_matches('.').to_ascii_lowercase()).or_default().push(&t.schema);
        }
    }

    for tenant in chosen {
        let clock = Instant::now();
        let mut report = TenantReport::new(&tenant.schema);
        let outcome = import_one(
            platform,
            &mut source,
            mapping,
            options,
            tenant,
            &slugs,
            &slug_users,
            &domain_users,
            other.as_ref(),
            &mut report,
        )
        .await;
        let mut report = match outcome {
            Ok(()) => report,
            Err(problems) => report.fail(problems),
        };
        report.seconds = clock.elapsed().as_secs_f64();
        progress(Progress::Tenant(&report));
        reports.push(report);
    }

    let rows: u64 = reports
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Imported | Outcome::WouldImport))
        .map(|r| r.rows.total())
        .sum();
    let seconds = started.elapsed().as_secs_f64();
    Ok(ImportReport {
        source_database: source.database.clone(),
        dry_run: options.dry_run,
        tenants: reports,
        rows,
        seconds,
        rows_per_second: if seconds > 0.0 { rows as f64 / seconds } else { 0.0 },
        all_tables: other.map(|o| o.plan),
    })
}

/// The slug rule (see the example mapping): an override, the schema name, or the primary
/// domain's first label; then it must be a DNS label and not reserved. Never adjusted to fit.
fn slug_for(mapping: &Mapping, tenant: &SourceTenant) -> Result<Slug, String> {
    let (raw, rule) = if let Some(chosen) = mapping.slugs.overrides.get(&tenant.schema) {
        (chosen.clone(), "the override in [slugs]")
    } else {
        match mapping.slugs.from {
            SlugSource::Schema => (tenant.schema.to_ascii_lowercase().replace('_', "-"), "the schema name"),
            SlugSource::PrimaryDomain => {
                let primary =
                    tenant.domains.iter().find(|d| d.is_primary).ok_or_else(|| {
                        "no primary domain to take the slug from; add an override in [slugs]".to_string()
                    })?;
                let label = primary.domain.trim().split('.').next().unwrap_or_default().to_ascii_lowercase();
                (label, "the primary domain's first label")
            }
        }
    };
    parse_unreserved_slug(&raw)
        .map_err(|e| format!("slug {raw:?} from {rule} is not usable ({e}); add an override in [slugs]"))
}

#[allow(clippy::too_many_arguments)]
async fn import_one(
    platform: &mut PlatformConn,
    source: &mut Source,
    mapping: &Mapping,
    options: &ImportOptions,
    tenant: &SourceTenant,
    slugs: &HashMap<&str, Result<Slug, String>>,
    slug_users: &HashMap<String, Vec<&str>>,
    domain_users: &HashMap<String, Vec<&str>>,
    other: Option<&OtherTables>,
    report: &mut TenantReport,
) -> Result<(), Vec<Problem>> {
    let registry_table = format!("{}.{}", mapping.tenants.schema, mapping.tenants.table);
    let domain_table = format!("{}.{}", mapping.domains.schema, mapping.domains.table);
    let import_source = format!("{}/{}", source.database, tenant.schema);
    let target_err = |e: crate::platform::PlatformError| vec![Problem::new("(target)", None, e.to_string())];

    let previous = platform.tenant_imported_from(&import_source).await.map_err(target_err)?;
    if previous.is_some() {
        // A mapping that no longer fits the source is an error even when nothing is left to
        // import: otherwise a typo in it goes unnoticed until the next tenant appears.
        match source.check_mapping(mapping, &tenant.schema).await {
            Ok(()) => {}
            Err(SourceError::Mapping(message)) => return Err(vec![Problem::new("(mapping)", None, message)]),
            Err(e) => return Err(vec![Problem::new("(source)", None, e.to_string())]),
        }
    }
    // The tenant this run replaces (`--replace`, its source changed): slug and id.
    let mut replacing: Option<(String, TenantId)> = None;
    if let Some((slug, id, stored)) = previous {
        report.slug = Some(slug.clone());
        report.tenant_id = Some(id);
        let other_order = other.map(|o| o.order.as_slice()).unwrap_or_default();
        let now = source
            .fingerprint(mapping, &tenant.schema, other_order)
            .await
            .map_err(|e| vec![Problem::new("(source)", None, e.to_string())])?;
        report.outcome = Outcome::Skipped;
        match stored {
            Some(stored) if stored == now => {
                report.notes.push(format!("already imported as tenant {slug}; the source has not changed since"))
            }
            Some(_) if options.replace => {
                report.notes.push(format!("the source changed since it was imported: replacing tenant {slug} ({id})"));
                replacing = Some((slug, id));
            }
            Some(_) => {
                report.outcome = Outcome::Changed;
                report.notes.push(format!(
                    "already imported as tenant {slug}, and the source has changed since (rows added, removed or \
                     edited in a mapped table); nothing written. To bring it again, run the import with `--replace` \
                     (or `rowguard tenants delete {slug}`, `rowguard tenants purge {slug}`, and import)"
                ));
            }
            None => report.notes.push(format!(
                "already imported as tenant {slug}, before fingerprints were kept: whether the source changed since \
                 cannot be told"
            )),
        }
        if replacing.is_none() {
            return Ok(());
        }
    }
    let replaced_id = replacing.as_ref().map(|(_, id)| *id);

    let slug = match slugs.get(tenant.schema.as_str()) {
        Some(Ok(slug)) => slug.clone(),
        Some(Err(message)) => return Err(vec![Problem::new(&registry_table, Some(&tenant.key), message.clone())]),
        None => return Err(vec![Problem::new(&registry_table, Some(&tenant.key), "not a candidate")]),
    };
    report.slug = Some(slug.to_string());
    let mut problems = Vec::new();
    if let Some(others) = slug_users.get(slug.as_str()).filter(|o| o.len() > 1) {
        problems.push(Problem::new(
            &registry_table,
            Some(&tenant.key),
            format!("slug {slug} would be used by schemas {}; add overrides in [slugs]", others.join(", ")),
        ));
    }
    let ours = replacing.as_ref().is_some_and(|(old, _)| old == slug.as_str());
    let taken = !ours && platform.tenant_exists(&slug).await.map_err(target_err)?;
    if taken {
        problems.push(Problem::new(
            &registry_table,
            Some(&tenant.key),
            format!("a rowguard tenant {slug} already exists and was not imported from this schema; add an override in [slugs]"),
        ));
    }
    let name = match TenantName::parse(tenant.name.as_deref().unwrap_or_default()) {
        Ok(name) => name.into_string(),
        Err(e) => {
            problems.push(Problem::new(&registry_table, Some(&tenant.key), format!("{}: {e}", mapping.tenants.name)));
            String::new()
        }
    };

    // Domains: valid names, at most one primary, not shared with another source tenant, not
    // taken in rowguard. Names under rowguard's base domain are left out (the slug covers them).
    let mut domains: Vec<(String, bool)> = Vec::new();
    for d in &tenant.domains {
        let parsed = match DomainName::parse(&d.domain) {
            Ok(parsed) => parsed,
            Err(e) => {
                problems.push(Problem::new(&domain_table, Some(&d.domain), e.to_string()));
                continue;
            }
        };
        if let Some(others) = domain_users.get(parsed.as_str()).filter(|o| o.len() > 1) {
            problems.push(Problem::new(
                &domain_table,
                Some(&d.domain),
                format!("domain belongs to several tenants: {}", others.join(", ")),
            ));
            continue;
        }
        match parsed.outside_base(&options.base_domain) {
            Ok(parsed) => domains.push((parsed.as_str().to_string(), d.is_primary)),
            Err(_) => report.notes.push(format!(
                "domain {} is under rowguard's base domain {}: not registered (the tenant answers on {slug}.{})",
                d.domain, options.base_domain, options.base_domain
            )),
        }
    }
    if domains.iter().filter(|(_, primary)| *primary).count() > 1 {
        problems.push(Problem::new(&domain_table, None, "more than one primary domain"));
    }
    let names: Vec<String> = domains.iter().map(|(d, _)| d.clone()).collect();
    let owned = platform.domains_taken(&names, replaced_id).await.map_err(target_err)?;
    for d in owned {
        problems.push(Problem::new(&domain_table, Some(&d), "domain already belongs to a rowguard tenant"));
    }
    report.domains = domains.len();

    let other_order = other.map(|o| o.order.as_slice()).unwrap_or_default();
    let data = match source.read_tenant(mapping, &tenant.schema, other_order).await {
        Ok(data) => data,
        Err(SourceError::Mapping(message)) => {
            problems.push(Problem::new("(mapping)", None, message));
            return Err(problems);
        }
        Err(e) => {
            problems.push(Problem::new("(source)", None, e.to_string()));
            return Err(problems);
        }
    };
    let plan = Plan::build(mapping, &data, &tenant.schema, &mut problems);
    let status = match &tenant.inactive {
        Some(why) => {
            report.notes.push(format!("the source marks it inactive ({why}): imported suspended"));
            TenantStatus::Suspended
        }
        None => TenantStatus::Active,
    };
    report.rows = plan.counts();
    if !problems.is_empty() {
        return Err(problems);
    }
    if options.dry_run {
        if let Some(other) = other {
            let problems = check_other_tables(other, &data, &plan, report);
            if !problems.is_empty() {
                return Err(problems);
            }
        }
        report.outcome = Outcome::WouldImport;
        return Ok(());
    }
    let tenant_id = TenantId::new_v7();
    let head = TenantHead {
        id: tenant_id,
        slug,
        name,
        status,
        import_source,
        fingerprint: data.fingerprint.clone(),
        schema: tenant.schema.clone(),
        domains,
    };
    let mut tx = platform
        .tenant_tx(replaced_id.unwrap_or(tenant_id))
        .await
        .map_err(|e| vec![Problem::new("(target)", None, e.to_string())])?;
    if let Some(old) = replaced_id {
        // The old copy goes in the same transaction the new one comes in: if anything below
        // fails, both roll back and the old tenant is as it was.
        replace_out(&mut tx, old, tenant_id).await.map_err(|e| vec![write_problem(e)])?;
    }
    write(&mut tx, &head, &plan).await.map_err(|e| vec![write_problem(e)])?;
    if let Some(other) = other {
        let problems = fill_other_tables(&mut tx, other, &data, report).await.map_err(|e| vec![write_problem(e)])?;
        if !problems.is_empty() {
            return Err(problems); // dropping `tx` rolls the tenant back
        }
    }
    write::record(&mut tx, &head, report).await.map_err(|e| vec![write_problem(e)])?;
    let mismatches = verify(&mut tx, &plan).await.map_err(|e| vec![write_problem(e)])?;
    if !mismatches.is_empty() {
        return Err(mismatches); // dropping `tx` rolls the tenant back
    }
    tx.commit().await.map_err(|e| vec![write_problem(e)])?;
    report.tenant_id = Some(tenant_id);
    report.outcome = Outcome::Imported;
    Ok(())
}

/// Purge the replaced tenant's rows (as `tenants delete` does), remove its registry entry (as
/// `tenants purge` does: its slug, domains and import source are free again), then hand the
/// transaction to the new tenant.
async fn replace_out(tx: &mut crate::db::TenantTx<'_>, old: TenantId, new: TenantId) -> Result<(), sqlx::Error> {
    // Deleted first, as `tenants delete` does: resolution answers 404 for it from the commit on.
    sqlx::query!("UPDATE tenants SET status = 'deleted', updated_at = now() WHERE id = $1", old.0)
        .execute(tx.conn())
        .await?;
    crate::platform::purge::purge_tenant_rows(tx).await?;
    sqlx::query!("DELETE FROM tenants WHERE id = $1", old.0).execute(tx.conn()).await?;
    sqlx::query!("SET LOCAL app.audit_purge = 'off'").execute(tx.conn()).await?;
    tx.switch_tenant(new).await
}

fn write_problem(e: sqlx::Error) -> Problem {
    let table = match &e {
        sqlx::Error::Database(db) => db.table().unwrap_or("(target)").to_string(),
        _ => "(target)".to_string(),
    };
    Problem::new(&table, None, format!("writing to rowguard failed, tenant rolled back: {e}"))
}
