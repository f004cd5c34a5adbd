//! Users of one tenant: `GET|POST /v1/users`, `GET|PATCH|DELETE /v1/users/{id}`. Who may do
//! what is the permission matrix's call; the last active owner can be neither demoted,
//! deactivated nor removed (409 `last_owner`). A change counts on the user's next request.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::end_all_sessions;
use crate::db::TenantTx;
use crate::db::user_changes::UserChange;
use crate::domain::{Email, NewPassword, Permission, Role, TenantId, UserId, UserStatus};
use crate::http::ApiContext;
use crate::http::context::Principal;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{Json, Path, Query, TenantScope};
use crate::http::pagination::Keyset;

#[derive(Debug, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub role: Role,
    pub status: UserStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserPage {
    pub items: Vec<User>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    #[schema(
        pattern = r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$",
        max_length = 254
    )]
    email: String,
    /// 8 to 256 characters.
    #[schema(min_length = 8, max_length = 256)]
    password: String,
    role: Role,
}

/// Fields to change; absent fields stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    role: Option<Role>,
    status: Option<UserStatus>,
}

fn email_taken(index: &str) -> Option<ApiError> {
    (index == "users_email_unique")
        .then(|| ApiError::new(StatusCode::CONFLICT, "email_taken", "a user of this tenant already has this e-mail"))
}

fn last_owner() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "last_owner",
        "the tenant's last active owner cannot be demoted, deactivated or removed",
    )
}

/// List the tenant's users in creation order.
#[utoipa::path(get, path = "/v1/users", tag = "users", params(ListParams), security(("bearer" = [])),
    responses((status = 200, body = UserPage), (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn list_users(
    scope: TenantScope,
    principal: Principal,
    Query(params): Query<ListParams>,
) -> Result<Json<UserPage>, ApiError> {
    principal.require(Permission::ReadUsers)?;
    let page = Keyset::parse(params.limit, params.cursor.as_deref())?;
    let mut tx = scope.begin().await?;
    let mut items: Vec<User> = sqlx::query_as(
        "SELECT id, email, role, status, created_at, updated_at FROM users
          WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3",
    )
    .bind(scope.tenant_id())
    .bind(page.after)
    .bind(page.fetch_limit())
    .fetch_all(tx.conn())
    .await?;
    tx.commit().await?;
    let next_cursor = page.finish(&mut items, |u| u.id.0);
    Ok(Json(UserPage { items, next_cursor }))
}

/// Create a user with a role and an initial password. Only owners may create owners.
#[utoipa::path(post, path = "/v1/users", tag = "users", request_body = NewUser, security(("bearer" = [])),
    responses((status = 201, body = User), (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "`email_taken`", body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn create_user(
    State(ctx): State<ApiContext>,
    scope: TenantScope,
    principal: Principal,
    Json(body): Json<NewUser>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    principal.require(Permission::ManageUsers)?;
    if body.role == Role::Owner {
        principal.require(Permission::ManageOwners)?;
    }
    let email = Email::parse(&body.email).map_err(ApiError::validation)?;
    let password = NewPassword::parse(&body.password).map_err(ApiError::validation)?;
    let hash = ctx.hasher.hash(password.expose().to_string()).await?;
    let mut tx = scope.begin().await?;
    let user: User = sqlx::query_as(
        "INSERT INTO users (tenant_id, id, email, password_hash, role) VALUES ($1, $2, $3, $4, $5)
         RETURNING id, email, role, status, created_at, updated_at",
    )
    .bind(scope.tenant_id())
    .bind(UserId::new_v7())
    .bind(email.as_str())
    .bind(&hash)
    .bind(body.role.as_str())
    .fetch_one(tx.conn())
    .await
    .map_err(|e| ApiError::from_write(e, email_taken))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// One user.
#[utoipa::path(get, path = "/v1/users/{id}", tag = "users", params(("id" = UserId, Path)), security(("bearer" = [])),
    responses((status = 200, body = User), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_user(
    scope: TenantScope,
    principal: Principal,
    Path(id): Path<UserId>,
) -> Result<Json<User>, ApiError> {
    principal.require(Permission::ReadUsers)?;
    let mut tx = scope.begin().await?;
    let user: Option<User> = sqlx::query_as(
        "SELECT id, email, role, status, created_at, updated_at FROM users WHERE tenant_id = $1 AND id = $2",
    )
    .bind(scope.tenant_id())
    .bind(id)
    .fetch_optional(tx.conn())
    .await?;
    tx.commit().await?;
    user.map(Json).ok_or_else(|| ApiError::not_found("user"))
}

/// Change a user's role or status. Deactivating ends every session of the user at once.
#[utoipa::path(patch, path = "/v1/users/{id}", tag = "users", params(("id" = UserId, Path)), request_body = UserPatch,
    security(("bearer" = [])),
    responses((status = 200, body = User), (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "`last_owner`", body = Problem, content_type = "application/problem+json")))]
pub async fn update_user(
    State(ctx): State<ApiContext>,
    scope: TenantScope,
    principal: Principal,
    Path(id): Path<UserId>,
    Json(patch): Json<UserPatch>,
) -> Result<Json<User>, ApiError> {
    principal.require(Permission::ManageUsers)?;
    let tenant = scope.tenant_id();
    let mut tx = scope.begin().await?;
    let target = lock_for_change(&mut tx, tenant, id).await?.ok_or_else(|| ApiError::not_found("user"))?;
    if target.role == Role::Owner || patch.role == Some(Role::Owner) {
        principal.require(Permission::ManageOwners)?;
    }
    let stays_active_owner =
        patch.role.unwrap_or(target.role) == Role::Owner && patch.status.unwrap_or(target.status) == UserStatus::Active;
    if target.is_active_owner() && !stays_active_owner && target.other_active_owners == 0 {
        return Err(last_owner());
    }
    let user: User = sqlx::query_as(
        "UPDATE users SET role = COALESCE($3, role), status = COALESCE($4, status), updated_at = now()
          WHERE tenant_id = $1 AND id = $2
         RETURNING id, email, role, status, created_at, updated_at",
    )
    .bind(tenant)
    .bind(id)
    .bind(patch.role.map(Role::as_str))
    .bind(patch.status.map(UserStatus::as_str))
    .fetch_one(tx.conn())
    .await?;
    if patch.status == Some(UserStatus::Deactivated) {
        // Also cut off the access tokens issued so far, so that reactivating the account
        // later does not bring them back to life.
        end_all_sessions(&mut tx, tenant, id, "user_deactivated").await?;
    }
    tx.commit().await?;
    ctx.users.forget(UserChange::One(tenant, id));
    Ok(Json(user))
}

/// Remove a user and its sessions.
#[utoipa::path(delete, path = "/v1/users/{id}", tag = "users", params(("id" = UserId, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "`last_owner`", body = Problem, content_type = "application/problem+json")))]
pub async fn delete_user(
    State(ctx): State<ApiContext>,
    scope: TenantScope,
    principal: Principal,
    Path(id): Path<UserId>,
) -> Result<StatusCode, ApiError> {
    principal.require(Permission::ManageUsers)?;
    let tenant = scope.tenant_id();
    let mut tx = scope.begin().await?;
    let target = lock_for_change(&mut tx, tenant, id).await?.ok_or_else(|| ApiError::not_found("user"))?;
    if target.role == Role::Owner {
        principal.require(Permission::ManageOwners)?;
    }
    if target.is_active_owner() && target.other_active_owners == 0 {
        return Err(last_owner());
    }
    // Its refresh tokens go with it (ON DELETE CASCADE).
    sqlx::query("DELETE FROM users WHERE tenant_id = $1 AND id = $2").bind(tenant).bind(id).execute(tx.conn()).await?;
    tx.commit().await?;
    ctx.users.forget(UserChange::One(tenant, id));
    Ok(StatusCode::NO_CONTENT)
}

/// The user about to change, and how many other active owners the tenant has.
struct Target {
    role: Role,
    status: UserStatus,
    other_active_owners: usize,
}

impl Target {
    fn is_active_owner(&self) -> bool {
        self.role == Role::Owner && self.status == UserStatus::Active
    }
}

/// Lock the tenant's active owners, then the target, always in that order and by id: two
/// owners demoting each other at once are serialised (the second sees the first's change)
/// and cannot deadlock.
async fn lock_for_change(tx: &mut TenantTx<'_>, tenant: TenantId, id: UserId) -> Result<Option<Target>, ApiError> {
    let owners: Vec<UserId> = sqlx::query_scalar(
        "SELECT id FROM users WHERE tenant_id = $1 AND role = 'owner' AND status = 'active' ORDER BY id FOR UPDATE",
    )
    .bind(tenant)
    .fetch_all(tx.conn())
    .await?;
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT role, status FROM users WHERE tenant_id = $1 AND id = $2 FOR UPDATE")
            .bind(tenant)
            .bind(id)
            .fetch_optional(tx.conn())
            .await?;
    let Some((role, status)) = row else { return Ok(None) };
    Ok(Some(Target {
        role: Role::parse(&role).map_err(ApiError::internal)?,
        status: UserStatus::parse(&status).map_err(ApiError::internal)?,
        other_active_owners: owners.iter().filter(|o| **o != id).count(),
    }))
}
