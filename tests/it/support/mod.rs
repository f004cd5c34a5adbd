//! Test support: one throwaway PostgreSQL cluster per test process, a migrated template
//! database, and `spawn_app()`, which gives each test its own fresh database cloned from the
//! template and the real router on top of it. Tests talk to the router in-process.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Method, Request};
use rowguard::cluster::{Durability, EmbeddedCluster, random_secret};
use rowguard::db::{APP_ROLE, PLATFORM_LOGIN_ROLE};
use rowguard::migrate;
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

mod app;
mod client;

pub use app::{TestApp, TestResponse, TestTenant, create_operator, spawn_app, spawn_app_with, spawn_installed_app};

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
