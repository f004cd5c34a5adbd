//! Ending sessions, as rows: revoking refresh tokens (one login's family, or all of a user's)
//! and moving a user's session cut-off, inside the caller's tenant transaction. The session
//! rules (`auth::sessions`) and the membership rules (`db::users`, a deactivation) both end
//! sessions; here, below both, neither module needs the other.

use chrono::Utc;
use uuid::Uuid;

use super::TenantTx;
use crate::domain::{TenantId, UserId};

/// Which refresh tokens to revoke.
pub enum Revoke {
    Family(Uuid),
    User(UserId),
}

/// Revoke the live tokens of a family or of a user, recording why.
pub async fn revoke(
    tx: &mut TenantTx<'_>,
    tenant: TenantId,
    which: Revoke,
    reason: &'static str,
) -> Result<(), sqlx::Error> {
    match which {
        Revoke::Family(family) => sqlx::query!(
            "UPDATE refresh_tokens SET revoked_at = now(), revoked_reason = $3
              WHERE tenant_id = $1 AND family_id = $2 AND revoked_at IS NULL",
            tenant.0,
            family,
            reason,
        ),
        Revoke::User(user) => sqlx::query!(
            "UPDATE refresh_tokens SET revoked_at = now(), revoked_reason = $3
              WHERE tenant_id = $1 AND user_id = $2 AND revoked_at IS NULL",
            tenant.0,
            user.0,
            reason,
        ),
    }
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Refuse every access token issued before now and revoke every refresh token of `user`
/// (logout-all, a password change, a deactivation). The caller commits, then drops its cache
/// entry.
pub async fn end_all_sessions(
    tx: &mut TenantTx<'_>,
    tenant: TenantId,
    user: UserId,
    reason: &'static str,
) -> Result<(), sqlx::Error> {
    // The service's clock, not the database's: it is the clock that stamps tokens (`jti`).
    sqlx::query!(
        "UPDATE users SET sessions_valid_after = $3, updated_at = now() WHERE tenant_id = $1 AND id = $2",
        tenant.0,
        user.0,
        Utc::now(),
    )
    .execute(tx.conn())
    .await?;
    revoke(tx, tenant, Revoke::User(user), reason).await
}
