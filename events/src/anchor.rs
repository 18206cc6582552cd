//! Checkpoints kept outside the database: the audit's external anchor.
//!
//! A signed checkpoint in the log proves the log up to a position only as
//! long as the checkpoint itself is there; whoever can write the database
//! can delete it and re-chain what they changed. So the signer also writes
//! every checkpoint as one file into a directory (`CHECKPOINT_DIR`): in
//! production a Cloud Storage bucket with a locked retention policy,
//! mounted on the signer pods only, where a file cannot be changed or
//! deleted before its retention ends. `ledger verify --checkpoint-dir`
//! checks the log against these files.
//!
//! A file holds the signed claim (covered position, running head, key,
//! signature) and the segment it adds since the previous checkpoint: the
//! positions and the first 8 bytes of each event's hash. The signed head
//! detects any change; the segment names the first position that changed,
//! was inserted or was deleted (8 bytes per event, about 11 once base64
//! encoded, plus about 1 KB per file).
//!
//! Files are written once, never replaced (`create_new`): a retention-locked
//! bucket refuses overwrites anyway, and a rename would need a delete.
//! Names sort by position: `checkpoint-<up_to_position, 20 digits>.json`.

use crate::audit::CHECKPOINT_STREAM;
use crate::catalog::LicenseEvent;
use crate::checkpoint::{CheckpointInfo, SEGMENT_PREFIX};
use crate::envelope::decode;
use crate::store::{EventStore, StoreError};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use futures::TryStreamExt as _;
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The `format` field of every file.
pub const FORMAT: &str = "license-ledger-checkpoint/1";

/// One checkpoint as stored outside the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalCheckpoint {
    /// Always [`FORMAT`].
    pub format: String,
    /// Version of the `CheckpointSigned` event in stream `checkpoints`.
    pub stream_version: i64,
    /// The previous checkpoint's last position (0: the first checkpoint).
    pub from_position: i64,
    /// Last position covered.
    pub up_to_position: i64,
    /// Hex running head at `up_to_position` (what the signature covers).
    pub chain_head: String,
    /// Signing key version.
    pub key_id: String,
    /// Base64url RS256 signature over the checkpoint message.
    pub signature: String,
    /// Positions in `from_position + 1 ..= up_to_position` that hold an
    /// event, as inclusive ranges.
    pub positions: Vec<(i64, i64)>,
    /// Base64 of the first 8 bytes of each of those events' hashes, in
    /// position order.
    pub hash_prefixes: String,
}

/// Why an external checkpoint could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    /// The directory or a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A file is not an external checkpoint.
    #[error("{path}: not a License Ledger checkpoint: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Reading the log failed (backfill).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A checkpoint event of the log cannot be read (backfill).
    #[error("checkpoint event v{version}: {reason}")]
    BadEvent {
        /// Its version in stream `checkpoints`.
        version: i64,
        /// What is wrong.
        reason: String,
    },
    /// A file of this name exists with other content.
    #[error("{path}: exists with other content (a checkpoint is never replaced)")]
    Conflict {
        /// The file.
        path: PathBuf,
    },
}

impl ExternalCheckpoint {
    /// The external copy of a checkpoint just appended.
    pub fn from_info(info: &CheckpointInfo) -> Self {
        let mut positions: Vec<(i64, i64)> = Vec::new();
        let mut prefixes = Vec::with_capacity(info.segment.len() * SEGMENT_PREFIX);
        for (position, prefix) in &info.segment {
            match positions.last_mut() {
                Some((_, end)) if *end + 1 == *position => *end = *position,
                _ => positions.push((*position, *position)),
            }
            prefixes.extend_from_slice(prefix);
        }
        Self {
            format: FORMAT.to_owned(),
            stream_version: info.stream_version,
            from_position: info.from_position,
            up_to_position: info.up_to_position,
            chain_head: info.chain_head.clone(),
            key_id: info.key_id.clone(),
            signature: info.signature.clone(),
            positions,
            hash_prefixes: STANDARD.encode(prefixes),
        }
    }

    /// The file name of this checkpoint.
    pub fn file_name(&self) -> String {
        format!("checkpoint-{:020}.json", self.up_to_position)
    }

    /// The segment: every position it adds and its hash prefix, in order.
    /// Errors when the ranges and the prefixes disagree.
    pub fn entries(&self) -> Result<Vec<(i64, [u8; SEGMENT_PREFIX])>, String> {
        let bytes = STANDARD
            .decode(&self.hash_prefixes)
            .map_err(|e| format!("hash_prefixes: {e}"))?;
        let mut chunks = bytes.chunks_exact(SEGMENT_PREFIX);
        let mut out = Vec::new();
        let mut last = self.from_position;
        for &(start, end) in &self.positions {
            if start <= last || end < start || end > self.up_to_position {
                return Err(format!(
                    "position range {start}..={end} is out of order or outside {}..={}",
                    self.from_position + 1,
                    self.up_to_position
                ));
            }
            for position in start..=end {
                let chunk = chunks.next().ok_or("fewer hash prefixes than positions")?;
                let mut prefix = [0; SEGMENT_PREFIX];
                prefix.copy_from_slice(chunk);
                out.push((position, prefix));
            }
            last = end;
        }
        if chunks.next().is_some() || !chunks.remainder().is_empty() {
            return Err("more hash prefixes than positions".into());
        }
        Ok(out)
    }
}

/// Writes `checkpoint` into `dir` (created if missing), never replacing a
/// file: writing the same checkpoint again is a no-op.
pub fn write(dir: &Path, checkpoint: &ExternalCheckpoint) -> Result<PathBuf, AnchorError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| AnchorError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join(checkpoint.file_name());
    let body = serde_json::to_vec_pretty(checkpoint).expect("a checkpoint serialises");
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(mut file) => {
            file.write_all(&body).map_err(io(&path))?;
            file.sync_all().map_err(io(&path))?;
            Ok(path)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if std::fs::read(&path).map_err(io(&path))? == body {
                Ok(path)
            } else {
                Err(AnchorError::Conflict { path })
            }
        }
        Err(e) => Err(io(&path)(e)),
    }
}

/// Every checkpoint file in `dir`, by covered position. Other files are
/// ignored; a checkpoint file that does not parse is an error naming it.
pub fn read_dir(dir: &Path) -> Result<Vec<ExternalCheckpoint>, AnchorError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| AnchorError::Io { path, source }
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !(name.starts_with("checkpoint-") && name.ends_with(".json")) {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let malformed = |reason: String| AnchorError::Malformed {
            path: path.clone(),
            reason,
        };
        let checkpoint: ExternalCheckpoint =
            serde_json::from_slice(&bytes).map_err(|e| malformed(e.to_string()))?;
        if checkpoint.format != FORMAT {
            return Err(malformed(format!("format {:?}", checkpoint.format)));
        }
        checkpoint.entries().map_err(malformed)?;
        out.push(checkpoint);
    }
    out.sort_by_key(|c| c.up_to_position);
    Ok(out)
}

/// The positions covered by the checkpoint files in `dir` (empty when
/// there is no directory yet), from the file names alone: the signer asks
/// before every checkpoint, and a bucket holds one file per checkpoint for
/// years.
pub fn positions(dir: &Path) -> Result<std::collections::BTreeSet<i64>, AnchorError> {
    let mut out = std::collections::BTreeSet::new();
    if !dir.exists() {
        return Ok(out);
    }
    let io = |source| AnchorError::Io {
        path: dir.to_owned(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let name = entry.map_err(io)?.file_name();
        let position = name
            .to_str()
            .and_then(|n| n.strip_prefix("checkpoint-"))
            .and_then(|n| n.strip_suffix(".json"))
            .and_then(|n| n.parse::<i64>().ok());
        out.extend(position);
    }
    Ok(out)
}

/// The highest position covered by a checkpoint file in `dir` (0: none).
pub fn newest_position(dir: &Path) -> Result<i64, AnchorError> {
    Ok(positions(dir)?.last().copied().unwrap_or(0))
}

/// Writes the copies `dir` lacks (its files cover `present`) of checkpoints
/// the log holds (a write that failed, a directory configured later),
/// oldest first, at most `max`; returns how many were written. The claims
/// (head, key, signature) are the signed ones from the log; the segments
/// are read from the log now, so they locate a change made before this
/// call only as well as the signed heads detect it.
pub async fn backfill(
    store: &EventStore,
    dir: &Path,
    present: &std::collections::BTreeSet<i64>,
    max: usize,
) -> Result<usize, AnchorError> {
    let mut written = 0;
    let mut previous = 0;
    let mut from = 0;
    while written < max {
        let batch = store.read_stream(CHECKPOINT_STREAM, from, 1_000).await?;
        for event in &batch {
            from = event.stream_version + 1;
            let bad = |reason: String| AnchorError::BadEvent {
                version: event.stream_version,
                reason,
            };
            let LicenseEvent::CheckpointSigned {
                up_to_position,
                chain_head,
                key_id,
                signature,
            } = decode(event).map_err(|e| bad(e.to_string()))?
            else {
                return Err(bad(format!("a {} event", event.event_type)));
            };
            if !present.contains(&up_to_position) && written < max {
                let segment: Vec<(i64, [u8; SEGMENT_PREFIX])> = store
                    .chain_hashes(previous, Some(up_to_position + 1))
                    .map_ok(|(position, hash)| {
                        let mut prefix = [0; SEGMENT_PREFIX];
                        let n = hash.len().min(SEGMENT_PREFIX);
                        prefix[..n].copy_from_slice(&hash[..n]);
                        (position, prefix)
                    })
                    .try_collect()
                    .await?;
                let info = CheckpointInfo {
                    up_to_position,
                    chain_head,
                    key_id,
                    position: event.position,
                    new_events: segment.len() as u64,
                    from_position: previous,
                    stream_version: event.stream_version,
                    signature,
                    segment,
                };
                write(dir, &ExternalCheckpoint::from_info(&info))?;
                written += 1;
            }
            previous = up_to_position;
        }
        if batch.len() < 1_000 {
            break;
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn info(segment: Vec<(i64, [u8; SEGMENT_PREFIX])>, from: i64) -> CheckpointInfo {
        CheckpointInfo {
            up_to_position: segment.last().map_or(from, |e| e.0),
            chain_head: "00".repeat(32),
            key_id: "k1".into(),
            position: 0,
            new_events: segment.len() as u64,
            from_position: from,
            stream_version: 3,
            signature: "c2ln".into(),
            segment,
        }
    }

    proptest! {
        #[test]
        fn entries_round_trip(
            from in 0i64..1000,
            steps in proptest::collection::vec((1i64..4, any::<[u8; 8]>()), 0..200),
        ) {
            let mut position = from;
            let segment: Vec<_> = steps
                .into_iter()
                .map(|(gap, prefix)| {
                    position += gap;
                    (position, prefix)
                })
                .collect();
            let external = ExternalCheckpoint::from_info(&info(segment.clone(), from));
            prop_assert_eq!(external.entries().unwrap(), segment);
        }
    }

    #[test]
    fn files_are_written_once_and_read_back_in_order() {
        let dir = std::env::temp_dir().join(format!("ll-anchor-{}", uuid::Uuid::new_v4()));
        let a = ExternalCheckpoint::from_info(&info(vec![(1, [1; 8]), (2, [2; 8])], 0));
        let b = ExternalCheckpoint::from_info(&info(vec![(4, [4; 8])], 2));
        write(&dir, &b).unwrap();
        write(&dir, &a).unwrap();
        write(&dir, &a).unwrap(); // the same again: a no-op
        let mut changed = a.clone();
        changed.chain_head = "11".repeat(32);
        assert!(matches!(
            write(&dir, &changed),
            Err(AnchorError::Conflict { .. })
        ));
        assert_eq!(read_dir(&dir).unwrap(), vec![a, b]);
        assert_eq!(newest_position(&dir).unwrap(), 4);
        std::fs::write(dir.join("checkpoint-x.json"), "{}").unwrap();
        assert!(matches!(read_dir(&dir), Err(AnchorError::Malformed { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
