//! Who may use the platform API: operator login and disabling, token audiences, the roles
//! behind it, where it is served, and signing-key rotation with the JWK set.

use axum::http::{Method, StatusCode};
use rowguard::platform::PlatformConn;
use serde_json::json;
use sqlx::{Connection, Executor, PgConnection};

use super::{instance, operator_login, operator_token, platform, test_config};
use crate::support::{TestApp, create_operator, spawn_app};

#[tokio::test]
async fn an_operator_logs_in_and_every_bad_credential_gets_the_same_answer() {
    let app = spawn_app().await;
    let op = create_operator(&app, "Ops@Rowguard.test").await;
    let disabled = create_operator(&app, "gone@rowguard.test").await;
    let mut su = app.superuser_connection().await;
    su.execute("UPDATE operators SET status = 'disabled' WHERE email = 'gone@rowguard.test'").await.expect("disable");

    let ok = operator_login(&app, "ops@rowguard.TEST", &op.password).await;
    assert_eq!(ok.status, StatusCode::OK, "e-mail matching is case-insensitive: {}", ok.body);
    assert_eq!(ok.body["token_type"], "Bearer");
    assert!(ok.body["expires_in"].as_u64().is_some_and(|s| s > 0));

    let refusals = [
        ("wrong password", op.email.as_str(), "not-the-password"),
        ("unknown e-mail", "nobody@rowguard.test", op.password.as_str()),
        ("disabled operator", disabled.email.as_str(), disabled.password.as_str()),
        ("empty e-mail", "", op.password.as_str()),
    ];
    let mut details = Vec::new();
    for (case, email, password) in refusals {
        let r = operator_login(&app, email, password).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{case}: {}", r.body);
        r.assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
        details.push(r.body["detail"].clone());
    }
    details.dedup();
    assert_eq!(details.len(), 1, "one answer whichever part was wrong: {details:?}");
}

#[tokio::test]
async fn platform_and_tenant_tokens_are_refused_on_each_others_routes() {
    let app = spawn_app().await;
    let token = operator_token(&app).await;
    let acme = app.create_tenant("acme").await;
    let tenant_token = app.owner_token(&acme).await;

    // Each token works where it belongs ...
    assert_eq!(platform(&app, &token, Method::GET, "/platform/v1/tenants", None).await.status, StatusCode::OK);
    assert_eq!(app.call_as(&tenant_token, "acme", Method::GET, "/v1/me", None).await.status, StatusCode::OK);
    // ... and nowhere else.
    let r = app.call_as(&token, "acme", Method::GET, "/v1/me", None).await;
    r.assert_problem(StatusCode::UNAUTHORIZED, "invalid_token");
    let r = app.call_as(&token, "acme", Method::GET, "/v1/contacts", None).await;
    r.assert_problem(StatusCode::UNAUTHORIZED, "invalid_token");
    for path in ["/platform/v1/tenants", "/platform/v1/tenants/acme"] {
        let r = platform(&app, &tenant_token, Method::GET, path, None).await;
        r.assert_problem(StatusCode::UNAUTHORIZED, "invalid_token");
        let r = app.call(Method::GET, path, &[], None).await;
        r.assert_problem(StatusCode::UNAUTHORIZED, "missing_token");
    }
    let r = platform(&app, &tenant_token, Method::DELETE, "/platform/v1/tenants/acme", None).await;
    r.assert_problem(StatusCode::UNAUTHORIZED, "invalid_token");
    assert_eq!(app.call_as(&tenant_token, "acme", Method::GET, "/v1/me", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_disabled_operator_is_refused_on_the_next_request() {
    let app = spawn_app().await;
    let op = create_operator(&app, "soon-gone@rowguard.test").await;
    let token =
        operator_login(&app, &op.email, &op.password).await.body["access_token"].as_str().expect("t").to_string();
    assert_eq!(platform(&app, &token, Method::GET, "/platform/v1/tenants", None).await.status, StatusCode::OK);
    // As `rowguard operators disable --email` does it.
    let mut cli = PlatformConn::connect(&app.superuser_url()).await.expect("platform connection");
    assert!(cli.set_operator_active("SOON-GONE@rowguard.test", false).await.expect("disable"));
    assert!(!cli.set_operator_active("nobody@rowguard.test", false).await.expect("no one"));
    let r = platform(&app, &token, Method::GET, "/platform/v1/tenants", None).await;
    r.assert_problem(StatusCode::UNAUTHORIZED, "invalid_token");
    let r = operator_login(&app, &op.email, &op.password).await;
    r.assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    assert!(cli.set_operator_active(&op.email, true).await.expect("enable"));
    assert_eq!(platform(&app, &token, Method::GET, "/platform/v1/tenants", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_platform_api_is_not_served_on_a_tenant_host() {
    let app = spawn_app().await;
    let op = create_operator(&app, "ops@rowguard.test").await;
    let body = json!({"email": op.email, "password": op.password});
    for host in ["acme.localhost", "ACME.localhost:8080"] {
        let r = app.call(Method::POST, "/platform/v1/auth/login", &[("host", host)], Some(body.clone())).await;
        r.assert_problem(StatusCode::NOT_FOUND, "route_not_found");
    }
    let r = app.call(Method::POST, "/platform/v1/auth/login", &[("host", "localhost:8080")], Some(body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn without_a_platform_login_the_platform_api_answers_503() {
    let app = spawn_app().await;
    let config = test_config();
    let ctx = rowguard::startup::build_context(&config, &app.app_url()).await.expect("context");
    let bare = TestApp {
        router: rowguard::http::router(ctx.clone(), rowguard::startup::limits(&config)),
        db_name: app.db_name.clone(),
        ctx,
        _citus_database: None,
    };
    let login = json!({"email": "ops@rowguard.test", "password": "whatever-password"});
    let r = bare.call(Method::POST, "/platform/v1/auth/login", &[], Some(login)).await;
    r.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "platform_unavailable");
    let r = bare.call(Method::GET, "/platform/v1/tenants", &[("authorization", "Bearer x.y.z")], None).await;
    r.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "platform_unavailable");
}

#[tokio::test]
async fn the_app_role_cannot_read_operators_or_write_the_registry_and_the_platform_login_bypasses_nothing() {
    let app = spawn_app().await;
    create_operator(&app, "ops@rowguard.test").await;
    app.create_tenant("acme").await;
    let mut conn = app.app_connection().await;
    let refused = [
        "SELECT password_hash FROM operators",
        "SELECT count(*) FROM operators",
        "UPDATE tenants SET status = 'active'",
        "INSERT INTO tenants (id, slug, name) VALUES (gen_random_uuid(), 'evil', 'Evil')",
        "DELETE FROM tenant_domains",
        "SELECT name FROM tenants",
    ];
    for sql in refused {
        let err = conn.execute(sql).await.expect_err(sql);
        assert!(err.to_string().contains("permission denied"), "{sql}: {err}");
    }
    let mut platform_login = PgConnection::connect(&app.platform_url()).await.expect("platform login");
    let (superuser, bypass, member): (bool, bool, bool) = sqlx::query_as(
        "SELECT rolsuper, rolbypassrls, pg_has_role(current_user, 'rowguard_platform', 'MEMBER')
           FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&mut platform_login)
    .await
    .expect("role");
    assert_eq!((superuser, bypass, member), (false, false, true));
    // Held to RLS: with no tenant set it sees no tenant's users.
    let users: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&mut platform_login).await.expect("users");
    assert_eq!(users, 0);
}

#[tokio::test]
async fn the_jwk_set_lists_the_signing_key_and_rotated_keys_keep_old_tokens_valid() {
    use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
    let key = |seed: u8| ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    let private_pem = |seed: u8| key(seed).to_pkcs8_pem(Default::default()).expect("pem").to_string();
    let public_pem = |seed: u8| key(seed).verifying_key().to_public_key_pem(Default::default()).expect("pem");
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;

    // Before: key 1 signs (its id derived from the key), and is the only key published.
    let before = instance(&app, |c| c.jwt_private_key = Some(private_pem(1))).await;
    let old_token = before.owner_token(&acme).await;
    let old_kid = jsonwebtoken::decode_header(&old_token).expect("header").kid.expect("kid");
    let r = before.call(Method::GET, "/.well-known/jwks.json", &[], None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let keys = r.body["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1);
    let shape = (keys[0]["kty"].as_str(), keys[0]["crv"].as_str(), keys[0]["alg"].as_str(), keys[0]["use"].as_str());
    assert_eq!(shape, (Some("OKP"), Some("Ed25519"), Some("EdDSA"), Some("sig")));
    assert_eq!(keys[0]["kid"].as_str(), Some(old_kid.as_str()));

    // Rotated: key 2 signs as "next", key 1's public half still verifies (no kid line: derived).
    let rotated = instance(&app, |c| {
        c.jwt_private_key = Some(private_pem(2));
        c.jwt_key_id = Some("next".into());
        c.jwt_verify_keys = Some(public_pem(1));
    })
    .await;
    let r = rotated.call_as(&old_token, "acme", Method::GET, "/v1/me", None).await;
    assert_eq!(r.status, StatusCode::OK, "a token of the old, still listed key: {}", r.body);
    let jwks = rotated.call(Method::GET, "/.well-known/jwks.json", &[], None).await;
    let kids: Vec<&str> =
        jwks.body["keys"].as_array().expect("keys").iter().filter_map(|k| k["kid"].as_str()).collect();
    assert_eq!(kids, ["next", old_kid.as_str()]);
    let new_token = rotated.owner_token(&acme).await;
    assert_eq!(jsonwebtoken::decode_header(&new_token).expect("header").kid.as_deref(), Some("next"));

    // Retired: once key 1 is no longer listed, its tokens are refused; so is any unlisted key.
    let retired = instance(&app, |c| {
        c.jwt_private_key = Some(private_pem(2));
        c.jwt_key_id = Some("next".into());
    })
    .await;
    let r = retired.call_as(&old_token, "acme", Method::GET, "/v1/me", None).await;
    r.assert_problem(StatusCode::UNAUTHORIZED, "invalid_token");
    let r = retired.call_as(&new_token, "acme", Method::GET, "/v1/me", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = before.call_as(&new_token, "acme", Method::GET, "/v1/me", None).await;
    r.assert_problem(StatusCode::UNAUTHORIZED, "invalid_token");
}
