//! Tenant registry reads for tenant resolution, as the app role (which may read only the
//! registry columns resolution needs), and the change feed that invalidates caches.

use futures_util::StreamExt;
use sqlx::postgres::PgListener;

use super::Database;
use crate::domain::TenantId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRecord {
    pub id: TenantId,
    pub slug: String,
    pub status: TenantStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantStatus {
    Trial,
    Active,
    Suspended,
    Deleted,
}

impl TenantStatus {
    fn from_db(s: &str) -> TenantStatus {
        match s {
            "trial" => TenantStatus::Trial,
            "active" => TenantStatus::Active,
            "suspended" => TenantStatus::Suspended,
            // The CHECK constraint admits nothing else; anything unexpected fails closed.
            _ => TenantStatus::Deleted,
        }
    }
}

type Row = (TenantId, String, String);

fn record((id, slug, status): Row) -> TenantRecord {
    TenantRecord { id, slug, status: TenantStatus::from_db(&status) }
}

impl Database {
    /// Every tenant that is not deleted (for scheduled work such as audit checkpoints).
    pub async fn live_tenant_ids(&self) -> Result<Vec<TenantId>, sqlx::Error> {
        sqlx::query_scalar("SELECT id FROM tenants WHERE status <> 'deleted' ORDER BY id").fetch_all(&self.pool).await
    }

    pub async fn tenant_by_slug(&self, slug: &str) -> Result<Option<TenantRecord>, sqlx::Error> {
        let row: Option<Row> = sqlx::query_as("SELECT id, slug, status FROM tenants WHERE slug = $1")
            .bind(slug)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(record))
    }

    pub async fn tenant_by_domain(&self, domain: &str) -> Result<Option<TenantRecord>, sqlx::Error> {
        let row: Option<Row> = sqlx::query_as(
            "SELECT t.id, t.slug, t.status
               FROM tenant_domains d JOIN tenants t ON t.id = d.tenant_id
              WHERE d.domain = $1",
        )
        .bind(domain)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(record))
    }

    /// Calls `on_change` whenever a tenant or domain changes anywhere (a trigger NOTIFYs),
    /// and also after a lost listener connection is re-established, since changes may
    /// have been missed meanwhile. Runs until the pool closes.
    pub async fn watch_tenant_changes(&self, on_change: impl Fn() + Send + 'static) {
        loop {
            if self.pool.is_closed() {
                return;
            }
            match PgListener::connect_with(&self.pool).await {
                Ok(mut listener) => {
                    if listener.listen("rowguard_tenant_changed").await.is_ok() {
                        on_change();
                        let mut stream = listener.into_stream();
                        while let Some(note) = stream.next().await {
                            if note.is_err() {
                                break;
                            }
                            on_change();
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "tenant change listener cannot connect; retrying"),
            }
            on_change();
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
}
