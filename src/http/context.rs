//! The request context: what the layers learn about a request, each fact computed once and
//! handed on as a typed value. The observing layer (outermost but request-id assignment)
//! creates it with the client's address; tenant resolution sets the tenant; authentication
//! sets the principal. Layers and extractors read it from there — nothing resolves, parses or
//! derives the same thing twice — and the request line is written from it when the answer is
//! out. The tenant and the user are also recorded on the request's tracing span.
//!
//! Both slots are set at most once (`OnceLock`): a later layer cannot swap the tenant a
//! request was resolved to. Making a context and setting its slots take a `LayersOnly`,
//! which only the layers can make: a handler reads the context, it cannot make one that names
//! another tenant.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use axum::http::header::USER_AGENT;
use axum::http::{Extensions, HeaderMap, HeaderValue};

use crate::db::registry::RateLimitOverride;
use crate::db::{Acting, Actor};
use crate::domain::{Plan, Role, TenantId, UserId};
use crate::http::layers::LayersOnly;

/// The client's address: the socket peer, or what a trusted proxy says (`client_ip`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    /// Stand-in for requests that reached us without a socket (tests, in-process callers).
    pub const UNKNOWN: ClientAddr = ClientAddr(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));

    /// The address a per-address limit keys on: IPv6 clients get a /64 each (one subscriber's
    /// usual allocation), so walking through addresses of one network does not mint fresh quotas.
    pub fn limit_key(self) -> IpAddr {
        match self.0 {
            IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & (u128::MAX << 64)).into()),
            v4 => v4,
        }
    }
}

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

/// Who is acting: established by authentication, read by handlers as an extractor.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: UserId,
    pub tenant: TenantId,
    pub role: Role,
}

/// One request's context (see the module comment). Shared: the observing layer keeps a
/// handle to write the request line from it.
#[derive(Debug)]
pub struct RequestContext {
    client: ClientAddr,
    /// Kept as the header values (shared bytes, no copies) for the audit actor, which only a
    /// write or a recorded refusal needs.
    request_id: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
    tenant: OnceLock<ResolvedTenant>,
    principal: OnceLock<Principal>,
}

impl RequestContext {
    pub fn new(_: LayersOnly, client: ClientAddr, headers: &HeaderMap) -> Arc<RequestContext> {
        Arc::new(RequestContext {
            client,
            request_id: headers.get("x-request-id").cloned(),
            user_agent: headers.get(USER_AGENT).cloned(),
            tenant: OnceLock::new(),
            principal: OnceLock::new(),
        })
    }

    /// The context of the request these extensions belong to, if the observing layer ran.
    pub fn of(extensions: &Extensions) -> Option<&Arc<RequestContext>> {
        extensions.get::<Arc<RequestContext>>()
    }

    pub fn client(&self) -> ClientAddr {
        self.client
    }

    pub fn tenant(&self) -> Option<&ResolvedTenant> {
        self.tenant.get()
    }

    /// Set by tenant resolution, once; the span records the slug.
    pub fn set_tenant(&self, _: LayersOnly, tenant: ResolvedTenant) {
        tracing::Span::current().record("tenant", &*tenant.slug);
        let _ = self.tenant.set(tenant);
    }

    pub fn principal(&self) -> Option<&Principal> {
        self.principal.get()
    }

    /// Set by authentication, once; the span records the user.
    pub fn set_principal(&self, _: LayersOnly, principal: Principal) {
        tracing::Span::current().record("user", tracing::field::display(principal.user));
        let _ = self.principal.set(principal);
    }

    /// Who acts, as the audit trail records it: the principal (if any), the request id (ours
    /// are uuids; any other is not recorded), the address and a printable, bounded user agent.
    pub fn actor(&self) -> Actor {
        let mut actor = self.anonymous_actor();
        if let Some(p) = self.principal() {
            actor.user = Some(p.user);
            actor.role = Some(p.role);
        }
        actor
    }

    /// As `actor`, without the principal: the request's address, id and user agent.
    fn anonymous_actor(&self) -> Actor {
        fn text(v: &Option<HeaderValue>) -> Option<&str> {
            v.as_ref().and_then(|v| v.to_str().ok())
        }
        let request_id = text(&self.request_id).and_then(|v| uuid::Uuid::parse_str(v).ok());
        let client_ip = Some(self.client.0).filter(|ip| *ip != ClientAddr::UNKNOWN.0);
        let user_agent = text(&self.user_agent).map(|ua| ua.chars().filter(|c| !c.is_control()).take(256).collect());
        Actor { user: None, role: None, request_id, client_ip, user_agent }
    }
}

impl Acting for RequestContext {
    fn actor(&self) -> Actor {
        RequestContext::actor(self)
    }
}
