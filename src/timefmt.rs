//! Times on the command line and in output: Unix seconds or RFC 3339, always UTC on output.
//! (Proleptic Gregorian calendar arithmetic after H. Hinnant's `chrono`-compatible algorithms;
//! a date crate would be a dependency for two functions.)

/// Occurs when a time argument is neither Unix seconds nor RFC 3339 (nor, on the command line,
/// `now` or `-<duration>`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "invalid time {input:?}: expected unix seconds (1700000000.5) or rfc 3339 (2026-11-22T10:00:00Z){}",
    if *relative { ", or now, -1h, -2d" } else { "" }
)]
pub struct TimeError {
    pub input: String,
    /// whether relative forms were accepted too (the message lists them)
    pub relative: bool,
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31).
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month 1-12, day 1-31) to days since 1970-01-01.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses Unix seconds (`1700000000`, `1700000000.25`) or RFC 3339
/// (`2026-11-22T10:00:00Z`, `2026-11-22T10:00:00.5+01:00`) into milliseconds since the epoch.
pub fn parse_time(s: &str) -> Result<i64, TimeError> {
    let err = || TimeError {
        input: s.to_string(),
        relative: false,
    };
    if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() {
            return Err(err());
        }
        return Ok((secs * 1000.0).round() as i64);
    }
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return Err(err());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, TimeError> {
        let part = s.get(r).ok_or_else(err)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return Err(err());
        }
        part.parse().map_err(|_| err())
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[13] != b':' || b[16] != b':' {
        return Err(err());
    }
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return Err(err());
    }
    let mut i = 19;
    let mut ms = 0i64;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let frac = &s[start..i];
        if frac.is_empty() {
            return Err(err());
        }
        let padded: String = frac.chars().chain(std::iter::repeat('0')).take(3).collect();
        ms = padded.parse().map_err(|_| err())?;
    }
    let offset_min = match &s[i..] {
        "Z" | "z" => 0,
        rest if rest.len() == 6
            && matches!(rest.as_bytes()[0], b'+' | b'-')
            && rest.as_bytes()[3] == b':' =>
        {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            let sign = if rest.as_bytes()[0] == b'-' { -1 } else { 1 };
            sign * (oh * 60 + om)
        }
        _ => return Err(err()),
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    Ok(secs * 1000 + ms)
}

/// [`parse_time`], plus times relative to `now` (ms): `now`, and `-1d`, `-90m` (a Prometheus
/// duration before `now`). A negative number without a unit stays Unix seconds.
pub fn parse_time_at(s: &str, now: i64) -> Result<i64, TimeError> {
    if s == "now" {
        return Ok(now);
    }
    if let Some(d) = s.strip_prefix('-')
        && d.ends_with(|c: char| c.is_ascii_alphabetic())
    {
        return crate::duration::PromDuration::parse(d)
            .map(|d| now - d.as_millis())
            .map_err(|_| TimeError {
                input: s.to_string(),
                relative: true,
            });
    }
    parse_time(s).map_err(|e| TimeError {
        relative: true,
        ..e
    })
}

/// Milliseconds since the epoch as RFC 3339 in UTC, with milliseconds when there are any.
pub fn format_rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let base = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    );
    if frac == 0 {
        format!("{base}Z")
    } else {
        format!("{base}.{frac:03}Z")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_seconds_and_rfc3339_agree() {
        assert_eq!(parse_time("0").unwrap(), 0);
        assert_eq!(parse_time("1700000000.25").unwrap(), 1_700_000_000_250);
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_time("2023-11-14T23:13:20.5+01:00").unwrap(),
            1_700_000_000_500
        );
        assert_eq!(parse_time("1969-12-31T23:59:59Z").unwrap(), -1000);
        assert_eq!(format_rfc3339(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(
            format_rfc3339(1_700_000_000_500),
            "2023-11-14T22:13:20.500Z"
        );
        assert_eq!(format_rfc3339(-1000), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn relative_times_count_back_from_now() {
        let now = 1_700_000_000_000;
        assert_eq!(parse_time_at("now", now).unwrap(), now);
        assert_eq!(parse_time_at("-1d", now).unwrap(), now - 86_400_000);
        assert_eq!(parse_time_at("-1h30m", now).unwrap(), now - 5_400_000);
        assert_eq!(parse_time_at("-10", now).unwrap(), -10_000);
        assert_eq!(parse_time_at("0", now).unwrap(), 0);
        assert!(parse_time_at("-1x", now).is_err());
        assert!(parse_time_at("-d", now).is_err());
    }

    #[test]
    fn garbage_is_an_error_naming_the_input() {
        for bad in [
            "",
            "yesterday",
            "2023-13-01T00:00:00Z",
            "2023-11-14T22:13:20",
            "NaN",
            "inf",
        ] {
            let e = parse_time(bad).unwrap_err();
            assert_eq!(e.input, bad);
        }
    }

    #[test]
    fn calendar_round_trips_across_leap_years() {
        for days in [-800_000, -1, 0, 59, 60, 365, 11_016, 20_000, 800_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
