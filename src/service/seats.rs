//! Seat allocation commands: acquire, release, expiry (and what the reaper
//! asks before expiring). Each is a license-stream decision run through
//! [`Licenses::run`]; release and expiry also close the session stream in
//! the same append, expecting the session version they read, so a racing
//! heartbeat and an expiry cannot both win.

use super::{Acquisition, Actor, Licenses, ServiceError};
use crate::metrics;
use events::aggregate::MAX_ATTEMPTS;
use events::catalog::QueueLeaveReason;
use events::envelope::now;
use events::ids::{HardwareId, IdempotencyKey, LicenseId, SessionId};
use events::license::QueueStatus;
use events::license::{DomainError, LicenseCommand, Outcome};
use events::session::current_deadline;
use events::store::AppendError;

/// What an acquire asks for.
#[derive(Debug, Clone)]
pub struct SeatRequest {
    /// The machine.
    pub hardware_id: HardwareId,
    /// The request's `Idempotency-Key`.
    pub idempotency_key: Option<IdempotencyKey>,
    /// Wait in the queue up to this many seconds if no seat is free.
    pub wait_secs: Option<u32>,
    /// Borrow the seat for this many seconds.
    pub borrow_secs: Option<u32>,
}

/// A license as the reaper sees it.
#[derive(Debug, Clone, Default)]
pub struct Due {
    /// Sessions whose acquire-time deadline passed.
    pub due: Vec<SessionId>,
    /// Every live session.
    pub live: Vec<SessionId>,
    /// Acquires wait in its queue.
    pub waiting: bool,
}

/// Where a waiter stands, as its caller sees it.
#[derive(Debug, Clone)]
pub enum QueueView {
    /// Still waiting.
    Waiting {
        /// 1 = next in line.
        position: usize,
        /// Waiters in all.
        waiters: usize,
        /// It gives up then.
        wait_until: chrono::DateTime<chrono::Utc>,
    },
    /// Granted; the session's deadline while it lives.
    Granted {
        /// `None` once the granted session ended.
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Left without a seat.
    Left(QueueLeaveReason),
}

impl Licenses {
    /// Acquires a seat (or returns the caller's live session for this machine or key).
    pub async fn acquire(
        &self,
        actor: &Actor,
        license_id: LicenseId,
        hardware_id: HardwareId,
        idempotency_key: Option<IdempotencyKey>,
    ) -> Result<Acquisition, ServiceError> {
        let request = SeatRequest {
            hardware_id,
            idempotency_key,
            wait_secs: None,
            borrow_secs: None,
        };
        self.acquire_as(actor, license_id, request, SessionId::new())
            .await
    }

    /// [`Licenses::acquire`], naming the new session `session_id` if one is
    /// granted (so a caller can wait for its token before asking): an
    /// existing session keeps its own id.
    pub async fn acquire_as(
        &self,
        actor: &Actor,
        license_id: LicenseId,
        request: SeatRequest,
        session_id: SessionId,
    ) -> Result<Acquisition, ServiceError> {
        let SeatRequest {
            hardware_id,
            idempotency_key,
            wait_secs,
            borrow_secs,
        } = request;
        let user = actor.user.clone();
        let outcome = self
            .run(license_id, Some(actor), |_| {
                Ok((
                    LicenseCommand::Acquire {
                        borrow_secs,
                        wait_secs,
                        session_id,
                        user_id: user.clone(),
                        hardware_id: hardware_id.clone(),
                        groups: actor.groups.clone(),
                        idempotency_key: idempotency_key.clone(),
                        now: now(),
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
                let counter = if existing {
                    metrics::ACQUIRES_EXISTING
                } else {
                    metrics::ACQUIRES
                };
                ::metrics::counter!(counter).increment(1);
                self.sessions.remember_license(session_id, license_id);
                let expires_at = if existing {
                    let view = self.sessions.view(&self.store, session_id).await?;
                    current_deadline(expires_at, &view.state)
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
            Outcome::Denied { reason, retry_at } => {
                ::metrics::counter!(metrics::DENIALS).increment(1);
                Ok(Acquisition::Denied {
                    license_id,
                    reason,
                    retry_at,
                })
            }
            Outcome::Queued {
                session_id,
                position,
                wait_until,
                existing,
            } => {
                if !existing {
                    ::metrics::counter!(metrics::QUEUED).increment(1);
                }
                Ok(Acquisition::Queued {
                    license_id,
                    session_id,
                    position,
                    wait_until,
                    existing,
                })
            }
            Outcome::Done => Err(ServiceError::Contention),
        }
    }

    /// Where the waiter `session` of `license_id` stands, as `actor` may
    /// see it (an admin sees every waiter of the tenant).
    pub async fn queue_status(
        &self,
        actor: &Actor,
        license_id: LicenseId,
        session: SessionId,
    ) -> Result<QueueView, ServiceError> {
        let state = self.license(license_id, Some(&actor.tenant)).await?;
        let user = (!actor.admin).then_some(&actor.user);
        Ok(match state.queue_status(&session, user) {
            QueueStatus::Waiting {
                waiter,
                position,
                waiters,
            } => QueueView::Waiting {
                position,
                waiters,
                wait_until: waiter.wait_until,
            },
            QueueStatus::Granted => QueueView::Granted {
                expires_at: self.deadline(session).await?,
            },
            QueueStatus::Left(reason) => QueueView::Left(reason),
            QueueStatus::Unknown => return Err(ServiceError::NotFound("waiter")),
        })
    }

    /// Leaves the queue (the waiter, or an admin of the tenant).
    pub async fn leave_queue(
        &self,
        actor: &Actor,
        license_id: LicenseId,
        session: SessionId,
    ) -> Result<(), ServiceError> {
        let user = (!actor.admin).then(|| actor.user.clone());
        let result = self
            .run(license_id, Some(actor), |_| {
                Ok((
                    LicenseCommand::LeaveQueue {
                        session_id: session,
                        user_id: user.clone(),
                    },
                    None,
                ))
            })
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(ServiceError::Domain(DomainError::NotWaiting)) => {
                Err(ServiceError::NotFound("waiter"))
            }
            Err(other) => Err(other),
        }
    }

    /// Serves `license_id`'s queue now (the reaper): times out waiters and
    /// grants the seats that freed without an event (lingers and token
    /// holds that lapsed, a policy change, a reinstatement).
    pub async fn promote(&self, license_id: LicenseId) -> Result<(), ServiceError> {
        self.run(license_id, None, |_| {
            Ok((LicenseCommand::Promote { now: now() }, None))
        })
        .await
        .map(|_| ())
    }

    /// Releases a session (its holder, or an admin of the tenant).
    pub async fn release(&self, actor: &Actor, session: SessionId) -> Result<(), ServiceError> {
        let license_id = self.owned_session(actor, session).await?.license_id;
        for _ in 0..MAX_ATTEMPTS {
            let view = self.sessions.view(&self.store, session).await?;
            if view.state.closed.is_some() {
                return Err(ServiceError::NotFound("session"));
            }
            let expected = events::aggregate::Aggregate::expected(&view.state);
            let result = self
                .run(license_id, Some(actor), |state| {
                    // As the holder (its release lingers), or as an admin
                    // releasing someone else's session (it frees the seat).
                    let own = state
                        .sessions
                        .get(&session)
                        .is_some_and(|s| s.user_id == actor.user);
                    let user = (own || !actor.admin).then(|| actor.user.clone());
                    Ok((
                        LicenseCommand::Release {
                            session_id: session,
                            user_id: user,
                            now: now(),
                        },
                        Some(expected),
                    ))
                })
                .await;
            match result {
                Ok(_) => {
                    ::metrics::counter!(metrics::RELEASES).increment(1);
                    return Ok(());
                }
                // The session stream moved (a heartbeat or a token): re-read it.
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

    /// What the reaper looks at in a license: sessions whose acquire-time
    /// deadline has passed (heartbeats may have extended them since), every
    /// live one, and whether acquires wait in its queue.
    pub async fn due_sessions(
        &self,
        id: LicenseId,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Due, ServiceError> {
        let cached = self.entry(id);
        let mut state = cached.lock().await;
        self.refresh(id, &mut state).await?;
        Ok(Due {
            due: state.sessions_due(now).map(|(s, _)| s).collect(),
            live: state.sessions.keys().copied().collect(),
            waiting: !state.queue.is_empty(),
        })
    }

    /// Ends a session whose deadline passed (the reaper). Returns false when a
    /// heartbeat, a release or another reaper got there first.
    pub async fn expire(
        &self,
        license_id: LicenseId,
        session: SessionId,
    ) -> Result<bool, ServiceError> {
        let Some(acquired_deadline) = self.acquired_deadline(license_id, session).await? else {
            return Ok(false);
        };
        self.sessions.forget(session);
        let view = self.sessions.view(&self.store, session).await?;
        let deadline = current_deadline(acquired_deadline, &view.state);
        let now = now();
        if view.state.closed.is_some() || deadline > now {
            return Ok(false);
        }
        let expected = events::aggregate::Aggregate::expected(&view.state);
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
        let Some(acquired_deadline) = self.acquired_deadline(license_id, session).await? else {
            return Ok(None);
        };
        let view = self.sessions.view(&self.store, session).await?;
        Ok(view
            .state
            .closed
            .is_none()
            .then(|| current_deadline(acquired_deadline, &view.state)))
    }

    /// The deadline a live session got at acquire (`None`: not live).
    async fn acquired_deadline(
        &self,
        license_id: LicenseId,
        session: SessionId,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, ServiceError> {
        self.with_session_license(license_id, session, |state| {
            state.sessions.get(&session).map(|live| live.expires_at)
        })
        .await
    }
}
