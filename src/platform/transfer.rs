//! Tenant export and import — what `pg_dump -n` is to a schema-per-tenant database: every
//! row of one tenant from every table with a `tenant_id` (found from the catalog, so a table
//! added later is included with no code change), written as JSON Lines, and read back into a
//! NEW tenant. Both run as the platform role inside the tenant's own transaction.
//!
//! The format (version 1): a header line `{"format": "rowguard-tenant-export", "version": 1,
//! "tenant": {...}, "domains": [...], "tables": {"contacts": 3, ...}}`, then one line per row,
//! `{"table": "contacts", "row": {...}}`, parents before children, audit events in chain
//! order. Row ids are kept: keys are `(tenant_id, id)`, so every reference between imported
//! rows stays intact under the new tenant id. Domains are listed but not imported (a domain
//! names one tenant); the audit chain is re-based onto the new tenant (`audit_import`) and a
//! final `tenant.import` event records where it came from and the source chain's head.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sqlx::AssertSqlSafe;

use super::purge::tables_children_first;
use super::{PlatformConn, PlatformError};
use crate::domain::{Plan, Slug, TenantId};

pub const FORMAT: &str = "rowguard-tenant-export";

/// Not exported as rows: domains belong to one tenant (listed in the header instead), and the
/// chain head and checkpoints are rebuilt on import (checkpoints sign the old tenant's chain),
/// and so is the Merkle tree: the imported events are appended anew and sealed into the new
/// tenant's tree, whose heads the importing installation signs.
/// The outbox and the delivery log are not exported either: the importing tenant would send the
/// old tenant's pending messages again, and their queue is rebuilt from the outbox anyway. The
/// subscriptions (`webhooks`) are, secrets included, as users come with their password hashes.
const SKIPPED: &[&str] = &[
    "tenant_domains",
    "audit_chain_heads",
    "audit_checkpoints",
    crate::roles::AUDIT_SEAL_QUEUE,
    crate::roles::OUTBOX_QUEUE,
    "outbox",
    "webhook_deliveries",
];

fn skipped(table: &str) -> bool {
    SKIPPED.contains(&table) || crate::roles::AUDIT_TREE_TABLES.contains(&table)
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    pub exported_at: chrono::DateTime<chrono::Utc>,
    pub tenant: ExportedTenant,
    pub domains: Vec<String>,
    pub tables: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportedTenant {
    pub id: TenantId,
    pub slug: String,
    pub name: String,
    pub plan: Plan,
    /// Hex head of the source audit chain at export time, when it has one.
    pub audit_head: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Line {
    table: String,
    /// The row as PostgreSQL's `to_jsonb` wrote it, passed through untouched both ways (a
    /// parsed `Value` would carry numerics through f64).
    row: Box<RawValue>,
}

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("file: {0}")]
    Io(#[from] std::io::Error),
    #[error("line {line}: {message}")]
    Format { line: usize, message: String },
    #[error("no tenant {0:?}")]
    NoTenant(String),
}

/// Names of the exported tables, parents first (the reverse of the purge order), without the
/// schema prefix the catalog query adds.
fn unqualified(table: &str) -> String {
    table.rsplit('.').next().unwrap_or(table).trim_matches('"').to_string()
}

/// How far an export or import has got: rows done of rows in all.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub rows: u64,
    pub total: u64,
}

/// Write every row of `slug` to `out`, reporting progress as rows are written. Returns the
/// header written. One REPEATABLE READ transaction: the counts in the header and the rows
/// that follow are one snapshot. Rows are streamed, so memory stays flat however large the
/// tenant.
pub async fn export(
    platform: &mut PlatformConn,
    slug: &Slug,
    out: &mut impl Write,
    progress: &mut dyn FnMut(Progress),
) -> Result<Header, TransferError> {
    let summary = platform
        .list_tenants()
        .await?
        .into_iter()
        .find(|t| t.slug == slug.as_str())
        .ok_or_else(|| TransferError::NoTenant(slug.to_string()))?;
    let tenant = summary.id;
    let mut tx = platform.tenant_tx(tenant).await?;
    // Allowed here: setting the tenant (SET LOCAL) took no snapshot yet.
    sqlx::query!("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(tx.conn()).await?;
    let mut tables = tables_children_first(&mut tx).await?;
    tables.reverse();
    let tables: Vec<(String, String)> =
        tables.into_iter().map(|q| (unqualified(&q), q)).filter(|(name, _)| !skipped(name)).collect();
    let domains: Vec<String> =
        sqlx::query_scalar!("SELECT domain FROM tenant_domains WHERE tenant_id = $1 ORDER BY domain", tenant.0)
            .fetch_all(tx.conn())
            .await?;
    let audit_head: Option<Vec<u8>> =
        sqlx::query_scalar!("SELECT head FROM audit_chain_heads WHERE tenant_id = $1", tenant.0)
            .fetch_optional(tx.conn())
            .await?;
    let mut counts = BTreeMap::new();
    for (name, qualified) in &tables {
        // Catalog names, quoted by PostgreSQL's format('%I.%I').
        let sql = format!("SELECT count(*) FROM {qualified} t WHERE t.tenant_id = $1");
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(sql)).bind(tenant).fetch_one(tx.conn()).await?;
        counts.insert(name.clone(), u64::try_from(n).unwrap_or(0));
    }
    let header = Header {
        format: FORMAT.into(),
        version: 1,
        exported_at: chrono::Utc::now(),
        tenant: ExportedTenant {
            id: tenant,
            slug: summary.slug,
            name: summary.name,
            plan: summary.plan,
            audit_head: audit_head.map(hex::encode),
        },
        domains,
        tables: counts,
    };
    serde_json::to_writer(&mut *out, &header).map_err(std::io::Error::from)?;
    out.write_all(b"\n")?;
    let mut done = Progress { rows: 0, total: header.tables.values().sum() };
    progress(done);
    for (name, qualified) in &tables {
        // The audit log in chain order, so an import can re-link it as it reads.
        let order = if name == "audit_events" { "ORDER BY t.seq" } else { "" };
        // to_json: a json column's text as stored (to_jsonb would rewrite it).
        let sql = format!("SELECT to_json(t)::text FROM {qualified} t WHERE t.tenant_id = $1 {order}");
        let mut rows = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql)).bind(tenant).fetch(tx.conn());
        while let Some(row) = rows.try_next().await? {
            let row = RawValue::from_string(row).map_err(std::io::Error::from)?;
            serde_json::to_writer(&mut *out, &Line { table: name.clone(), row }).map_err(std::io::Error::from)?;
            out.write_all(b"\n")?;
            done.rows += 1;
            progress(done);
        }
    }
    tx.commit().await?;
    out.flush()?;
    Ok(header)
}

/// Read an export into a new tenant `slug`, in one transaction: all of it or nothing.
/// Returns the new tenant's id and the rows imported per table.
pub async fn import(
    platform: &mut PlatformConn,
    input: impl BufRead,
    slug: &Slug,
    progress: &mut dyn FnMut(Progress),
) -> Result<(TenantId, BTreeMap<String, u64>), TransferError> {
    let mut lines = input.lines().enumerate();
    let bad = |line: usize, message: String| TransferError::Format { line: line + 1, message };
    let (n, first) = lines.next().ok_or_else(|| bad(0, "the file is empty".into()))?;
    let header: Header = serde_json::from_str(&first?).map_err(|e| bad(n, format!("not an export header: {e}")))?;
    if header.format != FORMAT || header.version != 1 {
        return Err(bad(n, format!("unsupported format {} version {}", header.format, header.version)));
    }
    let tenant = TenantId::new_v7();
    let mut tx = platform.tenant_tx(tenant).await?;
    // The imported rows bring their own history: the row-change triggers stay quiet.
    sqlx::query!("SET LOCAL app.audit_import = 'on'").execute(tx.conn()).await?;
    sqlx::query!(
        "INSERT INTO tenants (id, slug, name, status, plan) VALUES ($1, $2, $3, 'active', $4)",
        tenant.0,
        slug.as_str(),
        &header.tenant.name,
        header.tenant.plan.as_str()
    )
    .execute(tx.conn())
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            TransferError::Platform(PlatformError::SlugTaken(slug.to_string()))
        }
        _ => TransferError::Sql(e),
    })?;
    let known: Vec<String> = tables_children_first(&mut tx).await?.iter().map(|q| unqualified(q)).collect();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut done = Progress { rows: 0, total: header.tables.values().sum() };
    progress(done);
    for (n, line) in lines {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let Line { table, row } = serde_json::from_str(&line).map_err(|e| bad(n, e.to_string()))?;
        if !known.contains(&table) || skipped(&table) {
            return Err(bad(n, format!("table {table:?} is not a tenant table of this database")));
        }
        if !row.get().trim_start().starts_with('{') {
            return Err(bad(n, format!("{table}: a row must be a JSON object")));
        }
        // The row as written, with the new tenant's id in place of the old (in SQL, so the
        // values are never parsed here).
        let row_sql = "($1::text::jsonb || jsonb_build_object('tenant_id', $2::uuid))";
        let result = if table == "audit_events" {
            // Naming the tenant: on Citus the call runs on the tenant's worker (sql/V27).
            sqlx::query(AssertSqlSafe(format!("SELECT audit_import_for($2, {row_sql})")))
                .bind(row.get())
                .bind(tenant)
                .execute(tx.conn())
                .await
        } else {
            // The table name was checked against the catalog's list above; quote it anyway.
            let ident = format!("\"{}\"", table.replace('"', "\"\""));
            // VALUES, not INSERT … SELECT: Citus runs an INSERT … SELECT whose source is not a
            // distributed table by evaluating the SELECT on the coordinator and COPYing the rows
            // into the shards, and COPY into a table with row-level security is refused there.
            // OVERRIDING SYSTEM VALUE: rows keep their ids, also in a `GENERATED ALWAYS AS
            // IDENTITY` column of an adopted table (a no-op for tables without one).
            // json_populate_record, not jsonb_: a json column keeps the text it was exported
            // with. The new tenant's id goes last, and the last of two equal keys wins.
            let sql = format!(
                "INSERT INTO {ident} OVERRIDING SYSTEM VALUE VALUES ((json_populate_record(NULL::{ident}, $1::text::json)).*)"
            );
            sqlx::query(AssertSqlSafe(sql)).bind(with_tenant(row.get(), tenant)).execute(tx.conn()).await
        };
        result.map_err(|e| bad(n, format!("{table}: {e}")))?;
        *counts.entry(table).or_default() += 1;
        done.rows += 1;
        progress(done);
    }
    for (table, expected) in &header.tables {
        let got = counts.get(table).copied().unwrap_or(0);
        if got != *expected {
            return Err(bad(0, format!("{table}: the header promises {expected} rows, the file has {got}")));
        }
    }
    advance_sequences(&mut tx, counts.keys()).await?;
    sqlx::query!("SET LOCAL app.audit_import = 'off'").execute(tx.conn()).await?;
    let details = serde_json::json!({
        "source_tenant": header.tenant.id,
        "source_slug": header.tenant.slug,
        "source_audit_head": header.tenant.audit_head,
        "rows": counts,
    });
    sqlx::query!(
        "SELECT audit_append_for($1, 'tenant.import', 'tenant', $2, 'success', $3, 'operator')",
        tx.tenant().0,
        tenant.to_string(),
        details
    )
    .execute(tx.conn())
    .await?;
    tx.commit().await?;
    Ok((tenant, counts))
}

/// Move every serial or identity sequence of the imported tables past the highest id the import
/// brought: the ids came from another database, and the next insert would otherwise draw one the
/// imported tenant already has. Sequences are shared by all tenants, so one only ever moves
/// forward (another tenant's ids stay unique: keys are `(tenant_id, id)`).
async fn advance_sequences<'a>(
    tx: &mut crate::db::TenantTx<'_>,
    tables: impl Iterator<Item = &'a String>,
) -> Result<(), TransferError> {
    for table in tables {
        let columns: Vec<(String, String)> = sqlx::query_as(
            "SELECT a.attname::text, pg_get_serial_sequence(format('%I', c.relname), a.attname)
               FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
              WHERE c.relnamespace = 'public'::regnamespace AND c.relname = $1
                AND pg_get_serial_sequence(format('%I', c.relname), a.attname) IS NOT NULL",
        )
        .bind(table)
        .fetch_all(tx.conn())
        .await?;
        for (column, sequence) in columns {
            // Every tenant draws from this sequence: an import that would move it past half its
            // range (ids planted near its end) would soon stop everyone's inserts. Refused.
            let near_end: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT m FROM (SELECT max({col})::bigint AS m FROM {tbl}) x, pg_sequence s
                  WHERE s.seqrelid = $1::regclass AND m > s.seqmax / 2",
                col = crate::migrate::quote_ident(&column),
                tbl = crate::migrate::quote_ident(table),
            )))
            .bind(&sequence)
            .fetch_optional(tx.conn())
            .await?;
            if let Some(m) = near_end {
                return Err(TransferError::Format {
                    line: 0,
                    message: format!(
                        "{table}.{column} holds {m}, past half of {sequence}'s range; every tenant draws ids from \
                         it, so importing this would soon exhaust it for all of them"
                    ),
                });
            }
            // Names from the catalog, quoted; the sequence's name is passed as a value.
            let sql = format!(
                "SELECT setval($1::regclass, m) FROM (SELECT max({col})::bigint AS m FROM {tbl}) x
                  WHERE m IS NOT NULL AND m > coalesce(pg_sequence_last_value($1::regclass), 0)",
                col = crate::migrate::quote_ident(&column),
                tbl = crate::migrate::quote_ident(table),
            );
            sqlx::query(AssertSqlSafe(sql)).bind(&sequence).execute(tx.conn()).await?;
        }
    }
    Ok(())
}

/// A row's JSON object text with `"tenant_id": tenant` added as its last member.
fn with_tenant(row: &str, tenant: TenantId) -> String {
    let body = row.trim_end().strip_suffix('}').unwrap_or(row);
    let comma = if body.trim_start().strip_prefix('{').is_some_and(|inner| inner.trim().is_empty()) { "" } else { "," };
    format!("{body}{comma}\"tenant_id\":\"{}\"}}", tenant.0)
}
