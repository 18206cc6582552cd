//! Publication: every event reaches JetStream exactly once per event id, in
//! per-license order, even when the publisher is killed mid-stream.

use crate::harness::{self, jetstream, Names};
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use events::ids::{HardwareId, ProductId, TenantId, UserId};
use futures::StreamExt;
use licensed::app::Components;
use licensed::service::{Actor, Licenses};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

async fn workload(licenses: Arc<Licenses>, rounds: usize) {
    let admin = Actor {
        tenant: TenantId::parse("acme").unwrap(),
        user: UserId::parse("boss").unwrap(),
        admin: true,
        groups: Vec::new(),
        correlation_id: None,
    };
    let mut ids = Vec::new();
    for _ in 0..3 {
        let state = licenses
            .issue(&admin, ProductId::parse("cad").unwrap(), 4, 360, None)
            .await
            .unwrap();
        ids.push(state.issued.unwrap().license_id);
    }
    for i in 0..rounds {
        let user = Actor {
            tenant: admin.tenant.clone(),
            user: UserId::parse(&format!("u{}", i % 7)).unwrap(),
            admin: false,
            groups: Vec::new(),
            correlation_id: None,
        };
        let license = ids[i % ids.len()];
        if let licensed::service::Acquisition::Granted { session_id, .. } = licenses
            .acquire(
                &user,
                license,
                HardwareId::parse(&format!("hw{i}")).unwrap(),
                None,
            )
            .await
            .unwrap()
        {
            licenses.heartbeat(&user, session_id).await.unwrap();
            if i % 2 == 0 {
                licenses.release(&user, session_id).await.unwrap();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_event_reaches_jetstream_once_in_order_across_a_publisher_crash() {
    let db = events::testing::TestDb::new().await;
    let names = Names::random();
    let config = harness::config(&db, &names).await;
    let publish = Components {
        publish: true,
        ..Components::default()
    };
    let first = harness::start(config.clone(), publish).await;

    let licenses = Arc::new(Licenses::new(db.store()));
    let work = tokio::spawn(workload(licenses, 120));
    tokio::time::sleep(Duration::from_millis(400)).await;
    first.task.abort(); // a crash: no graceful shutdown, the checkpoint may lag what was published
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = harness::start(config, publish).await;
    work.await.unwrap();

    let total = harness::total_events(&db).await as u64;
    let js = jetstream().await;
    let mut stream = js.get_stream(&names.stream).await.unwrap();
    let mut published = 0;
    for _ in 0..100 {
        published = stream.info().await.unwrap().state.messages;
        if published >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(published, total, "every event once on JetStream");

    let consumer = stream
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut seen = HashSet::new();
    let mut versions: HashMap<String, i64> = HashMap::new();
    let mut last_position = 0;
    for _ in 0..total {
        let m = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let e: Value = serde_json::from_slice(&m.payload).unwrap();
        let id = e["event_id"].as_str().unwrap().to_owned();
        assert_eq!(
            m.headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.as_str().to_owned()),
            Some(id.clone())
        );
        assert!(seen.insert(id), "an event id twice");
        let position = e["position"].as_i64().unwrap();
        assert!(position > last_position, "position order");
        last_position = position;
        let stream_name = e["stream"].as_str().unwrap().to_owned();
        let v = e["stream_version"].as_i64().unwrap();
        let prev = versions.insert(stream_name.clone(), v);
        assert_eq!(
            prev.map_or(0, |p| p + 1),
            v,
            "per-stream order on {stream_name}"
        );
        let subject = m.subject.to_string();
        assert!(
            subject.starts_with(&format!("{}.acme.", names.prefix)) || stream_name == "checkpoints",
            "{subject}"
        );
        assert!(subject.ends_with(e["type"].as_str().unwrap()));
    }
    second.stop().await;
    harness::delete_stream(&names.stream).await;
    db.drop_schema().await;
}

/// The backend holding the single-active lock named `name`, if any.
async fn lock_holder(db: &events::testing::TestDb, name: &str) -> Option<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1
           AND objid = (hashtext($1)::bigint & 4294967295)::oid",
    )
    .bind(name)
    .fetch_optional(&db.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_publisher_whose_lock_connection_dies_stops_and_the_standby_takes_over() {
    let db = events::testing::TestDb::new().await;
    let names = Names::random();
    let config = publisher::PublisherConfig {
        stream: names.stream.clone(),
        subject_prefix: names.prefix.clone(),
    };
    let js = jetstream().await;
    let start = |stop: tokio_util::sync::CancellationToken| {
        let (store, js, config) = (db.store(), js.clone(), config.clone());
        tokio::spawn(async move { publisher::run(store, js, config, |_| {}, stop).await })
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let first = start(stop.clone());
    let name = config.checkpoint_name();
    let mut holder = None;
    for _ in 0..100 {
        holder = lock_holder(&db, &name).await;
        if holder.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let held_by_first = holder.expect("the first publisher took the lock");
    let second = start(stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        lock_holder(&db, &name).await,
        Some(held_by_first),
        "the second one waits"
    );

    // When the first one's lock connection dies
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(held_by_first)
        .execute(&db.pool)
        .await
        .unwrap();
    // Then it stops publishing (an error for its supervisor to restart it as a standby) ...
    let ended = tokio::time::timeout(Duration::from_secs(15), first)
        .await
        .expect("the first publisher noticed it lost the lock")
        .unwrap();
    assert!(ended.is_err(), "it stops with an error, not silently");
    // ... and exactly one publisher, the second, is active.
    let mut now_held = None;
    for _ in 0..100 {
        now_held = lock_holder(&db, &name).await;
        if now_held.is_some_and(|pid| pid != held_by_first) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        now_held.is_some_and(|pid| pid != held_by_first),
        "the standby took over"
    );
    assert!(!second.is_finished());
    stop.cancel();
    let _ = second.await;
    harness::delete_stream(&names.stream).await;
    db.drop_schema().await;
}
