//! Seats: no over-allocation under concurrency (one and two instances),
//! the session lifecycle, expiry by the reaper, idempotent acquires, tokens.

use crate::harness::{self, count_events, token, System};
use futures::future::join_all;
use licensed::app::Components;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::time::Duration;

async fn race(apps: &[&harness::TestApp], license: &str, tenant: &str) -> (usize, usize) {
    let mut calls = Vec::new();
    for i in 0..200 {
        let app = apps[i % apps.len()];
        let license = license.to_owned();
        let tenant = tenant.to_owned();
        calls.push(async move {
            let t = token(&format!("user-{i}"), &tenant, false).await;
            app.acquire(&t, &license, &format!("hw-{i}")).await
        });
    }
    let answers = join_all(calls).await;
    let mut granted = 0;
    let mut denied = 0;
    for a in answers {
        match a.status {
            StatusCode::OK | StatusCode::ACCEPTED => granted += 1,
            StatusCode::FORBIDDEN => {
                assert_eq!(a.headers["content-type"], "application/problem+json");
                assert_eq!(a.body["reason"], "no_seats");
                denied += 1;
            }
            other => panic!("unexpected {other}: {}", a.body),
        }
    }
    (granted, denied)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_acquires_for_ten_seats() {
    let sys = System::start_with(|c| c.acquire_token_wait_ms = 200).await;
    let license = sys.app.issue("acme", 10, 360).await;
    let (granted, denied) = race(&[&sys.app], &license, "acme").await;
    assert_eq!((granted, denied), (10, 190));
    assert_eq!(count_events(&sys.db, "SeatAcquired").await, 10);
    assert_eq!(count_events(&sys.db, "AcquireDenied").await, 190);
    sys.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_sharing_the_database_never_over_allocate() {
    let sys = System::start_with(|c| c.acquire_token_wait_ms = 200).await;
    let mut config = harness::config(&sys.db, &sys.names).await;
    config.acquire_token_wait_ms = 200;
    let second = harness::start(
        config,
        Components {
            serve: true,
            ..Components::default()
        },
    )
    .await;
    let license = sys.app.issue("acme", 10, 360).await;
    let (granted, denied) = race(&[&sys.app, &second], &license, "acme").await;
    assert_eq!((granted, denied), (10, 190));
    assert_eq!(count_events(&sys.db, "SeatAcquired").await, 10);
    assert_eq!(count_events(&sys.db, "AcquireDenied").await, 190);
    second.stop().await;
    sys.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_heartbeat_release_and_reuse() {
    let sys = System::start().await;
    let license = sys.app.issue("acme", 1, 360).await;
    let alice = token("alice", "acme", false).await;
    let bob = token("bob", "acme", false).await;

    let a = sys.app.acquire(&alice, &license, "alice-laptop").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let session = a.body["session_id"].as_str().unwrap().to_owned();
    let first_deadline: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(a.body["expires_at"].clone()).unwrap();
    assert_eq!(
        sys.app.acquire(&bob, &license, "bob-pc").await.status,
        StatusCode::FORBIDDEN,
        "the only seat is taken"
    );

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let hb = sys.app.heartbeat(&alice, &session).await;
    assert_eq!(hb.status, StatusCode::OK, "{}", hb.body);
    let extended: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(hb.body["expires_at"].clone()).unwrap();
    assert!(extended > first_deadline, "heartbeat extends the deadline");

    let token_url = format!("/api/v1/licenses/sessions/{session}/token");
    let live = sys
        .app
        .call(Method::GET, &token_url, Some(&alice), None)
        .await;
    assert!(
        matches!(live.status, StatusCode::OK | StatusCode::ACCEPTED),
        "{}",
        live.body
    );
    let rel = sys.app.release(&alice, &session).await;
    assert_eq!(rel.status, StatusCode::NO_CONTENT);
    // The ended session's token URL says so: no token will ever come.
    let gone = sys
        .app
        .call(Method::GET, &token_url, Some(&alice), None)
        .await;
    assert_eq!(gone.status, StatusCode::GONE, "{}", gone.body);
    assert_eq!(
        gone.body["type"],
        "https://license-ledger.dev/problems/session-ended"
    );
    let again = sys.app.release(&alice, &session).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    let hb = sys.app.heartbeat(&alice, &session).await;
    assert_eq!(
        hb.status,
        StatusCode::NOT_FOUND,
        "no heartbeat after release"
    );

    assert_eq!(
        sys.app.acquire(&bob, &license, "bob-pc").await.status,
        StatusCode::OK,
        "the freed seat is reused"
    );
    sys.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_session_is_expired_by_the_reaper_and_its_seat_reused() {
    let sys = System::start().await;
    let license = sys.app.issue("acme", 1, 1).await;
    let alice = token("alice", "acme", false).await;
    let bob = token("bob", "acme", false).await;
    let a = sys.app.acquire(&alice, &license, "alice-laptop").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let session = a.body["session_id"].as_str().unwrap().to_owned();

    let mut expired = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if count_events(&sys.db, "SessionExpired").await == 1 {
            expired = true;
            break;
        }
    }
    assert!(
        expired,
        "the reaper expires the session within a few seconds of its deadline"
    );
    assert_eq!(count_events(&sys.db, "SessionClosed").await, 1);
    let hb = sys.app.heartbeat(&alice, &session).await;
    assert_eq!(
        hb.status,
        StatusCode::NOT_FOUND,
        "an expired session cannot be revived"
    );
    assert_eq!(
        sys.app.acquire(&bob, &license, "bob-pc").await.status,
        StatusCode::OK
    );
    sys.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_acquire_returns_the_same_session() {
    let sys = System::start().await;
    let license = sys.app.issue("acme", 5, 360).await;
    let alice = token("alice", "acme", false).await;
    let call = |key: &'static str, hw: &'static str| {
        let (app, alice, license) = (&sys.app, alice.clone(), license.clone());
        async move {
            app.http
                .post(app.url("/api/v1/licenses/acquire"))
                .bearer_auth(alice)
                .header("Idempotency-Key", key)
                .json(&serde_json::json!({ "license_id": license, "hardware_id": hw }))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let first = call("retry-1", "laptop").await;
    let second = call("retry-1", "laptop").await;
    assert_eq!(first["session_id"], second["session_id"]);
    // Same user and machine without a key: the live session too.
    let third = sys.app.acquire(&alice, &license, "laptop").await;
    assert_eq!(third.body["session_id"], first["session_id"]);
    assert_eq!(
        count_events(&sys.db, "SeatAcquired").await,
        1,
        "no second seat"
    );
    let view = sys
        .app
        .call(
            Method::GET,
            &format!("/api/v1/licenses/{license}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(view.body["seats_in_use"], 1);
    sys.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_verifies_offline_and_through_the_jwks() {
    let sys = System::start().await;
    let license = sys.app.issue("acme", 2, 360).await;
    let alice = token("alice", "acme", false).await;
    let a = sys.app.acquire(&alice, &license, "alice-laptop").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let jwt = a.body["license_token"].as_str().unwrap();
    let pem = a.body["public_key_pem"].as_str().unwrap();
    let claims = keys::verify_license_token(jwt, pem, "https://license-ledger.test")
        .expect("verifies with the PEM");
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.tenant, "acme");
    assert_eq!(claims.license, license);
    assert_eq!(claims.product, "cad-pro");
    assert_eq!(claims.sid, a.body["session_id"].as_str().unwrap());
    assert_eq!(claims.hwid, "alice-laptop");
    assert!(claims.iat <= claims.nbf && claims.nbf < claims.exp);

    let jwks = sys
        .app
        .call(Method::GET, "/.well-known/jwks.json", None, None)
        .await;
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    let kid = header.kid.unwrap();
    let jwk = jwks.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .expect("kid published");
    keys::verify_license_token_jwk(
        jwt,
        jwk["n"].as_str().unwrap(),
        jwk["e"].as_str().unwrap(),
        "https://license-ledger.test",
    )
    .expect("verifies with the JWKS");

    // Any change breaks it.
    let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
    let mut payload: Value = serde_json::from_slice(&base64_url(&parts[1])).unwrap();
    payload["sub"] = Value::from("mallory");
    parts[1] = base64_encode(&serde_json::to_vec(&payload).unwrap());
    assert!(
        keys::verify_license_token(&parts.join("."), pem, "https://license-ledger.test").is_err()
    );

    let tok = sys
        .app
        .call(
            Method::GET,
            &format!("/api/v1/licenses/sessions/{}/token", claims.sid),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(tok.status, StatusCode::OK);
    assert_eq!(tok.body["license_token"], jwt);
    assert_eq!(count_events(&sys.db, "TokenIssued").await, 1);
    sys.cleanup().await;
}

fn base64_url(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_signer_acquire_answers_202_and_the_token_arrives_later() {
    let db = events::testing::TestDb::new().await;
    let names = harness::Names::random();
    let mut config = harness::config(&db, &names).await;
    config.acquire_token_wait_ms = 300;
    let no_signer = harness::no_signer();
    let app = harness::start(config.clone(), no_signer).await;
    let license = app.issue("acme", 2, 360).await;
    let alice = token("alice", "acme", false).await;
    let a = app.acquire(&alice, &license, "laptop").await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let url = a.body["token_url"].as_str().unwrap().to_owned();
    assert_eq!(a.headers["location"], url.as_str());
    assert_eq!(
        app.call(Method::GET, &url, Some(&alice), None).await.status,
        StatusCode::ACCEPTED
    );

    let signer = harness::start(
        config,
        Components {
            sign: true,
            ..Components::default()
        },
    )
    .await;
    let mut fetched = None;
    for _ in 0..50 {
        let r = app.call(Method::GET, &url, Some(&alice), None).await;
        if r.status == StatusCode::OK {
            fetched = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = fetched.expect("the signer mints the token once it runs");
    let claims = keys::verify_license_token(
        r.body["license_token"].as_str().unwrap(),
        r.body["public_key_pem"].as_str().unwrap(),
        "https://license-ledger.test",
    )
    .unwrap();
    assert_eq!(claims.sid, a.body["session_id"].as_str().unwrap());
    signer.stop().await;
    app.stop().await;
    harness::delete_stream(&names.stream).await;
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_broken_license_does_not_stop_the_reapers_sweep() {
    use events::ids::HardwareId;
    use events::store::ExpectedVersion;
    use licensed::service::{Acquisition, Licenses};
    use licensed::workers::reap::Reaper;
    let db = events::testing::TestDb::new().await;
    let licenses = Licenses::new(db.store());
    let (admin, product) = acme_admin();
    // The first license issued is broken: its stream holds an event no build knows.
    let broken = licenses
        .issue(&admin, product.clone(), 1, 360, None)
        .await
        .unwrap();
    let broken = broken.issued.unwrap().license_id;
    let bogus = events::store::NewEvent {
        event_id: uuid::Uuid::now_v7(),
        event_type: "Bogus".into(),
        schema_version: 1,
        data: serde_json::json!({}),
        metadata: serde_json::json!({}),
    };
    db.store()
        .append_to(&broken.stream_name(), ExpectedVersion::Any, vec![bogus])
        .await
        .unwrap();
    let short = licenses.issue(&admin, product, 1, 1, None).await.unwrap();
    let short = short.issued.unwrap().license_id;
    let hw = HardwareId::parse("laptop").unwrap();
    let acquired = licenses.acquire(&admin, short, hw, None).await.unwrap();
    assert!(matches!(acquired, Acquisition::Granted { .. }));
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    // The sweep meets the broken license first, and still expires the other's session.
    let expired = Reaper::default().sweep(&licenses).await.unwrap();
    assert_eq!(expired, 1);
    assert_eq!(count_events(&db, "SessionExpired").await, 1);
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn caches_stay_at_their_caps_whatever_ids_are_asked_for() {
    use events::ids::{HardwareId, LicenseId, SessionId};
    use licensed::service::{Licenses, ServiceError};
    let db = events::testing::TestDb::new().await;
    let licenses = Licenses::with_caps(db.store(), 3, 4);
    let (admin, product) = acme_admin();
    let mut ids = Vec::new();
    for i in 0..5 {
        let issued = licenses
            .issue(&admin, product.clone(), 2, 360, None)
            .await
            .unwrap();
        let id = issued.issued.unwrap().license_id;
        let hw = HardwareId::parse(&format!("hw-{i}")).unwrap();
        licenses.acquire(&admin, id, hw, None).await.unwrap();
        ids.push(id);
    }
    let (cached_licenses, cached_sessions) = licenses.cached();
    assert!(
        cached_licenses <= 3 && cached_sessions <= 4,
        "{cached_licenses}, {cached_sessions}"
    );
    // Evicted licenses are read again from the log: nothing is lost.
    for id in &ids {
        assert_eq!(licenses.license(*id, None).await.unwrap().sessions.len(), 1);
    }
    // 50 000 lookups of ids that name nothing cache nothing.
    let unknown: Vec<_> = (0..50_000).map(|_| LicenseId::new()).collect();
    for chunk in unknown.chunks(256) {
        let lookups = chunk.iter().map(|id| licenses.license(*id, None));
        for result in join_all(lookups).await {
            assert!(matches!(result, Err(ServiceError::NotFound(_))));
        }
    }
    let sessions = (0..2_000).map(|_| licenses.session(&admin, SessionId::new()));
    for result in join_all(sessions).await {
        assert!(matches!(result, Err(ServiceError::NotFound(_))));
    }
    let (cached_licenses, cached_sessions) = licenses.cached();
    assert!(
        cached_licenses <= 3 && cached_sessions <= 4,
        "{cached_licenses}, {cached_sessions}"
    );
    db.drop_schema().await;
}

/// An admin of tenant `acme` acting on the service directly, and a product.
fn acme_admin() -> (licensed::service::Actor, events::ids::ProductId) {
    let admin = licensed::service::Actor {
        tenant: events::ids::TenantId::parse("acme").unwrap(),
        user: events::ids::UserId::parse("admin").unwrap(),
        admin: true,
        groups: Vec::new(),
        correlation_id: None,
    };
    (admin, events::ids::ProductId::parse("cad").unwrap())
}
