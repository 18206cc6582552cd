//! The license's seat queue: acquires that asked to wait, oldest first, and
//! the pure promotion that grants them seats as seats free.
//!
//! Owns the waiter records folded from `QueueJoined` / `QueueLeft` /
//! queued `SeatAcquired`, a waiter's position, and [`promote`]: at an
//! instant, time out the waiters whose wait ran out, then grant, oldest
//! first, every waiter the policy admits. [`decide`](super::decide()) runs
//! it before and after every command that carries a clock, so a newcomer
//! never takes a seat an older waiter may take, and a seat freed by a
//! release or an expiry goes to the queue in the same append. Because the
//! queue lives in the license stream, this holds across replicas: every
//! append expects the stream's version.
//!
//! Must not: do I/O or read a clock (`now` comes from the caller).

use std::collections::VecDeque;

use chrono::{DateTime, TimeDelta, Utc};

use super::{allocate, apply, Allocation, LicenseState};
use crate::catalog::{LicenseEvent, QueueLeaveReason};
use crate::ids::{GroupId, HardwareId, IdempotencyKey, SessionId, UserId};

/// Most waiters one license's queue holds; more are denied `queue_full`.
pub const MAX_WAITERS: usize = 10_000;
/// How many waiters that left the queue a license remembers (for their
/// status), newest kept.
pub const REMEMBERED_LEFT: usize = 1_024;

/// An acquire waiting in the queue.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Waiter {
    /// The session a grant creates.
    pub session_id: SessionId,
    /// Who waits.
    pub user_id: UserId,
    /// For which machine.
    pub hardware_id: HardwareId,
    /// The caller's groups, for the reservations.
    pub groups: Vec<GroupId>,
    /// The acquire's `Idempotency-Key`.
    pub idempotency_key: Option<IdempotencyKey>,
    /// It gives up then.
    pub wait_until: DateTime<Utc>,
    /// Borrow the seat for this long once granted.
    pub borrow_secs: Option<u32>,
}

/// A waiter that left the queue without a seat.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeftWaiter {
    /// Its session id.
    pub session_id: SessionId,
    /// Who waited.
    pub user_id: UserId,
    /// Why it left.
    pub reason: QueueLeaveReason,
}

/// Where a waiter stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueStatus<'a> {
    /// Still waiting: 1-based position among `waiters`.
    Waiting {
        /// The waiter.
        waiter: &'a Waiter,
        /// 1 = next in line.
        position: usize,
        /// Waiters in all.
        waiters: usize,
    },
    /// Granted: the session is live.
    Granted,
    /// Left without a seat.
    Left(QueueLeaveReason),
    /// Unknown to the license for this caller (never queued, someone
    /// else's, ended after its grant, or forgotten).
    Unknown,
}

impl LicenseState {
    /// The waiter `session_id` and its 1-based position, if it waits.
    pub fn waiter(&self, session_id: &SessionId) -> Option<(usize, &Waiter)> {
        self.queue
            .iter()
            .enumerate()
            .find(|(_, w)| &w.session_id == session_id)
            .map(|(i, w)| (i + 1, w))
    }

    /// The waiting entry of `user_id` on `hardware_id` (or under its
    /// idempotency key), if any.
    pub fn waiter_for(
        &self,
        user_id: &UserId,
        hardware_id: &HardwareId,
        key: Option<&IdempotencyKey>,
    ) -> Option<(usize, &Waiter)> {
        self.queue
            .iter()
            .enumerate()
            .find(|(_, w)| {
                &w.user_id == user_id
                    && (&w.hardware_id == hardware_id
                        || key.is_some_and(|k| w.idempotency_key.as_ref() == Some(k)))
            })
            .map(|(i, w)| (i + 1, w))
    }

    /// Where the waiter `session_id` stands, as `user_id` (`None`: an
    /// admin) may see it.
    pub fn queue_status(
        &self,
        session_id: &SessionId,
        user_id: Option<&UserId>,
    ) -> QueueStatus<'_> {
        let mine = |holder: &UserId| user_id.is_none_or(|u| u == holder);
        if let Some((position, waiter)) = self.waiter(session_id).filter(|(_, w)| mine(&w.user_id))
        {
            return QueueStatus::Waiting {
                waiter,
                position,
                waiters: self.queue.len(),
            };
        }
        if self
            .sessions
            .get(session_id)
            .is_some_and(|s| mine(&s.user_id))
        {
            return QueueStatus::Granted;
        }
        match self
            .queue_left
            .iter()
            .find(|l| &l.session_id == session_id && mine(&l.user_id))
        {
            Some(left) => QueueStatus::Left(left.reason),
            None => QueueStatus::Unknown,
        }
    }

    pub(super) fn join_queue(&mut self, waiter: Waiter) {
        self.queue.push(waiter);
    }

    /// Removes a waiter (granted, or left with `reason`).
    pub(super) fn leave_queue(&mut self, session_id: &SessionId, left: Option<QueueLeaveReason>) {
        let Some(index) = self.queue.iter().position(|w| &w.session_id == session_id) else {
            return;
        };
        let waiter = self.queue.remove(index);
        if let Some(reason) = left {
            remember(&mut self.queue_left, waiter, reason);
        }
    }
}

fn remember(left: &mut VecDeque<LeftWaiter>, waiter: Waiter, reason: QueueLeaveReason) {
    if left.len() >= REMEMBERED_LEFT {
        left.pop_front();
    }
    left.push_back(LeftWaiter {
        session_id: waiter.session_id,
        user_id: waiter.user_id,
        reason,
    });
}

/// Serves the queue at `now`, folding what it appends into `state`: waiters
/// whose wait ran out leave (`QueueLeft` `timed_out`), then each remaining
/// waiter, oldest first, that the policy admits gets a seat (`SeatAcquired`
/// with `queued`). A waiter the policy does not admit yet (its user's cap,
/// seats reserved for others) keeps its place and does not block younger
/// waiters it does not compete with. Nothing is granted while the license
/// is suspended or past its `valid_until`.
pub fn promote(state: &mut LicenseState, now: DateTime<Utc>) -> Vec<LicenseEvent> {
    let mut events = Vec::new();
    let Some(info) = state.issued.clone() else {
        return events;
    };
    let granting = !state.suspended && info.valid_until.is_none_or(|until| now <= until);
    for waiter in state.queue.clone() {
        let event = if waiter.wait_until <= now {
            LicenseEvent::QueueLeft {
                session_id: waiter.session_id,
                reason: QueueLeaveReason::TimedOut,
            }
        } else if !granting
            || state
                .session_held_by(&waiter.user_id, &waiter.hardware_id)
                .is_some()
        {
            continue;
        } else {
            let held = state.held_for(now, &waiter.user_id, None);
            let Allocation::Seat {
                reservation,
                overdraft,
            } = allocate(
                &state.policy,
                info.seats,
                &held,
                &waiter.user_id,
                &waiter.groups,
            )
            else {
                continue;
            };
            let borrowed_until = borrow_end(&state.policy, waiter.borrow_secs, now);
            LicenseEvent::SeatAcquired {
                session_id: waiter.session_id,
                user_id: waiter.user_id,
                hardware_id: waiter.hardware_id,
                expires_at: borrowed_until.unwrap_or(now + info.session_ttl()),
                idempotency_key: waiter.idempotency_key,
                policy_version: state.policy_version,
                overdraft,
                reservation,
                queued: true,
                borrowed_until,
            }
        };
        *state = apply(std::mem::take(state), &event);
        events.push(event);
    }
    events
}

/// When a seat borrowed for `borrow_secs` at `now` is due back, under
/// `policy` (`None`: not borrowed; a borrow longer than the policy allows
/// now is cut to its maximum).
pub(super) fn borrow_end(
    policy: &super::Policy,
    borrow_secs: Option<u32>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let secs = borrow_secs?.min(policy.max_borrow_secs);
    (secs > 0).then(|| now + TimeDelta::seconds(i64::from(secs)))
}
