//! The group and dedup stages: alerts (already past inhibition and silences) are routed to
//! receivers, grouped per route by `group_by`, and each group is flushed `group_wait` after it
//! first appears and every `group_interval` after that; at a flush, [`super::dedup::decide`] says
//! whether the receiver needs to hear anything, and why. Pure: `now` and the notification log
//! are arguments; what to send comes back with the log entries that record it, for the caller to
//! write in one transaction.
//!
//! Group membership is recomputed from the alerts at every tick (the tracker keeps resolved
//! alerts for 15 minutes, so a resolution is seen at the next flush); only the groups' timing is
//! state, and it is rebuilt after a restart (a group then waits `group_wait` again, and the
//! notification log keeps that from repeating what was already sent).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::dedup::{KeyedAlert, LogEntry, decide, decide_forward, idempotency_key};
use super::{AlertSnapshot, AlertState, Change, Notification};
use crate::labels::Labels;

/// Where one alert goes: what a routing tree says for it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RouteTarget {
    pub receiver: String,
    pub group_key: String,
    pub group_labels: Labels,
    pub group_wait_ms: i64,
    pub group_interval_ms: i64,
    pub repeat_interval_ms: i64,
    pub send_resolved: bool,
    /// inside a mute time interval (or outside every active one) at this tick: the group keeps
    /// its timing but sends and logs nothing, as Alertmanager's time-mute stage
    pub muted: bool,
    /// the receiver's digest mode: which alerts a notification lists
    pub digest: Digest,
    /// Some for an `alertmanager` receiver (its `resend_delay`, ms): the group is every alert
    /// routed to the receiver, flushed at every tick, and forwarded whole whenever
    /// [`decide_forward`] says so, as Prometheus hands alerts to Alertmanager (which groups)
    pub resend_delay_ms: Option<i64>,
}

/// How a receiver batches what is routed to it (`digest`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Digest {
    /// Alertmanager's behaviour: every alert of the group, firing and resolved
    #[default]
    Off,
    /// one notification per evaluation cycle for everything the receiver gets: the alerts new
    /// or resolved since the last one, and every alert still firing
    All,
    /// as `all`, but only the alerts new or resolved since the last one
    ChangesOnly,
}

/// Routes an alert's labels (the routing tree, or a fixed route in tests) at `now` (ms).
pub trait Routes {
    fn routes(&self, labels: &Labels, now: i64) -> Vec<RouteTarget>;
}

#[derive(Debug, Clone)]
struct GroupTiming {
    next_flush: i64,
}

/// The groups' timing across ticks.
#[derive(Debug, Default)]
pub struct Dispatcher {
    groups: HashMap<(String, String), GroupTiming>,
}

/// A notification to queue and the log entry recording it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub notification: Notification,
    pub log: LogEntry,
}

impl Dispatcher {
    pub fn new() -> Self {
        Self::default()
    }

    /// One tick at `now`: `alerts` are the alerts that may be notified (firing, and resolved ones
    /// still within retention), `log` the notification log by (receiver, group key).
    /// `external` are the `external_labels` the alerts carry: the idempotency keys leave them
    /// out, so both replicas of an HA pair give one group state the same key.
    pub fn tick(
        &mut self,
        alerts: &[AlertSnapshot],
        routes: &dyn Routes,
        log: &HashMap<(String, String), LogEntry>,
        external_url: &str,
        external: &Labels,
        now: i64,
    ) -> Vec<Outgoing> {
        let mut members: BTreeMap<(String, String), (RouteTarget, Vec<AlertSnapshot>)> =
            BTreeMap::new();
        for a in alerts {
            for r in routes.routes(&a.labels, now) {
                members
                    .entry((r.receiver.clone(), r.group_key.clone()))
                    .or_insert_with(|| (r.clone(), Vec::new()))
                    .1
                    .push(a.clone());
            }
        }
        // groups with no alert left are forgotten
        self.groups.retain(|k, _| members.contains_key(k));
        let mut out = Vec::new();
        for (key, (route, group_alerts)) in members {
            let firing_now = group_alerts.iter().any(|a| a.status == AlertState::Firing);
            let timing = self
                .groups
                .entry(key.clone())
                .or_insert_with(|| GroupTiming {
                    // Alertmanager starts a group only for a firing alert; a group seen first with
                    // resolved alerts only (after a restart) flushes at once so the log can settle
                    next_flush: if firing_now {
                        now + route.group_wait_ms
                    } else {
                        now
                    },
                });
            if now < timing.next_flush {
                continue;
            }
            timing.next_flush = now + route.group_interval_ms.max(1);
            if route.muted {
                continue;
            }
            let firing: BTreeSet<u64> = group_alerts
                .iter()
                .filter(|a| a.status == AlertState::Firing)
                .map(|a| a.fingerprint)
                .collect();
            let resolved: BTreeSet<u64> = group_alerts
                .iter()
                .filter(|a| a.status == AlertState::Resolved)
                .map(|a| a.fingerprint)
                .collect();
            let prev = log.get(&key);
            let decision = match route.resend_delay_ms {
                Some(resend) => decide_forward(prev, &firing, &resolved, resend, now),
                None => decide(
                    prev,
                    &firing,
                    &resolved,
                    route.send_resolved,
                    route.repeat_interval_ms,
                    now,
                ),
            };
            let Some(change) = decision else {
                continue;
            };
            // what is new since the last notification: firing alerts it did not list as firing,
            // resolved alerts it did not list as resolved
            let changed: BTreeSet<u64> = match prev {
                None => firing.union(&resolved).cloned().collect(),
                Some(p) => firing
                    .difference(&p.firing)
                    .chain(resolved.difference(&p.resolved))
                    .cloned()
                    .collect(),
            };
            let repeats = match (change, prev) {
                (Change::RepeatIntervalElapsed | Change::ResendDelayElapsed, Some(p)) => {
                    p.repeats.saturating_add(1)
                }
                _ => 0,
            };
            let keyed: Vec<KeyedAlert> = group_alerts
                .iter()
                .map(|a| KeyedAlert {
                    fingerprint: without_external(&a.labels, external)
                        .map_or(a.fingerprint, |l| l.fingerprint()),
                    resolved: a.status == AlertState::Resolved,
                    at: match a.status {
                        AlertState::Firing => a.starts_at,
                        AlertState::Resolved => a.ends_at.unwrap_or(a.starts_at),
                    },
                })
                .collect();
            let key_group = match without_external(&route.group_labels, external) {
                Some(labels) => {
                    // the route's id, then the group labels without the replica's
                    let full = crate::notify::route::label_set_text(&route.group_labels);
                    let id = route
                        .group_key
                        .strip_suffix(full.as_str())
                        .unwrap_or(&route.group_key);
                    format!("{id}{}", crate::notify::route::label_set_text(&labels))
                }
                None => route.group_key.clone(),
            };
            let idempotency_key = idempotency_key(&key.0, &key_group, &keyed, repeats);
            let mut sent: Vec<AlertSnapshot> = group_alerts;
            sent.retain(|a| match (a.status, route.digest) {
                // forwarded whole: Alertmanager merges by fingerprint
                _ if route.resend_delay_ms.is_some() => true,
                (AlertState::Resolved, _) if !route.send_resolved => false,
                (AlertState::Resolved, Digest::All | Digest::ChangesOnly) => {
                    changed.contains(&a.fingerprint)
                }
                (AlertState::Firing, Digest::ChangesOnly) => changed.contains(&a.fingerprint),
                _ => true,
            });
            sent.sort_by(|a, b| a.labels.cmp(&b.labels));
            let entry = LogEntry {
                firing: firing.clone(),
                resolved: resolved.clone(),
                at: now,
                repeats,
            };
            let notification = Notification {
                receiver: route.receiver.clone(),
                group_key: route.group_key.clone(),
                group_labels: route.group_labels.clone(),
                alerts: sent,
                external_url: external_url.to_string(),
                idempotency_key,
                change,
                changed,
            };
            // all resolved for a receiver that does not want resolutions: the notification has
            // no alerts; the caller logs it and sends nothing
            out.push(Outgoing {
                notification,
                log: entry,
            });
        }
        out
    }
}

/// `labels` without the pairs `external` added (a label of the same name and value), or None
/// when it has none of them.
fn without_external(labels: &Labels, external: &Labels) -> Option<Labels> {
    let added = |name: &str| {
        external
            .get(name)
            .is_some_and(|v| labels.get(name) == Some(v))
    };
    external
        .iter()
        .any(|(name, _)| added(name))
        .then(|| labels.filter(|name| !added(name)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::Change;

    struct ByAlertname;
    impl Routes for ByAlertname {
        fn routes(&self, labels: &Labels, _now: i64) -> Vec<RouteTarget> {
            let name = labels.get("alertname").unwrap_or_default();
            vec![RouteTarget {
                receiver: "ops".into(),
                group_key: format!("{{}}:{{alertname=\"{name}\"}}"),
                group_labels: Labels::from_pairs([("alertname", name)]),
                group_wait_ms: 30_000,
                group_interval_ms: 300_000,
                repeat_interval_ms: 4 * 3_600_000,
                send_resolved: true,
                ..Default::default()
            }]
        }
    }

    /// The fingerprint of the test alert `name` on `instance`.
    fn fp(name: &str, instance: &str) -> u64 {
        Labels::from_pairs([("alertname", name), ("instance", instance)]).fingerprint()
    }

    fn alert(name: &str, instance: &str, state: AlertState) -> AlertSnapshot {
        AlertSnapshot {
            labels: Labels::from_pairs([("alertname", name), ("instance", instance)]),
            annotations: BTreeMap::new(),
            status: state,
            starts_at: 0,
            ends_at: None,
            generator_url: String::new(),
            fingerprint: fp(name, instance),
        }
    }

    /// Runs ticks, applying each outgoing log entry as the caller would.
    fn step(
        d: &mut Dispatcher,
        log: &mut HashMap<(String, String), LogEntry>,
        alerts: &[AlertSnapshot],
        now: i64,
    ) -> Vec<Outgoing> {
        let out = d.tick(
            alerts,
            &ByAlertname,
            log,
            "http://t",
            &Labels::default(),
            now,
        );
        for o in &out {
            log.insert(
                (
                    o.notification.receiver.clone(),
                    o.notification.group_key.clone(),
                ),
                o.log.clone(),
            );
        }
        out
    }

    #[test]
    fn group_wait_then_group_interval_then_changes_only() {
        let mut d = Dispatcher::new();
        let mut log = HashMap::new();
        let a = alert("Down", "a", AlertState::Firing);
        assert!(
            step(&mut d, &mut log, std::slice::from_ref(&a), 0).is_empty(),
            "group_wait"
        );
        let out = step(&mut d, &mut log, std::slice::from_ref(&a), 30_000);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].notification.change, Change::FirstNotification);
        // a second alert joins: it waits for the group interval, then one notification
        let b = alert("Down", "b", AlertState::Firing);
        assert!(step(&mut d, &mut log, &[a.clone(), b.clone()], 60_000).is_empty());
        let out = step(&mut d, &mut log, &[a.clone(), b.clone()], 330_000);
        assert_eq!(out[0].notification.change, Change::NewAlerts);
        assert_eq!(out[0].notification.alerts.len(), 2);
        // nothing changed: silence until repeat_interval
        assert!(step(&mut d, &mut log, &[a.clone(), b.clone()], 630_000).is_empty());
        // b resolves
        let b_res = alert("Down", "b", AlertState::Resolved);
        let out = step(&mut d, &mut log, &[a.clone(), b_res.clone()], 930_000);
        assert_eq!(out[0].notification.change, Change::NewResolved);
        // everything resolves
        let a_res = alert("Down", "a", AlertState::Resolved);
        let out = step(&mut d, &mut log, &[a_res, b_res], 1_230_000);
        assert_eq!(out[0].notification.change, Change::AllResolved);
        // the group is forgotten once its alerts are gone
        assert!(step(&mut d, &mut log, &[], 1_530_000).is_empty());
        assert!(d.groups.is_empty());
    }

    #[test]
    fn a_restart_does_not_repeat_what_the_log_says_was_sent() {
        let mut log = HashMap::new();
        let a = alert("Down", "a", AlertState::Firing);
        let mut d = Dispatcher::new();
        step(&mut d, &mut log, std::slice::from_ref(&a), 0);
        assert_eq!(
            step(&mut d, &mut log, std::slice::from_ref(&a), 30_000).len(),
            1
        );
        // new dispatcher (restart) with the durable log: waits group_wait, then says nothing
        let mut d = Dispatcher::new();
        assert!(step(&mut d, &mut log, std::slice::from_ref(&a), 40_000).is_empty());
        assert!(step(&mut d, &mut log, std::slice::from_ref(&a), 70_000).is_empty());
    }
    #[test]
    fn a_muted_group_keeps_its_timing_and_sends_nothing_until_unmuted() {
        struct Muted(bool);
        impl Routes for Muted {
            fn routes(&self, l: &Labels, now: i64) -> Vec<RouteTarget> {
                let mut t = ByAlertname.routes(l, now);
                t[0].muted = self.0;
                t
            }
        }
        let mut d = Dispatcher::new();
        let log = HashMap::new();
        let a = alert("Down", "a", AlertState::Firing);
        let one = std::slice::from_ref(&a);
        assert!(
            d.tick(one, &Muted(true), &log, "", &Labels::default(), 0)
                .is_empty()
        );
        assert!(
            d.tick(one, &Muted(true), &log, "", &Labels::default(), 30_000)
                .is_empty()
        );
        // unmuted: the next flush (group_interval after the muted one) sends
        assert!(
            d.tick(one, &Muted(false), &log, "", &Labels::default(), 60_000)
                .is_empty()
        );
        assert_eq!(
            d.tick(one, &Muted(false), &log, "", &Labels::default(), 330_000)
                .len(),
            1
        );
    }

    #[test]
    fn an_alertmanager_group_forwards_everything_at_once_and_again_every_resend_delay() {
        struct Forward;
        impl Routes for Forward {
            fn routes(&self, l: &Labels, now: i64) -> Vec<RouteTarget> {
                let mut t = ByAlertname.routes(l, now);
                t[0].group_key = "{alertmanager}:ops".into();
                t[0].group_wait_ms = 0;
                t[0].group_interval_ms = 0;
                t[0].resend_delay_ms = Some(60_000);
                t
            }
        }
        let mut d = Dispatcher::new();
        let mut log = HashMap::new();
        let mut tick = |alerts: &[AlertSnapshot], now| {
            let out = d.tick(alerts, &Forward, &log, "", &Labels::default(), now);
            for o in &out {
                log.insert(("ops".into(), "{alertmanager}:ops".into()), o.log.clone());
            }
            out.into_iter()
                .map(|o| {
                    let n = o.notification;
                    let listed: Vec<(String, AlertState)> = n
                        .alerts
                        .iter()
                        .map(|a| (a.labels.get("alertname").unwrap().to_string(), a.status))
                        .collect();
                    (n.change, listed)
                })
                .collect::<Vec<_>>()
        };
        let (a, b) = (
            alert("A", "x", AlertState::Firing),
            alert("B", "x", AlertState::Firing),
        );
        use AlertState::*;
        // no group_wait: at once, both alert names in one notification
        assert_eq!(
            tick(&[a.clone(), b.clone()], 0),
            [(
                Change::FirstNotification,
                vec![("A".into(), Firing), ("B".into(), Firing)]
            )]
        );
        assert!(tick(&[a.clone(), b.clone()], 59_999).is_empty());
        assert_eq!(
            tick(&[a.clone(), b.clone()], 60_000)[0].0,
            Change::ResendDelayElapsed
        );
        // a resolution goes out at the next tick, with the alert still firing
        let b_res = alert("B", "x", Resolved);
        assert_eq!(
            tick(&[a.clone(), b_res.clone()], 61_000),
            [(
                Change::NewResolved,
                vec![("A".into(), Firing), ("B".into(), Resolved)]
            )]
        );
    }

    #[test]
    fn digest_changes_only_lists_only_what_changed() {
        struct Digested(Digest);
        impl Routes for Digested {
            fn routes(&self, l: &Labels, now: i64) -> Vec<RouteTarget> {
                let mut t = ByAlertname.routes(l, now);
                t[0].group_key = "{digest}:ops".into();
                t[0].group_wait_ms = 0;
                t[0].group_interval_ms = 0;
                t[0].digest = self.0;
                t
            }
        }
        for (mode, want) in [
            (Digest::ChangesOnly, vec!["b", "c"]),
            (Digest::All, vec!["a", "b", "c"]),
        ] {
            let mut d = Dispatcher::new();
            let mut log = HashMap::new();
            let a = alert("A", "a", AlertState::Firing);
            let b = alert("B", "b", AlertState::Firing);
            let c = alert("C", "c", AlertState::Firing);
            let r = Digested(mode);
            let out = d.tick(&[a.clone(), b.clone()], &r, &log, "", &Labels::default(), 0);
            assert_eq!(out.len(), 1, "one notification for both alert names");
            log.insert(("ops".into(), "{digest}:ops".into()), out[0].log.clone());
            assert!(
                d.tick(&[a.clone(), b.clone()], &r, &log, "", &Labels::default(), 1)
                    .is_empty()
            );
            // b resolves and c starts
            let b_res = alert("B", "b", AlertState::Resolved);
            let out = d.tick(&[a.clone(), b_res, c], &r, &log, "", &Labels::default(), 2);
            let n = &out[0].notification;
            let listed: Vec<&str> = n
                .alerts
                .iter()
                .map(|x| x.labels.get("instance").unwrap_or_default())
                .collect();
            let mut listed = listed;
            listed.sort();
            assert_eq!(listed, want, "{mode:?}");
            assert_eq!(n.changed, [fp("B", "b"), fp("C", "c")].into());
        }
    }

    /// Groups by every label, as `group_by: [...]` does: the replica's label is in the group key.
    struct ByEverything;
    impl Routes for ByEverything {
        fn routes(&self, labels: &Labels, _now: i64) -> Vec<RouteTarget> {
            vec![RouteTarget {
                receiver: "ops".into(),
                group_key: format!("{{}}:{}", crate::notify::route::label_set_text(labels)),
                group_labels: labels.clone(),
                group_wait_ms: 0,
                group_interval_ms: 60_000,
                repeat_interval_ms: 3_600_000,
                send_resolved: true,
                ..Default::default()
            }]
        }
    }

    /// Two replicas (`external_labels: {replica: a|b}`) flushing the same alert at different
    /// times: one key per group state on both, a new key for each reminder and for the
    /// resolution, though their group keys and fingerprints differ by the replica label.
    #[test]
    fn replicas_give_one_group_state_one_key_whatever_their_flush_times() {
        let replica = |r: &str, status: AlertState, ends_at: Option<i64>| {
            let labels = Labels::from_pairs([("alertname", "Down"), ("instance", "x")])
                .with_defaults(&Labels::from_pairs([("replica", r)]));
            AlertSnapshot {
                fingerprint: labels.fingerprint(),
                labels,
                annotations: BTreeMap::new(),
                status,
                starts_at: 1_000,
                ends_at,
                generator_url: String::new(),
            }
        };
        // (ticks of a, ticks of b): each replica's notifications' keys, in order
        let run = |r: &str, ticks: &[i64]| {
            let external = Labels::from_pairs([("replica", r)]);
            let mut d = Dispatcher::new();
            let mut log = HashMap::new();
            let mut out = Vec::new();
            for &now in ticks {
                let alert = if now < 5_000_000 {
                    replica(r, AlertState::Firing, None)
                } else {
                    replica(r, AlertState::Resolved, Some(5_000_000))
                };
                for o in d.tick(&[alert], &ByEverything, &log, "", &external, now) {
                    log.insert(
                        (
                            o.notification.receiver.clone(),
                            o.notification.group_key.clone(),
                        ),
                        o.log.clone(),
                    );
                    out.push((o.notification.change, o.notification.idempotency_key));
                }
            }
            out
        };
        let a = run("a", &[1_000, 61_000, 3_661_000, 3_721_000, 5_000_000]);
        let b = run("b", &[18_000, 78_000, 3_678_000, 3_738_000, 5_017_000]);
        let changes: Vec<Change> = a.iter().map(|(c, _)| *c).collect();
        assert_eq!(
            changes,
            vec![
                Change::FirstNotification,
                Change::RepeatIntervalElapsed,
                Change::AllResolved
            ]
        );
        assert_eq!(a, b, "the same keys on both replicas");
        let keys: BTreeSet<&String> = a.iter().map(|(_, k)| k).collect();
        assert_eq!(keys.len(), 3, "each state and reminder its own key: {a:?}");
        // without the external labels taken out, the replicas' keys would differ
        let mut d = Dispatcher::new();
        let unaware = d.tick(
            &[replica("b", AlertState::Firing, None)],
            &ByEverything,
            &HashMap::new(),
            "",
            &Labels::default(),
            18_000,
        );
        assert_ne!(unaware[0].notification.idempotency_key, a[0].1);
    }
}
