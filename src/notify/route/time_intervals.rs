//! Named time intervals (`time_intervals`): recurring ranges of times of day, weekdays, days of
//! the month, months and years in an IANA time zone, which mute routes or make them active.
//! Nothing here reads the clock: [`TimeIntervals::contains`] takes the instant.

use std::collections::BTreeMap;

use chrono::{Datelike, Timelike};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_saphyr::{Location, Spanned};

use super::{RouteError, RouteErrorKind, RouteErrors, lenient_spanned_strings, lenient_string};

/// A named time interval, as written: the union of its `time_intervals`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TimeIntervalConfig {
    /// The name routes refer to.
    pub name: Spanned<String>,
    /// The instants in the interval: an instant is in it when any of these contains it.
    #[serde(default)]
    pub time_intervals: Vec<TimeIntervalSpec>,
}

/// One recurring time range. Every field that is set must match for an instant to be inside;
/// within a field, any one entry matching is enough; a field left out (or empty) matches always.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TimeIntervalSpec {
    /// Times of day, `start_time` inclusive and `end_time` exclusive, `HH:MM` (`24:00` allowed as
    /// an end), in `location`'s wall-clock time.
    #[serde(default)]
    pub times: Vec<Spanned<TimeOfDayConfig>>,
    /// Days of the week, by English name, alone or as an inclusive range: `monday:friday`,
    /// `saturday`. Weeks start on Sunday, so write the weekend as `[saturday, sunday]`.
    #[serde(default, deserialize_with = "lenient_spanned_strings")]
    pub weekdays: Vec<Spanned<String>>,
    /// Days of the month, alone or as inclusive ranges; negative counts from the end of the
    /// month (`-1` is its last day): `1:5`, `-3:-1`, `15`.
    #[serde(default, deserialize_with = "lenient_spanned_strings")]
    pub days_of_month: Vec<Spanned<String>>,
    /// Months by English name or number 1–12, alone or as inclusive ranges: `january:march`, `12`.
    #[serde(default, deserialize_with = "lenient_spanned_strings")]
    pub months: Vec<Spanned<String>>,
    /// Years, alone or as inclusive ranges: `2025`, `2025:2027`.
    #[serde(default, deserialize_with = "lenient_spanned_strings")]
    pub years: Vec<Spanned<String>>,
    /// The IANA time zone the other fields are read in, e.g. `Europe/Berlin`. Default `UTC`.
    #[serde(default)]
    pub location: Option<Spanned<String>>,
}

/// A time-of-day range, as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TimeOfDayConfig {
    /// Start, inclusive, `HH:MM`.
    #[serde(default, deserialize_with = "lenient_string")]
    pub start_time: String,
    /// End, exclusive, `HH:MM` (`24:00` for the end of the day).
    #[serde(default, deserialize_with = "lenient_string")]
    pub end_time: String,
}

/// Named time intervals, compiled.
#[derive(Debug, Clone, Default)]
pub struct TimeIntervals {
    pub(super) by_name: BTreeMap<String, Vec<TimeInterval>>,
}

/// One recurring time range, compiled (see [`TimeIntervalSpec`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TimeInterval {
    /// [start, end) in minutes of the day
    times: Vec<(u32, u32)>,
    /// inclusive, 0 = Sunday
    weekdays: Vec<(u32, u32)>,
    /// inclusive, negative from the end of the month
    days_of_month: Vec<(i32, i32)>,
    /// inclusive, 1 = January
    months: Vec<(u32, u32)>,
    /// inclusive
    years: Vec<(i32, i32)>,
    location: Tz,
}

impl TimeIntervals {
    /// Validates and compiles named time intervals (paths `time_intervals[i]…`).
    pub fn new(configs: &[TimeIntervalConfig]) -> Result<Self, RouteErrors> {
        let mut errors = Vec::new();
        let t = TimeIntervals::compile(
            configs
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("time_intervals[{i}]"), t)),
            &mut errors,
        );
        if errors.is_empty() {
            Ok(t)
        } else {
            Err(RouteErrors(errors))
        }
    }

    pub(super) fn compile<'a>(
        configs: impl Iterator<Item = (String, &'a TimeIntervalConfig)>,
        errors: &mut Vec<RouteError>,
    ) -> TimeIntervals {
        let mut by_name = BTreeMap::new();
        for (path, cfg) in configs {
            if by_name.contains_key(&cfg.name.value) {
                errors.push(RouteError {
                    path: format!("{path}.name"),
                    at: cfg.name.referenced,
                    kind: RouteErrorKind::DuplicateTimeInterval(cfg.name.value.clone()),
                });
                continue;
            }
            let specs = cfg
                .time_intervals
                .iter()
                .enumerate()
                .filter_map(|(i, spec)| {
                    TimeInterval::compile(spec, &format!("{path}.time_intervals[{i}]"), errors)
                })
                .collect();
            by_name.insert(cfg.name.value.clone(), specs);
        }
        TimeIntervals { by_name }
    }

    /// Whether the interval named `name` contains `now_ms` (ms since the epoch); false for a
    /// name that is not defined.
    pub fn contains(&self, name: &str, now_ms: i64) -> bool {
        self.by_name
            .get(name)
            .is_some_and(|specs| specs.iter().any(|s| s.contains(now_ms)))
    }

    /// Whether an interval with this name is defined.
    pub fn is_defined(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }
}

impl TimeInterval {
    /// Compiles one spec, pushing every problem; None if there is any.
    fn compile(spec: &TimeIntervalSpec, path: &str, errors: &mut Vec<RouteError>) -> Option<Self> {
        let mut problems: Vec<(String, Location, RouteErrorKind)> = Vec::new();
        let mut times = Vec::new();
        for (i, t) in spec.times.iter().enumerate() {
            match parse_time_of_day_range(&t.value) {
                Ok(r) => times.push(r),
                Err(m) => problems.push((
                    format!("times[{i}]"),
                    t.referenced,
                    RouteErrorKind::TimeRange(m),
                )),
            }
        }
        let mut ranges = |field: &str,
                          items: &[Spanned<String>],
                          parse: fn(&str) -> Result<(i32, i32), String>| {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match parse(&item.value) {
                    Ok(r) => out.push(r),
                    Err(m) => problems.push((
                        format!("{field}[{i}]"),
                        item.referenced,
                        RouteErrorKind::TimeRange(m),
                    )),
                }
            }
            out
        };
        let weekdays = ranges("weekdays", &spec.weekdays, parse_weekday_range);
        let days_of_month = ranges(
            "days_of_month",
            &spec.days_of_month,
            parse_day_of_month_range,
        );
        let months = ranges("months", &spec.months, parse_month_range);
        let years = ranges("years", &spec.years, parse_year_range);
        let location = match &spec.location {
            None => Tz::UTC,
            Some(name) => name.value.trim().parse::<Tz>().unwrap_or_else(|_| {
                problems.push((
                    "location".into(),
                    name.referenced,
                    RouteErrorKind::UnknownLocation(name.value.clone()),
                ));
                Tz::UTC
            }),
        };
        if !problems.is_empty() {
            errors.extend(problems.into_iter().map(|(field, at, kind)| RouteError {
                path: format!("{path}.{field}"),
                at,
                kind,
            }));
            return None;
        }
        // the parsers keep these within 0..=6 and 1..=12
        let unsigned =
            |v: Vec<(i32, i32)>| v.into_iter().map(|(a, b)| (a as u32, b as u32)).collect();
        Some(TimeInterval {
            times,
            weekdays: unsigned(weekdays),
            days_of_month,
            months: unsigned(months),
            years,
            location,
        })
    }

    /// Whether the instant `now_ms` (ms since the epoch) is inside, read in the interval's
    /// time zone.
    pub fn contains(&self, now_ms: i64) -> bool {
        let Some(utc) = chrono::DateTime::from_timestamp_millis(now_ms) else {
            return false;
        };
        let t = utc.with_timezone(&self.location);
        let minute = t.hour() * 60 + t.minute();
        if !self.times.is_empty() && !self.times.iter().any(|&(s, e)| minute >= s && minute < e) {
            return false;
        }
        if !self.days_of_month.is_empty() {
            let dim = days_in_month(t.year(), t.month());
            let day = t.day() as i32;
            let inside = self.days_of_month.iter().any(|&(b, e)| {
                let begin = if b < 0 { dim + b + 1 } else { b };
                let end = if e < 0 { dim + e + 1 } else { e };
                // a range starting after the end of a short month does not spill into the next
                begin <= dim && day >= begin.clamp(-dim, dim) && day <= end.clamp(-dim, dim)
            });
            if !inside {
                return false;
            }
        }
        if !self.months.is_empty() && !in_ranges(&self.months, t.month()) {
            return false;
        }
        if !self.weekdays.is_empty()
            && !in_ranges(&self.weekdays, t.weekday().num_days_from_sunday())
        {
            return false;
        }
        if !self.years.is_empty()
            && !self
                .years
                .iter()
                .any(|&(b, e)| t.year() >= b && t.year() <= e)
        {
            return false;
        }
        true
    }
}

fn in_ranges(ranges: &[(u32, u32)], v: u32) -> bool {
    ranges.iter().any(|&(b, e)| v >= b && v <= e)
}

fn days_in_month(year: i32, month: u32) -> i32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// `HH:MM` → minutes of the day; `24:00` is 1440.
fn parse_clock(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) => Some(1440),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

fn parse_time_of_day_range(t: &TimeOfDayConfig) -> Result<(u32, u32), String> {
    if t.start_time.is_empty() || t.end_time.is_empty() {
        return Err("both start_time and end_time must be provided".into());
    }
    let parse = |s: &str| {
        parse_clock(s.trim()).ok_or_else(|| format!("invalid time {s:?} (write HH:MM, e.g. 09:00)"))
    };
    let (start, end) = (parse(&t.start_time)?, parse(&t.end_time)?);
    if start >= end {
        return Err(format!(
            "start time {} must be before end time {}",
            t.start_time, t.end_time
        ));
    }
    Ok((start, end))
}

/// Splits `a:b` or `a` and maps both ends.
fn parse_range(
    input: &str,
    what: &str,
    member: impl Fn(&str) -> Option<i32>,
) -> Result<(i32, i32), String> {
    let s = input.trim().to_lowercase();
    let (a, b) = match s.split_once(':') {
        Some((_, b)) if b.contains(':') => {
            return Err(format!("invalid {what} range {input:?}"));
        }
        Some((a, b)) => (a.trim(), b.trim()),
        None => (s.as_str(), s.as_str()),
    };
    let one = |x: &str| member(x).ok_or_else(|| format!("{x:?} is not a valid {what}"));
    Ok((one(a)?, one(b)?))
}

const WEEKDAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];
const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

fn parse_weekday_range(s: &str) -> Result<(i32, i32), String> {
    let (b, e) = parse_range(s, "weekday", |x| {
        WEEKDAYS.iter().position(|d| *d == x).map(|p| p as i32)
    })?;
    if b > e {
        return Err(format!(
            "weekday range {s:?} ends before it starts (weeks start on sunday: write saturday and sunday as two entries)"
        ));
    }
    Ok((b, e))
}

fn parse_day_of_month_range(s: &str) -> Result<(i32, i32), String> {
    let (b, e) = parse_range(s, "day of the month", |x| x.parse().ok())?;
    for d in [b, e] {
        if d == 0 || !(-31..=31).contains(&d) {
            return Err(format!("{d} is not a valid day of the month"));
        }
    }
    if b < 0 && e > 0 {
        return Err(format!(
            "days of the month {s:?}: the end must be negative when the start is"
        ));
    }
    // with negative days the length of the month matters; 28 days catches ranges always empty
    let at = |d: i32| if d < 0 { 28 + d } else { d };
    if at(b) > at(e) {
        return Err(format!(
            "days of the month {s:?}: the end is always before the start"
        ));
    }
    Ok((b, e))
}

fn parse_month_range(s: &str) -> Result<(i32, i32), String> {
    let (b, e) = parse_range(s, "month", |x| {
        MONTHS
            .iter()
            .position(|m| *m == x)
            .map(|p| p as i32 + 1)
            .or_else(|| x.parse().ok().filter(|n| (1..=12).contains(n)))
    })?;
    if b > e {
        return Err(format!("month range {s:?} ends before it starts"));
    }
    Ok((b, e))
}

fn parse_year_range(s: &str) -> Result<(i32, i32), String> {
    let (b, e) = parse_range(s, "year", |x| x.parse().ok().filter(|y: &i32| *y >= 0))?;
    if b > e {
        return Err(format!("year range {s:?} ends before it starts"));
    }
    Ok((b, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 3339 → ms since the epoch.
    fn at(s: &str) -> i64 {
        crate::timefmt::parse_time(s).unwrap()
    }

    #[test]
    fn range_fields_parse_and_reject_like_alertmanager() {
        // (parser, input, Ok(range) or Err(reason fragment))
        type Parse = fn(&str) -> Result<(i32, i32), String>;
        type Case<'a> = (Parse, &'a str, Result<(i32, i32), &'a str>);
        let cases: &[Case] = &[
            (parse_weekday_range, "monday:friday", Ok((1, 5))),
            (parse_weekday_range, "Saturday", Ok((6, 6))),
            // weeks start on sunday, so a weekend range wraps and is refused
            (
                parse_weekday_range,
                "saturday:sunday",
                Err("ends before it starts"),
            ),
            (parse_weekday_range, "funday", Err("not a valid weekday")),
            (
                parse_weekday_range,
                "monday:tuesday:friday",
                Err("invalid weekday range"),
            ),
            (parse_day_of_month_range, "1:5", Ok((1, 5))),
            (parse_day_of_month_range, "-3:-1", Ok((-3, -1))),
            (parse_day_of_month_range, "0", Err("not a valid day")),
            (parse_day_of_month_range, "32", Err("not a valid day")),
            (parse_day_of_month_range, "-3:5", Err("must be negative")),
            (parse_day_of_month_range, "20:10", Err("always before")),
            (parse_month_range, "january:march", Ok((1, 3))),
            (parse_month_range, "12", Ok((12, 12))),
            (parse_month_range, "13", Err("not a valid month")),
            (parse_month_range, "may:april", Err("ends before")),
            (parse_year_range, "2024:2026", Ok((2024, 2026))),
            (parse_year_range, "2026:2024", Err("ends before")),
        ];
        for (parse, input, want) in cases {
            match (parse(input), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, *want, "{input}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{input}: {got}"),
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn times_of_day_are_half_open_and_allow_24_00() {
        let range = |s: &str, e: &str| {
            parse_time_of_day_range(&TimeOfDayConfig {
                start_time: s.into(),
                end_time: e.into(),
            })
        };
        assert_eq!(range("09:00", "17:30"), Ok((540, 1050)));
        assert_eq!(range("22:00", "24:00"), Ok((1320, 1440)));
        assert!(range("17:00", "09:00").unwrap_err().contains("before"));
        assert!(range("9:00", "17:00").unwrap_err().contains("HH:MM"));
        assert!(range("24:01", "24:00").unwrap_err().contains("HH:MM"));
        assert!(range("", "17:00").unwrap_err().contains("both"));
    }

    #[test]
    fn negative_days_of_month_count_from_the_month_end() {
        let last_day = TimeInterval {
            times: vec![],
            weekdays: vec![],
            days_of_month: vec![(-1, -1)],
            months: vec![],
            years: vec![],
            location: Tz::UTC,
        };
        // 2024 is a leap year: the last day of February is the 29th
        assert!(!last_day.contains(at("2024-02-28T12:00:00Z")));
        assert!(last_day.contains(at("2024-02-29T12:00:00Z")));
        assert!(last_day.contains(at("2023-02-28T12:00:00Z")));
        // a range starting past a short month's end does not match in that month
        let the_31st = TimeInterval {
            days_of_month: vec![(31, 31)],
            ..last_day
        };
        assert!(!the_31st.contains(at("2024-04-30T12:00:00Z")));
        assert!(the_31st.contains(at("2024-05-31T12:00:00Z")));
    }
}
