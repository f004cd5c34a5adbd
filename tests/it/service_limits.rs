//! Limits the service puts on itself: a pool that cannot hand out a connection answers 503
//! quickly (never hangs, never 500), and Strict-Transport-Security follows its setting.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::json;
use sqlx::{Connection, Executor};

use crate::support::{spawn_app, spawn_app_with};

#[tokio::test]
async fn an_exhausted_pool_answers_503_quickly_and_loses_nothing() {
    // Three connections; the change listeners hold some of them for good.
    let app = spawn_app_with(|c| c.db_pool_size = 3).await;
    let t = app.create_tenant("pooled").await;
    let token = app.owner_token(&t).await;

    // Every insert into contacts now waits for this lock, holding its pooled connection.
    let mut su = app.superuser_connection().await;
    let mut lock = su.begin().await.expect("begin");
    lock.execute("LOCK TABLE contacts IN ACCESS EXCLUSIVE MODE").await.expect("lock");
    let release = async move {
        // Past the pool's 3 s acquire timeout, before the app role's 5 s statement timeout.
        tokio::time::sleep(Duration::from_millis(4200)).await;
        lock.commit().await.expect("release the lock");
    };

    let create = |i: usize| {
        let (app, token) = (&app, &token);
        async move {
            let started = Instant::now();
            let body = json!({"name": format!("Waiting {i}"), "email": format!("w{i}@pooled.test")});
            let r = app.call_as(token, "pooled", Method::POST, "/v1/contacts", Some(body)).await;
            (r, started.elapsed())
        }
    };
    let (results, ()) = tokio::join!(futures_util::future::join_all((0..6).map(create)), release);

    let mut unavailable = 0;
    let mut created = 0;
    for (r, took) in &results {
        match r.status {
            StatusCode::SERVICE_UNAVAILABLE => {
                r.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
                assert_eq!(r.headers.get("retry-after").map(|v| v.as_bytes()), Some(&b"2"[..]), "{:?}", r.headers);
                assert!(*took < Duration::from_secs(4), "a 503 took {took:?}: the acquire timeout did not hold");
                unavailable += 1;
            }
            StatusCode::CREATED => created += 1,
            other => panic!("neither 201 nor 503: {other} {}", r.body),
        }
    }
    // At most three connections exist, so at least three of six requests found none.
    assert!(unavailable >= 3, "{unavailable} of 6 were refused");
    // Every request that was acknowledged is stored; none that was refused is.
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM contacts")
        .fetch_one(&mut app.superuser_connection().await)
        .await
        .expect("count");
    assert_eq!(stored, created);
    // And the pool serves again once connections come back.
    let r = app.call_as(&token, "pooled", Method::GET, "/v1/contacts", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn hsts_is_sent_when_enabled_on_success_and_error_alike() {
    let app = spawn_app_with(|c| c.hsts = Some(true)).await;
    for path in ["/healthz", "/no-such-route", "/v1/contacts"] {
        let r = app.call(Method::GET, path, &[], None).await;
        assert_eq!(
            r.headers.get("strict-transport-security").and_then(|v| v.to_str().ok()),
            Some("max-age=31536000; includeSubDomains"),
            "{path} ({})",
            r.status
        );
    }
}

#[tokio::test]
async fn hsts_defaults_off_in_development_and_on_with_an_external_database() {
    // The test apps run like development (no DATABASE_URL): no HSTS on plain http://localhost.
    let app = spawn_app().await;
    let r = app.call(Method::GET, "/healthz", &[], None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers.get("strict-transport-security").is_none());
    assert!(r.headers.get("x-content-type-options").is_some());

    let mut config = rowguard::config::Config::for_tests(std::env::temp_dir());
    assert!(!config.hsts_enabled());
    config.database_url = Some("postgres://rowguard_app:x@db/rowguard".into());
    assert!(config.hsts_enabled());
    config.hsts = Some(false);
    assert!(!config.hsts_enabled());
}

/// Limits for a server in a test: a one-second header timeout, few connections.
fn tight_limits(max_connections: usize) -> rowguard::http::Limits {
    rowguard::http::Limits {
        request_timeout: Duration::from_secs(10),
        body_limit_bytes: 64 * 1024,
        header_read_timeout: Duration::from_secs(1),
        max_connections,
    }
}

/// One request over a fresh connection; the status line's code.
async fn get_status(addr: std::net::SocketAddr, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn a_client_that_trickles_its_headers_is_dropped_after_the_header_timeout() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app().await;
    let (addr, _stop) = app.serve_tcp(tight_limits(100)).await;
    let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let started = Instant::now();
    // Slowloris: a header byte every 200 ms, never the blank line that ends them.
    let trickle = async {
        for byte in b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        {
            if slow.write_all(&[*byte]).await.is_err() {
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        started.elapsed()
    };
    let dropped_after = tokio::time::timeout(Duration::from_secs(30), trickle).await.expect("the trickle ended");
    // The server hung up (writes fail once it has closed) within the 1 s timeout plus slack,
    // long before the trickle would have finished (~14 s) ...
    assert!(dropped_after < Duration::from_secs(5), "still connected after {dropped_after:?}");
    // ... without answering it, and everyone else is served.
    assert_eq!(get_status(addr, "/healthz").await, 200);
}

#[tokio::test]
async fn connections_past_the_bound_wait_for_a_free_slot_instead_of_being_served_at_once() {
    let app = spawn_app().await;
    let (addr, _stop) = app.serve_tcp(tight_limits(2)).await;
    // Two idle connections take both slots ...
    let idle = [
        tokio::net::TcpStream::connect(addr).await.expect("connect"),
        tokio::net::TcpStream::connect(addr).await.expect("connect"),
    ];
    tokio::time::sleep(Duration::from_millis(100)).await;
    // ... so a third client is served only once the header timeout has dropped one of them.
    let started = Instant::now();
    assert_eq!(get_status(addr, "/healthz").await, 200);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(700), "served after {waited:?}: the bound did not hold");
    assert!(waited < Duration::from_secs(5), "served after {waited:?}: the idle connections were never dropped");
    drop(idle);
}
