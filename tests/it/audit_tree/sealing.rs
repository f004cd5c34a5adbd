//! Sealing: hundreds of parallel writes sealed by two instances, a chain written before the
//! tree sealed first in chain order, and one tenant failing to seal holding no other back.

use axum::http::{Method, StatusCode};
use serde_json::json;

use super::{all_events, create_contacts, hashes, head_of_size, leaf_hash, open_checkpoint, verify_inclusion};
use crate::support::{spawn_app, spawn_app_with};

#[tokio::test]
async fn hundreds_of_parallel_writes_in_one_tenant_are_all_sealed_by_two_instances() {
    // Hundreds of writes and proofs: more than the free plan's quota allows.
    let app = spawn_app_with(|c| c.rate_limits = false).await;
    let second = app.another_instance_with(|c| c.rate_limits = false).await;
    let t = app.create_tenant("busy").await;
    let token = app.owner_token(&t).await;
    let mut tasks = Vec::new();
    // As many at once as the two instances' pools hold; the rest queue here, not in the pool.
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(4));
    for i in 0..200 {
        let (router, token) = (if i % 2 == 0 { app.router.clone() } else { second.router.clone() }, token.clone());
        let slots = std::sync::Arc::clone(&slots);
        tasks.push(tokio::spawn(async move {
            let _slot = slots.acquire_owned().await.expect("slot");
            use tower::ServiceExt;
            let body = json!({"name": format!("P{i}"), "email": format!("p{i}@busy.test")}).to_string();
            let request = axum::http::Request::post("/v1/contacts")
                .header("x-tenant", "busy")
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body))
                .expect("request");
            let answer = router.oneshot(request).await.expect("answer");
            let status = answer.status();
            let body = http_body_util::BodyExt::collect(answer.into_body()).await.expect("body").to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }));
    }
    for task in tasks {
        let (status, body) = task.await.expect("join");
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let mut events = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = cursor.as_ref().map(|c| format!("&cursor={c}")).unwrap_or_default();
        let r = app.call_as(&token, "busy", Method::GET, &format!("/v1/audit-events?limit=500{q}"), None).await;
        events.extend(r.body["items"].as_array().cloned().unwrap_or_default());
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert!(events.len() >= 200, "{}", events.len());
    let head = head_of_size(&app, &token, "busy", events.len() as u64).await;
    let (_, size, root) =
        open_checkpoint(head["note"].as_str().expect("note"), head["verifier_key"].as_str().expect("vkey"));
    // Every event once, each provably included.
    let mut seen = std::collections::HashSet::new();
    for e in &events {
        let id = e["id"].as_str().expect("id");
        let p = app.call_as(&token, "busy", Method::GET, &format!("/v1/audit-events/{id}/proof"), None).await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.body);
        assert!(seen.insert(p.body["leaf_index"].as_u64().expect("index")), "a leaf index given twice");
        assert!(verify_inclusion(
            p.body["leaf_index"].as_u64().expect("index"),
            size,
            leaf_hash(&app, &t, e).await,
            &hashes(&p.body["audit_path"]),
            root
        ));
    }
    assert_eq!(seen.len() as u64, size);
}

/// A log written before the tree (sql/V21's upgrade): events linked as a hash chain, with no
/// transaction id, queued for sealing as the migration queues every tenant. The sealer puts
/// them in the tree first, in chain order; both the chain and the tree verify, and events
/// written afterwards follow them.
#[tokio::test]
async fn a_chain_written_before_the_tree_is_sealed_first_in_chain_order_and_still_verifies() {
    let app = spawn_app().await;
    let tenant = rowguard::domain::TenantId(uuid::Uuid::now_v7());
    let mut su = app.superuser_connection().await;
    sqlx::query("INSERT INTO tenants (id, slug, name) VALUES ($1, 'legacy', 'Legacy')")
        .bind(tenant)
        .execute(&mut su)
        .await
        .expect("tenant");
    // Three events as the chain wrote them: seq 1..3, each hash over the previous one.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET session_replication_role = replica;
         DO $$ DECLARE r audit_events; prev bytea := '\\x{zero}';
         BEGIN
           FOR i IN 1..3 LOOP
             r := jsonb_populate_record(NULL::audit_events, jsonb_build_object(
                    'tenant_id', '{tenant}', 'seq', i, 'id', gen_random_uuid(),
                    'occurred_at', date_trunc('microseconds', now()) + i * interval '1 second',
                    'actor_type', 'system', 'action', 'legacy.event', 'outcome', 'success',
                    'details', jsonb_build_object('n', i), 'xid', '0'));
             r.prev_hash := prev;
             r.hash := sha256(prev || audit_canonical(r));
             INSERT INTO audit_events VALUES (r.*);
             prev := r.hash;
           END LOOP;
           INSERT INTO audit_chain_heads (tenant_id, seq, head) VALUES ('{tenant}', 3, prev);
           INSERT INTO audit_unsealed (tenant_id, xid) VALUES ('{tenant}', '0');
           -- As the migration does: new events are numbered past every chain.
           PERFORM setval('audit_event_seq',
               greatest((SELECT max(seq) FROM audit_events), (SELECT last_value FROM audit_event_seq)) + 1, false);
         END $$;
         SET session_replication_role = origin;",
        zero = "00".repeat(32),
        tenant = tenant.0
    )))
    .execute(&mut su)
    .await
    .expect("a legacy chain");
    crate::support::wait_until_sealed(&mut su).await;
    // A new event after the upgrade, appended the new way.
    let mut conn = app.app_connection().await;
    let mut tx = rowguard::db::TenantTx::begin_on(&mut conn, tenant).await.expect("tx");
    sqlx::query("SELECT audit_append('after.upgrade', NULL, NULL, 'success', '{}')")
        .execute(tx.conn())
        .await
        .expect("append");
    tx.commit().await.expect("commit");
    crate::support::wait_until_sealed(&mut su).await;
    let order: Vec<(i64, String)> = sqlx::query_as(
        "SELECT l.leaf_index, e.action FROM audit_tree_leaves l JOIN audit_events e USING (tenant_id, seq)
          WHERE l.tenant_id = $1 ORDER BY l.leaf_index",
    )
    .bind(tenant)
    .fetch_all(&mut su)
    .await
    .expect("leaves");
    let actions: Vec<&str> = order.iter().map(|(_, a)| a.as_str()).collect();
    assert_eq!(actions, ["legacy.event", "legacy.event", "legacy.event", "after.upgrade"]);
    let seqs: Vec<i64> = sqlx::query_scalar(
        "SELECT l.seq FROM audit_tree_leaves l WHERE l.tenant_id = $1 AND l.leaf_index < 3 ORDER BY l.leaf_index",
    )
    .bind(tenant)
    .fetch_all(&mut su)
    .await
    .expect("seqs");
    assert_eq!(seqs, [1, 2, 3], "the chain's order");
    let mut tx = rowguard::db::TenantTx::begin_on(&mut conn, tenant).await.expect("tx");
    let key = app.ctx.audit.verifying_key();
    let tree =
        rowguard::audit::tree::verify(tx.conn(), tenant, Some((app.ctx.audit.log_name(), &key))).await.expect("tree");
    assert!(tree.valid, "{tree:?}");
    assert_eq!((tree.size, tree.events_checked), (4, 4));
    let chain = rowguard::audit::verify_chain(tx.conn(), tenant, &[]).await.expect("chain");
    assert!(chain.valid && chain.events == 3, "{chain:?}");
}

/// A tenant whose sealing fails (here: its next leaf's place taken behind the sealer's back)
/// is reported and stays queued; the other tenants of the same pass are sealed all the same.
#[tokio::test]
async fn one_tenant_failing_to_seal_holds_no_other_tenant_back() {
    let app = spawn_app().await;
    let (a, b) = (app.create_tenant("breaks").await, app.create_tenant("fine").await);
    let (ta, tb) = (app.owner_token(&a).await, app.owner_token(&b).await);
    let mut su = app.superuser_connection().await;
    crate::support::wait_until_sealed(&mut su).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET session_replication_role = replica;
         INSERT INTO audit_tree_nodes (tenant_id, level, idx, hash)
           SELECT tenant_id, 0, size, sha256('') FROM audit_tree_state WHERE tenant_id = '{}';
         SET session_replication_role = origin;",
        a.id.0
    )))
    .execute(&mut su)
    .await
    .expect("block the next leaf");
    create_contacts(&app, &ta, "breaks", 1).await;
    create_contacts(&app, &tb, "fine", 2).await;
    let b_events = all_events(&app, &tb, "fine").await;
    head_of_size(&app, &tb, "fine", b_events.len() as u64).await;
    let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_unsealed WHERE tenant_id = $1")
        .bind(a.id)
        .fetch_one(&mut su)
        .await
        .expect("queue");
    assert!(waiting >= 1, "the failing tenant stays queued");
    let request = axum::http::Request::get("/metrics").body(axum::body::Body::empty()).expect("request");
    let answer = tower::ServiceExt::oneshot(app.router.clone(), request).await.expect("answer");
    let body = http_body_util::BodyExt::collect(answer.into_body()).await.expect("body").to_bytes();
    let text = String::from_utf8_lossy(&body);
    let failures: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("rowguard_audit_seal_failures_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the failure counter");
    assert!(failures >= 1.0, "failures are counted: {failures}");
}
