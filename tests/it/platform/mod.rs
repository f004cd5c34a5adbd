//! The platform API and the tenant lifecycle, against the real database: operator login, token
//! audiences, tenant CRUD, suspension, delete-and-purge counted from the catalog, custom
//! domains, signup, the roles behind it all, and signing-key rotation with the JWK set.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{TestApp, TestResponse, TestTenant, create_operator};

mod access;
mod lifecycle;
mod tenants;

/// Another instance of the service over `app`'s database (platform login included), with some
/// settings changed from the test defaults.
async fn instance(app: &TestApp, configure: impl FnOnce(&mut rowguard::config::Config)) -> TestApp {
    let mut config = test_config();
    configure(&mut config);
    let platform_url = app.platform_url();
    let ctx = rowguard::startup::build_context_with_platform(&config, &app.app_url(), Some(&platform_url))
        .await
        .expect("context");
    TestApp {
        router: rowguard::http::router(ctx.clone(), rowguard::startup::limits(&config)),
        db_name: app.db_name.clone(),
        ctx,
        _citus_database: None,
    }
}

/// Test defaults with a fixed signing key, so nothing is generated into a data directory.
fn test_config() -> rowguard::config::Config {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let mut config = rowguard::config::Config::for_tests(std::env::temp_dir().join("rowguard-unused-data-dir"));
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]).to_pkcs8_pem(Default::default()).expect("pem");
    config.jwt_private_key = Some(key.to_string());
    config
}

async fn operator_login(app: &TestApp, email: &str, password: &str) -> TestResponse {
    let body = json!({"email": email, "password": password});
    app.call(Method::POST, "/platform/v1/auth/login", &[], Some(body)).await
}

/// A logged-in operator's platform token.
async fn operator_token(app: &TestApp) -> String {
    let op = create_operator(app, &format!("ops-{}@rowguard.test", uuid::Uuid::now_v7().simple())).await;
    let r = operator_login(app, &op.email, &op.password).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["access_token"].as_str().expect("token").to_string()
}

async fn platform(app: &TestApp, token: &str, method: Method, path: &str, body: Option<Value>) -> TestResponse {
    let auth = format!("Bearer {token}");
    app.call(method, path, &[("authorization", &auth)], body).await
}

fn new_tenant(slug: &str) -> Value {
    json!({"slug": slug, "name": format!("Tenant {slug}"), "owner_email": format!("owner@{slug}.test"),
           "owner_password": format!("{slug}-owner-password")})
}

/// Create a tenant through the API and return it as the tenant-side helpers know it.
async fn api_tenant(app: &TestApp, token: &str, slug: &str) -> TestTenant {
    let r = platform(app, token, Method::POST, "/platform/v1/tenants", Some(new_tenant(slug))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = serde_json::from_value(r.body["id"].clone()).expect("tenant id");
    TestTenant {
        id,
        slug: slug.to_string(),
        owner_email: format!("owner@{slug}.test"),
        owner_password: format!("{slug}-owner-password"),
    }
}
