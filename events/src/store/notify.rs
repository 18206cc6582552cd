//! Waking tailers after commits: this process's at once, in memory; other
//! processes' by `pg_notify`, outside the appending transactions.

use super::NOTIFY_CHANNEL;
use sqlx::PgPool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Wakes tailers after commits. This process's own tailers are woken at
/// once, in memory. Other processes' tailers get a `pg_notify`, sent outside
/// the appending transactions (Postgres serialises the commits of notifying
/// transactions on one global lock) and at most once per [`NOTIFY_GAP`]:
/// pokes that arrive meanwhile are folded into the next one.
pub(super) struct Notifier {
    pool: PgPool,
    /// Bumped on every poke; each tailer of this process watches it.
    local: watch::Sender<u64>,
    /// 0 idle, 1 notifying, 2 notifying and poked again.
    state: Mutex<u8>,
    /// When the last `pg_notify` was sent.
    last: Mutex<Option<Instant>>,
}

/// Least time between two `pg_notify` of one process. A `pg_notify` costs a
/// transaction and two round trips (sqlx pings the connection when it goes
/// back to its pool): one per append cost a single writer a fifth of its
/// rate. Other processes' tailers learn of a commit up to this much later
/// under load, and at once after a quiet spell.
pub const NOTIFY_GAP: Duration = Duration::from_millis(5);

impl Notifier {
    pub(super) fn new(pool: PgPool) -> Arc<Self> {
        Arc::new(Self {
            pool,
            local: watch::Sender::new(0),
            state: Mutex::new(0),
            last: Mutex::new(None),
        })
    }

    /// What this process's tailers watch.
    pub(super) fn watch(&self) -> watch::Receiver<u64> {
        self.local.subscribe()
    }

    /// Something was committed: wake this process's tailers, and make sure a
    /// notification follows for the others.
    pub(super) fn poke(self: &Arc<Self>) {
        self.local.send_modify(|n| *n = n.wrapping_add(1));
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if *state == 0 {
            *state = 1;
            tokio::spawn(self.clone().run());
        } else {
            *state = 2;
        }
    }

    async fn run(self: Arc<Self>) {
        loop {
            let since = *self.last.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(wait) = since.map(|at| NOTIFY_GAP.saturating_sub(at.elapsed())) {
                tokio::time::sleep(wait).await;
            }
            // Pokes so far are covered by the notification about to be sent.
            *self.state.lock().unwrap_or_else(|p| p.into_inner()) = 1;
            *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            if let Err(err) = sqlx::query("SELECT pg_notify($1, '')")
                .bind(NOTIFY_CHANNEL)
                .execute(&self.pool)
                .await
            {
                tracing::debug!(error = %err, "waking tailers failed; they poll");
            }
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if *state == 2 {
                *state = 1;
            } else {
                *state = 0;
                return;
            }
        }
    }
}
