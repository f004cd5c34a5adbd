//! The embedded PostgreSQL cluster: found among the installed server binaries, initialised
//! once in the data directory, started on a private Unix socket, stopped on shutdown.
//! Touches only the filesystem under its directory and the `postgres` child process.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, User, chown};
use rand::RngCore;

/// How the cluster will be used. Throwaway clusters (tests, benchmarks) trade durability
/// for speed; the development cluster keeps the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    Durable,
    Throwaway,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "PostgreSQL server binaries (initdb, postgres) were not found on PATH, via pg_config, \
         or under /usr/lib/postgresql/*/bin.\n  Install them (Debian/Ubuntu: `apt-get install postgresql`), \
         or run against your own server with DATABASE_URL and ROWGUARD_ADMIN_DATABASE_URL \
         (`docker compose up` starts one, see compose.yaml)."
    )]
    BinariesNotFound,
    #[error(
        "running as root, but there is no `postgres` OS user to run the embedded server as \
         (initdb refuses root); create one (`useradd --system postgres`) or set DATABASE_URL"
    )]
    NoPostgresUser,
    #[error(
        "the `postgres` OS user cannot reach {0}; choose a data directory it can traverse \
         with ROWGUARD_DATA_DIR (for example under /var/lib or /srv)"
    )]
    Unreachable(PathBuf),
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("PostgreSQL did not become ready within {secs} s; its log ({log}) ends with:\n{tail}")]
    NotReady { secs: u64, log: String, tail: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Passwords the cluster was initialised with, kept in `<dir>/credentials` (mode 0600).
#[derive(Debug, Clone)]
pub struct Credentials {
    pub superuser_password: String,
    pub app_password: String,
    /// The platform login's (`rowguard_platform_login`); added later, so generated when missing.
    pub platform_password: String,
}

/// A running (or attached) cluster. Dropping it stops the server if this process started it.
pub struct EmbeddedCluster {
    root: PathBuf,
    socket_dir: PathBuf,
    credentials: Credentials,
    server: Option<ServerProcess>,
}

const SUPERUSER: &str = "postgres";
const PORT: u16 = 5432;

impl EmbeddedCluster {
    /// Open the cluster kept in `root` (creating it on first use) and make sure a server is
    /// running on it: attach to one that already runs (for example a `rowguard serve` in
    /// another terminal), or start our own.
    ///
    /// Blocking. Call it from a thread that outlives the cluster (the main thread, or one
    /// kept for the purpose): the server is asked to stop when that thread ends, so a
    /// crashed rowguard never leaves it behind. Never from `spawn_blocking`.
    ///
    /// Several rowguard processes may start on one data directory at the same moment: an
    /// exclusive lock on `<root>/start.lock` is held from reading the credentials to the
    /// server accepting connections, so exactly one of them writes the credentials, runs
    /// initdb and starts the server, and the others attach to it once it is ready. The
    /// process that started the server stops it when it exits, attached ones or not: run
    /// `rowguard serve` first and other commands beside it, or use DATABASE_URL for a server
    /// whose life is not tied to one process (docs/operations.md, The CLI).
    pub fn start(root: &Path, durability: Durability) -> Result<EmbeddedCluster, ClusterError> {
        let bin = find_server_binaries()?;
        fs::create_dir_all(root)?;
        let root = root.canonicalize()?;
        // Released when `_starting` is dropped, on every return path. flock(2), so it goes
        // with this process if it dies; the file is opened close-on-exec, so the postgres we
        // spawn does not inherit it (and keep it after we exit).
        let _starting = {
            let lock = fs::OpenOptions::new().create(true).truncate(false).write(true).open(root.join("start.lock"))?;
            lock.lock()?;
            lock
        };
        let run_as = server_user()?;
        let pgdata = root.join("pgdata");
        let credentials = load_or_create_credentials(&root)?;
        if let Some(user) = &run_as {
            ensure_reachable(&root, user)?;
        }
        if !pgdata.join("PG_VERSION").exists() {
            init_cluster(&bin, &root, &pgdata, run_as.as_ref(), &credentials)?;
        }
        let socket_dir = socket_dir_for(&root, run_as.as_ref())?;
        let mut cluster = EmbeddedCluster { root, socket_dir, credentials, server: None };
        if cluster.running_pid().is_some() {
            tracing::info!(data = %pgdata.display(), "attached to the PostgreSQL server already running on this data directory");
            // Started under this lock by another rowguard, it is ready; one started some other
            // way may still be recovering.
            cluster.wait_until_ready(Duration::from_secs(60))?;
            return Ok(cluster);
        }
        cluster.server = Some(ServerProcess::spawn(
            &bin,
            &pgdata,
            &cluster.socket_dir,
            run_as.as_ref(),
            durability,
            &cluster.log_path(),
        )?);
        cluster.wait_until_ready(Duration::from_secs(60))?;
        Ok(cluster)
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// A libpq-style URL (psql and sqlx both read it) for `user` on database `db`.
    pub fn url(&self, user: &str, password: &str, db: &str) -> String {
        format!("postgres://{user}:{password}@localhost:{PORT}/{db}?host={}", self.socket_dir.display())
    }

    pub fn superuser_url(&self, db: &str) -> String {
        self.url(SUPERUSER, &self.credentials.superuser_password, db)
    }

    /// Whether this process started the server (and so will stop it).
    pub fn owns_server(&self) -> bool {
        self.server.is_some()
    }

    /// Stop the server if we started it: a fast shutdown (clients are disconnected, every
    /// committed transaction is already durable), then wait for it to exit.
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
        }
    }

    fn log_path(&self) -> PathBuf {
        self.root.join("postgres.log")
    }

    /// The pid of a live postmaster on our data directory, removing a stale pid file left
    /// by a crash (postgres would refuse to start only if that pid now belongs to a
    /// process it cannot tell apart from itself).
    fn running_pid(&self) -> Option<i32> {
        let pid_file = self.root.join("pgdata").join("postmaster.pid");
        let text = fs::read_to_string(&pid_file).ok()?;
        let pid: i32 = text.lines().next()?.trim().parse().ok()?;
        let alive = kill(Pid::from_raw(pid), None).is_ok();
        let is_postgres = fs::read_link(format!("/proc/{pid}/exe"))
            .map(|exe| exe.file_name().is_some_and(|n| n == "postgres"))
            .unwrap_or(false);
        if alive && is_postgres {
            Some(pid)
        } else {
            tracing::info!(pid, "removing a stale postmaster.pid left by an earlier run");
            let _ = fs::remove_file(&pid_file);
            None
        }
    }

    fn wait_until_ready(&mut self, limit: Duration) -> Result<(), ClusterError> {
        let started = Instant::now();
        let socket = self.socket_dir.join(format!(".s.PGSQL.{PORT}"));
        let pid_file = self.root.join("pgdata").join("postmaster.pid");
        loop {
            // postgres writes "ready" as the 8th line of its pid file once it accepts connections.
            let ready = fs::read_to_string(&pid_file)
                .map(|t| t.lines().nth(7).is_some_and(|l| l.trim() == "ready"))
                .unwrap_or(false);
            if ready && socket.exists() {
                return Ok(());
            }
            let exited = self.server.as_mut().and_then(|s| s.child.try_wait().ok().flatten()).is_some();
            if exited || started.elapsed() > limit {
                return Err(ClusterError::NotReady {
                    secs: limit.as_secs(),
                    log: self.log_path().display().to_string(),
                    tail: log_tail(&self.log_path(), 15),
                });
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for EmbeddedCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

struct ServerProcess {
    child: Child,
}

impl ServerProcess {
    fn spawn(
        bin: &Path,
        pgdata: &Path,
        socket_dir: &Path,
        run_as: Option<&User>,
        durability: Durability,
        log: &Path,
    ) -> Result<ServerProcess, ClusterError> {
        let log_file = fs::OpenOptions::new().create(true).append(true).open(log)?;
        let mut cmd = Command::new(bin.join("postgres"));
        cmd.arg("-D").arg(pgdata);
        cmd.args(["-c", "listen_addresses="]);
        cmd.arg("-c").arg(format!("unix_socket_directories={}", socket_dir.display()));
        cmd.args(["-c", &format!("port={PORT}")]);
        cmd.args(["-c", "max_connections=300"]);
        if durability == Durability::Throwaway {
            cmd.args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]);
        }
        cmd.stdin(Stdio::null()).stdout(log_file.try_clone()?).stderr(log_file);
        if let Some(user) = run_as {
            cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        }
        // Own process group, so a Ctrl-C in the terminal reaches rowguard (which stops the
        // server after in-flight requests) rather than postgres directly; and if rowguard
        // dies without stopping it, the kernel asks postgres to shut down fast.
        cmd.process_group(0);
        // SAFETY: prctl is async-signal-safe and touches only the child's own state.
        unsafe {
            cmd.pre_exec(|| {
                if nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGINT, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        Ok(ServerProcess { child })
    }

    fn stop(mut self) {
        let pid = Pid::from_raw(self.child.id() as i32);
        if kill(pid, Signal::SIGINT).is_ok() {
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = kill(pid, Signal::SIGQUIT);
        }
        let _ = self.child.wait();
    }
}

/// The directory holding `initdb` and `postgres`: PATH first, then `pg_config --bindir`,
/// then the newest `/usr/lib/postgresql/*/bin`.
pub fn find_server_binaries() -> Result<PathBuf, ClusterError> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_both(&dir) {
                // PATH often holds symlinks (Debian's /usr/local/bin/initdb); postgres finds
                // its share directory relative to its real location.
                let real = dir.join("postgres").canonicalize().ok().and_then(|p| p.parent().map(Path::to_path_buf));
                return Ok(real.filter(|d| has_both(d)).unwrap_or(dir));
            }
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_both(&dir) {
            return Ok(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, dir)| has_both(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir).ok_or(ClusterError::BinariesNotFound)
}

/// initdb and postgres refuse to run as root; as root we run them as `postgres`.
fn server_user() -> Result<Option<User>, ClusterError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    match User::from_name("postgres") {
        Ok(Some(user)) => Ok(Some(user)),
        _ => Err(ClusterError::NoPostgresUser),
    }
}

fn ensure_reachable(root: &Path, user: &User) -> Result<(), ClusterError> {
    // Every ancestor must be searchable by others (we do not chmod the user's directories).
    for dir in root.ancestors().skip(1) {
        let meta = fs::metadata(dir)?;
        let mode = meta.permissions().mode();
        let owned = std::os::unix::fs::MetadataExt::uid(&meta) == user.uid.as_raw();
        if !owned && mode & 0o001 == 0 {
            return Err(ClusterError::Unreachable(root.to_path_buf()));
        }
    }
    fs::set_permissions(root, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

fn chown_to(path: &Path, user: Option<&User>) -> Result<(), ClusterError> {
    if let Some(user) = user {
        chown(path, Some(user.uid), Some(user.gid))
            .map_err(|e| ClusterError::Command { what: format!("chown {}", path.display()), detail: e.to_string() })?;
    }
    Ok(())
}

fn init_cluster(
    bin: &Path,
    root: &Path,
    pgdata: &Path,
    run_as: Option<&User>,
    creds: &Credentials,
) -> Result<(), ClusterError> {
    tracing::info!(data = %pgdata.display(), "initialising a new PostgreSQL cluster");
    if pgdata.exists() {
        fs::remove_dir_all(pgdata)?; // a half-made cluster from an interrupted initdb
    }
    fs::create_dir_all(pgdata)?;
    fs::set_permissions(pgdata, fs::Permissions::from_mode(0o700))?;
    chown_to(pgdata, run_as)?;
    let pwfile = root.join(".initdb-password");
    {
        let mut f = fs::OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(&pwfile)?;
        f.write_all(creds.superuser_password.as_bytes())?;
    }
    chown_to(&pwfile, run_as)?;
    let mut cmd = Command::new(bin.join("initdb"));
    cmd.arg("-D").arg(pgdata);
    cmd.args(["-U", SUPERUSER, "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions"]);
    cmd.arg(format!("--pwfile={}", pwfile.display()));
    if let Some(user) = run_as {
        cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
    let out = cmd.stdin(Stdio::null()).output()?;
    let _ = fs::remove_file(&pwfile);
    if !out.status.success() {
        return Err(ClusterError::Command {
            what: "initdb".into(),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(())
}

/// Unix socket paths are limited to ~107 bytes; a deep data directory gets its socket in
/// a private directory under /tmp instead.
fn socket_dir_for(root: &Path, run_as: Option<&User>) -> Result<PathBuf, ClusterError> {
    let in_root = root.join("run");
    let dir = if in_root.as_os_str().len() + 16 < 100 {
        in_root
    } else {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        root.hash(&mut h);
        std::env::temp_dir().join(format!("rowguard-{:016x}", h.finish()))
    };
    fs::create_dir_all(&dir)?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
    chown_to(&dir, run_as)?;
    Ok(dir)
}

fn load_or_create_credentials(root: &Path) -> Result<Credentials, ClusterError> {
    let path = root.join("credentials");
    if let Ok(text) = fs::read_to_string(&path) {
        let get = |key: &str| {
            text.lines().find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('='))).map(str::to_string)
        };
        if let (Some(superuser_password), Some(app_password)) = (get("superuser"), get("app")) {
            // A data directory from before the platform login: keep its passwords, add one.
            let Some(platform_password) = get("platform") else {
                let creds = Credentials { superuser_password, app_password, platform_password: random_secret() };
                write_credentials(&path, &creds)?;
                return Ok(creds);
            };
            return Ok(Credentials { superuser_password, app_password, platform_password });
        }
    }
    let creds = Credentials {
        superuser_password: random_secret(),
        app_password: random_secret(),
        platform_password: random_secret(),
    };
    write_credentials(&path, &creds)?;
    Ok(creds)
}

fn write_credentials(path: &Path, creds: &Credentials) -> Result<(), ClusterError> {
    let mut f = fs::OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(path)?;
    writeln!(
        f,
        "superuser={}\napp={}\nplatform={}",
        creds.superuser_password, creds.app_password, creds.platform_password
    )?;
    Ok(())
}

/// 32 random hex characters: safe inside a URL and a SQL string literal alike.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
