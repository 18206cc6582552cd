//! A held seat: heartbeats in the background, the current license token,
//! the state on a watch channel, release on request or drop.

use crate::{Client, Error, VerifiedToken};
use chrono::{DateTime, Utc};
use rand::Rng;
use reqwest::Method;
use serde::Deserialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use uuid::Uuid;

/// The state of a lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseStatus {
    /// The last heartbeat was answered: the seat is held.
    Ok,
    /// Heartbeats are failing (network, server, authentication); the seat
    /// is still held until `deadline` and the lease keeps trying. An
    /// application may keep running on its token until that token expires.
    Degraded {
        /// The last failure.
        error: String,
        /// The session's deadline as last confirmed by the server.
        deadline: DateTime<Utc>,
    },
    /// The seat is gone (the server ended the session, or no heartbeat got
    /// through before its deadline). The lease stops.
    Lost {
        /// Why.
        reason: String,
    },
    /// Released by the application.
    Released,
}

/// The heartbeat answer fields the lease uses.
#[derive(Deserialize)]
struct Beat {
    expires_at: DateTime<Utc>,
    #[serde(default)]
    license_token: Option<String>,
    heartbeat_interval_secs: i64,
    server_time: DateTime<Utc>,
}

/// What one heartbeat told (see [`Client::heartbeat`]).
#[derive(Clone, Debug)]
pub struct Heartbeat {
    /// The session's new deadline.
    pub expires_at: DateTime<Utc>,
    /// The session's current license token, verified (`None` until minted).
    pub token: Option<VerifiedToken>,
    /// Heartbeat again within this.
    pub interval: Duration,
    /// The server's clock.
    pub server_time: DateTime<Utc>,
}

impl Client {
    /// One heartbeat of `session` (no retries), its token verified. A
    /// [`Lease`] does this by itself; this is for programs that keep the
    /// session id themselves (e.g. a CLI across invocations).
    pub async fn heartbeat(&self, session: Uuid) -> Result<Heartbeat, Error> {
        let path = format!("/api/v1/licenses/heartbeat/{session}");
        let answer = self.send(Method::PUT, &path, None, None).await?;
        if !answer.status.is_success() {
            return Err(crate::error::from_answer(
                answer.status,
                &answer.headers,
                &answer.body,
            ));
        }
        let beat: Beat = answer.json()?;
        self.verifier()
            .saw_server_time(beat.server_time.timestamp_millis());
        let token = match beat.license_token {
            Some(token) => Some(self.verifier().verify_fetching(&token).await?),
            None => None,
        };
        Ok(Heartbeat {
            expires_at: beat.expires_at,
            token,
            interval: Duration::from_secs(beat.heartbeat_interval_secs.max(1) as u64),
            server_time: beat.server_time,
        })
    }

    /// Releases `session` (retrying transient failures). A session already
    /// gone (expired, or released by an earlier try) counts as released.
    pub async fn release(&self, session: Uuid) -> Result<(), Error> {
        let path = format!("/api/v1/licenses/release/{session}");
        match self.call(Method::DELETE, &path, None, None).await {
            Ok(_) | Err(Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(err),
        }
    }
}

struct Shared {
    client: Client,
    session_id: Uuid,
    license_id: Uuid,
    token: Mutex<Option<VerifiedToken>>,
    deadline: Mutex<DateTime<Utc>>,
    status: watch::Sender<LeaseStatus>,
    stop: Notify,
}

/// A seat held by this process. Heartbeats run on the Tokio runtime that
/// acquired it until [`Lease::release`], the loss of the seat, or drop
/// (which releases it, best effort).
pub struct Lease {
    shared: Arc<Shared>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("session_id", &self.shared.session_id)
            .field("status", &*self.shared.status.borrow())
            .finish()
    }
}

/// Wait before retry `attempt` (1-based): 1 s doubling to 30 s, with full
/// jitter (so that clients cut off together do not return together).
pub(crate) fn backoff(attempt: u32) -> Duration {
    let cap =
        Duration::from_secs(1 << attempt.saturating_sub(1).min(5)).min(Duration::from_secs(30));
    cap.mul_f64(rand::rng().random_range(0.5..=1.0))
}

impl Lease {
    pub(crate) fn start(
        client: Client,
        session_id: Uuid,
        license_id: Uuid,
        deadline: DateTime<Utc>,
        token: Option<VerifiedToken>,
    ) -> Self {
        let (status, _) = watch::channel(LeaseStatus::Ok);
        let shared = Arc::new(Shared {
            client,
            session_id,
            license_id,
            token: Mutex::new(token),
            deadline: Mutex::new(deadline),
            status,
            stop: Notify::new(),
        });
        let task = tokio::spawn(run(shared.clone()));
        Self {
            shared,
            task: Some(task),
        }
    }

    /// The session holding the seat.
    pub fn session_id(&self) -> Uuid {
        self.shared.session_id
    }

    /// The license the seat belongs to.
    pub fn license_id(&self) -> Uuid {
        self.shared.license_id
    }

    /// The current license token, verified (`None` while the first one is
    /// still being minted). Renewed tokens replace it as heartbeats bring them.
    pub fn token(&self) -> Option<VerifiedToken> {
        lock(&self.shared.token).clone()
    }

    /// The session's deadline as last confirmed by the server.
    pub fn deadline(&self) -> DateTime<Utc> {
        *lock(&self.shared.deadline)
    }

    /// The lease's state now.
    pub fn status(&self) -> LeaseStatus {
        self.shared.status.borrow().clone()
    }

    /// A receiver of every change of state.
    pub fn watch(&self) -> watch::Receiver<LeaseStatus> {
        self.shared.status.subscribe()
    }

    /// Stops heartbeating and gives the seat back.
    pub async fn release(mut self) -> Result<(), Error> {
        self.stop_heartbeats().await;
        let result = release(&self.shared).await;
        self.shared.status.send_replace(LeaseStatus::Released);
        result
    }

    /// Stops heartbeating but keeps the seat (until its deadline, or until
    /// someone heartbeats or releases the session by its id); returns the
    /// session id.
    pub async fn detach(mut self) -> Uuid {
        self.stop_heartbeats().await;
        self.shared.status.send_replace(LeaseStatus::Released);
        self.shared.session_id
    }

    async fn stop_heartbeats(&mut self) {
        self.shared.stop.notify_one();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

async fn release(shared: &Shared) -> Result<(), Error> {
    shared.client.release(shared.session_id).await
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(task) = self.task.take() else {
            return;
        };
        task.abort();
        if matches!(
            *self.shared.status.borrow(),
            LeaseStatus::Lost { .. } | LeaseStatus::Released
        ) {
            return;
        }
        // Best effort: give the seat back if a runtime is still there to do it.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let shared = self.shared.clone();
            runtime.spawn(async move {
                if let Err(err) = release(&shared).await {
                    tracing::warn!(error = %err, session = %shared.session_id, "releasing a dropped lease failed; the seat expires at its deadline");
                }
                shared.status.send_replace(LeaseStatus::Released);
            });
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The heartbeat loop.
async fn run(shared: Arc<Shared>) {
    let first = (*lock(&shared.deadline) - Utc::now()) / 3;
    let mut interval = first.to_std().unwrap_or(Duration::from_secs(1));
    let mut failures = 0u32;
    loop {
        let wait = if failures == 0 {
            // Early rather than late: the server's interval is the longest.
            interval.mul_f64(rand::rng().random_range(0.8..=1.0))
        } else {
            let left = (*lock(&shared.deadline) - Utc::now())
                .to_std()
                .unwrap_or_default();
            backoff(failures)
                .min(left / 2)
                .max(Duration::from_millis(100))
        };
        tokio::select! {
            _ = shared.stop.notified() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        match heartbeat(&shared).await {
            Ok(next) => {
                failures = 0;
                interval = next;
                shared.status.send_if_modified(|s| {
                    let changed = *s != LeaseStatus::Ok;
                    *s = LeaseStatus::Ok;
                    changed
                });
            }
            Err(Error::NotFound { .. }) => {
                lost(
                    &shared,
                    "the server no longer holds this session (expired, released or revoked)",
                );
                return;
            }
            Err(err) => {
                failures += 1;
                let deadline = *lock(&shared.deadline);
                if Utc::now() >= deadline {
                    lost(
                        &shared,
                        &format!("no heartbeat got through before the deadline: {err}"),
                    );
                    return;
                }
                tracing::warn!(error = %err, session = %shared.session_id, "heartbeat failed; retrying");
                shared.status.send_replace(LeaseStatus::Degraded {
                    error: err.to_string(),
                    deadline,
                });
            }
        }
    }
}

fn lost(shared: &Shared, reason: &str) {
    tracing::warn!(session = %shared.session_id, reason, "the seat is lost");
    shared.status.send_replace(LeaseStatus::Lost {
        reason: reason.to_owned(),
    });
}

/// One heartbeat (no retries: the loop retries); returns the next interval.
async fn heartbeat(shared: &Shared) -> Result<Duration, Error> {
    let beat = shared.client.heartbeat(shared.session_id).await?;
    *lock(&shared.deadline) = beat.expires_at;
    if let Some(token) = beat.token {
        *lock(&shared.token) = Some(token);
    }
    Ok(beat.interval)
}
