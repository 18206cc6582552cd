//! `ledger verify --file`: checks an export with nothing but the file and a
//! public key.
//!
//! Checks, in order: every line is canonical JSON of the export format (so
//! no byte can change without changing a value); the header matches the
//! lines; each event's hash recomputes from its content and `prev_hash`;
//! within each stream, versions are contiguous and `prev_hash` links to the
//! previous event; positions strictly increase; and every signed checkpoint
//! whose range lies inside the export matches the running hash recomputed
//! from `start_head` and verifies with the trusted key.

use crate::checkpoints::{check_checkpoint, CheckpointCheck, Claim, HeadRecorder, Status};
use crate::export::{Header, Line, Record, FORMAT};
use crate::keys::TrustedKeys;
use crate::verify::{render_chains, render_checkpoints, render_verdict};
use events::audit::{parse_head, RunningHash};
use events::store::hash::{Canonical, GENESIS};
use events::store::{Break, BreakKind};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::BufRead as _;
use std::path::Path;

/// The result of an offline check.
#[derive(Debug, Clone, Serialize)]
pub struct OfflineReport {
    /// The header (when it could be read).
    pub header: Option<Header>,
    /// Event lines read.
    pub events: u64,
    /// The first fatal format problem, with its line number.
    pub format_error: Option<String>,
    /// The first break of each broken stream.
    pub chain_breaks: Vec<Break>,
    /// Checkpoints found (event lines and trailer).
    pub checkpoints: Vec<CheckpointCheck>,
    /// Highest position covered by a valid checkpoint.
    pub proven_up_to: Option<i64>,
}

impl OfflineReport {
    /// True when the export verifies.
    pub fn is_ok(&self) -> bool {
        self.format_error.is_none()
            && self.chain_breaks.is_empty()
            && self
                .checkpoints
                .iter()
                .all(|c| c.is_valid() || c.status == Status::NotCovered)
    }

    /// Human-readable report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Some(h) = &self.header {
            let _ = writeln!(
                out,
                "export: {} events, positions {}..={}, {} trailing checkpoint(s)",
                h.events, h.start_position, h.end_position, h.checkpoints
            );
        }
        if let Some(err) = &self.format_error {
            let _ = writeln!(out, "FORMAT ERROR: {err}");
        }
        render_chains(&mut out, &self.chain_breaks);
        render_checkpoints(&mut out, &self.checkpoints, &[]);
        let end = self.header.as_ref().map_or(0, |h| h.end_position);
        render_verdict(&mut out, self.is_ok(), self.proven_up_to, end, "export");
        out
    }
}

/// Per-stream link state: next version and last hash.
struct Link {
    next_version: i64,
    last_hash: Vec<u8>,
}

/// Chain state of the export's streams.
#[derive(Default)]
struct Chains {
    streams: HashMap<String, Link>,
    breaks: Vec<Break>,
    broken: std::collections::HashSet<String>,
}

impl Chains {
    fn check(&mut self, r: &Record, prev_hash: &[u8], hash: &[u8]) {
        let canonical = Canonical {
            event_id: r.event_id,
            stream_id: &r.stream,
            stream_version: r.stream_version,
            event_type: &r.event_type,
            schema_version: r.schema_version,
            data: &r.data,
            metadata: &r.metadata,
            recorded_at: r.recorded_at,
        };
        let kind = match self.streams.get(&r.stream) {
            Some(link) if r.stream_version != link.next_version => Some(BreakKind::VersionGap {
                expected: link.next_version,
            }),
            Some(link) if prev_hash != link.last_hash.as_slice() => {
                Some(BreakKind::PrevHashMismatch)
            }
            None if r.stream_version == 0 && prev_hash != GENESIS => {
                Some(BreakKind::PrevHashMismatch)
            }
            _ if canonical.chain_hash(prev_hash).as_slice() != hash => {
                Some(BreakKind::HashMismatch)
            }
            _ => None,
        };
        self.streams.insert(
            r.stream.clone(),
            Link {
                next_version: r.stream_version + 1,
                last_hash: hash.to_vec(),
            },
        );
        if let Some(kind) = kind {
            if self.broken.insert(r.stream.clone()) {
                self.breaks.push(Break {
                    stream: r.stream.clone(),
                    version: r.stream_version,
                    position: r.position,
                    kind,
                });
            }
        }
    }
}

/// Decodes lowercase hex of a 32-byte hash.
fn hash32(s: &str) -> Option<Vec<u8>> {
    parse_head(s).map(|h| h.to_vec())
}

/// Verifies an export file.
pub fn verify_file(path: &Path, keys: &TrustedKeys) -> anyhow::Result<OfflineReport> {
    let file = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("cannot open export {}: {e}", path.display()))?;
    let mut report = OfflineReport {
        header: None,
        events: 0,
        format_error: None,
        chain_breaks: vec![],
        checkpoints: vec![],
        proven_up_to: None,
    };
    let mut chains = Chains::default();
    let mut folded: Vec<(i64, Vec<u8>)> = Vec::new();
    let mut trailer = 0u64;
    let mut reader = std::io::BufReader::new(file);
    let mut buf = Vec::new();
    let mut n = 0usize;
    let fail = |report: &mut OfflineReport, msg: String| {
        report.format_error = Some(msg);
    };
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        n += 1;
        let Some(body) = buf.strip_suffix(b"\n") else {
            fail(
                &mut report,
                format!("line {n}: does not end with a newline"),
            );
            break;
        };
        let line: Line = match serde_json::from_slice(body) {
            Ok(line) => line,
            Err(e) => {
                fail(
                    &mut report,
                    format!("line {n}: not a valid export line: {e}"),
                );
                break;
            }
        };
        if serde_json::to_vec(&line)? != body {
            fail(
                &mut report,
                format!("line {n}: not in canonical form (edited)"),
            );
            break;
        }
        match (n, line) {
            (1, Line::Header(h)) if h.format == FORMAT && hash32(&h.start_head).is_some() => {
                report.header = Some(h)
            }
            (1, _) => {
                fail(&mut report, format!("line 1: not a {FORMAT} header"));
                break;
            }
            (_, Line::Header(_)) => {
                fail(&mut report, format!("line {n}: a second header"));
                break;
            }
            (_, Line::Event(r)) => {
                let position = r.position;
                let (Some(prev), Some(hash), 0) = (hash32(&r.prev_hash), hash32(&r.hash), trailer)
                else {
                    fail(
                        &mut report,
                        format!("line {n}: event with a malformed hash, or after the checkpoints"),
                    );
                    break;
                };
                if folded.last().is_some_and(|(p, _)| *p >= position) {
                    fail(
                        &mut report,
                        format!("line {n}: position {position} is not above the previous line's"),
                    );
                    break;
                }
                chains.check(&r, &prev, &hash);
                if let Some(claim) = Claim::from_envelope(Some(position), &r) {
                    report.checkpoints.push(CheckpointCheck {
                        claim,
                        status: Status::NotCovered,
                    });
                }
                folded.push((position, hash));
                report.events += 1;
            }
            (_, Line::Checkpoint(r)) => {
                let claim = Claim::from_envelope(None, &r);
                let (Some(prev), Some(hash), Some(claim)) =
                    (hash32(&r.prev_hash), hash32(&r.hash), claim)
                else {
                    fail(&mut report, format!("line {n}: malformed checkpoint line"));
                    break;
                };
                chains.check(&r, &prev, &hash);
                report.checkpoints.push(CheckpointCheck {
                    claim,
                    status: Status::NotCovered,
                });
                trailer += 1;
            }
        }
    }
    report.chain_breaks = chains.breaks;
    let Some(header) = report.header.clone() else {
        report
            .format_error
            .get_or_insert_with(|| "empty file: no header".into());
        return Ok(report);
    };
    if report.format_error.is_none() {
        let first = folded.first().map_or(0, |(p, _)| *p);
        let last = folded.last().map_or(0, |(p, _)| *p);
        if (first, last, report.events, trailer)
            != (
                header.start_position,
                header.end_position,
                header.events,
                header.checkpoints,
            )
        {
            report.format_error = Some(
                "the header does not match the lines (events added, removed or renumbered)".into(),
            );
        }
    }
    let start_head = parse_head(&header.start_head).unwrap_or_default();
    let wanted = report
        .checkpoints
        .iter()
        .map(|c| c.claim.up_to_position)
        .collect();
    let mut heads = HeadRecorder::new(
        RunningHash::resume(start_head, header.start_position - 1),
        wanted,
    );
    for (position, hash) in &folded {
        heads.push(*position, hash);
    }
    heads.finish();
    for check in &mut report.checkpoints {
        let up_to = check.claim.up_to_position;
        check.status =
            if up_to < header.start_position || up_to > header.end_position || report.events == 0 {
                Status::NotCovered
            } else {
                check_checkpoint(&check.claim, &heads, keys)
            };
    }
    report.proven_up_to = report
        .checkpoints
        .iter()
        .filter(|c| c.is_valid())
        .map(|c| c.claim.up_to_position)
        .max();
    Ok(report)
}
