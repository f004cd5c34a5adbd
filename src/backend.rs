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
        let citus: bool = sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus')")
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
            Backend::Citus => crate::migrate::citus::ensure_set_propagation(conn).await,
        }
    }
}
