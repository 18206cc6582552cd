//! `ledger seats` on histories written through the real rules
//! ([`Ledger`]), then on the same histories with a violation planted behind
//! the rules' back (appends with `ExpectedVersion::Any`, on a scratch schema).

use crate::support::ledger;
use chrono::{DateTime, TimeDelta, Utc};
use events::catalog::LicenseEvent;
use events::envelope::{new_event, now, Metadata};
use events::ids::{HardwareId, LicenseId, ProductId, SessionId, TenantId, UserId};
use events::store::ExpectedVersion;
use events::testing::{Ledger, TestDb};

fn tenant() -> TenantId {
    TenantId::parse("acme").unwrap()
}

fn product() -> ProductId {
    ProductId::parse("cad-pro").unwrap()
}

fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

fn hw(name: &str) -> HardwareId {
    HardwareId::parse(&format!("hw-{name}")).unwrap()
}

fn meta(license: LicenseId) -> serde_json::Value {
    Metadata::license(tenant(), license, product()).to_value()
}

/// Appends `event` to `stream` with no version check; returns its position.
async fn plant(l: &Ledger, stream: &str, license: LicenseId, event: &LicenseEvent) -> i64 {
    let written = l
        .store()
        .append_to(
            stream,
            ExpectedVersion::Any,
            vec![new_event(event, &meta(license))],
        )
        .await
        .unwrap();
    written.written[0].position
}

/// Records a token for `session` (as the signer would), valid until `exp`.
async fn token(l: &Ledger, license: LicenseId, session: SessionId, exp: DateTime<Utc>) -> i64 {
    let event = LicenseEvent::TokenIssued {
        session_id: session,
        key_id: "k1".into(),
        token: "eyJhbGciOiJSUzI1NiJ9.e30.c2ln".into(),
        jti: Some(uuid::Uuid::new_v4()),
        expires_at: Some(exp),
        authorized_by: None,
    };
    plant(l, &session.stream_name(), license, &event).await
}

/// A seat for `name`, granted by the rules.
async fn acquire(l: &Ledger, license: LicenseId, name: &str) -> SessionId {
    l.acquire(license, &user(name), &hw(name))
        .await
        .unwrap()
        .expect("a seat")
}

/// A `SeatAcquired` for `name` that the rules did not decide.
async fn plant_grant(l: &Ledger, license: LicenseId, name: &str) -> (SessionId, i64) {
    let session = SessionId::new();
    let event = LicenseEvent::SeatAcquired {
        borrowed_until: None,
        queued: false,
        session_id: session,
        user_id: user(name),
        hardware_id: hw(name),
        expires_at: now() + TimeDelta::seconds(360),
        idempotency_key: None,
        policy_version: 0,
        overdraft: false,
        reservation: None,
    };
    (
        session,
        plant(l, &license.stream_name(), license, &event).await,
    )
}

fn in_5_min() -> DateTime<Utc> {
    now() + TimeDelta::seconds(300)
}

#[tokio::test]
async fn a_clean_history_proves_out() {
    let db = TestDb::new().await;
    let l = Ledger::new(db.store());
    // Given a 2-seat license: a denial, a release, and a token still valid
    // after its release while the freed seat is granted again (not strict).
    let loose = l.issue(&tenant(), &product(), 2, 360).await.unwrap();
    let alice = acquire(&l, loose, "alice").await;
    token(&l, loose, alice, in_5_min()).await;
    let bob = acquire(&l, loose, "bob").await;
    token(&l, loose, bob, in_5_min()).await;
    assert!(l
        .acquire(loose, &user("carol"), &hw("carol"))
        .await
        .unwrap()
        .is_none());
    l.release(loose, alice).await.unwrap();
    let dave = acquire(&l, loose, "dave").await;
    token(&l, loose, dave, in_5_min()).await;
    // And a strict 2-seat license with a renewal and a release.
    let strict = l
        .issue_strict(&tenant(), &product(), 2, 360, None)
        .await
        .unwrap();
    let erin = acquire(&l, strict, "erin").await;
    token(&l, strict, erin, in_5_min()).await;
    let frank = acquire(&l, strict, "frank").await;
    token(&l, strict, frank, in_5_min()).await;
    token(&l, strict, erin, in_5_min()).await;
    l.release(strict, frank).await.unwrap();

    // When every license is checked, then nothing is found.
    let (code, out, err) = ledger(&db, &["seats"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("checked 2 license(s): 0 violation(s)"),
        "{out}"
    );
    assert!(out.ends_with("RESULT: OK\n"), "{out}");
    assert!(
        out.contains(&format!(
            "license {loose} (tenant acme, product cad-pro): 2 seat(s), not strict"
        )),
        "{out}"
    );
    assert!(
        out.lines().any(|line| line
            .starts_with("  tokens checked: 3, peak 3 session(s) holding an unexpired token at ")
            && line.ends_with("(seats then: 2)")),
        "{out}"
    );
    assert!(out.contains("note: not strict"), "{out}");
    // One license, as JSON.
    let (code, out, _) = ledger(
        &db,
        &[
            "seats",
            "--license",
            &strict.to_string(),
            "--format",
            "json",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let checked = &doc["licenses"][0];
    assert_eq!(doc["licenses"].as_array().unwrap().len(), 1);
    assert_eq!(
        (
            checked["strict"].as_bool(),
            checked["grants_checked"].as_u64()
        ),
        (Some(true), Some(2))
    );
    assert_eq!(
        (
            checked["tokens_checked"].as_u64(),
            checked["peak_tokens"].as_u64()
        ),
        (Some(3), Some(2))
    );
    assert_eq!(doc["violations"], 0);
    // A tenant's licenses; an unknown license is an error.
    let (code, out, _) = ledger(&db, &["seats", "--tenant", "acme"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("checked 2 license(s)"), "{out}");
    let (code, _, err) = ledger(&db, &["seats", "--license", &LicenseId::new().to_string()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not found in the log"), "{err}");
    db.drop_schema().await;
}

#[tokio::test]
async fn a_planted_over_allocation_is_found_at_its_position() {
    let db = TestDb::new().await;
    let l = Ledger::new(db.store());
    // Given a full 1-seat license, and a clean one beside it
    let license = l.issue(&tenant(), &product(), 1, 360).await.unwrap();
    acquire(&l, license, "alice").await;
    assert!(l
        .acquire(license, &user("bob"), &hw("bob"))
        .await
        .unwrap()
        .is_none());
    let clean = l.issue(&tenant(), &product(), 1, 360).await.unwrap();
    acquire(&l, clean, "carol").await;
    // When a second seat is written straight to the log
    let (bob, position) = plant_grant(&l, license, "bob").await;

    // Then the check fails at that event.
    let (code, out, err) = ledger(&db, &["seats"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(&format!(
            "FIRST VIOLATION: license {license}, rule over_allocation, position {position}, at "
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "granted session {bob} a seat while 1 session(s) were live of 1 seat(s)"
        )),
        "{out}"
    );
    assert!(
        out.contains("checked 2 license(s): 1 violation(s)"),
        "{out}"
    );
    assert!(out.ends_with("RESULT: FAILED\n"), "{out}");
    assert!(err.contains("seat check FAILED"), "{err}");
    let (code, out, _) = ledger(&db, &["seats", "--license", &clean.to_string()]);
    assert_eq!(code, 0, "{out}");
    db.drop_schema().await;
}

#[tokio::test]
async fn a_planted_second_token_on_a_strict_seat_is_found() {
    let db = TestDb::new().await;
    let l = Ledger::new(db.store());
    // Given a strict 1-seat license whose only session was released while
    // its token was still valid: the rules deny the seat until it lapses
    let license = l
        .issue_strict(&tenant(), &product(), 1, 360, None)
        .await
        .unwrap();
    let alice = acquire(&l, license, "alice").await;
    token(&l, license, alice, in_5_min()).await;
    l.release(license, alice).await.unwrap();
    assert!(l
        .acquire(license, &user("bob"), &hw("bob"))
        .await
        .unwrap()
        .is_none());
    // When the seat is granted anyway, and a token minted for it
    let (bob, grant) = plant_grant(&l, license, "bob").await;
    let position = token(&l, license, bob, in_5_min()).await;

    // Then the grant itself is within the seats, but the second token is not.
    let (code, out, err) = ledger(&db, &["seats", "--license", &license.to_string()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(&format!(
            "FIRST VIOLATION: license {license}, rule tokens_over_seats, position {position}, at "
        )),
        "{out}"
    );
    assert!(!out.contains(&format!("position {grant}")), "{out}");
    let (code, out, _) = ledger(&db, &["seats", "--format", "json"]);
    assert_eq!(code, 1, "{out}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let first = &doc["first_violation"];
    assert_eq!(first["rule"], "tokens_over_seats");
    assert_eq!(
        (
            first["position"].as_i64(),
            first["count"].as_u64(),
            first["seats"].as_u64()
        ),
        (Some(position), Some(2), Some(1))
    );
    assert_eq!(first["session_id"], bob.to_string());
    assert_eq!(doc["licenses"][0]["peak_tokens"], 2);
    db.drop_schema().await;
}
