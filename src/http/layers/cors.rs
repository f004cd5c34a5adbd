//! Per-tenant CORS on the tenant API (`/v1`): each tenant lists the browser origins it allows
//! (`cors_allowed_origins` on its registry row); an origin allowed for tenant A is not allowed
//! on tenant B. No credentials mode, since tokens are bearer headers, not cookies.
//!
//! An actual request is answered by the routes below, which resolve its tenant into the
//! request's context; this layer reads the tenant's origins from there once the answer is out
//! (no second resolution). A preflight carries no custom headers, so it cannot say `X-Tenant`:
//! browsers reach a tenant by its host (`{slug}.{base}` or a custom domain). No route has an
//! OPTIONS handler, so a preflight is answered here, resolving the host itself: the only
//! resolution that request gets.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::future::Either;
use tower::{Layer, Service, ServiceExt};

use super::rate_limit::too_many_requests;
use super::tenant::resolve;
use crate::http::ApiContext;
use crate::http::context::{RequestContext, ResolvedTenant};
use crate::http::error::ApiError;
use crate::http::error_codes::ErrorCode;

const ALLOWED_METHODS: &str = "GET, POST, PATCH, DELETE";
const ALLOWED_HEADERS: &str = "authorization, content-type, x-tenant, x-request-id";
const EXPOSED_HEADERS: &str =
    "x-request-id, retry-after, ratelimit-limit, ratelimit-remaining, ratelimit-reset, ratelimit-policy";
/// Browsers cap this anyway (Chromium at 2 hours); ten minutes keeps an origin removed from a
/// tenant's list from lingering long in browser caches.
const PREFLIGHT_MAX_AGE: &str = "600";

/// The layer, written as a plain tower `Service`: most requests carry no `Origin` and go
/// straight to the routes, with no future of this layer's own to box (a `from_fn` layer clones
/// the whole tenant API's service chain and boxes twice on every request).
#[derive(Clone)]
pub struct PerTenantCorsLayer {
    ctx: ApiContext,
}

impl PerTenantCorsLayer {
    pub fn new(ctx: ApiContext) -> PerTenantCorsLayer {
        PerTenantCorsLayer { ctx }
    }
}

impl<S> Layer<S> for PerTenantCorsLayer {
    type Service = PerTenantCors<S>;

    fn layer(&self, inner: S) -> PerTenantCors<S> {
        PerTenantCors { ctx: self.ctx.clone(), inner }
    }
}

#[derive(Clone)]
pub struct PerTenantCors<S> {
    ctx: ApiContext,
    inner: S,
}

type BoxedAnswer = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl<S> Service<Request> for PerTenantCors<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, BoxedAnswer>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let Some(origin) = request.headers().get(header::ORIGIN).cloned() else {
            return Either::Left(self.inner.call(request));
        };
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let ctx = self.ctx.clone();
        Either::Right(Box::pin(async move { Ok(per_tenant_cors(ctx, origin, request, inner).await) }))
    }
}

async fn per_tenant_cors<S>(ctx: ApiContext, origin: HeaderValue, request: Request, inner: S) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    let Some(context) = RequestContext::of(request.extensions()).cloned() else {
        return ApiError::internal("CORS runs outside the request context").into_response();
    };
    let preflight =
        request.method() == Method::OPTIONS && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        // Preflights answer before tenant resolution, so the per-address limit on requests that
        // name no known tenant is applied here too: a flood of random hosts must stay cheap.
        let ip = context.client().0;
        if let Some(refusal) = ctx.rate_limits.unresolved_refusal(ip) {
            return too_many_requests(refusal, "too many requests naming no known tenant from this address");
        }
        let allowed = match preflight_allowed(&ctx, request.headers(), &origin).await {
            Some(allowed) => allowed,
            None => {
                ctx.rate_limits.record_unresolved(ip);
                false
            }
        };
        if !allowed {
            return ApiError::forbidden(ErrorCode::CorsOriginNotAllowed, "this origin may not call this tenant")
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
    let mut response = match inner.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    // The tenant the routes resolved; none when the request named none that resolves (it got
    // the resolution error), or was refused before resolution (an address that keeps naming
    // unknown tenants): no CORS headers then.
    let allowed = context.tenant().is_some_and(|tenant| origin_listed(tenant, &origin));
    let h = response.headers_mut();
    if allowed {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED_HEADERS));
    }
    vary_on_origin(h);
    response
}

/// Whether the tenant a preflight names by its host lists `origin`; None when the host names
/// no tenant that resolves.
async fn preflight_allowed(ctx: &ApiContext, headers: &HeaderMap, origin: &HeaderValue) -> Option<bool> {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    match resolve(ctx, text(header::HOST), text(header::HeaderName::from_static("x-tenant"))).await {
        Ok(tenant) => Some(origin_listed(&tenant, origin)),
        Err(_) => None,
    }
}

/// Origins are serialized in lower case by browsers; compare without regard to case anyway.
fn origin_listed(tenant: &ResolvedTenant, origin: &HeaderValue) -> bool {
    origin.to_str().is_ok_and(|origin| tenant.cors_allowed_origins.iter().any(|a| a.eq_ignore_ascii_case(origin)))
}

fn vary_on_origin(headers: &mut HeaderMap) {
    headers.append(header::VARY, HeaderValue::from_static("origin"));
}
