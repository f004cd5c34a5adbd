//! CLI commands and service instances run side by side: the real `rowguard` binary, started
//! several times at once against one database, always succeeds (bootstrap and migrations are
//! serialised by advisory locks and change nothing that is already in place).

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use rowguard::db::{APP_ROLE, AUDIT_ROLE, OWNER_ROLE, PLATFORM_LOGIN_ROLE, PLATFORM_ROLE};
use rowguard::migrate;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::{TestApp, cli_env_for, scratch_dir, spawn_app, spawn_installed_app, url_password};

/// Long enough for a debug binary to bootstrap and migrate a fresh database while others wait
/// for the lock; short enough that a deadlock fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(120);

/// `rowguard ARGS` against the database of `env`, killed if it is dropped before it exits
/// (a failed assertion or a timeout never leaves one behind).
pub(crate) fn rowguard(env: &[(&'static str, String)], data_dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rowguard"));
    command
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("ROWGUARD_DATA_DIR", data_dir)
        .env("ROWGUARD_LOG", "warn")
        .env("ROWGUARD_OWNER_PASSWORD", "owner-password-1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Run every command at once; each one's output, in order.
async fn all_at_once(commands: Vec<Command>) -> Vec<Output> {
    let children: Vec<Child> =
        commands.into_iter().map(|mut c| c.spawn().expect("start the rowguard binary")).collect();
    let outputs = futures_util::future::join_all(children.into_iter().map(Child::wait_with_output));
    let outputs = tokio::time::timeout(PATIENCE, outputs).await.expect("every command finishes in time");
    outputs.into_iter().map(|o| o.expect("wait for rowguard")).collect()
}

#[track_caller]
fn assert_all_succeeded(what: &str, outputs: &[Output]) {
    let failed: Vec<String> = outputs
        .iter()
        .enumerate()
        .filter(|(_, o)| !o.status.success())
        .map(|(i, o)| format!("#{i} ({}): {}", o.status, String::from_utf8_lossy(&o.stderr)))
        .collect();
    assert!(failed.is_empty(), "{what}: {} of {} failed:\n{}", failed.len(), outputs.len(), failed.join("\n"));
}

#[tokio::test]
async fn eight_tenants_created_at_once_all_succeed() {
    let app = spawn_installed_app().await;
    let data_dir = scratch_dir("cli-create");
    let commands = (0..8)
        .map(|i| {
            let slug = format!("side{i}");
            let email = format!("owner@{slug}.test");
            rowguard(
                &app.cli_env(),
                &data_dir,
                &["tenants", "create", "--slug", &slug, "--name", &slug, "--owner-email", &email],
            )
        })
        .collect();
    let outputs = all_at_once(commands).await;
    assert_all_succeeded("tenants create", &outputs);
    let mut su = app.superuser_connection().await;
    let made: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants WHERE slug LIKE 'side_'")
        .fetch_one(&mut su)
        .await
        .expect("count tenants");
    assert_eq!(made, 8);
}

/// On a database that does not exist yet, so the four really race to create and migrate it:
/// exactly one applies the migrations, the others wait and find nothing pending.
#[tokio::test]
async fn four_migrations_at_once_all_succeed_and_one_applies() {
    let _app = spawn_app().await; // the test cluster, and a database to compare with
    let fresh = format!("t_{}_fresh", uuid::Uuid::now_v7().simple());
    let env = cli_env_for(&fresh);
    let data_dir = scratch_dir("cli-migrate");
    let outputs = all_at_once((0..4).map(|_| rowguard(&env, &data_dir, &["migrate"])).collect()).await;
    assert_all_succeeded("migrate", &outputs);
    let applied = outputs
        .iter()
        .filter(|o| !String::from_utf8_lossy(&o.stdout).contains("schema migrations applied: none pending"))
        .count();
    assert_eq!(applied, 1, "{:?}", outputs.iter().map(|o| String::from_utf8_lossy(&o.stdout)).collect::<Vec<_>>());
}

/// A `rowguard serve` child, killed when dropped.
struct Server {
    child: Child,
    address: String,
    /// What it printed from its address on, up to the line that ends the welcome.
    welcome: String,
}

/// The last line of the welcome `serve` prints once it listens.
const WELCOME_ENDS: &str = "  (or address a tenant by host";

impl Server {
    /// Start it and read its address from the line it prints once it listens, then the rest
    /// of its welcome (printed at once; waited for briefly, so a changed welcome cannot hang).
    async fn start(mut command: Command) -> Result<Server, String> {
        let mut child = command.env("ROWGUARD_LISTEN", "127.0.0.1:0").spawn().map_err(|e| e.to_string())?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let address = loop {
            match lines.next_line().await {
                Ok(Some(line)) => {
                    if let Some(rest) = line.strip_prefix("rowguard listening on http://") {
                        break rest.split_whitespace().next().unwrap_or_default().to_string();
                    }
                }
                Ok(None) | Err(_) => {
                    let mut stderr = String::new();
                    if let Some(mut err) = child.stderr.take() {
                        let _ = err.read_to_string(&mut stderr).await;
                    }
                    return Err(format!("serve exited before listening: {stderr}"));
                }
            }
        };
        let mut welcome = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while let Ok(Some(line)) = lines.next_line().await {
                welcome.push_str(&line);
                welcome.push('\n');
                if line.starts_with(WELCOME_ENDS) {
                    break;
                }
            }
        })
        .await;
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Server { child, address, welcome })
    }

    /// The status line of `GET path`, over a plain connection.
    async fn get(&self, path: &str) -> std::io::Result<String> {
        let mut stream = tokio::net::TcpStream::connect(&self.address).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await?;
        Ok(answer.lines().next().unwrap_or_default().to_string())
    }
}

impl Server {
    /// Polls `/readyz` until it answers 200 (database reachable, migrations current).
    async fn assert_ready(&self) {
        let ready = tokio::time::timeout(PATIENCE, async {
            loop {
                match self.get("/readyz").await {
                    Ok(status) if status.starts_with("HTTP/1.1 200") => return,
                    _ => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        })
        .await;
        assert!(ready.is_ok(), "{} never became ready", self.address);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

#[tokio::test]
async fn two_services_started_at_the_same_moment_both_come_up() {
    let app = spawn_installed_app().await;
    // One data directory for both, as two instances on one host would share it: the
    // development keys in it are made once, whichever instance gets there first.
    let data_dir = scratch_dir("cli-serve");
    let (first, second) = tokio::join!(
        Server::start(rowguard(&app.cli_env(), &data_dir, &["serve"])),
        Server::start(rowguard(&app.cli_env(), &data_dir, &["serve"])),
    );
    let servers = [first.expect("the first instance"), second.expect("the second instance")];
    for server in &servers {
        server.assert_ready().await;
    }
}

/// The welcome offers the demo tenant's login only where the demo tenant exists: a database
/// set up without the seed (as when an operator was created before the first `serve`) is told
/// how to make a tenant instead; once the seed has run, the login printed is one that works.
#[tokio::test]
async fn serve_offers_the_demo_login_only_where_the_demo_tenant_exists() {
    let app = spawn_installed_app().await;
    let data_dir = scratch_dir("cli-welcome");
    let demo_login = format!(r#""password":"{}""#, rowguard::seed::DEMO_PASSWORD);
    let bare = Server::start(rowguard(&app.cli_env(), &data_dir, &["serve"])).await.expect("serve");
    assert!(bare.welcome.contains(WELCOME_ENDS), "the whole welcome was read: {}", bare.welcome);
    assert!(!bare.welcome.contains(rowguard::seed::DEMO_PASSWORD), "{}", bare.welcome);
    assert!(!bare.welcome.contains("owner@acme.test"), "{}", bare.welcome);
    assert!(bare.welcome.contains("rowguard tenants create"), "{}", bare.welcome);
    drop(bare);

    rowguard::seed::seed_demo(&app.superuser_url()).await.expect("the demo seed");
    let seeded = Server::start(rowguard(&app.cli_env(), &data_dir, &["serve"])).await.expect("serve");
    assert!(seeded.welcome.contains("owner@acme.test") && seeded.welcome.contains(&demo_login), "{}", seeded.welcome);
    let login = app.login("acme", "owner@acme.test", rowguard::seed::DEMO_PASSWORD).await;
    assert_eq!(login.status, axum::http::StatusCode::OK, "the login offered works: {}", login.body);
    drop(seeded);

    // An operator's own tenant that happens to be called acme is not the demo.
    let other = spawn_installed_app().await;
    other.create_tenant("acme").await;
    let own =
        Server::start(rowguard(&other.cli_env(), &scratch_dir("cli-welcome-own"), &["serve"])).await.expect("serve");
    assert!(!own.welcome.contains(rowguard::seed::DEMO_PASSWORD), "{}", own.welcome);
    assert!(own.welcome.contains("rowguard tenants create"), "{}", own.welcome);
}

/// Run on a set-up database, bootstrap touches no catalog row: nothing to collide on, and no
/// password written to a server log that records DDL. Rows are compared by `xmin`, which any
/// UPDATE (ALTER ROLE, GRANT, ALTER ROLE … SET) changes.
#[tokio::test]
async fn bootstrapping_an_installed_database_changes_no_catalog_row() {
    let app: TestApp = spawn_installed_app().await;
    let mut su = app.superuser_connection().await;
    let snapshot = "SELECT 'role ' || rolname, xmin::text FROM pg_authid WHERE rolname = ANY($1)
         UNION ALL
         SELECT 'setting of ' || r.rolname, s.xmin::text
           FROM pg_db_role_setting s JOIN pg_authid r ON r.oid = s.setrole WHERE r.rolname = ANY($1)
         UNION ALL
         SELECT 'member ' || r.rolname || ' of ' || g.rolname, m.xmin::text
           FROM pg_auth_members m JOIN pg_authid r ON r.oid = m.member JOIN pg_authid g ON g.oid = m.roleid
          WHERE r.rolname = ANY($1)
         UNION ALL
         SELECT 'database', xmin::text FROM pg_database WHERE datname = current_database()
         UNION ALL
         SELECT 'schema public', xmin::text FROM pg_namespace WHERE nspname = 'public'
         UNION ALL
         SELECT 'table ' || relname, xmin::text FROM pg_class
          WHERE relname IN ('rowguard_schema_history', 'rowguard_policy_history')
         ORDER BY 1";
    let roles = vec![APP_ROLE, PLATFORM_LOGIN_ROLE, OWNER_ROLE, PLATFORM_ROLE, AUDIT_ROLE, "postgres"];
    let before: Vec<(String, String)> =
        sqlx::query_as(snapshot).bind(&roles).fetch_all(&mut su).await.expect("catalog before");
    assert!(before.len() >= 10, "the snapshot must cover the roles and grants: {before:?}");
    let (created, report) = migrate::bootstrap_and_migrate(
        &app.superuser_url(),
        &url_password(&app.app_url()),
        Some(&url_password(&app.platform_url())),
    )
    .await
    .expect("bootstrap again");
    assert!(!created && report.schema.is_empty() && report.policies.is_empty(), "{report:?}");
    let after: Vec<(String, String)> =
        sqlx::query_as(snapshot).bind(&roles).fetch_all(&mut su).await.expect("catalog after");
    assert_eq!(before, after);
}

/// Without DATABASE_URL each instance starts (or attaches to) the embedded cluster in its data
/// directory. Started together on a new directory, exactly one writes the credentials, runs
/// initdb and starts PostgreSQL; the other waits for it and attaches, and both serve.
#[tokio::test]
async fn two_services_on_one_new_embedded_cluster_both_come_up() {
    let _app = spawn_app().await; // only for the test cluster's directory
    let data_dir = scratch_dir("cli-embedded");
    let embedded = || {
        let mut command = rowguard(&[], &data_dir, &["serve"]);
        command
            .env_remove("DATABASE_URL")
            .env_remove("ROWGUARD_ADMIN_DATABASE_URL")
            .env_remove("ROWGUARD_PLATFORM_DATABASE_URL")
            .env("ROWGUARD_SEED_DEMO", "false");
        command
    };
    let (first, second) = tokio::join!(Server::start(embedded()), Server::start(embedded()));
    let servers = [first.expect("the first instance"), second.expect("the second instance")];
    for server in &servers {
        server.assert_ready().await;
    }
}
