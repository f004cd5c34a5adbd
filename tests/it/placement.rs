//! Where tenants live, and `rowguard tenants isolate` (issue 15). On plain PostgreSQL every
//! tenant shares the one node: the command refuses and says so, and `tenants list` shows no
//! placement. On Citus (ROWGUARD_TEST_CITUS_URL) a tenant is split into a shard of its own and
//! moved to the other worker while its API takes writes: nothing but a brief 503 is answered,
//! every acknowledged write is there afterwards, the other tenant is untouched, and the audit
//! log still verifies across the move.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};

use crate::cli_concurrency::rowguard;
use crate::support::{TestApp, scratch_dir, spawn_app_with, wait_until_sealed};

async fn cli(app: &TestApp, dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    rowguard(&app.cli_env(), dir, args).output().await.expect("run rowguard")
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `tenants list --json`: slug → its placement (null off Citus).
async fn placements(app: &TestApp, dir: &std::path::Path) -> Vec<(String, Value)> {
    let out = cli(app, dir, &["tenants", "list", "--json"]).await;
    assert!(out.status.success(), "tenants list: {}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("tenants list --json");
    rows.into_iter()
        .map(|r| (r["slug"].as_str().expect("slug").to_string(), r.get("placement").cloned().unwrap_or(Value::Null)))
        .collect()
}

#[tokio::test]
async fn a_tenant_isolated_and_moved_under_load_keeps_every_acknowledged_write() {
    // The load writes as fast as it can: the tenant's request quota would answer it 429.
    let app = Arc::new(spawn_app_with(|config| config.rate_limits = false).await);
    let acme = app.create_tenant("acme").await;
    let globex = app.create_tenant("globex").await;
    let dir = scratch_dir("placement");

    if !app.on_citus() {
        let out = cli(&app, &dir, &["tenants", "isolate", "acme"]).await;
        assert!(!out.status.success(), "isolate on one PostgreSQL: {}", stdout(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("needs Citus"), "{err}");
        assert!(placements(&app, &dir).await.iter().all(|(_, p)| p.is_null()));
        let list = cli(&app, &dir, &["tenants", "list"]).await;
        assert!(!stdout(&list).contains("NODE"), "{}", stdout(&list));
        return;
    }

    let before = placements(&app, &dir).await;
    let node_of = |all: &[(String, Value)], slug: &str| {
        all.iter().find(|(s, _)| s == slug).map(|(_, p)| p.clone()).expect("the tenant is listed")
    };
    let acme_before = node_of(&before, "acme");
    let globex_before = node_of(&before, "globex");
    assert_eq!(acme_before["isolated"], false, "{acme_before}");
    let from = acme_before["node"].as_str().expect("node").to_string();
    let mut su = PgConnection::connect(&app.superuser_url()).await.expect("superuser");
    let workers: Vec<String> = sqlx::query_scalar(
        "SELECT nodename || ':' || nodeport FROM pg_dist_node WHERE groupid <> 0 AND noderole = 'primary' ORDER BY 1",
    )
    .fetch_all(&mut su)
    .await
    .expect("workers");
    let to = workers.iter().find(|w| **w != from).expect("a second worker").clone();

    // Writes, one after another, until told to stop: what was acknowledged, how many were
    // refused as unavailable, and anything else.
    let token = app.owner_token(&acme).await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (app, stop) = (Arc::clone(&app), Arc::clone(&stop));
        tokio::spawn(async move {
            let (mut acked, mut unavailable, mut other) = (Vec::new(), 0, Vec::new());
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let body = json!({"name": format!("During the move {n}"), "email": format!("m{n}@example.com")});
                let r = app.call_as(&token, "acme", Method::POST, "/v1/contacts", Some(body)).await;
                match r.status {
                    StatusCode::CREATED => acked.push(r.body["id"].as_str().expect("id").to_string()),
                    StatusCode::SERVICE_UNAVAILABLE => unavailable += 1,
                    status => other.push(format!("{status}: {}", r.body)),
                }
            }
            (acked, unavailable, other)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = cli(&app, &dir, &["tenants", "isolate", "acme", "--to-node", &to]).await;
    let said = stdout(&out);
    assert!(out.status.success(), "isolate: {said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("isolated into shard") && said.contains(&format!("on {to} (its own)")), "{said}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (acked, unavailable, other) = load.await.expect("the load task");
    assert!(
        other.is_empty(),
        "only 503 may interrupt writes during a move: {} others, first {:?}",
        other.len(),
        other.first()
    );
    assert!(
        acked.len() >= 10,
        "writes went through before, during and after: {} ({unavailable} answered 503)",
        acked.len()
    );

    // Every acknowledged write is there, read back through the API.
    for id in &acked {
        let r =
            app.call_as(&app.owner_token(&acme).await, "acme", Method::GET, &format!("/v1/contacts/{id}"), None).await;
        assert_eq!(r.status, StatusCode::OK, "acknowledged contact {id} after the move: {}", r.body);
    }
    let after = placements(&app, &dir).await;
    let acme_after = node_of(&after, "acme");
    assert_eq!(acme_after["node"], to.as_str(), "{acme_after}");
    assert_eq!(acme_after["isolated"], true, "{acme_after}");
    assert_ne!(acme_after["shard"], acme_before["shard"], "a shard of its own");
    assert_eq!(node_of(&after, "globex"), globex_before, "the other tenant stays where it was");
    let globex_token = app.owner_token(&globex).await;
    let r = app.call_as(&globex_token, "globex", Method::GET, "/v1/contacts", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body["items"].as_array().expect("items").is_empty(), "globex sees none of acme's: {}", r.body);

    // The operator's move is in acme's audit log, naming where it went.
    let isolated: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT details FROM audit_events WHERE tenant_id = $1 AND action = 'tenant.isolate' AND actor_type = 'operator'",
    )
    .bind(acme.id)
    .fetch_all(&mut su)
    .await
    .expect("the isolate event");
    assert_eq!(isolated.len(), 1, "{isolated:?}");
    assert_eq!(isolated[0]["to"]["node"], to.as_str(), "{isolated:?}");
    assert_eq!(isolated[0]["to"]["shard"], acme_after["shard"], "{isolated:?}");

    // The audit log, written on both nodes, is sealed and still verifies across the move.
    wait_until_sealed(&mut su).await;
    let mut conn = app.app_connection().await;
    let mut tx = rowguard::db::TenantTx::begin_on(&mut conn, acme.id).await.expect("tx");
    let key = app.ctx.audit.verifying_key();
    let tree =
        rowguard::audit::tree::verify(tx.conn(), acme.id, Some((app.ctx.audit.log_name(), &key))).await.expect("tree");
    assert!(tree.valid, "{tree:?}");
    assert!(tree.events_checked as usize > acked.len(), "every write's event, and the tenant's own: {tree:?}");
}
