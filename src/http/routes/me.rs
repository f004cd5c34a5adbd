//! `GET /v1/me`: the authenticated user, read fresh from the tenant's users table.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::{Role, UserId};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{Json, TenantScope};
use crate::http::layers::auth::Principal;

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
    Ok(Json(Me { id: principal.user, email, role: principal.role, tenant: scope.tenant.slug.clone(), created_at }))
}
