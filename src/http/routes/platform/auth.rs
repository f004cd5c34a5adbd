//! `POST /platform/v1/auth/login`: an operator's e-mail and password for a platform token. An
//! unknown e-mail, a wrong password and a disabled account get the same 401 after the same
//! argon2 work, as on the tenant login.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Platform;
use crate::http::ApiContext;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::Json;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OperatorLogin {
    email: String,
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
        (status = 401, description = "bad credentials (the same answer whichever part was wrong)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "no platform login configured", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn operator_login(
    State(ctx): State<ApiContext>,
    Platform(mut platform): Platform,
    Json(body): Json<OperatorLogin>,
) -> Result<Json<PlatformToken>, ApiError> {
    let bad_credentials = || ApiError::unauthorized("invalid_credentials", "the e-mail or password is wrong");
    if body.password.len() > MAX_PASSWORD_BYTES || body.email.len() > 254 {
        return Err(bad_credentials());
    }
    let account = platform.operator_credentials(body.email.trim()).await?;
    drop(platform); // back to the pool before the slow part
    let stored_hash = account.as_ref().map(|a| a.password_hash.clone());
    let password_ok = ctx.hasher.verify(body.password, stored_hash).await;
    let Some(operator) = account.filter(|a| password_ok && a.active) else {
        return Err(bad_credentials());
    };
    let access_token = ctx.keys.issue_platform(operator.id).map_err(ApiError::internal)?;
    Ok(Json(PlatformToken { access_token, token_type: "Bearer".into(), expires_in: ctx.keys.ttl().as_secs() }))
}
