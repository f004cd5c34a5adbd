//! Webhooks and the outbox (issue 16): deliveries signed per tenant and only to the tenant's
//! own subscribers, in order per resource; atomic with the change; retries, dead letters and
//! redelivery against a receiver on loopback; signatures checked by an HMAC written here from
//! RFC 2104 and the Standard Webhooks description (not by the code under test); SSRF refusals;
//! fairness under one tenant's flood; two instances draining one outbox; isolation as SQL.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rowguard::config::Config;
use rowguard::db::TenantTx;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection};

use crate::support::{TestApp, TestTenant, spawn_app_with, spawn_installed_app};

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Hit {
    path: String,
    id: String,
    timestamp: String,
    signature: String,
    body: String,
    answered: u16,
}

impl Hit {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a delivery's body is JSON")
    }
}

/// How the receiver answers: the next `fail` requests with `status`, then 200, each after `delay`.
#[derive(Default)]
struct Plan {
    fail: usize,
    status: u16,
    delay: Duration,
}

#[derive(Clone, Default)]
struct Shared {
    hits: Arc<Mutex<Vec<Hit>>>,
    plan: Arc<Mutex<HashMap<String, Plan>>>,
}

/// A webhook receiver on loopback.
struct Receiver {
    addr: SocketAddr,
    shared: Shared,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Receiver {
    async fn start() -> Receiver {
        let shared = Shared::default();
        let router = Router::new().fallback(receive).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Receiver { addr, shared, _stop: stop }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn plan(&self, path: &str, plan: Plan) {
        self.shared.plan.lock().expect("lock").insert(path.to_string(), plan);
    }

    fn hits(&self, path: &str) -> Vec<Hit> {
        self.shared.hits.lock().expect("lock").iter().filter(|h| h.path == path).cloned().collect()
    }

    /// Wait until `path` got `n` successful deliveries (200), up to `within`.
    async fn wait_delivered(&self, path: &str, n: usize, within: Duration) -> Vec<Hit> {
        let start = Instant::now();
        loop {
            let hits = self.hits(path);
            if hits.iter().filter(|h| h.answered == 200).count() >= n {
                return hits;
            }
            assert!(
                start.elapsed() < within,
                "{path}: {} of {n} deliveries after {within:?}: {hits:?}",
                hits.iter().filter(|h| h.answered == 200).count()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

async fn receive(State(shared): State<Shared>, uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    let path = uri.path().to_string();
    let (status, delay) = {
        let mut plans = shared.plan.lock().expect("lock");
        match plans.get_mut(&path) {
            Some(plan) if plan.fail > 0 => {
                plan.fail -= 1;
                (plan.status, plan.delay)
            }
            Some(plan) => (200, plan.delay),
            None => (200, Duration::ZERO),
        }
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    shared.hits.lock().expect("lock").push(Hit {
        path,
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body: String::from_utf8_lossy(&body).into_owned(),
        answered: status,
    });
    StatusCode::from_u16(status).unwrap_or(StatusCode::OK)
}

/// HMAC-SHA256 as RFC 2104 defines it, on SHA-256's 64-byte block.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner_pad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let outer_pad: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new().chain_update(&inner_pad).chain_update(message).finalize();
    Sha256::new().chain_update(&outer_pad).chain_update(inner).finalize().into()
}

/// The Standard Webhooks check a receiver makes: the key is the base64 after `whsec_`; the
/// signed content is `{webhook-id}.{webhook-timestamp}.{body}`; any one `v1,<base64>` entry of
/// the space-separated header must match; the timestamp must be recent (replay).
fn signed_by(secret: &str, hit: &Hit) -> bool {
    let key = STANDARD.decode(secret.strip_prefix("whsec_").expect("whsec_ prefix")).expect("base64 key");
    let content = format!("{}.{}.{}", hit.id, hit.timestamp, hit.body);
    let expected = format!("v1,{}", STANDARD.encode(hmac_sha256(&key, content.as_bytes())));
    let timestamp: i64 = hit.timestamp.parse().expect("a numeric timestamp");
    let fresh = (chrono::Utc::now().timestamp() - timestamp).abs() < 300;
    fresh && hit.signature.split(' ').any(|s| s == expected)
}

/// The subscription's delivery log once `done` holds for it (the receiver answers before the
/// worker records the attempt, so a test that saw a delivery waits for its record).
async fn log_when(app: &TestApp, token: &str, tenant: &str, hook: &str, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let log = app.call_as(token, tenant, Method::GET, &format!("/v1/webhooks/{hook}/deliveries"), None).await;
        if done(&log.body) {
            return log.body;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "the delivery log never got there: {}", log.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn cli(app: &TestApp, data_dir: &std::path::Path, args: &[&str]) -> String {
    let out = crate::cli_concurrency::rowguard(&app.cli_env(), data_dir, args).output().await.expect("run rowguard");
    assert!(out.status.success(), "rowguard {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn with_workers(config: &mut Config) {
    config.workers = 4;
    config.webhook_retry_base_ms = 20;
    config.webhook_allow_local = Some(true);
}

async fn subscribe(app: &TestApp, token: &str, tenant: &str, url: &str, events: Value) -> (String, String) {
    let r = app.call_as(token, tenant, Method::POST, "/v1/webhooks", Some(json!({"url": url, "events": events}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "subscribe: {}", r.body);
    let secret = r.body["secret"].as_str().expect("the secret, shown once").to_string();
    (r.body["id"].as_str().expect("id").to_string(), secret)
}

async fn create_contact(app: &TestApp, token: &str, tenant: &str, name: &str) -> String {
    let body = json!({"name": name, "email": format!("{}@example.com", name.to_lowercase().replace(' ', "."))});
    let r = app.call_as(token, tenant, Method::POST, "/v1/contacts", Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "create contact: {}", r.body);
    r.body["id"].as_str().expect("id").to_string()
}

async fn two_tenants(app: &TestApp) -> (TestTenant, String, TestTenant, String) {
    let a = app.create_tenant("acme").await;
    let b = app.create_tenant("globex").await;
    let (ta, tb) = (app.owner_token(&a).await, app.owner_token(&b).await);
    (a, ta, b, tb)
}

#[tokio::test]
async fn changes_reach_only_their_tenants_subscribers_signed_and_in_order() {
    let app = spawn_app_with(with_workers).await;
    let receiver = Receiver::start().await;
    let (a, ta, b, tb) = two_tenants(&app).await;
    let (hook_a, secret_a) = subscribe(&app, &ta, &a.slug, &receiver.url("/acme"), json!(["contact.*"])).await;
    let (_, secret_b) = subscribe(&app, &tb, &b.slug, &receiver.url("/globex"), json!(["contact.created"])).await;

    let contact = create_contact(&app, &ta, &a.slug, "Ada Lovelace").await;
    let path = format!("/v1/contacts/{contact}");
    for name in ["Ada King", "Ada, Countess"] {
        let r = app.call_as(&ta, &a.slug, Method::PATCH, &path, Some(json!({"name": name}))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    assert_eq!(app.call_as(&ta, &a.slug, Method::DELETE, &path, None).await.status, StatusCode::NO_CONTENT);
    let other = create_contact(&app, &tb, &b.slug, "Grace Hopper").await;
    // B subscribed to creations only: its update is not sent.
    let r = app
        .call_as(&tb, &b.slug, Method::PATCH, &format!("/v1/contacts/{other}"), Some(json!({"name": "G. Hopper"})))
        .await;
    assert_eq!(r.status, StatusCode::OK);

    receiver.wait_delivered("/acme", 4, Duration::from_secs(20)).await;
    receiver.wait_delivered("/globex", 1, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (acme, globex) = (receiver.hits("/acme"), receiver.hits("/globex"));
    assert_eq!(acme.len(), 4, "A's four changes, each once: {acme:?}");
    assert_eq!(globex.len(), 1, "B's creation only: {globex:?}");

    let types: Vec<String> = acme.iter().map(|h| h.json()["type"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(types, ["contact.created", "contact.updated", "contact.updated", "contact.deleted"], "in order");
    for hit in &acme {
        assert!(signed_by(&secret_a, hit), "A's delivery signed with A's secret: {hit:?}");
        assert!(!signed_by(&secret_b, hit), "and not with B's");
        assert_eq!(hit.json()["data"]["id"], contact.as_str(), "only A's contact in A's deliveries");
    }
    assert_eq!(acme[1].json()["data"]["after"]["name"], "Ada King");
    assert_eq!(acme[1].json()["data"]["before"]["name"], "Ada Lovelace");
    assert!(acme[0].json()["data"]["after"].get("tenant_id").is_none(), "no tenant id in the payload");
    let ids: std::collections::HashSet<&str> = acme.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(ids.len(), 4, "one webhook-id per message");
    assert!(signed_by(&secret_b, &globex[0]) && !signed_by(&secret_a, &globex[0]));
    assert_eq!(globex[0].json()["data"]["after"]["name"], "Grace Hopper");

    // The delivery log: A's four attempts, delivered; B cannot see A's subscription or its log.
    let log = log_when(&app, &ta, &a.slug, &hook_a, |l| {
        l["items"].as_array().is_some_and(|i| i.len() == 4 && i.iter().all(|d| d["message_status"] == "delivered"))
    })
    .await;
    let items = log["items"].as_array().expect("items");
    assert!(items.iter().all(|d| d["status_code"] == 200), "{log}");
    for path in [format!("/v1/webhooks/{hook_a}"), format!("/v1/webhooks/{hook_a}/deliveries")] {
        app.call_as(&tb, &b.slug, Method::GET, &path, None).await.assert_problem(StatusCode::NOT_FOUND, "not_found");
    }
    let r = app
        .call_as(&tb, &b.slug, Method::PATCH, &format!("/v1/webhooks/{hook_a}"), Some(json!({"enabled": false})))
        .await;
    r.assert_problem(StatusCode::NOT_FOUND, "not_found");
    app.call_as(&tb, &b.slug, Method::DELETE, &format!("/v1/webhooks/{hook_a}"), None)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not_found");
    // The secret is never shown again.
    let shown = app.call_as(&ta, &a.slug, Method::GET, &format!("/v1/webhooks/{hook_a}"), None).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert!(!shown.body.to_string().contains("whsec_"), "{}", shown.body);
}

async fn outbox_count(conn: &mut PgConnection, tenant: rowguard::domain::TenantId) -> i64 {
    let mut tx = TenantTx::begin_on(conn, tenant).await.expect("begin");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(tx.conn()).await.expect("count");
    tx.commit().await.expect("commit");
    n
}

#[tokio::test]
async fn a_rolled_back_change_enqueues_nothing_and_a_committed_one_always_does() {
    let app = spawn_app_with(|_| {}).await; // no workers: the outbox stays as written
    let a = app.create_tenant("acme").await;
    let token = app.owner_token(&a).await;
    subscribe(&app, &token, &a.slug, "http://127.0.0.1:9/hook", json!(["*"])).await;
    let mut conn = app.app_connection().await;

    let insert =
        "INSERT INTO contacts (tenant_id, id, name, email) VALUES ($1, gen_random_uuid(), 'X', 'x@example.com')";
    {
        let mut tx = TenantTx::begin_on(&mut conn, a.id).await.expect("begin");
        sqlx::query(insert).bind(a.id).execute(tx.conn()).await.expect("insert");
        // dropped: rolled back
    }
    assert_eq!(outbox_count(&mut conn, a.id).await, 0, "a rolled-back change left an outbox item");
    let mut tx = TenantTx::begin_on(&mut conn, a.id).await.expect("begin");
    sqlx::query(insert).bind(a.id).execute(tx.conn()).await.expect("insert");
    tx.commit().await.expect("commit");
    assert_eq!(outbox_count(&mut conn, a.id).await, 1, "a committed change has its delivery queued");

    // Over HTTP: a write refused by the database (a deal naming a missing contact) enqueues nothing.
    let body = json!({"title": "T", "contact_id": uuid::Uuid::now_v7(), "amount": "1.00", "currency": "EUR"});
    let r = app.call_as(&token, &a.slug, Method::POST, "/v1/deals", Some(body)).await;
    assert!(r.status.is_client_error(), "{}", r.body);
    assert_eq!(outbox_count(&mut conn, a.id).await, 1);
    // The subscription's own creation is not an event (no loop through `*`).
    assert_eq!(outbox_count(&mut conn, a.id).await, 1);
}

#[tokio::test]
async fn outbox_tables_are_isolated_as_sql_and_a_worker_reads_nothing_of_another_tenant() {
    let app = spawn_app_with(|_| {}).await;
    let (a, ta, b, _) = two_tenants(&app).await;
    let (hook_a, _) = subscribe(&app, &ta, &a.slug, "http://127.0.0.1:9/a", json!(["*"])).await;
    create_contact(&app, &ta, &a.slug, "Ada").await;
    let mut conn = app.app_connection().await;
    let item_a: i64 = {
        let mut tx = TenantTx::begin_on(&mut conn, a.id).await.expect("begin");
        let id = sqlx::query_scalar("SELECT id FROM outbox").fetch_one(tx.conn()).await.expect("A's item");
        tx.commit().await.expect("commit");
        id
    };
    let hook_a: uuid::Uuid = hook_a.parse().expect("uuid");

    let mut tx = TenantTx::begin_on(&mut conn, b.id).await.expect("begin");
    for table in ["webhooks", "outbox", "webhook_deliveries"] {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(tx.conn())
            .await
            .expect("count");
        assert_eq!(n, 0, "B sees A's {table}");
    }
    let touched = sqlx::query("UPDATE outbox SET status = 'discarded' WHERE id = $1")
        .bind(item_a)
        .execute(tx.conn())
        .await
        .expect("update")
        .rows_affected();
    assert_eq!(touched, 0, "B changed A's outbox item");
    let touched =
        sqlx::query("DELETE FROM webhooks WHERE id = $1").bind(hook_a).execute(tx.conn()).await.expect("delete");
    assert_eq!(touched.rows_affected(), 0);
    // Writing a row for A, or one of B's that references A's subscription, is refused.
    sqlx::query("SAVEPOINT s").execute(tx.conn()).await.expect("savepoint");
    let e = sqlx::query(
        "INSERT INTO webhooks (tenant_id, id, url, events, secret) VALUES ($1, gen_random_uuid(), 'https://x.example', '{*}', 'whsec_')",
    )
    .bind(a.id)
    .execute(tx.conn())
    .await
    .expect_err("a webhook for A written by B");
    assert!(e.to_string().contains("row-level security"), "{e}");
    sqlx::query("ROLLBACK TO s").execute(tx.conn()).await.expect("rollback to");
    let e = sqlx::query(
        "INSERT INTO outbox (tenant_id, webhook_id, message_id, event_type, resource_key, payload)
         VALUES ($1, $2, gen_random_uuid(), 'contact.created', 'x', '{}')",
    )
    .bind(b.id)
    .bind(hook_a)
    .execute(tx.conn())
    .await
    .expect_err("B's item for A's subscription");
    assert!(e.to_string().contains("foreign key"), "{e}");
    drop(tx);

    // The queue and the scheduler's functions are not the app role's to touch directly.
    let e = sqlx::query("SELECT count(*) FROM outbox_queue").execute(&mut conn).await.expect_err("queue read");
    assert!(e.to_string().contains("permission denied"), "{e}");
    let e = sqlx::query("DELETE FROM outbox_queue").execute(&mut conn).await.expect_err("queue write");
    assert!(e.to_string().contains("permission denied"), "{e}");

    // A worker in B's transaction given A's item id reads nothing (RLS), so sends nothing.
    let db = rowguard::db::Database::connect(&app.app_url(), 2, &[]).await.expect("connect");
    assert!(db.outbox_item(b.id, item_a).await.expect("read").is_none(), "B's worker read A's item");
    assert!(db.outbox_item(a.id, item_a).await.expect("read").is_some(), "A's own item is readable in A's transaction");
    db.close().await;
    conn.close().await.expect("close");
}

#[tokio::test]
async fn a_receiver_failing_five_times_gets_the_event_once_after_the_retries() {
    let app = spawn_app_with(with_workers).await;
    let receiver = Receiver::start().await;
    receiver.plan("/flaky", Plan { fail: 5, status: 500, delay: Duration::ZERO });
    let a = app.create_tenant("acme").await;
    let token = app.owner_token(&a).await;
    let (hook, secret) = subscribe(&app, &token, &a.slug, &receiver.url("/flaky"), json!(["contact.created"])).await;
    create_contact(&app, &token, &a.slug, "Ada").await;

    receiver.wait_delivered("/flaky", 1, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hits = receiver.hits("/flaky");
    let answered: Vec<u16> = hits.iter().map(|h| h.answered).collect();
    assert_eq!(answered, [500, 500, 500, 500, 500, 200], "five failures, one success, nothing after");
    assert!(hits.iter().all(|h| h.id == hits[0].id), "the same webhook-id on every attempt");
    assert!(hits.iter().all(|h| signed_by(&secret, h)));
    let log = log_when(&app, &token, &a.slug, &hook, |l| l["items"].as_array().is_some_and(|i| i.len() >= 6)).await;
    let attempts: Vec<(i64, i64)> = log["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|d| (d["attempt"].as_i64().unwrap_or(0), d["status_code"].as_i64().unwrap_or(0)))
        .collect();
    assert_eq!(attempts, [(6, 200), (5, 500), (4, 500), (3, 500), (2, 500), (1, 500)], "newest first: {log}");
}

#[tokio::test]
async fn a_dead_letter_is_kept_retried_by_the_cli_and_redelivered_over_the_api() {
    let app = spawn_installed_app().await;
    let app = app
        .another_instance_with(|c| {
            with_workers(c);
            c.webhook_max_attempts = 3;
        })
        .await;
    let receiver = Receiver::start().await;
    receiver.plan("/down", Plan { fail: usize::MAX, status: 503, delay: Duration::ZERO });
    let a = app.create_tenant("acme").await;
    let token = app.owner_token(&a).await;
    let (hook, _) = subscribe(&app, &token, &a.slug, &receiver.url("/down"), json!(["contact.created"])).await;
    create_contact(&app, &token, &a.slug, "Ada").await;

    // Three attempts, then a dead letter: no fourth.
    let start = Instant::now();
    loop {
        let log = app.call_as(&token, &a.slug, Method::GET, &format!("/v1/webhooks/{hook}/deliveries"), None).await;
        if log.body["items"][0]["message_status"] == "dead" {
            assert_eq!(log.body["items"].as_array().map(Vec::len), Some(3), "{}", log.body);
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "never dead: {}", log.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.hits("/down").len(), 3);

    let data_dir = crate::support::scratch_dir("webhooks-cli");
    let status = cli(&app, &data_dir, &["jobs", "status", "--json"]).await;
    let rows: Value = serde_json::from_str(&status).expect("json");
    assert_eq!(rows[0]["slug"], "acme", "{status}");
    assert_eq!(rows[0]["dead"], 1, "{status}");
    assert_eq!(rows[0]["pending"], 0, "{status}");

    // /metrics: the dead letter, measured by the worker loop about once a second.
    let start = Instant::now();
    loop {
        let text = app.call(Method::GET, "/metrics", &[], None).await.body;
        let text = text.as_str().unwrap_or_default().to_string();
        if text.lines().any(|l| l == "rowguard_outbox_dead 1") {
            assert!(text.lines().any(|l| l == "rowguard_webhook_deliveries_total{outcome=\"dead\"} 1"), "{text}");
            assert!(text.lines().any(|l| l == "rowguard_webhook_deliveries_total{outcome=\"failed\"} 2"), "{text}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no dead letter in /metrics: {text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    receiver.plan("/down", Plan::default());
    let out = cli(&app, &data_dir, &["jobs", "retry", "--tenant", "acme", "--all-dead"]).await;
    assert!(out.contains("1 dead letter(s) queued again"), "{out}");
    receiver.wait_delivered("/down", 1, Duration::from_secs(20)).await;

    // Sent again on request: the same message id, a fresh set of attempts.
    let log = log_when(&app, &token, &a.slug, &hook, |l| l["items"][0]["message_status"] == "delivered").await;
    let delivery = log["items"][0]["id"].as_i64().expect("latest attempt");
    let path = format!("/v1/webhooks/{hook}/deliveries/{delivery}/redeliver");
    let r = app.call_as(&token, &a.slug, Method::POST, &path, None).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let hits = receiver.wait_delivered("/down", 2, Duration::from_secs(20)).await;
    let ok: Vec<&Hit> = hits.iter().filter(|h| h.answered == 200).collect();
    assert_eq!(ok[0].id, ok[1].id, "a redelivery keeps the webhook-id");
}

#[tokio::test]
async fn webhook_targets_outside_development_must_be_public_https() {
    let app = spawn_app_with(|c| {
        c.webhook_allow_local = Some(false);
        c.workers = 2;
    })
    .await;
    let a = app.create_tenant("acme").await;
    let token = app.owner_token(&a).await;
    for url in [
        "http://example.com/hook",
        "https://127.0.0.1/hook",
        "https://localhost:8443/hook",
        "https://10.0.0.7/hook",
        "https://[::1]/hook",
        "https://[::ffff:192.168.0.1]/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://user:secret@example.com/hook",
        "ftp://example.com/",
        "not a url",
    ] {
        let r = app
            .call_as(&token, &a.slug, Method::POST, "/v1/webhooks", Some(json!({"url": url, "events": ["*"]})))
            .await;
        r.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "webhook_url_refused");
    }
    let r = app
        .call_as(
            &token,
            &a.slug,
            Method::POST,
            "/v1/webhooks",
            Some(json!({"url": "https://x.example", "events": ["invoice.created"]})),
        )
        .await;
    r.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "unknown_event_type");

    // A subscription that got past the API some other way (written by hand) is still refused at
    // delivery: the connection is never made, and the log says why.
    let receiver = Receiver::start().await;
    let mut su = app.superuser_connection().await;
    let hook = uuid::Uuid::now_v7();
    let mut tx = TenantTx::begin_on(&mut su, a.id).await.expect("begin");
    sqlx::query("INSERT INTO webhooks (tenant_id, id, url, events, secret) VALUES ($1, $2, $3, '{*}', 'whsec_AAAA')")
        .bind(a.id)
        .bind(hook)
        .bind(format!("https://localhost:{}/sneaky", receiver.addr.port()))
        .execute(tx.conn())
        .await
        .expect("insert by hand");
    tx.commit().await.expect("commit");
    su.close().await.expect("close");
    create_contact(&app, &token, &a.slug, "Ada").await;
    let start = Instant::now();
    loop {
        let log = app.call_as(&token, &a.slug, Method::GET, &format!("/v1/webhooks/{hook}/deliveries"), None).await;
        if let Some(error) = log.body["items"][0]["error"].as_str() {
            assert!(error.contains("no public address"), "{error}");
            assert!(log.body["items"][0]["status_code"].is_null());
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no attempt logged: {}", log.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(receiver.hits("/sneaky").is_empty(), "the receiver on loopback was reached");
}

/// `n` outbox items of one webhook, `contact/1` … `contact/n`, written as a change would write
/// them (in the tenant's transaction `tx`, one chain each). `payload` is the SQL of an item's
/// body given the SQL of its number.
async fn enqueue(
    app: &TestApp,
    tx: &mut TenantTx<'_>,
    tenant: rowguard::domain::TenantId,
    hook: uuid::Uuid,
    n: i64,
    payload: impl Fn(&str) -> String,
) {
    if app.on_citus() {
        // Citus turns an INSERT … SELECT from a set-returning function into a COPY, which it
        // refuses on a table with row-level security: multi-row VALUES instead, in batches.
        for start in (1..=n).step_by(2000) {
            let rows: Vec<String> = (start..=(start + 1999).min(n))
                .map(|i| {
                    format!(
                        "($1, $2, gen_random_uuid(), 'contact.updated', 'contact/{i}', {})",
                        payload(&i.to_string())
                    )
                })
                .collect();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO outbox (tenant_id, webhook_id, message_id, event_type, resource_key, payload) VALUES {}",
                rows.join(", ")
            )))
            .bind(tenant)
            .bind(hook)
            .execute(tx.conn())
            .await
            .expect("outbox items");
        }
    } else {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO outbox (tenant_id, webhook_id, message_id, event_type, resource_key, payload)
             SELECT $1, $2, gen_random_uuid(), 'contact.updated', 'contact/' || n, {}
               FROM generate_series(1, $3) AS n",
            payload("n")
        )))
        .bind(tenant)
        .bind(hook)
        .bind(n)
        .execute(tx.conn())
        .await
        .expect("outbox items");
    }
}

#[tokio::test]
async fn one_tenants_flood_does_not_hold_back_another_tenants_first_delivery() {
    let app = spawn_app_with(with_workers).await;
    let receiver = Receiver::start().await;
    receiver.plan("/flood", Plan { fail: 0, status: 200, delay: Duration::from_millis(20) });
    let (a, ta, b, tb) = two_tenants(&app).await;
    let (hook_a, _) = subscribe(&app, &ta, &a.slug, &receiver.url("/flood"), json!(["*"])).await;
    subscribe(&app, &tb, &b.slug, &receiver.url("/quiet"), json!(["*"])).await;
    // 100,000 items of A's, queued as a change would queue them (in A's transaction). The app
    // role's 5 s statement timeout is lifted for this one statement: on a loaded machine (the
    // whole suite running) writing 100,000 rows with their queue rows can take longer.
    let mut conn = app.app_connection().await;
    let mut tx = TenantTx::begin_on(&mut conn, a.id).await.expect("begin");
    sqlx::query("SET LOCAL statement_timeout = '120s'").execute(tx.conn()).await.expect("timeout");
    let hook_a = uuid::Uuid::parse_str(&hook_a).expect("uuid");
    enqueue(&app, &mut tx, a.id, hook_a, 100_000, |n| format!("jsonb_build_object('n', {n})")).await;
    tx.commit().await.expect("commit");
    receiver.wait_delivered("/flood", 20, Duration::from_secs(30)).await;

    let start = Instant::now();
    create_contact(&app, &tb, &b.slug, "Grace").await;
    receiver.wait_delivered("/quiet", 1, Duration::from_secs(30)).await;
    let waited = start.elapsed();
    let backlog: i64 = {
        let mut tx = TenantTx::begin_on(&mut conn, a.id).await.expect("begin");
        let n = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE status = 'pending'")
            .fetch_one(tx.conn())
            .await
            .expect("count");
        tx.commit().await.expect("commit");
        n
    };
    assert!(backlog > 90_000, "A's flood was not still there ({backlog} left), so this proved nothing");
    // Bound: one claim turn. With the flood's receiver taking 20 ms per delivery and 4 at a
    // time, B's item waits at most for the deliveries in flight (plus polling): well under a
    // second here, 5 s to spare a loaded CI machine — without the turn it waits behind 100,000.
    assert!(waited < Duration::from_secs(5), "B's first delivery waited {waited:?} behind A's flood");
    println!("B's first delivery behind A's 100,000: {waited:?}");
    conn.close().await.expect("close");
}

#[tokio::test]
async fn two_instances_drain_one_outbox_without_delivering_twice() {
    let app = spawn_app_with(with_workers).await;
    let other = app.another_instance_with(with_workers).await;
    let receiver = Receiver::start().await;
    let a = app.create_tenant("acme").await;
    let token = app.owner_token(&a).await;
    subscribe(&app, &token, &a.slug, &receiver.url("/both"), json!(["contact.*"])).await;
    // 30 contacts, each created and then renamed twice: 90 messages, 30 chains of 3.
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(create_contact(if i % 2 == 0 { &app } else { &other }, &token, &a.slug, &format!("C{i}")).await);
    }
    for round in 0..2 {
        for (i, id) in ids.iter().enumerate() {
            let instance = if (i + round) % 2 == 0 { &app } else { &other };
            let r = instance
                .call_as(
                    &token,
                    &a.slug,
                    Method::PATCH,
                    &format!("/v1/contacts/{id}"),
                    Some(json!({"name": format!("C{i} r{round}")})),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK);
        }
    }
    receiver.wait_delivered("/both", 90, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hits = receiver.hits("/both");
    let mut per_message: HashMap<String, usize> = HashMap::new();
    for hit in &hits {
        *per_message.entry(hit.id.clone()).or_default() += 1;
    }
    let duplicates = hits.len() - per_message.len();
    println!("two instances: {} deliveries of {} messages, {duplicates} duplicates", hits.len(), per_message.len());
    assert_eq!(per_message.len(), 90, "every message delivered");
    assert_eq!(duplicates, 0, "claims are exclusive; a duplicate needs a worker to die between send and record");
    // In order per contact, whichever instance sent each.
    let mut per_contact: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for hit in &hits {
        let body = hit.json();
        per_contact
            .entry(body["data"]["id"].as_str().unwrap_or("").to_string())
            .or_default()
            .push(body["type"].as_str().unwrap_or("").to_string());
    }
    for (contact, types) in per_contact {
        assert_eq!(types, ["contact.created", "contact.updated", "contact.updated"], "contact {contact}");
    }
}

#[tokio::test]
async fn shutdown_finishes_the_delivery_in_flight() {
    let app = spawn_app_with(with_workers).await;
    let receiver = Receiver::start().await;
    receiver.plan("/slow", Plan { fail: 0, status: 200, delay: Duration::from_millis(1500) });
    let a = app.create_tenant("acme").await;
    let token = app.owner_token(&a).await;
    subscribe(&app, &token, &a.slug, &receiver.url("/slow"), json!(["contact.created"])).await;
    create_contact(&app, &token, &a.slug, "Ada").await;
    // Wait until the delivery is in flight (claimed: off the due list), then shut down.
    let mut conn = app.app_connection().await;
    let start = Instant::now();
    loop {
        let mut tx = TenantTx::begin_on(&mut conn, a.id).await.expect("begin");
        let in_flight: bool =
            sqlx::query_scalar("SELECT count(*) = 1 FROM outbox").fetch_one(tx.conn()).await.expect("count");
        tx.commit().await.expect("commit");
        if in_flight && start.elapsed() > Duration::from_millis(600) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.ctx.workers.as_ref().expect("workers").shutdown().await;
    let mut tx = TenantTx::begin_on(&mut conn, a.id).await.expect("begin");
    let status: String = sqlx::query_scalar("SELECT status FROM outbox").fetch_one(tx.conn()).await.expect("status");
    tx.commit().await.expect("commit");
    assert_eq!(status, "delivered", "the delivery in flight was finished and recorded before shutdown returned");
    assert_eq!(receiver.hits("/slow").len(), 1);
    conn.close().await.expect("close");
}

#[tokio::test]
async fn webhooks_are_for_owners_and_admins_and_a_rotation_signs_with_both_secrets() {
    let app = spawn_app_with(with_workers).await;
    let receiver = Receiver::start().await;
    let a = app.create_tenant("acme").await;
    let token = app.owner_token(&a).await;
    for role in ["manager", "member", "auditor"] {
        let user = app.create_user(&a, role).await;
        let r = app.call_as(&user.access_token, &a.slug, Method::GET, "/v1/webhooks", None).await;
        r.assert_problem(StatusCode::FORBIDDEN, "forbidden");
    }
    let admin = app.create_user(&a, "admin").await;
    let (hook, old) =
        subscribe(&app, &admin.access_token, &a.slug, &receiver.url("/rot"), json!(["contact.created"])).await;
    let r = app.call_as(&token, &a.slug, Method::POST, &format!("/v1/webhooks/{hook}/rotate-secret"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let new = r.body["secret"].as_str().expect("new secret").to_string();
    assert_ne!(new, old);
    assert!(r.body["previous_secret_expires_at"].is_string(), "{}", r.body);
    create_contact(&app, &token, &a.slug, "Ada").await;
    let hits = receiver.wait_delivered("/rot", 1, Duration::from_secs(20)).await;
    assert!(signed_by(&new, &hits[0]) && signed_by(&old, &hits[0]), "both secrets sign during the overlap");
    assert_eq!(hits[0].signature.split(' ').count(), 2);
    // Disabled: no new deliveries.
    let r = app
        .call_as(&token, &a.slug, Method::PATCH, &format!("/v1/webhooks/{hook}"), Some(json!({"enabled": false})))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["enabled"], false);
    create_contact(&app, &token, &a.slug, "Grace").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(receiver.hits("/rot").len(), 1, "a disabled subscription got a delivery");
}

#[tokio::test]
async fn a_tenant_whose_receiver_hangs_holds_at_most_half_the_slots() {
    let app = spawn_app_with(with_workers).await; // 4 slots: at most 2 for one tenant
    let receiver = Receiver::start().await;
    receiver.plan("/hangs", Plan { fail: 0, status: 200, delay: Duration::from_secs(8) });
    let (a, ta, b, tb) = two_tenants(&app).await;
    subscribe(&app, &ta, &a.slug, &receiver.url("/hangs"), json!(["contact.created"])).await;
    subscribe(&app, &tb, &b.slug, &receiver.url("/fine"), json!(["contact.created"])).await;
    for i in 0..8 {
        create_contact(&app, &ta, &a.slug, &format!("Slow {i}")).await;
    }
    // Let A's deliveries take whatever slots they can.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let start = Instant::now();
    for i in 0..3 {
        create_contact(&app, &tb, &b.slug, &format!("Quick {i}")).await;
    }
    receiver.wait_delivered("/fine", 3, Duration::from_secs(20)).await;
    let waited = start.elapsed();
    // Without the cap, A's 8 deliveries would hold all 4 slots for 8 s each (B waited 3.5 s
    // behind a 4 s delay when the cap was taken out).
    assert!(waited < Duration::from_secs(4), "B's deliveries waited {waited:?} behind A's hanging receiver");
}

#[tokio::test]
async fn many_tenants_waiting_for_retries_do_not_stall_the_turn() {
    let app = spawn_app_with(with_workers).await;
    let receiver = Receiver::start().await;
    // 70 tenants (more than one claim visits) whose only item waits for a retry an hour away,
    // then one more tenant, later in id order, with something to send now.
    let mut conn = app.app_connection().await;
    for i in 0..70 {
        let t = app.create_tenant(&format!("waiting-{i}")).await;
        let mut tx = TenantTx::begin_on(&mut conn, t.id).await.expect("begin");
        let hook = uuid::Uuid::now_v7();
        sqlx::query("INSERT INTO webhooks (tenant_id, id, url, events, secret) VALUES ($1, $2, 'http://127.0.0.1:9/x', '{*}', 'whsec_AAAA')")
            .bind(t.id)
            .bind(hook)
            .execute(tx.conn())
            .await
            .expect("webhook");
        sqlx::query(
            "INSERT INTO outbox (tenant_id, webhook_id, message_id, event_type, resource_key, payload, next_attempt_at)
             VALUES ($1, $2, gen_random_uuid(), 'contact.updated', 'contact/x', '{}', now() + interval '1 hour')",
        )
        .bind(t.id)
        .bind(hook)
        .execute(tx.conn())
        .await
        .expect("item in backoff");
        tx.commit().await.expect("commit");
    }
    let last = app.create_tenant("zulu").await;
    let token = app.owner_token(&last).await;
    subscribe(&app, &token, &last.slug, &receiver.url("/zulu"), json!(["contact.created"])).await;
    let start = Instant::now();
    create_contact(&app, &token, &last.slug, "Zoe").await;
    receiver.wait_delivered("/zulu", 1, Duration::from_secs(20)).await;
    // Without a turn that moves on past tenants with nothing due, it is never delivered.
    assert!(start.elapsed() < Duration::from_secs(6), "waited {:?}", start.elapsed());
    conn.close().await.expect("close");
}

#[tokio::test]
async fn one_tenants_backlog_drains_without_waiting_out_the_poll_interval_at_its_cap() {
    // 4 slots, 2 for one tenant; a 1 s poll, so that waiting it out (2 deliveries a second, 50 s
    // for 100) stands far apart from draining, even on a loaded Citus cluster (6–9 s seen).
    let app = spawn_app_with(|config| {
        with_workers(config);
        config.worker_poll_ms = 1_000;
    })
    .await;
    let receiver = Receiver::start().await;
    let a = app.create_tenant("acme").await;
    let token = app.owner_token(&a).await;
    let (hook, _) = subscribe(&app, &token, &a.slug, &receiver.url("/many"), json!(["*"])).await;
    let mut conn = app.app_connection().await;
    let mut tx = TenantTx::begin_on(&mut conn, a.id).await.expect("begin");
    enqueue(&app, &mut tx, a.id, uuid::Uuid::parse_str(&hook).expect("uuid"), 100, |_| "'{}'".into()).await;
    tx.commit().await.expect("commit");
    let start = Instant::now();
    receiver.wait_delivered("/many", 100, Duration::from_secs(60)).await;
    // At its cap the tenant is skipped by a claim; the worker must claim again when one of its
    // deliveries ends, not sleep out the poll: that would be 2 per second, 50 s for 100.
    assert!(start.elapsed() < Duration::from_secs(20), "100 deliveries took {:?}", start.elapsed());
    conn.close().await.expect("close");
}

#[tokio::test]
async fn an_adopted_tables_changes_go_out_under_its_name_sent_by_a_separate_rowguard_worker() {
    let (app, _dir) = crate::adopt::app_with_operator_tables().await;
    crate::adopt::adopt_both(&app).await;
    // This instance runs no workers: the separate `rowguard worker` process sends.
    let served = app.another_instance().await;
    let receiver = Receiver::start().await;
    let a = served.create_tenant("acme").await;
    let token = served.owner_token(&a).await;
    let (_, secret) = subscribe(&served, &token, &a.slug, &receiver.url("/projects"), json!(["projects.*"])).await;
    let data_dir = crate::support::scratch_dir("webhooks-worker");
    let mut command = crate::cli_concurrency::rowguard(&served.cli_env(), &data_dir, &["worker"]);
    // DATABASE_URL is set, so this is not development: the loopback receiver needs the switch.
    command.env("ROWGUARD_WEBHOOK_ALLOW_LOCAL", "true");
    let mut worker = command.spawn().expect("start rowguard worker");

    let new = json!({"name": "Apollo", "budget": "12.50", "secret_token": "s3cret", "ApiToken": "t0ken"});
    let r = served.call_as(&token, &a.slug, Method::POST, "/v1/data/projects", Some(new)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let hits = receiver.wait_delivered("/projects", 1, Duration::from_secs(60)).await;
    let body = hits[0].json();
    assert_eq!(body["type"], "projects.created", "{body}");
    assert_eq!(body["data"]["resource"], "projects");
    assert_eq!(body["data"]["after"]["name"], "Apollo");
    assert!(body["data"]["after"].get("secret_token").is_none(), "a secret column was sent: {body}");
    assert!(body["data"]["after"].get("ApiToken").is_none(), "a token column was sent: {body}");
    assert!(signed_by(&secret, &hits[0]));

    // SIGTERM: the worker stops claiming, finishes what it has, and exits cleanly.
    let pid = nix::unistd::Pid::from_raw(i32::try_from(worker.id().expect("pid")).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal");
    let status = tokio::time::timeout(Duration::from_secs(40), worker.wait()).await.expect("exits").expect("wait");
    assert!(status.success(), "rowguard worker exited with {status}");
}
