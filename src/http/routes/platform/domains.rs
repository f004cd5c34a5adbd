//! A tenant's custom domains: `POST /platform/v1/tenants/{slug}/domains`,
//! `DELETE …/domains/{domain}`, `PUT …/domains/{domain}/primary`. A domain names one tenant
//! at most (409 otherwise); resolution sees every change at once (the registry NOTIFYs).

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

use super::{Platform, path_slug};
use crate::domain::DomainName;
use crate::http::ApiContext;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{Json, Path};
use crate::http::layers::platform_auth::Operator;
use crate::platform::TenantDomain;

/// A domain name as a request carries it: DNS labels joined by dots (at least two), an
/// optional trailing dot; `DomainName::parse` lowers it and refuses names under the base domain.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, pattern = r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?$", max_length = 253)]
pub struct DomainText(pub String);

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDomain {
    /// A host name outside the base domain, such as `crm.acme-corp.com`.
    domain: DomainText,
    /// Make it the primary domain (the first domain always is).
    #[serde(default)]
    primary: bool,
}

/// Add a custom domain to a tenant.
#[utoipa::path(post, path = "/platform/v1/tenants/{slug}/domains", tag = "platform", params(("slug" = String, Path)),
    request_body = NewDomain, security(("bearer" = [])),
    responses((status = 201, body = TenantDomain),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "`domain_taken`: the domain belongs to a tenant already; `tenant_deleted`: the tenant is deleted", body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn add_domain(
    State(ctx): State<ApiContext>,
    _: Operator,
    Platform(mut platform): Platform,
    Path(slug): Path<String>,
    Json(body): Json<NewDomain>,
) -> Result<(StatusCode, Json<TenantDomain>), ApiError> {
    let slug = path_slug(&slug)?;
    let domain = DomainName::parse(&body.domain.0)
        .and_then(|d| d.outside_base(&ctx.base_domain))
        .map_err(ApiError::validation)?;
    let added = platform.add_domain(&slug, &domain, body.primary).await?;
    Ok((StatusCode::CREATED, Json(added)))
}

/// Remove a custom domain from a tenant.
#[utoipa::path(delete, path = "/platform/v1/tenants/{slug}/domains/{domain}", tag = "platform",
    params(("slug" = String, Path), ("domain" = String, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "`tenant_deleted`: the tenant is deleted; it cannot change any more", body = Problem, content_type = "application/problem+json")))]
pub async fn remove_domain(
    _: Operator,
    Platform(mut platform): Platform,
    Path((slug, domain)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let slug = path_slug(&slug)?;
    let domain = DomainName::parse(&domain).map_err(|_| ApiError::not_found("domain"))?;
    if !platform.remove_domain(&slug, &domain).await? {
        return Err(ApiError::not_found("domain"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Make one of the tenant's domains its primary domain.
#[utoipa::path(put, path = "/platform/v1/tenants/{slug}/domains/{domain}/primary", tag = "platform",
    params(("slug" = String, Path), ("domain" = String, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "`tenant_deleted`: the tenant is deleted; it cannot change any more", body = Problem, content_type = "application/problem+json")))]
pub async fn set_primary_domain(
    _: Operator,
    Platform(mut platform): Platform,
    Path((slug, domain)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let slug = path_slug(&slug)?;
    let domain = DomainName::parse(&domain).map_err(|_| ApiError::not_found("domain"))?;
    if !platform.set_primary_domain(&slug, &domain).await? {
        return Err(ApiError::not_found("domain"));
    }
    Ok(StatusCode::NO_CONTENT)
}
