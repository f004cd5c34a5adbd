//! The tenant door: the service's pool (private to this module) and the tenant transaction
//! handle, the only way to tenant data; the registry reads tenant resolution needs, and the
//! change feeds. The embedded cluster (`cluster`), bootstrap and migrations (`migrate`), the
//! catalog verifier (`catalog`) and the platform side (`platform`) live beside it.

pub mod listen;
pub mod outbox;
mod pool;
pub mod registry;
pub(crate) mod revocation;
mod scope;
pub mod sealing;
mod tenant_tx;
pub mod user_changes;
pub mod users;
pub mod webhooks;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::backend::Backend;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

pub use scope::{Acting, TenantScope};
pub use tenant_tx::{Actor, HotStatement, Literal, TenantTx};

pub use crate::roles::*;

/// The service's connection pool, as the app role. Cloning is cheap.
#[derive(Clone)]
pub struct Database {
    /// The one pool every app-role connection of a request comes from (`pool`).
    pool: Arc<pool::Pool>,
    /// Three connections apart from the pool, for the service's own background work: the change
    /// feeds' LISTEN (`listen`, held for good), the audit sealer (`sealing`, whose passes hold a
    /// connection for up to seconds) and the outbox workers' claims (`outbox`). None takes one
    /// of the requests' connections.
    background: sqlx::PgPool,
    /// Requests that hold or wait for one of the pool's connections (`/metrics`: waiting is
    /// this less those in use).
    demand: Arc<AtomicU32>,
    /// The database runs Citus: `TenantTx::read_once` must not put its query in the same
    /// statement text as the `SET LOCAL`s (Citus replays that whole text on the workers).
    backend: Backend,
}

/// Counts one request in `Database::demand` while it lives.
pub(crate) struct DemandGuard(Arc<AtomicU32>);

impl DemandGuard {
    fn new(demand: &Arc<AtomicU32>) -> DemandGuard {
        demand.fetch_add(1, Ordering::Relaxed);
        DemandGuard(Arc::clone(demand))
    }
}

impl Drop for DemandGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Database {
    /// Connect as the app role. Every new connection prepares the `hot` statements
    /// (session-level PREPARE: a plan cache, not tenant state), so `TenantTx::read_once` can
    /// EXECUTE them inside its one round trip. One connection is opened now, so a wrong URL or
    /// password fails here rather than on the first request.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        hot: &'static [HotStatement],
    ) -> Result<Database, sqlx::Error> {
        let options: PgConnectOptions = url.parse()?;
        // UTC, so timestamps the database renders (the generic API's JSON rows) read the same everywhere.
        let options = options.application_name("rowguard").options([("TimeZone", "UTC")]);
        let prepare: String = hot.iter().map(HotStatement::prepare_sql).collect::<Vec<_>>().join("; ");
        let acquire_timeout = Duration::from_secs(3);
        let pool = Arc::new(pool::Pool::new(options.clone(), max_connections, prepare.into(), acquire_timeout));
        let background = PgPoolOptions::new()
            .max_connections(3)
            .min_connections(0)
            .acquire_timeout(acquire_timeout)
            .connect_lazy_with(options);
        let mut lease = pool.acquire().await?;
        let backend = Backend::detect(lease.conn()?).await?;
        lease.done();
        Ok(Database { pool, background, demand: Arc::default(), backend })
    }

    /// The pool's figures for `/metrics`.
    pub fn pool_figures(&self) -> crate::metrics::PoolFigures {
        let (in_use, idle) = self.pool.figures();
        let demand = self.demand.load(Ordering::Relaxed);
        crate::metrics::PoolFigures { max: self.pool.max(), in_use, idle, waiting: demand.saturating_sub(in_use) }
    }

    /// How many audit events the database has inserted (every instance's), from its
    /// statistics: cheap, and readable without any privilege on the audit tables. On Citus the
    /// rows land in the workers' shards, whose statistics are the workers': summed over every
    /// shard (one statement reaching each shard, per scrape).
    pub async fn audit_events_inserted(&self) -> Result<i64, sqlx::Error> {
        let mut lease = self.pool.acquire().await?;
        let n = match self.backend {
            Backend::Postgres => {
                sqlx::query_scalar!(r#"SELECT pg_stat_get_tuples_inserted('audit_events'::regclass) AS "inserted!""#)
                    .fetch_one(lease.conn()?)
                    .await?
            }
            Backend::Citus => {
                sqlx::query_scalar(
                    "SELECT coalesce(sum(result::bigint), 0)::int8
                       FROM run_command_on_shards('audit_events', $$SELECT pg_stat_get_tuples_inserted('%s'::regclass)$$)
                      WHERE success",
                )
                .fetch_one(lease.conn()?)
                .await?
            }
        };
        lease.done();
        Ok(n)
    }

    /// On Citus, refuse unless `citus.propagate_set_commands` is `local` for the app role:
    /// otherwise the tenant's `SET LOCAL` never reaches the workers (`Backend::ensure_ready`).
    pub async fn ensure_backend_ready(&self) -> anyhow::Result<()> {
        let mut lease = self.pool.acquire().await?;
        self.backend.ensure_ready(lease.conn()?).await?;
        lease.done();
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The adopted tables the API serves (`data::schema::load`), read as the app role.
    pub async fn adopted_tables(&self, generation: u64) -> Result<crate::data::Schema, sqlx::Error> {
        let mut lease = self.pool.acquire().await?;
        let schema = crate::data::schema::load(lease.conn()?, generation).await?;
        lease.done();
        Ok(schema)
    }

    /// Reachable at all (`/readyz`).
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        let mut lease = self.pool.acquire().await?;
        sqlx::query!("SELECT 1 AS one").fetch_one(lease.conn()?).await?;
        lease.done();
        Ok(())
    }

    /// Whether the database has every migration this binary embeds (`/readyz`).
    pub async fn migrations_current(&self) -> Result<bool, sqlx::Error> {
        let (schema, policies) = crate::migrate::embedded_versions();
        let mut lease = self.pool.acquire().await?;
        let applied = sqlx::query!(
            "SELECT (SELECT max(version) FROM rowguard_schema_history) AS schema,
                    (SELECT max(version) FROM rowguard_policy_history) AS policies",
        )
        .fetch_one(lease.conn()?)
        .await?;
        lease.done();
        Ok((applied.schema, applied.policies) == (Some(schema), Some(policies)))
    }

    pub async fn close(&self) {
        self.pool.close();
        self.background.close().await;
    }
}
