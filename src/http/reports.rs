//! A license's usage over a window and its recent denials (admin), computed
//! on the server from the log: the console draws what these return and
//! computes nothing from raw events.
//!
//! The report is `ledger report`'s (`replay::report::license_report`) over
//! the license's stream, so the console and the CLI agree to the figure.

use super::error::query;
use super::{actor, AppState};
use crate::auth::AdminCaller;
use crate::problem::Problem;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::{DateTime, TimeDelta, Utc};
use events::catalog::LicenseEvent;
use events::ids::LicenseId;
use replay::report::{license_report, LicenseReport, Step};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Longest report window, in days.
pub const MAX_WINDOW_DAYS: i64 = 366;
/// Most points of a report's concurrency series.
pub const MAX_SERIES_POINTS: usize = 1_000;
/// Most denials one request returns.
pub const MAX_DENIALS: u32 = 200;

/// Query of `GET .../report`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// Window start, RFC 3339 (default: 24 hours before `to`).
    pub from: Option<DateTime<Utc>>,
    /// Window end, exclusive, RFC 3339 (default: now).
    pub to: Option<DateTime<Utc>>,
}

/// Query of `GET .../denials`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DenialsQuery {
    /// How many, newest first (1 to 200, default 20).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// One turned-away acquire.
#[derive(Debug, Serialize, ToSchema)]
pub struct DenialView {
    /// When it was recorded.
    pub at: DateTime<Utc>,
    /// Who asked.
    pub user_id: String,
    /// For which machine.
    pub hardware_id: String,
    /// Why (`no_seats`, `suspended`, `license_expired`, `user_limit`, `reserved`, `queue_full`).
    pub reason: String,
    /// Its log position.
    pub position: i64,
}

/// A license's usage over a window: `ledger report`'s figures.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportView {
    /// Window start (inclusive).
    pub from: DateTime<Utc>,
    /// Window end (exclusive).
    pub to: DateTime<Utc>,
    /// The figures.
    #[serde(flatten)]
    pub report: LicenseReport,
}

/// A license's newest denials.
#[derive(Debug, Serialize, ToSchema)]
pub struct DenialsView {
    /// The license.
    pub license_id: Uuid,
    /// Newest first.
    pub denials: Vec<DenialView>,
}

fn license_id(raw: &str) -> Result<LicenseId, Problem> {
    raw.parse::<LicenseId>()
        .map_err(|_| Problem::new(StatusCode::NOT_FOUND, "not-found", "license not found"))
}

/// Usage of a license of your tenant over a window (admin).
///
/// Peak concurrency per UTC day, seat-hours per user, acquisitions (on
/// overdraft seats, borrowed), the queue, denials by reason, releases and
/// expiries, and the concurrency series (at most 1000 points: a longer one
/// keeps the peak of each equal slice of the window). The figures of
/// `ledger report`, from the log.
#[utoipa::path(get, path = "/api/v1/admin/licenses/{license_id}/report", tag = "admin",
    params(("license_id" = Uuid, Path), ReportQuery),
    responses(
        (status = 200, body = ReportView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such license in your tenant", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "from not before to, or a window over 366 days", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A malformed time", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user = %caller.user_id, tenant = %caller.tenant_id))]
pub async fn report(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    headers: HeaderMap,
    Path(raw): Path<String>,
    window: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Json<ReportView>, Problem> {
    let actor = actor(&caller, &headers)?;
    let id = license_id(&raw)?;
    let window = query(window)?;
    let to = window.to.unwrap_or_else(Utc::now);
    let from = window.from.unwrap_or(to - TimeDelta::hours(24));
    // Each time is valid on its own; together they do not make a window
    // (a conflict within the request, which no schema can say).
    let invalid = |detail: &str| Problem::new(StatusCode::CONFLICT, "invalid-window", detail);
    if from >= to {
        return Err(invalid("from must be before to"));
    }
    if to - from > TimeDelta::days(MAX_WINDOW_DAYS) {
        return Err(invalid("the window may span at most 366 days"));
    }
    state.licenses.license(id, Some(&actor.tenant)).await?;
    let events = replay::history::license_events(state.licenses.store(), id, to)
        .await
        .map_err(|err| {
            tracing::error!(error = %format!("{err:#}"), "reading a license's history failed");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the log could not be read; retry shortly",
            )
        })?;
    let mut report = license_report(id, &events, from, to);
    report.series = peaks(&report.series, from, to, MAX_SERIES_POINTS);
    Ok(Json(ReportView { from, to, report }))
}

/// At most `points` steps: the first of each equal slice of `[from, to)`,
/// carrying the highest level reached in that slice.
fn peaks(series: &[Step], from: DateTime<Utc>, to: DateTime<Utc>, points: usize) -> Vec<Step> {
    if series.len() <= points {
        return series.to_vec();
    }
    let slice = (to - from) / i32::try_from(points).unwrap_or(i32::MAX);
    let mut out: Vec<Step> = Vec::with_capacity(points);
    for step in series {
        let index = ((step.at - from).num_microseconds().unwrap_or(0)
            / slice.num_microseconds().unwrap_or(1).max(1)) as usize;
        let start = from + slice * i32::try_from(index).unwrap_or(i32::MAX);
        match out.last_mut() {
            Some(last) if last.at == start => {
                last.in_use = last.in_use.max(step.in_use);
                last.seats = last.seats.max(step.seats);
            }
            _ => out.push(Step {
                at: start.max(from),
                ..*step
            }),
        }
    }
    out
}

/// The newest denials of a license of your tenant (admin), from the log.
#[utoipa::path(get, path = "/api/v1/admin/licenses/{license_id}/denials", tag = "admin",
    params(("license_id" = Uuid, Path), DenialsQuery),
    responses(
        (status = 200, body = DenialsView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such license in your tenant", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "limit out of range", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user = %caller.user_id, tenant = %caller.tenant_id))]
pub async fn denials(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    headers: HeaderMap,
    Path(raw): Path<String>,
    limit: Result<Query<DenialsQuery>, QueryRejection>,
) -> Result<Json<DenialsView>, Problem> {
    let actor = actor(&caller, &headers)?;
    let id = license_id(&raw)?;
    let limit = query(limit)?.limit.unwrap_or(20);
    if !(1..=MAX_DENIALS).contains(&limit) {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-query",
            "limit must be between 1 and 200",
        ));
    }
    state.licenses.license(id, Some(&actor.tenant)).await?;
    let recorded = state
        .licenses
        .store()
        .newest_of_type(&id.stream_name(), "AcquireDenied", i64::from(limit))
        .await?;
    let mut denials = Vec::with_capacity(recorded.len());
    for r in &recorded {
        if let Ok(LicenseEvent::AcquireDenied {
            user_id,
            hardware_id,
            reason,
            ..
        }) = events::envelope::decode(r)
        {
            denials.push(DenialView {
                at: r.recorded_at,
                user_id: user_id.to_string(),
                hardware_id: hardware_id.to_string(),
                reason: reason.as_str().to_owned(),
                position: r.position,
            });
        }
    }
    Ok(Json(DenialsView {
        license_id: id.as_uuid(),
        denials,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_series_keeps_each_slices_peak_in_at_most_the_points_asked() {
        let from = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let to = from + TimeDelta::hours(1);
        let series: Vec<Step> = (0..5_000)
            .map(|i| Step {
                at: from + TimeDelta::milliseconds(i * 700),
                in_use: if i == 4_321 { 99 } else { (i % 7) as usize },
                seats: 100,
            })
            .collect();
        let out = peaks(&series, from, to, 1_000);
        assert!(out.len() <= 1_000, "{}", out.len());
        assert_eq!(out.iter().map(|s| s.in_use).max(), Some(99));
        assert!(out.windows(2).all(|w| w[0].at < w[1].at));
        assert_eq!(peaks(&series[..10], from, to, 1_000).len(), 10);
    }
}
