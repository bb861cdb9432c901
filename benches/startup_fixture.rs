//! Builds the store of issue 16's start-up benchmark (`benches/startup.sh`): the series of one
//! exposition (a body of `../shared/peer/target.py`'s `/metrics`) with `job` and `instance` as
//! tocsin's scrape adds them, and `--hours` of history at `--interval` ending at `--end-ms`,
//! written through the store as the daemon writes it (an append a scrape, a flush after each).
//! The last flush's write-ahead rows are left as a crash leaves them (`--crash`, the default
//! for the benchmark) or cut into chunks as a clean stop does (`--clean`).
//!
//! `cargo bench --bench startup_fixture -- --exposition F --job J --instance I --store DB
//! --end-ms T [--hours 2 | --steps N] [--interval 15] [--clean]`
//!
//! Values follow the exposition's: each series moves from its scraped value by a per-series
//! step with the scraped value's decimals (counters up, gauges both ways), so chunks compress as
//! the daemon's would.

use std::collections::HashMap;
use std::time::Instant;

use tocsin::ingest::textparse::{Entry, MetricKind, Parser};
use tocsin::labels::Labels;
use tocsin::store::{Store, StoreOptions};

struct Args {
    exposition: String,
    job: String,
    instance: String,
    store: String,
    end_ms: i64,
    hours: f64,
    interval_s: i64,
    /// scrapes to write (default: `hours` of them)
    steps: Option<i64>,
    clean: bool,
}

fn args() -> Args {
    let mut a = Args {
        exposition: String::new(),
        job: String::new(),
        instance: String::new(),
        store: String::new(),
        end_ms: 0,
        hours: 2.0,
        interval_s: 15,
        steps: None,
        clean: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--exposition" => a.exposition = v(),
            "--job" => a.job = v(),
            "--instance" => a.instance = v(),
            "--store" => a.store = v(),
            "--end-ms" => a.end_ms = v().parse().expect("--end-ms"),
            "--hours" => a.hours = v().parse().expect("--hours"),
            "--interval" => a.interval_s = v().parse().expect("--interval"),
            "--steps" => a.steps = Some(v().parse().expect("--steps")),
            "--clean" => a.clean = true,
            "--crash" => a.clean = false,
            // cargo bench passes --bench
            _ => {}
        }
    }
    assert!(
        !a.exposition.is_empty() && !a.store.is_empty() && a.end_ms > 0,
        "usage: --exposition F --job J --instance I --store DB --end-ms T [--hours H | --steps N] [--interval S] [--clean]"
    );
    a
}

/// Decimals of a sample's text (`12.340` -> 3), at most 6.
fn decimals(v: f64) -> i32 {
    let s = format!("{v}");
    s.split_once('.').map_or(0, |(_, f)| f.len().min(6) as i32)
}

fn main() {
    let a = args();
    let text = std::fs::read_to_string(&a.exposition).expect("read the exposition");
    let mut kinds = HashMap::new();
    let mut series: Vec<(Labels, f64, f64)> = Vec::new();
    for e in Parser::new(&text) {
        match e.expect("a valid exposition") {
            Entry::Type { name, kind } => {
                kinds.insert(name.to_string(), kind);
            }
            Entry::Sample(s) => {
                let mut pairs: Vec<(String, String)> = s
                    .labels()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                pairs.push(("__name__".into(), s.name.to_string()));
                pairs.push(("job".into(), a.job.clone()));
                pairs.push(("instance".into(), a.instance.clone()));
                let gauge = kinds.get(s.name) == Some(&MetricKind::Gauge);
                let scale = 10f64.powi(decimals(s.value));
                let i = series.len() as f64;
                // a step of 1..17 units of the value's last decimal, signed for gauges
                let step = (1.0 + (i * 7.0) % 17.0) / scale;
                series.push((
                    Labels::from_pairs(pairs),
                    s.value,
                    if gauge { -step } else { step },
                ));
            }
            _ => {}
        }
    }
    let n = series.len();
    let steps = a
        .steps
        .unwrap_or((a.hours * 3600.0 / a.interval_s as f64) as i64);
    let start_ms = a.end_ms - (steps - 1) * a.interval_s * 1000;
    eprintln!(
        "{n} series, {steps} scrapes every {}s from {start_ms} to {}",
        a.interval_s, a.end_ms
    );
    let opened = Instant::now();
    let store = Store::open(std::path::Path::new(&a.store), StoreOptions::default())
        .expect("open the store");
    let ids = store.series_refs(series.iter().map(|s| s.0.clone()).collect());
    let mut batch = Vec::with_capacity(n);
    let started = Instant::now();
    for k in 0..steps {
        let t = start_ms + k * a.interval_s * 1000;
        batch.clear();
        for (i, (_, v0, step)) in series.iter().enumerate() {
            let scale = 1.0 / step.abs();
            // gauges walk back and forth; counters climb
            let m = if *step < 0.0 {
                ((k + i as i64) % 40 - 20) as f64
            } else {
                k as f64
            };
            let v = ((v0 + m * step.abs()) * scale).round() / scale;
            batch.push((ids[i], t, v));
        }
        store.append(&batch);
        store.flush(t + 1).expect("flush");
        if k % 40 == 0 {
            eprintln!(
                "scrape {k}/{steps}: {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    if a.clean {
        store.close(a.end_ms + 1).expect("close");
    }
    eprintln!(
        "wrote {} samples in {:.1} s ({})",
        n as i64 * steps,
        opened.elapsed().as_secs_f64(),
        if a.clean {
            "closed cleanly"
        } else {
            "left as a crash leaves it"
        }
    );
    if !a.clean {
        // as a kill: no close, no drop
        std::process::exit(0);
    }
}
