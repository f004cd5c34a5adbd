//! The tenant transaction handle: the one place that sets the tenant (invariant 3).
//! Everything a request does with tenant data goes through a `TenantTx`.

use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{AssertSqlSafe, Postgres, Transaction};
use std::net::IpAddr;

use uuid::Uuid;

use super::pool::Lease;
use super::{Database, DemandGuard};
use crate::domain::{Role, TenantId, UserId};

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
/// Dropping the handle without `commit` rolls back. No nested transactions: the pooled kind
/// sends its own BEGIN, so sqlx's `begin` on `conn()` would not make a SAVEPOINT; write
/// `SAVEPOINT`/`ROLLBACK TO` in SQL where one is needed.
pub struct TenantTx<'c> {
    link: Link<'c>,
    tenant: TenantId,
    /// Counted in the pool's demand while the transaction holds a pooled connection.
    _demand: Option<DemandGuard>,
    /// Check deferred keys before COMMIT (`check_deferred_keys_at_commit`).
    check_deferred: bool,
    /// The transaction runs on Citus (`check_deferred_keys_at_commit`).
    citus: bool,
}

/// Where a tenant transaction runs.
enum Link<'c> {
    /// A connection leased from the service's pool: BEGIN and COMMIT are ours, and the lease
    /// goes back to the pool only once one of them ended the transaction (`pool`). `None` only
    /// while `commit` or `Drop` hands it on.
    Pooled(Option<Lease>),
    /// A dedicated connection (the CLI's platform role, the importer): sqlx's transaction.
    Dedicated(Transaction<'c, Postgres>),
}

impl TenantTx<'static> {
    /// Open a tenant transaction on a connection from the service's pool, recording who acts
    /// (for the audit trail's triggers) in the same single statement: `BEGIN`, the tenant, the
    /// user, and the actor's other transaction-local settings. The one way the service opens a
    /// tenant transaction; `Actor::default()` when nobody in particular acts (the system).
    pub async fn begin(db: &Database, tenant: TenantId, actor: &Actor) -> Result<TenantTx<'static>, sqlx::Error> {
        let statement = format!("{}{}", begin_statement(tenant, actor.user), actor.settings());
        let demand = DemandGuard::new(&db.demand);
        let mut lease = db.pool.acquire().await?;
        // Should any part of the message fail, the lease is dropped, not reused: the
        // connection goes, and with it whatever the message left open.
        sqlx::raw_sql(AssertSqlSafe(statement)).execute(lease.conn()?).await?;
        let citus = db.backend() == crate::backend::Backend::Citus;
        Ok(TenantTx { link: Link::Pooled(Some(lease)), tenant, _demand: Some(demand), check_deferred: false, citus })
    }
}

/// How long a dropped transaction's ROLLBACK may take before its connection is closed instead.
const ROLLBACK_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

impl Drop for TenantTx<'_> {
    /// A pooled transaction dropped without `commit` (an early return on an error, the request
    /// future dropped): its ROLLBACK goes out on a task of its own, and the connection returns
    /// to the pool once it is answered. sqlx first reads whatever a statement cut off halfway
    /// left to read. Should the ROLLBACK fail, or no runtime be there to send it, the
    /// connection is dropped instead, which ends the transaction on the server too.
    /// (A dedicated connection's sqlx transaction rolls back on its own.)
    fn drop(&mut self) {
        let Link::Pooled(lease) = &mut self.link else { return };
        let Some(mut lease) = lease.take() else { return };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                // Bounded: a statement cut off halfway is read to its end first, and a network
                // that drops packets silently must not hold the permit for minutes.
                let rollback = async {
                    let conn = lease.conn().ok()?;
                    sqlx::raw_sql("ROLLBACK").execute(conn).await.ok()
                };
                if let Ok(Some(_)) = tokio::time::timeout(ROLLBACK_WITHIN, rollback).await {
                    lease.done();
                }
            });
        }
    }
}

/// Who acts in a tenant transaction, as the audit trail records it. Each field is of a type
/// whose rendering cannot carry SQL: ids and addresses print only hex digits, dots, colons
/// and dashes; the role is one of five fixed words; the user agent is rendered hex-encoded.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub user: Option<UserId>,
    pub role: Option<Role>,
    pub request_id: Option<Uuid>,
    pub client_ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

impl Actor {
    /// Every setting, the user's too, as `SET LOCAL`s: for a transaction already open (the
    /// platform's, whose `begin_on` sets only the tenant).
    pub(crate) fn set_local(&self) -> String {
        let user = self.user.map(|u| format!("SET LOCAL app.user_id = '{}'", u.0)).unwrap_or_else(|| "SELECT 1".into());
        format!("{user}{}", self.settings())
    }

    fn settings(&self) -> String {
        let mut out = String::new();
        if let Some(role) = self.role {
            out.push_str(&format!("; SET LOCAL app.role = '{}'", role.as_str()));
        }
        if let Some(id) = self.request_id {
            out.push_str(&format!("; SET LOCAL app.request_id = '{id}'"));
        }
        if let Some(ip) = self.client_ip {
            out.push_str(&format!("; SET LOCAL app.client_ip = '{ip}'"));
        }
        if let Some(ua) = &self.user_agent {
            let hex: String = ua.bytes().take(256).map(|b| format!("{b:02x}")).collect();
            out.push_str(&format!("; SET LOCAL app.user_agent_hex = '{hex}'"));
        }
        out
    }
}

impl<'c> TenantTx<'c> {
    /// Open a tenant transaction on a dedicated connection (the operator CLI's platform
    /// role, the importer), with the same statement as `begin`.
    pub async fn begin_on(conn: &'c mut PgConnection, tenant: TenantId) -> Result<TenantTx<'c>, sqlx::Error> {
        use sqlx::Connection;
        let tx = conn.begin_with(AssertSqlSafe(begin_statement(tenant, None))).await?;
        Ok(TenantTx { link: Link::Dedicated(tx), tenant, _demand: None, check_deferred: false, citus: false })
    }

    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// For a write that a key declared `DEFERRABLE INITIALLY DEFERRED` may refuse at COMMIT (an
    /// adopted table's row, or a built-in row such a table references): on Citus, COMMIT
    /// reports that only as "could not commit transaction for shard …" (the worker's own error
    /// arrives as a warning), so `commit` then runs the deferred checks first, on the tenant's
    /// worker inside this transaction (`check_deferred_keys`, a call delegated by tenant:
    /// migrate::citus), where they fail as a statement naming the key. Nothing changes on
    /// PostgreSQL, whose COMMIT names the key itself. Not for every transaction: Citus refuses
    /// the call on shards a definer of another role wrote in the same transaction.
    /// (A dedicated connection's transaction — the CLI, the importer — is left as it is.)
    pub fn check_deferred_keys_at_commit(&mut self) {
        self.check_deferred = self.citus;
    }

    /// End a pooled transaction by closing its connection, without ROLLBACK: for a session
    /// whose state a ROLLBACK does not reset (a PREPARE left behind by a failed statement).
    fn discard(mut self) {
        if let Link::Pooled(lease) = &mut self.link {
            lease.take();
        }
    }

    /// The connection to run statements on, inside this tenant's transaction.
    pub fn conn(&mut self) -> &mut PgConnection {
        match &mut self.link {
            // `Some` from `begin` until `commit` consumes the handle or `Drop` runs.
            Link::Pooled(lease) => lease.as_mut().and_then(|l| l.conn().ok()).expect("a live tenant transaction"),
            Link::Dedicated(tx) => tx,
        }
    }

    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        match &mut self.link {
            Link::Pooled(lease) => {
                let Some(mut lease) = lease.take() else { return Ok(()) };
                // Failed (a key checked at commit), the server has ended the transaction, but
                // the connection is not reused all the same: dropped with the lease.
                // The deferred checks (`check_deferred_keys_at_commit`) in the same message:
                // no extra round trip. A uuid rendered as text carries no SQL.
                if self.check_deferred {
                    let statement = format!("SELECT check_deferred_keys('{}'); COMMIT", self.tenant.0);
                    sqlx::raw_sql(AssertSqlSafe(statement)).execute(lease.conn()?).await?;
                } else {
                    sqlx::raw_sql("COMMIT").execute(lease.conn()?).await?;
                }
                lease.done();
                Ok(())
            }
            Link::Dedicated(_) => {
                let Link::Dedicated(tx) = std::mem::replace(&mut self.link, Link::Pooled(None)) else {
                    return Ok(());
                };
                tx.commit().await
            }
        }
    }

    /// From here on, the transaction is `to`'s: `app.tenant_id` is set again (transaction-
    /// locally) and every other `app.*` setting cleared, so RLS fences every later statement
    /// to `to` as it fenced the earlier ones to the first tenant, and nothing of the first
    /// tenant's actor or stand-down switches carries over. For the one platform operation that
    /// must end one tenant and begin another atomically — `import schemas --replace` purges
    /// the old copy and writes the new one in the same transaction. Refused on a transaction
    /// from the service's pool (`begin`, what requests get): only one opened on a dedicated
    /// platform connection (`begin_on`) may change hands.
    pub(crate) async fn switch_tenant(&mut self, to: TenantId) -> Result<(), sqlx::Error> {
        if self._demand.is_some() {
            return Err(sqlx::Error::Protocol("a request's tenant transaction cannot change tenants".into()));
        }
        // A uuid rendered as text carries no SQL.
        let statement = format!(
            "SET LOCAL app.tenant_id = '{to}'; SET LOCAL app.user_id = ''; SET LOCAL app.role = '';
             SET LOCAL app.request_id = ''; SET LOCAL app.client_ip = ''; SET LOCAL app.user_agent_hex = '';
             SET LOCAL app.audit_purge = 'off'; SET LOCAL app.audit_import = 'off'"
        );
        sqlx::raw_sql(AssertSqlSafe(statement)).execute(self.conn()).await?;
        self.tenant = to;
        Ok(())
    }
}

/// A value that may be rendered into SQL text: uuids and integers cannot carry SQL, and
/// nothing else is representable here.
#[derive(Debug, Clone, Copy)]
pub enum Literal {
    Uuid(Uuid),
    Int(i64),
    Null,
}

impl TenantTx<'static> {
    /// A read-only statement in ONE round trip: `SET LOCAL app.tenant_id = …; EXECUTE
    /// <hot>(…)` sent as a single simple-protocol message. PostgreSQL runs the statements of
    /// one such message as one implicit transaction block, in which `SET LOCAL` applies until
    /// the block ends (checked on PostgreSQL 15: the EXECUTE sees the setting; the next
    /// message on the connection does not, after success or error). So the tenant is set
    /// transaction-locally exactly as with `begin`, without the two statements BEGIN and
    /// COMMIT cost the database on every read, and an error (or this future dropped halfway)
    /// leaves no transaction open on the pooled connection: the block ends with the message.
    /// The statement was PREPAREd when the connection opened, so its plan is cached as with
    /// the extended protocol; the arguments are rendered as literals, which is why only
    /// `Literal`s (ids, numbers, NULL) can be passed. Anything carrying request text must
    /// use `begin` and bind parameters.
    pub async fn read_once(
        db: &Database,
        tenant: TenantId,
        user: Option<UserId>,
        statement: &HotStatement,
        args: &[Literal],
    ) -> Result<Vec<PgRow>, sqlx::Error> {
        if db.backend() == crate::backend::Backend::Citus {
            // Citus records the whole statement text that carried a `SET LOCAL` and replays it
            // on every worker connection the transaction opens: the EXECUTE (prepared only
            // here, on the coordinator) and the COMMIT would run there too. So on Citus the
            // settings travel alone and the read follows: 3 round trips instead of 1.
            let mut tx = TenantTx::begin(db, tenant, &Actor { user, ..Actor::default() }).await?;
            let rows = sqlx::raw_sql(AssertSqlSafe(statement.execute_sql(args))).fetch_all(tx.conn()).await?;
            tx.commit().await?;
            return Ok(rows);
        }
        let text = format!("{}; {}", set_statement(tenant, user), statement.execute_sql(args));
        let _demand = DemandGuard::new(&db.demand);
        // Reused only if the answer is read in full (see `pool`).
        let mut lease = db.pool.acquire().await?;
        let rows = sqlx::raw_sql(AssertSqlSafe(text)).fetch_all(lease.conn()?).await?;
        lease.done();
        Ok(rows)
    }
}

impl TenantTx<'static> {
    /// `read_once` for a statement made at run time (an adopted table's get-by-id): prepared
    /// on each read connection the first time it is used there, under a name derived from its
    /// text, so a changed table (a new text) gets a new statement. `params` are the types of
    /// `$1`, `$2`, …; as with `read_once`, only `Literal`s are rendered.
    pub async fn read_once_adhoc(
        db: &Database,
        tenant: TenantId,
        user: Option<UserId>,
        params: &str,
        sql: &str,
        args: &[Literal],
    ) -> Result<Vec<PgRow>, sqlx::Error> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (params, sql).hash(&mut hasher);
        let hash = hasher.finish();
        let name = format!("rg_adhoc_{hash:016x}");
        let execute = format!("EXECUTE {name}({})", render(args));
        if db.backend() == crate::backend::Backend::Citus {
            // As in `read_once`: settings alone first, then the statement, unprepared.
            let mut tx = TenantTx::begin(db, tenant, &Actor { user, ..Actor::default() }).await?;
            let text = format!("PREPARE {name}({params}) AS {sql}; {execute}; DEALLOCATE {name}");
            let rows = match sqlx::raw_sql(AssertSqlSafe(text)).fetch_all(tx.conn()).await {
                Ok(rows) => rows,
                Err(e) => {
                    // A PREPARE outlives ROLLBACK: the statement may still be there, and the
                    // next PREPARE of the same name on this connection would fail.
                    tx.discard();
                    return Err(e);
                }
            };
            tx.commit().await?;
            return Ok(rows);
        }
        let _demand = DemandGuard::new(&db.demand);
        let mut lease = db.pool.acquire().await?;
        let prepare =
            if lease.prepared.contains(&hash) { String::new() } else { format!("PREPARE {name}({params}) AS {sql}; ") };
        let text = format!("{}; {prepare}{execute}", set_statement(tenant, user));
        let rows = sqlx::raw_sql(AssertSqlSafe(text)).fetch_all(lease.conn()?).await?;
        // Only now: had anything failed, the connection would have been dropped, not reused.
        lease.prepared.insert(hash);
        lease.done();
        Ok(rows)
    }
}

/// The rendering of `Literal`s: ids, integers, NULL.
fn render(args: &[Literal]) -> String {
    args.iter()
        .map(|a| match a {
            Literal::Uuid(u) => format!("'{u}'"),
            Literal::Int(i) => i.to_string(),
            Literal::Null => "NULL".to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A read on the hot path, prepared on every pooled connection (see `Database::connect`).
/// `params` are the PostgreSQL types of `$1`, `$2`, … in `sql`.
#[derive(Debug)]
pub struct HotStatement {
    pub name: &'static str,
    pub params: &'static str,
    pub sql: &'static str,
}

impl HotStatement {
    pub(crate) fn prepare_sql(&self) -> String {
        format!("PREPARE {}({}) AS {}", self.name, self.params, self.sql)
    }

    fn execute_sql(&self, args: &[Literal]) -> String {
        format!("EXECUTE {}({})", self.name, render(args))
    }
}

fn begin_statement(tenant: TenantId, user: Option<UserId>) -> String {
    format!("BEGIN; {}", set_statement(tenant, user))
}

/// Both values are `Uuid`s: rendering them is safe (see above).
fn set_statement(tenant: TenantId, user: Option<UserId>) -> String {
    match user {
        Some(user) => format!("SET LOCAL app.tenant_id = '{}'; SET LOCAL app.user_id = '{}'", tenant.0, user.0),
        None => format!("SET LOCAL app.tenant_id = '{}'", tenant.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_statements_render_only_ids_numbers_and_null() {
        let hot = HotStatement { name: "rg_x", params: "uuid, uuid, bigint", sql: "SELECT $1, $2, $3" };
        assert_eq!(hot.prepare_sql(), "PREPARE rg_x(uuid, uuid, bigint) AS SELECT $1, $2, $3");
        let sql = hot.execute_sql(&[Literal::Uuid(Uuid::nil()), Literal::Null, Literal::Int(21)]);
        assert_eq!(sql, "EXECUTE rg_x('00000000-0000-0000-0000-000000000000', NULL, 21)");
    }
}
