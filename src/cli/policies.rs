//! `rowguard migrate`, `rowguard policies …` and `rowguard db …`: the migrations (built-in and
//! the operator's), the catalog verifier, and the database's URLs.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use rowguard::catalog;
use rowguard::db::OWNER_ROLE;
use rowguard::migrate::operator;
use rowguard::migrate::status::{MigrationStatus, migration_status};
use rowguard::startup::DatabaseSetup;
use sqlx::Connection;

use super::list_or_none;

#[derive(Subcommand)]
pub(crate) enum DbCommand {
    /// Print the connection URL of the database in use (as the app role, or --admin).
    Url {
        #[arg(long)]
        admin: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum PoliciesCommand {
    /// List applied and pending migrations of sql/ (schema) and policies/ (RLS).
    Status,
    /// Apply pending migrations: sql/ first, then policies/. Refuses a database that has a
    /// migration this binary does not carry.
    Apply {
        /// Print the SQL of each pending migration instead of running it.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check the catalog against the isolation invariants; exits non-zero on any finding.
    Verify {
        /// Print the findings as a JSON array.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn run(command: PoliciesCommand, setup: &mut DatabaseSetup) -> anyhow::Result<()> {
    match command {
        PoliciesCommand::Status => policies_status(setup).await,
        PoliciesCommand::Apply { dry_run } => policies_apply(setup, dry_run).await,
        PoliciesCommand::Verify { json } => policies_verify(setup, json).await,
    }
}

pub(crate) async fn migrate(setup: &mut DatabaseSetup, dir: Option<PathBuf>) -> anyhow::Result<()> {
    // A bad folder is refused before anything is applied.
    if let Some(dir) = &dir {
        operator::load(dir)?;
    }
    let report = setup.bootstrap_and_migrate().await?;
    println!("schema migrations applied: {}", list_or_none(&report.schema));
    println!("policy migrations applied: {}", list_or_none(&report.policies));
    if let Some(citus) = &report.citus {
        print_citus_report(citus);
    }
    if let Some(dir) = &dir {
        apply_operator_migrations(setup, dir).await?;
    }
    Ok(())
}

/// The operator's folder, after the built-in migrations (`migrate --dir`, and `serve` with
/// ROWGUARD_MIGRATIONS_DIR); then a word about tenant tables still waiting to be adopted.
pub(crate) async fn apply_operator_migrations(setup: &DatabaseSetup, dir: &Path) -> anyhow::Result<()> {
    let admin = setup.admin_url()?;
    let applied = operator::apply(admin, dir).await?;
    println!("operator migrations applied from {}: {}", dir.display(), list_or_none(&applied));
    let mut conn = sqlx::PgConnection::connect(admin).await.context("connecting with the admin URL")?;
    let waiting: Vec<String> = catalog::overview::tenant_tables(&mut conn)
        .await?
        .into_iter()
        .filter(|t| t.origin == catalog::overview::TableOrigin::NotAdopted)
        .map(|t| t.name)
        .collect();
    conn.close().await?;
    if !waiting.is_empty() {
        println!(
            "tenant tables not adopted yet (unguarded until then): {}; `rowguard tables adopt TABLE` guards each",
            waiting.join(", ")
        );
    }
    Ok(())
}

pub(crate) fn db(command: DbCommand, setup: &DatabaseSetup) -> anyhow::Result<()> {
    match command {
        DbCommand::Url { admin } => {
            let url = if admin { setup.admin_url()?.to_string() } else { setup.app_url.clone() };
            println!("{url}");
            if setup.cluster.as_ref().is_some_and(|c| c.owns_server()) {
                eprintln!("note: the embedded PostgreSQL is not running; start `rowguard serve` to use this URL");
            }
            Ok(())
        }
    }
}

async fn policies_status(setup: &DatabaseSetup) -> anyhow::Result<()> {
    let status = migration_status(setup.admin_url()?).await.context("reading the migration history")?;
    if !status.database_exists {
        println!("the database does not exist yet: every migration is pending");
    }
    for folder in status.folders() {
        println!("{}/ (history table {}):", folder.folder, folder.history_table);
        let mut rows: Vec<(i32, String)> = Vec::new();
        rows.extend(folder.applied.iter().map(|m| (m.version, format!("applied    {m}"))));
        rows.extend(folder.pending.iter().map(|p| (p.id.version, format!("pending    {}", p.id))));
        rows.extend(
            folder.unknown.iter().map(|m| (m.version, format!("UNKNOWN    {m}  (applied, not in this binary)"))),
        );
        rows.extend(
            folder.divergent.iter().map(|m| (m.version, format!("DIVERGENT  {m}  (applied, file since edited)"))),
        );
        rows.sort();
        if rows.is_empty() {
            println!("  (no migrations)");
        }
        for (_, row) in rows {
            println!("  {row}");
        }
    }
    let pending: usize = status.folders().iter().map(|f| f.pending.len()).sum();
    match status.check_applicable() {
        Err(refusal) => println!("apply would refuse: {refusal}"),
        Ok(()) if pending == 0 => println!("up to date"),
        Ok(()) => println!("{pending} pending: `rowguard policies apply` applies them (`--dry-run` prints their SQL)"),
    }
    Ok(())
}

async fn policies_apply(setup: &mut DatabaseSetup, dry_run: bool) -> anyhow::Result<()> {
    let status = migration_status(setup.admin_url()?).await.context("reading the migration history")?;
    status.check_applicable()?;
    if dry_run {
        print_dry_run(&status);
        return Ok(());
    }
    let report = setup.bootstrap_and_migrate().await?;
    println!("schema migrations applied: {}", list_or_none(&report.schema));
    println!("policy migrations applied: {}", list_or_none(&report.policies));
    Ok(())
}

fn print_dry_run(status: &MigrationStatus) {
    let pending: Vec<_> = status.folders().into_iter().flat_map(|f| f.pending.iter().map(move |p| (f, p))).collect();
    if pending.is_empty() {
        println!("-- nothing to apply: the database is up to date");
        return;
    }
    println!(
        "-- dry run, nothing was changed. `rowguard policies apply` would run these as {OWNER_ROLE}, \
         each folder's in one transaction, sql/ first:"
    );
    for (folder, migration) in pending {
        println!("\n-- {}/{}.sql (recorded in {})", folder.folder, migration.id, folder.history_table);
        println!("{}", migration.sql.trim_end());
    }
}

async fn policies_verify(setup: &DatabaseSetup, json: bool) -> anyhow::Result<()> {
    let mut conn = sqlx::PgConnection::connect(setup.admin_url()?).await.context("connecting with the admin URL")?;
    let findings = catalog::verify(&mut conn).await.context("reading the catalog")?;
    conn.close().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&findings)?);
    } else if findings.is_empty() {
        println!("no findings: every tenant table is covered, and the app role is held to it");
    } else {
        for f in &findings {
            println!("{}  [{}]  {}", f.object, f.rule, f.message);
        }
    }
    anyhow::ensure!(findings.is_empty(), "policies verify: {} finding(s)", findings.len());
    Ok(())
}

fn print_citus_report(citus: &rowguard::migrate::citus::CitusReport) {
    println!("citus: reference tables made: {}", list_or_none(&citus.reference));
    println!("citus: tables distributed by tenant_id: {}", list_or_none(&citus.distributed));
    println!("citus: functions propagated to the workers: {}", list_or_none(&citus.functions));
    if !citus.relaxed_foreign_keys.is_empty() {
        println!(
            "citus: foreign keys added back without ON DELETE SET NULL (Citus refuses it with the distribution \
             column; the service detaches rows itself): {}",
            citus.relaxed_foreign_keys.join(", ")
        );
    }
    if !citus.misplaced.is_empty() {
        println!(
            "citus: WARNING left alone, placed otherwise than rowguard expects (see `policies verify`): {}",
            citus.misplaced.join(", ")
        );
    }
}
