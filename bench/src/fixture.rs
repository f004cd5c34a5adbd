//! The fixture: T tenants, each with an owner and C contacts, made through the platform path
//! the CLI uses (platform role, one tenant transaction per tenant, never an RLS bypass), and
//! access tokens minted with the key the service under test is given.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use rowguard::auth::JwtKeys;
use rowguard::auth::password::hash_now;
use rowguard::domain::{Email, Role, Slug, TenantId, UserId};
use rowguard::platform::{NewTenant, PlatformConn};
use uuid::Uuid;

pub const OWNER_PASSWORD: &str = "bench-owner-password";
const PROVISIONING_CONNECTIONS: usize = 4;

pub struct TenantFixture {
    pub id: TenantId,
    pub slug: String,
    pub owner: UserId,
    pub token: String,
    pub contacts: Vec<Uuid>,
}

pub struct Fixture {
    pub tenants: Vec<TenantFixture>,
    pub signing_pem: String,
    pub keys: JwtKeys,
    /// One argon2id hash shared by every fixture owner (hashing 10,000 passwords would take
    /// minutes and measure nothing the benchmark is about).
    pub owner_hash: String,
}

pub fn slug_for(i: usize) -> String {
    format!("t{i:05}")
}

pub async fn provision(admin_url: &str, tenants: usize, contacts: usize) -> anyhow::Result<Fixture> {
    let started = Instant::now();
    let mut seed = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut seed);
    let signing_pem = SigningKey::from_bytes(&seed).to_pkcs8_pem(Default::default())?.to_string();
    let keys = JwtKeys::from_pem(&signing_pem, Some("bench"), "rowguard", Duration::from_secs(3600))?;
    let owner_hash = tokio::task::spawn_blocking(|| hash_now(OWNER_PASSWORD)).await??;

    let shared_hash = Arc::new(owner_hash.clone());
    let mut workers = Vec::new();
    for worker in 0..PROVISIONING_CONNECTIONS {
        let admin_url = admin_url.to_string();
        let hash = Arc::clone(&shared_hash);
        workers.push(tokio::spawn(async move {
            let mut platform = PlatformConn::connect(&admin_url).await?;
            let mut made = Vec::new();
            for i in (worker..tenants).step_by(PROVISIONING_CONNECTIONS) {
                made.push(create_one(&mut platform, i, &hash, contacts).await?);
            }
            anyhow::Ok(made)
        }));
    }
    let mut all = Vec::with_capacity(tenants);
    for worker in workers {
        all.extend(worker.await??);
    }
    all.sort_by(|a, b| a.slug.cmp(&b.slug));
    for t in &mut all {
        t.token = keys.issue(t.owner, t.id, Role::Owner)?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "fixture: {tenants} tenants with owners and {} contacts in {secs:.1} s ({:.0} tenants/s, {:.0} rows/s)",
        tenants * contacts,
        tenants as f64 / secs,
        (tenants * (contacts + 1)) as f64 / secs
    );
    Ok(Fixture { tenants: all, signing_pem, keys, owner_hash })
}

/// One tenant with its owner (the platform path of `tenants create`) and its contacts (one
/// bulk INSERT in a tenant transaction).
pub async fn create_one(
    platform: &mut PlatformConn,
    i: usize,
    owner_hash: &str,
    contacts: usize,
) -> anyhow::Result<TenantFixture> {
    let slug = slug_for(i);
    let created = platform
        .create_tenant(NewTenant {
            slug: Slug::parse(&slug)?,
            name: format!("Tenant {i}"),
            owner_email: Email::parse(&format!("owner@{slug}.test"))?,
            owner_password_hash: owner_hash.to_string(),
            domains: vec![],
        })
        .await?;
    let ids: Vec<Uuid> = (0..contacts).map(|_| Uuid::now_v7()).collect();
    if !ids.is_empty() {
        let mut tx = platform.tenant_tx(created.tenant).await?;
        // Multi-row VALUES, not INSERT … SELECT FROM unnest: Citus runs the latter on the
        // coordinator and sends the rows on with COPY, which row-level security refuses; rows
        // given as VALUES go to the tenant's shard as an INSERT. Bound in chunks (the protocol
        // allows 65,535 parameters per statement).
        for (chunk_no, chunk) in ids.chunks(1000).enumerate() {
            let rows: Vec<String> =
                (0..chunk.len()).map(|i| format!("($1, ${}, ${}, ${})", 3 * i + 2, 3 * i + 3, 3 * i + 4)).collect();
            let sql = format!("INSERT INTO contacts (tenant_id, id, name, email) VALUES {}", rows.join(", "));
            let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(created.tenant);
            for (i, id) in chunk.iter().enumerate() {
                let n = chunk_no * 1000 + i + 1;
                insert = insert.bind(*id).bind(format!("Contact {n}")).bind(format!("contact{n}@example.com"));
            }
            insert.execute(tx.conn()).await?;
        }
        // The same rows in the adopted table (`adopt_bench_items`), for `get-adopted`.
        sqlx::query(
            "INSERT INTO bench_items (tenant_id, id, name, email, created_at, updated_at)
             SELECT tenant_id, id, name, email, created_at, updated_at FROM contacts WHERE tenant_id = $1",
        )
        .bind(created.tenant)
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
    }
    Ok(TenantFixture { id: created.tenant, slug, owner: created.owner, token: String::new(), contacts: ids })
}

/// An operator's table shaped like contacts, adopted as `tables adopt` does it, so `get-adopted`
/// reads the same rows through `/v1/data` that `get` reads through `/v1/contacts`.
pub async fn adopt_bench_items(admin_url: &str) -> anyhow::Result<()> {
    use sqlx::{Connection, Executor};
    let mut admin = sqlx::PgConnection::connect(admin_url).await?;
    admin
        .execute(
            "SET ROLE rowguard_owner;
             CREATE TABLE IF NOT EXISTS bench_items (
                 tenant_id uuid NOT NULL REFERENCES tenants (id),
                 id uuid NOT NULL,
                 name text NOT NULL,
                 email text NOT NULL,
                 phone text,
                 organization_id uuid,
                 created_at timestamptz NOT NULL DEFAULT now(),
                 updated_at timestamptz NOT NULL DEFAULT now(),
                 PRIMARY KEY (tenant_id, id));
             RESET ROLE",
        )
        .await?;
    rowguard::migrate::adopt::adopt(&mut admin, "bench_items", None, None, false).await?;
    admin.close().await?;
    Ok(())
}
