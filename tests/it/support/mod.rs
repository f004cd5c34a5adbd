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
use rowguard::cluster::{Durability, EmbeddedCluster, random_secret};
use rowguard::config::Config;
use rowguard::db::{APP_ROLE, PLATFORM_LOGIN_ROLE};
use rowguard::domain::{Email, Slug, TenantId};
use rowguard::migrate;
use rowguard::platform::{NewTenant, PlatformConn};
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

/// `ROWGUARD_TEST_CITUS_URL`: a superuser URL of a Citus coordinator's `postgres` database
/// whose metadata lists the workers (docs/citus.md). When set, every test gets a
/// fresh database created on all nodes and migrated the way `rowguard migrate` does it, which
/// distributes the tables; databases cannot be cloned on Citus. Unset (CI): the embedded
/// throwaway cluster and its template.
const CITUS_URL_VAR: &str = "ROWGUARD_TEST_CITUS_URL";

fn citus_url() -> Option<String> {
    std::env::var(CITUS_URL_VAR).ok().filter(|url| !url.is_empty())
}

fn cluster() -> &'static TestCluster {
    static CLUSTER: OnceLock<TestCluster> = OnceLock::new();
    if let Some(url) = citus_url() {
        return CLUSTER.get_or_init(|| citus_cluster(&url));
    }
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
                migrate::create_roles_and_database(&su(TEMPLATE), &creds.app_password).await.expect("bootstrap");
                migrate::migrate(&su(TEMPLATE)).await.expect("migrate the template");
                migrate::create_platform_login(&su(TEMPLATE), &creds.platform_password).await.expect("platform login");
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

/// The URLs of an external Citus coordinator. The app and platform logins get passwords of
/// this process; bootstrap sets them on every database it prepares (roles are cluster-wide).
fn citus_cluster(url: &str) -> TestCluster {
    let with_db = |user: Option<(&'static str, String)>| {
        let options = PgConnectOptions::from_str(url).expect("ROWGUARD_TEST_CITUS_URL is not a valid URL");
        move |db: &str| {
            let (name, password) = match &user {
                Some((name, password)) => (name.to_string(), Some(password.clone())),
                None => (options.get_username().to_string(), None),
            };
            let mut out = format!("postgres://{name}");
            if let Some(password) = password {
                out.push(':');
                out.push_str(&password);
            }
            // A query string, as the embedded cluster's URLs have: tests swap `/{db}?` for
            // another database's name.
            out.push_str(&format!(
                "@{}:{}/{db}?application_name=rowguard-tests",
                options.get_host(),
                options.get_port()
            ));
            out
        }
    };
    drop_stale_citus_databases(url);
    let app_password = random_secret();
    let platform_password = random_secret();
    let dir = std::env::temp_dir().join(format!("rowguard-test-{}", std::process::id()));
    let keys_dir = dir.join("keys");
    std::fs::create_dir_all(&keys_dir).expect("keys dir");
    TestCluster {
        superuser_url: Box::new(with_db(None)),
        app_url: Box::new(with_db(Some((APP_ROLE, app_password)))),
        platform_url: Box::new(with_db(Some((PLATFORM_LOGIN_ROLE, platform_password)))),
        keys_dir,
    }
}

/// On Citus: a database of its own on the coordinator and every worker, with the extension
/// and the workers registered, then bootstrap and `migrate` (which distributes the tables).
async fn prepare_citus_database(cluster: &TestCluster, db_name: &str) {
    // One at a time: bootstrap and migrate ALTER the cluster-wide roles, and concurrent ALTER
    // ROLEs of one role fail ("tuple concurrently updated").
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = ONE_AT_A_TIME.lock().await;
    let app_password = url_password(&(cluster.app_url)(db_name));
    let platform_password = url_password(&(cluster.platform_url)(db_name));
    // The roles first (the database's owner must exist); `postgres` exists, so nothing else
    // is created here. Run in the coordinator's postgres database, Citus propagates them.
    let maintenance = (cluster.superuser_url)("postgres");
    migrate::create_roles_and_database(&maintenance, &app_password).await.expect("roles");
    migrate::create_platform_login(&maintenance, &platform_password).await.expect("platform login");
    let mut coordinator =
        PgConnection::connect(&(cluster.superuser_url)("postgres")).await.expect("coordinator connection");
    let workers: Vec<(String, i32)> = sqlx::query_as(
        "SELECT nodename::text, nodeport FROM pg_dist_node WHERE groupid <> 0 AND noderole = 'primary' ORDER BY 1, 2",
    )
    .fetch_all(&mut coordinator)
    .await
    .expect("the coordinator's postgres database lists its workers (citus_add_node)");
    assert!(!workers.is_empty(), "{CITUS_URL_VAR}: the coordinator has no workers");
    coordinator.execute("SET citus.enable_create_database_propagation = on").await.expect("propagation");
    coordinator
        .execute(AssertSqlSafe(format!("CREATE DATABASE {db_name} OWNER rowguard_owner")))
        .await
        .expect("create the test database on every node");
    coordinator.close().await.expect("close");
    let coordinator_options = PgConnectOptions::from_str(&(cluster.superuser_url)(db_name)).expect("options");
    for (host, port) in &workers {
        let options = coordinator_options.clone().host(host).port(u16::try_from(*port).expect("port"));
        let mut worker = PgConnection::connect_with(&options).await.expect("worker connection");
        worker.execute("CREATE EXTENSION citus").await.expect("citus on the worker");
        worker.close().await.expect("close");
    }
    let mut db = PgConnection::connect_with(&coordinator_options).await.expect("test database");
    db.execute("CREATE EXTENSION citus").await.expect("citus on the coordinator");
    sqlx::query("SELECT citus_set_coordinator_host($1, $2)")
        .bind(coordinator_options.get_host())
        .bind(i32::from(coordinator_options.get_port()))
        .execute(&mut db)
        .await
        .expect("coordinator host");
    for (host, port) in &workers {
        sqlx::query("SELECT citus_add_node($1, $2)").bind(host).bind(port).execute(&mut db).await.expect("add node");
    }
    db.close().await.expect("close");
    let su = (cluster.superuser_url)(db_name);
    migrate::create_platform_login(&su, &platform_password).await.expect("platform login may connect");
    migrate::migrate(&su).await.expect("migrate and distribute");
}

/// The password in a URL of the test cluster.
pub fn url_password(url: &str) -> String {
    let userinfo = url.split_once("://").and_then(|(_, rest)| rest.split_once('@')).map(|(u, _)| u);
    userinfo.and_then(|u| u.split_once(':')).map(|(_, p)| p.to_string()).expect("a password in the URL")
}

/// The environment a `rowguard` command needs to run against database `db_name` of the test
/// cluster, as an operator would set it: the app, admin and platform URLs.
pub fn cli_env_for(db_name: &str) -> Vec<(&'static str, String)> {
    let cluster = cluster();
    vec![
        ("DATABASE_URL", (cluster.app_url)(db_name)),
        ("ROWGUARD_ADMIN_DATABASE_URL", (cluster.superuser_url)(db_name)),
        ("ROWGUARD_PLATFORM_DATABASE_URL", (cluster.platform_url)(db_name)),
    ]
}

/// A fresh directory inside this test process's cluster directory (removed with it by a
/// later run), for what a test's child processes write.
pub fn scratch_dir(label: &str) -> PathBuf {
    let dir = cluster().keys_dir.with_file_name(format!("{label}-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
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

/// The PEM of the key every test app signs access tokens with (hostile-input tests forge
/// tokens that are validly signed but wrong in some other way).
/// Wait (up to 20 s) until the service's sealer has sealed every committed audit event of
/// every tenant (a superuser connection reads the queue).
pub async fn wait_until_sealed(su: &mut PgConnection) {
    for _ in 0..200 {
        let waiting: i64 =
            sqlx::query_scalar("SELECT count(*) FROM audit_unsealed").fetch_one(&mut *su).await.expect("queue");
        if waiting == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the audit sealer did not catch up within 20 s");
}

pub fn signing_key_pem() -> String {
    std::fs::read_to_string(cluster().keys_dir.join("jwt-ed25519.pem")).expect("the test signing key")
}

/// A request as if from `peer` over a socket (what `into_make_service_with_connect_info` adds).
pub fn from_peer(
    peer: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    json: Option<serde_json::Value>,
) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(path);
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        builder = builder.header("host", "localhost:8080");
    }
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let body = match json {
        Some(v) => {
            builder = builder.header("content-type", "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let mut request = builder.body(body).expect("request");
    let addr: std::net::SocketAddr = format!("{peer}:40000").parse().expect("peer address");
    request.extensions_mut().insert(axum::extract::ConnectInfo(addr));
    request
}

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

/// A test's database on the Citus cluster, dropped on every node when the test's app goes.
/// Each database there keeps a Citus maintenance daemon per node and connections between the
/// nodes: the suite's 200-odd databases, left behind, exhausted the cluster's connections
/// ("sorry, too many clients already") within one run. (The embedded cluster is thrown away
/// with its directory instead.)
pub struct CitusDatabase(String);

impl Drop for CitusDatabase {
    fn drop(&mut self) {
        let name = self.0.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on: a thread of its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(drop_citus_databases(&[name])).ok()
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop the test database {} on the Citus cluster", self.0);
        }
    }
}

/// Test databases a run left behind on the Citus cluster (a run stopped before its apps were
/// dropped): those named for a time (`t_{uuid v7}`) more than two hours ago, older than any run
/// of the suite, so a run going on beside this one keeps its own.
fn drop_stale_citus_databases(url: &str) {
    let url = url.to_string();
    let reaped = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
        rt.block_on(async {
            let mut coordinator = PgConnection::connect(&url).await?;
            let names: Vec<String> =
                sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE datname LIKE 't\\_%'")
                    .fetch_all(&mut coordinator)
                    .await?;
            let cutoff = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 3600);
            coordinator.execute("SET citus.enable_create_database_propagation = on").await?;
            for name in names {
                let created = name
                    .strip_prefix("t_")
                    .and_then(|id| uuid::Uuid::parse_str(id).ok())
                    .and_then(|id| id.get_timestamp())
                    .map(|t| {
                        let (secs, nanos) = t.to_unix();
                        std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos)
                    });
                if created.is_some_and(|created| created < cutoff) {
                    coordinator.execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).await?;
                }
            }
            coordinator.close().await
        })
        .ok()
    })
    .join();
    if !matches!(reaped, Ok(Some(()))) {
        eprintln!("could not drop stale test databases on the Citus cluster");
    }
}

/// Drop `names` on every node of the Citus cluster (Citus propagates DROP DATABASE when told
/// to), closing whatever still connects to them.
async fn drop_citus_databases(names: &[String]) -> Result<(), sqlx::Error> {
    let mut coordinator = PgConnection::connect(&(cluster().superuser_url)("postgres")).await?;
    coordinator.execute("SET citus.enable_create_database_propagation = on").await?;
    for name in names {
        coordinator.execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).await?;
    }
    coordinator.close().await
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
