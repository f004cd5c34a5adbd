//! `GET /v1/me`: the authenticated user, read fresh from the tenant's users table, and
//! `POST /v1/me/password`: change one's own password (the current one is required).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use axum::extract::State;
use axum::response::Response;

use super::auth::{TokenResponse, tokens_answer};
use crate::db::TenantScope;
use crate::domain::{NewPassword, Role, UserId};
use crate::http::ApiContext;
use crate::http::context::{Principal, ResolvedTenant};
use crate::http::error::{ApiError, Problem};
use crate::http::error_codes::ErrorCode;
use crate::http::extract::Json;

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
pub async fn me(scope: TenantScope, tenant: ResolvedTenant, principal: Principal) -> Result<Json<Me>, ApiError> {
    let mut tx = scope.begin().await?;
    let row = sqlx::query!(
        "SELECT email, created_at FROM users WHERE tenant_id = $1 AND id = $2",
        scope.tenant_id().0,
        principal.user.0,
    )
    .fetch_optional(tx.conn())
    .await?;
    tx.commit().await?;
    let (email, created_at) = row
        .map(|r| (r.email, r.created_at))
        .ok_or_else(|| ApiError::unauthorized(ErrorCode::InvalidToken, "the token's user no longer exists"))?;
    Ok(Json(Me { id: principal.user, email, role: principal.role, tenant: tenant.slug.to_string(), created_at }))
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
    let outcome =
        ctx.sessions.change_password(&scope, principal.user, principal.role, body.current_password, new_password).await;
    tokens_answer(&ctx, &scope, "/v1/me/password", outcome).await
}
