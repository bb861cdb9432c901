//! `tocsin replay`: the rules evaluated over stored history with the daemon's own parts — the
//! query engine, [`eval_group`], the alert tracker and the notification stages
//! ([`Recorder`]: inhibit → route → group → dedup, the log in memory) — driven by a manual clock
//! instead of the scheduler. The result is a [`Timeline`]: every alert transition and every
//! notification that would have gone out (receiver, subject), with totals.
//!
//! Schedule: each group is evaluated at the slots the daemon would use ([`super::slot_at`]: its
//! interval, at the stable offset derived from the group's name), so a replay of the rules the
//! daemon loaded evaluates at the same times, wherever their files are; `step` instead
//! evaluates every group at `from`, `from + step`, …. Each evaluation is the daemon's
//! [`step`](super::step): the group, then the notification stages over every rule's alerts at
//! that time; its batch's samples go to the overlay, its notifications to the [`Recorder`].
//!
//! Reads: the raw series come from the given [`Storage`] (the read-only store in `tocsin
//! replay`: it sees what a running daemon has flushed). What the rules produce — recording rule
//! series and `ALERTS` — is kept in memory and hides the stored series of the same names, so a
//! replay of changed rules reads its own recorded series, not those the daemon wrote.
//!
//! Known differences from the live daemon: alert state starts empty at `from - warmup` (with no
//! warm-up, an alert pending before it starts over); silences are applied while they were
//! active, but only those still in the store (expired ones are forgotten after 5 days); at an
//! evaluation time every sample stamped
//! at or before it is visible, whereas the live daemon may not have ingested the scrape of that
//! same instant yet (a transition can come one evaluation earlier in a replay).
//!
//! Pure apart from the storage reads: no clock, no I/O of its own.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::labels::{Labels, METRIC_NAME, MatchOp, Matcher};
use crate::notify::AlertState;
use crate::notify::pipeline::Tick;
use crate::notify::recorder::{NotifySetup, Recorder};
use crate::promql::rhai::ScriptEngine;
use crate::promql::{Engine, MemStorage, QueryError, Storage};
use crate::rules::group::GroupContext;
use crate::rules::step::{self, Alerts};
use crate::rules::tracker::{AlertStatus, RuleState, Transition};
use crate::rules::{RuleKind, RuleSet};
use crate::store::{SeriesSamples, SeriesVisitor};
use crate::timefmt::format_rfc3339;

/// Occurs when a replay cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// `to` is before `from`, or `step` is not positive.
    #[error("invalid range: {0}")]
    Range(String),
    /// The store holds no sample in the replayed range (`held`: what it holds, if anything).
    #[error("no samples between {} and {}: {}", format_rfc3339(*from), format_rfc3339(*to), match held {
        Some((a, b)) => format!("the store holds samples from {} to {}", format_rfc3339(*a), format_rfc3339(*b)),
        None => "the store holds no samples".to_string(),
    })]
    NoData {
        from: i64,
        to: i64,
        held: Option<(i64, i64)>,
    },
    /// A rule path cannot be read (a missing file, an unreadable directory).
    #[error("cannot read {path}: {source}")]
    RulePath {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A rule path names a directory without rule files.
    #[error("{0}: no rule files (*.yml, *.yaml, not *_test.yml)")]
    NoRuleFiles(PathBuf),
}

/// Checks that `[from, to]` is a range and overlaps `held`, the store's first and last sample
/// time ([`crate::store::Store::sample_range`]).
pub fn check_range(from: i64, to: i64, held: Option<(i64, i64)>) -> Result<(), ReplayError> {
    if to < from {
        return Err(ReplayError::Range(format!(
            "--to {} is before --from {}",
            format_rfc3339(to),
            format_rfc3339(from)
        )));
    }
    match held {
        Some((a, b)) if a <= to && b >= from => Ok(()),
        _ => Err(ReplayError::NoData { from, to, held }),
    }
}

/// The rule files a path stands for: a file is itself; a directory its rule files
/// ([`crate::rules::rule_files_in`]), sorted.
pub fn rule_files(path: &Path) -> Result<Vec<PathBuf>, ReplayError> {
    let read_err = |source| ReplayError::RulePath {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let found = crate::rules::rule_files_in(path).map_err(read_err)?;
    if found.is_empty() {
        return Err(ReplayError::NoRuleFiles(path.to_path_buf()));
    }
    Ok(found)
}

/// Everything a replay reads besides the rules.
pub struct Replay<'a> {
    /// the stored series (the read-only store)
    pub storage: Arc<dyn Storage + Send + Sync>,
    pub rules: &'a RuleSet,
    /// the routing and receivers; None: transitions only
    pub notify: Option<&'a NotifySetup>,
    /// first and last evaluation time (ms, inclusive)
    pub from: i64,
    pub to: i64,
    /// evaluate every group at `from + k·step` instead of at its own interval and offset
    pub step_ms: Option<i64>,
    /// the default evaluation interval (the subquery step, as in the daemon)
    pub default_interval_ms: i64,
    pub compat: crate::promql::Compat,
    pub external_labels: BTreeMap<String, String>,
    pub external_url: String,
    /// target name → (startup grace, first seen), both ms: the daemon's `startup_grace`
    pub grace: HashMap<String, (i64, i64)>,
    /// the failure text kept with a series, for `$labels.error`
    pub note: &'a (dyn Fn(&Labels) -> Option<String> + Sync),
    /// silences applied while they were active (the store's: expired ones are kept 5 days)
    pub silences: Vec<crate::notify::silence::Silence>,
    /// the configured datasources, which groups with `datasource:` query
    pub datasources: super::source::Datasources,
    /// `--datasource`: every group's queries go here instead (its own `datasource:` or the
    /// store alike)
    pub all_on: Option<Arc<dyn super::source::RemoteEngine>>,
    /// evaluate this long before `from` without reporting, so alerts already pending or firing
    /// at `from` keep their state (and what was notified before is not notified again); the
    /// transitions that led to a state still held at `from` are reported at their times
    pub warmup_ms: i64,
}

/// What a transition did, as the timeline names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TransitionKind {
    /// inactive → pending (its `for` is running)
    Pending,
    /// → firing
    Firing,
    /// firing → inactive
    Resolved,
    /// pending → inactive without firing
    Cleared,
    /// flap detection saw the alert start flapping
    Flapping,
    /// flap detection saw it stop flapping
    FlappingEnded,
}

impl TransitionKind {
    fn of(t: &Transition) -> TransitionKind {
        match (t.from, t.to, t.flapping) {
            (from, to, Some(started)) if from == to => {
                if started {
                    TransitionKind::Flapping
                } else {
                    TransitionKind::FlappingEnded
                }
            }
            (_, AlertStatus::Pending, _) => TransitionKind::Pending,
            (_, AlertStatus::Firing, _) => TransitionKind::Firing,
            (AlertStatus::Firing, AlertStatus::Inactive, _) => TransitionKind::Resolved,
            _ => TransitionKind::Cleared,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TransitionKind::Pending => "pending",
            TransitionKind::Firing => "firing",
            TransitionKind::Resolved => "resolved",
            TransitionKind::Cleared => "cleared",
            TransitionKind::Flapping => "flapping",
            TransitionKind::FlappingEnded => "flap-end",
        }
    }
}

/// One alert transition.
#[derive(Debug, Clone, PartialEq)]
pub struct TransitionEvent {
    /// evaluation time (ms)
    pub at: i64,
    pub group: String,
    pub alertname: String,
    /// the alert's labels without `alertname`
    pub labels: Labels,
    pub kind: TransitionKind,
}

impl TransitionEvent {
    /// The timeline's form of a tracker transition in `group`.
    fn of(group: &str, tr: &Transition) -> TransitionEvent {
        TransitionEvent {
            at: tr.at,
            group: group.to_string(),
            alertname: tr.labels.get("alertname").unwrap_or_default().to_string(),
            labels: without_alertname(&tr.labels),
            kind: TransitionKind::of(tr),
        }
    }

    /// `Name {a="b"}`: the alert's identity in output and comparisons.
    pub fn alert(&self) -> String {
        format!("{} {}", self.alertname, self.labels)
    }
}

/// One notification that would have gone out.
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationEvent {
    /// pipeline tick time (ms)
    pub at: i64,
    pub receiver: String,
    /// as an email of it would be titled (`[FIRING:1] Name (values)`)
    pub subject: String,
    /// firing when any listed alert fires
    pub status: AlertState,
    /// why it is sent (dedup's reason)
    pub reason: &'static str,
    /// the listed alerts: alertname, labels without it, firing or resolved
    pub alerts: Vec<(String, Labels, AlertState)>,
}

/// A rule evaluation error, counted per rule and message.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalError {
    /// first time seen (ms)
    pub first: i64,
    pub group: String,
    pub rule: String,
    pub message: String,
    pub count: u64,
}

/// Counts over the whole replay.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// group evaluations
    pub evaluations: u64,
    /// rule evaluations (every rule of every group evaluation)
    pub rule_evaluations: u64,
    /// rule evaluations that failed
    pub failed: u64,
    pub transitions: BTreeMap<&'static str, u64>,
    /// notifications by receiver
    pub notifications: BTreeMap<String, u64>,
}

/// What a replay found, in time order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timeline {
    pub from: i64,
    pub to: i64,
    pub transitions: Vec<TransitionEvent>,
    pub notifications: Vec<NotificationEvent>,
    pub errors: Vec<EvalError>,
    pub totals: Totals,
}

/// A firing interval of an alert: from the evaluation it fired at to the one it resolved at
/// (None: still firing at the end of the range).
pub type Interval = (i64, Option<i64>);

/// The evaluation slots of every group in `[from, to]`, in time order (groups in file order at
/// equal times): `(time, group index)`.
pub fn schedule(rules: &RuleSet, from: i64, to: i64, step_ms: Option<i64>) -> Vec<(i64, usize)> {
    let mut out = Vec::new();
    for (gi, g) in rules.groups.iter().enumerate() {
        let (first, interval) = match step_ms {
            Some(step) => (from, step.max(1)),
            // the daemon's slots
            None => (
                super::next_slot(&g.name, g.interval_ms, from),
                g.interval_ms.max(1),
            ),
        };
        let mut t = first;
        while t <= to {
            out.push((t, gi));
            t += interval;
        }
    }
    out.sort_unstable();
    out
}

/// Runs the replay; `progress(done, total)` is called after each group evaluation.
pub fn replay(r: &Replay<'_>, progress: &mut dyn FnMut(u64, u64)) -> Timeline {
    let slots = schedule(r.rules, r.from - r.warmup_ms.max(0), r.to, r.step_ms);
    let total = slots.len() as u64;
    let storage = Arc::new(Overlay::new(r.storage.clone(), produced_names(r.rules)));
    let engine = Engine::new(crate::promql::EngineOptions {
        compat: r.compat,
        default_subquery_step_ms: r.default_interval_ms,
        ..Default::default()
    });
    let scripts = ScriptEngine::new();
    let mut states: Vec<HashMap<String, RuleState>> = vec![HashMap::new(); r.rules.groups.len()];
    let mut evaluated = vec![false; r.rules.groups.len()];
    let mut recorder = r
        .notify
        .map(|n| Recorder::new(n, &r.external_url, 0).with_silences(r.silences.clone()));
    let mut timeline = Timeline {
        from: r.from,
        to: r.to,
        ..Default::default()
    };
    let mut errors: HashMap<(usize, String, String), usize> = HashMap::new();
    // during the warm-up: the transitions of each alert since it was last inactive
    let mut warm: BTreeMap<String, Vec<TransitionEvent>> = BTreeMap::new();
    let mut warming = r.warmup_ms > 0;
    for (done, &(t, gi)) in slots.iter().enumerate() {
        if warming && t >= r.from {
            warming = false;
            timeline.report_held(std::mem::take(&mut warm));
        }
        let group = &r.rules.groups[gi];
        let in_grace: HashSet<String> = r
            .grace
            .iter()
            .filter(|(_, (grace, first))| *grace > 0 && t - first < *grace)
            .map(|(name, _)| name.clone())
            .collect();
        let ctx = GroupContext {
            engine: &engine,
            storage: storage.clone(),
            scripts: &scripts,
            external_labels: &r.external_labels,
            external_url: &r.external_url,
            in_grace: &in_grace,
            note: r.note,
            cancel: None,
            remote: r.all_on.as_deref().or_else(|| r.datasources.of(group)),
        };
        evaluated[gi] = true;
        let all_evaluated = evaluated.iter().all(|e| *e);
        // as the daemon: a tick after each group evaluation, over every rule's alerts (during
        // the warm-up too: its groups and log carry over, what it sends is not reported)
        let mut own = std::mem::take(&mut states[gi]);
        let notify = recorder.as_mut().map(|rec| step::Notify {
            stages: rec as &mut dyn Tick,
            // the group's own states are out of `states` for the step
            others: Alerts::of(r.rules.groups.iter().map(|g| &**g).zip(&states)),
            all_evaluated,
        });
        let batch = step::step(group, &mut own, &ctx, t, notify);
        states[gi] = own;
        storage.add(&batch.samples);
        let sent = recorder
            .as_mut()
            .map_or(0, |rec| rec.record(&batch.notifications, t));
        let outcomes = batch.outcomes;
        if warming {
            for tr in outcomes.into_iter().flat_map(|o| o.transitions) {
                let e = TransitionEvent::of(&group.name, &tr);
                match e.kind {
                    TransitionKind::Resolved | TransitionKind::Cleared => {
                        warm.remove(&e.alert());
                    }
                    _ => warm.entry(e.alert()).or_default().push(e),
                }
            }
            progress(done as u64 + 1, total);
            continue;
        }
        timeline.totals.evaluations += 1;
        for o in outcomes {
            timeline.totals.rule_evaluations += 1;
            if let Some(message) = o.error {
                timeline.totals.failed += 1;
                let key = (gi, o.name.clone(), message.clone());
                match errors.get(&key) {
                    Some(&i) => timeline.errors[i].count += 1,
                    None => {
                        errors.insert(key, timeline.errors.len());
                        timeline.errors.push(EvalError {
                            first: t,
                            group: group.name.clone(),
                            rule: o.name.clone(),
                            message,
                            count: 1,
                        });
                    }
                }
            }
            for tr in o.transitions {
                timeline.push_transition(TransitionEvent::of(&group.name, &tr));
            }
        }
        if let Some(rec) = recorder.as_ref() {
            for s in &rec.sent[rec.sent.len() - sent..] {
                *timeline
                    .totals
                    .notifications
                    .entry(s.receiver.clone())
                    .or_default() += 1;
                timeline.notifications.push(NotificationEvent {
                    at: s.at,
                    receiver: s.receiver.clone(),
                    subject: s.subject.clone(),
                    status: s.status,
                    reason: s.notification.change.as_str(),
                    alerts: s
                        .notification
                        .alerts
                        .iter()
                        .map(|a| {
                            let name = a.labels.get("alertname").unwrap_or_default();
                            (name.to_string(), without_alertname(&a.labels), a.status)
                        })
                        .collect(),
                });
            }
        }
        progress(done as u64 + 1, total);
    }
    // a range with no slot of its own after the warm-up: what is held is still reported
    timeline.report_held(warm);
    timeline
}

/// `firing 2, resolved 1`, or `none`.
fn counts<K: std::fmt::Display, V: std::fmt::Display>(m: &BTreeMap<K, V>) -> String {
    if m.is_empty() {
        return "none".to_string();
    }
    m.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn without_alertname(l: &Labels) -> Labels {
    Labels::from_pairs(
        l.iter()
            .filter(|(k, _)| *k != "alertname")
            .map(|(k, v)| (k.to_string(), v.to_string())),
    )
}

/// Names of the series the rules write: recording rules' names, `ALERTS` and `ALERTS_FOR_STATE`.
fn produced_names(rules: &RuleSet) -> HashSet<String> {
    let mut out: HashSet<String> = rules
        .groups
        .iter()
        .flat_map(|g| &g.rules)
        .filter(|r| matches!(r.kind, RuleKind::Record))
        .map(|r| r.name.clone())
        .collect();
    out.insert("ALERTS".to_string());
    out.insert("ALERTS_FOR_STATE".to_string());
    out
}

impl Timeline {
    /// Adds a transition and counts it.
    fn push_transition(&mut self, e: TransitionEvent) {
        *self.totals.transitions.entry(e.kind.as_str()).or_default() += 1;
        self.transitions.push(e);
    }

    /// Reports the transitions held through a warm-up (those leading to a state still held),
    /// in time order.
    fn report_held(&mut self, held: BTreeMap<String, Vec<TransitionEvent>>) {
        let mut held: Vec<TransitionEvent> = held.into_values().flatten().collect();
        held.sort_by_key(|e| e.at);
        for e in held {
            self.push_transition(e);
        }
    }

    /// Each alert's firing intervals (`Name {labels}` → intervals in time order).
    pub fn firing_intervals(&self) -> BTreeMap<String, Vec<Interval>> {
        let mut out: BTreeMap<String, Vec<Interval>> = BTreeMap::new();
        for t in &self.transitions {
            match t.kind {
                TransitionKind::Firing => out.entry(t.alert()).or_default().push((t.at, None)),
                TransitionKind::Resolved => {
                    if let Some(last) = out.get_mut(&t.alert()).and_then(|v| v.last_mut())
                        && last.1.is_none()
                    {
                        last.1 = Some(t.at);
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// The timeline as text: one line per transition and notification in time order
    /// (transitions first at equal times), then evaluation errors and totals.
    pub fn render_text(&self) -> String {
        use std::fmt::Write;
        let mut lines: Vec<(i64, u8, String)> = Vec::new();
        for t in &self.transitions {
            lines.push((
                t.at,
                0,
                format!(
                    "{}  {:<9} {}",
                    format_rfc3339(t.at),
                    t.kind.as_str(),
                    t.alert()
                ),
            ));
        }
        for n in &self.notifications {
            lines.push((
                n.at,
                1,
                format!(
                    "{}  {:<9} {}  {}",
                    format_rfc3339(n.at),
                    "notify",
                    n.receiver,
                    n.subject
                ),
            ));
        }
        lines.sort_by_key(|l| (l.0, l.1));
        let mut out = String::new();
        for (_, _, l) in lines {
            out.push_str(&l);
            out.push('\n');
        }
        for e in &self.errors {
            let _ = writeln!(
                out,
                "{}  error     group {:?}, rule {:?}: {} ({} evaluations)",
                format_rfc3339(e.first),
                e.group,
                e.rule,
                e.message,
                e.count
            );
        }
        let tt = &self.totals;
        let _ = writeln!(
            out,
            "\nreplayed {} to {}: {} group evaluations, {} rule evaluations, {} failed",
            format_rfc3339(self.from),
            format_rfc3339(self.to),
            tt.evaluations,
            tt.rule_evaluations,
            tt.failed
        );
        let _ = writeln!(out, "transitions: {}", counts(&tt.transitions));
        let _ = writeln!(out, "notifications: {}", counts(&tt.notifications));
        out
    }

    /// The timeline as one JSON document (times as RFC 3339 and as ms).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let labels = |l: &Labels| -> serde_json::Value {
            l.iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        json!({
            "from": format_rfc3339(self.from),
            "to": format_rfc3339(self.to),
            "transitions": self.transitions.iter().map(|t| json!({
                "at": format_rfc3339(t.at),
                "at_ms": t.at,
                "group": t.group,
                "alertname": t.alertname,
                "labels": labels(&t.labels),
                "kind": t.kind.as_str(),
            })).collect::<Vec<_>>(),
            "notifications": self.notifications.iter().map(|n| json!({
                "at": format_rfc3339(n.at),
                "at_ms": n.at,
                "receiver": n.receiver,
                "subject": n.subject,
                "status": n.status.as_str(),
                "reason": n.reason,
                "alerts": n.alerts.iter().map(|(name, l, st)| json!({
                    "alertname": name,
                    "labels": labels(l),
                    "status": st.as_str(),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "errors": self.errors.iter().map(|e| json!({
                "first": format_rfc3339(e.first),
                "group": e.group,
                "rule": e.rule,
                "message": e.message,
                "count": e.count,
            })).collect::<Vec<_>>(),
            "totals": {
                "evaluations": self.totals.evaluations,
                "rule_evaluations": self.totals.rule_evaluations,
                "failed": self.totals.failed,
                "transitions": self.totals.transitions,
                "notifications": self.totals.notifications,
            },
        })
    }
}

/// How one alert's firing differs between two replays.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertDiff {
    /// `Name {labels}`
    pub alert: String,
    /// firing intervals in the first replay (empty: it never fired there)
    pub a: Vec<Interval>,
    /// firing intervals in the second replay
    pub b: Vec<Interval>,
}

/// Alerts that fired in one replay and not the other, or fired over different intervals,
/// ordered by alert.
pub fn compare(a: &Timeline, b: &Timeline) -> Vec<AlertDiff> {
    let (ia, ib) = (a.firing_intervals(), b.firing_intervals());
    let keys: std::collections::BTreeSet<&String> = ia.keys().chain(ib.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let (x, y) = (
                ia.get(k).cloned().unwrap_or_default(),
                ib.get(k).cloned().unwrap_or_default(),
            );
            (x != y).then(|| AlertDiff {
                alert: k.clone(),
                a: x,
                b: y,
            })
        })
        .collect()
}

/// `10:00:15Z–10:20:00Z` style: each interval as RFC 3339 start–end (`…` while still firing).
pub fn show_intervals(v: &[Interval]) -> String {
    if v.is_empty() {
        return "never fired".to_string();
    }
    v.iter()
        .map(|(s, e)| {
            format!(
                "{}..{}",
                format_rfc3339(*s),
                e.map(format_rfc3339).unwrap_or_else(|| "end".to_string())
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The stored series with the rules' own output laid over them: series named like a recording
/// rule or `ALERTS` come from memory (what this replay wrote), all others from the store.
///
/// Reads of the store go through a cache of hour blocks per selector: evaluations step through
/// time, so one block read serves every evaluation whose windows fall in it (a read-only store
/// holds nothing in memory, and a chunk read per selector and evaluation made a day of the
/// ScaiDNS rules take 34 s instead of about 1 s). Blocks no window has reached for two hours are
/// dropped; a block of more than [`MAX_CACHED_SAMPLES`] is read directly instead.
struct Overlay {
    base: Arc<dyn Storage + Send + Sync>,
    produced: HashSet<String>,
    mem: RwLock<MemStorage>,
    cache: std::sync::Mutex<BlockCache>,
}

/// Cached block length: the store's block.
const BLOCK_MS: i64 = 3_600_000;
/// A block of a selector with more samples than this (16 bytes each) is not cached.
const MAX_CACHED_SAMPLES: usize = 1 << 21;

#[derive(Default)]
struct BlockCache {
    /// (selector, block index) → the block's samples, None when too big to cache
    blocks: HashMap<(String, i64), CachedBlock>,
    /// the latest `maxt` a read asked for: blocks unused since two hours before it are dropped
    latest: i64,
}

struct CachedBlock {
    series: Option<Arc<Vec<SeriesSamples>>>,
    /// the latest `maxt` of a read that used it
    used: i64,
}

fn selector_key(matchers: &[Matcher]) -> String {
    let mut parts: Vec<String> = matchers
        .iter()
        .map(|m| format!("{}{:?}{:?}", m.name, m.op, m.value))
        .collect();
    parts.sort();
    parts.join(",")
}

/// Which side a selector can match.
enum Sides {
    Base,
    Mem,
    Both,
}

impl Overlay {
    fn new(base: Arc<dyn Storage + Send + Sync>, produced: HashSet<String>) -> Self {
        Overlay {
            base,
            produced,
            mem: RwLock::new(MemStorage::new()),
            cache: Default::default(),
        }
    }

    /// The block `b` of the selector from the cache, read on a miss; None when too big.
    fn block(
        &self,
        key: &str,
        matchers: &[Matcher],
        b: i64,
        maxt: i64,
    ) -> Result<Option<Arc<Vec<SeriesSamples>>>, QueryError> {
        {
            let mut cache = self.cache.lock().expect("cache lock");
            if maxt > cache.latest {
                cache.latest = maxt;
                let horizon = maxt - 2 * BLOCK_MS;
                cache.blocks.retain(|_, c| c.used >= horizon);
            }
            if let Some(c) = cache.blocks.get_mut(&(key.to_string(), b)) {
                c.used = c.used.max(maxt);
                return Ok(c.series.clone());
            }
        }
        let mut series = self
            .base
            .select(matchers, b * BLOCK_MS, (b + 1) * BLOCK_MS - 1)?;
        series.retain(|s| self.is_stored(&s.labels));
        let samples: usize = series.iter().map(|s| s.samples.len()).sum();
        let series = (samples <= MAX_CACHED_SAMPLES).then(|| Arc::new(series));
        self.cache.lock().expect("cache lock").blocks.insert(
            (key.to_string(), b),
            CachedBlock {
                series: series.clone(),
                used: maxt,
            },
        );
        Ok(series)
    }

    /// The stored series (not the rules' own) matching `matchers` in [mint, maxt], through
    /// the block cache.
    fn base_select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, QueryError> {
        if maxt < mint {
            return Ok(Vec::new());
        }
        let key = selector_key(matchers);
        let mut blocks = Vec::new();
        for b in mint.div_euclid(BLOCK_MS)..=maxt.div_euclid(BLOCK_MS) {
            match self.block(&key, matchers, b, maxt)? {
                Some(block) => blocks.push(block),
                None => {
                    let mut out = self.base.select(matchers, mint, maxt)?;
                    out.retain(|s| self.is_stored(&s.labels));
                    return Ok(out);
                }
            }
        }
        fn slice(s: &SeriesSamples, mint: i64, maxt: i64) -> &[(i64, f64)] {
            let lo = s.samples.partition_point(|p| p.0 < mint);
            let hi = s.samples.partition_point(|p| p.0 <= maxt);
            &s.samples[lo..hi]
        }
        if let [one] = blocks.as_slice() {
            return Ok(one
                .iter()
                .filter_map(|s| {
                    let part = slice(s, mint, maxt);
                    (!part.is_empty()).then(|| SeriesSamples {
                        labels: s.labels.clone(),
                        samples: part.to_vec(),
                    })
                })
                .collect());
        }
        // blocks in time order: each series' parts concatenate in order
        let mut merged: BTreeMap<Arc<Labels>, Vec<(i64, f64)>> = BTreeMap::new();
        for block in &blocks {
            for s in block.iter() {
                let part = slice(s, mint, maxt);
                if !part.is_empty() {
                    merged
                        .entry(s.labels.clone())
                        .or_default()
                        .extend_from_slice(part);
                }
            }
        }
        Ok(merged
            .into_iter()
            .map(|(labels, samples)| SeriesSamples { labels, samples })
            .collect())
    }

    fn add(&self, series: &[(Labels, i64, f64)]) {
        let mut mem = self.mem.write().expect("overlay lock");
        for (l, t, v) in series {
            mem.add(l, *t, *v);
        }
    }

    fn sides(&self, matchers: &[Matcher]) -> Sides {
        match matchers
            .iter()
            .find(|m| m.name == METRIC_NAME && m.op == MatchOp::Equal)
        {
            Some(m) if self.produced.contains(m.value.as_str()) => Sides::Mem,
            Some(_) => Sides::Base,
            None => Sides::Both,
        }
    }

    fn is_stored(&self, l: &Labels) -> bool {
        l.metric_name().is_none_or(|n| !self.produced.contains(n))
    }
}

impl Storage for Overlay {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, QueryError> {
        let sides = self.sides(matchers);
        let mut out = Vec::new();
        if !matches!(sides, Sides::Mem) {
            out = self.base_select(matchers, mint, maxt)?;
        }
        if !matches!(sides, Sides::Base) {
            let mem = self.mem.read().expect("overlay lock");
            out.extend(mem.select(matchers, mint, maxt)?);
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
        let sides = self.sides(matchers);
        if !matches!(sides, Sides::Mem) {
            for s in self.base_select(matchers, mint, maxt)? {
                f(&s.labels, &s.samples);
            }
        }
        if !matches!(sides, Sides::Base) {
            let mem = self.mem.read().expect("overlay lock");
            mem.select_each(matchers, mint, maxt, f)?;
        }
        Ok(())
    }

    fn latest(
        &self,
        matchers: &[Matcher],
        t: i64,
        lookback: i64,
    ) -> Result<Vec<(Arc<Labels>, i64, f64)>, QueryError> {
        let sides = self.sides(matchers);
        let mut out = Vec::new();
        if !matches!(sides, Sides::Mem) {
            out = crate::promql::newest_fresh(self.base_select(matchers, t - lookback + 1, t)?);
        }
        if !matches!(sides, Sides::Base) {
            let mem = self.mem.read().expect("overlay lock");
            out.extend(mem.latest(matchers, t, lookback)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::parse_file;

    const RULES: &str = r#"groups:
  - name: g
    interval: 10s
    rules:
      - record: job:errors:max
        expr: max by (job) (errors)
      - alert: High
        expr: job:errors:max > 5
        for: 20s
"#;

    fn rules(text: &str) -> RuleSet {
        let groups = parse_file(text, Path::new("r.yml"), 15_000, &ScriptEngine::new()).unwrap();
        RuleSet {
            groups: groups.into_iter().map(std::sync::Arc::new).collect(),
            files: vec![PathBuf::from("r.yml")],
        }
    }

    /// `errors{job="a"}` every 10 s over [0, 300 s]: 10 between 100 s and 200 s, else 0; and a
    /// stale `job:errors:max` the daemon wrote, which the replay must not read.
    fn storage() -> Arc<MemStorage> {
        let mut m = MemStorage::new();
        let l = Labels::from_pairs([("__name__", "errors"), ("job", "a")]);
        let old = Labels::from_pairs([("__name__", "job:errors:max"), ("job", "a")]);
        for i in 0..=30 {
            let t = i * 10_000;
            m.add(
                &l,
                t,
                if (100_000..200_000).contains(&t) {
                    10.0
                } else {
                    0.0
                },
            );
            m.add(&old, t, 100.0);
        }
        Arc::new(m)
    }

    fn run(set: &RuleSet, setup: Option<&NotifySetup>, step: Option<i64>) -> Timeline {
        run_silenced(set, setup, step, Vec::new())
    }

    fn run_silenced(
        set: &RuleSet,
        setup: Option<&NotifySetup>,
        step: Option<i64>,
        silences: Vec<crate::notify::silence::Silence>,
    ) -> Timeline {
        run_from(set, setup, step, silences, 0, 0)
    }

    fn run_from(
        set: &RuleSet,
        setup: Option<&NotifySetup>,
        step: Option<i64>,
        silences: Vec<crate::notify::silence::Silence>,
        from: i64,
        warmup_ms: i64,
    ) -> Timeline {
        let note = |_: &Labels| None;
        replay(
            &Replay {
                storage: storage(),
                rules: set,
                notify: setup,
                from,
                to: 300_000,
                step_ms: step,
                default_interval_ms: 10_000,
                compat: Default::default(),
                external_labels: BTreeMap::new(),
                external_url: String::new(),
                grace: HashMap::new(),
                note: &note,
                silences,
                datasources: Default::default(),
                all_on: None,
                warmup_ms,
            },
            &mut |_, _| {},
        )
    }

    fn kinds(t: &Timeline) -> Vec<(i64, &'static str)> {
        t.transitions
            .iter()
            .map(|e| (e.at, e.kind.as_str()))
            .collect()
    }

    #[test]
    fn incident_goes_pending_fires_and_resolves_reading_its_own_recorded_series() {
        let set = rules(RULES);
        let t = run(&set, None, Some(10_000));
        // the stored job:errors:max (100) would make it pending at 0: the replay's own is read
        assert_eq!(
            kinds(&t),
            [
                (100_000, "pending"),
                (120_000, "firing"),
                (200_000, "resolved")
            ]
        );
        assert_eq!(t.totals.evaluations, 31);
        assert_eq!(t.totals.rule_evaluations, 62);
        assert_eq!(
            t.firing_intervals()["High {job=\"a\"}"],
            [(120_000, Some(200_000))]
        );
    }

    #[test]
    fn notifications_follow_group_wait_and_name_receiver_and_subject() {
        let set = rules(RULES);
        let setup = NotifySetup::builtin();
        let t = run(&set, Some(&setup), Some(10_000));
        // built-in routing: group_wait 30s after firing at 120 s; resolved goes by webhook
        let got: Vec<(i64, &str, &str)> = t
            .notifications
            .iter()
            .map(|n| (n.at, n.receiver.as_str(), n.subject.as_str()))
            .collect();
        // (the resolution would go out at the next group_interval, 450 s: after the range)
        assert_eq!(got, [(150_000, "default", "[FIRING:1] High")]);
        assert_eq!(t.notifications[0].status, AlertState::Firing);
        assert_eq!(
            t.totals.notifications["default"],
            t.notifications.len() as u64
        );
        let text = t.render_text();
        assert!(
            text.contains("1970-01-01T00:02:00Z  firing    High {job=\"a\"}"),
            "{text}"
        );
        assert!(
            text.contains("1970-01-01T00:02:30Z  notify    default  [FIRING:1] High"),
            "{text}"
        );
    }

    #[test]
    fn a_warmup_keeps_the_state_an_alert_had_at_from() {
        let set = rules(RULES);
        let setup = NotifySetup::builtin();
        // from 150 s without warm-up: the alert starts over, pending at 150 s, firing at 170 s
        let cold = run_from(&set, Some(&setup), Some(10_000), Vec::new(), 150_000, 0);
        assert_eq!(
            kinds(&cold),
            [
                (150_000, "pending"),
                (170_000, "firing"),
                (200_000, "resolved")
            ]
        );
        // with a minute of warm-up: it fired at 120 s, as live; the notification went out at
        // 150 s (group_wait 30 s), inside the range; evaluations before from are not counted
        let warm = run_from(
            &set,
            Some(&setup),
            Some(10_000),
            Vec::new(),
            150_000,
            60_000,
        );
        assert_eq!(
            kinds(&warm),
            [
                (100_000, "pending"),
                (120_000, "firing"),
                (200_000, "resolved")
            ]
        );
        assert_eq!(warm.totals.evaluations, cold.totals.evaluations);
        assert_eq!(
            warm.firing_intervals()["High {job=\"a\"}"],
            [(120_000, Some(200_000))]
        );
        // a notification sent during the warm-up is not reported again
        let late = run_from(
            &set,
            Some(&setup),
            Some(10_000),
            Vec::new(),
            160_000,
            80_000,
        );
        assert!(late.notifications.is_empty(), "{:?}", late.notifications);
        assert_eq!(kinds(&late)[1], (120_000, "firing"));
    }

    #[test]
    fn a_silence_active_at_the_time_suppresses_what_it_matches() {
        let set = rules(RULES);
        let setup = NotifySetup::builtin();
        let silence = |starts_at, ends_at| crate::notify::silence::Silence {
            id: "s".into(),
            matchers: vec![crate::notify::silence::MatcherSpec::parse("alertname=High").unwrap()],
            starts_at,
            ends_at,
            created_by: "t".into(),
            comment: String::new(),
        };
        // active over the flush at 150 s: nothing goes out; the alert still fires
        let t = run_silenced(&set, Some(&setup), Some(10_000), vec![silence(0, 200_000)]);
        assert!(t.notifications.is_empty(), "{:?}", t.notifications);
        assert!(kinds(&t).contains(&(120_000, "firing")));
        // over before the alert fires: no effect
        let t = run_silenced(&set, Some(&setup), Some(10_000), vec![silence(0, 50_000)]);
        assert_eq!(t.notifications.len(), 1);
    }

    #[test]
    fn schedule_uses_the_daemons_offsets_or_the_step() {
        let set = rules(RULES);
        let slots = schedule(&set, 1_000, 31_000, None);
        let offset = crate::rules::slot_offset("g", 10_000);
        assert!(slots.iter().all(|(t, _)| t.rem_euclid(10_000) == offset));
        assert_eq!(slots.len(), 3);
        assert_eq!(
            schedule(&set, 1_000, 31_000, Some(15_000)),
            [(1_000, 0), (16_000, 0), (31_000, 0)]
        );
    }

    #[test]
    fn compare_reports_alerts_firing_in_one_replay_only_and_differing_intervals() {
        let a = run(&rules(RULES), None, Some(10_000));
        let b = run(&rules(&RULES.replace("> 5", "> 50")), None, Some(10_000));
        let c = run(&rules(&RULES.replace("20s", "50s")), None, Some(10_000));
        assert!(compare(&a, &a).is_empty());
        assert_eq!(
            compare(&a, &b),
            [AlertDiff {
                alert: "High {job=\"a\"}".into(),
                a: vec![(120_000, Some(200_000))],
                b: vec![],
            }]
        );
        assert_eq!(compare(&a, &c)[0].b, [(150_000, Some(200_000))]);
    }

    #[test]
    fn range_checks_name_the_range_and_what_the_store_holds() {
        assert!(check_range(0, 10, Some((5, 20))).is_ok());
        let e = check_range(0, 10, Some((60_000, 120_000))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no samples between 1970-01-01T00:00:00Z and 1970-01-01T00:00:00.010Z: \
             the store holds samples from 1970-01-01T00:01:00Z to 1970-01-01T00:02:00Z"
        );
        assert!(
            check_range(0, 10, None)
                .unwrap_err()
                .to_string()
                .ends_with("the store holds no samples")
        );
        assert!(matches!(
            check_range(10, 0, Some((0, 10))),
            Err(ReplayError::Range(_))
        ));
    }
}
