//! `GET /v1/audit-events/export`: every event of the tenant as JSON Lines or CSV, streamed
//! in pages in constant memory, with no connection held while the client reads, and bounded
//! per tenant and per instance (`ExportSlots`).

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use utoipa::IntoParams;

use super::audit::{AuditEvent, EXPORT_PAGE_EVENTS, require_reader};
use crate::db::TenantScope;
use crate::domain::TenantId;
use crate::http::ApiContext;
use crate::http::context::Principal;
use crate::http::error::{ApiError, Problem};
use crate::http::error_codes::ErrorCode;
use crate::http::extract::Query;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    /// `jsonl` (default) or `csv`.
    #[param(pattern = "^(jsonl|csv)$")]
    format: Option<String>,
}

/// Every event of the tenant, oldest first, streamed in pages (constant memory however long
/// the log).
///
/// No transaction or pooled connection is held while the answer waits on the client: each
/// page is read in a short tenant transaction of its own, which ends before the page is
/// handed to the connection. A client that stops reading therefore stalls only its own
/// socket — it used to hold a pooled connection and an open transaction, and fourteen such
/// clients emptied the pool for every tenant. The log is append-only, so every page reads
/// events that stay as read; the export covers `seq` up to the newest seen when it began. Seq
/// is given before commit (sql/V21), so an event with a lower seq committing meanwhile can be
/// left out: exactly which sealed events an export holds is told by their leaves and the
/// `audit-tree-size` header, the signed head it was cut at. Exports at once are bounded per tenant and per instance (`ExportSlots`), and a
/// slot is given back when the client has not taken a page for `STALLED_AFTER`.
#[utoipa::path(get, path = "/v1/audit-events/export", tag = "audit", params(ExportParams), security(("bearer" = [])),
    responses(
        (status = 200, description = "JSON Lines (`format=jsonl`, the default) or CSV (`format=csv`); every sealed event carries its `leaf_index` and `leaf_hash`, and the headers `audit-tree-size` and `audit-tree-root` name the newest signed tree head when the export began",
            content((String = "application/x-ndjson"), (String = "text/csv"))),
        (status = 429, description = "`export_limit`: too many exports in progress for this tenant or this instance", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn export_events(
    State(ctx): State<ApiContext>,
    scope: TenantScope,
    principal: Principal,
    Query(params): Query<ExportParams>,
) -> Result<Response, ApiError> {
    require_reader(&principal)?;
    let csv = match params.format.as_deref() {
        None | Some("jsonl") => false,
        Some("csv") => true,
        Some(_) => return Err(ApiError::bad_request(ErrorCode::InvalidQuery, "format must be jsonl or csv")),
    };
    let Some(slot) = ctx.exports.take(scope.tenant_id()) else {
        let mut refused = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::ExportLimit,
            "too many audit exports are in progress for this tenant or on this instance; retry later",
        )
        .into_response();
        refused.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
        return Ok(refused);
    };
    let mut tx = scope.begin().await?;
    let head: i64 = sqlx::query_scalar!(
        r#"SELECT coalesce(max(seq), 0) AS "head!" FROM audit_events WHERE tenant_id = $1"#,
        scope.tenant_id().0
    )
    .fetch_one(tx.conn())
    .await?;
    // The signed tree head the export was cut at: every event it covers carries its leaf, and
    // `GET /v1/audit-log/head` or a proof with `tree_size` gives the signed note of that size.
    let tree = crate::audit::tree::head(tx.conn(), scope.tenant_id(), None).await?;
    tx.commit().await?;
    let pages = ExportPages { scope, csv, after: 0, head, header_due: csv, slot };
    let stream = futures_util::stream::unfold(pages, |mut pages| async move {
        let chunk = pages.next_chunk().await?;
        Some((chunk, pages))
    });
    let mut response = Body::from_stream(stream).into_response();
    let content_type = if csv { "text/csv; charset=utf-8" } else { "application/x-ndjson" };
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    let (size, root) = tree.map(|h| (h.size, hex::encode(h.root))).unwrap_or((0, String::new()));
    if let (Ok(size), Ok(root)) = (HeaderValue::from_str(&size.to_string()), HeaderValue::from_str(&root)) {
        response.headers_mut().insert("audit-tree-size", size);
        response.headers_mut().insert("audit-tree-root", root);
    }
    Ok(response)
}

/// Events per page of an export: ~0.5 MB of JSON at most in memory per export.
const EXPORT_PAGE: i64 = 1000;

/// Where an export is: the last `seq` written, and the head it stops at.
struct ExportPages {
    scope: TenantScope,
    csv: bool,
    after: i64,
    head: i64,
    header_due: bool,
    slot: ExportSlot,
}

impl ExportPages {
    /// The next page, rendered; None when the export is complete. An error ends the body with
    /// an error, so a client sees a broken transfer, never a file that looks complete.
    async fn next_chunk(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        if self.slot.expired() {
            return Some(Err(std::io::Error::other("the export stalled and was ended")));
        }
        self.slot.touch();
        let mut out = Vec::new();
        if std::mem::take(&mut self.header_due) {
            out.extend_from_slice(CSV_HEADER.as_bytes());
        }
        if self.after >= self.head {
            return (!out.is_empty()).then(|| Ok(Bytes::from(out)));
        }
        let events = match self.read_page().await {
            Ok(events) => events,
            Err(e) => {
                tracing::error!(code = e.code.as_str(), detail = %e.detail, "audit export failed midway");
                return Some(Err(std::io::Error::other("export failed")));
            }
        };
        let Some(last) = events.last() else {
            // Purged under us (retention): nothing more to read up to the head.
            self.after = self.head;
            return (!out.is_empty()).then(|| Ok(Bytes::from(out)));
        };
        self.after = last.seq;
        for event in &events {
            let written = if self.csv {
                write_csv_line(&mut out, event)
            } else {
                serde_json::to_writer(&mut out, event).map_err(std::io::Error::other)
            };
            if let Err(e) = written {
                return Some(Err(e));
            }
            if !self.csv {
                out.push(b'\n');
            }
        }
        Some(Ok(Bytes::from(out)))
    }

    async fn read_page(&self) -> Result<Vec<AuditEvent>, ApiError> {
        let mut tx = self.scope.begin().await?;
        let events = sqlx::query_as::<_, AuditEvent>(EXPORT_PAGE_EVENTS)
            .bind(self.scope.tenant_id())
            .bind(self.after)
            .bind(self.head)
            .bind(EXPORT_PAGE)
            .fetch_all(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(events)
    }
}

const CSV_HEADER: &str = "seq,id,occurred_at,actor_type,actor_id,actor_role,client_ip,user_agent,request_id,action,resource_type,resource_id,outcome,details,leaf_index,leaf_hash\n";

/// A cell a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, or a tab or carriage
/// return before one) gets a leading `'`, so it is shown as the text it is (OWASP, CSV
/// injection). Applied to every cell: the ones we generate (numbers, ids, times, JSON
/// objects) never start with those characters, so only request-controlled text changes.
fn neutralise_formula(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

fn write_csv_line(out: &mut Vec<u8>, e: &AuditEvent) -> Result<(), std::io::Error> {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let cells = [
        e.seq.to_string(),
        e.id.to_string(),
        e.occurred_at.to_rfc3339(),
        e.actor_type.clone(),
        e.actor_id.map(|u| u.to_string()).unwrap_or_default(),
        opt(&e.actor_role),
        opt(&e.client_ip),
        opt(&e.user_agent),
        opt(&e.request_id),
        e.action.clone(),
        opt(&e.resource_type),
        opt(&e.resource_id),
        e.outcome.clone(),
        e.details.get().to_string(),
        e.leaf_index.map(|i| i.to_string()).unwrap_or_default(),
        opt(&e.leaf_hash),
    ];
    // csv quotes what needs quoting (commas, quotes, line breaks) and nothing else.
    let mut writer = csv::WriterBuilder::new().has_headers(false).from_writer(out);
    writer.write_record(cells.iter().map(|c| neutralise_formula(c).into_owned()))?;
    writer.flush()?;
    Ok(())
}

/// How many audit exports may run at once: per tenant, and on this instance.
pub struct ExportSlots {
    per_tenant: usize,
    per_instance: usize,
    running: std::sync::Mutex<std::collections::HashMap<TenantId, usize>>,
}

/// A client that has not taken a page for this long has its slot given back, and its export
/// ends with an error the next time it reads.
const STALLED_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

impl Default for ExportSlots {
    fn default() -> Self {
        ExportSlots { per_tenant: 2, per_instance: 16, running: Default::default() }
    }
}

impl ExportSlots {
    fn take(self: &std::sync::Arc<Self>, tenant: TenantId) -> Option<ExportSlot> {
        let mut running = self.running.lock().ok()?;
        let total: usize = running.values().sum();
        let mine = running.get(&tenant).copied().unwrap_or(0);
        if mine >= self.per_tenant || total >= self.per_instance {
            return None;
        }
        *running.entry(tenant).or_insert(0) += 1;
        drop(running);
        let held = std::sync::Arc::new(SlotHold {
            slots: std::sync::Arc::clone(self),
            tenant,
            released: std::sync::atomic::AtomicBool::new(false),
            last_read: std::sync::Mutex::new(std::time::Instant::now()),
        });
        spawn_stall_watch(std::sync::Arc::downgrade(&held));
        Some(ExportSlot(held))
    }

    fn give_back(&self, tenant: TenantId) {
        if let Ok(mut running) = self.running.lock()
            && let Some(n) = running.get_mut(&tenant)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                running.remove(&tenant);
            }
        }
    }
}

/// Gives the slot back once, when released early (stalled) or dropped (done or gone).
struct SlotHold {
    slots: std::sync::Arc<ExportSlots>,
    tenant: TenantId,
    released: std::sync::atomic::AtomicBool,
    last_read: std::sync::Mutex<std::time::Instant>,
}

impl SlotHold {
    fn release(&self) {
        if !self.released.swap(true, std::sync::atomic::Ordering::SeqCst) {
            self.slots.give_back(self.tenant);
        }
    }
}

impl Drop for SlotHold {
    fn drop(&mut self) {
        self.release();
    }
}

struct ExportSlot(std::sync::Arc<SlotHold>);

impl ExportSlot {
    fn touch(&self) {
        if let Ok(mut at) = self.0.last_read.lock() {
            *at = std::time::Instant::now();
        }
    }

    fn expired(&self) -> bool {
        self.0.released.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Hyper asks the body for more only when the socket takes it, so a client that stops
/// reading stops our stream from being polled at all: only a watcher outside it can notice.
fn spawn_stall_watch(hold: std::sync::Weak<SlotHold>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(STALLED_AFTER / 6).await;
            let Some(hold) = hold.upgrade() else { return }; // finished or gone
            let idle = hold.last_read.lock().map(|at| at.elapsed()).unwrap_or_default();
            if idle >= STALLED_AFTER {
                tracing::warn!(tenant = %hold.tenant, "an audit export stalled; its slot is given back");
                hold.release();
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_a_spreadsheet_would_run_get_a_leading_quote() {
        let table = [
            ("=1+1", "'=1+1"),
            ("+1", "'+1"),
            ("-1", "'-1"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1", "'\t=1"),
            ("\r=1", "'\r=1"),
            ("contact.create", "contact.create"),
            ("{\"a\": \"=1\"}", "{\"a\": \"=1\"}"),
            ("1-2", "1-2"),
            ("", ""),
        ];
        for (cell, shown) in table {
            assert_eq!(neutralise_formula(cell), shown, "{cell:?}");
        }
    }

    #[tokio::test]
    async fn exports_are_bounded_per_tenant_and_per_instance_and_slots_come_back() {
        let slots = std::sync::Arc::new(ExportSlots::default());
        let a = TenantId::new_v7();
        let first = slots.take(a).expect("one");
        let _second = slots.take(a).expect("two");
        assert!(slots.take(a).is_none(), "a third export of one tenant");
        drop(first);
        let _again = slots.take(a).expect("a slot comes back when its export ends");
        let mut others = Vec::new();
        for _ in 0..7 {
            let t = TenantId::new_v7();
            others.push(slots.take(t).expect("slot"));
            others.push(slots.take(t).expect("slot"));
        }
        assert!(slots.take(TenantId::new_v7()).is_none(), "a seventeenth export on the instance");
        let stalled = others.pop().expect("slot");
        stalled.0.release(); // what the stall watch does
        assert!(stalled.expired());
        assert!(slots.take(TenantId::new_v7()).is_some(), "a stalled export's slot is given back");
    }
}
