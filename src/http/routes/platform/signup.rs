//! `POST /platform/v1/signup`: self-service signup, off unless ROWGUARD_SIGNUP=true. Creates a
//! trial tenant and its owner through the same platform path as an operator would.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::{Email, NewPassword, Plan, TenantId, TenantName, TenantStatus, parse_unreserved_slug};
use crate::http::ApiContext;
use crate::http::error::{ApiError, Problem};
use crate::http::error_codes::ErrorCode;
use crate::http::extract::Json;
use crate::platform::NewTenant;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
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
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct SignupResponse {
    pub id: TenantId,
    pub slug: String,
    /// Always `trial`.
    pub status: TenantStatus,
}

/// Sign up: a new trial tenant and its owner.
#[utoipa::path(post, path = "/platform/v1/signup", tag = "platform", request_body = SignupRequest,
    responses((status = 201, body = SignupResponse),
              (status = 404, description = "`signup_disabled`: signup is off", body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "`slug_taken`: the slug is taken", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "invalid or reserved slug, bad e-mail or password", body = Problem, content_type = "application/problem+json")))]
pub async fn signup(
    State(ctx): State<ApiContext>,
    Json(body): Json<SignupRequest>,
) -> Result<(StatusCode, Json<SignupResponse>), ApiError> {
    if !ctx.signup {
        return Err(ApiError::new(StatusCode::NOT_FOUND, ErrorCode::SignupDisabled, "self-service signup is off"));
    }
    let slug = parse_unreserved_slug(&body.slug).map_err(ApiError::validation)?;
    let name = TenantName::parse(&body.name).map_err(ApiError::validation)?;
    let owner_email = Email::parse(&body.owner_email).map_err(ApiError::validation)?;
    let password = NewPassword::parse(&body.owner_password).map_err(ApiError::validation)?;
    let hash = ctx.platform_hasher.hash(password.expose().to_string()).await?;
    // The connection only after the slow hash, so a signup flood does not hold the pool.
    let mut platform = super::platform_conn(&ctx).await?;
    let new = NewTenant {
        slug: slug.clone(),
        name: name.into_string(),
        owner_email,
        owner_password_hash: hash,
        domains: vec![],
    };
    let created = platform.create_tenant_with(new, TenantStatus::Trial, Plan::Free).await?;
    Ok((
        StatusCode::CREATED,
        Json(SignupResponse { id: created.tenant, slug: slug.to_string(), status: TenantStatus::Trial }),
    ))
}
