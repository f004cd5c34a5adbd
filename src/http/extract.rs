//! Extractors handlers use: JSON, path and query that reject with problem documents, the
//! request's tenant scope (the way to a tenant transaction), and the authenticated principal.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use super::ApiContext;
use super::context::{ClientAddr, Principal, RequestContext, ResolvedTenant};
use super::error::ApiError;
use crate::db::{Actor, Database, HotStatement, Literal, TenantTx};
use crate::domain::{TenantId, UserId};

/// `axum::Json`, rejecting with a problem document (400 malformed, 422 wrong types or
/// unknown fields, 413 too large, 415 wrong content type). Every request body of this API is a
/// JSON object: serde would also read a struct from an array (`[null, null]`), which the
/// OpenAPI document does not allow, so anything but an object is 422 `invalid_body`.
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        let bytes = axum::body::Bytes::from_request(axum::extract::Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(|e| ApiError::from(axum::extract::rejection::JsonRejection::from(e)))?;
        let object = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        let request = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
        let axum::Json(value) = axum::Json::<T>::from_request(request, state).await?;
        if !object {
            return Err(ApiError::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                "the body must be a JSON object",
            ));
        }
        Ok(Json(value))
    }
}

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
    context: Arc<RequestContext>,
}

impl TenantScope {
    pub fn tenant(&self) -> &ResolvedTenant {
        // Checked when the scope was extracted; set at most once.
        self.context.tenant().unwrap_or_else(|| unreachable!("a tenant scope exists only once resolved"))
    }

    pub fn tenant_id(&self) -> TenantId {
        self.tenant().id
    }

    pub fn user(&self) -> Option<UserId> {
        self.context.principal().map(|p| p.user)
    }

    /// Who acts, as the audit trail records it (user, role, request id, address, agent); built
    /// when asked for, since reads never need it.
    pub fn actor(&self) -> Actor {
        self.context.actor()
    }

    pub async fn begin(&self) -> Result<TenantTx<'static>, ApiError> {
        Ok(TenantTx::begin(&self.db, self.tenant_id(), &self.actor()).await?)
    }

    /// A read whose parameters are all ids or numbers, in one round trip (`TenantTx::read_once`).
    pub async fn read_once<T>(&self, statement: &HotStatement, args: &[Literal]) -> Result<Vec<T>, ApiError>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
    {
        let rows = TenantTx::read_once(&self.db, self.tenant_id(), self.user(), statement, args).await?;
        rows.iter().map(|r| T::from_row(r).map_err(ApiError::from)).collect()
    }
}

impl FromRequestParts<ApiContext> for TenantScope {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &ApiContext) -> Result<Self, ApiError> {
        let context = RequestContext::of(&parts.extensions)
            .filter(|c| c.tenant().is_some())
            .cloned()
            .ok_or_else(|| ApiError::internal("tenant scope requested on a route without tenant resolution"))?;
        Ok(TenantScope { db: ctx.db.clone(), context })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        RequestContext::of(&parts.extensions)
            .and_then(|c| c.principal())
            .cloned()
            .ok_or_else(|| ApiError::internal("principal requested on a route without authentication"))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(RequestContext::of(&parts.extensions).map_or(ClientAddr::UNKNOWN, |c| c.client()))
    }
}
