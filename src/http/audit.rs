//! The audit status of the caller's tenant (admin): the last signed
//! checkpoint and whether it covers the tenant's newest event, the last
//! verification, and running one: every hash chain of the tenant's streams
//! (its license streams and the session streams they name) and their heads,
//! checked in one pass and recorded.
//!
//! What this does not do: check the checkpoints' signatures or the whole
//! log's running hash, nor compare with external checkpoints; `ledger
//! verify` does, from the log and the public keys alone.

use super::{actor, AppState};
use crate::auth::AdminCaller;
use crate::problem::Problem;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use chrono::{DateTime, Utc};
use events::audit::CHECKPOINT_STREAM;
use events::catalog::LicenseEvent;
use events::ids::TenantId;
use events::store::{EventStore, Verification, MAX_PROBLEMS};
use serde::Serialize;
use utoipa::ToSchema;

/// The last signed checkpoint of the log.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointView {
    /// Global position of the last event it covers.
    pub up_to_position: i64,
    /// Hex SHA-256 running hash of the log up to there.
    pub chain_head: String,
    /// Signing key version.
    pub key_id: String,
    /// When it was recorded.
    pub signed_at: DateTime<Utc>,
    /// It covers the tenant's newest event.
    pub covers_tenant: bool,
}

/// The audit status of a tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditView {
    /// The tenant.
    pub tenant_id: String,
    /// Position of the tenant's newest event (0: none).
    pub tenant_head_position: i64,
    /// The log's newest position.
    pub log_head_position: i64,
    /// The newest signed checkpoint (`null`: none yet).
    pub last_checkpoint: Option<CheckpointView>,
    /// The newest verification run for the tenant (`null`: never).
    pub last_verification: Option<Verification>,
}

async fn last_checkpoint(store: &EventStore) -> Result<Option<(i64, CheckpointView)>, Problem> {
    let Some(version) = store.stream_version(CHECKPOINT_STREAM).await? else {
        return Ok(None);
    };
    let Some(recorded) = store.event_at(CHECKPOINT_STREAM, version).await? else {
        return Ok(None);
    };
    let Ok(LicenseEvent::CheckpointSigned {
        up_to_position,
        chain_head,
        key_id,
        ..
    }) = events::envelope::decode(&recorded)
    else {
        return Ok(None);
    };
    let view = CheckpointView {
        up_to_position,
        chain_head,
        key_id,
        signed_at: recorded.recorded_at,
        covers_tenant: false,
    };
    Ok(Some((up_to_position, view)))
}

/// The audit status of your tenant (admin).
#[utoipa::path(get, path = "/api/v1/admin/audit", tag = "admin",
    responses(
        (status = 200, body = AuditView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user = %caller.user_id, tenant = %caller.tenant_id))]
pub async fn status(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    headers: HeaderMap,
) -> Result<Json<AuditView>, Problem> {
    let actor = actor(&caller, &headers)?;
    let store = state.licenses.store();
    let streams = store.tenant_streams(&actor.tenant).await?;
    let tenant_head = store.head_of(&streams).await?;
    let last_checkpoint = last_checkpoint(store).await?.map(|(covered, mut view)| {
        view.covers_tenant = covered >= tenant_head;
        view
    });
    Ok(Json(AuditView {
        tenant_id: actor.tenant.to_string(),
        tenant_head_position: tenant_head,
        log_head_position: store.head_position().await?,
        last_checkpoint,
        last_verification: store.last_verification(&actor.tenant).await?,
    }))
}

/// Verifies every stream of `tenant` and records the result.
pub async fn verify_tenant(
    store: &EventStore,
    tenant: &TenantId,
) -> Result<Verification, events::store::StoreError> {
    let started_at = Utc::now();
    let streams = store.tenant_streams(tenant).await?;
    let report = store.verify_streams(&streams).await?;
    let verification = Verification {
        started_at,
        finished_at: Utc::now(),
        ok: report.is_intact(),
        streams: report.streams,
        events: report.events,
        problems: report
            .breaks
            .iter()
            .take(MAX_PROBLEMS)
            .map(ToString::to_string)
            .collect(),
    };
    store.record_verification(tenant, &verification).await?;
    Ok(verification)
}

/// Verify your tenant's streams now (admin): every hash chain and stream head.
#[utoipa::path(post, path = "/api/v1/admin/audit/verifications", tag = "admin",
    responses(
        (status = 200, description = "The verification just run (also recorded as the last one)", body = Verification),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user = %caller.user_id, tenant = %caller.tenant_id))]
pub async fn verify(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    headers: HeaderMap,
) -> Result<Json<Verification>, Problem> {
    let actor = actor(&caller, &headers)?;
    Ok(Json(
        verify_tenant(state.licenses.store(), &actor.tenant).await?,
    ))
}
