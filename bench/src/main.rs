//! `rowguard-bench`: the benchmark harness. Starts a throwaway PostgreSQL and the real
//! `rowguard` binary, provisions tenants through the service's own code paths, drives HTTP
//! workloads over loopback, and measures the database ceiling side by side in the same run.

mod ab;
mod audit_export;
mod audit_tree;
mod ceiling;
mod external;
mod fixture;
mod load;
mod ops;
mod service;
mod wrk;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use rowguard::cluster::{Durability, EmbeddedCluster};
use rowguard::db::APP_ROLE;
use rowguard::migrate;

#[derive(Parser, Clone)]
#[command(name = "rowguard-bench", about = "Benchmark harness for rowguard (see BENCHMARKS.md)")]
pub struct Args {
    /// Tenants to provision.
    #[arg(long, default_value_t = 1000)]
    tenants: usize,
    /// Contacts per tenant.
    #[arg(long, default_value_t = 100)]
    contacts: usize,
    /// Concurrent connections of the load generator and of the database ceiling clients.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds each workload is measured (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of warm-up before each measurement.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Workloads to run, comma-separated: get, list, create, login, mixed, get-under-login-flood,
    /// get-adopted (get-by-id of the same rows in an adopted table, through /v1/data),
    /// create-one-tenant (every create in one tenant), create-unaudited (creates with the
    /// contacts' audit trigger disabled on the harness's own cluster: the audit log's cost).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "get,list,create,login,mixed,get-under-login-flood,get-adopted"
    )]
    workloads: Vec<String>,
    /// Skip the database ceiling and RLS-cost measurements.
    #[arg(long)]
    no_ceiling: bool,
    /// Interleaved rounds for the RLS-cost measurement.
    #[arg(long, default_value_t = 5)]
    rls_rounds: usize,
    /// Grow to this many tenants for the tenancy-operations phase (0 skips it).
    #[arg(long, default_value_t = 10_000)]
    scale_tenants: usize,
    /// Events in one tenant's audit log for the export-memory measurement (0 skips it).
    #[arg(long, default_value_t = 100_000)]
    audit_export_events: usize,
    /// Working directory of the throwaway cluster (wiped at start).
    #[arg(long, default_value = ".rowguard-bench")]
    dir: PathBuf,
    /// Keep PostgreSQL's durability settings (fsync, synchronous_commit) on.
    #[arg(long)]
    durable: bool,
    /// A/B mode: another `rowguard` binary (say, main's before a change) measured against this
    /// build's, alternating, on one fixture; prints both and their ratio, then stops.
    #[arg(long)]
    pub baseline: Option<std::path::PathBuf>,
    /// In A/B mode, environment for the candidate only (`KEY=VALUE`, repeatable): compares
    /// two settings of one build when the baseline is the same binary.
    #[arg(long = "candidate-env", value_parser = parse_env)]
    pub candidate_env: Vec<(String, String)>,
    /// Rounds per workload in A/B mode (each round runs both binaries; the order alternates).
    #[arg(long, default_value_t = 3)]
    pub ab_rounds: usize,
    /// wrk mode: get-by-id driven by wrk (the C load generator, when installed) against
    /// pgbench's naive tenant transaction, in alternating rounds; prints the ratio, then stops.
    #[arg(long)]
    wrk: bool,
    /// Rounds in wrk mode.
    #[arg(long, default_value_t = 3)]
    wrk_rounds: usize,
    /// Database pool size of the service under test.
    #[arg(long, default_value_t = 16)]
    pool_size: u32,
    /// Benchmark against this server instead of a throwaway cluster of the harness's own: a
    /// superuser URL of its maintenance database (plain PostgreSQL, or a Citus coordinator whose
    /// workers it lists). The harness makes and migrates a database `rowguard_bench` there and
    /// sets the service roles' passwords: use a server kept for benchmarks. `--durable` does not
    /// apply; the server's own settings are printed.
    #[arg(long, env = "ROWGUARD_BENCH_DATABASE_URL")]
    database_url: Option<String>,
}

impl Args {
    fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration)
    }
    fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.warmup)
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt().with_env_filter("warn,sqlx=error").with_writer(std::io::stderr).init();
    let service_bin = std::env::current_exe()?.with_file_name("rowguard");
    anyhow::ensure!(
        service_bin.exists(),
        "{} not found: build both binaries with `cargo build --release`",
        service_bin.display()
    );
    let _ = std::fs::remove_dir_all(&args.dir);
    if let Some(url) = &args.database_url {
        std::fs::create_dir_all(&args.dir)?;
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
        return runtime.block_on(async {
            let db = external::prepare(url).await?;
            run(&args, &service_bin, &db.admin_url, &db.app_url, Some(db.flavour)).await
        });
    }
    // On the main thread: the embedded server is tied to the thread that starts it.
    let durability = if args.durable { Durability::Durable } else { Durability::Throwaway };
    let mut cluster = EmbeddedCluster::start(&args.dir, durability).context("starting PostgreSQL")?;
    let admin_url = cluster.superuser_url("rowguard");
    let app_url = cluster.url(APP_ROLE, &cluster.credentials().app_password.clone(), "rowguard");
    // One worker thread for the harness (like pgbench's default -j 1): the service and
    // PostgreSQL get the rest of this 2-core machine.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let result = runtime.block_on(run(&args, &service_bin, &admin_url, &app_url, None));
    drop(runtime);
    cluster.stop();
    result
}

/// `external`: the server's kind when it is not the harness's own cluster (whose database and
/// roles are then made here).
async fn run(
    args: &Args,
    service_bin: &std::path::Path,
    admin_url: &str,
    app_url: &str,
    external: Option<external::Flavour>,
) -> anyhow::Result<()> {
    if external.is_none() {
        migrate::create_roles_and_database(admin_url, &cluster_app_password(app_url)).await?;
    }
    migrate::migrate(admin_url).await?;
    fixture::adopt_bench_items(admin_url).await?;
    println!("# rowguard-bench");
    println!(
        "machine: {} cores; tenants {} x contacts {}; {} connections; {:.0} s per workload after {:.0} s warm-up; {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        args.tenants,
        args.contacts,
        args.connections,
        args.duration,
        args.warmup,
        match external {
            Some(flavour) => format!("{flavour} at --database-url ({})", external::durability(admin_url).await?),
            None if args.durable => "durable PostgreSQL".to_string(),
            None => "PostgreSQL with fsync=off, synchronous_commit=off".to_string(),
        }
    );

    let fixture = std::sync::Arc::new(fixture::provision(admin_url, args.tenants, args.contacts).await?);
    anyhow::ensure!(!args.wrk || wrk::installed(), "wrk is not installed (Debian: apt-get install wrk)");
    // Every mode measures a sealed fixture: the fixture's audit events wait to be sealed, and
    // a sealing pass running under the first measured round (A/B: the first binary's) would
    // weigh on that round alone.
    let mut svc =
        service::Service::start(service_bin, app_url, &args.dir, &fixture.signing_pem, args.pool_size).await?;
    let sealed_in = audit_tree::fixture_sealed(admin_url).await?;
    println!("\nthe fixture's audit events were sealed {:.1} s after the service started", sealed_in.as_secs_f64());
    if let Some(baseline) = &args.baseline {
        svc.stop().await;
        return ab::compare(args, baseline, service_bin, app_url, &fixture).await;
    }
    if args.wrk {
        let (connections, duration) = (args.connections, args.duration());
        let pid_file = args.dir.join("pgdata").join("postmaster.pid");
        let watched =
            wrk::Watched { service_pid: svc.pid(), pid_file: external.is_none().then_some(pid_file.as_path()) };
        let result =
            wrk::compare(svc.addr, &watched, app_url, &fixture, &args.dir, connections, duration, args.wrk_rounds)
                .await;
        svc.stop().await;
        return result;
    }
    println!("\n## HTTP workloads (rowguard serve, release build, pool {})", args.pool_size);
    println!("{}", load::Stats::header());
    let mut get_rps = None;
    for workload in &args.workloads {
        let kind: load::Workload = workload.parse()?;
        let unaudited = kind == load::Workload::CreateUnaudited;
        if unaudited {
            audit_tree::set_contacts_audit(admin_url, false).await?;
        }
        let since = audit_tree::last_seq(admin_url).await?;
        let stats = load::run(svc.addr, &fixture, kind, args.connections, args.warmup(), args.duration()).await;
        if unaudited {
            audit_tree::set_contacts_audit(admin_url, true).await?;
        }
        let stats = stats?;
        if kind == load::Workload::Get {
            get_rps = Some(stats.rps());
        }
        println!("{}", stats.row(workload));
        if matches!(kind, load::Workload::Create | load::Workload::CreateOneTenant) {
            println!("{}", audit_tree::freshness(admin_url, since).await?);
        }
    }
    println!("service RSS after the workloads: {}", svc.memory());

    if !args.no_ceiling {
        let ceiling =
            ceiling::measure(admin_url, app_url, &fixture, args.connections, args.warmup(), args.duration()).await?;
        ceiling.print(get_rps, args.duration);
        let rls =
            ceiling::rls_cost(admin_url, app_url, &fixture, args.connections, args.rls_rounds, args.duration() / 2)
                .await?;
        rls.print();
    }
    if args.audit_export_events > 0 {
        audit_export::measure(admin_url, &svc, &fixture, args.audit_export_events).await?;
    }
    if args.scale_tenants > 0 {
        ops::measure(admin_url, &mut svc, &fixture, args.scale_tenants, args.connections).await?;
    }
    svc.stop().await;
    println!("service peak RSS over the whole run: {}", svc.peak_memory());
    Ok(())
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

fn cluster_app_password(app_url: &str) -> String {
    app_url
        .split_once("://")
        .and_then(|(_, r)| r.split_once('@'))
        .and_then(|(u, _)| u.split_once(':'))
        .map(|(_, p)| p.to_string())
        .unwrap_or_default()
}
