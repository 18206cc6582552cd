//! Command handling: load an aggregate, `decide`, append with the expected
//! version, retry on a conflict — through the one seam
//! [`events::aggregate::execute`]. The rules live in `events` (pure); this
//! module only adds who may do what (tenants, holders, admins) and caches.
//!
//! License states are cached in memory and brought up to date by reading
//! only the stream's tail (a stream can hold millions of events). Acquires
//! of one license are serialized per process by the license's async mutex,
//! so replicas only conflict with each other, never with themselves.
//! Heartbeats never take that mutex: they append to their own session
//! stream, with the session's cached version as the expected version.
//!
//! Must not: build SQL (the store does), or know HTTP.

mod seats;
mod sessions;

use events::aggregate::{self, ExecuteError, LoadError};
use events::catalog::{CatalogError, DenialReason};
use events::envelope::Metadata;
use events::ids::{LicenseId, ProductId, SessionId, TenantId, UserId};
use events::license::{decide, DomainError, LicenseCommand, LicenseState, Outcome};
use events::store::{AppendError, EventStore, ExpectedVersion, StoreError};
use lru::LruCache;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

pub use seats::{Due, QueueView, SeatRequest};
pub use sessions::{Heartbeat, SessionView};

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
    /// An append failed for a technical reason (or conflicted on another stream).
    #[error(transparent)]
    Append(#[from] AppendError),
    /// A stored event could not be decoded.
    #[error(transparent)]
    Decode(#[from] CatalogError),
}

impl From<LoadError> for ServiceError {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Store(e) => Self::Store(e),
            LoadError::Decode { source, .. } => Self::Decode(source),
        }
    }
}

impl From<ExecuteError<ServiceError>> for ServiceError {
    fn from(e: ExecuteError<ServiceError>) -> Self {
        match e {
            ExecuteError::Rejected(e) => e,
            ExecuteError::Load(e) => e.into(),
            ExecuteError::Append(e) => Self::Append(e),
            ExecuteError::Contention(_) => Self::Contention,
        }
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
    /// The caller's groups (the JWT's `groups` claim), for reservations.
    pub groups: Vec<events::ids::GroupId>,
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
    /// No seat now; waiting in the license's queue (`QueueJoined` in the log).
    Queued {
        /// The license.
        license_id: LicenseId,
        /// The session a grant will create.
        session_id: SessionId,
        /// 1 = next in line.
        position: usize,
        /// It gives up then.
        wait_until: chrono::DateTime<chrono::Utc>,
        /// It was waiting already (a retry).
        existing: bool,
    },
    /// Turned away (the denial is recorded in the log).
    Denied {
        /// The license.
        license_id: LicenseId,
        /// Why.
        reason: DenialReason,
        /// When a seat frees, when known (strict seat accounting).
        retry_at: Option<chrono::DateTime<chrono::Utc>>,
    },
}

/// The terms of a new license.
#[derive(Debug, Clone)]
pub struct Terms {
    /// Licensed product.
    pub product: ProductId,
    /// Concurrent seats.
    pub seats: u32,
    /// Session TTL without heartbeats, seconds.
    pub session_ttl_secs: u32,
    /// No new seats after this instant.
    pub valid_until: Option<chrono::DateTime<chrono::Utc>>,
    /// License-token lifetime, seconds (`None`: the default).
    pub token_ttl_secs: Option<u32>,
    /// Strict seat accounting.
    pub strict_seats: bool,
}

/// A cached license state behind the mutex that serializes its commands.
type CachedLicense = Arc<tokio::sync::Mutex<LicenseState>>;

/// Most license states cached per process (least recently used evicted).
pub const LICENSE_CACHE_CAP: usize = 10_000;
/// Most sessions whose owner and state are cached per process.
pub const SESSION_CACHE_CAP: usize = 100_000;

/// The command side of the service.
pub struct Licenses {
    store: EventStore,
    /// Issued licenses only: an id that names no license is never cached.
    licenses: Mutex<LruCache<LicenseId, CachedLicense>>,
    sessions: sessions::SessionCache,
}

fn cap(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}

/// The metadata of events of license `id`, written on behalf of `actor`.
fn metadata(
    tenant: TenantId,
    id: LicenseId,
    product: ProductId,
    actor: Option<&Actor>,
) -> Metadata {
    Metadata {
        actor: actor.map(|a| a.user.to_string()),
        correlation_id: actor.and_then(|a| a.correlation_id.clone()),
        ..Metadata::license(tenant, id, product)
    }
}

impl Licenses {
    /// Commands over `store`, with the default cache caps.
    pub fn new(store: EventStore) -> Self {
        Self::with_caps(store, LICENSE_CACHE_CAP, SESSION_CACHE_CAP)
    }

    /// Commands over `store`, caching at most `licenses` license states and
    /// `sessions` sessions (each at least 1).
    pub fn with_caps(store: EventStore, licenses: usize, sessions: usize) -> Self {
        Self {
            store,
            licenses: Mutex::new(LruCache::new(cap(licenses))),
            sessions: sessions::SessionCache::new(cap(sessions)),
        }
    }

    /// How many licenses and sessions are cached now.
    pub fn cached(&self) -> (usize, usize) {
        let licenses = self
            .licenses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len();
        (licenses, self.sessions.len())
    }

    /// The underlying log.
    pub fn store(&self) -> &EventStore {
        &self.store
    }

    fn entry(&self, id: LicenseId) -> CachedLicense {
        let mut map = self.licenses.lock().unwrap_or_else(|p| p.into_inner());
        map.get_or_insert(id, CachedLicense::default).clone()
    }

    /// Drops `id`'s entry if its stream turned out to hold no license.
    fn forget_if_unknown(&self, id: LicenseId, state: &LicenseState) {
        if state.issued.is_none() {
            self.licenses
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop(&id);
        }
    }

    /// Reads the stream's tail into `state`.
    async fn refresh(&self, id: LicenseId, state: &mut LicenseState) -> Result<(), ServiceError> {
        Ok(aggregate::refresh(&self.store, &id.stream_name(), state).await?)
    }

    /// The license's current state, if it was issued to `tenant` (any tenant when `None`).
    pub async fn license(
        &self,
        id: LicenseId,
        tenant: Option<&TenantId>,
    ) -> Result<LicenseState, ServiceError> {
        let cached = self.entry(id);
        let mut state = cached.lock().await;
        self.refresh(id, &mut state).await?;
        self.forget_if_unknown(id, &state);
        match &state.issued {
            Some(info) if tenant.is_none_or(|t| *t == info.tenant_id) => Ok(state.clone()),
            _ => Err(ServiceError::NotFound("license")),
        }
    }

    /// Licenses issued to `tenant` (every license when `None`), oldest first.
    pub async fn issued(&self, tenant: Option<&TenantId>) -> Result<Vec<LicenseId>, ServiceError> {
        Ok(self.store.issued_licenses(tenant).await?)
    }

    /// Runs a license command through the seam: decide on the current state,
    /// append with the expected version, retry on conflicts of the license
    /// stream. `command` may add the session stream's expected version
    /// (release, expiry); a conflict there is returned to the caller.
    async fn run(
        &self,
        id: LicenseId,
        actor: Option<&Actor>,
        command: impl Fn(
            &LicenseState,
        ) -> Result<(LicenseCommand, Option<ExpectedVersion>), ServiceError>,
    ) -> Result<Outcome, ServiceError> {
        let cached = self.entry(id);
        let mut state = cached.lock().await;
        // A cached state is trusted to be current: the append expects its
        // version, so if another replica moved the stream, the append
        // conflicts and `execute` reads the tail and decides again.
        if state.version < 0 {
            self.refresh(id, &mut state).await?;
        }
        // Tenant and product never change once issued; an issue brings its own.
        let meta = match (&state.issued, command(&state)?.0) {
            (Some(info), _) => metadata(info.tenant_id.clone(), id, info.product.clone(), actor),
            (
                None,
                LicenseCommand::Issue {
                    tenant_id, product, ..
                },
            ) => metadata(tenant_id, id, product, actor),
            (None, _) => {
                self.forget_if_unknown(id, &state);
                return Err(ServiceError::NotFound("license"));
            }
        };
        if actor.is_some_and(|a| Some(&a.tenant) != meta.tenant_id.as_ref()) {
            return Err(ServiceError::NotFound("license"));
        }
        let mut touched = Vec::new();
        let outcome = aggregate::execute(
            &self.store,
            &id.stream_name(),
            &mut *state,
            &meta.to_value(),
            |state| {
                let (cmd, session_expected) = command(state)?;
                let decision = decide(state, cmd)?;
                touched = decision.sessions();
                Ok(decision.into_changes(session_expected.unwrap_or(ExpectedVersion::Any)))
            },
        )
        .await;
        for session in touched {
            self.sessions.forget(session);
        }
        Ok(outcome?)
    }

    /// Issues a new license to the admin's tenant (default token terms).
    pub async fn issue(
        &self,
        actor: &Actor,
        product: ProductId,
        seats: u32,
        session_ttl_secs: u32,
        valid_until: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<LicenseState, ServiceError> {
        let terms = Terms {
            product,
            seats,
            session_ttl_secs,
            valid_until,
            token_ttl_secs: None,
            strict_seats: false,
        };
        self.issue_terms(actor, terms).await
    }

    /// Issues a new license with `terms` to the admin's tenant.
    pub async fn issue_terms(
        &self,
        actor: &Actor,
        terms: Terms,
    ) -> Result<LicenseState, ServiceError> {
        let id = LicenseId::new();
        let tenant = actor.tenant.clone();
        self.run(id, Some(actor), |_| {
            Ok((
                LicenseCommand::Issue {
                    tenant_id: tenant.clone(),
                    license_id: id,
                    product: terms.product.clone(),
                    seats: terms.seats,
                    session_ttl_secs: terms.session_ttl_secs,
                    valid_until: terms.valid_until,
                    token_ttl_secs: terms.token_ttl_secs,
                    strict_seats: terms.strict_seats,
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
        let mine = self.issued(Some(&actor.tenant)).await?;
        match mine.as_slice() {
            [] => Err(ServiceError::NotFound("license")),
            [one] => Ok(*one),
            _ => Err(ServiceError::AmbiguousLicense(mine)),
        }
    }
}
