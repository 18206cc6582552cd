//! `ledger export`: events as JSON lines, with what an offline check needs.
//!
//! Format (`license-ledger-export/v2`), one compact JSON object per line:
//!
//! 1. `{"kind":"header", start_position, end_position, start_head, events, checkpoints}`
//!    — `start_head` is the running hash just before `start_position`
//!    (untrusted: a wrong value makes every checkpoint check fail);
//! 2. `{"kind":"event", ...}` with the fields of the published envelope
//!    ([`events::envelope::Envelope`]: event_id, type, schema_version, stream,
//!    stream_version, position, recorded_at, data, metadata, prev_hash, hash)
//!    for every position in `start_position..=end_position`, in order;
//! 3. `{"kind":"checkpoint", ...}` — the `CheckpointSigned` events recorded
//!    after the range that cover it (same fields).
//!
//! v1 (before the envelope was shared) named two fields `stream_id` and
//! `event_type` and left the position off checkpoint lines.
//!
//! The range is widened to end at the first signed checkpoint that covers
//! `--to`, so that the whole export is provable offline. Every line is in
//! canonical form (re-serializing it gives the same bytes), which the
//! offline verifier insists on.

use crate::checkpoints::Status;
use crate::verify::load_claims;
use chrono::{DateTime, Utc};
use events::audit::{parse_head, RunningHash, CHECKPOINT_STREAM};
use events::envelope::Envelope;
use events::store::EventStore;
use futures::TryStreamExt as _;
use serde::{Deserialize, Serialize};
use std::io::Write;

/// The format tag of the header.
pub const FORMAT: &str = "license-ledger-export/v2";

/// One line of an export.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Line {
    /// The first line.
    Header(Header),
    /// An event of the range.
    Event(Envelope),
    /// A covering checkpoint recorded after the range.
    Checkpoint(Envelope),
}

/// The export's header.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Header {
    /// [`FORMAT`].
    pub format: String,
    /// Position of the first event line (0 when none).
    pub start_position: i64,
    /// Position of the last event line (0 when none).
    pub end_position: i64,
    /// Hex running head before `start_position`.
    pub start_head: String,
    /// Number of event lines.
    pub events: u64,
    /// Number of checkpoint lines.
    pub checkpoints: u64,
}

/// An event with its hashes: the one wire envelope of `events`.
pub type Record = Envelope;

/// What an export wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportSummary {
    /// First position exported.
    pub start_position: i64,
    /// Last position exported.
    pub end_position: i64,
    /// Event lines.
    pub events: u64,
    /// Checkpoint lines.
    pub checkpoints: u64,
    /// Highest position a signed checkpoint in the export covers.
    pub covered_up_to: Option<i64>,
}

fn write_line(out: &mut dyn Write, line: &Line) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, line)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Writes the events recorded in `[from, to]` (widened to a checkpoint) to `out`.
pub async fn export(
    store: &EventStore,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    out: &mut dyn Write,
) -> anyhow::Result<ExportSummary> {
    let (start, mut end) = store.position_range(from, to).await?.unwrap_or((0, -1));
    let claims: Vec<_> = load_claims(store)
        .await?
        .into_iter()
        .filter(|c| c.status != Status::Malformed)
        .map(|c| c.claim)
        .collect();
    let covering = claims
        .iter()
        .filter(|c| c.up_to_position >= end && end >= start)
        .min_by_key(|c| c.up_to_position);
    if let Some(c) = covering {
        end = c.up_to_position;
    }
    let trailer: Vec<_> = claims
        .iter()
        .filter(|c| {
            c.position.is_some_and(|p| p > end) && (start..=end).contains(&c.up_to_position)
        })
        .collect();

    // The running head before `start`, resumed from the last checkpoint below it.
    let base = claims
        .iter()
        .filter(|c| c.up_to_position < start)
        .max_by_key(|c| c.up_to_position);
    let mut hash = match base.and_then(|c| {
        Some(RunningHash::resume(
            parse_head(&c.chain_head)?,
            c.up_to_position,
        ))
    }) {
        Some(h) => h,
        None => RunningHash::new(),
    };
    {
        let mut rows = std::pin::pin!(store.chain_hashes(hash.position(), Some(start)));
        while let Some((position, h)) = rows.try_next().await? {
            hash.push(position, &h);
        }
    }
    let count = store.count_between(start, end).await?;
    let header = Header {
        format: FORMAT.to_owned(),
        start_position: if count > 0 { start } else { 0 },
        end_position: if count > 0 { end } else { 0 },
        start_head: hex::encode(hash.head()),
        events: count as u64,
        checkpoints: trailer.len() as u64,
    };
    write_line(out, &Line::Header(header))?;
    let mut after = start - 1;
    let mut written = 0u64;
    while after < end {
        let batch = store.read_all(after, 5_000).await?;
        if batch.is_empty() {
            break;
        }
        for e in batch.iter().take_while(|e| e.position <= end) {
            write_line(out, &Line::Event(Envelope::from(e)))?;
            written += 1;
        }
        after = batch.last().map_or(end, |e| e.position);
    }
    anyhow::ensure!(
        written == count as u64,
        "the log changed during the export ({written} events read, {count} counted)"
    );
    for claim in &trailer {
        let events = store
            .read_stream(CHECKPOINT_STREAM, claim.stream_version, 1)
            .await?;
        let e = events
            .first()
            .ok_or_else(|| anyhow::anyhow!("checkpoint event vanished during the export"))?;
        write_line(out, &Line::Checkpoint(Envelope::from(e)))?;
    }
    out.flush()?;
    Ok(ExportSummary {
        start_position: start,
        end_position: end,
        events: written,
        checkpoints: trailer.len() as u64,
        covered_up_to: covering.map(|c| c.up_to_position),
    })
}
