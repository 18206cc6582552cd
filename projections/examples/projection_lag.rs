//! Projection lag benchmark: commit -> Redis, under a steady heartbeat load.
//!
//! Drives heartbeat events at a steady rate straight into an `EventStore`
//! with group commit (sessions set up through `events::testing::Ledger`), publishes them with the real publisher
//! to JetStream and projects them with `projections::run`, then prints the
//! p50/p99/max lag between each event's `recorded_at` (taken just before its
//! commit) and the moment the projector applied it to Redis.
//!
//! ```sh
//! cargo run --release -p projections --example projection_lag -- --rate 2000 --secs 20
//! ```
//! Uses a fresh Postgres schema, a random Redis prefix and a random
//! JetStream stream, all removed at the end.

use chrono::TimeDelta;
use clap::Parser;
use events::catalog::LicenseEvent;
use events::envelope::{new_event, now, Metadata};
use events::ids::{HardwareId, ProductId, SessionId, TenantId, UserId};
use events::store::{EventStore, ExpectedVersion, GroupCommitConfig};
use events::testing::Ledger;
use events::testing::TestDb;
use projections::{ProjectorStats, RedisProjection};
use publisher::PublisherConfig;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Options.
#[derive(Debug, Parser)]
struct Args {
    /// Heartbeats per second.
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// Seconds of measured load (after a 2 s warm-up).
    #[arg(long, default_value_t = 20)]
    secs: u64,
    /// Live sessions heartbeating (round robin).
    #[arg(long, default_value_t = 500)]
    sessions: usize,
    /// NATS server.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// Redis server.
    #[arg(long, default_value = "redis://127.0.0.1:6379/")]
    redis_url: String,
}

/// Appends heartbeats at `rate`/s for `duration` straight to the session
/// streams (as the service's heartbeat would, minus its checks); returns how
/// many were sent and how many appends failed.
async fn drive(
    store: &EventStore,
    sessions: &[(serde_json::Value, SessionId)],
    rate: u64,
    duration: Duration,
) -> (u64, u64) {
    let tick = Duration::from_millis(10);
    let per_tick = (rate as f64 / 100.0).max(1.0);
    let mut interval = tokio::time::interval(tick);
    let (started, mut sent, mut owed, mut next, mut failed) =
        (Instant::now(), 0u64, 0.0f64, 0usize, 0u64);
    let mut inflight = tokio::task::JoinSet::new();
    while started.elapsed() < duration {
        interval.tick().await;
        owed += per_tick;
        while owed >= 1.0 {
            owed -= 1.0;
            let (metadata, session) = sessions[next % sessions.len()].clone();
            next += 1;
            let store = store.clone();
            inflight.spawn(async move {
                let event = LicenseEvent::HeartbeatRecorded {
                    session_id: session,
                    expires_at: now() + TimeDelta::seconds(3600),
                };
                store
                    .append_to(
                        &session.stream_name(),
                        ExpectedVersion::Any,
                        vec![new_event(&event, &metadata)],
                    )
                    .await
                    .map(|_| ())
            });
            sent += 1;
        }
        while let Some(done) = inflight.try_join_next() {
            failed += u64::from(done.expect("heartbeat task").is_err());
        }
    }
    while let Some(done) = inflight.join_next().await {
        failed += u64::from(done.expect("heartbeat task").is_err());
    }
    (sent, failed)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let db = TestDb::with_pool_size(32).await;
    let store = EventStore::with_group_commit(db.pool.clone(), GroupCommitConfig::default());
    let ledger = Ledger::new(store.clone());
    let seats = args.sessions as u32;
    let (tenant, product) = (TenantId::parse("bench")?, ProductId::parse("bench")?);
    let license_id = ledger.issue(&tenant, &product, seats, 3600).await?;
    let metadata = Metadata::license(tenant, license_id, product).to_value();
    let mut sessions = Vec::new();
    for i in 0..args.sessions {
        let user = UserId::parse(&format!("user{i}"))?;
        let hardware = HardwareId::parse(&format!("hw-{i}"))?;
        match ledger.acquire(license_id, &user, &hardware).await? {
            Some(session_id) => sessions.push((metadata.clone(), session_id)),
            None => anyhow::bail!("setup acquire denied"),
        }
    }

    let nats = async_nats::connect(&args.nats_url).await?;
    let js = async_nats::jetstream::new(nats);
    let name = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let config = PublisherConfig {
        stream: format!("BENCH_{}", name.to_uppercase()),
        subject_prefix: format!("bench{name}.events"),
    };
    let redis =
        redis::aio::ConnectionManager::new(redis::Client::open(args.redis_url.as_str())?).await?;
    let projection = RedisProjection::new(redis, format!("bench{name}:"));
    let stats = Arc::new(ProjectorStats::default());
    let stop = CancellationToken::new();
    publisher::ensure_stream(&js, &config).await?;
    let publisher = tokio::spawn(publisher::run(
        store.clone(),
        js.clone(),
        config.clone(),
        |_| {},
        stop.clone(),
    ));
    let projector = tokio::spawn(projections::run(
        store.clone(),
        js.clone(),
        config.stream.clone(),
        config.subject_prefix.clone(),
        projection.clone(),
        stats.clone(),
        stop.clone(),
    ));

    drive(&store, &sessions, args.rate, Duration::from_secs(2)).await; // warm-up
    wait_caught_up(&store, &stats).await?;
    stats.clear_lag();
    let started = Instant::now();
    let (sent, failed) = drive(&store, &sessions, args.rate, Duration::from_secs(args.secs)).await;
    let offered = sent as f64 / started.elapsed().as_secs_f64();
    wait_caught_up(&store, &stats).await?;
    let q = |q| {
        stats
            .lag_quantile_ms(q)
            .map_or("-".to_owned(), |v| v.to_string())
    };
    println!(
        "heartbeats: {sent} in {:.1} s ({offered:.0}/s, {failed} failed), sessions {}",
        started.elapsed().as_secs_f64(),
        args.sessions
    );
    println!(
        "commit -> Redis lag ms: p50 {} | p90 {} | p99 {} | max {}",
        q(0.5),
        q(0.9),
        q(0.99),
        q(1.0)
    );

    stop.cancel();
    let _ = publisher.await;
    let _ = projector.await;
    let _ = js.delete_stream(&config.stream).await;
    projection.reset().await?;
    db.drop_schema().await;
    Ok(())
}

async fn wait_caught_up(store: &EventStore, stats: &ProjectorStats) -> anyhow::Result<()> {
    let head = store.head_position().await?;
    let started = Instant::now();
    while stats.last_position.load(Ordering::Relaxed) < head {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "projector did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
