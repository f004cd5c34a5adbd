//! Per-tenant CORS: each tenant lists the browser origins it allows (`cors_allowed_origins` on
//! its registry row); an origin allowed for tenant A is not allowed on tenant B. Reads headers only.
//!
//! A preflight carries no custom headers, so it cannot say `X-Tenant`: browsers reach a tenant
//! by its host (`{slug}.{base}` or a custom domain). Preflights are answered here, before
//! routing (no route has an OPTIONS handler); no credentials mode, since tokens are bearer
//! headers, not cookies.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::rate_limit::too_many_requests;
use super::tenant::resolve;
use crate::http::ApiContext;
use crate::http::client_ip::ClientIp;
use crate::http::error::ApiError;

const ALLOWED_METHODS: &str = "GET, POST, PATCH, DELETE";
const ALLOWED_HEADERS: &str = "authorization, content-type, x-tenant, x-request-id";
const EXPOSED_HEADERS: &str =
    "x-request-id, retry-after, ratelimit-limit, ratelimit-remaining, ratelimit-reset, ratelimit-policy";
/// Browsers cap this anyway (Chromium at 2 hours); ten minutes keeps an origin removed from a
/// tenant's list from lingering long in browser caches.
const PREFLIGHT_MAX_AGE: &str = "600";

pub async fn per_tenant_cors(State(ctx): State<ApiContext>, request: Request, next: Next) -> Response {
    let origin = request.headers().get(header::ORIGIN).cloned();
    let Some(origin) = origin.filter(|_| request.uri().path().starts_with("/v1/")) else {
        return next.run(request).await;
    };
    let preflight =
        request.method() == Method::OPTIONS && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        // Preflights answer before routing, so the per-address limit on requests that name no
        // known tenant is applied here too: a flood of random hosts must stay cheap.
        let ip = ClientIp::of(request.extensions(), request.headers(), &ctx.trusted_proxies).0;
        if let Some(refusal) = ctx.rate_limits.unresolved_refusal(ip) {
            return too_many_requests(refusal, "too many requests naming no known tenant from this address");
        }
        let allowed = match origin_allowed(&ctx, request.headers(), &origin).await {
            Some(allowed) => allowed,
            None => {
                ctx.rate_limits.record_unresolved(ip);
                false
            }
        };
        if !allowed {
            return ApiError::forbidden("cors_origin_not_allowed", "this origin may not call this tenant")
                .into_response();
        }
        let mut response = StatusCode::NO_CONTENT.into_response();
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(ALLOWED_METHODS));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(ALLOWED_HEADERS));
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(PREFLIGHT_MAX_AGE));
        vary_on_origin(h);
        return response;
    }
    // Checked after the request has been through resolution, so the tenant (or its absence) is
    // in the cache by then, and an address refused for naming unknown tenants costs no lookup.
    let ip = ClientIp::of(request.extensions(), request.headers(), &ctx.trusted_proxies).0;
    let naming = request.headers().clone();
    let mut response = next.run(request).await;
    let allowed =
        ctx.rate_limits.unresolved_refusal(ip).is_none() && origin_allowed(&ctx, &naming, &origin).await == Some(true);
    let h = response.headers_mut();
    if allowed {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED_HEADERS));
    }
    vary_on_origin(h);
    response
}

/// Whether the tenant the request names (by host, or X-Tenant for non-browser callers) lists
/// `origin`; None when it names no tenant that resolves (the request itself then gets the
/// resolution error from the tenant layer, as without CORS).
async fn origin_allowed(ctx: &ApiContext, headers: &HeaderMap, origin: &HeaderValue) -> Option<bool> {
    let Ok(origin) = origin.to_str() else { return Some(false) };
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    match resolve(ctx, text(header::HOST), text(header::HeaderName::from_static("x-tenant"))).await {
        // Origins are serialized in lower case by browsers; compare without regard to case anyway.
        Ok(tenant) => Some(tenant.cors_allowed_origins.iter().any(|allowed| allowed.eq_ignore_ascii_case(origin))),
        Err(_) => None,
    }
}

fn vary_on_origin(headers: &mut HeaderMap) {
    headers.append(header::VARY, HeaderValue::from_static("origin"));
}
