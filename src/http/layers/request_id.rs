//! Request ids: a uuid v7 for every request (kept if the client sent a sane one), echoed in
//! the `x-request-id` response header, the log span and every problem document. Run by the
//! edge (`edge`), first thing on the way in and last on the way out.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id, set on its `x-request-id` header for everything after: the client's, if
/// it is short and printable (so logs and problem documents only ever carry such ids), else a
/// new uuid v7 in place of whatever the client sent.
pub fn assign(request: &mut Request) -> HeaderValue {
    let headers = request.headers_mut();
    if let Some(id) = headers.get(&X_REQUEST_ID).filter(|v| sane(v)) {
        return id.clone();
    }
    let id = new_id();
    headers.insert(X_REQUEST_ID, id.clone());
    id
}

fn sane(id: &HeaderValue) -> bool {
    id.len() <= 64 && id.as_bytes().iter().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b))
}

/// A uuid v7, hyphenated, written straight into the header value (no intermediate string).
fn new_id() -> HeaderValue {
    let mut text = uuid::Uuid::encode_buffer();
    let text = uuid::Uuid::now_v7().hyphenated().encode_lower(&mut text);
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The id on the answer, unless something inside already put one there.
pub fn echo(response: &mut Response, id: HeaderValue) {
    if !response.headers().contains_key(&X_REQUEST_ID) {
        response.headers_mut().insert(X_REQUEST_ID, id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sane_id_is_kept_and_any_other_replaced_by_a_uuid() {
        let with = |id: Option<&str>| {
            let mut request = Request::new(axum::body::Body::empty());
            if let Some(id) = id {
                request.headers_mut().insert(X_REQUEST_ID, HeaderValue::from_str(id).expect("header"));
            }
            let assigned = assign(&mut request);
            assert_eq!(request.headers().get(&X_REQUEST_ID), Some(&assigned));
            assigned.to_str().expect("ascii").to_string()
        };
        assert_eq!(with(Some("abc-123_x.y")), "abc-123_x.y");
        for odd in [None, Some("a b"), Some("<script>"), Some(&"a".repeat(65))] {
            let id = with(odd);
            assert_eq!(uuid::Uuid::parse_str(&id).map(|u| u.get_version_num()), Ok(7), "{odd:?}");
        }
    }
}
