//! The live projector: a durable JetStream pull consumer that applies each
//! event to Redis and acknowledges only once Redis holds the change.
//!
//! * Batches: whatever is waiting (up to [`BATCH`]) is applied in one Redis
//!   pipeline, gaps are filled from the log, then every message of the
//!   batch is acknowledged on its own (`AckPolicy::Explicit`: an ack never
//!   covers messages another projector instance holds but has not applied,
//!   as `AckPolicy::All` would during a rollout). A crash between apply and
//!   ack means redelivery, which the stream versions turn into duplicates:
//!   counts never move twice.
//! * A flushed Redis (sentinel missing, seen atomically by the apply
//!   script) triggers a rebuild from Postgres; the unacked batch is then
//!   applied again (as duplicates or as the newest changes).
//!   An idle projector checks the sentinel every second, so a flush is
//!   repaired without waiting for the next event.
//! * NATS outages: the client reconnects by itself; any consumer or fetch
//!   error drops the message stream and re-opens it after a short backoff,
//!   resuming from the durable consumer's ack floor.

use crate::projection::{Applied, ProjectionError, RedisProjection};
use crate::rebuild::rebuild_with_stats;
use crate::stats::ProjectorStats;
use anyhow::Context as _;
use async_nats::jetstream::{self, consumer::pull};
use events::envelope::Envelope;
use events::store::EventStore;
use futures::{FutureExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Most messages applied per Redis round trip.
const BATCH: usize = 512;
/// How long JetStream waits for an ack before redelivering.
const ACK_WAIT: Duration = Duration::from_secs(10);
/// How often an idle projector checks that Redis still holds its sentinel.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// The durable consumer name of a projection prefix: `projector_` plus the
/// prefix with every character JetStream does not allow in a name as `_`,
/// plus `_explicit` (its ack policy; a consumer's ack policy cannot change,
/// so the consumer of earlier versions, without the suffix, is left behind).
pub fn durable_name(prefix: &str) -> String {
    format!("{}_explicit", legacy_durable_name(prefix))
}

/// The consumer of versions that acknowledged with `AckPolicy::All`.
fn legacy_durable_name(prefix: &str) -> String {
    let clean: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("projector_{clean}")
}

/// The durable consumer every projector instance of `prefix` shares.
pub fn consumer_config(prefix: &str, subject_prefix: &str) -> pull::Config {
    pull::Config {
        durable_name: Some(durable_name(prefix)),
        filter_subject: format!("{subject_prefix}.>"),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: ACK_WAIT,
        max_ack_pending: 20_000,
        ..Default::default()
    }
}

/// Runs the projector until `shutdown`: consumes `<subject_prefix>.>` of
/// JetStream stream `stream_name` with the durable consumer
/// [`durable_name`]`(projection.prefix())` and applies every event to
/// `projection`. Rebuilds from `store` first if the sentinel is missing.
#[tracing::instrument(skip_all, fields(stream = %stream_name, prefix = %projection.prefix()))]
pub async fn run(
    store: EventStore,
    js: jetstream::Context,
    stream_name: String,
    subject_prefix: String,
    projection: RedisProjection,
    stats: Arc<ProjectorStats>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if !projection.has_sentinel().await? {
        tracing::info!("no projection sentinel in Redis: rebuilding from the log");
        rebuild_with_stats(&store, &projection, &stats).await?;
    }
    let config = consumer_config(projection.prefix(), &subject_prefix);
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        match consume(
            &store,
            &js,
            &stream_name,
            &config,
            &projection,
            &stats,
            &shutdown,
        )
        .await
        {
            Ok(()) => return Ok(()),
            Err(err) => {
                tracing::warn!(error = format!("{err:#}"), retry_in = ?backoff, "projector interrupted; resuming");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
    Ok(())
}

/// One session of consumption; returns `Ok` only on shutdown.
async fn consume(
    store: &EventStore,
    js: &jetstream::Context,
    stream_name: &str,
    config: &pull::Config,
    projection: &RedisProjection,
    stats: &ProjectorStats,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let stream = js
        .get_stream(stream_name)
        .await
        .context("opening the JetStream stream")?;
    let name = config.durable_name.clone().unwrap_or_default();
    let mut config = config.clone();
    if stream.consumer_info(&name).await.is_err() {
        // First start of this version: resume where the legacy consumer
        // (AckPolicy::All) had acknowledged, if there is one.
        let legacy = legacy_durable_name(projection.prefix());
        if let Ok(info) = stream.consumer_info(&legacy).await {
            let start_sequence = info.ack_floor.stream_sequence + 1;
            tracing::info!(
                legacy,
                start_sequence,
                "taking over from the legacy consumer (an operator with stream admin rights may remove it: `nats consumer rm`)"
            );
            config.deliver_policy =
                jetstream::consumer::DeliverPolicy::ByStartSequence { start_sequence };
        }
    }
    let consumer: jetstream::consumer::Consumer<pull::Config> = stream
        .get_or_create_consumer(&name, config)
        .await
        .context("creating the durable consumer")?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(BATCH)
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await
        .context("opening the message stream")?;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            next = messages.next() => next,
            _ = tokio::time::sleep(IDLE_CHECK) => {
                // Idle: a flush would otherwise go unnoticed until the next event.
                if !projection.has_sentinel().await? {
                    tracing::warn!("projection sentinel missing while idle: rebuilding from the log");
                    rebuild_with_stats(store, projection, stats).await?;
                }
                continue;
            }
        };
        match first {
            Some(message) => batch.push(message.map_err(|e| anyhow::anyhow!("receiving: {e}"))?),
            None => anyhow::bail!("the message stream ended"),
        }
        while batch.len() < BATCH {
            match messages.next().now_or_never() {
                Some(Some(Ok(message))) => batch.push(message),
                Some(Some(Err(e))) => anyhow::bail!("receiving: {e}"),
                _ => break,
            }
        }
        let events: Vec<Envelope> = batch
            .iter()
            .filter_map(|m| match Envelope::from_json(&m.payload) {
                Ok(event) => Some(event),
                Err(err) => {
                    tracing::error!(error = %err, subject = %m.subject, "not an event envelope: skipped");
                    None
                }
            })
            .collect();
        apply_all(store, projection, stats, &events).await?;
        for message in batch.drain(..) {
            message
                .ack()
                .await
                .map_err(|e| anyhow::anyhow!("acking: {e}"))?;
        }
    }
}

/// Applies a batch, filling gaps and rebuilding after a flush, until Redis
/// holds every event of it.
async fn apply_all(
    store: &EventStore,
    projection: &RedisProjection,
    stats: &ProjectorStats,
    events: &[Envelope],
) -> Result<(), ProjectionError> {
    loop {
        let results = projection.apply_batch(events, true).await?;
        let mut flushed = results.contains(&Applied::Flushed);
        if !flushed {
            for (event, result) in events.iter().zip(results) {
                let result = match result {
                    // Re-ask: an earlier gap of this batch may have filled it.
                    Applied::Gap { .. } => projection.apply(event, true).await?,
                    other => other,
                };
                if projection
                    .resolve(store, event, result, true, stats)
                    .await?
                    == Applied::Flushed
                {
                    flushed = true;
                    break;
                }
            }
        }
        if !flushed {
            return Ok(());
        }
        tracing::warn!("projection sentinel missing (Redis flushed?): rebuilding from the log");
        rebuild_with_stats(store, projection, stats).await?;
    }
}
