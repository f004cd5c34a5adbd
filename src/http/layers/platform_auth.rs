//! The platform API's own front door: it answers only on the bare host (a tenant's host has
//! no platform API), and authenticates operators with platform-audience tokens.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;

use super::auth::bearer_token;
use super::tenant::{HostName, classify_host};
use crate::auth::TokenError;
use crate::domain::OperatorId;
use crate::http::ApiContext;
use crate::http::error::ApiError;
use crate::http::error_codes::ErrorCode;

/// The operator acting on a platform route: established here, read by handlers.
#[derive(Debug, Clone, Copy)]
pub struct Operator {
    pub id: OperatorId,
}

/// `{slug}.{base}` belongs to tenant `slug`; the platform API is not served there, so a
/// tenant's users never see it under their own name.
pub async fn bare_host_only(State(ctx): State<ApiContext>, request: Request, next: Next) -> Result<Response, ApiError> {
    let host = request.headers().get(header::HOST).and_then(|v| v.to_str().ok());
    if let Some(HostName::Subdomain(_)) = host.map(|h| classify_host(h, &ctx.base_domain)) {
        return Err(ApiError::new(axum::http::StatusCode::NOT_FOUND, ErrorCode::RouteNotFound, "no such route"));
    }
    Ok(next.run(request).await)
}

/// A valid platform token of an operator who is still active. The account is looked up on
/// every request: disabling an operator takes effect at once (ASVS 8.3.2). A tenant token
/// fails here (wrong audience, no operator), and a platform token fails on tenant routes.
pub async fn authenticate_operator(
    State(ctx): State<ApiContext>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let platform = ctx.platform.as_ref().ok_or_else(platform_unavailable)?;
    let token = bearer_token(&request)?;
    let claims = ctx.keys.verify_platform(token).map_err(|e| match e {
        TokenError::Expired => ApiError::unauthorized(ErrorCode::TokenExpired, "the access token has expired"),
        other => ApiError::unauthorized(ErrorCode::InvalidToken, other.to_string()),
    })?;
    if !platform.acquire().await?.operator_is_active(claims.sub).await? {
        return Err(ApiError::unauthorized(ErrorCode::InvalidToken, "the operator account is disabled or gone"));
    }
    tracing::Span::current().record("user", tracing::field::display(claims.sub));
    request.extensions_mut().insert(Operator { id: claims.sub });
    Ok(next.run(request).await)
}

pub fn platform_unavailable() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::PlatformUnavailable,
        "the platform API is not configured on this instance (ROWGUARD_PLATFORM_DATABASE_URL)",
    )
}

impl<S: Send + Sync> FromRequestParts<S> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Operator>()
            .copied()
            .ok_or_else(|| ApiError::internal("operator requested on a route without operator authentication"))
    }
}
