//! What an operator checks: a tenant's audit verification, the live policy findings and the
//! health panel (readiness, pool, requests per route).

use super::*;

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
        (crate::http::console::verify_section(&report, &head, None))
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
