//! The operators' console on the bare host: sign-in (the platform login, its rules and limits),
//! the tenants with status, plan, domains and creation time (search and paging), one tenant
//! with suspend/resume, change of plan, custom domains (add, remove, make primary) and delete
//! with a typed confirmation, a tenant's audit verification, and a health panel. Every change
//! is the platform's own function, as the platform API calls it: `change_tenant` records
//! status and plan changes in the tenant's log; domain changes and deletion go to the service
//! log, as the API's do.

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

#[derive(Deserialize, Default)]
pub struct TenantsQuery {
    /// Part of a slug or name (case-insensitive).
    q: Option<String>,
    status: Option<String>,
    cursor: Option<String>,
}

const PAGE: usize = 20;
/// A search reads the registry a hundred tenants at a time, at most this many times per page.
const SEARCH_SCANS: usize = 50;

/// Tenants in slug order, 20 a page; a search keeps those whose slug or name holds the text.
pub async fn tenants(
    _: Operator,
    Platform(mut platform): Platform,
    Extension(csrf): Extension<CsrfToken>,
    Query(query): Query<TenantsQuery>,
) -> Result<Response, ApiError> {
    let text = |v: &Option<String>| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
    let status = match text(&query.status) {
        Some(s) => Some(parse_status(&s)?),
        None => None,
    };
    let mut after = match text(&query.cursor) {
        Some(c) => Some(Slug::parse(&c).map_err(|_| ApiError::bad_request(ErrorCode::InvalidCursor, "no such page"))?),
        None => None,
    };
    let needle = text(&query.q).map(|q| q.to_lowercase());
    let mut shown: Vec<TenantSummary> = Vec::new();
    let mut more = false;
    for _ in 0..SEARCH_SCANS {
        let batch = platform.list_tenants_page(after.as_ref(), 100, status).await?;
        let last = batch.last().and_then(|t| Slug::parse(&t.slug).ok());
        let full = batch.len() == 100;
        for t in batch {
            let hit = needle
                .as_ref()
                .is_none_or(|n| t.slug.contains(n.as_str()) || t.name.to_lowercase().contains(n.as_str()));
            if hit {
                if shown.len() == PAGE {
                    more = true;
                    break;
                }
                shown.push(t);
            }
        }
        if more || !full {
            break;
        }
        after = last;
    }
    let counted = platform.countable_tables().await?;
    let left_out = uncounted_tables(&mut platform).await?;
    let mut rows = Vec::with_capacity(shown.len());
    for t in &shown {
        let counts = match t.status {
            TenantStatus::Deleted => None, // purged
            _ => Some(Counts::of(&platform.row_counts(t.id, &counted, LIST_COUNT_CAP).await?, LIST_COUNT_CAP)),
        };
        rows.push((t, platform.domains(t.id).await?, counts));
    }
    let next = shown.last().filter(|_| more).map(|t| t.slug.clone());
    let q = text(&query.q).unwrap_or_default();
    let body = html! {
        form.filters method="get" action="/console/platform/" aria-label="search" {
            label { "Search slug or name" input type="search" name="q" value=(q); }
            label { "Status" select name="status" {
                @for s in ["", "active", "trial", "suspended", "deleted"] {
                    option value=(s) selected[query.status.as_deref() == Some(s)] { (if s.is_empty() { "any" } else { s }) }
                }
            } }
            div { button type="submit" { "Search" } " " a href="/console/platform/" { "Clear" } }
        }
        @if rows.is_empty() {
            p.notice { "No tenants match. Clear the search, or create one with " code { "rowguard tenants create" } "." }
        } @else {
            div.table-wrap { table {
                thead { tr {
                    th { "Slug" } th.hide-narrow { "Name" } th { "Status" } th { "Plan" }
                    th.num title="Rows in the tenant's data tables (audit log not included)" { "Rows" }
                    th.num.hide-narrow { "Audit events" }
                    th.hide-narrow { "Domains" } th { "Created" }
                } }
                tbody { @for (t, domains, counts) in &rows {
                    tr {
                        td { a href=(format!("/console/platform/tenants/{}", t.slug)) { (t.slug) } }
                        td.hide-narrow { (t.name) }
                        td { span class=(format!("status-{}", t.status.as_str())) { (t.status.as_str()) } }
                        td { (t.plan.as_str()) }
                        @match counts {
                            Some(c) => {
                                td.num.rows { (c.data_text()) }
                                td.num.hide-narrow { (c.audit_text()) }
                            }
                            None => { td.num.muted { "—" } td.num.hide-narrow.muted { "—" } }
                        }
                        td.hide-narrow { @for d in domains { code { (d.domain) } @if d.is_primary { " (primary)" } br; } }
                        td { (time(t.created_at)) }
                    }
                } }
            } }
            p.muted { "Rows are counted in each tenant's own transaction, up to " (count_text(LIST_COUNT_CAP, false))
                " per table (a + means at least that many); a tenant's page counts further." }
            @if !left_out.is_empty() { (left_out_note(&left_out, false)) }
        }
        div.pager {
            @if query.cursor.is_some() { a href="/console/platform/" { "First page" } }
            @if let Some(next) = next {
                @let link = serde_urlencoded::to_string([("q", q.as_str()), ("status", query.status.as_deref().unwrap_or("")), ("cursor", next.as_str())]).unwrap_or_default();
                a href=(format!("/console/platform/?{link}")) rel="next" { "Next tenants →" }
            }
        }
    };
    Ok(page::layout("Tenants", Viewer::Operator, Some(&csrf), body).into_response())
}

/// Tenant tables the counts leave out: those `policies verify` reports for row-level security
/// not enabled or not forced. Counting them as the platform role would not be held to the
/// tenant by their policy (`platform::row_counts`), so they are skipped — and the pages say
/// so, or a tenant's total would look complete when it is not.
async fn uncounted_tables(platform: &mut PlatformConn) -> Result<Vec<String>, ApiError> {
    use crate::catalog::Rule;
    let mut tables: Vec<String> = platform
        .catalog_findings()
        .await?
        .into_iter()
        .filter(|f| matches!(f.rule, Rule::RlsNotEnabled | Rule::RlsNotForced))
        .map(|f| f.object)
        .collect();
    tables.sort();
    tables.dedup();
    Ok(tables)
}

/// The note under the counts: how many tables were left out and why (named on a tenant's page).
fn left_out_note(tables: &[String], name_them: bool) -> Markup {
    let count = if tables.len() == 1 { "1 table is".to_string() } else { format!("{} tables are", tables.len()) };
    html! {
        p.notice.left-out role="note" {
            "Not counted: " (count) " left out because row-level security is not enabled and forced on "
            @if tables.len() == 1 { "it" } @else { "them" }
            @if name_them { " (" @for (i, t) in tables.iter().enumerate() { @if i > 0 { ", " } code { (t) } } ")" }
            ", so the counts may be short. " a href="/console/platform/policies" { "Policies verify" } " says how to fix it."
        }
    }
}

/// Each table's count stops here on the tenants list (a page of 20 stays cheap) …
const LIST_COUNT_CAP: i64 = 10_000;
/// … and here on a tenant's own page.
const TENANT_COUNT_CAP: i64 = 1_000_000;

/// A tenant's rows, as the list shows them: its data tables' total and its audit events.
struct Counts {
    data: i64,
    data_capped: bool,
    audit_events: i64,
    audit_capped: bool,
}

impl Counts {
    fn of(tables: &[(String, i64)], cap: i64) -> Counts {
        // The audit log's tables and its signed checkpoints: the log, not the tenant's data.
        let audit = |name: &str| crate::roles::AUDIT_LOG_TABLES.contains(&name) || name == "audit_checkpoints";
        let data = tables.iter().filter(|(name, _)| !audit(name));
        let events = tables.iter().find(|(name, _)| name == "audit_events").map_or(0, |(_, n)| *n);
        Counts {
            data: data.clone().map(|(_, n)| n).sum(),
            data_capped: data.clone().any(|(_, n)| *n >= cap),
            audit_events: events,
            audit_capped: events >= cap,
        }
    }

    fn data_text(&self) -> String {
        count_text(self.data, self.data_capped)
    }

    fn audit_text(&self) -> String {
        count_text(self.audit_events, self.audit_capped)
    }
}

/// A count with thousands separators, `+` when a table's count reached its cap.
fn count_text(n: i64, capped: bool) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if capped {
        out.push('+');
    }
    out
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

/// One tenant: its facts, domains, and the forms that change it.
pub async fn tenant(
    _: Operator,
    Platform(mut platform): Platform,
    Extension(csrf): Extension<CsrfToken>,
    Path(slug): Path<String>,
) -> Result<Response, ApiError> {
    let (_, t) = summary(&mut platform, &slug).await?;
    let domains = platform.domains(t.id).await?;
    let rate_limit = platform.rate_limit(t.id).await?;
    let (counts, left_out) = match t.status {
        TenantStatus::Deleted => (Vec::new(), Vec::new()),
        _ => {
            let counted = platform.countable_tables().await?;
            (platform.row_counts(t.id, &counted, TENANT_COUNT_CAP).await?, uncounted_tables(&mut platform).await?)
        }
    };
    let plan_quota = Limit::for_plan(t.plan);
    let plan_per_second = (1.0 / plan_quota.replenish_every.as_secs_f64()).round();
    let live = t.status != TenantStatus::Deleted;
    let base = format!("/console/platform/tenants/{}", t.slug);
    let body = html! {
        dl.facts {
            dt { "Name" } dd { (t.name) }
            dt { "Status" } dd { span class=(format!("status-{}", t.status.as_str())) { (t.status.as_str()) } }
            dt { "Plan" } dd { (t.plan.as_str()) }
            dt { "Rate limit" } dd {
                @match rate_limit {
                    Some(l) => { (l.per_second) " requests/s, burst " (l.burst) " (override)" }
                    None => { (plan_per_second) " requests/s, burst " (plan_quota.burst) " (from the " (t.plan.as_str()) " plan)" }
                }
            }
            dt { "Created" } dd { (time(t.created_at)) }
            dt { "Id" } dd { code { (t.id) } }
            dt { "Domains" } dd {
                @if domains.is_empty() { span.muted { "none (served at its subdomain)" } }
                @for d in &domains { code { (d.domain) } @if d.is_primary { " (primary)" } br; }
            }
        }
        @if live {
            h2 { "Custom domains" }
            @for d in &domains {
                div.actions {
                    code { (d.domain) }
                    @if !d.is_primary {
                        form.inline method="post" action=(format!("{base}/domains/primary")) {
                            (csrf_field(&csrf)) input type="hidden" name="domain" value=(d.domain);
                            button.secondary type="submit" { "Make primary" }
                        }
                    } @else { span.muted { "primary" } }
                    form.inline method="post" action=(format!("{base}/domains/remove")) {
                        (csrf_field(&csrf)) input type="hidden" name="domain" value=(d.domain);
                        button.secondary type="submit" { "Remove" }
                    }
                }
            }
            form.actions method="post" action=(format!("{base}/domains")) {
                (csrf_field(&csrf))
                label { "Add a domain" input name="domain" placeholder="crm.example.com" required; }
                label { span { input type="checkbox" name="primary" value="yes"; " primary" } }
                button type="submit" { "Add domain" }
            }
        }
        p { a href=(format!("{base}/verify")) { "Verify this tenant's audit log" } }
        @if live {
            h2 { "Status" }
            form.actions method="post" action=(format!("{base}/status")) {
                (csrf_field(&csrf))
                @if t.status == TenantStatus::Suspended {
                    input type="hidden" name="status" value="active";
                    button type="submit" { "Resume" }
                    span.muted { "Its users and API answer again at once." }
                } @else {
                    input type="hidden" name="status" value="suspended";
                    button.danger type="submit" { "Suspend" }
                    span.muted { "Every request to this tenant answers 403 tenant_suspended at once." }
                }
            }
            h2 { "Plan" }
            form.actions method="post" action=(format!("{base}/plan")) {
                (csrf_field(&csrf))
                label { "Plan" select name="plan" {
                    @for p in [Plan::Free, Plan::Pro, Plan::Enterprise] {
                        option value=(p.as_str()) selected[p == t.plan] { (p.as_str()) }
                    }
                } }
                button type="submit" { "Change plan" }
            }
            h2 { "Rate limit override" }
            p.muted { "Authenticated requests per second this tenant may make, and the burst it may spend at once, "
                "instead of its plan's quota. Every instance applies a change at once (the limit is per instance)." }
            form.actions method="post" action=(format!("{base}/rate-limit")) aria-label="rate limit override" {
                (csrf_field(&csrf))
                label { "Requests per second"
                    input type="number" name="per_second" min="1" max=(RATE_LIMIT_MAX) required
                        value=(rate_limit.map(|l| l.per_second.to_string()).unwrap_or_default()); }
                label { "Burst"
                    input type="number" name="burst" min="1" max=(RATE_LIMIT_MAX) required
                        value=(rate_limit.map(|l| l.burst.to_string()).unwrap_or_default()); }
                button type="submit" { "Set override" }
            }
            @if rate_limit.is_some() {
                form.actions method="post" action=(format!("{base}/rate-limit")) {
                    (csrf_field(&csrf))
                    input type="hidden" name="clear" value="1";
                    button.secondary type="submit" { "Use the plan's quota" }
                }
            }
            h2 { "Delete" }
            form.actions method="post" action=(format!("{base}/delete")) {
                (csrf_field(&csrf))
                label {
                    span { "Type the slug, " strong { (t.slug) } ", to delete this tenant and purge all its rows" }
                    input name="confirm" autocomplete="off" required;
                }
                button.danger type="submit" { "Delete for good" }
            }
        } @else {
            p.notice { "This tenant is deleted; its rows were purged. Nothing more can change." }
        }
        @if !counts.is_empty() {
            h2 { "Rows" }
            div.table-wrap { table.counts {
                thead { tr { th { "Table" } th.num { "Rows" } } }
                tbody { @for (table, n) in &counts {
                    tr { td { code { (table) } } td.num { (count_text(*n, *n >= TENANT_COUNT_CAP)) } }
                } }
            } }
            p.muted { "Counted in this tenant's own transaction (its row-level security applies), up to "
                (count_text(TENANT_COUNT_CAP, false)) " per table." }
        }
        @if !left_out.is_empty() { (left_out_note(&left_out, true)) }
    };
    Ok(page::layout(&format!("Tenant {}", t.slug), Viewer::Operator, Some(&csrf), body).into_response())
}

#[derive(Deserialize)]
pub struct StatusForm {
    status: String,
}

/// Suspend or resume (to active or trial; deletion has its own form).
pub async fn change_status(
    Operator { id }: Operator,
    Platform(mut platform): Platform,
    Path(slug): Path<String>,
    CsrfForm(form): CsrfForm<StatusForm>,
) -> Result<Response, ApiError> {
    let status = parse_status(&form.status)?;
    if status == TenantStatus::Deleted {
        return Err(ApiError::bad_request(ErrorCode::InvalidBody, "delete a tenant with the delete form"));
    }
    let (slug, _) = summary(&mut platform, &slug).await?;
    platform.change_tenant(&slug, TenantChange { status: Some(status), ..TenantChange::default() }).await?;
    tracing::info!(tenant = %slug, operator = %id, status = status.as_str(), "tenant status changed from the console");
    Ok(Redirect::to(&format!("/console/platform/tenants/{slug}")).into_response())
}

#[derive(Deserialize)]
pub struct PlanForm {
    plan: Plan,
}

pub async fn change_plan(
    Operator { id }: Operator,
    Platform(mut platform): Platform,
    Path(slug): Path<String>,
    CsrfForm(form): CsrfForm<PlanForm>,
) -> Result<Response, ApiError> {
    let (slug, _) = summary(&mut platform, &slug).await?;
    platform.change_tenant(&slug, TenantChange { plan: Some(form.plan), ..TenantChange::default() }).await?;
    tracing::info!(tenant = %slug, operator = %id, plan = form.plan.as_str(), "tenant plan changed from the console");
    Ok(Redirect::to(&format!("/console/platform/tenants/{slug}")).into_response())
}

/// The largest override the registry accepts (sql/V4__tenant_rate_limits.sql's CHECK).
const RATE_LIMIT_MAX: u32 = 1_000_000;

#[derive(Deserialize)]
pub struct RateLimitForm {
    per_second: Option<String>,
    burst: Option<String>,
    /// Present: remove the override (the plan's quota again).
    clear: Option<String>,
}

impl RateLimitForm {
    /// The override asked for (None: clear it), or 422 naming the field that is wrong.
    fn parse(&self) -> Result<Option<RateLimitOverride>, ApiError> {
        if self.clear.is_some() {
            return Ok(None);
        }
        let number = |field: &'static str, v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .and_then(|v| v.parse::<u32>().ok())
                .filter(|n| (1..=RATE_LIMIT_MAX).contains(n))
                .ok_or_else(|| {
                    ApiError::validation(Invalid::new(field, format!("a whole number from 1 to {RATE_LIMIT_MAX}")))
                })
        };
        Ok(Some(RateLimitOverride {
            per_second: number("per_second", &self.per_second)?,
            burst: number("burst", &self.burst)?,
        }))
    }
}

/// Set or clear the tenant's rate-limit override: the platform's `set_rate_limit`, which
/// records `tenant.rate_limit_change` in the tenant's audit log as a plan change is recorded.
pub async fn change_rate_limit(
    Operator { id }: Operator,
    Platform(mut platform): Platform,
    Path(slug): Path<String>,
    CsrfForm(form): CsrfForm<RateLimitForm>,
) -> Result<Response, ApiError> {
    let limit = form.parse()?;
    let (slug, _) = summary(&mut platform, &slug).await?;
    platform.set_rate_limit(&slug, limit).await?;
    tracing::info!(tenant = %slug, operator = %id, ?limit, "tenant rate limit changed from the console");
    Ok(Redirect::to(&format!("/console/platform/tenants/{slug}")).into_response())
}

#[derive(Deserialize)]
pub struct DomainForm {
    domain: String,
    /// Present (a ticked box): make it the primary domain.
    primary: Option<String>,
}

/// What to do with a domain (`domains::*` in the platform API, the same platform functions).
#[derive(Debug, Clone, Copy)]
pub enum DomainAction {
    Add,
    Remove,
    MakePrimary,
}

async fn change_domain(
    ctx: &ApiContext,
    id: crate::domain::OperatorId,
    platform: &mut PlatformConn,
    slug: &str,
    form: DomainForm,
    action: DomainAction,
) -> Result<Response, ApiError> {
    use crate::domain::DomainName;
    let (slug, _) = summary(platform, slug).await?;
    let found = match action {
        DomainAction::Add => {
            let domain = DomainName::parse(&form.domain)
                .and_then(|d| d.outside_base(&ctx.base_domain))
                .map_err(ApiError::validation)?;
            platform.add_domain(&slug, &domain, form.primary.is_some()).await?;
            true
        }
        DomainAction::Remove | DomainAction::MakePrimary => {
            let domain = DomainName::parse(&form.domain).map_err(|_| ApiError::not_found("domain"))?;
            match action {
                DomainAction::Remove => platform.remove_domain(&slug, &domain).await?,
                _ => platform.set_primary_domain(&slug, &domain).await?,
            }
        }
    };
    if !found {
        return Err(ApiError::not_found("domain"));
    }
    tracing::info!(tenant = %slug, operator = %id, domain = %form.domain, ?action, "tenant domain changed from the console");
    Ok(Redirect::to(&format!("/console/platform/tenants/{slug}")).into_response())
}

pub async fn add_domain(
    State(ctx): State<ApiContext>,
    Operator { id }: Operator,
    Platform(mut platform): Platform,
    Path(slug): Path<String>,
    CsrfForm(form): CsrfForm<DomainForm>,
) -> Result<Response, ApiError> {
    change_domain(&ctx, id, &mut platform, &slug, form, DomainAction::Add).await
}

pub async fn remove_domain(
    State(ctx): State<ApiContext>,
    Operator { id }: Operator,
    Platform(mut platform): Platform,
    Path(slug): Path<String>,
    CsrfForm(form): CsrfForm<DomainForm>,
) -> Result<Response, ApiError> {
    change_domain(&ctx, id, &mut platform, &slug, form, DomainAction::Remove).await
}

pub async fn make_primary_domain(
    State(ctx): State<ApiContext>,
    Operator { id }: Operator,
    Platform(mut platform): Platform,
    Path(slug): Path<String>,
    CsrfForm(form): CsrfForm<DomainForm>,
) -> Result<Response, ApiError> {
    change_domain(&ctx, id, &mut platform, &slug, form, DomainAction::MakePrimary).await
}

#[derive(Deserialize)]
pub struct DeleteForm {
    confirm: String,
}

/// Delete and purge, only when the slug was typed exactly.
pub async fn delete(
    Operator { id }: Operator,
    Platform(mut platform): Platform,
    Path(slug): Path<String>,
    CsrfForm(form): CsrfForm<DeleteForm>,
) -> Result<Response, ApiError> {
    let (slug, _) = summary(&mut platform, &slug).await?;
    if form.confirm.trim() != slug.as_str() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::ValidationFailed,
            format!("nothing was deleted: type the slug ({slug}) exactly to confirm"),
        ));
    }
    let purged = platform.delete_tenant(&slug).await?;
    let rows: u64 = purged.iter().map(|(_, n)| n).sum();
    tracing::info!(tenant = %slug, operator = %id, rows, "tenant deleted and purged from the console");
    Ok(Redirect::to("/console/platform/").into_response())
}

/// A tenant's audit log verified as its auditors see it, in the tenant's own transaction.
pub async fn verify(
    State(ctx): State<ApiContext>,
    _: Operator,
    Platform(mut platform): Platform,
    Extension(csrf): Extension<CsrfToken>,
    Path(slug): Path<String>,
) -> Result<Response, ApiError> {
    let (_, t) = summary(&mut platform, &slug).await?;
    let mut tx = platform.tenant_tx(t.id).await?;
    let report = audit::verify_report(&ctx, tx.conn(), t.id, None).await?;
    let head = audit_log::read_head(&ctx, tx.conn(), t.id).await?;
    tx.commit().await?;
    let body = html! {
        (super::verify_section(&report, &head, None))
        p { a href=(format!("/console/platform/tenants/{}", t.slug)) { "← Tenant " (t.slug) } }
    };
    Ok(page::layout(&format!("Audit log of {}", t.slug), Viewer::Operator, Some(&csrf), body).into_response())
}

/// `policies verify` on the live database: every way the catalog is weaker than the isolation
/// invariants, by object and rule (the CLI's check, read through the platform login).
pub async fn policies(
    _: Operator,
    Platform(mut platform): Platform,
    Extension(csrf): Extension<CsrfToken>,
) -> Result<Response, ApiError> {
    let findings = platform.catalog_findings().await?;
    let body = html! {
        @if findings.is_empty() {
            p.verdict.ok role="status" { "✔ No findings: every tenant table is covered as the invariants require." }
        } @else {
            div.verdict.bad role="alert" { p { "✘ " (findings.len()) " findings: the database is weaker than the invariants." } }
            div.table-wrap { table {
                thead { tr { th { "Object" } th { "Rule" } th { "What to do" } } }
                tbody { @for f in &findings { tr { td { code { (f.object) } } td { code { (f.rule.id()) } } td { (page::inline_code(&f.message)) } } } }
            } }
        }
        p.muted { "The same check as " code { "rowguard policies verify" } " (docs/isolation.md)." }
    };
    Ok(page::layout("Policies verify", Viewer::Operator, Some(&csrf), body).into_response())
}

/// The health panel shows at most this many routes, busiest first.
const ROUTES_SHOWN: usize = 30;

/// A window's length, in whole minutes (or seconds, under two minutes).
fn minutes(window: std::time::Duration) -> String {
    match window.as_secs() {
        s if s < 120 => format!("{s} seconds (since this instance started)"),
        s => format!("{} minutes", s / 60),
    }
}

/// A p99 for people: milliseconds, "over 10 s" past the largest bucket, "—" without requests.
fn p99_text(p99: Option<f64>) -> String {
    match p99 {
        None => "—".to_string(),
        Some(s) if s.is_infinite() => "over 10 s".to_string(),
        Some(s) if s < 0.01 => format!("{:.2} ms", s * 1000.0),
        Some(s) => format!("{:.0} ms", s * 1000.0),
    }
}

/// Readiness (as `/readyz` answers it), the service pool's use, and requests by route.
pub async fn health(
    State(ctx): State<ApiContext>,
    _: Operator,
    Extension(csrf): Extension<CsrfToken>,
) -> Result<Response, ApiError> {
    let ready = health::readyz(State(ctx.clone())).await;
    let pool = ctx.door.pool_figures();
    let latency = ctx.metrics.route_latency();
    let body = html! {
        @match &ready {
            Ok(_) => { p.verdict.ok role="status" { "✔ Ready: the database answers and has every migration." } }
            Err(e) => { div.verdict.bad role="alert" { p { "✘ Not ready: " (e.detail) } } }
        }
        h2 { "Database pool (this instance)" }
        dl.facts {
            dt { "Connections" } dd { (pool.in_use) " in use, " (pool.idle) " idle, of " (pool.max) }
            dt { "Waiting for one" } dd { (pool.waiting) }
        }
        h2 { "Requests by route (this instance)" }
        p.muted { "Over the last " (minutes(latency.window)) ", from the service's own metrics (the same histograms as "
            a href="/metrics" { "/metrics" } "). p99 is the time to the response's head, estimated from the histogram's buckets. "
            "Routes are templates; no tenant is named." }
        @if latency.routes.is_empty() {
            p.notice { "No requests answered yet." }
        } @else {
            div.table-wrap { table.routes {
                thead { tr { th { "Route" } th { "Method" } th.num { "Requests" } th.num { "Per second" } th.num { "p99" } th.num.hide-narrow { "Since start" } } }
                tbody { @for r in latency.routes.iter().take(ROUTES_SHOWN) {
                    tr {
                        td { code { (r.route) } }
                        td { (r.method) }
                        td.num { (r.requests) }
                        td.num { (format!("{:.2}", r.per_second)) }
                        td.num { (p99_text(r.p99)) }
                        td.num.hide-narrow { (r.since_start) }
                    }
                } }
            } }
            p.muted { code { "other" } " counts the routes the API document does not list (the console's pages among them), "
                code { "unmatched" } " a path no route matched." }
            @if latency.routes.len() > ROUTES_SHOWN {
                p.muted { "The " (ROUTES_SHOWN) " busiest of " (latency.routes.len()) " routes." }
            }
        }
    };
    Ok(page::layout("Health", Viewer::Operator, Some(&csrf), body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_with_thousands_separators_and_a_plus_at_the_cap() {
        let table = [
            (0, false, "0"),
            (999, false, "999"),
            (1000, false, "1,000"),
            (10_000, true, "10,000+"),
            (1_234_567, false, "1,234,567"),
        ];
        for (n, capped, text) in table {
            assert_eq!(count_text(n, capped), text);
        }
        let tables: Vec<(String, i64)> = [
            ("audit_events", 7),
            ("audit_tree_nodes", 20),
            ("audit_checkpoints", 1),
            ("contacts", 10_000),
            ("users", 3),
        ]
        .map(|(t, n)| (t.to_string(), n))
        .into();
        let counts = Counts::of(&tables, 10_000);
        assert_eq!((counts.data_text(), counts.audit_text()), ("10,003+".to_string(), "7".to_string()));
    }
}
