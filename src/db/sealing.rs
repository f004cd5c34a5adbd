//! What the audit log's sealer asks across tenants (sql/V21): which tenants have committed
//! events waiting, and how far behind it is. Ids and counts only, through the audit role's
//! definers; and sealing many tenants in one transaction (`seal_many`), each with the tenant
//! setting switched to it inside the audit role's definer.

use crate::domain::TenantId;

use super::Database;

/// How far behind sealing is, across tenants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backlog {
    /// Appending transactions whose events are not sealed yet.
    pub transactions: i64,
    /// Age of the oldest of them (0 when there are none).
    pub oldest_seconds: f64,
}

/// One tenant's tree after a sealing pass.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SealedTree {
    pub tenant_id: TenantId,
    /// None: another sealer held this tenant.
    pub size: Option<i64>,
    pub root: Option<Vec<u8>>,
    /// Events sealed by this pass (-1: another sealer held the tenant).
    pub sealed: i32,
}

impl Database {
    /// Seal up to `max` committed events of each of `tenants`, sign each grown tree's head with
    /// `sign(tenant, size, root)` and keep the heads, in one transaction (two round trips
    /// besides its begin and commit). Returns every tenant's tree as the pass left it.
    pub async fn seal_many(
        &self,
        tenants: &[TenantId],
        max: i32,
        sign: impl Fn(TenantId, i64, &[u8]) -> anyhow::Result<String>,
    ) -> anyhow::Result<Vec<SealedTree>> {
        if self.backend == crate::backend::Backend::Citus {
            return self.seal_each_where_it_lives(tenants, max, sign).await;
        }
        let ids: Vec<uuid::Uuid> = tenants.iter().map(|t| t.0).collect();
        let mut tx = self.background.begin().await?;
        let trees: Vec<SealedTree> = sqlx::query_as!(
            SealedTree,
            r#"SELECT tenant_id AS "tenant_id!: TenantId", size, root, sealed AS "sealed!"
                     FROM audit_seal_many($1, $2)"#,
            &ids,
            max
        )
        .fetch_all(&mut *tx)
        .await?;
        let (mut grown, mut sizes, mut notes) = (Vec::new(), Vec::new(), Vec::new());
        for tree in trees.iter().filter(|t| t.sealed > 0) {
            let (Some(size), Some(root)) = (tree.size, tree.root.as_deref()) else { continue };
            grown.push(tree.tenant_id.0);
            sizes.push(size);
            notes.push(sign(tree.tenant_id, size, root)?);
        }
        if !grown.is_empty() {
            let kept: i32 =
                sqlx::query_scalar!(r#"SELECT audit_record_heads($1, $2, $3) AS "kept!""#, &grown, &sizes, &notes)
                    .fetch_one(&mut *tx)
                    .await?;
            anyhow::ensure!(kept as usize == grown.len(), "the database kept {kept} of {} signed heads", grown.len());
        }
        tx.commit().await?;
        Ok(trees)
    }

    /// `seal_many` on Citus: one tenant at a time, each call a statement of its own outside any
    /// transaction block, so that Citus delegates it to the worker holding the tenant's shards
    /// (`migrate::citus::DELEGATED_FUNCTIONS`; why there, `migrate::citus::prepare_audit_log`).
    /// Sealing and keeping the head are two transactions of that worker; a tree left without
    /// its head (a sealer stopped between them) stays queued, and the next pass signs it
    /// (`signed_size` below the tree's size). One tenant's failure is counted (-2) and does
    /// not stop the others, as in `audit_seal_many`.
    async fn seal_each_where_it_lives(
        &self,
        tenants: &[TenantId],
        max: i32,
        sign: impl Fn(TenantId, i64, &[u8]) -> anyhow::Result<String>,
    ) -> anyhow::Result<Vec<SealedTree>> {
        let mut trees = Vec::with_capacity(tenants.len());
        for &tenant in tenants {
            // The seal and its signed head in one transaction, as on PostgreSQL: apart, an audit
            // verify between the two would find leaves no signed head covers. Both calls are
            // force-delegated (migrate::citus), so inside the transaction Citus still runs them
            // on the worker holding the tenant's shards, over one connection.
            let mut tx = self.background.begin().await?;
            // Unchecked: checked macros would describe the call on plain PostgreSQL, where the
            // function exists too (sql/V26) but is not used; the row type is named here.
            let sealed: Result<(i64, Vec<u8>, i32, i64), sqlx::Error> =
                sqlx::query_as("SELECT size, root, sealed, signed_size FROM audit_seal_tenant($1, $2)")
                    .bind(tenant.0)
                    .bind(max)
                    .fetch_one(&mut *tx)
                    .await;
            let (size, root, sealed, signed_size) = match sealed {
                Ok(row) => row,
                Err(error) => {
                    tracing::warn!(%tenant, %error, "audit: sealing this tenant failed");
                    trees.push(SealedTree { tenant_id: tenant, size: None, root: None, sealed: -2 });
                    continue;
                }
            };
            if sealed >= 0 && size > signed_size {
                let note = sign(tenant, size, &root)?;
                let kept: bool = sqlx::query_scalar("SELECT audit_record_head_tenant($1, $2, $3)")
                    .bind(tenant.0)
                    .bind(size)
                    .bind(note)
                    .fetch_one(&mut *tx)
                    .await?;
                anyhow::ensure!(kept, "the database did not keep the signed head of tenant {tenant} at {size}");
            }
            tx.commit().await?;
            trees.push(SealedTree { tenant_id: tenant, size: Some(size), root: Some(root), sealed });
        }
        Ok(trees)
    }

    /// Up to `limit` tenants with committed events not yet in their tree, longest waiting first.
    pub async fn audit_unsealed_tenants(&self, limit: i32) -> Result<Vec<TenantId>, sqlx::Error> {
        sqlx::query_scalar!(r#"SELECT t AS "t!: TenantId" FROM audit_unsealed_tenants($1) AS t"#, limit)
            .fetch_all(&self.background)
            .await
    }

    pub async fn audit_unsealed_backlog(&self) -> Result<Backlog, sqlx::Error> {
        sqlx::query_as!(
            Backlog,
            r#"SELECT transactions AS "transactions!", oldest_seconds AS "oldest_seconds!" FROM audit_unsealed_backlog()"#
        )
        .fetch_one(&self.background)
        .await
    }
}
