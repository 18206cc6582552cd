//! HTTP layer: per-resource routers, middleware, OpenAPI.

pub mod admin;
pub mod audit;
pub mod console;
pub mod contract;
use contract::CommonResponses;
pub mod error;
pub mod licenses;
pub mod ops;
pub mod queue;
pub mod ratelimit;
pub mod reports;
pub mod usage;

use crate::auth::{Authenticator, Caller};
use crate::problem::Problem;
use crate::service::{Actor, Licenses};
use crate::signer::SigningBackend;
use crate::workers::token_waiters::TokenWaiters;
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::routing::{delete, get, post, put};
use axum::Router;
use events::ids::SessionId;
use std::sync::Arc;
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

/// Largest request body accepted (bytes).
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Largest policy body: 32 reservations of 100 users and 100 groups each
/// fit, written in ASCII.
pub const MAX_POLICY_BYTES: usize = 4 * 1024 * 1024;

/// Everything handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Command side.
    pub licenses: Arc<Licenses>,
    /// User token verification.
    pub auth: Arc<Authenticator>,
    /// The license-token signing key (for its public half).
    pub signer: Arc<dyn SigningBackend>,
    /// Acquires waiting for tokens.
    pub waiters: Arc<TokenWaiters>,
    /// Redis (the read model; readiness).
    pub redis: Option<redis::aio::ConnectionManager>,
    /// Key prefix of the read model in Redis.
    pub redis_prefix: String,
    /// NATS (readiness).
    pub nats: Option<async_nats::Client>,
    /// How long acquire waits for the token before answering 202.
    pub token_wait: Duration,
    /// `iss` of the license tokens this service mints.
    pub token_issuer: String,
    /// Parsed verification keys by key id, with the PEM they came from.
    pub verifiers: Arc<std::sync::Mutex<Verifiers>>,
}

/// Parsed license-token verification keys by key id (a handful: the
/// signing key and the ones it rotated from).
pub type Verifiers = std::collections::HashMap<String, (String, keys::TokenVerifier)>;

impl FromRef<AppState> for events::store::EventStore {
    fn from_ref(state: &AppState) -> Self {
        state.licenses.store().clone()
    }
}

impl FromRef<AppState> for Arc<Authenticator> {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}

impl AppState {
    /// PEM of the public key `key_id` (refreshing the key list once if unknown).
    pub async fn public_key_pem(&self, key_id: &str) -> Result<String, Problem> {
        let find =
            |keys: Vec<keys::PublicKey>| keys.into_iter().find(|k| k.kid == key_id).map(|k| k.pem);
        let keys = self.signer.public_keys().await.map_err(signer_problem)?;
        if let Some(pem) = find(keys) {
            return Ok(pem);
        }
        let keys = self
            .signer
            .refresh_public_keys()
            .await
            .map_err(signer_problem)?;
        find(keys).ok_or_else(|| {
            tracing::error!(%key_id, "a token was signed by a key that is not published");
            Problem::internal()
        })
    }
}

impl AppState {
    /// Whether `token` is a license token signed by one of our keys (`kid`)
    /// for `session`: what the token waiters hear on NATS is only a hint.
    pub async fn verify_session_token(&self, kid: &str, token: &str, session: SessionId) -> bool {
        let Ok(keys) = self.signer.public_keys().await else {
            return false;
        };
        let Some(key) = keys.iter().find(|k| k.kid == kid) else {
            return false;
        };
        let verifier = {
            let mut cache = self.verifiers.lock().unwrap_or_else(|p| p.into_inner());
            match cache.get(kid) {
                Some((pem, verifier)) if *pem == key.pem => Ok(verifier.clone()),
                _ => keys::TokenVerifier::from_pem(&key.pem).inspect(|v| {
                    if cache.len() >= 64 {
                        cache.clear();
                    }
                    cache.insert(kid.to_owned(), (key.pem.clone(), v.clone()));
                }),
            }
        };
        match verifier.and_then(|v| v.verify(token, &self.token_issuer)) {
            Ok(claims) => claims.sid == session.to_string(),
            Err(err) => {
                tracing::warn!(error = %err, %session, "a TokenIssued message that does not verify was ignored");
                false
            }
        }
    }
}

fn signer_problem(err: crate::signer::SignerError) -> Problem {
    tracing::error!(error = %err, "reading the signing public keys failed");
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "signer-unavailable",
        "the signing keys are unavailable; retry shortly",
    )
}

/// The acting caller as the service sees it (typed ids, request id).
pub fn actor(caller: &Caller, headers: &HeaderMap) -> Result<Actor, Problem> {
    let unauthorized = |_| {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the token's subject or tenant is malformed",
        )
    };
    Ok(Actor {
        tenant: caller.tenant().map_err(unauthorized)?,
        user: caller.user().map_err(unauthorized)?,
        admin: caller.is_admin,
        groups: caller.groups().map_err(unauthorized)?,
        correlation_id: headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    })
}

/// The OpenAPI document (served at `/api/v1/openapi.json`).
#[derive(OpenApi)]
#[openapi(
    info(title = "License Ledger", description = "Floating licenses over an event log: acquire, heartbeat, release."),
    paths(
        licenses::acquire, licenses::heartbeat, licenses::release, licenses::token,
        queue::status, queue::cancel,
        admin::list, admin::get, admin::issue, admin::change_seats, admin::set_policy, admin::suspend, admin::reinstate,
        usage::usage,
        usage::sessions,
        reports::report, reports::denials, audit::status, audit::verify,
        ops::health, ops::ready, ops::jwks,
    ),
    components(schemas(Problem)),
    modifiers(&BearerAuth, &CommonResponses),
    tags((name = "licenses", description = "Client routes"), (name = "admin", description = "Needs the license-admin role (the tenant's license admin)"), (name = "vendor", description = "Needs the license-vendor role (the vendor)"))
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Health of a worker process (publish, sign, reap, project).
pub fn worker_router(store: events::store::EventStore) -> Router {
    Router::new()
        .route("/api/v1/health", get(ops::health))
        .fallback(ops::not_found)
        .with_state(store)
}

/// `/metrics`, on its own listener (`METRICS_ADDR`): never beside the API,
/// so that the ingress, which routes the API's port, cannot expose it.
pub fn metrics_router(store: events::store::EventStore) -> Router {
    Router::new()
        .route("/metrics", get(ops::metrics))
        .fallback(ops::not_found)
        .with_state(store)
}

/// Verifies the bearer token, if any, and leaves the [`Caller`] in the
/// request extensions for the rate limiter and the handlers. Never answers
/// itself: a missing or bad token is the handler's 401.
async fn authenticate(
    axum::extract::State(auth): axum::extract::State<Arc<Authenticator>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if let Some(token) = crate::auth::bearer_token(request.headers()) {
        if let Ok(caller) = auth.verify(token).await {
            request.extensions_mut().insert::<Caller>(caller);
        }
    }
    next.run(request).await
}

/// Longest `X-Request-Id` kept (it is stored in every event's metadata).
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Drops an `X-Request-Id` that is too long or has characters outside
/// `[A-Za-z0-9._:-]`, so that a fresh one is generated instead.
async fn drop_invalid_request_id(mut request: axum::extract::Request) -> axum::extract::Request {
    let valid = |v: &HeaderValue| {
        let b = v.as_bytes();
        !b.is_empty()
            && b.len() <= MAX_REQUEST_ID_LEN
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"._:-".contains(c))
    };
    if request
        .headers()
        .get("x-request-id")
        .is_some_and(|v| !valid(v))
    {
        request.headers_mut().remove("x-request-id");
    }
    request
}

/// The whole HTTP application.
pub fn router(
    state: AppState,
    rate_limit: ratelimit::RateLimitConfig,
    allowed_origins: &[String],
) -> Router {
    let limiter = ratelimit::RateLimiter::new(rate_limit);
    let api = Router::new()
        .route("/licenses/acquire", post(licenses::acquire))
        .route("/licenses/heartbeat/{session_id}", put(licenses::heartbeat))
        .route("/licenses/release/{session_id}", delete(licenses::release))
        .route(
            "/licenses/sessions/{session_id}/token",
            get(licenses::token),
        )
        .route("/licenses", get(admin::list))
        .route("/licenses/{license_id}", get(admin::get))
        .route("/licenses/{license_id}/usage", get(usage::usage))
        .route(
            "/licenses/{license_id}/queue/{session_id}",
            get(queue::status).delete(queue::cancel),
        )
        .route(
            "/admin/licenses/{license_id}/sessions",
            get(usage::sessions),
        )
        .route("/admin/licenses/{license_id}/report", get(reports::report))
        .route(
            "/admin/licenses/{license_id}/denials",
            get(reports::denials),
        )
        .route("/admin/audit", get(audit::status))
        .route("/admin/audit/verifications", post(audit::verify))
        .route("/admin/licenses", post(admin::issue))
        .route(
            "/admin/licenses/{license_id}/seats",
            put(admin::change_seats),
        )
        .route(
            "/admin/licenses/{license_id}/policy",
            put(admin::set_policy).layer(DefaultBodyLimit::max(MAX_POLICY_BYTES)),
        )
        .route("/admin/licenses/{license_id}/suspend", post(admin::suspend))
        .route(
            "/admin/licenses/{license_id}/reinstate",
            post(admin::reinstate),
        )
        .layer(axum::middleware::from_fn_with_state(
            limiter,
            ratelimit::layer,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.auth.clone(),
            authenticate,
        ))
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/openapi.json", get(ops::openapi));
    let origins: Vec<HeaderValue> = allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o.trim()).ok())
        .collect();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([
            axum::http::header::AUTHORIZATION,
            axum::http::header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
        ])
        .expose_headers([
            HeaderName::from_static("ratelimit-limit"),
            HeaderName::from_static("ratelimit-remaining"),
            HeaderName::from_static("ratelimit-reset"),
            HeaderName::from_static("x-request-id"),
        ]);
    let request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .nest("/api/v1", api)
        .route("/.well-known/jwks.json", get(ops::jwks))
        .merge(console::router())
        .merge(utoipa_swagger_ui::SwaggerUi::new("/api/docs").url("/api/docs/openapi.json", ApiDoc::openapi()))
        .fallback(ops::not_found)
        .with_state(state)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(cors)
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
            // Only method and path: never headers (bearer tokens) or bodies.
            tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .layer(axum::middleware::map_request(drop_invalid_request_id))
}
