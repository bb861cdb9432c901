//! Remote write out (`remote_write:` in tocsin.yml) against Debian's real engines,
//! `victoria-metrics` (1.79.5) and `prometheus` (2.42, `--web.enable-remote-write-receiver`),
//! each started by the test on a loopback port (the helpers of `datasource.rs`), and against a
//! loopback receiver the test scripts (503, 429, 400).
//!
//! - The closed loop: tocsin scrapes a target, remote-writes to both engines, and rule groups
//!   with `datasource:` on each engine fire on the written series (with `external_labels`).
//! - A receiver down for a while, then tocsin killed (-9) in the middle of a backlog: afterwards
//!   VictoriaMetrics holds every sample tocsin stored, with the same values, none twice with
//!   another value.
//! - 503 and 429 are retried (the same request again, `Retry-After` honoured); 400 drops the
//!   request with a counted error and the queue moves on.
//! - `tocsin run --dry-run` queues and sends nothing.
//!
//! A test whose binary is absent prints `skipping: …` and passes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::common::{Daemon, Deadline, FakeTarget, installed, on_path, serve};
use crate::datasource::{prometheus, victoria_metrics, victoria_metrics_on};

/// Serves `demo_seq N` with N going up by one every 100 ms, until the test ends.
fn counting_target(target: &Arc<FakeTarget>) -> tokio::task::JoinHandle<()> {
    let t = target.clone();
    tokio::spawn(async move {
        let mut n = 0u64;
        loop {
            t.set_metrics(&format!("# TYPE demo_seq gauge\ndemo_seq {n}\n"));
            n += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// tocsin scraping `target` every 250 ms, flushing every second, remote-writing to `remotes`
/// (name, url).
fn config(target: &str, remotes: &[(&str, String)], extra: &str) -> String {
    let mut out = format!(
        "scrape: {{ interval: 250ms, timeout: 250ms, self_metrics: false }}\nstorage: {{ flush_interval: 1s }}\n\
         evaluation: {{ interval: 1s }}\nexternal_labels: {{ replica: a }}\n\
         targets:\n  - name: svc\n    metrics: {target}/metrics\n{extra}remote_write:\n"
    );
    for (name, url) in remotes {
        out.push_str(&format!(
            "  - name: {name}\n    url: {url}\n    timeout: 2s\n    \
             queue: {{ min_backoff: 50ms, max_backoff: 500ms, batch_send_deadline: 500ms, max_samples_per_send: 50 }}\n"
        ));
    }
    out
}

/// Every sample of `demo_seq` tocsin stored, (ms, value), through its query API.
async fn tocsin_samples(daemon: &Daemon) -> BTreeMap<i64, f64> {
    let v = daemon
        .get_json("/api/v1/query?query=demo_seq%5B1h%5D")
        .await;
    let mut out = BTreeMap::new();
    for s in v["data"]["result"].as_array().into_iter().flatten() {
        for p in s["values"].as_array().into_iter().flatten() {
            let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
            out.insert(t, p[1].as_str().unwrap().parse().unwrap());
        }
    }
    out
}

/// Every raw sample of `demo_seq` VictoriaMetrics holds, (ms, value) with each timestamp's
/// values (after a flush of its buffers), and the series' labels.
async fn vm_samples(vm_url: &str) -> (BTreeMap<i64, Vec<f64>>, Value) {
    let client = reqwest::Client::new();
    let _ = client
        .get(format!("{vm_url}/internal/force_flush"))
        .send()
        .await;
    let text = client
        .get(format!("{vm_url}/api/v1/export?match[]=demo_seq"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut out: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    let mut metric = Value::Null;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap();
        metric = v["metric"].clone();
        let ts = v["timestamps"].as_array().unwrap();
        let vals = v["values"].as_array().unwrap();
        for (t, val) in ts.iter().zip(vals) {
            out.entry(t.as_i64().unwrap())
                .or_default()
                .push(val.as_f64().unwrap_or(f64::NAN));
        }
    }
    (out, metric)
}

/// Waits until VictoriaMetrics holds every sample tocsin stored up to a time after `after`
/// (ms), then checks they agree: same timestamps, same values, no timestamp with two values.
/// Returns the times of the samples compared.
async fn assert_vm_has_everything(daemon: &Daemon, vm_url: &str, after: i64) -> Vec<i64> {
    let deadline = Deadline::within("victoria-metrics catching up", Duration::from_secs(60))
        .every(Duration::from_millis(500));
    loop {
        let ours = tocsin_samples(daemon).await;
        let (theirs, _) = vm_samples(vm_url).await;
        let upto = theirs.keys().next_back().copied().unwrap_or(i64::MIN);
        if upto > after {
            let ours: BTreeMap<i64, f64> = ours.into_iter().filter(|(t, _)| *t <= upto).collect();
            let missing: Vec<i64> = ours
                .keys()
                .filter(|t| !theirs.contains_key(t))
                .copied()
                .collect();
            assert!(
                missing.is_empty(),
                "{} of {} samples missing in victoria-metrics, first {:?}",
                missing.len(),
                ours.len(),
                &missing[..missing.len().min(5)]
            );
            for (t, vals) in &theirs {
                assert!(
                    vals.iter().all(|v| *v == vals[0]),
                    "timestamp {t} with different values {vals:?}"
                );
                if let Some(v) = ours.get(t) {
                    assert_eq!(*v, vals[0], "value at {t}");
                }
            }
            return ours.into_keys().collect();
        }
        deadline.tick().await;
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn alerts_firing(v: &Value, alertname: &str) -> usize {
    v["data"]["alerts"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|a| a["labels"]["alertname"] == alertname && a["state"] == "firing")
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_written_series_fire_rules_on_victoria_metrics_and_prometheus() {
    let (Some(vm_bin), Some(prom_bin)) = (on_path("victoria-metrics"), on_path("prometheus"))
    else {
        println!(
            "skipping: victoria-metrics or prometheus not installed (apt install victoria-metrics prometheus)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let vm = victoria_metrics(&vm_bin, dir.path()).await;
    let prom = prometheus(&prom_bin, dir.path(), "prom-data", None).await;
    let target = Arc::new(FakeTarget::start().await);
    let _counter = counting_target(&target);
    let rules = concat!(
        "groups:\n",
        "  - name: on-vm\n    datasource: vm\n    interval: 1s\n    rules:\n",
        "      - alert: SeqOnVm\n        expr: demo_seq{replica=\"a\", job=\"svc\"} > 20\n",
        "  - name: on-prom\n    datasource: prom\n    interval: 1s\n    rules:\n",
        "      - alert: SeqOnProm\n        expr: demo_seq{replica=\"a\", job=\"svc\"} > 20\n",
    );
    let datasources = format!(
        "rule_files: [rules.yml]\ndatasources:\n  - name: vm\n    type: prometheus\n    url: {}\n  \
         - name: prom\n    type: prometheus\n    url: {}\n    query_offset: 1s\n",
        vm.url(),
        prom.url()
    );
    let daemon = Daemon::in_dir(dir.path())
        .file("rules.yml", rules)
        .config(&config(
            target.base(),
            &[
                ("vm", format!("{}/api/v1/write", vm.url())),
                ("prom", format!("{}/api/v1/write", prom.url())),
            ],
            &datasources,
        ))
        .start();
    daemon.wait_ready().await;
    // each engine answers the rule with the series tocsin wrote to it: both alerts fire
    daemon
        .wait_json("/api/v1/alerts", Duration::from_secs(60), |v| {
            alerts_firing(v, "SeqOnVm") == 1 && alerts_firing(v, "SeqOnProm") == 1
        })
        .await;
    for remote in ["vm", "prom"] {
        let sent = daemon
            .metric(&format!(
                "tocsin_remote_write_samples_sent_total{{remote=\"{remote}\"}}"
            ))
            .await;
        assert!(sent > 0.0, "{remote}: {sent} samples sent");
    }
    // the series as written: tocsin's target labels and the external label
    let (_, metric) = vm_samples(&vm.url()).await;
    assert_eq!(metric["job"], "svc", "{metric}");
    assert_eq!(metric["replica"], "a", "{metric}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_and_a_killed_tocsin_lose_no_sample() {
    let Some(vm_bin) = installed("victoria-metrics", "victoria-metrics") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let vm_dir = dir.path().join("vm");
    std::fs::create_dir_all(&vm_dir).unwrap();
    let mut vm = victoria_metrics(&vm_bin, &vm_dir).await;
    let vm_addr: SocketAddr = vm.addr;
    let vm_url = vm.url();
    let target = Arc::new(FakeTarget::start().await);
    let _counter = counting_target(&target);
    let mut daemon = Daemon::in_dir(dir.path())
        .config(&config(
            target.base(),
            &[("vm", format!("{vm_url}/api/v1/write"))],
            "",
        ))
        .start();
    daemon.wait_ready().await;
    let pending = "tocsin_remote_write_samples_pending{remote=\"vm\"}";
    assert_vm_has_everything(&daemon, &vm_url, now_ms()).await;

    // the receiver goes away for a while: the backlog grows, scraping goes on
    let down_from = now_ms();
    vm.terminate();
    daemon
        .wait_metric(pending, 100.0, Duration::from_secs(30))
        .await;
    assert!(
        daemon
            .metric("tocsin_remote_write_samples_failed_total{remote=\"vm\",reason=\"network\"}")
            .await
            > 0.0
    );
    let lag = daemon
        .metric("tocsin_remote_write_lag_seconds{remote=\"vm\"}")
        .await;
    assert!(lag > 0.0, "lag {lag} while the receiver is down");
    let down_until = now_ms();
    let vm = victoria_metrics_on(&vm_bin, &vm_dir, vm_addr).await;
    let times = assert_vm_has_everything(&daemon, &vm.url(), down_until).await;
    let during = times
        .iter()
        .filter(|t| (down_from..down_until).contains(t))
        .count();
    assert!(
        during > 10,
        "{during} samples scraped while the receiver was down"
    );

    // down again, and tocsin killed in the middle of the backlog: its restart resumes
    let mut vm = vm;
    let down_from = now_ms();
    vm.terminate();
    daemon
        .wait_metric(pending, 100.0, Duration::from_secs(30))
        .await;
    daemon.kill_9();
    let down_until = now_ms();
    let vm = victoria_metrics_on(&vm_bin, &vm_dir, vm_addr).await;
    let daemon = daemon.start_again();
    daemon.wait_ready().await;
    let times = assert_vm_has_everything(&daemon, &vm.url(), now_ms()).await;
    let during = times
        .iter()
        .filter(|t| (down_from..down_until).contains(t))
        .count();
    assert!(during > 10, "{during} samples of the backlog at the kill");
    assert_eq!(
        daemon
            .metric("tocsin_remote_write_samples_dropped_total{remote=\"vm\",reason=\"backlog\"}")
            .await,
        0.0
    );
}

/// One request the scripted receiver got: its headers and what it held.
#[derive(Debug, Clone)]
struct Received {
    status: u16,
    encoding: String,
    content_type: String,
    version: String,
    user_agent: String,
    /// (series name, first sample time) of each series
    first: Vec<(String, i64)>,
    samples: usize,
}

/// A remote write receiver answering each request with the next status of its script (200
/// once the script is used up); a 429 says `Retry-After: 1`; [`HANG`] never answers;
/// [`HUGE_500`] is a 500 with a 32 MiB body.
const HANG: u16 = 999;
const HUGE_500: u16 = 599;

async fn scripted_receiver(script: Vec<u16>) -> (String, Arc<Mutex<Vec<Received>>>) {
    use prost::Message;
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let script = Arc::new(Mutex::new(std::collections::VecDeque::from(script)));
    let (g, s) = (got.clone(), script.clone());
    let app = axum::Router::new().route(
        "/write",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let (g, s) = (g.clone(), s.clone());
                async move {
                    let h = |n: &str| {
                        headers
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string()
                    };
                    let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
                    let req = tocsin::remotewrite::WriteRequest::decode(raw.as_slice()).unwrap();
                    let status = s.lock().unwrap().pop_front().unwrap_or(200);
                    g.lock().unwrap().push(Received {
                        status,
                        encoding: h("content-encoding"),
                        content_type: h("content-type"),
                        version: h("x-prometheus-remote-write-version"),
                        user_agent: h("user-agent"),
                        first: req
                            .timeseries
                            .iter()
                            .map(|ts| {
                                let name = ts
                                    .labels
                                    .iter()
                                    .find(|l| l.name == "__name__")
                                    .map(|l| l.value.clone())
                                    .unwrap_or_default();
                                (name, ts.samples[0].timestamp)
                            })
                            .collect(),
                        samples: req.timeseries.iter().map(|t| t.samples.len()).sum(),
                    });
                    if status == HANG {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    let (status, body) = match status {
                        HUGE_500 => (500, vec![b'x'; 32 << 20]),
                        400 => (400, b"bad sample".to_vec()),
                        s => (s, Vec::new()),
                    };
                    let mut resp = axum::response::Response::new(axum::body::Body::from(body));
                    *resp.status_mut() = axum::http::StatusCode::from_u16(status).unwrap();
                    if status == 429 {
                        resp.headers_mut()
                            .insert("retry-after", axum::http::HeaderValue::from_static("1"));
                    }
                    resp
                }
            },
        ),
    );
    let addr = serve(app).await;
    (format!("http://{addr}/write"), got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_retried_and_refused_samples_are_dropped_with_a_counted_error() {
    let target = Arc::new(FakeTarget::start().await);
    let _counter = counting_target(&target);
    // the first request: 503, 503, then 429 (Retry-After: 1), then accepted; the next refused
    let (url, got) = scripted_receiver(vec![503, 503, 429, 200, 400]).await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::in_dir(dir.path())
        .config(&config(target.base(), &[("edge", url)], ""))
        .start();
    daemon.wait_ready().await;
    Deadline::within("six requests", Duration::from_secs(30))
        .until(|| got.lock().unwrap().len() >= 6)
        .await;
    let got = got.lock().unwrap().clone();
    let r0 = &got[0];
    assert_eq!(
        (
            r0.encoding.as_str(),
            r0.content_type.as_str(),
            r0.version.as_str()
        ),
        ("snappy", "application/x-protobuf", "0.1.0")
    );
    assert!(r0.user_agent.starts_with("tocsin/"), "{}", r0.user_agent);
    // the retried request is the same one until it is accepted
    for r in &got[1..4] {
        assert_eq!(r.first, r0.first, "{got:#?}");
    }
    // the refused request is dropped: the next one carries later samples
    assert_eq!(got[4].status, 400);
    assert_ne!(got[5].first, got[4].first, "{got:#?}");
    let m = |s: &str| format!("tocsin_remote_write_samples_{s}");
    let failed_5xx = daemon
        .metric(&m("failed_total{remote=\"edge\",reason=\"http_5xx\"}"))
        .await;
    assert_eq!(failed_5xx, 2.0 * r0.samples as f64);
    assert_eq!(
        daemon
            .metric(&m("failed_total{remote=\"edge\",reason=\"http_429\"}"))
            .await,
        r0.samples as f64
    );
    assert_eq!(
        daemon
            .metric(&m("dropped_total{remote=\"edge\",reason=\"rejected\"}"))
            .await,
        got[4].samples as f64
    );
    let stderr = format!("{}{}", daemon.stdout(), daemon.stderr());
    assert!(
        stderr.contains("remote write receiver refused samples"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("/write"),
        "the URL is never logged: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_over_its_bound_drops_its_oldest_samples_with_a_counted_error() {
    let target = Arc::new(FakeTarget::start().await);
    let _counter = counting_target(&target);
    // a receiver that never recovers
    let (url, got) = scripted_receiver(vec![503; 100_000]).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(target.base(), &[("dead", url)], "").replace(
        "max_samples_per_send: 50 }",
        "max_samples_per_send: 50, max_pending_samples: 60 }",
    );
    let daemon = Daemon::in_dir(dir.path()).config(&cfg).start();
    daemon.wait_ready().await;
    let dropped = "tocsin_remote_write_samples_dropped_total{remote=\"dead\",reason=\"backlog\"}";
    daemon
        .wait_metric(dropped, 60.0, Duration::from_secs(30))
        .await;
    // what waits stays within the bound; scraping went on all along
    let pending = daemon
        .metric("tocsin_remote_write_samples_pending{remote=\"dead\"}")
        .await;
    assert!(pending <= 60.0, "{pending} pending");
    assert!(!got.lock().unwrap().is_empty());
    let log = format!("{}{}", daemon.stdout(), daemon.stderr());
    assert!(
        log.contains("remote write backlog over its bound"),
        "the drop is logged: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_times_out_and_a_huge_error_answer_is_not_read() {
    let target = Arc::new(FakeTarget::start().await);
    let _counter = counting_target(&target);
    let (url, got) = scripted_receiver(vec![HANG, HUGE_500]).await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::in_dir(dir.path())
        .config(&config(target.base(), &[("edge", url)], ""))
        .start();
    daemon.wait_ready().await;
    let sent = "tocsin_remote_write_samples_sent_total{remote=\"edge\"}";
    daemon.wait_metric(sent, 1.0, Duration::from_secs(30)).await;
    let got = got.lock().unwrap().clone();
    // the same request each time: after the timeout (2 s), after the 500, then accepted
    assert!(got.len() >= 3, "{got:#?}");
    assert_eq!(got[1].first, got[0].first);
    assert_eq!(got[2].first, got[0].first);
    let m = |reason: &str| {
        format!("tocsin_remote_write_samples_failed_total{{remote=\"edge\",reason=\"{reason}\"}}")
    };
    assert_eq!(daemon.metric(&m("timeout")).await, got[0].samples as f64);
    assert_eq!(daemon.metric(&m("http_5xx")).await, got[0].samples as f64);
}

/// `queue.max_age` (by default `storage.retention`): queued batches whose newest sample is
/// older are dropped, counted as `too_old` and logged as a warning; younger samples queued
/// behind them still go out. The age comes from the samples' own timestamps (pushed two hours
/// back, against a one-hour retention), not from waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_older_than_the_retention_are_dropped_with_a_counted_warning() {
    let (url, got) = scripted_receiver(vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::in_dir(dir.path())
        .config(&format!(
            "scrape: {{ self_metrics: false }}\nstorage: {{ flush_interval: 1s, retention: 1h }}\n\
             remote_write:\n  - name: edge\n    url: {url}\n    \
             queue: {{ min_backoff: 50ms, max_backoff: 500ms, batch_send_deadline: 500ms }}\n"
        ))
        .start();
    daemon.wait_ready().await;
    let push = async |body: String| {
        let r = reqwest::Client::new()
            .post(daemon.url("/api/v1/import/prometheus"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    };
    let old = now_ms() - 2 * 3_600_000;
    push(format!(
        "demo_old{{i=\"1\"}} 1 {old}\ndemo_old{{i=\"2\"}} 2 {}\n",
        old + 1_000
    ))
    .await;
    let dropped = "tocsin_remote_write_samples_dropped_total{remote=\"edge\",reason=\"too_old\"}";
    daemon
        .wait_metric(dropped, 2.0, Duration::from_secs(30))
        .await;
    push(format!("demo_new 3 {}\n", now_ms())).await;
    Deadline::within("demo_new at the receiver", Duration::from_secs(30))
        .until(|| {
            got.lock()
                .unwrap()
                .iter()
                .any(|r| r.first.iter().any(|(n, _)| n == "demo_new"))
        })
        .await;
    let got = got.lock().unwrap().clone();
    assert!(
        got.iter()
            .all(|r| r.first.iter().all(|(n, _)| n != "demo_old")),
        "an expired sample was sent: {got:#?}"
    );
    assert_eq!(daemon.metric(dropped).await, 2.0);
    let log = format!("{}{}", daemon.stdout(), daemon.stderr());
    assert!(
        log.contains("remote write backlog older than its max_age") && log.contains("WARN"),
        "the drop is logged as a warning: {log}"
    );
}

/// The age bound in-process, on the writer's injected clock: with the receiver down, two batches
/// wait (one 10 minutes old, one 30 minutes ahead of the clock); nothing is too old under a
/// 1 h `max_age` until the manual clock moves 66 minutes on, then the older batch alone is
/// dropped as `too_old` while the writer keeps retrying the younger one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_age_bound_follows_the_injected_clock() {
    use tocsin::clock::ManualClock;
    use tocsin::store::RW_SCRAPED;
    let (url, got) = scripted_receiver(vec![503; 100_000]).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(crate::common::open_store(&dir));
    store.rw_configure(&["edge".into()], RW_SCRAPED).unwrap();
    let t0: i64 = 1_800_000_000_000;
    let (m, h) = (60_000, 3_600_000);
    let series = store.series_ref(crate::common::labels(&[("__name__", "demo_age")]));
    for t in [t0 - 10 * m, t0 + 30 * m] {
        store.append(&[(series, t, 1.0)]);
        store.flush(t).unwrap();
    }
    let cfg = tocsin::config::Config::from_yaml(
        &format!(
            "remote_write:\n  - name: edge\n    url: {url}\n    \
             queue: {{ max_age: 1h, min_backoff: 10ms, max_backoff: 50ms }}\n"
        ),
        std::path::Path::new("t.yml"),
    )
    .unwrap();
    let rw = cfg
        .build_remote_writes(&Default::default())
        .unwrap()
        .remove(0);
    let clock = Arc::new(ManualClock::new(t0));
    let metrics = Arc::new(tocsin::selfmetrics::SelfMetrics::new(0.0));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let writer = tocsin::remotewrite::RemoteWriter {
        rw,
        store: store.clone(),
        clock: clock.clone(),
        metrics: metrics.clone(),
        external_labels: Default::default(),
    };
    let task = tokio::spawn(writer.run(stopped));
    let metric = |name: &str| crate::common::metric_value(&metrics.encode(), name);
    let too_old = "tocsin_remote_write_samples_dropped_total{remote=\"edge\",reason=\"too_old\"}";
    let pending = "tocsin_remote_write_samples_pending{remote=\"edge\"}";
    // a few retries of the first batch at t0: nothing is too old
    Deadline::within("three attempts at t0", Duration::from_secs(30))
        .until(|| got.lock().unwrap().len() >= 3)
        .await;
    assert_eq!(metric(too_old), 0.0);
    assert_eq!(metric(pending), 2.0);
    // 66 minutes on: the batch from t0 - 10 m is past the hour, the other is not
    clock.set(t0 + h + 6 * m);
    Deadline::within("the old batch dropped", Duration::from_secs(30))
        .until(|| metric(too_old) == 1.0)
        .await;
    Deadline::within("the young batch retried", Duration::from_secs(30))
        .until(|| {
            got.lock()
                .unwrap()
                .last()
                .is_some_and(|r| r.first == vec![("demo_age".to_string(), t0 + 30 * m)])
        })
        .await;
    assert_eq!(metric(pending), 1.0);
    assert_eq!(metric(too_old), 1.0);
    stop.send(true).unwrap();
    task.await.unwrap();
}

/// `tocsin run --dry-run` writes to no remote: no request while it stores samples, and nothing
/// queued, so the live run after it on the same store sends only samples of its own, from after
/// its start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_queues_and_sends_nothing() {
    let target = Arc::new(FakeTarget::start().await);
    let _counter = counting_target(&target);
    let (url, got) = scripted_receiver(Vec::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = config(target.base(), &[("edge", url)], "");
    let mut shadow = Daemon::in_dir(dir.path())
        .config(&yaml)
        .arg("--dry-run")
        .start();
    shadow.wait_ready().await;
    // three flushes of stored samples: a live run sends each within half a second
    // (`batch_send_deadline`)
    shadow
        .wait_metric(
            "tocsin_store_flush_seconds_count",
            3.0,
            Duration::from_secs(30),
        )
        .await;
    assert!(!tocsin_samples(&shadow).await.is_empty());
    assert_eq!(got.lock().unwrap().len(), 0, "a dry run sent samples");
    let log = format!("{}{}", shadow.stdout(), shadow.stderr());
    assert!(
        log.contains("dry run: remote write is off, nothing is queued or sent"),
        "{log}"
    );
    assert!(shadow.terminate().await.success());
    let live_from = now_ms();
    let live = Daemon::in_dir(dir.path()).config(&yaml).start();
    live.wait_ready().await;
    Deadline::within("the live run's first request", Duration::from_secs(30))
        .until(|| !got.lock().unwrap().is_empty())
        .await;
    let first: Vec<(String, i64)> = got.lock().unwrap()[0].first.clone();
    assert!(
        first.iter().all(|(_, t)| *t >= live_from),
        "the live run sent samples of the dry run (before {live_from}): {first:?}"
    );
}
