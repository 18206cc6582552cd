//! License Ledger client SDK: hold a floating-license seat and check its
//! license token offline.
//!
//! ```no_run
//! # async fn run() -> Result<(), ledger_client::Error> {
//! let client = ledger_client::Client::builder("https://licenses.example.com")
//!     .bearer_token("the user's ID token")
//!     .token_issuer("https://licenses.example.com")
//!     .build()?;
//! let lease = client.acquire(None, "workstation-42").await?;
//! // ... the application runs; the lease heartbeats in the background ...
//! let token = lease.token(); // the current verified license token
//! lease.release().await?;
//! # Ok(()) }
//! ```
//!
//! [`Client::acquire`] asks for a seat (retrying transient failures with
//! one `Idempotency-Key`, so a retry never takes a second seat) and
//! returns a [`Lease`], which heartbeats at the interval the server asks
//! for, keeps the renewed license token, reports its state on a watch
//! channel ([`LeaseStatus`]) and releases the seat on
//! [`Lease::release`] or, best effort, when dropped. [`Verifier`] checks
//! tokens offline; [`blocking`] wraps it all for programs without an async
//! runtime. See `docs/client.md` for the integration guide.
//!
//! Must not: depend on the server crate, or log bearer or license tokens.

pub mod blocking;
mod error;
mod lease;
mod queue;
mod verify;

pub use error::Error;
pub use keys::LicenseClaims;
pub use lease::{Heartbeat, Lease, LeaseStatus};
pub use verify::{VerifiedToken, Verifier, REFETCH_AFTER};

use reqwest::header::{HeaderMap, AUTHORIZATION};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// The server's default `TOKEN_ISSUER`.
pub const DEFAULT_TOKEN_ISSUER: &str = "https://license-ledger.local";

/// Attempts of one acquire, heartbeat or release on transient failures.
const ATTEMPTS: u32 = 4;

/// A future yielding a bearer token (or why there is none).
pub type TokenFuture = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

/// Where the bearer token (the user's ID token) comes from.
#[derive(Clone)]
enum Bearer {
    Static(String),
    /// Called for the first request and again after a 401.
    Provider(Arc<dyn Fn() -> TokenFuture + Send + Sync>),
}

/// Sets up a [`Client`].
pub struct ClientBuilder {
    base: String,
    bearer: Option<Bearer>,
    issuer: String,
    verifier: Option<Verifier>,
    timeout: Duration,
    token_wait: Duration,
    root_certificates: Vec<Vec<u8>>,
}

impl ClientBuilder {
    /// A static bearer token.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.bearer = Some(Bearer::Static(token.into()));
        self
    }

    /// A bearer token from `provider`, called for the first request and
    /// again whenever the server answers 401 (e.g. to refresh an ID token).
    pub fn bearer_provider<F, Fut>(mut self, provider: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, String>> + Send + 'static,
    {
        self.bearer = Some(Bearer::Provider(Arc::new(move || Box::pin(provider()))));
        self
    }

    /// The `iss` license tokens must carry (the server's `TOKEN_ISSUER`;
    /// default [`DEFAULT_TOKEN_ISSUER`]).
    pub fn token_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = issuer.into();
        self
    }

    /// Verify tokens with these keys only (pinned, e.g. shipped with the
    /// application) instead of the server's JWKS.
    pub fn verifier(mut self, verifier: Verifier) -> Self {
        self.verifier = Some(verifier);
        self
    }

    /// Timeout of each HTTP request (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long [`Client::acquire`] waits for a token the server is still
    /// minting (default 10 s); after that the lease starts without one and
    /// its heartbeats bring it.
    pub fn token_wait(mut self, wait: Duration) -> Self {
        self.token_wait = wait;
        self
    }

    /// Also trust this CA certificate (PEM) for the server's TLS.
    pub fn root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificates.push(pem.into());
        self
    }

    /// The client.
    pub fn build(self) -> Result<Client, Error> {
        let base = self.base.trim_end_matches('/').to_owned();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(Error::Config(format!(
                "the base URL must start with https:// or http://, not {base:?}"
            )));
        }
        let bearer = self
            .bearer
            .ok_or_else(|| Error::Config("no bearer token or token provider".into()))?;
        let mut http = reqwest::Client::builder()
            .timeout(self.timeout)
            .user_agent(concat!("ledger-client/", env!("CARGO_PKG_VERSION")));
        for pem in &self.root_certificates {
            let cert = reqwest::Certificate::from_pem(pem)
                .map_err(|e| Error::Config(format!("root certificate: {e}")))?;
            http = http.add_root_certificate(cert);
        }
        let http = http
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        let verifier = match self.verifier {
            Some(pinned) => pinned,
            None => Verifier::new(self.issuer)
                .fetching_from(http.clone(), format!("{base}/.well-known/jwks.json")),
        };
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                bearer,
                current: Mutex::new(None),
                verifier,
                token_wait: self.token_wait,
                timeout: self.timeout,
            }),
        })
    }
}

struct Inner {
    http: reqwest::Client,
    base: String,
    bearer: Bearer,
    /// The provider's last token.
    current: Mutex<Option<String>>,
    verifier: Verifier,
    token_wait: Duration,
    /// Each request's timeout (a long-poll stays below it).
    timeout: Duration,
}

/// A connection to a license server. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.inner.base)
            .finish()
    }
}

/// An answer read whole.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl Answer {
    pub(crate) fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::Network(format!("unexpected answer ({}): {e}", self.status)))
    }
    fn error(&self) -> Error {
        error::from_answer(self.status, &self.headers, &self.body)
    }
}

#[derive(Deserialize)]
struct Granted {
    session_id: Uuid,
    license_id: Uuid,
    expires_at: chrono::DateTime<chrono::Utc>,
    #[serde(default)]
    license_token: Option<String>,
}

/// The body of an acquire.
fn acquire_body(
    license: Option<Uuid>,
    hardware_id: &str,
    wait_secs: Option<u32>,
) -> serde_json::Value {
    let mut body = serde_json::json!({ "hardware_id": hardware_id });
    if let Some(license) = license {
        body["license_id"] = serde_json::json!(license);
    }
    if let Some(secs) = wait_secs {
        body["wait_secs"] = serde_json::json!(secs);
    }
    body
}

#[derive(Deserialize)]
struct Minted {
    license_token: String,
}

impl Client {
    /// Sets up a client of the server at `base_url` (e.g.
    /// `https://licenses.example.com`).
    pub fn builder(base_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base: base_url.into(),
            bearer: None,
            issuer: DEFAULT_TOKEN_ISSUER.into(),
            verifier: None,
            timeout: Duration::from_secs(10),
            token_wait: Duration::from_secs(10),
            root_certificates: Vec::new(),
        }
    }

    /// The verifier this client checks tokens with.
    pub fn verifier(&self) -> &Verifier {
        &self.inner.verifier
    }

    async fn bearer(&self, refresh: bool) -> Result<String, Error> {
        match &self.inner.bearer {
            Bearer::Static(token) => Ok(token.clone()),
            Bearer::Provider(provider) => {
                let cached = self
                    .inner
                    .current
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                if let (Some(token), false) = (cached, refresh) {
                    return Ok(token);
                }
                let token = provider().await.map_err(|e| Error::Unauthorized {
                    detail: format!("the token provider failed: {e}"),
                })?;
                *self.inner.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(token.clone());
                Ok(token)
            }
        }
    }

    /// One request with the bearer token; after a 401, asks the provider
    /// for a fresh token and tries once more.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, Error> {
        let mut refreshed = false;
        loop {
            let bearer = self.bearer(refreshed).await?;
            let mut request = self
                .inner
                .http
                .request(method.clone(), format!("{}{path}", self.inner.base))
                .header(AUTHORIZATION, format!("Bearer {bearer}"));
            if let Some(key) = idempotency_key {
                request = request.header("idempotency-key", key);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request.send().await?;
            let answer = Answer {
                status: response.status(),
                headers: response.headers().clone(),
                body: response.bytes().await?,
            };
            let provider = matches!(self.inner.bearer, Bearer::Provider(_));
            if answer.status == StatusCode::UNAUTHORIZED && provider && !refreshed {
                refreshed = true;
                continue;
            }
            return Ok(answer);
        }
    }

    /// [`Client::send`] retried on transient failures (network, 5xx, 429)
    /// with backoff; a success status is returned, anything else typed.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self
                .send(method.clone(), path, body, idempotency_key)
                .await
                .and_then(|a| {
                    if a.status.is_success() {
                        Ok(a)
                    } else {
                        Err(a.error())
                    }
                });
            match result {
                Err(err) if err.is_transient() && attempt < ATTEMPTS => {
                    let wait = err
                        .retry_after()
                        .unwrap_or_else(|| lease::backoff(attempt))
                        .min(Duration::from_secs(10));
                    tracing::debug!(error = %err, ?wait, "retrying");
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    /// Takes a seat of `license` (`None`: the tenant's only license) for
    /// the machine `hardware_id`, and holds it until the lease is released
    /// or dropped. A retry after a lost answer returns the same session.
    pub async fn acquire(
        &self,
        license: impl Into<Option<Uuid>>,
        hardware_id: &str,
    ) -> Result<Lease, Error> {
        let key = Uuid::new_v4().to_string();
        self.acquire_with_key(license, hardware_id, &key).await
    }

    /// [`Client::acquire`] with the caller's `Idempotency-Key` (1-255
    /// visible ASCII characters): a later call with the same key, even from
    /// another process, returns the same session.
    pub async fn acquire_with_key(
        &self,
        license: impl Into<Option<Uuid>>,
        hardware_id: &str,
        key: &str,
    ) -> Result<Lease, Error> {
        let body = acquire_body(license.into(), hardware_id, None);
        let answer = self
            .call(
                Method::POST,
                "/api/v1/licenses/acquire",
                Some(&body),
                Some(key),
            )
            .await?;
        self.lease_of(answer).await
    }

    /// [`Client::acquire`], waiting up to `wait` in the license's queue
    /// when no seat is free (if the license's policy has a queue; else
    /// [`Error::NoSeats`] at once, as without waiting). The server grants
    /// waiters oldest first as seats free; this long-polls for the grant.
    /// When `wait` runs out the place is given up and the answer is
    /// [`Error::NoSeats`].
    pub async fn acquire_waiting(
        &self,
        license: impl Into<Option<Uuid>>,
        hardware_id: &str,
        wait: Duration,
    ) -> Result<Lease, Error> {
        let secs = u32::try_from(wait.as_secs().max(1)).unwrap_or(queue::MAX_WAIT_SECS);
        let body = acquire_body(license.into(), hardware_id, Some(secs));
        let key = Uuid::new_v4().to_string();
        let answer = self
            .call(
                Method::POST,
                "/api/v1/licenses/acquire",
                Some(&body),
                Some(&key),
            )
            .await?;
        if let Some(waiting) = queue::waiting(&answer)? {
            let deadline = tokio::time::Instant::now() + wait;
            let granted = self.wait_in_queue(&waiting, deadline).await?;
            return self.lease_of(granted).await;
        }
        self.lease_of(answer).await
    }

    /// The lease of a granted acquire's answer (200, or 202 while its
    /// token is minted).
    async fn lease_of(&self, answer: Answer) -> Result<Lease, Error> {
        let granted: Granted = answer.json()?;
        let mut token = match &granted.license_token {
            Some(token) => Some(self.inner.verifier.verify_fetching(token).await?),
            None => None,
        };
        if token.is_none() {
            token = self.wait_for_token(granted.session_id, &answer).await;
        }
        Ok(Lease::start(
            self.clone(),
            granted.session_id,
            granted.license_id,
            granted.expires_at,
            token,
        ))
    }

    /// The session's current license token, verified; `None` while it is
    /// still being minted.
    pub async fn session_token(&self, session: Uuid) -> Result<Option<VerifiedToken>, Error> {
        let path = format!("/api/v1/licenses/sessions/{session}/token");
        let answer = self.call(Method::GET, &path, None, None).await?;
        if answer.status == StatusCode::ACCEPTED {
            return Ok(None);
        }
        let minted: Minted = answer.json()?;
        Ok(Some(
            self.inner
                .verifier
                .verify_fetching(&minted.license_token)
                .await?,
        ))
    }

    /// A seat granted with 202: fetch its token while it is minted, for at
    /// most the token wait (the lease's heartbeats bring it otherwise).
    async fn wait_for_token(&self, session: Uuid, first: &Answer) -> Option<VerifiedToken> {
        let deadline = tokio::time::Instant::now() + self.inner.token_wait;
        let mut hint = first.headers.clone();
        loop {
            let wait = error::retry_after_of(&hint)
                .unwrap_or(Duration::from_millis(500))
                .min(Duration::from_secs(2));
            if tokio::time::Instant::now() + wait > deadline {
                return None;
            }
            tokio::time::sleep(wait).await;
            let path = format!("/api/v1/licenses/sessions/{session}/token");
            let answer = self.send(Method::GET, &path, None, None).await.ok()?;
            match answer.status {
                StatusCode::OK => {
                    let minted: Minted = answer.json().ok()?;
                    return self
                        .inner
                        .verifier
                        .verify_fetching(&minted.license_token)
                        .await
                        .ok();
                }
                StatusCode::ACCEPTED => hint = answer.headers,
                _ => return None,
            }
        }
    }
}
