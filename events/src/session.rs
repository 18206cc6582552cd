//! The session aggregate: the heartbeat stream of one seat session.
//!
//! Owns the state folded from `session-<uuid>` (latest deadline, the signed
//! token, the close marker) and the pure decisions on it: heartbeat and
//! token. Heartbeats go here, not to the license stream, so heartbeats of
//! different sessions never conflict with each other. A release or expiry
//! appends `SessionClosed` here in the same atomic append as its license
//! event, with this stream's expected version: whichever of an expiry and a
//! racing heartbeat commits first wins, the other gets a version conflict,
//! re-reads and re-decides (a heartbeat then sees the session closed; the
//! reaper sees the later deadline).
//!
//! Reaper recipe: for each [`LicenseState::sessions_due`] candidate, fold its
//! session stream, take [`current_deadline`], and decide
//! `LicenseCommand::Expire` only if that deadline has passed.
//!
//! Must not: do I/O, read clocks, or decide allocation. Whether the caller
//! may touch the session at all is a license-stream question:
//! [`LicenseState::live_session`] first, then [`decide_heartbeat`].
//!
//! [`LicenseState::sessions_due`]: crate::license::LicenseState::sessions_due
//! [`LicenseState::live_session`]: crate::license::LicenseState::live_session

use chrono::{DateTime, TimeDelta, Utc};

use crate::catalog::{CloseReason, LicenseEvent, StreamCategory};
use crate::ids::SessionId;
use crate::license::DomainError;

/// A license token minted for the session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionToken {
    /// Signing key version (`kid`).
    pub key_id: String,
    /// The compact JWS.
    pub token: String,
}

/// The state of one session stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionState {
    /// Stream version of the last applied event; -1 when the stream is empty
    /// (a fresh session has no events here until its first heartbeat/token).
    pub version: i64,
    /// Set by `SessionClosed`; a closed session takes no more heartbeats.
    pub closed: Option<CloseReason>,
    /// Deadline of the latest heartbeat; `None` before the first one.
    pub expires_at: Option<DateTime<Utc>>,
    /// The token, once the signer has minted it.
    pub token: Option<SessionToken>,
}

impl Default for SessionState {
    fn default() -> Self {
        Self {
            version: -1,
            closed: None,
            expires_at: None,
            token: None,
        }
    }
}

impl SessionState {
    /// Folds a session stream from the start.
    pub fn fold<'a>(events: impl IntoIterator<Item = &'a LicenseEvent>) -> Self {
        events.into_iter().fold(Self::default(), apply)
    }
}

/// Folds one event into the state. Events of other streams are ignored and
/// do not move `version`.
pub fn apply(mut state: SessionState, event: &LicenseEvent) -> SessionState {
    if event.category() != StreamCategory::Session {
        return state;
    }
    state.version += 1;
    match event {
        // Latest wins: each heartbeat sets the deadline it computed.
        LicenseEvent::HeartbeatRecorded { expires_at, .. } => state.expires_at = Some(*expires_at),
        LicenseEvent::SessionClosed { reason, .. } => state.closed = Some(*reason),
        LicenseEvent::TokenIssued { key_id, token, .. } => {
            state.token = Some(SessionToken {
                key_id: key_id.clone(),
                token: token.clone(),
            });
        }
        _ => {}
    }
    state
}

/// The session's current deadline: the latest heartbeat's `expires_at`, or
/// the acquire-time `expires_at` (from `SeatAcquired`) when none yet.
pub fn current_deadline(acquired_expires_at: DateTime<Utc>, state: &SessionState) -> DateTime<Utc> {
    state.expires_at.unwrap_or(acquired_expires_at)
}

/// Decides a heartbeat: extends the deadline to `now + ttl`.
///
/// Append the result to `session-<id>` with expected version
/// `state.version`. A heartbeat after the deadline but before the reaper
/// acted still wins (one of the two wins by stream version).
pub fn decide_heartbeat(
    state: &SessionState,
    session_id: SessionId,
    ttl: TimeDelta,
    now: DateTime<Utc>,
) -> Result<Vec<LicenseEvent>, DomainError> {
    if state.closed.is_some() {
        return Err(DomainError::SessionNotFound);
    }
    Ok(vec![LicenseEvent::HeartbeatRecorded {
        session_id,
        expires_at: now + ttl,
    }])
}

/// Decides recording a minted token. Idempotent for a redelivered signer
/// message (a token already recorded gives no events); a closed session
/// gets `SessionNotFound` (the token is not needed any more).
pub fn decide_token(
    state: &SessionState,
    session_id: SessionId,
    key_id: String,
    token: String,
) -> Result<Vec<LicenseEvent>, DomainError> {
    if state.closed.is_some() {
        return Err(DomainError::SessionNotFound);
    }
    if state.token.is_some() {
        return Ok(vec![]);
    }
    Ok(vec![LicenseEvent::TokenIssued {
        session_id,
        key_id,
        token,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_740_000_000 + secs, 0).unwrap()
    }

    fn ttl() -> TimeDelta {
        TimeDelta::seconds(360)
    }

    #[test]
    fn heartbeat_extends_the_deadline() {
        let id = SessionId::new();
        // Given a session with no heartbeat yet
        let state = SessionState::default();
        assert_eq!(current_deadline(t(360), &state), t(360));
        // When it heartbeats at t=100
        let events = decide_heartbeat(&state, id, ttl(), t(100)).unwrap();
        // Then the deadline moves to t=460, and the stream version to 0
        assert_eq!(
            events,
            vec![LicenseEvent::HeartbeatRecorded {
                session_id: id,
                expires_at: t(460)
            }]
        );
        let state = SessionState::fold(&events);
        assert_eq!(state.version, 0);
        assert_eq!(current_deadline(t(360), &state), t(460));
    }

    #[test]
    fn latest_heartbeat_wins() {
        let id = SessionId::new();
        let events = [
            LicenseEvent::HeartbeatRecorded {
                session_id: id,
                expires_at: t(500),
            },
            LicenseEvent::HeartbeatRecorded {
                session_id: id,
                expires_at: t(700),
            },
        ];
        assert_eq!(
            current_deadline(t(360), &SessionState::fold(&events)),
            t(700)
        );
    }

    #[test]
    fn heartbeat_after_close_fails() {
        let id = SessionId::new();
        for reason in [CloseReason::Released, CloseReason::Expired] {
            // Given a closed session
            let state = SessionState::fold(&[LicenseEvent::SessionClosed {
                session_id: id,
                reason,
            }]);
            // When it heartbeats, then it is not found
            assert_eq!(
                decide_heartbeat(&state, id, ttl(), t(1)),
                Err(DomainError::SessionNotFound)
            );
            assert_eq!(state.closed, Some(reason));
        }
    }

    #[test]
    fn token_is_recorded_once_and_not_after_close() {
        let id = SessionId::new();
        let state = SessionState::default();
        let events = decide_token(&state, id, "k1".into(), "a.b.c".into()).unwrap();
        assert_eq!(events.len(), 1);
        let state = SessionState::fold(&events);
        let expected = SessionToken {
            key_id: "k1".into(),
            token: "a.b.c".into(),
        };
        assert_eq!(state.token.as_ref(), Some(&expected));
        assert_eq!(
            decide_token(&state, id, "k1".into(), "x.y.z".into()),
            Ok(vec![])
        );
        let closed = apply(
            state,
            &LicenseEvent::SessionClosed {
                session_id: id,
                reason: CloseReason::Released,
            },
        );
        assert_eq!(
            decide_token(&closed, id, "k".into(), "t".into()),
            Err(DomainError::SessionNotFound)
        );
    }

    #[test]
    fn license_stream_events_are_ignored() {
        let id = SessionId::new();
        let state = apply(
            SessionState::default(),
            &LicenseEvent::SeatReleased { session_id: id },
        );
        assert_eq!(state, SessionState::default());
    }
}
