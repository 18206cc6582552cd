//! The read API served from the Redis projection (it may lag the log by the
//! projection lag, so the test waits for it).

use crate::harness::{token, System};
use reqwest::{Method, StatusCode};
use std::time::Duration;

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
    let mut usage = None;
    for _ in 0..50 {
        let r = sys.app.call(Method::GET, &path, Some(&admin), None).await;
        if r.status == StatusCode::OK && r.body["in_use"] == 2 {
            usage = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let usage = usage.expect("the projection catches up");
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
