//! The seat proof on hand-written histories (no database).

use super::*;
use chrono::TimeZone;
use events::catalog::{CloseReason, RevokeReason};
use events::ids::{HardwareId, ProductId, TenantId, UserId};

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_740_000_000 + secs, 0).unwrap()
}

/// Builds a history event by event; positions grow in call order.
struct Script {
    history: History,
    position: i64,
}

impl Script {
    fn new(seats: u32, strict: bool, token_ttl_secs: Option<u32>) -> Self {
        let license = LicenseId::new();
        let mut s = Self {
            history: History {
                license,
                events: Vec::new(),
                sessions: Vec::new(),
            },
            position: 0,
        };
        s.license(
            0,
            LicenseEvent::LicenseIssued {
                tenant_id: TenantId::parse("acme").unwrap(),
                license_id: license,
                product: ProductId::parse("cad-pro").unwrap(),
                seats,
                session_ttl_secs: 360,
                valid_until: None,
                token_ttl_secs,
                strict_seats: strict,
            },
        );
        s
    }

    fn timed(&mut self, secs: i64, event: LicenseEvent) -> Timed {
        self.position += 1;
        Timed {
            at: t(secs),
            position: self.position,
            event,
        }
    }

    fn license(&mut self, secs: i64, event: LicenseEvent) -> i64 {
        let e = self.timed(secs, event);
        self.history.events.push(e);
        self.position
    }

    fn session(&mut self, id: SessionId, secs: i64, event: LicenseEvent) -> i64 {
        let e = self.timed(secs, event);
        match self.history.sessions.iter_mut().find(|(s, _)| *s == id) {
            Some((_, events)) => events.push(e),
            None => self.history.sessions.push((id, vec![e])),
        }
        self.position
    }

    fn acquire(&mut self, secs: i64) -> (SessionId, i64) {
        let id = SessionId::new();
        let event = LicenseEvent::SeatAcquired {
            borrowed_until: None,
            queued: false,
            session_id: id,
            user_id: UserId::parse(&format!("u-{}", self.position)).unwrap(),
            hardware_id: HardwareId::parse(&format!("hw-{}", self.position)).unwrap(),
            expires_at: t(secs + 360),
            idempotency_key: None,
            policy_version: 0,
            overdraft: false,
            reservation: None,
        };
        (id, self.license(secs, event))
    }

    fn token(&mut self, id: SessionId, secs: i64, exp: Option<i64>) -> i64 {
        let event = LicenseEvent::TokenIssued {
            session_id: id,
            key_id: "k1".into(),
            token: "a.b.c".into(),
            jti: None,
            expires_at: exp.map(t),
            authorized_by: None,
        };
        self.session(id, secs, event)
    }

    /// Releases `id` at `secs` (license and session streams), tokens valid until `until`.
    fn release(&mut self, id: SessionId, secs: i64, until: i64) -> i64 {
        let event = LicenseEvent::SeatReleased {
            session_id: id,
            tokens_valid_until: Some(t(until)),
            linger_until: None,
            revival: 0,
        };
        let at = self.license(secs, event);
        let close = LicenseEvent::SessionClosed {
            session_id: id,
            reason: CloseReason::Released,
        };
        self.session(id, secs, close);
        at
    }

    fn check(&self) -> LicenseSeats {
        check_license(&self.history)
    }
}

#[test]
fn a_clean_strict_history_passes() {
    let mut s = Script::new(1, true, None);
    let (a, _) = s.acquire(0);
    s.token(a, 0, Some(300));
    s.token(a, 150, Some(450)); // a renewal: a still holds one seat
    s.release(a, 200, 505);
    let (b, _) = s.acquire(506);
    s.token(b, 506, Some(806));
    let r = s.check();
    assert_eq!(r.violations, 0, "{r:?}");
    assert_eq!((r.grants_checked, r.tokens_checked), (2, 3));
    assert_eq!((r.peak_live, r.peak_live_seats), (1, 1));
    assert_eq!((r.peak_tokens, r.peak_tokens_seats), (1, 1));
    assert!(r.strict);
}

#[test]
fn a_grant_over_the_seats_is_reported_at_its_position() {
    let mut s = Script::new(1, false, None);
    s.acquire(0);
    let (b, at) = s.acquire(1);
    s.acquire(2);
    let r = s.check();
    assert_eq!(r.violations, 2);
    let v = r.first_violation.clone().unwrap();
    assert_eq!((v.rule, v.position, v.at), (Rule::OverAllocation, at, t(1)));
    assert_eq!((v.count, v.seats), (Some(2), Some(1)));
    assert_eq!(v.session_id, b.to_string());
    let report = SeatsReport {
        violations: r.violations,
        first_violation: Some(v.clone()),
        licenses: vec![r],
    };
    let text = report.render();
    assert!(
        text.contains("violations: 2, first: over_allocation"),
        "{text}"
    );
    assert!(
        text.contains(&format!("FIRST VIOLATION: {}", v.render())),
        "{text}"
    );
    assert!(text.ends_with("RESULT: FAILED\n"), "{text}");
}

#[test]
fn a_second_unexpired_token_breaks_a_strict_license_only() {
    for strict in [true, false] {
        let mut s = Script::new(1, strict, None);
        let (a, _) = s.acquire(0);
        s.token(a, 0, Some(300));
        s.release(a, 10, 315);
        let (b, _) = s.acquire(20);
        let at = s.token(b, 20, Some(320));
        let r = s.check();
        assert_eq!((r.peak_tokens, r.peak_tokens_seats), (2, 1));
        if strict {
            assert_eq!(r.violations, 1);
            let v = r.first_violation.unwrap();
            assert_eq!((v.rule, v.position), (Rule::TokensOverSeats, at));
            assert_eq!((v.count, v.seats), (Some(2), Some(1)));
        } else {
            assert_eq!(r.violations, 0, "{r:?}");
        }
    }
}

#[test]
fn a_token_without_expiry_lasts_one_token_lifetime() {
    for (second_at, violations) in [(59, 1), (60, 0)] {
        let mut s = Script::new(1, true, Some(60));
        let (a, _) = s.acquire(0);
        s.token(a, 0, None);
        let revoke = LicenseEvent::SessionRevoked {
            session_id: a,
            reason: RevokeReason::Suspended,
            tokens_valid_until: t(65),
            revival: 0,
        };
        s.license(1, revoke);
        let (b, _) = s.acquire(second_at);
        s.token(b, second_at, None);
        assert_eq!(
            s.check().violations,
            violations,
            "second token at {second_at}"
        );
    }
}

#[test]
fn a_token_after_the_close_is_reported_twice_over() {
    let mut s = Script::new(2, false, None);
    let (a, _) = s.acquire(0);
    s.token(a, 0, Some(300));
    s.release(a, 10, 315);
    let at = s.token(a, 11, Some(311));
    let late = s.token(a, 12, Some(400));
    let r = s.check();
    assert_eq!(r.violations, 3, "{r:?}");
    let v = r.first_violation.unwrap();
    assert_eq!((v.rule, v.position), (Rule::TokenAfterClose, at));
    assert!(v.detail.contains("after its SessionClosed"), "{}", v.detail);
    // The one at 12 s is also after the close, and alone it still outlives the session.
    let mut only_late = s.history.clone();
    only_late.sessions[0].1.retain(|e| e.position == late);
    let r = check_license(&only_late);
    assert_eq!(r.first_violation.unwrap().rule, Rule::TokenOutlivesSession);
}

/// A 1-seat license with one overdraft seat, both taken; the first
/// session's release (at 10) lingers until 100; then a grant at `late`.
fn overdraft_and_linger(late: i64) -> (Script, i64) {
    let mut s = Script::new(1, false, None);
    let policy = events::license::Policy {
        overdraft_seats: 1,
        ..Default::default()
    };
    s.license(0, LicenseEvent::PolicyChanged { version: 1, policy });
    let (a, _) = s.acquire(1);
    s.acquire(2); // the overdraft seat
    let release = LicenseEvent::SeatReleased {
        session_id: a,
        tokens_valid_until: Some(t(400)),
        linger_until: Some(t(100)),
        revival: 0,
    };
    s.license(10, release);
    let (_, at) = s.acquire(late);
    (s, at)
}

#[test]
fn overdraft_seats_count_as_seats_and_lingering_releases_hold_theirs() {
    // A grant while the release still lingers is one too many.
    let (s, early) = overdraft_and_linger(50);
    let r = s.check();
    assert_eq!(r.violations, 1, "{r:?}");
    let first = r.first_violation.as_ref().unwrap();
    assert_eq!((first.rule, first.position), (Rule::OverAllocation, early));
    assert_eq!((r.peak_live, r.peak_live_seats), (3, 2));
    // After the linger it is clean.
    let r = overdraft_and_linger(150).0.check();
    assert_eq!(r.violations, 0, "{r:?}");
}

#[test]
fn a_revived_session_is_a_grant_and_its_new_tokens_follow_its_reopening() {
    let revived = |id: SessionId| LicenseEvent::SessionRevived {
        session_id: id,
        user_id: UserId::parse("u-1").unwrap(),
        hardware_id: HardwareId::parse("hw-1").unwrap(),
        revival: 1,
        expires_at: t(1_000),
        policy_version: 1,
        overdraft: false,
        reservation: None,
    };
    let mut s = Script::new(1, false, None);
    let policy = events::license::Policy {
        revive_window_secs: 600,
        ..Default::default()
    };
    s.license(0, LicenseEvent::PolicyChanged { version: 1, policy });
    let (a, _) = s.acquire(1);
    s.token(a, 1, Some(300));
    let expired = LicenseEvent::SessionExpired {
        session_id: a,
        deadline: t(361),
        tokens_valid_until: Some(t(670)),
        policy_version: 1,
        revival: 0,
    };
    s.license(365, expired);
    let closed = LicenseEvent::SessionClosed {
        session_id: a,
        reason: CloseReason::Expired,
    };
    s.session(a, 365, closed);
    s.license(400, revived(a));
    let reopened = LicenseEvent::SessionReopened {
        session_id: a,
        expires_at: t(1_000),
    };
    s.session(a, 400, reopened);
    s.token(a, 401, Some(1_200)); // a new life's token, past the first life's bound
    let r = s.check();
    assert_eq!(r.violations, 0, "{r:?}");
    assert_eq!(r.grants_checked, 2);

    // A revival onto a full license is an over-allocation.
    let mut s = Script::new(1, false, None);
    let (a, _) = s.acquire(1);
    let expired = LicenseEvent::SessionExpired {
        session_id: a,
        deadline: t(361),
        tokens_valid_until: Some(t(670)),
        policy_version: 0,
        revival: 0,
    };
    s.license(365, expired);
    s.acquire(370);
    let at = s.license(400, revived(a));
    let r = s.check();
    let first = r.first_violation.as_ref().expect("a violation");
    assert_eq!((first.rule, first.position), (Rule::OverAllocation, at));
}

/// A strict 1-seat license whose seat alice borrows at 0 until 3600 and
/// returns at 100; her token expires with the borrow.
fn borrowed_and_returned() -> Script {
    let mut s = Script::new(1, true, None);
    let alice = SessionId::new();
    let borrowed = LicenseEvent::SeatAcquired {
        borrowed_until: Some(t(3_600)),
        queued: false,
        session_id: alice,
        user_id: UserId::parse("alice").unwrap(),
        hardware_id: HardwareId::parse("laptop").unwrap(),
        expires_at: t(3_600),
        idempotency_key: None,
        policy_version: 1,
        overdraft: false,
        reservation: None,
    };
    s.license(0, borrowed);
    s.token(alice, 0, Some(3_600));
    // Returned early: its tokens stay valid until the borrow's end.
    s.release(alice, 100, 3_605);
    s
}

#[test]
fn a_borrowed_seat_returned_early_holds_its_seat_until_the_borrow_ends() {
    let mut s = borrowed_and_returned();
    let (b, _) = s.acquire(3_606);
    s.token(b, 3_606, Some(3_906));
    let r = s.check();
    assert_eq!(r.violations, 0, "{r:?}");
    // A grant while the borrowed token is still valid breaks the strict seat.
    let mut s = borrowed_and_returned();
    let (b, _) = s.acquire(200);
    s.token(b, 200, Some(500));
    let r = s.check();
    assert_eq!(
        r.first_violation.as_ref().map(|v| v.rule),
        Some(Rule::TokensOverSeats)
    );
}

#[test]
fn a_borrowed_token_outliving_its_release_bound_is_reported() {
    let mut s = Script::new(1, false, None);
    let (a, _) = s.acquire(0);
    // A token for a month, on a seat that was never borrowed.
    s.token(a, 0, Some(2_592_000));
    s.release(a, 100, 405);
    let r = s.check();
    assert_eq!(
        r.first_violation.as_ref().map(|v| v.rule),
        Some(Rule::TokenOutlivesSession)
    );
}
