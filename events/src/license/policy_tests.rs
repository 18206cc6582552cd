//! Given/when/then tests of the policy rules: versions, linger, overdraft,
//! the per-user cap and reservations.

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::catalog::{DenialReason, LicenseEvent};
use crate::ids::{GroupId, ReservationName};

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_740_000_000 + secs, 0).unwrap()
}

/// A license under test: its state, folded from what each command appended.
struct License(LicenseState);

impl License {
    fn issued(seats: u32) -> Self {
        let mut license = Self(LicenseState::default());
        license
            .run(LicenseCommand::Issue {
                tenant_id: TenantId::parse("acme").unwrap(),
                license_id: LicenseId::new(),
                product: ProductId::parse("cad").unwrap(),
                seats,
                session_ttl_secs: 360,
                valid_until: None,
                token_ttl_secs: None,
                strict_seats: false,
            })
            .unwrap();
        license
    }

    fn with(seats: u32, policy: Policy) -> Self {
        let mut license = Self::issued(seats);
        license.run(LicenseCommand::SetPolicy { policy }).unwrap();
        license
    }

    fn run(&mut self, cmd: LicenseCommand) -> Result<Decision, DomainError> {
        let decision = decide(&self.0, cmd)?;
        for e in &decision.license_events {
            self.0 = apply(std::mem::take(&mut self.0), e);
        }
        Ok(decision)
    }

    /// `user` (in `groups`) asks for a seat on `hw` at `at`: the granted
    /// event, or the denial reason.
    fn acquire(
        &mut self,
        user: &str,
        hw: &str,
        groups: &[&str],
        at: i64,
    ) -> Result<LicenseEvent, DenialReason> {
        let decision = self
            .run(LicenseCommand::Acquire {
                borrow_secs: None,
                wait_secs: None,
                session_id: SessionId::new(),
                user_id: UserId::parse(user).unwrap(),
                hardware_id: HardwareId::parse(hw).unwrap(),
                groups: groups.iter().map(|g| GroupId::parse(g).unwrap()).collect(),
                idempotency_key: None,
                now: t(at),
            })
            .unwrap();
        match decision.outcome {
            Outcome::Denied { reason, .. } => {
                let LicenseEvent::AcquireDenied { policy_version, .. } =
                    &decision.license_events[0]
                else {
                    panic!("a denial records AcquireDenied");
                };
                assert_eq!(*policy_version, self.0.policy_version);
                Err(reason)
            }
            _ => Ok(decision.license_events[0].clone()),
        }
    }

    fn session_of(&self, user: &str, hw: &str) -> SessionId {
        let user = UserId::parse(user).unwrap();
        self.0
            .session_held_by(&user, &HardwareId::parse(hw).unwrap())
            .expect("a live session")
    }

    /// Releases as the holder (`by_holder`) or as an admin.
    fn release(&mut self, user: &str, hw: &str, by_holder: bool, at: i64) -> LicenseEvent {
        let session_id = self.session_of(user, hw);
        let user_id = by_holder.then(|| UserId::parse(user).unwrap());
        let cmd = LicenseCommand::Release {
            session_id,
            user_id,
            now: t(at),
        };
        self.run(cmd).unwrap().license_events[0].clone()
    }
}

fn reservation(name: &str, seats: u32, users: &[&str], groups: &[&str], lend: bool) -> Reservation {
    Reservation {
        name: ReservationName::parse(name).unwrap(),
        seats,
        users: users.iter().map(|u| UserId::parse(u).unwrap()).collect(),
        groups: groups.iter().map(|g| GroupId::parse(g).unwrap()).collect(),
        lend_when_idle: lend,
    }
}

fn granted(event: &LicenseEvent) -> (u32, bool, Option<&str>) {
    match event {
        LicenseEvent::SeatAcquired {
            policy_version,
            overdraft,
            reservation,
            ..
        } => (
            *policy_version,
            *overdraft,
            reservation.as_ref().map(|r| r.as_str()),
        ),
        other => panic!("expected SeatAcquired, got {other:?}"),
    }
}

#[test]
fn a_policy_change_appends_the_next_version_and_the_same_policy_is_a_no_op() {
    let mut license = License::issued(3);
    let linger = Policy {
        linger_secs: 30,
        ..Policy::default()
    };
    let first = license.run(LicenseCommand::SetPolicy {
        policy: linger.clone(),
    });
    assert!(matches!(
        &first.unwrap().license_events[..],
        [LicenseEvent::PolicyChanged { version: 1, policy }] if *policy == linger
    ));
    let again = license.run(LicenseCommand::SetPolicy { policy: linger });
    assert!(again.unwrap().is_empty());
    let cap = Policy {
        max_seats_per_user: Some(1),
        ..Policy::default()
    };
    let second = license.run(LicenseCommand::SetPolicy { policy: cap });
    assert!(matches!(
        &second.unwrap().license_events[..],
        [LicenseEvent::PolicyChanged { version: 2, .. }]
    ));
    assert_eq!(license.0.policy_version, 2);
    assert_eq!(
        license.0.policy.linger_secs, 0,
        "a policy replaces the whole"
    );
}

#[test]
fn a_malformed_policy_is_refused_and_changes_nothing() {
    let mut license = License::issued(3);
    let farm = |seats| reservation("farm", seats, &["ci"], &[], false);
    let bad = [
        (
            Policy {
                linger_secs: MAX_LINGER_SECS + 1,
                ..Policy::default()
            },
            PolicyError::Linger(MAX_LINGER_SECS + 1),
        ),
        (
            Policy {
                max_seats_per_user: Some(0),
                ..Policy::default()
            },
            PolicyError::UserCap(0),
        ),
        (
            Policy {
                overdraft_seats: MAX_OVERDRAFT_SEATS + 1,
                ..Policy::default()
            },
            PolicyError::Overdraft(MAX_OVERDRAFT_SEATS + 1),
        ),
        (
            Policy {
                reservations: vec![farm(4)],
                ..Policy::default()
            },
            PolicyError::OverReserved {
                reserved: 4,
                seats: 3,
            },
        ),
        (
            Policy {
                reservations: vec![farm(1), farm(1)],
                ..Policy::default()
            },
            PolicyError::DuplicateName("farm".into()),
        ),
        (
            Policy {
                reservations: vec![farm(0)],
                ..Policy::default()
            },
            PolicyError::EmptyReservation("farm".into()),
        ),
        (
            Policy {
                reservations: vec![Reservation {
                    users: (0..=MAX_RESERVATION_MEMBERS)
                        .map(|i| UserId::parse(&format!("u{i}")).unwrap())
                        .collect(),
                    ..reservation("farm", 1, &[], &[], false)
                }],
                ..Policy::default()
            },
            PolicyError::Members("farm".into()),
        ),
    ];
    for (policy, expected) in bad {
        let result = license.run(LicenseCommand::SetPolicy { policy });
        assert_eq!(result, Err(DomainError::InvalidPolicy(expected)));
    }
    assert_eq!((license.0.version, license.0.policy_version), (0, 0));
}

#[test]
fn overdraft_seats_are_granted_marked_and_then_denied() {
    let policy = Policy {
        overdraft_seats: 1,
        ..Policy::default()
    };
    let mut license = License::with(2, policy);
    assert_eq!(
        granted(&license.acquire("a", "h1", &[], 0).unwrap()),
        (1, false, None)
    );
    assert_eq!(
        granted(&license.acquire("b", "h1", &[], 0).unwrap()),
        (1, false, None)
    );
    assert_eq!(
        granted(&license.acquire("c", "h1", &[], 0).unwrap()),
        (1, true, None)
    );
    assert_eq!(
        license.acquire("d", "h1", &[], 0),
        Err(DenialReason::NoSeats)
    );
    assert!(license.0.sessions.values().filter(|s| s.overdraft).count() == 1);
    // Lowering the seats revokes beyond seats + overdraft only.
    let lowered = license
        .run(LicenseCommand::ChangeSeats {
            seats: 1,
            now: t(1),
        })
        .unwrap();
    assert_eq!(lowered.session_events.len(), 1);
    assert_eq!(license.0.sessions.len(), 2);
}

#[test]
fn the_per_user_cap_counts_every_machine_of_the_user() {
    let policy = Policy {
        max_seats_per_user: Some(2),
        ..Policy::default()
    };
    let mut license = License::with(10, policy);
    license.acquire("alice", "h1", &[], 0).unwrap();
    license.acquire("alice", "h2", &[], 0).unwrap();
    assert_eq!(
        license.acquire("alice", "h3", &[], 0),
        Err(DenialReason::UserLimit)
    );
    // Her existing machine still gets its session back.
    assert!(matches!(
        decide(
            &license.0,
            LicenseCommand::Acquire {
                borrow_secs: None,
                wait_secs: None,
                session_id: SessionId::new(),
                user_id: UserId::parse("alice").unwrap(),
                hardware_id: HardwareId::parse("h1").unwrap(),
                groups: vec![],
                idempotency_key: None,
                now: t(0),
            }
        )
        .unwrap()
        .outcome,
        Outcome::Acquired { existing: true, .. }
    ));
    license.acquire("bob", "h3", &[], 0).unwrap();
    license.release("alice", "h1", true, 1);
    license.acquire("alice", "h3", &[], 2).unwrap();
}

#[test]
fn a_released_seat_lingers_for_its_holder_and_then_frees() {
    let policy = Policy {
        linger_secs: 60,
        ..Policy::default()
    };
    let mut license = License::with(1, policy);
    license.acquire("alice", "h1", &[], 0).unwrap();
    let released = license.release("alice", "h1", true, 10);
    assert!(matches!(
        released,
        LicenseEvent::SeatReleased { linger_until: Some(until), .. } if until == t(70)
    ));
    assert_eq!(license.0.seats_held(t(20)), 1);
    assert_eq!(
        license.acquire("bob", "h9", &[], 20),
        Err(DenialReason::NoSeats)
    );
    // The same user on the same machine takes the lingering seat back.
    license.acquire("alice", "h1", &[], 30).unwrap();
    assert!(license.0.lingering.is_empty());
    license.release("alice", "h1", true, 40);
    assert_eq!(
        license.acquire("alice", "h2", &[], 50),
        Err(DenialReason::NoSeats)
    );
    // After the linger the seat is anyone's.
    assert_eq!(license.0.seats_held(t(100)), 0);
    license.acquire("bob", "h9", &[], 100).unwrap();
    assert!(license.0.lingering.is_empty(), "pruned once it passed");
}

#[test]
fn an_admin_release_frees_the_seat_at_once() {
    let policy = Policy {
        linger_secs: 60,
        ..Policy::default()
    };
    let mut license = License::with(1, policy);
    license.acquire("alice", "h1", &[], 0).unwrap();
    let released = license.release("alice", "h1", false, 10);
    assert!(matches!(
        released,
        LicenseEvent::SeatReleased {
            linger_until: None,
            ..
        }
    ));
    license.acquire("bob", "h9", &[], 11).unwrap();
}

#[test]
fn reserved_seats_are_kept_for_their_members() {
    let farm = reservation("farm", 2, &["ci"], &["builders"], false);
    let policy = Policy {
        reservations: vec![farm],
        ..Policy::default()
    };
    let mut license = License::with(3, policy);
    assert_eq!(
        granted(&license.acquire("bob", "h1", &[], 0).unwrap()),
        (1, false, None)
    );
    assert_eq!(
        license.acquire("bob", "h2", &[], 0),
        Err(DenialReason::Reserved)
    );
    let ci = license.acquire("ci", "agent-1", &[], 0).unwrap();
    assert_eq!(granted(&ci), (1, false, Some("farm")));
    let by_group = license
        .acquire("dana", "agent-2", &["builders"], 0)
        .unwrap();
    assert_eq!(granted(&by_group), (1, false, Some("farm")));
    assert_eq!(
        license.acquire("erin", "agent-3", &["builders"], 0),
        Err(DenialReason::NoSeats)
    );
    // A member whose reservation is full may still take an open seat.
    license.release("bob", "h1", true, 1);
    assert_eq!(
        granted(
            &license
                .acquire("erin", "agent-3", &["builders"], 2)
                .unwrap()
        ),
        (1, false, None)
    );
}

#[test]
fn a_lending_reservation_lets_others_use_its_idle_seats() {
    let farm = reservation("farm", 2, &["ci"], &[], true);
    let policy = Policy {
        reservations: vec![farm],
        ..Policy::default()
    };
    let mut license = License::with(3, policy);
    for hw in ["h1", "h2", "h3"] {
        license.acquire("bob", hw, &[], 0).unwrap();
    }
    assert_eq!(
        license.acquire("ci", "agent-1", &[], 0),
        Err(DenialReason::NoSeats)
    );
}

#[test]
fn seats_cannot_go_below_the_reserved_seats() {
    let policy = Policy {
        reservations: vec![reservation("farm", 2, &["ci"], &[], false)],
        ..Policy::default()
    };
    let mut license = License::with(3, policy);
    let lowered = license.run(LicenseCommand::ChangeSeats {
        seats: 1,
        now: t(0),
    });
    assert_eq!(
        lowered,
        Err(DomainError::InvalidPolicy(PolicyError::OverReserved {
            reserved: 2,
            seats: 1
        }))
    );
}

#[test]
fn an_expiry_records_the_policy_in_force() {
    let policy = Policy {
        overdraft_seats: 1,
        ..Policy::default()
    };
    let mut license = License::with(1, policy);
    license.acquire("alice", "h1", &[], 0).unwrap();
    let session_id = license.session_of("alice", "h1");
    let expired = license
        .run(LicenseCommand::Expire {
            session_id,
            deadline: t(360),
            now: t(400),
        })
        .unwrap();
    assert!(matches!(
        expired.license_events[0],
        LicenseEvent::SessionExpired {
            policy_version: 1,
            ..
        }
    ));
}

/// The revive window.
#[path = "revive_tests.rs"]
mod revive;

/// The seat queue and borrowing.
#[path = "queue_tests.rs"]
mod queue;
