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
//! - group membership is in the log only for acquires that queued
//!   (`QueueJoined` records the caller's groups); other acquires match
//!   reservations by user name only;
//! - an acquire that asked to wait (`QueueJoined`) waits as long as it
//!   asked, cut to the policy's `max_queue_wait_secs`; an acquire that did
//!   not ask (`SeatAcquired`, `AcquireDenied`) never waits. The queue is
//!   served by the live rules at each replayed fact; a waiter the replay
//!   grants holds its seat as long as its recorded session did (else
//!   `denied_hold`), and the recorded end of that session is not replayed;
//! - a recorded borrow borrows as long as it did, cut to the policy's
//!   `max_borrow_secs` (not borrowed when the policy has no borrowing).
//!
//! Must not: write to the log, or restate a rule `decide` answers. The
//! table and the SVG are in `what_if/render.rs`.

mod render;

use crate::history::{license_events, Timed};
use crate::report::{license_report, LicenseReport};
use chrono::{DateTime, TimeDelta, Utc};
use events::catalog::{LicenseEvent, QueueLeaveReason};
use events::ids::{LicenseId, SessionId, UserId};
use events::license::{self, decide, LicenseCommand, LicenseState, Policy};
use events::store::EventStore;
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

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
    /// How long each recorded session held its seat.
    lengths: HashMap<SessionId, TimeDelta>,
    /// Sessions whose end the replay schedules itself (in `releases`):
    /// their recorded ends are not replayed.
    scheduled: HashSet<SessionId>,
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
            if let LicenseEvent::SeatAcquired {
                session_id,
                queued: true,
                ..
            } = &event
            {
                self.schedule(at, *session_id);
            }
            self.record(at, event);
        }
        Some(decision.outcome)
    }

    /// Ends `session`, granted by the replay at `at`, after as long as its
    /// recorded session held a seat (else the hold of a denied attempt).
    fn schedule(&mut self, at: DateTime<Utc>, session: SessionId) {
        let held = self.lengths.get(&session).copied().unwrap_or(self.hold);
        self.releases.push(Reverse((at + held, session)));
        self.scheduled.insert(session);
    }

    /// The recorded borrow, as the policy in force allows it.
    fn borrow(&self, at: DateTime<Utc>, until: Option<DateTime<Utc>>) -> Option<u32> {
        let asked = u32::try_from((until? - at).num_seconds()).ok()?;
        let max = self.state.policy.max_borrow_secs;
        (max > 0).then(|| asked.clamp(1, max))
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
            // A waiter's grant: the replay's own queue decides.
            LicenseEvent::SeatAcquired { queued: true, .. } => {}
            LicenseEvent::SeatAcquired {
                session_id,
                user_id,
                hardware_id,
                borrowed_until,
                ..
            } => {
                let borrowed = self.borrow(at, *borrowed_until);
                let mut cmd = acquire(*session_id, user_id, hardware_id, at);
                if let LicenseCommand::Acquire { borrow_secs, .. } = &mut cmd {
                    *borrow_secs = borrowed;
                }
                self.decide(at, cmd);
            }
            LicenseEvent::QueueJoined {
                session_id,
                user_id,
                hardware_id,
                groups: joined_groups,
                wait_until,
                borrow_secs: borrow,
                ..
            } => {
                let borrowed = borrow.map(|b| at + TimeDelta::seconds(i64::from(b)));
                let borrowed = self.borrow(at, borrowed);
                let mut cmd = acquire(*session_id, user_id, hardware_id, at);
                if let LicenseCommand::Acquire {
                    groups,
                    wait_secs,
                    borrow_secs,
                    ..
                } = &mut cmd
                {
                    *groups = joined_groups.clone();
                    *wait_secs = u32::try_from((*wait_until - at).num_seconds()).ok();
                    *borrow_secs = borrowed;
                }
                let outcome = self.decide(at, cmd);
                if let Some(license::Outcome::Acquired {
                    session_id,
                    existing: false,
                    ..
                }) = outcome
                {
                    self.schedule(at, session_id);
                }
            }
            LicenseEvent::QueueLeft { session_id, reason } => {
                let cmd = match reason {
                    QueueLeaveReason::Cancelled => LicenseCommand::LeaveQueue {
                        session_id: *session_id,
                        user_id: None,
                    },
                    QueueLeaveReason::TimedOut => LicenseCommand::Promote { now: at },
                };
                self.decide(at, cmd);
            }
            LicenseEvent::SeatReleased { session_id, .. }
            | LicenseEvent::SessionExpired { session_id, .. }
            | LicenseEvent::SessionRevoked { session_id, .. }
                if self.scheduled.contains(session_id) => {}
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

/// How long each recorded session held its seat (from its grant to the
/// event that ended it), with the instant it ended.
fn session_lengths(events: &[Timed]) -> HashMap<SessionId, (TimeDelta, DateTime<Utc>)> {
    let mut started = HashMap::new();
    let mut lengths = HashMap::new();
    for e in events {
        match &e.event {
            LicenseEvent::SeatAcquired { session_id, .. } => {
                started.insert(*session_id, e.at);
            }
            LicenseEvent::SeatReleased { session_id, .. }
            | LicenseEvent::SessionExpired { session_id, .. }
            | LicenseEvent::SessionRevoked { session_id, .. } => {
                if let Some(start) = started.remove(session_id) {
                    lengths.insert(*session_id, (e.at - start, e.at));
                }
            }
            _ => {}
        }
    }
    lengths
}

/// The mean length of the sessions that ended inside the window, if any.
fn mean_session(
    lengths: &HashMap<SessionId, (TimeDelta, DateTime<Utc>)>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Option<TimeDelta> {
    let inside: Vec<_> = lengths
        .values()
        .filter(|(_, end)| from <= *end && *end < to)
        .map(|(length, _)| *length)
        .collect();
    let n = i32::try_from(inside.len()).ok().filter(|n| *n > 0)?;
    Some(inside.into_iter().sum::<TimeDelta>() / n)
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
    let lengths = session_lengths(events);
    let hold = denied_hold
        .or_else(|| mean_session(&lengths, from, to))
        .unwrap_or(ttl);
    let mut replay = Replay {
        position: prefix.last().map_or(0, |e| e.position),
        state,
        log: prefix,
        releases: BinaryHeap::new(),
        hold,
        pending: Some(policy.clone()),
        lengths: lengths.into_iter().map(|(id, (l, _))| (id, l)).collect(),
        scheduled: HashSet::new(),
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
