//! The log against the checkpoints kept outside the database
//! ([`events::anchor`]), and how fresh the newest proof is.
//!
//! Each external checkpoint is judged like one in the log (recomputed head,
//! signature). Its segment (positions and hash prefixes) is compared with
//! the log in position order, which names the first position that was
//! changed, inserted or deleted since it was signed: what a database writer
//! who re-chained a stream and deleted the checkpoint rows cannot hide.

use crate::checkpoints::{CheckpointCheck, Claim};
use events::anchor::ExternalCheckpoint;
use events::checkpoint::SEGMENT_PREFIX;
use serde::Serialize;
use std::fmt::Write as _;

/// What happened at the first divergent position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DivergenceKind {
    /// The event there is not the one that was signed.
    Changed,
    /// An event sits at a position that held none when signed.
    Inserted,
    /// The event that was signed there is gone.
    Deleted,
}

/// The first position where the log differs from the external checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Divergence {
    /// The position.
    pub position: i64,
    /// What differs there.
    pub kind: DivergenceKind,
    /// The checkpoint (its covered position) whose segment holds it.
    pub checkpoint_up_to: i64,
    /// The stream and version of the event now at that position, if any.
    pub stream: Option<(String, i64)>,
}

/// One external checkpoint and its verdict.
#[derive(Debug, Clone, Serialize)]
pub struct ExternalCheck {
    /// Its file name.
    pub file: String,
    /// Claim and verdict, as for a checkpoint in the log.
    #[serde(flatten)]
    pub check: CheckpointCheck,
    /// Whether the log still holds this checkpoint (same position and head).
    pub in_database: bool,
}

impl ExternalCheck {
    /// Valid, and still in the log.
    pub fn is_ok(&self) -> bool {
        self.check.is_valid() && self.in_database
    }
}

/// The claim an external checkpoint makes.
pub fn claim_of(external: &ExternalCheckpoint) -> Claim {
    Claim {
        position: None,
        stream_version: external.stream_version,
        up_to_position: external.up_to_position,
        chain_head: external.chain_head.clone(),
        key_id: external.key_id.clone(),
        signature: external.signature.clone(),
    }
}

/// Compares the log, fed in position order, with the external segments.
pub struct SegmentComparer {
    /// Every signed (position, hash prefix), in position order.
    expected: Vec<(i64, [u8; SEGMENT_PREFIX], i64)>,
    next: usize,
    /// Covered ranges `(first, last, checkpoint up_to)`, in order.
    ranges: Vec<(i64, i64, i64)>,
    first: Option<Divergence>,
}

impl SegmentComparer {
    /// From the checkpoints' segments (already validated by `read_dir`).
    pub fn new(checkpoints: &[ExternalCheckpoint]) -> Self {
        let mut expected = Vec::new();
        let mut ranges = Vec::new();
        for c in checkpoints {
            ranges.push((c.from_position + 1, c.up_to_position, c.up_to_position));
            for (position, prefix) in c.entries().unwrap_or_default() {
                expected.push((position, prefix, c.up_to_position));
            }
        }
        expected.sort_by_key(|e| e.0);
        ranges.sort_unstable();
        Self {
            expected,
            next: 0,
            ranges,
            first: None,
        }
    }

    fn covering(&self, position: i64) -> Option<i64> {
        let i = self.ranges.partition_point(|r| r.1 < position);
        self.ranges.get(i).filter(|r| r.0 <= position).map(|r| r.2)
    }

    /// The next event of the log.
    pub fn push(&mut self, position: i64, hash: &[u8]) {
        if self.first.is_some() {
            return;
        }
        let divergence = |position, kind, checkpoint_up_to| Divergence {
            position,
            kind,
            checkpoint_up_to,
            stream: None,
        };
        match self.expected.get(self.next).copied() {
            Some((signed, _, up_to)) if signed < position => {
                self.first = Some(divergence(signed, DivergenceKind::Deleted, up_to));
            }
            Some((signed, prefix, up_to)) if signed == position => {
                self.next += 1;
                if hash.get(..SEGMENT_PREFIX) != Some(&prefix[..]) {
                    self.first = Some(divergence(position, DivergenceKind::Changed, up_to));
                }
            }
            _ => {
                if let Some(up_to) = self.covering(position) {
                    self.first = Some(divergence(position, DivergenceKind::Inserted, up_to));
                }
            }
        }
    }

    /// Ends the feed: the first divergence, if any.
    pub fn finish(mut self) -> Option<Divergence> {
        if self.first.is_none() {
            if let Some(&(signed, _, up_to)) = self.expected.get(self.next) {
                self.first = Some(Divergence {
                    position: signed,
                    kind: DivergenceKind::Deleted,
                    checkpoint_up_to: up_to,
                    stream: None,
                });
            }
        }
        self.first
    }
}

/// How long the log's newest events have waited for a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "freshness", rename_all = "snake_case")]
pub enum Freshness {
    /// The log is empty.
    EmptyLog,
    /// Events exist and no valid signed checkpoint covers any of them.
    NoCheckpoint,
    /// The oldest event no checkpoint covers was recorded `lag_secs` ago
    /// (0: every event but the checkpoints' own is covered): within the bound.
    Fresh {
        /// Seconds the oldest uncovered event has waited.
        lag_secs: i64,
    },
    /// An event has waited longer than the bound for a checkpoint.
    Stale {
        /// Seconds the oldest uncovered event has waited.
        lag_secs: i64,
        /// The bound (`--max-checkpoint-lag`).
        bound_secs: i64,
    },
}

impl Freshness {
    /// True unless the proof is missing or stale.
    pub fn is_ok(&self) -> bool {
        matches!(self, Self::EmptyLog | Self::Fresh { .. })
    }

    /// Describes it for people.
    pub fn render(&self, out: &mut String) {
        let _ = match self {
            Self::EmptyLog => writeln!(out, "checkpoint freshness: the log is empty"),
            Self::NoCheckpoint => writeln!(
                out,
                "CHECKPOINTS MISSING: no valid signed checkpoint covers the log (the signer writes one every CHECKPOINT_INTERVAL_SECS while the log moves; were they deleted?)"
            ),
            Self::Fresh { lag_secs: 0 } => writeln!(
                out,
                "checkpoint freshness: every event is covered by a signed checkpoint"
            ),
            Self::Fresh { lag_secs } => writeln!(
                out,
                "checkpoint freshness: the oldest event no checkpoint covers was recorded {lag_secs} s ago"
            ),
            Self::Stale {
                lag_secs,
                bound_secs,
            } => writeln!(
                out,
                "CHECKPOINTS STALE: the oldest event no checkpoint covers was recorded {lag_secs} s ago, more than the bound of {bound_secs} s (--max-checkpoint-lag)"
            ),
        };
    }
}

/// Writes the external section.
pub fn render(out: &mut String, checks: &[ExternalCheck], first: Option<&Divergence>) {
    let valid = checks.iter().filter(|c| c.is_ok()).count();
    let _ = writeln!(
        out,
        "external checkpoints: {} ({valid} valid and present in the log)",
        checks.len()
    );
    for c in checks.iter().filter(|c| !c.is_ok()).take(20) {
        let _ = writeln!(
            out,
            "  {}: covers positions 1..={}: {}{}",
            c.file,
            c.check.claim.up_to_position,
            crate::checkpoints::describe(&c.check.status),
            if c.in_database {
                ""
            } else {
                "; MISSING FROM THE LOG (checkpoint rows deleted)"
            }
        );
    }
    if let Some(d) = first {
        let what = match d.kind {
            DivergenceKind::Changed => "the event there is not the one signed",
            DivergenceKind::Inserted => "an event was inserted where none was signed",
            DivergenceKind::Deleted => "the event signed there is gone",
        };
        let at = d.stream.as_ref().map_or(String::new(), |(s, v)| {
            format!(" (now stream {s} version {v})")
        });
        let _ = writeln!(
            out,
            "FIRST DIVERGENT POSITION: {}{at}: {what} (external checkpoint covering up to {})",
            d.position, d.checkpoint_up_to
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::checkpoint::CheckpointInfo;

    fn external(from: i64, segment: &[(i64, u8)]) -> ExternalCheckpoint {
        ExternalCheckpoint::from_info(&CheckpointInfo {
            up_to_position: segment.last().map_or(from, |e| e.0),
            chain_head: "00".repeat(32),
            key_id: "k".into(),
            position: 0,
            new_events: 0,
            from_position: from,
            stream_version: 0,
            signature: String::new(),
            segment: segment.iter().map(|&(p, b)| (p, [b; 8])).collect(),
        })
    }

    fn first(log: &[(i64, u8)]) -> Option<(i64, DivergenceKind)> {
        let signed = [
            external(0, &[(1, 1), (2, 2), (4, 4)]),
            external(4, &[(5, 5), (6, 6)]),
        ];
        let mut c = SegmentComparer::new(&signed);
        for &(p, b) in log {
            c.push(p, &[b; 32]);
        }
        c.finish().map(|d| (d.position, d.kind))
    }

    #[test]
    fn names_the_first_change_insertion_or_deletion() {
        use DivergenceKind::*;
        let intact = [(1, 1), (2, 2), (4, 4), (5, 5), (6, 6), (7, 7)];
        assert_eq!(
            first(&intact),
            None,
            "events after the last checkpoint are not judged"
        );
        assert_eq!(
            first(&[(1, 1), (2, 9), (4, 4), (5, 5), (6, 6)]),
            Some((2, Changed))
        );
        assert_eq!(
            first(&[(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 6)]),
            Some((3, Inserted))
        );
        assert_eq!(first(&[(1, 1), (2, 2), (5, 5), (6, 6)]), Some((4, Deleted)));
        assert_eq!(
            first(&[(1, 1), (2, 2), (4, 4), (5, 5)]),
            Some((6, Deleted)),
            "cut tail"
        );
        assert_eq!(
            first(&[(1, 1), (2, 2), (4, 4), (5, 8), (6, 9)]),
            Some((5, Changed))
        );
    }
}
