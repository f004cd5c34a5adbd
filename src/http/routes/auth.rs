//! Sessions: `POST /v1/auth/login` (e-mail and password for an access token and a refresh
//! token), `refresh` (rotate), `logout` (end this login's token family), `logout-all`.
//! An unknown e-mail, a wrong password and a deactivated account get the same 401 body after
//! the same argon2 work. Refresh tokens are opaque, stored only as SHA-256 hashes, and rotated
//! on every use; presenting a rotated one again revokes its whole family and is recorded.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::audit::{self, AccessEvent};
use crate::auth::password::Verified;
use crate::auth::refresh::{NewRefreshToken, REFRESH_TOKEN_TTL, hash_presented};
use crate::db::TenantTx;
use crate::db::user_changes::UserChange;
use crate::domain::{Role, TenantId, UserId, UserStatus};
use crate::http::ApiContext;
use crate::http::context::Principal;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{Json, TenantScope};
use crate::http::layers::audit::record_throttled_as;
use crate::http::layers::rate_limit::{Account, account_refusal};
use crate::metrics::RateLimited;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(pattern = r"^[^\x00]*$")]
    email: String,
    #[schema(pattern = r"^[^\x00]*$")]
    password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token from login or the last refresh.
    refresh_token: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Opaque; exchange it at `POST /v1/auth/refresh` for a new pair. Single use: each
    /// refresh returns its successor, and presenting a used one ends the whole login.
    pub refresh_token: String,
}

/// Longer than any password we accept; longer input is refused without hashing it.
pub(crate) const MAX_PASSWORD_BYTES: usize = 1024;

fn invalid_refresh_token() -> ApiError {
    ApiError::unauthorized("invalid_refresh_token", "the refresh token is not valid; log in again")
}

/// Log in to the tenant named by the host or X-Tenant header.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    params(("X-Tenant" = Option<String>, Header, description = "tenant slug, when the host names none")),
    responses(
        (status = 200, body = TokenResponse),
        (status = 400, description = "`invalid_text`: a NUL byte in the e-mail or password", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "bad credentials (the same answer whichever part was wrong)", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "too many attempts from this address, or too many failed ones for this account", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn login(
    State(ctx): State<ApiContext>,
    scope: TenantScope,
    Json(body): Json<LoginRequest>,
) -> Result<Response, ApiError> {
    let bad_credentials = || ApiError::unauthorized("invalid_credentials", "the e-mail or password is wrong");
    let email = body.email.trim();
    if email.contains('\0') || body.password.contains('\0') {
        // No account can have one (PostgreSQL text cannot hold it): a failed login, recorded as
        // one, but answered as the malformed input it is.
        record_login(&ctx, &scope, None, email).await?;
        return Err(ApiError::bad_request("invalid_text", "the e-mail and password must not contain NUL bytes"));
    }
    if body.password.len() > MAX_PASSWORD_BYTES || email.len() > 254 {
        return Err(bad_credentials());
    }
    let mut tx = scope.begin().await?;
    // One row whether or not the account exists: the e-mail as the database lowers it keys
    // the per-account limit of an unknown account, so no spelling of an address (`İ` for
    // `i`, say) that the database folds together gets a budget of its own.
    let (lowered, account): (String, Option<(UserId, String, String, String)>) = {
        let row: (String, Option<UserId>, Option<String>, Option<String>, Option<String>) = sqlx::query_as(
            "SELECT lower($2), u.id, u.password_hash, u.role, u.status
               FROM (VALUES (1)) AS one (x)
               LEFT JOIN users u ON u.tenant_id = $1 AND lower(u.email) = lower($2)",
        )
        .bind(scope.tenant_id())
        .bind(email)
        .fetch_one(tx.conn())
        .await?;
        let account = match row {
            (_, Some(id), Some(hash), Some(role), Some(status)) => Some((id, hash, role, status)),
            _ => None,
        };
        (row.0, account)
    };
    tx.commit().await?;

    let limited = match &account {
        Some((user, ..)) => Account::User(scope.tenant_id(), *user),
        None => Account::UnknownUser(scope.tenant_id(), lowered),
    };
    if let Some(refusal) = ctx.rate_limits.account_refused(&limited) {
        ctx.metrics.rate_limited(RateLimited::LoginPerAccount);
        record_throttled_as(&ctx, scope.tenant_id(), &scope.actor(), "POST", "/v1/auth/login", "login_per_account")
            .await;
        return Ok(account_refusal(refusal));
    }
    let stored_hash = account.as_ref().map(|(_, hash, _, _)| hash.clone());
    // Kept only if an imported (Django) hash matched: it is re-hashed below.
    let password = body.password.clone();
    let verified = ctx.hasher.verify_detailed(body.password, stored_hash).await?;
    let password_ok = verified != Verified::No;
    let accepted = account.filter(|(_, _, _, status)| password_ok && status == "active");
    if accepted.is_none() {
        ctx.rate_limits.record_account_failure(limited);
    }
    if verified == Verified::NeedsRehash
        && let Some((user, old_hash, _, _)) = &accepted
    {
        replace_legacy_hash(&ctx, &scope, *user, old_hash, password).await?;
    }
    record_login(&ctx, &scope, accepted.as_ref().map(|(user, ..)| *user), email).await?;
    let Some((user, _, role, _)) = accepted else {
        return Err(bad_credentials());
    };
    let role = Role::parse(&role).map_err(ApiError::internal)?;
    // A login starts a new token family: the unit that logout and reuse detection end.
    let mut tx = scope.begin().await?;
    let refresh_token = store_refresh_token(&mut tx, scope.tenant_id(), user, Uuid::now_v7()).await?;
    tx.commit().await?;
    token_pair(&ctx, scope.tenant_id(), user, role, refresh_token).map(|pair| Json(pair).into_response())
}

/// The login's audit event: `auth.login` for `user`, `auth.login_failed` without one. The
/// e-mail as given, with any NUL replaced (the log is JSON, which PostgreSQL's jsonb refuses
/// `\u0000` in).
async fn record_login(
    ctx: &ApiContext,
    scope: &TenantScope,
    user: Option<UserId>,
    email: &str,
) -> Result<(), ApiError> {
    let mut actor = scope.actor();
    actor.user = user;
    let event = AccessEvent {
        action: if user.is_some() { "auth.login" } else { "auth.login_failed" },
        resource_type: Some("user"),
        resource_id: user.map(|u| u.to_string()),
        outcome: if user.is_some() { "success" } else { "failure" },
        details: serde_json::json!({ "email": email.replace('\0', "\u{fffd}") }),
    };
    audit::record(&ctx.db, scope.tenant_id(), &actor, event).await?;
    Ok(())
}

/// The first login of a user imported with a Django hash: store an argon2id hash of the
/// password that just verified, so the legacy hash is never needed again. Only if the stored
/// hash is still the one that was checked: a password change racing with this login wins.
async fn replace_legacy_hash(
    ctx: &ApiContext,
    scope: &TenantScope,
    user: UserId,
    old_hash: &str,
    password: String,
) -> Result<(), ApiError> {
    let new_hash = ctx.hasher.hash(password).await?;
    let mut tx = scope.begin().await?;
    sqlx::query(
        "UPDATE users SET password_hash = $3, updated_at = now()
          WHERE tenant_id = $1 AND id = $2 AND password_hash = $4",
    )
    .bind(scope.tenant_id())
    .bind(user)
    .bind(&new_hash)
    .bind(old_hash)
    .execute(tx.conn())
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Who a presented refresh token belongs to, and whether it may still be exchanged.
#[derive(sqlx::FromRow)]
struct PresentedToken {
    id: Uuid,
    user_id: UserId,
    family_id: Uuid,
    rotated: bool,
    live: bool,
    role: Role,
    status: UserStatus,
}

/// Exchange a refresh token for a new access token and its successor refresh token.
///
/// Takes the refresh token in the body, not a bearer token: the access token has usually
/// expired by now. The tenant still comes from the host or X-Tenant header.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    params(("X-Tenant" = Option<String>, Header, description = "tenant slug, when the host names none")),
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, description = "`invalid_refresh_token`, or `refresh_token_reused` (the token was already rotated: its whole family is now revoked)",
            body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn refresh(
    State(ctx): State<ApiContext>,
    scope: TenantScope,
    Json(body): Json<RefreshRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let hash = hash_presented(&body.refresh_token).ok_or_else(invalid_refresh_token)?;
    let tenant = scope.tenant_id();
    let mut tx = scope.begin().await?;
    // FOR UPDATE: two refreshes racing with one token are serialised, and the second one sees
    // it rotated — which is reuse, exactly as if a thief had replayed it.
    let presented: Option<PresentedToken> = sqlx::query_as(
        "SELECT t.id, t.user_id, t.family_id, t.rotated_at IS NOT NULL AS rotated,
                (t.revoked_at IS NULL AND t.expires_at > now()) AS live, u.role, u.status
           FROM refresh_tokens t JOIN users u ON u.tenant_id = t.tenant_id AND u.id = t.user_id
          WHERE t.tenant_id = $1 AND t.token_hash = $2
            FOR UPDATE OF t",
    )
    .bind(tenant)
    .bind(&hash[..])
    .fetch_optional(tx.conn())
    .await?;
    let token = presented.ok_or_else(invalid_refresh_token)?;
    if token.rotated {
        sqlx::query("UPDATE refresh_tokens SET reused_at = now() WHERE tenant_id = $1 AND id = $2")
            .bind(tenant)
            .bind(token.id)
            .execute(tx.conn())
            .await?;
        revoke(&mut tx, tenant, Revoke::Family(token.family_id), "reuse_detected").await?;
        let mut actor = scope.actor();
        actor.user = Some(token.user_id);
        let event = AccessEvent {
            action: "auth.refresh_reuse",
            resource_type: Some("user"),
            resource_id: Some(token.user_id.to_string()),
            outcome: "denied",
            details: serde_json::json!({ "family": token.family_id, "revoked": "family" }),
        };
        audit::append(&mut tx, &actor, event).await?;
        tx.commit().await?;
        tracing::warn!(tenant = %tenant, user = %token.user_id, family = %token.family_id,
            "refresh token reused after rotation: the whole token family is revoked");
        return Err(ApiError::unauthorized(
            "refresh_token_reused",
            "this refresh token was already used; every session of this login has been ended",
        ));
    }
    if !token.live || token.status != UserStatus::Active {
        return Err(invalid_refresh_token());
    }
    let role = token.role;
    sqlx::query("UPDATE refresh_tokens SET rotated_at = now() WHERE tenant_id = $1 AND id = $2")
        .bind(tenant)
        .bind(token.id)
        .execute(tx.conn())
        .await?;
    let successor = store_refresh_token(&mut tx, tenant, token.user_id, token.family_id).await?;
    tx.commit().await?;
    token_pair(&ctx, tenant, token.user_id, role, successor).map(Json)
}

/// End this login: revoke every refresh token of the presented token's family. Answers 204
/// whether or not the token was still live, so it tells a caller nothing.
///
/// Takes the refresh token in the body, not a bearer token: holding a family's token is
/// what entitles ending it. Access tokens already issued stay valid until they expire
/// (15 minutes at most by default); use logout-all to cut those off too.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", request_body = RefreshRequest,
    params(("X-Tenant" = Option<String>, Header, description = "tenant slug, when the host names none")),
    responses((status = 204), (status = 401, body = Problem, content_type = "application/problem+json")))]
pub async fn logout(scope: TenantScope, Json(body): Json<RefreshRequest>) -> Result<StatusCode, ApiError> {
    let hash = hash_presented(&body.refresh_token).ok_or_else(invalid_refresh_token)?;
    let tenant = scope.tenant_id();
    let mut tx = scope.begin().await?;
    let family: Option<Uuid> =
        sqlx::query_scalar("SELECT family_id FROM refresh_tokens WHERE tenant_id = $1 AND token_hash = $2")
            .bind(tenant)
            .bind(&hash[..])
            .fetch_optional(tx.conn())
            .await?;
    if let Some(family) = family {
        revoke(&mut tx, tenant, Revoke::Family(family), "logout").await?;
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// End every session of the authenticated user, on every instance, from the next request
/// on: all refresh tokens are revoked and access tokens issued until now are refused.
#[utoipa::path(post, path = "/v1/auth/logout-all", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem, content_type = "application/problem+json")))]
pub async fn logout_all(
    State(ctx): State<ApiContext>,
    scope: TenantScope,
    principal: Principal,
) -> Result<StatusCode, ApiError> {
    let mut tx = scope.begin().await?;
    end_all_sessions(&mut tx, scope.tenant_id(), principal.user, "logout_all").await?;
    tx.commit().await?;
    ctx.users.forget(UserChange::One(scope.tenant_id(), principal.user));
    Ok(StatusCode::NO_CONTENT)
}

/// Which refresh tokens to revoke.
pub(crate) enum Revoke {
    Family(Uuid),
    User(UserId),
}

/// Revoke the live tokens of a family or of a user, recording why.
pub(crate) async fn revoke(
    tx: &mut TenantTx<'_>,
    tenant: TenantId,
    which: Revoke,
    reason: &'static str,
) -> Result<(), ApiError> {
    let (sql, id) = match which {
        Revoke::Family(family) => (
            "UPDATE refresh_tokens SET revoked_at = now(), revoked_reason = $3
              WHERE tenant_id = $1 AND family_id = $2 AND revoked_at IS NULL",
            family,
        ),
        Revoke::User(user) => (
            "UPDATE refresh_tokens SET revoked_at = now(), revoked_reason = $3
              WHERE tenant_id = $1 AND user_id = $2 AND revoked_at IS NULL",
            user.0,
        ),
    };
    sqlx::query(sql).bind(tenant).bind(id).bind(reason).execute(tx.conn()).await?;
    Ok(())
}

/// Refuse every access token issued before now and revoke every refresh token of `user`
/// (logout-all, a password change). The caller commits, then drops its cache entry.
pub(crate) async fn end_all_sessions(
    tx: &mut TenantTx<'_>,
    tenant: TenantId,
    user: UserId,
    reason: &'static str,
) -> Result<(), ApiError> {
    // The service's clock, not the database's: it is the clock that stamps tokens (`jti`).
    sqlx::query("UPDATE users SET sessions_valid_after = $3, updated_at = now() WHERE tenant_id = $1 AND id = $2")
        .bind(tenant)
        .bind(user)
        .bind(Utc::now())
        .execute(tx.conn())
        .await?;
    revoke(tx, tenant, Revoke::User(user), reason).await
}

/// Store a new refresh token of `family` for `user`; returns the token to hand out once.
pub(crate) async fn store_refresh_token(
    tx: &mut TenantTx<'_>,
    tenant: TenantId,
    user: UserId,
    family: Uuid,
) -> Result<String, ApiError> {
    let new = NewRefreshToken::generate();
    let ttl = chrono::Duration::from_std(REFRESH_TOKEN_TTL).map_err(ApiError::internal)?;
    sqlx::query(
        "INSERT INTO refresh_tokens (tenant_id, id, user_id, family_id, token_hash, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(tenant)
    .bind(Uuid::now_v7())
    .bind(user)
    .bind(family)
    .bind(&new.hash[..])
    .bind(Utc::now() + ttl)
    .execute(tx.conn())
    .await?;
    Ok(new.token)
}

/// Sign an access token and pair it with `refresh_token`.
pub(crate) fn token_pair(
    ctx: &ApiContext,
    tenant: TenantId,
    user: UserId,
    role: Role,
    refresh_token: String,
) -> Result<TokenResponse, ApiError> {
    let access_token = ctx.keys.issue(user, tenant, role).map_err(ApiError::internal)?;
    Ok(TokenResponse { access_token, token_type: "Bearer".into(), expires_in: ctx.keys.ttl().as_secs(), refresh_token })
}
