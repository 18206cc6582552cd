//! `ledger seats`: proof from the log that no license ever had more seats in
//! use than it owned (invariants 1 and 11 of the architecture).
//!
//! Per license, replays its stream with `events::license::apply` (the live
//! rules: seats in force, live sessions, strictness, token lifetime) merged,
//! by recorded time then position, with the tokens recorded in each of its
//! sessions' streams, and proves:
//!
//! - `over_allocation`: every `SeatAcquired` found fewer live sessions than
//!   the seats in force;
//! - `tokens_over_seats` (strict licenses): whenever a session holding no
//!   unexpired token received one, the sessions holding an unexpired token,
//!   it included, were at most the seats in force. A token is valid from its
//!   `TokenIssued`'s `recorded_at` until its `expires_at` (one token
//!   lifetime when absent). The count only grows at such instants, so
//!   checking them proves every instant;
//! - `token_after_close`: no `TokenIssued` follows its stream's `SessionClosed`;
//! - `token_outlives_session`: no token expires after the
//!   `tokens_valid_until` of the event that ended its session.
//!
//! Every violation is counted; the first of each license (by position) is
//! kept. Only the session streams named by the license's `SeatAcquired`
//! events are read. This module reads the log and renders; the walk itself
//! is pure ([`check_license`], in `seats/proof.rs`).
//!
//! Must not: write to the log, or restate a seat rule the fold answers.

mod proof;

pub use proof::check_license;

use crate::history::Timed;
use crate::time::fmt_time;
use chrono::{DateTime, Utc};
use events::catalog::LicenseEvent;
use events::ids::{LicenseId, SessionId};
use events::store::EventStore;
use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt::Write as _;

/// The property a violation breaks.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// A seat was granted while every seat was taken.
    OverAllocation,
    /// Strict license: more sessions held an unexpired token than there were seats.
    TokensOverSeats,
    /// A token was recorded after its session's close marker.
    TokenAfterClose,
    /// A token expires after its ended session's `tokens_valid_until`.
    TokenOutlivesSession,
}

impl Rule {
    /// The wire name (`over_allocation`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::OverAllocation => "over_allocation",
            Self::TokensOverSeats => "tokens_over_seats",
            Self::TokenAfterClose => "token_after_close",
            Self::TokenOutlivesSession => "token_outlives_session",
        }
    }
}

/// One broken property, at the event that broke it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Violation {
    /// The license.
    pub license_id: String,
    /// What was broken.
    pub rule: Rule,
    /// Log position of the offending event.
    pub position: i64,
    /// When it was recorded.
    pub at: DateTime<Utc>,
    /// The session it concerns.
    pub session_id: String,
    /// Seats in use counting the offending grant or token (the two count rules).
    pub count: Option<usize>,
    /// Seats in force then (the two count rules).
    pub seats: Option<u32>,
    /// What happened, in words.
    pub detail: String,
}

/// What was checked on one license, and what was found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LicenseSeats {
    /// The license.
    pub license_id: String,
    /// Owning tenant (empty if the stream has no `LicenseIssued`).
    pub tenant: String,
    /// Product.
    pub product: String,
    /// Seat count at the end of the log.
    pub seats: u32,
    /// Strict seat accounting.
    pub strict: bool,
    /// License-stream events replayed.
    pub events: usize,
    /// Session streams read.
    pub sessions: usize,
    /// `SeatAcquired` events checked.
    pub grants_checked: u64,
    /// Most live sessions right after a grant...
    pub peak_live: usize,
    /// ...and the seats in force then.
    pub peak_live_seats: u32,
    /// `TokenIssued` events checked.
    pub tokens_checked: u64,
    /// Most sessions holding an unexpired token at one instant...
    pub peak_tokens: usize,
    /// ...the seats in force then...
    pub peak_tokens_seats: u32,
    /// ...and that instant.
    pub peak_tokens_at: Option<DateTime<Utc>>,
    /// Violations found.
    pub violations: u64,
    /// The first one, by position.
    pub first_violation: Option<Violation>,
}

/// The result of `ledger seats`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SeatsReport {
    /// One entry per license checked.
    pub licenses: Vec<LicenseSeats>,
    /// Violations over all licenses.
    pub violations: u64,
    /// The first violation in the log (lowest position).
    pub first_violation: Option<Violation>,
}

/// A license stream and each of its sessions' streams, in version order.
#[derive(Debug, Clone)]
pub struct History {
    /// The license.
    pub license: LicenseId,
    /// Its stream.
    pub events: Vec<Timed>,
    /// The streams of the sessions its `SeatAcquired` events name.
    pub sessions: Vec<(SessionId, Vec<Timed>)>,
}

/// Reads `license`'s history; an error when the log has no such license.
pub async fn load(store: &EventStore, license: LicenseId) -> anyhow::Result<History> {
    let stream = license.stream_name();
    if store.stream_version(&stream).await?.is_none() {
        anyhow::bail!("license {license} not found in the log (no stream {stream})");
    }
    let events = crate::history::read_stream(store, &stream, None).await?;
    let ids: BTreeSet<SessionId> = events
        .iter()
        .filter_map(|e| match &e.event {
            LicenseEvent::SeatAcquired { session_id, .. } => Some(*session_id),
            _ => None,
        })
        .collect();
    let mut sessions = Vec::with_capacity(ids.len());
    for id in ids {
        sessions.push((
            id,
            crate::history::read_stream(store, &id.stream_name(), None).await?,
        ));
    }
    Ok(History {
        license,
        events,
        sessions,
    })
}

/// Checks `licenses`, one at a time.
pub async fn check(store: &EventStore, licenses: &[LicenseId]) -> anyhow::Result<SeatsReport> {
    let mut out = Vec::with_capacity(licenses.len());
    for id in licenses {
        out.push(check_license(&load(store, *id).await?));
    }
    let first_violation = out
        .iter()
        .filter_map(|l| l.first_violation.clone())
        .min_by_key(|v| v.position);
    Ok(SeatsReport {
        violations: out.iter().map(|l| l.violations).sum(),
        licenses: out,
        first_violation,
    })
}

impl Violation {
    /// One line: license, rule, position, instant, what happened.
    pub fn render(&self) -> String {
        format!(
            "license {}, rule {}, position {}, at {}: {}",
            self.license_id,
            self.rule.as_str(),
            self.position,
            fmt_time(self.at),
            self.detail
        )
    }
}

impl SeatsReport {
    /// True when no violation was found.
    pub fn is_ok(&self) -> bool {
        self.violations == 0
    }

    /// Text rendering: a summary per license, the first violation, the verdict.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for l in &self.licenses {
            let _ = writeln!(
                out,
                "license {} (tenant {}, product {}): {} seat(s), {}",
                l.license_id,
                l.tenant,
                l.product,
                l.seats,
                if l.strict { "strict" } else { "not strict" }
            );
            let _ = writeln!(
                out,
                "  grants checked: {}, peak {} live session(s) at a grant (seats then: {})",
                l.grants_checked, l.peak_live, l.peak_live_seats
            );
            let _ = match l.peak_tokens_at {
                None => writeln!(out, "  tokens checked: {}", l.tokens_checked),
                Some(at) => writeln!(
                    out,
                    "  tokens checked: {}, peak {} session(s) holding an unexpired token at {} (seats then: {})",
                    l.tokens_checked,
                    l.peak_tokens,
                    fmt_time(at),
                    l.peak_tokens_seats
                ),
            };
            if !l.strict && l.peak_tokens > l.peak_tokens_seats as usize {
                let _ = writeln!(out, "  note: not strict, so tokens may outlive their seats");
            }
            let _ = match &l.first_violation {
                None => writeln!(out, "  violations: 0"),
                Some(v) => writeln!(
                    out,
                    "  violations: {}, first: {} at position {}",
                    l.violations,
                    v.rule.as_str(),
                    v.position
                ),
            };
        }
        let _ = writeln!(
            out,
            "checked {} license(s): {} violation(s)",
            self.licenses.len(),
            self.violations
        );
        if let Some(v) = &self.first_violation {
            let _ = writeln!(out, "FIRST VIOLATION: {}", v.render());
        }
        let _ = writeln!(
            out,
            "RESULT: {}",
            if self.is_ok() { "OK" } else { "FAILED" }
        );
        out
    }
}

#[cfg(test)]
mod tests;
