//! A limiter charged only when something failed (failed logins, requests naming no tenant,
//! failed authentication), with backoff for accounts. Used by the rate limits; touches nothing else.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};

use super::{Keyed, Limit, PRUNE_EARLY_AT, Refusal, keyed};

/// The longest a failure limiter's backoff makes anyone wait.
const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// How long a key's backoff is remembered after its block ends: failures within it escalate.
const BACKOFF_MEMORY: Duration = Duration::from_secs(30 * 60);

/// A limiter charged only when something failed, with a note of who must wait: governor
/// cannot look at a key's state without spending from it, and a request must be refused
/// before it costs anything (a database lookup, an argon2 hash).
///
/// Backoff (`with_backoff`): once a key's burst is spent it is blocked for one replenish
/// period; every further failure while the key is remembered (its block, plus
/// `BACKOFF_MEMORY`) doubles the block, up to `MAX_BACKOFF`. A steady guesser therefore slows down exponentially, not
/// to a fixed trickle, and a key left alone long enough starts afresh.
pub(crate) struct FailureLimiter<K: Clone + Hash + Eq> {
    limit: Limit,
    failures: Keyed<K>,
    blocked: Mutex<HashMap<K, Block>>,
    /// Whether blocks double (accounts: guessing must get slower and slower) or stay one
    /// replenish period (addresses: an office behind one address must not be locked out for
    /// long by one misbehaving client).
    backoff: bool,
}

#[derive(Debug, Clone, Copy)]
struct Block {
    until: Instant,
    /// Blocks earned in a row: the next one lasts `replenish_every * 2^strikes`.
    strikes: u32,
}

impl<K: Clone + Hash + Eq> FailureLimiter<K> {
    pub(crate) fn new(limit: Limit) -> Self {
        FailureLimiter { limit, failures: keyed(limit), blocked: Mutex::new(HashMap::new()), backoff: false }
    }

    pub(crate) fn with_backoff(limit: Limit) -> Self {
        FailureLimiter { backoff: true, ..FailureLimiter::new(limit) }
    }

    pub(crate) fn refused(&self, key: &K) -> Option<Refusal> {
        let blocked = self.blocked.lock().ok()?;
        let block = blocked.get(key)?;
        let wait = block.until.checked_duration_since(Instant::now())?;
        Some(Refusal { wait, limit: self.limit })
    }

    pub(crate) fn record_failure(&self, key: K, clock: &DefaultClock) {
        // Blocked as soon as the burst is used up, so the next request is refused before it
        // costs anything; for at least one replenish period, or as long as governor says.
        let wait = match self.failures.check_key(&key) {
            Ok(snapshot) if snapshot.remaining_burst_capacity() == 0 => Some(self.limit.replenish_every),
            Ok(_) => None,
            Err(not_until) => Some(not_until.wait_time_from(clock.now())),
        };
        let Ok(mut blocked) = self.blocked.lock() else { return };
        let now = Instant::now();
        if blocked.len() >= PRUNE_EARLY_AT {
            blocked.retain(|_, block| block.until + BACKOFF_MEMORY > now);
        }
        let remembered = blocked.get(&key).filter(|b| b.until + BACKOFF_MEMORY > now).copied();
        let strikes = match (wait, remembered) {
            (Some(_), Some(previous)) if self.backoff => previous.strikes.saturating_add(1),
            (Some(_), _) => 0,
            (None, _) => return,
        };
        let backoff = self.limit.replenish_every.saturating_mul(1u32 << strikes.min(16)).min(MAX_BACKOFF);
        let wait = wait.unwrap_or_default().max(backoff);
        blocked.insert(key, Block { until: now + wait, strikes });
        drop(blocked);
        if self.failures.len() >= PRUNE_EARLY_AT {
            self.failures.retain_recent();
        }
    }

    pub(crate) fn prune(&self) {
        self.failures.retain_recent();
        self.failures.shrink_to_fit();
        if let Ok(mut blocked) = self.blocked.lock() {
            let now = Instant::now();
            blocked.retain(|_, block| block.until + BACKOFF_MEMORY > now);
            blocked.shrink_to_fit();
        }
    }

    pub(crate) fn tracked(&self) -> usize {
        self.failures.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_blocks_double_while_failures_go_on_and_address_blocks_do_not() {
        let clock = DefaultClock::default();
        let limit = Limit::one_per(Duration::from_secs(20), 2);
        let accounts = FailureLimiter::with_backoff(limit);
        let addresses = FailureLimiter::new(limit);
        let mut account_waits = Vec::new();
        let mut address_waits = Vec::new();
        for _ in 0..5 {
            accounts.record_failure("victim", &clock);
            addresses.record_failure("192.0.2.1", &clock);
            account_waits.push(accounts.refused(&"victim").map(|r| r.wait.as_secs()));
            address_waits.push(addresses.refused(&"192.0.2.1").map(|r| r.wait.as_secs()));
        }
        // Burst 2: the first failure leaves one, the second blocks for 20 s, then 40, 80, 160.
        assert_eq!(account_waits[0], None);
        let blocked: Vec<u64> = account_waits[1..].iter().map(|w| w.unwrap_or(0)).collect();
        assert!(blocked[0] <= 20 && blocked[0] >= 19, "{blocked:?}");
        assert!(blocked.windows(2).all(|w| w[1] >= 2 * w[0] - 1), "{blocked:?}");
        assert!(address_waits[1..].iter().all(|w| w.is_some_and(|s| s <= 60)), "{address_waits:?}");
    }
}
