//! Tamper evidence and sealing: the verifier (and the CLI's) finds a modified, deleted,
//! inserted or reordered event, a retention purge still verifies, and concurrent or interleaved
//! writers are all sealed in a consistent order.

use axum::http::{Method, StatusCode};
use rowguard::audit::tree::TreeReport;
use rowguard::db::TenantTx;
use rowguard::platform::PlatformConn;
use serde_json::json;
use sqlx::{Connection, Executor};

use super::{events, tree_report, verify};
use crate::support::{TestApp, TestTenant, spawn_app, wait_until_sealed};

/// Run `sql` as a superuser with triggers off: what someone with database access could do to
/// the log. `SET LOCAL`, alone in its message, inside a transaction: a session `SET` stays on
/// the coordinator on Citus, where the triggers of the workers' shards would still refuse the
/// change; a transaction-local SET is forwarded to every worker the transaction touches.
async fn tamper(app: &TestApp, sql: &str) -> Result<(), sqlx::Error> {
    let mut su = app.superuser_connection().await;
    let mut tx = su.begin().await?;
    tx.execute("SET LOCAL session_replication_role = replica").await?;
    // One statement per message: Citus replays a message's whole text on the shards, and
    // refuses several statements there. (No case has a `;` inside a literal.)
    for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        tx.execute(sqlx::AssertSqlSafe(statement.to_string())).await?;
    }
    tx.commit().await?;
    su.close().await
}

/// Tamper with triggers off, then ask the verifier.
async fn tamper_and_verify(app: &TestApp, tenant: &TestTenant, sql: &str) -> TreeReport {
    tamper(app, sql).await.expect("tamper");
    tree_report(app, tenant).await
}

/// The tenant's events' seqs in tree order (all sealed): element k - 1 is event k's.
async fn event_seqs(app: &TestApp, tenant: &TestTenant) -> Vec<i64> {
    let mut su = app.superuser_connection().await;
    sqlx::query_scalar("SELECT seq FROM audit_tree_leaves WHERE tenant_id = $1 ORDER BY leaf_index")
        .bind(tenant.id)
        .fetch_all(&mut su)
        .await
        .expect("leaves")
}

/// `sql` with `#k` replaced by event k's seq (from `event_seqs`), highest k first (#1 is not a
/// prefix of #10 then).
fn with_seqs(sql: &str, seqs: &[i64]) -> String {
    let mut out = sql.to_string();
    for (k, seq) in seqs.iter().enumerate().rev() {
        out = out.replace(&format!("#{}", k + 1), &seq.to_string());
    }
    out
}

#[tokio::test]
async fn the_verifier_finds_a_modified_deleted_inserted_or_reordered_event() {
    // The tenant's creation is event #1, the login #2, the contacts #3 to #6; `#k` in a case
    // stands for the seq of event k (on PostgreSQL each test database numbers them 1 to 6; on
    // Citus each node numbers from a range of its own). Tampering comes after sealing: the tree
    // holds all six.
    let cases = [
        ("modified", "UPDATE audit_events SET details = '{\"forged\": true}' WHERE seq = #3", Some(3), "modified"),
        ("deleted", "DELETE FROM audit_events WHERE seq = #3", Some(3), "deleted"),
        (
            "inserted",
            "INSERT INTO audit_events SELECT tenant_id, 1000, gen_random_uuid(), occurred_at, actor_type, actor_id,
                    actor_role, client_ip, user_agent, request_id, 'contact.delete', resource_type, resource_id, outcome,
                    details, prev_hash, hash, xid
               FROM audit_events WHERE seq = #2",
            Some(1000),
            "inserted",
        ),
        (
            "reordered",
            "UPDATE audit_events SET seq = 1000 WHERE seq = #3; UPDATE audit_events SET seq = #3 WHERE seq = #4;
             UPDATE audit_events SET seq = #4 WHERE seq = 1000",
            Some(3),
            "modified, or swapped",
        ),
        ("deleted at the end", "DELETE FROM audit_events WHERE seq = #6", Some(6), "deleted"),
        // Re-hashing the forged event's leaf as well: the leaves agree with the events again,
        // and only the roots the service signed (with a key the database never saw) tell.
        (
            "rewritten with its leaf",
            "UPDATE audit_events SET details = '{\"forged\": true}' WHERE seq = #3;
             UPDATE audit_tree_nodes n SET hash = sha256('\\x00'::bytea || audit_leaf(ROW(e.*)::audit_events))
               FROM audit_events e JOIN audit_tree_leaves l ON l.tenant_id = e.tenant_id AND l.seq = e.seq
              WHERE e.seq = #3 AND n.tenant_id = e.tenant_id AND n.level = 0 AND n.idx = l.leaf_index",
            None,
            "signed head records",
        ),
    ];
    let cases = cases.into_iter().chain([
        // A stored subtree root changed: proofs built from it would fail for auditors.
        (
            "an interior node",
            "UPDATE audit_tree_nodes SET hash = sha256('forged') WHERE level = 1 AND idx = 1",
            None,
            "(1, 1) is not the hash of its two children",
        ),
        ("a missing interior node", "DELETE FROM audit_tree_nodes WHERE level = 2 AND idx = 0", None, "level 2"),
    ]);
    for (what, sql, broken_at, reason) in cases {
        let app = spawn_app().await;
        let t = app.create_tenant("alpha").await; // event 1: the owner's creation
        let token = app.owner_token(&t).await; // event 2: the login
        for i in 0..4 {
            let body = json!({"name": format!("c{i}"), "email": "c@x.io"});
            app.call_as(&token, "alpha", Method::POST, "/v1/contacts", Some(body)).await; // events 3..6
        }
        let before = tree_report(&app, &t).await;
        assert!(before.valid && before.size == 6 && before.events_checked == 6, "{what}: {before:?}");
        let over_http = verify(&app, &token, "alpha").await;
        assert_eq!(over_http["valid"], true, "{what}: {over_http}");
        let seqs = event_seqs(&app, &t).await;
        let report = tamper_and_verify(&app, &t, &with_seqs(sql, &seqs)).await;
        assert!(!report.valid, "{what}: not detected");
        let first = report.problems.first().expect("a problem");
        // `broken_at`: event k, or a seq of the case's own making (1000, the inserted one).
        let broken_at = broken_at.map(|k: i64| if k == 1000 { k } else { seqs[k as usize - 1] });
        assert_eq!(first.seq, broken_at, "{what}: {:?}", report.problems);
        assert!(report.problems.iter().any(|p| p.reason.contains(reason)), "{what}: {:?}", report.problems);
        // The API's verify says the same.
        let over_http = verify(&app, &token, "alpha").await;
        assert_eq!(over_http["valid"], false, "{what}: {over_http}");
        assert_eq!(over_http["first_broken"]["seq"].as_i64(), broken_at, "{what}: {over_http}");
    }
}

/// An event changed by hand after it committed but before the sealer reached it is still
/// named: the sealer takes the leaf the writer computed at commit (sql/V23), not a hash of
/// whatever the row says by then.
#[tokio::test]
async fn an_event_changed_before_it_was_sealed_is_named() {
    let app = spawn_app().await;
    let t = app.create_tenant("alpha").await;
    let token = app.owner_token(&t).await;
    let before = tree_report(&app, &t).await.size;
    // An open transaction that took its id first holds the horizon below the next event's.
    let holders = app.hold_the_audit_horizon().await;
    let made = app
        .call_as(&token, "alpha", Method::POST, "/v1/contacts", Some(json!({"name": "Ada", "email": "ada@x.io"})))
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let seq: i64 = {
        let mut su = app.superuser_connection().await;
        sqlx::query_scalar("SELECT max(seq) FROM audit_events WHERE action = 'contact.create'")
            .fetch_one(&mut su)
            .await
            .expect("the event")
    };
    let sealed: i64 = {
        let mut su = app.superuser_connection().await;
        sqlx::query_scalar("SELECT count(*) FROM audit_tree_leaves WHERE seq = $1")
            .bind(seq)
            .fetch_one(&mut su)
            .await
            .expect("leaves")
    };
    assert_eq!(sealed, 0, "the horizon holds the event back");
    tamper(&app, &format!("UPDATE audit_events SET details = '{{\"forged\": true}}' WHERE seq = {seq}"))
        .await
        .expect("tamper");
    for mut holder in holders {
        holder.execute("COMMIT").await.expect("release the horizon");
    }
    let report = tree_report(&app, &t).await;
    assert_eq!(report.size, before + 1, "sealed after all: {report:?}");
    assert!(!report.valid, "the forged event went unnoticed: {report:?}");
    let first = report.problems.first().expect("a problem");
    assert_eq!(first.seq, Some(seq), "{:?}", report.problems);
    assert!(first.reason.contains("modified"), "{:?}", report.problems);
}

#[tokio::test]
async fn concurrent_writers_in_one_tenant_are_all_sealed_into_one_valid_tree() {
    let app = spawn_app().await;
    let t = app.create_tenant("alpha").await;
    let token = app.owner_token(&t).await;
    let writes = (0..24).map(|i| {
        let body = json!({"name": format!("c{i}"), "email": "c@x.io"});
        app.call_as(&token, "alpha", Method::POST, "/v1/contacts", Some(body))
    });
    for r in futures_util::future::join_all(writes).await {
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    let tree = tree_report(&app, &t).await;
    assert!(tree.valid, "{tree:?}");
    assert_eq!((tree.size, tree.events_checked, tree.unsealed), (26, 26, 0), "{tree:?}");
    assert!(tree.heads_checked >= 1, "{tree:?}");
    let report = verify(&app, &token, "alpha").await;
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(report["tree"]["size"], 26);
}

/// Commits in another order than their events were numbered are sealed in one consistent
/// order with nothing skipped: an event whose transaction is still open holds sealing back
/// (the horizon), and is sealed after it commits, ahead of nothing already sealed.
#[tokio::test]
async fn interleaved_commits_are_sealed_in_a_consistent_order_with_nothing_skipped() {
    let app = spawn_app().await;
    let t = app.create_tenant("alpha").await;
    app.owner_token(&t).await;
    let before = tree_report(&app, &t).await.size;
    let append = |action: &'static str| format!("SELECT audit_append('{action}', NULL, NULL, 'success', '{{}}')");
    let (mut c1, mut c2) = (app.app_connection().await, app.app_connection().await);
    // T1 takes an xid first and numbers its event first; T2 numbers after it and commits first.
    let mut t1 = TenantTx::begin_on(&mut c1, t.id).await.expect("t1");
    t1.conn().execute(sqlx::AssertSqlSafe(append("probe.first"))).await.expect("t1 appends");
    let mut t2 = TenantTx::begin_on(&mut c2, t.id).await.expect("t2");
    t2.conn().execute(sqlx::AssertSqlSafe(append("probe.second"))).await.expect("t2 appends");
    t2.commit().await.expect("t2 commits");
    // Seal now, by hand (as the service's sealer does): T1 is open, so nothing at or past its
    // transaction id may be sealed — T2's event waits too, though it is committed.
    // -1: the service's own sealer held the tenant at that moment (bound the same way): ask again.
    // On Citus the service's sealer seals one tenant per statement, which Citus runs on the
    // worker holding the tenant's shard (`Database::seal_many`, sql/V26).
    let mut c3 = app.app_connection().await;
    let mut attempt: (Option<i64>, i32) = (None, -1);
    for _ in 0..100 {
        if app.on_citus() {
            attempt = sqlx::query_as("SELECT size, sealed FROM audit_seal_tenant($1, 1000)")
                .bind(t.id.0)
                .fetch_one(&mut c3)
                .await
                .expect("seal");
        } else {
            let mut s = TenantTx::begin_on(&mut c3, t.id).await.expect("sealer");
            attempt = sqlx::query_as("SELECT size, sealed FROM audit_seal_many($1, 1000)")
                .bind(vec![t.id.0])
                .fetch_one(s.conn())
                .await
                .expect("seal");
            s.commit().await.expect("commit");
        }
        if attempt.1 != -1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (size, sealed) = attempt;
    assert_eq!((sealed, size), (0, Some(before)), "sealed past an open transaction");
    t1.commit().await.expect("t1 commits");
    let after = tree_report(&app, &t).await;
    assert!(after.valid && after.unsealed == 0, "{after:?}");
    assert_eq!(after.size, before + 2, "both sealed, once each: {after:?}");
    // In (transaction, seq) order: T1's event, then T2's.
    let mut su = app.superuser_connection().await;
    let order: Vec<String> = sqlx::query_scalar(
        "SELECT e.action FROM audit_tree_leaves l JOIN audit_events e USING (tenant_id, seq)
          WHERE l.tenant_id = $1 AND e.action LIKE 'probe.%' ORDER BY l.leaf_index",
    )
    .bind(t.id)
    .fetch_all(&mut su)
    .await
    .expect("order");
    assert_eq!(order, ["probe.first", "probe.second"]);
}

#[tokio::test]
async fn the_cli_verifier_names_the_broken_event() {
    let app = spawn_app().await;
    let t = app.create_tenant("alpha").await;
    app.owner_token(&t).await;
    let mut su = app.superuser_connection().await;
    wait_until_sealed(&mut su).await;
    let seqs = event_seqs(&app, &t).await;
    tamper(&app, &with_seqs("UPDATE audit_events SET action = 'x' WHERE seq = #2", &seqs)).await.expect("tamper");
    // The library path `rowguard audit verify` takes, as the platform role.
    let mut platform = PlatformConn::connect(&app.superuser_url()).await.expect("platform");
    let mut tx = platform.tenant_tx(t.id).await.expect("tx");
    let report = rowguard::audit::tree::verify(tx.conn(), t.id, None).await.expect("verify");
    assert_eq!(report.problems.first().and_then(|p| p.seq), Some(seqs[1]), "{report:?}");
}

#[tokio::test]
async fn a_retention_purge_is_recorded_in_the_chain_and_the_rest_still_verifies() {
    let app = spawn_app().await;
    let t = app.create_tenant("alpha").await;
    let token = app.owner_token(&t).await;
    for i in 0..3 {
        let body = json!({"name": format!("c{i}"), "email": "c@x.io"});
        app.call_as(&token, "alpha", Method::POST, "/v1/contacts", Some(body)).await;
    }
    // Events 1..5 exist and are sealed; purge everything before now (the newest event is
    // always kept). Their leaves stay in the tree, the events go.
    let sealed_before = tree_report(&app, &t).await;
    assert_eq!(sealed_before.size, 5, "{sealed_before:?}");
    let seqs = event_seqs(&app, &t).await;
    let mut platform = PlatformConn::connect(&app.superuser_url()).await.expect("platform");
    let purged = rowguard::audit::retention_purge(&mut platform, t.id, chrono::Utc::now()).await.expect("purge");
    assert_eq!(purged, 4);
    let report = verify(&app, &token, "alpha").await;
    assert_eq!(report["valid"], true, "{report}");
    let cut = events(&app, &token, "alpha", "?action=audit.retention_purge").await;
    assert_eq!(cut.len(), 1);
    assert_eq!(cut[0]["details"]["purged_through_seq"], seqs[3]);
    let tree = tree_report(&app, &t).await;
    assert!(tree.valid, "{tree:?}");
    assert_eq!((tree.size, tree.purged, tree.events_checked), (6, 4, 2), "{tree:?}");
    // The cut covers the purged prefix only: an event deleted past it is named.
    tamper(&app, &with_seqs("DELETE FROM audit_events WHERE seq = #5", &seqs)).await.expect("tamper");
    let tree = tree_report(&app, &t).await;
    assert!(!tree.valid, "{tree:?}");
    assert_eq!(tree.problems.first().and_then(|p| p.seq), Some(seqs[4]), "{tree:?}");
    // The app role still cannot delete anything, retention or not.
    let mut conn = app.app_connection().await;
    let mut tx = TenantTx::begin_on(&mut conn, t.id).await.expect("begin");
    let err = sqlx::query("SELECT audit_retention_purge(now())").execute(tx.conn()).await.expect_err("app role");
    assert!(err.to_string().contains("permission denied"), "{err}");
}
