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

/// The alerts of one rule, keyed by fingerprint (ordered, so iteration is deterministic).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleState {
    pub alerts: BTreeMap<u64, Alert>,
}

impl RuleState {
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

    /// Drops every alert (the rule exceeded its limit, as Prometheus does).
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

impl Alert {
    /// The persisted form (JSON), read back by [`Alert::from_json`].
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "labels": self.labels.iter().collect::<Vec<_>>(),
            "annotations": self.annotations,
            "status": self.status,
            "active_at": self.active_at,
            "fired_at": self.fired_at,
            "resolved_at": self.resolved_at,
            "keep_firing_since": self.keep_firing_since,
            // NaN and ±Inf are not JSON numbers
            "value": crate::promql::format_float(self.value),
            "source_key": self.source_key,
            "flap_history": self.flap_history,
            "flap_len": self.flap_len,
            "flapping": self.flapping,
        })
        .to_string()
    }

    /// Reads a persisted alert; None when the text is not a state this version wrote.
    pub fn from_json(text: &str) -> Option<Alert> {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        let labels = Labels::from_pairs(
            v.get("labels")?
                .as_array()?
                .iter()
                .filter_map(|p| {
                    Some((
                        p.get(0)?.as_str()?.to_string(),
                        p.get(1)?.as_str()?.to_string(),
                    ))
                })
                .collect::<Vec<_>>(),
        );
        let opt = |k: &str| v.get(k).and_then(|x| x.as_i64());
        let value = v.get("value")?.as_str()?;
        Some(Alert {
            labels,
            annotations: serde_json::from_value(v.get("annotations")?.clone()).ok()?,
            status: serde_json::from_value(v.get("status")?.clone()).ok()?,
            active_at: opt("active_at")?,
            fired_at: opt("fired_at"),
            resolved_at: opt("resolved_at"),
            keep_firing_since: opt("keep_firing_since"),
            value: crate::promql::notation::parse_number(value).unwrap_or(f64::NAN),
            source_key: v.get("source_key")?.as_str()?.to_string(),
            flap_history: v.get("flap_history")?.as_u64()? as u32,
            flap_len: v.get("flap_len")?.as_u64()? as u32,
            flapping: v.get("flapping")?.as_bool()?,
        })
    }
}

#[cfg(test)]
mod persist_tests {
    use super::*;

    #[test]
    fn alert_state_round_trips_through_json() {
        let a = Alert {
            labels: Labels::from_pairs([("alertname", "X"), ("job", "a\"b")]),
            annotations: [("summary".to_string(), "hi".to_string())].into(),
            status: AlertStatus::Firing,
            active_at: 1,
            fired_at: Some(2),
            resolved_at: None,
            keep_firing_since: Some(3),
            value: f64::INFINITY,
            source_key: "{job=\"a\"}".into(),
            flap_history: 5,
            flap_len: 3,
            flapping: true,
        };
        assert_eq!(Alert::from_json(&a.to_json()), Some(a));
        assert_eq!(Alert::from_json("{}"), None);
    }
}
