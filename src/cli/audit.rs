//! `rowguard audit …`: verify tenants' logs (the Merkle tree and its signed heads, the chain
//! before it and its checkpoints); check a proof against a signed head with no database;
//! print the key heads are signed with; retention purge.

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
    /// Verify tenants' audit logs: every sealed event against its leaf, the tree's roots
    /// against the signed heads (and their signatures), and the hash chain of the events
    /// before the tree with its checkpoints. Exits non-zero when anything does not match.
    Verify {
        /// The tenant to verify.
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        tenant: Option<String>,
        /// Verify every tenant.
        #[arg(long)]
        all: bool,
    },
    /// Check an inclusion proof (`GET /v1/audit-events/{id}/proof`) or a consistency proof
    /// (`GET /v1/audit-log/consistency`) against a signed tree head, with no database: only
    /// the files and the log's verifier key (`rowguard audit key`, or any head's
    /// `verifier_key`). Exits non-zero unless the proof and the signature hold.
    VerifyProof {
        /// The verifier key: `<name>+<key id>+<base64 key>`.
        #[arg(long)]
        key: String,
        /// A file holding the signed head (the note) the proof leads to.
        #[arg(long)]
        head: std::path::PathBuf,
        /// A file holding an inclusion proof's JSON.
        #[arg(long, conflicts_with = "consistency", required_unless_present = "consistency")]
        proof: Option<std::path::PathBuf>,
        /// A file holding a consistency proof's JSON ...
        #[arg(long, requires = "old_head")]
        consistency: Option<std::path::PathBuf>,
        /// ... and the older signed head it starts from.
        #[arg(long)]
        old_head: Option<std::path::PathBuf>,
    },
    /// Print the verifier key the tree heads are signed with (publish it to auditors).
    Key,
}

pub(crate) async fn run(command: AuditCommand, config: &Config, setup: &mut DatabaseSetup) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify { tenant, all: _ } => audit_verify(config, setup, tenant).await,
        // Handled before any database is located (`cli::run_without_database`).
        AuditCommand::VerifyProof { .. } => Ok(()),
        AuditCommand::Key => {
            println!("{}", signer(config)?.verifier_key());
            Ok(())
        }
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

/// This installation's audit key, named as `serve` names it.
fn signer(config: &Config) -> anyhow::Result<rowguard::audit::AuditSigner> {
    Ok(rowguard::audit::AuditSigner::load(
        config.audit_signing_key.as_deref(),
        &config.data_dir.join("audit-ed25519.pem"),
    )?
    .named(&config.normalized_base_domain()))
}

/// Walk each chosen tenant's log as the platform role (in the tenant's own transaction): the
/// tree and its signed heads, the chain before it and its checkpoints, all with this
/// installation's audit key.
async fn audit_verify(config: &Config, setup: &mut DatabaseSetup, only: Option<String>) -> anyhow::Result<()> {
    let signer = signer(config)?;
    let key = signer.verifying_key();
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
        let tree = rowguard::audit::tree::verify(tx.conn(), t.id, Some((signer.log_name(), &key))).await?;
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
            None if bad.is_empty() && tree.valid => println!(
                "{}: tree of {} leaves intact ({} events re-hashed, {} purged, {} signed head(s) confirmed, {} not sealed \
                 yet); chain before the tree: {} events intact, {} checkpoint(s) confirmed",
                t.slug,
                tree.size,
                tree.events_checked,
                tree.purged,
                tree.heads_checked,
                tree.unsealed,
                report.events,
                report.checkpoints_checked
            ),
            first => {
                broken += 1;
                if let Some(link) = first {
                    println!("{}: chain BROKEN at event {}: {}", t.slug, link.seq, link.reason);
                }
                if !bad.is_empty() {
                    println!("{}: checkpoint signatures do not verify at events {bad:?}", t.slug);
                }
                for p in &tree.problems {
                    match (p.seq, p.leaf_index) {
                        (Some(seq), Some(leaf)) => {
                            println!("{}: tree BROKEN at event {seq} (leaf {leaf}): {}", t.slug, p.reason)
                        }
                        (Some(seq), None) => println!("{}: tree BROKEN at event {seq}: {}", t.slug, p.reason),
                        _ => println!("{}: tree BROKEN: {}", t.slug, p.reason),
                    }
                }
            }
        }
    }
    anyhow::ensure!(broken == 0, "{broken} tenant(s) with a broken audit log");
    Ok(())
}
