//! Verification of the per-stream hash chains (tamper evidence).
//!
//! Reads the log stream by stream, in version order, recomputing every hash.
//! It reports where each stream first breaks: an edited event (hash
//! mismatch), a deleted or inserted one (version gap, broken `prev_hash`),
//! a reorder (positions not growing with versions), a truncated tail (the
//! stream head in `streams` no longer matches the last event). It streams
//! rows; memory does not grow with the log.

use super::hash::GENESIS;
use super::read::{from_row, COLUMNS};
use super::{EventStore, RecordedEvent, StoreError};
use futures::TryStreamExt;
use serde::Serialize;
use sqlx::Row;
use std::fmt;

/// Most breaks a report lists (the first of each stream).
const MAX_BREAKS: usize = 1000;

/// What is wrong at a break.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BreakKind {
    /// The stored hash is not the hash of the event's content: edited.
    HashMismatch,
    /// `prev_hash` is not the previous event's hash: something was removed or inserted before it.
    PrevHashMismatch,
    /// Versions are not contiguous: an event is missing (deleted) or doubled.
    VersionGap {
        /// The version that should come next.
        expected: i64,
    },
    /// The event's position is not above its predecessor's: reordered.
    PositionOrder,
    /// The stream head (`streams` row) disagrees with the last event: the tail was cut or forged.
    HeadMismatch {
        /// Version the head records.
        head_version: i64,
        /// Version of the last stored event (-1: none).
        last_version: i64,
    },
    /// Events exist for a stream the log never created.
    UnknownStream,
}

/// The first broken link of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Break {
    /// The stream.
    pub stream: String,
    /// Version of the event where the chain breaks.
    pub version: i64,
    /// Position of that event (the last event's for a head mismatch; 0 when none).
    pub position: i64,
    /// What is wrong.
    #[serde(flatten)]
    pub kind: BreakKind,
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match &self.kind {
            BreakKind::HashMismatch => "content does not match its hash (edited)".to_owned(),
            BreakKind::PrevHashMismatch => {
                "prev_hash does not match the previous event (removed or inserted)".to_owned()
            }
            BreakKind::VersionGap { expected } => {
                format!("version gap: expected version {expected}")
            }
            BreakKind::PositionOrder => {
                "position not above the previous version's (reordered)".to_owned()
            }
            BreakKind::HeadMismatch {
                head_version,
                last_version,
            } => {
                format!("stream head records version {head_version} but the last event is version {last_version}")
            }
            BreakKind::UnknownStream => "events of a stream the log never created".to_owned(),
        };
        write!(
            f,
            "stream {} version {} position {}: {}",
            self.stream, self.version, self.position, what
        )
    }
}

/// The result of a verification.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// Events checked.
    pub events: u64,
    /// Streams checked.
    pub streams: u64,
    /// Breaks found (the first of each stream), lowest position first.
    pub breaks: Vec<Break>,
}

impl VerifyReport {
    /// True when nothing is broken.
    pub fn is_intact(&self) -> bool {
        self.breaks.is_empty()
    }

    /// The break with the lowest position.
    pub fn first_break(&self) -> Option<&Break> {
        self.breaks.first()
    }
}

/// Checks one stream's events, fed in version order.
#[derive(Default)]
pub struct ChainChecker {
    stream: Option<String>,
    expected: i64,
    prev_hash: Vec<u8>,
    prev_position: i64,
    broken: bool,
}

impl ChainChecker {
    /// Feeds the next event (streams in any order, each in version order).
    /// Returns the stream's first break when this event is it.
    pub fn check(&mut self, event: &RecordedEvent) -> Option<Break> {
        if self.stream.as_deref() != Some(event.stream_id.as_str()) {
            *self = Self {
                stream: Some(event.stream_id.clone()),
                prev_hash: GENESIS.to_vec(),
                ..Self::default()
            };
        }
        let kind = if self.broken {
            None
        } else if event.stream_version != self.expected {
            Some(BreakKind::VersionGap {
                expected: self.expected,
            })
        } else if event.prev_hash != self.prev_hash {
            Some(BreakKind::PrevHashMismatch)
        } else if event.canonical().chain_hash(&event.prev_hash).as_slice() != event.hash.as_slice()
        {
            Some(BreakKind::HashMismatch)
        } else if event.position <= self.prev_position {
            Some(BreakKind::PositionOrder)
        } else {
            None
        };
        self.expected = event.stream_version + 1;
        self.prev_hash = event.hash.clone();
        self.prev_position = event.position;
        kind.map(|kind| {
            self.broken = true;
            Break {
                stream: event.stream_id.clone(),
                version: event.stream_version,
                position: event.position,
                kind,
            }
        })
    }
}

impl EventStore {
    /// Verifies one stream's chain and head.
    pub async fn verify_stream(&self, stream: &str) -> Result<VerifyReport, StoreError> {
        self.verify(Some(&[stream.to_owned()])).await
    }

    /// Verifies the chains and heads of `streams` (one pass).
    pub async fn verify_streams(&self, streams: &[String]) -> Result<VerifyReport, StoreError> {
        self.verify(Some(streams)).await
    }

    /// Verifies every stream's chain and head.
    pub async fn verify_all(&self) -> Result<VerifyReport, StoreError> {
        self.verify(None).await
    }

    #[tracing::instrument(skip(self))]
    async fn verify(&self, only: Option<&[String]>) -> Result<VerifyReport, StoreError> {
        let mut report = VerifyReport::default();
        let mut checker = ChainChecker::default();
        let mut current: Option<String> = None;
        {
            let sql = format!(
                "SELECT {COLUMNS} FROM events WHERE ($1::text[] IS NULL OR stream_id = ANY($1))
                 ORDER BY stream_id, stream_version"
            );
            let mut rows = sqlx::query(&sql).bind(only).fetch(&self.pool);
            while let Some(row) = rows.try_next().await? {
                let event = from_row(&row)?;
                report.events += 1;
                if current.as_deref() != Some(event.stream_id.as_str()) {
                    report.streams += 1;
                    current = Some(event.stream_id.clone());
                }
                if let Some(b) = checker.check(&event) {
                    if report.breaks.len() < MAX_BREAKS {
                        report.breaks.push(b);
                    }
                }
            }
        }
        for b in self.head_breaks(only).await? {
            if !report.breaks.iter().any(|known| known.stream == b.stream)
                && report.breaks.len() < MAX_BREAKS
            {
                report.breaks.push(b);
            }
        }
        report
            .breaks
            .sort_by_key(|b| (b.position, b.stream.clone()));
        Ok(report)
    }

    /// Streams whose head row disagrees with their last event, and events
    /// of streams without a head row.
    async fn head_breaks(&self, only: Option<&[String]>) -> Result<Vec<Break>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.stream_id, s.version AS head_version, coalesce(e.stream_version, -1) AS last_version,
                    coalesce(e.position, 0) AS position
             FROM streams s
             LEFT JOIN LATERAL (SELECT stream_version, position, hash FROM events
                                WHERE stream_id = s.stream_id ORDER BY stream_version DESC LIMIT 1) e ON true
             WHERE ($1::text[] IS NULL OR s.stream_id = ANY($1))
               AND (s.version <> coalesce(e.stream_version, -1) OR (e.hash IS NOT NULL AND s.last_hash <> e.hash))",
        )
        .bind(only)
        .fetch_all(&self.pool)
        .await?;
        let mut breaks = Vec::with_capacity(rows.len());
        for row in rows {
            let head_version: i64 = row.try_get("head_version")?;
            let last_version: i64 = row.try_get("last_version")?;
            breaks.push(Break {
                stream: row.try_get("stream_id")?,
                version: last_version.max(head_version),
                position: row.try_get("position")?,
                kind: BreakKind::HeadMismatch {
                    head_version,
                    last_version,
                },
            });
        }
        let orphans = sqlx::query(
            "SELECT stream_id, min(stream_version) AS version, min(position) AS position FROM events e
             WHERE ($1::text[] IS NULL OR stream_id = ANY($1))
               AND NOT EXISTS (SELECT 1 FROM streams s WHERE s.stream_id = e.stream_id)
             GROUP BY stream_id",
        )
        .bind(only)
        .fetch_all(&self.pool)
        .await?;
        for row in orphans {
            breaks.push(Break {
                stream: row.try_get("stream_id")?,
                version: row.try_get("version")?,
                position: row.try_get("position")?,
                kind: BreakKind::UnknownStream,
            });
        }
        Ok(breaks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// A valid chain of `n` events in one stream.
    fn chain(n: usize) -> Vec<RecordedEvent> {
        let mut prev = GENESIS.to_vec();
        (0..n)
            .map(|i| {
                let mut e = RecordedEvent {
                    position: (i as i64 + 1) * 3,
                    event_id: uuid::Uuid::from_u128(i as u128 + 1),
                    stream_id: "license-x".into(),
                    stream_version: i as i64,
                    event_type: "HeartbeatRecorded".into(),
                    schema_version: 1,
                    data: json!({ "n": i, "s": "abc" }),
                    metadata: json!({ "tenant_id": "t" }),
                    recorded_at: chrono::DateTime::from_timestamp_micros(
                        1_700_000_000_000_000 + i as i64,
                    )
                    .unwrap(),
                    prev_hash: prev.clone(),
                    hash: vec![],
                };
                let hash = e.canonical().chain_hash(&prev).to_vec();
                e.hash = hash;
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    fn first_break(events: &[RecordedEvent]) -> Option<Break> {
        let mut checker = ChainChecker::default();
        events.iter().find_map(|e| checker.check(e))
    }

    #[test]
    fn an_intact_chain_has_no_break() {
        assert_eq!(first_break(&chain(20)), None);
    }

    proptest! {
        /// Any edit of one event's content, any deletion and any swap of two
        /// events is caught, at or before the place it happened.
        #[test]
        fn any_single_tampering_is_caught(n in 2usize..30, at in 0usize..30, kind in 0u8..4, value in any::<i64>()) {
            let mut events = chain(n);
            let at = at % n;
            match kind {
                0 => events[at].data = json!({ "n": value, "s": "abc" }),
                1 => { events.remove(at); if at == n - 1 { events.push(events[at - 1].clone()); } }
                2 => { let j = (at + 1) % n; events.swap(at, j); }
                _ => events[at].metadata = json!({ "tenant_id": format!("t{value}") }),
            }
            if kind == 0 && value == at as i64 {
                return Ok(()); // the edit wrote the original value back
            }
            let b = first_break(&events);
            prop_assert!(b.is_some(), "tampering kind {kind} at {at} of {n} not caught");
            prop_assert!(b.unwrap().version <= at as i64 + 1);
        }
    }
}
