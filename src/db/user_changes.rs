//! The change feed of users: a trigger NOTIFYs `rowguard_user_changed` with `tenant:user`
//! after a role, status or sessions change commits; every instance LISTENs and drops its cache entry.

use super::Database;
use super::listen::{Feed, Notice};
use crate::backend::Backend;
use crate::domain::{TenantId, UserId};

impl Database {
    /// Tell every instance that `user` changed, after the change committed. On plain PostgreSQL
    /// the users trigger already did (its NOTIFY is sent at commit); on Citus the trigger runs
    /// on the worker holding the user's shard, where nobody listens (sql/V15), so the service
    /// says it itself, from the coordinator every instance LISTENs on — one statement more per
    /// role, status or session change, none per request. Best effort: if it fails, the other
    /// instances notice within the cache's TTL (60 s), as before.
    pub async fn announce_user_change(&self, tenant: TenantId, user: UserId) {
        if self.backend != Backend::Citus {
            return;
        }
        let announce = async {
            let mut lease = self.pool.acquire().await?;
            sqlx::query("SELECT pg_notify('rowguard_user_changed', $1)")
                .bind(format!("{}:{}", tenant.0, user.0))
                .execute(lease.conn()?)
                .await?;
            lease.done();
            Ok::<_, sqlx::Error>(())
        };
        if let Err(e) = announce.await {
            tracing::warn!(error = %e, "could not announce a user change to the other instances");
        }
    }
}

/// What a notification says should be forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserChange {
    One(TenantId, UserId),
    /// The listener (re)connected or could not read a payload: changes may have been missed.
    All,
}

/// The feed that calls `on_change` for every changed user, and with `All` whenever
/// notifications may have been missed (first connect, reconnect); `Database::listen` runs it.
pub fn user_changes(on_change: impl Fn(UserChange) + Send + Sync + 'static) -> Feed {
    Feed::new("rowguard_user_changed", move |notice| {
        on_change(match notice {
            Notice::Payload(payload) => parse_payload(payload).unwrap_or(UserChange::All),
            Notice::MayHaveMissed => UserChange::All,
        })
    })
}

fn parse_payload(payload: &str) -> Option<UserChange> {
    let (tenant, user) = payload.split_once(':')?;
    Some(UserChange::One(TenantId(tenant.parse().ok()?), UserId(user.parse().ok()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_tenant_and_user() {
        let (t, u) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        assert_eq!(parse_payload(&format!("{t}:{u}")), Some(UserChange::One(TenantId(t), UserId(u))));
        assert_eq!(parse_payload("garbage"), None);
    }
}
