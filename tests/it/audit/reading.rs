//! Reading the trail: only a tenant's own auditors, exports as JSONL and CSV, refused users
//! recorded as actors, and numerics kept to the last digit.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use rowguard::db::TenantTx;
use rowguard::platform::PlatformConn;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{events, tree_report, verify};
use crate::support::{TestApp, TestTenant, spawn_app, spawn_installed_app};

/// A user with `role` in `tenant`, made as the platform role in the tenant's transaction.
async fn add_user(app: &TestApp, tenant: &TestTenant, email: &str, role: &str) -> String {
    let password = "auditor-password-1";
    let hash = rowguard::auth::password::hash_now(password).expect("hash");
    let mut platform = PlatformConn::connect(&app.superuser_url()).await.expect("platform");
    let mut tx = platform.tenant_tx(tenant.id).await.expect("tx");
    sqlx::query("INSERT INTO users (tenant_id, id, email, password_hash, role) VALUES ($1, $2, $3, $4, $5)")
        .bind(tenant.id)
        .bind(uuid::Uuid::now_v7())
        .bind(email)
        .bind(hash)
        .bind(role)
        .execute(tx.conn())
        .await
        .expect("insert user");
    tx.commit().await.expect("commit");
    let body = json!({"email": email, "password": password});
    let r = app.call(Method::POST, "/v1/auth/login", &[("x-tenant", &tenant.slug)], Some(body)).await;
    r.body["access_token"].as_str().expect("token").to_string()
}

#[tokio::test]
async fn an_auditor_reads_only_their_own_tenant_and_members_cannot_read() {
    let app = spawn_app().await;
    let a = app.create_tenant("alpha").await;
    let b = app.create_tenant("bravo").await;
    let a_auditor = add_user(&app, &a, "auditor@alpha.test", "auditor").await;
    let a_member = add_user(&app, &a, "member@alpha.test", "member").await;
    let b_owner = app.owner_token(&b).await;
    app.call_as(&b_owner, "bravo", Method::POST, "/v1/contacts", Some(json!({"name": "B secret", "email": "b@b.io"})))
        .await;
    let seen = events(&app, &a_auditor, "alpha", "?limit=500").await;
    assert!(!seen.is_empty());
    let text = serde_json::to_string(&seen).expect("json");
    assert!(!text.contains("B secret") && !text.contains("bravo"), "{text}");
    // Cross-tenant: the auditor's token on bravo is refused, and that refusal is recorded in
    // bravo's log, not alpha's.
    let cross = app.call_as(&a_auditor, "bravo", Method::GET, "/v1/audit-events", None).await;
    cross.assert_problem(StatusCode::FORBIDDEN, "tenant_mismatch");
    let denied = events(&app, &b_owner, "bravo", "?action=access.denied").await;
    assert_eq!(denied.len(), 1, "{denied:?}");
    let member = app.call_as(&a_member, "alpha", Method::GET, "/v1/audit-events", None).await;
    member.assert_problem(StatusCode::FORBIDDEN, "forbidden");
    // Logins, failed and not, are recorded; passwords and hashes never are.
    let failed = app
        .call(
            Method::POST,
            "/v1/auth/login",
            &[("x-tenant", "alpha")],
            Some(json!({"email": "owner@alpha.test", "password": "wrong-password"})),
        )
        .await;
    assert_eq!(failed.status, StatusCode::UNAUTHORIZED);
    let all = events(&app, &a_auditor, "alpha", "?limit=500").await;
    assert!(all.iter().any(|e| e["action"] == "auth.login_failed" && e["outcome"] == "failure"));
    assert!(all.iter().any(|e| e["action"] == "auth.login" && e["outcome"] == "success"));
    let text = serde_json::to_string(&all).expect("json");
    assert!(!text.contains("argon2") && !text.contains("password_hash") && !text.contains("wrong-password"), "{text}");
}

#[tokio::test]
async fn export_streams_every_event_as_jsonl_and_csv() {
    let app = spawn_app().await;
    let t = app.create_tenant("alpha").await;
    let token = app.owner_token(&t).await;
    for i in 0..5 {
        let body = json!({"name": format!("Name, \"{i}\""), "email": "c@x.io"});
        app.call_as(&token, "alpha", Method::POST, "/v1/contacts", Some(body)).await;
    }
    let jsonl = app.call_as(&token, "alpha", Method::GET, "/v1/audit-events/export", None).await;
    assert_eq!(jsonl.status, StatusCode::OK);
    let text = jsonl.body.as_str().map(str::to_string).unwrap_or_else(|| jsonl.body.to_string());
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
    assert_eq!(lines.len(), 7);
    // Every event, in seq order (1 to 7 on PostgreSQL; on Citus each node numbers from a
    // range of its own).
    let seqs: Vec<i64> = {
        let mut su = app.superuser_connection().await;
        sqlx::query_scalar("SELECT seq FROM audit_events WHERE tenant_id = $1 ORDER BY seq")
            .bind(t.id)
            .fetch_all(&mut su)
            .await
            .expect("seqs")
    };
    assert_eq!(lines.iter().map(|e| e["seq"].as_i64().unwrap_or(0)).collect::<Vec<_>>(), seqs);
    let csv = app.call_as(&token, "alpha", Method::GET, "/v1/audit-events/export?format=csv", None).await;
    let text = csv.body.as_str().unwrap_or_default().to_string();
    assert!(text.starts_with("seq,id,occurred_at"), "{text}");
    assert_eq!(text.lines().count(), 8, "{text}");
    let bad = app.call_as(&token, "alpha", Method::GET, "/v1/audit-events/export?format=xml", None).await;
    bad.assert_problem(StatusCode::BAD_REQUEST, "invalid_query");
}

/// A refusal of an authenticated user (a member on the auditors' route) names that user; a
/// refusal before authentication stays anonymous.
#[tokio::test]
async fn a_refused_user_is_recorded_as_the_actor_of_access_denied() {
    let app = spawn_app().await;
    let t = app.create_tenant("alpha").await;
    let member = app.create_user(&t, "member").await;
    let owner = app.owner_token(&t).await;
    let refused = app.call_as(&member.access_token, "alpha", Method::GET, "/v1/audit-events", None).await;
    refused.assert_problem(StatusCode::FORBIDDEN, "forbidden");
    let anonymous = app.call(Method::GET, "/v1/contacts", &[("x-tenant", "alpha")], None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);

    let denied = events(&app, &owner, "alpha", "?action=access.denied").await;
    let by_path = |path: &str| denied.iter().find(|e| e["details"]["path"] == path).cloned().expect(path);
    let member_event = by_path("/v1/audit-events");
    assert_eq!(
        (&member_event["actor_type"], &member_event["actor_id"], &member_event["actor_role"]),
        (&json!("user"), &json!(member.id), &json!("member")),
        "{member_event}"
    );
    assert_eq!(member_event["details"]["status"], 403);
    let anonymous_event = by_path("/v1/contacts");
    assert_eq!(
        (&anonymous_event["actor_type"], &anonymous_event["actor_id"], &anonymous_event["actor_role"]),
        (&json!("anonymous"), &Value::Null, &Value::Null),
        "{anonymous_event}"
    );
    assert_eq!(verify(&app, &owner, "alpha").await["valid"], true);
}

/// The body of `GET path` as the bytes the router sent (`TestApp::call` parses JSON into
/// `Value`, whose f64 numbers would hide exactly what is tested here).
async fn raw_body(app: &TestApp, token: &str, tenant: &str, path: &str) -> String {
    let request = Request::builder()
        .uri(path)
        .header("host", "localhost:8080")
        .header("x-tenant", tenant)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .expect("request");
    let response = app.router.clone().oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8(bytes.to_vec()).expect("utf-8")
}

/// Event details reach the auditor as the database holds them: a numeric(38, 10) value keeps
/// all 38 digits in the list and in both exports (f64 kept 17), and the chain still verifies.
#[tokio::test]
async fn audit_details_keep_every_digit_of_a_numeric_in_the_list_and_the_exports() {
    const AMOUNT: &str = "1234567890123456789012345678.0123456789";
    let app = spawn_installed_app().await;
    let mut su = app.superuser_connection().await;
    // Through an operator migration, as tables are added (on Citus it places the table as it
    // creates it: a table made by hand with a key to `tenants` becomes a citus local table, and
    // Citus cannot distribute one with an identity column afterwards).
    let dir = crate::support::scratch_dir("ledger-migration");
    std::fs::write(
        dir.join("V1__ledger.sql"),
        "CREATE TABLE ledger (tenant_id uuid NOT NULL REFERENCES tenants (id), id bigint GENERATED ALWAYS AS IDENTITY,
                              amount numeric(38, 10) NOT NULL, PRIMARY KEY (tenant_id, id))",
    )
    .expect("write the migration");
    rowguard::migrate::operator::apply(&app.superuser_url(), &dir).await.expect("the ledger migration");
    rowguard::migrate::adopt::adopt(&mut su, "ledger", None, None, false).await.expect("adopt");
    let t = app.create_tenant("alpha").await;
    let token = app.owner_token(&t).await;
    let mut conn = app.app_connection().await;
    let mut tx = TenantTx::begin_on(&mut conn, t.id).await.expect("begin");
    sqlx::query("INSERT INTO ledger (tenant_id, amount) VALUES ($1, $2::numeric)")
        .bind(t.id)
        .bind(AMOUNT)
        .execute(tx.conn())
        .await
        .expect("insert");
    tx.commit().await.expect("commit");

    let list = raw_body(&app, &token, "alpha", "/v1/audit-events?action=ledger.create").await;
    assert!(list.contains(&format!(r#""amount": {AMOUNT}"#)), "{list}");
    let jsonl = raw_body(&app, &token, "alpha", "/v1/audit-events/export").await;
    let line = jsonl.lines().find(|l| l.contains("ledger.create")).expect("the event's line");
    assert!(line.contains(&format!(r#""amount": {AMOUNT}"#)), "{line}");
    serde_json::from_str::<Value>(line).expect("still one JSON document per line");
    let csv = raw_body(&app, &token, "alpha", "/v1/audit-events/export?format=csv").await;
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let details = reader.headers().expect("header").iter().position(|h| h == "details").expect("column");
    let row = reader.records().map(|r| r.expect("row")).find(|r| r.get(9) == Some("ledger.create")).expect("row");
    assert_eq!(row.get(details), Some(format!(r#"{{"after": {{"id": 1, "amount": {AMOUNT}}}}}"#).as_str()));
    // What is shown is what is hashed: the chain verifies, over the API and as the CLI does.
    let verified = verify(&app, &token, "alpha").await;
    assert_eq!(verified["valid"], true, "{verified}");
    let tree = tree_report(&app, &t).await;
    assert!(tree.valid && tree.events_checked >= 2, "{tree:?}");
}
