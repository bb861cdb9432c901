//! tocsin's own metrics, served at `/metrics` in Prometheus text format (prometheus-client).
//! Label values are bounded: target names come from the config, results from a fixed set.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScrapeLabels {
    pub target: String,
    /// `metrics`, `health`, or a probe kind (`tcp`, `tls`, `dns`, `smtp`)
    pub kind: &'static str,
    /// `success` or `failure`; a health probe succeeds when the endpoint answered healthy
    /// (`probe_success`)
    pub result: &'static str,
}

/// Every self-metric, registered once at startup.
pub struct SelfMetrics {
    registry: Registry,
    pub scrapes: Family<ScrapeLabels, Counter>,
    pub samples_ingested: Counter,
    /// pushed bodies and heartbeat check-ins by kind and result
    pub pushes: Family<PushLabels, Counter>,
    pub samples_out_of_order: Counter,
    pub samples_duplicate: Counter,
    pub store_flush_seconds: Histogram,
    pub store_flush_failures: Counter,
    pub store_series: Gauge,
    pub store_head_chunk_bytes: Gauge,
    pub store_disk_bytes: Gauge,
    /// flushes and evaluation commits that failed (disk full, I/O error, read-only file), as
    /// the store counts them ([`SelfMetrics::observe_store`])
    pub store_write_failures: Counter,
    /// when a flush or commit last succeeded (0 before the first)
    pub store_last_successful_write: Gauge<f64, AtomicU64>,
    /// rules loaded from `rule_files`, tocsin's own (`tocsin:self`) not counted
    pub rules_loaded: Gauge,
    pub start_time_seconds: Gauge<f64, AtomicU64>,
    /// 1 when the last rule reload succeeded (or none happened), 0 after a failed one
    pub rule_reload_success: Gauge,
    pub rule_group_last_duration_seconds: Family<GroupLabels, Gauge<f64, AtomicU64>>,
    /// every evaluation's duration, by group (Prometheus has it as a summary over all groups)
    pub rule_group_duration_seconds: Family<GroupLabels, Histogram, fn() -> Histogram>,
    pub rule_group_iterations_missed: Family<GroupLabels, Counter>,
    pub rule_evaluation_failures: Family<GroupLabels, Counter>,
    /// 1 when the datasource's last query was answered (a query error included), 0 when it
    /// was unavailable (unreachable, a timeout, a 5xx answer); absent before its first query
    pub datasource_up: Family<DatasourceLabels, Gauge>,
    /// queries sent to each datasource, by result (`ok`, `query_error`, `unavailable`)
    pub datasource_queries: Family<DatasourceResultLabels, Counter>,
    /// remote write's counters and gauges, by `remote` (`crate::remotewrite`)
    pub remote_write: RemoteWriteMetrics,
    /// evaluations of a group stopped at its budget (its interval); the rules not finished
    /// count as failures too
    pub rule_group_evaluations_cancelled: Family<GroupLabels, Counter>,
    /// panics caught in blocking work (scrape ingest, health probe, store flush, rule group
    /// evaluation); the endpoint or group goes on at its next tick
    pub task_panics: Family<TaskLabels, Counter>,
    pub alerts: Family<StateLabels, Gauge>,
    /// notifications queued by the pipeline, by receiver
    pub notifications_queued: Family<ReceiverLabels, Counter>,
    /// shadow notifications recorded (dry run), by receiver
    pub notifications_shadow: Family<ReceiverLabels, Counter>,
    /// delivery attempts by integration (`ops/webhook`) and result
    pub notifications: Family<DeliveryLabels, Counter>,
    pub notification_outbox_depth: Gauge,
    /// time one delivery attempt took (a request, an SMTP transaction), by integration, delivered
    /// or not: Alertmanager's `alertmanager_notification_latency_seconds`
    pub notification_latency_seconds: Family<IntegrationLabels, Histogram, fn() -> Histogram>,
    /// from the moment a notification was queued to its delivery, retries and waits included
    pub notification_delivery_delay_seconds:
        Family<IntegrationLabels, Histogram, fn() -> Histogram>,
    /// age of the oldest notification waiting for delivery, 0 when none waits
    pub notification_outbox_oldest_age_seconds: Gauge<f64, AtomicU64>,
    /// 0 closed, 1 open, 2 half-open
    pub notification_breaker_state: Family<IntegrationLabels, Gauge>,
    /// store calls of the sender that failed, by operation: each leaves a notification queued
    /// (sent again later) or a metric stale
    pub notification_store_errors: Family<StoreOpLabels, Counter>,
    /// service discovery refreshes that failed (the last good targets stay), by mechanism
    pub sd_refresh_failures: Family<MechanismLabels, Counter>,
    /// targets each discovery source gives now (its last good refresh), by mechanism
    pub sd_discovered_targets: Family<MechanismLabels, Gauge>,
}

/// A service discovery mechanism: `file`, `http` or `dns`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MechanismLabels {
    pub mechanism: &'static str,
}

/// The kind of loop a caught panic happened in: `scrape`, `probe`, `flush` or `rule_group`
/// (the endpoint or group is named in the log line, not in a label, to bound cardinality).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabels {
    pub task: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReceiverLabels {
    pub receiver: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IntegrationLabels {
    pub integration: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub integration: String,
    /// `delivered`, `retried` (transient failure) or `failed` (permanent failure)
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreOpLabels {
    /// `read_outbox`, `mark_delivered`, `schedule_retry`, `mark_failed`, `queue_fallback` or
    /// `outbox_depth` (`notify::sender::StoreOp`)
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: &'static str,
    /// the git commit (`tocsin --version`), `unknown` when built without `.git`
    pub revision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PushLabels {
    /// `import` (`POST /api/v1/import/prometheus`) or `heartbeat` (`POST /api/v1/heartbeat/{name}`)
    pub kind: &'static str,
    /// `stored`, or `refused` (a bad body, a limit, an unknown heartbeat name)
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DatasourceLabels {
    pub datasource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DatasourceResultLabels {
    pub datasource: String,
    /// `ok`, `query_error` or `unavailable`
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RemoteLabels {
    pub remote: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RemoteReasonLabels {
    pub remote: String,
    /// failed: `http_5xx`, `http_429`, `timeout`, `network` (each retried), `http_4xx` (not);
    /// dropped: `rejected` (a 4xx answer), `backlog` (over `max_pending_samples`),
    /// `unknown_series`
    pub reason: &'static str,
}

/// Remote write's self-metrics (`tocsin_remote_write_*`), each labelled by the entry's name.
#[derive(Default)]
pub struct RemoteWriteMetrics {
    /// samples queued and not yet sent (nor dropped)
    pub samples_pending: Family<RemoteLabels, Gauge>,
    /// samples the receiver accepted
    pub samples_sent: Family<RemoteLabels, Counter>,
    /// samples of requests that failed, by reason; a retried sample counts at each failure
    pub samples_failed: Family<RemoteReasonLabels, Counter>,
    /// samples given up on, by reason
    pub samples_dropped: Family<RemoteReasonLabels, Counter>,
    /// newest queued sample time minus newest sent sample time (0 when nothing waits)
    pub lag_seconds: Family<RemoteLabels, Gauge<f64, AtomicU64>>,
}

impl RemoteWriteMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "remote_write_samples_pending",
            "Samples queued for remote write and not yet sent",
            self.samples_pending.clone(),
        );
        registry.register(
            "remote_write_samples_sent",
            "Samples the remote write receiver accepted",
            self.samples_sent.clone(),
        );
        registry.register(
            "remote_write_samples_failed",
            "Samples of remote write requests that failed, by reason (retried ones count at each failure)",
            self.samples_failed.clone(),
        );
        registry.register(
            "remote_write_samples_dropped",
            "Samples remote write gave up on, by reason",
            self.samples_dropped.clone(),
        );
        registry.register(
            "remote_write_lag_seconds",
            "Newest queued sample time minus newest sent sample time",
            self.lag_seconds.clone(),
        );
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    pub group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// `pending` or `firing`
    pub state: &'static str,
}

/// Buckets for work that takes milliseconds to seconds: 1 ms to ~65 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// Buckets for waits that take seconds to hours (retries, a receiver down): 0.1 s to ~4.6 h.
fn delay_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.1, 2.0, 18))
}

impl SelfMetrics {
    pub fn new(start_time_seconds: f64) -> Self {
        let mut registry = Registry::with_prefix("tocsin");
        let scrapes = Family::<ScrapeLabels, Counter>::default();
        registry.register(
            "scrapes",
            "Scrapes and health probes by target, kind and result",
            scrapes.clone(),
        );
        let samples_ingested = Counter::default();
        registry.register(
            "samples_ingested",
            "Samples appended to the store",
            samples_ingested.clone(),
        );
        let pushes = Family::<PushLabels, Counter>::default();
        registry.register(
            "pushes",
            "Pushed bodies and heartbeat check-ins by kind and result",
            pushes.clone(),
        );
        let samples_out_of_order = Counter::default();
        registry.register(
            "samples_out_of_order",
            "Samples dropped because they were not newer than the series' last sample",
            samples_out_of_order.clone(),
        );
        let samples_duplicate = Counter::default();
        registry.register(
            "samples_duplicate",
            "Samples dropped because the same series appeared twice in one scrape",
            samples_duplicate.clone(),
        );
        let store_flush_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "store_flush_seconds",
            "Time to make buffered samples durable (one SQLite transaction)",
            store_flush_seconds.clone(),
        );
        let store_flush_failures = Counter::default();
        registry.register(
            "store_flush_failures",
            "Flushes that failed and will be retried",
            store_flush_failures.clone(),
        );
        let store_series = Gauge::default();
        registry.register(
            "store_series",
            "Series known to the store",
            store_series.clone(),
        );
        let store_head_chunk_bytes = Gauge::default();
        registry.register(
            "store_head_chunk_bytes",
            "Bytes of compressed samples held in memory",
            store_head_chunk_bytes.clone(),
        );
        let store_disk_bytes = Gauge::default();
        registry.register(
            "store_disk_bytes",
            "Size of the database file and its WAL",
            store_disk_bytes.clone(),
        );
        let store_write_failures = Counter::default();
        registry.register(
            "store_write_failures",
            "Store writes (flushes and rule evaluation commits) that failed: disk full, I/O error, read-only file; what they held is kept in memory and written by the next write that succeeds",
            store_write_failures.clone(),
        );
        let store_last_successful_write = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "store_last_successful_write_timestamp_seconds",
            "Unix time of the last store write (flush or rule evaluation commit) that succeeded, 0 before the first",
            store_last_successful_write.clone(),
        );
        let rules_loaded = Gauge::default();
        registry.register(
            "rules_loaded",
            "Rules loaded from rule_files, not counting tocsin's own self-alert rules (tocsin:self)",
            rules_loaded.clone(),
        );
        let notification_outbox_oldest_age_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "notification_outbox_oldest_age_seconds",
            "Age of the oldest notification waiting in the outbox for delivery or retry, 0 when none waits",
            notification_outbox_oldest_age_seconds.clone(),
        );
        let start_time = Gauge::<f64, AtomicU64>::default();
        start_time.set(start_time_seconds);
        registry.register(
            "start_time_seconds",
            "Unix time the daemon started",
            start_time.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                revision: crate::GIT_HASH,
            })
            .set(1);
        registry.register(
            "build_info",
            "Always 1; the labels say which build runs (as Prometheus's prometheus_build_info)",
            build_info,
        );
        let rule_reload_success = Gauge::default();
        rule_reload_success.set(1);
        registry.register(
            "rule_reload_success",
            "Whether the last rule reload succeeded (1) or kept the old rules (0)",
            rule_reload_success.clone(),
        );
        let rule_group_last_duration_seconds =
            Family::<GroupLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "rule_group_last_duration_seconds",
            "Duration of the last evaluation of each rule group",
            rule_group_last_duration_seconds.clone(),
        );
        let rule_group_iterations_missed = Family::<GroupLabels, Counter>::default();
        registry.register(
            "rule_group_iterations_missed",
            "Evaluations skipped because the previous one of the group was still running",
            rule_group_iterations_missed.clone(),
        );
        let rule_evaluation_failures = Family::<GroupLabels, Counter>::default();
        registry.register(
            "rule_evaluation_failures",
            "Rule evaluations that failed",
            rule_evaluation_failures.clone(),
        );
        let datasource_up = Family::<DatasourceLabels, Gauge>::default();
        registry.register(
            "datasource_up",
            "1 when the datasource answered its last query, 0 when it was unavailable",
            datasource_up.clone(),
        );
        let datasource_queries = Family::<DatasourceResultLabels, Counter>::default();
        registry.register(
            "datasource_queries",
            "Queries sent to each datasource, by result",
            datasource_queries.clone(),
        );
        let remote_write = RemoteWriteMetrics::default();
        remote_write.register(&mut registry);
        let rule_group_evaluations_cancelled = Family::<GroupLabels, Counter>::default();
        registry.register(
            "rule_group_evaluations_cancelled",
            "Evaluations of a rule group stopped because they exceeded the group's budget (its interval)",
            rule_group_evaluations_cancelled.clone(),
        );
        let alerts = Family::<StateLabels, Gauge>::default();
        registry.register("alerts", "Active alerts by state", alerts.clone());
        let notifications_queued = Family::<ReceiverLabels, Counter>::default();
        registry.register(
            "notifications_queued",
            "Notifications the pipeline queued in the outbox, by receiver",
            notifications_queued.clone(),
        );
        let notifications_shadow = Family::<ReceiverLabels, Counter>::default();
        registry.register(
            "notifications_shadow",
            "Shadow notifications recorded and not sent (dry run: tocsin run --dry-run or a rule's dry_run), by receiver",
            notifications_shadow.clone(),
        );
        let notifications = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "notifications",
            "Notification delivery attempts by integration and result (delivered, retried, failed)",
            notifications.clone(),
        );
        let notification_outbox_depth = Gauge::default();
        registry.register(
            "notification_outbox_depth",
            "Notifications waiting in the outbox for delivery or retry",
            notification_outbox_depth.clone(),
        );
        let notification_latency_seconds =
            Family::<IntegrationLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "notification_latency_seconds",
            "Time one notification delivery attempt took, by integration",
            notification_latency_seconds.clone(),
        );
        let notification_delivery_delay_seconds =
            Family::<IntegrationLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                delay_histogram,
            );
        registry.register(
            "notification_delivery_delay_seconds",
            "Time from queueing a notification to its delivery, retries included, by integration",
            notification_delivery_delay_seconds.clone(),
        );
        let rule_group_duration_seconds =
            Family::<GroupLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "rule_group_duration_seconds",
            "Time one evaluation of a rule group took, by group",
            rule_group_duration_seconds.clone(),
        );
        let notification_breaker_state = Family::<IntegrationLabels, Gauge>::default();
        registry.register(
            "notification_breaker_state",
            "Circuit breaker of each integration: 0 closed, 1 open, 2 half-open",
            notification_breaker_state.clone(),
        );
        let task_panics = Family::<TaskLabels, Counter>::default();
        registry.register(
            "task_panics",
            "Panics caught in blocking work by loop kind; the endpoint or group keeps running",
            task_panics.clone(),
        );
        let notification_store_errors = Family::<StoreOpLabels, Counter>::default();
        registry.register(
            "notification_store_errors",
            "Store calls of the notification sender that failed, by operation",
            notification_store_errors.clone(),
        );
        let sd_refresh_failures = Family::<MechanismLabels, Counter>::default();
        registry.register(
            "sd_refresh_failures",
            "Service discovery refreshes that failed, by mechanism; the last good targets stay",
            sd_refresh_failures.clone(),
        );
        let sd_discovered_targets = Family::<MechanismLabels, Gauge>::default();
        registry.register(
            "sd_discovered_targets",
            "Targets service discovery gives now (before relabelling), by mechanism",
            sd_discovered_targets.clone(),
        );
        SelfMetrics {
            sd_refresh_failures,
            sd_discovered_targets,
            store_write_failures,
            store_last_successful_write,
            rules_loaded,
            notification_outbox_oldest_age_seconds,
            notification_store_errors,
            task_panics,
            notifications_queued,
            notifications_shadow,
            notifications,
            notification_outbox_depth,
            notification_latency_seconds,
            notification_delivery_delay_seconds,
            rule_group_duration_seconds,
            notification_breaker_state,
            rule_reload_success,
            rule_group_last_duration_seconds,
            rule_group_iterations_missed,
            rule_evaluation_failures,
            datasource_up,
            datasource_queries,
            remote_write,
            rule_group_evaluations_cancelled,
            alerts,
            registry,
            scrapes,
            samples_ingested,
            pushes,
            samples_out_of_order,
            samples_duplicate,
            store_flush_seconds,
            store_flush_failures,
            store_series,
            store_head_chunk_bytes,
            store_disk_bytes,
            start_time_seconds: start_time,
        }
    }

    /// Brings the store's write counters into the metrics (the store counts; the loops that
    /// report call this before reading the metrics).
    pub fn observe_store(&self, h: crate::store::WriteHealth) {
        let seen = self.store_write_failures.get();
        if h.failures > seen {
            self.store_write_failures.inc_by(h.failures - seen);
        }
        if let Some(ms) = h.last_success_ms {
            self.store_last_successful_write.set(ms as f64 / 1000.0);
        }
    }

    /// The registry in OpenMetrics text, followed by the `process_*` metrics client libraries
    /// export (read from `/proc` now: blocking, a few small reads).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        if let Some(stats) = crate::process::read() {
            let eof = out.strip_suffix("# EOF\n").map(str::len);
            if let Some(n) = eof {
                out.truncate(n);
            }
            crate::process::encode(&stats, &mut out);
            if eof.is_some() {
                out.push_str("# EOF\n");
            }
        }
        out
    }
}
