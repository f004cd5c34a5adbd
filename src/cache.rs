//! A small per-instance cache with a time to live and a bound in bytes: what the request
//! path keeps (the tenant registry's answers, verified access tokens, users' states) without
//! letting a flood of keys grow memory. The one cache type of the service.
//!
//! Why not moka: it was tried here (A/B on get-by-id, the hottest read): its bookkeeping on
//! every hit (recording reads for its admission policy, periodic housekeeping run inline) was
//! ~1.1% of the service's CPU, a third of the hardening's whole budget, for eviction
//! precision this cache does not need. A hit here is one read lock and a hash lookup. When
//! the bound is reached, expired entries go first and then everything: coarse, but the cache
//! only ever holds what a registry lookup can refill, and refusals upstream (malformed names,
//! per-address limits) keep floods of new keys from reaching it often.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::RwLock;
use std::time::{Duration, Instant};

pub struct BoundedCache<K, V> {
    entries: RwLock<Inner<K, V>>,
    ttl: Duration,
    max_bytes: usize,
    weigh: fn(&K, &V) -> usize,
}

struct Inner<K, V> {
    map: HashMap<K, (V, Instant, usize)>,
    bytes: usize,
}

impl<K: Eq + Hash, V: Clone> BoundedCache<K, V> {
    /// Entries live `ttl`; together they weigh at most `max_bytes` as `weigh` counts them.
    pub fn new(ttl: Duration, max_bytes: usize, weigh: fn(&K, &V) -> usize) -> Self {
        BoundedCache { entries: RwLock::new(Inner { map: HashMap::new(), bytes: 0 }), ttl, max_bytes, weigh }
    }

    /// A copy of the value under `key`, if it is there and younger than the time to live.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let entries = self.entries.read().ok()?;
        let (value, at, _) = entries.map.get(key)?;
        (at.elapsed() < self.ttl).then(|| value.clone())
    }

    pub fn insert(&self, key: K, value: V) {
        let weight = (self.weigh)(&key, &value);
        if weight > self.max_bytes {
            return;
        }
        let Ok(mut entries) = self.entries.write() else { return };
        if entries.bytes + weight > self.max_bytes {
            let ttl = self.ttl;
            entries.map.retain(|_, (_, at, _)| at.elapsed() < ttl);
            entries.bytes = entries.map.values().map(|(_, _, w)| w).sum();
            if entries.bytes + weight > self.max_bytes {
                entries.map.clear();
                entries.map.shrink_to_fit();
                entries.bytes = 0;
            }
        }
        if let Some((_, _, old)) = entries.map.insert(key, (value, Instant::now(), weight)) {
            entries.bytes -= old;
        }
        entries.bytes += weight;
    }

    pub fn remove(&self, key: &K) {
        if let Ok(mut entries) = self.entries.write()
            && let Some((_, _, weight)) = entries.map.remove(key)
        {
            entries.bytes -= weight;
        }
    }

    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.write() {
            entries.map.clear();
            entries.bytes = 0;
        }
    }

    /// Entries held and their weight in bytes.
    pub fn size(&self) -> (usize, usize) {
        self.entries.read().map(|e| (e.map.len(), e.bytes)).unwrap_or((0, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::ptr_arg)] // the weigher's type is `fn(&K, &V)`, and K is String here
    fn weigh(key: &String, _: &u32) -> usize {
        key.len()
    }

    #[test]
    fn holds_no_more_bytes_than_its_bound_and_forgets_after_the_ttl() {
        let cache = BoundedCache::new(Duration::from_millis(50), 100, weigh);
        for i in 0..1000 {
            cache.insert(format!("key-{i:06}"), i); // 10 bytes each
            assert!(cache.size().1 <= 100, "{:?}", cache.size());
        }
        assert_eq!(cache.get(&"key-000999".to_string()), Some(999));
        cache.insert("x".repeat(101), 1); // heavier than the whole bound: not kept
        assert_eq!(cache.get(&"x".repeat(101)), None);
        cache.insert("same".into(), 1);
        cache.insert("same".into(), 2);
        assert_eq!(cache.get(&"same".to_string()), Some(2));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(cache.get(&"same".to_string()), None);
        cache.insert("gone".into(), 3);
        cache.remove(&"gone".to_string());
        assert_eq!(cache.get("gone"), None);
        cache.clear();
        assert_eq!(cache.size(), (0, 0));
    }
}
