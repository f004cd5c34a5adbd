//! What a test does with its `TestApp`: connections to its database as each role, tenants
//! made with their owner, and requests through the router in-process.

use std::str::FromStr;

use super::{TestApp, TestResponse, TestTenant, citus_url, cli_env_for, cluster};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use rowguard::cluster::random_secret;
use rowguard::domain::{Email, Slug};
use rowguard::platform::{NewTenant, PlatformConn};
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection};
use tower::ServiceExt;

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

    /// A superuser connection for breaking things on purpose: on Citus it may also add or drop
    /// triggers of distributed tables (`citus.enable_unsafe_triggers`), as an operator there
    /// must set it to.
    pub async fn tampering_connection(&self) -> PgConnection {
        let mut conn = self.superuser_connection().await;
        if self.on_citus() {
            conn.execute("SET citus.enable_unsafe_triggers = on").await.expect("allow trigger changes");
        }
        conn
    }

    /// Whether this test runs against the Citus cluster (`ROWGUARD_TEST_CITUS_URL`).
    pub fn on_citus(&self) -> bool {
        citus_url().is_some()
    }

    /// Open transactions that have taken a transaction id, holding the audit sealer's horizon
    /// back for every tenant until they end (COMMIT each). On PostgreSQL one: the horizon is
    /// the server's. On Citus one on every node: there the horizon is the one of the node
    /// holding the tenant's shard (sql/V26), and the node's own transactions hold it.
    pub async fn hold_the_audit_horizon(&self) -> Vec<PgConnection> {
        let mut nodes = vec![PgConnectOptions::from_str(&self.superuser_url()).expect("options")];
        if self.on_citus() {
            let mut su = self.superuser_connection().await;
            let workers: Vec<(String, i32)> = sqlx::query_as(
                "SELECT nodename::text, nodeport FROM pg_dist_node WHERE groupid <> 0 AND noderole = 'primary'",
            )
            .fetch_all(&mut su)
            .await
            .expect("workers");
            let coordinator = nodes[0].clone();
            for (host, port) in workers {
                nodes.push(coordinator.clone().host(&host).port(u16::try_from(port).expect("port")));
            }
        }
        let mut holders = Vec::new();
        for node in nodes {
            let mut holder = PgConnection::connect_with(&node).await.expect("holder");
            holder.execute("BEGIN; SELECT pg_current_xact_id()").await.expect("hold the horizon");
            holders.push(holder);
        }
        holders
    }

    /// What a `rowguard` command needs to run against this test's database (`cli_env_for`).
    pub fn cli_env(&self) -> Vec<(&'static str, String)> {
        cli_env_for(&self.db_name)
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
        self.send(request.body(body).expect("request")).await
    }

    /// Send a request built by the test (one with a `ConnectInfo` peer address, say).
    pub async fn send(&self, request: Request<Body>) -> TestResponse {
        let response = self.router.clone().oneshot(request).await.expect("infallible");
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
