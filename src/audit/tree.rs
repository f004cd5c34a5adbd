//! The per-tenant Merkle tree of the audit log, as stored (sql/V21): sealing committed events
//! into it, signing its heads, and the proofs an auditor checks alone.
//!
//! Sealing happens in the database (`audit_seal`, a definer owned by the audit role): the
//! order, the leaf hashes and every complete subtree's root are computed there from the
//! events themselves, so no caller can hand the tree a hash of its own. The service only
//! drives it — which tenants, how often — and signs the resulting head with a key the
//! database never sees. Proofs read O(log n) stored nodes: the proof is computed once with a
//! recorder to learn which complete subtrees it needs, those are fetched in one query, and the
//! proof is computed again from them (`merkle` is pure computation and knows no database).

use std::cell::RefCell;
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::merkle::{self, Hash, Nodes};
use super::note;
use crate::audit::AuditSigner;
use crate::domain::TenantId;

/// How many events one `audit_seal` call takes at most per tenant (the rest wait for the
/// next pass, which follows at once).
pub const SEAL_BATCH: i32 = 1_000;

/// The version of the leaf encoding (sql/V21 `audit_leaf`): its first field.
pub const LEAF_VERSION: &str = "rowguard.audit/2";

/// The origin line of a tenant's log: the signer's log name and the tenant.
pub fn origin(log_name: &str, tenant: TenantId) -> String {
    format!("{log_name}/{tenant}")
}

/// The signed note of a tenant's head: its checkpoint (origin, size, root) signed as the log.
pub fn signed_head(signer: &AuditSigner, tenant: TenantId, size: i64, root: &[u8]) -> anyhow::Result<String> {
    let head = note::Checkpoint { origin: origin(signer.log_name(), tenant), size: size as u64, root: to_hash(root)? };
    Ok(signer.sign_note(&head.text()?)?)
}

/// A signed tree head as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Head {
    pub size: i64,
    pub root: Vec<u8>,
    pub signed_at: DateTime<Utc>,
    pub note: String,
}

/// The newest signed head, or the one of exactly `size` leaves.
pub async fn head(conn: &mut PgConnection, tenant: TenantId, size: Option<i64>) -> Result<Option<Head>, sqlx::Error> {
    sqlx::query_as!(
        Head,
        "SELECT size, root, signed_at, note FROM audit_tree_heads
          WHERE tenant_id = $1 AND ($2::bigint IS NULL OR size = $2)
          ORDER BY size DESC LIMIT 1",
        tenant.0,
        size
    )
    .fetch_optional(conn)
    .await
}

/// How many leaves the tenant's tree has now (signed or not yet).
pub async fn size(conn: &mut PgConnection, tenant: TenantId) -> Result<i64, sqlx::Error> {
    let size: Option<i64> = sqlx::query_scalar!("SELECT size FROM audit_tree_state WHERE tenant_id = $1", tenant.0)
        .fetch_optional(conn)
        .await?;
    Ok(size.unwrap_or(0))
}

/// Where an event sits in the tree.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Leaf {
    pub seq: i64,
    pub leaf_index: i64,
    pub leaf_hash: Vec<u8>,
}

/// The leaf of event `id`; None: no such event, or not sealed yet (`sealed` says which).
pub async fn leaf_of(conn: &mut PgConnection, tenant: TenantId, id: uuid::Uuid) -> Result<LeafLookup, sqlx::Error> {
    let row: Option<(i64, Option<i64>, Option<Vec<u8>>)> = sqlx::query!(
        r#"SELECT e.seq, l.leaf_index AS "leaf_index?", n.hash AS "hash?"
           FROM audit_events e
           LEFT JOIN audit_tree_leaves l ON l.tenant_id = e.tenant_id AND l.seq = e.seq
           LEFT JOIN audit_tree_nodes n ON n.tenant_id = e.tenant_id AND n.level = 0 AND n.idx = l.leaf_index
          WHERE e.tenant_id = $1 AND e.id = $2"#,
        tenant.0,
        id
    )
    .fetch_optional(conn)
    .await?
    .map(|r| (r.seq, r.leaf_index, r.hash));
    Ok(match row {
        None => LeafLookup::NoSuchEvent,
        Some((seq, Some(leaf_index), Some(leaf_hash))) => LeafLookup::Sealed(Leaf { seq, leaf_index, leaf_hash }),
        Some(_) => LeafLookup::NotSealedYet,
    })
}

pub enum LeafLookup {
    NoSuchEvent,
    NotSealedYet,
    Sealed(Leaf),
}

/// Records which complete subtrees a computation asks for (answering a placeholder).
#[derive(Default)]
struct Recorder(RefCell<Vec<(u32, u64)>>);

impl Nodes for Recorder {
    fn node(&self, level: u32, index: u64) -> Hash {
        self.0.borrow_mut().push((level, index));
        [0; 32]
    }
}

/// Complete subtrees fetched from the database.
struct Fetched(HashMap<(u32, u64), Hash>);

impl Nodes for Fetched {
    fn node(&self, level: u32, index: u64) -> Hash {
        // Every node asked for was fetched first (`with_nodes`); a missing one would be a tree
        // that lost a node, which the check after the fetch refuses before we get here.
        self.0.get(&(level, index)).copied().unwrap_or([0; 32])
    }
}

/// Run `compute` over the stored nodes of the tenant's tree, fetching only those it needs.
async fn with_nodes<T>(
    conn: &mut PgConnection,
    tenant: TenantId,
    compute: impl Fn(&dyn NodesDyn) -> T,
) -> anyhow::Result<T> {
    let recorder = Recorder::default();
    compute(&recorder);
    let wanted = recorder.0.into_inner();
    let levels: Vec<i16> = wanted.iter().map(|(l, _)| *l as i16).collect();
    let indexes: Vec<i64> = wanted.iter().map(|(_, i)| *i as i64).collect();
    let rows = sqlx::query!(
        r#"SELECT n.level AS "level!", n.idx AS "idx!", n.hash AS "hash!" FROM audit_tree_nodes n
           JOIN unnest($2::smallint[], $3::bigint[]) AS w(level, idx) USING (level, idx)
          WHERE n.tenant_id = $1"#,
        tenant.0,
        &levels,
        &indexes
    )
    .fetch_all(conn)
    .await?;
    let mut nodes = HashMap::with_capacity(rows.len());
    for (level, idx, hash) in rows.into_iter().map(|r| (r.level, r.idx, r.hash)) {
        nodes.insert((level as u32, idx as u64), to_hash(&hash)?);
    }
    if let Some((level, index)) = wanted.iter().find(|k| !nodes.contains_key(k)) {
        anyhow::bail!("the audit tree of tenant {tenant} lacks node ({level}, {index})");
    }
    Ok(compute(&Fetched(nodes)))
}

/// Object-safe view of `Nodes`, so one closure serves the recorder and the fetched nodes.
pub trait NodesDyn {
    fn node_dyn(&self, level: u32, index: u64) -> Hash;
}

impl<N: Nodes> NodesDyn for N {
    fn node_dyn(&self, level: u32, index: u64) -> Hash {
        self.node(level, index)
    }
}

impl Nodes for &dyn NodesDyn {
    fn node(&self, level: u32, index: u64) -> Hash {
        // Through the trait object: `self.node_dyn` would pick this very impl again (a
        // `&dyn NodesDyn` is itself `Nodes`, hence `NodesDyn`) and recurse forever.
        NodesDyn::node_dyn(*self, level, index)
    }
}

/// The root of the tenant's tree at `size` leaves (any size up to the sealed one).
pub async fn root_at(conn: &mut PgConnection, tenant: TenantId, size: i64) -> anyhow::Result<Hash> {
    let size = size as u64;
    with_nodes(conn, tenant, |n| merkle::root(&n, size)).await
}

/// The audit path of leaf `index` in the tree of `size` leaves.
pub async fn inclusion(conn: &mut PgConnection, tenant: TenantId, index: i64, size: i64) -> anyhow::Result<Vec<Hash>> {
    let (index, size) = (index as u64, size as u64);
    Ok(with_nodes(conn, tenant, |n| merkle::inclusion_proof(&n, index, size)).await??)
}

/// The consistency proof from `from` leaves to `to` leaves.
pub async fn consistency(conn: &mut PgConnection, tenant: TenantId, from: i64, to: i64) -> anyhow::Result<Vec<Hash>> {
    let (from, to) = (from as u64, to as u64);
    Ok(with_nodes(conn, tenant, |n| merkle::consistency_proof(&n, from, to)).await??)
}

fn to_hash(bytes: &[u8]) -> anyhow::Result<Hash> {
    bytes.try_into().map_err(|_| anyhow::anyhow!("a stored hash of {} bytes, not 32", bytes.len()))
}

/// What an auditor needs to check the signed heads: the key name and the C2SP verifier key.
pub fn verifier_key(signer: &AuditSigner) -> String {
    signer.verifier_key()
}

/// The leaf bytes of an event, as `audit_leaf` builds them in SQL: the version field, then
/// the canonical fields (`chain::canonical`).
pub fn leaf_bytes(fields: &[String]) -> Vec<u8> {
    let mut all = Vec::with_capacity(fields.len() + 1);
    all.push(LEAF_VERSION.to_string());
    all.extend_from_slice(fields);
    super::chain::canonical(&all)
}

/// Something `verify` found wrong, at the first place it showed.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct TreeProblem {
    /// The event (its seq) where it shows; None for a head or the tree itself.
    pub seq: Option<i64>,
    pub leaf_index: Option<i64>,
    pub reason: String,
}

/// What `verify` found in a tenant's tree.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TreeReport {
    pub valid: bool,
    /// Leaves in the tree.
    pub size: i64,
    /// Leaves whose event was re-hashed and matched.
    pub events_checked: i64,
    /// Leaves whose event a retention purge removed (their hashes stay in the tree).
    pub purged: i64,
    /// Committed events not sealed yet.
    pub unsealed: i64,
    /// Signed heads whose root the recomputed tree matched (and whose signature verified).
    pub heads_checked: i64,
    pub problems: Vec<TreeProblem>,
}

/// One leaf as stored, with its event's canonical fields if the event is still there.
#[derive(sqlx::FromRow)]
struct StoredLeaf {
    leaf_index: i64,
    seq: i64,
    hash: Vec<u8>,
    fields: Option<Vec<String>>,
}

/// Recompute the tenant's tree from its events, inside a transaction that has set the tenant:
/// every leaf hash from its event (a modified, swapped or deleted event is named), the root at
/// every signed head's size (a rewritten tree is caught by the signature the database never
/// could make), and events that appeared among sealed ones (inserted). Streams the leaves:
/// constant memory however long the log. `key`: check the heads' signatures with it too. The
/// first statement of its transaction: it makes the transaction REPEATABLE READ.
pub async fn verify(
    conn: &mut PgConnection,
    tenant: TenantId,
    key: Option<(&str, &ed25519_dalek::VerifyingKey)>,
) -> anyhow::Result<TreeReport> {
    use futures_util::TryStreamExt;

    // One snapshot for every read below: the sealer keeps committing while we read, and the
    // tree's state, its leaves and its heads must be seen as of one moment. Hence first in its
    // transaction (nothing may have read before it).
    sqlx::query!("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut *conn).await?;
    let state: Option<(i64, Vec<u8>)> =
        sqlx::query!("SELECT size, root FROM audit_tree_state WHERE tenant_id = $1", tenant.0)
            .fetch_optional(&mut *conn)
            .await?
            .map(|r| (r.size, r.root));
    let (size, state_root) = state.unwrap_or((0, merkle::empty_root().to_vec()));
    let heads: Vec<(i64, Vec<u8>, String)> =
        sqlx::query!("SELECT size, root, note FROM audit_tree_heads WHERE tenant_id = $1 ORDER BY size", tenant.0)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|r| (r.size, r.root, r.note))
            .collect();
    // Events a retention purge removed: the leaves below the newest purge mark's cut. A mark
    // comes after the leaves it cut: sealed, its own leaf is at or past the cut; not sealed
    // yet (in the second after the purge), the cut is inside the tree as it stands.
    let purged_leaves: Option<i64> = sqlx::query_scalar!(
        r#"SELECT (e.details ->> 'purged_leaves')::bigint AS "purged_leaves?" FROM audit_events e
           LEFT JOIN audit_tree_leaves l ON l.tenant_id = e.tenant_id AND l.seq = e.seq
           LEFT JOIN audit_tree_state s ON s.tenant_id = e.tenant_id
          WHERE e.tenant_id = $1 AND e.action = 'audit.retention_purge' AND e.details ? 'purged_leaves'
            AND (e.details ->> 'purged_leaves')::bigint <= coalesce(l.leaf_index, s.size - 1)
          ORDER BY e.seq DESC LIMIT 1"#,
        tenant.0
    )
    .fetch_optional(&mut *conn)
    .await?
    .flatten();
    let mut report = TreeReport {
        valid: true,
        size,
        events_checked: 0,
        purged: 0,
        unsealed: 0,
        heads_checked: 0,
        problems: Vec::new(),
    };
    let mut frontier = merkle::Frontier::default();
    let mut next_head = heads.iter().peekable();
    {
        let mut leaves = sqlx::query_as::<_, StoredLeaf>(sqlx::AssertSqlSafe(format!(
            "SELECT l.leaf_index, l.seq, n.hash, CASE WHEN e.seq IS NOT NULL THEN {fields} END AS fields
               FROM audit_tree_leaves l
               JOIN audit_tree_nodes n ON n.tenant_id = l.tenant_id AND n.level = 0 AND n.idx = l.leaf_index
               LEFT JOIN audit_events e ON e.tenant_id = l.tenant_id AND e.seq = l.seq
              WHERE l.tenant_id = $1
              ORDER BY l.leaf_index",
            fields = super::chain::FIELDS
        )))
        .bind(tenant)
        .fetch(&mut *conn);
        let mut checks = Vec::new();
        while let Some(leaf) = leaves.try_next().await? {
            let at = Some(leaf.leaf_index);
            if leaf.leaf_index != frontier.size() as i64 {
                checks.push(TreeProblem {
                    seq: Some(leaf.seq),
                    leaf_index: at,
                    reason: format!("leaf {} is missing from the tree", frontier.size()),
                });
                break;
            }
            let stored = to_hash(&leaf.hash)?;
            match &leaf.fields {
                Some(fields) => {
                    if merkle::leaf_hash(&leaf_bytes(fields)) == stored {
                        report.events_checked += 1;
                    } else {
                        checks.push(TreeProblem {
                            seq: Some(leaf.seq),
                            leaf_index: at,
                            reason:
                                "its content does not match its leaf in the tree (modified, or swapped with another)"
                                    .into(),
                        });
                    }
                }
                None if purged_leaves.is_some_and(|cut| leaf.leaf_index < cut) => report.purged += 1,
                None => checks.push(TreeProblem {
                    seq: Some(leaf.seq),
                    leaf_index: at,
                    reason: "sealed into the tree, and no longer in the log (deleted)".into(),
                }),
            }
            frontier.append(stored);
            while let Some((head_size, head_root, _)) = next_head.peek() {
                if *head_size != frontier.size() as i64 {
                    break;
                }
                if frontier.root().as_slice() != head_root.as_slice() {
                    checks.push(TreeProblem {
                        seq: None,
                        leaf_index: None,
                        reason: format!("the tree's root at size {head_size} is not the one its signed head records"),
                    });
                }
                next_head.next();
            }
        }
        drop(leaves);
        for c in checks {
            problem(c, &mut report);
        }
    }
    if frontier.size() as i64 != size || frontier.root().as_slice() != state_root.as_slice() {
        problem(
            TreeProblem {
                seq: None,
                leaf_index: None,
                reason: format!(
                    "the tree records {size} leaves and its root, the leaves make {} and another root",
                    frontier.size()
                ),
            },
            &mut report,
        );
    }
    if size > 0 && heads.last().is_none_or(|(head_size, _, _)| *head_size != size) {
        problem(
            TreeProblem {
                seq: None,
                leaf_index: None,
                reason: format!("no signed head covers the tree's {size} leaves"),
            },
            &mut report,
        );
    }
    for (head_size, head_root, note_text) in &heads {
        let origin_ok = match key {
            Some((name, key)) => match note::open(note_text, name, key) {
                Ok(text) => note::Checkpoint::parse(text)
                    .map(|c| {
                        c.size as i64 == *head_size
                            && c.root.as_slice() == head_root.as_slice()
                            && c.origin == origin(name, tenant)
                    })
                    .unwrap_or(false),
                Err(_) => false,
            },
            None => true,
        };
        if !origin_ok {
            problem(
                TreeProblem {
                    seq: None,
                    leaf_index: None,
                    reason: format!("the signed head of size {head_size} does not verify with the log's key"),
                },
                &mut report,
            );
        } else if *head_size <= frontier.size() as i64 {
            report.heads_checked += 1;
        }
        if *head_size > frontier.size() as i64 {
            problem(
                TreeProblem {
                    seq: None,
                    leaf_index: None,
                    reason: format!(
                        "a signed head of size {head_size} is beyond the tree's {} leaves",
                        frontier.size()
                    ),
                },
                &mut report,
            );
        }
    }
    // The stored interior nodes proofs are built from: each complete subtree's root must be
    // the hash of its two children (the leaves were checked against the events above, so a
    // changed node shows at the lowest level it was changed), and every one must be there.
    let bad_nodes: Vec<(i16, i64)> = sqlx::query!(
        "SELECT n.level, n.idx FROM audit_tree_nodes n
           LEFT JOIN audit_tree_nodes a ON a.tenant_id = n.tenant_id AND a.level = n.level - 1 AND a.idx = 2 * n.idx
           LEFT JOIN audit_tree_nodes b ON b.tenant_id = n.tenant_id AND b.level = n.level - 1 AND b.idx = 2 * n.idx + 1
          WHERE n.tenant_id = $1 AND n.level >= 1
            AND (a.hash IS NULL OR b.hash IS NULL OR n.hash <> sha256('\\x01'::bytea || a.hash || b.hash))
          ORDER BY n.level, n.idx LIMIT 20",
        tenant.0
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|r| (r.level, r.idx))
    .collect();
    for (level, idx) in bad_nodes {
        problem(
            TreeProblem {
                seq: None,
                leaf_index: None,
                reason: format!("the stored subtree root ({level}, {idx}) is not the hash of its two children"),
            },
            &mut report,
        );
    }
    let counts: Vec<(i16, i64)> = sqlx::query!(
        r#"SELECT level, count(*) AS "count!" FROM audit_tree_nodes WHERE tenant_id = $1 AND level >= 1 GROUP BY level ORDER BY level"#,
        tenant.0
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|r| (r.level, r.count))
    .collect();
    let mut level = 1u32;
    while level < 64 && (size >> level) > 0 {
        let stored = counts.iter().find(|(l, _)| i64::from(*l) == i64::from(level)).map_or(0, |(_, n)| *n);
        if stored != size >> level {
            problem(
                TreeProblem {
                    seq: None,
                    leaf_index: None,
                    reason: format!(
                        "level {level} of the tree holds {stored} subtree roots where {} leaves make {}",
                        size,
                        size >> level
                    ),
                },
                &mut report,
            );
        }
        level += 1;
    }
    // Events among the sealed ones that have no leaf: inserted after sealing.
    let inserted: Vec<i64> = sqlx::query_scalar!(
        "SELECT e.seq FROM audit_events e
           JOIN audit_tree_state s ON s.tenant_id = e.tenant_id
          WHERE e.tenant_id = $1 AND (e.xid, e.seq) <= (s.last_xid, s.last_seq)
            AND NOT EXISTS (SELECT FROM audit_tree_leaves l WHERE l.tenant_id = e.tenant_id AND l.seq = e.seq)
          ORDER BY e.seq LIMIT 20",
        tenant.0
    )
    .fetch_all(&mut *conn)
    .await?;
    for seq in inserted {
        problem(
            TreeProblem {
                seq: Some(seq),
                leaf_index: None,
                reason: "in the log among sealed events but not in the tree (inserted)".into(),
            },
            &mut report,
        );
    }
    report.unsealed = sqlx::query_scalar!(
        r#"SELECT count(*) AS "unsealed!" FROM audit_events e
           LEFT JOIN audit_tree_state s ON s.tenant_id = e.tenant_id
          WHERE e.tenant_id = $1 AND (s.tenant_id IS NULL OR (e.xid, e.seq) > (s.last_xid, s.last_seq))"#,
        tenant.0
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(report)
}

/// Note a problem (the first twenty are kept; any makes the tree invalid).
fn problem(p: TreeProblem, report: &mut TreeReport) {
    if report.problems.len() < 20 {
        report.problems.push(p);
    }
    report.valid = false;
}
