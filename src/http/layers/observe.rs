//! The observing layer, just inside request-id assignment: every request gets its context
//! (`http::context`, with the client's address), a span (so what is logged while it runs
//! carries its id, tenant and user), one observation in
//! `Metrics` (route template, method, status, time to the response's head) and one log line,
//! target `rowguard::request`, that names the request id and the tenant (`-` when the request
//! named none) whatever the outcome.

use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::http::ApiContext;
use crate::http::context::{ClientAddr, RequestContext};

pub async fn observe(State(ctx): State<ApiContext>, mut request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().cloned();
    // Shared copies, not new strings: a header value and a URI clone their bytes by reference.
    let request_id = request.headers().get("x-request-id").cloned();
    let request_id = request_id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("");
    let uri = request.uri().clone();
    // The client's address, once: the socket peer, or what a trusted proxy says.
    let client = match request.extensions().get::<ConnectInfo<std::net::SocketAddr>>() {
        Some(ConnectInfo(peer)) => ClientAddr(ctx.trusted_proxies.client_ip(peer.ip(), request.headers())),
        None => ClientAddr::UNKNOWN,
    };
    let context = RequestContext::new(super::LAYERS_ONLY, client, request.headers());
    request.extensions_mut().insert(std::sync::Arc::clone(&context));
    let span = tracing::info_span!("request", request_id = %request_id, tenant = tracing::field::Empty,
        user = tracing::field::Empty);
    let response = next.run(request).instrument(span).await;
    let elapsed = start.elapsed();
    let status = response.status();
    ctx.metrics.observe(route.as_ref().map(MatchedPath::as_str), &method, status, elapsed);
    let tenant = context.tenant().map_or("-", |t| &*t.slug);
    let user = context.principal().map(|p| p.user);
    tracing::info!(target: "rowguard::request", request_id = %request_id, tenant, user = user.map(tracing::field::display),
        method = %method, path = uri.path(), status = status.as_u16(), ms = elapsed.as_micros() as f64 / 1e3, "request");
    response
}
