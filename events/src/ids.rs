//! Typed identifiers and stream names.
//!
//! Owns the parse-don't-validate newtypes the rest of the system passes
//! around (`TenantId`, `LicenseId`, `SessionId`, `UserId`, `HardwareId`,
//! `ProductId`, `IdempotencyKey`) and the mapping between aggregates and log
//! stream names (`license-<uuid>`, `session-<uuid>`, `checkpoints`).
//!
//! A value of one of these types is valid by construction: the only ways in
//! are `parse`/`FromStr`/`TryFrom<String>` (and serde, which goes through
//! `TryFrom<String>`), so domain code never re-checks raw strings.
//!
//! Must not: do I/O, or ever tighten a rule. Stored events are deserialized
//! through these types, so a stricter rule would make old events unreadable;
//! rules may only be relaxed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A rejected identifier: names the field and the rule it broke.
///
/// The message is safe to show to API clients (it never echoes the value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {rule}")]
pub struct IdError {
    /// The field name as clients know it, e.g. `hardware_id`.
    pub field: &'static str,
    /// The rule, in words, e.g. `must be 1 to 128 characters of A-Z a-z 0-9 : . _ -`.
    pub rule: &'static str,
}

/// Checks `value` has 1..=`max` characters, each accepted by `allowed`.
fn check(
    value: &str,
    max: usize,
    allowed: fn(char) -> bool,
    field: &'static str,
    rule: &'static str,
) -> Result<(), IdError> {
    let len = value.chars().count();
    if (1..=max).contains(&len) && value.chars().all(allowed) {
        Ok(())
    } else {
        Err(IdError { field, rule })
    }
}

/// Defines a validated string newtype with `parse`, `as_str`, `Display`,
/// `FromStr`, `TryFrom<String>` and serde (as a plain JSON string).
macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $field:literal, $rule:literal, $max:expr, $allowed:expr, trim: $trim:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            #[doc = concat!("Parses a `", $field, "`: ", $rule, ".")]
            pub fn parse(value: &str) -> Result<Self, IdError> {
                let value = if $trim { value.trim() } else { value };
                check(value, $max, $allowed, $field, $rule)?;
                Ok(Self(value.to_owned()))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

fn tenant_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn product_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

fn hardware_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '_' | '-')
}

fn user_char(c: char) -> bool {
    !c.is_control()
}

fn visible_ascii(c: char) -> bool {
    c.is_ascii_graphic()
}

string_id!(
    /// The tenant a license, a user and every event belong to
    /// (the JWT's `tenant_id` or `firebase.tenant` claim).
    TenantId, "tenant_id", "must be 1 to 64 characters of A-Z a-z 0-9 _ -", 64, tenant_char, trim: false
);

string_id!(
    /// The end user holding a seat (the JWT's `sub`).
    UserId, "user_id", "must be 1 to 256 characters without control characters", 256, user_char, trim: false
);

string_id!(
    /// The machine a seat is held for, chosen by the client. Surrounding
    /// whitespace is trimmed before the check.
    HardwareId, "hardware_id", "must be 1 to 128 characters of A-Z a-z 0-9 : . _ -", 128, hardware_char, trim: true
);

string_id!(
    /// The licensed product (goes into the token's `product` claim).
    ProductId, "product", "must be 1 to 64 characters of A-Z a-z 0-9 . _ -", 64, product_char, trim: false
);

string_id!(
    /// A client-chosen key (the `Idempotency-Key` header) that makes a
    /// retried acquire return the session of the first attempt.
    IdempotencyKey, "idempotency_key", "must be 1 to 255 visible ASCII characters", 255, visible_ascii, trim: true
);

string_id!(
    /// A group the caller belongs to (the JWT's `groups` claim); seat
    /// reservations name groups.
    GroupId, "group", "must be 1 to 128 characters without control characters", 128, user_char, trim: false
);

string_id!(
    /// The name of a seat reservation in a license's policy.
    ReservationName, "reservation", "must be 1 to 64 characters of A-Z a-z 0-9 _ -", 64, tenant_char, trim: false
);

/// An OpenAPI schema for a string id: a string of `1..=max` characters
/// matching `pattern` (what `parse` accepts, as the document says it).
macro_rules! string_schema {
    ($name:ident, $max:expr, $pattern:literal) => {
        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
                let object = ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some($max))
                    .pattern(Some($pattern))
                    .build();
                utoipa::openapi::RefOr::T(Schema::Object(object))
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {}
    };
}

string_schema!(UserId, 256, r"^[^\x00-\x1F\x7F-\x9F]+$");
string_schema!(GroupId, 128, r"^[^\x00-\x1F\x7F-\x9F]+$");
string_schema!(ReservationName, 64, r"^[A-Za-z0-9_-]+$");

/// Defines a UUID newtype with `new` (random v4), `from_uuid`, `as_uuid`,
/// `Display`, `FromStr` and transparent serde.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $field:literal, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh random (v4) identifier.
            #[allow(clippy::new_without_default)]
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }

            /// Wraps an existing UUID.
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The underlying UUID.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }

            #[doc = concat!("The log stream of this aggregate: `", $prefix, "<uuid>`.")]
            pub fn stream_name(&self) -> String {
                format!(concat!($prefix, "{}"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Uuid::parse_str(s.trim()).map(Self).map_err(|_| IdError {
                    field: $field,
                    rule: "must be a UUID",
                })
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }
    };
}

uuid_id!(
    /// A license: the aggregate behind stream `license-<uuid>`.
    LicenseId, "license_id", "license-"
);

uuid_id!(
    /// A seat session: its heartbeats live in stream `session-<uuid>`.
    /// Generated by the server (random v4, so not guessable).
    SessionId, "session_id", "session-"
);

/// Name of the stream that holds `CheckpointSigned` events.
pub const CHECKPOINT_STREAM: &str = "checkpoints";

/// What a stream name refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// `license-<uuid>`: allocation events of one license.
    License(LicenseId),
    /// `session-<uuid>`: heartbeats, token and close marker of one session.
    Session(SessionId),
    /// `checkpoints`: signed chain-head checkpoints.
    Checkpoints,
}

impl StreamKind {
    /// The stream name as stored in the log.
    pub fn name(&self) -> String {
        match self {
            Self::License(id) => id.stream_name(),
            Self::Session(id) => id.stream_name(),
            Self::Checkpoints => CHECKPOINT_STREAM.to_owned(),
        }
    }
}

impl fmt::Display for StreamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Parses a stream name back into what it refers to; `None` if the name is
/// not one this system writes (the UUID must be in canonical hyphenated
/// lower-case form, as `stream_name` writes it).
pub fn parse_stream(name: &str) -> Option<StreamKind> {
    fn uuid(rest: &str) -> Option<Uuid> {
        let id = Uuid::parse_str(rest).ok()?;
        // Reject other spellings so one stream has exactly one name.
        (id.hyphenated().to_string() == rest).then_some(id)
    }
    if name == CHECKPOINT_STREAM {
        Some(StreamKind::Checkpoints)
    } else if let Some(rest) = name.strip_prefix("license-") {
        uuid(rest).map(|id| StreamKind::License(LicenseId(id)))
    } else if let Some(rest) = name.strip_prefix("session-") {
        uuid(rest).map(|id| StreamKind::Session(SessionId(id)))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hardware_id_is_trimmed_and_checked() {
        assert_eq!(
            HardwareId::parse("  ab:CD.1_2-3 ").unwrap().as_str(),
            "ab:CD.1_2-3"
        );
        for bad in ["", "   ", "a b", "é", "a/b", &"x".repeat(129)] {
            let err = HardwareId::parse(bad).unwrap_err();
            assert_eq!(err.field, "hardware_id", "{bad:?}");
        }
        assert!(HardwareId::parse(&"x".repeat(128)).is_ok());
    }

    #[test]
    fn error_message_names_field_and_rule() {
        let err = TenantId::parse("a b").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid tenant_id: must be 1 to 64 characters of A-Z a-z 0-9 _ -"
        );
    }

    #[test]
    fn string_ids_enforce_their_rules() {
        assert!(TenantId::parse("acme_1-x").is_ok());
        assert!(TenantId::parse(&"t".repeat(65)).is_err());
        assert!(ProductId::parse("cad.pro-2_0").is_ok());
        assert!(ProductId::parse("cad pro").is_err());
        assert!(UserId::parse("Jöhn Doe <j@x>").is_ok());
        assert!(UserId::parse("a\nb").is_err());
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse(&"ü".repeat(256)).is_ok());
        assert!(UserId::parse(&"u".repeat(257)).is_err());
        assert!(IdempotencyKey::parse("5f0c-retry#1").is_ok());
        assert!(IdempotencyKey::parse("a b").is_err());
    }

    #[test]
    fn serde_is_a_plain_string_and_validates() {
        let hw: HardwareId = serde_json::from_str("\"m-1\"").unwrap();
        assert_eq!(serde_json::to_string(&hw).unwrap(), "\"m-1\"");
        assert!(serde_json::from_str::<HardwareId>("\"m 1\"").is_err());
        let id = LicenseId::new();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<LicenseId>(&json).unwrap(), id);
    }

    #[test]
    fn stream_names_round_trip() {
        let license = LicenseId::new();
        let session = SessionId::new();
        assert_eq!(license.stream_name(), format!("license-{license}"));
        assert_eq!(
            parse_stream(&license.stream_name()),
            Some(StreamKind::License(license))
        );
        assert_eq!(
            parse_stream(&session.stream_name()),
            Some(StreamKind::Session(session))
        );
        assert_eq!(parse_stream("checkpoints"), Some(StreamKind::Checkpoints));
        assert_eq!(StreamKind::Session(session).name(), session.stream_name());
        for bad in ["license-", "license-xyz", "session-ABC", "other-1", ""] {
            assert_eq!(parse_stream(bad), None, "{bad:?}");
        }
        let upper = format!("license-{}", license.to_string().to_uppercase());
        assert_eq!(parse_stream(&upper), None);
    }

    #[test]
    fn uuid_ids_parse() {
        let id = SessionId::new();
        assert_eq!(id.to_string().parse::<SessionId>().unwrap(), id);
        let err = "nope".parse::<SessionId>().unwrap_err();
        assert_eq!(err.to_string(), "invalid session_id: must be a UUID");
    }
}
