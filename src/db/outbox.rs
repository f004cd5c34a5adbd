//! The outbox as the workers see it (sql/V25): claim due items across tenants (ids only,
//! through the jobs role's definer), then read each item and record each attempt inside its
//! tenant's transaction, under RLS, like any request.

use std::time::Duration;

use sqlx::FromRow;
use uuid::Uuid;

use super::{Actor, Database, TenantTx};
use crate::domain::TenantId;

/// How far behind the workers are, across tenants (`/metrics`, `jobs status`).
#[derive(Debug, Clone, Copy, Default, PartialEq, FromRow)]
pub struct OutboxBacklog {
    pub pending: i64,
    pub oldest_seconds: f64,
    pub dead: i64,
}

/// What a claim asks for (see `outbox_claim` in sql/V25).
#[derive(Debug, Clone)]
pub struct Claim {
    /// Where this worker's last claim stopped: the turn goes on after it.
    pub after: Option<TenantId>,
    /// Tenants to skip: as many of their deliveries are in flight here as one tenant may have.
    pub busy: Vec<TenantId>,
    pub tenants: i32,
    pub per_tenant: i32,
    pub max: i32,
    /// How long the claim holds an item before another worker may take it.
    pub lease: Duration,
}

/// An item to deliver, as read in its tenant's transaction.
#[derive(Debug, Clone, FromRow)]
pub struct DueItem {
    pub id: i64,
    pub webhook_id: Uuid,
    pub message_id: Uuid,
    pub event_type: String,
    pub payload: String,
    pub attempts: i32,
    pub url: String,
    pub secret: String,
    /// The secret rotated out, while it still signs.
    pub previous_secret: Option<String>,
    /// The tenant is active (or on trial): a suspended or deleted tenant's data does not leave.
    pub tenant_live: bool,
}

/// Where an item goes after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    Delivered,
    /// Again at this time.
    Retry(chrono::DateTime<chrono::Utc>),
    Dead,
}

impl After {
    fn status(self) -> &'static str {
        match self {
            After::Delivered => "delivered",
            After::Retry(_) => "pending",
            After::Dead => "dead",
        }
    }
}

/// What a claim got.
#[derive(Debug, Clone, Default)]
pub struct Claimed {
    pub items: Vec<(TenantId, i64)>,
    /// Where the pass stopped: the next claim's `after`.
    pub stopped_at: Option<TenantId>,
    /// The pass stopped at a limit, with tenants left to visit: claim again without waiting.
    pub more: bool,
}

impl Database {
    /// Claim due items (ids only), fairly across tenants (`outbox_claim`).
    pub async fn outbox_claim(&self, claim: &Claim) -> Result<Claimed, sqlx::Error> {
        let lease_ms = i32::try_from(claim.lease.as_millis()).unwrap_or(i32::MAX);
        let busy: Vec<Uuid> = claim.busy.iter().map(|t| t.0).collect();
        let rows = sqlx::query!(
            r#"SELECT tenant_id AS "tenant_id!: TenantId", outbox_id AS "outbox_id!"
                 FROM outbox_claim($1, $2, $3, $4, $5, $6)"#,
            claim.after.map(|t| t.0),
            &busy,
            claim.tenants,
            claim.per_tenant,
            claim.max,
            lease_ms
        )
        .fetch_all(&self.background)
        .await?;
        let mut claimed = Claimed::default();
        for (tenant, id) in rows.into_iter().map(|r| (r.tenant_id, r.outbox_id)) {
            if id > 0 {
                claimed.items.push((tenant, id));
            } else {
                claimed.stopped_at = Some(tenant);
                claimed.more = id == 0;
            }
        }
        Ok(claimed)
    }

    pub async fn outbox_backlog(&self) -> Result<OutboxBacklog, sqlx::Error> {
        sqlx::query_as!(
            OutboxBacklog,
            r#"SELECT pending AS "pending!", oldest_seconds AS "oldest_seconds!", dead AS "dead!" FROM outbox_backlog()"#
        )
        .fetch_one(&self.background)
        .await
    }

    /// Read a claimed item in its tenant's transaction. None: it is gone or no longer pending
    /// (delivered by an earlier holder of the claim, discarded, its webhook deleted).
    pub async fn outbox_item(&self, tenant: TenantId, id: i64) -> Result<Option<DueItem>, sqlx::Error> {
        let mut tx = TenantTx::begin(self, tenant, &Actor::default()).await?;
        let item = sqlx::query_as!(
            DueItem,
            r#"SELECT o.id, o.webhook_id, o.message_id, o.event_type, o.payload::text AS "payload!", o.attempts,
                    w.url, w.secret,
                    CASE WHEN w.previous_secret_until > now() THEN w.previous_secret END AS previous_secret,
                    EXISTS (SELECT FROM tenants t WHERE t.id = o.tenant_id AND t.status IN ('active', 'trial'))
                        AS "tenant_live!"
               FROM outbox o JOIN webhooks w ON w.tenant_id = o.tenant_id AND w.id = o.webhook_id
              WHERE o.tenant_id = $1 AND o.id = $2 AND o.status = 'pending'"#,
            tenant.0,
            id
        )
        .fetch_optional(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(item)
    }

    /// Record one attempt in the delivery log and move the item on, in its tenant's
    /// transaction. Only an item still pending moves (one discarded meanwhile stays discarded).
    pub async fn outbox_record(
        &self,
        tenant: TenantId,
        item: &DueItem,
        attempt: &crate::jobs::delivery::Attempt,
        after: After,
    ) -> Result<(), sqlx::Error> {
        let mut tx = TenantTx::begin(self, tenant, &Actor::default()).await?;
        let next = match after {
            After::Retry(at) => Some(at),
            _ => None,
        };
        let duration_ms = i32::try_from(attempt.duration.as_millis()).unwrap_or(i32::MAX);
        let error = attempt.error.as_deref().map(|e| e.chars().take(500).collect::<String>());
        let status = attempt.status.map(i32::from);
        // Two statements, not `WITH moved AS (UPDATE …) INSERT … SELECT … FROM moved`: Citus
        // runs such an INSERT … SELECT through the coordinator, which then draws the log's
        // identity from its sequence as the app role, and is refused (it has no grant on it).
        // `finished_at` is now(), or NULL while pending, by adding NULL: Citus refuses `now()`
        // inside a CASE in an UPDATE (it evaluates such functions before sending the statement).
        let moved = sqlx::query!(
            "UPDATE outbox SET attempts = attempts + 1, status = $3,
                    next_attempt_at = coalesce($4, next_attempt_at),
                    last_status = $5, last_error = $6,
                    finished_at = now() + CASE WHEN $3 = 'pending' THEN NULL ELSE interval '0' END
              WHERE tenant_id = $1 AND id = $2 AND status = 'pending'
              RETURNING webhook_id, attempts",
            tenant.0,
            item.id,
            after.status(),
            next,
            status,
            error
        )
        .fetch_optional(tx.conn())
        .await?;
        if let Some(moved) = moved {
            sqlx::query!(
                "INSERT INTO webhook_deliveries (tenant_id, webhook_id, outbox_id, attempt, started_at, duration_ms, status_code, error)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                tenant.0,
                moved.webhook_id,
                item.id,
                moved.attempts,
                attempt.started_at,
                duration_ms,
                status,
                error
            )
            .execute(tx.conn())
            .await?;
        }
        tx.commit().await
    }

    /// Make claimed items due again at `at` without counting an attempt: handed back before
    /// they were begun, or held while their tenant is suspended.
    pub async fn outbox_reschedule(
        &self,
        tenant: TenantId,
        ids: &[i64],
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), sqlx::Error> {
        let mut tx = TenantTx::begin(self, tenant, &Actor::default()).await?;
        sqlx::query!(
            "UPDATE outbox SET next_attempt_at = $3 WHERE tenant_id = $1 AND id = ANY($2) AND status = 'pending'",
            tenant.0,
            ids,
            at
        )
        .execute(tx.conn())
        .await?;
        tx.commit().await
    }
}
