//! The web console: the REST endpoints it draws (usage over a window,
//! recent denials, the audit status and a verification run, sessions with
//! their times) over HTTP against the real services, and the console itself
//! in headless Chromium driven by Playwright (`tests/console/`).

use crate::harness::{token, token_with, System};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// Runs a verification of `tok`'s tenant: its answer.
async fn verify(sys: &System, tok: &str) -> Value {
    let path = "/api/v1/admin/audit/verifications";
    let a = sys.app.call(Method::POST, path, Some(tok), None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.body
}

/// `GET path` as `tok`.
async fn get(sys: &System, tok: &str, path: &str) -> (StatusCode, Value) {
    let a = sys.app.call(Method::GET, path, Some(tok), None).await;
    (a.status, a.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_denials_sessions_and_audit_for_the_console() {
    let sys = System::start_with(|c| c.checkpoint_interval_secs = 1).await;
    let license = sys.app.issue("acme", 1, 360).await;
    let admin = token("admin", "acme", true).await;
    let alice = token("alice", "acme", false).await;
    let a = sys.app.acquire(&alice, &license, "ws-1").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let session = a.body["session_id"].as_str().unwrap().to_owned();
    let denied = sys.app.acquire(&alice, &license, "ws-2").await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(
        sys.app.heartbeat(&alice, &session).await.status,
        StatusCode::OK
    );

    // Usage over the default window (the last 24 h): the figures of `ledger report`.
    let report = format!("/api/v1/admin/licenses/{license}/report");
    let (status, body) = get(&sys, &admin, &report).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["acquisitions"], 1);
    assert_eq!(body["denials"]["no_seats"], 1);
    assert!(body["from"].is_string() && body["to"].is_string(), "{body}");
    assert_eq!(
        body["peak_per_day"].as_array().unwrap().last().unwrap()["peak"],
        1
    );
    assert!(!body["series"].as_array().unwrap().is_empty());
    for (bad, expected) in [
        (
            format!("{report}?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z"),
            StatusCode::CONFLICT,
        ),
        (
            format!("{report}?from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z"),
            StatusCode::CONFLICT,
        ),
        (
            format!("{report}?from=yesterday"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (status, body) = get(&sys, &admin, &bad).await;
        assert_eq!(status, expected, "{bad}: {body}");
        assert!(body["detail"].is_string(), "{body}");
    }
    assert_eq!(get(&sys, &alice, &report).await.0, StatusCode::FORBIDDEN);
    let globex = token("admin", "globex", true).await;
    assert_eq!(get(&sys, &globex, &report).await.0, StatusCode::NOT_FOUND);

    // Recent denials, newest first.
    let denials = format!("/api/v1/admin/licenses/{license}/denials");
    let (status, body) = get(&sys, &admin, &format!("{denials}?limit=5")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rows = body["denials"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0]["reason"].clone(), rows[0]["hardware_id"].clone()),
        (json!("no_seats"), json!("ws-2"))
    );
    let (status, _) = get(&sys, &admin, &format!("{denials}?limit=0")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(get(&sys, &globex, &denials).await.0, StatusCode::NOT_FOUND);

    // Sessions with their times, once the projection has the heartbeat and the token.
    let sessions = format!("/api/v1/admin/licenses/{license}/sessions");
    let deadline = Instant::now() + Duration::from_secs(10);
    let row = loop {
        let (status, body) = get(&sys, &admin, &sessions).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let row = body["sessions"][0].clone();
        if row["last_heartbeat"].is_string() && row["token_expires_at"].is_string() {
            break row;
        }
        assert!(
            Instant::now() < deadline,
            "the projection never showed the times: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(row["session_id"], session.as_str());
    assert!(row["since"].as_str().unwrap() <= row["last_heartbeat"].as_str().unwrap());

    // The audit: a verification of the tenant's streams, recorded.
    let (status, body) = get(&sys, &admin, "/api/v1/admin/audit").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["last_verification"].is_null());
    let run = verify(&sys, &admin).await;
    assert_eq!(run["ok"], true);
    assert_eq!(
        run["streams"], 2,
        "the license stream and alice's session stream"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (_, body) = get(&sys, &admin, "/api/v1/admin/audit").await;
        if body["last_checkpoint"]["covers_tenant"] == true {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint covered the tenant: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(body["last_verification"]["ok"], true);
    let user = token_with("alice", "acme", &[], &[]).await;
    assert_eq!(
        get(&sys, &user, "/api/v1/admin/audit").await.0,
        StatusCode::FORBIDDEN
    );

    // A database writer rewrites the denial: the next verification says so.
    sqlx::query(
        "UPDATE events SET data = jsonb_set(data, '{reason}', '\"suspended\"')
         WHERE event_type = 'AcquireDenied'",
    )
    .execute(&sys.db.pool)
    .await
    .unwrap();
    let run = verify(&sys, &admin).await;
    assert_eq!(run["ok"], false, "{run}");
    assert!(!run["problems"].as_array().unwrap().is_empty());
    // Another tenant's verification covers only its own (empty) streams.
    let other = verify(&sys, &globex).await;
    assert_eq!(
        (other["ok"].clone(), other["streams"].clone()),
        (json!(true), json!(0))
    );
    sys.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_headless_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("tests/console");
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        dir.join("node_modules/playwright-core").is_dir() && Path::new(&chromium).exists(),
        "the console test needs Chromium ({chromium}) and tests/console's npm packages: \
         run `bash deploy/local/services.sh`, which installs both"
    );
    // Checkpoints every second, so the audit view has one to show.
    let sys = System::start_with(|c| c.checkpoint_interval_secs = 1).await;
    let license = sys.app.issue("acme", 1, 360).await;
    let other = sys.app.issue("globex", 2, 360).await;
    let mut node = tokio::process::Command::new("node");
    node.arg(dir.join("console.test.mjs"))
        .env("LL_BASE_URL", format!("http://{}", sys.app.addr))
        .env("LL_ADMIN_TOKEN", token("admin", "acme", true).await)
        .env("LL_USER_TOKEN", token("alice", "acme", false).await)
        .env("LL_OTHER_ADMIN_TOKEN", token("admin", "globex", true).await)
        .env("LL_LICENSE_ID", &license)
        .env("LL_OTHER_LICENSE_ID", &other)
        .env("CHROMIUM_PATH", &chromium)
        .kill_on_drop(true);
    if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
        node.env("LL_SCREENSHOT_DIR", root.join("docs/console"));
    }
    let out = tokio::time::timeout(Duration::from_secs(180), node.output())
        .await
        .expect("the browser test finished within 3 minutes")
        .expect("node runs");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the console test failed:\n{text}");
    sys.cleanup().await;
}
