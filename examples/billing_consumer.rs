//! A billing consumer: counts seat-hours per tenant from the License Ledger
//! JetStream stream into its own Postgres tables (see `docs/billing.md` for
//! the contract).
//!
//! ```sh
//! cargo run --example billing_consumer -- --nats-url nats://127.0.0.1:4222 \
//!     --database-url postgres://postgres@127.0.0.1:5432/test --schema billing \
//!     --stream LICENSE_EVENTS --subject-prefix license.events --durable billing --until-idle-secs 5
//! ```
//!
//! Each billable event is committed to Postgres before its message is
//! acknowledged, so the process can be killed at any point and restarted
//! with the same `--durable` and `--schema`: nothing is lost and nothing is
//! billed twice. The rules and the store are `projections::billing`, so the
//! tests check the same code.

use anyhow::Context as _;
use clap::Parser;
use projections::billing::{consume, BillingStore, ConsumerConfig, SchemaName};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Seat-hours per tenant from the event stream, stored in Postgres.
#[derive(Debug, Parser)]
struct Args {
    /// NATS server (`tls://` with a CA file in production).
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// PEM CA bundle of the NATS server certificate.
    #[arg(long, env = "NATS_CA_FILE")]
    nats_ca_file: Option<std::path::PathBuf>,
    /// NATS user (`billing` in deploy/nats/permissions.conf), with NATS_PASSWORD.
    #[arg(long, env = "NATS_USER", requires = "nats_password")]
    nats_user: Option<String>,
    /// Password of the NATS user.
    #[arg(long, env = "NATS_PASSWORD", hide_env_values = true)]
    nats_password: Option<String>,
    /// Postgres database for the consumer's own tables.
    #[arg(long, env = "BILLING_DATABASE_URL")]
    database_url: String,
    /// Schema of the consumer's tables (created if missing).
    #[arg(long, default_value = "billing")]
    schema: String,
    /// JetStream stream name.
    #[arg(long, default_value = "LICENSE_EVENTS")]
    stream: String,
    /// Subject prefix of the events.
    #[arg(long, default_value = "license.events")]
    subject_prefix: String,
    /// Durable consumer name (its position survives restarts).
    #[arg(long, default_value = "billing")]
    durable: String,
    /// Seconds JetStream waits for an ack before redelivering.
    #[arg(long, default_value_t = 30)]
    ack_wait_secs: u64,
    /// Stop after this many seconds without a message (default: run until Ctrl-C).
    #[arg(long)]
    until_idle_secs: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let schema = SchemaName::parse(&args.schema).context("--schema")?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&args.database_url)
        .await
        .context("connecting to the billing database")?;
    let store = BillingStore::open(pool, schema)
        .await
        .context("creating the billing tables")?;
    let client = licensed::app::NatsOptions {
        url: args.nats_url.clone(),
        ca_file: args.nats_ca_file.clone(),
        client_cert: None,
        user: args
            .nats_user
            .clone()
            .zip(args.nats_password.clone().map(Into::into)),
    }
    .connect()
    .await?;
    let js = async_nats::jetstream::new(client);
    let config = ConsumerConfig {
        ack_wait: Duration::from_secs(args.ack_wait_secs),
        until_idle: args.until_idle_secs.map(Duration::from_secs),
        ..ConsumerConfig::new(&args.stream, &args.subject_prefix, &args.durable)
    };
    let shutdown = CancellationToken::new();
    let on_ctrl_c = shutdown.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_ctrl_c.cancel();
        }
    });
    let report = consume(&js, &config, &store, &shutdown).await?;
    println!(
        "messages handled: {} (billed {}, duplicates {}, ignored {}, undecodable {}); sessions still open: {}",
        report.handled,
        report.applied,
        report.duplicates,
        report.ignored,
        report.undecodable,
        store.open_sessions().await?,
    );
    println!("{:<32} {:>10} {:>14}", "tenant", "sessions", "seat-hours");
    for (tenant, totals) in store.totals().await? {
        println!(
            "{tenant:<32} {:>10} {:>14.6}",
            totals.sessions_closed,
            totals.seat_hours()
        );
    }
    Ok(())
}
