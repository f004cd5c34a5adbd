//! The audit export: clients that stop reading hold no database connection and no open
//! transaction, so other tenants keep working; exports at once are bounded; a paged export is
//! the whole log up to its start, in order; CSV cells cannot become spreadsheet formulas.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use rowguard::db::TenantTx;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::support::{TestApp, TestTenant, spawn_app, spawn_app_with};

/// `n` contacts with long names, inserted as the app role in the tenant's transaction: each
/// one is a row-change event of ~700 bytes in the tenant's audit log.
async fn fill_log(app: &TestApp, tenant: &TestTenant, n: i32) {
    let mut conn = app.app_connection().await;
    let mut tx = TenantTx::begin_on(&mut conn, tenant.id).await.expect("begin");
    // The app role's 5 s statement timeout is for requests; thousands of audited rows on a busy
    // CI machine may take longer.
    sqlx::query("SET LOCAL statement_timeout = '120s'").execute(tx.conn()).await.expect("timeout");
    if app.on_citus() {
        // Citus turns an INSERT … SELECT from a set-returning function into a COPY, which it
        // refuses on a table with row-level security: multi-row VALUES instead, in batches.
        for start in (1..=n).step_by(500) {
            let end = (start + 499).min(n);
            let rows: Vec<String> = (start..=end)
                .map(|i| format!("($1, gen_random_uuid(), repeat('n', 190) || {i}, 'c{i}@example.com')"))
                .collect();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO contacts (tenant_id, id, name, email) VALUES {}",
                rows.join(", ")
            )))
            .bind(tenant.id)
            .execute(tx.conn())
            .await
            .expect("contacts");
        }
    } else {
        sqlx::query(
            "INSERT INTO contacts (tenant_id, id, name, email)
             SELECT $1, gen_random_uuid(), repeat('n', 190) || i, 'c' || i || '@example.com' FROM generate_series(1, $2) AS i",
        )
        .bind(tenant.id)
        .bind(n)
        .execute(tx.conn())
        .await
        .expect("contacts");
    }
    tx.commit().await.expect("commit");
}

/// Ask for the export over a socket with a tiny receive buffer and never read the answer.
async fn stalled_export(addr: std::net::SocketAddr, slug: &str, token: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("small buffer");
    let mut stream = socket.connect(addr).await.expect("connect");
    let request = format!(
        "GET /v1/audit-events/export HTTP/1.1\r\nHost: localhost\r\nX-Tenant: {slug}\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    stream
}

/// The app role's connections to this test's database that are in a query or a transaction.
async fn busy_app_connections(su: &mut sqlx::PgConnection) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT coalesce(state, ''), left(query, 120) FROM pg_stat_activity
          WHERE usename = 'rowguard_app' AND datname = current_database() AND state <> 'idle'",
    )
    .fetch_all(su)
    .await
    .expect("activity")
}

#[tokio::test]
async fn stalled_exports_hold_no_connection_and_other_tenants_keep_working() {
    // A pool of six for six stalled exports: if each held a connection, every one would be
    // gone (and tenant B below would wait in vain). Not fewer: the six exports' first pages and
    // the test's own requests take turns on it while they start, on one test thread shared
    // with the server, within the 3 s acquire limit (with the two pools of before, 3 + 3).
    let app = spawn_app_with(|c| c.db_pool_size = 6).await;
    let mut stalled = Vec::new();
    let limits = rowguard::http::Limits {
        request_timeout: Duration::from_secs(60),
        body_limit_bytes: 64 * 1024,
        header_read_timeout: Duration::from_secs(10),
        max_connections: 100,
    };
    let (addr, _stop) = app.serve_tcp(limits).await;
    let mut tokens = Vec::new();
    for slug in ["a1", "a2", "a3"] {
        let t = app.create_tenant(slug).await;
        fill_log(&app, &t, 6000).await; // ~4 MB: more than the socket buffers hold
        tokens.push((slug, app.owner_token(&t).await));
    }
    // The pool's connections opened first, all at once (six reads in flight together): on a
    // loaded machine opening one (a backend, the hot statements' PREPAREs) can take seconds,
    // and six exports opening theirs at the same moment would meet the 3 s acquire limit for
    // a reason this test is not about.
    let warm = tokens.iter().flat_map(|(slug, token)| {
        [0, 1].map(|_| app.call_as(token, slug, Method::GET, "/v1/audit-events?limit=1", None))
    });
    for r in futures_util::future::join_all(warm).await {
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    for (slug, token) in &tokens {
        for _ in 0..2 {
            stalled.push(stalled_export(addr, slug, token).await);
        }
    }
    // Each stalled export has begun answering (its slot taken, its first page sent) before the
    // test goes on; peeking reads nothing off the socket, so they stay stalled.
    let mut status_lines = Vec::new();
    for stream in &stalled {
        let mut start = [0u8; 12];
        let n = tokio::time::timeout(Duration::from_secs(20), stream.peek(&mut start))
            .await
            .expect("the export began answering within 20 s")
            .expect("peek");
        status_lines.push(String::from_utf8_lossy(&start[..n]).to_string());
    }
    for (slug, token) in &tokens {
        // A third export of the same tenant is refused while two are stalled.
        let r = app.call_as(token, slug, Method::GET, "/v1/audit-events/export", None).await;
        assert_eq!(
            r.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{slug}: the stalled exports already ended; they began with {status_lines:?}"
        );
        r.assert_problem(StatusCode::TOO_MANY_REQUESTS, "export_limit");
        assert!(r.headers.contains_key("retry-after"));
    }

    // No connection of the app role is busy (in a query or a transaction) while the clients
    // do not read: the pool's connections are idle, the change listeners wait idle. An export
    // still producing its first pages on a slow machine is busy for a moment; one that held its
    // transaction across client I/O would stay busy for as long as its client does not read. So
    // the count must reach zero within a deadline and then stay there.
    let mut su = app.superuser_connection().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut quiet_samples = 0;
    while quiet_samples < 5 {
        let now_busy = busy_app_connections(&mut su).await;
        if now_busy.is_empty() {
            quiet_samples += 1;
        } else {
            quiet_samples = 0;
            assert!(
                tokio::time::Instant::now() < deadline,
                "stalled exports still hold app-role connections after 20 s: {now_busy:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Tenant B logs in, reads and writes as usual.
    let b = app.create_tenant("bravo").await;
    let token = app.owner_token(&b).await;
    for i in 0..10 {
        let body = json!({"name": format!("Bravo {i}"), "email": format!("b{i}@bravo.test")});
        let r = app.call_as(&token, "bravo", Method::POST, "/v1/contacts", Some(body)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let r = app.call_as(&token, "bravo", Method::GET, "/v1/contacts", None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    drop(stalled);
}

/// The export's body, read a frame at a time from the in-process router.
async fn export_frames(app: &TestApp, token: &str, slug: &str, format: &str) -> axum::body::BodyDataStream {
    let request = Request::builder()
        .method(Method::GET)
        .uri(format!("/v1/audit-events/export?format={format}"))
        .header("host", "localhost")
        .header("x-tenant", slug)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .expect("request");
    let response = tower::ServiceExt::oneshot(app.router.clone(), request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    response.into_body().into_data_stream()
}

#[tokio::test]
async fn a_paged_export_is_the_whole_log_up_to_its_start_in_order() {
    let app = spawn_app().await;
    let t = app.create_tenant("paged").await;
    fill_log(&app, &t, 2500).await; // three pages
    let token = app.owner_token(&t).await;
    let mut su = app.superuser_connection().await;
    // Every event up to the head: 1 to head on PostgreSQL; on Citus each node numbers from a
    // range of its own, so the seqs are read rather than counted.
    let up_to_head: Vec<i64> = sqlx::query_scalar("SELECT seq FROM audit_events WHERE tenant_id = $1 ORDER BY seq")
        .bind(t.id)
        .fetch_all(&mut su)
        .await
        .expect("head");

    let mut frames = export_frames(&app, &token, "paged", "jsonl").await;
    let mut text = String::new();
    let first = futures_util::StreamExt::next(&mut frames).await.expect("a first page").expect("bytes");
    text.push_str(std::str::from_utf8(&first).expect("utf-8"));
    // Events appended while the export runs are not part of it, not even in part.
    fill_log(&app, &t, 50).await;
    while let Some(frame) = futures_util::StreamExt::next(&mut frames).await {
        text.push_str(std::str::from_utf8(&frame.expect("bytes")).expect("utf-8"));
    }
    let seqs: Vec<i64> = text
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("a JSON line")["seq"].as_i64().expect("seq"))
        .collect();
    assert_eq!(seqs, up_to_head, "every event up to the head, once, in order");
}

#[tokio::test]
async fn csv_cells_that_a_spreadsheet_would_run_are_prefixed() {
    let app = spawn_app().await;
    let t = app.create_tenant("sheet").await;
    let token = app.owner_token(&t).await;
    let formula = "=HYPERLINK(\"http://evil.example\",\"click\")";
    let r = app
        .call(
            Method::POST,
            "/v1/contacts",
            &[("x-tenant", "sheet"), ("authorization", &format!("Bearer {token}")), ("user-agent", formula)],
            Some(json!({"name": "@SUM(A1:A9)", "email": "f@sheet.test"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let mut frames = export_frames(&app, &token, "sheet", "csv").await;
    let mut bytes = Vec::new();
    while let Some(frame) = futures_util::StreamExt::next(&mut frames).await {
        bytes.extend_from_slice(&frame.expect("bytes"));
    }
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    let user_agent = reader.headers().expect("header").iter().position(|h| h == "user_agent").expect("column");
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("a CSV row")).collect();
    let created = rows.iter().find(|r| r.get(9) == Some("contact.create")).expect("the contact's event");
    assert_eq!(created.get(user_agent), Some(format!("'{formula}").as_str()));
    for row in &rows {
        for cell in row {
            assert!(!cell.starts_with(['=', '+', '-', '@', '\t', '\r']), "a live formula cell: {cell:?}");
        }
    }
}
