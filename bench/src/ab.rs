//! A/B mode (`--baseline BIN`): two builds of the service measured on one fixture, one after
//! the other, in alternating order (A B, B A, A B, …) so that a slow stretch of this shared
//! machine, or a table that grows under `create`, does not favour either. Each round starts
//! each binary afresh. Medians of the rounds, and the candidate's median over the baseline's.

use std::path::Path;
use std::sync::Arc;

use crate::fixture::Fixture;
use crate::{Args, load, service};

struct Round {
    rps: f64,
    /// The service's CPU time per request, µs: steadier than throughput on a busy machine.
    cpu_us: f64,
    /// PostgreSQL's CPU time per request, µs.
    db_us: f64,
    p99: f64,
    failures: u64,
}

/// The median (the mean of the middle two for an even count); 0 for none.
pub(crate) fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => 0.0,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

async fn one(
    args: &Args,
    bin: &Path,
    app_url: &str,
    fixture: &Arc<Fixture>,
    kind: load::Workload,
    env: &[(String, String)],
) -> anyhow::Result<Round> {
    let mut svc =
        service::Service::start_with(bin, app_url, &args.dir, &fixture.signing_pem, args.pool_size, env).await?;
    let pid_file = args.dir.join("pgdata").join("postmaster.pid");
    let (cpu_before, db_before) = (svc.cpu_seconds(), service::server_cpu_seconds(&pid_file));
    let stats = load::run(svc.addr, fixture, kind, args.connections, args.warmup(), args.duration()).await?;
    let (cpu, db) = (svc.cpu_seconds() - cpu_before, service::server_cpu_seconds(&pid_file) - db_before);
    svc.stop().await;
    // The CPU covers the warm-up too; assume it ran at the measured rate.
    let requests = stats.rps() * (args.warmup() + args.duration()).as_secs_f64();
    let per_request = |seconds: f64| if requests > 0.0 { seconds * 1e6 / requests } else { 0.0 };
    Ok(Round {
        rps: stats.rps(),
        cpu_us: per_request(cpu),
        db_us: per_request(db),
        p99: stats.p99(),
        failures: stats.failures(),
    })
}

pub async fn compare(
    args: &Args,
    baseline: &Path,
    candidate: &Path,
    app_url: &str,
    fixture: &Arc<Fixture>,
) -> anyhow::Result<()> {
    anyhow::ensure!(baseline.exists(), "no baseline binary at {}", baseline.display());
    println!("\n## A/B: baseline {} vs candidate {}", baseline.display(), candidate.display());
    for (k, v) in &args.candidate_env {
        println!("candidate environment: {k}={v}");
    }
    println!("{} rounds per workload, alternating order, {:.0} s each after warm-up", args.ab_rounds, args.duration);
    println!(
        "{:<12} {:>8} {:>8} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7}   rounds (req/s, A / B)",
        "workload",
        "A req/s",
        "B req/s",
        "B/A",
        "A svc µs",
        "B svc µs",
        "A db µs",
        "B db µs",
        "A p99",
        "B p99",
        "fails"
    );
    println!("(svc µs, db µs: CPU time of the service and of PostgreSQL per request; p99 in ms)");
    for workload in &args.workloads {
        let kind: load::Workload = workload.parse()?;
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for round in 0..args.ab_rounds {
            if round % 2 == 0 {
                a.push(one(args, baseline, app_url, fixture, kind, &[]).await?);
                b.push(one(args, candidate, app_url, fixture, kind, &args.candidate_env).await?);
            } else {
                b.push(one(args, candidate, app_url, fixture, kind, &args.candidate_env).await?);
                a.push(one(args, baseline, app_url, fixture, kind, &[]).await?);
            }
        }
        let rps = |rs: &[Round]| median(rs.iter().map(|r| r.rps).collect());
        let p99 = |rs: &[Round]| median(rs.iter().map(|r| r.p99).collect());
        let cpu = |rs: &[Round]| median(rs.iter().map(|r| r.cpu_us).collect());
        let db = |rs: &[Round]| median(rs.iter().map(|r| r.db_us).collect());
        let failures: u64 = a.iter().chain(&b).map(|r| r.failures).sum();
        let rounds: Vec<String> = a.iter().zip(&b).map(|(x, y)| format!("{:.0}/{:.0}", x.rps, y.rps)).collect();
        println!(
            "{:<12} {:>8.0} {:>8.0} {:>6.3} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.2} {:>8.2} {:>7}   {}",
            workload,
            rps(&a),
            rps(&b),
            rps(&b) / rps(&a),
            cpu(&a),
            cpu(&b),
            db(&a),
            db(&b),
            p99(&a),
            p99(&b),
            failures,
            rounds.join("  ")
        );
    }
    Ok(())
}
