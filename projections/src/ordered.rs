//! Ordered apply: a `Gap` answer means an earlier version of the event's
//! stream is not in Redis yet. We refetch the missing versions from the
//! Postgres log (`read_stream`) and apply them first, then the event; a
//! later version is never applied before an earlier one.

use crate::projection::{Applied, ProjectionError, RedisProjection};
use crate::stats::ProjectorStats;
use events::envelope::Envelope;
use events::store::EventStore;

impl RedisProjection {
    /// Applies `event`, first filling any gap of its stream from the log.
    /// Returns what happened to `event` itself (never `Gap`).
    pub async fn apply_ordered(
        &self,
        store: &EventStore,
        event: &Envelope,
        check_sentinel: bool,
        stats: &ProjectorStats,
    ) -> Result<Applied, ProjectionError> {
        let first = self.apply(event, check_sentinel).await?;
        self.resolve(store, event, first, check_sentinel, stats)
            .await
    }

    /// Finishes an event whose first attempt answered `first` (from
    /// [`RedisProjection::apply`] or a pipelined batch).
    pub async fn resolve(
        &self,
        store: &EventStore,
        event: &Envelope,
        first: Applied,
        check_sentinel: bool,
        stats: &ProjectorStats,
    ) -> Result<Applied, ProjectionError> {
        let Applied::Gap { applied } = first else {
            stats.record(first, event);
            return Ok(first);
        };
        let missing = event.stream_version - applied - 1;
        tracing::debug!(stream = %event.stream, applied, version = event.stream_version, "gap: refetching from the log");
        stats
            .gaps_refetched
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        metrics::counter!(crate::stats::GAPS_REFETCHED).increment(1);
        let fill = store
            .read_stream(&event.stream, applied + 1, missing)
            .await?;
        for recorded in &fill {
            let earlier = Envelope::from(recorded);
            // Consecutive versions from the log: each one is next in line.
            let result = self.apply(&earlier, check_sentinel).await?;
            match result {
                Applied::Flushed => return Ok(Applied::Flushed),
                Applied::Gap { applied } => {
                    return Err(ProjectionError::Unfillable {
                        stream: event.stream.clone(),
                        applied,
                    })
                }
                other => stats.record(other, &earlier),
            }
        }
        match self.apply(event, check_sentinel).await? {
            Applied::Gap { applied } => Err(ProjectionError::Unfillable {
                stream: event.stream.clone(),
                applied,
            }),
            other => {
                stats.record(other, event);
                Ok(other)
            }
        }
    }
}
