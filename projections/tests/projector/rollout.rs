//! Two projector instances on one durable consumer (a rollout): one acks
//! never covers messages the other holds but has not applied.

use crate::common::*;
use events::ids::{ProductId, TenantId};
use futures::StreamExt;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_that_dies_holding_messages_loses_none_of_them() {
    let mut world = World::new().await;
    projections::rebuild(&world.store, &world.projection)
        .await
        .unwrap(); // the sentinel: the projector below starts without a rebuild
    world.start_publisher();
    let config = projections::consumer_config(world.projection.prefix(), &world.subjects);
    let stream = world.js.get_stream(&world.stream).await.unwrap();
    let consumer = stream
        .get_or_create_consumer(config.durable_name.as_deref().unwrap(), config.clone())
        .await
        .unwrap();

    // Instance A pulls the first license's events, then dies before applying them.
    let (acme, product) = (
        TenantId::parse("acme").unwrap(),
        ProductId::parse("cad.pro").unwrap(),
    );
    let first = world.ledger.issue(&acme, &product, 2, 360).await.unwrap();
    world
        .ledger
        .acquire(first, &user("alice"), &hw("a"))
        .await
        .unwrap()
        .expect("granted");
    world.published(2).await;
    let mut held = consumer.fetch().max_messages(10).messages().await.unwrap();
    let mut pulled = 0;
    while let Some(message) = held.next().await {
        message.unwrap();
        pulled += 1;
    }
    assert_eq!(pulled, 2, "A holds both events of the first license");

    // Instance B applies and acks the second license's events.
    let second = world.ledger.issue(&acme, &product, 2, 360).await.unwrap();
    world
        .ledger
        .acquire(second, &user("bob"), &hw("b"))
        .await
        .unwrap()
        .expect("granted");
    world.published(4).await;
    let task = world.start_projector(world.projection.clone(), CancellationToken::new());
    world.tasks.push(task);

    // B's acks covered only B's messages: A's are redelivered (after the
    // ack wait) and applied.
    let started = Instant::now();
    loop {
        let usage = |license: events::ids::LicenseId| {
            let projection = world.projection.clone();
            async move {
                projection
                    .usage(license.as_uuid())
                    .await
                    .unwrap()
                    .map(|u| u.in_use)
            }
        };
        if usage(first).await == Some(1) && usage(second).await == Some(1) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "the events A held were never applied: an ack covered them"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    world.cleanup().await;
}
