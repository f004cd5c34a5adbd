//! Sessions over HTTP: `POST /v1/auth/login` (e-mail and password for an access token and a
//! refresh token), `refresh` (rotate), `logout` (end this login's token family), `logout-all`.
//! The rules live in `auth::sessions`; these handlers parse, call it and map its outcome.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::sessions::{SessionError, Tokens};
use crate::db::TenantScope;
use crate::http::ApiContext;
use crate::http::context::Principal;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::Json;
use crate::http::layers::audit::record_throttled_in;
use crate::http::layers::rate_limit::account_refusal;
use crate::metrics::RateLimited;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(pattern = "NUL_FREE_PATTERN")]
    email: String,
    #[schema(pattern = "NUL_FREE_PATTERN")]
    password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token from login or the last refresh.
    refresh_token: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Opaque; exchange it at `POST /v1/auth/refresh` for a new pair. Single use: each
    /// refresh returns its successor, and presenting a used one ends the whole login.
    pub refresh_token: String,
}

impl From<Tokens> for TokenResponse {
    fn from(t: Tokens) -> TokenResponse {
        TokenResponse {
            access_token: t.access_token,
            token_type: "Bearer".into(),
            expires_in: t.expires_in,
            refresh_token: t.refresh_token,
        }
    }
}

/// A session outcome as an answer: a new pair; or, for an account over its failure budget,
/// the refusal counted, recorded (as `path`'s) and answered with its wait; or the problem the
/// error names.
pub(crate) async fn tokens_answer(
    ctx: &ApiContext,
    scope: &TenantScope,
    path: &str,
    outcome: Result<Tokens, SessionError>,
) -> Result<Response, ApiError> {
    match outcome {
        Ok(tokens) => Ok(Json(TokenResponse::from(tokens)).into_response()),
        Err(SessionError::Throttled(refusal)) => {
            ctx.metrics.rate_limited(RateLimited::LoginPerAccount);
            record_throttled_in(ctx, scope, "POST", path, "login_per_account").await;
            Ok(account_refusal(refusal))
        }
        Err(other) => Err(other.into()),
    }
}

/// Log in to the tenant named by the host or X-Tenant header.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    params(("X-Tenant" = Option<String>, Header, description = "tenant slug, when the host names none")),
    responses(
        (status = 200, body = TokenResponse),
        (status = 400, description = "`invalid_text`: a NUL byte in the e-mail or password", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_credentials`: bad credentials (the same answer whichever part was wrong)", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "too many attempts from this address, or too many failed ones for this account", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn login(
    State(ctx): State<ApiContext>,
    scope: TenantScope,
    Json(body): Json<LoginRequest>,
) -> Result<Response, ApiError> {
    let outcome = ctx.sessions.login(&scope, &body.email, body.password).await;
    tokens_answer(&ctx, &scope, "/v1/auth/login", outcome).await
}

/// Exchange a refresh token for a new access token and its successor refresh token.
///
/// Takes the refresh token in the body, not a bearer token: the access token has usually
/// expired by now. The tenant still comes from the host or X-Tenant header.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    params(("X-Tenant" = Option<String>, Header, description = "tenant slug, when the host names none")),
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, description = "`invalid_refresh_token`, or `refresh_token_reused` (the token was already rotated: its whole family is now revoked)",
            body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn refresh(
    State(ctx): State<ApiContext>,
    scope: TenantScope,
    Json(body): Json<RefreshRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    Ok(Json(ctx.sessions.refresh(&scope, &body.refresh_token).await?.into()))
}

/// End this login: revoke every refresh token of the presented token's family. Answers 204
/// whether or not the token was still live, so it tells a caller nothing; only text that
/// cannot be a refresh token at all is refused (401 `invalid_refresh_token`).
///
/// Takes the refresh token in the body, not a bearer token: holding a family's token is
/// what entitles ending it. Access tokens already issued stay valid until they expire
/// (15 minutes at most by default); use logout-all to cut those off too.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", request_body = RefreshRequest,
    params(("X-Tenant" = Option<String>, Header, description = "tenant slug, when the host names none")),
    responses((status = 204),
        (status = 401, description = "`invalid_refresh_token`: the text is not in the form of a refresh token (one in the form answers 204, live or not)",
            body = Problem, content_type = "application/problem+json")))]
pub async fn logout(
    State(ctx): State<ApiContext>,
    scope: TenantScope,
    Json(body): Json<RefreshRequest>,
) -> Result<StatusCode, ApiError> {
    ctx.sessions.logout(&scope, &body.refresh_token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// End every session of the authenticated user, on every instance, from the next request
/// on: all refresh tokens are revoked and access tokens issued until now are refused.
#[utoipa::path(post, path = "/v1/auth/logout-all", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem, content_type = "application/problem+json")))]
pub async fn logout_all(
    State(ctx): State<ApiContext>,
    scope: TenantScope,
    principal: Principal,
) -> Result<StatusCode, ApiError> {
    ctx.sessions.logout_all(&scope, principal.user).await?;
    Ok(StatusCode::NO_CONTENT)
}
