//! The users API: create with a role, change role or status, remove; e-mails unique per
//! tenant case-insensitively; the last active owner stays; only owners touch owners.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::spawn_app;

#[tokio::test]
async fn users_round_trip_through_every_verb() {
    let app = spawn_app().await;
    let t = app.create_tenant("alpha").await;
    let owner = app.owner_token(&t).await;
    let body = json!({"email": "Ann@Alpha.io", "password": "ann's password", "role": "member"});
    let created = app.call_as(&owner, "alpha", Method::POST, "/v1/users", Some(body)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!((&created.body["role"], &created.body["status"]), (&json!("member"), &json!("active")));
    assert!(created.body.get("password_hash").is_none() && created.body.get("password").is_none());
    let path = format!("/v1/users/{}", created.body["id"].as_str().expect("id"));

    let list = app.call_as(&owner, "alpha", Method::GET, "/v1/users?limit=1", None).await;
    assert_eq!(list.body["items"][0]["email"], t.owner_email, "creation order: the owner first");
    let cursor = list.body["next_cursor"].as_str().expect("a second page");
    let next = app.call_as(&owner, "alpha", Method::GET, &format!("/v1/users?limit=1&cursor={cursor}"), None).await;
    assert_eq!((&next.body["items"][0]["email"], &next.body["next_cursor"]), (&json!("Ann@Alpha.io"), &Value::Null));

    let patched = app.call_as(&owner, "alpha", Method::PATCH, &path, Some(json!({"role": "manager"}))).await;
    assert_eq!((patched.status, &patched.body["role"]), (StatusCode::OK, &json!("manager")), "{}", patched.body);
    assert_eq!(app.login("alpha", "ann@alpha.io", "ann's password").await.status, StatusCode::OK);
    let deactivated = app.call_as(&owner, "alpha", Method::PATCH, &path, Some(json!({"status": "deactivated"}))).await;
    assert_eq!(deactivated.body["status"], "deactivated");
    let refused = app.login("alpha", "ann@alpha.io", "ann's password").await;
    refused.assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");

    assert_eq!(app.call_as(&owner, "alpha", Method::DELETE, &path, None).await.status, StatusCode::NO_CONTENT);
    app.call_as(&owner, "alpha", Method::GET, &path, None).await.assert_problem(StatusCode::NOT_FOUND, "not_found");
    app.call_as(&owner, "alpha", Method::DELETE, &path, None).await.assert_problem(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn emails_are_unique_per_tenant_case_insensitively_and_free_across_tenants() {
    let app = spawn_app().await;
    let a = app.create_tenant("alpha").await;
    let b = app.create_tenant("bravo").await;
    let (owner_a, owner_b) = (app.owner_token(&a).await, app.owner_token(&b).await);
    let create = |token: &str, tenant: &str, email: &str, password: &str| {
        let body = json!({"email": email, "password": password, "role": "member"});
        let (app, token, tenant) = (&app, token.to_string(), tenant.to_string());
        async move { app.call_as(&token, &tenant, Method::POST, "/v1/users", Some(body)).await }
    };
    assert_eq!(create(&owner_a, "alpha", "sam@example.com", "alpha's sam").await.status, StatusCode::CREATED);
    for twin in ["sam@example.com", "SAM@Example.COM", " sam@example.com "] {
        create(&owner_a, "alpha", twin, "another pw").await.assert_problem(StatusCode::CONFLICT, "email_taken");
    }
    // The same address in another tenant is another user, with its own password.
    assert_eq!(create(&owner_b, "bravo", "Sam@example.com", "bravo's sam").await.status, StatusCode::CREATED);
    assert_eq!(app.login("alpha", "sam@example.com", "alpha's sam").await.status, StatusCode::OK);
    assert_eq!(app.login("bravo", "sam@example.com", "bravo's sam").await.status, StatusCode::OK);
    app.login("bravo", "sam@example.com", "alpha's sam")
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
}

#[tokio::test]
async fn the_last_active_owner_cannot_be_demoted_deactivated_or_removed() {
    let app = spawn_app().await;
    let t = app.create_tenant("alpha").await;
    let owner = app.owner_token(&t).await;
    let me = app.call_as(&owner, "alpha", Method::GET, "/v1/me", None).await;
    let own_path = format!("/v1/users/{}", me.body["id"].as_str().expect("id"));
    let attempts = [
        (Method::PATCH, Some(json!({"role": "admin"}))),
        (Method::PATCH, Some(json!({"status": "deactivated"}))),
        (Method::PATCH, Some(json!({"role": "member", "status": "deactivated"}))),
        (Method::DELETE, None),
    ];
    for (method, body) in attempts.clone() {
        let r = app.call_as(&owner, "alpha", method.clone(), &own_path, body).await;
        r.assert_problem(StatusCode::CONFLICT, "last_owner");
    }
    // A deactivated second owner does not count as an owner.
    let second = app.create_user(&t, "owner").await;
    let second_path = format!("/v1/users/{}", second.id);
    let r = app.call_as(&owner, "alpha", Method::PATCH, &second_path, Some(json!({"status": "deactivated"}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    for (method, body) in attempts.clone() {
        let r = app.call_as(&owner, "alpha", method.clone(), &own_path, body).await;
        r.assert_problem(StatusCode::CONFLICT, "last_owner");
    }
    // With another active owner, the first may step down.
    let r = app.call_as(&owner, "alpha", Method::PATCH, &second_path, Some(json!({"status": "active"}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app.call_as(&owner, "alpha", Method::PATCH, &own_path, Some(json!({"role": "admin"}))).await;
    assert_eq!((r.status, &r.body["role"]), (StatusCode::OK, &json!("admin")), "{}", r.body);
    let second_owner = app.login("alpha", &second.email, &second.password).await;
    let token = second_owner.body["access_token"].as_str().expect("token");
    let r = app.call_as(token, "alpha", Method::DELETE, &second_path, None).await;
    r.assert_problem(StatusCode::CONFLICT, "last_owner");
}

#[tokio::test]
async fn only_owners_create_change_or_remove_owners() {
    let app = spawn_app().await;
    let t = app.create_tenant("alpha").await;
    let admin = app.create_user(&t, "admin").await;
    let member = app.create_user(&t, "member").await;
    let owner_me = app.call_as(&app.owner_token(&t).await, "alpha", Method::GET, "/v1/me", None).await;
    let owner_path = format!("/v1/users/{}", owner_me.body["id"].as_str().expect("id"));
    let member_path = format!("/v1/users/{}", member.id);
    let new_owner = json!({"email": "boss@alpha.io", "password": "long enough", "role": "owner"});
    let attempts = [
        (Method::POST, "/v1/users".to_string(), Some(new_owner)),
        (Method::PATCH, member_path.clone(), Some(json!({"role": "owner"}))),
        (Method::PATCH, owner_path.clone(), Some(json!({"status": "deactivated"}))),
        (Method::DELETE, owner_path.clone(), None),
    ];
    for (method, path, body) in attempts {
        let r = app.call_as(&admin.access_token, "alpha", method.clone(), &path, body).await;
        r.assert_problem(StatusCode::FORBIDDEN, "forbidden");
    }
    // What admins may do: manage everyone else.
    let r =
        app.call_as(&admin.access_token, "alpha", Method::PATCH, &member_path, Some(json!({"role": "manager"}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn bad_user_input_is_a_4xx_problem() {
    let app = spawn_app().await;
    let t = app.create_tenant("alpha").await;
    let owner = app.owner_token(&t).await;
    let cases = [
        (
            Method::POST,
            "/v1/users",
            json!({"email": "x@y.io", "password": "long enough", "role": "god"}),
            422,
            "invalid_body",
        ),
        (
            Method::POST,
            "/v1/users",
            json!({"email": "x@y.io", "password": "short", "role": "member"}),
            422,
            "validation_failed",
        ),
        (
            Method::POST,
            "/v1/users",
            json!({"email": "nope", "password": "long enough", "role": "member"}),
            422,
            "validation_failed",
        ),
        (Method::POST, "/v1/users", json!({"email": "x@y.io", "role": "member"}), 422, "invalid_body"),
        (Method::PATCH, "/v1/users/not-a-uuid", json!({"role": "admin"}), 400, "invalid_path"),
        (
            Method::PATCH,
            "/v1/users/0190a0a0-0000-7000-8000-000000000000",
            json!({"status": "gone"}),
            422,
            "invalid_body",
        ),
        (Method::PATCH, "/v1/users/0190a0a0-0000-7000-8000-000000000000", json!({"role": "admin"}), 404, "not_found"),
        (Method::POST, "/v1/me/password", json!({"new_password": "whatever123"}), 422, "invalid_body"),
    ];
    for (method, path, body, status, code) in cases {
        let r = app.call_as(&owner, "alpha", method.clone(), path, Some(body)).await;
        r.assert_problem(StatusCode::from_u16(status).expect("status"), code);
    }
}

#[tokio::test]
async fn tenant_b_cannot_read_change_or_remove_tenant_a_users() {
    let app = spawn_app().await;
    let a = app.create_tenant("alpha").await;
    let b = app.create_tenant("bravo").await;
    let alpha_member = app.create_user(&a, "member").await;
    let bravo_owner = app.owner_token(&b).await;
    let theirs = format!("/v1/users/{}", alpha_member.id);
    let missing = format!("/v1/users/{}", uuid::Uuid::now_v7());
    let patch = Some(json!({"status": "deactivated"}));
    for (method, body) in [(Method::GET, None), (Method::PATCH, patch), (Method::DELETE, None)] {
        let r = app.call_as(&bravo_owner, "bravo", method.clone(), &theirs, body.clone()).await;
        let nothing = app.call_as(&bravo_owner, "bravo", method.clone(), &missing, body).await;
        r.assert_problem(StatusCode::NOT_FOUND, "not_found");
        assert_eq!(r.body["detail"], nothing.body["detail"], "{method}");
    }
    let list = app.call_as(&bravo_owner, "bravo", Method::GET, "/v1/users", None).await;
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(1), "only bravo's owner: {}", list.body);
    assert_eq!(app.login("alpha", &alpha_member.email, &alpha_member.password).await.status, StatusCode::OK);
}
