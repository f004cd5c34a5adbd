//! Webhook subscriptions and their delivery log (sql/V25), inside a tenant transaction: what
//! `/v1/webhooks` reads and writes. Secrets are written here and read only by the workers
//! (`outbox`); nothing here returns one except the call that made it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::FromRow;
use utoipa::ToSchema;
use uuid::Uuid;

use super::TenantTx;

/// A subscription as the API shows it (never its secret).
#[derive(Debug, Clone, Serialize, ToSchema, FromRow)]
pub struct Webhook {
    pub id: Uuid,
    pub url: String,
    /// Event types it receives: `contact.created`, `deal.*`, `*`, …
    pub events: Vec<String>,
    pub description: Option<String>,
    pub enabled: bool,
    /// Until when the secret rotated out still signs beside the current one.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One delivery attempt, from the log.
#[derive(Debug, Clone, Serialize, ToSchema, FromRow)]
pub struct Delivery {
    pub id: i64,
    /// The message's id: the `webhook-id` header (prefixed `msg_`), the same on every attempt.
    pub message_id: Uuid,
    pub event_type: String,
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    /// The receiver's status; absent when it never answered.
    pub status_code: Option<i32>,
    pub error: Option<String>,
    /// Where the message stands now: `pending` (to be retried), `delivered`, `dead`, `discarded`.
    pub message_status: String,
}

const COLUMNS: &str = "id, url, events, description, enabled,
     CASE WHEN previous_secret_until > now() THEN previous_secret_until END AS previous_secret_expires_at,
     created_at, updated_at";

/// A write's `RETURNING *` read back through `COLUMNS`: Citus refuses a function that is not
/// IMMUTABLE (`now()` above) in a RETURNING clause, and a CTE's outer SELECT may call it (the
/// same row on PostgreSQL).
fn returning_columns(write: &str) -> String {
    format!("WITH w AS ({write} RETURNING *) SELECT {COLUMNS} FROM w")
}

/// Subscriptions a tenant may have.
pub const MAX_PER_TENANT: i64 = 50;

/// What may change; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct Change {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    /// `Some(None)` clears it.
    pub description: Option<Option<String>>,
    pub enabled: Option<bool>,
}

/// The tenant's subscriptions, counted under a transaction lock on the tenant's subscriptions,
/// so that two creations at once cannot both pass the limit.
pub async fn count(tx: &mut TenantTx<'_>) -> Result<i64, sqlx::Error> {
    let tenant = tx.tenant().0;
    sqlx::query!("SELECT pg_advisory_xact_lock(hashtextextended('rowguard.webhooks/' || $1::text, 0))", tenant as _)
        .execute(tx.conn())
        .await?;
    sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM webhooks WHERE tenant_id = $1"#, tenant)
        .fetch_one(tx.conn())
        .await
}

pub async fn create(
    tx: &mut TenantTx<'_>,
    url: &str,
    events: &[String],
    description: Option<&str>,
    secret: &str,
) -> Result<Webhook, sqlx::Error> {
    let tenant = tx.tenant().0;
    let sql = returning_columns(
        "INSERT INTO webhooks (tenant_id, id, url, events, description, secret) VALUES ($1, $2, $3, $4, $5, $6)",
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(Uuid::now_v7())
        .bind(url)
        .bind(events)
        .bind(description)
        .bind(secret)
        .fetch_one(tx.conn())
        .await
}

pub async fn list(tx: &mut TenantTx<'_>, after: Option<Uuid>, limit: i64) -> Result<Vec<Webhook>, sqlx::Error> {
    let tenant = tx.tenant().0;
    let sql = format!(
        "SELECT {COLUMNS} FROM webhooks WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(tenant).bind(after).bind(limit).fetch_all(tx.conn()).await
}

pub async fn get(tx: &mut TenantTx<'_>, id: Uuid) -> Result<Option<Webhook>, sqlx::Error> {
    let tenant = tx.tenant().0;
    let sql = format!("SELECT {COLUMNS} FROM webhooks WHERE tenant_id = $1 AND id = $2");
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(tenant).bind(id).fetch_optional(tx.conn()).await
}

pub async fn update(tx: &mut TenantTx<'_>, id: Uuid, change: Change) -> Result<Option<Webhook>, sqlx::Error> {
    let tenant = tx.tenant().0;
    let (set_description, description) = match change.description {
        Some(d) => (true, d),
        None => (false, None),
    };
    let sql = returning_columns(
        "UPDATE webhooks SET url = coalesce($3, url), events = coalesce($4, events),
                description = CASE WHEN $5 THEN $6 ELSE description END,
                enabled = coalesce($7, enabled), updated_at = now()
          WHERE tenant_id = $1 AND id = $2",
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(id)
        .bind(change.url)
        .bind(change.events)
        .bind(set_description)
        .bind(description)
        .bind(change.enabled)
        .fetch_optional(tx.conn())
        .await
}

/// Delete a subscription with its pending deliveries and its log.
pub async fn delete(tx: &mut TenantTx<'_>, id: Uuid) -> Result<bool, sqlx::Error> {
    let tenant = tx.tenant().0;
    let done =
        sqlx::query!("DELETE FROM webhooks WHERE tenant_id = $1 AND id = $2", tenant, id).execute(tx.conn()).await?;
    Ok(done.rows_affected() == 1)
}

/// A new secret; the current one keeps signing beside it for `overlap`.
pub async fn rotate(
    tx: &mut TenantTx<'_>,
    id: Uuid,
    secret: &str,
    overlap: std::time::Duration,
) -> Result<Option<Webhook>, sqlx::Error> {
    let tenant = tx.tenant().0;
    let sql = returning_columns(
        "UPDATE webhooks SET previous_secret = secret, previous_secret_until = now() + make_interval(secs => $4),
                secret = $3, updated_at = now()
          WHERE tenant_id = $1 AND id = $2",
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(id)
        .bind(secret)
        .bind(overlap.as_secs_f64())
        .fetch_optional(tx.conn())
        .await
}

/// The delivery log of one subscription, newest first, before `before` (an attempt's id).
pub async fn deliveries(
    tx: &mut TenantTx<'_>,
    webhook: Uuid,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<Delivery>, sqlx::Error> {
    let tenant = tx.tenant().0;
    sqlx::query_as!(
        Delivery,
        "SELECT d.id, o.message_id, o.event_type, d.attempt, d.started_at, d.duration_ms, d.status_code, d.error,
                o.status AS message_status
           FROM webhook_deliveries d JOIN outbox o ON o.tenant_id = d.tenant_id AND o.id = d.outbox_id
          WHERE d.tenant_id = $1 AND d.webhook_id = $2 AND ($3::bigint IS NULL OR d.id < $3)
          ORDER BY d.id DESC LIMIT $4",
        tenant,
        webhook,
        before,
        limit
    )
    .fetch_all(tx.conn())
    .await
}

/// What asking to send a logged message again came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redelivery {
    /// Queued again with a fresh set of attempts.
    Queued,
    /// Still waiting to be sent (or retried): nothing to do.
    AlreadyPending,
    NotFound,
}

/// Send the message of logged attempt `delivery` again: a delivered, dead or discarded message
/// goes back to the queue with its attempts reset (the same `webhook-id`, so a receiver that
/// keeps ids can tell it is the same message).
pub async fn redeliver(tx: &mut TenantTx<'_>, webhook: Uuid, delivery: i64) -> Result<Redelivery, sqlx::Error> {
    let tenant = tx.tenant().0;
    let status: Option<String> = sqlx::query_scalar!(
        "SELECT o.status FROM webhook_deliveries d JOIN outbox o ON o.tenant_id = d.tenant_id AND o.id = d.outbox_id
          WHERE d.tenant_id = $1 AND d.webhook_id = $2 AND d.id = $3
          FOR UPDATE OF o",
        tenant,
        webhook,
        delivery
    )
    .fetch_optional(tx.conn())
    .await?;
    match status.as_deref() {
        None => Ok(Redelivery::NotFound),
        Some("pending") => Ok(Redelivery::AlreadyPending),
        Some(_) => {
            sqlx::query!(
                "UPDATE outbox o SET status = 'pending', attempts = 0, next_attempt_at = now(), finished_at = NULL
                   FROM webhook_deliveries d
                  WHERE d.tenant_id = $1 AND d.webhook_id = $2 AND d.id = $3
                    AND o.tenant_id = d.tenant_id AND o.id = d.outbox_id",
                tenant,
                webhook,
                delivery
            )
            .execute(tx.conn())
            .await?;
            // The outbox is not audited row by row; a person asking to send again is recorded.
            sqlx::query!(
                "SELECT audit_append_for($1, 'webhook.redeliver', 'webhook', $2, 'success', $3)",
                tx.tenant().0,
                webhook.to_string(),
                serde_json::json!({"delivery": delivery})
            )
            .execute(tx.conn())
            .await?;
            Ok(Redelivery::Queued)
        }
    }
}
