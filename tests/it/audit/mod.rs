//! The audit trail: atomic with the change it records, append-only for the app role,
//! tamper-evident (the verifier finds a modified, deleted, inserted or reordered event),
//! consistent under concurrent writers, and readable only by a tenant's own auditors.

use axum::http::{Method, StatusCode};
use rowguard::audit::tree::TreeReport;
use rowguard::db::TenantTx;
use serde_json::Value;
use sqlx::Connection;

use crate::support::{TestApp, TestTenant, wait_until_sealed};

mod append_only;
mod reading;
mod tamper_evidence;

async fn events(app: &TestApp, token: &str, tenant: &str, query: &str) -> Vec<Value> {
    let r = app.call_as(token, tenant, Method::GET, &format!("/v1/audit-events{query}"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["items"].as_array().cloned().unwrap_or_default()
}

async fn verify(app: &TestApp, token: &str, tenant: &str) -> Value {
    let r = app.call_as(token, tenant, Method::GET, "/v1/audit-events/verify", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

/// Wait until the service's sealer has put every committed event in its tree, then verify
/// the tenant's tree as `rowguard audit verify` does (with the service's key).
async fn tree_report(app: &TestApp, tenant: &TestTenant) -> TreeReport {
    let mut su = app.superuser_connection().await;
    wait_until_sealed(&mut su).await;
    su.close().await.expect("close");
    let mut conn = app.app_connection().await;
    let mut tx = TenantTx::begin_on(&mut conn, tenant.id).await.expect("begin");
    let key = app.ctx.audit.verifying_key();
    rowguard::audit::tree::verify(tx.conn(), tenant.id, Some((app.ctx.audit.log_name(), &key))).await.expect("verify")
}
