//! The log-wide running hash and the signed-checkpoint message format.
//!
//! Per-stream hash chains ([`crate::store::hash`]) prove each stream's
//! content and order, but not that a whole stream, or a stream's tail, still
//! exists. The running hash commits to *every* event of the log in position
//! order:
//!
//! ```text
//! head_0 = 32 zero bytes
//! head_n = SHA-256("license-ledger/log/v1" || head_{n-1} || position_n (i64, 8 bytes BE) || hash_n)
//! ```
//!
//! where `hash_n` is the event's per-stream chain hash (which already commits
//! to its content). A `CheckpointSigned` event stores `head` at some
//! `up_to_position` with an RS256 signature over [`checkpoint_message`], so
//! anyone holding the public key can prove the log up to that position.
//!
//! Must not: do I/O or know about keys. Checkpoints are written by
//! [`crate::checkpoint`] (with a signature the caller brings) and verified by
//! the `ledger` tool.

use sha2::{Digest, Sha256};

/// Length of a running head in bytes.
pub const HEAD_LEN: usize = 32;

/// The running head before the first event.
pub const GENESIS_HEAD: [u8; HEAD_LEN] = [0; HEAD_LEN];

/// Domain separator of the running hash.
const LOG_TAG: &[u8] = b"license-ledger/log/v1";

/// Domain separator of the checkpoint signature input.
const CHECKPOINT_TAG: &[u8] = b"license-ledger/checkpoint/v1\n";

/// The stream that holds `CheckpointSigned` events.
pub const CHECKPOINT_STREAM: &str = "checkpoints";

/// One step of the running hash: folds the event at `position` with chain
/// hash `event_hash` into `head`.
pub fn next_head(head: &[u8; HEAD_LEN], position: i64, event_hash: &[u8]) -> [u8; HEAD_LEN] {
    let mut hasher = Sha256::new();
    hasher.update(LOG_TAG);
    hasher.update(head);
    hasher.update(position.to_be_bytes());
    hasher.update(event_hash);
    hasher.finalize().into()
}

/// The running hash over events fed in strictly increasing position order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunningHash {
    head: [u8; HEAD_LEN],
    position: i64,
    events: u64,
}

impl Default for RunningHash {
    fn default() -> Self {
        Self::new()
    }
}

impl RunningHash {
    /// The hash of the empty log (position 0).
    pub fn new() -> Self {
        Self {
            head: GENESIS_HEAD,
            position: 0,
            events: 0,
        }
    }

    /// Resumes from a known head at `position` (e.g. a verified checkpoint).
    pub fn resume(head: [u8; HEAD_LEN], position: i64) -> Self {
        Self {
            head,
            position,
            events: 0,
        }
    }

    /// Folds the next event. Returns false (and changes nothing) when
    /// `position` is not above the last one: the caller fed out of order.
    pub fn push(&mut self, position: i64, event_hash: &[u8]) -> bool {
        if position <= self.position {
            return false;
        }
        self.head = next_head(&self.head, position, event_hash);
        self.position = position;
        self.events += 1;
        true
    }

    /// The current head.
    pub fn head(&self) -> [u8; HEAD_LEN] {
        self.head
    }

    /// The position of the last event folded (the start position before any).
    pub fn position(&self) -> i64 {
        self.position
    }

    /// Events folded since `new`/`resume`.
    pub fn events(&self) -> u64 {
        self.events
    }
}

/// The bytes a checkpoint signs: a domain tag, the position (8 bytes BE)
/// and the 32-byte head. RS256 (PKCS#1 v1.5, SHA-256) signs these bytes.
pub fn checkpoint_message(up_to_position: i64, chain_head: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(CHECKPOINT_TAG.len() + 8 + chain_head.len());
    out.extend_from_slice(CHECKPOINT_TAG);
    out.extend_from_slice(&up_to_position.to_be_bytes());
    out.extend_from_slice(chain_head);
    out
}

/// Parses a lowercase hex head as stored in `CheckpointSigned.chain_head`.
pub fn parse_head(hex_head: &str) -> Option<[u8; HEAD_LEN]> {
    let bytes = hex::decode(hex_head).ok()?;
    if hex::encode(&bytes) != hex_head {
        return None; // only the canonical lowercase form is accepted
    }
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn empty_log_has_the_genesis_head() {
        assert_eq!(RunningHash::new().head(), GENESIS_HEAD);
    }

    #[test]
    fn out_of_order_feeds_are_refused() {
        let mut h = RunningHash::new();
        assert!(h.push(2, &[1; 32]));
        let before = h;
        assert!(!h.push(2, &[1; 32]));
        assert!(!h.push(1, &[1; 32]));
        assert_eq!(h, before);
    }

    #[test]
    fn message_is_domain_separated() {
        let m = checkpoint_message(7, &[9; 32]);
        assert!(m.starts_with(b"license-ledger/checkpoint/v1\n"));
        assert_ne!(m, checkpoint_message(8, &[9; 32]));
        assert_eq!(parse_head(&hex::encode([9u8; 32])), Some([9; 32]));
        assert_eq!(parse_head(&hex::encode([0xabu8; 32]).to_uppercase()), None);
    }

    proptest! {
        /// Dropping, changing or moving any one event changes the head.
        #[test]
        fn any_change_moves_the_head(
            hashes in proptest::collection::vec(any::<[u8; 32]>(), 1..20),
            pick in any::<prop::sample::Index>(),
            byte in 0usize..32,
        ) {
            let fold = |items: &[(i64, [u8; 32])]| {
                let mut h = RunningHash::new();
                for (p, e) in items { h.push(*p, e); }
                h.head()
            };
            let items: Vec<(i64, [u8; 32])> = hashes.iter().enumerate().map(|(i, h)| (i as i64 + 1, *h)).collect();
            let i = pick.index(items.len());
            let reference = fold(&items);
            let mut edited = items.clone();
            edited[i].1[byte] ^= 1;
            prop_assert_ne!(fold(&edited), reference);
            let mut dropped = items.clone();
            dropped.remove(i);
            prop_assert_ne!(fold(&dropped), reference);
            let mut moved = items.clone();
            moved[i].0 += 1000;
            prop_assert_ne!(fold(&moved), reference);
        }
    }
}
