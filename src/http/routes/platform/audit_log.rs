//! Operators read any tenant's audit tree as its auditors do (`routes::audit_log`): the
//! newest signed head, an event's inclusion proof, a consistency proof — through the platform
//! login, in the tenant's own transaction (RLS holds it to that tenant like anyone).

use axum::extract::State;
use uuid::Uuid;

use super::{Platform, path_slug};
use crate::http::ApiContext;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{Json, Path, Query};
use crate::http::layers::platform_auth::Operator;
use crate::http::routes::audit_log::{
    self, ConsistencyParams, ConsistencyProof, InclusionProof, ProofParams, TreeHead,
};
use crate::platform::PlatformConn;

async fn tenant_id(platform: &mut PlatformConn, slug: &str) -> Result<crate::domain::TenantId, ApiError> {
    let slug = path_slug(slug)?;
    Ok(platform.tenant(&slug).await?.ok_or_else(|| ApiError::not_found("tenant"))?.id)
}

/// A tenant's newest signed audit tree head.
#[utoipa::path(get, path = "/platform/v1/tenants/{slug}/audit-log/head", tag = "platform",
    params(("slug" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = TreeHead), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn head(
    _: Operator,
    State(ctx): State<ApiContext>,
    Platform(mut platform): Platform,
    Path(slug): Path<String>,
) -> Result<Json<TreeHead>, ApiError> {
    let tenant = tenant_id(&mut platform, &slug).await?;
    let mut tx = platform.tenant_tx(tenant).await?;
    let head = audit_log::read_head(&ctx, tx.conn(), tenant).await?;
    tx.commit().await?;
    Ok(Json(head))
}

/// The inclusion proof of one of a tenant's audit events.
#[utoipa::path(get, path = "/platform/v1/tenants/{slug}/audit-events/{id}/proof", tag = "platform",
    params(("slug" = String, Path), ("id" = Uuid, Path), ProofParams), security(("bearer" = [])),
    responses((status = 200, body = InclusionProof), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "`invalid_query`: tree_size outside the tree, or the event not in it", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`not_sealed`: the event is committed, not yet in the tree", body = Problem, content_type = "application/problem+json")))]
pub async fn proof(
    _: Operator,
    Platform(mut platform): Platform,
    Path((slug, id)): Path<(String, Uuid)>,
    Query(params): Query<ProofParams>,
) -> Result<Json<InclusionProof>, ApiError> {
    let tenant = tenant_id(&mut platform, &slug).await?;
    let mut tx = platform.tenant_tx(tenant).await?;
    let proof = audit_log::prove_inclusion(tx.conn(), tenant, id, &params).await?;
    tx.commit().await?;
    Ok(Json(proof))
}

/// The consistency proof between two sizes of a tenant's audit tree.
#[utoipa::path(get, path = "/platform/v1/tenants/{slug}/audit-log/consistency", tag = "platform",
    params(("slug" = String, Path), ConsistencyParams), security(("bearer" = [])),
    responses((status = 200, body = ConsistencyProof), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "`invalid_query`: not 1 <= from <= to <= the tree's size", body = Problem, content_type = "application/problem+json")))]
pub async fn consistency(
    _: Operator,
    Platform(mut platform): Platform,
    Path(slug): Path<String>,
    Query(params): Query<ConsistencyParams>,
) -> Result<Json<ConsistencyProof>, ApiError> {
    let tenant = tenant_id(&mut platform, &slug).await?;
    let mut tx = platform.tenant_tx(tenant).await?;
    let proof = audit_log::prove_consistency(tx.conn(), tenant, &params).await?;
    tx.commit().await?;
    Ok(Json(proof))
}
