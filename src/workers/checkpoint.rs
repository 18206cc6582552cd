//! Signed checkpoints: the service periodically signs the log's running hash.
//!
//! A checkpoint commits to every event up to a position (see
//! [`events::audit`]): its `CheckpointSigned` event, appended to stream
//! `checkpoints`, carries the position, the running head and an RS256
//! signature by the signing backend (Cloud KMS in production). `ledger
//! verify` checks them with the published keys, which catches deletion of
//! whole streams and truncation that per-stream chains alone cannot see.
//!
//! Gap safety: positions commit out of order, so the head is computed only
//! over the stable prefix, read through [`EventStore::subscribe`], which
//! never hands out a position while a lower one may still commit. Work is
//! incremental: each checkpoint resumes from the previous one's head.
//!
//! Concurrency: the append carries the `checkpoints` stream version that was
//! read; of two racing checkpointers one wins, the other re-reads and finds
//! nothing new (or covers the rest).
//!
//! Must not: decide anything about licenses, or hold the signing key itself.

use crate::signer::SigningBackend;
use anyhow::Context as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use events::audit::{checkpoint_message, parse_head, RunningHash, CHECKPOINT_STREAM};
use events::catalog::LicenseEvent;
use events::envelope::{decode, new_event};
use events::store::{AppendError, EventStore, ExpectedVersion};
use futures::StreamExt as _;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long to wait without progress (an open transaction below the head)
/// before checkpointing the prefix that is already stable.
const STABLE_WAIT: Duration = Duration::from_secs(5);

/// Attempts when other checkpointers keep winning.
const MAX_ATTEMPTS: usize = 5;

/// A checkpoint that was appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// Last position covered.
    pub up_to_position: i64,
    /// Hex running head at that position.
    pub chain_head: String,
    /// Signing key version.
    pub key_id: String,
    /// Position of the `CheckpointSigned` event itself.
    pub position: i64,
    /// Events folded since the previous checkpoint.
    pub new_events: u64,
}

/// The last checkpoint: stream version, covered position and head.
struct Last {
    expected: ExpectedVersion,
    hash: RunningHash,
}

async fn last_checkpoint(store: &EventStore) -> anyhow::Result<Last> {
    let Some(version) = store.stream_version(CHECKPOINT_STREAM).await? else {
        return Ok(Last {
            expected: ExpectedVersion::NoStream,
            hash: RunningHash::new(),
        });
    };
    let events = store.read_stream(CHECKPOINT_STREAM, version, 1).await?;
    let recorded = events
        .first()
        .context("checkpoint stream head without its event")?;
    let event = decode(recorded)?;
    let LicenseEvent::CheckpointSigned {
        up_to_position,
        chain_head,
        ..
    } = event
    else {
        anyhow::bail!(
            "stream {CHECKPOINT_STREAM} holds a {} event",
            recorded.event_type
        );
    };
    let head = parse_head(&chain_head).context("previous checkpoint has a malformed chain_head")?;
    Ok(Last {
        expected: ExpectedVersion::Exact(version),
        hash: RunningHash::resume(head, up_to_position),
    })
}

/// Folds the stable prefix after `hash.position()` up to the current head.
/// Returns whether any non-checkpoint event was folded.
async fn advance(store: &EventStore, hash: &mut RunningHash) -> anyhow::Result<bool> {
    let target = store.head_position().await?;
    let mut moved = false;
    if target <= hash.position() {
        return Ok(false);
    }
    let mut tail = store.subscribe(hash.position());
    while hash.position() < target {
        let next = match tokio::time::timeout(STABLE_WAIT, tail.next()).await {
            Ok(Some(event)) => event?,
            Ok(None) => anyhow::bail!("the log subscription ended"),
            Err(_) => {
                tracing::warn!(
                    at = hash.position(),
                    target,
                    "checkpoint stops below an open transaction"
                );
                break;
            }
        };
        hash.push(next.position, &next.hash);
        moved |= next.stream_id != CHECKPOINT_STREAM;
    }
    Ok(moved)
}

/// Signs and appends a checkpoint over the stable prefix of the log.
/// `Ok(None)` when nothing but checkpoints happened since the last one.
#[tracing::instrument(skip_all)]
pub async fn checkpoint_now(
    store: &EventStore,
    backend: &dyn SigningBackend,
) -> anyhow::Result<Option<CheckpointInfo>> {
    for _ in 0..MAX_ATTEMPTS {
        let Last { expected, mut hash } = last_checkpoint(store).await?;
        if !advance(store, &mut hash).await? {
            return Ok(None);
        }
        let head = hash.head();
        let signature = backend
            .sign_rs256(&checkpoint_message(hash.position(), &head))
            .await
            .context("signing the checkpoint")?;
        let event = LicenseEvent::CheckpointSigned {
            up_to_position: hash.position(),
            chain_head: hex::encode(head),
            key_id: backend.key_id().to_owned(),
            signature: URL_SAFE_NO_PAD.encode(signature),
        };
        let new = new_event(&event, &serde_json::json!({ "component": "checkpointer" }));
        match store
            .append_to(CHECKPOINT_STREAM, expected, vec![new])
            .await
        {
            Ok(result) => {
                let position = result.written.first().map_or(0, |w| w.position);
                tracing::info!(
                    up_to = hash.position(),
                    position,
                    "signed checkpoint appended"
                );
                return Ok(Some(CheckpointInfo {
                    up_to_position: hash.position(),
                    chain_head: hex::encode(head),
                    key_id: backend.key_id().to_owned(),
                    position,
                    new_events: hash.events(),
                }));
            }
            Err(AppendError::Conflict { .. }) => continue, // another checkpointer won: re-read
            Err(other) => return Err(other.into()),
        }
    }
    anyhow::bail!("gave up checkpointing: other checkpointers kept winning")
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
