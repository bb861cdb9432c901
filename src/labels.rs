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

/// A sorted set of label pairs, packed into one string: for each pair the name's length, the name,
/// the value's length and the value, back to back. A label set is kept for every series, so this
/// is most of the store's per-series memory: one allocation of ~90 bytes for a typical series
/// instead of a string and an offset table (~130 bytes in two allocations, `benches/memory.rs`).
///
/// A length is written in ASCII bytes so the whole stays a `str`: 6 bits a byte, least
/// significant first, bit 6 (`0x40`) set on every byte but the last; names and values shorter
/// than 64 bytes (nearly all) cost one byte of length.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Labels {
    data: Box<str>,
}

/// Appends `len` as [`Labels`]' ASCII length bytes.
fn push_len(out: &mut String, mut len: usize) {
    while len >= 0x40 {
        out.push(char::from(0x40 | (len & 0x3f) as u8));
        len >>= 6;
    }
    out.push(char::from(len as u8));
}

/// Appends one pair in [`Labels`]' layout.
fn push_pair(out: &mut String, k: &str, v: &str) {
    push_len(out, k.len());
    out.push_str(k);
    push_len(out, v.len());
    out.push_str(v);
}

/// The pairs of a packed label set, in order.
#[derive(Clone)]
pub struct LabelsIter<'a> {
    rest: &'a str,
}

impl<'a> LabelsIter<'a> {
    /// The next length-prefixed string (the data was packed by `push_pair`, so it is well formed).
    #[inline]
    fn field(&mut self) -> &'a str {
        let bytes = self.rest.as_bytes();
        let (mut len, mut shift, mut i) = (0usize, 0, 0);
        loop {
            let b = bytes[i];
            i += 1;
            len |= usize::from(b & 0x3f) << shift;
            if b & 0x40 == 0 {
                break;
            }
            shift += 6;
        }
        let (field, rest) = self.rest[i..].split_at(len);
        self.rest = rest;
        field
    }
}

impl<'a> Iterator for LabelsIter<'a> {
    type Item = (&'a str, &'a str);

    #[inline]
    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        if self.rest.is_empty() {
            return None;
        }
        let k = self.field();
        let v = self.field();
        Some((k, v))
    }
}

impl Labels {
    fn pack<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Self {
        let mut data = String::with_capacity(
            pairs
                .iter()
                .map(|(k, v)| k.as_ref().len() + v.as_ref().len() + 2)
                .sum(),
        );
        for (k, v) in pairs {
            push_pair(&mut data, k.as_ref(), v.as_ref());
        }
        Labels {
            data: data.into_boxed_str(),
        }
    }

    /// Builds a label set from pairs already in its order (names strictly ascending, no empty
    /// value), as the store writes them, without copying each name and value first; None when
    /// they are not in that order ([`Labels::from_pairs`] sorts them).
    pub fn from_sorted(pairs: &[(&str, &str)]) -> Option<Self> {
        let ordered =
            pairs.windows(2).all(|w| w[0].0 < w[1].0) && pairs.iter().all(|(_, v)| !v.is_empty());
        ordered.then(|| Labels::pack(pairs))
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

    /// The value of `name`, if present (a scan: label sets are short and sorted, so it stops at
    /// the first name past `name`).
    pub fn get(&self, name: &str) -> Option<&str> {
        for (k, v) in self.iter() {
            match k.cmp(name) {
                std::cmp::Ordering::Equal => return Some(v),
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Greater => return None,
            }
        }
        None
    }

    /// Bytes of the packed text (the label set's one heap allocation, for memory accounting).
    pub fn packed_len(&self) -> usize {
        self.data.len()
    }

    /// The metric name (`__name__`), if present.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    pub fn iter(&self) -> LabelsIter<'_> {
        LabelsIter { rest: &self.data }
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The pairs whose name satisfies `keep`, packed directly (order is kept, so no sort).
    pub fn filter(&self, mut keep: impl FnMut(&str) -> bool) -> Labels {
        let mut data = String::new();
        for (k, v) in self.iter() {
            if keep(k) {
                if data.capacity() == 0 {
                    data.reserve(self.data.len());
                }
                push_pair(&mut data, k, v);
            }
        }
        Labels {
            data: data.into_boxed_str(),
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

    /// A copy with every pair of `defaults` whose name it lacks (how Prometheus adds external
    /// labels: an alert's own label wins). The set itself, cloned, when nothing is added.
    pub fn with_defaults(&self, defaults: &Labels) -> Labels {
        if defaults.iter().all(|(k, _)| self.get(k).is_some()) {
            return self.clone();
        }
        Labels::from_pairs(
            defaults
                .iter()
                .filter(|(k, _)| self.get(k).is_none())
                .chain(self.iter()),
        )
    }

    /// A stable 64-bit hash of the label set: xxh3 over `name 0xff value 0xff` for each pair in order.
    /// Persisted; changing it changes every stored fingerprint.
    pub fn fingerprint(&self) -> u64 {
        let mut buf = Vec::with_capacity(self.data.len());
        for (k, v) in self.iter() {
            buf.extend_from_slice(k.as_bytes());
            buf.push(0xff);
            buf.extend_from_slice(v.as_bytes());
            buf.push(0xff);
        }
        xxhash_rust::xxh3::xxh3_64(&buf)
    }
}

/// A fingerprint as text: 16 hex digits, zero-padded (webhook payloads, the API, logs, persisted
/// rows; padded, so text order is numeric order).
pub fn format_fingerprint(fp: u64) -> String {
    format!("{fp:016x}")
}

/// Reads a fingerprint written by [`format_fingerprint`] (1 to 16 hex digits).
pub fn parse_fingerprint(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

/// Hashes the packed text (one pass; equal label sets have equal text, lengths included).
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

/// A label set serialized as a JSON object, `{"name": "value"}` (webhook payloads, the API),
/// where [`Labels`] itself serializes as `[name, value]` pairs.
pub struct AsMap<'a>(pub &'a Labels);

impl Serialize for AsMap<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter())
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
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
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

/// Most times nested repetitions may repeat their innermost part, multiplied through nesting:
/// Go's limit (`regexp/syntax`'s `repeatIsValid`), so tocsin refuses what Prometheus refuses.
/// `(a{1,100}){1,100}b` (10,000) compiles to a small program but costs ~1.5 s to match one
/// 5,000-character value in a release build (measured; 12 s a request through the API), since
/// every input character can be in thousands of program states at once; refused at compile now.
pub const REGEX_MAX_REPEAT: u32 = 1000;

/// Most memory one compiled regex may take (the `regex` crate's `size_limit`), in bytes: the
/// crate's default, named so the refusal's text can be traced here. An alternation of 2,000
/// metric names needs ~4 MiB, `\w{1,100}` (Unicode classes) ~10 MiB.
pub const REGEX_SIZE_LIMIT: usize = 10 << 20;

/// Most memory one regex's lazy DFA cache may take per matcher (the crate's `dfa_size_limit`),
/// in bytes: the crate's default. When the cache fills, matching falls back to slower engines;
/// it never grows past this.
pub const REGEX_DFA_SIZE_LIMIT: usize = 2 << 20;

/// Compiles a label-matcher regex, anchored at both ends as Prometheus does (`^(?s:…)$`), within
/// [`REGEX_MAX_REPEAT`], [`REGEX_SIZE_LIMIT`] and [`REGEX_DFA_SIZE_LIMIT`]: the one place label
/// regexes (matchers, PromQL's selectors and `label_replace`) are compiled.
pub fn compile_regex(pattern: &str) -> Result<Regex, regex::Error> {
    compile_limited(&format!("^(?s:{pattern})$"))
}

/// Compiles a regex that searches, unanchored, as Go's `regexp.Compile` (templates'
/// `reReplaceAll` and `match`), within the same limits as [`compile_regex`].
pub fn compile_search_regex(pattern: &str) -> Result<Regex, regex::Error> {
    compile_limited(pattern)
}

fn compile_limited(pattern: &str) -> Result<Regex, regex::Error> {
    // a syntax error is left to the regex crate, whose message is the one users know
    if let Ok(ast) = regex_syntax::ast::parse::Parser::new().parse(pattern)
        && !repeat_is_valid(&ast, REGEX_MAX_REPEAT)
    {
        return Err(regex::Error::Syntax(format!(
            "invalid repeat count: nested repetitions repeat more than the limit of {REGEX_MAX_REPEAT} times"
        )));
    }
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_DFA_SIZE_LIMIT)
        .build()
}

/// Whether the counted repetitions (`{n}`, `{n,}`, `{n,m}`) in `ast`, multiplied through
/// nesting, stay within `n`: Go's `repeatIsValid` (`*`, `+` and `?` do not count; a repetition
/// at most 0 times makes its part valid whatever it holds).
fn repeat_is_valid(ast: &regex_syntax::ast::Ast, mut n: u32) -> bool {
    use regex_syntax::ast::{Ast, RepetitionKind, RepetitionRange};
    match ast {
        Ast::Repetition(r) => {
            if let RepetitionKind::Range(range) = &r.op.kind {
                let m = match *range {
                    RepetitionRange::Exactly(m) | RepetitionRange::AtLeast(m) => m,
                    RepetitionRange::Bounded(_, m) => m,
                };
                if m == 0 {
                    return true;
                }
                if m > n {
                    return false;
                }
                n /= m;
            }
            repeat_is_valid(&r.ast, n)
        }
        Ast::Group(g) => repeat_is_valid(&g.ast, n),
        Ast::Alternation(a) => a.asts.iter().all(|a| repeat_is_valid(a, n)),
        Ast::Concat(c) => c.asts.iter().all(|a| repeat_is_valid(a, n)),
        _ => true,
    }
}

impl Matcher {
    pub fn new(op: MatchOp, name: &str, value: &str) -> Result<Self, MatcherError> {
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => {
                Some(compile_regex(value).map_err(|source| MatcherError {
                    label: name.to_string(),
                    pattern: value.to_string(),
                    source,
                })?)
            }
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

/// Whether `s` is a label name in Prometheus's classic syntax: `[a-zA-Z_][a-zA-Z0-9_]*`.
/// Names the configuration and rule files define must be; matchers may name any label.
pub fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `s` is a metric name in Prometheus's classic syntax: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn valid_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

// ---------------------------------------------------------------------------------------------
// Matcher strings
// ---------------------------------------------------------------------------------------------

/// Occurs when a matcher string does not parse or its regex does not compile.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid matcher {input:?} at character {position}: {kind}")]
pub struct MatcherParseError {
    /// The text as written.
    pub input: String,
    /// Where the problem is: a character (not byte) position, 1 for the first.
    pub position: usize,
    /// What is wrong there.
    pub kind: MatcherParseErrorKind,
}

/// What is wrong with a matcher string.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MatcherParseErrorKind {
    /// The text is empty, blank, or `{}`.
    #[error("no matcher")]
    Empty,
    /// Two commas follow each other (or a list starts with one).
    #[error("empty matcher between commas")]
    EmptyBetweenCommas,
    /// A label name was expected here: at the start, or after `{` or a comma.
    #[error("expected a label name, found {0}")]
    ExpectedName(String),
    /// A quoted label name is empty (`""="x"`).
    #[error("empty label name")]
    EmptyName,
    /// The label name is not followed by an operator.
    #[error("expected =, !=, =~ or !~ after {name:?}, found {found}")]
    ExpectedOperator { name: String, found: String },
    /// A quoted name or value has no closing quote.
    #[error("missing closing quote")]
    UnclosedQuote,
    /// Something other than a comma, `}` or the end follows a quoted value.
    #[error("text after the closing quote")]
    TextAfterQuote,
    /// An unquoted value holds a `"` (quote the value and escape it as `\"`).
    #[error("unescaped double quote in the value")]
    UnescapedQuote,
    /// The list opens with `{` and does not close it.
    #[error("opening brace without a closing brace")]
    UnclosedBrace,
    /// Something follows the end of the matcher or list (a second matcher where one is
    /// expected, text after `}`, a `}` without `{`).
    #[error("unexpected {0}")]
    Unexpected(String),
    /// The value of `=~` or `!~` is not a valid regex.
    #[error("regex does not compile: {0}")]
    Regex(String),
    /// A label pair (`name=value`) was expected and the operator is another one.
    #[error("expected name=value, found the operator {0}")]
    NotEquality(&'static str),
}

/// Parses one matcher, Alertmanager's syntax: `name="value"`, `name!="value"`, `name=~"regex"`,
/// `name!~"regex"`, with optional whitespace around each part.
///
/// - A name is a run of characters other than whitespace and `{}!=~,"'`\`, UTF-8 included
///   (`severity`, `café`, `k8s.namespace`), or any text in double quotes (`"my label"`).
/// - A value is double-quoted, with the escapes `\"`, `\\` and `\n` (any other backslash is kept
///   as written, so `"host\d+"` is the regex `host\d+`), or bare: the rest of the text, trimmed,
///   which may hold anything but a double quote (`team=b c` is the value `b c`).
/// - Regexes are anchored at both ends.
pub fn parse_matcher(input: &str) -> Result<Matcher, MatcherParseError> {
    let mut p = MatcherParser::new(input, false);
    p.skip_space();
    if p.at_end() {
        return Err(p.error(p.pos, MatcherParseErrorKind::Empty));
    }
    let parsed = p.matcher()?;
    p.skip_space();
    if !p.at_end() {
        return Err(p.error(p.pos, MatcherParseErrorKind::Unexpected(p.found())));
    }
    p.compile(parsed)
}

/// Parses a list of matchers: one or more [`parse_matcher`] matchers separated by commas,
/// optionally in braces (`{a="1", b=~"x|y"}`), a trailing comma allowed. A bare value ends at
/// the next comma or `}` (quote it to hold either).
pub fn parse_matchers(input: &str) -> Result<Vec<Matcher>, MatcherParseError> {
    let mut p = MatcherParser::new(input, true);
    p.skip_space();
    let brace = p.peek() == Some('{');
    let open = p.pos;
    if brace {
        p.pos += 1;
        p.skip_space();
    }
    let mut out = Vec::new();
    loop {
        match p.peek() {
            None if brace => return Err(p.error(open, MatcherParseErrorKind::UnclosedBrace)),
            None | Some('}') if out.is_empty() => {
                return Err(p.error(p.pos, MatcherParseErrorKind::Empty));
            }
            None => break,
            Some('}') if brace => {
                p.pos += 1;
                break;
            }
            Some(',') => {
                return Err(p.error(p.pos, MatcherParseErrorKind::EmptyBetweenCommas));
            }
            _ => {}
        }
        let parsed = p.matcher()?;
        out.push(p.compile(parsed)?);
        p.skip_space();
        match p.peek() {
            Some(',') => {
                p.pos += 1;
                p.skip_space();
            }
            Some('}') if brace => {}
            None => {}
            _ => return Err(p.error(p.pos, MatcherParseErrorKind::Unexpected(p.found()))),
        }
    }
    p.skip_space();
    if !p.at_end() {
        return Err(p.error(p.pos, MatcherParseErrorKind::Unexpected(p.found())));
    }
    Ok(out)
}

/// Parses a label pair as `tocsin route-test` and amtool take them: one [`parse_matcher`]
/// matcher whose operator is `=`, returned as name and value.
pub fn parse_label_pair(input: &str) -> Result<(String, String), MatcherParseError> {
    let mut p = MatcherParser::new(input, false);
    p.skip_space();
    if p.at_end() {
        return Err(p.error(p.pos, MatcherParseErrorKind::Empty));
    }
    let parsed = p.matcher()?;
    p.skip_space();
    if !p.at_end() {
        return Err(p.error(p.pos, MatcherParseErrorKind::Unexpected(p.found())));
    }
    if parsed.op != MatchOp::Equal {
        return Err(p.error(
            parsed.op_at,
            MatcherParseErrorKind::NotEquality(op_text(parsed.op)),
        ));
    }
    Ok((parsed.name, parsed.value))
}

/// The operator as written in a matcher.
pub fn op_text(op: MatchOp) -> &'static str {
    match op {
        MatchOp::Equal => "=",
        MatchOp::NotEqual => "!=",
        MatchOp::Regex => "=~",
        MatchOp::NotRegex => "!~",
    }
}

/// Characters that end a bare label name (Alertmanager's reserved characters).
fn ends_name(c: char) -> bool {
    c.is_whitespace() || "{}!=~,\"'`\\".contains(c)
}

/// One matcher before its regex is compiled, with where its parts start.
struct ParsedMatcher {
    name: String,
    op: MatchOp,
    op_at: usize,
    value: String,
    value_at: usize,
}

/// A cursor over the characters of a matcher string (positions count characters, so errors
/// point at the right place in UTF-8 text).
struct MatcherParser<'a> {
    input: &'a str,
    chars: Vec<char>,
    pos: usize,
    /// whether a bare value ends at `,` and `}` (in a list) or runs to the end (one matcher)
    in_list: bool,
}

impl<'a> MatcherParser<'a> {
    fn new(input: &'a str, in_list: bool) -> Self {
        MatcherParser {
            input,
            chars: input.chars().collect(),
            pos: 0,
            in_list,
        }
    }

    fn error(&self, at: usize, kind: MatcherParseErrorKind) -> MatcherParseError {
        MatcherParseError {
            input: self.input.to_string(),
            position: at + 1,
            kind,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    /// The character at the cursor, for messages: `'{'` or `the end`.
    fn found(&self) -> String {
        match self.peek() {
            Some(c) => format!("{c:?}"),
            None => "the end".into(),
        }
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    /// `name op value`, the cursor on the name's first character.
    fn matcher(&mut self) -> Result<ParsedMatcher, MatcherParseError> {
        let name_at = self.pos;
        let name = if self.peek() == Some('"') {
            let name = self.quoted()?;
            if name.is_empty() {
                return Err(self.error(name_at, MatcherParseErrorKind::EmptyName));
            }
            name
        } else {
            let start = self.pos;
            while self.peek().is_some_and(|c| !ends_name(c)) {
                self.pos += 1;
            }
            if self.pos == start {
                return Err(self.error(self.pos, MatcherParseErrorKind::ExpectedName(self.found())));
            }
            self.chars[start..self.pos].iter().collect()
        };
        self.skip_space();
        let op_at = self.pos;
        let op = match (self.peek(), self.chars.get(self.pos + 1).copied()) {
            (Some('='), Some('~')) => MatchOp::Regex,
            (Some('!'), Some('~')) => MatchOp::NotRegex,
            (Some('!'), Some('=')) => MatchOp::NotEqual,
            (Some('='), _) => MatchOp::Equal,
            _ => {
                let found = self.found();
                return Err(self.error(
                    op_at,
                    MatcherParseErrorKind::ExpectedOperator { name, found },
                ));
            }
        };
        self.pos += op_text(op).len();
        self.skip_space();
        let value_at = self.pos;
        let value = if self.peek() == Some('"') {
            let value = self.quoted()?;
            let after = self.pos;
            self.skip_space();
            let ends = match self.peek() {
                None => true,
                Some(',' | '}') => self.in_list,
                Some(_) => false,
            };
            if !ends {
                return Err(self.error(after, MatcherParseErrorKind::TextAfterQuote));
            }
            value
        } else {
            self.bare_value()?
        };
        Ok(ParsedMatcher {
            name,
            op,
            op_at,
            value,
            value_at,
        })
    }

    /// A double-quoted string, the cursor on its opening quote; leaves the cursor after the
    /// closing one.
    fn quoted(&mut self) -> Result<String, MatcherParseError> {
        let open = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(self.error(open, MatcherParseErrorKind::UnclosedQuote)),
                Some('"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some('\\') => {
                    self.pos += 1;
                    self.escape(&mut out);
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// A bare value: up to the end (or, in a list, the next `,` or `}`), trimmed.
    fn bare_value(&mut self) -> Result<String, MatcherParseError> {
        let mut out = String::new();
        while let Some(c) = self.peek() {
            match c {
                ',' | '}' if self.in_list => break,
                '"' => return Err(self.error(self.pos, MatcherParseErrorKind::UnescapedQuote)),
                '\\' => {
                    self.pos += 1;
                    self.escape(&mut out);
                }
                c => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
        out.truncate(out.trim_end().len());
        Ok(out)
    }

    /// The character after a backslash (the cursor on it): `\"`, `\\` and `\n` are unescaped,
    /// any other is kept with its backslash, as Alertmanager's classic parser does, so regex
    /// classes such as `\d` survive. A backslash at the very end is kept.
    fn escape(&mut self, out: &mut String) {
        match self.peek() {
            Some('n') => out.push('\n'),
            Some(c @ ('"' | '\\')) => out.push(c),
            Some(c) => {
                out.push('\\');
                out.push(c);
            }
            None => {
                out.push('\\');
                return;
            }
        }
        self.pos += 1;
    }

    fn compile(&self, m: ParsedMatcher) -> Result<Matcher, MatcherParseError> {
        Matcher::new(m.op, &m.name, &m.value).map_err(|e| {
            self.error(
                m.value_at,
                MatcherParseErrorKind::Regex(regex_reason(&e.source)),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_sorted_takes_pairs_in_order_and_refuses_others() {
        let pairs = [("__name__", "up"), ("instance", "a:1"), ("job", "x")];
        assert_eq!(Labels::from_sorted(&pairs), Some(Labels::from_pairs(pairs)));
        assert_eq!(
            Labels::from_sorted(&[]),
            Some(Labels::from_pairs::<[(&str, &str); 0], &str, &str>([]))
        );
        for bad in [
            vec![("job", "x"), ("instance", "a:1")],
            vec![("job", "x"), ("job", "y")],
            vec![("instance", ""), ("job", "x")],
        ] {
            assert_eq!(Labels::from_sorted(&bad), None, "{bad:?}");
        }
    }

    /// Parses `input` with `parse` and renders the result as `name op "value"` items joined by
    /// `, `, or as `error at N: kind`.
    fn render(result: Result<Vec<Matcher>, MatcherParseError>) -> String {
        match result {
            Ok(ms) => ms
                .iter()
                .map(|m| format!("{}{}{:?}", m.name, op_text(m.op), m.value))
                .collect::<Vec<_>>()
                .join(", "),
            Err(e) => format!("error at {}: {}", e.position, e.kind),
        }
    }

    fn check_list(input: &str, expected: &str) {
        assert_eq!(render(parse_matchers(input)), expected, "list {input:?}");
    }

    fn check_one(input: &str, expected: &str) {
        assert_eq!(
            render(parse_matcher(input).map(|m| vec![m])),
            expected,
            "one {input:?}"
        );
    }

    #[test]
    fn matcher_lists_parse_as_alertmanager_writes_them() {
        // each operator, quoted and bare values, spaces around the operator
        check_list(r#"severity="page""#, r#"severity="page""#);
        check_list("team != x", r#"team!="x""#);
        check_list(r#"alertname=~"Foo|Bar""#, r#"alertname=~"Foo|Bar""#);
        check_list(r#"env!~"dev.*""#, r#"env!~"dev.*""#);
        // a backslash other than \" \\ \n is kept, so regex classes survive
        check_list(r#"instance!~"host\d+""#, r#"instance!~"host\\d+""#);
        check_list(r#"a="x\ny\\z""#, r#"a="x\ny\\z""#);
        // escaped quote and a comma inside quotes
        check_list(r#"msg="a \"b\", c""#, r#"msg="a \"b\", c""#);
        // several, in braces, with a trailing comma and whitespace everywhere
        check_list(r#"  { a = "1" ,b=~"x|y",  }  "#, r#"a="1", b=~"x|y""#);
        check_list(r#"a="1",b="2","#, r#"a="1", b="2""#);
        // empty value: matches alerts without the label
        check_list(r#"env="""#, r#"env="""#);
        check_list("env=", r#"env="""#);
        // a bare value runs to the next comma or brace, trimmed, and may hold spaces
        check_list("team=b c , x=y", r#"team="b c", x="y""#);
        check_list(r#"a=x\"y"#, r#"a="x\"y""#);
        // UTF-8 names and values; quoted names hold anything (the routes parser took only
        // [a-zA-Z0-9_:] and the silence parser only [a-zA-Z0-9_])
        check_list(r#""my label"="x""#, r#"my label="x""#);
        check_list("café=crème", r#"café="crème""#);
        check_list(
            r#"k8s.namespace="a", foo:bar=b"#,
            r#"k8s.namespace="a", foo:bar="b""#,
        );
        check_list(r#"{"a\"b"=~"🔥+"}"#, r#"a"b=~"🔥+""#);
        // the silence parser took a name starting with a digit, the route parser did not
        check_list("0day=x", r#"0day="x""#);
    }

    #[test]
    fn packed_label_sets_keep_names_and_values_of_every_length() {
        // lengths take one ASCII byte below 64 and more bytes above: 0, 63, 64, 4095, 4096 and
        // 300k cross each boundary; UTF-8 text and bytes that look like length bytes stay text
        let long = |n: usize| "x".repeat(n);
        let pairs = vec![
            ("__name__".to_string(), "up".to_string()),
            ("a".to_string(), long(63)),
            ("b".to_string(), long(64)),
            (long(4095), "@A\u{7f}".to_string()),
            (long(4096), "crème 🔥".to_string()),
            ("z".to_string(), long(300_000)),
        ];
        let l = Labels::from_pairs(pairs.clone());
        let got: Vec<(String, String)> = l
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut want = pairs.clone();
        want.sort();
        assert_eq!(got, want);
        assert_eq!(l.len(), 6);
        for (k, v) in &pairs {
            assert_eq!(l.get(k), Some(v.as_str()), "{}", &k[..k.len().min(8)]);
        }
        assert_eq!(l.get("c"), None);
        assert_eq!(l.get(""), None);
        assert_eq!(l.get("zz"), None);
        assert!(Labels::default().is_empty() && Labels::default().iter().next().is_none());
        // a name that is a prefix of another does not merge with it
        let ab = Labels::from_pairs([("ab", "c")]);
        let a = Labels::from_pairs([("a", "bc")]);
        assert_ne!(ab, a);
        assert_ne!(ab.fingerprint(), a.fingerprint());
        assert_eq!(
            l.filter(|k| k == "b").iter().collect::<Vec<_>>(),
            [("b", &*long(64))]
        );
    }

    #[test]
    fn bad_matcher_lists_say_what_and_where() {
        check_list("", "error at 1: no matcher");
        check_list("  {  }", "error at 6: no matcher");
        check_list(
            "severity",
            r#"error at 9: expected =, !=, =~ or !~ after "severity", found the end"#,
        );
        check_list(
            "a ~= b",
            r#"error at 3: expected =, !=, =~ or !~ after "a", found '~'"#,
        );
        check_list(r#"="x""#, "error at 1: expected a label name, found '='");
        check_list(r#"""="x""#, "error at 1: empty label name");
        check_list(r#"a="x"y"#, "error at 6: text after the closing quote");
        check_list(r#"a="x"#, "error at 3: missing closing quote");
        // positions count characters, not bytes
        check_list(r#"é="x"#, "error at 3: missing closing quote");
        check_list(
            r#"a=x"y"#,
            "error at 4: unescaped double quote in the value",
        );
        check_list(
            r#"a=~"(""#,
            "error at 4: regex does not compile: unclosed group",
        );
        check_list(
            r#"a="1",,b="2""#,
            "error at 7: empty matcher between commas",
        );
        check_list(r#",a="1""#, "error at 1: empty matcher between commas");
        check_list(
            r#"{a="1""#,
            "error at 1: opening brace without a closing brace",
        );
        check_list(r#"a="1"}"#, "error at 6: unexpected '}'");
        check_list(r#"{a="1"} b"#, "error at 9: unexpected 'b'");
        check_list(r#"{a="1"}}"#, "error at 8: unexpected '}'");
        // the message names the input
        assert_eq!(
            parse_matchers(r#"a="x"#).unwrap_err().to_string(),
            r#"invalid matcher "a=\"x" at character 3: missing closing quote"#
        );
    }

    #[test]
    fn one_matcher_takes_a_bare_value_to_the_end() {
        check_one(r#"alertname="Down""#, r#"alertname="Down""#);
        check_one("instance=~a.*", r#"instance=~"a.*""#);
        // as Alertmanager's classic parser: a bare value may hold commas and braces
        check_one("a=b,c", r#"a="b,c""#);
        check_one("a=~x{1,2}", r#"a=~"x{1,2}""#);
        check_one(" a = b c ", r#"a="b c""#);
        check_one(
            "noop",
            r#"error at 5: expected =, !=, =~ or !~ after "noop", found the end"#,
        );
        check_one(r#"{a="b"}"#, "error at 1: expected a label name, found '{'");
        check_one(
            r#"a="b", c="d""#,
            "error at 6: text after the closing quote",
        );
        check_one("   ", "error at 4: no matcher");
    }

    #[test]
    fn label_pairs_are_equality_matchers() {
        let pair = |s: &str| parse_label_pair(s).map_err(|e| e.to_string());
        assert_eq!(
            pair("severity=page"),
            Ok(("severity".into(), "page".into()))
        );
        assert_eq!(
            pair(r#"msg="a \"b\"""#),
            Ok(("msg".into(), r#"a "b""#.into()))
        );
        assert_eq!(
            pair("severity!=page"),
            Err(r#"invalid matcher "severity!=page" at character 9: expected name=value, found the operator !="#.into())
        );
        assert!(pair("severity").is_err());
    }

    #[test]
    fn names_are_checked_as_prometheus_does() {
        for (name, label, metric) in [
            ("job", true, true),
            ("_x9", true, true),
            ("9x", false, false),
            ("a:b", false, true),
            (":a", false, true),
            ("a-b", false, false),
            ("café", false, false),
            ("", false, false),
        ] {
            assert_eq!(valid_label_name(name), label, "label {name:?}");
            assert_eq!(valid_metric_name(name), metric, "metric {name:?}");
        }
    }

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
    fn with_defaults_adds_only_missing_names() {
        let l = Labels::from_pairs([("alertname", "X"), ("replica", "own")]);
        let ext = Labels::from_pairs([("replica", "a"), ("cluster", "eu")]);
        assert_eq!(
            l.with_defaults(&ext),
            Labels::from_pairs([("alertname", "X"), ("cluster", "eu"), ("replica", "own")])
        );
        assert_eq!(l.with_defaults(&Labels::default()), l);
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

    #[test]
    fn nested_repetitions_over_gos_limit_are_refused_at_compile_with_the_limit_named() {
        // (pattern, refused): Go's repeatIsValid, case for case
        let cases = [
            // 10,000: ~1.5 s a 5,000-character match before
            ("(a{1,100}){1,100}b", true),
            // exactly 1,000: allowed
            ("(a{1,10}){1,100}b", false),
            ("a{1000}", false),
            // over 1,000 in one repetition
            ("a{1001}", true),
            // `{n,}` counts its minimum
            ("(a{2,}){501}", true),
            // `*`, `+`, `?` do not count
            ("((a*)+)?{1000}", false),
            // a part repeated at most 0 times is valid whatever it holds
            ("(a{1000}){0}(b{1000})", false),
            // alternatives and concatenations are each checked
            ("x|(y{40}){30}", true),
            ("api|web|db", false),
        ];
        for (pattern, refused) in cases {
            let got = Matcher::new(MatchOp::Regex, "job", pattern);
            match (refused, got) {
                (true, Err(e)) => assert_eq!(
                    e.to_string(),
                    format!(
                        "invalid regex {pattern:?} for label job: invalid repeat count: nested repetitions repeat more than the limit of 1000 times"
                    )
                ),
                (false, Ok(_)) => {}
                (refused, got) => panic!("{pattern}: refused={refused}, got {got:?}"),
            }
        }
        // the compile limits are set where every label regex compiles
        assert!(compile_regex("a|b").unwrap().is_match("a"));
        // Unicode word characters, 500 times: ~50 MiB compiled
        let e = compile_regex(r"\w{1,500}").unwrap_err().to_string();
        assert!(e.contains(&REGEX_SIZE_LIMIT.to_string()), "{e}");
    }
}
