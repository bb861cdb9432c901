//! The deliver stage: drains the durable outbox. Each row is one notification for one receiver
//! integration (`receiver/webhook`, `receiver/email`, `receiver/alertmanager[i]` per URL). Transient failures retry with exponential
//! backoff and full jitter and survive restarts (the row stays until delivered); permanent ones
//! stop, are logged and counted, and go to the receiver's `fallback` if it has one. A circuit
//! breaker per integration ([`Breaker`]: closed → open after 5 consecutive transient failures →
//! half-open after 30 s, one trial) stops hammering a dead endpoint.
//!
//! Integrations deliver concurrently, each in order. A pass (the loop's tick) reads the clock
//! once and the due rows once, then hands each integration's rows to a delivery task of its own
//! and does not wait for it: an integration whose task is still running (an endpoint hanging
//! until its timeout) gets nothing new in later passes until it ends, while every other
//! integration is served by those passes. Within a task the rows go out one after the other;
//! after a transient failure, an open breaker, a row still waiting for its retry or a store error
//! the task stops and the integration's later rows wait ([`Held`] names why).
//!
//! Why a task per pass and integration rather than a long-lived worker per integration fed by a
//! channel (Alertmanager's shape): it gives the same isolation (at most one task per integration,
//! never waited on by the loop) without a worker lifecycle to keep in step with reloads, which
//! add and remove integrations; the loop stays the one reader of the clock and of the due rows,
//! and a task exists only while an integration has something to send. Joining every task before
//! the next pass would be simpler, but then a hanging endpoint would hold back every pass, and
//! with it every other integration's next notification, until its timeout.
//!
//! The due rows include the notifications of evaluations whose commit failed (a full disk),
//! which wait in the store's memory (negative ids, [`Store::outbox_due`]): they go out like the
//! others, with the same idempotency keys, and their outcomes are kept with them until the store
//! writes them (a delivered one as delivered, so it is not sent again once the disk has room).
//!
//! Delivery is at least once: the row is removed (or marked failed, or rescheduled) only after
//! the outcome, so a crash between a successful send and the row's removal sends that
//! notification again, with the same idempotency key, which receivers can dedup on. A store error
//! after a delivery is logged and counted (`tocsin_notification_store_errors_total`) and leaves
//! the row queued, so it is sent again.
//!
//! Shutdown is checked before each attempt: after it no attempt starts, an attempt in flight
//! finishes (bounded by the integration's timeout) and its outcome is recorded, and what is left
//! stays queued for the next start.
//!
//! Known limit: every outcome of a pass is stamped with the pass's `now`, so a retry's backoff
//! and an opened breaker's 30 s count from the start of the pass, not from the end of a slow
//! attempt (an endpoint timing out after 30 s gets its half-open trial on the next pass).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::{Id, JoinError, JoinSet};

use super::{DeliveryError, Notification, backoff_ms};
use crate::clock::Clock;
use crate::store::{OutboxEntry, OutboxRow, Store, StoreError};

/// Sends one notification through one integration, at the times [`Attempt`] gives.
pub type DeliverFn = Arc<
    dyn Fn(Notification, Attempt) -> Pin<Box<dyn Future<Output = Result<(), DeliveryError>> + Send>>
        + Send
        + Sync,
>;

/// The times of one delivery attempt, as the sender's pass knows them (the integration never
/// reads the clock): what an integration whose payload depends on time needs (the
/// `alertmanager` receiver's `endsAt`, and leaving out what went stale while the row waited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// the pass's time (ms since the epoch)
    pub now: i64,
    /// when the row was queued (ms): the evaluation that decided to send it
    pub queued_at: i64,
}

/// One integration of a receiver.
#[derive(Clone)]
pub struct Integration {
    pub deliver: DeliverFn,
    /// receiver that gets what this integration failed permanently
    pub fallback: Option<String>,
}

/// The sender's integrations and each receiver's integration names, as a reload replaces them.
pub type Integrations = (HashMap<String, Integration>, HashMap<String, Vec<String>>);

/// Consecutive transient failures that open an integration's breaker.
pub const BREAKER_THRESHOLD: u32 = 5;
/// How long an open breaker waits before one trial delivery.
pub const BREAKER_OPEN_MS: i64 = 30_000;
/// Most rows of one integration read in one pass: one integration's backlog cannot fill a pass.
const ROWS_PER_INTEGRATION: usize = 500;
/// How often the loop looks for retries that came due when nothing wakes it, while rows wait.
const POLL: std::time::Duration = std::time::Duration::from_millis(250);
/// How often it looks when the outbox is empty and no delivery runs: only an evaluation that
/// queued rows (its `wakeup`) or a delivery task ending can give it work then. Measured beside
/// vmalert at 100 rules, the 250 ms passes (two SQLite reads on blocking threads each) were
/// ~20% of an otherwise idle daemon's CPU under perf.
const IDLE_POLL: std::time::Duration = std::time::Duration::from_secs(5);

/// A breaker's state at some `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    /// no attempt before `until` (ms since the epoch)
    Open {
        until: i64,
    },
    /// the open time has passed: the next attempt is the trial
    HalfOpen,
}

/// One integration's circuit breaker. Pure: the time is always an argument.
///
/// A transient failure counts; [`BREAKER_THRESHOLD`] in a row open it for [`BREAKER_OPEN_MS`].
/// After that one trial goes out (half-open): success closes it, a transient failure opens it
/// again. A permanent failure leaves it as it is: the endpoint answered, it is the request it
/// refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Breaker {
    /// consecutive transient failures since the last success
    failures: u32,
    /// set when it opened: until then nothing is attempted, after it the next attempt is a trial
    open_until: Option<i64>,
}

impl Breaker {
    pub fn state(&self, now: i64) -> BreakerState {
        match self.open_until {
            None => BreakerState::Closed,
            Some(until) if now < until => BreakerState::Open { until },
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// Whether an attempt may start at `now` (closed, or half-open for the trial).
    pub fn allows(&self, now: i64) -> bool {
        !matches!(self.state(now), BreakerState::Open { .. })
    }

    /// A delivery succeeded: closed, count reset.
    pub fn on_success(&mut self) {
        *self = Breaker::default();
    }

    /// A delivery failed transiently at `now`: counted, and opened at the threshold or when it
    /// was the half-open trial.
    pub fn on_failure(&mut self, now: i64) {
        self.failures = self.failures.saturating_add(1);
        if self.open_until.is_some() || self.failures >= BREAKER_THRESHOLD {
            self.open_until = Some(now + BREAKER_OPEN_MS);
        }
    }
}

/// Why an integration's remaining rows were left queued in a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// the next row waits for its retry time: later rows keep their order behind it
    WaitingForRetry,
    /// the delivery just attempted failed transiently and was rescheduled
    FailedTransiently,
    /// the breaker is open
    BreakerOpen,
    /// shutdown was requested: no new attempt starts
    ShuttingDown,
    /// the outcome of the last row could not be recorded: it stays queued and goes out again
    StoreError,
}

impl std::fmt::Display for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Held::WaitingForRetry => "waiting for retry",
            Held::FailedTransiently => "failed transiently",
            Held::BreakerOpen => "breaker open",
            Held::ShuttingDown => "shutting down",
            Held::StoreError => "store error",
        })
    }
}

/// The store call that failed, named in logs and as the `operation` label of
/// `tocsin_notification_store_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    /// reading the due rows at the start of a pass
    ReadOutbox,
    /// moving a delivered row to the history
    MarkDelivered,
    /// rescheduling a row after a transient failure
    ScheduleRetry,
    /// marking a row failed after a permanent failure
    MarkFailed,
    /// queueing a permanently failed notification for the fallback receiver
    QueueFallback,
    /// counting the outbox for the depth self-metric
    OutboxDepth,
}

impl StoreOp {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreOp::ReadOutbox => "read_outbox",
            StoreOp::MarkDelivered => "mark_delivered",
            StoreOp::ScheduleRetry => "schedule_retry",
            StoreOp::MarkFailed => "mark_failed",
            StoreOp::QueueFallback => "queue_fallback",
            StoreOp::OutboxDepth => "outbox_depth",
        }
    }
}

impl std::fmt::Display for StoreOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A store call of the sender that did not complete.
#[derive(Debug, thiserror::Error)]
pub enum SenderStoreError {
    /// SQLite refused the read or write (disk full, I/O error, a damaged file).
    #[error("{op}: {source}")]
    Store {
        op: StoreOp,
        #[source]
        source: StoreError,
    },
    /// The blocking task running the call panicked (a bug) or was cancelled (runtime shutdown).
    #[error("{op}: store task ended: {source}")]
    Task {
        op: StoreOp,
        #[source]
        source: JoinError,
    },
}

impl SenderStoreError {
    pub fn op(&self) -> StoreOp {
        match self {
            SenderStoreError::Store { op, .. } | SenderStoreError::Task { op, .. } => *op,
        }
    }
}

/// What passes did, for metrics and tests. Within an integration in delivery order; across
/// integrations in the order their tasks ended.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PassReport {
    /// (integration, idempotency key)
    pub delivered: Vec<(String, String)>,
    /// integrations whose delivery failed transiently and will be retried
    pub retried: Vec<String>,
    /// (integration, error)
    pub failed: Vec<(String, String)>,
    /// integrations that left rows queued, and why
    pub held: Vec<(String, Held)>,
    /// store calls that failed (each one logged)
    pub store_errors: Vec<StoreOp>,
    /// (integration, seconds the attempt took, seconds from queueing to delivery when delivered)
    pub attempts: Vec<(String, f64, Option<f64>)>,
}

impl PassReport {
    fn merge(&mut self, other: PassReport) {
        self.delivered.extend(other.delivered);
        self.retried.extend(other.retried);
        self.failed.extend(other.failed);
        self.held.extend(other.held);
        self.store_errors.extend(other.store_errors);
        self.attempts.extend(other.attempts);
    }
}

pub struct Sender {
    pub store: Arc<Store>,
    /// read once per pass by [`Sender::pass`] and [`run`], nowhere below
    pub clock: Arc<dyn Clock>,
    /// by outbox receiver name (`receiver/kind`)
    pub integrations: HashMap<String, Integration>,
    /// receiver name → its integration names, for fallbacks
    pub receivers: HashMap<String, Vec<String>>,
    /// by integration; an integration with a task running has its breaker in that task, and the
    /// copy here is the one it started with until the task hands it back
    breakers: HashMap<String, Breaker>,
    /// the delivery tasks, at most one per integration
    in_flight: JoinSet<BatchDone>,
    /// which integration each running task serves: those get no rows until it ends, so a row is
    /// never in two tasks (and a panicked task still frees its integration)
    busy: HashMap<Id, String>,
    /// checked by every task before each attempt; [`run`] sets its own
    shutdown: watch::Receiver<bool>,
    /// the `now` of the latest pass: breaker states are reported as of it
    last_now: i64,
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
            in_flight: JoinSet::new(),
            busy: HashMap::new(),
            // the sending half is dropped: the value stays false, no shutdown
            shutdown: watch::channel(false).1,
            last_now: i64::MIN,
        }
    }

    /// Every integration's breaker state as of the latest pass, for self-metrics.
    pub fn breakers(&self) -> Vec<(String, BreakerState)> {
        self.integrations
            .keys()
            .map(|name| (name.clone(), self.breaker(name)))
            .collect()
    }

    /// An integration's breaker state as of the latest pass.
    pub fn breaker(&self, integration: &str) -> BreakerState {
        self.breakers
            .get(integration)
            .copied()
            .unwrap_or_default()
            .state(self.last_now)
    }

    /// One pass at the clock's `now`, waiting for every delivery it started (and any still
    /// running from before): what a test or a one-shot drain wants. The daemon's [`run`] does
    /// not wait.
    pub async fn pass(&mut self) -> PassReport {
        let now = self.clock.now_ms();
        let mut report = self.start_pass(now).await;
        report.merge(self.wait_all().await);
        report
    }

    /// Collects the tasks that ended, reads the due rows and starts a task for each integration
    /// with rows and no task running. Returns what the ended tasks did.
    async fn start_pass(&mut self, now: i64) -> PassReport {
        self.last_now = now;
        // first, so that an integration whose task ended (its outcomes written) is free again
        // before the rows are read
        let mut report = PassReport::default();
        while let Some(done) = self.in_flight.try_join_next_with_id() {
            report.merge(self.absorb(done));
        }
        let store = self.store.clone();
        let due = match blocking(StoreOp::ReadOutbox, move || {
            store.outbox_due(now, ROWS_PER_INTEGRATION)
        })
        .await
        {
            Ok(due) => due,
            Err(e) => {
                tracing::error!(operation = %e.op(), error = %e, "cannot read the outbox");
                report.store_errors.push(e.op());
                return report;
            }
        };
        let mut batches: Vec<(String, Vec<OutboxRow>)> = Vec::new();
        for row in due {
            match batches.iter_mut().find(|(name, _)| *name == row.receiver) {
                Some((_, rows)) => rows.push(row),
                None => batches.push((row.receiver.clone(), vec![row])),
            }
        }
        for (name, rows) in batches {
            if self.busy.values().any(|b| *b == name) {
                continue;
            }
            let integration = self.integrations.get(&name).cloned();
            let fallback = integration
                .as_ref()
                .and_then(|i| i.fallback.clone())
                .map(|receiver| {
                    let targets = self.receivers.get(&receiver).cloned().unwrap_or_default();
                    (receiver, targets)
                });
            let batch = Batch {
                store: self.store.clone(),
                breaker: self.breakers.get(&name).copied().unwrap_or_default(),
                integration_name: name.clone(),
                integration,
                fallback,
                rows,
                now,
                shutdown: self.shutdown.clone(),
            };
            let handle = self.in_flight.spawn(batch.deliver());
            self.busy.insert(handle.id(), name);
        }
        report
    }

    /// Waits for the next delivery task to end; None when none is running. Cancel-safe.
    async fn next_finished(&mut self) -> Option<PassReport> {
        let done = self.in_flight.join_next_with_id().await?;
        Some(self.absorb(done))
    }

    /// Waits for every running delivery task.
    async fn wait_all(&mut self) -> PassReport {
        let mut report = PassReport::default();
        while let Some(done) = self.next_finished().await {
            report.merge(done);
        }
        report
    }

    /// Takes back an ended task's breaker and frees its integration.
    fn absorb(&mut self, done: Result<(Id, BatchDone), JoinError>) -> PassReport {
        match done {
            Ok((id, done)) => {
                self.busy.remove(&id);
                if self.integrations.contains_key(&done.integration) {
                    self.breakers.insert(done.integration, done.breaker);
                }
                done.report
            }
            Err(e) => {
                // the rows it held stay queued (no outcome was written for the row it was on)
                let integration = self.busy.remove(&e.id()).unwrap_or_default();
                tracing::error!(integration, error = %e, "delivery task ended abnormally");
                PassReport::default()
            }
        }
    }
}

/// One integration's due rows in one pass, with everything its task needs.
struct Batch {
    store: Arc<Store>,
    integration_name: String,
    /// None: the rows name an integration the configuration no longer has
    integration: Option<Integration>,
    /// the fallback receiver and its integrations
    fallback: Option<(String, Vec<String>)>,
    rows: Vec<OutboxRow>,
    breaker: Breaker,
    now: i64,
    shutdown: watch::Receiver<bool>,
}

/// What a delivery task hands back.
struct BatchDone {
    integration: String,
    breaker: Breaker,
    report: PassReport,
}

impl Batch {
    /// Delivers the rows in order until one holds the rest back.
    async fn deliver(mut self) -> BatchDone {
        let mut report = PassReport::default();
        let now = self.now;
        let rows = std::mem::take(&mut self.rows);
        for row in &rows {
            let held = if row.next_attempt > now {
                Some(Held::WaitingForRetry)
            } else if *self.shutdown.borrow() {
                Some(Held::ShuttingDown)
            } else {
                self.deliver_row(row, &mut report).await
            };
            if let Some(held) = held {
                tracing::debug!(integration = self.integration_name, reason = %held, "later notifications wait");
                report.held.push((self.integration_name.clone(), held));
                break;
            }
        }
        BatchDone {
            integration: self.integration_name,
            breaker: self.breaker,
            report,
        }
    }

    /// One row: attempt (unless the breaker is open), record the outcome. Some when the
    /// integration's later rows must wait.
    async fn deliver_row(&mut self, row: &OutboxRow, report: &mut PassReport) -> Option<Held> {
        let now = self.now;
        let Some(integration) = self.integration.clone() else {
            let e = DeliveryError::Permanent(format!("unknown receiver {:?}", row.receiver));
            return self.finish(row, Err(e), None, report).await;
        };
        if !self.breaker.allows(now) {
            return Some(Held::BreakerOpen);
        }
        let n = match Notification::from_json(&row.payload) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(
                    integration = row.receiver,
                    group = row.group_key,
                    idempotency_key = row.idempotency_key,
                    error = %e,
                    "unreadable outbox payload"
                );
                let e = DeliveryError::Permanent(format!("unreadable outbox payload: {e}"));
                return self.finish(row, Err(e), None, report).await;
            }
        };
        let result = if n.alerts.is_empty() {
            // logged only (all resolved for a receiver without send_resolved)
            Ok(())
        } else {
            let attempt = Attempt {
                now,
                queued_at: row.created,
            };
            // a duration for the latency metrics, not a time any decision depends on
            let started = std::time::Instant::now();
            let result = (integration.deliver)(n.clone(), attempt).await;
            let took = started.elapsed().as_secs_f64();
            let delay = result
                .is_ok()
                .then(|| (now - row.created).max(0) as f64 / 1000.0 + took);
            report.attempts.push((row.receiver.clone(), took, delay));
            result
        };
        match &result {
            Ok(()) => self.breaker.on_success(),
            Err(DeliveryError::Transient(_)) => self.breaker.on_failure(now),
            Err(DeliveryError::Permanent(_)) => {}
        }
        self.finish(row, result, Some(n), report).await
    }

    /// Records a row's outcome in the store and the report.
    async fn finish(
        &self,
        row: &OutboxRow,
        result: Result<(), DeliveryError>,
        notification: Option<Notification>,
        report: &mut PassReport,
    ) -> Option<Held> {
        let (now, id, store) = (self.now, row.id, self.store.clone());
        let (written, held) = match result {
            Ok(()) => {
                tracing::info!(
                    integration = row.receiver,
                    group = row.group_key,
                    "notification delivered"
                );
                report
                    .delivered
                    .push((row.receiver.clone(), row.idempotency_key.clone()));
                let written = blocking(StoreOp::MarkDelivered, move || {
                    store.outbox_delivered(id, now)
                })
                .await;
                (written, None)
            }
            Err(DeliveryError::Transient(e)) => {
                let seed = xxhash_rust::xxh3::xxh3_64(format!("{id}/{}", row.attempts).as_bytes());
                let next = now + backoff_ms(row.attempts, seed);
                tracing::warn!(
                    integration = row.receiver,
                    attempt = row.attempts + 1,
                    error = e,
                    "notification failed, will retry"
                );
                report.retried.push(row.receiver.clone());
                let written = blocking(StoreOp::ScheduleRetry, move || {
                    store.outbox_retry(id, next, &e)
                })
                .await;
                (written, Some(Held::FailedTransiently))
            }
            Err(DeliveryError::Permanent(e)) => {
                tracing::error!(
                    integration = row.receiver,
                    error = e,
                    "notification failed permanently"
                );
                report.failed.push((row.receiver.clone(), e.clone()));
                let written = blocking(StoreOp::MarkFailed, move || {
                    store.outbox_failed(id, &e, now)
                })
                .await;
                let written = match (written, notification) {
                    (Ok(()), Some(n)) => self.queue_fallback(row, n).await,
                    (written, _) => written,
                };
                (written, None)
            }
        };
        match written {
            Ok(()) => held,
            Err(e) => {
                tracing::error!(
                    integration = row.receiver,
                    row = id,
                    operation = %e.op(),
                    error = %e,
                    "cannot record a delivery outcome, the notification stays queued"
                );
                report.store_errors.push(e.op());
                Some(Held::StoreError)
            }
        }
    }

    /// Queues `n` for every integration of the fallback receiver, if there is one.
    async fn queue_fallback(
        &self,
        row: &OutboxRow,
        mut n: Notification,
    ) -> Result<(), SenderStoreError> {
        let Some((receiver, targets)) = &self.fallback else {
            return Ok(());
        };
        n.receiver = receiver.clone();
        // the key the fallback receiver sees (header, Message-ID) is the row's key
        n.idempotency_key = format!("{}/fallback", row.idempotency_key);
        let rows: Vec<OutboxEntry> = targets
            .iter()
            .map(|integration| OutboxEntry {
                receiver: integration.clone(),
                group_key: row.group_key.clone(),
                idempotency_key: n.idempotency_key.clone(),
                payload: n.to_json(),
                created: self.now,
                log_entry: String::new(),
                log_receiver: String::new(),
            })
            .collect();
        let store = self.store.clone();
        blocking(StoreOp::QueueFallback, move || {
            rows.iter().try_for_each(|r| store.outbox_insert(r))
        })
        .await
    }
}

/// Runs a store call on a blocking thread (SQLite blocks), naming it in the error.
async fn blocking<T: Send + 'static>(
    op: StoreOp,
    call: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, SenderStoreError> {
    match tokio::task::spawn_blocking(call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(SenderStoreError::Store { op, source }),
        Err(source) => Err(SenderStoreError::Task { op, source }),
    }
}

/// Drains the outbox: a pass as soon as an evaluation made notifications durable, when a
/// delivery task ends, and every 250 ms for retries that came due while rows wait (every 5 s
/// when none do), until shutdown. Then no
/// attempt starts; the ones in flight finish (bounded by their timeouts) and are recorded.
pub async fn run(
    mut sender: Sender,
    metrics: Arc<crate::selfmetrics::SelfMetrics>,
    wakeup: Arc<tokio::sync::Notify>,
    mut reloaded: watch::Receiver<Option<Integrations>>,
    mut shutdown: watch::Receiver<bool>,
) {
    use crate::selfmetrics::IntegrationLabels;
    sender.shutdown = shutdown.clone();
    while !*shutdown.borrow() {
        if reloaded.has_changed().unwrap_or(false)
            && let Some((integrations, receivers)) = reloaded.borrow_and_update().clone()
        {
            sender.integrations = integrations;
            sender.receivers = receivers;
        }
        let now = sender.clock.now_ms();
        let report = sender.start_pass(now).await;
        record(&metrics, &report);
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
        // rows waiting (or an unknown depth) keep the quarter-second passes for their retries
        let mut waiting = true;
        match blocking(StoreOp::OutboxDepth, move || store.outbox_summary()).await {
            Ok((depth, oldest)) => {
                waiting = depth > 0;
                metrics.notification_outbox_depth.set(depth as i64);
                let age = oldest.map_or(0.0, |c| (now - c).max(0) as f64 / 1000.0);
                metrics.notification_outbox_oldest_age_seconds.set(age);
            }
            Err(e) => {
                tracing::error!(operation = %e.op(), error = %e, "cannot count the outbox");
                record(
                    &metrics,
                    &PassReport {
                        store_errors: vec![e.op()],
                        ..Default::default()
                    },
                );
            }
        }
        let pause = if waiting || !sender.in_flight.is_empty() {
            POLL
        } else {
            IDLE_POLL
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = wakeup.notified() => {}
            Some(done) = sender.next_finished() => record(&metrics, &done),
            _ = shutdown.changed() => break,
        }
    }
    let rest = sender.wait_all().await;
    record(&metrics, &rest);
}

/// Counts a report's deliveries and store errors in the self-metrics.
fn record(metrics: &crate::selfmetrics::SelfMetrics, report: &PassReport) {
    use crate::selfmetrics::{DeliveryLabels, StoreOpLabels};
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
    for (integration, took, delay) in &report.attempts {
        let labels = crate::selfmetrics::IntegrationLabels {
            integration: integration.clone(),
        };
        metrics
            .notification_latency_seconds
            .get_or_create(&labels)
            .observe(*took);
        if let Some(delay) = delay {
            metrics
                .notification_delivery_delay_seconds
                .get_or_create(&labels)
                .observe(*delay);
        }
    }
    for i in &report.retried {
        count(i, "retried");
    }
    for (i, _) in &report.failed {
        count(i, "failed");
    }
    for op in &report.store_errors {
        metrics
            .notification_store_errors
            .get_or_create(&StoreOpLabels {
                operation: op.as_str(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy)]
    enum Event {
        Success,
        Failure(i64),
    }

    /// Each case: events applied to a new breaker, then the state and `allows` at `now`.
    #[test]
    fn breaker_opens_waits_and_takes_one_trial() {
        use BreakerState::*;
        use Event::*;
        let f = |t| Failure(t);
        let cases: &[(&str, Vec<Event>, i64, BreakerState, bool)] = &[
            // a new breaker lets everything through
            ("new", vec![], 0, Closed, true),
            // failures below the threshold keep it closed
            (
                "four failures",
                vec![f(0), f(1), f(2), f(3)],
                4,
                Closed,
                true,
            ),
            // the fifth consecutive failure opens it for 30 s from that failure
            (
                "fifth failure",
                vec![f(0), f(1), f(2), f(3), f(4)],
                5,
                Open { until: 30_004 },
                false,
            ),
            // still open the millisecond before the time is up
            (
                "open until",
                vec![f(0), f(0), f(0), f(0), f(0)],
                29_999,
                Open { until: 30_000 },
                false,
            ),
            // when the time is up the next attempt is the trial
            (
                "half-open",
                vec![f(0), f(0), f(0), f(0), f(0)],
                30_000,
                HalfOpen,
                true,
            ),
            // a failed trial opens it again, for 30 s from the trial
            (
                "trial fails",
                vec![f(0), f(0), f(0), f(0), f(0), f(30_000)],
                30_001,
                Open { until: 60_000 },
                false,
            ),
            // a successful trial closes it
            (
                "trial succeeds",
                vec![f(0), f(0), f(0), f(0), f(0), Success],
                30_001,
                Closed,
                true,
            ),
            // a success resets the count: four more failures do not open it
            (
                "success resets",
                vec![f(0), f(0), f(0), f(0), Success, f(1), f(1), f(1), f(1)],
                2,
                Closed,
                true,
            ),
            // after closing, one failure alone does not reopen it (the count starts again)
            (
                "closed after trial",
                vec![f(0), f(0), f(0), f(0), f(0), Success, f(40_000)],
                40_001,
                Closed,
                true,
            ),
        ];
        for (name, events, now, state, allows) in cases {
            let mut b = Breaker::default();
            for e in events {
                match e {
                    Success => b.on_success(),
                    Failure(t) => b.on_failure(*t),
                }
            }
            assert_eq!(b.state(*now), *state, "{name}");
            assert_eq!(b.allows(*now), *allows, "{name}");
        }
    }
}
