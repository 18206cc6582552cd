//! The queue and borrowed seats in the audit tools: `ledger state` shows the
//! waiters and the borrowed seats, `ledger report` counts them, `ledger
//! seats` proves the history, and `ledger what-if` replays the waits.

use crate::support::{issue, ledger, set_policy, tmp_path, user};
use events::aggregate::Aggregate as _;
use events::ids::{HardwareId, SessionId};
use events::license::{LicenseCommand, Outcome, Policy};
use events::store::ExpectedVersion;
use events::testing::{Ledger, TestDb};
use serde_json::{json, Value};

async fn ask(
    licenses: &Ledger,
    license: events::ids::LicenseId,
    name: &str,
    wait: Option<u32>,
    borrow: Option<u32>,
) -> Outcome {
    let cmd = LicenseCommand::Acquire {
        session_id: SessionId::new(),
        user_id: user(name),
        hardware_id: HardwareId::parse(&format!("hw-{name}")).unwrap(),
        groups: vec![],
        idempotency_key: None,
        wait_secs: wait,
        borrow_secs: borrow,
        now: chrono::Utc::now(),
    };
    licenses
        .command(license, cmd, ExpectedVersion::Any)
        .await
        .unwrap()
}

fn json_of(db: &TestDb, args: &[&str]) -> Value {
    let (code, out, err) = ledger(db, args);
    assert_eq!(code, 0, "{args:?}: {err}");
    serde_json::from_str(&out).unwrap()
}

#[tokio::test]
async fn waiters_and_borrowed_seats_show_in_state_report_seats_and_what_if() {
    let db = TestDb::new().await;
    let licenses = Ledger::new(db.store());
    let license = issue(&licenses, 1, 360).await;
    let policy = Policy {
        max_queue_wait_secs: 3_600,
        max_borrow_secs: 86_400,
        ..Policy::default()
    };
    set_policy(&licenses, license, policy).await;
    // Alice borrows the only seat; bob, then carol, wait for it.
    let Outcome::Acquired {
        session_id: alice, ..
    } = ask(&licenses, license, "alice", None, Some(3_600)).await
    else {
        panic!("alice borrows the seat");
    };
    for name in ["bob", "carol"] {
        let outcome = ask(&licenses, license, name, Some(600), None).await;
        assert!(matches!(outcome, Outcome::Queued { .. }), "{outcome:?}");
    }
    let id = license.to_string();
    let state = ["state", "--license", &id, "--at", "now", "--format", "json"];
    let before = json_of(&db, &state);
    assert_eq!(before["seats_borrowed"], 1);
    assert!(before["sessions"][0]["borrowed_until"].is_string());
    let waiters: Vec<_> = before["waiters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["position"].as_u64().unwrap(), w["user"].as_str().unwrap()))
        .collect();
    assert_eq!(waiters, [(1, "bob"), (2, "carol")]);
    let (_, text, _) = ledger(&db, &["state", "--license", &id, "--at", "now"]);
    assert!(
        text.contains("queue: 2 waiting") && text.contains("borrowed until"),
        "{text}"
    );

    // Alice returns the seat early: bob gets it in the same append.
    let expected = licenses.session(alice).await.unwrap().expected();
    let release = LicenseCommand::Release {
        session_id: alice,
        user_id: None,
        now: chrono::Utc::now(),
    };
    licenses.command(license, release, expected).await.unwrap();
    let after = json_of(&db, &state);
    assert_eq!(after["sessions"][0]["user"], "bob");
    assert_eq!(after["waiters"][0]["user"], "carol");

    let window = [
        "--from",
        "2000-01-01",
        "--to",
        "2100-01-01",
        "--format",
        "json",
    ];
    let mut args = vec!["report", "--license", &id];
    args.extend(window);
    let report = json_of(&db, &args);
    let l = &report["licenses"][0];
    assert_eq!(l["acquisitions"], 2);
    assert_eq!(l["borrowed_acquisitions"], 1);
    assert_eq!(
        (l["queue"]["joined"].clone(), l["queue"]["granted"].clone()),
        (json!(2), json!(1))
    );
    assert!(l["queue"]["mean_wait_secs"].as_f64().unwrap() >= 0.0);

    let (code, out, err) = ledger(&db, &["seats", "--license", &id]);
    assert_eq!(
        code, 0,
        "the proof holds with borrowed and queued seats: {out}{err}"
    );

    // Replayed with an overdraft seat, bob would not have waited; carol
    // would have, until alice's release.
    let file = tmp_path("policy.json");
    let what_if = json!({"overdraft_seats": 1, "max_queue_wait_secs": 3600});
    std::fs::write(&file, what_if.to_string()).unwrap();
    let mut args = vec![
        "what-if",
        "--policy",
        file.to_str().unwrap(),
        "--license",
        &id,
    ];
    args.extend(window);
    let result = json_of(&db, &args);
    let (r, w) = (
        &result["licenses"][0]["recorded"],
        &result["licenses"][0]["what_if"],
    );
    assert_eq!(r["queue"]["joined"], 2);
    assert_eq!(w["queue"]["joined"], 1);
    assert_eq!(w["queue"]["granted"], 1);
    assert_eq!(w["acquisitions"], 3);
    // Bob's seat and carol's are both beyond the seat count when granted.
    assert_eq!(w["overdraft_acquisitions"], 2);
    assert_eq!(w["borrowed_acquisitions"], 0, "the policy has no borrowing");
    // Without a queue both would have been turned away.
    std::fs::write(&file, "{}").unwrap();
    let result = json_of(&db, &args);
    let w = &result["licenses"][0]["what_if"];
    assert_eq!(
        (
            w["queue"]["joined"].clone(),
            w["denials"]["no_seats"].clone()
        ),
        (json!(0), json!(2))
    );
    db.drop_schema().await;
}
