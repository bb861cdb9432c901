//! Durations in Prometheus notation: `15s`, `5m`, `1h30m`, `250ms`, `15d`, `1w`, `1y`.
//!
//! Units are `ms s m h d w y` (a day is 24h, a week 7d, a year 365d, as in Prometheus).
//! Negative values and unknown units are errors; `0` alone means zero. Every duration is at most
//! [`MAX_DURATION`] (checked here, so by every config and rule field that is a `PromDuration`);
//! intervals have their own floors ([`MIN_RULE_INTERVAL`], [`MIN_SCRAPE_INTERVAL`]), checked where
//! the field is validated so the error names the field and its position.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Occurs when a duration string is not in Prometheus notation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (write it like 15s, 5m, 1h30m)")]
pub struct DurationError {
    pub input: String,
    pub reason: &'static str,
}

/// The longest duration accepted anywhere: 10 years (of 365 days). Longer ones are an error at
/// parse. Why: a `for:` of `300000000y` overflowed the millisecond arithmetic of the alert state
/// machine and fired at the first evaluation instead of never; nothing an alert daemon waits for
/// is longer than a decade, and 10 years in ms (3.2e11) leaves every sum with a timestamp far
/// inside `i64`.
pub const MAX_DURATION: Duration = Duration::from_millis(10 * 365 * 24 * 3600 * 1000);

/// The shortest rule group interval (a group's `interval`, `evaluation.interval`): 1 s.
/// Prometheus's practical floor: a group evaluated every millisecond only burns CPU, and its
/// evaluations would overlap (they are skipped while one runs).
pub const MIN_RULE_INTERVAL: Duration = Duration::from_secs(1);

/// The shortest scrape interval (`scrape.interval`, a target's `interval`): 100 ms. Shorter
/// intervals cannot complete an HTTP exchange on a loaded host and flood the store.
pub const MIN_SCRAPE_INTERVAL: Duration = Duration::from_millis(100);

/// A non-negative duration written in Prometheus notation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PromDuration(pub Duration);

const UNITS: [(&str, u64); 7] = [
    ("y", 365 * 24 * 3600 * 1000),
    ("w", 7 * 24 * 3600 * 1000),
    ("d", 24 * 3600 * 1000),
    ("h", 3600 * 1000),
    ("m", 60 * 1000),
    ("s", 1000),
    ("ms", 1),
];

impl PromDuration {
    pub fn from_secs(s: u64) -> Self {
        PromDuration(Duration::from_secs(s))
    }

    pub fn as_millis(self) -> i64 {
        self.0.as_millis() as i64
    }

    /// Parses a duration of at most [`MAX_DURATION`].
    pub fn parse(input: &str) -> Result<Self, DurationError> {
        Self::parse_within(
            input,
            MAX_DURATION.as_millis() as u64,
            "longer than the maximum of 10y",
        )
    }

    /// Parses a point in time written as an offset from a start, not a duration anything waits
    /// for: up to what milliseconds in `i64` hold (292 million years), for rule unit tests'
    /// `eval_time` (promtool's own tests evaluate at `106700d`).
    pub fn parse_time_offset(input: &str) -> Result<Self, DurationError> {
        Self::parse_within(input, i64::MAX as u64, "duration too large")
    }

    fn parse_within(input: &str, max_ms: u64, over: &'static str) -> Result<Self, DurationError> {
        let err = |reason| DurationError {
            input: input.to_string(),
            reason,
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(err("empty"));
        }
        if s.starts_with('-') {
            return Err(err("negative durations are not allowed"));
        }
        if s == "0" {
            return Ok(PromDuration(Duration::ZERO));
        }
        let bytes = s.as_bytes();
        let mut i = 0;
        let mut total: u64 = 0;
        // units must appear in decreasing order of size, each at most once, as in Prometheus
        let mut last_unit_rank = 0usize;
        while i < bytes.len() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if start == i {
                return Err(err("expected a number"));
            }
            let n: u64 = s[start..i].parse().map_err(|_| err("number too large"))?;
            let ustart = i;
            while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            let unit = &s[ustart..i];
            let Some(rank) = UNITS.iter().position(|(u, _)| *u == unit) else {
                return Err(if unit.is_empty() && i < bytes.len() {
                    err("unexpected character (fractions are written 1500ms, not 1.5s)")
                } else if unit.is_empty() {
                    err("missing unit")
                } else {
                    err("unknown unit")
                });
            };
            if rank < last_unit_rank {
                return Err(err("units out of order or repeated"));
            }
            last_unit_rank = rank + 1;
            total = n
                .checked_mul(UNITS[rank].1)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(|| err("duration too large"))?;
        }
        if total > max_ms {
            return Err(err(over));
        }
        Ok(PromDuration(Duration::from_millis(total)))
    }
}

/// The shortest Prometheus notation, e.g. `1h30m`, `250ms`, `0s`.
impl fmt::Display for PromDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis() as u64;
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in UNITS {
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for PromDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PromDuration::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Deserializes with [`PromDuration::parse_time_offset`] (`#[serde(deserialize_with)]`).
pub fn deserialize_time_offset<'de, D: Deserializer<'de>>(d: D) -> Result<PromDuration, D::Error> {
    let s = String::deserialize(d)?;
    PromDuration::parse_time_offset(&s).map_err(serde::de::Error::custom)
}

impl Serialize for PromDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl std::str::FromStr for PromDuration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, DurationError> {
        PromDuration::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_notation() {
        let cases = [
            ("15s", 15_000),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
            ("250ms", 250),
            ("1d", 86_400_000),
            ("2w", 14 * 86_400_000),
            ("1y", 365 * 86_400_000),
            ("0", 0),
            ("0s", 0),
        ];
        for (input, ms) in cases {
            assert_eq!(
                PromDuration::parse(input).unwrap().as_millis(),
                ms,
                "{input}"
            );
        }
    }

    #[test]
    fn rejects_bad_durations_with_reason() {
        let cases = [
            ("-5s", "negative"),
            ("5", "missing unit"),
            ("5x", "unknown unit"),
            ("1m1h", "out of order"),
            ("", "empty"),
            ("s", "expected a number"),
            ("1.5s", "unexpected character"),
            ("300000000y", "maximum of 10y"),
            ("10y1ms", "maximum of 10y"),
            ("99999999999999999999s", "too large"),
        ];
        for (input, reason) in cases {
            let err = PromDuration::parse(input).unwrap_err();
            assert!(err.to_string().contains(reason), "{input}: {err}");
        }
    }

    #[test]
    fn accepts_up_to_the_maximum() {
        assert_eq!(PromDuration::parse("10y").unwrap().0, MAX_DURATION);
        // a unit test's evaluation time is a point in time, not a wait
        assert!(PromDuration::parse_time_offset("106700d").is_ok());
        assert_eq!(
            PromDuration::parse("520w").unwrap().0.as_secs(),
            520 * 7 * 86_400
        );
    }

    #[test]
    fn display_round_trips() {
        for s in ["15s", "1h30m", "250ms", "1d2h", "0s", "1w"] {
            assert_eq!(PromDuration::parse(s).unwrap().to_string(), s);
        }
    }
}
