//! Invariant 6: live processing equals a rebuild from the log; a flushed
//! prefix is restored by the running projector without help.

use crate::common::*;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_projection_equals_rebuild_and_survives_a_flush() {
    let mut world = World::new().await;
    world.start_both();
    let work = workload(&world.ledger).await;
    world.caught_up().await;

    // Given the live projection of the scripted workload
    let live = world.projection.dump().await.unwrap();
    assert!(
        live.len() >= 7,
        "expected license hashes, zsets, holders and sessions: {live:#?}"
    );
    assert_matches_fold(&world.ledger, &world.projection, &work.licenses).await;
    for session in &work.live {
        let fields = world
            .projection
            .session_fields(session.as_uuid())
            .await
            .unwrap()
            .expect("live session hash");
        assert!(fields.contains_key("deadline") && fields.contains_key("hardware"));
    }

    // When the log is replayed into a second prefix straight from Postgres
    let second = projection().await;
    let report = projections::rebuild(&world.store, &second).await.unwrap();
    assert_eq!(report.events as i64, world.event_count().await);
    let rebuilt = second.dump().await.unwrap();

    // Then both are equal key by key
    assert_same(&live, &rebuilt);
    second.reset().await.unwrap();

    // When the projection's keys are all deleted (a flush of this prefix)
    let deleted = world.projection.reset().await.unwrap();
    assert!(deleted > live.len());
    // Then the running projector notices and restores the full state unaided
    let started = Instant::now();
    loop {
        let now = world.projection.dump().await.unwrap();
        if now == live && world.projection.has_sentinel().await.unwrap() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "projection not restored after a flush"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And live consumption continues after the rebuild
    // (live[0] is a session of licenses[1], see `workload`)
    world
        .ledger
        .heartbeat(work.licenses[1], work.live[0])
        .await
        .unwrap();
    world.caught_up().await;
    assert_matches_fold(&world.ledger, &world.projection, &work.licenses).await;
    world.cleanup().await;
}
