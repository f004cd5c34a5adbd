//! Limits, apart from HTTP: the quota type and keyed limiters both the rate-limit layers and
//! `failure` (limits charged on failure only) are built on — governor's keyed GCRA limiters, a
//! refusal with its wait, the rounding the rate-limit headers use — and the per-account
//! failure budget that login and password changes consult (`Account`, `AccountGate`).

mod failure;

pub(crate) use failure::FailureLimiter;

use std::hash::Hash;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::DefaultClock;
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::domain::{OperatorId, Plan, TenantId, UserId};

/// Whose failed password checks a per-account limit counts. The account itself when it
/// exists — however the e-mail was spelled, so `vİctim@…` and `VICTIM@…` share `victim@…`'s
/// budget — else the e-mail as the database lowered it (what `lower(email) = lower($1)`
/// compares), never a normalisation of our own that could disagree with the database's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Account {
    User(TenantId, UserId),
    UnknownUser(TenantId, String),
    Operator(OperatorId),
    UnknownOperator(String),
}

/// The per-account failure budget, as password checks consult it (the rate limits keep it,
/// per instance).
pub trait AccountGate: Send + Sync {
    /// Whether `account` must wait before its password is checked again.
    fn refused(&self, account: &Account) -> Option<Refusal>;
    /// Count one failed password check against `account`.
    fn record_failure(&self, account: Account);
}

/// A quota: one request's worth of capacity comes back every `replenish_every`, up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limit {
    pub replenish_every: Duration,
    pub burst: NonZeroU32,
}

impl Limit {
    pub fn per_second(per_second: u32, burst: u32) -> Limit {
        Limit {
            replenish_every: Duration::from_secs(1) / per_second.max(1),
            burst: NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN),
        }
    }

    pub(crate) fn one_per(period: Duration, burst: u32) -> Limit {
        Limit { replenish_every: period, burst: NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN) }
    }

    pub(crate) fn quota(self) -> Quota {
        Quota::with_period(self.replenish_every).unwrap_or(Quota::per_second(NonZeroU32::MAX)).allow_burst(self.burst)
    }

    /// Seconds for an empty bucket to fill up again: the window of `RateLimit-Policy`.
    pub(crate) fn window_secs(self) -> u64 {
        ceil_secs(self.replenish_every * self.burst.get())
    }

    /// The plan's quota, per instance (docs/rate-limits.md).
    pub fn for_plan(plan: Plan) -> Limit {
        match plan {
            Plan::Free => Limit::per_second(20, 100),
            Plan::Pro => Limit::per_second(100, 500),
            Plan::Enterprise => Limit::per_second(500, 2000),
        }
    }
}

/// Past this many keys in one limiter, prune at once rather than wait for the next minute.
pub(crate) const PRUNE_EARLY_AT: usize = 100_000;

pub(crate) type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

pub(crate) fn keyed<K: Clone + Hash + Eq>(limit: Limit) -> Keyed<K> {
    RateLimiter::keyed(limit.quota()).with_middleware::<StateInformationMiddleware>()
}

/// A refusal: how long to wait and under which quota.
#[derive(Debug, Clone, Copy)]
pub struct Refusal {
    pub wait: Duration,
    pub limit: Limit,
}

/// Whole seconds, rounded up, at least one: a client told "0" would retry at once and be
/// refused again (what `Retry-After` and the `RateLimit` headers say).
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}
