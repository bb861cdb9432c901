//! Encoding of a write-ahead batch: the samples appended between two flushes, stored as one
//! `wal` row so the append path costs one SQLite insert per flush, not one per sample.
//!
//! # In memory: the raw form
//!
//! [`WalBatch::push`] appends records `series_id: uvarint, t: zigzag varint delta from the previous
//! record's t (the first from 0), value: 8 bytes little-endian f64 bits`, in append order. Scrapes
//! stamp every sample of a target with the same time, so most deltas are one byte; a record is
//! ~11-12 bytes. Pushing is a few byte writes under the head lock; the compact form is made later,
//! by [`WalBatch::encode`], outside it (when the flush writes the row). Stores written before the compact
//! form existed hold raw rows (layout 0), and [`decode`] still reads them.
//!
//! # On disk: the grouped form (layout 1)
//!
//! ```text
//! 0x80 0x00                    marker: a non-minimal varint, which the raw form never starts with
//!                              (its varints are minimal: a last byte 0x00 follows no 0x8_ byte)
//! 0x01                         layout version
//! base: zigzag varint          the batch's smallest t (0 if the batch spans more than i64)
//! groups: uvarint              number of series groups that follow
//! per group, ids ascending:
//!   id delta: uvarint          from the previous group's id (the first from 0); 0 continues the
//!                              same series (a series with more than `chunk::MAX_SAMPLES`,
//!                              32,767, samples in one batch; an older tocsin put up to 65,535
//!                              in a group, which would now read as a damaged decimal chunk)
//!   len: uvarint               bytes of the chunk that follows
//!   chunk: len bytes           the series' samples, oldest first, as a `chunk.rs` XOR chunk whose
//!                              times are `t - base` (so its first time is a small varint)
//! ```
//!
//! Nothing follows the last group. Each series' samples keep their order; samples of different
//! series are no longer interleaved, which replay does not need (each series is appended on its
//! own). Measured with `benches/disk.sh` (100k series, 1 s scrapes, 5 s flushes: five samples per
//! series and row; the 24 rows live after 10 minutes): 5.64 bytes per sample grouped, against
//! ~11.8 raw (3-byte ids past 16,384, a 1-byte time delta, 8 value bytes). The floor per series
//! and row is its first value's 8 bytes and ~5 bytes of id, length, header and first time. zlib
//! (level 6) made the same grouped rows 0.06 bytes per sample, but only because the synthetic
//! target gives every series of one of its 256 groups the same values (identical chunks); on
//! real series a general compressor finds little in XOR-coded floats, and would cost its CPU
//! on every flush.
//!
//! # Guarantees
//!
//! - Values round-trip bit-exactly (NaN payloads such as the staleness marker, `-0.0`, `±Inf`).
//! - Decoding never panics and allocates at most in proportion to the input: damage (truncation,
//!   a bad marker or version, a chunk the chunk decoder rejects, an id past `u32`, bytes after the
//!   last group) is reported as a [`WalError`] naming what was wrong.
//! - [`WalBatch::encode`] falls back to the raw form (layout 0) if a series' times do not strictly increase
//!   in the batch, which the head never lets happen; such a row decodes all the same.

use super::chunk::{self, ChunkEncoder};
use super::head::SeriesRef;

/// First bytes of a grouped (layout 1) row.
const MARKER: [u8; 2] = [0x80, 0x00];
/// Layout version after [`MARKER`].
const LAYOUT_GROUPED: u8 = 1;

/// Occurs when a stored batch cannot be decoded; the text says what was wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum WalError {
    /// Truncated or malformed bytes.
    #[error("corrupt wal batch: {0}")]
    Corrupt(&'static str),
    /// A series' chunk inside a grouped batch is damaged.
    #[error("corrupt wal batch: chunk of series {series}: {source}")]
    Chunk {
        series: SeriesRef,
        #[source]
        source: chunk::ChunkError,
    },
    /// A layout this version does not know (written by a newer tocsin).
    #[error("wal batch layout {0} is unknown")]
    Layout(u8),
}

#[derive(Debug, Default)]
pub(crate) struct WalBatch {
    /// raw records (layout 0), in append order
    pub buf: Vec<u8>,
    prev_t: i64,
    pub mint: i64,
    pub maxt: i64,
    pub count: usize,
    /// bytes to reserve at the first sample (the previous batch's size)
    pub room: usize,
    /// where each run of increasing ids starts, kept as the
    /// records are pushed so that [`WalBatch::encode`] need not read the batch twice; at most
    /// [`MERGE_MAX_RUNS`] + 1 (more than that many runs are grouped by sorting)
    runs: Vec<Run>,
    last_id: Option<SeriesRef>,
}

fn put_uvarint(buf: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        buf.push((x as u8) | 0x80);
        x >>= 7;
    }
    buf.push(x as u8);
}

#[inline]
fn get_uvarint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    // most ids' and time deltas' varints are one byte
    if let Some(&b) = buf.get(*pos)
        && b < 0x80
    {
        *pos += 1;
        return Some(u64::from(b));
    }
    let mut x = 0u64;
    let mut shift = 0;
    loop {
        let b = *buf.get(*pos)?;
        *pos += 1;
        if shift >= 64 {
            return None;
        }
        x |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(x);
        }
        shift += 7;
    }
}

fn zigzag(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

impl WalBatch {
    pub fn push(&mut self, id: SeriesRef, t: i64, v: f64) {
        if self.count == 0 {
            self.buf.reserve(self.room);
            self.mint = t;
            self.maxt = t;
        } else {
            self.mint = self.mint.min(t);
            self.maxt = self.maxt.max(t);
        }
        if self.last_id.is_none_or(|last| id <= last) && self.runs.len() <= MERGE_MAX_RUNS {
            self.runs.push(Run {
                pos: self.buf.len(),
                t: self.prev_t,
            });
        }
        self.last_id = Some(id);
        put_uvarint(&mut self.buf, u64::from(id));
        put_uvarint(&mut self.buf, zigzag(t.wrapping_sub(self.prev_t)));
        self.buf.extend_from_slice(&v.to_bits().to_le_bytes());
        self.prev_t = t;
        self.count += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The row to store for the batch (raw records, see the module doc): the grouped form,
    /// or the raw bytes themselves if they cannot be grouped (a series' times not increasing).
    ///
    /// The records are grouped by series with the order of each kept: the batch is a few runs of
    /// increasing ids (each scrape of a target appends its series in the order they were first
    /// seen, which is their ids' order), merged here as they are read. At 100k series and 5 s
    /// flushes, decoding the whole batch to sort it made 12 MB of fresh memory per flush (page
    /// faults, the sort: ~5% of the daemon's CPU under perf). A batch of more runs (many small
    /// targets, series added out of order) is decoded and sorted as before; both give the same
    /// bytes [`tests::merging_runs_gives_the_bytes_sorting_does`]. The runs are found as the
    /// records are pushed, so the batch is read once.
    pub fn encode(&self) -> Vec<u8> {
        if self.runs.is_empty() {
            return Vec::new();
        }
        if self.runs.len() > MERGE_MAX_RUNS {
            return encode_sorted(&self.buf);
        }
        merge_runs(&self.buf, self.runs.clone(), self.mint, self.maxt)
    }
}

/// Decodes raw records (layout 0).
fn decode_raw(buf: &[u8]) -> Result<Vec<(SeriesRef, i64, f64)>, WalError> {
    let truncated = WalError::Corrupt("truncated record");
    // a record is at least 10 bytes: the capacity never exceeds what the input can hold
    let mut out = Vec::with_capacity(buf.len() / 10);
    let mut pos = 0;
    let mut t = 0i64;
    while pos < buf.len() {
        let id = get_uvarint(buf, &mut pos).ok_or(truncated.clone())?;
        let id = SeriesRef::try_from(id).map_err(|_| WalError::Corrupt("series id past u32"))?;
        let d = unzigzag(get_uvarint(buf, &mut pos).ok_or(truncated.clone())?);
        t = t.wrapping_add(d);
        let bytes: [u8; 8] = buf
            .get(pos..pos + 8)
            .and_then(|b| b.try_into().ok())
            .ok_or(truncated.clone())?;
        pos += 8;
        out.push((id, t, f64::from_bits(u64::from_le_bytes(bytes))));
    }
    Ok(out)
}

/// A run of raw records whose series ids strictly increase: where it starts, and the time
/// before its first record (times are deltas across runs).
#[derive(Clone, Copy, Debug)]
struct Run {
    pos: usize,
    t: i64,
}

/// Reads one raw record at `pos`: series id, time delta, value.
fn raw_record(buf: &[u8], pos: &mut usize) -> Option<(SeriesRef, i64, f64)> {
    let id = SeriesRef::try_from(get_uvarint(buf, pos)?).ok()?;
    let d = unzigzag(get_uvarint(buf, pos)?);
    let bytes: [u8; 8] = buf.get(*pos..*pos + 8)?.try_into().ok()?;
    *pos += 8;
    Some((id, d, f64::from_bits(u64::from_le_bytes(bytes))))
}

/// Past this many runs a batch is grouped by sorting its decoded samples instead of merging.
const MERGE_MAX_RUNS: usize = 32;

/// [`WalBatch::encode`] of raw records alone, finding their runs by reading them first (the
/// batch finds them as they are pushed); the raw bytes if a record is damaged.
#[cfg(test)]
pub(crate) fn encode(raw: &[u8]) -> Vec<u8> {
    let mut runs: Vec<Run> = Vec::new();
    let (mut pos, mut t) = (0, 0i64);
    let mut last_id = None;
    let (mut mint, mut maxt) = (i64::MAX, i64::MIN);
    while pos < raw.len() {
        let at = pos;
        let Some((id, d, _)) = raw_record(raw, &mut pos) else {
            return raw.to_vec();
        };
        if last_id.is_none_or(|last| id <= last) {
            runs.push(Run { pos: at, t });
        }
        last_id = Some(id);
        t = t.wrapping_add(d);
        mint = mint.min(t);
        maxt = maxt.max(t);
    }
    if runs.is_empty() {
        return Vec::new();
    }
    if runs.len() > MERGE_MAX_RUNS {
        return encode_sorted(raw);
    }
    merge_runs(raw, runs, mint, maxt)
}

/// The grouped row of the valid raw records `raw`, made of `runs` of increasing ids (their
/// times `mint..=maxt`), merged; the raw bytes if a series' times do not increase.
fn merge_runs(raw: &[u8], mut runs: Vec<Run>, mint: i64, maxt: i64) -> Vec<u8> {
    // each run's next record (id, time, value), read ahead; a run ends where the next begins
    let ends: Vec<usize> = runs
        .iter()
        .skip(1)
        .map(|r| r.pos)
        .chain([raw.len()])
        .collect();
    let next = |runs: &mut [Run], r: usize| -> Option<(SeriesRef, i64, f64)> {
        let run = &mut runs[r];
        if run.pos >= ends[r] {
            return None;
        }
        // validated above
        let (id, d, v) = raw_record(raw, &mut run.pos)?;
        run.t = run.t.wrapping_add(d);
        Some((id, run.t, v))
    };
    let mut heads: Vec<Option<(SeriesRef, i64, f64)>> =
        (0..runs.len()).map(|r| next(&mut runs, r)).collect();
    // the smallest id among the runs' heads, then its records run by run in the runs' order
    // (the order they were appended in). A run holds a series at most once (its ids increase),
    // so after a run's record of the series only later runs can hold more: the smallest id is
    // looked for once a series, not once a sample (a batch is mostly runs of the same series)
    let mut series: Option<(SeriesRef, usize)> = None;
    let merged = std::iter::from_fn(move || {
        loop {
            let (id, from) = match series {
                Some(current) => current,
                None => {
                    let id = heads.iter().flatten().map(|h| h.0).min()?;
                    (id, 0)
                }
            };
            match (from..heads.len()).find(|&r| heads[r].is_some_and(|h| h.0 == id)) {
                Some(r) => {
                    let head = heads[r];
                    heads[r] = next(&mut runs, r);
                    series = Some((id, r + 1));
                    return head;
                }
                None => series = None,
            }
        }
    });
    grouped(merged, base_of(mint, maxt), raw.len() / 2).unwrap_or_else(|| raw.to_vec())
}

/// The time a grouped row's times are relative to: the batch's first, unless the span from it
/// to the last overflows `i64` (then 0).
fn base_of(mint: i64, maxt: i64) -> i64 {
    if maxt.checked_sub(mint).is_some() {
        mint
    } else {
        0
    }
}

/// The grouped row (layout 1) of `samples` in series order, each series' in append order;
/// `None` when a series' times do not increase (the caller keeps the raw form).
fn grouped(
    samples: impl Iterator<Item = (SeriesRef, i64, f64)>,
    base: i64,
    capacity: usize,
) -> Option<Vec<u8>> {
    let mut samples = samples.peekable();
    let mut out = Vec::with_capacity(capacity);
    out.extend_from_slice(&MARKER);
    out.push(LAYOUT_GROUPED);
    put_uvarint(&mut out, zigzag(base));
    // the group count goes here once known: room for the longest varint, closed up after
    let count_at = out.len();
    out.extend_from_slice(&[0; 10]);
    let mut groups = 0u64;
    let mut prev_id: SeriesRef = 0;
    // one encoder for every group
    let mut enc = ChunkEncoder::new();
    while let Some(&(id, ..)) = samples.peek() {
        enc.clear();
        while let Some(&(next_id, t, v)) = samples.peek()
            && next_id == id
        {
            match enc.push(t.wrapping_sub(base), v) {
                Ok(()) => {
                    samples.next();
                }
                // a full chunk: the next group continues the series (id delta 0)
                Err(chunk::ChunkError::Full) => break,
                Err(_) => return None,
            }
        }
        put_uvarint(&mut out, u64::from(id - prev_id));
        put_uvarint(&mut out, enc.byte_len() as u64);
        out.extend_from_slice(enc.bytes());
        prev_id = id;
        groups += 1;
    }
    let mut count = Vec::with_capacity(10);
    put_uvarint(&mut count, groups);
    out[count_at..count_at + count.len()].copy_from_slice(&count);
    out.drain(count_at + count.len()..count_at + 10);
    Some(out)
}

/// [`WalBatch::encode`] by decoding the whole batch and sorting it by series (stable: each series keeps
/// its append order), for batches of many runs.
fn encode_sorted(raw: &[u8]) -> Vec<u8> {
    let Ok(mut samples) = decode_raw(raw) else {
        return raw.to_vec();
    };
    if samples.is_empty() {
        return Vec::new();
    }
    // stable: each series keeps its append order
    samples.sort_by_key(|s| s.0);
    let mint = samples.iter().map(|s| s.1).min().unwrap_or(0);
    let maxt = samples.iter().map(|s| s.1).max().unwrap_or(0);
    grouped(samples.into_iter(), base_of(mint, maxt), raw.len() / 2).unwrap_or_else(|| raw.to_vec())
}

/// One row of a checkpoint ([`CheckpointWriter`]).
#[derive(Debug)]
pub(crate) struct CheckpointRow {
    /// the oldest and newest sample of its chunks
    pub mint: i64,
    pub maxt: i64,
    pub samples: usize,
    pub data: Vec<u8>,
}

/// Writes a checkpoint of the head: every open chunk whole, as the groups of grouped rows
/// (layout 1) with base 0, so the chunks' bytes are the head's as they are (their times are
/// absolute) and any reader of rows reads them as samples. Rows stay under a size (a blob is at
/// most a gigabyte), each a complete row; the group count is written as a 5-byte varint padded
/// with continuation bits (the decoder reads non-minimal varints) so it can be filled in last.
pub(crate) struct CheckpointWriter {
    max_bytes: usize,
    rows: Vec<CheckpointRow>,
    /// the row being written: its groups so far and last id
    groups: u64,
    prev: SeriesRef,
    /// bytes of the groups still to come, at most: each row is allocated once
    left: usize,
}

/// Bytes of a checkpoint row's header: the marker, the layout, base 0 and the padded count.
const CHECKPOINT_HEADER: usize = 9;

impl CheckpointWriter {
    /// A writer of rows of at most about `max_bytes` (a chunk larger than that gets a row alone)
    /// for groups of `total` bytes at most (each a chunk and 10 bytes).
    pub(crate) fn new(max_bytes: usize, total: usize) -> Self {
        CheckpointWriter {
            max_bytes,
            rows: Vec::new(),
            groups: 0,
            prev: 0,
            left: total,
        }
    }

    /// Adds a series' open chunk; ids must ascend.
    pub(crate) fn push(&mut self, id: SeriesRef, chunk: &ChunkEncoder) {
        let (Some(first), Some(last)) = (chunk.first_t(), chunk.last_t()) else {
            return;
        };
        let bytes = chunk.bytes();
        let full = self
            .rows
            .last()
            .is_none_or(|r| self.groups > 0 && r.data.len() + bytes.len() + 10 > self.max_bytes);
        if full {
            self.finish_row();
            let mut data =
                Vec::with_capacity(CHECKPOINT_HEADER + self.left.min(self.max_bytes + 10));
            data.extend_from_slice(&MARKER);
            data.push(LAYOUT_GROUPED);
            data.push(0); // base: zigzag(0)
            data.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x00]);
            self.rows.push(CheckpointRow {
                mint: first,
                maxt: last,
                samples: 0,
                data,
            });
            self.groups = 0;
            self.prev = 0;
        }
        let row = self.rows.last_mut().expect("a row");
        debug_assert!(self.groups == 0 || id > self.prev, "ids ascend");
        put_uvarint(&mut row.data, u64::from(id - self.prev));
        put_uvarint(&mut row.data, bytes.len() as u64);
        row.data.extend_from_slice(bytes);
        row.mint = row.mint.min(first);
        row.maxt = row.maxt.max(last);
        row.samples += chunk.len();
        self.left = self.left.saturating_sub(bytes.len() + 10);
        self.groups += 1;
        self.prev = id;
    }

    fn finish_row(&mut self) {
        if let Some(row) = self.rows.last_mut() {
            let n = self.groups;
            for (i, b) in row.data[CHECKPOINT_HEADER - 5..CHECKPOINT_HEADER]
                .iter_mut()
                .enumerate()
            {
                let more = if i < 4 { 0x80 } else { 0 };
                *b = ((n >> (7 * i)) & 0x7f) as u8 | more;
            }
        }
    }

    /// The rows, oldest ids first (none without an open chunk).
    pub(crate) fn finish(mut self) -> Vec<CheckpointRow> {
        self.finish_row();
        self.rows
    }
}

/// Decodes a stored batch, either layout; damage is an error, never a panic.
pub(crate) fn decode(buf: &[u8]) -> Result<Vec<(SeriesRef, i64, f64)>, WalError> {
    let Some(groups) = Groups::new(buf)? else {
        return decode_raw(buf);
    };
    let base = groups.base();
    let mut out = Vec::new();
    for group in groups {
        let (id, bytes) = group?;
        decode_group(base, id, bytes, |t, v| out.push((id, t, v)))?;
    }
    Ok(out)
}

/// The groups of a grouped (layout 1) row in order, read as they are asked for: replay walks
/// every row's groups side by side, series by series, without decoding a row whole (at a million
/// series a crash leaves ~120 rows of a million groups each: decoded at once they were 24 bytes a
/// sample, ~3 GB). Each item is a series and its chunk's bytes ([`decode_group`] reads them); a
/// damaged row yields one error and ends.
#[derive(Clone)]
pub(crate) struct Groups<'a> {
    buf: &'a [u8],
    pos: usize,
    base: i64,
    left: u64,
    id: SeriesRef,
}

impl<'a> Groups<'a> {
    /// The groups of `buf`; None for a raw (layout 0) row, which [`decode`] reads whole.
    pub(crate) fn new(buf: &'a [u8]) -> Result<Option<Groups<'a>>, WalError> {
        if !buf.starts_with(&MARKER) {
            return Ok(None);
        }
        let truncated = WalError::Corrupt("truncated header");
        let layout = *buf.get(2).ok_or(truncated.clone())?;
        if layout != LAYOUT_GROUPED {
            return Err(WalError::Layout(layout));
        }
        let mut pos = 3;
        let base = unzigzag(get_uvarint(buf, &mut pos).ok_or(truncated.clone())?);
        let left = get_uvarint(buf, &mut pos).ok_or(truncated)?;
        // a group is at least 4 bytes (id delta, length, a 2-byte chunk header)
        if left > (buf.len() - pos) as u64 / 4 + 1 {
            return Err(WalError::Corrupt("more groups than bytes"));
        }
        Ok(Some(Groups {
            buf,
            pos,
            base,
            left,
            id: 0,
        }))
    }

    /// The row's size in bytes.
    pub(crate) fn byte_len(&self) -> usize {
        self.buf.len()
    }

    /// The time every group's chunk counts from.
    pub(crate) fn base(&self) -> i64 {
        self.base
    }

    fn group(&mut self) -> Result<(SeriesRef, &'a [u8]), WalError> {
        let buf = self.buf;
        let truncated = WalError::Corrupt("truncated group");
        let delta = get_uvarint(buf, &mut self.pos).ok_or(truncated.clone())?;
        self.id = u64::from(self.id)
            .checked_add(delta)
            .and_then(|x| SeriesRef::try_from(x).ok())
            .ok_or(WalError::Corrupt("series id past u32"))?;
        let len = get_uvarint(buf, &mut self.pos).ok_or(truncated.clone())?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| self.pos.checked_add(l))
            .filter(|&e| e <= buf.len())
            .ok_or(truncated)?;
        let bytes = &buf[self.pos..end];
        self.pos = end;
        Ok((self.id, bytes))
    }
}

impl<'a> Iterator for Groups<'a> {
    type Item = Result<(SeriesRef, &'a [u8]), WalError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            if self.pos != self.buf.len() {
                self.pos = self.buf.len();
                return Some(Err(WalError::Corrupt("bytes after the last group")));
            }
            return None;
        }
        self.left -= 1;
        let g = self.group();
        if g.is_err() {
            // one error, then nothing
            self.left = 0;
            self.pos = self.buf.len();
        }
        Some(g)
    }
}

/// Calls `f` with each sample of one group's chunk (times counted from `base`), oldest first.
pub(crate) fn decode_group(
    base: i64,
    id: SeriesRef,
    bytes: &[u8],
    mut f: impl FnMut(i64, f64),
) -> Result<(), WalError> {
    if let Some((t, v)) = chunk::single_sample(bytes) {
        f(t.wrapping_add(base), v);
        return Ok(());
    }
    let mut it = chunk::decode(bytes).map_err(|source| WalError::Chunk { series: id, source })?;
    for (t, v) in it.by_ref() {
        f(t.wrapping_add(base), v);
    }
    match it.error() {
        Some(e) => Err(WalError::Chunk {
            series: id,
            source: e.clone(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bits(samples: &[(SeriesRef, i64, f64)]) -> Vec<(SeriesRef, i64, u64)> {
        samples
            .iter()
            .map(|&(i, t, v)| (i, t, v.to_bits()))
            .collect()
    }

    /// The samples of each series in order, the form replay needs (interleaving is not kept).
    fn by_series(samples: &[(SeriesRef, i64, f64)]) -> Vec<(SeriesRef, i64, u64)> {
        let mut b = bits(samples);
        b.sort_by_key(|s| s.0);
        b
    }

    fn batch(samples: &[(SeriesRef, i64, f64)]) -> WalBatch {
        let mut b = WalBatch::default();
        for &(id, t, v) in samples {
            b.push(id, t, v);
        }
        b
    }

    #[test]
    fn raw_batch_round_trips_including_negative_deltas_and_nan_bits() {
        let stale = f64::from_bits(0x7ff0000000000002);
        let samples = [
            (1, 1_700_000_000_000, 1.5),
            (2, 1_700_000_000_000, stale),
            (70000, 1_699_999_999_000, -0.0),
            (3, -5, f64::INFINITY),
        ];
        let b = batch(&samples);
        assert_eq!(bits(&decode(&b.buf).unwrap()), bits(&samples));
        assert_eq!((b.mint, b.maxt), (-5, 1_700_000_000_000));
    }

    #[test]
    fn encoded_batch_round_trips_special_values_per_series() {
        let stale = chunk::stale_nan();
        let quiet_nan = f64::from_bits(0x7ff8_0000_0000_0001);
        let samples = [
            (5, 1_700_000_000_000, 1.5),
            (2, 1_700_000_000_000, stale),
            (5, 1_700_000_001_000, f64::NEG_INFINITY),
            (2, 1_700_000_001_000, -0.0),
            (70000, 1_699_999_999_000, quiet_nan),
            (0, i64::MIN, f64::INFINITY),
            (0, i64::MAX, f64::MIN_POSITIVE / 2.0),
            (u32::MAX, 7, 0.0),
        ];
        let b = batch(&samples);
        let row = encode(&b.buf);
        assert!(row.starts_with(&MARKER), "grouped, not the raw fallback");
        assert_eq!(bits(&decode(&row).unwrap()), by_series(&samples));
    }

    #[test]
    fn empty_batch_encodes_to_nothing_and_decodes_to_nothing() {
        assert!(encode(&[]).is_empty());
        assert!(decode(&[]).unwrap().is_empty());
        // a grouped header with no groups is valid too
        assert!(decode(&[0x80, 0x00, 1, 0, 0]).unwrap().is_empty());
    }

    #[test]
    fn many_series_shrink_to_under_half_the_raw_size() {
        // 10k series, 5 scrapes a second apart, counters with noisy integer increments: one flush's
        // batch (fractional noise in every value leaves ~70%: XOR coding finds fewer equal bits)
        let mut samples = Vec::new();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut values = vec![1e6f64; 10_000];
        for k in 0..5 {
            for (id, v) in values.iter_mut().enumerate() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *v += (x % 1000) as f64;
                samples.push((id as SeriesRef, 1_700_000_000_000 + k * 1000, *v));
            }
        }
        let b = batch(&samples);
        let row = encode(&b.buf);
        assert_eq!(bits(&decode(&row).unwrap()), by_series(&samples));
        assert!(
            row.len() * 2 < b.buf.len(),
            "{} bytes encoded vs {} raw",
            row.len(),
            b.buf.len()
        );
    }

    #[test]
    fn a_series_past_a_chunks_capacity_continues_in_a_second_group() {
        let samples: Vec<_> = (0..70_000i64).map(|i| (9, i * 10, i as f64)).collect();
        let row = encode(&batch(&samples).buf);
        assert!(row.starts_with(&MARKER));
        assert_eq!(bits(&decode(&row).unwrap()), bits(&samples));
    }

    #[test]
    fn times_that_do_not_increase_fall_back_to_the_raw_form() {
        let samples = [(1, 1000, 1.0), (1, 1000, 2.0), (2, 500, 3.0)];
        let b = batch(&samples);
        let row = encode(&b.buf);
        assert_eq!(row, b.buf);
        assert_eq!(bits(&decode(&row).unwrap()), bits(&samples));
    }

    #[test]
    fn damaged_rows_are_reported_with_what_is_wrong() {
        let b = batch(&[(1, 1000, 2.0), (2, 1000, 3.0)]);
        let row = encode(&b.buf);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b.buf[..b.buf.len() - 1].to_vec(), "truncated record"),
            (row[..row.len() - 1].to_vec(), "truncated"),
            (row[..2].to_vec(), "truncated header"),
            ([&row[..], &[0]].concat(), "bytes after the last group"),
            (vec![0x80, 0x00, 9], "layout 9 is unknown"),
            (
                vec![0x80, 0x00, 1, 0, 0xff, 0xff, 0xff, 0xff, 0x0f],
                "more groups than bytes",
            ),
            // a 10-byte varint past 64 bits as the first record's id
            (vec![0xff; 11], "truncated record"),
        ];
        for (bytes, want) in cases {
            let e = decode(&bytes).unwrap_err().to_string();
            assert!(e.contains(want), "{bytes:?}: {e}");
        }
    }

    /// Batches of a few runs (merged) give the bytes that decoding and sorting gives: runs of
    /// increasing ids of any length, a series repeated across runs, special values, times that
    /// do not increase (the raw form), a series past a chunk's capacity.
    #[test]
    fn merging_runs_gives_the_bytes_sorting_does() {
        let mut rng = crate::store::chunk::tests::XorShift(0x2545_f491_4f6c_dd1du64);
        let mut rand = |n: u64| rng.below(n);
        for case in 0..300 {
            // past the merge's most runs too: those batches are sorted
            let runs = 1 + rand(MERGE_MAX_RUNS as u64 + 8) as usize;
            let mut t = 1_700_000_000_000 + rand(1000) as i64;
            let mut b = WalBatch::default();
            for _ in 0..runs {
                let mut id = rand(5) as SeriesRef;
                for _ in 0..rand(40) {
                    let v = match rand(6) {
                        0 => f64::NAN,
                        1 => chunk::stale_nan(),
                        2 => -0.0,
                        3 => f64::INFINITY,
                        _ => rand(1_000_000) as f64 / 8.0,
                    };
                    b.push(id, t, v);
                    id += 1 + rand(3) as SeriesRef;
                }
                // times go back now and then: those batches take the raw form
                t += if case % 10 == 0 { -1 } else { 1000 };
            }
            assert_eq!(encode(&b.buf), encode_sorted(&b.buf), "case {case}");
            assert_eq!(b.encode(), encode(&b.buf), "case {case}");
        }
        let long: Vec<_> = (0..70_000i64).map(|i| (9, i * 10, i as f64)).collect();
        let b = batch(&long);
        assert_eq!(encode(&b.buf), encode_sorted(&b.buf));
        assert_eq!(b.encode(), encode(&b.buf));
    }

    proptest! {
        #[test]
        fn decoding_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
            let mut grouped = MARKER.to_vec();
            grouped.push(LAYOUT_GROUPED);
            grouped.extend_from_slice(&bytes);
            let _ = decode(&grouped);
        }

        #[test]
        fn damaging_an_encoded_row_never_panics(
            samples in proptest::collection::vec((0u32..50, 0i64..10_000, any::<f64>()), 1..100),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
            cut in any::<usize>(),
        ) {
            // per-series increasing times, as the head appends them
            let mut last = std::collections::HashMap::new();
            let mut b = WalBatch::default();
            for (id, dt, v) in samples {
                let t = last.get(&id).map_or(dt, |l: &i64| l + 1 + dt);
                last.insert(id, t);
                b.push(id, t, v);
            }
            let row = encode(&b.buf);
            let decoded = decode(&row).unwrap();
            prop_assert_eq!(decoded.len(), b.count);
            let mut bad = row.clone();
            for (at, x) in flips {
                let n = bad.len();
                bad[at % n] ^= x;
            }
            let _ = decode(&bad);
            let _ = decode(&row[..cut % row.len()]);
        }
    }
}
