//! Background work in the tenant's context: the outbox's workers (sql/V25, issue 16).
//!
//! A data change and its deliveries commit together (the audit trigger enqueues them); a worker
//! loop here claims due items across tenants — ids only, fairly (`outbox_claim`) — and runs each
//! one in its tenant's transactions through the one door (`TenantTx::begin`), under RLS, never
//! a bypass: read the item and its webhook, send it signed, record the attempt. At least once:
//! a worker that dies after sending and before recording leaves the claim to lapse, and the
//! item is sent again (the same `webhook-id`, for the receiver to drop). Failures are retried
//! with exponential backoff and jitter; after the last attempt the item is a dead letter.
//!
//! `serve` runs the loop (ROWGUARD_WORKERS deliveries at once; 0: none), `rowguard worker` runs
//! it alone; any number of either may share one database.

pub mod delivery;
pub mod signing;
pub mod target;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::db::Database;
use crate::db::outbox::{After, Claim, DueItem};
use crate::domain::TenantId;
use crate::metrics::Metrics;

/// How a worker loop runs (from `Config`).
#[derive(Debug, Clone, Copy)]
pub struct WorkerSettings {
    /// Deliveries in flight at once.
    pub concurrency: usize,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub allow_local: bool,
    /// How often an idle worker looks for work.
    pub poll: Duration,
}

impl WorkerSettings {
    pub fn from_config(config: &crate::config::Config) -> WorkerSettings {
        WorkerSettings {
            concurrency: config.workers,
            timeout: Duration::from_millis(config.webhook_timeout_ms.max(1)),
            max_attempts: config.webhook_max_attempts.max(1),
            retry_base: Duration::from_millis(config.webhook_retry_base_ms),
            allow_local: config.webhooks_allow_local(),
            poll: Duration::from_millis(config.worker_poll_ms.max(1)),
        }
    }

    /// How long a claim holds an item: the delivery's timeout and time to record it.
    fn lease(&self) -> Duration {
        self.timeout + Duration::from_secs(30)
    }

    /// The delay before attempt `attempts + 1`: the base doubled per attempt made, capped at an
    /// hour, less up to half of it at random.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let full = self.retry_base.saturating_mul(1u32 << attempts.saturating_sub(1).min(20)).min(RETRY_CAP);
        full.mul_f64(rand::rng().random_range(0.5..=1.0))
    }
}

const RETRY_CAP: Duration = Duration::from_secs(3600);
/// How long shutting down waits for deliveries in flight.
const DRAIN: Duration = Duration::from_secs(30);
/// Tenants one claim visits at most.
const TENANTS_PER_CLAIM: i32 = 64;

/// The running worker loop: stop it with `shutdown`.
pub struct Workers {
    stop: watch::Sender<bool>,
    done: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Workers {
    /// Start the loop on `db` (None when `settings.concurrency` is 0).
    pub fn spawn(db: Database, settings: WorkerSettings, metrics: Arc<Metrics>) -> Option<Arc<Workers>> {
        if settings.concurrency == 0 {
            return None;
        }
        let (stop, stopped) = watch::channel(false);
        let handle = tokio::spawn(run(db, settings, metrics, stopped));
        Some(Arc::new(Workers { stop, done: tokio::sync::Mutex::new(Some(handle)) }))
    }

    /// Stop claiming, let the deliveries in flight finish (bounded), hand back what was claimed
    /// and not begun. Safe to call more than once.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        if let Some(handle) = self.done.lock().await.take() {
            let _ = handle.await;
        }
    }
}

/// Deliveries in flight on this worker, per tenant: a tenant at the cap is skipped by the next
/// claims, so a tenant whose receiver hangs until the timeout holds at most that many of the
/// slots and the others stay free for everyone else.
#[derive(Clone, Default)]
struct InFlight(Arc<std::sync::Mutex<HashMap<TenantId, usize>>>);

impl InFlight {
    fn add(&self, tenant: TenantId) {
        if let Ok(mut map) = self.0.lock() {
            *map.entry(tenant).or_default() += 1;
        }
    }

    fn done(&self, tenant: TenantId) {
        if let Ok(mut map) = self.0.lock()
            && let Some(n) = map.get_mut(&tenant)
        {
            *n -= 1;
            if *n == 0 {
                map.remove(&tenant);
            }
        }
    }

    fn at_cap(&self, cap: usize) -> Vec<TenantId> {
        self.0.lock().map(|map| map.iter().filter(|(_, n)| **n >= cap).map(|(t, _)| *t).collect()).unwrap_or_default()
    }
}

async fn run(db: Database, settings: WorkerSettings, metrics: Arc<Metrics>, mut stopped: watch::Receiver<bool>) {
    let sender = delivery::Sender::new(settings.allow_local, settings.timeout);
    let slots = Arc::new(Semaphore::new(settings.concurrency));
    // No tenant holds more than half the slots (at least one) at once.
    let per_tenant_cap = (settings.concurrency / 2).max(1);
    let tenants_in_flight = InFlight::default();
    let mut in_flight = JoinSet::new();
    let mut after: Option<TenantId> = None;
    let mut last_measure = std::time::Instant::now() - Duration::from_secs(10);
    loop {
        if *stopped.borrow() {
            break;
        }
        while in_flight.try_join_next().is_some() {}
        if last_measure.elapsed() >= Duration::from_secs(1) {
            last_measure = std::time::Instant::now();
            match db.outbox_backlog().await {
                Ok(backlog) => metrics.outbox_backlog(backlog),
                Err(sqlx::Error::PoolClosed) => break,
                Err(e) => tracing::warn!(error = %e, "could not measure the outbox backlog"),
            }
        }
        let free = slots.available_permits();
        if free == 0 {
            tokio::select! {
                _ = in_flight.join_next() => {}
                _ = stopped.changed() => {}
            }
            continue;
        }
        let free_slots = i32::try_from(free).unwrap_or(i32::MAX);
        let cap = i32::try_from(per_tenant_cap).unwrap_or(1);
        let claim = Claim {
            after,
            busy: tenants_in_flight.at_cap(per_tenant_cap),
            tenants: TENANTS_PER_CLAIM,
            per_tenant: (free_slots / 2).clamp(1, cap),
            max: free_slots,
            lease: settings.lease(),
        };
        let claimed = match db.outbox_claim(&claim).await {
            Ok(claimed) => claimed,
            Err(sqlx::Error::PoolClosed) => break,
            Err(e) => {
                tracing::warn!(error = %e, "claiming outbox items failed; retrying");
                Default::default()
            }
        };
        if claimed.stopped_at.is_some() {
            after = claimed.stopped_at;
        }
        if claimed.items.is_empty() {
            if claimed.more {
                continue;
            }
            // Nothing due, or only tenants at their cap: look again when a delivery ends (its
            // tenant may have more) or after the poll interval, whichever comes first.
            tokio::select! {
                _ = in_flight.join_next(), if !in_flight.is_empty() => {}
                _ = tokio::time::sleep(settings.poll) => {}
                _ = stopped.changed() => {}
            }
            continue;
        }
        for (tenant, id) in claimed.items {
            let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                // Cannot happen (claimed no more than the free slots); hand it back all the same.
                let _ = db.outbox_reschedule(tenant, &[id], chrono::Utc::now()).await;
                continue;
            };
            let (db, sender, metrics, tenants) =
                (db.clone(), sender.clone(), Arc::clone(&metrics), tenants_in_flight.clone());
            tenants.add(tenant);
            in_flight.spawn(async move {
                deliver(&db, &sender, &settings, &metrics, tenant, id).await;
                tenants.done(tenant);
                drop(permit);
            });
        }
    }
    // Shutting down: deliveries in flight finish and are recorded (each is bounded by the
    // timeout); whatever is still running after DRAIN is cut off and its claim lapses.
    let drained = tokio::time::timeout(DRAIN, async { while in_flight.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!("webhook deliveries still running at shutdown were cut off; they will be sent again");
        in_flight.shutdown().await;
    }
}

/// One claimed item: read it in its tenant's transaction, send it, record the attempt.
async fn deliver(
    db: &Database,
    sender: &delivery::Sender,
    settings: &WorkerSettings,
    metrics: &Metrics,
    tenant: TenantId,
    id: i64,
) {
    let item = match db.outbox_item(tenant, id).await {
        Ok(Some(item)) => item,
        Ok(None) => return,
        Err(e) => {
            // The claim lapses and the item is tried again.
            tracing::warn!(error = %e, tenant = %tenant.0, item = id, "could not read an outbox item");
            return;
        }
    };
    if !item.tenant_live {
        // Suspended or deleted: held, not sent and not counted, and looked at again later.
        let later = chrono::Utc::now() + chrono::Duration::seconds(60);
        if let Err(e) = db.outbox_reschedule(tenant, &[id], later).await {
            tracing::warn!(error = %e, tenant = %tenant.0, item = id, "could not hold a suspended tenant's delivery");
        }
        return;
    }
    let attempt = send(sender, &item).await;
    let made = u32::try_from(item.attempts).unwrap_or(0) + 1;
    let after = if attempt.succeeded() {
        After::Delivered
    } else if made >= settings.max_attempts {
        After::Dead
    } else {
        let delay = chrono::Duration::from_std(settings.backoff(made)).unwrap_or_else(|_| chrono::Duration::hours(1));
        After::Retry(chrono::Utc::now() + delay)
    };
    metrics.webhook_delivery(match after {
        After::Delivered => "delivered",
        After::Retry(_) => "failed",
        After::Dead => "dead",
    });
    if let Err(e) = db.outbox_record(tenant, &item, &attempt, after).await {
        tracing::warn!(error = %e, tenant = %tenant.0, item = id, "could not record a webhook delivery; it will be sent again");
    }
}

async fn send(sender: &delivery::Sender, item: &DueItem) -> delivery::Attempt {
    let mut secrets = vec![item.secret.as_str()];
    if let Some(previous) = &item.previous_secret {
        secrets.push(previous);
    }
    let message =
        delivery::Message { url: &item.url, message_id: item.message_id, body: &item.payload, secrets: &secrets };
    sender.send(&message).await
}
