//! The reaper: ends sessions whose deadline passed without a heartbeat, by
//! appending `SessionExpired` (license stream) and `SessionClosed` (session
//! stream) atomically, with the session stream's expected version. A
//! heartbeat that lands first wins by stream version; so does another
//! reaper, which makes several reapers safe (they only waste a little work).
//! It also serves the queue of each license where acquires wait: waiters
//! whose wait ran out leave it, and seats freed without an event (a lapsed
//! linger or token hold, a policy change, a reinstatement) go to waiters.

use crate::metrics;
use crate::service::Licenses;
use chrono::{DateTime, Utc};
use events::ids::{LicenseId, SessionId};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How often the list of licenses is re-read.
const LICENSE_LIST_TTL: Duration = Duration::from_secs(10);

/// Runs the reaper until `shutdown`, checking every `interval`.
pub async fn run(
    licenses: Arc<Licenses>,
    interval: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut reaper = Reaper::default();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(interval) => {}
        }
        match reaper.sweep(&licenses).await {
            Ok(expired) => ::metrics::counter!(metrics::EXPIRIES).increment(expired),
            Err(err) => {
                tracing::warn!(error = %format!("{err:#}"), "reaper sweep failed; retrying next tick")
            }
        }
    }
}

/// Remembers deadlines it has seen, so that a session kept alive by
/// heartbeats is only re-read when its last known deadline passes.
#[derive(Default)]
pub struct Reaper {
    licenses: Vec<LicenseId>,
    listed_at: Option<Instant>,
    known_deadlines: HashMap<SessionId, DateTime<Utc>>,
}

impl Reaper {
    /// One pass over every license; returns how many sessions it expired.
    pub async fn sweep(&mut self, licenses: &Licenses) -> anyhow::Result<u64> {
        if self
            .listed_at
            .is_none_or(|t| t.elapsed() > LICENSE_LIST_TTL)
        {
            self.licenses = licenses.issued(None).await?;
            self.listed_at = Some(Instant::now());
        }
        let now = Utc::now();
        let mut expired = 0;
        let mut live = std::collections::HashSet::new();
        for license_id in self.licenses.clone() {
            // One broken license (an undecodable stream, a failing append)
            // must not stop the sweep of the others.
            match self
                .sweep_license(licenses, license_id, now, &mut live)
                .await
            {
                Ok(n) => expired += n,
                Err(err) => {
                    ::metrics::counter!(metrics::REAP_ERRORS).increment(1);
                    tracing::warn!(license = %license_id, error = %format!("{err:#}"), "reaping a license failed; continuing with the others");
                }
            }
        }
        self.known_deadlines.retain(|s, _| live.contains(s));
        Ok(expired)
    }

    async fn sweep_license(
        &mut self,
        licenses: &Licenses,
        license_id: LicenseId,
        now: DateTime<Utc>,
        live: &mut std::collections::HashSet<SessionId>,
    ) -> anyhow::Result<u64> {
        let mut expired = 0;
        let found = licenses.due_sessions(license_id, now).await?;
        live.extend(found.live);
        for session in found.due {
            if self.known_deadlines.get(&session).is_some_and(|d| *d > now) {
                continue;
            }
            if licenses.expire(license_id, session).await? {
                expired += 1;
                self.known_deadlines.remove(&session);
            } else if let Some(deadline) = licenses.deadline(session).await? {
                self.known_deadlines.insert(session, deadline);
            }
        }
        if found.waiting {
            // Seats a lapsed linger or token hold frees appear without an
            // event, and waiters time out: serve the queue now.
            licenses.promote(license_id).await?;
        }
        Ok(expired)
    }
}
