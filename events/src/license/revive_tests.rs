//! Given/when/then tests of the revive window: a heartbeat after expiry
//! brings the session back only inside the window, on a free seat.

use super::*;

fn revive(
    license: &mut License,
    session_id: SessionId,
    user: &str,
    at: i64,
) -> Result<Decision, DomainError> {
    license.run(LicenseCommand::Revive {
        session_id,
        user_id: UserId::parse(user).unwrap(),
        groups: vec![],
        now: t(at),
    })
}

fn expire(license: &mut License, session_id: SessionId, at: i64) {
    let deadline = license.0.sessions[&session_id].expires_at;
    license
        .run(LicenseCommand::Expire {
            session_id,
            deadline,
            now: t(at),
        })
        .unwrap();
}

/// A 1-seat license whose policy has a revive window of `window` seconds,
/// where alice's session (deadline 360) expired at 370.
fn alices_expired_session(window: u32) -> (License, SessionId) {
    let policy = Policy {
        revive_window_secs: window,
        ..Policy::default()
    };
    let mut license = License::with(1, policy);
    license.acquire("alice", "h1", &[], 0).unwrap();
    let session = license.session_of("alice", "h1");
    expire(&mut license, session, 370);
    (license, session)
}

#[test]
fn an_expired_session_is_revived_inside_the_window_when_a_seat_is_free() {
    let (mut license, session) = alices_expired_session(60); // revivable until 420
    assert!(license.0.sessions.is_empty());
    // Someone else cannot revive it.
    assert_eq!(
        revive(&mut license, session, "bob", 400),
        Err(DomainError::SessionNotFound)
    );
    let revived = revive(&mut license, session, "alice", 400).unwrap();
    assert!(matches!(
        &revived.license_events[..],
        [LicenseEvent::SessionRevived { policy_version: 1, expires_at, .. }] if *expires_at == t(760)
    ));
    assert!(matches!(
        &revived.session_events[..],
        [LicenseEvent::SessionReopened { expires_at, .. }] if *expires_at == t(760)
    ));
    assert_eq!(license.session_of("alice", "h1"), session);
    assert_eq!(license.0.sessions[&session].expires_at, t(760));
    // It holds the seat again.
    assert_eq!(
        license.acquire("bob", "h2", &[], 401),
        Err(DenialReason::NoSeats)
    );
}

#[test]
fn no_revival_after_the_window_without_a_free_seat_or_without_the_policy() {
    let not_found = Err(DomainError::SessionNotFound);
    let (mut license, session) = alices_expired_session(60);
    assert_eq!(revive(&mut license, session, "alice", 421), not_found);

    let (mut license, session) = alices_expired_session(60);
    license.acquire("bob", "h2", &[], 380).unwrap();
    assert_eq!(revive(&mut license, session, "alice", 390), not_found);

    let (mut license, session) = alices_expired_session(0);
    assert_eq!(revive(&mut license, session, "alice", 371), not_found);
}
