//! `GET /v1/me`: the authenticated user, read fresh from the tenant's users table, and
//! `POST /v1/me/password`: change one's own password (the current one is required).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::auth::{MAX_PASSWORD_BYTES, TokenResponse, end_all_sessions, store_refresh_token, token_pair};
use crate::db::user_changes::UserChange;
use crate::domain::{NewPassword, Role, UserId};
use crate::http::ApiContext;
use crate::http::context::Principal;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{Json, TenantScope};
use crate::http::layers::audit::record_throttled_as;
use crate::http::layers::rate_limit::{Account, account_refusal};
use crate::metrics::RateLimited;

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Me {
    pub id: UserId,
    pub email: String,
    pub role: Role,
    pub tenant: String,
    pub created_at: DateTime<Utc>,
}

/// The user the access token belongs to.
#[utoipa::path(get, path = "/v1/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 401, body = Problem, content_type = "application/problem+json")))]
pub async fn me(scope: TenantScope, principal: Principal) -> Result<Json<Me>, ApiError> {
    let mut tx = scope.begin().await?;
    let row: Option<(String, DateTime<Utc>)> =
        sqlx::query_as("SELECT email, created_at FROM users WHERE tenant_id = $1 AND id = $2")
            .bind(scope.tenant_id())
            .bind(principal.user)
            .fetch_optional(tx.conn())
            .await?;
    tx.commit().await?;
    let (email, created_at) =
        row.ok_or_else(|| ApiError::unauthorized("invalid_token", "the token's user no longer exists"))?;
    Ok(Json(Me {
        id: principal.user,
        email,
        role: principal.role,
        tenant: scope.tenant().slug.to_string(),
        created_at,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    current_password: String,
    /// 8 to 256 characters.
    new_password: String,
}

/// Change one's own password. Every session of the user ends (refresh tokens revoked, access
/// tokens refused); the answer carries a fresh token pair for this client.
#[utoipa::path(post, path = "/v1/me/password", tag = "auth", request_body = PasswordChange, security(("bearer" = [])),
    responses((status = 200, body = TokenResponse),
              (status = 403, description = "`wrong_password`: the current password does not match", body = Problem, content_type = "application/problem+json"),
              (status = 429, description = "too many wrong current passwords for this account (shared with login)", body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn change_password(
    State(ctx): State<ApiContext>,
    scope: TenantScope,
    principal: Principal,
    Json(body): Json<PasswordChange>,
) -> Result<Response, ApiError> {
    let new_password = NewPassword::parse(&body.new_password).map_err(ApiError::validation)?;
    let wrong = || ApiError::forbidden("wrong_password", "the current password is wrong");
    if body.current_password.len() > MAX_PASSWORD_BYTES {
        return Err(wrong());
    }
    let (tenant, user) = (scope.tenant_id(), principal.user);
    let mut tx = scope.begin().await?;
    let stored: Option<String> = sqlx::query_scalar("SELECT password_hash FROM users WHERE tenant_id = $1 AND id = $2")
        .bind(tenant)
        .bind(user)
        .fetch_optional(tx.conn())
        .await?;
    tx.commit().await?;
    // The same failure budget as login, keyed on the same account: a stolen access token
    // must not become a way to guess the password at full speed.
    let account = Account::User(tenant, user);
    if let Some(refusal) = ctx.rate_limits.account_refused(&account) {
        ctx.metrics.rate_limited(RateLimited::LoginPerAccount);
        record_throttled_as(&ctx, tenant, &scope.actor(), "POST", "/v1/me/password", "login_per_account").await;
        return Ok(account_refusal(refusal));
    }
    // Hash and verify outside any transaction: argon2 takes tens of milliseconds.
    if !ctx.hasher.verify(body.current_password, stored).await? {
        ctx.rate_limits.record_account_failure(account);
        return Err(wrong());
    }
    let hash = ctx.hasher.hash(new_password.expose().to_string()).await?;
    let mut tx = scope.begin().await?;
    sqlx::query("UPDATE users SET password_hash = $3, updated_at = now() WHERE tenant_id = $1 AND id = $2")
        .bind(tenant)
        .bind(user)
        .bind(&hash)
        .execute(tx.conn())
        .await?;
    end_all_sessions(&mut tx, tenant, user, "password_changed").await?;
    let refresh_token = store_refresh_token(&mut tx, tenant, user, Uuid::now_v7()).await?;
    tx.commit().await?;
    ctx.users.forget(UserChange::One(tenant, user));
    token_pair(&ctx, tenant, user, principal.role, refresh_token).map(|pair| Json(pair).into_response())
}
