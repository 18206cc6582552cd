//! Given/when/then tests of the license decisions.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};

use super::*;
use crate::catalog::{CloseReason, DenialReason, LicenseEvent, RevokeReason};

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_740_000_000 + secs, 0).unwrap()
}

fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

fn hw(name: &str) -> HardwareId {
    HardwareId::parse(name).unwrap()
}

fn issued(seats: u32) -> LicenseEvent {
    LicenseEvent::LicenseIssued {
        tenant_id: TenantId::parse("acme").unwrap(),
        license_id: LicenseId::new(),
        product: ProductId::parse("cad").unwrap(),
        seats,
        session_ttl_secs: 360,
        valid_until: Some(t(10_000)),
        token_ttl_secs: None,
        strict_seats: false,
    }
}

fn acquired(session_id: SessionId, u: &str, h: &str, key: Option<&str>) -> LicenseEvent {
    LicenseEvent::SeatAcquired {
        borrowed_until: None,
        queued: false,
        session_id,
        user_id: user(u),
        hardware_id: hw(h),
        expires_at: t(360),
        idempotency_key: key.map(|k| IdempotencyKey::parse(k).unwrap()),
        policy_version: 0,
        overdraft: false,
        reservation: None,
    }
}

fn acquire(u: &str, h: &str, key: Option<&str>, now: DateTime<Utc>) -> LicenseCommand {
    LicenseCommand::Acquire {
        borrow_secs: None,
        wait_secs: None,
        session_id: SessionId::new(),
        user_id: user(u),
        hardware_id: hw(h),
        idempotency_key: key.map(|k| IdempotencyKey::parse(k).unwrap()),
        now,
        groups: Vec::new(),
    }
}

/// Given `events`, when `cmd` is decided.
fn given(events: &[LicenseEvent], cmd: LicenseCommand) -> Result<Decision, DomainError> {
    decide(&LicenseState::fold(events), cmd)
}

fn denial(decision: &Decision) -> Option<DenialReason> {
    match decision.outcome {
        Outcome::Denied { reason, .. } => Some(reason),
        _ => None,
    }
}

fn issue(seats: u32, session_ttl_secs: u32) -> LicenseCommand {
    LicenseCommand::Issue {
        tenant_id: TenantId::parse("acme").unwrap(),
        license_id: LicenseId::new(),
        product: ProductId::parse("cad").unwrap(),
        seats,
        session_ttl_secs,
        valid_until: None,
        token_ttl_secs: None,
        strict_seats: false,
    }
}

#[test]
fn issue_creates_the_license_once() {
    let decision = given(&[], issue(3, DEFAULT_SESSION_TTL_SECS)).unwrap();
    let state = LicenseState::fold(&decision.license_events);
    assert_eq!((state.version, state.seats()), (0, 3));
    assert_eq!(
        given(&decision.license_events, issue(3, 360)),
        Err(DomainError::AlreadyIssued)
    );
    assert_eq!(given(&[], issue(0, 360)), Err(DomainError::InvalidSeats(0)));
    assert_eq!(
        given(&[], issue(1, 0)),
        Err(DomainError::InvalidSessionTtl(0))
    );
}

#[test]
fn commands_on_a_missing_license_fail() {
    assert_eq!(
        given(&[], acquire("u", "h", None, t(0))),
        Err(DomainError::NotIssued)
    );
    assert_eq!(
        given(&[], LicenseCommand::Reinstate),
        Err(DomainError::NotIssued)
    );
}

#[test]
fn acquire_takes_a_seat() {
    let decision = given(&[issued(2)], acquire("u1", "h1", None, t(0))).unwrap();
    let Outcome::Acquired {
        session_id,
        expires_at,
        existing,
    } = decision.outcome
    else {
        panic!("{decision:?}");
    };
    assert!(!existing);
    assert_eq!(expires_at, t(360));
    assert_eq!(
        decision.license_events,
        vec![acquired(session_id, "u1", "h1", None)]
    );
    assert!(decision.session_events.is_empty());
}

#[test]
fn same_user_and_hardware_gets_the_existing_session() {
    let s1 = SessionId::new();
    let events = [issued(1), acquired(s1, "u1", "h1", None)];
    let decision = given(&events, acquire("u1", "h1", None, t(5))).unwrap();
    assert_eq!(
        decision.outcome,
        Outcome::Acquired {
            session_id: s1,
            expires_at: t(360),
            existing: true
        }
    );
    assert!(decision.is_empty());
    // Another machine of the same user needs its own seat.
    let other = given(&events, acquire("u1", "h2", None, t(5))).unwrap();
    assert_eq!(denial(&other), Some(DenialReason::NoSeats));
}

#[test]
fn idempotency_key_gets_the_existing_session() {
    let s1 = SessionId::new();
    let events = [issued(1), acquired(s1, "u1", "h1", Some("k1"))];
    let decision = given(&events, acquire("u1", "h1", Some("k1"), t(5))).unwrap();
    assert_eq!(
        decision.outcome,
        Outcome::Acquired {
            session_id: s1,
            expires_at: t(360),
            existing: true
        }
    );
    assert!(decision.is_empty());
    // The key is per user, and must not switch machines.
    let theirs = given(&events, acquire("u2", "h1", Some("k1"), t(5))).unwrap();
    assert_eq!(denial(&theirs), Some(DenialReason::NoSeats));
    assert_eq!(
        given(&events, acquire("u1", "h9", Some("k1"), t(5))),
        Err(DomainError::IdempotencyKeyReused)
    );
}

#[test]
fn no_seats_is_a_denial_event() {
    let events = [issued(1), acquired(SessionId::new(), "u1", "h1", None)];
    let decision = given(&events, acquire("u2", "h2", None, t(5))).unwrap();
    assert_eq!(
        decision.outcome,
        Outcome::Denied {
            reason: DenialReason::NoSeats,
            retry_at: None
        }
    );
    assert_eq!(
        decision.license_events,
        vec![LicenseEvent::AcquireDenied {
            user_id: user("u2"),
            hardware_id: hw("h2"),
            reason: DenialReason::NoSeats,
            policy_version: 0,
        }]
    );
}

#[test]
fn suspended_license_denies_until_reinstated() {
    let suspend = given(
        &[issued(5)],
        LicenseCommand::Suspend {
            reason: " unpaid ".into(),
            now: t(0),
        },
    )
    .unwrap();
    assert_eq!(
        suspend.license_events,
        vec![LicenseEvent::LicenseSuspended {
            reason: "unpaid".into()
        }]
    );
    let mut events = vec![issued(5)];
    events.extend(suspend.license_events);
    let decision = given(&events, acquire("u1", "h1", None, t(0))).unwrap();
    assert_eq!(denial(&decision), Some(DenialReason::Suspended));
    assert!(given(
        &events,
        LicenseCommand::Suspend {
            reason: "again".into(),
            now: t(0)
        }
    )
    .unwrap()
    .is_empty());
    assert_eq!(
        given(
            &events,
            LicenseCommand::Suspend {
                reason: " ".into(),
                now: t(0)
            }
        ),
        Err(DomainError::InvalidReason)
    );
    events.extend(
        given(&events, LicenseCommand::Reinstate)
            .unwrap()
            .license_events,
    );
    let decision = given(&events, acquire("u1", "h1", None, t(0))).unwrap();
    assert!(matches!(
        decision.outcome,
        Outcome::Acquired {
            existing: false,
            ..
        }
    ));
    assert!(given(&events, LicenseCommand::Reinstate)
        .unwrap()
        .is_empty());
}

#[test]
fn expired_license_denies() {
    let at_limit = given(&[issued(5)], acquire("u1", "h1", None, t(10_000))).unwrap();
    assert!(denial(&at_limit).is_none());
    let after = given(&[issued(5)], acquire("u1", "h1", None, t(10_001))).unwrap();
    assert_eq!(denial(&after), Some(DenialReason::LicenseExpired));
}

#[test]
fn release_frees_the_seat_and_closes_the_session_stream() {
    let s1 = SessionId::new();
    let mut events = vec![issued(1), acquired(s1, "u1", "h1", Some("k1"))];
    let release = LicenseCommand::Release {
        session_id: s1,
        user_id: Some(user("u1")),
        now: t(1),
    };
    let decision = given(&events, release.clone()).unwrap();
    assert_eq!(
        decision.license_events,
        vec![LicenseEvent::SeatReleased {
            session_id: s1,
            // one default token lifetime (300 s) and the skew allowance after t(1)
            tokens_valid_until: Some(t(306)),
            linger_until: None,
            revival: 0,
        }]
    );
    assert_eq!(
        decision.session_events,
        vec![LicenseEvent::SessionClosed {
            session_id: s1,
            reason: CloseReason::Released
        }]
    );
    assert_eq!(decision.session_stream(), Some(s1));
    events.extend(decision.license_events);
    let state = LicenseState::fold(&events);
    assert!(state.sessions.is_empty());
    // The seat is free and the old key no longer maps to a session.
    let again = given(&events, acquire("u2", "h2", Some("k1"), t(1))).unwrap();
    assert!(matches!(
        again.outcome,
        Outcome::Acquired {
            existing: false,
            ..
        }
    ));
    assert_eq!(given(&events, release), Err(DomainError::SessionNotFound));
}

#[test]
fn release_by_another_user_is_not_found_but_admin_may() {
    let s1 = SessionId::new();
    let events = [issued(1), acquired(s1, "u1", "h1", None)];
    let theirs = LicenseCommand::Release {
        session_id: s1,
        user_id: Some(user("u2")),
        now: t(1),
    };
    assert_eq!(given(&events, theirs), Err(DomainError::SessionNotFound));
    assert!(given(
        &events,
        LicenseCommand::Release {
            session_id: s1,
            user_id: None,
            now: t(1)
        }
    )
    .is_ok());
}

#[test]
fn expire_ends_a_session_past_its_deadline_only() {
    let s1 = SessionId::new();
    let events = [issued(1), acquired(s1, "u1", "h1", None)];
    let state = LicenseState::fold(&events);
    assert_eq!(state.sessions_due(t(359)).count(), 0);
    assert_eq!(
        state
            .sessions_due(t(360))
            .map(|(id, _)| id)
            .collect::<Vec<_>>(),
        vec![s1]
    );
    let early = LicenseCommand::Expire {
        session_id: s1,
        deadline: t(400),
        now: t(399),
    };
    assert_eq!(
        given(&events, early),
        Err(DomainError::NotYetExpired(t(400)))
    );
    let cmd = LicenseCommand::Expire {
        session_id: s1,
        deadline: t(400),
        now: t(402),
    };
    let decision = given(&events, cmd.clone()).unwrap();
    assert_eq!(
        decision.license_events,
        vec![LicenseEvent::SessionExpired {
            session_id: s1,
            deadline: t(400),
            tokens_valid_until: Some(t(707)),
            policy_version: 0,
            revival: 0,
        }]
    );
    assert_eq!(
        decision.session_events,
        vec![LicenseEvent::SessionClosed {
            session_id: s1,
            reason: CloseReason::Expired
        }]
    );
    let mut after = events.to_vec();
    after.extend(decision.license_events);
    assert!(LicenseState::fold(&after).sessions.is_empty());
    assert_eq!(given(&after, cmd), Err(DomainError::SessionNotFound));
}

#[test]
fn lowering_seats_revokes_the_newest_sessions_and_denies_new_ones() {
    let (s1, s2) = (SessionId::new(), SessionId::new());
    let mut events = vec![
        issued(2),
        acquired(s1, "u1", "h1", None),
        acquired(s2, "u2", "h2", None),
    ];
    let lower = LicenseCommand::ChangeSeats {
        seats: 1,
        now: t(0),
    };
    let decision = given(&events, lower).unwrap();
    // The newest session (s2) is revoked; its stream is closed in the same append.
    assert_eq!(
        decision.license_events,
        vec![
            LicenseEvent::SeatsChanged { seats: 1 },
            LicenseEvent::SessionRevoked {
                session_id: s2,
                reason: RevokeReason::SeatsReduced,
                tokens_valid_until: t(305),
                revival: 0,
            }
        ]
    );
    assert_eq!(decision.sessions(), vec![s2]);
    events.extend(decision.license_events);
    let state = LicenseState::fold(&events);
    assert_eq!(
        (state.seats(), state.sessions.len(), state.version),
        (1, 1, 4)
    );
    assert!(state.sessions.contains_key(&s1));
    assert_eq!(
        denial(&given(&events, acquire("u3", "h3", None, t(1))).unwrap()),
        Some(DenialReason::NoSeats)
    );
    let same = LicenseCommand::ChangeSeats {
        seats: 1,
        now: t(0),
    };
    assert!(given(&events, same).unwrap().is_empty());
    let too_many = LicenseCommand::ChangeSeats {
        seats: 100_001,
        now: t(0),
    };
    assert_eq!(
        given(&events, too_many),
        Err(DomainError::InvalidSeats(100_001))
    );
}

#[test]
fn suspension_revokes_every_live_session() {
    let (s1, s2) = (SessionId::new(), SessionId::new());
    let events = vec![
        issued(2),
        acquired(s1, "u1", "h1", None),
        acquired(s2, "u2", "h2", None),
    ];
    let suspend = LicenseCommand::Suspend {
        reason: "unpaid".into(),
        now: t(10),
    };
    let decision = given(&events, suspend).unwrap();
    assert_eq!(decision.license_events.len(), 3);
    let mut closed = decision.sessions();
    closed.sort();
    let mut both = vec![s1, s2];
    both.sort();
    assert_eq!(closed, both);
    assert!(decision.session_events.iter().all(|e| matches!(
        e,
        LicenseEvent::SessionClosed {
            reason: CloseReason::Revoked,
            ..
        }
    )));
    let state = LicenseState::fold(events.iter().chain(&decision.license_events));
    assert!(state.sessions.is_empty() && state.suspended);
}

fn strict(seats: u32, token_ttl_secs: u32) -> LicenseEvent {
    LicenseEvent::LicenseIssued {
        tenant_id: TenantId::parse("acme").unwrap(),
        license_id: LicenseId::new(),
        product: ProductId::parse("cad").unwrap(),
        seats,
        session_ttl_secs: 360,
        valid_until: None,
        token_ttl_secs: Some(token_ttl_secs),
        strict_seats: true,
    }
}

/// `license` with one session acquired by u1, released at t=10.
fn released_at_10(license: LicenseEvent) -> Vec<LicenseEvent> {
    let s1 = SessionId::new();
    let mut events = vec![license, acquired(s1, "u1", "h1", None)];
    let release = LicenseCommand::Release {
        session_id: s1,
        user_id: None,
        now: t(10),
    };
    events.extend(given(&events, release).unwrap().license_events);
    events
}

#[test]
fn strict_seats_stay_held_by_tokens_until_they_lapse() {
    // Given a strict one-seat license with 60 s tokens, released at t=10
    let events = released_at_10(strict(1, 60));
    // Then another machine is denied until the token may have lapsed (t=75),
    // and told when
    let early = given(&events, acquire("u2", "h2", None, t(74))).unwrap();
    assert_eq!(
        early.outcome,
        Outcome::Denied {
            reason: DenialReason::NoSeats,
            retry_at: Some(t(75))
        }
    );
    let later = given(&events, acquire("u2", "h2", None, t(76))).unwrap();
    assert!(matches!(
        later.outcome,
        Outcome::Acquired {
            existing: false,
            ..
        }
    ));
    // Without strict accounting the seat is free at once.
    let lax = released_at_10(issued(1));
    let now = given(&lax, acquire("u2", "h2", None, t(11))).unwrap();
    assert!(matches!(now.outcome, Outcome::Acquired { .. }));
}

#[test]
fn token_ttl_must_fit_the_session_ttl() {
    let mut cmd = issue(1, 60);
    if let LicenseCommand::Issue { token_ttl_secs, .. } = &mut cmd {
        *token_ttl_secs = Some(61);
    }
    assert_eq!(
        given(&[], cmd),
        Err(DomainError::InvalidTokenTtl {
            token_ttl_secs: 61,
            session_ttl_secs: 60
        })
    );
    let state = LicenseState::fold(&given(&[], issue(1, 60)).unwrap().license_events);
    assert_eq!(state.issued.unwrap().token_ttl_secs, 60);
}

#[test]
fn session_lookups_respect_ownership() {
    let s1 = SessionId::new();
    let state = LicenseState::fold(&[issued(1), acquired(s1, "u1", "h1", None)]);
    assert!(state.live_session(s1, Some(&user("u1"))).is_ok());
    assert_eq!(
        state.live_session(s1, Some(&user("u2"))),
        Err(DomainError::SessionNotFound)
    );
    assert_eq!(state.sessions_of(Some(&user("u2"))).count(), 0);
    assert_eq!(state.sessions_of(None).count(), 1);
    assert_eq!(
        state.issued.as_ref().unwrap().session_ttl(),
        TimeDelta::seconds(360)
    );
}
