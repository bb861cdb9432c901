//! The alert state machine of one alerting rule, as Prometheus runs it: inactive → pending
//! (`for`) → firing → resolved, `keep_firing_for`, resolved alerts kept 15 minutes; plus tocsin's
//! `resolve` hysteresis and Nagios-style flap detection. Pure: `now` is an argument, nothing is
//! read or written outside the state.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use super::FlapDetection;
use crate::labels::Labels;

/// How long a resolved alert is kept (and reported as resolved), as Prometheus.
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

/// Evaluations of history flap detection looks at (Nagios: 21).
pub const FLAP_WINDOW: u32 = 21;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Inactive,
    Pending,
    Firing,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Inactive => "inactive",
            AlertStatus::Pending => "pending",
            AlertStatus::Firing => "firing",
        }
    }
}

/// One alert instance (one label set) of a rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// the full label set: the sample's labels without its name, the rule's labels, `alertname`
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub status: AlertStatus,
    /// when the condition started to hold (ms)
    pub active_at: i64,
    pub fired_at: Option<i64>,
    pub resolved_at: Option<i64>,
    pub keep_firing_since: Option<i64>,
    pub value: f64,
    /// the condition's result labels (without name) joined into one key, for `resolve` matching
    pub source_key: String,
    /// condition held (1) or not (0) at each of the last evaluations, newest in bit 0
    pub flap_history: u32,
    /// evaluations recorded in `flap_history` (at most [`FLAP_WINDOW`])
    pub flap_len: u32,
    pub flapping: bool,
}

impl Alert {
    pub fn fingerprint(&self) -> u64 {
        self.labels.fingerprint()
    }

    /// Whether the alert counts as active (pending or firing), as Prometheus reports it.
    pub fn is_active(&self) -> bool {
        self.status != AlertStatus::Inactive
    }
}

/// A candidate alert from one evaluation: the condition's result, templated.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub value: f64,
    pub source_key: String,
}

/// A change of an alert's status (or flapping) at one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub fingerprint: u64,
    pub labels: Labels,
    pub from: AlertStatus,
    pub to: AlertStatus,
    /// Some(true) when the alert started flapping, Some(false) when it stopped
    pub flapping: Option<bool>,
    pub at: i64,
}

/// The timing parameters of a rule.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    pub hold_ms: i64,
    pub keep_firing_for_ms: i64,
    pub flap: Option<FlapDetection>,
    /// whether the rule has a `resolve` condition (then `resolvable` decides)
    pub has_resolve: bool,
}

/// What one rule keeps between evaluations: its alerts, keyed by fingerprint (ordered, so
/// iteration is deterministic), and the series its last evaluation wrote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleState {
    pub alerts: BTreeMap<u64, Alert>,
    /// the output series (recorded series, or `ALERTS`) of the rule's last successful
    /// evaluation, so the next one writes a staleness marker for each it no longer produces
    /// (Prometheus's `seriesInPreviousEval`). Not persisted: after a restart the first
    /// evaluation marks nothing, as in Prometheus.
    pub series: HashSet<Labels>,
    /// since when (ms) the rule's remote datasource has been unavailable, evaluation after
    /// evaluation; None while it answers (or for rules on the embedded store). Not persisted:
    /// after a restart the grace (`datasource_error_for`) starts again.
    pub unavailable_since: Option<i64>,
}

impl RuleState {
    /// Whether the state holds nothing to remember: no alert, no series written by the last
    /// evaluation, no datasource outage running. Such a state is not kept between evaluations.
    pub fn is_empty(&self) -> bool {
        self.alerts.is_empty() && self.series.is_empty() && self.unavailable_since.is_none()
    }

    /// Applies one evaluation's candidates at `now`. `resolvable` holds the source keys for
    /// which the rule's `resolve` condition holds (ignored without one). Returns the
    /// transitions, in fingerprint order.
    pub fn update(
        &mut self,
        candidates: Vec<Candidate>,
        resolvable: &HashSet<String>,
        timing: Timing,
        now: i64,
    ) -> Vec<Transition> {
        let mut out = Vec::new();
        let mut present: HashSet<u64> = HashSet::with_capacity(candidates.len());
        for c in candidates {
            let fp = c.labels.fingerprint();
            present.insert(fp);
            match self.alerts.get_mut(&fp) {
                Some(a) if a.is_active() => {
                    a.value = c.value;
                    a.annotations = c.annotations;
                    a.source_key = c.source_key;
                    a.keep_firing_since = None;
                }
                existing => {
                    let (history, len, flapping) = existing
                        .map(|a| (a.flap_history, a.flap_len, a.flapping))
                        .unwrap_or((0, 0, false));
                    let a = Alert {
                        labels: c.labels,
                        annotations: c.annotations,
                        status: AlertStatus::Pending,
                        active_at: now,
                        fired_at: None,
                        resolved_at: None,
                        keep_firing_since: None,
                        value: c.value,
                        source_key: c.source_key,
                        flap_history: history,
                        flap_len: len,
                        flapping,
                    };
                    out.push(Transition {
                        fingerprint: fp,
                        labels: a.labels.clone(),
                        from: AlertStatus::Inactive,
                        to: AlertStatus::Pending,
                        flapping: None,
                        at: now,
                    });
                    self.alerts.insert(fp, a);
                }
            }
        }
        let mut remove = Vec::new();
        for (&fp, a) in self.alerts.iter_mut() {
            let holds = present.contains(&fp);
            if let Some(flap) = timing.flap {
                a.flap_history =
                    (a.flap_history << 1 | u32::from(holds)) & ((1 << FLAP_WINDOW) - 1);
                a.flap_len = (a.flap_len + 1).min(FLAP_WINDOW);
                let pct = percent_state_change(a.flap_history, a.flap_len);
                let change = if !a.flapping && pct > flap.high {
                    Some(true)
                } else if a.flapping && pct < flap.low {
                    Some(false)
                } else {
                    None
                };
                if let Some(f) = change {
                    a.flapping = f;
                    out.push(Transition {
                        fingerprint: fp,
                        labels: a.labels.clone(),
                        from: a.status,
                        to: a.status,
                        flapping: Some(f),
                        at: now,
                    });
                }
            }
            if !holds {
                let mut keep_firing = false;
                if a.status == AlertStatus::Firing {
                    if timing.keep_firing_for_ms > 0 {
                        let since = *a.keep_firing_since.get_or_insert(now);
                        keep_firing = now - since < timing.keep_firing_for_ms;
                    }
                    // hysteresis: without its resolve condition a firing alert stays firing
                    if timing.has_resolve && !resolvable.contains(&a.source_key) {
                        keep_firing = true;
                    }
                }
                let expired = a
                    .resolved_at
                    .is_some_and(|r| now - r > RESOLVED_RETENTION_MS);
                if a.status == AlertStatus::Pending || expired {
                    // with flap detection the history outlives the alert until it is all quiet
                    if timing.flap.is_none() || a.flap_history == 0 {
                        remove.push(fp);
                    }
                }
                if a.is_active() && !keep_firing {
                    out.push(Transition {
                        fingerprint: fp,
                        labels: a.labels.clone(),
                        from: a.status,
                        to: AlertStatus::Inactive,
                        flapping: None,
                        at: now,
                    });
                    // a pending alert that goes away never fired: nothing to resolve
                    if a.status == AlertStatus::Firing {
                        a.resolved_at = Some(now);
                    }
                    a.status = AlertStatus::Inactive;
                }
                if !keep_firing {
                    continue;
                }
            }
            if a.status == AlertStatus::Pending && now - a.active_at >= timing.hold_ms {
                a.status = AlertStatus::Firing;
                a.fired_at = Some(now);
                out.push(Transition {
                    fingerprint: fp,
                    labels: a.labels.clone(),
                    from: AlertStatus::Pending,
                    to: AlertStatus::Firing,
                    flapping: None,
                    at: now,
                });
            }
        }
        for fp in remove {
            if let Some(a) = self.alerts.get(&fp)
                && !a.is_active()
            {
                self.alerts.remove(&fp);
            }
        }
        // a new alert that went pending and firing in one evaluation reports one transition
        merge_transitions(out)
    }

    /// Alerts that are pending or firing.
    pub fn active(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.values().filter(|a| a.is_active())
    }

    /// Resolved alerts still within their retention.
    pub fn resolved(&self) -> impl Iterator<Item = &Alert> {
        self.alerts
            .values()
            .filter(|a| a.resolved_at.is_some() && !a.is_active())
    }

    /// Drops every alert (the rule exceeded its limit, as Prometheus does); the series of the
    /// last successful evaluation stay, to be marked stale by the next one.
    pub fn clear(&mut self) {
        self.alerts.clear();
    }
}

/// Collapses inactive→pending→firing of one alert in one evaluation into inactive→firing.
fn merge_transitions(mut out: Vec<Transition>) -> Vec<Transition> {
    out.sort_by_key(|t| t.fingerprint);
    let mut merged: Vec<Transition> = Vec::with_capacity(out.len());
    for t in out {
        if let Some(last) = merged.last_mut()
            && last.fingerprint == t.fingerprint
            && last.flapping.is_none()
            && t.flapping.is_none()
            && last.to == t.from
        {
            last.to = t.to;
            continue;
        }
        merged.push(t);
    }
    merged.retain(|t| t.flapping.is_some() || t.from != t.to);
    merged
}

/// Nagios's curved percent state change over `len` recorded states (newest in bit 0): each
/// change weighted from 0.75 (oldest) to 1.25 (newest), over the 20 possible changes.
pub fn percent_state_change(history: u32, len: u32) -> f64 {
    if len < 2 {
        return 0.0;
    }
    let max = FLAP_WINDOW;
    let mut changes = 0.0;
    // x counts positions from the oldest recorded state (x = 1 is the first possible change)
    for x in 1..len {
        let older = history >> (len - x) & 1;
        let newer = history >> (len - x - 1) & 1;
        if older != newer {
            // positions are aligned so that the newest change always gets the top weight
            let pos = x + (max - len);
            changes += f64::from(pos - 1) * 0.5 / f64::from(max - 2) + 0.75;
        }
    }
    changes * 100.0 / f64::from(max - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(instance: &str, v: f64) -> Candidate {
        Candidate {
            labels: Labels::from_pairs([("alertname", "Down"), ("instance", instance)]),
            annotations: BTreeMap::new(),
            value: v,
            source_key: format!("instance={instance}"),
        }
    }

    const MIN: i64 = 60_000;

    fn timing(hold: i64) -> Timing {
        Timing {
            hold_ms: hold,
            ..Timing::default()
        }
    }

    #[test]
    fn pending_then_firing_after_for_then_resolved_and_kept_15_minutes() {
        let mut s = RuleState::default();
        let none = HashSet::new();
        let t = s.update(vec![cand("a", 1.0)], &none, timing(5 * MIN), 0);
        assert_eq!(
            (t[0].from, t[0].to),
            (AlertStatus::Inactive, AlertStatus::Pending)
        );
        assert!(
            s.update(vec![cand("a", 1.0)], &none, timing(5 * MIN), 4 * MIN)
                .is_empty()
        );
        let t = s.update(vec![cand("a", 2.0)], &none, timing(5 * MIN), 5 * MIN);
        assert_eq!(t[0].to, AlertStatus::Firing);
        let a = s.alerts.values().next().unwrap();
        assert_eq!((a.active_at, a.fired_at, a.value), (0, Some(5 * MIN), 2.0));
        let t = s.update(vec![], &none, timing(5 * MIN), 6 * MIN);
        assert_eq!(
            (t[0].from, t[0].to),
            (AlertStatus::Firing, AlertStatus::Inactive)
        );
        assert_eq!(s.resolved().count(), 1);
        s.update(vec![], &none, timing(5 * MIN), 21 * MIN);
        assert_eq!(s.resolved().count(), 1, "kept for 15 minutes");
        s.update(vec![], &none, timing(5 * MIN), 21 * MIN + 1);
        assert!(s.alerts.is_empty());
    }

    #[test]
    fn zero_for_fires_at_once_and_pending_alerts_vanish_silently() {
        let mut s = RuleState::default();
        let none = HashSet::new();
        let t = s.update(vec![cand("a", 1.0)], &none, timing(0), 0);
        assert_eq!(t.len(), 1);
        assert_eq!(
            (t[0].from, t[0].to),
            (AlertStatus::Inactive, AlertStatus::Firing)
        );
        let mut s = RuleState::default();
        s.update(vec![cand("a", 1.0)], &none, timing(MIN), 0);
        let t = s.update(vec![], &none, timing(MIN), 30_000);
        assert_eq!(t[0].to, AlertStatus::Inactive);
        assert!(s.alerts.is_empty(), "a pending alert is forgotten");
    }

    #[test]
    fn keep_firing_for_holds_a_firing_alert() {
        let mut s = RuleState::default();
        let none = HashSet::new();
        let tm = Timing {
            keep_firing_for_ms: 2 * MIN,
            ..Timing::default()
        };
        s.update(vec![cand("a", 1.0)], &none, tm, 0);
        assert!(s.update(vec![], &none, tm, MIN).is_empty());
        assert!(s.update(vec![], &none, tm, 2 * MIN).is_empty());
        let t = s.update(vec![], &none, tm, 3 * MIN);
        assert_eq!(t[0].to, AlertStatus::Inactive);
        // the condition returning resets the clock
        let mut s = RuleState::default();
        s.update(vec![cand("a", 1.0)], &none, tm, 0);
        s.update(vec![], &none, tm, MIN);
        s.update(vec![cand("a", 1.0)], &none, tm, 2 * MIN);
        assert!(s.update(vec![], &none, tm, 3 * MIN).is_empty());
    }

    #[test]
    fn resolve_condition_is_hysteresis() {
        let mut s = RuleState::default();
        let tm = Timing {
            has_resolve: true,
            ..Timing::default()
        };
        s.update(vec![cand("a", 1.0)], &HashSet::new(), tm, 0);
        assert!(
            s.update(vec![], &HashSet::new(), tm, MIN).is_empty(),
            "resolve does not hold yet"
        );
        let ok: HashSet<String> = ["instance=a".to_string()].into();
        let t = s.update(vec![], &ok, tm, 2 * MIN);
        assert_eq!(t[0].to, AlertStatus::Inactive);
    }

    #[test]
    fn flapping_alert_reports_flapping_once() {
        let mut s = RuleState::default();
        let none = HashSet::new();
        let tm = Timing {
            flap: Some(FlapDetection {
                low: 20.0,
                high: 30.0,
            }),
            ..Timing::default()
        };
        let mut starts = 0;
        for i in 0..21 {
            let c = if i % 2 == 0 {
                vec![cand("a", 1.0)]
            } else {
                vec![]
            };
            for t in s.update(c, &none, tm, i * MIN) {
                if t.flapping == Some(true) {
                    starts += 1;
                }
            }
        }
        assert_eq!(starts, 1);
        assert!(s.alerts.values().next().unwrap().flapping);
        // quiet for a window: flapping stops
        let mut stops = 0;
        for i in 21..45 {
            for t in s.update(vec![], &none, tm, i * MIN) {
                if t.flapping == Some(false) {
                    stops += 1;
                }
            }
        }
        assert_eq!(stops, 1);
    }

    #[test]
    fn nagios_percent_state_change() {
        assert_eq!(percent_state_change(0, 21), 0.0);
        // alternating states: every one of the 20 changes, weights averaging 1.0
        let alt = 0b1_0101_0101_0101_0101_0101 & ((1 << 21) - 1);
        assert!((percent_state_change(alt, 21) - 100.0).abs() < 1e-9);
        // one change, the newest: weight 1.25 of 20
        assert!((percent_state_change(1, 21) - 6.25).abs() < 1e-9);
    }
}

/// The persisted form of an [`Alert`] (`alerts` table), version 1. Rows written before versions
/// existed have the same layout without `v`.
#[derive(Debug, Serialize, Deserialize)]
pub struct AlertRow {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v: Option<u32>,
    /// `[name, value]` pairs
    #[serde(with = "crate::persist::label_pairs")]
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub status: AlertStatus,
    pub active_at: i64,
    pub fired_at: Option<i64>,
    pub resolved_at: Option<i64>,
    pub keep_firing_since: Option<i64>,
    /// a string: NaN and ±Inf are not JSON numbers
    #[serde(with = "crate::persist::float_text")]
    pub value: f64,
    pub source_key: String,
    pub flap_history: u32,
    pub flap_len: u32,
    pub flapping: bool,
}

impl crate::persist::Row for AlertRow {
    const KIND: crate::persist::RowKind = crate::persist::RowKind::AlertState;
    fn version(&self) -> Option<u32> {
        self.v
    }
}

impl Alert {
    /// The persisted form (JSON, [`AlertRow`]), read back by [`Alert::from_json`].
    pub fn to_json(&self) -> String {
        let row = AlertRow {
            v: crate::persist::current_version(),
            labels: self.labels.clone(),
            annotations: self.annotations.clone(),
            status: self.status,
            active_at: self.active_at,
            fired_at: self.fired_at,
            resolved_at: self.resolved_at,
            keep_firing_since: self.keep_firing_since,
            value: self.value,
            source_key: self.source_key.clone(),
            flap_history: self.flap_history,
            flap_len: self.flap_len,
            flapping: self.flapping,
        };
        serde_json::to_string(&row).expect("alert rows serialize")
    }

    /// Reads a persisted alert (any version this build knows, and rows without one).
    pub fn from_json(text: &str) -> Result<Alert, crate::persist::PersistError> {
        let r: AlertRow = crate::persist::read_row(text)?;
        Ok(Alert {
            labels: r.labels,
            annotations: r.annotations,
            status: r.status,
            active_at: r.active_at,
            fired_at: r.fired_at,
            resolved_at: r.resolved_at,
            keep_firing_since: r.keep_firing_since,
            value: r.value,
            source_key: r.source_key,
            flap_history: r.flap_history,
            flap_len: r.flap_len,
            flapping: r.flapping,
        })
    }
}

#[cfg(test)]
mod persist_tests {
    use super::*;

    fn alert(value: f64) -> Alert {
        Alert {
            labels: Labels::from_pairs([("alertname", "X"), ("job", "a\"b")]),
            annotations: [("summary".to_string(), "hi".to_string())].into(),
            status: AlertStatus::Firing,
            active_at: 1,
            fired_at: Some(2),
            resolved_at: None,
            keep_firing_since: Some(3),
            value,
            source_key: "{job=\"a\"}".into(),
            flap_history: 5,
            flap_len: 3,
            flapping: true,
        }
    }

    #[test]
    fn alert_state_round_trips_through_json() {
        let a = alert(f64::INFINITY);
        assert_eq!(Alert::from_json(&a.to_json()).unwrap(), a);
        assert!(Alert::from_json("{}").is_err());
        // NaN is not equal to itself: compare the rest
        let back = Alert::from_json(&alert(f64::NAN).to_json()).unwrap();
        assert!(back.value.is_nan());
        assert_eq!(Alert { value: 0.0, ..back }, alert(0.0));
        assert!(alert(1.0).to_json().starts_with(r#"{"v":1,"#));
    }

    #[test]
    fn alert_state_written_before_versions_reads_back() {
        // as the hand-written `to_json` of before typed rows wrote it (no `v`)
        let old = r#"{"active_at":1,"annotations":{"summary":"hi"},"fired_at":2,"flap_history":5,"flap_len":3,"flapping":true,"keep_firing_since":3,"labels":[["alertname","X"],["job","a\"b"]],"resolved_at":null,"source_key":"{job=\"a\"}","status":"firing","value":"NaN"}"#;
        let a = Alert::from_json(old).unwrap();
        assert!(a.value.is_nan());
        assert_eq!(Alert { value: 0.0, ..a }, alert(0.0));
    }

    #[test]
    fn a_damaged_alert_state_names_the_missing_field() {
        let damaged =
            r#"{"annotations":{},"fired_at":null,"labels":[],"status":"firing","value":"1"}"#;
        let e = Alert::from_json(damaged).unwrap_err().to_string();
        assert!(
            e.starts_with("alert state: missing field `active_at` at line 1 column"),
            "{e}"
        );
        let e = Alert::from_json(r#"{"v":1,"status":"sleeping"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown variant `sleeping`"), "{e}");
    }
}
