//! `rowguard serve` (the default): migrate (built-in, then ROWGUARD_MIGRATIONS_DIR), seed the
//! demo on a fresh embedded cluster, listen.

use anyhow::Context;
use rowguard::config::Config;
use rowguard::startup::{self, DatabaseSetup};

pub(crate) async fn serve(config: &Config, setup: &mut DatabaseSetup) -> anyhow::Result<()> {
    if setup.admin_url.is_some() {
        setup.bootstrap_and_migrate().await.context("bootstrap and migrations")?;
    }
    if let Some(dir) = &config.migrations_dir {
        anyhow::ensure!(
            setup.admin_url.is_some(),
            "ROWGUARD_MIGRATIONS_DIR needs ROWGUARD_ADMIN_DATABASE_URL: migrations run as the owner role, never \
             as the app role"
        );
        super::policies::apply_operator_migrations(setup, dir).await.context("operator migrations")?;
    }
    let embedded = setup.cluster.is_some();
    let mut seeded = Vec::new();
    if embedded && setup.fresh && config.seed_demo {
        seeded = rowguard::seed::seed_demo(setup.admin_url()?).await.context("seeding demo tenants")?;
    }
    let ctx = startup::build_context_with_platform(config, &setup.app_url, setup.platform_url.as_deref()).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    print_welcome(config, addr, &seeded);
    startup::serve(listener, ctx, startup::limits(config), startup::shutdown_signal()).await
}

fn print_welcome(config: &Config, addr: std::net::SocketAddr, seeded: &[String]) {
    let base = config.normalized_base_domain();
    println!("rowguard listening on http://{addr}  (docs: http://{addr}/docs)");
    if !seeded.is_empty() {
        println!("demo tenants created: {} — owner@<slug>.test / {}", seeded.join(", "), rowguard::seed::DEMO_PASSWORD);
    }
    println!("try:");
    println!(
        "  curl -s http://{addr}/v1/auth/login -H 'X-Tenant: acme' -H 'Content-Type: application/json' \\\n    \
         -d '{{\"email\":\"owner@acme.test\",\"password\":\"{}\"}}'",
        rowguard::seed::DEMO_PASSWORD
    );
    println!("  (or address a tenant by host: http://acme.{base}:{}/v1/...)", addr.port());
}
