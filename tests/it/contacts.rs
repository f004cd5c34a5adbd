//! The contacts API for one tenant: create, read, page, change, delete; and login.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::support::spawn_app;

#[tokio::test]
async fn contacts_round_trip_through_every_verb() {
    let app = spawn_app().await;
    let t = app.create_tenant("alpha").await;
    let token = app.owner_token(&t).await;
    let created = app
        .call_as(
            &token,
            "alpha",
            Method::POST,
            "/v1/contacts",
            Some(json!({"name": " Ada ", "email": "ada@example.com", "phone": "+44 20 7946 0958"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["name"], "Ada", "names are trimmed");
    let id = created.body["id"].as_str().expect("id").to_string();
    let path = format!("/v1/contacts/{id}");

    let got = app.call_as(&token, "alpha", Method::GET, &path, None).await;
    assert_eq!((got.status, &got.body["email"]), (StatusCode::OK, &json!("ada@example.com")));

    let patched =
        app.call_as(&token, "alpha", Method::PATCH, &path, Some(json!({"name": "Ada Lovelace", "phone": null}))).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["name"], "Ada Lovelace");
    assert_eq!(patched.body["phone"], serde_json::Value::Null);
    assert_eq!(patched.body["email"], "ada@example.com", "absent fields are kept");

    let deleted = app.call_as(&token, "alpha", Method::DELETE, &path, None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = app.call_as(&token, "alpha", Method::GET, &path, None).await;
    gone.assert_problem(StatusCode::NOT_FOUND, "not_found");
    let again = app.call_as(&token, "alpha", Method::DELETE, &path, None).await;
    again.assert_problem(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn listing_pages_by_cursor_in_creation_order() {
    let app = spawn_app().await;
    let t = app.create_tenant("alpha").await;
    let token = app.owner_token(&t).await;
    let mut made = Vec::new();
    for i in 0..7 {
        let r = app
            .call_as(
                &token,
                "alpha",
                Method::POST,
                "/v1/contacts",
                Some(json!({"name": format!("c{i}"), "email": format!("c{i}@x.io")})),
            )
            .await;
        made.push(r.body["id"].as_str().expect("id").to_string());
    }
    let mut seen = Vec::new();
    let mut path = "/v1/contacts?limit=3".to_string();
    loop {
        let page = app.call_as(&token, "alpha", Method::GET, &path, None).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let items = page.body["items"].as_array().expect("items");
        assert!(items.len() <= 3);
        seen.extend(items.iter().map(|c| c["id"].as_str().expect("id").to_string()));
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/contacts?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, made);
    let default_page = app.call_as(&token, "alpha", Method::GET, "/v1/contacts", None).await;
    assert_eq!(default_page.body["items"].as_array().map(Vec::len), Some(7));
    assert_eq!(default_page.body["next_cursor"], serde_json::Value::Null);
}

#[tokio::test]
async fn login_answers_the_same_for_unknown_email_and_wrong_password() {
    let app = spawn_app().await;
    let t = app.create_tenant("alpha").await;
    let attempt = |email: String, password: String| {
        let app = &app;
        async move {
            app.call(
                Method::POST,
                "/v1/auth/login",
                &[("x-tenant", "alpha")],
                Some(json!({"email": email, "password": password})),
            )
            .await
        }
    };
    let wrong_password = attempt(t.owner_email.clone(), "not the password".into()).await;
    let unknown_email = attempt("nobody@alpha.test".into(), t.owner_password.clone()).await;
    for r in [&wrong_password, &unknown_email] {
        r.assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    assert_eq!(wrong_password.body["detail"], unknown_email.body["detail"]);
    // E-mail matching is case-insensitive; the response carries what the contract says.
    let ok = attempt(t.owner_email.to_uppercase(), t.owner_password.clone()).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body["token_type"], "Bearer");
    assert_eq!(ok.body["expires_in"], 900);
    let me = app.call_as(ok.body["access_token"].as_str().expect("token"), "alpha", Method::GET, "/v1/me", None).await;
    assert_eq!(
        (me.status, &me.body["email"], &me.body["role"]),
        (StatusCode::OK, &json!(t.owner_email), &json!("owner"))
    );
}

#[tokio::test]
async fn service_endpoints_answer() {
    let app = spawn_app().await;
    assert_eq!(app.call(Method::GET, "/healthz", &[], None).await.status, StatusCode::OK);
    let ready = app.call(Method::GET, "/readyz", &[], None).await;
    assert_eq!((ready.status, &ready.body["status"]), (StatusCode::OK, &json!("ready")));
    let spec = app.call(Method::GET, "/openapi.json", &[], None).await;
    assert_eq!(spec.body["openapi"], "3.1.0");
    for path in ["/v1/contacts", "/v1/contacts/{id}", "/v1/auth/login", "/v1/me"] {
        assert!(spec.body["paths"][path].is_object(), "{path} missing from the OpenAPI document");
    }
    let docs = app.call(Method::GET, "/docs/", &[], None).await;
    assert_eq!(docs.status, StatusCode::OK);
    assert!(docs.content_type().starts_with("text/html"));
}
