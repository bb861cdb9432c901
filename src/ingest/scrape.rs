//! Fetching targets over HTTP and turning responses into samples: metrics scrapes (Prometheus
//! text format) and health probes (status code, latency, JSON body). With `notify`, the only
//! module that touches the network.
//!
//! Fetch ([`fetch`]) is async and bounded: one timeout covers connect, headers and the whole body;
//! the body (decompressed) stops at the size limit. Ingest ([`ScrapeCache::ingest`],
//! [`ingest_health`]) is CPU work and store writes: run it on a blocking thread.
//!
//! Series labels: every series from a target gets the target's `labels`, `job` = target name and
//! `instance` = host:port of the URL. Health-probe series also get `probe="health"`, so the probe's
//! `up` and the metrics scrape's `up` stay apart. An exposed label that collides with one of these
//! is kept as `exported_<name>` (Prometheus's `honor_labels: false`).

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;

use crate::config::{Secret, Target};
use crate::ingest::textparse::{Entry, ParseError, Parser};
use crate::labels::Labels;
use crate::store::{AppendStats, SeriesRef, Store, chunk::stale_nan};

/// Occurs when a scrape or probe fails; the reason is kept in the target's status.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("timeout after {0:?}")]
    Timeout(Duration),
    #[error("request failed: {0}")]
    Http(String),
    #[error("server returned HTTP status {0}")]
    Status(u16),
    #[error("body exceeds the limit of {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("body is not utf-8 text")]
    NotUtf8,
    #[error("malformed exposition: {0}")]
    Parse(#[from] ParseError),
    #[error("{got} samples exceed the sample limit of {limit}")]
    SampleLimit { limit: usize, got: usize },
}

/// A fetched response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

/// One HTTP client for every target: connection pooling and keep-alive across scrapes.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("tocsin/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("http client builds")
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        src = inner.source();
    }
    s
}

/// GETs `url` with one `timeout` for the whole exchange, reading at most `body_limit` bytes
/// (after gzip decoding). Any status is returned; the caller decides what it means.
pub async fn fetch(
    client: &reqwest::Client,
    url: &url::Url,
    timeout: Duration,
    body_limit: u64,
    bearer: Option<&Secret>,
    accept: &str,
) -> Result<Response, ScrapeError> {
    let work = async {
        let mut req = client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, accept);
        if let Some(token) = bearer {
            req = req.bearer_auth(&token.0);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| ScrapeError::Http(error_chain(&e)))?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if resp.content_length().is_some_and(|n| n > body_limit) {
            return Err(ScrapeError::BodyTooLarge { limit: body_limit });
        }
        // sized once when the length is announced: growing by doubling would briefly hold 1.5x the body
        let mut body = Vec::with_capacity(resp.content_length().unwrap_or(0) as usize);
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ScrapeError::Http(error_chain(&e)))?;
            if body.len() as u64 + chunk.len() as u64 > body_limit {
                return Err(ScrapeError::BodyTooLarge { limit: body_limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Response {
            status,
            content_type,
            body,
        })
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or(Err(ScrapeError::Timeout(timeout)))
}

/// `host:port` of a URL (the default port filled in), for the `instance` label.
pub fn instance_of(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port_or_known_default() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// The labels every series from this target's metrics endpoint carries.
pub fn metrics_base_labels(target: &Target, url: &url::Url) -> Labels {
    Labels::from_pairs(
        target
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .chain([
                ("job".to_string(), target.name.clone()),
                ("instance".to_string(), instance_of(url)),
            ]),
    )
}

/// The labels every series from this target's health probe carries.
pub fn health_base_labels(target: &Target, url: &url::Url) -> Labels {
    metrics_base_labels(target, url).with("probe", "health")
}

struct CacheEntry {
    series: SeriesRef,
    /// the scrape number that last saw this series (duplicates, staleness and pruning)
    seen: u64,
    /// the last sample had no explicit timestamp, so the series ends with a staleness marker when it
    /// vanishes (Prometheus does not mark series that carry their own timestamps)
    track_staleness: bool,
}

/// What an ingested scrape did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IngestReport {
    /// samples in the body
    pub scraped: usize,
    pub appended: usize,
    /// series exposed twice in one body: the first is kept
    pub duplicates: usize,
    pub out_of_order: usize,
    /// series that disappeared since the previous scrape and got a staleness marker
    pub stale: usize,
    pub new_series: usize,
}

/// Per-target state across scrapes: raw series text → series id (so a known series costs a hash
/// lookup, not a label parse), and the series seen last time (for staleness markers).
pub struct ScrapeCache {
    base: Labels,
    /// keys are ~60-100-byte series texts, looked up 100k times a scrape: hashed by one-shot xxh3
    /// (SipHash and the streaming xxh3 hasher were ~40% of ingest CPU, measured with perf)
    entries: HashMap<Box<str>, CacheEntry, BuildOneShot>,
    /// the scrape number of the last successful scrape; series seen then and not now are stale
    generation: u64,
}

/// A hasher for string keys: one xxh3 call over the bytes. A target can only make its own series
/// collide, which costs it lookups, never correctness (the map compares keys).
#[derive(Default, Clone, Copy)]
pub struct BuildOneShot;

pub struct OneShot(u64);

impl std::hash::BuildHasher for BuildOneShot {
    type Hasher = OneShot;
    fn build_hasher(&self) -> OneShot {
        OneShot(0)
    }
}

impl std::hash::Hasher for OneShot {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }
    fn write_u8(&mut self, i: u8) {
        // `str`'s Hash appends a 0xff terminator: mix it in without another pass
        self.0 = self.0.rotate_left(8) ^ u64::from(i);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Entries unseen for this many scrapes are forgotten (bounded memory under series churn).
const CACHE_KEEP_SCRAPES: u64 = 10;

impl ScrapeCache {
    pub fn new(base: Labels) -> Self {
        ScrapeCache {
            base,
            entries: HashMap::default(),
            generation: 0,
        }
    }

    /// Labels of an exposed sample, with the target's labels added and colliding exposed labels
    /// renamed to `exported_<name>`.
    fn series_labels(&self, s: &crate::ingest::textparse::Sample<'_>) -> Labels {
        let mut pairs: Vec<(String, String)> = Vec::with_capacity(self.base.len() + 4);
        pairs.push(("__name__".to_string(), s.name.to_string()));
        for (k, v) in s.labels() {
            let k = if self.base.get(k).is_some() {
                format!("exported_{k}")
            } else {
                k.to_string()
            };
            pairs.push((k, v.into_owned()));
        }
        pairs.extend(
            self.base
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        Labels::from_pairs(pairs)
    }

    /// Parses `body` and appends its samples at time `t` (samples with their own timestamp keep
    /// it). All or nothing: a parse error or an exceeded sample limit stores no sample from the body.
    /// Series of the previous scrape missing now get a staleness marker.
    pub fn ingest(
        &mut self,
        store: &Store,
        body: &str,
        t: i64,
        sample_limit: usize,
    ) -> Result<IngestReport, ScrapeError> {
        // a sample line is rarely shorter than 40 bytes: one allocation instead of ~20 doublings
        let mut samples = Vec::with_capacity((body.len() / 40).min(sample_limit + 1));
        for entry in Parser::new(body) {
            if let Entry::Sample(s) = entry? {
                samples.push(s);
                if samples.len() > sample_limit {
                    // count the rest without keeping them, for the error message
                    let got = samples.len()
                        + Parser::new(body)
                            .filter(|e| matches!(e, Ok(Entry::Sample(_))))
                            .count()
                            .saturating_sub(samples.len());
                    return Err(ScrapeError::SampleLimit {
                        limit: sample_limit,
                        got,
                    });
                }
            }
        }
        let previous = self.generation;
        self.generation += 1;
        let generation = self.generation;
        let mut report = IngestReport {
            scraped: samples.len(),
            ..IngestReport::default()
        };
        // one lookup per sample; samples of series not in the cache wait until they are resolved
        let mut batch: Vec<(SeriesRef, i64, f64)> = Vec::with_capacity(samples.len());
        let mut missing: Vec<usize> = Vec::new();
        for (i, s) in samples.iter().enumerate() {
            match self.entries.get_mut(s.series) {
                Some(entry) => Self::take(entry, s, t, generation, &mut batch, &mut report),
                None => missing.push(i),
            }
        }
        if !missing.is_empty() {
            // resolve new series under one store lock; a series exposed twice gets one entry
            let mut fresh: Vec<usize> = Vec::with_capacity(missing.len());
            let mut names: std::collections::HashSet<&str, BuildOneShot> = Default::default();
            for &i in &missing {
                if names.insert(samples[i].series) {
                    fresh.push(i);
                }
            }
            let labels = fresh
                .iter()
                .map(|&i| self.series_labels(&samples[i]))
                .collect();
            let ids = store.series_refs(labels);
            report.new_series = ids.len();
            for (&i, id) in fresh.iter().zip(ids) {
                self.entries.insert(
                    samples[i].series.into(),
                    CacheEntry {
                        series: id,
                        seen: 0,
                        track_staleness: false,
                    },
                );
            }
            for &i in &missing {
                let s = &samples[i];
                let entry = self.entries.get_mut(s.series).expect("resolved above");
                Self::take(entry, s, t, generation, &mut batch, &mut report);
            }
        }
        for e in self.entries.values() {
            if e.seen == previous && previous > 0 && e.track_staleness {
                batch.push((e.series, t, stale_nan()));
                report.stale += 1;
            }
        }
        let stats: AppendStats = store.append(&batch);
        report.appended = stats.appended.saturating_sub(report.stale);
        report.out_of_order = stats.out_of_order + stats.duplicates;
        self.entries
            .retain(|_, e| e.seen + CACHE_KEEP_SCRAPES > generation);
        Ok(report)
    }

    /// Queues one sample of a known series, unless the series was already seen in this scrape.
    fn take(
        entry: &mut CacheEntry,
        s: &crate::ingest::textparse::Sample<'_>,
        t: i64,
        generation: u64,
        batch: &mut Vec<(SeriesRef, i64, f64)>,
        report: &mut IngestReport,
    ) {
        if entry.seen == generation {
            report.duplicates += 1;
            return;
        }
        entry.seen = generation;
        entry.track_staleness = s.timestamp_ms.is_none();
        batch.push((entry.series, s.timestamp_ms.unwrap_or(t), s.value));
    }

    /// A failed scrape: every series of the previous scrape ends (staleness marker at `t`),
    /// as in Prometheus.
    pub fn mark_all_stale(&mut self, store: &Store, t: i64) -> usize {
        let last = self.generation;
        let batch: Vec<_> = self
            .entries
            .values()
            .filter(|e| e.seen == last && last > 0 && e.track_staleness)
            .map(|e| (e.series, t, stale_nan()))
            .collect();
        store.append(&batch);
        // nothing was seen in this (failed) scrape: the next success marks nothing twice
        self.generation += 1;
        batch.len()
    }

    /// Writes the per-scrape series: `up`, `scrape_duration_seconds`, `scrape_samples_scraped`.
    pub fn write_report(&self, store: &Store, t: i64, up: bool, seconds: f64, scraped: usize) {
        write_gauges(
            store,
            &self.base,
            t,
            &[
                ("up", if up { 1.0 } else { 0.0 }),
                ("scrape_duration_seconds", seconds),
                ("scrape_samples_scraped", scraped as f64),
            ],
        );
    }
}

fn write_gauges(store: &Store, base: &Labels, t: i64, gauges: &[(&str, f64)]) {
    let labels = gauges
        .iter()
        .map(|(name, _)| base.with("__name__", name))
        .collect();
    let ids = store.series_refs(labels);
    let batch: Vec<_> = ids
        .into_iter()
        .zip(gauges)
        .map(|(id, (_, v))| (id, t, *v))
        .collect();
    store.append(&batch);
}

/// The verdict of one health probe.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthReport {
    pub up: bool,
    /// why the probe is down, or a warning about the body
    pub error: Option<String>,
    /// per-check results of a JSON body: (check, ok, text)
    pub checks: Vec<(String, bool, String)>,
}

/// Values a JSON health body uses for "fine".
fn is_ok_word(s: &str) -> bool {
    matches!(
        s.to_ascii_lowercase().as_str(),
        "ok" | "up" | "pass" | "passed" | "healthy" | "green" | "true" | "ready"
    )
}

fn check_verdict(v: &serde_json::Value) -> (bool, String) {
    match v {
        serde_json::Value::String(s) => (is_ok_word(s), s.clone()),
        serde_json::Value::Bool(b) => (*b, b.to_string()),
        serde_json::Value::Object(m) => match m.get("status") {
            Some(serde_json::Value::String(s)) => (is_ok_word(s), v.to_string()),
            Some(serde_json::Value::Bool(b)) => (*b, v.to_string()),
            _ => (false, v.to_string()),
        },
        other => (false, other.to_string()),
    }
}

fn json_path<'a>(v: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    path.split('.').try_fold(v, |v, key| v.get(key))
}

/// Judges a health response and writes its series at `t`: `up` and `probe_success`
/// (2xx, and the JSON `status`, if any, says ok), `probe_http_status_code`, `probe_duration_seconds`,
/// `health_check_ok{check}` per entry of a JSON `checks` object (its text kept as the series' note),
/// and the configured JSON fields as gauges.
pub fn ingest_health(
    store: &Store,
    base: &Labels,
    t: i64,
    seconds: f64,
    result: &Result<Response, ScrapeError>,
    json_gauges: &[(String, String)],
    last_checks: &mut std::collections::BTreeSet<String>,
) -> HealthReport {
    let mut report = HealthReport {
        up: false,
        error: None,
        checks: Vec::new(),
    };
    let mut gauges: Vec<(String, f64)> = Vec::new();
    let status = match result {
        Err(e) => {
            report.error = Some(e.to_string());
            0
        }
        Ok(resp) => {
            let ok_status = (200..300).contains(&resp.status);
            let looks_json = resp.content_type.contains("json")
                || resp.body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
            let parsed =
                looks_json.then(|| serde_json::from_slice::<serde_json::Value>(&resp.body));
            match parsed {
                Some(Ok(json)) => {
                    let status_ok = match json.get("status") {
                        Some(v) => check_verdict(v).0,
                        None => true,
                    };
                    if let Some(serde_json::Value::Object(checks)) = json.get("checks") {
                        for (name, v) in checks {
                            let (ok, text) = check_verdict(v);
                            report.checks.push((name.clone(), ok, text));
                        }
                    }
                    let mut missing = Vec::new();
                    for (field, metric) in json_gauges {
                        match json_path(&json, field).and_then(|v| v.as_f64()) {
                            Some(x) => gauges.push((metric.clone(), x)),
                            None => missing.push(format!("{field:?}")),
                        }
                    }
                    report.up = ok_status && status_ok;
                    if report.up && !missing.is_empty() {
                        report.error = Some(format!(
                            "json fields missing or not numbers: {}",
                            missing.join(", ")
                        ));
                    }
                    if !report.up {
                        let failing: Vec<String> = report
                            .checks
                            .iter()
                            .filter(|c| !c.1)
                            .map(|c| format!("{}: {}", c.0, c.2))
                            .collect();
                        report.error = Some(if failing.is_empty() {
                            format!("HTTP status {}", resp.status)
                        } else {
                            format!("HTTP status {}; {}", resp.status, failing.join(", "))
                        });
                    }
                }
                Some(Err(e)) => {
                    report.error = Some(format!("invalid JSON body: {e}"));
                }
                None => {
                    report.up = ok_status;
                    if !ok_status {
                        report.error = Some(format!("HTTP status {}", resp.status));
                    } else if !json_gauges.is_empty() {
                        report.error =
                            Some("body is not JSON: configured fields unavailable".into());
                    }
                }
            }
            resp.status
        }
    };
    let up = if report.up { 1.0 } else { 0.0 };
    let mut fixed: Vec<(&str, f64)> = vec![
        ("up", up),
        ("probe_success", up),
        ("probe_http_status_code", f64::from(status)),
        ("probe_duration_seconds", seconds),
    ];
    for (metric, v) in &gauges {
        fixed.push((metric.as_str(), *v));
    }
    write_gauges(store, base, t, &fixed);
    if !report.checks.is_empty() {
        let labels = report
            .checks
            .iter()
            .map(|(name, _, _)| base.with("__name__", "health_check_ok").with("check", name))
            .collect();
        let ids = store.series_refs(labels);
        let batch: Vec<_> = ids
            .iter()
            .zip(&report.checks)
            .map(|(&id, (_, ok, _))| (id, t, if *ok { 1.0 } else { 0.0 }))
            .collect();
        store.append(&batch);
        for (&id, (_, _, text)) in ids.iter().zip(&report.checks) {
            store.set_note(id, t, text);
        }
    }
    // checks the last probe reported and this one did not (gone from the body, or the probe
    // failed): their series end with a stale marker, as Prometheus ends a vanished series, so
    // `health_check_ok == 0` does not stay true on the last value forever
    let now: std::collections::BTreeSet<String> =
        report.checks.iter().map(|(n, _, _)| n.clone()).collect();
    let gone: Vec<Labels> = last_checks
        .difference(&now)
        .map(|name| base.with("__name__", "health_check_ok").with("check", name))
        .collect();
    if !gone.is_empty() {
        let ids = store.series_refs(gone);
        let batch: Vec<_> = ids.iter().map(|&id| (id, t, stale_nan())).collect();
        store.append(&batch);
    }
    *last_checks = now;
    report
}
