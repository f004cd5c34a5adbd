//! The edge of every request, outermost: the request id (`request_id`), observation (`observe`:
//! the request context, the span, metrics and the request line), problem documents
//! (`error::problem_documents`) and security headers (`security_headers`), in that order, in one
//! tower service with one future. Each concern's rules stay in its own module; this one only
//! runs them.
//!
//! Why one service: the outer layers are applied to every route (axum's `Router::layer`), and
//! each `from_fn` layer clones the whole chain of services inside it on every request and boxes
//! its future and its `Next`; as separate layers these four were six services, three of them
//! boxed twice per request (BENCHMARKS.md, "Where the read path's time goes").

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::Response;
use tower::{Layer, Service, ServiceExt};

use super::security_headers::{self, Hsts};
use super::{observe, request_id};
use crate::http::ApiContext;
use crate::http::error;

#[derive(Clone)]
pub struct EdgeLayer {
    ctx: ApiContext,
    hsts: Hsts,
}

impl EdgeLayer {
    pub fn new(ctx: ApiContext) -> EdgeLayer {
        let hsts = Hsts(ctx.hsts);
        EdgeLayer { ctx, hsts }
    }
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Edge<S> {
        Edge { ctx: self.ctx.clone(), hsts: self.hsts, inner }
    }
}

#[derive(Clone)]
pub struct Edge<S> {
    ctx: ApiContext,
    hsts: Hsts,
    inner: S,
}

impl<S> Service<Request> for Edge<S>
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

    fn call(&mut self, mut request: Request) -> Self::Future {
        let id = request_id::assign(&mut request);
        // The service that was polled ready goes with this request; a clone stays for the next.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let (ctx, hsts) = (self.ctx.clone(), self.hsts);
        Box::pin(async move {
            let mut response = observe::observe(&ctx, request, &id, |request| {
                error::problem_documents(id.clone(), async move {
                    let mut response = match inner.oneshot(request).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    };
                    security_headers::apply(response.headers_mut(), hsts);
                    response
                })
            })
            .await;
            request_id::echo(&mut response, id);
            Ok(response)
        })
    }
}
