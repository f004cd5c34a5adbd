//! Tenant resolution: which tenant a request is for, from its Host (`{slug}.{base}` or a
//! registered custom domain) or its `X-Tenant` header. Lookups are cached per instance and
//! dropped whenever the registry changes (LISTEN/NOTIFY), with a short TTL as a backstop.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::header;
use axum::http::request::Parts;

use crate::cache::BoundedCache;
use crate::db::Database;
use crate::db::registry::TenantRecord;
use crate::domain::Slug;
use crate::domain::TenantStatus;
use crate::http::ApiContext;
use crate::http::context::{RequestContext, ResolvedTenant};
use crate::http::error::ApiError;
use crate::http::error_codes::ErrorCode;

/// What the Host header says about the tenant. Borrowed from the header unless it had to be
/// folded to lower case (hosts are usually sent in lower case: no copy then).
#[derive(Debug, PartialEq, Eq)]
pub enum HostName<'a> {
    /// `{label}.{base_domain}`: the label should be a tenant slug.
    Subdomain(Cow<'a, str>),
    /// Some other name: a tenant's custom domain, if registered.
    Custom(Cow<'a, str>),
    /// The base domain itself, an IP literal, or no Host: names no tenant.
    NoTenant,
}

/// Classify a Host value: case-insensitive, port and trailing dot ignored.
pub fn classify_host<'a>(host: &'a str, base_domain: &str) -> HostName<'a> {
    let host = host.trim();
    if host.starts_with('[') {
        return HostName::NoTenant; // an IPv6 literal, with or without a port
    }
    let without_port = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = without_port.trim_end_matches('.');
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return match classify_name(&name.to_ascii_lowercase(), base_domain) {
            HostName::Subdomain(label) => HostName::Subdomain(Cow::Owned(label.into_owned())),
            HostName::Custom(name) => HostName::Custom(Cow::Owned(name.into_owned())),
            HostName::NoTenant => HostName::NoTenant,
        };
    }
    classify_name(name, base_domain)
}

/// As `classify_host`, for a name in lower case without port or trailing dot.
fn classify_name<'a>(name: &'a str, base_domain: &str) -> HostName<'a> {
    if name.is_empty() || name == base_domain || name.parse::<IpAddr>().is_ok() {
        return HostName::NoTenant;
    }
    match name.strip_suffix(base_domain).and_then(|p| p.strip_suffix('.')) {
        Some(label) => HostName::Subdomain(Cow::Borrowed(label)),
        None => HostName::Custom(Cow::Borrowed(name)),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Slug(String),
    Domain(String),
}

/// A small per-instance cache of registry lookups, unknown names included (so a flood of
/// random hosts does not reach the database every time). Bounded by bytes as well as time:
/// only syntactically valid names (at most 253 bytes) ever reach it, and each entry is
/// weighed by its key and record, so a flood of distinct names cannot grow memory.
pub struct TenantCache {
    db: Database,
    entries: BoundedCache<Key, Option<TenantRecord>>,
    /// Bumped on every invalidation; a lookup that raced one is not cached.
    generation: AtomicU64,
}

/// What the cache may hold, in bytes as `weigh` counts them: ~40,000 unknown names of 200
/// bytes, or far more real tenants.
const MAX_CACHE_BYTES: usize = 8 * 1024 * 1024;

fn weigh(key: &Key, record: &Option<TenantRecord>) -> usize {
    let key_bytes = match key {
        Key::Slug(s) | Key::Domain(s) => s.len(),
    };
    let record_bytes = record
        .as_ref()
        .map_or(0, |r| r.slug.len() + r.cors_allowed_origins.iter().map(|o| o.len() + 24).sum::<usize>() + 96);
    key_bytes + record_bytes + 64
}

impl TenantCache {
    pub fn new(db: Database, ttl: Duration) -> TenantCache {
        TenantCache { db, entries: BoundedCache::new(ttl, MAX_CACHE_BYTES, weigh), generation: AtomicU64::new(0) }
    }

    pub fn invalidate_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.entries.clear();
    }

    /// Entries and their weight in bytes (for tests).
    pub fn size(&self) -> (usize, usize) {
        self.entries.size()
    }

    async fn lookup(&self, key: Key) -> Result<Option<TenantRecord>, ApiError> {
        if let Some(record) = self.entries.get(&key) {
            return Ok(record);
        }
        let generation = self.generation.load(Ordering::SeqCst);
        // Boxed: a miss is rare, and its query's future would otherwise be carried, by size, in
        // every request's resolution future.
        let record = match &key {
            Key::Slug(slug) => Box::pin(self.db.tenant_by_slug(slug)).await?,
            Key::Domain(domain) => Box::pin(self.db.tenant_by_domain(domain)).await?,
        };
        if self.generation.load(Ordering::SeqCst) == generation {
            self.entries.insert(key, record.clone());
        } // else invalidated while we were looking it up: do not cache what may be stale
        Ok(record)
    }

    async fn by_slug(&self, raw: &str) -> Result<Option<TenantRecord>, ApiError> {
        match Slug::parse(raw) {
            Ok(slug) => self.lookup(Key::Slug(slug.into())).await,
            Err(_) => Ok(None), // not a possible slug: unknown, like any other
        }
    }
}

/// Host names are at most 253 bytes (RFC 1035), and a port adds at most six.
const MAX_HOST_BYTES: usize = 253;

/// Whether a Host value is a host name, an IPv4 address or a bracketed IPv6 address, with an
/// optional port: labels of 1–63 letters, digits and inner hyphens, at most 253 bytes.
/// Anything else is refused before it is looked up or cached.
pub fn valid_host(host: &str) -> bool {
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((v6, tail)) => {
                v6.parse::<std::net::Ipv6Addr>().is_ok()
                    && (tail.is_empty() || tail.strip_prefix(':').is_some_and(valid_port))
            }
            None => false,
        };
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if valid_port(port) => name,
        Some(_) => return false,
        None => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty() && name.len() <= MAX_HOST_BYTES && name.split('.').all(valid_host_label)
}

/// A label of a host name: as `valid_label`, underscores allowed too — they are not in RFC
/// 1123's host names, but internal DNS names (container and service names) carry them and
/// clients send them, and they cannot smuggle anything.
fn valid_host_label(label: &str) -> bool {
    (1..=63).contains(&label.len())
        && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

fn valid_port(port: &str) -> bool {
    !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok()
}

/// A DNS label (RFC 1123): 1–63 letters, digits and hyphens, not starting or ending with one.
pub fn valid_label(label: &str) -> bool {
    (1..=63).contains(&label.len())
        && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

fn unknown_tenant() -> ApiError {
    ApiError::new(axum::http::StatusCode::NOT_FOUND, ErrorCode::TenantNotFound, "no such tenant")
}

/// The resolution rules of DESIGN.md: host and header naming different tenants → 400;
/// unknown or deleted → 404 (one answer for both); suspended → 403.
pub async fn resolve(ctx: &ApiContext, host: Option<&str>, header: Option<&str>) -> Result<ResolvedTenant, ApiError> {
    resolve_noting_unknown_host(ctx, host, header).await.map(|(tenant, _)| tenant)
}

/// As `resolve`, also saying whether the host was a name looked up in vain (a custom domain
/// nobody registered) even though the X-Tenant header then named a tenant: such a lookup
/// cost a database round trip and is charged to the client's address like a failure.
async fn resolve_noting_unknown_host(
    ctx: &ApiContext,
    host: Option<&str>,
    header: Option<&str>,
) -> Result<(ResolvedTenant, bool), ApiError> {
    // Refused before any lookup or cache insert: a name that cannot be a host or a slug
    // cannot name a tenant, and must not cost a query or a cache entry. A Host that is not a
    // host name is a malformed request (RFC 9112 §3.2: 400).
    let host = host.map(str::trim).filter(|h| !h.is_empty());
    if host.is_some_and(|h| !valid_host(h)) {
        return Err(ApiError::bad_request(ErrorCode::InvalidHost, "the Host header is not a valid host name"));
    }
    // An X-Tenant that is not a DNS label cannot be a slug: unknown, like any other name no
    // tenant has (`by_slug` never looks it up), however long it is.
    if header.is_some_and(|h| !valid_label(h)) {
        return Err(unknown_tenant());
    }
    let cache = &ctx.tenants;
    let mut unknown_host = false;
    let from_host = match host.map(|h| classify_host(h, &ctx.base_domain)) {
        Some(HostName::Subdomain(label)) => Some(cache.by_slug(&label).await?.ok_or_else(unknown_tenant)?),
        Some(HostName::Custom(domain)) => {
            let found = cache.lookup(Key::Domain(domain.into_owned())).await?;
            unknown_host = found.is_none();
            found
        }
        Some(HostName::NoTenant) | None => None,
    };
    let from_header = match header {
        Some(raw) => Some(cache.by_slug(raw).await?),
        None => None,
    };
    let record = match (from_host, from_header) {
        (Some(h), None) => h,
        (Some(h), Some(Some(x))) if h.id == x.id => h,
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                ErrorCode::TenantAmbiguous,
                "the Host and the X-Tenant header name different tenants",
            ));
        }
        (None, Some(found)) => found.ok_or_else(unknown_tenant)?,
        (None, None) => {
            return Err(ApiError::bad_request(
                ErrorCode::TenantRequired,
                "name the tenant with the host ({slug}.{base domain} or a custom domain) or an X-Tenant header",
            ));
        }
    };
    match record.status {
        TenantStatus::Deleted => Err(unknown_tenant()),
        TenantStatus::Suspended => Err(ApiError::forbidden(ErrorCode::TenantSuspended, "this tenant is suspended")),
        TenantStatus::Trial | TenantStatus::Active => Ok((
            ResolvedTenant {
                id: record.id,
                slug: record.slug,
                plan: record.plan,
                rate_limit: record.rate_limit,
                cors_allowed_origins: record.cors_allowed_origins,
            },
            unknown_host,
        )),
    }
}

/// The resolution step (`gate`): resolve, and set the tenant in the request's context (which
/// records it on the request's span) for what follows.
pub(crate) async fn resolve_into(ctx: &ApiContext, context: &RequestContext, parts: &Parts) -> Result<(), ApiError> {
    let resolved = match naming_headers(parts) {
        Ok((host, tenant_header)) => resolve_noting_unknown_host(ctx, host, tenant_header).await,
        Err(e) => Err(e),
    };
    // What names no tenant is charged to the client's address (`rate_limit::refuse_unresolved`
    // refuses an address that keeps doing it), and so is a custom host looked up in vain.
    let tenant = match resolved {
        Ok((tenant, unknown_host)) => {
            if unknown_host {
                ctx.rate_limits.record_unresolved(context.client().0);
            }
            tenant
        }
        Err(e) => {
            if e.status.is_client_error() {
                ctx.rate_limits.record_unresolved(context.client().0);
            }
            return Err(e);
        }
    };
    context.set_tenant(super::LAYERS_ONLY, tenant);
    Ok(())
}

/// The Host (or the URI's authority) and X-Tenant values, which must be ASCII if present.
fn naming_headers(parts: &Parts) -> Result<(Option<&str>, Option<&str>), ApiError> {
    let text = |name| -> Result<Option<&str>, ApiError> {
        parts
            .headers
            .get(name)
            .map(|v| {
                v.to_str()
                    .map_err(|_| ApiError::bad_request(ErrorCode::InvalidHeader, "Host and X-Tenant must be ASCII"))
            })
            .transpose()
    };
    let host = text(header::HOST)?.or_else(|| parts.uri.host());
    Ok((host, text(header::HeaderName::from_static("x-tenant"))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_host_names_and_addresses_are_valid_hosts() {
        let long_label = "a".repeat(63);
        let too_long_label = "a".repeat(64);
        let long_name = [long_label.as_str(); 4].join("."); // 255 bytes
        let table = [
            ("acme.localhost", true),
            ("acme.localhost:8080", true),
            ("acme.localhost.", true),
            ("ACME.LocalHost.:443", true),
            ("127.0.0.1:8080", true),
            ("[::1]:8080", true),
            ("[::1]", true),
            ("localhost", true),
            ("crm.acme-corp.com", true),
            (long_label.as_str(), true),
            (too_long_label.as_str(), false),
            (long_name.as_str(), false),
            ("acme.localhost:99999", false),
            ("acme.localhost:", false),
            ("acme..localhost", false),
            ("-acme.localhost", false),
            ("acme-.localhost", false),
            ("acme_corp.localhost", true),
            ("my_app:8080", true),
            ("acme.localhost/evil", false),
            ("user@acme.localhost", false),
            ("[::1", false),
            ("[nonsense]:80", false),
            ("ac me.localhost", false),
            ("ä.localhost", false),
            (":8080", false),
        ];
        for (host, valid) in table {
            assert_eq!(valid_host(host), valid, "{host:?}");
        }
    }

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
