//! One evaluation step: a group evaluated at one slot over a [`Storage`], its alert states
//! updated, then one tick of the notification stages over every rule's alerts, all returned as
//! an explicit [`EvalBatch`]. The daemon ([`super::manager`]), `tocsin test`
//! ([`super::unittest`]) and `tocsin replay` ([`super::replay`]) all drive evaluation through
//! this module and differ only in what they do with the batch: the daemon commits it with one
//! store call ([`crate::store::Store::commit_evaluation`]: samples, alert states, evaluation
//! records, transitions and outbox rows in one transaction); the others put the samples in their
//! memory and hand the notifications to their recorder.
//!
//! A step has two halves, [`evaluate`] then [`notify`], because the daemon runs its group
//! evaluations concurrently but must tick the pipeline and commit in one order (the
//! notification log and the outbox are written in the order the ticks decided): it evaluates
//! unlocked and holds its order lock over [`notify`] and the commit only. [`step`] runs both.
//!
//! Within a step the rules of the group read what the earlier ones recorded at `t` (as in
//! Prometheus), from an in-memory layer over the driver's storage; nothing is written to the
//! driver's storage until the driver applies the batch. No clock: `t` is an argument.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::Group;
use super::group::{GroupContext, RuleOutcome, eval_group};
use super::tracker::{Alert, RuleState};
use crate::labels::{Labels, Matcher};
use crate::notify::dispatch::Outgoing;
use crate::notify::pipeline::Tick;
use crate::promql::{MemStorage, QueryError, Storage};
use crate::store::{
    RuleEval, RuleStateRow, RuleTransition, SeriesSamples, SeriesVisitor, is_stale,
};

/// What one step produced, for its driver to apply.
#[derive(Debug, Clone, Default)]
pub struct EvalBatch {
    /// the group evaluated
    pub group: String,
    /// the evaluation slot (ms)
    pub t: i64,
    /// per rule, in order: results, error, transitions, duration
    pub outcomes: Vec<RuleOutcome>,
    /// recorded series and `ALERTS` at `t`, in rule order
    pub samples: Vec<(Labels, i64, f64)>,
    /// per rule: its alert states after the step (alerting rules; JSON, as the store keeps
    /// them), its evaluation record and its transitions
    pub rules: Vec<RuleStateRow>,
    /// what the notification stages send, each with its notification-log entry (empty when
    /// the step ran no stages)
    pub notifications: Vec<Outgoing>,
    /// what the alerts of `dry_run` rules would send (never delivered)
    pub shadow: Vec<Outgoing>,
}

/// The alerts of every rule, as the notification stages take them: those of ordinary rules
/// and, apart, those of `dry_run` rules.
#[derive(Debug, Clone, Default)]
pub struct Alerts {
    pub real: Vec<Alert>,
    pub shadow: Vec<Alert>,
}

impl Alerts {
    /// Adds the alerts (active and recently resolved) of `group`'s rules from its states.
    pub fn add_group(&mut self, group: &Group, states: &HashMap<String, RuleState>) {
        for rule in group.rules.iter().filter(|r| r.is_alert()) {
            let Some(st) = states.get(&rule.key) else {
                continue;
            };
            let to = if rule.dry_run {
                &mut self.shadow
            } else {
                &mut self.real
            };
            to.extend(st.alerts.values().cloned());
        }
    }

    /// The alerts of every group, each with its states.
    pub fn of<'a>(
        groups: impl IntoIterator<Item = (&'a Group, &'a HashMap<String, RuleState>)>,
    ) -> Alerts {
        let mut out = Alerts::default();
        for (g, st) in groups {
            out.add_group(g, st);
        }
        out
    }
}

/// Evaluates `group` at `t`: every rule in order over `ctx.storage` (plus what this step
/// recorded so far), `states` updated by the tracker. The batch has no notifications yet.
pub fn evaluate(
    group: &Group,
    states: &mut HashMap<String, RuleState>,
    ctx: &GroupContext<'_>,
    t: i64,
) -> EvalBatch {
    let layer = Arc::new(Recorded {
        base: ctx.storage.clone(),
        own: RwLock::new(MemStorage::new()),
    });
    let layered = GroupContext {
        engine: ctx.engine,
        storage: layer.clone(),
        scripts: ctx.scripts,
        external_labels: ctx.external_labels,
        external_url: ctx.external_url,
        in_grace: ctx.in_grace,
        note: ctx.note,
        cancel: ctx.cancel,
        remote: ctx.remote,
    };
    let mut samples = Vec::new();
    let outcomes = eval_group(group, states, &layered, t, &mut |series| {
        layer.add(series);
        samples.extend_from_slice(series);
    });
    let rules = outcomes
        .iter()
        .map(|o| RuleStateRow {
            rule_key: o.key.clone(),
            alerts: states
                .get(&o.key)
                .map(|s| s.alerts.iter().map(|(fp, a)| (*fp, a.to_json())).collect())
                .unwrap_or_default(),
            eval: Some(RuleEval {
                t: o.t,
                duration_s: o.duration_s,
                results: o.results,
                error: o.error.clone(),
            }),
            transitions: o
                .transitions
                .iter()
                .map(|tr| RuleTransition {
                    t: tr.at,
                    fingerprint: tr.fingerprint,
                    labels: tr.labels.to_string(),
                    from: tr.from.as_str().to_string(),
                    to: tr.to.as_str().to_string(),
                    flapping: tr.flapping,
                })
                .collect(),
        })
        .collect();
    // a rule with nothing to remember is not kept: most rules are inactive, and each empty
    // state cost ~150 B in the group's map and as much again in its published copy (316 B a
    // rule each at 10,000 remote rules, `benches/rule_memory.rs`); the next evaluation starts
    // it from the default, which is what it holds
    states.retain(|_, s| !s.is_empty());
    states.shrink_to_fit();
    EvalBatch {
        group: group.name.clone(),
        t,
        outcomes,
        samples,
        rules,
        notifications: Vec::new(),
        shadow: Vec::new(),
    }
}

/// Runs one tick of the notification stages at the batch's time over every rule's alerts
/// (this group's as updated by [`evaluate`]), putting what they send into the batch.
/// `all_evaluated`: whether every group has been evaluated once (see
/// [`crate::notify::pipeline::Stages::tick`]).
pub fn notify(batch: &mut EvalBatch, stages: &mut dyn Tick, alerts: &Alerts, all_evaluated: bool) {
    let ticked = stages.tick(&alerts.real, &alerts.shadow, batch.t, all_evaluated);
    batch.notifications = ticked.sent;
    batch.shadow = ticked.shadow;
}

/// The notification half of a [`step`].
pub struct Notify<'a> {
    pub stages: &'a mut dyn Tick,
    /// the alerts of every other group (the step adds its own group's, as evaluated)
    pub others: Alerts,
    /// whether every group has been evaluated once
    pub all_evaluated: bool,
}

/// The whole step for drivers that hold every group's state themselves (`tocsin test`,
/// replay): [`evaluate`], then, when given, [`notify`] over this group's alerts and the others'.
pub fn step(
    group: &Group,
    states: &mut HashMap<String, RuleState>,
    ctx: &GroupContext<'_>,
    t: i64,
    with: Option<Notify<'_>>,
) -> EvalBatch {
    let mut batch = evaluate(group, states, ctx, t);
    if let Some(n) = with {
        let mut alerts = n.others;
        alerts.add_group(group, states);
        notify(&mut batch, n.stages, &alerts, n.all_evaluated);
    }
    batch
}

/// The driver's storage with what the step has recorded at `t` laid over it: a series the
/// step recorded reads as the stored samples followed by the step's (the step's win at an
/// equal time). When the step recorded nothing a selector matches, reads go straight through.
struct Recorded {
    base: Arc<dyn Storage + Send + Sync>,
    own: RwLock<MemStorage>,
}

impl Recorded {
    fn add(&self, series: &[(Labels, i64, f64)]) {
        let mut own = self.own.write().expect("step layer lock");
        for (l, t, v) in series {
            own.add(l, *t, *v);
        }
    }

    /// The step's own series matching `matchers` in [mint, maxt].
    fn own(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, QueryError> {
        let own = self.own.read().expect("step layer lock");
        if own.is_empty() {
            return Ok(Vec::new());
        }
        own.select(matchers, mint, maxt)
    }
}

/// `base` then `own` in time order; at an equal time `own`'s sample.
fn merge_samples(base: &[(i64, f64)], own: &[(i64, f64)], out: &mut Vec<(i64, f64)>) {
    let (mut i, mut j) = (0, 0);
    while i < base.len() || j < own.len() {
        match (base.get(i), own.get(j)) {
            (Some(b), Some(o)) if b.0 < o.0 => {
                out.push(*b);
                i += 1;
            }
            (Some(b), Some(o)) => {
                if b.0 == o.0 {
                    i += 1;
                }
                out.push(*o);
                j += 1;
            }
            (Some(b), None) => {
                out.push(*b);
                i += 1;
            }
            (None, Some(o)) => {
                out.push(*o);
                j += 1;
            }
            (None, None) => break,
        }
    }
}

impl Storage for Recorded {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, QueryError> {
        let mine = self.own(matchers, mint, maxt)?;
        let mut out = self.base.select(matchers, mint, maxt)?;
        if mine.is_empty() {
            return Ok(out);
        }
        let at: HashMap<Arc<Labels>, usize> = out
            .iter()
            .enumerate()
            .map(|(i, s)| (s.labels.clone(), i))
            .collect();
        for s in mine {
            match at.get(&s.labels) {
                Some(&i) => {
                    let mut merged = Vec::with_capacity(out[i].samples.len() + s.samples.len());
                    merge_samples(&out[i].samples, &s.samples, &mut merged);
                    out[i].samples = merged;
                }
                None => out.push(s),
            }
        }
        Ok(out)
    }

    fn select_each(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        f: &mut SeriesVisitor<'_>,
    ) -> Result<(), QueryError> {
        let mine = self.own(matchers, mint, maxt)?;
        if mine.is_empty() {
            return self.base.select_each(matchers, mint, maxt, f);
        }
        let mut mine: HashMap<Arc<Labels>, Vec<(i64, f64)>> =
            mine.into_iter().map(|s| (s.labels, s.samples)).collect();
        let mut buf = Vec::new();
        self.base
            .select_each(
                matchers,
                mint,
                maxt,
                &mut |labels, samples| match mine.remove(labels) {
                    Some(own) => {
                        buf.clear();
                        merge_samples(samples, &own, &mut buf);
                        f(labels, &buf);
                    }
                    None => f(labels, samples),
                },
            )?;
        let mut rest: Vec<_> = mine.into_iter().collect();
        rest.sort_by(|a, b| a.0.cmp(&b.0));
        for (labels, samples) in rest {
            f(&labels, &samples);
        }
        Ok(())
    }

    fn latest(
        &self,
        matchers: &[Matcher],
        t: i64,
        lookback: i64,
    ) -> Result<Vec<(Arc<Labels>, i64, f64)>, QueryError> {
        // the step's newest samples, staleness markers included: a marker the step wrote
        // ends the stored series too, so its older stored sample must not answer
        let mine: Vec<(Arc<Labels>, i64, f64)> = self
            .own(matchers, t - lookback + 1, t)?
            .into_iter()
            .filter_map(|s| s.samples.last().map(|&(st, v)| (s.labels, st, v)))
            .collect();
        let mut out = self.base.latest(matchers, t, lookback)?;
        if mine.is_empty() {
            return Ok(out);
        }
        let at: HashMap<Arc<Labels>, usize> = out
            .iter()
            .enumerate()
            .map(|(i, s)| (s.0.clone(), i))
            .collect();
        let mut ended = vec![false; out.len()];
        for m in mine {
            let stale = is_stale(m.2);
            match at.get(&m.0) {
                Some(&i) if out[i].1 <= m.1 => {
                    if stale {
                        ended[i] = true;
                    } else {
                        out[i] = m;
                    }
                }
                Some(_) => {}
                None if !stale => out.push(m),
                None => {}
            }
        }
        let mut i = 0;
        out.retain(|_| {
            let keep = !ended.get(i).copied().unwrap_or(false);
            i += 1;
            keep
        });
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::Engine;
    use crate::promql::rhai::ScriptEngine;
    use crate::rules::parse_file;
    use crate::rules::tracker::AlertStatus;
    use std::collections::{BTreeMap, HashSet};
    use std::path::Path;

    const RULES: &str = r#"groups:
  - name: g
    rules:
      - record: job:errors:max
        expr: max by (job) (errors)
      - record: job:errors:max2
        expr: job:errors:max * 2
      - alert: High
        expr: job:errors:max2 > 10
      - alert: Shadow
        expr: job:errors:max > 0
        dry_run: true
"#;

    fn group() -> Group {
        parse_file(RULES, Path::new("r.yml"), 10_000, &ScriptEngine::new())
            .unwrap()
            .remove(0)
    }

    /// `errors{job="a"}` 8 at 0 and 10 s, and `job:errors:max{job="a"}` 1 at 0 s as if an
    /// earlier evaluation had recorded it.
    fn storage() -> Arc<MemStorage> {
        let mut m = MemStorage::new();
        let e = Labels::from_pairs([("__name__", "errors"), ("job", "a")]);
        m.add(&e, 0, 8.0);
        m.add(&e, 10_000, 8.0);
        let rec = Labels::from_pairs([("__name__", "job:errors:max"), ("job", "a")]);
        m.add(&rec, 0, 1.0);
        Arc::new(m)
    }

    fn run(storage: Arc<MemStorage>, states: &mut HashMap<String, RuleState>) -> EvalBatch {
        run_at(storage, states, 10_000)
    }

    fn run_at(
        storage: Arc<MemStorage>,
        states: &mut HashMap<String, RuleState>,
        t: i64,
    ) -> EvalBatch {
        let engine = Engine::default();
        let scripts = ScriptEngine::new();
        let ext = BTreeMap::new();
        let grace = HashSet::new();
        let note = |_: &Labels| None;
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
        evaluate(&group(), states, &ctx, t)
    }

    #[test]
    fn a_rule_with_nothing_to_remember_keeps_no_state_between_evaluations() {
        let errors = |t: i64, v: f64| {
            let mut m = MemStorage::new();
            m.add(
                &Labels::from_pairs([("__name__", "errors"), ("job", "a")]),
                t,
                v,
            );
            Arc::new(m)
        };
        let names = |states: &HashMap<String, RuleState>| -> Vec<String> {
            let rules = group().rules;
            let mut v: Vec<String> = rules
                .iter()
                .filter(|r| states.contains_key(&r.key))
                .map(|r| r.name.clone())
                .collect();
            v.sort();
            v
        };
        // errors at 0: the recording rules remember their series, the alerts nothing
        let mut states = HashMap::new();
        let batch = run_at(errors(10_000, 0.0), &mut states, 10_000);
        assert!(batch.outcomes.iter().all(|o| o.error.is_none()));
        assert_eq!(names(&states), ["job:errors:max", "job:errors:max2"]);
        // errors at 8: both alerts fire (no `for`) and are kept
        run_at(errors(20_000, 8.0), &mut states, 20_000);
        let all = ["High", "Shadow", "job:errors:max", "job:errors:max2"];
        assert_eq!(names(&states), all);
        // back at 0: resolved alerts are kept for their retention, then go with their state
        run_at(errors(30_000, 0.0), &mut states, 30_000);
        assert_eq!(names(&states), all);
        let later = 30_000 + crate::rules::tracker::RESOLVED_RETENTION_MS + 10_000;
        run_at(errors(later, 0.0), &mut states, later);
        assert_eq!(names(&states), ["job:errors:max", "job:errors:max2"]);
        assert!(states.values().all(|s| !s.is_empty()));
    }

    #[test]
    fn later_rules_read_what_earlier_ones_recorded_and_nothing_is_written_to_the_storage() {
        let storage = storage();
        let mut states = HashMap::new();
        let batch = run(storage.clone(), &mut states);
        assert!(batch.outcomes.iter().all(|o| o.error.is_none()));
        // job:errors:max2 read the step's 8 at 10 s (not the stored 1 at 0 s): 16 > 10 fires
        let high = batch.outcomes.iter().find(|o| o.name == "High").unwrap();
        assert_eq!(high.results, 1);
        let names: Vec<(&str, f64)> = batch
            .samples
            .iter()
            .map(|(l, _, v)| (l.metric_name().unwrap(), *v))
            .collect();
        assert_eq!(
            names,
            [
                ("job:errors:max", 8.0),
                ("job:errors:max2", 16.0),
                ("ALERTS", 1.0),
                ("ALERTS_FOR_STATE", 10.0),
                ("ALERTS", 1.0),
                ("ALERTS_FOR_STATE", 10.0)
            ]
        );
        // the driver's storage is untouched: applying the batch is the driver's
        let rec = [Matcher::equal("__name__", "job:errors:max")];
        let stored = storage.select(&rec, 0, 20_000).unwrap();
        assert_eq!(stored[0].samples, [(0, 1.0)]);
        // one row per rule: states of the alerting rules, every evaluation recorded
        assert_eq!(batch.rules.len(), 4);
        assert!(batch.rules.iter().all(|r| r.eval.is_some()));
        let high_row = batch.rules.iter().find(|r| r.rule_key == high.key).unwrap();
        assert_eq!(high_row.alerts.len(), 1);
        assert_eq!(high_row.transitions.len(), 1, "inactive to firing");
    }

    #[test]
    fn a_recorded_series_reads_as_stored_samples_then_the_steps_own() {
        let layer = Recorded {
            base: storage(),
            own: RwLock::new(MemStorage::new()),
        };
        let rec = Labels::from_pairs([("__name__", "job:errors:max"), ("job", "a")]);
        layer.add(&[(rec.clone(), 10_000, 8.0)]);
        let m = [Matcher::equal("__name__", "job:errors:max")];
        let all = layer.select(&m, 0, 10_000).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].samples, [(0, 1.0), (10_000, 8.0)]);
        let mut seen = Vec::new();
        layer
            .select_each(&m, 0, 10_000, &mut |l, s| {
                seen.push((l.clone(), s.to_vec()))
            })
            .unwrap();
        assert_eq!(
            seen,
            [(Arc::new(rec.clone()), vec![(0, 1.0), (10_000, 8.0)])]
        );
        let latest = layer.latest(&m, 10_000, 300_000).unwrap();
        assert_eq!(latest, [(Arc::new(rec.clone()), 10_000, 8.0)]);
        // a staleness marker the step wrote ends the stored series for later rules
        layer.add(&[(rec, 20_000, crate::store::chunk::stale_nan())]);
        assert!(layer.latest(&m, 20_000, 300_000).unwrap().is_empty());
        // a selector the step recorded nothing for reads the storage alone
        let e = [Matcher::equal("__name__", "errors")];
        assert_eq!(layer.select(&e, 0, 10_000).unwrap()[0].samples.len(), 2);
    }

    #[test]
    fn notify_splits_dry_run_alerts_from_the_others() {
        struct Echo;
        impl Tick for Echo {
            fn tick(
                &mut self,
                alerts: &[Alert],
                shadow: &[Alert],
                _now: i64,
                _all: bool,
            ) -> crate::notify::pipeline::Ticked {
                // one fake notification per alert, named by its alertname
                let n = |a: &Alert| Outgoing {
                    notification: crate::notify::Notification {
                        receiver: a.labels.get("alertname").unwrap_or_default().to_string(),
                        group_key: String::new(),
                        group_labels: Default::default(),
                        alerts: Vec::new(),
                        external_url: String::new(),
                        idempotency_key: String::new(),
                        change: crate::notify::Change::FirstNotification,
                        changed: Default::default(),
                    },
                    log: Default::default(),
                };
                crate::notify::pipeline::Ticked {
                    sent: alerts.iter().map(n).collect(),
                    shadow: shadow.iter().map(n).collect(),
                }
            }
        }
        let mut states = HashMap::new();
        let engine = Engine::default();
        let scripts = ScriptEngine::new();
        let ext = BTreeMap::new();
        let grace = HashSet::new();
        let note = |_: &Labels| None;
        let ctx = GroupContext {
            engine: &engine,
            storage: storage(),
            scripts: &scripts,
            external_labels: &ext,
            external_url: "",
            in_grace: &grace,
            note: &note,
            cancel: None,
            remote: None,
        };
        let batch = step(
            &group(),
            &mut states,
            &ctx,
            10_000,
            Some(Notify {
                stages: &mut Echo,
                others: Alerts::default(),
                all_evaluated: true,
            }),
        );
        let receivers = |v: &[Outgoing]| -> Vec<String> {
            v.iter().map(|o| o.notification.receiver.clone()).collect()
        };
        assert_eq!(receivers(&batch.notifications), ["High"]);
        assert_eq!(receivers(&batch.shadow), ["Shadow"]);
        assert!(
            states
                .values()
                .flat_map(|s| s.alerts.values())
                .all(|a| a.status == AlertStatus::Firing)
        );
    }
}
