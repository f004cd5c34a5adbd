//! What the auth layer checks on every request, per (tenant, user): current role, status and
//! the instant before which access tokens no longer count. Cached per instance, dropped by LISTEN/NOTIFY.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::cache::BoundedCache;
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

/// Bound on the memory of cached users; past it the cache drops what expired, then starts over.
const MAX_BYTES: usize = 8 << 20;
/// What one cached user weighs: key, state, time and the map's overhead.
const ENTRY_BYTES: usize = 96;

/// A hit costs a read lock and a hash lookup, no database round trip. Entries are dropped by
/// the users trigger's NOTIFY (every instance listens), by the handler that made a change
/// (so its own instance never waits for the notification), and after `ttl` as a backstop.
pub struct UserStateCache {
    /// A cached state; None: no such user.
    db: Database,
    entries: BoundedCache<(TenantId, UserId), Option<UserState>>,
    /// Bumped on every invalidation; a load that raced one is used but not cached.
    generation: AtomicU64,
}

impl UserStateCache {
    pub fn new(db: Database, ttl: Duration) -> UserStateCache {
        UserStateCache {
            db,
            entries: BoundedCache::new(ttl, MAX_BYTES, |_, _| ENTRY_BYTES),
            generation: AtomicU64::new(0),
        }
    }

    /// The user's current state; None when the user does not exist (deleted).
    pub(crate) async fn get(&self, tenant: TenantId, user: UserId) -> Result<Option<UserState>, sqlx::Error> {
        let key = (tenant, user);
        if let Some(state) = self.entries.get(&key) {
            return Ok(state);
        }
        let generation = self.generation.load(Ordering::SeqCst);
        // Boxed: the miss is rare, and its future (a transaction) would otherwise be carried,
        // by size, in every request's authentication future.
        let state = Box::pin(load(&self.db, tenant, user)).await?;
        if self.generation.load(Ordering::SeqCst) == generation {
            self.entries.insert(key, state);
        }
        Ok(state)
    }

    /// `user` changed (role, status, sessions): forget it here at once, and tell the other
    /// instances (`Database::announce_user_change`; on plain PostgreSQL the trigger has).
    pub async fn changed(&self, tenant: TenantId, user: UserId) {
        self.forget(UserChange::One(tenant, user));
        self.db.announce_user_change(tenant, user).await;
    }

    pub fn forget(&self, change: UserChange) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        match change {
            UserChange::One(tenant, user) => self.entries.remove(&(tenant, user)),
            UserChange::All => self.entries.clear(),
        }
    }
}

/// The users table is tenant-owned: read it in a tenant transaction like any handler.
async fn load(db: &Database, tenant: TenantId, user: UserId) -> Result<Option<UserState>, sqlx::Error> {
    let mut tx = TenantTx::begin(db, tenant, &crate::db::Actor::default()).await?;
    let row = sqlx::query!(
        r#"SELECT role AS "role: Role", status AS "status: UserStatus", sessions_valid_after
             FROM users WHERE tenant_id = $1 AND id = $2"#,
        tenant.0,
        user.0,
    )
    .fetch_optional(tx.conn())
    .await?;
    tx.commit().await?;
    Ok(row.map(|r| UserState {
        role: r.role,
        status: r.status,
        sessions_valid_after_ms: r.sessions_valid_after.timestamp_millis(),
    }))
}
