//! Live heap bytes per series, counted by a wrapping global allocator: what the head, the
//! postings, the label sets and the scrape cache hold for the peer target's 100k series
//! (`../shared/peer/target.py`'s shapes: `scaipad_*{shard,idx,group}` plus the target's `job`
//! and `instance`), scraped every second and flushed every 5 s as `tocsin run` does with
//! `compare-prometheus.sh`'s configuration (no rules, so no head window).
//!
//! Counted bytes are exact and do not depend on what else runs on the machine, unlike RSS; RSS
//! adds the allocator's free lists, SQLite's page cache and the code. Run:
//! `cargo bench --bench memory` (`-- SERIES SCRAPES` to change the 100,000 and 240).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use tocsin::ingest::ScrapeCache;
use tocsin::ingest::textparse::Format;
use tocsin::labels::Labels;
use tocsin::store::{Store, StoreOptions};

#[path = "common/peer_body.rs"]
mod peer_body;
use peer_body::body;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
/// the most ever live, inside a flush too (what RSS, a high-water mark, follows)
static HIGH: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let size = layout.size() as isize;
        HIGH.fetch_max(
            LIVE.fetch_add(size, Ordering::Relaxed) + size,
            Ordering::Relaxed,
        );
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let grow = new_size as isize - layout.size() as isize;
        HIGH.fetch_max(
            LIVE.fetch_add(grow, Ordering::Relaxed) + grow,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

const T0: i64 = 1_700_000_000_000;
fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let series = args.first().copied().unwrap_or(100_000);
    let scrapes = args.get(1).copied().unwrap_or(240);
    let dir = tempfile::tempdir().unwrap();
    let base = live();
    let store = Store::open(&dir.path().join("tocsin.db"), StoreOptions::default()).unwrap();
    let opened = live();
    let mut cache = ScrapeCache::new(Labels::from_pairs([
        ("instance", "127.0.0.1:9100".to_string()),
        ("job", "seed".to_string()),
    ]));
    let per = |bytes: isize| bytes as f64 / series as f64;
    let mut first_scrape = 0;
    let mut peak = 0isize;
    for step in 0..scrapes as u64 {
        let text = body(series, step);
        let t = T0 + step as i64 * 1000;
        cache
            .ingest(&store, &text, Format::Text, t, usize::MAX)
            .unwrap();
        drop(text);
        if step % 5 == 4 {
            store.flush(t).unwrap();
        }
        if step == 0 {
            store.flush(t).unwrap();
            first_scrape = live();
        }
        peak = peak.max(live());
    }
    let t_end = T0 + scrapes as i64 * 1000;
    store.flush(t_end).unwrap();
    let after = live();
    let stats = store.stats();
    let parts = store.head_memory();
    drop(cache);
    let without_cache = live();
    println!("memory: {series} series, {scrapes} scrapes at 1 s, flush every 5 s, no head window");
    println!("  store opened, empty          {:>10} B", opened - base);
    println!(
        "  after the first scrape        {:>10} B  {:>7.1} B/series",
        first_scrape - base,
        per(first_scrape - base)
    );
    println!(
        "  after {scrapes} scrapes            {:>10} B  {:>7.1} B/series  (peak {:.1} B/series between scrapes, {:.1} inside them and flushes)",
        after - base,
        per(after - base),
        per(peak - base),
        per(HIGH.load(Ordering::Relaxed) - base)
    );
    println!(
        "    of which the scrape cache  {:>10} B  {:>7.1} B/series",
        after - without_cache,
        per(after - without_cache)
    );
    println!(
        "    open chunks (head stats)   {:>10} B  {:>7.1} B/series",
        stats.head_chunk_bytes,
        per(stats.head_chunk_bytes as isize)
    );
    println!(
        "    the rest (labels, postings, series, store)  {:>10} B  {:>7.1} B/series",
        without_cache - base - stats.head_chunk_bytes as isize,
        per(without_cache - base - stats.head_chunk_bytes as isize)
    );
    // the head part by part, estimated from capacities (`Store::head_memory`); what is left of
    // the exact count is the store's own state (SQLite's cache, buffers) and the estimates' error
    println!("  the head by part (estimated from capacities):");
    let rows = [
        ("open chunk buffers", parts.open_chunks),
        ("closed chunks", parts.closed_chunks),
        ("series map", parts.series_map),
        ("label sets", parts.labels),
        ("label lookup", parts.label_lookup),
        ("postings", parts.postings),
    ];
    let mut sum = 0isize;
    for (name, bytes) in rows {
        sum += bytes as isize;
        println!(
            "    {name:<27}{:>10} B  {:>7.1} B/series",
            bytes,
            per(bytes as isize)
        );
    }
    println!(
        "    {:<27}{:>10} B  {:>7.1} B/series",
        "scrape cache (exact)",
        after - without_cache,
        per(after - without_cache)
    );
    let rest = after - base - sum - (after - without_cache);
    println!(
        "    {:<27}{:>10} B  {:>7.1} B/series",
        "the rest (store, SQLite)",
        rest,
        per(rest)
    );
}
