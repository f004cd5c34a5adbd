//! Where each tenant's rows live on Citus, and giving a big tenant a shard of its own
//! (`rowguard tenants isolate`). Every tenant table is distributed by `tenant_id` in one
//! colocation group (`migrate::citus`), so one tenant's rows of every table sit in the shards of
//! one hash range, on one worker: `users` stands for the group. Isolating splits that range so
//! the tenant's hash value is a range of its own (`isolate_tenant_to_new_shard … CASCADE`, every
//! colocated table at once); moving puts that shard group on another worker
//! (`citus_move_shard_placement`). Both copy with Citus's `block_writes` transfer mode: the
//! tenant's writes (and only the moving shard group's tenants') wait while the rows are copied,
//! reads go on. Not `auto` (logical replication): PostgreSQL's apply worker refuses to replicate
//! into a table with row-level security enabled ("cannot replicate into relation with row-level
//! security enabled"), and every tenant table forces it, so a split under write load never
//! caught up (seen on the dev cluster: the changes made during the copy could not be applied).
//! Both need the admin connection (the tables' owner or a superuser).

use std::collections::BTreeMap;

use sqlx::PgConnection;

use crate::backend::Backend;
use crate::domain::TenantId;

/// The table that stands for the colocation group.
const ANCHOR: &str = "users";

/// Where one tenant lives.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Placement {
    pub shard: i64,
    /// `host:port` of the worker holding the shard group.
    pub node: String,
    /// The shard holds this tenant's hash value only.
    pub isolated: bool,
}

/// Every tenant's placement, read from Citus's metadata; None when the database is not Citus.
pub async fn placements(conn: &mut PgConnection) -> Result<Option<BTreeMap<TenantId, Placement>>, sqlx::Error> {
    if Backend::detect(conn).await? != Backend::Citus {
        return Ok(None);
    }
    let rows: Vec<(TenantId, i64, String, bool)> = sqlx::query_as(
        "SELECT t.id, s.shardid, n.nodename || ':' || n.nodeport, s.shardminvalue = s.shardmaxvalue
           FROM tenants t
           JOIN pg_dist_shard s ON s.shardid = get_shard_id_for_distribution_column($1::regclass, t.id)
           JOIN pg_dist_placement p ON p.shardid = s.shardid
           JOIN pg_dist_node n ON n.groupid = p.groupid",
    )
    .bind(ANCHOR)
    .fetch_all(conn)
    .await?;
    Ok(Some(rows.into_iter().map(|(t, shard, node, isolated)| (t, Placement { shard, node, isolated })).collect()))
}

async fn placement_of(conn: &mut PgConnection, tenant: TenantId) -> Result<Placement, sqlx::Error> {
    let (shard, node, isolated): (i64, String, bool) = sqlx::query_as(
        "SELECT s.shardid, n.nodename || ':' || n.nodeport, s.shardminvalue = s.shardmaxvalue
           FROM pg_dist_shard s
           JOIN pg_dist_placement p ON p.shardid = s.shardid
           JOIN pg_dist_node n ON n.groupid = p.groupid
          WHERE s.shardid = get_shard_id_for_distribution_column($1::regclass, $2)",
    )
    .bind(ANCHOR)
    .bind(tenant)
    .fetch_one(conn)
    .await?;
    Ok(Placement { shard, node, isolated })
}

/// What isolating (and moving) did.
#[derive(Debug, Clone)]
pub struct Isolated {
    pub before: Placement,
    pub after: Placement,
}

/// Give `tenant` a shard group of its own (unless it has one), then, if `to` names another
/// worker (`host:port`), move that group there. `progress` hears each step. `watch` is a second
/// admin connection that reports the copy's progress while a move runs.
pub async fn isolate(
    conn: &mut PgConnection,
    watch: &mut PgConnection,
    tenant: TenantId,
    to: Option<(&str, u16)>,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<Isolated> {
    anyhow::ensure!(
        Backend::detect(conn).await? == Backend::Citus,
        "tenants isolate needs Citus: on one PostgreSQL every tenant already shares the one node"
    );
    let before = placement_of(conn, tenant).await?;
    if before.isolated {
        progress(&format!("already alone in shard {} on {}", before.shard, before.node));
    } else {
        progress(&format!(
            "splitting shard {} on {} (every tenant table; its writes wait during the copy)…",
            before.shard, before.node
        ));
        let started = std::time::Instant::now();
        let shard: i64 = sqlx::query_scalar(
            "SELECT isolate_tenant_to_new_shard($1::regclass, $2, 'CASCADE', shard_transfer_mode => 'block_writes')",
        )
        .bind(ANCHOR)
        .bind(tenant)
        .fetch_one(&mut *conn)
        .await?;
        progress(&format!("isolated into shard {shard} in {:.1} s", started.elapsed().as_secs_f64()));
    }
    let mut after = placement_of(conn, tenant).await?;
    if let Some((host, port)) = to {
        let target = format!("{host}:{port}");
        let known: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT FROM pg_dist_node WHERE nodename = $1 AND nodeport = $2 AND isactive AND shouldhaveshards)",
        )
        .bind(host)
        .bind(i32::from(port))
        .fetch_one(&mut *conn)
        .await?;
        anyhow::ensure!(known, "{target} is not an active worker of this cluster (see pg_dist_node)");
        if after.node == target {
            progress(&format!("shard {} is already on {target}", after.shard));
        } else {
            // `node` is `nodename:nodeport` as read from pg_dist_node above; a form that does not
            // split back is refused rather than guessed at.
            let (from_host, from_port) = after
                .node
                .rsplit_once(':')
                .and_then(|(host, port)| Some((host, port.parse::<i32>().ok()?)))
                .ok_or_else(|| anyhow::anyhow!("cannot read the worker {:?} as HOST:PORT", after.node))?;
            progress(&format!(
                "moving shard {} from {} to {target} (its writes wait during the copy)…",
                after.shard, after.node
            ));
            let started = std::time::Instant::now();
            {
                let moving = sqlx::query(
                    "SELECT citus_move_shard_placement($1, $2, $3, $4, $5, shard_transfer_mode => 'block_writes')",
                )
                .bind(after.shard)
                .bind(from_host)
                .bind(from_port)
                .bind(host)
                .bind(i32::from(port))
                .execute(&mut *conn);
                tokio::pin!(moving);
                let mut ticks = tokio::time::interval(std::time::Duration::from_secs(1));
                loop {
                    tokio::select! {
                        done = &mut moving => { done?; break; }
                        _ = ticks.tick() => {
                            let copied: Option<(i64, i64)> = sqlx::query_as(
                                "SELECT coalesce(sum(target_shard_size), 0)::bigint, coalesce(sum(source_shard_size), 0)::bigint
                                   FROM get_rebalance_progress()",
                            )
                            .fetch_optional(&mut *watch)
                            .await
                            .ok()
                            .flatten();
                            if let Some((copied, total)) = copied.filter(|(_, total)| *total > 0) {
                                progress(&format!("  copied {} of {} KiB", copied / 1024, total / 1024));
                            }
                        }
                    }
                }
            }
            progress(&format!("moved in {:.1} s", started.elapsed().as_secs_f64()));
            after = placement_of(conn, tenant).await?;
        }
    }
    // An operator's change to where the tenant's rows live goes into the tenant's audit log
    // (not a change of its data: no row changed), once something moved.
    if (before.shard, &before.node) != (after.shard, &after.node) {
        let details = serde_json::json!({
            "from": {"shard": before.shard, "node": before.node},
            "to": {"shard": after.shard, "node": after.node, "isolated": after.isolated},
        });
        let mut tx = crate::db::TenantTx::begin_on(conn, tenant).await?;
        sqlx::query("SELECT audit_append_for($1, 'tenant.isolate', 'tenant', $2, 'success', $3, 'operator')")
            .bind(tenant.0)
            .bind(tenant.to_string())
            .bind(details)
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
    }
    Ok(Isolated { before, after })
}
