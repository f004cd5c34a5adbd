//! The platform API under `/platform/v1`, for operators: their login, the tenant registry and
//! lifecycle, custom domains and optional self-service signup. No tenant resolution here; all
//! of it goes through the platform role's pool (`PlatformDb`), never the app role's.

pub mod audit_log;
pub mod auth;
pub mod domains;
pub mod signup;
pub mod tenants;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;

use crate::domain::Slug;
use crate::http::ApiContext;
use crate::http::context::RequestContext;
use crate::http::error::ApiError;
use crate::http::error_codes::ErrorCode;
use crate::http::layers::platform_auth::platform_unavailable;
use crate::platform::{PlatformConn, PlatformError};

/// A platform-role connection for this request; 503 `platform_unavailable` when the instance
/// has no platform login configured.
pub struct Platform(pub PlatformConn);

impl FromRequestParts<ApiContext> for Platform {
    type Rejection = ApiError;

    /// On an operator's request, the connection's audit events name the operator (its id as
    /// the actor's) with the request's id, address and agent.
    async fn from_request_parts(parts: &mut Parts, ctx: &ApiContext) -> Result<Self, ApiError> {
        let mut conn = platform_conn(ctx).await?;
        if let Some(operator) = parts.extensions.get::<crate::http::layers::platform_auth::Operator>() {
            let mut actor = RequestContext::of(&parts.extensions).map(|c| c.actor()).unwrap_or_default();
            actor.user = Some(crate::domain::UserId(operator.id.0));
            actor.role = None;
            conn.act_as(actor);
        }
        Ok(Platform(conn))
    }
}

/// A platform-role connection, for handlers that take one only after slow work (an argon2
/// hash), so a burst of such requests does not hold the small platform pool meanwhile.
pub async fn platform_conn(ctx: &ApiContext) -> Result<PlatformConn, ApiError> {
    let db = ctx.platform.as_ref().ok_or_else(platform_unavailable)?;
    Ok(db.acquire().await?)
}

impl From<PlatformError> for ApiError {
    fn from(e: PlatformError) -> ApiError {
        let conflict = |code, e: &PlatformError| ApiError::new(StatusCode::CONFLICT, code, e.to_string());
        match e {
            PlatformError::SlugTaken(_) => conflict(ErrorCode::SlugTaken, &e),
            PlatformError::DomainTaken(_) => conflict(ErrorCode::DomainTaken, &e),
            PlatformError::TenantDeleted(_) => conflict(ErrorCode::TenantDeleted, &e),
            PlatformError::TenantNotDeleted(_) => conflict(ErrorCode::TenantNotDeleted, &e),
            PlatformError::OperatorEmailTaken(_) => conflict(ErrorCode::EmailTaken, &e),
            PlatformError::TenantNotFound(_) => ApiError::not_found("tenant"),
            PlatformError::PrivilegedLogin(_) => ApiError::internal(e),
            PlatformError::Sql(e) => ApiError::from(e),
        }
    }
}

/// A slug from the path. One that cannot exist is simply not found.
fn path_slug(raw: &str) -> Result<Slug, ApiError> {
    Slug::parse(raw).map_err(|_| ApiError::not_found("tenant"))
}
