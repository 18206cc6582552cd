//! The seat queue and borrowing over HTTP, against the real services: a
//! waiter learns of its grant by long-polling another replica than the one
//! that freed the seat, cancels, times out; a borrowed seat's token expires
//! with the borrow and the seat stays held until then.

use crate::harness::{self, count_events, token, token_with, Answer, System, TestApp};
use crate::tokens::verify;
use licensed::app::Components;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn set_policy(app: &TestApp, license: &str, policy: Value) {
    let vendor = token("admin", "acme", true).await;
    let path = format!("/api/v1/admin/licenses/{license}/policy");
    let a = app
        .call(Method::PUT, &path, Some(&vendor), Some(policy))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

async fn acquire_with(app: &TestApp, user: &str, license: &str, hw: &str, extra: Value) -> Answer {
    let t = token(user, "acme", false).await;
    let mut body = json!({ "license_id": license, "hardware_id": hw });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    app.call(
        Method::POST,
        "/api/v1/licenses/acquire",
        Some(&t),
        Some(body),
    )
    .await
}

/// `user` asks for a seat on `hw` borrowed for `secs`.
async fn borrow(app: &TestApp, user: &str, license: &str, hw: &str, secs: u32) -> Answer {
    acquire_with(app, user, license, hw, json!({ "borrow_secs": secs })).await
}

async fn poll(app: &TestApp, user: &str, url: &str, wait_secs: u32) -> Answer {
    let t = token(user, "acme", false).await;
    let path = format!("{url}?wait_secs={wait_secs}");
    app.call(Method::GET, &path, Some(&t), None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_waiter_long_polling_one_replica_gets_the_seat_another_replica_frees() {
    let sys = System::start().await;
    let second = harness::start(
        harness::config(&sys.db, &sys.names).await,
        Components {
            serve: true,
            ..Components::default()
        },
    )
    .await;
    let license = sys.app.issue("acme", 1, 360).await;
    set_policy(&sys.app, &license, json!({ "max_queue_wait_secs": 120 })).await;
    let alice = acquire_with(&sys.app, "alice", &license, "h1", json!({})).await;
    assert_eq!(alice.status, StatusCode::OK, "{}", alice.body);

    // Bob and carol wait, in that order; asking again keeps bob's place.
    let wait = json!({ "wait_secs": 600 });
    let bob = acquire_with(&sys.app, "bob", &license, "h2", wait.clone()).await;
    assert_eq!(bob.status, StatusCode::ACCEPTED, "{}", bob.body);
    assert_eq!(bob.body["status"], "waiting");
    assert_eq!(bob.body["position"], 1);
    let url = bob.body["queue_url"].as_str().unwrap().to_owned();
    assert_eq!(bob.headers["location"], url.as_str());
    let carol = acquire_with(&second, "carol", &license, "h3", wait.clone()).await;
    assert_eq!(carol.body["position"], 2, "{}", carol.body);
    let again = acquire_with(&second, "bob", &license, "h2", wait).await;
    assert_eq!(again.body["session_id"], bob.body["session_id"]);
    // The wait was cut to the policy's 120 s.
    let waiting = poll(&second, "bob", &url, 0).await;
    assert_eq!(waiting.status, StatusCode::OK, "{}", waiting.body);
    assert_eq!(
        (
            waiting.body["position"].clone(),
            waiting.body["waiters"].clone()
        ),
        (json!(1), json!(2))
    );
    let until: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(waiting.body["wait_until"].clone()).unwrap();
    assert!(until < chrono::Utc::now() + chrono::TimeDelta::seconds(121));
    // Nobody else sees bob's place.
    assert_eq!(
        poll(&second, "mallory", &url, 0).await.status,
        StatusCode::NOT_FOUND
    );

    // Bob long-polls the second replica; alice releases on the first.
    let long_poll = {
        let (url, addr) = (url.clone(), second.addr);
        tokio::spawn(async move {
            let t = token("bob", "acme", false).await;
            let started = Instant::now();
            let res = reqwest::Client::new()
                .get(format!("http://{addr}{url}?wait_secs=30"))
                .bearer_auth(t)
                .send()
                .await
                .unwrap();
            (res.json::<Value>().await.unwrap(), started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let alice_session = alice.body["session_id"].as_str().unwrap();
    let released = sys
        .app
        .release(&token("alice", "acme", false).await, alice_session)
        .await;
    assert_eq!(released.status, StatusCode::NO_CONTENT);
    let (granted, took) = long_poll.await.unwrap();
    assert_eq!(granted["status"], "granted", "{granted}");
    assert!(
        took < Duration::from_secs(30),
        "the long-poll ended at the grant"
    );
    let claims = verify(&sys.app, granted["license_token"].as_str().unwrap()).await;
    assert_eq!(claims.sid, bob.body["session_id"].as_str().unwrap());
    let bob_session = bob.body["session_id"].as_str().unwrap();
    let hb = sys
        .app
        .heartbeat(&token("bob", "acme", false).await, bob_session)
        .await;
    assert_eq!(
        hb.status,
        StatusCode::OK,
        "the granted waiter holds the session"
    );

    // Carol is next; she cancels once, then her place is gone.
    let carol_url = carol.body["queue_url"].as_str().unwrap();
    assert_eq!(
        poll(&sys.app, "carol", carol_url, 0).await.body["position"],
        1
    );
    let carol_token = token("carol", "acme", false).await;
    let cancel = sys
        .app
        .call(Method::DELETE, carol_url, Some(&carol_token), None)
        .await;
    assert_eq!(cancel.status, StatusCode::NO_CONTENT, "{}", cancel.body);
    let cancel = sys
        .app
        .call(Method::DELETE, carol_url, Some(&carol_token), None)
        .await;
    assert_eq!(cancel.status, StatusCode::NOT_FOUND);
    assert_eq!(
        poll(&sys.app, "carol", carol_url, 0).await.body["status"],
        "cancelled"
    );
    // A bad long-poll changes nothing.
    let bad = poll(&sys.app, "carol", carol_url, 61).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);

    assert_eq!(count_events(&sys.db, "QueueJoined").await, 2);
    assert_eq!(count_events(&sys.db, "QueueLeft").await, 1);
    let queued: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'SeatAcquired' AND data -> 'queued' = 'true'",
    )
    .fetch_one(&sys.db.pool)
    .await
    .unwrap();
    assert_eq!(queued, 1);
    second.stop().await;
    sys.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_times_out_and_without_a_queue_an_acquire_is_denied() {
    let sys = System::start().await;
    let license = sys.app.issue("acme", 1, 360).await;
    let alice = acquire_with(&sys.app, "alice", &license, "h1", json!({})).await;
    assert_eq!(alice.status, StatusCode::OK);
    // No queue in the policy: waiting is denied like any full acquire.
    let denied = acquire_with(&sys.app, "bob", &license, "h2", json!({ "wait_secs": 60 })).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{}", denied.body);
    assert_eq!(denied.body["reason"], "no_seats");

    set_policy(&sys.app, &license, json!({ "max_queue_wait_secs": 1 })).await;
    let bob = acquire_with(&sys.app, "bob", &license, "h2", json!({ "wait_secs": 60 })).await;
    assert_eq!(bob.status, StatusCode::ACCEPTED, "{}", bob.body);
    let url = bob.body["queue_url"].as_str().unwrap();
    // The reaper (every 200 ms here) times it out about a second later.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = poll(&sys.app, "bob", url, 1).await.body["status"].clone();
        if status == "timed_out" {
            break;
        }
        assert_eq!(status, "waiting");
        assert!(Instant::now() < deadline, "the wait never ran out");
    }
    assert_eq!(count_events(&sys.db, "QueueLeft").await, 1);
    // Alice's seat is still hers: a timed-out waiter got nothing.
    assert_eq!(count_events(&sys.db, "SeatAcquired").await, 1);
    sys.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_borrowed_seat_keeps_its_token_and_seat_until_the_borrow_ends() {
    let sys = System::start().await;
    let terms =
        json!({ "product": "cad-pro", "seats": 1, "session_ttl_secs": 60, "strict_seats": true });
    let license = sys.app.issue_with("acme", terms).await;
    // Borrowing is off until the policy allows it.
    let refused = borrow(&sys.app, "alice", &license, "h1", 600).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    set_policy(&sys.app, &license, json!({ "max_borrow_secs": 3600 })).await;
    let too_long = borrow(&sys.app, "alice", &license, "h1", 3601).await;
    assert_eq!(too_long.status, StatusCode::CONFLICT, "{}", too_long.body);
    assert_eq!(
        count_events(&sys.db, "SeatAcquired").await,
        0,
        "refusals change nothing"
    );

    let before = chrono::Utc::now();
    let a = borrow(&sys.app, "alice", &license, "h1", 600).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let claims = verify(&sys.app, a.body["license_token"].as_str().unwrap()).await;
    let end = before.timestamp() + 600;
    assert!(
        (end..=end + 5).contains(&claims.exp),
        "exp {} is the borrow's end",
        claims.exp
    );
    let alice = token("alice", "acme", false).await;
    let session = a.body["session_id"].as_str().unwrap();
    // A heartbeat (TTL 60 s) does not pull the deadline in.
    let hb = sys.app.heartbeat(&alice, session).await;
    assert_eq!(hb.status, StatusCode::OK, "{}", hb.body);
    let deadline: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(hb.body["expires_at"].clone()).unwrap();
    assert!(deadline.timestamp() >= end, "{deadline}");

    // Returned early: under strict accounting its token still holds the seat.
    assert_eq!(
        sys.app.release(&alice, session).await.status,
        StatusCode::NO_CONTENT
    );
    let bob = acquire_with(&sys.app, "bob", &license, "h2", json!({})).await;
    assert_eq!(bob.status, StatusCode::FORBIDDEN, "{}", bob.body);
    let retry_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(bob.body["retry_at"].clone()).unwrap();
    assert!(
        retry_at.timestamp() >= end,
        "the seat frees when the borrow ends: {retry_at}"
    );
    // A vendor token cannot borrow past the policy either.
    let vendor = token_with("v", "acme", &["license-vendor"], &[]).await;
    let body = json!({ "license_id": license, "hardware_id": "h3", "borrow_secs": 0 });
    let zero = sys
        .app
        .call(
            Method::POST,
            "/api/v1/licenses/acquire",
            Some(&vendor),
            Some(body),
        )
        .await;
    assert_eq!(
        zero.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        zero.body
    );
    sys.cleanup().await;
}
