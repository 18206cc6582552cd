//! The `ledger` command line: parse, connect, dispatch, map errors to exit codes.
//!
//! Exit codes: 0 success (for `verify`: everything verifies; for `seats`: no
//! violation), 1 verification failed (or a seat violation found), 2 bad input
//! or an operational error (message on stderr).

use crate::keys::{self, TrustedKeys};
use crate::selection::{chosen_licenses, Window};
use crate::time::parse_time;
use crate::{export, offline, render, report, seats, state, svg, verify, what_if};
use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use events::ids::LicenseId;
use events::store::EventStore;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// Audit the License Ledger event log: verify, replay, prove seats, report, export.
#[derive(Debug, Parser)]
#[command(name = "ledger", version)]
pub struct Cli {
    /// Postgres URL of the log.
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// Schema holding the log's tables (tests use one per test).
    #[arg(long, global = true)]
    pub schema: Option<String>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats of `verify`, `state` and `seats`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum TextOrJson {
    /// Human-readable.
    Text,
    /// JSON.
    Json,
}

/// Output formats of `report`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ReportFormat {
    /// Aligned text.
    Table,
    /// Long-format CSV (`license_id,metric,key,value`).
    Csv,
    /// JSON.
    Json,
    /// SVG chart of concurrent seats with the seat limit.
    Svg,
}

/// Output formats of `what-if`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum WhatIfFormat {
    /// Side-by-side text.
    Table,
    /// JSON (both reports in full).
    Json,
    /// SVG: concurrency recorded and under the policy, one panel each.
    Svg,
}

/// Where the trusted public keys come from.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// JWKS file (as served at /.well-known/jwks.json).
    #[arg(long)]
    pub keys: Option<PathBuf>,
    /// PEM public key (or private key) file, trusted for every key id.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// URL of a JWKS document.
    #[arg(long)]
    pub jwks_url: Option<String>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Verify every stream's hash chain and every signed checkpoint (or an export with --file).
    Verify {
        /// Verify this export offline instead of the database.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Keys for checkpoint signatures.
        #[command(flatten)]
        keys: KeyArgs,
        /// Also check the log against the checkpoints kept outside the
        /// database (the signer's CHECKPOINT_DIR, or a copy of its bucket).
        #[arg(long, env = "CHECKPOINT_DIR")]
        checkpoint_dir: Option<PathBuf>,
        /// Fail when an event has waited more than this many seconds for a
        /// signed checkpoint (or when no checkpoint proves anything).
        #[arg(long, default_value_t = verify::DEFAULT_MAX_CHECKPOINT_LAG_SECS)]
        max_checkpoint_lag: u64,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
    },
    /// A license's seats and live sessions at an instant, from the log alone.
    State {
        /// The license id (UUID).
        #[arg(long)]
        license: String,
        /// The instant (RFC 3339, a date, or "now").
        #[arg(long)]
        at: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
    },
    /// Prove that no license granted more seats than it owned (and, for
    /// strict licenses, that unexpired tokens never outnumbered its seats).
    Seats {
        /// One license (default: every license in the log).
        #[arg(long, conflicts_with = "tenant")]
        license: Option<String>,
        /// Every license of a tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
    },
    /// Usage figures over a window: peaks, seat-hours, acquisitions, denials, expiries.
    Report {
        /// Licenses and window.
        #[command(flatten)]
        window: Window,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: ReportFormat,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Replay a window's recorded demand under another policy, side by side
    /// with what happened (grants, denials, overdraft, peak, seat-hours).
    WhatIf {
        /// JSON file holding the policy (the body of `PUT .../policy`).
        #[arg(long)]
        policy: PathBuf,
        /// Licenses and window.
        #[command(flatten)]
        window: Window,
        /// How long a seat the log denied but the policy grants is held,
        /// seconds (default: the mean session length in the window).
        #[arg(long)]
        denied_hold_secs: Option<u32>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: WhatIfFormat,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Export events as JSON lines with hashes and covering checkpoints.
    Export {
        /// Events recorded at or after this instant.
        #[arg(long)]
        from: Option<String>,
        /// Events recorded at or before this instant (widened to the next checkpoint).
        #[arg(long)]
        to: Option<String>,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Rebuild the Redis projection from the log (same as `licensed project --rebuild`).
    RebuildProjection {
        /// Redis URL of the projection.
        #[arg(long, env = "REDIS_URL")]
        redis_url: String,
        /// PEM CA bundle of a `rediss://` server (Memorystore's per-instance CA).
        #[arg(long, env = "REDIS_CA_FILE")]
        redis_ca_file: Option<PathBuf>,
        /// Key prefix of the projection.
        #[arg(long, default_value = projections::DEFAULT_PREFIX)]
        prefix: String,
    },
}

/// Runs the CLI with the process arguments; returns the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ledger: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ledger: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn connect(cli: &Cli) -> anyhow::Result<EventStore> {
    let url = cli
        .database_url
        .as_deref()
        .context("no database: pass --database-url or set DATABASE_URL")?;
    let pool = events::store::connect(url, cli.schema.as_deref(), 4)
        .await
        .context("connecting to the database")?;
    Ok(EventStore::new(pool))
}

async fn load_keys(args: &KeyArgs) -> anyhow::Result<TrustedKeys> {
    let mut keys = TrustedKeys::none();
    if let Some(path) = &args.key {
        keys.merge(keys::from_file(path, false)?);
    }
    if let Some(path) = &args.keys {
        keys.merge(keys::from_file(path, true)?);
    }
    if let Some(url) = &args.jwks_url {
        keys.merge(keys::from_url(url).await?);
    }
    Ok(keys)
}

fn output(path: Option<&PathBuf>, bytes: &[u8]) -> anyhow::Result<()> {
    match path {
        Some(path) => {
            std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(bytes)?;
            stdout.flush()?;
            Ok(())
        }
    }
}

fn json<T: serde::Serialize>(value: &T) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(value)? + "\n")
}

/// `value` as JSON, or rendered as text.
fn text_or_json<T: serde::Serialize>(
    format: TextOrJson,
    value: &T,
    render: impl FnOnce(&T) -> String,
) -> anyhow::Result<String> {
    match format {
        TextOrJson::Json => json(value),
        TextOrJson::Text => Ok(render(value)),
    }
}

fn verdict(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Runs one parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Verify {
            file,
            keys,
            checkpoint_dir,
            max_checkpoint_lag,
            format,
        } => {
            let keys = load_keys(keys).await?;
            let (ok, text) = match file {
                Some(path) => {
                    let report = offline::verify_file(path, &keys)?;
                    (
                        report.is_ok(),
                        text_or_json(*format, &report, |r| r.render())?,
                    )
                }
                None => {
                    let store = connect(&cli).await?;
                    let options = verify::VerifyOptions {
                        external: match checkpoint_dir {
                            Some(dir) => events::anchor::read_dir(dir)?,
                            None => Vec::new(),
                        },
                        max_checkpoint_lag: std::time::Duration::from_secs(*max_checkpoint_lag),
                    };
                    let report = verify::verify_db(&store, &keys, &options).await?;
                    (
                        report.is_ok(),
                        text_or_json(*format, &report, |r| r.render())?,
                    )
                }
            };
            output(None, text.as_bytes())?;
            if !ok {
                eprintln!("ledger: verification FAILED (see above)");
            }
            Ok(verdict(ok))
        }
        Command::State {
            license,
            at,
            format,
        } => {
            let license: LicenseId = license
                .parse()
                .map_err(|e| anyhow::anyhow!("--license: {e}"))?;
            let at = parse_time(at)?;
            let store = connect(&cli).await?;
            let state = state::state_at(&store, license, at).await?;
            let text = text_or_json(*format, &state, |r| r.render())?;
            output(None, text.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Seats {
            license,
            tenant,
            format,
        } => {
            let store = connect(&cli).await?;
            let licenses = match chosen_licenses(&store, license, tenant).await? {
                Some(ids) => ids,
                None => store.issued_licenses(None).await?,
            };
            let report = seats::check(&store, &licenses).await?;
            let text = text_or_json(*format, &report, |r| r.render())?;
            output(None, text.as_bytes())?;
            if !report.is_ok() {
                eprintln!(
                    "ledger: seat check FAILED: {} violation(s) (see above)",
                    report.violations
                );
            }
            Ok(verdict(report.is_ok()))
        }
        Command::Report {
            window,
            format,
            out,
        } => {
            let store = connect(&cli).await?;
            let (licenses, from, to) = window.resolve(&store).await?;
            let report = report::build(&store, &licenses, from, to).await?;
            let text = match format {
                ReportFormat::Table => render::table(&report),
                ReportFormat::Csv => render::csv(&report),
                ReportFormat::Json => json(&report)?,
                ReportFormat::Svg => svg::render(&report),
            };
            output(out.as_ref(), text.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::WhatIf {
            policy,
            window,
            denied_hold_secs,
            format,
            out,
        } => {
            let text = std::fs::read_to_string(policy)
                .with_context(|| format!("--policy: reading {}", policy.display()))?;
            let policy: events::license::Policy = serde_json::from_str(&text)
                .with_context(|| format!("--policy: {} is not a policy", policy.display()))?;
            let store = connect(&cli).await?;
            let (licenses, from, to) = window.resolve(&store).await?;
            let hold = denied_hold_secs.map(|s| chrono::TimeDelta::seconds(i64::from(s)));
            let result = what_if::build(&store, &licenses, policy, from, to, hold).await?;
            let text = match format {
                WhatIfFormat::Table => result.render(),
                WhatIfFormat::Json => json(&result)?,
                WhatIfFormat::Svg => result.svg(),
            };
            output(out.as_ref(), text.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Export { from, to, out } => {
            let from = from.as_deref().map(parse_time).transpose()?;
            let to = to.as_deref().map(parse_time).transpose()?;
            let store = connect(&cli).await?;
            let summary = match out {
                Some(path) => {
                    let file = std::fs::File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?;
                    let mut writer = std::io::BufWriter::new(file);
                    export::export(&store, from, to, &mut writer).await?
                }
                None => {
                    let mut writer = std::io::BufWriter::new(std::io::stdout().lock());
                    export::export(&store, from, to, &mut writer).await?
                }
            };
            eprintln!(
                "ledger: exported {} events (positions {}..={}) and {} checkpoint(s)",
                summary.events, summary.start_position, summary.end_position, summary.checkpoints
            );
            if summary.covered_up_to.is_none() && summary.events > 0 {
                eprintln!(
                    "ledger: warning: no signed checkpoint covers the end of this export yet; its last events are protected by per-stream chains only (checkpoint, then export again)"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::RebuildProjection {
            redis_url,
            redis_ca_file,
            prefix,
        } => {
            let store = connect(&cli).await?;
            let client = projections::connect::client(redis_url, redis_ca_file.as_deref())
                .context("--redis-url")?;
            // Fail fast on an unreachable Redis (the manager alone retries for minutes).
            let probe = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                client.get_multiplexed_async_connection(),
            );
            probe
                .await
                .context("connecting to Redis: timed out")?
                .context("connecting to Redis")?;
            let conn = client
                .get_connection_manager()
                .await
                .context("connecting to Redis")?;
            let projection = projections::RedisProjection::new(conn, prefix.clone());
            let report = projections::rebuild(&store, &projection).await?;
            let secs = report.elapsed.as_secs_f64().max(1e-9);
            println!(
                "rebuilt projection {prefix}: {} keys deleted, {} events replayed up to position {} in {:.2} s ({:.0} events/s)",
                report.keys_deleted,
                report.events,
                report.up_to_position,
                secs,
                report.events as f64 / secs
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
