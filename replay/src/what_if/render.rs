//! The renderings of a what-if comparison: the side-by-side table and the
//! two-panel SVG.

use super::WhatIf;
use crate::report::{LicenseReport, Report};
use std::fmt::Write as _;

fn peak(r: &LicenseReport) -> usize {
    r.peak_per_day.iter().map(|d| d.peak).max().unwrap_or(0)
}

fn seat_hours(r: &LicenseReport) -> f64 {
    r.seat_hours.iter().map(|u| u.seat_hours).sum()
}

impl WhatIf {
    /// The side-by-side table.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "what-if {} .. {} under {}",
            crate::time::fmt_time(self.from),
            crate::time::fmt_time(self.to),
            serde_json::to_string(&self.policy).unwrap_or_default()
        );
        for c in &self.licenses {
            let (r, w) = (&c.recorded, &c.what_if);
            let _ = writeln!(
                out,
                "\nlicense {} ({}), {} seats",
                r.license_id, r.product, r.seats
            );
            let _ = writeln!(out, "  {:<28} {:>10} {:>10}", "", "recorded", "what-if");
            let mut row = |name: &str, a: String, b: String| {
                let _ = writeln!(out, "  {name:<28} {a:>10} {b:>10}");
            };
            row(
                "grants",
                r.acquisitions.to_string(),
                w.acquisitions.to_string(),
            );
            row(
                "  on overdraft seats",
                r.overdraft_acquisitions.to_string(),
                w.overdraft_acquisitions.to_string(),
            );
            row(
                "  borrowed",
                r.borrowed_acquisitions.to_string(),
                w.borrowed_acquisitions.to_string(),
            );
            row(
                "queued",
                r.queue.joined.to_string(),
                w.queue.joined.to_string(),
            );
            row(
                "  granted from the queue",
                r.queue.granted.to_string(),
                w.queue.granted.to_string(),
            );
            row(
                "  timed out",
                r.queue.timed_out.to_string(),
                w.queue.timed_out.to_string(),
            );
            row(
                "  cancelled",
                r.queue.cancelled.to_string(),
                w.queue.cancelled.to_string(),
            );
            let wait = |x: &LicenseReport| {
                x.queue
                    .mean_wait_secs
                    .map_or("-".to_owned(), |s| format!("{s:.1}"))
            };
            row("  mean queue wait (s)", wait(r), wait(w));
            let denials = |x: &LicenseReport| x.denials.values().sum::<u64>().to_string();
            row("denials", denials(r), denials(w));
            let reasons: std::collections::BTreeSet<_> =
                r.denials.keys().chain(w.denials.keys()).collect();
            for reason in reasons {
                let n = |x: &LicenseReport| x.denials.get(reason).copied().unwrap_or(0).to_string();
                row(&format!("  {reason}"), n(r), n(w));
            }
            row(
                "peak concurrent seats",
                peak(r).to_string(),
                peak(w).to_string(),
            );
            row(
                "seat-hours",
                format!("{:.2}", seat_hours(r)),
                format!("{:.2}", seat_hours(w)),
            );
            row("releases", r.releases.to_string(), w.releases.to_string());
            row("expiries", r.expiries.to_string(), w.expiries.to_string());
            let _ = writeln!(
                out,
                "  (a seat the log denied and the policy grants is held {} s)",
                c.denied_hold_secs
            );
        }
        out
    }

    /// Two panels per license: recorded, then what-if (the report's SVG).
    pub fn svg(&self) -> String {
        let mut report = Report {
            from: self.from,
            to: self.to,
            licenses: Vec::new(),
        };
        for c in &self.licenses {
            let mut recorded = c.recorded.clone();
            recorded.product = format!("{}, recorded", recorded.product);
            let mut what_if = c.what_if.clone();
            what_if.product = format!("{}, what-if", what_if.product);
            report.licenses.extend([recorded, what_if]);
        }
        crate::svg::render(&report)
    }
}
