//! Parsing the times auditors type: RFC 3339, a plain date, or `now`.

use anyhow::bail;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

/// Parses `2025-03-01T12:00:00Z` (any RFC 3339 offset), `2025-03-01T12:00:00`
/// (UTC), `2025-03-01` (midnight UTC) or `now`.
pub fn parse_time(input: &str) -> anyhow::Result<DateTime<Utc>> {
    let s = input.trim();
    if s.eq_ignore_ascii_case("now") {
        return Ok(Utc::now());
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc());
        }
    }
    bail!("unparseable time {input:?}: use RFC 3339 (2025-03-01T12:00:00Z), a date (2025-03-01) or \"now\"")
}

/// Formats a time for output: RFC 3339, UTC, microseconds.
pub fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_and_rejected_forms() {
        let t = parse_time("2025-03-01T12:00:00Z").unwrap();
        assert_eq!(parse_time("2025-03-01T13:00:00+01:00").unwrap(), t);
        assert_eq!(parse_time("2025-03-01T12:00:00").unwrap(), t);
        assert_eq!(
            fmt_time(parse_time("2025-03-01").unwrap()),
            "2025-03-01T00:00:00.000000Z"
        );
        assert!(parse_time("yesterday")
            .unwrap_err()
            .to_string()
            .contains("unparseable time"));
    }
}
