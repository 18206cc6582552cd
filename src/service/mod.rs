//! Command handling: load an aggregate, `decide`, append with the expected
//! version, retry on a conflict. The rules live in `events` (pure); this
//! module only moves state between them and the log.
//!
//! License states are cached in memory and brought up to date by reading
//! only the stream's tail (a stream can hold millions of events). Acquires
//! of one license are serialized per process by the license's async mutex,
//! so replicas only conflict with each other, never with themselves.
//! Heartbeats never take that mutex: they append to their own session
//! stream, with the session's cached version as the expected version.

pub mod envelope;
pub mod lookup;
mod sessions;

use envelope::{decode, new_event, EventContext};
use events::catalog::{CatalogError, DenialReason};
use events::ids::{HardwareId, IdempotencyKey, LicenseId, ProductId, SessionId, TenantId, UserId};
use events::license::{
    self, decide, DomainError, LicenseCommand, LicenseInfo, LicenseState, Outcome,
};
use events::store::{AppendError, EventStore, ExpectedVersion, StoreError, StreamAppend};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use sessions::SessionView;

/// Most attempts of a command that keeps meeting concurrent writers.
const MAX_ATTEMPTS: usize = 16;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The license or session does not exist *for this caller*.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The caller's tenant has several licenses; it must name one.
    #[error("the tenant has several licenses; name one with license_id")]
    AmbiguousLicense(Vec<LicenseId>),
    /// The command broke a business rule.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// Concurrent writers kept winning.
    #[error("too many concurrent changes; retry")]
    Contention,
    /// The log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An append failed for a technical reason.
    #[error(transparent)]
    Append(#[from] AppendError),
    /// A stored event could not be decoded.
    #[error(transparent)]
    Decode(#[from] CatalogError),
}

impl From<sqlx::Error> for ServiceError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(StoreError::Database(e))
    }
}

/// Who is acting.
#[derive(Debug, Clone)]
pub struct Actor {
    /// Tenant of the caller.
    pub tenant: TenantId,
    /// The caller (`sub`).
    pub user: UserId,
    /// Holds the `license-admin` role.
    pub admin: bool,
    /// Request id, stored as the events' correlation id.
    pub correlation_id: Option<String>,
}

/// What an acquire produced.
#[derive(Debug, Clone)]
pub enum Acquisition {
    /// A seat is held (new, or the caller's existing one).
    Granted {
        /// The license.
        license_id: LicenseId,
        /// The session.
        session_id: SessionId,
        /// Current deadline.
        expires_at: chrono::DateTime<chrono::Utc>,
        /// True when an existing session was returned (retry, same machine).
        existing: bool,
    },
    /// Turned away (the denial is recorded in the log).
    Denied {
        /// The license.
        license_id: LicenseId,
        /// Why.
        reason: DenialReason,
    },
}

type Shared = Arc<tokio::sync::Mutex<LicenseState>>;

/// The command side of the service.
pub struct Licenses {
    store: EventStore,
    licenses: Mutex<HashMap<LicenseId, Shared>>,
    sessions: sessions::SessionCache,
}

impl Licenses {
    /// Commands over `store`.
    pub fn new(store: EventStore) -> Self {
        Self {
            store,
            licenses: Mutex::default(),
            sessions: sessions::SessionCache::default(),
        }
    }

    /// The underlying log.
    pub fn store(&self) -> &EventStore {
        &self.store
    }

    fn entry(&self, id: LicenseId) -> Shared {
        let mut map = self.licenses.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id).or_default().clone()
    }

    /// Reads the stream's tail into `state`.
    async fn refresh(&self, id: LicenseId, state: &mut LicenseState) -> Result<(), ServiceError> {
        loop {
            let tail = self
                .store
                .read_stream(&id.stream_name(), state.version + 1, 1000)
                .await?;
            let n = tail.len();
            for recorded in &tail {
                let event = decode(recorded)?;
                *state = license::apply(std::mem::take(state), &event);
                state.version = recorded.stream_version;
            }
            if n < 1000 {
                return Ok(());
            }
        }
    }

    /// The license's current state, if it was issued to `tenant` (any tenant when `None`).
    pub async fn license(
        &self,
        id: LicenseId,
        tenant: Option<&TenantId>,
    ) -> Result<LicenseState, ServiceError> {
        let shared = self.entry(id);
        let mut state = shared.lock().await;
        self.refresh(id, &mut state).await?;
        match &state.issued {
            Some(info) if tenant.is_none_or(|t| *t == info.tenant_id) => Ok(state.clone()),
            _ => Err(ServiceError::NotFound("license")),
        }
    }

    /// Runs a license command: decide on the current state, append with the
    /// expected version, retry on conflicts of the license stream.
    /// `session_expected` adds the session stream's expected version (release, expiry).
    async fn run(
        &self,
        id: LicenseId,
        actor: Option<&Actor>,
        command: impl Fn(
            &LicenseState,
        ) -> Result<(LicenseCommand, Option<ExpectedVersion>), ServiceError>,
    ) -> Result<Outcome, ServiceError> {
        let shared = self.entry(id);
        let mut state = shared.lock().await;
        self.refresh(id, &mut state).await?;
        for _ in 0..MAX_ATTEMPTS {
            let Some(info) = state.issued.clone() else {
                if let Ok((cmd @ LicenseCommand::Issue { .. }, _)) = command(&state) {
                    return self
                        .append_decision(id, &mut state, cmd, None, actor, None)
                        .await;
                }
                return Err(ServiceError::NotFound("license"));
            };
            if actor.is_some_and(|a| a.tenant != info.tenant_id) {
                return Err(ServiceError::NotFound("license"));
            }
            let (cmd, session_expected) = command(&state)?;
            match self
                .append_decision(
                    id,
                    &mut state,
                    cmd,
                    session_expected,
                    actor,
                    Some(&info.product),
                )
                .await
            {
                Err(ServiceError::Append(AppendError::Conflict { stream, .. }))
                    if stream == id.stream_name() =>
                {
                    self.refresh(id, &mut state).await?;
                }
                other => return other,
            }
        }
        Err(ServiceError::Contention)
    }

    async fn append_decision(
        &self,
        id: LicenseId,
        state: &mut LicenseState,
        cmd: LicenseCommand,
        session_expected: Option<ExpectedVersion>,
        actor: Option<&Actor>,
        product: Option<&ProductId>,
    ) -> Result<Outcome, ServiceError> {
        let (tenant, product) = match (&cmd, &state.issued) {
            (
                LicenseCommand::Issue {
                    tenant_id, product, ..
                },
                _,
            ) => (tenant_id.clone(), product.clone()),
            (_, Some(info)) => (
                info.tenant_id.clone(),
                product.cloned().unwrap_or_else(|| info.product.clone()),
            ),
            (_, None) => return Err(ServiceError::NotFound("license")),
        };
        let decision = decide(state, cmd)?;
        if decision.is_empty() {
            return Ok(decision.outcome);
        }
        let context = EventContext {
            tenant_id: tenant,
            license_id: id,
            product,
            actor: actor.map(|a| a.user.to_string()),
            correlation_id: actor.and_then(|a| a.correlation_id.clone()),
        };
        let metadata = context.metadata();
        let expected = if state.version < 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(state.version)
        };
        let mut appends = vec![StreamAppend::new(
            id.stream_name(),
            expected,
            decision
                .license_events
                .iter()
                .map(|e| new_event(e, &metadata))
                .collect(),
        )];
        let session = decision.session_stream();
        if let Some(session) = session {
            appends.push(StreamAppend::new(
                session.stream_name(),
                session_expected.unwrap_or(ExpectedVersion::Any),
                decision
                    .session_events
                    .iter()
                    .map(|e| new_event(e, &metadata))
                    .collect(),
            ));
        }
        let result = self.store.append(appends).await?;
        for event in &decision.license_events {
            *state = license::apply(std::mem::take(state), event);
        }
        state.version = result
            .version_of(&id.stream_name())
            .unwrap_or(state.version);
        if let Some(session) = session {
            self.sessions.forget(session);
        }
        Ok(decision.outcome)
    }

    /// Issues a new license to the admin's tenant.
    pub async fn issue(
        &self,
        actor: &Actor,
        product: ProductId,
        seats: u32,
        session_ttl_secs: u32,
        valid_until: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<LicenseState, ServiceError> {
        let id = LicenseId::new();
        let tenant = actor.tenant.clone();
        self.run(id, Some(actor), |_| {
            Ok((
                LicenseCommand::Issue {
                    tenant_id: tenant.clone(),
                    license_id: id,
                    product: product.clone(),
                    seats,
                    session_ttl_secs,
                    valid_until,
                },
                None,
            ))
        })
        .await?;
        self.license(id, None).await
    }

    /// Seats, suspension, reinstatement (admin commands without a session).
    pub async fn administer(
        &self,
        actor: &Actor,
        id: LicenseId,
        cmd: LicenseCommand,
    ) -> Result<LicenseState, ServiceError> {
        self.run(id, Some(actor), |_| Ok((cmd.clone(), None)))
            .await?;
        self.license(id, None).await
    }

    /// Picks the license an acquire targets.
    pub async fn resolve_license(
        &self,
        actor: &Actor,
        requested: Option<LicenseId>,
    ) -> Result<LicenseId, ServiceError> {
        if let Some(id) = requested {
            return Ok(id);
        }
        let mine = lookup::licenses_of_tenant(self.store.pool(), &actor.tenant).await?;
        match mine.as_slice() {
            [] => Err(ServiceError::NotFound("license")),
            [one] => Ok(*one),
            _ => Err(ServiceError::AmbiguousLicense(mine)),
        }
    }

    /// Acquires a seat (or returns the caller's live session for this machine or key).
    pub async fn acquire(
        &self,
        actor: &Actor,
        license_id: LicenseId,
        hardware_id: HardwareId,
        idempotency_key: Option<IdempotencyKey>,
    ) -> Result<Acquisition, ServiceError> {
        let session_id = SessionId::new();
        let user = actor.user.clone();
        let outcome = self
            .run(license_id, Some(actor), |_| {
                Ok((
                    LicenseCommand::Acquire {
                        session_id,
                        user_id: user.clone(),
                        hardware_id: hardware_id.clone(),
                        idempotency_key: idempotency_key.clone(),
                        now: envelope::now(),
                    },
                    None,
                ))
            })
            .await?;
        match outcome {
            Outcome::Acquired {
                session_id,
                expires_at,
                existing,
            } => {
                self.sessions.remember_license(session_id, license_id);
                let expires_at = if existing {
                    let view = self.sessions.view(&self.store, session_id).await?;
                    events::session::current_deadline(expires_at, &view.state)
                } else {
                    expires_at
                };
                Ok(Acquisition::Granted {
                    license_id,
                    session_id,
                    expires_at,
                    existing,
                })
            }
            Outcome::Denied(reason) => Ok(Acquisition::Denied { license_id, reason }),
            Outcome::Done => Err(ServiceError::Contention),
        }
    }

    /// Finds the license of a session the caller may act on (own session, or any
    /// session of the tenant for admins). Anything else is "not found".
    async fn owned_session(
        &self,
        actor: &Actor,
        session: SessionId,
    ) -> Result<(LicenseId, LicenseInfo), ServiceError> {
        let license_id = self
            .sessions
            .license_of(&self.store, session)
            .await?
            .ok_or(ServiceError::NotFound("session"))?;
        let user = (!actor.admin).then_some(&actor.user);
        let info = self
            .with_session_license(license_id, session, |state| {
                let info = state
                    .issued
                    .as_ref()
                    .filter(|i| i.tenant_id == actor.tenant)?;
                state.live_session(session, user).ok()?;
                Some(info.clone())
            })
            .await?
            .ok_or(ServiceError::NotFound("session"))?;
        Ok((license_id, info))
    }

    /// Runs `f` on the license state under its lock, without copying it;
    /// reads the stream's tail first only when the state does not know
    /// `session` yet (it was acquired through another replica).
    async fn with_session_license<T>(
        &self,
        id: LicenseId,
        session: SessionId,
        f: impl FnOnce(&LicenseState) -> T,
    ) -> Result<T, ServiceError> {
        let shared = self.entry(id);
        let mut state = shared.lock().await;
        if !state.sessions.contains_key(&session) {
            self.refresh(id, &mut state).await?;
        }
        Ok(f(&state))
    }

    /// Sessions of a license whose acquire-time deadline has passed (reaper
    /// candidates; heartbeats may have extended them since).
    pub async fn due_sessions(
        &self,
        id: LicenseId,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(Vec<SessionId>, Vec<SessionId>), ServiceError> {
        let shared = self.entry(id);
        let mut state = shared.lock().await;
        self.refresh(id, &mut state).await?;
        let due = state.sessions_due(now).map(|(s, _)| s).collect();
        Ok((due, state.sessions.keys().copied().collect()))
    }

    /// Records a heartbeat; returns the new deadline.
    pub async fn heartbeat(
        &self,
        actor: &Actor,
        session: SessionId,
    ) -> Result<chrono::DateTime<chrono::Utc>, ServiceError> {
        let (license_id, info) = self.owned_session(actor, session).await?;
        let context = EventContext {
            tenant_id: info.tenant_id.clone(),
            license_id,
            product: info.product.clone(),
            actor: Some(actor.user.to_string()),
            correlation_id: actor.correlation_id.clone(),
        };
        self.sessions
            .heartbeat(&self.store, session, info.session_ttl(), &context)
            .await
    }

    /// Releases a session (its holder, or an admin of the tenant).
    pub async fn release(&self, actor: &Actor, session: SessionId) -> Result<(), ServiceError> {
        let (license_id, _) = self.owned_session(actor, session).await?;
        let user = (!actor.admin).then(|| actor.user.clone());
        for _ in 0..MAX_ATTEMPTS {
            let view = self.sessions.view(&self.store, session).await?;
            if view.state.closed.is_some() {
                return Err(ServiceError::NotFound("session"));
            }
            let expected = sessions::expected(&view.state);
            let result = self
                .run(license_id, Some(actor), |_| {
                    Ok((
                        LicenseCommand::Release {
                            session_id: session,
                            user_id: user.clone(),
                        },
                        Some(expected),
                    ))
                })
                .await;
            match result {
                Ok(_) => return Ok(()),
                Err(ServiceError::Append(AppendError::Conflict { .. })) => {
                    self.sessions.forget(session)
                }
                Err(ServiceError::Domain(DomainError::SessionNotFound)) => {
                    return Err(ServiceError::NotFound("session"))
                }
                Err(other) => return Err(other),
            }
        }
        Err(ServiceError::Contention)
    }

    /// Ends a session whose deadline passed (the reaper). Returns false when a
    /// heartbeat, a release or another reaper got there first.
    pub async fn expire(
        &self,
        license_id: LicenseId,
        session: SessionId,
    ) -> Result<bool, ServiceError> {
        let Some(acquired_deadline) = self
            .with_session_license(license_id, session, |state| {
                state.sessions.get(&session).map(|live| live.expires_at)
            })
            .await?
        else {
            return Ok(false);
        };
        self.sessions.forget(session);
        let view = self.sessions.view(&self.store, session).await?;
        let deadline = events::session::current_deadline(acquired_deadline, &view.state);
        let now = envelope::now();
        if view.state.closed.is_some() || deadline > now {
            return Ok(false);
        }
        let expected = sessions::expected(&view.state);
        let result = self
            .run(license_id, None, |_| {
                Ok((
                    LicenseCommand::Expire {
                        session_id: session,
                        deadline,
                        now,
                    },
                    Some(expected),
                ))
            })
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(ServiceError::Append(AppendError::Conflict { .. }))
            | Err(ServiceError::Domain(DomainError::SessionNotFound))
            | Err(ServiceError::Domain(DomainError::NotYetExpired(_))) => Ok(false),
            Err(other) => Err(other),
        }
    }

    /// The current deadline of a live session (`None`: unknown or closed).
    pub async fn deadline(
        &self,
        session: SessionId,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, ServiceError> {
        let Some(license_id) = self.sessions.license_of(&self.store, session).await? else {
            return Ok(None);
        };
        let Some(acquired_deadline) = self
            .with_session_license(license_id, session, |state| {
                state.sessions.get(&session).map(|live| live.expires_at)
            })
            .await?
        else {
            return Ok(None);
        };
        let view = self.sessions.view(&self.store, session).await?;
        Ok(view
            .state
            .closed
            .is_none()
            .then(|| events::session::current_deadline(acquired_deadline, &view.state)))
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
