//! The generic API over adopted tables (`/v1/data/{table}`), through HTTP with two tenants and
//! several roles: CRUD, keyset pages, filters, every JSON type, type errors naming the column,
//! constraint violations, cross-tenant reads, writes and references answered exactly like
//! missing rows, the role sets, the audit trail, and the OpenAPI document — all for tables the
//! operator wrote in SQL and adopted, with no restart.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::Value;

use crate::support::{TestApp, TestResponse};

mod crud;
mod rules;
mod types;

/// Wait until the service serves `table` (the adoption's NOTIFY reaches it asynchronously).
async fn until_served(app: &TestApp, token: &str, tenant: &str, table: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = app.call_as(token, tenant, Method::GET, &format!("/v1/data/{table}?limit=1"), None).await;
        if r.status == StatusCode::OK {
            return;
        }
        assert!(Instant::now() < deadline, "{table} never served: {} {}", r.status, r.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn id_of(r: &TestResponse) -> String {
    match &r.body["id"] {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => panic!("no id in {other}"),
    }
}
