//! The one seam between the pure aggregates and the log: load a state from
//! its stream (only the part not folded yet), decide, append with the
//! expected version, and on a conflict re-read and re-decide.
//!
//! Every writer goes through [`execute`] (the service's commands, the
//! signer worker, the reaper) and every reader through [`refresh`],
//! [`load`] or [`read_decoded`] (the service's caches, the `ledger` tool).
//! Streams are read in pages until their end: there is no cap that could
//! silently truncate a long stream.
//!
//! Must not: know any business rule (the `decide` closure brings them), or
//! hold locks (the caller owns the state and whatever serializes access to
//! it).

use crate::catalog::{CatalogError, LicenseEvent};
use crate::envelope::{decode, new_event, new_event_with_id};
use crate::license::LicenseState;
use crate::session::SessionState;
use crate::store::{
    AppendError, AppendResult, EventStore, ExpectedVersion, RecordedEvent, Snapshot, StoreError,
    StreamAppend,
};
use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

/// Events read per round trip while folding a stream.
const PAGE: i64 = 1000;

/// Most decide/append rounds of one command that keeps meeting concurrent writers.
pub const MAX_ATTEMPTS: usize = 16;

/// Optimistic decide/append rounds of [`execute`] before it locks the stream.
pub const OPTIMISTIC_ROUNDS: usize = 2;

/// A state folded from one stream.
pub trait Aggregate: Default + serde::Serialize + serde::de::DeserializeOwned {
    /// Names the aggregate and the layout of its snapshots (bump the number
    /// when the layout changes: older snapshots are then ignored).
    const SNAPSHOT_KIND: &'static str;
    /// Folds one event (pure).
    fn apply_event(self, event: &LicenseEvent) -> Self;
    /// Version of the last event folded; -1 for an empty stream.
    fn version(&self) -> i64;
    /// Records the stream version of the last event folded.
    fn set_version(&mut self, version: i64);
    /// The expected version that says "the stream is as I read it".
    fn expected(&self) -> ExpectedVersion {
        ExpectedVersion::after(self.version())
    }
}

impl Aggregate for LicenseState {
    const SNAPSHOT_KIND: &'static str = "license/1";
    fn apply_event(self, event: &LicenseEvent) -> Self {
        crate::license::apply(self, event)
    }
    fn version(&self) -> i64 {
        self.version
    }
    fn set_version(&mut self, version: i64) {
        self.version = version;
    }
}

impl Aggregate for SessionState {
    const SNAPSHOT_KIND: &'static str = "session/1";
    fn apply_event(self, event: &LicenseEvent) -> Self {
        crate::session::apply(self, event)
    }
    fn version(&self) -> i64 {
        self.version
    }
    fn set_version(&mut self, version: i64) {
        self.version = version;
    }
}

/// Why a stream could not be folded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored event is not in the catalogue.
    #[error("decoding {stream} version {version} (position {position}): {source}")]
    Decode {
        /// The stream.
        stream: String,
        /// The event's version.
        version: i64,
        /// The event's position.
        position: i64,
        /// What the catalogue said.
        #[source]
        source: CatalogError,
    },
}

/// Why a command did not commit. Nothing was written in any case.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError<E> {
    /// The decision rejected the command (a business rule).
    #[error(transparent)]
    Rejected(E),
    /// Reading the stream failed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The append failed; a conflict here is on one of the *other* streams
    /// (the caller re-reads that one; the own stream is retried here).
    #[error(transparent)]
    Append(AppendError),
    /// Concurrent writers kept winning (not expected of [`execute`], which
    /// locks the stream after [`OPTIMISTIC_ROUNDS`]).
    #[error("stream {0}: too many concurrent changes")]
    Contention(String),
}

/// What a decision wants written, and what to answer.
#[derive(Debug, Clone)]
pub struct Changes<T> {
    /// The answer to the caller.
    pub outcome: T,
    /// Events for the aggregate's own stream.
    pub events: Vec<LicenseEvent>,
    /// Events for other streams, each with its expected version, appended
    /// in the same transaction (all or nothing).
    pub also: Vec<(String, ExpectedVersion, Vec<LicenseEvent>)>,
    /// Fixed id of the first own event (a deterministic id makes a retried
    /// command idempotent); fresh time-ordered ids otherwise.
    pub first_event_id: Option<Uuid>,
}

impl<T> Changes<T> {
    /// `events` for the own stream, answering `outcome`.
    pub fn new(events: Vec<LicenseEvent>, outcome: T) -> Self {
        Self {
            outcome,
            events,
            also: Vec::new(),
            first_event_id: None,
        }
    }

    /// Nothing to write.
    pub fn none(outcome: T) -> Self {
        Self::new(Vec::new(), outcome)
    }

    /// Also appends `events` to `stream`, expecting `expected`.
    pub fn also(
        mut self,
        stream: String,
        expected: ExpectedVersion,
        events: Vec<LicenseEvent>,
    ) -> Self {
        if !events.is_empty() {
            self.also.push((stream, expected, events));
        }
        self
    }

    /// Gives the first own event a fixed id.
    pub fn with_event_id(mut self, id: Uuid) -> Self {
        self.first_event_id = Some(id);
        self
    }

    fn is_empty(&self) -> bool {
        self.events.is_empty() && self.also.is_empty()
    }
}

/// A stored event and its decoded form.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// As stored (position, time, metadata, hashes).
    pub recorded: RecordedEvent,
    /// As the catalogue reads it.
    pub event: LicenseEvent,
}

/// Calls `f` for every event of `stream` from `from_version` on, in version
/// order, a page at a time.
async fn for_each(
    store: &EventStore,
    stream: &str,
    from_version: i64,
    mut f: impl FnMut(RecordedEvent, LicenseEvent),
) -> Result<(), LoadError> {
    let mut next = from_version.max(0);
    loop {
        let page = store.read_stream(stream, next, PAGE).await?;
        let full = page.len() as i64 == PAGE;
        next = decode_page(stream, page, &mut f)?.unwrap_or(next);
        if !full {
            return Ok(());
        }
    }
}

/// Decodes a page and calls `f` for each event; returns the version after the last one.
fn decode_page(
    stream: &str,
    page: Vec<RecordedEvent>,
    f: &mut impl FnMut(RecordedEvent, LicenseEvent),
) -> Result<Option<i64>, LoadError> {
    let mut next = None;
    for recorded in page {
        let event = decode(&recorded).map_err(|source| LoadError::Decode {
            stream: stream.to_owned(),
            version: recorded.stream_version,
            position: recorded.position,
            source,
        })?;
        next = Some(recorded.stream_version + 1);
        f(recorded, event);
    }
    Ok(next)
}

fn fold_into<A: Aggregate>(folded: &mut A) -> impl FnMut(RecordedEvent, LicenseEvent) + '_ {
    |recorded, event| {
        *folded = std::mem::take(folded).apply_event(&event);
        folded.set_version(recorded.stream_version);
    }
}

/// A state from a stored snapshot (`None`: missing, or of a layout this
/// build does not read).
fn restore<A: Aggregate>(snapshot: Option<Snapshot>) -> Option<A> {
    let snapshot = snapshot?;
    let mut state: A = serde_json::from_value(snapshot.state).ok()?;
    state.set_version(snapshot.version);
    Some(state)
}

/// Stores a snapshot of `state` when its version crossed a multiple of the
/// store's snapshot interval since `before`. A failure only costs a longer
/// fold later: it is logged, not returned.
async fn maybe_snapshot<A: Aggregate>(store: &EventStore, stream: &str, before: i64, state: &A) {
    let every = store.snapshot_every();
    if every <= 0 || state.version() < 0 || state.version() / every <= before / every {
        return;
    }
    let saved = match serde_json::to_value(state) {
        Ok(value) => store
            .save_snapshot(stream, A::SNAPSHOT_KIND, state.version(), &value)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(error) = saved {
        tracing::warn!(%stream, %error, "storing a snapshot failed; the stream will be folded from an older one");
    }
}

/// Folds the events of `stream` that `state` has not seen yet (its tail).
/// A state that has seen nothing starts from the stream's newest snapshot,
/// read in the same round trip as the first events after it.
pub async fn refresh<A: Aggregate>(
    store: &EventStore,
    stream: &str,
    state: &mut A,
) -> Result<(), LoadError> {
    let mut folded = std::mem::take(state);
    let mut before = folded.version();
    if before < 0 {
        let (snapshot, page) = store
            .read_with_snapshot(stream, A::SNAPSHOT_KIND, PAGE)
            .await?;
        let had_snapshot = snapshot.is_some();
        let restored = restore::<A>(snapshot);
        // An unreadable snapshot (older layout): the page starts after it,
        // so fold from the start below instead.
        if restored.is_some() || !had_snapshot {
            if let Some(restored) = restored {
                folded = restored;
                before = folded.version();
            }
            let full = page.len() as i64 == PAGE;
            decode_page(stream, page, &mut fold_into(&mut folded))?;
            if !full {
                maybe_snapshot(store, stream, before, &folded).await;
                *state = folded;
                return Ok(());
            }
        }
    }
    for_each(store, stream, folded.version() + 1, fold_into(&mut folded)).await?;
    maybe_snapshot(store, stream, before, &folded).await;
    *state = folded;
    Ok(())
}

/// Folds the whole of `stream`.
pub async fn load<A: Aggregate>(store: &EventStore, stream: &str) -> Result<A, LoadError> {
    let mut state = A::default();
    refresh(store, stream, &mut state).await?;
    Ok(state)
}

/// Folds the events of `stream` recorded at or before `until`.
pub async fn load_until<A: Aggregate>(
    store: &EventStore,
    stream: &str,
    until: DateTime<Utc>,
) -> Result<A, LoadError> {
    let mut state = A::default();
    for_each(store, stream, 0, |recorded, event| {
        if recorded.recorded_at <= until {
            state = std::mem::take(&mut state).apply_event(&event);
            state.set_version(recorded.stream_version);
        }
    })
    .await?;
    Ok(state)
}

/// Every event of `stream` recorded at or before `until` (all when `None`), decoded.
pub async fn read_decoded(
    store: &EventStore,
    stream: &str,
    until: Option<DateTime<Utc>>,
) -> Result<Vec<Decoded>, LoadError> {
    let mut out = Vec::new();
    for_each(store, stream, 0, |recorded, event| {
        if until.is_none_or(|t| recorded.recorded_at <= t) {
            out.push(Decoded { recorded, event });
        }
    })
    .await?;
    Ok(out)
}

/// Runs a command on the aggregate of `stream`: `decide` on `state`, append
/// its changes with `state`'s version as the expected one (plus the other
/// streams' own expectations), fold what was written into `state`. On a
/// conflict of the own stream (or a fixed event id already used there),
/// reads the tail and decides again; after [`OPTIMISTIC_ROUNDS`] such
/// rounds it holds the stream's lock while it reads, decides and appends
/// (see [`crate::store::StreamLock`]), so a command that keeps meeting
/// another replica's writes still completes.
///
/// `state` should be fresh (see [`refresh`]); a stale one only costs a retry.
pub async fn execute<A, T, E>(
    store: &EventStore,
    stream: &str,
    state: &mut A,
    metadata: &Value,
    mut decide: impl FnMut(&A) -> Result<Changes<T>, E>,
) -> Result<T, ExecuteError<E>>
where
    A: Aggregate,
{
    for _ in 0..OPTIMISTIC_ROUNDS {
        let changes = decide(state).map_err(ExecuteError::Rejected)?;
        if changes.is_empty() {
            return Ok(changes.outcome);
        }
        match store
            .append(appends(stream, state, metadata, &changes))
            .await
        {
            Ok(result) => {
                written(store, stream, state, &changes.events, &result).await;
                return Ok(changes.outcome);
            }
            Err(AppendError::Conflict { stream: at, .. }) if at == stream => {}
            Err(AppendError::EventIdReused { .. }) if changes.first_event_id.is_some() => {}
            Err(other) => return Err(ExecuteError::Append(other)),
        }
        refresh(store, stream, state).await?;
    }
    let mut lock = store.lock_stream(stream).await.map_err(LoadError::from)?;
    let mut folded = std::mem::take(state);
    loop {
        let page = lock
            .read(folded.version() + 1, PAGE)
            .await
            .map_err(LoadError::from)?;
        let full = page.len() as i64 == PAGE;
        decode_page(stream, page, &mut fold_into(&mut folded))?;
        if !full {
            break;
        }
    }
    *state = folded;
    let changes = decide(state).map_err(ExecuteError::Rejected)?;
    if changes.is_empty() {
        return Ok(changes.outcome);
    }
    match lock
        .append(appends(stream, state, metadata, &changes))
        .await
    {
        Ok(result) => {
            written(store, stream, state, &changes.events, &result).await;
            Ok(changes.outcome)
        }
        // Cannot happen while the lock is held; said rather than assumed.
        Err(AppendError::Conflict { stream: at, .. }) if at == stream => {
            Err(ExecuteError::Contention(stream.to_owned()))
        }
        Err(other) => Err(ExecuteError::Append(other)),
    }
}

/// Folds what an append wrote into `state`, snapshotting when due.
async fn written<A: Aggregate>(
    store: &EventStore,
    stream: &str,
    state: &mut A,
    events: &[LicenseEvent],
    result: &AppendResult,
) {
    let before = state.version();
    fold_written(stream, state, events, result);
    maybe_snapshot(store, stream, before, state).await;
}

fn appends<A: Aggregate, T>(
    stream: &str,
    state: &A,
    metadata: &Value,
    changes: &Changes<T>,
) -> Vec<StreamAppend> {
    let own = changes
        .events
        .iter()
        .enumerate()
        .map(|(i, e)| match (i, changes.first_event_id) {
            (0, Some(id)) => new_event_with_id(id, e, metadata),
            _ => new_event(e, metadata),
        })
        .collect();
    let mut out = vec![StreamAppend::new(stream, state.expected(), own)];
    for (other, expected, events) in &changes.also {
        out.push(StreamAppend::new(
            other.clone(),
            *expected,
            events.iter().map(|e| new_event(e, metadata)).collect(),
        ));
    }
    out
}

fn fold_written<A: Aggregate>(
    stream: &str,
    state: &mut A,
    events: &[LicenseEvent],
    result: &AppendResult,
) {
    let mut folded = std::mem::take(state);
    for event in events {
        folded = folded.apply_event(event);
    }
    if let Some(version) = result.version_of(stream) {
        folded.set_version(version);
    }
    *state = folded;
}

impl crate::license::Decision {
    /// The changes of a license decision: its license events on the license
    /// stream, its session events (close markers) on their session streams.
    /// The first session stream (the one a release or an expiry closes) is
    /// expected at `session_expected`; the others (sessions a suspension or a
    /// seat reduction revokes) at any version.
    pub fn into_changes(
        self,
        session_expected: ExpectedVersion,
    ) -> Changes<crate::license::Outcome> {
        let sessions = self.sessions();
        let mut changes = Changes::new(self.license_events, self.outcome);
        for (i, session) in sessions.into_iter().enumerate() {
            let events = self
                .session_events
                .iter()
                .filter(|e| e.session_id() == Some(session))
                .cloned()
                .collect();
            let expected = if i == 0 {
                session_expected
            } else {
                ExpectedVersion::Any
            };
            changes = changes.also(session.stream_name(), expected, events);
        }
        changes
    }
}
