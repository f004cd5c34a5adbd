//! Bootstrap and migrations, run over the admin connection: create the three roles of
//! invariant 5 and the database, then apply `sql/` (schema) and `policies/` (RLS) as the
//! owner role, each folder with its own history table. Never used by request handling.

pub mod adopt;
pub mod citus;
pub mod operator;
pub mod statements;
pub mod status;

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

use crate::backend::Backend;
use crate::roles::{APP_ROLE, AUDIT_ROLE, JOBS_ROLE, OWNER_ROLE, PLATFORM_LOGIN_ROLE, PLATFORM_ROLE};

mod embedded {
    pub mod schema {
        refinery::embed_migrations!("sql");
    }
    pub mod policies {
        refinery::embed_migrations!("policies");
    }
}

pub const SCHEMA_HISTORY: &str = "rowguard_schema_history";
pub const POLICY_HISTORY: &str = "rowguard_policy_history";

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("migration connection: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("migrations: {0}")]
    Migration(#[from] refinery::Error),
    #[error("{0}")]
    Config(String),
}

/// The newest schema and policy migration versions this binary carries.
pub fn embedded_versions() -> (i32, i32) {
    let newest = |runner: refinery::Runner| runner.get_migrations().iter().map(|m| m.version()).max().unwrap_or(0);
    (newest(embedded::schema::migrations::runner()), newest(embedded::policies::migrations::runner()))
}

/// The migrations this binary carries, per folder, with the folder's history table
/// (`policies status` compares them with what a database has applied).
pub(super) fn embedded_folders() -> [(&'static str, &'static str, Vec<refinery::Migration>); 2] {
    [
        ("sql", SCHEMA_HISTORY, embedded::schema::migrations::runner().get_migrations().clone()),
        ("policies", POLICY_HISTORY, embedded::policies::migrations::runner().get_migrations().clone()),
    ]
}

/// The advisory lock space shared by every rowguard process (ASCII "rowg"). Two locks live in
/// it, taken with the two-key form so they can never be confused with the one-key form or
/// with each other:
/// - `ROLES`, taken in the `postgres` database, around role and database bootstrap. Roles are
///   cluster-wide and an advisory lock is scoped to the database it is taken in, so the lock
///   lives in the one database every rowguard of a cluster connects to, whatever its target.
/// - `MIGRATIONS`, taken in the target database, around `migrate`: per database, since the
///   history tables are, and also held when `migrate` is called on its own (tests, the bench).
///
/// Both are session-level (`pg_advisory_lock`): released when this process unlocks or its
/// connection ends, so a crashed command never leaves one behind. `bootstrap_and_migrate`
/// holds `ROLES` across the whole run and takes `MIGRATIONS` inside it; nothing takes them
/// the other way round, so they cannot deadlock. Without them, concurrent `tenants create`
/// (or `migrate`, or `serve` starts) collided on `ALTER ROLE` / `GRANT` ("tuple concurrently
/// updated") in about half of the runs.
const LOCK_SPACE: i32 = 0x726f_7767;
const ROLES: i32 = 1;
const MIGRATIONS: i32 = 2;

/// Roles, database and (when given) the platform login, then migrations, in one run that
/// holds the bootstrap lock throughout: what `rowguard migrate` and every command that may
/// meet a fresh database do. Returns whether it created the database, and what it applied.
pub async fn bootstrap_and_migrate(
    admin_url: &str,
    app_password: &str,
    platform_password: Option<&str>,
) -> Result<(bool, MigrationReport), BootstrapError> {
    let target = PgConnectOptions::from_str(admin_url)?;
    let db_name = target.get_database().unwrap_or("rowguard").to_string();
    let mut conn = lock_roles(&target).await?;
    let created = roles_and_database(&mut conn, &db_name, app_password).await?;
    if let Some(password) = platform_password {
        platform_login(&mut conn, &db_name, password).await?;
    }
    let report = migrate(admin_url).await?;
    unlock_roles(conn).await?;
    Ok((created, report))
}

/// Create the roles and the database named in `admin_url` if they do not exist, and bring the
/// app role in line (attributes, password `app_password`, settings), under the bootstrap lock.
/// True when it created the database.
pub async fn create_roles_and_database(admin_url: &str, app_password: &str) -> Result<bool, BootstrapError> {
    let target = PgConnectOptions::from_str(admin_url)?;
    let db_name = target.get_database().unwrap_or("rowguard").to_string();
    let mut conn = lock_roles(&target).await?;
    let created = roles_and_database(&mut conn, &db_name, app_password).await?;
    unlock_roles(conn).await?;
    Ok(created)
}

/// Create (or bring in line) the service's platform login, `rowguard_platform_login`: LOGIN,
/// with `password`, NOSUPERUSER NOBYPASSRLS, a member of `rowguard_platform` and nothing else,
/// and allowed to connect to the database in `admin_url`. A role of its own rather than giving
/// the app role platform rights: no tenant request can then write the registry or read
/// operators' password hashes. Run after `create_roles_and_database` (idempotent).
pub async fn create_platform_login(admin_url: &str, password: &str) -> Result<(), BootstrapError> {
    let target = PgConnectOptions::from_str(admin_url)?;
    let db_name = target.get_database().unwrap_or("rowguard").to_string();
    let mut conn = lock_roles(&target).await?;
    platform_login(&mut conn, &db_name, password).await?;
    unlock_roles(conn).await
}

/// A connection to the `postgres` database holding the `ROLES` lock (waiting for it).
async fn lock_roles(target: &PgConnectOptions) -> Result<PgConnection, BootstrapError> {
    let mut conn = PgConnection::connect_with(&target.clone().database("postgres")).await?;
    sqlx::query!("SELECT pg_advisory_lock($1, $2)", LOCK_SPACE, ROLES).execute(&mut conn).await?;
    Ok(conn)
}

async fn unlock_roles(mut conn: PgConnection) -> Result<(), BootstrapError> {
    sqlx::query_scalar!(r#"SELECT pg_advisory_unlock($1, $2) AS "unlocked!""#, LOCK_SPACE, ROLES)
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

/// A role as the catalog has it, for deciding what still needs doing.
#[derive(sqlx::FromRow)]
struct RoleState {
    rolsuper: bool,
    rolinherit: bool,
    rolcreaterole: bool,
    rolcreatedb: bool,
    rolcanlogin: bool,
    rolreplication: bool,
    rolbypassrls: bool,
    /// `name=value` per `ALTER ROLE … SET`.
    settings: Vec<String>,
}

impl RoleState {
    /// LOGIN, NOSUPERUSER, NOBYPASSRLS, NOCREATEDB, NOCREATEROLE, NOREPLICATION (and INHERIT
    /// when asked): what both service logins must be.
    fn is_plain_login(&self, inherit: bool) -> bool {
        self.rolcanlogin
            && !self.rolsuper
            && !self.rolbypassrls
            && !self.rolcreatedb
            && !self.rolcreaterole
            && !self.rolreplication
            && (!inherit || self.rolinherit)
    }

    fn has_setting(&self, setting: &str) -> bool {
        self.settings.iter().any(|s| s == setting)
    }
}

async fn role(conn: &mut PgConnection, name: &str) -> Result<Option<RoleState>, sqlx::Error> {
    sqlx::query_as(
        "SELECT rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin,
                rolreplication, rolbypassrls, coalesce(rolconfig, '{}') AS settings
           FROM pg_roles WHERE rolname = $1",
    )
    .bind(name)
    .fetch_optional(conn)
    .await
}

/// Whether `member` is a direct member of `group` (a superuser counts as a member of every
/// role for `pg_has_role`, so that would hide a grant a non-superuser admin still needs).
async fn direct_member(conn: &mut PgConnection, member: &str, group: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT FROM pg_auth_members m
                          JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles r ON r.oid = m.member
                         WHERE g.rolname = $2 AND r.rolname = $1)",
    )
    .bind(member)
    .bind(group)
    .fetch_one(conn)
    .await
}

/// Whether `role` already has `password`. Only a superuser may read the stored verifier; for
/// anyone else this says no and the password is set again, as it always was. Skipping a
/// password that is already in place also keeps it out of a server log that records DDL.
async fn has_password(conn: &mut PgConnection, role: &str, password: &str) -> Result<bool, sqlx::Error> {
    let superuser: bool = sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        .fetch_optional(&mut *conn)
        .await?
        .unwrap_or(false);
    if !superuser {
        return Ok(false);
    }
    let stored: Option<Option<String>> = sqlx::query_scalar("SELECT rolpassword FROM pg_authid WHERE rolname = $1")
        .bind(role)
        .fetch_optional(conn)
        .await?;
    Ok(stored.flatten().is_some_and(|verifier| scram_verifier_matches(&verifier, password)))
}

/// Whether a PostgreSQL SCRAM-SHA-256 verifier
/// (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, RFC 5802 / RFC 7677) was
/// made from `password`. Anything else (an md5 hash, a malformed verifier, a password that
/// SASLprep would have changed) says no, which only means the password is set again.
fn scram_verifier_matches(verifier: &str, password: &str) -> bool {
    use base64::Engine;
    use pbkdf2::hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};
    let engine = base64::engine::general_purpose::STANDARD;
    let Some(rest) = verifier.strip_prefix("SCRAM-SHA-256$") else { return false };
    let Some((params, keys)) = rest.split_once('$') else { return false };
    let (Some((iterations, salt)), Some((stored_key, server_key))) = (params.split_once(':'), keys.split_once(':'))
    else {
        return false;
    };
    let (Ok(iterations), Ok(salt), Ok(stored_key), Ok(server_key)) =
        (iterations.parse::<u32>(), engine.decode(salt), engine.decode(stored_key), engine.decode(server_key))
    else {
        return false;
    };
    // PostgreSQL's default is 4096; refuse to spend long on a damaged value.
    if iterations == 0 || iterations > 1_000_000 || !password.is_ascii() {
        return false;
    }
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, iterations, &mut salted);
    let keyed = |label: &[u8]| {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&salted).ok()?;
        mac.update(label);
        Some(mac.finalize().into_bytes().to_vec())
    };
    let (Some(client_key), Some(expected_server_key)) = (keyed(b"Client Key"), keyed(b"Server Key")) else {
        return false;
    };
    let expected_stored_key = Sha256::digest(&client_key).to_vec();
    use subtle::ConstantTimeEq;
    bool::from(expected_stored_key.ct_eq(&stored_key)) && bool::from(expected_server_key.ct_eq(&server_key))
}

/// Run `statements` (built from constants and checked values only) as one simple query.
async fn run(conn: &mut PgConnection, statements: Vec<String>) -> Result<(), sqlx::Error> {
    if statements.is_empty() {
        return Ok(());
    }
    conn.execute(AssertSqlSafe(statements.join(";\n"))).await.map(|_| ())
}

/// The roles of invariant 5 (and the audit role that owns the append path), then the
/// database. Each statement runs only when the catalog says it is still needed: a command run
/// on a set-up cluster changes nothing, and so cannot collide with anything.
async fn roles_and_database(
    conn: &mut PgConnection,
    db_name: &str,
    app_password: &str,
) -> Result<bool, BootstrapError> {
    let mut todo = Vec::new();
    for group in [OWNER_ROLE, PLATFORM_ROLE, AUDIT_ROLE, JOBS_ROLE] {
        if role(conn, group).await?.is_none() {
            todo.push(format!("CREATE ROLE {group} NOLOGIN NOSUPERUSER NOBYPASSRLS"));
        }
    }
    match role(conn, APP_ROLE).await? {
        None => todo.push(format!("CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS")),
        Some(app) if !app.is_plain_login(false) => todo.push(format!(
            "ALTER ROLE {APP_ROLE} WITH LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION"
        )),
        Some(_) => {}
    }
    run(conn, std::mem::take(&mut todo)).await?;
    if !has_password(conn, APP_ROLE, app_password).await? {
        todo.push(format!("ALTER ROLE {APP_ROLE} PASSWORD {}", quote_literal(app_password)));
    }
    let app = role(conn, APP_ROLE).await?;
    for (name, value) in [("statement_timeout", "5s"), ("idle_in_transaction_session_timeout", "10s")] {
        if !app.as_ref().is_some_and(|a| a.has_setting(&format!("{name}={value}"))) {
            todo.push(format!("ALTER ROLE {APP_ROLE} SET {name} = '{value}'"));
        }
    }
    // The admin may then act as the owner (migrations) and the platform role (the CLI); the
    // owner may hand the append path's functions to the audit role (sql/V17) and the outbox's
    // scheduling functions to the jobs role (sql/V25).
    let admin: String = sqlx::query_scalar("SELECT current_user::text").fetch_one(&mut *conn).await?;
    for (member, group, grantee) in [
        (admin.as_str(), OWNER_ROLE, "CURRENT_USER"),
        (admin.as_str(), PLATFORM_ROLE, "CURRENT_USER"),
        (OWNER_ROLE, AUDIT_ROLE, OWNER_ROLE),
        (OWNER_ROLE, JOBS_ROLE, OWNER_ROLE),
    ] {
        if !direct_member(conn, member, group).await? {
            todo.push(format!("GRANT {group} TO {grantee}"));
        }
    }
    run(conn, todo).await?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)")
        .bind(db_name)
        .fetch_one(&mut *conn)
        .await?;
    if !exists {
        let ident = quote_ident(db_name);
        conn.execute(AssertSqlSafe(format!("CREATE DATABASE {ident} OWNER {OWNER_ROLE}"))).await?;
        conn.execute(AssertSqlSafe(format!(
            "REVOKE ALL ON DATABASE {ident} FROM PUBLIC; GRANT CONNECT ON DATABASE {ident} TO {APP_ROLE}"
        )))
        .await?;
    }
    Ok(!exists)
}

async fn platform_login(conn: &mut PgConnection, db_name: &str, password: &str) -> Result<(), BootstrapError> {
    let mut todo = Vec::new();
    match role(conn, PLATFORM_LOGIN_ROLE).await? {
        None => todo.push(format!("CREATE ROLE {PLATFORM_LOGIN_ROLE} LOGIN INHERIT NOSUPERUSER NOBYPASSRLS")),
        Some(login) if !login.is_plain_login(true) => todo.push(format!(
            "ALTER ROLE {PLATFORM_LOGIN_ROLE} WITH LOGIN INHERIT NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE \
             NOREPLICATION"
        )),
        Some(_) => {}
    }
    run(conn, std::mem::take(&mut todo)).await?;
    if !has_password(conn, PLATFORM_LOGIN_ROLE, password).await? {
        todo.push(format!("ALTER ROLE {PLATFORM_LOGIN_ROLE} PASSWORD {}", quote_literal(password)));
    }
    if !role(conn, PLATFORM_LOGIN_ROLE).await?.is_some_and(|l| l.has_setting("statement_timeout=60s")) {
        todo.push(format!("ALTER ROLE {PLATFORM_LOGIN_ROLE} SET statement_timeout = '60s'"));
    }
    if !direct_member(conn, PLATFORM_LOGIN_ROLE, PLATFORM_ROLE).await? {
        todo.push(format!("GRANT {PLATFORM_ROLE} TO {PLATFORM_LOGIN_ROLE}"));
    }
    let may_connect: bool = sqlx::query_scalar("SELECT has_database_privilege($1::name, $2::name, 'CONNECT')")
        .bind(PLATFORM_LOGIN_ROLE)
        .bind(db_name)
        .fetch_one(&mut *conn)
        .await?;
    if !may_connect {
        todo.push(format!("GRANT CONNECT ON DATABASE {} TO {PLATFORM_LOGIN_ROLE}", quote_ident(db_name)));
    }
    run(conn, todo).await?;
    Ok(())
}

/// Apply pending schema migrations, then pending policy migrations, as the owner role, holding
/// the database's `MIGRATIONS` lock (a second process waits, then finds nothing pending).
/// Safe to run again; refuses when the database has migrations this binary does not know.
///
/// On Citus (the citus extension is installed in the database), also: before the
/// migrations, let the owner, platform and audit roles log in, since Citus opens its
/// connections to the workers as the current role — `SET ROLE` included, and inside a
/// SECURITY DEFINER function that is the function's owner — and a NOLOGIN role is refused
/// there; after them, make platform tables reference tables and distribute tenant tables by
/// tenant_id (`citus::distribute`, idempotent).
pub async fn migrate(admin_url: &str) -> Result<MigrationReport, BootstrapError> {
    let mut admin = PgConnection::connect_with(&PgConnectOptions::from_str(admin_url)?).await?;
    sqlx::query!("SELECT pg_advisory_lock($1, $2)", LOCK_SPACE, MIGRATIONS).execute(&mut admin).await?;
    let backend = Backend::detect(&mut admin).await?;
    let citus = backend == Backend::Citus;
    if citus {
        let nologin: Vec<String> =
            sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE rolname = ANY($1) AND NOT rolcanlogin")
                .bind([OWNER_ROLE, PLATFORM_ROLE, AUDIT_ROLE, JOBS_ROLE])
                .fetch_all(&mut admin)
                .await?;
        // Names from the constants above, as the catalog returned them.
        run(&mut admin, nologin.iter().map(|r| format!("ALTER ROLE {} LOGIN", quote_ident(r))).collect()).await?;
    }
    let mut client = connect_tokio_postgres(admin_url).await?;
    // A later migration may create a trigger on a table that is distributed by then.
    let triggers = if citus { "SET citus.enable_unsafe_triggers = on;" } else { "" };
    client.batch_execute(&format!("{triggers} SET ROLE {OWNER_ROLE};")).await?;
    // Only when missing: a GRANT rewrites the catalog row even when it changes nothing.
    let usage = client
        .query_one(
            "SELECT has_schema_privilege($1::name, 'public', 'USAGE') AND has_schema_privilege($2::name, 'public', 'USAGE')",
            &[&APP_ROLE, &PLATFORM_ROLE],
        )
        .await?;
    if !usage.get::<_, bool>(0) {
        client.batch_execute(&format!("GRANT USAGE ON SCHEMA public TO {APP_ROLE}, {PLATFORM_ROLE}")).await?;
    }
    let mut report = MigrationReport::default();
    for (runner, table, applied) in [
        (embedded::schema::migrations::runner(), SCHEMA_HISTORY, &mut report.schema),
        (embedded::policies::migrations::runner(), POLICY_HISTORY, &mut report.policies),
    ] {
        let mut runner = runner.set_abort_missing(true).set_grouped(true);
        runner.set_migration_table_name(table);
        let done = runner.run_async(&mut client).await?;
        applied.extend(done.applied_migrations().iter().map(|m| m.to_string()));
    }
    let readable = client
        .query_one(
            &format!(
                "SELECT has_table_privilege($1::name, '{SCHEMA_HISTORY}', 'SELECT')
                    AND has_table_privilege($1::name, '{POLICY_HISTORY}', 'SELECT')"
            ),
            &[&APP_ROLE],
        )
        .await?;
    if !readable.get::<_, bool>(0) {
        client.batch_execute(&format!("GRANT SELECT ON {SCHEMA_HISTORY}, {POLICY_HISTORY} TO {APP_ROLE}")).await?;
    }
    if citus {
        admin.execute(AssertSqlSafe(format!("SET ROLE {OWNER_ROLE}"))).await?;
        report.citus = Some(citus::distribute(&mut admin).await?);
    }
    // Closing ends the session, and with it the lock.
    admin.close().await?;
    Ok(report)
}

/// What `migrate` applied in this run.
#[derive(Debug, Default)]
pub struct MigrationReport {
    pub schema: Vec<String>,
    pub policies: Vec<String>,
    /// On Citus: what was distributed in this run.
    pub citus: Option<citus::CitusReport>,
}

/// refinery drives tokio-postgres. Read the same URL sqlx reads, keeping a Unix socket
/// (`?host=/dir`) as the only host so nothing is tried over TCP first.
async fn connect_tokio_postgres(url: &str) -> Result<tokio_postgres::Client, BootstrapError> {
    let parsed = tokio_postgres::Config::from_str(url)?;
    let mut config = tokio_postgres::Config::new();
    let unix: Vec<_> = parsed
        .get_hosts()
        .iter()
        .filter_map(|h| match h {
            tokio_postgres::config::Host::Unix(p) => Some(p.clone()),
            _ => None,
        })
        .collect();
    if unix.is_empty() {
        config = parsed.clone();
    } else {
        for path in unix {
            config.host_path(path);
        }
        if let Some(port) = parsed.get_ports().last() {
            config.port(*port);
        }
        if let Some(user) = parsed.get_user() {
            config.user(user);
        }
        if let Some(pw) = parsed.get_password() {
            config.password(pw);
        }
        if let Some(db) = parsed.get_dbname() {
            config.dbname(db);
        }
    }
    config.application_name("rowguard-migrate");
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "migration connection closed with an error");
        }
    });
    Ok(client)
}

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A SQL string literal (`ALTER ROLE … PASSWORD` takes no bind parameter).
pub(crate) fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made with Python's hashlib and hmac from "correct horse", RFC 5802's recipe, 4096
    /// iterations: an implementation other than ours.
    const VERIFIER: &str = "SCRAM-SHA-256$4096:cm93Z3VhcmQtc2FsdC0xNg==$\
                            txUiPemU5Ed2O2xEURXHc1w8iOFnjagey2YG7vYbQiA=:C7EaT/BJAW8QQCi0+cMoK6ACH3OCSMH2O4Mle2ONnvg=";

    #[test]
    fn a_scram_verifier_matches_its_password_only() {
        assert!(scram_verifier_matches(VERIFIER, "correct horse"));
        assert!(!scram_verifier_matches(VERIFIER, "correct horsE"));
        assert!(!scram_verifier_matches(VERIFIER, ""));
    }

    #[test]
    fn anything_but_a_well_formed_scram_verifier_does_not_match() {
        for stored in [
            "md5a3556571e93b0d20722ba62be61e8c2d",
            "SCRAM-SHA-256$4096:cm93Z3VhcmQtc2FsdC0xNg==",
            "SCRAM-SHA-256$0:cm93Z3VhcmQtc2FsdC0xNg==$txUiPemU5Ed2O2xEURXHc1w8iOFnjagey2YG7vYbQiA=:AA==",
            "SCRAM-SHA-256$99999999:AA==$AA==:AA==",
            "",
        ] {
            assert!(!scram_verifier_matches(stored, "correct horse"), "{stored}");
        }
    }
}
