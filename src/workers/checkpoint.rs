//! The checkpoint worker: signs the log's running hash periodically with
//! the signing backend (Cloud KMS in production), and keeps a copy of each
//! checkpoint outside the database (`CHECKPOINT_DIR`, see
//! [`events::anchor`]). The checkpoint itself — folding the stable prefix,
//! the event, the race between checkpointers — is [`events::checkpoint`].
//!
//! It refuses to sign when the directory holds a checkpoint beyond the
//! newest one in the database: checkpoint rows were deleted, and signing
//! now would vouch for whatever the log has become. When the directory
//! lacks copies of checkpoints the log holds (a failed write, a directory
//! configured later), it writes them first.
//!
//! Must not: decide anything about licenses, or hold the signing key itself.

use crate::signer::SigningBackend;
use events::anchor::{self, ExternalCheckpoint};
use events::store::EventStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub use events::checkpoint::{CheckpointError, CheckpointInfo};

/// Counter: checkpoints refused because the database lost checkpoint rows.
pub const REFUSED_TOTAL: &str = "ledger_checkpoints_refused_total";

/// Most missing external copies written before one checkpoint.
const BACKFILL_PER_CHECKPOINT: usize = 100;

/// Why no checkpoint was signed.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// Signing or appending failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The external copy failed (the checkpoint is in the log).
    #[error("writing the external checkpoint: {0}")]
    External(#[from] anchor::AnchorError),
    /// The database holds less than the external directory.
    #[error(
        "the checkpoint directory covers the log up to position {external}, the database's \
         checkpoints only up to {database}: checkpoint rows were deleted; refusing to sign \
         (run `ledger verify --checkpoint-dir`)"
    )]
    RowsMissing {
        /// Newest position covered in the directory.
        external: i64,
        /// Newest position covered in the database.
        database: i64,
    },
}

/// Signs and appends a checkpoint over the stable prefix of the log with
/// `backend`, then writes it into `dir` when given. `Ok(None)` when
/// nothing but checkpoints happened since the last one.
pub async fn checkpoint_now(
    store: &EventStore,
    backend: &dyn SigningBackend,
    dir: Option<&Path>,
) -> Result<Option<CheckpointInfo>, Refused> {
    if let Some(dir) = dir {
        let present = anchor::positions(dir)?;
        let external = present.last().copied().unwrap_or(0);
        let database = events::checkpoint::last_covered_position(store).await?;
        if external > database {
            metrics::counter!(REFUSED_TOTAL).increment(1);
            return Err(Refused::RowsMissing { external, database });
        }
        let in_log = store
            .stream_version(events::audit::CHECKPOINT_STREAM)
            .await
            .map_err(CheckpointError::from)?
            .map_or(0, |v| v + 1);
        if (present.len() as i64) < in_log {
            let copied = anchor::backfill(store, dir, &present, BACKFILL_PER_CHECKPOINT).await?;
            tracing::warn!(
                copied,
                "external copies of earlier checkpoints were missing: written now"
            );
        }
    }
    let info = events::checkpoint::checkpoint_now(store, backend.key_id(), |message| async move {
        backend.sign_rs256(&message).await
    })
    .await?;
    if let (Some(dir), Some(info)) = (dir, &info) {
        let path = anchor::write(dir, &ExternalCheckpoint::from_info(info))?;
        tracing::info!(path = %path.display(), "external checkpoint written");
    }
    Ok(info)
}

/// Checkpoints every `interval` while the log moves, until `shutdown`.
/// Failures are logged and retried at the next tick.
pub async fn run(
    store: EventStore,
    backend: Arc<dyn SigningBackend>,
    interval: Duration,
    dir: Option<PathBuf>,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let work = checkpoint_now(&store, backend.as_ref(), dir.as_deref());
        tokio::select! {
            _ = shutdown.cancelled() => return,
            result = work => match result {
                Err(err @ Refused::RowsMissing { .. }) => {
                    tracing::error!(error = %err, "checkpoint refused");
                }
                Err(err) => {
                    tracing::warn!(error = %format!("{err:#}"), "checkpoint failed; retrying at the next tick");
                }
                Ok(_) => {}
            },
        }
    }
}
