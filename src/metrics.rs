//! Prometheus metrics through the `metrics` facade and
//! `metrics-exporter-prometheus`. Code that observes something records it
//! where it happens (`metrics::counter!(metrics::ACQUIRES).increment(1)`),
//! in whatever crate: the event store counts appends, the projector its
//! projected events. This module names the service's metrics, installs the
//! process-wide recorder once, and renders the text exposition for
//! `/metrics` (refreshing the gauges that are read at scrape time: the
//! log's head and each log subscription's cursor and stall).
//!
//! Must not: hold per-request state, or put unbounded label values (user
//! ids, session ids) on a metric.

use events::store::SubscriptionStats;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};

pub use events::store::APPENDED_TOTAL as EVENTS_APPENDED;
pub use events::store::STREAM_LOCKS_TOTAL as STREAM_LOCKS;
pub use publisher::{PUBLISHED, PUBLISH_ERRORS, PUBLISH_LAG};
/// Acquires that took a seat.
pub const ACQUIRES: &str = "ledger_acquires_total";
/// Acquires that returned an existing session.
pub const ACQUIRES_EXISTING: &str = "ledger_acquires_existing_total";
/// Acquires turned away.
pub const DENIALS: &str = "ledger_denials_total";
/// Acquires that joined a license's queue.
pub const QUEUED: &str = "ledger_queued_total";
/// Heartbeats recorded.
pub const HEARTBEATS: &str = "ledger_heartbeats_total";
/// Sessions released.
pub const RELEASES: &str = "ledger_releases_total";
/// Expired sessions revived by a heartbeat inside the policy's revive window.
pub const REVIVALS: &str = "ledger_revivals_total";
/// Sessions expired by the reaper.
pub const EXPIRIES: &str = "ledger_expiries_total";
/// License tokens minted and recorded.
pub const TOKENS_MINTED: &str = "ledger_tokens_minted_total";
/// Signing failures.
pub const SIGN_ERRORS: &str = "ledger_sign_errors_total";
/// Licenses whose reaping failed in a sweep (the sweep goes on).
pub const REAP_ERRORS: &str = "ledger_reap_errors_total";
/// Signer messages that did not match the log (forged or altered): nothing minted.
pub const SIGN_REJECTED: &str = "ledger_sign_rejected_total";
/// Command latency, label `op` = acquire | heartbeat | release.
pub const REQUEST_DURATION: &str = "ledger_request_duration_seconds";
/// Highest committed position of the log.
pub const LOG_HEAD: &str = "ledger_log_head_position";
/// Last position handled by a log consumer (label `consumer`).
pub const CONSUMER_POSITION: &str = "ledger_consumer_position";
/// Positions a log consumer is behind the head (label `consumer`).
pub const CONSUMER_LAG: &str = "ledger_consumer_lag_positions";
/// Time a log consumer has waited on an open transaction (label `consumer`).
pub const CONSUMER_STALLED: &str = "ledger_consumer_stalled_seconds";

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The process-wide recorder and the log subscriptions exported at scrape time.
struct Registry {
    handle: PrometheusHandle,
    subscriptions: Mutex<Vec<(String, Arc<SubscriptionStats>)>>,
}

static REGISTRY: OnceLock<Registry> = OnceLock::new();

fn registry() -> &'static Registry {
    REGISTRY.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.to_owned()), &BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Fails only when another recorder is installed; ours then sees nothing,
        // which the metrics test would catch.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed");
        }
        describe();
        Registry {
            handle,
            subscriptions: Mutex::default(),
        }
    })
}

/// Every counter with its help text; each is exported from the start (at 0).
const COUNTERS: [(&str, &str); 17] = [
    (
        EVENTS_APPENDED,
        "Events appended to the log by this process",
    ),
    (PUBLISHED, "Events published to JetStream"),
    (PUBLISH_ERRORS, "Failed JetStream publish attempts"),
    (ACQUIRES, "Acquires that took a seat"),
    (
        ACQUIRES_EXISTING,
        "Acquires that returned an existing session",
    ),
    (DENIALS, "Acquires turned away"),
    (QUEUED, "Acquires that joined a license's queue"),
    (HEARTBEATS, "Heartbeats recorded"),
    (RELEASES, "Sessions released"),
    (
        REVIVALS,
        "Expired sessions revived by a heartbeat inside the revive window",
    ),
    (EXPIRIES, "Sessions expired by the reaper"),
    (REAP_ERRORS, "Licenses whose reaping failed in a sweep"),
    (TOKENS_MINTED, "License tokens minted"),
    (
        STREAM_LOCKS,
        "Commands that lost the optimistic race twice and locked their stream",
    ),
    (SIGN_ERRORS, "Signing failures"),
    (
        SIGN_REJECTED,
        "Signer messages that did not match the log: nothing minted",
    ),
    (
        crate::workers::checkpoint::REFUSED_TOTAL,
        "Checkpoints refused: the database lost checkpoint rows the checkpoint directory holds",
    ),
];

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    for (name, help) in COUNTERS {
        describe_counter!(name, help);
        metrics::counter!(name).absolute(0);
    }
    describe_gauge!(
        PUBLISH_LAG,
        Unit::Seconds,
        "Commit-to-publish delay of the last batch"
    );
    describe_histogram!(REQUEST_DURATION, Unit::Seconds, "Command latency");
    describe_gauge!(LOG_HEAD, "Highest committed position");
    describe_gauge!(CONSUMER_POSITION, "Last position handled by a log consumer");
    describe_gauge!(CONSUMER_LAG, "Positions behind the head");
    describe_gauge!(
        CONSUMER_STALLED,
        Unit::Seconds,
        "Time waiting on an open transaction"
    );
}

/// Installs the recorder (once per process; later calls do nothing).
pub fn install() {
    registry();
}

/// Exports a log subscription's cursor, lag and stall as `consumer = name`.
pub fn watch_subscription(name: &str, stats: Arc<SubscriptionStats>) {
    let mut subs = registry()
        .subscriptions
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    subs.retain(|(n, _)| n != name);
    subs.push((name.to_owned(), stats));
}

/// The Prometheus text exposition. `head` is the log's highest position.
pub fn render(head: Option<i64>) -> String {
    let registry = registry();
    if let Some(head) = head {
        metrics::gauge!(LOG_HEAD).set(head as f64);
    }
    let subs = registry
        .subscriptions
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    for (name, stats) in subs.iter() {
        let consumer = name.clone();
        let cursor = stats.cursor.load(Ordering::Relaxed);
        metrics::gauge!(CONSUMER_POSITION, "consumer" => consumer.clone()).set(cursor as f64);
        if let Some(head) = head {
            metrics::gauge!(CONSUMER_LAG, "consumer" => consumer.clone())
                .set((head - cursor).max(0) as f64);
        }
        let since = stats.stalled_since_ms.load(Ordering::Relaxed);
        let stalled = if since > 0 {
            (chrono::Utc::now().timestamp_millis() - since).max(0) as f64 / 1e3
        } else {
            0.0
        };
        metrics::gauge!(CONSUMER_STALLED, "consumer" => consumer).set(stalled);
    }
    drop(subs);
    registry.handle.render()
}

/// Records one command's latency.
pub fn observe_latency(op: &'static str, elapsed: std::time::Duration) {
    metrics::histogram!(REQUEST_DURATION, "op" => op).record(elapsed.as_secs_f64());
}
