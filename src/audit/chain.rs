//! Verifying a tenant's hash chain: each event's hash is SHA-256 over the previous hash and
//! the event's canonical encoding (the same encoding `audit_canonical` builds in SQL). The
//! first broken link is reported: a modified, deleted, inserted or reordered event. The chain
//! holds the events written before the Merkle tree (sql/V21) and grows no more; `tree`
//! verifies everything since, and those events too.

use futures_util::TryStreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{AssertSqlSafe, PgConnection};

use crate::domain::TenantId;

pub const GENESIS: [u8; 32] = [0; 32];

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BrokenLink {
    pub seq: i64,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChainReport {
    pub valid: bool,
    pub events: i64,
    pub head_seq: i64,
    /// Hex SHA-256 of the last event (the genesis hash when there are none).
    pub head_hash: String,
    pub first_broken: Option<BrokenLink>,
    /// Checkpoints found and checked against the chain (signatures are checked by the caller).
    pub checkpoints_checked: usize,
}

/// An event's fields in their canonical text form, as `audit_canonical` (sql/V10) renders
/// them, for a query over `audit_events e`. The chain's links and the tree's leaves both
/// cover these.
pub(crate) const FIELDS: &str = "ARRAY[e.tenant_id::text, e.seq::text, e.id::text,
      (extract(epoch FROM e.occurred_at) * 1000000)::bigint::text,
      e.actor_type, coalesce(e.actor_id::text, ''), coalesce(e.actor_role, ''),
      coalesce(host(e.client_ip), ''), coalesce(e.user_agent, ''), coalesce(e.request_id, ''),
      e.action, coalesce(e.resource_type, ''), coalesce(e.resource_id, ''), e.outcome,
      e.details::text]";

/// One stored event, with every field already in its canonical text form.
#[derive(sqlx::FromRow)]
struct Row {
    seq: i64,
    fields: Vec<String>,
    prev_hash: Vec<u8>,
    hash: Vec<u8>,
}

/// The canonical encoding: each field as `len:value` (len in bytes), joined by `|`.
pub fn canonical(fields: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b'|');
        }
        out.extend_from_slice(f.len().to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(f.as_bytes());
    }
    out
}

pub fn link_hash(prev: &[u8], fields: &[String]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(canonical(fields));
    h.finalize().to_vec()
}

/// Walk `tenant`'s events in order (streamed: constant memory), inside a transaction that
/// has set the tenant. `expected` are (seq, head) pairs from checkpoints to confirm on the way.
pub async fn verify_chain(
    conn: &mut PgConnection,
    tenant: TenantId,
    expected: &[(i64, Vec<u8>)],
) -> Result<ChainReport, sqlx::Error> {
    // After a retention purge the log starts past event 1: the latest `audit.retention_purge`
    // event (itself in the chain) names the last purged event and its hash, the new anchor.
    // Since the tree (sql/V21) a purge may cut only tree events; the chain's anchor is then the
    // newest mark that cut into the chain (`chain_through_seq`; `purged_through_seq` before).
    let anchor: Option<(Option<i64>, Option<String>)> = sqlx::query!(
        r#"SELECT coalesce(details ->> 'chain_through_seq', details ->> 'purged_through_seq')::bigint AS "seq?",
                details ->> 'anchor_hash' AS "hash?"
           FROM audit_events
          WHERE tenant_id = $1 AND action = 'audit.retention_purge' AND details ? 'anchor_hash'
          ORDER BY seq DESC LIMIT 1"#,
        tenant.0
    )
    .fetch_optional(&mut *conn)
    .await?
    .map(|r| (r.seq, r.hash));
    let (mut running, mut last_seq) = match anchor {
        Some((Some(seq), Some(hash))) => (hex::decode(&hash).unwrap_or_default(), seq),
        _ => (GENESIS.to_vec(), 0i64),
    };
    // The chain is the events written before the Merkle tree (sql/V21): those with a link.
    let mut rows = sqlx::query_as::<_, Row>(AssertSqlSafe(format!(
        "SELECT seq, {FIELDS} AS fields, prev_hash, hash
           FROM audit_events e WHERE tenant_id = $1 AND prev_hash IS NOT NULL ORDER BY seq"
    )))
    .bind(tenant)
    .fetch(&mut *conn);
    let mut events = 0i64;
    let mut broken = None;
    let mut confirmed = 0usize;
    let mut failed_checkpoint = None;
    while let Some(row) = rows.try_next().await? {
        events += 1;
        if broken.is_none() {
            if row.seq != last_seq + 1 {
                broken = Some(BrokenLink {
                    seq: row.seq,
                    reason: format!(
                        "expected event {} next, found {} (events deleted or inserted)",
                        last_seq + 1,
                        row.seq
                    ),
                });
            } else if row.prev_hash != running {
                broken = Some(BrokenLink {
                    seq: row.seq,
                    reason: "does not link to the event before it (deleted, inserted or reordered events)".into(),
                });
            } else if link_hash(&row.prev_hash, &row.fields) != row.hash {
                broken =
                    Some(BrokenLink { seq: row.seq, reason: "its content does not match its hash (modified)".into() });
            }
        }
        for (_, head) in expected.iter().filter(|(seq, _)| *seq == row.seq) {
            if *head == row.hash && broken.is_none() {
                confirmed += 1;
            } else if failed_checkpoint.is_none() {
                failed_checkpoint = Some(row.seq);
            }
        }
        running = row.hash;
        last_seq = row.seq;
    }
    drop(rows);
    if broken.is_none() {
        let head: Option<(i64, Vec<u8>)> =
            sqlx::query!("SELECT seq, head FROM audit_chain_heads WHERE tenant_id = $1", tenant.0)
                .fetch_optional(&mut *conn)
                .await?
                .map(|r| (r.seq, r.head));
        if let Some((seq, hash)) = head
            && (seq != last_seq || (seq > 0 && hash != running))
        {
            broken = Some(BrokenLink {
                seq: last_seq + 1,
                reason: format!("the chain head records {seq} events but the log ends at {last_seq} (events deleted)"),
            });
        }
    }
    if broken.is_none()
        && let Some(seq) =
            failed_checkpoint.or_else(|| expected.iter().find(|(seq, _)| *seq > last_seq).map(|(seq, _)| *seq))
    {
        broken = Some(BrokenLink { seq, reason: "a signed checkpoint does not match the log at this event".into() });
    }
    Ok(ChainReport {
        valid: broken.is_none(),
        events,
        head_seq: last_seq,
        head_hash: hex::encode(running),
        first_broken: broken,
        checkpoints_checked: confirmed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canonical_form_is_length_prefixed() {
        let fields = vec!["ab".to_string(), String::new(), "a|b".to_string()];
        assert_eq!(canonical(&fields), b"2:ab|0:|3:a|b".to_vec());
        // Moving a separator between fields changes the encoding.
        let shifted = vec!["ab|".to_string(), String::new(), "a".to_string()];
        assert_ne!(canonical(&fields), canonical(&shifted));
    }
}
