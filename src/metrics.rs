//! Metrics in Prometheus' text format (`GET /metrics`).
//!
//! Recording is lock-free and allocation-free on the request path: every series lives in a
//! fixed table of atomics, indexed by route (the routes are known once the router is built),
//! method and status. Nothing is labelled by tenant — the number of tenants is unbounded —
//! and no label is ever taken from request text: a path that matched no route is counted as
//! `route="unmatched"`, not under its own path. The only tenant-derived label is `plan` on
//! tenant rate-limit refusals, which has three values.
//!
//! Why not the `metrics` facade with its Prometheus exporter (DESIGN.md's default): its
//! recorder is process-global, so every router in a process (the test suite runs dozens
//! side by side, each over its own database) would share one set of counters, and each
//! labelled update goes through the facade's key hashing and registry lookup. Our series are
//! all known when the router is built, so a fixed table per context does the same job with
//! three relaxed atomic adds per request, and the text format is a page of code, tested by a
//! strict parser of the format in tests/it/metrics.rs.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use axum::http::{Method, StatusCode};

use crate::db::registry::Plan;

/// Upper bounds of the latency histogram's buckets, in seconds.
const BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Statuses counted under their own code; any other lands in `status="other"`.
const STATUSES: [u16; 24] = [
    200, 201, 204, 301, 302, 304, 400, 401, 403, 404, 405, 406, 408, 409, 410, 412, 413, 415, 422, 429, 500, 502, 503,
    504,
];

const METHODS: [&str; 8] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "other"];

/// Route labels past the registered templates.
const OTHER_ROUTE: &str = "other";
const UNMATCHED_ROUTE: &str = "unmatched";

/// Why a request was refused with 429.
#[derive(Debug, Clone, Copy)]
pub enum RateLimited {
    Tenant(Plan),
    /// An address whose requests keep naming no tenant.
    Unresolved,
    LoginPerAddress,
    LoginPerAccount,
    /// Refresh and logout per (tenant, address).
    SessionsPerAddress,
    /// Bearer requests that keep failing authentication, per (tenant, address).
    UnauthenticatedPerAddress,
    /// Operator login and signup per address.
    PlatformPerAddress,
    OperatorLoginPerAccount,
}

impl RateLimited {
    const LABELS: [(&'static str, &'static str); 10] = [
        ("tenant", "free"),
        ("tenant", "pro"),
        ("tenant", "enterprise"),
        ("unresolved", ""),
        ("login_per_address", ""),
        ("login_per_account", ""),
        ("sessions_per_address", ""),
        ("unauthenticated_per_address", ""),
        ("platform_per_address", ""),
        ("operator_login_per_account", ""),
    ];

    fn slot(self) -> usize {
        match self {
            RateLimited::Tenant(Plan::Free) => 0,
            RateLimited::Tenant(Plan::Pro) => 1,
            RateLimited::Tenant(Plan::Enterprise) => 2,
            RateLimited::Unresolved => 3,
            RateLimited::LoginPerAddress => 4,
            RateLimited::LoginPerAccount => 5,
            RateLimited::SessionsPerAddress => 6,
            RateLimited::UnauthenticatedPerAddress => 7,
            RateLimited::PlatformPerAddress => 8,
            RateLimited::OperatorLoginPerAccount => 9,
        }
    }
}

/// One (route, method) pair: answers by status and the latency histogram.
struct Series {
    statuses: [AtomicU64; STATUSES.len() + 1],
    /// Not cumulative: each observation lands in exactly one bucket (the last is +Inf).
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Series {
    fn new() -> Series {
        Series {
            statuses: std::array::from_fn(|_| AtomicU64::new(0)),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        }
    }
}

struct RouteTable {
    index: HashMap<Box<str>, usize>,
    /// Route labels by index: the templates, then `other`, then `unmatched`.
    names: Vec<Box<str>>,
    /// `names.len() * METHODS.len()` series, route-major.
    series: Box<[Series]>,
}

/// Pool figures read when scraped.
#[derive(Debug, Clone, Copy)]
pub struct PoolFigures {
    pub max: u32,
    pub in_use: u32,
    pub idle: u32,
    /// Requests waiting for a connection.
    pub waiting: u32,
}

/// Every metric the service keeps. One per `ApiContext`; cloned contexts share it.
#[derive(Default)]
pub struct Metrics {
    routes: OnceLock<RouteTable>,
    rate_limited: [AtomicU64; RateLimited::LABELS.len()],
    audit_write_failures: AtomicU64,
}

impl Metrics {
    /// Fix the route labels (path templates, as axum's `MatchedPath` spells them). The first
    /// call wins: a router built twice over one context has the same routes.
    pub fn register_routes<'a>(&self, templates: impl IntoIterator<Item = &'a str>) {
        self.routes.get_or_init(|| {
            let mut names: Vec<Box<str>> = templates.into_iter().map(Box::from).collect();
            names.sort();
            names.dedup();
            names.push(OTHER_ROUTE.into());
            names.push(UNMATCHED_ROUTE.into());
            let index = names.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect();
            let series = (0..names.len() * METHODS.len()).map(|_| Series::new()).collect();
            RouteTable { index, names, series }
        });
    }

    /// One answered request. `route` is the matched template, None when no route matched.
    pub fn observe(&self, route: Option<&str>, method: &Method, status: StatusCode, elapsed: Duration) {
        let Some(table) = self.routes.get() else { return };
        let named = table.names.len() - 2;
        let route = match route {
            Some(r) => table.index.get(r).copied().unwrap_or(named),
            None => named + 1,
        };
        let series = &table.series[route * METHODS.len() + method_slot(method)];
        let status = STATUSES.iter().position(|&s| s == status.as_u16()).unwrap_or(STATUSES.len());
        series.statuses[status].fetch_add(1, Relaxed);
        let seconds = elapsed.as_secs_f64();
        let bucket = BUCKETS.iter().position(|&b| seconds <= b).unwrap_or(BUCKETS.len());
        series.buckets[bucket].fetch_add(1, Relaxed);
        series.sum_nanos.fetch_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    pub fn rate_limited(&self, why: RateLimited) {
        self.rate_limited[why.slot()].fetch_add(1, Relaxed);
    }

    /// An access event (refusal, throttling) that could not be written to the audit log.
    pub fn audit_write_failed(&self) {
        self.audit_write_failures.fetch_add(1, Relaxed);
    }

    /// The exposition. `audit_events` is the database's count of audit rows inserted (every
    /// instance's, since the statistics were last reset); None when it could not be read.
    pub fn render(&self, pool: PoolFigures, audit_events: Option<i64>) -> String {
        let mut out = String::with_capacity(16 * 1024);
        self.render_http(&mut out);
        family(&mut out, "rowguard_rate_limited_total", "counter", "Requests refused with 429, by limit (and plan).");
        for (i, (limit, plan)) in RateLimited::LABELS.iter().enumerate() {
            let n = self.rate_limited[i].load(Relaxed);
            if plan.is_empty() {
                let _ = writeln!(out, "rowguard_rate_limited_total{{limit=\"{limit}\"}} {n}");
            } else {
                let _ = writeln!(out, "rowguard_rate_limited_total{{limit=\"{limit}\",plan=\"{plan}\"}} {n}");
            }
        }
        family(
            &mut out,
            "rowguard_db_pool_connections",
            "gauge",
            "The app role's two pools (transactions, one-message reads) together: open connections by state.",
        );
        let _ = writeln!(out, "rowguard_db_pool_connections{{state=\"in_use\"}} {}", pool.in_use);
        let _ = writeln!(out, "rowguard_db_pool_connections{{state=\"idle\"}} {}", pool.idle);
        family(
            &mut out,
            "rowguard_db_pool_max_connections",
            "gauge",
            "The app role's two pools together: their size limit.",
        );
        let _ = writeln!(out, "rowguard_db_pool_max_connections {}", pool.max);
        family(&mut out, "rowguard_db_pool_waiting", "gauge", "Requests waiting for a connection from the pool.");
        let _ = writeln!(out, "rowguard_db_pool_waiting {}", pool.waiting);
        if let Some(n) = audit_events {
            family(
                &mut out,
                "rowguard_audit_events_inserted_total",
                "counter",
                "Audit events written (data changes and access events), as the database counts them: all instances.",
            );
            let _ = writeln!(out, "rowguard_audit_events_inserted_total {n}");
        }
        family(
            &mut out,
            "rowguard_audit_write_failures_total",
            "counter",
            "Access events (refusals, throttling) this instance could not write to the audit log.",
        );
        let _ = writeln!(out, "rowguard_audit_write_failures_total {}", self.audit_write_failures.load(Relaxed));
        if let Some(bytes) = resident_bytes() {
            family(&mut out, "process_resident_memory_bytes", "gauge", "Resident memory of this process.");
            let _ = writeln!(out, "process_resident_memory_bytes {bytes}");
        }
        out
    }

    fn render_http(&self, out: &mut String) {
        let Some(table) = self.routes.get() else { return };
        family(
            out,
            "rowguard_http_requests_total",
            "counter",
            "Requests answered, by route template, method and status.",
        );
        let mut histograms = String::new();
        family(
            &mut histograms,
            "rowguard_http_request_duration_seconds",
            "histogram",
            "Time to the response's head, by route template and method.",
        );
        for (r, route) in table.names.iter().enumerate() {
            for (m, method) in METHODS.iter().enumerate() {
                let series = &table.series[r * METHODS.len() + m];
                let labels = format!("route=\"{route}\",method=\"{method}\"");
                let mut total = 0;
                for (i, count) in series.statuses.iter().enumerate() {
                    let n = count.load(Relaxed);
                    if n == 0 {
                        continue;
                    }
                    total += n;
                    let status = STATUSES.get(i).map_or_else(|| "other".to_string(), u16::to_string);
                    let _ = writeln!(out, "rowguard_http_requests_total{{{labels},status=\"{status}\"}} {n}");
                }
                if total == 0 {
                    continue;
                }
                let name = "rowguard_http_request_duration_seconds";
                let mut cumulative = 0;
                for (i, bound) in BUCKETS.iter().enumerate() {
                    cumulative += series.buckets[i].load(Relaxed);
                    let _ = writeln!(histograms, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
                }
                cumulative += series.buckets[BUCKETS.len()].load(Relaxed);
                let _ = writeln!(histograms, "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
                let sum = series.sum_nanos.load(Relaxed) as f64 / 1e9;
                let _ = writeln!(histograms, "{name}_sum{{{labels}}} {sum}");
                let _ = writeln!(histograms, "{name}_count{{{labels}}} {cumulative}");
            }
        }
        out.push_str(&histograms);
    }
}

fn method_slot(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::POST => 1,
        Method::PUT => 2,
        Method::PATCH => 3,
        Method::DELETE => 4,
        Method::HEAD => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// From /proc/self/statm (Linux); None elsewhere.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { nix::libc::sysconf(nix::libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn requests_land_in_their_route_method_status_and_bucket() {
        let m = Metrics::default();
        m.register_routes(["/v1/contacts/{id}", "/v1/contacts"]);
        let get = Method::GET;
        m.observe(Some("/v1/contacts/{id}"), &get, StatusCode::OK, Duration::from_micros(700));
        m.observe(Some("/v1/contacts/{id}"), &get, StatusCode::OK, Duration::from_millis(20));
        m.observe(Some("/v1/contacts/{id}"), &get, StatusCode::NOT_FOUND, Duration::from_millis(1));
        m.observe(Some("/docs/{*rest}"), &get, StatusCode::IM_A_TEAPOT, Duration::from_millis(1));
        m.observe(None, &Method::from_bytes(b"BREW").unwrap(), StatusCode::NOT_FOUND, Duration::from_secs(30));
        let text = m.render(PoolFigures { max: 8, in_use: 1, idle: 7, waiting: 0 }, Some(5));
        let route = r#"route="/v1/contacts/{id}",method="GET""#;
        assert_eq!(sample(&text, &format!("rowguard_http_requests_total{{{route},status=\"200\"}}")), Some(2.0));
        assert_eq!(sample(&text, &format!("rowguard_http_requests_total{{{route},status=\"404\"}}")), Some(1.0));
        let bucket =
            |le: &str| sample(&text, &format!("rowguard_http_request_duration_seconds_bucket{{{route},le=\"{le}\"}}"));
        assert_eq!(bucket("0.0005"), Some(0.0));
        assert_eq!(bucket("0.001"), Some(2.0), "0.7 ms and 1 ms are both within 1 ms");
        assert_eq!(bucket("0.025"), Some(3.0));
        assert_eq!(bucket("+Inf"), Some(3.0));
        let sum = sample(&text, &format!("rowguard_http_request_duration_seconds_sum{{{route}}}")).unwrap();
        assert!((sum - 0.0217).abs() < 1e-9, "{sum}");
        let other = r#"rowguard_http_requests_total{route="other",method="GET",status="other"}"#;
        assert_eq!(sample(&text, other), Some(1.0));
        let unmatched = r#"rowguard_http_requests_total{route="unmatched",method="other",status="404"}"#;
        assert_eq!(sample(&text, unmatched), Some(1.0));
        assert!(!text.contains(r#"route="/v1/contacts",method"#), "series never hit are left out");
        assert_eq!(sample(&text, "rowguard_db_pool_connections{state=\"idle\"}"), Some(7.0));
        assert_eq!(sample(&text, "rowguard_audit_events_inserted_total"), Some(5.0));
    }

    #[test]
    fn refusals_are_counted_by_limit_and_plan() {
        let m = Metrics::default();
        m.rate_limited(RateLimited::Tenant(Plan::Pro));
        m.rate_limited(RateLimited::Tenant(Plan::Pro));
        m.rate_limited(RateLimited::LoginPerAccount);
        let text = m.render(PoolFigures { max: 1, in_use: 0, idle: 0, waiting: 0 }, None);
        assert_eq!(sample(&text, r#"rowguard_rate_limited_total{limit="tenant",plan="pro"}"#), Some(2.0));
        assert_eq!(sample(&text, r#"rowguard_rate_limited_total{limit="tenant",plan="free"}"#), Some(0.0));
        assert_eq!(sample(&text, r#"rowguard_rate_limited_total{limit="login_per_account"}"#), Some(1.0));
        assert!(!text.contains("rowguard_audit_events_inserted_total"), "left out when unknown");
    }
}
