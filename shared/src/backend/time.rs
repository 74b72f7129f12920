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

/// [`parse_timestamp`] as it was before the fast path: chrono alone. Kept
/// so tests can hold the two to the same answers.
#[cfg(test)]
pub(crate) fn parse_timestamp_reference(text: Option<&str>) -> Parsed<DateTime<Utc>> {
    let Some(raw) = text else {
        return Parsed::Null;
    };
    let s = raw.trim();
    if s.is_empty() {
        return Parsed::Null;
    }
    match parse_with_chrono(s) {
        Some(t) => Parsed::Ok(t),
        None => Parsed::Bad,
    }
}

#[cfg(test)]
pub(crate) fn parse_date_reference(text: Option<&str>) -> Parsed<NaiveDate> {
    match parse_timestamp_reference(text) {
        Parsed::Ok(t) => Parsed::Ok(t.date_naive()),
        Parsed::Null => Parsed::Null,
        Parsed::Bad => Parsed::Bad,
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
    match parse_common(s.as_bytes()) {
        Some(t) => Some(t),
        None => parse_with_chrono(s),
    }
}

fn digits<const N: usize>(b: &[u8], at: usize) -> Option<u32> {
    let mut v = 0u32;
    for &c in b.get(at..at + N)? {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

/// The spellings backends write nearly always ('2026-03-01',
/// '2026-03-01 09:30:00', '2026-03-01T09:30:00.5Z', '... +00', '... +05:30'),
/// read without chrono's format machinery, which cost more than reading the
/// rows. `None` means "not one of these, or out of range": the caller then
/// asks chrono, so what is accepted and what it means stays chrono's call.
/// A leap second, a 16-digit fraction or a 24-hour offset all go that way.
fn parse_common(b: &[u8]) -> Option<DateTime<Utc>> {
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(
        i32::try_from(digits::<4>(b, 0)?).ok()?,
        digits::<2>(b, 5)?,
        digits::<2>(b, 8)?,
    )?;
    if b.len() == 10 {
        return Some(day_start(date));
    }
    if b.len() < 19 || !matches!(b[10], b' ' | b'T') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, m, sec) = (
        digits::<2>(b, 11)?,
        digits::<2>(b, 14)?,
        digits::<2>(b, 17)?,
    );
    if h > 23 || m > 59 || sec > 59 {
        return None;
    }
    let mut at = 19;
    let mut nanos = 0u32;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let first = at;
        while at < b.len() && b[at].is_ascii_digit() {
            if at - first == 9 {
                // Finer than nanoseconds: chrono decides what that means.
                return None;
            }
            nanos = nanos * 10 + u32::from(b[at] - b'0');
            at += 1;
        }
        let n = at - first;
        if n == 0 {
            return None;
        }
        nanos *= 10u32.pow(9 - n as u32);
    }
    let offset_seconds: i64 = match &b[at..] {
        [] | [b'Z'] => 0,
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let (oh, om) = match rest.len() {
                2 => (digits::<2>(rest, 0)?, 0),
                5 if rest[2] == b':' => (digits::<2>(rest, 0)?, digits::<2>(rest, 3)?),
                _ => return None,
            };
            if oh > 23 || om > 59 {
                return None;
            }
            let secs = i64::from(oh * 3600 + om * 60);
            if *sign == b'-' { -secs } else { secs }
        }
        _ => return None,
    };
    let local = date.and_hms_nano_opt(h, m, sec, nanos)?.and_utc();
    local.checked_sub_signed(chrono::TimeDelta::seconds(offset_seconds))
}

/// The parser as it was before [`parse_common`], for every other spelling.
fn parse_with_chrono(s: &str) -> Option<DateTime<Utc>> {
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

    /// The fast path accepts exactly what chrono accepts, with the same
    /// instant, over every combination of the parts backends write and a
    /// deterministic spray of one-character corruptions of them.
    #[test]
    fn fast_path_agrees_with_chrono() {
        let dates = [
            "2026-03-01",
            "0000-01-01",
            "9999-12-31",
            "2024-02-29",
            "2023-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-04-31",
            "2026-4-01",
            "20260301",
            "2026/03/01",
            "+2026-03-01",
        ];
        let seps = ["", " ", "T", "t", "  ", "_"];
        let times = [
            "",
            "09:30:00",
            "23:59:59",
            "00:00:00",
            "24:00:00",
            "23:60:00",
            "23:59:60",
            "09:30",
            "9:30:00",
            "09:30:00.5",
            "09:30:00.123456",
            "09:30:00.123456789",
            "09:30:00.1234567891",
            "09:30:00.",
            "09:30:00,5",
        ];
        let zones = [
            "",
            "Z",
            "z",
            "+00",
            "-00",
            "+00:00",
            "+05:30",
            "-08:00",
            "+0530",
            "+5",
            "+23:59",
            "+24:00",
            "+05:60",
            " +00",
            "UTC",
            "+00:00:00",
            "Zx",
        ];
        let mut corpus: Vec<String> = Vec::new();
        for d in dates {
            for sep in seps {
                for t in times {
                    for z in zones {
                        corpus.push(format!("{d}{sep}{t}{z}"));
                    }
                }
            }
        }
        let base: Vec<String> = corpus.iter().step_by(7).cloned().collect();
        let swaps = [b'0', b'9', b'-', b':', b' ', b'T', b'Z', b'+', b'.', b'a'];
        for (k, s) in base.iter().enumerate() {
            let bytes = s.as_bytes();
            for i in 0..bytes.len() {
                let mut b = bytes.to_vec();
                b[i] = swaps[(i + k) % swaps.len()];
                corpus.push(String::from_utf8(b).unwrap());
                let mut cut = bytes.to_vec();
                cut.remove(i);
                corpus.push(String::from_utf8(cut).unwrap());
            }
        }
        let mut accepted = 0;
        for s in &corpus {
            let want = parse_timestamp_reference(Some(s));
            assert_eq!(parse_timestamp(Some(s)), want, "{s:?}");
            assert_eq!(parse_date(Some(s)), parse_date_reference(Some(s)), "{s:?}");
            accepted += usize::from(matches!(want, Parsed::Ok(_)));
        }
        assert!(accepted > 1000, "{accepted} of {}", corpus.len());
    }
}
