//! `--format svg`: concurrent seats over time, with the seat limit drawn on it.
//!
//! One panel per license, stacked. The concurrency is a filled step area
//! (blue); the seat limit is a dashed red step line labelled "seat limit (N)"
//! (element id `seat-limit-<i>`). Plain SVG 1.1, no scripts or fonts needed.

use crate::report::{LicenseReport, Report, Step};
use chrono::{DateTime, Utc};
use std::fmt::Write as _;

/// Width of the image.
pub const WIDTH: u32 = 960;
/// Height of one license's panel.
pub const PANEL: u32 = 320;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
/// Stroke colour of the seat-limit line.
pub const LIMIT_COLOR: &str = "#d00000";
/// Fill colour of the concurrency area.
pub const USAGE_COLOR: &str = "#1f77b4";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Renders the report as an SVG document.
pub fn render(report: &Report) -> String {
    let height = PANEL * report.licenses.len().max(1) as u32;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    for (i, license) in report.licenses.iter().enumerate() {
        panel(&mut out, i, license, report.from, report.to);
    }
    out.push_str("</svg>\n");
    out
}

fn panel(out: &mut String, i: usize, l: &LicenseReport, from: DateTime<Utc>, to: DateTime<Utc>) {
    let y0 = (PANEL as usize * i) as f64;
    let (w, h) = (
        f64::from(WIDTH) - LEFT - RIGHT,
        f64::from(PANEL) - TOP - BOTTOM,
    );
    let max_y = l
        .series
        .iter()
        .map(|s| s.in_use.max(s.seats as usize))
        .max()
        .unwrap_or(1)
        .max(1) as f64
        + 1.0;
    let span = (to - from).num_milliseconds().max(1) as f64;
    let x =
        |t: DateTime<Utc>| LEFT + w * ((t - from).num_milliseconds() as f64 / span).clamp(0.0, 1.0);
    let y = |v: f64| y0 + TOP + h - h * (v / max_y);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="{:.1}" font-size="14">license {} ({}): concurrent seats</text>"#,
        y0 + 22.0,
        esc(&l.license_id),
        esc(&l.product)
    );
    // Axes and horizontal grid with integer labels.
    let step = (max_y / 8.0).ceil().max(1.0);
    let mut v = 0.0;
    while v <= max_y {
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#dddddd"/>"##,
            LEFT + w,
            y(v),
            y(v)
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{v}</text>"#,
            LEFT - 6.0,
            y(v) + 4.0
        );
        v += step;
    }
    for k in 0..=4 {
        let t = from + (to - from) * k / 4;
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x(t),
            y0 + TOP + h + 18.0,
            t.format("%Y-%m-%d %H:%M")
        );
    }
    let _ = writeln!(
        out,
        r##"<path d="M{LEFT},{:.1} V{:.1} H{:.1}" fill="none" stroke="#333333"/>"##,
        y0 + TOP,
        y(0.0),
        LEFT + w
    );
    // Concurrency: filled step area.
    let mut area = format!("M{:.1},{:.1}", x(from), y(0.0));
    let mut limit = String::new();
    let mut last: Option<Step> = None;
    for s in &l.series {
        let sx = x(s.at);
        match last {
            None => {
                area += &format!(" V{:.1}", y(s.in_use as f64));
                limit = format!("M{sx:.1},{:.1}", y(f64::from(s.seats)));
            }
            Some(_) => {
                area += &format!(" H{sx:.1} V{:.1}", y(s.in_use as f64));
                limit += &format!(" H{sx:.1} V{:.1}", y(f64::from(s.seats)));
            }
        }
        last = Some(*s);
    }
    area += &format!(" H{:.1} V{:.1} Z", x(to), y(0.0));
    limit += &format!(" H{:.1}", x(to));
    let _ = writeln!(
        out,
        r#"<path id="usage-{i}" d="{area}" fill="{USAGE_COLOR}" fill-opacity="0.45" stroke="{USAGE_COLOR}"/>"#
    );
    let seats = last.map_or(l.seats, |s| s.seats);
    let _ = writeln!(
        out,
        r#"<path id="seat-limit-{i}" d="{limit}" fill="none" stroke="{LIMIT_COLOR}" stroke-width="2.5" stroke-dasharray="8 4"/>"#
    );
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" fill="{LIMIT_COLOR}">seat limit ({seats})</text>"#,
        LEFT + w + 6.0,
        y(f64::from(seats)) + 4.0
    );
    let peak = l.series.iter().map(|s| s.in_use).max().unwrap_or(0);
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" fill="{USAGE_COLOR}">peak in use: {peak}</text>"#,
        LEFT + w + 6.0,
        y0 + TOP + h
    );
}
