//! The read API served from the Redis projection (it may lag the log by the
//! projection lag, so the test waits for it).

use crate::harness::{token, Answer, System, TestApp};
use reqwest::{Method, StatusCode};
use std::time::Duration;

/// The usage answer once the projection shows `n` seats in use.
async fn in_use(app: &TestApp, path: &str, token: &str, n: u32) -> Answer {
    for _ in 0..50 {
        let r = app.call(Method::GET, path, Some(token), None).await;
        if r.status == StatusCode::OK && r.body["in_use"] == n {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the projection never showed {n} seats in use at {path}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_shows_seats_and_sessions_scoped_to_the_caller() {
    let sys = System::start().await;
    let license = sys.app.issue("acme", 3, 360).await;
    let alice = token("alice", "acme", false).await;
    let bob = token("bob", "acme", false).await;
    let admin = token("boss", "acme", true).await;
    assert_eq!(
        sys.app.acquire(&alice, &license, "alice-pc").await.status,
        StatusCode::OK
    );
    assert_eq!(
        sys.app.acquire(&bob, &license, "bob-pc").await.status,
        StatusCode::OK
    );

    let path = format!("/api/v1/licenses/{license}/usage");
    let usage = in_use(&sys.app, &path, &admin, 2).await;
    assert_eq!(usage.body["seats"], 3);
    assert_eq!(
        usage.body["sessions"].as_array().unwrap().len(),
        2,
        "admins see every session"
    );
    let mine = sys.app.call(Method::GET, &path, Some(&alice), None).await;
    let sessions = mine.body["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "users see their own");
    assert_eq!(sessions[0]["user_id"], "alice");
    assert_eq!(sessions[0]["hardware_id"], "alice-pc");
    let other_tenant = token("eve", "globex", true).await;
    assert_eq!(
        sys.app
            .call(Method::GET, &path, Some(&other_tenant), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let listing = sys
        .app
        .call(
            Method::GET,
            &format!("/api/v1/admin/licenses/{license}/sessions"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(listing.status, StatusCode::OK, "{}", listing.body);
    assert_eq!(
        sys.app
            .call(
                Method::GET,
                &format!("/api/v1/admin/licenses/{license}/sessions"),
                Some(&alice),
                None
            )
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    sys.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_projection_reports_its_lag_behind_the_log_head() {
    let sys = System::start().await;
    let license = sys.app.issue("acme", 1, 360).await;
    let alice = token("alice", "acme", false).await;
    let admin = token("boss", "acme", true).await;
    assert_eq!(
        sys.app.acquire(&alice, &license, "alice-pc").await.status,
        StatusCode::OK
    );
    let path = format!("/api/v1/licenses/{license}/usage");
    let caught_up = in_use(&sys.app, &path, &admin, 1).await;
    assert!(caught_up.body["projection_lag_ms"].as_i64().unwrap() < 1000);

    // The only projector goes away; an API instance stays, and the log moves on.
    let mut config = crate::harness::config(&sys.db, &sys.names).await;
    config.acquire_token_wait_ms = 100;
    let api = crate::harness::start(
        config,
        licensed::app::Components {
            serve: true,
            ..Default::default()
        },
    )
    .await;
    let System { db, names, app } = sys;
    app.stop().await;
    let bob = token("bob", "acme", false).await;
    assert_eq!(
        api.acquire(&bob, &license, "bob-pc").await.status,
        StatusCode::FORBIDDEN,
        "the seat is taken: a denial, logged"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stale = api.call(Method::GET, &path, Some(&admin), None).await;
    assert_eq!(stale.status, StatusCode::OK, "{}", stale.body);
    let (as_of, head) = (
        stale.body["as_of_position"].as_i64().unwrap(),
        stale.body["log_head_position"].as_i64().unwrap(),
    );
    assert!(head > as_of, "{}", stale.body);
    assert!(
        stale.body["projection_lag_ms"].as_i64().unwrap() >= 1500,
        "the lag counts from the oldest unapplied event: {}",
        stale.body
    );
    System {
        db,
        names,
        app: api,
    }
    .cleanup()
    .await;
}
