//! A warm scrape of the peer target's 100k series, but for the network: the body parsed against
//! the scrape cache, its samples appended to the head and the write-ahead batch. The bulk of
//! issue 16's CPU at 100k series (the daemon adds the HTTP read, the scheduler and the flush,
//! which runs here every fifth scrape as in `tocsin run` at a 1 s interval, untimed: its cost is
//! `benches/store.rs`'s). Chunks are cut every 120 scrapes, in the timed part, as in the daemon.
//!
//! Run: `cargo bench --bench ingest` (`TOCSIN_BENCH_SERIES` changes the 100,000).

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tocsin::ingest::ScrapeCache;
use tocsin::ingest::textparse::Format;
use tocsin::labels::Labels;
use tocsin::store::{Store, StoreOptions};

#[path = "common/peer_body.rs"]
mod peer_body;

const T0: i64 = 1_700_000_000_000;

/// Distinct bodies cycled through (values repeat after this many scrapes; times never do).
const BODIES: u64 = 8;

fn ingest(c: &mut Criterion) {
    let series = std::env::var("TOCSIN_BENCH_SERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let bodies: Vec<String> = (0..BODIES).map(|s| peer_body::body(series, s)).collect();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("tocsin.db"), StoreOptions::default()).unwrap();
    let mut cache = ScrapeCache::new(Labels::from_pairs([
        ("instance", "127.0.0.1:9100".to_string()),
        ("job", "seed".to_string()),
    ]));
    let mut step = 0u64;
    let mut scrape = |cache: &mut ScrapeCache| {
        let t = T0 + step as i64 * 1000;
        let body = &bodies[(step % BODIES) as usize];
        let started = Instant::now();
        let report = cache.ingest(&store, body, Format::Text, t, usize::MAX);
        let took = started.elapsed();
        if step % 5 == 4 {
            store.flush(t).unwrap();
        }
        step += 1;
        black_box(report.unwrap());
        took
    };
    // the first scrape creates the series; the benchmark is of the ones after it
    scrape(&mut cache);
    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Elements(series as u64));
    g.sample_size(30);
    g.bench_function("warm_scrape_of_100k_series", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| scrape(&mut cache)).sum())
    });
    g.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
