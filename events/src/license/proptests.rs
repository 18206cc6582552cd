//! Property tests: random command sequences against the license and session
//! aggregates, checking the seat invariant, fold = step-by-step state, and
//! that every produced event survives the log's storage format. With strict
//! seat accounting, every grant is also checked against an independent model
//! of the tokens that may still be valid: no seat is granted while the
//! tokens of live or ended sessions could outnumber the seats.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::catalog::LicenseEvent;
use crate::session::{self, SessionState};

/// One random step; indexes pick among the live or known sessions at run time.
#[derive(Clone, Debug)]
enum Step {
    Issue {
        seats: u32,
        ttl: u32,
        valid_for: Option<i64>,
        token_ttl: Option<u32>,
        strict: bool,
    },
    ChangeSeats(u32),
    Suspend,
    Reinstate,
    Acquire {
        user: u8,
        hw: u8,
        key: Option<u8>,
    },
    Release {
        pick: usize,
        by: Option<u8>,
    },
    Expire {
        pick: usize,
    },
    Heartbeat {
        pick: usize,
    },
    Advance(i64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => (0u32..=4, 1u32..=600, proptest::option::of(0i64..3_000), proptest::option::of(1u32..=700), any::<bool>())
            .prop_map(|(seats, ttl, valid_for, token_ttl, strict)| Step::Issue { seats, ttl, valid_for, token_ttl, strict }),
        1 => (0u32..=5).prop_map(Step::ChangeSeats),
        1 => Just(Step::Suspend),
        1 => Just(Step::Reinstate),
        6 => (0u8..3, 0u8..3, proptest::option::of(0u8..3))
            .prop_map(|(user, hw, key)| Step::Acquire { user, hw, key }),
        2 => (any::<usize>(), proptest::option::of(0u8..3)).prop_map(|(pick, by)| Step::Release { pick, by }),
        2 => any::<usize>().prop_map(|pick| Step::Expire { pick }),
        3 => any::<usize>().prop_map(|pick| Step::Heartbeat { pick }),
        2 => (0i64..400).prop_map(Step::Advance),
    ]
}

fn t0() -> DateTime<Utc> {
    Utc.timestamp_opt(1_740_000_000, 0).unwrap()
}

fn user(n: u8) -> UserId {
    UserId::parse(&format!("user-{n}")).unwrap()
}

fn round_trips(event: &LicenseEvent) {
    let back = LicenseEvent::from_stored(event.event_type(), event.schema_version(), &event.data());
    assert_eq!(back.as_ref().ok(), Some(event), "{back:?}");
}

/// Everything the run has produced so far.
struct World {
    now: DateTime<Utc>,
    state: LicenseState,
    license_log: Vec<LicenseEvent>,
    sessions: BTreeMap<SessionId, (SessionState, Vec<LicenseEvent>)>,
    next_id: u128,
    /// The model: when each ended session ended (its tokens were all signed
    /// before, so they lapse within one token lifetime).
    ended_at: BTreeMap<SessionId, DateTime<Utc>>,
}

impl World {
    fn pick_live(&self, pick: usize) -> Option<SessionId> {
        let n = self.state.sessions.len();
        (n > 0).then(|| *self.state.sessions.keys().nth(pick % n).unwrap())
    }

    fn command(&mut self, step: &Step) -> Option<LicenseCommand> {
        Some(match *step {
            Step::Issue {
                seats,
                ttl,
                valid_for,
                token_ttl,
                strict,
            } => LicenseCommand::Issue {
                tenant_id: TenantId::parse("t").unwrap(),
                license_id: LicenseId::from_uuid(Uuid::from_u128(1)),
                product: ProductId::parse("p").unwrap(),
                seats,
                session_ttl_secs: ttl,
                valid_until: valid_for.map(|s| t0() + TimeDelta::seconds(s)),
                token_ttl_secs: token_ttl,
                strict_seats: strict,
            },
            Step::ChangeSeats(seats) => LicenseCommand::ChangeSeats {
                seats,
                now: self.now,
            },
            Step::Suspend => LicenseCommand::Suspend {
                reason: "r".into(),
                now: self.now,
            },
            Step::Reinstate => LicenseCommand::Reinstate,
            Step::Acquire { user: u, hw, key } => {
                self.next_id += 1;
                LicenseCommand::Acquire {
                    borrow_secs: None,
                    wait_secs: None,
                    session_id: SessionId::from_uuid(Uuid::from_u128(self.next_id)),
                    user_id: user(u),
                    hardware_id: HardwareId::parse(&format!("hw-{hw}")).unwrap(),
                    idempotency_key: key
                        .map(|k| IdempotencyKey::parse(&format!("key-{k}")).unwrap()),
                    now: self.now,
                    groups: Vec::new(),
                }
            }
            Step::Release { pick, by } => LicenseCommand::Release {
                session_id: self.pick_live(pick).unwrap_or_else(SessionId::new),
                user_id: by.map(user),
                now: self.now,
            },
            Step::Expire { pick } => {
                let session_id = self.pick_live(pick)?;
                let live = &self.state.sessions[&session_id];
                let sstate = self
                    .sessions
                    .get(&session_id)
                    .map(|(s, _)| s.clone())
                    .unwrap_or_default();
                let deadline = session::current_deadline(live.expires_at, &sstate);
                LicenseCommand::Expire {
                    session_id,
                    deadline,
                    now: self.now,
                }
            }
            Step::Heartbeat { pick } => {
                self.heartbeat(pick);
                return None;
            }
            Step::Advance(secs) => {
                self.now += TimeDelta::seconds(secs);
                return None;
            }
        })
    }

    /// Heartbeats a known session (live or closed): closed ones must fail.
    fn heartbeat(&mut self, pick: usize) {
        let n = self.sessions.len();
        if n == 0 {
            return;
        }
        let id = *self.sessions.keys().nth(pick % n).unwrap();
        let info = self.state.issued.as_ref().unwrap();
        let (ttl, token_ttl) = (info.session_ttl(), info.token_ttl());
        let (sstate, log) = self.sessions.get_mut(&id).unwrap();
        match session::decide_heartbeat(sstate, id, ttl, token_ttl, self.now, None) {
            Ok(events) => {
                assert!(
                    self.state.sessions.contains_key(&id),
                    "heartbeat accepted for an ended session"
                );
                for e in &events {
                    round_trips(e);
                    *sstate = session::apply(sstate.clone(), e);
                }
                log.extend(events);
            }
            Err(err) => {
                assert_eq!(err, DomainError::SessionNotFound);
                assert!(!self.state.sessions.contains_key(&id));
            }
        }
    }

    fn run(&mut self, step: &Step) {
        let Some(cmd) = self.command(step) else {
            return;
        };
        let before = self.state.clone();
        let Ok(decision) = decide(&before, cmd) else {
            return;
        };
        if let Outcome::Acquired { existing: true, .. } = decision.outcome {
            assert!(decision.is_empty(), "an existing session appends nothing");
        }
        for event in &decision.license_events {
            round_trips(event);
            if let LicenseEvent::SeatAcquired { session_id, .. } = event {
                // (a) a seat is only ever handed out below the seat count.
                assert!(
                    before.sessions.len() < before.seats() as usize,
                    "over-allocation"
                );
                assert!(!before.suspended);
                assert!(!before.sessions.contains_key(session_id));
                // (c) strict: live sessions plus ended ones whose tokens may
                // still be valid stay below the seats when a seat is granted.
                let info = before.issued.as_ref().unwrap();
                if info.strict_seats {
                    let lapse = info.token_ttl() + TimeDelta::seconds(CLOCK_SKEW_SECS);
                    let held = self
                        .ended_at
                        .values()
                        .filter(|end| **end + lapse > self.now)
                        .count();
                    assert!(
                        before.sessions.len() + held < info.seats as usize,
                        "strict: a seat granted while {held} ended sessions' tokens may be valid"
                    );
                }
                self.sessions.entry(*session_id).or_default();
            }
            if let Some(id) = event.session_id() {
                if before.sessions.contains_key(&id)
                    && !matches!(event, LicenseEvent::SeatAcquired { .. })
                {
                    self.ended_at.insert(id, self.now);
                }
            }
            self.state = apply(self.state.clone(), event);
        }
        self.license_log
            .extend(decision.license_events.iter().cloned());
        for e in &decision.session_events {
            round_trips(e);
            let id = e.session_id().expect("session events name their session");
            let (sstate, log) = self.sessions.entry(id).or_default();
            *sstate = session::apply(sstate.clone(), e);
            log.push(e.clone());
        }
    }

    fn check_invariants(&self) {
        let live = &self.state.sessions;
        let holders: BTreeSet<_> = live
            .values()
            .map(|s| (&s.user_id, &s.hardware_id))
            .collect();
        assert_eq!(
            holders.len(),
            live.len(),
            "one live session per user and hardware id"
        );
        for (id, (sstate, _)) in &self.sessions {
            // The session stream's close marker agrees with the license stream.
            assert_eq!(sstate.closed.is_none(), live.contains_key(id));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn seats_hold_and_fold_reproduces_state(
        issue in (1u32..=4, 1u32..=600, any::<bool>()),
        steps in proptest::collection::vec(step(), 0..80),
        split in any::<proptest::sample::Index>(),
    ) {
        let mut world = World {
            now: t0(),
            state: LicenseState::default(),
            license_log: Vec::new(),
            sessions: BTreeMap::new(),
            next_id: 1_000,
            ended_at: BTreeMap::new(),
        };
        let (seats, ttl, strict) = issue;
        world.run(&Step::Issue { seats, ttl, valid_for: None, token_ttl: None, strict });
        for step in &steps {
            world.run(step);
            world.check_invariants();
        }
        // (b) folding everything from scratch gives the step-by-step state.
        let folded = LicenseState::fold(&world.license_log);
        prop_assert_eq!(&folded, &world.state);
        prop_assert_eq!(folded.version, world.license_log.len() as i64 - 1);
        for (sstate, log) in world.sessions.values() {
            prop_assert_eq!(&SessionState::fold(log), sstate);
        }
        // (c) a snapshot taken after any prefix (through its JSON form), plus
        // the events after it, gives the same state: loads may start there.
        let k = split.index(world.license_log.len() + 1);
        let prefix = LicenseState::fold(&world.license_log[..k]);
        let json = serde_json::to_value(&prefix).expect("a state serialises");
        let restored: LicenseState = serde_json::from_value(json).expect("and reads back");
        prop_assert_eq!(&restored, &prefix);
        let resumed = world.license_log[k..].iter().fold(restored, apply);
        prop_assert_eq!(&resumed, &world.state);
        for (sstate, log) in world.sessions.values() {
            let k = split.index(log.len() + 1);
            let json = serde_json::to_value(SessionState::fold(&log[..k])).expect("serialises");
            let restored: SessionState = serde_json::from_value(json).expect("reads back");
            prop_assert_eq!(&log[k..].iter().fold(restored, session::apply), sstate);
        }
    }
}
