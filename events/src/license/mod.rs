//! The license aggregate: who holds which seat of one license.
//!
//! Owns the state folded from a license stream (`license-<uuid>`), the pure
//! `apply` that folds it, and (in [`decide`](self::decide())) the pure
//! decisions that turn a command into the events to append. This is the one
//! implementation of the seat rules: the service, the reaper and the audit
//! replay all call it.
//!
//! How the rules hold under concurrency: the caller appends a decision's
//! license events with `expected version = state.version`, so two replicas
//! deciding on the same state cannot both take the last seat; the loser gets
//! a conflict, re-reads and re-decides. Session-stream events in a decision
//! (the `SessionClosed` marker) go in the same atomic append with the session
//! stream's expected version (see [`crate::session`]).
//!
//! Must not: do I/O, read clocks or generate ids (commands carry `now` and
//! the new session id), or return technical errors.

mod apply;
mod command;
mod decide;
mod decision;
mod error;
mod held;
mod policy;
mod queue;

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};

use crate::catalog::LicenseEvent;
use crate::ids::{
    HardwareId, IdempotencyKey, LicenseId, ProductId, ReservationName, SessionId, TenantId, UserId,
};

pub use apply::apply;
pub use decide::{decide, Decision, LicenseCommand, Outcome};
pub use error::DomainError;
pub use held::{Lingering, Revivable};
pub use policy::{
    allocate, Allocation, Held, Policy, PolicyError, Reservation, MAX_BORROW_SECS, MAX_LINGER_SECS,
    MAX_OVERDRAFT_SEATS, MAX_QUEUE_WAIT_SECS, MAX_RESERVATIONS, MAX_RESERVATION_MEMBERS,
    MAX_REVIVE_WINDOW_SECS,
};
pub use queue::{promote, LeftWaiter, QueueStatus, Waiter, MAX_WAITERS, REMEMBERED_LEFT};

/// Seat counts a license may have.
pub const SEATS_RANGE: std::ops::RangeInclusive<u32> = 1..=100_000;
/// Session TTLs a license may have, in seconds (1 s to 7 days).
pub const SESSION_TTL_RANGE: std::ops::RangeInclusive<u32> = 1..=604_800;
/// Default session TTL in seconds.
pub const DEFAULT_SESSION_TTL_SECS: u32 = 360;
/// Default license-token lifetime in seconds (capped at the session TTL).
pub const DEFAULT_TOKEN_TTL_SECS: u32 = 300;
/// Clock skew allowed between the service's replicas and the signer when
/// bounding how long an ended session's tokens may still be valid.
pub const CLOCK_SKEW_SECS: i64 = 5;
/// Longest suspension reason, in characters.
pub const MAX_REASON_CHARS: usize = 1_000;

/// Terms of an issued license.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LicenseInfo {
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// The license.
    pub license_id: LicenseId,
    /// Licensed product.
    pub product: ProductId,
    /// Current seat count (may be below the sessions in use after a decrease).
    pub seats: u32,
    /// Session TTL in seconds.
    pub session_ttl_secs: u32,
    /// No new seats after this instant; `None` = perpetual.
    pub valid_until: Option<DateTime<Utc>>,
    /// Lifetime of each license token in seconds (default applied, at most the session TTL).
    pub token_ttl_secs: u32,
    /// Strict seat accounting (see [`LicenseState::seats_held`]).
    pub strict_seats: bool,
}

impl LicenseInfo {
    /// The session TTL as a duration.
    pub fn session_ttl(&self) -> TimeDelta {
        TimeDelta::seconds(i64::from(self.session_ttl_secs))
    }

    /// The token lifetime as a duration.
    pub fn token_ttl(&self) -> TimeDelta {
        TimeDelta::seconds(i64::from(self.token_ttl_secs))
    }

    /// Until when the tokens of a session that ends at `now` may be valid:
    /// every token was signed while the session lived, so it expires within
    /// one token lifetime of the end (plus the allowed clock skew).
    pub fn tokens_valid_until(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + self.token_ttl() + TimeDelta::seconds(CLOCK_SKEW_SECS)
    }
}

/// The token lifetime a license gets: the requested one, or the default
/// capped at the session TTL.
pub fn effective_token_ttl(requested: Option<u32>, session_ttl_secs: u32) -> u32 {
    requested.unwrap_or(DEFAULT_TOKEN_TTL_SECS.min(session_ttl_secs))
}

/// A session holding a seat, as of its `SeatAcquired`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LiveSession {
    /// Holder.
    pub user_id: UserId,
    /// Machine.
    pub hardware_id: HardwareId,
    /// Deadline as of the acquire; heartbeats extend it in the session stream
    /// (see [`crate::session::current_deadline`]).
    pub expires_at: DateTime<Utc>,
    /// The acquire's `Idempotency-Key`, if any.
    pub idempotency_key: Option<IdempotencyKey>,
    /// License-stream version of its `SeatAcquired` (acquire order).
    pub acquired_version: i64,
    /// It holds one of the policy's overdraft seats.
    #[serde(default)]
    pub overdraft: bool,
    /// The reservation it counts against.
    #[serde(default)]
    pub reservation: Option<ReservationName>,
    /// How many times it was revived (0: never).
    #[serde(default)]
    pub revival: u32,
    /// Borrowed (offline) until then; its deadline is that instant.
    #[serde(default)]
    pub borrowed_until: Option<DateTime<Utc>>,
}

/// The state of one license, folded from its stream.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LicenseState {
    /// Stream version of the last applied event; -1 when none (the expected
    /// version for the next append).
    pub version: i64,
    /// Terms; `None` until `LicenseIssued`.
    pub issued: Option<LicenseInfo>,
    /// New acquires are denied while set.
    pub suspended: bool,
    /// Live sessions (acquired, neither released nor expired).
    pub sessions: BTreeMap<SessionId, LiveSession>,
    /// (user, idempotency key) -> live session.
    #[serde(with = "crate::pairs")]
    idempotency: BTreeMap<(UserId, IdempotencyKey), SessionId>,
    /// (user, hardware id) -> live session; O(log n) duplicate check.
    #[serde(with = "crate::pairs")]
    holders: BTreeMap<(UserId, HardwareId), SessionId>,
    /// Ended sessions whose tokens may still be valid, until when. Pruned as
    /// later events show those instants passed.
    pub token_holds: BTreeMap<SessionId, DateTime<Utc>>,
    /// The policy in force (the default until the first `PolicyChanged`).
    #[serde(default)]
    pub policy: Policy,
    /// Its version (0: the default policy).
    #[serde(default)]
    pub policy_version: u32,
    /// Released seats still held by the policy's linger, until when. Pruned
    /// as later events show those instants passed.
    #[serde(default)]
    pub lingering: BTreeMap<SessionId, Lingering>,
    /// Expired sessions still inside the policy's revive window. Pruned as
    /// later events show those instants passed.
    #[serde(default)]
    pub revivable: BTreeMap<SessionId, Revivable>,
    /// Acquires waiting for a seat, oldest first.
    #[serde(default)]
    pub queue: Vec<Waiter>,
    /// The last [`REMEMBERED_LEFT`] waiters that left without a seat.
    #[serde(default)]
    pub queue_left: std::collections::VecDeque<LeftWaiter>,
}

impl Default for LicenseState {
    fn default() -> Self {
        Self {
            version: -1,
            issued: None,
            suspended: false,
            sessions: BTreeMap::new(),
            idempotency: BTreeMap::new(),
            holders: BTreeMap::new(),
            token_holds: BTreeMap::new(),
            policy: Policy::default(),
            policy_version: 0,
            lingering: BTreeMap::new(),
            revivable: BTreeMap::new(),
            queue: Vec::new(),
            queue_left: std::collections::VecDeque::new(),
        }
    }
}

impl LicenseState {
    /// Folds a license stream from the start.
    pub fn fold<'a>(events: impl IntoIterator<Item = &'a LicenseEvent>) -> Self {
        events.into_iter().fold(Self::default(), apply)
    }

    /// Current seat count (0 before issue).
    pub fn seats(&self) -> u32 {
        self.issued.as_ref().map_or(0, |info| info.seats)
    }

    /// Seats usable at most: the seat count plus the policy's overdraft.
    pub fn capacity(&self) -> usize {
        self.seats() as usize + self.policy.overdraft_seats as usize
    }

    /// With strict accounting, when a seat frees if none is free at `now`
    /// because of token holds (`None`: not strict, a seat is free, or live
    /// sessions alone fill the license).
    pub fn seat_frees_at(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if !self.issued.as_ref().is_some_and(|i| i.strict_seats) {
            return None;
        }
        let seats = self.capacity();
        if self.sessions.len() >= seats || self.seats_held(now) < seats {
            return None;
        }
        let mut untils: Vec<_> = self.token_holds.values().filter(|u| **u > now).collect();
        untils.sort();
        // Holds that must lapse before live + holds drops below the seats.
        let excess = self.seats_held(now) - seats;
        untils.get(excess).map(|u| **u)
    }

    pub(crate) fn end_session(
        &mut self,
        session_id: &SessionId,
        tokens_valid_until: Option<DateTime<Utc>>,
    ) {
        let mut borrowed = false;
        if let Some(s) = self.sessions.remove(session_id) {
            borrowed = s.borrowed_until.is_some();
            // Indexes only hold live sessions; drop entries pointing here.
            let holder = (s.user_id.clone(), s.hardware_id);
            if self.holders.get(&holder) == Some(session_id) {
                self.holders.remove(&holder);
            }
            if let Some(key) = s.idempotency_key {
                let entry = (s.user_id, key);
                if self.idempotency.get(&entry) == Some(session_id) {
                    self.idempotency.remove(&entry);
                }
            }
        }
        if let (Some(until), Some(info)) = (tokens_valid_until, &self.issued) {
            // The event happened at `until - token lifetime - skew`: holds that
            // lapsed before then are gone for good. A borrowed seat's `until`
            // is its borrow's end, which says nothing of when it ended.
            if !borrowed {
                let at = until - info.token_ttl() - TimeDelta::seconds(CLOCK_SKEW_SECS);
                self.token_holds.retain(|_, u| *u > at);
                self.prune_lingering(at);
            }
            self.token_holds.insert(*session_id, until);
        }
    }

    /// Live sessions of `user_id` (all live sessions when `None`, for admins).
    pub fn sessions_of<'a>(
        &'a self,
        user_id: Option<&'a UserId>,
    ) -> impl Iterator<Item = (SessionId, &'a LiveSession)> + 'a {
        self.sessions
            .iter()
            .filter(move |(_, s)| user_id.is_none_or(|u| &s.user_id == u))
            .map(|(id, s)| (*id, s))
    }

    /// The live session `session_id` if `user_id` may act on it (`None` =
    /// admin); someone else's session is `SessionNotFound`, never forbidden.
    pub fn live_session(
        &self,
        session_id: SessionId,
        user_id: Option<&UserId>,
    ) -> Result<&LiveSession, DomainError> {
        match self.sessions.get(&session_id) {
            Some(s) if user_id.is_none_or(|u| &s.user_id == u) => Ok(s),
            _ => Err(DomainError::SessionNotFound),
        }
    }

    /// The live session `user_id` holds for `hardware_id`, if any.
    pub fn session_held_by(&self, user_id: &UserId, hardware_id: &HardwareId) -> Option<SessionId> {
        self.holders
            .get(&(user_id.clone(), hardware_id.clone()))
            .copied()
    }

    /// The live session a user's idempotency key maps to, if any.
    pub fn session_for_key(&self, user_id: &UserId, key: &IdempotencyKey) -> Option<SessionId> {
        self.idempotency
            .get(&(user_id.clone(), key.clone()))
            .copied()
    }

    /// Reaper candidates: sessions whose acquire-time deadline is at or
    /// before `now`. Heartbeats may have extended them: check each with
    /// [`crate::session::current_deadline`] before deciding `Expire`.
    pub fn sessions_due(
        &self,
        now: DateTime<Utc>,
    ) -> impl Iterator<Item = (SessionId, &LiveSession)> + '_ {
        self.sessions
            .iter()
            .filter(move |(_, s)| s.expires_at <= now)
            .map(|(id, s)| (*id, s))
    }
}

/// Issues a test license of `seats` seats with a `session_ttl_secs` TTL
/// (fixed tenant, id and product).
#[cfg(test)]
pub(crate) fn issue_for_tests(seats: u32, session_ttl_secs: u32) -> LicenseCommand {
    LicenseCommand::Issue {
        tenant_id: TenantId::parse("t").unwrap(),
        license_id: LicenseId::from_uuid(uuid::Uuid::from_u128(1)),
        product: ProductId::parse("p").unwrap(),
        seats,
        session_ttl_secs,
        valid_until: None,
        token_ttl_secs: None,
        strict_seats: false,
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod policy_tests;

#[cfg(test)]
mod policy_proptests;

#[cfg(test)]
mod queue_proptests;
