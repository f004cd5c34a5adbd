//! Tenant registry reads for tenant resolution, as the app role (which may read only the
//! registry columns resolution needs), and the change feed that invalidates caches.

use std::sync::Arc;

use super::Database;
use crate::domain::{Plan, TenantId, TenantStatus};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRecord {
    pub id: TenantId,
    /// Shared, like the origins: the tenant cache hands out a copy of its record per request.
    pub slug: Arc<str>,
    pub status: TenantStatus,
    pub plan: Plan,
    /// Overrides the plan's quota when set (V4__tenant_rate_limits.sql).
    pub rate_limit: Option<RateLimitOverride>,
    /// Origins a browser may call this tenant from (CORS), exact `scheme://host[:port]`.
    pub cors_allowed_origins: Arc<[String]>,
}

/// A per-tenant quota stored on the registry row: sustained requests per second and burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitOverride {
    pub per_second: u32,
    pub burst: u32,
}

/// A registry row as the two lookups below read it.
struct Row {
    id: TenantId,
    slug: String,
    status: TenantStatus,
    plan: Plan,
    rate_limit_per_second: Option<i32>,
    rate_limit_burst: Option<i32>,
    cors_allowed_origins: Vec<String>,
}

fn record(row: Row) -> TenantRecord {
    let Row {
        id,
        slug,
        status,
        plan,
        rate_limit_per_second: per_second,
        rate_limit_burst: burst,
        cors_allowed_origins,
    } = row;
    // The CHECK constraints keep both positive and set together; anything else means "no override".
    let rate_limit = match (per_second.map(u32::try_from), burst.map(u32::try_from)) {
        (Some(Ok(per_second)), Some(Ok(burst))) if per_second > 0 && burst > 0 => {
            Some(RateLimitOverride { per_second, burst })
        }
        _ => None,
    };
    TenantRecord { id, slug: slug.into(), status, plan, rate_limit, cors_allowed_origins: cors_allowed_origins.into() }
}

impl Database {
    /// Every tenant that is not deleted (for scheduled work such as audit checkpoints).
    pub async fn live_tenant_ids(&self) -> Result<Vec<TenantId>, sqlx::Error> {
        let mut lease = self.pool.acquire().await?;
        let ids =
            sqlx::query_scalar!(r#"SELECT id AS "id: TenantId" FROM tenants WHERE status <> 'deleted' ORDER BY id"#)
                .fetch_all(lease.conn()?)
                .await?;
        lease.done();
        Ok(ids)
    }

    pub async fn tenant_by_slug(&self, slug: &str) -> Result<Option<TenantRecord>, sqlx::Error> {
        let mut lease = self.pool.acquire().await?;
        let row = sqlx::query_as!(
            Row,
            r#"SELECT id AS "id: TenantId", slug, status AS "status: TenantStatus", plan AS "plan: Plan",
                      rate_limit_per_second, rate_limit_burst, cors_allowed_origins
                 FROM tenants WHERE slug = $1"#,
            slug,
        )
        .fetch_optional(lease.conn()?)
        .await?;
        lease.done();
        Ok(row.map(record))
    }

    pub async fn tenant_by_domain(&self, domain: &str) -> Result<Option<TenantRecord>, sqlx::Error> {
        let mut lease = self.pool.acquire().await?;
        let row = sqlx::query_as!(
            Row,
            r#"SELECT t.id AS "id: TenantId", t.slug, t.status AS "status: TenantStatus", t.plan AS "plan: Plan",
                      t.rate_limit_per_second, t.rate_limit_burst, t.cors_allowed_origins
                 FROM tenant_domains d JOIN tenants t ON t.id = d.tenant_id
                WHERE d.domain = $1"#,
            domain,
        )
        .fetch_optional(lease.conn()?)
        .await?;
        lease.done();
        Ok(row.map(record))
    }
}

/// The feed that calls `on_change` whenever a tenant or domain changes anywhere (a trigger
/// NOTIFYs), and also after a lost listener connection is re-established, since changes may
/// have been missed meanwhile.
pub fn tenant_changes(on_change: impl Fn() + Send + Sync + 'static) -> super::listen::Feed {
    super::listen::Feed::new("rowguard_tenant_changed", move |_| on_change())
}
