//! The scrape cache and metrics ingest: an exposition body to samples in the store. CPU work and
//! store writes: run on a blocking thread.

use hashbrown::HashTable;

use super::fetch::ScrapeError;
use super::health::write_gauges;
use crate::config::LabelLimits;
use crate::hash::BuildOneShot;
use crate::ingest::textparse::{Entry, Format, OwnedSample, ParseState, Parser, Sample};
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
/// and a comparison, not a label parse), and the series seen last time (for staleness markers).
pub struct ScrapeCache {
    base: Labels,
    limits: LabelLimits,
    /// every cached series, in the order they were first exposed; keyed by the 128-bit xxh3 of the
    /// raw series text ([`series_key`]): the texts themselves (60-100 bytes each) are not kept,
    /// which saved ~60 bytes a series (`benches/memory.rs`); two texts with one key would need
    /// ~2^64 series
    slots: Vec<Slot>,
    /// [`Self::slots`] indices by key, for the samples that are not where the last one points
    index: HashTable<u32>,
    /// the slot after the last one found: a target exposes its series in the same order at every
    /// scrape, so the next sample's series is nearly always there, and a scrape reads the slots
    /// front to back instead of probing the index at random (at 100k series those probes missed
    /// the CPU cache on every sample: ~15% of a 100k-series scrape's CPU under perf)
    cursor: usize,
    /// the scrape number of the last successful scrape; series seen then and not now are stale
    generation: u64,
}

/// One cached series: 24 bytes.
struct Slot {
    key: SeriesKey,
    entry: CacheEntry,
}

/// The index's hash of a key, which is a hash already: its two words XORed.
fn key_hash(key: &SeriesKey) -> u64 {
    key.0 ^ key.1
}

/// The index's hasher: an index's hash is that of its slot's key.
fn slot_hash(slots: &[Slot]) -> impl Fn(&u32) -> u64 + '_ {
    move |&j| key_hash(&slots[j as usize].key)
}

/// A cache holds at most this many series (its indices are `u32`); one that would hold more
/// starts afresh, and the store's index finds the series again.
const MAX_SLOTS: usize = u32::MAX as usize;

/// The cache key of a raw series text (metric name plus label block as exposed) validated with
/// `float_label` (its family's kind: the parser checks a summary's `quantile` and a histogram's
/// `le` to be floats), so a text is known only as it was validated: a family whose `# TYPE`
/// changes has its series checked again.
fn series_key(series: &str, float_label: Option<&str>) -> SeriesKey {
    let seed = match float_label {
        None => 0,
        Some("le") => 1,
        Some(_) => 2,
    };
    let h = xxhash_rust::xxh3::xxh3_128_with_seed(series.as_bytes(), seed);
    SeriesKey(h as u64, (h >> 64) as u64)
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
            slots: Vec::new(),
            index: HashTable::new(),
            cursor: 0,
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

    /// The slot of `key`, if cached: first where the last one found points, else by the index.
    fn find(&mut self, key: SeriesKey) -> Option<usize> {
        let at = self.cursor;
        let i = if self.slots.get(at).is_some_and(|s| s.key == key) {
            at
        } else {
            let slots = &self.slots;
            *self
                .index
                .find(key_hash(&key), |&j| slots[j as usize].key == key)? as usize
        };
        self.cursor = i + 1;
        Some(i)
    }

    /// Caches a series the cache lacks (the caller keeps within [`MAX_SLOTS`]).
    fn insert(&mut self, key: SeriesKey, entry: CacheEntry) {
        let i = self.slots.len() as u32;
        self.slots.push(Slot { key, entry });
        let slots = &self.slots;
        self.index
            .insert_unique(key_hash(&key), i, slot_hash(slots));
    }

    /// Forgets the series unseen for [`CACHE_KEEP_SCRAPES`] scrapes (bounded memory under
    /// series churn); the index is rebuilt when any went, since the slots after them moved.
    fn prune(&mut self, generation: u64) {
        let before = self.slots.len();
        self.slots
            .retain(|s| u64::from(s.entry.age(generation)) < CACHE_KEEP_SCRAPES);
        if self.slots.len() == before {
            return;
        }
        self.index.clear();
        let slots = &self.slots;
        for (i, s) in slots.iter().enumerate() {
            self.index
                .insert_unique(key_hash(&s.key), i as u32, slot_hash(slots));
        }
        // what a burst of series left goes back
        if self.slots.capacity() > 2 * self.slots.len() + 1024 {
            self.slots.shrink_to_fit();
            let slots = &self.slots;
            self.index.shrink_to_fit(slot_hash(slots));
        }
    }

    /// Undoes the marks of a failed scrape numbered `generation`: every series it saw goes back to
    /// seen in `previous`, but those in `changed` (slot, mark before), which go back to their mark.
    fn undo(&mut self, generation: u64, previous: u64, changed: &[(usize, u32)]) {
        for slot in &mut self.slots {
            if slot.entry.seen_in(generation) {
                let track = slot.entry.track_staleness();
                slot.entry.set_seen(previous, track);
            }
        }
        for &(i, seen) in changed {
            self.slots[i].entry.seen = seen;
        }
    }

    /// Parses `body` (in `format`) and appends its samples at time `t` (samples with their own
    /// timestamp keep it). All or nothing: a parse error, an exceeded sample limit or label limit
    /// stores no sample from the body. Series of the previous scrape missing now get a staleness
    /// marker. The whole body at once: [`Self::begin`] takes one as it arrives.
    pub fn ingest(
        &mut self,
        store: &Store,
        body: &str,
        format: Format,
        t: i64,
        sample_limit: usize,
    ) -> Result<IngestReport, ScrapeError> {
        let mut scrape = self.begin(format, t, sample_limit);
        scrape.feed_text(body);
        scrape.finish(store)
    }

    /// Starts ingesting a body in `format` scraped at `t`, fed as it arrives
    /// ([`Ingest::feed`]); nothing reaches the store before [`Ingest::finish`].
    pub fn begin(&mut self, format: Format, t: i64, sample_limit: usize) -> Ingest<'_> {
        let previous = self.generation;
        self.cursor = 0;
        // a cached series' sample goes to the batch as its line is read
        let batch = Vec::with_capacity(self.slots.len() + 16);
        Ingest {
            cache: self,
            t,
            previous,
            generation: previous + 1,
            limit: sample_limit.min(MAX_SLOTS),
            report: IngestReport::default(),
            batch,
            missing: Vec::new(),
            changed: Vec::new(),
            failure: None,
            parse: ParseState::new(format),
            carry: Vec::new(),
        }
    }

    /// Queues one sample of a cached series, unless the series was already seen in this scrape;
    /// returns the series' mark from before when it was not.
    fn take(
        entry: &mut CacheEntry,
        s: &Sample<'_>,
        t: i64,
        generation: u64,
        batch: &mut Vec<(SeriesRef, i64, f64)>,
        report: &mut IngestReport,
    ) -> Option<u32> {
        if entry.seen_in(generation) {
            report.duplicates += 1;
            return None;
        }
        let before = entry.seen;
        entry.set_seen(generation, s.timestamp_ms.is_none());
        batch.push((entry.series, s.timestamp_ms.unwrap_or(t), s.value));
        Some(before)
    }

    /// A failed scrape: every series of the previous scrape ends (staleness marker at `t`),
    /// as in Prometheus.
    pub fn mark_all_stale(&mut self, store: &Store, t: i64) -> usize {
        let last = self.generation;
        let batch: Vec<_> = self
            .slots
            .iter()
            .map(|s| &s.entry)
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

/// A scrape being ingested ([`ScrapeCache::begin`]): the body goes in piece by piece as it
/// arrives ([`Self::feed`]), so it is never held whole (at 100k series it was 6 MB of fresh
/// pages every scrape: 8% of the daemon's CPU in page faults under perf), and
/// [`Self::finish`] appends its samples, all or none.
pub struct Ingest<'c> {
    cache: &'c mut ScrapeCache,
    t: i64,
    /// the scrape numbers of the last successful scrape and of this one
    previous: u64,
    generation: u64,
    limit: usize,
    report: IngestReport,
    /// the samples of cached series, as their lines are read
    batch: Vec<(SeriesRef, i64, f64)>,
    /// the samples of series the cache lacks, resolved together by `finish`
    missing: Vec<OwnedSample>,
    /// the marks this scrape changed other than from "seen in the previous scrape" (a series
    /// back after a gap, or now with or without its own timestamp), for `undo`
    changed: Vec<(usize, u32)>,
    /// the first error; parsing stops there (but for counting samples past the limit)
    failure: Option<ScrapeError>,
    parse: ParseState,
    /// the start of a line the last piece cut
    carry: Vec<u8>,
}

impl Ingest<'_> {
    /// Takes the next bytes of the body, cut anywhere: whole lines are parsed now, the rest
    /// waits for the bytes that end its line.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        if !self.carry.is_empty() {
            let Some(end) = memchr::memchr(b'\n', bytes) else {
                self.carry.extend_from_slice(bytes);
                return;
            };
            self.carry.extend_from_slice(&bytes[..=end]);
            let line = std::mem::take(&mut self.carry);
            self.feed_bytes(&line);
            self.carry = line;
            self.carry.clear();
            bytes = &bytes[end + 1..];
        }
        match memchr::memrchr(b'\n', bytes) {
            Some(end) => {
                self.feed_bytes(&bytes[..=end]);
                self.carry.extend_from_slice(&bytes[end + 1..]);
            }
            None => self.carry.extend_from_slice(bytes),
        }
    }

    /// Whether more of the body is of use: false once parsing stopped at an error.
    pub fn wants_more(&self) -> bool {
        !self.stopped()
    }

    /// Whole lines, checked to be UTF-8.
    fn feed_bytes(&mut self, bytes: &[u8]) {
        if self.stopped() {
            return;
        }
        match super::textparse::text_piece(bytes, self.parse.line()) {
            Ok(text) => self.feed_text(text),
            Err(e) => self.fail(e.into()),
        }
    }

    /// Whether parsing has stopped: after an error (past the sample limit, parsing goes on
    /// only to count the samples for the message).
    fn stopped(&self) -> bool {
        self.failure.is_some() || self.parse.done()
    }

    fn fail(&mut self, e: ScrapeError) {
        // past the sample limit, an error ends the count: the limit is what the target hears of
        if self.failure.is_none() && self.report.scraped <= self.limit {
            self.failure = Some(e);
        } else if self.failure.is_none() {
            self.failure = Some(ScrapeError::SampleLimit {
                limit: self.limit,
                got: self.report.scraped,
            });
        }
    }

    /// Whole lines of text (the last piece may end without a newline).
    fn feed_text(&mut self, text: &str) {
        if self.stopped() {
            return;
        }
        let state = std::mem::replace(&mut self.parse, ParseState::new(Format::Text));
        let mut parser = Parser::resume(text, state);
        let cache = &mut *self.cache;
        let generation = self.generation;
        let stamp_previous = stamp(self.previous);
        let mut error = None;
        loop {
            // the parser asks the cache about each sample line's series text before checking its
            // labels: a cached text was checked when first seen; the answer is kept for the line
            let mut asked = None;
            let mut known = |series: &str, float_label: Option<&'static str>| {
                let found = cache.find(series_key(series, float_label));
                asked = Some(found);
                found.is_some()
            };
            let s = match parser.next_known(&mut known) {
                None => break,
                Some(Ok(Entry::Sample(s))) => s,
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    error = Some(e);
                    break;
                }
            };
            self.report.scraped += 1;
            if self.report.scraped > self.limit {
                // counted without being kept, for the error message
                continue;
            }
            let found = match asked {
                Some(found) => found,
                None => cache.find(series_key(s.series, s.float_label)),
            };
            let Some(i) = found else {
                self.missing.push(s.to_owned_sample());
                continue;
            };
            let entry = &mut cache.slots[i].entry;
            if let Some(before) = ScrapeCache::take(
                entry,
                &s,
                self.t,
                generation,
                &mut self.batch,
                &mut self.report,
            ) && before != stamp_previous | (entry.seen & TRACK_STALENESS)
            {
                self.changed.push((i, before));
            }
        }
        self.parse = parser.into_state();
        if let Some(e) = error {
            self.fail(e.into());
        }
    }

    /// Ends the body (its unfinished last line is its last line) and appends the scrape's
    /// samples, or none of them if it failed: an error (a parse error, or an exceeded sample
    /// or label limit, or `failed`: the fetch broke off) leaves the cache as the last good
    /// scrape left it.
    pub fn finish(self, store: &Store) -> Result<IngestReport, ScrapeError> {
        self.finish_or(store, None)
    }

    /// [`Self::finish`], failing with `failed` when the body did not arrive whole.
    pub fn finish_or(
        mut self,
        store: &Store,
        failed: Option<ScrapeError>,
    ) -> Result<IngestReport, ScrapeError> {
        if failed.is_none() && !self.carry.is_empty() {
            let last = std::mem::take(&mut self.carry);
            self.feed_bytes(&last);
        }
        let Ingest {
            cache,
            t,
            previous,
            generation,
            limit,
            mut report,
            mut batch,
            missing,
            changed,
            failure,
            ..
        } = self;
        let failure = failed.or(failure).or_else(|| {
            (report.scraped > limit).then_some(ScrapeError::SampleLimit {
                limit,
                got: report.scraped,
            })
        });
        if let Some(e) = failure {
            cache.undo(generation, previous, &changed);
            return Err(e);
        }
        if !missing.is_empty() {
            // resolve new series under one store lock; a series exposed twice gets one entry
            let mut fresh: Vec<usize> = Vec::with_capacity(missing.len());
            let mut names: std::collections::HashSet<&str, BuildOneShot> = Default::default();
            for (i, s) in missing.iter().enumerate() {
                if names.insert(s.sample().series) {
                    fresh.push(i);
                }
            }
            // a series is checked once, when first seen: its text is the cache key after that
            let labels = match fresh
                .iter()
                .map(|&i| cache.series_labels(&missing[i].sample()))
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(labels) => labels,
                Err(e) => {
                    // the scrape fails as a whole: the caller's `mark_all_stale` then marks the
                    // series of the last successful scrape
                    cache.undo(generation, previous, &changed);
                    return Err(e.into());
                }
            };
            if cache.slots.len() + fresh.len() > MAX_SLOTS {
                // start afresh (the scrape's samples of cached series are in the batch already)
                cache.slots.clear();
                cache.index.clear();
            }
            // a target's first scrape sizes the cache to it, instead of doubling up to 1.3x
            if cache.slots.is_empty() {
                cache.slots.reserve_exact(fresh.len());
            }
            let slots = &cache.slots;
            cache.index.reserve(fresh.len(), slot_hash(slots));
            let ids = store.series_refs(labels);
            report.new_series = ids.len();
            for (&i, id) in fresh.iter().zip(ids) {
                let entry = CacheEntry {
                    series: id,
                    // not seen in this scrape yet (`take` marks it), and not tracked
                    seen: stamp(previous),
                };
                let s = missing[i].sample();
                cache.insert(series_key(s.series, s.float_label), entry);
            }
            batch.reserve(missing.len());
            for owned in &missing {
                let s = owned.sample();
                let found = cache.find(series_key(s.series, s.float_label));
                debug_assert!(found.is_some(), "every missing series was resolved");
                if let Some(i) = found {
                    let entry = &mut cache.slots[i].entry;
                    ScrapeCache::take(entry, &s, t, generation, &mut batch, &mut report);
                }
            }
        }
        if previous > 0 {
            for slot in &cache.slots {
                let e = &slot.entry;
                if e.seen_in(previous) && e.track_staleness() {
                    batch.push((e.series, t, stale_nan()));
                    report.stale += 1;
                }
            }
        }
        cache.generation = generation;
        let stats: AppendStats = store.append(&batch);
        report.appended = stats.appended.saturating_sub(report.stale);
        report.out_of_order = stats.out_of_order + stats.duplicates;
        cache.prune(generation);
        Ok(report)
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

    use crate::labels::Matcher;
    use crate::store::chunk::is_stale;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db"), Default::default()).unwrap();
        (dir, store)
    }

    /// `name`'s samples, a staleness marker as `None`.
    fn samples(store: &Store, name: &str) -> Vec<(i64, Option<f64>)> {
        let got = store
            .select(&[Matcher::equal("__name__", name)], 0, i64::MAX)
            .unwrap();
        assert!(got.len() <= 1, "{name}: {} series", got.len());
        got.into_iter()
            .flat_map(|s| s.samples)
            .map(|(t, v)| (t, (!is_stale(v)).then_some(v)))
            .collect()
    }

    fn scrape(cache: &mut ScrapeCache, store: &Store, body: &str, t: i64) -> IngestReport {
        cache
            .ingest(store, body, Format::Text, t, 1000)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// What an ingest holds before `finish`: the report, the samples batched and those waiting
    /// for their series, the error, the lines read (as text: NaN compares equal).
    fn held(scrape: &Ingest<'_>) -> String {
        format!(
            "{:?} {:?} {:?} {:?} {}",
            scrape.report,
            scrape.batch,
            scrape.missing,
            scrape.failure.as_ref().map(|e| e.to_string()),
            scrape.parse.line()
        )
    }

    /// Feeds `body` cut at `cuts` (byte offsets, ascending) and returns what the ingest holds.
    fn fed_in_pieces(
        cache: &mut ScrapeCache,
        body: &[u8],
        format: Format,
        cuts: &[usize],
        limit: usize,
    ) -> String {
        let mut scrape = cache.begin(format, 5000, limit);
        let mut at = 0;
        for &cut in cuts.iter().chain([&body.len()]) {
            scrape.feed(&body[at..cut]);
            at = cut;
        }
        // the end of the body, as `finish` takes it
        let last = std::mem::take(&mut scrape.carry);
        scrape.feed_bytes(&last);
        let got = held(&scrape);
        // unfinished: the cache goes back to its marks before, for the next feed
        scrape
            .cache
            .undo(scrape.generation, scrape.previous, &scrape.changed);
        got
    }

    /// A body cut anywhere, even inside a line or a character, and fed in its pieces is read as
    /// the whole body is: the same samples to the same series, for a cold cache (every series
    /// new) and a warm one.
    #[test]
    fn a_body_cut_anywhere_reads_as_the_whole_body() {
        let (_dir, store) = store();
        let body = "# HELP req_total Requests \\\\ served.\n# TYPE req_total counter\n\
                    req_total{path=\"/ä\",code=\"200\"} 10\nreq_total{path=\"/ö\\\"q\",code=\"500\"} 1e3 1700000000000\n\
                    # TYPE lat histogram\nlat_bucket{le=\"0.5\"} 3\nlat_bucket{le=\"+Inf\"} 4\nlat_sum 1.5\nlat_count 4\n\
                    \n  up_like 1\nreq_total{path=\"/ä\",code=\"200\"} 11\n";
        let body = body.as_bytes();
        let mut warm = ScrapeCache::new(Labels::from_pairs([("job", "j")]));
        warm.ingest(
            &store,
            std::str::from_utf8(body).unwrap(),
            Format::Text,
            1000,
            100,
        )
        .unwrap();
        for cache_warm in [false, true] {
            let fresh = || ScrapeCache::new(Labels::from_pairs([("job", "j")]));
            let mut whole_cache = fresh();
            let whole = if cache_warm {
                fed_in_pieces(&mut warm, body, Format::Text, &[], 100)
            } else {
                fed_in_pieces(&mut whole_cache, body, Format::Text, &[], 100)
            };
            assert!(whole.contains("None"), "{whole}");
            for cut in 1..body.len() {
                for cuts in [vec![cut], (cut..body.len()).step_by(cut).collect()] {
                    let got = if cache_warm {
                        fed_in_pieces(&mut warm, body, Format::Text, &cuts, 100)
                    } else {
                        fed_in_pieces(&mut fresh(), body, Format::Text, &cuts, 100)
                    };
                    assert_eq!(got, whole, "warm {cache_warm}, cut at {cuts:?}");
                }
            }
        }
    }

    /// The errors of a body fed in pieces name the line the whole body's do, and an error in a
    /// later piece fails the scrape as a whole: a bad line, a bad byte, text after `# EOF`, the
    /// sample limit, a last line without its newline.
    #[test]
    fn errors_in_any_piece_name_the_line_of_the_whole_body() {
        let (_dir, store) = store();
        let cases: [(&[u8], Format, usize, &str); 6] = [
            (
                b"a 1\nb 2\nc{x=\"1\"} 3\nd{ 4\ne 5\n",
                Format::Text,
                100,
                "line 4, column",
            ),
            (
                b"a 1\nb 2\nc{x=\"\xff\"} 3\nd 4\n",
                Format::Text,
                100,
                "line 3, column 6: invalid utf-8",
            ),
            (
                b"a 1\n# EOF\n\n\nb 2\n",
                Format::OpenMetrics,
                100,
                "line 5: content after # EOF",
            ),
            (
                b"a 1\nb 2\nc 3\nd 4\ne 5\n",
                Format::Text,
                2,
                "5 samples exceed the sample limit of 2",
            ),
            (
                b"a 1\nb 2\nc 3\nd 4\nbad{\ne 5\n",
                Format::Text,
                2,
                "4 samples exceed the sample limit of 2",
            ),
            (
                b"a 1\nb 2\nc 3",
                Format::Text,
                100,
                "line 3, column 4: the last line does not end",
            ),
        ];
        for (body, format, limit, want) in cases {
            let failed = |cuts: &[usize]| {
                let mut cache = ScrapeCache::new(Labels::default());
                let mut scrape = cache.begin(format, 5000, limit);
                let mut at = 0;
                for &cut in cuts.iter().chain([&body.len()]) {
                    scrape.feed(&body[at..cut]);
                    at = cut;
                }
                scrape.finish(&store).unwrap_err().to_string()
            };
            let whole = failed(&[]);
            assert!(whole.contains(want), "{whole}");
            for cut in 1..body.len() {
                assert_eq!(failed(&[cut]), whole, "cut at {cut}");
                assert_eq!(
                    failed(&(cut..body.len()).step_by(cut).collect::<Vec<_>>()),
                    whole,
                    "cut every {cut}"
                );
            }
        }
        assert!(
            store.series(&[]).is_empty(),
            "a failed scrape stored nothing"
        );
    }

    /// A body that broke off (the fetch's error) stores nothing of what arrived, and the cache
    /// keeps the marks of the last good scrape.
    #[test]
    fn a_body_that_broke_off_stores_none_of_its_pieces() {
        let (_dir, store) = store();
        let mut cache = ScrapeCache::new(Labels::from_pairs([("job", "j")]));
        scrape(&mut cache, &store, "a 1\n", 1000);
        let mut broken = cache.begin(Format::Text, 2000, 100);
        broken.feed(b"a 2\nnew 2\nhalf");
        let err = broken
            .finish_or(
                &store,
                Some(ScrapeError::Timeout(std::time::Duration::from_secs(1))),
            )
            .unwrap_err();
        assert!(matches!(err, ScrapeError::Timeout(_)), "{err}");
        assert_eq!(samples(&store, "a"), [(1000, Some(1.0))]);
        assert!(samples(&store, "new").is_empty());
        // the next good scrape sees `a` as seen in the last good one: no gap, no marker
        let r = scrape(&mut cache, &store, "a 3\n", 3000);
        assert_eq!((r.appended, r.stale, r.new_series), (1, 0, 0));
    }

    #[test]
    fn samples_reach_their_series_whatever_the_order_and_series_added_in_between() {
        let (_dir, store) = store();
        let mut cache = ScrapeCache::new(Labels::from_pairs([("job", "j")]));
        let r = scrape(&mut cache, &store, "a 1\nb 1\nc 1\n", 1000);
        assert_eq!((r.new_series, r.appended), (3, 3));
        // reversed, and a new series in the middle: the cursor misses and the index finds them
        let r = scrape(&mut cache, &store, "c 2\nb 2\nx 2\na 2\n", 2000);
        assert_eq!((r.new_series, r.appended, r.stale), (1, 4, 0));
        // the order of the first scrape again, x (cached last) in the middle, a duplicate
        let r = scrape(&mut cache, &store, "a 3\nx 3\nb 3\nc 3\na 9\n", 3000);
        assert_eq!((r.new_series, r.appended, r.duplicates), (0, 4, 1));
        for name in ["a", "b", "c"] {
            let want: Vec<_> = (1..=3).map(|i| (i * 1000, Some(i as f64))).collect();
            assert_eq!(samples(&store, name), want, "{name}");
        }
        assert_eq!(samples(&store, "x"), [(2000, Some(2.0)), (3000, Some(3.0))]);
    }

    #[test]
    fn a_cached_series_is_checked_again_when_its_family_changes_kind() {
        let (_dir, store) = store();
        let mut cache = ScrapeCache::new(Labels::from_pairs([("job", "j")]));
        // untyped, `le` may be any text
        scrape(&mut cache, &store, "h_bucket{le=\"abc\"} 1\n", 1000);
        scrape(&mut cache, &store, "h_bucket{le=\"abc\"} 2\n", 2000);
        // a histogram's `le` must be a float: the cached text does not skip that check
        let err = cache
            .ingest(
                &store,
                "# TYPE h histogram\nh_bucket{le=\"abc\"} 3\n",
                Format::Text,
                3000,
                1000,
            )
            .unwrap_err();
        assert!(err.to_string().contains("not a float"), "{err}");
    }

    #[test]
    fn a_failed_scrape_leaves_the_marks_of_the_last_good_one() {
        let (_dir, store) = store();
        let mut cache = ScrapeCache::new(Labels::from_pairs([("job", "j")]));
        // `gap` is missing from the second scrape, `own` carries its own timestamp in the first
        scrape(&mut cache, &store, "keep 1\ngap 1\nown 1 500\n", 1000);
        let r = scrape(&mut cache, &store, "keep 2\nown 2\n", 2000);
        assert_eq!(r.stale, 1);
        // the failing scrape sees `gap` again, and `own` now with its own timestamp, before the
        // error on its last line
        let err = cache
            .ingest(
                &store,
                "keep 3\ngap 3\nown 3 2500\n{bad",
                Format::Text,
                3000,
                1000,
            )
            .unwrap_err();
        assert!(err.to_string().contains("line 4"), "{err}");
        // as after the second scrape: `keep` and `own` were seen and end, `gap` ended already
        assert_eq!(cache.mark_all_stale(&store, 3000), 2);
        assert_eq!(
            samples(&store, "keep"),
            [(1000, Some(1.0)), (2000, Some(2.0)), (3000, None)]
        );
        assert_eq!(samples(&store, "gap"), [(1000, Some(1.0)), (2000, None)]);
        assert_eq!(
            samples(&store, "own"),
            [(500, Some(1.0)), (2000, Some(2.0)), (3000, None)]
        );
        // and the next good scrape marks nothing twice
        let r = scrape(&mut cache, &store, "keep 4\ngap 4\nown 4\n", 4000);
        assert_eq!((r.appended, r.stale, r.new_series), (3, 0, 0));
    }

    #[test]
    fn series_unseen_for_long_are_forgotten_and_the_rest_still_found() {
        let (_dir, store) = store();
        let mut cache = ScrapeCache::new(Labels::from_pairs([("job", "j")]));
        let all: String = (0..50).map(|i| format!("m{{i=\"{i}\"}} 1\n")).collect();
        scrape(&mut cache, &store, &all, 1000);
        assert_eq!(cache.slots.len(), 50);
        // every other series goes away for good
        let half: String = (0..50)
            .filter(|i| i % 2 == 1)
            .map(|i| format!("m{{i=\"{i}\"}} 1\n"))
            .collect();
        for k in 2..=(CACHE_KEEP_SCRAPES as i64 + 2) {
            let r = scrape(&mut cache, &store, &half, k * 1000);
            assert_eq!((r.new_series, r.appended), (0, 25), "scrape {k}");
        }
        assert_eq!(cache.slots.len(), 25);
        assert_eq!(cache.index.len(), 25);
        // the rest are found by the rebuilt index, out of order too, and a forgotten series comes
        // back as the series it was (through the store)
        let back: String = (0..50)
            .rev()
            .filter(|i| i % 2 == 1 || *i == 10)
            .map(|i| format!("m{{i=\"{i}\"}} 2\n"))
            .collect();
        let r = scrape(&mut cache, &store, &back, 20_000);
        assert_eq!((r.new_series, r.appended), (1, 26));
        let series = store
            .select(&[Matcher::equal("__name__", "m")], 0, i64::MAX)
            .unwrap();
        assert_eq!(series.len(), 50, "no series was created twice");
        let ten = series
            .iter()
            .find(|s| s.labels.get("i") == Some("10"))
            .unwrap();
        assert_eq!(ten.samples.first(), Some(&(1000, 1.0)));
        assert_eq!(ten.samples.last(), Some(&(20_000, 2.0)));
    }
}
