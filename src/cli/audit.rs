//! `rowguard audit …`: verify tenants' chains and checkpoints; retention purge.

use anyhow::Context;
use clap::Subcommand;
use rowguard::config::Config;
use rowguard::platform::PlatformConn;
use rowguard::startup::DatabaseSetup;

#[derive(Subcommand)]
pub(crate) enum AuditCommand {
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

pub(crate) async fn run(command: AuditCommand, config: &Config, setup: &mut DatabaseSetup) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify { tenant, all: _ } => audit_verify(config, setup, tenant).await,
        AuditCommand::Purge { tenant, before } => {
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
    }
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
