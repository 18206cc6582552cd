//! Session streams: who owns a session, its cached state, heartbeats.
//!
//! A heartbeat appends to the session's own stream with the cached version
//! as the expected version; a conflict (a token was recorded, the session
//! was closed, another replica heartbeated) drops the cache entry and the
//! heartbeat re-decides on a fresh read. Entries are dropped when sessions
//! end, so the cache holds live sessions only.

use super::envelope::{decode, new_event, EventContext};
use super::{lookup, ServiceError, MAX_ATTEMPTS};
use chrono::{DateTime, TimeDelta, Utc};
use events::ids::{LicenseId, SessionId, UserId};
use events::session::{self, decide_heartbeat, SessionState};
use events::store::{AppendError, EventStore, ExpectedVersion};
use std::collections::HashMap;
use std::sync::Mutex;

/// A session as a caller may see it.
#[derive(Debug, Clone)]
pub struct SessionView {
    /// The session.
    pub session_id: SessionId,
    /// Its license.
    pub license_id: Option<LicenseId>,
    /// Its holder.
    pub user: Option<UserId>,
    /// Its stream's state (deadline, token, closed).
    pub state: SessionState,
}

/// The expected version that says "the session stream is as I read it".
pub fn expected(state: &SessionState) -> ExpectedVersion {
    if state.version < 0 {
        ExpectedVersion::NoStream
    } else {
        ExpectedVersion::Exact(state.version)
    }
}

#[derive(Default)]
pub(super) struct SessionCache {
    owners: Mutex<HashMap<SessionId, (LicenseId, Option<UserId>)>>,
    states: Mutex<HashMap<SessionId, SessionState>>,
}

impl SessionCache {
    pub(super) fn remember_license(&self, session: SessionId, license: LicenseId) {
        self.owners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(session)
            .or_insert((license, None));
    }

    pub(super) fn forget(&self, session: SessionId) {
        self.states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&session);
    }

    fn cached(&self, session: SessionId) -> Option<SessionState> {
        self.states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&session)
            .cloned()
    }

    fn store_state(&self, session: SessionId, state: SessionState) {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        if state.closed.is_some() {
            states.remove(&session);
        } else {
            states.insert(session, state);
        }
    }

    pub(super) async fn license_of(
        &self,
        store: &EventStore,
        session: SessionId,
    ) -> Result<Option<LicenseId>, ServiceError> {
        Ok(self
            .owner(store, session)
            .await?
            .map(|(license, _)| license))
    }

    async fn owner(
        &self,
        store: &EventStore,
        session: SessionId,
    ) -> Result<Option<(LicenseId, Option<UserId>)>, ServiceError> {
        if let Some(known) = self
            .owners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&session)
        {
            if known.1.is_some() {
                return Ok(Some(known.clone()));
            }
        }
        let found = lookup::owner_of_session(store.pool(), session).await?;
        if let Some((license, user)) = &found {
            self.owners
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(session, (*license, Some(user.clone())));
        }
        Ok(found.map(|(l, u)| (l, Some(u))))
    }

    /// Reads the whole session stream (it is short: heartbeats, a token, a close).
    async fn read(
        &self,
        store: &EventStore,
        session: SessionId,
    ) -> Result<SessionState, ServiceError> {
        let mut state = SessionState::default();
        let stream = session.stream_name();
        loop {
            let batch = store.read_stream(&stream, state.version + 1, 1000).await?;
            let n = batch.len();
            for recorded in &batch {
                state = session::apply(state, &decode(recorded)?);
                state.version = recorded.stream_version;
            }
            if n < 1000 {
                break;
            }
        }
        self.store_state(session, state.clone());
        Ok(state)
    }

    pub(super) async fn view(
        &self,
        store: &EventStore,
        session: SessionId,
    ) -> Result<SessionView, ServiceError> {
        let owner = self.owner(store, session).await?;
        let state = match self.cached(session) {
            Some(state) => state,
            None => self.read(store, session).await?,
        };
        Ok(SessionView {
            session_id: session,
            license_id: owner.as_ref().map(|(l, _)| *l),
            user: owner.and_then(|(_, u)| u),
            state,
        })
    }

    /// Appends a heartbeat; returns the new deadline.
    pub(super) async fn heartbeat(
        &self,
        store: &EventStore,
        session: SessionId,
        ttl: TimeDelta,
        context: &EventContext,
    ) -> Result<DateTime<Utc>, ServiceError> {
        let metadata = context.metadata();
        for _ in 0..MAX_ATTEMPTS {
            let state = match self.cached(session) {
                Some(state) => state,
                None => self.read(store, session).await?,
            };
            let now = super::envelope::now();
            let events = decide_heartbeat(&state, session, ttl, now)
                .map_err(|_| ServiceError::NotFound("session"))?;
            let new = events.iter().map(|e| new_event(e, &metadata)).collect();
            match store
                .append_to(&session.stream_name(), expected(&state), new)
                .await
            {
                Ok(result) => {
                    let mut next = state;
                    for event in &events {
                        next = session::apply(next, event);
                    }
                    next.version = result
                        .version_of(&session.stream_name())
                        .unwrap_or(next.version);
                    let deadline = next.expires_at.unwrap_or(now + ttl);
                    self.store_state(session, next);
                    return Ok(deadline);
                }
                Err(AppendError::Conflict { .. }) => self.forget(session),
                Err(other) => return Err(other.into()),
            }
        }
        Err(ServiceError::Contention)
    }
}
