//! A tenant's domains: the custom hostnames resolution maps to it (`tenant_domains`, a
//! platform table without RLS). Each change runs in the tenant's own transaction only for its
//! audit event (`tenant.domain_add`, `tenant.domain_remove`, `tenant.domain_primary`); every
//! instance's resolution cache hears of it through the registry's NOTIFY.

use super::{PlatformConn, PlatformError, TenantDomain, on_unique};
use crate::db::TenantTx;
use crate::domain::{DomainName, Slug, TenantId};

impl PlatformConn {
    pub async fn domains(&mut self, tenant: TenantId) -> Result<Vec<TenantDomain>, PlatformError> {
        Ok(sqlx::query_as!(
            TenantDomain,
            "SELECT domain, is_primary, created_at FROM tenant_domains WHERE tenant_id = $1 ORDER BY domain",
            tenant.0
        )
        .fetch_all(self.conn())
        .await?)
    }

    /// Add a custom domain; it becomes the primary one if asked or if it is the first.
    pub async fn add_domain(
        &mut self,
        slug: &Slug,
        domain: &DomainName,
        primary: bool,
    ) -> Result<TenantDomain, PlatformError> {
        let tenant = self.live(slug).await?;
        // In the tenant's transaction (the registry has no RLS; this is for the audit event).
        let mut tx = self.audited_tx(tenant).await?;
        let has_primary: bool = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT FROM tenant_domains WHERE tenant_id = $1 AND is_primary) AS "exists!""#,
            tenant.0
        )
        .fetch_one(tx.conn())
        .await?;
        let primary = primary || !has_primary;
        if primary {
            sqlx::query!("UPDATE tenant_domains SET is_primary = false WHERE tenant_id = $1 AND is_primary", tenant.0)
                .execute(tx.conn())
                .await?;
        }
        let added: TenantDomain = sqlx::query_as!(
            TenantDomain,
            "INSERT INTO tenant_domains (domain, tenant_id, is_primary) VALUES ($1, $2, $3)
             RETURNING domain, is_primary, created_at",
            domain.as_str(),
            tenant.0,
            primary
        )
        .fetch_one(tx.conn())
        .await
        .map_err(|e| on_unique(e, || PlatformError::DomainTaken(domain.to_string())))?;
        domain_event(&mut tx, tenant, "tenant.domain_add", domain, primary).await?;
        tx.commit().await?;
        Ok(added)
    }

    /// Remove one of the tenant's domains. False when the tenant has no such domain.
    pub async fn remove_domain(&mut self, slug: &Slug, domain: &DomainName) -> Result<bool, PlatformError> {
        let tenant = self.live(slug).await?;
        let mut tx = self.audited_tx(tenant).await?;
        let removed =
            sqlx::query!("DELETE FROM tenant_domains WHERE tenant_id = $1 AND domain = $2", tenant.0, domain.as_str())
                .execute(tx.conn())
                .await?
                .rows_affected();
        if removed == 0 {
            return Ok(false);
        }
        domain_event(&mut tx, tenant, "tenant.domain_remove", domain, false).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Make one of the tenant's domains its primary one. False when it has no such domain.
    pub async fn set_primary_domain(&mut self, slug: &Slug, domain: &DomainName) -> Result<bool, PlatformError> {
        let tenant = self.live(slug).await?;
        // In the tenant's transaction (the registry has no RLS; this is for the audit event).
        let mut tx = self.audited_tx(tenant).await?;
        // Clear first: the partial unique index allows one primary per tenant at any moment.
        sqlx::query!(
            "UPDATE tenant_domains SET is_primary = false WHERE tenant_id = $1 AND is_primary AND domain <> $2",
            tenant.0,
            domain.as_str()
        )
        .execute(tx.conn())
        .await?;
        let set = sqlx::query!(
            "UPDATE tenant_domains SET is_primary = true WHERE tenant_id = $1 AND domain = $2",
            tenant.0,
            domain.as_str()
        )
        .execute(tx.conn())
        .await?
        .rows_affected();
        if set == 0 {
            return Ok(false); // dropping `tx` rolls the clearing back
        }
        domain_event(&mut tx, tenant, "tenant.domain_primary", domain, true).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Which of `domains` already belong to a tenant (other than `except`, one being replaced).
    pub async fn domains_taken(
        &mut self,
        domains: &[String],
        except: Option<TenantId>,
    ) -> Result<Vec<String>, PlatformError> {
        Ok(sqlx::query_scalar!(
            "SELECT domain FROM tenant_domains
              WHERE domain = ANY($1) AND tenant_id IS DISTINCT FROM $2 ORDER BY domain",
            domains,
            except.map(|t| t.0)
        )
        .fetch_all(self.conn())
        .await?)
    }
}

/// The audit event of a domain change, in the tenant's log.
async fn domain_event(
    tx: &mut TenantTx<'_>,
    tenant: TenantId,
    action: &'static str,
    domain: &DomainName,
    primary: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "SELECT audit_append_for($1, $2, 'tenant', $3, 'success', $4, 'operator')",
        tx.tenant().0,
        action,
        tenant.0.to_string(),
        serde_json::json!({"domain": domain.as_str(), "primary": primary})
    )
    .execute(tx.conn())
    .await
    .map(|_| ())
}
