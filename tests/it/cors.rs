//! Per-tenant CORS: a tenant's listed origins get preflights and readable answers; the same
//! origin on another tenant gets neither, and an unlisted origin gets nothing anywhere.

use axum::http::{Method, StatusCode};
use sqlx::Executor;

use crate::support::{TestResponse, spawn_app};

fn allow_origin(r: &TestResponse) -> Option<&str> {
    r.headers.get("access-control-allow-origin").and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn an_origin_allowed_for_one_tenant_is_not_allowed_on_another() {
    let app = spawn_app().await;
    let alpha = app.create_tenant("alpha").await;
    app.create_tenant("bravo").await;
    let mut su = app.superuser_connection().await;
    su.execute("UPDATE tenants SET cors_allowed_origins = '{https://app.alpha.example}' WHERE slug = 'alpha'")
        .await
        .expect("origins");
    let token = app.owner_token(&alpha).await;
    let origin = "https://app.alpha.example";
    let preflight = |host: &'static str, origin: &'static str| {
        let app = &app;
        async move {
            app.call(
                Method::OPTIONS,
                "/v1/contacts",
                &[
                    ("host", host),
                    ("origin", origin),
                    ("access-control-request-method", "POST"),
                    ("access-control-request-headers", "authorization, content-type"),
                ],
                None,
            )
            .await
        }
    };

    // Preflights: alpha's origin on alpha only, by host (a preflight cannot carry X-Tenant).
    let r = preflight("alpha.localhost:8080", origin).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(allow_origin(&r), Some(origin));
    let allowed_headers = r.headers.get("access-control-allow-headers").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(allowed_headers.contains("authorization") && allowed_headers.contains("content-type"));
    assert!(
        r.headers.get("access-control-allow-methods").is_some_and(|v| v.to_str().is_ok_and(|m| m.contains("POST")))
    );
    assert!(r.headers.contains_key("x-content-type-options"), "security headers on preflights too");
    for (host, origin) in [
        ("bravo.localhost:8080", "https://app.alpha.example"),
        ("alpha.localhost:8080", "https://evil.example"),
        ("alpha.localhost:8080", "null"),
        ("alpha.localhost:8080", "https://app.alpha.example.evil.example"),
        ("nobody.localhost:8080", "https://app.alpha.example"),
        ("localhost:8080", "https://app.alpha.example"),
    ] {
        let r = preflight(host, origin).await;
        r.assert_problem(StatusCode::FORBIDDEN, "cors_origin_not_allowed");
        assert_eq!(allow_origin(&r), None, "{host} {origin}");
    }

    // Actual requests: the allow header only where the tenant lists the origin, on errors too.
    let auth = format!("Bearer {token}");
    let r = app
        .call(
            Method::GET,
            "/v1/contacts",
            &[("host", "alpha.localhost"), ("origin", origin), ("authorization", &auth)],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(allow_origin(&r), Some(origin));
    assert!(
        r.headers
            .get("access-control-expose-headers")
            .is_some_and(|v| v.to_str().is_ok_and(|e| e.contains("retry-after")))
    );
    let r = app.call(Method::GET, "/v1/contacts", &[("host", "alpha.localhost"), ("origin", origin)], None).await;
    r.assert_problem(StatusCode::UNAUTHORIZED, "missing_token");
    assert_eq!(allow_origin(&r), Some(origin), "a browser must be able to read the error");
    let r = app.call(Method::GET, "/v1/contacts", &[("host", "bravo.localhost"), ("origin", origin)], None).await;
    r.assert_problem(StatusCode::UNAUTHORIZED, "missing_token");
    assert_eq!(allow_origin(&r), None);
    assert!(r.headers.get_all("vary").iter().any(|v| v == "origin"));

    // Removing the origin applies without a restart (the registry's NOTIFY drops the cache).
    su.execute("UPDATE tenants SET cors_allowed_origins = '{}' WHERE slug = 'alpha'").await.expect("origins");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let r = preflight("alpha.localhost:8080", origin).await;
        if r.status == StatusCode::FORBIDDEN {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the removed origin is still allowed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
