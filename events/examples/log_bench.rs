//! Event log benchmark: appends with expected version against a ceiling
//! measured in the same run (a plain `INSERT` of an identical row through
//! sqlx, same concurrency). Prints events/s and the ratio.
//!
//! `cargo run --release -p events --example log_bench -- --seconds 3`

use clap::Parser;
use events::store::{
    connect, EventStore, ExpectedVersion, GroupCommitConfig, NewEvent, StreamAppend, MIGRATOR,
};
use serde_json::json;
use sqlx::PgPool;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

#[derive(Parser)]
struct Args {
    /// Postgres URL.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    database_url: String,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Concurrency levels.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    writers: Vec<usize>,
    /// Writer tasks of the group committer.
    #[arg(long, default_value_t = GroupCommitConfig::default().writers)]
    group_writers: usize,
    /// Events per batched append.
    #[arg(long, default_value_t = 10)]
    batch: usize,
}

fn new_event(n: u64) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "HeartbeatRecorded".into(),
        schema_version: 1,
        data: json!({ "session_id": Uuid::new_v4(), "expires_at": "2026-11-23T12:00:00Z", "n": n }),
        metadata: json!({ "tenant_id": "acme", "license_id": Uuid::new_v4() }),
    }
}

/// Runs `writers` tasks calling `op` until time is up; returns events/s.
async fn measure<F, Fut>(writers: usize, seconds: f64, events_per_op: u64, op: F) -> f64
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (op, stop, done) = (op.clone(), stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                op(w, i).await;
                i += 1;
                done.fetch_add(events_per_op, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("writer task");
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// The ceiling: `rows` identical rows in one plain INSERT statement (autocommit).
async fn plain_insert(pool: &PgPool, rows: usize) {
    let mut sql = String::from(
        "INSERT INTO plain_events (event_id, stream_id, stream_version, event_type, schema_version, data, metadata, \
         recorded_at, prev_hash, hash) VALUES ",
    );
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        let b = r * 6;
        sql.push_str(&format!(
            "(${}, 'bench', ${}, 'HeartbeatRecorded', 1, ${}, ${}, now(), ${}, ${})",
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5,
            b + 6
        ));
    }
    let mut q = sqlx::query(&sql);
    for r in 0..rows {
        let e = new_event(r as u64);
        q = q
            .bind(e.event_id)
            .bind(r as i64)
            .bind(e.data)
            .bind(e.metadata)
            .bind([0u8; 32].as_slice())
            .bind([1u8; 32].as_slice());
    }
    q.execute(pool).await.expect("plain insert");
}

async fn append_run(store: EventStore, writers: usize, seconds: f64, batch: usize) -> f64 {
    let run = Uuid::new_v4().simple().to_string();
    let versions: Arc<Vec<AtomicU64>> = Arc::new((0..writers).map(|_| AtomicU64::new(0)).collect());
    measure(writers, seconds, batch as u64, move |w, _| {
        let store = store.clone();
        let versions = versions.clone();
        let stream = format!("bench-{run}-{w}");
        async move {
            let next = versions[w].load(Ordering::Relaxed);
            let expected = if next == 0 {
                ExpectedVersion::NoStream
            } else {
                ExpectedVersion::Exact(next as i64 - 1)
            };
            let events = (0..batch).map(|i| new_event(i as u64)).collect();
            store
                .append(vec![StreamAppend::new(stream, expected, events)])
                .await
                .expect("append");
            versions[w].fetch_add(batch as u64, Ordering::Relaxed);
        }
    })
    .await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let schema = format!("bench_{}", Uuid::new_v4().simple());
    let admin = connect(&args.database_url, None, 1).await?;
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await?;
    let max = args.writers.iter().copied().max().unwrap_or(1) as u32 + 8;
    let pool = connect(&args.database_url, Some(&schema), max).await?;
    MIGRATOR.run(&pool).await?;
    sqlx::query("CREATE TABLE plain_events (LIKE events INCLUDING DEFAULTS INCLUDING IDENTITY)")
        .execute(&pool)
        .await?;
    sqlx::query("ALTER TABLE plain_events ADD PRIMARY KEY (position), ADD UNIQUE (event_id)")
        .execute(&pool)
        .await?;

    println!("| writers | events/append | ceiling: plain INSERT (ev/s) | append, tx per call (ev/s) | ratio | append, group commit (ev/s) | ratio |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for &writers in &args.writers {
        for batch in [1, args.batch] {
            let p = pool.clone();
            let ceiling = measure(writers, args.seconds, batch as u64, move |_, _| {
                let p = p.clone();
                async move { plain_insert(&p, batch).await }
            })
            .await;
            let direct =
                append_run(EventStore::new(pool.clone()), writers, args.seconds, batch).await;
            let grouped_store = EventStore::with_group_commit(
                pool.clone(),
                GroupCommitConfig {
                    writers: args.group_writers,
                    ..GroupCommitConfig::default()
                },
            );
            let grouped = append_run(grouped_store, writers, args.seconds, batch).await;
            println!(
                "| {writers} | {batch} | {ceiling:.0} | {direct:.0} | {:.2}x | {grouped:.0} | {:.2}x |",
                direct / ceiling,
                grouped / ceiling
            );
        }
    }
    let report = EventStore::new(pool.clone()).verify_all().await?;
    println!(
        "\nverify_all after the run: {} events in {} streams, intact: {}",
        report.events,
        report.streams,
        report.is_intact()
    );
    pool.close().await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin)
        .await?;
    Ok(())
}
