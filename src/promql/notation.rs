//! The series notation of Prometheus test files and promtool's input_series (`1+2x3 _ stale`).
//!
//! A series description is a metric then whitespace-separated value items:
//! `metric{a="b", c="d"} 1+2x3 _ stale 5`. This module follows the series-description rules of
//! Prometheus's PromQL lexer and grammar (`promql/parser/lex.go`, `generated_parser.y`), so a
//! test file means the same thing here as it does to promtool:
//!
//! - The metric is `name`, `name{labels}`, `{labels}` or `{"name", labels}`. Label names are
//!   identifiers or quoted strings; values are `"…"` or `'…'` with Go escapes, or raw `` `…` ``.
//!   A name before the braces overrides a `__name__` label inside them.
//! - `a` is one sample; `axn` is n+1 samples of a; `a+bxn` and `a-bxn` are the n+1 samples
//!   a, a±b, …, a±nb, computed by repeated addition (`v += b`, as Prometheus does, so the floats
//!   match bit for bit rather than being a + i·b).
//! - `_` is one step without a sample; `_xn` is n steps without samples (n, not n+1).
//! - `stale` is a staleness marker (`Some` of the stale NaN).
//! - Numbers are decimal with optional fraction, exponent and `_` digit separators, or `Inf` /
//!   `NaN` in any case, each with an optional sign. Hexadecimal is not allowed (it is ambiguous
//!   with `x`); an integer with a leading zero is octal, as in Go (`010` is 8).
//! - Native histograms (`{{schema:0 …}}`) are out of scope: [`NotationError::NativeHistogram`].
//!
//! Each expanded step is one entry of the result: sample `i` belongs at `start + i·interval`.

use crate::labels::{Labels, METRIC_NAME};
use crate::store::chunk::stale_nan;

/// Most values one description may expand to; `0+1x100000000000` would otherwise exhaust memory.
pub const MAX_VALUES: usize = 10_000_000;

/// Occurs when a series description or value sequence is not in the notation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NotationError {
    /// The values contain a native histogram (`{{…}}`), which tocsin does not store; callers
    /// usually skip such series.
    #[error("native histogram values ({{{{...}}}}) are not supported")]
    NativeHistogram,
    /// The metric name or label set before the values is malformed.
    #[error("invalid metric at {token:?}: {reason}")]
    Metric { token: String, reason: &'static str },
    /// A quoted string is unterminated, has a bad escape or is not UTF-8.
    #[error("invalid string {token}: {reason}")]
    String { token: String, reason: &'static str },
    /// A value item is not `_`, `_xn`, `stale`, a number, `axn`, `a+bxn` or `a-bxn`.
    #[error("invalid series value {token:?}: {reason}")]
    Value { token: String, reason: &'static str },
    /// The count after `x` is not an unsigned decimal integer.
    #[error("invalid repetition count in {token:?}: expected an unsigned integer after x")]
    Repetition { token: String },
    /// The description expands to more than [`MAX_VALUES`] values.
    #[error("series values expand to more than {max} values at {token:?}")]
    TooManyValues { token: String, max: usize },
}

/// Parses a whole series description: `metric{a="b"} 1+2x3 _ stale 5`.
pub fn parse_series_desc(line: &str) -> Result<(Labels, Vec<Option<f64>>), NotationError> {
    let (labels, rest) = parse_metric(line)?;
    Ok((labels, parse_values(rest)?))
}

/// Parses the metric at the start of a series description and returns its labels and the rest
/// of the line (the values, still unparsed; empty or starting with whitespace).
pub fn parse_metric(line: &str) -> Result<(Labels, &str), NotationError> {
    let s = line.trim_start_matches(is_space);
    let metric_err = |at: &str, reason| NotationError::Metric {
        token: snippet(at),
        reason,
    };
    let name_len = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(s.len());
    let mut name = None;
    let mut rest = s;
    if name_len > 0 {
        if s.as_bytes()[0].is_ascii_digit() {
            return Err(metric_err(s, "a metric name cannot start with a digit"));
        }
        name = Some(&s[..name_len]);
        rest = &s[name_len..];
    }
    let mut pairs: Vec<(String, String)> = Vec::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        rest = parse_label_set(after_brace, &mut pairs)?;
    } else if name.is_none() {
        return Err(metric_err(s, "expected a metric name or a label set"));
    }
    if let Some(name) = name {
        // last one wins in from_pairs: the name before the braces overrides `__name__` inside
        pairs.push((METRIC_NAME.to_string(), name.to_string()));
    }
    if !rest.is_empty() && !rest.starts_with(is_space) {
        return Err(metric_err(
            rest,
            "expected whitespace between the metric and its values",
        ));
    }
    Ok((Labels::from_pairs(pairs), rest))
}

/// Parses a value sequence (`1+1x10 _ stale`), the part after the metric, into one entry per
/// step: `None` where there is no sample.
pub fn parse_values(s: &str) -> Result<Vec<Option<f64>>, NotationError> {
    if s.contains("{{") {
        return Err(NotationError::NativeHistogram);
    }
    let mut out = Vec::new();
    for item in s.split(is_space).filter(|t| !t.is_empty()) {
        expand_item(item, &mut out)?;
    }
    Ok(out)
}

/// Parses a number as Prometheus's parser does (Go's `ParseInt(s, 0, 64)`, then `ParseFloat`):
/// integers in decimal, `0x` hex, `0o`/leading-zero octal or `0b` binary; decimal or hex floats;
/// `Inf`/`Infinity` (optionally signed) and `NaN` in any case; `_` between digits.
pub fn parse_number(s: &str) -> Option<f64> {
    parse_go_int(s)
        .map(|i| i as f64)
        .or_else(|| parse_go_float(s))
}

/// Unquotes a PromQL string literal: `"…"` or `'…'` with Go escapes (`\n`, `\t`, `\\`, `\"`,
/// `\x41`, `\101`, `\u00e9`, `\U0001F600`, …) or raw `` `…` ``.
pub fn unquote(s: &str) -> Result<String, NotationError> {
    let err = |reason| NotationError::String {
        token: snippet(s),
        reason,
    };
    let quote = s.chars().next().ok_or_else(|| err("empty"))?;
    if s.len() < 2 || !s.ends_with(quote) || !matches!(quote, '"' | '\'' | '`') {
        return Err(err("not a quoted string"));
    }
    let inner = &s[1..s.len() - 1];
    if quote == '`' {
        if inner.contains('`') {
            return Err(err("raw string contains a backquote"));
        }
        return Ok(inner.to_string());
    }
    if inner.contains('\n') {
        return Err(err("newline in quoted string"));
    }
    let mut out: Vec<u8> = Vec::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == quote {
            return Err(err("unescaped quote inside the string"));
        }
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let e = chars
            .next()
            .ok_or_else(|| err("escape sequence not terminated"))?;
        let simple = match e {
            'a' => Some(0x07),
            'b' => Some(0x08),
            'f' => Some(0x0c),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(0x0b),
            '\\' => Some(b'\\'),
            _ if e == quote => Some(quote as u8),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            continue;
        }
        let (digits, radix) = match e {
            '0'..='7' => (3, 8),
            'x' => (2, 16),
            'u' => (4, 16),
            'U' => (8, 16),
            _ => return Err(err("unknown escape sequence")),
        };
        let mut text = String::new();
        if radix == 8 {
            text.push(e);
        }
        while text.len() < digits {
            text.push(
                chars
                    .next()
                    .ok_or_else(|| err("escape sequence not terminated"))?,
            );
        }
        let v = u32::from_str_radix(&text, radix)
            .map_err(|_| err("illegal character in escape sequence"))?;
        match e {
            'u' | 'U' => {
                let c = char::from_u32(v)
                    .ok_or_else(|| err("escape sequence is an invalid unicode code point"))?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            _ => {
                // octal and \x escapes are single bytes
                let b =
                    u8::try_from(v).map_err(|_| err("octal escape value is greater than 255"))?;
                out.push(b);
            }
        }
    }
    String::from_utf8(out).map_err(|_| err("escapes produce invalid utf-8"))
}

/// Prometheus's lexer treats these as whitespace in series descriptions.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// The start of `s`, short enough for an error message.
fn snippet(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Parses the inside of `{…}` (after the brace) into `pairs`; returns the text after `}`.
fn parse_label_set<'a>(
    mut s: &'a str,
    pairs: &mut Vec<(String, String)>,
) -> Result<&'a str, NotationError> {
    let err = |at: &str, reason| NotationError::Metric {
        token: snippet(at),
        reason,
    };
    loop {
        s = s.trim_start_matches(is_space);
        if let Some(rest) = s.strip_prefix('}') {
            return Ok(rest);
        }
        let item = s;
        let name = if s.starts_with(['"', '\'', '`']) {
            let (quoted, rest) = split_quoted(s)?;
            s = rest;
            unquote(quoted)?
        } else {
            let len = s
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(s.len());
            if len == 0 || s.as_bytes()[0].is_ascii_digit() {
                return Err(err(s, "expected a label name or \"}\""));
            }
            let name = s[..len].to_string();
            s = &s[len..];
            if !s.trim_start_matches(is_space).starts_with('=') {
                return Err(err(item, "expected \"=\" after the label name"));
            }
            name
        };
        s = s.trim_start_matches(is_space);
        if let Some(rest) = s.strip_prefix('=') {
            s = rest.trim_start_matches(is_space);
            if !s.starts_with(['"', '\'', '`']) {
                return Err(err(item, "expected a quoted label value"));
            }
            let (quoted, rest) = split_quoted(s)?;
            s = rest;
            pairs.push((name, unquote(quoted)?));
        } else {
            // `{"metric.name", …}`: a quoted string alone is the metric name
            pairs.push((METRIC_NAME.to_string(), name));
        }
        s = s.trim_start_matches(is_space);
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err(err(s, "expected \",\" or \"}\" in the label set"));
        }
    }
}

/// Splits a quoted string token off the front of `s` (which starts with its quote).
fn split_quoted(s: &str) -> Result<(&str, &str), NotationError> {
    let quote = s.chars().next().unwrap_or('"');
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        if quote != '`' && c == '\n' {
            break;
        }
        if escaped {
            escaped = false;
        } else if c == '\\' && quote != '`' {
            escaped = true;
        } else if c == quote {
            return Ok((&s[..i + 1], &s[i + 1..]));
        }
    }
    Err(NotationError::String {
        token: snippet(s),
        reason: "unterminated quoted string",
    })
}

/// Expands one value item (`_`, `_x3`, `stale`, `5`, `1x3`, `1+2x3`, `-1-2x3`) onto `out`.
fn expand_item(item: &str, out: &mut Vec<Option<f64>>) -> Result<(), NotationError> {
    let value_err = |reason| NotationError::Value {
        token: item.to_string(),
        reason,
    };
    if item == "_" {
        out.push(None);
        return Ok(());
    }
    if let Some(count) = item.strip_prefix("_x") {
        let n = repetition(item, count)?;
        reserve(item, out, n)?;
        out.extend(std::iter::repeat_n(None, n));
        return Ok(());
    }
    if item.starts_with('_') {
        return Err(value_err("expected \"_\" or \"_x<count>\""));
    }
    let (first, rest) = scan_value(item, true)?;
    if rest.is_empty() {
        out.push(Some(first));
        return Ok(());
    }
    if let Some(count) = rest.strip_prefix('x') {
        let n = repetition(item, count)?;
        let total = n.checked_add(1).ok_or_else(|| too_many(item))?;
        reserve(item, out, total)?;
        out.extend(std::iter::repeat_n(Some(first), total));
        return Ok(());
    }
    if !rest.starts_with(['+', '-']) {
        return Err(value_err(
            "expected x<count>, +<step>x<count> or -<step>x<count> after the value",
        ));
    }
    let (step, rest) = scan_value(rest, false)?;
    let Some(count) = rest.strip_prefix('x') else {
        return Err(value_err("expected x<count> after the step"));
    };
    let n = repetition(item, count)?;
    let total = n.checked_add(1).ok_or_else(|| too_many(item))?;
    reserve(item, out, total)?;
    let mut v = first;
    for _ in 0..total {
        out.push(Some(v));
        // repeated addition, exactly as Prometheus expands a+bxn
        v += step;
    }
    Ok(())
}

fn too_many(item: &str) -> NotationError {
    NotationError::TooManyValues {
        token: item.to_string(),
        max: MAX_VALUES,
    }
}

/// Checks that `n` more values fit under [`MAX_VALUES`] and reserves room for them.
fn reserve(item: &str, out: &mut Vec<Option<f64>>, n: usize) -> Result<(), NotationError> {
    match out.len().checked_add(n) {
        Some(total) if total <= MAX_VALUES => {
            out.reserve(n);
            Ok(())
        }
        _ => Err(too_many(item)),
    }
}

/// The count after `x`: an unsigned decimal integer (Go's `ParseUint(s, 10, 64)`).
fn repetition(item: &str, count: &str) -> Result<usize, NotationError> {
    let err = || NotationError::Repetition {
        token: item.to_string(),
    };
    if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    let n: u64 = count.parse().map_err(|_| err())?;
    usize::try_from(n).map_err(|_| too_many(item))
}

/// Scans a series value off the front of `s`: an optionally signed number, or `stale` when
/// `allow_stale` (only the first value of an item may be `stale`, and never signed). The step of
/// `a+bxn` is scanned with `allow_stale` false and must be signed. Returns the value and the rest.
fn scan_value(s: &str, allow_stale: bool) -> Result<(f64, &str), NotationError> {
    let err = |reason| NotationError::Value {
        token: s.to_string(),
        reason,
    };
    let (negative, signed, body) = match s.as_bytes().first() {
        Some(b'+') => (false, true, &s[1..]),
        Some(b'-') => (true, true, &s[1..]),
        _ => (false, false, s),
    };
    if !allow_stale && !signed {
        return Err(err("expected a signed step"));
    }
    let bytes = body.as_bytes();
    let starts_number = match bytes {
        [d, ..] if d.is_ascii_digit() => true,
        [b'.', d, ..] if d.is_ascii_digit() => true,
        _ => false,
    };
    let (v, rest) = if starts_number {
        let len = scan_number_len(body).ok_or_else(|| err("bad number syntax"))?;
        let v = parse_number(&body[..len]).ok_or_else(|| err("bad number syntax"))?;
        (v, &body[len..])
    } else if bytes
        .first()
        .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
    {
        // a word runs over letters, digits, `_` and `:` (so `Infx3` is one bad word, as in
        // Prometheus's lexer)
        let len = body
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(body.len());
        let word = &body[..len];
        let v = if word.eq_ignore_ascii_case("inf") {
            f64::INFINITY
        } else if word.eq_ignore_ascii_case("nan") {
            f64::NAN
        } else if word == "stale" && allow_stale && !signed {
            stale_nan()
        } else {
            return Err(err("expected a number, \"_\" or \"stale\""));
        };
        (v, &body[len..])
    } else {
        return Err(err("expected a number, \"_\" or \"stale\""));
    };
    Ok((if negative { -v } else { v }, rest))
}

/// Length of the number token at the start of `s`, following Prometheus's `scanNumber` in series
/// descriptions: `[.]digits` then digits, one `.`, one exponent with optional sign, `_` between
/// digits; the next character must be `x` (a repetition) or not alphanumeric.
fn scan_number_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let at = |i: usize| b.get(i).copied();
    let mut i = 0;
    if at(i) == Some(b'.') {
        i += 1;
    }
    if at(i).is_some_and(|c| c.is_ascii_digit()) {
        i += 1;
    }
    let (mut dot, mut exp) = (false, false);
    while let Some(c) = at(i) {
        match c {
            b'0'..=b'9' => i += 1,
            b'.' => {
                if dot || exp {
                    return None;
                }
                dot = true;
                i += 1;
                if matches!(at(i), Some(b'_' | b'.')) {
                    return None;
                }
            }
            b'e' | b'E' => {
                if exp {
                    return None;
                }
                exp = true;
                i += 1;
                if matches!(at(i), Some(b'+' | b'-')) {
                    i += 1;
                }
                if matches!(at(i), None | Some(b'.' | b'_' | b'e' | b'E')) {
                    return None;
                }
            }
            b'_' => {
                i += 1;
                if matches!(at(i), None | Some(b'.' | b'_' | b'e' | b'E')) {
                    return None;
                }
            }
            _ => break,
        }
    }
    if i == 0 {
        return None;
    }
    match at(i) {
        Some(b'x') => Some(i),
        Some(c) if c.is_ascii_alphanumeric() || c == b'_' => None,
        _ => Some(i),
    }
}

/// Whether every `_` in `s` sits between two digits (or after a base prefix), as Go requires.
fn underscores_ok(s: &str, hex: bool) -> bool {
    let b = s.as_bytes();
    let is_digit = |c: u8| c.is_ascii_digit() || (hex && c.is_ascii_hexdigit());
    let prefix = b.len() >= 2 && b[0] == b'0' && matches!(b[1] | 0x20, b'b' | b'o' | b'x');
    let start = if prefix { 2 } else { 0 };
    for i in start..b.len() {
        if b[i] != b'_' {
            continue;
        }
        let before_ok = if i == start {
            prefix
        } else {
            is_digit(b[i - 1])
        };
        let after_ok = b.get(i + 1).is_some_and(|&c| is_digit(c));
        if !before_ok || !after_ok {
            return false;
        }
    }
    true
}

/// Go's `strconv.ParseInt(s, 0, 64)`.
fn parse_go_int(s: &str) -> Option<i64> {
    let (negative, body) = match s.as_bytes().first()? {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if !underscores_ok(&lower, radix == 16) {
        return None;
    }
    let digits: String = digits.chars().filter(|&c| c != '_').collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(&digits, radix).ok()?;
    if negative {
        if magnitude == 1 << 63 {
            Some(i64::MIN)
        } else {
            i64::try_from(magnitude).ok().map(|m| -m)
        }
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// Go's `strconv.ParseFloat(s, 64)`: decimal and hex floats, `Inf`/`Infinity` with optional sign,
/// `NaN`, `_` between digits.
fn parse_go_float(s: &str) -> Option<f64> {
    let (negative, body) = match s.as_bytes().first()? {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    if body.starts_with(['+', '-']) {
        return None;
    }
    let sign = if negative { -1.0 } else { 1.0 };
    if body.eq_ignore_ascii_case("inf") || body.eq_ignore_ascii_case("infinity") {
        return Some(sign * f64::INFINITY);
    }
    if s.eq_ignore_ascii_case("nan") {
        return Some(f64::NAN);
    }
    let lower = body.to_ascii_lowercase();
    if let Some(hex) = lower.strip_prefix("0x") {
        if !underscores_ok(&lower, true) {
            return None;
        }
        let hex: String = hex.chars().filter(|&c| c != '_').collect();
        return parse_hex_float(&hex).map(|v| sign * v);
    }
    if !underscores_ok(&lower, false) {
        return None;
    }
    let dec: String = lower.chars().filter(|&c| c != '_').collect();
    // Rust's parser accepts the same decimal forms as Go (`.5`, `5.`, `1e5`) but also words
    // like `inf`; those are handled above, so only digits, `.`, `e` and signs may remain
    if !dec
        .bytes()
        .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'+' | b'-'))
    {
        return None;
    }
    dec.parse::<f64>().ok().map(|v| sign * v)
}

/// A hex float mantissa with a mandatory binary exponent: `1.8p1` (after `0x`).
fn parse_hex_float(s: &str) -> Option<f64> {
    let (mantissa, exp) = s.split_once('p')?;
    let exp: i32 = exp.parse().ok()?;
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut v = 0f64;
    for c in int.chars() {
        v = v * 16.0 + f64::from(c.to_digit(16)?);
    }
    let mut scale = 1.0 / 16.0;
    for c in frac.chars() {
        v += f64::from(c.to_digit(16)?) * scale;
        scale /= 16.0;
    }
    Some(v * 2f64.powi(exp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::is_stale;

    fn vals(s: &str) -> Vec<Option<f64>> {
        parse_values(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn some(v: &[f64]) -> Vec<Option<f64>> {
        v.iter().copied().map(Some).collect()
    }

    #[test]
    fn single_values_are_one_step_each() {
        assert_eq!(
            vals("1 2.5 -3 +4 .5 5. 1e3 1E-2"),
            some(&[1.0, 2.5, -3.0, 4.0, 0.5, 5.0, 1000.0, 0.01])
        );
    }

    #[test]
    fn increasing_sequence_has_n_plus_one_values() {
        assert_eq!(vals("0+10x3"), some(&[0.0, 10.0, 20.0, 30.0]));
        assert_eq!(vals("1+1x0"), some(&[1.0]));
    }

    #[test]
    fn decreasing_sequence_subtracts() {
        assert_eq!(vals("10-2x3"), some(&[10.0, 8.0, 6.0, 4.0]));
        assert_eq!(vals("-1-1x2"), some(&[-1.0, -2.0, -3.0]));
        // a negative step written with +: `1+-2x3` is not allowed, but `1-2x3` is
        assert!(parse_values("1+-2x3").is_err());
    }

    #[test]
    fn repeated_value_without_step_has_n_plus_one_copies() {
        assert_eq!(vals("7x3"), some(&[7.0; 4]));
        assert_eq!(vals("-7x1"), some(&[-7.0; 2]));
    }

    #[test]
    fn sequences_use_repeated_addition() {
        // 0.1 added ten times is not 0.1 * 11: Prometheus accumulates, so must we
        let v = vals("0.1+0.1x10");
        let mut acc = 0.1f64;
        for (i, x) in v.iter().enumerate() {
            assert_eq!(x.unwrap().to_bits(), acc.to_bits(), "step {i}");
            acc += 0.1;
        }
        assert_ne!(v[10].unwrap(), 0.1 + 0.1 * 10.0);
    }

    #[test]
    fn blank_is_one_missing_step_and_blank_xn_is_n() {
        assert_eq!(vals("1 _ 2"), vec![Some(1.0), None, Some(2.0)]);
        assert_eq!(vals("_x3 1"), vec![None, None, None, Some(1.0)]);
        assert_eq!(vals("_x0 1"), vec![Some(1.0)]);
    }

    #[test]
    fn stale_is_a_staleness_marker() {
        let v = vals("1 stale 2");
        assert_eq!(v.len(), 3);
        assert!(is_stale(v[1].unwrap()));
        assert!(parse_values("-stale").is_err());
        assert!(parse_values("Stale").is_err());
    }

    #[test]
    fn inf_and_nan_in_any_case_with_signs() {
        let v = vals("Inf +Inf -Inf inF -inf NaN nan");
        assert_eq!(
            &v[..5],
            &some(&[
                f64::INFINITY,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::INFINITY,
                f64::NEG_INFINITY
            ])[..]
        );
        assert!(v[5].unwrap().is_nan() && v[6].unwrap().is_nan());
        assert_eq!(vals("Inf+1x1"), some(&[f64::INFINITY; 2]));
        // a word runs on over `x`, so `Infx1` is one bad word, as in Prometheus's lexer
        assert!(parse_values("1+Infx1").is_err());
        assert!(parse_values("Infx1").is_err());
    }

    #[test]
    fn numbers_follow_go_parsing() {
        // a leading zero makes an integer octal, as Go's ParseInt with base 0 does
        assert_eq!(vals("010"), some(&[8.0]));
        assert_eq!(vals("09"), some(&[9.0]));
        assert_eq!(vals("1_000 1_0.5"), some(&[1000.0, 10.5]));
        assert!(parse_values("1__0").is_err());
        assert!(parse_values("1_").is_err());
        // no hex in series values: `0x10` is zero repeated, eleven values
        assert_eq!(vals("0x10"), some(&[0.0; 11]));
        assert!(parse_values("1.2.3").is_err());
        assert!(parse_values("1e").is_err());
        assert!(parse_values("12abc").is_err());
    }

    #[test]
    fn parse_number_is_go_parse_int_then_parse_float() {
        assert_eq!(parse_number("0x10"), Some(16.0));
        assert_eq!(parse_number("0b101"), Some(5.0));
        assert_eq!(parse_number("0o17"), Some(15.0));
        assert_eq!(parse_number("017"), Some(15.0));
        assert_eq!(parse_number("-12"), Some(-12.0));
        assert_eq!(parse_number("1.5e3"), Some(1500.0));
        assert_eq!(parse_number("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_number("-infinity"), Some(f64::NEG_INFINITY));
        assert!(parse_number("NaN").unwrap().is_nan());
        assert_eq!(parse_number("0x1p-2"), Some(0.25));
        assert_eq!(parse_number("99999999999999999999"), Some(1e20));
        assert_eq!(parse_number("abc"), None);
        assert_eq!(parse_number(""), None);
        assert_eq!(parse_number("{} 1"), None);
    }

    #[test]
    fn malformed_items_name_the_token() {
        for bad in [
            "1+2", "1x", "1x-1", "1x1.5", "1+2x", "x3", "Infx2", "foo", "1 + 2x3", "_3", "1+2x3x4",
        ] {
            let err = parse_values(bad).expect_err(bad);
            let msg = err.to_string();
            assert!(msg.starts_with("invalid"), "{bad}: {msg}");
        }
        let msg = parse_values("1 2 bogus").unwrap_err().to_string();
        assert!(msg.contains("\"bogus\""), "{msg}");
    }

    #[test]
    fn native_histograms_are_a_distinct_error() {
        assert_eq!(
            parse_values("{{schema:0 sum:1 count:2}}x3"),
            Err(NotationError::NativeHistogram)
        );
        assert_eq!(
            parse_series_desc("m 1 {{schema:0 sum:1}}"),
            Err(NotationError::NativeHistogram)
        );
    }

    #[test]
    fn metric_with_name_and_labels() {
        let (l, v) = parse_series_desc(r#"http_requests{job="api", instance="0"} 0+10x2"#).unwrap();
        assert_eq!(
            l,
            Labels::from_pairs([
                ("__name__", "http_requests"),
                ("job", "api"),
                ("instance", "0")
            ])
        );
        assert_eq!(v, some(&[0.0, 10.0, 20.0]));
    }

    #[test]
    fn metric_forms() {
        let name_only = Labels::from_pairs([("__name__", "x")]);
        for line in [
            "x 1",
            "x{} 1",
            r#"{__name__="x"} 1"#,
            r#"{"x"} 1"#,
            r#"x{__name__="x"} 1"#,
            "\tx\t1",
            "x 1  ",
        ] {
            let (l, v) = parse_series_desc(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            assert_eq!(l, name_only, "{line:?}");
            assert_eq!(v, some(&[1.0]), "{line:?}");
        }
        // the name before the braces wins over __name__ inside
        let (l, _) = parse_series_desc(r#"a{__name__="b"} 1"#).unwrap();
        assert_eq!(l.metric_name(), Some("a"));
        // colons in names, keywords as names, trailing comma, label without a name
        let (l, _) = parse_series_desc(r#"ns:rule:rate5m{a="1",} 1"#).unwrap();
        assert_eq!(l.metric_name(), Some("ns:rule:rate5m"));
        let (l, _) = parse_series_desc(r#"{a="1", "b.c"="2"} 1"#).unwrap();
        assert_eq!(l, Labels::from_pairs([("a", "1"), ("b.c", "2")]));
        let (l, _) = parse_series_desc("sum 1").unwrap();
        assert_eq!(l.metric_name(), Some("sum"));
    }

    #[test]
    fn metric_without_values_is_empty() {
        let (l, v) = parse_series_desc(r#"{a="b"}"#).unwrap();
        assert_eq!(l, Labels::from_pairs([("a", "b")]));
        assert!(v.is_empty());
    }

    #[test]
    fn label_values_take_go_escapes() {
        let (l, _) = parse_series_desc(
            r#"m{a="x\"y", b='it\'s', c=`raw\n`, d="\x41\101\u00e9\U0001F600", e="t\tn\n\\"} 1"#,
        )
        .unwrap();
        assert_eq!(l.get("a"), Some("x\"y"));
        assert_eq!(l.get("b"), Some("it's"));
        assert_eq!(l.get("c"), Some("raw\\n"));
        assert_eq!(l.get("d"), Some("AAé😀"));
        assert_eq!(l.get("e"), Some("t\tn\n\\"));
    }

    #[test]
    fn malformed_metrics() {
        for bad in [
            "1 2 3",
            r#"m{a="b"}1"#,
            r#"m {a="b"} 1"#,
            r#"m{a="b" 1"#,
            r#"m{a=b} 1"#,
            r#"m{a} 1"#,
            r#"m{a="b} 1"#,
            r#"m{a="\q"} 1"#,
            r#"m{a="\xc5"} 1"#,
            r#"m{,} 1"#,
        ] {
            assert!(parse_series_desc(bad).is_err(), "{bad:?} should fail");
        }
        let msg = parse_series_desc(r#"m{a="\q"} 1"#).unwrap_err().to_string();
        assert_eq!(msg, r#"invalid string "\q": unknown escape sequence"#);
    }

    #[test]
    fn unquote_forms() {
        assert_eq!(unquote(r#""a\"b""#).unwrap(), "a\"b");
        assert_eq!(unquote("`a\\b`").unwrap(), "a\\b");
        assert_eq!(unquote("''").unwrap(), "");
        assert!(unquote(r#""a"b""#).is_err());
        assert!(unquote(r#""abc"#).is_err());
        assert!(unquote("abc").is_err());
    }

    #[test]
    fn expansion_is_capped() {
        let err = parse_values("0+1x100000000000").unwrap_err();
        assert!(matches!(err, NotationError::TooManyValues { .. }), "{err}");
        assert!(matches!(
            parse_values("_x99999999999999999999").unwrap_err(),
            NotationError::Repetition { .. }
        ));
    }
}
