//! The one wire shape of an event outside Postgres: what the publisher puts
//! on NATS, what the signer, the token waiters, the projector and billing
//! consumers read back, and what `ledger export` writes line by line.
//!
//! Owns [`Envelope`] (serialize and deserialize, `From<&RecordedEvent>`),
//! the typed view of an event's metadata ([`Metadata`]: tenant, license,
//! product, actor, correlation id — written by commands, read by everyone
//! who routes events) and the NATS subject an event is published on
//! ([`Envelope::subject`]).
//!
//! `metadata` and `data` stay raw JSON inside the envelope because the hash
//! chain commits to their exact bytes; readers go through [`Envelope::event`]
//! and [`Envelope::meta`], never by walking the JSON themselves.
//!
//! Must not: do I/O, or decide anything.

use crate::catalog::{CatalogError, LicenseEvent};
use crate::ids::{LicenseId, ProductId, TenantId};
use crate::store::{hash, NewEvent, RecordedEvent};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// One event of the log, as published on NATS and exported by `ledger`.
///
/// Field names are part of the public contract (`docs/billing.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique id (also the NATS `Nats-Msg-Id`, the dedupe key).
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
    /// Payload (without the type tag).
    pub data: Value,
    /// Metadata (see [`Metadata`]).
    #[serde(default)]
    pub metadata: Value,
    /// Hex chain hash of the stream's previous event.
    #[serde(default)]
    pub prev_hash: String,
    /// Hex chain hash of this event.
    #[serde(default)]
    pub hash: String,
}

impl From<&RecordedEvent> for Envelope {
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
            prev_hash: hex::encode(&e.prev_hash),
            hash: hex::encode(&e.hash),
        }
    }
}

impl From<RecordedEvent> for Envelope {
    fn from(e: RecordedEvent) -> Self {
        Self::from(&e)
    }
}

/// Why a payload is not an envelope.
#[derive(Debug, thiserror::Error)]
#[error("not an event envelope: {0}")]
pub struct EnvelopeError(#[from] serde_json::Error);

impl Envelope {
    /// Parses a published payload.
    pub fn from_json(payload: &[u8]) -> Result<Self, EnvelopeError> {
        Ok(serde_json::from_slice(payload)?)
    }

    /// The JSON bytes published on NATS.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain data (strings, numbers, JSON values) cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The typed event (upcast to the current schema).
    pub fn event(&self) -> Result<LicenseEvent, CatalogError> {
        LicenseEvent::from_stored(&self.event_type, self.schema_version, &self.data)
    }

    /// The typed metadata (fields that are absent or malformed are `None`).
    pub fn meta(&self) -> Metadata {
        Metadata::from_value(&self.metadata)
    }

    /// The NATS subject: `<prefix>.<tenant>.<license>.<Type>`. Events
    /// without a tenant (checkpoints) go to `<prefix>._system._.<Type>`;
    /// anything that is not a safe subject token is replaced by `_`.
    pub fn subject(&self, prefix: &str) -> String {
        let meta = self.meta();
        subject(
            prefix,
            meta.tenant_id.as_ref().map(TenantId::as_str),
            meta.license_id.map(|l| l.to_string()).as_deref(),
            &self.event_type,
        )
    }
}

/// The subject of an event of `event_type` about `tenant`'s `license`.
pub fn subject(
    prefix: &str,
    tenant: Option<&str>,
    license: Option<&str>,
    event_type: &str,
) -> String {
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
        "{prefix}.{}.{}.{}",
        token(tenant, "_system"),
        token(license, "_"),
        token(Some(event_type), "_")
    )
}

/// The subject filter of every event of `event_type`, any tenant and license.
pub fn subject_filter(prefix: &str, event_type: &str) -> String {
    format!("{prefix}.*.*.{event_type}")
}

/// The core NATS subject on which the signer hands a token it just recorded
/// straight to the API replicas (outside the JetStream stream's
/// `<prefix>.>`: nothing is stored twice). Only a hint, like the
/// `TokenIssued` event the publisher puts on the stream afterwards.
pub fn direct_token_subject(prefix: &str) -> String {
    format!("{prefix}-direct.TokenIssued")
}

/// Who and what an event is about, stored as its metadata. Every event of a
/// license carries `tenant_id` and `license_id` (subjects are built from them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    /// Tenant owning the license.
    pub tenant_id: Option<TenantId>,
    /// The license.
    pub license_id: Option<LicenseId>,
    /// The licensed product.
    pub product: Option<ProductId>,
    /// The acting user (`sub`), when a user acted.
    pub actor: Option<String>,
    /// The request id that caused the event.
    pub correlation_id: Option<String>,
}

impl Metadata {
    /// Metadata of an event of `license`, owned by `tenant`.
    pub fn license(tenant: TenantId, license: LicenseId, product: ProductId) -> Self {
        Self {
            tenant_id: Some(tenant),
            license_id: Some(license),
            product: Some(product),
            actor: None,
            correlation_id: None,
        }
    }

    /// The stored JSON object (absent fields are left out).
    pub fn to_value(&self) -> Value {
        let mut m = serde_json::Map::new();
        let mut put = |key: &str, value: Option<String>| {
            if let Some(v) = value {
                m.insert(key.to_owned(), Value::String(v));
            }
        };
        put("tenant_id", self.tenant_id.as_ref().map(|t| t.to_string()));
        put("license_id", self.license_id.map(|l| l.to_string()));
        put("product", self.product.as_ref().map(|p| p.to_string()));
        put("actor", self.actor.clone());
        put("correlation_id", self.correlation_id.clone());
        Value::Object(m)
    }

    /// Reads the known fields of a stored metadata object.
    pub fn from_value(value: &Value) -> Self {
        let get = |key: &str| value.get(key).and_then(Value::as_str);
        Self {
            tenant_id: get("tenant_id").and_then(|s| TenantId::parse(s).ok()),
            license_id: get("license_id").and_then(|s| s.parse().ok()),
            product: get("product").and_then(|s| ProductId::parse(s).ok()),
            actor: get("actor").map(str::to_owned),
            correlation_id: get("correlation_id").map(str::to_owned),
        }
    }

    /// The metadata of a recorded event.
    pub fn of(recorded: &RecordedEvent) -> Self {
        Self::from_value(&recorded.metadata)
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

/// Now, at the log's precision (microseconds): decisions carry this `now`
/// so that what they compute equals what is stored.
pub fn now() -> DateTime<Utc> {
    hash::to_micros(Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(metadata: Value) -> RecordedEvent {
        RecordedEvent {
            position: 7,
            event_id: Uuid::now_v7(),
            stream_id: "license-1".into(),
            stream_version: 3,
            event_type: "SeatsChanged".into(),
            schema_version: 1,
            data: serde_json::json!({"seats": 4}),
            metadata,
            recorded_at: now(),
            prev_hash: vec![1; 32],
            hash: vec![2; 32],
        }
    }

    #[test]
    fn round_trips_and_keeps_the_contract_field_names() {
        let license = LicenseId::new();
        let meta = Metadata::license(
            TenantId::parse("acme").unwrap(),
            license,
            ProductId::parse("cad.pro").unwrap(),
        );
        let envelope = Envelope::from(&recorded(meta.to_value()));
        let json: Value = serde_json::from_slice(&envelope.to_json()).unwrap();
        for field in [
            "event_id",
            "type",
            "schema_version",
            "stream",
            "stream_version",
            "position",
            "recorded_at",
            "data",
            "metadata",
        ] {
            assert!(json.get(field).is_some(), "missing {field}");
        }
        let back = Envelope::from_json(&envelope.to_json()).unwrap();
        assert_eq!(back, envelope);
        assert_eq!(back.meta(), meta);
        assert_eq!(
            back.event().unwrap(),
            LicenseEvent::SeatsChanged { seats: 4 }
        );
        assert_eq!(
            back.subject("license.events"),
            format!("license.events.acme.{license}.SeatsChanged")
        );
    }

    #[test]
    fn unsafe_subject_tokens_are_replaced() {
        let envelope = Envelope::from(&recorded(serde_json::json!({"tenant_id": "a.b"})));
        assert_eq!(envelope.subject("p"), "p._system._.SeatsChanged");
        assert!(Envelope::from_json(b"{\"event_id\": 1}").is_err());
    }
}
