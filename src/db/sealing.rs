//! What the audit log's sealer asks across tenants (sql/V21): which tenants have committed
//! events waiting, and how far behind it is. Ids and counts only, through the audit role's
//! definers; the sealing itself runs in each tenant's own transaction (`audit::tree::seal`).

use crate::domain::TenantId;

use super::Database;

/// How far behind sealing is, across tenants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backlog {
    /// Appending transactions whose events are not sealed yet.
    pub transactions: i64,
    /// Age of the oldest of them (0 when there are none).
    pub oldest_seconds: f64,
}

impl Database {
    /// Up to `limit` tenants with committed events not yet in their tree, longest waiting first.
    pub async fn audit_unsealed_tenants(&self, limit: i32) -> Result<Vec<TenantId>, sqlx::Error> {
        sqlx::query_scalar("SELECT t FROM audit_unsealed_tenants($1) AS t").bind(limit).fetch_all(&self.pool).await
    }

    pub async fn audit_unsealed_backlog(&self) -> Result<Backlog, sqlx::Error> {
        let (transactions, oldest_seconds): (i64, f64) =
            sqlx::query_as("SELECT transactions, oldest_seconds FROM audit_unsealed_backlog()")
                .fetch_one(&self.pool)
                .await?;
        Ok(Backlog { transactions, oldest_seconds })
    }
}
