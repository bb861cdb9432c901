//! Label sets, their stable fingerprints, and label matchers.
//!
//! A [`Labels`] value is the identity of a series: sorted by label name, no empty values
//! (Prometheus treats an empty value as an absent label), the metric name under `__name__`.
//! Its [`Labels::fingerprint`] is persisted (alert state, series ids), so it is a fixed hash
//! (xxh3 over a fixed byte layout), never `DefaultHasher`.

use std::fmt;

use regex::Regex;
use serde::Serialize;

/// The label that holds the metric name.
pub const METRIC_NAME: &str = "__name__";

/// A sorted set of label pairs, packed: one string holding every name and value back to back and
/// their end offsets (two allocations per label set instead of two per label; a label set is kept
/// for every series, so this is most of the store's per-series memory).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Labels {
    data: Box<str>,
    /// `ends[2i]` ends name `i`, `ends[2i + 1]` ends value `i`
    ends: Box<[u32]>,
}

impl Labels {
    fn pack(pairs: &[(String, String)]) -> Self {
        let mut data = String::with_capacity(pairs.iter().map(|(k, v)| k.len() + v.len()).sum());
        let mut ends = Vec::with_capacity(pairs.len() * 2);
        for (k, v) in pairs {
            data.push_str(k);
            ends.push(data.len() as u32);
            data.push_str(v);
            ends.push(data.len() as u32);
        }
        Labels {
            data: data.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        }
    }

    fn pair(&self, i: usize) -> (&str, &str) {
        let start = if i == 0 {
            0
        } else {
            self.ends[2 * i - 1] as usize
        };
        let mid = self.ends[2 * i] as usize;
        let end = self.ends[2 * i + 1] as usize;
        (&self.data[start..mid], &self.data[mid..end])
    }

    /// Builds a label set: sorts by name, drops empty values, and keeps the last value of a repeated name.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut v: Vec<(String, String)> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        // stable sort keeps insertion order among equal names, so the loop below keeps the last one
        v.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(String, String)> = Vec::with_capacity(v.len());
        for pair in v {
            match out.last_mut() {
                Some(last) if last.0 == pair.0 => *last = pair,
                _ => out.push(pair),
            }
        }
        Labels::pack(&out)
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            let (k, v) = self.pair(mid);
            match k.cmp(name) {
                std::cmp::Ordering::Equal => return Some(v),
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
            }
        }
        None
    }

    /// The metric name (`__name__`), if present.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        (0..self.len()).map(|i| self.pair(i))
    }

    pub fn len(&self) -> usize {
        self.ends.len() / 2
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The pairs whose name satisfies `keep`, packed directly (order is kept, so no sort).
    pub fn filter(&self, mut keep: impl FnMut(&str) -> bool) -> Labels {
        let mut data = String::new();
        let mut ends = Vec::new();
        for (k, v) in self.iter() {
            if keep(k) {
                if data.capacity() == 0 {
                    data.reserve(self.data.len());
                    ends.reserve(self.ends.len());
                }
                data.push_str(k);
                ends.push(data.len() as u32);
                data.push_str(v);
                ends.push(data.len() as u32);
            }
        }
        Labels {
            data: data.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        }
    }

    /// A copy without `__name__` (the set itself, cloned, when it has none).
    pub fn without_name(&self) -> Labels {
        if self.metric_name().is_some() {
            self.filter(|k| k != METRIC_NAME)
        } else {
            self.clone()
        }
    }

    /// A copy with `name` set to `value` (or removed when `value` is empty).
    pub fn with(&self, name: &str, value: &str) -> Labels {
        Labels::from_pairs(
            self.iter()
                .filter(|(k, _)| *k != name)
                .chain(std::iter::once((name, value))),
        )
    }

    /// A stable 64-bit hash of the label set: xxh3 over `name 0xff value 0xff` for each pair in order.
    /// Persisted; changing it changes every stored fingerprint.
    pub fn fingerprint(&self) -> u64 {
        let mut buf = Vec::with_capacity(self.data.len() + self.ends.len());
        for (k, v) in self.iter() {
            buf.extend_from_slice(k.as_bytes());
            buf.push(0xff);
            buf.extend_from_slice(v.as_bytes());
            buf.push(0xff);
        }
        xxhash_rust::xxh3::xxh3_64(&buf)
    }
}

/// Hashes the packed text only (one pass; equal label sets have equal text, and sets that differ
/// only in where names end are told apart by `Eq`).
impl std::hash::Hash for Labels {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(self.data.as_bytes());
    }
}

/// Label sets order pair by pair, as Prometheus sorts series.
impl Ord for Labels {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.iter().cmp(other.iter())
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// A sequence of `[name, value]` pairs.
impl Serialize for Labels {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

/// Prometheus notation: `name{a="1", b="x\"y"}`, `{a="1"}` when there is no name.
impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = self.metric_name() {
            f.write_str(name)?;
        }
        f.write_str("{")?;
        let mut first = true;
        for (k, v) in self.iter().filter(|(k, _)| *k != METRIC_NAME) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{k}=\"")?;
            for c in v.chars() {
                match c {
                    '\\' => f.write_str("\\\\")?,
                    '"' => f.write_str("\\\"")?,
                    '\n' => f.write_str("\\n")?,
                    c => write!(f, "{c}")?,
                }
            }
            f.write_str("\"")?;
        }
        f.write_str("}")
    }
}

/// How a matcher compares a label value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

/// Occurs when a matcher is built from a regex that does not compile.
#[derive(Debug, thiserror::Error)]
#[error("invalid regex {pattern:?} for label {label}: {}", regex_reason(.source))]
pub struct MatcherError {
    pub label: String,
    pub pattern: String,
    #[source]
    pub source: regex::Error,
}

/// A regex error on one line: the `regex` crate prints a syntax error over several lines (the
/// pattern, a caret, then `error: …`); messages here are one line each.
pub fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().trim_start_matches("error: ").to_string())
        .unwrap_or(text)
}

/// One label matcher, as in `{status=~"5.."}`. Regexes are anchored at both ends, as in Prometheus.
/// A missing label matches as the empty string (so `{foo=""}` selects series without `foo`).
#[derive(Clone, Debug)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    regex: Option<Regex>,
}

impl Matcher {
    pub fn new(op: MatchOp, name: &str, value: &str) -> Result<Self, MatcherError> {
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(
                Regex::new(&format!("^(?s:{value})$")).map_err(|source| MatcherError {
                    label: name.to_string(),
                    pattern: value.to_string(),
                    source,
                })?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value: value.to_string(),
            regex,
        })
    }

    /// `name="value"`; cannot fail.
    pub fn equal(name: &str, value: &str) -> Self {
        Matcher {
            name: name.to_string(),
            op: MatchOp::Equal,
            value: value.to_string(),
            regex: None,
        }
    }

    /// Whether `value` (the empty string for an absent label) satisfies the matcher.
    pub fn matches(&self, value: &str) -> bool {
        match (self.op, &self.regex) {
            (MatchOp::Equal, _) => value == self.value,
            (MatchOp::NotEqual, _) => value != self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(value),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(value),
            (_, None) => unreachable!("regex matchers are built with a regex"),
        }
    }

    /// Whether the matcher selects series that lack the label (it matches the empty string).
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    /// Whether a whole label set satisfies the matcher.
    pub fn matches_labels(&self, labels: &Labels) -> bool {
        self.matches(labels.get(&self.name).unwrap_or(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_sorted_and_drop_empty_values() {
        let l = Labels::from_pairs([("b", "2"), ("a", "1"), ("c", "")]);
        assert_eq!(l.iter().collect::<Vec<_>>(), vec![("a", "1"), ("b", "2")]);
    }

    #[test]
    fn repeated_label_keeps_last_value() {
        let l = Labels::from_pairs([("a", "1"), ("a", "2")]);
        assert_eq!(l.get("a"), Some("2"));
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn fingerprint_is_independent_of_input_order_and_fixed() {
        let a = Labels::from_pairs([("__name__", "up"), ("job", "x")]);
        let b = Labels::from_pairs([("job", "x"), ("__name__", "up")]);
        assert_eq!(a.fingerprint(), b.fingerprint());
        // persisted: this value must never change between versions
        assert_eq!(
            a.fingerprint(),
            xxhash_rust::xxh3::xxh3_64(b"__name__\xffup\xffjob\xffx\xff")
        );
        // the separator keeps ("ab","c") and ("a","bc") apart
        let c = Labels::from_pairs([("ab", "c")]);
        let d = Labels::from_pairs([("a", "bc")]);
        assert_ne!(c.fingerprint(), d.fingerprint());
    }

    #[test]
    fn order_is_pair_by_pair() {
        let a = Labels::from_pairs([("a", "1"), ("b", "2")]);
        let b = Labels::from_pairs([("a", "10")]);
        let c = Labels::from_pairs([("ab", "1")]);
        assert!(a < b, "value 1 < 10");
        assert!(a < c, "name a < ab");
        assert_eq!(a.get("b"), Some("2"));
        assert_eq!(a.get("c"), None);
        assert_eq!(Labels::default().get("a"), None);
    }

    #[test]
    fn display_escapes_values() {
        let l = Labels::from_pairs([("__name__", "m"), ("a", "x\"y\\z\n")]);
        assert_eq!(l.to_string(), r#"m{a="x\"y\\z\n"}"#);
    }

    #[test]
    fn with_sets_replaces_and_removes() {
        let l = Labels::from_pairs([("a", "1")]);
        assert_eq!(l.with("b", "2").get("b"), Some("2"));
        assert_eq!(l.with("a", "3").get("a"), Some("3"));
        assert!(l.with("a", "").is_empty());
    }

    #[test]
    fn regex_matchers_are_anchored() {
        let m = Matcher::new(MatchOp::Regex, "status", "5..").unwrap();
        assert!(m.matches("503"));
        assert!(!m.matches("1503"));
        assert!(!m.matches("5034"));
        let n = Matcher::new(MatchOp::NotRegex, "status", "5..").unwrap();
        assert!(n.matches("200"));
        assert!(!n.matches("500"));
    }

    #[test]
    fn absent_label_matches_as_empty_string() {
        let l = Labels::from_pairs([("a", "1")]);
        assert!(Matcher::equal("b", "").matches_labels(&l));
        assert!(!Matcher::equal("a", "").matches_labels(&l));
        assert!(
            Matcher::new(MatchOp::NotEqual, "b", "x")
                .unwrap()
                .matches_labels(&l)
        );
    }

    #[test]
    fn bad_regex_is_an_error_naming_the_label() {
        let err = Matcher::new(MatchOp::Regex, "path", "(").unwrap_err();
        assert!(err.to_string().contains("label path"), "{err}");
    }
}
