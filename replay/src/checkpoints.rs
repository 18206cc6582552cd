//! Checking signed checkpoints against a running hash recomputed from the log.
//!
//! Shared by the database verifier and the offline (export) verifier: both
//! feed events in position order to a [`HeadRecorder`], which remembers the
//! running head at every position a checkpoint claims, then
//! [`check_checkpoint`] compares heads and signatures.

use crate::keys::{SignatureCheck, TrustedKeys};
use events::audit::{checkpoint_message, parse_head, RunningHash, HEAD_LEN};
use events::catalog::LicenseEvent;
use events::envelope::Envelope;
use serde::Serialize;
use std::collections::BTreeMap;

/// A `CheckpointSigned` event as found in the log.
#[derive(Debug, Clone, Serialize)]
pub struct Claim {
    /// Position of the checkpoint event (`None` in an export's trailer).
    pub position: Option<i64>,
    /// Its version in stream `checkpoints`.
    pub stream_version: i64,
    /// Last position it covers.
    pub up_to_position: i64,
    /// Hex head it signs.
    pub chain_head: String,
    /// Signing key id.
    pub key_id: String,
    /// Base64url signature.
    pub signature: String,
}

impl Claim {
    /// Reads an event; `None` when it is not a well-formed `CheckpointSigned`.
    /// `position` is where the claim itself sits (`None` when it does not count).
    pub fn from_envelope(position: Option<i64>, event: &Envelope) -> Option<Self> {
        let stream_version = event.stream_version;
        match event.event().ok()? {
            LicenseEvent::CheckpointSigned {
                up_to_position,
                chain_head,
                key_id,
                signature,
            } => Some(Self {
                position,
                stream_version,
                up_to_position,
                chain_head,
                key_id,
                signature,
            }),
            _ => None,
        }
    }
}

/// What is wrong with a checkpoint (or that nothing is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    /// Head and signature verify.
    Valid,
    /// The recomputed head differs: events up to the position were changed,
    /// deleted, inserted or moved since it was signed.
    HeadMismatch {
        /// The head recomputed now.
        computed: String,
    },
    /// The event at the covered position is gone (and the head differs).
    CoveredEventMissing {
        /// The last position present at or before the covered one.
        last_present: i64,
    },
    /// The signature does not verify with the trusted key.
    BadSignature,
    /// No trusted key has the checkpoint's kid.
    UnknownKey,
    /// Heads match, but no key was given to check the signature.
    SignatureUnchecked,
    /// The data is not a well-formed `CheckpointSigned`.
    Malformed,
    /// (export) The covered range is not inside the export: not checkable here.
    NotCovered,
}

/// One checkpoint and its verdict.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointCheck {
    /// The claim.
    #[serde(flatten)]
    pub claim: Claim,
    /// The verdict.
    #[serde(flatten)]
    pub status: Status,
}

impl CheckpointCheck {
    /// True when head and signature verified.
    pub fn is_valid(&self) -> bool {
        self.status == Status::Valid
    }
}

/// Feeds the running hash and keeps the head at every wanted position.
pub struct HeadRecorder {
    hash: RunningHash,
    wanted: Vec<i64>,
    next: usize,
    heads: BTreeMap<i64, ([u8; HEAD_LEN], i64)>,
}

impl HeadRecorder {
    /// Starts from `hash`, recording heads at `wanted` positions.
    pub fn new(hash: RunningHash, mut wanted: Vec<i64>) -> Self {
        wanted.sort_unstable();
        wanted.dedup();
        Self {
            hash,
            wanted,
            next: 0,
            heads: BTreeMap::new(),
        }
    }

    /// Folds the next event (position order). False when out of order.
    pub fn push(&mut self, position: i64, event_hash: &[u8]) -> bool {
        self.capture_below(position);
        self.hash.push(position, event_hash)
    }

    fn capture_below(&mut self, position: i64) {
        while self.next < self.wanted.len() && self.wanted[self.next] < position {
            let at = self.wanted[self.next];
            if at >= self.hash.position() {
                self.heads
                    .insert(at, (self.hash.head(), self.hash.position()));
            }
            self.next += 1;
        }
    }

    /// Ends the feed; returns the final running hash.
    pub fn finish(&mut self) -> RunningHash {
        self.capture_below(i64::MAX);
        self.hash
    }

    /// The head at `position` and the last position folded at that point.
    pub fn head_at(&self, position: i64) -> Option<([u8; HEAD_LEN], i64)> {
        self.heads.get(&position).copied()
    }
}

/// Judges one claim against the recorded heads.
pub fn check_checkpoint(claim: &Claim, heads: &HeadRecorder, keys: &TrustedKeys) -> Status {
    let Some(signed) = parse_head(&claim.chain_head) else {
        return Status::Malformed;
    };
    let Some((computed, last_present)) = heads.head_at(claim.up_to_position) else {
        return Status::NotCovered;
    };
    if last_present < claim.up_to_position && computed != signed {
        return Status::CoveredEventMissing { last_present };
    }
    if computed != signed {
        return Status::HeadMismatch {
            computed: hex::encode(computed),
        };
    }
    match keys.verify(
        &claim.key_id,
        &checkpoint_message(claim.up_to_position, &signed),
        &claim.signature,
    ) {
        SignatureCheck::Valid => Status::Valid,
        SignatureCheck::Invalid => Status::BadSignature,
        SignatureCheck::UnknownKey => Status::UnknownKey,
        SignatureCheck::NoKeys => Status::SignatureUnchecked,
    }
}

/// Describes a status for people.
pub fn describe(status: &Status) -> String {
    match status {
        Status::Valid => "valid (head matches, signature verifies)".into(),
        Status::HeadMismatch { computed } => format!(
            "HEAD MISMATCH: the log up to this position is not what was signed (events changed, deleted, inserted or moved); recomputed head {computed}"
        ),
        Status::CoveredEventMissing { last_present } => format!(
            "EVENTS MISSING: the covered position holds no event any more (last event at or before it: position {last_present}); the head differs"
        ),
        Status::BadSignature => "BAD SIGNATURE: the signature does not verify with the trusted key".into(),
        Status::UnknownKey => "UNKNOWN KEY: no trusted key has this key id".into(),
        Status::SignatureUnchecked => "head matches; signature NOT checked (no key given: pass --key, --keys or --jwks-url)".into(),
        Status::Malformed => "MALFORMED checkpoint event".into(),
        Status::NotCovered => "not covered by this export (its range starts or ends elsewhere)".into(),
    }
}
