//! Why a command on a license was refused.

use chrono::{DateTime, Utc};

use super::PolicyError;

/// A rule of the domain said no. Never a technical failure: each variant
/// maps to a 4xx answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The license stream has no `LicenseIssued`.
    #[error("license not found")]
    NotIssued,
    /// `Issue` on a license that exists.
    #[error("license already issued")]
    AlreadyIssued,
    /// No live session with this id for this caller (also for another
    /// user's session: callers never learn it exists).
    #[error("session not found")]
    SessionNotFound,
    /// Seats outside [`SEATS_RANGE`].
    #[error("seats must be between 1 and 100000, got {0}")]
    InvalidSeats(u32),
    /// TTL outside [`SESSION_TTL_RANGE`].
    #[error("session_ttl_secs must be between 1 and 604800, got {0}")]
    InvalidSessionTtl(u32),
    /// Blank, longer than [`MAX_REASON_CHARS`], or with control characters.
    #[error("reason must be 1 to 1000 characters, not blank, without control characters")]
    InvalidReason,
    /// The caller's pre-generated session id is already live.
    #[error("session id already in use")]
    SessionIdInUse,
    /// The idempotency key belongs to a live session for another hardware id.
    #[error("idempotency key already used for another hardware id")]
    IdempotencyKeyReused,
    /// `Expire` before the session's deadline.
    #[error("session is live until {0}")]
    NotYetExpired(DateTime<Utc>),
    /// Token TTL outside 1..=session TTL.
    #[error("token_ttl_secs must be between 1 and the session TTL ({session_ttl_secs}), got {token_ttl_secs}")]
    InvalidTokenTtl {
        /// What was asked.
        token_ttl_secs: u32,
        /// The license's session TTL.
        session_ttl_secs: u32,
    },
    /// No waiter with this id in the queue for this caller.
    #[error("no such waiter in the queue")]
    NotWaiting,
    /// A borrow longer than the policy allows (or borrowing is off).
    #[error("borrow_secs {asked} exceeds the policy's max_borrow_secs ({max})")]
    BorrowNotAllowed {
        /// What was asked.
        asked: u32,
        /// The policy's `max_borrow_secs` (0: no borrowing).
        max: u32,
    },
    /// The policy is malformed or does not fit the license.
    #[error(transparent)]
    InvalidPolicy(#[from] PolicyError),
}
