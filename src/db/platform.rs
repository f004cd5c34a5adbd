//! Platform writes (the operator CLI now, the platform API later): a dedicated connection over
//! the admin URL that switches to the platform role, which is held to RLS like any other.
//! Creating a tenant writes its owner inside a tenant transaction — never an RLS bypass.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

use super::{PLATFORM_ROLE, TenantTx};
use crate::domain::{Email, Role, Slug, TenantId, UserId};

#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("a tenant with slug {0:?} already exists")]
    SlugTaken(String),
    #[error("domain {0:?} already belongs to a tenant")]
    DomainTaken(String),
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

#[derive(Debug, Clone, serde::Serialize)]
pub struct TenantSummary {
    pub id: TenantId,
    pub slug: String,
    pub name: String,
    pub status: String,
    pub plan: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy)]
pub struct CreatedTenant {
    pub tenant: TenantId,
    pub owner: UserId,
}

pub struct PlatformConn {
    conn: PgConnection,
}

impl PlatformConn {
    pub async fn connect(admin_url: &str) -> Result<PlatformConn, PlatformError> {
        let options = PgConnectOptions::from_str(admin_url)?.application_name("rowguard-platform");
        let mut conn = PgConnection::connect_with(&options).await?;
        conn.execute(AssertSqlSafe(format!("SET ROLE {PLATFORM_ROLE}"))).await?;
        Ok(PlatformConn { conn })
    }

    /// Create a tenant, its domains and its owner in one transaction with the tenant set.
    pub async fn create_tenant(&mut self, new: NewTenant) -> Result<CreatedTenant, PlatformError> {
        let tenant = TenantId::new_v7();
        let owner = UserId::new_v7();
        let mut tx = TenantTx::begin_on(&mut self.conn, tenant).await?;
        sqlx::query("INSERT INTO tenants (id, slug, name, status) VALUES ($1, $2, $3, 'active')")
            .bind(tenant)
            .bind(new.slug.as_str())
            .bind(&new.name)
            .execute(tx.conn())
            .await
            .map_err(|e| on_unique(e, || PlatformError::SlugTaken(new.slug.to_string())))?;
        for (i, domain) in new.domains.iter().enumerate() {
            sqlx::query("INSERT INTO tenant_domains (domain, tenant_id, is_primary) VALUES ($1, $2, $3)")
                .bind(domain)
                .bind(tenant)
                .bind(i == 0)
                .execute(tx.conn())
                .await
                .map_err(|e| on_unique(e, || PlatformError::DomainTaken(domain.clone())))?;
        }
        sqlx::query("INSERT INTO users (tenant_id, id, email, password_hash, role) VALUES ($1, $2, $3, $4, $5)")
            .bind(tenant)
            .bind(owner)
            .bind(new.owner_email.as_str())
            .bind(&new.owner_password_hash)
            .bind(Role::Owner.as_str())
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(CreatedTenant { tenant, owner })
    }

    pub async fn list_tenants(&mut self) -> Result<Vec<TenantSummary>, PlatformError> {
        let rows: Vec<(TenantId, String, String, String, String, DateTime<Utc>)> =
            sqlx::query_as("SELECT id, slug, name, status, plan, created_at FROM tenants ORDER BY slug")
                .fetch_all(&mut self.conn)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(id, slug, name, status, plan, created_at)| TenantSummary {
                id,
                slug,
                name,
                status,
                plan,
                created_at,
            })
            .collect())
    }

    /// A tenant transaction on this connection, as the platform role (held to RLS): for
    /// bulk work on one tenant's rows, such as imports and benchmark fixtures.
    pub async fn tenant_tx(&mut self, tenant: TenantId) -> Result<TenantTx<'_>, PlatformError> {
        Ok(TenantTx::begin_on(&mut self.conn, tenant).await?)
    }

    pub async fn tenant_exists(&mut self, slug: &Slug) -> Result<bool, PlatformError> {
        Ok(sqlx::query_scalar("SELECT EXISTS (SELECT FROM tenants WHERE slug = $1)")
            .bind(slug.as_str())
            .fetch_one(&mut self.conn)
            .await?)
    }
}

fn on_unique(e: sqlx::Error, err: impl FnOnce() -> PlatformError) -> PlatformError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => err(),
        _ => PlatformError::Sql(e),
    }
}
