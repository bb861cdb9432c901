//! The query engine over the real store, and `tocsin query` against a store file.

use std::process::Command;
use std::time::Duration;

use tocsin::promql::{Engine, Value, parse};
use tocsin::store::SeriesRef;

use crate::common::{BIN, labels, open_store};
const T0: i64 = 1_700_000_000_000;

/// Two counters of `http_requests_total` (200 and 500) growing 10/s and 1/s, every 15 s for 10 min.
fn fill(store: &tocsin::store::Store) {
    let ok: SeriesRef = store.series_ref(labels(&[
        ("__name__", "http_requests_total"),
        ("code", "200"),
        ("job", "api"),
    ]));
    let err: SeriesRef = store.series_ref(labels(&[
        ("__name__", "http_requests_total"),
        ("code", "500"),
        ("job", "api"),
    ]));
    let mut batch = Vec::new();
    for i in 0..=40 {
        let t = T0 + i * 15_000;
        batch.push((ok, t, 150.0 * i as f64));
        batch.push((err, t, 15.0 * i as f64));
    }
    store.append(&batch);
    store.flush(T0 + 600_000).unwrap();
}

fn vector(v: Value) -> Vec<(String, f64)> {
    let Value::Vector(mut s) = v else {
        panic!("expected a vector, got {v:?}")
    };
    s.sort_by(|a, b| a.metric.cmp(&b.metric));
    s.into_iter().map(|s| (s.metric.to_string(), s.v)).collect()
}

#[test]
fn rate_and_error_ratio_over_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    fill(&store);
    let engine = Engine::default();
    let at = T0 + 600_000;
    let rate = engine
        .instant(&store, &parse("rate(http_requests_total[5m])").unwrap(), at)
        .unwrap();
    let got = vector(rate);
    assert_eq!(got.len(), 2);
    assert!((got[0].1 - 10.0).abs() < 1e-9, "{got:?}");
    assert!((got[1].1 - 1.0).abs() < 1e-9, "{got:?}");
    assert!(
        !got[0].0.contains("__name__"),
        "rate drops the name: {got:?}"
    );

    let ratio = parse(
        r#"sum(rate(http_requests_total{code=~"5.."}[5m])) / sum(rate(http_requests_total[5m])) > 0.05"#,
    )
    .unwrap();
    let got = vector(engine.instant(&store, &ratio, at).unwrap());
    assert_eq!(got.len(), 1);
    assert!((got[0].1 - 1.0 / 11.0).abs() < 1e-9, "{got:?}");

    // the same data read after a restart comes from the file
    drop(store);
    let store = tocsin::store::Store::open_read_only(&dir.path().join("tocsin.db")).unwrap();
    let got = vector(engine.instant(&store, &ratio, at).unwrap());
    assert!((got[0].1 - 1.0 / 11.0).abs() < 1e-9, "{got:?}");
}

#[test]
fn many_to_many_matching_is_an_error_for_that_expression() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    fill(&store);
    let e = Engine::default()
        .instant(
            &store,
            &parse("http_requests_total + on(job) http_requests_total").unwrap(),
            T0 + 600_000,
        )
        .unwrap_err();
    assert!(
        e.to_string().contains("many-to-many matching not allowed"),
        "{e}"
    );
}

#[test]
fn query_command_reads_a_store_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tocsin.db");
    {
        let store = open_store(&dir);
        fill(&store);
        store.close(T0 + 600_000).unwrap();
    }
    let at = format!("{}", (T0 + 600_000) / 1000);
    let out = Command::new(BIN)
        .args([
            "query",
            "sum by (code) (increase(http_requests_total[5m]))",
            "--at",
            &at,
            "--db",
        ])
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(r#"{code="200"} 3000"#), "{stdout}");
    assert!(stdout.contains(r#"{code="500"} 300"#), "{stdout}");

    // rfc 3339 works too, and a bad expression exits 1 with the parser's message
    let out = Command::new(BIN)
        .args([
            "query",
            "sum(rate(x[5m])",
            "--at",
            "2023-11-14T22:23:20Z",
            "--db",
        ])
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("parse error"));

    // relative times: `--at -1h` parses (nothing stored an hour ago: an empty result); a bad
    // time names every accepted form
    let out = Command::new(BIN)
        .args(["query", "vector(1)", "--at", "-1h", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(BIN)
        .args(["query", "vector(1)", "--at", "yesterday", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("or now, -1h, -2d"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // a rhai script over the same file
    let out = Command::new(BIN)
        .args([
            "query",
            "--rhai",
            r#"increase("http_requests_total", "5m").sum_by(["code"]) > 1000"#,
            "--at",
            &at,
            "--db",
        ])
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.trim(), r#"{code="200"} 3000"#);

    // a missing store is a usage error (2) naming the path
    let out = Command::new(BIN)
        .args(["query", "up", "--db"])
        .arg(dir.path().join("nope.db"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.db"));
}

#[test]
fn bad_expressions_are_clear_errors_for_that_expression_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    fill(&store);
    let engine = Engine::default();
    let at = T0 + 600_000;
    for (expr, want) in [
        ("sum(rate(http_requests_total[5m])", "parse error"),
        ("no_such_function(http_requests_total)", "parse error"),
        ("rate(http_requests_total)", "parse error"),
        (r#"http_requests_total{code=~"(5"}"#, "parse error"),
        (
            r#"label_replace(http_requests_total, "x", "$1", "code", "(5")"#,
            "invalid regular expression",
        ),
        ("topk(NaN, http_requests_total)", "NaN"),
    ] {
        let e = parse(expr).and_then(|p| engine.instant(&store, &p, at));
        let msg = e.expect_err(expr).to_string();
        assert!(msg.contains(want), "{expr}: {msg}");
    }
    // division by zero is not an error: Prometheus semantics give +Inf and NaN
    let got = vector(
        engine
            .instant(&store, &parse("http_requests_total / 0").unwrap(), at)
            .unwrap(),
    );
    assert!(got.iter().all(|(_, v)| v.is_infinite()), "{got:?}");
    // and the engine goes on answering other expressions
    let ok = engine.instant(&store, &parse("count(http_requests_total)").unwrap(), at);
    assert_eq!(vector(ok.unwrap())[0].1, 2.0);
}

/// Minutes of work that passes every limit: 40 million steps of nested subqueries, each reading
/// the store (`http_requests_total` from `fill`).
const LONG_QUERY: &str = "count_over_time(count_over_time(count_over_time(http_requests_total[1000s:1s])[1000s:1s])[40s:1s])";

/// The API over a filled store with `limits`, served on 127.0.0.1; returns the base URL.
async fn api(dir: &tempfile::TempDir, limits: tocsin::server::QueryLimits) -> String {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    let store = Arc::new(open_store(dir));
    fill(&store);
    let status = Arc::new(tocsin::ingest::scheduler::StatusBoard::default());
    status.running.store(true, Ordering::SeqCst);
    status.store_ok.store(true, Ordering::SeqCst);
    let state = tocsin::server::AppState {
        status,
        metrics: Arc::new(tocsin::selfmetrics::SelfMetrics::new(0.0)),
        clock: Arc::new(tocsin::clock::ManualClock::new(T0 + 600_000)),
        started_ms: T0,
        store_path: "tocsin.db".into(),
        reload: None,
        reloads: Default::default(),
        rules: None,
        silences: None,
        store: Some(store),
        engine: Default::default(),
        queries: limits,
        api_token: None,
        read_token: None,
        push: None,
        push_body_limit: 1 << 20,
    };
    let addr = crate::common::serve(tocsin::server::router(state)).await;
    format!("http://{addr}")
}

/// `GET /api/v1/query` with `query` and `timeout`: status code and JSON body.
async fn query_api(base: &str, query: &str, timeout: &str) -> (u16, serde_json::Value) {
    let params = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("query", query)
        .append_pair("timeout", timeout)
        .finish();
    let resp = reqwest::Client::new()
        .get(format!("{base}/api/v1/query?{params}"))
        .timeout(std::time::Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (code, serde_json::from_str(&text).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_api_query_stops_evaluating_and_gives_its_slot_back() {
    let dir = tempfile::tempdir().unwrap();
    let limits = tocsin::server::QueryLimits::new(1);
    let base = api(&dir, limits.clone()).await;
    let (code, body) = query_api(&base, LONG_QUERY, "0.3").await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["errorType"], "timeout");
    assert_eq!(
        body["error"],
        "query timed out after 0.3s in expression evaluation"
    );
    // the one slot is free again only when the evaluation really ended: before, the long query
    // kept it (and a core) for minutes and this one timed out waiting
    let (code, body) = query_api(&base, "sum(http_requests_total)", "10s").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(limits.available(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_beyond_the_concurrency_limit_wait_for_a_slot_within_their_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let limits = tocsin::server::QueryLimits::new(1);
    let base = api(&dir, limits.clone()).await;
    let long = tokio::spawn({
        let base = base.clone();
        async move { query_api(&base, LONG_QUERY, "3s").await }
    });
    crate::common::Deadline::within("the long query taking the slot", Duration::from_secs(10))
        .until(|| limits.available() == 0)
        .await;
    // queued behind it, and its timeout counts the wait
    let (code, body) = query_api(&base, "1", "0.3").await;
    assert_eq!(
        (code, &body["errorType"]),
        (503, &"timeout".into()),
        "{body}"
    );
    let (code, body) = long.await.unwrap();
    assert_eq!(
        (code, &body["errorType"]),
        (503, &"timeout".into()),
        "{body}"
    );
    let (code, body) = query_api(&base, "1", "10s").await;
    assert_eq!(code, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_queries_over_the_limits_are_refused_at_once_with_the_limit_named() {
    let dir = tempfile::tempdir().unwrap();
    let base = api(&dir, Default::default()).await;
    let started = std::time::Instant::now();
    for (query, needle) in [
        // ran ~1.5 h before
        (
            "count_over_time(http_requests_total[1y:1ms])",
            "more than the limit of 50000000 steps",
        ),
        // 4 steps a level, 13 levels
        (
            &format!(
                "{}http_requests_total{}",
                "max_over_time(".repeat(13),
                "[1m:15s])".repeat(13)
            ),
            "more than the limit of 50000000 steps",
        ),
    ] {
        let (code, body) = query_api(&base, query, "2m").await;
        assert_eq!(code, 422, "{query}: {body}");
        assert_eq!(body["errorType"], "execution");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(needle), "{query}: {error}");
    }
    // a regex matcher over the repetition limit (12 s a request before) is a bad query, as
    // Prometheus, which compiles matchers when it parses: 400 bad_data, in any position
    for query in [
        r#"http_requests_total{code=~"(a{1,100}){1,100}b"}"#,
        r#"rate(http_requests_total{code!~"(a{1,100}){1,100}b"}[5m])"#,
        r#"sum(http_requests_total) + count({__name__=~"(a{1,100}){1,100}b"} offset 1m)"#,
    ] {
        let (code, body) = query_api(&base, query, "2m").await;
        assert_eq!(code, 400, "{query}: {body}");
        assert_eq!(body["errorType"], "bad_data");
        let error = body["error"].as_str().unwrap();
        assert!(
            error.contains("invalid parameter \"query\": invalid regular expression in matcher")
                && error.contains("more than the limit of 1000 times"),
            "{query}: {error}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// promtool's habits: `query range` with `--start/--end/--step`, `query instant`, and `-o json`
/// printing the API's answer.
#[test]
fn query_command_evaluates_ranges_and_prints_json() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tocsin.db");
    {
        let store = open_store(&dir);
        fill(&store);
        store.close(T0 + 600_000).unwrap();
    }
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .arg("--db")
            .arg(&db)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let start = format!("{}", (T0 + 300_000) / 1000);
    let end = format!("{}", (T0 + 600_000) / 1000);
    let (code, out, err) = run(&[
        "query",
        "range",
        "sum by (code) (http_requests_total)",
        "--start",
        &start,
        "--end",
        &end,
        "--step",
        "60s",
        "-o",
        "json",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["status"], "success");
    assert_eq!(v["data"]["resultType"], "matrix");
    let series = v["data"]["result"].as_array().unwrap();
    assert_eq!(series.len(), 2, "{out}");
    let ok = series
        .iter()
        .find(|s| s["metric"]["code"] == "200")
        .unwrap();
    // six steps, 5m to 10m after T0: 150 per 15 s sample
    let values = ok["values"].as_array().unwrap();
    assert_eq!(values.len(), 6, "{out}");
    assert_eq!(values[0][1], "3000");
    assert_eq!(values[5][1], "6000");
    assert_eq!(
        values[5][0].as_f64().unwrap(),
        ((T0 + 600_000) / 1000) as f64
    );

    // text output of the same range, one line per series
    let (code, out, err) = run(&[
        "query",
        "range",
        "sum(http_requests_total)",
        "--start",
        &start,
        "--end",
        &end,
        "--step",
        "5m",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out.trim(),
        "{} => 3300 @1700000300 6600 @1700000600",
        "{out}"
    );

    // an instant query's json carries the evaluation time
    let (code, out, err) = run(&[
        "query",
        "sum(http_requests_total)",
        "--at",
        &end,
        "-o",
        "json",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["data"]["resultType"], "vector");
    assert_eq!(v["data"]["result"][0]["value"][1], "6600");

    // an error in json is the API's error shape, exit 1
    let (code, out, _) = run(&["query", "sum(", "-o", "json"]);
    assert_eq!(code, Some(1));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["status"], "error");
    assert_eq!(v["errorType"], "bad_data");
    // a range with a bad step is an execution error naming it
    let (code, _, err) = run(&[
        "query",
        "range",
        "vector(1)",
        "--start",
        &end,
        "--end",
        &start,
    ]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("end timestamp must not be before start time"),
        "{err}"
    );
}
