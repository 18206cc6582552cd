//! License policies over HTTP: who may set one, what a malformed one gets,
//! and each rule (overdraft, per-user cap, linger, reservations) as a
//! client sees it, with what the log records.

use crate::harness::{count_events, token, token_in_groups, token_with, System, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

async fn set_policy(
    app: &TestApp,
    tenant: &str,
    license: &str,
    policy: Value,
) -> (StatusCode, Value) {
    let admin = token("admin", tenant, true).await;
    let path = format!("/api/v1/admin/licenses/{license}/policy");
    let a = app
        .call(Method::PUT, &path, Some(&admin), Some(policy))
        .await;
    (a.status, a.body)
}

async fn license_view(app: &TestApp, tenant: &str, license: &str) -> Value {
    let user = token("reader", tenant, false).await;
    let a = app
        .call(
            Method::GET,
            &format!("/api/v1/licenses/{license}"),
            Some(&user),
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.body
}

/// Acquires as `user` on `hw`: the session id, or the denial's reason.
async fn acquire(
    app: &TestApp,
    user: &str,
    groups: &[&str],
    license: &str,
    hw: &str,
) -> Result<String, String> {
    let t = token_in_groups(user, "acme", groups).await;
    let a = app.acquire(&t, license, hw).await;
    match a.status {
        StatusCode::OK | StatusCode::ACCEPTED => {
            Ok(a.body["session_id"].as_str().unwrap().to_owned())
        }
        StatusCode::FORBIDDEN => Err(a.body["reason"].as_str().unwrap().to_owned()),
        other => panic!("unexpected {other}: {}", a.body),
    }
}

async fn release(app: &TestApp, user: &str, session: &str) {
    let a = app
        .release(&token(user, "acme", false).await, session)
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
}

/// How many stored events of `event_type` have `field` = `value` in their data.
async fn count_with(sys: &System, event_type: &str, field: &str, value: Value) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = $1 AND data -> $2 = $3")
        .bind(event_type)
        .bind(field)
        .bind(value)
        .fetch_one(&sys.db.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_vendor_sets_a_policy_a_bad_one_changes_nothing_and_reads_show_it() {
    let sys = System::start().await;
    let license = sys.app.issue("acme", 2, 360).await;
    let before = license_view(&sys.app, "acme", &license).await;
    assert_eq!(before["policy_version"], 0);
    assert_eq!(before["policy"]["overdraft_seats"], 0);

    let user = token("alice", "acme", false).await;
    let path = format!("/api/v1/admin/licenses/{license}/policy");
    let a = sys
        .app
        .call(Method::PUT, &path, Some(&user), Some(json!({})))
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);

    let over_reserved = json!({"reservations": [{"name": "farm", "seats": 3, "users": ["ci"]}]});
    let twice =
        json!({"reservations": [{"name": "farm", "seats": 1}, {"name": "farm", "seats": 1}]});
    let unknown_field = json!({"linger": 5});
    let bad_name = json!({"reservations": [{"name": "no spaces", "seats": 1, "users": ["ci"]}]});
    let negative = json!({"overdraft_seats": -1});
    let too_long = json!({"linger_secs": 86_401});
    let array = json!([30, 0, null, []]);
    let array_inside = json!({"reservations": [["farm", 1]]});
    let bad = [
        (over_reserved, StatusCode::CONFLICT),
        (twice, StatusCode::CONFLICT),
        (unknown_field, StatusCode::UNPROCESSABLE_ENTITY),
        (bad_name, StatusCode::UNPROCESSABLE_ENTITY),
        (negative, StatusCode::UNPROCESSABLE_ENTITY),
        (too_long, StatusCode::UNPROCESSABLE_ENTITY),
        (array, StatusCode::UNPROCESSABLE_ENTITY),
        (array_inside, StatusCode::UNPROCESSABLE_ENTITY),
    ];
    for (bad, expected) in bad {
        let (status, body) = set_policy(&sys.app, "acme", &license, bad.clone()).await;
        assert_eq!(status, expected, "{bad}: {body}");
        assert!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{body}"
        );
    }
    let other_tenant = set_policy(&sys.app, "globex", &license, json!({})).await;
    assert_eq!(other_tenant.0, StatusCode::NOT_FOUND);
    assert_eq!(count_events(&sys.db, "PolicyChanged").await, 0);

    let policy = json!({
        "linger_secs": 30, "overdraft_seats": 1, "revive_window_secs": 20, "max_seats_per_user": 1,
        "reservations": [{"name": "farm", "seats": 1, "users": ["ci"], "groups": ["builders"], "lend_when_idle": false}],
        "max_queue_wait_secs": 600, "max_borrow_secs": 3600
    });
    let (status, body) = set_policy(&sys.app, "acme", &license, policy.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["policy_version"].clone(), body["policy"].clone()),
        (json!(1), policy.clone())
    );
    // The same policy again is a no-op.
    let (_, again) = set_policy(&sys.app, "acme", &license, policy.clone()).await;
    assert_eq!(again["policy_version"], 1);
    assert_eq!(count_events(&sys.db, "PolicyChanged").await, 1);
    let read = license_view(&sys.app, "acme", &license).await;
    assert_eq!(
        (read["policy_version"].clone(), read["policy"].clone()),
        (json!(1), policy)
    );

    let doc = sys
        .app
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await
        .body;
    assert!(doc["paths"]["/api/v1/admin/licenses/{license_id}/policy"]["put"].is_object());
    let schema = &doc["components"]["schemas"]["Policy"]["properties"];
    for field in [
        "linger_secs",
        "overdraft_seats",
        "max_seats_per_user",
        "reservations",
    ] {
        assert!(schema[field].is_object(), "Policy.{field} documented");
    }
    sys.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overdraft_seats_and_the_per_user_cap() {
    let sys = System::start().await;
    let license = sys.app.issue("acme", 1, 360).await;
    let policy = json!({"overdraft_seats": 1, "max_seats_per_user": 1});
    assert_eq!(
        set_policy(&sys.app, "acme", &license, policy).await.0,
        StatusCode::OK
    );

    acquire(&sys.app, "alice", &[], &license, "alice-1")
        .await
        .unwrap();
    let capped = acquire(&sys.app, "alice", &[], &license, "alice-2").await;
    assert_eq!(capped, Err("user_limit".to_owned()));
    acquire(&sys.app, "bob", &[], &license, "bob-1")
        .await
        .unwrap();
    let full = acquire(&sys.app, "carol", &[], &license, "carol-1").await;
    assert_eq!(full, Err("no_seats".to_owned()));

    assert_eq!(
        count_with(&sys, "SeatAcquired", "overdraft", json!(true)).await,
        1
    );
    assert_eq!(
        count_with(&sys, "SeatAcquired", "policy_version", json!(1)).await,
        2
    );
    assert_eq!(
        count_with(&sys, "AcquireDenied", "reason", json!("user_limit")).await,
        1
    );
    assert_eq!(
        count_with(&sys, "AcquireDenied", "policy_version", json!(1)).await,
        2
    );
    assert_eq!(
        license_view(&sys.app, "acme", &license).await["seats_in_use"],
        2
    );
    sys.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_seat_lingers_for_its_holder_then_frees() {
    let sys = System::start().await;
    let license = sys.app.issue("acme", 1, 360).await;
    let policy = json!({"linger_secs": 2});
    assert_eq!(
        set_policy(&sys.app, "acme", &license, policy).await.0,
        StatusCode::OK
    );

    let first = acquire(&sys.app, "alice", &[], &license, "alice-1")
        .await
        .unwrap();
    release(&sys.app, "alice", &first).await;
    let view = license_view(&sys.app, "acme", &license).await;
    assert_eq!(
        (view["seats_in_use"].clone(), view["seats_held"].clone()),
        (json!(0), json!(1))
    );
    let lingering = acquire(&sys.app, "bob", &[], &license, "bob-1").await;
    assert_eq!(lingering, Err("no_seats".to_owned()));
    // Alice on the same machine gets the seat back.
    let again = acquire(&sys.app, "alice", &[], &license, "alice-1")
        .await
        .unwrap();
    release(&sys.app, "alice", &again).await;
    assert_eq!(
        count_with(&sys, "SeatReleased", "linger_until", Value::Null).await,
        0
    );

    tokio::time::sleep(Duration::from_millis(2_500)).await;
    acquire(&sys.app, "bob", &[], &license, "bob-1")
        .await
        .unwrap();
    sys.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_seats_go_to_named_users_and_groups_only() {
    let sys = System::start().await;
    let license = sys.app.issue("acme", 3, 360).await;
    let policy = json!({"reservations": [{"name": "farm", "seats": 2, "users": ["ci"], "groups": ["builders"]}]});
    assert_eq!(
        set_policy(&sys.app, "acme", &license, policy).await.0,
        StatusCode::OK
    );

    acquire(&sys.app, "bob", &[], &license, "bob-1")
        .await
        .unwrap();
    let kept = acquire(&sys.app, "bob", &["designers"], &license, "bob-2").await;
    assert_eq!(kept, Err("reserved".to_owned()));
    acquire(&sys.app, "ci", &[], &license, "agent-1")
        .await
        .unwrap();
    acquire(&sys.app, "dana", &["builders"], &license, "agent-2")
        .await
        .unwrap();
    let full = acquire(&sys.app, "erin", &["builders"], &license, "agent-3").await;
    assert_eq!(full, Err("no_seats".to_owned()));

    assert_eq!(
        count_with(&sys, "SeatAcquired", "reservation", json!("farm")).await,
        2
    );
    assert_eq!(
        count_with(&sys, "AcquireDenied", "reason", json!("reserved")).await,
        1
    );
    // A token whose groups claim is malformed is refused outright.
    let (issuer, _) = crate::harness::issuer().await;
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({"iss": licensed::auth::dev_issuer::DEV_ISSUER, "aud": licensed::auth::dev_issuer::DEV_AUDIENCE,
        "sub": "mallory", "tenant_id": "acme", "groups": [7], "iat": now, "nbf": now, "exp": now + 600});
    let bad = issuer.sign(&claims).unwrap();
    let a = sys.app.acquire(&bad, &license, "m-1").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    sys.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_vendor_changes_licenses_and_the_tenant_admin_manages_sessions() {
    let sys = System::start().await;
    let vendor = token_with("vendor-1", "acme", &["license-vendor"], &[]).await;
    let admin = token_with("it-admin", "acme", &["license-admin"], &[]).await;
    let issue = json!({"product": "cad-pro", "seats": 1});
    let path = "/api/v1/admin/licenses";
    let denied = sys
        .app
        .call(Method::POST, path, Some(&admin), Some(issue.clone()))
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert!(denied.body["detail"]
        .as_str()
        .unwrap()
        .contains("license-vendor"));
    let issued = sys
        .app
        .call(Method::POST, path, Some(&vendor), Some(issue))
        .await;
    assert_eq!(issued.status, StatusCode::CREATED, "{}", issued.body);
    let license = issued.body["license_id"].as_str().unwrap().to_owned();

    // The tenant admin cannot change seats, policy or suspension.
    let changes = [
        (Method::PUT, "seats", json!({"seats": 5})),
        (Method::PUT, "policy", json!({"overdraft_seats": 3})),
        (Method::POST, "suspend", json!({"reason": "x"})),
    ];
    for (method, what, body) in changes {
        let path = format!("/api/v1/admin/licenses/{license}/{what}");
        let a = sys
            .app
            .call(method.clone(), &path, Some(&admin), Some(body.clone()))
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{what}");
        let v = sys.app.call(method, &path, Some(&vendor), Some(body)).await;
        assert_eq!(v.status, StatusCode::OK, "{what}: {}", v.body);
    }
    let reinstate = format!("/api/v1/admin/licenses/{license}/reinstate");
    let a = sys
        .app
        .call(Method::POST, &reinstate, Some(&admin), None)
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let v = sys
        .app
        .call(Method::POST, &reinstate, Some(&vendor), None)
        .await;
    assert_eq!(v.status, StatusCode::OK);
    assert_eq!(count_events(&sys.db, "SeatsChanged").await, 1);

    // The tenant admin manages its users' sessions; the vendor does not.
    let session = acquire(&sys.app, "alice", &[], &license, "alice-1")
        .await
        .unwrap();
    let sessions = format!("/api/v1/admin/licenses/{license}/sessions");
    let v = sys
        .app
        .call(Method::GET, &sessions, Some(&vendor), None)
        .await;
    assert_eq!(v.status, StatusCode::FORBIDDEN);
    let a = sys.app.release(&vendor, &session).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "not the vendor's session");
    let a = sys.app.release(&admin, &session).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
    sys.cleanup().await;
}

/// Waits until the reaper has expired `n` sessions in all.
async fn wait_for_expiries(sys: &System, n: i64) {
    for _ in 0..50 {
        if count_events(&sys.db, "SessionExpired").await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the reaper did not expire {n} session(s) within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_inside_the_revive_window_brings_the_session_back_if_a_seat_is_free() {
    let sys = System::start().await;
    let license = sys.app.issue("acme", 1, 1).await;
    let policy = json!({"revive_window_secs": 60});
    assert_eq!(
        set_policy(&sys.app, "acme", &license, policy).await.0,
        StatusCode::OK
    );
    let alice = token("alice", "acme", false).await;

    // Alice's session expires (TTL 1 s, no heartbeat); her late heartbeat revives it.
    let session = acquire(&sys.app, "alice", &[], &license, "alice-1")
        .await
        .unwrap();
    wait_for_expiries(&sys, 1).await;
    let hb = sys.app.heartbeat(&alice, &session).await;
    assert_eq!(hb.status, StatusCode::OK, "{}", hb.body);
    assert_eq!(count_events(&sys.db, "SessionRevived").await, 1);
    assert_eq!(count_events(&sys.db, "SessionReopened").await, 1);
    let revived = count_with(&sys, "SessionRevived", "revival", json!(1)).await;
    assert_eq!(revived, 1);
    assert_eq!(
        license_view(&sys.app, "acme", &license).await["seats_in_use"],
        1
    );
    // The projection shows it live again, as of the revival's heartbeat.
    let usage_path = format!("/api/v1/licenses/{license}/usage");
    let mut projected = Value::Null;
    for _ in 0..50 {
        let u = sys
            .app
            .call(Method::GET, &usage_path, Some(&alice), None)
            .await;
        if u.status == StatusCode::OK && u.body["in_use"] == 1 {
            projected = u.body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        projected["sessions"][0]["session_id"],
        json!(session),
        "{projected}"
    );
    // It holds the seat again: bob is turned away.
    let bob = acquire(&sys.app, "bob", &[], &license, "bob-1").await;
    assert_eq!(bob, Err("no_seats".to_owned()));

    // It expires again; bob takes the seat; now alice's heartbeat finds none free.
    wait_for_expiries(&sys, 2).await;
    let ended = count_with(&sys, "SessionExpired", "revival", json!(1)).await;
    assert_eq!(ended, 1, "the second life's end carries its revival count");
    acquire(&sys.app, "bob", &[], &license, "bob-1")
        .await
        .unwrap();
    let hb = sys.app.heartbeat(&alice, &session).await;
    assert_eq!(hb.status, StatusCode::NOT_FOUND, "{}", hb.body);
    assert_eq!(count_events(&sys.db, "SessionRevived").await, 1);
    sys.cleanup().await;
}
