//! The command line: one file per command group, each with its clap subcommand enum and the
//! function that runs it. `serve` is the default command.

mod audit;
mod audit_proof;
mod import;
mod jobs;
mod operators;
mod policies;
mod serve;
mod tables;
mod tenants;

use clap::{Parser, Subcommand};
use rowguard::config::Config;
use rowguard::startup::DatabaseSetup;

#[derive(Parser)]
#[command(name = "rowguard", version, about = "Multi-tenant API with tenant isolation enforced by PostgreSQL RLS")]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) config: Config,
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Serve the HTTP API (the default). Without DATABASE_URL, runs an embedded PostgreSQL.
    Serve,
    /// Create roles and database if needed, then apply schema and policy migrations, then the
    /// operator's own migrations from `--dir` (or ROWGUARD_MIGRATIONS_DIR).
    Migrate {
        /// A folder of SQL migrations of your own (`V1__projects.sql`, …), applied as the owner
        /// role after the built-in ones, recorded in `rowguard_operator_history`.
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// Manage tenants.
    #[command(subcommand)]
    Tenants(tenants::TenantsCommand),
    /// Database helpers.
    #[command(subcommand)]
    Db(policies::DbCommand),
    /// The audit trail.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Schema and RLS policy migrations, and proof from the live catalog that isolation holds.
    #[command(subcommand)]
    Policies(policies::PoliciesCommand),
    /// Tenant tables: list them with their guards, adopt tables of your own.
    #[command(subcommand)]
    Tables(tables::TablesCommand),
    /// Operator accounts for the platform API (`/platform/v1`).
    #[command(subcommand)]
    Operators(operators::OperatorsCommand),
    /// Bring tenants over from another system.
    #[command(subcommand)]
    Import(import::ImportCommand),
    /// The outbox of webhook deliveries: backlog per tenant, dead letters retried or discarded.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// Deliver the outbox (webhooks) without serving HTTP; any number may run beside `serve`.
    Worker,
}

pub(crate) async fn run(command: Command, config: &Config, setup: &mut DatabaseSetup) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve::serve(config, setup).await,
        Command::Migrate { dir } => policies::migrate(setup, dir.or_else(|| config.migrations_dir.clone())).await,
        Command::Tenants(command) => tenants::run(command, setup).await,
        Command::Db(command) => policies::db(command, setup),
        Command::Audit(command) => audit::run(command, config, setup).await,
        Command::Policies(command) => policies::run(command, setup).await,
        Command::Tables(command) => tables::run(command, setup).await,
        Command::Operators(command) => operators::run(command, setup).await,
        Command::Import(command) => import::run(command, config, setup).await,
        Command::Jobs(command) => jobs::run(command, setup).await,
        Command::Worker => jobs::worker(config, setup).await,
    }
}

/// Commands that need no database (`audit verify-proof`): their outcome, or None for the rest.
pub(crate) fn run_without_database(command: &Command) -> Option<anyhow::Result<()>> {
    match command {
        Command::Audit(audit::AuditCommand::VerifyProof { key, head, proof, consistency, old_head }) => Some(
            audit_proof::check(key, head, proof.as_deref(), consistency.as_deref(), old_head.as_deref())
                .map(|outcome| println!("{outcome}")),
        ),
        _ => None,
    }
}

/// Names applied, or "none pending".
fn list_or_none(names: &[String]) -> String {
    if names.is_empty() { "none pending".into() } else { names.join(", ") }
}
