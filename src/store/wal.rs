//! Encoding of a write-ahead batch: the samples appended between two flushes, stored as one
//! row so the append path costs one SQLite insert per flush, not one per sample.
//!
//! Layout: repeated records `series_id: uvarint, t: zigzag varint delta from the previous record's t
//! (the first from 0), value: 8 bytes little-endian f64 bits`. Scrapes stamp every sample of a
//! target with the same time, so most deltas are one byte; a record is ~11-12 bytes.

use super::head::SeriesRef;

#[derive(Debug, Default)]
pub(crate) struct WalBatch {
    pub buf: Vec<u8>,
    prev_t: i64,
    pub mint: i64,
    pub maxt: i64,
    pub count: usize,
}

fn put_uvarint(buf: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        buf.push((x as u8) | 0x80);
        x >>= 7;
    }
    buf.push(x as u8);
}

fn get_uvarint(buf: &[u8], pos: &mut usize) -> Option<u64> {
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

impl WalBatch {
    pub fn push(&mut self, id: SeriesRef, t: i64, v: f64) {
        if self.count == 0 {
            self.mint = t;
            self.maxt = t;
        } else {
            self.mint = self.mint.min(t);
            self.maxt = self.maxt.max(t);
        }
        put_uvarint(&mut self.buf, u64::from(id));
        let d = t.wrapping_sub(self.prev_t);
        put_uvarint(&mut self.buf, ((d << 1) ^ (d >> 63)) as u64);
        self.buf.extend_from_slice(&v.to_bits().to_le_bytes());
        self.prev_t = t;
        self.count += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// Decodes a batch; `None` when the bytes are truncated or malformed.
pub(crate) fn decode(buf: &[u8]) -> Option<Vec<(SeriesRef, i64, f64)>> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut t = 0i64;
    while pos < buf.len() {
        let id = SeriesRef::try_from(get_uvarint(buf, &mut pos)?).ok()?;
        let z = get_uvarint(buf, &mut pos)?;
        let d = ((z >> 1) as i64) ^ -((z & 1) as i64);
        t = t.wrapping_add(d);
        let bytes: [u8; 8] = buf.get(pos..pos + 8)?.try_into().ok()?;
        pos += 8;
        out.push((id, t, f64::from_bits(u64::from_le_bytes(bytes))));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trips_including_negative_deltas_and_nan_bits() {
        let mut b = WalBatch::default();
        let stale = f64::from_bits(0x7ff0000000000002);
        let samples = [
            (1, 1_700_000_000_000, 1.5),
            (2, 1_700_000_000_000, stale),
            (70000, 1_699_999_999_000, -0.0),
            (3, -5, f64::INFINITY),
        ];
        for (id, t, v) in samples {
            b.push(id, t, v);
        }
        let got = decode(&b.buf).unwrap();
        assert_eq!(got.len(), 4);
        for ((id, t, v), (gid, gt, gv)) in samples.iter().zip(&got) {
            assert_eq!((id, t, v.to_bits()), (gid, gt, gv.to_bits()));
        }
        assert_eq!((b.mint, b.maxt), (-5, 1_700_000_000_000));
    }

    #[test]
    fn truncated_batch_is_rejected() {
        let mut b = WalBatch::default();
        b.push(1, 1000, 2.0);
        assert!(decode(&b.buf[..b.buf.len() - 1]).is_none());
    }
}
