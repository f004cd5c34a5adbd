//! Organizations: `GET|POST /v1/organizations`, `GET|PATCH|DELETE /v1/organizations/{id}`, with
//! the conventions of contacts: keyset pages, problem documents, another tenant's id is 404.

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::db::TenantScope;
use crate::domain::{OrganizationId, OrganizationName, Permission, WebDomain};
use crate::http::context::Principal;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{Json, Path, Query};
use crate::http::pagination::{Keyset, PageParams};

#[derive(Debug, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct Organization {
    pub id: OrganizationId,
    pub name: String,
    /// Its web domain, such as `example.com`.
    pub domain: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OrganizationPage {
    pub items: Vec<Organization>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrganization {
    #[schema(pattern = "TEXT_PATTERN", max_length = 200)]
    name: String,
    #[schema(pattern = "WEB_DOMAIN_PATTERN", max_length = 253)]
    domain: Option<String>,
}

/// Fields to change; absent fields stay as they are, `"domain": null` clears the domain.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrganizationPatch {
    #[schema(pattern = "TEXT_PATTERN", max_length = 200)]
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, pattern = "WEB_DOMAIN_PATTERN", max_length = 253)]
    domain: Option<Option<String>>,
}

/// Distinguishes `"domain": null` (Some(None)) from an absent field (None, via `default`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// List organizations in creation order.
#[utoipa::path(get, path = "/v1/organizations", tag = "organizations", params(PageParams), security(("bearer" = [])),
    responses((status = 200, body = OrganizationPage), (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn list_organizations(
    scope: TenantScope,
    principal: Principal,
    Query(params): Query<PageParams>,
) -> Result<Json<OrganizationPage>, ApiError> {
    principal.require(Permission::ReadOrganizations)?;
    let page = Keyset::parse(params.limit, params.cursor.as_deref())?;
    let mut tx = scope.begin().await?;
    let mut items = sqlx::query_as!(
        Organization,
        r#"SELECT id AS "id: OrganizationId", name, domain, created_at, updated_at FROM organizations
            WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"#,
        scope.tenant_id().0,
        page.after,
        page.fetch_limit(),
    )
    .fetch_all(tx.conn())
    .await?;
    tx.commit().await?;
    let next_cursor = page.finish(&mut items, |o| o.id.0);
    Ok(Json(OrganizationPage { items, next_cursor }))
}

/// Create an organization.
#[utoipa::path(post, path = "/v1/organizations", tag = "organizations", request_body = NewOrganization, security(("bearer" = [])),
    responses((status = 201, body = Organization), (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn create_organization(
    scope: TenantScope,
    principal: Principal,
    Json(body): Json<NewOrganization>,
) -> Result<(StatusCode, Json<Organization>), ApiError> {
    principal.require(Permission::WriteOrganizations)?;
    let name = OrganizationName::parse(&body.name).map_err(ApiError::validation)?;
    let domain = body.domain.as_deref().map(WebDomain::parse).transpose().map_err(ApiError::validation)?;
    let mut tx = scope.begin().await?;
    let organization = sqlx::query_as!(
        Organization,
        r#"INSERT INTO organizations (tenant_id, id, name, domain) VALUES ($1, $2, $3, $4)
           RETURNING id AS "id: OrganizationId", name, domain, created_at, updated_at"#,
        scope.tenant_id().0,
        OrganizationId::new_v7().0,
        name.as_str(),
        domain.as_ref().map(WebDomain::as_str),
    )
    .fetch_one(tx.conn())
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(organization)))
}

/// One organization.
#[utoipa::path(get, path = "/v1/organizations/{id}", tag = "organizations", params(("id" = OrganizationId, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = Organization), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_organization(
    scope: TenantScope,
    principal: Principal,
    Path(id): Path<OrganizationId>,
) -> Result<Json<Organization>, ApiError> {
    principal.require(Permission::ReadOrganizations)?;
    let mut tx = scope.begin().await?;
    let organization = sqlx::query_as!(
        Organization,
        r#"SELECT id AS "id: OrganizationId", name, domain, created_at, updated_at FROM organizations WHERE tenant_id = $1 AND id = $2"#,
        scope.tenant_id().0,
        id.0,
    )
    .fetch_optional(tx.conn())
    .await?;
    tx.commit().await?;
    organization.map(Json).ok_or_else(|| ApiError::not_found("organization"))
}

/// Change some fields of an organization.
#[utoipa::path(patch, path = "/v1/organizations/{id}", tag = "organizations", params(("id" = OrganizationId, Path)),
    request_body = OrganizationPatch, security(("bearer" = [])),
    responses((status = 200, body = Organization), (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn update_organization(
    scope: TenantScope,
    principal: Principal,
    Path(id): Path<OrganizationId>,
    Json(patch): Json<OrganizationPatch>,
) -> Result<Json<Organization>, ApiError> {
    principal.require(Permission::WriteOrganizations)?;
    let name = patch.name.as_deref().map(OrganizationName::parse).transpose().map_err(ApiError::validation)?;
    let domain = match patch.domain {
        Some(Some(raw)) => Some(Some(WebDomain::parse(&raw).map_err(ApiError::validation)?)),
        Some(None) => Some(None),
        None => None,
    };
    let (set_domain, new_domain) = (domain.is_some(), domain.flatten());
    let mut tx = scope.begin().await?;
    let organization = sqlx::query_as!(
        Organization,
        r#"UPDATE organizations
              SET name = COALESCE($3, name),
                  domain = CASE WHEN $4 THEN $5 ELSE domain END,
                  updated_at = now()
            WHERE tenant_id = $1 AND id = $2
           RETURNING id AS "id: OrganizationId", name, domain, created_at, updated_at"#,
        scope.tenant_id().0,
        id.0,
        name.as_ref().map(OrganizationName::as_str),
        set_domain,
        new_domain.as_ref().map(WebDomain::as_str),
    )
    .fetch_optional(tx.conn())
    .await?;
    tx.commit().await?;
    organization.map(Json).ok_or_else(|| ApiError::not_found("organization"))
}

/// Delete an organization; its contacts and deals stay, detached from it.
#[utoipa::path(delete, path = "/v1/organizations/{id}", tag = "organizations", params(("id" = OrganizationId, Path)),
    security(("bearer" = [])),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn delete_organization(
    scope: TenantScope,
    principal: Principal,
    Path(id): Path<OrganizationId>,
) -> Result<StatusCode, ApiError> {
    principal.require(Permission::WriteOrganizations)?;
    let mut tx = scope.begin().await?;
    // Detach first, rather than leave it to the foreign keys' ON DELETE SET NULL: on Citus
    // those keys are added back without the action (it refuses SET NULL on a key that
    // includes the distribution column; see migrate::citus). The same audit events either way.
    let (tenant, id) = (scope.tenant_id().0, id.0);
    sqlx::query!(
        "UPDATE contacts SET organization_id = NULL WHERE tenant_id = $1 AND organization_id = $2",
        tenant,
        id
    )
    .execute(tx.conn())
    .await?;
    sqlx::query!("UPDATE deals SET organization_id = NULL WHERE tenant_id = $1 AND organization_id = $2", tenant, id)
        .execute(tx.conn())
        .await?;
    let deleted = sqlx::query!("DELETE FROM organizations WHERE tenant_id = $1 AND id = $2", tenant, id)
        .execute(tx.conn())
        .await?
        .rows_affected();
    tx.commit().await?;
    if deleted == 0 {
        return Err(ApiError::not_found("organization"));
    }
    Ok(StatusCode::NO_CONTENT)
}
