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
    // The welcome's demo login, only where the demo tenant is: seeded now or on an earlier
    // start. Best effort: a failed look-up only leaves the demo login out of the welcome.
    let demo = !seeded.is_empty()
        || match setup.admin_url.as_deref() {
            Some(admin) => rowguard::seed::demo_tenant_exists(admin).await.unwrap_or_else(|e| {
                tracing::debug!(error = %e, "could not look for the demo tenant");
                false
            }),
            None => false,
        };
    let ctx = startup::build_context_with_platform(config, &setup.app_url, setup.platform_url.as_deref()).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    print_welcome(config, addr, &seeded, demo);
    startup::serve(listener, ctx, startup::limits(config), startup::shutdown_signal()).await
}

/// The address, then how to log in: with the demo tenant's owner where the demo tenant exists
/// (`demo`), else how to make a tenant first — never credentials that do not exist.
fn print_welcome(config: &Config, addr: std::net::SocketAddr, seeded: &[String], demo: bool) {
    let base = config.normalized_base_domain();
    println!("rowguard listening on http://{addr}  (docs: http://{addr}/docs)");
    if !seeded.is_empty() {
        println!("demo tenants created: {} — owner@<slug>.test / {}", seeded.join(", "), rowguard::seed::DEMO_PASSWORD);
    }
    let (tenant, email, password) = if demo {
        let slug = rowguard::seed::DEMO_TENANTS[0].0;
        (slug.to_string(), format!("owner@{slug}.test"), rowguard::seed::DEMO_PASSWORD.to_string())
    } else {
        println!(
            "no demo tenant here: `rowguard tenants list` shows the tenants there are (imported ones too); \
             to make one: rowguard tenants create --slug <slug> --name <name> --owner-email <email>"
        );
        ("<slug>".to_string(), "<email>".to_string(), "<password>".to_string())
    };
    println!("try:");
    println!(
        "  curl -s http://{addr}/v1/auth/login -H 'X-Tenant: {tenant}' -H 'Content-Type: application/json' \\\n    \
         -d '{{\"email\":\"{email}\",\"password\":\"{password}\"}}'"
    );
    println!("  (or address a tenant by host: http://{tenant}.{base}:{}/v1/...)", addr.port());
    if config.console {
        println!(
            "console: http://{tenant}.{base}:{}/console/ for the tenant's auditors (owners, admins, auditors); \
             http://{base}:{}/console/ for operators (rowguard operators create)",
            addr.port(),
            addr.port()
        );
    }
}
