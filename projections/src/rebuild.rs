//! Rebuild: wipe the projection's keys and replay the log from position 0
//! straight from Postgres (not through NATS), then set the sentinel.
//!
//! Events that arrive over NATS meanwhile are applied afterwards by the live
//! consumer: idempotency by stream version makes that safe, whichever of the
//! two paths applies an event first. A lock key keeps two rebuilds of one
//! prefix from interleaving; a live consumer that finds the sentinel gone
//! while another process rebuilds waits for it instead of starting its own.

use crate::keys;
use crate::projection::{Applied, ProjectionError, RedisProjection};
use crate::stats::ProjectorStats;
use events::envelope::Envelope;
use events::store::EventStore;
use redis::AsyncCommands;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Events read from Postgres and pipelined to Redis per round trip.
const BATCH: i64 = 5_000;
/// Lifetime of the rebuild lock (refreshed every batch).
const LOCK_TTL_MS: u64 = 60_000;

/// What a rebuild did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildReport {
    /// Keys deleted first.
    pub keys_deleted: usize,
    /// Events replayed.
    pub events: u64,
    /// Position of the last replayed event.
    pub up_to_position: i64,
    /// Wall time.
    pub elapsed: Duration,
}

/// Wipes `projection`'s keys and replays the whole log into it. If another
/// process is rebuilding the same prefix, waits for it to finish instead
/// (and reports zero events).
#[tracing::instrument(skip_all, fields(prefix = %projection.prefix()))]
pub async fn rebuild(
    store: &EventStore,
    projection: &RedisProjection,
) -> Result<RebuildReport, ProjectionError> {
    rebuild_with_stats(store, projection, &ProjectorStats::default()).await
}

/// [`rebuild`], counting into `stats`.
pub(crate) async fn rebuild_with_stats(
    store: &EventStore,
    projection: &RedisProjection,
    stats: &ProjectorStats,
) -> Result<RebuildReport, ProjectionError> {
    let started = Instant::now();
    let mut conn = projection.connection();
    let lock = keys::rebuilding(projection.prefix());
    let token = uuid::Uuid::new_v4().to_string();
    let opts = redis::SetOptions::default()
        .conditional_set(redis::ExistenceCheck::NX)
        .with_expiration(redis::SetExpiry::PX(LOCK_TTL_MS));
    let got: Option<String> = conn.set_options(&lock, &token, opts).await?;
    if got.is_none() {
        tracing::info!("another rebuild of this prefix is running; waiting for it");
        while !projection.has_sentinel().await? || conn.exists::<_, bool>(&lock).await? {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        return Ok(RebuildReport {
            keys_deleted: 0,
            events: 0,
            up_to_position: 0,
            elapsed: started.elapsed(),
        });
    }
    stats.rebuilds.fetch_add(1, Ordering::Relaxed);
    metrics::counter!(crate::stats::REBUILDS).increment(1);
    let keys_deleted = projection.reset().await?;
    let mut after = 0;
    let mut events = 0u64;
    // The next batch is read from Postgres while this one is applied in Redis.
    let read = |after: i64| {
        let store = store.clone();
        tokio::spawn(async move {
            let rows = store.read_all(after, BATCH).await?;
            Ok::<_, ProjectionError>(rows.iter().map(Envelope::from).collect::<Vec<_>>())
        })
    };
    let mut next = read(after);
    loop {
        let batch: Vec<Envelope> = next
            .await
            .map_err(|e| ProjectionError::Task(format!("reading the log: {e}")))??;
        let Some(last) = batch.last() else { break };
        after = last.position;
        next = read(after);
        let results = projection.apply_batch(&batch, false).await?;
        for (event, result) in batch.iter().zip(results) {
            match result {
                Applied::Gap { .. } => {
                    // A version still in an open transaction when read_all
                    // looked (or one behind it in this batch): fill from the stream.
                    let result = projection.apply(event, false).await?;
                    projection
                        .resolve(store, event, result, false, stats)
                        .await?;
                }
                other => stats.record(other, event),
            }
        }
        events += batch.len() as u64;
        let _: bool = conn.pexpire(&lock, LOCK_TTL_MS as i64).await?;
    }
    projection.set_sentinel().await?;
    let _: () = conn.del(&lock).await?;
    let report = RebuildReport {
        keys_deleted,
        events,
        up_to_position: after,
        elapsed: started.elapsed(),
    };
    tracing::info!(?report, "projection rebuilt from the log");
    Ok(report)
}
