//! Signed checkpoints of the whole log: fold the log's running hash over
//! the stable prefix (see [`crate::audit`]), have it signed, and append a
//! `CheckpointSigned` to stream `checkpoints`.
//!
//! A checkpoint commits to every event up to a position: `ledger verify`
//! checks it with the published keys, which catches deletion of whole
//! streams and truncation that per-stream chains alone cannot see.
//!
//! Gap safety: positions commit out of order, so the head is computed only
//! over the stable prefix, read through [`EventStore::subscribe`], which
//! never hands out a position while a lower one may still commit. Work is
//! incremental: each checkpoint resumes from the previous one's head.
//! Concurrency: the append carries the `checkpoints` stream version that was
//! read; of two racing checkpointers one wins, the other re-reads and finds
//! nothing new (or covers the rest).
//!
//! Must not: hold a key. The caller brings the signature (the service's KMS
//! or local signer; a test key in the audit tool's tests).

use crate::audit::{checkpoint_message, parse_head, RunningHash, CHECKPOINT_STREAM};
use crate::catalog::{CatalogError, LicenseEvent};
use crate::envelope::{decode, new_event};
use crate::store::{AppendError, EventStore, ExpectedVersion, StoreError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use futures::StreamExt as _;
use std::time::Duration;

/// Why a checkpoint was not written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The append failed (not a conflict: those are retried).
    #[error(transparent)]
    Append(#[from] AppendError),
    /// A checkpoint event cannot be read.
    #[error(transparent)]
    Decode(#[from] CatalogError),
    /// The checkpoint stream is not what checkpoints write.
    #[error("{0}")]
    Corrupt(String),
    /// The signer failed.
    #[error("signing the checkpoint: {0}")]
    Sign(String),
    /// Other checkpointers kept winning.
    #[error("gave up checkpointing: other checkpointers kept winning")]
    Contention,
}

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
    /// The previous checkpoint's last position (0: none): this one adds
    /// positions `from_position + 1 ..= up_to_position`.
    pub from_position: i64,
    /// Version of the `CheckpointSigned` event in stream `checkpoints`.
    pub stream_version: i64,
    /// Base64url signature over [`checkpoint_message`].
    pub signature: String,
    /// Every event folded, in position order: its position and the first
    /// [`SEGMENT_PREFIX`] bytes of its hash (what an external copy keeps to
    /// name the first position that changed later; see [`crate::anchor`]).
    pub segment: Vec<(i64, [u8; SEGMENT_PREFIX])>,
}

/// Bytes of each event hash kept in [`CheckpointInfo::segment`].
pub const SEGMENT_PREFIX: usize = 8;

/// The last position covered by a checkpoint in the log (0: none yet).
pub async fn last_covered_position(store: &EventStore) -> Result<i64, CheckpointError> {
    Ok(last_checkpoint(store).await?.hash.position())
}

/// The last checkpoint: stream version, covered position and head.
struct Last {
    expected: ExpectedVersion,
    hash: RunningHash,
}

async fn last_checkpoint(store: &EventStore) -> Result<Last, CheckpointError> {
    let Some(version) = store.stream_version(CHECKPOINT_STREAM).await? else {
        return Ok(Last {
            expected: ExpectedVersion::NoStream,
            hash: RunningHash::new(),
        });
    };
    let events = store.read_stream(CHECKPOINT_STREAM, version, 1).await?;
    let recorded = events.first().ok_or_else(|| {
        CheckpointError::Corrupt("checkpoint stream head without its event".into())
    })?;
    let event = decode(recorded)?;
    let LicenseEvent::CheckpointSigned {
        up_to_position,
        chain_head,
        ..
    } = event
    else {
        return Err(CheckpointError::Corrupt(format!(
            "stream {CHECKPOINT_STREAM} holds a {} event",
            recorded.event_type
        )));
    };
    let head = parse_head(&chain_head).ok_or_else(|| {
        CheckpointError::Corrupt("previous checkpoint has a malformed chain_head".into())
    })?;
    Ok(Last {
        expected: ExpectedVersion::Exact(version),
        hash: RunningHash::resume(head, up_to_position),
    })
}

/// Folds the stable prefix after `hash.position()` up to the current head.
/// Returns whether any non-checkpoint event was folded.
async fn advance(
    store: &EventStore,
    hash: &mut RunningHash,
    segment: &mut Vec<(i64, [u8; SEGMENT_PREFIX])>,
) -> Result<bool, CheckpointError> {
    let target = store.head_position().await?;
    let mut moved = false;
    if target <= hash.position() {
        return Ok(false);
    }
    let mut tail = store.subscribe(hash.position());
    while hash.position() < target {
        let next = match tokio::time::timeout(STABLE_WAIT, tail.next()).await {
            Ok(Some(event)) => event?,
            Ok(None) => {
                return Err(CheckpointError::Corrupt(
                    "the log subscription ended".into(),
                ))
            }
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
        let mut prefix = [0; SEGMENT_PREFIX];
        let n = next.hash.len().min(SEGMENT_PREFIX);
        prefix[..n].copy_from_slice(&next.hash[..n]);
        segment.push((next.position, prefix));
        moved |= next.stream_id != CHECKPOINT_STREAM;
    }
    Ok(moved)
}

/// Signs and appends a checkpoint over the stable prefix of the log.
/// `Ok(None)` when nothing but checkpoints happened since the last one.
#[tracing::instrument(skip_all)]
/// `sign` signs a message with the key `key_id` (RS256, PKCS#1 v1.5 over
/// SHA-256) and returns the raw signature.
pub async fn checkpoint_now<F, Fut, E>(
    store: &EventStore,
    key_id: &str,
    sign: F,
) -> Result<Option<CheckpointInfo>, CheckpointError>
where
    F: Fn(Vec<u8>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<u8>, E>>,
    E: std::fmt::Display,
{
    for _ in 0..MAX_ATTEMPTS {
        let Last { expected, mut hash } = last_checkpoint(store).await?;
        let from_position = hash.position();
        let mut segment = Vec::new();
        if !advance(store, &mut hash, &mut segment).await? {
            return Ok(None);
        }
        let head = hash.head();
        let signature = sign(checkpoint_message(hash.position(), &head))
            .await
            .map_err(|e| CheckpointError::Sign(e.to_string()))?;
        let event = LicenseEvent::CheckpointSigned {
            up_to_position: hash.position(),
            chain_head: hex::encode(head),
            key_id: key_id.to_owned(),
            signature: URL_SAFE_NO_PAD.encode(&signature),
        };
        let new = new_event(&event, &serde_json::json!({ "component": "checkpointer" }));
        match store
            .append_to(CHECKPOINT_STREAM, expected, vec![new])
            .await
        {
            Ok(result) => {
                let written = result.written.first();
                let position = written.map_or(0, |w| w.position);
                tracing::info!(
                    up_to = hash.position(),
                    position,
                    "signed checkpoint appended"
                );
                return Ok(Some(CheckpointInfo {
                    up_to_position: hash.position(),
                    chain_head: hex::encode(head),
                    key_id: key_id.to_owned(),
                    position,
                    new_events: hash.events(),
                    from_position,
                    stream_version: written.map_or(0, |w| w.stream_version),
                    signature: URL_SAFE_NO_PAD.encode(signature),
                    segment,
                }));
            }
            Err(AppendError::Conflict { .. }) => continue, // another checkpointer won: re-read
            Err(other) => return Err(other.into()),
        }
    }
    Err(CheckpointError::Contention)
}
