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
//!
//! # Invariants
//!
//! - **A group's state has one owner: its task.** The task owns its rules' alert states (and its
//!   cache of targets' first-seen times), moves them into each blocking evaluation and gets them
//!   back, as the scrape scheduler does with its series cache. No lock is held over an
//!   evaluation, so a slow group delays nobody but itself.
//! - **Readers see published snapshots, never a group's working state.** After each evaluation
//!   the task publishes an immutable copy of its states (`Arc<GroupStates>`) into one map (the
//!   board), replacing its previous one in O(1) under a write lock held for that swap only.
//!   [`RuleManager::alerts`], [`RuleManager::alerts_by_rule`], the alert gauges and the pipeline
//!   tick clone the `Arc`s under a read lock and work on them after releasing it: they never
//!   wait for an evaluation. Between evaluations a group's published snapshot equals the state
//!   its task owns.
//! - **A panic costs one tick.** Evaluations run through [`crate::task::blocking`]: a panic is
//!   logged with the group, counted in `tocsin_task_panics_total{task="rule_group"}`, and the
//!   group goes on at its next slot. The states moved into the panicking evaluation are lost
//!   with it; the group restarts from its last published snapshot (what the previous
//!   evaluation left, or this one's if it panicked after publishing), and its first-seen cache
//!   is read again from the store.
//! - **No two evaluations of one group overlap.** A reload stops the group tasks and waits for
//!   an evaluation in progress to finish (its blocking thread cannot be cancelled) and publish;
//!   only then are states handed over and new tasks started. Reloads and [`RuleManager::stop`]
//!   are serialized by the lock on the running tasks.
//! - **Reload keeps state by rule key.** A rule whose key survives keeps its state wherever its
//!   group moved; state restored from the store at startup is handed to a rule the first time
//!   its key is loaded; a rule whose condition was edited (a new key) takes over the state of
//!   the one rule of its group and name that went, as Prometheus copies state by name; the rule
//!   set and the new snapshots are published together.
//! - **A removed rule's incident is closed.** The firing alerts of rules a reload removes are
//!   resolved at the reload's time (an argument of [`RuleManager::apply`]) and kept as retired
//!   alerts in every pipeline tick for the resolved retention (15 minutes): one tick at the
//!   reload, then one per default evaluation interval from a task beside the groups (a reload
//!   may leave no group to tick), so receivers get `resolved` at the group's next flush. The
//!   removed rules' series get staleness markers at the reload; their stored state holds the
//!   resolved alerts and is removed when the last of them expires. The same happens at the first
//!   load after a restart to the stored states whose rule is not loaded: rules removed while
//!   the daemon was down are resolved then, and alerts retired shortly before a restart are
//!   retired again until their retention ends.
//! - **Notifications reach the store in tick order.** Groups evaluate concurrently, but the
//!   pipeline tick (over every group's published alerts, read under the same lock) and the
//!   commit of its outbox rows and notification log happen under one order lock, so an older
//!   log entry never overwrites a newer one and a resolution never queues before its firing
//!   notification.
//! - **No evaluation outlives its budget or shutdown.** Each evaluation runs with a cancellation
//!   token, a child of the manager's root: the group task trips it when the evaluation has run
//!   for the group's interval (Prometheus's group would miss iterations then), and
//!   [`RuleManager::shutdown`] trips the root. A stopped evaluation records the reason on every
//!   rule it did not finish, whose alert state stays as it was (no false resolve), counts in
//!   `tocsin_rule_group_evaluations_cancelled_total{group}`, and is committed as any other.
//! - **Set once, at construction**: the notification pipeline and the sender's wake-up
//!   ([`RuleManagerBuilder::notifications`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use super::group::{GroupContext, RuleOutcome, remote_queries};
use super::source::{Fetched, RemoteEngine};
use super::step::{self, Alerts, EvalBatch};
use super::tracker::{Alert, AlertStatus, RuleState};
use super::{Group, RuleErrors, RuleSet, expand_globs, load_files};
use crate::clock::Clock;
use crate::labels::Labels;
use crate::notify::external::{EXTERNAL_GROUP, ExternalAlerts};
use crate::notify::pipeline::Notifier;
use crate::promql::rhai::ScriptEngine;
use crate::promql::{Cancel, CancelReason, Engine};
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
    /// the configured `datasources`, which groups with `datasource:` query
    pub datasources: super::source::Datasources,
}

/// The outcome of a reload, for logs, the API and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct ReloadReport {
    pub ok: bool,
    pub groups: usize,
    pub rules: usize,
    pub errors: Vec<String>,
}

/// One group's alert state: per alerting rule key, its alerts.
type GroupStates = HashMap<String, RuleState>;

pub struct RuleManager {
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    metrics: Arc<SelfMetrics>,
    engine: Engine,
    scripts: Arc<ScriptEngine>,
    config: RuleConfig,
    /// target `job` → startup grace (ms): `config.grace` at start, swapped by a reload of the
    /// configuration ([`RuleManager::set_grace`])
    grace: RwLock<Arc<HashMap<String, i64>>>,
    /// the notification pipeline, ticked after each evaluation (None: notifications off)
    notifier: Option<Arc<Notifier>>,
    /// woken after a commit that made notifications durable, so the sender need not poll
    delivery_wakeup: Option<Arc<tokio::sync::Notify>>,
    /// what readers see: the rule set in use and each group's last published states; written
    /// only to swap one snapshot (after an evaluation) or everything (at a reload)
    board: RwLock<Board>,
    /// states read from the store at startup, handed to rules as they first load
    restored: Mutex<HashMap<String, RuleState>>,
    /// the alerts of rules a reload removed that were firing, resolved at that reload: in every
    /// pipeline tick (as a rule's resolved alerts are) until their retention ends, so receivers
    /// hear `resolved` instead of an incident left open
    retired: Mutex<Vec<Retired>>,
    /// alerts other systems posted (`POST /api/v2/alerts`): in every pipeline tick beside the
    /// rules' alerts
    external: Arc<ExternalAlerts>,
    /// the parent of every evaluation's cancellation token: [`RuleManager::shutdown`] trips it,
    /// so shutdown never waits on a runaway evaluation
    root: Cancel,
    /// the group tasks; held over a whole reload or stop, which serializes them
    running: tokio::sync::Mutex<Option<Running>>,
    /// held from a group's pipeline tick to its commit: groups evaluate concurrently, but the
    /// notification log and the outbox must reach the store in the order the ticks decided
    /// (else an older log entry could overwrite a newer one, or a resolution queue before its
    /// firing notification)
    commit_order: Mutex<()>,
    /// per rule key, what its remote datasource warned about at its last evaluation (its
    /// `warnings`, a partial response); kept in memory for `/api/v1/rules`, and logged
    warnings: Mutex<HashMap<String, Vec<String>>>,
    /// test seam: run by each evaluation after it updated its states and before it publishes
    /// them (where a panic loses the most, and where a slow evaluation would hold a lock if any
    /// were held over it)
    #[cfg(test)]
    hook: Option<TestHook>,
}

#[cfg(test)]
type TestHook = Arc<dyn Fn(&Group) + Send + Sync>;

/// The state of a rule a reload removed.
struct Removed {
    rule_key: String,
    dry_run: bool,
    state: RuleState,
}

/// The group and name part of a rule key (`group/name/hash`): what an edited rule keeps.
fn group_and_name(key: &str) -> &str {
    key.rsplit_once('/').map_or(key, |(head, _)| head)
}

/// A firing alert of a rule a reload removed, resolved at that reload.
#[derive(Debug, Clone)]
struct Retired {
    /// the removed rule's key: its stored state is removed when the last of its alerts expires
    rule_key: String,
    /// the removed rule's `dry_run`: its alert stays a shadow one
    dry_run: bool,
    alert: Alert,
}

/// What Alertmanager calls the time a resolved alert is kept; how often the pipeline is
/// ticked for retired alerts when no group does it is the default evaluation interval.
const RETIRED_RETENTION_MS: i64 = super::tracker::RESOLVED_RETENTION_MS;

/// What readers see, each part replaced whole (never mutated through a shared reference).
#[derive(Default)]
struct Board {
    /// the rule set in use
    rules: Arc<RuleSet>,
    /// per group of `rules`, its rules' states as its last evaluation (or the last reload) left
    /// them
    groups: HashMap<String, Arc<GroupStates>>,
    /// per group, the alerts of `groups` as the notification stages take them, built when the
    /// group publishes: each commit joins these lists instead of looking up every rule's state
    /// (at 10,000 rules in 100 groups that walk was 14% of the daemon's CPU: `benches/vmalert.sh`)
    alerts: HashMap<String, Arc<Alerts>>,
    /// names of the groups evaluated at least once since startup (inhibition waits for all)
    evaluated: HashSet<String>,
}

/// What a group task owns between evaluations, moved into each blocking evaluation and back.
#[derive(Default)]
struct GroupOwned {
    states: GroupStates,
    /// target name → first seen (ms): the store keeps the first value it was given, so this only
    /// saves a query per target and evaluation
    first_seen: HashMap<String, i64>,
}

struct Running {
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

/// Builds a [`RuleManager`]. What is set once is given here, never swapped in later.
pub struct RuleManagerBuilder {
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    metrics: Arc<SelfMetrics>,
    config: RuleConfig,
    notifier: Option<Arc<Notifier>>,
    delivery_wakeup: Option<Arc<tokio::sync::Notify>>,
    #[cfg(test)]
    hook: Option<TestHook>,
}

impl RuleManagerBuilder {
    /// Turns notifications on: after each evaluation every alert goes through `notifier`, what it
    /// queues is written with the evaluation's results, and `wakeup` is woken after each commit
    /// that queued something.
    pub fn notifications(
        mut self,
        notifier: Arc<Notifier>,
        wakeup: Arc<tokio::sync::Notify>,
    ) -> Self {
        self.notifier = Some(notifier);
        self.delivery_wakeup = Some(wakeup);
        self
    }

    /// Runs `hook` in every evaluation between updating and publishing its states.
    #[cfg(test)]
    fn hook(mut self, hook: impl Fn(&Group) + Send + Sync + 'static) -> Self {
        self.hook = Some(Arc::new(hook));
        self
    }

    pub fn build(self) -> Arc<RuleManager> {
        let config = self.config;
        Arc::new(RuleManager {
            store: self.store,
            clock: self.clock,
            metrics: self.metrics,
            // the same selectors at every evaluation: compiled once (see `with_selector_cache`)
            engine: Engine::new(crate::promql::EngineOptions {
                compat: config.compat,
                default_subquery_step_ms: config.default_interval_ms,
                ..Default::default()
            })
            .with_selector_cache(),
            scripts: Arc::new(ScriptEngine::new()),
            grace: RwLock::new(Arc::new(config.grace.clone())),
            config,
            notifier: self.notifier,
            delivery_wakeup: self.delivery_wakeup,
            board: RwLock::new(Board::default()),
            restored: Mutex::new(HashMap::new()),
            retired: Mutex::new(Vec::new()),
            external: Arc::new(ExternalAlerts::new()),
            root: Cancel::new(),
            running: tokio::sync::Mutex::new(None),
            commit_order: Mutex::new(()),
            warnings: Mutex::new(HashMap::new()),
            #[cfg(test)]
            hook: self.hook,
        })
    }
}

impl RuleManager {
    /// A manager with notifications off; [`RuleManager::builder`] turns them on.
    pub fn new(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        metrics: Arc<SelfMetrics>,
        config: RuleConfig,
    ) -> Arc<Self> {
        Self::builder(store, clock, metrics, config).build()
    }

    pub fn builder(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        metrics: Arc<SelfMetrics>,
        config: RuleConfig,
    ) -> RuleManagerBuilder {
        RuleManagerBuilder {
            store,
            clock,
            metrics,
            config,
            notifier: None,
            delivery_wakeup: None,
            #[cfg(test)]
            hook: None,
        }
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

    /// The notification pipeline, when notifications are on (for the API's routing views).
    pub fn notifier(&self) -> Option<&Arc<Notifier>> {
        self.notifier.as_ref()
    }

    /// The configuration's `rule_files` entries as written (paths, patterns, `tocsin:self`), for
    /// the API and the UI to say where rules come from.
    pub fn rule_patterns(&self) -> &[String] {
        &self.config.patterns
    }

    /// The rule set in use.
    pub fn rules(&self) -> Arc<RuleSet> {
        self.board.read().expect("board lock").rules.clone()
    }

    /// Each label name the rules in use read that no series of the store carries
    /// (`labelcheck`), logged as a warning with the nearest name; the daemon calls it on a
    /// blocking thread after each successful rule load. Returns how many.
    pub fn warn_unknown_labels(&self) -> usize {
        let names = match self.store.label_names() {
            Ok(names) => names,
            Err(error) => {
                tracing::warn!(%error, "cannot read the store's label names to check the rules' labels");
                return 0;
            }
        };
        let found = super::labelcheck::unknown_labels(&self.rules(), &names);
        for u in &found {
            tracing::warn!(
                file = %u.file.display(),
                line = u.line,
                group = %u.group,
                rule = %u.rule,
                label = %u.label,
                suggestion = u.suggestion.as_deref().unwrap_or(""),
                "label is not on any series{}",
                u.suggestion
                    .as_deref()
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default()
            );
        }
        found.len()
    }

    /// The rule set in use and every group's published states, read under the board's lock
    /// held for `Arc` clones only.
    fn snapshot(&self) -> (Arc<RuleSet>, Vec<(String, Arc<GroupStates>)>) {
        let board = self.board.read().expect("board lock");
        let groups = board
            .groups
            .iter()
            .map(|(name, st)| (name.clone(), st.clone()))
            .collect();
        (board.rules.clone(), groups)
    }

    /// A copy of `group`'s published states (empty for a group not in the rule set).
    fn published(&self, group: &str) -> GroupStates {
        let snapshot = self
            .board
            .read()
            .expect("board lock")
            .groups
            .get(group)
            .cloned();
        snapshot.map(|s| s.as_ref().clone()).unwrap_or_default()
    }

    /// Every alert of every rule (active and recently resolved), with its rule's group, and the
    /// alerts other systems posted (group [`EXTERNAL_GROUP`]) as they are now.
    pub fn alerts(&self) -> Vec<(String, Alert)> {
        let (_, groups) = self.snapshot();
        let mut out = Vec::new();
        for (group, st) in &groups {
            for rs in st.values() {
                out.extend(rs.alerts.values().map(|a| (group.clone(), a.clone())));
            }
        }
        if !self.external.is_empty() {
            let now = self.clock.now_ms();
            out.extend(
                self.external
                    .alerts(now)
                    .into_iter()
                    .map(|a| (EXTERNAL_GROUP.to_string(), a)),
            );
        }
        out
    }

    /// The alerts other systems post (`POST /api/v2/alerts`), which every pipeline tick takes
    /// with the rules' alerts.
    pub fn external(&self) -> &Arc<ExternalAlerts> {
        &self.external
    }

    /// Every alert of the rule set in use, split into those of ordinary rules and those of
    /// `dry_run` rules; the alerts other systems posted, as they are at `now`, are ordinary.
    fn alerts_by_mode(&self, now: i64) -> Alerts {
        // the groups' lists in rule-set order, taken under the lock (Arcs only)
        let lists: Vec<Arc<Alerts>> = {
            let board = self.board.read().expect("board lock");
            board
                .rules
                .groups
                .iter()
                .filter_map(|g| board.alerts.get(&g.name).cloned())
                .collect()
        };
        let mut out = Alerts::default();
        for a in &lists {
            out.real.extend(a.real.iter().cloned());
            out.shadow.extend(a.shadow.iter().cloned());
        }
        // a rule edited (its key changed) is a removal and a new rule: while the new one has
        // the same alert firing or resolved, that one speaks for it (one alert per fingerprint)
        let notifiable = |alerts: &[Alert]| -> HashSet<u64> {
            alerts
                .iter()
                .filter(|a| a.status == AlertStatus::Firing || a.resolved_at.is_some())
                .map(Alert::fingerprint)
                .collect()
        };
        let (real, shadow) = (notifiable(&out.real), notifiable(&out.shadow));
        for r in self.retired.lock().expect("retired lock").iter() {
            let (to, taken) = if r.dry_run {
                (&mut out.shadow, &shadow)
            } else {
                (&mut out.real, &real)
            };
            if !taken.contains(&r.alert.fingerprint()) {
                to.push(r.alert.clone());
            }
        }
        out.real.extend(self.external.alerts(now));
        out
    }

    /// Per rule key, the warnings of its last evaluation on a remote datasource (rules without
    /// any are absent).
    pub fn warnings_by_rule(&self) -> HashMap<String, Vec<String>> {
        self.warnings.lock().expect("warnings lock").clone()
    }

    /// The alerts of every alerting rule by rule key (active and recently resolved).
    pub fn alerts_by_rule(&self) -> HashMap<String, Vec<Alert>> {
        let (_, groups) = self.snapshot();
        let mut out = HashMap::new();
        for (_, st) in &groups {
            for (key, rs) in st.iter() {
                out.insert(key.clone(), rs.alerts.values().cloned().collect());
            }
        }
        out
    }

    /// How many groups of the rule set in use have been evaluated since startup, of how many.
    pub fn groups_evaluated(&self) -> (usize, usize) {
        let board = self.board.read().expect("board lock");
        let done = board
            .rules
            .groups
            .iter()
            .filter(|g| board.evaluated.contains(&g.name))
            .count();
        (done, board.rules.groups.len())
    }

    /// Loads and validates every rule file; on success swaps the rules in and restarts the group
    /// tasks (keeping the state of unchanged rules), on any error keeps everything as it is.
    /// The daemon's reload (`daemon::reload::Reloader`) validates the notification sections
    /// too, and calls [`RuleManager::load_rules`] and [`RuleManager::apply`] itself.
    pub async fn reload(self: &Arc<Self>) -> ReloadReport {
        // the reload's time, read once: the resolved time of the alerts of removed rules
        let now = self.clock.now_ms();
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
            Ok(set) => self.apply(set, now).await,
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
    /// is unchanged. Reloads are serialized: the lock on the running tasks is held throughout.
    ///
    /// `now` is the reload's time. The firing alerts of rules `set` no longer has resolve at
    /// `now` and go through the notification pipeline (at once, then at each default
    /// evaluation interval while no group ticks it, until their retention ends), so receivers
    /// get `resolved`; the series the removed rules wrote get staleness markers at `now`.
    pub async fn apply(self: &Arc<Self>, set: RuleSet, now: i64) -> ReloadReport {
        let mut running = self.running.lock().await;
        // every evaluation in progress finishes and publishes before its state is handed over
        halt(&mut running).await;
        let set = Arc::new(set);
        let (owned, removed) = self.swap_states(&set);
        let batch = self.retire(&set, removed, now);
        if !batch.rules.is_empty() {
            let me = self.clone();
            let joined =
                crate::task::blocking(&self.metrics, "rule_reload", "retired", move || {
                    me.commit("retired alerts", batch, me.all_evaluated());
                })
                .await;
            if joined.is_none() {
                tracing::warn!(
                    "notifying the resolved alerts of removed rules failed at the reload"
                );
            }
        }
        self.metrics.rule_reload_success.set(1);
        let own: usize = set
            .groups
            .iter()
            .filter(|g| super::is_self_rules(&g.file))
            .map(|g| g.rules.len())
            .sum();
        self.metrics
            .rules_loaded
            .set((set.rule_count() - own) as i64);
        let mut started = self.spawn_groups(&set, owned);
        let me = self.clone();
        let rx = started.shutdown.subscribe();
        started
            .tasks
            .spawn(async move { me.retired_loop(rx).await });
        *running = Some(started);
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
        let set = load_files(&files, self.config.default_interval_ms, &self.scripts)?;
        set.check_datasources(&self.config.datasources.names())?;
        Ok(set)
    }

    /// Publishes `set` with new per-group states and returns them for the new group tasks: a
    /// rule whose key survives keeps its state (wherever its group went); state restored from
    /// the store is handed to rules seen for the first time. A rule whose condition (or label
    /// templates) changed has a new key; it takes over the state of the one rule its group and
    /// name had before, as Prometheus copies state by name on a reload, so editing a firing
    /// rule's expression neither resolves nor re-fires its alerts. When several rules share a
    /// group and a name the match would be a guess, and none is made. Call with no group task
    /// running.
    ///
    /// Also returns the states of the rules `set` no longer has (by key), with their `dry_run`:
    /// those the previous rule set had, and, at the first successful load after startup, those
    /// restored from the store whose rule is gone (removed while the daemon was down, or
    /// retired by a reload shortly before a restart).
    fn swap_states(&self, set: &Arc<RuleSet>) -> (HashMap<String, GroupStates>, Vec<Removed>) {
        let (old_rules, published) = self.snapshot();
        let mut old: HashMap<&String, &RuleState> = HashMap::new();
        for (_, st) in &published {
            old.extend(st.iter());
        }
        let loaded: HashSet<&String> = set
            .groups
            .iter()
            .flat_map(|g| g.rules.iter().map(|r| &r.key))
            .collect();
        let mut restored = std::mem::take(&mut *self.restored.lock().expect("restored lock"));
        // the states whose rule is gone: (key, dry_run, state), candidates for a renamed key
        let mut gone: Vec<(String, bool, RuleState)> = Vec::new();
        for g in &old_rules.groups {
            for r in g.rules.iter().filter(|r| !loaded.contains(&r.key)) {
                if let Some(st) = old.get(&r.key) {
                    gone.push((r.key.clone(), r.dry_run, (*st).clone()));
                }
            }
        }
        let mut owned = HashMap::new();
        // rules with no state of their own, by group and name
        let mut fresh: HashMap<&str, Vec<(&str, &str)>> = HashMap::new();
        for g in &set.groups {
            let mut m = GroupStates::new();
            // every rule, recording rules too: a kept state carries the series its last
            // evaluation wrote, which the next one marks stale when they vanish
            for r in &g.rules {
                let kept = old.get(&r.key).map(|s| (*s).clone());
                match kept.or_else(|| restored.remove(&r.key)) {
                    Some(s) => {
                        m.insert(r.key.clone(), s);
                    }
                    None => fresh
                        .entry(group_and_name(&r.key))
                        .or_default()
                        .push((g.name.as_str(), r.key.as_str())),
                }
            }
            owned.insert(g.name.clone(), m);
        }
        // restored states whose rule is not loaded: only at the first load after startup
        // (`restored` is empty afterwards), so they are resolved once. Their `dry_run` is not
        // known; a resolution is only sent for a group notified before, as Alertmanager does.
        for (key, st) in restored.drain() {
            gone.push((key, false, st));
        }
        // a changed key takes over the state of the one gone rule of its group and name
        let mut by_name: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, (key, _, _)) in gone.iter().enumerate() {
            by_name.entry(group_and_name(key)).or_default().push(i);
        }
        let mut taken: HashSet<usize> = HashSet::new();
        for (name, new_rules) in &fresh {
            let candidates = by_name.get(name).map(|v| v.as_slice());
            if let ([(group, key)], Some([i])) = (new_rules.as_slice(), candidates) {
                tracing::info!(
                    rule = *key,
                    previous = gone[*i].0,
                    "an edited rule keeps its alert state"
                );
                let state = gone[*i].2.clone();
                if let Some(m) = owned.get_mut(*group) {
                    m.insert((*key).to_string(), state);
                    taken.insert(*i);
                }
            }
        }
        let removed = gone
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !taken.contains(i))
            .map(|(_, (rule_key, dry_run, state))| Removed {
                rule_key,
                dry_run,
                state,
            })
            .collect();
        let groups = owned
            .iter()
            .map(|(name, m)| (name.clone(), Arc::new(m.clone())))
            .collect();
        let alerts = set
            .groups
            .iter()
            .filter_map(|g| {
                let st = owned.get(&g.name)?;
                Some((g.name.clone(), Arc::new(Alerts::of([(&**g, st)]))))
            })
            .collect();
        let replaced = {
            let mut board = self.board.write().expect("board lock");
            board.rules = set.clone();
            (
                std::mem::replace(&mut board.groups, groups),
                std::mem::replace(&mut board.alerts, alerts),
            )
        };
        // the old snapshots are freed here, not under the lock
        drop((published, replaced));
        (owned, removed)
    }

    /// Resolves at `now` the firing alerts of the `removed` rules and keeps them as retired
    /// (with those retired earlier whose key `set` does not load again); returns the batch that
    /// ends the removed rules: their series' staleness markers at `now` and their stored states
    /// (the resolved alerts, or none). Pending alerts and alerts already resolved go.
    fn retire(&self, set: &RuleSet, removed: Vec<Removed>, now: i64) -> EvalBatch {
        let loaded: HashSet<&String> = set
            .groups
            .iter()
            .flat_map(|g| g.rules.iter().map(|r| &r.key))
            .collect();
        let mut retired = self.retired.lock().expect("retired lock");
        // a rule loaded again starts over; its retired alerts would be duplicates
        retired.retain(|r| !loaded.contains(&r.rule_key));
        let mut batch = EvalBatch {
            group: String::new(),
            t: now,
            ..EvalBatch::default()
        };
        for r in removed {
            let mut stale: Vec<Labels> = r.state.series.into_iter().collect();
            stale.sort();
            batch.samples.extend(
                stale
                    .into_iter()
                    .map(|l| (l, now, crate::store::chunk::stale_nan())),
            );
            let mut rows = Vec::new();
            for mut a in r.state.alerts.into_values() {
                match a.status {
                    AlertStatus::Firing => {
                        a.status = AlertStatus::Inactive;
                        a.resolved_at = Some(now);
                        a.keep_firing_since = None;
                        tracing::info!(
                            rule = r.rule_key,
                            labels = %a.labels,
                            "alert of a removed rule resolved"
                        );
                    }
                    // resolved shortly before (its notification may not have gone out yet, or
                    // it was retired by a reload just before a restart): kept as it is
                    AlertStatus::Inactive
                        if a.resolved_at
                            .is_some_and(|at| now - at <= RETIRED_RETENTION_MS) => {}
                    _ => continue,
                }
                rows.push((a.fingerprint(), a.to_json()));
                retired.push(Retired {
                    rule_key: r.rule_key.clone(),
                    dry_run: r.dry_run,
                    alert: a,
                });
            }
            batch.rules.push(crate::store::RuleStateRow {
                rule_key: r.rule_key,
                alerts: rows,
                eval: None,
                transitions: Vec::new(),
            });
        }
        batch
    }

    /// Ticks the pipeline for the alerts no group ticks for, retired ones and those other
    /// systems post: every default evaluation interval while there are any (groups tick it too,
    /// but a reload may have removed every group) and at once after a post, reading the clock
    /// once per tick. Expired retired alerts are dropped and their rules' stored states removed.
    async fn retired_loop(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let every = Duration::from_millis(self.config.default_interval_ms.max(1) as u64);
        let mut ticker = tokio::time::interval_at(Instant::now() + every, every);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let external = self.external.clone();
        loop {
            tokio::select! {
                more = crate::task::next_tick(&mut ticker, &mut shutdown) => {
                    if !more {
                        return;
                    }
                }
                () = external.posted.notified() => {}
            }
            if self.retired.lock().expect("retired lock").is_empty() && external.is_empty() {
                continue;
            }
            let now = self.clock.now_ms();
            let me = self.clone();
            crate::task::blocking(&self.metrics, "rule_reload", "retired", move || {
                me.tick_retired(now)
            })
            .await;
        }
    }

    /// One pipeline tick at `now` over every alert, retired ones included, committed as a
    /// group's is; retired alerts past their retention are dropped first and the stored state
    /// of a rule with none left removed (blocking). Returns how many are left.
    fn tick_retired(&self, now: i64) -> usize {
        let (expired, left) = {
            let mut retired = self.retired.lock().expect("retired lock");
            let mut expired: Vec<String> = Vec::new();
            retired.retain(|r| {
                let keep = r
                    .alert
                    .resolved_at
                    .is_none_or(|at| now - at <= RETIRED_RETENTION_MS);
                if !keep {
                    expired.push(r.rule_key.clone());
                }
                keep
            });
            expired.retain(|k| !retired.iter().any(|r| &r.rule_key == k));
            expired.sort();
            expired.dedup();
            (expired, retired.len())
        };
        let batch = EvalBatch {
            group: String::new(),
            t: now,
            rules: expired
                .into_iter()
                .map(|rule_key| crate::store::RuleStateRow {
                    rule_key,
                    alerts: Vec::new(),
                    eval: None,
                    transitions: Vec::new(),
                })
                .collect(),
            ..EvalBatch::default()
        };
        self.commit("retired alerts", batch, self.all_evaluated());
        left
    }

    /// Whether every group of the rule set in use has been evaluated since startup.
    fn all_evaluated(&self) -> bool {
        let (done, all) = self.groups_evaluated();
        done == all
    }

    /// Starts one task per group of `set`, each owning its group's states from `owned`.
    fn spawn_groups(
        self: &Arc<Self>,
        set: &Arc<RuleSet>,
        mut owned: HashMap<String, GroupStates>,
    ) -> Running {
        let (tx, rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for g in &set.groups {
            let me = self.clone();
            let group = g.clone();
            let rx = rx.clone();
            let own = GroupOwned {
                states: owned.remove(&g.name).unwrap_or_default(),
                first_seen: HashMap::new(),
            };
            tasks.spawn(async move { me.group_loop(group, own, rx).await });
        }
        Running {
            shutdown: tx,
            tasks,
        }
    }

    /// What the manager holds beside its group tasks, taken out part by part, for
    /// `benches/rule_memory.rs` to weigh each by dropping it under a counting allocator. Leaves
    /// the manager with no rules and no states: only for measuring, after [`RuleManager::stop`].
    #[doc(hidden)]
    pub fn take_parts_for_measurement(&self) -> Vec<(&'static str, Box<dyn std::any::Any + Send>)> {
        let board = std::mem::take(&mut *self.board.write().expect("board lock"));
        let warnings = std::mem::take(&mut *self.warnings.lock().expect("warnings lock"));
        let retired = std::mem::take(&mut *self.retired.lock().expect("retired lock"));
        let restored = std::mem::take(&mut *self.restored.lock().expect("restored lock"));
        vec![
            ("published states (board)", Box::new(board.groups)),
            ("published alert lists (board)", Box::new(board.alerts)),
            ("evaluated group names (board)", Box::new(board.evaluated)),
            ("datasource warnings by rule", Box::new(warnings)),
            ("retired and restored alerts", Box::new((retired, restored))),
            ("rule set (board)", Box::new(board.rules)),
        ]
    }

    /// Stops every group task (after a running evaluation finishes).
    pub async fn stop(&self) {
        halt(&mut *self.running.lock().await).await;
    }

    /// Stops every group task for good: trips every evaluation's token first, so an evaluation
    /// in progress stops at its next check (its unfinished rules record the reason and keep
    /// their state) instead of running to its end. Later evaluations stop at once.
    pub async fn shutdown(&self) {
        self.root.cancel(CancelReason::ShuttingDown);
        self.stop().await;
    }

    async fn group_loop(
        self: Arc<Self>,
        group: Arc<Group>,
        mut own: GroupOwned,
        mut shutdown: watch::Receiver<bool>,
    ) {
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
        // as Prometheus, whose group would miss its next iterations: an evaluation gets the
        // group's interval
        let budget = Duration::from_millis(interval as u64);
        loop {
            if !crate::task::next_tick(&mut ticker, &mut shutdown).await {
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
            let cancel = self.root.child();
            let token = cancel.clone();
            // a remote group's conditions are sent from here, on the runtime, and the blocking
            // evaluation takes their answers (`source::Fetched`)
            let remote = self.config.datasources.shared(&group);
            let evaluation = async move {
                let fetched = match remote {
                    Some(engine) => {
                        let at = super::group::query_time(&g, Some(engine.as_ref()), t);
                        Some(Fetched::fetch(engine, remote_queries(&g), at, &token).await)
                    }
                    None => None,
                };
                let metrics = me.metrics.clone();
                let name = g.name.clone();
                crate::task::blocking(&metrics, "rule_group", &name, move || {
                    let remote = fetched.as_ref().map(|f| f as &dyn RemoteEngine);
                    let outcomes = me.evaluate_owned(&g, &mut own, t, &token, remote);
                    (own, outcomes)
                })
                .await
            };
            let joined = within_budget(evaluation, &cancel, budget).await;
            if cancel.reason() == Some(CancelReason::GroupBudget(budget)) {
                tracing::warn!(
                    group = group.name,
                    t,
                    budget = %crate::duration::PromDuration(budget),
                    "rule group evaluation exceeded its budget and was stopped"
                );
                self.metrics
                    .rule_group_evaluations_cancelled
                    .get_or_create(&labels)
                    .inc();
            }
            let took = started.elapsed().as_secs_f64();
            self.metrics
                .rule_group_last_duration_seconds
                .get_or_create(&labels)
                .set(took);
            self.metrics
                .rule_group_duration_seconds
                .get_or_create(&labels)
                .observe(took);
            match joined {
                Some((back, outcomes)) => {
                    own = back;
                    let failures = outcomes.iter().filter(|o| o.error.is_some()).count() as u64;
                    if failures > 0 {
                        self.metrics
                            .rule_evaluation_failures
                            .get_or_create(&labels)
                            .inc_by(failures);
                    }
                }
                None => {
                    // the states went with the panicking thread: start again from the snapshot
                    // last published (no evaluation of this group runs now to change it)
                    own = GroupOwned {
                        states: self.published(&group.name),
                        first_seen: HashMap::new(),
                    };
                    tracing::warn!(
                        group = group.name,
                        t,
                        "rule group goes on from its last published alert state"
                    );
                }
            }
        }
    }

    /// Evaluates `group` at `t` outside its task, from its published states, and commits the
    /// batch as a group task does (blocking). For tools and tests, with the
    /// group tasks stopped ([`RuleManager::stop`]): two evaluations of one group must not
    /// overlap.
    pub fn evaluate(&self, group: &Group, t: i64) -> Vec<RuleOutcome> {
        let mut own = GroupOwned {
            states: self.published(&group.name),
            first_seen: HashMap::new(),
        };
        self.evaluate_owned(group, &mut own, t, &self.root.child(), None)
    }

    /// Evaluates `group` at `t` over the states its task owns as one [`step`](super::step),
    /// publishes the new states, ticks the pipeline and commits the batch: recorded series,
    /// alert states and the notifications they cause become durable together (blocking).
    /// `fetched`: the answers of a remote group's conditions, fetched ahead (None: the group's
    /// datasource, or the store, is queried as the step goes).
    fn evaluate_owned(
        &self,
        group: &Group,
        own: &mut GroupOwned,
        t: i64,
        cancel: &Cancel,
        fetched: Option<&dyn RemoteEngine>,
    ) -> Vec<RuleOutcome> {
        let in_grace = self.in_grace(&mut own.first_seen, t);
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
            cancel: Some(cancel),
            remote: fetched.or_else(|| self.config.datasources.of(group)),
        };
        let batch = step::evaluate(group, &mut own.states, &ctx, t);
        {
            let mut warnings = self.warnings.lock().expect("warnings lock");
            for o in &batch.outcomes {
                if o.warnings.is_empty() {
                    warnings.remove(&o.key);
                } else {
                    tracing::warn!(
                        group = group.name,
                        rule = o.name,
                        warnings = ?o.warnings,
                        "rule evaluation warned"
                    );
                    warnings.insert(o.key.clone(), o.warnings.clone());
                }
            }
        }
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
        #[cfg(test)]
        if let Some(hook) = &self.hook {
            hook(group);
        }
        let all_evaluated = self.publish(&group.name, &own.states);
        let outcomes = self.commit(&group.name, batch, all_evaluated);
        self.update_alert_gauges();
        outcomes
    }

    /// Replaces `group`'s published snapshot with a copy of `states` and marks the group
    /// evaluated; returns whether every group of the rule set in use has been evaluated. A group
    /// not in the rule set (a tool's [`RuleManager::evaluate`]) publishes nothing.
    fn publish(&self, group: &str, states: &GroupStates) -> bool {
        // copied before taking the lock, and the old snapshot freed after releasing it
        let mut snapshot = Arc::new(states.clone());
        let rules = self.board.read().expect("board lock").rules.clone();
        let mut alerts = rules
            .groups
            .iter()
            .find(|g| g.name == group)
            .map(|g| Arc::new(Alerts::of([(&**g, states)])));
        let all = {
            let mut board = self.board.write().expect("board lock");
            // a reload in between replaced the rule set: its lists stand until the next publish
            let same_rules = Arc::ptr_eq(&board.rules, &rules);
            if let Some(slot) = board.groups.get_mut(group) {
                std::mem::swap(slot, &mut snapshot);
                if same_rules
                    && let (Some(slot), Some(new)) = (board.alerts.get_mut(group), alerts.as_mut())
                {
                    std::mem::swap(slot, new);
                }
            }
            board.evaluated.insert(group.to_string());
            board
                .rules
                .groups
                .iter()
                .all(|g| board.evaluated.contains(&g.name))
        };
        drop((snapshot, alerts));
        all
    }

    /// Ticks the pipeline over every group's published alerts and commits the batch with what it
    /// queued, both under the order lock; wakes the sender when something was queued.
    fn commit(&self, group: &str, mut batch: EvalBatch, all_evaluated: bool) -> Vec<RuleOutcome> {
        let t = batch.t;
        let order = self.commit_order.lock().expect("commit order lock");
        let (outbox, shadow) = match &self.notifier {
            Some(n) => {
                // read under the order lock: a tick never sees older alerts than the tick before
                let alerts = self.alerts_by_mode(t);
                step::notify(&mut batch, &mut n.as_ref(), &alerts, all_evaluated);
                (
                    n.outbox_rows(&batch.notifications, t),
                    n.shadow_rows(&batch.shadow, t),
                )
            }
            None => Default::default(),
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
                tracing::error!(group, error = %e, "cannot persist rule evaluation; retried by the next store write");
                // the sender delivers what it queued from memory meanwhile (Store::outbox_due)
                if queued > 0
                    && let Some(w) = &self.delivery_wakeup
                {
                    w.notify_one();
                }
            }
            Ok(_) if queued > 0 => {
                if let Some(w) = &self.delivery_wakeup {
                    w.notify_one();
                }
            }
            Ok(_) => {}
        }
        batch.outcomes
    }

    /// Sets `tocsin_alerts{state}` from the published alert lists (every alert of every rule,
    /// shadow ones included), not by walking every rule's state.
    fn update_alert_gauges(&self) {
        let (mut pending, mut firing) = (0, 0);
        {
            let board = self.board.read().expect("board lock");
            for a in board
                .alerts
                .values()
                .flat_map(|l| l.real.iter().chain(&l.shadow))
            {
                match a.status {
                    AlertStatus::Pending => pending += 1,
                    AlertStatus::Firing => firing += 1,
                    AlertStatus::Inactive => {}
                }
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

    /// Swaps in the targets' startup graces (target `job` → ms) of a reloaded configuration:
    /// the next evaluation judges by them. A target keeps the first-seen time it had.
    pub fn set_grace(&self, grace: HashMap<String, i64>) {
        *self.grace.write().expect("grace lock") = Arc::new(grace);
    }

    /// Targets (by `job`, the target name) still within their startup grace at `t`;
    /// `first_seen` caches what the store answered.
    fn in_grace(&self, first_seen: &mut HashMap<String, i64>, t: i64) -> HashSet<String> {
        let mut out = HashSet::new();
        let graces = self.grace.read().expect("grace lock").clone();
        for (name, grace) in graces.iter() {
            if *grace <= 0 {
                continue;
            }
            let first = match first_seen.get(name) {
                Some(f) => *f,
                None => match self.store.target_first_seen(name, t) {
                    Ok(f) => {
                        first_seen.insert(name.clone(), f);
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

/// Stops the group tasks in `running`, waiting for an evaluation in progress to finish.
/// Awaits `evaluation`, tripping `cancel` with [`CancelReason::GroupBudget`] once `budget` has
/// passed; the evaluation then stops its rules at their next check and ends (on tokio's clock,
/// paused in tests).
async fn within_budget<T>(
    evaluation: impl std::future::Future<Output = T>,
    cancel: &Cancel,
    budget: Duration,
) -> T {
    tokio::pin!(evaluation);
    tokio::select! {
        out = &mut evaluation => return out,
        () = tokio::time::sleep(budget) => cancel.cancel(CancelReason::GroupBudget(budget)),
    }
    evaluation.await
}

async fn halt(running: &mut Option<Running>) {
    if let Some(mut r) = running.take() {
        let _ = r.shutdown.send(true);
        while r.tasks.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::clock::TokioClock;
    use crate::selfmetrics::TaskLabels;
    use crate::store::StoreOptions;

    const T0: i64 = 1_700_000_000_000;

    /// A manager over `rules` in a store in `dir`, `hook` run in each evaluation between
    /// updating and publishing its states.
    fn manager(
        dir: &std::path::Path,
        rules: &str,
        metrics: Arc<SelfMetrics>,
        hook: impl Fn(&Group) + Send + Sync + 'static,
    ) -> Arc<RuleManager> {
        manager_on(dir, rules, metrics, hook, Default::default())
    }

    /// [`manager`] with `datasources`.
    fn manager_on(
        dir: &std::path::Path,
        rules: &str,
        metrics: Arc<SelfMetrics>,
        hook: impl Fn(&Group) + Send + Sync + 'static,
        datasources: super::super::source::Datasources,
    ) -> Arc<RuleManager> {
        std::fs::write(dir.join("rules.yml"), rules).unwrap();
        let store = Arc::new(Store::open(&dir.join("tocsin.db"), StoreOptions::default()).unwrap());
        let config = RuleConfig {
            patterns: vec!["rules.yml".into()],
            base: dir.to_path_buf(),
            default_interval_ms: 10_000,
            grace: Default::default(),
            external_labels: Default::default(),
            external_url: String::new(),
            compat: Default::default(),
            datasources,
        };
        RuleManager::builder(store, Arc::new(TokioClock::new(T0)), metrics, config)
            .hook(hook)
            .build()
    }

    /// The only alert once it satisfies `want`, waiting (in paused tokio time) up to 2 minutes.
    async fn alert_when(manager: &RuleManager, want: impl Fn(&Alert) -> bool) -> Alert {
        for _ in 0..120 {
            if let [(_, a)] = manager.alerts().as_slice()
                && want(a)
            {
                return a.clone();
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        panic!("no such alert: {:?}", manager.alerts());
    }

    #[tokio::test(start_paused = true)]
    async fn a_reloaded_startup_grace_applies_from_the_next_judgement() {
        let dir = tempfile::tempdir().unwrap();
        let manager = manager(
            dir.path(),
            "groups: []\n",
            Arc::new(SelfMetrics::new(0.0)),
            |_| {},
        );
        let mut first_seen = HashMap::new();
        // started without a grace: nothing is spared
        assert!(manager.in_grace(&mut first_seen, T0).is_empty());
        // a reload gives `svc` a minute: from its first sighting (now: never scraped yet)
        manager.set_grace(HashMap::from([("svc".to_string(), 60_000)]));
        assert_eq!(
            manager.in_grace(&mut first_seen, T0 + 1_000),
            HashSet::from(["svc".to_string()])
        );
        assert!(
            manager
                .in_grace(&mut first_seen, T0 + 1_000 + 60_000)
                .is_empty()
        );
        // and a reload that takes it away again spares it no more
        manager.set_grace(HashMap::new());
        assert!(manager.in_grace(&mut first_seen, T0 + 2_000).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_remote_group_sends_its_queries_from_its_task_and_its_evaluation_blocks_on_none() {
        use super::super::source::{Datasources, testing::Recording};
        let dir = tempfile::tempdir().unwrap();
        let engine = Arc::new(Recording::default());
        let metrics = Arc::new(SelfMetrics::new(0.0));
        let datasources = Datasources(HashMap::from([(
            "engine".to_string(),
            engine.clone() as Arc<dyn RemoteEngine>,
        )]));
        let manager = manager_on(
            dir.path(),
            "groups:\n  - name: g\n    interval: 10s\n    datasource: engine\n    rules:\n      - alert: A\n        expr: up == 0\n      - alert: B\n        expr: up == 0\n      - record: r\n        expr: sum(x)\n      - alert: C\n        expr: vector(1)\n        annotations:\n          n: '{{ with query \"count(up)\" }}{{ . | first | value }}{{ end }}'\n",
            metrics.clone(),
            |_| {},
            datasources,
        );
        assert!(manager.reload().await.ok);
        while manager.groups_evaluated() != (1, 1) {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        manager.stop().await;
        let fetched = engine.fetched.lock().unwrap().clone();
        let texts: Vec<&str> = fetched.iter().map(|(q, _)| q.as_str()).collect();
        // one evaluation: each distinct condition once, from the task
        assert_eq!(texts, ["up == 0", "sum(x)", "vector(1)"]);
        // and only the template's query, which no condition announces, on the blocking thread
        let blocking = engine.blocking.lock().unwrap().clone();
        let texts: Vec<&str> = blocking.iter().map(|(q, _)| q.as_str()).collect();
        assert_eq!(texts, ["count(up)"]);
        assert_eq!(fetched[0].1, blocking[0].1);
        // the answers reached the rules: the three alerting rules fire (no `for`)
        let mut names: Vec<String> = manager
            .alerts()
            .into_iter()
            .map(|(_, a)| a.labels.get("alertname").unwrap_or_default().to_string())
            .collect();
        names.sort();
        assert_eq!(names, ["A", "B", "C"]);
        let gauge = |state| metrics.alerts.get_or_create(&StateLabels { state }).get();
        assert_eq!((gauge("firing"), gauge("pending")), (3, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_evaluation_costs_one_tick_and_its_group_goes_on_from_its_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(SelfMetrics::new(0.0));
        // how many evaluations from now panic
        let panic_next = Arc::new(AtomicUsize::new(0));
        let armed = panic_next.clone();
        let manager = manager(
            dir.path(),
            "groups:\n  - name: g\n    interval: 10s\n    rules:\n      - alert: Always\n        expr: vector(1)\n        for: 15s\n",
            metrics.clone(),
            move |g| {
                if armed
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    panic!("test: evaluation of group {} panics", g.name);
                }
            },
        );
        assert!(manager.reload().await.ok);
        let panics = || {
            metrics
                .task_panics
                .get_or_create(&TaskLabels { task: "rule_group" })
                .get()
        };
        // first slot: pending since that slot
        let first = alert_when(&manager, |a| a.status == AlertStatus::Pending).await;

        // the next evaluation panics after updating its states, before publishing them
        panic_next.store(1, Ordering::SeqCst);
        while panics() == 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }

        // the group evaluates at its next slot from the published state: still pending since the
        // first slot, so firing two slots after it (a group restarted empty would be pending
        // since the third slot instead)
        let fired = alert_when(&manager, |a| a.status == AlertStatus::Firing).await;
        assert_eq!(fired.active_at, first.active_at);
        assert_eq!(fired.fired_at, Some(first.active_at + 20_000));
        assert_eq!(panics(), 1);
        assert_eq!(manager.groups_evaluated(), (1, 1));
        manager.stop().await;
    }

    /// A PromQL condition that takes far longer than a second (36 million subquery steps), in
    /// little memory (the inner subquery holds 60,000 samples at a time).
    const HEAVY: &str = "max_over_time(max_over_time(vector(1)[1m:1ms])[10m:1s]) > 0";

    /// Polls `done` every 50 ms (real time) for up to `within`.
    async fn wait_for(what: &str, within: Duration, done: impl Fn() -> bool) {
        let deadline = Instant::now() + within;
        while !done() {
            assert!(Instant::now() < deadline, "{what}: not within {within:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_over_its_budget_is_stopped_and_another_group_misses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(SelfMetrics::new(0.0));
        let rules = format!(
            "groups:\n  - name: slow\n    interval: 1s\n    rules:\n      - alert: Heavy\n        expr: {HEAVY}\n      - alert: AfterHeavy\n        expr: vector(1)\n  - name: fast\n    interval: 1s\n    rules:\n      - alert: Fast\n        expr: vector(1)\n"
        );
        let manager = manager(dir.path(), &rules, metrics.clone(), |_| {});
        assert!(manager.reload().await.ok);
        let group = |name: &str| GroupLabels {
            group: name.to_string(),
        };
        let cancelled = || {
            metrics
                .rule_group_evaluations_cancelled
                .get_or_create(&group("slow"))
                .get()
        };
        wait_for(
            "two evaluations of slow stopped",
            Duration::from_secs(60),
            || cancelled() >= 2,
        )
        .await;
        manager.stop().await;

        let key = |name: &str| {
            manager
                .rules()
                .groups
                .iter()
                .flat_map(|g| &g.rules)
                .find(|r| r.name == name)
                .unwrap()
                .key
                .clone()
        };
        let evals = |name: &str| manager.store.rule_evals(&key(name)).unwrap();
        // every evaluation of the slow group was stopped at its budget: the rule in progress
        // and the one after it record why
        let stopped = "evaluation stopped: group exceeded its budget of 1s";
        for name in ["Heavy", "AfterHeavy"] {
            let e = evals(name);
            assert!(!e.is_empty(), "{name}");
            assert!(
                e.iter().all(|e| e.error.as_deref() == Some(stopped)),
                "{name}: {e:?}"
            );
        }
        // no alert of the stopped rules: AfterHeavy was never evaluated, so never raised
        assert!(
            manager.alerts().iter().all(|(g, _)| g == "fast"),
            "{:?}",
            manager.alerts()
        );
        assert!(
            metrics
                .rule_evaluation_failures
                .get_or_create(&group("slow"))
                .get()
                >= 4
        );
        // the other group ran at each of its slots meanwhile
        assert!(evals("Fast").len() >= 2, "{:?}", evals("Fast"));
        assert!(evals("Fast").iter().all(|e| e.error.is_none()));
        assert_eq!(
            metrics
                .rule_group_iterations_missed
                .get_or_create(&group("fast"))
                .get(),
            0
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_stops_an_evaluation_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let rules = format!(
            "groups:\n  - name: slow\n    interval: 1h\n    rules:\n      - alert: Heavy\n        expr: {HEAVY}\n"
        );
        let manager = manager(dir.path(), &rules, Arc::new(SelfMetrics::new(0.0)), |_| {});
        // the group task starts and stops before its first slot (up to an hour away)
        assert!(manager.reload().await.ok);
        manager.stop().await;
        let m = manager.clone();
        let group = manager.rules().groups[0].clone();
        let started = Instant::now();
        let evaluation = tokio::task::spawn_blocking(move || m.evaluate(&group, T0));
        // a moment for the evaluation to get into its query; the outcome is the same if not
        tokio::time::sleep(Duration::from_millis(300)).await;
        tokio::time::timeout(Duration::from_secs(10), manager.shutdown())
            .await
            .expect("shutdown waited on the evaluation");
        let outcomes = tokio::time::timeout(Duration::from_secs(10), evaluation)
            .await
            .expect("the evaluation did not stop")
            .unwrap();
        assert_eq!(
            outcomes[0].error.as_deref(),
            Some("query cancelled: the daemon is shutting down")
        );
        assert!(started.elapsed() < Duration::from_secs(20));
        assert!(manager.alerts().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_group_stalls_neither_the_alert_readers_nor_another_group() {
        let dir = tempfile::tempdir().unwrap();
        // once armed (after the group tasks are stopped), the evaluation of group "slow" waits in
        // the seam until the test lets it go
        let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let is_armed = armed.clone();
        let (release, held) = std::sync::mpsc::channel::<()>();
        let held = Mutex::new(held);
        let (entered_tx, entered) = tokio::sync::oneshot::channel::<()>();
        let entered_tx = Mutex::new(Some(entered_tx));
        let manager = manager(
            dir.path(),
            "groups:\n  - name: slow\n    interval: 1h\n    rules:\n      - alert: Slow\n        expr: vector(1)\n  - name: fast\n    interval: 1h\n    rules:\n      - alert: Fast\n        expr: vector(1)\n",
            Arc::new(SelfMetrics::new(0.0)),
            move |g| {
                if g.name == "slow" && is_armed.load(Ordering::SeqCst) {
                    if let Some(tx) = entered_tx.lock().unwrap().take() {
                        let _ = tx.send(());
                    }
                    let _ = held.lock().unwrap().recv();
                }
            },
        );
        // the group tasks start and stop before their first slot (up to an hour away)
        assert!(manager.reload().await.ok);
        manager.stop().await;
        armed.store(true, Ordering::SeqCst);
        let rules = manager.rules();
        let group = |name: &str| {
            rules
                .groups
                .iter()
                .find(|g| g.name == name)
                .unwrap()
                .clone()
        };

        let m = manager.clone();
        let slow_group = group("slow");
        let slow = tokio::task::spawn_blocking(move || m.evaluate(&slow_group, T0));
        entered.await.unwrap();

        // while "slow" is in its evaluation: "fast" evaluates, and its alert is read at once
        let within = |what| {
            let m = manager.clone();
            let fast = group("fast");
            async move {
                tokio::time::timeout(
                    Duration::from_secs(10),
                    tokio::task::spawn_blocking(move || match what {
                        "evaluate" => {
                            m.evaluate(&fast, T0);
                            Vec::new()
                        }
                        _ => m.alerts(),
                    }),
                )
                .await
                .expect("not stalled by the slow group")
                .unwrap()
            }
        };
        within("evaluate").await;
        let names = |alerts: Vec<(String, Alert)>| -> Vec<String> {
            let mut v: Vec<String> = alerts.into_iter().map(|(g, _)| g).collect();
            v.sort();
            v
        };
        assert_eq!(names(within("alerts").await), ["fast"]);
        assert_eq!(manager.alerts_by_rule().len(), 1);
        assert_eq!(manager.groups_evaluated(), (1, 2));

        release.send(()).unwrap();
        slow.await.unwrap();
        assert_eq!(names(manager.alerts()), ["fast", "slow"]);
        assert_eq!(manager.groups_evaluated(), (2, 2));
    }
}
