//! The load generator: fixed concurrency, one kept-alive HTTP/1.1 connection per worker,
//! random tenants and rows, every answer's status counted (non-2xx are never hidden).

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rand::Rng;

use crate::fixture::{Fixture, OWNER_PASSWORD};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    Get,
    List,
    Create,
    Login,
    Mixed,
    /// get-by-id on most connections while a few send logins as fast as they can.
    GetUnderLoginFlood,
    /// get-by-id of the same rows in an adopted table (`bench_items`, served by /v1/data).
    GetAdopted,
    /// Creates, all in the fixture's first tenant (its audit log takes every event).
    CreateOneTenant,
    /// Creates spread over the tenants with the contacts' audit trigger disabled (the harness
    /// does it on its own throwaway cluster: a benchmark baseline, no setting of the service).
    CreateUnaudited,
}

impl FromStr for Workload {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Workload> {
        Ok(match s {
            "get" => Workload::Get,
            "list" => Workload::List,
            "create" => Workload::Create,
            "login" => Workload::Login,
            "mixed" => Workload::Mixed,
            "get-under-login-flood" => Workload::GetUnderLoginFlood,
            "get-adopted" => Workload::GetAdopted,
            "create-one-tenant" => Workload::CreateOneTenant,
            "create-unaudited" => Workload::CreateUnaudited,
            other => anyhow::bail!("unknown workload {other:?}"),
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Get,
    GetAdopted,
    List,
    Create,
    CreateInFirstTenant,
    Login,
}

/// Latencies (µs) and status counts of one measured window.
#[derive(Default)]
pub struct Stats {
    latencies: Vec<u32>,
    non_2xx: u64,
    errors: u64,
    elapsed: Duration,
    /// For the login flood: the get-by-id requests alone.
    reads: Option<Box<Stats>>,
}

impl Stats {
    pub fn rps(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(sorted: &[u32], p: f64) -> f64 {
        if sorted.is_empty() {
            return 0.0;
        }
        let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        f64::from(sorted[i]) / 1000.0
    }

    /// The 99th percentile latency, ms.
    pub fn p99(&self) -> f64 {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        Self::percentile(&sorted, 0.99)
    }

    /// Answers that were not 2xx, plus transport errors.
    pub fn failures(&self) -> u64 {
        self.non_2xx + self.errors
    }

    pub fn header() -> String {
        format!(
            "{:<24} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7}\n{}",
            "workload",
            "req/s",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "non-2xx",
            "errors",
            "-".repeat(80)
        )
    }

    pub fn row(&self, name: &str) -> String {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let mut line = format!(
            "{:<24} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>8} {:>7}",
            name,
            self.rps(),
            Self::percentile(&sorted, 0.50),
            Self::percentile(&sorted, 0.99),
            Self::percentile(&sorted, 0.999),
            self.non_2xx,
            self.errors
        );
        if let Some(reads) = &self.reads {
            line.push('\n');
            line.push_str(&reads.row("  of which get-by-id"));
        }
        line
    }

    fn merge(&mut self, other: Stats) {
        self.latencies.extend(other.latencies);
        self.non_2xx += other.non_2xx;
        self.errors += other.errors;
    }
}

fn pick_op(workload: Workload, worker: usize, connections: usize, rng: &mut impl Rng) -> Op {
    match workload {
        Workload::Get => Op::Get,
        Workload::GetAdopted => Op::GetAdopted,
        Workload::List => Op::List,
        Workload::Create | Workload::CreateUnaudited => Op::Create,
        Workload::CreateOneTenant => Op::CreateInFirstTenant,
        Workload::Login => Op::Login,
        Workload::Mixed => match rng.random_range(0..100) {
            0..60 => Op::Get,
            60..80 => Op::List,
            _ => Op::Create,
        },
        // One connection in eight floods logins.
        Workload::GetUnderLoginFlood => {
            if worker < connections.div_ceil(8) {
                Op::Login
            } else {
                Op::Get
            }
        }
    }
}

fn build(op: Op, fixture: &Fixture, rng: &mut impl Rng) -> Request<Full<Bytes>> {
    let tenant = if op == Op::CreateInFirstTenant {
        &fixture.tenants[0]
    } else {
        &fixture.tenants[rng.random_range(0..fixture.tenants.len())]
    };
    let builder = Request::builder().header("host", format!("{}.localhost", tenant.slug));
    let auth = format!("Bearer {}", tenant.token);
    let request = match op {
        Op::Get => {
            let id =
                tenant.contacts.get(rng.random_range(0..tenant.contacts.len().max(1))).copied().unwrap_or_default();
            builder.uri(format!("/v1/contacts/{id}")).header("authorization", auth).body(Full::default())
        }
        Op::GetAdopted => {
            let id =
                tenant.contacts.get(rng.random_range(0..tenant.contacts.len().max(1))).copied().unwrap_or_default();
            builder.uri(format!("/v1/data/bench_items/{id}")).header("authorization", auth).body(Full::default())
        }
        Op::List => builder.uri("/v1/contacts?limit=20").header("authorization", auth).body(Full::default()),
        Op::Create | Op::CreateInFirstTenant => {
            let n: u32 = rng.random();
            let body = format!(r#"{{"name":"Bench {n}","email":"bench{n}@example.com"}}"#);
            builder
                .method("POST")
                .uri("/v1/contacts")
                .header("authorization", auth)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
        }
        Op::Login => {
            let body = format!(r#"{{"email":"owner@{}.test","password":"{OWNER_PASSWORD}"}}"#, tenant.slug);
            builder
                .method("POST")
                .uri("/v1/auth/login")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
        }
    };
    request.unwrap_or_default()
}

/// Run one workload: warm up, then measure for `duration`.
pub async fn run(
    addr: SocketAddr,
    fixture: &Arc<Fixture>,
    workload: Workload,
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Stats> {
    let start = Instant::now() + warmup;
    let end = start + duration;
    let mut workers = Vec::new();
    for worker in 0..connections {
        let fixture = Arc::clone(fixture);
        workers
            .push(tokio::spawn(async move { drive(addr, &fixture, workload, worker, connections, start, end).await }));
    }
    let mut total = Stats::default();
    let mut reads = Stats::default();
    for w in workers {
        let (all, gets) = w.await??;
        total.merge(all);
        reads.merge(gets);
    }
    total.elapsed = duration;
    if workload == Workload::GetUnderLoginFlood {
        reads.elapsed = duration;
        total.reads = Some(Box::new(reads));
    }
    Ok(total)
}

async fn drive(
    addr: SocketAddr,
    fixture: &Fixture,
    workload: Workload,
    worker: usize,
    connections: usize,
    start: Instant,
    end: Instant,
) -> anyhow::Result<(Stats, Stats)> {
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng();
    let mut all = Stats::default();
    let mut gets = Stats::default();
    let mut sender = connect(addr).await?;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let op = pick_op(workload, worker, connections, &mut rng);
        let request = build(op, fixture, &mut rng);
        let sent = Instant::now();
        let outcome = async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            response.into_body().collect().await?;
            anyhow::Ok(status)
        }
        .await;
        let micros = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
        if sent < start {
            if outcome.is_err() {
                sender = connect(addr).await?;
            }
            continue; // warm-up
        }
        match outcome {
            Ok(status) => {
                all.latencies.push(micros);
                if !status.is_success() {
                    all.non_2xx += 1;
                }
                if op == Op::Get {
                    gets.latencies.push(micros);
                    if !status.is_success() {
                        gets.non_2xx += 1;
                    }
                }
            }
            Err(_) => {
                all.errors += 1;
                sender = connect(addr).await?;
            }
        }
    }
    Ok((all, gets))
}

async fn connect(addr: SocketAddr) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// One `GET /v1/me` per tenant, `connections` at a time: loads every tenant into the
/// service's caches. Returns the count of non-2xx answers.
pub async fn touch_all(addr: SocketAddr, tenants: Vec<(String, String)>, connections: usize) -> anyhow::Result<u64> {
    let tenants = Arc::new(tenants);
    let mut workers = Vec::new();
    for worker in 0..connections {
        let tenants = Arc::clone(&tenants);
        workers.push(tokio::spawn(async move {
            let mut sender = connect(addr).await?;
            let mut bad = 0u64;
            for (slug, token) in tenants.iter().skip(worker).step_by(connections) {
                let request = Request::builder()
                    .uri("/v1/me")
                    .header("host", format!("{slug}.localhost"))
                    .header("authorization", format!("Bearer {token}"))
                    .body(Full::default())?;
                sender.ready().await?;
                let response = sender.send_request(request).await?;
                if !response.status().is_success() {
                    bad += 1;
                }
                response.into_body().collect().await?;
            }
            anyhow::Ok(bad)
        }));
    }
    let mut bad = 0;
    for w in workers {
        bad += w.await??;
    }
    Ok(bad)
}
