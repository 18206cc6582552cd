//! The billing consumer: its stored seat-hours equal a computation from the
//! log, survive kills at any point (before a commit, between commit and ack,
//! mid-stream) without loss or double counting, and ignore duplicates.

use crate::common::*;
use events::catalog::LicenseEvent;
use events::ids::{ProductId, TenantId};
use futures::StreamExt;
use projections::billing::{
    consume, decode, durable_consumer, BillingStore, ConsumeReport, ConsumerConfig, Envelope,
    Recorded, SchemaName, SeatHours,
};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The billing tables in the test's own schema (dropped with it).
async fn billing_store(world: &World) -> BillingStore {
    let schema = SchemaName::parse(&world.db.schema).unwrap();
    BillingStore::open(world.db.pool.clone(), schema)
        .await
        .unwrap()
}

/// A consumer config for the world's stream that stops when idle for 2 s.
fn config(world: &World, durable: &str) -> ConsumerConfig {
    ConsumerConfig {
        until_idle: Some(Duration::from_secs(2)),
        ..ConsumerConfig::new(&world.stream, &world.subjects, durable)
    }
}

/// Every event of the log, in position order, as published.
async fn log_events(world: &World) -> Vec<Envelope> {
    let recorded = world.store.read_all(0, 100_000).await.unwrap();
    recorded.iter().map(Envelope::from).collect()
}

/// Consumes until idle, repeatedly, until `count` messages were handled.
async fn consume_all(
    world: &World,
    config: &ConsumerConfig,
    store: &BillingStore,
    count: u64,
) -> ConsumeReport {
    let never = CancellationToken::new();
    let mut total = ConsumeReport::default();
    let started = Instant::now();
    while total.handled < count {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "consumer stuck"
        );
        let r = consume(&world.js, config, store, &never).await.unwrap();
        total.handled += r.handled;
        total.applied += r.applied;
        total.duplicates += r.duplicates;
        total.ignored += r.ignored;
        total.undecodable += r.undecodable;
    }
    total
}

/// A third tenant's license used `cycles` times: acquire, then release.
async fn churn(world: &World, cycles: usize) {
    let tenant = TenantId::parse("initech").unwrap();
    let product = ProductId::parse("cad.pro").unwrap();
    let license = world.ledger.issue(&tenant, &product, 1, 360).await.unwrap();
    let peter = user("peter");
    for i in 0..cycles {
        let session_id = world
            .ledger
            .acquire(license, &peter, &hw(&format!("h-p{i}")))
            .await
            .unwrap()
            .expect("denied");
        world.ledger.release(license, session_id).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seat_hours_from_the_stream_match_the_log() {
    let mut world = World::new().await;
    world.start_publisher();
    let work = workload(&world.ledger).await;
    world
        .ledger
        .release(work.licenses[1], work.live[1])
        .await
        .unwrap();
    let count = world.event_count().await as u64;

    // When the billing consumer reads the stream until it is idle
    let store = billing_store(&world).await;
    let handled = consume_all(&world, &config(&world, "billing"), &store, count)
        .await
        .handled;
    assert_eq!(handled, count);

    // Then its totals equal the seat time computed from the log itself
    let mut start = HashMap::new();
    let mut want: BTreeMap<String, i64> = BTreeMap::new();
    for recorded in world.store.read_all(0, 100_000).await.unwrap() {
        let tenant = recorded.metadata["tenant_id"]
            .as_str()
            .unwrap_or("_")
            .to_owned();
        match LicenseEvent::from_stored(
            &recorded.event_type,
            recorded.schema_version,
            &recorded.data,
        )
        .unwrap()
        {
            LicenseEvent::SeatAcquired { session_id, .. } => {
                start.insert(session_id, recorded.recorded_at);
            }
            LicenseEvent::SeatReleased { session_id, .. }
            | LicenseEvent::SessionExpired { session_id, .. }
            | LicenseEvent::SessionRevoked { session_id, .. } => {
                let began = start.remove(&session_id).unwrap();
                *want.entry(tenant).or_default() +=
                    (recorded.recorded_at - began).num_microseconds().unwrap();
            }
            _ => {}
        }
    }
    let totals = store.totals().await.unwrap();
    let seat_micros: BTreeMap<String, i64> = totals
        .iter()
        .map(|(t, v)| (t.clone(), v.seat_micros))
        .collect();
    assert_eq!(seat_micros, want);
    assert_eq!(store.open_sessions().await.unwrap() as usize, start.len());
    // Two expiries, two releases, and the session the suspension revoked.
    assert_eq!(totals.values().map(|t| t.sessions_closed).sum::<u64>(), 5);

    // And the pure fold of the log agrees with the store
    let mut fold = SeatHours::default();
    log_events(&world).await.iter().for_each(|e| {
        fold.observe(e);
    });
    assert_eq!(fold.totals(), &totals);
    assert_eq!(fold.open_sessions(), start.len());
    world.cleanup().await;
}

/// Pulls `n` messages on the durable consumer and drops them unacked, as a
/// process killed before its ack; with `store`, each is committed first (a
/// kill between commit and ack).
async fn pull_and_die(
    world: &World,
    config: &ConsumerConfig,
    n: usize,
    store: Option<&BillingStore>,
) {
    let consumer = durable_consumer(&world.js, config).await.unwrap();
    let mut batch = consumer.fetch().max_messages(n).messages().await.unwrap();
    while let Some(message) = batch.next().await {
        let message = message.unwrap();
        if let Some(store) = store {
            store
                .record(&decode(&message.payload).unwrap())
                .await
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_and_restarted_consumer_neither_loses_nor_double_counts() {
    // Given a stream of events of three tenants, all published
    let mut world = World::new().await;
    world.start_publisher();
    workload(&world.ledger).await;
    churn(&world, 15).await;
    let events = log_events(&world).await;
    world.published(events.len() as u64).await;
    let mut want = SeatHours::default();
    events.iter().for_each(|e| {
        want.observe(e);
    });
    let billable = events
        .iter()
        .filter(|e| projections::billing::Fact::of(e).session().is_some())
        .count() as u64;
    let store = billing_store(&world).await;
    // (a short ack wait: what a dead consumer held comes back quickly)
    let config = ConsumerConfig {
        until_idle: None,
        ack_wait: Duration::from_secs(1),
        ..config(&world, "billing")
    };

    // When a consumer dies holding messages it never stored,
    pull_and_die(&world, &config, 5, None).await;
    // one dies between commits and acks (these come back as duplicates,
    // after newer messages: redelivery does not keep order),
    pull_and_die(&world, &config, 12, Some(&store)).await;
    assert!(store.events_recorded().await.unwrap() > 0);
    // and consumers are killed mid-stream, wherever they happen to be
    for _ in 0..4 {
        let before = store.events_recorded().await.unwrap();
        let (js, c, s) = (world.js.clone(), config.clone(), store.clone());
        let task = tokio::spawn(async move {
            consume(&js, &c, &s, &CancellationToken::new())
                .await
                .unwrap();
        });
        let started = Instant::now();
        loop {
            let now = store.events_recorded().await.unwrap();
            if now > before || now == billable {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "no progress");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        task.abort();
        let _ = task.await;
    }

    // Then a restart with the same durable and schema finishes the stream
    let stop = CancellationToken::new();
    let (js, c, s, halt) = (
        world.js.clone(),
        config.clone(),
        store.clone(),
        stop.clone(),
    );
    let task = tokio::spawn(async move { consume(&js, &c, &s, &halt).await.unwrap() });
    let consumer = durable_consumer(&world.js, &config).await.unwrap();
    let started = Instant::now();
    loop {
        let info = consumer.get_info().await.unwrap();
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "not all acked: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    task.await.unwrap();

    // with every billable event stored exactly once
    assert_eq!(store.events_recorded().await.unwrap(), billable);
    assert_eq!(&store.totals().await.unwrap(), want.totals());
    assert_eq!(
        store.open_sessions().await.unwrap() as usize,
        want.open_sessions()
    );
    assert_eq!(want.totals()["initech"].sessions_closed, 15);
    world.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redelivered_or_republished_event_changes_nothing() {
    let mut world = World::new().await;
    world.start_publisher();
    workload(&world.ledger).await;
    let events = log_events(&world).await;
    let count = events.len() as u64;
    world.published(count).await;
    let store = billing_store(&world).await;
    let config = config(&world, "billing");
    consume_all(&world, &config, &store, count).await;
    let totals = store.totals().await.unwrap();
    let (recorded, open) = (
        store.events_recorded().await.unwrap(),
        store.open_sessions().await.unwrap(),
    );
    assert!(!totals.is_empty());

    // When every event is delivered again (same event ids)
    for event in &events {
        let again = store.record(event).await.unwrap();
        assert!(
            matches!(again, Recorded::Duplicate | Recorded::Ignored),
            "{again:?}"
        );
    }
    // and a billed release is republished under a new message id (past
    // JetStream's duplicate window), then consumed
    let stream = world.js.get_stream(&world.stream).await.unwrap();
    let mut release = None;
    for seq in 1..=count {
        let message = stream.get_raw_message(seq).await.unwrap();
        if decode(&message.payload).unwrap().event_type == "SeatReleased" {
            release = Some(message);
            break;
        }
    }
    let release = release.expect("a SeatReleased on the stream");
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", uuid::Uuid::new_v4().to_string().as_str());
    world
        .js
        .publish_with_headers(release.subject.clone(), headers, release.payload.clone())
        .await
        .unwrap()
        .await
        .unwrap();
    let report = consume_all(&world, &config, &store, 1).await;

    // Then nothing changed
    assert_eq!((report.handled, report.duplicates), (1, 1));
    assert_eq!(store.totals().await.unwrap(), totals);
    assert_eq!(store.events_recorded().await.unwrap(), recorded);
    assert_eq!(store.open_sessions().await.unwrap(), open);
    world.cleanup().await;
}
