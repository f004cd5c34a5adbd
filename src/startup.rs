//! Startup: find or start the database, bootstrap and migrate it, build the `ApiContext`,
//! and serve until Ctrl-C or SIGTERM, then stop what we started.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::audit::AuditSigner;
use crate::auth::sessions::Sessions;
use crate::auth::user_state::UserStateCache;
use crate::auth::{JwtKeys, PasswordHasher};
use crate::cluster::{Durability, EmbeddedCluster};
use crate::config::Config;
use crate::db::{APP_ROLE, Database, PLATFORM_LOGIN_ROLE};
use crate::http::client_ip::TrustedProxies;
use crate::http::layers::rate_limit::RateLimits;
use crate::http::layers::tenant::TenantCache;
use crate::http::{self, ApiContext, ApiState, Limits};
use crate::migrate;
use crate::platform::PlatformDb;

/// Where the database is, and the embedded cluster if we run one.
pub struct DatabaseSetup {
    pub app_url: String,
    pub admin_url: Option<String>,
    /// The platform API's login (`rowguard_platform_login`): generated for the embedded
    /// cluster, ROWGUARD_PLATFORM_DATABASE_URL otherwise. None: the platform API answers 503.
    pub platform_url: Option<String>,
    pub cluster: Option<EmbeddedCluster>,
    /// True when this run created the cluster's database (the first start).
    pub fresh: bool,
}

const DATABASE: &str = "rowguard";

impl DatabaseSetup {
    /// With DATABASE_URL: use that server. Without: start (or attach to) the embedded cluster.
    /// Blocking when it starts a cluster; call it from the main thread (see `EmbeddedCluster::start`).
    pub fn locate(config: &Config) -> anyhow::Result<DatabaseSetup> {
        if let Some(app_url) = &config.database_url {
            return Ok(DatabaseSetup {
                app_url: app_url.clone(),
                admin_url: config.admin_database_url.clone(),
                platform_url: config.platform_database_url.clone(),
                cluster: None,
                fresh: false,
            });
        }
        let cluster = EmbeddedCluster::start(&config.data_dir, Durability::Durable)?;
        let creds = cluster.credentials().clone();
        Ok(DatabaseSetup {
            app_url: cluster.url(APP_ROLE, &creds.app_password, DATABASE),
            admin_url: Some(cluster.superuser_url(DATABASE)),
            platform_url: Some(cluster.url(PLATFORM_LOGIN_ROLE, &creds.platform_password, DATABASE)),
            fresh: false,
            cluster: Some(cluster),
        })
    }

    /// The admin URL, or a clear error for commands that need one.
    pub fn admin_url(&self) -> anyhow::Result<&str> {
        self.admin_url
            .as_deref()
            .context("this command needs ROWGUARD_ADMIN_DATABASE_URL (the bootstrap/admin connection)")
    }

    /// Create roles and database if needed and apply pending migrations (needs the admin URL).
    /// Every command that may meet a fresh database calls this, so it is serialised across
    /// processes by an advisory lock and changes nothing that is already in place: CLI
    /// commands and service instances can start side by side (`bootstrap`).
    pub async fn bootstrap_and_migrate(&mut self) -> anyhow::Result<migrate::MigrationReport> {
        let admin = self.admin_url()?.to_string();
        let app_password = app_password_of(&self.app_url)?;
        let platform_password = self.platform_url.as_deref().map(platform_password_of).transpose()?;
        let (fresh, report) =
            migrate::bootstrap_and_migrate(&admin, &app_password, platform_password.as_deref()).await?;
        self.fresh = fresh;
        Ok(report)
    }
}

/// The app role's password, from its URL: bootstrap (re)sets it so the two always agree.
fn app_password_of(app_url: &str) -> anyhow::Result<String> {
    use std::str::FromStr;
    let options = sqlx::postgres::PgConnectOptions::from_str(app_url).context("DATABASE_URL is not a valid URL")?;
    anyhow::ensure!(
        options.get_username() == APP_ROLE,
        "DATABASE_URL must connect as the `{APP_ROLE}` role (the migrations grant to it by name)"
    );
    let url = url_password(app_url).context("DATABASE_URL has no password for the app role")?;
    Ok(url)
}

/// The platform login's password, from its URL, which must name that role: bootstrap (re)sets it.
fn platform_password_of(platform_url: &str) -> anyhow::Result<String> {
    use std::str::FromStr;
    let options = sqlx::postgres::PgConnectOptions::from_str(platform_url)
        .context("ROWGUARD_PLATFORM_DATABASE_URL is not a valid URL")?;
    anyhow::ensure!(
        options.get_username() == PLATFORM_LOGIN_ROLE,
        "ROWGUARD_PLATFORM_DATABASE_URL must connect as the `{PLATFORM_LOGIN_ROLE}` role"
    );
    url_password(platform_url).context("ROWGUARD_PLATFORM_DATABASE_URL has no password")
}

fn url_password(url: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    Some(percent_encoding::percent_decode_str(url.password()?).decode_utf8_lossy().into_owned())
}

/// Build the state every request shares; the platform API gets ROWGUARD_PLATFORM_DATABASE_URL.
pub async fn build_context(config: &Config, app_url: &str) -> anyhow::Result<ApiContext> {
    build_context_with_platform(config, app_url, config.platform_database_url.as_deref()).await
}

/// As `build_context`, with the platform login's URL (the embedded cluster's, in `serve`).
pub async fn build_context_with_platform(
    config: &Config,
    app_url: &str,
    platform_url: Option<&str>,
) -> anyhow::Result<ApiContext> {
    let db = Database::connect(app_url, config.db_pool_size, http::routes::HOT_STATEMENTS)
        .await
        .context("connecting as the app role")?;
    db.ensure_backend_ready().await?;
    let keys = match &config.jwt_private_key {
        Some(pem) => {
            JwtKeys::from_pem(pem, config.jwt_key_id.as_deref(), &config.jwt_issuer, config.access_token_ttl())?
        }
        None => {
            std::fs::create_dir_all(&config.data_dir)?;
            JwtKeys::load_or_generate(
                &config.data_dir.join("jwt-ed25519.pem"),
                &config.jwt_issuer,
                config.access_token_ttl(),
            )?
        }
    };
    let keys = match &config.jwt_verify_keys {
        Some(text) => keys.with_verify_keys(text)?,
        None => keys,
    };
    let platform = match platform_url {
        Some(url) => {
            let platform = PlatformDb::connect(url, 4).await.context("connecting as the platform login")?;
            platform.ensure_backend_ready().await?;
            Some(platform)
        }
        None => None,
    };
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let hasher = tokio::task::spawn_blocking(move || PasswordHasher::new(cores)).await??;
    // Operators are few: one hash at a time for them (and signups) is plenty, and leaves the
    // tenant budget whole whatever arrives at the platform login.
    let platform_hasher = hasher.with_budget(1);
    let tenants = Arc::new(TenantCache::new(db.clone(), Duration::from_secs(30)));
    let audit = Arc::new(
        AuditSigner::load(config.audit_signing_key.as_deref(), &config.data_dir.join("audit-ed25519.pem"))?
            .named(&config.normalized_base_domain()),
    );
    spawn_checkpoints(db.clone(), Arc::clone(&audit), Duration::from_secs(config.audit_checkpoint_secs));
    let metrics = Arc::new(crate::metrics::Metrics::default());
    metrics.spawn_sampling();
    spawn_sealer(db.clone(), Arc::clone(&audit), Arc::clone(&metrics));
    let workers =
        crate::jobs::Workers::spawn(db.clone(), crate::jobs::WorkerSettings::from_config(config), Arc::clone(&metrics));
    // A minute's backstop only: the users trigger's NOTIFY drops an entry within milliseconds.
    let users = Arc::new(UserStateCache::new(db.clone(), Duration::from_secs(60)));
    let data = crate::data::Tables::watch(db.clone()).await.context("reading the adopted tables")?;
    // One listener connection for every change feed.
    let (tenant_watcher, user_watcher) = (Arc::clone(&tenants), Arc::clone(&users));
    let feeds = vec![
        crate::db::registry::tenant_changes(move || tenant_watcher.invalidate_all()),
        crate::db::user_changes::user_changes(move |change| user_watcher.forget(change)),
        data.feed(),
    ];
    let listener = db.clone();
    tokio::spawn(async move { listener.listen(feeds).await });
    let rate_limits = Arc::new(RateLimits::new(config.rate_limits));
    rate_limits.spawn_pruning();
    let trusted_proxies = Arc::new(TrustedProxies::new(config.trusted_proxies.clone()));
    let keys = Arc::new(keys);
    let sessions = Arc::new(Sessions::new(
        hasher.clone(),
        Arc::clone(&keys),
        Arc::clone(&rate_limits) as Arc<dyn crate::limits::AccountGate>,
        Arc::clone(&users),
    ));
    Ok(ApiContext::from(ApiState {
        data,
        door: http::extract::Door::new(db),
        tenants,
        users: http::layers::auth::UserStates::new(users),
        keys,
        sessions,
        hasher,
        platform_hasher,
        base_domain: config.normalized_base_domain().into(),
        rate_limits,
        trusted_proxies,
        hsts: config.hsts_enabled(),
        audit,
        access_sampler: Arc::default(),
        platform,
        signup: config.signup,
        console: config
            .console
            .then(|| http::console::ConsoleSettings { secure_cookies: config.console_secure_cookies() }),
        exports: Arc::default(),
        metrics,
        metrics_token: config.metrics_token.as_deref().map(Arc::from),
        workers,
        webhooks_allow_local: config.webhooks_allow_local(),
    }))
}

/// Sign a checkpoint of every tenant's audit chain that moved, every `every`.
fn spawn_checkpoints(db: Database, signer: Arc<AuditSigner>, every: Duration) {
    if every.is_zero() {
        return;
    }
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.tick().await; // the first tick is immediate; start one period in
        loop {
            ticks.tick().await;
            match db.checkpoint_all(&signer).await {
                Ok(n) if n > 0 => tracing::info!(checkpoints = n, "signed audit checkpoints"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "audit checkpoints failed"),
            }
        }
    });
}

/// How often the sealer looks for committed audit events to seal, and how long the oldest may
/// wait before it says so in the log.
const SEAL_EVERY: Duration = Duration::from_millis(200);
const SEAL_STUCK_AFTER: Duration = Duration::from_secs(30);

/// Seal every tenant's committed audit events into its Merkle tree, continuously (sql/V21).
/// Several instances may run this at once: each tenant is sealed by one of them at a time.
/// The backlog is measured about once a second into `/metrics`, and a sealer that falls
/// behind — a long transaction holding the horizon back, or failures — says so in the log.
fn spawn_sealer(db: Database, signer: Arc<AuditSigner>, metrics: Arc<crate::metrics::Metrics>) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(SEAL_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut round: u64 = 0;
        let mut warned_at: Option<std::time::Instant> = None;
        loop {
            ticks.tick().await;
            round += 1;
            loop {
                match db.seal_audit_logs(&signer, 64).await {
                    Ok(pass) => {
                        metrics.audit_sealed(u64::try_from(pass.events).unwrap_or(0));
                        for _ in 0..pass.failed {
                            metrics.audit_seal_failed();
                        }
                        if !pass.more {
                            break;
                        }
                    }
                    // The pool closes as the service shuts down: the sealer ends with it (what
                    // it had not sealed, the next instance seals).
                    Err(e) if matches!(e.downcast_ref::<sqlx::Error>(), Some(sqlx::Error::PoolClosed)) => return,
                    Err(e) => {
                        metrics.audit_seal_failed();
                        tracing::warn!(error = %e, "sealing audit events failed; retrying");
                        break;
                    }
                }
            }
            if round.is_multiple_of(5) {
                match db.audit_unsealed_backlog().await {
                    Ok(backlog) => {
                        metrics.audit_backlog(backlog.transactions, backlog.oldest_seconds);
                        let stuck = backlog.oldest_seconds > SEAL_STUCK_AFTER.as_secs_f64();
                        if stuck && warned_at.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
                            tracing::warn!(
                                transactions = backlog.transactions,
                                oldest_seconds = backlog.oldest_seconds,
                                "audit events wait to be sealed for longer than {}s: a long-running transaction \
                                 holds the horizon back, or sealing fails (see rowguard_audit_seal_failures_total)",
                                SEAL_STUCK_AFTER.as_secs()
                            );
                            warned_at = Some(std::time::Instant::now());
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "could not measure the audit sealing backlog"),
                }
            }
        }
    });
}

pub fn limits(config: &Config) -> Limits {
    Limits {
        request_timeout: config.request_timeout(),
        body_limit_bytes: config.body_limit_bytes,
        header_read_timeout: Duration::from_secs(config.header_read_timeout_secs),
        max_connections: config.max_connections.max(1),
    }
}

/// Serve on `listener` until `shutdown` resolves, then drain in-flight requests (bounded).
pub async fn serve(
    listener: tokio::net::TcpListener,
    ctx: ApiContext,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = http::router(ctx.clone(), limits);
    serve_router(listener, app, limits, shutdown).await;
    // Deliveries in flight finish and are recorded before the pool closes.
    if let Some(workers) = &ctx.workers {
        workers.shutdown().await;
    }
    ctx.door.close().await;
    Ok(())
}

/// How long in-flight requests get to finish after the shutdown signal.
const DRAIN: Duration = Duration::from_secs(10);

/// The accept loop, over hyper's HTTP/1 connection builder rather than `axum::serve`, for the
/// two limits `axum::serve` does not set: a header read timeout (hyper has one, but it only
/// runs with a timer, which `axum::serve` does not give it — so a client sending one header
/// byte a minute held its connection forever) and a bound on open connections (each costs a
/// task, buffers and a file descriptor; past the bound we stop accepting, and new clients
/// wait in the kernel's queue instead of exhausting descriptors the database also needs).
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    use hyper::server::conn::http1;
    use hyper_util::rt::TokioIo;
    use tower::ServiceExt as _;

    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let (closing_tx, closing_rx) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    // Zero turns the timeout off (behind a proxy that enforces its own, say).
    let header_read_timeout = (!limits.header_read_timeout.is_zero()).then_some(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: not fatal. Wait a
                    // little so an EMFILE does not become a busy loop.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let mut request = request.map(axum::body::Body::new);
            request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            app.clone().oneshot(request)
        });
        // A builder per connection: each gets a timer of its own (see `header_timer`).
        let connection = http1::Builder::new()
            .timer(crate::http::header_timer::ConnectionTimer::new())
            .header_read_timeout(header_read_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let mut closing = closing_rx.clone();
        // Finished connections are reaped as we go, so the set holds only open ones.
        while connections.try_join_next().is_some() {}
        connections.spawn(async move {
            let _slot = slot;
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = closing.wait_for(|closing| *closing) => connection.as_mut().graceful_shutdown(),
            }
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error while draining");
            }
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN, drained).await.is_err() {
        tracing::warn!("in-flight requests did not finish within {} s; stopping anyway", DRAIN.as_secs());
        connections.abort_all();
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down");
}

/// The logger: `format` "json" gives one JSON object per line with the event's fields at the
/// top level (request lines: request_id, tenant, user, method, path, status, ms); anything
/// else gives human-readable lines. `filter` is tracing's EnvFilter syntax (ROWGUARD_LOG);
/// request lines have the target `rowguard::request`.
pub fn log_subscriber<W>(
    filter: &str,
    format: &str,
    writer: W,
    ansi: bool,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    if format == "json" {
        Box::new(builder.json().flatten_event(true).finish())
    } else {
        Box::new(builder.with_ansi(ansi).finish())
    }
}
