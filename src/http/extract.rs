//! Extractors handlers use: JSON, path and query that reject with problem documents, the
//! request's tenant scope (the way to a tenant transaction), and the authenticated principal.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use super::ApiContext;
use super::context::{ClientAddr, Principal, RequestContext, ResolvedTenant};
use super::error::ApiError;
use crate::db::{Actor, Database, TenantScope};
use crate::http::error_codes::ErrorCode;

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
                ErrorCode::InvalidBody,
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

/// The service's database as the HTTP side holds it: out of handlers' reach (the field is
/// private to this module), so the service's pool reaches tenant data only through a
/// `TenantScope` the extractor below makes for the request's own tenant. What else the door
/// opens needs no tenant: the health and metrics figures, and the refusals the layers record.
pub struct Door {
    db: Database,
}

impl Door {
    pub(crate) fn new(db: Database) -> Door {
        Door { db }
    }

    /// Reachable, and every embedded migration applied (`/readyz`).
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        self.db.ping().await
    }

    pub async fn migrations_current(&self) -> Result<bool, sqlx::Error> {
        self.db.migrations_current().await
    }

    /// `/metrics`: the pool's figures and the audit inserts the database counted.
    pub fn pool_figures(&self) -> crate::metrics::PoolFigures {
        self.db.pool_figures()
    }

    pub async fn audit_events_inserted(&self) -> Result<i64, sqlx::Error> {
        self.db.audit_events_inserted().await
    }

    /// Close the pool (shutdown, after the last request drained).
    pub(crate) async fn close(&self) {
        self.db.close().await;
    }

    /// Record `event` in the log of the tenant this request was resolved to, in a transaction
    /// of its own (a refusal commits nothing else). Nothing if no tenant was resolved. The
    /// layers' alone (`LayersOnly`): they record the refusals; a handler's writes are recorded
    /// by the audit triggers in its own tenant transaction.
    pub async fn record(
        &self,
        _: super::layers::LayersOnly,
        context: &RequestContext,
        actor: &Actor,
        event: crate::audit::AccessEvent<'_>,
    ) -> Result<(), sqlx::Error> {
        match context.tenant() {
            Some(tenant) => crate::audit::record(&self.db, tenant.id, actor, event).await,
            None => Ok(()),
        }
    }
}

impl FromRequestParts<ApiContext> for TenantScope {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &ApiContext) -> Result<Self, ApiError> {
        let (context, tenant) = RequestContext::of(&parts.extensions)
            .and_then(|context| context.tenant().map(|t| (Arc::clone(context), t.id)))
            .ok_or_else(|| ApiError::internal("tenant scope requested on a route without tenant resolution"))?;
        let user = context.principal().map(|p| p.user);
        Ok(TenantScope::new(&ctx.door.db, tenant, user, context))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ResolvedTenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        RequestContext::of(&parts.extensions)
            .and_then(|c| c.tenant())
            .cloned()
            .ok_or_else(|| ApiError::internal("tenant requested on a route without tenant resolution"))
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
