//! Client routes: acquire, heartbeat, release, fetch a session's token, and
//! the licenses of the caller's tenant.

use super::error::{invalid, ApiJson};
use super::{actor, AppState};
use crate::auth::Caller;
use crate::metrics;
use crate::problem::Problem;
use crate::service::{Acquisition, Actor, SeatRequest};
use crate::workers::token_waiters::Minted;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use events::catalog::DenialReason;
use events::ids::{HardwareId, IdempotencyKey, LicenseId, SessionId};
use events::license::{MAX_BORROW_SECS, MAX_QUEUE_WAIT_SECS};
use serde::{Deserialize, Serialize};
use std::time::Instant;
use tokio::sync::oneshot;
use utoipa::ToSchema;
use uuid::Uuid;

/// Body of `POST /licenses/acquire`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcquireRequest {
    /// The license; may be omitted when the tenant has exactly one.
    pub license_id: Option<Uuid>,
    /// The machine (1-128 chars of `[A-Za-z0-9:._-]`; surrounding whitespace is trimmed).
    #[schema(
        pattern = r"^[\t\n\x0B\f\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*[A-Za-z0-9:._-]{1,128}[\t\n\x0B\f\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$"
    )]
    pub hardware_id: String,
    /// If no seat may be granted now, wait in the license's queue up to this
    /// many seconds (0 to 86400, cut to the policy's `max_queue_wait_secs`;
    /// a license whose policy has no queue denies as usual). A queued acquire
    /// answers 202 with the waiter's `queue_url`.
    #[serde(default, deserialize_with = "events::integral::option_u32")]
    #[schema(minimum = 0, maximum = 86400)]
    pub wait_secs: Option<u32>,
    /// Borrow the seat (use it offline) for this many seconds (1 to 2592000,
    /// at most the policy's `max_borrow_secs`, else 409): the token's `exp`
    /// is the borrow's end, and the seat stays held until then or until it
    /// is released.
    #[serde(default, deserialize_with = "events::integral::option_u32")]
    #[schema(minimum = 1, maximum = 2592000)]
    pub borrow_secs: Option<u32>,
}

/// The 202 of an acquire: a granted seat whose token is not minted yet, or
/// (with `wait_secs`) a place in the license's queue.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum AcquireAccepted {
    /// Granted; fetch the token at `token_url`.
    Pending(AcquirePending),
    /// Waiting in the queue; long-poll `queue_url`.
    Queued(super::queue::QueueResponse),
}

/// A granted seat with its signed license token.
#[derive(Debug, Serialize, ToSchema)]
pub struct AcquireResponse {
    /// RS256 JWT signed by the license server (verify offline with `public_key_pem`).
    pub license_token: String,
    /// PEM of the key that signed the token.
    pub public_key_pem: String,
    /// Deadline of the session; heartbeat before it.
    pub expires_at: DateTime<Utc>,
    /// The session.
    pub session_id: Uuid,
    /// The license.
    pub license_id: Uuid,
}

/// A granted seat whose token is not minted yet (202).
#[derive(Debug, Serialize, ToSchema)]
pub struct AcquirePending {
    /// The session.
    pub session_id: Uuid,
    /// The license.
    pub license_id: Uuid,
    /// Deadline of the session.
    pub expires_at: DateTime<Utc>,
    /// Where to fetch the token once minted.
    pub token_url: String,
}

/// A session's new deadline and its current license token.
#[derive(Debug, Serialize, ToSchema)]
pub struct HeartbeatResponse {
    /// The session.
    pub session_id: Uuid,
    /// The new deadline.
    pub expires_at: DateTime<Utc>,
    /// The session's current license token (renewed ahead of its expiry while
    /// the session lives; absent until the first one is minted).
    pub license_token: Option<String>,
    /// Key id (`kid`) of the key that signed it (see `/.well-known/jwks.json`).
    pub key_id: Option<String>,
    /// The token's `exp`.
    pub token_expires_at: Option<DateTime<Utc>>,
    /// A renewed token was asked for and is being minted: the next heartbeat carries it.
    pub token_renewal_pending: bool,
    /// Heartbeat at least this often (seconds) to keep both the seat and an unexpired token.
    pub heartbeat_interval_secs: i64,
    /// The server's clock now (a client can detect its own clock set back).
    pub server_time: DateTime<Utc>,
}

/// A minted license token.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// The session.
    pub session_id: Uuid,
    /// The token.
    pub license_token: String,
    /// Key id (`kid`) of the signing key.
    pub key_id: String,
    /// PEM of that key.
    pub public_key_pem: String,
}

fn parse_session(raw: &str) -> Result<SessionId, Problem> {
    // An unparseable id cannot name anyone's session: not found, like any other.
    raw.parse::<SessionId>()
        .map_err(|_| Problem::new(StatusCode::NOT_FOUND, "not-found", "session not found"))
}

/// Acquire a seat.
#[utoipa::path(post, path = "/api/v1/licenses/acquire", tag = "licenses",
    request_body = AcquireRequest,
    params(("Idempotency-Key" = Option<String>, Header, pattern = r"^[!-~]{1,255}$", description = "Retries with the same key return the same session (1-255 visible ASCII characters)")),
    responses(
        (status = 200, description = "Seat granted", body = AcquireResponse),
        (status = 202, description = "Seat granted and token not minted yet, or (with wait_secs) waiting in the queue", body = AcquireAccepted),
        (status = 401, description = "Missing or invalid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "No seat available (or license suspended / expired)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such license in your tenant", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "license_id required: your tenant has several licenses (the choices are listed); or borrow_secs beyond the policy's max_borrow_secs", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user = %caller.user_id, tenant = %caller.tenant_id))]
pub async fn acquire(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<AcquireRequest>,
) -> Result<Response, Problem> {
    let started = Instant::now();
    let actor = actor(&caller, &headers)?;
    let hardware_id =
        HardwareId::parse(&body.hardware_id).map_err(|e| invalid("hardware_id", e))?;
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| IdempotencyKey::parse(s).ok())
                .ok_or_else(|| {
                    invalid(
                        "Idempotency-Key",
                        "Idempotency-Key must be 1-255 printable characters",
                    )
                })?,
        ),
    };
    if body.wait_secs.is_some_and(|w| w > MAX_QUEUE_WAIT_SECS) {
        return Err(invalid(
            "wait_secs",
            "wait_secs must be between 0 and 86400",
        ));
    }
    if body
        .borrow_secs
        .is_some_and(|b| !(1..=MAX_BORROW_SECS).contains(&b))
    {
        return Err(invalid(
            "borrow_secs",
            "borrow_secs must be between 1 and 2592000",
        ));
    }
    let licenses = &state.licenses;
    let license_id = licenses
        .resolve_license(&actor, body.license_id.map(LicenseId::from_uuid))
        .await?;
    // Wait for the token of the session this acquire may create before
    // asking: the signer can be quicker than the answer.
    let proposed = SessionId::new();
    let waiting = state.waiters.register(proposed);
    let request = SeatRequest {
        hardware_id,
        idempotency_key: key,
        wait_secs: body.wait_secs,
        borrow_secs: body.borrow_secs,
    };
    let outcome = licenses
        .acquire_as(&actor, license_id, request, proposed)
        .await;
    let response = match outcome? {
        Acquisition::Queued {
            license_id,
            session_id,
            position,
            wait_until,
            ..
        } => Ok(super::queue::queued(
            license_id, session_id, position, None, wait_until,
        )),
        Acquisition::Denied {
            reason, retry_at, ..
        } => Err(denied(reason, retry_at)),
        Acquisition::Granted {
            license_id,
            session_id,
            expires_at,
            existing,
        } => {
            let fresh = (!existing && session_id == proposed).then_some(waiting);
            Ok(granted(&state, &actor, license_id, session_id, expires_at, fresh).await?)
        }
    };
    metrics::observe_latency("acquire", started.elapsed());
    response
}

/// 403 for a denied acquire; with strict seat accounting, `Retry-After`
/// says when the tokens holding the seats lapse.
fn denied(reason: DenialReason, retry_at: Option<DateTime<Utc>>) -> Problem {
    let mut problem = Problem::new(
        StatusCode::FORBIDDEN,
        "no-seat",
        format!("acquire denied: {}", reason.as_str()),
    )
    .with("reason", reason.as_str());
    if let Some(at) = retry_at {
        let secs = (at - Utc::now()).num_seconds().max(0) + 1;
        problem = problem.with("retry_at", at);
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            problem = problem.with_header(header::RETRY_AFTER, v);
        }
    }
    problem
}

/// Waits (bounded) for the session's token; 200 with it, or 202 with where to fetch it.
async fn granted(
    state: &AppState,
    actor: &Actor,
    license_id: LicenseId,
    session_id: SessionId,
    expires_at: DateTime<Utc>,
    fresh: Option<oneshot::Receiver<Minted>>,
) -> Result<Response, Problem> {
    // A new session has no token yet and its waiter was registered before
    // the grant; an existing one may have its token in the log already.
    let (known, waiting) = match fresh {
        Some(waiting) => (None, waiting),
        None => {
            let waiting = state.waiters.register(session_id);
            let known = state.licenses.session(actor, session_id).await?.state.token;
            (known, waiting)
        }
    };
    let minted = match known {
        Some(t) => Some((t.key_id, t.token)),
        None => match tokio::time::timeout(state.token_wait, waiting).await {
            // What NATS brought is only a hint: hand it out only if it is
            // ours, for this session (a forged message changes nothing).
            Ok(Ok((kid, token))) if state.verify_session_token(&kid, &token, session_id).await => {
                Some((kid, token))
            }
            _ => None,
        },
    };
    let minted = match minted {
        Some(m) => Some(m),
        // The notification may have been missed: the log is the truth.
        None => state
            .licenses
            .session(actor, session_id)
            .await?
            .state
            .token
            .map(|t| (t.key_id, t.token)),
    };
    match minted {
        Some((key_id, token)) => {
            let public_key_pem = state.public_key_pem(&key_id).await?;
            Ok(Json(AcquireResponse {
                license_token: token,
                public_key_pem,
                expires_at,
                session_id: session_id.as_uuid(),
                license_id: license_id.as_uuid(),
            })
            .into_response())
        }
        None => {
            let token_url = format!("/api/v1/licenses/sessions/{session_id}/token");
            let mut response = (
                StatusCode::ACCEPTED,
                Json(AcquirePending {
                    session_id: session_id.as_uuid(),
                    license_id: license_id.as_uuid(),
                    expires_at,
                    token_url: token_url.clone(),
                }),
            )
                .into_response();
            let headers = response.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&token_url) {
                headers.insert(header::LOCATION, v);
            }
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            Ok(response)
        }
    }
}

/// Keep a session alive.
#[utoipa::path(put, path = "/api/v1/licenses/heartbeat/{session_id}", tag = "licenses",
    params(("session_id" = Uuid, Path, description = "The session")),
    responses(
        (status = 200, description = "Deadline extended", body = HeartbeatResponse),
        (status = 401, description = "Missing or invalid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such live session of yours", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user = %caller.user_id, session = %session_id))]
pub async fn heartbeat(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(session_id): Path<String>,
) -> Result<Json<HeartbeatResponse>, Problem> {
    let started = Instant::now();
    let actor = actor(&caller, &headers)?;
    let session = parse_session(&session_id)?;
    let beat = state.licenses.heartbeat(&actor, session).await?;
    metrics::observe_latency("heartbeat", started.elapsed());
    let now = Utc::now();
    // Often enough to see a renewal (asked at half the token's life) before
    // the token expires, and to keep the session.
    let interval = (beat.token_ttl / 4).min((beat.expires_at - now) / 3);
    Ok(Json(HeartbeatResponse {
        session_id: session.as_uuid(),
        expires_at: beat.expires_at,
        token_expires_at: beat.token.as_ref().and_then(|t| t.expires_at),
        key_id: beat.token.as_ref().map(|t| t.key_id.clone()),
        license_token: beat.token.map(|t| t.token),
        token_renewal_pending: beat.renewal_due,
        heartbeat_interval_secs: interval.num_seconds().max(1),
        server_time: now,
    }))
}

/// Give a seat back.
#[utoipa::path(delete, path = "/api/v1/licenses/release/{session_id}", tag = "licenses",
    params(("session_id" = Uuid, Path, description = "The session")),
    responses(
        (status = 204, description = "Released"),
        (status = 401, description = "Missing or invalid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such live session of yours", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user = %caller.user_id, session = %session_id))]
pub async fn release(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(session_id): Path<String>,
) -> Result<StatusCode, Problem> {
    let started = Instant::now();
    let actor = actor(&caller, &headers)?;
    let session = parse_session(&session_id)?;
    state.licenses.release(&actor, session).await?;
    metrics::observe_latency("release", started.elapsed());
    Ok(StatusCode::NO_CONTENT)
}

/// Fetch a session's license token (after a 202 from acquire).
#[utoipa::path(get, path = "/api/v1/licenses/sessions/{session_id}/token", tag = "licenses",
    params(("session_id" = Uuid, Path, description = "The session")),
    responses(
        (status = 200, description = "The token", body = TokenResponse),
        (status = 202, description = "Not minted yet; retry after Retry-After seconds"),
        (status = 404, description = "No such session of yours", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The session has ended: no token will come", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user = %caller.user_id, session = %session_id))]
pub async fn token(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(session_id): Path<String>,
) -> Result<Response, Problem> {
    let actor = actor(&caller, &headers)?;
    let session = parse_session(&session_id)?;
    let view = state.licenses.session(&actor, session).await?;
    if view.state.closed.is_some() {
        // Its token is not renewed any more; waiting would never end.
        return Err(Problem::new(
            StatusCode::GONE,
            "session-ended",
            "the session has ended (released, expired or revoked)",
        ));
    }
    match view.state.token {
        Some(t) => {
            let public_key_pem = state.public_key_pem(&t.key_id).await?;
            Ok(Json(TokenResponse {
                session_id: session.as_uuid(),
                license_token: t.token,
                key_id: t.key_id,
                public_key_pem,
            })
            .into_response())
        }
        None => Ok((StatusCode::ACCEPTED, [(header::RETRY_AFTER, "1")]).into_response()),
    }
}
