//! The deliver stage: drains the durable outbox. Each row is one notification for one receiver
//! integration (`receiver/webhook`, `receiver/email`). Transient failures retry with exponential
//! backoff and full jitter and survive restarts (the row stays until delivered); permanent ones
//! stop, are logged and counted, and go to the receiver's `fallback` if it has one. A circuit
//! breaker per integration (closed → open after 5 consecutive transient failures → half-open
//! after 30 s, one trial) stops hammering a dead endpoint. Rows of one integration go out in
//! order: after a failure the integration's later rows wait for the earlier one.
//!
//! Delivery is at least once: a crash between a successful send and the row's removal sends that
//! notification again, with the same idempotency key, which receivers can dedup on.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::{DeliveryError, Notification, backoff_ms};
use crate::clock::Clock;
use crate::store::{OutboxEntry, OutboxRow, Store};

/// Sends one notification through one integration.
pub type DeliverFn = Arc<
    dyn Fn(Notification) -> Pin<Box<dyn Future<Output = Result<(), DeliveryError>> + Send>>
        + Send
        + Sync,
>;

/// One integration of a receiver.
#[derive(Clone)]
pub struct Integration {
    pub deliver: DeliverFn,
    /// receiver that gets what this integration failed permanently
    pub fallback: Option<String>,
}

/// Consecutive transient failures that open an integration's breaker.
pub const BREAKER_THRESHOLD: u32 = 5;
/// How long an open breaker waits before one trial delivery.
pub const BREAKER_OPEN_MS: i64 = 30_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open { until: i64 },
    HalfOpen,
}

#[derive(Debug, Clone, Copy)]
struct Breaker {
    state: BreakerState,
    failures: u32,
}

/// What one pass did, for metrics and tests.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PassReport {
    pub delivered: Vec<(String, String)>,
    /// integrations whose delivery failed transiently and will be retried
    pub retried: Vec<String>,
    pub failed: Vec<(String, String)>,
}

pub struct Sender {
    pub store: Arc<Store>,
    pub clock: Arc<dyn Clock>,
    /// by outbox receiver name (`receiver/kind`)
    pub integrations: HashMap<String, Integration>,
    /// receiver name → its integration names, for fallbacks
    pub receivers: HashMap<String, Vec<String>>,
    breakers: HashMap<String, Breaker>,
}

impl Sender {
    pub fn new(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        integrations: HashMap<String, Integration>,
        receivers: HashMap<String, Vec<String>>,
    ) -> Self {
        Sender {
            store,
            clock,
            integrations,
            receivers,
            breakers: HashMap::new(),
        }
    }

    /// Every integration's breaker state, for self-metrics.
    pub fn breakers(&self) -> Vec<(String, BreakerState)> {
        self.integrations
            .keys()
            .map(|name| (name.clone(), self.breaker(name)))
            .collect()
    }

    pub fn breaker(&self, integration: &str) -> BreakerState {
        self.breakers
            .get(integration)
            .map(|b| b.state)
            .unwrap_or(BreakerState::Closed)
    }

    /// One pass over the due rows at the clock's `now`.
    pub async fn pass(&mut self) -> PassReport {
        let now = self.clock.now_ms();
        let store = self.store.clone();
        let due = tokio::task::spawn_blocking(move || store.outbox_due(now, 500))
            .await
            .ok()
            .and_then(|r| {
                r.map_err(|e| tracing::error!(error = %e, "cannot read the outbox"))
                    .ok()
            })
            .unwrap_or_default();
        let mut report = PassReport::default();
        let mut blocked: HashSet<String> = HashSet::new();
        for row in due {
            if blocked.contains(&row.receiver) {
                continue;
            }
            if row.next_attempt > now {
                // an earlier notification waits for its retry: later ones wait behind it
                blocked.insert(row.receiver.clone());
                continue;
            }
            let Some(integration) = self.integrations.get(&row.receiver).cloned() else {
                self.finish(
                    &row,
                    Err(DeliveryError::Permanent(format!(
                        "unknown receiver {:?}",
                        row.receiver
                    ))),
                    None,
                    now,
                    &mut report,
                )
                .await;
                continue;
            };
            let breaker = self
                .breakers
                .entry(row.receiver.clone())
                .or_insert(Breaker {
                    state: BreakerState::Closed,
                    failures: 0,
                });
            match breaker.state {
                BreakerState::Open { until } if now < until => {
                    blocked.insert(row.receiver.clone());
                    continue;
                }
                BreakerState::Open { .. } => breaker.state = BreakerState::HalfOpen,
                _ => {}
            }
            let Some(n) = Notification::from_json(&row.payload) else {
                self.finish(
                    &row,
                    Err(DeliveryError::Permanent("unreadable outbox payload".into())),
                    None,
                    now,
                    &mut report,
                )
                .await;
                continue;
            };
            let result = if n.alerts.is_empty() {
                // logged only (all resolved for a receiver without send_resolved)
                Ok(())
            } else {
                (integration.deliver)(n.clone()).await
            };
            let breaker = self
                .breakers
                .get_mut(&row.receiver)
                .expect("inserted above");
            match &result {
                Ok(()) => {
                    breaker.state = BreakerState::Closed;
                    breaker.failures = 0;
                }
                Err(DeliveryError::Transient(_)) => {
                    breaker.failures += 1;
                    if breaker.state == BreakerState::HalfOpen
                        || breaker.failures >= BREAKER_THRESHOLD
                    {
                        breaker.state = BreakerState::Open {
                            until: now + BREAKER_OPEN_MS,
                        };
                    }
                    blocked.insert(row.receiver.clone());
                }
                Err(DeliveryError::Permanent(_)) => {}
            }
            self.finish(
                &row,
                result,
                integration.fallback.as_deref().map(|f| (f, n)),
                now,
                &mut report,
            )
            .await;
        }
        report
    }

    async fn finish(
        &self,
        row: &OutboxRow,
        result: Result<(), DeliveryError>,
        fallback: Option<(&str, Notification)>,
        now: i64,
        report: &mut PassReport,
    ) {
        let store = self.store.clone();
        let id = row.id;
        match result {
            Ok(()) => {
                tracing::info!(
                    receiver = row.receiver,
                    group = row.group_key,
                    "notification delivered"
                );
                report
                    .delivered
                    .push((row.receiver.clone(), row.idempotency_key.clone()));
                let _ = tokio::task::spawn_blocking(move || store.outbox_delivered(id, now)).await;
            }
            Err(DeliveryError::Transient(e)) => {
                let seed = xxhash_rust::xxh3::xxh3_64(format!("{id}/{}", row.attempts).as_bytes());
                let next = now + backoff_ms(row.attempts, seed);
                tracing::warn!(
                    receiver = row.receiver,
                    attempt = row.attempts + 1,
                    error = e,
                    "notification failed, will retry"
                );
                report.retried.push(row.receiver.clone());
                let _ = tokio::task::spawn_blocking(move || store.outbox_retry(id, next, &e)).await;
            }
            Err(DeliveryError::Permanent(e)) => {
                tracing::error!(
                    receiver = row.receiver,
                    error = e,
                    "notification failed permanently"
                );
                report.failed.push((row.receiver.clone(), e.clone()));
                let mut rows = Vec::new();
                if let Some((fb, mut n)) = fallback {
                    n.receiver = fb.to_string();
                    // the key the fallback receiver sees (header, Message-ID) is the row's key
                    n.idempotency_key = format!("{}/fallback", row.idempotency_key);
                    for integration in self.receivers.get(fb).cloned().unwrap_or_default() {
                        rows.push(OutboxEntry {
                            receiver: integration,
                            group_key: row.group_key.clone(),
                            idempotency_key: n.idempotency_key.clone(),
                            payload: n.to_json(),
                            created: now,
                            log_entry: String::new(),
                            log_receiver: String::new(),
                        });
                    }
                }
                let _ =
                    tokio::task::spawn_blocking(move || -> Result<(), crate::store::StoreError> {
                        store.outbox_failed(id, &e, now)?;
                        for r in &rows {
                            store.outbox_insert(r)?;
                        }
                        Ok(())
                    })
                    .await;
            }
        }
    }
}
/// The sender's integrations and each receiver's integration names, as a reload replaces them.
pub type Integrations = (HashMap<String, Integration>, HashMap<String, Vec<String>>);

/// Drains the outbox: a pass as soon as an evaluation made notifications durable, and every
/// 250 ms for retries that came due, until shutdown.
pub async fn run(
    mut sender: Sender,
    metrics: Arc<crate::selfmetrics::SelfMetrics>,
    wakeup: Arc<tokio::sync::Notify>,
    mut reloaded: tokio::sync::watch::Receiver<Option<Integrations>>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    use crate::selfmetrics::{DeliveryLabels, IntegrationLabels};
    loop {
        if reloaded.has_changed().unwrap_or(false)
            && let Some((integrations, receivers)) = reloaded.borrow_and_update().clone()
        {
            sender.integrations = integrations;
            sender.receivers = receivers;
        }
        let report = sender.pass().await;
        let count = |integration: &str, result: &'static str| {
            metrics
                .notifications
                .get_or_create(&DeliveryLabels {
                    integration: integration.to_string(),
                    result,
                })
                .inc();
        };
        for (i, _) in &report.delivered {
            count(i, "delivered");
        }
        for i in &report.retried {
            count(i, "retried");
        }
        for (i, _) in &report.failed {
            count(i, "failed");
        }
        for (integration, state) in sender.breakers() {
            let v = match state {
                BreakerState::Closed => 0,
                BreakerState::Open { .. } => 1,
                BreakerState::HalfOpen => 2,
            };
            metrics
                .notification_breaker_state
                .get_or_create(&IntegrationLabels { integration })
                .set(v);
        }
        let store = sender.store.clone();
        if let Ok(Ok(depth)) = tokio::task::spawn_blocking(move || store.outbox_depth()).await {
            metrics.notification_outbox_depth.set(depth as i64);
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(250)) => {}
            _ = wakeup.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}
