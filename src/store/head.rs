//! The in-memory head: the live series (appended to within the head window and the staleness
//! period, or loaded at open because the write-ahead rows or the head window hold their samples),
//! each with its open chunk and recent closed chunks, and the postings index used to match series
//! by label. Series that stop receiving samples leave it ([`Head::collect_idle`], [`Head::drop_idle`]);
//! their history stays on disk and readers look there for times before [`Head::horizon`].
//! Pure data structure: no I/O, no clock.
//!
//! Invariants:
//! - a series id is its row id in the `series` table and its key in `Head::series`; ids are never
//!   reused (`next_id` starts above every id the file ever held);
//! - a series not in the head has no sample at or after `horizon` anywhere (only older chunks on disk);
//! - samples of a series are strictly increasing in time: a sample not newer than the last one is rejected;
//! - no chunk spans two blocks (`block = t.div_euclid(BLOCK_MS)`), so retention drops whole blocks;
//! - a chunk leaves the open slot exactly once, through `cut`, which hands it to the flusher.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use super::chunk::{self, ChunkEncoder};
use super::idtable::IdTable;
use crate::hash::BuildSeeded;
use crate::labels::{Labels, MatchOp, Matcher};

/// Length of a storage block in milliseconds. Chunks never cross a block boundary; retention
/// deletes whole blocks.
pub const BLOCK_MS: i64 = 3_600_000;
/// An open chunk is cut when it holds this many samples (Prometheus's choice: ~1-2 B/sample
/// for regular series, and a chunk decodes in well under a microsecond per sample).
pub const SAMPLES_PER_CHUNK: usize = 120;

/// How long a series may go without a sample before it leaves the head (beyond the head window):
/// Prometheus's lookback delta, after which an instant query no longer sees its last sample.
pub const STALENESS_MS: i64 = 5 * 60 * 1000;

/// The block a timestamp belongs to.
pub fn block_of(t: i64) -> i64 {
    t.div_euclid(BLOCK_MS)
}

/// `MemSeries::last_t` of a series without a sample: the one timestamp `append` refuses.
pub(crate) const NO_SAMPLE: i64 = i64::MIN;

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
    pub closed: ClosedChunks,
    pub open: ChunkEncoder,
    /// time of the newest sample ever appended (also after the open chunk was cut), for ordering;
    /// [`NO_SAMPLE`] before the first (a sentinel, not an `Option`: 8 bytes on every series)
    pub last_t: i64,
    /// oldest time whose samples are all in memory; earlier samples must be read from disk
    pub mem_since: i64,
}

impl MemSeries {
    /// A series with no labels yet, whose samples write-ahead replay rebuilds while the labels
    /// load ([`Head::adopt`] then moves them in): `last_t` is the end of its newest chunk on
    /// disk, if any (samples up to it are in chunks already).
    pub fn detached(labels: Arc<Labels>, last_t: Option<i64>) -> MemSeries {
        MemSeries {
            labels,
            closed: ClosedChunks::default(),
            open: ChunkEncoder::adaptive(),
            last_t: last_t.unwrap_or(NO_SAMPLE),
            mem_since: i64::MAX,
        }
    }
}

/// A series' closed chunks in memory, oldest first: none (the usual case without a head window)
/// costs one word, not a deque's four (`benches/memory.rs`).
#[derive(Debug, Default)]
// the box is the point: the inline size of `Option<Box<_>>` is one word, a deque's is four
#[allow(clippy::box_collection)]
pub(crate) struct ClosedChunks(Option<Box<VecDeque<ClosedChunk>>>);

impl ClosedChunks {
    pub fn push_back(&mut self, c: ClosedChunk) {
        // room for one: without a head window a series holds its cut chunk only until the next
        // flush, and every series of a scrape cuts at once (a deque's default first allocation,
        // four, was ~120 bytes a series more at that peak: `benches/memory.rs`)
        self.0
            .get_or_insert_with(|| Box::new(VecDeque::with_capacity(1)))
            .push_back(c);
    }

    pub fn front(&self) -> Option<&ClosedChunk> {
        self.0.as_ref()?.front()
    }

    /// The oldest chunk; the deque goes when it is left empty.
    pub fn pop_front(&mut self) -> Option<ClosedChunk> {
        let d = self.0.as_mut()?;
        let c = d.pop_front();
        if d.is_empty() {
            self.0 = None;
        }
        c
    }

    pub fn iter(&self) -> impl Iterator<Item = &ClosedChunk> {
        self.0.iter().flat_map(|d| d.iter())
    }
}

/// What one append did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AppendStats {
    pub appended: usize,
    /// a sample with the same timestamp and value as the last one (harmless repeat)
    pub duplicates: usize,
    /// a sample older than the last one, or same time with another value: dropped
    pub out_of_order: usize,
    /// a sample for an id not in memory (resolved from disk by the store, or dropped with it)
    pub unknown_series: usize,
}

impl AppendStats {
    /// Adds another part's counts (a replay's threads).
    pub fn add(&mut self, o: AppendStats) {
        self.appended += o.appended;
        self.duplicates += o.duplicates;
        self.out_of_order += o.out_of_order;
        self.unknown_series += o.unknown_series;
    }
}

/// The buffer write-ahead replay lends a series while it rebuilds its open chunk
/// ([`ReplayPart::lend`]): a full chunk of 120 samples at ~3 bytes each, with room.
pub(crate) const REPLAY_CHUNK_BYTES: usize = 512;

/// A run of series in id order ([`MemSeries::detached`]) that write-ahead replay appends to, by
/// index in the run (the replay walks its ids alongside each row's, no lookup), with the chunks it
/// cuts kept apart until [`Head::finish_replay`] takes them.
pub(crate) struct ReplayPart<'s> {
    series: &'s mut [(SeriesRef, MemSeries)],
    cut: Vec<ClosedChunk>,
    stats: AppendStats,
}

impl<'s> ReplayPart<'s> {
    pub fn new(series: &'s mut [(SeriesRef, MemSeries)]) -> Self {
        ReplayPart {
            series,
            cut: Vec::new(),
            stats: AppendStats::default(),
        }
    }

    /// How many series the run holds.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// The id of the run's `i`th series (`i < len`).
    pub fn id_at(&self, i: usize) -> SeriesRef {
        self.series[i].0
    }

    /// Lends the series `range` without samples a buffer of [`REPLAY_CHUNK_BYTES`] each, from
    /// `pool` when it has one ([`ChunkEncoder::lend`]), before a block of the replay.
    pub fn lend(&mut self, range: std::ops::Range<usize>, pool: &mut Vec<Box<[u8]>>) {
        for (_, s) in &mut self.series[range] {
            if s.open.is_empty() {
                let buf = pool
                    .pop()
                    .unwrap_or_else(|| vec![0; REPLAY_CHUNK_BYTES].into_boxed_slice());
                drop(s.open.lend(buf));
            }
        }
    }

    /// After a block: each series' open chunk moves into a buffer of its size, and the lent
    /// buffers go back to `pool` (a chunk cut meanwhile took its buffer with it).
    pub fn compact(&mut self, range: std::ops::Range<usize>, pool: &mut Vec<Box<[u8]>>) {
        for (_, s) in &mut self.series[range] {
            let buf = s.open.compact();
            if buf.len() >= REPLAY_CHUNK_BYTES {
                pool.push(buf);
            }
        }
    }

    /// The first id of the run.
    pub fn first_id(&self) -> Option<SeriesRef> {
        self.series.first().map(|(id, _)| *id)
    }

    /// Appends samples of series `id`, oldest first, as [`Head::append`] each, to the run's `i`th
    /// series if it has that id (else they count as unknown).
    pub fn append_at<R>(
        &mut self,
        i: usize,
        id: SeriesRef,
        fill: impl FnOnce(&mut dyn FnMut(i64, f64)) -> R,
    ) -> R {
        let stats = &mut self.stats;
        match self.series.get_mut(i) {
            Some((sid, s)) if *sid == id => {
                let cut = &mut self.cut;
                fill(&mut |t, v| Head::append_to(id, s, cut, t, v, stats))
            }
            _ => fill(&mut |_, _| stats.unknown_series += 1),
        }
    }

    /// Takes `bytes`, a whole chunk with absolute times (a checkpoint's group: `wal::CheckpointWriter`),
    /// as the open chunk of the run's `i`th series, without appending its samples one by one,
    /// when that is what appending them would give: the series has that id and no open chunk,
    /// every sample is after its last and in one block, and the chunk is not over-full. False
    /// otherwise (and on damage), and nothing changed: the caller appends the samples instead.
    pub fn resume_at(&mut self, i: usize, id: SeriesRef, bytes: &[u8]) -> bool {
        let Some((sid, s)) = self.series.get_mut(i) else {
            return false;
        };
        if *sid != id || !s.open.is_empty() || s.open.resume(bytes).is_err() {
            return false;
        }
        let (first, last) = match (s.open.first_t(), s.open.last_t()) {
            (Some(f), Some(l)) => (f, l),
            _ => return false,
        };
        let fits = s.open.len() <= SAMPLES_PER_CHUNK
            && (s.last_t == NO_SAMPLE || first > s.last_t)
            && first != NO_SAMPLE
            && block_of(first) == block_of(last);
        if !fits {
            s.open.clear();
            return false;
        }
        if s.mem_since == i64::MAX {
            s.mem_since = first;
        }
        s.last_t = last;
        self.stats.appended += s.open.len();
        true
    }

    /// The chunks cut and the counts, for [`Head::finish_replay`].
    pub fn finish(self) -> (Vec<ClosedChunk>, AppendStats) {
        (self.cut, self.stats)
    }
}

/// The ids (ascending) of the series with one label value. Most values name one series (an
/// `idx`, a request path, a pod): that one id is held inline, so such a value costs no list on
/// the heap (measured by `benches/memory.rs`). The list of a shared value is boxed: 16 bytes
/// inline instead of a `Vec`'s 32, paid by every value of the postings (21 bytes a series with
/// one unique label).
#[derive(Debug, Clone, PartialEq, Eq)]
// the box is the point: the few shared values pay a pointer, the many unique ones save 16 bytes
#[allow(clippy::box_collection)]
enum PostingList {
    One(SeriesRef),
    Many(Box<Vec<SeriesRef>>),
}

impl PostingList {
    fn as_slice(&self) -> &[SeriesRef] {
        match self {
            PostingList::One(id) => std::slice::from_ref(id),
            PostingList::Many(ids) => ids,
        }
    }

    /// Adds `id`, keeping the list sorted (ids mostly arrive ascending).
    fn insert(&mut self, id: SeriesRef) {
        match self {
            PostingList::One(x) if *x == id => {}
            PostingList::One(x) => {
                let x = *x;
                *self = PostingList::Many(Box::new(if x < id { vec![x, id] } else { vec![id, x] }));
            }
            PostingList::Many(ids) => match ids.last() {
                Some(&last) if last > id => {
                    let pos = ids.partition_point(|&x| x < id);
                    if ids.get(pos) != Some(&id) {
                        ids.insert(pos, id);
                    }
                }
                Some(&last) if last == id => {}
                _ => ids.push(id),
            },
        }
    }

    /// Removes `gone` (ascending); true when the list is left empty (the caller drops it). One
    /// pass over the list however many go: a target of a million series that stops leaves a
    /// list of a million ids (its `job`) to empty at once, which one removal at a time made a
    /// quadratic copy (hours under the head lock).
    fn remove_all(&mut self, gone: &[SeriesRef]) -> bool {
        match self {
            PostingList::One(x) => gone.binary_search(x).is_ok(),
            PostingList::Many(ids) => {
                let mut gone = gone.iter().copied().peekable();
                ids.retain(|&id| {
                    while gone.next_if(|&g| g < id).is_some() {}
                    gone.next_if_eq(&id).is_none()
                });
                match ids.as_slice() {
                    [] => true,
                    [one] => {
                        *self = PostingList::One(*one);
                        false
                    }
                    _ => false,
                }
            }
        }
    }
}

#[derive(Debug)]
pub(crate) struct Head {
    /// the series in memory by id: pages of 64 ids (`idtable.rs`), not a vector indexed by id, so
    /// a million ids that came and went cost nothing once their pages emptied
    pub series: IdTable<MemSeries>,
    by_labels: HashMap<Arc<Labels>, SeriesRef, BuildSeeded>,
    /// label name → label value → ids (ascending); no empty list or map is kept
    postings: HashMap<String, HashMap<Box<str>, PostingList, BuildSeeded>, BuildSeeded>,
    /// chunks cut since the last flush, to persist
    pub cut: Vec<ClosedChunk>,
    /// series created since the last flush, to persist
    pub new_series: Vec<SeriesRef>,
    /// series that came back from disk since the last flush (their recorded end is void)
    pub revived: Vec<SeriesRef>,
    /// the id the next new series gets: above every id ever used, in memory or on disk
    next_id: SeriesRef,
    /// series not in memory have no sample at or after this time (ms); `i64::MIN`: none has a
    /// sample anywhere
    horizon: i64,
    /// every series of the file is in memory (nothing to look up on disk by labels)
    complete: bool,
    /// what [`Head::open_low_watermark`] last found, lowered since by the first sample of every
    /// open chunk that was empty (`None` until it looks at every series: after a replay)
    watermark: Option<Option<i64>>,
}

impl Default for Head {
    fn default() -> Self {
        Head {
            series: IdTable::default(),
            by_labels: HashMap::default(),
            postings: HashMap::default(),
            cut: Vec::new(),
            new_series: Vec::new(),
            revived: Vec::new(),
            // id 0 is never used, so SQLite's rowids and ours agree
            next_id: 1,
            horizon: i64::MIN,
            complete: true,
            watermark: None,
        }
    }
}

impl Head {
    pub fn lookup(&self, labels: &Labels) -> Option<SeriesRef> {
        self.by_labels.get(labels).copied()
    }

    pub fn labels(&self, id: SeriesRef) -> Option<&Arc<Labels>> {
        self.series.get(&id).map(|s| &s.labels)
    }

    /// Asks the processor for the memory an append to series `id` writes (its open chunk's
    /// header and last bytes) without waiting for it: [`Store::append`] does this a few samples
    /// ahead, so the reads of several series' chunks overlap instead of stalling each append
    /// (the chunk's first byte was 40% of `ChunkEncoder::push` under perf at 100k series). The
    /// entry is read here: [`Head::prefetch_entry`] asked for it earlier still.
    ///
    /// [`Store::append`]: super::Store::append
    #[inline]
    pub fn prefetch(&self, id: SeriesRef) {
        if let Some(s) = self.series.get(&id) {
            s.open.prefetch();
        }
    }

    /// Asks for series `id`'s entry without reading it ([`IdTable::prefetch`]), for
    /// [`Head::prefetch`] some samples later.
    #[inline]
    pub fn prefetch_entry(&self, id: SeriesRef) {
        self.series.prefetch(id);
    }

    pub fn contains(&self, id: SeriesRef) -> bool {
        self.series.contains_key(&id)
    }

    /// Sets the first id new series may take (after loading: one above every id the file held).
    pub fn set_next_id(&mut self, next: SeriesRef) {
        self.next_id = self.next_id.max(next).max(1);
    }

    /// Series not in memory have no sample at or after this time (ms); `i64::MIN` when every
    /// series is in memory.
    pub fn horizon(&self) -> i64 {
        self.horizon
    }

    /// Records that series with no sample at or after `t` may be left out of memory.
    pub fn raise_horizon(&mut self, t: i64) {
        self.horizon = self.horizon.max(t);
        self.complete = false;
    }

    /// Whether every series of the file is in memory.
    pub fn complete(&self) -> bool {
        self.complete
    }

    pub fn series_count(&self) -> usize {
        self.by_labels.len()
    }

    /// The label names of the series in memory (the postings' keys).
    pub fn label_names(&self) -> impl Iterator<Item = &str> {
        self.postings.keys().map(String::as_str)
    }

    /// Room for `n` more series (start-up knows how many it loads: no rehash on the way).
    pub fn reserve(&mut self, n: usize) {
        self.series.reserve(n);
        self.by_labels.reserve(n);
    }

    /// Registers a series under a known id (used when loading from disk, and by `create`).
    pub fn insert(&mut self, id: SeriesRef, labels: Arc<Labels>, mem_since: i64) {
        self.next_id = self.next_id.max(id.saturating_add(1));
        for (k, v) in labels.iter() {
            let values = match self.postings.get_mut(k) {
                Some(values) => values,
                None => self.postings.entry(k.to_string()).or_default(),
            };
            match values.get_mut(v) {
                Some(ids) => ids.insert(id),
                None => {
                    values.insert(v.into(), PostingList::One(id));
                }
            }
        }
        self.by_labels.insert(labels.clone(), id);
        self.series.insert(
            id,
            MemSeries {
                labels,
                closed: ClosedChunks::default(),
                open: ChunkEncoder::adaptive(),
                last_t: NO_SAMPLE,
                mem_since,
            },
        );
    }

    /// Takes series out of memory (`ids` ascending): their entries, their label lookups and their
    /// postings (a posting list or value map left empty goes too), each posting list in one pass.
    fn remove_many(&mut self, ids: &[SeriesRef]) {
        let mut removed: Vec<(SeriesRef, Arc<Labels>)> = Vec::with_capacity(ids.len());
        for &id in ids {
            if let Some(s) = self.series.remove(&id) {
                self.by_labels.remove(&*s.labels);
                removed.push((id, s.labels));
            }
        }
        // each posting list and the ids it loses, ascending as `ids` are
        let mut touched: HashMap<(&str, &str), Vec<SeriesRef>> = HashMap::new();
        for (id, labels) in &removed {
            for pair in labels.iter() {
                touched.entry(pair).or_default().push(*id);
            }
        }
        for ((k, v), gone) in touched {
            let Some(values) = self.postings.get_mut(k) else {
                continue;
            };
            if let Some(list) = values.get_mut(v)
                && list.remove_all(&gone)
            {
                values.remove(v);
            }
            if values.is_empty() {
                self.postings.remove(k);
            }
        }
    }

    /// The series with no sample since before `cutoff`: cuts their open chunks (handed to the
    /// flusher with the other cut chunks) and returns them with their last sample time. They
    /// leave memory with [`Head::drop_idle`] once the flush that carries their chunks is written.
    pub fn collect_idle(&mut self, cutoff: i64) -> Vec<(SeriesRef, i64)> {
        let mut idle = Vec::new();
        for (id, s) in self.series.iter_mut() {
            let last = s.last_t;
            if last == NO_SAMPLE || last >= cutoff {
                continue;
            }
            if !s.open.is_empty() {
                let c = Self::close(id, s);
                self.cut.push(c);
            }
            idle.push((id, last));
        }
        idle.sort_unstable();
        idle
    }

    /// Drops from memory the series of `idle` ([`Head::collect_idle`]) that are still idle (no
    /// sample since, nothing unflushed), after the flush that wrote their chunks; raises the
    /// horizon to `cutoff`. Returns how many left.
    pub fn drop_idle(&mut self, idle: &[(SeriesRef, i64)], cutoff: i64) -> usize {
        let unflushed: HashSet<SeriesRef> = self.new_series.iter().copied().collect();
        let mut gone: Vec<SeriesRef> = idle
            .iter()
            .filter(|&&(id, last)| {
                self.series.get(&id).is_some_and(|s| {
                    s.last_t == last && s.open.is_empty() && !unflushed.contains(&id)
                })
            })
            .map(|&(id, _)| id)
            .collect();
        // ascending already ([`Head::collect_idle`]): a pass, which `remove_many` relies on
        gone.sort_unstable();
        let dropped = gone.len();
        self.remove_many(&gone);
        if !idle.is_empty() {
            self.raise_horizon(cutoff);
        }
        if dropped > 0 && self.by_labels.capacity() > 2 * self.by_labels.len() + 1024 {
            // the maps do not shrink by themselves: after a wave of churn they would keep their peak
            self.series.shrink();
            self.by_labels.shrink_to_fit();
        }
        dropped
    }

    /// The id for `labels`, creating the series (recorded for the next flush) if it is new.
    pub fn get_or_create(&mut self, labels: Labels) -> SeriesRef {
        if let Some(id) = self.by_labels.get(&labels) {
            return *id;
        }
        let id = self.next_id;
        // a brand-new series has no older data anywhere
        self.insert(id, Arc::new(labels), i64::MIN);
        self.new_series.push(id);
        id
    }

    /// Appends one sample; cuts the open chunk first when it is full or the sample starts a new block.
    pub fn append(&mut self, id: SeriesRef, t: i64, v: f64, stats: &mut AppendStats) {
        let Some(s) = self.series.get_mut(&id) else {
            stats.unknown_series += 1;
            return;
        };
        if s.open.is_empty()
            && let Some(w) = &mut self.watermark
        {
            // a chunk's first sample: the open chunks' oldest sample may be older now
            *w = Some(w.map_or(t, |w| w.min(t)));
        }
        Self::append_to(id, s, &mut self.cut, t, v, stats);
    }

    /// Takes the chunks a replay's parts cut (in the parts' order, which is id order), to persist.
    pub fn finish_replay(&mut self, cut: Vec<ClosedChunk>) {
        self.watermark = None;
        self.cut.extend(cut);
    }

    /// Gives a series loaded from disk what write-ahead replay rebuilt for it apart
    /// ([`MemSeries::detached`]): its open chunk, the chunks it closed, its last time and
    /// `mem_since`. False when no series of the head has the id (the file lacks its labels).
    pub fn adopt(&mut self, id: SeriesRef, replayed: MemSeries) -> bool {
        let Some(s) = self.series.get_mut(&id) else {
            return false;
        };
        self.watermark = None;
        s.open = replayed.open;
        s.closed = replayed.closed;
        s.last_t = s.last_t.max(replayed.last_t);
        s.mem_since = replayed.mem_since;
        true
    }

    fn append_to(
        id: SeriesRef,
        s: &mut MemSeries,
        cut: &mut Vec<ClosedChunk>,
        t: i64,
        v: f64,
        stats: &mut AppendStats,
    ) {
        if t == NO_SAMPLE {
            // the sentinel itself cannot be a sample's time
            stats.out_of_order += 1;
            return;
        }
        let last = s.last_t;
        if last != NO_SAMPLE {
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
        // the chunk's samples share a block, so its last sample's block is its first's
        let must_cut = s.open.len() >= SAMPLES_PER_CHUNK
            || s.open.last_t().is_some_and(|l| block_of(l) != block_of(t));
        if must_cut {
            let c = Self::close(id, s);
            cut.push(c);
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
        s.last_t = t;
        stats.appended += 1;
    }

    fn close(id: SeriesRef, s: &mut MemSeries) -> ClosedChunk {
        let enc = std::mem::replace(&mut s.open, ChunkEncoder::adaptive());
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
        for (id, s) in self.series.iter_mut() {
            // one block per chunk: the last sample's block is the first's
            if s.open.last_t().is_some_and(|l| block_of(l) < current) {
                let c = Self::close(id, s);
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
        for (id, s) in self.series.iter_mut() {
            if !s.open.is_empty() {
                let c = Self::close(id, s);
                self.cut.push(c);
            }
        }
    }

    /// A checkpoint: every open chunk, in id order, as write-ahead rows of about `max_row_bytes`
    /// at most ([`super::wal::CheckpointWriter`]).
    pub fn checkpoint(&self, max_row_bytes: usize) -> Vec<super::wal::CheckpointRow> {
        let mut open: Vec<(SeriesRef, &ChunkEncoder)> = self
            .series
            .iter()
            .filter(|(_, s)| !s.open.is_empty())
            .map(|(id, s)| (id, &s.open))
            .collect();
        open.sort_unstable_by_key(|&(id, _)| id);
        // each group: its chunk, an id delta and a length of at most 5 bytes each
        let total = open.iter().map(|(_, c)| c.byte_len() + 10).sum();
        let mut writer = super::wal::CheckpointWriter::new(max_row_bytes, total);
        for (id, chunk) in open {
            writer.push(id, chunk);
        }
        writer.finish()
    }

    /// The oldest sample time still only in an open chunk, or a time before it; samples before
    /// it are in closed chunks. Reading every series' first time is a memory read per series
    /// (2% of the daemon's CPU at 100k series flushed every 5 s), done only when chunks were cut
    /// since the last flush: until then the oldest time can only go down, by a chunk's first
    /// sample, which `append` notes. Chunks leave only by being cut (into `cut`), so a time
    /// kept while nothing was cut is exact; when it is not, it is lower, which keeps write-ahead
    /// rows a flush longer, never drops one too early.
    pub fn open_low_watermark(&mut self) -> Option<i64> {
        match self.watermark {
            Some(w) if self.cut.is_empty() => w,
            _ => {
                let w = self.series.values().filter_map(|s| s.open.first_t()).min();
                self.watermark = Some(w);
                w
            }
        }
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
                (MatchOp::Equal, Some(values)) => values
                    .get(m.value.as_str())
                    .map(|ids| ids.as_slice().to_vec())
                    .unwrap_or_default(),
                (_, Some(values)) => {
                    let mut v: Vec<SeriesRef> = values
                        .iter()
                        .filter(|(val, _)| m.matches(val))
                        .flat_map(|(_, ids)| ids.as_slice().iter().copied())
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
            None => {
                let mut all: Vec<SeriesRef> = self.series.keys().collect();
                all.sort_unstable();
                all
            }
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
        let Some(s) = self.series.get(&id) else {
            return i64::MAX;
        };
        for c in s.closed.iter() {
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
        let s = self.series.get(&id)?;
        let last_t = s.open.last_t()?;
        if last_t > t {
            return None;
        }
        Some((last_t > t - lookback).then(|| (last_t, s.open.last_value().expect("non-empty"))))
    }

    /// Bytes held by chunks in memory (open and closed), for self-metrics.
    pub fn chunk_bytes(&self) -> usize {
        self.series
            .values()
            .map(|s| s.open.byte_len() + s.closed.iter().map(|c| c.data.len()).sum::<usize>())
            .sum()
    }

    /// After a restart: the newest sample of `id` already in a chunk on disk, so appends resume after it.
    pub fn set_last_t(&mut self, id: SeriesRef, t: i64) {
        if let Some(s) = self.series.get_mut(&id) {
            s.last_t = s.last_t.max(t);
        }
    }
}

/// Heap bytes of a hashbrown table (std's `HashMap`) of `capacity` entries of `entry` bytes: a
/// power-of-two number of slots, at most 7/8 full, a control byte each and a group's worth more.
pub(crate) fn table_bytes(capacity: usize, entry: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let buckets = if capacity < 8 {
        (capacity + 1).next_power_of_two()
    } else {
        (capacity * 8 / 7).next_power_of_two()
    };
    buckets * (entry + 1) + 16
}

impl Head {
    /// The head's heap bytes by part, estimated from capacities.
    pub fn memory(&self) -> super::HeadMemory {
        use std::mem::size_of;
        let mut m = super::HeadMemory {
            series_map: self.series.heap_bytes(),
            label_lookup: table_bytes(
                self.by_labels.capacity(),
                size_of::<(Arc<Labels>, SeriesRef)>(),
            ),
            postings: table_bytes(
                self.postings.capacity(),
                size_of::<(String, HashMap<Box<str>, PostingList, BuildSeeded>)>(),
            ),
            ..Default::default()
        };
        for s in self.series.values() {
            // an `Arc`'s allocation: two counts and the value
            m.labels += 2 * size_of::<usize>() + size_of::<Labels>() + s.labels.packed_len();
            m.open_chunks += s.open.capacity_bytes();
            if let Some(d) = &s.closed.0 {
                m.closed_chunks += size_of::<VecDeque<ClosedChunk>>()
                    + d.capacity() * size_of::<ClosedChunk>()
                    + d.iter()
                        .map(|c| 2 * size_of::<usize>() + c.data.len())
                        .sum::<usize>();
            }
        }
        for (name, values) in &self.postings {
            m.postings += name.capacity()
                + table_bytes(values.capacity(), size_of::<(Box<str>, PostingList)>());
            for (value, ids) in values {
                m.postings += value.len();
                if let PostingList::Many(ids) = ids {
                    m.postings += size_of::<Vec<SeriesRef>>() + ids.capacity() * 4;
                }
            }
        }
        m
    }
}

/// Whether a value is Prometheus's staleness marker.
pub fn is_stale(v: f64) -> bool {
    chunk::is_stale(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn a_checkpoint_chunk_is_taken_whole_only_where_appending_it_gives_the_same() {
        let t0 = 1_700_000_000_000 - 1_700_000_000_000 % super::super::BLOCK_MS;
        // the head's open chunks are adaptive: these values keep the decimal form
        let mut chunk = ChunkEncoder::adaptive();
        for k in 0..50 {
            chunk.push(t0 + k * 15_000, (k * k) as f64 * 0.5).unwrap();
        }
        assert!(chunk.is_decimal());
        let bytes = chunk.bytes().to_vec();
        let nobody = Arc::new(Labels::default());
        // appended one by one: the reference
        let mut want = vec![(7, MemSeries::detached(nobody.clone(), Some(t0 - 1)))];
        let mut part = ReplayPart::new(&mut want);
        part.append_at(0, 7, |push| {
            for (t, v) in chunk.iter() {
                push(t, v);
            }
        });
        let want_stats = part.finish().1;
        let mut got = vec![(7, MemSeries::detached(nobody.clone(), Some(t0 - 1)))];
        let mut part = ReplayPart::new(&mut got);
        assert!(!part.resume_at(0, 8, &bytes), "another id");
        assert!(!part.resume_at(1, 7, &bytes), "past the run");
        assert!(!part.resume_at(0, 7, &bytes[..bytes.len() - 1]), "damaged");
        assert!(part.resume_at(0, 7, &bytes));
        assert!(
            !part.resume_at(0, 7, &bytes),
            "the series has an open chunk now"
        );
        assert_eq!(part.finish().1, want_stats);
        let (g, w) = (&got[0].1, &want[0].1);
        assert_eq!(g.open.bytes(), w.open.bytes());
        assert_eq!((g.last_t, g.mem_since), (w.last_t, w.mem_since));
        // samples at or before the series' last (in a chunk on disk), a chunk across blocks or
        // over-full: appended one by one instead, and the series is left as it was
        let mut across = ChunkEncoder::new();
        across.push(t0 - 1000, 1.0).unwrap();
        across.push(t0 + 1000, 2.0).unwrap();
        let mut full = ChunkEncoder::new();
        for k in 0..=SAMPLES_PER_CHUNK as i64 {
            full.push(t0 + k, 0.0).unwrap();
        }
        for (last, bytes) in [
            (Some(t0), &bytes[..]),
            (Some(t0 + 49 * 15_000), &bytes[..]),
            (None, across.bytes()),
            (None, full.bytes()),
        ] {
            let mut s = vec![(7, MemSeries::detached(nobody.clone(), last))];
            let mut part = ReplayPart::new(&mut s);
            assert!(!part.resume_at(0, 7, bytes), "{last:?}");
            assert_eq!(part.finish().1, AppendStats::default());
            assert!(s[0].1.open.is_empty());
            assert_eq!(s[0].1.last_t, last.unwrap_or(NO_SAMPLE));
        }
    }

    #[test]
    fn a_checkpoint_holds_every_open_chunk_in_id_order_in_rows_under_the_size() {
        let t0 = 1_700_000_000_000i64;
        let mut head = Head::default();
        let mut stats = AppendStats::default();
        for id in (0..300u32).rev() {
            head.insert(id, Arc::new(labels(&[("i", &id.to_string())])), i64::MIN);
            // a third without samples, the rest with a few; 250 and up have cut a chunk
            if id % 3 != 0 {
                let n = if id >= 250 {
                    130
                } else {
                    u64::from(id % 7) + 1
                };
                for k in 0..n as i64 {
                    head.append(id, t0 + k * 1000, f64::from(id) + k as f64, &mut stats);
                }
            }
        }
        let rows = head.checkpoint(512);
        assert!(rows.len() > 3, "{} rows", rows.len());
        let mut seen = Vec::new();
        for row in &rows {
            assert!(row.data.len() <= 512 + 64, "{}", row.data.len());
            let samples = super::super::wal::decode(&row.data).unwrap();
            assert_eq!(samples.len(), row.samples);
            assert_eq!(row.mint, samples.iter().map(|s| s.1).min().unwrap());
            assert_eq!(row.maxt, samples.iter().map(|s| s.1).max().unwrap());
            seen.extend(samples);
        }
        let mut want = Vec::new();
        let mut ids: Vec<_> = head.series.keys().collect();
        ids.sort_unstable();
        for id in ids {
            want.extend(head.series[&id].open.iter().map(|(t, v)| (id, t, v)));
        }
        assert_eq!(seen, want);
        assert!(Head::default().checkpoint(512).is_empty());
    }

    #[test]
    fn a_series_without_closed_chunks_holds_no_deque() {
        // every series of the head pays this: a regression shows here before it shows in RSS
        assert!(std::mem::size_of::<MemSeries>() <= 96);
        assert!(std::mem::size_of::<PostingList>() <= 16);
        let chunk = |maxt| ClosedChunk {
            series: 1,
            mint: 0,
            maxt,
            data: Arc::from(&[0u8][..]),
        };
        let mut c = ClosedChunks::default();
        c.push_back(chunk(1));
        c.push_back(chunk(2));
        assert_eq!(c.iter().map(|c| c.maxt).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(c.pop_front().map(|c| c.maxt), Some(1));
        assert_eq!(c.front().map(|c| c.maxt), Some(2));
        assert!(c.0.is_some());
        assert_eq!(c.pop_front().map(|c| c.maxt), Some(2));
        assert!(c.0.is_none(), "the emptied deque is freed");
        assert!(c.pop_front().is_none());
    }

    #[test]
    fn posting_lists_stay_sorted_and_shrink_back_to_one_inline_id() {
        let mut l = PostingList::One(5);
        for id in [9, 1, 7, 5, 9] {
            l.insert(id);
        }
        assert_eq!(l.as_slice(), [1, 5, 7, 9]);
        assert!(!l.remove_all(&[3]));
        assert!(!l.remove_all(&[1]));
        assert!(!l.remove_all(&[9]));
        assert_eq!(l.as_slice(), [5, 7]);
        assert!(!l.remove_all(&[5]));
        assert_eq!(l, PostingList::One(7));
        assert!(!l.remove_all(&[8]));
        assert!(l.remove_all(&[7]));
        // many at once, in one pass: ids absent from the list are ignored
        let mut l = PostingList::One(0);
        for id in 1..100 {
            l.insert(id);
        }
        let gone: Vec<SeriesRef> = (0..200).filter(|id| id % 3 != 1).collect();
        assert!(!l.remove_all(&gone));
        assert_eq!(
            l.as_slice(),
            (0..100).filter(|id| id % 3 == 1).collect::<Vec<_>>()
        );
        let all: Vec<SeriesRef> = (0..100).collect();
        assert!(l.remove_all(&all), "emptied");
        let mut l = PostingList::One(4);
        l.insert(6);
        l.insert(8);
        assert!(!l.remove_all(&[4, 8]));
        assert_eq!(l, PostingList::One(6));
    }

    #[test]
    fn many_idle_series_of_one_target_leave_together_and_the_rest_stay_indexed() {
        let mut head = Head::default();
        let mut stats = AppendStats::default();
        let ids: Vec<SeriesRef> = (0..3000)
            .map(|i| {
                head.get_or_create(labels(&[
                    ("__name__", "x"),
                    ("job", "big"),
                    ("series", &i.to_string()),
                    ("parity", if i % 2 == 0 { "even" } else { "odd" }),
                ]))
            })
            .collect();
        for (i, &id) in ids.iter().enumerate() {
            head.append(id, 1_000, 1.0, &mut stats);
            if i % 3 == 0 {
                head.append(id, 400_000, 1.0, &mut stats);
            }
        }
        head.new_series.clear();
        let idle = head.collect_idle(300_000);
        assert_eq!(idle.len(), 2000);
        assert_eq!(head.drop_idle(&idle, 300_000), 2000);
        let kept: Vec<SeriesRef> = ids.iter().copied().step_by(3).collect();
        assert_eq!(head.postings["job"]["big"].as_slice(), kept);
        assert_eq!(
            head.postings["parity"]["even"].as_slice(),
            kept.iter()
                .copied()
                .filter(|id| (id - ids[0]).is_multiple_of(2))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            head.postings["series"].len(),
            1000,
            "the values of the gone series go"
        );
        assert_eq!(head.series_count(), 1000);
        for (i, &id) in ids.iter().enumerate() {
            let l = labels(&[
                ("__name__", "x"),
                ("job", "big"),
                ("series", &i.to_string()),
                ("parity", if i % 2 == 0 { "even" } else { "odd" }),
            ]);
            assert_eq!(head.lookup(&l), (i % 3 == 0).then_some(id), "{i}");
        }
    }

    #[test]
    fn idle_series_leave_the_series_map_the_label_lookup_and_the_postings() {
        let mut head = Head::default();
        let mut stats = AppendStats::default();
        let live = head.get_or_create(labels(&[("__name__", "up"), ("job", "a")]));
        let gone = head.get_or_create(labels(&[("__name__", "up"), ("job", "b"), ("pod", "x")]));
        head.append(live, 1_000, 1.0, &mut stats);
        head.append(gone, 1_000, 1.0, &mut stats);
        head.append(live, 400_000, 1.0, &mut stats);
        head.new_series.clear(); // as after the flush that wrote them
        let idle = head.collect_idle(300_000);
        assert_eq!(idle, vec![(gone, 1_000)]);
        assert_eq!(head.cut.len(), 1, "its open chunk is cut for the flusher");
        assert_eq!(head.drop_idle(&idle, 300_000), 1);
        assert!(!head.contains(gone));
        assert_eq!(
            head.lookup(&labels(&[("__name__", "up"), ("job", "b"), ("pod", "x")])),
            None
        );
        assert!(
            !head.postings.contains_key("pod"),
            "an emptied label name goes"
        );
        assert!(
            !head.postings["job"].contains_key("b"),
            "an emptied value goes"
        );
        assert_eq!(head.postings["__name__"]["up"].as_slice(), [live]);
        assert_eq!(head.horizon(), 300_000);
        assert!(!head.complete());
        // a new series never takes the id of one that left
        let next = head.get_or_create(labels(&[("__name__", "new")]));
        assert!(next > gone);
    }

    #[test]
    fn the_kept_low_watermark_follows_first_samples_and_cuts_exactly() {
        let mut rng = crate::store::chunk::tests::XorShift(0x9e37_79b9_7f4a_7c15u64);
        let mut rand = |n: u64| rng.below(n);
        let mut head = Head::default();
        let mut stats = AppendStats::default();
        let mut ids = Vec::new();
        let mut last: HashMap<SeriesRef, i64> = HashMap::new();
        let (mut flushes, mut uncut) = (0, 0);
        for step in 0..3000i64 {
            let now = 10_000_000 + step * 1000;
            match rand(10) {
                // a new series, now and then with an old first sample (an exposition timestamp)
                0 => {
                    let id = head.get_or_create(labels(&[("__name__", &format!("s{step}"))]));
                    ids.push(id);
                    let t = if rand(3) == 0 { now - 5_000_000 } else { now };
                    head.append(id, t, 1.0, &mut stats);
                    last.insert(id, t);
                }
                // a flush: the chunks cut so far are taken after the watermark is read
                1 => {
                    let kept = head.open_low_watermark();
                    let exact = head.series.values().filter_map(|s| s.open.first_t()).min();
                    assert_eq!(kept, exact, "step {step}");
                    flushes += 1;
                    uncut += usize::from(head.cut.is_empty());
                    head.cut.clear();
                }
                _ => {
                    for &id in &ids {
                        let t = last[&id].max(now - 1000) + 1000;
                        if rand(4) > 0 {
                            head.append(id, t, step as f64, &mut stats);
                            last.insert(id, t);
                        }
                    }
                }
            }
        }
        // both kinds of flush were met: after cuts (read again) and without (the kept time)
        assert!(uncut > 10 && flushes - uncut > 10, "{uncut} of {flushes}");
    }

    #[test]
    fn a_series_that_got_a_sample_or_is_unflushed_stays() {
        let mut head = Head::default();
        let mut stats = AppendStats::default();
        let a = head.get_or_create(labels(&[("__name__", "a")]));
        let b = head.get_or_create(labels(&[("__name__", "b")]));
        head.append(a, 1_000, 1.0, &mut stats);
        head.append(b, 1_000, 1.0, &mut stats);
        head.new_series.retain(|&id| id == b); // b's row is not written yet
        let idle = head.collect_idle(300_000);
        assert_eq!(idle.len(), 2);
        // a sample arrives between the cut and the written flush
        head.append(a, 350_000, 2.0, &mut stats);
        assert_eq!(head.drop_idle(&idle, 300_000), 0);
        assert!(head.contains(a) && head.contains(b));
    }
}
