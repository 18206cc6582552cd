//! How service errors and malformed requests become RFC 9457 problems.
//!
//! Policy: 4xx details tell the caller what to change; "not yours" is
//! always 404 (a caller never learns that another user's session exists);
//! 5xx bodies are generic and the cause is logged here, once; a database
//! that does not answer is 503 with `Retry-After`, not a hang or a 500.

use crate::problem::Problem;
use crate::service::ServiceError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use events::license::{DomainError, PolicyError};
use serde::de::DeserializeOwned;

impl From<ServiceError> for Problem {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::NotFound(what) => Problem::new(
                StatusCode::NOT_FOUND,
                "not-found",
                format!("{what} not found"),
            ),
            // The body is valid; the tenant's current licenses make it
            // ambiguous: a conflict with the state, not a malformed request.
            ServiceError::AmbiguousLicense(choices) => Problem::new(
                StatusCode::CONFLICT,
                "license-required",
                "your tenant has several licenses: name one with license_id",
            )
            .with("choices", choices),
            ServiceError::Domain(e) => domain_problem(e),
            ServiceError::Contention => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "contention",
                "too many concurrent changes to this license; retry shortly",
            ),
            ServiceError::Store(e) if e.is_unavailable() => unavailable(&e),
            ServiceError::Append(e) if e.is_unavailable() => unavailable(&e),
            other => {
                tracing::error!(error = %other, "request failed");
                Problem::internal()
            }
        }
    }
}

impl From<events::store::StoreError> for Problem {
    fn from(err: events::store::StoreError) -> Self {
        ServiceError::Store(err).into()
    }
}

/// 503: the log's database does not answer (within `ACQUIRE_TIMEOUT`).
fn unavailable(err: &dyn std::fmt::Display) -> Problem {
    tracing::error!(error = %err, "the event log is unavailable");
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the license log is unavailable; retry shortly",
    )
    .with_header(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("2"),
    )
}

fn domain_problem(err: DomainError) -> Problem {
    let status = match err {
        DomainError::NotIssued | DomainError::SessionNotFound => StatusCode::NOT_FOUND,
        DomainError::AlreadyIssued
        | DomainError::SessionIdInUse
        | DomainError::IdempotencyKeyReused => StatusCode::CONFLICT,
        DomainError::NotYetExpired(_) => StatusCode::CONFLICT,
        DomainError::NotWaiting => StatusCode::NOT_FOUND,
        // A valid borrow the license's policy does not allow (now).
        DomainError::BorrowNotAllowed { .. } => StatusCode::CONFLICT,
        // The request is well-formed but conflicts with itself or with the
        // license (its seat count), which no schema can say.
        DomainError::InvalidPolicy(
            PolicyError::DuplicateName(_) | PolicyError::OverReserved { .. },
        ) => StatusCode::CONFLICT,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    Problem::new(status, "rule", err.to_string())
}

/// A problem for a field that failed validation.
pub fn invalid(field: &str, detail: impl std::fmt::Display) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-field",
        format!("{detail}"),
    )
    .with("field", field)
}

/// `Json<T>` whose rejections are problems: 400 malformed JSON, 413 too
/// large, 415 wrong content type, 422 wrong shape (unknown or missing fields).
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_problem(rejection)),
        }
    }
}

fn json_problem(rejection: JsonRejection) -> Problem {
    let detail = rejection.body_text();
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "the request body is too large",
        );
    }
    match rejection {
        JsonRejection::JsonDataError(_) => {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-body", detail)
        }
        JsonRejection::JsonSyntaxError(_) => {
            Problem::new(StatusCode::BAD_REQUEST, "malformed-json", detail)
        }
        JsonRejection::MissingJsonContentType(_) => Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content-type",
            "send Content-Type: application/json",
        ),
        _ => Problem::new(StatusCode::BAD_REQUEST, "bad-request", detail),
    }
}

/// The parsed query string, or a 422 problem naming what is wrong with it.
pub fn query<T>(
    parsed: Result<axum::extract::Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, Problem> {
    parsed.map(|axum::extract::Query(q)| q).map_err(|e| {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-query",
            e.body_text(),
        )
    })
}
