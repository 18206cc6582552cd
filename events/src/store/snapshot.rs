//! Snapshots of folded states (`migrations/20261204000005_snapshots.sql`):
//! a cache that lets a long stream be loaded from its newest snapshot and
//! the events after it. Only [`crate::aggregate`] uses them.

use super::read::{from_row, COLUMNS};
use super::{EventStore, RecordedEvent, StoreError};
use serde_json::Value;
use sqlx::Row;
use std::sync::atomic::Ordering;

/// Snapshot a stream every this many events unless configured otherwise.
pub const DEFAULT_SNAPSHOT_EVERY: i64 = 1000;

/// A stored snapshot: the state after folding up to `version`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Stream version of the last event folded into `state`.
    pub version: i64,
    /// The state, as the aggregate serialised it.
    pub state: Value,
}

impl EventStore {
    /// Take a snapshot of a stream each time its version crosses a multiple
    /// of `every` (0: never; loads still use the snapshots they find).
    pub fn with_snapshot_every(mut self, every: i64) -> Self {
        self.snapshot_every = every.max(0);
        self
    }

    /// See [`EventStore::with_snapshot_every`].
    pub fn snapshot_every(&self) -> i64 {
        self.snapshot_every
    }

    /// Events this handle has read from streams so far (what folding cost).
    pub fn stream_events_read(&self) -> u64 {
        self.events_read.load(Ordering::Relaxed)
    }

    /// The newest snapshot of `stream` of `kind`, and the first page (at most
    /// `limit`) of the events after it (after version -1 when there is no
    /// snapshot), in one round trip.
    pub async fn read_with_snapshot(
        &self,
        stream: &str,
        kind: &str,
        limit: i64,
    ) -> Result<(Option<Snapshot>, Vec<RecordedEvent>), StoreError> {
        let rows = sqlx::query(&format!(
            "WITH s AS (SELECT version, state FROM snapshots WHERE stream_id = $1 AND kind = $2)
             SELECT (SELECT version FROM s) AS snap_version,
                    CASE WHEN e.position IS NULL OR e.n = 1 THEN (SELECT state FROM s) END AS snap_state,
                    e.*
             FROM (SELECT 1) AS one
             LEFT JOIN LATERAL (
                 SELECT {COLUMNS}, row_number() OVER (ORDER BY stream_version) AS n
                 FROM events
                 WHERE stream_id = $1 AND stream_version > coalesce((SELECT version FROM s), -1)
                 ORDER BY stream_version LIMIT $3
             ) AS e ON true"
        ))
        .bind(stream)
        .bind(kind)
        .bind(limit.max(0))
        .fetch_all(&self.pool)
        .await?;
        let mut snapshot = None;
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            if let (Some(version), Some(state)) = (
                row.try_get::<Option<i64>, _>("snap_version")?,
                row.try_get::<Option<Value>, _>("snap_state")?,
            ) {
                snapshot = Some(Snapshot { version, state });
            }
            if row.try_get::<Option<i64>, _>("position")?.is_some() {
                events.push(from_row(row)?);
            }
        }
        self.events_read
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        if let Some(last) = events.last() {
            self.heads
                .learn(stream, last.stream_version, &last.hash, false);
        }
        Ok((snapshot, events))
    }

    /// Stores `state` as the snapshot of `stream` at `version`, unless a
    /// newer one is stored already.
    pub async fn save_snapshot(
        &self,
        stream: &str,
        kind: &str,
        version: i64,
        state: &Value,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO snapshots (stream_id, kind, version, state) VALUES ($1, $2, $3, $4)
             ON CONFLICT (stream_id) DO UPDATE
             SET kind = EXCLUDED.kind, version = EXCLUDED.version, state = EXCLUDED.state,
                 taken_at = now()
             WHERE snapshots.version < EXCLUDED.version OR snapshots.kind <> EXCLUDED.kind",
        )
        .bind(stream)
        .bind(kind)
        .bind(version)
        .bind(state)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deletes every snapshot (they are rebuilt as streams are folded).
    pub async fn drop_snapshots(&self) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM snapshots")
            .execute(&self.pool)
            .await?
            .rows_affected())
    }
}
