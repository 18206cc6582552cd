//! Duplicates and redelivery change nothing; out-of-order delivery is
//! ordered by refetching gaps from the log (proptest).

use crate::common::*;
use async_nats::jetstream::{self, consumer::pull, message::PublishMessage};
use events::envelope::Envelope;
use futures::StreamExt;
use projections::{Applied, ProjectorStats};
use proptest::prelude::*;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_event_twice_changes_nothing() {
    let mut world = World::new().await;
    world.start_both();
    let work = workload(&world.ledger).await;
    world.caught_up().await;
    let before = world.projection.dump().await.unwrap();

    // When every event is applied again, straight from the log
    let log: Vec<Envelope> = world
        .store
        .read_all(0, 100_000)
        .await
        .unwrap()
        .iter()
        .map(Envelope::from)
        .collect();
    let stats = ProjectorStats::default();
    for event in &log {
        let again = world
            .projection
            .apply_ordered(&world.store, event, true, &stats)
            .await
            .unwrap();
        assert!(
            matches!(
                again,
                Applied::Duplicate | Applied::Closed | Applied::Skipped
            ),
            "{again:?} for {event:?}"
        );
    }
    assert_eq!(world.projection.dump().await.unwrap(), before);

    // And when every envelope is re-published with a new message id (so
    // JetStream's duplicate window cannot drop it)
    let dups_before = world.stats.duplicates_skipped.load(Ordering::Relaxed);
    for event in &log {
        let payload = envelope_of(&world, event).await;
        let msg = PublishMessage::build()
            .payload(payload.into())
            .message_id(uuid::Uuid::new_v4().to_string());
        let subject = format!("{}.x.y.{}", world.subjects, event.event_type);
        world
            .js
            .send_publish(subject, msg)
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // Then the projector skips them all and the counts do not move
    let want = dups_before
        + log
            .iter()
            .filter(|e| e.stream.starts_with("license-"))
            .count() as u64;
    wait_for(|| world.stats.duplicates_skipped.load(Ordering::Relaxed) >= want).await;
    assert_eq!(world.projection.dump().await.unwrap(), before);
    assert_matches_fold(&world.ledger, &world.projection, &work.licenses).await;
    world.cleanup().await;
}

/// The published envelope of a logged event (same JSON the publisher sends).
async fn envelope_of(world: &World, event: &Envelope) -> Vec<u8> {
    let recorded = world
        .store
        .read_stream(&event.stream, event.stream_version, 1)
        .await
        .unwrap()
        .pop()
        .unwrap();
    Envelope::from(&recorded).to_json()
}

async fn wait_for(mut done: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "condition not reached in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn projector_killed_between_apply_and_ack_leaves_counts_unchanged() {
    let mut world = World::new().await;
    world.start_publisher();
    let work = workload(&world.ledger).await;
    let count = world.event_count().await as usize;

    // Given a projector that applied every message but died before acking
    projections::rebuild(&world.store, &world.projection)
        .await
        .unwrap(); // sentinel, as a started projector would
    let expected = world.projection.dump().await.unwrap();
    world.projection.reset().await.unwrap();
    world.projection.set_sentinel().await.unwrap();
    let stream = world.js.get_stream(&world.stream).await.unwrap();
    let config = pull::Config {
        durable_name: Some(projections::durable_name(world.projection.prefix())),
        filter_subject: format!("{}.>", world.subjects),
        ack_policy: jetstream::consumer::AckPolicy::All,
        ack_wait: Duration::from_secs(3),
        ..Default::default()
    };
    let consumer: jetstream::consumer::Consumer<pull::Config> = stream
        .get_or_create_consumer(config.durable_name.as_deref().unwrap(), config.clone())
        .await
        .unwrap();
    let mut messages = consumer
        .fetch()
        .max_messages(count)
        .messages()
        .await
        .unwrap();
    let stats = ProjectorStats::default();
    let mut applied = 0;
    while let Some(message) = messages.next().await {
        let event = Envelope::from_json(&message.unwrap().payload).unwrap();
        world
            .projection
            .apply_ordered(&world.store, &event, true, &stats)
            .await
            .unwrap();
        applied += 1; // ... and no ack: killed here
    }
    assert_eq!(applied, count);
    drop(messages);
    assert_same(&expected, &world.projection.dump().await.unwrap());

    // When a new projector starts on the same durable consumer
    let stop = CancellationToken::new();
    world
        .tasks
        .push(world.start_projector(world.projection.clone(), stop.clone()));
    // Then everything is redelivered and skipped: counts unchanged
    world.caught_up().await;
    assert_eq!(world.stats.events_projected.load(Ordering::Relaxed), 0);
    assert_same(&expected, &world.projection.dump().await.unwrap());
    assert_matches_fold(&world.ledger, &world.projection, &work.licenses).await;
    stop.cancel();
    world.cleanup().await;
}

/// Applying any permutation with duplicates of each stream's events through
/// the ordered path gives the state of applying them once, in order.
#[test]
fn any_order_with_duplicates_projects_like_in_order() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (world, log, reference) = rt.block_on(async {
        let world = World::new().await;
        workload(&world.ledger).await;
        let log: Vec<Envelope> = world
            .store
            .read_all(0, 100_000)
            .await
            .unwrap()
            .iter()
            .map(Envelope::from)
            .collect();
        let reference = projection().await;
        reference.set_sentinel().await.unwrap();
        for event in &log {
            let result = reference.apply(event, true).await.unwrap();
            assert!(
                matches!(
                    result,
                    Applied::Applied | Applied::Closed | Applied::Skipped
                ),
                "{result:?}"
            );
        }
        let dump = reference.dump().await.unwrap();
        reference.reset().await.unwrap();
        (world, log, dump)
    });
    // License streams first, then session streams (the projector sees a
    // session's events after its SeatAcquired, by position): inside each
    // phase any order, any duplication.
    let lic: Vec<usize> = (0..log.len())
        .filter(|i| log[*i].stream.starts_with("license-"))
        .collect();
    let rest: Vec<usize> = (0..log.len())
        .filter(|i| !log[*i].stream.starts_with("license-"))
        .collect();
    let phase = |idx: Vec<usize>| {
        let n = idx.len();
        proptest::collection::vec(proptest::sample::select(idx.clone()), 0..n).prop_flat_map(
            move |extra| {
                let all: Vec<usize> = idx.iter().copied().chain(extra).collect();
                Just(all).prop_shuffle()
            },
        )
    };
    let order =
        (phase(lic), phase(rest)).prop_map(|(a, b)| a.into_iter().chain(b).collect::<Vec<usize>>());
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(12));
    runner
        .run(&order, |order| {
            rt.block_on(async {
                let target = projection().await;
                target.set_sentinel().await.unwrap();
                let stats = ProjectorStats::default();
                for i in &order {
                    let result = target
                        .apply_ordered(&world.store, &log[*i], true, &stats)
                        .await
                        .unwrap();
                    assert_ne!(result, Applied::Flushed);
                }
                let dump = target.dump().await.unwrap();
                target.reset().await.unwrap();
                prop_assert_eq!(dump, reference.clone());
                Ok(())
            })
        })
        .unwrap();
    rt.block_on(world.cleanup());
}
