//! Scrapes and health probes against real HTTP servers on 127.0.0.1, including the faults the
//! foundation issue lists: malformed exposition, hang, 500, 50 MB, closed mid-body, HTML and bad JSON.

use std::io::Write;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::common::*;
use tocsin::config::{Config, Target};
use tocsin::ingest::textparse::Format;
use tocsin::ingest::{self as scrape, ScrapeCache, ScrapeError};
use tocsin::labels::MatchOp;
use tocsin::store::Store;

const T0: i64 = 1_700_000_000_000;

fn big_body() -> String {
    // ~50 MB of valid samples
    let line = "padding_metric_with_a_long_name{label_one=\"value-one\",label_two=\"value-two\"} 12345.678\n";
    line.repeat(50_000_000 / line.len() + 1)
}

fn gzip(text: &str) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap()
}

/// The health body of a service with two extra JSON fields to read.
const STATUS_JSON: &str = r#"{"status":"ok","sync_success_rate":0.93,"stats":{"pending":12}}"#;

fn html() -> Reply {
    Reply::text("<html><body>It works!</body></html>").header("content-type", "text/html")
}

/// A raw HTTP/1.1 server on loopback: the `n`th connection (from 0) gets `answer(n)`, a head
/// and a body written as they are, and is closed. Its address.
async fn serve_raw(
    answer: impl Fn(u64) -> (String, String) + Send + 'static,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        for n in 0.. {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = tokio::io::AsyncReadExt::read(&mut sock, &mut buf).await;
            let (head, body) = answer(n);
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(body.as_bytes()).await;
            let _ = sock.flush().await;
            drop(sock);
        }
    });
    addr
}

/// A raw server that promises 1000 bytes and closes after 100.
async fn serve_truncated() -> String {
    let addr = serve_raw(|_| {
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 1000\r\n\r\n";
        (head.to_string(), "metric_a 1\n".repeat(10))
    })
    .await;
    format!("http://{addr}/metrics")
}

fn scrape_target(base: &str, metrics_path: &str, health_path: Option<&str>) -> Target {
    let health = health_path
        .map(|p| format!("    health: {base}{p}\n"))
        .unwrap_or_default();
    let yaml = format!(
        "targets:\n  - name: svc\n    metrics: {base}{metrics_path}\n{health}    labels: {{ team: dns }}\n    health_json:\n      - field: sync_success_rate\n      - field: stats.pending\n        metric: connector_pending\n"
    );
    let yaml = if health_path.is_none() {
        yaml.split("    health_json").next().unwrap().to_string()
    } else {
        yaml
    };
    Config::from_yaml(&yaml, std::path::Path::new("test.yml"))
        .unwrap()
        .build_targets(&Default::default())
        .unwrap()
        .remove(0)
}

async fn fetch(url: &str, timeout: Duration, limit: u64) -> Result<scrape::Response, ScrapeError> {
    scrape::fetch(
        &scrape::client(),
        &url::Url::parse(url).unwrap(),
        timeout,
        limit,
        None,
        "*/*",
    )
    .await
}

fn new_cache(t: &Target) -> ScrapeCache {
    ScrapeCache::new(scrape::metrics_base_labels(t, t.metrics.as_ref().unwrap()))
}

fn ingest_url(
    store: &Store,
    cache: &mut ScrapeCache,
    body: &[u8],
    t: i64,
) -> Result<scrape::IngestReport, ScrapeError> {
    cache.ingest(
        store,
        std::str::from_utf8(body).unwrap(),
        Format::Text,
        t,
        1000,
    )
}

#[tokio::test]
async fn scrape_stores_samples_with_target_labels() {
    let target = FakeTarget::start().await;
    let base = target.base();
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    let t = scrape_target(base, "/metrics", None);
    let mut cache = new_cache(&t);
    let resp = fetch(&format!("{base}/metrics"), Duration::from_secs(5), 1 << 20)
        .await
        .unwrap();
    let report = ingest_url(&store, &mut cache, &resp.body, T0).unwrap();
    assert_eq!(
        (report.scraped, report.appended, report.new_series),
        (4, 4, 4)
    );
    let got = store
        .latest(&[matcher(MatchOp::Equal, "status", "500")], T0, 300_000)
        .unwrap();
    assert_eq!(got.len(), 1);
    let l = &got[0].0;
    let instance = base.trim_start_matches("http://");
    assert_eq!(l.get("job"), Some("svc"));
    assert_eq!(l.get("instance"), Some(instance));
    assert_eq!(l.get("team"), Some("dns"));
    assert_eq!(got[0].2, 3.0);
    // an exposed label colliding with a target label is kept as exported_<name>
    let rate = store
        .latest(&name_is("job:request_rate:5m"), T0, 300_000)
        .unwrap();
    assert_eq!(rate[0].0.get("exported_job"), Some("other"));
    assert_eq!(rate[0].0.get("job"), Some("svc"));
}

#[tokio::test]
async fn gzip_bodies_are_decoded() {
    let target = FakeTarget::start().await;
    target.route(
        "/gzip",
        Reply::bytes(gzip(EXPOSITION)).header("content-encoding", "gzip"),
    );
    let resp = fetch(&target.url("/gzip"), Duration::from_secs(5), 1 << 20)
        .await
        .unwrap();
    assert_eq!(std::str::from_utf8(&resp.body).unwrap(), EXPOSITION);
}

#[tokio::test]
async fn malformed_exposition_stores_nothing_and_names_the_line() {
    let target = FakeTarget::start().await;
    target.route("/malformed", Reply::text(MALFORMED));
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    let t = scrape_target(target.base(), "/malformed", None);
    let mut cache = new_cache(&t);
    let resp = fetch(&target.url("/malformed"), Duration::from_secs(5), 1 << 20)
        .await
        .unwrap();
    let err = ingest_url(&store, &mut cache, &resp.body, T0).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("line 3"), "{msg}");
    assert!(
        store
            .latest(&name_is("ok_metric"), T0, 300_000)
            .unwrap()
            .is_empty(),
        "all or nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hanging_target_times_out() {
    let target = FakeTarget::start().await;
    target.route("/hang", Reply::hang());
    let err = fetch(&target.url("/hang"), Duration::from_secs(10), 1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(err, ScrapeError::Timeout(_)), "{err}");
    assert_eq!(err.to_string(), "timeout after 10s");
}

#[tokio::test]
async fn a_500_is_returned_with_its_status() {
    let target = FakeTarget::start().await;
    target.route("/500", Reply::text("boom").status(500));
    let resp = fetch(&target.url("/500"), Duration::from_secs(5), 1 << 20)
        .await
        .unwrap();
    assert_eq!(resp.status, 500);
}

#[tokio::test]
async fn a_50_mb_body_exceeds_the_default_limit() {
    let target = FakeTarget::start().await;
    target.route("/big", Reply::text(big_body()));
    let limit = Config::builtin_default().scrape.body_size_limit.0;
    let err = fetch(&target.url("/big"), Duration::from_secs(30), limit)
        .await
        .unwrap_err();
    assert!(matches!(err, ScrapeError::BodyTooLarge { .. }), "{err}");
    assert!(err.to_string().contains(&limit.to_string()));
}

#[tokio::test]
async fn a_body_cut_mid_way_is_an_error() {
    let url = serve_truncated().await;
    let err = fetch(&url, Duration::from_secs(5), 1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(err, ScrapeError::Http(_)), "{err}");
}

#[tokio::test]
async fn sample_limit_fails_the_scrape_and_stores_nothing() {
    let target = FakeTarget::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    let t = scrape_target(target.base(), "/metrics", None);
    let mut cache = new_cache(&t);
    let err = cache
        .ingest(&store, EXPOSITION, Format::Text, T0, 3)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "4 samples exceed the sample limit of 3 (sample_limit)"
    );
    assert!(store.series(&[]).is_empty());
}

#[tokio::test]
async fn vanished_series_are_marked_stale() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    let t = scrape_target("http://127.0.0.1:9", "/metrics", None);
    let mut cache = new_cache(&t);
    cache
        .ingest(&store, "a 1\nb 2\n", Format::Text, T0, 100)
        .unwrap();
    let report = cache
        .ingest(&store, "a 1\n", Format::Text, T0 + 15_000, 100)
        .unwrap();
    assert_eq!(report.stale, 1);
    assert!(
        store
            .latest(&name_is("b"), T0 + 15_000, 300_000)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .latest(&name_is("a"), T0 + 15_000, 300_000)
            .unwrap()
            .len(),
        1
    );
    // a series that comes back is live again
    cache
        .ingest(&store, "a 1\nb 3\n", Format::Text, T0 + 30_000, 100)
        .unwrap();
    assert_eq!(
        store.latest(&name_is("b"), T0 + 30_000, 300_000).unwrap()[0].2,
        3.0
    );
    // a failed scrape ends every series
    assert_eq!(cache.mark_all_stale(&store, T0 + 45_000), 2);
    assert!(
        store
            .latest(&name_is("a"), T0 + 45_000, 300_000)
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn duplicate_series_keep_the_first_sample() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    let t = scrape_target("http://127.0.0.1:9", "/metrics", None);
    let mut cache = new_cache(&t);
    let report = cache
        .ingest(
            &store,
            "a{x=\"1\"} 1\na{x=\"1\"} 2\n",
            Format::Text,
            T0,
            100,
        )
        .unwrap();
    assert_eq!((report.appended, report.duplicates), (1, 1));
    assert_eq!(store.latest(&name_is("a"), T0, 1000).unwrap()[0].2, 1.0);
}

async fn probe(base: &str, path: &str, store: &Store) -> scrape::HealthReport {
    probe_at(base, path, store, T0, &mut Default::default()).await
}

async fn probe_at(
    base: &str,
    path: &str,
    store: &Store,
    at: i64,
    checks: &mut tocsin::ingest::health::HealthMemory,
) -> scrape::HealthReport {
    let t = scrape_target(base, "/metrics", Some(path));
    let url = t.health.clone().unwrap();
    let result = fetch(url.as_str(), Duration::from_secs(5), 1 << 20).await;
    // the same labels whatever the path, as one endpoint's probes over time
    let mut base_labels = t.clone();
    base_labels.health = Some(url::Url::parse(&format!("{base}/health")).unwrap());
    scrape::ingest_health(
        store,
        &scrape::health_base_labels(&base_labels, base_labels.health.as_ref().unwrap()),
        at,
        0.01,
        &result,
        &t.health_json,
        checks,
    )
}

fn health_value(store: &Store, name: &str, extra: &[(&str, &str)]) -> Option<f64> {
    let mut m = vec![
        matcher(MatchOp::Equal, "__name__", name),
        matcher(MatchOp::Equal, "probe", "health"),
    ];
    m.extend(extra.iter().map(|(k, v)| matcher(MatchOp::Equal, k, v)));
    store.latest(&m, T0, 1000).unwrap().first().map(|s| s.2)
}

#[tokio::test]
async fn healthy_json_endpoint_writes_up_and_checks() {
    let target = FakeTarget::start().await;
    target.set_health(200, HEALTH_OK);
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    let report = probe(target.base(), "/health", &store).await;
    assert!(report.up && report.success);
    assert_eq!(health_value(&store, "up", &[]), Some(1.0));
    assert_eq!(health_value(&store, "probe_success", &[]), Some(1.0));
    assert_eq!(
        health_value(&store, "probe_http_status_code", &[]),
        Some(200.0)
    );
    assert_eq!(
        health_value(&store, "health_check_ok", &[("check", "pdns")]),
        Some(1.0)
    );
    assert_eq!(
        health_value(&store, "probe_duration_seconds", &[]),
        Some(0.01)
    );
}

#[tokio::test]
async fn degraded_json_endpoint_names_the_failing_check() {
    let target = FakeTarget::start().await;
    target.set_health(503, HEALTH_DEGRADED);
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    let report = probe(target.base(), "/health", &store).await;
    // it answered, unhealthy
    assert!(report.up && !report.success);
    assert_eq!(
        report.error.as_deref(),
        Some("HTTP status 503; pdns: connection refused")
    );
    assert_eq!(health_value(&store, "up", &[]), Some(1.0));
    assert_eq!(health_value(&store, "probe_success", &[]), Some(0.0));
    assert_eq!(
        health_value(&store, "probe_http_status_code", &[]),
        Some(503.0)
    );
    assert_eq!(
        health_value(&store, "health_check_ok", &[("check", "database")]),
        Some(1.0)
    );
    assert_eq!(
        health_value(&store, "health_check_ok", &[("check", "pdns")]),
        Some(0.0)
    );
    // the failure text is kept for annotations
    let pdns = store
        .series(&[matcher(MatchOp::Equal, "check", "pdns")])
        .pop()
        .unwrap();
    assert_eq!(store.note(&pdns).as_deref(), Some("connection refused"));
}

#[tokio::test]
async fn a_check_that_disappears_goes_stale() {
    let target = FakeTarget::start().await;
    target.set_health(503, HEALTH_DEGRADED);
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    let mut checks = Default::default();
    probe_at(target.base(), "/health", &store, T0, &mut checks).await;
    let pdns = || {
        vec![
            matcher(MatchOp::Equal, "__name__", "health_check_ok"),
            matcher(MatchOp::Equal, "check", "pdns"),
        ]
    };
    assert_eq!(store.latest(&pdns(), T0, 60_000).unwrap()[0].2, 0.0);
    // the next probe reports no checks (an HTML body): the check's series ends
    target.route("/health", html());
    probe_at(target.base(), "/health", &store, T0 + 15_000, &mut checks).await;
    assert!(checks.checks.is_empty());
    let later = store.latest(&pdns(), T0 + 15_000, 60_000).unwrap();
    assert!(
        later.is_empty(),
        "a stale marker ends the series: {later:?}"
    );
    let raw = samples_of(&store, &pdns(), T0, T0 + 15_000);
    assert_eq!(raw.len(), 2);
    assert!(tocsin::store::is_stale(raw[1].1), "{raw:?}");
}

#[tokio::test]
async fn html_health_body_is_judged_by_status_code() {
    let target = FakeTarget::start().await;
    target.route("/health", html());
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    let report = probe(target.base(), "/health", &store).await;
    assert!(report.up, "{report:?}");
    // configured JSON fields cannot be read from HTML: said so, not silently skipped
    assert_eq!(
        report.error.as_deref(),
        Some("body is not JSON: configured fields unavailable")
    );
    assert!(report.checks.is_empty());
}

#[tokio::test]
async fn invalid_json_health_body_is_unhealthy_with_reason() {
    let target = FakeTarget::start().await;
    target.set_health(200, r#"{"status": "ok", "checks": {"#);
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    let report = probe(target.base(), "/health", &store).await;
    assert!(report.up && !report.success);
    assert!(
        report
            .error
            .as_deref()
            .unwrap()
            .starts_with("invalid JSON body: "),
        "{report:?}"
    );
    // the body was read: answered
    assert_eq!(health_value(&store, "up", &[]), Some(1.0));
    assert_eq!(health_value(&store, "probe_success", &[]), Some(0.0));
}

#[tokio::test]
async fn configured_json_fields_become_gauges() {
    let target = FakeTarget::start().await;
    target.set_health(200, STATUS_JSON);
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    let report = probe(target.base(), "/health", &store).await;
    assert!(report.up && report.error.is_none(), "{report:?}");
    assert_eq!(
        health_value(&store, "health_json_sync_success_rate", &[]),
        Some(0.93)
    );
    assert_eq!(health_value(&store, "connector_pending", &[]), Some(12.0));
}

#[tokio::test]
async fn an_unreachable_health_endpoint_is_down_with_status_zero() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    // a port bound and released: nothing listens there
    let base = format!("http://{}", free_addr());
    let report = probe(&base, "/health/ready", &store).await;
    assert!(!report.up && !report.success);
    assert!(
        report
            .error
            .as_deref()
            .unwrap()
            .starts_with("request failed"),
        "{report:?}"
    );
    assert_eq!(
        health_value(&store, "probe_http_status_code", &[]),
        Some(0.0)
    );
    assert_eq!(health_value(&store, "up", &[]), Some(0.0));
    assert_eq!(health_value(&store, "probe_success", &[]), Some(0.0));
}

/// The trust issue: a 200 whose body reports one failing check is an unhealthy endpoint that
/// answered, not an outage, and its reason names the check, not "HTTP status 200".
#[tokio::test]
async fn a_200_with_a_failing_check_is_up_and_unhealthy_naming_the_check() {
    let target = FakeTarget::start().await;
    target.set_health(200, HEALTH_DEGRADED);
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    let report = probe(target.base(), "/health", &store).await;
    assert!(report.up && !report.success, "{report:?}");
    let reason = report.error.as_deref().unwrap();
    assert!(reason.contains("pdns"), "{reason}");
    assert!(!reason.contains("HTTP status 200"), "{reason}");
    assert_eq!(reason, "pdns: connection refused");
    assert_eq!(health_value(&store, "up", &[]), Some(1.0));
    assert_eq!(health_value(&store, "probe_success", &[]), Some(0.0));
    assert_eq!(
        health_value(&store, "probe_http_status_code", &[]),
        Some(200.0)
    );
    assert_eq!(
        health_value(&store, "health_check_ok", &[("check", "pdns")]),
        Some(0.0)
    );
    assert_eq!(
        health_value(&store, "health_check_ok", &[("check", "database")]),
        Some(1.0)
    );
}

/// A target cannot rename a series or overwrite the scrape's own `up` through an exposed
/// `__name__`, nor give a label twice: the scrape fails as a whole with the line, as Prometheus's
/// does, and the series of the last good scrape end with staleness markers.
#[tokio::test]
async fn reserved_and_duplicate_label_names_fail_the_scrape() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    let t = scrape_target("http://127.0.0.1:9", "/metrics", None);
    let mut cache = new_cache(&t);
    cache
        .ingest(&store, "a 1\nb 2\n", Format::Text, T0, 100)
        .unwrap();
    for (body, want) in [
        (
            "a 1\nx{__name__=\"up\"} 0\n",
            "line 2, column 3: label name \"__name__\" is reserved",
        ),
        (
            "a 1\nb 2\nc{k=\"1\",k=\"2\"} 3\n",
            "line 3, column 9: duplicate label name \"k\"",
        ),
    ] {
        let err = cache
            .ingest(&store, body, Format::Text, T0 + 15_000, 100)
            .unwrap_err();
        assert!(err.to_string().contains(want), "{body:?}: {err}");
        assert!(matches!(err, ScrapeError::Parse(_)));
    }
    // nothing of the failed bodies was stored: no `up 0` from the target, no `c`
    assert!(
        store
            .latest(&name_is("up"), T0 + 15_000, 300_000)
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .latest(&name_is("c"), T0 + 15_000, 300_000)
            .unwrap()
            .is_empty()
    );
    // the failed scrape ends the last good scrape's series, as any failed scrape
    assert_eq!(cache.mark_all_stale(&store, T0 + 15_000), 2);
    // and the next good scrape works
    let report = cache
        .ingest(&store, "a 1\nb 2\n", Format::Text, T0 + 30_000, 100)
        .unwrap();
    assert_eq!(report.appended, 2);
}

// ---------------------------------------------------------------------------------------------
// label limits

#[test]
fn label_limits_are_read_from_scrape_defaults_and_targets() {
    let yaml = "scrape:\n  label_limit: 30\n  label_name_length_limit: 64\n  label_value_length_limit: 256\n\
                targets:\n  - name: a\n    metrics: http://127.0.0.1:9/metrics\n\
                \x20 - name: b\n    metrics: http://127.0.0.1:9/metrics\n    label_limit: 5\n    label_value_length_limit: 0\n";
    let targets = Config::from_yaml(yaml, std::path::Path::new("t.yml"))
        .unwrap()
        .build_targets(&Default::default())
        .unwrap();
    let limits = |t: &Target| {
        let l = t.label_limits;
        (
            l.label_limit,
            l.label_name_length_limit,
            l.label_value_length_limit,
        )
    };
    assert_eq!(limits(&targets[0]), (30, 64, 256));
    // a target overrides each one; 0 turns a default off
    assert_eq!(limits(&targets[1]), (5, 64, 0));
    // none set: no limit, as Prometheus
    let t = scrape_target("http://127.0.0.1:9", "/metrics", None);
    assert_eq!(limits(&t), (0, 0, 0));
    // a misspelt or negative setting is refused
    for bad in [
        "scrape:\n  label_limits: 3\n",
        "scrape:\n  label_limit: -1\n",
    ] {
        assert!(
            Config::from_yaml(bad, std::path::Path::new("t.yml")).is_err(),
            "{bad}"
        );
    }
}

/// A line with 100,000 labels under a `label_limit` fails cleanly: the limit's error, naming its
/// line, and nothing stored.
#[test]
fn a_line_with_100k_labels_fails_the_label_limit_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    let yaml =
        "targets:\n  - name: svc\n    metrics: http://127.0.0.1:9/metrics\n    label_limit: 30\n";
    let t = Config::from_yaml(yaml, std::path::Path::new("t.yml"))
        .unwrap()
        .build_targets(&Default::default())
        .unwrap()
        .remove(0);
    let mut cache = new_cache(&t).with_label_limits(t.label_limits);
    let pairs: Vec<String> = (0..100_000).map(|i| format!("l{i}=\"v\"")).collect();
    let body = format!("ok 1\nwide{{{}}} 1\n", pairs.join(","));
    let err = cache
        .ingest(&store, &body, Format::Text, T0, 1000)
        .unwrap_err();
    assert!(matches!(err, ScrapeError::LabelLimit(_)), "{err}");
    assert_eq!(
        err.to_string(),
        "line 2: label_limit of 30 exceeded by wide: 100003 labels (the metric name and the target's labels included)"
    );
    assert!(
        store
            .latest(&name_is("ok"), T0, 300_000)
            .unwrap()
            .is_empty()
    );
}

async fn wait_for_error(status: &tocsin::ingest::scheduler::StatusBoard, what: &str) -> String {
    let deadline = Deadline::within(format!("no scrape error with {what}"), WAIT)
        .every(Duration::from_millis(20));
    deadline
        .until_some(async || {
            status
                .endpoints
                .read()
                .unwrap()
                .get(&("svc".to_string(), "metrics"))
                .and_then(|e| e.last_error.clone())
                .filter(|e| e.contains(what))
        })
        .await
}

async fn wait_up(status: &tocsin::ingest::scheduler::StatusBoard) {
    let deadline = Deadline::within("no good scrape", WAIT).every(Duration::from_millis(20));
    deadline
        .until(|| {
            status
                .endpoints
                .read()
                .unwrap()
                .get(&("svc".to_string(), "metrics"))
                .is_some_and(|e| e.up == Some(true))
        })
        .await;
}

/// Each label limit fails a real scrape of the fake target through the scheduler: `up` 0, the
/// error names the limit, its value and the line, no series of the body is stored, and the series
/// of the last good scrape end with staleness markers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_label_limit_fails_a_real_scrape() {
    use std::sync::Arc;
    use tocsin::clock::SystemClock;

    let target = FakeTarget::start().await;
    let good = "# TYPE ok_metric gauge\nok_metric{a=\"1\"} 1\n";
    target.set_metrics(good);
    let base = target.base();
    // job, instance and __name__ count: 3 exposed labels fit in 6
    let yaml = format!(
        "scrape:\n  label_limit: 6\ntargets:\n  - name: svc\n    metrics: {base}/metrics\n    interval: 100ms\n    timeout: 100ms\n    label_name_length_limit: 12\n    label_value_length_limit: 20\n"
    );
    let running = start_scheduler(&yaml, Arc::new(SystemClock));
    let (store, status) = (running.store.clone(), running.status.clone());
    wait_up(&status).await;

    let cases = [
        (
            "ok_metric{a=\"1\"} 1\nbad_count{a=\"1\",b=\"2\",c=\"3\",d=\"4\"} 1\n",
            "line 2: label_limit of 6 exceeded by bad_count: 7 labels",
        ),
        (
            "ok_metric{a=\"1\"} 1\n\nbad_name{a_very_long_name=\"1\"} 1\n",
            "line 3: label_name_length_limit of 12 exceeded by bad_name: label name \"a_very_long_name\" is 16 bytes",
        ),
        (
            "ok_metric{a=\"1\"} 1\nbad_value{a=\"twenty-one characters\"} 1\n",
            "line 2: label_value_length_limit of 20 exceeded by bad_value: the value of label \"a\" is 21 bytes",
        ),
    ];
    for (body, want) in cases {
        target.set_metrics(good);
        wait_up(&status).await;
        target.set_metrics(body);
        let err = wait_for_error(&status, want).await;
        assert!(err.contains(want), "{err}");
        let now = tocsin::clock::Clock::now_ms(&SystemClock);
        // `up` 0, and the body's ok_metric ends with a staleness marker, not a new sample
        let up = store.latest(&name_is("up"), now + 1_000, 300_000).unwrap();
        assert_eq!(up.len(), 1);
        assert_eq!(up[0].2, 0.0, "{want}");
        assert!(
            store
                .latest(&name_is("ok_metric"), now + 1_000, 300_000)
                .unwrap()
                .is_empty(),
            "the failed scrape ends ok_metric"
        );
    }
    for bad in ["bad_count", "bad_name", "bad_value"] {
        assert!(
            store.select(&name_is(bad), 0, i64::MAX).unwrap().is_empty(),
            "{bad} was stored"
        );
    }
    running.stop().await;
}

/// The body's format is the response's: OpenMetrics (exemplars, float timestamps, `# EOF`) only
/// when served as `application/openmetrics-text`; and a body that is not UTF-8 fails naming the
/// line of its first bad byte.
#[tokio::test]
async fn the_format_follows_the_content_type_and_bad_utf8_names_its_line() {
    let target = FakeTarget::start().await;
    let om = "# TYPE a counter\na_total 5 # {trace_id=\"abc\"} 1.0\nb 2 1520879607.789\n# EOF\n";
    target.route(
        "/om",
        Reply::text(om).header(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    );
    target.route("/plain", Reply::text(om));
    target.route("/bin", Reply::bytes(b"a 1\nb{x=\"\xff\"} 2\n".to_vec()));
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    let t = scrape_target(target.base(), "/om", None);
    let mut cache = new_cache(&t);
    let mut scrape = async |path: &str| {
        let resp = fetch(&target.url(path), Duration::from_secs(5), 1 << 20)
            .await
            .unwrap();
        let body = tocsin::ingest::textparse::text_body(&resp.body)?;
        let format = Format::from_content_type(&resp.content_type);
        cache.ingest(&store, body, format, T0, 100)
    };
    assert_eq!(scrape("/om").await.unwrap().scraped, 2);
    let err = scrape("/plain").await.unwrap_err().to_string();
    assert!(
        err.contains("line 2, column 11: invalid timestamp \"#\""),
        "{err}"
    );
    let err = scrape("/bin").await.unwrap_err().to_string();
    assert_eq!(
        err,
        "malformed exposition: line 2, column 6: invalid utf-8 (byte 0xff)"
    );
}

/// The pdns connector's health shape: a status word, booleans, checks in an array; its fields
/// read by string, boolean, index and key paths, over real HTTP, into the store.
#[tokio::test]
async fn string_boolean_and_array_json_fields_become_series() {
    let target = FakeTarget::start().await;
    let base = target.base();
    let yaml = format!(
        "targets:
  - name: connector
    health: {base}/health
    health_json:
      - {{ field: status, metric: connector_status, states: [Healthy, Warning, Degraded] }}
      - {{ field: netbox.reachable }}
      - {{ field: 'checks[name=pdns].latency_ms', metric: pdns_latency_ms }}
      - {{ field: 'checks[0].ok', metric: first_check_ok }}
"
    );
    let t = Config::from_yaml(&yaml, std::path::Path::new("t.yml"))
        .unwrap()
        .build_targets(&Default::default())
        .unwrap()
        .remove(0);
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    let labels = scrape::health_base_labels(&t, t.health.as_ref().unwrap());
    let mut memory = tocsin::ingest::health::HealthMemory::default();
    let mut probe_with = async |body: &str, at: i64| {
        target.set_health(200, body);
        let result = fetch(&format!("{base}/health"), Duration::from_secs(5), 1 << 20).await;
        scrape::ingest_health(
            &store,
            &labels,
            at,
            0.01,
            &result,
            &t.health_json,
            &mut memory,
        )
    };
    let report = probe_with(
        r#"{"status":"Warning","netbox":{"reachable":true},"checks":[{"name":"netbox","ok":true},{"name":"pdns","ok":false,"latency_ms":250}]}"#,
        T0,
    )
    .await;
    // answered, unhealthy by its own word; the failing check says why
    assert!(report.up && !report.success, "{report:?}");
    assert!(
        report.error.as_deref().unwrap().starts_with("pdns: "),
        "{report:?}"
    );
    let state = |s: &str| health_value(&store, "connector_status", &[("state", s)]);
    assert_eq!(
        (state("Healthy"), state("Warning"), state("Degraded")),
        (Some(0.0), Some(1.0), Some(0.0))
    );
    assert_eq!(
        health_value(&store, "health_json_netbox_reachable", &[]),
        Some(1.0)
    );
    assert_eq!(health_value(&store, "pdns_latency_ms", &[]), Some(250.0));
    assert_eq!(health_value(&store, "first_check_ok", &[]), Some(1.0));
    assert_eq!(
        health_value(&store, "health_check_ok", &[("check", "pdns")]),
        Some(0.0)
    );
    // the status changes, a field disappears: the warning names it, the states follow
    let report = probe_with(r#"{"status":"Healthy","checks":[]}"#, T0 + 15_000).await;
    assert!(report.success, "{report:?}");
    assert_eq!(
        report.error.as_deref(),
        Some(
            r#"json fields: "netbox.reachable" missing, "checks[name=pdns].latency_ms" missing, "checks[0].ok" missing"#
        )
    );
    let state = |s: &str| {
        store
            .latest(
                &[
                    matcher(MatchOp::Equal, "__name__", "connector_status"),
                    matcher(MatchOp::Equal, "state", s),
                ],
                T0 + 15_000,
                1000,
            )
            .unwrap()
            .first()
            .map(|x| x.2)
    };
    assert_eq!(
        (state("Healthy"), state("Warning"), state("Degraded")),
        (Some(1.0), Some(0.0), Some(0.0))
    );
}

/// Prometheus 3's UTF-8 names end to end in the real binary: the scrape asks for them
/// (`escaping=allow-utf-8`), the parser reads `{"my.metric", "my.label"="v"}`, the store keeps
/// the names as written, the API serves them, and a rule's quoted selector matches and fires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quoted_utf8_names_are_scraped_stored_queried_and_alerted_on() {
    use std::sync::{Arc, Mutex};
    let accept = Arc::new(Mutex::new(String::new()));
    let seen = accept.clone();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let seen = seen.clone();
            async move {
                *seen.lock().unwrap() = headers
                    .get("accept")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                (
                    [(
                        "content-type",
                        "text/plain; version=1.0.0; escaping=allow-utf-8",
                    )],
                    "# HELP \"my.metric\" a dotted name\n# TYPE \"my.metric\" gauge\n\
                     {\"my.metric\", \"my.label\"=\"v\", code=\"200\"} 3\n\
                     legacy_total{\"ünï.code\"=\"x\"} 1\n",
                )
            }
        }),
    );
    let addr = serve(app).await;
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::in_dir(dir.path())
        .file(
            "rules.yml",
            "groups:\n  - name: utf8\n    interval: 1s\n    rules:\n      - alert: Dotted\n        \
             expr: '{\"my.metric\", \"my.label\"=\"v\"} > 2'\n        annotations:\n          \
             summary: '{{ $labels.code }} {{ index $labels \"my.label\" }}'\n",
        )
        .config(&format!(
            "rule_files: [rules.yml]\nscrape: {{ interval: 1s, timeout: 1s }}\n\
             targets:\n  - name: svc\n    metrics: http://{addr}/metrics\n"
        ))
        .start();
    let alerts = d
        .wait_json("/api/v1/alerts", Duration::from_secs(30), |v| {
            v["data"]["alerts"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        })
        .await;
    let alert = &alerts["data"]["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "Dotted");
    assert_eq!(alert["labels"]["my.label"], "v");
    assert_eq!(alert["annotations"]["summary"], "200 v");
    assert!(
        accept
            .lock()
            .unwrap()
            .starts_with("text/plain;version=1.0.0;escaping=allow-utf-8"),
        "{}",
        accept.lock().unwrap()
    );

    let q = |query: &str| {
        let q: String = url::form_urlencoded::byte_serialize(query.as_bytes()).collect();
        format!("/api/v1/query?query={q}")
    };
    let v = d.get_json(&q(r#"{"ünï.code"="x"}"#)).await;
    let result = &v["data"]["result"];
    assert_eq!(result.as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(result[0]["metric"]["__name__"], "legacy_total");
    assert_eq!(result[0]["metric"]["job"], "svc");
    let v = d.get_json(&q(r#"{"my.metric", code="200"}"#)).await;
    let result = &v["data"]["result"];
    assert_eq!(result.as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(result[0]["metric"]["__name__"], "my.metric");
    assert_eq!(result[0]["metric"]["my.label"], "v");
    assert_eq!(result[0]["value"][1], "3");
}

/// A raw server whose first answer is a whole body, and every later one promises 1 MB and closes
/// after 64 KB of new series, the last line cut.
async fn serve_good_then_cut() -> String {
    let addr = serve_raw(|n| {
        let (length, body) = if n == 0 {
            let body = "good_metric 1\n".to_string();
            (body.len(), body)
        } else {
            let lines: String = (0..3000).map(|i| format!("partial_{i} {i}\n")).collect();
            (1 << 20, lines[..64 << 10].to_string())
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\ncontent-length: {length}\r\n\r\n"
        );
        (head, body)
    })
    .await;
    format!("http://{addr}")
}

/// The scheduler parses a body as it arrives; one that breaks off after many pieces fails the
/// scrape as a whole: `up` 0 with the reason, none of the series that arrived is stored, and
/// the last good scrape's series end with a staleness marker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_breaks_off_after_many_pieces_stores_none_of_them() {
    use tocsin::clock::SystemClock;

    let base = serve_good_then_cut().await;
    let yaml = format!(
        "targets:\n  - name: svc\n    metrics: {base}/metrics\n    interval: 1s\n    timeout: 1s\n"
    );
    let running = start_scheduler(&yaml, std::sync::Arc::new(SystemClock));
    let (store, status) = (running.store.clone(), running.status.clone());
    let err = wait_for_error(&status, "request failed").await;
    assert!(err.contains("request failed"), "{err}");
    let now = tocsin::clock::Clock::now_ms(&SystemClock);
    let up = store.latest(&name_is("up"), now + 1_000, 300_000).unwrap();
    assert_eq!(up[0].2, 0.0);
    let good = samples_of(&store, &name_is("good_metric"), 0, i64::MAX);
    assert_eq!(
        good.len(),
        2,
        "one sample, then its staleness marker: {good:?}"
    );
    assert_eq!(good[0].1, 1.0);
    assert!(tocsin::store::chunk::is_stale(good[1].1));
    let partial = store
        .series(&[matcher(MatchOp::Regex, "__name__", "partial_.*")])
        .len();
    assert_eq!(partial, 0, "series of the cut body were stored");
    running.stop().await;
}

/// A raw server answering every request with `body` and no length: the body ends when the
/// connection closes, so only the bytes read count against a size limit.
async fn serve_unannounced(body: String) -> String {
    let addr = serve_raw(move |_| {
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n";
        (head.to_string(), body.clone())
    })
    .await;
    format!("http://{addr}/metrics")
}

/// Through the scheduler, a body over the target's `body_size_limit` fails the scrape, whether
/// its length is announced or not, its lines short or one line without an end (the start of a
/// line waits for its end, within the limit): `up` 0, the limit named, nothing stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_body_over_the_size_limit_fails_and_stores_nothing() {
    use tocsin::clock::SystemClock;

    let target = FakeTarget::start().await;
    let lines: String = (0..5000).map(|i| format!("many_{i} {i}\n")).collect();
    let one = format!("one_line{{a=\"{}\"}} 1", "x".repeat(200_000));
    target.route("/lines", Reply::text(lines.clone()));
    let urls = [
        target.url("/lines"),
        serve_unannounced(lines).await,
        serve_unannounced(one).await,
    ];
    for url in urls {
        let yaml = format!(
            "targets:\n  - name: svc\n    metrics: {url}\n    interval: 1s\n    timeout: 1s\n    body_size_limit: 16KiB\n"
        );
        let running = start_scheduler(&yaml, std::sync::Arc::new(SystemClock));
        let err = wait_for_error(&running.status, "body_size_limit").await;
        assert!(err.contains("16384"), "{url}: {err}");
        let stored =
            running
                .store
                .series(&[matcher(MatchOp::Regex, "__name__", "many_.*|one_line")]);
        assert!(stored.is_empty(), "{url}: {} series stored", stored.len());
        running.stop().await;
    }
}
