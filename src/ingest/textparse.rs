//! A strict, zero-copy parser for the Prometheus text exposition format (0.0.4), plus what
//! OpenMetrics adds that real exporters send: `# EOF`, exemplars (checked loosely and skipped),
//! and float timestamps.
//!
//! Each call to [`Parser::next`] yields one [`Entry`] borrowing the input: a sample, a `# HELP`,
//! a `# TYPE` or `# EOF`. Blank lines and other comments are skipped. A malformed line is an
//! error naming its 1-based line number and quoting the offending text; after an error the parser
//! stops. Nothing is ever skipped silently.
//!
//! Decisions:
//! - **Timestamps**: a token containing `.`, `e` or `E` is OpenMetrics float seconds (converted to
//!   ms, rounded); otherwise it is 0.0.4 integer milliseconds.
//! - **Values** follow Go's `ParseFloat` for what exporters write: decimals, exponents, `NaN`,
//!   `Inf`/`+Inf`/`-Inf` in any case. Hex floats are rejected.
//! - **Labels** are validated when the line is parsed, then decoded lazily by [`Sample::labels`]
//!   (values unescape `\\`, `\"`, `\n`; borrowed when there is no escape). A trailing comma in the
//!   label block is allowed, as in Prometheus; a repeated label name is an error.
//! - **Duplicate series** in one body are not this module's concern: the ingester keeps the first.
//!
//! Why not the `prometheus-parse` crate: measured here, it drops metric names containing `:`,
//! truncates label values at `,`, drops labels whose value contains `=`, drops lines with `}` inside a
//! label value, does not unescape, and never reports an error. Each is a regression test below.

use std::borrow::Cow;
use std::fmt;

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
}

impl<'a> Sample<'a> {
    /// Labels in written order, values unescaped.
    pub fn labels(&self) -> LabelIter<'a> {
        LabelIter {
            rest: self.label_block,
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
        let eq = s.find('=')?;
        let name = s[..eq].trim_end_matches([' ', '\t']);
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
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

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

/// Iterates the entries of an exposition body.
pub struct Parser<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
    done: bool,
}

impl<'a> Parser<'a> {
    pub fn new(text: &'a str) -> Self {
        Parser {
            text,
            pos: 0,
            line: 0,
            done: false,
        }
    }
}

/// Every sample of `text`, or the first error.
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

/// Go `ParseFloat` for exposition values; `None` if invalid.
pub fn parse_value(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let first = *b.first()?;
    // fast path and the common case: a plain decimal number
    if first.is_ascii_digit() || first == b'-' || first == b'+' || first == b'.' {
        let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
        if unsigned.eq_ignore_ascii_case("inf") || unsigned.eq_ignore_ascii_case("infinity") {
            return Some(if first == b'-' {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            });
        }
        if unsigned.eq_ignore_ascii_case("nan") {
            return None; // Go rejects a signed NaN
        }
        // Rust also accepts "inf"/"nan" words, handled above; reject anything with letters but e/E
        if unsigned
            .bytes()
            .any(|c| !(c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-')))
        {
            return None;
        }
        return s.parse().ok();
    }
    if s.eq_ignore_ascii_case("nan") {
        return Some(f64::NAN);
    }
    if s.eq_ignore_ascii_case("inf") || s.eq_ignore_ascii_case("infinity") {
        return Some(f64::INFINITY);
    }
    None
}

fn parse_timestamp(s: &str) -> Option<i64> {
    if s.contains(['.', 'e', 'E']) {
        let secs = parse_value(s)?;
        let ms = (secs * 1000.0).round();
        (ms.is_finite() && ms.abs() < 9.2e18).then_some(ms as i64)
    } else {
        s.parse().ok()
    }
}

impl<'a> Parser<'a> {
    fn err(&self, message: String) -> ParseError {
        ParseError {
            line: self.line,
            message,
        }
    }

    fn comment(&self, line: &'a str) -> Result<Option<Entry<'a>>, ParseError> {
        let rest = line[1..].trim_start_matches([' ', '\t']);
        if line == "# EOF" {
            return Ok(Some(Entry::Eof));
        }
        let (keyword, after) = match rest.find([' ', '\t']) {
            Some(i) => (&rest[..i], rest[i..].trim_start_matches([' ', '\t'])),
            None => (rest, ""),
        };
        // only `# HELP` / `# TYPE` with exactly one space are metadata; anything else is a comment
        let is_meta = line.starts_with("# HELP") || line.starts_with("# TYPE");
        if !is_meta || (keyword != "HELP" && keyword != "TYPE") {
            return Ok(None);
        }
        let name_end = after.find([' ', '\t']).unwrap_or(after.len());
        let name = &after[..name_end];
        let nb = name.as_bytes();
        if nb.is_empty() {
            return Err(self.err(format!("# {keyword} without a metric name")));
        }
        if !is_name_start(nb[0]) || !nb.iter().all(|&c| is_name_char(c)) {
            return Err(self.err(format!(
                "invalid metric name {} in # {keyword}",
                excerpt(name)
            )));
        }
        let text = after[name_end..].trim_start_matches([' ', '\t']);
        if keyword == "HELP" {
            let text = if text.contains('\\') {
                Cow::Owned(unescape(text, false))
            } else {
                Cow::Borrowed(text)
            };
            return Ok(Some(Entry::Help { name, text }));
        }
        let kind = match text.trim_end_matches([' ', '\t']) {
            "counter" => MetricKind::Counter,
            "gauge" => MetricKind::Gauge,
            "histogram" => MetricKind::Histogram,
            "summary" => MetricKind::Summary,
            "untyped" => MetricKind::Untyped,
            "gaugehistogram" => MetricKind::GaugeHistogram,
            "info" => MetricKind::Info,
            "stateset" => MetricKind::StateSet,
            "unknown" => MetricKind::Unknown,
            "" => return Err(self.err(format!("# TYPE {name} without a type"))),
            other => {
                return Err(self.err(format!("unknown metric type {} for {name}", excerpt(other))));
            }
        };
        Ok(Some(Entry::Type { name, kind }))
    }

    fn sample(&self, line: &'a str) -> Result<Sample<'a>, ParseError> {
        let b = line.as_bytes();
        let mut i = 0;
        if !is_name_start(b[0]) {
            return Err(self.err(format!("invalid metric name at {}", excerpt(line))));
        }
        while i < b.len() && is_name_char(b[i]) {
            i += 1;
        }
        let name = &line[..i];
        let mut series_end = i;
        let mut label_block = "";
        let after_name = skip_ws(b, i);
        let mut j = i;
        if after_name < b.len() && b[after_name] == b'{' {
            let block_start = after_name + 1;
            j = self.labels(line, block_start)?;
            label_block = &line[block_start..j - 1];
            series_end = j;
        } else if after_name == i && i < b.len() {
            return Err(self.err(format!(
                "invalid character {} after metric name {name}",
                excerpt(&line[i..i + line[i..].chars().next().map_or(1, char::len_utf8)])
            )));
        }
        let vstart = skip_ws(b, j);
        if vstart == b.len() {
            return Err(self.err(format!(
                "missing value for {}",
                excerpt(&line[..series_end])
            )));
        }
        if vstart == j {
            return Err(self.err(format!(
                "expected a space before the value at {}",
                excerpt(&line[j..])
            )));
        }
        let vend = token_end(b, vstart);
        let vtext = &line[vstart..vend];
        let value = parse_value(vtext).ok_or_else(|| {
            self.err(format!(
                "invalid value {} for {}",
                excerpt(vtext),
                excerpt(&line[..series_end])
            ))
        })?;
        let mut k = skip_ws(b, vend);
        let mut timestamp_ms = None;
        if k < b.len() && b[k] != b'#' {
            let tend = token_end(b, k);
            let ttext = &line[k..tend];
            timestamp_ms = Some(
                parse_timestamp(ttext)
                    .ok_or_else(|| self.err(format!("invalid timestamp {}", excerpt(ttext))))?,
            );
            k = skip_ws(b, tend);
        }
        if k < b.len() {
            let rest = &line[k..];
            // an OpenMetrics exemplar: ` # {labels} value [timestamp]`
            let exemplar = rest
                .strip_prefix('#')
                .map(|r| r.trim_start_matches([' ', '\t']))
                .filter(|r| r.starts_with('{') && r.contains('}'));
            if exemplar.is_none() {
                return Err(self.err(format!(
                    "unexpected text {} after the sample",
                    excerpt(rest)
                )));
            }
        }
        Ok(Sample {
            series: &line[..series_end],
            name,
            value,
            timestamp_ms,
            line: self.line,
            label_block,
        })
    }

    /// Validates a label block starting after `{`; returns the index after `}`.
    fn labels(&self, line: &str, start: usize) -> Result<usize, ParseError> {
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
                return Err(self.err(format!("unterminated label block in {}", excerpt(line))));
            }
            if b[i] == b'}' {
                return Ok(i + 1);
            }
            let ns = i;
            if !is_label_start(b[i]) {
                return Err(self.err(format!("invalid label name at {}", excerpt(&line[i..]))));
            }
            while i < b.len() && is_label_char(b[i]) {
                i += 1;
            }
            let lname = &line[ns..i];
            let dup = if nseen < 16 {
                let dup = seen[..nseen].iter().any(|&(s, e)| &line[s..e] == lname);
                seen[nseen] = (ns, i);
                dup
            } else {
                if nseen == 16 {
                    seen_extra.extend(seen.iter().map(|&(s, e)| &line[s..e]));
                }
                !seen_extra.insert(lname)
            };
            if dup {
                return Err(self.err(format!("duplicate label name {lname:?}")));
            }
            nseen += 1;
            i = skip_ws(b, i);
            if i >= b.len() || b[i] != b'=' {
                return Err(self.err(format!("expected '=' after label name {lname:?}")));
            }
            i = skip_ws(b, i + 1);
            if i >= b.len() || b[i] != b'"' {
                return Err(self.err(format!(
                    "expected '\"' to open the value of label {lname:?}"
                )));
            }
            i += 1;
            loop {
                match b.get(i) {
                    None => {
                        return Err(self.err(format!("unterminated value of label {lname:?}")));
                    }
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => match b.get(i + 1) {
                        Some(b'\\' | b'"' | b'n') => i += 2,
                        Some(_) => {
                            let esc = &line
                                [i..i + 1 + line[i + 1..].chars().next().map_or(0, char::len_utf8)];
                            return Err(self.err(format!(
                                "invalid escape {esc:?} in the value of label {lname:?}"
                            )));
                        }
                        None => {
                            return Err(self.err(format!("unterminated value of label {lname:?}")));
                        }
                    },
                    Some(_) => i += 1,
                }
            }
            i = skip_ws(b, i);
            match b.get(i) {
                Some(b',') => i += 1,
                Some(b'}') => return Ok(i + 1),
                Some(_) => {
                    return Err(self.err(format!(
                        "expected ',' or '}}' after the value of label {lname:?}, found {}",
                        excerpt(&line[i..])
                    )));
                }
                None => {
                    return Err(self.err(format!("unterminated label block in {}", excerpt(line))));
                }
            }
        }
    }
}

impl<'a> Iterator for Parser<'a> {
    type Item = Result<Entry<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let text = self.text;
        while self.pos < text.len() {
            let rest = &text.as_bytes()[self.pos..];
            let len = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
            let mut line = &text[self.pos..self.pos + len];
            self.pos += len + 1;
            self.line += 1;
            if let Some(l) = line.strip_suffix('\r') {
                line = l;
            }
            if line.trim_start_matches([' ', '\t']).is_empty() {
                continue;
            }
            let result = if line.as_bytes()[0] == b'#' {
                match self.comment(line) {
                    Ok(None) => continue,
                    Ok(Some(Entry::Eof)) => {
                        self.done = true;
                        let trailing = text.get(self.pos..).unwrap_or("");
                        if let Some(extra) = trailing.lines().position(|l| !l.trim().is_empty()) {
                            return Some(Err(ParseError {
                                line: self.line + extra + 1,
                                message: "content after # EOF".into(),
                            }));
                        }
                        return Some(Ok(Entry::Eof));
                    }
                    other => other.map(|e| e.expect("some")),
                }
            } else {
                self.sample(line).map(Entry::Sample)
            };
            if result.is_err() {
                self.done = true;
            }
            return Some(result);
        }
        self.done = true;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Sample<'_> {
        let mut v = parse_samples(line).unwrap();
        assert_eq!(v.len(), 1, "{line}");
        v.remove(0)
    }

    fn labels<'a>(s: &Sample<'a>) -> Vec<(&'a str, String)> {
        s.labels().map(|(k, v)| (k, v.into_owned())).collect()
    }

    fn err(text: &str) -> ParseError {
        parse_samples(text).unwrap_err()
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
        let got: Vec<_> = Parser::new(text).collect::<Result<_, _>>().unwrap();
        assert_eq!(got.len(), 4);
        let Entry::Sample(a) = &got[1] else { panic!() };
        assert_eq!((a.value, a.timestamp_ms), (5.0, None));
        let Entry::Sample(b) = &got[2] else { panic!() };
        assert_eq!(b.timestamp_ms, Some(1_520_879_607_789));
        assert_eq!(got[3], Entry::Eof);
        assert_eq!(err("a 1\n# EOF\nb 2\n").message, "content after # EOF");
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
    fn crlf_trailing_comma_empty_block_and_spaces() {
        let s = parse_samples("a{x=\"1\",} 1\r\nb{} 2\r\nc { y = \"2\" } 3\n\td 4\n").unwrap_err();
        // a line that starts with whitespace is not a sample
        assert_eq!(s.line, 4);
        let samples = parse_samples("a{x=\"1\",} 1\r\nb{} 2\r\nc { y = \"2\" } 3\n").unwrap();
        assert_eq!(labels(&samples[0]), vec![("x", "1".into())]);
        assert_eq!((samples[1].series, samples[1].value), ("b{}", 2.0));
        assert_eq!(labels(&samples[2]), vec![("y", "2".into())]);
        assert_eq!(samples[2].series, "c { y = \"2\" }");
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
            ("# TYPE", 1, "# TYPE without a metric name"),
            ("# HELP", 1, "# HELP without a metric name"),
            ("# TYPE m", 1, "# TYPE m without a type"),
            ("m{a=1} 1", 1, "expected '\"'"),
            ("m{a \"1\"} 1", 1, "expected '='"),
            ("m{a=\"1\" b=\"2\"} 1", 1, "expected ',' or '}'"),
            ("m-x 1", 1, "invalid character \"-\""),
            ("m 1 # not an exemplar", 1, "unexpected text"),
        ];
        for &(text, line, want) in cases {
            let e = err(text);
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.message.contains(want), "{text:?}: {e} (want {want:?})");
            assert!(e.to_string().starts_with(&format!("line {line}: ")));
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
}
