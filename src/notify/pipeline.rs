//! The notification pipeline as the rule manager drives it: after each group evaluation, on the
//! same blocking thread, the alerts of every rule go through inhibit → silence → route → group
//! → dedup ([`Dispatcher`]) (a silenced alert still inhibits others, as in Alertmanager); what
//! must be sent comes back with its notification-log entry in the evaluation's batch
//! ([`crate::rules::step`]), and the rule manager commits alert states, outbox rows and log in
//! one transaction. The [`Sender`](super::sender::Sender) delivers from the outbox.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::dedup::LogEntry;
use super::dispatch::{Dispatcher, Outgoing, Routes};
use super::{AlertSnapshot, AlertState};
use crate::labels::Labels;
use crate::rules::tracker::{Alert, AlertStatus};
use crate::store::{OutboxEntry, Store};

/// Decides whether a firing alert is inhibited by other firing alerts.
pub trait Inhibits {
    fn inhibited(&self, target: &Labels, sources: &[Labels]) -> bool;

    /// Whether there are rules at all (if not, nothing waits for sources to be evaluated).
    fn has_rules(&self) -> bool {
        true
    }
}

/// Inhibits nothing.
pub struct NoInhibition;

impl Inhibits for NoInhibition {
    fn inhibited(&self, _: &Labels, _: &[Labels]) -> bool {
        false
    }

    fn has_rules(&self) -> bool {
        false
    }
}

/// What the stages keep between ticks: the groups' timing and the notification log by
/// (receiver, group key). The daemon's [`Notifier`] keeps it beside the durable log in the
/// store; `tocsin test` keeps only this, in memory.
#[derive(Debug, Default)]
pub struct PipelineState {
    pub dispatcher: Dispatcher,
    pub log: HashMap<(String, String), LogEntry>,
}

/// The stages after the alert tracker, without a store: silence → inhibit → route → group →
/// dedup. What one tick needs besides the alerts and the [`PipelineState`].
pub struct Stages<'a> {
    pub routes: &'a dyn Routes,
    pub inhibitor: &'a dyn Inhibits,
    /// whether an alert's labels are silenced at a time (ms)
    pub silenced: &'a dyn Fn(&Labels, i64) -> bool,
    /// the daemon's URL, for links in notifications
    pub external_url: &'a str,
    /// `external_labels`, added to every alert before the stages see it
    pub external_labels: &'a Labels,
}

impl Stages<'_> {
    /// One tick at `now` over every alert of every rule: returns what must be sent, and records
    /// it in `state`'s notification log (the caller makes that durable, if it keeps one).
    ///
    /// `all_evaluated` says whether every rule group has been evaluated since startup. Until
    /// then, with inhibition rules configured, nothing is sent: an alert restored from the last
    /// run, or raised by the first group, could otherwise go out before the group holding its
    /// inhibiting source has run (Alertmanager #4064). Groups start waiting once it is true.
    pub fn tick(
        &self,
        alerts: &[Alert],
        state: &mut PipelineState,
        now: i64,
        all_evaluated: bool,
    ) -> Vec<Outgoing> {
        if !all_evaluated && self.inhibitor.has_rules() {
            return Vec::new();
        }
        let snapshots: Vec<AlertSnapshot> = alerts
            .iter()
            .filter_map(|a| snapshot(a, self.external_url, self.external_labels))
            .collect();
        let sources: Vec<Labels> = snapshots
            .iter()
            .filter(|s| s.status == AlertState::Firing)
            .map(|s| s.labels.clone())
            .collect();
        let candidates: Vec<AlertSnapshot> = snapshots
            .into_iter()
            .filter(|s| {
                !(self.silenced)(&s.labels, now)
                    && (s.status != AlertState::Firing
                        || !self.inhibitor.inhibited(&s.labels, &sources))
            })
            .collect();
        let out = state.dispatcher.tick(
            &candidates,
            self.routes,
            &state.log,
            self.external_url,
            self.external_labels,
            now,
        );
        for o in &out {
            let n = &o.notification;
            state
                .log
                .insert((n.receiver.clone(), n.group_key.clone()), o.log.clone());
        }
        out
    }
}

/// What one tick of the stages decided: the notifications to send and, apart, what shadow
/// (`dry_run`) alerts would send. Each carries the log entry that records it.
#[derive(Debug, Default)]
pub struct Ticked {
    pub sent: Vec<Outgoing>,
    pub shadow: Vec<Outgoing>,
}

/// One tick of the stages after the tracker, as an evaluation step runs it
/// ([`crate::rules::step`]): the daemon's [`Notifier`] (log beside the store's), or the
/// [`Recorder`](super::recorder::Recorder) of `tocsin test` and replay (log in memory).
pub trait Tick {
    /// Runs the stages at `now` over every rule's alerts: `alerts` of ordinary rules, `shadow`
    /// of `dry_run` rules.
    fn tick(&mut self, alerts: &[Alert], shadow: &[Alert], now: i64, all_evaluated: bool)
    -> Ticked;
}

impl Tick for &Notifier {
    fn tick(
        &mut self,
        alerts: &[Alert],
        shadow: &[Alert],
        now: i64,
        all_evaluated: bool,
    ) -> Ticked {
        Notifier::tick(self, alerts, shadow, now, all_evaluated)
    }
}

/// The pipeline as the rule manager drives it: [`Stages`] with the silences; its output becomes
/// outbox rows ([`Notifier::outbox_rows`]) committed with the evaluation.
pub struct Notifier {
    /// swapped as a whole by a configuration reload ([`Notifier::set_routing`])
    routing: std::sync::RwLock<RoutingParts>,
    external_url: String,
    state: Mutex<PipelineState>,
    /// groups and log of shadow notifications (dry run): in memory only, so after a restart a
    /// shadow group may be recorded again
    shadow_state: Mutex<PipelineState>,
    /// `tocsin run --dry-run`: every notification is a shadow one
    dry_run: bool,
    silences: Option<Arc<super::silence::Silences>>,
    metrics: Option<Arc<crate::selfmetrics::SelfMetrics>>,
    /// `external_labels`: added to every alert the stages see (not reloaded)
    external_labels: Labels,
}

/// What a configuration reload replaces.
struct RoutingParts {
    routes: Arc<dyn Routes + Send + Sync>,
    inhibitor: Arc<dyn Inhibits + Send + Sync>,
    /// receiver name → its outbox integration names (`receiver/webhook`, …)
    integrations: HashMap<String, Vec<String>>,
}

impl Notifier {
    /// Builds the pipeline, reading the notification log from the store (blocking).
    pub fn new(
        store: &Store,
        routes: Arc<dyn Routes + Send + Sync>,
        inhibitor: Arc<dyn Inhibits + Send + Sync>,
        integrations: HashMap<String, Vec<String>>,
        external_url: String,
    ) -> Result<Self, crate::store::StoreError> {
        let log = store
            .nflog()?
            .into_iter()
            .filter_map(|(r, g, e)| match LogEntry::from_json(&e) {
                Ok(e) => Some(((r, g), e)),
                Err(e) => {
                    // the group is then notified as if for the first time
                    tracing::warn!(receiver = r, group = g, error = %e, "unreadable notification log entry skipped");
                    None
                }
            })
            .collect();
        Ok(Notifier {
            routing: std::sync::RwLock::new(RoutingParts {
                routes,
                inhibitor,
                integrations,
            }),
            external_url,
            state: Mutex::new(PipelineState {
                dispatcher: Dispatcher::new(),
                log,
            }),
            shadow_state: Mutex::new(PipelineState::default()),
            dry_run: false,
            silences: None,
            metrics: None,
            external_labels: Labels::default(),
        })
    }

    /// Adds `external_labels` to every alert the stages see (an alert's own label wins).
    pub fn with_external_labels(mut self, labels: Labels) -> Self {
        self.external_labels = labels;
        self
    }

    /// The `external_labels` added to every alert.
    pub fn external_labels(&self) -> &Labels {
        &self.external_labels
    }

    /// Adds the silence stage.
    pub fn with_silences(mut self, silences: Arc<super::silence::Silences>) -> Self {
        self.silences = Some(silences);
        self
    }

    /// Replaces the routing tree, inhibition rules and receivers (a configuration reload). Groups
    /// keep their timing and the notification log stays: a group whose key is unchanged is not
    /// notified again for the same state.
    pub fn set_routing(
        &self,
        routes: Arc<dyn Routes + Send + Sync>,
        inhibitor: Arc<dyn Inhibits + Send + Sync>,
        integrations: HashMap<String, Vec<String>>,
    ) {
        *self.routing.write().expect("routing lock") = RoutingParts {
            routes,
            inhibitor,
            integrations,
        };
    }

    /// Shadow mode for everything (`tocsin run --dry-run`): evaluated, routed and recorded in
    /// the notification history as `shadow`, never delivered.
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Counts what is queued in self-metrics.
    pub fn with_metrics(mut self, metrics: Arc<crate::selfmetrics::SelfMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// One tick at `now` over every alert of every rule ([`Stages::tick`]): what must be sent,
    /// recorded in the pipeline's notification log in memory; the caller makes it durable with
    /// [`Notifier::outbox_rows`] in the transaction of the alert states that caused it.
    ///
    /// `shadow` holds the alerts of `dry_run` rules: they go through the same stages on their
    /// own (their groups, log and inhibition apart from the real alerts', so a rule in shadow
    /// mode changes nothing anyone receives) and come back as [`Ticked::shadow`]. With
    /// `--dry-run` every alert is a shadow one.
    ///
    /// `all_evaluated` says whether every rule group has been evaluated since startup (see
    /// [`Stages::tick`]: with inhibition rules, nothing is sent before).
    pub fn tick(
        &self,
        alerts: &[Alert],
        shadow: &[Alert],
        now: i64,
        all_evaluated: bool,
    ) -> Ticked {
        let silenced = |labels: &Labels, now: i64| {
            self.silences
                .as_ref()
                .is_some_and(|sil| sil.silenced(labels, now))
        };
        // read-held for the tick: a reload (rare) waits for it
        let routing = self.routing.read().expect("routing lock");
        let stages = Stages {
            routes: routing.routes.as_ref(),
            inhibitor: routing.inhibitor.as_ref(),
            silenced: &silenced,
            external_url: &self.external_url,
            external_labels: &self.external_labels,
        };
        let everything: Vec<Alert>;
        let (real, shadow): (&[Alert], &[Alert]) = if self.dry_run {
            everything = alerts.iter().chain(shadow).cloned().collect();
            (&[], &everything)
        } else {
            (alerts, shadow)
        };
        let mut ticked = Ticked::default();
        if !self.dry_run {
            let mut state = self.state.lock().expect("pipeline state lock");
            ticked.sent = stages.tick(real, &mut state, now, all_evaluated);
        }
        let mut state = self.shadow_state.lock().expect("shadow state lock");
        ticked.shadow = stages.tick(shadow, &mut state, now, all_evaluated);
        ticked
    }

    /// The outbox rows for what a tick sends, with their notification-log entries: one per
    /// integration of each receiver (as the routing is now). Counted and logged as queued.
    pub fn outbox_rows(&self, sent: &[Outgoing], now: i64) -> Vec<OutboxEntry> {
        let routing = self.routing.read().expect("routing lock");
        self.rows(sent, &routing.integrations, now, false)
    }

    /// The notification-history rows (`sent`, status `shadow`) for what shadow alerts would
    /// send: recorded, never queued.
    pub fn shadow_rows(&self, shadow: &[Outgoing], now: i64) -> Vec<OutboxEntry> {
        let routing = self.routing.read().expect("routing lock");
        self.rows(shadow, &routing.integrations, now, true)
    }

    /// The outbox (or shadow) rows for `out`: one per integration of each receiver.
    fn rows(
        &self,
        out: &[Outgoing],
        integrations: &HashMap<String, Vec<String>>,
        now: i64,
        shadow: bool,
    ) -> Vec<OutboxEntry> {
        let mut rows = Vec::new();
        for o in out {
            let n = &o.notification;
            let entry = if shadow {
                String::new()
            } else {
                o.log.to_json()
            };
            for integration in integrations.get(&n.receiver).cloned().unwrap_or_default() {
                rows.push(OutboxEntry {
                    receiver: integration,
                    group_key: n.group_key.clone(),
                    idempotency_key: n.idempotency_key.clone(),
                    payload: n.to_json(),
                    created: now,
                    log_entry: entry.clone(),
                    log_receiver: n.receiver.clone(),
                });
            }
            tracing::info!(
                receiver = n.receiver,
                group = n.group_key,
                reason = n.change.as_str(),
                alerts = n.alerts.len(),
                shadow,
                "{}",
                if shadow {
                    "shadow notification recorded, not sent (dry run)"
                } else {
                    "notification queued"
                }
            );
            if let Some(m) = &self.metrics {
                let labels = crate::selfmetrics::ReceiverLabels {
                    receiver: n.receiver.clone(),
                };
                if shadow {
                    m.notifications_shadow.get_or_create(&labels).inc();
                } else {
                    m.notifications_queued.get_or_create(&labels).inc();
                }
            }
        }
        rows
    }
}

/// What a receiver sees of an alert; pending alerts and alerts resolved without ever firing
/// are not notified. `starts_at` is when the alert fired, as Prometheus sends `FiredAt` (firing
/// and resolved alike): with a `for`, `active_at` is the pending time, `for` earlier, and
/// receivers read `startsAt` as the start of the incident.
///
/// `external` labels are added (an alert's own label of the same name wins), so the fingerprint
/// is that of the labels the receivers see.
pub fn snapshot(a: &Alert, external_url: &str, external: &Labels) -> Option<AlertSnapshot> {
    let (status, fired_at) = match (a.status, a.fired_at, a.resolved_at) {
        (AlertStatus::Firing, Some(fired), _) => (AlertState::Firing, fired),
        (AlertStatus::Inactive, Some(fired), Some(_)) => (AlertState::Resolved, fired),
        _ => return None,
    };
    let labels = a.labels.with_defaults(external);
    Some(AlertSnapshot {
        fingerprint: labels.fingerprint(),
        labels,
        annotations: a.annotations.clone(),
        status,
        starts_at: fired_at,
        ends_at: a.resolved_at,
        generator_url: format!("{external_url}/api/v1/alerts"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::dispatch::RouteTarget;
    use std::collections::BTreeMap;

    /// Every alert to `ops`, one group per alertname, no waiting.
    struct Immediate;
    impl Routes for Immediate {
        fn routes(&self, labels: &Labels, _now: i64) -> Vec<RouteTarget> {
            let name = labels.get("alertname").unwrap_or_default();
            vec![RouteTarget {
                receiver: "ops".into(),
                group_key: format!("{{}}:{{alertname=\"{name}\"}}"),
                group_labels: Labels::from_pairs([("alertname", name)]),
                group_interval_ms: 60_000,
                repeat_interval_ms: 3_600_000,
                send_resolved: true,
                ..Default::default()
            }]
        }
    }

    /// `Down` inhibits `Slow` (no label has to be equal).
    struct DownInhibitsSlow;
    impl Inhibits for DownInhibitsSlow {
        fn inhibited(&self, target: &Labels, sources: &[Labels]) -> bool {
            target.get("alertname") == Some("Slow")
                && sources.iter().any(|s| s.get("alertname") == Some("Down"))
        }
    }

    fn firing(name: &str) -> Alert {
        Alert {
            labels: Labels::from_pairs([("alertname".to_string(), name.to_string())]),
            annotations: BTreeMap::new(),
            status: AlertStatus::Firing,
            active_at: 0,
            fired_at: Some(0),
            resolved_at: None,
            keep_firing_since: None,
            value: 1.0,
            source_key: String::new(),
            flap_history: 0,
            flap_len: 0,
            flapping: false,
        }
    }

    fn names(out: &[Outgoing]) -> Vec<String> {
        out.iter()
            .map(|o| {
                let labels = &o.notification.group_labels;
                labels.get("alertname").unwrap_or_default().to_string()
            })
            .collect()
    }

    #[test]
    fn stages_filter_silenced_and_inhibited_alerts_then_log_what_they_send() {
        let silenced = |l: &Labels, _: i64| l.get("alertname") == Some("Muted");
        let stages = Stages {
            routes: &Immediate,
            inhibitor: &DownInhibitsSlow,
            silenced: &silenced,
            external_url: "http://t",
            external_labels: &Labels::default(),
        };
        let mut state = PipelineState::default();
        let alerts = [firing("Down"), firing("Slow"), firing("Muted")];
        // with inhibition rules, nothing before every group has been evaluated
        assert!(stages.tick(&alerts, &mut state, 0, false).is_empty());
        let out = stages.tick(&alerts, &mut state, 0, true);
        assert_eq!(names(&out), ["Down"]);
        assert_eq!(out[0].notification.external_url, "http://t");
        assert!(
            state
                .log
                .contains_key(&("ops".into(), out[0].notification.group_key.clone()))
        );
        // the log keeps the next flush from repeating it
        assert!(stages.tick(&alerts, &mut state, 60_000, true).is_empty());
    }

    #[test]
    fn without_inhibition_rules_nothing_waits_for_every_group() {
        let stages = Stages {
            routes: &Immediate,
            inhibitor: &NoInhibition,
            silenced: &|_: &Labels, _: i64| false,
            external_url: "",
            external_labels: &Labels::default(),
        };
        let mut state = PipelineState::default();
        let out = stages.tick(&[firing("Down")], &mut state, 0, false);
        assert_eq!(names(&out), ["Down"]);
    }
}

/// How the pipeline sees one alert now: where it is routed, which silences and which firing
/// alerts suppress it. What Alertmanager's `/api/v2/alerts` reports as `receivers` and
/// `status`.
#[derive(Debug, Clone, Default)]
pub struct AlertRouting {
    /// the routes it matches (receiver, group labels), in the routing tree's order
    pub targets: Vec<super::dispatch::RouteTarget>,
    /// ids of the active silences that match it
    pub silenced_by: Vec<String>,
    /// fingerprints of the firing alerts that inhibit it
    pub inhibited_by: Vec<u64>,
}

impl Notifier {
    /// The routing of each of `alerts` at `now` under the routing in force, with `sources` the
    /// firing alerts that may inhibit (pure but for the silences' and routing's read locks).
    pub fn routing_of(&self, alerts: &[&Alert], sources: &[&Alert], now: i64) -> Vec<AlertRouting> {
        let routing = self.routing.read().expect("routing lock");
        let source_labels: Vec<Labels> = sources.iter().map(|a| a.labels.clone()).collect();
        alerts
            .iter()
            .map(|a| {
                let inhibited_by = if routing.inhibitor.inhibited(&a.labels, &source_labels) {
                    sources
                        .iter()
                        .filter(|s| {
                            s.labels != a.labels
                                && routing
                                    .inhibitor
                                    .inhibited(&a.labels, std::slice::from_ref(&s.labels))
                        })
                        .map(|s| s.fingerprint())
                        .collect()
                } else {
                    Vec::new()
                };
                AlertRouting {
                    targets: routing.routes.routes(&a.labels, now),
                    silenced_by: self
                        .silences
                        .as_ref()
                        .map(|s| s.silenced_by(&a.labels, now))
                        .unwrap_or_default(),
                    inhibited_by,
                }
            })
            .collect()
    }

    /// The receivers of the routing in force, by name, sorted.
    pub fn receiver_names(&self) -> Vec<String> {
        let routing = self.routing.read().expect("routing lock");
        let mut names: Vec<String> = routing.integrations.keys().cloned().collect();
        names.sort();
        names
    }
}
