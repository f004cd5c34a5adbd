//! What the auth layer checks on every request, per (tenant, user): current role, status and
//! the instant before which access tokens no longer count. Cached per instance, dropped by LISTEN/NOTIFY.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::db::user_changes::UserChange;
use crate::db::{Database, TenantTx};
use crate::domain::{Role, TenantId, UserId, UserStatus};

/// A user as authorization sees it right now (OWASP ASVS 8.3.2: changes count on the next
/// request, not when a token expires).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserState {
    pub role: Role,
    pub status: UserStatus,
    /// Access tokens issued before this (Unix milliseconds) are refused: logout-all and
    /// password changes move it forward.
    pub sessions_valid_after_ms: i64,
}

/// Bound on cached users (a few dozen bytes each); past it the cache starts over.
const MAX_ENTRIES: usize = 100_000;

/// A cached state (None: no such user) and when it was read.
type Entry = (Option<UserState>, Instant);

/// A hit costs a mutex and a hash lookup, no database round trip. Entries are dropped by
/// the users trigger's NOTIFY (every instance listens), by the handler that made a change
/// (so its own instance never waits for the notification), and after `ttl` as a backstop.
pub struct UserStateCache {
    entries: Mutex<HashMap<(TenantId, UserId), Entry>>,
    /// Bumped on every invalidation; a load that raced one is used but not cached.
    generation: AtomicU64,
    ttl: Duration,
}

impl UserStateCache {
    pub fn new(ttl: Duration) -> UserStateCache {
        UserStateCache { entries: Mutex::new(HashMap::new()), generation: AtomicU64::new(0), ttl }
    }

    /// The user's current state; None when the user does not exist (deleted).
    pub async fn get(&self, db: &Database, tenant: TenantId, user: UserId) -> Result<Option<UserState>, sqlx::Error> {
        let key = (tenant, user);
        let cached =
            self.entries.lock().ok().and_then(|entries| {
                entries.get(&key).filter(|(_, at)| at.elapsed() < self.ttl).map(|(state, _)| *state)
            });
        if let Some(state) = cached {
            return Ok(state);
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let state = load(db, tenant, user).await?;
        if let Ok(mut entries) = self.entries.lock()
            && self.generation.load(Ordering::SeqCst) == generation
        {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(key, (state, Instant::now()));
        }
        Ok(state)
    }

    pub fn forget(&self, change: UserChange) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut entries) = self.entries.lock() {
            match change {
                UserChange::One(tenant, user) => {
                    entries.remove(&(tenant, user));
                }
                UserChange::All => entries.clear(),
            }
        }
    }
}

/// The users table is tenant-owned: read it in a tenant transaction like any handler.
async fn load(db: &Database, tenant: TenantId, user: UserId) -> Result<Option<UserState>, sqlx::Error> {
    let mut tx = TenantTx::begin(db, tenant, None).await?;
    let row: Option<(String, String, DateTime<Utc>)> =
        sqlx::query_as("SELECT role, status, sessions_valid_after FROM users WHERE tenant_id = $1 AND id = $2")
            .bind(tenant)
            .bind(user)
            .fetch_optional(tx.conn())
            .await?;
    tx.commit().await?;
    // The CHECK constraints admit nothing else; anything unexpected fails closed (no user).
    Ok(row.and_then(|(role, status, valid_after)| {
        Some(UserState {
            role: Role::parse(&role).ok()?,
            status: UserStatus::parse(&status).ok()?,
            sessions_valid_after_ms: valid_after.timestamp_millis(),
        })
    }))
}
