//! `rowguard import schemas`: a schema-per-tenant (django-tenants) database, read only, into
//! rowguard tenants — each tenant in ONE tenant transaction as the platform role, verified.
//!
//! Per tenant: read its schema in one snapshot, validate every row as the API would, give
//! every row a new uuid v7 (the old ids are kept in `import_id_map`), then in the tenant's own
//! transaction (`SET LOCAL app.tenant_id`, never an RLS bypass) create the tenant, its domains
//! and its rows with batched inserts (`UNNEST` arrays; multi-row `VALUES` on Citus), count and check the references, and commit.
//! Anything wrong rolls that tenant back and the run goes on with the next one; the command
//! then exits non-zero naming what failed. A tenant already imported (`tenants.import_source`)
//! is skipped, so the command can be re-run and run tenant by tenant (`--tenant`).

pub mod mapping;
pub mod source;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use serde::Serialize;
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use crate::db::TenantTx;
use crate::domain::{
    Amount, ContactName, Currency, DealStage, DealTitle, DomainName, Email, OrganizationName, Phone, Role, Slug,
    TenantId, TenantName, WebDomain, parse_unreserved_slug,
};
use crate::platform::PlatformConn;
use mapping::{Mapping, SlugSource};
use source::{Source, SourceData, SourceError, SourceTenant};

/// Rows per INSERT statement at most; wide tables get fewer (`batches`: under `MAX_PARAMS`).
const BATCH: usize = 5_000;
/// Problems listed per tenant; the rest are counted.
const MAX_PROBLEMS: usize = 50;

#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Schema names to import; empty means every tenant in the registry.
    pub only: Vec<String>,
    pub dry_run: bool,
    /// rowguard's base domain: source domains under it are not registered as custom domains.
    pub base_domain: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub users: u64,
    pub organizations: u64,
    pub contacts: u64,
    pub deals: u64,
}

impl Counts {
    pub fn total(&self) -> u64 {
        self.users + self.organizations + self.contacts + self.deals
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Imported,
    /// `--dry-run`: everything checked, nothing written.
    WouldImport,
    /// Imported by an earlier run.
    Skipped,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Imported => "imported",
            Outcome::WouldImport => "would import",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "FAILED",
        }
    }
}

/// What is wrong, where: the tenant (schema), the table and the row (its source id).
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub table: String,
    pub row: Option<String>,
    pub message: String,
}

impl Problem {
    fn new(table: &str, row: Option<&str>, message: impl Into<String>) -> Problem {
        Problem { table: table.to_string(), row: row.map(str::to_string), message: message.into() }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TenantReport {
    pub schema: String,
    pub slug: Option<String>,
    pub tenant_id: Option<TenantId>,
    pub outcome: Outcome,
    pub rows: Counts,
    pub domains: usize,
    pub seconds: f64,
    pub problems: Vec<Problem>,
    pub notes: Vec<String>,
}

impl TenantReport {
    fn new(schema: &str) -> TenantReport {
        TenantReport {
            schema: schema.to_string(),
            slug: None,
            tenant_id: None,
            outcome: Outcome::Failed,
            rows: Counts::default(),
            domains: 0,
            seconds: 0.0,
            problems: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn fail(mut self, problems: Vec<Problem>) -> TenantReport {
        self.outcome = Outcome::Failed;
        let extra = problems.len().saturating_sub(MAX_PROBLEMS);
        self.problems = problems.into_iter().take(MAX_PROBLEMS).collect();
        if extra > 0 {
            self.notes.push(format!("{extra} more problem(s) not listed"));
        }
        self
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub source_database: String,
    pub dry_run: bool,
    pub tenants: Vec<TenantReport>,
    /// Rows written (or, in a dry run, that would be), over all tenants.
    pub rows: u64,
    pub seconds: f64,
    pub rows_per_second: f64,
}

impl ImportReport {
    pub fn failed(&self) -> usize {
        self.tenants.iter().filter(|t| t.outcome == Outcome::Failed).count()
    }
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

/// What `import_schemas` tells its caller while it runs (the CLI's progress bar or lines).
pub enum Progress<'a> {
    /// The registry is read: this many tenants will be looked at.
    Started { tenants: usize },
    /// One tenant is done, whatever its outcome.
    Tenant(&'a TenantReport),
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
    report: &mut TenantReport,
) -> Result<(), Vec<Problem>> {
    let registry_table = format!("{}.{}", mapping.tenants.schema, mapping.tenants.table);
    let domain_table = format!("{}.{}", mapping.domains.schema, mapping.domains.table);
    let import_source = format!("{}/{}", source.database, tenant.schema);
    let target_err = |e: crate::platform::PlatformError| vec![Problem::new("(target)", None, e.to_string())];

    let previous = platform.tenant_imported_from(&import_source).await.map_err(target_err)?;
    if let Some((slug, id)) = previous {
        report.outcome = Outcome::Skipped;
        report.slug = Some(slug.clone());
        report.tenant_id = Some(id);
        report.notes.push(format!("already imported as tenant {slug}; nothing changed"));
        return Ok(());
    }

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
    let taken = platform.tenant_exists(&slug).await.map_err(target_err)?;
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
    let owned = platform.domains_taken(&names).await.map_err(target_err)?;
    for d in owned {
        problems.push(Problem::new(&domain_table, Some(&d), "domain already belongs to a rowguard tenant"));
    }
    report.domains = domains.len();

    let data = match source.read_tenant(mapping, &tenant.schema).await {
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
    let plan = Plan::build(mapping, &data, &mut problems);
    report.rows = plan.counts();
    if !problems.is_empty() {
        return Err(problems);
    }
    if options.dry_run {
        report.outcome = Outcome::WouldImport;
        return Ok(());
    }
    let tenant_id = TenantId::new_v7();
    let head = TenantHead { id: tenant_id, slug, name, import_source, schema: tenant.schema.clone(), domains };
    let mut tx =
        platform.tenant_tx(tenant_id).await.map_err(|e| vec![Problem::new("(target)", None, e.to_string())])?;
    write(&mut tx, &head, &plan).await.map_err(|e| vec![write_problem(e)])?;
    let mismatches = verify(&mut tx, &plan).await.map_err(|e| vec![write_problem(e)])?;
    if !mismatches.is_empty() {
        return Err(mismatches); // dropping `tx` rolls the tenant back
    }
    tx.commit().await.map_err(|e| vec![write_problem(e)])?;
    report.tenant_id = Some(tenant_id);
    report.outcome = Outcome::Imported;
    Ok(())
}

fn write_problem(e: sqlx::Error) -> Problem {
    let table = match &e {
        sqlx::Error::Database(db) => db.table().unwrap_or("(target)").to_string(),
        _ => "(target)".to_string(),
    };
    Problem::new(&table, None, format!("writing to rowguard failed, tenant rolled back: {e}"))
}

struct TenantHead {
    id: TenantId,
    slug: Slug,
    name: String,
    import_source: String,
    schema: String,
    domains: Vec<(String, bool)>,
}

/// A tenant's rows, validated and given new ids, column by column.
#[derive(Default)]
struct Plan {
    users: UserRows,
    organizations: OrganizationRows,
    contacts: ContactRows,
    deals: DealRows,
    map: IdMap,
    /// `count(*)` per source table, from the snapshot the rows came from.
    source_counts: Vec<(&'static str, String, i64)>,
}

#[derive(Default)]
struct UserRows {
    ids: Vec<Uuid>,
    emails: Vec<String>,
    hashes: Vec<String>,
    roles: Vec<&'static str>,
    statuses: Vec<&'static str>,
}

#[derive(Default)]
struct OrganizationRows {
    ids: Vec<Uuid>,
    names: Vec<String>,
    domains: Vec<Option<String>>,
}

#[derive(Default)]
struct ContactRows {
    ids: Vec<Uuid>,
    names: Vec<String>,
    emails: Vec<String>,
    phones: Vec<Option<String>>,
    organizations: Vec<Option<Uuid>>,
}

#[derive(Default)]
struct DealRows {
    ids: Vec<Uuid>,
    titles: Vec<String>,
    contacts: Vec<Uuid>,
    organizations: Vec<Option<Uuid>>,
    stages: Vec<&'static str>,
    amounts: Vec<String>,
    currencies: Vec<String>,
}

#[derive(Default)]
struct IdMap {
    resources: Vec<&'static str>,
    source_ids: Vec<String>,
    target_ids: Vec<Uuid>,
}

/// Field `i` of a row, trimmed, empty as None.
fn field(row: &[Option<String>], i: usize) -> Option<&str> {
    row.get(i).and_then(|v| v.as_deref()).map(str::trim).filter(|v| !v.is_empty())
}

/// PostgreSQL's boolean text (`true`/`false`), and the usual spellings of other types.
fn truthy(value: Option<&str>) -> bool {
    matches!(value.map(str::to_ascii_lowercase).as_deref(), Some("true" | "t" | "1" | "yes" | "y" | "on"))
}

impl Plan {
    fn counts(&self) -> Counts {
        Counts {
            users: self.users.ids.len() as u64,
            organizations: self.organizations.ids.len() as u64,
            contacts: self.contacts.ids.len() as u64,
            deals: self.deals.ids.len() as u64,
        }
    }

    /// Validate every row and assign new ids; every problem is pushed, none is fixed up.
    fn build(mapping: &Mapping, data: &SourceData, problems: &mut Vec<Problem>) -> Plan {
        let mut plan = Plan::default();
        // New ids by resource and source id, to resolve references.
        let mut ids: HashMap<(&'static str, String), Uuid> = HashMap::new();
        let new_id = |plan: &mut Plan,
                      ids: &mut HashMap<(&'static str, String), Uuid>,
                      problems: &mut Vec<Problem>,
                      resource: &'static str,
                      table: &str,
                      source: Option<&str>| {
            let Some(source) = source else {
                problems.push(Problem::new(table, None, "a row has no id"));
                return None;
            };
            let id = Uuid::now_v7();
            if ids.insert((resource, source.to_string()), id).is_some() {
                problems.push(Problem::new(table, Some(source), "the id appears twice"));
                return None;
            }
            plan.map.resources.push(resource);
            plan.map.source_ids.push(source.to_string());
            plan.map.target_ids.push(id);
            Some(id)
        };
        let check =
            |problems: &mut Vec<Problem>, table: &str, row: Option<&str>, column: &str, result: Result<(), String>| {
                if let Err(message) = result {
                    problems.push(Problem::new(table, row, format!("{column}: {message}")));
                }
            };

        if let (Some(m), Some(rows)) = (&mapping.users, &data.users) {
            plan.source_counts.push(("users", rows.table.clone(), rows.count));
            let default_role = Role::parse(&m.default_role).unwrap_or(Role::Member);
            let mut seen = HashSet::new();
            for row in &rows.rows {
                let sid = field(row, 0);
                let email = field(row, 1).map(Email::parse);
                let email = match email {
                    Some(Ok(e)) if seen.insert(e.as_str().to_lowercase()) => Ok(e),
                    Some(Ok(e)) => Err(format!("{e} is used by another user of this tenant (case-insensitively)")),
                    Some(Err(e)) => Err(e.to_string()),
                    None => Err("is empty; rowguard users log in by e-mail".into()),
                };
                let Some(id) = new_id(&mut plan, &mut ids, problems, "user", &rows.table, sid) else { continue };
                let email = match email {
                    Ok(e) => e,
                    Err(message) => {
                        check(problems, &rows.table, sid, &m.email, Err(message));
                        continue;
                    }
                };
                let role = if m.owner_if.is_some() && truthy(field(row, 4)) {
                    Role::Owner
                } else if m.admin_if.is_some() && truthy(field(row, 5)) {
                    Role::Admin
                } else {
                    default_role
                };
                let active = m.is_active.is_none() || truthy(field(row, 3));
                plan.users.ids.push(id);
                plan.users.emails.push(email.as_str().to_string());
                // Raw, untrimmed: a hash is compared byte for byte.
                plan.users.hashes.push(row.get(2).cloned().flatten().unwrap_or_default());
                plan.users.roles.push(role.as_str());
                plan.users.statuses.push(if active { "active" } else { "deactivated" });
            }
        }

        if let (Some(m), Some(rows)) = (&mapping.organizations, &data.organizations) {
            plan.source_counts.push(("organizations", rows.table.clone(), rows.count));
            for row in &rows.rows {
                let sid = field(row, 0);
                let Some(id) = new_id(&mut plan, &mut ids, problems, "organization", &rows.table, sid) else {
                    continue;
                };
                let name = OrganizationName::parse(field(row, 1).unwrap_or_default());
                let domain = field(row, 2).map(WebDomain::parse).transpose();
                match (name, domain) {
                    (Ok(name), Ok(domain)) => {
                        plan.organizations.ids.push(id);
                        plan.organizations.names.push(name.as_str().to_string());
                        plan.organizations.domains.push(domain.map(|d| d.as_str().to_string()));
                    }
                    (name, domain) => {
                        check(problems, &rows.table, sid, "name", name.map(|_| ()).map_err(|e| e.to_string()));
                        let column = m.domain.as_deref().unwrap_or("domain");
                        check(problems, &rows.table, sid, column, domain.map(|_| ()).map_err(|e| e.to_string()));
                    }
                }
            }
        }

        if let (Some(m), Some(rows)) = (&mapping.contacts, &data.contacts) {
            plan.source_counts.push(("contacts", rows.table.clone(), rows.count));
            for row in &rows.rows {
                let sid = field(row, 0);
                let Some(id) = new_id(&mut plan, &mut ids, problems, "contact", &rows.table, sid) else { continue };
                let name = ContactName::parse(field(row, 1).unwrap_or_default()).map_err(|e| e.to_string());
                let email = Email::parse(field(row, 2).unwrap_or_default()).map_err(|e| e.to_string());
                let phone = field(row, 3).map(Phone::parse).transpose().map_err(|e| e.to_string());
                let organization = resolve(&ids, "organization", field(row, 4));
                match (name, email, phone, organization) {
                    (Ok(name), Ok(email), Ok(phone), Ok(organization)) => {
                        plan.contacts.ids.push(id);
                        plan.contacts.names.push(name.as_str().to_string());
                        plan.contacts.emails.push(email.as_str().to_string());
                        plan.contacts.phones.push(phone.map(|p| p.as_str().to_string()));
                        plan.contacts.organizations.push(organization);
                    }
                    (name, email, phone, organization) => {
                        check(problems, &rows.table, sid, "name", name.map(|_| ()));
                        check(problems, &rows.table, sid, &m.email, email.map(|_| ()));
                        check(problems, &rows.table, sid, m.phone.as_deref().unwrap_or("phone"), phone.map(|_| ()));
                        let column = m.organization.as_deref().unwrap_or("organization");
                        check(problems, &rows.table, sid, column, organization.map(|_| ()));
                    }
                }
            }
        }

        if let (Some(m), Some(rows)) = (&mapping.deals, &data.deals) {
            plan.source_counts.push(("deals", rows.table.clone(), rows.count));
            for row in &rows.rows {
                let sid = field(row, 0);
                let Some(id) = new_id(&mut plan, &mut ids, problems, "deal", &rows.table, sid) else { continue };
                let title = DealTitle::parse(field(row, 1).unwrap_or_default()).map_err(|e| e.to_string());
                let contact = match resolve(&ids, "contact", field(row, 2)) {
                    Ok(Some(contact)) => Ok(contact),
                    Ok(None) => Err("is empty; every deal names a contact".to_string()),
                    Err(e) => Err(e),
                };
                let organization = resolve(&ids, "organization", field(row, 3));
                let stage = match field(row, 4) {
                    None => Ok(DealStage::Lead),
                    Some(raw) => {
                        let mapped = m.stages.get(raw).map(String::as_str).unwrap_or(raw);
                        DealStage::parse(&mapped.to_ascii_lowercase())
                            .map_err(|_| format!("{raw:?} is not a stage; map it in [deals] stages"))
                    }
                };
                let amount = field(row, 5)
                    .ok_or_else(|| "is empty".to_string())
                    .and_then(|a| Amount::parse(a).map_err(|e| e.to_string()));
                let currency = field(row, 6)
                    .or(m.default_currency.as_deref())
                    .ok_or_else(|| "is empty and there is no default_currency".to_string())
                    .and_then(|c| Currency::parse(&c.to_ascii_uppercase()).map_err(|e| e.to_string()));
                match (title, contact, organization, stage, amount, currency) {
                    (Ok(title), Ok(contact), Ok(organization), Ok(stage), Ok(amount), Ok(currency)) => {
                        plan.deals.ids.push(id);
                        plan.deals.titles.push(title.as_str().to_string());
                        plan.deals.contacts.push(contact);
                        plan.deals.organizations.push(organization);
                        plan.deals.stages.push(stage.as_str());
                        plan.deals.amounts.push(amount.as_str().to_string());
                        plan.deals.currencies.push(currency.as_str().to_string());
                    }
                    (title, contact, organization, stage, amount, currency) => {
                        check(problems, &rows.table, sid, "title", title.map(|_| ()));
                        check(problems, &rows.table, sid, &m.contact, contact.map(|_| ()));
                        let column = m.organization.as_deref().unwrap_or("organization");
                        check(problems, &rows.table, sid, column, organization.map(|_| ()));
                        check(problems, &rows.table, sid, m.stage.as_deref().unwrap_or("stage"), stage.map(|_| ()));
                        check(problems, &rows.table, sid, &m.amount, amount.map(|_| ()));
                        check(
                            problems,
                            &rows.table,
                            sid,
                            m.currency.as_deref().unwrap_or("currency"),
                            currency.map(|_| ()),
                        );
                    }
                }
            }
        }
        plan
    }
}

/// A reference by source id to a row imported earlier in this tenant; a dangling one is an
/// error, never silently dropped.
fn resolve(
    ids: &HashMap<(&'static str, String), Uuid>,
    resource: &'static str,
    source: Option<&str>,
) -> Result<Option<Uuid>, String> {
    match source {
        None => Ok(None),
        Some(s) => ids
            .get(&(resource, s.to_string()))
            .copied()
            .map(Some)
            .ok_or_else(|| format!("references {resource} {s}, which is not in this tenant's source")),
    }
}

/// Create the tenant and write every row, in the tenant's transaction. Batched: one statement
/// per table per batch (see `batches`), every value bound: `UNNEST` arrays on plain
/// PostgreSQL, multi-row `VALUES` on Citus.
async fn write(tx: &mut TenantTx<'_>, head: &TenantHead, plan: &Plan) -> Result<(), sqlx::Error> {
    let tenant = head.id;
    // One `tenant.import` event records the import; per-row events would cost a hash-chain
    // append per row and say nothing the counts below do not.
    sqlx::query("SET LOCAL app.audit_import = 'on'").execute(tx.conn()).await?;
    sqlx::query(
        "INSERT INTO tenants (id, slug, name, status, plan, import_source) VALUES ($1, $2, $3, 'active', 'free', $4)",
    )
    .bind(tenant)
    .bind(head.slug.as_str())
    .bind(&head.name)
    .bind(&head.import_source)
    .execute(tx.conn())
    .await?;
    // The tenant's own line in the id map: one row, the same SQL on both databases.
    sqlx::query("INSERT INTO import_id_map (tenant_id, resource, source_id, target_id) VALUES ($1, 'tenant', $2, $1)")
        .bind(tenant)
        .bind(&head.schema)
        .execute(tx.conn())
        .await?;
    // Citus refuses the UNNEST form on a table with row-level security (see `rows_values`).
    if crate::migrate::citus::installed(tx.conn()).await? {
        rows_values(tx, head, plan).await?;
    } else {
        rows_unnest(tx, head, plan).await?;
    }
    sqlx::query("SET LOCAL app.audit_import = 'off'").execute(tx.conn()).await?;
    let details = serde_json::json!({
        "source": head.import_source,
        "source_schema": head.schema,
        "rows": plan.counts(),
        "domains": head.domains.iter().map(|(d, _)| d).collect::<Vec<_>>(),
    });
    sqlx::query("SELECT audit_append('tenant.import', 'tenant', $1, 'success', $2, 'operator')")
        .bind(tenant.to_string())
        .bind(details)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Plain PostgreSQL: the domains, rows and id map as `INSERT … SELECT … FROM UNNEST(…)`, one
/// bind array per column (faster here than `rows_values`: 65k rows took 3.4-3.9 s against 4.0-5.9 s).
async fn rows_unnest(tx: &mut TenantTx<'_>, head: &TenantHead, plan: &Plan) -> Result<(), sqlx::Error> {
    let tenant = head.id;
    let (names, primary): (Vec<String>, Vec<bool>) = head.domains.iter().cloned().unzip();
    sqlx::query(
        "INSERT INTO tenant_domains (domain, tenant_id, is_primary)
         SELECT d, $1, p FROM UNNEST($2::text[], $3::bool[]) AS u(d, p)",
    )
    .bind(tenant)
    .bind(&names)
    .bind(&primary)
    .execute(tx.conn())
    .await?;

    let u = &plan.users;
    for r in batches(u.ids.len(), 0) {
        sqlx::query(
            "INSERT INTO users (tenant_id, id, email, password_hash, role, status)
             SELECT $1, * FROM UNNEST($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[])",
        )
        .bind(tenant)
        .bind(&u.ids[r.clone()])
        .bind(&u.emails[r.clone()])
        .bind(&u.hashes[r.clone()])
        .bind(&u.roles[r.clone()])
        .bind(&u.statuses[r])
        .execute(tx.conn())
        .await?;
    }
    let o = &plan.organizations;
    for r in batches(o.ids.len(), 0) {
        sqlx::query(
            "INSERT INTO organizations (tenant_id, id, name, domain)
             SELECT $1, * FROM UNNEST($2::uuid[], $3::text[], $4::text[])",
        )
        .bind(tenant)
        .bind(&o.ids[r.clone()])
        .bind(&o.names[r.clone()])
        .bind(&o.domains[r])
        .execute(tx.conn())
        .await?;
    }
    let c = &plan.contacts;
    for r in batches(c.ids.len(), 0) {
        sqlx::query(
            "INSERT INTO contacts (tenant_id, id, name, email, phone, organization_id)
             SELECT $1, * FROM UNNEST($2::uuid[], $3::text[], $4::text[], $5::text[], $6::uuid[])",
        )
        .bind(tenant)
        .bind(&c.ids[r.clone()])
        .bind(&c.names[r.clone()])
        .bind(&c.emails[r.clone()])
        .bind(&c.phones[r.clone()])
        .bind(&c.organizations[r])
        .execute(tx.conn())
        .await?;
    }
    let d = &plan.deals;
    for r in batches(d.ids.len(), 0) {
        sqlx::query(
            "INSERT INTO deals (tenant_id, id, title, contact_id, organization_id, stage, amount, currency)
             SELECT $1, i, t, c, o, s, a::numeric, cur
               FROM UNNEST($2::uuid[], $3::text[], $4::uuid[], $5::uuid[], $6::text[], $7::text[], $8::text[])
                    AS u(i, t, c, o, s, a, cur)",
        )
        .bind(tenant)
        .bind(&d.ids[r.clone()])
        .bind(&d.titles[r.clone()])
        .bind(&d.contacts[r.clone()])
        .bind(&d.organizations[r.clone()])
        .bind(&d.stages[r.clone()])
        .bind(&d.amounts[r.clone()])
        .bind(&d.currencies[r])
        .execute(tx.conn())
        .await?;
    }
    let m = &plan.map;
    for r in batches(m.target_ids.len(), 0) {
        sqlx::query(
            "INSERT INTO import_id_map (tenant_id, resource, source_id, target_id)
             SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::uuid[])",
        )
        .bind(tenant)
        .bind(&m.resources[r.clone()])
        .bind(&m.source_ids[r.clone()])
        .bind(&m.target_ids[r])
        .execute(tx.conn())
        .await?;
    }
    Ok(())
}

/// Citus: the same rows as multi-row `INSERT … VALUES ($1, $2, …), (…)`, every value bound.
/// Not `INSERT … SELECT … FROM UNNEST(…)`: Citus runs an INSERT … SELECT whose source is not a
/// distributed table by evaluating the SELECT on the coordinator and COPYing the rows into the
/// shards, and COPY into a table with row-level security is refused there.
async fn rows_values(tx: &mut TenantTx<'_>, head: &TenantHead, plan: &Plan) -> Result<(), sqlx::Error> {
    let tenant = head.id;
    for r in batches(head.domains.len(), 2) {
        let sql = values_sql("tenant_domains", "tenant_id, domain, is_primary", &["", ""], r.len());
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(tenant);
        for (domain, primary) in &head.domains[r] {
            q = q.bind(domain).bind(primary);
        }
        q.persistent(false).execute(tx.conn()).await?;
    }

    let u = &plan.users;
    for r in batches(u.ids.len(), 5) {
        let sql = values_sql("users", "tenant_id, id, email, password_hash, role, status", &[""; 5], r.len());
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(tenant);
        for i in r {
            q = q.bind(u.ids[i]).bind(&u.emails[i]).bind(&u.hashes[i]).bind(u.roles[i]).bind(u.statuses[i]);
        }
        q.persistent(false).execute(tx.conn()).await?;
    }
    let o = &plan.organizations;
    for r in batches(o.ids.len(), 3) {
        let sql = values_sql("organizations", "tenant_id, id, name, domain", &[""; 3], r.len());
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(tenant);
        for i in r {
            q = q.bind(o.ids[i]).bind(&o.names[i]).bind(&o.domains[i]);
        }
        q.persistent(false).execute(tx.conn()).await?;
    }
    let c = &plan.contacts;
    for r in batches(c.ids.len(), 5) {
        let sql = values_sql("contacts", "tenant_id, id, name, email, phone, organization_id", &[""; 5], r.len());
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(tenant);
        for i in r {
            q = q.bind(c.ids[i]).bind(&c.names[i]).bind(&c.emails[i]).bind(&c.phones[i]).bind(c.organizations[i]);
        }
        q.persistent(false).execute(tx.conn()).await?;
    }
    let d = &plan.deals;
    for r in batches(d.ids.len(), 7) {
        let sql = values_sql(
            "deals",
            "tenant_id, id, title, contact_id, organization_id, stage, amount, currency",
            &["", "", "", "", "", "::numeric", ""],
            r.len(),
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(tenant);
        for i in r {
            q = q
                .bind(d.ids[i])
                .bind(&d.titles[i])
                .bind(d.contacts[i])
                .bind(d.organizations[i])
                .bind(d.stages[i])
                .bind(&d.amounts[i])
                .bind(&d.currencies[i]);
        }
        q.persistent(false).execute(tx.conn()).await?;
    }
    let m = &plan.map;
    for r in batches(m.target_ids.len(), 3) {
        let sql = values_sql("import_id_map", "tenant_id, resource, source_id, target_id", &[""; 3], r.len());
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(tenant);
        for i in r {
            q = q.bind(m.resources[i]).bind(&m.source_ids[i]).bind(m.target_ids[i]);
        }
        q.persistent(false).execute(tx.conn()).await?;
    }
    Ok(())
}

/// PostgreSQL's limit on bind parameters in one statement (a u16 count on the wire).
const MAX_PARAMS: usize = 65_535;

/// `INSERT INTO {table} ({columns}) VALUES ($1, $2, …), (…)`: `rows` rows, the tenant's id as
/// `$1` in the first column of every row, then one parameter per remaining column (`casts[i]`
/// appended to it, e.g. `::numeric`). Only placeholders are rendered; values are always bound.
fn values_sql(table: &str, columns: &str, casts: &[&str], rows: usize) -> String {
    let mut sql = format!("INSERT INTO {table} ({columns}) VALUES ");
    let mut n = 2;
    for row in 0..rows {
        sql.push_str(if row == 0 { "($1" } else { ", ($1" });
        for cast in casts {
            sql.push_str(&format!(", ${n}{cast}"));
            n += 1;
        }
        sql.push(')');
    }
    sql
}

/// Batches of row indexes for a table with `per_row` bound parameters per row besides the
/// tenant (0: one array per column, whatever the rows): at most `BATCH` rows, and at most
/// `MAX_PARAMS` parameters per statement.
fn batches(len: usize, per_row: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let size = (MAX_PARAMS - 1).checked_div(per_row).map_or(BATCH, |rows| BATCH.min(rows).max(1));
    (0..len).step_by(size).map(move |start| start..(start + size).min(len))
}

/// Before commit: the tenant's rows per table equal the source's `count(*)`, every reference
/// lands on a row of THIS tenant (checked with the tenant in the join, on top of the composite
/// foreign keys), and as many references are set as the source had.
async fn verify(tx: &mut TenantTx<'_>, plan: &Plan) -> Result<Vec<Problem>, sqlx::Error> {
    let tenant = tx.tenant();
    let row: (i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM users WHERE tenant_id = $1),
                (SELECT count(*) FROM organizations WHERE tenant_id = $1),
                (SELECT count(*) FROM contacts WHERE tenant_id = $1),
                (SELECT count(*) FROM deals WHERE tenant_id = $1),
                (SELECT count(*) FROM import_id_map WHERE tenant_id = $1)",
    )
    .bind(tenant)
    .fetch_one(tx.conn())
    .await?;
    let target: BTreeMap<&str, i64> =
        [("users", row.0), ("organizations", row.1), ("contacts", row.2), ("deals", row.3)].into_iter().collect();
    let mut problems = Vec::new();
    for (resource, table, source) in &plan.source_counts {
        let got = target.get(resource).copied().unwrap_or(0);
        if got != *source {
            problems.push(Problem::new(
                table,
                None,
                format!("count mismatch: the source has {source} rows, rowguard {resource} has {got}"),
            ));
        }
    }
    let mapped = plan.map.target_ids.len() as i64 + 1;
    if row.4 != mapped {
        problems.push(Problem::new("import_id_map", None, format!("{} ids mapped, {mapped} expected", row.4)));
    }
    let refs: (i64, i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT
           (SELECT count(*) FROM contacts c WHERE c.tenant_id = $1 AND c.organization_id IS NOT NULL),
           (SELECT count(*) FROM contacts c WHERE c.tenant_id = $1 AND c.organization_id IS NOT NULL AND NOT EXISTS
               (SELECT FROM organizations o WHERE o.tenant_id = c.tenant_id AND o.id = c.organization_id)),
           (SELECT count(*) FROM deals d WHERE d.tenant_id = $1),
           (SELECT count(*) FROM deals d WHERE d.tenant_id = $1 AND NOT EXISTS
               (SELECT FROM contacts c WHERE c.tenant_id = d.tenant_id AND c.id = d.contact_id)),
           (SELECT count(*) FROM deals d WHERE d.tenant_id = $1 AND d.organization_id IS NOT NULL),
           (SELECT count(*) FROM deals d WHERE d.tenant_id = $1 AND d.organization_id IS NOT NULL AND NOT EXISTS
               (SELECT FROM organizations o WHERE o.tenant_id = d.tenant_id AND o.id = d.organization_id))",
    )
    .bind(tenant)
    .fetch_one(tx.conn())
    .await?;
    let expected = [
        ("contacts.organization_id", plan.contacts.organizations.iter().flatten().count() as i64, refs.0, refs.1),
        ("deals.contact_id", plan.deals.contacts.len() as i64, refs.2, refs.3),
        ("deals.organization_id", plan.deals.organizations.iter().flatten().count() as i64, refs.4, refs.5),
    ];
    for (column, want, set, dangling) in expected {
        if set != want || dangling != 0 {
            let table = column.split('.').next().unwrap_or(column);
            problems.push(Problem::new(
                table,
                None,
                format!("{column}: {set} references set ({want} expected), {dangling} not within this tenant"),
            ));
        }
    }
    Ok(problems)
}
