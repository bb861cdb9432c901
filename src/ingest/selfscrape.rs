//! tocsin's own metrics stored in its own store, in-process: every scrape interval the
//! self-metrics registry is encoded as text and ingested through the same parser and
//! [`ScrapeCache`] as a scrape, as the series of target `job="tocsin"` (`instance` the daemon's
//! listen address), with `up`, `scrape_duration_seconds` and `scrape_samples_scraped` like any
//! target. So rules over `tocsin_*` (the `tocsin:self` rules) work with any configuration, and
//! keep working while the store cannot write: the samples are in the in-memory head.
//!
//! The loop also brings the store's write counters into the self-metrics
//! ([`SelfMetrics::observe_store`]) before each ingest, whether ingest is on
//! (`scrape.self_metrics`) or not.
//!
//! Invariants: the loop reads the clock once per tick; parsing and store writes run on a
//! blocking thread (a panic there costs one tick, counted as `task="self_scrape"`).

use crate::ingest::textparse::Format;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use super::ScrapeCache;
use crate::clock::Clock;
use crate::labels::Labels;
use crate::selfmetrics::{ScrapeLabels, SelfMetrics};
use crate::store::Store;

/// The `job` label of the self-ingested series.
pub const SELF_JOB: &str = "tocsin";

/// The self-ingest loop's settings.
pub struct SelfScrape {
    pub store: Arc<Store>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<SelfMetrics>,
    /// `scrape.interval`
    pub interval: Duration,
    /// `scrape.self_metrics`: false only updates the store's write counters
    pub enabled: bool,
    /// the `instance` label (the listen address)
    pub instance: String,
    /// `scrape.sample_limit`
    pub sample_limit: usize,
}

/// The labels every self-ingested series carries.
pub fn self_labels(instance: &str) -> Labels {
    Labels::from_pairs([
        ("job".to_string(), SELF_JOB.to_string()),
        ("instance".to_string(), instance.to_string()),
    ])
}

impl SelfScrape {
    /// Ticks every interval (the first at once) until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let interval = self.interval.max(Duration::from_millis(1));
        let mut ticker = tokio::time::interval_at(Instant::now(), interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut cache = Some(ScrapeCache::new(self_labels(&self.instance)));
        loop {
            if !crate::task::next_tick(&mut ticker, &mut shutdown).await {
                return;
            }
            let now = self.clock.now_ms();
            self.metrics.observe_store(self.store.write_health());
            if !self.enabled {
                continue;
            }
            let c = cache
                .take()
                .unwrap_or_else(|| ScrapeCache::new(self_labels(&self.instance)));
            cache = Some(self.ingest_once(c, now).await);
        }
    }

    /// Encodes the registry and ingests it at `t`; returns the cache for the next tick.
    async fn ingest_once(&self, mut cache: ScrapeCache, t: i64) -> ScrapeCache {
        let started = std::time::Instant::now();
        let store = self.store.clone();
        let limit = self.sample_limit;
        let metrics = self.metrics.clone();
        let joined = crate::task::blocking(&self.metrics, "self_scrape", SELF_JOB, move || {
            // encoding reads /proc for the process_* metrics: on this blocking thread too
            let text = metrics.encode();
            let result = cache.ingest(&store, &text, Format::OpenMetrics, t, limit);
            let seconds = started.elapsed().as_secs_f64();
            match &result {
                Ok(r) => cache.write_report(&store, t, true, seconds, r.scraped),
                Err(_) => {
                    cache.mark_all_stale(&store, t);
                    cache.write_report(&store, t, false, seconds, 0);
                }
            }
            (cache, result)
        })
        .await;
        let Some((cache, result)) = joined else {
            return ScrapeCache::new(self_labels(&self.instance));
        };
        self.metrics
            .scrapes
            .get_or_create(&ScrapeLabels {
                target: SELF_JOB.to_string(),
                kind: "metrics",
                result: if result.is_ok() { "success" } else { "failure" },
            })
            .inc();
        match result {
            Ok(r) => {
                self.metrics.samples_ingested.inc_by(r.appended as u64);
            }
            // a bug (the registry writes what the parser reads) or the sample limit
            Err(e) => tracing::warn!(error = %e, "storing tocsin's own metrics failed"),
        }
        cache
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::labels::Matcher;

    #[tokio::test]
    async fn the_registry_is_stored_as_job_tocsin_and_write_failures_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("t.db"), Default::default()).unwrap());
        let metrics = Arc::new(SelfMetrics::new(1.0));
        let me = SelfScrape {
            store: store.clone(),
            clock: Arc::new(ManualClock::new(10_000)),
            metrics: metrics.clone(),
            interval: Duration::from_secs(1),
            enabled: true,
            instance: "127.0.0.1:9000".into(),
            sample_limit: 10_000,
        };
        metrics.rules_loaded.set(3);
        let cache = me
            .ingest_once(ScrapeCache::new(self_labels(&me.instance)), 10_000)
            .await;
        let at = |name: &str| {
            let m = [
                Matcher::equal("__name__", name),
                Matcher::equal("job", "tocsin"),
                Matcher::equal("instance", "127.0.0.1:9000"),
            ];
            store
                .latest(&m, 10_000, 300_000)
                .unwrap()
                .first()
                .map(|s| s.2)
        };
        assert_eq!(at("tocsin_rules_loaded"), Some(3.0));
        assert_eq!(at("up"), Some(1.0));
        assert_eq!(at("tocsin_store_write_failures_total"), Some(0.0));
        // the process_* metrics appended after the registry parse and are stored too
        assert!(at("process_resident_memory_bytes").is_some_and(|v| v > 0.0));
        assert_eq!(at("tocsin_build_info"), Some(1.0));
        // a failed write shows in the counter at the next tick
        // a full disk: a flush that needs a new page of the file (300 new series) fails
        store.simulate_full_disk(true).unwrap();
        let ids = store.series_refs(
            (0..300)
                .map(|i| {
                    Labels::from_pairs([
                        ("__name__".to_string(), "filler".to_string()),
                        ("i".to_string(), format!("{i:0>60}")),
                    ])
                })
                .collect(),
        );
        store.append(&ids.iter().map(|&id| (id, 10_500, 1.0)).collect::<Vec<_>>());
        assert!(store.flush(11_000).is_err());
        metrics.observe_store(store.write_health());
        let _ = me.ingest_once(cache, 12_000).await;
        let latest = store
            .latest(
                &[Matcher::equal(
                    "__name__",
                    "tocsin_store_write_failures_total",
                )],
                12_000,
                300_000,
            )
            .unwrap();
        assert_eq!(latest[0].2, 1.0);
        store.simulate_full_disk(false).unwrap();
        assert!(store.flush(13_000).is_ok());
        assert_eq!(store.write_health().last_success_ms, Some(13_000));
    }
}
