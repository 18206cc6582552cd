//! Holds a seat from Rust: acquire, keep it while the lease heartbeats in
//! the background, verify the license token offline, release.
//!
//! ```sh
//! LL_URL=https://licenses.example.com LL_BEARER=<ID token> \
//! LL_LICENSE=<license uuid> [LL_ISSUER=<TOKEN_ISSUER>] [LL_HOLD_SECS=N] \
//!   cargo run -p ledger-client --example hold_seat
//! ```
//!
//! Exit codes: 0 held and released, 2 no seat free, 1 any other error.
//! `client/tests/lease.rs` runs [`run`] against the server.

use ledger_client::{Client, Error, LeaseStatus};
use std::time::Duration;

/// What the program is told (from the environment).
pub struct Settings {
    pub url: String,
    pub bearer: String,
    pub issuer: Option<String>,
    pub license: Option<String>,
    pub hold: Duration,
}

impl Settings {
    fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok();
        Self {
            url: var("LL_URL").unwrap_or_default(),
            bearer: var("LL_BEARER").unwrap_or_default(),
            issuer: var("LL_ISSUER"),
            license: var("LL_LICENSE"),
            hold: Duration::from_secs(
                var("LL_HOLD_SECS")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
            ),
        }
    }
}

#[tokio::main]
async fn main() {
    std::process::exit(match run(Settings::from_env()).await {
        Ok(()) => 0,
        Err(err @ Error::NoSeats { .. }) => {
            eprintln!("acquire: {err} (retry after {:?})", err.retry_after());
            2
        }
        Err(err) => {
            eprintln!("hold_seat: {err}");
            1
        }
    });
}

pub async fn run(settings: Settings) -> Result<(), Error> {
    let mut builder = Client::builder(settings.url).bearer_token(settings.bearer);
    if let Some(issuer) = settings.issuer {
        builder = builder.token_issuer(issuer);
    }
    let client = builder.build()?;
    let license = match settings.license {
        Some(l) => Some(
            l.parse()
                .map_err(|_| Error::Config(format!("LL_LICENSE {l:?} is not a UUID")))?,
        ),
        None => None, // the tenant's only license
    };

    let lease = client.acquire(license, "rust-example-host").await?;
    println!("session {}", lease.session_id());

    // The application works; the lease heartbeats meanwhile and reports
    // every change of state.
    let mut watch = lease.watch();
    let _ = tokio::time::timeout(settings.hold, async {
        while watch.changed().await.is_ok() {
            match &*watch.borrow_and_update() {
                LeaseStatus::Degraded { error, deadline } => {
                    eprintln!("heartbeats failing ({error}); seat held until {deadline}")
                }
                LeaseStatus::Lost { reason } => eprintln!("seat lost: {reason}"),
                _ => {}
            }
        }
    })
    .await;
    println!("state {:?}", lease.status());

    // The current token, verified offline with the keys seen so far.
    let token = lease
        .token()
        .ok_or_else(|| Error::Token("no token yet".into()))?;
    let verified = client.verifier().verify(&token.token)?;
    println!(
        "token verified, expires at {}, issued for {} on {}",
        verified.claims.exp, verified.claims.sub, verified.claims.hwid
    );

    lease.release().await?;
    println!("released");
    Ok(())
}
