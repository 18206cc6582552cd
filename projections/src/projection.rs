//! [`RedisProjection`]: applies one event (or a pipelined batch) to Redis,
//! idempotent and in order per stream.
//!
//! Each event runs one Lua script (`apply.lua`) that compares the event's
//! stream version with the version stored *in the same keys* and, in the
//! same atomic step, applies the change and stores the new version:
//! `dup` when already applied, `gap` when an earlier version is missing
//! (the caller refetches it from Postgres, see `ordered.rs`: never applied
//! early), `flushed` when the sentinel is gone (the caller rebuilds).
//!
//! The meaning of each event comes from the catalogue
//! ([`LicenseEvent::from_stored`]); this module only maps the facts onto
//! keys. Must not: read the log or talk to NATS.

use crate::keys;
use events::catalog::LicenseEvent;
use events::envelope::Envelope;
use events::ids::{parse_stream, StreamKind};
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use std::collections::BTreeMap;
use std::sync::LazyLock;
use uuid::Uuid;

/// The key prefix of the production projection.
pub const DEFAULT_PREFIX: &str = "ll:";

/// Most events applied by one script call: a call blocks Redis while it
/// runs, so a batch is split to keep other clients' reads prompt.
pub const EVENTS_PER_CALL: usize = 100;

static SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("apply.lua")));

/// What applying one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The change is in Redis.
    Applied,
    /// The event's stream version was already applied: nothing changed.
    Duplicate,
    /// The session already ended (its release/expiry was applied): nothing to keep.
    Closed,
    /// Not part of this projection (checkpoints): nothing changed.
    Skipped,
    /// An earlier version of the stream is missing; `applied` is the stream's
    /// applied version. Nothing changed.
    Gap {
        /// The stream's applied version in Redis (-1: none).
        applied: i64,
    },
    /// The sentinel is missing (Redis was flushed): nothing changed; rebuild.
    Flushed,
}

impl Applied {
    fn parse(reply: &str) -> Result<Self, ProjectionError> {
        Ok(match reply {
            "ok" => Self::Applied,
            "dup" => Self::Duplicate,
            "closed" => Self::Closed,
            "skip" => Self::Skipped,
            "flushed" => Self::Flushed,
            other => match other.strip_prefix("gap:").and_then(|v| v.parse().ok()) {
                Some(applied) => Self::Gap { applied },
                None => return Err(ProjectionError::Reply(other.to_owned())),
            },
        })
    }
}

/// Why the projection failed (nothing is acknowledged after one).
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// Redis failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Reading the log failed.
    #[error("event log: {0}")]
    Store(#[from] events::store::StoreError),
    /// The script answered something unexpected.
    #[error("unexpected projection script reply {0:?}")]
    Reply(String),
    /// A task of the projector died (a panic in a reader).
    #[error("projector task failed: {0}")]
    Task(String),
    /// Missing versions could not be refetched from the log.
    #[error("stream {stream} is missing versions after {applied} in the log")]
    Unfillable {
        /// The stream.
        stream: String,
        /// Its applied version.
        applied: i64,
    },
}

/// The Redis read model of licenses and sessions, under one key prefix.
#[derive(Clone)]
pub struct RedisProjection {
    conn: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisProjection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisProjection")
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// One script call: keys and arguments.
struct Call {
    keys: [String; 6],
    args: Vec<String>,
}

impl RedisProjection {
    /// A projection over `conn` under `prefix` (e.g. [`DEFAULT_PREFIX`]).
    pub fn new(conn: ConnectionManager, prefix: impl Into<String>) -> Self {
        Self {
            conn,
            prefix: prefix.into(),
        }
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A clone of the connection.
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Applies one event. With `check_sentinel`, a missing sentinel answers
    /// [`Applied::Flushed`] and changes nothing (live consumption); a
    /// rebuild passes `false`.
    pub async fn apply(
        &self,
        event: &Envelope,
        check_sentinel: bool,
    ) -> Result<Applied, ProjectionError> {
        let mut applied = self
            .apply_batch(std::slice::from_ref(event), check_sentinel)
            .await?;
        applied
            .pop()
            .ok_or_else(|| ProjectionError::Reply("no reply".into()))
    }

    /// Applies a batch in one pipeline (one round trip) of script calls of
    /// up to [`EVENTS_PER_CALL`] events each. Results are in the batch's
    /// order; a `Gap` or `Flushed` changed nothing for that event.
    pub async fn apply_batch(
        &self,
        batch: &[Envelope],
        check_sentinel: bool,
    ) -> Result<Vec<Applied>, ProjectionError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for chunk in batch.chunks(EVENTS_PER_CALL) {
            let calls: Vec<Call> = chunk.iter().map(|e| self.call(e, check_sentinel)).collect();
            let cmd = pipe
                .cmd("EVALSHA")
                .arg(SCRIPT.get_hash())
                .arg(calls.len() * 6);
            for call in &calls {
                cmd.arg(&call.keys[..]);
            }
            cmd.arg(calls.len());
            for call in &calls {
                cmd.arg(call.args.len()).arg(&call.args);
            }
        }
        let mut conn = self.conn.clone();
        let replies: Vec<Vec<String>> = match pipe.query_async(&mut conn).await {
            Ok(replies) => replies,
            Err(err) if err.kind() == redis::ErrorKind::NoScriptError => {
                SCRIPT.load_async(&mut conn).await?;
                pipe.query_async(&mut conn).await?
            }
            Err(err) => return Err(err.into()),
        };
        let out: Vec<Applied> = replies
            .iter()
            .flatten()
            .map(|r| Applied::parse(r))
            .collect::<Result<_, _>>()?;
        if out.len() != batch.len() {
            return Err(ProjectionError::Reply(format!(
                "{} replies for {} events",
                out.len(),
                batch.len()
            )));
        }
        Ok(out)
    }

    fn call(&self, event: &Envelope, check_sentinel: bool) -> Call {
        let p = &self.prefix;
        let license = event
            .meta()
            .license_id
            .map(|l| l.as_uuid())
            .unwrap_or_default();
        let decoded = decode(event);
        let session = session_of(event, decoded.as_ref()).unwrap_or_default();
        let (kind, op_args): (&str, Vec<String>) = match parse_stream(&event.stream) {
            Some(StreamKind::License(_)) => ("L", license_op(event, decoded, license)),
            Some(StreamKind::Session(_)) => ("S", session_op(decoded, session, license)),
            _ => ("X", vec!["none".into()]),
        };
        let mut args = vec![
            kind.to_owned(),
            event.stream_version.to_string(),
            if check_sentinel { "1" } else { "0" }.to_owned(),
            event.position.to_string(),
            event.recorded_at.timestamp_millis().to_string(),
            chrono::Utc::now().timestamp_millis().to_string(),
        ];
        args.extend(op_args);
        Call {
            keys: [
                keys::license(p, license),
                keys::sessions(p, license),
                keys::holders(p, license),
                keys::session(p, session),
                keys::epoch(p),
                keys::meta(p),
            ],
            args,
        }
    }

    /// True when the sentinel is present (Redis holds a complete projection).
    pub async fn has_sentinel(&self) -> Result<bool, ProjectionError> {
        Ok(self.conn.clone().exists(keys::epoch(&self.prefix)).await?)
    }

    /// Sets the sentinel (after a complete rebuild).
    pub async fn set_sentinel(&self) -> Result<(), ProjectionError> {
        let epoch = Uuid::now_v7().to_string();
        let _: () = self
            .conn
            .clone()
            .set(keys::epoch(&self.prefix), epoch)
            .await?;
        Ok(())
    }

    /// Every key under the prefix (`SCAN`, never `KEYS`).
    pub async fn scan_keys(&self) -> Result<Vec<String>, ProjectionError> {
        let mut conn = self.conn.clone();
        let mut cursor: u64 = 0;
        let mut out = Vec::new();
        let pattern = format!("{}*", escape_glob(&self.prefix));
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            out.extend(batch);
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }

    /// Deletes every key of the prefix (`UNLINK`) except the rebuild lock.
    pub async fn reset(&self) -> Result<usize, ProjectionError> {
        let lock = keys::rebuilding(&self.prefix);
        let keys: Vec<String> = self
            .scan_keys()
            .await?
            .into_iter()
            .filter(|k| *k != lock)
            .collect();
        let mut conn = self.conn.clone();
        for chunk in keys.chunks(500) {
            let _: () = redis::cmd("UNLINK")
                .arg(chunk)
                .query_async(&mut conn)
                .await?;
        }
        Ok(keys.len())
    }

    /// The projected state (keys relative to the prefix, bookkeeping keys
    /// left out) as text, with each key's absolute expiry: what invariant 6
    /// compares between live processing and a rebuild.
    pub async fn dump(&self) -> Result<BTreeMap<String, String>, ProjectionError> {
        let mut conn = self.conn.clone();
        let mut out = BTreeMap::new();
        for key in self.scan_keys().await? {
            if !keys::is_state_key(&self.prefix, &key) {
                continue;
            }
            let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut conn).await?;
            let value = match kind.as_str() {
                "hash" => {
                    let map: BTreeMap<String, String> = conn.hgetall(&key).await?;
                    format!("{map:?}")
                }
                "zset" => {
                    let members: Vec<(String, i64)> = conn.zrange_withscores(&key, 0, -1).await?;
                    format!("{members:?}")
                }
                "none" => continue, // expired between SCAN and now
                other => format!("<{other}>"),
            };
            let expires: i64 = redis::cmd("PEXPIRETIME")
                .arg(&key)
                .query_async(&mut conn)
                .await?;
            let rel = key[self.prefix.len()..].to_owned();
            out.insert(rel, format!("{value} expires={expires}"));
        }
        Ok(out)
    }
}

fn escape_glob(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len());
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn session_of(event: &Envelope, decoded: Option<&LicenseEvent>) -> Option<Uuid> {
    if let Some(StreamKind::Session(id)) = parse_stream(&event.stream) {
        return Some(id.as_uuid());
    }
    decoded
        .and_then(LicenseEvent::session_id)
        .map(|s| s.as_uuid())
}

fn decode(event: &Envelope) -> Option<LicenseEvent> {
    match event.event() {
        Ok(decoded) => Some(decoded),
        Err(err) => {
            // A type this build does not know still takes its version slot,
            // so the stream never stalls on it.
            tracing::warn!(error = %err, event_id = %event.event_id, "undecodable event: applied as a no-op");
            None
        }
    }
}

/// The license-stream operation and its arguments (ARGV 7..).
fn license_op(event: &Envelope, decoded: Option<LicenseEvent>, license: Uuid) -> Vec<String> {
    let s = |v: &dyn ToString| v.to_string();
    match decoded {
        Some(LicenseEvent::LicenseIssued {
            tenant_id,
            product,
            seats,
            session_ttl_secs,
            ..
        }) => {
            vec![
                s(&"issued"),
                s(&tenant_id),
                s(&product),
                s(&seats),
                s(&session_ttl_secs),
            ]
        }
        Some(LicenseEvent::SeatsChanged { seats }) => vec![s(&"seats"), s(&seats)],
        Some(LicenseEvent::LicenseSuspended { .. }) => vec![s(&"suspended")],
        Some(LicenseEvent::LicenseReinstated {}) => vec![s(&"reinstated")],
        Some(LicenseEvent::SeatAcquired {
            session_id,
            user_id,
            hardware_id,
            expires_at,
            ..
        }) => vec![
            s(&"acquired"),
            s(&session_id),
            s(&user_id),
            s(&hardware_id),
            s(&expires_at.timestamp_millis()),
            s(&license),
        ],
        // A revived session is live again; its session-stream version is
        // taken from its next session event (`SessionReopened`).
        Some(LicenseEvent::SessionRevived {
            session_id,
            user_id,
            hardware_id,
            expires_at,
            ..
        }) => vec![
            s(&"revived"),
            s(&session_id),
            s(&user_id),
            s(&hardware_id),
            s(&expires_at.timestamp_millis()),
            s(&license),
        ],
        Some(LicenseEvent::AcquireDenied { .. }) => {
            vec![
                s(&"denied"),
                event.recorded_at.format("%Y-%m-%d").to_string(),
            ]
        }
        Some(LicenseEvent::SeatReleased { session_id, .. })
        | Some(LicenseEvent::SessionExpired { session_id, .. })
        | Some(LicenseEvent::SessionRevoked { session_id, .. }) => {
            vec![s(&"ended"), s(&session_id)]
        }
        _ => vec![s(&"none")],
    }
}

/// The session-stream operation and its arguments (ARGV 7..).
fn session_op(decoded: Option<LicenseEvent>, session: Uuid, license: Uuid) -> Vec<String> {
    let session = session.to_string();
    match decoded {
        Some(LicenseEvent::HeartbeatRecorded { expires_at, .. }) => vec![
            "heartbeat".into(),
            session,
            expires_at.timestamp_millis().to_string(),
            license.to_string(),
        ],
        Some(LicenseEvent::TokenIssued {
            expires_at: Some(exp),
            ..
        }) => vec!["token".into(), session, exp.timestamp_millis().to_string()],
        _ => vec!["bump".into(), session],
    }
}
