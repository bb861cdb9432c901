//! The in-memory head: every known series, its open chunk and its recent closed chunks, and the
//! postings index used to match series by label. Pure data structure: no I/O, no clock.
//!
//! Invariants:
//! - a series id is its row id in the `series` table and its index in `Head::series`; ids are never reused;
//! - samples of a series are strictly increasing in time: a sample not newer than the last one is rejected;
//! - no chunk spans two blocks (`block = t.div_euclid(BLOCK_MS)`), so retention drops whole blocks;
//! - a chunk leaves the open slot exactly once, through `cut`, which hands it to the flusher.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::chunk::{self, ChunkEncoder};
use crate::labels::{Labels, MatchOp, Matcher};

/// Length of a storage block in milliseconds. Chunks never cross a block boundary; retention
/// deletes whole blocks.
pub const BLOCK_MS: i64 = 3_600_000;
/// An open chunk is cut when it holds this many samples (Prometheus's choice: ~1-2 B/sample
/// for regular series, and a chunk decodes in well under a microsecond per sample).
pub const SAMPLES_PER_CHUNK: usize = 120;

/// The block a timestamp belongs to.
pub fn block_of(t: i64) -> i64 {
    t.div_euclid(BLOCK_MS)
}

/// A series handle: its persistent id.
pub type SeriesRef = u32;

/// A closed, immutable chunk.
#[derive(Clone, Debug)]
pub struct ClosedChunk {
    pub series: SeriesRef,
    pub mint: i64,
    pub maxt: i64,
    pub data: Arc<[u8]>,
}

#[derive(Debug)]
pub(crate) struct MemSeries {
    pub labels: Arc<Labels>,
    /// closed chunks still inside the head window, oldest first
    pub closed: VecDeque<ClosedChunk>,
    pub open: ChunkEncoder,
    /// time of the newest sample ever appended (also after the open chunk was cut), for ordering
    pub last_t: Option<i64>,
    /// oldest time whose samples are all in memory; earlier samples must be read from disk
    pub mem_since: i64,
}

/// What one append did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AppendStats {
    pub appended: usize,
    /// a sample with the same timestamp and value as the last one (harmless repeat)
    pub duplicates: usize,
    /// a sample older than the last one, or same time with another value: dropped
    pub out_of_order: usize,
}

#[derive(Debug, Default)]
pub(crate) struct Head {
    pub series: Vec<Option<MemSeries>>,
    by_labels: HashMap<Arc<Labels>, SeriesRef>,
    /// label name → label value → ids (ascending)
    postings: HashMap<String, HashMap<String, Vec<SeriesRef>>>,
    /// chunks cut since the last flush, to persist
    pub cut: Vec<ClosedChunk>,
    /// series created since the last flush, to persist
    pub new_series: Vec<SeriesRef>,
}

impl Head {
    pub fn lookup(&self, labels: &Labels) -> Option<SeriesRef> {
        self.by_labels.get(labels).copied()
    }

    pub fn labels(&self, id: SeriesRef) -> Option<&Arc<Labels>> {
        self.series
            .get(id as usize)
            .and_then(|s| s.as_ref())
            .map(|s| &s.labels)
    }

    pub fn series_count(&self) -> usize {
        self.by_labels.len()
    }

    /// Registers a series under a known id (used when loading from disk, and by `create`).
    pub fn insert(&mut self, id: SeriesRef, labels: Arc<Labels>, mem_since: i64) {
        let idx = id as usize;
        if self.series.len() <= idx {
            self.series.resize_with(idx + 1, || None);
        }
        for (k, v) in labels.iter() {
            let ids = self
                .postings
                .entry(k.to_string())
                .or_default()
                .entry(v.to_string())
                .or_default();
            // ids mostly arrive in ascending order; keep the list sorted either way
            match ids.last() {
                Some(&last) if last > id => {
                    let pos = ids.partition_point(|&x| x < id);
                    ids.insert(pos, id);
                }
                _ => ids.push(id),
            }
        }
        self.by_labels.insert(labels.clone(), id);
        self.series[idx] = Some(MemSeries {
            labels,
            closed: VecDeque::new(),
            open: ChunkEncoder::new(),
            last_t: None,
            mem_since,
        });
    }

    /// The id for `labels`, creating the series (recorded for the next flush) if it is new.
    pub fn get_or_create(&mut self, labels: Labels) -> SeriesRef {
        if let Some(id) = self.by_labels.get(&labels) {
            return *id;
        }
        // id 0 is never used, so SQLite's rowids and ours agree
        let id = self.series.len().max(1) as SeriesRef;
        // a brand-new series has no older data anywhere
        self.insert(id, Arc::new(labels), i64::MIN);
        self.new_series.push(id);
        id
    }

    /// Appends one sample; cuts the open chunk first when it is full or the sample starts a new block.
    pub fn append(&mut self, id: SeriesRef, t: i64, v: f64, stats: &mut AppendStats) {
        let Some(Some(s)) = self.series.get_mut(id as usize) else {
            stats.out_of_order += 1;
            return;
        };
        if let Some(last) = s.last_t {
            if t < last {
                stats.out_of_order += 1;
                return;
            }
            if t == last {
                let same = s
                    .open
                    .last_value()
                    .is_some_and(|lv| lv.to_bits() == v.to_bits());
                if same {
                    stats.duplicates += 1;
                } else {
                    stats.out_of_order += 1;
                }
                return;
            }
        }
        let must_cut = s.open.len() >= SAMPLES_PER_CHUNK
            || s.open.first_t().is_some_and(|f| block_of(f) != block_of(t));
        if must_cut {
            let c = Self::close(id, s);
            self.cut.push(c);
        }
        if s.mem_since == i64::MAX {
            // first sample in memory of a series loaded from disk
            s.mem_since = t;
        }
        if s.open.push(t, v).is_err() {
            // cannot happen: order was checked and the chunk was cut before it filled
            stats.out_of_order += 1;
            return;
        }
        s.last_t = Some(t);
        stats.appended += 1;
    }

    fn close(id: SeriesRef, s: &mut MemSeries) -> ClosedChunk {
        let enc = std::mem::take(&mut s.open);
        let c = ClosedChunk {
            series: id,
            mint: enc.first_t().expect("closed chunk is not empty"),
            maxt: enc.last_t().expect("closed chunk is not empty"),
            data: Arc::from(enc.bytes()),
        };
        s.closed.push_back(c.clone());
        c
    }

    /// Cuts open chunks whose block has ended before `now` (series that stopped receiving
    /// samples), so their samples become durable chunks; and drops closed chunks that ended
    /// before `keep_since` from memory (they stay on disk).
    pub fn maintain(&mut self, now: i64, keep_since: i64) {
        let current = block_of(now);
        for (id, slot) in self.series.iter_mut().enumerate() {
            let Some(s) = slot else { continue };
            if s.open.first_t().is_some_and(|f| block_of(f) < current) {
                let c = Self::close(id as SeriesRef, s);
                self.cut.push(c);
            }
            while s.closed.front().is_some_and(|c| c.maxt < keep_since) {
                let c = s.closed.pop_front().expect("front exists");
                s.mem_since = s.mem_since.max(c.maxt + 1);
            }
        }
    }

    /// Cuts every open chunk (at shutdown, so the whole head is in durable chunks).
    pub fn cut_all(&mut self) {
        for (id, slot) in self.series.iter_mut().enumerate() {
            if let Some(s) = slot
                && !s.open.is_empty()
            {
                let c = Self::close(id as SeriesRef, s);
                self.cut.push(c);
            }
        }
    }

    /// The oldest sample time still only in an open chunk; samples before it are in closed chunks.
    pub fn open_low_watermark(&self) -> Option<i64> {
        self.series
            .iter()
            .flatten()
            .filter_map(|s| s.open.first_t())
            .min()
    }

    /// Ids of series matching every matcher, ascending.
    pub fn select_ids(&self, matchers: &[Matcher]) -> Vec<SeriesRef> {
        let mut candidates: Option<Vec<SeriesRef>> = None;
        for m in matchers {
            if m.matches_empty() {
                continue; // also matches series without the label: cannot narrow by postings
            }
            let mut ids: Vec<SeriesRef> = match (m.op, self.postings.get(&m.name)) {
                (_, None) => Vec::new(),
                (MatchOp::Equal, Some(values)) => values.get(&m.value).cloned().unwrap_or_default(),
                (_, Some(values)) => {
                    let mut v: Vec<SeriesRef> = values
                        .iter()
                        .filter(|(val, _)| m.matches(val))
                        .flat_map(|(_, ids)| ids.iter().copied())
                        .collect();
                    v.sort_unstable();
                    v
                }
            };
            candidates = Some(match candidates {
                None => ids,
                Some(prev) => {
                    ids.retain(|id| prev.binary_search(id).is_ok());
                    ids
                }
            });
        }
        let ids: Vec<SeriesRef> = match candidates {
            Some(ids) => ids,
            None => self
                .series
                .iter()
                .enumerate()
                .filter(|(_, s)| s.is_some())
                .map(|(i, _)| i as SeriesRef)
                .collect(),
        };
        ids.into_iter()
            .filter(|&id| {
                self.labels(id)
                    .is_some_and(|l| matchers.iter().all(|m| m.matches_labels(l)))
            })
            .collect()
    }

    /// Samples of `id` in [mint, maxt] held in memory, ascending; plus the time from which memory
    /// is complete (anything earlier must come from disk).
    pub fn read(&self, id: SeriesRef, mint: i64, maxt: i64, out: &mut Vec<(i64, f64)>) -> i64 {
        let Some(Some(s)) = self.series.get(id as usize) else {
            return i64::MAX;
        };
        for c in &s.closed {
            if c.maxt >= mint && c.mint <= maxt {
                // chunks in memory were produced by us; a decode error would be a bug, and
                // yields the samples decoded so far
                let _ = chunk::decode_range(&c.data, mint, maxt, out);
            }
        }
        if s.open.first_t().is_some_and(|f| f <= maxt) && s.open.last_t().is_some_and(|l| l >= mint)
        {
            let _ = chunk::decode_range(s.open.bytes(), mint, maxt, out);
        }
        s.mem_since
    }

    /// The newest sample of `id` in (t - lookback, t] when the open chunk alone decides it:
    /// `Some(answer)`; `None` when older chunks must be read (empty open chunk, or samples after `t`).
    pub fn latest_from_open(
        &self,
        id: SeriesRef,
        t: i64,
        lookback: i64,
    ) -> Option<Option<(i64, f64)>> {
        let s = self.series.get(id as usize)?.as_ref()?;
        let last_t = s.open.last_t()?;
        if last_t > t {
            return None;
        }
        Some((last_t > t - lookback).then(|| (last_t, s.open.last_value().expect("non-empty"))))
    }

    /// Bytes held by chunks in memory (open and closed), for self-metrics.
    pub fn chunk_bytes(&self) -> usize {
        self.series
            .iter()
            .flatten()
            .map(|s| s.open.byte_len() + s.closed.iter().map(|c| c.data.len()).sum::<usize>())
            .sum()
    }

    /// After a restart: the newest sample of `id` already in a chunk on disk, so appends resume after it.
    pub fn set_last_t(&mut self, id: SeriesRef, t: i64) {
        if let Some(Some(s)) = self.series.get_mut(id as usize) {
            s.last_t = Some(s.last_t.map_or(t, |l| l.max(t)));
        }
    }
}

/// Whether a value is Prometheus's staleness marker.
pub fn is_stale(v: f64) -> bool {
    chunk::is_stale(v)
}
