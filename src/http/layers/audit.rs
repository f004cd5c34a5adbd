//! The audit layer: records refusals (401 and 403 answers on tenant routes) as
//! `access.denied` events in a transaction of their own, as whoever authentication found (a
//! user refused a route its role may not use) or, before that, anonymously. Sampled per tenant — at most
//! `PER_MINUTE` events a minute, with a count of those left out — so a flood of bad tokens
//! cannot flood the log. It wraps authentication (in `gate`) so it sees what authentication refuses.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::audit::{self, AccessEvent};
use crate::db::TenantScope;
use crate::domain::TenantId;
use crate::http::ApiContext;
use crate::http::context::RequestContext;

const PER_MINUTE: u32 = 20;
const MAX_TENANTS_TRACKED: usize = 100_000;

/// Per-tenant sampling windows: (window start, recorded in it, left out since last record).
#[derive(Default)]
pub struct AccessSampler {
    windows: Mutex<HashMap<TenantId, (Instant, u32, u64)>>,
}

impl AccessSampler {
    /// Whether to record this refusal; if so, how many were left out before it.
    fn admit(&self, tenant: TenantId) -> Option<u64> {
        let mut windows = self.windows.lock().ok()?;
        if windows.len() >= MAX_TENANTS_TRACKED {
            windows.retain(|_, (start, _, _)| start.elapsed() < Duration::from_secs(60));
        }
        let entry = windows.entry(tenant).or_insert((Instant::now(), 0, 0));
        if entry.0.elapsed() >= Duration::from_secs(60) {
            entry.0 = Instant::now();
            entry.1 = 0;
        }
        if entry.1 < PER_MINUTE {
            entry.1 += 1;
            let skipped = entry.2;
            entry.2 = 0;
            Some(skipped)
        } else {
            entry.2 += 1;
            None
        }
    }
}

/// The answers `record_refusal` records.
pub(crate) fn is_refusal(status: StatusCode) -> bool {
    status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN
}

/// After the answer of a bearer route (`gate`): a 401 or 403 is recorded as `access.denied`,
/// as whoever acts in the request — read after the answer, so authentication has set the
/// principal by now if it accepted the token, and a member refused an owner's route is
/// recorded as that member. Sampled per tenant (`AccessSampler`).
pub(crate) async fn record_refusal(
    ctx: &ApiContext,
    context: &RequestContext,
    tenant: TenantId,
    method: &Method,
    path: &str,
    status: StatusCode,
) {
    if !is_refusal(status) {
        return;
    }
    let Some(skipped) = ctx.access_sampler.admit(tenant) else { return };
    let actor = context.actor();
    let event = AccessEvent {
        action: "access.denied",
        resource_type: None,
        resource_id: None,
        outcome: "denied",
        details: json!({"method": method.as_str(), "path": path, "status": status.as_u16(), "not_recorded_before": skipped}),
    };
    if let Err(e) = ctx.door.record(super::LAYERS_ONLY, context, &actor, event).await {
        ctx.metrics.audit_write_failed();
        tracing::warn!(error = %e, "could not record a refusal in the audit log");
    }
}

/// A rate-limit refusal's event (`access.rate_limited`), sampled with the same per-tenant
/// budget as other refusals so a flood over quota cannot flood the log; None when over it.
fn throttled(
    ctx: &ApiContext,
    tenant: TenantId,
    method: &str,
    path: &str,
    limit: &str,
) -> Option<AccessEvent<'static>> {
    let skipped = ctx.access_sampler.admit(tenant)?;
    Some(AccessEvent {
        action: "access.rate_limited",
        resource_type: None,
        resource_id: None,
        outcome: "denied",
        details: json!({"method": method, "path": path, "limit": limit, "not_recorded_before": skipped}),
    })
}

fn recording_failed(ctx: &ApiContext, e: sqlx::Error) {
    ctx.metrics.audit_write_failed();
    tracing::warn!(error = %e, "could not record a rate-limit refusal in the audit log");
}

/// Record a rate-limit refusal decided by a layer, as whoever acts in the request (the user,
/// once authentication has run; anonymous before).
pub async fn record_throttled(ctx: &ApiContext, context: &RequestContext, method: &Method, path: &str, limit: &str) {
    let Some(tenant) = context.tenant().map(|t| t.id) else { return };
    let Some(event) = throttled(ctx, tenant, method.as_str(), path, limit) else { return };
    if let Err(e) = ctx.door.record(super::LAYERS_ONLY, context, &context.actor(), event).await {
        recording_failed(ctx, e);
    }
}

/// As `record_throttled`, for a refusal decided inside a handler: as whoever acts in `scope`.
pub async fn record_throttled_in(ctx: &ApiContext, scope: &TenantScope, method: &str, path: &str, limit: &str) {
    let Some(event) = throttled(ctx, scope.tenant_id(), method, path, limit) else { return };
    if let Err(e) = audit::record_in(scope, event).await {
        recording_failed(ctx, e);
    }
}
