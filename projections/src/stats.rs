//! [`ProjectorStats`]: the projector's counters. Kept as atomics for
//! callers that wait on them (tests, the lag benchmark) and recorded through
//! the `metrics` facade as they move, so `/metrics` of a projector process
//! exports them.

use crate::projection::Applied;
use events::envelope::Envelope;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Events applied to the Redis projection.
pub const PROJECTED: &str = "ledger_events_projected_total";
/// Redelivered or duplicate events skipped by stream version.
pub const DUPLICATES: &str = "ledger_projection_duplicates_total";
/// Stream gaps filled from the Postgres log.
pub const GAPS_REFETCHED: &str = "ledger_projection_gaps_refetched_total";
/// Rebuilds of the projection from the log.
pub const REBUILDS: &str = "ledger_projection_rebuilds_total";
/// Log position of the newest projected event.
pub const POSITION: &str = "ledger_projector_position";
/// Commit-to-Redis lag of the newest projected event, seconds.
pub const LAG: &str = "ledger_projection_lag_seconds";

/// Lag histogram resolution: one bucket per millisecond up to this (the last
/// bucket counts everything slower).
const LAG_BUCKETS_MS: usize = 10_000;

/// Live counters of a projector (shared with the `/metrics` handler).
#[derive(Debug)]
pub struct ProjectorStats {
    /// Events whose change was applied to Redis.
    pub events_projected: AtomicU64,
    /// Events skipped because their stream version was already applied.
    pub duplicates_skipped: AtomicU64,
    /// Gaps filled by refetching a stream from the log.
    pub gaps_refetched: AtomicU64,
    /// Rebuilds from the log (startup without sentinel, flush detected, `--rebuild`).
    pub rebuilds: AtomicU64,
    /// Global position of the newest event handled.
    pub last_position: AtomicI64,
    /// Milliseconds between the newest handled event's commit and its projection.
    pub lag_ms: AtomicI64,
    /// Per applied event: commit-to-Redis lag, one bucket per millisecond.
    lag_histogram: Vec<AtomicU64>,
}

impl Default for ProjectorStats {
    fn default() -> Self {
        Self {
            events_projected: AtomicU64::new(0),
            duplicates_skipped: AtomicU64::new(0),
            gaps_refetched: AtomicU64::new(0),
            rebuilds: AtomicU64::new(0),
            last_position: AtomicI64::new(0),
            lag_ms: AtomicI64::new(0),
            lag_histogram: (0..=LAG_BUCKETS_MS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl ProjectorStats {
    /// Counts one handled event and moves position and lag.
    pub fn record(&self, applied: Applied, event: &Envelope) {
        match applied {
            Applied::Applied => {
                self.events_projected.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(PROJECTED).increment(1);
                let lag = (chrono::Utc::now() - event.recorded_at)
                    .num_milliseconds()
                    .clamp(0, LAG_BUCKETS_MS as i64);
                self.lag_histogram[lag as usize].fetch_add(1, Ordering::Relaxed);
            }
            Applied::Duplicate => {
                self.duplicates_skipped.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(DUPLICATES).increment(1);
            }
            Applied::Closed | Applied::Skipped => {}
            Applied::Gap { .. } | Applied::Flushed => return,
        }
        if self
            .last_position
            .fetch_max(event.position, Ordering::Relaxed)
            < event.position
        {
            let lag = chrono::Utc::now() - event.recorded_at;
            self.lag_ms
                .store(lag.num_milliseconds().max(0), Ordering::Relaxed);
            metrics::gauge!(POSITION).set(event.position as f64);
            metrics::gauge!(LAG).set(lag.num_milliseconds().max(0) as f64 / 1000.0);
        }
    }

    /// The `q` quantile (0..=1) of the per-event commit-to-Redis lag in ms
    /// since the last [`ProjectorStats::clear_lag`] (`None`: no events).
    pub fn lag_quantile_ms(&self, q: f64) -> Option<u64> {
        let counts: Vec<u64> = self
            .lag_histogram
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (ms, n) in counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(ms as u64);
            }
        }
        Some(LAG_BUCKETS_MS as u64)
    }

    /// Forgets the lag histogram (e.g. after a benchmark's warm-up).
    pub fn clear_lag(&self) {
        for bucket in &self.lag_histogram {
            bucket.store(0, Ordering::Relaxed);
        }
    }
}
