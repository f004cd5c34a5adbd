//! The audit log as a Merkle tree (RFC 9162 §2.1), for auditors who check it alone:
//! `GET /v1/audit-log/head` (the newest signed tree head, a C2SP checkpoint note, and the key
//! to check it with), `GET /v1/audit-events/{id}/proof` (an event's inclusion proof) and
//! `GET /v1/audit-log/consistency` (the proof that a later tree extends an earlier one).
//! Readable by the owner, admin and auditor roles, like the events; operators read any
//! tenant's the same way under `/platform/v1/tenants/{slug}/…` (`platform::audit_log`).
//!
//! Hashes are hex. A proof is checked against a signed head's root, which the auditor checks
//! with the verifier key; docs/audit.md shows how, in a few lines of Python.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::audit::tree::{self, LeafLookup};
use sqlx::PgConnection;

use crate::db::TenantScope;
use crate::domain::TenantId;
use crate::domain::permissions::Permission;
use crate::http::ApiContext;
use crate::http::context::Principal;
use crate::http::error::ApiError;
use crate::http::error_codes::ErrorCode;
use crate::http::extract::{Json, Path, Query};

#[derive(Serialize, Deserialize, ToSchema)]
pub struct TreeHead {
    /// Leaves (sealed events) the head covers; 0 before anything was sealed.
    pub tree_size: i64,
    /// Root hash over the first `tree_size` leaves (hex).
    pub root_hash: String,
    pub signed_at: Option<DateTime<Utc>>,
    /// The signed head: a C2SP tlog-checkpoint in the signed-note format (origin line naming
    /// this tenant's log, size, base64 root, a blank line, signature lines). None before the
    /// first seal.
    pub note: Option<String>,
    /// The log's origin line.
    pub origin: String,
    /// The C2SP verifier key (`<name>+<key id>+<base64 key>`) the note is signed with.
    pub verifier_key: String,
}

/// The newest signed head of the tenant's audit tree.
#[utoipa::path(get, path = "/v1/audit-log/head", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = TreeHead)))]
pub async fn head(
    State(ctx): State<ApiContext>,
    scope: TenantScope,
    principal: Principal,
) -> Result<Json<TreeHead>, ApiError> {
    principal.require(Permission::ReadAuditLog)?;
    let mut tx = scope.begin().await?;
    let head = read_head(&ctx, tx.conn(), scope.tenant_id()).await?;
    tx.commit().await?;
    Ok(Json(head))
}

/// The newest signed head of `tenant`'s tree, in a transaction that has set the tenant.
pub(crate) async fn read_head(
    ctx: &ApiContext,
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<TreeHead, ApiError> {
    let head = tree::head(conn, tenant, None).await?;
    let origin = tree::origin(ctx.audit.log_name(), tenant);
    let verifier_key = ctx.audit.verifier_key();
    Ok(match head {
        Some(h) => TreeHead {
            tree_size: h.size,
            root_hash: hex::encode(&h.root),
            signed_at: Some(h.signed_at),
            note: Some(h.note),
            origin,
            verifier_key,
        },
        None => TreeHead {
            tree_size: 0,
            root_hash: hex::encode(crate::audit::merkle::empty_root()),
            signed_at: None,
            note: None,
            origin,
            verifier_key,
        },
    })
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ProofParams {
    /// The tree size to prove against (a signed head's); default: the newest signed head.
    #[param(minimum = 1)]
    pub(crate) tree_size: Option<i64>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct InclusionProof {
    pub event_id: Uuid,
    pub seq: i64,
    pub leaf_index: i64,
    pub tree_size: i64,
    /// SHA-256(0x00 ‖ leaf bytes), hex.
    pub leaf_hash: String,
    /// The audit path, leaf side first (RFC 9162 §2.1.3.1), hex.
    pub audit_path: Vec<String>,
    /// The root the path leads to, hex.
    pub root_hash: String,
    /// The signed head of this size, when one was signed for it.
    pub note: Option<String>,
}

/// The inclusion proof of one event in the tenant's tree.
#[utoipa::path(get, path = "/v1/audit-events/{id}/proof", tag = "audit", params(("id" = Uuid, Path), ProofParams),
    security(("bearer" = [])), responses((status = 200, body = InclusionProof),
        (status = 400, description = "`invalid_query`: tree_size outside the tree, or the event not in it", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such event in this tenant", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`not_sealed`: the event is committed, not yet in the tree", body = crate::http::error::Problem, content_type = "application/problem+json")))]
pub async fn proof(
    scope: TenantScope,
    principal: Principal,
    Path(id): Path<Uuid>,
    Query(params): Query<ProofParams>,
) -> Result<Json<InclusionProof>, ApiError> {
    principal.require(Permission::ReadAuditLog)?;
    let mut tx = scope.begin().await?;
    let proof = prove_inclusion(tx.conn(), scope.tenant_id(), id, &params).await?;
    tx.commit().await?;
    Ok(Json(proof))
}

/// Event `id`'s inclusion proof in `tenant`'s tree, in a transaction that has set the tenant.
pub(crate) async fn prove_inclusion(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    params: &ProofParams,
) -> Result<InclusionProof, ApiError> {
    let leaf = match tree::leaf_of(conn, tenant, id).await? {
        LeafLookup::NoSuchEvent => return Err(ApiError::not_found("audit event")),
        LeafLookup::NotSealedYet => {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                ErrorCode::NotSealed,
                "the event is not sealed into the tree yet; retry in a second",
            ));
        }
        LeafLookup::Sealed(leaf) => leaf,
    };
    let (tree_size, note) = match params.tree_size {
        Some(size) => (size, tree::head(conn, tenant, Some(size)).await?.map(|h| h.note)),
        None => match tree::head(conn, tenant, None).await? {
            Some(h) => (h.size, Some(h.note)),
            None => (tree::size(conn, tenant).await?, None),
        },
    };
    let sealed = tree::size(conn, tenant).await?;
    if tree_size < 1 || tree_size > sealed {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidQuery,
            format!("tree_size must be between 1 and the tree's size, {sealed}"),
        ));
    }
    if leaf.leaf_index >= tree_size {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidQuery,
            format!("the event is leaf {} and not in the tree of {tree_size} leaves", leaf.leaf_index),
        ));
    }
    let path = tree::inclusion(conn, tenant, leaf.leaf_index, tree_size).await.map_err(ApiError::internal)?;
    let root = tree::root_at(conn, tenant, tree_size).await.map_err(ApiError::internal)?;
    Ok(InclusionProof {
        event_id: id,
        seq: leaf.seq,
        leaf_index: leaf.leaf_index,
        tree_size,
        leaf_hash: hex::encode(&leaf.leaf_hash),
        audit_path: path.iter().map(hex::encode).collect(),
        root_hash: hex::encode(root),
        note,
    })
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyParams {
    /// The older tree size (a head the auditor holds).
    #[param(minimum = 1)]
    pub(crate) from: i64,
    /// The newer tree size; default: the newest signed head.
    #[param(minimum = 1)]
    pub(crate) to: Option<i64>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ConsistencyProof {
    pub from: i64,
    pub to: i64,
    pub from_root: String,
    pub to_root: String,
    /// RFC 9162 §2.1.4.1's proof, hex.
    pub proof: Vec<String>,
    /// The signed head of size `to`, when one was signed for it.
    pub note: Option<String>,
}

/// The consistency proof between two sizes of the tenant's tree.
#[utoipa::path(get, path = "/v1/audit-log/consistency", tag = "audit", params(ConsistencyParams),
    security(("bearer" = [])), responses((status = 200, body = ConsistencyProof),
        (status = 400, description = "`invalid_query`: not 1 <= from <= to <= the tree's size", body = crate::http::error::Problem, content_type = "application/problem+json")))]
pub async fn consistency(
    scope: TenantScope,
    principal: Principal,
    Query(params): Query<ConsistencyParams>,
) -> Result<Json<ConsistencyProof>, ApiError> {
    principal.require(Permission::ReadAuditLog)?;
    let mut tx = scope.begin().await?;
    let proof = prove_consistency(tx.conn(), scope.tenant_id(), &params).await?;
    tx.commit().await?;
    Ok(Json(proof))
}

/// The consistency proof between two sizes of `tenant`'s tree, in a transaction that has set
/// the tenant.
pub(crate) async fn prove_consistency(
    conn: &mut PgConnection,
    tenant: TenantId,
    params: &ConsistencyParams,
) -> Result<ConsistencyProof, ApiError> {
    let sealed = tree::size(conn, tenant).await?;
    let (to, note) = match params.to {
        Some(to) => (to, tree::head(conn, tenant, Some(to)).await?.map(|h| h.note)),
        None => match tree::head(conn, tenant, None).await? {
            Some(h) => (h.size, Some(h.note)),
            None => (sealed, None),
        },
    };
    if params.from < 1 || params.from > to || to > sealed {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidQuery,
            format!("need 1 <= from <= to <= {sealed} (the tree's size); got from={}, to={to}", params.from),
        ));
    }
    let proof = tree::consistency(conn, tenant, params.from, to).await.map_err(ApiError::internal)?;
    let from_root = tree::root_at(conn, tenant, params.from).await.map_err(ApiError::internal)?;
    let to_root = tree::root_at(conn, tenant, to).await.map_err(ApiError::internal)?;
    Ok(ConsistencyProof {
        from: params.from,
        to,
        from_root: hex::encode(from_root),
        to_root: hex::encode(to_root),
        proof: proof.iter().map(hex::encode).collect(),
        note,
    })
}
