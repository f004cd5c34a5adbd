//! Metrics in Prometheus' text format (`GET /metrics`), kept by prometheus-client.
//!
//! Each `ApiContext` owns its own `Registry` (the test suite runs dozens of routers side by
//! side, each over its own database, and their counters must not mix). Nothing is labelled
//! by tenant — the number of tenants is unbounded — and no label is ever taken from request
//! text: a path that matched no route is counted as `route="unmatched"`, a template the
//! router did not register as `route="other"`, an uncommon method as `method="other"`, an
//! uncommon status as `status="other"`. The only tenant-derived label is `plan` on tenant
//! rate-limit refusals, which has three values.
//!
//! The request path does not look labels up: the first request of a (route, method, status)
//! takes its series from the family once and keeps the handle in a fixed table, so later ones
//! cost an index, an atomic add and the histogram's uncontended lock. Series nobody hit are
//! not exposed.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::domain::Plan;

mod outbox;
mod recent;

use outbox::OutboxMetrics;
use recent::LatencySnapshot;
pub use recent::{LatencyReport, RouteLatency};

/// Upper bounds of the latency histogram's buckets, in seconds.
const BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Statuses counted under their own code; any other lands in `status="other"` (the last label).
const STATUSES: [u16; 24] = [
    200, 201, 204, 301, 302, 304, 400, 401, 403, 404, 405, 406, 408, 409, 410, 412, 413, 415, 422, 429, 500, 502, 503,
    504,
];
const STATUS_LABELS: [&str; STATUSES.len() + 1] = [
    "200", "201", "204", "301", "302", "304", "400", "401", "403", "404", "405", "406", "408", "409", "410", "412",
    "413", "415", "422", "429", "500", "502", "503", "504", "other",
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: &'static str,
}

/// A label set of `(name, value)` pairs; used where a label is present on some series only.
type Pairs = Vec<(&'static str, &'static str)>;

/// One (route, method) pair's handles, taken from the families at first use.
#[derive(Default)]
struct Slot {
    statuses: [OnceLock<Counter>; STATUSES.len() + 1],
    duration: OnceLock<Histogram>,
}

struct RouteTable {
    index: HashMap<Box<str>, usize>,
    /// Route labels by index: the templates, then `other`, then `unmatched`.
    names: Vec<Box<str>>,
    /// `names.len() * METHODS.len()` slots, route-major.
    slots: Box<[Slot]>,
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
pub struct Metrics {
    registry: Registry,
    routes: OnceLock<RouteTable>,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram, fn() -> Histogram>,
    rate_limited: [Counter; RateLimited::LABELS.len()],
    audit_write_failures: Counter,
    audit_sealed: Counter,
    audit_seal_failures: Counter,
    audit_unsealed: Gauge,
    audit_unsealed_age: Gauge<f64, AtomicU64>,
    pool_connections: Family<Pairs, Gauge>,
    pool_max: Gauge,
    pool_waiting: Gauge,
    outbox: OutboxMetrics,
    /// Latency snapshots for the recent window (`route_latency`): the oldest first.
    recent: Mutex<VecDeque<(Instant, LatencySnapshot)>>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "rowguard_http_requests",
            "Requests answered, by route template, method and status",
            requests.clone(),
        );
        let durations: Family<RouteLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(BUCKETS));
        registry.register(
            "rowguard_http_request_duration_seconds",
            "Time to the response's head, by route template and method",
            durations.clone(),
        );
        let limited = Family::<Pairs, Counter>::default();
        registry.register("rowguard_rate_limited", "Requests refused with 429, by limit (and plan)", limited.clone());
        let rate_limited = RateLimited::LABELS.map(|(limit, plan)| {
            let mut labels = vec![("limit", limit)];
            if !plan.is_empty() {
                labels.push(("plan", plan));
            }
            limited.get_or_create_owned(&labels)
        });
        let pool_connections = Family::<Pairs, Gauge>::default();
        registry.register(
            "rowguard_db_pool_connections",
            "The app role's pool (transactions and one-message reads): open connections by state",
            pool_connections.clone(),
        );
        let pool_max = Gauge::default();
        registry.register("rowguard_db_pool_max_connections", "The app role's pool: its size limit", pool_max.clone());
        let pool_waiting = Gauge::default();
        registry.register(
            "rowguard_db_pool_waiting",
            "Requests waiting for a connection from the pool",
            pool_waiting.clone(),
        );
        let audit_write_failures = Counter::default();
        registry.register(
            "rowguard_audit_write_failures",
            "Access events (refusals, throttling) this instance could not write to the audit log",
            audit_write_failures.clone(),
        );
        let audit_sealed = Counter::default();
        registry.register(
            "rowguard_audit_sealed_events",
            "Audit events this instance sealed into their tenant's Merkle tree",
            audit_sealed.clone(),
        );
        let audit_seal_failures = Counter::default();
        registry.register(
            "rowguard_audit_seal_failures",
            "Sealing of a tenant, or a whole pass, that failed on this instance (the events wait for the next pass)",
            audit_seal_failures.clone(),
        );
        let audit_unsealed = Gauge::default();
        registry.register(
            "rowguard_audit_unsealed_transactions",
            "Committed transactions whose audit events are not sealed yet (all instances), as last measured",
            audit_unsealed.clone(),
        );
        let audit_unsealed_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "rowguard_audit_unsealed_oldest_seconds",
            "Age of the oldest transaction whose audit events are not sealed yet, as last measured",
            audit_unsealed_age.clone(),
        );
        let outbox = OutboxMetrics::register(&mut registry);
        Metrics {
            outbox,
            registry,
            routes: OnceLock::new(),
            requests,
            durations,
            rate_limited,
            audit_write_failures,
            audit_sealed,
            audit_seal_failures,
            audit_unsealed,
            audit_unsealed_age,
            pool_connections,
            pool_max,
            pool_waiting,
            recent: Mutex::new(VecDeque::from([(Instant::now(), LatencySnapshot::default())])),
        }
    }
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
            let slots = (0..names.len() * METHODS.len()).map(|_| Slot::default()).collect();
            RouteTable { index, names, slots }
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
        let m = method_slot(method);
        let slot = &table.slots[route * METHODS.len() + m];
        let status = STATUSES.iter().position(|&s| s == status.as_u16()).unwrap_or(STATUSES.len());
        let route = &table.names[route];
        slot.statuses[status]
            .get_or_init(|| {
                let labels =
                    RequestLabels { route: route.to_string(), method: METHODS[m], status: STATUS_LABELS[status] };
                self.requests.get_or_create_owned(&labels)
            })
            .inc();
        slot.duration
            .get_or_init(|| {
                self.durations.get_or_create_owned(&RouteLabels { route: route.to_string(), method: METHODS[m] })
            })
            .observe(elapsed.as_secs_f64());
    }

    pub fn rate_limited(&self, why: RateLimited) {
        self.rate_limited[why.slot()].inc();
    }

    /// An access event (refusal, throttling) that could not be written to the audit log.
    pub fn audit_write_failed(&self) {
        self.audit_write_failures.inc();
    }

    /// A sealing pass: how many events it sealed, or that it failed.
    pub fn audit_sealed(&self, events: u64) {
        self.audit_sealed.inc_by(events);
    }

    pub fn audit_seal_failed(&self) {
        self.audit_seal_failures.inc();
    }

    /// The sealer's backlog, measured across instances.
    pub fn audit_backlog(&self, transactions: i64, oldest_seconds: f64) {
        self.audit_unsealed.set(transactions);
        self.audit_unsealed_age.set(oldest_seconds);
    }

    /// The exposition. `audit_events` is the database's count of audit rows inserted (every
    /// instance's, since the statistics were last reset); None when it could not be read.
    pub fn render(&self, pool: PoolFigures, audit_events: Option<i64>) -> String {
        self.pool_connections.get_or_create(&vec![("state", "in_use")]).set(pool.in_use.into());
        self.pool_connections.get_or_create(&vec![("state", "idle")]).set(pool.idle.into());
        self.pool_max.set(pool.max.into());
        self.pool_waiting.set(pool.waiting.into());
        // What is read from outside at scrape time, and present only when it could be read.
        let mut scraped = Registry::default();
        if let Some(n) = audit_events {
            let counter = Counter::<u64>::default();
            counter.inc_by(u64::try_from(n).unwrap_or(0));
            scraped.register(
                "rowguard_audit_events_inserted",
                "Audit events written (data changes and access events), as the database counts them: all instances",
                counter,
            );
        }
        if let Some(bytes) = resident_bytes() {
            let gauge = Gauge::<i64>::default();
            gauge.set(i64::try_from(bytes).unwrap_or(i64::MAX));
            scraped.register("process_resident_memory_bytes", "Resident memory of this process", gauge);
        }
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &scraped);
        out
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

/// From /proc/self/statm (Linux); None elsewhere.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok()??;
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
    fn route_latency_reports_requests_rate_and_p99_per_route_with_no_other_label() {
        let m = Metrics::default();
        m.register_routes(["/v1/contacts/{id}", "/v1/contacts"]);
        for i in 0..100 {
            // 99 fast ones (under 1 ms) and one slow (0.3 s): the p99 lies in the 1 ms bucket.
            let took = if i == 0 { Duration::from_millis(300) } else { Duration::from_micros(800) };
            m.observe(Some("/v1/contacts/{id}"), &Method::GET, StatusCode::OK, took);
        }
        m.observe(Some("/v1/contacts"), &Method::POST, StatusCode::CREATED, Duration::from_secs(30));
        let report = m.route_latency();
        assert_eq!(report.routes.len(), 2, "{report:?}");
        let get = &report.routes[0];
        assert_eq!(
            (get.route.as_str(), get.method.as_str(), get.requests, get.since_start),
            ("/v1/contacts/{id}", "GET", 100, 100)
        );
        let p99 = get.p99.expect("a p99");
        assert!(p99 > 0.0005 && p99 <= 0.001, "{p99}");
        assert!(get.per_second > 0.0);
        let post = &report.routes[1];
        assert_eq!(post.p99, Some(f64::INFINITY), "past the largest bucket");
        // After a sample, the window starts there: nothing new since.
        m.sample();
        std::thread::sleep(Duration::from_millis(5));
        let mut recent = m.recent.lock().expect("lock");
        recent.pop_front();
        drop(recent);
        let later = m.route_latency();
        assert!(later.routes.iter().all(|r| r.requests == 0 && r.p99.is_none()), "{later:?}");
        assert_eq!(later.routes[0].since_start, 100);
    }

    #[test]
    fn labels_are_read_back_with_escapes() {
        let labels = recent::parse_labels(r#"route="/v1/a,{b}",method="GET",le="+Inf""#);
        let expected = [("route", "/v1/a,{b}"), ("method", "GET"), ("le", "+Inf")];
        assert_eq!(labels, expected.map(|(k, v)| (k.to_string(), v.to_string())));
        assert_eq!(recent::parse_labels(r#"x="a\"b""#), [("x".to_string(), "a\"b".to_string())]);
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
