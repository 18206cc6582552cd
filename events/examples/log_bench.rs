//! Event log benchmark: appends with expected version against a ceiling
//! measured in the same run (a plain `INSERT` of an identical row through
//! sqlx, same concurrency, each writer on a connection of its own). Prints
//! events/s and the ratio.
//!
//! Then the peers, in the same run, one event per append with an exact
//! expected version on distinct streams of one category: Message DB 1.3
//! (`write_message`; install it first with `scripts/message_db.sh`) and
//! postgres-es 0.5 (cqrs-es's Postgres repository, `persist`), next to ours
//! (group commit) and the plain INSERT; and tail-all read throughput of each.
//!
//! `cargo run --release -p events --example log_bench -- --seconds 3`

use clap::Parser;
use events::store::{
    connect, EventStore, ExpectedVersion, GroupCommitConfig, NewEvent, StreamAppend, MIGRATOR,
};
use futures::future::{BoxFuture, FutureExt};
use serde_json::json;
use sqlx::pool::PoolConnection;
use sqlx::{PgExecutor, PgPool, Postgres};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The allocator the service runs with (`src/main.rs`): the log is measured
/// as the service uses it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Message DB's database (`scripts/message_db.sh` installs it).
    #[arg(
        long,
        default_value = "postgres://postgres@127.0.0.1:5432/message_db_bench"
    )]
    message_db_url: String,
    /// Skip the peers.
    #[arg(long)]
    no_peers: bool,
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

/// One append (or insert) by writer `w`, its `n`th.
type Op = Arc<dyn Fn(usize, u64) -> BoxFuture<'static, ()> + Send + Sync>;

fn op<F, Fut>(f: F) -> Op
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    Arc::new(move |w, n| f(w, n).boxed())
}

/// One contender: `open` readies a slice (connections kept for it, a pool
/// opened for it and closed after it), `events_per_op` events per call.
struct Contender {
    open: Box<dyn Fn() -> BoxFuture<'static, (Op, Option<PgPool>)> + Send + Sync>,
    events_per_op: u64,
}

impl Contender {
    fn new<F, Fut>(events_per_op: u64, open: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = (Op, Option<PgPool>)> + Send + 'static,
    {
        Self {
            open: Box::new(move || open().boxed()),
            events_per_op,
        }
    }
}

/// Slices each measurement is cut into (see [`side_by_side`]).
const SLICES: usize = 6;

/// Events/s of each contender with `writers` tasks, `seconds` each in all.
/// The contenders take turns, `seconds / SLICES` at a time: the disk's
/// flush latency drifts over seconds on a shared machine, and a ratio
/// between two measurements taken one after the other would carry that
/// drift.
async fn side_by_side(writers: usize, seconds: f64, contenders: &[Contender]) -> Vec<f64> {
    let mut done = vec![0u64; contenders.len()];
    let mut spent = vec![0f64; contenders.len()];
    for round in 0..SLICES {
        for (c, contender) in contenders.iter().enumerate() {
            let (op, pool) = (contender.open)().await;
            let first = (round * 1_000_000) as u64;
            let (n, secs) = slice(
                writers,
                seconds / SLICES as f64,
                contender.events_per_op,
                op,
                first,
            )
            .await;
            if let Some(pool) = pool {
                pool.close().await;
            }
            done[c] += n;
            spent[c] += secs;
        }
    }
    done.iter()
        .zip(&spent)
        .map(|(&n, &secs)| n as f64 / secs)
        .collect()
}

/// Runs `writers` tasks calling `op` for `seconds`; events done and the time
/// taken.
async fn slice(writers: usize, seconds: f64, events_per_op: u64, op: Op, first: u64) -> (u64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (op, stop, done) = (op.clone(), stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = first;
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
    (done.load(Ordering::Relaxed), start.elapsed().as_secs_f64())
}

/// One connection per writer, kept for a slice: sqlx pings a connection
/// each time it goes back to the pool, a round trip the group committer
/// does not pay either (it keeps its own).
type Held = Arc<Vec<tokio::sync::Mutex<PoolConnection<Postgres>>>>;

async fn held(pool: &PgPool, writers: usize) -> Held {
    let mut held = Vec::with_capacity(writers);
    for _ in 0..writers {
        held.push(tokio::sync::Mutex::new(
            pool.acquire().await.expect("a connection per writer"),
        ));
    }
    Arc::new(held)
}

/// The ceiling: `rows` identical rows in one plain INSERT statement (autocommit).
async fn plain_insert(db: impl PgExecutor<'_>, rows: usize) {
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
    q.execute(db).await.expect("plain insert");
}

/// The ceiling: plain INSERTs of `batch` rows, each writer on a connection
/// of its own, taken from `pool` (or from a pool `level` opens) per slice.
fn insert_contender<F, Fut>(writers: usize, batch: usize, level: F) -> Contender
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = (PgPool, bool)> + Send + 'static,
{
    let level = Arc::new(level);
    Contender::new(batch as u64, move || {
        let level = level.clone();
        async move {
            let (pool, own) = level().await;
            let conns = held(&pool, writers).await;
            let insert = op(move |w, _| {
                let conns = conns.clone();
                async move { plain_insert(&mut **conns[w].lock().await, batch).await }
            });
            (insert, own.then_some(pool))
        }
    })
}

/// Ours: appends with the expected version, one stream per writer, through
/// `store` (or a group-committing store on a pool `level` opens per slice).
fn append_contender<F, Fut>(writers: usize, batch: usize, level: F) -> Contender
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = (EventStore, Option<PgPool>)> + Send + 'static,
{
    let run = Uuid::new_v4().simple().to_string();
    let versions: Arc<Vec<AtomicU64>> = Arc::new((0..writers).map(|_| AtomicU64::new(0)).collect());
    let level = Arc::new(level);
    Contender::new(batch as u64, move || {
        let (level, versions, run) = (level.clone(), versions.clone(), run.clone());
        async move {
            let (store, pool) = level().await;
            (append_op(store, versions, run, batch), pool)
        }
    })
}

fn append_op(store: EventStore, versions: Arc<Vec<AtomicU64>>, run: String, batch: usize) -> Op {
    op(move |w, _| {
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
}

/// postgres-es needs an aggregate type to name its rows; this one only names them.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Bench;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
struct Beat(serde_json::Value);

impl cqrs_es::DomainEvent for Beat {
    fn event_type(&self) -> String {
        "HeartbeatRecorded".into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the benchmark aggregate takes no commands")]
struct NoCommands;

impl cqrs_es::Aggregate for Bench {
    const TYPE: &'static str = "bench";
    type Command = ();
    type Event = Beat;
    type Error = NoCommands;
    type Services = ();

    async fn handle(
        &mut self,
        _: (),
        _: &(),
        _: &cqrs_es::event_sink::EventSink<Self>,
    ) -> Result<(), NoCommands> {
        Err(NoCommands)
    }

    fn apply(&mut self, _: Beat) {}
}

/// Message DB: `write_message` with the expected version, one stream per
/// writer in the category `bench` (Message DB takes one advisory lock per
/// category, which is how it serialises a category's writers).
fn message_db_contender<F, Fut>(writers: usize, open: F) -> Contender
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = PgPool> + Send + 'static,
{
    let run = Uuid::new_v4().simple().to_string();
    let versions: Arc<Vec<AtomicU64>> = Arc::new((0..writers).map(|_| AtomicU64::new(0)).collect());
    let open = Arc::new(open);
    Contender::new(1, move || {
        let (open, versions, run) = (open.clone(), versions.clone(), run.clone());
        async move {
            let pool = open().await;
            let conns = held(&pool, writers).await;
            let write = op(move |w, n| {
                let (conns, versions) = (conns.clone(), versions.clone());
                let stream = format!("bench-{run}x{w}");
                async move {
                    let next = versions[w].load(Ordering::Relaxed) as i64;
                    let e = new_event(n);
                    sqlx::query("SELECT message_store.write_message($1, $2, $3, $4, $5, $6)")
                        .bind(e.event_id.to_string())
                        .bind(&stream)
                        .bind(&e.event_type)
                        .bind(&e.data)
                        .bind(&e.metadata)
                        .bind(next - 1)
                        .execute(&mut **conns[w].lock().await)
                        .await
                        .expect("write_message");
                    versions[w].fetch_add(1, Ordering::Relaxed);
                }
            });
            (write, Some(pool))
        }
    })
}

/// postgres-es: `persist` of one event with the next sequence (its primary
/// key is the concurrency check), one aggregate per writer.
fn postgres_es_contender<F, Fut>(writers: usize, open: F) -> Contender
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = PgPool> + Send + 'static,
{
    use cqrs_es::persist::{PersistedEventRepository, SerializedEvent};
    let run = Uuid::new_v4().simple().to_string();
    let versions: Arc<Vec<AtomicU64>> = Arc::new((0..writers).map(|_| AtomicU64::new(0)).collect());
    let open = Arc::new(open);
    Contender::new(1, move || {
        let (open, versions, run) = (open.clone(), versions.clone(), run.clone());
        async move {
            let pool = open().await;
            // Connections opened before the slice, as for the others.
            drop(held(&pool, writers).await);
            let repo = Arc::new(
                postgres_es::PostgresEventRepository::new(pool.clone())
                    .with_tables("es_events", "es_snapshots"),
            );
            let persist = op(move |w, n| {
                let (repo, versions) = (repo.clone(), versions.clone());
                let id = format!("{run}x{w}");
                async move {
                    let sequence = versions[w].load(Ordering::Relaxed) as usize + 1;
                    let e = new_event(n);
                    let event = SerializedEvent::new(
                        id,
                        sequence,
                        <Bench as cqrs_es::Aggregate>::TYPE.into(),
                        e.event_type,
                        "1".into(),
                        e.data,
                        e.metadata,
                    );
                    repo.persist::<Bench>(&[event], None)
                        .await
                        .expect("postgres-es persist");
                    versions[w].fetch_add(1, Ordering::Relaxed);
                }
            });
            (persist, Some(pool))
        }
    })
}

/// Events/s of reading a whole log in position order, `page` rows at a time.
async fn read_rate<F, Fut>(mut page: F) -> (u64, f64)
where
    F: FnMut(i64) -> Fut,
    Fut: std::future::Future<Output = Vec<i64>>,
{
    let start = Instant::now();
    let (mut cursor, mut total) = (0i64, 0u64);
    loop {
        let positions = page(cursor).await;
        let Some(last) = positions.last() else { break };
        cursor = *last;
        total += positions.len() as u64;
    }
    (total, total as f64 / start.elapsed().as_secs_f64())
}

async fn peers(args: &Args, schema: &str) -> anyhow::Result<()> {
    // Each level opens only the connections it needs (Postgres allows 100).
    let mdb_options = args
        .message_db_url
        .parse::<sqlx::postgres::PgConnectOptions>()?
        .options([("search_path", "message_store,public")]);
    let mdb_pool = move |n: u32| {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(n)
            .connect_with(mdb_options.clone())
    };
    let mdb = match mdb_pool(2).await {
        Ok(mdb) => mdb,
        Err(err) => {
            println!("\nMessage DB not reachable at {} ({err}): run scripts/message_db.sh; peers skipped", args.message_db_url);
            return Ok(());
        }
    };
    let mdb_version: String = sqlx::query_scalar("SELECT message_store.message_store_version()")
        .fetch_one(&mdb)
        .await?;
    sqlx::query("TRUNCATE message_store.messages")
        .execute(&mdb)
        .await?;
    let pool = connect(&args.database_url, Some(schema), 2).await?;
    sqlx::query(
        "CREATE TABLE es_events (aggregate_type text NOT NULL, aggregate_id text NOT NULL,
           sequence bigint CHECK (sequence >= 0) NOT NULL, event_type text NOT NULL,
           event_version text NOT NULL, payload json NOT NULL, metadata json NOT NULL,
           PRIMARY KEY (aggregate_type, aggregate_id, sequence))",
    )
    .execute(&pool)
    .await?;
    println!("\nPeers, one event per append with an exact expected version, distinct streams (events/s; Message DB {mdb_version}, postgres-es 0.5):\n");
    println!("| writers | plain INSERT | Message DB | postgres-es | ours, group commit | ours / Message DB | ours / postgres-es | ours / INSERT |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &writers in &args.writers {
        // Each contender's connections are open only during its slices
        // (Postgres allows 100).
        let n = writers as u32 + 4;
        let (url, sch) = (args.database_url.clone(), schema.to_owned());
        let level = move || {
            let (url, sch) = (url.clone(), sch.clone());
            async move { connect(&url, Some(&sch), n).await.expect("connect") }
        };
        let (insert_level, es_level) = (level.clone(), level.clone());
        let group_writers = args.group_writers;
        let mdb_open = mdb_pool.clone();
        let rates = side_by_side(
            writers,
            args.seconds,
            &[
                insert_contender(writers, 1, move || {
                    let level = insert_level.clone();
                    async move { (level().await, true) }
                }),
                message_db_contender(writers, move || {
                    let open = mdb_open.clone();
                    async move { open(n).await.expect("connect to Message DB") }
                }),
                postgres_es_contender(writers, es_level),
                append_contender(writers, 1, move || {
                    let level = level.clone();
                    async move {
                        let pool = level().await;
                        let config = GroupCommitConfig {
                            writers: group_writers,
                            ..GroupCommitConfig::default()
                        };
                        (
                            EventStore::with_group_commit(pool.clone(), config),
                            Some(pool),
                        )
                    }
                }),
            ],
        )
        .await;
        let [ceiling, message_db, es, ours] = rates[..] else {
            unreachable!("four contenders")
        };
        println!(
            "| {writers} | {ceiling:.0} | {message_db:.0} | {es:.0} | {ours:.0} | {:.2}x | {:.2}x | {:.2}x |",
            ours / message_db,
            ours / es,
            ours / ceiling
        );
    }

    // Tail-all reads of what each wrote above, 1000 rows a page in global order.
    let store = EventStore::new(pool.clone());
    let (n_ours, ours) = read_rate(|after| {
        let store = store.clone();
        async move {
            store
                .read_all(after, 1000)
                .await
                .expect("read_all")
                .iter()
                .map(|e| e.position)
                .collect()
        }
    })
    .await;
    let (n_mdb, mdb_rate) = read_rate(|after| {
        let mdb = mdb.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT global_position FROM (SELECT * FROM get_category_messages('bench', $1 + 1, 1000)) AS m",
            )
            .bind(after)
            .fetch_all(&mdb)
            .await
            .expect("get_category_messages")
        }
    })
    .await;
    // postgres-es has no global order to tail from: its replay of every event of the type.
    let repo = postgres_es::PostgresEventRepository::new(pool.clone())
        .with_tables("es_events", "es_snapshots");
    let start = Instant::now();
    let mut replay = {
        use cqrs_es::persist::PersistedEventRepository;
        repo.stream_all_events::<Bench>().await?
    };
    let mut n_es = 0u64;
    while let Some(event) = replay.next::<Bench>(&[]).await {
        event?;
        n_es += 1;
    }
    let es_rate = n_es as f64 / start.elapsed().as_secs_f64();
    println!("\nReads of everything written above, in order (events/s):\n");
    println!("| log | how | events | events/s |");
    println!("|---|---|---:|---:|");
    println!("| ours | `read_all`, 1000 a page, by position | {n_ours} | {ours:.0} |");
    println!(
        "| Message DB | `get_category_messages('bench')`, 1000 a page | {n_mdb} | {mdb_rate:.0} |"
    );
    println!("| postgres-es | `stream_all_events` (a replay: no position to resume from) | {n_es} | {es_rate:.0} |");
    sqlx::query("TRUNCATE message_store.messages")
        .execute(&mdb)
        .await?;
    mdb.close().await;
    Ok(())
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
            let shared = pool.clone();
            let (direct, grouped) = (pool.clone(), pool.clone());
            let group_writers = args.group_writers;
            let rates = side_by_side(
                writers,
                args.seconds,
                &[
                    insert_contender(writers, batch, move || {
                        let pool = shared.clone();
                        async move { (pool, false) }
                    }),
                    append_contender(writers, batch, move || {
                        let store = EventStore::new(direct.clone());
                        async move { (store, None) }
                    }),
                    {
                        let store = EventStore::with_group_commit(
                            grouped,
                            GroupCommitConfig {
                                writers: group_writers,
                                ..GroupCommitConfig::default()
                            },
                        );
                        append_contender(writers, batch, move || {
                            let store = store.clone();
                            async move { (store, None) }
                        })
                    },
                ],
            )
            .await;
            let [ceiling, direct, grouped] = rates[..] else {
                unreachable!("three contenders")
            };
            println!(
                "| {writers} | {batch} | {ceiling:.0} | {direct:.0} | {:.2}x | {grouped:.0} | {:.2}x |",
                direct / ceiling,
                grouped / ceiling
            );
        }
    }
    if !args.no_peers {
        pool.close().await;
        peers(&args, &schema).await?;
    }
    let pool = connect(&args.database_url, Some(&schema), 2).await?;
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
