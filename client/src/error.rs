//! Errors, typed from the server's problem+json answers (RFC 9457).

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;
use serde::Deserialize;
use std::time::Duration;

/// What a call to the license server, or a token check, failed with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No seat is free now. `retry_after` is the server's hint (with strict
    /// seat accounting: when the tokens holding the seats lapse).
    #[error("no seat is free: {detail}")]
    NoSeats {
        /// When to try again, if the server said.
        retry_after: Option<Duration>,
        /// The server's explanation.
        detail: String,
    },
    /// Acquiring was refused for another reason than seats (the license is
    /// suspended or expired); `reason` is the server's machine-readable one.
    #[error("acquire refused ({reason}): {detail}")]
    Refused {
        /// `suspended` or `license_expired`.
        reason: String,
        /// The server's explanation.
        detail: String,
    },
    /// The bearer token is missing, expired or not accepted (after one
    /// refresh through the token provider, if there is one).
    #[error("unauthorized: {detail}")]
    Unauthorized {
        /// The server's explanation.
        detail: String,
    },
    /// No such license (in the caller's tenant) or no such live session.
    #[error("not found: {detail}")]
    NotFound {
        /// The server's explanation.
        detail: String,
    },
    /// Too many requests; try again after `retry_after`.
    #[error("rate limited: {detail}")]
    RateLimited {
        /// When to try again, if the server said.
        retry_after: Option<Duration>,
        /// The server's explanation.
        detail: String,
    },
    /// The request was not valid (a malformed hardware id, a license id
    /// needed because the tenant has several licenses, ...).
    #[error("invalid request ({status}): {detail}")]
    Invalid {
        /// HTTP status (400, 409, 422).
        status: u16,
        /// The server's explanation.
        detail: String,
    },
    /// The server failed or is unavailable (5xx); retrying later may help.
    #[error("server error ({status}): {detail}")]
    Server {
        /// HTTP status.
        status: u16,
        /// When to try again, if the server said.
        retry_after: Option<Duration>,
        /// The server's explanation.
        detail: String,
    },
    /// The server could not be reached, or its answer could not be read.
    #[error("network: {0}")]
    Network(String),
    /// A license token did not verify (signature, issuer, expiry, unknown
    /// key, or the local clock set back behind the last server time seen).
    #[error("license token rejected: {0}")]
    Token(String),
    /// The client was set up wrongly (a bad base URL, key or header).
    #[error("configuration: {0}")]
    Config(String),
}

impl Error {
    /// Whether trying the same call again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Network(_) | Self::Server { .. } | Self::RateLimited { .. }
        )
    }

    /// The server's hint of when to try again, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::NoSeats { retry_after, .. }
            | Self::RateLimited { retry_after, .. }
            | Self::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl From<reqwest::Error> for Error {
    fn from(err: reqwest::Error) -> Self {
        Self::Network(err.to_string())
    }
}

impl From<keys::KeyError> for Error {
    fn from(err: keys::KeyError) -> Self {
        Self::Token(err.to_string())
    }
}

/// The fields of a problem document the client reads.
#[derive(Debug, Default, Deserialize)]
struct Problem {
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

pub(crate) fn retry_after_of(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// The typed error of a non-success answer.
pub(crate) fn from_answer(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
    let problem: Problem = serde_json::from_slice(body).unwrap_or_default();
    let detail = problem
        .detail
        .or(problem.title)
        .unwrap_or_else(|| status.to_string());
    let retry_after = retry_after_of(headers);
    match status {
        StatusCode::UNAUTHORIZED => Error::Unauthorized { detail },
        StatusCode::NOT_FOUND | StatusCode::GONE => Error::NotFound { detail },
        StatusCode::TOO_MANY_REQUESTS => Error::RateLimited {
            retry_after,
            detail,
        },
        StatusCode::FORBIDDEN => match problem.reason.as_deref() {
            Some("no_seats") | None => Error::NoSeats {
                retry_after,
                detail,
            },
            Some(reason) => Error::Refused {
                reason: reason.to_owned(),
                detail,
            },
        },
        s if s.is_server_error() => Error::Server {
            status: s.as_u16(),
            retry_after,
            detail,
        },
        s => Error::Invalid {
            status: s.as_u16(),
            detail,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn problems_map_to_their_variants() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        let body = br#"{"status":403,"title":"Forbidden","detail":"acquire denied: no_seats","reason":"no_seats"}"#;
        match from_answer(StatusCode::FORBIDDEN, &headers, body) {
            Error::NoSeats {
                retry_after,
                detail,
            } => {
                assert_eq!(retry_after, Some(Duration::from_secs(7)));
                assert_eq!(detail, "acquire denied: no_seats");
            }
            other => panic!("{other:?}"),
        }
        let body = br#"{"detail":"acquire denied: suspended","reason":"suspended"}"#;
        assert!(matches!(
            from_answer(StatusCode::FORBIDDEN, &HeaderMap::new(), body),
            Error::Refused { reason, .. } if reason == "suspended"
        ));
        assert!(matches!(
            from_answer(StatusCode::SERVICE_UNAVAILABLE, &headers, b"not json"),
            Error::Server {
                status: 503,
                retry_after: Some(_),
                ..
            }
        ));
        assert!(matches!(
            from_answer(StatusCode::UNPROCESSABLE_ENTITY, &HeaderMap::new(), b"{}"),
            Error::Invalid { status: 422, .. }
        ));
        assert!(from_answer(StatusCode::TOO_MANY_REQUESTS, &headers, b"{}").is_transient());
        assert!(!from_answer(StatusCode::NOT_FOUND, &headers, b"{}").is_transient());
    }
}
