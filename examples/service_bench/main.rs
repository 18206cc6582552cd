//! Service benchmark: heartbeats and acquires over HTTP against the whole
//! system in this process (API, publisher, signer, reaper; real Postgres and
//! NATS), each next to a ceiling measured in the same run:
//!
//! * heartbeat throughput vs. a plain single-row durable `INSERT` at the same
//!   concurrency (the raw Postgres ceiling);
//! * acquire throughput vs. RSA-4096 RS256 signing on every core (the raw
//!   signing ceiling);
//! * p50/p99 latency at half of the measured maximum rate;
//! * heartbeats spread over two API instances sharing the database;
//! * history: the first heartbeat of a session with 100 000 earlier
//!   heartbeats at an instance that never saw it, against a fresh session's,
//!   and loading a license stream of 1 000 000 events from its snapshot
//!   against folding it whole.
//!
//! `cargo run --release --example service_bench -- --seconds 5`
//!
//! The load generator shares the machine with the service (and Postgres and
//! NATS), as a client on the same host would.

mod cpu;

use clap::Parser;
use licensed::app::{App, Components};
use licensed::auth::dev_issuer::{DevIssuer, DEV_AUDIENCE, DEV_ISSUER};
use licensed::config::Config;
use licensed::signer::LocalPemSigner;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// mimalloc instead of glibc's malloc: allocation was 30 % of the service's
/// CPU on the heartbeat path, part of it waiting on glibc's arena lock
/// (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Concurrent heartbeat clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Concurrent acquire clients.
    #[arg(long, default_value_t = 16)]
    acquire_clients: usize,
    /// Earlier heartbeats of the long-lived session (history section).
    #[arg(long, default_value_t = 100_000)]
    history_heartbeats: usize,
    /// Events of the long license stream (history section; 0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    license_events: usize,
}

/// Latencies of one run.
#[derive(Default)]
struct Samples(Mutex<Vec<Duration>>);

impl Samples {
    fn push(&self, d: Duration) {
        self.0.lock().unwrap().push(d);
    }
    fn percentile(&self, p: f64) -> f64 {
        let mut v = self.0.lock().unwrap().clone();
        if v.is_empty() {
            return f64::NAN;
        }
        v.sort_unstable();
        let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
        v[i].as_secs_f64() * 1e3
    }
}

/// Runs `clients` loops of `op` for `seconds` (optionally paced to `rate`/s in total); returns ops/s.
async fn drive<F, Fut>(
    clients: usize,
    seconds: f64,
    rate: Option<f64>,
    samples: Arc<Samples>,
    op: F,
) -> f64
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (op, stop, done, samples) = (op.clone(), stop.clone(), done.clone(), samples.clone());
        tasks.push(tokio::spawn(async move {
            let interval = rate.map(|r| Duration::from_secs_f64(clients as f64 / r));
            let mut next = Instant::now();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                if let Some(iv) = interval {
                    tokio::time::sleep_until(next.into()).await;
                    next += iv;
                }
                let t = Instant::now();
                if op(c, i).await {
                    samples.push(t.elapsed());
                    done.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// Issues a license of 100 000 seats; its id.
async fn issue_license(http: &reqwest::Client, base: &str, admin: &str) -> anyhow::Result<String> {
    let license: serde_json::Value = http
        .post(format!("{base}/api/v1/admin/licenses"))
        .bearer_auth(admin)
        .json(&json!({"product": "bench", "seats": 100000, "session_ttl_secs": 3600}))
        .send()
        .await?
        .json()
        .await?;
    match license["license_id"].as_str() {
        Some(id) => Ok(id.to_owned()),
        None => anyhow::bail!("issuing the benchmark's license failed: {license}"),
    }
}

/// Median of `n` timed runs of `op`, in milliseconds.
async fn median_ms<F, Fut>(n: usize, mut op: F) -> anyhow::Result<f64>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        op(i).await?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[n / 2])
}

/// Cost independent of history: what a cold instance pays for a long-lived
/// session's heartbeat and for a long license stream, each next to a fresh one.
async fn history(
    args: &Args,
    db: &events::testing::TestDb,
    sessions: &[(String, String)],
    license_id: &str,
) -> anyhow::Result<()> {
    use events::aggregate;
    use events::catalog::LicenseEvent;
    use events::envelope::{new_event, Metadata};
    use events::ids::{HardwareId, LicenseId, ProductId, SessionId, TenantId, UserId};
    use events::license::LicenseState;
    use events::session::SessionState;
    use events::store::{EventStore, ExpectedVersion};
    use licensed::service::{Actor, Licenses};

    let store = EventStore::new(db.pool.clone());
    let license = LicenseId::from_uuid(license_id.parse()?);
    let meta = Metadata::license(
        TenantId::parse("bench")?,
        license,
        ProductId::parse("bench")?,
    )
    .to_value();
    let actor = |c: usize| -> anyhow::Result<Actor> {
        Ok(Actor {
            tenant: TenantId::parse("bench")?,
            user: UserId::parse(&format!("hb-{c}"))?,
            admin: false,
            correlation_id: None,
            groups: Vec::new(),
        })
    };
    let (old, fresh): (Vec<usize>, Vec<usize>) = (0..sessions.len()).partition(|c| c % 2 == 0);
    let (old, fresh) = (&old[..old.len().min(8)], &fresh[..fresh.len().min(8)]);
    // Earlier heartbeats of the "old" sessions, 1000 per append, and the
    // snapshot a replica leaves when it folds them (every 1000 events).
    let deadline = chrono::Utc::now() + chrono::TimeDelta::hours(1);
    for &c in old {
        let session = SessionId::from_uuid(sessions[c].1.parse()?);
        let stream = session.stream_name();
        let mut version = store.stream_version(&stream).await?.unwrap_or(-1);
        let beat = LicenseEvent::HeartbeatRecorded {
            session_id: session,
            expires_at: deadline,
        };
        let mut left = args.history_heartbeats;
        while left > 0 {
            let n = left.min(1000);
            let events = (0..n).map(|_| new_event(&beat, &meta)).collect();
            let r = store
                .append_to(&stream, ExpectedVersion::after(version), events)
                .await?;
            version = r.version_of(&stream).unwrap_or(version);
            left -= n;
        }
        let _: SessionState = aggregate::load(&store, &stream).await?;
    }
    // The first heartbeat of each session at an instance that never saw it.
    let cold = |c: usize| {
        let pool = db.pool.clone();
        let session = sessions[c].1.clone();
        async move {
            let licenses = Licenses::new(EventStore::with_group_commit(pool, Default::default()));
            let session = SessionId::from_uuid(session.parse()?);
            licenses.heartbeat(&actor(c)?, session).await?;
            anyhow::Ok(())
        }
    };
    let old_ms = median_ms(old.len(), |i| cold(old[i])).await?;
    let fresh_ms = median_ms(fresh.len(), |i| cold(fresh[i])).await?;
    println!(
        "\n| history | measured | baseline (same run) | ratio | target |\n|---|---:|---:|---:|---|"
    );
    println!(
        "| first heartbeat at a cold instance, session with {} earlier heartbeats (median of {}) | {old_ms:.2} ms | {fresh_ms:.2} ms, a fresh session's | {:.2}x | <= 1.5x |",
        args.history_heartbeats, old.len(), old_ms / fresh_ms
    );

    if args.license_events > 0 {
        // A long license stream: denials are cheap to fold and change no seat.
        let long = LicenseId::new();
        let stream = long.stream_name();
        let issued = LicenseEvent::LicenseIssued {
            tenant_id: TenantId::parse("bench")?,
            license_id: long,
            product: ProductId::parse("bench")?,
            seats: 10,
            session_ttl_secs: 3600,
            valid_until: None,
            token_ttl_secs: None,
            strict_seats: false,
        };
        let denied = LicenseEvent::AcquireDenied {
            user_id: UserId::parse("someone")?,
            hardware_id: HardwareId::parse("hw")?,
            reason: events::catalog::DenialReason::NoSeats,
            policy_version: 0,
        };
        store
            .append_to(
                &stream,
                ExpectedVersion::NoStream,
                vec![new_event(&issued, &meta)],
            )
            .await?;
        let (mut version, mut left) = (0i64, args.license_events - 1);
        while left > 0 {
            let n = left.min(5000);
            let events = (0..n).map(|_| new_event(&denied, &meta)).collect();
            let r = store
                .append_to(&stream, ExpectedVersion::Exact(version), events)
                .await?;
            version = r.version_of(&stream).unwrap_or(version);
            left -= n;
        }
        let _: LicenseState = aggregate::load(&store, &stream).await?; // leaves the snapshot
        let load = |snapshots: i64| {
            let (pool, stream) = (db.pool.clone(), stream.clone());
            async move {
                let cold = EventStore::new(pool).with_snapshot_every(snapshots);
                let t = Instant::now();
                let _: LicenseState = aggregate::load(&cold, &stream).await?;
                anyhow::Ok((t.elapsed().as_secs_f64() * 1e3, cold.stream_events_read()))
            }
        };
        let (snap_ms, snap_read) = load(1000).await?;
        let removed = store.drop_snapshots().await?;
        let (whole_ms, whole_read) = load(0).await?;
        println!(
            "| loading a license of {} events at a cold instance | {snap_ms:.1} ms, {snap_read} events read after its snapshot | {whole_ms:.0} ms, {whole_read} events folded without snapshots ({removed} deleted) | {:.4}x | reads only the tail |",
            args.license_events, snap_ms / whole_ms
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let db = events::testing::TestDb::with_pool_size(8).await;
    let id = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let (stream, prefix) = (format!("BENCH_{id}"), format!("bench.{id}"));
    let issuer = Arc::new(DevIssuer::generate()?);
    let jwks_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let jwks_url = format!(
        "http://{}/.well-known/jwks.json",
        jwks_listener.local_addr()?
    );
    let router = issuer.router();
    tokio::spawn(async move { axum::serve(jwks_listener, router).await });
    let key_path = std::env::temp_dir().join(format!("ll-bench-{id}.pem"));
    let config = Config {
        database_url: db.url.clone().into(),
        database_schema: Some(db.schema.clone()),
        nats_stream: stream.clone(),
        nats_subject_prefix: prefix.clone(),
        auth_jwks_url: jwks_url,
        auth_issuer: DEV_ISSUER.into(),
        auth_audience: DEV_AUDIENCE.into(),
        signing_key_path: key_path.display().to_string(),
        rate_limit_per_minute: 100_000_000,
        db_max_connections: 32,
        listen_addr: "127.0.0.1:0".parse()?,
        metrics_addr: "127.0.0.1:0".parse()?,
        ..Config::default()
    };
    let app = App::build(config.clone(), Components::all()).await?;
    let base = format!("http://{}", app.local_addr()?);
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let day = Duration::from_secs(86_400);
    let admin = issuer.mint(
        "bench-admin",
        "bench",
        &["license-admin".into(), "license-vendor".into()],
        day,
        DEV_ISSUER,
        DEV_AUDIENCE,
    )?;
    let license_id = issue_license(&http, &base, &admin).await?;

    // Ceiling 1: single-row durable INSERT at the heartbeat concurrency.
    sqlx::query("CREATE TABLE ceiling (id bigserial PRIMARY KEY, session uuid NOT NULL, at timestamptz NOT NULL DEFAULT now(), data jsonb NOT NULL)")
        .execute(&db.pool)
        .await?;
    // Its own connections, closed after (Postgres allows 100 in all).
    let pool = events::store::connect(&db.url, Some(&db.schema), args.clients as u32 + 4).await?;
    let ceiling_pool = pool.clone();
    // Each client keeps its connection: sqlx pings a connection each time it
    // goes back to the pool, a round trip the service's hot paths avoid too.
    let mut held = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        held.push(tokio::sync::Mutex::new(pool.acquire().await?));
    }
    let held = Arc::new(held);
    let meter = cpu::Meter::start();
    let insert_rate = drive(
        args.clients,
        args.seconds,
        None,
        Arc::default(),
        move |c, _| {
            let held = held.clone();
            async move {
                let mut conn = held[c].lock().await;
                sqlx::query("INSERT INTO ceiling (session, data) VALUES ($1, $2)")
                    .bind(uuid::Uuid::new_v4())
                    .bind(json!({"expires_at": "2026-11-23T12:00:00Z"}))
                    .execute(&mut **conn)
                    .await
                    .is_ok()
            }
        },
    )
    .await;
    let insert_cpu = meter.finish(insert_rate);

    ceiling_pool.close().await;

    // Sessions to heartbeat: one per client.
    let mut sessions = Vec::new();
    for c in 0..args.clients {
        let token = issuer.mint(
            &format!("hb-{c}"),
            "bench",
            &[],
            day,
            DEV_ISSUER,
            DEV_AUDIENCE,
        )?;
        let r: serde_json::Value = http
            .post(format!("{base}/api/v1/licenses/acquire"))
            .bearer_auth(&token)
            .json(&json!({"license_id": license_id, "hardware_id": format!("hb-{c}")}))
            .send()
            .await?
            .json()
            .await?;
        let Some(session) = r["session_id"].as_str() else {
            anyhow::bail!("the benchmark's acquire failed: {r}");
        };
        sessions.push((token, session.to_owned()));
    }
    let sessions = Arc::new(sessions);
    let heartbeat = |rate: Option<f64>, samples: Arc<Samples>| {
        let (http, base, sessions) = (http.clone(), base.clone(), sessions.clone());
        drive(args.clients, args.seconds, rate, samples, move |c, _| {
            let (http, base, sessions) = (http.clone(), base.clone(), sessions.clone());
            async move {
                let (token, session) = &sessions[c];
                matches!(http.put(format!("{base}/api/v1/licenses/heartbeat/{session}")).bearer_auth(token).send().await,
                         Ok(r) if r.status().is_success())
            }
        })
    };
    let meter = cpu::Meter::start();
    let hb_max = heartbeat(None, Arc::default()).await;
    let hb_cpu = meter.finish(hb_max);
    let hb_half = Arc::new(Samples::default());
    let hb_half_rate = heartbeat(Some(hb_max / 2.0), hb_half.clone()).await;

    // A second API instance on the same database: every client alternates
    // between the two, so each heartbeat lands where the previous one did not.
    let second = App::build(
        Config {
            listen_addr: "127.0.0.1:0".parse()?,
            metrics_addr: "127.0.0.1:0".parse()?,
            db_max_connections: 24,
            ..config.clone()
        },
        Components {
            serve: true,
            ..Components::default()
        },
    )
    .await?;
    let second_base = format!("http://{}", second.local_addr()?);
    let second_server = tokio::spawn(second.run_until_stopped(shutdown.clone()));
    let bases = Arc::new([base.clone(), second_base]);
    let meter = cpu::Meter::start();
    let two_rate = {
        let (http, sessions) = (http.clone(), sessions.clone());
        drive(args.clients, args.seconds, None, Arc::default(), move |c, i| {
            let (http, bases, sessions) = (http.clone(), bases.clone(), sessions.clone());
            async move {
                let (token, session) = &sessions[c];
                let base = &bases[(i % 2) as usize];
                matches!(http.put(format!("{base}/api/v1/licenses/heartbeat/{session}")).bearer_auth(token).send().await,
                         Ok(r) if r.status().is_success())
            }
        })
        .await
    };
    let two_cpu = meter.finish(two_rate);

    // Ceiling 2: RS256 signing with the same RSA-4096 key on every core.
    let local = Arc::new(LocalPemSigner::load_or_generate(&key_path)?);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let meter = cpu::Meter::start();
    let sign_rate = {
        let stop = Arc::new(AtomicBool::new(false));
        let n = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let threads: Vec<_> = (0..cores)
            .map(|_| {
                let (local, stop, n) = (local.clone(), stop.clone(), n.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let _ = local.sign_blocking(b"header.payload");
                        n.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            let _ = t.join();
        }
        n.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
    };
    let sign_cpu = meter.finish(sign_rate);

    // The acquire rounds run on one license, or spread over 16.
    let mut spread = Vec::new();
    for _ in 0..16 {
        spread.push(issue_license(&http, &base, &admin).await?);
    }
    let (one, spread) = (Arc::new(vec![license_id.clone()]), Arc::new(spread));
    let acquire = |rate: Option<f64>,
                   samples: Arc<Samples>,
                   round: &'static str,
                   licenses: Arc<Vec<String>>| {
        let (http, base, issuer) = (http.clone(), base.clone(), issuer.clone());
        let tokens: Arc<Vec<String>> = Arc::new(
            (0..args.acquire_clients)
                .map(|c| {
                    issuer
                        .mint(
                            &format!("acq-{round}-{c}"),
                            "bench",
                            &[],
                            day,
                            DEV_ISSUER,
                            DEV_AUDIENCE,
                        )
                        .unwrap_or_default()
                })
                .collect(),
        );
        drive(
            args.acquire_clients,
            args.seconds,
            rate,
            samples,
            move |c, i| {
                let (http, base, tokens) = (http.clone(), base.clone(), tokens.clone());
                let license_id = licenses[c % licenses.len()].clone();
                async move {
                    let r = http
                    .post(format!("{base}/api/v1/licenses/acquire"))
                    .bearer_auth(&tokens[c])
                    .json(&json!({"license_id": license_id, "hardware_id": format!("{round}-{c}-{i}")}))
                    .send()
                    .await;
                    matches!(r, Ok(r) if r.status() == reqwest::StatusCode::OK)
                }
            },
        )
    };
    let meter = cpu::Meter::start();
    let acq_max = acquire(None, Arc::default(), "max", one.clone()).await;
    let acq_cpu = meter.finish(acq_max);
    let acq_half = Arc::new(Samples::default());
    let acq_half_rate = acquire(Some(acq_max / 2.0), acq_half.clone(), "half", one).await;
    let meter = cpu::Meter::start();
    let spread_max = acquire(None, Arc::default(), "spread-max", spread.clone()).await;
    let spread_cpu = meter.finish(spread_max);
    let spread_half = Arc::new(Samples::default());
    let spread_half_rate = acquire(
        Some(spread_max / 2.0),
        spread_half.clone(),
        "spread-half",
        spread,
    )
    .await;

    println!("| path | measured | ceiling (same run) | ratio | target |");
    println!("|---|---:|---:|---:|---|");
    println!(
        "| heartbeat over HTTP, {} clients | {hb_max:.0}/s | {insert_rate:.0}/s single-row INSERT, {} clients | {:.2}x | >= 1.0x |",
        args.clients, args.clients, hb_max / insert_rate
    );
    println!(
        "| heartbeat over HTTP, {} clients, alternating between 2 API instances | {two_rate:.0}/s | {insert_rate:.0}/s single-row INSERT, {} clients | {:.2}x | >= 1.0x |",
        args.clients, args.clients, two_rate / insert_rate
    );
    println!(
        "| acquire over HTTP (local signer), {} clients, one license | {acq_max:.0}/s | {sign_rate:.0}/s RS256 RSA-4096 signs, {cores} cores | {:.2}x | >= 0.8x |",
        args.acquire_clients, acq_max / sign_rate
    );
    println!(
        "| acquire over HTTP (local signer), {} clients, spread over 16 licenses | {spread_max:.0}/s | {sign_rate:.0}/s RS256 RSA-4096 signs, {cores} cores | {:.2}x | >= 0.8x |",
        args.acquire_clients, spread_max / sign_rate
    );
    println!(
        "| heartbeat at half load ({hb_half_rate:.0}/s) | p50 {:.1} ms, p99 {:.1} ms | | | p99 < 20 ms |",
        hb_half.percentile(0.5), hb_half.percentile(0.99)
    );
    println!(
        "| acquire at half load ({acq_half_rate:.0}/s), one license | p50 {:.1} ms, p99 {:.1} ms | | | p99 < 100 ms |",
        acq_half.percentile(0.5), acq_half.percentile(0.99)
    );
    println!(
        "| acquire at half load ({spread_half_rate:.0}/s), 16 licenses | p50 {:.1} ms, p99 {:.1} ms | | | p99 < 100 ms |",
        spread_half.percentile(0.5), spread_half.percentile(0.99)
    );
    cpu::print(&[
        ("single-row INSERT (ceiling)", insert_cpu),
        ("heartbeat over HTTP", hb_cpu),
        ("heartbeat, 2 API instances alternating", two_cpu),
        ("RS256 RSA-4096 sign (ceiling)", sign_cpu),
        ("acquire, one license", acq_cpu),
        ("acquire, 16 licenses", spread_cpu),
    ]);
    shutdown.cancel();
    let _ = server.await;
    let _ = second_server.await;
    history(&args, &db, &sessions, &license_id).await?;
    let _ = async_nats::jetstream::new(async_nats::connect("nats://127.0.0.1:4222").await?)
        .delete_stream(&stream)
        .await;
    let _ = std::fs::remove_file(&key_path);
    db.drop_schema().await;
    Ok(())
}
