//! `rowguard import schemas`: bring tenants over from a django-tenants database.

use std::collections::BTreeSet;
use std::io::IsTerminal;

use clap::Subcommand;
use rowguard::config::Config;
use rowguard::platform::PlatformConn;
use rowguard::startup::DatabaseSetup;

#[derive(Subcommand)]
pub(crate) enum ImportCommand {
    /// Import a schema-per-tenant (django-tenants) database, read only, tenant by tenant: each
    /// tenant in one transaction, verified, skipped if imported before. Exits non-zero if any
    /// tenant failed.
    Schemas {
        /// The source database (only ever read): a PostgreSQL URL (`postgres://user@host/app`,
        /// `postgres:///app?host=/var/run/postgresql`) or a libpq keyword string
        /// (`host=/var/run/postgresql dbname=app user=x`).
        #[arg(long)]
        source: String,
        /// TOML mapping of the source's tables and columns (see examples/django-tenants.toml).
        #[arg(long)]
        mapping: std::path::PathBuf,
        /// Import only this tenant, by schema name (repeatable). Default: every tenant.
        #[arg(long = "tenant")]
        tenants: Vec<String>,
        /// Read and validate everything, report what would be imported, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the report as JSON on stdout (progress still goes to stderr).
        #[arg(long)]
        json: bool,
        /// A tenant imported before whose source has changed since: delete it, purge its rows
        /// and import it again, in one transaction (it gets a new tenant id; its rowguard-side
        /// changes since the first import are lost). Without it, such a tenant is reported.
        #[arg(long)]
        replace: bool,
        /// Every other table of the tenant schemas too (Django's own left out): list them, name
        /// every schema whose tables differ from the first tenant's (and stop), write the
        /// row-level migration to --migration-out; then (not with --dry-run) create and adopt
        /// the tables and fill them tenant by tenant, in each tenant's import transaction.
        #[arg(long)]
        all_tables: bool,
        /// Where --all-tables writes the generated migration (keep it in version control). With
        /// the global --migrations-dir (ROWGUARD_MIGRATIONS_DIR) it also goes into that folder as
        /// its next version and is applied through the operator migrations' history.
        #[arg(long, default_value = "all-tables.sql")]
        migration_out: std::path::PathBuf,
    },
}

pub(crate) async fn run(command: ImportCommand, config: &Config, setup: &mut DatabaseSetup) -> anyhow::Result<()> {
    match command {
        ImportCommand::Schemas { source, mapping, tenants, dry_run, json, replace, all_tables, migration_out } => {
            let base_domain = config.normalized_base_domain();
            let migrations = match &config.migrations_dir {
                Some(dir) if all_tables => Some(rowguard::import::OperatorFolder {
                    dir: dir.clone(),
                    admin_url: setup.admin_url()?.to_string(),
                }),
                _ => None,
            };
            let options = rowguard::import::ImportOptions {
                only: tenants,
                dry_run,
                replace,
                all_tables,
                base_domain,
                migrations,
            };
            // The import makes the plan (a schema that differs stops a real run before anything
            // is written) and hands it back in the report.
            import_schemas(setup, &source, &mapping, options, json, &migration_out).await
        }
    }
}

/// `--all-tables`: the other tables and how the schemas differ, and the migration written to
/// `out`. Exits non-zero when a schema differs from the reference (a real run stopped before).
fn report_plan(plan: &rowguard::import::AllTablesPlan, out: &std::path::Path, applied: bool) -> anyhow::Result<()> {
    println!(
        "\n--all-tables: {} other table(s) in schema {} (the reference), compared with {} other schema(s): {}",
        plan.tables.len(),
        plan.reference_schema,
        plan.schemas.saturating_sub(1),
        plan.tables.join(", ")
    );
    for note in &plan.notes {
        println!("    note: {note}");
    }
    for (schema, table, what) in &plan.differences {
        println!("    differs: schema {schema}, table {table}: {what}");
    }
    std::fs::write(out, &plan.migration)?;
    let verb = if applied { "applied (or found applied)" } else { "rowguard would apply" };
    println!("the migration {verb} was written to {}", out.display());
    let differing: BTreeSet<&str> = plan.differences.iter().map(|(s, _, _)| s.as_str()).collect();
    anyhow::ensure!(
        differing.is_empty(),
        "{} schema(s) differ from {}: {}",
        differing.len(),
        plan.reference_schema,
        differing.into_iter().collect::<Vec<_>>().join(", ")
    );
    Ok(())
}

async fn import_schemas(
    setup: &mut DatabaseSetup,
    source: &str,
    mapping: &std::path::Path,
    options: rowguard::import::ImportOptions,
    json: bool,
    migration_out: &std::path::Path,
) -> anyhow::Result<()> {
    use rowguard::import::{Outcome, Progress, import_schemas, mapping::Mapping};
    let dry_run = options.dry_run;
    let mapping = Mapping::load(mapping)?;
    // Even for a dry run: on a fresh target there is nothing to compare slugs and domains
    // with until the database exists. The same idempotent step `rowguard migrate` takes, and
    // nothing of the source is written by it.
    setup.bootstrap_and_migrate().await?;
    let mut platform = PlatformConn::connect(setup.admin_url()?).await?;
    // Progress goes to stderr, so stdout stays the report (or JSON): a bar on a terminal, with
    // only failures and notes printed above it; one plain line per tenant otherwise.
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        let style = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} tenants  {elapsed}  {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style);
        bar
    });
    let mut rows = 0u64;
    let mut progress = |event: Progress<'_>| {
        let t = match event {
            Progress::Started { tenants } => {
                if let Some(bar) = &bar {
                    bar.set_length(tenants as u64);
                }
                return;
            }
            Progress::Tenant(t) => t,
        };
        let slug = t.slug.as_deref().unwrap_or("-");
        let mut lines = vec![format!(
            "{:<12} {} → {slug}: {} users, {} organizations, {} contacts, {} deals ({:.2} s)",
            t.outcome.as_str(),
            t.schema,
            t.rows.users,
            t.rows.organizations,
            t.rows.contacts,
            t.rows.deals,
            t.seconds
        )];
        if !t.tables.is_empty() {
            let tables: Vec<String> = t.tables.iter().map(|(name, n)| format!("{name} {n}")).collect();
            lines.push(format!("    other tables: {}", tables.join(", ")));
        }
        for p in &t.problems {
            let row = p.row.as_deref().map(|r| format!(" row {r}")).unwrap_or_default();
            lines.push(format!("    tenant {}, table {}{row}: {}", t.schema, p.table, p.message));
        }
        for note in &t.notes {
            lines.push(format!("    note: {note}"));
        }
        match &bar {
            Some(bar) => {
                if matches!(t.outcome, Outcome::Failed | Outcome::Changed) || !t.notes.is_empty() {
                    lines.iter().for_each(|l| bar.println(l));
                }
                rows += t.rows.total();
                bar.set_message(format!("{rows} rows"));
                bar.inc(1);
            }
            None => lines.iter().for_each(|l| eprintln!("{l}")),
        }
    };
    let report = import_schemas(&mut platform, source, &mapping, &options, &mut progress).await?;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{:<24} {:<24} {:<20} {:>7} {:>7} {:>8} {:>7} {:>8} {:>8}",
            "SCHEMA", "SLUG", "OUTCOME", "USERS", "ORGS", "CONTACTS", "DEALS", "OTHER", "SECONDS"
        );
        let mut other_tables: std::collections::BTreeMap<&str, u64> = Default::default();
        for t in &report.tenants {
            println!(
                "{:<24} {:<24} {:<20} {:>7} {:>7} {:>8} {:>7} {:>8} {:>8.2}",
                t.schema,
                t.slug.as_deref().unwrap_or("-"),
                t.outcome.as_str(),
                t.rows.users,
                t.rows.organizations,
                t.rows.contacts,
                t.rows.deals,
                t.rows.other_tables,
                t.seconds
            );
            for (name, n) in &t.tables {
                *other_tables.entry(name.as_str()).or_default() += n;
            }
        }
        if !other_tables.is_empty() {
            let tables: Vec<String> = other_tables.iter().map(|(name, n)| format!("{name} {n}")).collect();
            println!("other tables, rows over all tenants: {}", tables.join(", "));
        }
        let count = |o: Outcome| report.tenants.iter().filter(|t| t.outcome == o).count();
        println!(
            "{}{} imported, {} would import, {} skipped (imported before), {} changed since imported, {} failed; \
             {} rows in {:.1} s ({:.0} rows/s)",
            if dry_run { "dry run, nothing written: " } else { "" },
            count(Outcome::Imported),
            count(Outcome::WouldImport),
            count(Outcome::Skipped),
            count(Outcome::Changed),
            count(Outcome::Failed),
            report.rows,
            report.seconds,
            report.rows_per_second
        );
        if count(Outcome::Imported) > 0 {
            println!(
                "each imported tenant was checked before its commit: row counts per table, every reference \
                 inside the tenant, every stored row compared with its source row"
            );
        }
    }
    match &report.all_tables {
        // The plan is in the JSON already; stdout stays JSON.
        Some(plan) if json => std::fs::write(migration_out, &plan.migration)?,
        Some(plan) => report_plan(plan, migration_out, !dry_run)?,
        None => {}
    }
    let failed: Vec<&str> =
        report.tenants.iter().filter(|t| t.outcome == Outcome::Failed).map(|t| t.schema.as_str()).collect();
    anyhow::ensure!(failed.is_empty(), "{} tenant(s) not imported: {}", failed.len(), failed.join(", "));
    let changed: Vec<&str> =
        report.tenants.iter().filter(|t| t.outcome == Outcome::Changed).map(|t| t.schema.as_str()).collect();
    anyhow::ensure!(
        changed.is_empty(),
        "{} tenant(s) changed in the source since they were imported: {}",
        changed.len(),
        changed.join(", ")
    );
    Ok(())
}
