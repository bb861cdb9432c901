//! Go's `time.Duration` and `time.Time` as templates see them (`toDuration`, `toTime`, `now`):
//! their `String` forms, their methods, and `Time.Format` with Go's reference layout
//! (`Mon Jan 2 15:04:05 MST 2006`). Times are always UTC, as tocsin renders every time.
//! Pure functions: no clock (`now` is the evaluation time, given).

use crate::timefmt::civil_from_days;

/// Nanoseconds a float of seconds is, as Go's `time.Duration(v * float64(time.Second))`, saturated
/// at the type's range (and 0 for NaN) instead of Go's undefined conversion.
pub(super) fn seconds_to_nanos(v: f64) -> i64 {
    if v.is_nan() {
        return 0;
    }
    let ns = v * 1e9;
    if ns >= i64::MAX as f64 {
        i64::MAX
    } else if ns <= i64::MIN as f64 {
        i64::MIN
    } else {
        ns as i64
    }
}

/// Go's `Duration.String`: `72h3m0.5s`, `1.5µs`, `0s`.
pub(super) fn duration_string(d: i64) -> String {
    if d == 0 {
        return "0s".into();
    }
    let neg = d < 0;
    let u = d.unsigned_abs();
    let mut out = String::new();
    if u < 1_000_000_000 {
        // below a second: the largest unit that keeps a leading digit, with a fraction
        let (unit, div) = if u < 1_000 {
            ("ns", 1)
        } else if u < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        out.push_str(&fraction(u, div));
        out.push_str(unit);
    } else {
        let secs = u / 1_000_000_000;
        let ns = u % 1_000_000_000;
        let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
        if h > 0 {
            out.push_str(&format!("{h}h"));
        }
        if h > 0 || m > 0 {
            out.push_str(&format!("{m}m"));
        }
        out.push_str(&fraction(s * 1_000_000_000 + ns, 1_000_000_000));
        out.push('s');
    }
    if neg { format!("-{out}") } else { out }
}

/// `v / div` with the remainder's significant decimals (none when it is 0).
fn fraction(v: u64, div: u64) -> String {
    let (int, rem) = (v / div, v % div);
    if rem == 0 {
        return int.to_string();
    }
    let width = div.ilog10() as usize;
    let digits = format!("{rem:0width$}");
    format!("{int}.{}", digits.trim_end_matches('0'))
}

/// A time's calendar fields in UTC.
struct Civil {
    year: i64,
    month: i64,
    day: i64,
    yday: i64,
    weekday: usize,
    hour: i64,
    minute: i64,
    second: i64,
    nanos: i64,
}

fn civil(ns: i64) -> Civil {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let jan1 = crate::timefmt::days_from_civil(year, 1, 1);
    Civil {
        year,
        month,
        day,
        yday: days - jan1 + 1,
        // 1970-01-01 was a Thursday
        weekday: (days + 4).rem_euclid(7) as usize,
        hour: sod / 3600,
        minute: (sod / 60) % 60,
        second: sod % 60,
        nanos,
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Go's `Time.String` in UTC: `2015-06-23 13:19:44.128 +0000 UTC`.
pub(super) fn time_string(ns: i64) -> String {
    format(ns, "2006-01-02 15:04:05.999999999 -0700 MST")
}

/// Go's `Time.Format` in UTC. Layout elements Go knows are replaced; everything else is copied.
pub(super) fn format(ns: i64, layout: &str) -> String {
    let c = civil(ns);
    let b = layout.as_bytes();
    let mut out = String::with_capacity(layout.len() + 8);
    let mut i = 0;
    let rest = |i: usize| &layout[i..];
    while i < b.len() {
        let r = rest(i);
        // (element, its length in the layout)
        let (text, len): (String, usize) = if r.starts_with("January") {
            (MONTHS[(c.month - 1) as usize].into(), 7)
        } else if r.starts_with("Jan") {
            (MONTHS[(c.month - 1) as usize][..3].into(), 3)
        } else if r.starts_with("Monday") {
            (DAYS[c.weekday].into(), 6)
        } else if r.starts_with("Mon") {
            (DAYS[c.weekday][..3].into(), 3)
        } else if r.starts_with("MST") {
            ("UTC".into(), 3)
        } else if r.starts_with("2006") {
            (format!("{:04}", c.year), 4)
        } else if r.starts_with("002") {
            (format!("{:03}", c.yday), 3)
        } else if r.starts_with("01") {
            (format!("{:02}", c.month), 2)
        } else if r.starts_with("02") {
            (format!("{:02}", c.day), 2)
        } else if r.starts_with("03") {
            (format!("{:02}", hour12(c.hour)), 2)
        } else if r.starts_with("04") {
            (format!("{:02}", c.minute), 2)
        } else if r.starts_with("05") {
            (format!("{:02}", c.second), 2)
        } else if r.starts_with("06") {
            (format!("{:02}", c.year.rem_euclid(100)), 2)
        } else if r.starts_with("15") {
            (format!("{:02}", c.hour), 2)
        } else if r.starts_with("__2") {
            (format!("{:>3}", c.yday), 3)
        } else if r.starts_with("_2") {
            (format!("{:>2}", c.day), 2)
        } else if r.starts_with('1') {
            (c.month.to_string(), 1)
        } else if r.starts_with('2') {
            (c.day.to_string(), 1)
        } else if r.starts_with('3') {
            (hour12(c.hour).to_string(), 1)
        } else if r.starts_with('4') {
            (c.minute.to_string(), 1)
        } else if r.starts_with('5') {
            (c.second.to_string(), 1)
        } else if r.starts_with("PM") {
            (if c.hour >= 12 { "PM" } else { "AM" }.into(), 2)
        } else if r.starts_with("pm") {
            (if c.hour >= 12 { "pm" } else { "am" }.into(), 2)
        } else if let Some(z) = zone(r) {
            z
        } else if let Some(n) = fraction_len(r) {
            let digits = format!("{:09}", c.nanos);
            let fill = r.as_bytes()[1];
            let mut d = digits[..(n - 1).min(9)].to_string();
            if fill == b'9' {
                d = d.trim_end_matches('0').to_string();
                if d.is_empty() {
                    i += n;
                    continue;
                }
            }
            (format!("{}{d}", &r[..1]), n)
        } else {
            let ch = r.chars().next().expect("not at the end");
            (ch.to_string(), ch.len_utf8())
        };
        out.push_str(&text);
        i += len;
    }
    out
}

fn hour12(h: i64) -> i64 {
    match h % 12 {
        0 => 12,
        x => x,
    }
}

/// A zone element at the start of `r`, as UTC writes it.
fn zone(r: &str) -> Option<(String, usize)> {
    const ZONES: [(&str, &str, &str); 5] = [
        ("-070000", "+000000", "Z"),
        ("-07:00:00", "+00:00:00", "Z"),
        ("-0700", "+0000", "Z"),
        ("-07:00", "+00:00", "Z"),
        ("-07", "+00", "Z"),
    ];
    for (layout, numeric, _) in ZONES {
        if r.starts_with(layout) {
            return Some((numeric.into(), layout.len()));
        }
        let z = format!("Z{}", &layout[1..]);
        if r.starts_with(&z) {
            return Some(("Z".into(), z.len()));
        }
    }
    None
}

/// The length of a fractional-second element (`.000`, `,999`) at the start of `r`: a separator
/// and a run of one of `0` or `9` not followed by another digit.
fn fraction_len(r: &str) -> Option<usize> {
    let b = r.as_bytes();
    if b.len() < 2 || !(b[0] == b'.' || b[0] == b',') || !(b[1] == b'0' || b[1] == b'9') {
        return None;
    }
    let fill = b[1];
    let mut j = 1;
    while j < b.len() && b[j] == fill {
        j += 1;
    }
    if j < b.len() && b[j].is_ascii_digit() {
        return None;
    }
    Some(j)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go_prints_them() {
        assert_eq!(duration_string(seconds_to_nanos(1800.0)), "30m0s");
        assert_eq!(duration_string(0), "0s");
        assert_eq!(
            duration_string(seconds_to_nanos(72.0 * 3600.0 + 180.5)),
            "72h3m0.5s"
        );
        assert_eq!(duration_string(1_500), "1.5µs");
        assert_eq!(duration_string(2_000_000), "2ms");
        assert_eq!(duration_string(-seconds_to_nanos(90.0)), "-1m30s");
        assert_eq!(duration_string(i64::MIN), "-2562047h47m16.854775808s");
        assert_eq!(seconds_to_nanos(f64::INFINITY), i64::MAX);
        assert_eq!(seconds_to_nanos(f64::NAN), 0);
    }

    #[test]
    fn times_format_with_gos_reference_layout() {
        // Prometheus's template tests: 1353755652 s is Sat Nov 24 11:14:12 2012 UTC
        let t = 1_353_755_652 * 1_000_000_000;
        assert_eq!(
            format(t, "Mon Jan 2 15:04:05 2006"),
            "Sat Nov 24 11:14:12 2012"
        );
        let t2 = 1_435_065_584_128 * 1_000_000;
        assert_eq!(format(t2, "2006"), "2015");
        assert_eq!(time_string(t2), "2015-06-23 13:19:44.128 +0000 UTC");
        assert_eq!(
            format(t2, "Monday, 02-Jan-06 03:04:05.000 PM Z07:00 (__2)"),
            "Tuesday, 23-Jun-15 01:19:44.128 PM Z (174)"
        );
        assert_eq!(
            format(t2, "2006-01-02T15:04:05.999Z07:00"),
            "2015-06-23T13:19:44.128Z"
        );
        assert_eq!(format(0, ".999 .000 January _2"), " .000 January  1");
        // text that is no element is copied, multibyte included
        assert_eq!(format(0, "année: 2006 ✓"), "année: 1970 ✓");
    }
}
