//! Chunk encoding and decoding: 120-sample chunks (Prometheus's size) for 10k series, for a noisy
//! counter and an integer gauge; prints the bytes per sample of each.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tocsin::store::chunk::{ChunkEncoder, decode};

const SERIES: usize = 10_000;
const SAMPLES: usize = 120;

fn series(kind: &str, seed: u64) -> Vec<(i64, f64)> {
    let mut x = seed | 1;
    let mut v = 1000.0;
    (0..SAMPLES)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let t = 1_700_000_000_000 + i as i64 * 15_000 + (x % 3) as i64;
            v = match kind {
                // a counter advancing by rate * dt * noise, as the peer's target does
                "counter" => v + 15.0 * 4.2 * (0.9 + (x % 1000) as f64 / 5000.0),
                _ => ((x % 50) + 100) as f64,
            };
            (t, v)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("chunk");
    g.throughput(Throughput::Elements((SERIES * SAMPLES) as u64));
    g.sample_size(10);
    for kind in ["counter", "gauge"] {
        let data: Vec<Vec<(i64, f64)>> = (0..SERIES as u64).map(|s| series(kind, s + 1)).collect();
        let encoded: Vec<ChunkEncoder> = data
            .iter()
            .map(|s| {
                let mut e = ChunkEncoder::new();
                s.iter().for_each(|&(t, v)| e.push(t, v).unwrap());
                e
            })
            .collect();
        let bytes: usize = encoded.iter().map(|e| e.byte_len()).sum();
        println!(
            "chunk/{kind}: {:.3} bytes/sample",
            bytes as f64 / (SERIES * SAMPLES) as f64
        );
        g.bench_function(format!("encode_{kind}"), |b| {
            b.iter(|| {
                for s in &data {
                    let mut e = ChunkEncoder::new();
                    for &(t, v) in s {
                        e.push(t, v).unwrap();
                    }
                    black_box(e.byte_len());
                }
            })
        });
        g.bench_function(format!("decode_{kind}"), |b| {
            b.iter(|| {
                let mut sum = 0.0;
                for e in &encoded {
                    for (_, v) in decode(e.bytes()).unwrap() {
                        sum += v;
                    }
                }
                black_box(sum)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
