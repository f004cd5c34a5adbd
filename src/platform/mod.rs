//! Platform writes (the operator CLI and the platform API) as the platform role, which is held
//! to RLS like any other: tenant rows are only ever written inside that tenant's transaction.
//!
//! Two doors lead here, both ending in a `PlatformConn`:
//! - the CLI's dedicated connection over the admin URL, which switches to `rowguard_platform`
//!   (`PlatformConn::connect`);
//! - the service's own pool (`PlatformDb`), logged in as `rowguard_platform_login`, a
//!   NOSUPERUSER NOBYPASSRLS member of `rowguard_platform`. The service never holds the admin
//!   URL, and the app role that serves tenant requests cannot write the registry or read
//!   operators, so no tenant request can change either (DESIGN.md, Platform tables).

pub mod domains;
pub mod jobs;
pub mod operators;
pub mod placement;
pub mod purge;
pub mod row_counts;
pub mod transfer;

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection, PgPool, Postgres};

use crate::db::registry::RateLimitOverride;
use crate::db::{Actor, PLATFORM_ROLE, TenantTx};
use crate::domain::{Email, Plan, Role, Slug, TenantId, TenantStatus, UserId};

#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("a tenant with slug {0:?} already exists")]
    SlugTaken(String),
    #[error("domain {0:?} already belongs to a tenant")]
    DomainTaken(String),
    #[error("no tenant with slug {0:?}")]
    TenantNotFound(String),
    #[error("tenant {0:?} is deleted; its data is gone and it cannot change any more")]
    TenantDeleted(String),
    #[error("tenant {0:?} is not deleted; delete it before purging its registry entry")]
    TenantNotDeleted(String),
    #[error("an operator with e-mail {0:?} already exists")]
    OperatorEmailTaken(String),
    #[error("the platform login {0} may bypass row-level security (superuser or BYPASSRLS); refusing it")]
    PrivilegedLogin(String),
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
}

pub struct NewTenant {
    pub slug: Slug,
    pub name: String,
    pub owner_email: Email,
    /// Already hashed (argon2id): hashing is the caller's business, off any async runtime.
    pub owner_password_hash: String,
    pub domains: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct TenantSummary {
    pub id: TenantId,
    pub slug: String,
    pub name: String,
    pub status: TenantStatus,
    pub plan: Plan,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct TenantDomain {
    pub domain: String,
    pub is_primary: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy)]
pub struct CreatedTenant {
    pub tenant: TenantId,
    pub owner: UserId,
}

/// What changes about a tenant; `None` leaves a field as it is. Deletion is not a status
/// change here: it purges, see `delete_tenant`.
#[derive(Debug, Default, Clone)]
pub struct TenantChange {
    pub status: Option<TenantStatus>,
    pub plan: Option<Plan>,
    pub name: Option<String>,
}

/// The service's pool of platform-role connections. Cloning is cheap.
#[derive(Clone)]
pub struct PlatformDb {
    pool: PgPool,
}

impl PlatformDb {
    /// Connect as the platform login and make sure it cannot bypass RLS: a superuser URL
    /// configured here by mistake would make every purge and every owner insert unchecked.
    pub async fn connect(url: &str, max_connections: u32) -> Result<PlatformDb, PlatformError> {
        let options = PgConnectOptions::from_str(url)?.application_name("rowguard-platform");
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(options)
            .await?;
        let row = sqlx::query!(
            r#"SELECT current_user::text AS "user!", rolsuper OR rolbypassrls AS "privileged!"
                 FROM pg_roles WHERE rolname = current_user"#
        )
        .fetch_one(&pool)
        .await?;
        let (user, privileged) = (row.user, row.privileged);
        if privileged {
            pool.close().await;
            return Err(PlatformError::PrivilegedLogin(user));
        }
        Ok(PlatformDb { pool })
    }

    /// On Citus, refuse unless this login's `SET LOCAL`s reach the workers
    /// (`Backend::ensure_ready`).
    pub async fn ensure_backend_ready(&self) -> anyhow::Result<()> {
        let mut conn = self.pool.acquire().await?;
        let backend = crate::backend::Backend::detect(&mut conn).await?;
        backend.ensure_ready(&mut conn).await
    }

    pub async fn acquire(&self) -> Result<PlatformConn, PlatformError> {
        Ok(PlatformConn { link: Link::Pooled(self.pool.acquire().await?), acting: None })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

enum Link {
    Dedicated(PgConnection),
    Pooled(PoolConnection<Postgres>),
}

/// One platform-role connection; every registry, domain, operator and lifecycle operation is
/// a method here.
pub struct PlatformConn {
    link: Link,
    /// Who acts (an operator, with the request's id and address), for the audit events the
    /// tenant-changing operations write (`audited_tx`). None: the CLI, recorded as an operator.
    acting: Option<Actor>,
}

impl PlatformConn {
    /// A dedicated connection over the admin URL that switches to the platform role (the CLI).
    pub async fn connect(admin_url: &str) -> Result<PlatformConn, PlatformError> {
        let options = PgConnectOptions::from_str(admin_url)?.application_name("rowguard-platform");
        let mut conn = PgConnection::connect_with(&options).await?;
        conn.execute(AssertSqlSafe(format!("SET ROLE {PLATFORM_ROLE}"))).await?;
        Ok(PlatformConn { link: Link::Dedicated(conn), acting: None })
    }

    /// `policies verify` on the live catalog, read through this connection (the operator
    /// console's findings page; the catalog is readable by every role).
    pub async fn catalog_findings(&mut self) -> Result<Vec<crate::catalog::Finding>, PlatformError> {
        Ok(crate::catalog::verify(self.conn()).await?)
    }

    /// Retention (`audit::retention_purge`) on Citus: one statement outside a transaction
    /// block, so that Citus runs it on the worker holding the tenant's shards, where the
    /// sealer's lock is (sql/V26, `migrate::citus::DELEGATED_FUNCTIONS`). None on plain
    /// PostgreSQL, where the caller purges in a tenant transaction.
    pub async fn retention_purge_on_citus(
        &mut self,
        tenant: TenantId,
        before: DateTime<Utc>,
    ) -> Result<Option<i64>, PlatformError> {
        if crate::backend::Backend::detect(self.conn()).await? != crate::backend::Backend::Citus {
            return Ok(None);
        }
        let purged: i64 = sqlx::query_scalar("SELECT audit_retention_purge_tenant($1, $2)")
            .bind(tenant.0)
            .bind(before)
            .fetch_one(self.conn())
            .await?;
        Ok(Some(purged))
    }

    pub(super) fn conn(&mut self) -> &mut PgConnection {
        match &mut self.link {
            Link::Dedicated(conn) => conn,
            Link::Pooled(conn) => conn,
        }
    }

    /// Create a tenant, its domains and its owner in one transaction with the tenant set.
    pub async fn create_tenant(&mut self, new: NewTenant) -> Result<CreatedTenant, PlatformError> {
        self.create_tenant_with(new, TenantStatus::Active, Plan::Free).await
    }

    /// As `create_tenant`, with the initial status (`trial` for self-service signups) and plan.
    pub async fn create_tenant_with(
        &mut self,
        new: NewTenant,
        status: TenantStatus,
        plan: Plan,
    ) -> Result<CreatedTenant, PlatformError> {
        let tenant = TenantId::new_v7();
        let owner = UserId::new_v7();
        let mut tx = TenantTx::begin_on(self.conn(), tenant).await?;
        sqlx::query!(
            "INSERT INTO tenants (id, slug, name, status, plan) VALUES ($1, $2, $3, $4, $5)",
            tenant.0,
            new.slug.as_str(),
            &new.name,
            status.as_str(),
            plan.as_str()
        )
        .execute(tx.conn())
        .await
        .map_err(|e| on_unique(e, || PlatformError::SlugTaken(new.slug.to_string())))?;
        for (i, domain) in new.domains.iter().enumerate() {
            sqlx::query!(
                "INSERT INTO tenant_domains (domain, tenant_id, is_primary) VALUES ($1, $2, $3)",
                domain,
                tenant.0,
                i == 0
            )
            .execute(tx.conn())
            .await
            .map_err(|e| on_unique(e, || PlatformError::DomainTaken(domain.clone())))?;
        }
        sqlx::query!(
            "INSERT INTO users (tenant_id, id, email, password_hash, role) VALUES ($1, $2, $3, $4, $5)",
            tenant.0,
            owner.0,
            new.owner_email.as_str(),
            &new.owner_password_hash,
            Role::Owner.as_str()
        )
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(CreatedTenant { tenant, owner })
    }

    pub async fn list_tenants(&mut self) -> Result<Vec<TenantSummary>, PlatformError> {
        Ok(sqlx::query_as!(TenantSummary, r#"SELECT id AS "id: TenantId", slug, name, status AS "status: TenantStatus", plan AS "plan: Plan", created_at FROM tenants ORDER BY slug"#)
            .fetch_all(self.conn())
            .await?)
    }

    /// One keyset page in slug order: the tenants after `after` (a slug), at most `limit`.
    pub async fn list_tenants_page(
        &mut self,
        after: Option<&Slug>,
        limit: i64,
        status: Option<TenantStatus>,
    ) -> Result<Vec<TenantSummary>, PlatformError> {
        Ok(sqlx::query_as!(
            TenantSummary,
            r#"SELECT id AS "id: TenantId", slug, name, status AS "status: TenantStatus", plan AS "plan: Plan", created_at FROM tenants
              WHERE ($1::text IS NULL OR slug > $1) AND ($2::text IS NULL OR status = $2)
              ORDER BY slug LIMIT $3"#,
            after.map(Slug::as_str),
            status.map(TenantStatus::as_str),
            limit
        )
        .fetch_all(self.conn())
        .await?)
    }

    pub async fn tenant(&mut self, slug: &Slug) -> Result<Option<TenantSummary>, PlatformError> {
        Ok(sqlx::query_as!(TenantSummary, r#"SELECT id AS "id: TenantId", slug, name, status AS "status: TenantStatus", plan AS "plan: Plan", created_at FROM tenants WHERE slug = $1"#, slug.as_str())
            .fetch_optional(self.conn())
            .await?)
    }

    async fn existing(&mut self, slug: &Slug) -> Result<TenantSummary, PlatformError> {
        self.tenant(slug).await?.ok_or_else(|| PlatformError::TenantNotFound(slug.to_string()))
    }

    /// Change status, plan or name. A deleted tenant cannot come back: its rows are gone, and
    /// reviving it would hand its old subdomain an empty tenant.
    pub async fn change_tenant(&mut self, slug: &Slug, change: TenantChange) -> Result<TenantSummary, PlatformError> {
        if change.status == Some(TenantStatus::Deleted) {
            self.delete_tenant(slug).await?;
            return self.existing(slug).await;
        }
        let current = self.existing(slug).await?;
        if current.status == TenantStatus::Deleted {
            return Err(PlatformError::TenantDeleted(slug.to_string()));
        }
        // In the tenant's own transaction, so the change lands in its audit trail with it.
        let mut tx = self.audited_tx(current.id).await?;
        let changed: Option<TenantSummary> = sqlx::query_as!(
            TenantSummary,
            r#"UPDATE tenants
                SET status = COALESCE($2, status), plan = COALESCE($3, plan), name = COALESCE($4, name),
                    updated_at = now()
              WHERE slug = $1 AND status <> 'deleted'
             RETURNING id AS "id: TenantId", slug, name, status AS "status: TenantStatus", plan AS "plan: Plan", created_at"#,
            slug.as_str(),
            change.status.map(TenantStatus::as_str),
            change.plan.map(Plan::as_str),
            change.name.as_deref()
        )
        .fetch_optional(tx.conn())
        .await?;
        // Deleted between the two statements: say so rather than pretend it changed.
        let changed = changed.ok_or_else(|| PlatformError::TenantDeleted(slug.to_string()))?;
        let action = match (current.status.as_str(), changed.status.as_str()) {
            (before, "suspended") if before != "suspended" => "tenant.suspend",
            ("suspended", after) if after != "suspended" => "tenant.resume",
            _ if current.plan != changed.plan => "tenant.plan_change",
            _ => "tenant.update",
        };
        let details = serde_json::json!({
            "before": {"status": current.status, "plan": current.plan, "name": current.name},
            "after": {"status": changed.status, "plan": changed.plan, "name": changed.name},
        });
        sqlx::query!(
            "SELECT audit_append_for($1, $2, 'tenant', $3, 'success', $4, 'operator')",
            tx.tenant().0,
            action,
            changed.id.to_string(),
            details
        )
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(changed)
    }

    /// The tenant's rate-limit override, if it has one (None: its plan's quota applies).
    pub async fn rate_limit(&mut self, tenant: TenantId) -> Result<Option<RateLimitOverride>, PlatformError> {
        let row: Option<(Option<i32>, Option<i32>)> =
            sqlx::query!("SELECT rate_limit_per_second, rate_limit_burst FROM tenants WHERE id = $1", tenant.0)
                .fetch_optional(self.conn())
                .await?
                .map(|r| (r.rate_limit_per_second, r.rate_limit_burst));
        Ok(row.and_then(|(per_second, burst)| rate_limit_of(per_second, burst)))
    }

    /// Set the tenant's rate-limit override, or clear it (None: the plan's quota again). Like
    /// a plan change it happens in the tenant's own transaction with its audit event
    /// (`tenant.rate_limit_change`, before and after), and every instance's resolution cache
    /// hears of it through the registry's NOTIFY (sql/V4__tenant_rate_limits.sql). Values
    /// outside 1..=1,000,000 are refused by the table's CHECK; callers validate first.
    pub async fn set_rate_limit(
        &mut self,
        slug: &Slug,
        limit: Option<RateLimitOverride>,
    ) -> Result<Option<RateLimitOverride>, PlatformError> {
        let current = self.existing(slug).await?;
        if current.status == TenantStatus::Deleted {
            return Err(PlatformError::TenantDeleted(slug.to_string()));
        }
        let mut tx = self.audited_tx(current.id).await?;
        let before: Option<(Option<i32>, Option<i32>)> = sqlx::query!(
            "SELECT rate_limit_per_second, rate_limit_burst FROM tenants WHERE id = $1 AND status <> 'deleted' FOR UPDATE",
            current.id.0
        )
        .fetch_optional(tx.conn())
        .await?
        .map(|r| (r.rate_limit_per_second, r.rate_limit_burst));
        let (before_per_second, before_burst) = before.ok_or_else(|| PlatformError::TenantDeleted(slug.to_string()))?;
        let to_i32 = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
        sqlx::query!(
            "UPDATE tenants SET rate_limit_per_second = $2, rate_limit_burst = $3, updated_at = now() WHERE id = $1",
            current.id.0,
            limit.map(|l| to_i32(l.per_second)),
            limit.map(|l| to_i32(l.burst))
        )
        .execute(tx.conn())
        .await?;
        // null: the plan's quota (named beside the diff).
        let shown = |l: Option<RateLimitOverride>| {
            serde_json::json!({
                "rate_limit_per_second": l.map(|l| l.per_second),
                "rate_limit_burst": l.map(|l| l.burst),
            })
        };
        let before = rate_limit_of(before_per_second, before_burst);
        let details = serde_json::json!({"before": shown(before), "after": shown(limit), "plan": current.plan});
        sqlx::query!(
            "SELECT audit_append_for($1, 'tenant.rate_limit_change', 'tenant', $2, 'success', $3, 'operator')",
            tx.tenant().0,
            current.id.to_string(),
            details
        )
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(limit)
    }

    /// Mark the tenant deleted and purge its rows from every table with a `tenant_id`, in ONE
    /// transaction with that tenant set (the platform role is held to RLS: this cannot touch
    /// another tenant's rows). Tenant resolution answers 404 from the moment it commits.
    /// Safe to repeat. Returns rows deleted per table.
    pub async fn delete_tenant(&mut self, slug: &Slug) -> Result<Vec<(String, u64)>, PlatformError> {
        let tenant = self.existing(slug).await?;
        let mut tx = TenantTx::begin_on(self.conn(), tenant.id).await?;
        sqlx::query!("UPDATE tenants SET status = 'deleted', updated_at = now() WHERE id = $1", tenant.id.0)
            .execute(tx.conn())
            .await?;
        let report = purge::purge_tenant_rows(&mut tx).await?;
        tx.commit().await?;
        Ok(report)
    }

    /// Remove a deleted tenant's registry entry too, which frees its slug for a new tenant.
    /// Only after `delete_tenant`: the purge runs again first, in the same transaction.
    pub async fn purge_tenant(&mut self, slug: &Slug) -> Result<Vec<(String, u64)>, PlatformError> {
        let tenant = self.existing(slug).await?;
        if tenant.status != TenantStatus::Deleted {
            return Err(PlatformError::TenantNotDeleted(slug.to_string()));
        }
        let mut tx = TenantTx::begin_on(self.conn(), tenant.id).await?;
        let report = purge::purge_tenant_rows(&mut tx).await?;
        sqlx::query!("DELETE FROM tenants WHERE id = $1 AND status = 'deleted'", tenant.id.0)
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(report)
    }

    /// The id of a tenant that exists and is not deleted.
    pub(super) async fn live(&mut self, slug: &Slug) -> Result<TenantId, PlatformError> {
        let tenant = self.existing(slug).await?;
        if tenant.status == TenantStatus::Deleted {
            return Err(PlatformError::TenantDeleted(slug.to_string()));
        }
        Ok(tenant.id)
    }

    /// From here on, the audit events this connection writes name `actor` (an operator's id as
    /// the actor id, the request's id, address and agent).
    pub fn act_as(&mut self, actor: Actor) {
        self.acting = Some(actor);
    }

    /// A tenant transaction whose audit events name who acts (`act_as`).
    pub(crate) async fn audited_tx(&mut self, tenant: TenantId) -> Result<TenantTx<'_>, PlatformError> {
        let settings = self.acting.as_ref().map(Actor::set_local);
        let mut tx = TenantTx::begin_on(self.conn(), tenant).await?;
        if let Some(settings) = settings {
            // Ids, an address and hex only (see `Actor`): nothing here can carry SQL.
            sqlx::raw_sql(AssertSqlSafe(settings)).execute(tx.conn()).await?;
        }
        Ok(tx)
    }

    /// A tenant transaction on this connection, as the platform role (held to RLS): for
    /// bulk work on one tenant's rows, such as imports and benchmark fixtures.
    pub async fn tenant_tx(&mut self, tenant: TenantId) -> Result<TenantTx<'_>, PlatformError> {
        Ok(TenantTx::begin_on(self.conn(), tenant).await?)
    }

    /// The tenant imported from `source` (`<database>/<schema>`), if any: its slug, id and the
    /// source's fingerprint at the time (None if imported before fingerprints were kept).
    pub async fn tenant_imported_from(
        &mut self,
        source: &str,
    ) -> Result<Option<(String, TenantId, Option<String>)>, PlatformError> {
        Ok(sqlx::query!(
            r#"SELECT slug, id AS "id: TenantId", import_fingerprint FROM tenants WHERE import_source = $1"#,
            source
        )
        .fetch_optional(self.conn())
        .await?
        .map(|r| (r.slug, r.id, r.import_fingerprint)))
    }

    /// The id of the tenant `slug` names (in any status), if there is one.
    pub async fn tenant_id_by_slug(&mut self, slug: &Slug) -> Result<Option<TenantId>, PlatformError> {
        Ok(sqlx::query_scalar!("SELECT id FROM tenants WHERE slug = $1", slug.as_str())
            .fetch_optional(self.conn())
            .await?
            .map(TenantId))
    }

    pub async fn tenant_exists(&mut self, slug: &Slug) -> Result<bool, PlatformError> {
        Ok(sqlx::query_scalar!(r#"SELECT EXISTS (SELECT FROM tenants WHERE slug = $1) AS "exists!""#, slug.as_str())
            .fetch_one(self.conn())
            .await?)
    }
}

/// The override the two columns hold: both set and positive, or none (as resolution reads it).
fn rate_limit_of(per_second: Option<i32>, burst: Option<i32>) -> Option<RateLimitOverride> {
    match (per_second.map(u32::try_from), burst.map(u32::try_from)) {
        (Some(Ok(per_second)), Some(Ok(burst))) if per_second > 0 && burst > 0 => {
            Some(RateLimitOverride { per_second, burst })
        }
        _ => None,
    }
}

pub(super) fn on_unique(e: sqlx::Error, err: impl FnOnce() -> PlatformError) -> PlatformError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => err(),
        _ => PlatformError::Sql(e),
    }
}
