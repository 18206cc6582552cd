//! Wiring: connects the services once, then runs the requested components
//! (API, publisher, signer, reaper) until shutdown. Every worker gets the
//! same `CancellationToken`; shutdown lets in-flight requests finish.

use crate::auth::{AuthConfig, Authenticator};
use crate::config::{Config, SignerBackendKind};
use crate::http::{self, ratelimit::RateLimitConfig, AppState};
use crate::metrics::Metrics;
use crate::publisher::{self, PublisherConfig};
use crate::service::Licenses;
use crate::signer::{self, SignerBackendConfig, SignerConfig, SigningBackend, TokenMinter};
use crate::tokens::TokenWaiters;
use crate::{minting, reaper};
use anyhow::Context as _;
use events::store::{connect, EventStore, GroupCommitConfig};
use secrecy::ExposeSecret as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Which components to run in this process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Components {
    /// The HTTP API.
    pub serve: bool,
    /// The outbox publisher (log -> JetStream).
    pub publish: bool,
    /// The token signer (JetStream consumer).
    pub sign: bool,
    /// The session reaper.
    pub reap: bool,
    /// The Redis projector (JetStream -> Redis).
    pub project: bool,
}

impl Components {
    /// Everything.
    pub fn all() -> Self {
        Self {
            serve: true,
            publish: true,
            sign: true,
            reap: true,
            project: true,
        }
    }
}

/// Connections and shared parts, built once per process.
#[derive(Clone)]
pub struct Shared {
    /// The event log (group-committed appends).
    pub store: EventStore,
    /// Command side.
    pub licenses: Arc<Licenses>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The signing backend (KMS or local PEM).
    pub signer: Arc<dyn SigningBackend>,
    /// NATS, when a component needs it.
    pub nats: Option<async_nats::Client>,
    /// Redis, when a component needs it.
    pub redis: Option<redis::aio::ConnectionManager>,
    /// Counters of the projector (exported at /metrics).
    pub projector_stats: Arc<projections::ProjectorStats>,
}

/// The signer configuration from the service configuration.
pub fn signer_config(config: &Config) -> SignerConfig {
    SignerConfig {
        backend: match config.signer_backend {
            SignerBackendKind::Local => SignerBackendConfig::Local {
                path: config.signing_key_path.clone().into(),
            },
            SignerBackendKind::Kms => SignerBackendConfig::Kms {
                key_version: config.kms_key_version.clone().unwrap_or_default(),
                key_name: config.kms_key_name.clone(),
                endpoint: config.kms_endpoint.clone(),
            },
        },
    }
}

/// Connects to Postgres (and applies migrations when `migrate`).
pub async fn connect_store(config: &Config, migrate: bool) -> anyhow::Result<EventStore> {
    let pool = connect(
        config.database_url.expose_secret(),
        config.database_schema.as_deref(),
        config.db_max_connections,
    )
    .await
    .context("connecting to Postgres (DATABASE_URL)")?;
    let store = EventStore::with_group_commit(pool, GroupCommitConfig::default());
    if migrate {
        store
            .migrate()
            .await
            .context("applying the event log migrations")?;
    }
    Ok(store)
}

/// Connects what `components` need.
pub async fn connect_all(config: &Config, components: Components) -> anyhow::Result<Shared> {
    let store = connect_store(config, false).await?;
    let signer = signer::backend_from_env_config(&signer_config(config))
        .await
        .context("building the signing backend")?;
    let nats = if components.serve || components.publish || components.sign || components.project {
        Some(
            async_nats::ConnectOptions::new()
                .retry_on_initial_connect()
                .connect(&config.nats_url)
                .await
                .with_context(|| format!("connecting to NATS at {} (NATS_URL)", config.nats_url))?,
        )
    } else {
        None
    };
    let redis = if components.serve || components.project {
        let client =
            redis::Client::open(config.redis_url.expose_secret()).context("parsing REDIS_URL")?;
        Some(
            redis::aio::ConnectionManager::new(client)
                .await
                .context("connecting to Redis (REDIS_URL)")?,
        )
    } else {
        None
    };
    let metrics = Arc::new(Metrics::default());
    let projector_stats = Arc::new(projections::ProjectorStats::default());
    if components.project {
        metrics.set_projector(projector_stats.clone());
    }
    Ok(Shared {
        licenses: Arc::new(Licenses::new(store.clone())),
        store,
        metrics,
        signer,
        nats,
        redis,
        projector_stats,
    })
}

/// Runs `components` until `shutdown` (or until one fails, which cancels the rest).
pub async fn run(
    config: Config,
    shared: Shared,
    components: Components,
    listener: Option<TcpListener>,
    auth: Option<Arc<Authenticator>>,
    extra_routes: Option<axum::Router>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut tasks: JoinSet<(&'static str, anyhow::Result<()>)> = JoinSet::new();
    let publisher_config = PublisherConfig {
        stream: config.nats_stream.clone(),
        subject_prefix: config.nats_subject_prefix.clone(),
    };
    if components.publish {
        let nats = shared.nats.clone().context("publisher needs NATS")?;
        let (store, metrics, cfg, stop) = (
            shared.store.clone(),
            shared.metrics.clone(),
            publisher_config.clone(),
            shutdown.clone(),
        );
        tasks.spawn(supervise("publish", shutdown.clone(), move || {
            let js = async_nats::jetstream::new(nats.clone());
            publisher::run(
                store.clone(),
                js,
                cfg.clone(),
                metrics.clone(),
                stop.clone(),
            )
        }));
    }
    if components.sign {
        let nats = shared.nats.clone().context("signer needs NATS")?;
        let minter = TokenMinter::new(shared.signer.clone(), config.token_issuer.clone());
        let (store, metrics, stop) = (
            shared.store.clone(),
            shared.metrics.clone(),
            shutdown.clone(),
        );
        let (stream, prefix) = (
            config.nats_stream.clone(),
            config.nats_subject_prefix.clone(),
        );
        tasks.spawn(supervise("sign", shutdown.clone(), move || {
            let js = async_nats::jetstream::new(nats.clone());
            let (store, stream, prefix) = (store.clone(), stream.clone(), prefix.clone());
            minting::run(
                store,
                js,
                stream,
                prefix,
                minter.clone(),
                metrics.clone(),
                stop.clone(),
            )
        }));
    }
    if components.sign {
        // Signed checkpoints of the whole log (the audit's anchor); racing
        // signer replicas are safe: one append wins per checkpoint.
        let (store, backend, stop) = (
            shared.store.clone(),
            shared.signer.clone(),
            shutdown.clone(),
        );
        let interval = Duration::from_secs(config.checkpoint_interval_secs.max(1));
        tasks.spawn(async move {
            crate::checkpoint::run(store, backend, interval, stop).await;
            ("checkpoint", Ok(()))
        });
    }
    if components.reap {
        let (licenses, metrics, stop) = (
            shared.licenses.clone(),
            shared.metrics.clone(),
            shutdown.clone(),
        );
        let interval = Duration::from_millis(config.reaper_interval_ms.max(50));
        tasks.spawn(async move { ("reap", reaper::run(licenses, metrics, interval, stop).await) });
    }
    if components.project {
        let nats = shared.nats.clone().context("projector needs NATS")?;
        let redis = shared.redis.clone().context("projector needs Redis")?;
        let projection = projections::RedisProjection::new(redis, config.redis_prefix.clone());
        let (store, stats, stop) = (
            shared.store.clone(),
            shared.projector_stats.clone(),
            shutdown.clone(),
        );
        let (stream, prefix) = (
            config.nats_stream.clone(),
            config.nats_subject_prefix.clone(),
        );
        tasks.spawn(supervise("project", shutdown.clone(), move || {
            let js = async_nats::jetstream::new(nats.clone());
            let (store, stream, prefix) = (store.clone(), stream.clone(), prefix.clone());
            projections::run(
                store,
                js,
                stream,
                prefix,
                projection.clone(),
                stats.clone(),
                stop.clone(),
            )
        }));
    }
    let mut listener = listener;
    if components.serve {
        let listener = listener.take().context("serve needs a listener")?;
        let auth = auth.context("serve needs an authenticator")?;
        let waiters = Arc::new(TokenWaiters::default());
        let nats = shared.nats.clone();
        if let Some(nats) = nats.clone() {
            let (w, prefix, stop) = (
                waiters.clone(),
                config.nats_subject_prefix.clone(),
                shutdown.clone(),
            );
            tasks.spawn(supervise("token-listener", shutdown.clone(), move || {
                let (w, nats, prefix, stop) =
                    (w.clone(), nats.clone(), prefix.clone(), stop.clone());
                async move { w.listen(nats, &prefix, stop).await }
            }));
        }
        let state = AppState {
            licenses: shared.licenses.clone(),
            auth,
            signer: shared.signer.clone(),
            waiters,
            metrics: shared.metrics.clone(),
            redis: shared.redis.clone(),
            redis_prefix: config.redis_prefix.clone(),
            nats,
            token_wait: Duration::from_millis(config.acquire_token_wait_ms),
        };
        let per_minute = config.rate_limit_per_minute;
        let limits = RateLimitConfig {
            per_minute,
            burst: (per_minute / 10).max(10),
            ..RateLimitConfig::default()
        };
        let mut app = http::router(state, limits, &config.allowed_origins);
        if let Some(extra) = extra_routes {
            app = app.merge(extra);
        }
        let stop = shutdown.clone();
        tasks.spawn(async move {
            let served = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
            .context("HTTP server");
            ("serve", served)
        });
    }
    if !components.serve {
        // Workers serve health and metrics on LISTEN_ADDR for probes and scraping.
        if let Some(listener) = listener.take() {
            let app = http::worker_router(shared.clone());
            let stop = shutdown.clone();
            tasks.spawn(async move {
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await
                    .context("health listener");
                ("health", served)
            });
        }
    }
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let (name, result) = joined.context("a component panicked")?;
        match result {
            Ok(()) if shutdown.is_cancelled() => {}
            Ok(()) => tracing::info!(component = name, "component stopped"),
            Err(err) => {
                tracing::error!(component = name, error = %format!("{err:#}"), "component failed; shutting down");
                first_error.get_or_insert(err.context(format!("component {name}")));
                shutdown.cancel();
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Runs a background worker, restarting it with backoff when it fails (a
/// database or NATS outage must not take the process down), until shutdown.
async fn supervise<F, Fut>(
    name: &'static str,
    shutdown: CancellationToken,
    start: F,
) -> (&'static str, anyhow::Result<()>)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut delay = Duration::from_millis(200);
    loop {
        let started = std::time::Instant::now();
        match start().await {
            Ok(()) if shutdown.is_cancelled() => return (name, Ok(())),
            Ok(()) => tracing::warn!(component = name, "worker stopped; restarting"),
            Err(err) => {
                tracing::error!(component = name, error = %format!("{err:#}"), retry_in = ?delay, "worker failed; restarting")
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            delay = Duration::from_millis(200);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return (name, Ok(())),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// The authenticator for the configured identity provider.
pub fn authenticator(config: &Config) -> Arc<Authenticator> {
    Arc::new(Authenticator::new(&AuthConfig::new(
        &config.auth_jwks_url,
        &config.auth_issuer,
        &config.auth_audience,
    )))
}
