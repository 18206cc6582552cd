//! The publisher: tails the log (gap-safe) and publishes every event to
//! JetStream, at least once, in position order.
//!
//! * Subject `<prefix>.<tenant>.<license>.<Type>`, header `Nats-Msg-Id` =
//!   event id: a republish after a crash falls in JetStream's duplicate
//!   window and is dropped, and consumers can dedupe by id beyond it.
//! * The checkpoint (last acknowledged position) is stored in Postgres after
//!   JetStream acknowledged the batch, at most [`CHECKPOINT_EVERY`] later, so
//!   a restart republishes at most that long's events and one batch.
//! * Single-active: a Postgres advisory lock per stream name; a second
//!   replica waits as a hot standby. The active one checks its lock's
//!   connection every [`LOCK_CHECK`] and stops when it is gone. Order on NATS is therefore the log's
//!   position order, which keeps per-license order.
//!
//! Its own crate so that every consumer's tests (the projector's, the
//! service's) run the real publisher without depending on the service.
//!
//! Must not: decide anything, or publish an event that is not committed.

use anyhow::Context as _;
use async_nats::jetstream::{self, message::PublishMessage};
use events::envelope::Envelope;
use events::store::SubscriptionStats;
use events::store::{EventStore, RecordedEvent, SingletonLock};
use futures::{FutureExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Events published to JetStream.
pub const PUBLISHED: &str = "ledger_events_published_total";
/// Failed JetStream publish attempts (retried).
pub const PUBLISH_ERRORS: &str = "ledger_publish_errors_total";
/// Commit-to-publish delay of the newest event of the last batch, seconds.
pub const PUBLISH_LAG: &str = "ledger_publish_lag_seconds";

/// How often the active publisher checks that it still holds its lock.
pub const LOCK_CHECK: Duration = Duration::from_secs(2);

/// Most events published before waiting for their acknowledgements.
const BATCH: usize = 512;

/// Longest the stored checkpoint trails the last acknowledged batch. Storing
/// it after every batch cost a statement and a durable commit per batch, on
/// the acquire path's critical chain; a restart republishes what it missed,
/// and JetStream drops those repeats (their message ids are the event ids).
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// JetStream drops a republished message id within this window.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(600);

/// Where and how events are published.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// JetStream stream name (e.g. `LICENSE_EVENTS`).
    pub stream: String,
    /// Subject prefix (e.g. `license.events`).
    pub subject_prefix: String,
}

impl PublisherConfig {
    /// The checkpoint row (and single-active lock) of this publisher.
    pub fn checkpoint_name(&self) -> String {
        format!("publisher:{}", self.stream)
    }
}

/// Creates the JetStream stream when it is missing.
pub async fn ensure_stream(
    js: &jetstream::Context,
    config: &PublisherConfig,
) -> anyhow::Result<()> {
    js.get_or_create_stream(jetstream::stream::Config {
        name: config.stream.clone(),
        subjects: vec![format!("{}.>", config.subject_prefix)],
        duplicate_window: DUPLICATE_WINDOW,
        max_age: Duration::from_secs(30 * 24 * 3600),
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow::anyhow!("creating JetStream stream {}: {e}", config.stream))?;
    Ok(())
}

/// Runs the publisher until `shutdown`. Waits for the single-active lock
/// first. `watch` receives the live counters of its log subscription (for
/// metrics) each time it starts tailing.
pub async fn run(
    store: EventStore,
    js: jetstream::Context,
    config: PublisherConfig,
    watch: impl Fn(Arc<SubscriptionStats>),
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    ensure_stream(&js, &config).await?;
    let lock = loop {
        if let Some(lock) = store
            .try_lock_singleton(&config.checkpoint_name())
            .await
            .context("taking the publisher's single-active lock")?
        {
            break lock;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    };
    tracing::info!(stream = %config.stream, "publisher is the active instance");
    let mut lock = lock;
    let result = publish_loop(&store, &js, &config, &watch, &mut lock, &shutdown).await;
    lock.release().await;
    result
}

async fn publish_loop(
    store: &EventStore,
    js: &jetstream::Context,
    config: &PublisherConfig,
    watch: &impl Fn(Arc<SubscriptionStats>),
    lock: &mut SingletonLock,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let name = config.checkpoint_name();
    let mut lease = tokio::time::interval(LOCK_CHECK);
    lease.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut checkpoint = store.load_checkpoint(&name).await?.unwrap_or(0);
    let mut events = store.subscribe(checkpoint);
    watch(events.stats());
    let mut batch: Vec<RecordedEvent> = Vec::with_capacity(BATCH);
    let (mut saved, mut saved_at) = (checkpoint, tokio::time::Instant::now());
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => {
                if checkpoint > saved {
                    store.save_checkpoint(&name, checkpoint).await?;
                }
                return Ok(());
            }
            _ = tokio::time::sleep_until(saved_at + CHECKPOINT_EVERY), if checkpoint > saved => {
                store.save_checkpoint(&name, checkpoint).await?;
                (saved, saved_at) = (checkpoint, tokio::time::Instant::now());
                continue;
            }
            _ = lease.tick() => {
                // Leadership ends with the lock's connection: stop publishing
                // (the supervisor restarts this worker as a standby).
                lock.check().await.context("lost the publisher's single-active lock")?;
                continue;
            }
            next = events.next() => next,
        };
        match first {
            Some(event) => batch.push(event?),
            None => anyhow::bail!("the log subscription ended"),
        }
        while batch.len() < BATCH {
            match events.next().now_or_never() {
                Some(Some(event)) => batch.push(event?),
                _ => break,
            }
        }
        let mut delay = Duration::from_millis(100);
        loop {
            match publish_batch(js, config, &batch).await {
                Ok(()) => break,
                Err(err) => {
                    metrics::counter!(PUBLISH_ERRORS).increment(1);
                    tracing::warn!(error = %err, retry_in = ?delay, "publishing to JetStream failed; retrying the batch");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        let last = batch.last().map(|e| e.position).unwrap_or(checkpoint);
        metrics::counter!(PUBLISHED).increment(batch.len() as u64);
        let lag = chrono::Utc::now() - batch.last().map_or(chrono::Utc::now(), |e| e.recorded_at);
        metrics::gauge!(PUBLISH_LAG).set(lag.num_microseconds().unwrap_or(0) as f64 / 1e6);
        checkpoint = last;
        if saved_at.elapsed() >= CHECKPOINT_EVERY {
            store.save_checkpoint(&name, checkpoint).await?;
            (saved, saved_at) = (checkpoint, tokio::time::Instant::now());
        }
        batch.clear();
    }
}

/// Publishes a batch and waits for every acknowledgement, in order.
async fn publish_batch(
    js: &jetstream::Context,
    config: &PublisherConfig,
    batch: &[RecordedEvent],
) -> anyhow::Result<()> {
    let mut acks = Vec::with_capacity(batch.len());
    for event in batch {
        let envelope = Envelope::from(event);
        let publish = PublishMessage::build()
            .payload(envelope.to_json().into())
            .message_id(event.event_id.to_string());
        acks.push(
            js.send_publish(envelope.subject(&config.subject_prefix), publish)
                .await?,
        );
    }
    for ack in acks {
        ack.await?;
    }
    Ok(())
}
