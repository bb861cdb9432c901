//! Pushed samples (`POST /api/v1/import/prometheus`), heartbeat targets (`POST
//! /api/v1/heartbeat/{name}`, the dead-man's switch) and `tocsin scrape` on a health endpoint:
//! the real binary over real HTTP, and the scheduler's heartbeat task under paused time.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use crate::common::*;
use tocsin::clock::{Clock, TokioClock};
use tocsin::config::Config;
use tocsin::ingest::scheduler::{Scheduler, StatusBoard};
use tocsin::labels::MatchOp;
use tocsin::selfmetrics::SelfMetrics;

const TOKEN: &str = "push-s3cret";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The daemon of the push tests: a heartbeat target, the shipped dead-man's-switch rule,
/// small limits so the bad-input cases stay small.
fn push_daemon(dir: &std::path::Path) -> Daemon {
    let rules = project_dir().join("rules/heartbeat.yml");
    Daemon::in_dir(dir)
        .config(&format!(
            "scrape: {{ sample_limit: 100, label_limit: 8, self_metrics: false }}
evaluation: {{ interval: 1s }}
targets:
  - name: nightly
    labels: {{ service: backup }}
    interval: 1s
    heartbeat: {{ expected_interval: 3s, grace: 500ms }}
rule_files: [{}]
server: {{ api_token_env: TOKEN, push_body_size_limit: 64KiB }}
",
            rules.display()
        ))
        .env("TOKEN", TOKEN)
        .start()
}

async fn post(
    d: &Daemon,
    path: &str,
    token: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (u16, String) {
    let mut req = reqwest::Client::new().post(d.url(path)).body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// The result vector of an instant query.
async fn query(d: &Daemon, q: &str) -> Vec<Value> {
    let v = d
        .get_json(&format!(
            "/api/v1/query?query={}",
            url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
        ))
        .await;
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// The heartbeat target as `/api/v1/targets` lists it.
async fn heartbeat_target(d: &Daemon) -> Value {
    let v = d.get_json("/api/v1/targets").await;
    v["data"]["activeTargets"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["kind"] == "heartbeat")
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_samples_are_stored_and_check_in_the_heartbeat_the_dead_mans_switch_fires_on_silence()
 {
    let dir = tempfile::tempdir().unwrap();
    let d = push_daemon(dir.path());
    d.wait_ready().await;

    // a push with its job and instance as extra labels, one sample with its own timestamp
    let ts = now_ms() - 1_000;
    let body = format!(
        "# TYPE backup_bytes gauge\nbackup_bytes{{kind=\"full\"}} 42 {ts}\nbackup_last_success_timestamp_seconds 1.7e9\n"
    );
    let (code, text) = post(
        &d,
        "/api/v1/import/prometheus?extra_label=job=nightly&extra_label=instance=host1",
        Some(TOKEN),
        body,
    )
    .await;
    assert_eq!(code, 204, "{text}");
    let got = query(&d, "backup_bytes").await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["metric"]["job"], "nightly");
    assert_eq!(got[0]["metric"]["instance"], "host1");
    assert_eq!(got[0]["metric"]["kind"], "full");
    assert_eq!(got[0]["value"][1], "42");
    let stamped = query(&d, "timestamp(backup_bytes)").await;
    assert_eq!(
        stamped[0]["value"][1]
            .as_str()
            .unwrap()
            .parse::<f64>()
            .unwrap(),
        ts as f64 / 1000.0
    );
    // the push checked the heartbeat target in: up, with its check-in time
    let t = Deadline::within("the heartbeat target up after the push", WAIT)
        .until_some(async || {
            let t = heartbeat_target(&d).await;
            (t["health"] == "up").then_some(t)
        })
        .await;
    assert_eq!(t["labels"]["job"], "nightly");
    assert_eq!(t["labels"]["probe"], "heartbeat");
    assert_eq!(t["scrapeUrl"], "/api/v1/heartbeat/nightly");
    assert_eq!(
        query(
            &d,
            "tocsin_heartbeat_expected_interval_seconds{job=\"nightly\"}"
        )
        .await[0]["value"][1],
        "3"
    );
    assert!(
        !query(
            &d,
            "tocsin_heartbeat_last_seen_timestamp_seconds{service=\"backup\"}"
        )
        .await
        .is_empty()
    );

    // silence: down once 3.5s pass without a check-in, with the reason, and the shipped
    // dead-man's-switch alert fires
    let t = Deadline::within("the heartbeat target down after its silence", WAIT)
        .until_some(async || {
            let t = heartbeat_target(&d).await;
            (t["health"] == "down").then_some(t)
        })
        .await;
    let reason = t["lastError"].as_str().unwrap();
    assert!(
        reason.contains("longer than the expected interval 3s + grace 500ms"),
        "{reason}"
    );
    let alert = d
        .wait_json("/api/v1/alerts", WAIT, |v| {
            v["data"]["alerts"].as_array().is_some_and(|a| {
                a.iter().any(|a| {
                    a["labels"]["alertname"] == "HeartbeatMissing" && a["state"] == "firing"
                })
            })
        })
        .await;
    assert!(alert.to_string().contains("nightly"), "{alert}");

    // a check-in of its own brings it back at once
    let (code, text) = post(&d, "/api/v1/heartbeat/nightly", Some(TOKEN), "").await;
    assert_eq!(code, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["data"]["target"], "nightly");
    Deadline::within("the heartbeat target up after a check-in", WAIT)
        .until_some(async || (heartbeat_target(&d).await["health"] == "up").then_some(()))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_pushes_are_refused_with_their_reason_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = push_daemon(dir.path());
    d.wait_ready().await;
    const PUSH: &str = "/api/v1/import/prometheus";
    // every refused body starts with this series: it must never be stored
    let marked = |rest: &str| format!("never_stored 1\n{rest}");
    let many: String = (0..101).map(|i| format!("s{i} 1\n")).collect();
    let labels: String = (0..8).map(|i| format!("l{i}=\"v\",")).collect();
    let big = "x".repeat(65 * 1024);
    // (case, path, token, body, status, text the answer contains)
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, String, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "no token",
            PUSH,
            None,
            marked(""),
            401,
            "missing or wrong bearer token",
        ),
        (
            "wrong token",
            PUSH,
            Some("nope"),
            marked(""),
            401,
            "missing or wrong bearer token",
        ),
        (
            "a broken line",
            PUSH,
            Some(TOKEN),
            marked("ok 1\nbroken{a=\"unterminated} 3\n"),
            400,
            "line 3, column",
        ),
        (
            "a value that is not a number",
            PUSH,
            Some(TOKEN),
            marked("x one\n"),
            400,
            "line 2",
        ),
        (
            "an exposed __name__",
            PUSH,
            Some(TOKEN),
            marked("x{__name__=\"y\"} 1\n"),
            400,
            "__name__",
        ),
        (
            "a label given twice",
            PUSH,
            Some(TOKEN),
            marked("x{a=\"1\",a=\"2\"} 1\n"),
            400,
            "line 2",
        ),
        (
            "no newline at the end",
            PUSH,
            Some(TOKEN),
            marked("x 1"),
            400,
            "line 2",
        ),
        (
            "over the sample limit",
            PUSH,
            Some(TOKEN),
            marked(&many),
            400,
            "102 samples exceed the sample limit of 100",
        ),
        (
            "over the label limit",
            PUSH,
            Some(TOKEN),
            marked(&format!("x{{{labels}}} 1\n")),
            400,
            "label_limit of 8",
        ),
        (
            "a reserved extra label",
            "/api/v1/import/prometheus?extra_label=__name__=x",
            Some(TOKEN),
            marked(""),
            400,
            "invalid or reserved label name",
        ),
        (
            "an extra label without a value",
            "/api/v1/import/prometheus?extra_label=job",
            Some(TOKEN),
            marked(""),
            400,
            "expected name=value",
        ),
        (
            "over the body limit",
            PUSH,
            Some(TOKEN),
            marked(&format!("# {big}\n")),
            413,
            "body exceeds the limit of 65536 bytes",
        ),
        (
            "an unknown heartbeat",
            "/api/v1/heartbeat/nobody",
            Some(TOKEN),
            String::new(),
            404,
            "no heartbeat target named \\\"nobody\\\"",
        ),
        (
            "a heartbeat without the token",
            "/api/v1/heartbeat/nightly",
            None,
            String::new(),
            401,
            "missing or wrong bearer token",
        ),
    ];
    for (case, path, token, body, status, text) in cases {
        let (code, answer) = post(&d, path, token, body).await;
        assert_eq!(code, status, "{case}: {answer}");
        assert!(answer.contains(text), "{case}: {answer}");
    }
    // a byte that is not utf-8 on line 2
    let mut bytes = b"never_stored 1\nx{a=\"".to_vec();
    bytes.push(0xff);
    bytes.extend_from_slice(b"\"} 1\n");
    let (code, answer) = post(&d, PUSH, Some(TOKEN), bytes).await;
    assert_eq!(code, 400, "{answer}");
    assert!(
        answer.contains("line 2, column 6: invalid utf-8"),
        "{answer}"
    );

    // a body streamed without a length stops at the limit too
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..100).map(|_| Ok(vec![b'#'; 1024])).collect();
    let stream = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let (code, answer) = post(&d, PUSH, Some(TOKEN), stream).await;
    assert_eq!(code, 413, "{answer}");
    // a declared 1 GiB body is refused before a byte of it is read
    let mut sock = tokio::net::TcpStream::connect(d.base.trim_start_matches("http://"))
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    sock.write_all(
        format!(
            "POST {PUSH} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\ncontent-length: 1073741824\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(WAIT, sock.read(&mut answer))
        .await
        .expect("an answer without the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // a compressed body is refused, not misread
    let resp = reqwest::Client::new()
        .post(d.url(PUSH))
        .bearer_auth(TOKEN)
        .header("content-encoding", "gzip")
        .body("x 1\n")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);

    // nothing of a refused push was stored; a good push after them is
    let (code, _) = post(&d, PUSH, Some(TOKEN), "stored 1\n").await;
    assert_eq!(code, 204);
    assert_eq!(query(&d, "stored").await.len(), 1);
    assert!(query(&d, "never_stored").await.is_empty());
    assert!(query(&d, "{__name__=~\"s[0-9]+|x\"}").await.is_empty());
    // counted in the self-metrics: every refusal past the token check (10 in the table, the
    // invalid utf-8, streamed, declared 1 GiB and compressed bodies) and the stored push
    assert_eq!(
        d.metric("tocsin_pushes_total{kind=\"import\",result=\"refused\"}")
            .await,
        14.0
    );
    assert_eq!(
        d.metric("tocsin_pushes_total{kind=\"import\",result=\"stored\"}")
            .await,
        1.0
    );
    assert_eq!(
        d.metric("tocsin_pushes_total{kind=\"heartbeat\",result=\"refused\"}")
            .await,
        1.0
    );
}

/// The heartbeat task under paused time: `up` turns 0 at the very millisecond the allowed
/// silence runs out, not at the next 10 s tick, and a check-in brings it back at once.
#[tokio::test(start_paused = true)]
async fn a_heartbeat_goes_down_the_millisecond_its_silence_runs_out() {
    const T0: i64 = 1_800_000_000_000;
    let yaml = "targets:
  - name: relay
    interval: 10s
    heartbeat: { expected_interval: 2s, grace: 500ms }
";
    let targets = Config::from_yaml(yaml, std::path::Path::new("t.yml"))
        .unwrap()
        .build_targets(&Default::default())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open_store(&dir));
    let status = Arc::new(StatusBoard::default());
    let clock = Arc::new(TokioClock::new(T0));
    let heartbeats: Arc<tocsin::ingest::push::Heartbeats> = Default::default();
    let scheduler = Scheduler {
        store: store.clone(),
        clock: clock.clone(),
        metrics: Arc::new(SelfMetrics::new(0.0)),
        status: status.clone(),
        client: tocsin::ingest::client(),
        heartbeats: heartbeats.clone(),
    };
    let (tx, rx) = watch::channel(false);
    let mut tasks = scheduler.spawn(targets, Duration::from_secs(3600), rx);
    let shown = || {
        let e = status.endpoints.read().unwrap();
        let s = &e[&("relay".to_string(), "heartbeat")];
        (s.up, s.last_error.clone())
    };
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(
        shown(),
        (None, None),
        "no check-in yet, within the first interval"
    );
    assert!(heartbeats.beat("relay", clock.now_ms()));
    tokio::time::sleep(Duration::from_millis(5_000)).await;
    let (up, error) = shown();
    assert_eq!(up, Some(false));
    assert_eq!(
        error.as_deref(),
        Some("silent for 2s501ms, longer than the expected interval 2s + grace 500ms")
    );
    assert!(heartbeats.beat("relay", clock.now_ms()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(shown(), (Some(true), None));
    tx.send(true).unwrap();
    while tasks.join_next().await.is_some() {}

    let up = samples_of(
        &store,
        &[
            matcher(MatchOp::Equal, "__name__", "up"),
            matcher(MatchOp::Equal, "job", "relay"),
            matcher(MatchOp::Equal, "probe", "heartbeat"),
        ],
        T0,
        T0 + 60_000,
    );
    // at the start (a first interval to check in), the check-in at +1s, down at +1s + 2.5s +
    // 1ms exactly, back at the check-in at +6s; the 10 s tick never came
    assert_eq!(
        up,
        vec![
            (T0, 1.0),
            (T0 + 1_000, 1.0),
            (T0 + 3_501, 0.0),
            (T0 + 6_000, 1.0)
        ]
    );
    let seen = samples_of(
        &store,
        &[matcher(
            MatchOp::Equal,
            "__name__",
            "tocsin_heartbeat_last_seen_timestamp_seconds",
        )],
        T0,
        T0 + 60_000,
    );
    assert_eq!(
        seen.last(),
        Some(&(T0 + 6_000, (T0 + 6_000) as f64 / 1000.0))
    );
}

/// A target that never checks in is down one interval plus grace after watching began.
#[tokio::test(start_paused = true)]
async fn a_heartbeat_that_never_comes_is_down_after_the_first_interval() {
    const T0: i64 = 1_800_000_000_000;
    let yaml = "targets:
  - name: cron
    interval: 1s
    heartbeat: { expected_interval: 1500ms }
";
    let running = start_scheduler(yaml, Arc::new(TokioClock::new(T0)));
    let (store, status) = (running.store.clone(), running.status.clone());
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let (up, error) = {
        let e = status.endpoints.read().unwrap();
        let s = &e[&("cron".to_string(), "heartbeat")];
        (s.up, s.last_error.clone())
    };
    running.stop().await;
    assert_eq!(up, Some(false));
    assert_eq!(
        error.as_deref(),
        Some("no check-in since tocsin started 2s ago (expected every 1s500ms + grace 0s)")
    );
    let up = samples_of(
        &store,
        &[matcher(MatchOp::Equal, "__name__", "up")],
        T0,
        T0 + 60_000,
    );
    // the 1 s ticks, and the expiry between them
    assert_eq!(
        up,
        vec![
            (T0, 1.0),
            (T0 + 1_000, 1.0),
            (T0 + 1_501, 0.0),
            (T0 + 2_000, 0.0)
        ]
    );
}

/// `tocsin scrape` on a health endpoint prints the samples its probe would write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_previews_a_health_endpoint_instead_of_failing_to_parse_it() {
    let target = FakeTarget::start().await;
    target.set_health(
        503,
        r#"{"status":"Degraded","checks":[{"name":"netbox","status":"ok"},{"name":"pdns","status":"connection refused"}],"stats":{"synced":12,"paused":false}}"#,
    );
    let url = target.url("/health");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args([
                "scrape",
                &url,
                "--field",
                "status",
                "--field",
                "stats.synced",
            ])
            .args([
                "--field",
                "stats.paused",
                "--field",
                "checks[name=pdns].status",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "unhealthy: {stdout}\n{stderr}");
    for line in [
        "up 1\n",
        "probe_success 0\n",
        "probe_http_status_code 503\n",
        "health_json_status{state=\"Degraded\"} 1\n",
        "health_json_stats_synced 12\n",
        "health_json_stats_paused 0\n",
        "health_json_checks_name_pdns_status{state=\"connection refused\"} 1\n",
        "health_check_ok{check=\"netbox\"} 1\n",
        "health_check_ok{check=\"pdns\"} 0\n",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    assert!(
        stderr.contains("unhealthy: HTTP status 503; pdns: "),
        "{stderr}"
    );
    // a metrics endpoint is still parsed as before
    let url = target.url("/metrics");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN).args(["scrape", &url]).output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("http_requests_total"));
}

/// A heartbeat target a reload removed no longer accepts check-ins: they get the 404 of an
/// unknown name, not a 2xx that checks in nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_target_removed_by_a_reload_refuses_check_ins() {
    let dir = tempfile::tempdir().unwrap();
    let d = push_daemon(dir.path());
    d.wait_ready().await;
    let (code, text) = post(&d, "/api/v1/heartbeat/nightly", Some(TOKEN), "").await;
    assert!((200..300).contains(&code), "{code} {text}");

    let config = std::fs::read_to_string(dir.path().join("tocsin.yml")).unwrap();
    let start = config.find("targets:").unwrap();
    let end = config.find("rule_files:").unwrap();
    let without = format!("{}targets: []\n{}", &config[..start], &config[end..]);
    std::fs::write(dir.path().join("tocsin.yml"), without).unwrap();
    let (code, text) = post(&d, "/-/reload", Some(TOKEN), "").await;
    assert_eq!(code, 200, "{text}");
    Deadline::within("the heartbeat target gone from /api/v1/targets", WAIT)
        .until_some(async || heartbeat_target(&d).await.is_null().then_some(()))
        .await;
    let (code, text) = post(&d, "/api/v1/heartbeat/nightly", Some(TOKEN), "").await;
    assert_eq!(code, 404, "{text}");
    assert!(text.contains("no heartbeat target named"), "{text}");
}
