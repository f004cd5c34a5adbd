//! Tenants as operators see them: `GET|POST /platform/v1/tenants`,
//! `GET|PATCH|DELETE /platform/v1/tenants/{slug}`. Deleting marks the tenant deleted and
//! purges its rows from every tenant table in one transaction; there is no way back.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{Platform, path_slug, platform_conn};
use crate::db::registry::RateLimitOverride;
use crate::domain::{DomainName, Email, NewPassword, Plan, Slug, TenantName, TenantStatus, parse_unreserved_slug};
use crate::http::ApiContext;
use crate::http::error::{ApiError, Problem};
use crate::http::error_codes::ErrorCode;
use crate::http::extract::{Json, Path, Query};
use crate::http::layers::platform_auth::Operator;
use crate::platform::{NewTenant, PlatformConn, TenantChange, TenantDomain, TenantSummary};

/// A tenant with its custom domains.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TenantView {
    /// The registry entry, its fields at the top level of the answer.
    #[serde(flatten)]
    pub tenant: TenantSummary,
    pub domains: Vec<TenantDomain>,
    /// The tenant's own request quota, when it has one; absent: its plan's.
    pub rate_limit: Option<RateLimit>,
}

/// A per-tenant request quota in place of the plan's (per instance; docs/rate-limits.md).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained requests per second, 1 to 1,000,000.
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub per_second: u32,
    /// Requests allowed at once above the sustained rate, 1 to 1,000,000.
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub burst: u32,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TenantPage {
    pub items: Vec<TenantSummary>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TenantListParams {
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page (tenants are listed in slug order).
    #[param(pattern = "SLUG_PATTERN")]
    cursor: Option<String>,
    /// Only tenants in this status.
    status: Option<TenantStatus>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenantRequest {
    /// The tenant's subdomain: a DNS label that is not reserved (www, api, admin, …).
    #[schema(pattern = "SLUG_PATTERN")]
    slug: String,
    #[schema(pattern = "TEXT_PATTERN", max_length = 200)]
    name: String,
    #[schema(pattern = "EMAIL_PATTERN", max_length = 254)]
    owner_email: String,
    /// 8 to 256 characters.
    #[schema(min_length = 8, max_length = 256)]
    owner_password: String,
    /// `active` (default) or `trial`; any other status is 422 `validation_failed`.
    #[schema(value_type = Option<InitialStatus>)]
    status: Option<TenantStatus>,
    /// Default `free`.
    plan: Option<Plan>,
    /// Custom domains; the first is primary.
    #[serde(default)]
    domains: Vec<super::domains::DomainText>,
}

/// The statuses a tenant can start in, as the document shows them (the request reads any
/// status, so that another one gets a 422 naming the rule).
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum InitialStatus {
    Active,
    Trial,
}

/// Fields to change; absent fields stay as they are. `"status": "deleted"` deletes and purges,
/// exactly like DELETE.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantPatch {
    status: Option<TenantStatus>,
    plan: Option<Plan>,
    #[schema(pattern = "TEXT_PATTERN", max_length = 200)]
    name: Option<String>,
    /// The tenant's own quota; `null` goes back to the plan's.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<RateLimit>)]
    rate_limit: Option<Option<RateLimit>>,
}

/// Distinguishes `"rate_limit": null` (Some(None)) from an absent field (None, via `default`).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// List tenants in slug order (keyset pagination on the slug).
#[utoipa::path(get, path = "/platform/v1/tenants", tag = "platform", params(TenantListParams), security(("bearer" = [])),
    responses((status = 200, body = TenantPage), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn list_tenants(
    _: Operator,
    Platform(mut platform): Platform,
    Query(params): Query<TenantListParams>,
) -> Result<Json<TenantPage>, ApiError> {
    let limit = params.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request(ErrorCode::InvalidQuery, "limit must be between 1 and 100"));
    }
    let after = match params.cursor.as_deref() {
        Some(c) => Some(
            Slug::parse(c)
                .map_err(|_| ApiError::bad_request(ErrorCode::InvalidCursor, "cursor is not one this API gave out"))?,
        ),
        None => None,
    };
    let mut items = platform.list_tenants_page(after.as_ref(), i64::from(limit) + 1, params.status).await?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|t| t.slug.clone())
    } else {
        None
    };
    Ok(Json(TenantPage { items, next_cursor }))
}

/// Create a tenant, its custom domains and its owner, in one transaction.
#[utoipa::path(post, path = "/platform/v1/tenants", tag = "platform", request_body = NewTenantRequest, security(("bearer" = [])),
    responses((status = 201, body = TenantView),
              (status = 409, description = "`slug_taken` or `domain_taken`", body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn create_tenant(
    State(ctx): State<ApiContext>,
    _: Operator,
    Json(body): Json<NewTenantRequest>,
) -> Result<(StatusCode, Json<TenantView>), ApiError> {
    let slug = parse_unreserved_slug(&body.slug).map_err(ApiError::validation)?;
    let name = TenantName::parse(&body.name).map_err(ApiError::validation)?;
    let owner_email = Email::parse(&body.owner_email).map_err(ApiError::validation)?;
    let password = NewPassword::parse(&body.owner_password).map_err(ApiError::validation)?;
    let status = body.status.unwrap_or(TenantStatus::Active);
    if !matches!(status, TenantStatus::Active | TenantStatus::Trial) {
        return Err(ApiError::validation(crate::domain::Invalid::new("status", "a new tenant is active or trial")));
    }
    let domains = body
        .domains
        .iter()
        .map(|d| DomainName::parse(&d.0).and_then(|d| d.outside_base(&ctx.base_domain)).map(|d| d.as_str().to_string()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::validation)?;
    let hash = ctx.platform_hasher.hash(password.expose().to_string()).await?;
    let mut platform = platform_conn(&ctx).await?;
    let new =
        NewTenant { slug: slug.clone(), name: name.into_string(), owner_email, owner_password_hash: hash, domains };
    platform.create_tenant_with(new, status, body.plan.unwrap_or(Plan::Free)).await?;
    Ok((StatusCode::CREATED, Json(view(&mut platform, &slug).await?)))
}

/// One tenant, deleted ones included (operators see the tombstone).
#[utoipa::path(get, path = "/platform/v1/tenants/{slug}", tag = "platform", params(("slug" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = TenantView), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_tenant(
    _: Operator,
    Platform(mut platform): Platform,
    Path(slug): Path<String>,
) -> Result<Json<TenantView>, ApiError> {
    Ok(Json(view(&mut platform, &path_slug(&slug)?).await?))
}

/// Change a tenant's status (trial, active, suspended, deleted), plan or name. A suspended
/// tenant's routes answer 403 at once on every instance; deleted purges and is final.
#[utoipa::path(patch, path = "/platform/v1/tenants/{slug}", tag = "platform", params(("slug" = String, Path)),
    request_body = TenantPatch, security(("bearer" = [])),
    responses((status = 200, body = TenantView), (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "`tenant_deleted`: the tenant is deleted", body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn update_tenant(
    _: Operator,
    Platform(mut platform): Platform,
    Path(slug): Path<String>,
    Json(patch): Json<TenantPatch>,
) -> Result<Json<TenantView>, ApiError> {
    let slug = path_slug(&slug)?;
    let name = patch.name.as_deref().map(TenantName::parse).transpose().map_err(ApiError::validation)?;
    let limit = match patch.rate_limit {
        Some(Some(l)) => {
            let range = 1..=1_000_000;
            if !range.contains(&l.per_second) || !range.contains(&l.burst) {
                return Err(ApiError::validation_of("rate_limit: per_second and burst are each 1 to 1,000,000".into()));
            }
            Some(Some(RateLimitOverride { per_second: l.per_second, burst: l.burst }))
        }
        Some(None) => Some(None),
        None => None,
    };
    let lifecycle = patch.status.is_some() || patch.plan.is_some() || name.is_some();
    if lifecycle || limit.is_none() {
        let change = TenantChange { status: patch.status, plan: patch.plan, name: name.map(TenantName::into_string) };
        platform.change_tenant(&slug, change).await?;
    }
    if let Some(limit) = limit {
        // Its own transaction and audit event (`tenant.rate_limit_change`), as from the console.
        platform.set_rate_limit(&slug, limit).await?;
    }
    Ok(Json(view(&mut platform, &slug).await?))
}

/// Delete a tenant: mark it deleted (its hosts answer 404 like an unknown tenant) and purge
/// its rows from every table with a `tenant_id`, in one transaction. Repeating it is harmless.
#[utoipa::path(delete, path = "/platform/v1/tenants/{slug}", tag = "platform", params(("slug" = String, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn delete_tenant(
    Operator { id }: Operator,
    Platform(mut platform): Platform,
    Path(slug): Path<String>,
) -> Result<StatusCode, ApiError> {
    let slug = path_slug(&slug)?;
    let purged = platform.delete_tenant(&slug).await?;
    let rows: u64 = purged.iter().map(|(_, n)| n).sum();
    tracing::info!(tenant = %slug, operator = %id, rows, "tenant deleted and purged");
    Ok(StatusCode::NO_CONTENT)
}

async fn view(platform: &mut PlatformConn, slug: &Slug) -> Result<TenantView, ApiError> {
    let tenant = platform.tenant(slug).await?.ok_or_else(|| ApiError::not_found("tenant"))?;
    let domains = platform.domains(tenant.id).await?;
    let rate_limit =
        platform.rate_limit(tenant.id).await?.map(|l| RateLimit { per_second: l.per_second, burst: l.burst });
    Ok(TenantView { tenant, domains, rate_limit })
}
