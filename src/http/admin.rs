//! Licenses of the caller's tenant (read: any user; issue, seats, policy,
//! suspension: the vendor, `license-vendor`).

use super::contract::integral;
use super::error::{invalid, ApiJson};
use super::{actor, AppState};
use crate::auth::{Caller, VendorCaller};
use crate::problem::Problem;
use crate::service::Terms;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::{DateTime, Utc};
use events::ids::{LicenseId, ProductId};
use events::license::{
    LicenseCommand, LicenseState, Policy, DEFAULT_SESSION_TTL_SECS, SESSION_TTL_RANGE,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A license as the log says it is now.
#[derive(Debug, Serialize, ToSchema)]
pub struct LicenseView {
    /// The license.
    pub license_id: Uuid,
    /// Its tenant.
    pub tenant_id: String,
    /// The product.
    pub product: String,
    /// Concurrent seats.
    pub seats: u32,
    /// Seats held by live sessions.
    pub seats_in_use: usize,
    /// Seats held now: live sessions, released seats the policy's linger
    /// still holds, and (strict accounting) ended sessions whose tokens may
    /// still be valid.
    pub seats_held: usize,
    /// Session TTL without heartbeats, seconds.
    pub session_ttl_secs: u32,
    /// Lifetime of each license token, seconds.
    pub token_ttl_secs: u32,
    /// Strict seat accounting.
    pub strict_seats: bool,
    /// End of validity, if any.
    pub valid_until: Option<DateTime<Utc>>,
    /// Whether acquires are refused.
    pub suspended: bool,
    /// Version of the license stream.
    pub version: i64,
    /// The policy in force.
    pub policy: Policy,
    /// Its version (0: the default policy, never set).
    pub policy_version: u32,
}

impl LicenseView {
    fn from_state(state: &LicenseState) -> Option<Self> {
        let info = state.issued.as_ref()?;
        Some(Self {
            license_id: info.license_id.as_uuid(),
            tenant_id: info.tenant_id.to_string(),
            product: info.product.to_string(),
            seats: info.seats,
            seats_in_use: state.sessions.len(),
            seats_held: state.seats_held(Utc::now()),
            session_ttl_secs: info.session_ttl_secs,
            token_ttl_secs: info.token_ttl_secs,
            strict_seats: info.strict_seats,
            valid_until: info.valid_until,
            suspended: state.suspended,
            version: state.version,
            policy: state.policy.clone(),
            policy_version: state.policy_version,
        })
    }
}

fn view(state: &LicenseState) -> Result<Json<LicenseView>, Problem> {
    LicenseView::from_state(state)
        .map(Json)
        .ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, "not-found", "license not found"))
}

fn parse_license(raw: &str) -> Result<LicenseId, Problem> {
    raw.parse::<LicenseId>()
        .map_err(|_| Problem::new(StatusCode::NOT_FOUND, "not-found", "license not found"))
}

/// Runs an admin command on a license of the caller's tenant and shows the result.
async fn administer(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    id: &str,
    cmd: LicenseCommand,
) -> Result<Json<LicenseView>, Problem> {
    let actor = actor(caller, headers)?;
    let license = parse_license(id)?;
    view(&state.licenses.administer(&actor, license, cmd).await?)
}

/// Body of `POST /admin/licenses`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueRequest {
    /// Product id (1-64 chars of `[A-Za-z0-9._-]`).
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    pub product: String,
    /// Concurrent seats (1-100000).
    #[serde(deserialize_with = "integral::u32")]
    #[schema(minimum = 1, maximum = 100_000)]
    pub seats: u32,
    /// Session TTL without heartbeats, seconds (1-604800, default 360).
    #[serde(default, deserialize_with = "integral::option_u32")]
    #[schema(minimum = 1, maximum = 604_800)]
    pub session_ttl_secs: Option<u32>,
    /// End of validity.
    pub valid_until: Option<DateTime<Utc>>,
    /// Lifetime of each license token, seconds (at least 1; default 300; a
    /// value above the session TTL is capped at it). Tokens are renewed
    /// while the session lives.
    #[serde(default, deserialize_with = "integral::option_u32")]
    #[schema(minimum = 1, maximum = 604_800)]
    pub token_ttl_secs: Option<u32>,
    /// Strict seat accounting (default false): a freed seat is not granted
    /// again while a token issued for it may still be valid; denied clients
    /// get `Retry-After`. Without it, a released seat's token may overlap
    /// its next holder's for at most one token lifetime.
    #[serde(default)]
    pub strict_seats: bool,
}

/// Body of `PUT /admin/licenses/{id}/seats`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SeatsRequest {
    /// New seat count (1-100000). Lowering it below the live sessions revokes the newest ones (their next heartbeat gets 404 and their tokens are not renewed).
    #[serde(deserialize_with = "integral::u32")]
    #[schema(minimum = 1, maximum = 100_000)]
    pub seats: u32,
}

/// Body of `POST /admin/licenses/{id}/suspend`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuspendRequest {
    /// Why (kept in the log): 1-1000 characters without control characters
    /// once surrounding whitespace is trimmed.
    #[schema(
        pattern = r"^[\t\n\x0B\f\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*(?:[^\x00-\x1F\x7F-\x9F\t\n\x0B\f\r \xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000](?:[^\x00-\x1F\x7F-\x9F]{0,998}[^\x00-\x1F\x7F-\x9F\t\n\x0B\f\r \xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000])?)[\t\n\x0B\f\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$"
    )]
    pub reason: String,
}

/// Licenses of your tenant.
#[utoipa::path(get, path = "/api/v1/licenses", tag = "licenses",
    responses((status = 200, body = [LicenseView]), (status = 401, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Json<Vec<LicenseView>>, Problem> {
    let actor = actor(&caller, &headers)?;
    let ids = state.licenses.issued(Some(&actor.tenant)).await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let license = state.licenses.license(id, Some(&actor.tenant)).await?;
        out.extend(LicenseView::from_state(&license));
    }
    Ok(Json(out))
}

/// One license of your tenant.
#[utoipa::path(get, path = "/api/v1/licenses/{license_id}", tag = "licenses",
    params(("license_id" = Uuid, Path)),
    responses((status = 200, body = LicenseView), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<LicenseView>, Problem> {
    let actor = actor(&caller, &headers)?;
    view(
        &state
            .licenses
            .license(parse_license(&id)?, Some(&actor.tenant))
            .await?,
    )
}

/// Issue a license to your tenant (vendor).
#[utoipa::path(post, path = "/api/v1/admin/licenses", tag = "vendor", request_body = IssueRequest,
    responses((status = 201, body = LicenseView), (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn issue(
    State(state): State<AppState>,
    VendorCaller(caller): VendorCaller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<IssueRequest>,
) -> Result<(StatusCode, Json<LicenseView>), Problem> {
    let actor = actor(&caller, &headers)?;
    let product = ProductId::parse(&body.product).map_err(|e| invalid("product", e))?;
    let session_ttl_secs = body.session_ttl_secs.unwrap_or(DEFAULT_SESSION_TTL_SECS);
    if body
        .token_ttl_secs
        .is_some_and(|t| !SESSION_TTL_RANGE.contains(&t))
    {
        return Err(invalid(
            "token_ttl_secs",
            "token_ttl_secs must be between 1 and 604800",
        ));
    }
    let terms = Terms {
        product,
        seats: body.seats,
        session_ttl_secs,
        valid_until: body.valid_until,
        // Capped at the session TTL (a longer token would outlive its seat).
        token_ttl_secs: body.token_ttl_secs.map(|t| t.min(session_ttl_secs)),
        strict_seats: body.strict_seats,
    };
    let license = state.licenses.issue_terms(&actor, terms).await?;
    Ok((StatusCode::CREATED, view(&license)?))
}

/// Change a license's seats (vendor).
#[utoipa::path(put, path = "/api/v1/admin/licenses/{license_id}/seats", tag = "vendor", request_body = SeatsRequest,
    params(("license_id" = Uuid, Path)),
    responses((status = 200, body = LicenseView), (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "The policy's reservations hold more seats than the new count", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn change_seats(
    State(state): State<AppState>,
    VendorCaller(caller): VendorCaller,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SeatsRequest>,
) -> Result<Json<LicenseView>, Problem> {
    let cmd = LicenseCommand::ChangeSeats {
        seats: body.seats,
        now: events::envelope::now(),
    };
    administer(&state, &caller, &headers, &id, cmd).await
}

/// Set a license's policy (vendor): linger, overdraft, per-user cap and
/// reservations, replacing the whole policy. A new policy appends
/// `PolicyChanged` with the next version; the policy in force again is a
/// no-op. Sessions granted under the old policy keep their seats.
#[utoipa::path(put, path = "/api/v1/admin/licenses/{license_id}/policy", tag = "vendor", request_body = Policy,
    params(("license_id" = Uuid, Path)),
    responses((status = 200, body = LicenseView), (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "Two reservations share a name, or the reservations hold more seats than the license has", body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn set_policy(
    State(state): State<AppState>,
    VendorCaller(caller): VendorCaller,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<serde_json::Map<String, serde_json::Value>>,
) -> Result<Json<LicenseView>, Problem> {
    // serde reads a struct from a JSON array too; the contract says objects.
    let reservations = body.get("reservations").and_then(|r| r.as_array());
    if reservations.is_some_and(|r| r.iter().any(|r| !r.is_object())) {
        return Err(invalid(
            "reservations",
            "each reservation must be an object",
        ));
    }
    let policy: Policy = serde_json::from_value(serde_json::Value::Object(body))
        .map_err(|e| invalid("policy", e))?;
    let cmd = LicenseCommand::SetPolicy { policy };
    administer(&state, &caller, &headers, &id, cmd).await
}

/// Suspend a license: acquires are denied and every live session is revoked (its next heartbeat gets 404, its token is not renewed) (vendor).
#[utoipa::path(post, path = "/api/v1/admin/licenses/{license_id}/suspend", tag = "vendor", request_body = SuspendRequest,
    params(("license_id" = Uuid, Path)),
    responses((status = 200, body = LicenseView), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn suspend(
    State(state): State<AppState>,
    VendorCaller(caller): VendorCaller,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SuspendRequest>,
) -> Result<Json<LicenseView>, Problem> {
    let cmd = LicenseCommand::Suspend {
        reason: body.reason,
        now: events::envelope::now(),
    };
    administer(&state, &caller, &headers, &id, cmd).await
}

/// Lift a suspension (vendor).
#[utoipa::path(post, path = "/api/v1/admin/licenses/{license_id}/reinstate", tag = "vendor",
    params(("license_id" = Uuid, Path)),
    responses((status = 200, body = LicenseView), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn reinstate(
    State(state): State<AppState>,
    VendorCaller(caller): VendorCaller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<LicenseView>, Problem> {
    administer(&state, &caller, &headers, &id, LicenseCommand::Reinstate).await
}
