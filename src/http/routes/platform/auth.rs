//! `POST /platform/v1/auth/login`: an operator's e-mail and password for a platform token. An
//! unknown e-mail, a wrong password and a disabled account get the same 401 after the same
//! argon2 work, as on the tenant login.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Platform;
use crate::http::ApiContext;
use crate::http::context::ClientAddr;
use crate::http::error::{ApiError, Problem};
use crate::http::error_codes::ErrorCode;
use crate::http::extract::Json;
use crate::http::layers::rate_limit::{Account, account_refusal};
use crate::metrics::RateLimited;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OperatorLogin {
    #[schema(pattern = "NUL_FREE_PATTERN")]
    email: String,
    #[schema(pattern = "NUL_FREE_PATTERN")]
    password: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct PlatformToken {
    /// Audience `rowguard:platform`: refused on every tenant route.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
}

/// Longer than any password we accept; longer input is refused without hashing it.
const MAX_PASSWORD_BYTES: usize = 1024;

/// Log in as an operator.
#[utoipa::path(post, path = "/platform/v1/auth/login", tag = "platform", request_body = OperatorLogin,
    responses(
        (status = 200, body = PlatformToken),
        (status = 401, description = "`invalid_credentials`: bad credentials (the same answer whichever part was wrong)", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "`invalid_text`: a NUL byte in the e-mail or password", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "too many attempts from this address, or too many failed ones for this account", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`platform_unavailable`: no platform login configured; `busy`: too many password checks at once", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn operator_login(
    State(ctx): State<ApiContext>,
    Platform(mut platform): Platform,
    client: ClientAddr,
    Json(body): Json<OperatorLogin>,
) -> Result<Response, ApiError> {
    let bad_credentials = || ApiError::unauthorized(ErrorCode::InvalidCredentials, "the e-mail or password is wrong");
    let email = body.email.trim();
    if email.contains('\0') || body.password.contains('\0') {
        tracing::warn!(client = %client.0, email = ?email, "operator login failed: a NUL byte in the e-mail or password");
        return Err(ApiError::bad_request(
            ErrorCode::InvalidText,
            "the e-mail and password must not contain NUL bytes",
        ));
    }
    if body.password.len() > MAX_PASSWORD_BYTES || email.len() > 254 {
        return Err(bad_credentials());
    }
    let (lowered, account) = platform.operator_credentials(email).await?;
    drop(platform); // back to the pool before the slow part
    let limited = match &account {
        Some(a) => Account::Operator(a.id),
        None => Account::UnknownOperator(lowered),
    };
    if let Some(refusal) = ctx.rate_limits.account_refused(&limited) {
        ctx.metrics.rate_limited(RateLimited::OperatorLoginPerAccount);
        tracing::warn!(client = %client.0, email = ?email, "operator login refused: too many failures for this account");
        return Ok(account_refusal(refusal));
    }
    let stored_hash = account.as_ref().map(|a| a.password_hash.clone());
    let password_ok = ctx.platform_hasher.verify(body.password, stored_hash).await?;
    let Some(operator) = account.filter(|a| password_ok && a.active) else {
        ctx.rate_limits.record_account_failure(limited);
        // Operators have no tenant audit log; failures go to the service log, escaped.
        tracing::warn!(client = %client.0, email = ?email, "operator login failed");
        return Err(bad_credentials());
    };
    let access_token = ctx.keys.issue_platform(operator.id).map_err(ApiError::internal)?;
    let token = PlatformToken { access_token, token_type: "Bearer".into(), expires_in: ctx.keys.ttl().as_secs() };
    Ok(Json(token).into_response())
}
