//! `licensectl` as a user runs it, against the real server: the one-shot
//! client commands through the SDK, and `run`, which holds a seat while a
//! command runs and exits with its code.

use crate::harness::{count_events, token, System};
use serde_json::Value;
use std::process::{Command, Output};
use std::time::Duration;

fn licensectl(sys: &System, bearer: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_licensectl"));
    command
        .env("LICENSE_LEDGER_URL", format!("http://{}", sys.app.addr))
        .env("LICENSE_LEDGER_TOKEN", bearer)
        .env("LICENSE_LEDGER_TOKEN_ISSUER", "https://license-ledger.test")
        .args(args);
    command
}

async fn output(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shot_client_commands_go_through_the_sdk() {
    let sys = System::start().await;
    let license = sys.app.issue("acme", 1, 60).await;
    let alice = token("alice", "acme", false).await;
    let args = [
        "acquire",
        "--license",
        &license,
        "--hardware-id",
        "alice-pc",
    ];
    let acquired = json(&output(licensectl(&sys, &alice, &args)).await);
    let session = acquired["session_id"].as_str().unwrap().to_owned();
    assert!(acquired["license_token"].is_string(), "{acquired}");

    let beat = json(&output(licensectl(&sys, &alice, &["heartbeat", &session])).await);
    assert!(
        beat["heartbeat_interval_secs"].as_u64().unwrap() >= 1,
        "{beat}"
    );
    let minted = json(&output(licensectl(&sys, &alice, &["token", &session])).await);
    assert_eq!(minted["pending"], false);

    // The seat is held across invocations: a second machine is refused, exit 2.
    let refused = output(licensectl(
        &sys,
        &alice,
        &["acquire", "--license", &license, "--hardware-id", "other"],
    ))
    .await;
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no seat"));

    json(&output(licensectl(&sys, &alice, &["release", &session])).await);
    assert_eq!(count_events(&sys.db, "SeatReleased").await, 1);
    let bad = output(licensectl(&sys, &alice, &["heartbeat", "not-a-uuid"])).await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a UUID"));
    sys.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_holds_a_seat_while_the_command_runs_and_exits_with_its_code() {
    let sys = System::start().await;
    let license = sys.app.issue("acme", 1, 2).await;
    let alice = token("alice", "acme", false).await;
    let bob = token("bob", "acme", false).await;

    // A command that outlives two TTLs, checks its environment, exits 7.
    let script = "test -n \"$LICENSE_LEDGER_SESSION_ID\" && test -n \"$LICENSE_LEDGER_LICENSE_TOKEN\" || exit 9; sleep 5; exit 7";
    let run = licensectl(
        &sys,
        &alice,
        &["run", "--license", &license, "--", "sh", "-c", script],
    );
    let running = tokio::spawn(output(run));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let taken = sys.app.acquire(&bob, &license, "bob-pc").await;
    assert_eq!(
        taken.status,
        reqwest::StatusCode::FORBIDDEN,
        "{}",
        taken.body
    );
    let done = running.await.unwrap();
    assert_eq!(
        done.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert_eq!(count_events(&sys.db, "SeatReleased").await, 1);
    assert!(count_events(&sys.db, "HeartbeatRecorded").await >= 1);

    // No seat free: the command is not started, exit 2.
    let held = sys.app.acquire(&bob, &license, "bob-pc").await;
    assert!(held.status.is_success(), "{}", held.body);
    let marker = std::env::temp_dir().join(format!("ll-run-{}", uuid::Uuid::new_v4()));
    let touch = format!("touch {}", marker.display());
    let refused = output(licensectl(
        &sys,
        &alice,
        &["run", "--license", &license, "--", "sh", "-c", &touch],
    ))
    .await;
    assert_eq!(
        refused.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(!marker.exists(), "the command did not run");

    // With a queue in the policy, `--wait` starts the command once bob's
    // seat frees.
    let vendor = crate::harness::token("vendor", "acme", true).await;
    let policy = format!("/api/v1/admin/licenses/{license}/policy");
    let body = serde_json::json!({ "max_queue_wait_secs": 600 });
    let set = sys
        .app
        .call(reqwest::Method::PUT, &policy, Some(&vendor), Some(body))
        .await;
    assert_eq!(set.status, reqwest::StatusCode::OK, "{}", set.body);
    let waiting = tokio::spawn(output(licensectl(
        &sys,
        &alice,
        &[
            "run",
            "--license",
            &license,
            "--wait",
            "30",
            "--",
            "sh",
            "-c",
            &touch,
        ],
    )));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!marker.exists(), "the command waits for a seat");
    let bob_session = held.body["session_id"].as_str().unwrap();
    assert!(sys.app.release(&bob, bob_session).await.status.is_success());
    let done = waiting.await.unwrap();
    assert_eq!(
        done.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(marker.exists(), "the command ran once the seat freed");
    let _ = std::fs::remove_file(&marker);
    sys.cleanup().await;
}
