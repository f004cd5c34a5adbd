//! The tenant API's gate: the checks every `/v1` route passes before its handler, run in order
//! in one tower service and one future. Each check's rules live in its own module (the
//! per-address limits in `rate_limit`, resolution in `tenant`, authentication in `auth`, the
//! refusal recorder in `audit`); this module only runs them, in this order:
//!
//! 1. the per-address limit for requests that keep naming no known tenant (`rate_limit`);
//! 2. tenant resolution (`tenant`), which sets the tenant in the request's context;
//! 3. then, by route group (`Gate`):
//!    - bearer routes: the refusal recorder (`audit`) around authentication (`auth`, with its
//!      limit on addresses that keep failing it) and the tenant's quota (`rate_limit`, charged
//!      only to authenticated requests), so that every 401 and 403 from there on is recorded;
//!    - login, and refresh and logout: the per-(tenant, address) limit (`rate_limit`).
//!
//! Why one service and not one `from_fn` layer per check: each `route_layer` boxes the route it
//! wraps, and each `from_fn` layer clones the whole chain of boxed services inside it on every
//! request (and boxes its future and its `Next`), so five layers cost dozens of allocations per
//! request before the handler ran (BENCHMARKS.md, "Where the read path's time goes").

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service, ServiceExt};

use super::rate_limit::{self, PerAddress};
use super::{audit, auth, tenant};
use crate::http::ApiContext;
use crate::http::context::RequestContext;
use crate::http::error::ApiError;

/// Which checks a route group gets after resolution.
#[derive(Debug, Clone, Copy)]
pub enum Gate {
    /// Authentication with a bearer token, the tenant's quota, refusals recorded.
    Bearer,
    /// Login: attempts per (tenant, address).
    Login,
    /// Refresh and logout: attempts per (tenant, address).
    Sessions,
}

/// The gate as a layer, for `route_layer` on a group of tenant routes.
#[derive(Clone)]
pub struct TenantGateLayer {
    ctx: ApiContext,
    gate: Gate,
}

impl TenantGateLayer {
    pub fn new(ctx: ApiContext, gate: Gate) -> TenantGateLayer {
        TenantGateLayer { ctx, gate }
    }
}

impl<S> Layer<S> for TenantGateLayer {
    type Service = TenantGate<S>;

    fn layer(&self, inner: S) -> TenantGate<S> {
        TenantGate { ctx: self.ctx.clone(), gate: self.gate, inner }
    }
}

#[derive(Clone)]
pub struct TenantGate<S> {
    ctx: ApiContext,
    gate: Gate,
    inner: S,
}

impl<S> Service<Request> for TenantGate<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The service that was polled ready goes with this request; a clone stays for the next.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let (ctx, gate) = (self.ctx.clone(), self.gate);
        Box::pin(async move { Ok(pass(ctx, gate, inner, request).await) })
    }
}

async fn pass<S>(ctx: ApiContext, gate: Gate, inner: S, request: Request) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    // The parts are read across the checks' awaits; the body (not Sync) waits aside.
    let (parts, body) = request.into_parts();
    let Some(context) = RequestContext::of(&parts.extensions).cloned() else {
        return ApiError::internal("the tenant gate runs outside the request context").into_response();
    };
    if let Some(refusal) = rate_limit::refuse_unresolved(&ctx, context.client()) {
        return refusal;
    }
    if let Err(e) = tenant::resolve_into(&ctx, &context, &parts).await {
        return e.into_response();
    }
    let per_address = match gate {
        Gate::Bearer => None,
        Gate::Login => Some(PerAddress::Login),
        Gate::Sessions => Some(PerAddress::Sessions),
    };
    if let Some(which) = per_address {
        let (method, path) = (&parts.method, parts.uri.path());
        if let Some(refusal) = rate_limit::refuse_per_tenant_address(&ctx, &context, method, path, which).await {
            return refusal;
        }
        return answer(inner, Request::from_parts(parts, body)).await;
    }
    // Bearer routes. Kept (shared bytes) for the refusal recorder, which reads them after the
    // answer, when the request has gone to the handler.
    let (method, uri) = (parts.method.clone(), parts.uri.clone());
    let response = match authenticated(&ctx, &context, inner, parts, body).await {
        Ok(response) | Err(response) => response,
    };
    // Boxed, like every write on a refusal path: rare, and its future would otherwise be carried,
    // by size, in every request's.
    if let Some(tenant) = context.tenant().map(|t| t.id).filter(|_| audit::is_refusal(response.status())) {
        Box::pin(audit::record_refusal(&ctx, &context, tenant, &method, uri.path(), response.status())).await;
    }
    response
}

/// Authentication, the tenant's quota, then the handler, its answer carrying what is left of
/// the quota. Err: the answer of the check that refused.
async fn authenticated<S>(
    ctx: &ApiContext,
    context: &RequestContext,
    inner: S,
    parts: axum::http::request::Parts,
    body: axum::body::Body,
) -> Result<Response, Response>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    auth::authenticate(ctx, context, &parts).await?;
    let allowance = rate_limit::spend_tenant_quota(ctx, context, &parts.method, parts.uri.path()).await?;
    let mut response = answer(inner, Request::from_parts(parts, body)).await;
    if let Some(allowance) = allowance {
        rate_limit::quota_headers(&mut response, allowance);
    }
    Ok(response)
}

async fn answer<S>(inner: S, request: Request) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    match inner.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}
