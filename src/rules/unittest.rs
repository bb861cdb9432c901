//! `tocsin test`: rule unit tests in promtool's format (`rule_files`, `evaluation_interval`,
//! `tests[]` with `interval`, `input_series`, `alert_rule_test`, `promql_expr_test`,
//! `external_labels`, `external_url`, `start_timestamp`, `fuzzy_compare`), run with the real
//! engine, templates and tracker over an in-memory storage and a manual clock: rule groups are
//! evaluated every `evaluation_interval` from the start up to the last `eval_time`, samples
//! becoming visible as time passes (as promtool does), and alerts are compared at the evaluation
//! at or just before each `eval_time`.
//!
//! An extension, `notification_test`, checks what receivers get: after every group evaluation
//! the alerts go through the real notification stages ([`Stages`]: inhibit → route → group →
//! dedup, with the notification log in memory) at the step's time, and each notification is
//! recorded as its receiver's integrations would send it (webhook payload, email subject and
//! text). The routing comes from the file's `config` (a tocsin.yml) or, without one, sends every
//! alert to one receiver `default` (`group_by: [alertname]`, Alertmanager's default timings, a
//! webhook with `send_resolved: true` and an email with `send_resolved: false`). Links in
//! notifications use the test group's `external_url`, as templates do.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::group::GroupContext;
use super::step::{self, Alerts};
use super::tracker::{AlertStatus, RuleState};
use super::{RuleSet, load_files};
use crate::duration::PromDuration;
use crate::labels::{Labels, Matcher};
use crate::notify::AlertState;
use crate::notify::pipeline::Tick;
use crate::notify::recorder::{NotifySetup, Recorder, Sent};
use crate::promql::notation::{NotationError, parse_metric, parse_values};
use crate::promql::rhai::ScriptEngine;
use crate::promql::{Engine, MemStorage, QueryError, Storage, Value};
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
    /// The file's `config` (the routing for notification tests) cannot be loaded or is invalid.
    #[error("{path}:{line}:{col}: config: {source}")]
    Config {
        path: PathBuf,
        line: u64,
        col: u64,
        #[source]
        source: crate::config::ConfigError,
    },
}

// The `///` comments of these types are the user documentation of the rule test file format:
// `tocsin schema tests` turns them into the JSON Schema editors read (`config::schema`).

/// A rule unit-test file (`*_test.yml`): promtool's format, plus `notification_test` and
/// `config`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTestFile {
    /// The rule files under test: paths or glob patterns, relative to this file.
    #[serde(default)]
    rule_files: Vec<String>,
    /// How often the rule groups are evaluated during the tests. Default `1m` (promtool's).
    #[serde(default)]
    evaluation_interval: Option<PromDuration>,
    /// Group names in the order they are evaluated at each step; groups not named come after.
    #[serde(default)]
    group_eval_order: Vec<String>,
    /// Compare sample values allowing floating-point artifacts (promtool's `fuzzy_compare`).
    /// Default `false`.
    #[serde(default)]
    fuzzy_compare: bool,
    /// A tocsin.yml (relative to the test file) whose `route`, `receivers`, `inhibit_rules` and
    /// `time_intervals` notification tests use. Default: every alert to one receiver `default`.
    #[serde(default)]
    config: Option<Spanned<String>>,
    /// The test groups, each with its own series and time starting at 0.
    #[serde(default)]
    tests: Vec<RawTestGroup>,
}

/// One test group: input series, and what the rules must produce from them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTestGroup {
    /// The group's name (`tocsin test --run` selects by it). Default: `test N`.
    #[serde(default)]
    name: String,
    /// The step between the values of `input_series`. Default: `evaluation_interval`.
    #[serde(default)]
    interval: Option<PromDuration>,
    /// The series the rules read, each with its values in the expanding notation.
    #[serde(default)]
    input_series: Vec<RawSeries>,
    /// Alerts expected at given times.
    #[serde(default)]
    alert_rule_test: Vec<RawAlertTest>,
    /// PromQL expressions and their expected results at given times.
    #[serde(default)]
    promql_expr_test: Vec<RawExprTest>,
    /// Notifications receivers are expected to get (tocsin's extension), through the real
    /// routing, grouping and inhibition.
    #[serde(default)]
    notification_test: Vec<RawNotificationTest>,
    /// Labels templates see as `$externalLabels`.
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
    /// The URL templates see as `$externalURL`, and notifications link to.
    #[serde(default)]
    external_url: String,
    /// The time of the first sample: Unix seconds or RFC 3339. Default `0`.
    #[serde(default)]
    start_timestamp: Option<Scalar>,
}

/// One input series.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSeries {
    /// The series in PromQL notation: `up{job="api", instance="a:9100"}`.
    series: String,
    /// Its values, one per `interval`: `1 2 3`, `0+10x5` (start, step, count), `1x3`, `_`
    /// (missing), `stale`.
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

/// The alerts of one alerting rule at one time.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlertTest {
    /// The time since the test's start, as a duration (`10m`).
    #[serde(deserialize_with = "crate::duration::deserialize_time_offset")]
    eval_time: PromDuration,
    /// The alerting rule's name.
    alertname: String,
    /// The firing alerts expected (pending ones are not listed); empty: none fires.
    #[serde(default)]
    exp_alerts: Vec<RawExpAlert>,
}

/// One expected firing alert.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpAlert {
    /// Its complete label set, the rule's and `alertname` included.
    #[serde(default)]
    exp_labels: BTreeMap<String, String>,
    /// Its annotations, rendered.
    #[serde(default)]
    exp_annotations: BTreeMap<String, String>,
}

/// A PromQL expression's result at one time.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExprTest {
    /// The expression, over the input series and the series rules recorded.
    expr: String,
    /// The time since the test's start, as a duration (`10m`).
    #[serde(deserialize_with = "crate::duration::deserialize_time_offset")]
    eval_time: PromDuration,
    /// The samples expected, in any order; empty: an empty result.
    #[serde(default)]
    exp_samples: Vec<RawExpSample>,
}

/// One expected sample.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpSample {
    /// Its labels in PromQL notation: `up{job="api"}` or `{job="api"}`.
    #[serde(default)]
    labels: String,
    /// Its value.
    #[serde(default)]
    value: Option<Scalar>,
    /// A native histogram (not supported: the check is skipped and reported).
    #[serde(default)]
    histogram: Option<String>,
}

/// What receivers got in the window ending at `eval_time` (from the previous entry's
/// `eval_time`, exclusive, or from the start, inclusive).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotificationTest {
    /// The end of the window, as a duration since the test's start (`10m`).
    eval_time: Spanned<PromDuration>,
    /// Every entry must match a distinct notification sent in the window; empty: none sent.
    #[serde(default)]
    exp_notifications: Vec<RawExpNotification>,
    /// Notifications beyond the expected ones do not fail the test. Default `false`.
    #[serde(default)]
    ignore_extra: bool,
}

/// One expected notification: every field given must match.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpNotification {
    /// The receiver (from the `config` file's `receivers`, or `default`).
    receiver: String,
    /// The notification's overall status (firing when any alert it lists fires).
    #[serde(default)]
    status: Option<ExpStatus>,
    /// The email's exact subject.
    #[serde(default)]
    subject: Option<String>,
    /// A text the email's subject must contain.
    #[serde(default)]
    subject_contains: Option<String>,
    /// Texts that must all appear in the email's text part.
    #[serde(default)]
    body_contains: Vec<String>,
    /// Webhook payload fields: a JSON pointer (`/alerts/0/status`) or a dotted path
    /// (`alerts.0.labels.alertname`) → the expected value.
    #[serde(default)]
    webhook: BTreeMap<String, serde_json::Value>,
    /// The number of alerts the notification lists.
    #[serde(default)]
    alerts: Option<usize>,
}

/// A notification's status.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum ExpStatus {
    /// at least one of its alerts fires
    Firing,
    /// all its alerts resolved
    Resolved,
}

impl ExpStatus {
    fn state(self) -> AlertState {
        match self {
            ExpStatus::Firing => AlertState::Firing,
            ExpStatus::Resolved => AlertState::Resolved,
        }
    }
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

/// Runs test files on up to `threads` threads, files in parallel and, when there are fewer
/// files than threads, each file's test groups in parallel too (each group has its own storage
/// and state, so they are independent). The reports come back in the order of `paths`, each
/// file's groups in the file's order: the output does not depend on `threads`.
pub fn run_files(
    paths: &[PathBuf],
    run: Option<&regex::Regex>,
    compat: crate::promql::Compat,
    threads: usize,
) -> Vec<Result<FileReport, TestFileError>> {
    let threads = threads.max(1);
    let per_file = (threads / paths.len().max(1)).max(1);
    parallel_map(paths, threads, |p| run_file_with(p, run, compat, per_file))
}

/// Runs `f` over `items` on up to `threads` threads (each with the daemon's stack size, as deep
/// expressions need); results in the items' order. A panic in `f` is resumed here.
fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let threads = threads.min(items.len());
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut out: Vec<Option<R>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                std::thread::Builder::new()
                    .stack_size(crate::daemon::THREAD_STACK_BYTES)
                    .spawn_scoped(scope, || {
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(item) = items.get(i) else {
                                return done;
                            };
                            done.push((i, f(item)));
                        }
                    })
                    .expect("spawn a test thread")
            })
            .collect();
        for w in workers {
            let done = w.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            for (i, r) in done {
                out[i] = Some(r);
            }
        }
    });
    out.into_iter()
        .map(|r| r.expect("every item ran"))
        .collect()
}

/// The files a test file reads besides itself, for `tocsin test --watch`: its `rule_files`
/// (each pattern expanded relative to the file; a pattern that matches nothing yet contributes
/// its own path, so creating that file counts) and its `config`. Paths are as the test file's
/// directory gives them. A file that cannot be read or parsed reads nothing else (its own
/// change reruns it). At most [`MAX_WATCH_INPUTS`] paths.
pub fn test_inputs(path: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let Ok(raw) = serde_saphyr::from_str::<RawTestFile>(&text) else {
        return Vec::new();
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    for pattern in &raw.rule_files {
        match super::expand_globs(std::slice::from_ref(pattern), base) {
            Ok(files) => out.extend(files),
            Err(_) => out.push(base.join(pattern)),
        }
    }
    if let Some(config) = &raw.config {
        out.push(base.join(&config.value));
    }
    out.sort();
    out.dedup();
    out.truncate(MAX_WATCH_INPUTS);
    out
}

/// The most input files [`test_inputs`] returns for one test file.
pub const MAX_WATCH_INPUTS: usize = 1024;

/// The test files a change to `changed` affects, in `tests`' order: each test file that changed
/// and each whose inputs (`tests[i].1`, from [`test_inputs`]) include a changed file. Paths are
/// compared as given: callers pass absolute ones on both sides.
pub fn affected_tests(
    tests: &[(PathBuf, Vec<PathBuf>)],
    changed: &std::collections::BTreeSet<PathBuf>,
) -> Vec<PathBuf> {
    tests
        .iter()
        .filter(|(test, inputs)| {
            changed.contains(test) || inputs.iter().any(|i| changed.contains(i))
        })
        .map(|(test, _)| test.clone())
        .collect()
}

/// Runs one test file; `run` keeps only test groups whose name matches.
pub fn run_file(
    path: &Path,
    run: Option<&regex::Regex>,
    compat: crate::promql::Compat,
) -> Result<FileReport, TestFileError> {
    run_file_with(path, run, compat, 1)
}

/// [`run_file`] with its test groups on up to `threads` threads.
fn run_file_with(
    path: &Path,
    run: Option<&regex::Regex>,
    compat: crate::promql::Compat,
    threads: usize,
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
        TestFileError::Parse {
            path: path.to_path_buf(),
            line,
            col,
            message: crate::config::parse_message(&e),
        }
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let parse_error = |at: &serde_saphyr::Location, message: String| TestFileError::Parse {
        path: path.to_path_buf(),
        line: at.line(),
        col: at.column(),
        message,
    };
    for tg in &raw.tests {
        for pair in tg.notification_test.windows(2) {
            if pair[1].eval_time.value.as_millis() <= pair[0].eval_time.value.as_millis() {
                return Err(parse_error(
                    &pair[1].eval_time.referenced,
                    format!(
                        "notification_test eval_time {} is not after the previous entry's {}: \
                         each entry covers what was sent since the previous one",
                        pair[1].eval_time.value, pair[0].eval_time.value
                    ),
                ));
            }
        }
    }
    let notify = match &raw.config {
        Some(c) => {
            let file = base.join(&c.value);
            let cfg =
                crate::config::Config::load(&file).map_err(|source| TestFileError::Config {
                    path: path.to_path_buf(),
                    line: c.referenced.line(),
                    col: c.referenced.column(),
                    source,
                })?;
            let Some(plan) = cfg.notify_plan() else {
                return Err(parse_error(
                    &c.referenced,
                    format!(
                        "config {}: no route: notification tests need its route and receivers",
                        file.display()
                    ),
                ));
            };
            NotifySetup::new(&plan)
        }
        None => NotifySetup::builtin(),
    };
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
    // one engine for the file's groups: its selector cache compiles each rule's matchers once
    let engine = Engine::new(crate::promql::EngineOptions {
        default_subquery_step_ms: eval_interval,
        compat,
        ..Default::default()
    })
    .with_selector_cache();
    let ctx = FileContext {
        engine: &engine,
        rules: &rules,
        eval_interval,
        fuzzy: raw.fuzzy_compare,
        scripts: &scripts,
        notify: &notify,
    };
    let selected: Vec<(usize, &RawTestGroup)> = raw
        .tests
        .iter()
        .enumerate()
        .filter(|(_, tg)| run.is_none_or(|re| re.is_match(&tg.name)))
        .collect();
    let groups = parallel_map(&selected, threads, |&(i, tg)| {
        let name = if tg.name.is_empty() {
            format!("test {}", i + 1)
        } else {
            tg.name.clone()
        };
        let mut skipped = Vec::new();
        let failures = run_group(tg, &ctx, &mut skipped);
        GroupReport {
            name,
            failures,
            skipped,
        }
    });
    Ok(FileReport {
        path: path.to_path_buf(),
        groups,
    })
}

/// What every test group of a file shares.
struct FileContext<'a> {
    engine: &'a Engine,
    rules: &'a RuleSet,
    eval_interval: i64,
    fuzzy: bool,
    scripts: &'a ScriptEngine,
    notify: &'a NotifySetup,
}

fn run_group(tg: &RawTestGroup, fc: &FileContext, skipped: &mut Vec<String>) -> Vec<String> {
    let (rules, eval_interval, fuzzy) = (fc.rules, fc.eval_interval, fc.fuzzy);
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
    let engine = fc.engine;
    let in_grace = HashSet::new();
    let note = |_: &Labels| None;
    let ctx = GroupContext {
        engine,
        storage: storage.clone(),
        scripts: fc.scripts,
        external_labels: &tg.external_labels,
        external_url: &tg.external_url,
        in_grace: &in_grace,
        note: &note,
        cancel: None,
        remote: None,
    };
    let mut alert_tests: Vec<&RawAlertTest> = tg.alert_rule_test.iter().collect();
    alert_tests.sort_by_key(|a| a.eval_time.as_millis());
    let max_eval = alert_tests
        .iter()
        .map(|a| a.eval_time.as_millis())
        .chain(tg.promql_expr_test.iter().map(|p| p.eval_time.as_millis()))
        .chain(
            tg.notification_test
                .iter()
                .map(|n| n.eval_time.value.as_millis()),
        )
        .max()
        .unwrap_or(0);
    // notifications are recorded only when the group checks them
    let mut recorder = (!tg.notification_test.is_empty())
        .then(|| Recorder::new(fc.notify, &tg.external_url, start));
    let mut evaluated_once = false;
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
            // promtool evaluates every group at every evaluation_interval step; as the daemon,
            // each is one step: the group, then a pipeline tick over every rule's alerts
            evaluated_once |= gi + 1 == rules.groups.len();
            let mut own = std::mem::take(&mut states[gi]);
            let notify = recorder.as_mut().map(|rec| step::Notify {
                stages: rec as &mut dyn Tick,
                // the group's own states are out of `states` for the step
                others: Alerts::of(rules.groups.iter().map(|g| &**g).zip(&states)),
                all_evaluated: evaluated_once,
            });
            let batch = step::step(g, &mut own, &ctx, ts, notify);
            states[gi] = own;
            {
                let mut mem = storage.0.write().expect("storage lock");
                for (l, t, v) in &batch.samples {
                    mem.add(l, *t, *v);
                }
            }
            if let Some(rec) = recorder.as_mut() {
                rec.record(&batch.notifications, ts);
            }
            for o in batch.outcomes {
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
    if let Some(rec) = &recorder {
        failures.extend(check_notifications(&tg.notification_test, &rec.sent));
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

/// Compares each `notification_test` entry with what was sent in its window; one failure text
/// per entry that does not hold.
fn check_notifications(tests: &[RawNotificationTest], sent: &[Sent]) -> Vec<String> {
    let mut failures = Vec::new();
    let mut after: Option<i64> = None;
    for test in tests {
        let until = test.eval_time.value.as_millis();
        let got: Vec<&Sent> = sent
            .iter()
            .filter(|s| s.at <= until && after.is_none_or(|a| s.at > a))
            .collect();
        let window = match after {
            None => format!("[0s, {}]", test.eval_time.value),
            Some(a) => format!("({}, {}]", ms(a), test.eval_time.value),
        };
        after = Some(until);
        let fits: Vec<Vec<bool>> = test
            .exp_notifications
            .iter()
            .map(|e| got.iter().map(|g| mismatches(e, g).is_empty()).collect())
            .collect();
        let matched = max_matching(&fits, got.len());
        let mut reasons = Vec::new();
        // sent notifications an explanation already compares with an expected entry
        let mut mentioned = HashSet::new();
        for (i, e) in test.exp_notifications.iter().enumerate() {
            if matched[i].is_some() {
                continue;
            }
            let same: Vec<usize> = (0..got.len())
                .filter(|&j| got[j].receiver == e.receiver)
                .collect();
            if same.is_empty() {
                reasons.push(format!(
                    "exp {i}: nothing was sent to receiver {:?}",
                    e.receiver
                ));
            }
            for j in same {
                mentioned.insert(j);
                let m = mismatches(e, got[j]);
                if m.is_empty() {
                    reasons.push(format!(
                        "exp {i}: got {j} fits, but is matched by another expected entry"
                    ));
                } else {
                    reasons.push(format!("exp {i} vs got {j}: {}", m.join("; ")));
                }
            }
        }
        if !test.ignore_extra {
            let extra = (0..got.len()).filter(|j| !matched.contains(&Some(*j)));
            for j in extra.filter(|j| !mentioned.contains(j)) {
                reasons.push(format!(
                    "got {j}: not expected (ignore_extra: true on the entry allows more)"
                ));
            }
        }
        if reasons.is_empty() {
            continue;
        }
        failures.push(format!(
            "notification_test: time: {}, sent in {window},\n        exp:{}\n        got:{}\n        {}",
            test.eval_time.value,
            show_expected(&test.exp_notifications),
            show_sent(&got),
            reasons.join("\n        ")
        ));
    }
    failures
}

/// Why `g` does not satisfy `e`, one text per differing field; empty when it does.
fn mismatches(e: &RawExpNotification, g: &Sent) -> Vec<String> {
    if e.receiver != g.receiver {
        return vec![format!("receiver is {:?}", g.receiver)];
    }
    let mut out = Vec::new();
    if let Some(st) = e.status
        && st.state() != g.status
    {
        out.push(format!("status is {}", g.status.as_str()));
    }
    if let Some(n) = e.alerts
        && n != g.alerts
    {
        out.push(format!("alerts is {}", g.alerts));
    }
    let wants_email = e.subject.is_some() || e.subject_contains.is_some();
    match &g.email {
        None if wants_email || !e.body_contains.is_empty() => out.push(
            "no email sent (no email integration, or only resolved alerts and send_resolved false)"
                .to_string(),
        ),
        None => {}
        Some(m) => {
            if let Some(s) = &e.subject
                && &m.subject != s
            {
                out.push(format!("subject is {:?}", m.subject));
            }
            if let Some(s) = &e.subject_contains
                && !m.subject.contains(s.as_str())
            {
                out.push(format!("subject {:?} lacks {s:?}", m.subject));
            }
            let lacking: Vec<&String> = e
                .body_contains
                .iter()
                .filter(|b| !m.text.contains(b.as_str()))
                .collect();
            if !lacking.is_empty() {
                out.push(format!(
                    "email text lacks {lacking:?}; the text is:\n{}",
                    m.text
                        .lines()
                        .map(|l| format!("          | {l}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                ));
            }
        }
    }
    if !e.webhook.is_empty() {
        match &g.webhook {
            None => out.push(
                "no webhook sent (no webhook integration, or only resolved alerts and send_resolved false)"
                    .to_string(),
            ),
            Some(payload) => {
                for (path, want) in &e.webhook {
                    match json_at(payload, path) {
                        None => out.push(format!("webhook {path}: absent")),
                        Some(v) if !json_matches(v, want) => {
                            out.push(format!("webhook {path} is {v}"))
                        }
                        Some(_) => {}
                    }
                }
            }
        }
    }
    out
}

/// A maximum matching of expected entries to sent notifications (`fits[exp][got]`): for each
/// expected entry, the notification it is matched with.
fn max_matching(fits: &[Vec<bool>], n_got: usize) -> Vec<Option<usize>> {
    fn augment(
        i: usize,
        fits: &[Vec<bool>],
        seen: &mut [bool],
        owner: &mut [Option<usize>],
    ) -> bool {
        for j in 0..seen.len() {
            if fits[i][j] && !seen[j] {
                seen[j] = true;
                if owner[j].is_none_or(|k| augment(k, fits, seen, owner)) {
                    owner[j] = Some(i);
                    return true;
                }
            }
        }
        false
    }
    let mut owner: Vec<Option<usize>> = vec![None; n_got];
    for i in 0..fits.len() {
        let mut seen = vec![false; n_got];
        augment(i, fits, &mut seen, &mut owner);
    }
    let mut by_exp = vec![None; fits.len()];
    for (j, o) in owner.iter().enumerate() {
        if let Some(i) = o {
            by_exp[*i] = Some(j);
        }
    }
    by_exp
}

/// The value at a JSON pointer (`/alerts/0/status`) or a dotted path (`alerts.0.status`).
fn json_at<'v>(v: &'v serde_json::Value, path: &str) -> Option<&'v serde_json::Value> {
    if path.is_empty() || path.starts_with('/') {
        return v.pointer(path);
    }
    path.split('.').try_fold(v, |cur, seg| match cur {
        serde_json::Value::Object(m) => m.get(seg),
        serde_json::Value::Array(a) => a.get(seg.parse::<usize>().ok()?),
        _ => None,
    })
}

/// Equal JSON, or a string equal to the text of an expected number or boolean (a label value
/// `"5"` written unquoted in YAML).
fn json_matches(got: &serde_json::Value, want: &serde_json::Value) -> bool {
    use serde_json::Value;
    got == want
        || match (got, want) {
            (Value::String(g), Value::Number(n)) => *g == n.to_string(),
            (Value::String(g), Value::Bool(b)) => *g == b.to_string(),
            (Value::Number(g), Value::Number(w)) => g.as_f64() == w.as_f64(),
            _ => false,
        }
}

fn ms(t: i64) -> PromDuration {
    PromDuration(std::time::Duration::from_millis(t.max(0) as u64))
}

fn show_expected(exp: &[RawExpNotification]) -> String {
    if exp.is_empty() {
        return "[]".into();
    }
    let parts: Vec<String> = exp
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut f = vec![format!("receiver: {}", e.receiver)];
            if let Some(s) = e.status {
                f.push(format!("status: {}", s.state().as_str()));
            }
            if let Some(s) = &e.subject {
                f.push(format!("subject: {s:?}"));
            }
            if let Some(s) = &e.subject_contains {
                f.push(format!("subject_contains: {s:?}"));
            }
            if !e.body_contains.is_empty() {
                f.push(format!("body_contains: {:?}", e.body_contains));
            }
            for (k, v) in &e.webhook {
                f.push(format!("webhook {k}: {v}"));
            }
            if let Some(n) = e.alerts {
                f.push(format!("alerts: {n}"));
            }
            format!("\n          {i}: {}", f.join(", "))
        })
        .collect();
    parts.join("")
}

fn show_sent(got: &[&Sent]) -> String {
    if got.is_empty() {
        return "[]".into();
    }
    let parts: Vec<String> = got
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let subject = match &g.email {
                Some(m) => format!("subject: {:?}", m.subject),
                None => "no email".to_string(),
            };
            format!(
                "\n          {i}: receiver: {}, {subject}, status: {}, alerts: {}, at: {}",
                g.receiver,
                g.status.as_str(),
                g.alerts,
                ms(g.at)
            )
        })
        .collect();
    parts.join("")
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

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = r#"
groups:
  - name: g
    rules:
      - alert: Down
        expr: up == 0
        labels: { severity: page }
        annotations: { summary: "{{ $labels.instance }} is down" }
      - alert: Slow
        expr: latency_seconds > 1
        labels: { severity: warning }
        annotations: { summary: "{{ $labels.instance }} is slow" }
"#;

    /// Writes `rules.yml`, the extra files and `t_test.yml` (the header below, then `body`) to
    /// a temporary directory and runs the test file.
    fn run(extra: &[(&str, &str)], body: &str) -> Result<FileReport, TestFileError> {
        run_rules(RULES, extra, body)
    }

    /// [`run`] with other rules in `rules.yml`.
    fn run_rules(
        rules: &str,
        extra: &[(&str, &str)],
        body: &str,
    ) -> Result<FileReport, TestFileError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rules.yml"), rules).unwrap();
        for (name, text) in extra {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let path = dir.path().join("t_test.yml");
        std::fs::write(&path, format!("rule_files: [rules.yml]\n{body}")).unwrap();
        run_file(&path, None, crate::promql::Compat::default())
    }

    fn failures(r: &FileReport) -> String {
        r.groups
            .iter()
            .flat_map(|g| g.failures.iter().map(move |f| format!("{}: {f}", g.name)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A group of `up{instance="a"}` values (1m apart) and its notification_test entries.
    fn group(name: &str, up: &str, latency: &str, notification_test: &str) -> String {
        format!(
            "  - name: {name}\n    interval: 1m\n    input_series:\n      \
             - series: 'up{{instance=\"a\"}}'\n        values: '{up}'\n      \
             - series: 'latency_seconds{{instance=\"a\"}}'\n        values: '{latency}'\n    \
             notification_test:\n{notification_test}"
        )
    }

    #[test]
    fn builtin_routing_sends_webhook_and_email_then_resolved_by_webhook_only() {
        // Down fires at 0 and resolves at 3m: first flush after group_wait (30s) at the 1m
        // evaluation, the resolution at the next flush, group_interval (5m) later
        let tests = [
            (
                "as sent",
                r#"      - eval_time: 30s
        exp_notifications: []
      - eval_time: 1m
        exp_notifications:
          - receiver: default
            status: firing
            alerts: 1
            subject: "[FIRING:1] Down"
            subject_contains: Down
            body_contains: ["Summary: a is down", "Why: first notification"]
            webhook:
              status: firing
              groupKey: '{}:{alertname="Down"}'
              alerts.0.labels.instance: a
              /commonLabels/severity: page
      - eval_time: 5m
        exp_notifications: []
      - eval_time: 6m
        exp_notifications:
          - receiver: default
            status: resolved
            webhook: { status: resolved, alerts.0.endsAt: "1970-01-01T00:03:00Z" }
"#,
                None,
            ),
            (
                "resolved by email",
                r#"      - eval_time: 6m
        ignore_extra: true
        exp_notifications:
          - receiver: default
            subject: "[RESOLVED] Down"
"#,
                Some("no email sent"),
            ),
            (
                "wrong subject",
                r#"      - eval_time: 1m
        exp_notifications:
          - receiver: default
            subject: "[FIRING:2] Down"
"#,
                Some(
                    "notification_test: time: 1m, sent in [0s, 1m],\n        exp:\n          \
                     0: receiver: default, subject: \"[FIRING:2] Down\"\n        got:\n          \
                     0: receiver: default, subject: \"[FIRING:1] Down\", status: firing, alerts: 1, at: 1m\n        \
                     exp 0 vs got 0: subject is \"[FIRING:1] Down\"",
                ),
            ),
        ];
        for (name, entries, want) in tests {
            let body = format!("tests:\n{}", group(name, "0 0 0 1x10", "0x10", entries));
            let r = run(&[], &body).unwrap();
            let got = failures(&r);
            match want {
                None => assert!(r.passed(), "{name}: {got}"),
                Some(w) => assert!(got.contains(w), "{name}: want {w:?} in\n{got}"),
            }
        }
    }

    #[test]
    fn webhook_starts_at_is_the_firing_time_not_the_pending_time() {
        // Down with `for: 1m`: pending at 0, firing at the 1m evaluation, flushed after
        // group_wait (30s) at 2m; `up` returns at 3m, the resolution goes out a group_interval
        // (5m) after the first flush. Prometheus sends `FiredAt` as `startsAt`, resolved too.
        let rules = RULES.replace("expr: up == 0\n", "expr: up == 0\n        for: 1m\n");
        assert!(rules.contains("for: 1m"));
        let entries = r#"      - eval_time: 1m
        exp_notifications: []
      - eval_time: 2m
        exp_notifications:
          - receiver: default
            status: firing
            webhook: { alerts.0.startsAt: "1970-01-01T00:01:00Z", alerts.0.endsAt: "0001-01-01T00:00:00Z" }
      - eval_time: 7m
        exp_notifications:
          - receiver: default
            status: resolved
            webhook: { alerts.0.startsAt: "1970-01-01T00:01:00Z", alerts.0.endsAt: "1970-01-01T00:03:00Z" }
"#;
        let body = format!("tests:\n{}", group("for", "0 0 0 1x10", "0x10", entries));
        let r = run_rules(&rules, &[], &body).unwrap();
        assert!(r.passed(), "{}", failures(&r));
    }

    #[test]
    fn alerts_series_ends_when_the_alert_resolves() {
        // Down fires at 0 and 1m and resolves at 2m: its `ALERTS` series gets a staleness
        // marker at 2m instead of answering for the lookback (5m), as in promtool
        let body = r#"tests:
  - interval: 1m
    input_series:
      - series: 'up{instance="a"}'
        values: '0 0 1x5'
    alert_rule_test:
      - eval_time: 1m
        alertname: Down
        exp_alerts:
          - exp_labels: { instance: a, severity: page }
            exp_annotations: { summary: a is down }
      - eval_time: 2m
        alertname: Down
        exp_alerts: []
    promql_expr_test:
      - expr: ALERTS{alertstate="firing"}
        eval_time: 1m
        exp_samples:
          - labels: 'ALERTS{alertname="Down", alertstate="firing", instance="a", severity="page"}'
            value: 1
      - expr: ALERTS{alertstate="firing"}
        eval_time: 2m
        exp_samples: []
      - expr: ALERTS
        eval_time: 4m
        exp_samples: []
"#;
        let r = run(&[], body).unwrap();
        assert!(r.passed(), "{}", failures(&r));
    }

    #[test]
    fn alerts_for_state_holds_the_active_time_and_ends_with_the_alert() {
        // Down with `for: 1m`: pending at 1m, firing at 2m and 3m, resolved at 4m; as in
        // promtool, `ALERTS_FOR_STATE` holds its active time (1m: 60 s) while it is pending or
        // firing and ends with a staleness marker when it resolves
        let rules = RULES.replace("expr: up == 0\n", "expr: up == 0\n        for: 1m\n");
        let body = r#"tests:
  - interval: 1m
    input_series:
      - series: 'up{instance="a"}'
        values: '1 0 0 0 1x5'
    promql_expr_test:
      - expr: ALERTS_FOR_STATE
        eval_time: 1m
        exp_samples:
          - labels: 'ALERTS_FOR_STATE{alertname="Down", instance="a", severity="page"}'
            value: 60
      - expr: ALERTS_FOR_STATE
        eval_time: 3m
        exp_samples:
          - labels: 'ALERTS_FOR_STATE{alertname="Down", instance="a", severity="page"}'
            value: 60
      - expr: ALERTS_FOR_STATE
        eval_time: 4m
        exp_samples: []
      - expr: ALERTS_FOR_STATE
        eval_time: 6m
        exp_samples: []
"#;
        let r = run_rules(&rules, &[], body).unwrap();
        assert!(r.passed(), "{}", failures(&r));
    }

    #[test]
    fn expected_entries_match_distinct_notifications_and_extras_fail() {
        // Down and Slow fire at 0: two notifications to `default` at 1m
        let cases = [
            // the first entry fits both: a greedy match would give it Down and fail the second
            (
                "  - receiver: default\n  - receiver: default\n    subject: \"[FIRING:1] Down\"\n",
                false,
                None,
            ),
            ("  - receiver: default\n", true, None),
            (
                "  - receiver: default\n",
                false,
                Some("got 1: not expected (ignore_extra: true on the entry allows more)"),
            ),
            (
                "  - receiver: default\n    subject: \"[FIRING:1] Down\"\n  - receiver: default\n    subject: \"[FIRING:1] Down\"\n",
                false,
                Some("exp 1: got 0 fits, but is matched by another expected entry"),
            ),
            (
                "  - receiver: ops\n",
                true,
                Some("exp 0: nothing was sent to receiver \"ops\""),
            ),
        ];
        for (exp, ignore_extra, want) in cases {
            let exp: String = exp.lines().map(|l| format!("          {l}\n")).collect();
            let entries = format!(
                "      - eval_time: 1m\n        ignore_extra: {ignore_extra}\n        exp_notifications:\n{exp}"
            );
            let body = format!("tests:\n{}", group("g", "0x5", "2x5", &entries));
            let r = run(&[], &body).unwrap();
            let got = failures(&r);
            match want {
                None => assert!(r.passed(), "{exp}: {got}"),
                Some(w) => assert!(got.contains(w), "{exp}: want {w:?} in\n{got}"),
            }
        }
    }

    #[test]
    fn config_routes_and_inhibits_as_the_daemon() {
        let config = r#"
route:
  receiver: ops
  group_by: [alertname]
  group_wait: 0s
  routes: [ { matchers: ['severity="page"'], receiver: pager } ]
receivers:
  - name: ops
    email: { to: [ops@example.org], from: t@example.org, smarthost: "mail.example.org:587" }
  - name: pager
    webhook: { url: "http://127.0.0.1:9/" }
inhibit_rules:
  - { source_matchers: ['alertname="Down"'], target_matchers: ['alertname="Slow"'], equal: [instance] }
"#;
        // Slow fires from 0, Down from 2m: Slow reaches ops at once (group_wait 0s); once Down
        // fires, Slow is inhibited, which is no change ops hears about (Alertmanager)
        let entries = r#"      - eval_time: 0s
        exp_notifications:
          - { receiver: ops, subject: "[FIRING:1] Slow", body_contains: ["a is slow"] }
      - eval_time: 2m
        exp_notifications:
          - { receiver: pager, status: firing, webhook: { receiver: pager } }
"#;
        let body = format!(
            "config: notify.yml\ntests:\n{}",
            group("routed", "1 1 0x5", "2x8", entries)
        );
        let r = run(&[("notify.yml", config)], &body).unwrap();
        assert!(r.passed(), "{}", failures(&r));
        // an email-only receiver has no webhook to check
        let entries = r#"      - eval_time: 0s
        exp_notifications:
          - { receiver: ops, webhook: { status: firing } }
"#;
        let body = format!(
            "config: notify.yml\ntests:\n{}",
            group("no webhook", "1x5", "2x5", entries)
        );
        let r = run(&[("notify.yml", config)], &body).unwrap();
        assert!(failures(&r).contains("no webhook sent"), "{}", failures(&r));
    }

    #[test]
    fn file_problems_are_errors_with_positions() {
        let entry = |extra: &str| {
            format!(
                "tests:\n{}",
                group(
                    "g",
                    "1",
                    "1",
                    &format!(
                        "      - eval_time: 1m\n        exp_notifications:\n          - receiver: x\n{extra}"
                    )
                )
            )
        };
        // c.yml has no route
        let cases = [
            (entry("            subjet: y\n"), "t_test.yml:14:13: "),
            (entry("            status: pending\n"), "t_test.yml:14:21: "),
            (
                format!(
                    "tests:\n{}",
                    group(
                        "g",
                        "1",
                        "1",
                        "      - eval_time: 2m\n      - eval_time: 1m\n"
                    )
                ),
                "t_test.yml:12:20: notification_test eval_time 1m is not after the previous entry's 2m",
            ),
            (
                "config: none.yml\ntests: []\n".to_string(),
                "t_test.yml:2:9: config: cannot read ",
            ),
            (
                "config: c.yml\ntests: []\n".to_string(),
                "t_test.yml:2:9: config ",
            ),
            (
                "config: c.yml\n".to_string(),
                "c.yml: no route: notification tests need its route and receivers",
            ),
        ];
        for (body, want) in cases {
            let e = run(&[("c.yml", "receivers: []\n")], &body)
                .expect_err(want)
                .to_string();
            assert!(e.contains(want), "want {want:?} in {e:?}");
        }
    }

    #[test]
    fn webhook_paths_are_json_pointers_or_dotted() {
        let v = serde_json::json!({"status": "firing", "truncatedAlerts": 0,
            "alerts": [{"labels": {"code": "5", "a.b": "dots"}}]});
        let cases = [
            ("status", serde_json::json!("firing"), true),
            ("/status", serde_json::json!("firing"), true),
            ("truncatedAlerts", serde_json::json!(0), true),
            ("truncatedAlerts", serde_json::json!(0.0), true),
            // a label value written unquoted in YAML
            ("alerts.0.labels.code", serde_json::json!(5), true),
            ("alerts.0.labels.code", serde_json::json!(6), false),
            // a key with a dot needs a pointer
            ("/alerts/0/labels/a.b", serde_json::json!("dots"), true),
            ("alerts.0.labels.a.b", serde_json::json!("dots"), false),
            ("alerts.1.labels", serde_json::json!(null), false),
            ("status.x", serde_json::json!(null), false),
        ];
        for (path, want, ok) in cases {
            let m = json_at(&v, path).is_some_and(|g| json_matches(g, &want));
            assert_eq!(m, ok, "{path} {want}");
        }
    }
}

#[cfg(test)]
mod parallel_tests {
    use super::*;

    /// A directory of test files: each with groups that pass and groups that fail (alternating
    /// by index), one unreadable file among them.
    fn suite() -> (tempfile::TempDir, Vec<PathBuf>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("rules.yml"),
            "groups:\n  - name: g\n    rules:\n      - alert: Down\n        expr: up == 0\n",
        )
        .unwrap();
        let mut paths = Vec::new();
        for f in 0..7 {
            let mut body = String::from("rule_files: [rules.yml]\ntests:\n");
            for g in 0..(3 + f % 4) {
                let fires = if (f + g) % 2 == 0 {
                    "[]"
                } else {
                    "[{exp_labels: {instance: a}}]"
                };
                body.push_str(&format!(
                    "  - name: f{f}g{g}\n    interval: 1m\n    input_series:\n      \
                     - series: 'up{{instance=\"a\"}}'\n        values: '0 0 0'\n    \
                     alert_rule_test:\n      - eval_time: 2m\n        alertname: Down\n        \
                     exp_alerts: {fires}\n"
                ));
            }
            let path = dir.path().join(format!("f{f}_test.yml"));
            std::fs::write(&path, body).unwrap();
            paths.push(path);
        }
        paths.insert(3, dir.path().join("missing_test.yml"));
        (dir, paths)
    }

    fn shown(results: &[Result<FileReport, TestFileError>]) -> Vec<String> {
        results
            .iter()
            .map(|r| match r {
                Ok(r) => format!("{}: {:?}", r.path.display(), r.groups),
                Err(e) => e.to_string(),
            })
            .collect()
    }

    #[test]
    fn reports_are_the_same_and_in_order_whatever_the_threads() {
        let (_dir, paths) = suite();
        let one = shown(&run_files(
            &paths,
            None,
            crate::promql::Compat::default(),
            1,
        ));
        assert_eq!(one.len(), 8);
        assert!(one[3].contains("cannot read"), "{}", one[3]);
        assert!(
            one[0].contains("f0g1") && one[0].contains("exp:"),
            "{}",
            one[0]
        );
        for threads in [2, 3, 16, 64] {
            let many = shown(&run_files(
                &paths,
                None,
                crate::promql::Compat::default(),
                threads,
            ));
            assert_eq!(many, one, "{threads} threads");
        }
        // fewer files than threads: the groups of one file run in parallel, in order too
        let single = &paths[7..8];
        assert!(single[0].ends_with("f6_test.yml"));
        let one = shown(&run_files(
            single,
            None,
            crate::promql::Compat::default(),
            1,
        ));
        let many = shown(&run_files(
            single,
            None,
            crate::promql::Compat::default(),
            8,
        ));
        assert_eq!(many, one);
        let order: Vec<String> = (0..5).map(|g| format!("f6g{g}")).collect();
        let mut at = 0;
        for name in &order {
            at = one[0][at..]
                .find(name.as_str())
                .map(|i| at + i)
                .expect(name);
        }
    }
}

#[cfg(test)]
mod watch_tests {
    use super::*;

    #[test]
    fn a_change_affects_the_test_file_itself_and_those_that_read_the_changed_file() {
        let p = |s: &str| PathBuf::from(s);
        let tests = vec![
            (p("/t/a_test.yml"), vec![p("/r/a.yml"), p("/r/shared.yml")]),
            (p("/t/b_test.yml"), vec![p("/r/b.yml"), p("/r/shared.yml")]),
            (p("/t/c_test.yml"), vec![p("/r/c.yml")]),
        ];
        let changed = |paths: &[&str]| paths.iter().map(|s| p(s)).collect();
        assert_eq!(
            affected_tests(&tests, &changed(&["/r/shared.yml"])),
            vec![p("/t/a_test.yml"), p("/t/b_test.yml")]
        );
        assert_eq!(
            affected_tests(&tests, &changed(&["/t/c_test.yml", "/r/a.yml"])),
            vec![p("/t/a_test.yml"), p("/t/c_test.yml")]
        );
        // an editor's swap file or an unrelated file: nothing
        assert!(affected_tests(&tests, &changed(&["/r/.a.yml.swp", "/r/d.yml"])).is_empty());
    }

    #[test]
    fn a_test_file_s_inputs_are_its_rule_files_globs_expanded_and_its_config() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("rules")).unwrap();
        std::fs::write(d.join("rules/a.yml"), "groups: []\n").unwrap();
        std::fs::write(d.join("rules/b.yml"), "groups: []\n").unwrap();
        std::fs::write(
            d.join("x_test.yml"),
            "rule_files: ['rules/*.yml', missing.yml]\nconfig: tocsin.yml\ntests: []\n",
        )
        .unwrap();
        assert_eq!(
            test_inputs(&d.join("x_test.yml")),
            vec![
                d.join("missing.yml"),
                d.join("rules/a.yml"),
                d.join("rules/b.yml"),
                d.join("tocsin.yml"),
            ]
        );
        // unreadable or unparsable: nothing but itself matters
        std::fs::write(d.join("bad_test.yml"), "rule_files: [\n").unwrap();
        assert!(test_inputs(&d.join("bad_test.yml")).is_empty());
        assert!(test_inputs(&d.join("absent_test.yml")).is_empty());
    }
}
