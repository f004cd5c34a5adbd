//! The recent window behind the console's health panel: latency snapshots per (route, method)
//! taken every `SAMPLE_EVERY`, and rate and p99 over the last `RECENT_WINDOW`.

use super::*;

/// How far back the console's health panel looks (`route_latency`), and how often the window's
/// snapshots are taken.
const RECENT_WINDOW: Duration = Duration::from_secs(300);
const SAMPLE_EVERY: Duration = Duration::from_secs(15);

/// Cumulative latency-bucket counts per (route, method), as the histogram family holds them:
/// `BUCKETS.len()` bounds, then +Inf (which is the request count).
#[derive(Default, Clone)]
pub(super) struct LatencySnapshot(HashMap<(String, String), [u64; BUCKETS.len() + 1]>);

/// One (route, method)'s requests and latency over the recent window, for the console.
#[derive(Debug, Clone)]
pub struct RouteLatency {
    pub route: String,
    pub method: String,
    /// Requests answered in the window, and per second over it.
    pub requests: u64,
    pub per_second: f64,
    /// The 99th percentile of time to the response's head, in seconds, estimated from the
    /// histogram's buckets as Prometheus' `histogram_quantile` does; None when no request
    /// was answered in the window, `f64::INFINITY` when it lies past the largest bucket.
    pub p99: Option<f64>,
    /// Requests answered since this instance started.
    pub since_start: u64,
}

/// What `route_latency` reports: the window it covers and each (route, method) seen since start.
#[derive(Debug, Clone)]
pub struct LatencyReport {
    pub window: Duration,
    pub routes: Vec<RouteLatency>,
}

impl Metrics {
    /// Take a snapshot for the recent window every `SAMPLE_EVERY`, for as long as the metrics
    /// are in use (a weak reference, so a dropped context — a finished test — ends the task).
    pub fn spawn_sampling(self: &Arc<Self>) {
        let weak: Weak<Metrics> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(SAMPLE_EVERY);
            every.tick().await;
            loop {
                every.tick().await;
                match weak.upgrade() {
                    Some(metrics) => metrics.sample(),
                    None => return,
                }
            }
        });
    }

    pub(super) fn sample(&self) {
        let now = (Instant::now(), self.latency_snapshot());
        let Ok(mut recent) = self.recent.lock() else { return };
        recent.push_back(now);
        // Keep the newest snapshot that is at least a window old, and every one after it.
        while recent.len() > 2 && recent[1].0.elapsed() >= RECENT_WINDOW {
            recent.pop_front();
        }
    }

    /// Requests, rate and p99 per (route, method) over the last `RECENT_WINDOW` (or since the
    /// instance started, when that was more recent), busiest first. Read from the same
    /// histogram family `/metrics` exposes; no label beyond route and method exists.
    pub fn route_latency(&self) -> LatencyReport {
        let now = self.latency_snapshot();
        let (since, base) = match self.recent.lock() {
            Ok(recent) => recent.front().cloned().unwrap_or_else(|| (Instant::now(), LatencySnapshot::default())),
            Err(_) => (Instant::now(), LatencySnapshot::default()),
        };
        let window = since.elapsed();
        let mut routes: Vec<RouteLatency> = now
            .0
            .iter()
            .map(|((route, method), buckets)| {
                let before = base.0.get(&(route.clone(), method.clone())).copied().unwrap_or_default();
                let delta: [u64; BUCKETS.len() + 1] = std::array::from_fn(|i| buckets[i].saturating_sub(before[i]));
                let requests = delta[BUCKETS.len()];
                RouteLatency {
                    route: route.clone(),
                    method: method.clone(),
                    requests,
                    per_second: requests as f64 / window.as_secs_f64().max(1.0),
                    p99: quantile(0.99, &delta),
                    since_start: buckets[BUCKETS.len()],
                }
            })
            .collect();
        routes.sort_by(|a, b| {
            (b.requests, b.since_start, &a.route, &a.method).cmp(&(a.requests, a.since_start, &b.route, &b.method))
        });
        LatencyReport { window, routes }
    }

    /// The duration histograms' buckets now, read through their own text exposition (the
    /// histogram type keeps its buckets to itself).
    fn latency_snapshot(&self) -> LatencySnapshot {
        let mut registry = Registry::default();
        registry.register("d", "", self.durations.clone());
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
        let mut snapshot = LatencySnapshot::default();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("d_bucket{") else { continue };
            let Some((labels, value)) = rest.rsplit_once("} ") else { continue };
            let labels = parse_labels(labels);
            let label = |k: &str| labels.iter().find(|(name, _)| name == k).map(|(_, v)| v.clone());
            let (Some(route), Some(method), Some(le)) = (label("route"), label("method"), label("le")) else {
                continue;
            };
            let slot = match le.as_str() {
                "+Inf" => Some(BUCKETS.len()),
                bound => bound.parse::<f64>().ok().and_then(|b| BUCKETS.iter().position(|x| (x - b).abs() < 1e-12)),
            };
            let (Some(slot), Ok(value)) = (slot, value.trim().parse::<u64>()) else { continue };
            snapshot.0.entry((route, method)).or_insert([0; BUCKETS.len() + 1])[slot] = value;
        }
        snapshot
    }
}

/// `name="value"` pairs of an exposition line's label set (values unescaped).
pub(super) fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if name.is_empty() || chars.next() != Some('"') {
            return out;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => return out,
                },
                other => value.push(other),
            }
        }
        out.push((name.trim_start_matches(',').to_string(), value));
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
}

/// The `q` quantile of cumulative bucket counts (the last is +Inf), interpolated within its
/// bucket as Prometheus' `histogram_quantile` does.
fn quantile(q: f64, cumulative: &[u64; BUCKETS.len() + 1]) -> Option<f64> {
    let count = cumulative[BUCKETS.len()];
    if count == 0 {
        return None;
    }
    let rank = q * count as f64;
    let i = cumulative.iter().position(|&c| c as f64 >= rank)?;
    if i == BUCKETS.len() {
        return Some(f64::INFINITY);
    }
    let (lower, below) = if i == 0 { (0.0, 0) } else { (BUCKETS[i - 1], cumulative[i - 1]) };
    let inside = (cumulative[i] - below) as f64;
    Some(lower + (BUCKETS[i] - lower) * ((rank - below as f64) / inside.max(1.0)))
}
