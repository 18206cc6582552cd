//! The seat queue over HTTP: a waiter's status (long-polled until it is
//! granted) and its cancellation. An acquire joins the queue when it asks
//! to wait (`wait_secs`) and no seat may be granted now; it answers 202
//! with a [`QueueResponse`] whose `queue_url` is served here.
//!
//! The long-poll does not poll: it waits for the granted session's token
//! (the signer mints it as for any grant, and [`TokenWaiters`] hands it to
//! every replica), bounded by `wait_secs`, then reads the state once more.
//!
//! [`TokenWaiters`]: crate::workers::token_waiters::TokenWaiters

use super::{actor, AppState};
use crate::auth::Caller;
use crate::problem::Problem;
use crate::service::{Actor, QueueView};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use events::ids::{LicenseId, SessionId};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Longest long-poll, in seconds.
pub const MAX_POLL_SECS: u32 = 60;

/// Where a waiter stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WaiterStatus {
    /// In the queue.
    Waiting,
    /// Granted: the session holds a seat (heartbeat it).
    Granted,
    /// Granted, and the session has since ended.
    Ended,
    /// Cancelled by the waiter or an admin.
    Cancelled,
    /// Its wait ran out.
    TimedOut,
}

/// A waiter of a license's queue (202 from acquire, 200 from its status).
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueResponse {
    /// Where it stands.
    pub status: WaiterStatus,
    /// The session a grant creates (and, once granted, holds the seat).
    pub session_id: Uuid,
    /// The license.
    pub license_id: Uuid,
    /// Waiting: 1 = next in line.
    pub position: Option<usize>,
    /// Waiting: waiters in all.
    pub waiters: Option<usize>,
    /// Waiting: it gives up then.
    pub wait_until: Option<DateTime<Utc>>,
    /// Granted: the session's deadline (heartbeat before it).
    pub expires_at: Option<DateTime<Utc>>,
    /// Granted: the license token, once minted.
    pub license_token: Option<String>,
    /// Granted: the key id (`kid`) that signed it.
    pub key_id: Option<String>,
    /// Granted: the PEM of that key.
    pub public_key_pem: Option<String>,
    /// This resource: `GET` it (with `?wait_secs=`) to learn of the grant,
    /// `DELETE` it to leave the queue.
    pub queue_url: String,
}

/// Query of `GET .../queue/{session_id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PollQuery {
    /// Wait up to this many seconds (0 to 60) for the grant before answering.
    #[param(minimum = 0, maximum = 60)]
    pub wait_secs: Option<u32>,
}

/// The queue URL of a waiter.
pub fn queue_url(license_id: LicenseId, session_id: SessionId) -> String {
    format!("/api/v1/licenses/{license_id}/queue/{session_id}")
}

/// 202 for an acquire that joined the queue (or was waiting already).
pub fn queued(
    license_id: LicenseId,
    session_id: SessionId,
    position: usize,
    waiters: Option<usize>,
    wait_until: DateTime<Utc>,
) -> Response {
    let url = queue_url(license_id, session_id);
    let body = QueueResponse {
        position: Some(position),
        waiters,
        wait_until: Some(wait_until),
        ..empty(WaiterStatus::Waiting, license_id, session_id)
    };
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&url) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

fn empty(status: WaiterStatus, license_id: LicenseId, session_id: SessionId) -> QueueResponse {
    QueueResponse {
        status,
        session_id: session_id.as_uuid(),
        license_id: license_id.as_uuid(),
        position: None,
        waiters: None,
        wait_until: None,
        expires_at: None,
        license_token: None,
        key_id: None,
        public_key_pem: None,
        queue_url: queue_url(license_id, session_id),
    }
}

fn not_found() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "not-found",
        "no such waiter of yours in this license's queue",
    )
}

fn parse_ids(license_id: &str, session_id: &str) -> Result<(LicenseId, SessionId), Problem> {
    match (license_id.parse::<Uuid>(), session_id.parse::<SessionId>()) {
        (Ok(l), Ok(s)) => Ok((LicenseId::from_uuid(l), s)),
        _ => Err(not_found()),
    }
}

/// A waiter's status; with `wait_secs`, held open until it is granted.
#[utoipa::path(get, path = "/api/v1/licenses/{license_id}/queue/{session_id}", tag = "licenses",
    params(
        ("license_id" = Uuid, Path, description = "The license"),
        ("session_id" = Uuid, Path, description = "The waiter (from the acquire's 202)"),
        PollQuery,
    ),
    responses(
        (status = 200, description = "Where the waiter stands; once granted, with the session's token", body = QueueResponse),
        (status = 401, description = "Missing or invalid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such waiter of yours", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "wait_secs out of range", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user = %caller.user_id, session = %session_id))]
pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((license_id, session_id)): Path<(String, String)>,
    query: Result<Query<PollQuery>, QueryRejection>,
) -> Result<Json<QueueResponse>, Problem> {
    let actor = actor(&caller, &headers)?;
    let (license_id, session) = parse_ids(&license_id, &session_id)?;
    let query = super::error::query(query)?;
    let wait = query.wait_secs.unwrap_or(0);
    if wait > MAX_POLL_SECS {
        return Err(super::error::invalid(
            "wait_secs",
            "wait_secs must be between 0 and 60",
        ));
    }
    let licenses = &state.licenses;
    let mut view = licenses.queue_status(&actor, license_id, session).await?;
    if wait > 0 && matches!(view, QueueView::Waiting { .. }) {
        // Registered before reading again, so a grant in between is not missed.
        let granted = state.waiters.register(session);
        view = licenses.queue_status(&actor, license_id, session).await?;
        if matches!(view, QueueView::Waiting { .. }) {
            let _ = tokio::time::timeout(Duration::from_secs(u64::from(wait)), granted).await;
            view = licenses.queue_status(&actor, license_id, session).await?;
        }
    }
    Ok(Json(
        respond(&state, &actor, license_id, session, view).await?,
    ))
}

async fn respond(
    state: &AppState,
    actor: &Actor,
    license_id: LicenseId,
    session: SessionId,
    view: QueueView,
) -> Result<QueueResponse, Problem> {
    Ok(match view {
        QueueView::Waiting {
            position,
            waiters,
            wait_until,
        } => QueueResponse {
            position: Some(position),
            waiters: Some(waiters),
            wait_until: Some(wait_until),
            ..empty(WaiterStatus::Waiting, license_id, session)
        },
        QueueView::Granted { expires_at: None } => empty(WaiterStatus::Ended, license_id, session),
        QueueView::Granted {
            expires_at: Some(expires_at),
        } => {
            let token = state.licenses.session(actor, session).await?.state.token;
            let mut body = QueueResponse {
                expires_at: Some(expires_at),
                ..empty(WaiterStatus::Granted, license_id, session)
            };
            if let Some(t) = token {
                body.public_key_pem = Some(state.public_key_pem(&t.key_id).await?);
                body.key_id = Some(t.key_id);
                body.license_token = Some(t.token);
            }
            body
        }
        QueueView::Left(reason) => {
            let status = match reason {
                events::catalog::QueueLeaveReason::Cancelled => WaiterStatus::Cancelled,
                events::catalog::QueueLeaveReason::TimedOut => WaiterStatus::TimedOut,
            };
            empty(status, license_id, session)
        }
    })
}

/// Leave the queue without a seat.
#[utoipa::path(delete, path = "/api/v1/licenses/{license_id}/queue/{session_id}", tag = "licenses",
    params(
        ("license_id" = Uuid, Path, description = "The license"),
        ("session_id" = Uuid, Path, description = "The waiter"),
    ),
    responses(
        (status = 204, description = "Left the queue"),
        (status = 401, description = "Missing or invalid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such waiter of yours still waiting (a granted one is released instead)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user = %caller.user_id, session = %session_id))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((license_id, session_id)): Path<(String, String)>,
) -> Result<StatusCode, Problem> {
    let actor = actor(&caller, &headers)?;
    let (license_id, session) = parse_ids(&license_id, &session_id)?;
    state
        .licenses
        .leave_queue(&actor, license_id, session)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
