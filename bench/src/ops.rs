//! Tenancy operations at scale: provisioning one tenant (with its owner) and applying one
//! schema migration, at the fixture's size and again after growing to `scale` tenants, plus
//! the service's memory with every tenant loaded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rowguard::auth::password::hash_now;
use rowguard::domain::Role;
use rowguard::platform::PlatformConn;
use sqlx::{Connection, Executor, PgConnection};

use crate::fixture::{Fixture, create_one};
use crate::service::Service;

const SAMPLES: usize = 50;

pub async fn measure(
    admin_url: &str,
    svc: &mut Service,
    fixture: &Arc<Fixture>,
    scale: usize,
    connections: usize,
) -> anyhow::Result<()> {
    println!("\n## Tenancy operations");
    let hash_times = {
        let mut v = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            tokio::task::spawn_blocking(|| hash_now("a tenant owner's password")).await??;
            v.push(t.elapsed());
        }
        v
    };
    println!(
        "argon2id hash of the owner's password (done once per tenant, before its transaction): median {:.1} ms",
        ms(median(&hash_times))
    );
    println!(
        "{:>9} {:>22} {:>22} {:>26}",
        "tenants", "provision p50 (ms)", "provision p99 (ms)", "ADD COLUMN on contacts (ms)"
    );
    let mut platform = PlatformConn::connect(admin_url).await?;
    let mut next = fixture.tenants.len();
    let mut made = Vec::new();
    for target in [fixture.tenants.len(), scale.max(fixture.tenants.len())] {
        // Grow to the target (no contacts for the extra tenants), four connections at a time.
        if next < target {
            made.extend(grow(admin_url, &fixture.owner_hash, next, target).await?);
            next = target;
        }
        let mut samples = Vec::new();
        for _ in 0..SAMPLES {
            let t = Instant::now();
            made.push(create_one(&mut platform, next, &fixture.owner_hash, 0).await?);
            samples.push(t.elapsed());
            next += 1;
        }
        let migration = add_column(admin_url).await?;
        samples.sort();
        println!(
            "{:>9} {:>22.2} {:>22.2} {:>26.1}",
            target,
            ms(samples[samples.len() / 2]),
            ms(samples[samples.len() * 99 / 100]),
            ms(migration)
        );
    }
    let mut everyone: Vec<(String, String)> =
        fixture.tenants.iter().map(|t| (t.slug.clone(), t.token.clone())).collect();
    for t in &made {
        everyone.push((t.slug.clone(), fixture.keys.issue(t.owner, t.id, Role::Owner)?));
    }
    let total = everyone.len();
    let started = Instant::now();
    let bad = crate::load::touch_all(svc.addr, everyone, connections).await?;
    println!(
        "GET /v1/me once for each of {total} tenants in {:.1} s ({bad} non-2xx); service {}",
        started.elapsed().as_secs_f64(),
        svc.memory()
    );
    Ok(())
}

async fn grow(
    admin_url: &str,
    hash: &str,
    from: usize,
    to: usize,
) -> anyhow::Result<Vec<crate::fixture::TenantFixture>> {
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..4 {
        let (admin_url, hash) = (admin_url.to_string(), hash.to_string());
        workers.push(tokio::spawn(async move {
            let mut platform = PlatformConn::connect(&admin_url).await?;
            let mut made = Vec::new();
            for i in (from + w..to).step_by(4) {
                made.push(create_one(&mut platform, i, &hash, 0).await?);
            }
            anyhow::Ok(made)
        }));
    }
    let mut made = Vec::new();
    for w in workers {
        made.extend(w.await??);
    }
    println!("(grew from {from} to {to} tenants in {:.1} s)", started.elapsed().as_secs_f64());
    Ok(made)
}

/// One schema migration as the owner role: add a nullable column to contacts (and drop it
/// again so the next measurement starts from the same schema). Only the ADD is timed.
async fn add_column(admin_url: &str) -> anyhow::Result<Duration> {
    let mut conn = PgConnection::connect(admin_url).await?;
    conn.execute("SET ROLE rowguard_owner").await?;
    let t = Instant::now();
    conn.execute("ALTER TABLE contacts ADD COLUMN bench_note text").await?;
    let took = t.elapsed();
    conn.execute("ALTER TABLE contacts DROP COLUMN bench_note").await?;
    conn.close().await?;
    Ok(took)
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
