//! `POST /v1/auth/login`: e-mail and password for an access token. An unknown e-mail, a wrong
//! password and a deactivated account get the same 401 body after the same argon2 work.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::audit::{self, AccessEvent};
use crate::domain::{Role, UserId};
use crate::http::ApiContext;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{Json, TenantScope};
use axum::extract::State;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    email: String,
    password: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

/// Longer than any password we accept; longer input is refused without hashing it.
const MAX_PASSWORD_BYTES: usize = 1024;

/// Log in to the tenant named by the host or X-Tenant header.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    params(("X-Tenant" = Option<String>, Header, description = "tenant slug, when the host names none")),
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, description = "bad credentials (the same answer whichever part was wrong)", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn login(
    State(ctx): State<ApiContext>,
    scope: TenantScope,
    Json(body): Json<LoginRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let bad_credentials = || ApiError::unauthorized("invalid_credentials", "the e-mail or password is wrong");
    if body.password.len() > MAX_PASSWORD_BYTES || body.email.len() > 254 {
        return Err(bad_credentials());
    }
    let mut tx = scope.begin().await?;
    let account: Option<(UserId, String, String, String)> = sqlx::query_as(
        "SELECT id, password_hash, role, status FROM users
          WHERE tenant_id = $1 AND lower(email) = lower($2)",
    )
    .bind(scope.tenant_id())
    .bind(body.email.trim())
    .fetch_optional(tx.conn())
    .await?;
    tx.commit().await?;

    let stored_hash = account.as_ref().map(|(_, hash, _, _)| hash.clone());
    let password_ok = ctx.hasher.verify(body.password, stored_hash).await;
    let accepted = account.filter(|(_, _, _, status)| password_ok && status == "active");
    let mut actor = scope.actor.clone();
    actor.user = accepted.as_ref().map(|(user, _, _, _)| *user);
    let event = AccessEvent {
        action: if accepted.is_some() { "auth.login" } else { "auth.login_failed" },
        resource_type: Some("user"),
        resource_id: accepted.as_ref().map(|(user, _, _, _)| user.to_string()),
        outcome: if accepted.is_some() { "success" } else { "failure" },
        details: serde_json::json!({ "email": body.email.trim() }),
    };
    audit::record(&ctx.db, scope.tenant_id(), &actor, event).await?;
    let Some((user, _, role, _)) = accepted else {
        return Err(bad_credentials());
    };
    let role = Role::parse(&role).map_err(ApiError::internal)?;
    let access_token = ctx.keys.issue(user, scope.tenant_id(), role).map_err(ApiError::internal)?;
    Ok(Json(TokenResponse { access_token, token_type: "Bearer".into(), expires_in: ctx.keys.ttl().as_secs() }))
}
