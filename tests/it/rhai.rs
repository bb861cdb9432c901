//! Rule scripts (Rhai) over the real store: the design document's examples end to end.

use std::sync::Arc;

use tocsin::promql::rhai::{ScriptEngine, ScriptValue, to_vector};
use tocsin::promql::{Engine, Evaluator, Sample};
use tocsin::store::Store;

use crate::common::{labels, open_store};

const T0: i64 = 1_700_000_000_000;
const MINUTE: i64 = 60_000;

/// Runs `script` against `store` at `at` and returns the alert candidates as sorted
/// (labels, value) pairs.
fn run(store: Arc<Store>, script: &str, at: i64) -> Vec<(String, f64)> {
    let engine = ScriptEngine::new();
    let compiled = engine.compile(script).unwrap();
    let ev = Evaluator::new(Engine::default(), store, at);
    let value = engine.run(&compiled, &ev).unwrap();
    assert!(
        matches!(value, ScriptValue::Vector(_)),
        "expected a vector, got {value:?}"
    );
    let mut samples: Vec<Sample> = to_vector(value, at);
    samples.sort_by(|a, b| a.metric.cmp(&b.metric));
    samples
        .into_iter()
        .map(|s| (s.metric.to_string(), s.v))
        .collect()
}

/// Two tenants, each served by two instances, every minute for 70 minutes: every instance takes
/// 50 requests a minute; acme's bounce 5% of them, globex's 1%.
fn fill_scaisend(store: &Store) {
    let mut batch = Vec::new();
    for (tenant, bounces_per_minute) in [("acme", 2.5), ("globex", 0.5)] {
        for instance in ["a:9100", "b:9100"] {
            let requests = store.series_ref(labels(&[
                ("__name__", "scaisend_emails_requests_total"),
                ("instance", instance),
                ("tenant", tenant),
            ]));
            let bounces = store.series_ref(labels(&[
                ("__name__", "scaisend_emails_bounces_total"),
                ("instance", instance),
                ("tenant", tenant),
            ]));
            for i in 0..=70 {
                let t = T0 + i * MINUTE;
                batch.push((requests, t, 50.0 * i as f64));
                batch.push((bounces, t, bounces_per_minute * i as f64));
            }
        }
    }
    store.append(&batch);
    store.flush(T0 + 70 * MINUTE).unwrap();
}

#[test]
fn bounce_rate_script_fires_for_the_tenant_above_two_percent() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    fill_scaisend(&store);
    let script = r#"
        let bounces  = increase("scaisend_emails_bounces_total", "1h").sum_by(["tenant"]);
        let requests = increase("scaisend_emails_requests_total", "1h").sum_by(["tenant"]);
        (bounces / requests) > 0.02
    "#;
    let got = run(Arc::new(store), script, T0 + 70 * MINUTE);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, r#"{tenant="acme"}"#);
    assert!((got[0].1 - 0.05).abs() < 1e-9, "{got:?}");
}

#[test]
fn ratio_by_gives_every_tenants_share() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    fill_scaisend(&store);
    let script = r#"ratio_by("scaisend_emails_bounces_total", "scaisend_emails_requests_total", "1h", ["tenant"])"#;
    let got = run(Arc::new(store), script, T0 + 70 * MINUTE);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].0, r#"{tenant="acme"}"#);
    assert!((got[0].1 - 0.05).abs() < 1e-9, "{got:?}");
    assert_eq!(got[1].0, r#"{tenant="globex"}"#);
    assert!((got[1].1 - 0.01).abs() < 1e-9, "{got:?}");
}

/// Every 15 s for 20 minutes: the `emails` queue grows by one a step; the `webhooks` queue grows
/// the same way but dropped by three five minutes before the end.
fn fill_queues(store: &Store) {
    let emails = store.series_ref(labels(&[("__name__", "queue_depth"), ("queue", "emails")]));
    let webhooks = store.series_ref(labels(&[
        ("__name__", "queue_depth"),
        ("queue", "webhooks"),
    ]));
    let mut batch = Vec::new();
    for i in 0..=80 {
        let t = T0 + i * 15_000;
        let depth = i as f64;
        batch.push((emails, t, depth));
        batch.push((webhooks, t, if i == 60 { depth - 3.0 } else { depth }));
    }
    store.append(&batch);
    store.flush(T0 + 20 * MINUTE).unwrap();
}

#[test]
fn monotonic_increase_finds_the_queue_growing_for_fifteen_minutes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    fill_queues(&store);
    let store = Arc::new(store);
    let script = r#"monotonic_increase("queue_depth", "15m")"#;
    // the window (now - 15m, now] holds 60 samples: growth 59, and the dip rules webhooks out
    let got = run(store.clone(), script, T0 + 20 * MINUTE);
    assert_eq!(got, vec![(r#"{queue="emails"}"#.to_string(), 59.0)]);
    // fifteen minutes before the dip both queues qualify
    let got = run(store, script, T0 + 14 * MINUTE);
    assert_eq!(
        got.iter().map(|(l, _)| l.as_str()).collect::<Vec<_>>(),
        vec![r#"{queue="emails"}"#, r#"{queue="webhooks"}"#]
    );
}

#[test]
fn last_sample_age_reports_a_silent_series_until_it_leaves_the_lookback() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    fill_queues(&store);
    let store = Arc::new(store);
    let script = r#"last_sample_age("queue_depth{queue=\"emails\"}") > 300"#;
    assert!(run(store.clone(), script, T0 + 20 * MINUTE).is_empty());
    assert_eq!(
        run(store.clone(), script, T0 + 30 * MINUTE),
        vec![(r#"{queue="emails"}"#.to_string(), 600.0)]
    );
    // past the one-hour lookback the series is gone: absent() is what notices that
    assert!(run(store.clone(), script, T0 + 90 * MINUTE).is_empty());
    assert_eq!(
        run(
            store,
            r#"absent("queue_depth{queue=\"emails\"}")"#,
            T0 + 90 * MINUTE
        ),
        vec![(r#"{queue="emails"}"#.to_string(), 1.0)]
    );
}
