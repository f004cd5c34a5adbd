//! Test support: one throwaway PostgreSQL cluster per test process, a migrated template
//! database, and `spawn_app()`, which gives each test its own fresh database cloned from the
//! template and the real router on top of it. Tests talk to the router in-process.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use rowguard::config::Config;
use rowguard::db::cluster::{Durability, EmbeddedCluster, random_secret};
use rowguard::db::platform::{NewTenant, PlatformConn};
use rowguard::db::{APP_ROLE, PLATFORM_LOGIN_ROLE, bootstrap};
use rowguard::domain::{Email, Slug, TenantId};
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
use tower::ServiceExt;

const TEMPLATE: &str = "rowguard_template";

/// The process-wide cluster: URLs to reach it.
struct TestCluster {
    superuser_url: Box<dyn Fn(&str) -> String + Send + Sync>,
    app_url: Box<dyn Fn(&str) -> String + Send + Sync>,
    /// As the platform login (`rowguard_platform_login`), which the platform API uses.
    platform_url: Box<dyn Fn(&str) -> String + Send + Sync>,
    keys_dir: PathBuf,
}

fn cluster() -> &'static TestCluster {
    static CLUSTER: OnceLock<TestCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        // The server is tied to the thread that starts it (it is told to stop when that
        // thread ends), so it gets a thread of its own that lives as long as the process.
        std::thread::spawn(move || {
            let dir = std::env::temp_dir().join(format!("rowguard-test-{}", std::process::id()));
            remove_leftovers();
            let cluster = EmbeddedCluster::start(&dir, Durability::Throwaway).expect("start the test cluster");
            let creds = cluster.credentials().clone();
            let su = {
                let c = cluster.superuser_url("X");
                move |db: &str| c.replacen("/X?", &format!("/{db}?"), 1)
            };
            let app = {
                let c = cluster.url(APP_ROLE, &creds.app_password, "X");
                move |db: &str| c.replacen("/X?", &format!("/{db}?"), 1)
            };
            let platform = {
                let c = cluster.url(PLATFORM_LOGIN_ROLE, &creds.platform_password, "X");
                move |db: &str| c.replacen("/X?", &format!("/{db}?"), 1)
            };
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                bootstrap::create_roles_and_database(&su(TEMPLATE), &creds.app_password).await.expect("bootstrap");
                bootstrap::migrate(&su(TEMPLATE)).await.expect("migrate the template");
                bootstrap::create_platform_login(&su(TEMPLATE), &creds.platform_password)
                    .await
                    .expect("platform login");
            });
            drop(rt);
            let keys_dir = dir.join("keys");
            std::fs::create_dir_all(&keys_dir).expect("keys dir");
            let _ = tx.send(TestCluster {
                superuser_url: Box::new(su),
                app_url: Box::new(app),
                platform_url: Box::new(platform),
                keys_dir,
            });
            let _cluster = cluster;
            loop {
                std::thread::park();
            }
        });
        rx.recv().expect("the test cluster failed to start (see the panic above)")
    })
}

/// Clusters of earlier test runs whose process is gone.
fn remove_leftovers() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(pid) = name.strip_prefix("rowguard-test-").and_then(|p| p.parse::<u32>().ok())
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// One test's world: its own database and the real router over it.
pub struct TestApp {
    pub router: Router,
    pub db_name: String,
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
    let cluster = cluster();
    let db_name = format!("t_{}", uuid::Uuid::now_v7().simple());
    let mut admin = PgConnection::connect(&(cluster.superuser_url)("postgres")).await.expect("admin connection");
    admin
        .execute(AssertSqlSafe(format!("CREATE DATABASE {db_name} TEMPLATE {TEMPLATE}")))
        .await
        .expect("clone the template");
    admin.close().await.expect("close");
    let config = Config::for_tests(cluster.keys_dir.clone());
    let platform_url = (cluster.platform_url)(&db_name);
    let ctx =
        rowguard::startup::build_context_with_platform(&config, &(cluster.app_url)(&db_name), Some(&platform_url))
            .await
            .expect("context");
    let router = rowguard::http::router(ctx, rowguard::startup::limits(&config));
    TestApp { router, db_name }
}

impl TestApp {
    pub fn superuser_url(&self) -> String {
        (cluster().superuser_url)(&self.db_name)
    }

    pub fn app_url(&self) -> String {
        (cluster().app_url)(&self.db_name)
    }

    /// As the platform login, the role behind `/platform/v1`.
    pub fn platform_url(&self) -> String {
        (cluster().platform_url)(&self.db_name)
    }

    /// A connection as the service's app role — the role RLS has to hold.
    pub async fn app_connection(&self) -> PgConnection {
        PgConnection::connect(&self.app_url()).await.expect("app role connection")
    }

    /// A connection as the cluster superuser, for setting up what tests need to look at.
    pub async fn superuser_connection(&self) -> PgConnection {
        PgConnection::connect(&self.superuser_url()).await.expect("superuser connection")
    }

    pub fn app_connect_options(&self) -> PgConnectOptions {
        PgConnectOptions::from_str(&self.app_url()).expect("options")
    }

    /// Create a tenant with an owner through the platform path (`tenants create`).
    pub async fn create_tenant(&self, slug: &str) -> TestTenant {
        self.create_tenant_with_domains(slug, vec![]).await
    }

    pub async fn create_tenant_with_domains(&self, slug: &str, domains: Vec<String>) -> TestTenant {
        let owner_email = format!("owner@{slug}.test");
        let owner_password = format!("{slug}-password-{}", random_secret());
        let pw = owner_password.clone();
        let hash = tokio::task::spawn_blocking(move || rowguard::auth::password::hash_now(&pw))
            .await
            .expect("join")
            .expect("hash");
        let mut platform = PlatformConn::connect(&self.superuser_url()).await.expect("platform connection");
        let id = platform
            .create_tenant(NewTenant {
                slug: Slug::parse(slug).expect("slug"),
                name: format!("Tenant {slug}"),
                owner_email: Email::parse(&owner_email).expect("email"),
                owner_password_hash: hash,
                domains,
            })
            .await
            .expect("create tenant")
            .tenant;
        TestTenant { id, slug: slug.to_string(), owner_email, owner_password }
    }

    /// Log in as the tenant's owner and return the access token.
    pub async fn owner_token(&self, tenant: &TestTenant) -> String {
        let body = serde_json::json!({"email": tenant.owner_email, "password": tenant.owner_password});
        let r = self.call(Method::POST, "/v1/auth/login", &[("x-tenant", &tenant.slug)], Some(body)).await;
        assert_eq!(r.status, StatusCode::OK, "login failed: {}", r.body);
        r.body["access_token"].as_str().expect("token").to_string()
    }

    /// Send one request through the router with the given headers and optional JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        json: Option<Value>,
    ) -> TestResponse {
        let body = match &json {
            Some(v) => Body::from(serde_json::to_vec(v).expect("json")),
            None => Body::empty(),
        };
        self.send_raw(method, path, headers, json.is_some().then_some("application/json"), body).await
    }

    /// As `call`, with the tenant's header and a bearer token.
    pub async fn call_as(
        &self,
        token: &str,
        tenant: &str,
        method: Method,
        path: &str,
        json: Option<Value>,
    ) -> TestResponse {
        let auth = format!("Bearer {token}");
        self.call(method, path, &[("x-tenant", tenant), ("authorization", &auth)], json).await
    }

    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        content_type: Option<&str>,
        body: Body,
    ) -> TestResponse {
        let mut request = Request::builder().method(method).uri(path);
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            request = request.header("host", "localhost:8080");
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let response = self.router.clone().oneshot(request.body(body).expect("request")).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        TestResponse { status, headers, body }
    }
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
        let config = Config::for_tests(cluster().keys_dir.clone());
        let ctx = rowguard::startup::build_context(&config, &self.app_url()).await.expect("context");
        let router = rowguard::http::router(ctx, rowguard::startup::limits(&config));
        TestApp { router, db_name: self.db_name.clone() }
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
