//! Sessions: refresh tokens rotate on every use, a reused one ends its whole family, logout
//! ends one login and logout-all every one; authorization changes count on the next request,
//! on every instance (OWASP ASVS 8.3.2).

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::support::{TestApp, TestResponse, spawn_app};

async fn refresh(app: &TestApp, tenant: &str, token: &str) -> TestResponse {
    app.call(Method::POST, "/v1/auth/refresh", &[("x-tenant", tenant)], Some(json!({"refresh_token": token}))).await
}

fn refresh_token(r: &TestResponse) -> String {
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["refresh_token"].as_str().expect("refresh_token").to_string()
}

async fn me(app: &TestApp, tenant: &str, access: &str) -> TestResponse {
    app.call_as(access, tenant, Method::GET, "/v1/me", None).await
}

#[tokio::test]
async fn a_refresh_token_rotates_on_every_use_and_is_stored_only_as_a_hash() {
    let app = spawn_app().await;
    let t = app.create_tenant("alpha").await;
    let login = app.login("alpha", &t.owner_email, &t.owner_password).await;
    let first = refresh_token(&login);
    assert_eq!(login.body["expires_in"], 900);
    let second = refresh_token(&refresh(&app, "alpha", &first).await);
    let renewed = refresh(&app, "alpha", &second).await;
    let third = refresh_token(&renewed);
    assert!(first != second && second != third, "every refresh hands out a new token");
    let access = renewed.body["access_token"].as_str().expect("access");
    assert_eq!(me(&app, "alpha", access).await.status, StatusCode::OK);

    // The database holds hashes, never the tokens, all in one family.
    let mut db = app.superuser_connection().await;
    let rows: Vec<(Vec<u8>, uuid::Uuid)> =
        sqlx::query_as("SELECT token_hash, family_id FROM refresh_tokens").fetch_all(&mut db).await.expect("rows");
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|(_, f)| *f == rows[0].1), "one login, one family");
    for token in [&first, &second, &third] {
        assert!(rows.iter().all(|(h, _)| h.as_slice() != token.as_bytes() && *h != hex_of(token)));
    }
}

fn hex_of(token: &str) -> Vec<u8> {
    token.strip_prefix("rgr_").map(|h| h.as_bytes().to_vec()).unwrap_or_default()
}

#[tokio::test]
async fn reusing_a_rotated_refresh_token_revokes_its_whole_family_and_records_it() {
    let app = spawn_app().await;
    let t = app.create_tenant("alpha").await;
    let stolen = refresh_token(&app.login("alpha", &t.owner_email, &t.owner_password).await);
    let other_login = refresh_token(&app.login("alpha", &t.owner_email, &t.owner_password).await);
    let legit = refresh_token(&refresh(&app, "alpha", &stolen).await);

    refresh(&app, "alpha", &stolen).await.assert_problem(StatusCode::UNAUTHORIZED, "refresh_token_reused");
    // The successor the legitimate client holds is dead too: the family is gone.
    refresh(&app, "alpha", &legit).await.assert_problem(StatusCode::UNAUTHORIZED, "invalid_refresh_token");
    // Another login of the same user is another family, untouched.
    assert_eq!(refresh(&app, "alpha", &other_login).await.status, StatusCode::OK);

    let mut db = app.superuser_connection().await;
    let (revoked, reused): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE revoked_reason = 'reuse_detected'), count(reused_at)
           FROM refresh_tokens WHERE family_id = (SELECT family_id FROM refresh_tokens WHERE reused_at IS NOT NULL)",
    )
    .fetch_one(&mut db)
    .await
    .expect("family");
    assert_eq!((revoked, reused), (2, 1), "both tokens of the family revoked, the replayed one marked");
}

#[tokio::test]
async fn refresh_refuses_garbage_unknown_and_other_tenants_tokens_with_401() {
    let app = spawn_app().await;
    let a = app.create_tenant("alpha").await;
    app.create_tenant("bravo").await;
    let alphas = refresh_token(&app.login("alpha", &a.owner_email, &a.owner_password).await);
    let unknown = format!("rgr_{}", "ab".repeat(32));
    for token in ["", "garbage", "rgr_1234", unknown.as_str()] {
        refresh(&app, "alpha", token).await.assert_problem(StatusCode::UNAUTHORIZED, "invalid_refresh_token");
    }
    // A's token presented on B is simply unknown there (RLS: B cannot even see it).
    refresh(&app, "bravo", &alphas).await.assert_problem(StatusCode::UNAUTHORIZED, "invalid_refresh_token");
    assert_eq!(refresh(&app, "alpha", &alphas).await.status, StatusCode::OK, "and it was not spent by B");
}

#[tokio::test]
async fn logout_ends_this_login_and_no_other() {
    let app = spawn_app().await;
    let t = app.create_tenant("alpha").await;
    let this = refresh_token(&app.login("alpha", &t.owner_email, &t.owner_password).await);
    let other = refresh_token(&app.login("alpha", &t.owner_email, &t.owner_password).await);
    let successor = refresh_token(&refresh(&app, "alpha", &this).await);
    let logout = |token: String| {
        let app = &app;
        async move {
            app.call(Method::POST, "/v1/auth/logout", &[("x-tenant", "alpha")], Some(json!({"refresh_token": token})))
                .await
        }
    };
    assert_eq!(logout(successor.clone()).await.status, StatusCode::NO_CONTENT);
    refresh(&app, "alpha", &successor).await.assert_problem(StatusCode::UNAUTHORIZED, "invalid_refresh_token");
    assert_eq!(refresh(&app, "alpha", &other).await.status, StatusCode::OK);
    assert_eq!(logout(successor).await.status, StatusCode::NO_CONTENT, "logging out twice is harmless");
}

#[tokio::test]
async fn logout_all_ends_every_session_and_access_token_at_once_but_not_the_next_login() {
    let app = spawn_app().await;
    let t = app.create_tenant("alpha").await;
    let first = app.login("alpha", &t.owner_email, &t.owner_password).await;
    let second = app.login("alpha", &t.owner_email, &t.owner_password).await;
    let access = |r: &TestResponse| r.body["access_token"].as_str().expect("access").to_string();
    let r = app.call_as(&access(&first), "alpha", Method::POST, "/v1/auth/logout-all", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    for login in [&first, &second] {
        me(&app, "alpha", &access(login)).await.assert_problem(StatusCode::UNAUTHORIZED, "session_revoked");
        refresh(&app, "alpha", &refresh_token(login))
            .await
            .assert_problem(StatusCode::UNAUTHORIZED, "invalid_refresh_token");
    }
    // Logging in again right away (same second, same millisecond even) works.
    let again = app.login("alpha", &t.owner_email, &t.owner_password).await;
    assert_eq!(me(&app, "alpha", &access(&again)).await.status, StatusCode::OK);
    let unauthenticated = app.call(Method::POST, "/v1/auth/logout-all", &[("x-tenant", "alpha")], None).await;
    unauthenticated.assert_problem(StatusCode::UNAUTHORIZED, "missing_token");
}

#[tokio::test]
async fn a_password_change_needs_the_current_password_and_ends_every_other_session() {
    let app = spawn_app().await;
    let t = app.create_tenant("alpha").await;
    let member = app.create_user(&t, "member").await;
    let change = |current: &str, new: &str| {
        let (app, token) = (&app, member.access_token.clone());
        let body = json!({"current_password": current, "new_password": new});
        async move { app.call_as(&token, "alpha", Method::POST, "/v1/me/password", Some(body)).await }
    };
    change("not my password", "a brand new password").await.assert_problem(StatusCode::FORBIDDEN, "wrong_password");
    change(&member.password, "short").await.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let changed = change(&member.password, "a brand new password").await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);

    me(&app, "alpha", &member.access_token).await.assert_problem(StatusCode::UNAUTHORIZED, "session_revoked");
    refresh(&app, "alpha", &member.refresh_token)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_refresh_token");
    let fresh = changed.body["access_token"].as_str().expect("access");
    assert_eq!(me(&app, "alpha", fresh).await.status, StatusCode::OK, "the answer carries a working pair");
    assert_eq!(refresh(&app, "alpha", &refresh_token(&changed)).await.status, StatusCode::OK);
    app.login("alpha", &member.email, &member.password)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    assert_eq!(app.login("alpha", &member.email, "a brand new password").await.status, StatusCode::OK);
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE email = $1")
        .bind(&member.email)
        .fetch_one(&mut app.superuser_connection().await)
        .await
        .expect("hash");
    assert!(hash.starts_with("$argon2id$"), "{hash}");
}

/// Polls `check` on `instance` until it answers 401 or a second has passed.
async fn refused_within_a_second(instance: &TestApp, tenant: &str, access: &str) -> Duration {
    let start = Instant::now();
    loop {
        let r = me(instance, tenant, access).await;
        if r.status == StatusCode::UNAUTHORIZED {
            r.assert_problem(StatusCode::UNAUTHORIZED, "session_revoked");
            return start.elapsed();
        }
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert!(start.elapsed() < Duration::from_secs(1), "still accepted after {:?}", start.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_user_deactivated_on_one_instance_is_refused_by_another_within_a_second() {
    let first = spawn_app().await;
    let second = first.another_instance().await;
    let t = first.create_tenant("alpha").await;
    let member = first.create_user(&t, "member").await;
    // Both instances have the member cached as active: what follows tests invalidation.
    for instance in [&first, &second] {
        assert_eq!(me(instance, "alpha", &member.access_token).await.status, StatusCode::OK);
    }
    let owner = first.owner_token(&t).await;
    let path = format!("/v1/users/{}", member.id);
    let r = first.call_as(&owner, "alpha", Method::PATCH, &path, Some(json!({"status": "deactivated"}))).await;
    assert_eq!((r.status, &r.body["status"]), (StatusCode::OK, &json!("deactivated")), "{}", r.body);

    // The instance that made the change refuses on the very next request ...
    me(&first, "alpha", &member.access_token).await.assert_problem(StatusCode::UNAUTHORIZED, "session_revoked");
    // ... the other one as soon as the notification arrives.
    let took = refused_within_a_second(&second, "alpha", &member.access_token).await;
    eprintln!("second instance refused a deactivated user after {took:?}");
    refresh(&second, "alpha", &member.refresh_token)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_refresh_token");
    second
        .login("alpha", &member.email, &member.password)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
}

#[tokio::test]
async fn logout_all_on_one_instance_is_honoured_by_another_within_a_second() {
    let first = spawn_app().await;
    let second = first.another_instance().await;
    let t = first.create_tenant("alpha").await;
    let user = first.create_user(&t, "manager").await;
    assert_eq!(me(&second, "alpha", &user.access_token).await.status, StatusCode::OK);
    let r = first.call_as(&user.access_token, "alpha", Method::POST, "/v1/auth/logout-all", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    refused_within_a_second(&second, "alpha", &user.access_token).await;
}

#[tokio::test]
async fn a_demotion_counts_on_the_next_request_whatever_role_the_token_names() {
    let first = spawn_app().await;
    let second = first.another_instance().await;
    let t = first.create_tenant("alpha").await;
    let admin = first.create_user(&t, "admin").await;
    for instance in [&first, &second] {
        let r = instance.call_as(&admin.access_token, "alpha", Method::GET, "/v1/users", None).await;
        assert_eq!(r.status, StatusCode::OK, "admins read users: {}", r.body);
    }
    let owner = first.owner_token(&t).await;
    let path = format!("/v1/users/{}", admin.id);
    let r = first.call_as(&owner, "alpha", Method::PATCH, &path, Some(json!({"role": "member"}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // The token still says admin; the current role (member) decides.
    let r = first.call_as(&admin.access_token, "alpha", Method::GET, "/v1/users", None).await;
    r.assert_problem(StatusCode::FORBIDDEN, "forbidden");
    let start = Instant::now();
    loop {
        let r = second.call_as(&admin.access_token, "alpha", Method::GET, "/v1/users", None).await;
        if r.status == StatusCode::FORBIDDEN {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(1), "the other instance still grants admin: {}", r.body);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let me = me(&first, "alpha", &admin.access_token).await;
    assert_eq!(me.body["role"], "member", "GET /v1/me reports the current role");
}
