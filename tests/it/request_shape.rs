//! Requests whose meaning is ambiguous or whose bytes PostgreSQL cannot store are answered
//! with 4xx problem documents: never the first header winning, never a 500.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::json;

use crate::support::{TestApp, create_operator, spawn_app};

/// A request with headers given as a list, so that a name may appear twice.
fn request(method: Method, uri: &str, headers: &[(&str, &str)], body: Option<String>) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(body.map(Body::from).unwrap_or_default()).expect("request")
}

async fn login_body(app: &TestApp) -> String {
    let t = app.create_tenant("acme").await;
    app.create_tenant("globex").await;
    json!({"email": t.owner_email, "password": t.owner_password}).to_string()
}

#[tokio::test]
async fn ambiguous_requests_answer_400_and_unknown_content_codings_415() {
    let app = spawn_app().await;
    let login = login_body(&app).await;
    let json = ("content-type", "application/json");
    let cases: Vec<(&str, Request<Body>, StatusCode, &str)> = vec![
        (
            "two Host headers",
            request(
                Method::POST,
                "/v1/auth/login",
                &[("host", "acme.localhost"), ("host", "globex.localhost"), json],
                Some(login.clone()),
            ),
            StatusCode::BAD_REQUEST,
            "ambiguous_request",
        ),
        (
            "two X-Tenant headers",
            request(
                Method::POST,
                "/v1/auth/login",
                &[("host", "localhost"), ("x-tenant", "acme"), ("x-tenant", "globex"), json],
                Some(login.clone()),
            ),
            StatusCode::BAD_REQUEST,
            "ambiguous_request",
        ),
        (
            "two Authorization headers",
            request(
                Method::GET,
                "/v1/contacts",
                &[("host", "acme.localhost"), ("authorization", "Bearer a"), ("authorization", "Bearer b")],
                None,
            ),
            StatusCode::BAD_REQUEST,
            "ambiguous_request",
        ),
        (
            "two Content-Type headers",
            request(
                Method::POST,
                "/v1/auth/login",
                &[("host", "acme.localhost"), json, ("content-type", "text/plain")],
                Some(login.clone()),
            ),
            StatusCode::BAD_REQUEST,
            "ambiguous_request",
        ),
        (
            "an absolute-form target naming another host",
            request(
                Method::POST,
                "http://globex.localhost/v1/auth/login",
                &[("host", "acme.localhost"), json],
                Some(login.clone()),
            ),
            StatusCode::BAD_REQUEST,
            "ambiguous_request",
        ),
        (
            "a gzip body",
            request(
                Method::POST,
                "/v1/auth/login",
                &[("host", "acme.localhost"), ("content-encoding", "gzip"), json],
                Some(login.clone()),
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_content_encoding",
        ),
        (
            "a Host that is no host name",
            request(Method::POST, "/v1/auth/login", &[("host", "acme.localhost/../x"), json], Some(login.clone())),
            StatusCode::BAD_REQUEST,
            "invalid_host",
        ),
    ];
    for (case, request, status, code) in cases {
        let r = app.send(request).await;
        assert_eq!(r.status, status, "{case}: {}", r.body);
        r.assert_problem(status, code);
    }
    // What is not ambiguous still works: an absolute-form target that agrees with Host, and an
    // explicit identity coding.
    for (case, request) in [
        (
            "absolute form, same host",
            request(
                Method::POST,
                "http://ACME.localhost:8080/v1/auth/login",
                &[("host", "acme.localhost:8080"), json],
                Some(login.clone()),
            ),
        ),
        (
            "identity coding",
            request(
                Method::POST,
                "/v1/auth/login",
                &[("host", "acme.localhost"), ("content-encoding", "identity"), json],
                Some(login.clone()),
            ),
        ),
    ] {
        let r = app.send(request).await;
        assert_eq!(r.status, StatusCode::OK, "{case}: {}", r.body);
    }
}

#[tokio::test]
async fn nul_bytes_in_bound_strings_answer_4xx_and_a_failed_login_is_still_recorded() {
    let app = spawn_app().await;
    let t = app.create_tenant("acme").await;
    let token = app.owner_token(&t).await;
    let op = create_operator(&app, "ops@rowguard.test").await;

    let r = app.login("acme", "owner\u{0}@acme.test", &t.owner_password).await;
    r.assert_problem(StatusCode::BAD_REQUEST, "invalid_text");
    let r = app.login("acme", &t.owner_email, "pass\u{0}word").await;
    r.assert_problem(StatusCode::BAD_REQUEST, "invalid_text");
    let mut su = app.superuser_connection().await;
    let recorded: Vec<String> = sqlx::query_scalar(
        "SELECT details ->> 'email' FROM audit_events WHERE tenant_id = $1 AND action = 'auth.login_failed' ORDER BY seq",
    )
    .bind(t.id)
    .fetch_all(&mut su)
    .await
    .expect("events");
    assert_eq!(recorded, ["owner\u{fffd}@acme.test", t.owner_email.as_str()], "both failed logins are in the log");

    let body = json!({"email": format!("{}\u{0}", op.email), "password": op.password});
    let r = app.call(Method::POST, "/platform/v1/auth/login", &[], Some(body)).await;
    r.assert_problem(StatusCode::BAD_REQUEST, "invalid_text");

    for path in [
        "/v1/audit-events?action=a%00b",
        "/v1/audit-events?resource_type=%00",
        "/v1/audit-events?resource_id=x%00y&outcome=success",
    ] {
        let r = app.call_as(&token, "acme", Method::GET, path, None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.body);
        r.assert_problem(StatusCode::BAD_REQUEST, "invalid_text");
    }
    // The service is healthy afterwards.
    let r = app.call_as(&token, "acme", Method::GET, "/v1/audit-events?action=auth.login", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}
