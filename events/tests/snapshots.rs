//! Snapshots and one-round-trip appends against the real local Postgres:
//! a long stream loads from its newest snapshot and the events after it,
//! and gives exactly the state a fold from the start gives; a snapshot is a
//! cache (unreadable or deleted, it costs a fold, never a wrong state);
//! writers whose cached stream heads are stale still append correctly.

use events::aggregate::{self, Aggregate};
use events::ids::{HardwareId, ProductId, TenantId, UserId};
use events::license::LicenseState;
use events::session::SessionState;
use events::store::{AppendError, EventStore, ExpectedVersion, GroupCommitConfig, StreamAppend};
use events::testing::{counted, Ledger, TestDb};

/// The state a fold of every event of `stream` gives (no snapshot involved).
async fn folded_from_start<A: Aggregate>(store: &EventStore, stream: &str) -> A {
    let mut state = A::default();
    for decoded in aggregate::read_decoded(store, stream, None).await.unwrap() {
        state = state.apply_event(&decoded.event);
        state.set_version(decoded.recorded.stream_version);
    }
    state
}

async fn snapshot_version(db: &TestDb, stream: &str) -> Option<i64> {
    sqlx::query_scalar("SELECT version FROM snapshots WHERE stream_id = $1")
        .bind(stream)
        .fetch_optional(&db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_long_license_stream_loads_from_its_snapshot_and_tail() {
    let db = TestDb::new().await;
    let ledger = Ledger::new(db.store().with_snapshot_every(100));
    let (tenant, product) = (
        TenantId::parse("acme").unwrap(),
        ProductId::parse("cad").unwrap(),
    );
    let id = ledger.issue(&tenant, &product, 1000, 3600).await.unwrap();
    // 130 acquires, most of them released: 241 events, 10 sessions still live.
    for i in 0..130 {
        let user = UserId::parse(&format!("user-{}", i % 7)).unwrap();
        let hardware = HardwareId::parse(&format!("hw-{i}")).unwrap();
        let session = ledger.acquire(id, &user, &hardware).await.unwrap().unwrap();
        if i % 13 != 0 {
            ledger.release(id, session).await.unwrap();
        }
    }
    let stream = id.stream_name();
    let newest = snapshot_version(&db, &stream)
        .await
        .expect("a snapshot was taken");
    assert!(newest >= 200, "the newest snapshot is at version {newest}");

    // A replica that never saw the license (empty caches, its own counter).
    let fresh = EventStore::new(db.pool.clone());
    let loaded: LicenseState = aggregate::load(&fresh, &stream).await.unwrap();
    let expected: LicenseState = folded_from_start(&db.store(), &stream).await;
    assert_eq!(loaded, expected);
    assert_eq!(loaded.sessions.len(), 10);
    assert!(
        fresh.stream_events_read() < 100,
        "read {} events, the tail after version {newest} only",
        fresh.stream_events_read()
    );
    db.drop_schema().await;
}

#[tokio::test]
async fn a_session_with_many_heartbeats_loads_from_its_snapshot() {
    let db = TestDb::new().await;
    let ledger = Ledger::new(db.store().with_snapshot_every(50));
    let (tenant, product) = (
        TenantId::parse("acme").unwrap(),
        ProductId::parse("cad").unwrap(),
    );
    let id = ledger.issue(&tenant, &product, 5, 3600).await.unwrap();
    let user = UserId::parse("ada").unwrap();
    let session = ledger
        .acquire(id, &user, &HardwareId::parse("hw").unwrap())
        .await
        .unwrap()
        .unwrap();
    for _ in 0..180 {
        ledger.heartbeat(id, session).await.unwrap();
    }
    let stream = session.stream_name();
    assert_eq!(snapshot_version(&db, &stream).await, Some(150));

    let fresh = EventStore::new(db.pool.clone());
    let loaded: SessionState = aggregate::load(&fresh, &stream).await.unwrap();
    assert_eq!(loaded, folded_from_start(&db.store(), &stream).await);
    assert_eq!(loaded.version, 179);
    assert_eq!(fresh.stream_events_read(), 29, "versions 151..=179 only");
    db.drop_schema().await;
}

#[tokio::test]
async fn an_unreadable_or_deleted_snapshot_costs_a_fold_not_a_wrong_state() {
    let db = TestDb::new().await;
    let ledger = Ledger::new(db.store().with_snapshot_every(20));
    let (tenant, product) = (
        TenantId::parse("acme").unwrap(),
        ProductId::parse("cad").unwrap(),
    );
    let id = ledger.issue(&tenant, &product, 100, 3600).await.unwrap();
    for i in 0..30 {
        let user = UserId::parse("ada").unwrap();
        let hardware = HardwareId::parse(&format!("hw-{i}")).unwrap();
        ledger.acquire(id, &user, &hardware).await.unwrap();
    }
    let stream = id.stream_name();
    let expected: LicenseState = folded_from_start(&db.store(), &stream).await;

    // A layout this build does not read: ignored, the stream is folded.
    sqlx::query("UPDATE snapshots SET state = '{\"no\": \"such layout\"}'")
        .execute(&db.pool)
        .await
        .unwrap();
    let fresh = EventStore::new(db.pool.clone()).with_snapshot_every(0);
    let loaded: LicenseState = aggregate::load(&fresh, &stream).await.unwrap();
    assert_eq!(loaded, expected);
    assert!(
        fresh.stream_events_read() >= 31,
        "the whole stream is folded"
    );

    // Deleted: the same, and the next fold takes a new one.
    assert_eq!(db.store().drop_snapshots().await.unwrap(), 1);
    let again = EventStore::new(db.pool.clone()).with_snapshot_every(20);
    let loaded: LicenseState = aggregate::load(&again, &stream).await.unwrap();
    assert_eq!(loaded, expected);
    assert_eq!(snapshot_version(&db, &stream).await, Some(30));
    db.drop_schema().await;
}

#[tokio::test]
async fn writers_with_stale_stream_heads_still_append_correctly() {
    let db = TestDb::new().await;
    // Two replicas, each with its own cache of stream heads.
    let (a, b) = (db.store(), db.store());
    a.append_to("s", ExpectedVersion::NoStream, vec![counted(0)])
        .await
        .unwrap();
    // b never saw the stream: its exact expectation holds and is written.
    b.append_to("s", ExpectedVersion::Exact(0), vec![counted(1)])
        .await
        .unwrap();
    // a's cache says version 0: a wrong expectation is a conflict naming the truth...
    let err = a
        .append_to("s", ExpectedVersion::Exact(0), vec![counted(2)])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AppendError::Conflict {
                actual: Some(1),
                ..
            }
        ),
        "{err}"
    );
    // ...and "any version" or "exists" are written after the stale belief is corrected.
    a.append_to("s", ExpectedVersion::Any, vec![counted(2)])
        .await
        .unwrap();
    let r = b
        .append_to("s", ExpectedVersion::StreamExists, vec![counted(3)])
        .await
        .unwrap();
    assert_eq!(r.version_of("s"), Some(3));
    let report = db.store().verify_stream("s").await.unwrap();
    assert!(report.is_intact(), "{report:?}");
    db.drop_schema().await;
}

/// Many group-committed writers on a few streams with `Any`: every append
/// lands once, versions are contiguous, and every chain verifies.
#[tokio::test]
async fn concurrent_appends_to_shared_streams_chain_correctly() {
    let db = TestDb::with_pool_size(24).await;
    let config = GroupCommitConfig {
        writers: 3,
        max_batch: 64,
    };
    let stores = [
        EventStore::with_group_commit(db.pool.clone(), config),
        EventStore::with_group_commit(db.pool.clone(), config),
    ];
    let mut tasks = Vec::new();
    for writer in 0..32 {
        let store = stores[writer % 2].clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..20 {
                let stream = format!("shared-{}", (writer + n) % 3);
                let appends = vec![
                    StreamAppend::new(stream, ExpectedVersion::Any, vec![counted(n as i64)]),
                    StreamAppend::new(
                        format!("own-{writer}"),
                        ExpectedVersion::after(n as i64 - 1),
                        vec![counted(n as i64)],
                    ),
                ];
                store.append(appends).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let counts: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT stream_id, count(*), max(stream_version) FROM events GROUP BY stream_id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let total: i64 = counts.iter().map(|(_, n, _)| n).sum();
    assert_eq!(total, 32 * 20 * 2);
    for (stream, n, max) in counts {
        assert_eq!(max, n - 1, "{stream}: versions are contiguous");
    }
    let report = db.store().verify_all().await.unwrap();
    assert!(report.is_intact(), "{report:?}");
    db.drop_schema().await;
}
