//! Seats held beyond the live sessions, and the policy's view of what is
//! held: released seats a linger keeps, expired sessions a revive window
//! may bring back, the capacity with overdraft, and the per-user and
//! per-reservation counts [`allocate`](super::allocate) decides on.
//!
//! Must not: do I/O or read a clock (`now` comes from the caller).

use chrono::{DateTime, Utc};

use super::{Held, LicenseState};
use crate::ids::{HardwareId, ReservationName, SessionId, UserId};

/// An expired session a heartbeat may still revive (the policy's revive window).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Revivable {
    /// Its holder.
    pub user_id: UserId,
    /// Its machine.
    pub hardware_id: HardwareId,
    /// Revivable until then (its deadline plus the window).
    pub until: DateTime<Utc>,
    /// Its revival count when it expired.
    pub revival: u32,
}

/// A released seat its holder's policy keeps held for a while (linger).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lingering {
    /// Its holder.
    pub user_id: UserId,
    /// Its machine.
    pub hardware_id: HardwareId,
    /// Held until then.
    pub until: DateTime<Utc>,
    /// It was an overdraft seat.
    pub overdraft: bool,
    /// The reservation it counts against.
    pub reservation: Option<ReservationName>,
}

impl LicenseState {
    /// Released seats still lingering at `now`.
    pub fn lingering_at(
        &self,
        now: DateTime<Utc>,
    ) -> impl Iterator<Item = (&SessionId, &Lingering)> + '_ {
        self.lingering.iter().filter(move |(_, l)| l.until > now)
    }

    /// Seats held at `now`: live sessions, lingering releases, plus, with
    /// strict accounting, ended sessions whose tokens may still be valid
    /// (a lingering session's seat counted once).
    pub fn seats_held(&self, now: DateTime<Utc>) -> usize {
        let strict = self.issued.as_ref().is_some_and(|i| i.strict_seats);
        let lingering = self.lingering_at(now).count();
        let held_by_tokens = if strict {
            self.token_holds
                .iter()
                .filter(|(id, until)| {
                    **until > now && self.lingering.get(id).is_none_or(|l| l.until <= now)
                })
                .count()
        } else {
            0
        };
        self.sessions.len() + lingering + held_by_tokens
    }

    /// Seats held at `now` as the policy's allocation sees them, for an
    /// acquire by `user`; `reclaiming` (a lingering seat of the same user
    /// and machine, which the acquire takes over) is not counted for the user.
    pub fn held_for(
        &self,
        now: DateTime<Utc>,
        user: &UserId,
        reclaiming: Option<&SessionId>,
    ) -> Held<'_> {
        let live = self
            .sessions
            .values()
            .map(|s| (&s.user_id, s.reservation.as_ref()));
        let lingering = self
            .lingering_at(now)
            .filter(|(id, _)| Some(*id) != reclaiming)
            .map(|(_, l)| (&l.user_id, l.reservation.as_ref()));
        let mut held = Held {
            total: self.seats_held(now),
            ..Held::default()
        };
        for (holder, reservation) in live.chain(lingering) {
            if holder == user {
                held.by_user += 1;
            }
            if let Some(name) = reservation {
                match held.by_reservation.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, used)) => *used += 1,
                    None => held.by_reservation.push((name, 1)),
                }
            }
        }
        held
    }

    /// The lingering seat `user` released on `hardware_id`, if it still
    /// lingers at `now`.
    pub fn lingering_of(
        &self,
        user: &UserId,
        hardware_id: &HardwareId,
        now: DateTime<Utc>,
    ) -> Option<(SessionId, &Lingering)> {
        self.lingering_at(now)
            .find(|(_, l)| &l.user_id == user && &l.hardware_id == hardware_id)
            .map(|(id, l)| (*id, l))
    }

    /// Drops lingering seats whose linger ended at or before `at` (an
    /// instant a folded event shows has passed).
    pub(super) fn prune_lingering(&mut self, at: DateTime<Utc>) {
        self.lingering.retain(|_, l| l.until > at);
        self.revivable.retain(|_, r| r.until > at);
    }

    /// The expired session `session_id` of `user_id`, if a heartbeat at
    /// `now` may still revive it.
    pub fn revivable_session(
        &self,
        session_id: &SessionId,
        user_id: &UserId,
        now: DateTime<Utc>,
    ) -> Option<&Revivable> {
        self.revivable
            .get(session_id)
            .filter(|r| &r.user_id == user_id && r.until >= now)
    }
}
