//! A strict, zero-copy parser for the Prometheus text exposition format (0.0.4) and, when the
//! target says so (`Content-Type: application/openmetrics-text`), the OpenMetrics additions real
//! exporters send: `# EOF`, exemplars (checked loosely and skipped), float timestamps and the
//! OpenMetrics metric types.
//!
//! Each call to [`Parser::next`] yields one [`Entry`] borrowing the input: a sample, a `# HELP`,
//! a `# TYPE` or `# EOF`. Blank lines and other comments are skipped. A malformed line is an
//! error naming its 1-based line number (and the byte column where it is known) and quoting the
//! offending text; after an error the parser stops. Nothing is ever skipped silently.
//!
//! Strictness is Prometheus's: what `promtool check metrics` (the `expfmt` text parser) calls a
//! format error is an error here, measured by `tests/it/textformat_promtool.rs` over a mutation
//! corpus. Where the two differ, the test lists the case and the reason. The rules:
//! - **Lines** end with `\n` only: a sample or `# TYPE` line ending in `\r` is an error, and so is
//!   a last line without its newline (text format). Blanks and tabs before a line are skipped.
//! - **Names**: metric names `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names `[a-zA-Z_][a-zA-Z0-9_]*`,
//!   `__name__` is reserved, a label name given twice is an error. A trailing comma in the label
//!   block is allowed, as in Prometheus. Prometheus 3's UTF-8 names are read too: a quoted label
//!   name (`a{"my.label"="v"}`), a quoted metric name as the first item of the braces
//!   (`{"my.metric", code="200"}`) and in `# HELP`/`# TYPE`. A quoted name holds no escape (a `\`
//!   in one is an error): names stay slices of the body. promtool 2.42 refuses quoted names; the
//!   agreement test lists it as a difference.
//! - **Label values** escape `\\`, `\"` and `\n` only; they are validated when the line is parsed,
//!   then decoded lazily by [`Sample::labels`] (borrowed when there is no escape). In a summary the
//!   `quantile` label, in a histogram the `le` label must be a float.
//! - **Values** follow Go's `ParseFloat` as Prometheus uses it: decimals, exponents, `NaN`,
//!   `Inf`/`+Inf`/`-Inf` in any case; hex floats, `_` and out-of-range numbers (`1e309`) are
//!   errors.
//! - **Timestamps** are integer milliseconds within `i64` (text format); OpenMetrics adds float
//!   seconds (converted to ms, rounded). Nothing may follow the timestamp, not even a blank, but an
//!   OpenMetrics exemplar.
//! - **Metadata**: `# HELP` text escapes `\\` and `\n` only. `# TYPE` is one of `counter`, `gauge`,
//!   `histogram`, `summary`, `untyped` (OpenMetrics: also `gaugehistogram`, `info`, `stateset`,
//!   `unknown`), exactly. A family (a name, or its `_sum`/`_count`/`_bucket` when the base is a
//!   summary or histogram, as `expfmt` groups them) has at most one `# HELP` and one `# TYPE`, and
//!   its `# TYPE` comes before its samples.
//! - **UTF-8**: [`text_body`] turns a response body into text or an error naming the line of the
//!   first invalid byte.
//! - **Duplicate series** in one body are not this module's concern: the ingester keeps the first.
//!
//! Why not the `prometheus-parse` crate: measured here, it drops metric names containing `:`,
//! truncates label values at `,`, drops labels whose value contains `=`, drops lines with `}` inside a
//! label value, does not unescape, and never reports an error. Each is a regression test below.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use crate::hash::BuildOneShot;

/// The exposition format of a body, from the response's `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// The Prometheus text format 0.0.4 (also what an unknown or missing content type means, as
    /// in Prometheus).
    #[default]
    Text,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Format {
    /// `application/openmetrics-text` is OpenMetrics; anything else is the text format.
    pub fn from_content_type(content_type: &str) -> Format {
        let media = content_type.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("application/openmetrics-text") {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// One line's worth of parse result.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry<'a> {
    Sample(Sample<'a>),
    /// `# HELP name text`; the text unescapes `\\` and `\n`
    Help {
        name: &'a str,
        text: Cow<'a, str>,
    },
    /// `# TYPE name kind`
    Type {
        name: &'a str,
        kind: MetricKind,
    },
    /// `# EOF` (OpenMetrics); the parser returns `None` after it
    Eof,
}

/// The metric types of `# TYPE` lines (0.0.4 and OpenMetrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
    GaugeHistogram,
    Info,
    StateSet,
    Unknown,
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    /// the raw series text: metric name plus the `{...}` block exactly as written; the ingester's cache key
    pub series: &'a str,
    pub name: &'a str,
    pub value: f64,
    /// milliseconds since the epoch, if the line has a timestamp
    pub timestamp_ms: Option<i64>,
    /// 1-based line number
    pub line: usize,
    /// the text between `{` and `}` (validated), empty when there is none
    label_block: &'a str,
    /// the label whose value was required to be a float (a summary's `quantile`, a histogram's
    /// `le`): the series text was validated with it, as a [`KnownSeries`] oracle is asked
    pub float_label: Option<&'static str>,
}

/// Asked by [`Parser::next_known`] with a sample line's raw series text (the metric name and
/// label block as written) and the label whose value must be a float there: `true` when that
/// very text was validated with that label before, so its label block is not checked again. The
/// text is found by its quotes alone before it is checked: answer `true` only for texts that
/// were validated.
pub type KnownSeries<'k, 'a> = dyn FnMut(&'a str, Option<&'static str>) -> bool + 'k;

/// Where a label block starting after its `{` at `b[start..]` ends (the index after its `}`),
/// found by its quotes alone: names and separators are not checked. For a valid block it is the
/// end [`Parser::labels`] finds; `None` when no end is on the line.
fn block_end(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start;
    loop {
        i += memchr::memchr2(b'"', b'}', b.get(i..)?)?;
        if b[i] == b'}' {
            return Some(i + 1);
        }
        // a quoted value or name: to its closing quote, over escapes
        i += 1;
        loop {
            i += memchr::memchr2(b'"', b'\\', b.get(i..)?)?;
            if b[i] == b'"' {
                i += 1;
                break;
            }
            i += 2;
        }
    }
}

/// The index after the last `}` of `b` at or after `start`: found from the end of the line,
/// which in the text format is a few bytes of value and timestamp away.
fn last_brace_end(b: &[u8], start: usize) -> Option<usize> {
    let mut i = b.len();
    while i > start {
        i -= 1;
        if b[i] == b'}' {
            return Some(i + 1);
        }
    }
    None
}

impl<'a> Sample<'a> {
    /// Labels in written order, values unescaped.
    pub fn labels(&self) -> LabelIter<'a> {
        LabelIter {
            rest: self.label_block,
        }
    }

    /// The sample with its text copied, to keep past the piece of the body it was read from.
    pub fn to_owned_sample(&self) -> OwnedSample {
        // the parser's `name` and `label_block` are slices of `series`: one copy holds all three
        // (a part from elsewhere, or an empty block, is copied after it)
        let mut text = String::from(self.series);
        let mut at = |part: &str| {
            let start = (part.as_ptr() as usize).wrapping_sub(self.series.as_ptr() as usize);
            if !part.is_empty() && start.checked_add(part.len()) <= Some(self.series.len()) {
                return start..start + part.len();
            }
            text.push_str(part);
            text.len() - part.len()..text.len()
        };
        let name = at(self.name);
        let label_block = at(self.label_block);
        OwnedSample {
            series_len: self.series.len(),
            series: text.into_boxed_str(),
            name,
            label_block,
            value: self.value,
            timestamp_ms: self.timestamp_ms,
            line: self.line,
            float_label: self.float_label,
        }
    }
}

/// A [`Sample`] that owns its text ([`Sample::to_owned_sample`]).
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedSample {
    /// the series text, then any part that was not a slice of it
    series: Box<str>,
    series_len: usize,
    name: std::ops::Range<usize>,
    label_block: std::ops::Range<usize>,
    value: f64,
    timestamp_ms: Option<i64>,
    line: usize,
    float_label: Option<&'static str>,
}

impl OwnedSample {
    /// The sample, borrowing this copy.
    pub fn sample(&self) -> Sample<'_> {
        Sample {
            series: &self.series[..self.series_len],
            name: &self.series[self.name.clone()],
            value: self.value,
            timestamp_ms: self.timestamp_ms,
            line: self.line,
            label_block: &self.series[self.label_block.clone()],
            float_label: self.float_label,
        }
    }
}

/// Iterator over a validated label block.
pub struct LabelIter<'a> {
    rest: &'a str,
}

impl<'a> Iterator for LabelIter<'a> {
    type Item = (&'a str, Cow<'a, str>);

    fn next(&mut self) -> Option<Self::Item> {
        let s = self.rest.trim_start_matches([' ', '\t', ',']);
        if s.is_empty() {
            self.rest = s;
            return None;
        }
        let (name, s) = match s.strip_prefix('"') {
            // a quoted name holds no escape and no quote (checked by the parser)
            Some(q) => {
                let close = q.find('"')?;
                (&q[..close], &q[close + 1..])
            }
            None => {
                let eq = s.find('=')?;
                (s[..eq].trim_end_matches([' ', '\t']), &s[eq..])
            }
        };
        let eq = s.find('=')?;
        let after = s[eq + 1..].trim_start_matches([' ', '\t']);
        let body = after.strip_prefix('"')?;
        let bytes = body.as_bytes();
        let mut i = 0;
        let mut escaped = false;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => {
                    escaped = true;
                    i += 2;
                }
                b'"' => break,
                _ => i += 1,
            }
        }
        let raw = &body[..i.min(body.len())];
        self.rest = body.get(i + 1..).unwrap_or("");
        let value = if escaped {
            Cow::Owned(unescape(raw, true))
        } else {
            Cow::Borrowed(raw)
        };
        Some((name, value))
    }
}

fn unescape(raw: &str, quotes: bool) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('\\') => out.push('\\'),
            Some('"') if quotes => out.push('"'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// A malformed line.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    /// 1-based line number
    pub line: usize,
    /// 1-based byte column in the line, where it is known
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.column {
            Some(c) => write!(f, "line {}, column {c}: {}", self.line, self.message),
            None => write!(f, "line {}: {}", self.line, self.message),
        }
    }
}

impl std::error::Error for ParseError {}

/// A response body as text, or an error naming the line and column of its first byte that is
/// not UTF-8. One validation pass over the body; the line is only counted on error.
pub fn text_body(body: &[u8]) -> Result<&str, ParseError> {
    text_piece(body, 0)
}

/// As [`text_body`] for a piece of a body that starts after line `lines_before` (a piece read as
/// the body arrives: [`Parser::resume`]).
pub fn text_piece(body: &[u8], lines_before: usize) -> Result<&str, ParseError> {
    std::str::from_utf8(body).map_err(|e| {
        let at = e.valid_up_to();
        let before = &body[..at];
        let line = lines_before + before.iter().filter(|&&c| c == b'\n').count() + 1;
        let start = before
            .iter()
            .rposition(|&c| c == b'\n')
            .map_or(0, |i| i + 1);
        ParseError {
            line,
            column: Some(at - start + 1),
            message: format!("invalid utf-8 (byte {:#04x})", body[at]),
        }
    })
}

/// A short quote of `s` for error messages.
fn excerpt(s: &str) -> String {
    let mut end = s.len().min(40);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    if end < s.len() {
        format!("{:?}…", &s[..end])
    } else {
        format!("{s:?}")
    }
}

/// What the body has said about one metric family so far.
#[derive(Debug, Clone, Copy, Default)]
struct Family {
    /// set by `# TYPE`, or `Untyped` by a first sample without one
    kind: Option<MetricKind>,
    /// the line of its `# TYPE`, 0 if none
    type_line: usize,
    /// the line of its `# HELP`, 0 if none
    help_line: usize,
}

/// How many recent sample names remember their family's type (a histogram's `_bucket`, `_sum`
/// and `_count` alternate: each costs a compare, not a hash lookup).
const RECENT: usize = 4;

/// What a parser carries from one piece of a body to the next ([`Parser::resume`]): the format,
/// the line count, whether it stopped, and every family named so far.
#[derive(Debug, Clone)]
pub struct ParseState {
    format: Format,
    line: usize,
    done: bool,
    /// stopped at `# EOF`: any later non-blank text is an error
    after_eof: bool,
    /// every family named so far, by name (the `_sum`/`_count`/`_bucket` of a typed summary or
    /// histogram count as their base, as in `expfmt`); owned, so the state outlives a piece
    families: HashMap<Box<str>, Family, BuildOneShot>,
}

impl ParseState {
    /// The state before the first line of a body in `format`.
    pub fn new(format: Format) -> Self {
        ParseState {
            format,
            line: 0,
            done: false,
            after_eof: false,
            families: HashMap::default(),
        }
    }

    /// Lines read so far (the 1-based number of the last one).
    pub fn line(&self) -> usize {
        self.line
    }

    /// Whether the parser has nothing more to say about any further text: after an error (not
    /// after `# EOF`, where text that is not blank is still an error).
    pub fn done(&self) -> bool {
        self.done && !self.after_eof
    }
}

/// Iterates the entries of an exposition body, or of one piece of it: a body read as it arrives
/// is parsed piece by piece, each piece whole lines ([`Parser::resume`], [`Parser::into_state`]).
pub struct Parser<'a> {
    text: &'a str,
    pos: usize,
    st: ParseState,
    recent: [(&'a str, MetricKind); RECENT],
    recent_next: usize,
}

impl<'a> Parser<'a> {
    /// A parser for the text format 0.0.4.
    pub fn new(text: &'a str) -> Self {
        Parser::with_format(text, Format::Text)
    }

    pub fn with_format(text: &'a str, format: Format) -> Self {
        Parser::resume(text, ParseState::new(format))
    }

    /// Goes on with the next piece of a body, `text`, where `state` left off. Every piece but the
    /// last ends with `\n` (a piece holds whole lines), so line numbers and the checks across
    /// lines (a family's one `# HELP` and `# TYPE`, nothing after `# EOF`) hold over the body.
    pub fn resume(text: &'a str, state: ParseState) -> Self {
        Parser {
            text,
            pos: 0,
            st: state,
            recent: [("", MetricKind::Untyped); RECENT],
            recent_next: 0,
        }
    }

    /// What the next piece resumes from.
    pub fn into_state(self) -> ParseState {
        self.st
    }
}

/// Every sample of `text` (text format), or the first error.
pub fn parse_samples(text: &str) -> Result<Vec<Sample<'_>>, ParseError> {
    let mut out = Vec::new();
    for e in Parser::new(text) {
        if let Entry::Sample(s) = e? {
            out.push(s);
        }
    }
    Ok(out)
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':'
}

fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

fn is_label_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_label_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
        i += 1;
    }
    i
}

fn token_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i] != b' ' && b[i] != b'\t' {
        i += 1;
    }
    i
}

/// The length of the character at `line[i..]`, for quoting it.
fn char_len(line: &str, i: usize) -> usize {
    line[i..].chars().next().map_or(0, char::len_utf8)
}

/// A quoted name (`"my.metric"`, Prometheus 3's UTF-8 names) starting at the `"` at `b[i]`:
/// `Ok((start, end))` of the text between the quotes (`end` is the closing quote), or why it is
/// not one. Names hold no escapes: a `\` in a quoted name is refused, not decoded, so a name is
/// always a slice of the line.
fn quoted_name(b: &[u8], i: usize) -> Result<(usize, usize), (usize, &'static str)> {
    let start = i + 1;
    let mut j = start;
    loop {
        match b.get(j) {
            None => return Err((i, "unterminated quoted name")),
            Some(b'"') => break,
            Some(b'\\') => return Err((j, "an escape in a quoted name is not supported")),
            Some(_) => j += 1,
        }
    }
    if j == start {
        return Err((i, "empty quoted name"));
    }
    Ok((start, j))
}

/// The most common values of all, integer counters and gauges with a few decimals: at most 15
/// digits with an optional sign and '.', read exactly. The digits make an integer below 2^53
/// and the divisor a power of ten below 10^16, both exact as f64, so the one rounding of the
/// division gives the correctly rounded value, as a full parse would (Clinger's fast path).
/// `None` for anything else (exponents, words, more digits), which the full parse reads.
fn short_decimal(b: &[u8]) -> Option<f64> {
    const POW10: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let (negative, digits) = match b.first()? {
        b'-' => (true, &b[1..]),
        b'+' => (false, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    let mut n = 0u64;
    let mut count = 0usize;
    let mut point = None;
    for (i, &c) in digits.iter().enumerate() {
        let d = c.wrapping_sub(b'0');
        if d < 10 {
            n = n * 10 + u64::from(d);
            count += 1;
        } else if c == b'.' && point.is_none() {
            point = Some(i);
        } else {
            return None;
        }
    }
    // "." alone, or more digits than the exact range holds
    if count == 0 || count > 15 {
        return None;
    }
    let fraction = point.map_or(0, |p| digits.len() - 1 - p);
    let v = n as f64 / POW10[fraction];
    Some(if negative { -v } else { v })
}

/// Go `ParseFloat` for exposition values, as Prometheus calls it; `None` if invalid or out of
/// range (Go's `ErrRange`: `1e309`; an underflow is 0, as in Go).
pub fn parse_value(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let first = *b.first()?;
    if let Some(v) = short_decimal(b) {
        return Some(v);
    }
    // any other number
    if first.is_ascii_digit() || first == b'-' || first == b'+' || first == b'.' {
        let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
        if unsigned.eq_ignore_ascii_case("inf") || unsigned.eq_ignore_ascii_case("infinity") {
            return Some(if first == b'-' {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            });
        }
        // Rust also accepts "inf"/"nan" words (handled above; Go rejects a signed NaN) and
        // nothing Go rejects but for these: reject anything with letters but e/E
        if unsigned
            .bytes()
            .any(|c| !(c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-')))
        {
            return None;
        }
        // integers and decimals of up to 15 digits were read above, and the words too: an
        // infinite result here is an overflow
        return s.parse::<f64>().ok().filter(|v| v.is_finite());
    }
    if s.eq_ignore_ascii_case("nan") {
        return Some(f64::NAN);
    }
    if s.eq_ignore_ascii_case("inf") || s.eq_ignore_ascii_case("infinity") {
        return Some(f64::INFINITY);
    }
    None
}

/// An OpenMetrics timestamp: integer or float seconds, to ms (rounded).
fn parse_om_timestamp(s: &str) -> Option<i64> {
    let secs = parse_value(s)?;
    let ms = (secs * 1000.0).round();
    (ms.is_finite() && ms.abs() < 9.2e18).then_some(ms as i64)
}

/// Whether a sample or metadata name `base` + `suffix` belongs to the family `base` of `kind`:
/// a summary's or histogram's `_sum` and `_count`, a histogram's `_bucket` (as `expfmt` groups
/// them), and in OpenMetrics also a counter's `_total`, the `_created` series, `_info` and a gauge
/// histogram's series.
fn belongs(suffix: &str, kind: MetricKind, format: Format) -> bool {
    use MetricKind::*;
    match (suffix, kind) {
        ("_sum" | "_count", Summary | Histogram) | ("_bucket", Histogram) => true,
        _ if format == Format::Text => false,
        ("_total" | "_created", Counter)
        | ("_created", Summary | Histogram | GaugeHistogram)
        | ("_bucket" | "_gsum" | "_gcount", GaugeHistogram)
        | ("_info", Info) => true,
        _ => false,
    }
}

impl<'a> Parser<'a> {
    /// An error at 0-based byte `col` of the current line, where the line's text starts at `col0`.
    fn err_at(&self, col0: usize, col: usize, message: String) -> ParseError {
        ParseError {
            line: self.st.line,
            column: Some(col0 + col + 1),
            message,
        }
    }

    /// The family `name` belongs to (created if new): the name itself, or the base of a typed
    /// summary, histogram (or OpenMetrics family) it is a series of.
    fn family_of(&mut self, name: &'a str) -> &'a str {
        if self.st.families.contains_key(name) {
            return name;
        }
        if let Some(u) = name.rfind('_').filter(|&u| u > 0) {
            let (base, suffix) = name.split_at(u);
            if let Some(Family { kind: Some(k), .. }) = self.st.families.get(base)
                && belongs(suffix, *k, self.st.format)
            {
                return base;
            }
        }
        self.st.families.insert(name.into(), Family::default());
        name
    }

    /// The type of the family of a sample named `name`; a family without `# TYPE` becomes
    /// untyped, so a later `# TYPE` is an error.
    fn sample_kind(&mut self, name: &'a str) -> MetricKind {
        for &(n, k) in &self.recent {
            if n == name {
                return k;
            }
        }
        let key = self.family_of(name);
        let family = self.st.families.get_mut(key).expect("created by family_of");
        let kind = *family.kind.get_or_insert(MetricKind::Untyped);
        self.recent[self.recent_next] = (name, kind);
        self.recent_next = (self.recent_next + 1) % RECENT;
        kind
    }

    /// A line starting with `#` (at `col0`): `Some` for `# HELP`, `# TYPE` and `# EOF`, `None`
    /// for any other comment. As in Prometheus, `#HELP` is metadata too, and a `# HELP` or
    /// `# TYPE` with nothing after the name is a comment.
    fn comment(&mut self, line: &'a str, col0: usize) -> Result<Option<Entry<'a>>, ParseError> {
        if self.st.format == Format::OpenMetrics && line == "# EOF" {
            return Ok(Some(Entry::Eof));
        }
        let b = line.as_bytes();
        let ks = skip_ws(b, 1);
        let ke = token_end(b, ks);
        let keyword = &line[ks..ke];
        if ke == b.len() || (keyword != "HELP" && keyword != "TYPE") {
            return Ok(None);
        }
        let ns = skip_ws(b, ke);
        let mut ne = ns;
        // the name, or a quoted UTF-8 name: `# TYPE "my.metric" counter`
        let mut name_at = (ns, ns);
        if ne < b.len() && b[ne] == b'"' {
            let (s, e) = quoted_name(b, ne)
                .map_err(|(at, why)| self.err_at(col0, at, format!("{why} in # {keyword}")))?;
            name_at = (s, e);
            ne = e + 1;
        } else if ne < b.len() && is_name_start(b[ne]) {
            ne += 1;
            while ne < b.len() && is_name_char(b[ne]) {
                ne += 1;
            }
            name_at = (ns, ne);
        }
        if ne == b.len() {
            return Ok(None);
        }
        if b[ne] != b' ' && b[ne] != b'\t' {
            return Err(self.err_at(
                col0,
                ne,
                format!(
                    "invalid metric name {} in # {keyword}",
                    excerpt(&line[ns..token_end(b, ns)])
                ),
            ));
        }
        let name = &line[name_at.0..name_at.1];
        let key = self.family_of(name);
        let ts = skip_ws(b, ne);
        if ts == b.len() {
            return Ok(None);
        }
        let text = &line[ts..];
        let line_no = self.st.line;
        if keyword == "HELP" {
            let first = self.st.families[key].help_line;
            if first != 0 {
                return Err(self.err_at(
                    col0,
                    0,
                    format!("second # HELP for {key} (the first is on line {first})"),
                ));
            }
            let tb = text.as_bytes();
            let mut escaped = false;
            let mut i = 0;
            while i < tb.len() {
                if tb[i] == b'\\' {
                    match tb.get(i + 1) {
                        Some(b'\\' | b'n') => escaped = true,
                        _ => {
                            return Err(self.err_at(
                                col0,
                                ts + i,
                                format!(
                                    "invalid escape {:?} in # HELP text (only \\\\ and \\n)",
                                    &text[i..i
                                        + 1
                                        + if i + 1 < tb.len() {
                                            char_len(text, i + 1)
                                        } else {
                                            0
                                        }]
                                ),
                            ));
                        }
                    }
                    i += 2;
                } else {
                    i += 1;
                }
            }
            self.st.families.get_mut(key).expect("created").help_line = line_no;
            let text = if escaped {
                Cow::Owned(unescape(text, false))
            } else {
                Cow::Borrowed(text)
            };
            return Ok(Some(Entry::Help { name, text }));
        }
        let family = self.st.families[key];
        if family.type_line != 0 {
            return Err(self.err_at(
                col0,
                0,
                format!(
                    "second # TYPE for {key} (the first is on line {})",
                    family.type_line
                ),
            ));
        }
        if family.kind.is_some() {
            return Err(self.err_at(col0, 0, format!("# TYPE for {key} after its samples")));
        }
        let om = self.st.format == Format::OpenMetrics;
        let kind = match text {
            "counter" => MetricKind::Counter,
            "gauge" => MetricKind::Gauge,
            "histogram" => MetricKind::Histogram,
            "summary" => MetricKind::Summary,
            "untyped" => MetricKind::Untyped,
            "gaugehistogram" if om => MetricKind::GaugeHistogram,
            "info" if om => MetricKind::Info,
            "stateset" if om => MetricKind::StateSet,
            "unknown" if om => MetricKind::Unknown,
            "gaugehistogram" | "info" | "stateset" | "unknown" => {
                return Err(self.err_at(
                    col0,
                    ts,
                    format!(
                        "metric type {text:?} of {name} is OpenMetrics, but the body is the text format (its content type is not application/openmetrics-text)"
                    ),
                ));
            }
            other => {
                return Err(self.err_at(
                    col0,
                    ts,
                    format!("unknown metric type {} for {name}", excerpt(other)),
                ));
            }
        };
        let family = self.st.families.get_mut(key).expect("created");
        family.kind = Some(kind);
        family.type_line = line_no;
        Ok(Some(Entry::Type { name, kind }))
    }

    /// A sample line (its text starting at `col0`).
    fn sample(
        &mut self,
        line: &'a str,
        col0: usize,
        known: &mut KnownSeries<'_, 'a>,
    ) -> Result<Sample<'a>, ParseError> {
        let b = line.as_bytes();
        if b[0] == b'{' {
            return self.sample_named_in_braces(line, col0);
        }
        if !is_name_start(b[0]) {
            return Err(self.err_at(col0, 0, format!("invalid metric name at {}", excerpt(line))));
        }
        let mut i = 1;
        while i < b.len() && is_name_char(b[i]) {
            i += 1;
        }
        let name = &line[..i];
        let special = self.special_label(name);
        let mut series_end = i;
        let mut label_block = "";
        let after_name = skip_ws(b, i);
        let mut j = i;
        if after_name < b.len() && b[after_name] == b'{' {
            let block_start = after_name + 1;
            // in the text format only a value and a timestamp follow the block, never a '}': the
            // last '}' of the line ends it when its series text is a known one (an unknown text,
            // or a line with a '}' after its block, is checked in full below)
            let end = if self.st.format == Format::Text {
                last_brace_end(b, block_start)
            } else {
                block_end(b, block_start)
            };
            j = match end {
                // a series text validated before is not checked again
                Some(end) if known(&line[..end], special) => end,
                _ => self.labels(line, col0, block_start, special)?,
            };
            label_block = &line[block_start..j - 1];
            series_end = j;
        } else if after_name == i && i < b.len() {
            return Err(self.err_at(
                col0,
                i,
                format!(
                    "invalid character {} after metric name {name}",
                    excerpt(&line[i..i + char_len(line, i)])
                ),
            ));
        }
        if label_block.is_empty() && series_end == i {
            // no labels: nothing to check, but the oracle finds its series for the caller
            known(name, special);
        }
        let mut s = self.sample_rest(line, col0, name, series_end, label_block, j)?;
        s.float_label = special;
        Ok(s)
    }

    /// The label whose value must be a float in the family of `name`: a summary's `quantile`,
    /// a histogram's `le`.
    fn special_label(&mut self, name: &'a str) -> Option<&'static str> {
        match self.sample_kind(name) {
            MetricKind::Summary => Some("quantile"),
            MetricKind::Histogram | MetricKind::GaugeHistogram => Some("le"),
            _ => None,
        }
    }

    /// A sample line whose metric name is the first, quoted, item of its braces (Prometheus 3's
    /// form for UTF-8 names: `{"my.metric", "my.label"="v"} 1`).
    fn sample_named_in_braces(
        &mut self,
        line: &'a str,
        col0: usize,
    ) -> Result<Sample<'a>, ParseError> {
        let b = line.as_bytes();
        let q = skip_ws(b, 1);
        if b.get(q) != Some(&b'"') {
            return Err(self.err_at(
                col0,
                q,
                format!(
                    "a sample line starting with '{{' needs its quoted metric name first, found {}",
                    excerpt(&line[q.min(line.len())..])
                ),
            ));
        }
        let (ns, ne) = quoted_name(b, q)
            .map_err(|(at, why)| self.err_at(col0, at, format!("{why} (metric name)")))?;
        let name = &line[ns..ne];
        let after = skip_ws(b, ne + 1);
        let special = self.special_label(name);
        let end = match b.get(after) {
            Some(b'}') => after + 1,
            Some(b',') => self.labels(line, col0, after + 1, special)?,
            Some(_) if b.get(skip_ws(b, after)) == Some(&b'=') => {
                return Err(self.err_at(
                    col0,
                    q,
                    format!(
                        "a sample line starting with '{{' needs its quoted metric name first, found label {name:?}"
                    ),
                ));
            }
            _ => {
                return Err(self.err_at(
                    col0,
                    after,
                    format!("expected ',' or '}}' after the metric name {name:?}"),
                ));
            }
        };
        let label_block = if b[after] == b',' {
            &line[after + 1..end - 1]
        } else {
            ""
        };
        let mut s = self.sample_rest(line, col0, name, end, label_block, end)?;
        s.float_label = special;
        Ok(s)
    }

    /// The value, timestamp and exemplar of a sample line, from byte `j` (after its series).
    fn sample_rest(
        &mut self,
        line: &'a str,
        col0: usize,
        name: &'a str,
        series_end: usize,
        label_block: &'a str,
        j: usize,
    ) -> Result<Sample<'a>, ParseError> {
        let b = line.as_bytes();
        let vstart = skip_ws(b, j);
        if vstart == b.len() {
            return Err(self.err_at(
                col0,
                vstart,
                format!("missing value for {}", excerpt(&line[..series_end])),
            ));
        }
        let vend = token_end(b, vstart);
        let vtext = &line[vstart..vend];
        let value = parse_value(vtext).ok_or_else(|| {
            self.err_at(
                col0,
                vstart,
                format!(
                    "invalid value {} for {}",
                    excerpt(vtext),
                    excerpt(&line[..series_end])
                ),
            )
        })?;
        let mut timestamp_ms = None;
        if vend < b.len() {
            let om = self.st.format == Format::OpenMetrics;
            let tstart = skip_ws(b, vend);
            if tstart == b.len() {
                return Err(self.err_at(col0, vend, "trailing whitespace after the value".into()));
            }
            let mut rest_at = tstart;
            if !(om && b[tstart] == b'#') {
                let tend = token_end(b, tstart);
                let ttext = &line[tstart..tend];
                let ts = if om {
                    parse_om_timestamp(ttext)
                } else {
                    ttext.parse::<i64>().ok()
                };
                timestamp_ms = Some(ts.ok_or_else(|| {
                    self.err_at(
                        col0,
                        tstart,
                        format!(
                            "invalid timestamp {} (integer milliseconds within 64 bits)",
                            excerpt(ttext)
                        ),
                    )
                })?);
                rest_at = tend;
                if tend < b.len() {
                    rest_at = skip_ws(b, tend);
                    if rest_at == b.len() {
                        return Err(self.err_at(
                            col0,
                            tend,
                            "trailing whitespace after the timestamp".into(),
                        ));
                    }
                }
            }
            if rest_at < b.len() {
                let rest = &line[rest_at..];
                // an OpenMetrics exemplar: ` # {labels} value [timestamp]`
                let exemplar = om
                    && rest
                        .strip_prefix('#')
                        .map(|r| r.trim_start_matches([' ', '\t']))
                        .is_some_and(|r| r.starts_with('{') && r.contains('}'));
                if !exemplar {
                    return Err(self.err_at(
                        col0,
                        rest_at,
                        format!("unexpected text {} after the sample", excerpt(rest)),
                    ));
                }
            }
        }
        Ok(Sample {
            series: &line[..series_end],
            name,
            value,
            timestamp_ms,
            line: self.st.line,
            label_block,
            float_label: None,
        })
    }

    /// Validates a label block starting after `{`; returns the index after `}`. The value of the
    /// label named `special` (a summary's `quantile`, a histogram's `le`) must be a float.
    fn labels(
        &self,
        line: &str,
        col0: usize,
        start: usize,
        special: Option<&str>,
    ) -> Result<usize, ParseError> {
        let b = line.as_bytes();
        let mut i = start;
        // label names seen so far, for the duplicate check: blocks are short, so the first 16
        // are scanned linearly (faster than hashing); past 16 every name goes into a set, so a
        // line with 80,000 labels costs linear time (a linear scan of all was quadratic: 8.8 s)
        let mut seen: [(usize, usize); 16] = [(0, 0); 16];
        let mut seen_extra: std::collections::HashSet<&str> = std::collections::HashSet::new();
        let mut nseen = 0usize;
        loop {
            i = skip_ws(b, i);
            if i >= b.len() {
                return Err(self.err_at(
                    col0,
                    i,
                    format!("unterminated label block in {}", excerpt(line)),
                ));
            }
            if b[i] == b'}' {
                return Ok(i + 1);
            }
            let (ns, ne) = if b[i] == b'"' {
                // a quoted UTF-8 label name: `"my.label"="v"`
                let (s, e) = quoted_name(b, i)
                    .map_err(|(at, why)| self.err_at(col0, at, format!("{why} (label name)")))?;
                i = e + 1;
                if matches!(b.get(skip_ws(b, i)), Some(b',' | b'}')) {
                    return Err(self.err_at(
                        col0,
                        s - 1,
                        format!(
                            "quoted name {:?} without a value: a quoted metric name goes first in the braces, with no name before them",
                            &line[s..e]
                        ),
                    ));
                }
                (s, e)
            } else {
                let ns = i;
                if !is_label_start(b[i]) {
                    return Err(self.err_at(
                        col0,
                        i,
                        format!("invalid label name at {}", excerpt(&line[i..])),
                    ));
                }
                while i < b.len() && is_label_char(b[i]) {
                    i += 1;
                }
                (ns, i)
            };
            let lname = &line[ns..ne];
            if lname == "__name__" {
                return Err(self.err_at(
                    col0,
                    ns,
                    "label name \"__name__\" is reserved: the metric name comes before the braces"
                        .into(),
                ));
            }
            let dup = if nseen < 16 {
                let dup = seen[..nseen].iter().any(|&(s, e)| &line[s..e] == lname);
                seen[nseen] = (ns, ne);
                dup
            } else {
                if nseen == 16 {
                    seen_extra.extend(seen.iter().map(|&(s, e)| &line[s..e]));
                }
                !seen_extra.insert(lname)
            };
            if dup {
                return Err(self.err_at(col0, ns, format!("duplicate label name {lname:?}")));
            }
            nseen += 1;
            i = skip_ws(b, i);
            if i >= b.len() || b[i] != b'=' {
                return Err(self.err_at(
                    col0,
                    i,
                    format!("expected '=' after label name {lname:?}"),
                ));
            }
            i = skip_ws(b, i + 1);
            if i >= b.len() || b[i] != b'"' {
                return Err(self.err_at(
                    col0,
                    i,
                    format!("expected '\"' to open the value of label {lname:?}"),
                ));
            }
            i += 1;
            let vs = i;
            loop {
                // to the next quote or backslash at once (SIMD), not a byte at a time
                match memchr::memchr2(b'"', b'\\', &b[i..]) {
                    Some(n) => i += n,
                    None => i = b.len(),
                }
                match b.get(i) {
                    None => {
                        return Err(self.err_at(
                            col0,
                            vs - 1,
                            format!("unterminated value of label {lname:?}"),
                        ));
                    }
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => match b.get(i + 1) {
                        Some(b'\\' | b'"' | b'n') => i += 2,
                        Some(_) => {
                            let esc = &line[i..i + 1 + char_len(line, i + 1)];
                            return Err(self.err_at(
                                col0,
                                i,
                                format!("invalid escape {esc:?} in the value of label {lname:?}"),
                            ));
                        }
                        None => {
                            return Err(self.err_at(
                                col0,
                                vs - 1,
                                format!("unterminated value of label {lname:?}"),
                            ));
                        }
                    },
                    Some(_) => i += 1,
                }
            }
            if special == Some(lname) {
                let raw = &line[vs..i - 1];
                if raw.contains('\\') || parse_value(raw).is_none() {
                    return Err(self.err_at(
                        col0,
                        vs,
                        format!(
                            "the value of label {lname:?} is not a float: {}",
                            excerpt(raw)
                        ),
                    ));
                }
            }
            i = skip_ws(b, i);
            match b.get(i) {
                Some(b',') => i += 1,
                Some(b'}') => return Ok(i + 1),
                Some(_) => {
                    return Err(self.err_at(
                        col0,
                        i,
                        format!(
                            "expected ',' or '}}' after the value of label {lname:?}, found {}",
                            excerpt(&line[i..])
                        ),
                    ));
                }
                None => {
                    return Err(self.err_at(
                        col0,
                        i,
                        format!("unterminated label block in {}", excerpt(line)),
                    ));
                }
            }
        }
    }
}

impl<'a> Iterator for Parser<'a> {
    type Item = Result<Entry<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_known(&mut |_, _| false)
    }
}

impl<'a> Parser<'a> {
    /// The next entry, as [`Iterator::next`], but a sample line's series text that `known` says
    /// was validated before (with the same float label) has its label block found by its quotes
    /// alone and not checked again: ~10% of a 100k-series scrape's CPU under perf. `known` is
    /// asked once for each sample line whose metric name comes before its braces.
    pub fn next_known(
        &mut self,
        known: &mut KnownSeries<'_, 'a>,
    ) -> Option<Result<Entry<'a>, ParseError>> {
        if self.st.done {
            return self.after_eof();
        }
        let text = self.text;
        while self.pos < text.len() {
            let rest = &text.as_bytes()[self.pos..];
            let (len, terminated) = match memchr::memchr(b'\n', rest) {
                Some(n) => (n, true),
                None => (rest.len(), false),
            };
            let full = &text[self.pos..self.pos + len];
            self.pos += len + 1;
            self.st.line += 1;
            let line = full.trim_start_matches([' ', '\t']);
            if line.is_empty() {
                continue;
            }
            let col0 = full.len() - line.len();
            let result = if !terminated && self.st.format == Format::Text {
                Err(self.err_at(
                    col0,
                    line.len(),
                    "the last line does not end with a newline".into(),
                ))
            } else if line.as_bytes()[0] == b'#' {
                match self.comment(line, col0) {
                    Ok(None) => continue,
                    Ok(Some(Entry::Eof)) => {
                        self.st.done = true;
                        self.st.after_eof = true;
                        // what follows is checked at the next call, in this piece or a later one
                        return Some(Ok(Entry::Eof));
                    }
                    other => other.map(|e| e.expect("some")),
                }
            } else if line.ends_with('\r') {
                Err(self.err_at(
                    col0,
                    line.len() - 1,
                    "carriage return at the end of the line (lines end with \\n only)".into(),
                ))
            } else {
                self.sample(line, col0, known).map(Entry::Sample)
            };
            if result.is_err() {
                self.st.done = true;
            }
            return Some(result);
        }
        None
    }

    /// After `# EOF`: an error for the first non-blank text after it (once), else `None`.
    fn after_eof(&mut self) -> Option<Result<Entry<'a>, ParseError>> {
        if !self.st.after_eof {
            return None;
        }
        let trailing = self.text.get(self.pos..).unwrap_or("");
        self.pos = self.text.len();
        let mut lines = trailing.split_inclusive('\n');
        match lines.position(|l| !l.trim().is_empty()) {
            Some(extra) => {
                self.st.after_eof = false;
                Some(Err(ParseError {
                    line: self.st.line + extra + 1,
                    column: None,
                    message: "content after # EOF".into(),
                }))
            }
            None => {
                self.st.line += trailing.matches('\n').count();
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one sample of `line` (its newline added when missing).
    fn one(line: &str) -> Sample<'static> {
        let text: &'static str = if line.ends_with('\n') {
            Box::leak(line.to_string().into_boxed_str())
        } else {
            Box::leak(format!("{line}\n").into_boxed_str())
        };
        let mut v = parse_samples(text).unwrap();
        assert_eq!(v.len(), 1, "{line}");
        v.remove(0)
    }

    fn labels<'a>(s: &Sample<'a>) -> Vec<(&'a str, String)> {
        s.labels().map(|(k, v)| (k, v.into_owned())).collect()
    }

    /// The error of `text` (text format, its final newline added when missing).
    fn err(text: &str) -> ParseError {
        if text.ends_with('\n') {
            parse_samples(text).unwrap_err()
        } else {
            parse_samples(&format!("{text}\n")).unwrap_err()
        }
    }

    fn om(text: &str) -> Result<Vec<Entry<'_>>, ParseError> {
        Parser::with_format(text, Format::OpenMetrics).collect()
    }

    // --- regressions of the prometheus-parse crate ---

    #[test]
    fn duplicate_label_names_are_found_past_the_first_sixteen() {
        // the first 16 names are scanned, later ones hashed: a duplicate on either side is found
        for (dup_at, of) in [(3, 5), (10, 16), (17, 40), (3, 40), (39, 40)] {
            let mut pairs: Vec<String> = (0..of).map(|i| format!("l{i}=\"v\"")).collect();
            pairs.push(format!("l{dup_at}=\"again\""));
            let text = format!("m{{{}}} 1\n", pairs.join(","));
            let err = Parser::new(&text).next().unwrap().unwrap_err();
            assert!(
                err.message
                    .contains(&format!("duplicate label name \"l{dup_at}\"")),
                "{dup_at} of {of}: {err}"
            );
        }
    }

    #[test]
    fn a_line_with_very_many_labels_parses() {
        // 50,000 distinct names: linear with the set (the quadratic scan took seconds here)
        let pairs: Vec<String> = (0..50_000).map(|i| format!("l{i}=\"v\"")).collect();
        let text = format!("m{{{}}} 1\n", pairs.join(","));
        let s = one(&text);
        assert_eq!(s.labels().count(), 50_000);
    }

    /// A sample copied to outlive its text reads as the original, whether its parts are slices
    /// of its series text (as the parser makes them) or not.
    #[test]
    fn an_owned_sample_reads_as_the_original() {
        let text = "m{a=\"1\",b=\"x\\\"y\"} 2 17\n{\"u.n\", c=\"3\"} 4\nbare 5\n";
        for s in parse_samples(text).unwrap() {
            let owned = s.to_owned_sample();
            assert_eq!(owned.sample(), s);
            assert_eq!(labels(&owned.sample()), labels(&s));
            let mut moved = s.clone();
            moved.name = "elsewhere";
            assert_eq!(moved.to_owned_sample().sample(), moved);
        }
    }

    #[test]
    fn metric_names_with_colons_are_kept() {
        let s = one("job:request_rate:5m 3\n");
        assert_eq!(s.name, "job:request_rate:5m");
        assert_eq!(s.value, 3.0);
    }

    #[test]
    fn label_values_with_commas_are_not_truncated() {
        let s = one("m{path=\"/a,b,c\",x=\"1\"} 1");
        assert_eq!(
            labels(&s),
            vec![("path", "/a,b,c".into()), ("x", "1".into())]
        );
    }

    #[test]
    fn label_values_with_equals_are_kept() {
        let s = one("m{query=\"a=b&c=d\"} 1");
        assert_eq!(labels(&s), vec![("query", "a=b&c=d".into())]);
    }

    #[test]
    fn closing_brace_inside_a_label_value_is_handled() {
        let s = one("m{tpl=\"{x}\",y=\"}\"} 2");
        assert_eq!(labels(&s), vec![("tpl", "{x}".into()), ("y", "}".into())]);
        assert_eq!(s.value, 2.0);
    }

    #[test]
    fn escapes_are_unescaped() {
        let s = one(r#"m{a="say \"hi\"",b="back\\slash",c="two\nlines"} 1"#);
        assert_eq!(
            labels(&s),
            vec![
                ("a", "say \"hi\"".into()),
                ("b", "back\\slash".into()),
                ("c", "two\nlines".into())
            ]
        );
        // no escape: borrowed
        let s = one("m{a=\"plain\"} 1");
        assert!(matches!(s.labels().next().unwrap().1, Cow::Borrowed(_)));
    }

    #[test]
    fn malformed_input_is_an_error_with_its_line_number() {
        let e = err("good 1\n# comment\n\nbad{a=\"x\" 1\ngood 2\n");
        assert_eq!(e.line, 4);
    }

    // --- format coverage ---

    #[test]
    fn special_values() {
        assert!(one("m NaN").value.is_nan());
        assert_eq!(one("m +Inf").value, f64::INFINITY);
        assert_eq!(one("m -Inf").value, f64::NEG_INFINITY);
        assert_eq!(one("m inf").value, f64::INFINITY);
        assert_eq!(one("m -1.5e-3").value, -0.0015);
        assert_eq!(one("m 1E6").value, 1e6);
        assert_eq!(one("m .5").value, 0.5);
    }

    #[test]
    fn histogram_and_summary_lines() {
        let text = "# TYPE h histogram\nh_bucket{le=\"0.1\"} 3\nh_bucket{le=\"+Inf\"} 10\nh_sum 4.2\nh_count 10\n\
                    # TYPE s summary\ns{quantile=\"0.99\"} 0.3\ns_sum 12\ns_count 40\n";
        let samples = parse_samples(text).unwrap();
        assert_eq!(samples.len(), 7);
        assert_eq!(labels(&samples[1]), vec![("le", "+Inf".into())]);
        assert_eq!(samples[4].name, "s");
        assert_eq!(labels(&samples[4]), vec![("quantile", "0.99".into())]);
    }

    #[test]
    fn help_and_type_entries() {
        let got: Vec<_> =
            Parser::new("# HELP m Some help with \\n newline.\n# TYPE m counter\nm 1\n")
                .collect::<Result<_, _>>()
                .unwrap();
        assert_eq!(
            got[0],
            Entry::Help {
                name: "m",
                text: Cow::Owned("Some help with \n newline.".into())
            }
        );
        assert_eq!(
            got[1],
            Entry::Type {
                name: "m",
                kind: MetricKind::Counter
            }
        );
        assert!(matches!(got[2], Entry::Sample(_)));
    }

    #[test]
    fn openmetrics_eof_exemplars_and_float_timestamps() {
        let text = "# TYPE a counter\na_total{x=\"1\"} 5 # {trace_id=\"abc\"} 1.0 1520879607.789\n\
                    b 2 1520879607.789\n# EOF\n";
        let got = om(text).unwrap();
        assert_eq!(got.len(), 4);
        let Entry::Sample(a) = &got[1] else { panic!() };
        assert_eq!((a.value, a.timestamp_ms), (5.0, None));
        let Entry::Sample(b) = &got[2] else { panic!() };
        assert_eq!(b.timestamp_ms, Some(1_520_879_607_789));
        assert_eq!(got[3], Entry::Eof);
        assert_eq!(
            om("a 1\n# EOF\nb 2\n").unwrap_err().message,
            "content after # EOF"
        );
        // none of this is the text format
        assert!(
            err("a_total{x=\"1\"} 5 # {trace_id=\"abc\"} 1.0\n")
                .message
                .contains("invalid timestamp \"#\"")
        );
        assert!(
            err("b 2 1520879607.789\n")
                .message
                .contains("invalid timestamp")
        );
        assert!(err("# TYPE i info\n").message.contains("is OpenMetrics"));
        // # EOF is a comment in the text format
        assert_eq!(parse_samples("a 1\n# EOF\nb 2\n").unwrap().len(), 2);
    }

    #[test]
    fn integer_timestamps_are_milliseconds() {
        assert_eq!(
            one("m 1 1395066363000").timestamp_ms,
            Some(1_395_066_363_000)
        );
        assert_eq!(one("m 1 -5").timestamp_ms, Some(-5));
    }

    #[test]
    fn trailing_comma_empty_block_spaces_and_indentation() {
        let samples =
            parse_samples("a{x=\"1\",} 1\nb{} 2\nc { y = \"2\" } 3\n\td 4\n  e{}5\n").unwrap();
        assert_eq!(labels(&samples[0]), vec![("x", "1".into())]);
        assert_eq!((samples[1].series, samples[1].value), ("b{}", 2.0));
        assert_eq!(labels(&samples[2]), vec![("y", "2".into())]);
        assert_eq!(samples[2].series, "c { y = \"2\" }");
        // blanks before a line are skipped, and a value may follow `}` directly, as in Prometheus
        assert_eq!((samples[3].name, samples[3].value), ("d", 4.0));
        assert_eq!((samples[4].series, samples[4].value), ("e{}", 5.0));
    }

    #[test]
    fn series_is_the_raw_name_and_label_block() {
        let s = one("http_requests_total{method=\"get\",code=\"200\"}   1027 1395066363000");
        assert_eq!(s.series, "http_requests_total{method=\"get\",code=\"200\"}");
        assert_eq!(s.line, 1);
    }

    #[test]
    fn malformed_lines_are_errors_naming_line_and_cause() {
        let cases: &[(&str, usize, &str)] = &[
            ("0bad 1", 1, "invalid metric name"),
            ("a 1\nm{0x=\"1\"} 1", 2, "invalid label name"),
            ("m{a=\"1\",a=\"2\"} 1", 1, "duplicate label name \"a\""),
            ("m{a=\"1} 1", 1, "unterminated value of label \"a\""),
            ("m{a=\"\\t\"} 1", 1, "invalid escape \"\\\\t\""),
            ("m", 1, "missing value"),
            ("m{a=\"1\"}", 1, "missing value"),
            ("m abc", 1, "invalid value \"abc\""),
            ("m 0x1p3", 1, "invalid value"),
            ("m 1 2 3", 1, "unexpected text \"3\""),
            ("m 1 soon", 1, "invalid timestamp \"soon\""),
            ("# TYPE m gauges", 1, "unknown metric type \"gauges\""),
            ("m{a=1} 1", 1, "expected '\"'"),
            ("m{a \"1\"} 1", 1, "expected '='"),
            ("m{a=\"1\" b=\"2\"} 1", 1, "expected ',' or '}'"),
            ("m-x 1", 1, "invalid character \"-\""),
            ("m 1 # not an exemplar", 1, "invalid timestamp \"#\""),
        ];
        for &(text, line, want) in cases {
            let e = err(text);
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.message.contains(want), "{text:?}: {e} (want {want:?})");
            assert!(e.to_string().starts_with(&format!("line {line}, column ")));
        }
    }

    #[test]
    fn parsing_stops_after_an_error() {
        let mut p = Parser::new("bad{ 1\ngood 1\n");
        assert!(p.next().unwrap().is_err());
        assert!(p.next().is_none());
    }

    #[test]
    fn plain_comments_are_skipped() {
        let samples =
            parse_samples("# just a comment\n#HELP not metadata\n# HELPER x\nm 1\n").unwrap();
        assert_eq!(samples.len(), 1);
    }

    // --- strictness: each class of error Prometheus rejects, with its line (and column) ---

    /// `(text, line, column, message part)`: the text is parsed as it is (no newline added).
    fn assert_errors(cases: &[(&str, usize, Option<usize>, &str)]) {
        for &(text, line, column, want) in cases {
            let e = parse_samples(text).expect_err(text);
            assert_eq!((e.line, e.column), (line, column), "{text:?}: {e}");
            assert!(e.message.contains(want), "{text:?}: {e} (want {want:?})");
        }
    }

    #[test]
    fn quoted_utf8_names_parse_as_prometheus_3_writes_them() {
        let s = one(r#"{"my.metric"} 1"#);
        assert_eq!(
            (s.name, s.series, s.value),
            ("my.metric", r#"{"my.metric"}"#, 1.0)
        );
        assert!(labels(&s).is_empty());

        let s = one(r#"{ "http.requests" , "my.label"="a=b", code="200", } 2 1000"#);
        assert_eq!(s.name, "http.requests");
        assert_eq!(s.timestamp_ms, Some(1000));
        assert_eq!(
            labels(&s),
            vec![("my.label", "a=b".to_string()), ("code", "200".to_string())]
        );

        let s = one(r#"legacy_name{"dotted.label"="x\"y", "ünïcode"="z"} 3"#);
        assert_eq!(s.name, "legacy_name");
        assert_eq!(
            labels(&s),
            vec![
                ("dotted.label", "x\"y".to_string()),
                ("ünïcode", "z".to_string())
            ]
        );
        // a quoted name that is a classic one is the same name
        assert_eq!(one(r#"{"up"} 1"#).name, "up");

        // metadata names the quoted family; a histogram's `le` is still checked
        let text =
            "# HELP \"my.h\" latency\n# TYPE \"my.h\" histogram\n{\"my.h_bucket\",le=\"0.5\"} 1\n";
        let entries: Vec<Entry> = Parser::new(text).collect::<Result<_, _>>().unwrap();
        assert!(matches!(entries[0], Entry::Help { name: "my.h", .. }));
        assert!(matches!(
            entries[1],
            Entry::Type {
                name: "my.h",
                kind: MetricKind::Histogram
            }
        ));
        let e = err("# TYPE \"my.h\" histogram\n{\"my.h_bucket\",le=\"x\"} 1\n");
        assert!(e.message.contains("not a float"), "{e}");
        // OpenMetrics bodies take the same names
        let v = om("{\"my.c_total\"} 1\n# EOF\n").unwrap();
        assert!(matches!(&v[0], Entry::Sample(s) if s.name == "my.c_total"));
    }

    /// A body's entries as comparable text, up to and with its first error.
    fn entries_of<'a>(text: &'a str, known: &mut KnownSeries<'_, 'a>) -> Vec<String> {
        let mut p = Parser::new(text);
        let mut out = Vec::new();
        while let Some(e) = p.next_known(known) {
            match e {
                Ok(Entry::Sample(s)) => out.push(format!(
                    "{} {} {:?} {:?} {:?} {:?}",
                    s.series,
                    s.name,
                    s.value.to_bits(),
                    s.timestamp_ms,
                    s.float_label,
                    s.labels().collect::<Vec<_>>()
                )),
                Ok(other) => out.push(format!("{other:?}")),
                Err(e) => {
                    out.push(e.to_string());
                    break;
                }
            }
        }
        out
    }

    #[test]
    fn a_known_series_text_is_not_checked_again() {
        let text = "m{a=\"1\",a=\"2\"} 1\n";
        assert!(
            Parser::new(text).next().unwrap().is_err(),
            "a label given twice"
        );
        // the oracle is trusted: a text it knows is taken as checked
        let mut yes = |_: &str, _: Option<&'static str>| true;
        let got = entries_of(text, &mut yes);
        assert!(got[0].starts_with("m{a=\"1\",a=\"2\"} m"), "{got:?}");
        // and a series without labels is asked about too, once a line
        let mut asked = Vec::new();
        let mut record = |t: &str, f: Option<&'static str>| {
            asked.push((t.to_string(), f));
            false
        };
        entries_of(
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nm 2\n",
            &mut record,
        );
        assert_eq!(
            asked,
            [
                ("h_bucket{le=\"1\"}".to_string(), Some("le")),
                ("m".to_string(), None)
            ]
        );
    }

    use proptest::strategy::Strategy;

    proptest::proptest! {
        /// A series text the parser accepted is found again by its quotes alone: a second pass
        /// whose oracle knows the first pass's series (with their float labels) yields the same
        /// entries and errors, and asks about every sample line with exactly its series text
        #[test]
        fn a_known_series_is_found_by_its_quotes_and_read_as_when_checked(
            lines in proptest::collection::vec(
                (
                    proptest::sample::select(vec!["m", "h_bucket", "s", "x y"]),
                    proptest::collection::vec(
                        (
                            proptest::sample::select(vec!["a", "le", "quantile", "b", "\"q.n\"", "1x"]),
                            proptest::collection::vec(
                                proptest::sample::select(vec![
                                    "a", "\\\"", "\\\\", "\\n", "}", ",", "=", "{", " ", "\"", "\\", "0.5",
                                ]),
                                0..5,
                            )
                            .prop_map(|v: Vec<&str>| v.concat()),
                        ),
                        0..4,
                    ),
                    proptest::sample::select(vec!["1", "2.5", "x", "1 17", "1 }", "}", "1 {a=\"}\"}"]),
                    proptest::bool::ANY,
                ),
                1..12,
            ),
        ) {
            let mut text = String::from("# TYPE h histogram\n# TYPE s summary\n");
            for (name, labels, value, braces) in &lines {
                text.push_str(name);
                if *braces {
                    let block: Vec<String> =
                        labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
                    text.push_str(&format!("{{{}}}", block.join(",")));
                }
                text.push_str(&format!(" {value}\n"));
            }
            let mut checked = std::collections::HashSet::new();
            for e in Parser::new(&text) {
                match e {
                    Ok(Entry::Sample(s)) => {
                        checked.insert((s.series.to_string(), s.float_label));
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            let mut never = |_: &str, _: Option<&'static str>| false;
            let want = entries_of(&text, &mut never);
            let mut asked = std::collections::HashSet::new();
            let mut oracle = |t: &str, f: Option<&'static str>| {
                asked.insert(t.to_string());
                checked.contains(&(t.to_string(), f))
            };
            let got = entries_of(&text, &mut oracle);
            proptest::prop_assert_eq!(&got, &want, "{:?}", text);
            for (series, _) in &checked {
                proptest::prop_assert!(asked.contains(series), "{:?} not asked in {:?}", series, text);
            }
        }

        /// The integer fast path reads what the float parser reads, bit for bit (`-0` too),
        /// for integers of up to 15 digits and past them
        #[test]
        fn an_integer_value_is_read_as_the_float_parser_reads_it(
            sign in proptest::sample::select(vec!["", "-", "+"]),
            digits in "[0-9]{1,19}",
        ) {
            let text = format!("{sign}{digits}");
            let want = text.parse::<f64>().unwrap();
            let got = parse_value(&text).unwrap();
            proptest::prop_assert_eq!(got.to_bits(), want.to_bits(), "{}", text);
        }

        /// The short-decimal fast path reads what the float parser reads, bit for bit, for
        /// decimals around its 15-digit bound, and rejects what the float parser rejects
        #[test]
        fn a_decimal_value_is_read_as_the_float_parser_reads_it(
            sign in proptest::sample::select(vec!["", "-", "+"]),
            int in "[0-9]{0,10}",
            point in proptest::sample::select(vec!["", ".", ".."]),
            fraction in "[0-9]{0,10}",
        ) {
            let text = format!("{sign}{int}{point}{fraction}");
            let want = text.parse::<f64>().ok();
            let got = parse_value(&text);
            proptest::prop_assert_eq!(got.map(f64::to_bits), want.map(f64::to_bits), "{}", text);
        }

        /// Any body made of the format's own tokens (quotes, braces, escapes, names, values,
        /// metadata) parses or fails without panicking; an error names a line of the body and
        /// a column within it, and every name a sample yields is a slice without a quote.
        #[test]
        fn any_token_soup_parses_or_fails_cleanly(
            tokens in proptest::collection::vec(
                proptest::sample::select(vec![
                    "{", "}", "\"", "\\", ",", "=", " ", "\t", "\n", "#", "# TYPE ", "# HELP ",
                    "a", "my.metric", "ü", "le", "quantile", "__name__", "1", "NaN", "+Inf",
                    "_bucket", "_sum", "counter", "histogram", "summary", "\"x\"", "\"my.l\"",
                ]),
                0..48,
            ),
            om in proptest::bool::ANY,
        ) {
            let text: String = tokens.concat();
            let lines = text.split('\n').count();
            let format = if om { Format::OpenMetrics } else { Format::Text };
            for entry in Parser::with_format(&text, format) {
                match entry {
                    Ok(Entry::Sample(s)) => {
                        proptest::prop_assert!(!s.name.contains('"'), "{text:?}");
                        for (name, _) in s.labels() {
                            proptest::prop_assert!(!name.contains('"') && !name.is_empty(), "{text:?}");
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        proptest::prop_assert!(e.line >= 1 && e.line <= lines, "{text:?}: {e}");
                        let line = text.split('\n').nth(e.line - 1).unwrap_or("");
                        if let Some(c) = e.column {
                            proptest::prop_assert!(c >= 1 && c <= line.len() + 1, "{text:?}: {e}");
                        }
                        break;
                    }
                }
            }
        }
    }

    #[test]
    fn malformed_quoted_names_are_errors_at_their_column() {
        assert_errors(&[
            ("{\"a\\\"b\"} 1\n", 1, Some(4), "escape in a quoted name"),
            ("{\"\"} 1\n", 1, Some(2), "empty quoted name"),
            ("{\"abc\n", 1, Some(2), "unterminated quoted name"),
            ("{a=\"b\"} 1\n", 1, Some(2), "quoted metric name first"),
            (
                "{\"lbl\"=\"v\"} 1\n",
                1,
                Some(2),
                "quoted metric name first",
            ),
            ("{\"m\" x} 1\n", 1, Some(6), "expected ',' or '}'"),
            ("m{\"n\"} 1\n", 1, Some(3), "without a value"),
            ("{\"m\", \"n\"} 1\n", 1, Some(7), "without a value"),
            ("{\"m\", \"__name__\"=\"x\"} 1\n", 1, Some(8), "reserved"),
            (
                "{\"m\", \"a\"=\"1\", a=\"2\"} 1\n",
                1,
                Some(16),
                "duplicate label name",
            ),
            ("{\"m\"}\n", 1, Some(6), "missing value"),
            (
                "# TYPE \"m counter\n",
                1,
                Some(8),
                "unterminated quoted name in # TYPE",
            ),
            (
                "# TYPE \"m\"x counter\n",
                1,
                Some(11),
                "invalid metric name",
            ),
        ]);
    }

    #[test]
    fn invalid_names_are_errors_at_their_line_and_column() {
        assert_errors(&[
            ("a 1\n0bad 1\n", 2, Some(1), "invalid metric name"),
            (
                "a 1\nb 2\nm{a=\"1\",0x=\"1\"} 1\n",
                3,
                Some(9),
                "invalid label name",
            ),
            ("a 1\nm{é=\"1\"} 1\n", 2, Some(3), "invalid label name"),
            ("a 1\nm.x 1\n", 2, Some(2), "invalid character \".\""),
            (
                "a 1\nm{__name__=\"x\"} 1\n",
                2,
                Some(3),
                "\"__name__\" is reserved",
            ),
            (
                "a 1\nm{a=\"1\",a=\"2\"} 1\n",
                2,
                Some(9),
                "duplicate label name \"a\"",
            ),
            (
                "a 1\n# HELP 0m text\n",
                2,
                Some(8),
                "invalid metric name \"0m\" in # HELP",
            ),
            (
                "a 1\n# TYPE m-x gauge\n",
                2,
                Some(9),
                "invalid metric name \"m-x\" in # TYPE",
            ),
        ]);
    }

    #[test]
    fn invalid_escapes_are_errors() {
        assert_errors(&[
            (
                "a 1\nm{a=\"x\\ty\"} 1\n",
                2,
                Some(7),
                "invalid escape \"\\\\t\"",
            ),
            (
                "m{a=\"x\\\"} 1\n",
                1,
                Some(5),
                "unterminated value of label \"a\"",
            ),
            (
                "a 1\n# HELP m bad \\t escape\n",
                2,
                Some(14),
                "invalid escape \"\\\\t\" in # HELP",
            ),
            (
                "# HELP m ends in \\\n",
                1,
                Some(18),
                "invalid escape \"\\\\\" in # HELP",
            ),
        ]);
        // the valid ones
        let got: Vec<_> = Parser::new("# HELP m a \\\\ b \\n c\nm{a=\"\\\\\\\"\\n\"} 1\n")
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(matches!(&got[0], Entry::Help { text, .. } if text == "a \\ b \n c"));
    }

    #[test]
    fn values_out_of_range_or_not_go_floats_are_errors() {
        for bad in [
            "1e309", "-1e309", "0x1p3", "1_000", "+NaN", "-nan", "1e", ".", "Infx", "1.2.3", "--1",
        ] {
            let e = err(&format!("a 1\nm {bad}\n"));
            assert_eq!((e.line, e.column), (2, Some(3)), "{bad}: {e}");
            assert!(e.message.contains("invalid value"), "{bad}: {e}");
        }
        // underflow is 0, as Go's ParseFloat; the largest finite value is kept
        assert_eq!(one("m 1e-400").value, 0.0);
        assert_eq!(one("m 1.7976931348623157e308").value, f64::MAX);
        assert_eq!(one("m +.5").value, 0.5);
        assert_eq!(one("m Infinity").value, f64::INFINITY);
    }

    #[test]
    fn invalid_or_out_of_range_timestamps_are_errors() {
        assert_errors(&[
            (
                "a 1\nm 1 9223372036854775808\n",
                2,
                Some(5),
                "invalid timestamp",
            ),
            ("m 1 1.5\n", 1, Some(5), "invalid timestamp \"1.5\""),
            ("m 1 1e3\n", 1, Some(5), "invalid timestamp"),
            ("m 1 -\n", 1, Some(5), "invalid timestamp"),
            (
                "m 1 12 \n",
                1,
                Some(7),
                "trailing whitespace after the timestamp",
            ),
            ("m 1 \n", 1, Some(4), "trailing whitespace after the value"),
            ("m 1 12 x\n", 1, Some(8), "unexpected text \"x\""),
        ]);
        assert_eq!(one("m 1 -9223372036854775808").timestamp_ms, Some(i64::MIN));
        assert_eq!(one("m 1 +5").timestamp_ms, Some(5));
    }

    #[test]
    fn metadata_out_of_order_or_twice_is_an_error() {
        assert_errors(&[
            (
                "m 1\n# TYPE m gauge\n",
                2,
                Some(1),
                "# TYPE for m after its samples",
            ),
            (
                "# TYPE m gauge\n# TYPE m counter\nm 1\n",
                2,
                Some(1),
                "second # TYPE for m (the first is on line 1)",
            ),
            (
                "# HELP m a\nm 1\n# HELP m b\n",
                3,
                Some(1),
                "second # HELP for m (the first is on line 1)",
            ),
            // `#HELP` is metadata too, as in Prometheus
            ("#HELP m a\n#HELP m b\n", 2, Some(1), "second # HELP for m"),
            // a summary's _sum is the summary's family
            (
                "# TYPE s summary\ns_sum 1\n# TYPE s_sum gauge\n",
                3,
                Some(1),
                "second # TYPE for s",
            ),
            (
                "# TYPE h histogram\n# HELP h x\n# HELP h_bucket y\n",
                3,
                Some(1),
                "second # HELP for h",
            ),
            (
                "# TYPE m counter \n",
                1,
                Some(10),
                "unknown metric type \"counter \"",
            ),
            (
                "# TYPE m COUNTER\n",
                1,
                Some(10),
                "unknown metric type \"COUNTER\"",
            ),
        ]);
        // without a type, _sum is a family of its own (as expfmt); the families may interleave
        assert!(
            parse_samples("x_sum 1\n# TYPE x summary\nx 2\nother 1\n# HELP m h\nm 1\nx 3\n")
                .is_ok()
        );
        // a `# TYPE` or `# HELP` with nothing after the name is a comment
        assert!(parse_samples("# TYPE m\n# HELP m\n# TYPE m \n# TYPE m gauge\nm 1\n").is_ok());
    }

    #[test]
    fn quantile_and_le_must_be_floats_in_summaries_and_histograms() {
        assert_errors(&[
            (
                "# TYPE s summary\ns{quantile=\"x\"} 1\n",
                2,
                Some(13),
                "the value of label \"quantile\" is not a float",
            ),
            (
                "# TYPE h histogram\nh_bucket{le=\"\"} 1\n",
                2,
                Some(14),
                "the value of label \"le\" is not a float",
            ),
            (
                "# TYPE h histogram\nh_sum{le=\"1\\n\"} 1\n",
                2,
                Some(11),
                "\"le\" is not a float",
            ),
        ]);
        // elsewhere they are plain labels
        assert!(
            parse_samples("g{le=\"x\",quantile=\"y\"} 1\n# TYPE s summary\ns{le=\"x\"} 1\n")
                .is_ok()
        );
    }

    #[test]
    fn line_ends_are_newlines_only_and_the_last_line_has_one() {
        assert_errors(&[
            ("a 1\r\nb 2\r\n", 1, Some(4), "carriage return"),
            ("a 1\nb 2", 2, Some(4), "does not end with a newline"),
            (
                "a 1\n# a comment",
                2,
                Some(12),
                "does not end with a newline",
            ),
        ]);
        // trailing blanks after the last newline are nothing; OpenMetrics may end at `# EOF`
        assert!(parse_samples("a 1\n  ").is_ok());
        assert!(om("a 1\n# EOF").is_ok());
        // a carriage return in a comment or help text is text
        assert!(parse_samples("# HELP a x\r\n# note\r\na 1\n").is_ok());
    }

    #[test]
    fn invalid_utf8_is_reported_at_its_line_and_column() {
        let body = b"a 1\nb{x=\"ok\"} 2\nc{x=\"\xff\"} 3\nd 4\n";
        let e = text_body(body).unwrap_err();
        assert_eq!((e.line, e.column), (3, Some(6)), "{e}");
        assert_eq!(e.to_string(), "line 3, column 6: invalid utf-8 (byte 0xff)");
        // a truncated multi-byte character on the first line
        let e = text_body(b"m{x=\"\xc3\"} 1\n").unwrap_err();
        assert_eq!((e.line, e.column), (1, Some(6)));
        assert_eq!(text_body(b"a 1\n").unwrap(), "a 1\n");
    }

    #[test]
    fn the_format_follows_the_content_type() {
        assert_eq!(
            Format::from_content_type("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            Format::OpenMetrics
        );
        for ct in [
            "text/plain; version=0.0.4",
            "",
            "application/json",
            "text/plain",
        ] {
            assert_eq!(Format::from_content_type(ct), Format::Text, "{ct}");
        }
    }
}
