//! The browser console at `/console/`: server-rendered pages for the two kinds of users who are
//! people — a tenant's auditors (on the tenant's host) and platform operators (on the bare
//! host). It holds pages and the routes to them; every rule and every query is the API's own.
//!
//! Why server-rendered HTML and no single-page app: everything here is a list, a detail page or
//! a form that changes one thing, which plain links, GET forms and POST-redirect-GET do without
//! script; the pages then need no build step, nothing vendored, and the strict content policy
//! (no inline script, nothing from elsewhere) costs nothing. The one script shows times in the
//! viewer's zone and is optional.
//!
//! Each console is a sub-router with its own layers, like `/v1` and `/platform/v1`; no layer
//! looks at the path. The auditor's pages pass the tenant API's own gate (`layers::gate`):
//! the session cookie is presented to it as a bearer token (`session`), so resolution,
//! authentication, the tenant binding (`tenant_mismatch`), refusal recording and the tenant's
//! quota are the API's. The operator's pages pass `platform_auth::authenticate_operator` the
//! same way.

pub mod auditor;
pub mod chart;
pub mod operator;
pub mod page;
pub mod session;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};
use maud::{Markup, html};

pub use session::ConsoleSettings;
use session::{OPERATOR_COOKIE, TENANT_COOKIE};

use crate::http::ApiContext;
use crate::http::layers::gate::{Gate, TenantGateLayer};
use crate::http::layers::tenant::{HostName, classify_host};
use crate::http::layers::{platform_auth, rate_limit};
use crate::http::routes::audit::VerifyReport;
use crate::http::routes::audit_log::TreeHead;

/// Every console route, in request order per group, outermost layer last.
pub fn routes(ctx: &ApiContext) -> Router<ApiContext> {
    let auditor_pages = Router::new()
        .route("/console/audit/", get(auditor::events))
        .route("/console/audit/events/{id}", get(auditor::event))
        .route("/console/audit/verify", get(auditor::verify))
        .route("/console/audit/export", get(auditor::export))
        // The tenant API's bearer gate, fed by the session cookie.
        .route_layer(TenantGateLayer::new(ctx.clone(), Gate::Bearer))
        .route_layer(from_fn(session::tenant_session));
    let auditor_sign_out = Router::new()
        .route("/console/audit/logout", post(auditor::sign_out))
        .route_layer(TenantGateLayer::new(ctx.clone(), Gate::Bearer))
        .route_layer(from_fn(session::tenant_session))
        .route_layer(from_fn_with_state((ctx.clone(), TENANT_COOKIE, auditor::SIGNED_OUT), session::sign_out_anyway));
    let auditor_sign_in = Router::new()
        .route(auditor::SIGN_IN, post(auditor::sign_in))
        .route_layer(TenantGateLayer::new(ctx.clone(), Gate::Login));
    let auditor = Router::new()
        .route(auditor::LOGIN_PAGE, get(auditor::login_page))
        .merge(auditor_sign_in)
        .merge(auditor_pages)
        .merge(auditor_sign_out)
        .route_layer(from_fn_with_state((ctx.clone(), auditor::LOGIN_PAGE), session::pages));
    let operator_pages = Router::new()
        .route("/console/platform/", get(operator::tenants))
        .route("/console/platform/tenants/{slug}", get(operator::tenant))
        .route("/console/platform/tenants/{slug}/status", post(operator::change_status))
        .route("/console/platform/tenants/{slug}/plan", post(operator::change_plan))
        .route("/console/platform/tenants/{slug}/rate-limit", post(operator::change_rate_limit))
        .route("/console/platform/tenants/{slug}/delete", post(operator::delete))
        .route("/console/platform/tenants/{slug}/domains", post(operator::add_domain))
        .route("/console/platform/tenants/{slug}/domains/remove", post(operator::remove_domain))
        .route("/console/platform/tenants/{slug}/domains/primary", post(operator::make_primary_domain))
        .route("/console/platform/tenants/{slug}/verify", get(operator::verify))
        .route("/console/platform/health", get(operator::health))
        .route("/console/platform/policies", get(operator::policies))
        .route_layer(from_fn_with_state(ctx.clone(), platform_auth::authenticate_operator))
        .route_layer(from_fn(session::operator_session));
    let operator_sign_out = Router::new()
        .route("/console/platform/logout", post(operator::sign_out))
        .route_layer(from_fn_with_state(ctx.clone(), platform_auth::authenticate_operator))
        .route_layer(from_fn(session::operator_session))
        .route_layer(from_fn_with_state(
            (ctx.clone(), OPERATOR_COOKIE, operator::LOGIN_PAGE),
            session::sign_out_anyway,
        ));
    let operator_sign_in = Router::new()
        .route(operator::SIGN_IN, post(operator::sign_in))
        .route_layer(from_fn_with_state(ctx.clone(), rate_limit::limit_operator_login));
    let operator = Router::new()
        .route(operator::LOGIN_PAGE, get(operator::login_page))
        .merge(operator_sign_in)
        .merge(operator_pages)
        .merge(operator_sign_out)
        .route_layer(from_fn_with_state(ctx.clone(), session::bare_host_only))
        .route_layer(from_fn_with_state((ctx.clone(), operator::LOGIN_PAGE), session::pages));
    Router::new()
        .route("/console", get(|| async { Redirect::permanent("/console/") }))
        .route("/console/", get(index))
        .route("/console/static/console.css", get(|| async { asset("text/css; charset=utf-8", page::STYLESHEET) }))
        .route("/console/static/console.js", get(|| async { asset("text/javascript; charset=utf-8", page::SCRIPT) }))
        .merge(auditor)
        .merge(operator)
        // Any other path under /console/ is a page saying so, not the API's JSON.
        .route("/console/{*rest}", any(unknown_page))
}

async fn unknown_page() -> Response {
    let missing = crate::http::error::ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        crate::http::error_codes::ErrorCode::RouteNotFound,
        "no such console page",
    );
    page::problem_page(missing.into_response()).await
}

/// A static asset from the binary: cacheable for an hour, never sniffed as anything else.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut answer = body.into_response();
    let headers = answer.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    answer
}

/// `/console/`: a tenant's host goes to its auditor console, the bare host to the operators'.
async fn index(State(ctx): State<ApiContext>, headers: HeaderMap) -> Redirect {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    match classify_host(host, &ctx.base_domain) {
        HostName::NoTenant => Redirect::to("/console/platform/"),
        HostName::Subdomain(_) | HostName::Custom(_) => Redirect::to("/console/audit/"),
    }
}

/// Where a verification failure's event is shown: the auditor's event list opened at it (its
/// cursor is the next seq, so the event heads the page; a deleted event's neighbours show
/// where it was). None for the operator, who does not read a tenant's events.
pub(crate) type EventLink = Option<fn(i64) -> String>;

/// The auditor's `EventLink`.
pub(crate) fn event_in_list(seq: i64) -> String {
    format!("/console/audit/?cursor={}", seq.saturating_add(1))
}

/// A failure as a sentence — "The hash chain breaks at event 3: modified." — with the event
/// linked when `link` says where (the report's own JSON, `{"reason":…,"seq":3}`, is for programs).
fn failure(what: &str, seq: Option<i64>, reason: &str, link: EventLink) -> Markup {
    let reason = reason.trim().trim_end_matches('.');
    html! {
        p { (what)
            @match (seq, link) {
                (Some(seq), Some(link)) => { " at " a href=(link(seq)) { "event " (seq) } }
                (Some(seq), None) => { " at event " (seq) }
                (None, _) => {}
            }
            ": " (reason) "."
        }
    }
}

/// The verification's verdict, the first failure if any, and the newest signed head: the
/// auditor's page and the operator's per-tenant page show the same.
pub(crate) fn verify_section(report: &VerifyReport, head: &TreeHead, link: EventLink) -> Markup {
    let chain = &report.chain;
    let tree = &report.tree;
    html! {
        @if chain.valid && report.bad_signatures.is_empty() {
            p.verdict.ok role="status" { "✔ Intact: " (tree.events_checked) " events re-hashed into the Merkle tree of "
                (tree.size) " leaves, which matches " (tree.heads_checked) " signed heads." }
        } @else {
            div.verdict.bad role="alert" {
                p { strong { "✘ The log does not verify." } }
                @if let Some(broken) = &chain.first_broken {
                    @let seq = broken.get("seq").and_then(serde_json::Value::as_i64);
                    @let reason = broken.get("reason").and_then(serde_json::Value::as_str).unwrap_or("no reason given");
                    (failure("The hash chain first breaks", seq, reason, link))
                }
                @for p in tree.problems.iter().take(5) {
                    (failure("The Merkle tree disagrees", p.seq, &p.reason, link))
                }
                @if !report.bad_signatures.is_empty() {
                    p { "Checkpoints whose signature fails: " (format!("{:?}", report.bad_signatures)) }
                }
            }
        }
        dl.facts {
            dt { "Tree leaves" } dd { (tree.size) " (" (tree.unsealed) " events not sealed yet, " (tree.purged) " purged by retention)" }
            dt { "Older hash chain" } dd { (chain.events) " events, head event " (chain.head_seq) " " code { (chain.head_hash) } }
            dt { "Checkpoints checked" } dd { (chain.checkpoints_checked) }
        }
        h2 { "Latest signed tree head" }
        dl.facts {
            dt { "Tree size" } dd { (head.tree_size) }
            dt { "Root hash" } dd { code { (head.root_hash) } }
            dt { "Signed at" } dd { @match head.signed_at { Some(t) => { (page::time(t)) } None => { "not signed yet" } } }
            dt { "Origin" } dd { code { (head.origin) } }
            dt { "Verifier key" } dd { code { (head.verifier_key) } }
        }
        @if let Some(note) = &head.note { h2 { "Signed note" } pre.mono { (note) } }
        p.muted { "Check a head alone with the verifier key: see docs/audit.md." }
    }
}
