//! Isolation through HTTP with two tenants: another tenant's contact answers exactly like a
//! missing one, lists never mix, and a token crosses no tenant.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::support::{TestApp, TestTenant, spawn_app};

struct World {
    app: TestApp,
    alpha: TestTenant,
    alpha_token: String,
    bravo_token: String,
    alpha_contact: String,
}

async fn world() -> World {
    let app = spawn_app().await;
    let alpha = app.create_tenant("alpha").await;
    let bravo = app.create_tenant("bravo").await;
    let alpha_token = app.owner_token(&alpha).await;
    let bravo_token = app.owner_token(&bravo).await;
    let created = app
        .call_as(
            &alpha_token,
            "alpha",
            Method::POST,
            "/v1/contacts",
            Some(json!({"name": "Secret", "email": "s@alpha.io"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let alpha_contact = created.body["id"].as_str().expect("id").to_string();
    app.call_as(
        &bravo_token,
        "bravo",
        Method::POST,
        "/v1/contacts",
        Some(json!({"name": "Mine", "email": "m@bravo.io"})),
    )
    .await;
    World { app, alpha, alpha_token, bravo_token, alpha_contact }
}

#[tokio::test]
async fn tenant_b_cannot_read_change_or_delete_tenant_a_contact() {
    let w = world().await;
    let path = format!("/v1/contacts/{}", w.alpha_contact);
    let missing = format!("/v1/contacts/{}", uuid::Uuid::now_v7());
    let patch = Some(json!({"name": "pwned"}));
    for (method, body) in [(Method::GET, None), (Method::PATCH, patch.clone()), (Method::DELETE, None)] {
        let theirs = w.app.call_as(&w.bravo_token, "bravo", method.clone(), &path, body.clone()).await;
        let nothing = w.app.call_as(&w.bravo_token, "bravo", method.clone(), &missing, body).await;
        theirs.assert_problem(StatusCode::NOT_FOUND, "not_found");
        assert_eq!(theirs.body["detail"], nothing.body["detail"], "{method}: must answer exactly like a missing id");
    }
    // A's contact is untouched.
    let still = w.app.call_as(&w.alpha_token, "alpha", Method::GET, &path, None).await;
    assert_eq!((still.status, &still.body["name"]), (StatusCode::OK, &json!("Secret")));
}

#[tokio::test]
async fn lists_show_only_the_callers_tenant() {
    let w = world().await;
    let bravo = w.app.call_as(&w.bravo_token, "bravo", Method::GET, "/v1/contacts", None).await;
    let names: Vec<&str> =
        bravo.body["items"].as_array().expect("items").iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, vec!["Mine"]);
    // A cursor taken from A's ids does not reveal A's rows either.
    let probe = format!("/v1/contacts?cursor={}", uuid::Uuid::nil());
    let page = w.app.call_as(&w.bravo_token, "bravo", Method::GET, &probe, None).await;
    assert!(page.body["items"].as_array().expect("items").iter().all(|c| c["name"] == "Mine"));
}

#[tokio::test]
async fn a_token_for_one_tenant_is_refused_on_another() {
    let w = world().await;
    // A's token on B, by header and by host.
    let by_header = w.app.call_as(&w.alpha_token, "bravo", Method::GET, "/v1/contacts", None).await;
    by_header.assert_problem(StatusCode::FORBIDDEN, "tenant_mismatch");
    let auth = format!("Bearer {}", w.alpha_token);
    let by_host =
        w.app.call(Method::GET, "/v1/me", &[("host", "bravo.localhost:8080"), ("authorization", &auth)], None).await;
    by_host.assert_problem(StatusCode::FORBIDDEN, "tenant_mismatch");
    // Writing with A's token on B creates nothing in B.
    let write = w
        .app
        .call_as(&w.alpha_token, "bravo", Method::POST, "/v1/contacts", Some(json!({"name": "x", "email": "x@y.io"})))
        .await;
    write.assert_problem(StatusCode::FORBIDDEN, "tenant_mismatch");
    let bravo = w.app.call_as(&w.bravo_token, "bravo", Method::GET, "/v1/contacts", None).await;
    assert_eq!(bravo.body["items"].as_array().map(Vec::len), Some(1));
    // And B's credentials do not log in on A.
    let login = w
        .app
        .call(
            Method::POST,
            "/v1/auth/login",
            &[("x-tenant", &w.alpha.slug)],
            Some(json!({"email": "owner@bravo.test", "password": "whatever-it-is"})),
        )
        .await;
    login.assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
}
