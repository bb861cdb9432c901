//! Evaluating one rule group at one time: each rule in order, its condition through the query
//! engine (PromQL or Rhai), its labels and annotations through templates, alerting rules through
//! the [`tracker`](super::tracker), recording rules written back so later rules of the group
//! see them (as in Prometheus). Pure apart from the storage reads and the `write` callback; the
//! evaluation time is an argument. Durations are measured with a monotonic stopwatch (reported,
//! never used for semantics).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use super::source::{RemoteEngine, SourceError};
use super::tracker::{Candidate, RuleState, Timing, Transition};
use super::{Condition, Group, Rule, RuleKind};
use crate::labels::{Labels, METRIC_NAME};
use crate::promql::rhai::{ScriptEngine, to_vector};
use crate::promql::{Cancel, Engine, Evaluator, Sample, Storage, Value};
use crate::rules::template::{QueryFn, QueryResult, Template, TemplateData};
use crate::store::chunk::stale_nan;

/// Receives a rule's output series `(labels, t, value)` before the next rule runs.
pub type SeriesSink<'a> = dyn FnMut(&[(Labels, i64, f64)]) + 'a;

/// Everything a group evaluation reads besides the rules.
pub struct GroupContext<'a> {
    pub engine: &'a Engine,
    pub storage: Arc<dyn Storage + Send + Sync>,
    pub scripts: &'a ScriptEngine,
    pub external_labels: &'a BTreeMap<String, String>,
    pub external_url: &'a str,
    /// `job` values of targets still within their `startup_grace`: their series raise no alert
    pub in_grace: &'a HashSet<String>,
    /// the failure text kept with a series (health sub-checks), for templates as `$labels.error`
    /// when the series has no `error` label of its own
    pub note: &'a (dyn Fn(&Labels) -> Option<String> + Sync),
    /// the group's cancellation token (its budget, the daemon's shutdown): once it is tripped the
    /// rule being evaluated stops and the rest are not evaluated, each with the reason as its
    /// error and its state untouched; `None`: never stopped (`tocsin test`, `replay`)
    pub cancel: Option<&'a Cancel>,
    /// the group's query source: None, tocsin's engine over `storage`; a remote engine
    /// (the group's `datasource:`), which every query of the group's rules (conditions,
    /// `resolve`, templates' `query`) is sent to unchanged
    pub remote: Option<&'a dyn RemoteEngine>,
}

/// What one rule's evaluation did.
#[derive(Debug, Clone)]
pub struct RuleOutcome {
    pub key: String,
    pub name: String,
    pub t: i64,
    pub duration_s: f64,
    /// alerts (pending or firing) or recorded series
    pub results: usize,
    pub error: Option<String>,
    /// what a remote datasource warned about (its `warnings`, a partial response)
    pub warnings: Vec<String>,
    pub transitions: Vec<Transition>,
}

/// Evaluates every rule of `group` at `t`, in order. `states` holds each alerting rule's state by
/// rule key (created on first use). A rule stopped by `ctx.cancel`, or not started because it
/// was tripped, has the reason as its error and leaves its state (alerts and remembered
/// series) as it was: no alert changes, no series is written or marked stale. `write` receives each rule's output series (recorded series,
/// and `ALERTS` and `ALERTS_FOR_STATE` for alerting rules) before the next rule runs.
pub fn eval_group(
    group: &Group,
    states: &mut HashMap<String, RuleState>,
    ctx: &GroupContext<'_>,
    t: i64,
    write: &mut SeriesSink<'_>,
) -> Vec<RuleOutcome> {
    let mut out = Vec::with_capacity(group.rules.len());
    for rule in &group.rules {
        let started = Instant::now();
        if let Some(reason) = ctx.cancel.and_then(Cancel::reason) {
            out.push(RuleOutcome {
                key: rule.key.clone(),
                name: rule.name.clone(),
                t,
                duration_s: 0.0,
                results: 0,
                error: Some(reason.to_string()),
                warnings: Vec::new(),
                transitions: Vec::new(),
            });
            continue;
        }
        let state = states.entry(rule.key.clone()).or_default();
        let mut warnings = Vec::new();
        let (results, error, transitions, series) =
            match eval_rule(group, rule, state, ctx, t, &mut warnings) {
                Ok((n, tr, mut series, degraded)) => {
                    mark_stale(&mut state.series, &mut series, t);
                    (n, degraded, tr, series)
                }
                // as Prometheus: a failed evaluation marks nothing; the next successful one marks
                // what the last successful one wrote and it does not
                Err(e) => (0, Some(e), Vec::new(), Vec::new()),
            };
        if !series.is_empty() {
            write(&series);
        }
        out.push(RuleOutcome {
            key: rule.key.clone(),
            name: rule.name.clone(),
            t,
            duration_s: started.elapsed().as_secs_f64(),
            results,
            error,
            warnings,
            transitions,
        });
    }
    out
}

/// Results, transitions, output series, and the error to record although the evaluation went
/// on (a datasource unavailable past its grace: the rule's alerts resolve).
type RuleResult = (
    usize,
    Vec<Transition>,
    Vec<(Labels, i64, f64)>,
    Option<String>,
);

/// Why a condition gave no vector.
#[derive(Debug)]
pub struct ConditionError {
    pub message: String,
    /// the remote datasource could not answer (see [`SourceError::Unavailable`])
    pub unavailable: bool,
}

impl From<String> for ConditionError {
    fn from(message: String) -> Self {
        ConditionError {
            message,
            unavailable: false,
        }
    }
}

/// The time a group's queries are evaluated at for slot `t`: `t - query_offset`, the group's
/// own offset, or, when it sets none, its datasource's.
pub fn query_time(group: &Group, remote: Option<&dyn RemoteEngine>, t: i64) -> i64 {
    match remote {
        Some(r) if group.query_offset_ms == 0 => t - r.query_offset_ms(),
        _ => t - group.query_offset_ms,
    }
}

/// Appends to `series` (one evaluation's output at `t`) a staleness marker at `t` for each
/// series of `previous` (the last successful evaluation's) it does not hold, in label order,
/// and makes `series` the new `previous`. So a resolved alert's `ALERTS`, the `pending` series
/// of an alert that fired, and a recorded series that vanished end at once instead of
/// answering queries for the lookback (5 minutes), as Prometheus's rule groups do.
fn mark_stale(previous: &mut HashSet<Labels>, series: &mut Vec<(Labels, i64, f64)>, t: i64) {
    let now: HashSet<Labels> = series.iter().map(|(l, _, _)| l.clone()).collect();
    let mut gone: Vec<Labels> = previous.drain().filter(|l| !now.contains(l)).collect();
    gone.sort();
    series.extend(gone.into_iter().map(|l| (l, t, stale_nan())));
    *previous = now;
}

fn eval_rule(
    group: &Group,
    rule: &Rule,
    state: &mut RuleState,
    ctx: &GroupContext<'_>,
    t: i64,
    warnings: &mut Vec<String>,
) -> Result<RuleResult, String> {
    let at = query_time(group, ctx.remote, t);
    let (found, degraded) = match eval_condition(&rule.condition, ctx, at, warnings) {
        Ok(found) => {
            state.unavailable_since = None;
            (found, None)
        }
        Err(e) if e.unavailable => {
            // the datasource is down: keep the alerts as they are for its grace, then resolve
            // them as if the query had returned nothing (the meta-alert says why)
            let since = *state.unavailable_since.get_or_insert(t);
            let grace = ctx.remote.map_or(0, |r| r.error_for_ms());
            if t - since < grace {
                return Err(e.message);
            }
            let message = format!(
                "{}; unavailable for {}, longer than datasource_error_for {}: alerts resolved",
                e.message,
                crate::duration::PromDuration(std::time::Duration::from_millis(
                    (t - since).max(0) as u64
                )),
                crate::duration::PromDuration(
                    std::time::Duration::from_millis(grace.max(0) as u64)
                )
            );
            (Vec::new(), Some(message))
        }
        Err(e) => {
            // an answer, if an error: the engine is there
            state.unavailable_since = None;
            return Err(e.message);
        }
    };
    let samples: Vec<Sample> = found
        .into_iter()
        .filter(|s| {
            s.metric
                .get("job")
                .is_none_or(|job| !ctx.in_grace.contains(job))
        })
        .collect();
    let query = EngineQuery { ctx, t: at };
    match &rule.kind {
        RuleKind::Record => {
            if group.limit > 0 && samples.len() > group.limit {
                return Err(format!(
                    "exceeded limit of {} with {} series",
                    group.limit,
                    samples.len()
                ));
            }
            let mut seen = HashSet::with_capacity(samples.len());
            let mut series = Vec::with_capacity(samples.len());
            for s in &samples {
                let mut pairs: Vec<(String, String)> = s
                    .metric
                    .iter()
                    .filter(|(k, _)| *k != METRIC_NAME)
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                pairs.extend(group.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
                for (k, tmpl) in &rule.labels {
                    pairs.push((k.clone(), render(tmpl, &s.metric, s.v, ctx, &query)));
                }
                pairs.push((METRIC_NAME.to_string(), rule.name.clone()));
                let labels = Labels::from_pairs(pairs);
                if !seen.insert(labels.clone()) {
                    return Err(
                        "vector contains metrics with the same labelset after applying rule labels"
                            .into(),
                    );
                }
                series.push((labels, t, s.v));
            }
            // label templates' queries may have been stopped: write nothing then
            stopped(ctx)?;
            Ok((series.len(), Vec::new(), series, degraded))
        }
        RuleKind::Alert {
            hold,
            keep_firing_for,
            resolve,
            annotations,
            flap,
        } => {
            let mut candidates = Vec::with_capacity(samples.len());
            let mut seen = HashSet::with_capacity(samples.len());
            for s in &samples {
                let mut pairs: Vec<(String, String)> = s
                    .metric
                    .iter()
                    .filter(|(k, _)| *k != METRIC_NAME)
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                pairs.extend(group.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
                for (k, tmpl) in &rule.labels {
                    pairs.push((k.clone(), render(tmpl, &s.metric, s.v, ctx, &query)));
                }
                pairs.push(("alertname".to_string(), rule.name.clone()));
                let labels = Labels::from_pairs(pairs);
                if !seen.insert(labels.fingerprint()) {
                    return Err(
                        "vector contains metrics with the same labelset after applying alert labels"
                            .into(),
                    );
                }
                let annotations = annotations
                    .iter()
                    .map(|(k, tmpl)| (k.clone(), render(tmpl, &s.metric, s.v, ctx, &query)))
                    .collect();
                candidates.push(Candidate {
                    labels,
                    annotations,
                    value: s.v,
                    source_key: s.metric.without_name().to_string(),
                });
            }
            // a template's query stopped by the token rendered as an error text: stop before
            // the state changes
            stopped(ctx)?;
            if group.limit > 0 && candidates.len() > group.limit {
                state.clear();
                return Err(format!(
                    "exceeded limit of {} with {} alerts",
                    group.limit,
                    candidates.len()
                ));
            }
            let resolvable: HashSet<String> = match resolve {
                Some(_) if degraded.is_some() => HashSet::new(),
                Some(c) => eval_condition(c, ctx, at, warnings)
                    .map_err(|e| format!("resolve: {}", e.message))?
                    .into_iter()
                    .map(|s| s.metric.without_name().to_string())
                    .collect(),
                None => HashSet::new(),
            };
            let timing = Timing {
                hold_ms: *hold,
                keep_firing_for_ms: *keep_firing_for,
                flap: *flap,
                has_resolve: resolve.is_some(),
            };
            let transitions = state.update(candidates, &resolvable, timing, t);
            let series: Vec<(Labels, i64, f64)> = state
                .active()
                .flat_map(|a| {
                    let alerts = a
                        .labels
                        .with("alertstate", a.status.as_str())
                        .with(METRIC_NAME, "ALERTS");
                    let for_state = a.labels.with(METRIC_NAME, "ALERTS_FOR_STATE");
                    [
                        (alerts, t, 1.0),
                        (for_state, t, active_at_seconds(a.active_at)),
                    ]
                })
                .collect();
            Ok((state.active().count(), transitions, series, degraded))
        }
    }
}

/// The value of an alert's `ALERTS_FOR_STATE` sample: the time it became active (pending), in
/// whole Unix seconds as Prometheus writes it (`ActiveAt.Unix()`: rounded down, before 1970 too).
fn active_at_seconds(active_at_ms: i64) -> f64 {
    active_at_ms.div_euclid(1000) as f64
}

/// Fails with the token's reason once `ctx.cancel` is tripped.
fn stopped(ctx: &GroupContext<'_>) -> Result<(), String> {
    match ctx.cancel.and_then(Cancel::reason) {
        Some(reason) => Err(reason.to_string()),
        None => Ok(()),
    }
}

/// The queries `group`'s conditions send to its datasource, in rule order (one per PromQL
/// condition; scripts do not run remotely), for fetching them ahead ([`super::source::Fetched`]).
pub fn remote_queries(group: &Group) -> impl Iterator<Item = &str> {
    group.rules.iter().filter_map(|r| match &r.condition {
        Condition::PromQL { text, .. } => Some(&**text),
        Condition::Script { .. } => None,
    })
}

/// Evaluates a condition at `t` into an instant vector (a scalar becomes one sample without
/// labels, a script's bool or number likewise), on the group's source: tocsin's engine, or the
/// remote engine (whose warnings are appended to `warnings`).
pub fn eval_condition(
    cond: &Condition,
    ctx: &GroupContext<'_>,
    t: i64,
    warnings: &mut Vec<String>,
) -> Result<Vec<Sample>, ConditionError> {
    match cond {
        Condition::PromQL { expr, text } => {
            let value = match ctx.remote {
                Some(remote) => {
                    let answer =
                        remote
                            .instant(text, t, ctx.cancel)
                            .map_err(|e: SourceError| ConditionError {
                                unavailable: e.is_unavailable(),
                                message: e.to_string(),
                            })?;
                    warnings.extend(answer.warnings);
                    answer.value
                }
                None => ctx
                    .engine
                    .instant_cancellable(ctx.storage.as_ref(), expr, t, ctx.cancel)
                    .map_err(|e| e.to_string())?,
            };
            match value {
                Value::Vector(v) => Ok(v),
                Value::Scalar(v) => Ok(vec![Sample {
                    metric: Labels::default(),
                    t,
                    v,
                }]),
                other => Err(format!(
                    "rule expression must give a vector or a scalar, got a {}",
                    other.type_name()
                )
                .into()),
            }
        }
        Condition::Script { script, .. } => {
            if let Some(remote) = ctx.remote {
                // refused at load (`rules::load`); a hand-built group gets an error, not a
                // silent local evaluation
                return Err(
                    format!("script rules cannot run on datasource {:?}", remote.name()).into(),
                );
            }
            let ev = Evaluator::new(ctx.engine.clone(), ctx.storage.clone(), t)
                .with_cancel(ctx.cancel.cloned());
            let v = ctx.scripts.run(script, &ev);
            // a script that failed because its queries were stopped reports the reason
            stopped(ctx)?;
            Ok(to_vector(v.map_err(|e| e.to_string())?, t))
        }
    }
}

/// `query` inside templates: the real engine at the evaluation time.
struct EngineQuery<'a, 'b> {
    ctx: &'a GroupContext<'b>,
    t: i64,
}

impl QueryFn for EngineQuery<'_, '_> {
    fn query(&self, promql: &str) -> Result<Vec<QueryResult>, String> {
        let v = match self.ctx.remote {
            // the group's datasource: the template's query goes where its condition went
            Some(remote) => {
                remote
                    .instant(promql, self.t, self.ctx.cancel)
                    .map_err(|e| e.to_string())?
                    .value
            }
            None => {
                let expr = crate::promql::parse(promql).map_err(|e| e.to_string())?;
                self.ctx
                    .engine
                    .instant_cancellable(self.ctx.storage.as_ref(), &expr, self.t, self.ctx.cancel)
                    .map_err(|e| e.to_string())?
            }
        };
        Ok(match v {
            Value::Vector(samples) => samples
                .into_iter()
                .map(|s| QueryResult {
                    labels: s
                        .metric
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    value: s.v,
                })
                .collect(),
            Value::Scalar(v) => vec![QueryResult {
                labels: BTreeMap::new(),
                value: v,
            }],
            _ => Vec::new(),
        })
    }
}

/// Renders a label or annotation template for one sample; a failure renders as Prometheus does
/// (`<error expanding template: …>`) so the alert still goes out.
fn render(
    tmpl: &Template,
    metric: &Labels,
    value: f64,
    ctx: &GroupContext<'_>,
    query: &EngineQuery<'_, '_>,
) -> String {
    // most label templates are plain texts (`severity: page`): no data to build
    if tmpl.is_plain() {
        return tmpl.source().to_string();
    }
    let mut labels: BTreeMap<String, String> = metric
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if !labels.contains_key("error")
        && let Some(note) = (ctx.note)(metric)
    {
        labels.insert("error".to_string(), note);
    }
    let data = TemplateData {
        labels: &labels,
        external_labels: ctx.external_labels,
        external_url: ctx.external_url,
        value,
        time_ms: query.t,
    };
    match tmpl.render(&data, Some(query)) {
        Ok(s) => s,
        Err(e) => format!("<error expanding template: {e}>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::MemStorage;
    use crate::rules::parse_file;
    use crate::rules::tracker::AlertStatus;
    use std::path::Path;

    const RULES: &str = r#"groups:
  - name: g
    limit: 2
    rules:
      - record: job:up:min
        expr: min by (job) (up)
      - alert: JobDown
        expr: job:up:min == 0
        annotations: { summary: "{{ $labels.job }} down" }
      - alert: CheckFailing
        expr: health_check_ok == 0
        annotations: { summary: "{{ $labels.check }}: {{ $labels.error }}" }
      - alert: Any
        expr: up >= 0
"#;

    fn setup(series: &[(&[(&str, &str)], f64)]) -> Arc<MemStorage> {
        let mut m = MemStorage::new();
        for (labels, v) in series {
            m.add(&Labels::from_pairs(labels.iter().copied()), 0, *v);
        }
        Arc::new(m)
    }

    fn run(
        storage: Arc<MemStorage>,
        in_grace: &[&str],
        states: &mut HashMap<String, RuleState>,
    ) -> (Vec<RuleOutcome>, Vec<(Labels, i64, f64)>) {
        let group = parse_file(RULES, Path::new("r.yml"), 15_000, &ScriptEngine::new())
            .unwrap()
            .remove(0);
        let engine = Engine::default();
        let scripts = ScriptEngine::new();
        let ext = BTreeMap::new();
        let grace: HashSet<String> = in_grace.iter().map(|s| s.to_string()).collect();
        let note =
            |l: &Labels| (l.get("check") == Some("pdns")).then(|| "connection refused".to_string());
        let shared = std::sync::Mutex::new(Vec::new());
        let ctx = GroupContext {
            engine: &engine,
            storage: storage.clone(),
            scripts: &scripts,
            external_labels: &ext,
            external_url: "",
            in_grace: &grace,
            note: &note,
            cancel: None,
            remote: None,
        };
        let out = eval_group(&group, states, &ctx, 1000, &mut |s| {
            shared.lock().unwrap().extend_from_slice(s)
        });
        (out, shared.into_inner().unwrap())
    }

    #[test]
    fn alerts_templates_grace_and_limit() {
        let storage = setup(&[
            (&[("__name__", "up"), ("job", "a")], 0.0),
            (&[("__name__", "up"), ("job", "b")], 1.0),
            (
                &[
                    ("__name__", "health_check_ok"),
                    ("job", "a"),
                    ("check", "pdns"),
                ],
                0.0,
            ),
        ]);
        let mut states = HashMap::new();
        let (out, written) = run(storage.clone(), &[], &mut states);
        // the recording rule's series and ALERTS were written
        assert!(
            written
                .iter()
                .any(|(l, _, v)| l.metric_name() == Some("job:up:min")
                    && l.get("job") == Some("a")
                    && *v == 0.0)
        );
        assert!(
            written
                .iter()
                .any(|(l, _, _)| l.metric_name() == Some("ALERTS")
                    && l.get("alertstate") == Some("firing"))
        );
        let check = out.iter().find(|o| o.name == "CheckFailing").unwrap();
        assert_eq!(check.results, 1);
        let st = &states[&check.key];
        let a = st.alerts.values().next().unwrap();
        assert_eq!(a.status, AlertStatus::Firing);
        assert_eq!(a.annotations["summary"], "pdns: connection refused");
        // limit 2: two `up` series are within it
        assert!(
            out.iter()
                .find(|o| o.name == "Any")
                .unwrap()
                .error
                .is_none()
        );

        // a target in its startup grace raises nothing
        let mut states = HashMap::new();
        let (out, _) = run(storage, &["a"], &mut states);
        assert_eq!(
            out.iter()
                .find(|o| o.name == "CheckFailing")
                .unwrap()
                .results,
            0
        );
    }

    #[test]
    fn series_an_evaluation_no_longer_produces_are_marked_stale() {
        // `x` is 1 at 0 s and 10 s, 0 from 20 s: `X` pending at 0 s, firing at 10 s, resolved
        // at 20 s, when the recorded `x:pos` vanishes too
        let rules = "groups:\n  - name: g\n    rules:\n      \
                     - record: x:pos\n        expr: x > 0\n      \
                     - alert: X\n        expr: x > 0\n        for: 10s\n";
        let group = parse_file(rules, Path::new("r.yml"), 10_000, &ScriptEngine::new())
            .unwrap()
            .remove(0);
        let x = Labels::from_pairs([("__name__", "x")]);
        let mut mem = MemStorage::new();
        for (t, v) in [(0, 1.0), (10_000, 1.0), (20_000, 0.0), (30_000, 0.0)] {
            mem.add(&x, t, v);
        }
        let engine = Engine::default();
        let scripts = ScriptEngine::new();
        let ext = BTreeMap::new();
        let grace = HashSet::new();
        let note = |_: &Labels| None;
        let mut states = HashMap::new();
        // each evaluation's output as `(name, alertstate, stale)`, and written to `mem` as a
        // driver applies a batch
        let mut step = |mem: &mut MemStorage, t: i64| -> Vec<(String, String, bool)> {
            let ctx = GroupContext {
                engine: &engine,
                storage: Arc::new(mem.clone()),
                scripts: &scripts,
                external_labels: &ext,
                external_url: "",
                in_grace: &grace,
                note: &note,
                cancel: None,
                remote: None,
            };
            let mut written = Vec::new();
            eval_group(&group, &mut states, &ctx, t, &mut |s| {
                written.extend_from_slice(s)
            });
            let mut out = Vec::new();
            for (l, at, v) in written {
                assert_eq!(at, t);
                mem.add(&l, at, v);
                let name = l.metric_name().unwrap_or_default().to_string();
                let state = l.get("alertstate").unwrap_or_default().to_string();
                out.push((name, state, crate::store::chunk::is_stale(v)));
            }
            out
        };
        let series = |v: &[(&str, &str, bool)]| -> Vec<(String, String, bool)> {
            v.iter()
                .map(|(n, s, st)| (n.to_string(), s.to_string(), *st))
                .collect()
        };
        assert_eq!(
            step(&mut mem, 0),
            series(&[
                ("x:pos", "", false),
                ("ALERTS", "pending", false),
                ("ALERTS_FOR_STATE", "", false)
            ])
        );
        // firing: the pending series ends; ALERTS_FOR_STATE has no alertstate and goes on
        assert_eq!(
            step(&mut mem, 10_000),
            series(&[
                ("x:pos", "", false),
                ("ALERTS", "firing", false),
                ("ALERTS_FOR_STATE", "", false),
                ("ALERTS", "pending", true)
            ])
        );
        // resolved: the firing series, its ALERTS_FOR_STATE and the recorded one end
        assert_eq!(
            step(&mut mem, 20_000),
            series(&[
                ("x:pos", "", true),
                ("ALERTS", "firing", true),
                ("ALERTS_FOR_STATE", "", true)
            ])
        );
        // each marked once
        assert_eq!(step(&mut mem, 30_000), series(&[]));
        // the engine over the storage the batches went to: gone at the resolving evaluation
        // and after it, not answering for the lookback
        let ask = |q: &str, t: i64| -> usize {
            let expr = crate::promql::parse(q).unwrap();
            match engine.instant(&mem, &expr, t).unwrap() {
                Value::Vector(v) => v.len(),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(ask("ALERTS{alertstate=\"firing\"}", 10_000), 1);
        assert_eq!(ask("ALERTS{alertstate=\"pending\"}", 10_000), 0);
        for t in [20_000, 30_000, 60_000] {
            assert_eq!(ask("ALERTS{alertstate=\"firing\"}", t), 0, "at {t}");
            assert_eq!(ask("x:pos", t), 0, "at {t}");
            assert_eq!(ask("ALERTS_FOR_STATE", t), 0, "at {t}");
        }
    }

    /// Evaluates `rules` (one group) at each time of `at` over the series `x` (`(t, v)`), applying
    /// each batch to the storage as a driver does; returns each evaluation's `ALERTS_FOR_STATE`
    /// output as `(alertname, other labels, value)`, a staleness marker as `None`.
    fn for_state_outputs(
        rules: &str,
        x: &[(i64, f64)],
        at: &[i64],
    ) -> Vec<Vec<(String, String, Option<f64>)>> {
        let group = parse_file(rules, Path::new("r.yml"), 10_000, &ScriptEngine::new())
            .unwrap()
            .remove(0);
        let mut mem = MemStorage::new();
        for (t, v) in x {
            mem.add(
                &Labels::from_pairs([("__name__", "x"), ("job", "a")]),
                *t,
                *v,
            );
        }
        let engine = Engine::default();
        let scripts = ScriptEngine::new();
        let ext = BTreeMap::new();
        let grace = HashSet::new();
        let note = |_: &Labels| None;
        let mut states = HashMap::new();
        let mut out = Vec::new();
        for &t in at {
            let ctx = GroupContext {
                engine: &engine,
                storage: Arc::new(mem.clone()),
                scripts: &scripts,
                external_labels: &ext,
                external_url: "",
                in_grace: &grace,
                note: &note,
                cancel: None,
                remote: None,
            };
            let mut written = Vec::new();
            eval_group(&group, &mut states, &ctx, t, &mut |s| {
                written.extend_from_slice(s)
            });
            let mut this = Vec::new();
            for (l, at, v) in written {
                mem.add(&l, at, v);
                if l.metric_name() == Some("ALERTS_FOR_STATE") {
                    let rest = l.without_name();
                    let name = rest.get("alertname").unwrap_or_default().to_string();
                    let stale = crate::store::chunk::is_stale(v);
                    this.push((name, rest.to_string(), (!stale).then_some(v)));
                }
            }
            this.sort_by(|a, b| a.0.cmp(&b.0));
            out.push(this);
        }
        out
    }

    #[test]
    fn alerts_for_state_holds_each_active_alerts_active_time_in_seconds() {
        // `Slow` waits 10 s, `Now` fires at once: Prometheus writes ALERTS_FOR_STATE for both,
        // every pending or firing alert, with the alert's labels (no alertstate)
        let rules = "groups:\n  - name: g\n    rules:\n      \
                     - alert: Slow\n        expr: x > 0\n        for: 10s\n        labels: { severity: page }\n      \
                     - alert: Now\n        expr: x > 0\n";
        // x is 1 from 1000.5 s, 0 at 1030.5 s, 1 again at 1040.5 s
        let x = [
            (1_000_500, 1.0),
            (1_010_500, 1.0),
            (1_020_500, 1.0),
            (1_030_500, 0.0),
            (1_040_500, 1.0),
        ];
        let at = [1_000_500, 1_010_500, 1_020_500, 1_030_500, 1_040_500];
        let out = for_state_outputs(rules, &x, &at);
        let slow = r#"{alertname="Slow", job="a", severity="page"}"#;
        let now = r#"{alertname="Now", job="a"}"#;
        let both = |v: Option<f64>| {
            vec![
                ("Now".to_string(), now.to_string(), v),
                ("Slow".to_string(), slow.to_string(), v),
            ]
        };
        // active at 1000.5 s: the value is 1000, whole seconds, pending and firing alike
        assert_eq!(out[0], both(Some(1000.0)));
        assert_eq!(out[1], both(Some(1000.0)));
        assert_eq!(out[2], both(Some(1000.0)));
        // resolved: a staleness marker for each
        assert_eq!(out[3], both(None));
        // active again: the new activation's time
        assert_eq!(out[4], both(Some(1040.0)));
    }

    /// A storage that trips `cancel` (as a group's budget timer does) when a query reads
    /// `slow`.
    struct TripOnSlow {
        inner: MemStorage,
        cancel: crate::promql::Cancel,
    }

    impl Storage for TripOnSlow {
        fn select(
            &self,
            matchers: &[crate::labels::Matcher],
            mint: i64,
            maxt: i64,
        ) -> Result<Vec<crate::store::SeriesSamples>, crate::promql::QueryError> {
            if matchers
                .iter()
                .any(|m| m.name == "__name__" && m.value == "slow")
            {
                self.cancel.cancel(crate::promql::CancelReason::GroupBudget(
                    std::time::Duration::from_secs(15),
                ));
            }
            self.inner.select(matchers, mint, maxt)
        }
    }

    const STOPPED_RULES: &str = "groups:\n  - name: g\n    rules:\n      \
        - alert: Before\n        expr: up == 0\n      \
        - record: slow:sum\n        expr: sum(slow)\n      \
        - alert: After\n        expr: up == 0\n";

    /// Evaluates [`STOPPED_RULES`] at `t` over `storage` with `cancel`; returns the outcomes
    /// and the series written.
    fn eval_stopped(
        storage: Arc<dyn Storage + Send + Sync>,
        states: &mut HashMap<String, RuleState>,
        cancel: Option<&crate::promql::Cancel>,
        t: i64,
    ) -> (Vec<RuleOutcome>, Vec<(Labels, i64, f64)>) {
        let group = parse_file(
            STOPPED_RULES,
            Path::new("r.yml"),
            10_000,
            &ScriptEngine::new(),
        )
        .unwrap()
        .remove(0);
        let engine = Engine::default();
        let scripts = ScriptEngine::new();
        let ext = BTreeMap::new();
        let grace = HashSet::new();
        let note = |_: &Labels| None;
        let ctx = GroupContext {
            engine: &engine,
            storage,
            scripts: &scripts,
            external_labels: &ext,
            external_url: "",
            in_grace: &grace,
            note: &note,
            cancel,
            remote: None,
        };
        let mut written = Vec::new();
        let out = eval_group(&group, states, &ctx, t, &mut |s| {
            written.extend_from_slice(s)
        });
        (out, written)
    }

    /// `up` is 0 at 0 s (both alerts fire) and 1 at 10 s (a real evaluation resolves them);
    /// `slow` exists.
    fn stopped_storage() -> MemStorage {
        let mut mem = MemStorage::new();
        let up = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        mem.add(&up, 0, 0.0);
        mem.add(&up, 10_000, 1.0);
        mem.add(&Labels::from_pairs([("__name__", "slow")]), 0, 1.0);
        mem
    }

    fn status_of(
        states: &HashMap<String, RuleState>,
        out: &[RuleOutcome],
        name: &str,
    ) -> AlertStatus {
        let key = &out.iter().find(|o| o.name == name).unwrap().key;
        states[key].alerts.values().next().unwrap().status
    }

    #[test]
    fn a_rule_stopped_by_the_budget_and_the_rules_after_it_keep_their_state() {
        let mem = stopped_storage();
        let mut states = HashMap::new();
        let (out, _) = eval_stopped(Arc::new(mem.clone()), &mut states, None, 0);
        assert!(out.iter().all(|o| o.error.is_none()), "{out:?}");
        assert_eq!(status_of(&states, &out, "After"), AlertStatus::Firing);
        let series_before = states.clone();

        // at 10 s `up` is 1; the token trips while `slow:sum` reads `slow`
        let cancel = crate::promql::Cancel::new();
        let storage = Arc::new(TripOnSlow {
            inner: mem,
            cancel: cancel.clone(),
        });
        let (out, written) = eval_stopped(storage, &mut states, Some(&cancel), 10_000);
        let errors: Vec<(&str, Option<&str>)> = out
            .iter()
            .map(|o| (o.name.as_str(), o.error.as_deref()))
            .collect();
        let stopped = Some("evaluation stopped: group exceeded its budget of 15s");
        assert_eq!(
            errors,
            [("Before", None), ("slow:sum", stopped), ("After", stopped)]
        );
        // the rule before the trip was evaluated: resolved
        assert_eq!(status_of(&states, &out, "Before"), AlertStatus::Inactive);
        // the stopped ones were not: no false resolve, the same series remembered
        assert_eq!(status_of(&states, &out, "After"), AlertStatus::Firing);
        for name in ["slow:sum", "After"] {
            let key = &out.iter().find(|o| o.name == name).unwrap().key;
            assert_eq!(states[key].series, series_before[key].series, "{name}");
        }
        // written: only the staleness markers of the resolved `Before`
        assert!(!written.is_empty());
        for (l, _, v) in &written {
            assert_eq!(l.get("alertname"), Some("Before"), "{l}");
            assert!(crate::store::chunk::is_stale(*v));
        }
    }

    #[test]
    fn a_tripped_token_evaluates_no_rule_and_changes_no_state() {
        let mem = stopped_storage();
        let mut states = HashMap::new();
        eval_stopped(Arc::new(mem.clone()), &mut states, None, 0);
        let before: Vec<_> = {
            let mut v: Vec<_> = states
                .iter()
                .map(|(k, s)| (k.clone(), s.alerts.clone(), s.series.clone()))
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        let cancel = crate::promql::Cancel::new();
        cancel.cancel(crate::promql::CancelReason::ShuttingDown);
        let (out, written) = eval_stopped(Arc::new(mem), &mut states, Some(&cancel), 10_000);
        assert!(written.is_empty(), "{written:?}");
        assert!(
            out.iter().all(|o| o.error.as_deref()
                == Some("query cancelled: the daemon is shutting down")),
            "{out:?}"
        );
        let mut after: Vec<_> = states
            .iter()
            .map(|(k, s)| (k.clone(), s.alerts.clone(), s.series.clone()))
            .collect();
        after.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(after.len(), before.len());
        for (a, b) in after.iter().zip(&before) {
            assert_eq!(a.0, b.0);
            assert_eq!(a.2, b.2);
            assert_eq!(
                a.1.values()
                    .map(|x| (x.status, x.active_at))
                    .collect::<Vec<_>>(),
                b.1.values()
                    .map(|x| (x.status, x.active_at))
                    .collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn alerts_for_state_of_a_time_before_1970_rounds_down_as_go_does() {
        assert_eq!(active_at_seconds(-1), -1.0);
        assert_eq!(active_at_seconds(-1000), -1.0);
        assert_eq!(active_at_seconds(1999), 1.0);
    }

    #[test]
    fn exceeding_the_limit_fails_the_rule_only() {
        let storage = setup(&[
            (&[("__name__", "up"), ("job", "a")], 1.0),
            (&[("__name__", "up"), ("job", "b")], 1.0),
            (&[("__name__", "up"), ("job", "c")], 1.0),
        ]);
        let mut states = HashMap::new();
        let (out, _) = run(storage, &[], &mut states);
        let any = out.iter().find(|o| o.name == "Any").unwrap();
        assert_eq!(
            any.error.as_deref(),
            Some("exceeded limit of 2 with 3 alerts")
        );
        assert!(states[&any.key].alerts.is_empty());
        // the recording rule is limited too; the other rules of the group still ran
        let rec = out.iter().find(|o| o.name == "job:up:min").unwrap();
        assert_eq!(
            rec.error.as_deref(),
            Some("exceeded limit of 2 with 3 series")
        );
        assert!(
            out.iter()
                .find(|o| o.name == "CheckFailing")
                .unwrap()
                .error
                .is_none()
        );
    }

    /// A remote engine answering what the test sets (a stand-in for the HTTP client, whose
    /// classification has its own tests; the real engines are in `tests/it/datasource.rs`).
    struct Scripted(std::sync::Mutex<Result<crate::rules::source::Answer, SourceError>>);

    impl RemoteEngine for Scripted {
        fn name(&self) -> &str {
            "engine"
        }
        fn query_offset_ms(&self) -> i64 {
            5_000
        }
        fn error_for_ms(&self) -> i64 {
            15_000
        }
        fn instant(
            &self,
            _query: &str,
            _t: i64,
            _cancel: Option<&Cancel>,
        ) -> Result<crate::rules::source::Answer, SourceError> {
            self.0.lock().unwrap().clone()
        }
    }

    #[test]
    fn alerts_keep_their_state_while_the_datasource_is_down_for_its_grace_then_resolve() {
        let group = parse_file(
            "groups:\n  - name: g\n    datasource: engine\n    rules:\n      - alert: A\n        expr: x > 0\n",
            Path::new("r.yml"),
            10_000,
            &ScriptEngine::new(),
        )
        .unwrap()
        .remove(0);
        let up = || {
            Ok(crate::rules::source::Answer {
                value: Value::Vector(vec![Sample {
                    metric: Labels::from_pairs([("job", "a")]),
                    t: 0,
                    v: 1.0,
                }]),
                warnings: vec!["partial response".into()],
            })
        };
        let down = || {
            Err(SourceError::Unavailable {
                datasource: "engine".into(),
                reason: "connection refused".into(),
            })
        };
        let engine = Scripted(std::sync::Mutex::new(up()));
        let (e, scripts, ext, grace) = (
            Engine::default(),
            ScriptEngine::new(),
            BTreeMap::new(),
            HashSet::new(),
        );
        let note = |_: &Labels| None;
        let storage: Arc<dyn Storage + Send + Sync> = Arc::new(MemStorage::new());
        let ctx = GroupContext {
            engine: &e,
            storage,
            scripts: &scripts,
            external_labels: &ext,
            external_url: "",
            in_grace: &grace,
            note: &note,
            cancel: None,
            remote: Some(&engine),
        };
        let mut states = HashMap::new();
        let mut at = |t: i64| {
            let out = eval_group(&group, &mut states, &ctx, t, &mut |_| {}).remove(0);
            let firing = states
                .values()
                .flat_map(|s| s.alerts.values())
                .filter(|a| a.status == AlertStatus::Firing)
                .count();
            (out, firing)
        };
        // the datasource's query_offset: the group sets none
        assert_eq!(query_time(&group, Some(&engine), 100_000), 95_000);
        let (o, firing) = at(0);
        assert_eq!((o.error, firing), (None, 1));
        assert_eq!(o.warnings, ["partial response"]);
        *engine.0.lock().unwrap() = down();
        // down at 10 s: within the 15 s grace at 10 s and 20 s, the alert keeps firing
        for t in [10_000, 20_000] {
            let (o, firing) = at(t);
            assert!(o.error.as_deref().unwrap().contains("unavailable"), "{o:?}");
            assert_eq!(firing, 1, "at {t}");
        }
        // 25 s after the first failure: resolved, and the error says so
        let (o, firing) = at(35_000);
        assert_eq!(firing, 0);
        assert!(
            o.error
                .as_deref()
                .unwrap()
                .contains("longer than datasource_error_for 15s"),
            "{o:?}"
        );
        assert_eq!(o.transitions.len(), 1, "firing to resolved");
        // back: it fires again, and the next outage has a whole grace again
        *engine.0.lock().unwrap() = up();
        assert_eq!(at(45_000).1, 1);
        *engine.0.lock().unwrap() = down();
        assert_eq!(at(55_000).1, 1);
        assert_eq!(at(65_000).1, 1);
        // a query the engine refuses is the rule's own error: no grace runs out
        *engine.0.lock().unwrap() = Err(SourceError::Query {
            datasource: "engine".into(),
            reason: "bad_data: parse error".into(),
        });
        assert_eq!(at(500_000).1, 1);
    }

    #[test]
    fn a_script_rule_in_a_remote_group_is_refused_at_load() {
        let e = parse_file(
            "groups:\n  - name: g\n    datasource: engine\n    rules:\n      - alert: A\n        script: 'true'\n",
            Path::new("r.yml"),
            10_000,
            &ScriptEngine::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("r.yml:6:17: group \"g\", rule \"A\": script rules cannot run in a group on datasource \"engine\""),
            "{e}"
        );
    }
}
