//! Gorilla-compressed chunks of `(timestamp_ms: i64, value: f64)` samples.
//!
//! The encoding is bit-for-bit Prometheus's XOR chunk (`tsdb/chunkenc/xor.go`, `EncXOR`), so a
//! sample costs what it costs in Prometheus's TSDB and a chunk of either program decodes in the
//! other. Open chunks are always XOR chunks; when a chunk is written to disk, [`seal`] re-codes it
//! as a decimal chunk (`chunk/dec.rs`) if that is smaller, which it is for integer counters and
//! gauges with a few decimals (most of what exporters publish). [`decode`] reads both.
//!
//! # Format
//!
//! A chunk is a 2-byte header followed by a bit stream:
//!
//! - bytes 0..2: the number of samples `n`, `u16` big-endian, at most [`MAX_SAMPLES`]. The top bit
//!   is never set: a header with it set is a decimal chunk ([`seal`], `chunk/dec.rs`), tocsin's own
//!   denser form for chunks whose values are all short decimals.
//! - bytes 2..: bits written most significant bit of each byte first. The last byte is padded with
//!   zero bits; nothing follows it. An empty chunk is exactly `[0, 0]`.
//!
//! Sample 0:
//! - `t0` as a signed varint: zigzag `(t0 << 1) ^ (t0 >> 63)`, then unsigned LEB128 (7 bits per
//!   byte, least significant group first, high bit set on every byte but the last; at most 10
//!   bytes). The stream starts byte-aligned, so these are whole bytes.
//! - `v0` as its 64 IEEE-754 bits.
//!
//! Sample 1:
//! - `d1 = t1 - t0` as an unsigned LEB128 varint (always positive: timestamps strictly increase;
//!   computed modulo 2^64, so any two `i64` timestamps fit). Still byte-aligned.
//! - `v1` XOR-coded (below).
//!
//! Sample k ≥ 2:
//! - the delta of deltas `dod = d_k - d_(k-1)` (modulo 2^64; `d_k = t_k - t_(k-1)`), coded as
//!
//!   | bits                | dod                           |
//!   |---------------------|-------------------------------|
//!   | `0`                 | 0                             |
//!   | `10`   + 14-bit `p` | -(2^13 - 1) ..= 2^13          |
//!   | `110`  + 17-bit `p` | -(2^16 - 1) ..= 2^16          |
//!   | `1110` + 20-bit `p` | -(2^19 - 1) ..= 2^19          |
//!   | `1111` + 64-bit `p` | anything (two's complement)   |
//!
//!   An `m`-bit payload `p` (m < 64) is `dod` modulo 2^m; read it as unsigned and subtract 2^m
//!   when `p > 2^(m-1)`. The ranges are one-sided (`+2^(m-1)` fits, `-2^(m-1)` does not) because
//!   Prometheus defined them so; the writer picks the first row whose range holds `dod`.
//! - `v_k` XOR-coded.
//!
//! XOR coding of `v_k` (k ≥ 1), with `x = bits(v_k) ^ bits(v_(k-1))` and a window of `L` leading
//! and `T` trailing zero bits carried from sample to sample (unset at the start of the chunk):
//!
//! - `0`: `x = 0`, the value repeats bit for bit.
//! - `10` + `64 - L - T` bits `p`: `x = p << T`, the current window. Corrupt if no window is set.
//! - `11` + 5 bits `L'` + 6 bits `m` + `m` bits `p`: `m = 0` means 64; `L' + m ≤ 64`. The window
//!   becomes `L = L'`, `T = 64 - L' - m`, and `x = p << T`.
//!
//! The writer uses the current window whenever `x`'s leading and trailing zero counts are at least
//! `L` and `T`, else opens a new window from `x`'s own counts (leading zeros capped at 31 to fit
//! 5 bits). Decoders need not know this: any choice decodes.
//!
//! # Guarantees
//!
//! - Values round-trip bit-exactly: NaN payloads, `-0.0`, subnormals. Prometheus's staleness marker
//!   ([`STALE_NAN_BITS`]) stays distinct from an ordinary NaN.
//! - Timestamps within a chunk strictly increase; [`ChunkEncoder::push`] refuses others, and the
//!   decoder reports a chunk whose timestamps do not increase as corrupt.
//! - Decoding never panics, whatever the bytes: damage ends the iteration with an error
//!   ([`ChunkIter::error`]). Besides truncation, the decoder rejects varints longer than 64 bits,
//!   out-of-range windows, non-increasing timestamps, and bytes or non-zero padding after the last
//!   sample (the header count is then wrong).
//! - The format has no checksum: a header count one too high goes unnoticed when the padding
//!   holds two zero bits (they decode as a repeat of the last delta and value).

mod dec;

/// Most samples a chunk holds: the header's top bit marks a decimal chunk, so a count uses 15 bits.
pub const MAX_SAMPLES: u16 = 0x7fff;

/// The header bit of a decimal chunk.
const DEC_FLAG: u16 = 0x8000;

/// Bit pattern of Prometheus's staleness marker: a NaN, written when a series disappears.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness marker value.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// Whether `v` is the staleness marker. Compared by bits: the marker is a NaN, and NaN != NaN.
pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// Occurs when a sample cannot be appended or bytes cannot be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChunkError {
    /// `push` of a sample not newer than the chunk's last one.
    #[error("sample at {got} is not after the chunk's last sample at {last}")]
    OutOfOrder { last: i64, got: i64 },
    /// `push` to a chunk already holding [`MAX_SAMPLES`] samples (the header cannot count more).
    #[error("chunk is full")]
    Full,
    /// Decoding bytes that are truncated or malformed; the text says what was wrong.
    #[error("corrupt chunk: {0}")]
    Corrupt(&'static str),
}

/// An appendable chunk: the encoded bytes so far plus the small state needed to append.
///
/// [`ChunkEncoder::bytes`] is always a complete chunk: the header count is rewritten on every push,
/// so an open chunk can be read (or persisted) between pushes without a "finish" step.
#[derive(Clone, Debug)]
pub struct ChunkEncoder {
    /// header and bit stream; a write stores a whole 8-byte word at the stream's last byte, so the
    /// buffer always reaches 8 bytes past it (the chunk is a prefix: see `bits`)
    /// (a boxed slice, not a `Vec`: the length is `bits`, so a capacity word would be spent on
    /// every series of the head)
    buf: Box<[u8]>,
    /// length of the bit stream; the chunk is the header and `bits.div_ceil(8)` bytes (u32: even
    /// `u16::MAX` samples of the longest form, 145 bits each, stay far below 2^32)
    bits: u32,
    /// the stream from its last, partial byte on, left-aligned (only the top `bits % 8` bits can be
    /// set): writes OR into this register instead of reading the buffer back
    tail: u64,
    /// samples so far; mirrors the header, kept to avoid parsing it on every push
    count: u16,
    /// what the next sample is coded against
    state: State,
    /// whether a chunk started empty may take the decimal form ([`ChunkEncoder::adaptive`])
    adaptive: bool,
    /// whether the chunk is in the decimal form (`chunk/dec.rs`; its header's top bit): the two
    /// bytes after the header are its scale and residual width, counted in `bits`
    decimal: bool,
}

/// An open decimal chunk refits its residual width to its samples once it holds this many (its
/// first width, [`DEC_START_WIDTH`], is a guess).
const DEC_REFIT_AT: u16 = 16;

/// The residual width an open decimal chunk starts with.
const DEC_START_WIDTH: u8 = 8;

/// Iterates the samples of an encoded chunk (XOR or decimal), oldest first.
///
/// Damaged bytes never panic: the iteration stops early and [`ChunkIter::error`] says why. A clean
/// end (all `n` samples read, nothing after them) leaves `error()` at `None`. Items are plain
/// samples rather than `Result`s because damage can only end a chunk, never skip a sample: callers
/// that care check `error()` once after the loop (or use [`decode_range`], which returns it).
#[derive(Clone, Debug)]
pub struct ChunkIter<'a> {
    inner: Inner<'a>,
    error: Option<ChunkError>,
}

#[derive(Clone, Debug)]
enum Inner<'a> {
    Xor(XorIter<'a>),
    Dec(dec::DecIter<'a>),
}

/// The decoder of an XOR chunk's stream.
#[derive(Clone, Debug)]
struct XorIter<'a> {
    r: BitReader<'a>,
    /// samples the header announces
    count: u16,
    /// samples decoded so far
    read: u16,
    state: State,
}

/// Splits a chunk into its header count (decimal flag included) and the bytes after it.
fn split_header(bytes: &[u8]) -> Result<(u16, &[u8]), ChunkError> {
    let Some((header, stream)) = bytes.split_first_chunk::<2>() else {
        return Err(ChunkError::Corrupt("missing header"));
    };
    let count = u16::from_be_bytes(*header);
    if count == 0 && !stream.is_empty() {
        return Err(ChunkError::Corrupt("bytes after the last sample"));
    }
    Ok((count, stream))
}

/// Starts decoding a chunk. Fails only if there is no 2-byte header (or an empty chunk has bytes
/// after it, or a decimal chunk's own header is malformed); damage in the stream shows during
/// iteration.
pub fn decode(bytes: &[u8]) -> Result<ChunkIter<'_>, ChunkError> {
    let (count, stream) = split_header(bytes)?;
    let inner = if count & DEC_FLAG != 0 {
        Inner::Dec(dec::DecIter::new(count & !DEC_FLAG, stream)?)
    } else {
        Inner::Xor(XorIter::new(stream, count))
    };
    Ok(ChunkIter { inner, error: None })
}

/// The sample of a chunk holding exactly one, read without a decoder: the header `0x00 0x01`, the
/// time as a zigzag varint of at most 9 bytes and the value's 8 bytes (big-endian), nothing after.
/// What write-ahead replay meets most (one sample a series a flush at scrape intervals longer than
/// the flush's); None for anything else, which [`decode`] reads as before (it reads these bytes
/// the same way).
#[inline]
pub fn single_sample(bytes: &[u8]) -> Option<(i64, f64)> {
    let [0, 1, rest @ ..] = bytes else {
        return None;
    };
    let mut t = 0u64;
    for (i, &b) in rest.iter().take(9).enumerate() {
        t |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            let value: [u8; 8] = rest[i + 1..].try_into().ok()?;
            return Some((unzigzag(t), f64::from_bits(u64::from_be_bytes(value))));
        }
    }
    None
}

/// The number of samples a chunk's header announces (0 without a header).
pub fn sample_count(bytes: &[u8]) -> u16 {
    split_header(bytes).map_or(0, |(count, _)| count & !DEC_FLAG)
}

/// The form of a closed chunk to store: the decimal coding of its samples when that is smaller
/// (every value a decimal of at most 15 fractional digits, `|value × 10^scale| < 2^53`), else the
/// chunk as it is. Bit-exact either way: a value the decimal form would not give back exactly keeps
/// the whole chunk XOR. A decimal chunk (an open one's delta residuals) is re-coded when a
/// residual form fitted to all its samples is smaller. Damaged input is returned unchanged.
pub fn seal(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    match dec::encode(bytes) {
        Some(d) if d.len() < bytes.len() => std::borrow::Cow::Owned(d),
        _ => std::borrow::Cow::Borrowed(bytes),
    }
}

/// Appends the samples with `mint <= t <= maxt` (inclusive) to `out`, stopping at the first sample
/// after `maxt`. Fails on damage met before that point; samples decoded before the damage stay in
/// `out`.
pub fn decode_range(
    bytes: &[u8],
    mint: i64,
    maxt: i64,
    out: &mut Vec<(i64, f64)>,
) -> Result<(), ChunkError> {
    if mint > maxt {
        return Ok(());
    }
    let mut it = decode(bytes)?;
    // the header's count bounds what this chunk adds: one allocation instead of a doubling series
    out.reserve(it.remaining());
    while let Some((t, v)) = it.step()? {
        if t > maxt {
            break;
        }
        if t >= mint {
            out.push((t, v));
        }
    }
    Ok(())
}

/// Growth step of an open chunk's buffer. Every series has an open chunk in memory; growing by
/// doubling would leave a quarter of that memory unused on average. A 120-sample chunk is 50-200
/// bytes for integer and constant series, so a few steps do; full-precision floats (~900 bytes)
/// pay some 27 reallocations per chunk, about a third of their encoding time, which is still
/// negligible next to scraping them.
const GROW_BYTES: usize = 32;

/// `leading` value meaning "no XOR window yet" (a real one is at most 31).
const NO_WINDOW: u8 = u8::MAX;

/// The delta-of-delta payload widths after the `10`, `110` and `1110` prefixes.
const DOD_WIDTHS: [u32; 3] = [14, 17, 20];

/// The coding state between two samples, the same for writing and reading: this is what lets
/// [`ChunkEncoder::from_bytes`] resume appending from a decoder's state.
#[derive(Clone, Copy, Debug)]
struct State {
    /// time of the last sample
    t: i64,
    /// last time delta, modulo 2^64 (a delta from `i64::MIN` to `i64::MAX` does not fit `i64`)
    delta: u64,
    /// bits of the last value
    value: u64,
    /// the XOR window: leading zeros (`NO_WINDOW` until the first `11` control) and trailing zeros
    leading: u8,
    trailing: u8,
}

impl State {
    const START: State = State {
        t: 0,
        delta: 0,
        value: 0,
        leading: NO_WINDOW,
        trailing: 0,
    };
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkEncoder {
    /// An empty chunk (its bytes are the header `[0, 0]`).
    pub fn new() -> Self {
        ChunkEncoder {
            // the header and room for the first sample (up to 18 bytes) and then some
            buf: vec![0; GROW_BYTES].into_boxed_slice(),
            bits: 0,
            tail: 0,
            count: 0,
            state: State::START,
            adaptive: false,
            decimal: false,
        }
    }

    /// An empty chunk that takes the decimal form (`chunk/dec.rs`, delta residuals) when its
    /// first value is a short decimal, and keeps it while its values are (a value with more
    /// decimals re-codes the samples so far at a finer scale; one with none, the whole chunk as
    /// XOR). The head's open chunks are these: target.py-like integer counters cost ~1.6 bytes a
    /// sample instead of XOR's 2.4, `%.3f` gauges ~2.7 instead of 7.3 (`benches/chunk.rs`), and
    /// open chunks are most of the head's memory. Deterministic: the same samples pushed give the
    /// same bytes, so a checkpoint's chunk resumes as if never closed.
    pub fn adaptive() -> Self {
        ChunkEncoder {
            adaptive: true,
            ..Self::new()
        }
    }

    /// Whether the chunk is in the decimal form.
    pub fn is_decimal(&self) -> bool {
        self.decimal
    }

    /// Appends a sample. `t` must be after the last sample's time; the value is kept bit-exactly.
    /// On error nothing is written.
    pub fn push(&mut self, t: i64, v: f64) -> Result<(), ChunkError> {
        if self.count == MAX_SAMPLES {
            return Err(ChunkError::Full);
        }
        if self.count > 0 && t <= self.state.t {
            return Err(ChunkError::OutOfOrder {
                last: self.state.t,
                got: t,
            });
        }
        if self.decimal {
            return self.push_decimal(t, v);
        }
        if self.count == 0
            && self.adaptive
            && let Some((scale, m)) = dec::smallest_scale(v)
        {
            self.start_decimal(t, v, scale, DEC_START_WIDTH, m);
            return Ok(());
        }
        let bits = v.to_bits();
        match self.count {
            0 => {
                self.write_uvarint(zigzag(t));
                self.write_bits(bits, 64);
                self.state.value = bits;
            }
            1 => {
                let delta = t.wrapping_sub(self.state.t) as u64;
                self.write_uvarint(delta);
                self.write_value(0, 0, bits);
                self.state.delta = delta;
            }
            _ => {
                let delta = t.wrapping_sub(self.state.t) as u64;
                let dod = delta.wrapping_sub(self.state.delta) as i64;
                match dod_code(dod) {
                    Some((code, len)) => self.write_value(code, len, bits),
                    None => {
                        self.write_bits(0b1111, 4);
                        self.write_bits(dod as u64, 64);
                        self.write_value(0, 0, bits);
                    }
                }
                self.state.delta = delta;
            }
        }
        self.state.t = t;
        self.count += 1;
        self.buf[..2].copy_from_slice(&self.count.to_be_bytes());
        Ok(())
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Time of the oldest sample.
    /// Read back from the stream's first varint, not kept in a field: the head asks it once a
    /// chunk or a query, and the field cost 8 bytes on every series (`benches/memory.rs`).
    pub fn first_t(&self) -> Option<i64> {
        if self.count == 0 {
            return None;
        }
        let mut z = 0u64;
        // after the header (and a decimal chunk's scale and width), at most 10 bytes, the last
        // without the high bit
        let start = if self.decimal { 4 } else { 2 };
        for (i, &b) in self.buf[start..].iter().take(10).enumerate() {
            z |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                break;
            }
        }
        Some(unzigzag(z))
    }

    /// Time of the newest sample.
    pub fn last_t(&self) -> Option<i64> {
        (self.count > 0).then_some(self.state.t)
    }

    /// Value of the newest sample, bit-exact (a staleness marker stays one).
    pub fn last_value(&self) -> Option<f64> {
        (self.count > 0).then_some(f64::from_bits(self.state.value))
    }

    /// The complete, decodable encoding of every sample pushed so far.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.byte_len()]
    }

    /// Asks for the bytes a push reads and writes (the header, the last byte) to be brought
    /// into the cache, without waiting (`Head::prefetch`).
    #[inline]
    pub fn prefetch(&self) {
        let first = self.buf.as_ptr();
        crate::sys::prefetch(first);
        crate::sys::prefetch(first.wrapping_add(self.byte_len().saturating_sub(1)));
    }

    /// Bytes of the buffer (what the encoder holds on the heap; more than [`ChunkEncoder::byte_len`]).
    pub fn capacity_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Gives an encoder without samples `buf` to write into, returning the buffer it had: write-
    /// ahead replay lends each series of a block one large enough for a chunk, so rebuilding
    /// never grows it (growing 32 bytes at a time was a realloc every dozen samples, and page
    /// faults and heap churn across a million series). Bytes after the header may be anything.
    pub fn lend(&mut self, mut buf: Box<[u8]>) -> Box<[u8]> {
        debug_assert_eq!(self.count, 0, "lend before the first sample");
        if self.count != 0 || buf.len() < GROW_BYTES {
            return buf;
        }
        buf[..2].fill(0);
        std::mem::replace(&mut self.buf, buf)
    }

    /// Moves the chunk into a buffer of its own size (the stream and the 8 bytes every write
    /// needs past it) and returns the one it was in, to lend again.
    pub fn compact(&mut self) -> Box<[u8]> {
        let used = self.byte_len();
        let mut exact = vec![0u8; 2 + (self.bits / 8) as usize + 8].into_boxed_slice();
        exact[..used].copy_from_slice(&self.buf[..used]);
        std::mem::replace(&mut self.buf, exact)
    }

    /// Length of [`ChunkEncoder::bytes`].
    pub fn byte_len(&self) -> usize {
        2 + self.bits.div_ceil(8) as usize
    }

    /// The samples pushed so far, oldest first.
    pub fn iter(&self) -> ChunkIter<'_> {
        if self.decimal {
            // (the header the encoder wrote is well formed: `new` cannot fail on it)
            if let Ok(d) = dec::DecIter::new(self.count, &self.bytes()[2..]) {
                return ChunkIter {
                    inner: Inner::Dec(d),
                    error: None,
                };
            }
        }
        ChunkIter {
            inner: Inner::Xor(XorIter::new(&self.bytes()[2..], self.count)),
            error: None,
        }
    }

    /// Rebuilds an encoder from bytes produced by [`ChunkEncoder::bytes`], able to keep appending:
    /// further pushes give the same bytes as if the chunk had never been closed. Fails on any damage
    /// (the whole chunk is decoded to recover the coding state) and on a decimal chunk ([`seal`]'s
    /// form is for storage only).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ChunkError> {
        let mut enc = ChunkEncoder {
            buf: Box::new([]),
            bits: 0,
            tail: 0,
            count: 0,
            state: State::START,
            adaptive: false,
            decimal: false,
        };
        enc.resume(bytes)?;
        Ok(enc)
    }

    /// Makes an encoder without samples hold the chunk `bytes` (as [`ChunkEncoder::from_bytes`]),
    /// in its own buffer when that has room (one [`ChunkEncoder::lend`] gave it): write-ahead
    /// replay of a checkpoint takes each series' open chunk whole instead of appending its samples
    /// one by one. On an error the encoder is left without samples.
    pub fn resume(&mut self, bytes: &[u8]) -> Result<(), ChunkError> {
        debug_assert_eq!(self.count, 0, "resume before the first sample");
        let (count, stream) = split_header(bytes)?;
        if count & DEC_FLAG != 0 {
            return self.resume_decimal(bytes);
        }
        let mut it = XorIter::new(stream, count);
        while it.step()?.is_some() {}
        // every write stores a word at the stream's last byte: 8 bytes past it, and then some
        if self.buf.len() < bytes.len() + GROW_BYTES {
            self.buf = vec![0; bytes.len() + GROW_BYTES].into_boxed_slice();
        }
        self.buf[..bytes.len()].copy_from_slice(bytes);
        // the decoder checked that the stream ends in the last byte, padded with zeros
        self.bits = it.r.pos() as u32;
        self.tail = match (it.r.pos() % 8, bytes.last()) {
            (1.., Some(&last)) => u64::from(last) << 56,
            _ => 0,
        };
        self.count = it.count;
        self.state = it.state;
        Ok(())
    }

    /// Drops every sample, keeping the buffer (and whether the chunk may take the decimal form).
    pub fn clear(&mut self) {
        if let Some(header) = self.buf.get_mut(..2) {
            header.fill(0);
        }
        self.bits = 0;
        self.tail = 0;
        self.count = 0;
        self.state = State::START;
        self.decimal = false;
    }

    /// [`ChunkEncoder::resume`] of a decimal chunk: decoded to its end for the coding state, then
    /// its bytes taken as they are. Only the delta mode continues: an adaptive encoder writes
    /// nothing else, while a sealed chunk may code deltas of deltas (its width fitted to all its
    /// samples), which appending cannot continue; it is refused, as before, and the caller
    /// appends its samples instead. Pushing every sample again gave the same bytes, at ~3x the
    /// cost: at a million series a checkpoint's ~90M samples were a third of a crashed start.
    fn resume_decimal(&mut self, bytes: &[u8]) -> Result<(), ChunkError> {
        let (count, stream) = split_header(bytes)?;
        let end = dec::open_end(count & !DEC_FLAG, stream)?;
        if self.buf.len() < bytes.len() + GROW_BYTES {
            self.buf = vec![0; bytes.len() + GROW_BYTES].into_boxed_slice();
        }
        self.buf[..bytes.len()].copy_from_slice(bytes);
        // the decoder checked that the stream ends in the last byte, padded with zeros
        self.bits = end.bits;
        self.tail = match (end.bits % 8, bytes.last()) {
            (1.., Some(&last)) => u64::from(last) << 56,
            _ => 0,
        };
        self.count = end.count;
        self.state = State {
            t: end.t,
            delta: end.delta,
            value: end.value.to_bits(),
            ..State::START
        };
        self.decimal = true;
        Ok(())
    }

    /// Starts the decimal form with the first sample: `m` is `v` at `scale`.
    fn start_decimal(&mut self, t: i64, v: f64, scale: u8, width: u8, m: i64) {
        debug_assert_eq!(self.count, 0);
        if self.buf.len() < GROW_BYTES {
            self.buf = vec![0; GROW_BYTES].into_boxed_slice();
        }
        self.decimal = true;
        self.buf[2] = scale;
        self.buf[3] = width;
        self.bits = 16;
        self.tail = 0;
        self.write_uvarint(zigzag(t));
        self.write_uvarint(zigzag(m));
        self.state.t = t;
        self.state.delta = 0;
        self.state.value = v.to_bits();
        self.count = 1;
        self.buf[..2].copy_from_slice(&(DEC_FLAG | 1).to_be_bytes());
    }

    /// `push` of a decimal chunk (order and room checked).
    fn push_decimal(&mut self, t: i64, v: f64) -> Result<(), ChunkError> {
        let scale = self.buf[2];
        let Some(m) = dec::mantissa(v, scale) else {
            self.widen(v)?;
            return self.push(t, v);
        };
        let prev = dec::mantissa_of_kept(f64::from_bits(self.state.value), scale);
        self.append_decimal(t, v, m.wrapping_sub(prev));
        if self.count == DEC_REFIT_AT {
            self.refit();
        }
        Ok(())
    }

    /// Writes a sample of a decimal chunk after the first: its time and the residual `r` of its
    /// integer against the last one's.
    fn append_decimal(&mut self, t: i64, v: f64, r: i64) {
        let delta = t.wrapping_sub(self.state.t) as u64;
        if self.count == 1 {
            self.write_uvarint(delta);
        } else {
            let dod = delta.wrapping_sub(self.state.delta) as i64;
            match dod_code(dod) {
                Some((code, len)) => self.write_bits(code, len),
                None => {
                    self.write_bits(0b1111, 4);
                    self.write_bits(dod as u64, 64);
                }
            }
        }
        let width = u32::from(self.buf[3]);
        match dec::width(r) {
            0 => self.write_bits(0, 1),
            n if n <= width => {
                self.write_bits(0b10, 2);
                self.write_bits(zigzag(r), width);
            }
            n => {
                self.write_bits(0b11 << 6 | u64::from(n - 1), 8);
                self.write_bits(zigzag(r), n);
            }
        }
        self.state.t = t;
        self.state.delta = delta;
        self.state.value = v.to_bits();
        self.count += 1;
        self.buf[..2].copy_from_slice(&(DEC_FLAG | self.count).to_be_bytes());
    }

    /// Writes `samples` again as a decimal chunk at `scale` with residual width `width`; every
    /// value must be a decimal at that scale.
    fn rewrite_decimal(&mut self, samples: &[(i64, f64)], scale: u8, width: u8) {
        self.clear();
        let mut prev = 0;
        for (i, &(t, v)) in samples.iter().enumerate() {
            let m = dec::mantissa_of_kept(v, scale);
            if i == 0 {
                self.start_decimal(t, v, scale, width, m);
            } else {
                self.append_decimal(t, v, m.wrapping_sub(prev));
            }
            prev = m;
        }
    }

    /// Makes room for a value that is no decimal at the chunk's scale: the samples so far
    /// re-coded at the finest scale that holds them all and it, or as an XOR chunk when none
    /// does. The caller then pushes the value.
    #[cold]
    fn widen(&mut self, v: f64) -> Result<(), ChunkError> {
        let mut samples = Vec::new();
        decode_range(self.bytes(), i64::MIN, i64::MAX, &mut samples)?;
        let (scale, width) = (self.buf[2], self.buf[3]);
        let finer = (scale + 1..=dec::MAX_SCALE as u8).find(|&s| {
            dec::mantissa(v, s).is_some()
                && samples.iter().all(|&(_, x)| dec::mantissa(x, s).is_some())
        });
        match finer {
            Some(s) => self.rewrite_decimal(&samples, s, width),
            None => {
                self.clear();
                let adaptive = std::mem::replace(&mut self.adaptive, false);
                for &(t, x) in &samples {
                    self.push(t, x)?;
                }
                self.adaptive = adaptive;
            }
        }
        Ok(())
    }

    /// Re-codes the samples so far with the residual width that fits them best, if that is
    /// not the one the chunk started with.
    #[cold]
    fn refit(&mut self) {
        let samples: Vec<(i64, f64)> = self.iter().collect();
        let scale = self.buf[2];
        let width = dec::best_delta_width(
            samples
                .iter()
                .map(|&(_, v)| dec::mantissa_of_kept(v, scale)),
        );
        if width != self.buf[3] && samples.len() == usize::from(self.count) {
            self.rewrite_decimal(&samples, scale, width);
        }
    }

    /// Writes the low `n` bits of `v` (1 ≤ n ≤ 64), most significant first. Higher bits of `v`
    /// must be zero.
    #[inline(always)]
    fn write_bits(&mut self, v: u64, n: u32) {
        debug_assert!((1..=64).contains(&n) && (n == 64 || v >> n == 0));
        if n > 56 {
            // a word at the current byte has room for 56 bits past any bit offset
            self.write_short(v >> 32, n - 32);
            self.write_short(v & 0xffff_ffff, 32);
        } else {
            self.write_short(v, n);
        }
    }

    /// `write_bits` for 1 ≤ n ≤ 56.
    #[inline(always)]
    fn write_short(&mut self, v: u64, n: u32) {
        let i = 2 + (self.bits / 8) as usize;
        let used = self.bits % 8;
        self.tail |= v << (64 - used - n);
        loop {
            // a store only: loading the word back would stall on the previous, overlapping store
            if let Some(w) = self.buf.get_mut(i..).and_then(|s| s.first_chunk_mut::<8>()) {
                *w = self.tail.to_be_bytes();
                break;
            }
            self.grow();
        }
        self.bits += n;
        // drop the bytes completed (at most 7: used + n ≤ 63)
        self.tail <<= (used + n) / 8 * 8;
    }

    #[cold]
    fn grow(&mut self) {
        let mut buf = std::mem::take(&mut self.buf).into_vec();
        buf.reserve_exact(GROW_BYTES);
        buf.resize(buf.capacity(), 0);
        self.buf = buf.into_boxed_slice();
    }

    /// Unsigned LEB128, byte by byte (the stream is byte-aligned where varints occur).
    fn write_uvarint(&mut self, mut x: u64) {
        while x >= 0x80 {
            self.write_bits((x & 0x7f) | 0x80, 8);
            x >>= 7;
        }
        self.write_bits(x, 8);
    }

    /// Writes the value's XOR coding, preceded by `code` (`len` ≤ 24 bits, the timestamp's
    /// delta-of-delta code): one write for both, then one for the meaningful bits.
    #[inline]
    fn write_value(&mut self, code: u64, len: u32, bits: u64) {
        let x = bits ^ self.state.value;
        self.state.value = bits;
        if x == 0 {
            self.write_bits(code << 1, len + 1);
            return;
        }
        // at most 31: the count is stored in 5 bits; a smaller count only widens the window
        let leading = x.leading_zeros().min(31);
        let trailing = x.trailing_zeros();
        let (l, t) = (
            u32::from(self.state.leading),
            u32::from(self.state.trailing),
        );
        if self.state.leading != NO_WINDOW && leading >= l && trailing >= t {
            self.write_bits(code << 2 | 0b10, len + 2);
            self.write_bits(x >> t, 64 - l - t);
        } else {
            let m = 64 - leading - trailing;
            // 64 meaningful bits are written as 0 in the 6-bit field
            let control = 0b11 << 11 | u64::from(leading) << 6 | u64::from(m & 63);
            self.write_bits(code << 13 | control, len + 13);
            self.write_bits(x >> trailing, m);
            self.state.leading = leading as u8;
            self.state.trailing = trailing as u8;
        }
    }
}

/// The short codes of a delta of delta as (bits, length): `0`, or a prefix of 1 to 3 ones and a
/// zero with a 14-, 17- or 20-bit payload. `None` for the long form, `1111` + 64 bits.
#[inline]
fn dod_code(dod: i64) -> Option<(u64, u32)> {
    if dod == 0 {
        return Some((0, 1));
    }
    for (i, &m) in DOD_WIDTHS.iter().enumerate() {
        if dod_fits(dod, m) {
            // i + 1 ones then a zero, e.g. `110` for i = 1
            let prefix_len = i as u32 + 2;
            let prefix = (1u64 << prefix_len) - 2;
            let payload = dod as u64 & ((1u64 << m) - 1);
            return Some((prefix << m | payload, prefix_len + m));
        }
    }
    None
}

impl<'a> XorIter<'a> {
    fn new(stream: &'a [u8], count: u16) -> Self {
        XorIter {
            r: BitReader::new(stream),
            count,
            read: 0,
            state: State::START,
        }
    }

    /// The next sample, `None` after the last.
    #[inline(always)]
    fn step(&mut self) -> Result<Option<(i64, f64)>, ChunkError> {
        if self.read == self.count {
            return Ok(None);
        }
        let r = &mut self.r;
        let s = &mut self.state;
        match self.read {
            0 => {
                s.t = unzigzag(r.read_uvarint()?);
                s.value = r.read_long(64)?;
            }
            1 => {
                s.delta = r.read_uvarint()?;
                s.t = next_t(s.t, s.delta)?;
                read_value(r, s)?;
            }
            _ => {
                s.delta = s.delta.wrapping_add(read_dod(r)? as u64);
                s.t = next_t(s.t, s.delta)?;
                read_value(r, s)?;
            }
        }
        self.read += 1;
        if self.read == self.count {
            self.r.check_end()?;
        }
        Ok(Some((self.state.t, f64::from_bits(self.state.value))))
    }
}

impl ChunkIter<'_> {
    /// Why the iteration ended early, if the bytes were damaged.
    pub fn error(&self) -> Option<&ChunkError> {
        self.error.as_ref()
    }

    /// Samples not yet read, as the header announces them.
    fn remaining(&self) -> usize {
        match &self.inner {
            Inner::Xor(x) => usize::from(x.count - x.read),
            Inner::Dec(d) => d.remaining(),
        }
    }

    /// The next sample, `None` after the last; the `Result` form of `next` for internal loops.
    #[inline(always)]
    fn step(&mut self) -> Result<Option<(i64, f64)>, ChunkError> {
        match &mut self.inner {
            Inner::Xor(x) => x.step(),
            Inner::Dec(d) => d.step(),
        }
    }
}

impl Iterator for ChunkIter<'_> {
    type Item = (i64, f64);

    #[inline]
    fn next(&mut self) -> Option<(i64, f64)> {
        if self.error.is_some() {
            return None;
        }
        match self.step() {
            Ok(s) => s,
            Err(e) => {
                self.error = Some(e);
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        // damage may end the iteration early
        let left = if self.error.is_some() {
            0
        } else {
            self.remaining()
        };
        (0, Some(left))
    }
}

impl std::iter::FusedIterator for ChunkIter<'_> {}

/// Reads bits most significant first from a byte slice, through a 64-bit buffer refilled with
/// one unaligned big-endian load per up to 8 bytes, so a read is a compare and two shifts.
#[derive(Clone, Debug)]
struct BitReader<'a> {
    bytes: &'a [u8],
    /// next byte of `bytes` to load into `buf`
    next: usize,
    /// the loaded, unread bits, left-aligned: the top `valid` bits. The bits below them are zero or
    /// the stream bits that follow (a refill ORs those same bits in again), zero past the end.
    buf: u64,
    valid: u32,
}

impl<'a> BitReader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        BitReader {
            bytes,
            next: 0,
            buf: 0,
            valid: 0,
        }
    }

    /// Position in bits from the start of the stream.
    fn pos(&self) -> usize {
        self.next * 8 - self.valid as usize
    }

    /// Loads as many whole bytes as fit below the valid bits: afterwards at least 57 bits are
    /// valid, or every byte is loaded.
    #[inline]
    fn refill(&mut self) {
        let room = (64 - self.valid) / 8;
        match self
            .bytes
            .get(self.next..)
            .and_then(|s| s.first_chunk::<8>())
        {
            Some(w) => {
                self.buf |= u64::from_be_bytes(*w) >> self.valid;
                self.next += room as usize;
                self.valid += room * 8;
            }
            None => self.refill_tail(room),
        }
    }

    /// `refill` in the last 7 bytes, where an 8-byte load would run past the end.
    #[cold]
    fn refill_tail(&mut self, room: u32) {
        let rest = self.bytes.get(self.next..).unwrap_or_default();
        let take = rest.len().min(room as usize);
        let mut w = [0u8; 8];
        w[..take].copy_from_slice(&rest[..take]);
        self.buf |= u64::from_be_bytes(w) >> self.valid;
        self.next += take;
        self.valid += take as u32 * 8;
    }

    /// The next `n` bits (1 ≤ n ≤ 56) without consuming them; bits past the end read as zero, so
    /// callers may peek a prefix longer than what remains and consume only what they decoded.
    #[inline(always)]
    fn peek(&mut self, n: u32) -> u64 {
        debug_assert!((1..=56).contains(&n));
        if self.valid < n {
            self.refill();
        }
        self.buf >> (64 - n)
    }

    /// Consumes `n` bits, 1 ≤ n ≤ 56.
    #[inline(always)]
    fn skip(&mut self, n: u32) -> Result<(), ChunkError> {
        if self.valid < n {
            self.refill();
            if self.valid < n {
                return Err(ChunkError::Corrupt("unexpected end of data"));
            }
        }
        self.buf <<= n;
        self.valid -= n;
        Ok(())
    }

    /// Reads `n` bits, 1 ≤ n ≤ 56.
    #[inline(always)]
    fn read(&mut self, n: u32) -> Result<u64, ChunkError> {
        let v = self.peek(n);
        self.skip(n)?;
        Ok(v)
    }

    /// Reads `n` bits, 1 ≤ n ≤ 64.
    #[inline(always)]
    fn read_long(&mut self, n: u32) -> Result<u64, ChunkError> {
        if n <= 56 {
            return self.read(n);
        }
        let hi = self.read(n - 32)?;
        let lo = self.read(32)?;
        Ok(hi << 32 | lo)
    }

    fn read_uvarint(&mut self) -> Result<u64, ChunkError> {
        let mut x = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.read(8)?;
            // the tenth byte holds bit 63 only
            if shift == 63 && b > 1 {
                return Err(ChunkError::Corrupt("varint overflows 64 bits"));
            }
            x |= (b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(x);
            }
        }
        Err(ChunkError::Corrupt("varint overflows 64 bits"))
    }

    /// After the last sample: only the zero padding of the current byte may remain.
    fn check_end(&self) -> Result<(), ChunkError> {
        if self.next != self.bytes.len() || self.valid >= 8 {
            return Err(ChunkError::Corrupt("bytes after the last sample"));
        }
        // every byte is loaded, so the bits below the valid ones are past the end (zero)
        if self.buf != 0 {
            return Err(ChunkError::Corrupt(
                "non-zero padding after the last sample",
            ));
        }
        Ok(())
    }
}

#[inline(always)]
fn read_dod(r: &mut BitReader<'_>) -> Result<i64, ChunkError> {
    // the longest short form (`1110` + 20 bits) is 24 bits: one peek covers prefix and payload
    let w = r.peek(24);
    let ones = (w << 40).leading_ones();
    if ones == 0 {
        r.skip(1)?;
        return Ok(0);
    }
    if ones >= 4 {
        r.skip(4)?;
        return Ok(r.read_long(64)? as i64);
    }
    let m = DOD_WIDTHS[ones as usize - 1];
    let prefix_len = ones + 1;
    r.skip(prefix_len + m)?;
    let p = (w >> (24 - prefix_len - m)) & ((1 << m) - 1);
    // `p` is dod modulo 2^m; above half it is a negative dod (and exactly half is +2^(m-1))
    Ok(if p > 1 << (m - 1) {
        p as i64 - (1 << m)
    } else {
        p as i64
    })
}

#[inline(always)]
fn read_value(r: &mut BitReader<'_>, s: &mut State) -> Result<(), ChunkError> {
    let control = r.peek(2);
    if control < 0b10 {
        r.skip(1)?;
        return Ok(());
    }
    if control == 0b11 {
        let header = r.read(13)?;
        let leading = (header >> 6 & 31) as u8;
        let m = match (header & 63) as u8 {
            0 => 64,
            m => m,
        };
        if leading + m > 64 {
            return Err(ChunkError::Corrupt("xor window wider than 64 bits"));
        }
        s.leading = leading;
        s.trailing = 64 - leading - m;
    } else {
        if s.leading == NO_WINDOW {
            return Err(ChunkError::Corrupt("xor window reused before it was set"));
        }
        r.skip(2)?;
    }
    let m = 64 - u32::from(s.leading) - u32::from(s.trailing);
    s.value ^= r.read_long(m)? << s.trailing;
    Ok(())
}

/// The time after `t` by `delta`; a chunk's timestamps strictly increase, so anything else (a zero
/// or wrapped-around delta) is damage.
#[inline]
fn next_t(t: i64, delta: u64) -> Result<i64, ChunkError> {
    let next = t.wrapping_add(delta as i64);
    if next <= t {
        return Err(ChunkError::Corrupt("timestamps not increasing"));
    }
    Ok(next)
}

/// Whether `dod` fits an `m`-bit payload: -(2^(m-1) - 1) ..= 2^(m-1), Prometheus's ranges.
fn dod_fits(dod: i64, m: u32) -> bool {
    let half = 1i64 << (m - 1);
    -half < dod && dod <= half
}

fn zigzag(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

fn unzigzag(z: u64) -> i64 {
    (z >> 1) as i64 ^ -((z & 1) as i64)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn encode(samples: &[(i64, f64)]) -> ChunkEncoder {
        let mut c = ChunkEncoder::new();
        for &(t, v) in samples {
            c.push(t, v).unwrap();
        }
        c
    }

    /// Samples with values as bits, so NaNs compare and -0.0 differs from 0.0.
    fn exact(samples: impl IntoIterator<Item = (i64, f64)>) -> Vec<(i64, u64)> {
        samples.into_iter().map(|(t, v)| (t, v.to_bits())).collect()
    }

    /// Encodes, then checks every way back: the encoder's iterator, `decode`, `decode_range` over
    /// everything, and an encoder rebuilt with `from_bytes`.
    fn assert_round_trip(samples: &[(i64, f64)]) -> ChunkEncoder {
        let c = encode(samples);
        let want = exact(samples.iter().copied());
        let mut it = c.iter();
        assert_eq!(exact(it.by_ref()), want);
        assert_eq!(it.error(), None);
        assert_eq!(exact(decode(c.bytes()).unwrap()), want);
        let mut out = Vec::new();
        decode_range(c.bytes(), i64::MIN, i64::MAX, &mut out).unwrap();
        assert_eq!(exact(out), want);
        let reopened = ChunkEncoder::from_bytes(c.bytes()).unwrap();
        assert_eq!(reopened.bytes(), c.bytes());
        assert_eq!(reopened.len(), samples.len());
        assert_eq!(reopened.first_t(), samples.first().map(|s| s.0));
        assert_eq!(reopened.last_t(), samples.last().map(|s| s.0));
        assert_eq!(
            reopened.last_value().map(f64::to_bits),
            samples.last().map(|s| s.1.to_bits())
        );
        c
    }

    /// A deterministic pseudo-random sequence (xorshift64), for the store's tests.
    pub(crate) struct XorShift(pub(crate) u64);

    impl XorShift {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        /// uniform in [0, 1)
        pub(super) fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }

        /// in [0, n) (`n` > 0)
        pub(crate) fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    const T0: i64 = 1_700_000_000_000;

    #[test]
    fn empty_chunk_is_just_the_header() {
        let c = ChunkEncoder::new();
        assert_eq!(c.bytes(), [0, 0]);
        assert!(c.is_empty());
        assert_eq!(
            (c.first_t(), c.last_t(), c.last_value()),
            (None, None, None)
        );
        assert_round_trip(&[]);
    }

    #[test]
    fn bytes_follow_the_documented_format() {
        // hand-encoded from the module docs:
        // header 00 03; t0 = 1 → zigzag 2 → 02; v0 = 1.0 → 3ff0000000000000;
        // d1 = 1000 → LEB128 e8 07; v1 = 1.0 → x = 0 → `0`;
        // dod = 1001 - 1000 = 1 → `10` + 00000000000001;
        // v2 = 1.5: x = 0x0008000000000000, L = 12, T = 51, m = 1 → `11` 01100 000001 `1`;
        // so after 07: 0 10 00000000000001 11 01100 000001 1, and one zero bit of padding
        let c = encode(&[(1, 1.0), (1001, 1.0), (2002, 1.5)]);
        let want = [
            0x00,
            0x03,
            0x02,
            0x3f,
            0xf0,
            0,
            0,
            0,
            0,
            0,
            0,
            0xe8,
            0x07, //
            0b0100_0000,
            0b0000_0000,
            0b1110_1100,
            0b0000_0110,
        ];
        assert_eq!(c.bytes(), want);
    }

    #[test]
    fn regular_counter_costs_under_one_and_a_half_bytes_per_sample() {
        // 15 s scrapes of an integer counter growing by small amounts, as most exporters' counters
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut v = 48_213.0;
        let samples: Vec<_> = (0..120)
            .map(|i| {
                v += (rng.next() % 5) as f64;
                (T0 + i * 15_000, v)
            })
            .collect();
        let c = assert_round_trip(&samples);
        let per_sample = c.byte_len() as f64 / 120.0;
        // measured 1.34 B/sample: a bit of timestamp, then mostly `10` + the window, which widens
        // to the largest carry seen (increments of 0..20 cost 1.8, of 0..2 cost 0.9)
        assert!(per_sample <= 1.4, "{per_sample} B/sample");
    }

    #[test]
    fn constant_gauge_costs_two_bits_a_sample() {
        let samples: Vec<_> = (0..120).map(|i| (T0 + i * 15_000, 42.0)).collect();
        let c = assert_round_trip(&samples);
        // 2 header + 6 t0 + 8 v0 + 2 d1 bytes, then `0` + `0` per sample: 48 bytes, 0.40 B/sample.
        // That fixed 18 bytes is the format's (Prometheus's); at 120 samples it cannot reach 0.3.
        assert_eq!(c.byte_len(), 48);
        let samples: Vec<_> = (0..1000).map(|i| (T0 + i * 15_000, 42.0)).collect();
        let c = assert_round_trip(&samples);
        assert!(
            c.byte_len() as f64 / 1000.0 <= 0.27,
            "{} bytes",
            c.byte_len()
        );
    }

    #[test]
    fn irregular_timestamps_round_trip() {
        let mut rng = XorShift(7);
        let mut t = -3 * 3_600_000;
        let jittery: Vec<_> = (0..500)
            .map(|i| {
                // a few ms of jitter, and now and then a gap of hours
                t += 15_000 + (rng.next() % 7) as i64 - 3;
                if i % 97 == 0 {
                    t += (rng.next() % 5) as i64 * 3_600_000;
                }
                (t, i as f64)
            })
            .collect();
        assert!(jittery[0].0 < 0 && jittery[499].0 > 0);
        assert_round_trip(&jittery);

        // every dod width on both sides of each boundary, including Prometheus's one-sided ones
        let mut t = 0;
        let mut delta = 1_000_000i64;
        let mut samples = vec![(t, 0.0)];
        for dod in [
            0,
            1,
            -1,
            8191,
            -8191,
            8192,
            -8192,
            8193,
            65535,
            -65535,
            65536,
            -65536,
            65537,
            524287,
            -524287,
            524288,
            -524288,
            524289,
            -524289,
            1 << 40,
        ] {
            delta += dod;
            t += delta;
            samples.push((t, 0.0));
        }
        assert_round_trip(&samples);

        // deltas beyond i64: the extremes of time, and a first delta over 2^63
        assert_round_trip(&[(i64::MIN, 1.0), (i64::MAX, 2.0)]);
        assert_round_trip(&[
            (i64::MIN, 1.0),
            (i64::MIN + 1, 2.0),
            (i64::MAX - 1, 3.0),
            (i64::MAX, 4.0),
        ]);
        assert_round_trip(&[(-5, 1.0), (-4, 1.0), (1 << 62, 1.0), (i64::MAX, 1.0)]);
    }

    #[test]
    fn special_values_are_bit_exact() {
        let ordinary_nan = f64::from_bits(0x7ff8_0000_0000_0001);
        let values = [
            0.0,
            -0.0,
            0.0,
            f64::NAN,
            stale_nan(),
            ordinary_nan,
            stale_nan(),
            stale_nan(),
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::from_bits(1),                     // smallest subnormal
            f64::from_bits(0x000f_ffff_ffff_ffff), // largest subnormal
            -f64::from_bits(3),
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            f64::from_bits(u64::MAX), // a negative NaN with every payload bit set
            0.1,
            1.0,
        ];
        let samples: Vec<_> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as i64 * 15_000, v))
            .collect();
        let c = assert_round_trip(&samples);
        let got: Vec<f64> = c.iter().map(|s| s.1).collect();
        assert!(is_stale(got[4]) && is_stale(got[6]) && is_stale(got[7]));
        assert!(got[5].is_nan() && !is_stale(got[5]));
        assert_eq!(got[5].to_bits(), 0x7ff8_0000_0000_0001);
        assert!(got[1] == 0.0 && got[1].is_sign_negative());
        assert!(is_stale(stale_nan()) && !is_stale(f64::NAN));
    }

    #[test]
    fn noisy_floats_round_trip() {
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        let mut v = 1000.0;
        let samples: Vec<_> = (0..2000)
            .map(|i| {
                v += 4.2 * 15.0 + (rng.next() % 10_000) as f64 / 997.0;
                let v = if i % 3 == 0 { -v * 1e-9 } else { v };
                (i * 15_000 + (rng.next() % 5) as i64, v)
            })
            .collect();
        assert_round_trip(&samples);
        // any bit pattern at all
        let samples: Vec<_> = (0..2000).map(|i| (i, f64::from_bits(rng.next()))).collect();
        assert_round_trip(&samples);
    }

    #[test]
    fn integer_counter_round_trips() {
        let samples: Vec<_> = (0..300)
            .map(|i| (T0 + i * 15_000, (i * i * 7) as f64))
            .collect();
        assert_round_trip(&samples);
    }

    #[test]
    fn out_of_order_push_is_refused_and_changes_nothing() {
        let mut c = encode(&[(1000, 1.0), (2000, 2.0)]);
        let before = c.bytes().to_vec();
        assert_eq!(
            c.push(2000, 3.0),
            Err(ChunkError::OutOfOrder {
                last: 2000,
                got: 2000
            })
        );
        assert_eq!(
            c.push(1500, 3.0),
            Err(ChunkError::OutOfOrder {
                last: 2000,
                got: 1500
            })
        );
        assert_eq!(c.bytes(), before);
        assert_eq!(c.len(), 2);
        assert_eq!(c.last_value(), Some(2.0));
        c.push(2001, 3.0).unwrap();
        assert_eq!(
            exact(c.iter()),
            exact([(1000, 1.0), (2000, 2.0), (2001, 3.0)])
        );

        let mut one = encode(&[(5, 1.0)]);
        assert_eq!(
            one.push(-5, 1.0),
            Err(ChunkError::OutOfOrder { last: 5, got: -5 })
        );
    }

    #[test]
    fn reopened_chunk_appends_byte_identically() {
        let mut rng = XorShift(99);
        let mut v = 10.0;
        let samples: Vec<_> = (0..200)
            .map(|i| {
                v += (rng.next() % 1000) as f64 / 7.0;
                let v = if i % 50 == 0 { stale_nan() } else { v };
                (T0 + i * 15_000 + (rng.next() % 3) as i64, v)
            })
            .collect();
        let whole = encode(&samples);
        // every split point: after 0, 1, 2 samples (varint stages) and everywhere in the stream
        for split in 0..=samples.len() {
            let head = encode(&samples[..split]);
            let mut resumed = ChunkEncoder::from_bytes(head.bytes()).unwrap();
            for &(t, v) in &samples[split..] {
                resumed.push(t, v).unwrap();
            }
            assert_eq!(resumed.bytes(), whole.bytes(), "split at {split}");
            assert_eq!(resumed.first_t(), whole.first_t());
        }
        // and the rebuilt encoder still refuses what the original would
        let mut resumed = ChunkEncoder::from_bytes(whole.bytes()).unwrap();
        let last = samples.last().unwrap().0;
        assert_eq!(
            resumed.push(last, 1.0),
            Err(ChunkError::OutOfOrder { last, got: last })
        );
    }

    #[test]
    fn bytes_between_pushes_are_a_complete_chunk() {
        let mut rng = XorShift(5);
        let mut c = ChunkEncoder::new();
        let mut pushed = Vec::new();
        for i in 0..150 {
            let t = T0 + i * 15_000 + (rng.next() % 3) as i64;
            let v = f64::from_bits(rng.next() >> (rng.next() % 64));
            c.push(t, v).unwrap();
            pushed.push((t, v));
            let mut it = decode(c.bytes()).unwrap();
            assert_eq!(
                exact(it.by_ref()),
                exact(pushed.iter().copied()),
                "after {i}"
            );
            assert_eq!(it.error(), None);
            assert_eq!(c.byte_len(), c.bytes().len());
        }
    }

    #[test]
    fn decode_range_bounds_are_inclusive() {
        let c = encode(&(0..10).map(|i| (i * 10, i as f64)).collect::<Vec<_>>());
        let range = |mint, maxt| {
            let mut out = vec![(-1, -1.0)];
            decode_range(c.bytes(), mint, maxt, &mut out).unwrap();
            out.into_iter().map(|s| s.0).collect::<Vec<_>>()
        };
        // appends after what `out` held
        assert_eq!(range(20, 50), [-1, 20, 30, 40, 50]);
        assert_eq!(range(19, 51), [-1, 20, 30, 40, 50]);
        assert_eq!(range(21, 49), [-1, 30, 40]);
        assert_eq!(range(90, 90), [-1, 90]);
        assert_eq!(range(0, 0), [-1, 0]);
        assert_eq!(range(91, 1000), [-1]);
        assert_eq!(range(-100, -1), [-1]);
        assert_eq!(range(50, 20), [-1]);
        assert_eq!(range(i64::MIN, i64::MAX).len(), 11);
    }

    #[test]
    fn full_chunk_is_refused() {
        let mut c = ChunkEncoder::new();
        for i in 0..i64::from(MAX_SAMPLES) {
            c.push(i * 1000, (i % 7) as f64).unwrap();
        }
        assert_eq!(c.push(1 << 40, 1.0), Err(ChunkError::Full));
        assert_eq!(c.len(), usize::from(MAX_SAMPLES));
        assert_eq!(c.iter().count(), usize::from(MAX_SAMPLES));
        // the header's top bit stays clear: it marks a decimal chunk
        assert_eq!(c.bytes()[0] & 0x80, 0);
        assert_eq!(
            ChunkEncoder::from_bytes(c.bytes()).unwrap().bytes(),
            c.bytes()
        );
    }

    #[test]
    fn damage_is_reported_not_panicked_on() {
        let samples: Vec<_> = (0..120)
            .map(|i| (T0 + i * 15_000 + i % 4, (i * 7) as f64 / 3.0))
            .collect();
        let c = encode(&samples);
        let bytes = c.bytes();

        // every truncation: an error, never a panic, never a wrong sample
        for cut in 0..bytes.len() {
            let short = &bytes[..cut];
            match decode(short) {
                Err(e) => assert_eq!(e, ChunkError::Corrupt("missing header")),
                Ok(mut it) => {
                    let got = exact(it.by_ref());
                    assert!(got.len() < 120);
                    assert_eq!(got, exact(samples[..got.len()].iter().copied()));
                    assert!(it.error().is_some(), "truncation at {cut} not reported");
                    assert_eq!(it.next(), None);
                }
            }
            assert!(ChunkEncoder::from_bytes(short).is_err());
            assert!(decode_range(short, i64::MIN, i64::MAX, &mut Vec::new()).is_err());
        }

        // extra bytes, a count too high or too low
        let mut long = bytes.to_vec();
        long.push(0);
        assert_eq!(
            ChunkEncoder::from_bytes(&long).unwrap_err(),
            ChunkError::Corrupt("bytes after the last sample")
        );
        let mut fewer = bytes.to_vec();
        fewer[1] -= 1;
        assert!(ChunkEncoder::from_bytes(&fewer).is_err());
        // one sample too many goes unnoticed when the padding holds `0` `0` (the last delta and
        // value repeated): the format cannot tell; with less padding it is an error
        for n in 2..=samples.len() {
            let c = encode(&samples[..n]);
            let mut more = c.bytes().to_vec();
            more[1] += 1;
            let (t, v) = samples[n - 1];
            let repeated = (t + (t - samples[n - 2].0), v);
            match 8 * (c.byte_len() - 2) - c.bits as usize {
                0 | 1 => assert!(ChunkEncoder::from_bytes(&more).is_err()),
                _ => assert_eq!(exact(decode(&more).unwrap()).pop(), exact([repeated]).pop()),
            }
        }
        assert_eq!(
            decode(&[0, 0, 0]).err(),
            Some(ChunkError::Corrupt("bytes after the last sample"))
        );

        // flipped bits and random bytes: whatever decodes without error must be self-consistent
        let mut rng = XorShift(88_172_645_463_325_252);
        let check = |bytes: &[u8]| {
            let decoded = decode(bytes).map(|mut it| (exact(it.by_ref()), it.error().cloned()));
            let mut out = Vec::new();
            let ranged = decode_range(bytes, i64::MIN, i64::MAX, &mut out);
            if let Ok((samples, None)) = &decoded {
                assert!(ranged.is_ok());
                assert_eq!(&exact(out), samples);
                assert!(samples.windows(2).all(|w| w[0].0 < w[1].0));
                // a clean XOR chunk reopens to the same bytes (a flipped top bit makes a
                // decimal chunk, which is never reopened)
                match ChunkEncoder::from_bytes(bytes) {
                    Ok(reopened) => assert_eq!(reopened.bytes(), bytes),
                    Err(e) => {
                        assert_eq!(bytes[0] & 0x80, 0x80, "{e}");
                    }
                }
            } else {
                assert!(ranged.is_err());
                assert!(ChunkEncoder::from_bytes(bytes).is_err());
            }
        };
        for _ in 0..20_000 {
            let mut damaged = bytes.to_vec();
            for _ in 0..1 + rng.next() % 3 {
                let bit = (rng.next() % (damaged.len() as u64 * 8)) as usize;
                damaged[bit / 8] ^= 0x80 >> (bit % 8);
            }
            check(&damaged);
        }
        for _ in 0..20_000 {
            let len = (rng.next() % 80) as usize;
            let mut random: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if len >= 2 && rng.next().is_multiple_of(2) {
                // a small count, so the stream gets decoded instead of failing at once
                random[0] = 0;
                random[1] %= 8;
            }
            check(&random);
        }
    }

    /// The one-sample reader agrees with the decoder: on every one-sample chunk the encoder
    /// writes, and on any bytes it accepts.
    #[test]
    fn single_sample_reads_what_decode_reads() {
        for (t, v) in [
            (0, 0.0),
            (1_700_000_000_000, 1.5),
            (-5, -0.0),
            ((1 << 62) - 1, f64::NAN),
            (-(1 << 62), stale_nan()),
            (63, f64::INFINITY),
        ] {
            let c = encode(&[(t, v)]);
            assert_eq!(
                single_sample(c.bytes()).map(|(t, v)| (t, v.to_bits())),
                Some((t, v.to_bits()))
            );
        }
        // a time whose varint takes 10 bytes, and two samples, are left to the decoder
        assert_eq!(single_sample(encode(&[(i64::MAX, 1.0)]).bytes()), None);
        assert_eq!(single_sample(encode(&[(1, 1.0), (2, 2.0)]).bytes()), None);
        let mut rng = 0x1234_5678_9abc_def0u64;
        for _ in 0..200_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let len = (rng % 14) as usize;
            let mut bytes = vec![0u8, 1];
            let mut x = rng;
            for _ in 0..len {
                x = x.rotate_left(9).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                bytes.push(x as u8);
            }
            if let Some((t, v)) = single_sample(&bytes) {
                let mut it = decode(&bytes).unwrap();
                assert_eq!(exact(it.by_ref()), vec![(t, v.to_bits())], "{bytes:?}");
                assert_eq!(it.error(), None, "{bytes:?}");
            }
        }
    }

    /// An encoder writing into a lent buffer (with garbage after the header) and moved into one
    /// of its own size gives the same bytes as one that grew by itself, and keeps appending.
    #[test]
    fn a_lent_then_compacted_buffer_gives_the_same_chunk() {
        let samples: Vec<(i64, f64)> = (0..120)
            .map(|i| {
                (
                    1_700_000_000_000 + i * 15_000 + (i % 3),
                    (i * i) as f64 * 0.37,
                )
            })
            .collect();
        let plain = encode(&samples);
        for split in [0, 1, 2, 7, 60, 119, 120] {
            let mut c = ChunkEncoder::new();
            let old = c.lend(vec![0xa5; 512].into_boxed_slice());
            assert_eq!(old.len(), GROW_BYTES);
            assert_eq!(c.bytes(), &[0, 0]);
            for &(t, v) in &samples[..split] {
                c.push(t, v).unwrap();
            }
            assert!(
                c.compact().len() >= 512,
                "the lent buffer comes back (grown if it had to)"
            );
            assert_eq!(c.capacity_bytes(), 2 + c.bits as usize / 8 + 8);
            for &(t, v) in &samples[split..] {
                c.push(t, v).unwrap();
            }
            assert_eq!(c.bytes(), plain.bytes(), "split at {split}");
            assert_eq!(exact(c.iter()), exact(samples.iter().copied()));
        }
        // a buffer too small to write into is not taken
        let mut c = ChunkEncoder::new();
        assert_eq!(c.lend(vec![0; 4].into_boxed_slice()).len(), 4);
    }
}
