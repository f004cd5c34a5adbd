//! wrk mode (`--wrk`): get-by-id driven by wrk, an external load generator written in C, and
//! pgbench's naive tenant transaction on the same database, in rounds that alternate which
//! goes first; prints both, their ratio per round and the median. The harness's own client
//! runs in this process on the same two cores, so its figures carry its cost; wrk's are the
//! figures to compare with other systems measured the same way.
//!
//! The requests are written out beforehand (a Lua table of whole HTTP requests, each a random
//! tenant's host and token and one of its contacts), so wrk's script only picks the next one.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use rand::seq::SliceRandom;

use crate::ab::median;
use crate::fixture::Fixture;
use crate::{ceiling, service};

/// Requests prepared for wrk to cycle through.
const PREPARED: usize = 4000;

pub struct WrkRun {
    pub rps: f64,
    pub p99_ms: f64,
    /// Non-2xx answers, plus connect, read, write and timeout errors.
    pub errors: u64,
}

/// Whether wrk is on the PATH.
pub fn installed() -> bool {
    std::process::Command::new("wrk").arg("--version").output().is_ok()
}

/// The Lua script: a table of prepared requests, taken in turn. Every tenant gets the same
/// share, in shuffled order, so that no tenant meets its plan's rate limit by chance.
fn script(addr: std::net::SocketAddr, fixture: &Fixture) -> String {
    let mut rng = rand::rng();
    let mut order: Vec<usize> = (0..PREPARED).map(|i| i % fixture.tenants.len().max(1)).collect();
    order.shuffle(&mut rng);
    let mut lua = String::from("local prepared = {\n");
    for i in order {
        let tenant = &fixture.tenants[i];
        let contact =
            tenant.contacts.get(rng.random_range(0..tenant.contacts.len().max(1))).copied().unwrap_or_default();
        let _ = writeln!(
            lua,
            "  \"GET /v1/contacts/{contact} HTTP/1.1\\r\\nHost: {}.localhost:{}\\r\\nAuthorization: Bearer {}\\r\\n\\r\\n\",",
            tenant.slug,
            addr.port(),
            tenant.token
        );
    }
    lua.push_str(
        "}\nlocal next = 0\nrequest = function()\n  next = next % #prepared + 1\n  return prepared[next]\nend\n",
    );
    lua
}

/// One wrk run of `duration` with `connections` on one thread (the service and PostgreSQL
/// keep the other core's worth).
pub async fn run(
    addr: std::net::SocketAddr,
    fixture: &Fixture,
    dir: &Path,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<WrkRun> {
    let path = dir.join("get-by-id.lua");
    std::fs::write(&path, script(addr, fixture))?;
    let output = tokio::process::Command::new("wrk")
        .args(["-t1", "-c", &connections.to_string(), "-d", &format!("{}s", duration.as_secs().max(1)), "--latency"])
        .arg("-s")
        .arg(&path)
        .arg(format!("http://{addr}/"))
        .output()
        .await?;
    let text = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(output.status.success(), "wrk failed: {text}{}", String::from_utf8_lossy(&output.stderr));
    parse(&text).ok_or_else(|| anyhow::anyhow!("cannot read wrk's output:\n{text}"))
}

fn parse(text: &str) -> Option<WrkRun> {
    let field = |prefix: &str| text.lines().map(str::trim).find_map(|l| l.strip_prefix(prefix)).map(str::trim);
    let rps = field("Requests/sec:")?.parse().ok()?;
    let p99 = field("99%")?;
    let p99_ms = match p99 {
        v if v.ends_with("us") => v.trim_end_matches("us").parse::<f64>().ok()? / 1000.0,
        v if v.ends_with("ms") => v.trim_end_matches("ms").parse().ok()?,
        v if v.ends_with('s') => v.trim_end_matches('s').parse::<f64>().ok()? * 1000.0,
        _ => return None,
    };
    let non_2xx = field("Non-2xx or 3xx responses:").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // "Socket errors: connect 0, read 0, write 0, timeout 0"
    let socket: u64 = field("Socket errors:")
        .map(|v| v.split(',').filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    Some(WrkRun { rps, p99_ms, errors: non_2xx + socket })
}

/// Where the two cores went during one measured run, in CPU seconds: the service, the
/// PostgreSQL server (the postmaster and its children; None when the server is not the
/// harness's own), the load generator (wrk or pgbench: this process's children that ended
/// meanwhile, from getrusage), and the machine's idle time (/proc/stat, all cores).
#[derive(Clone, Copy, Default)]
struct Spent {
    service: f64,
    server: Option<f64>,
    generator: f64,
    idle: f64,
    wall: f64,
}

/// What to read the CPU figures from: the service's pid and the server's postmaster.pid.
pub struct Watched<'a> {
    pub service_pid: u32,
    pub pid_file: Option<&'a Path>,
}

impl Watched<'_> {
    fn now(&self) -> Spent {
        Spent {
            service: service::cpu_seconds(self.service_pid),
            server: self.pid_file.filter(|f| f.exists()).map(service::server_cpu_seconds),
            generator: children_cpu_seconds(),
            idle: idle_seconds(),
            wall: 0.0,
        }
    }

    /// `work` measured: what it returned, and the CPU spent meanwhile.
    async fn around<T>(&self, work: impl std::future::Future<Output = T>) -> (T, Spent) {
        let (before, started) = (self.now(), std::time::Instant::now());
        let out = work.await;
        let after = self.now();
        let spent = Spent {
            service: after.service - before.service,
            server: after.server.zip(before.server).map(|(a, b)| a - b),
            generator: after.generator - before.generator,
            idle: after.idle - before.idle,
            wall: started.elapsed().as_secs_f64(),
        };
        (out, spent)
    }
}

/// User + system time of this process's children that have ended and been waited for.
fn children_cpu_seconds() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    getrusage(UsageWho::RUSAGE_CHILDREN).map_or(0.0, |u| seconds(u.user_time()) + seconds(u.system_time()))
}

/// Idle (and I/O-wait) time of all cores so far, seconds, from the first line of /proc/stat.
fn idle_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else { return 0.0 };
    let ticks: u64 = stat
        .lines()
        .next()
        .map(|cpu| cpu.split_whitespace().skip(4).take(2).filter_map(|v| v.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100);
    if per_second <= 0 { 0.0 } else { ticks as f64 / per_second as f64 }
}

/// One side's CPU per request (or transaction), µs: (service, server, generator, busy share).
fn per_request(spent: &Spent, rate: f64, cores: f64) -> (f64, Option<f64>, f64, f64) {
    let requests = rate * spent.wall;
    let us = |s: f64| if requests > 0.0 { s * 1e6 / requests } else { 0.0 };
    let busy = if spent.wall > 0.0 { 1.0 - spent.idle / (spent.wall * cores) } else { 0.0 };
    (us(spent.service), spent.server.map(us), us(spent.generator), busy.clamp(0.0, 1.0))
}

/// `rounds` of wrk against the running service and pgbench's naive form, alternating order;
/// with each round, where the CPU went per request on each side, and what the service could
/// spend per request for its side to cost no more CPU than pgbench's transaction.
#[allow(clippy::too_many_arguments)]
pub async fn compare(
    addr: std::net::SocketAddr,
    watched: &Watched<'_>,
    app_url: &str,
    fixture: &Arc<Fixture>,
    dir: &Path,
    connections: usize,
    duration: Duration,
    rounds: usize,
) -> anyhow::Result<()> {
    println!("\n## get-by-id with wrk (C, 1 thread, {connections} connections) vs pgbench naive (-M prepared, -j 1)");
    println!(
        "{:<7} {:>12} {:>9} {:>8} {:>14} {:>7}",
        "round", "wrk req/s", "p99 ms", "errors", "pgbench tx/s", "ratio"
    );
    let cores = std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
    let (mut ratios, mut rps, mut tps, mut p99s) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut cpu_lines = Vec::new();
    let mut errors = 0;
    // Warm-up: caches filled, connections open.
    run(addr, fixture, dir, connections, Duration::from_secs(2)).await?;
    for round in 0..rounds.max(1) {
        let wrk = || watched.around(run(addr, fixture, dir, connections, duration));
        let pgbench = || watched.around(ceiling::pgbench_naive(app_url, fixture, connections, duration));
        let ((w, w_spent), (p, p_spent)) = if round % 2 == 0 {
            let w = wrk().await;
            (w, pgbench().await)
        } else {
            let p = pgbench().await;
            (wrk().await, p)
        };
        let w = w?;
        let p = p.ok_or_else(|| anyhow::anyhow!("pgbench not found or failed: install postgresql-contrib"))?;
        println!("{:<7} {:>12.0} {:>9.2} {:>8} {:>14.0} {:>7.3}", round + 1, w.rps, w.p99_ms, w.errors, p, w.rps / p);
        cpu_lines.push(cpu_line(round + 1, &w_spent, w.rps, &p_spent, p, cores));
        ratios.push(w.rps / p);
        rps.push(w.rps);
        tps.push(p);
        p99s.push(w.p99_ms);
        errors += w.errors;
    }
    println!(
        "{:<7} {:>12.0} {:>9.2} {:>8} {:>14.0} {:>7.3}   (medians; errors summed)",
        "median",
        median(rps),
        median(p99s),
        errors,
        median(tps),
        median(ratios)
    );
    println!("\nCPU per request (wrk side) and per transaction (pgbench side), µs of one core; busy: share of all");
    println!("cores not idle, whoever used them. Budget: what the service may spend per request for the wrk side");
    println!("to cost no more CPU than pgbench's transaction, after the database's and wrk's share: on cores shared");
    println!("by all three, the service's rate matches pgbench's when its CPU per request is within the budget.");
    println!(
        "{:<7} {:>8} {:>7} {:>6} {:>7} {:>6} {:>8} {:>8} {:>7} {:>6} {:>8}",
        "round", "service", "db", "wrk", "total", "busy", "db", "pgbench", "total", "busy", "budget"
    );
    for line in cpu_lines {
        println!("{line}");
    }
    Ok(())
}

fn cpu_line(round: usize, w_spent: &Spent, w_rps: f64, p_spent: &Spent, p_tps: f64, cores: f64) -> String {
    let (svc, w_db, wrk, w_busy) = per_request(w_spent, w_rps, cores);
    let (_, p_db, pgbench, p_busy) = per_request(p_spent, p_tps, cores);
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
    let w_total = w_db.map(|db| svc + db + wrk);
    let p_total = p_db.map(|db| db + pgbench);
    // CPU per request, not the rates: the rates swing with whatever else the machine runs
    // during one side's run, the CPU each request or transaction costs much less.
    let budget = p_total.zip(w_db).map(|(total, db)| total - db - wrk);
    format!(
        "{:<7} {:>8.1} {:>7} {:>6.1} {:>7} {:>5.0}% {:>8} {:>8.1} {:>7} {:>5.0}% {:>8}",
        round,
        svc,
        opt(w_db),
        wrk,
        opt(w_total),
        w_busy * 100.0,
        opt(p_db),
        pgbench,
        opt(p_total),
        p_busy * 100.0,
        opt(budget)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_what_parity_leaves_the_service() {
        let wrk_side = Spent { service: 0.3, server: Some(0.4), generator: 0.08, idle: 0.2, wall: 1.0 };
        let pgbench_side = Spent { service: 0.0, server: Some(0.5), generator: 0.15, idle: 0.0, wall: 1.0 };
        // pgbench's 65 µs per transaction, less the database's 40 and wrk's 8: 17 left.
        let line = cpu_line(1, &wrk_side, 10_000.0, &pgbench_side, 10_000.0, 2.0);
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols, ["1", "30.0", "40.0", "8.0", "78.0", "90%", "50.0", "15.0", "65.0", "100%", "17.0"]);
        // pgbench twice as fast on the same CPU: each transaction costs half, so 32.5 − 48 < 0.
        let line = cpu_line(1, &wrk_side, 10_000.0, &pgbench_side, 20_000.0, 2.0);
        assert_eq!(line.split_whitespace().last(), Some("-15.5"));
        // Another server's CPU cannot be read: no database figure, no budget.
        let remote = Spent { server: None, ..wrk_side };
        assert_eq!(cpu_line(1, &remote, 10_000.0, &remote, 10_000.0, 2.0).split_whitespace().last(), Some("-"));
    }

    #[test]
    fn wrk_output_is_read() {
        let text = "Running 10s test @ http://127.0.0.1:1/\n  1 threads and 32 connections\n  Latency Distribution\n     50%    2.10ms\n     75%    2.90ms\n     90%    3.80ms\n     99%    5.25ms\n  120000 requests in 10.00s, 50.00MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\n  Non-2xx or 3xx responses: 4\nRequests/sec:  12000.50\nTransfer/sec:      5.00MB\n";
        let run = parse(text).expect("parsed");
        assert!((run.rps - 12000.5).abs() < 1e-9);
        assert!((run.p99_ms - 5.25).abs() < 1e-9);
        assert_eq!(run.errors, 7);
        let micro = text.replace("5.25ms", "850.00us");
        assert!((parse(&micro).expect("parsed").p99_ms - 0.85).abs() < 1e-9);
    }
}
