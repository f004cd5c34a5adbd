//! The tenant transaction handle: the one place that sets the tenant (invariant 3).
//! Everything a request does with tenant data goes through a `TenantTx`.

use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{AssertSqlSafe, Postgres, Transaction};
use std::net::IpAddr;

use uuid::Uuid;

use super::Database;
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

impl TenantTx<'static> {
    /// Open a tenant transaction that also records who acts, for the audit trail's triggers:
    /// the same single statement as `begin`, with more transaction-local settings.
    pub async fn begin_as(db: &Database, tenant: TenantId, actor: &Actor) -> Result<TenantTx<'static>, sqlx::Error> {
        let statement = format!("{}{}", begin_statement(tenant, actor.user), actor.settings());
        let tx = db.pool.begin_with(AssertSqlSafe(statement)).await?;
        Ok(TenantTx { tx, tenant })
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

/// A value that may be rendered into SQL text: uuids and integers cannot carry SQL, and
/// nothing else is representable here.
#[derive(Debug, Clone, Copy)]
pub enum Literal {
    Uuid(Uuid),
    Int(i64),
    Null,
}

impl TenantTx<'static> {
    /// A read-only statement in ONE round trip: `BEGIN; SET LOCAL …; <select>; COMMIT` sent as
    /// a single simple-protocol message, with `$n` in `select` replaced by `args[n-1]`
    /// rendered as literals. The tenant is still set transaction-locally by the same
    /// statement text as `begin`; only the round trips differ (1 instead of 3).
    ///
    /// For statements whose every parameter is an id or a number (get by id, list pages).
    /// Anything carrying request text must use `begin` and bind parameters.
    pub async fn read_once(
        db: &Database,
        tenant: TenantId,
        user: Option<UserId>,
        select: &'static str,
        args: &[Literal],
    ) -> Result<Vec<PgRow>, sqlx::Error> {
        let text = format!("{}; {}; COMMIT", begin_statement(tenant, user), render(select, args)?);
        let mut conn = db.pool.acquire().await?;
        let result = sqlx::raw_sql(AssertSqlSafe(text)).fetch_all(&mut *conn).await;
        if result.is_err() {
            // A failed statement leaves the explicit transaction open and aborted: end it
            // before the connection goes back to the pool.
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
        }
        result
    }
}

/// Replace `$1`…`$9` in `sql` with the literals.
fn render(sql: &str, args: &[Literal]) -> Result<String, sqlx::Error> {
    let mut out = String::with_capacity(sql.len() + args.len() * 40);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        let digit = chars.peek().and_then(|d| d.to_digit(10));
        match (c, digit) {
            ('$', Some(n)) => {
                chars.next();
                let arg = (n as usize)
                    .checked_sub(1)
                    .and_then(|i| args.get(i))
                    .ok_or_else(|| sqlx::Error::Protocol(format!("read_once: no argument for ${n}")))?;
                match arg {
                    Literal::Uuid(u) => out.push_str(&format!("'{u}'::uuid")),
                    Literal::Int(i) => out.push_str(&i.to_string()),
                    Literal::Null => out.push_str("NULL"),
                }
            }
            _ => out.push(c),
        }
    }
    Ok(out)
}

fn begin_statement(tenant: TenantId, user: Option<UserId>) -> String {
    // Both values are `Uuid`s: rendering them is safe (see above).
    match user {
        Some(user) => format!("BEGIN; SET LOCAL app.tenant_id = '{}'; SET LOCAL app.user_id = '{}'", tenant.0, user.0),
        None => format!("BEGIN; SET LOCAL app.tenant_id = '{}'", tenant.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_only_ids_numbers_and_null() {
        let id = Uuid::nil();
        let sql = render(
            "SELECT 1 WHERE a = $1 AND ($2::uuid IS NULL OR b > $2) LIMIT $3",
            &[Literal::Uuid(id), Literal::Null, Literal::Int(21)],
        );
        assert_eq!(
            sql.ok().as_deref(),
            Some(
                "SELECT 1 WHERE a = '00000000-0000-0000-0000-000000000000'::uuid AND (NULL::uuid IS NULL OR b > NULL) LIMIT 21"
            )
        );
        assert!(render("SELECT $2", &[Literal::Int(1)]).is_err());
    }
}
