//! `ledger verify` against the database: per-stream chains and signed checkpoints.
//!
//! Two streaming passes, memory independent of the log's size: the stream
//! chains (`EventStore::verify_all`, in stream/version order) and the running
//! hash over `(position, hash)` in position order, which is compared with
//! every `CheckpointSigned` event. Nothing is written.

use crate::anchored::{self, Divergence, ExternalCheck, Freshness, SegmentComparer};
use crate::checkpoints::{
    check_checkpoint, describe, CheckpointCheck, Claim, HeadRecorder, Status,
};
use crate::keys::TrustedKeys;
use events::audit::{RunningHash, CHECKPOINT_STREAM};
use events::envelope::Envelope;
use events::store::{Break, EventStore};
use futures::TryStreamExt as _;
use serde::Serialize;
use std::fmt::Write as _;

/// Most position gaps remembered (they locate deletions under a checkpoint).
const MAX_GAPS: usize = 10_000;

/// The default of `--max-checkpoint-lag`: ten checkpoint intervals of the
/// signer's default (`CHECKPOINT_INTERVAL_SECS` = 60).
pub const DEFAULT_MAX_CHECKPOINT_LAG_SECS: u64 = 600;

/// What `ledger verify` checks beyond the log itself.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Checkpoints kept outside the database (`--checkpoint-dir`).
    pub external: Vec<events::anchor::ExternalCheckpoint>,
    /// The newest proven event may be at most this far behind the head.
    pub max_checkpoint_lag: std::time::Duration,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            external: Vec::new(),
            max_checkpoint_lag: std::time::Duration::from_secs(DEFAULT_MAX_CHECKPOINT_LAG_SECS),
        }
    }
}

/// The result of `ledger verify`.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    /// Events in the log.
    pub events: u64,
    /// Streams with events.
    pub streams: u64,
    /// Highest position.
    pub head_position: i64,
    /// The first break of each broken stream, lowest position first.
    pub chain_breaks: Vec<Break>,
    /// Every checkpoint and its verdict, in stream order.
    pub checkpoints: Vec<CheckpointCheck>,
    /// Highest position covered by a valid signed checkpoint.
    pub proven_up_to: Option<i64>,
    /// Missing positions (`first..=last`): deleted events or rolled-back appends.
    pub missing_positions: Vec<(i64, i64)>,
    /// Every external checkpoint and its verdict.
    pub external: Vec<ExternalCheck>,
    /// The first position where the log differs from the external checkpoints.
    pub first_divergence: Option<Divergence>,
    /// How far the newest proof is behind the head.
    pub freshness: Freshness,
}

impl AuditReport {
    /// True when every chain and every checkpoint verifies.
    pub fn is_ok(&self) -> bool {
        self.chain_breaks.is_empty()
            && self.checkpoints.iter().all(CheckpointCheck::is_valid)
            && self.external.iter().all(ExternalCheck::is_ok)
            && self.first_divergence.is_none()
            && self.freshness.is_ok()
    }

    /// Human-readable report (what `ledger verify` prints).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "log: {} events in {} streams, positions up to {}",
            self.events, self.streams, self.head_position
        );
        render_chains(&mut out, &self.chain_breaks);
        render_checkpoints(&mut out, &self.checkpoints, &self.missing_positions);
        if !self.external.is_empty() {
            anchored::render(&mut out, &self.external, self.first_divergence.as_ref());
        }
        self.freshness.render(&mut out);
        render_verdict(
            &mut out,
            self.is_ok(),
            self.proven_up_to,
            self.head_position,
            "log",
        );
        out
    }
}

/// Writes the per-stream chain section.
pub fn render_chains(out: &mut String, breaks: &[Break]) {
    match breaks.first() {
        None => out.push_str("per-stream hash chains: intact\n"),
        Some(first) => {
            let _ = writeln!(
                out,
                "per-stream hash chains: {} broken stream(s)",
                breaks.len()
            );
            let _ = writeln!(out, "FIRST BROKEN LINK: {first}");
            for b in breaks.iter().skip(1).take(20) {
                let _ = writeln!(out, "  also broken: {b}");
            }
        }
    }
}

/// Writes the checkpoint section.
pub fn render_checkpoints(out: &mut String, checks: &[CheckpointCheck], gaps: &[(i64, i64)]) {
    let valid = checks.iter().filter(|c| c.is_valid()).count();
    let _ = writeln!(out, "signed checkpoints: {} ({valid} valid)", checks.len());
    let mut previous_ok = 0;
    for check in checks {
        let c = &check.claim;
        let at = c.position.map_or_else(
            || "after the export".to_owned(),
            |p| format!("position {p}"),
        );
        let _ = writeln!(
            out,
            "  checkpoint v{} at {at}: covers positions 1..={}, key {}: {}",
            c.stream_version,
            c.up_to_position,
            c.key_id,
            describe(&check.status)
        );
        if matches!(
            check.status,
            Status::HeadMismatch { .. } | Status::CoveredEventMissing { .. }
        ) {
            let _ = writeln!(
                out,
                "    the change lies in positions {}..={} (the previous valid checkpoint covers up to {previous_ok})",
                previous_ok + 1,
                c.up_to_position
            );
            let inside: Vec<String> = gaps
                .iter()
                .filter(|(a, b)| *b > previous_ok && *a <= c.up_to_position)
                .take(20)
                .map(|(a, b)| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("{a}..={b}")
                    }
                })
                .collect();
            if !inside.is_empty() {
                let _ = writeln!(
                    out,
                    "    positions missing in that range (deleted, or rolled-back appends): {}",
                    inside.join(", ")
                );
            }
        }
        if check.is_valid() {
            previous_ok = previous_ok.max(c.up_to_position);
        }
    }
}

/// Writes the proven range and the verdict line.
pub fn render_verdict(out: &mut String, ok: bool, proven: Option<i64>, head: i64, what: &str) {
    match proven {
        Some(p) if ok => {
            let _ = writeln!(
                out,
                "proven by a signed checkpoint up to position {p} (of {head})"
            );
            if p < head {
                let _ = writeln!(
                    out,
                    "positions {}..={head} are protected by the per-stream hash chains only (no checkpoint covers them yet)",
                    p + 1
                );
            }
        }
        None if ok => {
            let _ = writeln!(out, "no signed checkpoint: the whole {what} is protected by the per-stream hash chains only");
        }
        _ => {}
    }
    out.push_str(if ok {
        "RESULT: OK\n"
    } else {
        "RESULT: FAILED\n"
    });
}

/// Every `CheckpointSigned` event of stream `checkpoints`, in version order.
pub async fn load_claims(store: &EventStore) -> anyhow::Result<Vec<CheckpointCheck>> {
    let mut out = Vec::new();
    let mut from = 0;
    loop {
        let batch = store.read_stream(CHECKPOINT_STREAM, from, 10_000).await?;
        for e in &batch {
            let claim = Claim::from_envelope(Some(e.position), &Envelope::from(e));
            out.push(match claim {
                Some(claim) => CheckpointCheck {
                    claim,
                    status: Status::NotCovered,
                },
                None => CheckpointCheck {
                    claim: Claim {
                        position: Some(e.position),
                        stream_version: e.stream_version,
                        up_to_position: 0,
                        chain_head: String::new(),
                        key_id: String::new(),
                        signature: String::new(),
                    },
                    status: Status::Malformed,
                },
            });
            from = e.stream_version + 1;
        }
        if batch.len() < 10_000 {
            return Ok(out);
        }
    }
}

/// Verifies the whole log in the database (and against the external
/// checkpoints of `options`).
#[tracing::instrument(skip_all)]
pub async fn verify_db(
    store: &EventStore,
    keys: &TrustedKeys,
    options: &VerifyOptions,
) -> anyhow::Result<AuditReport> {
    let chains = store.verify_all().await?;
    let mut checks = load_claims(store).await?;
    let wanted = checks
        .iter()
        .filter(|c| c.status != Status::Malformed)
        .map(|c| c.claim.up_to_position)
        .chain(options.external.iter().map(|e| e.up_to_position))
        .collect();
    let mut heads = HeadRecorder::new(RunningHash::new(), wanted);
    let mut segments = SegmentComparer::new(&options.external);
    let mut gaps = Vec::new();
    let mut last = 0i64;
    {
        let mut rows = std::pin::pin!(store.chain_hashes(0, None));
        while let Some((position, hash)) = rows.try_next().await? {
            if position > last + 1 && gaps.len() < MAX_GAPS {
                gaps.push((last + 1, position - 1));
            }
            last = position;
            heads.push(position, &hash);
            segments.push(position, &hash);
        }
    }
    heads.finish();
    let judge = |claim: &Claim| match check_checkpoint(claim, &heads, keys) {
        // The whole log is present here: a position beyond it was cut off.
        Status::NotCovered => Status::CoveredEventMissing { last_present: last },
        other => other,
    };
    for check in checks.iter_mut().filter(|c| c.status != Status::Malformed) {
        check.status = judge(&check.claim);
    }
    let external: Vec<ExternalCheck> = options
        .external
        .iter()
        .map(|e| {
            let claim = anchored::claim_of(e);
            let in_database = checks.iter().any(|c| {
                c.claim.up_to_position == claim.up_to_position
                    && c.claim.chain_head == claim.chain_head
            });
            ExternalCheck {
                file: e.file_name(),
                check: CheckpointCheck {
                    status: judge(&claim),
                    claim,
                },
                in_database,
            }
        })
        .collect();
    let mut first_divergence = segments.finish();
    if let Some(d) = &mut first_divergence {
        d.stream = store
            .event_by_position(d.position)
            .await?
            .map(|e| (e.stream_id, e.stream_version));
    }
    let proven_up_to = checks
        .iter()
        .filter(|c| c.is_valid())
        .chain(external.iter().filter(|e| e.is_ok()).map(|e| &e.check))
        .map(|c| c.claim.up_to_position)
        .max();
    let freshness = freshness(store, last, proven_up_to, options.max_checkpoint_lag).await?;
    Ok(AuditReport {
        events: chains.events,
        streams: chains.streams,
        head_position: last,
        chain_breaks: chains.breaks,
        checkpoints: checks,
        proven_up_to,
        missing_positions: gaps,
        external,
        first_divergence,
        freshness,
    })
}

/// How long the oldest event no valid checkpoint covers has waited for one
/// (by the clock: a signer that stopped shows as a growing lag). The
/// checkpoints' own events are not counted: a checkpoint never covers itself.
async fn freshness(
    store: &EventStore,
    head: i64,
    proven_up_to: Option<i64>,
    bound: std::time::Duration,
) -> anyhow::Result<Freshness> {
    if head == 0 {
        return Ok(Freshness::EmptyLog);
    }
    let Some(oldest_uncovered) = store
        .recorded_after(proven_up_to.unwrap_or(0), Some(CHECKPOINT_STREAM))
        .await?
    else {
        return Ok(Freshness::Fresh { lag_secs: 0 });
    };
    if proven_up_to.is_none() {
        return Ok(Freshness::NoCheckpoint);
    }
    let lag_secs = (chrono::Utc::now() - oldest_uncovered).num_seconds().max(0);
    let bound_secs = i64::try_from(bound.as_secs()).unwrap_or(i64::MAX);
    Ok(if lag_secs > bound_secs {
        Freshness::Stale {
            lag_secs,
            bound_secs,
        }
    } else {
        Freshness::Fresh { lag_secs }
    })
}
