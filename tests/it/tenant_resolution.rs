//! Tenant resolution rules, table-driven: subdomain, custom domain and X-Tenant; case, port
//! and trailing dot; ambiguous, unknown, deleted, suspended and missing tenants.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::json;
use sqlx::Executor;

use crate::support::{TestApp, TestTenant, spawn_app};

enum Expect {
    Tenant(&'static str),
    Problem(StatusCode, &'static str),
}

async fn login(app: &TestApp, host: &str, header: Option<&str>, who: &TestTenant) -> crate::support::TestResponse {
    let mut headers = vec![("host", host)];
    if let Some(h) = header {
        headers.push(("x-tenant", h));
    }
    let body = json!({"email": who.owner_email, "password": who.owner_password});
    app.call(Method::POST, "/v1/auth/login", &headers, Some(body)).await
}

#[tokio::test]
async fn hosts_and_headers_resolve_as_designed() {
    use Expect::*;
    let app = spawn_app().await;
    let alpha = app.create_tenant_with_domains("alpha", vec!["crm.alpha.example".into()]).await;
    let bravo = app.create_tenant("bravo").await;
    let charlie = app.create_tenant("charlie").await;
    let delta = app.create_tenant("delta").await;
    let mut su = app.superuser_connection().await;
    su.execute("UPDATE tenants SET status = 'suspended' WHERE slug = 'charlie'; UPDATE tenants SET status = 'deleted' WHERE slug = 'delta'")
        .await
        .expect("statuses");

    let bad_request = StatusCode::BAD_REQUEST;
    let not_found = StatusCode::NOT_FOUND;
    let table: Vec<(&str, Option<&str>, Expect)> = vec![
        ("alpha.localhost", None, Tenant("alpha")),
        ("ALPHA.LocalHost:8080", None, Tenant("alpha")),
        ("alpha.localhost.", None, Tenant("alpha")),
        ("alpha.localhost.:8080", None, Tenant("alpha")),
        ("crm.alpha.example", None, Tenant("alpha")),
        ("CRM.Alpha.Example.:443", None, Tenant("alpha")),
        ("localhost:8080", Some("alpha"), Tenant("alpha")),
        ("localhost", Some("ALPHA"), Tenant("alpha")),
        ("127.0.0.1:8080", Some("bravo"), Tenant("bravo")),
        ("[::1]:8080", Some("bravo"), Tenant("bravo")),
        ("alpha.localhost", Some("alpha"), Tenant("alpha")),
        ("crm.alpha.example", Some("alpha"), Tenant("alpha")),
        ("unregistered.example.com", Some("bravo"), Tenant("bravo")),
        ("alpha.localhost", Some("bravo"), Problem(bad_request, "tenant_ambiguous")),
        ("crm.alpha.example", Some("bravo"), Problem(bad_request, "tenant_ambiguous")),
        ("alpha.localhost", Some("nobody"), Problem(bad_request, "tenant_ambiguous")),
        ("localhost", None, Problem(bad_request, "tenant_required")),
        ("unregistered.example.com", None, Problem(bad_request, "tenant_required")),
        ("nobody.localhost", None, Problem(not_found, "tenant_not_found")),
        ("a.b.localhost", None, Problem(not_found, "tenant_not_found")),
        ("localhost", Some("nobody"), Problem(not_found, "tenant_not_found")),
        ("localhost", Some("'; DROP TABLE tenants; --"), Problem(not_found, "tenant_not_found")),
        ("localhost", Some(""), Problem(not_found, "tenant_not_found")),
        ("delta.localhost", None, Problem(not_found, "tenant_not_found")),
        ("localhost", Some("delta"), Problem(not_found, "tenant_not_found")),
        ("charlie.localhost", None, Problem(StatusCode::FORBIDDEN, "tenant_suspended")),
        ("localhost", Some("charlie"), Problem(StatusCode::FORBIDDEN, "tenant_suspended")),
    ];
    let owners = [("alpha", &alpha), ("bravo", &bravo), ("charlie", &charlie), ("delta", &delta)];
    for (host, header, expect) in table {
        match expect {
            Tenant(slug) => {
                let who = owners.iter().find(|(s, _)| *s == slug).map(|(_, t)| *t).expect("owner");
                let r = login(&app, host, header, who).await;
                assert_eq!(r.status, StatusCode::OK, "{host} / {header:?}: {}", r.body);
            }
            Problem(status, code) => {
                let r = login(&app, host, header, &alpha).await;
                assert!(r.status == status && r.body["code"] == code, "{host} / {header:?}: {} {}", r.status, r.body);
                r.assert_problem(status, code);
            }
        }
    }
    // A deleted tenant is indistinguishable from one that never existed.
    let deleted = login(&app, "delta.localhost", None, &delta).await;
    let unknown = login(&app, "nobody.localhost", None, &delta).await;
    assert_eq!(deleted.body["detail"], unknown.body["detail"]);
}

#[tokio::test]
async fn a_registry_change_reaches_the_resolution_cache_at_once() {
    let app = spawn_app().await;
    let alpha = app.create_tenant("alpha").await;
    let token = app.owner_token(&alpha).await; // alpha is now cached
    let mut su = app.superuser_connection().await;
    su.execute("UPDATE tenants SET status = 'suspended' WHERE slug = 'alpha'").await.expect("suspend");
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let r = app.call_as(&token, "alpha", Method::GET, "/v1/me", None).await;
        if r.status == StatusCode::FORBIDDEN {
            r.assert_problem(StatusCode::FORBIDDEN, "tenant_suspended");
            break;
        }
        assert!(Instant::now() < deadline, "suspension not seen within 3 s (cache TTL is 30 s): {}", r.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
