//! The per-stream hash chain: `hash = SHA-256(prev_hash || canonical bytes)`.
//!
//! The canonical bytes are a length-prefixed encoding of everything that
//! makes an event what it is (id, stream, version, type, schema version,
//! data, metadata, recorded time). JSON is encoded with object keys sorted
//! and no whitespace, so the bytes can be recomputed from the row as
//! Postgres returns it (jsonb reorders keys). The position is *not* part of
//! the hash (it is assigned by the insert); verification checks instead that
//! positions grow with versions, and signed checkpoints cover global order.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Length of a chain hash in bytes.
pub const HASH_LEN: usize = 32;

/// The `prev_hash` of a stream's first event.
pub const GENESIS: [u8; HASH_LEN] = [0; HASH_LEN];

/// Domain separator and encoding version of the canonical bytes.
const TAG: &[u8] = b"license-ledger/event/v1";

/// The fields of an event that the hash commits to.
#[derive(Debug, Clone, Copy)]
pub struct Canonical<'a> {
    /// Event id.
    pub event_id: Uuid,
    /// Stream the event belongs to.
    pub stream_id: &'a str,
    /// Version of the event in its stream (0-based).
    pub stream_version: i64,
    /// Event type name.
    pub event_type: &'a str,
    /// Schema version of the payload.
    pub schema_version: i32,
    /// Payload.
    pub data: &'a Value,
    /// Metadata.
    pub metadata: &'a Value,
    /// Time the log recorded the event (microsecond precision).
    pub recorded_at: DateTime<Utc>,
}

impl Canonical<'_> {
    /// The canonical bytes of the event.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        put_field(&mut out, TAG);
        put_field(&mut out, self.event_id.as_bytes());
        put_field(&mut out, self.stream_id.as_bytes());
        put_field(&mut out, &self.stream_version.to_be_bytes());
        put_field(&mut out, self.event_type.as_bytes());
        put_field(&mut out, &self.schema_version.to_be_bytes());
        let mut json = Vec::with_capacity(128);
        write_canonical_json(&mut json, self.data);
        put_field(&mut out, &json);
        json.clear();
        write_canonical_json(&mut json, self.metadata);
        put_field(&mut out, &json);
        put_field(&mut out, &self.recorded_at.timestamp_micros().to_be_bytes());
        out
    }

    /// `SHA-256(prev_hash || canonical bytes)`.
    pub fn chain_hash(&self, prev_hash: &[u8]) -> [u8; HASH_LEN] {
        let mut hasher = Sha256::new();
        hasher.update(prev_hash);
        hasher.update(self.bytes());
        hasher.finalize().into()
    }
}

fn put_field(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u64).to_be_bytes());
    out.extend_from_slice(field);
}

/// Writes `value` as JSON with object keys sorted and no whitespace.
pub fn write_canonical_json(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(out, &Value::String(key.clone()));
                out.push(b':');
                write_canonical_json(out, &map[key]);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical_json(out, item);
            }
            out.push(b']');
        }
        scalar => write_scalar(out, scalar),
    }
}

fn write_scalar(out: &mut Vec<u8>, value: &Value) {
    // Serializing a scalar JSON value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// Truncates a timestamp to the microsecond precision Postgres stores.
pub fn to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon<'a>(data: &'a Value, meta: &'a Value) -> Canonical<'a> {
        Canonical {
            event_id: Uuid::nil(),
            stream_id: "s",
            stream_version: 0,
            event_type: "T",
            schema_version: 1,
            data,
            metadata: meta,
            recorded_at: DateTime::from_timestamp_micros(1).unwrap(),
        }
    }

    #[test]
    fn key_order_does_not_change_the_hash() {
        let a = json!({"a": 1, "b": {"y": [1, 2], "x": "s"}});
        let b: Value = serde_json::from_str(r#"{"b":{"x":"s","y":[1,2]},"a":1}"#).unwrap();
        let meta = json!({});
        assert_eq!(
            canon(&a, &meta).chain_hash(&GENESIS),
            canon(&b, &meta).chain_hash(&GENESIS)
        );
    }

    #[test]
    fn every_field_changes_the_hash() {
        let data = json!({"a": 1});
        let meta = json!({});
        let base = canon(&data, &meta);
        let h = base.chain_hash(&GENESIS);
        let other_data = json!({"a": 2});
        assert_ne!(h, canon(&other_data, &meta).chain_hash(&GENESIS));
        assert_ne!(
            h,
            Canonical {
                stream_version: 1,
                ..base
            }
            .chain_hash(&GENESIS)
        );
        assert_ne!(
            h,
            Canonical {
                stream_id: "t",
                ..base
            }
            .chain_hash(&GENESIS)
        );
        assert_ne!(
            h,
            Canonical {
                event_type: "U",
                ..base
            }
            .chain_hash(&GENESIS)
        );
        assert_ne!(
            h,
            Canonical {
                schema_version: 2,
                ..base
            }
            .chain_hash(&GENESIS)
        );
        assert_ne!(h, base.chain_hash(&[1; HASH_LEN]));
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        let data = json!({});
        let meta = json!({});
        let a = Canonical {
            stream_id: "ab",
            event_type: "c",
            ..canon(&data, &meta)
        };
        let b = Canonical {
            stream_id: "a",
            event_type: "bc",
            ..canon(&data, &meta)
        };
        assert_ne!(a.bytes(), b.bytes());
    }
}
