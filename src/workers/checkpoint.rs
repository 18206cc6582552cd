//! The checkpoint worker: signs the log's running hash periodically with
//! the signing backend (Cloud KMS in production). The checkpoint itself —
//! folding the stable prefix, the event, the race between checkpointers —
//! is [`events::checkpoint`].
//!
//! Must not: decide anything about licenses, or hold the signing key itself.

use crate::signer::SigningBackend;
use events::store::EventStore;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub use events::checkpoint::{CheckpointError, CheckpointInfo};

/// Signs and appends a checkpoint over the stable prefix of the log with
/// `backend`. `Ok(None)` when nothing but checkpoints happened since the last one.
pub async fn checkpoint_now(
    store: &EventStore,
    backend: &dyn SigningBackend,
) -> Result<Option<CheckpointInfo>, CheckpointError> {
    events::checkpoint::checkpoint_now(store, backend.key_id(), |message| async move {
        backend.sign_rs256(&message).await
    })
    .await
}

/// Checkpoints every `interval` while the log moves, until `shutdown`.
/// Failures are logged and retried at the next tick.
pub async fn run(
    store: EventStore,
    backend: Arc<dyn SigningBackend>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let work = checkpoint_now(&store, backend.as_ref());
        tokio::select! {
            _ = shutdown.cancelled() => return,
            result = work => {
                if let Err(err) = result {
                    tracing::warn!(error = %format!("{err:#}"), "checkpoint failed; retrying at the next tick");
                }
            }
        }
    }
}
