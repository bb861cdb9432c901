//! The daemon's rule engine: one task per rule group at its slots ([`super::slot_at`]: a stable
//! offset from the group's name), each evaluation on a blocking thread (queries, templates,
//! SQLite) as one [`step`](super::step) whose batch — recorded series, `ALERTS`, alert states,
//! evaluation records, transitions, outbox rows — is committed with one store call, one
//! transaction ([`Store::commit_evaluation`]). Reloading (file
//! watcher, SIGHUP, `POST /-/reload`) goes through [`RuleManager::reload`]: load and validate
//! everything, keep the old rules on any error, else swap and keep the state of every rule whose
//! identity (its key) is unchanged.
//!
//! Like the scrape scheduler, this module reads the [`Clock`] once per tick and passes `now` down.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use super::group::{GroupContext, RuleOutcome};
use super::step::{self, Alerts};
use super::tracker::{Alert, AlertStatus, RuleState};
use super::{Group, RuleErrors, RuleSet, expand_globs, load_files};
use crate::clock::Clock;
use crate::labels::Labels;
use crate::promql::Engine;
use crate::promql::rhai::ScriptEngine;
use crate::selfmetrics::{GroupLabels, SelfMetrics, StateLabels};
use crate::store::{EvaluationRows, Store};

/// Where rules come from and how they are evaluated by default.
#[derive(Debug, Clone)]
pub struct RuleConfig {
    /// glob patterns of rule files
    pub patterns: Vec<String>,
    /// directory patterns are relative to
    pub base: PathBuf,
    pub default_interval_ms: i64,
    /// target name → startup grace (ms)
    pub grace: HashMap<String, i64>,
    pub external_labels: BTreeMap<String, String>,
    pub external_url: String,
    pub compat: crate::promql::Compat,
}

/// The outcome of a reload, for logs, the API and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct ReloadReport {
    pub ok: bool,
    pub groups: usize,
    pub rules: usize,
    pub errors: Vec<String>,
}

type GroupStates = Arc<Mutex<HashMap<String, RuleState>>>;

struct Running {
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

pub struct RuleManager {
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    metrics: Arc<SelfMetrics>,
    engine: Engine,
    scripts: Arc<ScriptEngine>,
    config: RuleConfig,
    rules: RwLock<Arc<RuleSet>>,
    /// per group name, the states of its alerting rules by rule key
    states: RwLock<HashMap<String, GroupStates>>,
    /// states read from the store at startup, handed to rules as they first load
    restored: Mutex<HashMap<String, RuleState>>,
    first_seen: Mutex<HashMap<String, i64>>,
    running: tokio::sync::Mutex<Option<Running>>,
    /// serializes reloads
    reload_lock: tokio::sync::Mutex<()>,
    /// the notification pipeline, run after each evaluation (None: notifications off)
    notifier: RwLock<Option<Arc<crate::notify::pipeline::Notifier>>>,
    /// names of the groups evaluated at least once since startup (inhibition waits for all)
    evaluated: Mutex<std::collections::HashSet<String>>,
    /// woken after a commit that made notifications durable, so the sender need not poll
    delivery_wakeup: RwLock<Option<Arc<tokio::sync::Notify>>>,
    /// held from a group's pipeline tick to its commit: groups evaluate concurrently, but the
    /// notification log and the outbox must reach the store in the order the ticks decided
    /// (else an older log entry could overwrite a newer one, or a resolution queue before its
    /// firing notification)
    commit_order: Mutex<()>,
}

impl RuleManager {
    pub fn new(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        metrics: Arc<SelfMetrics>,
        config: RuleConfig,
    ) -> Arc<Self> {
        Arc::new(RuleManager {
            store,
            clock,
            metrics,
            engine: Engine::new(crate::promql::EngineOptions {
                compat: config.compat,
                default_subquery_step_ms: config.default_interval_ms,
                ..Default::default()
            }),
            scripts: Arc::new(ScriptEngine::new()),
            config,
            rules: RwLock::new(Arc::new(RuleSet::default())),
            states: RwLock::new(HashMap::new()),
            restored: Mutex::new(HashMap::new()),
            first_seen: Mutex::new(HashMap::new()),
            running: tokio::sync::Mutex::new(None),
            reload_lock: tokio::sync::Mutex::new(()),
            notifier: RwLock::new(None),
            evaluated: Mutex::new(Default::default()),
            delivery_wakeup: RwLock::new(None),
            commit_order: Mutex::new(()),
        })
    }

    /// Turns notifications on: after each evaluation every alert goes through `notifier`, and
    /// what it queues is written with the evaluation's results.
    pub fn set_notifier(&self, notifier: Arc<crate::notify::pipeline::Notifier>) {
        *self.notifier.write().expect("notifier lock") = Some(notifier);
    }

    /// Wakes `wakeup` whenever an evaluation's flush has made new notifications durable.
    pub fn set_delivery_wakeup(&self, wakeup: Arc<tokio::sync::Notify>) {
        *self.delivery_wakeup.write().expect("wakeup lock") = Some(wakeup);
    }

    /// Reads the alert states persisted by an earlier run (blocking: call before starting).
    pub fn restore(&self) -> Result<usize, crate::store::StoreError> {
        let mut restored: HashMap<String, RuleState> = HashMap::new();
        let mut n = 0;
        for (key, fp, json) in self.store.rule_states()? {
            match Alert::from_json(&json) {
                Ok(a) => {
                    restored.entry(key).or_default().alerts.insert(fp, a);
                    n += 1;
                }
                Err(e) => tracing::warn!(
                    rule = key,
                    fingerprint = crate::labels::format_fingerprint(fp),
                    error = %e,
                    "unreadable persisted alert state skipped"
                ),
            }
        }
        *self.restored.lock().expect("restored lock") = restored;
        Ok(n)
    }

    /// The rule set in use.
    pub fn rules(&self) -> Arc<RuleSet> {
        self.rules.read().expect("rules lock").clone()
    }

    /// Every alert of every rule (active and recently resolved), with its rule's group.
    pub fn alerts(&self) -> Vec<(String, Alert)> {
        let states = self.states.read().expect("states lock");
        let mut out = Vec::new();
        for (group, st) in states.iter() {
            for rs in st.lock().expect("group states lock").values() {
                out.extend(rs.alerts.values().map(|a| (group.clone(), a.clone())));
            }
        }
        out
    }

    /// Every alert of the rule set in use, split into those of ordinary rules and those of
    /// `dry_run` rules. Locks each group's states in turn: call without holding one.
    fn alerts_by_mode(&self) -> Alerts {
        let rules = self.rules();
        let states = self.states.read().expect("states lock");
        let mut out = Alerts::default();
        for g in &rules.groups {
            if let Some(st) = states.get(&g.name) {
                out.add_group(g, &st.lock().expect("group states lock"));
            }
        }
        out
    }

    /// The alerts of every alerting rule by rule key (active and recently resolved).
    pub fn alerts_by_rule(&self) -> HashMap<String, Vec<Alert>> {
        let states = self.states.read().expect("states lock");
        let mut out = HashMap::new();
        for st in states.values() {
            for (key, rs) in st.lock().expect("group states lock").iter() {
                out.insert(key.clone(), rs.alerts.values().cloned().collect());
            }
        }
        out
    }

    /// How many groups of the rule set in use have been evaluated since startup, of how many.
    pub fn groups_evaluated(&self) -> (usize, usize) {
        let seen = self.evaluated.lock().expect("evaluated lock");
        let rules = self.rules();
        let done = rules
            .groups
            .iter()
            .filter(|g| seen.contains(&g.name))
            .count();
        (done, rules.groups.len())
    }

    /// Loads and validates every rule file; on success swaps the rules in and restarts the group
    /// tasks (keeping the state of unchanged rules), on any error keeps everything as it is.
    /// The daemon's reload (`daemon::reload::Reloader`) validates the notification sections
    /// too, and calls [`RuleManager::load_rules`] and [`RuleManager::apply`] itself.
    pub async fn reload(self: &Arc<Self>) -> ReloadReport {
        let me = self.clone();
        let loaded = tokio::task::spawn_blocking(move || me.load_rules())
            .await
            .unwrap_or_else(|e| {
                Err(RuleErrors(vec![super::RuleError {
                    path: PathBuf::new(),
                    line: 0,
                    col: 0,
                    context: String::new(),
                    message: format!("rule loading panicked: {e}"),
                }]))
            });
        match loaded {
            Ok(set) => self.apply(set).await,
            Err(errors) => {
                for e in &errors.0 {
                    tracing::error!(error = %e, "rule reload failed, old rules keep running");
                }
                self.reload_failed();
                ReloadReport {
                    ok: false,
                    groups: self.rules().groups.len(),
                    rules: self.rules().rule_count(),
                    errors: errors.0.iter().map(|e| e.to_string()).collect(),
                }
            }
        }
    }

    /// Records a failed reload (the old rules keep running).
    pub fn reload_failed(&self) {
        self.metrics.rule_reload_success.set(0);
    }

    /// Swaps `set` in and restarts the group tasks, keeping the state of every rule whose key
    /// is unchanged. Reloads are serialized.
    pub async fn apply(self: &Arc<Self>, set: RuleSet) -> ReloadReport {
        let _serial = self.reload_lock.lock().await;
        let set = Arc::new(set);
        self.swap_states(&set);
        *self.rules.write().expect("rules lock") = set.clone();
        self.metrics.rule_reload_success.set(1);
        self.restart_groups(&set).await;
        tracing::info!(
            groups = set.groups.len(),
            rules = set.rule_count(),
            "rules loaded"
        );
        ReloadReport {
            ok: true,
            groups: set.groups.len(),
            rules: set.rule_count(),
            errors: Vec::new(),
        }
    }

    /// Loads and validates every rule file named by the configuration's patterns (blocking).
    pub fn load_rules(&self) -> Result<RuleSet, RuleErrors> {
        let files = expand_globs(&self.config.patterns, &self.config.base)?;
        load_files(&files, self.config.default_interval_ms, &self.scripts)
    }

    /// New per-group state maps: a rule whose key survives keeps its state (wherever its group
    /// went); state restored from the store is handed to rules seen for the first time.
    fn swap_states(&self, set: &RuleSet) {
        let mut old: HashMap<String, RuleState> = HashMap::new();
        for st in self.states.read().expect("states lock").values() {
            old.extend(st.lock().expect("group states lock").drain());
        }
        let mut restored = self.restored.lock().expect("restored lock");
        let mut new = HashMap::new();
        for g in &set.groups {
            let mut m = HashMap::new();
            for r in g.rules.iter().filter(|r| r.is_alert()) {
                if let Some(s) = old.remove(&r.key).or_else(|| restored.remove(&r.key)) {
                    m.insert(r.key.clone(), s);
                }
            }
            new.insert(g.name.clone(), Arc::new(Mutex::new(m)));
        }
        *self.states.write().expect("states lock") = new;
    }

    async fn restart_groups(self: &Arc<Self>, set: &Arc<RuleSet>) {
        let mut running = self.running.lock().await;
        if let Some(mut r) = running.take() {
            let _ = r.shutdown.send(true);
            // an evaluation in progress finishes (its blocking thread cannot be cancelled);
            // waiting keeps two evaluations of one group from overlapping across a reload
            while r.tasks.join_next().await.is_some() {}
        }
        let (tx, rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for g in &set.groups {
            let me = self.clone();
            let group = Arc::new(g.clone());
            let rx = rx.clone();
            tasks.spawn(async move { me.group_loop(group, rx).await });
        }
        *running = Some(Running {
            shutdown: tx,
            tasks,
        });
    }

    /// Stops every group task (after a running evaluation finishes).
    pub async fn stop(&self) {
        if let Some(mut r) = self.running.lock().await.take() {
            let _ = r.shutdown.send(true);
            while r.tasks.join_next().await.is_some() {}
        }
    }

    async fn group_loop(self: Arc<Self>, group: Arc<Group>, mut shutdown: watch::Receiver<bool>) {
        let interval = group.interval_ms.max(1);
        let now = self.clock.now_ms();
        let wait = super::next_slot(&group.name, interval, now) - now;
        let start = Instant::now() + Duration::from_millis(wait as u64);
        let mut ticker = tokio::time::interval_at(start, Duration::from_millis(interval as u64));
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let labels = GroupLabels {
            group: group.name.clone(),
        };
        let mut last_slot: Option<i64> = None;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
            // the evaluation time is the scheduled slot, so evaluations are exactly one interval apart
            let t = super::slot_at(&group.name, interval, self.clock.now_ms());
            if let Some(prev) = last_slot
                && t - prev > interval
            {
                let missed = ((t - prev) / interval - 1) as u64;
                self.metrics
                    .rule_group_iterations_missed
                    .get_or_create(&labels)
                    .inc_by(missed);
            }
            last_slot = Some(t);
            let me = self.clone();
            let g = group.clone();
            let started = std::time::Instant::now();
            let outcomes = tokio::task::spawn_blocking(move || me.evaluate(&g, t)).await;
            self.metrics
                .rule_group_last_duration_seconds
                .get_or_create(&labels)
                .set(started.elapsed().as_secs_f64());
            if let Ok(outcomes) = outcomes {
                let failures = outcomes.iter().filter(|o| o.error.is_some()).count() as u64;
                if failures > 0 {
                    self.metrics
                        .rule_evaluation_failures
                        .get_or_create(&labels)
                        .inc_by(failures);
                }
            }
        }
    }

    /// Evaluates `group` at `t` as one [`step`](super::step) and commits its batch: recorded
    /// series, alert states and the notifications they cause become durable together
    /// (blocking).
    pub fn evaluate(&self, group: &Group, t: i64) -> Vec<RuleOutcome> {
        let states = self
            .states
            .read()
            .expect("states lock")
            .get(&group.name)
            .cloned()
            .unwrap_or_default();
        let in_grace = self.in_grace(t);
        let store = self.store.clone();
        let note = move |l: &Labels| store.note(l);
        let ctx = GroupContext {
            engine: &self.engine,
            storage: self.store.clone(),
            scripts: &self.scripts,
            external_labels: &self.config.external_labels,
            external_url: &self.config.external_url,
            in_grace: &in_grace,
            note: &note,
        };
        let mut batch = step::evaluate(
            group,
            &mut states.lock().expect("group states lock"),
            &ctx,
            t,
        );
        for o in &batch.outcomes {
            if let Some(e) = &o.error {
                tracing::warn!(
                    group = group.name,
                    rule = o.name,
                    error = e,
                    "rule evaluation failed"
                );
            }
            for tr in &o.transitions {
                tracing::info!(
                    group = group.name,
                    rule = o.name,
                    labels = %tr.labels,
                    from = tr.from.as_str(),
                    to = tr.to.as_str(),
                    flapping = ?tr.flapping,
                    "alert transition"
                );
            }
        }
        let all_evaluated = {
            let mut seen = self.evaluated.lock().expect("evaluated lock");
            seen.insert(group.name.clone());
            self.rules().groups.iter().all(|g| seen.contains(&g.name))
        };
        let notifier = self.notifier.read().expect("notifier lock").clone();
        let alerts = notifier.as_ref().map(|_| self.alerts_by_mode());
        let order = self.commit_order.lock().expect("commit order lock");
        let (outbox, shadow) = match (&notifier, &alerts) {
            (Some(n), Some(alerts)) => {
                step::notify(&mut batch, &mut n.as_ref(), alerts, all_evaluated);
                (
                    n.outbox_rows(&batch.notifications, t),
                    n.shadow_rows(&batch.shadow, t),
                )
            }
            _ => Default::default(),
        };
        let queued = outbox.len();
        let committed = self.store.commit_evaluation(EvaluationRows {
            samples: batch.samples,
            rules: batch.rules,
            outbox,
            shadow,
        });
        drop(order);
        match committed {
            Err(e) => {
                tracing::error!(group = group.name, error = %e, "cannot persist rule evaluation; retried by the next store write")
            }
            Ok(_) if queued > 0 => {
                if let Some(w) = self.delivery_wakeup.read().expect("wakeup lock").as_ref() {
                    w.notify_one();
                }
            }
            Ok(_) => {}
        }
        self.update_alert_gauges();
        batch.outcomes
    }

    fn update_alert_gauges(&self) {
        let (mut pending, mut firing) = (0, 0);
        for (_, a) in self.alerts() {
            match a.status {
                AlertStatus::Pending => pending += 1,
                AlertStatus::Firing => firing += 1,
                AlertStatus::Inactive => {}
            }
        }
        self.metrics
            .alerts
            .get_or_create(&StateLabels { state: "pending" })
            .set(pending);
        self.metrics
            .alerts
            .get_or_create(&StateLabels { state: "firing" })
            .set(firing);
    }

    /// Targets (by `job`, the target name) still within their startup grace at `t`.
    fn in_grace(&self, t: i64) -> HashSet<String> {
        let mut out = HashSet::new();
        let mut seen = self.first_seen.lock().expect("first seen lock");
        for (name, grace) in &self.config.grace {
            if *grace <= 0 {
                continue;
            }
            let first = match seen.get(name) {
                Some(f) => *f,
                None => match self.store.target_first_seen(name, t) {
                    Ok(f) => {
                        seen.insert(name.clone(), f);
                        f
                    }
                    Err(_) => continue,
                },
            };
            if t - first < *grace {
                out.insert(name.clone());
            }
        }
        out
    }
}
