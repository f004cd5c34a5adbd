//! Operator accounts (sql/V8__operators.sql): created by the CLI, read at platform login and on
//! every platform request, always as the platform role — the app role cannot see this table.

use chrono::{DateTime, Utc};

use super::{PlatformConn, PlatformError, on_unique};
use crate::domain::{Email, OperatorId};

/// What a login needs to decide: the stored hash and whether the account may act.
pub struct OperatorCredentials {
    pub id: OperatorId,
    pub password_hash: String,
    pub active: bool,
}

#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct OperatorSummary {
    pub id: OperatorId,
    pub email: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
}

impl PlatformConn {
    /// A new, active operator. `password_hash` is already argon2id.
    pub async fn create_operator(&mut self, email: &Email, password_hash: &str) -> Result<OperatorId, PlatformError> {
        let id = OperatorId::new_v7();
        sqlx::query!(
            "INSERT INTO operators (id, email, password_hash) VALUES ($1, $2, $3)",
            id.0,
            email.as_str(),
            password_hash
        )
        .execute(self.conn())
        .await
        .map_err(|e| on_unique(e, || PlatformError::OperatorEmailTaken(email.to_string())))?;
        Ok(id)
    }

    /// Case-insensitive, like the unique index.
    /// The e-mail as the database lowers it (what the lookup compares, and so what a limit on
    /// an unknown account keys on), and the operator it names, if any.
    pub async fn operator_credentials(
        &mut self,
        email: &str,
    ) -> Result<(String, Option<OperatorCredentials>), PlatformError> {
        let row = sqlx::query!(
            r#"SELECT lower($1) AS "lowered!", o.id AS "id?: OperatorId", o.password_hash AS "password_hash?",
                      o.status AS "status?"
                 FROM (VALUES (1)) AS one (x)
                 LEFT JOIN operators o ON lower(o.email) = lower($1)"#,
            email
        )
        .fetch_one(self.conn())
        .await?;
        let (lowered, id, password_hash, status) = (row.lowered, row.id, row.password_hash, row.status);
        let account = match (id, password_hash, status) {
            (Some(id), Some(password_hash), Some(status)) => {
                Some(OperatorCredentials { id, password_hash, active: status == "active" })
            }
            _ => None,
        };
        Ok((lowered, account))
    }

    /// Checked on every platform request, so a disabled operator is refused at once, not when
    /// its token expires (OWASP ASVS 8.3.2).
    pub async fn operator_is_active(&mut self, id: OperatorId) -> Result<bool, PlatformError> {
        Ok(sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT FROM operators WHERE id = $1 AND status = 'active') AS "exists!""#,
            id.0
        )
        .fetch_one(self.conn())
        .await?)
    }

    /// Disable (or re-enable) an operator by e-mail; false when there is no such operator. A
    /// disabled operator's tokens are refused from the next request on.
    pub async fn set_operator_active(&mut self, email: &str, active: bool) -> Result<bool, PlatformError> {
        let changed = sqlx::query!(
            "UPDATE operators SET status = $2 WHERE lower(email) = lower($1)",
            email,
            if active { "active" } else { "disabled" }
        )
        .execute(self.conn())
        .await?
        .rows_affected();
        Ok(changed > 0)
    }

    pub async fn list_operators(&mut self) -> Result<Vec<OperatorSummary>, PlatformError> {
        Ok(sqlx::query_as!(
            OperatorSummary,
            r#"SELECT id AS "id: OperatorId", email, status, created_at FROM operators ORDER BY lower(email)"#
        )
        .fetch_all(self.conn())
        .await?)
    }
}
