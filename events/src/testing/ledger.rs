//! [`Ledger`]: license commands straight on the seam ([`crate::aggregate`]),
//! without the service's authorization or caches — so that the crates
//! below the service (projections, the audit tool) can write realistic
//! histories in their tests and benchmarks without depending on it.
//!
//! Every command reads its stream, decides with the real rules and appends
//! with the expected version; it is slower than the service and not for
//! production use.

use crate::aggregate::{self, Aggregate, Changes, ExecuteError};
use crate::envelope::{now, Metadata};
use crate::ids::{HardwareId, LicenseId, ProductId, SessionId, TenantId, UserId};
use crate::license::{decide, DomainError, LicenseCommand, LicenseState, Outcome};
use crate::session::{self, SessionState};
use crate::store::{EventStore, ExpectedVersion};
use chrono::{DateTime, Utc};

/// What a test command failed with.
pub type LedgerError = ExecuteError<DomainError>;

/// Commands over a store, for tests and benchmarks.
#[derive(Debug, Clone)]
pub struct Ledger {
    store: EventStore,
}

impl Ledger {
    /// Commands over `store`.
    pub fn new(store: EventStore) -> Self {
        Self { store }
    }

    /// The store.
    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// The license's state, folded from its stream.
    pub async fn license(&self, id: LicenseId) -> Result<LicenseState, LedgerError> {
        Ok(aggregate::load(&self.store, &id.stream_name()).await?)
    }

    /// The session's state, folded from its stream.
    pub async fn session(&self, id: SessionId) -> Result<SessionState, LedgerError> {
        Ok(aggregate::load(&self.store, &id.stream_name()).await?)
    }

    /// Issues a license to `tenant`; returns its id.
    pub async fn issue(
        &self,
        tenant_id: &TenantId,
        product: &ProductId,
        seats: u32,
        session_ttl_secs: u32,
    ) -> Result<LicenseId, LedgerError> {
        self.issue_with(tenant_id, product, seats, session_ttl_secs, None, false)
            .await
    }

    /// Issues a license with strict seat accounting (a freed seat is not
    /// granted again while a token of its session may be valid) and a token
    /// lifetime (`None`: the default); returns its id.
    pub async fn issue_strict(
        &self,
        tenant_id: &TenantId,
        product: &ProductId,
        seats: u32,
        session_ttl_secs: u32,
        token_ttl_secs: Option<u32>,
    ) -> Result<LicenseId, LedgerError> {
        self.issue_with(
            tenant_id,
            product,
            seats,
            session_ttl_secs,
            token_ttl_secs,
            true,
        )
        .await
    }

    async fn issue_with(
        &self,
        tenant_id: &TenantId,
        product: &ProductId,
        seats: u32,
        session_ttl_secs: u32,
        token_ttl_secs: Option<u32>,
        strict_seats: bool,
    ) -> Result<LicenseId, LedgerError> {
        let id = LicenseId::new();
        let command = LicenseCommand::Issue {
            tenant_id: tenant_id.clone(),
            license_id: id,
            product: product.clone(),
            seats,
            session_ttl_secs,
            valid_until: None,
            token_ttl_secs,
            strict_seats,
        };
        let meta = Metadata::license(tenant_id.clone(), id, product.clone());
        let mut state = LicenseState::default();
        aggregate::execute(
            &self.store,
            &id.stream_name(),
            &mut state,
            &meta.to_value(),
            |s| decide(s, command.clone()).map(|d| d.into_changes(ExpectedVersion::Any)),
        )
        .await?;
        Ok(id)
    }

    /// Runs a license command; `session_expected` guards the session stream
    /// of a release or expiry.
    pub async fn command(
        &self,
        id: LicenseId,
        command: LicenseCommand,
        session_expected: ExpectedVersion,
    ) -> Result<Outcome, LedgerError> {
        let stream = id.stream_name();
        let mut state: LicenseState = aggregate::load(&self.store, &stream).await?;
        let info = state
            .issued
            .clone()
            .ok_or(ExecuteError::Rejected(DomainError::NotIssued))?;
        let meta = Metadata::license(info.tenant_id, id, info.product);
        aggregate::execute(&self.store, &stream, &mut state, &meta.to_value(), |s| {
            decide(s, command.clone()).map(|d| d.into_changes(session_expected))
        })
        .await
    }

    /// `user` acquires a seat for machine `hardware`: the new session, or
    /// `None` when denied (the denial is recorded).
    pub async fn acquire(
        &self,
        id: LicenseId,
        user: &UserId,
        hardware: &HardwareId,
    ) -> Result<Option<SessionId>, LedgerError> {
        let command = LicenseCommand::Acquire {
            borrow_secs: None,
            wait_secs: None,
            session_id: SessionId::new(),
            user_id: user.clone(),
            hardware_id: hardware.clone(),
            groups: Vec::new(),
            idempotency_key: None,
            now: now(),
        };
        Ok(
            match self.command(id, command, ExpectedVersion::Any).await? {
                Outcome::Acquired { session_id, .. } => Some(session_id),
                _ => None,
            },
        )
    }

    /// Records a heartbeat of `session` (of license `id`); returns the new deadline.
    pub async fn heartbeat(
        &self,
        id: LicenseId,
        session: SessionId,
    ) -> Result<DateTime<Utc>, LedgerError> {
        let license = self.license(id).await?;
        let info = license
            .issued
            .ok_or(ExecuteError::Rejected(DomainError::NotIssued))?;
        let meta = Metadata::license(info.tenant_id.clone(), id, info.product.clone());
        let (ttl, token_ttl) = (info.session_ttl(), info.token_ttl());
        let stream = session.stream_name();
        let mut state: SessionState = aggregate::load(&self.store, &stream).await?;
        let stamped = now();
        aggregate::execute(&self.store, &stream, &mut state, &meta.to_value(), |s| {
            session::decide_heartbeat(s, session, ttl, token_ttl, stamped, None)
                .map(|e| Changes::new(e, ()))
        })
        .await?;
        Ok(stamped + ttl)
    }

    /// Releases `session` (as its holder would).
    pub async fn release(&self, id: LicenseId, session: SessionId) -> Result<(), LedgerError> {
        let expected = self.session(session).await?.expected();
        let command = LicenseCommand::Release {
            session_id: session,
            user_id: None,
            now: now(),
        };
        self.command(id, command, expected).await.map(|_| ())
    }

    /// Expires `session` if its deadline passed (as the reaper would).
    /// Returns false when it had not.
    pub async fn expire(&self, id: LicenseId, session: SessionId) -> Result<bool, LedgerError> {
        let license = self.license(id).await?;
        let Some(live) = license.sessions.get(&session) else {
            return Ok(false);
        };
        let state = self.session(session).await?;
        let command = LicenseCommand::Expire {
            session_id: session,
            deadline: session::current_deadline(live.expires_at, &state),
            now: now(),
        };
        match self.command(id, command, state.expected()).await {
            Ok(_) => Ok(true),
            Err(ExecuteError::Rejected(DomainError::NotYetExpired(_))) => Ok(false),
            Err(other) => Err(other),
        }
    }
}
