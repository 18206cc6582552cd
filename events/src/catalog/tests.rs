//! Catalogue tests: round trips, typed errors, and the docs examples.

use super::*;
use chrono::TimeZone;
use uuid::Uuid;

/// One event of every type, with fixed values.
pub(crate) fn samples() -> Vec<LicenseEvent> {
    let at = Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap();
    let session_id = SessionId::from_uuid(Uuid::from_u128(7));
    let user_id = UserId::parse("user-1").unwrap();
    let hardware_id = HardwareId::parse("aa:bb:cc").unwrap();
    vec![
        LicenseEvent::LicenseIssued {
            tenant_id: TenantId::parse("acme").unwrap(),
            license_id: LicenseId::from_uuid(Uuid::from_u128(1)),
            product: ProductId::parse("cad-pro").unwrap(),
            seats: 10,
            session_ttl_secs: 360,
            valid_until: Some(at),
            token_ttl_secs: None,
            strict_seats: false,
        },
        LicenseEvent::SeatsChanged { seats: 5 },
        LicenseEvent::PolicyChanged {
            version: 2,
            policy: crate::license::Policy {
                max_borrow_secs: 604_800,
                max_queue_wait_secs: 600,
                linger_secs: 60,
                overdraft_seats: 2,
                revive_window_secs: 30,
                max_seats_per_user: Some(1),
                reservations: vec![crate::license::Reservation {
                    name: ReservationName::parse("build-farm").unwrap(),
                    seats: 2,
                    users: vec![UserId::parse("ci").unwrap()],
                    groups: vec![crate::ids::GroupId::parse("builders").unwrap()],
                    lend_when_idle: true,
                }],
            },
        },
        LicenseEvent::LicenseSuspended {
            reason: "unpaid invoice".into(),
        },
        LicenseEvent::LicenseReinstated {},
        LicenseEvent::SeatAcquired {
            borrowed_until: Some(at),
            queued: true,
            session_id,
            user_id: user_id.clone(),
            hardware_id: hardware_id.clone(),
            expires_at: at,
            idempotency_key: Some(IdempotencyKey::parse("k-1").unwrap()),
            policy_version: 2,
            overdraft: true,
            reservation: Some(ReservationName::parse("build-farm").unwrap()),
        },
        LicenseEvent::QueueJoined {
            session_id,
            user_id: user_id.clone(),
            hardware_id: hardware_id.clone(),
            groups: vec![crate::ids::GroupId::parse("builders").unwrap()],
            idempotency_key: Some(IdempotencyKey::parse("k-1").unwrap()),
            reason: DenialReason::NoSeats,
            wait_until: at,
            borrow_secs: Some(3600),
            policy_version: 2,
        },
        LicenseEvent::QueueLeft {
            session_id,
            reason: QueueLeaveReason::TimedOut,
        },
        LicenseEvent::AcquireDenied {
            user_id,
            hardware_id,
            reason: DenialReason::NoSeats,
            policy_version: 0,
        },
        LicenseEvent::SeatReleased {
            session_id,
            tokens_valid_until: Some(at),
            linger_until: Some(at),
            revival: 0,
        },
        LicenseEvent::SessionExpired {
            session_id,
            deadline: at,
            tokens_valid_until: Some(at),
            policy_version: 0,
            revival: 0,
        },
        LicenseEvent::SessionRevoked {
            session_id,
            reason: RevokeReason::Suspended,
            tokens_valid_until: at,
            revival: 0,
        },
        LicenseEvent::SessionRevived {
            session_id,
            user_id: UserId::parse("user-1").unwrap(),
            hardware_id: HardwareId::parse("aa:bb:cc").unwrap(),
            revival: 1,
            expires_at: at,
            policy_version: 2,
            overdraft: false,
            reservation: None,
        },
        LicenseEvent::SessionReopened {
            session_id,
            expires_at: at,
        },
        LicenseEvent::HeartbeatRecorded {
            session_id,
            expires_at: at,
        },
        LicenseEvent::SessionClosed {
            session_id,
            reason: CloseReason::Expired,
        },
        LicenseEvent::TokenRenewalDue { session_id },
        LicenseEvent::TokenIssued {
            session_id,
            key_id: "1".into(),
            token: "a.b.c".into(),
            jti: Some(Uuid::from_u128(9)),
            expires_at: Some(at),
            authorized_by: Some(41),
        },
        LicenseEvent::CheckpointSigned {
            up_to_position: 42,
            chain_head: "00".repeat(32),
            key_id: "1".into(),
            signature: "c2ln".into(),
        },
    ]
}

#[test]
fn every_type_round_trips_through_data_and_from_stored() {
    let samples = samples();
    assert_eq!(samples.len(), EVENT_TYPES.len());
    for event in samples {
        let data = event.data();
        assert!(data.get("type").is_none(), "{data}");
        assert_eq!(event.to_json()["type"], event.event_type());
        assert_eq!(
            current_version(event.event_type()),
            Some(event.schema_version())
        );
        let back = LicenseEvent::from_stored(event.event_type(), event.schema_version(), &data);
        assert_eq!(back.unwrap(), event);
    }
}

#[test]
fn wire_names_are_snake_case() {
    let denied = &samples()[8];
    assert_eq!(denied.data()["reason"], "no_seats");
    assert_eq!(DenialReason::LicenseExpired.as_str(), "license_expired");
    for reason in [
        DenialReason::UserLimit,
        DenialReason::Reserved,
        DenialReason::QueueFull,
    ] {
        assert_eq!(serde_json::to_value(reason).unwrap(), reason.as_str());
    }
    for reason in [QueueLeaveReason::Cancelled, QueueLeaveReason::TimedOut] {
        assert_eq!(serde_json::to_value(reason).unwrap(), reason.as_str());
    }
    assert_eq!(samples()[7].data()["reason"], "timed_out");
    assert_eq!(samples()[15].data()["reason"], "expired");
    assert_eq!(samples()[11].data()["reason"], "suspended");
    assert_eq!(samples()[4].data(), serde_json::json!({}));
}

#[test]
fn stored_garbage_is_rejected_with_a_typed_error() {
    let data = serde_json::json!({ "seats": 3 });
    assert!(matches!(
        LicenseEvent::from_stored("SeatsRenamed", 1, &data),
        Err(CatalogError::UnknownType(t)) if t == "SeatsRenamed"
    ));
    for version in [0, 2] {
        assert!(matches!(
            LicenseEvent::from_stored("SeatsChanged", version, &data),
            Err(CatalogError::UnsupportedVersion { current: 1, .. })
        ));
    }
    assert!(matches!(
        LicenseEvent::from_stored("SeatsChanged", 1, &serde_json::json!([3])),
        Err(CatalogError::NotAnObject(_))
    ));
    assert!(matches!(
        LicenseEvent::from_stored("SeatsChanged", 1, &serde_json::json!({ "seats": "x" })),
        Err(CatalogError::Malformed { .. })
    ));
    // Ids are validated on the way in, too.
    let bad_hw = serde_json::json!({ "session_id": Uuid::nil(), "user_id": "u",
        "hardware_id": "has space", "reason": "no_seats" });
    assert!(LicenseEvent::from_stored("AcquireDenied", 1, &bad_hw).is_err());
}

#[test]
fn categories_and_session_ids() {
    for event in samples() {
        let expected = match event.event_type() {
            "HeartbeatRecorded" | "SessionClosed" | "SessionReopened" | "TokenRenewalDue"
            | "TokenIssued" => StreamCategory::Session,
            "CheckpointSigned" => StreamCategory::Checkpoints,
            _ => StreamCategory::License,
        };
        assert_eq!(event.category(), expected, "{}", event.event_type());
        if expected == StreamCategory::Session {
            assert!(event.session_id().is_some());
        }
    }
}

/// Every JSON example in `docs/events.md` is a readable envelope, and
/// every event type has one.
#[test]
fn docs_examples_are_readable_events() {
    let doc = include_str!("../../../docs/events.md");
    let mut seen = std::collections::BTreeSet::new();
    for block in doc.split("```json").skip(1) {
        let json = block.split("```").next().unwrap();
        let envelope: Value = serde_json::from_str(json).expect(json);
        let event_type = envelope["type"].as_str().expect("type");
        let version = envelope["schema_version"].as_i64().expect("schema_version") as i32;
        for key in [
            "event_id",
            "stream",
            "stream_version",
            "position",
            "recorded_at",
            "metadata",
        ] {
            assert!(
                envelope.get(key).is_some(),
                "{event_type} example lacks {key}"
            );
        }
        let event = LicenseEvent::from_stored(event_type, version, &envelope["data"])
            .unwrap_or_else(|e| panic!("{event_type} example: {e}"));
        assert_eq!(
            event.data(),
            envelope["data"],
            "{event_type} example is not canonical"
        );
        seen.insert(event_type.to_owned());
    }
    let all: std::collections::BTreeSet<_> =
        EVENT_TYPES.iter().map(|(t, _)| t.to_string()).collect();
    assert_eq!(seen, all);
}
