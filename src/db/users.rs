//! A tenant's users as the API changes them, with the membership rules: only a role with
//! `manage_owners` may make, change or remove an owner, and the tenant's last active owner can
//! be neither demoted, deactivated nor removed. Deactivating a user ends its sessions.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::revocation::end_all_sessions;
use super::{TenantScope, TenantTx};
use crate::domain::permissions::Lacking;
use crate::domain::{Permission, Role, TenantId, UserId, UserStatus};

#[derive(Debug, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub role: Role,
    pub status: UserStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Why a change to a user was refused.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("no such user")]
    NotFound,
    #[error(transparent)]
    Lacks(#[from] Lacking),
    #[error("the tenant's last active owner cannot be demoted, deactivated or removed")]
    LastOwner,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Change `id`'s role or status as a user of role `acting` (who already holds `manage_users`).
/// Deactivating also cuts off the access tokens issued so far, so that reactivating the
/// account later does not bring them back to life.
pub async fn update(
    scope: &TenantScope,
    acting: Role,
    id: UserId,
    role: Option<Role>,
    status: Option<UserStatus>,
) -> Result<User, MembershipError> {
    let tenant = scope.tenant_id();
    let mut tx = scope.begin().await?;
    let target = lock_for_change(&mut tx, tenant, id).await?.ok_or(MembershipError::NotFound)?;
    if target.role == Role::Owner || role == Some(Role::Owner) {
        acting.require(Permission::ManageOwners)?;
    }
    let stays_active_owner =
        role.unwrap_or(target.role) == Role::Owner && status.unwrap_or(target.status) == UserStatus::Active;
    if target.is_active_owner() && !stays_active_owner && target.other_active_owners == 0 {
        return Err(MembershipError::LastOwner);
    }
    let user = sqlx::query_as!(
        User,
        r#"UPDATE users SET role = COALESCE($3, role), status = COALESCE($4, status), updated_at = now()
            WHERE tenant_id = $1 AND id = $2
           RETURNING id AS "id: UserId", email, role AS "role: Role", status AS "status: UserStatus", created_at, updated_at"#,
        tenant.0,
        id.0,
        role.map(Role::as_str),
        status.map(UserStatus::as_str),
    )
    .fetch_one(tx.conn())
    .await?;
    if status == Some(UserStatus::Deactivated) {
        end_all_sessions(&mut tx, tenant, id, "user_deactivated").await?;
    }
    tx.commit().await?;
    Ok(user)
}

/// Remove `id` (its refresh tokens go with it: ON DELETE CASCADE) as a user of role `acting`.
pub async fn delete(scope: &TenantScope, acting: Role, id: UserId) -> Result<(), MembershipError> {
    let tenant = scope.tenant_id();
    let mut tx = scope.begin().await?;
    let target = lock_for_change(&mut tx, tenant, id).await?.ok_or(MembershipError::NotFound)?;
    if target.role == Role::Owner {
        acting.require(Permission::ManageOwners)?;
    }
    if target.is_active_owner() && target.other_active_owners == 0 {
        return Err(MembershipError::LastOwner);
    }
    sqlx::query!("DELETE FROM users WHERE tenant_id = $1 AND id = $2", tenant.0, id.0).execute(tx.conn()).await?;
    // An adopted table may hold a deferred key to the user (Django's tables do).
    tx.check_deferred_keys_at_commit();
    tx.commit().await?;
    Ok(())
}

/// The user about to change, and how many other active owners the tenant has.
struct Target {
    role: Role,
    status: UserStatus,
    other_active_owners: usize,
}

impl Target {
    fn is_active_owner(&self) -> bool {
        self.role == Role::Owner && self.status == UserStatus::Active
    }
}

/// Lock the tenant's active owners, then the target, always in that order and by id: two
/// owners demoting each other at once are serialised (the second sees the first's change)
/// and cannot deadlock.
async fn lock_for_change(tx: &mut TenantTx<'_>, tenant: TenantId, id: UserId) -> Result<Option<Target>, sqlx::Error> {
    let owners = sqlx::query_scalar!(
        r#"SELECT id AS "id: UserId" FROM users
            WHERE tenant_id = $1 AND role = 'owner' AND status = 'active' ORDER BY id FOR UPDATE"#,
        tenant.0,
    )
    .fetch_all(tx.conn())
    .await?;
    let row = sqlx::query!(
        r#"SELECT role AS "role: Role", status AS "status: UserStatus" FROM users
            WHERE tenant_id = $1 AND id = $2 FOR UPDATE"#,
        tenant.0,
        id.0,
    )
    .fetch_optional(tx.conn())
    .await?;
    Ok(row.map(|r| Target {
        role: r.role,
        status: r.status,
        other_active_owners: owners.iter().filter(|o| **o != id).count(),
    }))
}
