//! The tenants: the list (search, status, paging, row counts) and one tenant's page with the
//! forms that change it.

use super::*;

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
