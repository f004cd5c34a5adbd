//! The outbox for operators (`rowguard jobs`): the backlog per tenant, read from the queue
//! (ids, times and counts: no tenant data), and reviving or discarding a tenant's dead letters,
//! written in that tenant's transaction like any other change to its rows.

use serde::Serialize;

use super::{PlatformConn, PlatformError};
use crate::domain::TenantId;

/// One tenant's share of the outbox.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TenantBacklog {
    pub slug: String,
    pub tenant_id: TenantId,
    /// Deliveries waiting to be sent or retried.
    pub pending: i64,
    /// Age of the oldest of them, in seconds (0 when none waits).
    pub oldest_seconds: f64,
    /// Dead letters: deliveries that used up their attempts.
    pub dead: i64,
}

/// Which of a tenant's items a retry or discard applies to.
#[derive(Debug, Clone, Copy)]
pub enum Items {
    One(i64),
    AllDead,
}

impl PlatformConn {
    /// Every tenant with something in the outbox, the biggest backlog first.
    pub async fn outbox_status(&mut self) -> Result<Vec<TenantBacklog>, PlatformError> {
        Ok(sqlx::query_as!(
            TenantBacklog,
            r#"SELECT t.slug, t.id AS "tenant_id: TenantId",
                    count(*) FILTER (WHERE NOT q.dead) AS "pending!",
                    coalesce(extract(epoch FROM now() - min(q.since) FILTER (WHERE NOT q.dead)), 0)::float8
                        AS "oldest_seconds!",
                    count(*) FILTER (WHERE q.dead) AS "dead!"
               FROM outbox_queue q JOIN tenants t ON t.id = q.tenant_id
              GROUP BY t.slug, t.id ORDER BY "pending!" DESC, "dead!" DESC, t.slug"#
        )
        .fetch_all(self.conn())
        .await?)
    }

    /// Queue dead letters again with a fresh set of attempts. Returns how many.
    pub async fn outbox_retry(&mut self, tenant: TenantId, items: Items) -> Result<u64, PlatformError> {
        self.outbox_move(
            tenant,
            items,
            "outbox.retry",
            "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = now(), finished_at = NULL
              WHERE tenant_id = $1 AND status = 'dead' AND ($2::bigint IS NULL OR id = $2)",
        )
        .await
    }

    /// Give up on dead letters (or one pending item): they stay in the log as `discarded`.
    pub async fn outbox_discard(&mut self, tenant: TenantId, items: Items) -> Result<u64, PlatformError> {
        self.outbox_move(
            tenant,
            items,
            "outbox.discard",
            "UPDATE outbox SET status = 'discarded', finished_at = now()
              WHERE tenant_id = $1 AND ($2::bigint IS NULL AND status = 'dead' OR id = $2 AND status IN ('dead', 'pending'))",
        )
        .await
    }

    /// Run `sql` on the tenant's items and record it in the tenant's audit log as `action`, in
    /// one transaction.
    async fn outbox_move(
        &mut self,
        tenant: TenantId,
        items: Items,
        action: &'static str,
        sql: &'static str,
    ) -> Result<u64, PlatformError> {
        let id = match items {
            Items::One(id) => Some(id),
            Items::AllDead => None,
        };
        let mut tx = self.audited_tx(tenant).await?;
        let moved = sqlx::query(sql).bind(tenant.0).bind(id).execute(tx.conn()).await?.rows_affected();
        if moved > 0 {
            let details = serde_json::json!({"items": moved, "id": id, "all_dead": id.is_none()});
            sqlx::query!(
                "SELECT audit_append_for($1, $2, 'outbox', NULL, 'success', $3, 'operator')",
                tx.tenant().0,
                action,
                details
            )
            .execute(tx.conn())
            .await?;
        }
        tx.commit().await?;
        Ok(moved)
    }
}
