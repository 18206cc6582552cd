//! The event catalogue: every fact the log can hold, typed and versioned.
//!
//! Owns `LicenseEvent` (serde-tagged by `type`), each type's current
//! `schema_version`, the split between an event's type and its payload (the
//! log stores `type`, `schema_version` and `data` in separate columns), and
//! the upcaster hook that turns old payloads into the current shape.
//!
//! Policy: events are facts, named in the past tense. A type is never renamed
//! or removed and a field is never repurposed. Adding an optional field keeps
//! the version; any other change bumps that type's `schema_version` and adds
//! an arm to `upcast` that rewrites the older payload. `docs/events.md` is
//! the human catalogue and a test keeps its examples readable.
//!
//! Must not: do I/O, or decide anything (that is `license` and `session`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::{
    GroupId, HardwareId, IdempotencyKey, LicenseId, ProductId, ReservationName, SessionId,
    TenantId, UserId,
};
use crate::license::Policy;

mod reasons;
mod stored;
pub use reasons::{CloseReason, DenialReason, QueueLeaveReason, RevokeReason};
pub use stored::{current_version, CatalogError};

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Which kind of stream an event is written to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamCategory {
    /// `license-<uuid>`: allocation (issue, seats, acquire, release, expiry).
    License,
    /// `session-<uuid>`: heartbeats, token, close marker.
    Session,
    /// `checkpoints`: signed chain heads.
    Checkpoints,
}

/// Every fact the License Ledger records.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type")]
pub enum LicenseEvent {
    /// A license was created (first event of its license stream).
    LicenseIssued {
        /// Owning tenant.
        tenant_id: TenantId,
        /// The license (also in the stream name).
        license_id: LicenseId,
        /// Licensed product.
        product: ProductId,
        /// Concurrent seats, 1..=100 000.
        seats: u32,
        /// A session without a heartbeat for this long is expired.
        session_ttl_secs: u32,
        /// No new seats after this instant; `None` = perpetual.
        valid_until: Option<DateTime<Utc>>,
        /// Lifetime of each license token, seconds (`None`: the default,
        /// never longer than the session TTL).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_ttl_secs: Option<u32>,
        /// Strict seat accounting: a freed seat is not granted again while a
        /// token issued for it may still be unexpired.
        #[serde(default, skip_serializing_if = "is_false")]
        strict_seats: bool,
    },
    /// An admin changed the seat count (license stream).
    SeatsChanged {
        /// The new seat count.
        seats: u32,
    },
    /// The vendor set the license's policy (license stream). Versions count
    /// from 1; a license without this event runs policy version 0, the
    /// default policy.
    PolicyChanged {
        /// This policy's version: the previous one plus 1.
        version: u32,
        /// The whole policy now in force.
        policy: Policy,
    },
    /// An admin suspended the license: new acquires are denied (license stream).
    LicenseSuspended {
        /// Free-text reason given by the admin.
        reason: String,
    },
    /// An admin lifted a suspension (license stream).
    LicenseReinstated {},
    /// A seat was allocated to a session (license stream).
    SeatAcquired {
        /// The new session.
        session_id: SessionId,
        /// Who holds the seat.
        user_id: UserId,
        /// The machine it is held for.
        hardware_id: HardwareId,
        /// Deadline as of the acquire; heartbeats extend it in the session stream.
        expires_at: DateTime<Utc>,
        /// The client's `Idempotency-Key`, if it sent one.
        idempotency_key: Option<IdempotencyKey>,
        /// The policy version that granted it (0: the default policy).
        #[serde(default, skip_serializing_if = "is_zero")]
        policy_version: u32,
        /// It took one of the policy's overdraft seats.
        #[serde(default, skip_serializing_if = "is_false")]
        overdraft: bool,
        /// The reservation it counts against, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reservation: Option<ReservationName>,
        /// It was granted to a waiter of the license's queue (the session id
        /// is the one its `QueueJoined` recorded).
        #[serde(default, skip_serializing_if = "is_false")]
        queued: bool,
        /// The seat is borrowed (taken offline) until then: the deadline and
        /// the tokens' `exp` are this instant, and heartbeats never shorten it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        borrowed_until: Option<DateTime<Utc>>,
    },
    /// An acquire that asked to wait found no seat it may take and joined the
    /// license's queue (license stream). When a seat frees, the oldest waiter
    /// the policy admits gets it as a `SeatAcquired` with `queued` and this
    /// session id.
    QueueJoined {
        /// The session a grant will create.
        session_id: SessionId,
        /// Who waits.
        user_id: UserId,
        /// For which machine.
        hardware_id: HardwareId,
        /// The caller's groups (the policy's reservations admit by group).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        groups: Vec<GroupId>,
        /// The acquire's `Idempotency-Key`, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idempotency_key: Option<IdempotencyKey>,
        /// Why no seat could be granted at once.
        reason: DenialReason,
        /// The waiter gives up at this instant (a `QueueLeft` `timed_out`).
        wait_until: DateTime<Utc>,
        /// Borrow the seat for this many seconds once granted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        borrow_secs: Option<u32>,
        /// The policy version in force (0: the default policy).
        #[serde(default, skip_serializing_if = "is_zero")]
        policy_version: u32,
    },
    /// A waiter left the license's queue without a seat: it cancelled, or
    /// its wait ran out (license stream).
    QueueLeft {
        /// The waiter's session id (from its `QueueJoined`).
        session_id: SessionId,
        /// Why.
        reason: QueueLeaveReason,
    },
    /// An acquire was turned away; turnaways matter to vendors (license stream).
    AcquireDenied {
        /// Who asked.
        user_id: UserId,
        /// For which machine.
        hardware_id: HardwareId,
        /// Why it was denied.
        reason: DenialReason,
        /// The policy version that denied it (0: the default policy).
        #[serde(default, skip_serializing_if = "is_zero")]
        policy_version: u32,
    },
    /// The holder (or an admin) gave the seat back (license stream).
    SeatReleased {
        /// The ended session.
        session_id: SessionId,
        /// No token of the session is valid after this instant (the end plus
        /// one token lifetime); absent on events written before tokens were renewed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tokens_valid_until: Option<DateTime<Utc>>,
        /// The seat stays held until then (the policy's linger): the same
        /// user on the same machine gets it back meanwhile.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        linger_until: Option<DateTime<Utc>>,
        /// The session's revival count when it ended (absent: 0, never
        /// revived), so each life of a revived session is told apart.
        #[serde(default, skip_serializing_if = "is_zero")]
        revival: u32,
    },
    /// The reaper ended a session whose deadline passed (license stream).
    SessionExpired {
        /// The ended session.
        session_id: SessionId,
        /// The deadline that passed.
        deadline: DateTime<Utc>,
        /// As in `SeatReleased`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tokens_valid_until: Option<DateTime<Utc>>,
        /// The policy version in force (0: the default policy).
        #[serde(default, skip_serializing_if = "is_zero")]
        policy_version: u32,
        /// The session's revival count when it ended (absent: 0, never
        /// revived), so each life of a revived session is told apart.
        #[serde(default, skip_serializing_if = "is_zero")]
        revival: u32,
    },
    /// A heartbeat within the policy's revive window after its session
    /// expired brought it back on a free seat (license stream; the session
    /// stream gets `SessionReopened` in the same append).
    SessionRevived {
        /// The session, live again.
        session_id: SessionId,
        /// Its holder.
        user_id: UserId,
        /// Its machine.
        hardware_id: HardwareId,
        /// How many times it has been revived, this one included (1, 2, ...):
        /// the end events of a revived session carry it too.
        revival: u32,
        /// Its new deadline.
        expires_at: DateTime<Utc>,
        /// The policy version that revived it.
        policy_version: u32,
        /// It took one of the policy's overdraft seats.
        #[serde(default, skip_serializing_if = "is_false")]
        overdraft: bool,
        /// The reservation it counts against, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reservation: Option<ReservationName>,
    },
    /// The license ended a live session: suspension, or a seat reduction
    /// below the live sessions (license stream).
    SessionRevoked {
        /// The ended session.
        session_id: SessionId,
        /// Why.
        reason: RevokeReason,
        /// As in `SeatReleased`.
        tokens_valid_until: DateTime<Utc>,
        /// The session's revival count when it ended (absent: 0, never
        /// revived), so each life of a revived session is told apart.
        #[serde(default, skip_serializing_if = "is_zero")]
        revival: u32,
    },
    /// A client heartbeat extended its session (session stream).
    HeartbeatRecorded {
        /// The session.
        session_id: SessionId,
        /// The new deadline.
        expires_at: DateTime<Utc>,
    },
    /// Terminal marker of a session stream, appended atomically with
    /// `SeatReleased` / `SessionExpired`; it bumps the session stream's
    /// version so a racing heartbeat gets a version conflict (session stream).
    SessionClosed {
        /// The session.
        session_id: SessionId,
        /// Released or expired.
        reason: CloseReason,
    },
    /// Undoes the close marker: the session was revived (session stream,
    /// appended with `SessionRevived`).
    SessionReopened {
        /// The session.
        session_id: SessionId,
        /// Its new deadline.
        expires_at: DateTime<Utc>,
    },
    /// A heartbeat found the session's token past half its life: the signer
    /// is asked for a renewal (session stream).
    TokenRenewalDue {
        /// The session.
        session_id: SessionId,
    },
    /// The signer minted the session's license token, first or renewed (session stream).
    TokenIssued {
        /// The session.
        session_id: SessionId,
        /// Signing key version (the token's `kid`).
        key_id: String,
        /// The compact JWS.
        token: String,
        /// The token's `jti`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        jti: Option<uuid::Uuid>,
        /// The token's `exp`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<DateTime<Utc>>,
        /// Log position of the event that authorized it (`SeatAcquired` or `TokenRenewalDue`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        authorized_by: Option<i64>,
    },
    /// The log's chain head was signed (stream `checkpoints`).
    CheckpointSigned {
        /// Global position of the last event covered.
        up_to_position: i64,
        /// Hex SHA-256 chain hash at that position.
        chain_head: String,
        /// Signing key version.
        key_id: String,
        /// Base64url signature over the chain head.
        signature: String,
    },
}

/// Every event type with its current schema version.
pub const EVENT_TYPES: &[(&str, i32)] = &[
    ("LicenseIssued", 1),
    ("SeatsChanged", 1),
    ("PolicyChanged", 1),
    ("LicenseSuspended", 1),
    ("LicenseReinstated", 1),
    ("SeatAcquired", 1),
    ("AcquireDenied", 1),
    ("QueueJoined", 1),
    ("QueueLeft", 1),
    ("SeatReleased", 1),
    ("SessionExpired", 1),
    ("SessionRevoked", 1),
    ("SessionRevived", 1),
    ("SessionReopened", 1),
    ("HeartbeatRecorded", 1),
    ("SessionClosed", 1),
    ("TokenRenewalDue", 1),
    ("TokenIssued", 1),
    ("CheckpointSigned", 1),
];

impl LicenseEvent {
    /// The variant name, stored in the log's `type` column.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::LicenseIssued { .. } => "LicenseIssued",
            Self::SeatsChanged { .. } => "SeatsChanged",
            Self::PolicyChanged { .. } => "PolicyChanged",
            Self::LicenseSuspended { .. } => "LicenseSuspended",
            Self::LicenseReinstated {} => "LicenseReinstated",
            Self::SeatAcquired { .. } => "SeatAcquired",
            Self::AcquireDenied { .. } => "AcquireDenied",
            Self::QueueJoined { .. } => "QueueJoined",
            Self::QueueLeft { .. } => "QueueLeft",
            Self::SeatReleased { .. } => "SeatReleased",
            Self::SessionExpired { .. } => "SessionExpired",
            Self::SessionRevoked { .. } => "SessionRevoked",
            Self::SessionRevived { .. } => "SessionRevived",
            Self::SessionReopened { .. } => "SessionReopened",
            Self::HeartbeatRecorded { .. } => "HeartbeatRecorded",
            Self::SessionClosed { .. } => "SessionClosed",
            Self::TokenRenewalDue { .. } => "TokenRenewalDue",
            Self::TokenIssued { .. } => "TokenIssued",
            Self::CheckpointSigned { .. } => "CheckpointSigned",
        }
    }

    /// The schema version this build writes for this event's type.
    pub fn schema_version(&self) -> i32 {
        current_version(self.event_type()).unwrap_or(1)
    }

    /// The kind of stream this event belongs to.
    pub fn category(&self) -> StreamCategory {
        match self {
            Self::LicenseIssued { .. }
            | Self::SeatsChanged { .. }
            | Self::PolicyChanged { .. }
            | Self::LicenseSuspended { .. }
            | Self::LicenseReinstated {}
            | Self::SeatAcquired { .. }
            | Self::AcquireDenied { .. }
            | Self::QueueJoined { .. }
            | Self::QueueLeft { .. }
            | Self::SeatReleased { .. }
            | Self::SessionExpired { .. }
            | Self::SessionRevoked { .. }
            | Self::SessionRevived { .. } => StreamCategory::License,
            Self::HeartbeatRecorded { .. }
            | Self::SessionReopened { .. }
            | Self::SessionClosed { .. }
            | Self::TokenRenewalDue { .. }
            | Self::TokenIssued { .. } => StreamCategory::Session,
            Self::CheckpointSigned { .. } => StreamCategory::Checkpoints,
        }
    }

    /// The session this event is about, if any (routes session-stream events).
    pub fn session_id(&self) -> Option<SessionId> {
        match self {
            Self::SeatAcquired { session_id, .. }
            | Self::QueueJoined { session_id, .. }
            | Self::QueueLeft { session_id, .. }
            | Self::SeatReleased { session_id, .. }
            | Self::SessionExpired { session_id, .. }
            | Self::SessionRevoked { session_id, .. }
            | Self::SessionRevived { session_id, .. }
            | Self::SessionReopened { session_id, .. }
            | Self::HeartbeatRecorded { session_id, .. }
            | Self::SessionClosed { session_id, .. }
            | Self::TokenRenewalDue { session_id }
            | Self::TokenIssued { session_id, .. } => Some(*session_id),
            _ => None,
        }
    }

    /// The full JSON, with the `type` tag.
    pub fn to_json(&self) -> Value {
        // A derived Serialize of plain fields into a Value cannot fail.
        serde_json::to_value(self).expect("LicenseEvent serializes")
    }

    /// The payload as stored in the log's `data` column: the JSON without
    /// the `type` tag (the log stores the type in its own column).
    pub fn data(&self) -> Value {
        let mut json = self.to_json();
        if let Value::Object(map) = &mut json {
            map.remove("type");
        }
        json
    }
}

#[cfg(test)]
pub(crate) mod tests;
