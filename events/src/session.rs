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
//! Tokens follow their seat: the first token is minted from `SeatAcquired`;
//! a heartbeat that finds the current token past half its life appends
//! `TokenRenewalDue` next to its `HeartbeatRecorded`, and the signer answers
//! it with a new `TokenIssued`. Nothing is minted for a closed session, and a
//! token recorded here always precedes the close marker (stream version), so
//! every token of a session was signed while it lived.
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
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionToken {
    /// Signing key version (`kid`).
    pub key_id: String,
    /// The compact JWS.
    pub token: String,
    /// Its `exp` (`None` for tokens recorded before renewal existed).
    pub expires_at: Option<DateTime<Utc>>,
}

/// The state of one session stream.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionState {
    /// Stream version of the last applied event; -1 when the stream is empty
    /// (a fresh session has no events here until its first heartbeat/token).
    pub version: i64,
    /// Set by `SessionClosed`; a closed session takes no more heartbeats.
    pub closed: Option<CloseReason>,
    /// Deadline of the latest heartbeat; `None` before the first one.
    pub expires_at: Option<DateTime<Utc>>,
    /// The token, once the signer has minted it (the latest one).
    pub token: Option<SessionToken>,
    /// A renewal was asked for and not answered yet.
    pub renewal_due: bool,
}

impl Default for SessionState {
    fn default() -> Self {
        Self {
            version: -1,
            closed: None,
            expires_at: None,
            token: None,
            renewal_due: false,
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
        // Revived: live again, with the deadline the revival set.
        LicenseEvent::SessionReopened { expires_at, .. } => {
            state.closed = None;
            state.expires_at = Some(*expires_at);
        }
        LicenseEvent::TokenIssued {
            key_id,
            token,
            expires_at,
            ..
        } => {
            state.token = Some(SessionToken {
                key_id: key_id.clone(),
                token: token.clone(),
                expires_at: *expires_at,
            });
            state.renewal_due = false;
        }
        LicenseEvent::TokenRenewalDue { .. } => state.renewal_due = true,
        _ => {}
    }
    state
}

/// The session's current deadline: the latest heartbeat's `expires_at`, or
/// the acquire-time `expires_at` (from `SeatAcquired`) when none yet.
pub fn current_deadline(acquired_expires_at: DateTime<Utc>, state: &SessionState) -> DateTime<Utc> {
    state.expires_at.unwrap_or(acquired_expires_at)
}

/// Decides a heartbeat: extends the deadline to `now + ttl` (never before
/// `borrowed_until`, the end of a borrowed seat's borrow), and asks for
/// a token renewal when the current token has less than half of
/// `token_ttl` left (once: not while a renewal is pending).
///
/// Append the result to `session-<id>` with expected version
/// `state.version`. A heartbeat after the deadline but before the reaper
/// acted still wins (one of the two wins by stream version).
pub fn decide_heartbeat(
    state: &SessionState,
    session_id: SessionId,
    ttl: TimeDelta,
    token_ttl: TimeDelta,
    now: DateTime<Utc>,
    borrowed_until: Option<DateTime<Utc>>,
) -> Result<Vec<LicenseEvent>, DomainError> {
    if state.closed.is_some() {
        return Err(DomainError::SessionNotFound);
    }
    // A borrowed seat keeps its borrow's end: a heartbeat never shortens it.
    let expires_at = borrowed_until.map_or(now + ttl, |end| end.max(now + ttl));
    let mut events = vec![LicenseEvent::HeartbeatRecorded {
        session_id,
        expires_at,
    }];
    if renewal_due(state, token_ttl, now) {
        events.push(LicenseEvent::TokenRenewalDue { session_id });
    }
    Ok(events)
}

/// Whether a heartbeat at `now` should ask for a new token: there is one,
/// none is pending, and it is past half its life (or its expiry is unknown).
pub fn renewal_due(state: &SessionState, token_ttl: TimeDelta, now: DateTime<Utc>) -> bool {
    let Some(token) = &state.token else {
        return false; // the first token is minted from the acquisition
    };
    !state.renewal_due && token.expires_at.is_none_or(|exp| exp - now < token_ttl / 2)
}

/// What authorizes a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// The session's `SeatAcquired`: the first token.
    Acquired,
    /// A `TokenRenewalDue` of the session stream.
    Renewal,
}

/// Decides recording a minted token. Idempotent for a redelivered signer
/// message: a first token when one is recorded, or a renewal when none is
/// pending, gives no events. A closed session gets `SessionNotFound` (the
/// token is not needed any more and must not be recorded).
pub fn decide_token(
    state: &SessionState,
    grant: Grant,
    issued: LicenseEvent,
) -> Result<Vec<LicenseEvent>, DomainError> {
    if state.closed.is_some() {
        return Err(DomainError::SessionNotFound);
    }
    let wanted = match grant {
        Grant::Acquired => state.token.is_none(),
        Grant::Renewal => state.renewal_due,
    };
    Ok(
        if wanted && matches!(issued, LicenseEvent::TokenIssued { .. }) {
            vec![issued]
        } else {
            vec![]
        },
    )
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

    fn token_ttl() -> TimeDelta {
        TimeDelta::seconds(300)
    }

    fn issued(id: SessionId, token: &str, exp: DateTime<Utc>) -> LicenseEvent {
        LicenseEvent::TokenIssued {
            session_id: id,
            key_id: "k1".into(),
            token: token.into(),
            jti: None,
            expires_at: Some(exp),
            authorized_by: None,
        }
    }

    #[test]
    fn heartbeat_extends_the_deadline() {
        let id = SessionId::new();
        // Given a session with no heartbeat yet
        let state = SessionState::default();
        assert_eq!(current_deadline(t(360), &state), t(360));
        // When it heartbeats at t=100
        let events = decide_heartbeat(&state, id, ttl(), token_ttl(), t(100), None).unwrap();
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
        for reason in [
            CloseReason::Released,
            CloseReason::Expired,
            CloseReason::Revoked,
        ] {
            // Given a closed session
            let state = SessionState::fold(&[LicenseEvent::SessionClosed {
                session_id: id,
                reason,
            }]);
            // When it heartbeats, then it is not found
            assert_eq!(
                decide_heartbeat(&state, id, ttl(), token_ttl(), t(1), None),
                Err(DomainError::SessionNotFound)
            );
            assert_eq!(state.closed, Some(reason));
        }
    }

    #[test]
    fn token_is_recorded_once_and_not_after_close() {
        let id = SessionId::new();
        let state = SessionState::default();
        let first = issued(id, "a.b.c", t(300));
        let events = decide_token(&state, Grant::Acquired, first.clone()).unwrap();
        assert_eq!(events, vec![first]);
        let state = SessionState::fold(&events);
        let expected = SessionToken {
            key_id: "k1".into(),
            token: "a.b.c".into(),
            expires_at: Some(t(300)),
        };
        assert_eq!(state.token.as_ref(), Some(&expected));
        let again = issued(id, "x.y.z", t(300));
        assert_eq!(
            decide_token(&state, Grant::Acquired, again.clone()),
            Ok(vec![])
        );
        // No renewal was asked for: nothing to record either.
        assert_eq!(
            decide_token(&state, Grant::Renewal, again.clone()),
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
            decide_token(&closed, Grant::Acquired, again),
            Err(DomainError::SessionNotFound)
        );
    }

    #[test]
    fn renewal_is_asked_once_past_half_life_and_answered_once() {
        let id = SessionId::new();
        // Given a token minted at t=0, valid until t=300
        let state = SessionState::fold(&[issued(id, "a", t(300))]);
        // When heartbeats come before half its life, no renewal is asked
        let early = decide_heartbeat(&state, id, ttl(), token_ttl(), t(140), None).unwrap();
        assert_eq!(early.len(), 1);
        // Past half its life, one is
        let late = decide_heartbeat(&state, id, ttl(), token_ttl(), t(160), None).unwrap();
        assert_eq!(late[1], LicenseEvent::TokenRenewalDue { session_id: id });
        let pending = late.iter().fold(state, apply);
        assert!(pending.renewal_due);
        // ... and not again while it is pending
        let again = decide_heartbeat(&pending, id, ttl(), token_ttl(), t(200), None).unwrap();
        assert_eq!(again.len(), 1);
        // The signer answers it once; the new token clears the request
        let renewed = issued(id, "b", t(460));
        let events = decide_token(&pending, Grant::Renewal, renewed.clone()).unwrap();
        let state = events.iter().fold(pending, apply);
        assert!(!state.renewal_due);
        assert_eq!(
            state.token.as_ref().and_then(|t| t.expires_at),
            Some(t(460))
        );
        assert_eq!(decide_token(&state, Grant::Renewal, renewed), Ok(vec![]));
    }

    #[test]
    fn license_stream_events_are_ignored() {
        let id = SessionId::new();
        let state = apply(
            SessionState::default(),
            &LicenseEvent::SeatReleased {
                session_id: id,
                tokens_valid_until: None,
                linger_until: None,
                revival: 0,
            },
        );
        assert_eq!(state, SessionState::default());
    }
}
