//! Billing: seat-hours per tenant, folded from the published events.
//!
//! A `SeatAcquired` starts a seat, the session's `SeatReleased` or
//! `SessionExpired` ends it; a session's seat time is the end event's
//! `recorded_at` minus the acquire's. Events are deduplicated by
//! `event_id` (the `Nats-Msg-Id`), so a redelivery never bills twice.
//! [`consume`] is the JetStream side used by `examples/billing_consumer.rs`.

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer::pull};
use chrono::{DateTime, Utc};
use events::envelope::Envelope;
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;
use uuid::Uuid;

/// Microseconds in an hour.
const MICROS_PER_HOUR: f64 = 3_600_000_000.0;

/// The seat-time fold.
#[derive(Debug, Default, Clone)]
pub struct SeatHours {
    seen: HashSet<Uuid>,
    open: HashMap<String, (String, DateTime<Utc>)>,
    seat_micros: BTreeMap<String, i64>,
    closed: BTreeMap<String, u64>,
}

impl SeatHours {
    /// Folds one event; returns false for a duplicate (same event id).
    pub fn observe(&mut self, event: &Envelope) -> bool {
        if !self.seen.insert(event.event_id) {
            return false;
        }
        let session = event
            .data
            .get("session_id")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        let tenant = event
            .meta()
            .tenant_id
            .map_or_else(|| "_".to_owned(), |t| t.to_string());
        match (event.event_type.as_str(), session) {
            ("SeatAcquired", Some(session)) => {
                self.open
                    .entry(session)
                    .or_insert((tenant, event.recorded_at));
            }
            ("SeatReleased" | "SessionExpired", Some(session)) => {
                if let Some((tenant, start)) = self.open.remove(&session) {
                    let micros = (event.recorded_at - start).num_microseconds().unwrap_or(0);
                    *self.seat_micros.entry(tenant.clone()).or_default() += micros;
                    *self.closed.entry(tenant).or_default() += 1;
                }
            }
            _ => {}
        }
        true
    }

    /// Seat time of ended sessions per tenant, in microseconds (exact).
    pub fn seat_micros(&self) -> &BTreeMap<String, i64> {
        &self.seat_micros
    }

    /// Seat-hours of ended sessions per tenant.
    pub fn seat_hours(&self) -> BTreeMap<String, f64> {
        self.seat_micros
            .iter()
            .map(|(t, m)| (t.clone(), *m as f64 / MICROS_PER_HOUR))
            .collect()
    }

    /// Ended sessions per tenant.
    pub fn sessions_closed(&self) -> &BTreeMap<String, u64> {
        &self.closed
    }

    /// Sessions still holding a seat (not billed yet).
    pub fn open_sessions(&self) -> usize {
        self.open.len()
    }
}

/// Consumes `<subject_prefix>.>` of JetStream stream `stream` with durable
/// pull consumer `durable` (created if missing, delivering from the start),
/// acking each message after folding it. Returns after `until_idle` passes
/// without a message, or runs forever when `None`. Returns messages handled.
pub async fn consume(
    js: &jetstream::Context,
    stream: &str,
    subject_prefix: &str,
    durable: &str,
    until_idle: Option<Duration>,
    seat_hours: &mut SeatHours,
) -> anyhow::Result<u64> {
    let stream = js
        .get_stream(stream)
        .await
        .context("opening the JetStream stream")?;
    let consumer: jetstream::consumer::Consumer<pull::Config> = stream
        .get_or_create_consumer(
            durable,
            pull::Config {
                durable_name: Some(durable.to_owned()),
                filter_subject: format!("{subject_prefix}.>"),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ..Default::default()
            },
        )
        .await
        .context("creating the durable consumer")?;
    let wait = until_idle.unwrap_or(Duration::from_secs(30));
    let mut handled = 0u64;
    loop {
        let mut batch = consumer
            .batch()
            .max_messages(500)
            .expires(wait)
            .messages()
            .await
            .map_err(|e| anyhow::anyhow!("fetching: {e}"))?;
        let mut got = 0;
        while let Some(message) = batch.next().await {
            let message = message.map_err(|e| anyhow::anyhow!("receiving: {e}"))?;
            match Envelope::from_json(&message.payload) {
                Ok(event) => {
                    seat_hours.observe(&event);
                }
                Err(err) => tracing::warn!(error = %err, "not an event envelope: skipped"),
            }
            message
                .ack()
                .await
                .map_err(|e| anyhow::anyhow!("acking: {e}"))?;
            got += 1;
        }
        handled += got;
        if got == 0 && until_idle.is_some() {
            return Ok(handled);
        }
    }
}
