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
use crate::ceiling;
use crate::fixture::Fixture;

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

/// `rounds` of wrk against the running service and pgbench's naive form, alternating order.
pub async fn compare(
    addr: std::net::SocketAddr,
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
    let (mut ratios, mut rps, mut tps, mut p99s) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut errors = 0;
    // Warm-up: caches filled, connections open.
    run(addr, fixture, dir, connections, Duration::from_secs(2)).await?;
    for round in 0..rounds.max(1) {
        let (w, p) = if round % 2 == 0 {
            let w = run(addr, fixture, dir, connections, duration).await?;
            (w, ceiling::pgbench_naive(app_url, fixture, connections, duration).await)
        } else {
            let p = ceiling::pgbench_naive(app_url, fixture, connections, duration).await;
            (run(addr, fixture, dir, connections, duration).await?, p)
        };
        let p = p.ok_or_else(|| anyhow::anyhow!("pgbench not found or failed: install postgresql-contrib"))?;
        println!("{:<7} {:>12.0} {:>9.2} {:>8} {:>14.0} {:>7.3}", round + 1, w.rps, w.p99_ms, w.errors, p, w.rps / p);
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
