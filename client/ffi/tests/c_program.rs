//! `examples/hold_seat.c`, built with gcc against the library and the
//! header, run against the real server (in-process): it holds a seat past
//! its TTL, verifies its token, sees a tampered one rejected, releases; and
//! exits 2 with the server's reason when no seat is free.

#[allow(dead_code)]
#[path = "../../../tests/e2e/harness.rs"]
mod harness;

use harness::{count_events, token, System};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The directory holding `libledger_client_c.so` built for this test.
fn library_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let found = [deps, deps.parent().unwrap()]
        .into_iter()
        .find(|d| d.join("libledger_client_c.so").exists())
        .expect("the cdylib next to the test binary")
        .to_path_buf();
    found
}

fn build_example(out: &Path) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = library_dir();
    let program = out.join("hold_seat");
    let status = Command::new("gcc")
        .args([
            "-std=c11",
            "-D_DEFAULT_SOURCE",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-o",
        ])
        .arg(&program)
        .arg(dir.join("examples/hold_seat.c"))
        .arg("-I")
        .arg(dir.join("include"))
        .arg("-L")
        .arg(&lib)
        .arg("-lledger_client_c")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .status()
        .expect("gcc");
    assert!(status.success(), "gcc failed");
    program
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_c_example_holds_verifies_and_releases_a_seat() {
    let sys = System::start().await;
    let license = sys.app.issue("acme", 1, 3).await;
    let out = std::env::temp_dir().join(format!("ll-ffi-{}", uuid_like()));
    std::fs::create_dir_all(&out).unwrap();
    let program = build_example(&out);
    let run = |bearer: String, hold: &'static str| {
        let mut command = Command::new(&program);
        command
            .env("LL_URL", format!("http://{}", sys.app.addr))
            .env("LL_BEARER", bearer)
            .env("LL_LICENSE", &license)
            .env("LL_ISSUER", "https://license-ledger.test")
            .env("LL_HOLD_SECS", hold);
        tokio::task::spawn_blocking(move || command.output().unwrap())
    };

    // Held for 5 s, longer than the 3 s TTL: heartbeats kept it.
    let held = run(token("alice", "acme", false).await, "5").await.unwrap();
    let stdout = String::from_utf8_lossy(&held.stdout);
    assert!(
        held.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&held.stderr)
    );
    assert!(stdout.contains("state 0"), "{stdout}");
    assert!(stdout.contains("token verified"), "{stdout}");
    assert!(stdout.contains("tampered token: rejected"), "{stdout}");
    assert!(stdout.contains("released"), "{stdout}");
    assert!(count_events(&sys.db, "HeartbeatRecorded").await >= 1);
    assert_eq!(count_events(&sys.db, "SeatReleased").await, 1);

    // The only seat taken by someone else: exit code 2 and the reason.
    let bob = token("bob", "acme", false).await;
    let taken = sys.app.acquire(&bob, &license, "bob-pc").await;
    assert!(taken.status.is_success(), "{}", taken.body);
    let refused = run(token("carol", "acme", false).await, "0").await.unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no seat"), "{stderr}");

    let _ = std::fs::remove_dir_all(&out);
    sys.cleanup().await;
}

fn uuid_like() -> String {
    format!("{}-{:?}", std::process::id(), std::thread::current().id()).replace(['(', ')'], "")
}
