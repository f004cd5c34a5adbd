//! Authentication: a Bearer access token, verified (EdDSA pinned, exp/iss/aud, key id) and
//! bound to the resolved tenant — a token issued for tenant A is refused on tenant B with 403
//! `tenant_mismatch`. Runs after tenant resolution, before the handler.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

use super::tenant::ResolvedTenant;
use crate::auth::TokenError;
use crate::domain::{Role, TenantId, UserId};
use crate::http::ApiContext;
use crate::http::error::ApiError;

/// Who is acting: established by this layer, read by handlers as an extractor.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: UserId,
    pub tenant: TenantId,
    pub role: Role,
}

pub async fn authenticate(
    State(ctx): State<ApiContext>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let tenant = request
        .extensions()
        .get::<ResolvedTenant>()
        .map(|t| t.id)
        .ok_or_else(|| ApiError::internal("authentication layer runs before tenant resolution"))?;
    let token = bearer_token(&request)?;
    let claims = ctx.keys.verify(token).map_err(|e| match e {
        TokenError::Expired => ApiError::unauthorized("token_expired", "the access token has expired"),
        other => ApiError::unauthorized("invalid_token", other.to_string()),
    })?;
    if claims.tid != tenant {
        return Err(ApiError::forbidden("tenant_mismatch", "the token was issued for another tenant"));
    }
    tracing::Span::current().record("user", tracing::field::display(claims.sub));
    request.extensions_mut().insert(Principal { user: claims.sub, tenant, role: claims.role });
    Ok(next.run(request).await)
}

pub(crate) fn bearer_token(request: &Request) -> Result<&str, ApiError> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing_token", "send Authorization: Bearer <access token>"))?;
    let text = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("invalid_authorization", "the Authorization header is not ASCII"))?;
    let (scheme, token) = text
        .split_once(' ')
        .ok_or_else(|| ApiError::unauthorized("invalid_authorization", "expected Authorization: Bearer <token>"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::unauthorized("invalid_authorization", "expected Authorization: Bearer <token>"));
    }
    Ok(token.trim())
}
