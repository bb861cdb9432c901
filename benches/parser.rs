//! Parser throughput on a 100k-sample exposition shaped like real exporters' output
//! (counters with several labels, histogram buckets, gauges, HELP/TYPE lines).

use std::fmt::Write;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tocsin::ingest::textparse::{Entry, Parser};

fn exposition(samples: usize) -> String {
    let mut s = String::with_capacity(samples * 90);
    let mut n = 0;
    let mut family = 0;
    while n < samples {
        family += 1;
        let _ = writeln!(
            s,
            "# HELP app_requests_{family}_total Requests by method, route and status."
        );
        let _ = writeln!(s, "# TYPE app_requests_{family}_total counter");
        for i in 0..200 {
            let _ = writeln!(
                s,
                "app_requests_{family}_total{{method=\"{}\",route=\"/api/v1/items/{i}\",status=\"{}\"}} {}",
                ["GET", "POST", "PUT", "DELETE"][i % 4],
                [200, 404, 500][i % 3],
                1_000_000 + i * 37
            );
        }
        let _ = writeln!(s, "# TYPE app_latency_{family}_seconds histogram");
        for route in 0..20 {
            for le in [
                "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf",
            ] {
                let _ = writeln!(
                    s,
                    "app_latency_{family}_seconds_bucket{{route=\"/r{route}\",le=\"{le}\"}} {}",
                    route * 11
                );
            }
            let _ = writeln!(
                s,
                "app_latency_{family}_seconds_sum{{route=\"/r{route}\"}} {}",
                route as f64 * 0.731
            );
            let _ = writeln!(
                s,
                "app_latency_{family}_seconds_count{{route=\"/r{route}\"}} {}",
                route * 11
            );
        }
        let _ = writeln!(s, "# TYPE app_queue_{family} gauge");
        for q in 0..38 {
            let _ = writeln!(s, "app_queue_{family}{{queue=\"q{q}\"}} {}.5", q * 3);
        }
        n += 200 + 20 * 12 + 38;
    }
    s
}

fn parse(c: &mut Criterion) {
    let text = exposition(100_000);
    let samples = Parser::new(&text)
        .filter(|e| matches!(e, Ok(Entry::Sample(_))))
        .count() as u64;
    let mut g = c.benchmark_group("parser");
    g.throughput(Throughput::Elements(samples));
    g.bench_function("samples", |b| {
        b.iter(|| black_box(Parser::new(black_box(&text)).count()))
    });
    g.bench_function("samples_and_labels", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for e in Parser::new(black_box(&text)) {
                if let Ok(Entry::Sample(s)) = e {
                    n += s.labels().map(|(k, v)| k.len() + v.len()).sum::<usize>();
                }
            }
            black_box(n)
        })
    });
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("bytes", |b| {
        b.iter(|| black_box(Parser::new(black_box(&text)).count()))
    });
    g.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
