//! Pushed samples and heartbeats: what jobs send to tocsin instead of being scraped.
//!
//! [`Push::ingest`] takes a body in the Prometheus text format (`POST /api/v1/import/prometheus`,
//! VictoriaMetrics's path) and stores its samples through the same strict parser and
//! [`ScrapeCache`] as a scrape: a parse error (with its line and column), an exposed `__name__`,
//! a label given twice, an exceeded sample limit or label limit store nothing. The extra labels
//! of the request (`extra_label=name=value`, as VictoriaMetrics) are added to every series, as a
//! target's labels are to a scrape's: a pushed label of the same name is kept as
//! `exported_<name>`. A sample without a timestamp gets the time the push was received. No
//! staleness marker is written: a push says nothing about series it does not carry.
//!
//! [`Heartbeats`] holds the last check-in of each `heartbeat` target (`POST
//! /api/v1/heartbeat/<name>`, or a push whose `job` is the target's name) and wakes the
//! target's task in the scheduler, which judges it with the pure [`heartbeat_verdict`] and
//! writes its series. The HTTP handlers read the clock and call in here; nothing here reads it.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use super::ScrapeCache;
use super::fetch::ScrapeError;
use super::textparse::{Entry, Format, Parser, text_body};
use crate::config::LabelLimits;
use crate::labels::{Labels, valid_label_name};
use crate::store::Store;

/// The most `extra_label` parameters of one push.
pub const MAX_EXTRA_LABELS: usize = 32;
/// The longest `extra_label` value, in bytes.
pub const MAX_EXTRA_LABEL_VALUE_BYTES: usize = 1024;

/// Why a push was refused (the API answers 400 with this text).
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// An `extra_label` parameter is not `name=value`, names a reserved or invalid label, is
    /// given twice or there are too many.
    #[error("invalid extra_label {param:?}: {reason}")]
    ExtraLabel { param: String, reason: String },
    /// The body is not valid text format (line and column named), exposes a reserved or
    /// repeated label, or exceeds the sample or label limits: nothing was stored.
    #[error("{0}")]
    Body(#[from] ScrapeError),
}

/// The limits pushed bodies obey (the scrape defaults: `scrape.sample_limit`, `scrape.label_*`).
#[derive(Debug, Clone, Copy)]
pub struct PushLimits {
    pub sample_limit: usize,
    pub label_limits: LabelLimits,
}

/// What one push stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushReport {
    /// samples in the body
    pub samples: usize,
    pub appended: usize,
    /// samples at or before the series' last timestamp, or exposed twice: not stored
    pub rejected: usize,
    /// the heartbeat targets this push checked in for
    pub heartbeats: Vec<String>,
}

/// Parses the `extra_label=name=value` parameters of a query string (other parameters are
/// ignored): every name a valid label name not starting with `__`, each name once.
pub fn extra_labels(query: Option<&str>) -> Result<Vec<(String, String)>, PushError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if k != "extra_label" {
            continue;
        }
        let bad = |reason: &str| PushError::ExtraLabel {
            param: v.chars().take(100).collect(),
            reason: reason.to_string(),
        };
        if out.len() == MAX_EXTRA_LABELS {
            return Err(bad(&format!("more than {MAX_EXTRA_LABELS} extra labels")));
        }
        let Some((name, value)) = v.split_once('=') else {
            return Err(bad("expected name=value"));
        };
        if !valid_label_name(name) || name.starts_with("__") {
            return Err(bad("invalid or reserved label name"));
        }
        if value.len() > MAX_EXTRA_LABEL_VALUE_BYTES {
            return Err(bad(&format!(
                "value longer than {MAX_EXTRA_LABEL_VALUE_BYTES} bytes"
            )));
        }
        if out.iter().any(|(n, _)| n == name) {
            return Err(bad("label given twice"));
        }
        out.push((name.to_string(), value.to_string()));
    }
    Ok(out)
}

/// Stores pushed bodies; shared by the HTTP handlers.
pub struct Push {
    pub store: Arc<Store>,
    pub limits: PushLimits,
    pub heartbeats: Arc<Heartbeats>,
}

impl Push {
    /// Parses and stores `body` with the `extra` labels, samples without a timestamp at `now`;
    /// then checks in the heartbeat targets named by the push's `job` (the extra label, else
    /// each sample's). All or nothing. Blocking: parsing and store writes.
    pub fn ingest(
        &self,
        body: &[u8],
        extra: &[(String, String)],
        now: i64,
    ) -> Result<PushReport, PushError> {
        let text = text_body(body).map_err(ScrapeError::from)?;
        let base = Labels::from_pairs(extra.iter().cloned());
        // a fresh cache: nothing from an earlier push (of another job) is marked stale
        let mut cache = ScrapeCache::new(base).with_label_limits(self.limits.label_limits);
        let r = cache.ingest(
            &self.store,
            text,
            Format::Text,
            now,
            self.limits.sample_limit,
        )?;
        let jobs: BTreeSet<String> = match extra.iter().find(|(k, _)| k == "job") {
            Some((_, job)) => BTreeSet::from([job.clone()]),
            None => Parser::new(text)
                .filter_map(|e| match e {
                    Ok(Entry::Sample(s)) => s
                        .labels()
                        .find(|(k, _)| *k == "job")
                        .map(|(_, v)| v.into_owned()),
                    _ => None,
                })
                .collect(),
        };
        let heartbeats = jobs
            .into_iter()
            .filter(|job| self.heartbeats.beat(job, now))
            .collect();
        Ok(PushReport {
            samples: r.scraped,
            appended: r.appended,
            rejected: r.duplicates + r.out_of_order,
            heartbeats,
        })
    }
}

/// The last check-in of one heartbeat target, and the wake-up of its task.
#[derive(Debug)]
pub struct HeartbeatCell {
    /// ms since the epoch of the last check-in; `i64::MIN` before the first
    last_seen: AtomicI64,
    /// wakes the target's task (a permit is kept when it is busy, so no check-in is missed)
    pub wake: tokio::sync::Notify,
}

impl HeartbeatCell {
    fn new() -> HeartbeatCell {
        HeartbeatCell {
            last_seen: AtomicI64::new(i64::MIN),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// The last check-in, None before the first.
    pub fn last_seen(&self) -> Option<i64> {
        Some(self.last_seen.load(Ordering::SeqCst)).filter(|&t| t != i64::MIN)
    }
}

/// The heartbeat targets by name: the scheduler registers them, the API checks them in.
#[derive(Debug, Default)]
pub struct Heartbeats {
    cells: RwLock<HashMap<String, Arc<HeartbeatCell>>>,
}

impl Heartbeats {
    /// The cell of target `name`, created on first use.
    pub fn register(&self, name: &str) -> Arc<HeartbeatCell> {
        self.cells
            .write()
            .expect("heartbeats lock")
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(HeartbeatCell::new()))
            .clone()
    }

    /// Forgets target `name` (removed by a reload): its check-ins are refused from now on.
    pub fn unregister(&self, name: &str) {
        self.cells.write().expect("heartbeats lock").remove(name);
    }

    /// Records a check-in of `name` at `now` and wakes its task; false when no heartbeat target
    /// has that name. A check-in older than the last one changes nothing.
    pub fn beat(&self, name: &str, now: i64) -> bool {
        let Some(cell) = self
            .cells
            .read()
            .expect("heartbeats lock")
            .get(name)
            .cloned()
        else {
            return false;
        };
        cell.last_seen.fetch_max(now, Ordering::SeqCst);
        cell.wake.notify_one();
        true
    }

    /// Whether a heartbeat target has this name.
    pub fn contains(&self, name: &str) -> bool {
        self.cells
            .read()
            .expect("heartbeats lock")
            .contains_key(name)
    }
}

/// The judgement of a heartbeat target at one time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatVerdict {
    /// checked in within the allowed silence (`up`)
    pub up: bool,
    /// how long it has been silent: since the last check-in, or since watching began
    pub silent_ms: i64,
    /// the first time it counts as down without another check-in
    pub down_at: i64,
}

/// Judges a heartbeat target at `now` (pure): up while silent for at most `allowed_ms`
/// (expected interval plus grace), counted from the last check-in or, when there was none
/// since, from `since` (when watching began: a target gets a full interval after tocsin starts).
pub fn heartbeat_verdict(
    last_seen: Option<i64>,
    since: i64,
    allowed_ms: i64,
    now: i64,
) -> HeartbeatVerdict {
    let from = last_seen.map_or(since, |t| t.max(since));
    let silent_ms = now - last_seen.unwrap_or(since);
    HeartbeatVerdict {
        up: now - from <= allowed_ms,
        silent_ms,
        down_at: from + allowed_ms + 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_is_down_once_silent_longer_than_allowed() {
        // (case, last seen, since, allowed, now, up, silent, down at)
        type Case = (&'static str, Option<i64>, i64, i64, i64, bool, i64, i64);
        let cases: &[Case] = &[
            // never checked in: up for the first interval after watching began
            ("fresh", None, 1_000, 5_000, 3_000, true, 2_000, 6_001),
            (
                "exactly the allowed silence",
                None,
                1_000,
                5_000,
                6_000,
                true,
                5_000,
                6_001,
            ),
            (
                "one ms too long",
                None,
                1_000,
                5_000,
                6_001,
                false,
                5_001,
                6_001,
            ),
            // a check-in restarts the count
            (
                "checked in",
                Some(10_000),
                1_000,
                5_000,
                14_999,
                true,
                4_999,
                15_001,
            ),
            (
                "silent after a check-in",
                Some(10_000),
                1_000,
                5_000,
                15_001,
                false,
                5_001,
                15_001,
            ),
            // a check-in from before watching began (an earlier run) counts from the start
            (
                "older than the start",
                Some(500),
                1_000,
                5_000,
                5_000,
                true,
                4_500,
                6_001,
            ),
        ];
        for &(case, last, since, allowed, now, up, silent, down_at) in cases {
            assert_eq!(
                heartbeat_verdict(last, since, allowed, now),
                HeartbeatVerdict {
                    up,
                    silent_ms: silent,
                    down_at
                },
                "{case}"
            );
        }
    }

    #[test]
    fn extra_labels_are_validated() {
        assert_eq!(
            extra_labels(Some("extra_label=job=cron&x=1&extra_label=site%3Dlab%3D2")).unwrap(),
            vec![
                ("job".to_string(), "cron".to_string()),
                ("site".to_string(), "lab=2".to_string())
            ]
        );
        assert!(extra_labels(None).unwrap().is_empty());
        let long = format!(
            "extra_label=a={}",
            "x".repeat(MAX_EXTRA_LABEL_VALUE_BYTES + 1)
        );
        let many: Vec<String> = (0..=MAX_EXTRA_LABELS)
            .map(|i| format!("extra_label=l{i}=v"))
            .collect();
        let many = many.join("&");
        for (query, want) in [
            ("extra_label=job", "expected name=value"),
            ("extra_label=__name__=x", "invalid or reserved label name"),
            ("extra_label=1a=x", "invalid or reserved label name"),
            ("extra_label=a=1&extra_label=a=2", "label given twice"),
            (long.as_str(), "value longer than 1024 bytes"),
            (many.as_str(), "more than 32 extra labels"),
        ] {
            let e = extra_labels(Some(query)).unwrap_err().to_string();
            assert!(e.ends_with(want), "{query}: {e}");
        }
    }

    #[test]
    fn a_check_in_wakes_the_task_and_never_goes_back_in_time() {
        let hb = Heartbeats::default();
        let cell = hb.register("cron");
        assert_eq!(cell.last_seen(), None);
        assert!(hb.beat("cron", 2_000));
        assert!(!hb.beat("other", 2_000));
        assert!(hb.beat("cron", 1_000));
        assert_eq!(cell.last_seen(), Some(2_000));
        // the permit is kept until the task waits
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(1), cell.wake.notified())
                .await
                .expect("woken");
        });
    }
}
