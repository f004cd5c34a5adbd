//! `/metrics` over the real router and database: the exposition parses as Prometheus text,
//! requests are counted under their route template (never their raw path), refusals and pool
//! figures are there, audit writes are counted, and a configured token is required.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::json;
use sqlx::Executor;

use crate::support::{TestApp, spawn_app, spawn_app_with};

/// One sample line: family name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: Labels,
    value: f64,
}

fn is_name(s: &str, colons: bool) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colons && c == ':'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colons && c == ':'))
}

/// A strict reading of the text format (0.0.4): HELP/TYPE comments, `name{l="v",…} value`
/// lines, every sample belonging to a declared family, histogram buckets cumulative and
/// ending in `+Inf` equal to `_count`. Panics, naming the line, on anything else.
fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("TYPE"), Some(name), Some(kind)) => {
                    assert!(is_name(name, true), "bad family name: {line}");
                    assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind), "{line}");
                    assert!(types.insert(name.to_string(), kind.to_string()).is_none(), "TYPE twice: {line}");
                }
                (Some("HELP"), Some(name), Some(_)) => assert!(is_name(name, true), "{line}"),
                _ => panic!("unexpected comment: {line}"),
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                (name, parse_labels(rest.strip_suffix('}').unwrap_or_else(|| panic!("{line}")), line))
            }
            None => (series, Vec::new()),
        };
        assert!(is_name(name, true), "bad metric name: {line}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| types.get(*f).is_some_and(|k| k == "histogram")))
            .unwrap_or(name);
        assert!(types.contains_key(family), "sample before its TYPE: {line}");
        samples.push(Sample { name: name.to_string(), labels, value });
    }
    check_histograms(&samples);
    samples
}

fn parse_labels(mut rest: &str, line: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("bad label: {line}"));
        assert!(is_name(name, false), "bad label name {name:?}: {line}");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    _ => panic!("bad escape: {line}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value: {line}"),
            }
        };
        labels.push((name.to_string(), value));
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    labels
}

type Labels = Vec<(String, String)>;

fn check_histograms(samples: &[Sample]) {
    // (family, labels but `le`) → (le, cumulative count) in exposition order
    let mut series: HashMap<(String, Labels), Vec<(f64, f64)>> = HashMap::new();
    for s in samples.iter().filter(|s| s.name.ends_with("_bucket")) {
        let le = s.labels.iter().find(|(k, _)| k == "le").expect("bucket without le");
        let le: f64 = if le.1 == "+Inf" { f64::INFINITY } else { le.1.parse().expect("le") };
        let rest: Vec<_> = s.labels.iter().filter(|(k, _)| k != "le").cloned().collect();
        series.entry((s.name.trim_end_matches("_bucket").to_string(), rest)).or_default().push((le, s.value));
    }
    for ((family, labels), buckets) in series {
        assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1), "{family}{labels:?}: {buckets:?}");
        let last = buckets.last().expect("buckets");
        assert!(last.0.is_infinite(), "{family}{labels:?} does not end in +Inf");
        let count = samples
            .iter()
            .find(|s| s.name == format!("{family}_count") && s.labels == labels)
            .unwrap_or_else(|| panic!("{family}{labels:?} has no _count"));
        assert_eq!(count.value, last.1, "{family}{labels:?}: +Inf bucket != _count");
    }
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
        })
        .map(|s| s.value)
}

async fn scrape(app: &TestApp, headers: &[(&str, &str)]) -> Vec<Sample> {
    let r = app.call(Method::GET, "/metrics", headers, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.content_type(), "text/plain; version=0.0.4; charset=utf-8");
    parse_exposition(r.body.as_str().expect("text"))
}

#[tokio::test]
async fn requests_are_counted_by_route_template_method_and_status() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let token = app.owner_token(&acme).await;
    let created = app
        .call_as(&token, "acme", Method::POST, "/v1/contacts", Some(json!({"name": "Ada", "email": "ada@x.test"})))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().expect("id").to_string();
    for _ in 0..3 {
        let r = app.call_as(&token, "acme", Method::GET, &format!("/v1/contacts/{id}"), None).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let missing = app.call_as(&token, "acme", Method::GET, &format!("/v1/contacts/{}", uuid::Uuid::nil()), None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let probe = app.call(Method::GET, "/wp-admin/setup-config.php", &[], None).await;
    assert_eq!(probe.status, StatusCode::NOT_FOUND);

    let samples = scrape(&app, &[]).await;
    let requests = |route: &str, method: &str, status: &str| {
        value(&samples, "rowguard_http_requests_total", &[("route", route), ("method", method), ("status", status)])
    };
    assert_eq!(requests("/v1/contacts/{id}", "GET", "200"), Some(3.0));
    assert_eq!(requests("/v1/contacts/{id}", "GET", "404"), Some(1.0));
    assert_eq!(requests("/v1/contacts", "POST", "201"), Some(1.0));
    assert_eq!(requests("/v1/auth/login", "POST", "200"), Some(1.0));
    assert_eq!(requests("unmatched", "GET", "404"), Some(1.0));
    assert!(
        samples.iter().all(|s| s.labels.iter().all(|(_, v)| !v.contains(&id) && !v.contains("wp-admin"))),
        "a raw path became a label"
    );
    let histogram = [("route", "/v1/contacts/{id}"), ("method", "GET")];
    assert_eq!(value(&samples, "rowguard_http_request_duration_seconds_count", &histogram), Some(4.0));
    assert!(value(&samples, "rowguard_http_request_duration_seconds_sum", &histogram).is_some_and(|s| s > 0.0));
    assert!(value(&samples, "rowguard_db_pool_max_connections", &[]).is_some_and(|n| n >= 1.0));
    for state in ["in_use", "idle"] {
        assert!(value(&samples, "rowguard_db_pool_connections", &[("state", state)]).is_some(), "{state}");
    }
    assert_eq!(value(&samples, "rowguard_db_pool_waiting", &[]), Some(0.0), "nothing is in flight");
    assert!(value(&samples, "process_resident_memory_bytes", &[]).is_some_and(|b| b > 0.0));
    // No series carries a tenant's identity.
    assert!(samples.iter().all(|s| s.labels.iter().all(|(k, v)| k != "tenant" && v != "acme")));
}

#[tokio::test]
async fn audit_writes_are_counted_as_the_database_sees_them() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let token = app.owner_token(&acme).await;
    let before = value(&scrape(&app, &[]).await, "rowguard_audit_events_inserted_total", &[]).expect("audit count");
    for i in 0..3 {
        let body = json!({"name": format!("C{i}"), "email": format!("c{i}@x.test")});
        let r = app.call_as(&token, "acme", Method::POST, "/v1/contacts", Some(body)).await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    // The statistics reach the shared counters when a backend is next idle (within a second or so).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = value(&scrape(&app, &[]).await, "rowguard_audit_events_inserted_total", &[]).expect("audit count");
        if now >= before + 3.0 {
            break;
        }
        assert!(Instant::now() < deadline, "audit count stayed at {now} (before: {before})");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn rate_limit_refusals_are_counted_by_limit_and_plan() {
    let app = spawn_app().await;
    let noisy = app.create_tenant("noisy").await;
    // Only authenticated requests spend a tenant's quota.
    let token = app.owner_token(&noisy).await;
    let mut su = app.superuser_connection().await;
    su.execute("UPDATE tenants SET plan = 'pro', rate_limit_per_second = 1, rate_limit_burst = 2 WHERE slug = 'noisy'")
        .await
        .expect("quota");
    let mut refused = 0.0;
    for _ in 0..6 {
        let r = app.call_as(&token, "noisy", Method::GET, "/v1/contacts", None).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            refused += 1.0;
        }
    }
    assert!(refused >= 3.0, "only {refused} refusals");
    let samples = scrape(&app, &[]).await;
    let counted = |plan| value(&samples, "rowguard_rate_limited_total", &[("limit", "tenant"), ("plan", plan)]);
    assert_eq!(counted("pro"), Some(refused));
    assert_eq!(counted("free"), Some(0.0));
    assert_eq!(
        value(
            &samples,
            "rowguard_http_requests_total",
            &[("route", "/v1/contacts"), ("method", "GET"), ("status", "429")]
        ),
        Some(refused)
    );
}

#[tokio::test]
async fn a_configured_token_is_required() {
    let app = spawn_app_with(|c| c.metrics_token = Some("s3cret-scrape".into())).await;
    app.call(Method::GET, "/metrics", &[], None)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "metrics_token_required");
    let wrong = app.call(Method::GET, "/metrics", &[("authorization", "Bearer s3cret-scrapf")], None).await;
    wrong.assert_problem(StatusCode::UNAUTHORIZED, "metrics_token_required");
    let samples = scrape(&app, &[("authorization", "Bearer s3cret-scrape")]).await;
    assert!(value(&samples, "rowguard_db_pool_max_connections", &[]).is_some());
}
