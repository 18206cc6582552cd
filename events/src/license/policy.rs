//! A license's policy: the terms beyond its seat count, and the pure seat
//! arithmetic they imply.
//!
//! Owns the policy object (linger, overdraft, per-user cap, reservations,
//! queue waits, borrowing),
//! its validation, and [`Allocation`]: what an acquire may be granted under
//! a policy, given the seats held now. The policy changes only through
//! `PolicyChanged` events (see [`decide`](super::decide())); every grant,
//! denial and expiry records the policy version that decided it.
//!
//! Must not: do I/O or read a clock.

use serde::{Deserialize, Serialize};

use crate::ids::{GroupId, ReservationName, UserId};

/// Longest linger, in seconds (one day).
pub const MAX_LINGER_SECS: u32 = 86_400;
/// Longest revive window, in seconds (one day).
pub const MAX_REVIVE_WINDOW_SECS: u32 = 86_400;
/// Most reservations a policy may hold.
pub const MAX_RESERVATIONS: usize = 32;
/// Most users, and most groups, one reservation may name.
pub const MAX_RESERVATION_MEMBERS: usize = 100;
/// Most overdraft seats (the same bound as seats).
pub const MAX_OVERDRAFT_SEATS: u32 = 100_000;
/// Longest wait in a license's queue, in seconds (one day).
pub const MAX_QUEUE_WAIT_SECS: u32 = 86_400;
/// Longest borrow, in seconds (30 days).
pub const MAX_BORROW_SECS: u32 = 2_592_000;

/// What a license allows beyond its seat count. The default (every field
/// zero or empty) is the behaviour of a license without a policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// A seat its holder releases stays held for this many seconds (0 to
    /// 86400); the same user on the same machine gets it back meanwhile.
    /// FlexNet's `LINGER`. An admin's release frees the seat at once.
    #[serde(default, deserialize_with = "crate::integral::u32")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 86_400))]
    pub linger_secs: u32,
    /// Seats usable beyond the seat count (0 to 100000); each grant that
    /// uses one is marked `overdraft` in its `SeatAcquired`.
    #[serde(default, deserialize_with = "crate::integral::u32")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 100_000))]
    pub overdraft_seats: u32,
    /// A heartbeat up to this many seconds after its session expired
    /// revives the same session, if a seat is free (0 to 86400; 0: never).
    #[serde(default, deserialize_with = "crate::integral::u32")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 86_400))]
    pub revive_window_secs: u32,
    /// At most this many seats held by one user at once, lingering ones
    /// included (1 to 100000; absent: no cap). FlexNet's `MAX`.
    #[serde(default, deserialize_with = "crate::integral::option_u32")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100_000))]
    pub max_seats_per_user: Option<u32>,
    /// Seats set aside for named users or groups (at most 32, names
    /// unique; their seats add up to at most the seat count).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 32))]
    pub reservations: Vec<Reservation>,
    /// An acquire that asks to wait (`wait_secs`) may wait in the license's
    /// queue for up to this many seconds (0 to 86400; 0: no queue, such an
    /// acquire is denied like any other). RLM's queueing.
    #[serde(default, deserialize_with = "crate::integral::u32")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 86_400))]
    pub max_queue_wait_secs: u32,
    /// An acquire may borrow its seat (take it offline) for up to this many
    /// seconds (0 to 2592000, 30 days; 0: no borrowing). FlexNet's `BORROW`.
    #[serde(default, deserialize_with = "crate::integral::u32")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 2_592_000))]
    pub max_borrow_secs: u32,
}

/// Seats set aside for some users or groups.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Reservation {
    /// Unique within the policy; recorded in the grants that use it.
    pub name: ReservationName,
    /// Seats reserved, at least 1.
    #[serde(deserialize_with = "crate::integral::u32")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100_000))]
    pub seats: u32,
    /// Users (the JWT's `sub`) it is for, at most 100. A reservation
    /// naming no users and no groups keeps its seats free for no one.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 100))]
    pub users: Vec<UserId>,
    /// Groups (the JWT's `groups` claim) it is for, at most 100.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 100))]
    pub groups: Vec<GroupId>,
    /// `false` (the default): its unused seats are kept free for its
    /// members. `true`: others may take them while they are unused; members
    /// still get them first.
    #[serde(default)]
    pub lend_when_idle: bool,
}

impl Reservation {
    /// Whether `user` (with `groups`) is one of its members.
    pub fn admits(&self, user: &UserId, groups: &[GroupId]) -> bool {
        self.users.contains(user) || self.groups.iter().any(|g| groups.contains(g))
    }
}

/// Why a policy was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// `linger_secs` above [`MAX_LINGER_SECS`].
    #[error("linger_secs must be at most 86400, got {0}")]
    Linger(u32),
    /// `revive_window_secs` above [`MAX_REVIVE_WINDOW_SECS`].
    #[error("revive_window_secs must be at most 86400, got {0}")]
    ReviveWindow(u32),
    /// `max_queue_wait_secs` above [`MAX_QUEUE_WAIT_SECS`].
    #[error("max_queue_wait_secs must be at most 86400, got {0}")]
    QueueWait(u32),
    /// `max_borrow_secs` above [`MAX_BORROW_SECS`].
    #[error("max_borrow_secs must be at most 2592000, got {0}")]
    Borrow(u32),
    /// `overdraft_seats` above [`MAX_OVERDRAFT_SEATS`].
    #[error("overdraft_seats must be at most 100000, got {0}")]
    Overdraft(u32),
    /// `max_seats_per_user` outside 1..=100000.
    #[error("max_seats_per_user must be between 1 and 100000, got {0}")]
    UserCap(u32),
    /// More than [`MAX_RESERVATIONS`].
    #[error("at most 32 reservations, got {0}")]
    TooManyReservations(usize),
    /// Two reservations share a name.
    #[error("reservation name {0:?} is used twice")]
    DuplicateName(String),
    /// A reservation of zero seats.
    #[error("reservation {0:?} must reserve at least 1 seat")]
    EmptyReservation(String),
    /// A reservation naming more than [`MAX_RESERVATION_MEMBERS`] users or groups.
    #[error("reservation {0:?} may name at most 100 users and 100 groups")]
    Members(String),
    /// Reserved seats add up to more than the seat count.
    #[error("reservations hold {reserved} seats but the license has {seats}")]
    OverReserved {
        /// Sum of the reservations' seats.
        reserved: u64,
        /// The license's seat count.
        seats: u32,
    },
}

impl Policy {
    /// Checks the policy against a license of `seats` seats.
    pub fn validate(&self, seats: u32) -> Result<(), PolicyError> {
        if self.linger_secs > MAX_LINGER_SECS {
            return Err(PolicyError::Linger(self.linger_secs));
        }
        if self.revive_window_secs > MAX_REVIVE_WINDOW_SECS {
            return Err(PolicyError::ReviveWindow(self.revive_window_secs));
        }
        if self.max_queue_wait_secs > MAX_QUEUE_WAIT_SECS {
            return Err(PolicyError::QueueWait(self.max_queue_wait_secs));
        }
        if self.max_borrow_secs > MAX_BORROW_SECS {
            return Err(PolicyError::Borrow(self.max_borrow_secs));
        }
        if self.overdraft_seats > MAX_OVERDRAFT_SEATS {
            return Err(PolicyError::Overdraft(self.overdraft_seats));
        }
        if let Some(cap) = self.max_seats_per_user {
            if !(1..=MAX_OVERDRAFT_SEATS).contains(&cap) {
                return Err(PolicyError::UserCap(cap));
            }
        }
        if self.reservations.len() > MAX_RESERVATIONS {
            return Err(PolicyError::TooManyReservations(self.reservations.len()));
        }
        let mut names = std::collections::BTreeSet::new();
        for r in &self.reservations {
            let name = r.name.to_string();
            if !names.insert(r.name.clone()) {
                return Err(PolicyError::DuplicateName(name));
            }
            if r.seats == 0 {
                return Err(PolicyError::EmptyReservation(name));
            }
            if r.users.len().max(r.groups.len()) > MAX_RESERVATION_MEMBERS {
                return Err(PolicyError::Members(name));
            }
        }
        self.check_reserved(seats)
    }

    /// Checks that the reservations fit in `seats` seats.
    pub fn check_reserved(&self, seats: u32) -> Result<(), PolicyError> {
        let reserved = self.reserved_seats();
        if reserved > u64::from(seats) {
            return Err(PolicyError::OverReserved { reserved, seats });
        }
        Ok(())
    }

    /// Seats the reservations set aside, in all.
    pub fn reserved_seats(&self) -> u64 {
        self.reservations.iter().map(|r| u64::from(r.seats)).sum()
    }
}

/// Seats held right now, as the allocation rules see them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Held<'a> {
    /// Every seat held: live sessions, lingering releases, and (strict
    /// accounting) ended sessions whose tokens may still be valid.
    pub total: usize,
    /// Seats held by the asking user (live and lingering).
    pub by_user: usize,
    /// Seats held under each reservation (live and lingering), by name.
    pub by_reservation: Vec<(&'a ReservationName, usize)>,
}

/// What an acquire may get under a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Allocation {
    /// A seat: from this reservation, or (`None`) from the open seats;
    /// `overdraft` when it is one of the overdraft seats.
    Seat {
        /// The reservation it counts against.
        reservation: Option<ReservationName>,
        /// It uses an overdraft seat.
        overdraft: bool,
    },
    /// The user holds `max_seats_per_user` seats already.
    UserCap,
    /// Every seat (and overdraft seat) is held.
    Full,
    /// Seats are free, but they are reserved for others.
    Reserved,
}

/// Decides where a new seat for `user` (in `groups`) comes from, given a
/// license of `seats` seats under `policy` and what is `held` now.
///
/// Members take their reservation's seats first. Anyone else (and members
/// whose reservations are full) may take a seat only if the reserved seats
/// still unused, except those of lending reservations, stay free. A seat is
/// an overdraft seat when the seat count is used up once those are counted.
pub fn allocate(
    policy: &Policy,
    seats: u32,
    held: &Held<'_>,
    user: &UserId,
    groups: &[GroupId],
) -> Allocation {
    if policy
        .max_seats_per_user
        .is_some_and(|cap| held.by_user >= cap as usize)
    {
        return Allocation::UserCap;
    }
    let seats = seats as usize;
    let capacity = seats + policy.overdraft_seats as usize;
    if held.total >= capacity {
        return Allocation::Full;
    }
    let used = |name: &ReservationName| {
        held.by_reservation
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, used)| *used)
    };
    let unused = |r: &Reservation| (r.seats as usize).saturating_sub(used(&r.name));
    if let Some(r) = policy
        .reservations
        .iter()
        .find(|r| r.admits(user, groups) && unused(r) > 0)
    {
        return Allocation::Seat {
            reservation: Some(r.name.clone()),
            overdraft: held.total >= seats,
        };
    }
    let kept_free: usize = policy
        .reservations
        .iter()
        .filter(|r| !r.lend_when_idle)
        .map(unused)
        .sum();
    if held.total + kept_free >= capacity {
        return Allocation::Reserved;
    }
    Allocation::Seat {
        reservation: None,
        overdraft: held.total + kept_free >= seats,
    }
}
