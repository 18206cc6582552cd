//! Operational routes: health, readiness, JWKS, metrics, OpenAPI.

use super::{ApiDoc, AppState};
use crate::metrics;
use crate::problem::Problem;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use events::store::EventStore;
use keys::jwks_document;
use serde_json::{json, Value};
use std::time::Duration;
use utoipa::OpenApi;

/// Liveness: the process serves requests.
#[utoipa::path(get, path = "/api/v1/health", tag = "ops", responses((status = 200, description = "Alive")))]
pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: Postgres, Redis and NATS answer.
#[utoipa::path(get, path = "/api/v1/ready", tag = "ops",
    responses((status = 200, description = "Ready"), (status = 503, description = "A dependency is down", body = Problem, content_type = "application/problem+json")))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<Value>, Problem> {
    let timeout = Duration::from_secs(2);
    let pg = tokio::time::timeout(timeout, state.licenses.store().ping())
        .await
        .map(|r| r.is_ok())
        .unwrap_or(false);
    let redis = match state.redis.clone() {
        Some(mut conn) => {
            tokio::time::timeout(timeout, redis::cmd("PING").query_async::<String>(&mut conn))
                .await
                .map(|r| r.is_ok())
                .unwrap_or(false)
        }
        None => false,
    };
    let nats = match &state.nats {
        Some(client) => {
            client.connection_state() == async_nats::connection::State::Connected
                && tokio::time::timeout(timeout, client.flush())
                    .await
                    .map(|r| r.is_ok())
                    .unwrap_or(false)
        }
        None => false,
    };
    let checks = json!({ "postgres": pg, "redis": redis, "nats": nats });
    if pg && redis && nats {
        Ok(Json(json!({ "status": "ready", "checks": checks })))
    } else {
        Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "a dependency is not answering",
        )
        .with("checks", checks))
    }
}

/// Public keys of every enabled signing key version, as a JWKS.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "ops", responses(
    (status = 200, description = "JWKS"),
    (status = 503, description = "The signing keys are unavailable; retry shortly", body = Problem, content_type = "application/problem+json"),
))]
pub async fn jwks(State(state): State<AppState>) -> Result<impl IntoResponse, Problem> {
    let keys = state.signer.public_keys().await.map_err(|e| {
        tracing::error!(error = %e, "listing signing keys failed");
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "signer-unavailable",
            "the signing keys are unavailable",
        )
    })?;
    Ok((
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(jwks_document(&keys)),
    ))
}

/// Prometheus metrics.
pub async fn metrics(State(store): State<EventStore>) -> impl IntoResponse {
    let head = store.head_position().await.ok();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics::render(head),
    )
}

/// The OpenAPI document.
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Unknown routes get a problem too.
pub async fn not_found() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "not-found", "no such route")
}
