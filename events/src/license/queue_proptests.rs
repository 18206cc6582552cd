//! Property tests of the seat queue under any interleaving of acquires
//! (waiting or not), releases, expiries, cancellations, the reaper serving
//! the queue, policy changes and time.
//!
//! Checked step by step, with the decision's events applied one at a time
//! and a model of the held seats kept here from the events alone:
//! - no grant (queued or not) ever finds seats + overdraft held, and none
//!   takes a user past the per-user cap;
//! - FIFO within the policy: when a newcomer is granted a seat, no waiter
//!   still waiting could have been granted it; queued grants within one
//!   append go oldest first; after every command with a clock, no waiter
//!   the policy admits is left waiting;
//! - no waiter is granted at or after its `wait_until`, and a waiter that
//!   left is never granted;
//! - folding the events gives the step-by-step state.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::catalog::LicenseEvent;
use crate::ids::{GroupId, ReservationName};

const SEATS: u32 = 2;

#[derive(Clone, Debug)]
enum Step {
    Acquire {
        user: u8,
        hw: u8,
        group: bool,
        wait: Option<u32>,
    },
    Release {
        pick: usize,
        by_holder: bool,
    },
    Expire {
        pick: usize,
    },
    Cancel {
        pick: usize,
    },
    Promote,
    SetPolicy(Policy),
    Advance(i64),
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        prop_oneof![Just(0u32), 1u32..=60],
        0u32..=1,
        proptest::option::of(1u32..=2),
        proptest::option::of((1u32..=2, any::<bool>())),
        prop_oneof![1 => Just(0u32), 4 => 30u32..=300],
    )
        .prop_map(
            |(linger_secs, overdraft_seats, cap, reserve, wait)| Policy {
                linger_secs,
                overdraft_seats,
                max_seats_per_user: cap,
                reservations: reserve
                    .map(|(seats, lend_when_idle)| Reservation {
                        name: ReservationName::parse("farm").unwrap(),
                        seats,
                        users: vec![],
                        groups: vec![GroupId::parse("builders").unwrap()],
                        lend_when_idle,
                    })
                    .into_iter()
                    .collect(),
                max_queue_wait_secs: wait,
                ..Policy::default()
            },
        )
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (0u8..4, 0u8..2, any::<bool>(), proptest::option::of(0u32..=400))
            .prop_map(|(user, hw, group, wait)| Step::Acquire { user, hw, group, wait }),
        3 => (any::<usize>(), any::<bool>()).prop_map(|(pick, by_holder)| Step::Release { pick, by_holder }),
        2 => any::<usize>().prop_map(|pick| Step::Expire { pick }),
        1 => any::<usize>().prop_map(|pick| Step::Cancel { pick }),
        2 => Just(Step::Promote),
        1 => policy().prop_map(Step::SetPolicy),
        3 => (0i64..120).prop_map(Step::Advance),
    ]
}

fn user(n: u8) -> UserId {
    UserId::parse(&format!("user-{n}")).unwrap()
}

/// A held seat as the events say: its holder, machine, and (lingering)
/// until when.
#[derive(Clone, Debug)]
struct Seat {
    user: UserId,
    hw: HardwareId,
    lingers_until: Option<DateTime<Utc>>,
}

struct World {
    now: DateTime<Utc>,
    state: LicenseState,
    log: Vec<LicenseEvent>,
    next_id: u128,
    seats: BTreeMap<SessionId, Seat>,
    /// Waiters in join order, with their `wait_until`.
    waiting: Vec<(SessionId, DateTime<Utc>)>,
    left: BTreeSet<SessionId>,
}

impl World {
    fn new(policy: Policy) -> Self {
        let mut world = World {
            now: Utc.timestamp_opt(1_740_000_000, 0).unwrap(),
            state: LicenseState::default(),
            log: Vec::new(),
            next_id: 10,
            seats: BTreeMap::new(),
            waiting: Vec::new(),
            left: BTreeSet::new(),
        };
        world.decide(super::issue_for_tests(SEATS, 120));
        world.decide(LicenseCommand::SetPolicy { policy });
        world
    }

    fn held(&self) -> impl Iterator<Item = &Seat> {
        let now = self.now;
        self.seats
            .values()
            .filter(move |s| s.lingers_until.is_none_or(|u| u > now))
    }

    /// Whether the policy would grant `waiter` a seat in the current state.
    fn admits(&self, waiter: &Waiter) -> bool {
        let held = self.state.held_for(self.now, &waiter.user_id, None);
        let seats = self.state.seats();
        let fits = allocate(
            &self.state.policy,
            seats,
            &held,
            &waiter.user_id,
            &waiter.groups,
        );
        matches!(fits, Allocation::Seat { .. })
            && self
                .state
                .session_held_by(&waiter.user_id, &waiter.hardware_id)
                .is_none()
    }

    /// Checks one event against the model before folding it.
    fn check(&mut self, event: &LicenseEvent) {
        match event {
            LicenseEvent::SeatAcquired {
                session_id,
                user_id,
                hardware_id,
                queued,
                ..
            } => {
                let reclaim = self
                    .seats
                    .iter()
                    .find(|(_, s)| {
                        s.lingers_until.is_some_and(|u| u > self.now)
                            && &s.user == user_id
                            && &s.hw == hardware_id
                    })
                    .map(|(id, _)| *id);
                let capacity = (SEATS + self.state.policy.overdraft_seats) as usize;
                if let Some(lingering) = reclaim {
                    self.seats.remove(&lingering);
                } else {
                    let held = self.held().count();
                    assert!(held < capacity, "granted with {held} of {capacity} held");
                    let by_user = self.held().filter(|s| &s.user == user_id).count();
                    let cap = self.state.policy.max_seats_per_user;
                    assert!(cap.is_none_or(|c| by_user < c as usize), "over the cap");
                }
                if *queued {
                    let index = self
                        .waiting
                        .iter()
                        .position(|(id, _)| id == session_id)
                        .expect("a queued grant goes to a waiter");
                    let (_, until) = self.waiting.remove(index);
                    assert!(self.now < until, "granted after its wait ran out");
                    assert!(!self.left.contains(session_id));
                    // Older waiters it overtook may not be admitted now.
                    for older in self.state.queue.iter().take(index) {
                        assert!(
                            older.wait_until <= self.now || !self.admits(older),
                            "overtook an older waiter the policy admits"
                        );
                    }
                } else if reclaim.is_none() {
                    for waiter in &self.state.queue {
                        assert!(
                            waiter.wait_until <= self.now || !self.admits(waiter),
                            "a newcomer took a seat a waiter may take"
                        );
                    }
                }
                let seat = Seat {
                    user: user_id.clone(),
                    hw: hardware_id.clone(),
                    lingers_until: None,
                };
                self.seats.insert(*session_id, seat);
            }
            LicenseEvent::SeatReleased {
                session_id,
                linger_until,
                ..
            } => match linger_until {
                Some(until) => self.seats.get_mut(session_id).unwrap().lingers_until = Some(*until),
                None => drop(self.seats.remove(session_id)),
            },
            LicenseEvent::SessionExpired { session_id, .. }
            | LicenseEvent::SessionRevoked { session_id, .. } => {
                self.seats.remove(session_id);
            }
            LicenseEvent::QueueJoined {
                session_id,
                wait_until,
                ..
            } => self.waiting.push((*session_id, *wait_until)),
            LicenseEvent::QueueLeft { session_id, .. } => {
                self.waiting.retain(|(id, _)| id != session_id);
                self.left.insert(*session_id);
            }
            _ => {}
        }
    }

    fn decide(&mut self, cmd: LicenseCommand) -> Option<Decision> {
        let clocked = !matches!(
            cmd,
            LicenseCommand::Issue { .. }
                | LicenseCommand::SetPolicy { .. }
                | LicenseCommand::LeaveQueue { .. }
        );
        let decision = decide(&self.state, cmd).ok()?;
        for e in &decision.license_events {
            self.check(e);
            self.state = apply(std::mem::take(&mut self.state), e);
            self.log.push(e.clone());
        }
        if clocked && self.state.issued.is_some() {
            for waiter in &self.state.queue {
                assert!(
                    waiter.wait_until <= self.now || !self.admits(waiter),
                    "a waiter the policy admits was left waiting"
                );
            }
        }
        Some(decision)
    }

    fn pick<T: Copy>(items: &[T], pick: usize) -> Option<T> {
        (!items.is_empty()).then(|| items[pick % items.len()])
    }

    fn run(&mut self, step: Step) {
        let live: Vec<_> = self
            .state
            .sessions
            .iter()
            .map(|(id, s)| (*id, s.expires_at))
            .collect();
        match step {
            Step::Advance(secs) => self.now += TimeDelta::seconds(secs),
            Step::Promote => {
                self.decide(LicenseCommand::Promote { now: self.now });
            }
            Step::SetPolicy(policy) => {
                self.decide(LicenseCommand::SetPolicy { policy });
            }
            Step::Acquire {
                user: u,
                hw,
                group,
                wait,
            } => {
                self.next_id += 1;
                let groups = if group {
                    vec![GroupId::parse("builders").unwrap()]
                } else {
                    vec![]
                };
                self.decide(LicenseCommand::Acquire {
                    session_id: SessionId::from_uuid(Uuid::from_u128(self.next_id)),
                    user_id: user(u),
                    hardware_id: HardwareId::parse(&format!("hw-{hw}")).unwrap(),
                    groups,
                    idempotency_key: None,
                    wait_secs: wait,
                    borrow_secs: None,
                    now: self.now,
                })
                .expect("an acquire is always decided");
            }
            Step::Release { pick, by_holder } => {
                let Some((session_id, _)) = Self::pick(&live, pick) else {
                    return;
                };
                let holder = self.state.sessions[&session_id].user_id.clone();
                self.decide(LicenseCommand::Release {
                    session_id,
                    user_id: by_holder.then_some(holder),
                    now: self.now,
                })
                .expect("a live session releases");
            }
            Step::Expire { pick } => {
                let Some((session_id, deadline)) = Self::pick(&live, pick) else {
                    return;
                };
                self.now = self.now.max(deadline);
                self.decide(LicenseCommand::Expire {
                    session_id,
                    deadline,
                    now: self.now,
                })
                .expect("a session past its deadline expires");
            }
            Step::Cancel { pick } => {
                let waiting: Vec<_> = self.state.queue.iter().map(|w| w.session_id).collect();
                let Some(session_id) = Self::pick(&waiting, pick) else {
                    return;
                };
                self.decide(LicenseCommand::LeaveQueue {
                    session_id,
                    user_id: None,
                })
                .expect("a waiter can leave");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_queue_is_fifo_within_the_policy_under_any_interleaving(
        initial in policy(),
        steps in proptest::collection::vec(step(), 0..80),
    ) {
        let mut world = World::new(initial);
        for step in steps {
            world.run(step);
        }
        let order: Vec<_> = world.state.queue.iter().map(|w| w.session_id).collect();
        let model: Vec<_> = world.waiting.iter().map(|(id, _)| *id).collect();
        prop_assert_eq!(order, model);
        prop_assert_eq!(&LicenseState::fold(&world.log), &world.state);
    }
}
