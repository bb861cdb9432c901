//! `tocsin test`: rule unit tests in promtool's format (`rule_files`, `evaluation_interval`,
//! `tests[]` with `interval`, `input_series`, `alert_rule_test`, `promql_expr_test`,
//! `external_labels`, `external_url`, `start_timestamp`, `fuzzy_compare`), run with the real
//! engine, templates and tracker over an in-memory storage and a manual clock: rule groups are
//! evaluated every `evaluation_interval` from the start up to the last `eval_time`, samples
//! becoming visible as time passes (as promtool does), and alerts are compared at the evaluation
//! at or just before each `eval_time`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::Deserialize;

use super::group::{GroupContext, eval_group};
use super::tracker::{AlertStatus, RuleState};
use super::{RuleSet, load_files};
use crate::duration::PromDuration;
use crate::labels::{Labels, Matcher};
use crate::promql::notation::{NotationError, parse_metric, parse_values};
use crate::promql::{Engine, MemStorage, QueryError, Storage, Value};
use crate::rhai_api::ScriptEngine;
use crate::store::SeriesSamples;

/// Occurs when a test file cannot be read or parsed (as opposed to a test failing).
#[derive(Debug, thiserror::Error)]
pub enum TestFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{col}: {message}")]
    Parse {
        path: PathBuf,
        line: u64,
        col: u64,
        message: String,
    },
    #[error("{0}")]
    Rules(#[from] super::RuleErrors),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTestFile {
    #[serde(default)]
    rule_files: Vec<String>,
    #[serde(default)]
    evaluation_interval: Option<PromDuration>,
    #[serde(default)]
    group_eval_order: Vec<String>,
    #[serde(default)]
    fuzzy_compare: bool,
    #[serde(default)]
    tests: Vec<RawTestGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTestGroup {
    #[serde(default)]
    name: String,
    #[serde(default)]
    interval: Option<PromDuration>,
    #[serde(default)]
    input_series: Vec<RawSeries>,
    #[serde(default)]
    alert_rule_test: Vec<RawAlertTest>,
    #[serde(default)]
    promql_expr_test: Vec<RawExprTest>,
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
    #[serde(default)]
    external_url: String,
    #[serde(default)]
    start_timestamp: Option<Scalar>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSeries {
    series: String,
    #[serde(default)]
    values: Option<Scalar>,
}

/// A YAML scalar given as text or as a number.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
enum Scalar {
    Int(i64),
    Float(f64),
    Text(String),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => format!("{f:?}"),
            Scalar::Text(s) => s.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlertTest {
    eval_time: PromDuration,
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<RawExpAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpAlert {
    #[serde(default)]
    exp_labels: BTreeMap<String, String>,
    #[serde(default)]
    exp_annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExprTest {
    expr: String,
    eval_time: PromDuration,
    #[serde(default)]
    exp_samples: Vec<RawExpSample>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpSample {
    #[serde(default)]
    labels: String,
    #[serde(default)]
    value: Option<Scalar>,
    /// a native histogram (not supported: the check is skipped and reported)
    #[serde(default)]
    histogram: Option<String>,
}

/// The outcome of one test group.
#[derive(Debug, Clone)]
pub struct GroupReport {
    pub name: String,
    /// empty when the group passed
    pub failures: Vec<String>,
    /// checks not run (native histograms), with the reason
    pub skipped: Vec<String>,
}

/// The outcome of one test file.
#[derive(Debug)]
pub struct FileReport {
    pub path: PathBuf,
    pub groups: Vec<GroupReport>,
}

impl FileReport {
    pub fn passed(&self) -> bool {
        self.groups.iter().all(|g| g.failures.is_empty())
    }
}

/// An in-memory storage that rule evaluation can write into while it reads.
#[derive(Default)]
struct Shared(RwLock<MemStorage>);

impl Storage for Shared {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, QueryError> {
        self.0
            .read()
            .expect("storage lock")
            .select(matchers, mint, maxt)
    }
}

/// Runs one test file; `run` keeps only test groups whose name matches.
pub fn run_file(
    path: &Path,
    run: Option<&regex::Regex>,
    compat: crate::promql::Compat,
) -> Result<FileReport, TestFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| TestFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let raw: RawTestFile = serde_saphyr::from_str(&text).map_err(|e| {
        let (line, col) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        let full = e.to_string();
        let first = full.lines().next().unwrap_or("").trim();
        TestFileError::Parse {
            path: path.to_path_buf(),
            line,
            col,
            message: first
                .split(" at line ")
                .next()
                .unwrap_or(first)
                .trim_end_matches('.')
                .to_string(),
        }
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let eval_interval = raw
        .evaluation_interval
        .map(|d| d.as_millis())
        .unwrap_or(60_000);
    let files = super::expand_globs(&raw.rule_files, base)?;
    let scripts = ScriptEngine::new();
    let mut rules = load_files(&files, eval_interval, &scripts)?;
    if !raw.group_eval_order.is_empty() {
        let order: HashMap<&str, usize> = raw
            .group_eval_order
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        rules
            .groups
            .sort_by_key(|g| order.get(g.name.as_str()).copied().unwrap_or(usize::MAX));
    }
    let mut report = FileReport {
        path: path.to_path_buf(),
        groups: Vec::new(),
    };
    for (i, tg) in raw.tests.iter().enumerate() {
        let name = if tg.name.is_empty() {
            format!("test {}", i + 1)
        } else {
            tg.name.clone()
        };
        if run.is_some_and(|re| !re.is_match(&tg.name)) {
            continue;
        }
        let mut skipped = Vec::new();
        let failures = run_group(
            tg,
            &rules,
            eval_interval,
            raw.fuzzy_compare,
            &scripts,
            compat,
            &mut skipped,
        );
        report.groups.push(GroupReport {
            name,
            failures,
            skipped,
        });
    }
    Ok(report)
}

fn run_group(
    tg: &RawTestGroup,
    rules: &RuleSet,
    eval_interval: i64,
    fuzzy: bool,
    scripts: &ScriptEngine,
    compat: crate::promql::Compat,
    skipped: &mut Vec<String>,
) -> Vec<String> {
    let mut failures = Vec::new();
    let interval = tg.interval.map(|d| d.as_millis()).unwrap_or(eval_interval);
    let start = match &tg.start_timestamp {
        None => 0,
        Some(s) => match crate::timefmt::parse_time(&s.text()) {
            Ok(t) => t,
            Err(e) => return vec![format!("start_timestamp: {e}")],
        },
    };
    // every input sample, in time order, made visible as evaluation reaches it
    let mut pending: Vec<(i64, Labels, f64)> = Vec::new();
    for s in &tg.input_series {
        let labels = match metric(&s.series) {
            Ok(l) => l,
            Err(e) => return vec![format!("input series {:?}: {e}", s.series)],
        };
        let values = match s.values.as_ref().map(Scalar::text) {
            Some(v) => match parse_values(&v) {
                Ok(v) => v,
                Err(NotationError::NativeHistogram) => {
                    skipped.push(format!(
                        "input series {:?}: native histograms are not supported",
                        s.series
                    ));
                    continue;
                }
                Err(e) => return vec![format!("input series {:?}: {e}", s.series)],
            },
            None => Vec::new(),
        };
        for (i, v) in values.into_iter().enumerate() {
            if let Some(v) = v {
                pending.push((start + i as i64 * interval, labels.clone(), v));
            }
        }
    }
    pending.sort_by_key(|p| p.0);
    let storage = Arc::new(Shared::default());
    let engine = Engine::new(crate::promql::EngineOptions {
        default_subquery_step_ms: eval_interval,
        compat,
        ..Default::default()
    });
    let in_grace = HashSet::new();
    let note = |_: &Labels| None;
    let ctx = GroupContext {
        engine: &engine,
        storage: storage.clone(),
        scripts,
        external_labels: &tg.external_labels,
        external_url: &tg.external_url,
        in_grace: &in_grace,
        note: &note,
    };
    let mut alert_tests: Vec<&RawAlertTest> = tg.alert_rule_test.iter().collect();
    alert_tests.sort_by_key(|a| a.eval_time.as_millis());
    let max_eval = alert_tests
        .iter()
        .map(|a| a.eval_time.as_millis())
        .chain(tg.promql_expr_test.iter().map(|p| p.eval_time.as_millis()))
        .max()
        .unwrap_or(0);
    let mut states: Vec<HashMap<String, RuleState>> = vec![HashMap::new(); rules.groups.len()];
    let mut next_sample = 0;
    let mut curr = 0;
    let mut ts = start;
    while ts <= start + max_eval {
        {
            let mut mem = storage.0.write().expect("storage lock");
            while next_sample < pending.len() && pending[next_sample].0 <= ts {
                let (t, l, v) = &pending[next_sample];
                mem.add(l, *t, *v);
                next_sample += 1;
            }
        }
        let mut eval_errors = Vec::new();
        for (gi, g) in rules.groups.iter().enumerate() {
            // promtool evaluates every group at every evaluation_interval step
            let outcomes = eval_group(g, &mut states[gi], &ctx, ts, &mut |series| {
                let mut mem = storage.0.write().expect("storage lock");
                for (l, t, v) in series {
                    mem.add(l, *t, *v);
                }
            });
            for o in outcomes {
                if let Some(e) = o.error {
                    eval_errors.push(format!(
                        "rule: {}, time: {}, err: {e}",
                        o.name,
                        PromDuration(std::time::Duration::from_millis((ts - start) as u64))
                    ));
                }
            }
        }
        if !eval_errors.is_empty() {
            failures.extend(eval_errors);
            return failures;
        }
        while curr < alert_tests.len() {
            let at = start + alert_tests[curr].eval_time.as_millis();
            if !(ts <= at && at < ts + eval_interval) {
                break;
            }
            let test = alert_tests[curr];
            let mut got: Vec<(Labels, Labels)> = Vec::new();
            for (gi, g) in rules.groups.iter().enumerate() {
                for r in g
                    .rules
                    .iter()
                    .filter(|r| r.is_alert() && r.name == test.alertname)
                {
                    if let Some(st) = states[gi].get(&r.key) {
                        for a in st.active().filter(|a| a.status == AlertStatus::Firing) {
                            got.push((a.labels.clone(), Labels::from_pairs(a.annotations.clone())));
                        }
                    }
                }
            }
            let mut exp: Vec<(Labels, Labels)> = test
                .exp_alerts
                .iter()
                .map(|e| {
                    let mut l = e.exp_labels.clone();
                    l.insert("alertname".into(), test.alertname.clone());
                    (
                        Labels::from_pairs(l),
                        Labels::from_pairs(e.exp_annotations.clone()),
                    )
                })
                .collect();
            got.sort();
            exp.sort();
            if got != exp {
                failures.push(format!(
                    "alertname: {}, time: {},\n        exp:{},\n        got:{}",
                    test.alertname,
                    test.eval_time,
                    show_alerts(&exp),
                    show_alerts(&got)
                ));
            }
            curr += 1;
        }
        ts += eval_interval;
    }
    // the rest of the input becomes visible for the expression tests
    {
        let mut mem = storage.0.write().expect("storage lock");
        for (t, l, v) in &pending[next_sample..] {
            mem.add(l, *t, *v);
        }
    }
    for test in &tg.promql_expr_test {
        if test.exp_samples.iter().any(|s| s.histogram.is_some()) {
            skipped.push(format!(
                "expr: {:?}: expects native histograms, not supported",
                test.expr
            ));
            continue;
        }
        let at = start + test.eval_time.as_millis();
        let got =
            crate::promql::parse(&test.expr).and_then(|e| engine.instant(storage.as_ref(), &e, at));
        let got: Vec<(Labels, f64)> = match got {
            Ok(Value::Vector(v)) => v.into_iter().map(|s| (s.metric, s.v)).collect(),
            Ok(Value::Scalar(v)) => vec![(Labels::default(), v)],
            Ok(other) => {
                failures.push(format!(
                    "expr: {:?}, time: {}, err: unexpected {} result",
                    test.expr,
                    test.eval_time,
                    other.type_name()
                ));
                continue;
            }
            Err(e) => {
                failures.push(format!(
                    "expr: {:?}, time: {}, err: {e}",
                    test.expr, test.eval_time
                ));
                continue;
            }
        };
        let mut exp = Vec::new();
        let mut bad = None;
        for s in &test.exp_samples {
            let labels = if s.labels.trim().is_empty() {
                Labels::default()
            } else {
                match metric(&s.labels) {
                    Ok(l) => l,
                    Err(e) => {
                        bad = Some(format!("exp_samples labels {:?}: {e}", s.labels));
                        break;
                    }
                }
            };
            let v = match s.value.as_ref().unwrap_or(&Scalar::Int(0)) {
                Scalar::Int(i) => *i as f64,
                Scalar::Float(f) => *f,
                Scalar::Text(t) => match crate::promql::notation::parse_number(t) {
                    Some(v) => v,
                    None => {
                        bad = Some(format!("exp_samples value {t:?} is not a number"));
                        break;
                    }
                },
            };
            exp.push((labels, v));
        }
        if let Some(b) = bad {
            failures.push(format!(
                "expr: {:?}, time: {}, err: {b}",
                test.expr, test.eval_time
            ));
            continue;
        }
        let mut got = got;
        got.sort_by(|a, b| a.0.cmp(&b.0));
        exp.sort_by(|a, b| a.0.cmp(&b.0));
        let equal = got.len() == exp.len()
            && got.iter().zip(&exp).all(|(g, e)| {
                g.0 == e.0
                    && (g.1 == e.1
                        || (g.1.is_nan() && e.1.is_nan())
                        // promtool's fuzzy_compare: floating point artifacts, one ulp apart
                        || (fuzzy && (g.1.next_up() == e.1 || g.1.next_down() == e.1)))
            });
        if !equal {
            failures.push(format!(
                "expr: {:?}, time: {},\n        exp: {}\n        got: {}",
                test.expr,
                test.eval_time,
                show_samples(&exp),
                show_samples(&got)
            ));
        }
    }
    failures
}

/// A series selector-like metric (`name{a="b"}`) with nothing after it.
fn metric(s: &str) -> Result<Labels, String> {
    let (labels, rest) = parse_metric(s).map_err(|e| e.to_string())?;
    if !rest.trim().is_empty() {
        return Err(format!("unexpected {:?} after the metric", rest.trim()));
    }
    Ok(labels)
}

fn show_alerts(a: &[(Labels, Labels)]) -> String {
    if a.is_empty() {
        return "[]".into();
    }
    let parts: Vec<String> = a
        .iter()
        .enumerate()
        .map(|(i, (l, ann))| {
            format!("\n        {i}:\n          Labels:{l}\n          Annotations:{ann}")
        })
        .collect();
    parts.join("")
}

fn show_samples(s: &[(Labels, f64)]) -> String {
    let parts: Vec<String> = s
        .iter()
        .map(|(l, v)| format!("{l} {}", crate::promql::format_float(*v)))
        .collect();
    format!("[{}]", parts.join(", "))
}

/// promtool's JUnit XML for a set of file reports.
pub fn junit_xml(reports: &[Result<FileReport, (PathBuf, String)>]) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
    for r in reports {
        match r {
            Ok(f) => {
                let failed = f.groups.iter().filter(|g| !g.failures.is_empty()).count();
                out.push_str(&format!(
                    "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failed}\">\n",
                    esc(&f.path.display().to_string()),
                    f.groups.len()
                ));
                for g in &f.groups {
                    out.push_str(&format!("    <testcase name=\"{}\">", esc(&g.name)));
                    if !g.failures.is_empty() {
                        out.push_str(&format!(
                            "<failure message=\"{}\"></failure>",
                            esc(&g.failures.join("\n"))
                        ));
                    }
                    out.push_str("</testcase>\n");
                }
                out.push_str("  </testsuite>\n");
            }
            Err((p, e)) => {
                out.push_str(&format!(
                    "  <testsuite name=\"{}\" tests=\"1\" failures=\"1\">\n    <testcase name=\"load\"><failure message=\"{}\"></failure></testcase>\n  </testsuite>\n",
                    esc(&p.display().to_string()),
                    esc(e)
                ));
            }
        }
    }
    out.push_str("</testsuites>\n");
    out
}
