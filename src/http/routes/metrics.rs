//! `GET /metrics`: Prometheus' text exposition (see `crate::metrics` for what is counted and
//! which labels exist). Not tenant-scoped. When ROWGUARD_METRICS_TOKEN is set, the scraper
//! must present it as a bearer token.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::http::ApiContext;
use crate::http::error::{ApiError, Problem};
use crate::http::error_codes::ErrorCode;

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Metrics in Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4", content_type = "text/plain", body = String),
        (status = 401, description = "`metrics_token_required`: ROWGUARD_METRICS_TOKEN is set and the bearer token is not it", body = Problem, content_type = "application/problem+json")))]
pub async fn metrics(State(ctx): State<ApiContext>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(expected) = &ctx.metrics_token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
            return Err(ApiError::unauthorized(ErrorCode::MetricsTokenRequired, "present the metrics bearer token"));
        }
    }
    let audit_events = match ctx.door.audit_events_inserted().await {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the audit insert count for /metrics");
            None
        }
    };
    let body = ctx.metrics.render(ctx.door.pool_figures(), audit_events);
    let mut response = body.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    Ok(response)
}
