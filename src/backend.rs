//! Which PostgreSQL the service runs on: plain, or Citus (coordinator and workers). Read once
//! from the database (`detect`) and consulted where the two differ, each in one place per
//! concern: migrations (`migrate::citus` distributes the tables), the one-message read
//! (`db::TenantTx::read_once`), the importer's insert form (`import::write`) and the start-up
//! check that `SET LOCAL` reaches the workers (`ensure_ready`). The differences themselves are
//! in `docs/citus.md`.

use sqlx::PgConnection;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Citus,
}

impl Backend {
    /// Citus when its extension is installed in the connection's database.
    pub async fn detect(conn: &mut PgConnection) -> Result<Backend, sqlx::Error> {
        let citus: bool =
            sqlx::query_scalar!(r#"SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus') AS "citus!""#)
                .fetch_one(conn)
                .await?;
        Ok(if citus { Backend::Citus } else { Backend::Postgres })
    }

    /// On Citus, refuse unless this connection's role has `citus.propagate_set_commands` =
    /// `local` (otherwise the tenant's `SET LOCAL` never reaches the workers); nothing to check
    /// on plain PostgreSQL.
    pub async fn ensure_ready(self, conn: &mut PgConnection) -> anyhow::Result<()> {
        match self {
            Backend::Postgres => Ok(()),
            Backend::Citus => ensure_set_propagation(conn).await,
        }
    }
}

/// The start-up rule, from the value of `citus.propagate_set_commands` as the service's role
/// sees it. Citus forwards `SET LOCAL` to the worker connections of a transaction only when it
/// is `local`; with anything else the policies on the shards read an empty tenant setting and
/// every tenant silently sees no rows and can write none (fail closed, but a broken service).
pub fn check_set_propagation(value: &str) -> Result<(), String> {
    if value.trim().eq_ignore_ascii_case("local") {
        return Ok(());
    }
    Err(format!(
        "refusing to start: the database runs Citus and citus.propagate_set_commands is '{value}', not 'local', so \
         the tenant set with SET LOCAL would not reach the workers and row-level security there would hide every \
         row; set `citus.propagate_set_commands = 'local'` in the coordinator's postgresql.conf (or `ALTER \
         DATABASE … SET citus.propagate_set_commands = 'local'`) and start again"
    ))
}

/// At start, on Citus (`Backend::ensure_ready`): the connection's `citus.propagate_set_commands`
/// must be `local` (`check_set_propagation`).
async fn ensure_set_propagation(conn: &mut PgConnection) -> anyhow::Result<()> {
    let value: String = sqlx::query_scalar!(r#"SELECT current_setting('citus.propagate_set_commands') AS "value!""#)
        .fetch_one(&mut *conn)
        .await?;
    check_set_propagation(&value).map_err(anyhow::Error::msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_propagation_lets_the_service_start() {
        assert_eq!(check_set_propagation("local"), Ok(()));
        assert_eq!(check_set_propagation("LOCAL"), Ok(()));
        for value in ["none", "", "off"] {
            let refusal = check_set_propagation(value).expect_err(value);
            assert!(refusal.contains("citus.propagate_set_commands"), "{refusal}");
            assert!(refusal.contains(&format!("'{value}'")), "names what it found: {refusal}");
        }
    }
}
