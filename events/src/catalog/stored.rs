//! Stored events back to typed ones: the log keeps `type`,
//! `schema_version` and `data` in separate columns; this turns them back
//! into a [`LicenseEvent`], upcasting older payloads, or into a typed error.

use serde_json::Value;

use super::{LicenseEvent, EVENT_TYPES};

/// A stored event that cannot be turned back into a `LicenseEvent`.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The `type` column names no known event.
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    /// The version is newer than this build knows, or below 1.
    #[error("unsupported schema_version {schema_version} for {event_type} (current is {current})")]
    UnsupportedVersion {
        /// The event type.
        event_type: String,
        /// The stored version.
        schema_version: i32,
        /// The version this build writes.
        current: i32,
    },
    /// `data` is not a JSON object.
    #[error("data of {0} is not a JSON object")]
    NotAnObject(String),
    /// `data` does not match the type's fields.
    #[error("malformed {event_type} data: {source}")]
    Malformed {
        /// The event type.
        event_type: String,
        /// What serde found.
        #[source]
        source: serde_json::Error,
    },
}

impl LicenseEvent {
    /// Rebuilds an event from the log's `type`, `schema_version` and `data`
    /// columns, upcasting older versions to the current shape.
    pub fn from_stored(
        event_type: &str,
        schema_version: i32,
        data: &Value,
    ) -> Result<LicenseEvent, CatalogError> {
        let current = current_version(event_type)
            .ok_or_else(|| CatalogError::UnknownType(event_type.to_owned()))?;
        if !(1..=current).contains(&schema_version) {
            return Err(CatalogError::UnsupportedVersion {
                event_type: event_type.to_owned(),
                schema_version,
                current,
            });
        }
        let Value::Object(map) = data else {
            return Err(CatalogError::NotAnObject(event_type.to_owned()));
        };
        let mut map = upcast(event_type, schema_version, map.clone())?;
        map.insert("type".to_owned(), Value::String(event_type.to_owned()));
        serde_json::from_value(Value::Object(map)).map_err(|source| CatalogError::Malformed {
            event_type: event_type.to_owned(),
            source,
        })
    }
}

/// The current schema version of `event_type`, `None` if unknown.
pub fn current_version(event_type: &str) -> Option<i32> {
    EVENT_TYPES
        .iter()
        .find(|(name, _)| *name == event_type)
        .map(|(_, version)| *version)
}

/// Upcaster hook: rewrites a payload stored at `schema_version` into the
/// current shape of `event_type`, one version step at a time.
///
/// Every type is at version 1 today, so nothing is rewritten. When a type
/// changes, bump its entry in [`EVENT_TYPES`] and add an arm here, e.g.
/// `("SeatAcquired", 1) => { map.insert("acquired_by".into(), Value::Null); 2 }`,
/// so events written by older builds keep folding to the same state.
fn upcast(
    event_type: &str,
    schema_version: i32,
    map: serde_json::Map<String, Value>,
) -> Result<serde_json::Map<String, Value>, CatalogError> {
    match (event_type, schema_version) {
        // Each older (type, version) arm rewrites one step and recurses:
        // ("SeatAcquired", 1) => upcast(event_type, 2, seat_acquired_v1_to_v2(map)),
        (_, v) if Some(v) == current_version(event_type) => Ok(map),
        // A version below current without an arm above is a missing upcaster.
        _ => Err(CatalogError::UnsupportedVersion {
            event_type: event_type.to_owned(),
            schema_version,
            current: current_version(event_type).unwrap_or(0),
        }),
    }
}
