//! The SDK against the real server, in-process on a free port (real
//! Postgres, NATS and Redis, each test with its own schema and names): a
//! lease keeps its seat past one TTL with renewed tokens, releases it,
//! survives a server restart within the TTL, is lost after it; typed
//! errors; offline verification; the blocking facade.

#[allow(dead_code)]
#[path = "../../tests/e2e/harness.rs"]
mod harness;

use harness::{token, System};
use ledger_client::{Client, Error, LeaseStatus, Verifier};
use licensed::app::Components;
use serde_json::json;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

const ISSUER: &str = "https://license-ledger.test";

async fn client_for(sys: &System, user: &str) -> Client {
    Client::builder(format!("http://{}", sys.app.addr))
        .bearer_token(token(user, "acme", false).await)
        .token_issuer(ISSUER)
        .build()
        .unwrap()
}

/// Waits until the lease's state satisfies `want` (or panics after `within`).
async fn until(
    watch: &mut tokio::sync::watch::Receiver<LeaseStatus>,
    within: Duration,
    want: impl Fn(&LeaseStatus) -> bool,
) -> LeaseStatus {
    let reached = tokio::time::timeout(within, watch.wait_for(|s| want(s)))
        .await
        .map(|r| r.unwrap().clone());
    reached.unwrap_or_else(|_| panic!("state still {:?}", *watch.borrow()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_keeps_its_seat_past_the_ttl_and_release_frees_it() {
    let sys = System::start().await;
    let license: Uuid = sys.app.issue("acme", 1, 4).await.parse().unwrap();
    let alice = client_for(&sys, "alice").await;
    let bob = client_for(&sys, "bob").await;

    let lease = alice.acquire(license, "alice-laptop").await.unwrap();
    let first = lease.token().expect("the token came with the seat");
    assert_eq!(first.claims.sid, lease.session_id().to_string());
    assert_eq!(first.claims.license, license.to_string());

    // Two TTLs later the seat is still held, by heartbeats alone.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(lease.status(), LeaseStatus::Ok);
    match bob.acquire(license, "bob-desktop").await {
        Err(Error::NoSeats { .. }) => {}
        other => panic!("expected no seats, got {other:?}"),
    }
    let renewed = lease.token().unwrap();
    assert_ne!(
        renewed.claims.jti, first.claims.jti,
        "the token was renewed"
    );
    assert!(renewed.claims.exp > first.claims.exp);

    lease.release().await.unwrap();
    let bobs = bob.acquire(license, "bob-desktop").await.unwrap();
    assert_eq!(bobs.status(), LeaseStatus::Ok);
    bobs.release().await.unwrap();
    sys.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_typed_and_strict_seats_say_when_to_retry() {
    let sys = System::start().await;
    let strict = sys
        .app
        .issue_with(
            "acme",
            json!({ "product": "cad-pro", "seats": 1, "session_ttl_secs": 60,
                    "token_ttl_secs": 60, "strict_seats": true }),
        )
        .await;
    let strict: Uuid = strict.parse().unwrap();
    let alice = client_for(&sys, "alice").await;
    let bob = client_for(&sys, "bob").await;
    alice
        .acquire(strict, "alice-laptop")
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    // The released seat's token is still valid: strict accounting waits for it.
    match bob.acquire(strict, "bob-desktop").await {
        Err(Error::NoSeats { retry_after, .. }) => {
            let after = retry_after.expect("a Retry-After");
            // The 60 s token, plus the server's allowance for clock skew.
            assert!(
                after > Duration::ZERO && after <= Duration::from_secs(91),
                "{after:?}"
            );
        }
        other => panic!("expected no seats, got {other:?}"),
    }
    assert!(matches!(
        bob.acquire(Uuid::new_v4(), "bob-desktop").await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        bob.acquire(strict, "not a hardware id!").await,
        Err(Error::Invalid { status: 422, .. })
    ));
    let stranger = Client::builder(format!("http://{}", sys.app.addr))
        .bearer_token("not-a-jwt")
        .build()
        .unwrap();
    assert!(matches!(
        stranger.acquire(strict, "x").await,
        Err(Error::Unauthorized { .. })
    ));
    sys.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_provider_is_asked_again_after_a_401() {
    let sys = System::start().await;
    let license: Uuid = sys.app.issue("acme", 2, 60).await.parse().unwrap();
    let good = token("carol", "acme", false).await;
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let client = Client::builder(format!("http://{}", sys.app.addr))
        .bearer_provider(move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            let good = good.clone();
            // The first token has expired (as an ID token does after an hour).
            async move { Ok(if n == 0 { "expired".to_owned() } else { good }) }
        })
        .token_issuer(ISSUER)
        .build()
        .unwrap();
    let lease = client.acquire(license, "carol-pc").await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    lease.release().await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the fresh token is kept");
    sys.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_survives_a_restart_within_the_ttl_and_is_lost_after_it() {
    let db = events::testing::TestDb::new().await;
    let names = harness::Names::random();
    let mut config = harness::config(&db, &names).await;
    let app = harness::start(config.clone(), Components::all()).await;
    // Restarts listen where the clients already point.
    config.listen_addr = app.addr;
    let base = format!("http://{}", app.addr);
    let license: Uuid = app.issue("acme", 1, 6).await.parse().unwrap();
    let client = |user: &'static str| {
        let base = base.clone();
        async move {
            Client::builder(base)
                .bearer_token(token(user, "acme", false).await)
                .token_issuer(ISSUER)
                .build()
                .unwrap()
        }
    };
    let lease = client("alice")
        .await
        .acquire(license, "alice-laptop")
        .await
        .unwrap();
    let mut watch = lease.watch();

    // Down for a few seconds (within the 6 s TTL), then back.
    app.stop().await;
    until(&mut watch, Duration::from_secs(10), |s| {
        matches!(s, LeaseStatus::Degraded { .. })
    })
    .await;
    let app = harness::start(config.clone(), Components::all()).await;
    until(&mut watch, Duration::from_secs(15), |s| {
        *s == LeaseStatus::Ok
    })
    .await;
    assert!(
        matches!(
            client("bob").await.acquire(license, "bob").await,
            Err(Error::NoSeats { .. })
        ),
        "alice still holds the only seat"
    );

    // Down for longer than the TTL: the lease reports the seat lost.
    app.stop().await;
    until(&mut watch, Duration::from_secs(30), |s| {
        matches!(s, LeaseStatus::Lost { .. })
    })
    .await;
    drop(lease);
    harness::delete_stream(&names.stream).await;
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_verification_rejects_tampered_expired_and_set_back() {
    let sys = System::start().await;
    let license: Uuid = sys.app.issue("acme", 1, 60).await.parse().unwrap();
    let alice = client_for(&sys, "alice").await;
    let lease = alice.acquire(license, "alice-laptop").await.unwrap();
    let token = lease.token().unwrap();

    // Pinned: the JWKS saved with the application, no network.
    let jwks = reqwest::get(format!("http://{}/.well-known/jwks.json", sys.app.addr))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let pinned = Verifier::new(ISSUER).with_jwks(&jwks).unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    assert_eq!(pinned.verify(&token.token).unwrap(), token);

    let mut parts: Vec<String> = token.token.split('.').map(str::to_owned).collect();
    let mut payload = parts[1].clone().into_bytes();
    payload[10] = if payload[10] == b'A' { b'B' } else { b'A' };
    parts[1] = String::from_utf8(payload).unwrap();
    assert!(matches!(
        pinned.verify(&parts.join(".")),
        Err(Error::Token(_))
    ));

    let after_exp = (token.claims.exp + 120) * 1000;
    assert!(matches!(
        pinned.verify_at(&token.token, after_exp),
        Err(Error::Token(_))
    ));
    // The clock set back an hour behind the server time in the token.
    assert!(matches!(
        pinned.verify_at(&token.token, now - 3_600_000),
        Err(Error::Token(_))
    ));
    assert!(matches!(
        Verifier::new("https://someone-else.example")
            .with_jwks(&jwks)
            .unwrap()
            .verify(&token.token),
        Err(Error::Token(_))
    ));
    assert!(
        matches!(
            Verifier::new(ISSUER).verify(&token.token),
            Err(Error::Token(_))
        ),
        "no key known"
    );
    lease.release().await.unwrap();
    sys.cleanup().await;
}

#[test]
fn the_blocking_facade_holds_and_releases_a_seat() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (sys, license, bearer) = runtime.block_on(async {
        let sys = System::start().await;
        let license: Uuid = sys.app.issue("acme", 1, 60).await.parse().unwrap();
        (sys, license, token("dave", "acme", false).await)
    });
    let builder = Client::builder(format!("http://{}", sys.app.addr))
        .bearer_token(bearer)
        .token_issuer(ISSUER);
    let client = ledger_client::blocking::Client::new(builder).unwrap();
    let lease = client.acquire(Some(license), "dave-pc").unwrap();
    assert_eq!(lease.status(), LeaseStatus::Ok);
    assert!(lease.token().is_some());
    assert!(matches!(
        client.acquire(Some(license), "dave-other-pc"),
        Err(Error::NoSeats { .. })
    ));
    drop(lease); // releases
    let again = client.acquire(Some(license), "dave-other-pc").unwrap();
    again.release().unwrap();
    runtime.block_on(sys.cleanup());
}

#[allow(dead_code)]
#[path = "../examples/hold_seat.rs"]
mod hold_seat;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_example_holds_verifies_and_releases_a_seat() {
    let sys = System::start().await;
    let license = sys.app.issue("acme", 1, 3).await;
    let settings = |bearer: String, hold: u64| hold_seat::Settings {
        url: format!("http://{}", sys.app.addr),
        bearer,
        issuer: Some(ISSUER.into()),
        license: Some(license.clone()),
        hold: Duration::from_secs(hold),
    };
    // Held for 5 s, longer than the 3 s TTL: heartbeats kept it.
    hold_seat::run(settings(token("erin", "acme", false).await, 5))
        .await
        .unwrap();
    assert!(harness::count_events(&sys.db, "HeartbeatRecorded").await >= 1);
    assert_eq!(harness::count_events(&sys.db, "SeatReleased").await, 1);
    let bob = token("bob", "acme", false).await;
    assert!(sys
        .app
        .acquire(&bob, &license, "bob-pc")
        .await
        .status
        .is_success());
    assert!(matches!(
        hold_seat::run(settings(token("erin", "acme", false).await, 0)).await,
        Err(Error::NoSeats { .. })
    ));
    sys.cleanup().await;
}

/// Gives the license a queue: acquires may wait up to `secs`.
async fn allow_queue(sys: &System, license: Uuid, secs: u32) {
    let vendor = token("vendor", "acme", true).await;
    let path = format!("/api/v1/admin/licenses/{license}/policy");
    let body = json!({ "max_queue_wait_secs": secs });
    let a = sys
        .app
        .call(reqwest::Method::PUT, &path, Some(&vendor), Some(body))
        .await;
    assert_eq!(a.status, reqwest::StatusCode::OK, "{}", a.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_acquire_gets_the_seat_when_it_frees_or_gives_up() {
    let sys = System::start().await;
    let license: Uuid = sys.app.issue("acme", 1, 360).await.parse().unwrap();
    let alice = client_for(&sys, "alice").await;
    let bob = client_for(&sys, "bob").await;
    let held = alice.acquire(license, "alice-laptop").await.unwrap();
    // Without a queue in the policy, waiting is a plain denial.
    match bob
        .acquire_waiting(license, "bob-desktop", Duration::from_secs(5))
        .await
    {
        Err(Error::NoSeats { .. }) => {}
        other => panic!("expected no seats, got {other:?}"),
    }
    allow_queue(&sys, license, 600).await;

    // Bob waits; alice's release hands him the seat.
    let waiting = tokio::spawn({
        let bob = bob.clone();
        async move {
            bob.acquire_waiting(license, "bob-desktop", Duration::from_secs(30))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "bob waits while alice holds the seat"
    );
    held.release().await.unwrap();
    let lease = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("granted once the seat freed")
        .unwrap()
        .unwrap();
    let token = lease.token().expect("the grant's token");
    assert_eq!(token.claims.sid, lease.session_id().to_string());
    assert_eq!(lease.status(), LeaseStatus::Ok);

    // Carol waits 2 s while bob holds it: she gives her place up.
    let carol = client_for(&sys, "carol").await;
    let started = std::time::Instant::now();
    match carol
        .acquire_waiting(license, "carol-desktop", Duration::from_secs(2))
        .await
    {
        Err(Error::NoSeats { detail, .. }) => {
            assert!(detail.contains("within the wait"), "{detail}")
        }
        other => panic!("expected no seats, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_secs(2));
    let cancelled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'QueueLeft' AND data->>'reason' = 'cancelled'",
    )
    .fetch_one(&sys.db.pool)
    .await
    .unwrap();
    assert_eq!(cancelled, 1, "her place was given up, not left to time out");
    lease.release().await.unwrap();
    sys.cleanup().await;
}
