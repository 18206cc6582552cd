//! Prometheus metrics, rendered as text at `/metrics`. Plain atomics: the
//! hot paths only increment counters and histogram buckets.

use events::store::{RecordedEvent, SubscriptionStats};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// A latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; 12],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, bound) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {}",
                self.buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum{{{labels}}} {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// Every metric of the process.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Events appended by this process's commands.
    pub events_appended: Counter,
    /// Events published to JetStream.
    pub published: Counter,
    /// Failed publish attempts (retried).
    pub publish_errors: Counter,
    /// Seconds between an event's commit and its publication (last batch).
    pub publish_lag_micros: AtomicI64,
    /// Granted acquires (new sessions).
    pub acquires: Counter,
    /// Acquires that returned an existing session.
    pub acquires_existing: Counter,
    /// Denied acquires.
    pub denials: Counter,
    /// Heartbeats.
    pub heartbeats: Counter,
    /// Releases.
    pub releases: Counter,
    /// Sessions expired by the reaper.
    pub expiries: Counter,
    /// Tokens minted by the signer.
    pub tokens_minted: Counter,
    /// Signing failures.
    pub sign_errors: Counter,
    /// Acquire latency.
    pub acquire_latency: Histogram,
    /// Heartbeat latency.
    pub heartbeat_latency: Histogram,
    /// Release latency.
    pub release_latency: Histogram,
    subscriptions: Mutex<Vec<(String, Arc<SubscriptionStats>)>>,
    projector: Mutex<Option<Arc<projections::ProjectorStats>>>,
}

impl Metrics {
    /// Registers a log subscription whose cursor is exported as lag.
    pub fn set_subscription(&self, name: &str, stats: Arc<SubscriptionStats>) {
        let mut subs = self.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
        subs.retain(|(n, _)| n != name);
        subs.push((name.to_owned(), stats));
    }

    /// Exports the projector's counters too.
    pub fn set_projector(&self, stats: Arc<projections::ProjectorStats>) {
        *self.projector.lock().unwrap_or_else(|p| p.into_inner()) = Some(stats);
    }

    /// Records how long the newest event of a published batch waited.
    pub fn observe_publish_lag(&self, batch: &[RecordedEvent]) {
        if let Some(last) = batch.last() {
            let lag = chrono::Utc::now() - last.recorded_at;
            self.publish_lag_micros
                .store(lag.num_microseconds().unwrap_or(0), Ordering::Relaxed);
        }
    }

    /// The Prometheus text exposition. `head` is the log's highest position.
    pub fn render(&self, head: Option<i64>) -> String {
        let mut out = String::with_capacity(4096);
        let counters: [(&str, &str, &Counter); 11] = [
            (
                "ledger_events_appended_total",
                "Events appended by this process",
                &self.events_appended,
            ),
            (
                "ledger_events_published_total",
                "Events published to JetStream",
                &self.published,
            ),
            (
                "ledger_publish_errors_total",
                "Failed JetStream publish attempts",
                &self.publish_errors,
            ),
            (
                "ledger_acquires_total",
                "Acquires that took a seat",
                &self.acquires,
            ),
            (
                "ledger_acquires_existing_total",
                "Acquires that returned an existing session",
                &self.acquires_existing,
            ),
            (
                "ledger_denials_total",
                "Acquires turned away",
                &self.denials,
            ),
            (
                "ledger_heartbeats_total",
                "Heartbeats recorded",
                &self.heartbeats,
            ),
            ("ledger_releases_total", "Sessions released", &self.releases),
            (
                "ledger_expiries_total",
                "Sessions expired by the reaper",
                &self.expiries,
            ),
            (
                "ledger_tokens_minted_total",
                "License tokens minted",
                &self.tokens_minted,
            ),
            (
                "ledger_sign_errors_total",
                "Signing failures",
                &self.sign_errors,
            ),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.get()
            );
        }
        for (op, h) in [
            ("acquire", &self.acquire_latency),
            ("heartbeat", &self.heartbeat_latency),
            ("release", &self.release_latency),
        ] {
            let name = "ledger_request_duration_seconds";
            if op == "acquire" {
                let _ = writeln!(
                    out,
                    "# HELP {name} Command latency\n# TYPE {name} histogram"
                );
            }
            h.render(&mut out, name, &format!("op=\"{op}\""));
        }
        let lag = self.publish_lag_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "# HELP ledger_publish_lag_seconds Commit-to-publish delay of the last batch\n# TYPE ledger_publish_lag_seconds gauge\nledger_publish_lag_seconds {lag}");
        if let Some(head) = head {
            let _ = writeln!(out, "# HELP ledger_log_head_position Highest committed position\n# TYPE ledger_log_head_position gauge\nledger_log_head_position {head}");
        }
        let subs = self.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
        if !subs.is_empty() {
            let _ = writeln!(out, "# HELP ledger_consumer_position Last position handled by a log consumer\n# TYPE ledger_consumer_position gauge");
            let _ = writeln!(out, "# HELP ledger_consumer_lag_positions Positions behind the head\n# TYPE ledger_consumer_lag_positions gauge");
            let _ = writeln!(out, "# HELP ledger_consumer_stalled_seconds Time waiting on an open transaction\n# TYPE ledger_consumer_stalled_seconds gauge");
        }
        for (name, stats) in subs.iter() {
            let cursor = stats.cursor.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "ledger_consumer_position{{consumer=\"{name}\"}} {cursor}"
            );
            if let Some(head) = head {
                let _ = writeln!(
                    out,
                    "ledger_consumer_lag_positions{{consumer=\"{name}\"}} {}",
                    (head - cursor).max(0)
                );
            }
            let since = stats.stalled_since_ms.load(Ordering::Relaxed);
            let stalled = if since > 0 {
                (chrono::Utc::now().timestamp_millis() - since).max(0) as f64 / 1e3
            } else {
                0.0
            };
            let _ = writeln!(
                out,
                "ledger_consumer_stalled_seconds{{consumer=\"{name}\"}} {stalled}"
            );
        }
        if let Some(stats) = self
            .projector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            out.push_str(&stats.render_prometheus());
        }
        out
    }
}
