//! The notification pipeline as the rule manager drives it: after each group evaluation, on the
//! same blocking thread and before the store flush, the alerts of every rule go through inhibit →
//! silence → route → group → dedup ([`Dispatcher`]) (a silenced alert still inhibits others, as
//! in Alertmanager); what must be sent is staged in the outbox together with
//! its notification-log entry, so the flush writes alert states, outbox rows and log in one
//! transaction. The [`Sender`](super::sender::Sender) delivers from the outbox.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use super::dedup::LogEntry;
use super::dispatch::{Dispatcher, Routes};
use super::{AlertSnapshot, AlertState};
use crate::rules::tracker::{Alert, AlertStatus};
use crate::store::{OutboxEntry, Store};

/// Decides whether a firing alert is inhibited by other firing alerts.
pub trait Inhibits {
    fn inhibited(
        &self,
        target: &BTreeMap<String, String>,
        sources: &[BTreeMap<String, String>],
    ) -> bool;

    /// Whether there are rules at all (if not, nothing waits for sources to be evaluated).
    fn has_rules(&self) -> bool {
        true
    }
}

/// Inhibits nothing.
pub struct NoInhibition;

impl Inhibits for NoInhibition {
    fn inhibited(&self, _: &BTreeMap<String, String>, _: &[BTreeMap<String, String>]) -> bool {
        false
    }

    fn has_rules(&self) -> bool {
        false
    }
}

pub struct Notifier {
    routes: Arc<dyn Routes + Send + Sync>,
    inhibitor: Arc<dyn Inhibits + Send + Sync>,
    /// receiver name → its outbox integration names (`receiver/webhook`, …)
    integrations: HashMap<String, Vec<String>>,
    external_url: String,
    dispatcher: Mutex<Dispatcher>,
    log: Mutex<HashMap<(String, String), LogEntry>>,
    silences: Option<Arc<super::silence::Silences>>,
    metrics: Option<Arc<crate::selfmetrics::SelfMetrics>>,
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
            .filter_map(|(r, g, e)| LogEntry::from_json(&e).map(|e| ((r, g), e)))
            .collect();
        Ok(Notifier {
            routes,
            inhibitor,
            integrations,
            external_url,
            dispatcher: Mutex::new(Dispatcher::new()),
            log: Mutex::new(log),
            silences: None,
            metrics: None,
        })
    }

    /// Adds the silence stage.
    pub fn with_silences(mut self, silences: Arc<super::silence::Silences>) -> Self {
        self.silences = Some(silences);
        self
    }

    /// Counts what is queued in self-metrics.
    pub fn with_metrics(mut self, metrics: Arc<crate::selfmetrics::SelfMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// One tick at `now` over every alert of every rule: stages what must be sent. Returns the
    /// number of notifications staged.
    ///
    /// `all_evaluated` says whether every rule group has been evaluated since startup. Until
    /// then, with inhibition rules configured, nothing is sent: an alert restored from the last
    /// run, or raised by the first group, could otherwise go out before the group holding its
    /// inhibiting source has run (Alertmanager #4064). Groups start waiting once it is true.
    pub fn tick(&self, alerts: &[Alert], store: &Store, now: i64, all_evaluated: bool) -> usize {
        if !all_evaluated && self.inhibitor.has_rules() {
            return 0;
        }
        let snapshots: Vec<AlertSnapshot> = alerts
            .iter()
            .filter_map(|a| snapshot(a, &self.external_url))
            .collect();
        let sources: Vec<BTreeMap<String, String>> = snapshots
            .iter()
            .filter(|s| s.status == AlertState::Firing)
            .map(|s| s.labels.clone())
            .collect();
        let candidates: Vec<AlertSnapshot> = snapshots
            .into_iter()
            .filter(|s| {
                let silenced = self
                    .silences
                    .as_ref()
                    .is_some_and(|sil| sil.silenced(&s.labels, now));
                !silenced
                    && (s.status != AlertState::Firing
                        || !self.inhibitor.inhibited(&s.labels, &sources))
            })
            .collect();
        let mut log = self.log.lock().expect("nflog lock");
        let out = self.dispatcher.lock().expect("dispatcher lock").tick(
            &candidates,
            self.routes.as_ref(),
            &log,
            &self.external_url,
            now,
        );
        let mut rows = Vec::new();
        for o in &out {
            let n = &o.notification;
            let entry = o.log.to_json();
            for integration in self
                .integrations
                .get(&n.receiver)
                .cloned()
                .unwrap_or_default()
            {
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
                "notification queued"
            );
            if let Some(m) = &self.metrics {
                m.notifications_queued
                    .get_or_create(&crate::selfmetrics::ReceiverLabels {
                        receiver: n.receiver.clone(),
                    })
                    .inc();
            }
            log.insert((n.receiver.clone(), n.group_key.clone()), o.log.clone());
        }
        let staged = out.len();
        store.stage_notifications(rows);
        staged
    }
}

/// What a receiver sees of an alert; pending alerts and alerts resolved without ever firing
/// are not notified.
pub fn snapshot(a: &Alert, external_url: &str) -> Option<AlertSnapshot> {
    let status = match (a.status, a.resolved_at) {
        (AlertStatus::Firing, _) => AlertState::Firing,
        (AlertStatus::Inactive, Some(_)) => AlertState::Resolved,
        _ => return None,
    };
    Some(AlertSnapshot {
        labels: a
            .labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        annotations: a.annotations.clone(),
        status,
        starts_at: a.active_at,
        ends_at: a.resolved_at,
        generator_url: format!("{external_url}/api/v1/alerts"),
        fingerprint: format!("{:016x}", a.fingerprint()),
    })
}
