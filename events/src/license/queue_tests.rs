//! Given/when/then tests of the seat queue and of borrowing: who waits,
//! who is served when a seat frees, timeouts, cancellation, and a borrowed
//! seat's deadline and token bound.

use super::*;
use crate::catalog::QueueLeaveReason;

/// A license of `seats` seats whose policy queues for up to `wait` seconds
/// and lends for up to `borrow` seconds.
fn queueing(seats: u32, wait: u32, borrow: u32, policy: Policy) -> License {
    License::with(
        seats,
        Policy {
            max_queue_wait_secs: wait,
            max_borrow_secs: borrow,
            ..policy
        },
    )
}

/// `user` asks for a seat on `hw` at `at`, waiting up to `wait` seconds.
fn ask(license: &mut License, user: &str, hw: &str, wait: u32, at: i64) -> Decision {
    ask_with(license, user, hw, &[], Some(wait), None, at).unwrap()
}

fn ask_with(
    license: &mut License,
    user: &str,
    hw: &str,
    groups: &[&str],
    wait: Option<u32>,
    borrow: Option<u32>,
    at: i64,
) -> Result<Decision, DomainError> {
    license.run(LicenseCommand::Acquire {
        session_id: SessionId::new(),
        user_id: UserId::parse(user).unwrap(),
        hardware_id: HardwareId::parse(hw).unwrap(),
        groups: groups.iter().map(|g| GroupId::parse(g).unwrap()).collect(),
        idempotency_key: None,
        wait_secs: wait,
        borrow_secs: borrow,
        now: t(at),
    })
}

fn queued_id(decision: &Decision) -> SessionId {
    match decision.outcome {
        Outcome::Queued { session_id, .. } => session_id,
        ref other => panic!("expected a queued acquire, got {other:?}"),
    }
}

/// Users granted by the queue in `events`, in order.
fn grants(events: &[LicenseEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            LicenseEvent::SeatAcquired {
                user_id,
                queued: true,
                ..
            } => Some(user_id.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_full_license_queues_an_acquire_that_asks_to_wait() {
    let mut license = queueing(1, 600, 0, Policy::default());
    license.acquire("alice", "h1", &[], 0).unwrap();
    let decision = ask(&mut license, "bob", "h2", 900, 10);
    let Outcome::Queued {
        position,
        wait_until,
        existing,
        ..
    } = decision.outcome
    else {
        panic!("bob waits");
    };
    assert_eq!((position, existing), (1, false));
    assert_eq!(wait_until, t(10 + 600), "the wait is cut to the policy's");
    assert!(matches!(
        &decision.license_events[..],
        [LicenseEvent::QueueJoined {
            reason: DenialReason::NoSeats,
            ..
        }]
    ));
    // Asking again (same user and machine) returns the same place.
    let again = ask(&mut license, "bob", "h2", 900, 20);
    assert_eq!(queued_id(&again), queued_id(&decision));
    assert!(again.license_events.is_empty());
}

#[test]
fn without_a_queue_in_the_policy_a_waiting_acquire_is_denied() {
    let mut license = queueing(1, 0, 0, Policy::default());
    license.acquire("alice", "h1", &[], 0).unwrap();
    let decision = ask(&mut license, "bob", "h2", 900, 10);
    assert!(matches!(
        decision.outcome,
        Outcome::Denied {
            reason: DenialReason::NoSeats,
            ..
        }
    ));
    assert!(license.0.queue.is_empty());
}

#[test]
fn a_release_grants_the_oldest_waiter_in_the_same_append() {
    let mut license = queueing(1, 600, 0, Policy::default());
    license.acquire("alice", "h1", &[], 0).unwrap();
    let bob = queued_id(&ask(&mut license, "bob", "h2", 600, 10));
    ask(&mut license, "carol", "h3", 600, 20);
    let session_id = license.session_of("alice", "h1");
    let release = license
        .run(LicenseCommand::Release {
            session_id,
            user_id: None,
            now: t(30),
        })
        .unwrap();
    assert!(matches!(
        release.license_events[0],
        LicenseEvent::SeatReleased { .. }
    ));
    assert_eq!(grants(&release.license_events), ["bob"]);
    assert_eq!(license.session_of("bob", "h2"), bob, "granted under its id");
    assert_eq!(license.0.queue_status(&bob, None), QueueStatus::Granted);
    let carol = &license.0.queue[0];
    assert_eq!(carol.user_id.to_string(), "carol");
}

#[test]
fn a_newcomer_never_takes_a_seat_an_older_waiter_may_take() {
    // A linger keeps alice's released seat until 100, without an event at 100.
    let policy = Policy {
        linger_secs: 100,
        ..Policy::default()
    };
    let mut license = queueing(1, 600, 0, policy);
    license.acquire("alice", "h1", &[], 0).unwrap();
    license.release("alice", "h1", true, 0);
    ask(&mut license, "bob", "h2", 600, 10);
    // At 150 the seat is free; dave does not wait, and comes after bob.
    let decision = ask_with(&mut license, "dave", "h4", &[], None, None, 150).unwrap();
    assert_eq!(grants(&decision.license_events), ["bob"]);
    assert!(matches!(
        decision.outcome,
        Outcome::Denied {
            reason: DenialReason::NoSeats,
            ..
        }
    ));
}

#[test]
fn a_waiter_the_policy_does_not_admit_yet_keeps_its_place_without_blocking_others() {
    let policy = Policy {
        max_seats_per_user: Some(1),
        ..Policy::default()
    };
    let mut license = queueing(2, 600, 0, policy);
    license.acquire("alice", "h1", &[], 0).unwrap();
    license.acquire("bob", "h2", &[], 0).unwrap();
    // alice waits for a second seat (her cap), then carol for any seat.
    let alice2 = queued_id(&ask(&mut license, "alice", "h9", 600, 10));
    ask(&mut license, "carol", "h3", 600, 20);
    let bob = license.session_of("bob", "h2");
    let release = license
        .run(LicenseCommand::Release {
            session_id: bob,
            user_id: None,
            now: t(30),
        })
        .unwrap();
    assert_eq!(grants(&release.license_events), ["carol"]);
    assert!(matches!(
        license.0.queue_status(&alice2, None),
        QueueStatus::Waiting { position: 1, .. }
    ));
}

#[test]
fn waiters_time_out_and_can_cancel() {
    let mut license = queueing(1, 60, 0, Policy::default());
    license.acquire("alice", "h1", &[], 0).unwrap();
    let bob = queued_id(&ask(&mut license, "bob", "h2", 60, 0));
    let carol = queued_id(&ask(&mut license, "carol", "h3", 600, 0));
    // Someone else cannot cancel carol's place; she can.
    let stranger = LicenseCommand::LeaveQueue {
        session_id: carol,
        user_id: Some(UserId::parse("mallory").unwrap()),
    };
    assert_eq!(license.run(stranger), Err(DomainError::NotWaiting));
    let cancel = LicenseCommand::LeaveQueue {
        session_id: carol,
        user_id: Some(UserId::parse("carol").unwrap()),
    };
    license.run(cancel.clone()).unwrap();
    assert_eq!(license.run(cancel), Err(DomainError::NotWaiting));
    // At 61 the reaper serves the queue: bob's wait ran out.
    let served = license.run(LicenseCommand::Promote { now: t(61) }).unwrap();
    assert_eq!(
        served.license_events,
        [LicenseEvent::QueueLeft {
            session_id: bob,
            reason: QueueLeaveReason::TimedOut,
        }]
    );
    let bob_user = UserId::parse("bob").unwrap();
    assert_eq!(
        license.0.queue_status(&bob, Some(&bob_user)),
        QueueStatus::Left(QueueLeaveReason::TimedOut)
    );
    assert_eq!(
        license.0.queue_status(&carol, None),
        QueueStatus::Left(QueueLeaveReason::Cancelled)
    );
    assert_eq!(
        license.0.queue_status(&carol, Some(&bob_user)),
        QueueStatus::Unknown,
        "another user's waiter is not visible"
    );
    // Nothing left to serve: serving again appends nothing.
    let idle = license.run(LicenseCommand::Promote { now: t(62) }).unwrap();
    assert!(idle.is_empty());
}

#[test]
fn reserved_seats_go_to_waiting_members_only() {
    let policy = Policy {
        reservations: vec![reservation("farm", 1, &[], &["builders"], false)],
        ..Policy::default()
    };
    let mut license = queueing(2, 600, 0, policy);
    license.acquire("alice", "h1", &[], 0).unwrap();
    license.acquire("ci", "b1", &["builders"], 0).unwrap();
    ask(&mut license, "bob", "h2", 600, 10);
    ask_with(
        &mut license,
        "ci2",
        "b2",
        &["builders"],
        Some(600),
        None,
        20,
    )
    .unwrap();
    // The farm's seat frees: bob (older, not a member) may not take it.
    let ci = license.session_of("ci", "b1");
    let release = license
        .run(LicenseCommand::Release {
            session_id: ci,
            user_id: None,
            now: t(30),
        })
        .unwrap();
    assert_eq!(grants(&release.license_events), ["ci2"]);
}

#[test]
fn a_borrowed_seat_holds_until_its_end_and_bounds_its_tokens() {
    let mut license = queueing(1, 0, 86_400, Policy::default());
    // Longer than the policy allows, or no borrowing at all: refused.
    assert_eq!(
        ask_with(&mut license, "alice", "h1", &[], None, Some(86_401), 0).map(|_| ()),
        Err(DomainError::BorrowNotAllowed {
            asked: 86_401,
            max: 86_400
        })
    );
    let decision = ask_with(&mut license, "alice", "h1", &[], None, Some(3_600), 0).unwrap();
    let LicenseEvent::SeatAcquired {
        borrowed_until,
        expires_at,
        ..
    } = &decision.license_events[0]
    else {
        panic!("a grant");
    };
    assert_eq!((*borrowed_until, *expires_at), (Some(t(3_600)), t(3_600)));
    // A heartbeat never shortens the borrow.
    let beat = crate::session::decide_heartbeat(
        &crate::session::SessionState::default(),
        license.session_of("alice", "h1"),
        TimeDelta::seconds(360),
        TimeDelta::seconds(300),
        t(10),
        *borrowed_until,
    )
    .unwrap();
    assert!(matches!(
        beat[0],
        LicenseEvent::HeartbeatRecorded { expires_at, .. } if expires_at == t(3_600)
    ));
    // Returned early: its tokens stay valid until the borrow's end.
    let returned = license.release("alice", "h1", true, 100);
    let LicenseEvent::SeatReleased {
        tokens_valid_until, ..
    } = returned
    else {
        panic!("a release");
    };
    assert_eq!(
        tokens_valid_until,
        Some(t(3_600) + TimeDelta::seconds(CLOCK_SKEW_SECS))
    );
    let off = queueing(1, 0, 0, Policy::default());
    let mut off = off;
    assert_eq!(
        ask_with(&mut off, "bob", "h2", &[], None, Some(60), 0).map(|_| ()),
        Err(DomainError::BorrowNotAllowed { asked: 60, max: 0 })
    );
}

#[test]
fn a_waiter_that_asked_to_borrow_is_granted_a_borrowed_seat() {
    let mut license = queueing(1, 600, 7_200, Policy::default());
    license.acquire("alice", "h1", &[], 0).unwrap();
    ask_with(&mut license, "bob", "h2", &[], Some(600), Some(7_200), 10).unwrap();
    let alice = license.session_of("alice", "h1");
    let release = license
        .run(LicenseCommand::Release {
            session_id: alice,
            user_id: None,
            now: t(100),
        })
        .unwrap();
    assert!(matches!(
        release.license_events.last(),
        Some(LicenseEvent::SeatAcquired {
            queued: true,
            borrowed_until: Some(end),
            ..
        }) if *end == t(7_300)
    ));
}
