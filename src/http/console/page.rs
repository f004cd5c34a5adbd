//! The console's page frame (maud): the layout every page shares, the page a refusal becomes,
//! and small pieces (times, forms' CSRF field). Only markup lives here; no data is read.
//!
//! Why maud: templates are Rust, checked and compiled with the crate (a typo is a build
//! error, not a blank page), every interpolation is HTML-escaped unless marked otherwise, and
//! nothing besides the binary is shipped or built — no template files, no npm step.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use super::session::CsrfToken;

/// The stylesheet and the one small script, served by the binary (`/console/static/…`):
/// no inline style or script, so the strict policy (`session::CONSOLE_CSP`) holds.
pub const STYLESHEET: &str = include_str!("console.css");
pub const SCRIPT: &str = include_str!("console.js");

/// Who is signed in, for the header: the tenant's auditor or an operator.
pub enum Viewer<'a> {
    Nobody,
    Auditor { tenant: &'a str },
    Operator,
}

/// A whole page: `title`, the navigation for `viewer`, and `body`.
pub fn layout(title: &str, viewer: Viewer<'_>, csrf: Option<&CsrfToken>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · rowguard console" }
                link rel="stylesheet" href="/console/static/console.css";
                script src="/console/static/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/console/" { "rowguard console" }
                    nav aria-label="main" {
                        @match viewer {
                            Viewer::Nobody => {}
                            Viewer::Auditor { tenant } => {
                                span.who { "tenant " strong { (tenant) } }
                                a href="/console/audit/" { "Events" }
                                a href="/console/audit/verify" { "Verify" }
                                @if let Some(csrf) = csrf {
                                    form.inline method="post" action="/console/audit/logout" {
                                        (csrf_field(csrf))
                                        button type="submit" { "Sign out" }
                                    }
                                    form.inline method="post" action="/console/audit/logout" {
                                        (csrf_field(csrf))
                                        input type="hidden" name="everywhere" value="1";
                                        button type="submit" title="End every session of yours, API ones too" { "Sign out everywhere" }
                                    }
                                }
                            }
                            Viewer::Operator => {
                                span.who { "operator" }
                                a href="/console/platform/" { "Tenants" }
                                a href="/console/platform/policies" { "Policies" }
                                a href="/console/platform/health" { "Health" }
                                @if let Some(csrf) = csrf {
                                    form.inline method="post" action="/console/platform/logout" {
                                        (csrf_field(csrf))
                                        button type="submit" { "Sign out" }
                                    }
                                }
                            }
                        }
                    }
                }
                main id="main" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// The hidden field every form carries (`session::CsrfForm` checks it).
pub fn csrf_field(csrf: &CsrfToken) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf.value); }
}

/// Text whose `backtick spans` are code (the catalog's findings and other messages written
/// for a terminal), as `<code>`; everything is escaped by maud as any interpolation is. An
/// unpaired backtick is kept as text.
pub fn inline_code(text: &str) -> Markup {
    let parts: Vec<&str> = text.split('`').collect();
    // An odd count of parts means every span is closed; otherwise the last backtick is text.
    let closed = parts.len() % 2 == 1;
    html! {
        @for (i, part) in parts.iter().enumerate() {
            @if i % 2 == 1 && (closed || i + 1 < parts.len()) { code { (part) } }
            @else if i % 2 == 1 { "`" (part) }
            @else { (part) }
        }
    }
}

/// A time as UTC text, machine-readable for the script that shows it in the viewer's zone
/// (with UTC kept on hover).
pub fn time(t: DateTime<Utc>) -> Markup {
    let utc = t.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    html! { time datetime=(t.to_rfc3339()) title=(utc) { (utc) } }
}

/// A problem document answered under the console, as a page saying the same: its status, code,
/// detail and request id, and what to do next. Headers that matter to the client
/// (Retry-After, Set-Cookie, …) are kept.
pub async fn problem_page(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let problem: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let text = |key: &str| problem.get(key).and_then(|v| v.as_str()).unwrap_or("").to_string();
    let (title, code, detail, request_id) = (text("title"), text("code"), text("detail"), text("request_id"));
    let hint = match (parts.status.as_u16(), code.as_str()) {
        (401, _) => "Sign in again.",
        (403, "tenant_suspended") => "This tenant is suspended; the service's operators can resume it.",
        // The detail says what to do (reload the form and submit it again).
        (403, _) if detail.contains("CSRF") => "",
        (403, "tenant_mismatch") => "This session belongs to another tenant; sign in on this tenant's own address.",
        (403, _) => "Your account or this session may not open this page; sign in with an account that may.",
        (404, _) => "Check the address; the console lives at /console/.",
        (429, _) => "Too many attempts: wait a little and try again.",
        (s, _) if s >= 500 => "The service could not answer; try again shortly.",
        _ => "Go back and correct the request.",
    };
    let title = if title.is_empty() { parts.status.canonical_reason().unwrap_or("Error").to_string() } else { title };
    let markup = layout(
        &title,
        Viewer::Nobody,
        None,
        html! {
            div.problem role="alert" {
                p { strong { (parts.status.as_u16()) } " " code { (code) } }
                p { (detail) }
                p { (hint) " " a href="/console/" { "Back to the console" } }
                @if !request_id.is_empty() { p.muted { "Request id " code { (request_id) } } }
            }
        },
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    let mut page = markup.into_response();
    *page.status_mut() = parts.status;
    for (name, value) in parts.headers.iter() {
        page.headers_mut().append(name, value.clone());
    }
    page.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backtick_spans_become_code_and_everything_is_escaped() {
        let shown = |t: &str| inline_code(t).into_string();
        assert_eq!(shown("run `ALTER TABLE x` now"), "run <code>ALTER TABLE x</code> now");
        assert_eq!(shown("`<b>` & <i>"), "<code>&lt;b&gt;</code> &amp; &lt;i&gt;");
        assert_eq!(shown("a `b` c `d"), "a <code>b</code> c `d");
        assert_eq!(shown("plain"), "plain");
    }
}
