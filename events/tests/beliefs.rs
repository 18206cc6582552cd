//! Appends through stores whose cached stream heads go stale: two
//! group-committing stores and a plain one share a schema, each with its own
//! cache, so every kind of belief (right, stale, unknown) reaches the
//! database, by the one-stream statement and by `ll_append`. A model says
//! what each append must do; the log must agree, and verify intact.

use events::store::{
    AppendError, EventStore, ExpectedVersion, GroupCommitConfig, NewEvent, StreamAppend,
};
use events::testing::{counted, TestDb};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::collections::HashMap;

#[derive(Debug, Clone)]
enum Expect {
    Any,
    NoStream,
    StreamExists,
    /// The version the model holds.
    Current,
    /// One below it (stale by one, or -1 → `Exact(0)` on a new stream).
    Stale,
    Exact(i64),
}

#[derive(Debug, Clone)]
struct Op {
    store: usize,
    /// Streams of the append (indices, distinct), each with its expectation.
    streams: Vec<(usize, Expect)>,
    events: usize,
    /// Append the events last written to the first stream again (an
    /// idempotent retry) instead of new ones.
    again: bool,
}

fn expect() -> impl Strategy<Value = Expect> {
    prop_oneof![
        1 => Just(Expect::Any),
        1 => Just(Expect::NoStream),
        1 => Just(Expect::StreamExists),
        3 => Just(Expect::Current),
        1 => Just(Expect::Stale),
        1 => (0i64..4).prop_map(Expect::Exact),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    (
        0usize..3,
        prop_oneof![
            3 => (0usize..3, expect()).prop_map(|s| vec![s]),
            1 => (0usize..3, expect(), 1usize..3, expect())
                .prop_map(|(a, ea, d, eb)| vec![(a, ea), ((a + d) % 3, eb)]),
        ],
        1usize..3,
        prop::bool::weighted(0.15),
    )
        .prop_map(|(store, streams, events, again)| Op {
            store,
            streams,
            events,
            again,
        })
}

fn resolve(expect: &Expect, model: i64) -> ExpectedVersion {
    match expect {
        Expect::Any => ExpectedVersion::Any,
        Expect::NoStream => ExpectedVersion::NoStream,
        Expect::StreamExists => ExpectedVersion::StreamExists,
        Expect::Current if model >= 0 => ExpectedVersion::Exact(model),
        Expect::Current => ExpectedVersion::NoStream,
        Expect::Stale => ExpectedVersion::Exact((model - 1).max(0)),
        Expect::Exact(v) => ExpectedVersion::Exact(*v),
    }
}

/// Runs `ops` on streams named after `case`, checking each result against
/// the model.
async fn check(stores: &[EventStore], case: usize, ops: &[Op]) -> Result<(), TestCaseError> {
    let name = |s: usize| format!("case{case}-s{s}");
    let mut versions: HashMap<usize, i64> = HashMap::new();
    // The events last written to each stream, with their positions.
    let mut last: HashMap<usize, (Vec<NewEvent>, Vec<i64>)> = HashMap::new();
    for op in ops {
        let before = versions.clone();
        let model = |s: usize| before.get(&s).copied().unwrap_or(-1);
        let store = &stores[op.store];
        if op.again {
            let s = op.streams[0].0;
            let Some((events, positions)) = last.get(&s).cloned() else {
                continue;
            };
            let result = store
                .append(vec![StreamAppend::new(
                    name(s),
                    ExpectedVersion::Any,
                    events,
                )])
                .await;
            let result = result.map_err(|e| TestCaseError::fail(format!("retry failed: {e}")))?;
            prop_assert!(result.already_stored, "a retry writes nothing");
            let again: Vec<i64> = result.written.iter().map(|w| w.position).collect();
            prop_assert_eq!(again, positions, "a retry answers the first positions");
            continue;
        }
        let mut appends = Vec::new();
        let mut holds = true;
        for (s, e) in &op.streams {
            let expected = resolve(e, model(*s));
            holds &= expected.holds_at(model(*s));
            let events: Vec<NewEvent> = (0..op.events).map(|n| counted(n as i64)).collect();
            appends.push(StreamAppend::new(name(*s), expected, events));
        }
        let sent = appends.clone();
        match store.append(appends).await {
            Ok(result) => {
                prop_assert!(holds, "{op:?} was written though an expectation fails");
                prop_assert!(!result.already_stored);
                for (append, (s, _)) in sent.into_iter().zip(&op.streams) {
                    let next = model(*s) + op.events as i64;
                    prop_assert_eq!(result.version_of(&name(*s)), Some(next));
                    let positions = result
                        .written
                        .iter()
                        .filter(|w| w.stream == name(*s))
                        .map(|w| w.position)
                        .collect::<Vec<_>>();
                    prop_assert!(positions.iter().all(|&p| p > 0));
                    versions.insert(*s, next);
                    last.insert(*s, (append.events, positions));
                }
            }
            Err(AppendError::Conflict { stream, actual, .. }) => {
                prop_assert!(!holds, "{op:?} failed though every expectation holds");
                let s = op
                    .streams
                    .iter()
                    .find(|(s, _)| name(*s) == stream)
                    .map(|(s, _)| *s)
                    .ok_or_else(|| TestCaseError::fail(format!("conflict on {stream}")))?;
                let at = model(s);
                prop_assert_eq!(
                    actual,
                    (at >= 0).then_some(at),
                    "the actual version reported"
                );
            }
            Err(other) => return Err(TestCaseError::fail(format!("{op:?}: {other}"))),
        }
    }
    for (s, v) in &versions {
        let stored = stores[2].read_stream(&name(*s), 0, 1000).await.unwrap();
        prop_assert_eq!(stored.len() as i64, v + 1, "every version stored once");
    }
    Ok(())
}

#[test]
fn appends_agree_with_the_model_whatever_each_store_believes() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let db = rt.block_on(TestDb::new());
    let stores = rt.block_on(async {
        let grouped =
            || EventStore::with_group_commit(db.pool.clone(), GroupCommitConfig::default());
        vec![grouped(), grouped(), db.store()]
    });
    let mut runner = TestRunner::new(Config {
        cases: 48,
        failure_persistence: None,
        ..Config::default()
    });
    let case = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(&prop::collection::vec(op(), 1..40), |ops| {
            let case = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            rt.block_on(check(&stores, case, &ops))
        })
        .unwrap();
    let report = rt.block_on(stores[2].verify_all()).unwrap();
    assert!(report.is_intact(), "{report:?}");
    rt.block_on(db.drop_schema());
}

/// Many writers on streams of their own, batched by two group committers
/// into one-stream calls. Each writer alternates between the two stores,
/// expecting `Any`, so each store's belief about the stream is one append
/// behind: the call writes nothing for it and `ll_append` follows. Every
/// append lands once, at its version, and the chains verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_through_stale_beliefs_land_once_each() {
    const WRITERS: usize = 32;
    const APPENDS: i64 = 20;
    let db = TestDb::new().await;
    let grouped = || EventStore::with_group_commit(db.pool.clone(), GroupCommitConfig::default());
    let stores = [grouped(), grouped()];
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let stores = stores.clone();
        tasks.push(tokio::spawn(async move {
            let stream = format!("w{w}");
            for v in 0..APPENDS {
                let result = stores[v as usize % 2]
                    .append_to(&stream, ExpectedVersion::Any, vec![counted(v)])
                    .await
                    .unwrap_or_else(|e| panic!("{stream} at {v}: {e}"));
                assert_eq!(result.version_of(&stream), Some(v), "{stream}");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for w in 0..WRITERS {
        let stored = stores[0]
            .read_stream(&format!("w{w}"), 0, 100)
            .await
            .unwrap();
        let versions: Vec<i64> = stored.iter().map(|e| e.stream_version).collect();
        assert_eq!(versions, (0..APPENDS).collect::<Vec<_>>());
    }
    let report = stores[0].verify_all().await.unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.events, WRITERS as u64 * APPENDS as u64);
    db.drop_schema().await;
}

/// A writer's cached head is only a belief: where the stored head differs
/// at the same version (a history restored or edited behind the store's
/// back), the next append chains from the stored one, whichever statement
/// carries it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_chains_from_the_stored_head_not_the_cached_one() {
    let db = TestDb::new().await;
    let grouped = EventStore::with_group_commit(db.pool.clone(), GroupCommitConfig::default());
    for (n, store) in [grouped, db.store()].into_iter().enumerate() {
        let stream = format!("s{n}");
        store
            .append_to(&stream, ExpectedVersion::NoStream, vec![counted(0)])
            .await
            .unwrap();
        let stored = [7u8; 32];
        sqlx::query("UPDATE streams SET last_hash = $1 WHERE stream_id = $2")
            .bind(&stored[..])
            .bind(&stream)
            .execute(&db.pool)
            .await
            .unwrap();
        let written = store
            .append_to(&stream, ExpectedVersion::Exact(0), vec![counted(1)])
            .await
            .unwrap();
        assert_eq!(written.version_of(&stream), Some(1));
        let events = store.read_stream(&stream, 0, 10).await.unwrap();
        assert_eq!(
            events[1].prev_hash, stored,
            "{stream} chains from the stored head"
        );
    }
    db.drop_schema().await;
}
