//! The database ceiling, measured in the same run as the HTTP workloads: clients that send
//! exactly the SQL of one get-by-id request (through the service's own `TenantTx`), the naive
//! four-statement form, and a bare lookup; then the cost of RLS itself, interleaved.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use rowguard::db::{Database, HotStatement, Literal, TenantTx};
use rowguard::domain::{TenantId, UserId};
use rowguard::http::routes::contacts::GET_CONTACT;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, Executor, PgConnection, PgPool};
use uuid::Uuid;

use crate::fixture::Fixture;

#[derive(Clone, Copy)]
enum Form {
    /// `SET LOCAL …; EXECUTE <lookup>` in one message (one implicit transaction, one round
    /// trip): what the service sends, through its own `TenantTx::read_once`.
    Service,
    /// The same transaction and statement as a role that bypasses RLS (explicit filter only).
    ServiceWithoutRls,
    /// BEGIN; SELECT set_config($1, true); the lookup; COMMIT.
    Naive,
    /// The lookup alone, bypassing RLS (no transaction, no setting).
    Bare,
}

struct Clients {
    db: Database,
    /// The same, as a role that bypasses RLS.
    no_rls: Database,
    raw: PgPool,
    no_rls_raw: PgPool,
    fixture: Arc<Fixture>,
}

pub struct Ceiling {
    service: f64,
    naive: f64,
    bare: f64,
    pgbench_naive: Option<f64>,
}

static BENCH_STATEMENTS: [HotStatement; 1] = [GET_CONTACT];

/// The yardstick for "without RLS": the same statement on the same table, read by a role
/// that bypasses RLS. Same rows, same pages, same plan shape — only the policy differs. The
/// role exists only in the benchmark's throwaway cluster (never give the service such a role).
const NO_RLS_ROLE: &str = "rowguard_bench_norls";

async fn no_rls_url(admin_url: &str, app_url: &str) -> anyhow::Result<String> {
    let password = rowguard::cluster::random_secret();
    let mut admin = PgConnection::connect(admin_url).await?;
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{NO_RLS_ROLE}') THEN
                 CREATE ROLE {NO_RLS_ROLE} LOGIN BYPASSRLS;
               END IF;
             END $$;
             ALTER ROLE {NO_RLS_ROLE} PASSWORD '{password}';
             GRANT CONNECT ON DATABASE rowguard TO {NO_RLS_ROLE};
             GRANT USAGE ON SCHEMA public TO {NO_RLS_ROLE};
             GRANT SELECT ON contacts TO {NO_RLS_ROLE};"
        )))
        .await?;
    admin.close().await?;
    let (scheme, rest) = app_url.split_once("://").ok_or_else(|| anyhow::anyhow!("app URL"))?;
    let (_, host) = rest.split_once('@').ok_or_else(|| anyhow::anyhow!("app URL"))?;
    Ok(format!("{scheme}://{NO_RLS_ROLE}:{password}@{host}"))
}

impl Clients {
    async fn new(
        app_url: &str,
        no_rls_url: &str,
        fixture: &Arc<Fixture>,
        connections: usize,
    ) -> anyhow::Result<Clients> {
        let size = u32::try_from(connections)?;
        let db = Database::connect(app_url, size, &BENCH_STATEMENTS).await?;
        let no_rls = Database::connect(no_rls_url, size, &BENCH_STATEMENTS).await?;
        let no_rls_raw =
            PgPoolOptions::new().max_connections(size).test_before_acquire(false).connect(no_rls_url).await?;
        let raw = PgPoolOptions::new().max_connections(size).test_before_acquire(false).connect(app_url).await?;
        Ok(Clients { db, no_rls, raw, no_rls_raw, fixture: Arc::clone(fixture) })
    }

    fn pick(&self, rng: &mut impl Rng) -> (TenantId, UserId, Uuid) {
        let t = &self.fixture.tenants[rng.random_range(0..self.fixture.tenants.len())];
        (t.id, t.owner, t.contacts[rng.random_range(0..t.contacts.len().max(1))])
    }

    async fn once(&self, form: Form, rng: &mut impl Rng) -> anyhow::Result<()> {
        let (tenant, user, contact) = self.pick(rng);
        let lookup = |sql: &'static str| sqlx::query(sql).bind(tenant).bind(contact);
        match form {
            Form::Service | Form::ServiceWithoutRls => {
                let db = if matches!(form, Form::Service) { &self.db } else { &self.no_rls };
                let args = [Literal::Uuid(tenant.0), Literal::Uuid(contact)];
                let rows = TenantTx::read_once(db, tenant, Some(user), &GET_CONTACT, &args).await?;
                anyhow::ensure!(rows.len() == 1, "lookup found nothing");
            }
            Form::Naive => {
                let mut tx = self.raw.begin().await?;
                sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
                    .bind(tenant.0.to_string())
                    .execute(&mut *tx)
                    .await?;
                let row = lookup(GET_CONTACT.sql).fetch_optional(&mut *tx).await?;
                anyhow::ensure!(row.is_some(), "lookup found nothing");
                tx.commit().await?;
            }
            Form::Bare => {
                lookup(GET_CONTACT.sql).fetch_optional(&self.no_rls_raw).await?;
            }
        }
        Ok(())
    }

    /// Transactions per second of `form` at `connections` concurrency.
    async fn tps(
        self: &Arc<Self>,
        form: Form,
        connections: usize,
        warmup: Duration,
        duration: Duration,
    ) -> anyhow::Result<f64> {
        let start = Instant::now() + warmup;
        let end = start + duration;
        let mut tasks = Vec::new();
        for _ in 0..connections {
            let clients = Arc::clone(self);
            tasks.push(tokio::spawn(async move {
                let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng();
                let mut done = 0u64;
                while Instant::now() < end {
                    clients.once(form, &mut rng).await?;
                    if Instant::now() >= start {
                        done += 1;
                    }
                }
                anyhow::Ok(done)
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await??;
        }
        Ok(total as f64 / duration.as_secs_f64())
    }
}

pub async fn measure(
    admin_url: &str,
    app_url: &str,
    fixture: &Arc<Fixture>,
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Ceiling> {
    let no_rls = no_rls_url(admin_url, app_url).await?;
    let clients = Arc::new(Clients::new(app_url, &no_rls, fixture, connections).await?);
    let service = clients.tps(Form::Service, connections, warmup, duration).await?;
    let naive = clients.tps(Form::Naive, connections, warmup, duration).await?;
    let bare = clients.tps(Form::Bare, connections, warmup, duration).await?;
    let pgbench_naive = pgbench_naive(app_url, fixture, connections, duration).await;
    Ok(Ceiling { service, naive, bare, pgbench_naive })
}

impl Ceiling {
    pub fn print(&self, get_rps: Option<f64>, secs: f64) {
        println!(
            "\n## Database ceiling (same database and concurrency, {secs:.0} s each, sqlx clients in this process)"
        );
        println!("{:<58} {:>10}", "what the client sends", "tx/s");
        println!("{}", "-".repeat(70));
        println!("{:<58} {:>10.0}", "get-by-id's SQL: SET LOCAL; EXECUTE (1 message, 1 trip)", self.service);
        println!("{:<58} {:>10.0}", "naive: BEGIN; set_config($1); SELECT; COMMIT", self.naive);
        println!("{:<58} {:>10.0}", "bare primary-key lookup, no RLS, no transaction", self.bare);
        match self.pgbench_naive {
            Some(tps) => println!("{:<58} {:>10.0}", "naive, pgbench -M prepared (one row, for reference)", tps),
            None => println!("(pgbench not found: install postgresql-contrib for its reference figure)"),
        }
        if let Some(rps) = get_rps {
            println!(
                "HTTP get-by-id / its SQL: {:.2}   / naive form: {:.2}   / bare lookup: {:.2}",
                rps / self.service,
                rps / self.naive,
                rps / self.bare
            );
            if let Some(tps) = self.pgbench_naive {
                println!(
                    "HTTP get-by-id / pgbench naive: {:.2} (this harness's client; `--wrk` measures with wrk)",
                    rps / tps
                );
            }
        }
    }
}

pub struct RlsCost {
    with_rls: Vec<f64>,
    without: Vec<f64>,
}

/// The same transaction with RLS and the tenant setting, and on a copy of the table without
/// RLS using only the explicit filter, in alternating rounds so drift hits both alike.
pub async fn rls_cost(
    admin_url: &str,
    app_url: &str,
    fixture: &Arc<Fixture>,
    connections: usize,
    rounds: usize,
    each: Duration,
) -> anyhow::Result<RlsCost> {
    let no_rls = no_rls_url(admin_url, app_url).await?;
    let clients = Arc::new(Clients::new(app_url, &no_rls, fixture, connections).await?);
    let warmup = Duration::from_millis(500);
    let mut cost = RlsCost { with_rls: Vec::new(), without: Vec::new() };
    for round in 0..rounds {
        // Alternate which goes first, too.
        let order = if round % 2 == 0 { [true, false] } else { [false, true] };
        for rls in order {
            let form = if rls { Form::Service } else { Form::ServiceWithoutRls };
            let tps = clients.tps(form, connections, warmup, each).await?;
            if rls { cost.with_rls.push(tps) } else { cost.without.push(tps) }
        }
    }
    Ok(cost)
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

impl RlsCost {
    pub fn print(&self) {
        let (with, without) = (median(&self.with_rls), median(&self.without));
        println!("\n## Cost of RLS ({} interleaved rounds, medians)", self.with_rls.len());
        println!("with RLS + tenant setting:      {with:>9.0} tx/s   rounds: {}", fmt_rounds(&self.with_rls));
        println!("same SQL, role bypassing RLS:   {without:>9.0} tx/s   rounds: {}", fmt_rounds(&self.without));
        let ratios: Vec<f64> = self.with_rls.iter().zip(&self.without).map(|(a, b)| a / b).collect();
        println!(
            "RLS throughput / no-RLS throughput: {:.3} (median of per-round ratios {:.3}; overhead {:.1}%)",
            with / without,
            median(&ratios),
            (1.0 - median(&ratios)) * 100.0
        );
    }
}

fn fmt_rounds(v: &[f64]) -> String {
    v.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(" ")
}

/// pgbench's figure for the naive form on one fixed row: a cross-check of the sqlx client's
/// own overhead. None when pgbench is not installed.
pub(crate) async fn pgbench_naive(
    app_url: &str,
    fixture: &Arc<Fixture>,
    connections: usize,
    duration: Duration,
) -> Option<f64> {
    let t = fixture.tenants.first()?;
    let script = std::env::temp_dir().join(format!("rowguard-bench-naive-{}.sql", std::process::id()));
    let sql = "BEGIN;\nSELECT set_config('app.tenant_id', :tid, true);\n\
               SELECT id, name, email, phone, created_at, updated_at FROM contacts WHERE tenant_id = :tid::uuid AND id = :cid::uuid;\n\
               COMMIT;\n";
    std::fs::write(&script, sql).ok()?;
    let output = tokio::process::Command::new("pgbench")
        .args(["-n", "-M", "prepared", "-j", "1", "-c", &connections.to_string()])
        .args(["-T", &duration.as_secs().max(1).to_string()])
        .arg("-D")
        .arg(format!("tid={}", t.id))
        .arg("-D")
        .arg(format!("cid={}", t.contacts.first()?))
        .arg("-f")
        .arg(&script)
        .arg(app_url)
        .output()
        .await
        .ok()?;
    let _ = std::fs::remove_file(&script);
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
}
