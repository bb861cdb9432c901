//! `tocsin schema`: every shipped example and fixture validates against the generated JSON
//! Schemas (so a field added to a loader without its doc comment, or a fixture using a field the
//! schema does not know, fails here), and documents the loaders refuse are refused by the schema
//! too. Validation is by `boon`, a draft-07 validator that also checks each schema against the
//! draft-07 meta-schema.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tocsin::config::schema::{SchemaKind, generate};

use crate::common::{BIN, project_dir};

/// The three schemas, compiled.
struct Validators {
    schemas: boon::Schemas,
    index: Vec<(SchemaKind, boon::SchemaIndex)>,
}

impl Validators {
    fn new() -> Validators {
        let mut schemas = boon::Schemas::new();
        let mut compiler = boon::Compiler::new();
        let mut index = Vec::new();
        for kind in SchemaKind::ALL {
            let url = format!("file:///{}", kind.file_name());
            let schema = generate(kind).unwrap_or_else(|e| panic!("{}: {e}", kind.name()));
            compiler.add_resource(&url, schema).unwrap();
            let i = compiler
                .compile(&url, &mut schemas)
                .unwrap_or_else(|e| panic!("{} schema does not compile: {e:#}", kind.name()));
            index.push((kind, i));
        }
        Validators { schemas, index }
    }

    /// The validation errors of `doc` (YAML) against `kind`'s schema, as one text; None: valid.
    fn errors(&self, kind: SchemaKind, yaml: &str) -> Option<String> {
        let doc: Value = serde_saphyr::from_str(yaml).expect("the YAML parses");
        let (_, i) = self.index.iter().find(|(k, _)| *k == kind).unwrap();
        self.schemas
            .validate(&doc, *i)
            .err()
            .map(|e| format!("{e:#}"))
    }
}

/// What a shipped YAML file is: a rule test file, a rule file (top-level `groups`), or a
/// tocsin.yml.
fn kind_of(path: &Path, text: &str) -> SchemaKind {
    let name = path.file_name().unwrap().to_str().unwrap();
    if name.ends_with("_test.yml") || name.ends_with("_test.yaml") {
        return SchemaKind::Tests;
    }
    let doc: Value = serde_saphyr::from_str(text).unwrap_or(Value::Null);
    if doc.get("groups").is_some() {
        SchemaKind::Rules
    } else {
        SchemaKind::Config
    }
}

/// Files under `fixtures/` and `rules/` that are not tocsin's: Alertmanager's and Prometheus's
/// own configurations, the input of `tocsin import` (their rule files are checked: Prometheus's
/// rule files load unchanged).
const NOT_TOCSIN: &[&str] = &[
    "fixtures/import/alertmanager-exact.yml",
    "fixtures/import/alertmanager-simple.yml",
    "fixtures/import/alertmanager-unsupported.yml",
    "fixtures/import/prometheus.yml",
];

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            out.push(path);
        }
    }
}

#[test]
fn every_shipped_example_and_fixture_validates_against_its_schema() {
    let v = Validators::new();
    let root = project_dir();
    let mut files = Vec::new();
    yaml_files(&root.join("fixtures"), &mut files);
    yaml_files(&root.join("rules"), &mut files);
    files.sort();
    let mut failures = Vec::new();
    let mut counts = [0usize; 3];
    for path in &files {
        let rel = path
            .strip_prefix(&root)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        if NOT_TOCSIN.contains(&rel.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        let kind = kind_of(path, &text);
        counts[SchemaKind::ALL.iter().position(|k| *k == kind).unwrap()] += 1;
        if let Some(e) = v.errors(kind, &text) {
            failures.push(format!("{rel} (as {}): {e}", kind.name()));
        }
    }
    assert!(
        failures.is_empty(),
        "shipped files the schemas refuse (regenerate nothing: fix the doc-commented types or the \
         file):\n{}",
        failures.join("\n")
    );
    // the walk found each kind: a moved fixture directory must not make this pass vacuously
    assert!(
        counts[0] >= 10 && counts[1] >= 15 && counts[2] >= 8,
        "too few files checked (config, rules, tests): {counts:?}"
    );
}

/// Documents the loaders refuse at parse (unknown field, wrong type, bad duration or enum
/// value): the schema refuses each, and the loader does too (so the case is real).
#[test]
fn documents_the_loaders_refuse_are_refused_by_the_schemas() {
    let v = Validators::new();
    let config_cases = [
        "scrape: { intervall: 15s }\n",
        "scrape: { interval: 15 }\n",
        "scrape: { interval: 1m30 }\n",
        "storage: { retention: 15days }\n",
        "log: { format: xml }\n",
        "targets: [{ name: a, metrics: 'http://x/metrics', labls: {} }]\n",
        "targets: [{ metrics: 'http://x/metrics' }]\n",
        "route: { receiver: a, group_wiat: 30s }\nreceivers: [{ name: a }]\n",
        "server: { push_body_size_limit: 3 parsecs }\n",
        "targets: [{ name: a, probes: [{ kind: ftp, address: 'x:1' }] }]\n",
        "log: { format: JSON }\n",
        "scrape: { self_metrics: maybe }\n",
        "scrape: { self_metrics: 1 }\n",
        "scrape: { sample_limit: -1 }\n",
        "scrape: { sample_limit: 1.5 }\n",
        "scrape: { sample_limit: '017' }\n",
        "targets: [{ name: ~, metrics: 'http://x/metrics' }]\n",
    ];
    for yaml in config_cases {
        assert!(
            v.errors(SchemaKind::Config, yaml).is_some(),
            "the config schema accepts {yaml:?}"
        );
        assert!(
            tocsin::config::Config::from_yaml(yaml, Path::new("t.yml")).is_err(),
            "the loader accepts {yaml:?}"
        );
    }
    let scripts = tocsin::promql::rhai::ScriptEngine::new();
    let rule_cases = [
        "groups: [{ name: g, rules: [{ alert: A, expr: up, fro: 5m }] }]\n",
        "groups: [{ name: g, rules: [{ alert: A, expr: up, for: 5 minutes }] }]\n",
        "groups: [{ rules: [] }]\n",
        "groups: [{ name: g, interval: 1m, rules: [], extra: 1 }]\n",
        "groups: [{ name: g, rules: [{ alert: A, expr: up, flap_detection: { low: x } }] }]\n",
        "groups: [{ name: g, rules: [{ alert: A, expr: up, dry_run: sometimes }] }]\n",
        "group: []\n",
    ];
    for yaml in rule_cases {
        assert!(
            v.errors(SchemaKind::Rules, yaml).is_some(),
            "the rules schema accepts {yaml:?}"
        );
        assert!(
            tocsin::rules::load::parse_file(yaml, Path::new("r.yml"), 15_000, &scripts).is_err(),
            "the loader accepts {yaml:?}"
        );
    }
    for yaml in [
        "rule_files: [r.yml]\ntests: [{ input_series: [{ series: up, valus: '1' }] }]\n",
        "tests: [{ alert_rule_test: [{ eval_time: 5, alertname: A }] }]\n",
        "tests: [{ notification_test: [{ eval_time: 1m, exp_notifications: [{ receiver: r, status: pending }] }] }]\n",
        "evaluation_interval: 1m\ntest: []\n",
    ] {
        assert!(
            v.errors(SchemaKind::Tests, yaml).is_some(),
            "the tests schema accepts {yaml:?}"
        );
    }
}

/// What the loaders accept beyond the obvious, the schema accepts too: null for an empty
/// list, numbers where Alertmanager's sections take text, `0` as a duration, sizes as numbers.
#[test]
fn what_the_loaders_accept_leniently_the_schemas_accept() {
    let v = Validators::new();
    for yaml in [
        "receivers:\ninhibit_rules:\ntime_intervals:\n",
        // YAML 1.1 scalars, read leniently by serde-saphyr: any scalar as text, booleans as
        // yes/off/"true", integers as text, in hex, with underscores
        "scrape: { self_metrics: yes, sample_limit: '0x10', label_limit: 1_000 }\n",
        "scrape: { self_metrics: 'True', sample_limit: ' 100' }\n",
        "targets: [{ name: 123, metrics: 'http://127.0.0.1:1/m', labels: { a: true, b: 1.5, c: y } }]\n",
        "receivers: [{ name: a }]\nroute: { receiver: a, group_by: [alertname], routes: [{ receiver: a, matchers: ['x=1'], group_wait: 0 }] }\n",
        "time_intervals: [{ name: w, time_intervals: [{ years: [2026], days_of_month: ['1:5'] }] }]\n",
        "server: { push_body_size_limit: 1048576 }\nscrape: { body_size_limit: 32MiB }\n",
        "storage: { head_window: 0 }\n",
    ] {
        assert!(
            tocsin::config::Config::from_yaml(yaml, Path::new("t.yml")).is_ok(),
            "the loader refuses {yaml:?}"
        );
        if let Some(e) = v.errors(SchemaKind::Config, yaml) {
            panic!("the config schema refuses {yaml:?}: {e}");
        }
    }
    let scripts = tocsin::promql::rhai::ScriptEngine::new();
    for yaml in [
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n        for: 0\n        flap_detection: { low: 10, high: 40.5 }\n",
        "groups: [{ name: 5, limit: '10', rules: [{ alert: 7, expr: up, dry_run: 'yes', labels: { severity: 1 }, flap_detection: { low: '1.5', high: .5e2 } }] }]\n",
    ] {
        let loaded = tocsin::rules::load::parse_file(yaml, Path::new("r.yml"), 15_000, &scripts);
        assert!(loaded.is_ok(), "the loader refuses {yaml:?}: {loaded:?}");
        assert_eq!(v.errors(SchemaKind::Rules, yaml), None, "{yaml:?}");
    }
}

#[test]
fn schema_prints_each_kind_and_writes_all_three_to_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["schema", "--out-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for kind in SchemaKind::ALL {
        let written = std::fs::read_to_string(dir.path().join(kind.file_name())).unwrap();
        let printed = Command::new(BIN)
            .args(["schema", kind.name()])
            .output()
            .unwrap();
        assert!(printed.status.success());
        assert_eq!(String::from_utf8(printed.stdout).unwrap(), written);
        let flag = Command::new(BIN)
            .args(["schema", "--kind", kind.name()])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(flag.stdout).unwrap(), written);
        let schema: Value = serde_json::from_str(&written).unwrap();
        assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    }
    let bad = Command::new(BIN)
        .args(["schema", "alerts"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let none = Command::new(BIN).arg("schema").output().unwrap();
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("config, rules or tests"));
}
