//! Who gets what: deliveries signed per tenant, only to the tenant's own subscribers and in
//! order; atomic with the change; outbox isolation as SQL; who may manage webhooks and secret
//! rotation; an adopted table's changes.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use rowguard::db::TenantTx;
use serde_json::json;
use sqlx::{Connection, PgConnection};

use super::{Receiver, create_contact, log_when, signed_by, subscribe, two_tenants, with_workers};
use crate::support::spawn_app_with;

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
