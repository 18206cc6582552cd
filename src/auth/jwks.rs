//! A cache of the identity provider's signing keys (JWKS), by `kid`.
//!
//! Policy:
//! - keys are fetched lazily (first token) and again whenever a token names
//!   an unknown `kid` (key rotation), but at most once per
//!   [`JwksCache::min_refresh_interval`], so a flood of bogus kids cannot make
//!   us hammer the IdP;
//! - a failed refresh keeps the keys we have (stale beats nothing: the IdP
//!   being down must not log every user out) and logs a warning;
//! - [`JwksCache::spawn_refresher`] optionally refreshes in the background,
//!   honouring the response's `Cache-Control: max-age`;
//! - only RSA keys whose `alg` is RS256 or absent (and `use` is `sig` or
//!   absent) are kept; everything else in the set is ignored (the rule and
//!   the parsing are `keys::parse_jwks`, shared with the auditor).
//!
//! Must not: decide whether a token is valid (see [`super::Authenticator`]).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::DecodingKey;
use tokio_util::sync::CancellationToken;

/// Largest JWKS document we accept.
const MAX_JWKS_BYTES: usize = 1 << 20;
/// Background refresh period bounds (whatever `max-age` says).
const MIN_BACKGROUND_PERIOD: Duration = Duration::from_secs(60);
const MAX_BACKGROUND_PERIOD: Duration = Duration::from_secs(24 * 3600);
/// Background refresh period when the IdP sends no `max-age`.
const DEFAULT_BACKGROUND_PERIOD: Duration = Duration::from_secs(3600);

/// Why keys could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// Network error or non-success status.
    #[error("fetching the JWKS failed: {0}")]
    Fetch(#[from] reqwest::Error),
    /// The document is too large.
    #[error("the JWKS document is invalid: {0}")]
    Invalid(String),
    /// The document is not a JWKS (not JSON, no `keys` array).
    #[error(transparent)]
    Document(#[from] keys::KeyError),
}

/// What a key lookup found.
#[derive(Clone)]
pub enum KeyLookup {
    /// The key for the kid.
    Found(Arc<DecodingKey>),
    /// The kid is not in the (possibly just refreshed) set.
    Unknown,
    /// No key set has ever been fetched successfully, so we cannot tell.
    Unavailable,
}

#[derive(Default)]
struct State {
    keys: HashMap<String, Arc<DecodingKey>>,
    loaded: bool,
    last_attempt: Option<Instant>,
    max_age: Option<Duration>,
}

/// Cached JWKS of one URL. Cheap to share behind an `Arc`.
pub struct JwksCache {
    url: String,
    client: reqwest::Client,
    min_refresh_interval: Duration,
    state: RwLock<State>,
    /// Serializes refreshes so concurrent unknown kids cause one fetch.
    refresh_gate: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("url", &self.url)
            .field("min_refresh_interval", &self.min_refresh_interval)
            .finish_non_exhaustive()
    }
}

impl JwksCache {
    /// A cache for `url`, refreshing on unknown kids at most every 10 s.
    pub fn new(url: impl Into<String>) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self {
            url: url.into(),
            client,
            min_refresh_interval: Duration::from_secs(10),
            state: RwLock::new(State::default()),
            refresh_gate: tokio::sync::Mutex::new(()),
        }
    }

    /// Sets the minimum time between two fetches (tests use a short one).
    pub fn with_min_refresh_interval(mut self, interval: Duration) -> Self {
        self.min_refresh_interval = interval;
        self
    }

    /// The minimum time between two fetches.
    pub fn min_refresh_interval(&self) -> Duration {
        self.min_refresh_interval
    }

    /// The key for `kid`, refreshing once (throttled) if it is unknown.
    pub async fn key(&self, kid: &str) -> KeyLookup {
        if let Some(found) = self.cached(kid) {
            return found;
        }
        let _gate = self.refresh_gate.lock().await;
        // Another task may have refreshed while we waited for the gate.
        if let Some(found) = self.cached(kid) {
            return found;
        }
        if self.may_refresh() {
            if let Err(error) = self.fetch_and_store().await {
                tracing::warn!(url = %self.url, %error, "JWKS refresh failed; serving cached keys");
            }
        }
        self.cached(kid).unwrap_or_else(|| {
            if self.state.read().unwrap_or_else(|e| e.into_inner()).loaded {
                KeyLookup::Unknown
            } else {
                KeyLookup::Unavailable
            }
        })
    }

    /// Fetches the key set now (unthrottled). On error the cached keys stay.
    /// Returns the number of usable keys.
    pub async fn refresh(&self) -> Result<usize, JwksError> {
        let _gate = self.refresh_gate.lock().await;
        self.fetch_and_store().await
    }

    /// Refreshes in the background every `max-age` (clamped to 1 min..24 h,
    /// 1 h when absent) until `shutdown` is cancelled.
    pub fn spawn_refresher(
        self: &Arc<Self>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let cache = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let period = cache
                    .state
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .max_age
                    .unwrap_or(DEFAULT_BACKGROUND_PERIOD)
                    .clamp(MIN_BACKGROUND_PERIOD, MAX_BACKGROUND_PERIOD);
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(period) => {}
                }
                if let Err(error) = cache.refresh().await {
                    tracing::warn!(url = %cache.url, %error, "periodic JWKS refresh failed; serving cached keys");
                }
            }
        })
    }

    /// Whether `kid` is in the current key set (no fetch).
    pub fn knows(&self, kid: &str) -> bool {
        self.cached(kid).is_some()
    }

    fn cached(&self, kid: &str) -> Option<KeyLookup> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state.keys.get(kid).cloned().map(KeyLookup::Found)
    }

    fn may_refresh(&self) -> bool {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state
            .last_attempt
            .is_none_or(|at| at.elapsed() >= self.min_refresh_interval)
    }

    /// Fetches and swaps in the key set; call with `refresh_gate` held.
    async fn fetch_and_store(&self) -> Result<usize, JwksError> {
        self.state
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .last_attempt = Some(Instant::now());
        let response = self
            .client
            .get(&self.url)
            .send()
            .await?
            .error_for_status()?;
        let max_age = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_max_age);
        if response
            .content_length()
            .is_some_and(|len| len > MAX_JWKS_BYTES as u64)
        {
            return Err(JwksError::Invalid("document too large".into()));
        }
        let body = response.bytes().await?;
        if body.len() > MAX_JWKS_BYTES {
            return Err(JwksError::Invalid("document too large".into()));
        }
        let keys = parse_jwks(&body)?;
        let count = keys.len();
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        state.keys = keys;
        state.loaded = true;
        state.max_age = max_age;
        tracing::info!(url = %self.url, keys = count, "JWKS refreshed");
        Ok(count)
    }
}

/// Parses a JWKS document into the RS256-usable keys by kid (which keys
/// count is `keys::parse_jwks`' rule).
fn parse_jwks(body: &[u8]) -> Result<HashMap<String, Arc<DecodingKey>>, JwksError> {
    let mut by_kid = HashMap::new();
    for jwk in keys::parse_jwks(body)? {
        match DecodingKey::from_rsa_components(&jwk.n, &jwk.e) {
            Ok(key) => {
                by_kid.insert(jwk.kid, Arc::new(key));
            }
            Err(error) => tracing::warn!(kid = %jwk.kid, %error, "ignoring malformed JWK"),
        }
    }
    Ok(by_kid)
}

/// The `max-age` of a `Cache-Control` header value, if any.
fn parse_max_age(value: &str) -> Option<Duration> {
    value.split(',').find_map(|directive| {
        let (name, secs) = directive.trim().split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("max-age")
            .then(|| secs.trim().trim_matches('"').parse().ok())
            .flatten()
            .map(Duration::from_secs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_parsed() {
        assert_eq!(
            parse_max_age("public, max-age=19766, must-revalidate"),
            Some(Duration::from_secs(19766))
        );
        assert_eq!(parse_max_age("no-store"), None);
    }

    #[test]
    fn keys_are_indexed_by_kid_and_filtered_as_in_keys() {
        // Which keys count is `keys::parse_jwks`'s rule (tested there in full).
        let rsa = |kid: &str, alg: &str| serde_json::json!({"kty": "RSA", "kid": kid, "alg": alg, "n": "sXch", "e": "AQAB"});
        let doc =
            serde_json::json!({"keys": [rsa("a", "RS256"), rsa("b", "RS256"), rsa("c", "RS512")]});
        let keys = parse_jwks(doc.to_string().as_bytes()).unwrap();
        let mut kids: Vec<_> = keys.keys().cloned().collect();
        kids.sort();
        assert_eq!(kids, ["a", "b"]);
    }
}
