//! Offline verification of license tokens.
//!
//! A token verifies when its RS256 signature matches a trusted key (picked
//! by the header's `kid`), its `iss` is the expected issuer, `exp` and `nbf`
//! hold with [`keys::VERIFY_LEEWAY_SECS`] of clock-skew leeway, and the
//! local clock does not read earlier than the newest server time this
//! verifier has seen (a token's `srv` claim, a heartbeat's `server_time`),
//! minus the same leeway: a clock set back to stretch a token is caught.
//!
//! Trusted keys are the ones given to it (a PEM or a JWKS document shipped
//! with the application: the strongest choice, nothing on the network can
//! swap them) and, for a verifier made by a [`crate::Client`], the server's
//! JWKS fetched over the client's connection when a token names a key not
//! known yet (at most once per [`REFETCH_AFTER`]).

use crate::Error;
use keys::{LicenseClaims, TokenVerifier, VERIFY_LEEWAY_SECS};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Least time between two fetches of the server's JWKS.
pub const REFETCH_AFTER: Duration = Duration::from_secs(30);

/// A license token that verified, with its claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The compact JWT, as the server signed it.
    pub token: String,
    /// Its claims.
    pub claims: LicenseClaims,
}

impl VerifiedToken {
    /// When the token expires.
    pub fn expires_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        chrono::DateTime::from_timestamp(self.claims.exp, 0)
    }
}

#[derive(Default)]
struct State {
    keys: HashMap<String, TokenVerifier>,
    /// Newest server time seen, ms since the epoch.
    server_ms: Option<i64>,
    fetched_at: Option<Instant>,
}

/// Where a verifier fetches keys it does not know yet.
#[derive(Clone)]
struct Fetch {
    http: reqwest::Client,
    jwks_url: String,
}

/// Checks license tokens offline (see the module docs). Cheap to clone: the
/// clones share their keys and the last server time seen.
#[derive(Clone)]
pub struct Verifier {
    issuer: String,
    state: Arc<Mutex<State>>,
    fetch: Option<Fetch>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.issuer)
            .field("keys", &self.lock().keys.len())
            .finish()
    }
}

impl Verifier {
    /// A verifier of tokens issued by `issuer` (the server's `TOKEN_ISSUER`),
    /// trusting no key yet.
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            state: Arc::default(),
            fetch: None,
        }
    }

    /// Trusts the public key `pem` (SPKI or PKCS#1) under key id `kid`.
    pub fn with_pem(self, kid: &str, pem: &str) -> Result<Self, Error> {
        let key = TokenVerifier::from_pem(pem)?;
        self.lock().keys.insert(kid.to_owned(), key);
        Ok(self)
    }

    /// Trusts every RS256 key of a JWKS document (e.g. the server's
    /// `/.well-known/jwks.json`, saved with the application).
    pub fn with_jwks(self, jwks: &[u8]) -> Result<Self, Error> {
        self.add_jwks(jwks)?;
        Ok(self)
    }

    pub(crate) fn fetching_from(mut self, http: reqwest::Client, jwks_url: String) -> Self {
        self.fetch = Some(Fetch { http, jwks_url });
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add_jwks(&self, jwks: &[u8]) -> Result<usize, Error> {
        let parsed = keys::parse_jwks(jwks)?;
        let mut state = self.lock();
        let mut added = 0;
        for jwk in parsed {
            if let Ok(key) = TokenVerifier::from_jwk(&jwk.n, &jwk.e) {
                state.keys.insert(jwk.kid, key);
                added += 1;
            }
        }
        Ok(added)
    }

    /// The issuer tokens must name.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Records a server time seen (ms since the epoch); only a newer one
    /// counts. Restore the value saved from [`Verifier::last_server_time`]
    /// at start-up to carry the clock check across restarts.
    pub fn saw_server_time(&self, at_ms: i64) {
        let mut state = self.lock();
        state.server_ms = Some(state.server_ms.map_or(at_ms, |s| s.max(at_ms)));
    }

    /// The newest server time seen, ms since the epoch.
    pub fn last_server_time(&self) -> Option<i64> {
        self.lock().server_ms
    }

    /// Verifies `token` with the keys known now (no network).
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, Error> {
        self.verify_at(token, chrono::Utc::now().timestamp_millis())
    }

    /// [`Verifier::verify`] with the local clock reading `now_ms`.
    pub fn verify_at(&self, token: &str, now_ms: i64) -> Result<VerifiedToken, Error> {
        let kid = keys::token_key_id(token)?
            .ok_or_else(|| Error::Token("the token names no key (kid)".into()))?;
        let key = self
            .lock()
            .keys
            .get(&kid)
            .cloned()
            .ok_or_else(|| Error::Token(format!("unknown signing key {kid:?}")))?;
        let leeway_ms = VERIFY_LEEWAY_SECS as i64 * 1000;
        if let Some(seen) = self.last_server_time() {
            if now_ms + leeway_ms < seen {
                return Err(Error::Token(format!(
                    "the local clock reads {} s earlier than a server time already seen: was it set back?",
                    (seen - now_ms) / 1000
                )));
            }
        }
        let claims = key.verify(token, &self.issuer)?;
        // `verify` checked exp against the system clock; check it against
        // the clock given too (they differ only in tests).
        if claims.exp * 1000 + leeway_ms < now_ms {
            return Err(Error::Token("the token has expired".into()));
        }
        if let Some(srv) = claims.srv {
            self.saw_server_time(srv);
        }
        Ok(VerifiedToken {
            token: token.to_owned(),
            claims,
        })
    }

    /// Like [`Verifier::verify`]; when the token names a key not known yet,
    /// fetches the server's JWKS first (if this verifier has a server).
    pub async fn verify_fetching(&self, token: &str) -> Result<VerifiedToken, Error> {
        let kid = keys::token_key_id(token)?;
        let known = kid
            .as_ref()
            .is_some_and(|kid| self.lock().keys.contains_key(kid));
        if !known {
            self.refresh().await?;
        }
        self.verify(token)
    }

    /// Fetches the server's JWKS now, unless fetched within [`REFETCH_AFTER`].
    pub async fn refresh(&self) -> Result<(), Error> {
        let Some(fetch) = &self.fetch else {
            return Ok(());
        };
        {
            let mut state = self.lock();
            if state
                .fetched_at
                .is_some_and(|at| at.elapsed() < REFETCH_AFTER)
            {
                return Ok(());
            }
            state.fetched_at = Some(Instant::now());
        }
        let answer = fetch.http.get(&fetch.jwks_url).send().await?;
        let status = answer.status();
        let headers = answer.headers().clone();
        let body = answer.bytes().await?;
        if !status.is_success() {
            return Err(crate::error::from_answer(status, &headers, &body));
        }
        self.add_jwks(&body)?;
        Ok(())
    }
}
