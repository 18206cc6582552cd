//! Reading the log: one stream by version, or everything by position.

use super::{EventStore, RecordedEvent, StoreError};
use sqlx::postgres::PgRow;
use sqlx::Row;

/// Columns of [`RecordedEvent`], in the order [`from_row`] reads them.
pub(super) const COLUMNS: &str =
    "position, event_id, stream_id, stream_version, event_type, schema_version, \
     data, metadata, recorded_at, prev_hash, hash";

/// Maps a row selected with [`COLUMNS`].
pub(super) fn from_row(row: &PgRow) -> Result<RecordedEvent, sqlx::Error> {
    Ok(RecordedEvent {
        position: row.try_get("position")?,
        event_id: row.try_get("event_id")?,
        stream_id: row.try_get("stream_id")?,
        stream_version: row.try_get("stream_version")?,
        event_type: row.try_get("event_type")?,
        schema_version: row.try_get("schema_version")?,
        data: row.try_get("data")?,
        metadata: row.try_get("metadata")?,
        recorded_at: row.try_get("recorded_at")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

/// One page of a stream: events of `stream` with version >= `from_version`,
/// in version order, at most `limit`, on `executor` (the pool, or the
/// connection holding a stream lock).
pub(super) async fn stream_page<'e, E: sqlx::PgExecutor<'e>>(
    executor: E,
    stream: &str,
    from_version: i64,
    limit: i64,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM events WHERE stream_id = $1 AND stream_version >= $2
         ORDER BY stream_version LIMIT $3"
    ))
    .bind(stream)
    .bind(from_version)
    .bind(limit.max(0))
    .fetch_all(executor)
    .await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

impl EventStore {
    /// Events of `stream` with version >= `from_version`, in version order,
    /// at most `limit`.
    #[tracing::instrument(skip(self))]
    pub async fn read_stream(
        &self,
        stream: &str,
        from_version: i64,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let events = stream_page(&self.pool, stream, from_version, limit).await?;
        self.events_read
            .fetch_add(events.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if let Some(last) = events.last() {
            self.heads
                .learn(stream, last.stream_version, &last.hash, false);
        }
        Ok(events)
    }

    /// Committed events with position > `after_position`, in position order,
    /// at most `limit`. A raw read: an event whose transaction is still open
    /// is not returned even if later positions are; tail with
    /// [`EventStore::subscribe`] to never skip such an event.
    #[tracing::instrument(skip(self))]
    pub async fn read_all(
        &self,
        after_position: i64,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2"
        ))
        .bind(after_position)
        .bind(limit.max(0))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// The stream's current version (`None`: no events).
    pub async fn stream_version(&self, stream: &str) -> Result<Option<i64>, StoreError> {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT version FROM streams WHERE stream_id = $1")
                .bind(stream)
                .fetch_optional(&self.pool)
                .await?;
        Ok(version.filter(|v| *v >= 0))
    }

    /// The highest committed position (0 when the log is empty).
    pub async fn head_position(&self) -> Result<i64, StoreError> {
        let head: Option<i64> = sqlx::query_scalar("SELECT max(position) FROM events")
            .fetch_one(&self.pool)
            .await?;
        Ok(head.unwrap_or(0))
    }

    /// A consumer's stored checkpoint (position of the last event it handled).
    pub async fn load_checkpoint(&self, name: &str) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT position FROM checkpoints WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Stores a consumer's checkpoint. It only moves forward.
    pub async fn save_checkpoint(&self, name: &str, position: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO checkpoints (name, position) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET position = GREATEST(checkpoints.position, EXCLUDED.position),
                                              updated_at = now()",
        )
        .bind(name)
        .bind(position)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
