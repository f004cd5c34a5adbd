//! The console's session and CSRF plumbing: the session cookie handed to the API's own
//! authentication as a bearer token, the double-submit CSRF token every form carries, and the
//! layer that turns the API's problem documents into pages. No rule of who may do what lives
//! here: authentication, tenant binding and permissions are the API's (`layers::gate`,
//! `layers::platform_auth`, `Principal::require`).
//!
//! Why the session is the API's own access token in a cookie, not a server-side session: the
//! token is already signed, bound to its tenant (`tid`) or to the platform audience, expires
//! (the access-token TTL, 15 minutes by default, is the console's session lifetime), and is
//! checked on every request against the user's current role, status and session cut-off
//! (ASVS 8.3.2). Presenting it as `Authorization: Bearer` to the unchanged gate means a
//! console session of tenant A on tenant B's host is refused by the very code that refuses an
//! API token (403 `tenant_mismatch`), and no second session store has to be kept in step
//! across instances. What that costs: a copied cookie stays valid until it expires; "sign out
//! everywhere" (logout-all) cuts every session of the user at once.

use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use super::page;
use crate::http::ApiContext;
use crate::http::error::ApiError;
use crate::http::error_codes::ErrorCode;

/// The tenant console's session cookie (a tenant access token). Host-only: no `Domain`, so
/// the browser sends it back only to the tenant host that set it.
pub const TENANT_COOKIE: &str = "rowguard_console";
/// The operator console's session cookie (a platform token), on the bare host only.
pub const OPERATOR_COOKIE: &str = "rowguard_operator";
/// The double-submit CSRF token: random, set on the first console page, echoed in every form.
pub const CSRF_COOKIE: &str = "rowguard_csrf";
/// Every console cookie is scoped to the console's paths.
const COOKIE_PATH: &str = "/console/";

/// The console's settings (`ApiState::console`; None when ROWGUARD_CONSOLE=false).
#[derive(Debug, Clone, Copy)]
pub struct ConsoleSettings {
    /// `Secure` on every cookie (outside development).
    pub secure_cookies: bool,
}

/// The value of cookie `name` in the request's Cookie headers, if any.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, the console's path, Secure outside
/// development; `max_age` None clears the cookie.
pub fn set_cookie(ctx: &ApiContext, name: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
    let secure = ctx.console.is_some_and(|c| c.secure_cookies);
    let age = max_age.unwrap_or(0);
    let text = format!(
        "{name}={value}; Path={COOKIE_PATH}; HttpOnly; SameSite=Strict; Max-Age={age}{}",
        if secure { "; Secure" } else { "" }
    );
    // Every part is ours: a token (base64url and dots), hex, or a fixed name.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("rowguard_invalid=; Max-Age=0"))
}

/// Replace any Authorization header with the session cookie's token, for the API's
/// authentication that runs next. A console request authenticates with its cookie only: a
/// header a page's request might carry is not what the console vouches for.
///
/// Without a session cookie nothing is presented to the API's gate at all: the answer is a 401
/// at once (`pages` turns it into the sign-in page for a GET; `sign_out_anyway` into a
/// signed-out answer). A browser that never signed in has claimed no identity, so there is no
/// refusal to record — sending it through the gate would write an `access.denied` event for
/// every first visit, and charge the address's failed-authentication budget.
async fn cookie_as_bearer(mut request: Request, next: Next, name: &str) -> Response {
    let token = cookie(request.headers(), name)
        .filter(|t| !t.is_empty())
        .and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok());
    let Some(value) = token else {
        return ApiError::unauthorized(ErrorCode::MissingToken, "sign in to the console first").into_response();
    };
    let headers = request.headers_mut();
    headers.remove(header::AUTHORIZATION);
    headers.insert(header::AUTHORIZATION, value);
    next.run(request).await
}

/// `cookie_as_bearer` for the tenant console.
pub async fn tenant_session(request: Request, next: Next) -> Response {
    cookie_as_bearer(request, next, TENANT_COOKIE).await
}

/// `cookie_as_bearer` for the operator console.
pub async fn operator_session(request: Request, next: Next) -> Response {
    cookie_as_bearer(request, next, OPERATOR_COOKIE).await
}

/// Around a sign-out route (outside its authentication): signing out without a live session
/// (no cookie, or one whose token expired or was revoked) still clears the session cookie and
/// sends the browser to sign-in, instead of a 401 page. The form's CSRF token is checked
/// first, as for any post, so another site cannot clear a session either.
pub async fn sign_out_anyway(
    State((ctx, session_cookie, signed_out)): State<(ApiContext, &'static str, &'static str)>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, FORM_LIMIT).await else {
        return ApiError::bad_request(ErrorCode::InvalidBody, "the form could not be read").into_response();
    };
    if !csrf_genuine(parts.extensions.get::<CsrfToken>(), &parts.headers, &bytes) {
        return csrf_refused().into_response();
    }
    let response = next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await;
    if response.status() != StatusCode::UNAUTHORIZED {
        return response;
    }
    let mut answer = Redirect::to(signed_out).into_response();
    answer.headers_mut().append(header::SET_COOKIE, set_cookie(&ctx, session_cookie, "", None));
    answer
}

/// The largest console form read (sign-in, sign-out and operator forms are a few hundred bytes).
const FORM_LIMIT: usize = 16 * 1024;

// No renewal: a console session is the access token its sign-in issued, and it ends when that
// token expires (`ROWGUARD_ACCESS_TOKEN_TTL`), used or not — an absolute limit, shorter
// than most idle timeouts. A sliding renewal was tried and removed after review: minting a
// fresh token from whatever valid token a cookie carried turned any copied API token into one
// that never expires, and could mint past a "sign out everywhere" taken meanwhile.

/// The operator console answers on the bare host only (the base domain or an address): not on
/// a tenant's subdomain, nor on a custom domain, both of which belong to a tenant.
pub async fn bare_host_only(State(ctx): State<ApiContext>, request: Request, next: Next) -> Response {
    use crate::http::layers::tenant::{HostName, classify_host};
    let host = request.headers().get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    if classify_host(host, &ctx.base_domain) != HostName::NoTenant {
        return ApiError::new(StatusCode::NOT_FOUND, ErrorCode::RouteNotFound, "no such route").into_response();
    }
    next.run(request).await
}

/// This request's CSRF token: the cookie's, or a new one the answer sets (`pages`).
#[derive(Debug, Clone)]
pub struct CsrfToken {
    pub value: String,
    /// Made for this request: no form posted with it can be genuine yet.
    fresh: bool,
}

/// A new CSRF cookie, set at sign-in so that the signed-in session never uses a token that
/// existed before it (one planted in the browser beforehand, say).
pub fn rotated_csrf_cookie(ctx: &ApiContext) -> HeaderValue {
    set_cookie(ctx, CSRF_COOKIE, &hex::encode(rand::random::<[u8; 32]>()), Some(CSRF_COOKIE_SECS))
}

/// A day: longer than any session, so a form stays postable while its page is open.
const CSRF_COOKIE_SECS: u64 = 86_400;

fn valid_csrf(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Every console answer passes here: the CSRF token is found or made (and set on the
/// answer), and the API's answers are made fit for a browser — a 401 on a page becomes a
/// redirect to the sign-in page named by `login`, and any problem document becomes a page
/// saying the same (status, code, detail and request id kept). The console's own policy
/// replaces the API's: styles and scripts from the binary only, forms posted to itself.
pub async fn pages(
    State((ctx, login)): State<(ApiContext, &'static str)>,
    mut request: Request,
    next: Next,
) -> Response {
    let token = match cookie(request.headers(), CSRF_COOKIE).filter(|v| valid_csrf(v)) {
        Some(v) => CsrfToken { value: v.to_string(), fresh: false },
        None => CsrfToken { value: hex::encode(rand::random::<[u8; 32]>()), fresh: true },
    };
    request.extensions_mut().insert(token.clone());
    let is_get = request.method() == Method::GET;
    let here = request.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
    let mut response = next.run(request).await;
    if is_get && response.status() == StatusCode::UNAUTHORIZED {
        response = Redirect::to(&sign_in_again(login, &here, session_ended(response).await)).into_response();
    } else if is_problem(&response) {
        response = page::problem_page(response).await;
    }
    let headers = response.headers_mut();
    // Unless the handler set one already (a sign-in rotates it).
    let handler_set = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .any(|v| v.as_bytes().starts_with(format!("{CSRF_COOKIE}=").as_bytes()));
    if token.fresh && !handler_set {
        headers.append(header::SET_COOKIE, set_cookie(&ctx, CSRF_COOKIE, &token.value, Some(CSRF_COOKIE_SECS)));
    }
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONSOLE_CSP));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Whether a 401 says the session's token was good once and has ended (it expired, or its
/// sessions were ended: sign out everywhere, a password change): only then does sign-in say
/// so. A first visit (no cookie) or a forged token gets the plain sign-in page.
async fn session_ended(response: Response) -> bool {
    let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024).await.unwrap_or_default();
    let problem: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let code = problem.get("code").and_then(|c| c.as_str()).unwrap_or("");
    code == ErrorCode::TokenExpired.as_str() || code == ErrorCode::SessionRevoked.as_str()
}

/// The sign-in page (`login`) for a GET of `here` refused with a 401: when the session ended,
/// it says so and carries `here` to return to after signing in.
fn sign_in_again(login: &str, here: &str, ended: bool) -> String {
    let console = login.rsplit_once('/').map_or("/console/", |(dir, _)| dir);
    match return_path(here, &format!("{console}/")).filter(|_| ended) {
        Some(path) => {
            let query = serde_urlencoded::to_string([("expired", "1"), ("next", path)]).unwrap_or_default();
            format!("{login}?{query}")
        }
        None => login.to_string(),
    }
}

/// `next`, if it is a path of this console (under `console`, e.g. `/console/audit/`) that is
/// safe to send the browser to after sign-in: never another site. Anything with `//` (a
/// scheme-relative URL once a browser normalises it), a backslash (which browsers read as a
/// slash), a `:` before the query (a scheme), a control character, a space or anything but
/// printable ASCII is refused, as is anything outside the console's own paths.
pub fn return_path<'a>(next: &'a str, console: &str) -> Option<&'a str> {
    let path = next.split('?').next().unwrap_or("");
    let safe = next.starts_with(console)
        && console.starts_with("/console/")
        && next.len() <= 2048
        && next.bytes().all(|b| b.is_ascii_graphic())
        && !next.contains("//")
        && !next.contains('\\')
        && !path.contains(':');
    safe.then_some(next)
}

/// The console's pages: everything from the binary itself, no inline script or style, forms
/// posted only to the console, never framed.
pub const CONSOLE_CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
    form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn is_problem(response: &Response) -> bool {
    response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"))
}

/// A form posted to the console, accepted only with the CSRF token the console gave out
/// (double submit: the form's `csrf` field must equal the cookie's, compared in constant
/// time), and only from the console's own origin when the browser says where it came from.
/// Every POST handler takes one, so no state changes without the check.
pub struct CsrfForm<T>(pub T);

#[derive(serde::Deserialize)]
struct CsrfField {
    csrf: Option<String>,
}

fn csrf_refused() -> ApiError {
    ApiError::forbidden(
        ErrorCode::Forbidden,
        "the form's CSRF token is missing or does not match this browser's; reload the page and submit it again",
    )
}

impl<T: DeserializeOwned> FromRequest<ApiContext> for CsrfForm<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &ApiContext) -> Result<Self, ApiError> {
        let token = request.extensions().get::<CsrfToken>().cloned();
        let headers = request.headers().clone();
        if !same_origin(&headers) {
            return Err(csrf_refused());
        }
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|_| ApiError::bad_request(ErrorCode::InvalidBody, "the form could not be read"))?;
        if !csrf_genuine(token.as_ref(), &headers, &bytes) {
            return Err(csrf_refused());
        }
        let form = serde_urlencoded::from_bytes::<T>(&bytes)
            .map_err(|e| ApiError::bad_request(ErrorCode::InvalidBody, format!("the form is not as expected: {e}")))?;
        Ok(CsrfForm(form))
    }
}

/// Whether a posted form (`bytes`) carries this browser's CSRF token (double submit, compared
/// in constant time) and comes from the console's own origin when the browser says.
fn csrf_genuine(token: Option<&CsrfToken>, headers: &HeaderMap, bytes: &[u8]) -> bool {
    if !same_origin(headers) {
        return false;
    }
    let sent = serde_urlencoded::from_bytes::<CsrfField>(bytes).ok().and_then(|f| f.csrf);
    match (token, sent) {
        (Some(token), Some(sent)) => !token.fresh && bool::from(token.value.as_bytes().ct_eq(sent.as_bytes())),
        _ => false,
    }
}

/// Whether the browser's own account of where the request came from allows it: Sec-Fetch-Site
/// when sent (every current browser does), else an Origin naming another host refuses. An
/// `Origin: null` says nothing (browsers send it under our `Referrer-Policy: no-referrer`),
/// and a client that says nothing is judged by the token alone.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return matches!(site, "same-origin" | "none");
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match (headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()), host) {
        (None | Some("null"), _) => true,
        (Some(origin), Some(host)) => origin.split_once("://").is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host)),
        (Some(_), None) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_consoles_own_paths_are_returned_to_after_sign_in() {
        let console = "/console/audit/";
        for kept in ["/console/audit/", "/console/audit/verify", "/console/audit/?action=a.b&from=2026-12-06T09%3A30"] {
            assert_eq!(return_path(kept, console), Some(kept), "{kept}");
        }
        for refused in [
            "//evil.example/",
            "https://evil.example/console/audit/",
            "/console/audit//evil.example",
            "/console/audit/\\evil.example",
            "/\\evil.example/console/audit/",
            "/console/audit/\r\nSet-Cookie: x=1",
            "/console/audit/\t",
            "/console/audit/ x",
            "/console/audit/é",
            "/console/platform/",
            "/console/audit:x/",
            "javascript:alert(1)//console/audit/",
            "",
        ] {
            assert_eq!(return_path(refused, console), None, "{refused:?}");
        }
        assert_eq!(
            sign_in_again("/console/audit/login", "/console/audit/verify", true),
            "/console/audit/login?expired=1&next=%2Fconsole%2Faudit%2Fverify"
        );
        assert_eq!(sign_in_again("/console/audit/login", "/console/audit/verify", false), "/console/audit/login");
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; rowguard_console_x=2; rowguard_console=3"));
        assert_eq!(cookie(&h, "rowguard_console"), Some("3"));
        assert_eq!(cookie(&h, "a"), Some("1"));
        assert_eq!(cookie(&h, "b"), None);
    }

    #[test]
    fn cross_site_posts_are_refused_before_the_token_is_read() {
        let table = [
            (vec![], true),
            (vec![("sec-fetch-site", "cross-site")], false),
            (vec![("sec-fetch-site", "same-site")], false),
            (vec![("sec-fetch-site", "same-origin"), ("origin", "http://acme.localhost:8080")], true),
            (vec![("origin", "http://evil.example")], false),
            (vec![("origin", "null")], true),
            (vec![("sec-fetch-site", "same-origin"), ("origin", "null")], true),
        ];
        for (extra, allowed) in table {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_static("acme.localhost:8080"));
            for (k, v) in &extra {
                h.insert(*k, HeaderValue::from_static(v));
            }
            assert_eq!(same_origin(&h), allowed, "{extra:?}");
        }
    }
}
