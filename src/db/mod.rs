//! The tenant door: the service's pool (private to this module) and the tenant transaction
//! handle, the only way to tenant data; the registry reads tenant resolution needs, and the
//! change feeds. The embedded cluster (`cluster`), bootstrap and migrations (`migrate`), the
//! catalog verifier (`catalog`) and the platform side (`platform`) live beside it.

mod hot_pool;
pub mod listen;
pub mod registry;
pub(crate) mod revocation;
mod scope;
pub mod sealing;
mod tenant_tx;
pub mod user_changes;
pub mod users;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sqlx::PgPool;

use crate::backend::Backend;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

pub use scope::{Acting, TenantScope};
pub use tenant_tx::{Actor, HotStatement, Literal, TenantTx};

pub use crate::roles::*;

/// The service's connection pool, as the app role. Cloning is cheap.
#[derive(Clone)]
pub struct Database {
    pool: PgPool,
    /// Requests that hold or wait for one of the pool's connections (`/metrics`: waiting is
    /// this less those in use; sqlx does not count its waiters).
    demand: Arc<AtomicU32>,
    /// Connections for one-message reads (`TenantTx::read_once`), returned without a ping.
    reads: Arc<hot_pool::ReadPool>,
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
    /// Connect as the app role. `test_before_acquire` is off: it costs a round trip on every
    /// request, and a dead connection shows up as an error on first use anyway. Every new
    /// connection prepares the `hot` statements (session-level PREPARE: a plan cache, not
    /// tenant state), so `TenantTx::read_once` can EXECUTE them inside its one round trip.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        hot: &'static [HotStatement],
    ) -> Result<Database, sqlx::Error> {
        let options: PgConnectOptions = url.parse()?;
        // UTC, so timestamps the database renders (the generic API's JSON rows) read the same everywhere.
        let options = options.application_name("rowguard").options([("TimeZone", "UTC")]);
        let prepare: String = hot.iter().map(HotStatement::prepare_sql).collect::<Vec<_>>().join("; ");
        let prepare: std::sync::Arc<str> = prepare.into();
        let acquire_timeout = Duration::from_secs(3);
        let reads = hot_pool::ReadPool::new(options.clone(), max_connections, Arc::clone(&prepare), acquire_timeout);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .min_connections(1)
            .acquire_timeout(acquire_timeout)
            .test_before_acquire(false)
            .after_connect(move |conn, _| {
                let prepare = std::sync::Arc::clone(&prepare);
                Box::pin(async move {
                    if !prepare.is_empty() {
                        sqlx::raw_sql(sqlx::AssertSqlSafe(prepare)).execute(conn).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let backend = Backend::detect(&mut *pool.acquire().await?).await?;
        Ok(Database { pool, demand: Arc::default(), reads: Arc::new(reads), backend })
    }

    /// The pools' figures for `/metrics`: the transaction pool and the read pool together.
    pub fn pool_figures(&self) -> crate::metrics::PoolFigures {
        let size = self.pool.size();
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX).min(size);
        let (lent, read_idle) = self.reads.figures();
        let in_use = size - idle + lent;
        let demand = self.demand.load(Ordering::Relaxed);
        crate::metrics::PoolFigures {
            max: self.pool.options().get_max_connections() + self.reads.max(),
            in_use,
            idle: idle + read_idle,
            waiting: demand.saturating_sub(in_use),
        }
    }

    /// How many audit events the database has inserted (every instance's), from its
    /// statistics: cheap, and readable without any privilege on the audit tables.
    pub async fn audit_events_inserted(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar!(r#"SELECT pg_stat_get_tuples_inserted('audit_events'::regclass) AS "inserted!""#)
            .fetch_one(&self.pool)
            .await
    }

    /// On Citus, refuse unless `citus.propagate_set_commands` is `local` for the app role:
    /// otherwise the tenant's `SET LOCAL` never reaches the workers (`Backend::ensure_ready`).
    pub async fn ensure_backend_ready(&self) -> anyhow::Result<()> {
        let mut conn = self.pool.acquire().await?;
        self.backend.ensure_ready(&mut conn).await
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Reachable at all (`/readyz`).
    /// The adopted tables the API serves (`data::schema::load`), read as the app role.
    pub async fn adopted_tables(&self, generation: u64) -> Result<crate::data::Schema, sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        crate::data::schema::load(&mut conn, generation).await
    }

    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(|_| ())
    }

    /// Whether the database has every migration this binary embeds (`/readyz`).
    pub async fn migrations_current(&self) -> Result<bool, sqlx::Error> {
        let (schema, policies) = crate::migrate::embedded_versions();
        let applied = sqlx::query!(
            "SELECT (SELECT max(version) FROM rowguard_schema_history) AS schema,
                    (SELECT max(version) FROM rowguard_policy_history) AS policies",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((applied.schema, applied.policies) == (Some(schema), Some(policies)))
    }

    pub async fn close(&self) {
        self.reads.close();
        self.pool.close().await;
    }
}
