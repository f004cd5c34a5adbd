//! Observation, run by the edge (`edge`) just inside request-id assignment: every request gets
//! its context (`http::context`, with the client's address), a span (so what is logged while it
//! runs carries its id, tenant and user), one observation in `Metrics` (route template, method,
//! status, time to the response's head) and one log line, target `rowguard::request`, that
//! names the request id and the tenant (`-` when the request named none) whatever the outcome.

use std::future::Future;
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::http::HeaderValue;
use axum::response::Response;
use tracing::Instrument;

use crate::http::ApiContext;
use crate::http::context::{ClientAddr, RequestContext};

/// Observe `request` while `inner` answers it (inside the request's span).
pub async fn observe<F, Fut>(ctx: &ApiContext, mut request: Request, request_id: &HeaderValue, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let start = Instant::now();
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let request_id = request_id.to_str().unwrap_or("");
    // The path only for the request line, and only when it is written (a URI clone is cheap,
    // not free).
    let uri = tracing::enabled!(target: "rowguard::request", tracing::Level::INFO).then(|| request.uri().clone());
    // The client's address, once: the socket peer, or what a trusted proxy says.
    let client = match request.extensions().get::<ConnectInfo<std::net::SocketAddr>>() {
        Some(ConnectInfo(peer)) => ClientAddr(ctx.trusted_proxies.client_ip(peer.ip(), request.headers())),
        None => ClientAddr::UNKNOWN,
    };
    let context = RequestContext::new(super::LAYERS_ONLY, client, request.headers());
    request.extensions_mut().insert(std::sync::Arc::clone(&context));
    let span = tracing::info_span!("request", request_id = %request_id, tenant = tracing::field::Empty,
        user = tracing::field::Empty);
    let response = inner(request).instrument(span).await;
    let elapsed = start.elapsed();
    let status = response.status();
    ctx.metrics.observe(route.as_ref().map(MatchedPath::as_str), &method, status, elapsed);
    let tenant = context.tenant().map_or("-", |t| &*t.slug);
    let user = context.principal().map(|p| p.user);
    let path = uri.as_ref().map_or("", |uri| uri.path());
    tracing::info!(target: "rowguard::request", request_id = %request_id, tenant, user = user.map(tracing::field::display),
        method = %method, path, status = status.as_u16(), ms = elapsed.as_micros() as f64 / 1e3, "request");
    response
}
