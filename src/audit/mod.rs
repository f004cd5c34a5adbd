//! The audit trail's Rust side: appending access events, verifying a tenant's hash chain,
//! and signing checkpoints. Data-change events are written by database triggers
//! (sql/V10__audit.sql); everything here runs inside tenant transactions.

pub mod chain;
pub mod checkpoint;
pub mod merkle;
pub mod note;
pub mod tree;

pub use chain::{BrokenLink, ChainReport, verify_chain};
pub use checkpoint::{AuditSigner, Checkpoint};

use serde_json::Value;

use crate::db::{Actor, Database, TenantScope, TenantTx};
use crate::domain::TenantId;

/// An event that is not a row change: a login, a refusal, a checkpoint.
pub struct AccessEvent<'a> {
    pub action: &'a str,
    pub resource_type: Option<&'a str>,
    pub resource_id: Option<String>,
    pub outcome: &'a str,
    pub details: Value,
}

/// Append `event` to `tenant`'s chain in a transaction of its own (so a refused request,
/// which commits nothing else, still leaves its trace).
pub async fn record(db: &Database, tenant: TenantId, actor: &Actor, event: AccessEvent<'_>) -> Result<(), sqlx::Error> {
    let mut tx = TenantTx::begin(db, tenant, actor).await?;
    append(&mut tx, actor, event).await?;
    tx.commit().await
}

/// As `record`, through a request's tenant scope, as whoever acts in it.
pub async fn record_in(scope: &TenantScope, event: AccessEvent<'_>) -> Result<(), sqlx::Error> {
    let mut tx = scope.begin().await?;
    append(&mut tx, &scope.actor(), event).await?;
    tx.commit().await
}

/// Append `event` inside an open tenant transaction.
pub async fn append(tx: &mut TenantTx<'_>, actor: &Actor, event: AccessEvent<'_>) -> Result<(), sqlx::Error> {
    let actor_type = if actor.user.is_some() { "user" } else { "anonymous" };
    // Through `audit_append_for`, which names the tenant: on Citus that is where the call runs
    // (sql/V27); on PostgreSQL it is `audit_append`.
    sqlx::query!(
        "SELECT audit_append_for($1, $2, $3, $4, $5, $6, $7)",
        tx.tenant().0,
        event.action,
        event.resource_type,
        event.resource_id,
        event.outcome,
        event.details,
        actor_type
    )
    .execute(tx.conn())
    .await
    .map(|_| ())
}

/// What one sealing pass over every waiting tenant did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SealPass {
    /// Tenants whose tree grew.
    pub tenants: usize,
    pub events: i64,
    /// Tenants whose sealing failed (each rolled back alone; they stay queued).
    pub failed: usize,
    /// Something was sealed and more may be waiting: run again at once.
    pub more: bool,
}

impl Database {
    /// Seal the committed events of the tenants that have some waiting (up to `tenants` of
    /// them, longest waiting first), in one transaction, and sign each grown tree's head. A
    /// tenant another instance is sealing right now is left to it; one whose sealing fails is
    /// counted and left queued, and does not hold the others back.
    pub async fn seal_audit_logs(&self, signer: &AuditSigner, tenants: i32) -> anyhow::Result<SealPass> {
        let mut pass = SealPass::default();
        let waiting = self.audit_unsealed_tenants(tenants).await?;
        if waiting.is_empty() {
            return Ok(pass);
        }
        let full = waiting.len() >= usize::try_from(tenants).unwrap_or(usize::MAX);
        let trees = self
            .seal_many(&waiting, tree::SEAL_BATCH, |tenant, size, root| tree::signed_head(signer, tenant, size, root))
            .await?;
        for t in &trees {
            match t.sealed {
                n if n > 0 => {
                    pass.tenants += 1;
                    pass.events += i64::from(n);
                    pass.more |= full || n >= tree::SEAL_BATCH;
                }
                -2 => {
                    pass.failed += 1;
                    tracing::warn!(tenant = %t.tenant_id, "sealing this tenant's audit events failed; it stays queued");
                }
                _ => {}
            }
        }
        Ok(pass)
    }

    /// Sign a checkpoint for every live tenant whose chain moved since its last one.
    pub async fn checkpoint_all(&self, signer: &AuditSigner) -> Result<usize, sqlx::Error> {
        let mut signed = 0;
        for tenant in self.live_tenant_ids().await? {
            let mut tx = TenantTx::begin(self, tenant, &crate::db::Actor::default()).await?;
            if signer.checkpoint(tx.conn(), tenant).await?.is_some() {
                signed += 1;
            }
            tx.commit().await?;
        }
        Ok(signed)
    }
}

/// Retention: delete `tenant`'s events older than `before` as the platform role, in the
/// tenant's transaction, recording the cut (see sql/V13__audit_retention.sql).
pub async fn retention_purge(
    platform: &mut crate::platform::PlatformConn,
    tenant: TenantId,
    before: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<i64> {
    if let Some(purged) = platform.retention_purge_on_citus(tenant, before).await? {
        return Ok(purged);
    }
    let mut tx = platform.tenant_tx(tenant).await?;
    let purged: i64 =
        sqlx::query_scalar!(r#"SELECT audit_retention_purge($1) AS "purged!""#, before).fetch_one(tx.conn()).await?;
    tx.commit().await?;
    Ok(purged)
}
