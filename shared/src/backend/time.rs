//! Parsing the backend's date and timestamp text.
//!
//! SQLite stores them as ISO text in more than one spelling; PostgreSQL
//! values are read as text too (the session runs in UTC with ISO output), so
//! one parser serves both databases.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};

/// A timestamp column's value after parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed<T> {
    Null,
    /// Present but not a date or timestamp we recognise; treated as NULL and counted.
    Bad,
    Ok(T),
}

impl<T: Copy> Parsed<T> {
    pub fn ok(self) -> Option<T> {
        match self {
            Parsed::Ok(v) => Some(v),
            _ => None,
        }
    }

    pub fn is_bad(self) -> bool {
        matches!(self, Parsed::Bad)
    }
}

/// Parses '2026-03-01T09:30:00Z', '2026-03-01 09:30:00', '2026-03-01 09:30:00+00',
/// offsets, fractional seconds, or a bare date (midnight UTC).
pub fn parse_timestamp(text: Option<&str>) -> Parsed<DateTime<Utc>> {
    let Some(raw) = text else {
        return Parsed::Null;
    };
    let s = raw.trim();
    if s.is_empty() {
        return Parsed::Null;
    }
    match parse_timestamp_str(s) {
        Some(t) => Parsed::Ok(t),
        None => Parsed::Bad,
    }
}

/// Parses a date column; a full timestamp is accepted and truncated to its UTC day.
pub fn parse_date(text: Option<&str>) -> Parsed<NaiveDate> {
    match parse_timestamp(text) {
        Parsed::Ok(t) => Parsed::Ok(t.date_naive()),
        Parsed::Null => Parsed::Null,
        Parsed::Bad => Parsed::Bad,
    }
}

/// Midnight UTC at the start of `day`: the contract's cut-off instant for a date.
pub fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(NaiveTime::MIN).and_utc()
}

fn parse_timestamp_str(s: &str) -> Option<DateTime<Utc>> {
    if s.len() == 10 {
        return NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().map(day_start);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    // %#z accepts PostgreSQL's hour-only offsets ("+00") as well as "+05:30".
    for fmt in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Some(t.with_timezone(&Utc));
        }
    }
    let naive = s.strip_suffix('Z').unwrap_or(s);
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(naive, fmt) {
            return Some(t.and_utc());
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn parses_the_spellings_backends_use() {
        let want = Utc.with_ymd_and_hms(2026, 3, 1, 9, 30, 0).unwrap();
        for s in [
            "2026-03-01T09:30:00Z",
            "2026-03-01 09:30:00",
            "2026-03-01T09:30:00",
            "2026-03-01 09:30:00+00",
            "2026-03-01 10:30:00+01:00",
            "2026-03-01T09:30:00.000Z",
            "2026-03-01 09:30",
            " 2026-03-01 09:30:00 ",
        ] {
            assert_eq!(parse_timestamp(Some(s)), Parsed::Ok(want), "{s}");
        }
        assert_eq!(
            parse_timestamp(Some("2026-03-01")),
            Parsed::Ok(Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap())
        );
        assert_eq!(parse_timestamp(None), Parsed::Null);
        assert_eq!(parse_timestamp(Some("")), Parsed::Null);
        for bad in ["yesterday", "2026-13-01", "01/03/2026", "1700000000"] {
            assert_eq!(parse_timestamp(Some(bad)), Parsed::Bad, "{bad}");
        }
        assert_eq!(
            parse_date(Some("2026-03-01 23:59:59")),
            Parsed::Ok(NaiveDate::from_ymd_opt(2026, 3, 1).unwrap())
        );
    }
}
