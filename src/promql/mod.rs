//! The query engine: Prometheus's vector semantics over a [`Storage`], with PromQL text as one
//! front end (parsed by the `promql-parser` crate, AST only) and Rhai scripts as the other
//! (`crate::promql::rhai`).
//!
//! The engine is pure: it reads a storage snapshot at the evaluation time it is given, does no
//! I/O of its own and never reads the clock. Times are milliseconds since the Unix epoch.
//!
//! - [`Engine::instant`] evaluates an expression at one time (what rules do).
//! - [`Engine::range`] evaluates it at every step of a range (a matrix, one series per label set).
//! - [`MemStorage`] is an in-memory [`Storage`] for tests and rule unit tests; [`crate::store::Store`]
//!   is the daemon's.

pub mod aggregate;
pub mod binary;
mod eval;
pub(crate) use eval::convert_matchers;
mod functions;
pub mod json;
mod memstore;
pub mod notation;
pub mod rhai;

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use eval::{Compat, Engine, EngineOptions, Evaluator, MAX_SAMPLES, MAX_SUBQUERY_STEPS};
pub use functions::almost_equal;
pub use memstore::MemStorage;

use crate::labels::{Labels, Matcher};
use crate::store::{SeriesSamples, SeriesVisitor, Store, StoreError};

/// One element of an instant vector. `t` is the time of the sample a selector read (what
/// `timestamp()` returns); every other operation sets it to the evaluation time.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub metric: Labels,
    pub t: i64,
    pub v: f64,
}

/// One series of a range vector or of a range query's result, points ascending in time.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub metric: Labels,
    pub points: Vec<(i64, f64)>,
}

/// The result of an expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar(f64),
    String(String),
    Vector(Vec<Sample>),
    Matrix(Vec<Series>),
}

impl Value {
    /// The PromQL type name, as in Prometheus's error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::String(_) => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Scalar(v) => writeln!(f, "scalar: {}", format_float(*v)),
            Value::String(s) => writeln!(f, "string: {s:?}"),
            Value::Vector(samples) => {
                for s in samples {
                    writeln!(f, "{} {}", s.metric, format_float(s.v))?;
                }
                Ok(())
            }
            Value::Matrix(series) => {
                for s in series {
                    write!(f, "{} =>", s.metric)?;
                    for (t, v) in &s.points {
                        write!(f, " {} @{}", format_float(*v), *t as f64 / 1000.0)?;
                    }
                    writeln!(f)?;
                }
                Ok(())
            }
        }
    }
}

/// A float as Prometheus prints it (`NaN`, `+Inf`, `-Inf`, shortest round-trip otherwise).
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// Occurs when an expression cannot be parsed or evaluated. Each error concerns one expression;
/// nothing else is affected.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum QueryError {
    /// The text is not valid PromQL (the crate's message names the position where it can).
    #[error("parse error in {expr:?}: {message}")]
    Parse { expr: String, message: String },
    /// The expression is valid syntax but cannot be evaluated (wrong types, many-to-many
    /// matching, a bad parameter).
    #[error("{0}")]
    Eval(String),
    /// The storage failed to read.
    #[error("storage read failed: {0}")]
    Storage(String),
    /// A limit (samples loaded, subquery steps, range query steps) was exceeded; the text names
    /// the limit.
    #[error("{0}")]
    Limit(String),
    /// The query was cancelled through its [`Cancel`] (its timeout fired, the daemon is shutting
    /// down) and stopped before its end.
    #[error("{0}")]
    Cancelled(CancelReason),
}

/// Why a query was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CancelReason {
    /// The caller's time limit passed (the API's `timeout`, waiting for a query slot included).
    #[error("query timed out after {}s in expression evaluation", .0.as_secs_f64())]
    TimedOut(Duration),
    /// The daemon is shutting down.
    #[error("query cancelled: the daemon is shutting down")]
    ShuttingDown,
    /// Nobody waits for the answer any more (the HTTP client went away).
    #[error("query cancelled: nobody waits for its answer")]
    Abandoned,
    /// A rule group's evaluation ran past its budget (the group's interval): the rules it had
    /// not finished were stopped.
    #[error("evaluation stopped: group exceeded its budget of {}", crate::duration::PromDuration(*.0))]
    GroupBudget(Duration),
}

/// A query's cancellation token. Whoever runs a query holds one (the API handler trips it when
/// the request's timeout fires; the daemon's shutdown trips the server's root token, which every
/// query's token is a [`Cancel::child`] of), and the engine checks it in its loops: every
/// [`CANCEL_CHECK_EVERY`] nodes it evaluates (so per step of a range query or subquery) and per
/// series a range selection reads. A check is one or two atomic loads. Before, a timed-out query
/// kept a blocking thread busy to its end (`count_over_time(up[1y:1ms])`: ~1.5 h), and the
/// runtime waited for it at shutdown.
#[derive(Clone, Debug, Default)]
pub struct Cancel {
    own: Arc<OnceLock<CancelReason>>,
    parent: Option<Arc<OnceLock<CancelReason>>>,
}

/// How many expression nodes the engine evaluates between two looks at its [`Cancel`]: a
/// node costs at least ~100 ns, so a cancelled query stops within microseconds, and the check
/// costs nothing measurable.
pub const CANCEL_CHECK_EVERY: u32 = 64;

impl Cancel {
    /// A token nobody has tripped yet.
    pub fn new() -> Self {
        Cancel::default()
    }

    /// A token that is cancelled when this one is (or when it is itself): a query's token under
    /// the server's root token. One level: a child's children do not see this one.
    pub fn child(&self) -> Cancel {
        Cancel {
            own: Arc::default(),
            parent: Some(self.own.clone()),
        }
    }

    /// Cancels with `reason`; the first reason given stays.
    pub fn cancel(&self, reason: CancelReason) {
        let _ = self.own.set(reason);
    }

    /// Why the token was cancelled, or `None` while it is not.
    pub fn reason(&self) -> Option<CancelReason> {
        self.own
            .get()
            .or_else(|| self.parent.as_ref().and_then(|p| p.get()))
            .copied()
    }
}

/// Where the engine reads series from. Samples are ascending in time and include staleness
/// markers as stored (see [`crate::store::is_stale`]).
pub trait Storage {
    /// Samples in [mint, maxt] (ms, inclusive) of every series matching all matchers; series with
    /// no sample in the range may be left out.
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, QueryError>;

    /// Calls `f` with each matching series' samples in [mint, maxt], as [`Storage::select`]
    /// returns them; stores that can avoid materializing every series override it.
    fn select_each(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        f: &mut SeriesVisitor<'_>,
    ) -> Result<(), QueryError> {
        for s in self.select(matchers, mint, maxt)? {
            f(&s.labels, &s.samples);
        }
        Ok(())
    }

    /// For each matching series, its newest sample in (t - lookback, t] unless that sample is a
    /// staleness marker. The default reads the range; stores with a faster path override it.
    fn latest(
        &self,
        matchers: &[Matcher],
        t: i64,
        lookback: i64,
    ) -> Result<Vec<(Arc<Labels>, i64, f64)>, QueryError> {
        Ok(newest_fresh(self.select(matchers, t - lookback + 1, t)?))
    }
}

/// Each series' newest sample unless it is a staleness marker: an instant lookup over a range
/// read, for `Storage` implementations without a faster path.
pub fn newest_fresh(series: Vec<SeriesSamples>) -> Vec<(Arc<Labels>, i64, f64)> {
    series
        .into_iter()
        .filter_map(|s| {
            let &(st, v) = s.samples.last()?;
            (!crate::store::is_stale(v)).then_some((s.labels, st, v))
        })
        .collect()
}

impl From<StoreError> for QueryError {
    fn from(e: StoreError) -> Self {
        QueryError::Storage(e.to_string())
    }
}

impl Storage for Store {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, QueryError> {
        Ok(Store::select(self, matchers, mint, maxt)?)
    }

    fn select_each(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        f: &mut SeriesVisitor<'_>,
    ) -> Result<(), QueryError> {
        Ok(Store::select_each(self, matchers, mint, maxt, f)?)
    }

    fn latest(
        &self,
        matchers: &[Matcher],
        t: i64,
        lookback: i64,
    ) -> Result<Vec<(Arc<Labels>, i64, f64)>, QueryError> {
        Ok(Store::latest(self, matchers, t, lookback)?)
    }
}

/// The deepest expression tocsin parses: a bound on the syntax tree's depth, so parsing,
/// evaluating and dropping an expression never overflows a thread's stack (before, one API
/// request with `abs(` nested 1,400 deep, `up+up+…` 6,000 times or unary `-` 20,000 times
/// aborted the daemon). Rule expressions are rarely deeper than 20; the test
/// `deepest_expressions_fit_a_small_stack` runs the worst shapes at this depth through parse,
/// evaluation and drop in a debug build on half the stack the daemon's threads get
/// ([`crate::daemon::THREAD_STACK_BYTES`]).
pub const MAX_EXPR_DEPTH: usize = 128;

/// The names of PromQL's functions (Prometheus 3.x, the parser's table), for suggestions when
/// an expression calls an unknown one.
pub const FUNCTION_NAMES: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count_over_time",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "deg",
    "delta",
    "deriv",
    "exp",
    "floor",
    "histogram_avg",
    "histogram_count",
    "histogram_fraction",
    "histogram_quantile",
    "histogram_stddev",
    "histogram_stdvar",
    "histogram_sum",
    "double_exponential_smoothing",
    "first_over_time",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "mad_over_time",
    "max_over_time",
    "min_over_time",
    "minute",
    "month",
    "pi",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rad",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sin",
    "sinh",
    "sort",
    "sort_by_label",
    "sort_by_label_desc",
    "sort_desc",
    "sqrt",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "tan",
    "tanh",
    "time",
    "timestamp",
    "vector",
    "year",
];

/// A parse error's text with a suggestion where the parser names an unknown function close to
/// a known one (`unknown function with name 'rte', did you mean rate?`), and the function's
/// name, to point at it.
pub fn explain_parse_error(message: &str) -> (String, Option<String>) {
    let unknown = message
        .strip_prefix("unknown function with name '")
        .and_then(|rest| rest.strip_suffix('\''));
    match unknown {
        Some(name) => {
            let text = match crate::error::nearest(name, FUNCTION_NAMES.iter().copied()) {
                Some(near) => format!("{message}, did you mean {near}?"),
                None => message.to_string(),
            };
            (text, Some(name.to_string()))
        }
        None => (message.to_string(), None),
    }
}

/// Parses PromQL text into the crate's AST. Expressions deeper than [`MAX_EXPR_DEPTH`] are
/// refused before the parser sees them.
pub fn parse(expr: &str) -> Result<promql_parser::parser::Expr, QueryError> {
    check_escapes(expr).map_err(|message| QueryError::Parse {
        expr: expr.to_string(),
        message,
    })?;
    let depth = depth_bound(expr);
    if depth > MAX_EXPR_DEPTH {
        return Err(QueryError::Parse {
            expr: truncated(expr),
            message: format!(
                "expression nests {depth} levels deep (brackets and operators), more than the limit of {MAX_EXPR_DEPTH}"
            ),
        });
    }
    promql_parser::parser::parse(expr).map_err(|message| QueryError::Parse {
        expr: expr.to_string(),
        message,
    })
}

/// An upper bound on the depth of the syntax tree of `expr`, read from the text alone: the
/// deepest bracket nesting plus the number of operator characters and keyword operators outside
/// string literals. Every level of the tree is a bracket (calls, aggregations, subqueries,
/// parentheses) or an operator, so the tree is never deeper than this; it over-counts (a `-` in
/// `1e-3` or an offset), which only makes the bound safer. Linear, no recursion.
fn depth_bound(expr: &str) -> usize {
    let b = expr.as_bytes();
    let (mut depth, mut max_depth, mut ops) = (0usize, 0usize, 0usize);
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if let Some(q) = quote {
            if c == b'\\' && q != b'`' {
                i += 1;
            } else if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        match c {
            b'"' | b'\'' | b'`' => quote = Some(c),
            b'(' | b'[' | b'{' => {
                depth += 1;
                max_depth = max_depth.max(depth);
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'<' | b'>' | b'=' | b'!' => ops += 1,
            b'#' => {
                // a comment runs to the end of the line
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
                {
                    i += 1;
                }
                let word = &expr[start..i];
                if ["and", "or", "unless", "atan2"]
                    .iter()
                    .any(|k| word.eq_ignore_ascii_case(k))
                {
                    ops += 1;
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    max_depth.saturating_add(ops)
}

/// `expr` for an error message: at most 100 characters.
fn truncated(expr: &str) -> String {
    match expr.char_indices().nth(100) {
        Some((i, _)) => format!("{}…", &expr[..i]),
        None => expr.to_string(),
    }
}

/// Rejects byte escapes (`\xff`, `\377`) that are not UTF-8 on their own: Go strings may hold
/// such bytes, ours cannot, and the parser crate would silently turn them into other characters.
fn check_escapes(expr: &str) -> Result<(), String> {
    let b = expr.as_bytes();
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match quote {
            None if matches!(c, b'"' | b'\'' | b'`') => quote = Some(c),
            None => {}
            Some(b'`') if c == b'`' => quote = None,
            Some(b'`') => {}
            Some(q) if c == q => quote = None,
            Some(_) if c == b'\\' && i + 1 < b.len() => {
                let high = match b[i + 1] {
                    b'x' => b
                        .get(i + 2)
                        .is_some_and(|h| matches!(h, b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F')),
                    b'2'..=b'3' => b.get(i + 2).is_some_and(|d| d.is_ascii_digit()),
                    _ => false,
                };
                if high {
                    let end = (i + 4).min(b.len());
                    return Err(format!(
                        "escape {} at position {i} is a byte that is not valid utf-8 on its own",
                        String::from_utf8_lossy(&b[i..end])
                    ));
                }
                i += 1;
            }
            Some(_) => {}
        }
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_function_is_one_the_parser_knows() {
        for name in FUNCTION_NAMES {
            if let Err(e) = promql_parser::parser::parse(&format!("{name}()")) {
                assert!(!e.contains("unknown function"), "{name}: {e}");
            }
        }
        let (text, name) = explain_parse_error("unknown function with name 'rte'");
        assert_eq!(text, "unknown function with name 'rte', did you mean rate?");
        assert_eq!(name.as_deref(), Some("rte"));
    }

    /// The shapes that overflowed the stack, `n` levels deep.
    fn deep(n: usize) -> Vec<(&'static str, String)> {
        vec![
            ("calls", format!("{}up{}", "abs(".repeat(n), ")".repeat(n))),
            (
                "sort_desc",
                format!("{}up{}", "sort_desc(".repeat(n), ")".repeat(n)),
            ),
            ("binary chain", vec!["up"; n + 1].join("+")),
            ("unary minus", format!("{}up", "-".repeat(n))),
            (
                "parentheses",
                format!("{}up{}", "(".repeat(n), ")".repeat(n)),
            ),
            (
                "subqueries",
                format!("{}up{}", "max_over_time(".repeat(n), "[15s:15s])".repeat(n)),
            ),
        ]
    }

    #[test]
    fn expressions_deeper_than_the_limit_are_refused_with_the_limit_named() {
        for n in [MAX_EXPR_DEPTH + 1, 1_400, 6_000, 20_000] {
            for (shape, expr) in deep(n) {
                match parse(&expr) {
                    Err(QueryError::Parse {
                        message,
                        expr: shown,
                    }) => {
                        assert!(message.contains("limit of 128"), "{shape}: {message}");
                        assert!(
                            shown.chars().count() <= 101,
                            "{shape}: message holds the whole text"
                        );
                    }
                    other => panic!("{shape} at {n}: expected a parse error, got {other:?}"),
                }
            }
        }
    }

    #[test]
    fn operators_inside_strings_and_comments_do_not_count() {
        let long = format!(
            "up{{job=\"{}\"}} # {}",
            "-".repeat(5_000),
            "+".repeat(5_000)
        );
        assert!(parse(&long).is_ok());
        assert_eq!(depth_bound("rate(x[5m]) > 0.5 and y"), 4);
    }

    #[test]
    fn deepest_expressions_fit_a_small_stack() {
        // the daemon's threads have THREAD_STACK_BYTES; half of it here keeps a 2x margin, and
        // debug builds have the largest frames (~20 KB a level of `abs(`: 150 levels fit in 4 MiB, 200 do not), so this is the worst case
        let handle = std::thread::Builder::new()
            .stack_size(crate::daemon::THREAD_STACK_BYTES / 2)
            .spawn(|| {
                let mut storage = MemStorage::new();
                let up = crate::labels::Labels::from_pairs([("__name__", "up")]);
                for i in 0..10 {
                    storage.add(&up, i * 15_000, 1.0);
                }
                let engine = Engine::new(EngineOptions::default());
                for (shape, expr) in deep(MAX_EXPR_DEPTH - 2) {
                    let ast = parse(&expr).unwrap_or_else(|e| panic!("{shape}: {e}"));
                    let _ = engine.instant(&storage, &ast, 120_000);
                    drop(ast);
                }
            })
            .unwrap();
        handle.join().expect("no stack overflow at the depth limit");
    }

    /// `name_bucket{le=…, extra}` buckets at t=0 with the given cumulative counts.
    fn classic(storage: &mut MemStorage, name: &str, extra: (&str, &str), buckets: &[(&str, f64)]) {
        for (le, count) in buckets {
            let l = crate::labels::Labels::from_pairs([("__name__", name), ("le", le), extra]);
            storage.add(&l, 0, *count);
        }
    }

    fn instant(storage: &MemStorage, expr: &str) -> Result<Vec<(String, f64)>, QueryError> {
        let engine = Engine::new(EngineOptions::default());
        match engine.instant(storage, &parse(expr)?, 0)? {
            Value::Vector(v) => {
                let mut out: Vec<(String, f64)> =
                    v.into_iter().map(|s| (s.metric.to_string(), s.v)).collect();
                out.sort_by(|a, b| a.0.cmp(&b.0));
                Ok(out)
            }
            other => panic!("{expr}: not a vector: {other:?}"),
        }
    }

    #[test]
    fn histogram_fraction_over_classic_buckets_as_prometheus_3() {
        // Prometheus's histograms.test: testhistogram2 and testhistogram3 at 50m
        let mut s = MemStorage::new();
        let two = [
            ("0", 0.0),
            ("2", 10.0),
            ("4", 20.0),
            ("6", 30.0),
            ("+Inf", 30.0),
        ];
        classic(&mut s, "h2_bucket", ("job", "a"), &two);
        // without a +Inf bucket there is no fraction
        classic(
            &mut s,
            "open_bucket",
            ("job", "a"),
            &[("1", 1.0), ("2", 2.0)],
        );
        // negative buckets: the first bucket's lower bound is -Inf, it adds nothing by interpolation
        let neg = [
            ("-.25", 0.0),
            ("-.2", 10.0),
            ("-0.1", 20.0),
            ("0.3", 20.0),
            ("+Inf", 30.0),
        ];
        classic(&mut s, "h3_bucket", ("start", "negative"), &neg);
        let pos = [
            ("0", 0.0),
            ("0.1", 50.0),
            (".2", 70.0),
            ("1e0", 110.0),
            ("+Inf", 110.0),
        ];
        classic(&mut s, "h3_bucket", ("start", "positive"), &pos);
        let frac = |expr: &str| instant(&s, expr).unwrap()[0].1;
        assert!((frac("histogram_fraction(0, 4, h2_bucket)") - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(frac("histogram_fraction(0, 6, h2_bucket)"), 1.0);
        assert!(
            (frac("histogram_fraction(0, 3.5, h2_bucket)") - 0.583_333_333_333_333_4).abs() < 1e-12
        );
        assert_eq!(frac("histogram_fraction(4, 4, h2_bucket)"), 0.0);
        assert!(frac("histogram_fraction(NaN, 4, h2_bucket)").is_nan());
        let got = instant(&s, "histogram_fraction(0, 0.2, h3_bucket)").unwrap();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0], ("{start=\"negative\"}".to_string(), 0.0));
        assert!(
            (got[1].1 - 0.636_363_636_363_636_4).abs() < 1e-12,
            "{got:?}"
        );
        assert!(frac("histogram_fraction(0, 1, open_bucket)").is_nan());
    }

    #[test]
    fn buckets_of_two_metrics_with_the_same_labels_collide_instead_of_merging() {
        let mut s = MemStorage::new();
        let b = [("0.1", 1.0), ("1", 2.0), ("+Inf", 4.0)];
        classic(&mut s, "req_seconds_bucket", ("job", "a"), &b);
        classic(&mut s, "req_seconds2_bucket", ("job", "a"), &b);
        for expr in [
            r#"histogram_quantile(0.99, {__name__=~"req_seconds\\d*_bucket"})"#,
            r#"histogram_fraction(0, 1, {__name__=~"req_seconds\\d*_bucket"})"#,
        ] {
            match instant(&s, expr) {
                Err(QueryError::Eval(m)) => assert!(m.contains("same labelset"), "{expr}: {m}"),
                other => panic!("{expr}: expected the labelset error, got {other:?}"),
            }
        }
        // one metric alone is fine, and its name is dropped
        let got = instant(&s, "histogram_quantile(0.5, req_seconds_bucket)").unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "{job=\"a\"}");
    }

    #[test]
    fn native_only_histogram_functions_return_nothing_over_float_samples() {
        let mut s = MemStorage::new();
        classic(
            &mut s,
            "h_bucket",
            ("job", "a"),
            &[("1", 1.0), ("+Inf", 2.0)],
        );
        for f in [
            "histogram_count",
            "histogram_sum",
            "histogram_avg",
            "histogram_stddev",
            "histogram_stdvar",
        ] {
            assert_eq!(
                instant(&s, &format!("{f}(h_bucket)")).unwrap(),
                vec![],
                "{f}"
            );
        }
    }
}
