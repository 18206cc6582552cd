//! Folding: how each license-stream event changes a [`LicenseState`].
//!
//! Must not: decide anything, do I/O or read a clock.

use chrono::TimeDelta;

use super::{
    effective_token_ttl, LicenseInfo, LicenseState, Lingering, LiveSession, Revivable, Waiter,
};
use crate::catalog::LicenseEvent;

/// Folds one event into the state. Events of other streams (session,
/// checkpoints) are ignored and do not move `version`.
pub fn apply(mut state: LicenseState, event: &LicenseEvent) -> LicenseState {
    if event.category() != crate::catalog::StreamCategory::License {
        return state;
    }
    state.version += 1;
    match event {
        LicenseEvent::LicenseIssued {
            tenant_id,
            license_id,
            product,
            seats,
            session_ttl_secs,
            valid_until,
            token_ttl_secs,
            strict_seats,
        } => {
            state.issued = Some(LicenseInfo {
                tenant_id: tenant_id.clone(),
                license_id: *license_id,
                product: product.clone(),
                seats: *seats,
                session_ttl_secs: *session_ttl_secs,
                valid_until: *valid_until,
                token_ttl_secs: effective_token_ttl(*token_ttl_secs, *session_ttl_secs),
                strict_seats: *strict_seats,
            });
        }
        LicenseEvent::SeatsChanged { seats } => {
            if let Some(info) = &mut state.issued {
                info.seats = *seats;
            }
        }
        LicenseEvent::PolicyChanged { version, policy } => {
            state.policy = policy.clone();
            state.policy_version = *version;
        }
        LicenseEvent::LicenseSuspended { .. } => state.suspended = true,
        LicenseEvent::LicenseReinstated {} => state.suspended = false,
        LicenseEvent::SeatAcquired {
            session_id,
            user_id,
            hardware_id,
            expires_at,
            idempotency_key,
            overdraft,
            reservation,
            borrowed_until,
            ..
        } => {
            state.leave_queue(session_id, None);
            if let Some(info) = &state.issued {
                // Granted at `expires_at - ttl`: lingers that ended before are gone.
                state.prune_lingering(*expires_at - info.session_ttl());
            }
            // A lingering seat of the same user and machine is taken over.
            state
                .lingering
                .retain(|_, l| !(&l.user_id == user_id && &l.hardware_id == hardware_id));
            let holder = (user_id.clone(), hardware_id.clone());
            state.holders.insert(holder, *session_id);
            if let Some(key) = idempotency_key {
                state
                    .idempotency
                    .insert((user_id.clone(), key.clone()), *session_id);
            }
            let session = LiveSession {
                user_id: user_id.clone(),
                hardware_id: hardware_id.clone(),
                expires_at: *expires_at,
                idempotency_key: idempotency_key.clone(),
                acquired_version: state.version,
                overdraft: *overdraft,
                reservation: reservation.clone(),
                revival: 0,
                borrowed_until: *borrowed_until,
            };
            state.sessions.insert(*session_id, session);
        }
        LicenseEvent::SeatReleased {
            session_id,
            tokens_valid_until,
            linger_until,
            ..
        } => {
            if let (Some(until), Some(s)) = (linger_until, state.sessions.get(session_id)) {
                let lingering = Lingering {
                    user_id: s.user_id.clone(),
                    hardware_id: s.hardware_id.clone(),
                    until: *until,
                    overdraft: s.overdraft,
                    reservation: s.reservation.clone(),
                };
                state.lingering.insert(*session_id, lingering);
            }
            state.end_session(session_id, *tokens_valid_until);
        }
        LicenseEvent::SessionExpired {
            session_id,
            tokens_valid_until,
            deadline,
            ..
        } => {
            let window = state.policy.revive_window_secs;
            if let (true, Some(s)) = (window > 0, state.sessions.get(session_id)) {
                let revivable = Revivable {
                    user_id: s.user_id.clone(),
                    hardware_id: s.hardware_id.clone(),
                    until: *deadline + TimeDelta::seconds(i64::from(window)),
                    revival: s.revival,
                };
                state.revivable.insert(*session_id, revivable);
            }
            state.end_session(session_id, *tokens_valid_until);
        }
        LicenseEvent::SessionRevived {
            session_id,
            expires_at,
            overdraft,
            reservation,
            revival,
            ..
        } => {
            if let Some(r) = state.revivable.remove(session_id) {
                state
                    .holders
                    .insert((r.user_id.clone(), r.hardware_id.clone()), *session_id);
                let session = LiveSession {
                    user_id: r.user_id,
                    hardware_id: r.hardware_id,
                    expires_at: *expires_at,
                    idempotency_key: None,
                    acquired_version: state.version,
                    overdraft: *overdraft,
                    reservation: reservation.clone(),
                    revival: *revival,
                    borrowed_until: None,
                };
                state.sessions.insert(*session_id, session);
                // Its seat is live again: not held by its old tokens.
                state.token_holds.remove(session_id);
            }
        }
        LicenseEvent::SessionRevoked {
            session_id,
            tokens_valid_until,
            ..
        } => state.end_session(session_id, Some(*tokens_valid_until)),
        LicenseEvent::QueueJoined {
            session_id,
            user_id,
            hardware_id,
            groups,
            idempotency_key,
            wait_until,
            borrow_secs,
            ..
        } => state.join_queue(Waiter {
            session_id: *session_id,
            user_id: user_id.clone(),
            hardware_id: hardware_id.clone(),
            groups: groups.clone(),
            idempotency_key: idempotency_key.clone(),
            wait_until: *wait_until,
            borrow_secs: *borrow_secs,
        }),
        LicenseEvent::QueueLeft { session_id, reason } => {
            state.leave_queue(session_id, Some(*reason))
        }
        LicenseEvent::AcquireDenied { .. }
        | LicenseEvent::SessionReopened { .. }
        | LicenseEvent::HeartbeatRecorded { .. }
        | LicenseEvent::SessionClosed { .. }
        | LicenseEvent::TokenRenewalDue { .. }
        | LicenseEvent::TokenIssued { .. }
        | LicenseEvent::CheckpointSigned { .. } => {}
    }
    state
}
