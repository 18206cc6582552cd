//! Appends in one round trip: the writer chains the hashes itself from the
//! stream heads it believes current, and the `ll_append` function
//! (`migrations/20261204000004_append_function.sql`) checks those beliefs
//! under the stream row locks and writes what holds, all in one statement
//! that commits on its own (no `BEGIN`/`COMMIT` round trips).
//!
//! Beliefs come from [`Heads`]: the newest (version, hash) this process saw
//! of each stream, learnt from its reads and its own appends. A wrong belief
//! costs one more round trip, never a wrong write: the function answers with
//! the actual head, and the request is re-planned when its expectation still
//! holds (`Any`, or the expected version with a hash the cache did not know)
//! or fails with a version conflict when it does not. A request whose event
//! ids are already stored takes the careful path ([`super::append`]), which
//! tells an idempotent retry from a reused id.

use super::append::append_one;
use super::hash::{to_micros, Canonical, GENESIS, HASH_LEN};
use super::{AppendError, AppendResult, ExpectedVersion, StreamAppend, Written, NOTIFY_CHANNEL};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres, Row};
use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

type Hash = [u8; HASH_LEN];

/// Rounds of re-planning before a request takes the careful path.
const MAX_ROUNDS: usize = 4;

/// Streams whose head is remembered.
pub const HEADS_CAP: usize = 200_000;

/// A belief that cannot match any stored hash (the head is unknown here).
const UNKNOWN: Hash = [0xff; HASH_LEN];

/// The newest head (version, hash) this process knows of each stream.
pub(super) struct Heads(Mutex<lru::LruCache<String, (i64, Hash)>>);

impl Heads {
    pub(super) fn new(cap: usize) -> Self {
        let cap = NonZeroUsize::new(cap).unwrap_or(NonZeroUsize::MIN);
        Self(Mutex::new(lru::LruCache::new(cap)))
    }

    fn map(&self) -> std::sync::MutexGuard<'_, lru::LruCache<String, (i64, Hash)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that `stream` is at `version` with `hash` (a read or a write
    /// saw it); an older version than the one known changes nothing, unless
    /// the database just said so under the stream's lock (`actual`).
    pub(super) fn learn(&self, stream: &str, version: i64, hash: &[u8], actual: bool) {
        let Ok(hash) = Hash::try_from(hash) else {
            return;
        };
        let mut map = self.map();
        match map.get_mut(stream) {
            Some(known) if known.0 > version && !actual => {}
            Some(known) => *known = (version, hash),
            None => {
                map.put(stream.to_owned(), (version, hash));
            }
        }
    }

    fn known(&self, stream: &str) -> Option<(i64, Hash)> {
        self.map().get(stream).copied()
    }

    /// What the writer believes `append`'s stream head to be.
    fn belief(&self, append: &StreamAppend) -> (i64, Hash) {
        let known = self.known(&append.stream);
        match append.expected {
            ExpectedVersion::NoStream => (-1, GENESIS),
            ExpectedVersion::Exact(v) => match known {
                Some((kv, hash)) if kv == v => (v, hash),
                _ => (v, UNKNOWN),
            },
            ExpectedVersion::Any => known.unwrap_or((-1, GENESIS)),
            ExpectedVersion::StreamExists => match known {
                Some((kv, hash)) if kv >= 0 => (kv, hash),
                // A belief that cannot hold: the answer says what is there.
                _ => (-2, UNKNOWN),
            },
        }
    }
}

/// Wakes tailers after commits, outside the appending transactions
/// (Postgres serialises the commits of notifying transactions on one global
/// lock). One `pg_notify` at a time per process; pokes that arrive while one
/// runs are folded into one more.
pub(super) struct Notifier {
    pool: PgPool,
    /// 0 idle, 1 notifying, 2 notifying and poked again.
    state: Mutex<u8>,
}

impl Notifier {
    pub(super) fn new(pool: PgPool) -> Arc<Self> {
        Arc::new(Self {
            pool,
            state: Mutex::new(0),
        })
    }

    /// Something was committed: make sure a notification follows.
    pub(super) fn poke(self: &Arc<Self>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if *state == 0 {
            *state = 1;
            tokio::spawn(self.clone().run());
        } else {
            *state = 2;
        }
    }

    async fn run(self: Arc<Self>) {
        loop {
            if let Err(err) = sqlx::query("SELECT pg_notify($1, '')")
                .bind(NOTIFY_CHANNEL)
                .execute(&self.pool)
                .await
            {
                tracing::debug!(error = %err, "waking tailers failed; they poll");
            }
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if *state == 2 {
                *state = 1;
            } else {
                *state = 0;
                return;
            }
        }
    }
}

/// What became of one request in one call.
enum Answer {
    Written(AppendResult),
    /// A belief was wrong but the expectation may still hold: plan again.
    Replan,
    Failed(AppendError),
    /// An event id is stored already: the careful path decides.
    Careful,
}

/// Appends independent requests, each all-or-nothing on its own, in as few
/// round trips as the beliefs allow (one when they hold).
///
/// `held` is the connection the calls run on, taken from `pool` when empty
/// and dropped after a failed call. A caller that keeps it between calls (the
/// group committer) saves a round trip per call: sqlx pings a connection
/// each time it goes back to the pool.
pub(super) async fn append_all(
    pool: &PgPool,
    held: &mut Option<PoolConnection<Postgres>>,
    heads: &Heads,
    notifier: &Arc<Notifier>,
    requests: &[Vec<StreamAppend>],
) -> Vec<Result<AppendResult, AppendError>> {
    let mut results: Vec<Option<Result<AppendResult, AppendError>>> =
        requests.iter().map(|_| None).collect();
    let mut pending: Vec<usize> = (0..requests.len()).collect();
    let mut careful = Vec::new();
    for _ in 0..MAX_ROUNDS {
        if pending.is_empty() {
            break;
        }
        // One call holds each stream at most once; later requests wait a round.
        let mut streams = HashSet::new();
        let (now, later): (Vec<usize>, Vec<usize>) = pending.iter().partition(|&&i| {
            let free = requests[i]
                .iter()
                .all(|a| !streams.contains(a.stream.as_str()));
            if free {
                streams.extend(requests[i].iter().map(|a| a.stream.as_str()));
            }
            free
        });
        pending = later;
        let batch: Vec<&[StreamAppend]> = now.iter().map(|&i| requests[i].as_slice()).collect();
        let called = match held {
            Some(conn) => call(conn, heads, &batch).await,
            None => match pool.acquire().await {
                Ok(conn) => call(held.insert(conn), heads, &batch).await,
                Err(err) => Err(err),
            },
        };
        if called.is_err() {
            *held = None; // back to the pool, whose ping closes it if it broke
        }
        match called {
            Ok(answers) => {
                if answers.iter().any(|a| matches!(a, Answer::Written(_))) {
                    notifier.poke();
                }
                for (&i, answer) in now.iter().zip(answers) {
                    match answer {
                        Answer::Written(result) => results[i] = Some(Ok(result)),
                        Answer::Failed(err) => results[i] = Some(Err(err)),
                        Answer::Replan => pending.push(i),
                        Answer::Careful => careful.push(i),
                    }
                }
                pending.sort_unstable();
            }
            Err(err) => {
                tracing::warn!(error = %err, batch = now.len(), "append call failed; retrying its appends one by one");
                careful.extend(now);
            }
        }
    }
    careful.extend(pending);
    careful.sort_unstable();
    for i in careful {
        let result = append_one(pool, &requests[i]).await;
        if result.as_ref().is_ok_and(|r| !r.already_stored) {
            notifier.poke();
        }
        results[i] = Some(result);
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or(Err(AppendError::WriterStopped)))
        .collect()
}

/// Column arrays of one call.
#[derive(Default)]
struct Call {
    a_req: Vec<i32>,
    a_stream: Vec<String>,
    a_version: Vec<i64>,
    a_hash: Vec<Vec<u8>>,
    a_new_version: Vec<i64>,
    a_new_hash: Vec<Vec<u8>>,
    e_req: Vec<i32>,
    e_id: Vec<Uuid>,
    e_stream: Vec<String>,
    e_version: Vec<i64>,
    e_type: Vec<String>,
    e_schema: Vec<i32>,
    e_data: Vec<Value>,
    e_meta: Vec<Value>,
    e_at: Vec<DateTime<Utc>>,
    e_prev: Vec<Vec<u8>>,
    e_hash: Vec<Vec<u8>>,
}

impl Call {
    /// Adds one request's rows, chained from the believed heads.
    fn plan(&mut self, req: i32, request: &[StreamAppend], heads: &Heads, at: DateTime<Utc>) {
        for append in request {
            let (version, hash) = heads.belief(append);
            let (mut next, mut prev) = (version, hash);
            for event in &append.events {
                next += 1;
                let chained = Canonical {
                    event_id: event.event_id,
                    stream_id: &append.stream,
                    stream_version: next,
                    event_type: &event.event_type,
                    schema_version: event.schema_version,
                    data: &event.data,
                    metadata: &event.metadata,
                    recorded_at: at,
                }
                .chain_hash(&prev);
                self.e_req.push(req);
                self.e_id.push(event.event_id);
                self.e_stream.push(append.stream.clone());
                self.e_version.push(next);
                self.e_type.push(event.event_type.clone());
                self.e_schema.push(event.schema_version);
                self.e_data.push(event.data.clone());
                self.e_meta.push(event.metadata.clone());
                self.e_at.push(at);
                self.e_prev.push(prev.to_vec());
                self.e_hash.push(chained.to_vec());
                prev = chained;
            }
            self.a_req.push(req);
            self.a_stream.push(append.stream.clone());
            self.a_version.push(version);
            self.a_hash.push(hash.to_vec());
            self.a_new_version.push(next);
            self.a_new_hash.push(prev.to_vec());
        }
    }
}

/// One round trip for `batch` (requests on disjoint streams).
async fn call(
    conn: &mut PgConnection,
    heads: &Heads,
    batch: &[&[StreamAppend]],
) -> Result<Vec<Answer>, sqlx::Error> {
    let at = to_micros(Utc::now());
    let mut c = Call::default();
    for (req, request) in batch.iter().enumerate() {
        c.plan(req as i32, request, heads, at);
    }
    let rows = sqlx::query(
        "SELECT o_req, o_ok, o_stream, o_version, o_hash, o_event_id, o_position
         FROM ll_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
    )
    .bind(&c.a_req)
    .bind(&c.a_stream)
    .bind(&c.a_version)
    .bind(&c.a_hash)
    .bind(&c.a_new_version)
    .bind(&c.a_new_hash)
    .bind(&c.e_req)
    .bind(&c.e_id)
    .bind(&c.e_stream)
    .bind(&c.e_version)
    .bind(&c.e_type)
    .bind(&c.e_schema)
    .bind(&c.e_data)
    .bind(&c.e_meta)
    .bind(&c.e_at)
    .bind(&c.e_prev)
    .bind(&c.e_hash)
    .fetch_all(conn)
    .await?;

    let mut positions: HashMap<Uuid, i64> = HashMap::new();
    let mut careful = HashSet::new();
    let mut wrong: HashMap<usize, Vec<(String, i64)>> = HashMap::new();
    for row in rows {
        let req = row.try_get::<i32, _>("o_req")? as usize;
        let ok: bool = row.try_get("o_ok")?;
        let stream: Option<String> = row.try_get("o_stream")?;
        match (ok, stream) {
            (true, _) => {
                positions.insert(row.try_get("o_event_id")?, row.try_get("o_position")?);
            }
            (false, Some(stream)) => {
                let version: i64 = row.try_get("o_version")?;
                let hash: Vec<u8> = row.try_get("o_hash")?;
                heads.learn(&stream, version, &hash, true);
                wrong.entry(req).or_default().push((stream, version));
            }
            (false, None) => {
                careful.insert(req);
            }
        }
    }

    let mut answers = Vec::with_capacity(batch.len());
    for (req, request) in batch.iter().enumerate() {
        if careful.contains(&req) {
            answers.push(Answer::Careful);
            continue;
        }
        if let Some(wrong) = wrong.get(&req) {
            let broken = wrong.iter().find_map(|(stream, actual)| {
                let append = request.iter().find(|a| a.stream == *stream)?;
                (!append.expected.holds_at(*actual)).then(|| AppendError::Conflict {
                    stream: stream.clone(),
                    expected: append.expected,
                    actual: (*actual >= 0).then_some(*actual),
                })
            });
            answers.push(broken.map_or(Answer::Replan, Answer::Failed));
            continue;
        }
        answers.push(Answer::Written(written(
            req, request, &c, &positions, heads,
        )));
    }
    Ok(answers)
}

/// The result of a request the call wrote; moves the known heads.
fn written(
    req: usize,
    request: &[StreamAppend],
    c: &Call,
    positions: &HashMap<Uuid, i64>,
    heads: &Heads,
) -> AppendResult {
    let mut written = Vec::new();
    for (k, _) in c
        .e_req
        .iter()
        .enumerate()
        .filter(|(_, &r)| r as usize == req)
    {
        written.push(Written {
            event_id: c.e_id[k],
            stream: c.e_stream[k].clone(),
            stream_version: c.e_version[k],
            position: positions.get(&c.e_id[k]).copied().unwrap_or(-1),
        });
    }
    let mut stream_versions = Vec::with_capacity(request.len());
    for (k, _) in c
        .a_req
        .iter()
        .enumerate()
        .filter(|(_, &r)| r as usize == req)
    {
        heads.learn(&c.a_stream[k], c.a_new_version[k], &c.a_new_hash[k], true);
        stream_versions.push((c.a_stream[k].clone(), c.a_new_version[k]));
    }
    AppendResult {
        written,
        stream_versions,
        already_stored: false,
    }
}
