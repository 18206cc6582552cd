//! `licensed`: the License Ledger service. Parses the configuration, sets up
//! logging and runs the requested components (see `licensed --help`).

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use licensed::app::{self, Components};
use licensed::config::Config;
use licensed::dev;
use secrecy::ExposeSecret as _;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "licensed",
    version,
    about = "License Ledger: floating licenses over an event log"
)]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every component in one process.
    All {
        /// Development mode: dev token issuer, local signing key, demo license, printed curl.
        #[arg(long)]
        dev: bool,
    },
    /// The HTTP API.
    Serve,
    /// The publisher (log -> JetStream); single-active.
    Publish,
    /// The token signer (JetStream consumer of acquisitions).
    Sign,
    /// The reaper (expires sessions without heartbeats).
    Reap,
    /// The Redis projector (JetStream -> Redis read model).
    Project {
        /// Wipe the projection, replay the log from position 0 (from Postgres), and exit.
        #[arg(long)]
        rebuild: bool,
    },
    /// Applies the database migrations and exits.
    Migrate,
    /// Signs a checkpoint of the log now (the signer also does so periodically) and exits.
    Checkpoint,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    licensed::telemetry::init(cli.config.log_format);
    if let Err(err) = run(cli).await {
        eprintln!("licensed: {err:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut config = cli.config;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        stop.cancel();
    });
    let (components, dev_mode) = match cli.command {
        Command::Migrate => {
            config.validate(false).map_err(anyhow::Error::msg)?;
            app::connect_store(&config, true).await?;
            println!("migrations applied");
            return Ok(());
        }
        Command::Checkpoint => {
            config.validate(false).map_err(anyhow::Error::msg)?;
            let store = app::connect_store(&config, false).await?;
            let backend =
                licensed::signer::backend_from_env_config(&app::signer_config(&config)).await?;
            match licensed::checkpoint::checkpoint_now(&store, backend.as_ref()).await? {
                Some(info) => println!(
                    "checkpoint signed: up to position {} (head {}, key {})",
                    info.up_to_position, info.chain_head, info.key_id
                ),
                None => println!("nothing new since the last checkpoint"),
            }
            return Ok(());
        }
        Command::All { dev } => (Components::all(), dev),
        Command::Serve => (
            Components {
                serve: true,
                ..Components::default()
            },
            false,
        ),
        Command::Publish => (
            Components {
                publish: true,
                ..Components::default()
            },
            false,
        ),
        Command::Sign => (
            Components {
                sign: true,
                ..Components::default()
            },
            false,
        ),
        Command::Reap => (
            Components {
                reap: true,
                ..Components::default()
            },
            false,
        ),
        Command::Project { rebuild } => {
            if rebuild {
                // A one-shot job: the running projector resumes from what it finds.
                return rebuild_projection(&config).await;
            }
            (
                Components {
                    project: true,
                    ..Components::default()
                },
                false,
            )
        }
    };
    // Every component listens: the API, or health and metrics for workers.
    let listener = {
        Some(
            tokio::net::TcpListener::bind(config.listen_addr)
                .await
                .with_context(|| format!("binding LISTEN_ADDR {}", config.listen_addr))?,
        )
    };
    let mut extra = None;
    let mut issuer = None;
    if dev_mode {
        let dir = std::path::Path::new(".dev");
        let dev_issuer = dev::issuer(dir)?;
        let addr = config.listen_addr;
        dev::configure(&mut config, addr);
        extra = Some(axum::Router::new().nest("/dev", dev_issuer.router()));
        issuer = Some(dev_issuer);
    }
    config
        .validate(components.serve)
        .map_err(anyhow::Error::msg)?;
    // Every process applies migrations idempotently in dev; in production the migrate Job does.
    app::connect_store(&config, dev_mode).await?;
    let shared = app::connect_all(&config, components).await?;
    if let Some(dev_issuer) = &issuer {
        let license = dev::ensure_demo_license(&shared.licenses).await?;
        dev::print_banner(dev_issuer, config.listen_addr, license)?;
    }
    let auth = components.serve.then(|| app::authenticator(&config));
    app::run(config, shared, components, listener, auth, extra, shutdown).await
}

/// `licensed project --rebuild`: wipe the projection and replay the log from Postgres.
async fn rebuild_projection(config: &Config) -> anyhow::Result<()> {
    config.validate(false).map_err(anyhow::Error::msg)?;
    let store = app::connect_store(config, false).await?;
    let client =
        redis::Client::open(config.redis_url.expose_secret()).context("parsing REDIS_URL")?;
    let conn = redis::aio::ConnectionManager::new(client)
        .await
        .context("connecting to Redis (REDIS_URL)")?;
    let projection = projections::RedisProjection::new(conn, config.redis_prefix.clone());
    let report = projections::rebuild(&store, &projection).await?;
    println!("projection rebuilt from the log: {report:?}");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
