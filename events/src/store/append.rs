//! Appending: expected-version checks under row locks, hash chaining, and
//! one multi-row insert per transaction.
//!
//! [`append_batch`] runs several independent appends inside one transaction
//! (the group committer's unit of work): each append succeeds or fails on
//! its own, and a failed one writes nothing. The caller owns the transaction.

use super::hash::{to_micros, Canonical, GENESIS};
use super::{AppendError, AppendResult, ExpectedVersion, StreamAppend, Written, NOTIFY_CHANNEL};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Row};
use std::collections::{BTreeSet, HashMap, HashSet};
use uuid::Uuid;

/// Rejects appends that could never succeed, before touching the database.
pub(super) fn validate(appends: &[StreamAppend]) -> Result<(), AppendError> {
    if appends.is_empty() {
        return Err(AppendError::Invalid(
            "an append needs at least one stream".into(),
        ));
    }
    let mut streams = HashSet::new();
    let mut ids = HashSet::new();
    for append in appends {
        if append.stream.is_empty() || append.stream.len() > 200 {
            return Err(AppendError::Invalid(
                "stream names are 1 to 200 bytes".into(),
            ));
        }
        if !streams.insert(append.stream.as_str()) {
            return Err(AppendError::Invalid(format!(
                "stream {} appears twice",
                append.stream
            )));
        }
        if let ExpectedVersion::Exact(v) = append.expected {
            if v < 0 {
                return Err(AppendError::Invalid(format!(
                    "expected version {v} is negative"
                )));
            }
        }
        for event in &append.events {
            if event.event_type.is_empty() {
                return Err(AppendError::Invalid("event type must not be empty".into()));
            }
            if !ids.insert(event.event_id) {
                return Err(AppendError::Invalid(format!(
                    "event id {} appears twice",
                    event.event_id
                )));
            }
        }
    }
    Ok(())
}

/// Appends one request in its own transaction.
pub(super) async fn append_one(
    pool: &PgPool,
    appends: &[StreamAppend],
) -> Result<AppendResult, AppendError> {
    let mut tx = pool.begin().await?;
    let mut results = append_batch(&mut tx, std::slice::from_ref(&appends.to_vec())).await?;
    let result = results.pop().unwrap_or(Err(AppendError::WriterStopped));
    match result {
        Ok(ok) => {
            tx.commit().await?;
            Ok(ok)
        }
        Err(err) => {
            tx.rollback().await?;
            Err(err)
        }
    }
}

/// A stored event, as far as idempotency needs it.
struct Stored {
    stream: String,
    stream_version: i64,
    position: i64,
    event_type: String,
    schema_version: i32,
    data: Value,
    metadata: Value,
}

/// Runs independent appends in the caller's transaction. The outer error is
/// a database failure (the caller rolls back); inner errors are per append
/// and wrote nothing.
pub(super) async fn append_batch(
    conn: &mut PgConnection,
    requests: &[Vec<StreamAppend>],
) -> Result<Vec<Result<AppendResult, AppendError>>, sqlx::Error> {
    let stored = load_stored(conn, requests).await?;
    let mut results: Vec<Option<Result<AppendResult, AppendError>>> =
        Vec::with_capacity(requests.len());
    let mut fresh = Vec::new();
    for (i, request) in requests.iter().enumerate() {
        match replay_of(request, &stored) {
            Replay::Fresh => {
                results.push(None);
                fresh.push(i);
            }
            Replay::Stored(result) => results.push(Some(Ok(result))),
            Replay::Reused(event_id) => {
                results.push(Some(Err(AppendError::EventIdReused { event_id })))
            }
        }
    }

    let streams: BTreeSet<&str> = fresh
        .iter()
        .flat_map(|&i| requests[i].iter().map(|a| a.stream.as_str()))
        .collect();
    let mut heads = lock_streams(conn, &streams).await?;

    // Decide each request against the heads, in order, as if run one by one.
    let recorded_at = to_micros(Utc::now());
    let mut rows = Rows::default();
    let mut planned: Vec<(usize, Vec<(String, i64)>)> = Vec::new();
    for &i in &fresh {
        match plan(&requests[i], &heads, recorded_at, &mut rows) {
            Ok((new_heads, versions)) => {
                heads.extend(new_heads);
                planned.push((i, versions));
            }
            Err(conflict) => results[i] = Some(Err(conflict)),
        }
    }

    let positions = write(conn, &rows, &heads).await?;
    for (i, versions) in planned {
        let written = requests[i]
            .iter()
            .flat_map(|a| {
                let first = versions
                    .iter()
                    .find(|(s, _)| *s == a.stream)
                    .map(|(_, v)| *v)
                    .unwrap_or(0)
                    - a.events.len() as i64
                    + 1;
                a.events.iter().enumerate().map(move |(k, e)| Written {
                    event_id: e.event_id,
                    stream: a.stream.clone(),
                    stream_version: first + k as i64,
                    position: 0,
                })
            })
            .map(|mut w| {
                w.position = positions.get(&w.event_id).copied().unwrap_or(-1);
                w
            })
            .collect();
        results[i] = Some(Ok(AppendResult {
            written,
            stream_versions: versions,
            already_stored: false,
        }));
    }
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or(Err(AppendError::WriterStopped)))
        .collect())
}

async fn load_stored(
    conn: &mut PgConnection,
    requests: &[Vec<StreamAppend>],
) -> Result<HashMap<Uuid, Stored>, sqlx::Error> {
    let ids: Vec<Uuid> = requests
        .iter()
        .flatten()
        .flat_map(|a| a.events.iter().map(|e| e.event_id))
        .collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query(
        "SELECT event_id, stream_id, stream_version, position, event_type, schema_version, data, metadata
         FROM events WHERE event_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok((
                row.try_get("event_id")?,
                Stored {
                    stream: row.try_get("stream_id")?,
                    stream_version: row.try_get("stream_version")?,
                    position: row.try_get("position")?,
                    event_type: row.try_get("event_type")?,
                    schema_version: row.try_get("schema_version")?,
                    data: row.try_get("data")?,
                    metadata: row.try_get("metadata")?,
                },
            ))
        })
        .collect()
}

enum Replay {
    Fresh,
    Stored(AppendResult),
    Reused(Uuid),
}

/// Is this request a retry of one already stored?
fn replay_of(request: &[StreamAppend], stored: &HashMap<Uuid, Stored>) -> Replay {
    let total: usize = request.iter().map(|a| a.events.len()).sum();
    let mut written = Vec::with_capacity(total);
    let mut versions: Vec<(String, i64)> = Vec::new();
    for append in request {
        for event in &append.events {
            let Some(s) = stored.get(&event.event_id) else {
                if written.is_empty() {
                    continue;
                }
                return Replay::Reused(
                    written
                        .first()
                        .map(|w: &Written| w.event_id)
                        .unwrap_or(event.event_id),
                );
            };
            let same = s.stream == append.stream
                && s.event_type == event.event_type
                && s.schema_version == event.schema_version
                && s.data == event.data
                && s.metadata == event.metadata;
            if !same {
                return Replay::Reused(event.event_id);
            }
            written.push(Written {
                event_id: event.event_id,
                stream: s.stream.clone(),
                stream_version: s.stream_version,
                position: s.position,
            });
            match versions.iter_mut().find(|(name, _)| *name == s.stream) {
                Some((_, v)) => *v = (*v).max(s.stream_version),
                None => versions.push((s.stream.clone(), s.stream_version)),
            }
        }
    }
    if written.is_empty() {
        Replay::Fresh
    } else if written.len() == total {
        Replay::Stored(AppendResult {
            written,
            stream_versions: versions,
            already_stored: true,
        })
    } else {
        // Some events of the request are stored and some are not: not a retry.
        Replay::Reused(written[0].event_id)
    }
}

/// Creates missing stream rows and locks every stream row in name order
/// (a global lock order: concurrent batches cannot deadlock).
async fn lock_streams(
    conn: &mut PgConnection,
    streams: &BTreeSet<&str>,
) -> Result<HashMap<String, (i64, Vec<u8>)>, sqlx::Error> {
    if streams.is_empty() {
        return Ok(HashMap::new());
    }
    let names: Vec<&str> = streams.iter().copied().collect();
    let rows = sqlx::query(
        "INSERT INTO streams (stream_id, version, last_hash)
         SELECT s, -1, $2 FROM unnest($1::text[]) AS s ORDER BY s
         ON CONFLICT (stream_id) DO UPDATE SET version = streams.version
         RETURNING stream_id, version, last_hash",
    )
    .bind(&names)
    .bind(GENESIS.as_slice())
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok((
                row.try_get("stream_id")?,
                (row.try_get("version")?, row.try_get("last_hash")?),
            ))
        })
        .collect()
}

/// Column arrays of the events to insert.
#[derive(Default)]
struct Rows {
    event_id: Vec<Uuid>,
    stream_id: Vec<String>,
    stream_version: Vec<i64>,
    event_type: Vec<String>,
    schema_version: Vec<i32>,
    data: Vec<Value>,
    metadata: Vec<Value>,
    recorded_at: Vec<DateTime<Utc>>,
    prev_hash: Vec<Vec<u8>>,
    hash: Vec<Vec<u8>>,
}

type Heads = HashMap<String, (i64, Vec<u8>)>;

/// Checks a request's expectations against the heads and, when they hold,
/// adds its rows. Returns the new heads of its streams.
fn plan(
    request: &[StreamAppend],
    heads: &Heads,
    recorded_at: DateTime<Utc>,
    rows: &mut Rows,
) -> Result<(Heads, Vec<(String, i64)>), AppendError> {
    for append in request {
        let version = heads.get(&append.stream).map(|(v, _)| *v).unwrap_or(-1);
        if !append.expected.holds_at(version) {
            return Err(AppendError::Conflict {
                stream: append.stream.clone(),
                expected: append.expected,
                actual: (version >= 0).then_some(version),
            });
        }
    }
    let mut new_heads = Heads::new();
    let mut versions = Vec::with_capacity(request.len());
    for append in request {
        let (mut version, mut prev) = heads
            .get(&append.stream)
            .cloned()
            .unwrap_or((-1, GENESIS.to_vec()));
        for event in &append.events {
            version += 1;
            let hash = Canonical {
                event_id: event.event_id,
                stream_id: &append.stream,
                stream_version: version,
                event_type: &event.event_type,
                schema_version: event.schema_version,
                data: &event.data,
                metadata: &event.metadata,
                recorded_at,
            }
            .chain_hash(&prev)
            .to_vec();
            rows.event_id.push(event.event_id);
            rows.stream_id.push(append.stream.clone());
            rows.stream_version.push(version);
            rows.event_type.push(event.event_type.clone());
            rows.schema_version.push(event.schema_version);
            rows.data.push(event.data.clone());
            rows.metadata.push(event.metadata.clone());
            rows.recorded_at.push(recorded_at);
            rows.prev_hash
                .push(std::mem::replace(&mut prev, hash.clone()));
            rows.hash.push(hash);
        }
        versions.push((append.stream.clone(), version));
        if !append.events.is_empty() {
            new_heads.insert(append.stream.clone(), (version, prev));
        }
    }
    Ok((new_heads, versions))
}

/// Inserts the rows, moves the stream heads and notifies tailers, in one
/// statement. Returns each new event's position.
async fn write(
    conn: &mut PgConnection,
    rows: &Rows,
    heads: &Heads,
) -> Result<HashMap<Uuid, i64>, sqlx::Error> {
    if rows.event_id.is_empty() {
        return Ok(HashMap::new());
    }
    let touched: BTreeSet<&String> = rows.stream_id.iter().collect();
    let (mut names, mut versions, mut hashes) = (Vec::new(), Vec::new(), Vec::new());
    for name in touched {
        let (v, h) = &heads[name];
        names.push(name.as_str());
        versions.push(*v);
        hashes.push(h.as_slice());
    }
    let returned = sqlx::query(
        "WITH ins AS (
            INSERT INTO events (event_id, stream_id, stream_version, event_type, schema_version,
                                data, metadata, recorded_at, prev_hash, hash)
            SELECT e, s, v, t, sv, d, m, r, p, h
            FROM unnest($1::uuid[], $2::text[], $3::int8[], $4::text[], $5::int4[],
                        $6::jsonb[], $7::jsonb[], $8::timestamptz[], $9::bytea[], $10::bytea[])
                 WITH ORDINALITY AS t(e, s, v, t, sv, d, m, r, p, h, ord)
            ORDER BY ord
            RETURNING event_id, position
         ), heads AS (
            UPDATE streams SET version = u.v, last_hash = u.h
            FROM unnest($11::text[], $12::int8[], $13::bytea[]) AS u(s, v, h)
            WHERE streams.stream_id = u.s
         ), wake AS (SELECT pg_notify($14, '') AS n)
         SELECT ins.event_id, ins.position FROM ins CROSS JOIN wake",
    )
    .bind(&rows.event_id)
    .bind(&rows.stream_id)
    .bind(&rows.stream_version)
    .bind(&rows.event_type)
    .bind(&rows.schema_version)
    .bind(&rows.data)
    .bind(&rows.metadata)
    .bind(&rows.recorded_at)
    .bind(&rows.prev_hash)
    .bind(&rows.hash)
    .bind(&names)
    .bind(&versions)
    .bind(&hashes)
    .bind(NOTIFY_CHANNEL)
    .fetch_all(&mut *conn)
    .await?;
    returned
        .into_iter()
        .map(|row| Ok((row.try_get("event_id")?, row.try_get("position")?)))
        .collect()
}
