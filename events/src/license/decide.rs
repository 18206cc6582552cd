//! The pure `decide` that turns a license command into events.
//!
//! Owns the seat rules: who gets a seat, when an acquire is denied, when a
//! retry gets its first session back, what a release or an expiry appends.
//! Must not: do I/O or read a clock (`now` comes in the command).

use chrono::{DateTime, TimeDelta, Utc};

pub use super::command::LicenseCommand;
pub use super::decision::{Decision, Outcome};
use super::policy::{allocate, Allocation};
use super::queue::{borrow_end, promote};
use super::{
    apply, DomainError, LicenseState, LiveSession, MAX_REASON_CHARS, MAX_WAITERS, SEATS_RANGE,
    SESSION_TTL_RANGE,
};
use crate::catalog::{CloseReason, DenialReason, LicenseEvent, QueueLeaveReason, RevokeReason};
use crate::ids::SessionId;

/// Decides a command against the current state. Pure: same input, same output.
///
/// While waiters queue, a command with a clock first serves the queue (see
/// [`promote`]), so the command is decided as if every waiter the policy
/// admits had its seat already, and serves it again after its own events,
/// so a seat it frees goes to the oldest waiter in the same append.
pub fn decide(state: &LicenseState, cmd: LicenseCommand) -> Result<Decision, DomainError> {
    let Some(now) = cmd
        .clock()
        .filter(|_| !state.queue.is_empty() && state.issued.is_some())
    else {
        return decide_command(state, cmd);
    };
    let mut scratch = state.clone();
    let mut events = promote(&mut scratch, now);
    let mut decision = decide_command(&scratch, cmd)?;
    for event in &decision.license_events {
        scratch = apply(scratch, event);
    }
    let after = promote(&mut scratch, now);
    events.append(&mut decision.license_events);
    events.extend(after);
    decision.license_events = events;
    Ok(decision)
}

fn decide_command(state: &LicenseState, cmd: LicenseCommand) -> Result<Decision, DomainError> {
    use LicenseEvent as E;
    if let LicenseCommand::Issue {
        tenant_id,
        license_id,
        product,
        seats,
        session_ttl_secs,
        valid_until,
        token_ttl_secs,
        strict_seats,
    } = cmd
    {
        if state.issued.is_some() {
            return Err(DomainError::AlreadyIssued);
        }
        check_seats(seats)?;
        if !SESSION_TTL_RANGE.contains(&session_ttl_secs) {
            return Err(DomainError::InvalidSessionTtl(session_ttl_secs));
        }
        if let Some(token_ttl_secs) = token_ttl_secs {
            if !(1..=session_ttl_secs).contains(&token_ttl_secs) {
                return Err(DomainError::InvalidTokenTtl {
                    token_ttl_secs,
                    session_ttl_secs,
                });
            }
        }
        let event = E::LicenseIssued {
            tenant_id,
            license_id,
            product,
            seats,
            session_ttl_secs,
            valid_until,
            token_ttl_secs,
            strict_seats,
        };
        return Ok(Decision::license(vec![event], Outcome::Done));
    }
    let info = state.issued.as_ref().ok_or(DomainError::NotIssued)?;
    match cmd {
        LicenseCommand::Issue { .. } => Err(DomainError::AlreadyIssued),
        LicenseCommand::ChangeSeats { seats, now } => {
            check_seats(seats)?;
            if seats == info.seats {
                return Ok(Decision::nothing(Outcome::Done));
            }
            state.policy.check_reserved(seats)?;
            // The newest sessions beyond the new count (and the overdraft)
            // are revoked.
            let mut newest: Vec<_> = state.sessions.iter().collect();
            newest.sort_by_key(|(_, live)| std::cmp::Reverse(live.acquired_version));
            let capacity = seats as usize + state.policy.overdraft_seats as usize;
            let excess = state.sessions.len().saturating_sub(capacity);
            let revoked = newest
                .into_iter()
                .take(excess)
                .map(|(id, live)| (*id, live));
            let mut decision = revoke(info, revoked, RevokeReason::SeatsReduced, now);
            decision.license_events.insert(0, E::SeatsChanged { seats });
            Ok(decision)
        }
        LicenseCommand::SetPolicy { policy } => {
            policy.validate(info.seats)?;
            if policy == state.policy {
                return Ok(Decision::nothing(Outcome::Done));
            }
            let event = E::PolicyChanged {
                version: state.policy_version + 1,
                policy,
            };
            Ok(Decision::license(vec![event], Outcome::Done))
        }
        LicenseCommand::Suspend { reason, now } => {
            let reason = reason.trim();
            if reason.is_empty()
                || reason.chars().count() > MAX_REASON_CHARS
                || reason.chars().any(char::is_control)
            {
                return Err(DomainError::InvalidReason);
            }
            // Suspending twice is a no-op: the first reason stands.
            if state.suspended {
                return Ok(Decision::nothing(Outcome::Done));
            }
            let live = state.sessions.iter().map(|(id, s)| (*id, s));
            let mut decision = revoke(info, live, RevokeReason::Suspended, now);
            let suspended = E::LicenseSuspended {
                reason: reason.to_owned(),
            };
            decision.license_events.insert(0, suspended);
            Ok(decision)
        }
        LicenseCommand::Reinstate => {
            let events = if state.suspended {
                vec![E::LicenseReinstated {}]
            } else {
                vec![]
            };
            Ok(Decision::license(events, Outcome::Done))
        }
        LicenseCommand::Acquire {
            session_id,
            user_id,
            hardware_id,
            groups,
            idempotency_key,
            wait_secs,
            borrow_secs,
            now,
        } => {
            // A retry gets its first answer back even if the license has since
            // been suspended: it grants nothing new.
            let by_key = idempotency_key
                .as_ref()
                .and_then(|k| state.session_for_key(&user_id, k));
            if let Some(existing) = by_key.or_else(|| state.session_held_by(&user_id, &hardware_id))
            {
                let live = &state.sessions[&existing];
                if live.hardware_id != hardware_id {
                    return Err(DomainError::IdempotencyKeyReused);
                }
                let outcome = Outcome::Acquired {
                    session_id: existing,
                    expires_at: live.expires_at,
                    existing: true,
                };
                return Ok(Decision::nothing(outcome));
            }
            if let Some((position, waiter)) =
                state.waiter_for(&user_id, &hardware_id, idempotency_key.as_ref())
            {
                if waiter.hardware_id != hardware_id {
                    return Err(DomainError::IdempotencyKeyReused);
                }
                let outcome = Outcome::Queued {
                    session_id: waiter.session_id,
                    position,
                    wait_until: waiter.wait_until,
                    existing: true,
                };
                return Ok(Decision::nothing(outcome));
            }
            if state.sessions.contains_key(&session_id) || state.waiter(&session_id).is_some() {
                return Err(DomainError::SessionIdInUse);
            }
            if let Some(asked) = borrow_secs {
                let max = state.policy.max_borrow_secs;
                if asked == 0 || asked > max {
                    return Err(DomainError::BorrowNotAllowed { asked, max });
                }
            }
            let policy_version = state.policy_version;
            let mut denial = if info.valid_until.is_some_and(|until| now > until) {
                Some(DenialReason::LicenseExpired)
            } else if state.suspended {
                Some(DenialReason::Suspended)
            } else {
                None
            };
            // The seat a lingering release of this user and machine holds is
            // theirs again; otherwise the policy allocates one.
            let (mut overdraft, mut reservation) = (false, None);
            if denial.is_none() {
                if let Some((_, lingering)) = state.lingering_of(&user_id, &hardware_id, now) {
                    overdraft = lingering.overdraft;
                    reservation = lingering.reservation.clone();
                } else {
                    let held = state.held_for(now, &user_id, None);
                    match allocate(&state.policy, info.seats, &held, &user_id, &groups) {
                        Allocation::Seat {
                            reservation: r,
                            overdraft: o,
                        } => (reservation, overdraft) = (r, o),
                        Allocation::UserCap => denial = Some(DenialReason::UserLimit),
                        Allocation::Full => denial = Some(DenialReason::NoSeats),
                        Allocation::Reserved => denial = Some(DenialReason::Reserved),
                    }
                }
            }
            let max_wait = state.policy.max_queue_wait_secs;
            let wait = wait_secs.unwrap_or(0).min(max_wait);
            let queueable = matches!(
                denial,
                Some(DenialReason::NoSeats | DenialReason::UserLimit | DenialReason::Reserved)
            );
            if let (true, Some(reason)) = (queueable && wait > 0, denial) {
                if state.queue.len() >= MAX_WAITERS {
                    denial = Some(DenialReason::QueueFull);
                } else {
                    let wait_until = now + TimeDelta::seconds(i64::from(wait));
                    let event = E::QueueJoined {
                        session_id,
                        user_id,
                        hardware_id,
                        groups,
                        idempotency_key,
                        reason,
                        wait_until,
                        borrow_secs,
                        policy_version,
                    };
                    let outcome = Outcome::Queued {
                        session_id,
                        position: state.queue.len() + 1,
                        wait_until,
                        existing: false,
                    };
                    return Ok(Decision::license(vec![event], outcome));
                }
            }
            if let Some(reason) = denial {
                let event = E::AcquireDenied {
                    user_id,
                    hardware_id,
                    reason,
                    policy_version,
                };
                let retry_at = match reason {
                    DenialReason::NoSeats => state.seat_frees_at(now),
                    _ => None,
                };
                let outcome = Outcome::Denied { reason, retry_at };
                return Ok(Decision::license(vec![event], outcome));
            }
            let borrowed_until = borrow_end(&state.policy, borrow_secs, now);
            let expires_at = borrowed_until.unwrap_or(now + info.session_ttl());
            let event = E::SeatAcquired {
                session_id,
                user_id,
                hardware_id,
                expires_at,
                idempotency_key,
                policy_version,
                overdraft,
                reservation,
                queued: false,
                borrowed_until,
            };
            Ok(Decision::license(
                vec![event],
                Outcome::Acquired {
                    session_id,
                    expires_at,
                    existing: false,
                },
            ))
        }
        LicenseCommand::LeaveQueue {
            session_id,
            user_id,
        } => match state.waiter(&session_id) {
            Some((_, w)) if user_id.as_ref().is_none_or(|u| u == &w.user_id) => {
                let event = E::QueueLeft {
                    session_id,
                    reason: QueueLeaveReason::Cancelled,
                };
                Ok(Decision::license(vec![event], Outcome::Done))
            }
            _ => Err(DomainError::NotWaiting),
        },
        LicenseCommand::Promote { .. } => Ok(Decision::nothing(Outcome::Done)),
        LicenseCommand::Revive {
            session_id,
            user_id,
            groups,
            now,
        } => {
            let revivable = state
                .revivable_session(&session_id, &user_id, now)
                .filter(|_| state.policy.revive_window_secs > 0 && !state.suspended)
                .filter(|_| info.valid_until.is_none_or(|until| now <= until))
                .filter(|r| state.session_held_by(&user_id, &r.hardware_id).is_none())
                .ok_or(DomainError::SessionNotFound)?;
            let held = state.held_for(now, &user_id, None);
            let Allocation::Seat {
                reservation,
                overdraft,
            } = allocate(&state.policy, info.seats, &held, &user_id, &groups)
            else {
                return Err(DomainError::SessionNotFound);
            };
            let expires_at = now + info.session_ttl();
            Ok(Decision {
                license_events: vec![E::SessionRevived {
                    session_id,
                    user_id: user_id.clone(),
                    hardware_id: revivable.hardware_id.clone(),
                    revival: revivable.revival + 1,
                    expires_at,
                    policy_version: state.policy_version,
                    overdraft,
                    reservation,
                }],
                session_events: vec![E::SessionReopened {
                    session_id,
                    expires_at,
                }],
                outcome: Outcome::Acquired {
                    session_id,
                    expires_at,
                    existing: false,
                },
            })
        }
        LicenseCommand::Release {
            session_id,
            user_id,
            now,
        } => {
            let live = state.live_session(session_id, user_id.as_ref())?;
            // The holder's own release lingers; an admin's frees the seat.
            let linger = state.policy.linger_secs;
            let linger_until = (user_id.is_some() && linger > 0)
                .then(|| now + TimeDelta::seconds(i64::from(linger)));
            Ok(Decision {
                license_events: vec![E::SeatReleased {
                    session_id,
                    tokens_valid_until: Some(tokens_until(info, live, now)),
                    linger_until,
                    revival: live.revival,
                }],
                session_events: vec![E::SessionClosed {
                    session_id,
                    reason: CloseReason::Released,
                }],
                outcome: Outcome::Done,
            })
        }
        LicenseCommand::Expire {
            session_id,
            deadline,
            now,
        } => {
            let live = state.live_session(session_id, None)?;
            if now < deadline {
                return Err(DomainError::NotYetExpired(deadline));
            }
            Ok(Decision {
                license_events: vec![E::SessionExpired {
                    session_id,
                    deadline,
                    tokens_valid_until: Some(tokens_until(info, live, now)),
                    policy_version: state.policy_version,
                    revival: live.revival,
                }],
                session_events: vec![E::SessionClosed {
                    session_id,
                    reason: CloseReason::Expired,
                }],
                outcome: Outcome::Done,
            })
        }
    }
}

/// Revokes `sessions`: a `SessionRevoked` each on the license stream and a
/// close marker each on their session streams.
fn revoke<'a>(
    info: &super::LicenseInfo,
    sessions: impl Iterator<Item = (SessionId, &'a LiveSession)>,
    reason: RevokeReason,
    now: DateTime<Utc>,
) -> Decision {
    let mut decision = Decision::nothing(Outcome::Done);
    for (session_id, live) in sessions {
        decision.license_events.push(LicenseEvent::SessionRevoked {
            session_id,
            reason,
            tokens_valid_until: tokens_until(info, live, now),
            revival: live.revival,
        });
        decision.session_events.push(LicenseEvent::SessionClosed {
            session_id,
            reason: CloseReason::Revoked,
        });
    }
    decision
}

/// Until when the tokens of `live`, ending at `now`, may be valid: one
/// token lifetime after the end, or the end of its borrow (the `exp` of a
/// borrowed seat's tokens), plus the allowed clock skew.
fn tokens_until(
    info: &super::LicenseInfo,
    live: &LiveSession,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let until = info.tokens_valid_until(now);
    match live.borrowed_until {
        Some(end) => until.max(end + TimeDelta::seconds(super::CLOCK_SKEW_SECS)),
        None => until,
    }
}

fn check_seats(seats: u32) -> Result<(), DomainError> {
    if SEATS_RANGE.contains(&seats) {
        Ok(())
    } else {
        Err(DomainError::InvalidSeats(seats))
    }
}
