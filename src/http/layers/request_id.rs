//! Request ids: a uuid v7 for every request (kept if the client sent a sane one), echoed in
//! the `x-request-id` response header, the log span and every problem document.

use axum::http::{HeaderValue, Request};
use tower_http::request_id::{MakeRequestId, RequestId};

#[derive(Clone, Copy, Default)]
pub struct MakeRequestUuidV7;

impl MakeRequestId for MakeRequestUuidV7 {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let id = uuid::Uuid::now_v7().to_string();
        HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}

/// Drop a client-supplied id that is long or odd before `SetRequestId` sees it, so logs and
/// problem documents only ever carry short, printable ids.
pub fn sanitize_incoming<B>(mut request: Request<B>) -> Request<B> {
    let ok = request
        .headers()
        .get("x-request-id")
        .is_some_and(|v| v.len() <= 64 && v.as_bytes().iter().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b)));
    if !ok {
        request.headers_mut().remove("x-request-id");
    }
    request
}
