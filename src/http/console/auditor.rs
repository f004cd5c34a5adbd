//! The auditor's console on a tenant's host: sign-in, the event list (the API's filters and
//! keyset paging, newest first, with a chart of the last day), one event with its diff, the
//! log's verification and signed head, exports, sign-out. Every read goes through the API's
//! own functions (`routes::audit`, `routes::audit_log`, `routes::audit_export`) in the
//! request's `TenantScope`; sign-in is `auth::sessions` with the API's limits.

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, NaiveDateTime, Utc};
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;

use super::chart::Histogram;
use super::page::{self, Viewer, csrf_field, time};
use super::session::{CsrfForm, CsrfToken, TENANT_COOKIE, return_path, rotated_csrf_cookie, set_cookie};
use crate::audit::AccessEvent;
use crate::auth::sessions::SessionError;
use crate::db::TenantScope;
use crate::domain::permissions::Permission;
use crate::http::ApiContext;
use crate::http::context::{Principal, ResolvedTenant};
use crate::http::error::ApiError;
use crate::http::error_codes::ErrorCode;
use crate::http::extract::{Path, Query};
use crate::http::routes::audit::{self, AuditEvent, AuditFilter};
use crate::http::routes::{audit_export, audit_log, auth};

/// Where the sign-in form posts (its own path: the login gate's limits apply to posts only).
pub const SIGN_IN: &str = "/console/audit/session";
pub const LOGIN_PAGE: &str = "/console/audit/login";
/// Where signing out lands: the sign-in page, saying so.
pub const SIGNED_OUT: &str = "/console/audit/login?signed_out=1";

/// Where the console's pages live: the only places sign-in returns to.
const CONSOLE: &str = "/console/audit/";

#[derive(Deserialize, Default)]
pub struct SignInNotice {
    signed_out: Option<String>,
    /// Set when a page found the session ended (`session::pages`).
    expired: Option<String>,
    /// The page to return to after signing in (checked by `session::return_path`).
    next: Option<String>,
}

/// The sign-in page. The host must name a live tenant (resolved as the API resolves it).
pub async fn login_page(
    State(ctx): State<ApiContext>,
    Extension(csrf): Extension<CsrfToken>,
    headers: HeaderMap,
    Query(notice): Query<SignInNotice>,
) -> Result<Response, ApiError> {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let tenant = crate::http::layers::tenant::resolve(&ctx, host, None).await?;
    let note = match (notice.signed_out, notice.expired) {
        (_, Some(_)) => Some("Your session ended; sign in again."),
        (Some(_), None) => Some("You are signed out."),
        (None, None) => None,
    };
    let next = notice.next.as_deref().and_then(|n| return_path(n, CONSOLE));
    Ok(sign_in_form(&tenant.slug, &csrf, note, None, next).into_response())
}

fn sign_in_form(tenant: &str, csrf: &CsrfToken, note: Option<&str>, error: Option<&str>, next: Option<&str>) -> Markup {
    page::layout(
        &format!("Sign in to {tenant}"),
        Viewer::Nobody,
        None,
        html! {
            @if let Some(note) = note { p.notice role="status" { (note) } }
            @if let Some(error) = error { p.problem role="alert" { (error) } }
            p.muted { "For this tenant's auditors, owners and admins: the audit log, read-only." }
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

#[derive(Deserialize)]
pub struct SignIn {
    email: String,
    password: String,
    /// The page to return to (a console path; anything else is ignored).
    next: Option<String>,
}

/// Sign in with the API's login (`Sessions::login`: the same budget per account, the same
/// audit events; the route's gate applied the per-address limit). Only a role that may read
/// the audit log gets a session; the login's refresh token is revoked at once (the console
/// keeps none).
pub async fn sign_in(
    State(ctx): State<ApiContext>,
    scope: TenantScope,
    tenant: ResolvedTenant,
    Extension(csrf): Extension<CsrfToken>,
    CsrfForm(form): CsrfForm<SignIn>,
) -> Result<Response, ApiError> {
    let tokens = match ctx.sessions.login(&scope, &form.email, form.password).await {
        Ok(tokens) => tokens,
        Err(SessionError::BadCredentials) => {
            let next = form.next.as_deref().and_then(|n| return_path(n, CONSOLE));
            let form = sign_in_form(&tenant.slug, &csrf, None, Some("The e-mail or password is wrong."), next);
            return Ok((StatusCode::UNAUTHORIZED, form).into_response());
        }
        Err(other) => return auth::tokens_answer(&ctx, &scope, SIGN_IN, Err(other)).await,
    };
    ctx.sessions.logout(&scope, &tokens.refresh_token).await?;
    let claims = ctx.keys.verify(&tokens.access_token).map_err(ApiError::internal)?;
    if claims.role.require(Permission::ReadAuditLog).is_err() {
        // The login above has recorded `auth.login` (success), and that part is true: the
        // password was right and the API minted a session, whose refresh token is revoked above
        // and whose access token never leaves this handler. What the log must not suggest is
        // that the user got into the console, so the refusal is recorded right after, as the
        // user, with its reason. The role cannot be checked before the login instead: until
        // the password is verified (with the login's budget) there is no user to check, and
        // looking the role up by e-mail first would tell roles of accounts to anyone.
        let reason = format!("role {} lacks read_audit_log", claims.role.as_str());
        let refusal = AccessEvent {
            action: "access.denied",
            resource_type: Some("console"),
            resource_id: None,
            outcome: "denied",
            details: serde_json::json!({
                "method": "POST", "path": SIGN_IN, "status": 403,
                "reason": format!("console sign-in refused: {reason}"),
            }),
        };
        crate::audit::record_in(&scope.acting_as(claims.sub), refusal).await?;
        return Err(ApiError::forbidden(
            ErrorCode::Forbidden,
            format!(
                "your role ({}) cannot read the audit log; the console is for owners, admins and auditors",
                claims.role.as_str()
            ),
        ));
    }
    let to = form.next.as_deref().and_then(|n| return_path(n, CONSOLE)).unwrap_or(CONSOLE);
    let mut answer = Redirect::to(to).into_response();
    let cookie = set_cookie(&ctx, TENANT_COOKIE, &tokens.access_token, Some(tokens.expires_in));
    answer.headers_mut().append(header::SET_COOKIE, cookie);
    answer.headers_mut().append(header::SET_COOKIE, rotated_csrf_cookie(&ctx));
    Ok(answer)
}

#[derive(Deserialize)]
pub struct SignOut {
    /// Present: end every session of the user (the API's logout-all), not only this one.
    everywhere: Option<String>,
}

/// Sign out: the cookie is cleared; "everywhere" also ends every session of the user on every
/// instance (`Sessions::logout_all`), which cuts off a copied cookie too.
pub async fn sign_out(
    State(ctx): State<ApiContext>,
    scope: TenantScope,
    principal: Principal,
    CsrfForm(form): CsrfForm<SignOut>,
) -> Result<Response, ApiError> {
    if form.everywhere.is_some() {
        ctx.sessions.logout_all(&scope, principal.user).await?;
    }
    let mut answer = Redirect::to(SIGNED_OUT).into_response();
    answer.headers_mut().append(header::SET_COOKIE, set_cookie(&ctx, TENANT_COOKIE, "", None));
    Ok(answer)
}

/// The list's form, as a browser sends it: empty fields are absent filters.
#[derive(Deserialize, Default, Clone)]
pub struct EventsQuery {
    actor: Option<String>,
    action: Option<String>,
    resource_type: Option<String>,
    resource_id: Option<String>,
    outcome: Option<String>,
    from: Option<String>,
    to: Option<String>,
    cursor: Option<String>,
}

fn present(v: &Option<String>) -> Option<String> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

/// A time from the form: RFC 3339, or a `datetime-local` value (no zone), read as UTC.
fn parse_time(field: &str, v: &Option<String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    let Some(text) = present(v) else { return Ok(None) };
    if let Ok(t) = DateTime::parse_from_rfc3339(&text) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(&text, f).ok())
        .map(|t| Some(t.and_utc()))
        .ok_or_else(|| {
            ApiError::bad_request(
                ErrorCode::InvalidQuery,
                format!("{field}: expected a time like 2026-12-06T09:30 (UTC)"),
            )
        })
}

impl EventsQuery {
    /// The API's filter for this form (`limit` events, from `cursor`).
    fn filter(&self, limit: u32) -> Result<AuditFilter, ApiError> {
        let actor = present(&self.actor)
            .map(|a| Uuid::parse_str(&a))
            .transpose()
            .map_err(|_| ApiError::bad_request(ErrorCode::InvalidQuery, "actor: expected a user id (a uuid)"))?;
        Ok(AuditFilter {
            actor,
            action: present(&self.action),
            resource_type: present(&self.resource_type),
            resource_id: present(&self.resource_id),
            outcome: present(&self.outcome),
            from: parse_time("from", &self.from)?,
            to: parse_time("to", &self.to)?,
            limit: Some(limit),
            cursor: present(&self.cursor),
        })
    }

    /// This query string with another cursor (for the next page's link), or none (the
    /// newest events, filters kept).
    fn with_cursor(&self, cursor: Option<&str>) -> String {
        let mut q = self.clone();
        q.cursor = cursor.map(str::to_string);
        let pairs: Vec<(&str, String)> = [
            ("actor", &q.actor),
            ("action", &q.action),
            ("resource_type", &q.resource_type),
            ("resource_id", &q.resource_id),
            ("outcome", &q.outcome),
            ("from", &q.from),
            ("to", &q.to),
            ("cursor", &q.cursor),
        ]
        .into_iter()
        .filter_map(|(k, v)| present(v).map(|v| (k, v)))
        .collect();
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }
}

/// At most this many events feed the chart (four of the API's largest pages).
const CHART_EVENTS: usize = 2000;

/// The event list with the API's filters, newest first, 50 a page, and the last day's chart
/// of the events the filters match.
pub async fn events(
    scope: TenantScope,
    principal: Principal,
    tenant: ResolvedTenant,
    Extension(csrf): Extension<CsrfToken>,
    Query(query): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    audit::require_reader(&principal)?;
    let page = audit::list_page(&scope, &query.filter(50)?).await?;
    let mut histogram = Histogram::new(Utc::now(), 24);
    let mut chart_filter = query.filter(500)?;
    chart_filter.cursor = None;
    chart_filter.from = Some(chart_filter.from.map_or(histogram.start(), |f| f.max(histogram.start())));
    let mut counted = 0;
    loop {
        let chunk = audit::list_page(&scope, &chart_filter).await?;
        counted += chunk.items.len();
        for e in &chunk.items {
            histogram.add(e.occurred_at, &e.outcome);
        }
        match chunk.next_cursor {
            Some(c) if counted < CHART_EVENTS => chart_filter.cursor = Some(c),
            Some(_) => break,
            None => break,
        }
    }
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    let body = html! {
        form.filters method="get" action="/console/audit/" aria-label="filters" {
            label { "Actor (user id)" input name="actor" value=(v(&query.actor)) placeholder="uuid"; }
            label { "Action" input name="action" value=(v(&query.action)) placeholder="contact.update"; }
            label { "Resource type" input name="resource_type" value=(v(&query.resource_type)); }
            label { "Resource id" input name="resource_id" value=(v(&query.resource_id)); }
            label { "Outcome"
                select name="outcome" {
                    @for o in ["", "success", "denied", "failure"] {
                        option value=(o) selected[query.outcome.as_deref() == Some(o)] { (if o.is_empty() { "any" } else { o }) }
                    }
                }
            }
            label { "From (UTC)" input type="datetime-local" name="from" value=(v(&query.from)); }
            label { "To (UTC)" input type="datetime-local" name="to" value=(v(&query.to)); }
            div { button type="submit" { "Filter" } " " a href="/console/audit/" { "Clear" } }
        }
        h2 { "Last 24 hours" }
        (histogram.svg())
        @if counted >= CHART_EVENTS { p.muted { "The chart counts the newest " (CHART_EVENTS) " matching events." } }
        div.actions {
            a href="/console/audit/export?format=jsonl" download { "Export JSONL" }
            a href="/console/audit/export?format=csv" download { "Export CSV" }
            span.muted { "Exports hold every event of the tenant, oldest first." }
        }
        h2 { "Events" }
        @if page.items.is_empty() {
            p.notice { "No events match these filters. Clear a filter or widen the time range." }
        } @else {
            (event_table(&page.items))
        }
        div.pager {
            @if query.cursor.is_some() {
                a href=(format!("/console/audit/?{}", query.with_cursor(None))) rel="first" { "← Newest events" }
            }
            @if let Some(next) = &page.next_cursor {
                a href=(format!("/console/audit/?{}", query.with_cursor(Some(next)))) rel="next" { "Older events →" }
            }
        }
    };
    Ok(page::layout("Audit events", Viewer::Auditor { tenant: &tenant.slug }, Some(&csrf), body).into_response())
}

fn event_table(items: &[AuditEvent]) -> Markup {
    html! {
        div.table-wrap {
            table {
                thead { tr { th { "#" } th { "When" } th { "Action" } th { "Outcome" } th { "Actor" } th.hide-narrow { "Resource" } } }
                tbody {
                    @for e in items {
                        tr {
                            td.num { a href=(format!("/console/audit/events/{}", e.id)) { (e.seq) } }
                            td { (time(e.occurred_at)) }
                            td { a href=(format!("/console/audit/events/{}", e.id)) { code { (e.action) } } }
                            td { span class=(format!("outcome-{}", e.outcome)) { (e.outcome) } }
                            td { (actor_cell(e)) }
                            td.hide-narrow { (e.resource_type.as_deref().unwrap_or("")) " " code { (e.resource_id.as_deref().unwrap_or("")) } }
                        }
                    }
                }
            }
        }
    }
}

/// Who acted, briefly: the actor's type and role and the last 8 characters of its id (the
/// whole id on hover), linked to the events of that actor. The last, not the first: ids are
/// UUIDv7, whose first 8 characters are a timestamp shared by every user created in the same
/// minute, while the last are random.
fn actor_cell(e: &AuditEvent) -> Markup {
    html! {
        (e.actor_type) @if let Some(role) = &e.actor_role { " (" (role) ")" }
        @if let Some(id) = e.actor_id {
            " "
            @let link = serde_urlencoded::to_string([("actor", id.to_string())]).unwrap_or_default();
            a.actor href=(format!("/console/audit/?{link}")) title=(format!("{id}: this actor's events")) {
                code { "…" (short_id(id)) }
            }
        }
    }
}

fn short_id(id: Uuid) -> String {
    let hex = id.simple().to_string();
    hex.get(hex.len().saturating_sub(8)..).unwrap_or_default().to_string()
}

/// One event: who, from where, and the changed fields before and after.
pub async fn event(
    scope: TenantScope,
    principal: Principal,
    tenant: ResolvedTenant,
    Extension(csrf): Extension<CsrfToken>,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    audit::require_reader(&principal)?;
    let mut tx = scope.begin().await?;
    let found = audit::event_by_id(tx.conn(), scope.tenant_id(), id).await?;
    tx.commit().await?;
    let e = found.ok_or_else(|| ApiError::not_found("audit event"))?;
    let details: serde_json::Value = serde_json::from_str(e.details.get()).unwrap_or_default();
    let body = html! {
        dl.facts {
            dt { "Action" } dd { code { (e.action) } }
            dt { "Outcome" } dd { span class=(format!("outcome-{}", e.outcome)) { (e.outcome) } }
            dt { "When" } dd { (time(e.occurred_at)) }
            dt { "Actor" } dd { (e.actor_type) " " code { (e.actor_id.map(|a| a.to_string()).unwrap_or_default()) } }
            dt { "Role" } dd { (e.actor_role.as_deref().unwrap_or("—")) }
            dt { "Client address" } dd { (e.client_ip.as_deref().unwrap_or("—")) }
            dt { "User agent" } dd { (e.user_agent.as_deref().unwrap_or("—")) }
            dt { "Request id" } dd { code { (e.request_id.as_deref().unwrap_or("—")) } }
            dt { "Resource" } dd { (e.resource_type.as_deref().unwrap_or("—")) " " code { (e.resource_id.as_deref().unwrap_or("")) } }
            dt { "Sequence" } dd { (e.seq) }
            dt { "Leaf" } dd {
                @match (e.leaf_index, &e.leaf_hash) {
                    (Some(i), Some(h)) => { "#" (i) " " code { (h) } }
                    _ => { "not sealed yet (it will be within seconds)" }
                }
            }
        }
        h2 { "Changes" }
        (diff_table(&details))
        p { a href="/console/audit/" { "← All events" } }
    };
    let title = format!("Event {}", e.seq);
    Ok(page::layout(&title, Viewer::Auditor { tenant: &tenant.slug }, Some(&csrf), body).into_response())
}

/// `before` and `after` side by side, one row per field either names; any other detail below.
fn diff_table(details: &serde_json::Value) -> Markup {
    let empty = serde_json::Map::new();
    let side = |k: &str| details.get(k).and_then(|v| v.as_object()).unwrap_or(&empty);
    let (before, after) = (side("before"), side("after"));
    let mut fields: Vec<&String> = before.keys().chain(after.keys()).collect();
    fields.sort();
    fields.dedup();
    let others: Vec<(&String, &serde_json::Value)> = details
        .as_object()
        .map(|o| o.iter().filter(|(k, _)| *k != "before" && *k != "after").collect())
        .unwrap_or_default();
    let shown = |v: Option<&serde_json::Value>| match v {
        None => "—".to_string(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    html! {
        @if fields.is_empty() && others.is_empty() { p.muted { "This event records no field changes." } }
        @if !fields.is_empty() {
            div.table-wrap { table.diff {
                thead { tr { th { "Field" } th { "Before" } th { "After" } } }
                tbody { @for f in &fields {
                    tr { td { code { (f) } } td.before { (shown(before.get(*f))) } td.after { (shown(after.get(*f))) } }
                } }
            } }
        }
        @if !others.is_empty() {
            div.table-wrap { table {
                thead { tr { th { "Detail" } th { "Value" } } }
                tbody { @for (k, val) in &others { tr { td { code { (k) } } td { (shown(Some(val))) } } } }
            } }
        }
    }
}

/// The log's verification (the API's `verify`: tree, chain, checkpoints) and its newest
/// signed head.
pub async fn verify(
    State(ctx): State<ApiContext>,
    scope: TenantScope,
    principal: Principal,
    tenant: ResolvedTenant,
    Extension(csrf): Extension<CsrfToken>,
) -> Result<Response, ApiError> {
    audit::require_reader(&principal)?;
    let mut tx = scope.begin().await?;
    let report = audit::verify_report(&ctx, tx.conn(), scope.tenant_id(), None).await?;
    let head = audit_log::read_head(&ctx, tx.conn(), scope.tenant_id()).await?;
    tx.commit().await?;
    let body = super::verify_section(&report, &head, Some(super::event_in_list));
    Ok(page::layout("Verify the audit log", Viewer::Auditor { tenant: &tenant.slug }, Some(&csrf), body)
        .into_response())
}

#[derive(Deserialize)]
pub struct ExportQuery {
    format: Option<String>,
}

/// An export: the API's (streamed, bounded per tenant), offered as a download.
pub async fn export(
    State(ctx): State<ApiContext>,
    scope: TenantScope,
    principal: Principal,
    tenant: ResolvedTenant,
    Query(query): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    let format = match query.format.as_deref() {
        None | Some("jsonl") => "jsonl",
        Some("csv") => "csv",
        Some(_) => return Err(ApiError::bad_request(ErrorCode::InvalidQuery, "format: jsonl or csv")),
    };
    let params = serde_json::from_value(serde_json::json!({ "format": format })).map_err(ApiError::internal)?;
    let mut answer = audit_export::export_events(State(ctx), scope, principal, Query(params)).await?;
    let name = format!("attachment; filename=\"audit-{}.{format}\"", tenant.slug);
    if let Ok(value) = HeaderValue::from_str(&name) {
        answer.headers_mut().insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(answer)
}
