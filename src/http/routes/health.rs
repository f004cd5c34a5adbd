//! `GET /healthz` (the process answers) and `GET /readyz` (the database answers and has every
//! migration this binary carries). Neither is tenant-scoped.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::ApiContext;
use crate::http::error::{ApiError, Problem};
use crate::http::error_codes::ErrorCode;
use crate::http::extract::Json;

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

/// Liveness: the process is serving.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: the database is reachable and migrations are current.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, description = "`not_ready`: the database cannot be reached, its migration history cannot be read, or it lacks a migration this binary needs (`unavailable` only when the check outlives the request timeout)", body = Problem, content_type = "application/problem+json")))]
pub async fn readyz(State(ctx): State<ApiContext>) -> Result<Json<Health>, ApiError> {
    let unavailable = |detail: &str| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::NotReady, detail);
    ctx.door.ping().await.map_err(|_| unavailable("the database is unreachable"))?;
    match ctx.door.migrations_current().await {
        Ok(true) => Ok(Json(Health { status: "ready" })),
        Ok(false) => Err(unavailable("the database is missing migrations; run `rowguard migrate`")),
        Err(_) => Err(unavailable("the migration history cannot be read")),
    }
}
