//! Text renderings of a usage report: an aligned table and long-format CSV.
//!
//! CSV columns: `license_id,metric,key,value` with metrics
//! `peak_concurrent` (key = day), `seat_limit` (key = day), `seat_hours`
//! (key = user), `sessions` (key = user), `acquisitions`,
//! `overdraft_acquisitions`, `borrowed_acquisitions`, `queue_joined`,
//! `queue_granted`, `queue_timed_out`, `queue_cancelled`,
//! `queue_mean_wait_secs`, `queue_max_wait_secs` (when any was granted),
//! `denials` (key = reason), `releases`, `expiries`.

use crate::report::Report;
use crate::time::fmt_time;
use std::fmt::Write as _;

/// The `--format table` rendering.
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "usage report, window {} .. {} (end exclusive)",
        fmt_time(report.from),
        fmt_time(report.to)
    );
    for l in &report.licenses {
        let _ = writeln!(
            out,
            "\nlicense {} (tenant {}, product {}), seat limit {}",
            l.license_id, l.tenant, l.product, l.seats
        );
        let _ = writeln!(out, "peak concurrent seats per day (UTC):");
        let _ = writeln!(out, "  {:<10}  {:>5}  {:>5}", "day", "peak", "limit");
        for d in &l.peak_per_day {
            let _ = writeln!(out, "  {:<10}  {:>5}  {:>5}", d.day, d.peak, d.seats);
        }
        let _ = writeln!(out, "seat-hours per user:");
        let _ = writeln!(
            out,
            "  {:<24}  {:>10}  {:>8}",
            "user", "seat-hours", "sessions"
        );
        for u in &l.seat_hours {
            let _ = writeln!(
                out,
                "  {:<24}  {:>10.4}  {:>8}",
                u.user, u.seat_hours, u.sessions
            );
        }
        let total: u64 = l.denials.values().sum();
        let reasons: Vec<String> = l.denials.iter().map(|(r, n)| format!("{r}: {n}")).collect();
        let _ = writeln!(
            out,
            "acquisitions: {} ({} on overdraft seats, {} borrowed)",
            l.acquisitions, l.overdraft_acquisitions, l.borrowed_acquisitions
        );
        let q = &l.queue;
        if q.joined + q.granted + q.timed_out + q.cancelled > 0 {
            let waits = match (q.mean_wait_secs, q.max_wait_secs) {
                (Some(mean), Some(max)) => format!("; wait mean {mean:.1} s, max {max:.1} s"),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "queue: {} joined, {} granted, {} timed out, {} cancelled{waits}",
                q.joined, q.granted, q.timed_out, q.cancelled
            );
        }
        let _ = writeln!(
            out,
            "denials: {total}{}",
            if reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", reasons.join(", "))
            }
        );
        let _ = writeln!(
            out,
            "sessions ended: {} released, {} expired",
            l.releases, l.expiries
        );
    }
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// The `--format csv` rendering.
pub fn csv(report: &Report) -> String {
    let mut out = String::from("license_id,metric,key,value\n");
    for l in &report.licenses {
        let id = &l.license_id;
        for d in &l.peak_per_day {
            let _ = writeln!(out, "{id},peak_concurrent,{},{}", d.day, d.peak);
            let _ = writeln!(out, "{id},seat_limit,{},{}", d.day, d.seats);
        }
        for u in &l.seat_hours {
            let _ = writeln!(
                out,
                "{id},seat_hours,{},{:.4}",
                csv_field(&u.user),
                u.seat_hours
            );
            let _ = writeln!(out, "{id},sessions,{},{}", csv_field(&u.user), u.sessions);
        }
        let _ = writeln!(out, "{id},acquisitions,,{}", l.acquisitions);
        let _ = writeln!(
            out,
            "{id},overdraft_acquisitions,,{}",
            l.overdraft_acquisitions
        );
        let q = &l.queue;
        let counts = [
            ("borrowed_acquisitions", l.borrowed_acquisitions),
            ("queue_joined", q.joined),
            ("queue_granted", q.granted),
            ("queue_timed_out", q.timed_out),
            ("queue_cancelled", q.cancelled),
        ];
        for (metric, n) in counts {
            let _ = writeln!(out, "{id},{metric},,{n}");
        }
        for (metric, secs) in [
            ("queue_mean_wait_secs", q.mean_wait_secs),
            ("queue_max_wait_secs", q.max_wait_secs),
        ] {
            if let Some(secs) = secs {
                let _ = writeln!(out, "{id},{metric},,{secs:.3}");
            }
        }
        for (reason, n) in &l.denials {
            let _ = writeln!(out, "{id},denials,{reason},{n}");
        }
        let _ = writeln!(out, "{id},releases,,{}", l.releases);
        let _ = writeln!(out, "{id},expiries,,{}", l.expiries);
    }
    out
}
