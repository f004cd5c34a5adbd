//! Bad input gets a clear 4xx problem document (with a stable code and the request id),
//! never a 5xx and never axum's plain-text rejections.

use axum::body::Body;
use axum::http::{Method, StatusCode};

use crate::support::spawn_app;

/// (method, path, headers, content type, body, expected status, expected code)
type Case<'a> = (Method, &'a str, &'a [(&'a str, &'a str)], Option<&'a str>, String, StatusCode, &'a str);

#[tokio::test]
async fn every_kind_of_bad_request_is_a_4xx_problem_document() {
    let app = spawn_app().await;
    let t = app.create_tenant("alpha").await;
    let token = app.owner_token(&t).await;
    let bearer = format!("Bearer {token}");
    let expired_like = format!("Bearer {}x", &token[..token.len() - 1]);
    let big = format!("{{\"name\":\"{}\",\"email\":\"a@b.co\"}}", "x".repeat(100 * 1024));
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let json = Some("application/json");
    let auth = [("x-tenant", "alpha"), ("authorization", bearer.as_str())];
    let no_auth = [("x-tenant", "alpha")];
    let tampered = [("x-tenant", "alpha"), ("authorization", expired_like.as_str())];
    let bad_400 = StatusCode::BAD_REQUEST;
    let bad_422 = StatusCode::UNPROCESSABLE_ENTITY;
    let unauth = StatusCode::UNAUTHORIZED;

    let cases: Vec<Case> = vec![
        (Method::GET, "/nope", &[], None, String::new(), StatusCode::NOT_FOUND, "route_not_found"),
        (Method::GET, "/v1/nope", &auth, None, String::new(), StatusCode::NOT_FOUND, "route_not_found"),
        (Method::PUT, "/v1/contacts", &auth, None, String::new(), StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        (Method::DELETE, "/healthz", &[], None, String::new(), StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        (Method::POST, "/v1/contacts", &auth, json, "{\"name\":".into(), bad_400, "malformed_json"),
        (Method::POST, "/v1/contacts", &auth, json, "not json".into(), bad_400, "malformed_json"),
        (Method::POST, "/v1/contacts", &auth, json, deep, bad_422, "invalid_body"),
        (
            Method::POST,
            "/v1/contacts",
            &auth,
            json,
            "{\"name\":1,\"email\":\"a@b.co\"}".into(),
            bad_422,
            "invalid_body",
        ),
        (Method::POST, "/v1/contacts", &auth, json, "[]".into(), bad_422, "invalid_body"),
        // serde reads a struct from an array of its fields; the API takes objects only.
        (
            Method::POST,
            "/v1/contacts",
            &auth,
            json,
            "[\"Ada\", \"ada@example.com\", null, null]".into(),
            bad_422,
            "invalid_body",
        ),
        (
            Method::POST,
            "/v1/contacts",
            &auth,
            json,
            "{\"name\":\"a\",\"email\":\"a@b.co\",\"admin\":true}".into(),
            bad_422,
            "invalid_body",
        ),
        (Method::POST, "/v1/contacts", &auth, json, "{\"email\":\"a@b.co\"}".into(), bad_422, "invalid_body"),
        (
            Method::POST,
            "/v1/contacts",
            &auth,
            json,
            "{\"name\":\"\",\"email\":\"a@b.co\"}".into(),
            bad_422,
            "validation_failed",
        ),
        (
            Method::POST,
            "/v1/contacts",
            &auth,
            json,
            "{\"name\":\"a\",\"email\":\"nope\"}".into(),
            bad_422,
            "validation_failed",
        ),
        (
            Method::POST,
            "/v1/contacts",
            &auth,
            json,
            "{\"name\":\"a\",\"email\":\"a@b.co\",\"phone\":\"call me\"}".into(),
            bad_422,
            "validation_failed",
        ),
        (
            Method::POST,
            "/v1/contacts",
            &auth,
            Some("text/plain"),
            "{}".into(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            Method::POST,
            "/v1/contacts",
            &auth,
            None,
            "{}".into(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (Method::POST, "/v1/contacts", &auth, json, big, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
        (
            Method::PATCH,
            "/v1/contacts/00000000-0000-0000-0000-000000000000",
            &auth,
            json,
            "{\"name\":null,\"x\":1}".into(),
            bad_422,
            "invalid_body",
        ),
        (Method::GET, "/v1/contacts/not-a-uuid", &auth, None, String::new(), bad_400, "invalid_path"),
        (Method::GET, "/v1/contacts/..%2F..%2Fetc%2Fpasswd", &auth, None, String::new(), bad_400, "invalid_path"),
        (Method::GET, "/v1/contacts?limit=0", &auth, None, String::new(), bad_400, "invalid_query"),
        (Method::GET, "/v1/contacts?limit=101", &auth, None, String::new(), bad_400, "invalid_query"),
        (Method::GET, "/v1/contacts?limit=abc", &auth, None, String::new(), bad_400, "invalid_query"),
        (Method::GET, "/v1/contacts?limit=-1", &auth, None, String::new(), bad_400, "invalid_query"),
        (Method::GET, "/v1/contacts?cursor=garbage", &auth, None, String::new(), bad_400, "invalid_cursor"),
        (Method::GET, "/v1/contacts?sort=name", &auth, None, String::new(), bad_400, "invalid_query"),
        (Method::GET, "/v1/contacts", &no_auth, None, String::new(), unauth, "missing_token"),
        (
            Method::GET,
            "/v1/contacts",
            &[("x-tenant", "alpha"), ("authorization", "Basic dXNlcjpwdw==")],
            None,
            String::new(),
            unauth,
            "invalid_authorization",
        ),
        (
            Method::GET,
            "/v1/contacts",
            &[("x-tenant", "alpha"), ("authorization", "Bearer")],
            None,
            String::new(),
            unauth,
            "invalid_authorization",
        ),
        (
            Method::GET,
            "/v1/contacts",
            &[("x-tenant", "alpha"), ("authorization", "Bearer garbage")],
            None,
            String::new(),
            unauth,
            "invalid_token",
        ),
        (
            Method::GET,
            "/v1/contacts",
            &[("x-tenant", "alpha"), ("authorization", "Bearer a.b.c")],
            None,
            String::new(),
            unauth,
            "invalid_token",
        ),
        (Method::GET, "/v1/me", &tampered, None, String::new(), unauth, "invalid_token"),
        (Method::POST, "/v1/auth/login", &no_auth, json, "{\"email\":\"a@b.co\"}".into(), bad_422, "invalid_body"),
        (
            Method::POST,
            "/v1/auth/login",
            &no_auth,
            json,
            "{\"email\":\"owner@alpha.test\",\"password\":7}".into(),
            bad_422,
            "invalid_body",
        ),
    ];
    for (method, path, headers, content_type, body, status, code) in cases {
        let r = app.send_raw(method.clone(), path, headers, content_type, Body::from(body)).await;
        assert!(!r.status.is_server_error(), "{method} {path}: {} {}", r.status, r.body);
        assert!(
            r.status == status && r.body["code"] == code,
            "{method} {path}: expected {status} {code}, got {} {}",
            r.status,
            r.body
        );
        r.assert_problem(status, code);
        assert!(r.headers.contains_key("x-content-type-options"), "{method} {path}: security headers on errors too");
    }
}

#[tokio::test]
async fn an_unauthorized_answer_says_how_to_authenticate() {
    let app = spawn_app().await;
    app.create_tenant("alpha").await;
    let r = app.call(Method::GET, "/v1/contacts", &[("x-tenant", "alpha")], None).await;
    r.assert_problem(StatusCode::UNAUTHORIZED, "missing_token");
    assert_eq!(r.headers.get("www-authenticate").and_then(|v| v.to_str().ok()), Some("Bearer"));
}
