//! The event log against the real local Postgres: optimistic concurrency,
//! atomic multi-stream appends, idempotency, gap-safe tailing, tamper
//! evidence. Each test runs in its own schema.

use events::store::{
    AppendError, BreakKind, EventStore, ExpectedVersion, GroupCommitConfig, NewEvent,
    RecordedEvent, StreamAppend, Subscription, VerifyReport,
};
use events::testing::TestDb;
use futures::StreamExt;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;
use uuid::Uuid;

fn event(n: i64) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "Counted".into(),
        schema_version: 1,
        data: json!({ "n": n, "nested": { "b": [1, 2], "a": "x" } }),
        metadata: json!({ "tenant_id": "t1" }),
    }
}

async fn count_rows(db: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

/// 32 tasks race for each next version: exactly one wins each version.
async fn race(store: EventStore, db: &TestDb) {
    const VERSIONS: i64 = 120;
    let stream = "race-1";
    let mut tasks = Vec::new();
    for writer in 0..32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let (mut wins, mut conflicts) = (Vec::new(), 0u32);
            loop {
                let current = store.stream_version(stream).await.unwrap();
                let next = current.map_or(0, |v| v + 1);
                if next >= VERSIONS {
                    return (wins, conflicts);
                }
                let expected = current.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
                match store.append_to(stream, expected, vec![event(writer)]).await {
                    Ok(result) => {
                        assert_eq!(result.version_of(stream), Some(next));
                        wins.push(next);
                    }
                    Err(AppendError::Conflict {
                        stream: s,
                        expected: e,
                        actual,
                    }) => {
                        assert_eq!(s, stream);
                        assert_eq!(e, expected);
                        assert_ne!(
                            actual, current,
                            "a conflict reports a different actual version"
                        );
                        conflicts += 1;
                    }
                    Err(other) => panic!("unexpected error: {other}"),
                }
            }
        }));
    }
    let mut all_wins = Vec::new();
    let mut conflicts = 0;
    for task in tasks {
        let (wins, c) = task.await.unwrap();
        all_wins.extend(wins);
        conflicts += c;
    }
    all_wins.sort_unstable();
    assert_eq!(
        all_wins,
        (0..VERSIONS).collect::<Vec<_>>(),
        "each version won exactly once"
    );
    assert!(conflicts > 0, "32 racing writers must produce conflicts");
    let stored = store.read_stream(stream, 0, 1000).await.unwrap();
    let versions: Vec<i64> = stored.iter().map(|e| e.stream_version).collect();
    assert_eq!(versions, (0..VERSIONS).collect::<Vec<_>>());
    assert_eq!(count_rows(db).await, VERSIONS);
    assert!(store.verify_all().await.unwrap().is_intact());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_one_winner_per_version() {
    let db = TestDb::new().await;
    race(db.store(), &db).await;
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_one_winner_per_version_with_group_commit() {
    let db = TestDb::new().await;
    let store = EventStore::with_group_commit(
        db.pool.clone(),
        GroupCommitConfig {
            writers: 3,
            max_batch: 64,
        },
    );
    race(store, &db).await;
    db.drop_schema().await;
}

#[tokio::test]
async fn multi_stream_append_is_all_or_nothing() {
    let db = TestDb::new().await;
    let store = db.store();
    store
        .append_to("a", ExpectedVersion::NoStream, vec![event(0)])
        .await
        .unwrap();
    store
        .append_to("b", ExpectedVersion::NoStream, vec![event(0), event(1)])
        .await
        .unwrap();

    let err = store
        .append(vec![
            StreamAppend::new("a", ExpectedVersion::Exact(0), vec![event(1), event(2)]),
            StreamAppend::new("b", ExpectedVersion::Exact(0), vec![event(2)]),
        ])
        .await
        .unwrap_err();
    match err {
        AppendError::Conflict {
            stream,
            expected,
            actual,
        } => {
            assert_eq!(stream, "b");
            assert_eq!(expected, ExpectedVersion::Exact(0));
            assert_eq!(actual, Some(1));
        }
        other => panic!("expected a conflict, got {other}"),
    }
    assert_eq!(
        store.stream_version("a").await.unwrap(),
        Some(0),
        "the first stream is untouched"
    );
    assert_eq!(store.read_stream("a", 0, 10).await.unwrap().len(), 1);
    assert_eq!(count_rows(&db).await, 3);

    // With the right versions both streams move together.
    let ok = store
        .append(vec![
            StreamAppend::new("a", ExpectedVersion::Exact(0), vec![event(1)]),
            StreamAppend::new("b", ExpectedVersion::Exact(1), vec![event(2)]),
        ])
        .await
        .unwrap();
    assert_eq!(ok.version_of("a"), Some(1));
    assert_eq!(ok.version_of("b"), Some(2));
    db.drop_schema().await;
}

#[tokio::test]
async fn expected_version_kinds() {
    let db = TestDb::new().await;
    let store = db.store();
    let err = store
        .append_to("s", ExpectedVersion::StreamExists, vec![event(0)])
        .await
        .unwrap_err();
    assert!(matches!(err, AppendError::Conflict { actual: None, .. }));
    let err = store
        .append_to("s", ExpectedVersion::Exact(0), vec![event(0)])
        .await
        .unwrap_err();
    assert!(err.is_conflict());
    store
        .append_to("s", ExpectedVersion::Any, vec![event(0)])
        .await
        .unwrap();
    let err = store
        .append_to("s", ExpectedVersion::NoStream, vec![event(1)])
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        AppendError::Conflict {
            actual: Some(0),
            ..
        }
    ));
    // A check without events passes or fails without writing.
    store
        .append_to("s", ExpectedVersion::Exact(0), vec![])
        .await
        .unwrap();
    assert_eq!(count_rows(&db).await, 1);
    // Malformed appends are rejected before the database.
    let dup = event(1);
    let err = store
        .append_to("s", ExpectedVersion::Any, vec![dup.clone(), dup])
        .await
        .unwrap_err();
    assert!(matches!(err, AppendError::Invalid(_)));
    db.drop_schema().await;
}

#[tokio::test]
async fn reappending_an_event_id_is_idempotent() {
    let db = TestDb::new().await;
    let store = db.store();
    let first = vec![event(1), event(2)];
    let written = store
        .append_to("s", ExpectedVersion::NoStream, first.clone())
        .await
        .unwrap();
    assert!(!written.already_stored);

    // The same events again (even with a now-stale expected version): no write, same positions.
    let again = store
        .append_to("s", ExpectedVersion::NoStream, first.clone())
        .await
        .unwrap();
    assert!(again.already_stored);
    assert_eq!(again.written, written.written);
    assert_eq!(count_rows(&db).await, 2);

    // Same id, different content: an error, nothing written.
    let mut changed = first[0].clone();
    changed.data = json!({ "n": 99 });
    let err = store
        .append_to("s", ExpectedVersion::Any, vec![changed])
        .await
        .unwrap_err();
    assert!(
        matches!(err, AppendError::EventIdReused { event_id } if event_id == first[0].event_id)
    );
    // Same id on another stream is different content too.
    let err = store
        .append_to("other", ExpectedVersion::Any, vec![first[1].clone()])
        .await
        .unwrap_err();
    assert!(matches!(err, AppendError::EventIdReused { .. }));
    assert_eq!(count_rows(&db).await, 2);
    db.drop_schema().await;
}

/// The next event, or `None` after `wait`.
async fn next_event(sub: &mut Subscription, wait: Duration) -> Option<RecordedEvent> {
    tokio::time::timeout(wait, sub.next())
        .await
        .ok()
        .flatten()
        .map(|r| r.unwrap())
}

fn one(stream: &str, n: i64) -> Vec<StreamAppend> {
    vec![StreamAppend::new(
        stream,
        ExpectedVersion::Any,
        vec![event(n)],
    )]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_waits_for_an_open_transaction_and_delivers_in_order() {
    let db = TestDb::new().await;
    let store = db.store();
    store
        .append_to("warmup", ExpectedVersion::NoStream, vec![event(0)])
        .await
        .unwrap();
    let mut sub = store.subscribe(0);
    assert_eq!(
        next_event(&mut sub, Duration::from_secs(5))
            .await
            .unwrap()
            .position,
        1
    );

    // T1 takes position p and stays open.
    let mut t1 = db.pool.begin().await.unwrap();
    let held = EventStore::append_in_transaction(&mut t1, one("slow", 1))
        .await
        .unwrap();
    let p = held.written[0].position;
    // p+1 commits while p is open.
    let later = store
        .append_to("fast", ExpectedVersion::Any, vec![event(2)])
        .await
        .unwrap();
    assert_eq!(later.written[0].position, p + 1);
    assert_eq!(
        store.read_all(1, 10).await.unwrap()[0].position,
        p + 1,
        "p+1 is visible, p is not"
    );

    // The subscriber must not deliver p+1 while p is open.
    assert!(
        next_event(&mut sub, Duration::from_millis(600))
            .await
            .is_none(),
        "delivered past an open transaction"
    );
    assert!(
        sub.stats().stalled_since_ms.load(Ordering::Relaxed) > 0,
        "the stall is exposed"
    );

    t1.commit().await.unwrap();
    let first = next_event(&mut sub, Duration::from_secs(5))
        .await
        .expect("p after commit");
    let second = next_event(&mut sub, Duration::from_secs(5))
        .await
        .expect("p+1 after p");
    assert_eq!((first.position, second.position), (p, p + 1));
    assert_eq!(first.stream_id, "slow");
    assert_eq!(sub.stats().stalled_since_ms.load(Ordering::Relaxed), 0);
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_steps_over_a_rolled_back_position() {
    let db = TestDb::new().await;
    let store = db.store();
    let mut sub = store.subscribe(0);
    let mut t1 = db.pool.begin().await.unwrap();
    let held = EventStore::append_in_transaction(&mut t1, one("x", 1))
        .await
        .unwrap();
    let later = store
        .append_to("y", ExpectedVersion::Any, vec![event(2)])
        .await
        .unwrap();
    assert!(next_event(&mut sub, Duration::from_millis(300))
        .await
        .is_none());
    t1.rollback().await.unwrap();
    let got = next_event(&mut sub, Duration::from_secs(5))
        .await
        .expect("the event after the dead gap");
    assert_eq!(got.position, later.written[0].position);
    assert_eq!(got.position, held.written[0].position + 1);
    assert_eq!(sub.stats().dead_positions.load(Ordering::Relaxed), 1);
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscriber_sees_every_event_once_in_order_under_concurrent_writers() {
    let db = TestDb::new().await;
    let store = EventStore::with_group_commit(db.pool.clone(), GroupCommitConfig::default());
    let mut sub = store.subscribe(0);
    let mut writers = Vec::new();
    for w in 0..16 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..40 {
                let stream = format!("s-{}", (w + i) % 5);
                store
                    .append_to(&stream, ExpectedVersion::Any, vec![event(i), event(i + 1)])
                    .await
                    .unwrap();
            }
        }));
    }
    let total = 16 * 40 * 2;
    let mut last_position = 0;
    let mut versions: BTreeMap<String, i64> = BTreeMap::new();
    for _ in 0..total {
        let e = next_event(&mut sub, Duration::from_secs(10))
            .await
            .expect("every event arrives");
        assert!(e.position > last_position, "position order");
        last_position = e.position;
        let v = versions.entry(e.stream_id.clone()).or_insert(-1);
        assert_eq!(e.stream_version, *v + 1, "per-stream version order");
        *v = e.stream_version;
    }
    for w in writers {
        w.await.unwrap();
    }
    assert!(
        next_event(&mut sub, Duration::from_millis(300))
            .await
            .is_none(),
        "nothing twice"
    );
    db.drop_schema().await;
}

/// Builds a log with two streams, then lets `tamper` edit it behind the log's back.
async fn tampered(tamper: &str) -> (TestDb, VerifyReport, i64) {
    let db = TestDb::new().await;
    let store = db.store();
    for n in 0..5 {
        store
            .append_to("lic-a", ExpectedVersion::Any, vec![event(n)])
            .await
            .unwrap();
        store
            .append_to("lic-b", ExpectedVersion::Any, vec![event(n)])
            .await
            .unwrap();
    }
    assert!(
        store.verify_all().await.unwrap().is_intact(),
        "a clean log verifies"
    );
    let pos: i64 = sqlx::query_scalar(
        "SELECT position FROM events WHERE stream_id = 'lic-a' AND stream_version = 2",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    sqlx::raw_sql(tamper).execute(&db.pool).await.unwrap();
    let report = store.verify_all().await.unwrap();
    (db, report, pos)
}

#[tokio::test]
async fn verification_finds_an_edited_event() {
    let (db, report, pos) = tampered(
        "UPDATE events SET data = '{\"n\": 7}' WHERE stream_id = 'lic-a' AND stream_version = 2",
    )
    .await;
    let b = report.first_break().expect("caught");
    assert_eq!(
        (b.stream.as_str(), b.version, b.position),
        ("lic-a", 2, pos)
    );
    assert_eq!(b.kind, BreakKind::HashMismatch);
    assert_eq!(report.breaks.len(), 1, "the other stream is intact");
    db.drop_schema().await;
}

#[tokio::test]
async fn verification_finds_a_deleted_event() {
    let (db, report, _) =
        tampered("DELETE FROM events WHERE stream_id = 'lic-a' AND stream_version = 2").await;
    let b = report.first_break().expect("caught");
    assert_eq!((b.stream.as_str(), b.version), ("lic-a", 3));
    assert_eq!(b.kind, BreakKind::VersionGap { expected: 2 });
    db.drop_schema().await;
}

#[tokio::test]
async fn verification_finds_swapped_versions() {
    let (db, report, _) = tampered(
        "UPDATE events SET stream_version = 1000 WHERE stream_id = 'lic-a' AND stream_version = 2;
         UPDATE events SET stream_version = 2 WHERE stream_id = 'lic-a' AND stream_version = 3;
         UPDATE events SET stream_version = 3 WHERE stream_id = 'lic-a' AND stream_version = 1000;",
    )
    .await;
    let b = report.first_break().expect("caught");
    assert_eq!((b.stream.as_str(), b.version), ("lic-a", 2));
    assert!(
        matches!(
            b.kind,
            BreakKind::PrevHashMismatch | BreakKind::HashMismatch
        ),
        "{b}"
    );
    db.drop_schema().await;
}

#[tokio::test]
async fn verification_finds_swapped_positions() {
    // Swapping two events' positions keeps the per-stream chain but breaks position order.
    let (db, report, _) = tampered(
        "CREATE TEMP TABLE moved AS SELECT * FROM events WHERE stream_id = 'lic-a' AND stream_version IN (1, 2);
         DELETE FROM events WHERE stream_id = 'lic-a' AND stream_version IN (1, 2);
         UPDATE moved SET position = CASE stream_version
             WHEN 1 THEN (SELECT position FROM moved WHERE stream_version = 2)
             ELSE (SELECT position FROM moved WHERE stream_version = 1) END;
         INSERT INTO events OVERRIDING SYSTEM VALUE SELECT * FROM moved;",
    )
    .await;
    let b = report.first_break().expect("caught");
    assert_eq!(b.stream, "lic-a");
    assert_eq!(b.kind, BreakKind::PositionOrder);
    db.drop_schema().await;
}

#[tokio::test]
async fn verification_finds_a_cut_tail() {
    let (db, report, _) =
        tampered("DELETE FROM events WHERE stream_id = 'lic-b' AND stream_version = 4").await;
    let b = report.first_break().expect("caught");
    assert_eq!(b.stream, "lic-b");
    assert_eq!(
        b.kind,
        BreakKind::HeadMismatch {
            head_version: 4,
            last_version: 3
        }
    );
    db.drop_schema().await;
}

#[tokio::test]
async fn verification_finds_a_forged_event() {
    let (db, report, _) = tampered(
        "INSERT INTO events (event_id, stream_id, stream_version, event_type, schema_version, data, metadata,
                             recorded_at, prev_hash, hash)
         SELECT gen_random_uuid(), 'lic-a', 5, 'Counted', 1, '{}', '{}', now(), hash, hash
         FROM events WHERE stream_id = 'lic-a' AND stream_version = 4",
    )
    .await;
    let b = report.first_break().expect("caught");
    assert_eq!((b.stream.as_str(), b.version), ("lic-a", 5));
    assert_eq!(b.kind, BreakKind::HashMismatch);
    db.drop_schema().await;
}
