//! `rowguard tenants …`: create, list, show, suspend, resume, delete, purge, export, import.

use std::io::IsTerminal;

use anyhow::Context;
use clap::Subcommand;
use rowguard::auth::password::hash_now;
use rowguard::domain::{Email, NewPassword, Slug, TenantStatus};
use rowguard::platform::transfer::Progress;
use rowguard::platform::{NewTenant, PlatformConn, TenantChange};
use rowguard::startup::DatabaseSetup;
use sqlx::Connection;

#[derive(Subcommand)]
pub(crate) enum TenantsCommand {
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
    /// Citus: give a big tenant a shard of its own (every tenant table; its writes wait during the copy), and with
    /// `--to-node HOST:PORT` move it to that worker; `tenants list` shows where each lives.
    Isolate {
        slug: String,
        #[arg(long)]
        to_node: Option<String>,
    },
    /// Read an export into a NEW tenant (new id, all references kept, audit chain re-based).
    Import {
        file: std::path::PathBuf,
        #[arg(long)]
        slug: String,
    },
}

pub(crate) async fn run(command: TenantsCommand, setup: &mut DatabaseSetup) -> anyhow::Result<()> {
    match command {
        TenantsCommand::Create { slug, name, owner_email, owner_password, domains } => {
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
        TenantsCommand::List { json } => {
            let mut platform = PlatformConn::connect(setup.admin_url()?).await?;
            let tenants = platform.list_tenants().await?;
            // On Citus, where each tenant lives (its shard and worker).
            let mut admin = sqlx::PgConnection::connect(setup.admin_url()?).await?;
            let placements = rowguard::platform::placement::placements(&mut admin).await?;
            if json {
                let rows: Vec<serde_json::Value> = tenants
                    .iter()
                    .map(|t| {
                        let mut row = serde_json::to_value(t).unwrap_or_default();
                        if let Some(p) = placements.as_ref().and_then(|p| p.get(&t.id)) {
                            row["placement"] = serde_json::to_value(p).unwrap_or_default();
                        }
                        row
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                let node = |t: &rowguard::platform::TenantSummary| {
                    placements
                        .as_ref()
                        .and_then(|p| p.get(&t.id))
                        .map(|p| format!("{:<22} ", format!("{}{}", p.node, if p.isolated { " (own)" } else { "" })))
                };
                let header = if placements.is_some() { format!("{:<22} ", "NODE") } else { String::new() };
                println!("{:<24} {:<10} {:<10} {:<36} {header}NAME", "SLUG", "STATUS", "PLAN", "ID");
                for t in &tenants {
                    let at = node(t).unwrap_or_default();
                    println!("{:<24} {:<10} {:<10} {:<36} {at}{}", t.slug, t.status, t.plan, t.id, t.name);
                }
            }
            Ok(())
        }
        TenantsCommand::Show { slug } => tenants_show(setup, &slug).await,
        TenantsCommand::Isolate { slug, to_node } => tenants_isolate(setup, &slug, to_node.as_deref()).await,
        TenantsCommand::Suspend { slug } => tenants_set_status(setup, &slug, TenantStatus::Suspended).await,
        TenantsCommand::Resume { slug } => tenants_set_status(setup, &slug, TenantStatus::Active).await,
        TenantsCommand::Delete { slug } => tenants_delete(setup, &slug, false).await,
        TenantsCommand::Purge { slug } => tenants_delete(setup, &slug, true).await,
        TenantsCommand::Export { slug, out } => {
            let slug = Slug::parse(&slug)?;
            let mut platform = PlatformConn::connect(setup.admin_url()?).await?;
            let mut file = std::io::BufWriter::new(std::fs::File::create(&out)?);
            let bar = rows_bar();
            let mut progress = |p: Progress| bar.update(p);
            let header = rowguard::platform::transfer::export(&mut platform, &slug, &mut file, &mut progress).await?;
            bar.finish();
            let rows: u64 = header.tables.values().sum();
            println!("exported {slug}: {rows} rows from {} tables to {}", header.tables.len(), out.display());
            for (table, n) in &header.tables {
                println!("  {table:<24} {n}");
            }
            Ok(())
        }
        TenantsCommand::Import { file, slug } => {
            let slug = Slug::parse(&slug)?;
            let mut platform = PlatformConn::connect(setup.admin_url()?).await?;
            let input = std::io::BufReader::new(std::fs::File::open(&file)?);
            let bar = rows_bar();
            let mut progress = |p: Progress| bar.update(p);
            let (id, counts) = rowguard::platform::transfer::import(&mut platform, input, &slug, &mut progress).await?;
            bar.finish();
            println!("imported {} into new tenant {slug} ({id})", file.display());
            for (table, n) in &counts {
                println!("  {table:<24} {n}");
            }
            Ok(())
        }
    }
}

async fn tenants_isolate(setup: &DatabaseSetup, slug: &str, to_node: Option<&str>) -> anyhow::Result<()> {
    let slug = Slug::parse(slug)?;
    let to = match to_node {
        Some(node) => {
            let (host, port) = node.rsplit_once(':').context("--to-node takes HOST:PORT")?;
            Some((host, port.parse::<u16>().context("--to-node takes HOST:PORT")?))
        }
        None => None,
    };
    let mut platform = PlatformConn::connect(setup.admin_url()?).await?;
    let tenant = platform.tenant_id_by_slug(&slug).await?.with_context(|| format!("no tenant {slug}"))?;
    let mut admin = sqlx::PgConnection::connect(setup.admin_url()?).await?;
    let mut watch = sqlx::PgConnection::connect(setup.admin_url()?).await?;
    let mut progress = |line: &str| println!("{slug}: {line}");
    let done = rowguard::platform::placement::isolate(&mut admin, &mut watch, tenant, to, &mut progress).await?;
    println!(
        "{slug}: shard {} on {} → shard {} on {}{}",
        done.before.shard,
        done.before.node,
        done.after.shard,
        done.after.node,
        if done.after.isolated { " (its own)" } else { "" }
    );
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

async fn tenants_set_status(setup: &DatabaseSetup, slug: &str, status: TenantStatus) -> anyhow::Result<()> {
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

fn normalize_domain(raw: &str) -> anyhow::Result<String> {
    let d = raw.trim().trim_end_matches('.').to_ascii_lowercase();
    let ok = !d.is_empty()
        && d.len() <= 253
        && d.contains('.')
        && d.split('.').all(|l| Slug::parse(l).is_ok_and(|s| s.as_str() == l));
    anyhow::ensure!(ok, "{raw:?} is not a valid domain name");
    Ok(d)
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
