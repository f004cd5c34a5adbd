//! Baseline security headers on every answer, errors included. An API serves no documents,
//! so the content security policy forbids everything; the docs router sets its own, just
//! enough for the page (`DOCS_CSP`), and the API routers add `Cache-Control: no-store`
//! (`NO_STORE`) — both attached in `http::router`, so this layer never looks at the path.
//! Error answers of every path, the outer layers' included, get `NO_STORE` from
//! `error::problem_documents`.

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};

const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";
pub const DOCS_CSP: &str = "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; \
                        img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'";

/// Whether to send Strict-Transport-Security: a browser that saw it will only use HTTPS for
/// the host (and its subdomains, which are the tenants) for a year. Off in development, where
/// the service is reached over plain http://localhost (see `Config::hsts_enabled`).
#[derive(Debug, Clone, Copy)]
pub struct Hsts(pub bool);

const HSTS: &str = "max-age=31536000; includeSubDomains";

/// Tenant data and operator tokens must never sit in a shared cache: on every answer of the
/// tenant and platform APIs, and on every error answer.
pub const NO_STORE: &str = "no-store";

/// The headers on an answer (run by the edge, `edge`, on every answer).
pub fn apply(h: &mut HeaderMap, hsts: Hsts) {
    let set = |h: &mut HeaderMap, name: HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    // The docs router's own policy stands; every other answer gets the API's.
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        set(h, header::CONTENT_SECURITY_POLICY, API_CSP);
    }
    if hsts.0 {
        set(h, header::STRICT_TRANSPORT_SECURITY, HSTS);
    }
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, HeaderName::from_static("permissions-policy"), "camera=(), microphone=(), geolocation=(), payment=()");
    set(h, HeaderName::from_static("cross-origin-opener-policy"), "same-origin");
    set(h, HeaderName::from_static("cross-origin-resource-policy"), "same-origin");
    h.remove(header::SERVER);
}
