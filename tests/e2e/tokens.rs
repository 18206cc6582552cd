//! Tokens follow their seat, over HTTP, checked independently: every token
//! is verified here with `jsonwebtoken` against the served JWKS (not with
//! the service's own verification code).

use crate::harness::{count_events, jetstream, token, Answer, System, TestApp};
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The claims of a license token, as a client reads them.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Claims {
    pub(crate) sid: String,
    pub(crate) exp: i64,
    iat: i64,
    jti: String,
    pos: i64,
    srv: i64,
    license: String,
}

/// Verifies `jwt` with the key of its `kid` from `/.well-known/jwks.json`.
pub(crate) async fn verify(app: &TestApp, jwt: &str) -> Claims {
    let jwks: Value = serde_json::from_str(&app.text("/.well-known/jwks.json").await).unwrap();
    let kid = decode_header(jwt).unwrap().kid.expect("kid in the header");
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .expect("the signing key is published");
    let key =
        DecodingKey::from_rsa_components(key["n"].as_str().unwrap(), key["e"].as_str().unwrap())
            .unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&["https://license-ledger.test"]);
    validation.validate_aud = false;
    validation.leeway = 0;
    decode::<Claims>(jwt, &key, &validation)
        .expect("a valid license token")
        .claims
}

/// Tokens of two users of tenant `acme`.
async fn alice_and_bob() -> (String, String) {
    (
        token("alice", "acme", false).await,
        token("bob", "acme", false).await,
    )
}

fn session(a: &Answer) -> String {
    a.body["session_id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_carry_a_renewed_token_before_the_old_one_expires() {
    let sys = System::start().await;
    let app = &sys.app;
    let license = app
        .issue_with(
            "acme",
            json!({"product": "cad", "seats": 1, "session_ttl_secs": 60, "token_ttl_secs": 4}),
        )
        .await;
    let alice = token("alice", "acme", false).await;
    let a = app.acquire(&alice, &license, "laptop").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let first = verify(app, a.body["license_token"].as_str().unwrap()).await;
    assert_eq!(
        (first.sid.as_str(), first.license.as_str()),
        (session(&a).as_str(), license.as_str())
    );
    assert_eq!(first.exp - first.iat, 4);
    assert!(first.pos > 0 && first.srv / 1000 >= first.iat);

    // A client that keeps heartbeating always holds an unexpired token.
    let sid = session(&a);
    let started = Instant::now();
    let mut tokens = vec![first];
    while started.elapsed() < Duration::from_secs(10) {
        let hb = app.heartbeat(&alice, &sid).await;
        assert_eq!(hb.status, StatusCode::OK, "{}", hb.body);
        assert!(hb.body["heartbeat_interval_secs"].as_i64().unwrap() >= 1);
        let current = verify(app, hb.body["license_token"].as_str().unwrap()).await;
        assert_eq!(current.sid, sid);
        if current.jti != tokens.last().unwrap().jti {
            tokens.push(current);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        tokens.len() >= 3,
        "renewed only {} times in 10 s of 4 s tokens",
        tokens.len() - 1
    );
    for pair in tokens.windows(2) {
        assert!(pair[1].exp > pair[0].exp && pair[1].pos > pair[0].pos);
    }
    // Renewals are recorded in the log, one per request (at half life, not per heartbeat).
    let renewals = count_events(&sys.db, "TokenRenewalDue").await;
    assert!(renewals >= tokens.len() as i64 - 1 && renewals <= tokens.len() as i64);
    sys.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_seats_never_hand_out_two_valid_tokens_for_one_seat() {
    let sys = System::start().await;
    let app = &sys.app;
    let license = app
        .issue_with(
            "acme",
            json!({"product": "cad", "seats": 1, "token_ttl_secs": 2, "strict_seats": true}),
        )
        .await;
    let (alice, bob) = alice_and_bob().await;
    let a = app.acquire(&alice, &license, "laptop").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let alices = verify(app, a.body["license_token"].as_str().unwrap()).await;
    assert_eq!(
        app.release(&alice, &session(&a)).await.status,
        StatusCode::NO_CONTENT
    );

    // Bob is denied while Alice's token may still be valid, and told when to retry.
    let denied = app.acquire(&bob, &license, "desk").await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{}", denied.body);
    let retry: u64 = denied.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2 + 5 + 1).contains(&retry), "Retry-After {retry}");
    let mut granted = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while granted.is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let b = app.acquire(&bob, &license, "desk").await;
        if b.status == StatusCode::OK {
            granted = Some(b);
        }
    }
    let b = granted.expect("the seat frees once Alice's token lapsed");
    let bobs = verify(app, b.body["license_token"].as_str().unwrap()).await;
    // Never two unexpired tokens for the one seat.
    assert!(
        bobs.iat >= alices.exp,
        "Bob's token from {} overlaps Alice's until {}",
        bobs.iat,
        alices.exp
    );
    sys.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_strict_seats_the_overlap_is_at_most_one_token_lifetime() {
    let sys = System::start().await;
    let app = &sys.app;
    let license = app
        .issue_with(
            "acme",
            json!({"product": "cad", "seats": 1, "token_ttl_secs": 3}),
        )
        .await;
    let (alice, bob) = alice_and_bob().await;
    let a = app.acquire(&alice, &license, "laptop").await;
    let alices = verify(app, a.body["license_token"].as_str().unwrap()).await;
    assert_eq!(
        app.release(&alice, &session(&a)).await.status,
        StatusCode::NO_CONTENT
    );
    let released_at = chrono::Utc::now().timestamp();
    let b = app.acquire(&bob, &license, "desk").await;
    assert_eq!(
        b.status,
        StatusCode::OK,
        "the seat is free at once: {}",
        b.body
    );
    let bobs = verify(app, b.body["license_token"].as_str().unwrap()).await;
    // Both may be valid for a while, never longer than one token lifetime.
    let overlap = alices.exp - bobs.iat;
    assert!(overlap <= 3, "overlap {overlap} s");
    assert!(alices.exp <= released_at + 3);
    sys.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_messages_on_the_event_subjects_mint_and_hand_out_nothing() {
    let sys = System::start_with(|c| c.acquire_token_wait_ms = 1500).await;
    let app = &sys.app;
    let license = app.issue("acme", 2, 360).await;
    let alice = token("alice", "acme", false).await;
    let a = app.acquire(&alice, &license, "laptop").await;
    assert_eq!(a.status, StatusCode::OK);
    let tokens_before = count_events(&sys.db, "TokenIssued").await;
    let js = jetstream().await;
    let subject = |kind: &str| format!("{}.acme.{license}.{kind}", sys.names.prefix);

    // A forged SeatAcquired for a session that never existed, valid until 2099.
    let forged_session = uuid::Uuid::new_v4();
    let forged = json!({
        "event_id": uuid::Uuid::new_v4(), "type": "SeatAcquired", "schema_version": 1,
        "stream": format!("license-{license}"), "stream_version": 1, "position": 2,
        "recorded_at": "2026-01-01T00:00:00Z",
        "data": {"session_id": forged_session, "user_id": "mallory", "hardware_id": "evil",
                 "expires_at": "2099-01-01T00:00:00Z", "idempotency_key": null},
        "metadata": {"tenant_id": "acme", "license_id": license, "product": "cad-pro"}
    });
    js.publish(subject("SeatAcquired"), forged.to_string().into())
        .await
        .unwrap()
        .await
        .unwrap();
    // A real acquisition, altered (later expiry), republished under a new id.
    let real: Vec<(String, Value)> = sqlx::query_as::<_, (String, Value)>(
        "SELECT stream_id, data FROM events WHERE event_type = 'SeatAcquired' LIMIT 1",
    )
    .fetch_all(&sys.db.pool)
    .await
    .unwrap();
    let (stream, mut data) = real[0].clone();
    data["expires_at"] = json!("2099-01-01T00:00:00Z");
    let altered = json!({
        "event_id": uuid::Uuid::new_v4(), "type": "SeatAcquired", "schema_version": 1,
        "stream": stream, "stream_version": 1, "position": 2, "recorded_at": "2026-01-01T00:00:00Z",
        "data": data, "metadata": {"tenant_id": "acme", "license_id": license, "product": "cad-pro"}
    });
    js.publish(subject("SeatAcquired"), altered.to_string().into())
        .await
        .unwrap()
        .await
        .unwrap();

    // A forged TokenIssued for a session waiting for its token is not handed out:
    // with no signer answering (a second acquire for the same machine waits on
    // the existing session), the forged token never reaches the client.
    let mut rejected = 0.0;
    for _ in 0..40 {
        let metrics = app.metrics().await;
        rejected = metrics
            .lines()
            .find_map(|l| l.strip_prefix("ledger_sign_rejected_total "))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        if rejected >= 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rejected >= 2.0, "the signer counted {rejected} rejections");
    assert_eq!(
        count_events(&sys.db, "TokenIssued").await,
        tokens_before,
        "nothing was minted"
    );
    sys.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_token_issued_messages_are_never_handed_to_a_waiting_client() {
    let db = events::testing::TestDb::new().await;
    let names = crate::harness::Names::random();
    let mut config = crate::harness::config(&db, &names).await;
    config.acquire_token_wait_ms = 2000;
    // No signer: an acquire waits for a token that only a forger offers.
    let no_signer = crate::harness::no_signer();
    let app = crate::harness::start(config, no_signer).await;
    let license = app.issue("acme", 2, 360).await;
    let alice = token("alice", "acme", false).await;
    let first = app.acquire(&alice, &license, "laptop").await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let sid = session(&first);
    let (issuer, _) = crate::harness::issuer().await; // a key the service does not sign with
    let forged_jwt = issuer
        .sign(&json!({"sid": sid, "exp": 4_000_000_000i64, "iss": "https://license-ledger.test"}))
        .unwrap();
    let forged = json!({
        "event_id": uuid::Uuid::new_v4(), "type": "TokenIssued", "schema_version": 1,
        "stream": format!("session-{sid}"), "stream_version": 0, "position": 99,
        "recorded_at": "2026-01-01T00:00:00Z",
        "data": {"session_id": sid, "key_id": issuer.kid(), "token": forged_jwt},
        "metadata": {"tenant_id": "acme", "license_id": license, "product": "cad-pro"}
    });
    let nats = async_nats::connect("nats://127.0.0.1:4222").await.unwrap();
    let subject = format!("{}.acme.{license}.TokenIssued", names.prefix);
    let retry = {
        let app_url = app.url("/api/v1/licenses/acquire");
        let http = app.http.clone();
        let alice = alice.clone();
        let body = json!({ "license_id": license, "hardware_id": "laptop" });
        tokio::spawn(async move {
            http.post(app_url)
                .bearer_auth(alice)
                .json(&body)
                .send()
                .await
                .unwrap()
        })
    };
    for _ in 0..15 {
        nats.publish(subject.clone(), forged.to_string().into())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answer = retry.await.unwrap();
    assert_eq!(
        answer.status(),
        StatusCode::ACCEPTED,
        "the forged token was handed out"
    );
    let token_url = format!("/api/v1/licenses/sessions/{sid}/token");
    let fetched = app.call(Method::GET, &token_url, Some(&alice), None).await;
    assert_eq!(fetched.status, StatusCode::ACCEPTED);
    app.stop().await;
    crate::harness::delete_stream(&names.stream).await;
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspension_ends_live_sessions_and_their_renewal() {
    let sys = System::start().await;
    let app = &sys.app;
    let license = app.issue("acme", 2, 360).await;
    let alice = token("alice", "acme", false).await;
    let a = app.acquire(&alice, &license, "laptop").await;
    assert_eq!(a.status, StatusCode::OK);
    let admin = token("admin", "acme", true).await;
    let path = format!("/api/v1/admin/licenses/{license}/suspend");
    let s = app
        .call(
            Method::POST,
            &path,
            Some(&admin),
            Some(json!({"reason": "audit"})),
        )
        .await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.body);
    assert_eq!(s.body["seats_in_use"], 0);
    assert_eq!(
        app.heartbeat(&alice, &session(&a)).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(count_events(&sys.db, "SessionRevoked").await, 1);
    sys.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_token_is_not_renewed_while_revoked_tokens_hold_the_seats() {
    let sys = System::start().await;
    let app = &sys.app;
    let license = app
        .issue_with("acme", json!({"product": "cad", "seats": 2, "session_ttl_secs": 60, "token_ttl_secs": 4, "strict_seats": true}))
        .await;
    let (alice, bob) = alice_and_bob().await;
    let a = app.acquire(&alice, &license, "laptop").await;
    let alices = verify(app, a.body["license_token"].as_str().unwrap()).await;
    // Bob's token is younger than Alice's: it outlives hers.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let b = app.acquire(&bob, &license, "desk").await;
    assert_eq!((a.status, b.status), (StatusCode::OK, StatusCode::OK));
    let bobs = verify(app, b.body["license_token"].as_str().unwrap()).await;
    assert!(bobs.exp > alices.exp);
    // One seat less: Bob's (newer) session is revoked, his token still valid for a while.
    let admin = token("admin", "acme", true).await;
    let path = format!("/api/v1/admin/licenses/{license}/seats");
    let r = app
        .call(Method::PUT, &path, Some(&admin), Some(json!({"seats": 1})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Alice misses heartbeats until her token lapsed, then asks for a renewal.
    let lapse = alices.exp - chrono::Utc::now().timestamp() + 1;
    tokio::time::sleep(Duration::from_secs(lapse.max(0) as u64)).await;
    let sid = session(&a);
    let mut renewed = None;
    let deadline = Instant::now() + Duration::from_secs(25);
    while renewed.is_none() && Instant::now() < deadline {
        let hb = app.heartbeat(&alice, &sid).await;
        assert_eq!(hb.status, StatusCode::OK, "{}", hb.body);
        let current = verify_lenient(app, hb.body["license_token"].as_str().unwrap()).await;
        if current.exp > chrono::Utc::now().timestamp() {
            renewed = Some(current);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let renewed = renewed.expect("Alice's token is renewed once Bob's has lapsed");
    assert!(
        renewed.iat >= bobs.exp,
        "renewed at {} while Bob's token ran until {}",
        renewed.iat,
        bobs.exp
    );
    sys.cleanup().await;
}

/// Like [`verify`], but accepts an expired token (to read its claims).
async fn verify_lenient(app: &TestApp, jwt: &str) -> Claims {
    let jwks: Value = serde_json::from_str(&app.text("/.well-known/jwks.json").await).unwrap();
    let kid = decode_header(jwt).unwrap().kid.unwrap();
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap();
    let key =
        DecodingKey::from_rsa_components(key["n"].as_str().unwrap(), key["e"].as_str().unwrap())
            .unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    decode::<Claims>(jwt, &key, &validation).unwrap().claims
}
