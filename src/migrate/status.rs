//! Migration status for `policies status` and `policies apply`: what a database has applied
//! from `sql/` and `policies/` versus what this binary carries. Reads history tables only.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super as migrate;

/// One migration, by version and name (`V{version}__{name}.sql` in its folder).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MigrationId {
    pub version: i32,
    pub name: String,
}

impl std::fmt::Display for MigrationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "V{}__{}", self.version, self.name)
    }
}

/// A migration this binary carries that the database has not applied, with its SQL.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PendingMigration {
    pub id: MigrationId,
    pub sql: String,
}

/// One folder (`sql/` or `policies/`) compared with its history table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FolderStatus {
    pub folder: &'static str,
    pub history_table: &'static str,
    /// Applied, and the same file this binary carries.
    pub applied: Vec<MigrationId>,
    /// Carried by this binary, not applied yet, in version order.
    pub pending: Vec<PendingMigration>,
    /// Applied in the database but unknown to this binary: the database is ahead of it.
    pub unknown: Vec<MigrationId>,
    /// Applied, but the file this binary carries under that version differs (it was edited
    /// after it was applied, or renamed).
    pub divergent: Vec<MigrationId>,
}

/// Both folders, schema first (the order `migrate` applies them in).
#[derive(Debug, Clone, serde::Serialize)]
pub struct MigrationStatus {
    /// False when the database named in the admin URL does not exist yet (nothing applied).
    pub database_exists: bool,
    pub schema: FolderStatus,
    pub policies: FolderStatus,
}

/// Why `policies apply` will not touch a database.
#[derive(Debug, thiserror::Error)]
pub enum MigrationRefusal {
    #[error(
        "database is ahead of this binary: {history_table} records {migration}, which this binary does not \
         carry; apply migrations with the rowguard build that added it"
    )]
    Ahead { history_table: &'static str, migration: MigrationId },
    #[error(
        "{migration} in {history_table} differs from {folder}/{migration}.sql in this binary: an applied \
         migration was edited; change the schema or a policy with a new migration instead"
    )]
    Divergent { folder: &'static str, history_table: &'static str, migration: MigrationId },
    #[error(
        "{folder}/{migration}.sql is not applied, but the newer V{newest} already is; migrations apply in \
         version order only, so give it a version above V{newest}"
    )]
    OutOfOrder { folder: &'static str, migration: MigrationId, newest: i32 },
}

impl MigrationStatus {
    pub fn folders(&self) -> [&FolderStatus; 2] {
        [&self.schema, &self.policies]
    }

    /// Nothing pending and nothing the binary does not know.
    pub fn is_current(&self) -> bool {
        self.folders().iter().all(|f| f.pending.is_empty() && f.unknown.is_empty() && f.divergent.is_empty())
    }

    /// Refuse, naming the migration, when applying would be wrong or fail half way: the
    /// database has a migration this binary does not know, an applied file was edited, or
    /// a pending migration sorts below one already applied (refinery would abort on each).
    pub fn check_applicable(&self) -> Result<(), MigrationRefusal> {
        for folder in self.folders() {
            if let Some(migration) = folder.unknown.first() {
                return Err(MigrationRefusal::Ahead {
                    history_table: folder.history_table,
                    migration: migration.clone(),
                });
            }
            if let Some(migration) = folder.divergent.first() {
                return Err(MigrationRefusal::Divergent {
                    folder: folder.folder,
                    history_table: folder.history_table,
                    migration: migration.clone(),
                });
            }
            let newest = folder.applied.iter().map(|m| m.version).max();
            if let Some(newest) = newest
                && let Some(late) = folder.pending.iter().find(|p| p.id.version < newest)
            {
                return Err(MigrationRefusal::OutOfOrder { folder: folder.folder, migration: late.id.clone(), newest });
            }
        }
        Ok(())
    }
}

/// Compare the database behind `admin_url` with the migrations this binary carries.
///
/// The history tables are read with sqlx rather than refinery's `get_applied_migrations`:
/// that call errors when the table does not exist yet and panics on a malformed row, and a
/// status command should report either case, not die of it.
pub async fn migration_status(admin_url: &str) -> Result<MigrationStatus, sqlx::Error> {
    let options = PgConnectOptions::from_str(admin_url)?.application_name("rowguard-status");
    let mut conn = match PgConnection::connect_with(&options).await {
        Ok(conn) => Some(conn),
        // 3D000 invalid_catalog_name: the database is not created yet, so nothing is applied.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => None,
        Err(e) => return Err(e),
    };
    let [schema, policies] = migrate::embedded_folders();
    let schema = folder_status(conn.as_mut(), schema).await?;
    let policies = folder_status(conn.as_mut(), policies).await?;
    let database_exists = conn.is_some();
    if let Some(conn) = conn {
        conn.close().await?;
    }
    Ok(MigrationStatus { database_exists, schema, policies })
}

async fn folder_status(
    conn: Option<&mut PgConnection>,
    (folder, history_table, carried): (&'static str, &'static str, Vec<refinery::Migration>),
) -> Result<FolderStatus, sqlx::Error> {
    let applied = match conn {
        Some(conn) => applied_migrations(conn, history_table).await?,
        None => Vec::new(),
    };
    Ok(compare(folder, history_table, carried, applied))
}

/// One history row: version, name, checksum (refinery stores the checksum as text).
type HistoryRow = (i32, Option<String>, Option<String>);

async fn applied_migrations(
    conn: &mut PgConnection,
    history_table: &'static str,
) -> Result<Vec<HistoryRow>, sqlx::Error> {
    // Resolved through the search path, as refinery does when it creates and reads the table.
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL").bind(history_table).fetch_one(&mut *conn).await?;
    if !exists {
        return Ok(Vec::new());
    }
    // The table name is one of two constants, never input.
    sqlx::query_as(AssertSqlSafe(format!("SELECT version, name, checksum FROM {history_table} ORDER BY version")))
        .fetch_all(conn)
        .await
}

fn compare(
    folder: &'static str,
    history_table: &'static str,
    mut carried: Vec<refinery::Migration>,
    applied_rows: Vec<HistoryRow>,
) -> FolderStatus {
    carried.sort_by_key(|m| m.version());
    let mut status =
        FolderStatus { folder, history_table, applied: vec![], pending: vec![], unknown: vec![], divergent: vec![] };
    for (version, name, checksum) in &applied_rows {
        let id = MigrationId { version: *version, name: name.clone().unwrap_or_default() };
        match carried.iter().find(|m| m.version() == *version) {
            None => status.unknown.push(id),
            Some(m) => {
                let same = m.name() == id.name
                    && checksum.as_deref().and_then(|c| c.parse::<u64>().ok()) == Some(m.checksum());
                if same { status.applied.push(id) } else { status.divergent.push(id) }
            }
        }
    }
    for m in carried {
        if !applied_rows.iter().any(|(version, _, _)| *version == m.version()) {
            status.pending.push(PendingMigration {
                id: MigrationId { version: m.version(), name: m.name().to_string() },
                sql: m.sql().unwrap_or_default().to_string(),
            });
        }
    }
    status
}
