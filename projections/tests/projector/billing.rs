//! The billing consumer's seat-hours equal a computation from the log.

use crate::common::*;
use events::catalog::LicenseEvent;
use projections::billing::{consume, SeatHours};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

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
    let mut seat_hours = SeatHours::default();
    let mut handled = 0;
    while handled < count {
        handled += consume(
            &world.js,
            &world.stream,
            &world.subjects,
            "billing",
            Some(Duration::from_secs(2)),
            &mut seat_hours,
        )
        .await
        .unwrap();
    }
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
            LicenseEvent::SeatReleased { session_id }
            | LicenseEvent::SessionExpired { session_id, .. } => {
                let began = start.remove(&session_id).unwrap();
                *want.entry(tenant).or_default() +=
                    (recorded.recorded_at - began).num_microseconds().unwrap();
            }
            _ => {}
        }
    }
    assert_eq!(seat_hours.seat_micros(), &want);
    assert_eq!(seat_hours.open_sessions(), start.len());
    assert_eq!(seat_hours.sessions_closed().values().sum::<u64>(), 4);
    world.cleanup().await;
}
