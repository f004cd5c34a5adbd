//! The service's one pool of app-role connections: tenant transactions (`TenantTx::begin`),
//! one-message reads (`TenantTx::read_once`) and the service's own reads outside any tenant
//! (registry, readiness, sealing) all lease from it. Connections are handed back without a
//! round trip.
//!
//! sqlx's pool pings every connection it takes back (a Sync message and its ReadyForQuery:
//! one more round trip per request, both processes woken once more). Profiled under
//! get-by-id, returning connections that way was 11.5% of the service's CPU. Here a lease goes
//! back only when its holder says the connection is idle and holds nothing (`done`): a
//! one-message read answered in full (its implicit transaction ended with the message), a
//! tenant transaction whose COMMIT or ROLLBACK completed, a plain query answered in full.
//! Anything else — an error, or the future dropped halfway (a timeout, a client gone) — and
//! the connection is not reused but dropped, and a fresh one is opened when needed; a tenant
//! transaction dropped without COMMIT first sends its ROLLBACK (see `TenantTx`'s `Drop`).
//! That rule makes cancellation safe without the ping.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, ConnectOptions};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A connection older than this is closed when it comes back instead of lent again, as sqlx's
/// pool does by default: a long-lived backend keeps growing caches (relations, plans of every
/// adopted table's statements) that only a new one sheds.
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// A connection idle longer than this is closed rather than lent (sqlx's default): a firewall or
/// NAT may have dropped it silently meanwhile, and its first query would hang or fail.
const MAX_IDLE: Duration = Duration::from_secs(10 * 60);

/// An idle connection: the statements it prepared, when it opened, and since when it is idle.
type Idle = (PgConnection, Prepared, Instant, Instant);

pub(crate) struct Pool {
    idle: Mutex<Vec<Idle>>,
    /// One permit per connection that may exist (idle or lent).
    permits: Arc<Semaphore>,
    max: u32,
    options: PgConnectOptions,
    /// Run on every new connection (the hot statements' PREPAREs).
    prepare: Arc<str>,
    acquire_timeout: Duration,
}

/// The statements a connection prepared after it opened (by the hash of their text), beyond
/// the hot ones every connection prepares: adopted tables' reads, prepared on first use.
pub(crate) type Prepared = std::collections::HashSet<u64>;

/// A lent connection. Returned to the pool on drop only if `reusable` was set.
pub(crate) struct Lease {
    conn: Option<PgConnection>,
    pub(crate) prepared: Prepared,
    born: Instant,
    pool: Arc<Pool>,
    reusable: bool,
    _permit: OwnedSemaphorePermit,
}

impl Pool {
    pub(crate) fn new(options: PgConnectOptions, max: u32, prepare: Arc<str>, acquire_timeout: Duration) -> Pool {
        let max = max.max(1);
        Pool {
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(max as usize)),
            max,
            options,
            prepare,
            acquire_timeout,
        }
    }

    /// A connection within `acquire_timeout`: waiting for a permit and, when no idle one is
    /// fresh enough, opening a new one (connect, authenticate, PREPARE) both count.
    pub(crate) async fn acquire(self: &Arc<Self>) -> Result<Lease, sqlx::Error> {
        let deadline = tokio::time::Instant::now() + self.acquire_timeout;
        let permit = tokio::time::timeout_at(deadline, Arc::clone(&self.permits).acquire_owned())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let idle = self.fresh_idle();
        let (conn, prepared, born) = match idle {
            Some(idle) => idle,
            None => {
                let conn = tokio::time::timeout_at(deadline, self.connect())
                    .await
                    .map_err(|_| sqlx::Error::PoolTimedOut)??;
                (conn, Prepared::new(), Instant::now())
            }
        };
        Ok(Lease { conn: Some(conn), prepared, born, pool: Arc::clone(self), reusable: false, _permit: permit })
    }

    /// The most recently returned idle connection that is neither too old nor idle too long;
    /// the stale ones met on the way are closed (dropped).
    fn fresh_idle(&self) -> Option<(PgConnection, Prepared, Instant)> {
        let mut idle = self.idle.lock().ok()?;
        while let Some((conn, prepared, born, since)) = idle.pop() {
            if born.elapsed() < MAX_LIFETIME && since.elapsed() < MAX_IDLE {
                return Some((conn, prepared, born));
            }
        }
        None
    }

    async fn connect(&self) -> Result<PgConnection, sqlx::Error> {
        let mut conn = self.options.connect().await?;
        if !self.prepare.is_empty() {
            sqlx::raw_sql(AssertSqlSafe(self.prepare.to_string())).execute(&mut conn).await?;
        }
        Ok(conn)
    }

    /// (lent, idle) right now.
    pub(crate) fn figures(&self) -> (u32, u32) {
        let idle = self.idle.lock().map(|i| i.len()).unwrap_or(0);
        let idle = u32::try_from(idle).unwrap_or(u32::MAX);
        let free = u32::try_from(self.permits.available_permits()).unwrap_or(u32::MAX);
        (self.max.saturating_sub(free), idle)
    }

    pub(crate) fn max(&self) -> u32 {
        self.max
    }

    /// Refuse new leases and drop the idle connections.
    pub(crate) fn close(&self) {
        self.permits.close();
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }
}

impl Lease {
    pub(crate) fn conn(&mut self) -> Result<&mut PgConnection, sqlx::Error> {
        // Only `Drop` takes the connection out, so this is always Some.
        self.conn.as_mut().ok_or(sqlx::Error::PoolClosed)
    }

    /// The read was answered in full: the connection is idle and may be lent again.
    pub(crate) fn done(mut self) {
        self.reusable = true;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if self.reusable
            && self.born.elapsed() < MAX_LIFETIME
            && !self.pool.permits.is_closed()
            && let Ok(mut idle) = self.pool.idle.lock()
        {
            idle.push((conn, std::mem::take(&mut self.prepared), self.born, Instant::now()));
        }
        // Otherwise the connection is dropped here, closing its socket; the server ends the
        // backend, and whatever it was doing goes with it.
    }
}
