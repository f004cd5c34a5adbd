//! `rowguard jobs …` (the outbox's backlog, dead letters revived or discarded) and
//! `rowguard worker` (the outbox's workers without the HTTP server).

use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use rowguard::config::Config;
use rowguard::db::Database;
use rowguard::domain::Slug;
use rowguard::jobs::{WorkerSettings, Workers};
use rowguard::platform::PlatformConn;
use rowguard::platform::jobs::Items;
use rowguard::startup::{self, DatabaseSetup};

#[derive(Subcommand)]
pub(crate) enum JobsCommand {
    /// The outbox per tenant: deliveries waiting, the age of the oldest, dead letters.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Queue a tenant's dead letters again (all of them, or one by `--id`) with fresh attempts.
    Retry {
        #[arg(long)]
        tenant: String,
        /// One outbox item (its id, as the delivery log and `jobs status --json` show).
        #[arg(long, conflicts_with = "all_dead", required_unless_present = "all_dead")]
        id: Option<i64>,
        #[arg(long)]
        all_dead: bool,
    },
    /// Give up on a tenant's dead letters (or one item, dead or pending): marked discarded.
    Discard {
        #[arg(long)]
        tenant: String,
        #[arg(long, conflicts_with = "all_dead", required_unless_present = "all_dead")]
        id: Option<i64>,
        #[arg(long)]
        all_dead: bool,
    },
}

pub(crate) async fn run(command: JobsCommand, setup: &mut DatabaseSetup) -> anyhow::Result<()> {
    let mut platform = PlatformConn::connect(setup.admin_url()?).await?;
    match command {
        JobsCommand::Status { json } => {
            let rows = platform.outbox_status().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(());
            }
            if rows.is_empty() {
                println!("the outbox is empty: nothing waits, no dead letters");
                return Ok(());
            }
            println!("{:<32} {:>9} {:>12} {:>6}", "TENANT", "PENDING", "OLDEST", "DEAD");
            for row in rows {
                println!("{:<32} {:>9} {:>11.1}s {:>6}", row.slug, row.pending, row.oldest_seconds, row.dead);
            }
            Ok(())
        }
        JobsCommand::Retry { tenant, id, all_dead: _ } => {
            let (slug, tenant, items) = resolve(&mut platform, &tenant, id).await?;
            let n = platform.outbox_retry(tenant, items).await?;
            println!("{slug}: {n} dead letter(s) queued again");
            Ok(())
        }
        JobsCommand::Discard { tenant, id, all_dead: _ } => {
            let (slug, tenant, items) = resolve(&mut platform, &tenant, id).await?;
            let n = platform.outbox_discard(tenant, items).await?;
            println!("{slug}: {n} item(s) discarded");
            Ok(())
        }
    }
}

/// The tenant `slug` names, and which of its items (`--id`, else every dead letter).
async fn resolve(
    platform: &mut PlatformConn,
    slug: &str,
    id: Option<i64>,
) -> anyhow::Result<(Slug, rowguard::domain::TenantId, Items)> {
    let slug = Slug::parse(slug)?;
    let tenant = platform.tenant_id_by_slug(&slug).await?.with_context(|| format!("no tenant {slug}"))?;
    Ok((slug, tenant, id.map_or(Items::AllDead, Items::One)))
}

/// `rowguard worker`: deliver the outbox until SIGINT/SIGTERM, then finish what is in flight.
pub(crate) async fn worker(config: &Config, setup: &mut DatabaseSetup) -> anyhow::Result<()> {
    if setup.admin_url.is_some() {
        setup.bootstrap_and_migrate().await.context("bootstrap and migrations")?;
    }
    let db = Database::connect(&setup.app_url, 4, rowguard::http::routes::HOT_STATEMENTS)
        .await
        .context("connecting as the app role")?;
    db.ensure_backend_ready().await?;
    let mut settings = WorkerSettings::from_config(config);
    if settings.concurrency == 0 {
        settings.concurrency = 8;
    }
    let Some(workers) = Workers::spawn(db.clone(), settings, Arc::default()) else {
        anyhow::bail!("no workers to run");
    };
    println!("rowguard worker: delivering webhooks, {} at once (Ctrl-C to stop)", settings.concurrency);
    startup::shutdown_signal().await;
    workers.shutdown().await;
    db.close().await;
    Ok(())
}
