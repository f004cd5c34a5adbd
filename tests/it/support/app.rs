//! One test's world: `TestApp` and the `spawn_*` functions that clone the template into a
//! fresh database and build the real router on it; tenants, responses, operators and users.

use super::{CitusDatabase, TEMPLATE, citus_url, cluster, prepare_citus_database};
use axum::Router;
use axum::http::{HeaderMap, Method, StatusCode};
use rowguard::cluster::random_secret;
use rowguard::config::Config;
use rowguard::domain::{Email, TenantId};
use rowguard::platform::PlatformConn;
use serde_json::Value;
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

pub struct TestOperator {
    pub email: String,
    pub password: String,
}

/// An operator made the way `rowguard operators create` makes one.
pub async fn create_operator(app: &TestApp, email: &str) -> TestOperator {
    let password = format!("operator-password-{}", uuid::Uuid::now_v7().simple());
    let pw = password.clone();
    let hash = tokio::task::spawn_blocking(move || rowguard::auth::password::hash_now(&pw))
        .await
        .expect("join")
        .expect("hash");
    let mut platform = PlatformConn::connect(&app.superuser_url()).await.expect("platform connection");
    platform.create_operator(&Email::parse(email).expect("email"), &hash).await.expect("create operator");
    TestOperator { email: email.to_string(), password }
}

/// One test's world: its own database and the real router over it.
pub struct TestApp {
    pub router: Router,
    pub db_name: String,
    /// The state behind the router (its caches and limiters), for tests that look inside.
    pub ctx: rowguard::http::ApiContext,
    /// On Citus, the test's database, dropped with the app that created it (None for another
    /// instance over the same database).
    pub _citus_database: Option<CitusDatabase>,
}

pub struct TestTenant {
    pub id: TenantId,
    pub slug: String,
    pub owner_email: String,
    pub owner_password: String,
}

pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl TestResponse {
    pub fn content_type(&self) -> &str {
        self.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// Asserts the answer is a problem document with `status` and `code`.
    #[track_caller]
    pub fn assert_problem(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(self.content_type(), "application/problem+json", "body: {}", self.body);
        assert_eq!(self.body["code"], code, "body: {}", self.body);
        assert_eq!(self.body["status"], status.as_u16());
        assert!(self.body["request_id"].as_str().is_some_and(|s| !s.is_empty()), "no request id: {}", self.body);
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// As `spawn_app`, with the database owned by the owner role, as `rowguard migrate` creates
/// it (a clone belongs to whoever cloned it, and the owner role needs the database's CREATE
/// on schema public to check its migration history): for tests that run the CLI on it.
pub async fn spawn_installed_app() -> TestApp {
    let app = spawn_app().await;
    let mut su = app.superuser_connection().await;
    su.execute(AssertSqlSafe(format!("ALTER DATABASE {} OWNER TO rowguard_owner", app.db_name)))
        .await
        .expect("hand the database to the owner role");
    su.close().await.expect("close");
    app
}

/// As `spawn_app`, with some settings changed from the test defaults.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    // `ROWGUARD_TEST_LOG=rowguard=debug`: the services' logs on the test's output (shown for a
    // failing test), to see what a 500 was.
    if let Ok(filter) = std::env::var("ROWGUARD_TEST_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
    let cluster = cluster();
    let db_name = format!("t_{}", uuid::Uuid::now_v7().simple());
    if citus_url().is_some() {
        prepare_citus_database(cluster, &db_name).await;
    } else {
        let mut admin = PgConnection::connect(&(cluster.superuser_url)("postgres")).await.expect("admin connection");
        admin
            .execute(AssertSqlSafe(format!("CREATE DATABASE {db_name} TEMPLATE {TEMPLATE}")))
            .await
            .expect("clone the template");
        admin.close().await.expect("close");
    }
    let mut config = Config::for_tests(cluster.keys_dir.clone());
    configure(&mut config);
    let platform_url = (cluster.platform_url)(&db_name);
    let ctx =
        rowguard::startup::build_context_with_platform(&config, &(cluster.app_url)(&db_name), Some(&platform_url))
            .await
            .expect("context");
    let router = rowguard::http::router(ctx.clone(), rowguard::startup::limits(&config));
    let citus_database = citus_url().is_some().then(|| CitusDatabase(db_name.clone()));
    TestApp { router, db_name, ctx, _citus_database: citus_database }
}

/// A user of some role in a test tenant, logged in.
pub struct TestUser {
    pub id: String,
    pub email: String,
    pub password: String,
    pub access_token: String,
    pub refresh_token: String,
}

impl TestApp {
    /// Another instance of the service over this test's database: its own pool, caches and
    /// change listeners, as a second process behind a load balancer would have.
    pub async fn another_instance(&self) -> TestApp {
        self.another_instance_with(|_| {}).await
    }

    /// As `another_instance`, with some settings changed from the test defaults.
    pub async fn another_instance_with(&self, configure: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = Config::for_tests(cluster().keys_dir.clone());
        configure(&mut config);
        let ctx = rowguard::startup::build_context(&config, &self.app_url()).await.expect("context");
        let router = rowguard::http::router(ctx.clone(), rowguard::startup::limits(&config));
        TestApp { router, db_name: self.db_name.clone(), ctx, _citus_database: None }
    }

    /// Serve this app's router over a real socket on loopback, as `rowguard serve` does, with
    /// `limits`; the server stops when the returned sender is dropped.
    pub async fn serve_tcp(
        &self,
        limits: rowguard::http::Limits,
    ) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = self.router.clone();
        tokio::spawn(rowguard::startup::serve_router(listener, router, limits, async move {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    /// `POST /v1/auth/login` on `tenant`.
    pub async fn login(&self, tenant: &str, email: &str, password: &str) -> TestResponse {
        let body = serde_json::json!({"email": email, "password": password});
        self.call(Method::POST, "/v1/auth/login", &[("x-tenant", tenant)], Some(body)).await
    }

    /// Create a user with `role` through the API as the tenant's owner, and log it in.
    pub async fn create_user(&self, tenant: &TestTenant, role: &str) -> TestUser {
        let owner = self.owner_token(tenant).await;
        let email = format!("{role}-{}@{}.test", uuid::Uuid::now_v7().simple(), tenant.slug);
        let password = format!("{role}-password-{}", random_secret());
        let body = serde_json::json!({"email": email, "password": password, "role": role});
        let created = self.call_as(&owner, &tenant.slug, Method::POST, "/v1/users", Some(body)).await;
        assert_eq!(created.status, StatusCode::CREATED, "create {role}: {}", created.body);
        let login = self.login(&tenant.slug, &email, &password).await;
        assert_eq!(login.status, StatusCode::OK, "login {role}: {}", login.body);
        TestUser {
            id: created.body["id"].as_str().expect("id").to_string(),
            email,
            password,
            access_token: login.body["access_token"].as_str().expect("access token").to_string(),
            refresh_token: login.body["refresh_token"].as_str().expect("refresh token").to_string(),
        }
    }
}
