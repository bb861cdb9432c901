//! The scrape scheduler: one task per target endpoint plus the store's flush task.
//! The only module (with the HTTP status page) that reads the [`Clock`]: it reads it once per tick
//! and passes that `now` down.
//!
//! Invariants:
//! - each endpoint runs in its own task at a stable offset inside its interval
//!   (hash of name and URL), so targets do not fire together and a slow or dead target never delays another;
//! - a tick that would start while the previous scrape of the same endpoint is still running is skipped;
//! - parsing and store writes run on blocking threads, never on the async runtime;
//! - on shutdown every task stops before its next tick; the caller then closes the store.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use super::{ScrapeCache, ScrapeError};
use crate::clock::Clock;
use crate::config::Target;
use crate::selfmetrics::{ScrapeLabels, SelfMetrics};
use crate::store::Store;

/// How long after start the flush loop hands back the executable's pages start-up alone used
/// ([`crate::sys::release_unused_code_pages`]): by then the store is open, the write-ahead log
/// replayed, the rules compiled and every target scraped.
const RELEASE_CODE_AFTER: Duration = Duration::from_secs(60);

/// What `/status` shows of one endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointStatus {
    pub target: String,
    /// `metrics`, `health`, `heartbeat`, or a probe kind: `tcp`, `tls`, `dns`, `smtp`
    pub kind: &'static str,
    /// the probe's name (the `probe` label) for `tcp`, `tls`, `dns` and `smtp` endpoints
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<String>,
    pub url: String,
    pub interval_seconds: f64,
    /// ms since the epoch of the last completed scrape or probe
    pub last_scrape_ms: Option<i64>,
    pub last_duration_seconds: Option<f64>,
    /// whether the last scrape or probe succeeded (None before the first): for `metrics` the
    /// scrape's `up` series; for `health` the probe's `probe_success` (answered healthy), not its
    /// `up` (answered), so a 200 whose body reports a bad status is false here
    pub up: Option<bool>,
    /// why the last scrape failed, or why the health endpoint is unhealthy (its failing checks,
    /// JSON status, non-2xx HTTP status) or unreachable; a warning about a healthy body
    pub last_error: Option<String>,
    pub samples: usize,
    /// when tocsin first watched this target (persisted across restarts)
    pub first_seen_ms: Option<i64>,
    pub startup_grace_seconds: f64,
    /// health checks of a JSON body: name, ok, text
    pub checks: Vec<(String, bool, String)>,
    /// a health endpoint that answered with a JSON body reporting a partial failure (a failing
    /// check beside passing ones, or a `degraded` status): see [`super::HealthReport::degraded`]
    pub degraded: bool,
    /// the labels every series of this endpoint carries (`job`, `instance`, target labels);
    /// shown by `/api/v1/targets`, not by `/status`
    #[serde(skip)]
    pub labels: Vec<(String, String)>,
}

impl EndpointStatus {
    /// An endpoint of `target` not run yet: nothing known but what the configuration says.
    fn configured(
        target: &Target,
        kind: &'static str,
        probe: Option<String>,
        url: String,
        interval: Duration,
        labels: &crate::labels::Labels,
    ) -> EndpointStatus {
        EndpointStatus {
            target: target.name.clone(),
            kind,
            probe,
            url,
            interval_seconds: interval.as_secs_f64(),
            last_scrape_ms: None,
            last_duration_seconds: None,
            up: None,
            last_error: None,
            samples: 0,
            first_seen_ms: None,
            startup_grace_seconds: target.startup_grace.0.as_secs_f64(),
            checks: Vec::new(),
            degraded: false,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }
}

/// Shared state the HTTP server reads (`/status`, `/api/v1/targets`): each endpoint's last outcome,
/// where a health endpoint counts as up only when it answered healthy ([`EndpointStatus::up`]).
/// Keyed by (target, kind); a probe's key is (`target/probe`, kind), as a target may have several.
#[derive(Default)]
pub struct StatusBoard {
    pub endpoints: RwLock<BTreeMap<(String, &'static str), EndpointStatus>>,
    /// the scheduler has started its tasks
    pub running: AtomicBool,
    /// the last flush succeeded
    pub store_ok: AtomicBool,
    pub last_flush_ms: AtomicI64,
    pub last_flush_error: RwLock<Option<String>>,
    /// what the last update of the target set changed
    pub last_target_diff: RwLock<Option<TargetSetDiff>>,
    /// each service discovery source's state, by source key
    pub discovery: RwLock<BTreeMap<String, super::sd::SdSourceStatus>>,
    /// discovered addresses relabelling dropped (at most [`super::sd::KEEP_DROPPED_TARGETS`]),
    /// and how many each target's discovery dropped in all
    pub dropped: RwLock<(Vec<super::sd::DroppedTarget>, BTreeMap<String, usize>)>,
}

impl StatusBoard {
    fn update(&self, target: &str, kind: &'static str, f: impl FnOnce(&mut EndpointStatus)) {
        if let Some(e) = self
            .endpoints
            .write()
            .expect("status lock")
            .get_mut(&(target.to_string(), kind))
        {
            f(e);
        }
    }
}

/// What one update of the target set changed, by target name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TargetSetDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// stopped and started again with their new settings
    pub changed: Vec<String>,
    /// kept running as they were
    pub unchanged: usize,
}

impl TargetSetDiff {
    /// Whether nothing was added, removed or changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// A target the supervisor runs: its tasks and how to stop them.
struct RunningTarget {
    target: Arc<Target>,
    /// true: stop at the next tick
    stop: watch::Sender<bool>,
    /// set before `stop`: write staleness markers for the target's series when stopping
    stale: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The labels a target's series carry, for every endpoint: when a change keeps them, its
/// series go on without a staleness marker.
fn endpoint_labels(t: &Target) -> Vec<crate::labels::Labels> {
    let mut out = Vec::new();
    if let Some(u) = &t.metrics {
        out.push(super::metrics_base_labels(t, u));
    }
    if let Some(u) = &t.health {
        out.push(super::health_base_labels(t, u));
    }
    out.extend(t.probes.iter().map(|p| super::probe::base_labels(t, p)));
    out
}

/// Everything a task needs; cheap to clone.
#[derive(Clone)]
pub struct Scheduler {
    pub store: Arc<Store>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<SelfMetrics>,
    pub status: Arc<StatusBoard>,
    pub client: reqwest::Client,
    /// the heartbeat targets' check-ins, shared with the HTTP API that receives them
    pub heartbeats: Arc<super::push::Heartbeats>,
}

/// Stable offset of an endpoint inside its interval.
pub fn offset_ms(name: &str, url: &str, interval_ms: i64) -> i64 {
    let h = xxhash_rust::xxh3::xxh3_64(format!("{name}\u{0}{url}").as_bytes());
    (h % interval_ms.max(1) as u64) as i64
}

/// The timestamp of a scrape that started at wall time `now`: the scheduled slot
/// (`slot mod interval == offset`) when the start is within a small tolerance of it, else `now`.
/// Regular timestamps make the delta-of-delta zero, so a timestamp costs 1 bit in a chunk instead
/// of ~16 (Prometheus 2.x does the same with a 2 ms tolerance; the jitter here is the scheduler's own).
pub fn scrape_timestamp(now_ms: i64, interval_ms: i64, offset: i64) -> i64 {
    let tolerance = (interval_ms / 10).min(100);
    let slot = now_ms - (now_ms - offset).rem_euclid(interval_ms);
    if now_ms - slot <= tolerance {
        slot
    } else {
        now_ms
    }
}

/// The first tick: the next wall time `t >= now` with `t mod interval == offset`.
fn first_tick(now_ms: i64, interval_ms: i64, offset: i64) -> Duration {
    let wait = (offset - now_ms.rem_euclid(interval_ms)).rem_euclid(interval_ms);
    Duration::from_millis(wait as u64)
}

impl Scheduler {
    /// Starts a task per endpoint and the flush task; they stop when `shutdown` turns true. The
    /// target set is fixed: see [`Scheduler::spawn_updatable`].
    pub fn spawn(
        &self,
        targets: Vec<Target>,
        flush_interval: Duration,
        shutdown: watch::Receiver<bool>,
    ) -> JoinSet<()> {
        let (_fixed, rx) = watch::channel(Arc::new(targets));
        self.spawn_updatable(rx, flush_interval, shutdown)
    }

    /// Starts the flush task and a supervisor that runs the target set `targets` holds and
    /// follows its changes ([`TargetSetDiff`]): an unchanged target keeps its tasks (no gap, its
    /// scrape cache and staleness state kept); a removed one stops and its series get a
    /// staleness marker; an added one starts; a changed one (any setting: interval, timeout,
    /// url, labels, limits) stops and starts again, its old series marked stale when its labels
    /// changed. Everything stops when `shutdown` turns true (no staleness markers then, as in
    /// Prometheus).
    pub fn spawn_updatable(
        &self,
        targets: watch::Receiver<Arc<Vec<Target>>>,
        flush_interval: Duration,
        shutdown: watch::Receiver<bool>,
    ) -> JoinSet<()> {
        let mut set = JoinSet::new();
        let me = self.clone();
        let sd = shutdown.clone();
        set.spawn(async move { me.supervise(targets, sd).await });
        let me = self.clone();
        set.spawn(async move { me.flush_loop(flush_interval, shutdown).await });
        self.status.running.store(true, Ordering::SeqCst);
        self.status.store_ok.store(true, Ordering::SeqCst);
        set
    }

    /// Runs the wanted target set until shutdown; see [`Scheduler::spawn_updatable`].
    async fn supervise(
        self,
        mut targets: watch::Receiver<Arc<Vec<Target>>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut running: BTreeMap<String, RunningTarget> = BTreeMap::new();
        let mut updates_open = true;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let wanted = targets.borrow_and_update().clone();
            let diff = self.apply_target_set(&mut running, &wanted);
            if !diff.is_empty() {
                tracing::info!(
                    added = diff.added.len(),
                    removed = diff.removed.len(),
                    changed = diff.changed.len(),
                    unchanged = diff.unchanged,
                    "target set updated"
                );
            }
            *self.status.last_target_diff.write().expect("status lock") = Some(diff);
            tokio::select! {
                r = targets.changed(), if updates_open => {
                    if r.is_err() {
                        updates_open = false;
                    }
                }
                _ = shutdown.changed() => {}
            }
        }
        for (_, t) in std::mem::take(&mut running) {
            let _ = t.stop.send(true);
            for h in t.tasks {
                let _ = h.await;
            }
        }
    }

    /// Brings `running` to `wanted` (names are the keys); returns what changed.
    fn apply_target_set(
        &self,
        running: &mut BTreeMap<String, RunningTarget>,
        wanted: &[Target],
    ) -> TargetSetDiff {
        let mut diff = TargetSetDiff::default();
        let wanted: BTreeMap<&str, &Target> = wanted.iter().map(|t| (t.name.as_str(), t)).collect();
        let names: Vec<String> = running.keys().cloned().collect();
        for name in names {
            match wanted.get(name.as_str()) {
                Some(t) if *running[&name].target == **t => diff.unchanged += 1,
                Some(t) => {
                    let old = running.remove(&name).expect("running target");
                    if t.heartbeat.is_none() && old.target.heartbeat.is_some() {
                        self.heartbeats.unregister(&name);
                    }
                    // the old series end only when the new target writes other ones
                    let relabelled = endpoint_labels(&old.target) != endpoint_labels(t);
                    let previous = self.stop_target(old, relabelled);
                    running.insert(name.clone(), self.start_target((*t).clone(), previous));
                    diff.changed.push(name);
                }
                None => {
                    let old = running.remove(&name).expect("running target");
                    if old.target.heartbeat.is_some() {
                        // its check-ins are refused from now on (404), as for any unknown name
                        self.heartbeats.unregister(&name);
                    }
                    self.stop_target(old, true);
                    diff.removed.push(name);
                }
            }
        }
        for (name, t) in wanted {
            if !running.contains_key(name) {
                running.insert(name.to_string(), self.start_target(t.clone(), Vec::new()));
                diff.added.push(name.to_string());
            }
        }
        diff
    }

    /// Tells a target's tasks to stop (writing staleness markers for its series when `stale`)
    /// and forgets its status entries; returns its tasks, which a replacement waits for, so the
    /// old target's last write comes before the new one's first.
    fn stop_target(&self, t: RunningTarget, stale: bool) -> Vec<tokio::task::JoinHandle<()>> {
        t.stale.store(stale, Ordering::SeqCst);
        let _ = t.stop.send(true);
        let name = &t.target.name;
        let prefix = format!("{name}/");
        self.status
            .endpoints
            .write()
            .expect("status lock")
            .retain(|(key, _), _| key != name && !key.starts_with(&prefix));
        t.tasks
    }

    /// Starts every endpoint task of `target`, each waiting first for `previous` (the tasks of
    /// the target it replaces) to end.
    fn start_target(
        &self,
        target: Target,
        previous: Vec<tokio::task::JoinHandle<()>>,
    ) -> RunningTarget {
        let (stop_tx, shutdown) = watch::channel(false);
        let stale = Arc::new(AtomicBool::new(false));
        let target = Arc::new(target);
        let previous = Arc::new(tokio::sync::Mutex::new(previous));
        let mut tasks = Vec::new();
        let mut spawn = |fut: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>| {
            let previous = previous.clone();
            tasks.push(tokio::spawn(async move {
                for h in previous.lock().await.drain(..) {
                    let _ = h.await;
                }
                fut.await
            }));
        };
        for (kind, url) in [("metrics", &target.metrics), ("health", &target.health)] {
            let Some(url) = url.clone() else { continue };
            self.status.endpoints.write().expect("status lock").insert(
                (target.name.clone(), kind),
                EndpointStatus::configured(
                    &target,
                    kind,
                    None,
                    url.to_string(),
                    target.interval.0,
                    &match kind {
                        "metrics" => super::metrics_base_labels(&target, &url),
                        _ => super::health_base_labels(&target, &url),
                    },
                ),
            );
            let me = self.clone();
            let target = target.clone();
            let shutdown = shutdown.clone();
            let stale = stale.clone();
            spawn(Box::pin(async move {
                me.endpoint_loop(target, kind, url, shutdown, stale).await
            }));
        }
        for probe in &target.probes {
            let probe = Arc::new(probe.clone());
            let kind = probe.config.kind.as_str();
            let key = format!("{}/{}", target.name, probe.name);
            self.status.endpoints.write().expect("status lock").insert(
                (key.clone(), kind),
                EndpointStatus::configured(
                    &target,
                    kind,
                    Some(probe.name.clone()),
                    super::probe::describe(&probe),
                    probe.interval.0,
                    &super::probe::base_labels(&target, &probe),
                ),
            );
            let me = self.clone();
            let target = target.clone();
            let shutdown = shutdown.clone();
            let stale = stale.clone();
            spawn(Box::pin(async move {
                me.probe_loop(target, probe, key, shutdown, stale).await
            }));
        }
        if let Some(hb) = target.heartbeat {
            let cell = self.heartbeats.register(&target.name);
            self.status.endpoints.write().expect("status lock").insert(
                (target.name.clone(), "heartbeat"),
                EndpointStatus::configured(
                    &target,
                    "heartbeat",
                    None,
                    format!("/api/v1/heartbeat/{}", target.name),
                    hb.expected_interval.0,
                    &super::heartbeat_base_labels(&target),
                ),
            );
            let me = self.clone();
            let target = target.clone();
            let shutdown = shutdown.clone();
            spawn(Box::pin(async move {
                me.heartbeat_loop(target, hb, cell, shutdown).await
            }));
        }
        RunningTarget {
            target,
            stop: stop_tx,
            stale,
            tasks,
        }
    }

    /// Staleness markers at the clock's now for every series of a stopped endpoint: a metrics
    /// endpoint's from its scrape cache (the series of its last scrape) plus `up` and the
    /// `scrape_*` series; a health or probe endpoint's, every series with its labels.
    async fn mark_endpoint_stale(
        &self,
        name: &str,
        cache: Option<ScrapeCache>,
        base: crate::labels::Labels,
    ) {
        let t = self.clock.now_ms();
        let store = self.store.clone();
        crate::task::blocking(&self.metrics, "stale", name, move || {
            let mut written = 0;
            // only series that exist: a target removed before its first scrape gets none
            let mut matchers: Vec<crate::labels::Matcher> = base
                .iter()
                .map(|(k, v)| crate::labels::Matcher::equal(k, v))
                .collect();
            let ids = match cache {
                Some(mut cache) => {
                    written += cache.mark_all_stale(&store, t);
                    let mut ids = Vec::new();
                    for name in ["up", "scrape_duration_seconds", "scrape_samples_scraped"] {
                        matchers.push(crate::labels::Matcher::equal("__name__", name));
                        ids.extend(store.select_ids(&matchers));
                        matchers.pop();
                    }
                    ids
                }
                None => store.select_ids(&matchers),
            };
            let batch: Vec<_> = ids
                .into_iter()
                .map(|id| (id, t, crate::store::chunk::stale_nan()))
                .collect();
            written += batch.len();
            store.append(&batch);
            written
        })
        .await;
    }

    async fn endpoint_loop(
        self,
        target: Arc<Target>,
        kind: &'static str,
        url: url::Url,
        mut shutdown: watch::Receiver<bool>,
        stale: Arc<AtomicBool>,
    ) {
        let interval_ms = target.interval.as_millis().max(1);
        let now = self.clock.now_ms();
        let store = self.store.clone();
        let name = target.name.clone();
        let first_seen = tokio::task::spawn_blocking(move || store.target_first_seen(&name, now))
            .await
            .ok()
            .and_then(|r| r.ok());
        self.status
            .update(&target.name, kind, |e| e.first_seen_ms = first_seen);
        let offset = offset_ms(&target.name, url.as_str(), interval_ms);
        let start = Instant::now() + first_tick(now, interval_ms, offset);
        let mut ticker = tokio::time::interval_at(start, Duration::from_millis(interval_ms as u64));
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        // metrics endpoints keep a series cache across scrapes (moved into the blocking ingest and back)
        let mut cache = (kind == "metrics").then(|| {
            ScrapeCache::new(super::metrics_base_labels(&target, &url))
                .with_label_limits(target.label_limits)
        });
        // a health endpoint's checks at the last probe (one that disappears gets a stale
        // marker) and the states its string fields were written with
        let mut memory = super::health::HealthMemory::default();
        loop {
            if !crate::task::next_tick(&mut ticker, &mut shutdown).await {
                if stale.load(Ordering::SeqCst) {
                    let base = match kind {
                        "metrics" => super::metrics_base_labels(&target, &url),
                        _ => super::health_base_labels(&target, &url),
                    };
                    self.mark_endpoint_stale(&target.name, cache, base).await;
                }
                return;
            }
            let t = scrape_timestamp(self.clock.now_ms(), interval_ms, offset);
            match cache.take() {
                Some(c) => cache = Some(self.scrape_once(&target, &url, t, c).await),
                None => memory = self.probe_once(&target, &url, t, memory).await,
            }
        }
    }

    /// The task of one `tcp`/`tls`/`dns`/`smtp` probe: a run per tick at a stable offset, its
    /// report written on a blocking thread; series the last run wrote and this one did not get a
    /// stale marker.
    async fn probe_loop(
        self,
        target: Arc<Target>,
        probe: Arc<crate::config::Probe>,
        key: String,
        mut shutdown: watch::Receiver<bool>,
        stale: Arc<AtomicBool>,
    ) {
        let kind = probe.config.kind.as_str();
        let interval_ms = probe.interval.as_millis().max(1);
        let now = self.clock.now_ms();
        let store = self.store.clone();
        let name = target.name.clone();
        let first_seen = tokio::task::spawn_blocking(move || store.target_first_seen(&name, now))
            .await
            .ok()
            .and_then(|r| r.ok());
        self.status
            .update(&key, kind, |e| e.first_seen_ms = first_seen);
        let offset = offset_ms(&target.name, &key, interval_ms);
        let start = Instant::now() + first_tick(now, interval_ms, offset);
        let mut ticker = tokio::time::interval_at(start, Duration::from_millis(interval_ms as u64));
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let base = super::probe::base_labels(&target, &probe);
        let mut last = std::collections::BTreeSet::new();
        loop {
            if !crate::task::next_tick(&mut ticker, &mut shutdown).await {
                if stale.load(Ordering::SeqCst) {
                    self.mark_endpoint_stale(&key, None, base.clone()).await;
                }
                return;
            }
            let t = scrape_timestamp(self.clock.now_ms(), interval_ms, offset);
            let report = super::probe::run(&probe, t).await;
            let store = self.store.clone();
            let base = base.clone();
            let written = report.clone();
            let joined = crate::task::blocking(&self.metrics, "probe", &target.name, move || {
                super::probe::write_report(&store, &base, t, &written, &mut last);
                last
            })
            .await;
            last = joined.unwrap_or_default();
            self.metrics
                .scrapes
                .get_or_create(&ScrapeLabels {
                    target: target.name.clone(),
                    kind,
                    result: if report.success { "success" } else { "failure" },
                })
                .inc();
            if !report.success {
                let error = report.error.as_deref().unwrap_or("");
                tracing::warn!(target = %target.name, probe = %probe.name, kind, error, "probe failed");
            }
            self.status.update(&key, kind, |s| {
                s.last_scrape_ms = Some(t);
                s.last_duration_seconds = Some(report.duration_seconds);
                s.up = Some(report.success);
                s.samples = 3 + report.samples.len();
                s.last_error = report.error.clone();
            });
        }
    }

    /// One metrics scrape at time `t`.
    async fn scrape_once(
        &self,
        target: &Target,
        url: &url::Url,
        t: i64,
        mut cache: ScrapeCache,
    ) -> ScrapeCache {
        let started = Instant::now();
        // the body goes to the parser as it arrives, never held whole: a fetch task hands its
        // pieces over a bounded channel to the ingest on a blocking thread
        let (head_tx, head_rx) = tokio::sync::oneshot::channel();
        let (pieces_tx, mut pieces) = tokio::sync::mpsc::channel(super::fetch::PIECES_IN_FLIGHT);
        let get = super::fetch::Get {
            client: &self.client,
            url,
            timeout: target.timeout.0,
            body_limit: target.body_size_limit,
            bearer: target.bearer_token.as_ref(),
            accept: super::SCRAPE_ACCEPT,
        };
        let fetch = super::fetch::stream(get, head_tx, pieces_tx);
        let store = self.store.clone();
        let limit = target.sample_limit;
        let ingest = async {
            let head = head_rx
                .await
                .unwrap_or_else(|_| Err(ScrapeError::Http("the fetch ended early".into())))
                .and_then(|h| {
                    if (200..300).contains(&h.status) {
                        Ok(h)
                    } else {
                        Err(ScrapeError::Status(h.status))
                    }
                });
            crate::task::blocking(&self.metrics, "scrape", &target.name, move || {
                // until the body's last piece arrived (or the fetch failed): what the scrape
                // took, as before the samples are appended
                let mut took = None;
                let result = head.and_then(|head| {
                    let format = super::textparse::Format::from_content_type(&head.content_type);
                    let mut scrape = cache.begin(format, t, limit);
                    let mut broke = None;
                    while let Some(piece) = pieces.blocking_recv() {
                        match piece {
                            Ok(bytes) => {
                                scrape.feed(&bytes);
                                super::fetch::give_back(bytes);
                            }
                            Err(e) => {
                                broke = Some(e);
                                break;
                            }
                        }
                        if !scrape.wants_more() {
                            break;
                        }
                    }
                    // the fetch stops at its next piece
                    drop(pieces);
                    took = Some(started.elapsed().as_secs_f64());
                    scrape.finish_or(&store, broke)
                });
                let fetch_seconds = took.unwrap_or_else(|| started.elapsed().as_secs_f64());
                match &result {
                    Ok(report) => {
                        cache.write_report(&store, t, true, fetch_seconds, report.scraped)
                    }
                    Err(_) => {
                        cache.mark_all_stale(&store, t);
                        cache.write_report(&store, t, false, fetch_seconds, 0);
                    }
                }
                (cache, result, fetch_seconds)
            })
            .await
        };
        let ((), joined) = tokio::join!(fetch, ingest);
        let (cache, result, fetch_seconds) = match joined {
            Some(r) => r,
            None => {
                // the cache went with the panicking task: start afresh (known series are
                // found again through the store's index at the next scrape)
                (
                    ScrapeCache::new(super::metrics_base_labels(target, url))
                        .with_label_limits(target.label_limits),
                    Err(ScrapeError::Panicked),
                    started.elapsed().as_secs_f64(),
                )
            }
        };
        let ok = result.is_ok();
        self.metrics
            .scrapes
            .get_or_create(&ScrapeLabels {
                target: target.name.clone(),
                kind: "metrics",
                result: if ok { "success" } else { "failure" },
            })
            .inc();
        match &result {
            Ok(r) => {
                self.metrics.samples_ingested.inc_by(r.appended as u64);
                self.metrics.samples_duplicate.inc_by(r.duplicates as u64);
                self.metrics
                    .samples_out_of_order
                    .inc_by(r.out_of_order as u64);
                tracing::debug!(target = %target.name, samples = r.scraped, new_series = r.new_series, stale = r.stale, "scraped");
            }
            Err(e) => {
                tracing::warn!(target = %target.name, url = %url, error = %e, "scrape failed")
            }
        }
        self.status.update(&target.name, "metrics", |s| {
            s.last_scrape_ms = Some(t);
            s.last_duration_seconds = Some(fetch_seconds);
            s.up = Some(ok);
            s.samples = result.as_ref().map(|r| r.scraped).unwrap_or(0);
            s.last_error = result.as_ref().err().map(|e| e.to_string());
        });
        cache
    }

    /// One health probe at time `t`; `memory` is what the last probe left (its checks, the
    /// states written), and what this one leaves comes back.
    async fn probe_once(
        &self,
        target: &Target,
        url: &url::Url,
        t: i64,
        memory: super::health::HealthMemory,
    ) -> super::health::HealthMemory {
        let started = Instant::now();
        let fetched = super::fetch(
            &self.client,
            url,
            target.timeout.0,
            target.body_size_limit,
            target.bearer_token.as_ref(),
            "application/json, */*;q=0.5",
        )
        .await;
        let seconds = started.elapsed().as_secs_f64();
        let store = self.store.clone();
        let base = super::health_base_labels(target, url);
        let gauges = target.health_json.clone();
        let joined = crate::task::blocking(&self.metrics, "probe", &target.name, move || {
            let mut memory = memory;
            let report =
                super::ingest_health(&store, &base, t, seconds, &fetched, &gauges, &mut memory);
            (report, memory)
        })
        .await;
        let Some((report, memory)) = joined else {
            return Default::default();
        };
        self.metrics
            .scrapes
            .get_or_create(&ScrapeLabels {
                target: target.name.clone(),
                kind: "health",
                result: if report.success { "success" } else { "failure" },
            })
            .inc();
        let error = report.error.as_deref().unwrap_or("");
        if !report.up {
            tracing::warn!(target = %target.name, url = %url, error, "health probe failed");
        } else if !report.success {
            tracing::warn!(target = %target.name, url = %url, error, "health endpoint unhealthy");
        }
        self.status.update(&target.name, "health", |s| {
            s.last_scrape_ms = Some(t);
            s.last_duration_seconds = Some(seconds);
            s.up = Some(report.success);
            s.samples = 4 + report.checks.len();
            s.last_error = report.error.clone();
            s.checks = report.checks.clone();
            s.degraded = report.degraded;
        });
        memory
    }

    /// The task of one heartbeat target: judges it ([`super::push::heartbeat_verdict`]) and
    /// writes its series every `interval`, at each check-in (at most one write per
    /// `MIN_SCRAPE_INTERVAL` under a flood) and at the millisecond its allowed silence runs out,
    /// so `up` turns 0 without waiting for a tick.
    async fn heartbeat_loop(
        self,
        target: Arc<Target>,
        hb: crate::config::Heartbeat,
        cell: Arc<super::push::HeartbeatCell>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let since = self.clock.now_ms();
        let allowed_ms = hb.expected_interval.as_millis() + hb.grace.as_millis();
        let every = target.interval.0.max(Duration::from_millis(1));
        let mut ticker = tokio::time::interval_at(Instant::now() + every, every);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let base = super::heartbeat_base_labels(&target);
        let mut was_up: Option<bool> = None;
        let floor = crate::duration::MIN_SCRAPE_INTERVAL;
        loop {
            let now = self.clock.now_ms();
            let last_seen = cell.last_seen();
            let v = super::push::heartbeat_verdict(last_seen, since, allowed_ms, now);
            let store = self.store.clone();
            let b = base.clone();
            let one = |x: bool| if x { 1.0 } else { 0.0 };
            let mut gauges: Vec<(&'static str, f64)> = vec![
                ("up", one(v.up)),
                (
                    "tocsin_heartbeat_expected_interval_seconds",
                    hb.expected_interval.0.as_secs_f64(),
                ),
                ("tocsin_heartbeat_grace_seconds", hb.grace.0.as_secs_f64()),
            ];
            if let Some(t) = last_seen {
                gauges.push((
                    "tocsin_heartbeat_last_seen_timestamp_seconds",
                    t as f64 / 1000.0,
                ));
            }
            let samples = gauges.len();
            crate::task::blocking(&self.metrics, "heartbeat", &target.name, move || {
                super::health::write_gauges(&store, &b, now, &gauges)
            })
            .await;
            let last_write = Instant::now();
            let error = (!v.up).then(|| match last_seen {
                Some(_) => format!(
                    "silent for {}, longer than the expected interval {} + grace {}",
                    crate::duration::PromDuration(Duration::from_millis(v.silent_ms.max(0) as u64)),
                    hb.expected_interval,
                    hb.grace
                ),
                None => format!(
                    "no check-in since tocsin started {} ago (expected every {} + grace {})",
                    crate::duration::PromDuration(Duration::from_millis(v.silent_ms.max(0) as u64)),
                    hb.expected_interval,
                    hb.grace
                ),
            });
            if was_up != Some(v.up) {
                match &error {
                    Some(e) => {
                        tracing::warn!(target = %target.name, error = %e, "heartbeat missing")
                    }
                    None if was_up.is_some() => {
                        tracing::info!(target = %target.name, "heartbeat back")
                    }
                    None => {}
                }
            }
            // before the first check-in and the first verdict against it: unknown, not up
            let shown = (last_seen.is_some() || !v.up).then_some(v.up);
            self.status.update(&target.name, "heartbeat", |s| {
                s.last_scrape_ms = last_seen;
                s.up = shown;
                s.samples = samples;
                s.last_error = error.clone();
            });
            was_up = Some(v.up);
            // wait for the next tick, a check-in, or the moment the silence runs out
            let until_down =
                v.up.then(|| Duration::from_millis((v.down_at - now).max(0) as u64));
            tokio::select! {
                _ = ticker.tick() => {}
                _ = cell.wake.notified() => {
                    // a flood of check-ins costs at most one write per floor
                    tokio::time::sleep_until(last_write + floor).await;
                }
                _ = tokio::time::sleep(until_down.unwrap_or_default()), if until_down.is_some() => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    async fn flush_loop(self, every: Duration, mut shutdown: watch::Receiver<bool>) {
        let started = Instant::now();
        let mut ticker = tokio::time::interval_at(started + every, every);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut code_released = false;
        loop {
            if !crate::task::next_tick(&mut ticker, &mut shutdown).await {
                return;
            }
            let now = self.clock.now_ms();
            self.flush(now).await;
            if !code_released && started.elapsed() >= RELEASE_CODE_AFTER {
                code_released = true;
                let released = tokio::task::spawn_blocking(crate::sys::release_unused_code_pages);
                match released.await {
                    Ok(Ok(bytes)) => {
                        tracing::debug!(bytes, "released the code pages start-up used")
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "could not release the code pages start-up used")
                    }
                    Err(_) => {}
                }
            }
        }
    }

    /// Flushes the store at `now` on a blocking thread and records the outcome.
    pub async fn flush(&self, now: i64) {
        let store = self.store.clone();
        let joined = crate::task::blocking(&self.metrics, "flush", "store", move || {
            let result = store.flush(now);
            crate::sys::release_free_memory();
            (result, store.stats())
        })
        .await;
        let Some((result, stats)) = joined else {
            return;
        };
        self.metrics.store_series.set(stats.series as i64);
        self.metrics
            .store_head_chunk_bytes
            .set(stats.head_chunk_bytes as i64);
        self.metrics.store_disk_bytes.set(stats.disk_bytes as i64);
        match result {
            Ok(f) => {
                self.metrics.store_flush_seconds.observe(f.seconds);
                self.status.store_ok.store(true, Ordering::SeqCst);
                self.status.last_flush_ms.store(now, Ordering::SeqCst);
                *self.status.last_flush_error.write().expect("status lock") = None;
                tracing::debug!(
                    samples = f.samples,
                    chunks = f.chunks,
                    series = f.series,
                    seconds = f.seconds,
                    "flushed"
                );
            }
            Err(e) => {
                self.metrics.store_flush_failures.inc();
                self.status.store_ok.store(false, Ordering::SeqCst);
                *self.status.last_flush_error.write().expect("status lock") = Some(e.to_string());
                tracing::error!(error = %e, "store flush failed; buffered samples are kept and retried");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_stable_and_inside_the_interval() {
        let a = offset_ms("scaidns", "http://127.0.0.1:8000/metrics", 15_000);
        assert_eq!(
            a,
            offset_ms("scaidns", "http://127.0.0.1:8000/metrics", 15_000)
        );
        assert!((0..15_000).contains(&a));
        let spread: std::collections::HashSet<i64> = (0..50)
            .map(|i| offset_ms(&format!("t{i}"), "http://x/metrics", 15_000) / 1000)
            .collect();
        assert!(
            spread.len() > 8,
            "offsets should spread over the interval: {spread:?}"
        );
    }

    #[test]
    fn scrape_timestamps_snap_to_the_slot_within_tolerance() {
        // 15 s interval, offset 2 s: slots at ..., 17_000, 32_000, ...
        assert_eq!(scrape_timestamp(17_003, 15_000, 2_000), 17_000);
        assert_eq!(scrape_timestamp(17_100, 15_000, 2_000), 17_000);
        // beyond the tolerance (100 ms here) the real time is kept
        assert_eq!(scrape_timestamp(17_101, 15_000, 2_000), 17_101);
        // a 1 s interval tolerates 100 ms; a 200 ms interval tolerates 20 ms
        assert_eq!(scrape_timestamp(5_050, 1_000, 0), 5_000);
        assert_eq!(scrape_timestamp(5_025, 200, 0), 5_025);
        assert_eq!(scrape_timestamp(5_019, 200, 0), 5_000);
    }

    #[test]
    fn first_tick_lands_on_the_offset() {
        // now = 10_500 ms into a 15 s cycle... offset 2_000 → wait until 17_000 (cycle 1, +2 s)
        assert_eq!(
            first_tick(15_000 + 10_500, 15_000, 2_000),
            Duration::from_millis(6_500)
        );
        assert_eq!(
            first_tick(15_000 + 1_000, 15_000, 2_000),
            Duration::from_millis(1_000)
        );
        assert_eq!(first_tick(15_000 + 2_000, 15_000, 2_000), Duration::ZERO);
    }
}
