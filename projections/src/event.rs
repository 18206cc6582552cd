//! The event as the projector sees it: the published envelope, or a
//! [`RecordedEvent`] read from Postgres, in one shape.

use chrono::{DateTime, Utc};
use events::store::RecordedEvent;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

/// One event of the log, as published on NATS (the envelope JSON of
/// `docs/billing.md`) or read from Postgres.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ProjectedEvent {
    /// Unique id (also the NATS `Nats-Msg-Id`).
    pub event_id: Uuid,
    /// Type name (the catalogue's variant name).
    #[serde(rename = "type")]
    pub event_type: String,
    /// Schema version of `data`.
    pub schema_version: i32,
    /// Stream name (`license-<uuid>`, `session-<uuid>`, `checkpoints`).
    pub stream: String,
    /// Version in the stream (0-based).
    pub stream_version: i64,
    /// Global position in the log.
    pub position: i64,
    /// When the log recorded it.
    pub recorded_at: DateTime<Utc>,
    /// Payload.
    pub data: Value,
    /// Metadata (`tenant_id`, `license_id`, `product`, ...).
    #[serde(default)]
    pub metadata: Value,
}

impl ProjectedEvent {
    /// Parses a published envelope.
    pub fn from_envelope(payload: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(payload)
    }

    /// A metadata string field.
    pub fn meta_str(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).and_then(Value::as_str)
    }
}

impl From<&RecordedEvent> for ProjectedEvent {
    fn from(e: &RecordedEvent) -> Self {
        Self {
            event_id: e.event_id,
            event_type: e.event_type.clone(),
            schema_version: e.schema_version,
            stream: e.stream_id.clone(),
            stream_version: e.stream_version,
            position: e.position,
            recorded_at: e.recorded_at,
            data: e.data.clone(),
            metadata: e.metadata.clone(),
        }
    }
}

impl From<RecordedEvent> for ProjectedEvent {
    fn from(e: RecordedEvent) -> Self {
        Self::from(&e)
    }
}
