//! Deals: `GET|POST /v1/deals`, `GET|PATCH|DELETE /v1/deals/{id}`. A deal names a contact and
//! optionally an organization; naming one that is not this tenant's — missing, or another
//! tenant's — is the same 422 `invalid_reference`, decided by composite foreign keys.

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::db::TenantScope;
use crate::domain::{Amount, ContactId, Currency, DealId, DealStage, DealTitle, OrganizationId, Permission};
use crate::http::context::Principal;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{Json, Path, Query};
use crate::http::pagination::Keyset;

#[derive(Debug, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct Deal {
    pub id: DealId,
    pub title: String,
    pub contact_id: ContactId,
    pub organization_id: Option<OrganizationId>,
    pub stage: DealStage,
    /// A decimal string, exactly as stored (`"1250.00"`).
    pub amount: String,
    /// ISO 4217 code.
    pub currency: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DealPage {
    pub items: Vec<Deal>,
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
    #[param(pattern = "UUID_CURSOR_PATTERN")]
    cursor: Option<String>,
    /// Only deals at this stage.
    stage: Option<DealStage>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDeal {
    #[schema(pattern = "TEXT_PATTERN", max_length = 200)]
    title: String,
    contact_id: ContactId,
    organization_id: Option<OrganizationId>,
    /// Default `lead`.
    stage: Option<DealStage>,
    /// A decimal string such as `"1250.00"` (at most 4 decimals), never a JSON number.
    #[schema(pattern = "AMOUNT_PATTERN")]
    amount: String,
    /// ISO 4217 code such as `EUR`.
    #[schema(pattern = "CURRENCY_PATTERN")]
    currency: String,
}

/// Fields to change; absent fields stay as they are, `"organization_id": null` detaches it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DealPatch {
    #[schema(pattern = "TEXT_PATTERN", max_length = 200)]
    title: Option<String>,
    contact_id: Option<ContactId>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<OrganizationId>)]
    organization_id: Option<Option<OrganizationId>>,
    stage: Option<DealStage>,
    #[schema(pattern = "AMOUNT_PATTERN")]
    amount: Option<String>,
    #[schema(pattern = "CURRENCY_PATTERN")]
    currency: Option<String>,
}

/// Distinguishes `null` (Some(None)) from an absent field (None, via `default`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// List deals in creation order, optionally only those at one stage.
#[utoipa::path(get, path = "/v1/deals", tag = "deals", params(ListParams), security(("bearer" = [])),
    responses((status = 200, body = DealPage), (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn list_deals(
    scope: TenantScope,
    principal: Principal,
    Query(params): Query<ListParams>,
) -> Result<Json<DealPage>, ApiError> {
    principal.require(Permission::ReadDeals)?;
    let page = Keyset::parse(params.limit, params.cursor.as_deref())?;
    let mut tx = scope.begin().await?;
    let mut items = sqlx::query_as!(
        Deal,
        r#"SELECT id AS "id: DealId", title, contact_id AS "contact_id: ContactId",
                  organization_id AS "organization_id: OrganizationId", stage AS "stage: DealStage",
                  amount::text AS "amount!", currency, created_at, updated_at
             FROM deals
            WHERE tenant_id = $1 AND ($2::text IS NULL OR stage = $2) AND ($3::uuid IS NULL OR id > $3)
            ORDER BY id LIMIT $4"#,
        scope.tenant_id().0,
        params.stage.map(DealStage::as_str),
        page.after,
        page.fetch_limit(),
    )
    .fetch_all(tx.conn())
    .await?;
    tx.commit().await?;
    let next_cursor = page.finish(&mut items, |d| d.id.0);
    Ok(Json(DealPage { items, next_cursor }))
}

/// Create a deal for a contact of this tenant.
#[utoipa::path(post, path = "/v1/deals", tag = "deals", request_body = NewDeal, security(("bearer" = [])),
    responses((status = 201, body = Deal), (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "`validation_failed`, or `invalid_reference`: the contact or organization is not this tenant's (missing and foreign look the same)",
                  body = Problem, content_type = "application/problem+json")))]
pub async fn create_deal(
    scope: TenantScope,
    principal: Principal,
    Json(body): Json<NewDeal>,
) -> Result<(StatusCode, Json<Deal>), ApiError> {
    principal.require(Permission::WriteDeals)?;
    let title = DealTitle::parse(&body.title).map_err(ApiError::validation)?;
    let amount = Amount::parse(&body.amount).map_err(ApiError::validation)?;
    let currency = Currency::parse(&body.currency).map_err(ApiError::validation)?;
    let mut tx = scope.begin().await?;
    let deal = sqlx::query_as!(
        Deal,
        r#"INSERT INTO deals (tenant_id, id, title, contact_id, organization_id, stage, amount, currency)
           VALUES ($1, $2, $3, $4, $5, $6, $7::text::numeric, $8)
           RETURNING id AS "id: DealId", title, contact_id AS "contact_id: ContactId",
                  organization_id AS "organization_id: OrganizationId", stage AS "stage: DealStage",
                  amount::text AS "amount!", currency, created_at, updated_at"#,
        scope.tenant_id().0,
        DealId::new_v7().0,
        title.as_str(),
        body.contact_id.0,
        body.organization_id.map(|o| o.0),
        body.stage.unwrap_or(DealStage::Lead).as_str(),
        amount.as_str(),
        currency.as_str(),
    )
    .fetch_one(tx.conn())
    .await
    .map_err(|e| ApiError::from_write(e, |_| None))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(deal)))
}

/// One deal.
#[utoipa::path(get, path = "/v1/deals/{id}", tag = "deals", params(("id" = DealId, Path)), security(("bearer" = [])),
    responses((status = 200, body = Deal), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_deal(
    scope: TenantScope,
    principal: Principal,
    Path(id): Path<DealId>,
) -> Result<Json<Deal>, ApiError> {
    principal.require(Permission::ReadDeals)?;
    let mut tx = scope.begin().await?;
    let deal = sqlx::query_as!(
        Deal,
        r#"SELECT id AS "id: DealId", title, contact_id AS "contact_id: ContactId",
                  organization_id AS "organization_id: OrganizationId", stage AS "stage: DealStage",
                  amount::text AS "amount!", currency, created_at, updated_at
             FROM deals WHERE tenant_id = $1 AND id = $2"#,
        scope.tenant_id().0,
        id.0,
    )
    .fetch_optional(tx.conn())
    .await?;
    tx.commit().await?;
    deal.map(Json).ok_or_else(|| ApiError::not_found("deal"))
}

/// Change some fields of a deal: move it along the stages, re-price it, re-assign it.
#[utoipa::path(patch, path = "/v1/deals/{id}", tag = "deals", params(("id" = DealId, Path)), request_body = DealPatch,
    security(("bearer" = [])),
    responses((status = 200, body = Deal), (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "`validation_failed`, or `invalid_reference`: the contact or organization is not this tenant's (missing and foreign look the same)",
                  body = Problem, content_type = "application/problem+json")))]
pub async fn update_deal(
    scope: TenantScope,
    principal: Principal,
    Path(id): Path<DealId>,
    Json(patch): Json<DealPatch>,
) -> Result<Json<Deal>, ApiError> {
    principal.require(Permission::WriteDeals)?;
    let title = patch.title.as_deref().map(DealTitle::parse).transpose().map_err(ApiError::validation)?;
    let amount = patch.amount.as_deref().map(Amount::parse).transpose().map_err(ApiError::validation)?;
    let currency = patch.currency.as_deref().map(Currency::parse).transpose().map_err(ApiError::validation)?;
    let mut tx = scope.begin().await?;
    let (set_organization, new_organization) = (patch.organization_id.is_some(), patch.organization_id.flatten());
    let deal = sqlx::query_as!(
        Deal,
        r#"UPDATE deals
              SET title = COALESCE($3, title),
                  contact_id = COALESCE($4, contact_id),
                  organization_id = CASE WHEN $5 THEN $6 ELSE organization_id END,
                  stage = COALESCE($7, stage),
                  amount = COALESCE($8::text::numeric, amount),
                  currency = COALESCE($9, currency),
                  updated_at = now()
            WHERE tenant_id = $1 AND id = $2
           RETURNING id AS "id: DealId", title, contact_id AS "contact_id: ContactId",
                     organization_id AS "organization_id: OrganizationId", stage AS "stage: DealStage",
                     amount::text AS "amount!", currency, created_at, updated_at"#,
        scope.tenant_id().0,
        id.0,
        title.as_ref().map(DealTitle::as_str),
        patch.contact_id.map(|c| c.0),
        set_organization,
        new_organization.map(|o| o.0),
        patch.stage.map(DealStage::as_str),
        amount.as_ref().map(Amount::as_str),
        currency.as_ref().map(Currency::as_str),
    )
    .fetch_optional(tx.conn())
    .await
    .map_err(|e| ApiError::from_write(e, |_| None))?;
    tx.commit().await?;
    deal.map(Json).ok_or_else(|| ApiError::not_found("deal"))
}

/// Delete a deal.
#[utoipa::path(delete, path = "/v1/deals/{id}", tag = "deals", params(("id" = DealId, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn delete_deal(
    scope: TenantScope,
    principal: Principal,
    Path(id): Path<DealId>,
) -> Result<StatusCode, ApiError> {
    principal.require(Permission::WriteDeals)?;
    let mut tx = scope.begin().await?;
    let deleted = sqlx::query!("DELETE FROM deals WHERE tenant_id = $1 AND id = $2", scope.tenant_id().0, id.0)
        .execute(tx.conn())
        .await?
        .rows_affected();
    tx.commit().await?;
    if deleted == 0 {
        return Err(ApiError::not_found("deal"));
    }
    Ok(StatusCode::NO_CONTENT)
}
