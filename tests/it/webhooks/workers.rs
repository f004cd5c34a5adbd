//! The delivery workers under load: fairness under one tenant's flood, backlog and hanging
//! receivers, tenants waiting for retries, two instances on one outbox, and shutdown.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use rowguard::db::TenantTx;
use serde_json::json;
use sqlx::Connection;

use super::{Plan, Receiver, create_contact, subscribe, two_tenants, with_workers};
use crate::support::{TestApp, spawn_app_with};

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
