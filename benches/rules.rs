//! Rule evaluation over 100k series: the seed rules (`../shared/peer/rules/seed.yml`, the 9 alert
//! expressions) and the load rules that read every padding series
//! (`../shared/peer/rules/optional/load.yml`), on a store shaped like `../shared/peer/target.py
//! --series 100000` scraped every second (seed series for 11 minutes, padding for 70 s), read
//! from memory as the daemon reads it (head window raised to the longest rule range).
//!
//! Compare with Prometheus's `prometheus_rule_group_last_duration_seconds` from
//! `PEER_LOAD_RULES=1 ../shared/peer/run-prometheus.sh 100000 1 120 1` (see README).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use tocsin::labels::Labels;
use tocsin::promql::{Engine, parse};
use tocsin::store::{SeriesRef, Store, StoreOptions};

const SERIES: usize = 100_000;
const T0: i64 = 1_700_000_000_000;
/// seed series are scraped for 11 minutes (the longest seed window is 10m)
const SEED_STEPS: i64 = 660;
/// padding series for the last 70 s (the load rules read [1m])
const PAD_STEPS: i64 = 70;

const SEED_RULES: &[&str] = &[
    r#"sum by (job, instance) (rate(scaidns_http_requests_total{status=~"5.."}[5m])) / sum by (job, instance) (rate(scaidns_http_requests_total[5m])) > 0.005"#,
    r#"histogram_quantile(0.99, sum by (job, instance, le) (rate(scaidns_http_request_duration_seconds_bucket[5m]))) > 1"#,
    r#"deriv(scaisend_queue_depth[5m]) > 0"#,
    r#"scaisend_queue_depth > 100000"#,
    r#"(sum by (job, tenant) (rate(scaisend_emails_bounces_total[10m])) / sum by (job, tenant) (rate(scaisend_emails_requests_total[10m])) > 0.02) and on (job, tenant) (sum by (job, tenant) (increase(scaisend_emails_requests_total[10m])) >= 100)"#,
    r#"rate(pdns_lock_wait_seconds_sum[1m]) / rate(pdns_lock_wait_seconds_count[1m]) > 1"#,
    r#"probe_success{job="seed-ready"} == 0"#,
    r#"up{job="seed-ready"} == 0"#,
    r#"up{job="seed"} == 0"#,
];

const LOAD_RULES: &[&str] = &[
    r#"sum by (shard) (rate(scaipad_ops_total[1m])) < 0"#,
    r#"max by (shard) (scaipad_level) > 1e12"#,
];

/// Kind of series: how its value evolves.
#[derive(Clone, Copy)]
enum Kind {
    Counter(f64),
    Gauge(f64),
}

fn lbl(name: &str, pairs: &[(&str, String)]) -> Labels {
    let base = [
        ("__name__", name.to_string()),
        ("job", "seed".to_string()),
        ("instance", "127.0.0.1:19110".to_string()),
    ];
    Labels::from_pairs(
        base.into_iter()
            .chain(pairs.iter().map(|(k, v)| (*k, v.clone()))),
    )
}

/// The seed series of target.py: requests by path/method/status, a latency histogram, queues,
/// tenants, pdns lock wait, probes and `up`.
fn seed_series() -> Vec<(Labels, Kind)> {
    let mut out = Vec::new();
    let paths = ["/api/v1/zones", "/api/v1/zones/{zone}/records"];
    let methods = ["GET", "POST", "PATCH", "DELETE"];
    let statuses = ["200", "201", "204", "400", "404", "500", "502", "503"];
    for p in paths {
        for m in methods {
            for s in statuses {
                let rate = if s.starts_with('5') { 0.05 } else { 5.0 };
                let l = [
                    ("path", p.to_string()),
                    ("method", m.to_string()),
                    ("status", s.to_string()),
                ];
                out.push((lbl("scaidns_http_requests_total", &l), Kind::Counter(rate)));
            }
            let les = [
                "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10",
                "+Inf",
            ];
            for (i, le) in les.iter().enumerate() {
                let l = [
                    ("path", p.to_string()),
                    ("method", m.to_string()),
                    ("le", le.to_string()),
                ];
                out.push((
                    lbl("scaidns_http_request_duration_seconds_bucket", &l),
                    Kind::Counter(1.0 + i as f64),
                ));
            }
        }
    }
    for q in ["default", "bulk", "priority"] {
        out.push((
            lbl("scaisend_queue_depth", &[("queue", q.to_string())]),
            Kind::Gauge(500.0),
        ));
    }
    for t in 0..40 {
        let l = [("tenant", format!("tenant-{t:02}"))];
        out.push((
            lbl("scaisend_emails_requests_total", &l),
            Kind::Counter(20.0),
        ));
        out.push((lbl("scaisend_emails_bounces_total", &l), Kind::Counter(0.2)));
    }
    out.push((lbl("pdns_lock_wait_seconds_sum", &[]), Kind::Counter(0.01)));
    out.push((lbl("pdns_lock_wait_seconds_count", &[]), Kind::Counter(1.0)));
    out.push((lbl("up", &[]), Kind::Gauge(1.0)));
    let probe = |name: &str| {
        Labels::from_pairs([
            ("__name__", name.to_string()),
            ("job", "seed-ready".to_string()),
            ("instance", "127.0.0.1:19110".to_string()),
        ])
    };
    out.push((probe("probe_success"), Kind::Gauge(1.0)));
    out.push((probe("up"), Kind::Gauge(1.0)));
    out
}

/// target.py's padding: 80% counters, 20% gauges, 64 shards, 100 groups.
fn padding(n: usize) -> Vec<(Labels, Kind)> {
    (0..n)
        .map(|i| {
            let l = [
                ("shard", format!("s{:02}", i % 64)),
                ("idx", format!("{i:06}")),
                ("group", format!("g{:03}", i % 100)),
            ];
            if i % 5 == 4 {
                (lbl("scaipad_level", &l), Kind::Gauge((i % 1000) as f64))
            } else {
                (
                    lbl("scaipad_ops_total", &l),
                    Kind::Counter(0.1 + (i % 50) as f64),
                )
            }
        })
        .collect()
}

fn value(kind: Kind, step: i64, i: usize) -> f64 {
    match kind {
        Kind::Counter(rate) => 1000.0 + rate * step as f64 + ((step + i as i64) % 3) as f64,
        Kind::Gauge(level) => level + ((step * 31 + i as i64) % 17) as f64,
    }
}

/// A store holding the workload, and the evaluation time (the last scrape).
fn build(dir: &tempfile::TempDir) -> (Store, i64) {
    let store = Store::open(&dir.path().join("rules.db"), StoreOptions::default()).unwrap();
    store.set_head_window(11 * 60_000);
    let seed = seed_series();
    let pad = padding(SERIES - seed.len());
    let seed_ids: Vec<SeriesRef> = store.series_refs(seed.iter().map(|s| s.0.clone()).collect());
    let pad_ids: Vec<SeriesRef> = store.series_refs(pad.iter().map(|s| s.0.clone()).collect());
    let mut batch = Vec::with_capacity(SERIES);
    for step in 0..SEED_STEPS {
        let t = T0 + step * 1000;
        batch.clear();
        for (i, (id, s)) in seed_ids.iter().zip(&seed).enumerate() {
            batch.push((*id, t, value(s.1, step, i)));
        }
        if step >= SEED_STEPS - PAD_STEPS {
            for (i, (id, s)) in pad_ids.iter().zip(&pad).enumerate() {
                batch.push((*id, t, value(s.1, step, i)));
            }
        }
        store.append(&batch);
        if step % 5 == 4 {
            store.flush(t).unwrap();
        }
    }
    let end = T0 + (SEED_STEPS - 1) * 1000;
    store.flush(end).unwrap();
    (store, end)
}

fn rules(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (store, t) = build(&dir);
    let engine = Engine::default();
    let seed: Vec<_> = SEED_RULES.iter().map(|e| parse(e).unwrap()).collect();
    let load: Vec<_> = LOAD_RULES.iter().map(|e| parse(e).unwrap()).collect();
    // every seed rule evaluates; the load rules find nothing (as in Prometheus's run)
    for e in &seed {
        engine.instant(&store, e, t).unwrap();
    }
    let mut g = c.benchmark_group("rules_100k_series");
    g.sample_size(20);
    g.bench_function("seed_rules_9_alerts", |b| {
        b.iter(|| {
            for e in &seed {
                black_box(engine.instant(&store, e, t).unwrap());
            }
        })
    });
    g.bench_function("load_rules_all_series", |b| {
        b.iter(|| {
            for e in &load {
                black_box(engine.instant(&store, e, t).unwrap());
            }
        })
    });
    g.finish();
}

criterion_group!(benches, rules);
criterion_main!(benches);
