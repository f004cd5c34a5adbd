//! The tenant scope: a request's handle to one tenant's data, and the only one a handler gets.
//!
//! A scope is made where the tenant was resolved (the HTTP extractor, from the request's
//! context) and nowhere else a handler can reach: the service's `Database` is held out of
//! handlers' sight (`http::extract::Door`), so through the service's pool a handler can open a
//! transaction for the tenant of its own request and for no other. (The platform pool, there
//! for the operators' routes, can open any tenant and is not hidden from handlers: see "handler"
//! in docs/architecture.md.) Every way in sets the tenant first: `begin` (a transaction,
//! `TenantTx`) and `read_once` (one round trip; its fast path, same pool).

use std::sync::Arc;

use sqlx::postgres::PgRow;

use super::{Actor, Database, HotStatement, Literal, TenantTx};
use crate::domain::{TenantId, UserId};

/// Who acts for a scope, as the audit trail records it; built only when a write asks (reads
/// never need it). The request context provides it.
pub trait Acting: Send + Sync {
    fn actor(&self) -> Actor;
}

pub struct TenantScope {
    db: Database,
    tenant: TenantId,
    user: Option<UserId>,
    acting: Arc<dyn Acting>,
}

impl TenantScope {
    pub(crate) fn new(db: &Database, tenant: TenantId, user: Option<UserId>, acting: Arc<dyn Acting>) -> TenantScope {
        TenantScope { db: db.clone(), tenant, user, acting }
    }

    pub fn tenant_id(&self) -> TenantId {
        self.tenant
    }

    /// The authenticated user, or the one a login just proved (`acting_as`).
    pub fn user(&self) -> Option<UserId> {
        self.user
    }

    /// The same tenant, acting as `user`: a login, once the password verified, records and
    /// writes as the user it logged in.
    pub fn acting_as(&self, user: UserId) -> TenantScope {
        TenantScope { db: self.db.clone(), tenant: self.tenant, user: Some(user), acting: Arc::clone(&self.acting) }
    }

    /// Who acts (user, role, request id, address, agent).
    pub fn actor(&self) -> Actor {
        let mut actor = self.acting.actor();
        // The scope's user is the principal's (the same) or the one `acting_as` named.
        if self.user.is_some() {
            actor.user = self.user;
        }
        actor
    }

    /// A transaction that has already set the tenant and who acts.
    pub async fn begin(&self) -> Result<TenantTx<'static>, sqlx::Error> {
        TenantTx::begin(&self.db, self.tenant, &self.actor()).await
    }

    /// A read whose parameters are all ids or numbers, in one round trip (`TenantTx::read_once`).
    pub async fn read_once<T>(&self, statement: &HotStatement, args: &[Literal]) -> Result<Vec<T>, sqlx::Error>
    where
        T: for<'r> sqlx::FromRow<'r, PgRow>,
    {
        let rows = TenantTx::read_once(&self.db, self.tenant, self.user, statement, args).await?;
        rows.iter().map(T::from_row).collect()
    }

    /// `read_once` for a statement made at run time (`TenantTx::read_once_adhoc`).
    pub async fn read_once_adhoc<T>(&self, params: &str, sql: &str, args: &[Literal]) -> Result<Vec<T>, sqlx::Error>
    where
        T: for<'r> sqlx::FromRow<'r, PgRow>,
    {
        let rows = TenantTx::read_once_adhoc(&self.db, self.tenant, self.user, params, sql, args).await?;
        rows.iter().map(T::from_row).collect()
    }
}
