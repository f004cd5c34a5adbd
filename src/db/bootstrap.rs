//! Bootstrap and migrations, run over the admin connection: create the three roles of
//! invariant 5 and the database, then apply `sql/` (schema) and `policies/` (RLS) as the
//! owner role, each folder with its own history table. Never used by request handling.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

use super::{APP_ROLE, OWNER_ROLE, PLATFORM_LOGIN_ROLE, PLATFORM_ROLE};

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

/// Create the roles (idempotent; the app role's password is set to `app_password` each
/// time) and the database named in `admin_url` if it does not exist. True when it created it.
pub async fn create_roles_and_database(admin_url: &str, app_password: &str) -> Result<bool, BootstrapError> {
    let target = PgConnectOptions::from_str(admin_url)?;
    let db_name = target.get_database().unwrap_or("rowguard").to_string();
    let mut conn = PgConnection::connect_with(&target.clone().database("postgres")).await?;
    let roles = format!(
        "DO $$ BEGIN
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{OWNER_ROLE}') THEN
             CREATE ROLE {OWNER_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS;
           END IF;
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{PLATFORM_ROLE}') THEN
             CREATE ROLE {PLATFORM_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS;
           END IF;
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
             CREATE ROLE {APP_ROLE} LOGIN;
           END IF;
         END $$;
         ALTER ROLE {APP_ROLE} WITH LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION
           PASSWORD '{password}';
         ALTER ROLE {APP_ROLE} SET statement_timeout = '5s';
         ALTER ROLE {APP_ROLE} SET idle_in_transaction_session_timeout = '10s';
         GRANT {OWNER_ROLE}, {PLATFORM_ROLE} TO CURRENT_USER;",
        password = app_password.replace('\'', "''"),
    );
    conn.execute(AssertSqlSafe(roles)).await?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)")
        .bind(&db_name)
        .fetch_one(&mut conn)
        .await?;
    if !exists {
        let ident = quote_ident(&db_name);
        conn.execute(AssertSqlSafe(format!("CREATE DATABASE {ident} OWNER {OWNER_ROLE}"))).await?;
        conn.execute(AssertSqlSafe(format!(
            "REVOKE ALL ON DATABASE {ident} FROM PUBLIC; GRANT CONNECT ON DATABASE {ident} TO {APP_ROLE}"
        )))
        .await?;
    }
    conn.close().await?;
    Ok(!exists)
}

/// Create (or update) the service's platform login, `rowguard_platform_login`: LOGIN, with
/// `password`, NOSUPERUSER NOBYPASSRLS, a member of `rowguard_platform` and nothing else, and
/// allowed to connect to the database in `admin_url`. A role of its own rather than giving
/// the app role platform rights: no tenant request can then write the registry or read
/// operators' password hashes. Run after `create_roles_and_database` (idempotent).
pub async fn create_platform_login(admin_url: &str, password: &str) -> Result<(), BootstrapError> {
    let target = PgConnectOptions::from_str(admin_url)?;
    let db_name = target.get_database().unwrap_or("rowguard").to_string();
    let mut conn = PgConnection::connect_with(&target.clone().database("postgres")).await?;
    let sql = format!(
        "DO $$ BEGIN
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{PLATFORM_LOGIN_ROLE}') THEN
             CREATE ROLE {PLATFORM_LOGIN_ROLE} LOGIN;
           END IF;
         END $$;
         ALTER ROLE {PLATFORM_LOGIN_ROLE} WITH LOGIN INHERIT NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE
           NOREPLICATION PASSWORD '{password}';
         ALTER ROLE {PLATFORM_LOGIN_ROLE} SET statement_timeout = '60s';
         GRANT {PLATFORM_ROLE} TO {PLATFORM_LOGIN_ROLE};
         GRANT CONNECT ON DATABASE {db} TO {PLATFORM_LOGIN_ROLE};",
        password = password.replace('\'', "''"),
        db = quote_ident(&db_name),
    );
    conn.execute(AssertSqlSafe(sql)).await?;
    conn.close().await?;
    Ok(())
}

/// Apply pending schema migrations, then pending policy migrations, as the owner role.
/// Safe to run again; refuses when the database has migrations this binary does not know.
///
/// On Citus (the citus extension is installed in the database), also: before the
/// migrations, let the owner and platform roles log in, since Citus opens its connections
/// to the workers as the current role, `SET ROLE` included, and a NOLOGIN role is refused
/// there; after them, make platform tables reference tables and distribute tenant tables by
/// tenant_id (`citus::distribute`, idempotent).
pub async fn migrate(admin_url: &str) -> Result<MigrationReport, BootstrapError> {
    let mut admin = PgConnection::connect_with(&PgConnectOptions::from_str(admin_url)?).await?;
    let citus = super::citus::installed(&mut admin).await?;
    if citus {
        admin
            .execute(AssertSqlSafe(format!("ALTER ROLE {OWNER_ROLE} LOGIN; ALTER ROLE {PLATFORM_ROLE} LOGIN")))
            .await?;
    }
    let mut client = connect_tokio_postgres(admin_url).await?;
    // A later migration may create a trigger on a table that is distributed by then.
    let triggers = if citus { "SET citus.enable_unsafe_triggers = on;" } else { "" };
    client
        .batch_execute(&format!(
            "{triggers}
             SET ROLE {OWNER_ROLE};
             GRANT USAGE ON SCHEMA public TO {APP_ROLE}, {PLATFORM_ROLE};"
        ))
        .await?;
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
    client.batch_execute(&format!("GRANT SELECT ON {SCHEMA_HISTORY}, {POLICY_HISTORY} TO {APP_ROLE}")).await?;
    if citus {
        admin.execute(AssertSqlSafe(format!("SET ROLE {OWNER_ROLE}"))).await?;
        report.citus = Some(super::citus::distribute(&mut admin).await?);
    }
    admin.close().await?;
    Ok(report)
}

/// What `migrate` applied in this run.
#[derive(Debug, Default)]
pub struct MigrationReport {
    pub schema: Vec<String>,
    pub policies: Vec<String>,
    /// On Citus: what was distributed in this run.
    pub citus: Option<super::citus::CitusReport>,
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
