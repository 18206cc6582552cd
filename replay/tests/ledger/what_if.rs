//! `ledger what-if`: a recorded history replayed under another policy, with
//! the figures both ways.

use crate::support::{issue, ledger, set_policy, tmp_path, user};
use events::ids::HardwareId;
use events::testing::{Ledger, TestDb};
use serde_json::{json, Value};

fn policy_file(policy: &Value) -> String {
    let path = tmp_path("policy.json");
    std::fs::write(&path, policy.to_string()).unwrap();
    path.to_str().unwrap().to_owned()
}

fn run_what_if(db: &TestDb, license: &str, policy: &Value, format: &str) -> (i32, String, String) {
    let file = policy_file(policy);
    let args = [
        "what-if",
        "--policy",
        &file,
        "--license",
        license,
        "--from",
        "2000-01-01",
        "--to",
        "2100-01-01",
        "--format",
        format,
    ];
    ledger(db, &args)
}

fn denials(report: &Value) -> u64 {
    let map = report["denials"].as_object().unwrap();
    map.values().map(|n| n.as_u64().unwrap()).sum()
}

#[tokio::test]
async fn an_overdraft_policy_would_have_granted_a_turned_away_acquire() {
    let db = TestDb::new().await;
    let licenses = Ledger::new(db.store());
    // Given a 1-seat license: alice holds it, bob and carol are turned away,
    // then alice releases.
    let license = issue(&licenses, 1, 360).await;
    let acquire = |name: &'static str| {
        let licenses = &licenses;
        async move {
            let hw = HardwareId::parse(&format!("hw-{name}")).unwrap();
            licenses.acquire(license, &user(name), &hw).await.unwrap()
        }
    };
    let alice = acquire("alice").await.unwrap();
    assert!(acquire("bob").await.is_none());
    assert!(acquire("carol").await.is_none());
    licenses.release(license, alice).await.unwrap();
    let id = license.to_string();

    // When it is replayed with one overdraft seat
    let (code, out, err) = run_what_if(&db, &id, &json!({"overdraft_seats": 1}), "json");
    assert_eq!(code, 0, "{err}");
    let result: Value = serde_json::from_str(&out).unwrap();
    let c = &result["licenses"][0];
    let (recorded, what_if) = (&c["recorded"], &c["what_if"]);
    // Then: recorded 1 grant and 2 denials; under the policy bob is granted
    // on the overdraft seat and only carol is turned away.
    assert_eq!(
        (recorded["acquisitions"].clone(), denials(recorded)),
        (json!(1), 2)
    );
    assert_eq!(recorded["overdraft_acquisitions"], 0);
    assert_eq!(
        (what_if["acquisitions"].clone(), denials(what_if)),
        (json!(2), 1)
    );
    assert_eq!(what_if["overdraft_acquisitions"], 1);
    let peak = |r: &Value| {
        r["peak_per_day"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["peak"].as_u64().unwrap())
            .max()
    };
    assert_eq!((peak(recorded), peak(what_if)), (Some(1), Some(2)));
    assert_eq!(result["policy"]["overdraft_seats"], 1);

    // A per-user cap changes nothing here (one seat per user), and the
    // table says so side by side.
    let (code, table, err) = run_what_if(&db, &id, &json!({"max_seats_per_user": 1}), "table");
    assert_eq!(code, 0, "{err}");
    assert!(
        table.contains("recorded") && table.contains("what-if"),
        "{table}"
    );
    let grants = table
        .lines()
        .find(|l| l.trim_start().starts_with("grants"))
        .unwrap();
    assert_eq!(
        grants.split_whitespace().collect::<Vec<_>>(),
        ["grants", "1", "1"],
        "{table}"
    );

    let (_, table, _) = run_what_if(&db, &id, &json!({"overdraft_seats": 1}), "table");
    eprintln!("{table}");

    // The chart has both panels.
    let (code, svg, err) = run_what_if(&db, &id, &json!({"overdraft_seats": 1}), "svg");
    assert_eq!(code, 0, "{err}");
    assert!(svg.starts_with("<svg") && svg.contains("recorded") && svg.contains("what-if"));
    db.drop_schema().await;
}

#[tokio::test]
async fn a_bad_policy_file_fails_cleanly() {
    let db = TestDb::new().await;
    let license = issue(&Ledger::new(db.store()), 1, 360).await.to_string();
    let too_many = json!({"reservations": [{"name": "farm", "seats": 2, "users": ["ci"]}]});
    let (code, _, err) = run_what_if(&db, &license, &too_many, "table");
    assert_eq!(code, 2);
    assert!(err.contains("does not fit license"), "{err}");
    let (code, _, err) = run_what_if(&db, &license, &json!({"linger": 5}), "table");
    assert_eq!(code, 2);
    assert!(err.contains("is not a policy"), "{err}");
    let missing = [
        "what-if",
        "--policy",
        "/nonexistent.json",
        "--license",
        &license,
        "--from",
        "2000-01-01",
        "--to",
        "2100-01-01",
    ];
    let (code, _, err) = ledger(&db, &missing);
    assert_eq!(code, 2);
    assert!(err.contains("--policy: reading"), "{err}");
    db.drop_schema().await;
}

#[tokio::test]
async fn state_shows_the_policy_overdraft_and_lingering_seats() {
    use events::aggregate::Aggregate as _;
    use events::license::{LicenseCommand, Policy};
    let db = TestDb::new().await;
    let licenses = Ledger::new(db.store());
    let license = issue(&licenses, 1, 360).await;
    let policy = Policy {
        overdraft_seats: 1,
        linger_secs: 3_600,
        ..Policy::default()
    };
    set_policy(&licenses, license, policy).await;
    let hw = |n: &str| HardwareId::parse(n).unwrap();
    let alice = licenses
        .acquire(license, &user("alice"), &hw("a1"))
        .await
        .unwrap()
        .unwrap();
    licenses
        .acquire(license, &user("bob"), &hw("b1"))
        .await
        .unwrap()
        .unwrap();
    // Alice releases as the holder: her seat lingers for an hour.
    let expected = licenses.session(alice).await.unwrap().expected();
    let release = LicenseCommand::Release {
        session_id: alice,
        user_id: Some(user("alice")),
        now: chrono::Utc::now(),
    };
    licenses.command(license, release, expected).await.unwrap();

    let id = license.to_string();
    let (code, out, err) = ledger(
        &db,
        &["state", "--license", &id, "--at", "now", "--format", "json"],
    );
    assert_eq!(code, 0, "{err}");
    let state: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(state["policy_version"], 1);
    assert_eq!(state["overdraft_seats"], 1);
    assert_eq!(state["seats_lingering"], 1);
    assert_eq!(state["seats_in_use"], 1);
    assert_eq!(state["sessions"][0]["user"], "bob");
    assert_eq!(state["sessions"][0]["overdraft"], true);
    let (_, text, _) = ledger(&db, &["state", "--license", &id, "--at", "now"]);
    assert!(
        text.contains(
            "seats: 1 in use of 1 (+1 overdraft), 1 more held by a linger; policy version 1"
        ),
        "{text}"
    );
    assert!(text.contains("live, overdraft"), "{text}");
    db.drop_schema().await;
}
