//! Chunk encoding and decoding: 120-sample chunks (Prometheus's and the head's size) for 10k
//! series of four kinds, a float counter (`value += rate * 15 s + noise`), a float gauge that
//! wanders around a level, and as `../shared/peer/target.py` prints them, an integer counter and a
//! gauge with three decimals; prints the bytes per sample of each kind, open (XOR) and as stored
//! (`seal`: the decimal form where it is smaller), and times `seal` and decoding the stored form.
//!
//! Timestamps are 15 s apart, with a few ms of jitter on one scrape in ten (the scheduler snaps
//! the others to their slot), so the common one-bit timestamp and the 14-bit case both run.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tocsin::store::chunk::{ChunkEncoder, decode, decode_range, seal};

const SERIES: usize = 10_000;
const SAMPLES: usize = 120;
const T0: i64 = 1_700_000_000_000;

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    IntCounter,
    DecimalGauge,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::IntCounter => "int_counter",
            Kind::DecimalGauge => "decimal_gauge",
        }
    }
}

/// A deterministic pseudo-random sequence (xorshift64).
struct XorShift(u64);

impl XorShift {
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn series(kind: Kind, seed: u64) -> Vec<(i64, f64)> {
    let mut rng = XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    // per-series level: requests/s of a counter, or the gauge's mean (e.g. MB in use)
    let level = 1.0 + 100.0 * rng.unit();
    let mut v = match kind {
        Kind::Counter | Kind::IntCounter => (1e6 * rng.unit()).round(),
        Kind::Gauge => 1e6 * level,
        Kind::DecimalGauge => 10.0 * level,
    };
    (0..SAMPLES)
        .map(|i| {
            let jitter = if rng.unit() < 0.1 {
                (rng.unit() * 7.0) as i64 - 3
            } else {
                0
            };
            let t = T0 + i as i64 * 15_000 + jitter;
            v = match kind {
                Kind::Counter => v + level * 15.0 + (rng.unit() - 0.5) * level,
                Kind::Gauge => 1e6 * level * (1.0 + 0.05 * (rng.unit() - 0.5)),
                // target.py: `%d` of a counter growing by rate × U(0.5, 1.5) a scrape
                Kind::IntCounter => v + (level * 0.5 * (0.5 + rng.unit())).floor(),
                // target.py: `%.3f` of a walk by U(-5, 5)
                Kind::DecimalGauge => (v + 10.0 * rng.unit() - 5.0).max(0.0),
            };
            let v = match kind {
                Kind::DecimalGauge => format!("{v:.3}").parse().expect("a decimal"),
                _ => v,
            };
            (t, v)
        })
        .collect()
}

/// The samples in an XOR chunk ([`ChunkEncoder::new`]); the head's open chunks are adaptive
/// ([`ChunkEncoder::adaptive`]: decimal while the values are short decimals).
fn encode(samples: &[(i64, f64)]) -> ChunkEncoder {
    encode_into(ChunkEncoder::new(), samples)
}

fn encode_into(mut e: ChunkEncoder, samples: &[(i64, f64)]) -> ChunkEncoder {
    for &(t, v) in samples {
        e.push(t, v).expect("increasing timestamps");
    }
    e
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("chunk");
    g.throughput(Throughput::Elements((SERIES * SAMPLES) as u64));
    g.sample_size(20);
    for kind in [
        Kind::Counter,
        Kind::Gauge,
        Kind::IntCounter,
        Kind::DecimalGauge,
    ] {
        let name = kind.name();
        let data: Vec<Vec<(i64, f64)>> = (0..SERIES as u64).map(|s| series(kind, s + 1)).collect();
        let chunks: Vec<Vec<u8>> = data.iter().map(|s| encode(s).bytes().to_vec()).collect();
        let bytes: usize = chunks.iter().map(Vec::len).sum();
        let sealed: Vec<Vec<u8>> = chunks.iter().map(|c| seal(c).into_owned()).collect();
        let stored: usize = sealed.iter().map(Vec::len).sum();
        let adaptive: Vec<Vec<u8>> = data
            .iter()
            .map(|s| encode_into(ChunkEncoder::adaptive(), s).bytes().to_vec())
            .collect();
        let open: usize = adaptive.iter().map(Vec::len).sum();
        let resealed: usize = adaptive.iter().map(|c| seal(c).len()).sum();
        let per = |b: usize| b as f64 / (SERIES * SAMPLES) as f64;
        println!(
            "chunk/{name}: {:.3} bytes/sample open as XOR, {:.3} stored; {:.3} open as the head's (adaptive), {:.3} stored ({SERIES} chunks of {SAMPLES} samples)",
            per(bytes),
            per(stored),
            per(open),
            per(resealed)
        );
        // each open form: sealing its chunks and encoding the samples into it
        let empty_xor: fn() -> ChunkEncoder = ChunkEncoder::new;
        let forms = [
            ("", &chunks, empty_xor),
            ("adaptive_", &adaptive, ChunkEncoder::adaptive),
        ];
        for (form, open_chunks, empty) in forms {
            g.bench_function(format!("seal_{form}{name}"), |b| {
                b.iter(|| {
                    for c in open_chunks {
                        black_box(seal(c).len());
                    }
                })
            });
            g.bench_function(format!("encode_{form}{name}"), |b| {
                b.iter(|| {
                    for s in &data {
                        black_box(encode_into(empty(), s).byte_len());
                    }
                })
            });
        }
        g.bench_function(format!("decode_stored_{name}"), |b| {
            b.iter(|| {
                let mut sum = 0.0;
                for c in &sealed {
                    for (_, v) in decode(c).expect("valid chunk") {
                        sum += v;
                    }
                }
                black_box(sum)
            })
        });
        g.bench_function(format!("decode_{name}"), |b| {
            b.iter(|| {
                let mut sum = 0.0;
                for c in &chunks {
                    for (_, v) in decode(c).expect("valid chunk") {
                        sum += v;
                    }
                }
                black_box(sum)
            })
        });
        // the store's read path: whole chunks appended into one reused buffer
        let mut out = Vec::with_capacity(SAMPLES);
        g.bench_function(format!("decode_range_{name}"), |b| {
            b.iter(|| {
                for c in &chunks {
                    out.clear();
                    decode_range(c, i64::MIN, i64::MAX, &mut out).expect("valid chunk");
                    black_box(&out);
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
