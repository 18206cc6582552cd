//! A billing consumer: counts seat-hours per tenant from the License Ledger
//! JetStream stream (see `docs/billing.md` for the contract).
//!
//! ```sh
//! cargo run --example billing_consumer -- --nats-url nats://127.0.0.1:4222 \
//!     --stream LICENSE_EVENTS --subject-prefix license.events --durable billing --until-idle-secs 5
//! ```
//!
//! `SeatAcquired` starts a seat; the session's `SeatReleased` or
//! `SessionExpired` ends it; a session's seat-hours are end - start (the
//! events' `recorded_at`). Duplicates are dropped by event id. The fold is
//! `projections::billing::SeatHours`, so tests check the same code.

use clap::Parser;
use projections::billing::{consume, SeatHours};
use std::time::Duration;

/// Seat-hours per tenant from the event stream.
#[derive(Debug, Parser)]
struct Args {
    /// NATS server.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// JetStream stream name.
    #[arg(long, default_value = "LICENSE_EVENTS")]
    stream: String,
    /// Subject prefix of the events.
    #[arg(long, default_value = "license.events")]
    subject_prefix: String,
    /// Durable consumer name (progress survives restarts).
    #[arg(long, default_value = "billing")]
    durable: String,
    /// Stop after this many seconds without a message (default: run forever).
    #[arg(long)]
    until_idle_secs: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = async_nats::connect(&args.nats_url).await?;
    let js = async_nats::jetstream::new(client);
    let mut seat_hours = SeatHours::default();
    let until_idle = args.until_idle_secs.map(Duration::from_secs);
    let handled = consume(
        &js,
        &args.stream,
        &args.subject_prefix,
        &args.durable,
        until_idle,
        &mut seat_hours,
    )
    .await?;
    println!(
        "events handled: {handled}, sessions still open: {}",
        seat_hours.open_sessions()
    );
    println!("{:<32} {:>10} {:>14}", "tenant", "sessions", "seat-hours");
    for (tenant, hours) in seat_hours.seat_hours() {
        let closed = seat_hours
            .sessions_closed()
            .get(&tenant)
            .copied()
            .unwrap_or(0);
        println!("{tenant:<32} {closed:>10} {hours:>14.6}");
    }
    Ok(())
}
