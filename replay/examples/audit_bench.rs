//! Audit benchmark: `verify` and `rebuild-projection` over a log of
//! 1,000,000+ events, next to the raw read speed of the same rows
//! (`COPY (SELECT * FROM events ORDER BY position) TO STDOUT`), in one run.
//!
//! `cargo run --release -p replay --example audit_bench -- [EVENTS]`
//! (DATABASE_URL or the local test database). The log is generated as valid
//! chained rows in Rust and COPYed into a throwaway schema, dropped at the end.

use aws_lc_rs::rsa::KeySize;
use chrono::{TimeDelta, TimeZone, Utc};
use events::catalog::{CloseReason, LicenseEvent};
use events::envelope::Metadata;
use events::ids::{HardwareId, LicenseId, ProductId, SessionId, TenantId, UserId};
use events::license::{self, LicenseState};
use events::session::{self, SessionState};
use events::store::hash::{Canonical, GENESIS};
use events::store::{connect, EventStore, MIGRATOR};
use futures::TryStreamExt as _;
use keys::RsaSigner;
use replay::keys::TrustedKeys;
use sqlx::Row as _;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Instant;
use uuid::Uuid;

/// Generates chained rows as CSV for COPY; returns (events CSV, streams CSV, count).
fn generate(target: usize) -> (Vec<u8>, Vec<u8>, usize) {
    let mut rows = Vec::with_capacity(target * 420);
    let mut heads: HashMap<String, (i64, [u8; 32])> = HashMap::new();
    let t0 = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    let mut position = 0i64;
    let mut push =
        |stream: &str, event: &LicenseEvent, metadata: &serde_json::Value, rows: &mut Vec<u8>| {
            position += 1;
            let at = t0 + TimeDelta::milliseconds(position);
            let (version, prev) = heads.get(stream).map_or((0, GENESIS), |(v, h)| (v + 1, *h));
            let data = event.data();
            let id = Uuid::from_u128(position as u128);
            let canonical = Canonical {
                event_id: id,
                stream_id: stream,
                stream_version: version,
                event_type: event.event_type(),
                schema_version: 1,
                data: &data,
                metadata,
                recorded_at: at,
            };
            let hash = canonical.chain_hash(&prev);
            let q = |v: &serde_json::Value| v.to_string().replace('"', "\"\"");
            let _ = writeln!(
                byte_writer(rows),
                "{position},{id},{stream},{version},{},1,\"{}\",\"{}\",{},\\x{},\\x{}",
                event.event_type(),
                q(&data),
                q(metadata),
                at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                hex::encode(prev),
                hex::encode(hash)
            );
            heads.insert(stream.to_owned(), (version, hash));
        };
    let mut count = 0;
    let mut n = 0u128;
    while count < target {
        n += 1;
        let license = LicenseId::from_uuid(Uuid::from_u128(n << 64));
        let tenant_id = TenantId::parse(&format!("tenant-{}", n % 50)).unwrap();
        let product = ProductId::parse("cad-pro").unwrap();
        let meta = Metadata::license(tenant_id.clone(), license, product.clone()).to_value();
        let ls = license.stream_name();
        let issued = LicenseEvent::LicenseIssued {
            tenant_id,
            license_id: license,
            product,
            seats: 10,
            session_ttl_secs: 360,
            valid_until: None,
            token_ttl_secs: None,
            strict_seats: false,
        };
        push(&ls, &issued, &meta, &mut rows);
        count += 1;
        for s in 0..100u128 {
            let session_id = SessionId::from_uuid(Uuid::from_u128((n << 64) | (s + 1)));
            let ss = session_id.stream_name();
            let user = UserId::parse(&format!("user-{}", s % 10)).unwrap();
            let hardware_id = HardwareId::parse(&format!("hw-{s}")).unwrap();
            let exp = t0 + TimeDelta::seconds(360);
            let acquired = LicenseEvent::SeatAcquired {
                borrowed_until: None,
                queued: false,
                session_id,
                user_id: user,
                hardware_id,
                expires_at: exp,
                idempotency_key: None,
                policy_version: 0,
                overdraft: false,
                reservation: None,
            };
            push(&ls, &acquired, &meta, &mut rows);
            for _ in 0..6 {
                push(
                    &ss,
                    &LicenseEvent::HeartbeatRecorded {
                        session_id,
                        expires_at: exp,
                    },
                    &meta,
                    &mut rows,
                );
            }
            push(
                &ls,
                &LicenseEvent::SeatReleased {
                    session_id,
                    tokens_valid_until: Some(exp),
                    linger_until: None,
                    revival: 0,
                },
                &meta,
                &mut rows,
            );
            push(
                &ss,
                &LicenseEvent::SessionClosed {
                    session_id,
                    reason: CloseReason::Released,
                },
                &meta,
                &mut rows,
            );
            count += 9;
        }
    }
    let mut streams = String::new();
    for (stream, (version, hash)) in &heads {
        let _ = writeln!(streams, "{stream},{version},\\x{}", hex::encode(hash));
    }
    (rows, streams.into_bytes(), count)
}

/// A `fmt::Write` over the byte buffer (the CSV is ASCII/UTF-8 only).
fn byte_writer(buf: &mut Vec<u8>) -> impl std::fmt::Write + '_ {
    struct W<'a>(&'a mut Vec<u8>);
    impl std::fmt::Write for W<'_> {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0.extend_from_slice(s.as_bytes());
            Ok(())
        }
    }
    W(buf)
}

async fn copy_in(pool: &sqlx::PgPool, sql: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await?;
    let mut copy = conn.copy_in_raw(sql).await?;
    for chunk in bytes.chunks(4 << 20) {
        copy.send(chunk).await?;
    }
    copy.finish().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let target: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| events::testing::DEFAULT_TEST_DATABASE_URL.to_owned());
    let schema = format!("bench_{}", Uuid::new_v4().simple());
    let admin = connect(&url, None, 1).await?;
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await?;
    let pool = connect(&url, Some(&schema), 4).await?;
    MIGRATOR.run(&pool).await?;
    let result = bench(&pool, target).await;
    pool.close().await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin)
        .await?;
    result
}

async fn bench(pool: &sqlx::PgPool, target: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    let (rows, streams, n) = generate(target);
    let generated = started.elapsed();
    copy_in(pool, "COPY events (position, event_id, stream_id, stream_version, event_type, schema_version, data, metadata, recorded_at, prev_hash, hash) FROM STDIN WITH (FORMAT csv)", &rows).await?;
    copy_in(
        pool,
        "COPY streams (stream_id, version, last_hash) FROM STDIN WITH (FORMAT csv)",
        &streams,
    )
    .await?;
    sqlx::query("SELECT setval(pg_get_serial_sequence('events', 'position'), (SELECT max(position) FROM events))").execute(pool).await?;
    sqlx::query("VACUUM ANALYZE events").execute(pool).await?;
    sqlx::query("VACUUM ANALYZE streams").execute(pool).await?;
    eprintln!(
        "log of {n} events generated in {:.1?} and loaded in {:.1?}",
        generated,
        started.elapsed() - generated
    );
    let store = EventStore::new(pool.clone());
    let signer = RsaSigner::generate(KeySize::Rsa2048)?;

    let t = Instant::now();
    let info = events::checkpoint::checkpoint_now(&store, &signer.public_key().kid, |message| {
        let signed = signer.sign_rs256(&message);
        async move { signed }
    })
    .await?
    .expect("checkpoint");
    let checkpoint = t.elapsed().as_secs_f64();
    assert_eq!(info.new_events as usize, n);

    let t = Instant::now();
    let mut conn = pool.acquire().await?;
    let mut out = conn
        .copy_out_raw("COPY (SELECT * FROM events ORDER BY position) TO STDOUT")
        .await?;
    let (mut bytes, mut lines) = (0usize, 0usize);
    while let Some(chunk) = out.try_next().await? {
        bytes += chunk.len();
        lines += chunk.iter().filter(|b| **b == b'\n').count();
    }
    drop(out);
    drop(conn);
    let raw = t.elapsed().as_secs_f64();
    assert_eq!(lines, n + 1);

    let t = Instant::now();
    let keys = TrustedKeys::from_pem(&signer.public_key().pem)?;
    let report = replay::verify::verify_db(&store, &keys, &Default::default()).await?;
    let verify = t.elapsed().as_secs_f64();
    assert!(report.is_ok(), "{}", report.render());

    let t = Instant::now();
    let chains = store.verify_all().await?;
    let chains_only = t.elapsed().as_secs_f64();
    assert!(chains.is_intact());

    let t = Instant::now();
    let folded = fold_all(pool).await?;
    let fold = t.elapsed().as_secs_f64();

    let redis_url =
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned());
    let prefix = format!("bench-{}:", Uuid::new_v4().simple());
    let conn = redis::Client::open(redis_url.as_str())?
        .get_connection_manager()
        .await?;
    let projection = projections::RedisProjection::new(conn.clone(), prefix.clone());
    let t = Instant::now();
    let rebuilt = projections::rebuild(&store, &projection).await?;
    let rebuild = t.elapsed().as_secs_f64();
    drop_prefix(conn, &prefix).await?;

    let rate = |secs: f64, count: usize| count as f64 / secs;
    let base = rate(raw, lines);
    println!(
        "| measure ({n} events, {:.0} MB as COPY text) | seconds | events/s | ratio to raw COPY |",
        bytes as f64 / 1e6
    );
    println!("|---|---:|---:|---:|");
    for (name, secs, count) in [
        (
            "raw read: COPY (SELECT * FROM events ORDER BY position) TO STDOUT",
            raw,
            lines,
        ),
        (
            "`ledger verify` (chains + running hash + checkpoint signature)",
            verify,
            n,
        ),
        (
            "  of which per-stream chains (`EventStore::verify_all`)",
            chains_only,
            n,
        ),
        (
            "`ledger rebuild-projection` (`projections::rebuild` into Redis)",
            rebuild,
            rebuilt.events as usize,
        ),
        (
            "  replay fold alone (decode + license/session apply, no Redis)",
            fold,
            folded,
        ),
        (
            "checkpoint from position 0 (`checkpoint_now`, gap-safe tail)",
            checkpoint,
            n,
        ),
    ] {
        println!(
            "| {name} | {secs:.2} | {:.0} | {:.2}x |",
            rate(secs, count),
            rate(secs, count) / base
        );
    }
    Ok(())
}

/// Reads every event in position order and folds it with the live system's
/// `apply`, one state per stream: what a projection rebuild does before writing.
async fn fold_all(pool: &sqlx::PgPool) -> anyhow::Result<usize> {
    let mut licenses: HashMap<String, LicenseState> = HashMap::new();
    let mut sessions: HashMap<String, SessionState> = HashMap::new();
    let mut rows = sqlx::query(
        "SELECT stream_id, event_type, schema_version, data FROM events ORDER BY position",
    )
    .fetch(pool);
    let mut n = 0;
    while let Some(row) = rows.try_next().await? {
        let stream: String = row.try_get(0)?;
        let event = LicenseEvent::from_stored(row.try_get(1)?, row.try_get(2)?, &row.try_get(3)?)?;
        if stream.starts_with("license-") {
            let state = licenses.entry(stream).or_default();
            *state = license::apply(std::mem::take(state), &event);
        } else {
            let state = sessions.entry(stream).or_default();
            *state = session::apply(std::mem::take(state), &event);
        }
        n += 1;
    }
    assert!(licenses.values().all(|s| s.sessions.is_empty()));
    Ok(n)
}

/// Deletes the bench's Redis keys.
async fn drop_prefix(mut conn: redis::aio::ConnectionManager, prefix: &str) -> anyhow::Result<()> {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await?;
    for chunk in keys.chunks(1000) {
        let _: () = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await?;
    }
    Ok(())
}
