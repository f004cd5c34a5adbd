//! The observing layer, just inside request-id assignment: every request gets a span (so
//! what is logged while it runs carries its id, tenant and user), one observation in
//! `Metrics` (route template, method, status, time to the response's head) and one log line,
//! target `rowguard::request`, that names the request id and the tenant (`-` when the request
//! named none) whatever the outcome.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::domain::UserId;
use crate::metrics::Metrics;

/// Put on the response by tenant resolution, for the request line.
#[derive(Debug, Clone)]
pub struct ServedTenant(pub Arc<str>);

/// Put on the response by authentication, for the request line.
#[derive(Debug, Clone, Copy)]
pub struct ServedUser(pub UserId);

pub async fn observe(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().cloned();
    // Shared copies, not new strings: a header value and a URI clone their bytes by reference.
    let request_id = request.headers().get("x-request-id").cloned();
    let request_id = request_id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("");
    let uri = request.uri().clone();
    let span = tracing::info_span!("request", request_id = %request_id, tenant = tracing::field::Empty,
        user = tracing::field::Empty);
    let response = next.run(request).instrument(span).await;
    let elapsed = start.elapsed();
    let status = response.status();
    metrics.observe(route.as_ref().map(MatchedPath::as_str), &method, status, elapsed);
    let tenant = response.extensions().get::<ServedTenant>().map_or("-", |t| &*t.0);
    let user = response.extensions().get::<ServedUser>().map(|u| u.0);
    tracing::info!(target: "rowguard::request", request_id = %request_id, tenant, user = user.map(tracing::field::display),
        method = %method, path = uri.path(), status = status.as_u16(), ms = elapsed.as_micros() as f64 / 1e3, "request");
    response
}
