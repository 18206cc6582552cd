//! Per-user rate limiting: `governor`'s keyed GCRA limiter, in memory, per process.
//!
//! Use as `axum::middleware::from_fn_with_state(limiter, ratelimit::layer)`.
//! Every response gets the IETF draft headers `RateLimit-Limit`,
//! `RateLimit-Remaining`, `RateLimit-Reset` and `RateLimit-Policy`; a limited
//! request gets 429 problem+json with `Retry-After` (seconds) and never
//! reaches the handler.
//!
//! Keying policy. Limits apply to verified identities only: the
//! authentication layer in front of this one verifies the bearer token (its
//! verdicts are cached) and leaves the [`Caller`](crate::auth::Caller) in the
//! request extensions; such a request counts against `user:<tenant>/<sub>`.
//! Everything else — no token, a forged or expired one — counts against the
//! client's address (`ip:<addr>`), so a forger can neither drain a victim's
//! bucket nor get a fresh bucket per invented subject.
//!
//! Memory. `governor` keeps one state per key and never forgets one by
//! itself. Here its store is capped at [`RateLimitConfig::max_buckets`] keys:
//! once full, known keys keep their own bucket and new keys share one
//! overflow bucket (so the table holds at most `max_buckets + 1` entries).
//! Every [`PRUNE_EVERY`] the next request also calls governor's
//! `retain_recent`, which drops the buckets that are full again (they are
//! indistinguishable from a fresh one), making room for new keys.
//!
//! Must not: verify tokens, log them, or keep state outside this process
//! (each replica limits on its own; the limit is per replica).

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DashMapStateStore;
use governor::Quota;

use crate::problem::Problem;

mod key;
mod store;

pub use key::request_key;
use store::BoundedStore;

/// How often full buckets are dropped from memory.
pub const PRUNE_EVERY: Duration = Duration::from_secs(10);
/// Shared by new keys while the table is full; no request key looks like it
/// (they all start with `user:`, `ip:` or are `anonymous`).
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
    /// Most buckets kept in memory (plus one shared overflow bucket).
    pub max_buckets: usize,
    /// Where the client address of an unauthenticated request comes from:
    /// 0, the TCP peer; N, the N-th entry from the right of
    /// `X-Forwarded-For` (entries appended by your own proxies, which a
    /// client cannot forge; 2 behind a Google Cloud external Application
    /// Load Balancer, which appends the client's address and its own).
    pub client_ip_hops: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            per_minute: 600,
            burst: 60,
            max_buckets: 100_000,
            client_ip_hops: 0,
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
    /// Until the bucket is full again (`RateLimit-Reset`; for an allowed
    /// request rounded up to a whole replenish interval).
    pub reset: Duration,
    /// For a denied request, until one more is allowed (`Retry-After`).
    pub retry_after: Duration,
}

type Keyed<C> = governor::RateLimiter<String, BoundedStore, C, StateInformationMiddleware>;

struct Limits<C: Clock> {
    keyed: Keyed<C>,
    epoch: C::Instant,
    /// Nanoseconds after `epoch` when the next prune is due.
    next_prune: AtomicU64,
}

/// A keyed GCRA limiter; cheap to clone (shared state). The clock is a
/// parameter so tests can drive time.
#[derive(Clone)]
pub struct RateLimiter<C: Clock = DefaultClock> {
    config: RateLimitConfig,
    interval: Duration,
    shared: Arc<Limits<C>>,
}

impl RateLimiter {
    /// A limiter with `config` on the real clock (zero values are raised to 1).
    pub fn new(config: RateLimitConfig) -> Self {
        Self::with_clock(config, DefaultClock::default())
    }
}

impl<C: Clock> RateLimiter<C> {
    /// A limiter with `config` reading time from `clock`.
    pub fn with_clock(mut config: RateLimitConfig, clock: C) -> Self {
        config.per_minute = config.per_minute.max(1);
        config.burst = config.burst.max(1);
        config.max_buckets = config.max_buckets.max(1);
        let nonzero = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        let quota =
            Quota::per_minute(nonzero(config.per_minute)).allow_burst(nonzero(config.burst));
        let store = BoundedStore {
            map: DashMapStateStore::default(),
            max_keys: config.max_buckets,
            overflow: OVERFLOW_KEY.to_owned(),
            warned_full: AtomicBool::new(false),
        };
        let keyed = Keyed::new(quota, store, clock);
        let epoch = keyed.clock().now();
        Self {
            config,
            interval: quota.replenish_interval(),
            shared: Arc::new(Limits {
                keyed,
                epoch,
                next_prune: AtomicU64::new(Nanos::from(PRUNE_EVERY).as_u64()),
            }),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> RateLimitConfig {
        self.config
    }

    /// Counts one request for `key` now.
    pub fn check(&self, key: String) -> Decision {
        self.prune_if_due();
        let limit = self.config.burst;
        match self.shared.keyed.check_key(&key) {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                Decision {
                    allowed: true,
                    limit,
                    remaining,
                    reset: self.interval * limit.saturating_sub(remaining),
                    retry_after: Duration::ZERO,
                }
            }
            Err(not_until) => {
                let retry_after = not_until.wait_time_from(self.shared.keyed.clock().now());
                Decision {
                    allowed: false,
                    limit,
                    remaining: 0,
                    // The next request is allowed with one slot left in a
                    // bucket `burst - 1` slots short of full.
                    reset: retry_after + self.interval * (limit - 1),
                    retry_after,
                }
            }
        }
    }

    /// Drops full buckets once per [`PRUNE_EVERY`] (one caller wins the race).
    fn prune_if_due(&self) {
        let shared = &self.shared;
        let now = shared.keyed.clock().now().duration_since(shared.epoch);
        let due = shared.next_prune.load(Ordering::Relaxed);
        if now.as_u64() < due {
            return;
        }
        let next = (now + PRUNE_EVERY).as_u64();
        if shared
            .next_prune
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            let before = shared.keyed.len();
            shared.keyed.retain_recent();
            if shared.keyed.len() < before {
                shared.keyed.shrink_to_fit();
            }
        }
    }

    /// `RateLimit-Policy`: the bucket size over the time it takes to refill.
    fn policy(&self) -> String {
        let window = ceil_secs(self.interval * self.config.burst).max(1);
        format!("{};w={window}", self.config.burst)
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The middleware: counts the request, answers 429 when over the limit,
/// and adds the `RateLimit-*` headers to every response.
pub async fn layer(State(limiter): State<RateLimiter>, request: Request, next: Next) -> Response {
    let decision = limiter.check(request_key(&request, limiter.config.client_ip_hops));
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
    use governor::clock::FakeRelativeClock;
    use std::net::SocketAddr;
    use tower::ServiceExt;

    fn limiter(per_minute: u32, burst: u32) -> RateLimiter {
        RateLimiter::new(RateLimitConfig {
            per_minute,
            burst,
            max_buckets: 1000,
            ..RateLimitConfig::default()
        })
    }

    /// A limiter on a clock the test advances.
    fn fake(config: RateLimitConfig) -> (RateLimiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (RateLimiter::with_clock(config, clock.clone()), clock)
    }

    /// Stands for a token the authentication layer verified.
    fn token(sub: &str, tenant: &str) -> String {
        format!("{tenant}/{sub}")
    }

    /// What the authentication layer does for a verified token (here: any
    /// bearer `tenant/sub`; "garbage" stands for one that fails).
    async fn verified(mut request: Request, next: Next) -> Response {
        let caller = crate::auth::bearer_token(request.headers())
            .and_then(|t| t.split_once('/'))
            .map(|(tenant, sub)| crate::auth::Caller {
                user_id: sub.into(),
                tenant_id: tenant.into(),
                is_admin: false,
                is_vendor: false,
                groups: Vec::new(),
            });
        if let Some(caller) = caller {
            request.extensions_mut().insert(caller);
        }
        next.run(request).await
    }

    fn app(limiter: RateLimiter) -> Router {
        Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(limiter, layer))
            .layer(axum::middleware::from_fn(verified))
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
        // One per second, three at once.
        let (l, clock) = fake(RateLimitConfig {
            per_minute: 60,
            burst: 3,
            max_buckets: 1000,
            ..RateLimitConfig::default()
        });
        let remaining: Vec<_> = (0..3).map(|_| l.check("k".into()).remaining).collect();
        assert_eq!(remaining, [2, 1, 0]);
        let denied = l.check("k".into());
        assert!(!denied.allowed);
        assert_eq!(denied.retry_after, Duration::from_secs(1));
        clock.advance(Duration::from_millis(999));
        assert!(!l.check("k".into()).allowed);
        clock.advance(Duration::from_millis(1));
        assert!(l.check("k".into()).allowed);
        clock.advance(Duration::from_secs(9));
        assert_eq!(l.check("k".into()).remaining, 2, "full again");
    }

    #[test]
    fn bucket_count_is_capped() {
        let (l, clock) = fake(RateLimitConfig {
            per_minute: 60,
            burst: 1,
            max_buckets: 16,
            ..RateLimitConfig::default()
        });
        assert!(l.check("user:t/known".into()).allowed);
        for i in 0..1000 {
            l.check(format!("forged-{i}"));
        }
        let total = l.shared.keyed.len();
        assert!(total <= 16 + 1, "{total} buckets");
        // A key that had a bucket keeps it while the table is full.
        assert!(!l.check("user:t/known".into()).allowed);
        // Once those buckets are full again they are pruned for new keys.
        clock.advance(Duration::from_secs(120));
        assert!(l.check("fresh".into()).allowed);
        assert_eq!(l.shared.keyed.len(), 1, "only the fresh key is left");
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
        // No verified token: keyed by peer IP, whatever the token claims.
        let by_ip = app
            .clone()
            .layer(MockConnectInfo(SocketAddr::from(([10, 0, 0, 7], 4000))));
        assert_eq!(call(&by_ip, Some("garbage")).await.status(), StatusCode::OK);
        assert_eq!(
            call(&by_ip, None).await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
    }
}
