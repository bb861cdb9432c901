//! Prometheus's own PromQL engine tests (`promql/promqltest/testdata/*.test`, read in place from
//! `../shared/conformance/prometheus/promql/`) run against tocsin's engine, with the semantics of
//! Prometheus's `promql/promqltest/test.go`:
//!
//! - `load <interval>` then series lines in the `a+bxn` notation ([`notation`]); sample `i` of a
//!   series is at `i·interval` ms. A series repeated within one block replaces the earlier one.
//! - `clear` empties the storage.
//! - `eval instant at <t> <expr>` and `eval range from <t> to <t> step <d> <expr>`, with the
//!   expected result on the following lines until a blank line: `metric{labels} value` lines,
//!   one bare number for a scalar, nothing for an empty result, plus the directives
//!   `expect fail [msg:|regex: …]`, `expect ordered`, `expect string "…"`,
//!   `expect range vector from … to … step …`, `expect warn|no_warn|info|no_info`, and the older
//!   `eval_fail|eval_ordered|eval_warn|eval_info` forms with `expected_fail_message|regexp`.
//! - An instant eval is checked as promqltest checks it: at its time; again with every selector
//!   and outermost subquery pinned with `@ <time>` at other evaluation times (unless the
//!   expression calls a time-dependent function); and each of those also as a range query from
//!   t-1m to t+1m step 1m, whose middle step must give the same result.
//! - Floats compare with promqltest's relative epsilon (1e-6), NaN equal to NaN; instant vectors
//!   as sets keyed by label set (in order only when ordered); matrices per series per step.
//!
//! Differences, all deliberate:
//! - Annotations (warn/info) are not produced by tocsin's engine: those directives constrain nothing.
//! - `expect fail` checks only that evaluation fails. A different message is printed as a note
//!   and counted (`msg-mismatch`), never failed: tocsin's messages are its own.
//! - Skipped (counted per category): cases that touch native histograms (a `{{…}}` expectation,
//!   or a selector matching a series loaded with `{{…}}` values or converted by `load_with_nhcb`),
//!   and cases using experimental functions (`Function::experimental` in promql-parser, `limitk`,
//!   `limit_ratio`) or experimental syntax (`fill` modifiers; `anchored`/`smoothed`, duration
//!   arithmetic or `step()` when the parser rejects them).
//! - A malformed line (unknown command, bad series) fails that line, not the whole file.
//!
//! `tests/promql-baseline.txt` lists the cases (`file:line`) known to fail. The test fails when a
//! case fails that is not listed, and reports listed cases that now pass. `TOCSIN_BLESS=1`
//! rewrites the list from the current run.

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::{Duration, UNIX_EPOCH};

use promql_parser::parser::{AtModifier, Expr, VectorSelector};
use regex::Regex;
use tocsin::duration::PromDuration;
use tocsin::labels::Labels;
use tocsin::promql::notation::{self, NotationError};
use tocsin::promql::{Engine, EngineOptions, MemStorage, Value, format_float};

use crate::common::shared_dir;

/// promqltest's `defaultEpsilon`: the relative error allowed for sample values.
const EPSILON: f64 = 0.000001;

/// promqltest's `DefaultMaxSamplesPerQuery`, the limit its test engine runs with.
const MAX_SAMPLES: usize = 10_000;

/// Longest expected/got text printed for one failure.
const MAX_REPORT: usize = 800;

const BASELINE: &str = "tests/promql-baseline.txt";

static PAT_LOAD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^load(?:_(with_nhcb))?\s+(.+?)$").unwrap());
static PAT_EVAL_INSTANT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^eval(?:_(fail|warn|ordered|info))?\s+instant\s+(?:at\s+(.+?))?\s+(.+)$").unwrap()
});
static PAT_EVAL_RANGE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^eval(?:_(fail|warn|info))?\s+range\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+?)\s+(.+)$",
    )
    .unwrap()
});
static PAT_EXPECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^expect\s+(ordered|fail|warn|no_warn|info|no_info)(?:\s+(regex|msg):(.+))?$")
        .unwrap()
});
static PAT_EXPECT_RANGE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^expect range vector\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+)$").unwrap()
});
/// Expressions whose value depends on the query range: not re-checked in range mode.
static PAT_QUERY_CONTEXT_FUNCS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(start|end|range|step)\(\)").unwrap());

/// Functions whose result changes with the evaluation time even when their arguments are pinned
/// with `@` (Prometheus's `AtModifierUnsafeFunctions`): no `@` variants for these.
const AT_MODIFIER_UNSAFE_FUNCTIONS: &[&str] = &[
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "hour",
    "minute",
    "month",
    "year",
    "predict_linear",
    "time",
    "timestamp",
];

/// Experimental functions and aggregations, for expressions the parser rejects (for the ones
/// it accepts, `Function::experimental` decides).
const EXPERIMENTAL_NAMES: &[&str] = &[
    "limitk",
    "limit_ratio",
    "double_exponential_smoothing",
    "info",
    "integral",
    "mad_over_time",
    "max_of",
    "min_of",
    "sort_by_label",
    "sort_by_label_desc",
    "first_over_time",
    "ts_of_first_over_time",
    "ts_of_last_over_time",
    "ts_of_max_over_time",
    "ts_of_min_over_time",
    "histogram_quantiles",
    "start_timestamp",
    "step",
    "range",
    "start",
    "end",
];

#[test]
fn prometheus_promql_test_files() {
    // `TOCSIN_PROMQL_TESTDATA=DIR`: run another copy of Prometheus's testdata (e.g. a newer release's
    // `promql/promqltest/testdata`) and report its counts and failing cases, without the baseline
    if let Some(dir) = std::env::var_os("TOCSIN_PROMQL_TESTDATA") {
        let (total, failures) = run_dir(Path::new(&dir));
        eprintln!(
            "promql testdata {}: total {total}",
            Path::new(&dir).display()
        );
        for k in &failures {
            eprintln!("  failing: {k}");
        }
        return;
    }
    let Some(dir) = shared_dir().map(|d| d.join("conformance/prometheus/promql")) else {
        eprintln!("skipping promql conformance: ../shared/conformance/prometheus/promql not found");
        return;
    };
    if !dir.is_dir() {
        eprintln!("skipping promql conformance: {} not found", dir.display());
        return;
    }
    let (total, failures) = run_dir(&dir);
    eprintln!("promql conformance: total {total}");

    let baseline_path = crate::common::project_dir().join(BASELINE);
    if std::env::var("TOCSIN_BLESS").is_ok_and(|v| v == "1") {
        write_baseline(&baseline_path, &failures);
        eprintln!(
            "promql conformance: wrote {} failing cases to {BASELINE}",
            failures.len()
        );
        return;
    }
    let baseline = read_baseline(&baseline_path);
    let fixed: Vec<_> = baseline.difference(&failures).collect();
    if !fixed.is_empty() {
        eprintln!(
            "promql conformance: {} cases in {BASELINE} now pass (re-bless with TOCSIN_BLESS=1):",
            fixed.len()
        );
        for k in &fixed {
            eprintln!("  {k}");
        }
    }
    let new: Vec<_> = failures.difference(&baseline).collect();
    if !new.is_empty() {
        let list: Vec<String> = new.iter().map(|k| k.to_string()).collect();
        panic!(
            "{} promql conformance cases fail that are not in {BASELINE} (details above; \
             if expected, re-bless with TOCSIN_BLESS=1):\n  {}",
            new.len(),
            list.join("\n  ")
        );
    }
}

/// Runs every `*.test` file of `dir`, printing each file's counts.
fn run_dir(dir: &Path) -> (Stats, BTreeSet<CaseKey>) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "test"))
        .collect();
    files.sort();
    let mut failures: BTreeSet<CaseKey> = BTreeSet::new();
    let mut total = Stats::default();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(path).unwrap();
        let stats = run_file(&name, &text, &mut failures);
        eprintln!("promql conformance: {name} {stats}");
        total.add(&stats);
    }
    (total, failures)
}

/// A case's identity in the baseline: test file and 1-based line of its `eval`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct CaseKey {
    file: String,
    line: usize,
}

impl std::fmt::Display for CaseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

fn read_baseline(path: &Path) -> BTreeSet<CaseKey> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return BTreeSet::new();
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (file, line) = l.rsplit_once(':')?;
            Some(CaseKey {
                file: file.to_string(),
                line: line.parse().ok()?,
            })
        })
        .collect()
}

fn write_baseline(path: &Path, failures: &BTreeSet<CaseKey>) {
    let mut out = String::from(
        "# PromQL conformance cases (file:line of the eval) known to fail.\n\
         # Regenerate with: TOCSIN_BLESS=1 cargo test --test it promql\n",
    );
    for k in failures {
        writeln!(out, "{k}").unwrap();
    }
    std::fs::write(path, out).unwrap();
}

#[derive(Default)]
struct Stats {
    pass: usize,
    fail: usize,
    skip_native_histograms: usize,
    skip_experimental: usize,
    msg_mismatch: usize,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.pass += o.pass;
        self.fail += o.fail;
        self.skip_native_histograms += o.skip_native_histograms;
        self.skip_experimental += o.skip_experimental;
        self.msg_mismatch += o.msg_mismatch;
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pass={} fail={} skip(native histograms)={} skip(experimental)={} msg-mismatch={}",
            self.pass,
            self.fail,
            self.skip_native_histograms,
            self.skip_experimental,
            self.msg_mismatch
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing the test file

enum Command {
    Clear,
    Load(Load),
    Eval(Box<EvalCase>),
    /// A line promqltest would reject; fails as a case at that line.
    Invalid {
        line: usize,
        reason: String,
    },
}

struct Load {
    interval_ms: i64,
    /// `load_with_nhcb`: classic histogram series are also converted to native histograms.
    nhcb: bool,
    /// (1-based line, series description)
    series: Vec<(usize, String)>,
}

/// One `eval` and its expectations.
struct EvalCase {
    line: usize,
    expr: String,
    /// `Some((start, end, step))` for `eval range`.
    range: Option<(i64, i64, i64)>,
    /// Evaluation time of an instant eval (the end of `expect range vector` when given).
    at: i64,
    /// Window the expected points of a matrix result are laid on: (start, end, step); `end`
    /// is `None` for an instant eval without `expect range vector` (no point fits).
    window: (i64, Option<i64>, i64),
    fail: bool,
    fail_msg: Option<String>,
    fail_regex: Option<Regex>,
    ordered: bool,
    expect_scalar: bool,
    scalar: Option<f64>,
    metrics: HashMap<Labels, Expected>,
    expected_string: String,
    exclude_from_range: bool,
    /// An expectation is a native histogram.
    histogram_expected: bool,
    /// Why the case's own lines are malformed, if they are.
    invalid: Option<String>,
    /// The expectation lines as written, for failure reports.
    expected_text: Vec<String>,
}

struct Expected {
    /// 1-based position among the expectation lines (for ordered results).
    pos: usize,
    vals: Vec<Option<f64>>,
}

fn parse_file(text: &str) -> Vec<Command> {
    // as promqltest: trimmed lines, comment lines blank (so a comment also ends a block)
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| {
            let l = l.trim();
            if l.starts_with('#') { "" } else { l }
        })
        .collect();
    let mut cmds = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if l.is_empty() {
            i += 1;
            continue;
        }
        let word = l
            .split([' ', '\t'])
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if word == "clear" {
            cmds.push(Command::Clear);
        } else if word.starts_with("load") {
            match parse_load(&lines, &mut i) {
                Ok(load) => cmds.push(Command::Load(load)),
                Err(reason) => cmds.push(invalid_block(&lines, &mut i, reason)),
            }
        } else if word.starts_with("eval") {
            match parse_eval(&lines, &mut i) {
                Ok(case) => cmds.push(Command::Eval(Box::new(case))),
                Err(reason) => cmds.push(invalid_block(&lines, &mut i, reason)),
            }
        } else {
            cmds.push(Command::Invalid {
                line: i + 1,
                reason: format!("invalid command {l:?}"),
            });
        }
        i += 1;
    }
    cmds
}

/// A command line that cannot be parsed, reported at its line; the lines of its block are
/// passed over with it (rather than each being reported as an unknown command).
fn invalid_block(lines: &[&str], i: &mut usize, reason: String) -> Command {
    let line = *i + 1;
    while *i + 1 < lines.len() && !lines[*i + 1].is_empty() {
        *i += 1;
    }
    Command::Invalid { line, reason }
}

/// A time or duration in a test file: a Prometheus duration (`50m`, `1h5m`, `0`), or, more
/// leniently than promqltest, a number of seconds.
fn parse_time(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(d) = PromDuration::parse(s) {
        return Ok(d.as_millis());
    }
    match s.parse::<f64>() {
        Ok(secs) if secs.is_finite() => Ok((secs * 1000.0).round() as i64),
        _ => Err(format!("invalid duration {s:?}")),
    }
}

fn parse_load(lines: &[&str], i: &mut usize) -> Result<Load, String> {
    let caps = PAT_LOAD
        .captures(lines[*i])
        .ok_or("invalid load command (load[_with_nhcb] <step:duration>)")?;
    let interval_ms = parse_time(&caps[2])?;
    let mut load = Load {
        interval_ms,
        nhcb: caps.get(1).is_some(),
        series: Vec::new(),
    };
    while *i + 1 < lines.len() && !lines[*i + 1].is_empty() {
        *i += 1;
        load.series.push((*i + 1, lines[*i].to_string()));
    }
    Ok(load)
}

fn parse_eval(lines: &[&str], i: &mut usize) -> Result<EvalCase, String> {
    let line = lines[*i];
    let (modifier, expr, range, at) = if let Some(c) = PAT_EVAL_INSTANT.captures(line) {
        let at = c.get(2).map_or("", |m| m.as_str());
        let at = parse_time(at).map_err(|e| format!("invalid timestamp definition: {e}"))?;
        (c.get(1), c[3].to_string(), None, at)
    } else if let Some(c) = PAT_EVAL_RANGE.captures(line) {
        let (start, end, step) = parse_range(&c[2], &c[3], &c[4])?;
        (c.get(1), c[5].to_string(), Some((start, end, step)), start)
    } else {
        return Err("invalid evaluation command".into());
    };
    let mut case = EvalCase {
        line: *i + 1,
        expr,
        range,
        at,
        window: match range {
            Some((s, e, st)) => (s, Some(e), st),
            None => (at, None, 0),
        },
        fail: false,
        fail_msg: None,
        fail_regex: None,
        ordered: false,
        expect_scalar: false,
        scalar: None,
        metrics: HashMap::new(),
        expected_string: String::new(),
        exclude_from_range: false,
        histogram_expected: false,
        invalid: None,
        expected_text: Vec::new(),
    };
    match modifier.map(|m| m.as_str()) {
        Some("ordered") => case.ordered = true,
        Some("fail") => case.fail = true,
        _ => {}
    }
    // j is the position of an expectation line for ordered results, counted as promqltest
    // counts it: every line but `expect fail|ordered|warn|…` directives
    let mut j = 1;
    while *i + 1 < lines.len() && !lines[*i + 1].is_empty() {
        *i += 1;
        let def = lines[*i];
        case.expected_text.push(def.to_string());
        if case.fail && def.starts_with("expected_fail_message") {
            case.fail_msg = Some(def["expected_fail_message".len()..].trim().to_string());
            break;
        }
        if case.fail && def.starts_with("expected_fail_regexp") {
            let pattern = def["expected_fail_regexp".len()..].trim();
            match Regex::new(pattern) {
                Ok(re) => case.fail_regex = Some(re),
                Err(e) => invalid(&mut case, format!("invalid regexp {pattern:?}: {e}")),
            }
            break;
        }
        if def.starts_with("expect range vector") {
            match PAT_EXPECT_RANGE.captures(def) {
                Some(c) => match parse_range(&c[1], &c[2], &c[3]) {
                    Ok((start, end, step)) => {
                        case.window = (start, Some(end), step);
                        case.at = end;
                        case.exclude_from_range = true;
                    }
                    Err(e) => invalid(&mut case, e),
                },
                None => invalid(
                    &mut case,
                    format!("invalid range vector definition {def:?}"),
                ),
            }
            j += 1;
            continue;
        }
        if def.starts_with("expect string") {
            match def
                .strip_prefix("expect string ")
                .filter(|s| !s.is_empty())
                .map(notation::unquote)
            {
                Some(Ok(s)) => case.expected_string = s,
                _ => invalid(&mut case, format!("invalid expected string {def:?}")),
            }
            case.exclude_from_range = true;
            j += 1;
            continue;
        }
        if def.split(' ').next() == Some("expect") {
            match PAT_EXPECT.captures(def.trim()) {
                Some(c) => match (&c[1], c.get(2).map(|m| m.as_str())) {
                    ("fail", kind) => {
                        case.fail = true;
                        let arg = c.get(3).map_or("", |m| m.as_str()).trim();
                        match kind {
                            Some("msg") => case.fail_msg = Some(arg.to_string()),
                            Some(_) => match Regex::new(arg) {
                                Ok(re) => case.fail_regex = Some(re),
                                Err(e) => invalid(&mut case, format!("invalid regex {arg:?}: {e}")),
                            },
                            None => {}
                        }
                    }
                    ("ordered", _) => case.ordered = true,
                    // annotations: tocsin's engine produces none, so nothing to check
                    _ => {}
                },
                None => invalid(&mut case, format!("invalid expect statement {def:?}")),
            }
            continue;
        }
        if let Some(v) = notation::parse_number(def) {
            case.expect_scalar = true;
            case.scalar = Some(v);
            break;
        }
        match notation::parse_series_desc(def) {
            Ok((labels, vals)) => {
                if vals.len() > 1 && case.range.is_none() && case.window.1.is_none() {
                    invalid(
                        &mut case,
                        "expecting multiple values in instant evaluation not allowed".into(),
                    );
                }
                case.expect_scalar = false;
                case.metrics.insert(labels, Expected { pos: j, vals });
            }
            Err(NotationError::NativeHistogram) => case.histogram_expected = true,
            Err(e) => invalid(&mut case, format!("line {}: {e}", *i + 1)),
        }
        j += 1;
    }
    Ok(case)
}

/// Marks a case malformed (the first reason wins).
fn invalid(case: &mut EvalCase, reason: String) {
    case.invalid.get_or_insert(reason);
}

fn parse_range(from: &str, to: &str, step: &str) -> Result<(i64, i64, i64), String> {
    let start = parse_time(from).map_err(|e| format!("invalid start timestamp: {e}"))?;
    let end = parse_time(to).map_err(|e| format!("invalid end timestamp: {e}"))?;
    if end < start {
        return Err(format!(
            "end timestamp {to} is before start timestamp {from}"
        ));
    }
    let step = parse_time(step).map_err(|e| format!("invalid step: {e}"))?;
    Ok((start, end, step))
}

// ---------------------------------------------------------------------------------------------
// Running

enum Outcome {
    Pass,
    Fail(String),
    Skip(SkipReason),
}

enum SkipReason {
    NativeHistograms,
    Experimental,
}

struct FileRun<'a> {
    file: &'a str,
    engine: Engine,
    storage: MemStorage,
    /// Label sets of series that hold native histograms in Prometheus's version of the storage.
    histograms: Vec<Labels>,
    stats: Stats,
    /// `expect fail` cases that failed with another message (counted while evaluating, which
    /// borrows the run immutably).
    msg_mismatches: Cell<usize>,
    /// The line of the case noted last, so a case is noted once.
    last_noted_line: Cell<usize>,
}

fn run_file(file: &str, text: &str, failures: &mut BTreeSet<CaseKey>) -> Stats {
    let mut run = FileRun {
        file,
        engine: Engine::new(EngineOptions {
            max_samples: MAX_SAMPLES,
            ..EngineOptions::default()
        }),
        storage: MemStorage::new(),
        histograms: Vec::new(),
        stats: Stats::default(),
        msg_mismatches: Cell::new(0),
        last_noted_line: Cell::new(0),
    };
    for cmd in parse_file(text) {
        match cmd {
            Command::Clear => {
                run.storage.clear();
                run.histograms.clear();
            }
            Command::Load(load) => {
                for (line, reason) in run.load(&load) {
                    run.fail(failures, line, "(load)", &reason);
                }
            }
            Command::Invalid { line, reason } => run.fail(failures, line, "(syntax)", &reason),
            Command::Eval(case) => match run.eval(&case) {
                Outcome::Pass => run.stats.pass += 1,
                Outcome::Skip(SkipReason::NativeHistograms) => {
                    run.stats.skip_native_histograms += 1
                }
                Outcome::Skip(SkipReason::Experimental) => run.stats.skip_experimental += 1,
                Outcome::Fail(reason) => {
                    let mut report = reason;
                    if !case.expected_text.is_empty() {
                        write!(
                            report,
                            "\n    expected:\n      {}",
                            case.expected_text.join("\n      ")
                        )
                        .unwrap();
                    }
                    run.fail(failures, case.line, &case.expr, &report);
                }
            },
        }
    }
    run.stats.msg_mismatch = run.msg_mismatches.get();
    run.stats
}

impl FileRun<'_> {
    fn fail(&mut self, failures: &mut BTreeSet<CaseKey>, line: usize, expr: &str, reason: &str) {
        self.stats.fail += 1;
        failures.insert(CaseKey {
            file: self.file.to_string(),
            line,
        });
        println!(
            "FAIL {}:{line}: {}\n    {}",
            self.file,
            truncate(expr, MAX_REPORT),
            truncate(reason, MAX_REPORT * 2)
        );
    }

    /// Loads one block; returns the lines that could not be loaded.
    fn load(&mut self, load: &Load) -> Vec<(usize, String)> {
        let mut errors = Vec::new();
        // a series repeated within a block replaces the earlier definition, as in promqltest
        let mut block: Vec<(Labels, Vec<Option<f64>>)> = Vec::new();
        let mut index: HashMap<Labels, usize> = HashMap::new();
        for (line, text) in &load.series {
            if is_start_timestamp_line(text) {
                // start timestamps (`metric@st …`) do not affect float samples' values
                continue;
            }
            let (labels, rest) = match notation::parse_metric(text) {
                Ok(x) => x,
                Err(e) => {
                    errors.push((*line, e.to_string()));
                    continue;
                }
            };
            match notation::parse_values(rest) {
                Ok(vals) => match index.get(&labels) {
                    Some(&k) => block[k].1 = vals,
                    None => {
                        index.insert(labels.clone(), block.len());
                        block.push((labels, vals));
                    }
                },
                Err(NotationError::NativeHistogram) => self.histograms.push(labels),
                Err(e) => errors.push((*line, e.to_string())),
            }
        }
        for (labels, vals) in &block {
            for (k, v) in vals.iter().enumerate() {
                if let Some(v) = v {
                    self.storage.add(labels, k as i64 * load.interval_ms, *v);
                }
            }
            if load.nhcb
                && let Some(h) = nhcb_series(labels)
            {
                self.histograms.push(h);
            }
        }
        errors
    }

    fn eval(&self, case: &EvalCase) -> Outcome {
        if let Some(reason) = &case.invalid {
            return Outcome::Fail(format!("malformed case: {reason}"));
        }
        if case.histogram_expected {
            return Outcome::Skip(SkipReason::NativeHistograms);
        }
        let ast = match tocsin::promql::parse(&case.expr) {
            Ok(ast) => ast,
            Err(e) => {
                if uses_experimental_syntax(&case.expr) {
                    return Outcome::Skip(SkipReason::Experimental);
                }
                if case.fail {
                    // promqltest parses every expression first, so this one is valid PromQL;
                    // still, failing is what the case asks for
                    self.check_fail_message(case, &e.to_string());
                    return Outcome::Pass;
                }
                return Outcome::Fail(format!("parse error: {e}"));
            }
        };
        if uses_experimental(&ast) {
            return Outcome::Skip(SkipReason::Experimental);
        }
        if !self.histograms.is_empty() && self.touches_histograms(&ast) {
            return Outcome::Skip(SkipReason::NativeHistograms);
        }
        let result = match case.range {
            Some((start, end, step)) => self.run_range(case, &ast, start, end, step),
            None => self.run_instant(case, &ast),
        };
        match result {
            Ok(()) => Outcome::Pass,
            Err(reason) => Outcome::Fail(reason),
        }
    }

    fn run_range(
        &self,
        case: &EvalCase,
        ast: &Expr,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<(), String> {
        match guarded(|| self.engine.range(&self.storage, ast, start, end, step))? {
            Err(e) if case.fail => {
                self.check_fail_message(case, &e.to_string());
                Ok(())
            }
            Err(e) => Err(format!("error evaluating range query: {e}")),
            Ok(v) if case.fail => Err(format!(
                "expected an error, got a result:\n      {}",
                show(&v)
            )),
            Ok(v) => compare(case, &v).map_err(|e| format!("{e}\n    got:\n      {}", show(&v))),
        }
    }

    fn run_instant(&self, case: &EvalCase, ast: &Expr) -> Result<(), String> {
        let t = case.at;
        let mut queries: Vec<(Expr, i64, String)> = vec![(ast.clone(), t, String::new())];
        queries.extend(at_modifier_variants(ast, t));
        let range_mode = !case.exclude_from_range && !PAT_QUERY_CONTEXT_FUNCS.is_match(&case.expr);
        for (expr, t, variant) in &queries {
            let t = *t;
            let value = match guarded(|| self.engine.instant(&self.storage, expr, t))
                .map_err(|e| format!("{variant}{e}"))?
            {
                Err(e) if case.fail => {
                    self.check_fail_message(case, &e.to_string());
                    continue;
                }
                Err(e) => return Err(format!("{variant}error evaluating: {e}")),
                Ok(v) if case.fail => {
                    return Err(format!(
                        "{variant}expected an error, got a result:\n      {}",
                        show(&v)
                    ));
                }
                Ok(v) => v,
            };
            compare(case, &value)
                .map_err(|e| format!("{variant}{e}\n    got:\n      {}", show(&value)))?;
            if !range_mode {
                continue;
            }
            // the same query as a range query around t must give the same result at t
            let v = match guarded(|| {
                self.engine
                    .range(&self.storage, expr, t - 60_000, t + 60_000, 60_000)
            })
            .map_err(|e| format!("{variant}range mode: {e}"))?
            {
                Ok(v) => v,
                Err(e) => return Err(format!("{variant}error evaluating in range mode: {e}")),
            };
            if case.ordered {
                continue;
            }
            let Value::Matrix(series) = &v else {
                return Err(format!(
                    "{variant}range mode: range query returned a {}",
                    v.type_name()
                ));
            };
            assert_sorted(series).map_err(|e| format!("{variant}range mode: {e}"))?;
            let samples: Vec<tocsin::promql::Sample> = series
                .iter()
                .filter_map(|s| {
                    let &(pt, pv) = s.points.iter().find(|p| p.0 == t)?;
                    Some(tocsin::promql::Sample {
                        metric: s.metric.clone(),
                        t: pt,
                        v: pv,
                    })
                })
                .collect();
            let at_t = if matches!(value, Value::Scalar(_)) {
                match samples.first() {
                    Some(s) => Value::Scalar(s.v),
                    None => return Err(format!("{variant}range mode: no point at t={t}ms")),
                }
            } else {
                Value::Vector(samples)
            };
            compare(case, &at_t).map_err(|e| {
                format!(
                    "{variant}range mode (t-1m to t+1m step 1m, middle step): {e}\n    got:\n      {}",
                    show(&v)
                )
            })?;
        }
        Ok(())
    }

    /// Notes (prints and counts, never fails) an error message other than the expected one.
    fn check_fail_message(&self, case: &EvalCase, got: &str) {
        let mismatch = match (&case.fail_msg, &case.fail_regex) {
            (Some(m), _) if m != got => Some(format!("expected error {m:?}")),
            (_, Some(re)) if !re.is_match(got) => {
                Some(format!("expected error matching {:?}", re.as_str()))
            }
            _ => None,
        };
        // once per case, though a case evaluates its query several times
        if let Some(m) = mismatch
            && self.last_noted_line.replace(case.line) != case.line
        {
            self.msg_mismatches.set(self.msg_mismatches.get() + 1);
            println!(
                "note {}:{}: {}, got {:?}",
                self.file,
                case.line,
                m,
                truncate(got, MAX_REPORT)
            );
        }
    }

    /// Whether a selector in `ast` matches a series that is a native histogram in Prometheus.
    fn touches_histograms(&self, ast: &Expr) -> bool {
        let mut hit = false;
        walk(ast, &mut |e| {
            let vs = match e {
                Expr::VectorSelector(vs) => vs,
                Expr::MatrixSelector(ms) => &ms.vs,
                _ => return,
            };
            hit = hit || self.histograms.iter().any(|l| selector_matches(vs, l));
        });
        hit
    }
}

/// The labels of the native histogram Prometheus's `load_with_nhcb` makes from a classic
/// histogram series (`x_bucket{le=…}`, `x_count`, `x_sum` → `x`), if `labels` is one.
fn nhcb_series(labels: &Labels) -> Option<Labels> {
    let name = labels.metric_name()?;
    let base = if let Some(base) = name.strip_suffix("_bucket") {
        let le: f64 = labels.get("le")?.parse().ok()?;
        if le.is_nan() {
            return None;
        }
        base
    } else {
        name.strip_suffix("_count")
            .or_else(|| name.strip_suffix("_sum"))?
    };
    Some(labels.with("le", "").with("__name__", base))
}

/// promqltest's start-timestamp lines: the first word ends in `@st`.
fn is_start_timestamp_line(line: &str) -> bool {
    line.trim()
        .split([' ', '\t'])
        .next()
        .is_some_and(|w| w.ends_with("@st") && line.trim().contains([' ', '\t']))
}

fn selector_matches(vs: &VectorSelector, labels: &Labels) -> bool {
    if let Some(name) = &vs.name
        && labels.metric_name() != Some(name.as_str())
    {
        return false;
    }
    let all = |ms: &[promql_parser::label::Matcher]| {
        ms.iter()
            .all(|m| m.is_match(labels.get(&m.name).unwrap_or("")))
    };
    if vs.matchers.or_matchers.is_empty() {
        all(&vs.matchers.matchers)
    } else {
        vs.matchers.or_matchers.iter().any(|g| all(g))
    }
}

/// Runs `f`, turning a panic into an error that names it.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(non-string panic payload)".into());
        format!("engine panicked: {msg}")
    })
}

/// Preorder walk over every node of an expression.
fn walk<'a>(e: &'a Expr, f: &mut dyn FnMut(&'a Expr)) {
    f(e);
    match e {
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                walk(p, f);
            }
            walk(&a.expr, f);
        }
        Expr::Unary(u) => walk(&u.expr, f),
        Expr::Binary(b) => {
            walk(&b.lhs, f);
            walk(&b.rhs, f);
        }
        Expr::Paren(p) => walk(&p.expr, f),
        Expr::Subquery(s) => walk(&s.expr, f),
        Expr::Call(c) => {
            for a in &c.args.args {
                walk(a, f);
            }
        }
        Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::VectorSelector(_)
        | Expr::MatrixSelector(_)
        | Expr::Extension(_) => {}
    }
}

/// Experimental functions, `limitk`/`limit_ratio` and `fill` modifiers, which Prometheus only
/// accepts behind feature flags.
fn uses_experimental(ast: &Expr) -> bool {
    let mut found = false;
    walk(ast, &mut |e| match e {
        Expr::Call(c) if c.func.experimental => found = true,
        Expr::Aggregate(a) => {
            let op = a.op.to_string();
            found = found || op == "limitk" || op == "limit_ratio";
        }
        Expr::Binary(b) => {
            if let Some(m) = &b.modifier {
                found = found || m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some();
            }
        }
        _ => {}
    });
    found
}

/// For text the parser rejects: whether it uses experimental syntax or functions.
fn uses_experimental_syntax(expr: &str) -> bool {
    static SYNTAX: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(concat!(
            r"\b(anchored|smoothed)\b",
            r"|\b(fill|fill_left|fill_right)\s*\(",
            // duration arithmetic: an operator or parenthesis inside brackets or after offset/@
            r"|\[[^\]]*[-+*/%^()][^\]]*\]",
            r"|\boffset\s*-?\s*\(",
        ))
        .unwrap()
    });
    static CALL: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(@?)\s*\b([a-z_][a-z0-9_]*)\s*\(").unwrap());
    // string literals may hold anything (`=~"[a-z]+"`): look only at the code around them
    let code = without_strings(expr);
    if SYNTAX.is_match(&code) {
        return true;
    }
    CALL.captures_iter(&code).any(|c| {
        let name = &c[2];
        // `@ start()` / `@ end()` are the stable @ modifier, not the experimental functions
        EXPERIMENTAL_NAMES.contains(&name)
            && !(c[1].starts_with('@') && (name == "start" || name == "end"))
    })
}

/// `expr` with the contents of its string literals removed (quotes kept).
fn without_strings(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in expr.chars() {
        match quote {
            None => {
                if matches!(c, '"' | '\'' | '`') {
                    quote = Some(c);
                }
                out.push(c);
            }
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q != '`' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                    out.push(c);
                }
            }
        }
    }
    out
}

/// promqltest's @-modifier variants of an instant query at `t` (ms): the expression with every
/// selector and outermost subquery pinned at `t`, evaluated at other times. None when the
/// expression calls a function whose result depends on the evaluation time itself.
fn at_modifier_variants(ast: &Expr, t: i64) -> Vec<(Expr, i64, String)> {
    let mut pinned = ast.clone();
    let at = AtModifier::At(if t >= 0 {
        UNIX_EPOCH + Duration::from_millis(t as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(t.unsigned_abs())
    });
    let mut unsafe_call = false;
    pin_at(&mut pinned, &at, &mut unsafe_call);
    if unsafe_call {
        return Vec::new();
    }
    let times: Vec<i64> = if t == 0 {
        vec![-1000, 0, 1000]
    } else {
        vec![-10 * t, 0, t / 5, t, 10 * t]
    };
    let text = truncate(&pinned.to_string(), 200);
    times
        .into_iter()
        .map(|et| {
            let label = format!("@-modifier variant {text} evaluated at {et}ms: ");
            (pinned.clone(), et, label)
        })
        .collect()
}

/// Pins selectors and outermost subqueries at `at`, as promqltest's `atModifierTestCases` does
/// (an `@ start()`/`@ end()` is replaced too; nothing inside a subquery is touched).
fn pin_at(e: &mut Expr, at: &AtModifier, unsafe_call: &mut bool) {
    let pin = |slot: &mut Option<AtModifier>| {
        if !matches!(slot, Some(AtModifier::At(_))) {
            *slot = Some(at.clone());
        }
    };
    match e {
        Expr::VectorSelector(vs) => pin(&mut vs.at),
        Expr::MatrixSelector(ms) => pin(&mut ms.vs.at),
        Expr::Subquery(sq) => pin(&mut sq.at),
        Expr::Call(c) => {
            if AT_MODIFIER_UNSAFE_FUNCTIONS.contains(&c.func.name) {
                *unsafe_call = true;
            }
            for a in &mut c.args.args {
                pin_at(a, at, unsafe_call);
            }
        }
        Expr::Aggregate(a) => {
            if let Some(p) = &mut a.param {
                pin_at(p, at, unsafe_call);
            }
            pin_at(&mut a.expr, at, unsafe_call);
        }
        Expr::Unary(u) => pin_at(&mut u.expr, at, unsafe_call),
        Expr::Binary(b) => {
            pin_at(&mut b.lhs, at, unsafe_call);
            pin_at(&mut b.rhs, at, unsafe_call);
        }
        Expr::Paren(p) => pin_at(&mut p.expr, at, unsafe_call),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Comparing

/// promqltest's `almost.Equal`: NaN equals NaN; otherwise a relative difference below `EPSILON`
/// (absolute near zero).
fn almost_equal(a: f64, b: f64) -> bool {
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let min_normal = f64::MIN_POSITIVE;
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < min_normal {
        return diff < EPSILON * min_normal;
    }
    diff / abs_sum.min(f64::MAX) < EPSILON
}

/// promqltest's `compareResult`.
fn compare(case: &EvalCase, value: &Value) -> Result<(), String> {
    match value {
        Value::Matrix(series) => {
            if case.ordered {
                return Err("expected ordered result, but query returned a matrix".into());
            }
            if case.expect_scalar {
                return Err("expected scalar result, but got a matrix".into());
            }
            assert_sorted(series)?;
            let (start, end, step) = case.window;
            for s in series {
                let Some(exp) = case.metrics.get(&s.metric) else {
                    return Err(format!(
                        "unexpected metric {} in result, has {}",
                        s.metric,
                        show_points(&s.points)
                    ));
                };
                let mut expected = Vec::with_capacity(exp.vals.len());
                for (i, v) in exp.vals.iter().enumerate() {
                    let ts = start + i as i64 * step;
                    if end.is_none_or(|end| ts > end) {
                        return Err(format!(
                            "expected {} points for {}, but query time range cannot return this many points",
                            exp.vals.len(),
                            s.metric
                        ));
                    }
                    if let Some(v) = v {
                        expected.push((ts, *v));
                    }
                }
                if expected.len() != s.points.len() {
                    return Err(format!(
                        "expected {} float points for {}, but got {}",
                        expected.len(),
                        s.metric,
                        show_points(&s.points)
                    ));
                }
                for (i, (e, a)) in expected.iter().zip(&s.points).enumerate() {
                    if e.0 != a.0 {
                        return Err(format!(
                            "expected float value at index {i} for {} to have timestamp {}, but it had timestamp {}",
                            s.metric, e.0, a.0
                        ));
                    }
                    if !almost_equal(a.1, e.1) {
                        return Err(format!(
                            "expected float value at index {i} (t={}) for {} to be {}, but got {}",
                            a.0,
                            s.metric,
                            format_float(e.1),
                            format_float(a.1)
                        ));
                    }
                }
            }
            check_all_seen(case, series.iter().map(|s| &s.metric))
        }
        Value::Vector(samples) => {
            if case.expect_scalar {
                return Err("expected scalar result, but got a vector".into());
            }
            for (pos, s) in samples.iter().enumerate() {
                let Some(exp) = case.metrics.get(&s.metric) else {
                    return Err(format!(
                        "unexpected metric {} in result, has value {}",
                        s.metric,
                        format_float(s.v)
                    ));
                };
                if case.ordered && exp.pos != pos + 1 {
                    return Err(format!(
                        "expected metric {} at position {} but was at {}",
                        s.metric,
                        exp.pos,
                        pos + 1
                    ));
                }
                let Some(first) = exp.vals.first() else {
                    return Err(format!("no expected value for {}", s.metric));
                };
                // an expected `_` is promqltest's zero value
                let want = first.unwrap_or(0.0);
                if !almost_equal(want, s.v) {
                    return Err(format!(
                        "expected {} for {} but got {}",
                        format_float(want),
                        s.metric,
                        format_float(s.v)
                    ));
                }
            }
            check_all_seen(case, samples.iter().map(|s| &s.metric))
        }
        Value::Scalar(v) => {
            if !case.expect_scalar {
                return Err(format!(
                    "expected vector or matrix result, but got scalar {}",
                    format_float(*v)
                ));
            }
            let want = case.scalar.unwrap_or(0.0);
            if !almost_equal(want, *v) {
                return Err(format!(
                    "expected scalar {} but got {}",
                    format_float(want),
                    format_float(*v)
                ));
            }
            Ok(())
        }
        Value::String(s) => {
            if &case.expected_string != s {
                return Err(format!(
                    "expected string {:?} but got {s:?}",
                    case.expected_string
                ));
            }
            Ok(())
        }
    }
}

/// Every expected series must be in the result. Called once every result element has matched
/// an expectation, so the distinct result label sets number the expectations exactly when none
/// is missing.
fn check_all_seen<'a>(
    case: &EvalCase,
    metrics: impl Iterator<Item = &'a Labels>,
) -> Result<(), String> {
    let seen: HashSet<&Labels> = metrics.collect();
    if seen.len() == case.metrics.len() {
        return Ok(());
    }
    let mut missing: Vec<String> = case
        .metrics
        .keys()
        .filter(|l| !seen.contains(l))
        .map(|l| l.to_string())
        .collect();
    missing.sort();
    Err(format!(
        "expected metric(s) not found: {}",
        missing.join(", ")
    ))
}

/// promqltest's `assertMatrixSorted`: a range result is ordered by label set.
fn assert_sorted(series: &[tocsin::promql::Series]) -> Result<(), String> {
    for (i, w) in series.windows(2).enumerate() {
        if w[0].metric > w[1].metric {
            return Err(format!(
                "matrix results should always be sorted by labels, but series at index {} with labels {} sorts before series at index {i} with labels {}",
                i + 1,
                w[1].metric,
                w[0].metric
            ));
        }
    }
    Ok(())
}

fn show(v: &Value) -> String {
    let text = v.to_string();
    let text = if text.trim().is_empty() {
        format!("(empty {})", v.type_name())
    } else {
        text.trim_end().replace('\n', "\n      ")
    };
    truncate(&text, MAX_REPORT)
}

fn show_points(points: &[(i64, f64)]) -> String {
    let mut s = format!("{} point(s) [", points.len());
    for (i, (t, v)) in points.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        write!(s, "{}@{t}", format_float(*v)).unwrap();
        if s.len() > MAX_REPORT {
            s.push_str(" …");
            break;
        }
    }
    s.push(']');
    s
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}… ({} more bytes)", &s[..i], s.len() - i),
        None => s.to_string(),
    }
}

/// The runner's own logic, independent of the engine.
mod runner {
    use super::*;

    fn only_eval(text: &str) -> EvalCase {
        let mut evals: Vec<EvalCase> = parse_file(text)
            .into_iter()
            .filter_map(|c| match c {
                Command::Eval(e) => Some(*e),
                _ => None,
            })
            .collect();
        assert_eq!(evals.len(), 1, "{text}");
        evals.pop().unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    fn sample(l: Labels, v: f64) -> tocsin::promql::Sample {
        tocsin::promql::Sample { metric: l, t: 0, v }
    }

    #[test]
    fn floats_compare_with_relative_epsilon_and_nan_equal_to_nan() {
        assert!(almost_equal(f64::NAN, f64::NAN));
        assert!(almost_equal(1.0, 1.0 + 1e-9));
        assert!(!almost_equal(1.0, 1.00001));
        assert!(almost_equal(f64::INFINITY, f64::INFINITY));
        assert!(!almost_equal(0.0, 1e-300));
        assert!(!almost_equal(1.0, f64::NAN));
    }

    #[test]
    fn directives_do_not_count_as_ordered_positions() {
        let case = only_eval(
            "eval instant at 5m sort(m)\n  expect ordered\n  expect warn\n  m{a=\"2\"} 2\n  m{a=\"1\"} 3\n",
        );
        assert!(case.ordered && !case.fail);
        assert_eq!(case.at, 300_000);
        assert_eq!(
            case.metrics[&labels(&[("__name__", "m"), ("a", "2")])].pos,
            1
        );
        assert_eq!(
            case.metrics[&labels(&[("__name__", "m"), ("a", "1")])].pos,
            2
        );
        let ordered_wrong = Value::Vector(vec![
            sample(labels(&[("__name__", "m"), ("a", "1")]), 3.0),
            sample(labels(&[("__name__", "m"), ("a", "2")]), 2.0),
        ]);
        assert!(compare(&case, &ordered_wrong).is_err());
    }

    #[test]
    fn a_number_line_expects_a_scalar_and_ends_the_block() {
        let cmds = parse_file("eval instant at 0 1+1\n  2\n  3\n");
        assert!(matches!(&cmds[0], Command::Eval(e) if e.expect_scalar && e.scalar == Some(2.0)));
        // promqltest reads the next line as a command
        assert!(matches!(&cmds[1], Command::Invalid { line: 3, .. }));
    }

    #[test]
    fn failure_directives_old_and_new() {
        let old = only_eval("eval_fail instant at 0 foo\n  expected_fail_message bad thing\n");
        assert!(old.fail);
        assert_eq!(old.fail_msg.as_deref(), Some("bad thing"));
        let new = only_eval("eval instant at 0 foo\n  expect fail msg: bad thing\n");
        assert!(new.fail);
        assert_eq!(new.fail_msg.as_deref(), Some("bad thing"));
        let re = only_eval("eval instant at 0 foo\n  expect fail regex: bad.*\n");
        assert!(re.fail_regex.unwrap().is_match("bad thing"));
        let any = only_eval("eval range from 0 to 1m step 30s foo\n  expect fail\n");
        assert!(any.fail && any.fail_msg.is_none() && any.fail_regex.is_none());
    }

    #[test]
    fn expect_range_vector_moves_the_evaluation_to_its_end() {
        let case = only_eval(
            "eval instant at 0 m[1m]\n  expect range vector from 0 to 1m step 30s\n  m 1 _ 3\n",
        );
        assert_eq!(case.window, (0, Some(60_000), 30_000));
        assert_eq!(case.at, 60_000);
        assert!(case.exclude_from_range && case.invalid.is_none());
        let m = labels(&[("__name__", "m")]);
        let good = Value::Matrix(vec![tocsin::promql::Series {
            metric: m.clone(),
            points: vec![(0, 1.0), (60_000, 3.0)],
        }]);
        assert_eq!(compare(&case, &good), Ok(()));
        let extra_point = Value::Matrix(vec![tocsin::promql::Series {
            metric: m,
            points: vec![(0, 1.0), (30_000, 2.0), (60_000, 3.0)],
        }]);
        assert!(compare(&case, &extra_point).is_err());
    }

    #[test]
    fn several_values_in_an_instant_eval_are_malformed() {
        let case = only_eval("eval instant at 0 m\n  m 1 2\n");
        assert!(case.invalid.is_some());
    }

    #[test]
    fn expect_string_accepts_go_quoting() {
        let case = only_eval("eval instant at 0 \"a\"\n  expect string `a\\n`\n");
        assert_eq!(case.expected_string, "a\\n");
        assert!(case.exclude_from_range);
    }

    #[test]
    fn instant_vectors_compare_as_sets() {
        let case = only_eval("eval instant at 0 m\n  m{a=\"1\"} 1\n  m{a=\"2\"} NaN\n");
        let a1 = labels(&[("__name__", "m"), ("a", "1")]);
        let a2 = labels(&[("__name__", "m"), ("a", "2")]);
        let any_order = Value::Vector(vec![sample(a2.clone(), f64::NAN), sample(a1.clone(), 1.0)]);
        assert_eq!(compare(&case, &any_order), Ok(()));
        let missing = Value::Vector(vec![sample(a1.clone(), 1.0)]);
        assert!(compare(&case, &missing).unwrap_err().contains("not found"));
        let extra = Value::Vector(vec![
            sample(a1.clone(), 1.0),
            sample(a2.clone(), f64::NAN),
            sample(labels(&[("a", "3")]), 1.0),
        ]);
        assert!(
            compare(&case, &extra)
                .unwrap_err()
                .contains("unexpected metric")
        );
        let wrong = Value::Vector(vec![sample(a1, 1.1), sample(a2, f64::NAN)]);
        assert!(compare(&case, &wrong).is_err());
        assert!(compare(&case, &Value::Scalar(1.0)).is_err());
    }

    #[test]
    fn range_results_must_be_sorted_by_labels() {
        let case =
            only_eval("eval range from 0 to 10s step 10s m\n  m{a=\"1\"} 1 1\n  m{a=\"2\"} 2 2\n");
        let series = |a: &str, v: f64| tocsin::promql::Series {
            metric: labels(&[("__name__", "m"), ("a", a)]),
            points: vec![(0, v), (10_000, v)],
        };
        assert_eq!(
            compare(
                &case,
                &Value::Matrix(vec![series("1", 1.0), series("2", 2.0)])
            ),
            Ok(())
        );
        assert!(
            compare(
                &case,
                &Value::Matrix(vec![series("2", 2.0), series("1", 1.0)])
            )
            .is_err()
        );
    }

    #[test]
    fn at_variants_pin_selectors_but_not_inside_subqueries() {
        let ast =
            tocsin::promql::parse("sum(rate(a[5m])) + max_over_time(b[10m:1m]) + c @ start()")
                .unwrap();
        let variants = at_modifier_variants(&ast, 600_000);
        let times: Vec<i64> = variants.iter().map(|v| v.1).collect();
        assert_eq!(times, vec![-6_000_000, 0, 120_000, 600_000, 6_000_000]);
        let mut pinned: Vec<(String, bool)> = Vec::new();
        walk(&variants[0].0, &mut |e| match e {
            Expr::VectorSelector(vs) => pinned.push((
                vs.name.clone().unwrap(),
                matches!(vs.at, Some(AtModifier::At(_))),
            )),
            Expr::MatrixSelector(ms) => pinned.push((
                ms.vs.name.clone().unwrap(),
                matches!(ms.vs.at, Some(AtModifier::At(_))),
            )),
            Expr::Subquery(sq) => {
                pinned.push(("subquery".into(), matches!(sq.at, Some(AtModifier::At(_)))))
            }
            _ => {}
        });
        pinned.sort();
        let want = [("a", true), ("b", false), ("c", true), ("subquery", true)];
        let want: Vec<(String, bool)> = want.iter().map(|(n, p)| (n.to_string(), *p)).collect();
        assert_eq!(pinned, want);
        assert_eq!(
            at_modifier_variants(&ast, 0)
                .iter()
                .map(|v| v.1)
                .collect::<Vec<_>>(),
            vec![-1000, 0, 1000]
        );
        let time_dependent = tocsin::promql::parse("timestamp(a)").unwrap();
        assert!(at_modifier_variants(&time_dependent, 600_000).is_empty());
    }

    #[test]
    fn experimental_syntax_is_recognised_outside_strings() {
        assert!(uses_experimental_syntax("rate(foo[5m+1m])"));
        assert!(uses_experimental_syntax("foo offset (1m*2)"));
        assert!(uses_experimental_syntax("rate(foo[5m] anchored)"));
        assert!(uses_experimental_syntax("a + fill(0) b"));
        assert!(uses_experimental_syntax("vector(step())"));
        assert!(uses_experimental_syntax("limitk(1, foo)"));
        assert!(!uses_experimental_syntax(r#"foo{a=~"[a-z]+(x)"}"#));
        assert!(!uses_experimental_syntax(r#"foo{a="step()"}"#));
        assert!(!uses_experimental_syntax("foo @ start()"));
        assert!(!uses_experimental_syntax("rate(foo[5m:1m])"));
        let ast = tocsin::promql::parse("sort_by_label(foo, \"a\")").unwrap();
        assert!(uses_experimental(&ast));
        let ast = tocsin::promql::parse("sort(foo)").unwrap();
        assert!(!uses_experimental(&ast));
    }

    #[test]
    fn nhcb_names_the_native_histogram_after_the_classic_series() {
        let b = labels(&[("__name__", "h_bucket"), ("le", "0.5"), ("job", "x")]);
        assert_eq!(
            nhcb_series(&b),
            Some(labels(&[("__name__", "h"), ("job", "x")]))
        );
        assert_eq!(
            nhcb_series(&labels(&[("__name__", "h_count")])),
            Some(labels(&[("__name__", "h")]))
        );
        assert_eq!(
            nhcb_series(&labels(&[("__name__", "h_bucket"), ("le", "NaN")])),
            None
        );
        assert_eq!(nhcb_series(&labels(&[("__name__", "h_total")])), None);
    }

    #[test]
    fn comment_lines_end_blocks_and_bad_lines_fail_alone() {
        let cmds = parse_file("load 1m\n  a 1\n# note\n  b 2\nbogus\n");
        assert!(
            matches!(&cmds[0], Command::Load(l) if l.series.len() == 1 && l.interval_ms == 60_000)
        );
        assert!(matches!(&cmds[1], Command::Invalid { line: 4, .. }));
        assert!(matches!(&cmds[2], Command::Invalid { line: 5, .. }));
        // a malformed eval is one failure; its expectation lines go with it
        let cmds = parse_file("eval instant at 5x m\n  m 1\n  m 2\n\nclear\n");
        assert!(matches!(&cmds[0], Command::Invalid { line: 1, .. }));
        assert!(matches!(&cmds[1], Command::Clear));
        assert_eq!(cmds.len(), 2);
    }
}
