//! The connections the log keeps between calls (the group committer's, the
//! subscriber's listener) against the real local Postgres: when one dies,
//! appends and tailing go on, and nothing is lost or repeated.

use events::store::{
    connect_options, EventStore, ExpectedVersion, GroupCommitConfig, RecordedEvent, Subscription,
};
use events::testing::{counted, TestDb};
use futures::StreamExt;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use std::time::Duration;
use uuid::Uuid;

/// A pool on the test's schema whose connections carry `name` as their
/// `application_name`, so that the test can find and kill them.
async fn named_pool(db: &TestDb, name: &str, size: u32) -> PgPool {
    let options = connect_options(&db.url, Some(&db.schema))
        .unwrap()
        .application_name(name);
    PgPoolOptions::new()
        .max_connections(size)
        .connect_with(options)
        .await
        .unwrap()
}

/// A group-committing store with `writers` on a named pool of `size`, after
/// its first append (to stream `s`): its writer keeps a connection.
async fn committer(db: &TestDb, writers: usize, size: u32) -> (String, PgPool, EventStore) {
    let name = format!("ll-test-{}", Uuid::new_v4().simple());
    let pool = named_pool(db, &name, size).await;
    let store = EventStore::with_group_commit(
        pool.clone(),
        GroupCommitConfig {
            writers,
            max_batch: 8,
        },
    );
    store
        .append_to("s", ExpectedVersion::NoStream, vec![counted(0)])
        .await
        .unwrap();
    (name, pool, store)
}

/// Terminates every backend of the pool named `name`; how many there were.
async fn kill(db: &TestDb, name: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE application_name = $1) AS killed",
    )
    .bind(name)
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

/// The versions stored in stream `s`, in order.
async fn versions_of_s(store: &EventStore) -> Vec<i64> {
    store
        .read_stream("s", 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.stream_version)
        .collect()
}

async fn next_event(sub: &mut Subscription) -> Option<RecordedEvent> {
    tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .ok()
        .flatten()
        .map(|r| r.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_committer_replaces_the_connection_it_kept_when_that_dies() {
    let db = TestDb::new().await;
    let (name, pool, store) = committer(&db, 1, 4).await;
    assert!(kill(&db, &name).await >= 1, "the writer kept a connection");
    // Idle pooled connections are pinged after a second; the kept one is not.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    for n in 1..=3 {
        store
            .append_to("s", ExpectedVersion::Exact(n - 1), vec![counted(n)])
            .await
            .unwrap_or_else(|e| panic!("append {n} after the kill: {e}"));
    }
    let versions = versions_of_s(&store).await;
    assert_eq!(versions, [0, 1, 2, 3], "nothing lost, nothing twice");
    pool.close().await;
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_keeps_tailing_after_its_connections_die() {
    let db = TestDb::new().await;
    let name = format!("ll-test-{}", Uuid::new_v4().simple());
    let pool = named_pool(&db, &name, 4).await;
    let writer = db.store();
    writer
        .append_to("a", ExpectedVersion::NoStream, vec![counted(0)])
        .await
        .unwrap();
    let mut sub = EventStore::new(pool.clone()).subscribe(0);
    assert_eq!(next_event(&mut sub).await.unwrap().position, 1);

    for round in 1..=2 {
        assert!(kill(&db, &name).await >= 1, "the subscriber listens");
        let written = writer
            .append_to("a", ExpectedVersion::Exact(round - 1), vec![counted(round)])
            .await
            .unwrap();
        let got = next_event(&mut sub)
            .await
            .unwrap_or_else(|| panic!("round {round}: the event reached the subscriber"));
        assert_eq!(got.position, written.written[0].position);
    }
    drop(sub);
    pool.close().await;
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_pool_gets_back_the_connections_the_committer_kept() {
    let db = TestDb::new().await;
    let (_, pool, store) = committer(&db, 2, 4).await;
    // `PgPool::close` waits for every connection: the store lives on, and
    // its writers must still give theirs back.
    tokio::time::timeout(Duration::from_secs(10), pool.close())
        .await
        .expect("the pool closed while the store lives");
    assert!(
        store
            .append_to("s", ExpectedVersion::Exact(0), vec![counted(1)])
            .await
            .is_err(),
        "no append on a kept connection of a closed pool"
    );
    drop(store);
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_committer_gives_its_connection_back_with_the_planner_as_it_was() {
    let db = TestDb::new().await;
    // One connection: the committer's, pinned to key lookups while kept.
    let (_, pool, store) = committer(&db, 1, 1).await;
    for n in 1..=3 {
        // The head is known now: these take the one-stream statement.
        store
            .append_to("s", ExpectedVersion::Exact(n - 1), vec![counted(n)])
            .await
            .unwrap();
    }
    // The writer lets go of it after a quarter of a second without appends.
    let mut conn = tokio::time::timeout(Duration::from_secs(10), pool.acquire())
        .await
        .expect("the committer gave its connection back")
        .unwrap();
    for (setting, default) in [
        ("enable_seqscan", "on"),
        ("enable_hashjoin", "on"),
        ("enable_mergejoin", "on"),
        ("plan_cache_mode", "auto"),
    ] {
        let value: String = sqlx::query_scalar(&format!("SHOW {setting}"))
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(value, default, "{setting} after the committer let go");
    }
    drop(conn);
    let versions = versions_of_s(&store).await;
    assert_eq!(versions, [0, 1, 2, 3]);
    pool.close().await;
    db.drop_schema().await;
}

/// A lone append runs at once on the committer's inline connection; a
/// caller that gives up mid-call (a client hung up) leaves that connection
/// usable, and the log whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_dropped_mid_call_leave_the_committer_working() {
    let db = TestDb::new().await;
    let (_, pool, store) = committer(&db, 1, 4).await;
    let mut finished = 0;
    for n in 0..40u64 {
        let append = store.append_to("s", ExpectedVersion::Any, vec![counted(n as i64)]);
        // From "at once" to "after the answer": every point of the call.
        if tokio::time::timeout(Duration::from_micros(25 * n), append)
            .await
            .is_ok_and(|r| r.is_ok())
        {
            finished += 1;
        }
    }
    assert!(finished < 40, "some appends were dropped mid-call");
    let last = store
        .append_to("s", ExpectedVersion::Any, vec![counted(99)])
        .await
        .expect("the committer appends after callers gave up");
    // Appends whose callers gave up still complete, possibly after `last`.
    let versions = versions_of_s(&store).await;
    let head = last.version_of("s").unwrap();
    assert_eq!(
        versions,
        (0..versions.len() as i64).collect::<Vec<_>>(),
        "no gap, nothing twice"
    );
    assert!(versions.contains(&head));
    assert!(store.verify_all().await.unwrap().is_intact());
    pool.close().await;
    db.drop_schema().await;
}
