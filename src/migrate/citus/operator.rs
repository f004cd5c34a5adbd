//! Operator SQL on Citus: `migrate --dir`'s files and the importer's generated migration, run
//! statement by statement, each new table placed before the next statement.

use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

use super::{citus_compatible_definition, distribute, quote};
use crate::migrate::operator::OPERATOR_HISTORY;

/// Operator migrations on Citus (`rowguard migrate --dir`): the pending files in one
/// transaction as the owner, like refinery's grouped run on PostgreSQL, and recorded in the same
/// history table in refinery's form — but statement by statement, each new table placed as
/// `distribute` places tables before the next statement runs. An operator's table names the
/// built-in ones (`FOREIGN KEY (tenant_id, contact_id) REFERENCES contacts`), and Citus refuses
/// a key from a table it has not distributed to one it has; so a `CREATE TABLE` runs with DDL
/// propagation off (the new table is a plain coordinator table for that statement, its keys
/// checked by PostgreSQL alone) and is distributed by tenant_id, colocated, or made a
/// reference table straight after — the files stay the plain SQL an operator writes for
/// PostgreSQL. Every other statement runs with propagation on, so indexes and columns added to
/// distributed tables reach their shards. Statements are told apart by `statements::split`.
pub async fn apply_operator_migrations(
    conn: &mut PgConnection,
    pending: &[&crate::migrate::operator::OperatorMigration],
) -> Result<Vec<String>, crate::migrate::operator::OperatorMigrationError> {
    use crate::migrate::operator::OperatorMigrationError;
    let mut tx = conn.begin().await?;
    tx.execute(AssertSqlSafe(format!("SET LOCAL ROLE {}", crate::roles::OWNER_ROLE))).await?;
    // refinery's history table, as its runner creates it (`version` an int4: no int8-versions).
    tx.execute(AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {OPERATOR_HISTORY} (version int4 PRIMARY KEY, name varchar(255), \
         applied_on varchar(255), checksum varchar(255))"
    )))
    .await?;
    let mut names = Vec::new();
    for m in pending {
        let sql = m.migration.sql().unwrap_or_default();
        let failed = |source| OperatorMigrationError::ApplyStatement { file: m.file.clone(), source };
        run_placing_tables(&mut tx, sql).await.map_err(failed)?;
        // refinery's row: applied_on in RFC 3339, the checksum as decimal text.
        let applied_on = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {OPERATOR_HISTORY} (version, name, applied_on, checksum) VALUES ($1, $2, $3, $4)"
        )))
        .bind(m.migration.version())
        .bind(m.migration.name())
        .bind(applied_on)
        .bind(m.migration.checksum().to_string())
        .execute(&mut *tx)
        .await?;
        names.push(m.migration.to_string());
    }
    // Functions the files created, and tables made by statements other than CREATE TABLE.
    distribute(&mut tx).await?;
    tx.commit().await?;
    Ok(names)
}

/// Run `sql` (statements an operator wrote for PostgreSQL, or the importer's generated
/// migration) on Citus, inside the caller's transaction, placing each table it creates before
/// the next statement runs (`apply_operator_migrations` says why). One statement per message:
/// Citus replays a message's whole text on the shards. A statement adding a foreign key that
/// includes tenant_id with `ON DELETE SET NULL` / `SET DEFAULT`, which Citus refuses, is run
/// again with the key added as `distribute` adds such keys back (`citus_compatible_definition`:
/// NO ACTION, reported as a warning naming the key); PostgreSQL keeps the action.
pub async fn run_placing_tables(tx: &mut PgConnection, sql: &str) -> Result<(), sqlx::Error> {
    for range in crate::migrate::statements::split(sql) {
        let statement = &sql[range];
        if crate::migrate::statements::controls_the_session(statement) {
            return Err(sqlx::Error::Protocol(format!(
                "a migration may not end the transaction or change the role it runs as (the files run in one \
                 transaction, as the owner role): remove `{}`",
                statement.trim()
            )));
        }
        if crate::migrate::statements::creates_table(statement) {
            tx.execute("SET LOCAL citus.enable_ddl_propagation = off").await?;
            tx.execute(AssertSqlSafe(statement.to_string())).await?;
            tx.execute("SET LOCAL citus.enable_ddl_propagation = on").await?;
            let report = distribute(&mut *tx).await?;
            for key in report.relaxed_foreign_keys {
                tracing::warn!(key, "on Citus this foreign key's ON DELETE SET NULL / SET DEFAULT became NO ACTION");
            }
            continue;
        }
        tx.execute("SAVEPOINT rowguard_statement").await?;
        match tx.execute(AssertSqlSafe(statement.to_string())).await {
            Ok(_) => {}
            // Only a statement that adds one foreign key and nothing else: it is run again with
            // propagation off, which must not leave any other change on the coordinator alone.
            Err(e) if refuses_delete_action(&e) && crate::migrate::statements::adds_only_a_foreign_key(statement) => {
                tx.execute("ROLLBACK TO SAVEPOINT rowguard_statement").await?;
                relax_foreign_keys_of(&mut *tx, statement).await?;
            }
            Err(e) => return Err(e),
        }
        tx.execute("RELEASE SAVEPOINT rowguard_statement").await?;
    }
    Ok(())
}

/// Citus's refusal of `ON DELETE SET NULL` / `SET DEFAULT` on a key including the distribution
/// column.
fn refuses_delete_action(e: &sqlx::Error) -> bool {
    let Some(db) = e.as_database_error() else { return false };
    let detail = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().and_then(|pg| pg.detail()).unwrap_or("");
    db.code().as_deref() == Some("0A000") && detail.contains("SET NULL or SET DEFAULT is not supported")
}

/// Run `statement` with DDL propagation off (its keys land on the coordinator's table only),
/// then take each foreign key it added off again and add it back propagated, in the form Citus
/// accepts.
async fn relax_foreign_keys_of(tx: &mut PgConnection, statement: &str) -> Result<(), sqlx::Error> {
    const KEYS: &str =
        "SELECT con.oid::int8, con.conrelid::regclass::text, con.conname::text, pg_get_constraintdef(con.oid)
                          FROM pg_constraint con
                         WHERE con.contype = 'f' AND con.connamespace = 'public'::regnamespace";
    let before: Vec<(i64, String, String, String)> = sqlx::query_as(KEYS).fetch_all(&mut *tx).await?;
    tx.execute("SET LOCAL citus.enable_ddl_propagation = off").await?;
    tx.execute(AssertSqlSafe(statement.to_string())).await?;
    let after: Vec<(i64, String, String, String)> = sqlx::query_as(KEYS).fetch_all(&mut *tx).await?;
    let added: Vec<_> = after.into_iter().filter(|k| !before.iter().any(|b| b.0 == k.0)).collect();
    for (_, table, name, _) in &added {
        tx.execute(AssertSqlSafe(format!("ALTER TABLE {table} DROP CONSTRAINT {}", quote(name)))).await?;
    }
    tx.execute("SET LOCAL citus.enable_ddl_propagation = on").await?;
    for (_, table, name, definition) in &added {
        let (definition, relaxed) = citus_compatible_definition(definition);
        tx.execute(AssertSqlSafe(format!("ALTER TABLE {table} ADD CONSTRAINT {} {definition}", quote(name)))).await?;
        if relaxed {
            tracing::warn!(key = %format!("{table}.{name}"), "on Citus this foreign key's ON DELETE SET NULL / SET DEFAULT became NO ACTION");
        }
    }
    Ok(())
}
