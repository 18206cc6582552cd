//! `licensed`: the License Ledger service. Parses the configuration, sets up
//! logging and runs the requested components (see `licensed --help`).

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use licensed::app::{self, App, Components};
use licensed::config::Config;
use licensed::dev;
use licensed::workers::checkpoint;
use tokio_util::sync::CancellationToken;

/// mimalloc instead of glibc's malloc: allocation was 30 % of the service's
/// CPU on the heartbeat path, part of it waiting on glibc's arena lock
/// (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    Migrate {
        /// Login role(s) the service runs as: granted `ledger_writer`
        /// (read and append; never UPDATE, DELETE or TRUNCATE the log).
        #[arg(long, value_name = "LOGIN")]
        grant_writer: Vec<String>,
    },
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
    let only = |pick: fn(&mut Components)| {
        let mut c = Components::default();
        pick(&mut c);
        c
    };
    let (components, dev_mode) = match cli.command {
        Command::Migrate { grant_writer } => {
            config.validate(false).map_err(anyhow::Error::msg)?;
            let store = app::connect_store(&config, true).await?;
            println!("migrations applied");
            for login in grant_writer {
                store
                    .grant_writer(&login)
                    .await
                    .with_context(|| format!("granting ledger_writer to {login}"))?;
                println!("granted ledger_writer to {login}");
            }
            return Ok(());
        }
        Command::Checkpoint => return checkpoint(&config).await,
        Command::Project { rebuild: true } => return rebuild_projection(&config).await,
        Command::All { dev } => (Components::all(), dev),
        Command::Serve => (only(|c| c.serve = true), false),
        Command::Publish => (only(|c| c.publish = true), false),
        Command::Sign => (only(|c| c.sign = true), false),
        Command::Reap => (only(|c| c.reap = true), false),
        Command::Project { rebuild: false } => (only(|c| c.project = true), false),
    };
    let issuer = if dev_mode {
        let issuer = dev::issuer(std::path::Path::new(".dev"))?;
        let addr = config.listen_addr;
        dev::configure(&mut config, addr);
        // Every process applies migrations idempotently in dev; in production the migrate Job does.
        app::connect_store(&config, true).await?;
        Some(issuer)
    } else {
        None
    };
    let mut app = App::build(config, components).await?;
    if let Some(issuer) = &issuer {
        app = app.with_routes(axum::Router::new().nest("/dev", issuer.router()));
        let license = dev::ensure_demo_license(&app.licenses()).await?;
        dev::print_banner(issuer, app.local_addr()?, license)?;
    }
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        stop.cancel();
    });
    app.run_until_stopped(shutdown).await
}

/// `licensed checkpoint`: signs a checkpoint of the log now.
async fn checkpoint(config: &Config) -> anyhow::Result<()> {
    config.validate(false).map_err(anyhow::Error::msg)?;
    let store = app::connect_store(config, false).await?;
    let backend = licensed::signer::backend_from_env_config(&app::signer_config(config)).await?;
    let dir = config.checkpoint_dir.as_deref();
    match checkpoint::checkpoint_now(&store, backend.as_ref(), dir).await? {
        Some(info) => println!(
            "checkpoint signed: up to position {} (head {}, key {})",
            info.up_to_position, info.chain_head, info.key_id
        ),
        None => println!("nothing new since the last checkpoint"),
    }
    Ok(())
}

/// `licensed project --rebuild`: wipe the projection and replay the log from Postgres.
/// A one-shot job: the running projector resumes from what it finds.
async fn rebuild_projection(config: &Config) -> anyhow::Result<()> {
    config.validate(false).map_err(anyhow::Error::msg)?;
    let store = app::connect_store(config, false).await?;
    let conn = app::connect_redis(config).await?;
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
