//! The development seed: on the first start of an embedded cluster, two demo tenants (acme and
//! globex) with an owner each, made through the same platform path as `tenants create`; and
//! whether they are there, so that `serve` offers the demo login only where it can work.

use crate::auth::password::hash_now;
use crate::domain::{Email, Slug};
use crate::platform::{NewTenant, PlatformConn, PlatformError};

pub const DEMO_TENANTS: [(&str, &str); 2] = [("acme", "Acme Corporation"), ("globex", "Globex Corporation")];
pub const DEMO_PASSWORD: &str = "rowguard-demo";

/// Create whichever demo tenants do not exist yet. Returns the slugs created.
pub async fn seed_demo(admin_url: &str) -> anyhow::Result<Vec<String>> {
    let mut platform = PlatformConn::connect(admin_url).await?;
    let mut created = Vec::new();
    for (slug, name) in DEMO_TENANTS {
        let slug = Slug::parse(slug)?;
        if platform.tenant_exists(&slug).await? {
            continue;
        }
        let owner_email = Email::parse(&format!("owner@{slug}.test"))?;
        let hash = tokio::task::spawn_blocking(|| hash_now(DEMO_PASSWORD)).await??;
        let new = NewTenant {
            slug: slug.clone(),
            name: name.into(),
            owner_email,
            owner_password_hash: hash,
            domains: vec![],
        };
        match platform.create_tenant(new).await {
            Ok(_) | Err(PlatformError::SlugTaken(_)) => created.push(slug.to_string()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(created)
}

/// Whether the first demo tenant (the one `serve`'s welcome logs in to) exists: seeded on this
/// start or an earlier one. The seed is skipped when the database was set up before the first
/// `serve` (an operator created first, say), and a tenant it never made has no demo login.
pub async fn demo_tenant_exists(admin_url: &str) -> anyhow::Result<bool> {
    let slug = Slug::parse(DEMO_TENANTS[0].0)?;
    let mut platform = PlatformConn::connect(admin_url).await?;
    let Some(tenant) = platform.tenant_id_by_slug(&slug).await? else { return Ok(false) };
    // A tenant an operator made with the demo's slug is not the demo: the login is offered
    // only if the demo owner's password is still the demo password.
    let mut tx = platform.tenant_tx(tenant).await?;
    let stored: Option<String> = sqlx::query_scalar!(
        "SELECT password_hash FROM users WHERE lower(email) = $1",
        format!("owner@{}.test", slug.as_str())
    )
    .fetch_optional(tx.conn())
    .await?;
    drop(tx);
    let Some(stored) = stored else { return Ok(false) };
    let verified =
        tokio::task::spawn_blocking(move || crate::auth::password::verify_now(DEMO_PASSWORD, &stored)).await?;
    Ok(!matches!(verified, crate::auth::password::Verified::No))
}
