//! The parser over real exposition files from the Prometheus project
//! (`../shared/conformance/prometheus/textparse/`, read in place, never copied).

use std::collections::BTreeSet;

use crate::common::shared_dir;
use tocsin::ingest::textparse::{Entry, MetricKind, Parser};

/// name, labels, value
type ParsedSample = (String, Vec<(String, String)>, f64);

struct Parsed {
    families: BTreeSet<String>,
    types: usize,
    helps: usize,
    samples: Vec<ParsedSample>,
    eof: bool,
}

fn parse_file(name: &str) -> Option<Parsed> {
    let Some(shared) = shared_dir() else {
        eprintln!("skipping: ../shared/conformance not present");
        return None;
    };
    let path = shared.join("conformance/prometheus/textparse").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut p = Parsed {
        families: BTreeSet::new(),
        types: 0,
        helps: 0,
        samples: Vec::new(),
        eof: false,
    };
    for entry in Parser::new(&text) {
        match entry.unwrap_or_else(|e| panic!("{}: {e}", path.display())) {
            Entry::Sample(s) => p.samples.push((
                s.name.to_string(),
                s.labels()
                    .map(|(k, v)| (k.to_string(), v.into_owned()))
                    .collect(),
                s.value,
            )),
            Entry::Type { name, kind } => {
                assert_ne!(kind, MetricKind::Unknown);
                p.families.insert(name.to_string());
                p.types += 1;
            }
            Entry::Help { .. } => p.helps += 1,
            Entry::Eof => p.eof = true,
        }
    }
    Some(p)
}

fn value_of(p: &Parsed, name: &str, labels: &[(&str, &str)]) -> f64 {
    p.samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && l.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(a, b)| a == k && b == v))
        })
        .unwrap_or_else(|| panic!("{name} {labels:?} not found"))
        .2
}

#[test]
fn all_237_metric_families_parse_with_metadata() {
    let Some(p) = parse_file("alltypes.237mfs.prom.txt") else {
        return;
    };
    assert_eq!(p.families.len(), 237);
    assert_eq!((p.types, p.helps), (237, 237));
    assert_eq!(p.samples.len(), 1857);
    // served as the text format, the file's last line `# EOF` is a comment (as in promtool)
    assert!(!p.eof);
    check_known_samples(&p);
}

#[test]
fn all_metric_families_parse_without_metadata() {
    let Some(p) = parse_file("alltypes.237mfs.nometa.prom.txt") else {
        return;
    };
    assert_eq!((p.types, p.helps), (0, 0));
    assert_eq!(p.samples.len(), 1857);
    // served as the text format, the file's last line `# EOF` is a comment (as in promtool)
    assert!(!p.eof);
    check_known_samples(&p);
}

fn check_known_samples(p: &Parsed) {
    assert_eq!(
        value_of(p, "go_gc_cycles_automatic_gc_cycles_total", &[]),
        190932.0
    );
    assert_eq!(
        value_of(p, "go_gc_duration_seconds", &[("quantile", "0")]),
        7.6238e-05
    );
    assert_eq!(
        value_of(
            p,
            "go_gc_heap_allocs_by_size_bytes_bucket",
            &[("le", "+Inf")]
        ),
        4.4046288803e+10
    );
    assert_eq!(
        value_of(
            p,
            "go_gc_heap_allocs_by_size_bytes_bucket",
            &[("le", "8.999999999999998")]
        ),
        2.279966416e+09
    );
    assert_eq!(
        value_of(
            p,
            "prometheus_build_info",
            &[
                ("branch", "HEAD"),
                ("goarch", "amd64"),
                ("goos", "linux"),
                ("goversion", "go1.23.4"),
                ("revision", "7086161a93b262aa0949dbf2aba15a5a7b13e0a3"),
                ("tags", "netgo,builtinassets,stringlabels"),
                ("version", "3.1.0"),
            ]
        ),
        1.0
    );
    assert_eq!(
        value_of(
            p,
            "promhttp_metric_handler_requests_total",
            &[("code", "503")]
        ),
        0.0
    );
}
