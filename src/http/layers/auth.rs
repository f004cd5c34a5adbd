//! Authentication: a Bearer access token, verified (EdDSA pinned, exp/iss/aud, key id) and
//! bound to the resolved tenant — a token issued for tenant A is refused on tenant B with 403
//! `tenant_mismatch`. Runs after tenant resolution, before the handler.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::rate_limit::too_many_requests;
use crate::auth::user_state::UserStateCache;
use crate::auth::{AccessClaims, TokenError};
use crate::db::user_changes::UserChange;
use crate::domain::{Requirement, TenantId, UserStatus};
use crate::http::ApiContext;
use crate::http::context::{Principal, RequestContext};
use crate::http::error::ApiError;
use crate::http::error_codes::ErrorCode;
use crate::metrics::RateLimited;

/// The per-instance user-state cache as the HTTP side holds it. It answers for any (tenant,
/// user), so reading it is this layer's alone (the field is private to this module); a handler
/// that changed a user only drops that user's entry.
pub struct UserStates(Arc<UserStateCache>);

impl UserStates {
    pub(crate) fn new(cache: Arc<UserStateCache>) -> UserStates {
        UserStates(cache)
    }

    /// Drop what is cached for `change` (the users trigger's NOTIFY does the same on every
    /// instance; this spares the changing one the wait).
    pub fn forget(&self, change: UserChange) {
        self.0.forget(change);
    }

    /// `user` changed: forget it here and tell the other instances (`UserStateCache::changed`).
    pub async fn changed(&self, tenant: crate::domain::TenantId, user: crate::domain::UserId) {
        self.0.changed(tenant, user).await;
    }
}

/// The authentication step (`gate`, after resolution): the principal set in the context, or
/// the answer that refuses the request.
pub(crate) async fn authenticate(ctx: &ApiContext, context: &RequestContext, parts: &Parts) -> Result<(), Response> {
    let tenant = context
        .tenant()
        .map(|t| t.id)
        .ok_or_else(|| ApiError::internal("authentication runs before tenant resolution").into_response())?;
    // An address that keeps failing to authenticate to this tenant is refused before its
    // token is read (one step with authentication: this runs on every bearer request).
    let ip = context.client().0;
    if let Some(refusal) = ctx.rate_limits.unauthenticated_refusal(tenant, ip) {
        ctx.metrics.rate_limited(RateLimited::UnauthenticatedPerAddress);
        let label = "unauthenticated_per_address";
        Box::pin(super::audit::record_throttled(ctx, context, &parts.method, parts.uri.path(), label)).await;
        return Err(too_many_requests(
            refusal,
            "too many requests without valid credentials from this address; retry later",
        ));
    }
    let principal = match principal_of(ctx, parts.headers.get(header::AUTHORIZATION), tenant).await {
        Ok(principal) => principal,
        Err(e) => {
            // No valid credentials for this tenant: charged to the client's address, so a
            // stream of them is refused before it costs a token check (`unauthenticated_refusal`).
            if e.status == StatusCode::UNAUTHORIZED || e.code == ErrorCode::TenantMismatch {
                ctx.rate_limits.record_unauthenticated(tenant, ip);
            }
            return Err(e.into_response());
        }
    };
    context.set_principal(super::LAYERS_ONLY, principal);
    Ok(())
}

async fn principal_of(
    ctx: &ApiContext,
    authorization: Option<&HeaderValue>,
    tenant: TenantId,
) -> Result<Principal, ApiError> {
    let token = bearer_of(authorization)?;
    let claims = ctx.keys.verify(token).map_err(|e| match e {
        TokenError::Expired => ApiError::unauthorized(ErrorCode::TokenExpired, "the access token has expired"),
        other => ApiError::unauthorized(ErrorCode::InvalidToken, other.to_string()),
    })?;
    if claims.tid != tenant {
        return Err(ApiError::forbidden(ErrorCode::TenantMismatch, "the token was issued for another tenant"));
    }
    // Authorization changes count on the next request (ASVS 8.3.2): the user's current state,
    // from the per-instance cache, decides — not what the token said when it was issued.
    let state = ctx.users.0.get(tenant, claims.sub).await?;
    let revoked = || ApiError::unauthorized(ErrorCode::SessionRevoked, "this session has ended; log in again");
    let state = state.filter(|s| s.status == UserStatus::Active).ok_or_else(revoked)?;
    if issued_at_ms(&claims) < state.sessions_valid_after_ms {
        return Err(revoked());
    }
    // The current role, never the token's: a demotion must not wait for the token to expire.
    Ok(Principal { user: claims.sub, tenant, role: state.role })
}

impl Principal {
    /// The permission check (`Role::require`: the matrix in `domain::permissions`, or an
    /// adopted table's role sets) for the principal's current role: 403 `forbidden` when it
    /// does not meet `need`.
    pub fn require(&self, need: impl Requirement) -> Result<(), ApiError> {
        Ok(self.role.require(need)?)
    }
}

/// When the token was issued, to the millisecond: `iat` is whole seconds, too coarse to order
/// a token against a logout-all in the same second, but the `jti` is a uuid v7 minted at the
/// same moment and carries a millisecond timestamp. Without one, the start of `iat`'s second
/// (the earliest it can have been issued) — which fails closed.
fn issued_at_ms(claims: &AccessClaims) -> i64 {
    let from_jti = claims.jti.get_timestamp().map(|t| {
        let (secs, nanos) = t.to_unix();
        i64::try_from(secs).unwrap_or(i64::MAX).saturating_mul(1000) + i64::from(nanos / 1_000_000)
    });
    from_jti.unwrap_or_else(|| i64::try_from(claims.iat).unwrap_or(i64::MAX).saturating_mul(1000))
}

pub(crate) fn bearer_token(request: &Request) -> Result<&str, ApiError> {
    bearer_of(request.headers().get(header::AUTHORIZATION))
}

fn bearer_of(authorization: Option<&HeaderValue>) -> Result<&str, ApiError> {
    let value = authorization
        .ok_or_else(|| ApiError::unauthorized(ErrorCode::MissingToken, "send Authorization: Bearer <access token>"))?;
    let text = value.to_str().map_err(|_| {
        ApiError::unauthorized(ErrorCode::InvalidAuthorization, "the Authorization header is not ASCII")
    })?;
    let (scheme, token) = text.split_once(' ').ok_or_else(|| {
        ApiError::unauthorized(ErrorCode::InvalidAuthorization, "expected Authorization: Bearer <token>")
    })?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::unauthorized(ErrorCode::InvalidAuthorization, "expected Authorization: Bearer <token>"));
    }
    Ok(token.trim())
}
