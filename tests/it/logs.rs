//! Request logging with the service's own logger (`startup::log_subscriber`): every request
//! line — served, refused, unresolved, unmatched — names its request id (the one the client
//! got back) and its tenant, in JSON and in the human-readable form.

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{TestApp, TestResponse, spawn_app};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("lock").clone()).expect("utf-8")
    }
}

/// The requests every format is checked with, and what each answered.
async fn traffic(app: &TestApp) -> Vec<(TestResponse, &'static str)> {
    let acme = app.create_tenant("acme").await;
    let token = app.owner_token(&acme).await;
    let mut out = Vec::new();
    out.push((app.call_as(&token, "acme", Method::GET, "/v1/contacts", None).await, "acme"));
    out.push((app.call(Method::GET, "/v1/contacts", &[("x-tenant", "acme")], None).await, "acme"));
    let bad = app.call_as(&token, "acme", Method::POST, "/v1/contacts", Some(json!({"name": ""}))).await;
    out.push((bad, "acme"));
    out.push((app.call(Method::GET, "/v1/contacts", &[("x-tenant", "nobody-here")], None).await, "-"));
    out.push((app.call(Method::GET, "/no/such/route", &[], None).await, "-"));
    out.push((app.call(Method::GET, "/healthz", &[], None).await, "-"));
    let statuses: Vec<_> = out.iter().map(|(r, _)| r.status).collect();
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::UNAUTHORIZED,
            StatusCode::UNPROCESSABLE_ENTITY,
            StatusCode::NOT_FOUND,
            StatusCode::NOT_FOUND,
            StatusCode::OK
        ]
    );
    out
}

/// `traffic` sent to a fresh app while the service's logger, in `format`, writes to memory.
/// (The logger is this thread's default for the duration: the test runtime is single-threaded,
/// so the router runs here, and other tests' lines never mix in.)
async fn logged_traffic(format: &str) -> (Captured, Vec<(TestResponse, &'static str)>) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = rowguard::startup::log_subscriber("info", format, move || writer.clone(), false);
    let _guard = tracing::subscriber::set_default(subscriber);
    let app = spawn_app().await;
    let sent = traffic(&app).await;
    (captured, sent)
}

fn request_id(r: &TestResponse) -> String {
    r.headers.get("x-request-id").and_then(|v| v.to_str().ok()).expect("x-request-id").to_string()
}

#[tokio::test]
async fn every_json_request_line_names_its_request_id_and_tenant() {
    let (captured, sent) = logged_traffic("json").await;

    let lines: Vec<Value> = captured
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .filter(|v: &Value| v["target"] == "rowguard::request")
        .collect();
    // Logging in (by owner_token) is a request too.
    assert_eq!(lines.len(), sent.len() + 1, "{lines:#?}");
    for line in &lines {
        assert!(line["request_id"].as_str().is_some_and(|id| id.len() == 36), "{line}");
        assert!(line["tenant"].as_str().is_some_and(|t| !t.is_empty()), "{line}");
    }
    for (response, tenant) in &sent {
        let id = request_id(response);
        let line = lines.iter().find(|l| l["request_id"] == id.as_str()).unwrap_or_else(|| panic!("no line for {id}"));
        assert_eq!(line["tenant"], *tenant, "{line}");
        assert_eq!(line["status"], response.status.as_u16(), "{line}");
        assert!(line["ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{line}");
    }
    let served = lines.iter().find(|l| l["request_id"] == request_id(&sent[0].0).as_str()).expect("first");
    assert!(served["user"].as_str().is_some_and(|u| u.len() == 36), "the authenticated user is named: {served}");
}

#[tokio::test]
async fn every_text_request_line_names_its_request_id_and_tenant() {
    let (captured, sent) = logged_traffic("text").await;

    let text = captured.text();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("rowguard::request")).collect();
    assert_eq!(lines.len(), sent.len() + 1, "{text}");
    for (response, tenant) in &sent {
        let id = request_id(response);
        let line = lines
            .iter()
            .find(|l| l.contains(&format!("request_id={id}")))
            .unwrap_or_else(|| panic!("no line for {id}"));
        assert!(line.contains(&format!("tenant=\"{tenant}\"")) || line.contains(&format!("tenant={tenant}")), "{line}");
        assert!(line.contains(&format!("status={}", response.status.as_u16())), "{line}");
    }
}
