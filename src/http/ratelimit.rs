//! Per-user rate limiting (GCRA, in memory, per process).
//!
//! Use as `axum::middleware::from_fn_with_state(limiter, ratelimit::layer)`.
//! Every response gets the IETF draft headers `RateLimit-Limit`,
//! `RateLimit-Remaining`, `RateLimit-Reset` and `RateLimit-Policy`; a limited
//! request gets 429 problem+json with `Retry-After` (seconds) and never
//! reaches the handler.
//!
//! Keying policy. Authentication runs later, inside handlers, so the key is
//! (in order): a verified [`Caller`] already in the request extensions; else
//! an *unverified* peek at the bearer token's `sub` + tenant (a cheap base64
//! decode of the payload, no signature check); else the peer IP
//! (`ConnectInfo<SocketAddr>`); else `"anonymous"`. Peeking is safe: the
//! handler still rejects a forged token, and forging subs only spreads the
//! forger's own requests over more buckets — it cannot drain another user's
//! bucket without also making requests under that user's name, which costs
//! the forger the same. Bucket memory is capped ([`RateLimitConfig::max_buckets`]):
//! full buckets are pruned, and when the table is still full new keys share
//! one overflow bucket instead of growing memory.
//!
//! Must not: verify tokens, log them, or keep state outside this process
//! (each replica limits on its own; the limit is per replica).

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::auth::{bearer_token, Caller};
use crate::problem::Problem;

const SHARDS: usize = 16;
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Tokens longer than this are not peeked at.
const MAX_PEEK_BYTES: usize = 8 * 1024;
const OVERFLOW_KEY: &str = "overflow";

/// `RateLimit-Limit`.
pub static RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
/// `RateLimit-Remaining`.
pub static RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
/// `RateLimit-Reset`.
pub static RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
/// `RateLimit-Policy`.
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// Limits per key: a sustained rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Sustained requests per minute (at least 1).
    pub per_minute: u32,
    /// Requests allowed at once after idling (at least 1).
    pub burst: u32,
    /// Most buckets kept in memory.
    pub max_buckets: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            per_minute: 600,
            burst: 60,
            max_buckets: 100_000,
        }
    }
}

/// The outcome of one check, with what the headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The bucket size (`RateLimit-Limit`).
    pub limit: u32,
    /// Requests left right now (`RateLimit-Remaining`).
    pub remaining: u32,
    /// Until the bucket is full again (`RateLimit-Reset`).
    pub reset: Duration,
    /// For a denied request, until one more is allowed (`Retry-After`).
    pub retry_after: Duration,
}

#[derive(Default)]
struct Shard {
    /// Theoretical arrival time per key (GCRA); a TAT <= now is a full bucket.
    tats: HashMap<String, Instant>,
    last_prune: Option<Instant>,
    /// Whether the "table full" warning was logged since the last prune.
    warned_full: bool,
}

/// A GCRA limiter keyed by string; cheap to clone (shared state).
#[derive(Clone)]
pub struct RateLimiter {
    config: RateLimitConfig,
    interval: Duration,
    shards: Arc<[Mutex<Shard>]>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// A limiter with `config` (zero rates are raised to 1).
    pub fn new(mut config: RateLimitConfig) -> Self {
        config.per_minute = config.per_minute.max(1);
        config.burst = config.burst.max(1);
        config.max_buckets = config.max_buckets.max(SHARDS);
        Self {
            config,
            interval: Duration::from_secs(60) / config.per_minute,
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> RateLimitConfig {
        self.config
    }

    /// Counts one request for `key` now.
    pub fn check(&self, key: &str) -> Decision {
        self.check_at(key, Instant::now())
    }

    /// Counts one request for `key` at `now` (GCRA).
    pub fn check_at(&self, key: &str, now: Instant) -> Decision {
        let window = self.interval * self.config.burst;
        let mut shard = self.shards[shard_of(key)]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if shard
            .last_prune
            .is_none_or(|at| now.saturating_duration_since(at) >= PRUNE_EVERY)
        {
            shard.tats.retain(|_, tat| *tat > now);
            shard.last_prune = Some(now);
            shard.warned_full = false;
        }
        let per_shard = self.config.max_buckets / SHARDS;
        let key = if shard.tats.contains_key(key) || shard.tats.len() < per_shard {
            key
        } else {
            shard.tats.retain(|_, tat| *tat > now);
            if shard.tats.len() < per_shard {
                key
            } else {
                if !shard.warned_full {
                    shard.warned_full = true;
                    tracing::warn!("rate-limit table full; new keys share the overflow bucket");
                }
                OVERFLOW_KEY
            }
        };
        let tat = shard.tats.get(key).copied().map_or(now, |t| t.max(now));
        let new_tat = tat + self.interval;
        // Allowed iff the new TAT is at most one window ahead of now.
        let ahead = new_tat - now;
        if ahead > window {
            return Decision {
                allowed: false,
                limit: self.config.burst,
                remaining: 0,
                reset: tat - now,
                retry_after: ahead - window,
            };
        }
        shard.tats.insert(key.to_owned(), new_tat);
        let remaining = ((window - ahead).as_nanos() / self.interval.as_nanos()) as u32;
        Decision {
            allowed: true,
            limit: self.config.burst,
            remaining,
            reset: ahead,
            retry_after: Duration::ZERO,
        }
    }

    /// `RateLimit-Policy`: the bucket size over the time it takes to refill.
    fn policy(&self) -> String {
        let window = ceil_secs(self.interval * self.config.burst).max(1);
        format!("{};w={window}", self.config.burst)
    }
}

fn shard_of(key: &str) -> usize {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    (hasher.finish() as usize) % SHARDS
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The rate-limit key of a request (see the module doc for the order).
pub fn request_key(request: &Request) -> String {
    if let Some(caller) = request.extensions().get::<Caller>() {
        return user_key(&caller.tenant_id, &caller.user_id);
    }
    if let Some(key) = peek_user(request.headers()) {
        return key;
    }
    match request.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(addr)) => format!("ip:{}", addr.ip()),
        None => "anonymous".to_owned(),
    }
}

fn user_key(tenant: &str, sub: &str) -> String {
    format!("user:{tenant}/{sub}")
}

/// `sub` + tenant from the bearer token's payload, unverified. Only values
/// that pass the real format rules are used, which bounds key length.
fn peek_user(headers: &HeaderMap) -> Option<String> {
    let token = bearer_token(headers)?;
    if token.len() > MAX_PEEK_BYTES {
        return None;
    }
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: crate::auth::claims::UserClaims = serde_json::from_slice(&bytes).ok()?;
    Some(user_key(claims.tenant().ok()?, claims.subject().ok()?))
}

/// The middleware: counts the request, answers 429 when over the limit,
/// and adds the `RateLimit-*` headers to every response.
pub async fn layer(State(limiter): State<RateLimiter>, request: Request, next: Next) -> Response {
    let decision = limiter.check(&request_key(&request));
    let mut response = if decision.allowed {
        next.run(request).await
    } else {
        let retry = ceil_secs(decision.retry_after).max(1);
        Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            format!("too many requests; retry in {retry} s"),
        )
        .with_header(header::RETRY_AFTER, HeaderValue::from(retry))
        .into_response()
    };
    let headers = response.headers_mut();
    headers.insert(RATELIMIT_LIMIT.clone(), HeaderValue::from(decision.limit));
    headers.insert(
        RATELIMIT_REMAINING.clone(),
        HeaderValue::from(decision.remaining),
    );
    headers.insert(
        RATELIMIT_RESET.clone(),
        HeaderValue::from(ceil_secs(decision.reset)),
    );
    if let Ok(policy) = HeaderValue::from_str(&limiter.policy()) {
        headers.insert(RATELIMIT_POLICY.clone(), policy);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::extract::connect_info::MockConnectInfo;
    use axum::routing::get;
    use axum::Router;
    use serde_json::json;
    use tower::ServiceExt;

    fn limiter(per_minute: u32, burst: u32) -> RateLimiter {
        RateLimiter::new(RateLimitConfig {
            per_minute,
            burst,
            max_buckets: 1000,
        })
    }

    /// An unsigned token: the limiter only peeks, it never verifies.
    fn token(sub: &str, tenant: &str) -> String {
        let b64 = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.sig",
            b64(json!({"alg": "RS256"})),
            b64(json!({"sub": sub, "tenant_id": tenant}))
        )
    }

    fn app(limiter: RateLimiter) -> Router {
        Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(limiter, layer))
    }

    async fn call(app: &Router, bearer: Option<&str>) -> Response {
        let mut request = Request::get("/");
        if let Some(token) = bearer {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        app.clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[test]
    fn gcra_allows_a_burst_then_refills_at_the_rate() {
        let l = limiter(60, 3); // one per second, three at once
        let t0 = Instant::now();
        let remaining: Vec<_> = (0..3).map(|_| l.check_at("k", t0).remaining).collect();
        assert_eq!(remaining, [2, 1, 0]);
        let denied = l.check_at("k", t0);
        assert!(!denied.allowed);
        assert_eq!(denied.retry_after, Duration::from_secs(1));
        assert!(!l.check_at("k", t0 + Duration::from_millis(999)).allowed);
        assert!(l.check_at("k", t0 + Duration::from_secs(1)).allowed);
        assert_eq!(
            l.check_at("k", t0 + Duration::from_secs(10)).remaining,
            2,
            "full again"
        );
    }

    #[test]
    fn bucket_count_is_capped() {
        let l = RateLimiter::new(RateLimitConfig {
            per_minute: 60,
            burst: 1,
            max_buckets: 16,
        });
        let t0 = Instant::now();
        for i in 0..1000 {
            l.check_at(&format!("forged-{i}"), t0);
        }
        let total: usize = l.shards.iter().map(|s| s.lock().unwrap().tats.len()).sum();
        assert!(total <= 16 + SHARDS, "{total} buckets");
        // Once those buckets are full again they are pruned for new keys.
        assert!(l.check_at("fresh", t0 + Duration::from_secs(120)).allowed);
    }

    #[tokio::test]
    async fn burst_then_429_with_retry_after_and_headers() {
        let app = app(limiter(60, 2));
        let alice = token("alice", "acme");
        let first = call(&app, Some(&alice)).await;
        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(first.headers()["ratelimit-limit"], "2");
        assert_eq!(first.headers()["ratelimit-remaining"], "1");
        assert_eq!(first.headers()["ratelimit-reset"], "1");
        assert_eq!(first.headers()["ratelimit-policy"], "2;w=2");
        assert_eq!(call(&app, Some(&alice)).await.status(), StatusCode::OK);

        let limited = call(&app, Some(&alice)).await;
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers()[header::RETRY_AFTER], "1");
        assert_eq!(
            limited.headers()[header::CONTENT_TYPE],
            crate::problem::PROBLEM_JSON
        );
        assert_eq!(limited.headers()["ratelimit-remaining"], "0");
        let body = axum::body::to_bytes(limited.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["status"], 429);
    }

    #[tokio::test]
    async fn users_tenants_and_ips_have_independent_buckets() {
        let app = app(limiter(60, 1));
        assert_eq!(
            call(&app, Some(&token("alice", "acme"))).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            call(&app, Some(&token("alice", "acme"))).await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            call(&app, Some(&token("bob", "acme"))).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            call(&app, Some(&token("alice", "other"))).await.status(),
            StatusCode::OK
        );
        // No usable token: keyed by peer IP.
        let by_ip = app
            .clone()
            .layer(MockConnectInfo(SocketAddr::from(([10, 0, 0, 7], 4000))));
        assert_eq!(call(&by_ip, Some("garbage")).await.status(), StatusCode::OK);
        assert_eq!(
            call(&by_ip, None).await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
    }

    #[test]
    fn keys_prefer_a_verified_caller_then_the_peeked_token_then_the_ip() {
        let mut request = Request::get("/")
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", token("bob", "acme")),
            )
            .body(Body::empty())
            .unwrap();
        assert_eq!(request_key(&request), "user:acme/bob");
        request.extensions_mut().insert(Caller {
            user_id: "carol".into(),
            tenant_id: "t".into(),
            is_admin: false,
        });
        assert_eq!(request_key(&request), "user:t/carol");
        let bad = token("a\u{1}", "acme");
        let request = Request::get("/").header(header::AUTHORIZATION, format!("Bearer {bad}"));
        assert_eq!(
            request_key(&request.body(Body::empty()).unwrap()),
            "anonymous"
        );
    }
}
