//! Store benchmarks: append throughput (one scrape of 100k series per batch, as the scraper does),
//! flush of that batch to SQLite (also with a checkpoint of every open chunk), and a read of the last 5 minutes of 100k series.
//!
//! `TOCSIN_BENCH_SERIES=1000000 cargo bench --bench store -- append` runs the append and flush at
//! another size (a million series no longer fits the caches: the head lock's hold time at issue
//! 16's production size). The names keep saying 100k.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tocsin::labels::{Labels, Matcher};
use tocsin::store::{SeriesRef, Store, StoreOptions};

const SERIES: usize = 100_000;

/// The series of the append benchmarks: `TOCSIN_BENCH_SERIES`, else [`SERIES`].
fn append_series() -> usize {
    std::env::var("TOCSIN_BENCH_SERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(SERIES)
}
const T0: i64 = 1_700_000_000_000;

fn make_store(dir: &tempfile::TempDir, n: usize) -> (Store, Vec<SeriesRef>) {
    make_store_with(dir, n, StoreOptions::default())
}

fn make_store_with(
    dir: &tempfile::TempDir,
    n: usize,
    opts: StoreOptions,
) -> (Store, Vec<SeriesRef>) {
    let store = Store::open(&dir.path().join("bench.db"), opts).unwrap();
    let labels = (0..n)
        .map(|i| {
            Labels::from_pairs([
                ("__name__", "bench_requests_total".to_string()),
                ("instance", format!("host-{}", i % 100)),
                ("series", i.to_string()),
            ])
        })
        .collect();
    let ids = store.series_refs(labels);
    (store, ids)
}

/// One scrape's worth of samples at time `t`: noisy counters, as the peer's target serves.
fn scrape_batch(ids: &[SeriesRef], step: i64) -> Vec<(SeriesRef, i64, f64)> {
    ids.iter()
        .enumerate()
        .map(|(i, &id)| {
            let v = (step as f64) * (10.0 + (i % 7) as f64)
                + ((step * 7919 + i as i64) % 13) as f64 * 0.37;
            (id, T0 + step * 1000, v)
        })
        .collect()
}

fn append(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let n = append_series();
    let (store, ids) = make_store(&dir, n);
    let mut step = 0i64;
    let mut g = c.benchmark_group("store_append");
    g.throughput(Throughput::Elements(n as u64));
    g.sample_size(20);
    g.bench_function("100k_series_one_scrape", |b| {
        b.iter_batched(
            || {
                step += 1;
                scrape_batch(&ids, step)
            },
            |batch| black_box(store.append(&batch)),
            BatchSize::LargeInput,
        )
    });
    // the append benchmark left many scrapes unflushed: start the flush benchmark clean
    store.flush(T0 + step * 1000).unwrap();
    flush_one_scrape(&mut g, "flush_one_scrape_of_100k", &store, &ids, &mut step);
    // the same flush writing a checkpoint (every open chunk: ~60 samples a series on average,
    // chunks are cut at 120) instead of its write-ahead row; what it costs beyond the flush is
    // paid every 32 samples a series (`StoreOptions::checkpoint_samples_per_series`)
    drop(store);
    let dir = tempfile::tempdir().unwrap();
    let every_flush = StoreOptions {
        checkpoint_samples_per_series: 0,
        checkpoint_min_samples: 0,
        ..StoreOptions::default()
    };
    let (store, ids) = make_store_with(&dir, n, every_flush);
    for step in 0..60 {
        store.append(&scrape_batch(&ids, step));
    }
    let mut step = 60;
    flush_one_scrape(
        &mut g,
        "flush_one_scrape_of_100k_with_a_checkpoint",
        &store,
        &ids,
        &mut step,
    );
    g.finish();
}

/// Times the flush of one scrape of `ids` (appended untimed, at the next step).
fn flush_one_scrape(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    store: &Store,
    ids: &[SeriesRef],
    step: &mut i64,
) {
    g.bench_function(name, |b| {
        b.iter_batched(
            || {
                *step += 1;
                store.append(&scrape_batch(ids, *step));
                T0 + *step * 1000
            },
            |now| black_box(store.flush(now).unwrap()),
            BatchSize::LargeInput,
        )
    });
}

/// 10 minutes at 1 s of every series, flushed every 10 s.
fn filled(dir: &tempfile::TempDir, series: usize, head_window_ms: i64) -> Store {
    let (store, ids) = make_store(dir, SERIES);
    store.set_head_window(head_window_ms);
    for step in 0..600 {
        store.append(&scrape_batch(&ids[..series], step));
        if step % 10 == 0 {
            store.flush(T0 + step * 1000).unwrap();
        }
    }
    store.flush(T0 + 600_000).unwrap();
    store
}

fn read(c: &mut Criterion) {
    let m = [Matcher::equal("__name__", "bench_requests_total")];
    let end = T0 + 599_000;
    let mut g = c.benchmark_group("store_read");
    g.sample_size(10);
    // the rule engine keeps its longest window in memory: the last 5 minutes come from the head
    let dir = tempfile::tempdir().unwrap();
    let store = filled(&dir, SERIES, 300_000);
    g.throughput(Throughput::Elements((SERIES * 300) as u64));
    g.bench_function("last_5m_of_100k_series_from_memory", |b| {
        b.iter(|| {
            let got = store.select(&m, end - 300_000 + 1, end).unwrap();
            assert_eq!(got.len(), SERIES);
            black_box(got)
        })
    });
    g.throughput(Throughput::Elements(SERIES as u64));
    g.bench_function("latest_of_100k_series", |b| {
        b.iter(|| black_box(store.latest(&m, end, 300_000).unwrap()))
    });
    drop(store);
    // with no head window, the same read of 10k series goes to the SQLite file
    let dir = tempfile::tempdir().unwrap();
    let store = filled(&dir, 10_000, 0);
    g.throughput(Throughput::Elements((10_000 * 300) as u64));
    g.bench_function("last_5m_of_10k_series_from_disk", |b| {
        b.iter(|| {
            let got = store.select(&m, end - 300_000 + 1, end).unwrap();
            assert_eq!(got.len(), 10_000);
            black_box(got)
        })
    });
    g.finish();
}

criterion_group!(benches, append, read);
criterion_main!(benches);
