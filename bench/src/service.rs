//! The service under test: the real `rowguard serve` binary as a child process on a loopback
//! port, pointed at the benchmark's database, so its memory can be read from /proc.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

pub struct Service {
    pub addr: SocketAddr,
    child: Child,
    pid: u32,
    peak_kib: u64,
}

impl Service {
    pub async fn start(bin: &Path, app_url: &str, dir: &Path, signing_pem: &str, pool: u32) -> anyhow::Result<Service> {
        Service::start_with(bin, app_url, dir, signing_pem, pool, &[]).await
    }

    /// As `start`, with more environment for the service.
    pub async fn start_with(
        bin: &Path,
        app_url: &str,
        dir: &Path,
        signing_pem: &str,
        pool: u32,
        env: &[(String, String)],
    ) -> anyhow::Result<Service> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let child = Command::new(bin)
            .arg("serve")
            .env("DATABASE_URL", app_url)
            .env_remove("ROWGUARD_ADMIN_DATABASE_URL")
            .env("ROWGUARD_LISTEN", addr.to_string())
            .env("ROWGUARD_DATA_DIR", dir.join("service"))
            .env("ROWGUARD_JWT_PRIVATE_KEY", signing_pem)
            .env("ROWGUARD_JWT_KEY_ID", "bench")
            .env("ROWGUARD_DB_POOL_SIZE", pool.to_string())
            .env("ROWGUARD_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "rowguard did not start listening on {addr}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Service { addr, child, pid, peak_kib: 0 })
    }

    /// Resident memory now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn status_kib(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(field))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0)
    }

    /// CPU time (user + system) the service has used so far, seconds, from /proc/<pid>/stat.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.pid)
    }

    /// Current and peak resident memory, e.g. "RSS 21.3 MiB (peak 23.0 MiB)".
    pub fn memory(&mut self) -> String {
        let (now, peak) = (self.status_kib("VmRSS:"), self.status_kib("VmHWM:"));
        self.peak_kib = self.peak_kib.max(peak);
        format!("RSS {:.1} MiB (peak so far {:.1} MiB)", now as f64 / 1024.0, peak as f64 / 1024.0)
    }

    pub fn peak_memory(&self) -> String {
        format!("{:.1} MiB", self.peak_kib as f64 / 1024.0)
    }

    pub async fn stop(&mut self) {
        let _ = self.memory();
        if let Ok(pid) = i32::try_from(self.pid) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        }
        let _ = tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await;
    }
}

/// utime + stime of `pid` in seconds (fields 14 and 15 of /proc/<pid>/stat, after the
/// parenthesised command name, which may itself hold spaces); 0 when unreadable.
pub fn cpu_seconds(pid: u32) -> f64 {
    stat(pid).map_or(0.0, |s| ticks_to_seconds(s.ticks))
}

/// The CPU time of a PostgreSQL server so far: the postmaster named in `pid_file`, every
/// process it started that is still running (backends, background workers), and those that
/// ended (the postmaster waits for its children, so theirs is in its `cutime`/`cstime`),
/// seconds. So a window over which clients connected and left (pgbench) counts them too.
pub fn server_cpu_seconds(pid_file: &Path) -> f64 {
    let Some(postmaster) =
        std::fs::read_to_string(pid_file).ok().and_then(|s| s.lines().next()?.trim().parse::<u32>().ok())
    else {
        return 0.0;
    };
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0.0 };
    let ticks: u64 = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| match stat(pid)? {
            s if pid == postmaster => Some(s.ticks + s.ended_children_ticks),
            s if s.ppid == postmaster => Some(s.ticks),
            _ => None,
        })
        .sum();
    ticks_to_seconds(ticks)
}

struct Stat {
    ppid: u32,
    /// utime + stime, clock ticks.
    ticks: u64,
    /// cutime + cstime: the children it has waited for, clock ticks.
    ended_children_ticks: u64,
}

/// Fields 4 (ppid), 14 and 15 (utime, stime), 16 and 17 (cutime, cstime) of /proc/<pid>/stat,
/// read after the parenthesised command name, which may itself hold spaces.
fn stat(pid: u32) -> Option<Stat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): field n is at n - 3.
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        ppid: u32::try_from(field(4)?).ok()?,
        ticks: field(14)? + field(15)?,
        ended_children_ticks: field(16)? + field(17)?,
    })
}

fn ticks_to_seconds(ticks: u64) -> f64 {
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100);
    if per_second <= 0 { 0.0 } else { ticks as f64 / per_second as f64 }
}
