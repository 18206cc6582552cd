//! Writers that keep losing the optimistic race, against the real local
//! Postgres: a command whose read-decide-append window is always longer
//! than another replica's append cycle still completes (the stream lock of
//! `aggregate::execute`), and a held stream lock really makes the other
//! writers of the stream wait for its commit.

use events::aggregate;
use events::envelope::{now, Metadata};
use events::ids::{HardwareId, LicenseId, ProductId, SessionId, TenantId, UserId};
use events::license::{decide, LicenseCommand, LicenseState};
use events::store::{EventStore, ExpectedVersion, NewEvent, StreamAppend};
use events::testing::{Ledger, TestDb};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn acquire(n: u64) -> LicenseCommand {
    LicenseCommand::Acquire {
        borrow_secs: None,
        wait_secs: None,
        session_id: SessionId::new(),
        user_id: UserId::parse(&format!("user-{n}")).unwrap(),
        hardware_id: HardwareId::parse(&format!("hw-{n}")).unwrap(),
        idempotency_key: None,
        now: now(),
        groups: Vec::new(),
    }
}

/// One acquire (or its recorded denial) on `state`, as a replica runs it.
async fn run(
    store: &EventStore,
    id: LicenseId,
    state: &mut LicenseState,
    meta: &serde_json::Value,
    n: u64,
    think: Duration,
) -> Result<(), String> {
    let command = acquire(n);
    aggregate::execute(store, &id.stream_name(), state, meta, |s| {
        // A slow decision: the window between reading and appending.
        std::thread::sleep(think);
        decide(s, command.clone()).map(|d| d.into_changes(ExpectedVersion::Any))
    })
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_writer_that_always_loses_the_race_still_completes() {
    let db = TestDb::with_pool_size(12).await;
    let (tenant, product) = (
        TenantId::parse("acme").unwrap(),
        ProductId::parse("cad").unwrap(),
    );
    let id = Ledger::new(db.store())
        .issue(&tenant, &product, 20, 3600)
        .await
        .unwrap();
    let meta = Metadata::license(tenant, id, product).to_value();

    // Replica A appends back to back with a warm state (one round trip each).
    let stop = Arc::new(AtomicBool::new(false));
    let fast_writes = Arc::new(AtomicU64::new(0));
    let fast = {
        let (store, meta, stop, writes) =
            (db.store(), meta.clone(), stop.clone(), fast_writes.clone());
        tokio::spawn(async move {
            let mut state: LicenseState = aggregate::load(&store, &id.stream_name()).await.unwrap();
            let mut n = 1_000_000;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                run(&store, id, &mut state, &meta, n, Duration::ZERO)
                    .await
                    .unwrap();
                writes.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // Replica B thinks 30 ms per decision: A always appends meanwhile, so
    // every optimistic round of B conflicts.
    let slow = db.store();
    let mut state: LicenseState = aggregate::load(&slow, &id.stream_name()).await.unwrap();
    for n in 0..5 {
        let before = fast_writes.load(Ordering::Relaxed);
        run(&slow, id, &mut state, &meta, n, Duration::from_millis(30))
            .await
            .unwrap_or_else(|e| panic!("the slow replica's command {n} failed: {e}"));
        assert!(
            fast_writes.load(Ordering::Relaxed) > before,
            "the fast replica kept writing meanwhile"
        );
    }
    stop.store(true, Ordering::Relaxed);
    fast.await.unwrap();

    let requested: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE stream_id = $1
         AND event_type IN ('SeatAcquired', 'AcquireDenied')
         AND data->>'user_id' IN ('user-0', 'user-1', 'user-2', 'user-3', 'user-4')",
    )
    .bind(id.stream_name())
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        requested, 5,
        "each of the slow replica's commands was recorded once"
    );
    let (n, max): (i64, i64) =
        sqlx::query_as("SELECT count(*), max(stream_version) FROM events WHERE stream_id = $1")
            .bind(id.stream_name())
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(max, n - 1, "versions are contiguous");
    let folded: LicenseState = aggregate::load(&db.store(), &id.stream_name())
        .await
        .unwrap();
    assert!(
        folded.sessions.len() <= 20,
        "never more seats than the license has"
    );
    assert!(db.store().verify_all().await.unwrap().is_intact());
    db.drop_schema().await;
}

fn event(n: i64) -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::new_v4(),
        event_type: "Counted".into(),
        schema_version: 1,
        data: json!({ "n": n }),
        metadata: json!({}),
    }
}

#[tokio::test]
async fn a_held_stream_lock_makes_other_writers_wait_for_its_commit() {
    let db = TestDb::new().await;
    let (holder, other) = (db.store(), db.store());
    other
        .append_to("s", ExpectedVersion::NoStream, vec![event(0)])
        .await
        .unwrap();

    let mut lock = holder.lock_stream("s").await.unwrap();
    assert_eq!(lock.read(0, 10).await.unwrap().len(), 1);
    let waiting = tokio::spawn(async move {
        other
            .append_to("s", ExpectedVersion::Any, vec![event(2)])
            .await
            .unwrap()
    });
    // While the lock is held the other append cannot finish.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "the other writer waited at the lock"
    );
    let mine = lock
        .append(vec![StreamAppend::new(
            "s",
            ExpectedVersion::after(0),
            vec![event(1)],
        )])
        .await
        .unwrap();
    assert_eq!(mine.version_of("s"), Some(1));
    let theirs = waiting.await.unwrap();
    assert_eq!(
        theirs.version_of("s"),
        Some(2),
        "it appended after the holder"
    );

    // A dropped lock writes nothing and frees the stream.
    let lock = holder.lock_stream("s").await.unwrap();
    drop(lock);
    let next = holder
        .append_to("s", ExpectedVersion::after(2), vec![event(3)])
        .await
        .unwrap();
    assert_eq!(next.version_of("s"), Some(3));
    assert!(db.store().verify_all().await.unwrap().is_intact());
    db.drop_schema().await;
}
