//! Decimal chunks: the stored form of a closed chunk whose values are all short decimals.
//!
//! Most exporters publish integer counters and gauges printed with a few decimals. XOR coding pays
//! for every mantissa bit that differs between two floats: ~13 bits a sample for a counter around
//! a million growing by tens, ~50 for a gauge printed as `%.3f`, whose binary fraction never ends.
//! Here each value is kept as an integer `m` with one scale per chunk (`value = m / 10^scale`), and
//! the integers are coded as small residuals, as VictoriaMetrics stores its blocks. A chunk is only
//! re-coded when every value comes back bit for bit (see [`encode`]); [`super::seal`] keeps the
//! smaller of the two forms, so the decimal form never costs more than the XOR one.
//!
//! # Format
//!
//! - bytes 0..2: `0x8000 | n`, `u16` big-endian, `1 ≤ n ≤ 0x7fff` (the top bit tells this form
//!   from an XOR chunk, whose count never sets it).
//! - byte 2: the scale `e` (0..=15) in bits 0..4, the residual mode in bit 7 (0: deltas,
//!   1: deltas of deltas); bits 4..7 are zero.
//! - byte 3: `w`, the width of the short residual form, `1 ≤ w ≤ 64`.
//! - bytes 4..: a bit stream, most significant bit first, the last byte padded with zero bits:
//!   - sample 0: `t0` as a zigzag LEB128 varint, then `m0` as one;
//!   - sample 1: `t1 - t0` as an unsigned LEB128 varint, then the residual `m1 - m0`;
//!   - sample k ≥ 2: the timestamp's delta of deltas coded exactly as in an XOR chunk (`0`, `10`,
//!     `110`, `1110` with 14-, 17-, 20-bit payloads, `1111` + 64 bits), then the residual:
//!     `m_k - m_(k-1)` in delta mode, `(m_k - m_(k-1)) - (m_(k-1) - m_(k-2))` in the other.
//!   - a residual `r` is `0` when zero, else `10` + `w` bits of `zigzag(r)`, or `11` + 6 bits of
//!     `n - 1` + `n` bits of `zigzag(r)`, where `n` is its own width (1..=64).
//!
//! The value of sample k is `m_k as f64 / 10^e`: an exact integer (`|m| < 2^53`) divided by an
//! exact power of ten, a correctly rounded IEEE division, the same on every machine. Integer
//! arithmetic on `m` wraps, so damaged bytes decode to wrong numbers or an error, never a panic.
//!
//! # Choices, measured on `../shared/peer/target.py`'s series (`benches/chunk.rs`)
//!
//! - One scale per chunk, the smallest that gives every value back: 0 for integer counters.
//! - The mode and `w` are chosen per chunk to minimise its size, from the histogram of residual
//!   widths: deltas suit random walks and counters with jittery rates, deltas of deltas suit
//!   counters with a steady rate. Wider residuals carry their own width, so a counter reset costs
//!   one or two long forms, not a wider `w` for the whole chunk.

use super::{BitReader, ChunkError, DEC_FLAG, dod_code, next_t, read_dod, unzigzag, zigzag};

/// The largest scale: values with at most 15 digits after the point.
pub(super) const MAX_SCALE: usize = 15;

/// 10^0 ..= 10^15, each exact as an `f64`.
const POW10: [f64; MAX_SCALE + 1] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// 2^53: integers below it in magnitude are exact as `f64`.
const EXACT_INT: f64 = 9_007_199_254_740_992.0;

/// Bit 7 of byte 2: residuals are deltas of deltas.
const MODE_DOD: u8 = 0x80;

/// `v` as `m / 10^scale` with `m` an exact integer, if that division gives `v` back bit for bit
/// (so never for NaN, infinities or `-0.0`, which stay XOR-coded).
#[inline]
pub(super) fn mantissa(v: f64, scale: u8) -> Option<i64> {
    let scale = usize::from(scale);
    let x = *POW10.get(scale)? * v;
    // (NaN compares false: refused here too)
    if x.abs().partial_cmp(&EXACT_INT) != Some(std::cmp::Ordering::Less) {
        return None;
    }
    let m = round_half_away(x);
    // (a division by 1 changes nothing, and integers are most of what is sealed)
    let back = if scale == 0 {
        m as f64
    } else {
        m as f64 / POW10[scale]
    };
    (back.to_bits() == v.to_bits()).then_some(m)
}

/// The smallest scale at which `v` is a decimal, and its integer there.
pub(super) fn smallest_scale(v: f64) -> Option<(u8, i64)> {
    (0..=MAX_SCALE as u8).find_map(|s| mantissa(v, s).map(|m| (s, m)))
}

/// The integer of a value [`mantissa`] accepted at `scale` (the same rounding, without checking
/// the way back again).
#[inline]
pub(super) fn mantissa_of_kept(v: f64, scale: u8) -> i64 {
    round_half_away(POW10[usize::from(scale) & MAX_SCALE] * v)
}

/// `x` rounded to the nearest integer, halves away from zero, by hand: `f64::round` is a libm
/// call on baseline x86-64, and this runs per sample.
#[inline]
fn round_half_away(x: f64) -> i64 {
    let m = x as i64;
    let frac = x - m as f64;
    m + i64::from(frac >= 0.5) - i64::from(frac <= -0.5)
}

/// The short residual width that codes the deltas of `ms` in the fewest bits.
pub(super) fn best_delta_width(ms: impl Iterator<Item = i64>) -> u8 {
    let mut hist = [0u32; 65];
    let mut prev = None;
    for m in ms {
        if let Some(p) = prev {
            hist[width(m.wrapping_sub(p)) as usize] += 1;
        }
        prev = Some(m);
    }
    residual_cost(&hist).1
}

/// Width in bits of a residual's zigzag form; 0 for a zero residual.
pub(super) fn width(r: i64) -> u32 {
    64 - zigzag(r).leading_zeros()
}

/// Bits of the residuals with the best short width for a histogram of widths: (bits, w).
fn residual_cost(hist: &[u32; 65]) -> (u64, u8) {
    let zeros = u64::from(hist[0]);
    let Some(widest) = (1..=64).rev().find(|&w| hist[w] > 0) else {
        return (zeros, 1);
    };
    // every residual in the long form, then moved to the short one width by width
    let mut long: u64 = (1..=64).map(|w| u64::from(hist[w]) * (8 + w as u64)).sum();
    let mut short = 0u64;
    let mut best = (u64::MAX, 1);
    for (w, &count) in hist.iter().enumerate().take(widest + 1).skip(1) {
        short += u64::from(count);
        long -= u64::from(count) * (8 + w as u64);
        let bits = zeros + short * (2 + w as u64) + long;
        if bits < best.0 {
            best = (bits, w as u8);
        }
    }
    best
}

/// The decimal form of a chunk's samples with the residual mode and width that fit them best, or
/// `None` when a value has no exact short decimal or the chunk is damaged or empty. The input is
/// an XOR chunk or a decimal one (an open chunk's: delta residuals, a width fitted to its first
/// samples). The caller keeps whichever form is smaller.
pub(super) fn encode(chunk: &[u8]) -> Option<Vec<u8>> {
    // one pass: decode, and find each value's integer at the smallest scale all values so far fit;
    // a float with no short decimal ends it at its first value
    let mut it = super::decode(chunk).ok()?;
    let n = it.remaining();
    if n == 0 {
        return None;
    }
    let (mut ts, mut ms) = (Vec::with_capacity(n), Vec::<i64>::with_capacity(n));
    let mut scale = 0u8;
    if let super::Inner::Dec(d) = &mut it.inner {
        // already integers at a scale that holds them all: only the residuals change
        scale = d.scale;
        while let Some((t, m)) = d.step_integer().ok()? {
            ts.push(t);
            ms.push(m);
        }
    }
    while let Some((t, v)) = it.step().ok()? {
        let m = loop {
            if let Some(m) = mantissa(v, scale) {
                break m;
            }
            scale += 1;
            if usize::from(scale) > MAX_SCALE {
                return None;
            }
            // the earlier integers at the new scale: `10m / 10^(e+1)` is the same rational as
            // `m / 10^e`, so the same correctly rounded double, while `10m` stays exact
            for m in &mut ms {
                *m = m.checked_mul(10).filter(|m| m.unsigned_abs() < 1 << 53)?;
            }
        };
        ts.push(t);
        ms.push(m);
    }
    // residual widths in both modes (the first residual is a plain delta in both)
    let (mut deltas, mut dods) = ([0u32; 65], [0u32; 65]);
    for k in 1..ms.len() {
        let d = ms[k].wrapping_sub(ms[k - 1]);
        deltas[width(d) as usize] += 1;
        let dd = if k == 1 {
            d
        } else {
            d.wrapping_sub(ms[k - 1].wrapping_sub(ms[k - 2]))
        };
        dods[width(dd) as usize] += 1;
    }
    let (delta_bits, delta_w) = residual_cost(&deltas);
    let (dod_bits, dod_w) = residual_cost(&dods);
    let (mode, short) = if dod_bits < delta_bits {
        (MODE_DOD, dod_w)
    } else {
        (0, delta_w)
    };

    let mut w = BitWriter::with_capacity(chunk.len());
    w.out
        .extend_from_slice(&(DEC_FLAG | ms.len() as u16).to_be_bytes());
    w.out.extend_from_slice(&[scale | mode, short]);
    let (mut t_prev, mut dt) = (ts[0], 0u64);
    w.write_uvarint(zigzag(t_prev));
    w.write_uvarint(zigzag(ms[0]));
    let mut d_prev = 0i64;
    for k in 1..ms.len() {
        let t = ts[k];
        let delta = t.wrapping_sub(t_prev) as u64;
        if k == 1 {
            w.write_uvarint(delta);
        } else {
            let dod = delta.wrapping_sub(dt) as i64;
            match dod_code(dod) {
                Some((code, len)) => w.write(code, len),
                None => {
                    w.write(0b1111, 4);
                    w.write(dod as u64, 64);
                }
            }
        }
        (t_prev, dt) = (t, delta);
        let d = ms[k].wrapping_sub(ms[k - 1]);
        let r = if mode == MODE_DOD && k > 1 {
            d.wrapping_sub(d_prev)
        } else {
            d
        };
        d_prev = d;
        match width(r) {
            0 => w.write(0, 1),
            n if n <= u32::from(short) => {
                w.write(0b10, 2);
                w.write(zigzag(r), u32::from(short));
            }
            n => {
                w.write(0b11 << 6 | u64::from(n - 1), 8);
                w.write(zigzag(r), n);
            }
        }
    }
    Some(w.finish())
}

/// Writes bits most significant first into a byte vector (only used when a chunk is sealed).
struct BitWriter {
    out: Vec<u8>,
    /// the low `pending` bits are written but not yet a whole byte
    acc: u64,
    pending: u32,
}

impl BitWriter {
    fn with_capacity(n: usize) -> Self {
        BitWriter {
            out: Vec::with_capacity(n),
            acc: 0,
            pending: 0,
        }
    }

    /// Writes the low `n` bits of `v` (1 ≤ n ≤ 64); higher bits of `v` must be zero.
    #[inline]
    fn write(&mut self, v: u64, n: u32) {
        debug_assert!((1..=64).contains(&n) && (n == 64 || v >> n == 0));
        if n > 32 {
            self.write(v >> 32, n - 32);
            self.write(v & 0xffff_ffff, 32);
            return;
        }
        // at most 7 pending bits and 32 new ones: no overflow
        self.acc = self.acc << n | v;
        self.pending += n;
        while self.pending >= 8 {
            self.pending -= 8;
            self.out.push((self.acc >> self.pending) as u8);
        }
        self.acc &= (1 << self.pending) - 1;
    }

    fn write_uvarint(&mut self, mut x: u64) {
        while x >= 0x80 {
            self.write((x & 0x7f) | 0x80, 8);
            x >>= 7;
        }
        self.write(x, 8);
    }

    fn finish(mut self) -> Vec<u8> {
        if self.pending > 0 {
            self.out.push((self.acc << (8 - self.pending)) as u8);
        }
        self.out
    }
}

/// The decoder of a decimal chunk.
#[derive(Clone, Debug)]
pub(super) struct DecIter<'a> {
    r: BitReader<'a>,
    count: u16,
    read: u16,
    scale: u8,
    mode: u8,
    /// width of the short residual form
    short: u8,
    /// time, last time delta, integer value and last integer delta of the previous sample
    t: i64,
    dt: u64,
    m: i64,
    dm: i64,
}

impl<'a> DecIter<'a> {
    /// `count` without the flag; `stream` is everything after the 2-byte header.
    pub(super) fn new(count: u16, stream: &'a [u8]) -> Result<Self, ChunkError> {
        let Some((&[byte2, short], bits)) = stream.split_first_chunk::<2>() else {
            return Err(ChunkError::Corrupt("missing decimal chunk header"));
        };
        if count == 0 {
            return Err(ChunkError::Corrupt("empty decimal chunk"));
        }
        let scale = byte2 & 0x7f;
        if usize::from(scale) > MAX_SCALE {
            return Err(ChunkError::Corrupt("decimal scale out of range"));
        }
        if !(1..=64).contains(&short) {
            return Err(ChunkError::Corrupt("decimal residual width out of range"));
        }
        Ok(DecIter {
            r: BitReader::new(bits),
            count,
            read: 0,
            scale,
            mode: byte2 & MODE_DOD,
            short,
            t: 0,
            dt: 0,
            m: 0,
            dm: 0,
        })
    }

    pub(super) fn remaining(&self) -> usize {
        usize::from(self.count - self.read)
    }

    #[inline]
    fn residual(&mut self) -> Result<i64, ChunkError> {
        let n = match self.r.peek(2) {
            0b00 | 0b01 => {
                self.r.skip(1)?;
                return Ok(0);
            }
            0b10 => {
                self.r.skip(2)?;
                u32::from(self.short)
            }
            _ => (self.r.read(8)? & 63) as u32 + 1,
        };
        Ok(unzigzag(self.r.read_long(n)?))
    }

    #[inline]
    pub(super) fn step(&mut self) -> Result<Option<(i64, f64)>, ChunkError> {
        Ok(self
            .step_integer()?
            .map(|(t, m)| (t, m as f64 / POW10[usize::from(self.scale)])))
    }

    /// The next sample's time and integer (its value times 10^scale).
    #[inline]
    fn step_integer(&mut self) -> Result<Option<(i64, i64)>, ChunkError> {
        if self.read == self.count {
            return Ok(None);
        }
        match self.read {
            0 => {
                self.t = unzigzag(self.r.read_uvarint()?);
                self.m = unzigzag(self.r.read_uvarint()?);
            }
            1 => {
                self.dt = self.r.read_uvarint()?;
                self.t = next_t(self.t, self.dt)?;
                self.dm = self.residual()?;
                self.m = self.m.wrapping_add(self.dm);
            }
            _ => {
                self.dt = self.dt.wrapping_add(read_dod(&mut self.r)? as u64);
                self.t = next_t(self.t, self.dt)?;
                let r = self.residual()?;
                self.dm = if self.mode == MODE_DOD {
                    self.dm.wrapping_add(r)
                } else {
                    r
                };
                self.m = self.m.wrapping_add(self.dm);
            }
        }
        self.read += 1;
        if self.read == self.count {
            self.r.check_end()?;
        }
        Ok(Some((self.t, self.m)))
    }
}

/// Where an encoder of an open decimal chunk stands after its last sample.
pub(super) struct OpenEnd {
    pub count: u16,
    /// bits of the stream after the 2-byte header: the scale and width bytes, then the samples
    pub bits: u32,
    pub t: i64,
    /// the last time delta (0 after one sample)
    pub delta: u64,
    pub value: f64,
}

/// Decodes a decimal chunk (`count` without the flag; `stream` after the 2-byte header) to its
/// end for what appending to it needs ([`super::ChunkEncoder::resume`]). Refused: deltas of
/// deltas (a sealed form appending cannot continue), times that do not increase, and a last
/// integer that its value does not give back (damage: the next residual would be taken against
/// another integer than the decoder's).
pub(super) fn open_end(count: u16, stream: &[u8]) -> Result<OpenEnd, ChunkError> {
    let mut it = DecIter::new(count, stream)?;
    if it.mode == MODE_DOD {
        return Err(ChunkError::Corrupt(
            "a sealed decimal chunk cannot be appended to",
        ));
    }
    let mut last = None;
    while let Some((t, _)) = it.step_integer()? {
        if last.is_some_and(|l| t <= l) {
            return Err(ChunkError::Corrupt("decimal chunk times do not increase"));
        }
        last = Some(t);
    }
    let value = it.m as f64 / POW10[usize::from(it.scale)];
    if mantissa_of_kept(value, it.scale) != it.m {
        return Err(ChunkError::Corrupt(
            "decimal chunk's last integer is out of range",
        ));
    }
    Ok(OpenEnd {
        count,
        bits: 16 + it.r.pos() as u32,
        t: it.t,
        delta: it.dt,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::XorShift;
    use super::super::{ChunkEncoder, decode, decode_range, seal};
    use super::*;
    use proptest::prelude::*;

    const T0: i64 = 1_700_000_000_000;

    fn xor(samples: &[(i64, f64)]) -> Vec<u8> {
        let mut c = ChunkEncoder::new();
        for &(t, v) in samples {
            c.push(t, v).unwrap();
        }
        c.bytes().to_vec()
    }

    fn exact(samples: impl IntoIterator<Item = (i64, f64)>) -> Vec<(i64, u64)> {
        samples.into_iter().map(|(t, v)| (t, v.to_bits())).collect()
    }

    /// Seals the samples' XOR chunk and checks the stored form decodes to them bit for bit, by
    /// `decode` and by `decode_range`; returns the stored bytes.
    fn sealed(samples: &[(i64, f64)]) -> Vec<u8> {
        let x = xor(samples);
        let s = seal(&x).into_owned();
        assert!(s.len() <= x.len());
        let mut it = decode(&s).unwrap();
        assert_eq!(exact(it.by_ref()), exact(samples.iter().copied()));
        assert_eq!(it.error(), None);
        let mut out = Vec::new();
        decode_range(&s, i64::MIN, i64::MAX, &mut out).unwrap();
        assert_eq!(exact(out), exact(samples.iter().copied()));
        s
    }

    fn is_decimal(bytes: &[u8]) -> bool {
        bytes[0] & 0x80 != 0
    }

    /// `../shared/peer/target.py`'s padding series: a counter printed with `%d` growing by
    /// `rate × U(0.5, 1.5)` a second, and a gauge printed with `%.3f` walking by `U(-5, 5)`.
    fn target_like(rate: f64, gauge: bool, seed: u64) -> Vec<(i64, f64)> {
        let mut rng = XorShift(seed);
        let mut x = 200_000.0 + 800_000.0 * rng.unit();
        (0..120)
            .map(|i| {
                let v = if gauge {
                    x = (x / 1000.0 + rng.unit() * 10.0 - 5.0).max(0.0) * 1000.0;
                    format!("{:.3}", x / 1000.0).parse().unwrap()
                } else {
                    x += rate * (0.5 + rng.unit());
                    x.floor()
                };
                (T0 + i * 1000, v)
            })
            .collect()
    }

    #[test]
    fn integer_counters_take_about_half_the_bytes_of_xor() {
        // measured B/sample, XOR -> decimal: rate 3: 1.68 -> 0.75, 30: 2.10 -> 1.23,
        // 50: 2.12 -> 1.33; rate 0.1 (mostly repeats): 0.49 -> 0.41
        for (rate, seed, most) in [
            (3.0, 2, 0.5),
            (30.0, 3, 0.65),
            (50.0, 4, 0.7),
            (0.1, 1, 0.9),
        ] {
            let samples = target_like(rate, false, seed);
            let x = xor(&samples);
            let s = sealed(&samples);
            assert!(is_decimal(&s));
            assert_eq!(s[2] & 0x0f, 0, "scale 0");
            let (xb, sb) = (x.len() as f64 / 120.0, s.len() as f64 / 120.0);
            assert!(sb < most * xb, "rate {rate}: {xb:.2} -> {sb:.2} B/sample");
        }
    }

    #[test]
    fn three_decimal_gauges_take_a_third_of_xor() {
        for seed in 1..5 {
            let samples = target_like(0.0, true, seed);
            let x = xor(&samples);
            let s = sealed(&samples);
            assert!(is_decimal(&s));
            assert_eq!(s[2] & 0x0f, 3, "scale 3");
            let (xb, sb) = (x.len() as f64 / 120.0, s.len() as f64 / 120.0);
            // measured 6.8-7.0 -> 2.23 B/sample: 14-bit steps instead of a ~50-bit mantissa
            assert!(sb < xb / 3.0, "{xb:.2} -> {sb:.2} B/sample");
        }
    }

    #[test]
    fn a_steady_counter_costs_two_bits_a_sample() {
        let samples: Vec<_> = (0..120)
            .map(|i| (T0 + i * 15_000, 1e6 + 25.0 * i as f64))
            .collect();
        let s = sealed(&samples);
        assert_eq!(s[2] & MODE_DOD, MODE_DOD, "deltas of deltas");
        // header 5, t0 6, m0 3, d1 3, r1 1: 18 bytes; then 1 + 1 bits a sample
        assert!(s.len() <= 18 + 118 * 2 / 8 + 1, "{} bytes", s.len());
    }

    #[test]
    fn resuming_refuses_what_appending_cannot_continue() {
        // a sealed chunk of deltas of deltas
        let samples: Vec<_> = (0..120)
            .map(|i| (T0 + i * 15_000, 1e6 + 25.0 * i as f64))
            .collect();
        let dods = sealed(&samples);
        assert_eq!(dods[2] & MODE_DOD, MODE_DOD);
        let refused = |bytes: &[u8]| {
            let mut c = ChunkEncoder::adaptive();
            let err = c.resume(bytes).is_err();
            // refused, and left without samples
            err && c.is_empty()
        };
        assert!(refused(&dods));
        // by hand: header, scale 0, width 8, then the bits (zigzag varints are whole bytes here)
        let chunk = |n: u16, rest: &[u8]| {
            let mut b = (DEC_FLAG | n).to_be_bytes().to_vec();
            b.extend_from_slice(&[0, 8]);
            b.extend_from_slice(rest);
            b
        };
        // t0 = 1, m0 = 1: resumes; then a second sample at the same time (dt 0, residual `0`)
        let one = chunk(1, &[2, 2]);
        assert!(!refused(&one));
        assert!(refused(&chunk(2, &[2, 2, 0, 0])));
        // and with dt 1 it resumes: the encoder continues where the decoder stands
        let two = chunk(2, &[2, 2, 1, 0]);
        assert!(!refused(&two));
        let mut c = ChunkEncoder::adaptive();
        c.resume(&two).unwrap();
        c.push(3, 1.0).unwrap();
        assert_eq!(
            exact(decode(c.bytes()).unwrap()),
            exact([(1, 1.0), (2, 1.0), (3, 1.0)])
        );
        // an integer of 2^60 + 1: no f64 gives it back, so the next residual would be misread
        let mut big = vec![];
        let mut z = ((1u64 << 60) + 1) << 1;
        while z >= 0x80 {
            big.push(z as u8 | 0x80);
            z >>= 7;
        }
        big.push(z as u8);
        let mut rest = vec![2];
        rest.extend_from_slice(&big);
        assert!(refused(&chunk(1, &rest)));
    }

    #[test]
    fn a_counter_reset_costs_one_long_residual_not_a_wider_window() {
        let mut samples = target_like(10.0, false, 7);
        let before = sealed(&samples).len();
        for s in &mut samples[60..] {
            s.1 -= 1e6 - 3.0;
        }
        let after = sealed(&samples).len();
        // two long residuals (down, then the steady rate again): 8 + 21 bits each
        assert!(after <= before + 8, "{before} -> {after} bytes");
    }

    #[test]
    fn values_without_a_short_exact_decimal_keep_the_xor_form() {
        let mut rng = XorShift(99);
        let specials = [
            f64::NAN,
            super::super::stale_nan(),
            -0.0,
            f64::INFINITY,
            1e300,
            1e-300,
            2f64.powi(60),
            0.1 + 0.2,
            std::f64::consts::PI,
            f64::from_bits(rng.next() >> 2),
        ];
        for special in specials {
            let mut samples = target_like(5.0, false, 11);
            samples[77].1 = special;
            let x = xor(&samples);
            let s = seal(&x);
            assert!(
                matches!(s, std::borrow::Cow::Borrowed(_)),
                "{special:?} sealed as decimal"
            );
            assert_eq!(&*s, &x[..]);
        }
        // negative values and tiny scales are fine
        let samples: Vec<_> = (0..50)
            .map(|i| (T0 + i, -12.5 + i as f64 * 0.001))
            .map(|(t, v): (i64, f64)| (t, format!("{v:.3}").parse().unwrap()))
            .collect();
        assert!(is_decimal(&sealed(&samples)));
    }

    #[test]
    fn bytes_follow_the_documented_format() {
        // values 5, 6, 7: residuals 1, 1 as deltas (`10` + 2 bits each, 8 bits) or 1, 0 as deltas
        // of deltas, chosen: 1 → zigzag 2 → with w = 2, `10` `10`; 0 → `0`
        // header 80 03; scale 0 | dod mode → 80; w = 2 (w = 1 would make 1 a long form);
        // t0 = 1 → 02; m0 = 5 → zigzag 10 → 0a; d1 = 1000 → e8 07; r1 → `1010`;
        // t2's dod 0 → `0`, r2 → `0`: 1010 00 + 2 zero bits of padding → a0
        let s = sealed(&[(1, 5.0), (1001, 6.0), (2001, 7.0)]);
        assert_eq!(
            s,
            [0x80, 0x03, 0x80, 2, 0x02, 0x0a, 0xe8, 0x07, 0b1010_0000]
        );
        // a residual past w carries its width: 5, 6, 7, 1000007 → the last dod is 999999,
        // zigzag 1999998, 21 bits: `11` 010100 + 21 bits
        let s = sealed(&[(1, 5.0), (1001, 6.0), (2001, 7.0), (3001, 1_000_007.0)]);
        // after 07: `1010` r1, `0` `0` sample 2, `0` t3, `11` 010100, 1999998's 21 bits, 3 zero bits
        let want = [
            0b1010_0001,
            0b1010_1001,
            0b1110_1000,
            0b0100_0111,
            0b1110_0000,
        ];
        assert_eq!(&s[8..], want);
    }

    #[test]
    fn malformed_headers_and_damage_are_errors_never_panics() {
        let samples = target_like(20.0, true, 5);
        let s = sealed(&samples);
        assert!(is_decimal(&s));
        for (i, v, want) in [
            (2, 16, "decimal scale out of range"),
            (2, 0x40, "decimal scale out of range"),
            (3, 0, "decimal residual width out of range"),
            (3, 65, "decimal residual width out of range"),
        ] {
            let mut bad = s.clone();
            bad[i] = v;
            assert_eq!(decode(&bad).err(), Some(ChunkError::Corrupt(want)));
        }
        assert_eq!(
            decode(&[0x80, 0x00, 0, 1]).err(),
            Some(ChunkError::Corrupt("empty decimal chunk"))
        );
        assert_eq!(
            decode(&[0x80, 0x01, 0]).err(),
            Some(ChunkError::Corrupt("missing decimal chunk header"))
        );
        // a sealed chunk reopens only where pushing its samples gives its bytes again
        if let Ok(c) = ChunkEncoder::from_bytes(&s) {
            assert_eq!(c.bytes(), &s[..]);
        }
        let dods = sealed(&[(1, 5.0), (1001, 6.0), (2001, 7.0)]);
        assert_eq!(dods[2] & MODE_DOD, MODE_DOD);
        assert!(ChunkEncoder::from_bytes(&dods).is_err(), "not reopened");
        // every truncation is an error and the samples before it are right
        for cut in 4..s.len() {
            let mut it = decode(&s[..cut]).unwrap();
            let got = exact(it.by_ref());
            assert_eq!(got, exact(samples[..got.len()].iter().copied()));
            assert!(it.error().is_some(), "truncation at {cut} not reported");
        }
        // flipped bits: any clean decode has increasing timestamps; decode_range agrees
        let mut rng = XorShift(0x5eed);
        for _ in 0..20_000 {
            let mut bad = s.clone();
            for _ in 0..1 + rng.next() % 3 {
                let bit = (rng.next() % (bad.len() as u64 * 8)) as usize;
                bad[bit / 8] ^= 0x80 >> (bit % 8);
            }
            if let Ok(mut it) = decode(&bad) {
                let got: Vec<_> = it.by_ref().collect();
                assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
                let mut out = Vec::new();
                let ranged = decode_range(&bad, i64::MIN, i64::MAX, &mut out);
                assert_eq!(ranged.is_ok(), it.error().is_none());
            }
            // reopening damaged bytes fails or gives them back exactly, never panics
            if let Ok(c) = ChunkEncoder::from_bytes(&bad) {
                assert_eq!(c.bytes(), &bad[..]);
            }
            // sealing keeps what the bytes decode to: damaged bytes are left as they are, a
            // decimal chunk that decodes cleanly may be re-coded smaller
            let sealed = seal(&bad);
            if *sealed != bad[..] {
                let mut it = decode(&bad).unwrap();
                let want = exact(it.by_ref());
                assert!(it.error().is_none(), "damaged bytes were re-coded");
                assert_eq!(exact(decode(&sealed).unwrap()), want);
                assert!(sealed.len() < bad.len());
            }
        }
    }

    /// Values drawn as decimals at a random scale, or as any bits at all.
    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            (-1_000_000_000i64..1_000_000_000, 0usize..=6).prop_map(|(m, e)| m as f64 / POW10[e]),
            (-(1i64 << 53) + 1..1i64 << 53).prop_map(|m| m as f64),
            any::<u64>().prop_map(f64::from_bits),
        ]
    }

    proptest! {
        #[test]
        fn sealing_is_bit_exact_and_never_larger(
            start in -(1i64 << 50)..(1i64 << 50),
            steps in prop::collection::vec((1i64..100_000, value()), 1..300),
            one_kind in any::<bool>(),
        ) {
            let mut t = start;
            let mut samples = Vec::new();
            let first_scale_value = steps[0].1;
            for (dt, v) in steps {
                t += dt;
                // half the cases keep one kind of value (more chunks qualify for the decimal form)
                let v = if one_kind && v.is_finite() && first_scale_value.is_finite() {
                    (v / 7.0).round()
                } else {
                    v
                };
                samples.push((t, v));
            }
            // `sealed` asserts the round trip and the size
            let _ = sealed(&samples);
        }

        #[test]
        fn an_open_chunk_reads_back_what_was_pushed_and_resumes_anywhere(
            start in -(1i64 << 50)..(1i64 << 50),
            steps in prop::collection::vec((1i64..100_000, value()), 1..200),
            one_kind in any::<bool>(),
            split in any::<prop::sample::Index>(),
        ) {
            let mut t = start;
            let mut samples = Vec::new();
            for (dt, v) in steps {
                t += dt;
                // half the cases keep to integers, which stay in the decimal form throughout (`+ 0.0`:
                // -0.0 is no decimal)
                let v = if one_kind && v.is_finite() { (v / 7.0).round() + 0.0 } else { v };
                samples.push((t, v));
            }
            let mut whole = ChunkEncoder::adaptive();
            for &(t, v) in &samples {
                whole.push(t, v).unwrap();
            }
            let want = exact(samples.iter().copied());
            prop_assert_eq!(exact(whole.iter()), want.clone());
            let mut it = decode(whole.bytes()).unwrap();
            prop_assert_eq!(exact(it.by_ref()), want.clone());
            prop_assert_eq!(it.error(), None);
            prop_assert_eq!(whole.first_t(), Some(samples[0].0));
            prop_assert_eq!(whole.last_t(), Some(t));
            if one_kind && samples.iter().all(|s| s.1.abs() < 1e15) {
                prop_assert!(whole.is_decimal(), "integers left the decimal form");
            }
            // a chunk resumed after any of its samples appends as if never closed
            let k = split.index(samples.len() + 1);
            let mut head = ChunkEncoder::adaptive();
            for &(t, v) in &samples[..k] {
                head.push(t, v).unwrap();
            }
            let mut resumed = ChunkEncoder::adaptive();
            resumed.resume(head.bytes()).unwrap();
            for &(t, v) in &samples[k..] {
                resumed.push(t, v).unwrap();
            }
            prop_assert_eq!(resumed.bytes(), whole.bytes());
            // sealing keeps the samples and never grows the chunk
            let s = seal(whole.bytes());
            prop_assert!(s.len() <= whole.byte_len());
            prop_assert_eq!(exact(decode(&s).unwrap()), want);
        }
    }

    #[test]
    fn an_open_decimal_chunk_holds_target_like_series_in_what_sealing_would_store() {
        for gauge in [false, true] {
            let samples = target_like(20.0, gauge, 7);
            let mut open = ChunkEncoder::adaptive();
            for &(t, v) in &samples {
                open.push(t, v).unwrap();
            }
            assert!(open.is_decimal());
            let stored = sealed(&samples);
            let x = xor(&samples);
            // within 10% of the fitted form, far under XOR's
            assert!(
                open.byte_len() * 10 <= stored.len() * 11,
                "gauge {gauge}: open {} bytes, sealed {}",
                open.byte_len(),
                stored.len()
            );
            assert!(
                open.byte_len() * 3 < x.len() * 2,
                "gauge {gauge}: xor {}",
                x.len()
            );
        }
        // a value with more decimals re-codes at a finer scale; one with none, as XOR
        let mut c = ChunkEncoder::adaptive();
        for (i, v) in [1.0, 2.5, 2.25, 3.125].into_iter().enumerate() {
            c.push(i as i64 * 1000, v).unwrap();
        }
        assert!(c.is_decimal());
        assert_eq!(c.bytes()[2], 3, "scale");
        c.push(5000, 0.1 + 0.2).unwrap();
        assert!(!c.is_decimal());
        c.push(6000, 7.0).unwrap();
        let got: Vec<_> = exact(c.iter());
        let want = [
            (0, 1.0),
            (1000, 2.5),
            (2000, 2.25),
            (3000, 3.125),
            (5000, 0.1 + 0.2),
            (6000, 7.0),
        ];
        assert_eq!(got, exact(want));
        // emptied, it may take the decimal form again
        c.clear();
        c.push(0, 4.0).unwrap();
        assert!(c.is_decimal());
    }
}
