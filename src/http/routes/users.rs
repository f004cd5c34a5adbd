//! Users of one tenant: `GET|POST /v1/users`, `GET|PATCH|DELETE /v1/users/{id}`. Who may do
//! what is the permission matrix's call; the last active owner can be neither demoted,
//! deactivated nor removed (409 `last_owner`). A change counts on the user's next request.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::TenantScope;
use crate::db::users;
use crate::domain::{Email, NewPassword, Permission, Role, UserId, UserStatus};
use crate::http::ApiContext;
use crate::http::context::Principal;
use crate::http::error::{ApiError, Problem};
use crate::http::error_codes::ErrorCode;
use crate::http::extract::{Json, Path, Query};
use crate::http::pagination::{Keyset, PageParams};

pub use crate::db::users::User;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserPage {
    pub items: Vec<User>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    #[schema(pattern = "EMAIL_PATTERN", max_length = 254)]
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
    (index == "users_email_unique").then(|| {
        ApiError::new(StatusCode::CONFLICT, ErrorCode::EmailTaken, "a user of this tenant already has this e-mail")
    })
}

/// List the tenant's users in creation order.
#[utoipa::path(get, path = "/v1/users", tag = "users", params(PageParams), security(("bearer" = [])),
    responses((status = 200, body = UserPage), (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn list_users(
    scope: TenantScope,
    principal: Principal,
    Query(params): Query<PageParams>,
) -> Result<Json<UserPage>, ApiError> {
    principal.require(Permission::ReadUsers)?;
    let page = Keyset::parse(params.limit, params.cursor.as_deref())?;
    let mut tx = scope.begin().await?;
    let mut items = sqlx::query_as!(
        User,
        r#"SELECT id AS "id: UserId", email, role AS "role: Role", status AS "status: UserStatus", created_at, updated_at FROM users
            WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"#,
        scope.tenant_id().0,
        page.after,
        page.fetch_limit(),
    )
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
    let user = sqlx::query_as!(
        User,
        r#"INSERT INTO users (tenant_id, id, email, password_hash, role) VALUES ($1, $2, $3, $4, $5)
           RETURNING id AS "id: UserId", email, role AS "role: Role", status AS "status: UserStatus", created_at, updated_at"#,
        scope.tenant_id().0,
        UserId::new_v7().0,
        email.as_str(),
        hash,
        body.role.as_str(),
    )
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
    let user = sqlx::query_as!(
        User,
        r#"SELECT id AS "id: UserId", email, role AS "role: Role", status AS "status: UserStatus", created_at, updated_at FROM users WHERE tenant_id = $1 AND id = $2"#,
        scope.tenant_id().0,
        id.0,
    )
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
    let user = users::update(&scope, principal.role, id, patch.role, patch.status).await?;
    ctx.users.changed(scope.tenant_id(), id).await;
    Ok(Json(user))
}

/// Remove a user and its sessions.
#[utoipa::path(delete, path = "/v1/users/{id}", tag = "users", params(("id" = UserId, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "`last_owner`, or `row_in_use`: a row of an adopted table still references the user", body = Problem, content_type = "application/problem+json")))]
pub async fn delete_user(
    State(ctx): State<ApiContext>,
    scope: TenantScope,
    principal: Principal,
    Path(id): Path<UserId>,
) -> Result<StatusCode, ApiError> {
    principal.require(Permission::ManageUsers)?;
    users::delete(&scope, principal.role, id).await?;
    ctx.users.changed(scope.tenant_id(), id).await;
    Ok(StatusCode::NO_CONTENT)
}
