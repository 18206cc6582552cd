//! `ledger state` and `ledger report` on a scripted history with known answers.
//!
//! Times are the log's own `recorded_at` values (read back after the
//! script), so every expected figure is exact.

use crate::support::{issue, ledger, tmp_path, user};
use chrono::{DateTime, TimeDelta, Utc};
use events::ids::HardwareId;
use events::testing::{Ledger, TestDb};
use replay::time::fmt_time;
use sqlx::Row as _;
use std::time::Duration;

/// recorded_at and data of the first event matching `condition`.
async fn at(db: &TestDb, condition: &str) -> (DateTime<Utc>, serde_json::Value) {
    let row = sqlx::query(&format!(
        "SELECT recorded_at, data FROM events WHERE {condition} ORDER BY position LIMIT 1"
    ))
    .fetch_one(&db.pool)
    .await
    .unwrap();
    (row.get(0), row.get(1))
}

fn time_of(v: &serde_json::Value) -> DateTime<Utc> {
    v.as_str().unwrap().parse().unwrap()
}

fn hours(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (b - a).num_microseconds().unwrap() as f64 / 3.6e9
}

#[tokio::test]
async fn state_and_report_give_the_known_answers() {
    let db = TestDb::new().await;
    let licenses = Ledger::new(db.store());
    // Given a 2-seat license whose sessions live 1 s without a heartbeat
    let license = issue(&licenses, 2, 1).await;
    let grant = |name: &'static str| {
        let licenses = &licenses;
        async move {
            let hw = HardwareId::parse(&format!("hw-{name}")).unwrap();
            licenses.acquire(license, &user(name), &hw).await.unwrap()
        }
    };
    // alice and bob take both seats; carol is turned away
    let alice = grant("alice").await.unwrap();
    let bob = grant("bob").await.unwrap();
    assert!(grant("carol").await.is_none());
    // bob heartbeats just before his deadline; alice never does
    tokio::time::sleep(Duration::from_millis(800)).await;
    licenses.heartbeat(license, bob).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let overdue_at = Utc::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // the reaper ends alice's session; bob releases; carol gets a seat
    assert!(licenses.expire(license, alice).await.unwrap());
    licenses.release(license, bob).await.unwrap();
    let carol = grant("carol").await.unwrap();

    let s = |id: &dyn std::fmt::Display| format!("data->>'session_id' = '{id}'");
    let (issued_at, _) = at(&db, "event_type = 'LicenseIssued'").await;
    let (alice_since, alice_data) = at(
        &db,
        &format!("event_type = 'SeatAcquired' AND {}", s(&alice)),
    )
    .await;
    let (bob_since, _) = at(&db, &format!("event_type = 'SeatAcquired' AND {}", s(&bob))).await;
    let (_, beat) = at(
        &db,
        &format!("event_type = 'HeartbeatRecorded' AND {}", s(&bob)),
    )
    .await;
    let (expired_at, _) = at(
        &db,
        &format!("event_type = 'SessionExpired' AND {}", s(&alice)),
    )
    .await;
    let (released_at, _) = at(&db, &format!("event_type = 'SeatReleased' AND {}", s(&bob))).await;
    let (carol_since, _) = at(
        &db,
        &format!("event_type = 'SeatAcquired' AND {}", s(&carol)),
    )
    .await;
    let alice_deadline = time_of(&alice_data["expires_at"]);
    let bob_deadline = time_of(&beat["expires_at"]);
    assert!(
        alice_deadline < overdue_at && overdue_at < bob_deadline,
        "the script's timing went wrong"
    );

    // state at the overdue instant: both seats held, alice overdue, bob live
    let id = license.to_string();
    let (code, out, err) = ledger(
        &db,
        &[
            "state",
            "--license",
            &id,
            "--at",
            &fmt_time(overdue_at),
            "--format",
            "json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let state: replay::state::StateAt = serde_json::from_str(&out).unwrap();
    assert_eq!((state.seats, state.seats_in_use), (2, 2));
    let expected = [
        (
            "alice",
            "hw-alice",
            alice_since,
            alice_deadline,
            "live (overdue)",
        ),
        ("bob", "hw-bob", bob_since, bob_deadline, "live"),
    ];
    for (session, (user, hw, since, deadline, status)) in state.sessions.iter().zip(expected) {
        assert_eq!(
            (
                session.user.as_str(),
                session.hardware.as_str(),
                session.since,
                session.deadline,
                session.status.as_str()
            ),
            (user, hw, since, deadline, status)
        );
    }
    let (_, text, _) = ledger(
        &db,
        &["state", "--license", &id, "--at", &fmt_time(overdue_at)],
    );
    assert!(
        text.contains("seats: 2 in use of 2") && text.contains("live (overdue)"),
        "{text}"
    );
    // just after the expiry only bob holds a seat; at the end only carol
    let (_, out, _) = ledger(
        &db,
        &[
            "state",
            "--license",
            &id,
            "--at",
            &fmt_time(expired_at),
            "--format",
            "json",
        ],
    );
    let after: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        after["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["user"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["bob"]
    );

    // the report over a window covering everything
    let from = issued_at - TimeDelta::seconds(1);
    let to = carol_since + TimeDelta::seconds(2);
    let (code, out, err) = ledger(
        &db,
        &[
            "report",
            "--license",
            &id,
            "--from",
            &fmt_time(from),
            "--to",
            &fmt_time(to),
            "--format",
            "json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let l = &report["licenses"][0];
    assert_eq!(l["acquisitions"], 3);
    assert_eq!(l["denials"], serde_json::json!({"no_seats": 1}));
    assert_eq!(
        (l["releases"].as_u64(), l["expiries"].as_u64()),
        (Some(1), Some(1))
    );
    let peak = l["peak_per_day"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["peak"].as_u64().unwrap())
        .max();
    assert_eq!(peak, Some(2));
    let hours_of = |user: &str| {
        l["seat_hours"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["user"] == user)
            .map(|u| u["seat_hours"].as_f64().unwrap())
            .unwrap()
    };
    assert!((hours_of("alice") - hours(alice_since, expired_at)).abs() < 1e-12);
    assert!((hours_of("bob") - hours(bob_since, released_at)).abs() < 1e-12);
    assert!((hours_of("carol") - hours(carol_since, to)).abs() < 1e-12);

    // the same in csv and table; by tenant too
    let (_, csv, _) = ledger(
        &db,
        &[
            "report",
            "--tenant",
            "acme",
            "--from",
            &fmt_time(from),
            "--to",
            &fmt_time(to),
            "--format",
            "csv",
        ],
    );
    assert!(
        csv.starts_with("license_id,metric,key,value\n")
            && csv.contains(&format!("{id},denials,no_seats,1")),
        "{csv}"
    );
    let (_, table, _) = ledger(
        &db,
        &[
            "report",
            "--license",
            &id,
            "--from",
            &fmt_time(from),
            "--to",
            &fmt_time(to),
        ],
    );
    assert!(
        table.contains("sessions ended: 1 released, 1 expired")
            && table.contains("denials: 1 (no_seats: 1)"),
        "{table}"
    );

    // the SVG renders and draws the limit line
    let svg_path = tmp_path("usage.svg");
    let svg_arg = svg_path.to_str().unwrap().to_owned();
    let (code, _, err) = ledger(
        &db,
        &[
            "report",
            "--license",
            &id,
            "--from",
            &fmt_time(from),
            "--to",
            &fmt_time(to),
            "--format",
            "svg",
            "--out",
            &svg_arg,
        ],
    );
    assert_eq!(code, 0, "{err}");
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(
        svg.contains(r#"id="seat-limit-0""#) && svg.contains("seat limit (2)"),
        "{svg}"
    );
    let png = render_png(&svg);
    std::fs::write(svg_path.with_extension("png"), &png.0).unwrap();
    assert!(png.0.starts_with(b"\x89PNG"));
    assert!(
        png.1 > 200,
        "the limit line is drawn in red ({} red pixels)",
        png.1
    );
    // the projection can be rebuilt from this log (a prefix of its own)
    let prefix = format!("ledger-test-{}:", uuid::Uuid::new_v4().simple());
    let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let (code, out, err) = ledger(
        &db,
        &[
            "rebuild-projection",
            "--redis-url",
            &redis,
            "--prefix",
            &prefix,
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("events replayed"), "{out}");
    db.drop_schema().await;
}

/// Renders an SVG to PNG; returns the PNG and the count of seat-limit-red pixels.
fn render_png(svg: &str) -> (Vec<u8>, usize) {
    let tree = resvg::usvg::Tree::from_str(svg, &resvg::usvg::Options::default()).unwrap();
    let size = tree.size().to_int_size();
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height()).unwrap();
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::default(),
        &mut pixmap.as_mut(),
    );
    let red = pixmap
        .pixels()
        .iter()
        .filter(|p| p.red() > 180 && p.green() < 60 && p.blue() < 60)
        .count();
    (pixmap.encode_png().unwrap(), red)
}

#[tokio::test]
async fn bad_input_fails_cleanly() {
    let db = TestDb::new().await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let (code, _, err) = ledger(&db, &["state", "--license", &unknown, "--at", "now"]);
    assert_eq!(code, 2);
    assert!(err.contains("not found in the log"), "{err}");
    let (code, _, err) = ledger(
        &db,
        &["state", "--license", &unknown, "--at", "yesterday-ish"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("unparseable time"), "{err}");
    let (code, _, err) = ledger(&db, &["verify", "--file", "/nonexistent/export.jsonl"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot open export"), "{err}");
    let (code, _, err) = ledger(
        &db,
        &[
            "report",
            "--tenant",
            "nobody",
            "--from",
            "2025-01-01",
            "--to",
            "2025-01-02",
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("no license"), "{err}");
    let (code, _, err) = ledger(
        &db,
        &["rebuild-projection", "--redis-url", "redis://127.0.0.1:1/"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("Redis"), "{err}");
    db.drop_schema().await;
}
