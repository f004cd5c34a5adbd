//! The browser console over HTTP, as a browser would use it (cookies kept, forms posted with
//! the CSRF token the page gave out): the auditor's pages on a tenant's host, the operator's on
//! the bare host, and the refusals — a member, another tenant's session, a forged form.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::support::{TestApp, TestResponse, TestTenant, create_operator};

mod auditor;
mod operator;
mod refusals;
mod sessions;

/// A browser on one host: its cookie jar, and requests that send it.
struct Browser<'a> {
    app: &'a TestApp,
    host: String,
    cookies: BTreeMap<String, String>,
}

impl<'a> Browser<'a> {
    fn new(app: &'a TestApp, host: &str) -> Browser<'a> {
        Browser { app, host: host.to_string(), cookies: BTreeMap::new() }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    fn absorb(&mut self, r: &TestResponse) {
        for value in r.headers.get_all("set-cookie") {
            let text = value.to_str().expect("ascii cookie");
            let (pair, attributes) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').expect("name=value");
            if attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
    }

    async fn get(&mut self, path: &str) -> TestResponse {
        let cookie = self.cookie_header();
        let r = self.app.call(Method::GET, path, &[("host", &self.host), ("cookie", &cookie)], None).await;
        self.absorb(&r);
        r
    }

    /// As `get`, without taking the answer's cookies.
    async fn get_as_is(&self, path: &str) -> TestResponse {
        let cookie = self.cookie_header();
        self.app.call(Method::GET, path, &[("host", &self.host), ("cookie", &cookie)], None).await
    }

    /// Post `fields` as a form, exactly as given (no CSRF token added).
    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> TestResponse {
        let cookie = self.cookie_header();
        let body = serde_urlencoded::to_string(fields).expect("form");
        let headers = [("host", self.host.as_str()), ("cookie", cookie.as_str())];
        let r = self
            .app
            .send_raw(Method::POST, path, &headers, Some("application/x-www-form-urlencoded"), Body::from(body))
            .await;
        self.absorb(&r);
        r
    }

    fn csrf(&self) -> String {
        self.cookies.get("rowguard_csrf").cloned().expect("the console set a CSRF cookie")
    }
}

fn html(r: &TestResponse) -> &str {
    r.body.as_str().unwrap_or("")
}

fn location(r: &TestResponse) -> &str {
    r.headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn tenant_host(slug: &str) -> String {
    format!("{slug}.localhost:8080")
}

/// Open the sign-in page (which sets the CSRF cookie) and sign in.
async fn auditor_signs_in<'a>(
    app: &'a TestApp,
    slug: &str,
    email: &str,
    password: &str,
) -> (Browser<'a>, TestResponse) {
    let mut browser = Browser::new(app, &tenant_host(slug));
    let page = browser.get("/console/audit/login").await;
    assert_eq!(page.status, StatusCode::OK, "{}", html(&page));
    let csrf = browser.csrf();
    let r = browser.post("/console/audit/session", &[("csrf", &csrf), ("email", email), ("password", password)]).await;
    (browser, r)
}

async fn operator_signs_in(app: &TestApp) -> Browser<'_> {
    let op = create_operator(app, &format!("ops-{}@rowguard.test", uuid::Uuid::now_v7().simple())).await;
    let mut browser = Browser::new(app, "localhost:8080");
    assert_eq!(browser.get("/console/platform/login").await.status, StatusCode::OK);
    let csrf = browser.csrf();
    let r = browser
        .post("/console/platform/session", &[("csrf", &csrf), ("email", &op.email), ("password", &op.password)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", html(&r));
    assert!(browser.cookies.contains_key("rowguard_operator"));
    assert_ne!(browser.csrf(), csrf, "signing in rotates the CSRF token");
    browser
}

/// A contact created and renamed by the owner: a `contact.update` event with a diff.
async fn contact_renamed(app: &TestApp, tenant: &TestTenant) -> String {
    let owner = app.owner_token(tenant).await;
    let created = app
        .call_as(
            &owner,
            &tenant.slug,
            Method::POST,
            "/v1/contacts",
            Some(json!({"name": "Ada Byron", "email": "ada@example.com"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().expect("id").to_string();
    let path = format!("/v1/contacts/{id}");
    let renamed = app.call_as(&owner, &tenant.slug, Method::PATCH, &path, Some(json!({"name": "Ada Lovelace"}))).await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.body);
    let events = app.call_as(&owner, &tenant.slug, Method::GET, "/v1/audit-events?action=contact.update", None).await;
    events.body["items"][0]["id"].as_str().expect("the update's event").to_string()
}

/// `access.denied` events in the tenant's log, as its owner reads them.
async fn access_denied_events(app: &TestApp, owner: &str, tenant: &str) -> Vec<serde_json::Value> {
    let r = app.call_as(owner, tenant, Method::GET, "/v1/audit-events?action=access.denied", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["items"].as_array().cloned().expect("items")
}
