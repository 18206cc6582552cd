//! Session streams: who owns a session, its cached state, heartbeats, and
//! what a caller may see of it.
//!
//! A heartbeat appends to the session's own stream with the cached version
//! as the expected version (through [`aggregate::execute`]); a conflict (a
//! token was recorded, the session was closed, another replica
//! heartbeated) re-reads the tail and re-decides. Entries are dropped when
//! sessions end, so the cache holds live sessions only.

use super::{metadata, Actor, Licenses, ServiceError};
use chrono::{DateTime, Utc};
use events::aggregate;
use events::catalog::CloseReason;
use events::envelope::now;
use events::ids::{LicenseId, SessionId, UserId};
use events::license::{LicenseCommand, LicenseInfo, LicenseState};
use events::session::{decide_heartbeat, SessionState, SessionToken};
use events::store::AppendError;
use events::store::EventStore;
use lru::LruCache;
use std::num::NonZeroUsize;
use std::sync::Mutex;

/// What a heartbeat answers.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    /// The new deadline.
    pub expires_at: DateTime<Utc>,
    /// The session's current token (`None` until the signer minted the first).
    pub token: Option<SessionToken>,
    /// A renewal is asked for and not answered yet.
    pub renewal_due: bool,
    /// The license's token lifetime.
    pub token_ttl: chrono::TimeDelta,
}

/// A live session the caller may act on.
pub(super) struct Owned {
    /// Its license.
    pub license_id: LicenseId,
    /// The license's terms.
    pub info: LicenseInfo,
    /// Borrowed until then (heartbeats never shorten that deadline).
    pub borrowed_until: Option<DateTime<Utc>>,
}

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

/// Owners (license, holder) and folded states of the sessions this process
/// saw, each at most `cap` (least recently used evicted; an evicted entry is
/// read again from the log when needed). Unknown sessions are never cached.
pub(super) struct SessionCache {
    owners: Mutex<LruCache<SessionId, (LicenseId, Option<UserId>)>>,
    states: Mutex<LruCache<SessionId, SessionState>>,
}

impl SessionCache {
    pub(super) fn new(cap: NonZeroUsize) -> Self {
        Self {
            owners: Mutex::new(LruCache::new(cap)),
            states: Mutex::new(LruCache::new(cap)),
        }
    }

    /// Sessions whose owner is cached.
    pub(super) fn len(&self) -> usize {
        self.owners.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub(super) fn remember_license(&self, session: SessionId, license: LicenseId) {
        self.owners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(session, || (license, None));
    }

    pub(super) fn forget(&self, session: SessionId) {
        self.states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop(&session);
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
            states.pop(&session);
        } else {
            states.put(session, state);
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
        let found = store.session_owner(session).await?;
        if let Some((license, user)) = &found {
            self.owners
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .put(session, (*license, Some(user.clone())));
        }
        Ok(found.map(|(l, u)| (l, Some(u))))
    }

    /// The cached state, or the stream folded (it is short: heartbeats, a token, a close).
    async fn state(
        &self,
        store: &EventStore,
        session: SessionId,
    ) -> Result<SessionState, ServiceError> {
        if let Some(state) = self.cached(session) {
            return Ok(state);
        }
        let state: SessionState = aggregate::load(store, &session.stream_name()).await?;
        self.store_state(session, state.clone());
        Ok(state)
    }

    pub(super) async fn view(
        &self,
        store: &EventStore,
        session: SessionId,
    ) -> Result<SessionView, ServiceError> {
        let owner = self.owner(store, session).await?;
        let state = self.state(store, session).await?;
        Ok(SessionView {
            session_id: session,
            license_id: owner.as_ref().map(|(l, _)| *l),
            user: owner.and_then(|(_, u)| u),
            state,
        })
    }
}

impl Licenses {
    /// Finds the license of a session the caller may act on (own session, or any
    /// session of the tenant for admins). Anything else is "not found".
    pub(super) async fn owned_session(
        &self,
        actor: &Actor,
        session: SessionId,
    ) -> Result<Owned, ServiceError> {
        let license_id = self
            .sessions
            .license_of(&self.store, session)
            .await?
            .ok_or(ServiceError::NotFound("session"))?;
        let user = (!actor.admin).then_some(&actor.user);
        let (info, borrowed_until) = self
            .with_session_license(license_id, session, |state| {
                let info = state
                    .issued
                    .as_ref()
                    .filter(|i| i.tenant_id == actor.tenant)?;
                let live = state.live_session(session, user).ok()?;
                Some((info.clone(), live.borrowed_until))
            })
            .await?
            .ok_or(ServiceError::NotFound("session"))?;
        Ok(Owned {
            license_id,
            info,
            borrowed_until,
        })
    }

    /// Runs `f` on the license state under its lock, without copying it;
    /// reads the stream's tail first only when the state does not know
    /// `session` yet (it was acquired through another replica).
    pub(super) async fn with_session_license<T>(
        &self,
        id: LicenseId,
        session: SessionId,
        f: impl FnOnce(&LicenseState) -> T,
    ) -> Result<T, ServiceError> {
        let cached = self.entry(id);
        let mut state = cached.lock().await;
        if !state.sessions.contains_key(&session) {
            self.refresh(id, &mut state).await?;
        }
        Ok(f(&state))
    }

    /// Records a heartbeat (asking for a token renewal when the current
    /// token is past half its life); returns the new deadline and the
    /// session's current token.
    pub async fn heartbeat(
        &self,
        actor: &Actor,
        session: SessionId,
    ) -> Result<Heartbeat, ServiceError> {
        let Owned {
            license_id,
            info,
            borrowed_until,
        } = match self.owned_session(actor, session).await {
            Err(ServiceError::NotFound(_)) => self.revive(actor, session).await?,
            found => found?,
        };
        let meta = metadata(
            info.tenant_id.clone(),
            license_id,
            info.product.clone(),
            Some(actor),
        );
        let (ttl, token_ttl) = (info.session_ttl(), info.token_ttl());
        let mut state = self.sessions.state(&self.store, session).await?;
        let stamped = now();
        let written = aggregate::execute(
            &self.store,
            &session.stream_name(),
            &mut state,
            &meta.to_value(),
            |state| {
                decide_heartbeat(state, session, ttl, token_ttl, stamped, borrowed_until)
                    .map(|events| aggregate::Changes::new(events, ()))
                    .map_err(|_| ServiceError::NotFound("session"))
            },
        )
        .await;
        match written {
            Ok(()) => {
                let beat = Heartbeat {
                    expires_at: state.expires_at.unwrap_or(stamped + ttl),
                    token: state.token.clone(),
                    renewal_due: state.renewal_due,
                    token_ttl,
                };
                self.sessions.store_state(session, state);
                ::metrics::counter!(crate::metrics::HEARTBEATS).increment(1);
                Ok(beat)
            }
            Err(err) => {
                self.sessions.forget(session);
                Err(err.into())
            }
        }
    }

    /// Brings back the caller's expired session when the license's policy
    /// has a revive window that still covers it and a seat is free
    /// (`SessionRevived` + `SessionReopened`, one append, expecting the
    /// session stream's version); anything else is "not found".
    async fn revive(&self, actor: &Actor, session: SessionId) -> Result<Owned, ServiceError> {
        let not_found = || ServiceError::NotFound("session");
        let license_id = self
            .sessions
            .license_of(&self.store, session)
            .await?
            .ok_or_else(not_found)?;
        // The cached license may not know the expiry yet (another replica's reaper).
        {
            let cached = self.entry(license_id);
            let mut state = cached.lock().await;
            self.refresh(license_id, &mut state).await?;
            if state.policy.revive_window_secs == 0 {
                return Err(not_found());
            }
        }
        self.sessions.forget(session);
        let view = self.sessions.view(&self.store, session).await?;
        if view.state.closed != Some(CloseReason::Expired) {
            return Err(not_found());
        }
        let expected = aggregate::Aggregate::expected(&view.state);
        let revived = self
            .run(license_id, Some(actor), |_| {
                let cmd = LicenseCommand::Revive {
                    session_id: session,
                    user_id: actor.user.clone(),
                    groups: actor.groups.clone(),
                    now: now(),
                };
                Ok((cmd, Some(expected)))
            })
            .await;
        self.sessions.forget(session);
        match revived {
            Ok(_) => {
                ::metrics::counter!(crate::metrics::REVIVALS).increment(1);
                self.owned_session(actor, session).await
            }
            // Not revivable, or a racing heartbeat or expiry moved the stream.
            Err(ServiceError::Domain(_) | ServiceError::Append(AppendError::Conflict { .. })) => {
                Err(not_found())
            }
            Err(other) => Err(other),
        }
    }

    /// A session the caller may see, with its token once minted.
    pub async fn session(
        &self,
        actor: &Actor,
        session: SessionId,
    ) -> Result<SessionView, ServiceError> {
        let license_id = self
            .sessions
            .license_of(&self.store, session)
            .await?
            .ok_or(ServiceError::NotFound("session"))?;
        // Checked under the license's lock, without copying its state (acquire's hot path).
        let same_tenant = self
            .with_session_license(license_id, session, |state| {
                state
                    .issued
                    .as_ref()
                    .is_some_and(|i| i.tenant_id == actor.tenant)
            })
            .await?;
        if !same_tenant {
            return Err(ServiceError::NotFound("session"));
        }
        self.sessions.forget(session); // read the stream: the token may have just been recorded
        let view = self.sessions.view(&self.store, session).await?;
        if !actor.admin && view.user.as_ref().is_some_and(|u| *u != actor.user) {
            return Err(ServiceError::NotFound("session"));
        }
        Ok(view)
    }
}
