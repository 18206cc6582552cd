//! `ledger what-if`: the recorded demand of a window replayed under another
//! policy, side by side with what happened.
//!
//! The demand is what the log recorded: every acquire attempt (granted,
//! `SeatAcquired`, or turned away, `AcquireDenied`), every release, expiry
//! and revocation, and the license's seat and suspension changes. The
//! window starts from the license as the log had it at `from` (its live
//! sessions included); from then on the other policy is in force and each
//! recorded fact becomes the command it was, decided by the live rules
//! (`events::license::decide`). The simulated decisions form a license
//! stream of their own, which [`crate::report::license_report`] reads exactly as it
//! reads the recorded one, so both columns are computed the same way.
//!
//! How a fact that did not happen is modelled:
//! - an attempt the log denied but the policy grants holds its seat for
//!   `denied_hold` (default: the mean length of the sessions that ended in
//!   the window, else the session TTL), then is released;
//! - a session the log granted but the policy denies never exists: its
//!   later release or expiry is skipped;
//! - every release is replayed as its holder's (it lingers under the
//!   policy), a revocation as an admin's (it does not);
//! - group membership is not in the log, so reservations match users by
//!   name only.
//!
//! Must not: write to the log, or restate a rule `decide` answers.

use crate::history::{license_events, Timed};
use crate::report::{license_report, LicenseReport, Report};
use chrono::{DateTime, TimeDelta, Utc};
use events::catalog::LicenseEvent;
use events::ids::{LicenseId, SessionId, UserId};
use events::license::{self, decide, LicenseCommand, LicenseState, Policy};
use events::store::EventStore;
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt::Write as _;

/// One license, as recorded and as the other policy would have had it.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The figures of the recorded history.
    pub recorded: LicenseReport,
    /// The figures of the replay under the other policy.
    pub what_if: LicenseReport,
    /// How long a seat the log denied but the policy grants was held, seconds.
    pub denied_hold_secs: i64,
}

/// The result of `ledger what-if`.
#[derive(Debug, Clone, Serialize)]
pub struct WhatIf {
    /// Window start (inclusive).
    pub from: DateTime<Utc>,
    /// Window end (exclusive).
    pub to: DateTime<Utc>,
    /// The policy replayed.
    pub policy: Policy,
    /// One entry per license.
    pub licenses: Vec<Comparison>,
}

/// The simulation of one license's window.
struct Replay {
    state: LicenseState,
    log: Vec<Timed>,
    position: i64,
    /// Seats granted by the policy to attempts the log denied: when they end.
    releases: BinaryHeap<Reverse<(DateTime<Utc>, SessionId)>>,
    hold: TimeDelta,
    /// The policy, until it is put in force (at `from`, or right after the
    /// license's issue when that falls inside the window).
    pending: Option<Policy>,
}

impl Replay {
    fn record(&mut self, at: DateTime<Utc>, event: LicenseEvent) {
        self.state = license::apply(std::mem::take(&mut self.state), &event);
        self.position += 1;
        self.log.push(Timed {
            at,
            position: self.position,
            event,
        });
    }

    /// Decides `cmd` at `at` and records what it appends; its outcome.
    fn decide(&mut self, at: DateTime<Utc>, cmd: LicenseCommand) -> Option<license::Outcome> {
        let decision = decide(&self.state, cmd).ok()?;
        for event in decision.license_events {
            self.record(at, event);
        }
        Some(decision.outcome)
    }

    /// Puts the pending policy in force at `at`, once the license exists.
    fn enforce(&mut self, at: DateTime<Utc>) -> anyhow::Result<()> {
        let Some(info) = self.state.issued.clone() else {
            return Ok(());
        };
        if let Some(policy) = self.pending.take() {
            policy.validate(info.seats).map_err(|e| {
                anyhow::anyhow!("--policy does not fit license {}: {e}", info.license_id)
            })?;
            let version = self.state.policy_version + 1;
            self.record(at, LicenseEvent::PolicyChanged { version, policy });
        }
        Ok(())
    }

    fn holder(&self, session: &SessionId) -> Option<UserId> {
        self.state.sessions.get(session).map(|s| s.user_id.clone())
    }

    /// Releases the policy-only seats whose hold ended by `until`.
    fn release_due(&mut self, until: DateTime<Utc>) {
        while let Some(Reverse((at, session))) = self.releases.peek().copied() {
            if at > until {
                break;
            }
            self.releases.pop();
            if let Some(user) = self.holder(&session) {
                let cmd = LicenseCommand::Release {
                    session_id: session,
                    user_id: Some(user),
                    now: at,
                };
                self.decide(at, cmd);
            }
        }
    }

    fn fact(&mut self, e: &Timed) {
        let at = e.at;
        match &e.event {
            // The other policy stays in force.
            LicenseEvent::PolicyChanged { .. } => {}
            LicenseEvent::SeatAcquired {
                session_id,
                user_id,
                hardware_id,
                ..
            } => {
                self.decide(at, acquire(*session_id, user_id, hardware_id, at));
            }
            LicenseEvent::AcquireDenied {
                user_id,
                hardware_id,
                ..
            } => {
                // A deterministic id for a session the log never had.
                let id = SessionId::from_uuid(uuid::Uuid::from_u128(
                    (1u128 << 127) | e.position as u128,
                ));
                let outcome = self.decide(at, acquire(id, user_id, hardware_id, at));
                if let Some(license::Outcome::Acquired {
                    session_id,
                    existing: false,
                    ..
                }) = outcome
                {
                    self.releases.push(Reverse((at + self.hold, session_id)));
                }
            }
            LicenseEvent::SeatReleased { session_id, .. } => {
                if let Some(user) = self.holder(session_id) {
                    let cmd = LicenseCommand::Release {
                        session_id: *session_id,
                        user_id: Some(user),
                        now: at,
                    };
                    self.decide(at, cmd);
                }
            }
            LicenseEvent::SessionExpired {
                session_id,
                deadline,
                ..
            } => {
                if self.holder(session_id).is_some() {
                    let cmd = LicenseCommand::Expire {
                        session_id: *session_id,
                        deadline: *deadline.min(&at),
                        now: at,
                    };
                    self.decide(at, cmd);
                }
            }
            LicenseEvent::SessionRevoked { session_id, .. } => {
                if self.holder(session_id).is_some() {
                    let cmd = LicenseCommand::Release {
                        session_id: *session_id,
                        user_id: None,
                        now: at,
                    };
                    self.decide(at, cmd);
                }
            }
            // Terms: as recorded (seat changes do not revoke here; the
            // recorded revocations follow as their own facts).
            other => self.record(at, other.clone()),
        }
    }
}

fn acquire(
    session_id: SessionId,
    user: &UserId,
    hardware: &events::ids::HardwareId,
    now: DateTime<Utc>,
) -> LicenseCommand {
    LicenseCommand::Acquire {
        borrow_secs: None,
        wait_secs: None,
        session_id,
        user_id: user.clone(),
        hardware_id: hardware.clone(),
        groups: Vec::new(),
        idempotency_key: None,
        now,
    }
}

/// The mean length of the sessions that ended inside the window, if any.
fn mean_session(events: &[Timed], from: DateTime<Utc>, to: DateTime<Utc>) -> Option<TimeDelta> {
    let mut started = std::collections::HashMap::new();
    let (mut total, mut n) = (TimeDelta::zero(), 0i32);
    for e in events {
        match &e.event {
            LicenseEvent::SeatAcquired { session_id, .. } => {
                started.insert(*session_id, e.at);
            }
            LicenseEvent::SeatReleased { session_id, .. }
            | LicenseEvent::SessionExpired { session_id, .. }
            | LicenseEvent::SessionRevoked { session_id, .. }
                if from <= e.at && e.at < to =>
            {
                if let Some(start) = started.remove(session_id) {
                    total += e.at - start;
                    n += 1;
                }
            }
            _ => {}
        }
    }
    (n > 0).then(|| total / n)
}

/// Replays one license's window under `policy` (pure: no I/O).
pub fn compare(
    license: LicenseId,
    events: &[Timed],
    policy: &Policy,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    denied_hold: Option<TimeDelta>,
) -> anyhow::Result<Comparison> {
    let prefix: Vec<Timed> = events.iter().filter(|e| e.at < from).cloned().collect();
    let state = LicenseState::fold(prefix.iter().map(|e| &e.event));
    let ttl = LicenseState::fold(events.iter().map(|e| &e.event))
        .issued
        .map_or(TimeDelta::seconds(360), |info| info.session_ttl());
    let hold = denied_hold
        .or_else(|| mean_session(events, from, to))
        .unwrap_or(ttl);
    let mut replay = Replay {
        position: prefix.last().map_or(0, |e| e.position),
        state,
        log: prefix,
        releases: BinaryHeap::new(),
        hold,
        pending: Some(policy.clone()),
    };
    replay.enforce(from)?;
    for e in events.iter().filter(|e| from <= e.at && e.at < to) {
        replay.release_due(e.at);
        replay.fact(e);
        replay.enforce(e.at)?;
    }
    replay.release_due(to - TimeDelta::microseconds(1));
    Ok(Comparison {
        recorded: license_report(license, events, from, to),
        what_if: license_report(license, &replay.log, from, to),
        denied_hold_secs: hold.num_seconds(),
    })
}

/// Builds the comparison of several licenses from the log.
pub async fn build(
    store: &EventStore,
    licenses: &[LicenseId],
    policy: Policy,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    denied_hold: Option<TimeDelta>,
) -> anyhow::Result<WhatIf> {
    anyhow::ensure!(from < to, "--from must be before --to");
    let mut out = WhatIf {
        from,
        to,
        policy,
        licenses: Vec::new(),
    };
    for license in licenses {
        let events = license_events(store, *license, to).await?;
        let comparison = compare(*license, &events, &out.policy, from, to, denied_hold)?;
        out.licenses.push(comparison);
    }
    Ok(out)
}

fn peak(r: &LicenseReport) -> usize {
    r.peak_per_day.iter().map(|d| d.peak).max().unwrap_or(0)
}

fn seat_hours(r: &LicenseReport) -> f64 {
    r.seat_hours.iter().map(|u| u.seat_hours).sum()
}

impl WhatIf {
    /// The side-by-side table.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "what-if {} .. {} under {}",
            crate::time::fmt_time(self.from),
            crate::time::fmt_time(self.to),
            serde_json::to_string(&self.policy).unwrap_or_default()
        );
        for c in &self.licenses {
            let (r, w) = (&c.recorded, &c.what_if);
            let _ = writeln!(
                out,
                "\nlicense {} ({}), {} seats",
                r.license_id, r.product, r.seats
            );
            let _ = writeln!(out, "  {:<28} {:>10} {:>10}", "", "recorded", "what-if");
            let mut row = |name: &str, a: String, b: String| {
                let _ = writeln!(out, "  {name:<28} {a:>10} {b:>10}");
            };
            row(
                "grants",
                r.acquisitions.to_string(),
                w.acquisitions.to_string(),
            );
            row(
                "  on overdraft seats",
                r.overdraft_acquisitions.to_string(),
                w.overdraft_acquisitions.to_string(),
            );
            let denials = |x: &LicenseReport| x.denials.values().sum::<u64>().to_string();
            row("denials", denials(r), denials(w));
            let reasons: std::collections::BTreeSet<_> =
                r.denials.keys().chain(w.denials.keys()).collect();
            for reason in reasons {
                let n = |x: &LicenseReport| x.denials.get(reason).copied().unwrap_or(0).to_string();
                row(&format!("  {reason}"), n(r), n(w));
            }
            row(
                "peak concurrent seats",
                peak(r).to_string(),
                peak(w).to_string(),
            );
            row(
                "seat-hours",
                format!("{:.2}", seat_hours(r)),
                format!("{:.2}", seat_hours(w)),
            );
            row("releases", r.releases.to_string(), w.releases.to_string());
            row("expiries", r.expiries.to_string(), w.expiries.to_string());
            let _ = writeln!(
                out,
                "  (a seat the log denied and the policy grants is held {} s)",
                c.denied_hold_secs
            );
        }
        out
    }

    /// Two panels per license: recorded, then what-if (the report's SVG).
    pub fn svg(&self) -> String {
        let mut report = Report {
            from: self.from,
            to: self.to,
            licenses: Vec::new(),
        };
        for c in &self.licenses {
            let mut recorded = c.recorded.clone();
            recorded.product = format!("{}, recorded", recorded.product);
            let mut what_if = c.what_if.clone();
            what_if.product = format!("{}, what-if", what_if.product);
            report.licenses.extend([recorded, what_if]);
        }
        crate::svg::render(&report)
    }
}
