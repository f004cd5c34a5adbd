//! `rowguard tables …`: every tenant table with its guards (`list`), and adopting a table of
//! the operator's own as a guarded tenant table (`adopt`). Over the admin connection.

use anyhow::Context;
use clap::Subcommand;
use rowguard::catalog::overview::{TableOrigin, TableOverview, tenant_tables};
use rowguard::migrate::adopt::{adopt, parse_roles};
use rowguard::startup::DatabaseSetup;
use sqlx::{Connection, PgConnection};

#[derive(Subcommand)]
pub(crate) enum TablesCommand {
    /// Every tenant table, built-in or adopted, with its RLS, audit and API state.
    List {
        /// Print the tables as a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Make a table with `tenant_id uuid NOT NULL` a guarded tenant table: checks its keys
    /// (invariant 1), then enables and forces RLS, adds the tenant policy, the audit trigger and
    /// the app role's grants, and records it. Safe to run again.
    Adopt {
        /// The table, in schema public.
        table: String,
        /// Tenant roles that may read its rows (default: all five, or as adopted before).
        #[arg(long, value_delimiter = ',')]
        read_roles: Option<Vec<String>>,
        /// Tenant roles that may write its rows (default: owner, admin, manager, member).
        #[arg(long, value_delimiter = ',')]
        write_roles: Option<Vec<String>>,
        /// Print the SQL adopt would run, and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

pub(crate) async fn run(command: TablesCommand, setup: &DatabaseSetup) -> anyhow::Result<()> {
    match command {
        TablesCommand::List { json } => list(setup, json).await,
        TablesCommand::Adopt { table, read_roles, write_roles, dry_run } => {
            let read = read_roles.as_deref().map(parse_roles).transpose()?;
            let write = write_roles.as_deref().map(parse_roles).transpose()?;
            let mut conn = connect(setup).await?;
            let adopted = adopt(&mut conn, &table, read, write, dry_run).await?;
            conn.close().await?;
            let plan = &adopted.plan;
            let roles = |r: &[rowguard::domain::Role]| r.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",");
            if plan.is_empty() {
                println!("{} is adopted already; nothing to change", plan.table);
            } else if dry_run {
                println!(
                    "-- dry run, nothing was changed: `rowguard tables adopt {}` would run, in one transaction:",
                    plan.table
                );
                println!("{}", plan.script());
            } else {
                println!("adopted {}:", plan.table);
                for step in &plan.steps {
                    println!("  {}", step.what);
                }
            }
            if !dry_run {
                println!("  read roles: {}; write roles: {}", roles(&plan.roles.read), roles(&plan.roles.write));
            }
            if let Some(why) = &adopted.not_served {
                println!(
                    "warning: {} is guarded, but the HTTP API will not serve it (/v1/data/{}): {why}",
                    plan.table, plan.table
                );
            }
            Ok(())
        }
    }
}

async fn connect(setup: &DatabaseSetup) -> anyhow::Result<PgConnection> {
    PgConnection::connect(setup.admin_url()?).await.context("connecting with the admin URL")
}

async fn list(setup: &DatabaseSetup, json: bool) -> anyhow::Result<()> {
    let mut conn = connect(setup).await?;
    let tables = tenant_tables(&mut conn).await.context("reading the catalog")?;
    conn.close().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&tables)?);
        return Ok(());
    }
    // The long columns go last: the API state (with the role sets), then verify's findings.
    let name_width = tables.iter().map(|t| t.name.len()).max().unwrap_or(0).max(5);
    let api: Vec<String> = tables.iter().map(api_state).collect();
    let api_width = api.iter().map(String::len).max().unwrap_or(0).max(3);
    println!(
        "{:<name_width$}  {:<19}  {:<16}  {:<7}  {:<api_width$}  VERIFY",
        "TABLE", "RLS", "POLICY", "AUDIT", "API"
    );
    for (t, api) in tables.iter().zip(&api) {
        println!(
            "{:<name_width$}  {:<19}  {:<16}  {:<7}  {:<api_width$}  {}",
            t.name,
            rls_state(t),
            if t.policies.is_empty() { "none".to_string() } else { t.policies.join(",") },
            t.audit,
            api,
            if t.findings.is_empty() { "ok".to_string() } else { t.findings.join(",") },
        );
    }
    Ok(())
}

fn rls_state(t: &TableOverview) -> &'static str {
    match (t.rls_enabled, t.rls_forced) {
        (true, true) => "enabled, forced",
        (true, false) => "enabled, NOT forced",
        (false, true) => "DISABLED (forced)",
        (false, false) => "DISABLED",
    }
}

fn api_state(t: &TableOverview) -> String {
    match &t.origin {
        TableOrigin::BuiltIn => "built-in".into(),
        TableOrigin::Adopted { read_roles, write_roles } => {
            let served = t.not_served.as_ref().map(|why| format!("not served: {why}; ")).unwrap_or_default();
            format!("adopted, {served}read: {}; write: {}", read_roles.join(","), write_roles.join(","))
        }
        TableOrigin::NotAdopted => "NOT ADOPTED".into(),
    }
}
