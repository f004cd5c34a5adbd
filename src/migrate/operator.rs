//! Operator migrations: SQL files from a folder of the operator's own (`rowguard migrate --dir`,
//! `ROWGUARD_MIGRATIONS_DIR` for `serve`), applied after the built-in ones, as the owner role,
//! with a history table of their own. Read at run time, so adding a table needs no rebuild.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::{BootstrapError, LOCK_SPACE, MIGRATIONS, connect_tokio_postgres};
use crate::backend::Backend;
use crate::roles::OWNER_ROLE;

/// The operator folder's refinery history table, beside `rowguard_schema_history` and
/// `rowguard_policy_history`: the operator's versions are theirs to number from V1.
pub const OPERATOR_HISTORY: &str = "rowguard_operator_history";

/// One migration file of the operator's folder.
#[derive(Debug, Clone)]
pub struct OperatorMigration {
    pub file: PathBuf,
    pub migration: refinery::Migration,
}

/// Why operator migrations were not applied. Each is one line naming the file or version
/// and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum OperatorMigrationError {
    #[error("cannot read the migrations folder {dir}: {source}")]
    Folder { dir: PathBuf, source: std::io::Error },
    #[error(
        "{file} is not named V{{version}}__{{name}}.sql (version: digits; name: letters, digits and _); \
         rename it (refinery would skip it without a word)"
    )]
    BadName { file: PathBuf },
    #[error("{file} and {other} both have version V{version}; give one of them a new version")]
    RepeatedVersion { version: i32, file: PathBuf, other: PathBuf },
    #[error(
        "{file} was changed after V{version}__{applied_name} was applied ({applied_on}): it no longer matches \
         the checksum in {OPERATOR_HISTORY}; restore the applied text and make the change in a new migration \
         above V{newest}"
    )]
    Changed { file: PathBuf, version: i32, applied_name: String, applied_on: String, newest: i32 },
    #[error(
        "V{version}__{name} is recorded in {OPERATOR_HISTORY} but {dir} has no V{version}__*.sql; restore the \
         file (applied migrations stay in the folder)"
    )]
    Missing { dir: PathBuf, version: i32, name: String },
    #[error(
        "{file} (V{version}) is not applied, but the newer V{newest} already is; migrations apply in version \
         order only, so give it a version above V{newest}"
    )]
    OutOfOrder { file: PathBuf, version: i32, newest: i32 },
    #[error("applying operator migrations from {dir}: {source}")]
    Apply { dir: PathBuf, source: refinery::Error },
    #[error("applying {file} (nothing of this run was applied): {source}")]
    ApplyStatement { file: PathBuf, source: sqlx::Error },
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
}

impl From<sqlx::Error> for OperatorMigrationError {
    fn from(e: sqlx::Error) -> Self {
        OperatorMigrationError::Bootstrap(BootstrapError::Sql(e))
    }
}

impl From<tokio_postgres::Error> for OperatorMigrationError {
    fn from(e: tokio_postgres::Error) -> Self {
        OperatorMigrationError::Bootstrap(BootstrapError::Postgres(e))
    }
}

/// Every `*.sql` file under `dir` (recursively, as refinery looks), in version order. A `.sql`
/// file that is not named `V{n}__{name}.sql` is refused rather than skipped: refinery skips
/// it with a log line, and an operator would find their table missing much later. Other
/// files (a README) are left alone.
pub fn load(dir: &Path) -> Result<Vec<OperatorMigration>, OperatorMigrationError> {
    let mut files = Vec::new();
    collect_sql_files(dir, &mut files)?;
    files.sort();
    let mut out: Vec<OperatorMigration> = Vec::with_capacity(files.len());
    for file in files {
        let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        if !is_versioned_name(stem) {
            return Err(OperatorMigrationError::BadName { file });
        }
        let sql = std::fs::read_to_string(&file)
            .map_err(|source| OperatorMigrationError::Folder { dir: file.clone(), source })?;
        let migration = refinery::Migration::unapplied(stem, &sql)
            .map_err(|_| OperatorMigrationError::BadName { file: file.clone() })?;
        if let Some(other) = out.iter().find(|m| m.migration.version() == migration.version()) {
            return Err(OperatorMigrationError::RepeatedVersion {
                version: migration.version(),
                file,
                other: other.file.clone(),
            });
        }
        out.push(OperatorMigration { file, migration });
    }
    out.sort_by_key(|m| m.migration.version());
    Ok(out)
}

fn collect_sql_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), OperatorMigrationError> {
    let folder = |source| OperatorMigrationError::Folder { dir: dir.to_path_buf(), source };
    for entry in std::fs::read_dir(dir).map_err(folder)? {
        let path = entry.map_err(folder)?.path();
        if path.is_dir() {
            collect_sql_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "sql") {
            out.push(path);
        }
    }
    Ok(())
}

/// `V{digits}__{word characters}`: what refinery's embedded folders accept, ASCII only.
fn is_versioned_name(stem: &str) -> bool {
    let Some(rest) = stem.strip_prefix('V') else { return false };
    let Some((version, name)) = rest.split_once("__") else { return false };
    !version.is_empty()
        && version.len() <= 9
        && version.bytes().all(|b| b.is_ascii_digit())
        && !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// One row of the operator history: version, name, applied_on, checksum (refinery keeps the
/// last two as text).
type HistoryRow = (i32, Option<String>, Option<String>, Option<String>);

/// Compare the folder with the history and refuse, naming the file, anything refinery would
/// refuse (or worse, not notice): an applied file edited or renamed, an applied file gone, a
/// new file numbered below one already applied. Returns the pending migrations.
pub fn check_against_history<'m>(
    dir: &Path,
    migrations: &'m [OperatorMigration],
    applied: &[HistoryRow],
) -> Result<Vec<&'m OperatorMigration>, OperatorMigrationError> {
    let newest = applied.iter().map(|(v, ..)| *v).max();
    for (version, name, applied_on, checksum) in applied {
        let name = name.clone().unwrap_or_default();
        let Some(file) = migrations.iter().find(|m| m.migration.version() == *version) else {
            return Err(OperatorMigrationError::Missing { dir: dir.to_path_buf(), version: *version, name });
        };
        let same = file.migration.name() == name
            && checksum.as_deref().and_then(|c| c.parse::<u64>().ok()) == Some(file.migration.checksum());
        if !same {
            return Err(OperatorMigrationError::Changed {
                file: file.file.clone(),
                version: *version,
                applied_name: name,
                applied_on: applied_on.clone().unwrap_or_default(),
                newest: newest.unwrap_or(*version),
            });
        }
    }
    let pending: Vec<&OperatorMigration> =
        migrations.iter().filter(|m| !applied.iter().any(|(v, ..)| *v == m.migration.version())).collect();
    if let (Some(newest), Some(late)) = (newest, pending.iter().find(|m| Some(m.migration.version()) < newest)) {
        return Err(OperatorMigrationError::OutOfOrder {
            file: late.file.clone(),
            version: late.migration.version(),
            newest,
        });
    }
    Ok(pending)
}

async fn read_history(conn: &mut PgConnection) -> Result<Vec<HistoryRow>, sqlx::Error> {
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL").bind(OPERATOR_HISTORY).fetch_one(&mut *conn).await?;
    if !exists {
        return Ok(Vec::new());
    }
    // A constant table name.
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT version, name, applied_on, checksum FROM {OPERATOR_HISTORY} ORDER BY version"
    )))
    .fetch_all(conn)
    .await
}

/// Apply the pending migrations of `dir` to the database behind `admin_url`, as the owner role,
/// all in one transaction (one failing file applies none), holding the database's migration
/// lock. Run after the built-in migrations (`migrate`): operator tables may reference
/// `tenants` and `contacts`, and use `current_tenant()`. Returns the names applied.
///
/// Never as the app role: the objects belong to the owner, who alone may later enable RLS on
/// them (`tables adopt`). On Citus the files run statement by statement and each new table is
/// placed as it is created (`citus::apply_operator_migrations`).
pub async fn apply(admin_url: &str, dir: &Path) -> Result<Vec<String>, OperatorMigrationError> {
    let migrations = load(dir)?;
    let mut admin = PgConnection::connect_with(&PgConnectOptions::from_str(admin_url)?).await?;
    sqlx::query!("SELECT pg_advisory_lock($1, $2)", LOCK_SPACE, MIGRATIONS).execute(&mut admin).await?;
    let applied = read_history(&mut admin).await?;
    let pending = check_against_history(dir, &migrations, &applied)?;
    let mut names = Vec::new();
    if !pending.is_empty() && Backend::detect(&mut admin).await? == Backend::Citus {
        names = super::citus::apply_operator_migrations(&mut admin, &pending).await?;
        sqlx::query!("SELECT pg_notify($1, 'migrate')", crate::data::CHANGED_CHANNEL).execute(&mut admin).await?;
    } else if !pending.is_empty() {
        let mut client = connect_tokio_postgres(admin_url).await?;
        client.batch_execute(&format!("SET ROLE {OWNER_ROLE}")).await?;
        let all: Vec<refinery::Migration> = migrations.iter().map(|m| m.migration.clone()).collect();
        let mut runner =
            refinery::Runner::new(&all).set_grouped(true).set_abort_missing(true).set_abort_divergent(true);
        runner.set_migration_table_name(OPERATOR_HISTORY);
        let report = runner
            .run_async(&mut client)
            .await
            .map_err(|source| OperatorMigrationError::Apply { dir: dir.to_path_buf(), source })?;
        names.extend(report.applied_migrations().iter().map(|m| m.to_string()));
        // Running services read the adopted tables again: a migration may have altered one.
        sqlx::query!("SELECT pg_notify($1, 'migrate')", crate::data::CHANGED_CHANNEL).execute(&mut admin).await?;
    }
    // Closing ends the session, and with it the lock.
    admin.close().await?;
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_versioned_word_names_are_migrations() {
        for good in ["V1__projects", "V20__add_tasks", "V3__A_b_9"] {
            assert!(is_versioned_name(good), "{good}");
        }
        for bad in ["V1_projects", "v1__projects", "V__x", "V1__", "V1__add-tasks", "U1__x", "Vx__y", "V1__ü"] {
            assert!(!is_versioned_name(bad), "{bad}");
        }
    }

    fn migration(file: &str, sql: &str) -> OperatorMigration {
        let stem = file.trim_end_matches(".sql");
        OperatorMigration {
            file: PathBuf::from(file),
            migration: refinery::Migration::unapplied(stem, sql).expect("a valid name"),
        }
    }

    fn applied(m: &OperatorMigration) -> HistoryRow {
        (
            m.migration.version(),
            Some(m.migration.name().to_string()),
            Some("2026-01-01T00:00:00Z".into()),
            Some(m.migration.checksum().to_string()),
        )
    }

    #[test]
    fn an_edited_applied_file_is_refused_by_name_and_version() {
        let original = migration("V1__projects.sql", "CREATE TABLE a ()");
        let edited = vec![migration("V1__projects.sql", "CREATE TABLE b ()")];
        let err = check_against_history(Path::new("ops"), &edited, &[applied(&original)]).expect_err("refused");
        let text = err.to_string();
        assert!(text.contains("V1__projects.sql") && text.contains("V1__projects was applied"), "{text}");
        assert!(!text.contains('\n'), "one line: {text}");
    }

    #[test]
    fn a_missing_applied_file_and_a_late_new_one_are_refused() {
        let one = migration("V1__a.sql", "SELECT 1");
        let two = migration("V2__b.sql", "SELECT 2");
        let err = check_against_history(Path::new("ops"), std::slice::from_ref(&two), &[applied(&one)]);
        assert!(matches!(err, Err(OperatorMigrationError::Missing { version: 1, .. })));
        let both = [one.clone(), two.clone()];
        let err = check_against_history(Path::new("ops"), &both, &[applied(&two)]);
        assert!(matches!(err, Err(OperatorMigrationError::OutOfOrder { version: 1, newest: 2, .. })));
        let pending = check_against_history(Path::new("ops"), &both, &[applied(&one)]).expect("ok");
        assert_eq!(pending.len(), 1);
    }
}
