//! The auditor API: `GET /v1/audit-events` (filters, newest first), `…/export` (in
//! `audit_export`: JSONL or CSV, streamed in constant memory), `…/verify` (the Merkle tree and its signed heads, the hash
//! chain of the events before it and its signed checkpoints) and
//! `…/checkpoints`. Readable by the owner, admin and auditor roles only.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::audit::{self, ChainReport, Checkpoint};
use crate::db::TenantScope;
use crate::domain::TenantId;
use crate::domain::permissions::Permission;
use crate::http::ApiContext;
use crate::http::context::Principal;
use crate::http::error::{ApiError, Problem};
use crate::http::error_codes::ErrorCode;
use crate::http::extract::{Json, Query};

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
    /// Changed fields before and after; never secrets. Passed through as the database's text
    /// of the stored jsonb — the text the hash chain covers — so numbers keep every digit
    /// (a `numeric(38, 10)` column's value would not survive a trip through f64).
    #[schema(value_type = Object)]
    pub details: Box<serde_json::value::RawValue>,
    /// The event's place in the tenant's Merkle tree, once sealed (null in the second or so
    /// after commit): check it with `GET /v1/audit-events/{id}/proof`.
    pub leaf_index: Option<i64>,
    /// SHA-256(0x00 ‖ leaf bytes), hex, once sealed.
    pub leaf_hash: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEvent>,
    pub next_cursor: Option<String>,
}

/// The console (`http::console`) builds one from its form; fields are crate-visible for it.
#[derive(Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditFilter {
    /// Only events by this user id.
    pub(crate) actor: Option<Uuid>,
    pub(crate) action: Option<String>,
    pub(crate) resource_type: Option<String>,
    pub(crate) resource_id: Option<String>,
    /// success, denied or failure.
    pub(crate) outcome: Option<String>,
    /// Events at or after this time (RFC 3339).
    pub(crate) from: Option<DateTime<Utc>>,
    /// Events before this time (RFC 3339).
    pub(crate) to: Option<DateTime<Utc>>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub(crate) limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(pattern = r"^[0-9]{1,18}$")]
    pub(crate) cursor: Option<String>,
}

/// Events with their place in the tree (null until sealed), for a query to go on with WHERE.
macro_rules! events_with_leaves {
    () => {
        "SELECT e.seq, e.id, e.occurred_at, e.actor_type, e.actor_id, e.actor_role, host(e.client_ip) AS client_ip,
        e.user_agent, e.request_id, e.action, e.resource_type, e.resource_id, e.outcome, e.details,
        l.leaf_index, encode(n.hash, 'hex') AS leaf_hash
   FROM audit_events e
   LEFT JOIN audit_tree_leaves l ON l.tenant_id = e.tenant_id AND l.seq = e.seq
   LEFT JOIN audit_tree_nodes n ON n.tenant_id = e.tenant_id AND n.level = 0 AND n.idx = l.leaf_index"
    };
}

const SELECT_EVENTS: &str = concat!(
    events_with_leaves!(),
    "
  WHERE e.tenant_id = $1
    AND ($2::uuid IS NULL OR e.actor_id = $2)
    AND ($3::text IS NULL OR e.action = $3)
    AND ($4::text IS NULL OR e.resource_type = $4)
    AND ($5::text IS NULL OR e.resource_id = $5)
    AND ($6::text IS NULL OR e.outcome = $6)
    AND ($7::timestamptz IS NULL OR e.occurred_at >= $7)
    AND ($8::timestamptz IS NULL OR e.occurred_at < $8)
    AND ($9::bigint IS NULL OR e.seq < $9)
  ORDER BY e.seq DESC
  LIMIT $10"
);

/// One page of an export (`audit_export`): events after a seq, up to the head it stops at.
pub(super) const EXPORT_PAGE_EVENTS: &str = concat!(
    events_with_leaves!(),
    "
  WHERE e.tenant_id = $1 AND e.seq > $2 AND e.seq <= $3 ORDER BY e.seq LIMIT $4"
);

pub(crate) fn require_reader(principal: &Principal) -> Result<(), ApiError> {
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
    Ok(Json(list_page(&scope, &filter).await?))
}

/// One page of `scope`'s events matching `filter`, newest first (the API's list and the
/// console's; the caller has checked the reader's permission).
pub(crate) async fn list_page(scope: &TenantScope, filter: &AuditFilter) -> Result<AuditPage, ApiError> {
    let limit = filter.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request(ErrorCode::InvalidQuery, "limit must be between 1 and 500"));
    }
    let before = match filter.cursor.as_deref() {
        Some(c) => Some(
            Some(c)
                .filter(|c| (1..=18).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|c| c.parse::<i64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request(ErrorCode::InvalidCursor, "cursor is not one this API gave out")
                })?,
        ),
        None => None,
    };
    let mut tx = scope.begin().await?;
    let mut items =
        bind_filter(sqlx::query_as(SELECT_EVENTS), scope.tenant_id(), filter, before, Some(i64::from(limit) + 1))
            .fetch_all(tx.conn())
            .await?;
    tx.commit().await?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|e| e.seq.to_string())
    } else {
        None
    };
    Ok(AuditPage { items, next_cursor })
}

/// One event of `tenant` by id, in a transaction that has set the tenant (the console's event
/// page); None when the tenant has no such event.
pub(crate) async fn event_by_id(
    conn: &mut sqlx::PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<AuditEvent>, ApiError> {
    const SELECT_EVENT: &str = concat!(events_with_leaves!(), "\n  WHERE e.tenant_id = $1 AND e.id = $2");
    Ok(sqlx::query_as(SELECT_EVENT).bind(tenant).bind(id).fetch_optional(conn).await?)
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct VerifyParams {
    /// An event sequence number from a checkpoint the auditor holds…
    seq: Option<i64>,
    /// …and the head hash (hex) that checkpoint recorded for it.
    #[param(pattern = r"^([0-9A-Fa-f]{2})*$")]
    head: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct VerifyReport {
    #[serde(flatten)]
    #[schema(inline)]
    pub chain: ChainReportSchema,
    /// Stored checkpoints whose signature does not verify with this service's key.
    pub bad_signatures: Vec<i64>,
    /// The Merkle tree (every event since sql/V21, and the chain's events too, sealed first):
    /// leaves recomputed from the events, roots against the signed heads.
    #[schema(value_type = Object)]
    pub tree: audit::tree::TreeReport,
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
    // A head that is not hex is refused whether or not a `seq` came with it.
    let head = params
        .head
        .as_deref()
        .map(|h| hex::decode(h).ok().ok_or_else(|| ApiError::bad_request(ErrorCode::InvalidQuery, "head must be hex")))
        .transpose()?;
    let held = match (params.seq, head) {
        (Some(seq), Some(head)) => Some((seq, head)),
        _ => None,
    };
    let mut tx = scope.begin().await?;
    let report = verify_report(&ctx, tx.conn(), scope.tenant_id(), held).await?;
    tx.commit().await?;
    Ok(Json(report))
}

/// Verify `tenant`'s log in a transaction that has set the tenant: the Merkle tree against its
/// signed heads, the hash chain against every stored checkpoint (and `held`, a checkpoint the
/// auditor brought). The API's verify, the console's and the operator console's.
pub(crate) async fn verify_report(
    ctx: &ApiContext,
    conn: &mut sqlx::PgConnection,
    tenant: TenantId,
    held: Option<(i64, Vec<u8>)>,
) -> Result<VerifyReport, ApiError> {
    let mut expected: Vec<(i64, Vec<u8>)> = held.into_iter().collect();
    let key = ctx.audit.verifying_key();
    let tree = audit::tree::verify(&mut *conn, tenant, Some((ctx.audit.log_name(), &key)))
        .await
        .map_err(ApiError::internal)?;
    let checkpoints = audit::checkpoint::list(&mut *conn, tenant).await?;
    let mut bad_signatures = Vec::new();
    for c in &checkpoints {
        if c.key_id == ctx.audit.key_id() && !ctx.audit.verifies(c) {
            bad_signatures.push(c.seq);
        } else {
            expected.push((c.seq, c.head.clone()));
        }
    }
    let report = audit::verify_chain(&mut *conn, tenant, &expected).await?;
    let mut chain = ChainReportSchema::from(report);
    if chain.first_broken.is_none()
        && let Some(p) = tree.problems.first()
    {
        chain.first_broken = Some(serde_json::json!({"seq": p.seq, "reason": p.reason}));
    }
    chain.valid &= tree.valid;
    Ok(VerifyReport { chain, bad_signatures, tree })
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
