//! `--database-url`: benchmark against a PostgreSQL server someone else runs — a plain one, or
//! a Citus coordinator with its workers (docs/citus.md, `scripts/citus-dev.sh`) — instead of
//! the harness's own throwaway cluster.
//!
//! The URL names a superuser and a maintenance database (`postgres`). The harness makes a
//! database of its own there (`rowguard_bench`, dropped first if a previous run left it), with
//! the service's roles, and migrates it the way `rowguard migrate` does — which distributes
//! the tables when the server runs Citus. The roles are the server's: their passwords are set
//! by this run, so point it at a server kept for benchmarks, not at one a service uses.
//!
//! On Citus a database is not a cluster-wide object until Citus makes it one: the database is
//! created on every node (`citus.enable_create_database_propagation`), the extension created
//! in it on each, and the workers registered in its metadata — what the integration tests do
//! for `ROWGUARD_TEST_CITUS_URL`.

use std::str::FromStr;

use anyhow::Context;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use rowguard::db::APP_ROLE;
use rowguard::migrate;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, Connection, Executor};

/// What a password or a socket path keeps unescaped in a URL: RFC 3986's unreserved
/// characters, and `/` (a socket directory reads better so, and sqlx takes it either way).
const URL_PART: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');

/// The benchmark's database on the external server.
pub const DATABASE: &str = "rowguard_bench";

/// The server's flavour, as the harness prints it beside the figures.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    Postgres,
    /// A coordinator and this many workers.
    Citus(usize),
}

impl std::fmt::Display for Flavour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Flavour::Postgres => write!(f, "plain PostgreSQL"),
            Flavour::Citus(workers) => write!(f, "Citus, a coordinator and {workers} workers"),
        }
    }
}

/// The prepared database: its superuser and app-role URLs, and what kind of server it is on.
pub struct Prepared {
    pub admin_url: String,
    pub app_url: String,
    pub flavour: Flavour,
}

/// Make `rowguard_bench` on the server behind `url` (a superuser URL of its maintenance
/// database), bootstrap and migrate it.
pub async fn prepare(url: &str) -> anyhow::Result<Prepared> {
    let maintenance = PgConnectOptions::from_str(url).context("--database-url is not a PostgreSQL URL")?;
    let mut conn = PgConnection::connect_with(&maintenance).await.context("connecting to --database-url")?;
    let superuser: bool =
        sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetch_one(&mut conn).await?;
    anyhow::ensure!(superuser, "--database-url must name a superuser (it creates a database and the service's roles)");
    let workers = citus_workers(&mut conn).await?;
    let flavour = if workers.is_empty() { Flavour::Postgres } else { Flavour::Citus(workers.len()) };
    if !workers.is_empty() {
        conn.execute("SET citus.enable_create_database_propagation = on").await?;
    }
    conn.execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")))
        .await
        .context("dropping the previous run's database")?;
    conn.close().await?;

    let app_password = rowguard::cluster::random_secret();
    let with_db = |user: &str, password: Option<&str>| {
        let mut options = maintenance.clone().database(DATABASE).username(user);
        if let Some(password) = password {
            options = options.password(password);
        }
        options
    };
    let admin = with_db(maintenance.get_username(), None);
    let admin_url = options_url(&admin, url_password(url).as_deref());
    let app_url = options_url(&with_db(APP_ROLE, Some(&app_password)), Some(&app_password));

    if workers.is_empty() {
        // Creates the roles and the database (owned by the owner role), as `rowguard migrate`.
        migrate::create_roles_and_database(&admin_url, &app_password).await?;
    } else {
        // The roles first, from the maintenance database (Citus propagates them); then the
        // database on every node, the extension in it on each, and the workers registered.
        migrate::create_roles_and_database(url, &app_password).await?;
        let mut coordinator = PgConnection::connect_with(&maintenance).await?;
        coordinator.execute("SET citus.enable_create_database_propagation = on").await?;
        coordinator.execute(AssertSqlSafe(format!("CREATE DATABASE {DATABASE} OWNER rowguard_owner"))).await?;
        coordinator.close().await?;
        for (host, port) in &workers {
            let options = admin.clone().host(host).port(u16::try_from(*port)?);
            let mut worker = PgConnection::connect_with(&options)
                .await
                .with_context(|| format!("connecting to the worker {host}:{port}"))?;
            worker.execute("CREATE EXTENSION IF NOT EXISTS citus").await?;
            worker.close().await?;
        }
        let mut db = PgConnection::connect_with(&admin).await?;
        db.execute("CREATE EXTENSION IF NOT EXISTS citus").await?;
        sqlx::query("SELECT citus_set_coordinator_host($1, $2)")
            .bind(admin.get_host())
            .bind(i32::from(admin.get_port()))
            .execute(&mut db)
            .await?;
        for (host, port) in &workers {
            sqlx::query("SELECT citus_add_node($1, $2)").bind(host).bind(port).execute(&mut db).await?;
        }
        db.close().await?;
    }
    Ok(Prepared { admin_url, app_url, flavour })
}

/// The server's durability settings, as the harness's heading names them.
pub async fn durability(admin_url: &str) -> anyhow::Result<String> {
    let mut conn = PgConnection::connect(admin_url).await?;
    let (fsync, commit): (String, String) =
        sqlx::query_as("SELECT current_setting('fsync'), current_setting('synchronous_commit')")
            .fetch_one(&mut conn)
            .await?;
    conn.close().await?;
    Ok(format!("fsync={fsync}, synchronous_commit={commit}"))
}

/// The workers a Citus coordinator lists in its maintenance database (none on plain
/// PostgreSQL, or on a server with the extension but no workers).
async fn citus_workers(conn: &mut PgConnection) -> anyhow::Result<Vec<(String, i32)>> {
    let has_citus: bool = sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus')")
        .fetch_one(&mut *conn)
        .await?;
    if !has_citus {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_as(
        "SELECT nodename::text, nodeport FROM pg_dist_node WHERE groupid <> 0 AND noderole = 'primary' ORDER BY 1, 2",
    )
    .fetch_all(&mut *conn)
    .await?)
}

/// A URL for `options` (sqlx's options do not print one back). A Unix-socket host goes in the
/// query string, as libpq and sqlx read it.
fn options_url(options: &PgConnectOptions, password: Option<&str>) -> String {
    let user = options.get_username();
    let userinfo = match password {
        Some(password) => format!("{user}:{}", percent(password)),
        None => user.to_string(),
    };
    let db = options.get_database().unwrap_or(DATABASE);
    match options.get_socket() {
        Some(dir) => {
            let dir = percent(&dir.to_string_lossy());
            format!("postgres://{userinfo}@localhost:{}/{db}?host={dir}", options.get_port())
        }
        None => format!("postgres://{userinfo}@{}:{}/{db}", options.get_host(), options.get_port()),
    }
}

/// The password in a URL, decoded.
fn url_password(url: &str) -> Option<String> {
    let authority = url.split_once("://")?.1.split(['/', '?']).next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    Some(unpercent(password))
}

fn percent(s: &str) -> String {
    utf8_percent_encode(s, URL_PART).to_string()
}

fn unpercent(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_round_trip_through_the_options() {
        let url = "postgres://postgres:p%40ss@127.0.0.1:9700/postgres";
        assert_eq!(url_password(url).as_deref(), Some("p@ss"));
        let options = PgConnectOptions::from_str(url).unwrap().database(DATABASE);
        assert_eq!(options_url(&options, Some("p@ss")), "postgres://postgres:p%40ss@127.0.0.1:9700/rowguard_bench");
        let socket = PgConnectOptions::from_str("postgres://u@localhost:5432/postgres?host=/tmp/x y").unwrap();
        let back = options_url(&socket, None);
        assert_eq!(back, "postgres://u@localhost:5432/postgres?host=/tmp/x%20y");
        let socket = PgConnectOptions::from_str(&back).unwrap();
        assert_eq!(socket.get_socket().map(|p| p.to_string_lossy().into_owned()).as_deref(), Some("/tmp/x y"));
    }
}
