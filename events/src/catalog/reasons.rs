//! Why things happened: the reasons events record (denials, closes,
//! revocations), with their snake_case wire names.

use serde::{Deserialize, Serialize};

/// Why an acquire was turned away.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum DenialReason {
    /// Every seat is taken.
    NoSeats,
    /// The license is suspended.
    Suspended,
    /// The license's `valid_until` has passed.
    LicenseExpired,
    /// The user holds the policy's `max_seats_per_user` seats already.
    UserLimit,
    /// Seats are free, but the policy reserves them for others.
    Reserved,
    /// The acquire asked to wait, but the license's queue is full.
    QueueFull,
}

impl DenialReason {
    /// The wire name (`no_seats`, `suspended`, `license_expired`,
    /// `user_limit`, `reserved`, `queue_full`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::NoSeats => "no_seats",
            Self::Suspended => "suspended",
            Self::LicenseExpired => "license_expired",
            Self::UserLimit => "user_limit",
            Self::Reserved => "reserved",
            Self::QueueFull => "queue_full",
        }
    }
}

/// Why a session ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// Released by its user or an admin.
    Released,
    /// Ended by the reaper after its deadline passed without a heartbeat.
    Expired,
    /// Ended by the license (suspension or a seat reduction).
    Revoked,
}

/// Why the license ended a live session.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum RevokeReason {
    /// The license was suspended.
    Suspended,
    /// The seat count was lowered below the live sessions (newest ended first).
    SeatsReduced,
}

/// Why a waiter left a license's queue without a seat.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum QueueLeaveReason {
    /// The waiter (or an admin) cancelled it.
    Cancelled,
    /// Its `wait_until` passed before a seat it may take freed.
    TimedOut,
}

impl QueueLeaveReason {
    /// The wire name (`cancelled`, `timed_out`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Cancelled => "cancelled",
            Self::TimedOut => "timed_out",
        }
    }
}
