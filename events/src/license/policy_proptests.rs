//! Property tests of the policy rules under any interleaving of acquires,
//! releases (by holders and admins), expiries, policy changes and time.
//!
//! Checked against a model kept here, from the events alone:
//! - seats held (live plus lingering) never exceed seats + overdraft when a
//!   seat is granted, and overdraft grants are marked exactly when the seat
//!   count (with the reserved seats kept free) is used up;
//! - no user ever holds more than the per-user cap;
//! - under a policy set before the first acquire, a member of a
//!   non-lending reservation with an unused reserved seat is never turned
//!   away for want of seats;
//! - folding the events gives the step-by-step state.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::catalog::{DenialReason, LicenseEvent};
use crate::ids::{GroupId, ReservationName};

const SEATS: u32 = 3;

#[derive(Clone, Debug)]
enum Step {
    Acquire { user: u8, hw: u8, group: bool },
    Release { pick: usize, by_holder: bool },
    Expire { pick: usize },
    Revive { pick: usize },
    SetPolicy(Policy),
    Advance(i64),
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        prop_oneof![Just(0u32), 1u32..=60],
        0u32..=2,
        prop_oneof![Just(0u32), 1u32..=120],
        proptest::option::of(1u32..=2),
        proptest::option::of((1u32..=2, any::<bool>())),
    )
        .prop_map(
            |(linger_secs, overdraft_seats, revive_window_secs, max_seats_per_user, reserve)| {
                Policy {
                    max_borrow_secs: 0,
                    max_queue_wait_secs: 0,
                    linger_secs,
                    overdraft_seats,
                    revive_window_secs,
                    max_seats_per_user,
                    reservations: reserve
                        .map(|(seats, lend_when_idle)| Reservation {
                            name: ReservationName::parse("farm").unwrap(),
                            seats,
                            users: vec![user(0)],
                            groups: vec![group()],
                            lend_when_idle,
                        })
                        .into_iter()
                        .collect(),
                }
            },
        )
}

fn step(policy_changes: bool) -> impl Strategy<Value = Step> {
    let change = if policy_changes { 1 } else { 0 };
    prop_oneof![
        6 => (0u8..4, 0u8..2, any::<bool>()).prop_map(|(user, hw, group)| Step::Acquire { user, hw, group }),
        3 => (any::<usize>(), any::<bool>()).prop_map(|(pick, by_holder)| Step::Release { pick, by_holder }),
        1 => any::<usize>().prop_map(|pick| Step::Expire { pick }),
        1 => any::<usize>().prop_map(|pick| Step::Revive { pick }),
        change => policy().prop_map(Step::SetPolicy),
        2 => (0i64..90).prop_map(Step::Advance),
    ]
}

fn t0() -> DateTime<Utc> {
    Utc.timestamp_opt(1_740_000_000, 0).unwrap()
}

fn user(n: u8) -> UserId {
    UserId::parse(&format!("user-{n}")).unwrap()
}

fn group() -> GroupId {
    GroupId::parse("builders").unwrap()
}

/// A seat the model sees held: by whom, against which reservation, and
/// (for a lingering release) until when.
#[derive(Clone, Debug)]
struct Seat {
    user: UserId,
    hw: HardwareId,
    reservation: Option<ReservationName>,
    lingers_until: Option<DateTime<Utc>>,
}

struct World {
    now: DateTime<Utc>,
    state: LicenseState,
    log: Vec<LicenseEvent>,
    next_id: u128,
    /// Live sessions and lingering releases, as the events say.
    seats: BTreeMap<SessionId, Seat>,
    /// Expired sessions: holder, machine, until when the window in force at
    /// the expiry allowed a revival.
    expired: BTreeMap<SessionId, (UserId, HardwareId, DateTime<Utc>)>,
    /// Whether the policy may have changed after the first acquire.
    policy_changed_late: bool,
    acquired_once: bool,
}

impl World {
    fn new(policy: Policy) -> Self {
        let mut world = World {
            now: t0(),
            state: LicenseState::default(),
            log: Vec::new(),
            next_id: 10,
            seats: BTreeMap::new(),
            expired: BTreeMap::new(),
            policy_changed_late: false,
            acquired_once: false,
        };
        world.decide(super::issue_for_tests(SEATS, 120));
        world.decide(LicenseCommand::SetPolicy { policy });
        world
    }

    fn held(&self) -> impl Iterator<Item = (&SessionId, &Seat)> {
        let now = self.now;
        self.seats
            .iter()
            .filter(move |(_, s)| s.lingers_until.is_none_or(|u| u > now))
    }

    fn pick_live(&self, pick: usize) -> Option<(SessionId, UserId)> {
        let live: Vec<_> = self.state.sessions.iter().collect();
        (!live.is_empty()).then(|| {
            let (id, s) = live[pick % live.len()];
            (*id, s.user_id.clone())
        })
    }

    fn decide(&mut self, cmd: LicenseCommand) -> Option<Decision> {
        let decision = decide(&self.state, cmd).ok()?;
        for e in &decision.license_events {
            self.state = apply(std::mem::take(&mut self.state), e);
            self.log.push(e.clone());
        }
        Some(decision)
    }

    fn run(&mut self, step: Step) {
        match step {
            Step::Advance(secs) => self.now += TimeDelta::seconds(secs),
            Step::SetPolicy(policy) => {
                self.policy_changed_late |= self.acquired_once;
                self.decide(LicenseCommand::SetPolicy { policy });
            }
            Step::Release { pick, by_holder } => {
                let Some((session_id, holder)) = self.pick_live(pick) else {
                    return;
                };
                let cmd = LicenseCommand::Release {
                    session_id,
                    user_id: by_holder.then_some(holder),
                    now: self.now,
                };
                let decision = self.decide(cmd).expect("a live session releases");
                match &decision.license_events[0] {
                    LicenseEvent::SeatReleased {
                        linger_until: Some(until),
                        ..
                    } => {
                        assert!(by_holder && self.state.policy.linger_secs > 0);
                        self.seats.get_mut(&session_id).unwrap().lingers_until = Some(*until);
                    }
                    _ => {
                        assert!(!by_holder || self.state.policy.linger_secs == 0);
                        self.seats.remove(&session_id);
                    }
                }
            }
            Step::Expire { pick } => {
                let Some((session_id, _)) = self.pick_live(pick) else {
                    return;
                };
                let deadline = self.state.sessions[&session_id].expires_at;
                self.now = self.now.max(deadline);
                self.decide(LicenseCommand::Expire {
                    session_id,
                    deadline,
                    now: self.now,
                })
                .expect("a session past its deadline expires");
                if let Some(seat) = self.seats.remove(&session_id) {
                    let window =
                        TimeDelta::seconds(i64::from(self.state.policy.revive_window_secs));
                    self.expired
                        .insert(session_id, (seat.user, seat.hw, deadline + window));
                }
            }
            Step::Revive { pick } => self.revive(pick),
            Step::Acquire {
                user: u,
                hw,
                group: in_group,
            } => self.acquire(u, hw, in_group),
        }
    }

    /// A heartbeat on an expired session: a revival must be inside the
    /// window, on a free seat, under the cap, for a machine its user holds
    /// no other session on.
    fn revive(&mut self, pick: usize) {
        let n = self.expired.len();
        if n == 0 {
            return;
        }
        let (session_id, (user_id, hw, until)) = self
            .expired
            .iter()
            .nth(pick % n)
            .map(|(id, e)| (*id, e.clone()))
            .unwrap();
        let held = self.held().count();
        let by_user = self.held().filter(|(_, s)| s.user == user_id).count();
        let same_machine = self.state.session_held_by(&user_id, &hw).is_some();
        let policy = self.state.policy.clone();
        let capacity = (SEATS + policy.overdraft_seats) as usize;
        let cmd = LicenseCommand::Revive {
            session_id,
            user_id: user_id.clone(),
            groups: vec![],
            now: self.now,
        };
        let Some(decision) = self.decide(cmd) else {
            return;
        };
        let [LicenseEvent::SessionRevived { reservation, .. }] = &decision.license_events[..]
        else {
            panic!("a revival appends SessionRevived: {decision:?}");
        };
        assert!(self.now <= until, "revived after its window");
        assert!(policy.revive_window_secs > 0 && !same_machine);
        assert!(held < capacity, "revived with {held} of {capacity} held");
        assert!(policy
            .max_seats_per_user
            .is_none_or(|c| by_user < c as usize));
        self.expired.remove(&session_id);
        let seat = Seat {
            user: user_id,
            hw,
            reservation: reservation.clone(),
            lingers_until: None,
        };
        self.seats.insert(session_id, seat);
    }

    fn acquire(&mut self, u: u8, hw: u8, in_group: bool) {
        self.next_id += 1;
        let (user_id, hardware_id) = (user(u), HardwareId::parse(&format!("hw-{hw}")).unwrap());
        let groups = if in_group { vec![group()] } else { vec![] };
        let existing = self.state.session_held_by(&user_id, &hardware_id).is_some();
        let policy = self.state.policy.clone();
        // The model's view before the decision.
        let reclaim = self
            .held()
            .find(|(_, s)| s.lingers_until.is_some() && s.user == user_id && s.hw == hardware_id)
            .map(|(id, _)| *id);
        let held = self.held().count();
        let by_user = self
            .held()
            .filter(|(id, s)| s.user == user_id && Some(**id) != reclaim)
            .count();
        let used = |name: &ReservationName| {
            self.held()
                .filter(|(_, s)| s.reservation.as_ref() == Some(name))
                .count()
        };
        let kept_free: usize = policy
            .reservations
            .iter()
            .filter(|r| !r.lend_when_idle)
            .map(|r| (r.seats as usize).saturating_sub(used(&r.name)))
            .sum();
        let member_room = policy
            .reservations
            .iter()
            .any(|r| r.admits(&user_id, &groups) && used(&r.name) < r.seats as usize);
        let kept_room = policy.reservations.iter().any(|r| {
            !r.lend_when_idle && r.admits(&user_id, &groups) && used(&r.name) < r.seats as usize
        });
        let capacity = (SEATS + policy.overdraft_seats) as usize;
        let cap = policy.max_seats_per_user.map(|c| c as usize);

        let session_id = SessionId::from_uuid(Uuid::from_u128(self.next_id));
        let decision = self
            .decide(LicenseCommand::Acquire {
                borrow_secs: None,
                wait_secs: None,
                session_id,
                user_id: user_id.clone(),
                hardware_id: hardware_id.clone(),
                groups,
                idempotency_key: None,
                now: self.now,
            })
            .expect("an acquire is always decided");
        self.acquired_once = true;
        match (&decision.outcome, decision.license_events.first()) {
            (Outcome::Acquired { existing: true, .. }, _) => assert!(existing),
            (
                Outcome::Acquired { .. },
                Some(LicenseEvent::SeatAcquired {
                    overdraft,
                    reservation,
                    policy_version,
                    ..
                }),
            ) => {
                assert_eq!(*policy_version, self.state.policy_version);
                if let Some(lingering) = reclaim {
                    self.seats.remove(&lingering);
                } else {
                    assert!(held < capacity, "granted with {held} of {capacity} held");
                    assert!(cap.is_none_or(|c| by_user < c), "over the per-user cap");
                    if reservation.is_none() {
                        assert!(held + kept_free < capacity, "took a reserved seat");
                        assert_eq!(*overdraft, held + kept_free >= SEATS as usize);
                    } else {
                        assert!(member_room);
                    }
                }
                let seat = Seat {
                    user: user_id,
                    hw: hardware_id,
                    reservation: reservation.clone(),
                    lingers_until: None,
                };
                self.seats.insert(session_id, seat);
            }
            (Outcome::Denied { reason, .. }, _) => {
                assert!(reclaim.is_none(), "a lingering seat is its holder's");
                let honoured =
                    kept_room && !self.policy_changed_late && cap.is_none_or(|c| by_user < c);
                assert!(
                    !(honoured && matches!(reason, DenialReason::NoSeats | DenialReason::Reserved)),
                    "a member with an unused reserved seat was denied {reason:?}"
                );
            }
            other => panic!("unexpected decision {other:?}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn policies_hold_under_any_interleaving(
        initial in policy(),
        changes in any::<bool>(),
        steps in proptest::collection::vec(step(true), 0..80),
    ) {
        let mut world = World::new(initial);
        for step in steps {
            if !changes && matches!(step, Step::SetPolicy(_)) {
                continue;
            }
            world.run(step);
            let user_cap = world.state.policy.max_seats_per_user;
            if !world.policy_changed_late {
                if let Some(cap) = user_cap {
                    let mut per_user = BTreeMap::new();
                    for (_, s) in world.held() {
                        *per_user.entry(s.user.clone()).or_insert(0u32) += 1;
                    }
                    prop_assert!(per_user.values().all(|n| *n <= cap));
                }
            }
        }
        prop_assert_eq!(&LicenseState::fold(&world.log), &world.state);
    }
}
