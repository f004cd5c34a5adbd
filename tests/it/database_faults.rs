//! Database faults: PostgreSQL stopped under load and started again. Requests answer 503
//! quickly while it is down, the service recovers by itself, and no acknowledged write is lost.
//! Runs on a cluster of its own, so the shared test cluster never goes down under other tests.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use rowguard::cluster::{Durability, EmbeddedCluster, random_secret};
use rowguard::config::Config;
use rowguard::migrate;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use tokio::sync::Mutex;
use tower::ServiceExt;

enum Command {
    Stop,
    Start,
}

/// A private cluster, owned by a thread of its own (the server is stopped when the thread
/// that started it ends), driven by commands. Dropping the handle stops and removes it.
struct FaultCluster {
    commands: mpsc::Sender<(Command, mpsc::Sender<()>)>,
    thread: Option<std::thread::JoinHandle<()>>,
    superuser_url: String,
    app_url: String,
}

impl Drop for FaultCluster {
    /// Close the command channel and wait: the thread stops the server and removes its data.
    fn drop(&mut self) {
        drop(std::mem::replace(&mut self.commands, mpsc::channel().0));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Data of fault clusters whose test process is gone (killed before it could clean up).
fn remove_leftovers() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let pid = name.strip_prefix("rowguard-faults-").and_then(|rest| rest.split('-').next());
        if let Some(pid) = pid.and_then(|p| p.parse::<u32>().ok())
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl FaultCluster {
    fn start() -> FaultCluster {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (commands, command_rx) = mpsc::channel::<(Command, mpsc::Sender<()>)>();
        remove_leftovers();
        let thread = std::thread::spawn(move || {
            let dir = std::env::temp_dir().join(format!(
                "rowguard-faults-{}-{}",
                std::process::id(),
                uuid::Uuid::now_v7().simple()
            ));
            let mut cluster = EmbeddedCluster::start(&dir, Durability::Throwaway).expect("start the fault cluster");
            let creds = cluster.credentials().clone();
            let superuser_url = cluster.superuser_url("faults");
            let app_url = cluster.url(rowguard::db::APP_ROLE, &creds.app_password, "faults");
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                migrate::create_roles_and_database(&superuser_url, &creds.app_password).await.expect("bootstrap");
                migrate::migrate(&superuser_url).await.expect("migrate");
            });
            drop(rt);
            let _ = ready_tx.send((superuser_url, app_url));
            while let Ok((command, done)) = command_rx.recv() {
                match command {
                    Command::Stop => cluster.stop(),
                    Command::Start => {
                        cluster =
                            EmbeddedCluster::start(&dir, Durability::Throwaway).expect("restart the fault cluster")
                    }
                }
                let _ = done.send(());
            }
            drop(cluster);
            let _ = std::fs::remove_dir_all(&dir);
        });
        let (superuser_url, app_url) = ready_rx.recv().expect("the fault cluster failed to start (see above)");
        FaultCluster { commands, thread: Some(thread), superuser_url, app_url }
    }

    async fn run(&self, command: Command) {
        let (done_tx, done_rx) = mpsc::channel();
        self.commands.send((command, done_tx)).expect("cluster thread");
        tokio::task::spawn_blocking(move || done_rx.recv()).await.expect("join").expect("cluster command");
    }
}

async fn send(
    router: &Router,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request =
        Request::builder().method(method).uri(path).header("host", "localhost").header("x-tenant", "steady");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let body = match body {
        Some(v) => {
            request = request.header("content-type", "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let response = router.clone().oneshot(request.body(body).expect("request")).await.expect("infallible");
    let status = response.status();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        // A client told to come back must be told when.
        let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        assert!(retry_after.is_some_and(|s| s >= 1), "a 503 without a Retry-After: {:?}", response.headers());
    }
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[derive(Default)]
struct Ledger {
    acknowledged: Vec<String>,
    /// (status, how long it took, whether the database was down when it was sent)
    answers: Vec<(StatusCode, Duration, Value)>,
}

#[tokio::test]
async fn a_database_restart_under_load_gives_fast_503s_recovers_and_loses_no_acknowledged_write() {
    let cluster = FaultCluster::start();
    let keys = std::env::temp_dir().join(format!(
        "rowguard-faults-{}-keys-{}",
        std::process::id(),
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&keys).expect("keys dir");
    let config = Config::for_tests(keys.clone());
    let ctx = rowguard::startup::build_context(&config, &cluster.app_url).await.expect("context");
    let router = rowguard::http::router(ctx, rowguard::startup::limits(&config));

    let password = format!("steady-{}", random_secret());
    let pw = password.clone();
    let hash = tokio::task::spawn_blocking(move || rowguard::auth::password::hash_now(&pw))
        .await
        .expect("join")
        .expect("hash");
    // A tenant and its owner, through the platform path (the audit trigger needs the tenant set).
    let mut platform = rowguard::platform::PlatformConn::connect(&cluster.superuser_url).await.expect("platform");
    platform
        .create_tenant(rowguard::platform::NewTenant {
            slug: rowguard::domain::Slug::parse("steady").expect("slug"),
            name: "Steady".into(),
            owner_email: rowguard::domain::Email::parse("owner@steady.test").expect("email"),
            owner_password_hash: hash,
            domains: vec![],
        })
        .await
        .expect("tenant");
    drop(platform);
    let (status, body) = send(
        &router,
        Method::POST,
        "/v1/auth/login",
        None,
        Some(json!({"email": "owner@steady.test", "password": password})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token: Arc<str> = body["access_token"].as_str().expect("token").into();

    // Two writers, each creating contacts one after another until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut writers = Vec::new();
    for writer in 0..2 {
        let (router, token, stop, ledger) =
            (router.clone(), Arc::clone(&token), Arc::clone(&stop), Arc::clone(&ledger));
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let body = json!({"name": format!("w{writer}-{n}"), "email": format!("w{writer}-{n}@steady.test")});
                let started = Instant::now();
                let (status, body) = send(&router, Method::POST, "/v1/contacts", Some(&token), Some(body)).await;
                let mut ledger = ledger.lock().await;
                if status == StatusCode::CREATED {
                    ledger.acknowledged.push(body["id"].as_str().unwrap_or_default().to_string());
                }
                ledger.answers.push((status, started.elapsed(), body));
                drop(ledger);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    let answered = |ledger: &Ledger| ledger.answers.len();

    // Let the load get going (a busy machine may need more than a moment), then stop PostgreSQL.
    let warming = Instant::now();
    while answered(&*ledger.lock().await) < 5 && warming.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before_stop = answered(&*ledger.lock().await);
    cluster.run(Command::Stop).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let during_outage = {
        let ledger = ledger.lock().await;
        ledger.answers[before_stop..].to_vec()
    };
    cluster.run(Command::Start).await;
    let restarted = Instant::now();
    let recovered = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let ledger = ledger.lock().await;
        // Recovered: the last four writes succeeded. The load goes on until at least ten were
        // acknowledged in all, so that the no-loss check below has something to check.
        let last_four_created =
            ledger.answers.iter().rev().take(4).filter(|(s, _, _)| *s == StatusCode::CREATED).count() == 4;
        if last_four_created && ledger.acknowledged.len() >= 10 {
            break Some(restarted.elapsed());
        }
        if restarted.elapsed() > Duration::from_secs(30) {
            break None;
        }
    };
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.await.expect("writer");
    }

    let ledger = ledger.lock().await;
    assert!(before_stop >= 5, "the load never got going: {} answers", before_stop);
    // While down: 503 problem documents, each well within the pool's 3 s acquire timeout
    // plus slack — never a hang until the 10 s request timeout, never a 500.
    let refused: Vec<_> = during_outage.iter().filter(|(s, _, _)| *s != StatusCode::CREATED).collect();
    assert!(!refused.is_empty(), "no request noticed the outage");
    for (status, took, body) in &refused {
        assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["code"], "unavailable", "{body}");
        assert!(*took < Duration::from_millis(4500), "a 503 took {took:?}");
    }
    assert!(
        ledger.answers.iter().all(|(s, _, _)| *s == StatusCode::CREATED || *s == StatusCode::SERVICE_UNAVAILABLE),
        "only 201 or 503: {:?}",
        ledger.answers.iter().filter(|(s, _, _)| !s.is_success()).map(|(s, _, b)| (s, b)).collect::<Vec<_>>()
    );
    assert!(recovered.is_some(), "the service did not recover within 30 s of the restart");

    // Every acknowledged write is there.
    let mut su = PgConnection::connect(&cluster.superuser_url).await.expect("superuser after restart");
    let stored: HashSet<String> = sqlx::query_scalar::<_, uuid::Uuid>("SELECT id FROM contacts")
        .fetch_all(&mut su)
        .await
        .expect("contacts")
        .into_iter()
        .map(|id| id.to_string())
        .collect();
    let lost: Vec<_> = ledger.acknowledged.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(ledger.acknowledged.len() >= 10, "too few writes to mean anything: {}", ledger.acknowledged.len());
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    let (status, body) = send(&router, Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let _ = std::fs::remove_dir_all(&keys);
}
