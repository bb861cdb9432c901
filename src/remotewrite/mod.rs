//! Remote write out: Prometheus remote write 1.0 to VictoriaMetrics, Prometheus
//! (`--web.enable-remote-write-receiver`), Mimir or Thanos Receive (`remote_write:` in
//! `tocsin.yml`, `config/remote_write.rs`). With `ingest/`, `notify/` and `datasource/`, the
//! only code that connects out (`tests/it/architecture.rs`).
//!
//! The queue is the store's ([`Store::rw_next`], the outbox pattern for samples): every flush
//! and evaluation commit queues its samples in the transaction that stores them, and each
//! entry's position is written after each accepted request, so a receiver that is down only
//! grows the backlog and a restart resumes where the last acknowledged request ended. One task
//! per entry sends the queue in order (one request in flight: per series, samples arrive in
//! the order they were written, which Prometheus's receiver requires); it never blocks a
//! scrape or a rule, which only write to the store.
//!
//! A request: the protobuf `WriteRequest` of `prompb/remote.proto` and `types.proto` (messages
//! written by hand below with prost's derive, field numbers as there), snappy's block format
//! (not the framed one), `Content-Encoding: snappy`, `Content-Type: application/x-protobuf`,
//! `X-Prometheus-Remote-Write-Version: 0.1.0`, `User-Agent: tocsin/<version>`.
//! `external_labels` are added to every series (its own label of the same name wins), as
//! Prometheus does. An answer is classified once ([`classify`]): 2xx sent; 5xx, 429 (its
//! `Retry-After` honoured up to [`MAX_RETRY_AFTER`]), a timeout or no connection retried with
//! [`Backoff`]; any other status dropped with a counted error (the receiver refuses the data:
//! retrying would block the queue for ever). A backlog over `max_pending_samples` drops its
//! oldest batches ([`overflow`]), counted and logged; so do batches whose newest sample is older
//! than `queue.max_age` (by default the store's retention: [`expired`]), before the count bound.
//!
//! Time: the task reads its [`Clock`] once per attempt (to read a `Retry-After` date) and once
//! per look at the backlog (for its age bound); waits use tokio's timer, so paused-time tests
//! drive them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::Clock;
use crate::config::remote_write::RemoteWrite;
use crate::labels::Labels;
use crate::selfmetrics::{RemoteLabels, RemoteReasonLabels, SelfMetrics};
use crate::store::{RW_RULES, RW_SCRAPED, RwPosition, RwQueued, RwRow, SeriesRef, Store};

/// The longest `Retry-After` honoured; a longer one waits this long.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// Bytes of an error answer kept for the log line.
const ERROR_BODY_LIMIT: usize = 512;

/// `prometheus.WriteRequest` (remote.proto): field 1 the series; 2 is reserved, 3 (metadata)
/// is not sent.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries` (types.proto): labels sorted by name, samples ascending in time;
/// exemplars (3) and native histograms (4) are not sent.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label` (types.proto).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample` (types.proto): the value (a staleness marker keeps its NaN bits) and
/// the time in ms.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// The request body: protobuf, compressed with snappy's block format.
pub fn encode(req: &WriteRequest) -> Result<Vec<u8>, snap::Error> {
    use prost::Message;
    snap::raw::Encoder::new().compress_vec(&req.encode_to_vec())
}

/// What a slice of a queued row becomes.
#[derive(Debug, Default)]
pub struct Built {
    pub request: WriteRequest,
    /// samples in the request
    pub samples: usize,
    /// samples whose series' labels are gone (dropped, counted)
    pub unknown: usize,
    /// the newest sample time in the request
    pub maxt: Option<i64>,
}

/// The request for `samples` (a slice of a queued row, in write order): one `TimeSeries` per
/// series in order of first appearance, its samples in write order (ascending per series),
/// `external` added to its labels; samples whose series `keep` refuses are left out.
pub fn build_request(
    samples: &[(SeriesRef, i64, f64)],
    labels: &HashMap<SeriesRef, Arc<Labels>>,
    external: &Labels,
    keep: impl Fn(&Labels) -> bool,
) -> Built {
    let mut out = Built::default();
    let mut index: HashMap<SeriesRef, Option<usize>> = HashMap::new();
    for &(id, t, v) in samples {
        let slot = *index.entry(id).or_insert_with(|| {
            let l = labels.get(&id)?;
            if !keep(l) {
                return None;
            }
            let l = l.with_defaults(external);
            out.request.timeseries.push(TimeSeries {
                labels: l
                    .iter()
                    .map(|(name, value)| Label {
                        name: name.to_string(),
                        value: value.to_string(),
                    })
                    .collect(),
                samples: Vec::new(),
            });
            Some(out.request.timeseries.len() - 1)
        });
        match slot {
            Some(i) => {
                out.request.timeseries[i].samples.push(Sample {
                    value: v,
                    timestamp: t,
                });
                out.samples += 1;
                out.maxt = Some(out.maxt.map_or(t, |m| m.max(t)));
            }
            None if !labels.contains_key(&id) => out.unknown += 1,
            None => {}
        }
    }
    out
}

/// What an answer means for the samples sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// accepted (2xx)
    Sent,
    /// try again, after at least `after` when the receiver said so; `reason` labels the
    /// failure counter
    Retry {
        reason: &'static str,
        after: Option<Duration>,
    },
    /// refused for good (another status): dropped, counted
    Reject { status: u16 },
}

/// Classifies an HTTP answer: 2xx sent; 429 retried after its `Retry-After` (seconds or an
/// HTTP date, relative to `now_ms`; at most [`MAX_RETRY_AFTER`]); 5xx retried; anything else
/// (a 4xx, or a 1xx/3xx the client did not follow) rejected.
pub fn classify(status: u16, retry_after: Option<&str>, now_ms: i64) -> Outcome {
    match status {
        200..=299 => Outcome::Sent,
        429 => Outcome::Retry {
            reason: "http_429",
            after: retry_after
                .and_then(|v| parse_retry_after(v, now_ms))
                .map(|d| d.min(MAX_RETRY_AFTER)),
        },
        500..=599 => Outcome::Retry {
            reason: "http_5xx",
            after: None,
        },
        _ => Outcome::Reject { status },
    }
}

/// `Retry-After`: delay seconds, or an HTTP date (a date in the past: no wait).
fn parse_retry_after(value: &str, now_ms: i64) -> Option<Duration> {
    let value = value.trim();
    if let Ok(s) = value.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let ms = at.timestamp_millis().saturating_sub(now_ms).max(0);
    Some(Duration::from_millis(ms as u64))
}

/// Exponential backoff: `min`, doubled after each failure, at most `max`; back to `min` after
/// a success. A pure sequence (no clock), tested without sleeping.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// The wait before the next attempt; the one after is twice as long (up to `max`).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// When `backlog` (oldest first) holds more than `max` samples: the position after the oldest
/// rows that must go for at most `max` to remain, and the samples they hold. Whole rows go,
/// so what remains is whole batches in order.
pub fn overflow(backlog: &[RwQueued], max: u64) -> Option<(RwPosition, u64)> {
    let total: u64 = backlog.iter().map(|q| q.samples).sum();
    if total <= max {
        return None;
    }
    let mut dropped = 0;
    let mut last = None;
    for q in backlog {
        if total - dropped <= max {
            break;
        }
        dropped += q.samples;
        last = Some(q.id);
    }
    last.map(|row| {
        (
            RwPosition {
                row,
                done: u64::MAX,
            },
            dropped,
        )
    })
}

/// The oldest rows of `backlog` (oldest first) whose newest sample is before `cutoff` (ms): the
/// position after them and the samples they hold. Only a prefix goes, so what remains is whole
/// batches in order; a row of old samples queued behind a newer one (a push with old
/// timestamps) waits for its turn.
pub fn expired(backlog: &[RwQueued], cutoff: i64) -> Option<(RwPosition, u64)> {
    let old = backlog.iter().take_while(|q| q.maxt < cutoff);
    let (last, dropped) = old.fold((None, 0), |(_, n), q| (Some(q.id), n + q.samples));
    last.map(|row| {
        (
            RwPosition {
                row,
                done: u64::MAX,
            },
            dropped,
        )
    })
}

/// The store's queue kinds an entry reads.
fn kinds(rw: &RemoteWrite) -> u8 {
    let mut k = 0;
    if rw.send.scraped {
        k |= RW_SCRAPED;
    }
    if rw.send.recorded || rw.send.alerts {
        k |= RW_RULES;
    }
    k
}

/// The queue kinds any of `entries` reads: what the store must queue.
pub fn queue_kinds(entries: &[RemoteWrite]) -> u8 {
    entries.iter().fold(0, |k, rw| k | kinds(rw))
}

fn is_alert_series(l: &Labels) -> bool {
    matches!(l.metric_name(), Some("ALERTS" | "ALERTS_FOR_STATE"))
}

/// One remote write entry's sender.
pub struct RemoteWriter {
    pub rw: RemoteWrite,
    pub store: Arc<Store>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<SelfMetrics>,
    /// `external_labels`, added to every series
    pub external_labels: Labels,
}

/// Why a request did not go through.
enum Failure {
    Retry {
        reason: &'static str,
        after: Option<Duration>,
        detail: String,
    },
    Reject {
        status: u16,
        detail: String,
    },
}

impl RemoteWriter {
    fn remote(&self) -> RemoteLabels {
        RemoteLabels {
            remote: self.rw.name.clone(),
        }
    }

    fn count(&self, dropped: bool, reason: &'static str, n: usize) {
        let labels = RemoteReasonLabels {
            remote: self.rw.name.clone(),
            reason,
        };
        let m = &self.metrics.remote_write;
        let family = if dropped {
            &m.samples_dropped
        } else {
            &m.samples_failed
        };
        family.get_or_create(&labels).inc_by(n as u64);
    }

    /// Runs a store call on a blocking thread; None after a panic or a store error (logged).
    async fn store_call<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce(&Store) -> Result<T, crate::store::StoreError> + Send + 'static,
    ) -> Option<T> {
        let store = self.store.clone();
        match crate::task::blocking(&self.metrics, "remote_write", &self.rw.name, move || {
            f(&store)
        })
        .await?
        {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::error!(remote = self.rw.name, error = %e, what, "remote write cannot use the store");
                None
            }
        }
    }

    /// Sends the queue until `shutdown` says stop (a request in flight finishes, bounded by
    /// its timeout; the rest stays queued for the next start).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let http = reqwest::Client::builder()
            .user_agent(concat!("tocsin/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("http client builds");
        let kinds = kinds(&self.rw);
        let name = self.rw.name.clone();
        let mut written = self.store.rw_subscribe();
        let mut backoff = Backoff::new(self.rw.min_backoff, self.rw.max_backoff);
        let mut pos = loop {
            let n = name.clone();
            match self
                .store_call("position", move |s| s.rw_position(&n))
                .await
            {
                Some(Some(p)) => break p,
                Some(None) => {
                    tracing::error!(remote = name, "remote write entry has no queue position");
                    return;
                }
                None => {
                    if !self.pause(backoff.next_delay(), &mut shutdown).await {
                        return;
                    }
                }
            }
        };
        backoff.reset();
        let mut row: Option<RwRow> = None;
        let mut newest_sent: Option<i64> = None;
        // samples waiting when the current row was read, minus those sent or skipped since
        let mut pending: u64 = 0;
        let mut newest_queued: Option<i64> = None;
        tracing::info!(remote = name, "remote write started");
        loop {
            if *shutdown.borrow() {
                return;
            }
            if row.is_none() {
                // a row boundary: the backlog's bound, the gauges, and the next row
                written.borrow_and_update();
                let Some(backlog) = self
                    .store_call("backlog", move |s| s.rw_backlog(pos, kinds))
                    .await
                else {
                    if !self.pause(backoff.next_delay(), &mut shutdown).await {
                        return;
                    }
                    continue;
                };
                let (backlog, dropped_to) = match self.bound(backlog, self.clock.now_ms()).await {
                    Some(b) => b,
                    None => {
                        if !self.pause(backoff.next_delay(), &mut shutdown).await {
                            return;
                        }
                        continue;
                    }
                };
                if let Some(to) = dropped_to {
                    pos = to;
                }
                pending = backlog.iter().map(|q| q.samples).sum();
                newest_queued = backlog.iter().map(|q| q.maxt).max().or(newest_queued);
                self.observe(pending, newest_queued, newest_sent);
                if backlog.is_empty() {
                    tokio::select! {
                        _ = written.changed() => {}
                        _ = tokio::time::sleep(self.rw.batch_send_deadline) => {}
                        _ = shutdown.changed() => return,
                    }
                    continue;
                }
                match self
                    .store_call("read", move |s| s.rw_next(pos, kinds))
                    .await
                {
                    Some(Some(r)) => {
                        if r.damaged {
                            let lost = backlog
                                .iter()
                                .find(|q| q.id == r.id)
                                .map_or(0, |q| q.samples);
                            tracing::error!(
                                remote = name,
                                row = r.id,
                                samples = lost,
                                "remote write: a queued batch does not decode (damaged store); skipped"
                            );
                            self.count(true, "damaged", lost as usize);
                        }
                        row = Some(r);
                    }
                    Some(None) => continue,
                    None => {
                        if !self.pause(backoff.next_delay(), &mut shutdown).await {
                            return;
                        }
                        continue;
                    }
                }
            }
            let r = row.as_ref().expect("a row was read");
            let start = if r.id == pos.row && pos.done != u64::MAX {
                (pos.done as usize).min(r.samples.len())
            } else {
                0
            };
            let end = (start + self.rw.max_samples_per_send).min(r.samples.len());
            let send = self.rw.send;
            let built = build_request(
                &r.samples[start..end],
                &r.labels,
                &self.external_labels,
                |l| {
                    if !self.rw.sends_name(l.metric_name().unwrap_or("")) {
                        false
                    } else if r.kind == RW_SCRAPED {
                        send.scraped
                    } else if is_alert_series(l) {
                        send.alerts
                    } else {
                        send.recorded
                    }
                },
            );
            if built.unknown > 0 {
                tracing::warn!(
                    remote = name,
                    samples = built.unknown,
                    "remote write: samples of series no longer in the store dropped"
                );
                self.count(true, "unknown_series", built.unknown);
            }
            if built.samples > 0 {
                let body = match encode(&built.request) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::error!(remote = name, error = %e, "remote write request cannot be compressed; dropped");
                        self.count(true, "rejected", built.samples);
                        Vec::new()
                    }
                };
                // the same request until it is accepted or refused (or its row dropped with the
                // oldest of a backlog over its bound)
                let mut abandoned = None;
                while !body.is_empty() {
                    if *shutdown.borrow() {
                        return;
                    }
                    let now = self.clock.now_ms();
                    match self.attempt(&http, body.clone(), now).await {
                        Ok(()) => {
                            backoff.reset();
                            self.metrics
                                .remote_write
                                .samples_sent
                                .get_or_create(&self.remote())
                                .inc_by(built.samples as u64);
                            newest_sent = built.maxt.max(newest_sent);
                            break;
                        }
                        Err(Failure::Reject { status, detail }) => {
                            tracing::error!(
                                remote = name,
                                status,
                                samples = built.samples,
                                answer = detail,
                                "remote write receiver refused samples; dropped"
                            );
                            self.count(false, "http_4xx", built.samples);
                            self.count(true, "rejected", built.samples);
                            break;
                        }
                        Err(Failure::Retry {
                            reason,
                            after,
                            detail,
                        }) => {
                            self.count(false, reason, built.samples);
                            let wait = backoff.next_delay().max(after.unwrap_or_default());
                            tracing::warn!(
                                remote = name,
                                reason,
                                error = detail,
                                retry_in_ms = wait.as_millis() as u64,
                                "remote write failed; retrying"
                            );
                            if !self.pause(wait, &mut shutdown).await {
                                return;
                            }
                            // the backlog grows meanwhile: its gauges and its bound
                            let b = self
                                .store_call("backlog", move |s| s.rw_backlog(pos, kinds))
                                .await;
                            if let Some((backlog, dropped_to)) = match b {
                                Some(b) => self.bound(b, self.clock.now_ms()).await,
                                None => None,
                            } {
                                pending = backlog.iter().map(|q| q.samples).sum();
                                newest_queued =
                                    backlog.iter().map(|q| q.maxt).max().or(newest_queued);
                                self.observe(pending, newest_queued, newest_sent);
                                if dropped_to.is_some() {
                                    abandoned = dropped_to;
                                    break;
                                }
                            }
                        }
                    }
                }
                if let Some(to) = abandoned {
                    pos = to;
                    row = None;
                    continue;
                }
            }
            let finished = end >= r.samples.len();
            let to = RwPosition {
                row: r.id,
                done: if finished { u64::MAX } else { end as u64 },
            };
            // the position is durable before the next request: a restart resends at most the
            // request in flight
            loop {
                let n = name.clone();
                if self
                    .store_call("ack", move |s| s.rw_ack(&n, to))
                    .await
                    .is_some()
                {
                    break;
                }
                if !self.pause(backoff.next_delay(), &mut shutdown).await {
                    return;
                }
            }
            pos = to;
            pending = pending.saturating_sub((end - start) as u64);
            self.observe(pending, newest_queued, newest_sent);
            if finished {
                row = None;
            }
        }
    }

    /// Enforces the backlog's bounds on `backlog` (the queue after the position, oldest first)
    /// at `now`: drops the oldest whole rows older than `max_age`, then the oldest over
    /// `max_pending_samples` (the position moves past them, durably; each counted by its reason
    /// and logged). Returns what remains and the new position if it moved; None when the store
    /// failed.
    async fn bound(
        &self,
        backlog: Vec<RwQueued>,
        now: i64,
    ) -> Option<(Vec<RwQueued>, Option<RwPosition>)> {
        let max_age_ms = i64::try_from(self.rw.max_age.as_millis()).unwrap_or(i64::MAX);
        let old = expired(&backlog, now.saturating_sub(max_age_ms));
        let young: Vec<RwQueued> = match old {
            Some((to, _)) => backlog.into_iter().filter(|q| q.id > to.row).collect(),
            None => backlog,
        };
        let over = overflow(&young, self.rw.max_pending_samples);
        let Some((to, _)) = over.or(old) else {
            return Some((young, None));
        };
        let n = self.rw.name.clone();
        self.store_call("ack", move |s| s.rw_ack(&n, to)).await?;
        if let Some((_, dropped)) = old {
            tracing::warn!(
                remote = self.rw.name,
                dropped,
                max_age = %crate::duration::PromDuration(self.rw.max_age),
                "remote write backlog older than its max_age: oldest samples dropped"
            );
            self.count(true, "too_old", dropped as usize);
        }
        if let Some((_, dropped)) = over {
            tracing::error!(
                remote = self.rw.name,
                dropped,
                max_pending_samples = self.rw.max_pending_samples,
                "remote write backlog over its bound: oldest samples dropped"
            );
            self.count(true, "backlog", dropped as usize);
        }
        let rest = young.into_iter().filter(|q| q.id > to.row).collect();
        Some((rest, Some(to)))
    }

    /// Sets the pending and lag gauges.
    fn observe(&self, pending: u64, newest_queued: Option<i64>, newest_sent: Option<i64>) {
        let m = &self.metrics.remote_write;
        m.samples_pending
            .get_or_create(&self.remote())
            .set(pending as i64);
        let lag = match (pending, newest_queued, newest_sent) {
            (0, _, _) => 0.0,
            (_, Some(q), Some(s)) => (q - s).max(0) as f64 / 1000.0,
            _ => 0.0,
        };
        m.lag_seconds.get_or_create(&self.remote()).set(lag);
    }

    /// Waits `d`; false when shutdown came first.
    async fn pause(&self, d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => !*shutdown.borrow(),
            _ = shutdown.changed() => false,
        }
    }

    /// One request, classified.
    async fn attempt(
        &self,
        http: &reqwest::Client,
        body: Vec<u8>,
        now: i64,
    ) -> Result<(), Failure> {
        let mut req = http
            .post(self.rw.url.clone())
            .header(reqwest::header::CONTENT_ENCODING, "snappy")
            .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body);
        for (k, v) in &self.rw.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if let Some(token) = &self.rw.bearer_token {
            req = req.bearer_auth(&token.0);
        }
        if let Some((user, password)) = &self.rw.basic_auth {
            req = req.basic_auth(user, Some(&password.0));
        }
        let work = async {
            let resp = req.send().await.map_err(|e| Failure::Retry {
                reason: "network",
                after: None,
                detail: crate::error::chain(&e.without_url()),
            })?;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let outcome = classify(status, retry_after.as_deref(), now);
            if outcome == Outcome::Sent {
                return Ok(());
            }
            // a short excerpt of the answer for the log line; the rest is not read
            let mut detail = Vec::new();
            let mut resp = resp;
            while detail.len() < ERROR_BODY_LIMIT {
                match resp.chunk().await {
                    Ok(Some(c)) => detail.extend_from_slice(&c),
                    _ => break,
                }
            }
            detail.truncate(ERROR_BODY_LIMIT);
            let detail = format!("{status}: {}", String::from_utf8_lossy(&detail).trim());
            Err(match outcome {
                Outcome::Retry { reason, after } => Failure::Retry {
                    reason,
                    after,
                    detail,
                },
                Outcome::Reject { status } => Failure::Reject { status, detail },
                Outcome::Sent => unreachable!("handled above"),
            })
        };
        tokio::time::timeout(self.rw.timeout, work)
            .await
            .unwrap_or_else(|_| {
                Err(Failure::Retry {
                    reason: "timeout",
                    after: None,
                    detail: format!(
                        "timeout after {}",
                        crate::duration::PromDuration(self.rw.timeout)
                    ),
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn a_request_decodes_back_with_grouped_series_external_labels_and_exact_values() {
        let mut labels = HashMap::new();
        labels.insert(1, Arc::new(l(&[("__name__", "up"), ("job", "a")])));
        labels.insert(2, Arc::new(l(&[("__name__", "x"), ("replica", "own")])));
        let stale = f64::from_bits(0x7ff0000000000002);
        let samples = [
            (1, 1000, 1.0),
            (2, 1000, -0.5),
            (1, 2000, stale),
            (3, 2000, 9.0), // a series whose labels are gone
            (2, 3000, f64::INFINITY),
        ];
        let ext = l(&[("replica", "a"), ("dc", "x")]);
        let built = build_request(&samples, &labels, &ext, |_| true);
        assert_eq!(
            (built.samples, built.unknown, built.maxt),
            (4, 1, Some(3000))
        );
        let body = encode(&built.request).unwrap();
        // snappy's block format (no stream identifier chunk), then protobuf
        assert_ne!(&body[..4], b"\xff\x06\x00\x00");
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let back = WriteRequest::decode(raw.as_slice()).unwrap();
        assert_eq!(back.timeseries.len(), 2);
        let names = |ts: &TimeSeries| {
            ts.labels
                .iter()
                .map(|l| format!("{}={}", l.name, l.value))
                .collect::<Vec<_>>()
                .join(",")
        };
        // sorted by name; the series' own replica wins over the external one
        assert_eq!(
            names(&back.timeseries[0]),
            "__name__=up,dc=x,job=a,replica=a"
        );
        assert_eq!(names(&back.timeseries[1]), "__name__=x,dc=x,replica=own");
        let s0: Vec<(i64, u64)> = back.timeseries[0]
            .samples
            .iter()
            .map(|s| (s.timestamp, s.value.to_bits()))
            .collect();
        assert_eq!(s0, vec![(1000, 1f64.to_bits()), (2000, stale.to_bits())]);
        let s1: Vec<(i64, f64)> = back.timeseries[1]
            .samples
            .iter()
            .map(|s| (s.timestamp, s.value))
            .collect();
        assert_eq!(s1, vec![(1000, -0.5), (3000, f64::INFINITY)]);
        // a filter leaves series out without counting them as unknown
        let built = build_request(&samples, &labels, &Labels::default(), |l| {
            l.metric_name() == Some("x")
        });
        assert_eq!((built.samples, built.unknown), (2, 1));
    }

    #[test]
    fn field_numbers_are_those_of_prompb() {
        // hand-encoded: WriteRequest{timeseries: [{labels: [{name: "a", value: "b"}],
        // samples: [{value: 1.0, timestamp: 5}]}]}
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: "a".into(),
                    value: "b".into(),
                }],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: 5,
                }],
            }],
        };
        let mut want = vec![
            0x0a, 21, 0x0a, 6, 0x0a, 1, b'a', 0x12, 1, b'b', 0x12, 11, 0x09,
        ];
        want.extend_from_slice(&1f64.to_le_bytes());
        want.extend_from_slice(&[0x10, 5]);
        assert_eq!(req.encode_to_vec(), want);
    }

    #[test]
    fn answers_are_classified_once() {
        let now = 1_700_000_000_000;
        // (status, Retry-After, expected)
        let cases: &[(u16, Option<&str>, Outcome)] = &[
            (200, None, Outcome::Sent),
            (204, None, Outcome::Sent),
            // overloaded: retried after what it asks, at most 5 minutes
            (
                429,
                Some("7"),
                Outcome::Retry {
                    reason: "http_429",
                    after: Some(Duration::from_secs(7)),
                },
            ),
            (
                429,
                Some("86400"),
                Outcome::Retry {
                    reason: "http_429",
                    after: Some(MAX_RETRY_AFTER),
                },
            ),
            (
                429,
                Some("Tue, 14 Nov 2023 22:13:30 GMT"),
                Outcome::Retry {
                    reason: "http_429",
                    after: Some(Duration::from_millis(10_000)),
                },
            ),
            (
                429,
                Some("soon"),
                Outcome::Retry {
                    reason: "http_429",
                    after: None,
                },
            ),
            (
                429,
                None,
                Outcome::Retry {
                    reason: "http_429",
                    after: None,
                },
            ),
            // the receiver's trouble: retried
            (
                500,
                None,
                Outcome::Retry {
                    reason: "http_5xx",
                    after: None,
                },
            ),
            (
                503,
                Some("5"),
                Outcome::Retry {
                    reason: "http_5xx",
                    after: None,
                },
            ),
            // the data is refused: retrying would block the queue for ever
            (400, None, Outcome::Reject { status: 400 }),
            (401, None, Outcome::Reject { status: 401 }),
            (413, None, Outcome::Reject { status: 413 }),
            (302, None, Outcome::Reject { status: 302 }),
        ];
        for (status, ra, want) in cases {
            assert_eq!(&classify(*status, *ra, now), want, "{status} {ra:?}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_maximum_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(30), Duration::from_millis(200));
        let seq: Vec<u128> = (0..6).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(seq, vec![30, 60, 120, 200, 200, 200]);
        b.reset();
        assert_eq!(b.next_delay().as_millis(), 30);
    }

    #[test]
    fn an_overflowing_backlog_drops_whole_oldest_rows() {
        let q = |id, samples| RwQueued {
            id,
            samples,
            maxt: id * 1000,
        };
        let backlog = [q(1, 100), q(2, 100), q(3, 100)];
        assert_eq!(overflow(&backlog, 300), None);
        assert_eq!(
            overflow(&backlog, 250),
            Some((
                RwPosition {
                    row: 1,
                    done: u64::MAX
                },
                100
            ))
        );
        assert_eq!(
            overflow(&backlog, 100),
            Some((
                RwPosition {
                    row: 2,
                    done: u64::MAX
                },
                200
            ))
        );
        // a single row larger than the bound goes whole
        assert_eq!(
            overflow(&backlog[2..], 10),
            Some((
                RwPosition {
                    row: 3,
                    done: u64::MAX
                },
                100
            ))
        );
        assert_eq!(overflow(&[], 0), None);
    }

    #[test]
    fn batches_older_than_the_cutoff_go_as_a_prefix() {
        let q = |id, samples, maxt| RwQueued { id, samples, maxt };
        let backlog = [
            q(1, 10, 1_000),
            q(2, 20, 2_000),
            q(3, 30, 5_000),
            q(4, 40, 1_500),
        ];
        let at = |row| RwPosition {
            row,
            done: u64::MAX,
        };
        // nothing older than the cutoff: nothing goes
        assert_eq!(expired(&backlog, 1_000), None);
        // the newest sample decides: a row is old only when all of it is
        assert_eq!(expired(&backlog, 1_001), Some((at(1), 10)));
        assert_eq!(expired(&backlog, 2_001), Some((at(2), 30)));
        // an old row behind a young one waits for its turn: only a prefix goes, in order
        assert_eq!(expired(&backlog, 5_000), Some((at(2), 30)));
        assert_eq!(expired(&backlog, 9_000), Some((at(4), 100)));
        assert_eq!(expired(&[], i64::MAX), None);
    }
}
