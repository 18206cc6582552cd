//! `ledger state --license ID --at TIME`: a license as it stood at an instant.
//!
//! Folds the license stream (events recorded at or before TIME) with
//! `events::license::apply`, then each live session's own stream with
//! `events::session::apply` for its deadline. A session whose deadline had
//! passed at TIME but that no `SessionExpired` had ended yet still held its
//! seat then: it is listed as "live (overdue)". The policy in force shows
//! too: its version, the overdraft, the seats a linger held, which
//! sessions hold overdraft, reserved or borrowed seats, and who waited in
//! the queue.

use crate::history::license_events;
use crate::time::fmt_time;
use chrono::{DateTime, Utc};
use events::aggregate;
use events::catalog::LicenseEvent;
use events::ids::{LicenseId, SessionId};
use events::license::{self, LicenseState};
use events::session::{current_deadline, SessionState};
use events::store::EventStore;
use serde::Serialize;
use std::fmt::Write as _;

/// A session holding a seat at the instant.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct SessionAt {
    /// The session.
    pub session_id: String,
    /// Holder.
    pub user: String,
    /// Machine.
    pub hardware: String,
    /// When its `SeatAcquired` was recorded.
    pub since: DateTime<Utc>,
    /// Its deadline at the instant (latest heartbeat, else the acquire's).
    pub deadline: DateTime<Utc>,
    /// `live`, or `live (overdue)` when the deadline had passed without a `SessionExpired` yet.
    pub status: String,
    /// It holds one of the policy's overdraft seats.
    #[serde(default)]
    pub overdraft: bool,
    /// The reservation it counts against.
    #[serde(default)]
    pub reservation: Option<String>,
    /// Borrowed (offline) until then.
    #[serde(default)]
    pub borrowed_until: Option<DateTime<Utc>>,
}

/// An acquire waiting in the queue at the instant.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct WaiterAt {
    /// 1 = next in line.
    pub position: usize,
    /// The session a grant would create.
    pub session_id: String,
    /// Who waited.
    pub user: String,
    /// Machine.
    pub hardware: String,
    /// When its `QueueJoined` was recorded.
    pub since: DateTime<Utc>,
    /// When it would give up.
    pub wait_until: DateTime<Utc>,
}

/// A license at an instant.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct StateAt {
    /// The license.
    pub license_id: String,
    /// The instant.
    pub at: DateTime<Utc>,
    /// Owning tenant.
    pub tenant: String,
    /// Product.
    pub product: String,
    /// Seat count in force.
    pub seats: u32,
    /// Seats held (live sessions, overdue ones included).
    pub seats_in_use: usize,
    /// Suspended at the instant.
    pub suspended: bool,
    /// The policy version in force (0: the default policy).
    #[serde(default)]
    pub policy_version: u32,
    /// The policy's overdraft seats, usable beyond `seats`.
    #[serde(default)]
    pub overdraft_seats: u32,
    /// Released seats the policy's linger still held at the instant.
    #[serde(default)]
    pub seats_lingering: usize,
    /// Seats borrowed (offline) at the instant, among those in use.
    #[serde(default)]
    pub seats_borrowed: usize,
    /// License-stream events folded.
    pub events_folded: usize,
    /// Live sessions, oldest first.
    pub sessions: Vec<SessionAt>,
    /// The queue, in order.
    #[serde(default)]
    pub waiters: Vec<WaiterAt>,
}

/// Computes the state of `license` at `at` from the log alone.
pub async fn state_at(
    store: &EventStore,
    license: LicenseId,
    at: DateTime<Utc>,
) -> anyhow::Result<StateAt> {
    let events = license_events(store, license, at).await?;
    let state = events
        .iter()
        .fold(LicenseState::default(), |s, e| license::apply(s, &e.event));
    let Some(info) = state.issued.clone() else {
        anyhow::bail!("license {license} was not issued yet at {}", fmt_time(at));
    };
    let recorded_at = |id: &SessionId, queued: bool| {
        events
            .iter()
            .find(|e| match &e.event {
                LicenseEvent::SeatAcquired { session_id, .. } => !queued && session_id == id,
                LicenseEvent::QueueJoined { session_id, .. } => queued && session_id == id,
                _ => false,
            })
            .map_or(at, |e| e.at)
    };
    let waiters = state
        .queue
        .iter()
        .enumerate()
        .map(|(i, w)| WaiterAt {
            position: i + 1,
            session_id: w.session_id.to_string(),
            user: w.user_id.to_string(),
            hardware: w.hardware_id.to_string(),
            since: recorded_at(&w.session_id, true),
            wait_until: w.wait_until,
        })
        .collect();
    let mut sessions = Vec::new();
    for (id, live) in &state.sessions {
        let since = recorded_at(id, false);
        let s: SessionState = aggregate::load_until(store, &id.stream_name(), at).await?;
        let deadline = current_deadline(live.expires_at, &s);
        let status = if deadline > at {
            "live"
        } else {
            "live (overdue)"
        };
        sessions.push(SessionAt {
            session_id: id.to_string(),
            user: live.user_id.to_string(),
            hardware: live.hardware_id.to_string(),
            since,
            deadline,
            status: status.to_owned(),
            overdraft: live.overdraft,
            reservation: live.reservation.as_ref().map(ToString::to_string),
            borrowed_until: live.borrowed_until,
        });
    }
    sessions.sort_by(|a, b| (a.since, &a.session_id).cmp(&(b.since, &b.session_id)));
    Ok(StateAt {
        license_id: license.to_string(),
        at,
        tenant: info.tenant_id.to_string(),
        product: info.product.to_string(),
        seats: info.seats,
        seats_in_use: sessions.len(),
        suspended: state.suspended,
        policy_version: state.policy_version,
        overdraft_seats: state.policy.overdraft_seats,
        seats_lingering: state.lingering_at(at).count(),
        seats_borrowed: sessions
            .iter()
            .filter(|s| s.borrowed_until.is_some())
            .count(),
        events_folded: events.len(),
        sessions,
        waiters,
    })
}

impl StateAt {
    /// Text rendering.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "license {} (tenant {}, product {}) at {}",
            self.license_id,
            self.tenant,
            self.product,
            fmt_time(self.at)
        );
        let overdraft = match self.overdraft_seats {
            0 => String::new(),
            n => format!(" (+{n} overdraft)"),
        };
        let lingering = match self.seats_lingering {
            0 => String::new(),
            n => format!(", {n} more held by a linger"),
        };
        let _ = writeln!(
            out,
            "seats: {} in use of {}{overdraft}{lingering}{}; policy version {}",
            self.seats_in_use,
            self.seats,
            if self.suspended { " (SUSPENDED)" } else { "" },
            self.policy_version
        );
        if self.seats_borrowed > 0 {
            let _ = writeln!(out, "borrowed: {} of the seats in use", self.seats_borrowed);
        }
        let overdue = self.sessions.iter().filter(|s| s.status != "live").count();
        if overdue > 0 {
            let _ = writeln!(
                out,
                "note: {overdue} session(s) were past their deadline but not yet ended by a SessionExpired event: they still held a seat"
            );
        }
        let _ = writeln!(
            out,
            "{:<36}  {:<20}  {:<20}  {:<27}  {:<27}  status",
            "session", "user", "hardware", "since", "deadline"
        );
        for s in &self.sessions {
            let mut status = s.status.clone();
            if s.overdraft {
                status.push_str(", overdraft");
            }
            if let Some(r) = &s.reservation {
                let _ = write!(status, ", reservation {r}");
            }
            if let Some(until) = s.borrowed_until {
                let _ = write!(status, ", borrowed until {}", fmt_time(until));
            }
            let _ = writeln!(
                out,
                "{:<36}  {:<20}  {:<20}  {:<27}  {:<27}  {}",
                s.session_id,
                s.user,
                s.hardware,
                fmt_time(s.since),
                fmt_time(s.deadline),
                status
            );
        }
        if !self.waiters.is_empty() {
            let _ = writeln!(out, "queue: {} waiting", self.waiters.len());
            for w in &self.waiters {
                let _ = writeln!(
                    out,
                    "  {:>3}. {:<36}  {:<20}  {:<20}  since {}  until {}",
                    w.position,
                    w.session_id,
                    w.user,
                    w.hardware,
                    fmt_time(w.since),
                    fmt_time(w.wait_until)
                );
            }
        }
        out
    }
}
