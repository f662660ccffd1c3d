//! Dates on the wire: RFC 3339 UTC timestamps (records, batch answers) and IMF-fixdates
//! (`Retry-After`), to and from Unix milliseconds. One civil-calendar conversion each way.

/// `2024-01-15T10:30:00.123Z`.
pub fn iso_time(ms: u64) -> String {
    let (secs, millis) = (ms / 1000, ms % 1000);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    let (y, mo, d) = civil_from_days(days);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}.{millis:03}Z")
}

/// Parses an RFC 3339 UTC timestamp (`2024-01-15T10:30:00.123Z`, or `+00:00`; fractions beyond
/// milliseconds are cut) to Unix milliseconds.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u64>().ok();
    let (y, mo, d) = (num(0..4)? as i64, num(5..7)? as u32, num(8..10)? as u32);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut ms = 0;
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        rest = &frac[digits..];
        ms = frac.bytes().take(digits.min(3)).fold(0, |n, c| n * 10 + u64::from(c - b'0'));
        ms *= [1, 100, 10, 1][digits.min(3)];
    }
    if rest != "Z" && rest != "+00:00" {
        return None;
    }
    Some(unix_ms(y, mo, d, (h, mi, sec))? + ms)
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) to Unix milliseconds.
pub fn parse_http_date(s: &str) -> Option<u64> {
    let rest = s.split_once(',')?.1.strip_prefix(' ')?;
    let mut parts = rest.split(' ');
    let day: u32 = parts.next()?.parse().ok()?;
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = parts.next().and_then(|m| MONTHS.iter().position(|n| *n == m))? as u32 + 1;
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':');
    let mut field = || hms.next()?.parse::<u64>().ok();
    let (h, m, sec) = (field()?, field()?, field()?);
    if parts.next()? != "GMT" {
        return None;
    }
    unix_ms(year, month, day, (h, m, sec))
}

/// A UTC date and time of day to Unix milliseconds; `None` out of range or before 1970.
fn unix_ms(y: i64, mo: u32, d: u32, (h, m, s): (u64, u64, u64)) -> Option<u64> {
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let days = u64::try_from(days_from_civil(y, mo, d)).ok()?;
    Some((days * 86_400 + h * 3_600 + m * 60 + s) * 1_000)
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day since 1970-01-01 (the inverse of `days_from_civil`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(mo <= 2), mo, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_formats_read_the_same_instant_and_iso_time_round_trips() {
        let ms = 784_111_777_000;
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(ms));
        assert_eq!(parse_rfc3339("1994-11-06T08:49:37Z"), Some(ms));
        assert_eq!(parse_rfc3339("1994-11-06T08:49:37.5Z"), Some(ms + 500));
        assert_eq!(parse_rfc3339("1994-11-06T08:49:37.05Z"), Some(ms + 50));
        assert_eq!(parse_rfc3339("1994-11-06T08:49:37.123456+00:00"), Some(ms + 123));
        for ms in [0, 1, 951_782_400_000, 784_111_777_123, 4_102_444_799_999] {
            assert_eq!(parse_rfc3339(&iso_time(ms)), Some(ms), "{}", iso_time(ms));
        }
    }

    #[test]
    fn malformed_or_out_of_range_dates_are_refused() {
        for s in [
            "1994-13-06T08:49:37Z",
            "1994-11-32T08:49:37Z",
            "1994-11-06T24:00:00Z",
            "1994-11-06T08:49:37+02:00",
            "1994-11-06 08:49:37Z",
            "1969-12-31T23:59:59Z",
            "yesterday",
        ] {
            assert_eq!(parse_rfc3339(s), None, "{s}");
        }
        for s in ["Sun, 06 Foo 1994 08:49:37 GMT", "Sun, 06 Nov 1994 08:49:37 UTC", "06 Nov 1994 08:49:37 GMT", ""] {
            assert_eq!(parse_http_date(s), None, "{s}");
        }
    }
}
