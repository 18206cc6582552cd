//! Wiring: [`App::build`] connects the services a set of [`Components`]
//! needs and binds the listener; [`App::run_until_stopped`] runs them until
//! the shutdown token is cancelled (or one fails, which cancels the rest).
//! `main` and the test harness build the app the same way, from a typed
//! [`Config`].
//!
//! Every worker gets the same `CancellationToken`; background workers are
//! supervised (restarted with backoff) so that a database or NATS outage
//! does not take the process down; shutdown lets in-flight requests finish.
//!
//! Must not: hold business logic, or be imported by the modules it wires.

use crate::auth::{AuthConfig, Authenticator};
use crate::config::{Config, SignerBackendKind};
use crate::http::{self, ratelimit::RateLimitConfig, AppState};
use crate::service::Licenses;
use crate::signer::{self, SignerBackendConfig, SignerConfig, SigningBackend, TokenMinter};
use crate::workers::token_waiters::TokenWaiters;
use crate::workers::{checkpoint, reap, sign};
use anyhow::Context as _;
use events::store::{connect, EventStore, GroupCommitConfig};
use publisher::PublisherConfig;
use secrecy::ExposeSecret as _;
use std::future::Future;
use std::net::SocketAddr;
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
    /// The token signer (JetStream consumer) and the checkpointer.
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

/// Connects to Redis (`REDIS_URL`, `REDIS_CA_FILE`).
pub async fn connect_redis(config: &Config) -> anyhow::Result<redis::aio::ConnectionManager> {
    projections::connect::connect(
        config.redis_url.expose_secret(),
        config.redis_ca_file.as_deref(),
    )
    .await
    .context("Redis (REDIS_URL, REDIS_CA_FILE)")
}

/// How to reach NATS: URL, TLS files and the user (billing consumers and
/// other tools use it too; the service fills it from [`Config`]).
#[derive(Debug, Clone, Default)]
pub struct NatsOptions {
    /// `nats://` or `tls://` URL.
    pub url: String,
    /// PEM CA bundle of the server certificate (turns TLS on).
    pub ca_file: Option<std::path::PathBuf>,
    /// PEM client certificate and key (mutual TLS).
    pub client_cert: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// User and password (deploy/nats/permissions.conf).
    pub user: Option<(String, secrecy::SecretString)>,
}

impl NatsOptions {
    /// The service's NATS settings.
    pub fn from_config(config: &Config) -> Self {
        Self {
            url: config.nats_url.clone(),
            ca_file: config.nats_ca_file.clone(),
            client_cert: config
                .nats_client_cert
                .clone()
                .zip(config.nats_client_key.clone()),
            user: config.nats_user.clone().zip(config.nats_password.clone()),
        }
    }

    /// Connects (retrying the first connection until the server answers).
    pub async fn connect(&self) -> anyhow::Result<async_nats::Client> {
        projections::connect::install_crypto_provider();
        let mut options = async_nats::ConnectOptions::new().retry_on_initial_connect();
        if let Some(ca) = &self.ca_file {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let Some((cert, key)) = &self.client_cert {
            options = options
                .add_client_certificate(cert.clone(), key.clone())
                .require_tls(true);
        }
        if let Some((user, password)) = &self.user {
            options = options.user_and_password(user.clone(), password.expose_secret().to_owned());
        }
        options
            .connect(&self.url)
            .await
            .with_context(|| format!("connecting to NATS at {}", self.url))
    }
}

/// Connects to NATS (`NATS_URL`, TLS files, this component's user).
pub async fn connect_nats(config: &Config) -> anyhow::Result<async_nats::Client> {
    NatsOptions::from_config(config)
        .connect()
        .await
        .context("NATS (NATS_URL, NATS_CA_FILE, NATS_USER)")
}

/// Connections built once per process and shared by its components.
#[derive(Clone)]
struct Connections {
    store: EventStore,
    licenses: Arc<Licenses>,
    signer: Arc<dyn SigningBackend>,
    nats: Option<async_nats::Client>,
    redis: Option<redis::aio::ConnectionManager>,
}

async fn connect_all(config: &Config, components: Components) -> anyhow::Result<Connections> {
    let store = connect_store(config, false).await?;
    let backend = signer::backend_from_env_config(&signer_config(config))
        .await
        .context("building the signing backend")?;
    // Only the signer component signs; every other one holds public keys.
    let signer: Arc<dyn SigningBackend> = if components.sign {
        backend
    } else {
        Arc::new(signer::PublicOnly(backend))
    };
    let nats = if components.serve || components.publish || components.sign || components.project {
        Some(connect_nats(config).await?)
    } else {
        None
    };
    let redis = if components.serve || components.project {
        Some(connect_redis(config).await?)
    } else {
        None
    };
    Ok(Connections {
        licenses: Arc::new(Licenses::new(store.clone())),
        store,
        signer,
        nats,
        redis,
    })
}

/// A built, not yet running, License Ledger process.
pub struct App {
    config: Config,
    components: Components,
    connections: Connections,
    listener: TcpListener,
    metrics_listener: TcpListener,
    extra_routes: Option<axum::Router>,
}

impl App {
    /// Validates `config`, binds `LISTEN_ADDR` (the API, or health and
    /// metrics for worker processes) and connects what `components` need.
    pub async fn build(config: Config, components: Components) -> anyhow::Result<Self> {
        config
            .validate(components.serve)
            .map_err(anyhow::Error::msg)?;
        crate::metrics::install();
        let listener = TcpListener::bind(config.listen_addr)
            .await
            .with_context(|| format!("binding LISTEN_ADDR {}", config.listen_addr))?;
        let metrics_listener = TcpListener::bind(config.metrics_addr)
            .await
            .with_context(|| format!("binding METRICS_ADDR {}", config.metrics_addr))?;
        let connections = connect_all(&config, components).await?;
        Ok(Self {
            config,
            components,
            connections,
            listener,
            metrics_listener,
            extra_routes: None,
        })
    }

    /// Serves `routes` beside the API (the dev token issuer).
    pub fn with_routes(mut self, routes: axum::Router) -> Self {
        self.extra_routes = Some(routes);
        self
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// The address `/metrics` is served on.
    pub fn metrics_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.metrics_listener.local_addr()?)
    }

    /// The command side (dev setup and tests issue licenses through it).
    pub fn licenses(&self) -> Arc<Licenses> {
        self.connections.licenses.clone()
    }

    /// Runs every component until `shutdown` is cancelled or one fails.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut tasks: JoinSet<(&'static str, anyhow::Result<()>)> = JoinSet::new();
        self.spawn_workers(&mut tasks, &shutdown)?;
        self.spawn_listener(&mut tasks, &shutdown)?;
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

    fn spawn_workers(
        &self,
        tasks: &mut JoinSet<(&'static str, anyhow::Result<()>)>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let (config, c) = (&self.config, &self.connections);
        let (stream, prefix) = (
            config.nats_stream.clone(),
            config.nats_subject_prefix.clone(),
        );
        if self.components.publish {
            let js = async_nats::jetstream::new(c.nats.clone().context("publisher needs NATS")?);
            let store = c.store.clone();
            let outbox = PublisherConfig {
                stream: stream.clone(),
                subject_prefix: prefix.clone(),
            };
            tasks.spawn(supervise("publish", shutdown.clone(), move |stop| {
                publisher::run(
                    store.clone(),
                    js.clone(),
                    outbox.clone(),
                    |stats| crate::metrics::watch_subscription("publisher", stats),
                    stop,
                )
            }));
        }
        if self.components.sign {
            let js = async_nats::jetstream::new(c.nats.clone().context("signer needs NATS")?);
            let minter = TokenMinter::new(c.signer.clone(), config.token_issuer.clone());
            let (store, stream, prefix) = (c.store.clone(), stream.clone(), prefix.clone());
            tasks.spawn(supervise("sign", shutdown.clone(), move |stop| {
                sign::run(
                    store.clone(),
                    js.clone(),
                    stream.clone(),
                    prefix.clone(),
                    minter.clone(),
                    stop,
                )
            }));
            // Signed checkpoints of the whole log (the audit's anchor); racing
            // signer replicas are safe: one append wins per checkpoint.
            let (store, backend, stop) = (c.store.clone(), c.signer.clone(), shutdown.clone());
            let interval = Duration::from_secs(config.checkpoint_interval_secs.max(1));
            let dir = config.checkpoint_dir.clone();
            tasks.spawn(async move {
                checkpoint::run(store, backend, interval, dir, stop).await;
                ("checkpoint", Ok(()))
            });
        }
        if self.components.serve || self.components.sign {
            // Key versions are added and disabled in KMS: follow them.
            let (signer, stop) = (c.signer.clone(), shutdown.clone());
            let every = Duration::from_secs(config.keyset_refresh_secs.max(1));
            tasks.spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return ("keyset-refresh", Ok(())),
                        _ = tokio::time::sleep(every) => {}
                    }
                    if let Err(err) = signer.refresh_public_keys().await {
                        tracing::warn!(error = %err, "refreshing the signing key set failed; serving the cached one");
                    }
                }
            });
        }
        if self.components.reap {
            let (licenses, stop) = (c.licenses.clone(), shutdown.clone());
            let interval = Duration::from_millis(config.reaper_interval_ms.max(50));
            tasks.spawn(async move { ("reap", reap::run(licenses, interval, stop).await) });
        }
        if self.components.project {
            let js = async_nats::jetstream::new(c.nats.clone().context("projector needs NATS")?);
            let redis = c.redis.clone().context("projector needs Redis")?;
            let projection = projections::RedisProjection::new(redis, config.redis_prefix.clone());
            let stats = Arc::new(projections::ProjectorStats::default());
            let store = c.store.clone();
            tasks.spawn(supervise("project", shutdown.clone(), move |stop| {
                projections::run(
                    store.clone(),
                    js.clone(),
                    stream.clone(),
                    prefix.clone(),
                    projection.clone(),
                    stats.clone(),
                    stop,
                )
            }));
        }
        Ok(())
    }

    /// The API (with the token waiters it needs), or health and metrics for workers.
    fn spawn_listener(
        self,
        tasks: &mut JoinSet<(&'static str, anyhow::Result<()>)>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let Self {
            config,
            components,
            connections: c,
            listener,
            metrics_listener,
            extra_routes,
        } = self;
        let stop = shutdown.clone();
        let metrics_app = http::metrics_router(c.store.clone());
        tasks.spawn(async move {
            let served = axum::serve(metrics_listener, metrics_app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
                .context("metrics listener");
            ("metrics", served)
        });
        let stop = shutdown.clone();
        if !components.serve {
            let app = http::worker_router(c.store.clone());
            tasks.spawn(async move {
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await
                    .context("health listener");
                ("health", served)
            });
            return Ok(());
        }
        let waiters = Arc::new(TokenWaiters::default());
        if let Some(nats) = c.nats.clone() {
            let (w, prefix) = (waiters.clone(), config.nats_subject_prefix.clone());
            tasks.spawn(supervise("token-waiters", shutdown.clone(), move |stop| {
                let (w, nats, prefix) = (w.clone(), nats.clone(), prefix.clone());
                async move { w.listen(nats, &prefix, stop).await }
            }));
        }
        let auth = Arc::new(Authenticator::new(&AuthConfig::new(
            &config.auth_jwks_url,
            &config.auth_issuer,
            &config.auth_audience,
        )));
        // Keys rotate at the identity provider: refresh them on their max-age.
        let refresher = auth.jwks().spawn_refresher(shutdown.clone());
        tasks.spawn(async move {
            let _ = refresher.await;
            ("jwks-refresher", Ok(()))
        });
        let state = AppState {
            licenses: c.licenses.clone(),
            auth: auth.clone(),
            signer: c.signer.clone(),
            waiters,
            redis: c.redis.clone(),
            redis_prefix: config.redis_prefix.clone(),
            nats: c.nats.clone(),
            token_wait: Duration::from_millis(config.acquire_token_wait_ms),
            token_issuer: config.token_issuer.clone(),
            verifiers: Arc::default(),
        };
        let per_minute = config.rate_limit_per_minute;
        let limits = RateLimitConfig {
            per_minute,
            burst: (per_minute / 10).max(10),
            client_ip_hops: config.trusted_proxy_hops,
            ..RateLimitConfig::default()
        };
        let mut app = http::router(state, limits, &config.allowed_origins);
        if let Some(extra) = extra_routes {
            app = app.merge(extra);
        }
        tasks.spawn(async move {
            let served = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
            .context("HTTP server");
            ("serve", served)
        });
        Ok(())
    }
}

/// Runs a background worker, restarting it with backoff when it fails (a
/// database or NATS outage must not take the process down), until shutdown.
async fn supervise<F, Fut>(
    name: &'static str,
    shutdown: CancellationToken,
    start: F,
) -> (&'static str, anyhow::Result<()>)
where
    F: Fn(CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut delay = Duration::from_millis(200);
    loop {
        let started = std::time::Instant::now();
        match start(shutdown.clone()).await {
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
