//! The publisher: tails the log (gap-safe) and publishes every event to
//! JetStream, at least once, in position order.
//!
//! * Subject `<prefix>.<tenant>.<license>.<Type>`, header `Nats-Msg-Id` =
//!   event id: a republish after a crash falls in JetStream's duplicate
//!   window and is dropped, and consumers can dedupe by id beyond it.
//! * The checkpoint (last acknowledged position) is stored in Postgres after
//!   JetStream acknowledged the batch, so a restart republishes at most one
//!   batch.
//! * Single-active: a Postgres advisory lock per stream name; a second
//!   replica waits as a hot standby. Order on NATS is therefore the log's
//!   position order, which keeps per-license order.

use crate::metrics::Metrics;
use crate::service::envelope::{envelope, meta_str};
use anyhow::Context as _;
use async_nats::jetstream::{self, message::PublishMessage};
use events::store::{EventStore, RecordedEvent};
use futures::{FutureExt, StreamExt};
use sqlx::Connection;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Most events published before waiting for their acknowledgements.
const BATCH: usize = 512;

/// Where and how events are published.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// JetStream stream name (e.g. `LICENSE_EVENTS`).
    pub stream: String,
    /// Subject prefix (e.g. `license.events`).
    pub subject_prefix: String,
}

impl PublisherConfig {
    /// The checkpoint row of this publisher.
    pub fn checkpoint_name(&self) -> String {
        format!("publisher:{}", self.stream)
    }

    /// The NATS subject of an event.
    pub fn subject(&self, event: &RecordedEvent) -> String {
        let token = |s: Option<&str>, fallback: &str| -> String {
            match s {
                Some(v)
                    if !v.is_empty()
                        && v.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
                {
                    v.to_owned()
                }
                _ => fallback.to_owned(),
            }
        };
        format!(
            "{}.{}.{}.{}",
            self.subject_prefix,
            token(meta_str(event, "tenant_id"), "_system"),
            token(meta_str(event, "license_id"), "_"),
            token(Some(&event.event_type), "_")
        )
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
        duplicate_window: Duration::from_secs(600),
        max_age: Duration::from_secs(30 * 24 * 3600),
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow::anyhow!("creating JetStream stream {}: {e}", config.stream))?;
    Ok(())
}

/// Runs the publisher until `shutdown`. Waits for the single-active lock first.
pub async fn run(
    store: EventStore,
    js: jetstream::Context,
    config: PublisherConfig,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    ensure_stream(&js, &config).await?;
    // The lock lives as long as this connection.
    let mut lock_conn = store
        .pool()
        .acquire()
        .await
        .context("publisher lock connection")?
        .detach();
    loop {
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
            .bind(config.checkpoint_name())
            .fetch_one(&mut lock_conn)
            .await?;
        if got {
            break;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
    tracing::info!(stream = %config.stream, "publisher is the active instance");
    let result = publish_loop(&store, &js, &config, &metrics, &shutdown).await;
    let _ = lock_conn.close().await;
    result
}

async fn publish_loop(
    store: &EventStore,
    js: &jetstream::Context,
    config: &PublisherConfig,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let name = config.checkpoint_name();
    let mut checkpoint = store.load_checkpoint(&name).await?.unwrap_or(0);
    let mut events = store.subscribe(checkpoint);
    metrics.set_subscription("publisher", events.stats());
    let mut batch: Vec<RecordedEvent> = Vec::with_capacity(BATCH);
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
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
                    metrics.publish_errors.inc();
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
        metrics.published.add(batch.len() as u64);
        metrics.observe_publish_lag(&batch);
        checkpoint = last;
        store.save_checkpoint(&name, checkpoint).await?;
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
        let payload = serde_json::to_vec(&envelope(event))?;
        let publish = PublishMessage::build()
            .payload(payload.into())
            .message_id(event.event_id.to_string());
        acks.push(js.send_publish(config.subject(event), publish).await?);
    }
    for ack in acks {
        ack.await?;
    }
    Ok(())
}
