//! The scrape cache and metrics ingest: an exposition body to samples in the store. CPU work and
//! store writes: run on a blocking thread.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::fetch::ScrapeError;
use super::health::write_gauges;
use crate::config::LabelLimits;
use crate::hash::BuildOneShot;
use crate::ingest::textparse::{Entry, Format, Parser, Sample};
use crate::labels::Labels;
use crate::store::{AppendStats, SeriesRef, Store, chunk::stale_nan};

/// 8 bytes, so a map entry is 24 with its key instead of 32 (with a `u64` scrape number and a
/// `bool`, and a 16-aligned `u128` key): ~10 bytes a series (`benches/memory.rs`).
struct CacheEntry {
    series: SeriesRef,
    /// the low 31 bits of the scrape number that last saw this series (duplicates, staleness and
    /// pruning; compared modulo 2^31, and entries leave after `CACHE_KEEP_SCRAPES`), and in the
    /// top bit whether the last sample had no explicit timestamp, so the series ends with a
    /// staleness marker when it vanishes (Prometheus does not mark series that carry their own
    /// timestamps)
    seen: u32,
}

/// The low 31 bits of a scrape number, as [`CacheEntry::seen`] keeps it.
fn stamp(generation: u64) -> u32 {
    generation as u32 & GENERATION_MASK
}

const GENERATION_MASK: u32 = u32::MAX >> 1;
const TRACK_STALENESS: u32 = !GENERATION_MASK;

impl CacheEntry {
    fn seen_in(&self, generation: u64) -> bool {
        self.seen & GENERATION_MASK == stamp(generation)
    }

    fn track_staleness(&self) -> bool {
        self.seen & TRACK_STALENESS != 0
    }

    fn set_seen(&mut self, generation: u64, track_staleness: bool) {
        self.seen = stamp(generation) | if track_staleness { TRACK_STALENESS } else { 0 };
    }

    /// Scrapes since the one that last saw the series (modulo 2^31).
    fn age(&self, generation: u64) -> u32 {
        stamp(generation).wrapping_sub(self.seen & GENERATION_MASK) & GENERATION_MASK
    }
}

/// The cache key: the 128-bit xxh3 of a raw series text ([`series_key`]), as two words (a `u128`
/// is 16-aligned and would pad every entry to 32 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct SeriesKey(u64, u64);

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
    limits: LabelLimits,
    /// keyed by the 128-bit xxh3 of the raw series text ([`series_key`]), looked up 100k times a
    /// scrape: the texts themselves (60-100 bytes each) are not kept, which saved ~60 bytes a
    /// series (`benches/memory.rs`); two texts with one key would need ~2^64 series
    entries: HashMap<SeriesKey, CacheEntry, BuildHasherDefault<KeyHasher>>,
    /// the scrape number of the last successful scrape; series seen then and not now are stale
    generation: u64,
}

/// The cache key of a raw series text (metric name plus label block as exposed).
fn series_key(series: &str) -> SeriesKey {
    let h = xxhash_rust::xxh3::xxh3_128(series.as_bytes());
    SeriesKey(h as u64, (h >> 64) as u64)
}

/// Hashes a [`series_key`], which is a hash already: its two words XORed.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        // not used by the two-word keys; correct for anything else
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }
    fn write_u64(&mut self, i: u64) {
        self.0 ^= i;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A scrape whose new series exceeds one of the target's label limits (Prometheus's
/// `label_limit`, `label_name_length_limit`, `label_value_length_limit`): the scrape fails as a
/// whole. Counts and lengths are of the stored series: the metric name as `__name__` and the
/// target's labels included, lengths in bytes, as in Prometheus.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {limit} of {value} exceeded by {metric}: {detail}")]
pub struct LabelLimitError {
    pub line: usize,
    /// the setting's name, e.g. `label_limit`
    pub limit: &'static str,
    /// the setting's value
    pub value: usize,
    /// the sample's metric name (at most 60 bytes of it)
    pub metric: String,
    pub detail: String,
}

/// A short quote of a name for limit errors.
fn clip(s: &str) -> String {
    let mut end = s.len().min(60);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    if end < s.len() {
        format!("{}…", &s[..end])
    } else {
        s.to_string()
    }
}

/// Entries unseen for this many scrapes are forgotten (bounded memory under series churn).
const CACHE_KEEP_SCRAPES: u64 = 10;

impl ScrapeCache {
    pub fn new(base: Labels) -> Self {
        ScrapeCache {
            base,
            limits: LabelLimits::default(),
            entries: HashMap::default(),
            generation: 0,
        }
    }

    /// The target's label limits, checked on each new series (a known series passed them).
    pub fn with_label_limits(mut self, limits: LabelLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Labels of an exposed sample, with the target's labels added and colliding exposed labels
    /// renamed to `exported_<name>`, within the target's label limits. (The parser refuses an
    /// exposed `__name__` and a label name given twice.)
    fn series_labels(&self, s: &Sample<'_>) -> Result<Labels, LabelLimitError> {
        let limits = self.limits;
        let fail = |limit: &'static str, value: usize, detail: String| LabelLimitError {
            line: s.line,
            limit,
            value,
            metric: clip(s.name),
            detail,
        };
        // the metric name and the target's labels count: the limit is on the stored series
        let fixed = 1 + self.base.len();
        let mut pairs: Vec<(String, String)> = Vec::with_capacity(fixed + 4);
        pairs.push(("__name__".to_string(), s.name.to_string()));
        for (k, v) in s.labels() {
            if limits.label_limit > 0 && pairs.len() + self.base.len() >= limits.label_limit {
                // stop at the first label too many: a line with 100k labels costs no more
                let total = fixed + s.labels().count();
                return Err(fail(
                    "label_limit",
                    limits.label_limit,
                    format!("{total} labels (the metric name and the target's labels included)"),
                ));
            }
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
        if limits.label_limit > 0 && pairs.len() > limits.label_limit {
            return Err(fail(
                "label_limit",
                limits.label_limit,
                format!(
                    "{} labels (the metric name and the target's labels included)",
                    pairs.len()
                ),
            ));
        }
        for (k, v) in &pairs {
            if limits.label_name_length_limit > 0 && k.len() > limits.label_name_length_limit {
                return Err(fail(
                    "label_name_length_limit",
                    limits.label_name_length_limit,
                    format!("label name {:?} is {} bytes", clip(k), k.len()),
                ));
            }
            if limits.label_value_length_limit > 0 && v.len() > limits.label_value_length_limit {
                return Err(fail(
                    "label_value_length_limit",
                    limits.label_value_length_limit,
                    format!("the value of label {:?} is {} bytes", clip(k), v.len()),
                ));
            }
        }
        Ok(Labels::from_pairs(pairs))
    }

    /// Parses `body` (in `format`) and appends its samples at time `t` (samples with their own
    /// timestamp keep it). All or nothing: a parse error, an exceeded sample limit or label limit
    /// stores no sample from the body. Series of the previous scrape missing now get a staleness
    /// marker.
    pub fn ingest(
        &mut self,
        store: &Store,
        body: &str,
        format: Format,
        t: i64,
        sample_limit: usize,
    ) -> Result<IngestReport, ScrapeError> {
        // a sample line is rarely shorter than 40 bytes: one allocation instead of ~20 doublings
        let mut samples = Vec::with_capacity((body.len() / 40).min(sample_limit + 1));
        for entry in Parser::with_format(body, format) {
            if let Entry::Sample(s) = entry? {
                samples.push(s);
                if samples.len() > sample_limit {
                    // count the rest without keeping them, for the error message
                    let got = samples.len()
                        + Parser::with_format(body, format)
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
            match self.entries.get_mut(&series_key(s.series)) {
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
            // a series is checked once, when first seen: its text is the cache key after that
            let labels = match fresh
                .iter()
                .map(|&i| self.series_labels(&samples[i]))
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(labels) => labels,
                Err(e) => {
                    // the scrape fails as a whole: undo this scrape's marks, so the caller's
                    // `mark_all_stale` marks the series of the last successful scrape (a series
                    // seen now after an older gap gets a second, harmless staleness marker)
                    for entry in self.entries.values_mut() {
                        if entry.seen_in(generation) {
                            let track = entry.track_staleness();
                            entry.set_seen(previous, track);
                        }
                    }
                    self.generation = previous;
                    return Err(e.into());
                }
            };
            let ids = store.series_refs(labels);
            report.new_series = ids.len();
            for (&i, id) in fresh.iter().zip(ids) {
                self.entries.insert(
                    series_key(samples[i].series),
                    CacheEntry {
                        series: id,
                        // not seen in this scrape yet (`take` marks it), and not tracked
                        seen: stamp(previous),
                    },
                );
            }
            for &i in &missing {
                let s = &samples[i];
                let entry = self
                    .entries
                    .get_mut(&series_key(s.series))
                    .expect("resolved above");
                Self::take(entry, s, t, generation, &mut batch, &mut report);
            }
        }
        for e in self.entries.values() {
            if e.seen_in(previous) && previous > 0 && e.track_staleness() {
                batch.push((e.series, t, stale_nan()));
                report.stale += 1;
            }
        }
        let stats: AppendStats = store.append(&batch);
        report.appended = stats.appended.saturating_sub(report.stale);
        report.out_of_order = stats.out_of_order + stats.duplicates;
        self.entries
            .retain(|_, e| u64::from(e.age(generation)) < CACHE_KEEP_SCRAPES);
        Ok(report)
    }

    /// Queues one sample of a known series, unless the series was already seen in this scrape.
    fn take(
        entry: &mut CacheEntry,
        s: &Sample<'_>,
        t: i64,
        generation: u64,
        batch: &mut Vec<(SeriesRef, i64, f64)>,
        report: &mut IngestReport,
    ) {
        if entry.seen_in(generation) {
            report.duplicates += 1;
            return;
        }
        entry.set_seen(generation, s.timestamp_ms.is_none());
        batch.push((entry.series, s.timestamp_ms.unwrap_or(t), s.value));
    }

    /// A failed scrape: every series of the previous scrape ends (staleness marker at `t`),
    /// as in Prometheus.
    pub fn mark_all_stale(&mut self, store: &Store, t: i64) -> usize {
        let last = self.generation;
        let batch: Vec<_> = self
            .entries
            .values()
            .filter(|e| e.seen_in(last) && last > 0 && e.track_staleness())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_entry_keeps_its_scrape_number_and_staleness_flag_across_the_wrap() {
        assert!(std::mem::size_of::<(SeriesKey, CacheEntry)>() <= 24);
        let mut e = CacheEntry { series: 7, seen: 0 };
        for (generation, track) in [
            (1u64, true),
            (5, false),
            ((1 << 31) - 1, true),
            (1 << 31, false),
        ] {
            e.set_seen(generation, track);
            assert!(e.seen_in(generation), "{generation}");
            assert!(!e.seen_in(generation + 1), "{generation}");
            assert_eq!(e.track_staleness(), track, "{generation}");
            assert_eq!(e.age(generation), 0);
            // the age counts on across 2^31 scrapes
            assert_eq!(
                e.age(generation + CACHE_KEEP_SCRAPES),
                CACHE_KEEP_SCRAPES as u32
            );
        }
        assert_eq!(e.series, 7);
    }
}
