//! The tenant transaction handle: the one place that sets the tenant (invariant 3).
//! Everything a request does with tenant data goes through a `TenantTx`.

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Postgres, Transaction};

use super::Database;
use crate::domain::{TenantId, UserId};

/// A transaction that has already set `app.tenant_id` (and `app.user_id` when a user acts).
///
/// `begin` sends `BEGIN; SET LOCAL app.tenant_id = '…'` as one simple-protocol statement, so
/// opening the transaction and setting the tenant cost one round trip. The setting is
/// transaction-local: after COMMIT or ROLLBACK the pooled connection carries nothing to the
/// next request. `SET LOCAL` rather than `set_config(…, true)` because Citus forwards only
/// SET commands to its workers (DESIGN.md, Scale-out).
///
/// Only `Uuid`-backed values are rendered into the statement; a uuid's text form is hex
/// digits and dashes and cannot carry SQL. No string from a request ever gets here.
/// Dropping the handle without `commit` rolls back.
pub struct TenantTx<'c> {
    tx: Transaction<'c, Postgres>,
    tenant: TenantId,
}

impl TenantTx<'static> {
    /// Open a tenant transaction on a connection from the service's pool.
    pub async fn begin(
        db: &Database,
        tenant: TenantId,
        user: Option<UserId>,
    ) -> Result<TenantTx<'static>, sqlx::Error> {
        let tx = db.pool.begin_with(AssertSqlSafe(begin_statement(tenant, user))).await?;
        Ok(TenantTx { tx, tenant })
    }
}

impl<'c> TenantTx<'c> {
    /// Open a tenant transaction on a dedicated connection (the operator CLI's platform
    /// role, the importer), with the same statement as `begin`.
    pub async fn begin_on(conn: &'c mut PgConnection, tenant: TenantId) -> Result<TenantTx<'c>, sqlx::Error> {
        use sqlx::Connection;
        let tx = conn.begin_with(AssertSqlSafe(begin_statement(tenant, None))).await?;
        Ok(TenantTx { tx, tenant })
    }

    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// The connection to run statements on, inside this tenant's transaction.
    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

fn begin_statement(tenant: TenantId, user: Option<UserId>) -> String {
    // Both values are `Uuid`s: rendering them is safe (see above).
    match user {
        Some(user) => format!("BEGIN; SET LOCAL app.tenant_id = '{}'; SET LOCAL app.user_id = '{}'", tenant.0, user.0),
        None => format!("BEGIN; SET LOCAL app.tenant_id = '{}'", tenant.0),
    }
}
