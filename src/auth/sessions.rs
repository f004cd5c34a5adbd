//! Sessions: the rules of logging in, refreshing, logging out and changing one's password,
//! apart from HTTP (the handlers parse, call one function here, and map the outcome).
//!
//! An unknown e-mail, a wrong password and a deactivated account fail alike, after the same
//! argon2 work. Every password check consults the account's failure budget first and charges
//! it on failure. Refresh tokens are opaque, stored only as SHA-256 hashes, and rotated on
//! every use; presenting a rotated one again revokes its whole family and is recorded.

use std::sync::Arc;

use chrono::Utc;
use uuid::Uuid;

use super::jwt::{JwtKeys, KeyError};
use super::password::{HashError, PasswordHasher, Verified};
use super::refresh::{NewRefreshToken, REFRESH_TOKEN_TTL, hash_presented};
use super::user_state::UserStateCache;
use crate::audit::{self, AccessEvent};
use crate::db::revocation::{Revoke, end_all_sessions, revoke};
use crate::db::{TenantScope, TenantTx};
use crate::domain::{NewPassword, Role, TenantId, UserId, UserStatus};
use crate::limits::{Account, AccountGate, Refusal};

/// Longer than any password we accept; longer input is refused without hashing it.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Longer than any e-mail address (RFC 5321's path limit).
const MAX_EMAIL_BYTES: usize = 254;

/// A new access token and the refresh token to exchange for its successor.
#[derive(Debug)]
pub struct Tokens {
    pub access_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    pub refresh_token: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the e-mail or password is wrong")]
    BadCredentials,
    /// No account can have one (PostgreSQL text cannot hold it): a failed login, recorded as
    /// one, but answered as the malformed input it is.
    #[error("the e-mail and password must not contain NUL bytes")]
    NulInCredentials,
    #[error("the current password is wrong")]
    WrongPassword,
    #[error("the refresh token is not valid; log in again")]
    InvalidRefreshToken,
    #[error("this refresh token was already used; every session of this login has been ended")]
    RefreshTokenReused,
    /// The account used up its failure budget: no password is checked until the wait is over.
    #[error("too many failed password checks for this account")]
    Throttled(Refusal),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error("cannot sign the access token: {0}")]
    Key(#[from] KeyError),
}

/// The session service one instance runs: the tenant users' hasher, the signing keys, the
/// per-account failure budget, and the user-state cache it drops entries of when sessions end.
pub struct Sessions {
    hasher: PasswordHasher,
    keys: Arc<JwtKeys>,
    gate: Arc<dyn AccountGate>,
    users: Arc<UserStateCache>,
}

/// The account an e-mail names, as login reads it.
struct Candidate {
    id: UserId,
    hash: String,
    role: Role,
    status: UserStatus,
}

/// Who a presented refresh token belongs to, and whether it may still be exchanged.
struct PresentedToken {
    id: Uuid,
    user_id: UserId,
    family_id: Uuid,
    rotated: bool,
    live: bool,
    role: Role,
    status: UserStatus,
}

impl Sessions {
    pub fn new(
        hasher: PasswordHasher,
        keys: Arc<JwtKeys>,
        gate: Arc<dyn AccountGate>,
        users: Arc<UserStateCache>,
    ) -> Sessions {
        Sessions { hasher, keys, gate, users }
    }

    /// Log in to `scope`'s tenant with an e-mail and password: a new token family.
    pub async fn login(&self, scope: &TenantScope, email: &str, password: String) -> Result<Tokens, SessionError> {
        let email = email.trim();
        if email.contains('\0') || password.contains('\0') {
            record_login(scope, None, email).await?;
            return Err(SessionError::NulInCredentials);
        }
        if password.len() > MAX_PASSWORD_BYTES || email.len() > MAX_EMAIL_BYTES {
            return Err(SessionError::BadCredentials);
        }
        let tenant = scope.tenant_id();
        let (lowered, candidate) = find_account(scope, email).await?;
        let account = match &candidate {
            Some(c) => Account::User(tenant, c.id),
            None => Account::UnknownUser(tenant, lowered),
        };
        if let Some(refusal) = self.gate.refused(&account) {
            return Err(SessionError::Throttled(refusal));
        }
        // Kept only if an imported (Django) hash matched: it is re-hashed below.
        let retained = password.clone();
        // A deactivated user never logs in: their hash is not checked at all, the decoy is, so
        // the answer costs an unknown e-mail's time whatever the hash (an imported PBKDF2 hash
        // at a million iterations would otherwise tell that the account exists).
        let stored = candidate.as_ref().filter(|c| c.status == UserStatus::Active).map(|c| c.hash.clone());
        let verified = self.hasher.verify_detailed(password, stored).await?;
        let accepted = candidate.filter(|c| verified != Verified::No && c.status == UserStatus::Active);
        if accepted.is_none() {
            self.gate.record_failure(account);
        }
        if verified == Verified::NeedsRehash
            && let Some(c) = &accepted
        {
            self.replace_legacy_hash(scope, c.id, &c.hash, retained).await?;
        }
        record_login(scope, accepted.as_ref().map(|c| c.id), email).await?;
        let Some(user) = accepted else {
            return Err(SessionError::BadCredentials);
        };
        // A login starts a new token family: the unit that logout and reuse detection end.
        let mut tx = scope.begin().await?;
        let refresh_token = store_refresh_token(&mut tx, tenant, user.id, Uuid::now_v7()).await?;
        tx.commit().await?;
        self.tokens(tenant, user.id, user.role, refresh_token)
    }

    /// Exchange a refresh token for a new access token and its successor refresh token.
    pub async fn refresh(&self, scope: &TenantScope, presented: &str) -> Result<Tokens, SessionError> {
        let hash = hash_presented(presented).ok_or(SessionError::InvalidRefreshToken)?;
        let tenant = scope.tenant_id();
        let mut tx = scope.begin().await?;
        // FOR UPDATE: two refreshes racing with one token are serialised, and the second one
        // sees it rotated — which is reuse, exactly as if a thief had replayed it.
        let presented = sqlx::query_as!(
            PresentedToken,
            r#"SELECT t.id, t.user_id AS "user_id: UserId", t.family_id, t.rotated_at IS NOT NULL AS "rotated!",
                      (t.revoked_at IS NULL AND t.expires_at > now()) AS "live!",
                      u.role AS "role: Role", u.status AS "status: UserStatus"
                 FROM refresh_tokens t JOIN users u ON u.tenant_id = t.tenant_id AND u.id = t.user_id
                WHERE t.tenant_id = $1 AND t.token_hash = $2
                  FOR UPDATE OF t"#,
            tenant.0,
            &hash[..],
        )
        .fetch_optional(tx.conn())
        .await?;
        let token = presented.ok_or(SessionError::InvalidRefreshToken)?;
        if token.rotated {
            sqlx::query!(
                "UPDATE refresh_tokens SET reused_at = now() WHERE tenant_id = $1 AND id = $2",
                tenant.0,
                token.id
            )
            .execute(tx.conn())
            .await?;
            revoke(&mut tx, tenant, Revoke::Family(token.family_id), "reuse_detected").await?;
            let event = AccessEvent {
                action: "auth.refresh_reuse",
                resource_type: Some("user"),
                resource_id: Some(token.user_id.to_string()),
                outcome: "denied",
                details: serde_json::json!({ "family": token.family_id, "revoked": "family" }),
            };
            audit::append(&mut tx, &scope.acting_as(token.user_id).actor(), event).await?;
            tx.commit().await?;
            tracing::warn!(tenant = %tenant, user = %token.user_id, family = %token.family_id,
                "refresh token reused after rotation: the whole token family is revoked");
            return Err(SessionError::RefreshTokenReused);
        }
        if !token.live || token.status != UserStatus::Active {
            return Err(SessionError::InvalidRefreshToken);
        }
        sqlx::query!(
            "UPDATE refresh_tokens SET rotated_at = now() WHERE tenant_id = $1 AND id = $2",
            tenant.0,
            token.id
        )
        .execute(tx.conn())
        .await?;
        let successor = store_refresh_token(&mut tx, tenant, token.user_id, token.family_id).await?;
        tx.commit().await?;
        self.tokens(tenant, token.user_id, token.role, successor)
    }

    /// End the login a refresh token belongs to (its whole family). Succeeds whether or not
    /// the token was still live, so it tells a caller nothing.
    pub async fn logout(&self, scope: &TenantScope, presented: &str) -> Result<(), SessionError> {
        let hash = hash_presented(presented).ok_or(SessionError::InvalidRefreshToken)?;
        let tenant = scope.tenant_id();
        let mut tx = scope.begin().await?;
        let family = sqlx::query_scalar!(
            "SELECT family_id FROM refresh_tokens WHERE tenant_id = $1 AND token_hash = $2",
            tenant.0,
            &hash[..],
        )
        .fetch_optional(tx.conn())
        .await?;
        if let Some(family) = family {
            revoke(&mut tx, tenant, Revoke::Family(family), "logout").await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// End every session of `user`, on every instance, from the next request on.
    pub async fn logout_all(&self, scope: &TenantScope, user: UserId) -> Result<(), SessionError> {
        let mut tx = scope.begin().await?;
        end_all_sessions(&mut tx, scope.tenant_id(), user, "logout_all").await?;
        tx.commit().await?;
        self.users.changed(scope.tenant_id(), user).await;
        Ok(())
    }

    /// Change `user`'s password after checking the current one (with login's failure budget,
    /// on the same account: a stolen access token must not become a way to guess the password
    /// at full speed). Every session of the user ends; the answer is a fresh pair for this
    /// client.
    pub async fn change_password(
        &self,
        scope: &TenantScope,
        user: UserId,
        role: Role,
        current: String,
        new: NewPassword,
    ) -> Result<Tokens, SessionError> {
        if current.len() > MAX_PASSWORD_BYTES {
            return Err(SessionError::WrongPassword);
        }
        let tenant = scope.tenant_id();
        let mut tx = scope.begin().await?;
        let stored =
            sqlx::query_scalar!("SELECT password_hash FROM users WHERE tenant_id = $1 AND id = $2", tenant.0, user.0)
                .fetch_optional(tx.conn())
                .await?;
        tx.commit().await?;
        let account = Account::User(tenant, user);
        if let Some(refusal) = self.gate.refused(&account) {
            return Err(SessionError::Throttled(refusal));
        }
        // Hash and verify outside any transaction: argon2 takes tens of milliseconds.
        if !self.hasher.verify(current, stored).await? {
            self.gate.record_failure(account);
            return Err(SessionError::WrongPassword);
        }
        let hash = self.hasher.hash(new.expose().to_string()).await?;
        let mut tx = scope.begin().await?;
        sqlx::query!(
            "UPDATE users SET password_hash = $3, updated_at = now() WHERE tenant_id = $1 AND id = $2",
            tenant.0,
            user.0,
            hash,
        )
        .execute(tx.conn())
        .await?;
        end_all_sessions(&mut tx, tenant, user, "password_changed").await?;
        let refresh_token = store_refresh_token(&mut tx, tenant, user, Uuid::now_v7()).await?;
        tx.commit().await?;
        self.users.changed(tenant, user).await;
        self.tokens(tenant, user, role, refresh_token)
    }

    /// The first login of a user imported with a Django hash: store an argon2id hash of the
    /// password that just verified, so the legacy hash is never needed again. Only if the
    /// stored hash is still the one that was checked: a password change racing with this
    /// login wins.
    async fn replace_legacy_hash(
        &self,
        scope: &TenantScope,
        user: UserId,
        old_hash: &str,
        password: String,
    ) -> Result<(), SessionError> {
        let new_hash = self.hasher.hash(password).await?;
        let mut tx = scope.begin().await?;
        sqlx::query!(
            "UPDATE users SET password_hash = $3, updated_at = now()
              WHERE tenant_id = $1 AND id = $2 AND password_hash = $4",
            scope.tenant_id().0,
            user.0,
            new_hash,
            old_hash,
        )
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sign an access token and pair it with `refresh_token`.
    fn tokens(
        &self,
        tenant: TenantId,
        user: UserId,
        role: Role,
        refresh_token: String,
    ) -> Result<Tokens, SessionError> {
        let access_token = self.keys.issue(user, tenant, role)?;
        Ok(Tokens { access_token, expires_in: self.keys.ttl().as_secs(), refresh_token })
    }
}

/// One row whether or not the account exists: the e-mail as the database lowers it keys the
/// per-account limit of an unknown account, so no spelling of an address (`İ` for `i`, say)
/// that the database folds together gets a budget of its own.
async fn find_account(scope: &TenantScope, email: &str) -> Result<(String, Option<Candidate>), sqlx::Error> {
    let mut tx = scope.begin().await?;
    // The LEFT JOIN makes every column of `u` nullable, whatever the table says.
    let row = sqlx::query!(
        r#"SELECT lower($2) AS "lowered!", u.id AS "id?: UserId", u.password_hash AS "hash?",
                  u.role AS "role?: Role", u.status AS "status?: UserStatus"
             FROM (VALUES (1)) AS one (x)
             LEFT JOIN users u ON u.tenant_id = $1 AND lower(u.email) = lower($2)"#,
        scope.tenant_id().0,
        email,
    )
    .fetch_one(tx.conn())
    .await?;
    tx.commit().await?;
    let candidate = match (row.id, row.hash, row.role, row.status) {
        (Some(id), Some(hash), Some(role), Some(status)) => Some(Candidate { id, hash, role, status }),
        _ => None,
    };
    Ok((row.lowered, candidate))
}

/// The login's audit event: `auth.login` for `user`, `auth.login_failed` without one. The
/// e-mail as given, with any NUL replaced (the log is JSON, which PostgreSQL's jsonb refuses
/// `\u0000` in).
async fn record_login(scope: &TenantScope, user: Option<UserId>, email: &str) -> Result<(), sqlx::Error> {
    let event = AccessEvent {
        action: if user.is_some() { "auth.login" } else { "auth.login_failed" },
        resource_type: Some("user"),
        resource_id: user.map(|u| u.to_string()),
        outcome: if user.is_some() { "success" } else { "failure" },
        details: serde_json::json!({ "email": email.replace('\0', "\u{fffd}") }),
    };
    match user {
        Some(user) => audit::record_in(&scope.acting_as(user), event).await,
        None => audit::record_in(scope, event).await,
    }
}

/// Store a new refresh token of `family` for `user`; returns the token to hand out once.
async fn store_refresh_token(
    tx: &mut TenantTx<'_>,
    tenant: TenantId,
    user: UserId,
    family: Uuid,
) -> Result<String, sqlx::Error> {
    let new = NewRefreshToken::generate();
    sqlx::query!(
        "INSERT INTO refresh_tokens (tenant_id, id, user_id, family_id, token_hash, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
        tenant.0,
        Uuid::now_v7(),
        user.0,
        family,
        &new.hash[..],
        Utc::now() + REFRESH_TOKEN_TTL,
    )
    .execute(tx.conn())
    .await?;
    Ok(new.token)
}
