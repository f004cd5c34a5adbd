//! The `rowguard` binary: a clap CLI, one function per subcommand. `serve` is the default.

use std::io::IsTerminal;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rowguard::auth::password::hash_now;
use rowguard::config::Config;
use rowguard::db::migration_status::{MigrationStatus, migration_status};
use rowguard::db::platform::{NewTenant, PlatformConn, TenantChange};
use rowguard::db::transfer::Progress;
use rowguard::db::{OWNER_ROLE, verify};
use rowguard::domain::{Email, NewPassword, Slug, TenantLifecycle};
use rowguard::startup::{self, DatabaseSetup};

#[derive(Parser)]
#[command(name = "rowguard", version, about = "Multi-tenant API with tenant isolation enforced by PostgreSQL RLS")]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (the default). Without DATABASE_URL, runs an embedded PostgreSQL.
    Serve,
    /// Create roles and database if needed, then apply schema and policy migrations.
    Migrate,
    /// Manage tenants.
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// Database helpers.
    #[command(subcommand)]
    Db(DbCommand),
    /// The audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Schema and RLS policy migrations, and proof from the live catalog that isolation holds.
    #[command(subcommand)]
    Policies(PoliciesCommand),
    /// Operator accounts for the platform API (`/platform/v1`).
    #[command(subcommand)]
    Operators(OperatorsCommand),
    /// Bring tenants over from another system.
    #[command(subcommand)]
    Import(ImportCommand),
}

#[derive(Subcommand)]
enum ImportCommand {
    /// Import a schema-per-tenant (django-tenants) database, read only, tenant by tenant: each
    /// tenant in one transaction, verified, skipped if imported before. Exits non-zero if any
    /// tenant failed.
    Schemas {
        /// PostgreSQL URL of the source database (only ever read).
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
    },
}

#[derive(Subcommand)]
enum OperatorsCommand {
    /// Create an operator (how the first one is made).
    Create {
        #[arg(long)]
        email: String,
        /// 8 to 256 characters.
        #[arg(long, env = "ROWGUARD_OPERATOR_PASSWORD", hide_env_values = true)]
        password: String,
    },
    /// List operators.
    List,
    /// Disable an operator: its tokens are refused from the next request on.
    Disable {
        #[arg(long)]
        email: String,
    },
    /// Re-enable a disabled operator.
    Enable {
        #[arg(long)]
        email: String,
    },
}

#[derive(Subcommand)]
enum TenantsCommand {
    /// Create a tenant, its domains and its owner, in one transaction.
    Create {
        /// DNS label: a-z, 0-9 and '-', at most 63 characters.
        #[arg(long)]
        slug: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        owner_email: String,
        /// 8 to 256 characters.
        #[arg(long, env = "ROWGUARD_OWNER_PASSWORD", hide_env_values = true)]
        owner_password: String,
        /// A custom domain for the tenant (repeatable; the first is primary).
        #[arg(long = "domain")]
        domains: Vec<String>,
    },
    /// List tenants.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One tenant and its custom domains.
    Show { slug: String },
    /// Suspend a tenant: its routes answer 403 at once; operators can still manage it.
    Suspend { slug: String },
    /// Make a suspended (or trial) tenant active again.
    Resume { slug: String },
    /// Mark a tenant deleted (404 like an unknown tenant) and purge its rows from every table
    /// with a tenant_id, in one transaction. Final.
    Delete { slug: String },
    /// For a deleted tenant: purge again and remove its registry entry, freeing the slug.
    Purge { slug: String },
    /// Write every row of a tenant, from every tenant table, to a JSON Lines file.
    Export {
        slug: String,
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Read an export into a NEW tenant (new id, all references kept, audit chain re-based).
    Import {
        file: std::path::PathBuf,
        #[arg(long)]
        slug: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Retention: delete a tenant's events older than a time, recording the cut in its chain
    /// (an `audit.retention_purge` event naming the last purged event and its hash).
    Purge {
        #[arg(long)]
        tenant: String,
        /// RFC 3339, e.g. 2025-01-01T00:00:00Z.
        #[arg(long)]
        before: chrono::DateTime<chrono::Utc>,
    },
    /// Verify tenants' hash chains and signed checkpoints; exits non-zero on a broken link.
    Verify {
        /// The tenant to verify.
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        tenant: Option<String>,
        /// Verify every tenant.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Subcommand)]
enum DbCommand {
    /// Print the connection URL of the database in use (as the app role, or --admin).
    Url {
        #[arg(long)]
        admin: bool,
    },
}

#[derive(Subcommand)]
enum PoliciesCommand {
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

fn main() -> std::process::ExitCode {
    limit_allocator_retention();
    let cli = Cli::parse();
    init_logging(&cli.config);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cli.config.worker_threads.filter(|n| *n > 0) {
        runtime.worker_threads(n);
    }
    let runtime = match runtime.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // The database is located on this (the main) thread: an embedded server is tied to the
    // thread that started it, and this one lives as long as the process.
    let result = DatabaseSetup::locate(&cli.config).and_then(|mut setup| {
        let result = runtime.block_on(run(cli.command.unwrap_or(Command::Serve), &cli.config, &mut setup));
        if let Some(cluster) = setup.cluster.as_mut() {
            cluster.stop();
        }
        result
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: &Config, setup: &mut DatabaseSetup) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve(config, setup).await,
        Command::Migrate => {
            let report = setup.bootstrap_and_migrate().await?;
            println!("schema migrations applied: {}", list_or_none(&report.schema));
            println!("policy migrations applied: {}", list_or_none(&report.policies));
            if let Some(citus) = &report.citus {
                print_citus_report(citus);
            }
            Ok(())
        }
        Command::Tenants(TenantsCommand::Create { slug, name, owner_email, owner_password, domains }) => {
            let slug = Slug::parse(&slug)?;
            let owner_email = Email::parse(&owner_email)?;
            let password = NewPassword::parse(&owner_password)?;
            let domains = domains.iter().map(|d| normalize_domain(d)).collect::<anyhow::Result<Vec<_>>>()?;
            setup.bootstrap_and_migrate().await?;
            let hash = tokio::task::spawn_blocking(move || hash_now(password.expose())).await??;
            let mut platform = PlatformConn::connect(setup.admin_url()?).await?;
            let created = platform
                .create_tenant(NewTenant { slug: slug.clone(), name, owner_email, owner_password_hash: hash, domains })
                .await?;
            println!("created tenant {slug} ({})", created.tenant);
            Ok(())
        }
        Command::Tenants(TenantsCommand::List { json }) => {
            let mut platform = PlatformConn::connect(setup.admin_url()?).await?;
            let tenants = platform.list_tenants().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&tenants)?);
            } else {
                println!("{:<24} {:<10} {:<10} {:<36} NAME", "SLUG", "STATUS", "PLAN", "ID");
                for t in tenants {
                    println!("{:<24} {:<10} {:<10} {:<36} {}", t.slug, t.status, t.plan, t.id, t.name);
                }
            }
            Ok(())
        }
        Command::Audit(AuditCommand::Verify { tenant, all: _ }) => audit_verify(config, setup, tenant).await,
        Command::Audit(AuditCommand::Purge { tenant, before }) => {
            let mut platform = PlatformConn::connect(setup.admin_url()?).await?;
            let t = platform
                .list_tenants()
                .await?
                .into_iter()
                .find(|t| t.slug == tenant)
                .with_context(|| format!("no tenant {tenant:?}"))?;
            let purged = rowguard::audit::retention_purge(&mut platform, t.id, before).await?;
            println!("{tenant}: {purged} audit event(s) before {before} purged; the cut is recorded in the chain");
            Ok(())
        }
        Command::Db(DbCommand::Url { admin }) => {
            let url = if admin { setup.admin_url()?.to_string() } else { setup.app_url.clone() };
            println!("{url}");
            if setup.cluster.as_ref().is_some_and(|c| c.owns_server()) {
                eprintln!("note: the embedded PostgreSQL is not running; start `rowguard serve` to use this URL");
            }
            Ok(())
        }
        Command::Tenants(TenantsCommand::Show { slug }) => tenants_show(setup, &slug).await,
        Command::Tenants(TenantsCommand::Suspend { slug }) => {
            tenants_set_status(setup, &slug, TenantLifecycle::Suspended).await
        }
        Command::Tenants(TenantsCommand::Resume { slug }) => {
            tenants_set_status(setup, &slug, TenantLifecycle::Active).await
        }
        Command::Tenants(TenantsCommand::Delete { slug }) => tenants_delete(setup, &slug, false).await,
        Command::Tenants(TenantsCommand::Purge { slug }) => tenants_delete(setup, &slug, true).await,
        Command::Tenants(TenantsCommand::Export { slug, out }) => {
            let slug = Slug::parse(&slug)?;
            let mut platform = PlatformConn::connect(setup.admin_url()?).await?;
            let mut file = std::io::BufWriter::new(std::fs::File::create(&out)?);
            let bar = rows_bar();
            let mut progress = |p: Progress| bar.update(p);
            let header = rowguard::db::transfer::export(&mut platform, &slug, &mut file, &mut progress).await?;
            bar.finish();
            let rows: u64 = header.tables.values().sum();
            println!("exported {slug}: {rows} rows from {} tables to {}", header.tables.len(), out.display());
            for (table, n) in &header.tables {
                println!("  {table:<24} {n}");
            }
            Ok(())
        }
        Command::Tenants(TenantsCommand::Import { file, slug }) => {
            let slug = Slug::parse(&slug)?;
            let mut platform = PlatformConn::connect(setup.admin_url()?).await?;
            let input = std::io::BufReader::new(std::fs::File::open(&file)?);
            let bar = rows_bar();
            let mut progress = |p: Progress| bar.update(p);
            let (id, counts) = rowguard::db::transfer::import(&mut platform, input, &slug, &mut progress).await?;
            bar.finish();
            println!("imported {} into new tenant {slug} ({id})", file.display());
            for (table, n) in &counts {
                println!("  {table:<24} {n}");
            }
            Ok(())
        }
        Command::Operators(OperatorsCommand::Create { email, password }) => {
            let email = Email::parse(&email)?;
            let password = NewPassword::parse(&password)?;
            setup.bootstrap_and_migrate().await?;
            let hash = tokio::task::spawn_blocking(move || hash_now(password.expose())).await??;
            let id = PlatformConn::connect(setup.admin_url()?).await?.create_operator(&email, &hash).await?;
            println!("created operator {email} ({id})");
            Ok(())
        }
        Command::Operators(OperatorsCommand::Disable { email }) => operators_set_active(setup, &email, false).await,
        Command::Operators(OperatorsCommand::Enable { email }) => operators_set_active(setup, &email, true).await,
        Command::Operators(OperatorsCommand::List) => {
            let operators = PlatformConn::connect(setup.admin_url()?).await?.list_operators().await?;
            println!("{:<36} {:<10} EMAIL", "ID", "STATUS");
            for o in operators {
                println!("{:<36} {:<10} {}", o.id, o.status, o.email);
            }
            Ok(())
        }
        Command::Import(ImportCommand::Schemas { source, mapping, tenants, dry_run, json }) => {
            import_schemas(config, setup, &source, &mapping, tenants, dry_run, json).await
        }
        Command::Policies(PoliciesCommand::Status) => policies_status(setup).await,
        Command::Policies(PoliciesCommand::Apply { dry_run }) => policies_apply(setup, dry_run).await,
        Command::Policies(PoliciesCommand::Verify { json }) => policies_verify(setup, json).await,
    }
}

async fn import_schemas(
    config: &Config,
    setup: &mut DatabaseSetup,
    source: &str,
    mapping: &std::path::Path,
    only: Vec<String>,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<()> {
    use rowguard::import::{ImportOptions, Outcome, Progress, import_schemas, mapping::Mapping};
    let mapping = Mapping::load(mapping)?;
    if !dry_run {
        setup.bootstrap_and_migrate().await?;
    }
    let mut platform = PlatformConn::connect(setup.admin_url()?).await?;
    let options = ImportOptions { only, dry_run, base_domain: config.normalized_base_domain() };
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
        for p in &t.problems {
            let row = p.row.as_deref().map(|r| format!(" row {r}")).unwrap_or_default();
            lines.push(format!("    tenant {}, table {}{row}: {}", t.schema, p.table, p.message));
        }
        for note in &t.notes {
            lines.push(format!("    note: {note}"));
        }
        match &bar {
            Some(bar) => {
                if t.outcome == Outcome::Failed || !t.notes.is_empty() {
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
            "{:<24} {:<24} {:<13} {:>7} {:>7} {:>8} {:>7} {:>8}",
            "SCHEMA", "SLUG", "OUTCOME", "USERS", "ORGS", "CONTACTS", "DEALS", "SECONDS"
        );
        for t in &report.tenants {
            println!(
                "{:<24} {:<24} {:<13} {:>7} {:>7} {:>8} {:>7} {:>8.2}",
                t.schema,
                t.slug.as_deref().unwrap_or("-"),
                t.outcome.as_str(),
                t.rows.users,
                t.rows.organizations,
                t.rows.contacts,
                t.rows.deals,
                t.seconds
            );
        }
        let count = |o: Outcome| report.tenants.iter().filter(|t| t.outcome == o).count();
        println!(
            "{}{} imported, {} would import, {} skipped (imported before), {} failed; {} rows in {:.1} s ({:.0} rows/s)",
            if dry_run { "dry run, nothing written: " } else { "" },
            count(Outcome::Imported),
            count(Outcome::WouldImport),
            count(Outcome::Skipped),
            count(Outcome::Failed),
            report.rows,
            report.seconds,
            report.rows_per_second
        );
    }
    let failed: Vec<&str> =
        report.tenants.iter().filter(|t| t.outcome == Outcome::Failed).map(|t| t.schema.as_str()).collect();
    anyhow::ensure!(failed.is_empty(), "{} tenant(s) not imported: {}", failed.len(), failed.join(", "));
    Ok(())
}

async fn operators_set_active(setup: &DatabaseSetup, email: &str, active: bool) -> anyhow::Result<()> {
    let mut platform = PlatformConn::connect(setup.admin_url()?).await?;
    anyhow::ensure!(platform.set_operator_active(email, active).await?, "no operator with e-mail {email:?}");
    println!("operator {email} is now {}", if active { "active" } else { "disabled" });
    Ok(())
}

async fn tenants_show(setup: &DatabaseSetup, slug: &str) -> anyhow::Result<()> {
    let slug = Slug::parse(slug)?;
    let mut platform = PlatformConn::connect(setup.admin_url()?).await?;
    let tenant = platform.tenant(&slug).await?.with_context(|| format!("no tenant with slug {:?}", slug.as_str()))?;
    let domains = platform.domains(tenant.id).await?;
    println!("slug     {}\nname     {}\nid       {}", tenant.slug, tenant.name, tenant.id);
    println!("status   {}\nplan     {}\ncreated  {}", tenant.status, tenant.plan, tenant.created_at);
    for d in domains {
        println!("domain   {}{}", d.domain, if d.is_primary { " (primary)" } else { "" });
    }
    Ok(())
}

async fn tenants_set_status(setup: &DatabaseSetup, slug: &str, status: TenantLifecycle) -> anyhow::Result<()> {
    let slug = Slug::parse(slug)?;
    let mut platform = PlatformConn::connect(setup.admin_url()?).await?;
    let change = TenantChange { status: Some(status), ..TenantChange::default() };
    let tenant = platform.change_tenant(&slug, change).await?;
    println!("tenant {} is now {}", tenant.slug, tenant.status);
    Ok(())
}

/// `delete` (mark deleted and purge rows) or, with `registry_too`, `purge` (also remove the
/// deleted tenant's registry entry).
async fn tenants_delete(setup: &DatabaseSetup, slug: &str, registry_too: bool) -> anyhow::Result<()> {
    let slug = Slug::parse(slug)?;
    let mut platform = PlatformConn::connect(setup.admin_url()?).await?;
    let purged = if registry_too { platform.purge_tenant(&slug).await? } else { platform.delete_tenant(&slug).await? };
    for (table, rows) in &purged {
        println!("{rows:>10}  {table}");
    }
    if registry_too {
        println!("tenant {slug} purged; its slug is free again");
    } else {
        println!("tenant {slug} deleted and its rows purged");
    }
    Ok(())
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
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(setup.admin_url()?).await.context("connecting with the admin URL")?;
    let findings = verify::verify(&mut conn).await.context("reading the catalog")?;
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

/// Walk each chosen tenant's chain as the platform role (in the tenant's own transaction),
/// confirming the checkpoints signed with this installation's audit key.
async fn audit_verify(config: &Config, setup: &mut DatabaseSetup, only: Option<String>) -> anyhow::Result<()> {
    let signer = rowguard::audit::AuditSigner::load(
        config.audit_signing_key.as_deref(),
        &config.data_dir.join("audit-ed25519.pem"),
    )?;
    let mut platform = PlatformConn::connect(setup.admin_url()?).await?;
    let tenants: Vec<_> = platform
        .list_tenants()
        .await?
        .into_iter()
        .filter(|t| only.as_deref().is_none_or(|slug| t.slug == slug))
        .collect();
    if let Some(slug) = &only {
        anyhow::ensure!(!tenants.is_empty(), "no tenant {slug:?}");
    }
    let mut broken = 0;
    for t in tenants {
        let mut tx = platform.tenant_tx(t.id).await?;
        let checkpoints = rowguard::audit::checkpoint::list(tx.conn(), t.id).await?;
        let mut expected = Vec::new();
        let mut bad = Vec::new();
        for c in &checkpoints {
            if c.key_id == signer.key_id() && !signer.verifies(c) {
                bad.push(c.seq);
            } else {
                expected.push((c.seq, c.head.clone()));
            }
        }
        let report = rowguard::audit::verify_chain(tx.conn(), t.id, &expected).await?;
        tx.commit().await?;
        match &report.first_broken {
            None if bad.is_empty() => println!(
                "{}: {} events, chain intact, {} checkpoint(s) confirmed, head {}",
                t.slug, report.events, report.checkpoints_checked, report.head_hash
            ),
            first => {
                broken += 1;
                if let Some(link) = first {
                    println!("{}: BROKEN at event {}: {}", t.slug, link.seq, link.reason);
                }
                if !bad.is_empty() {
                    println!("{}: checkpoint signatures do not verify at events {bad:?}", t.slug);
                }
            }
        }
    }
    anyhow::ensure!(broken == 0, "{broken} tenant(s) with a broken audit chain");
    Ok(())
}

async fn serve(config: &Config, setup: &mut DatabaseSetup) -> anyhow::Result<()> {
    if setup.admin_url.is_some() {
        setup.bootstrap_and_migrate().await.context("bootstrap and migrations")?;
    }
    let embedded = setup.cluster.is_some();
    let mut seeded = Vec::new();
    if embedded && setup.fresh && config.seed_demo {
        seeded = rowguard::seed::seed_demo(setup.admin_url()?).await.context("seeding demo tenants")?;
    }
    let ctx = startup::build_context_with_platform(config, &setup.app_url, setup.platform_url.as_deref()).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    print_welcome(config, addr, &seeded);
    startup::serve(listener, ctx, startup::limits(config), startup::shutdown_signal()).await
}

fn print_citus_report(citus: &rowguard::db::citus::CitusReport) {
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

fn print_welcome(config: &Config, addr: std::net::SocketAddr, seeded: &[String]) {
    let base = config.normalized_base_domain();
    println!("rowguard listening on http://{addr}  (docs: http://{addr}/docs)");
    if !seeded.is_empty() {
        println!("demo tenants created: {} — owner@<slug>.test / {}", seeded.join(", "), rowguard::seed::DEMO_PASSWORD);
    }
    println!("try:");
    println!(
        "  curl -s http://{addr}/v1/auth/login -H 'X-Tenant: acme' -H 'Content-Type: application/json' \\\n    \
         -d '{{\"email\":\"owner@acme.test\",\"password\":\"{}\"}}'",
        rowguard::seed::DEMO_PASSWORD
    );
    println!("  (or address a tenant by host: http://acme.{base}:{}/v1/...)", addr.port());
}

fn normalize_domain(raw: &str) -> anyhow::Result<String> {
    let d = raw.trim().trim_end_matches('.').to_ascii_lowercase();
    let ok = !d.is_empty()
        && d.len() <= 253
        && d.contains('.')
        && d.split('.').all(|l| Slug::parse(l).is_ok_and(|s| s.as_str() == l));
    anyhow::ensure!(ok, "{raw:?} is not a valid domain name");
    Ok(d)
}

/// argon2id allocates 19 MiB per hash on whichever blocking thread runs it. glibc raises its
/// mmap threshold after such a block is freed and then keeps later ones in per-thread arenas,
/// so RSS grew to hundreds of MiB under a login flood. A fixed threshold sends every large
/// block straight back to the kernel when it is freed.
fn limit_allocator_retention() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator tuning; called before any other thread exists.
    unsafe {
        nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// A rows-done bar for export and import on stderr when it is a terminal; nothing otherwise
/// (a pipe or a log file gets only the summary printed at the end).
struct RowsBar(Option<indicatif::ProgressBar>);

fn rows_bar() -> RowsBar {
    RowsBar(std::io::stderr().is_terminal().then(|| {
        let style = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} rows  {elapsed}  {per_sec}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        indicatif::ProgressBar::new(0).with_style(style)
    }))
}

impl RowsBar {
    fn update(&self, p: Progress) {
        if let Some(bar) = &self.0 {
            bar.set_length(p.total);
            bar.set_position(p.rows);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() { "none pending".into() } else { names.join(", ") }
}

fn init_logging(config: &Config) {
    let ansi = std::io::stderr().is_terminal();
    let subscriber = startup::log_subscriber(&config.log, &config.log_format, std::io::stderr, ansi);
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        eprintln!("rowguard: a logger was already installed");
    }
}
