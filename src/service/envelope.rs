//! Between the typed catalogue and the log's rows: metadata, event ids and
//! decoding. Every event of a license carries `tenant_id` and `license_id`
//! in its metadata (the publisher builds NATS subjects from them).

use chrono::Utc;
use events::catalog::{CatalogError, LicenseEvent};
use events::ids::{LicenseId, ProductId, TenantId};
use events::store::{NewEvent, RecordedEvent};
use serde_json::{json, Map, Value};
use uuid::Uuid;

/// Who and what an event is about, stored as its metadata.
#[derive(Debug, Clone)]
pub struct EventContext {
    /// Tenant owning the license.
    pub tenant_id: TenantId,
    /// The license.
    pub license_id: LicenseId,
    /// The licensed product.
    pub product: ProductId,
    /// The acting user (`sub`), when a user acted.
    pub actor: Option<String>,
    /// The request id that caused the event.
    pub correlation_id: Option<String>,
}

impl EventContext {
    /// The metadata object.
    pub fn metadata(&self) -> Value {
        let mut m = Map::new();
        m.insert("tenant_id".into(), json!(self.tenant_id));
        m.insert("license_id".into(), json!(self.license_id));
        m.insert("product".into(), json!(self.product));
        if let Some(actor) = &self.actor {
            m.insert("actor".into(), json!(actor));
        }
        if let Some(c) = &self.correlation_id {
            m.insert("correlation_id".into(), json!(c));
        }
        Value::Object(m)
    }
}

/// A new event with a fresh, time-ordered id.
pub fn new_event(event: &LicenseEvent, metadata: &Value) -> NewEvent {
    new_event_with_id(Uuid::now_v7(), event, metadata)
}

/// A new event with a given id (deterministic ids make retries idempotent).
pub fn new_event_with_id(event_id: Uuid, event: &LicenseEvent, metadata: &Value) -> NewEvent {
    NewEvent {
        event_id,
        event_type: event.event_type().to_owned(),
        schema_version: event.schema_version(),
        data: event.data(),
        metadata: metadata.clone(),
    }
}

/// Decodes a stored event into the catalogue.
pub fn decode(recorded: &RecordedEvent) -> Result<LicenseEvent, CatalogError> {
    LicenseEvent::from_stored(
        &recorded.event_type,
        recorded.schema_version,
        &recorded.data,
    )
}

/// The JSON document published on NATS and handed to consumers.
pub fn envelope(recorded: &RecordedEvent) -> Value {
    json!({
        "event_id": recorded.event_id,
        "type": recorded.event_type,
        "schema_version": recorded.schema_version,
        "stream": recorded.stream_id,
        "stream_version": recorded.stream_version,
        "position": recorded.position,
        "recorded_at": recorded.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "data": recorded.data,
        "metadata": recorded.metadata,
    })
}

/// A metadata string field.
pub fn meta_str<'a>(recorded: &'a RecordedEvent, key: &str) -> Option<&'a str> {
    recorded.metadata.get(key).and_then(Value::as_str)
}

/// Seconds since the epoch, now.
pub fn now() -> chrono::DateTime<Utc> {
    events::store::hash::to_micros(Utc::now())
}
