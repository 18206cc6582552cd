//! The limiter's key table: governor's dashmap store with a ceiling on the
//! number of keys (see the parent module's "Memory" paragraph).

use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::StateStore;
use std::sync::atomic::{AtomicBool, Ordering};

/// Governor's dashmap store with a ceiling on the number of keys.
pub(super) struct BoundedStore {
    pub(super) map: DashMapStateStore<String>,
    pub(super) max_keys: usize,
    pub(super) overflow: String,
    /// Whether the "table full" warning was logged since the last prune.
    pub(super) warned_full: AtomicBool,
}

impl StateStore for BoundedStore {
    type Key = String;

    fn measure_and_replace<T, F, E>(&self, key: &String, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        // `contains_key` locks one shard; `len` (all shards) only for new keys.
        let key = if self.map.contains_key(key) || self.map.len() < self.max_keys {
            key
        } else {
            if !self.warned_full.swap(true, Ordering::Relaxed) {
                tracing::warn!("rate-limit table full; new keys share the overflow bucket");
            }
            &self.overflow
        };
        self.map.measure_and_replace(key, f)
    }
}

impl ShrinkableKeyedStateStore<String> for BoundedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        self.map.retain_recent(drop_below);
        self.warned_full.store(false, Ordering::Relaxed);
    }

    fn shrink_to_fit(&self) {
        self.map.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
