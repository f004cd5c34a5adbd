//! When a delivery fails or must not be made: retries, dead letters retried by the CLI and
//! redelivered over the API, and the SSRF refusals of targets that are not public HTTPS.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use rowguard::db::TenantTx;
use serde_json::{Value, json};
use sqlx::Connection;

use super::{Hit, Plan, Receiver, create_contact, log_when, signed_by, subscribe, with_workers};
use crate::support::{TestApp, spawn_app_with, spawn_installed_app};

async fn cli(app: &TestApp, data_dir: &std::path::Path, args: &[&str]) -> String {
    let out = crate::cli_concurrency::rowguard(&app.cli_env(), data_dir, args).output().await.expect("run rowguard");
    assert!(out.status.success(), "rowguard {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
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
