//! Authentication of user requests: RS256 bearer JWTs verified against a JWKS.
//!
//! Owns invariant 10's "valid bearer JWT" half: the algorithm is pinned to
//! RS256 (`none`, HMAC — including HS256 keyed with our public key — and
//! every other algorithm are refused before any key is looked up), `kid` is
//! required, `iss`/`aud`/`exp`/`nbf` are checked with [`AuthConfig::leeway_secs`],
//! and `sub` plus a tenant are required (see [`claims`]). The [`Caller`] and
//! [`AdminCaller`] extractors turn failures into RFC 9457 problems: 401 with
//! `WWW-Authenticate: Bearer error="invalid_token"` (plain `Bearer` when the
//! header is missing), 403 for a non-admin on an admin route, 503 when the
//! IdP's keys have never been reachable.
//!
//! Must not: log or echo tokens (only the reason a token was refused is
//! logged, at debug), or decide what a caller may do inside its tenant
//! (handlers do that).

pub mod claims;
pub mod dev_issuer;
pub mod jwks;

#[cfg(test)]
mod tests;

use sha2::Digest;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::{header, request::Parts, HeaderValue, StatusCode};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};

use crate::problem::Problem;
pub use claims::{Caller, ClaimsError, ADMIN_ROLE, VENDOR_ROLE};
pub use jwks::JwksCache;
use jwks::KeyLookup;

/// Longest bearer token we try to parse.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Where user tokens come from and what they must say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// URL of the IdP's JWKS (`AUTH_JWKS_URL`).
    pub jwks_url: String,
    /// Required `iss` (`AUTH_ISSUER`).
    pub issuer: String,
    /// Required `aud` (`AUTH_AUDIENCE`).
    pub audience: String,
    /// Clock-skew allowance for `exp`/`nbf`, seconds (default 30).
    pub leeway_secs: u64,
}

impl AuthConfig {
    /// Default for [`AuthConfig::leeway_secs`].
    pub const DEFAULT_LEEWAY_SECS: u64 = 30;

    /// A config with the default leeway.
    pub fn new(
        jwks_url: impl Into<String>,
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> Self {
        Self {
            jwks_url: jwks_url.into(),
            issuer: issuer.into(),
            audience: audience.into(),
            leeway_secs: Self::DEFAULT_LEEWAY_SECS,
        }
    }
}

/// Why a request is not authenticated (or not allowed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("missing bearer token")]
    MissingToken,
    /// Not a JWT, or an `alg` we do not even know (e.g. `none`).
    #[error("malformed bearer token")]
    Malformed,
    /// A known algorithm other than RS256.
    #[error("token algorithm is not allowed (only RS256)")]
    Algorithm,
    /// No `kid` in the header.
    #[error("token header carries no key id (kid)")]
    MissingKid,
    /// The `kid` is not in the IdP's key set.
    #[error("token is signed with an unknown key")]
    UnknownKey,
    /// The IdP's keys could never be fetched.
    #[error("identity provider keys are unavailable")]
    KeysUnavailable,
    /// Bad signature.
    #[error("token signature is invalid")]
    Signature,
    /// `exp` passed (beyond the leeway).
    #[error("token has expired")]
    Expired,
    /// `nbf` in the future (beyond the leeway).
    #[error("token is not valid yet")]
    NotYetValid,
    /// Wrong `iss`.
    #[error("token issuer is not accepted")]
    Issuer,
    /// Wrong `aud`.
    #[error("token audience is not accepted")]
    Audience,
    /// A required registered claim is missing or has a bad type.
    #[error("token claim {0} is missing or malformed")]
    Claim(String),
    /// `sub`/tenant/roles unusable.
    #[error(transparent)]
    Claims(#[from] ClaimsError),
    /// Authenticated, but the route needs this role ([`ADMIN_ROLE`] or [`VENDOR_ROLE`]).
    #[error("this route needs the {0} role")]
    Forbidden(&'static str),
}

impl From<AuthError> for Problem {
    fn from(error: AuthError) -> Self {
        let detail = error.to_string();
        match error {
            AuthError::MissingToken => {
                Problem::new(StatusCode::UNAUTHORIZED, "unauthenticated", detail)
                    .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
            }
            AuthError::KeysUnavailable => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "auth-unavailable", detail)
                    .with_header(header::RETRY_AFTER, HeaderValue::from_static("10"))
            }
            AuthError::Forbidden(_) => Problem::new(StatusCode::FORBIDDEN, "forbidden", detail)
                .with_header(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"insufficient_scope\""),
                ),
            _ => {
                // Details are fixed strings (never claim values): safe in a header.
                let challenge =
                    format!("Bearer error=\"invalid_token\", error_description=\"{detail}\"");
                let value = HeaderValue::from_str(&challenge)
                    .unwrap_or_else(|_| HeaderValue::from_static("Bearer error=\"invalid_token\""));
                Problem::new(StatusCode::UNAUTHORIZED, "invalid-token", detail)
                    .with_header(header::WWW_AUTHENTICATE, value)
            }
        }
    }
}

impl axum::response::IntoResponse for AuthError {
    fn into_response(self) -> axum::response::Response {
        Problem::from(self).into_response()
    }
}

/// How long a verified token is remembered (bounded by its own `exp`).
const VERIFIED_TTL_SECS: u64 = 60;
/// Most tokens remembered; the cache is emptied when it is full.
const VERIFIED_MAX: usize = 50_000;

/// Verifies bearer tokens. Share it as `Arc<Authenticator>` in the app state.
///
/// A token that verified is remembered (by its SHA-256) until its `exp`, at
/// most [`VERIFIED_TTL_SECS`]: clients send the same token on every
/// heartbeat, and an RSA verification per request would dominate the CPU of
/// the hot path. The price: a key removed from the JWKS keeps accepting the
/// tokens it signed for up to a minute.
#[derive(Debug)]
pub struct Authenticator {
    keys: Arc<JwksCache>,
    validation: Validation,
    verified: std::sync::Mutex<std::collections::HashMap<[u8; 32], (Caller, u64, String)>>,
}

impl Authenticator {
    /// An authenticator fetching keys from `config.jwks_url`.
    pub fn new(config: &AuthConfig) -> Self {
        Self::with_jwks(config, Arc::new(JwksCache::new(config.jwks_url.clone())))
    }

    /// An authenticator using the given key cache (its URL wins over `config.jwks_url`).
    pub fn with_jwks(config: &AuthConfig, keys: Arc<JwksCache>) -> Self {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = config.leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Self {
            keys,
            validation,
            verified: std::sync::Mutex::default(),
        }
    }

    /// The key cache (e.g. to [`JwksCache::spawn_refresher`] it).
    pub fn jwks(&self) -> &Arc<JwksCache> {
        &self.keys
    }

    /// Verifies a bearer token (without the `Bearer ` prefix).
    pub async fn verify(&self, bearer: &str) -> Result<Caller, AuthError> {
        if bearer.is_empty() || bearer.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed);
        }
        let digest: [u8; 32] = sha2::Sha256::digest(bearer.as_bytes()).into();
        let remembered = self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&digest)
            .cloned();
        if let Some((caller, until, kid)) = remembered {
            // Still unexpired, and its key still published (not rotated out).
            if jsonwebtoken::get_current_timestamp() < until && self.keys.knows(&kid) {
                return Ok(caller);
            }
        }
        // `alg: none` (and any unknown alg) fails to parse here.
        let header = jsonwebtoken::decode_header(bearer).map_err(|_| AuthError::Malformed)?;
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::Algorithm);
        }
        if header.crit.is_some() {
            // We understand no critical extensions (RFC 7515 section 4.1.11).
            return Err(AuthError::Malformed);
        }
        let kid = header.kid.ok_or(AuthError::MissingKid)?;
        let key = match self.keys.key(&kid).await {
            KeyLookup::Found(key) => key,
            KeyLookup::Unknown => return Err(AuthError::UnknownKey),
            KeyLookup::Unavailable => return Err(AuthError::KeysUnavailable),
        };
        let data = jsonwebtoken::decode::<claims::UserClaims>(bearer, &key, &self.validation)
            .map_err(|e| map_jwt_error(e.into_kind()))?;
        let exp = data
            .claims
            .exp
            .as_ref()
            .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f as u64)));
        let caller = data.claims.into_caller()?;
        if let Some(exp) = exp {
            let until = exp.min(jsonwebtoken::get_current_timestamp() + VERIFIED_TTL_SECS);
            let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            if verified.len() >= VERIFIED_MAX {
                verified.clear();
            }
            verified.insert(digest, (caller.clone(), until, kid));
        }
        Ok(caller)
    }
}

fn map_jwt_error(kind: ErrorKind) -> AuthError {
    match kind {
        ErrorKind::InvalidSignature => AuthError::Signature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::Issuer,
        ErrorKind::InvalidAudience => AuthError::Audience,
        ErrorKind::MissingRequiredClaim(c) if c == "sub" => ClaimsError::MissingSubject.into(),
        ErrorKind::MissingRequiredClaim(c) | ErrorKind::InvalidClaimFormat(c) => {
            AuthError::Claim(c)
        }
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => AuthError::Algorithm,
        _ => AuthError::Malformed,
    }
}

/// The bearer token of a request, if it has an `Authorization: Bearer` header.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    Arc<Authenticator>: FromRef<S>,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // Verified once per request, even when several extractors ask.
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let token = bearer_token(&parts.headers).ok_or(AuthError::MissingToken)?;
        let authenticator = Arc::<Authenticator>::from_ref(state);
        match authenticator.verify(token).await {
            Ok(caller) => {
                parts.extensions.insert(caller.clone());
                Ok(caller)
            }
            Err(error) => {
                tracing::debug!(reason = %error, "bearer token refused");
                Err(error.into())
            }
        }
    }
}

/// A [`Caller`] holding [`ADMIN_ROLE`]; others get 403 problem+json.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminCaller(pub Caller);

impl<S> FromRequestParts<S> for AdminCaller
where
    S: Send + Sync,
    Arc<Authenticator>: FromRef<S>,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        with_role(parts, state, ADMIN_ROLE, |c| c.is_admin)
            .await
            .map(AdminCaller)
    }
}

/// A [`Caller`] holding [`VENDOR_ROLE`]; others get 403 problem+json.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorCaller(pub Caller);

impl<S> FromRequestParts<S> for VendorCaller
where
    S: Send + Sync,
    Arc<Authenticator>: FromRef<S>,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        with_role(parts, state, VENDOR_ROLE, |c| c.is_vendor)
            .await
            .map(VendorCaller)
    }
}

/// The authenticated caller if `holds` says it has `role`; else 403.
async fn with_role<S>(
    parts: &mut Parts,
    state: &S,
    role: &'static str,
    holds: fn(&Caller) -> bool,
) -> Result<Caller, Problem>
where
    S: Send + Sync,
    Arc<Authenticator>: FromRef<S>,
{
    let caller = Caller::from_request_parts(parts, state).await?;
    if holds(&caller) {
        Ok(caller)
    } else {
        Err(AuthError::Forbidden(role).into())
    }
}
