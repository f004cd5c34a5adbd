//! Webhooks and the outbox (issue 16): deliveries signed per tenant and only to the tenant's
//! own subscribers, in order per resource; atomic with the change; retries, dead letters and
//! redelivery against a receiver on loopback; signatures checked by an HMAC written here from
//! RFC 2104 and the Standard Webhooks description (not by the code under test); SSRF refusals;
//! fairness under one tenant's flood; two instances draining one outbox; isolation as SQL.

use std::collections::HashMap;
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
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::{TestApp, TestTenant};

mod delivery;
mod failures;
mod workers;

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
