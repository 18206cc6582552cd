//! `licensectl`: the admin and client CLI of License Ledger — dev tokens,
//! license administration, and the client calls (acquire, heartbeat,
//! release). Prints JSON responses; exits non-zero with the server's
//! problem detail on errors.

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use licensed::auth::dev_issuer::{DevIssuer, DEV_AUDIENCE, DEV_ISSUER};
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
        /// Adds the license-admin role.
        #[arg(long)]
        admin: bool,
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
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
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
            ttl_secs,
            dir,
        } => {
            let issuer = DevIssuer::load_or_generate(std::path::Path::new(&dir))?;
            let roles = if admin {
                vec!["license-admin".to_owned()]
            } else {
                vec![]
            };
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
        Command::Acquire {
            hardware_id,
            license,
            idempotency_key,
        } => {
            let mut req = call(
                M::POST,
                "/api/v1/licenses/acquire".into(),
                Some(json!({ "hardware_id": hardware_id, "license_id": license })),
            );
            if let Some(key) = idempotency_key {
                req = req.header("Idempotency-Key", key);
            }
            req
        }
        Command::Heartbeat { session } => call(
            M::PUT,
            format!("/api/v1/licenses/heartbeat/{session}"),
            None,
        ),
        Command::Release { session } => call(
            M::DELETE,
            format!("/api/v1/licenses/release/{session}"),
            None,
        ),
        Command::Token { session } => call(
            M::GET,
            format!("/api/v1/licenses/sessions/{session}/token"),
            None,
        ),
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
