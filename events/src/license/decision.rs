//! What a decision is: the events a command appends (license and session
//! streams) and the outcome the caller answers with. Produced by
//! [`decide`](super::decide()).

use chrono::{DateTime, Utc};

use crate::catalog::{DenialReason, LicenseEvent};
use crate::ids::SessionId;

/// What a command means, as a result the caller can answer with.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The caller holds this session.
    Acquired {
        /// The session.
        session_id: SessionId,
        /// Its deadline as of the acquire. For `existing` sessions heartbeats
        /// may have extended it: use [`crate::session::current_deadline`].
        expires_at: DateTime<Utc>,
        /// `true` when an earlier live session was returned (same user and
        /// hardware id, or same idempotency key): nothing is appended.
        existing: bool,
    },
    /// No seat now: the acquire waits in the queue (`QueueJoined`), or
    /// (`existing`) it was waiting already.
    Queued {
        /// The session a grant will create.
        session_id: SessionId,
        /// 1-based place in the queue.
        position: usize,
        /// It gives up then.
        wait_until: DateTime<Utc>,
        /// It was waiting already: nothing is appended.
        existing: bool,
    },
    /// The acquire was turned away; the `AcquireDenied` event is still appended.
    Denied {
        /// Why.
        reason: DenialReason,
        /// When a seat frees, if that is known (strict accounting: when the
        /// tokens holding the seats lapse).
        retry_at: Option<DateTime<Utc>>,
    },
    /// Any other command succeeded (possibly as a no-op with no events).
    Done,
}

/// The events a command produces and what it means.
///
/// Append `license_events` to the license stream (expected version =
/// `state.version`) and `session_events` to the stream of
/// [`Decision::session_stream`], both in one atomic append. An empty decision
/// appends nothing.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Events for `license-<id>`.
    pub license_events: Vec<LicenseEvent>,
    /// Events for `session-<id>` (the close marker of a release or expiry).
    pub session_events: Vec<LicenseEvent>,
    /// The answer.
    pub outcome: Outcome,
}

impl Decision {
    pub(super) fn license(events: Vec<LicenseEvent>, outcome: Outcome) -> Self {
        Self {
            license_events: events,
            session_events: Vec::new(),
            outcome,
        }
    }

    pub(super) fn nothing(outcome: Outcome) -> Self {
        Self::license(Vec::new(), outcome)
    }

    /// The first session whose stream `session_events` go to (the one a
    /// release or an expiry closes).
    pub fn session_stream(&self) -> Option<SessionId> {
        self.session_events
            .first()
            .and_then(LicenseEvent::session_id)
    }

    /// Every session whose stream `session_events` go to, in order.
    pub fn sessions(&self) -> Vec<SessionId> {
        let mut out: Vec<SessionId> = Vec::new();
        for id in self
            .session_events
            .iter()
            .filter_map(LicenseEvent::session_id)
        {
            if !out.contains(&id) {
                out.push(id);
            }
        }
        out
    }

    /// `true` when there is nothing to append.
    pub fn is_empty(&self) -> bool {
        self.license_events.is_empty() && self.session_events.is_empty()
    }
}
