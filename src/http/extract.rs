//! Extractors handlers use: JSON, path and query that reject with problem documents, the
//! request's tenant scope (the way to a tenant transaction), and the authenticated principal.

use axum::extract::{FromRequest, FromRequestParts};
use std::net::IpAddr;

use axum::http::header::USER_AGENT;
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::ApiContext;
use super::client_ip::{ClientIp, TrustedProxies};
use super::error::ApiError;
use super::layers::auth::Principal;
use super::layers::tenant::ResolvedTenant;
use crate::db::{Actor, Database, HotStatement, Literal, TenantTx};
use crate::domain::{TenantId, UserId};

/// `axum::Json`, rejecting with a problem document (400 malformed, 422 wrong types or
/// unknown fields, 413 too large, 415 wrong content type).
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Path`, rejecting with 400 `invalid_path` (a malformed uuid, say).
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// `axum::extract::Query`, rejecting with 400 `invalid_query`.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// The tenant (and user, once authenticated) this request acts for. Its `begin` is how a
/// handler reaches tenant data: a transaction that has already set the tenant.
pub struct TenantScope {
    db: Database,
    pub tenant: ResolvedTenant,
    pub user: Option<UserId>,
    /// Who acts, as the audit trail records it (user, role, request id, address, agent).
    pub actor: Actor,
}

impl TenantScope {
    pub fn tenant_id(&self) -> TenantId {
        self.tenant.id
    }

    pub async fn begin(&self) -> Result<TenantTx<'static>, ApiError> {
        Ok(TenantTx::begin_as(&self.db, self.tenant.id, &self.actor).await?)
    }

    /// A read whose parameters are all ids or numbers, in one round trip (`TenantTx::read_once`).
    pub async fn read_once<T>(&self, statement: &HotStatement, args: &[Literal]) -> Result<Vec<T>, ApiError>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
    {
        let rows = TenantTx::read_once(&self.db, self.tenant.id, self.user, statement, args).await?;
        rows.iter().map(|r| T::from_row(r).map_err(ApiError::from)).collect()
    }
}

impl FromRequestParts<ApiContext> for TenantScope {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &ApiContext) -> Result<Self, ApiError> {
        let tenant = parts
            .extensions
            .get::<ResolvedTenant>()
            .cloned()
            .ok_or_else(|| ApiError::internal("tenant scope requested on a route without tenant resolution"))?;
        let principal = parts.extensions.get::<Principal>();
        let user = principal.map(|p| p.user);
        let mut actor = request_actor(parts, &ctx.trusted_proxies);
        actor.user = user;
        actor.role = principal.map(|p| p.role);
        Ok(TenantScope { db: ctx.db.clone(), tenant, user, actor })
    }
}

/// What the request says about who sends it: its id (ours are uuids; any other is not
/// recorded), the client address (forwarding headers believed only from trusted proxies), and a printable user agent of bounded length.
pub fn request_actor(parts: &Parts, proxies: &TrustedProxies) -> Actor {
    ActorSource::capture(&parts.extensions, &parts.headers, proxies).actor()
}

/// What `request_actor` reads, kept without copying (header values share the request's
/// bytes), for a layer that needs the actor only if the answer turns out to be a refusal.
pub struct ActorSource {
    request_id: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
    client_ip: IpAddr,
}

impl ActorSource {
    pub fn capture(extensions: &Extensions, headers: &HeaderMap, proxies: &TrustedProxies) -> ActorSource {
        ActorSource {
            request_id: headers.get("x-request-id").cloned(),
            user_agent: headers.get(USER_AGENT).cloned(),
            client_ip: ClientIp::of(extensions, headers, proxies).0,
        }
    }

    pub fn actor(&self) -> Actor {
        let text = |v: &Option<HeaderValue>| v.as_ref().and_then(|v| v.to_str().ok()).map(str::to_owned);
        let request_id = text(&self.request_id).and_then(|v| uuid::Uuid::parse_str(&v).ok());
        let client_ip = Some(self.client_ip).filter(|ip| *ip != ClientIp::UNKNOWN);
        let user_agent = text(&self.user_agent).map(|ua| ua.chars().filter(|c| !c.is_control()).take(256).collect());
        Actor { user: None, role: None, request_id, client_ip, user_agent }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::internal("principal requested on a route without authentication"))
    }
}
