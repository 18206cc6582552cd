//! Read API served from the Redis projection: a license's seats, seats in
//! use and live sessions (`GET /licenses/{id}/usage`), and an admin's list
//! of a license's live sessions (`GET /admin/licenses/{id}/sessions`).
//!
//! Access is decided on the log (the license must belong to the caller's
//! tenant, else 404); the numbers come from Redis and may lag the log, so
//! every answer carries `as_of_position`, the log's head and
//! `projection_lag_ms`: how stale the view is, measured against the log's
//! head (the age of the oldest event it has not applied yet), so that a
//! stalled projector (a NATS outage) shows as a growing lag. Must not: write anything, or fall back to folding
//! the log per request.

use super::{actor, AppState};
use crate::auth::{AdminCaller, Caller};
use crate::problem::Problem;
use crate::service::Actor;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::Json;
use chrono::{DateTime, Utc};
use events::ids::LicenseId;
use projections::read::{LicenseUsage, SessionUsage};
use projections::RedisProjection;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// A live session as projected.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionUsageView {
    /// The session.
    pub session_id: Uuid,
    /// Its holder (`sub`).
    pub user_id: String,
    /// The machine.
    pub hardware_id: String,
    /// Current deadline (latest heartbeat's); the reaper ends it a few seconds after.
    pub deadline: DateTime<Utc>,
}

/// A license's usage, from the Redis projection (may lag the log).
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageView {
    /// The license.
    pub license_id: Uuid,
    /// Concurrent seats.
    pub seats: u32,
    /// Seats held by live sessions.
    pub in_use: u32,
    /// Whether acquires are refused.
    pub suspended: bool,
    /// Acquires denied today (UTC).
    pub denials_today: u64,
    /// Live sessions: all of them for admins, the caller's own otherwise.
    pub sessions: Vec<SessionUsageView>,
    /// Log position of the newest event the projection holds.
    pub as_of_position: i64,
    /// The log's head position when this answer was made.
    pub log_head_position: i64,
    /// How stale this view is, in milliseconds: caught up with the head,
    /// the commit-to-Redis delay of the newest event; behind it, the age of
    /// the oldest event not applied yet.
    pub projection_lag_ms: i64,
}

/// A license's live sessions (admin), from the Redis projection.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionsView {
    /// The license.
    pub license_id: Uuid,
    /// Every live session of the license, earliest deadline first.
    pub sessions: Vec<SessionDetailView>,
    /// Log position of the newest event the projection holds.
    pub as_of_position: i64,
    /// The log's head position when this answer was made.
    pub log_head_position: i64,
    /// How stale this view is, in milliseconds: caught up with the head,
    /// the commit-to-Redis delay of the newest event; behind it, the age of
    /// the oldest event not applied yet.
    pub projection_lag_ms: i64,
}

/// A live session as projected, with its times (admin).
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionDetailView {
    /// The session.
    pub session_id: Uuid,
    /// Its holder (`sub`).
    pub user_id: String,
    /// The machine.
    pub hardware_id: String,
    /// Current deadline (latest heartbeat's); the reaper ends it a few seconds after.
    pub deadline: DateTime<Utc>,
    /// When its seat was granted (or, revived, granted again).
    pub since: Option<DateTime<Utc>>,
    /// When its latest heartbeat was recorded (`null`: none yet).
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// The `exp` of its latest license token (`null`: none minted yet).
    pub token_expires_at: Option<DateTime<Utc>>,
}

fn session_view(s: SessionUsage) -> SessionUsageView {
    SessionUsageView {
        session_id: s.session_id,
        user_id: s.user_id,
        hardware_id: s.hardware_id,
        deadline: s.deadline,
    }
}

fn unavailable(detail: &str) -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "projection-unavailable",
        detail,
    )
    .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
}

/// How far the projection is behind the log: (head position, lag in ms).
async fn staleness(state: &AppState, usage: &LicenseUsage) -> Result<(i64, i64), Problem> {
    let store = state.licenses.store();
    let unavailable_log =
        |e: events::store::StoreError| Problem::from(crate::service::ServiceError::Store(e));
    let head = store.head_position().await.map_err(unavailable_log)?;
    if head <= usage.as_of_position {
        return Ok((head, usage.projection_lag_ms));
    }
    let lag = match store
        .recorded_after(usage.as_of_position, None)
        .await
        .map_err(unavailable_log)?
    {
        Some(oldest_unapplied) => (Utc::now() - oldest_unapplied).num_milliseconds().max(0),
        None => usage.projection_lag_ms,
    };
    Ok((head, lag))
}

fn projection(state: &AppState) -> Result<RedisProjection, Problem> {
    let conn = state
        .redis
        .clone()
        .ok_or_else(|| unavailable("the usage view is not configured (no Redis)"))?;
    Ok(RedisProjection::new(conn, state.redis_prefix.clone()))
}

/// Checks the license is the caller's tenant's (on the log), then reads its projection.
async fn projected(
    state: &AppState,
    actor: &Actor,
    raw_id: &str,
) -> Result<(LicenseId, LicenseUsage), Problem> {
    let not_found = || Problem::new(StatusCode::NOT_FOUND, "not-found", "license not found");
    let id = raw_id.parse::<LicenseId>().map_err(|_| not_found())?;
    state.licenses.license(id, Some(&actor.tenant)).await?;
    let projection = projection(state)?;
    // The license is in the log: a license just issued reaches the
    // projection within its lag, so wait that long before giving up.
    let deadline = tokio::time::Instant::now() + NOT_YET_PROJECTED_WAIT;
    loop {
        match projection.usage(id.as_uuid()).await {
            Ok(Some(usage)) => return Ok((id, usage)),
            Ok(None) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Ok(None) => {
                return Err(unavailable(
                    "the license is not projected yet; retry shortly",
                ))
            }
            Err(err) => {
                tracing::error!(error = %err, "reading the usage projection failed");
                return Err(unavailable("the usage view is unavailable; retry shortly"));
            }
        }
    }
}

/// How long a read waits for a license the log holds to reach the projection.
const NOT_YET_PROJECTED_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Seats, seats in use and live sessions of a license of your tenant.
///
/// Served from the Redis projection: it may lag the log's head
/// (`log_head_position`) by `projection_lag_ms`.
#[utoipa::path(get, path = "/api/v1/licenses/{license_id}/usage", tag = "licenses",
    params(("license_id" = Uuid, Path)),
    responses(
        (status = 200, body = UsageView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such license in your tenant", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Projection unavailable or not caught up", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user = %caller.user_id, tenant = %caller.tenant_id))]
pub async fn usage(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(license_id): Path<String>,
) -> Result<Json<UsageView>, Problem> {
    let actor = actor(&caller, &headers)?;
    let (id, usage) = projected(&state, &actor, &license_id).await?;
    let (log_head_position, projection_lag_ms) = staleness(&state, &usage).await?;
    let sessions = usage
        .sessions
        .into_iter()
        .filter(|s| actor.admin || s.user_id == actor.user.as_str())
        .map(session_view)
        .collect();
    Ok(Json(UsageView {
        license_id: id.as_uuid(),
        seats: usage.seats,
        in_use: usage.in_use,
        suspended: usage.suspended,
        denials_today: usage.denials_today,
        sessions,
        as_of_position: usage.as_of_position,
        log_head_position,
        projection_lag_ms,
    }))
}

/// Every live session of a license of your tenant (admin).
#[utoipa::path(get, path = "/api/v1/admin/licenses/{license_id}/sessions", tag = "admin",
    params(("license_id" = Uuid, Path)),
    responses(
        (status = 200, body = SessionsView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user = %caller.user_id, tenant = %caller.tenant_id))]
pub async fn sessions(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    headers: HeaderMap,
    Path(license_id): Path<String>,
) -> Result<Json<SessionsView>, Problem> {
    let actor = actor(&caller, &headers)?;
    let (id, usage) = projected(&state, &actor, &license_id).await?;
    let (log_head_position, projection_lag_ms) = staleness(&state, &usage).await?;
    let details = projection(&state)?
        .session_details(&usage)
        .await
        .map_err(|err| {
            tracing::error!(error = %err, "reading the sessions projection failed");
            unavailable("the sessions view is unavailable; retry shortly")
        })?;
    let sessions = details
        .into_iter()
        .map(|d| SessionDetailView {
            session_id: d.usage.session_id,
            user_id: d.usage.user_id,
            hardware_id: d.usage.hardware_id,
            deadline: d.usage.deadline,
            since: d.since,
            last_heartbeat: d.last_heartbeat,
            token_expires_at: d.token_expires_at,
        })
        .collect();
    Ok(Json(SessionsView {
        license_id: id.as_uuid(),
        sessions,
        as_of_position: usage.as_of_position,
        log_head_position,
        projection_lag_ms,
    }))
}
