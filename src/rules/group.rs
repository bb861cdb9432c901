//! Evaluating one rule group at one time: each rule in order, its condition through the query
//! engine (PromQL or Rhai), its labels and annotations through templates, alerting rules through
//! the [`tracker`](super::tracker), recording rules written back so later rules of the group
//! see them (as in Prometheus). Pure apart from the storage reads and the `write` callback; the
//! evaluation time is an argument. Durations are measured with a monotonic stopwatch (reported,
//! never used for semantics).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use super::tracker::{Candidate, RuleState, Timing, Transition};
use super::{Condition, Group, Rule, RuleKind};
use crate::labels::{Labels, METRIC_NAME};
use crate::promql::{Engine, Evaluator, Sample, Storage, Value};
use crate::rhai_api::{ScriptEngine, to_vector};
use crate::template::{QueryFn, QueryResult, Template, TemplateData};

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
    pub transitions: Vec<Transition>,
}

/// Evaluates every rule of `group` at `t`, in order. `states` holds each alerting rule's state by
/// rule key (created on first use). `write` receives each rule's output series (recorded series,
/// and `ALERTS` for alerting rules) before the next rule runs.
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
        let state = states.entry(rule.key.clone()).or_default();
        let (results, error, transitions, series) = match eval_rule(group, rule, state, ctx, t) {
            Ok((n, tr, series)) => (n, None, tr, series),
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
            transitions,
        });
    }
    out
}

type RuleResult = (usize, Vec<Transition>, Vec<(Labels, i64, f64)>);

fn eval_rule(
    group: &Group,
    rule: &Rule,
    state: &mut RuleState,
    ctx: &GroupContext<'_>,
    t: i64,
) -> Result<RuleResult, String> {
    let at = t - group.query_offset_ms;
    let samples: Vec<Sample> = eval_condition(&rule.condition, ctx, at)?
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
            Ok((series.len(), Vec::new(), series))
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
            if group.limit > 0 && candidates.len() > group.limit {
                state.clear();
                return Err(format!(
                    "exceeded limit of {} with {} alerts",
                    group.limit,
                    candidates.len()
                ));
            }
            let resolvable: HashSet<String> = match resolve {
                Some(c) => eval_condition(c, ctx, at)
                    .map_err(|e| format!("resolve: {e}"))?
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
                .map(|a| {
                    let mut l = a.labels.with("alertstate", a.status.as_str());
                    l = l.with(METRIC_NAME, "ALERTS");
                    (l, t, 1.0)
                })
                .collect();
            Ok((state.active().count(), transitions, series))
        }
    }
}

/// Evaluates a condition at `t` into an instant vector (a scalar becomes one sample without
/// labels, a script's bool or number likewise).
pub fn eval_condition(
    cond: &Condition,
    ctx: &GroupContext<'_>,
    t: i64,
) -> Result<Vec<Sample>, String> {
    match cond {
        Condition::PromQL { expr, .. } => {
            match ctx
                .engine
                .instant(ctx.storage.as_ref(), expr, t)
                .map_err(|e| e.to_string())?
            {
                Value::Vector(v) => Ok(v),
                Value::Scalar(v) => Ok(vec![Sample {
                    metric: Labels::default(),
                    t,
                    v,
                }]),
                other => Err(format!(
                    "rule expression must give a vector or a scalar, got a {}",
                    other.type_name()
                )),
            }
        }
        Condition::Script { script, .. } => {
            let ev = Evaluator::new(ctx.engine.clone(), ctx.storage.clone(), t);
            let v = ctx.scripts.run(script, &ev).map_err(|e| e.to_string())?;
            Ok(to_vector(v, t))
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
        let expr = crate::promql::parse(promql).map_err(|e| e.to_string())?;
        let v = self
            .ctx
            .engine
            .instant(self.ctx.storage.as_ref(), &expr, self.t)
            .map_err(|e| e.to_string())?;
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
    };
    match tmpl.render(&data, Some(query)) {
        Ok(s) => s,
        Err(e) => format!("<error expanding template: {e}>"),
    }
}
