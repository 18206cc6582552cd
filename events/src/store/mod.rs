//! The Postgres event log: append, read, tail (gap-safe) and verify.
//!
//! This module owns every SQL statement that touches the log's tables. It
//! knows nothing of licenses or sessions: events are opaque JSON here, typed
//! by the catalogue in [`crate::catalog`]. Callers own their retries: a
//! stale expected version is a typed [`AppendError::Conflict`], never a
//! silent overwrite.

mod append;
mod exclusive;
mod fast;
mod group;
pub mod hash;
mod heads;
mod kept;
mod lookup;
mod notify;
mod pool;
mod read;
mod singleton;
mod snapshot;
mod subscribe;
mod tenant;
mod verify;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::postgres::PgPool;
use std::fmt;
use std::sync::Arc;
use uuid::Uuid;

pub use exclusive::StreamLock;
pub use group::GroupCommitConfig;
pub use pool::{connect, connect_options, is_unavailable, ACQUIRE_TIMEOUT};
pub use singleton::SingletonLock;
pub use snapshot::{Snapshot, DEFAULT_SNAPSHOT_EVERY};
pub use subscribe::{Subscription, SubscriptionStats};
pub use tenant::{Verification, MAX_PROBLEMS};
pub use verify::{Break, BreakKind, VerifyReport};

/// The embedded migrations of the log (`migrations/` at the workspace root).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Counter of the events this process appended (committed, idempotent
/// re-appends not counted).
pub const APPENDED_TOTAL: &str = "ledger_events_appended_total";
/// Commands that lost the optimistic race twice and took their stream's
/// lock (see [`StreamLock`]).
pub const STREAM_LOCKS_TOTAL: &str = "ledger_stream_locks_total";

/// The Postgres channel appends notify on commit (a wake-up hint for tailers).
pub const NOTIFY_CHANNEL: &str = "license_ledger_events";

/// What an append expects the stream's current version to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The stream must not exist (have no events).
    NoStream,
    /// The stream must exist (have at least one event).
    StreamExists,
    /// The stream's last event must have exactly this version (0-based).
    Exact(i64),
}

impl ExpectedVersion {
    /// The expectation of a writer that has read the stream up to `version`
    /// (-1: it read nothing, the stream must not exist).
    pub fn after(version: i64) -> Self {
        if version < 0 {
            Self::NoStream
        } else {
            Self::Exact(version)
        }
    }
}

impl ExpectedVersion {
    /// Does a stream at `actual` (-1: no events) satisfy this expectation?
    pub fn holds_at(self, actual: i64) -> bool {
        match self {
            Self::Any => true,
            Self::NoStream => actual < 0,
            Self::StreamExists => actual >= 0,
            Self::Exact(v) => actual == v,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::NoStream => f.write_str("no stream"),
            Self::StreamExists => f.write_str("stream exists"),
            Self::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// An event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Unique id; re-appending the same id with the same content is a no-op.
    pub event_id: Uuid,
    /// Type name (the catalogue's variant name).
    pub event_type: String,
    /// Version of the payload's schema.
    pub schema_version: i32,
    /// Payload (without the type tag).
    pub data: Value,
    /// Metadata (tenant, license, correlation and causation ids, ...).
    pub metadata: Value,
}

/// Events to append to one stream, with the version the writer expects.
#[derive(Debug, Clone)]
pub struct StreamAppend {
    /// Stream name, e.g. `license-<uuid>`.
    pub stream: String,
    /// The expected current version of the stream.
    pub expected: ExpectedVersion,
    /// Events in order; may be empty (then the append is only a version check).
    pub events: Vec<NewEvent>,
}

impl StreamAppend {
    /// Shorthand constructor.
    pub fn new(
        stream: impl Into<String>,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Self {
        Self {
            stream: stream.into(),
            expected,
            events,
        }
    }
}

/// Where one appended event landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Written {
    /// The event's id.
    pub event_id: Uuid,
    /// Its stream.
    pub stream: String,
    /// Its version in the stream.
    pub stream_version: i64,
    /// Its global position.
    pub position: i64,
}

/// The outcome of a successful append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppendResult {
    /// Every event of the append, in the order given.
    pub written: Vec<Written>,
    /// Each stream's version after the append, in the order given.
    pub stream_versions: Vec<(String, i64)>,
    /// True when every event was already stored (an idempotent retry): nothing was written.
    pub already_stored: bool,
}

impl AppendResult {
    /// Version of `stream` after the append.
    pub fn version_of(&self, stream: &str) -> Option<i64> {
        self.stream_versions
            .iter()
            .find(|(s, _)| s == stream)
            .map(|(_, v)| *v)
    }
}

/// Why an append failed. Nothing was written in any case.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// A stream's version was not the expected one (a concurrent writer won).
    #[error("wrong expected version on stream {stream}: expected {expected}, actual {}", actual_display(*.actual))]
    Conflict {
        /// The stream.
        stream: String,
        /// What the writer expected.
        expected: ExpectedVersion,
        /// The stream's actual version (`None`: the stream has no events).
        actual: Option<i64>,
    },
    /// The event id is stored already with different content.
    #[error("event id {event_id} is already stored with different content")]
    EventIdReused {
        /// The reused id.
        event_id: Uuid,
    },
    /// The append was malformed (empty stream name, duplicate ids, ...).
    #[error("invalid append: {0}")]
    Invalid(String),
    /// The database failed.
    #[error("event log database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The group committer stopped (the store is shutting down).
    #[error("the event log writer has stopped")]
    WriterStopped,
}

fn actual_display(actual: Option<i64>) -> String {
    match actual {
        None => "no stream".into(),
        Some(v) => format!("version {v}"),
    }
}

impl AppendError {
    /// True for an optimistic-concurrency conflict (re-read and re-decide).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }
}

/// An event as stored in the log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedEvent {
    /// Global position (total order of the log).
    pub position: i64,
    /// Unique id.
    pub event_id: Uuid,
    /// Stream name.
    pub stream_id: String,
    /// Version in the stream (0-based).
    pub stream_version: i64,
    /// Type name.
    pub event_type: String,
    /// Schema version of `data`.
    pub schema_version: i32,
    /// Payload.
    pub data: Value,
    /// Metadata.
    pub metadata: Value,
    /// When the log recorded it.
    pub recorded_at: DateTime<Utc>,
    /// Hash of the previous event of the stream.
    #[serde(with = "hex_bytes")]
    pub prev_hash: Vec<u8>,
    /// This event's chain hash.
    #[serde(with = "hex_bytes")]
    pub hash: Vec<u8>,
}

impl RecordedEvent {
    /// The fields the hash commits to.
    pub fn canonical(&self) -> hash::Canonical<'_> {
        hash::Canonical {
            event_id: self.event_id,
            stream_id: &self.stream_id,
            stream_version: self.stream_version,
            event_type: &self.event_type,
            schema_version: self.schema_version,
            data: &self.data,
            metadata: &self.metadata,
            recorded_at: self.recorded_at,
        }
    }
}

mod hex_bytes {
    pub fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }
}

/// Errors of reads, tailing and verification.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("event log database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying the migrations failed.
    #[error("event log migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// An argument the log refuses (it names what was expected).
    #[error("{0}")]
    Invalid(String),
}

/// Handle on the event log. Cheap to clone.
#[derive(Clone)]
pub struct EventStore {
    pool: PgPool,
    writer: Option<group::Writer>,
    heads: Arc<heads::Heads>,
    notifier: Arc<notify::Notifier>,
    snapshot_every: i64,
    events_read: Arc<std::sync::atomic::AtomicU64>,
}

impl fmt::Debug for EventStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStore")
            .field("group_commit", &self.writer.is_some())
            .finish()
    }
}

impl EventStore {
    /// A store over `pool` that appends each call in its own transaction.
    pub fn new(pool: PgPool) -> Self {
        Self {
            notifier: notify::Notifier::new(pool.clone()),
            heads: Arc::new(heads::Heads::new(heads::HEADS_CAP)),
            pool,
            writer: None,
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
            events_read: Arc::default(),
        }
    }

    /// A store whose appends are group-committed: concurrent calls share
    /// transactions (each call still commits all-or-nothing on its own).
    /// Must be called inside a Tokio runtime.
    pub fn with_group_commit(pool: PgPool, config: GroupCommitConfig) -> Self {
        let mut store = Self::new(pool);
        store.writer = Some(group::Writer::start(
            store.pool.clone(),
            store.heads.clone(),
            store.notifier.clone(),
            config,
        ));
        store
    }

    /// The pool this store uses.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies the log's migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// Lets the login role `login` run the service: grants it `ledger_writer`
    /// (append and read, never rewrite; see the roles migration) and takes
    /// away what would let it climb out of that role: `CREATEROLE` (a role
    /// that can grant itself `ledger_owner`; Cloud SQL gives it to every user
    /// it creates), `CREATEDB`, and its memberships in roles that have
    /// `CREATEROLE` (Cloud SQL's `cloudsqlsuperuser`). All or nothing.
    ///
    /// Errors: a name that is not `[A-Za-z0-9_-]{1,63}`, an unknown role, a
    /// superuser (it could rewrite the log whatever it is granted), a role
    /// that stays able to become a role-creating role through another role,
    /// or a connection not allowed to grant or revoke.
    pub async fn grant_writer(&self, login: &str) -> Result<(), StoreError> {
        let valid = !login.is_empty()
            && login.len() <= 63
            && login
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(StoreError::Invalid(format!(
                "not a role name: {login:?} (expected [A-Za-z0-9_-], at most 63 characters)"
            )));
        }
        let superuser: Option<bool> =
            sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = $1")
                .bind(login)
                .fetch_optional(&self.pool)
                .await?;
        match superuser {
            None => return Err(StoreError::Invalid(format!("no role named {login:?}"))),
            Some(true) => {
                return Err(StoreError::Invalid(format!(
                    "{login:?} is a superuser: it could rewrite the log; run the service as an ordinary login"
                )))
            }
            Some(false) => {}
        }
        let mut tx = self.pool.begin().await?;
        for sql in [
            format!("GRANT ledger_writer TO \"{login}\""),
            format!("ALTER ROLE \"{login}\" NOCREATEROLE NOCREATEDB"),
        ] {
            sqlx::query(&sql).execute(&mut *tx).await?;
        }
        // A role it may become that can create roles (Cloud SQL makes every
        // user a member of cloudsqlsuperuser) would let it grant itself
        // ledger_owner: drop direct memberships, refuse indirect ones.
        let climbable = "SELECT r.rolname FROM pg_roles r
             WHERE (r.rolcreaterole OR r.rolsuper) AND r.rolname <> $1
               AND pg_has_role($1, r.oid, 'MEMBER')";
        let direct: Vec<String> = sqlx::query_scalar(&format!(
            "{climbable} AND EXISTS (SELECT 1 FROM pg_auth_members m
                 JOIN pg_roles u ON u.oid = m.member WHERE m.roleid = r.oid AND u.rolname = $1)"
        ))
        .bind(login)
        .fetch_all(&mut *tx)
        .await?;
        for role in direct {
            sqlx::query(&format!("REVOKE \"{role}\" FROM \"{login}\""))
                .execute(&mut *tx)
                .await?;
        }
        let left: Vec<String> = sqlx::query_scalar(climbable)
            .bind(login)
            .fetch_all(&mut *tx)
            .await?;
        if !left.is_empty() {
            return Err(StoreError::Invalid(format!(
                "{login:?} can still become {} (through another role), which can create roles and so grant itself ledger_owner: revoke that membership",
                left.join(", ")
            )));
        }
        tx.commit().await?;
        Ok(())
    }

    /// Appends events to one or more streams atomically: every stream's
    /// expected version must hold, or nothing is written.
    #[tracing::instrument(skip_all, fields(streams = appends.len()))]
    pub async fn append(&self, appends: Vec<StreamAppend>) -> Result<AppendResult, AppendError> {
        append::validate(&appends)?;
        let result = match &self.writer {
            Some(writer) => writer.submit(appends).await,
            None => fast::append_all(
                &self.pool,
                None,
                &self.heads,
                &self.notifier,
                std::slice::from_ref(&appends),
            )
            .await
            .pop()
            .unwrap_or(Err(AppendError::WriterStopped)),
        }?;
        if !result.already_stored {
            metrics::counter!(APPENDED_TOTAL).increment(result.written.len() as u64);
        }
        Ok(result)
    }

    /// Appends inside the caller's transaction (the caller commits). The
    /// stream rows stay locked until then, so keep the transaction short.
    pub async fn append_in_transaction(
        conn: &mut sqlx::PgConnection,
        appends: Vec<StreamAppend>,
    ) -> Result<AppendResult, AppendError> {
        append::validate(&appends)?;
        let mut results = append::append_batch(conn, std::slice::from_ref(&appends)).await?;
        results.pop().unwrap_or(Err(AppendError::WriterStopped))
    }

    /// Appends to a single stream.
    pub async fn append_to(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, AppendError> {
        self.append(vec![StreamAppend::new(stream, expected, events)])
            .await
    }
}

impl StoreError {
    /// The database cannot be reached right now (retry later).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Database(e) if is_unavailable(e))
    }
}

impl AppendError {
    /// The database cannot be reached right now (retry later).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Database(e) if is_unavailable(e))
            || matches!(self, Self::WriterStopped)
    }
}
