//! `ledger report`: usage figures a vendor bills on, for one license or a tenant.
//!
//! Per license and window `[from, to)`: peak concurrent seats per UTC day,
//! seat-hours per user, acquisitions (overdraft and borrowed ones counted
//! apart), the queue (waiters, grants, timeouts, cancellations, waits),
//! denials (turnaways) by reason, and how
//! sessions ended (released vs expired). Concurrency is the number of live
//! sessions of the folded license state (`events::license::apply`): a seat
//! counts from its `SeatAcquired` until the `SeatReleased`/`SessionExpired`
//! that frees it, overdue time before the reaper acted included.

use crate::history::{license_events, Timed};
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use events::catalog::{LicenseEvent, QueueLeaveReason};
use events::ids::{LicenseId, SessionId};
use events::license::{self, LicenseState};
use events::store::EventStore;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// Peak concurrency of one UTC day.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DayPeak {
    /// The day.
    pub day: NaiveDate,
    /// Most seats held at once during the part of the day inside the window.
    pub peak: usize,
    /// Highest seat limit in force that day.
    pub seats: u32,
}

/// Seat time of one user.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserHours {
    /// The user.
    pub user: String,
    /// Hours of seats held inside the window.
    pub seat_hours: f64,
    /// Sessions that held a seat inside the window.
    pub sessions: u64,
}

/// A point of the concurrency step function.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Step {
    /// From this instant on...
    pub at: DateTime<Utc>,
    /// ...this many seats are held...
    pub in_use: usize,
    /// ...under this seat limit.
    pub seats: u32,
}

/// The license's queue over a window.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueFigures {
    /// Acquires that joined the queue (`QueueJoined`) in the window.
    pub joined: u64,
    /// Waiters granted a seat (`SeatAcquired` with `queued`) in the window.
    pub granted: u64,
    /// Waiters whose wait ran out in the window.
    pub timed_out: u64,
    /// Waiters that cancelled in the window.
    pub cancelled: u64,
    /// Mean wait of the granted ones, seconds (`None`: none granted).
    pub mean_wait_secs: Option<f64>,
    /// Longest wait of the granted ones, seconds.
    pub max_wait_secs: Option<f64>,
}

/// The figures of one license.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LicenseReport {
    /// The license.
    pub license_id: String,
    /// Owning tenant.
    pub tenant: String,
    /// Product.
    pub product: String,
    /// Seat limit at the end of the window.
    pub seats: u32,
    /// Peak concurrency per UTC day.
    pub peak_per_day: Vec<DayPeak>,
    /// Seat-hours per user, by user.
    pub seat_hours: Vec<UserHours>,
    /// `SeatAcquired` events in the window.
    pub acquisitions: u64,
    /// Of those, the ones that took one of the policy's overdraft seats.
    pub overdraft_acquisitions: u64,
    /// Of those, the borrowed ones (taken offline until a set end).
    pub borrowed_acquisitions: u64,
    /// The queue.
    pub queue: QueueFigures,
    /// `AcquireDenied` events in the window, by reason.
    pub denials: BTreeMap<String, u64>,
    /// Sessions ended by `SeatReleased` (or revoked by the license) in the window.
    pub releases: u64,
    /// Sessions ended by `SessionExpired` in the window.
    pub expiries: u64,
    /// Concurrency over the window (starts at `from`).
    pub series: Vec<Step>,
}

/// A report over a window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    /// Window start (inclusive).
    pub from: DateTime<Utc>,
    /// Window end (exclusive).
    pub to: DateTime<Utc>,
    /// One entry per license.
    pub licenses: Vec<LicenseReport>,
}

fn overlap_hours(
    a: DateTime<Utc>,
    b: DateTime<Utc>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> f64 {
    let start = a.max(from);
    let end = b.min(to);
    if end <= start {
        return 0.0;
    }
    (end - start).num_microseconds().unwrap_or(i64::MAX) as f64 / 3.6e9
}

/// Computes one license's figures from its (decoded, timed) stream.
pub fn license_report(
    license: LicenseId,
    events: &[Timed],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> LicenseReport {
    let inside = |t: DateTime<Utc>| from <= t && t < to;
    let mut state = LicenseState::default();
    let mut open: HashMap<SessionId, (String, DateTime<Utc>)> = HashMap::new();
    let mut hours: BTreeMap<String, (f64, u64)> = BTreeMap::new();
    let mut report = LicenseReport {
        license_id: license.to_string(),
        tenant: String::new(),
        product: String::new(),
        seats: 0,
        peak_per_day: vec![],
        seat_hours: vec![],
        acquisitions: 0,
        overdraft_acquisitions: 0,
        borrowed_acquisitions: 0,
        queue: QueueFigures::default(),
        denials: BTreeMap::new(),
        releases: 0,
        expiries: 0,
        series: vec![],
    };
    let mut steps: Vec<Step> = Vec::new();
    let mut joined: HashMap<SessionId, DateTime<Utc>> = HashMap::new();
    let mut waits: Vec<f64> = Vec::new();
    for e in events.iter().filter(|e| e.at <= to) {
        let held_before = e
            .event
            .session_id()
            .is_some_and(|id| state.sessions.contains_key(&id));
        state = license::apply(state, &e.event);
        let held_after = e
            .event
            .session_id()
            .is_some_and(|id| state.sessions.contains_key(&id));
        match &e.event {
            LicenseEvent::SeatAcquired {
                session_id,
                user_id,
                overdraft,
                borrowed_until,
                queued,
                ..
            } if !held_before && held_after => {
                open.insert(*session_id, (user_id.to_string(), e.at));
                report.acquisitions += u64::from(inside(e.at));
                report.overdraft_acquisitions += u64::from(inside(e.at) && *overdraft);
                report.borrowed_acquisitions += u64::from(inside(e.at) && borrowed_until.is_some());
                let since = joined.remove(session_id);
                if let (true, true, Some(since)) = (*queued, inside(e.at), since) {
                    report.queue.granted += 1;
                    waits.push((e.at - since).num_milliseconds() as f64 / 1e3);
                }
            }
            LicenseEvent::QueueJoined { session_id, .. } => {
                joined.insert(*session_id, e.at);
                report.queue.joined += u64::from(inside(e.at));
            }
            LicenseEvent::QueueLeft { session_id, reason } => {
                joined.remove(session_id);
                if inside(e.at) {
                    match reason {
                        QueueLeaveReason::TimedOut => report.queue.timed_out += 1,
                        QueueLeaveReason::Cancelled => report.queue.cancelled += 1,
                    }
                }
            }
            // A revived session holds a seat again (not a new acquisition).
            LicenseEvent::SessionRevived {
                session_id,
                user_id,
                ..
            } if !held_before && held_after => {
                open.insert(*session_id, (user_id.to_string(), e.at));
            }
            LicenseEvent::SeatReleased { session_id, .. }
            | LicenseEvent::SessionExpired { session_id, .. }
            | LicenseEvent::SessionRevoked { session_id, .. }
                if held_before && !held_after =>
            {
                if let Some((user, start)) = open.remove(session_id) {
                    let entry = hours.entry(user).or_default();
                    entry.0 += overlap_hours(start, e.at, from, to);
                    entry.1 += u64::from(start < to && e.at > from);
                }
                if inside(e.at) {
                    match e.event {
                        LicenseEvent::SeatReleased { .. } | LicenseEvent::SessionRevoked { .. } => {
                            report.releases += 1
                        }
                        _ => report.expiries += 1,
                    }
                }
            }
            LicenseEvent::AcquireDenied { reason, .. } if inside(e.at) => {
                *report
                    .denials
                    .entry(reason.as_str().to_owned())
                    .or_default() += 1;
            }
            _ => {}
        }
        steps.push(Step {
            at: e.at,
            in_use: state.sessions.len(),
            seats: state.seats(),
        });
    }
    if !waits.is_empty() {
        report.queue.mean_wait_secs = Some(waits.iter().sum::<f64>() / waits.len() as f64);
        report.queue.max_wait_secs = waits.iter().copied().reduce(f64::max);
    }
    for (user, start) in open.into_values() {
        let entry = hours.entry(user).or_default();
        entry.0 += overlap_hours(start, to, from, to);
        entry.1 += u64::from(start < to);
    }
    if let Some(info) = &state.issued {
        report.tenant = info.tenant_id.to_string();
        report.product = info.product.to_string();
        report.seats = info.seats;
    }
    report.seat_hours = hours
        .into_iter()
        .filter(|(_, (h, n))| *h > 0.0 || *n > 0)
        .map(|(user, (seat_hours, sessions))| UserHours {
            user,
            seat_hours,
            sessions,
        })
        .collect();
    report.series = window_series(&steps, from, to);
    report.peak_per_day = daily_peaks(&report.series, from, to);
    report
}

/// The step function restricted to `[from, to]`, starting with the level at `from`.
fn window_series(steps: &[Step], from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Step> {
    let before = steps.iter().rev().find(|s| s.at <= from);
    let mut out = vec![Step {
        at: from,
        in_use: before.map_or(0, |s| s.in_use),
        seats: before.map_or(0, |s| s.seats),
    }];
    for s in steps.iter().filter(|s| s.at > from && s.at < to) {
        out.push(*s);
    }
    out
}

fn daily_peaks(series: &[Step], from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DayPeak> {
    let mut out = Vec::new();
    if to <= from {
        return out;
    }
    let mut day = from.date_naive();
    let last = (to - TimeDelta::microseconds(1)).date_naive();
    while day <= last {
        let start = day
            .and_hms_opt(0, 0, 0)
            .map_or(from, |t| t.and_utc())
            .max(from);
        let end = (start.date_naive() + TimeDelta::days(1))
            .and_hms_opt(0, 0, 0)
            .map_or(to, |t| t.and_utc())
            .min(to);
        let at_start = series.iter().rev().find(|s| s.at <= start);
        let within = series.iter().filter(|s| s.at > start && s.at < end);
        let peak = at_start
            .iter()
            .copied()
            .chain(within.clone())
            .map(|s| s.in_use)
            .max()
            .unwrap_or(0);
        let seats = at_start
            .iter()
            .copied()
            .chain(within)
            .map(|s| s.seats)
            .max()
            .unwrap_or(0);
        out.push(DayPeak { day, peak, seats });
        day += TimeDelta::days(1);
    }
    out
}

/// Builds the report of several licenses from the log.
pub async fn build(
    store: &EventStore,
    licenses: &[LicenseId],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<Report> {
    anyhow::ensure!(from < to, "--from must be before --to");
    let mut out = Report {
        from,
        to,
        licenses: Vec::new(),
    };
    for id in licenses {
        let events = license_events(store, *id, to).await?;
        out.licenses.push(license_report(*id, &events, from, to));
    }
    Ok(out)
}
