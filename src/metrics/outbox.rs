//! The outbox workers' figures: backlog across tenants and delivery outcomes.

use super::*;

/// The outbox's workers (`jobs`): the backlog across tenants as last measured, and delivery
/// outcomes on this instance. No tenant label, as everywhere.
pub(super) struct OutboxMetrics {
    pending: Gauge,
    oldest: Gauge<f64, AtomicU64>,
    dead: Gauge,
    deliveries: [Counter; 3],
}

impl OutboxMetrics {
    const OUTCOMES: [&'static str; 3] = ["delivered", "failed", "dead"];

    pub(super) fn register(registry: &mut Registry) -> OutboxMetrics {
        let pending = Gauge::default();
        registry.register(
            "rowguard_outbox_pending",
            "Webhook deliveries waiting in the outbox (all tenants, all instances), as last measured",
            pending.clone(),
        );
        let oldest = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "rowguard_outbox_oldest_seconds",
            "Age of the oldest delivery waiting in the outbox, as last measured",
            oldest.clone(),
        );
        let dead = Gauge::default();
        registry.register(
            "rowguard_outbox_dead",
            "Dead letters: deliveries that used up their attempts (`rowguard jobs retry` revives them)",
            dead.clone(),
        );
        let family = Family::<Pairs, Counter>::default();
        registry.register(
            "rowguard_webhook_deliveries",
            "Webhook delivery attempts on this instance, by outcome (failed: to be retried; dead: the last attempt failed)",
            family.clone(),
        );
        let deliveries = Self::OUTCOMES.map(|outcome| family.get_or_create_owned(&vec![("outcome", outcome)]));
        OutboxMetrics { pending, oldest, dead, deliveries }
    }
}

impl Metrics {
    /// The outbox's backlog, as a worker last measured it.
    pub fn outbox_backlog(&self, backlog: crate::db::outbox::OutboxBacklog) {
        self.outbox.pending.set(backlog.pending);
        self.outbox.oldest.set(backlog.oldest_seconds);
        self.outbox.dead.set(backlog.dead);
    }

    /// One delivery attempt: `delivered`, `failed` (to be retried) or `dead`.
    pub fn webhook_delivery(&self, outcome: &str) {
        if let Some(i) = OutboxMetrics::OUTCOMES.iter().position(|o| *o == outcome) {
            self.outbox.deliveries[i].inc();
        }
    }
}
