//! The operators' console on the bare host, by concern: sign-in and sign-out (here: the
//! platform login, its rules and limits), the tenants (`tenants`: list with search, paging and
//! row counts, one tenant's page), the changes an operator makes (`actions`: status, plan,
//! rate-limit override, domains, delete with a typed confirmation) and the checks (`checks`:
//! a tenant's audit verification, the policy findings, the health panel). Every change is the
//! platform's own function, as the platform API calls it, recorded in the tenant's audit log
//! with the operator as the actor (deletion, which purges that log, in the service log).

use axum::Extension;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::page::{self, Viewer, csrf_field, time};
use super::session::{CsrfForm, CsrfToken, OPERATOR_COOKIE, return_path, rotated_csrf_cookie, set_cookie};
use crate::db::registry::RateLimitOverride;
use crate::domain::{Invalid, Plan, Slug, TenantStatus};
use crate::http::ApiContext;
use crate::http::context::ClientAddr;
use crate::http::error::ApiError;
use crate::http::error_codes::ErrorCode;
use crate::http::extract::{Json, Path, Query};
use crate::http::layers::platform_auth::Operator;
use crate::http::routes::platform::auth::{PlatformToken, operator_login};
use crate::http::routes::platform::{Platform, platform_conn};
use crate::http::routes::{audit, audit_log, health};
use crate::limits::Limit;
use crate::platform::{PlatformConn, TenantChange, TenantSummary};

pub const SIGN_IN: &str = "/console/platform/session";
pub const LOGIN_PAGE: &str = "/console/platform/login";

/// Where the operator console's pages live: the only places sign-in returns to.
mod actions;
mod checks;
mod tenants;

pub use actions::*;
pub use checks::*;
pub use tenants::*;

/// The largest override the registry accepts (sql/V4__tenant_rate_limits.sql's CHECK).
const RATE_LIMIT_MAX: u32 = 1_000_000;

const CONSOLE: &str = "/console/platform/";

#[derive(Deserialize, Default)]
pub struct SignInNotice {
    /// Set when a page found the session ended (`session::pages`).
    expired: Option<String>,
    /// The page to return to after signing in (checked by `session::return_path`).
    next: Option<String>,
}

pub async fn login_page(Extension(csrf): Extension<CsrfToken>, Query(notice): Query<SignInNotice>) -> Markup {
    let note = notice.expired.map(|_| "Your session ended; sign in again.");
    sign_in_form(&csrf, note, None, notice.next.as_deref().and_then(|n| return_path(n, CONSOLE)))
}

fn sign_in_form(csrf: &CsrfToken, note: Option<&str>, error: Option<&str>, next: Option<&str>) -> Markup {
    page::layout(
        "Operator sign-in",
        Viewer::Nobody,
        None,
        html! {
            @if let Some(note) = note { p.notice role="status" { (note) } }
            @if let Some(error) = error { p.problem role="alert" { (error) } }
            p.muted { "Platform operators (accounts made with " code { "rowguard operators create" } ")." }
            form.signin method="post" action=(SIGN_IN) {
                (csrf_field(csrf))
                @if let Some(next) = next { input type="hidden" name="next" value=(next); }
                label { "E-mail" input type="email" name="email" autocomplete="username" required autofocus; }
                label { "Password" input type="password" name="password" autocomplete="current-password" required; }
                button type="submit" { "Sign in" }
            }
        },
    )
}

#[derive(Deserialize, serde::Serialize)]
pub struct SignIn {
    email: String,
    password: String,
    /// The page to return to (a console path; anything else is ignored). Not the login's.
    #[serde(default, skip_serializing)]
    next: Option<String>,
}

/// Sign in through the platform API's own login handler (its account budget, its logging;
/// the route's layer applied the per-address limit): its token becomes the session cookie.
pub async fn sign_in(
    State(ctx): State<ApiContext>,
    client: ClientAddr,
    Extension(csrf): Extension<CsrfToken>,
    CsrfForm(form): CsrfForm<SignIn>,
) -> Result<Response, ApiError> {
    let body = serde_json::to_value(&form).map_err(ApiError::internal)?;
    let body = serde_json::from_value(body).map_err(ApiError::internal)?;
    let platform = platform_conn(&ctx).await?;
    let answer = match operator_login(State(ctx.clone()), Platform(platform), client, Json(body)).await {
        Ok(answer) => answer,
        Err(e) if e.code == ErrorCode::InvalidCredentials => {
            let next = form.next.as_deref().and_then(|n| return_path(n, CONSOLE));
            let form = sign_in_form(&csrf, None, Some("The e-mail or password is wrong."), next);
            return Ok((StatusCode::UNAUTHORIZED, form).into_response());
        }
        Err(e) => return Err(e),
    };
    if answer.status() != StatusCode::OK {
        return Ok(answer); // the account's budget is spent: the 429 as the API answers it
    }
    let bytes = axum::body::to_bytes(answer.into_body(), 64 * 1024).await.map_err(ApiError::internal)?;
    let token: PlatformToken = serde_json::from_slice(&bytes).map_err(ApiError::internal)?;
    let to = form.next.as_deref().and_then(|n| return_path(n, CONSOLE)).unwrap_or(CONSOLE);
    let mut answer = Redirect::to(to).into_response();
    let cookie = set_cookie(&ctx, OPERATOR_COOKIE, &token.access_token, Some(token.expires_in));
    answer.headers_mut().append(header::SET_COOKIE, cookie);
    answer.headers_mut().append(header::SET_COOKIE, rotated_csrf_cookie(&ctx));
    Ok(answer)
}

#[derive(Deserialize)]
pub struct SignOut {}

/// Sign out: the cookie is cleared (a platform token cannot be revoked before it expires;
/// disabling the operator account cuts it off at once).
pub async fn sign_out(
    State(ctx): State<ApiContext>,
    _: Operator,
    CsrfForm(_): CsrfForm<SignOut>,
) -> Result<Response, ApiError> {
    let mut answer = Redirect::to(LOGIN_PAGE).into_response();
    answer.headers_mut().append(header::SET_COOKIE, set_cookie(&ctx, OPERATOR_COOKIE, "", None));
    Ok(answer)
}

fn parse_status(s: &str) -> Result<TenantStatus, ApiError> {
    serde_json::from_value(serde_json::Value::from(s))
        .map_err(|_| ApiError::bad_request(ErrorCode::InvalidQuery, "status: active, trial, suspended or deleted"))
}

async fn summary(platform: &mut PlatformConn, slug: &str) -> Result<(Slug, TenantSummary), ApiError> {
    let slug = Slug::parse(slug).map_err(|_| ApiError::not_found("tenant"))?;
    let tenant = platform.tenant(&slug).await?.ok_or_else(|| ApiError::not_found("tenant"))?;
    Ok((slug, tenant))
}
