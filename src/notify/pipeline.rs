//! The notification pipeline as the rule manager drives it: after each group evaluation, on the
//! same blocking thread and before the store flush, the alerts of every rule go through inhibit →
//! route → group → dedup ([`Dispatcher`]); what must be sent is staged in the outbox together with
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
}

/// Inhibits nothing.
pub struct NoInhibition;

impl Inhibits for NoInhibition {
    fn inhibited(&self, _: &BTreeMap<String, String>, _: &[BTreeMap<String, String>]) -> bool {
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
        })
    }

    /// Adds the silence stage.
    pub fn with_silences(mut self, silences: Arc<super::silence::Silences>) -> Self {
        self.silences = Some(silences);
        self
    }

    /// One tick at `now` over every alert of every rule: stages what must be sent. Returns the
    /// number of notifications staged.
    pub fn tick(&self, alerts: &[Alert], store: &Store, now: i64) -> usize {
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
                s.status != AlertState::Firing || !self.inhibitor.inhibited(&s.labels, &sources)
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
