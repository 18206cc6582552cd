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
use super::hash::{to_micros, Canonical};
use super::heads::{Heads, UNKNOWN};
use super::kept::Kept;
use super::notify::Notifier;
use super::{AppendError, AppendResult, StreamAppend, Written};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Row};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use uuid::Uuid;

/// Rounds of re-planning before a request takes the careful path.
const MAX_ROUNDS: usize = 4;

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
/// With `kept`, the calls run on that connection, and a call whose requests
/// each touch one stream this process knows the head of runs [`ONE_REQUEST`]
/// or [`ONE_STREAM`] (see [`Kept`]). Without, each call takes a connection from the pool.
pub(super) async fn append_all(
    pool: &PgPool,
    mut kept: Option<&mut Kept>,
    heads: &Heads,
    notifier: &Arc<Notifier>,
    requests: &[Vec<StreamAppend>],
) -> Vec<Result<AppendResult, AppendError>> {
    let mut results: Vec<Option<Result<AppendResult, AppendError>>> =
        requests.iter().map(|_| None).collect();
    let mut pending: Vec<usize> = (0..requests.len()).collect();
    let mut careful = Vec::new();
    for round in 0..MAX_ROUNDS {
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
        let called = match kept.as_mut() {
            Some(kept) => {
                // A call of several requests by ONE_STREAM does not say what a
                // wrong belief met: the next round asks `ll_append`.
                let one = (round == 0 || batch.len() == 1) && all_one_stream_known(&batch, heads);
                match kept.get(pool).await {
                    Ok(conn) => call(conn, heads, &batch, one).await,
                    Err(err) => Err(err),
                }
            }
            None => match pool.acquire().await {
                Ok(mut conn) => call(&mut conn, heads, &batch, false).await,
                Err(err) => Err(err),
            },
        };
        if called.is_err() {
            if let Some(kept) = kept.as_mut() {
                kept.discard();
            }
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

/// True when each request touches one stream whose head this process knows
/// (so [`ONE_STREAM`] can take them: the streams' rows exist).
fn all_one_stream_known(batch: &[&[StreamAppend]], heads: &Heads) -> bool {
    for request in batch {
        let [append] = request else { return false };
        let (version, hash) = heads.belief(append);
        if version < 0 || hash == UNKNOWN {
            return false;
        }
    }
    true
}

/// The insert both one-stream statements make: the call's events (`$7` to
/// `$17`) as rows `t`, kept by the `WHERE` that follows it.
macro_rules! insert_events {
    () => {
        "    INSERT INTO events (event_id, stream_id, stream_version, event_type, schema_version,
                        data, metadata, recorded_at, prev_hash, hash)
    SELECT t.id, t.s, t.v, t.ty, t.sv, t.d, t.m, t.at, t.p, t.h
    FROM unnest($7::int4[], $8::uuid[], $9::text[], $10::int8[], $11::text[], $12::int4[],
                $13::jsonb[], $14::jsonb[], $15::timestamptz[], $16::bytea[], $17::bytea[])
         WITH ORDINALITY AS t(r, id, s, v, ty, sv, d, m, at, p, h, ord)"
    };
}

/// The common call as one bare statement: requests of one stream each, on
/// streams that exist. Each stream's head moves only where the writer's
/// belief (version and hash) holds, in one `UPDATE` that locks the rows in
/// name order (as `ll_append` does) and re-checks a row that a concurrent
/// writer moved meanwhile; the events of the requests that moved are
/// inserted after that, so their positions are drawn after the locks and
/// the transaction id. A request whose belief is wrong, or that carries an
/// event id already stored, writes nothing here and is sent through
/// `ll_append`, which says why. Costs about three quarters of an
/// `ll_append` call (pgbench, one writer).
///
/// Rows: `o_req` of each request written, and `o_event_id` at `o_position`
/// of each event written.
const ONE_STREAM: &str = concat!(
    "
WITH stored AS MATERIALIZED (
    SELECT x.r
    FROM unnest($7::int4[], $8::uuid[]) AS x(r, id)
    WHERE EXISTS (SELECT 1 FROM events ev WHERE ev.event_id = x.id)
), moved AS (
    UPDATE streams st SET version = w.nv, last_hash = w.nh
    FROM (SELECT * FROM unnest($1::int4[], $2::text[], $3::int8[], $4::bytea[], $5::int8[],
                               $6::bytea[]) AS u(r, s, v, hs, nv, nh)
          ORDER BY u.s) AS w
    WHERE st.stream_id = w.s AND st.version = w.v AND st.last_hash = w.hs
      AND NOT EXISTS (SELECT 1 FROM stored WHERE stored.r = w.r)
    RETURNING w.r
), ins AS (
",
    insert_events!(),
    "
    WHERE t.r IN (SELECT moved.r FROM moved)
      AND pg_current_xact_id() IS NOT NULL
    ORDER BY t.ord
    RETURNING events.event_id, events.position
)
SELECT moved.r AS o_req, NULL::uuid AS o_event_id, NULL::int8 AS o_position FROM moved
UNION ALL
SELECT NULL, ins.event_id, ins.position FROM ins"
);

/// [`ONE_STREAM`] for a call of one request, on scalars (about four fifths
/// of its time), and answering like `ll_append` does: the `UPDATE` locks the
/// stream's row whatever it finds and moves the head only where the belief
/// holds and no event id is stored yet, so a wrong belief comes back with
/// the actual head, read under the lock (no second call to learn it).
const ONE_REQUEST: &str = concat!(
    "
WITH f AS MATERIALIZED (
    SELECT NOT EXISTS (SELECT 1 FROM events ev WHERE ev.event_id = ANY ($8::uuid[])) AS fresh
), moved AS (
    UPDATE streams st
    SET version = CASE WHEN st.version = ($3::int8[])[1] AND st.last_hash = ($4::bytea[])[1]
                            AND f.fresh
                       THEN ($5::int8[])[1] ELSE st.version END,
        last_hash = CASE WHEN st.version = ($3::int8[])[1] AND st.last_hash = ($4::bytea[])[1]
                              AND f.fresh
                         THEN ($6::bytea[])[1] ELSE st.last_hash END
    FROM f
    WHERE st.stream_id = ($2::text[])[1]
    RETURNING st.version, st.last_hash,
              st.version = ($5::int8[])[1] AND st.last_hash = ($6::bytea[])[1] AS done
), ins AS (
",
    insert_events!(),
    "
    WHERE EXISTS (SELECT 1 FROM moved WHERE moved.done)
      AND pg_current_xact_id() IS NOT NULL
    ORDER BY t.ord
    RETURNING events.event_id, events.position
)
SELECT ($1::int4[])[1] AS o_req, true AS o_ok, NULL::text AS o_stream, NULL::int8 AS o_version,
       NULL::bytea AS o_hash, ins.event_id AS o_event_id, ins.position AS o_position
FROM ins
UNION ALL
SELECT ($1::int4[])[1], false, CASE WHEN f.fresh THEN ($2::text[])[1] END,
       coalesce(m.version, -1), coalesce(m.last_hash, decode(repeat('00', 32), 'hex')),
       CASE WHEN NOT f.fresh THEN ($8::uuid[])[1] END, NULL
FROM f LEFT JOIN moved m ON true
WHERE NOT coalesce(m.done, false)"
);

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

/// One round trip for `batch` (requests on disjoint streams): `ll_append`,
/// or, when `one`, [`ONE_REQUEST`] (a batch of one) or [`ONE_STREAM`].
async fn call(
    conn: &mut PgConnection,
    heads: &Heads,
    batch: &[&[StreamAppend]],
    one: bool,
) -> Result<Vec<Answer>, sqlx::Error> {
    let at = to_micros(Utc::now());
    let mut c = Call::default();
    for (req, request) in batch.iter().enumerate() {
        c.plan(req as i32, request, heads, at);
    }
    // ONE_STREAM answers per request; the others as `ll_append` does.
    let per_request = one && batch.len() > 1;
    let sql = if per_request {
        ONE_STREAM
    } else if one {
        ONE_REQUEST
    } else {
        "SELECT o_req, o_ok, o_stream, o_version, o_hash, o_event_id, o_position
         FROM ll_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
    };
    let rows = sqlx::query(sql)
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
    let mut good = HashSet::new();
    for row in rows {
        if per_request {
            match row.try_get::<Option<i32>, _>("o_req")? {
                Some(req) => {
                    good.insert(req as usize);
                }
                None => {
                    positions.insert(row.try_get("o_event_id")?, row.try_get("o_position")?);
                }
            }
            continue;
        }
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
        if per_request && !good.contains(&req) {
            answers.push(Answer::Replan); // `ll_append` says what is wrong
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
