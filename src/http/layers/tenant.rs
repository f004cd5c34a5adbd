//! Tenant resolution: which tenant a request is for, from its Host (`{slug}.{base}` or a
//! registered custom domain) or its `X-Tenant` header. Lookups are cached per instance and
//! dropped whenever the registry changes (LISTEN/NOTIFY), with a short TTL as a backstop.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

use crate::db::Database;
use crate::db::registry::{Plan, RateLimitOverride, TenantRecord, TenantStatus};
use crate::domain::{Slug, TenantId};
use crate::http::ApiContext;
use crate::http::error::ApiError;

/// The tenant a request was resolved to; handlers get it through `TenantScope`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedTenant {
    pub id: TenantId,
    pub slug: Arc<str>,
    /// Read by the rate-limit layer: the plan's quota unless the tenant has an override.
    pub plan: Plan,
    pub rate_limit: Option<RateLimitOverride>,
    pub cors_allowed_origins: Arc<[String]>,
}

/// What the Host header says about the tenant.
#[derive(Debug, PartialEq, Eq)]
pub enum HostName {
    /// `{label}.{base_domain}`: the label should be a tenant slug.
    Subdomain(String),
    /// Some other name: a tenant's custom domain, if registered.
    Custom(String),
    /// The base domain itself, an IP literal, or no Host: names no tenant.
    NoTenant,
}

/// Classify a Host value: case-insensitive, port and trailing dot ignored.
pub fn classify_host(host: &str, base_domain: &str) -> HostName {
    let host = host.trim();
    if host.starts_with('[') {
        return HostName::NoTenant; // an IPv6 literal, with or without a port
    }
    let without_port = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = without_port.trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() || name == base_domain || name.parse::<IpAddr>().is_ok() {
        return HostName::NoTenant;
    }
    match name.strip_suffix(base_domain).and_then(|p| p.strip_suffix('.')) {
        Some(label) => HostName::Subdomain(label.to_string()),
        None => HostName::Custom(name),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Slug(String),
    Domain(String),
}

/// A small per-instance cache of registry lookups, unknown names included (so a flood of
/// random hosts does not reach the database every time).
pub struct TenantCache {
    entries: Mutex<HashMap<Key, (Option<TenantRecord>, Instant)>>,
    /// Bumped on every invalidation; a lookup that raced one is not cached.
    generation: AtomicU64,
    ttl: Duration,
}

const MAX_ENTRIES: usize = 50_000;

impl TenantCache {
    pub fn new(ttl: Duration) -> TenantCache {
        TenantCache { entries: Mutex::new(HashMap::new()), generation: AtomicU64::new(0), ttl }
    }

    pub fn invalidate_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }

    async fn lookup(&self, db: &Database, key: Key) -> Result<Option<TenantRecord>, ApiError> {
        let cached = self.entries.lock().ok().and_then(|entries| {
            entries.get(&key).filter(|(_, at)| at.elapsed() < self.ttl).map(|(record, _)| record.clone())
        });
        if let Some(record) = cached {
            return Ok(record);
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let record = match &key {
            Key::Slug(slug) => db.tenant_by_slug(slug).await?,
            Key::Domain(domain) => db.tenant_by_domain(domain).await?,
        };
        self.remember(key, &record, generation);
        Ok(record)
    }

    fn remember(&self, key: Key, record: &Option<TenantRecord>, generation: u64) {
        let Ok(mut entries) = self.entries.lock() else { return };
        if self.generation.load(Ordering::SeqCst) != generation {
            return; // invalidated while we were looking it up: do not cache what may be stale
        }
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key, (record.clone(), Instant::now()));
    }

    async fn by_slug(&self, db: &Database, raw: &str) -> Result<Option<TenantRecord>, ApiError> {
        match Slug::parse(raw) {
            Ok(slug) => self.lookup(db, Key::Slug(slug.as_str().to_string())).await,
            Err(_) => Ok(None), // not a possible slug: unknown, like any other
        }
    }
}

fn unknown_tenant() -> ApiError {
    ApiError::new(axum::http::StatusCode::NOT_FOUND, "tenant_not_found", "no such tenant")
}

/// The resolution rules of DESIGN.md: host and header naming different tenants → 400;
/// unknown or deleted → 404 (one answer for both); suspended → 403.
pub async fn resolve(ctx: &ApiContext, host: Option<&str>, header: Option<&str>) -> Result<ResolvedTenant, ApiError> {
    let cache = &ctx.tenants;
    let from_host = match host.map(|h| classify_host(h, &ctx.base_domain)) {
        Some(HostName::Subdomain(label)) => Some(cache.by_slug(&ctx.db, &label).await?.ok_or_else(unknown_tenant)?),
        Some(HostName::Custom(domain)) => cache.lookup(&ctx.db, Key::Domain(domain)).await?,
        Some(HostName::NoTenant) | None => None,
    };
    let from_header = match header {
        Some(raw) => Some(cache.by_slug(&ctx.db, raw).await?),
        None => None,
    };
    let record = match (from_host, from_header) {
        (Some(h), None) => h,
        (Some(h), Some(Some(x))) if h.id == x.id => h,
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "tenant_ambiguous",
                "the Host and the X-Tenant header name different tenants",
            ));
        }
        (None, Some(found)) => found.ok_or_else(unknown_tenant)?,
        (None, None) => {
            return Err(ApiError::bad_request(
                "tenant_required",
                "name the tenant with the host ({slug}.{base domain} or a custom domain) or an X-Tenant header",
            ));
        }
    };
    match record.status {
        TenantStatus::Deleted => Err(unknown_tenant()),
        TenantStatus::Suspended => Err(ApiError::forbidden("tenant_suspended", "this tenant is suspended")),
        TenantStatus::Trial | TenantStatus::Active => Ok(ResolvedTenant {
            id: record.id,
            slug: record.slug,
            plan: record.plan,
            rate_limit: record.rate_limit,
            cors_allowed_origins: record.cors_allowed_origins,
        }),
    }
}

/// The layer: resolve, record the tenant on the request's span, hand it to what follows.
pub async fn resolve_tenant(
    State(ctx): State<ApiContext>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (host, tenant_header) = naming_headers(&request)?;
    let tenant = resolve(&ctx, host.as_deref(), tenant_header.as_deref()).await?;
    tracing::Span::current().record("tenant", &*tenant.slug);
    let served = super::observe::ServedTenant(Arc::clone(&tenant.slug));
    request.extensions_mut().insert(tenant);
    let mut response = next.run(request).await;
    response.extensions_mut().insert(served);
    Ok(response)
}

/// The Host (or the URI's authority) and X-Tenant values, which must be ASCII if present.
fn naming_headers(request: &Request) -> Result<(Option<String>, Option<String>), ApiError> {
    let text = |name| -> Result<Option<String>, ApiError> {
        request
            .headers()
            .get(name)
            .map(|v| {
                v.to_str()
                    .map(str::to_string)
                    .map_err(|_| ApiError::bad_request("invalid_header", "Host and X-Tenant must be ASCII"))
            })
            .transpose()
    };
    let host = text(header::HOST)?.or_else(|| request.uri().host().map(str::to_string));
    Ok((host, text(header::HeaderName::from_static("x-tenant"))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_matching_ignores_case_port_and_trailing_dot() {
        let table = [
            ("acme.localhost", HostName::Subdomain("acme".into())),
            ("ACME.LocalHost:8080", HostName::Subdomain("acme".into())),
            ("acme.localhost.", HostName::Subdomain("acme".into())),
            ("acme.localhost.:443", HostName::Subdomain("acme".into())),
            ("localhost", HostName::NoTenant),
            ("localhost:8080", HostName::NoTenant),
            ("127.0.0.1:8080", HostName::NoTenant),
            ("[::1]:8080", HostName::NoTenant),
            ("", HostName::NoTenant),
            ("crm.acme-corp.com", HostName::Custom("crm.acme-corp.com".into())),
            ("CRM.Acme-Corp.com.", HostName::Custom("crm.acme-corp.com".into())),
            ("a.b.localhost", HostName::Subdomain("a.b".into())),
            ("evillocalhost", HostName::Custom("evillocalhost".into())),
        ];
        for (host, expected) in table {
            assert_eq!(classify_host(host, "localhost"), expected, "{host:?}");
        }
    }
}
