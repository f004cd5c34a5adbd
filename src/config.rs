//! Configuration: every setting the service reads from the environment, with its default,
//! in one place. clap reads the variables, so `rowguard --help` lists them all.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// The service's own connection (the app role). Unset: run an embedded PostgreSQL.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,

    /// Bootstrap/admin connection: creates the roles and database, runs migrations, and
    /// backs the operator CLI. Only needed with DATABASE_URL.
    #[arg(long, env = "ROWGUARD_ADMIN_DATABASE_URL", global = true, hide_env_values = true)]
    pub admin_database_url: Option<String>,

    /// The platform API's connection, as `rowguard_platform_login` (with DATABASE_URL; the
    /// embedded cluster makes its own). Unset: the platform API answers 503.
    #[arg(long, env = "ROWGUARD_PLATFORM_DATABASE_URL", global = true, hide_env_values = true)]
    pub platform_database_url: Option<String>,

    /// Self-service signup (`POST /platform/v1/signup`): creates a trial tenant and its owner.
    #[arg(long, env = "ROWGUARD_SIGNUP", default_value_t = false, global = true, action = clap::ArgAction::Set)]
    pub signup: bool,

    /// The browser console at `/console/` (auditors on a tenant's host, operators on the bare
    /// host). `false`: every `/console/` path answers 404.
    #[arg(long, env = "ROWGUARD_CONSOLE", default_value_t = true, global = true, action = clap::ArgAction::Set)]
    pub console: bool,

    /// `Secure` on the console's cookies (a browser then sends them over HTTPS only). Default:
    /// on, except in development (the embedded PostgreSQL, i.e. no DATABASE_URL), which is
    /// served over plain http://localhost. Set it when that guess is wrong: `true` for an
    /// embedded database behind HTTPS, `false` for a DATABASE_URL deployment served over plain
    /// HTTP on a private network (a browser drops a Secure cookie sent over http://).
    #[arg(long, env = "ROWGUARD_CONSOLE_SECURE_COOKIES", global = true, action = clap::ArgAction::Set)]
    pub console_secure_cookies: Option<bool>,

    /// Where the embedded PostgreSQL cluster, its credentials and the development signing key live.
    #[arg(long, env = "ROWGUARD_DATA_DIR", default_value = ".rowguard", global = true)]
    pub data_dir: PathBuf,

    /// Address the HTTP server listens on.
    #[arg(long, env = "ROWGUARD_LISTEN", default_value = "127.0.0.1:8080", global = true)]
    pub listen: SocketAddr,

    /// `{slug}.{base_domain}` names a tenant.
    #[arg(long, env = "ROWGUARD_BASE_DOMAIN", default_value = "localhost", global = true)]
    pub base_domain: String,

    /// Ed25519 private key (PKCS#8 PEM) that signs access tokens. Unset: a development key
    /// is generated once and kept in the data directory.
    #[arg(long, env = "ROWGUARD_JWT_PRIVATE_KEY", global = true, hide_env_values = true)]
    pub jwt_private_key: Option<String>,

    /// Key id (`kid`) of the signing key.
    #[arg(long, env = "ROWGUARD_JWT_KEY_ID", global = true)]
    pub jwt_key_id: Option<String>,

    /// More public keys that verify tokens (not sign them), for key rotation: one or more
    /// Ed25519 SPKI PEM blocks, each optionally preceded by a line `kid=<key id>` (default: the
    /// id derived from the key, as for the signing key).
    #[arg(long, env = "ROWGUARD_JWT_VERIFY_KEYS", global = true)]
    pub jwt_verify_keys: Option<String>,

    /// `iss` of issued tokens, checked on every request.
    #[arg(long, env = "ROWGUARD_JWT_ISSUER", default_value = "rowguard", global = true)]
    pub jwt_issuer: String,

    /// Access-token lifetime in seconds.
    #[arg(long, env = "ROWGUARD_ACCESS_TOKEN_TTL", default_value_t = 900, global = true)]
    pub access_token_ttl_secs: u64,

    /// Connections in the service's pool.
    #[arg(long, env = "ROWGUARD_DB_POOL_SIZE", default_value_t = 16, global = true)]
    pub db_pool_size: u32,

    /// Whole-request timeout in milliseconds.
    #[arg(long, env = "ROWGUARD_REQUEST_TIMEOUT_MS", default_value_t = 10_000, global = true)]
    pub request_timeout_ms: u64,

    /// Largest accepted request body in bytes.
    #[arg(long, env = "ROWGUARD_BODY_LIMIT", default_value_t = 64 * 1024, global = true)]
    pub body_limit_bytes: usize,

    /// Seconds a client has to send a request's headers (also how long an idle kept-alive
    /// connection is held open): a client that trickles headers is dropped after this. 0: no
    /// limit (only behind a proxy that enforces one).
    #[arg(long, env = "ROWGUARD_HEADER_READ_TIMEOUT_SECS", default_value_t = 10, global = true)]
    pub header_read_timeout_secs: u64,

    /// Open client connections served at once; past it, new connections wait in the
    /// kernel's accept queue until one closes.
    #[arg(long, env = "ROWGUARD_MAX_CONNECTIONS", default_value_t = 1000, global = true)]
    pub max_connections: usize,

    /// Ed25519 private key (PKCS#8 PEM) that signs audit checkpoints. Unset: a development
    /// key is generated once and kept in the data directory.
    #[arg(long, env = "ROWGUARD_AUDIT_SIGNING_KEY", global = true, hide_env_values = true)]
    pub audit_signing_key: Option<String>,

    /// Seconds between scheduled audit checkpoints (0: only on demand).
    #[arg(long, env = "ROWGUARD_AUDIT_CHECKPOINT_SECS", default_value_t = 3600, global = true)]
    pub audit_checkpoint_secs: u64,

    /// Log filter (tracing's EnvFilter syntax).
    #[arg(long, env = "ROWGUARD_LOG", default_value = "info,sqlx=warn", global = true)]
    pub log: String,

    /// `text` (human-readable) or `json`.
    #[arg(long, env = "ROWGUARD_LOG_FORMAT", default_value = "text", global = true)]
    pub log_format: String,

    /// Seed the demo tenants (acme, globex) on the first start of an embedded cluster.
    #[arg(long, env = "ROWGUARD_SEED_DEMO", default_value_t = true, global = true, action = clap::ArgAction::Set)]
    pub seed_demo: bool,

    /// A folder of the operator's own SQL migrations (`V1__name.sql`, …), applied after the
    /// built-in ones when `serve` starts (and by `migrate` when it has no `--dir`).
    #[arg(long, env = "ROWGUARD_MIGRATIONS_DIR", global = true)]
    pub migrations_dir: Option<PathBuf>,

    /// Proxies (addresses or networks, comma-separated) whose X-Forwarded-For / Forwarded
    /// headers name the client. Default: none, so the socket peer is the client.
    #[arg(long, env = "ROWGUARD_TRUSTED_PROXIES", value_delimiter = ',', value_parser = crate::http::client_ip::parse_trusted_proxy, global = true)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Send Strict-Transport-Security. Default: on, except in development (the embedded
    /// PostgreSQL, i.e. no DATABASE_URL), which is served over plain http://localhost.
    #[arg(long, env = "ROWGUARD_HSTS", global = true, action = clap::ArgAction::Set)]
    pub hsts: Option<bool>,

    /// Per-tenant, per-address and login rate limits. Turn off only to measure raw throughput.
    #[arg(long, env = "ROWGUARD_RATE_LIMITS", default_value_t = true, global = true, action = clap::ArgAction::Set)]
    pub rate_limits: bool,

    /// Threads serving requests (tokio workers). Default: one per core.
    #[arg(long, env = "ROWGUARD_WORKER_THREADS", global = true)]
    pub worker_threads: Option<usize>,

    /// Webhook deliveries this instance runs at once (its outbox workers). 0: none in `serve`
    /// (run `rowguard worker` beside it instead).
    #[arg(long, env = "ROWGUARD_WORKERS", default_value_t = 8, global = true)]
    pub workers: usize,

    /// How long a webhook receiver has to answer one delivery, in milliseconds.
    #[arg(long, env = "ROWGUARD_WEBHOOK_TIMEOUT_MS", default_value_t = 10_000, global = true)]
    pub webhook_timeout_ms: u64,

    /// Attempts before a delivery becomes a dead letter (`rowguard jobs retry` revives it).
    #[arg(long, env = "ROWGUARD_WEBHOOK_MAX_ATTEMPTS", default_value_t = 10, global = true)]
    pub webhook_max_attempts: u32,

    /// The first retry's delay in milliseconds; each later one doubles it (up to an hour), less
    /// up to half at random (jitter), so that failed deliveries do not come back in step.
    #[arg(long, env = "ROWGUARD_WEBHOOK_RETRY_BASE_MS", default_value_t = 10_000, global = true)]
    pub webhook_retry_base_ms: u64,

    /// How often, in milliseconds, an idle worker looks for due deliveries (a worker with
    /// deliveries in flight looks again as each ends). Each look is a query; on Citus one that
    /// reaches every shard, so a fleet of instances may want it longer.
    #[arg(long, env = "ROWGUARD_WORKER_POLL_MS", default_value_t = 200, global = true)]
    pub worker_poll_ms: u64,

    /// Let webhooks target http:// URLs and loopback or private addresses. Default: only in
    /// development (the embedded PostgreSQL, i.e. no DATABASE_URL); elsewhere a target must be
    /// https:// and resolve to public addresses only, checked again at every delivery (SSRF).
    #[arg(long, env = "ROWGUARD_WEBHOOK_ALLOW_LOCAL", global = true, action = clap::ArgAction::Set)]
    pub webhook_allow_local: Option<bool>,

    /// A bearer token `GET /metrics` must present. Unset: /metrics answers anyone, so keep it
    /// set, or keep the listener off the public network, in production.
    #[arg(long, env = "ROWGUARD_METRICS_TOKEN", global = true, hide_env_values = true)]
    pub metrics_token: Option<String>,
}

impl Config {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn access_token_ttl(&self) -> Duration {
        Duration::from_secs(self.access_token_ttl_secs)
    }

    /// HSTS unless told otherwise, or in development (the embedded database).
    pub fn hsts_enabled(&self) -> bool {
        self.hsts.unwrap_or(self.database_url.is_some())
    }

    /// Webhooks may target http:// and local addresses: as told, else only in development.
    pub fn webhooks_allow_local(&self) -> bool {
        self.webhook_allow_local.unwrap_or(self.database_url.is_none())
    }

    /// The console's cookies carry `Secure` unless told otherwise, or in development (the
    /// embedded database is served over plain http://localhost, where a browser would drop a
    /// Secure cookie).
    pub fn console_secure_cookies(&self) -> bool {
        self.console_secure_cookies.unwrap_or(self.database_url.is_some())
    }

    /// Base domain as host matching sees it: lower case, no trailing dot.
    pub fn normalized_base_domain(&self) -> String {
        self.base_domain.trim_end_matches('.').to_ascii_lowercase()
    }

    /// Defaults as if no variable were set, for tests and the benchmark harness.
    pub fn for_tests(data_dir: PathBuf) -> Self {
        Config {
            database_url: None,
            admin_database_url: None,
            data_dir,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            base_domain: "localhost".into(),
            jwt_private_key: None,
            jwt_key_id: None,
            jwt_verify_keys: None,
            platform_database_url: None,
            signup: false,
            console: true,
            console_secure_cookies: None,
            jwt_issuer: "rowguard".into(),
            access_token_ttl_secs: 900,
            db_pool_size: 8,
            request_timeout_ms: 10_000,
            body_limit_bytes: 64 * 1024,
            header_read_timeout_secs: 10,
            max_connections: 1000,
            audit_signing_key: None,
            audit_checkpoint_secs: 0,
            log: "warn".into(),
            log_format: "text".into(),
            seed_demo: false,
            migrations_dir: None,
            trusted_proxies: Vec::new(),
            hsts: None,
            rate_limits: true,
            metrics_token: None,
            worker_threads: None,
            // Tests that deliver webhooks turn workers on; the rest leave the outbox alone.
            workers: 0,
            webhook_timeout_ms: 10_000,
            webhook_max_attempts: 10,
            webhook_retry_base_ms: 10_000,
            worker_poll_ms: 200,
            webhook_allow_local: None,
        }
    }
}
