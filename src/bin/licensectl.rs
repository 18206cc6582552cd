//! `licensectl`: the admin and client CLI of License Ledger — dev tokens,
//! license administration, and the client calls (acquire, heartbeat,
//! release, token, and `run`, which holds a seat while a command runs),
//! the latter through the client SDK (`client/`). Prints JSON; exits
//! non-zero with the server's problem detail on errors (2: no seat free).

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use licensed::auth::dev_issuer::{DevIssuer, DEV_AUDIENCE, DEV_ISSUER};
use licensed::auth::{ADMIN_ROLE, VENDOR_ROLE};
use serde_json::{json, Value};
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "licensectl",
    version,
    about = "License Ledger admin and client CLI"
)]
struct Cli {
    /// Base URL of the service.
    #[arg(
        long,
        env = "LICENSE_LEDGER_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,
    /// Bearer token (a user or admin JWT).
    #[arg(
        long,
        env = "LICENSE_LEDGER_TOKEN",
        global = true,
        hide_env_values = true
    )]
    token: Option<String>,
    /// `iss` the license tokens must carry (the server's `TOKEN_ISSUER`).
    #[arg(
        long,
        env = "LICENSE_LEDGER_TOKEN_ISSUER",
        default_value = ledger_client::DEFAULT_TOKEN_ISSUER,
        global = true
    )]
    token_issuer: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Mints a token from the development issuer (`.dev/dev-issuer.pem`).
    DevToken {
        /// User id (`sub`).
        #[arg(long, default_value = "dev-user")]
        sub: String,
        /// Tenant.
        #[arg(long, default_value = "demo")]
        tenant: String,
        /// Adds the license-admin role (the tenant's license admin).
        #[arg(long)]
        admin: bool,
        /// Adds the license-vendor role (issues licenses, sets seats and policies).
        #[arg(long)]
        vendor: bool,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl_secs: u64,
        /// Directory of the dev issuer key.
        #[arg(long, default_value = ".dev")]
        dir: String,
    },
    /// Exits 0 when `GET /api/v1/health` answers 200 (container health check).
    Health,
    /// Acquires a seat.
    Acquire {
        /// Hardware id of this machine.
        #[arg(long)]
        hardware_id: String,
        /// License id (optional when the tenant has one license).
        #[arg(long)]
        license: Option<String>,
        /// Idempotency key for safe retries.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Sends a heartbeat for a session.
    Heartbeat {
        /// Session id.
        session: String,
    },
    /// Releases a session.
    Release {
        /// Session id.
        session: String,
    },
    /// Fetches a session's license token.
    Token {
        /// Session id.
        session: String,
    },
    /// Holds a seat while a command runs: acquires it (exit 2 without
    /// starting the command when none is free), heartbeats, releases it when
    /// the command exits, and exits with the command's code. The command
    /// gets LICENSE_LEDGER_SESSION_ID and LICENSE_LEDGER_LICENSE_TOKEN.
    Run {
        /// License id (optional when the tenant has one license).
        #[arg(long)]
        license: Option<String>,
        /// Hardware id of this machine (default: its host name).
        #[arg(long)]
        hardware_id: Option<String>,
        /// When no seat is free, wait up to SECS in the license's queue (if
        /// its policy has one) instead of exiting 2.
        #[arg(long, value_name = "SECS")]
        wait: Option<u64>,
        /// The command and its arguments (after `--`).
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Lists the licenses of your tenant.
    Licenses,
    /// Issues a license to your tenant (admin).
    Issue {
        /// Product id.
        #[arg(long)]
        product: String,
        /// Seats.
        #[arg(long)]
        seats: u32,
        /// Session TTL in seconds.
        #[arg(long)]
        session_ttl_secs: Option<u32>,
    },
    /// Changes a license's seats (admin).
    Seats {
        /// License id.
        license: String,
        /// New seat count.
        seats: u32,
    },
    /// Suspends a license (admin).
    Suspend {
        /// License id.
        license: String,
        /// Reason.
        #[arg(long)]
        reason: String,
    },
    /// Reinstates a license (admin).
    Reinstate {
        /// License id.
        license: String,
    },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(err) = run(cli).await {
        eprintln!("licensectl: {err:#}");
        let no_seats = matches!(
            err.downcast_ref::<ledger_client::Error>(),
            Some(ledger_client::Error::NoSeats { .. })
        );
        std::process::exit(if no_seats { 2 } else { 1 });
    }
}

/// The SDK client for the client commands.
fn sdk(cli: &Cli) -> anyhow::Result<ledger_client::Client> {
    let token = cli
        .token
        .clone()
        .context("no bearer token: pass --token or set LICENSE_LEDGER_TOKEN")?;
    Ok(ledger_client::Client::builder(&cli.url)
        .bearer_token(token)
        .token_issuer(&cli.token_issuer)
        .build()?)
}

fn uuid_arg(raw: &str, what: &str) -> anyhow::Result<uuid::Uuid> {
    raw.parse()
        .with_context(|| format!("{what} {raw:?} is not a UUID"))
}

fn token_json(token: Option<&ledger_client::VerifiedToken>) -> Value {
    match token {
        Some(t) => json!({ "license_token": t.token, "token_expires_at": t.expires_at() }),
        None => json!({ "license_token": null, "token_expires_at": null }),
    }
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

/// The client commands, through the SDK; `None` for the other commands.
async fn client_command(cli: &Cli) -> anyhow::Result<Option<Value>> {
    let license = |l: &Option<String>| -> anyhow::Result<Option<uuid::Uuid>> {
        l.as_deref().map(|l| uuid_arg(l, "license")).transpose()
    };
    Ok(Some(match &cli.command {
        Command::Acquire {
            hardware_id,
            license: l,
            idempotency_key,
        } => {
            let client = sdk(cli)?;
            let key = idempotency_key
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let lease = client
                .acquire_with_key(license(l)?, hardware_id, &key)
                .await?;
            let out = json!({
                "session_id": lease.session_id(),
                "license_id": lease.license_id(),
                "expires_at": lease.deadline(),
            });
            let out = merge(out, token_json(lease.token().as_ref()));
            // The seat outlives this process: the caller heartbeats it.
            lease.detach().await;
            out
        }
        Command::Heartbeat { session } => {
            let session = uuid_arg(session, "session")?;
            let beat = sdk(cli)?.heartbeat(session).await?;
            let out = json!({
                "session_id": session,
                "expires_at": beat.expires_at,
                "heartbeat_interval_secs": beat.interval.as_secs(),
                "server_time": beat.server_time,
            });
            merge(out, token_json(beat.token.as_ref()))
        }
        Command::Release { session } => {
            let session = uuid_arg(session, "session")?;
            sdk(cli)?.release(session).await?;
            json!({ "session_id": session, "released": true })
        }
        Command::Token { session } => {
            let session = uuid_arg(session, "session")?;
            let token = sdk(cli)?.session_token(session).await?;
            let pending = token.is_none();
            merge(
                json!({ "session_id": session, "pending": pending }),
                token_json(token.as_ref()),
            )
        }
        Command::Run {
            license: l,
            hardware_id,
            wait,
            command,
        } => {
            let wait = wait.map(std::time::Duration::from_secs);
            let code =
                hold_while_running(cli, license(l)?, hardware_id.as_deref(), wait, command).await?;
            std::process::exit(code);
        }
        _ => return Ok(None),
    }))
}

/// `licensectl run`: the command's exit code (128 + signal when killed).
async fn hold_while_running(
    cli: &Cli,
    license: Option<uuid::Uuid>,
    hardware_id: Option<&str>,
    wait: Option<std::time::Duration>,
    command: &[String],
) -> anyhow::Result<i32> {
    use ledger_client::LeaseStatus;
    let hardware_id = match hardware_id {
        Some(h) => h.to_owned(),
        None => host_name(),
    };
    let sdk = sdk(cli)?;
    let lease = match wait {
        Some(wait) => sdk.acquire_waiting(license, &hardware_id, wait).await,
        None => sdk.acquire(license, &hardware_id).await,
    }
    .with_context(|| format!("not starting {:?}", command[0]))?;
    let mut child = tokio::process::Command::new(&command[0]);
    child
        .args(&command[1..])
        .env("LICENSE_LEDGER_SESSION_ID", lease.session_id().to_string());
    if let Some(token) = lease.token() {
        child.env("LICENSE_LEDGER_LICENSE_TOKEN", token.token);
    }
    let mut child = match child.spawn() {
        Ok(child) => child,
        Err(err) => {
            let _ = lease.release().await;
            return Err(err).with_context(|| format!("starting {:?}", command[0]));
        }
    };
    let mut watch = lease.watch();
    let status = loop {
        tokio::select! {
            status = child.wait() => break status?,
            // Ctrl-C reaches the command too; wait for it to exit, then release.
            _ = tokio::signal::ctrl_c() => {}
            changed = watch.changed() => {
                if changed.is_err() {
                    continue;
                }
                match &*watch.borrow_and_update() {
                    LeaseStatus::Degraded { error, deadline } => eprintln!(
                        "licensectl: heartbeats are failing ({error}); the seat is held until {deadline}"
                    ),
                    LeaseStatus::Lost { reason } => eprintln!("licensectl: the seat is lost: {reason}"),
                    LeaseStatus::Ok => eprintln!("licensectl: heartbeats go through again"),
                    LeaseStatus::Released => {}
                }
            }
        }
    };
    if let Err(err) = lease.release().await {
        eprintln!("licensectl: releasing the seat failed ({err}); it expires at its deadline");
    }
    use std::os::unix::process::ExitStatusExt as _;
    Ok(status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1))
}

/// This machine's host name, for a default hardware id.
fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "licensectl-host".to_owned())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(out) = client_command(&cli).await? {
        println!("{out}");
        return Ok(());
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let base = cli.url.trim_end_matches('/').to_owned();
    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let mut req = http.request(method, format!("{base}{path}"));
        if let Some(token) = &cli.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        req
    };
    use reqwest::Method as M;
    let request = match cli.command {
        Command::DevToken {
            sub,
            tenant,
            admin,
            vendor,
            ttl_secs,
            dir,
        } => {
            let issuer = DevIssuer::load_or_generate(std::path::Path::new(&dir))?;
            let roles: Vec<String> = [(admin, ADMIN_ROLE), (vendor, VENDOR_ROLE)]
                .into_iter()
                .filter(|(wanted, _)| *wanted)
                .map(|(_, role)| role.to_owned())
                .collect();
            println!(
                "{}",
                issuer.mint(
                    &sub,
                    &tenant,
                    &roles,
                    Duration::from_secs(ttl_secs),
                    DEV_ISSUER,
                    DEV_AUDIENCE
                )?
            );
            return Ok(());
        }
        Command::Health => {
            let status = http
                .get(format!("{base}/api/v1/health"))
                .send()
                .await
                .context("calling the service")?
                .status();
            if !status.is_success() {
                bail!("health check answered {status}");
            }
            return Ok(());
        }
        Command::Acquire { .. }
        | Command::Heartbeat { .. }
        | Command::Release { .. }
        | Command::Token { .. }
        | Command::Run { .. } => unreachable!("handled through the SDK above"),
        Command::Licenses => call(M::GET, "/api/v1/licenses".into(), None),
        Command::Issue {
            product,
            seats,
            session_ttl_secs,
        } => call(
            M::POST,
            "/api/v1/admin/licenses".into(),
            Some(
                json!({ "product": product, "seats": seats, "session_ttl_secs": session_ttl_secs }),
            ),
        ),
        Command::Seats { license, seats } => call(
            M::PUT,
            format!("/api/v1/admin/licenses/{license}/seats"),
            Some(json!({ "seats": seats })),
        ),
        Command::Suspend { license, reason } => call(
            M::POST,
            format!("/api/v1/admin/licenses/{license}/suspend"),
            Some(json!({ "reason": reason })),
        ),
        Command::Reinstate { license } => call(
            M::POST,
            format!("/api/v1/admin/licenses/{license}/reinstate"),
            None,
        ),
    };
    let response = request.send().await.context("calling the service")?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        let detail = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|p| p.get("detail").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or(text);
        bail!("{status}: {detail}");
    }
    if !text.is_empty() {
        println!("{text}");
    } else {
        println!("{}", json!({ "status": status.as_u16() }));
    }
    Ok(())
}
