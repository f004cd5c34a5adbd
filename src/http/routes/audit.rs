//! The auditor API: `GET /v1/audit-events` (filters, newest first), `…/export` (JSONL or CSV,
//! streamed in constant memory), `…/verify` (the hash chain and its signed checkpoints) and
//! `…/checkpoints`. Readable by the owner, admin and auditor roles only.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::audit::{self, ChainReport, Checkpoint};
use crate::domain::TenantId;
use crate::domain::permissions::Permission;
use crate::http::ApiContext;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{Json, Query, TenantScope};
use crate::http::layers::auth::Principal;

#[derive(Debug, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct AuditEvent {
    pub seq: i64,
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    /// user, operator, system or anonymous.
    pub actor_type: String,
    pub actor_id: Option<Uuid>,
    pub actor_role: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    /// `contact.create`, `user.role_change`, `auth.login_failed`, `access.denied`, …
    pub action: String,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    /// success, denied or failure.
    pub outcome: String,
    /// Changed fields before and after; never secrets.
    pub details: serde_json::Value,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEvent>,
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditFilter {
    /// Only events by this user id.
    actor: Option<Uuid>,
    action: Option<String>,
    resource_type: Option<String>,
    resource_id: Option<String>,
    /// success, denied or failure.
    outcome: Option<String>,
    /// Events at or after this time (RFC 3339).
    from: Option<DateTime<Utc>>,
    /// Events before this time (RFC 3339).
    to: Option<DateTime<Utc>>,
    /// Page size, 1 to 500 (default 50).
    limit: Option<u32>,
    cursor: Option<String>,
}

const SELECT_EVENTS: &str =
    "SELECT seq, id, occurred_at, actor_type, actor_id, actor_role, host(client_ip) AS client_ip,
        user_agent, request_id, action, resource_type, resource_id, outcome, details
   FROM audit_events
  WHERE tenant_id = $1
    AND ($2::uuid IS NULL OR actor_id = $2)
    AND ($3::text IS NULL OR action = $3)
    AND ($4::text IS NULL OR resource_type = $4)
    AND ($5::text IS NULL OR resource_id = $5)
    AND ($6::text IS NULL OR outcome = $6)
    AND ($7::timestamptz IS NULL OR occurred_at >= $7)
    AND ($8::timestamptz IS NULL OR occurred_at < $8)
    AND ($9::bigint IS NULL OR seq < $9)
  ORDER BY seq DESC
  LIMIT $10";

fn require_reader(principal: &Principal) -> Result<(), ApiError> {
    principal.require(Permission::ReadAuditLog)
}

fn bind_filter<'q>(
    query: sqlx::query::QueryAs<'q, sqlx::Postgres, AuditEvent, sqlx::postgres::PgArguments>,
    tenant: TenantId,
    f: &'q AuditFilter,
    before: Option<i64>,
    limit: Option<i64>,
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, AuditEvent, sqlx::postgres::PgArguments> {
    query
        .bind(tenant)
        .bind(f.actor)
        .bind(f.action.as_deref())
        .bind(f.resource_type.as_deref())
        .bind(f.resource_id.as_deref())
        .bind(f.outcome.as_deref())
        .bind(f.from)
        .bind(f.to)
        .bind(before)
        .bind(limit)
}

/// Audit events, newest first.
#[utoipa::path(get, path = "/v1/audit-events", tag = "audit", params(AuditFilter), security(("bearer" = [])),
    responses((status = 200, body = AuditPage), (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn list_events(
    scope: TenantScope,
    principal: Principal,
    Query(filter): Query<AuditFilter>,
) -> Result<Json<AuditPage>, ApiError> {
    require_reader(&principal)?;
    let limit = filter.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request("invalid_query", "limit must be between 1 and 500"));
    }
    let before = match filter.cursor.as_deref() {
        Some(c) => Some(
            c.parse::<i64>()
                .map_err(|_| ApiError::bad_request("invalid_cursor", "cursor is not one this API gave out"))?,
        ),
        None => None,
    };
    let mut tx = scope.begin().await?;
    let mut items =
        bind_filter(sqlx::query_as(SELECT_EVENTS), scope.tenant_id(), &filter, before, Some(i64::from(limit) + 1))
            .fetch_all(tx.conn())
            .await?;
    tx.commit().await?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|e| e.seq.to_string())
    } else {
        None
    };
    Ok(Json(AuditPage { items, next_cursor }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    /// `jsonl` (default) or `csv`.
    format: Option<String>,
}

/// Every event of the tenant, oldest first, streamed (constant memory however long the log).
#[utoipa::path(get, path = "/v1/audit-events/export", tag = "audit", params(ExportParams), security(("bearer" = [])),
    responses((status = 200, description = "JSON Lines or CSV", content_type = "application/x-ndjson")))]
pub async fn export_events(
    scope: TenantScope,
    principal: Principal,
    Query(params): Query<ExportParams>,
) -> Result<Response, ApiError> {
    require_reader(&principal)?;
    let csv = match params.format.as_deref() {
        None | Some("jsonl") => false,
        Some("csv") => true,
        Some(_) => return Err(ApiError::bad_request("invalid_query", "format must be jsonl or csv")),
    };
    let mut tx = scope.begin().await?;
    let tenant = scope.tenant_id();
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(64);
    tokio::spawn(async move {
        if csv {
            let _ = sender.send(Ok(CSV_HEADER.to_string())).await;
        }
        let mut rows = sqlx::query_as::<_, AuditEvent>(EXPORT_EVENTS).bind(tenant).fetch(tx.conn());
        loop {
            let line = match rows.try_next().await {
                Ok(Some(event)) if csv => csv_line(&event),
                Ok(Some(event)) => serde_json::to_string(&event).map(|s| s + "\n").unwrap_or_default(),
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %e, "audit export failed midway");
                    let _ = sender.send(Err(std::io::Error::other("export failed"))).await;
                    break;
                }
            };
            if sender.send(Ok(line)).await.is_err() {
                break; // the client went away
            }
        }
    });
    let stream = futures_util::stream::unfold(receiver, |mut r| async move { r.recv().await.map(|item| (item, r)) });
    let mut response = Body::from_stream(stream).into_response();
    let content_type = if csv { "text/csv; charset=utf-8" } else { "application/x-ndjson" };
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

const EXPORT_EVENTS: &str =
    "SELECT seq, id, occurred_at, actor_type, actor_id, actor_role, host(client_ip) AS client_ip,
        user_agent, request_id, action, resource_type, resource_id, outcome, details
   FROM audit_events WHERE tenant_id = $1 ORDER BY seq";

const CSV_HEADER: &str = "seq,id,occurred_at,actor_type,actor_id,actor_role,client_ip,user_agent,request_id,action,resource_type,resource_id,outcome,details\n";

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

fn csv_line(e: &AuditEvent) -> String {
    let opt = |v: &Option<String>| v.as_deref().map(csv_field).unwrap_or_default();
    [
        e.seq.to_string(),
        e.id.to_string(),
        e.occurred_at.to_rfc3339(),
        csv_field(&e.actor_type),
        e.actor_id.map(|u| u.to_string()).unwrap_or_default(),
        opt(&e.actor_role),
        opt(&e.client_ip),
        opt(&e.user_agent),
        opt(&e.request_id),
        csv_field(&e.action),
        opt(&e.resource_type),
        opt(&e.resource_id),
        csv_field(&e.outcome),
        csv_field(&e.details.to_string()),
    ]
    .join(",")
        + "\n"
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct VerifyParams {
    /// An event sequence number from a checkpoint the auditor holds…
    seq: Option<i64>,
    /// …and the head hash (hex) that checkpoint recorded for it.
    head: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct VerifyReport {
    #[serde(flatten)]
    #[schema(inline)]
    pub chain: ChainReportSchema,
    /// Stored checkpoints whose signature does not verify with this service's key.
    pub bad_signatures: Vec<i64>,
}

/// The shape of `ChainReport` in the OpenAPI document.
#[derive(Serialize, ToSchema)]
pub struct ChainReportSchema {
    pub valid: bool,
    pub events: i64,
    pub head_seq: i64,
    pub head_hash: String,
    #[schema(value_type = Option<Object>)]
    pub first_broken: Option<serde_json::Value>,
    pub checkpoints_checked: usize,
}

impl From<ChainReport> for ChainReportSchema {
    fn from(r: ChainReport) -> Self {
        ChainReportSchema {
            valid: r.valid,
            events: r.events,
            head_seq: r.head_seq,
            head_hash: r.head_hash,
            first_broken: r.first_broken.and_then(|b| serde_json::to_value(b).ok()),
            checkpoints_checked: r.checkpoints_checked,
        }
    }
}

/// Verify the tenant's hash chain and every signed checkpoint against it.
#[utoipa::path(get, path = "/v1/audit-events/verify", tag = "audit", params(VerifyParams), security(("bearer" = [])),
    responses((status = 200, body = VerifyReport)))]
pub async fn verify_events(
    State(ctx): State<ApiContext>,
    scope: TenantScope,
    principal: Principal,
    Query(params): Query<VerifyParams>,
) -> Result<Json<VerifyReport>, ApiError> {
    require_reader(&principal)?;
    let mut expected = Vec::new();
    if let (Some(seq), Some(head)) = (params.seq, params.head.as_deref()) {
        expected
            .push((seq, parse_hex(head).ok_or_else(|| ApiError::bad_request("invalid_query", "head must be hex"))?));
    }
    let mut tx = scope.begin().await?;
    let checkpoints = audit::checkpoint::list(tx.conn(), scope.tenant_id()).await?;
    let mut bad_signatures = Vec::new();
    for c in &checkpoints {
        if c.key_id == ctx.audit.key_id() && !ctx.audit.verifies(c) {
            bad_signatures.push(c.seq);
        } else {
            expected.push((c.seq, c.head.clone()));
        }
    }
    let report = audit::verify_chain(tx.conn(), scope.tenant_id(), &expected).await?;
    tx.commit().await?;
    Ok(Json(VerifyReport { chain: report.into(), bad_signatures }))
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok())).collect()
}

#[derive(Serialize, ToSchema)]
pub struct CheckpointList {
    /// The Ed25519 public key (hex) checkpoints are signed with, and its id.
    pub public_key: String,
    pub key_id: String,
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<Checkpoint>,
}

/// Signed checkpoints of the tenant's chain, newest first.
#[utoipa::path(get, path = "/v1/audit-events/checkpoints", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = CheckpointList)))]
pub async fn list_checkpoints(
    State(ctx): State<ApiContext>,
    scope: TenantScope,
    principal: Principal,
) -> Result<Json<CheckpointList>, ApiError> {
    require_reader(&principal)?;
    let mut tx = scope.begin().await?;
    let items = audit::checkpoint::list(tx.conn(), scope.tenant_id()).await?;
    tx.commit().await?;
    Ok(Json(CheckpointList { public_key: ctx.audit.public_key_hex(), key_id: ctx.audit.key_id().into(), items }))
}

/// Sign a checkpoint of the chain's current head now (also done on a schedule).
#[utoipa::path(post, path = "/v1/audit-events/checkpoints", tag = "audit", security(("bearer" = [])),
    responses((status = 201, description = "created"), (status = 200, description = "nothing new to sign")))]
pub async fn create_checkpoint(
    State(ctx): State<ApiContext>,
    scope: TenantScope,
    principal: Principal,
) -> Result<Response, ApiError> {
    require_reader(&principal)?;
    let mut tx = scope.begin().await?;
    let made = ctx.audit.checkpoint(tx.conn(), scope.tenant_id()).await?;
    tx.commit().await?;
    Ok(match made {
        Some(c) => (StatusCode::CREATED, Json(c)).into_response(),
        None => (StatusCode::OK, Json(serde_json::json!({"created": false}))).into_response(),
    })
}
