//! Rule groups on remote datasources (`datasources:` in tocsin.yml, `datasource:` in a group)
//! against Debian's real engines: `prometheus` (2.42) and `victoria-metrics` (1.79.5), each
//! started by the test on a loopback port with its data in a temporary directory.
//!
//! - An alert fires in tocsin from a rule evaluated by the remote engine (both engines).
//! - The datasource going down: the rule records the error, its alert keeps its state for
//!   `datasource_error_for` and then resolves, `tocsin_datasource_up` is 0 and the shipped
//!   `TocsinDatasourceDown` fires (after its `for: 1m`: this test takes about 80 s).
//! - Shadow mode on a remote group: `tocsin run --dry-run`, and a rule's `dry_run: true`,
//!   evaluate against VictoriaMetrics, record the would-be notification as `shadow` in
//!   `/api/v1/notifications`, and deliver nothing to the webhook.
//! - `tocsin replay --datasource URL` over history written into the engine (Prometheus: blocks
//!   made by `promtool tsdb create-blocks-from openmetrics`; VictoriaMetrics: its
//!   `/api/v1/import/prometheus`) gives the expected transitions, the same in `range` and
//!   `instant` mode.
//!
//! A test whose binary is absent prints `skipping: …` and passes (CI installs them:
//! `apt-get install prometheus victoria-metrics`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{BIN, Daemon, Deadline, FakeTarget, free_addr, installed, on_path};

/// An engine process this test started; dropping it kills it by its PID (through `Child`) and,
/// when the test is failing, prints its log.
pub(crate) struct Engine {
    name: &'static str,
    child: Child,
    log: PathBuf,
    pub(crate) addr: SocketAddr,
}

impl Engine {
    fn start(
        name: &'static str,
        bin: &Path,
        args: &[String],
        dir: &Path,
        addr: SocketAddr,
    ) -> Engine {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap();
        Engine {
            name,
            child,
            log,
            addr,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until `path` answers 200.
    async fn wait_ok(&self, path: &str) {
        let url = format!("{}{path}", self.url());
        Deadline::within(
            format!("{} answering {path}", self.name),
            Duration::from_secs(60),
        )
        .until_some(async || {
            let r = reqwest::get(&url).await.ok()?;
            r.status().is_success().then_some(())
        })
        .await
    }

    /// SIGTERM, then waits for the exit: the engine flushes what it buffers (a remote write
    /// receiver keeps what it acknowledged).
    pub(crate) fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    pub(crate) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- {} log (last lines) ---", self.name);
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// Prometheus with its TSDB in `tsdb` (relative to `dir`), scraping `target` (host:port) every
/// second when given.
pub(crate) async fn prometheus(bin: &Path, dir: &Path, tsdb: &str, target: Option<&str>) -> Engine {
    let scrape = match target {
        Some(t) => format!(
            "scrape_configs:\n  - job_name: svc\n    static_configs: [{{ targets: [\"{t}\"] }}]\n"
        ),
        None => String::new(),
    };
    std::fs::write(
        dir.join("prometheus.yml"),
        format!("global: {{ scrape_interval: 1s, scrape_timeout: 1s }}\n{scrape}"),
    )
    .unwrap();
    let addr = free_addr();
    let e = Engine::start(
        "prometheus",
        bin,
        &[
            "--config.file=prometheus.yml".into(),
            format!("--storage.tsdb.path={tsdb}"),
            format!("--web.listen-address={addr}"),
            "--log.level=warn".into(),
            // what tocsin's remote write tests send to (tests/it/remote_write.rs)
            "--web.enable-remote-write-receiver".into(),
        ],
        dir,
        addr,
    );
    e.wait_ok("/-/ready").await;
    e
}

/// Single-node VictoriaMetrics with its data in `dir`, the last second searchable
/// (`-search.latencyOffset=1s`; its default hides the last 30 s), no result cache.
pub(crate) async fn victoria_metrics(bin: &Path, dir: &Path) -> Engine {
    victoria_metrics_on(bin, dir, free_addr()).await
}

/// [`victoria_metrics`] on `addr` (a restart on the same port and data directory).
pub(crate) async fn victoria_metrics_on(bin: &Path, dir: &Path, addr: SocketAddr) -> Engine {
    let e = Engine::start(
        "victoria-metrics",
        bin,
        &[
            format!("-httpListenAddr={addr}"),
            "-storageDataPath=vm-data".into(),
            "-search.latencyOffset=1s".into(),
            "-search.disableCache".into(),
            "-loggerLevel=WARN".into(),
        ],
        dir,
        addr,
    );
    e.wait_ok("/health").await;
    e
}

/// Imports text-format samples (timestamps in ms) into VictoriaMetrics and makes them
/// searchable at once.
pub(crate) async fn vm_import(vm: &Engine, text: String) {
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/api/v1/import/prometheus", vm.url()))
        .body(text)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "import: {}", r.status());
    let r = client
        .get(format!("{}/internal/force_flush", vm.url()))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "force_flush: {}", r.status());
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

const RULES: &str = "groups:\n  - name: remote\n    datasource: engine\n    interval: 1s\n    rules:\n      \
                     - alert: LiveHigh\n        expr: demo_live > 0\n        \
                     annotations: { summary: 'value {{ $value }}' }\n";

/// tocsin's configuration: the engine as datasource `engine`, everything at 1 s.
fn tocsin_config(engine: &str, error_for: &str) -> String {
    format!(
        "scrape: {{ interval: 1s }}\nevaluation: {{ interval: 1s }}\n\
         datasources:\n  - name: engine\n    type: prometheus\n    url: {engine}\n    \
         timeout: 2s\n    datasource_error_for: {error_for}\n\
         rule_files: [\"tocsin:self\", rules.yml]\n"
    )
}

/// The alerts of `alertname` in state `state` that `/api/v1/alerts` lists.
fn alerts_in(v: &Value, alertname: &str, state: &str) -> usize {
    v["data"]["alerts"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|a| a["labels"]["alertname"] == alertname && a["state"] == state)
                .count()
        })
        .unwrap_or(0)
}

/// The one `LiveHigh` alert, once it fires (within 30 s).
async fn firing_live_high(daemon: &Daemon) -> Value {
    let firing = daemon
        .wait_json("/api/v1/alerts", Duration::from_secs(30), |v| {
            alerts_in(v, "LiveHigh", "firing") == 1
        })
        .await;
    firing["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == "LiveHigh")
        .unwrap()
        .clone()
}

/// The `lastError` of rule `name` in `/api/v1/rules`.
fn last_error(v: &Value, name: &str) -> String {
    v["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .find(|r| r["name"] == name)
        .and_then(|r| r["lastError"].as_str())
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_on_prometheus_fires_and_survives_an_outage_for_its_grace() {
    let Some(bin) = installed("prometheus", "prometheus") else {
        return;
    };
    let target = FakeTarget::start().await;
    target.set_metrics("# TYPE demo_live gauge\ndemo_live 0\n");
    let dir = tempfile::tempdir().unwrap();
    let mut prom = prometheus(
        &bin,
        dir.path(),
        "prom-data",
        Some(target.base().trim_start_matches("http://")),
    )
    .await;
    let daemon = Daemon::in_dir(dir.path())
        .file("rules.yml", RULES)
        .config(&tocsin_config(&prom.url(), "5s"))
        .start();
    daemon.wait_ready().await;

    // the remote engine sees the value go up: the alert fires in tocsin
    target.set_metrics("# TYPE demo_live gauge\ndemo_live 7\n");
    let alert = firing_live_high(&daemon).await;
    // the remote vector's labels (Prometheus added job and instance) and value
    assert_eq!(alert["labels"]["job"], "svc", "{alert}");
    assert_eq!(alert["annotations"]["summary"], "value 7", "{alert}");
    assert_eq!(
        daemon
            .metric("tocsin_datasource_up{datasource=\"engine\"}")
            .await,
        1.0
    );

    // the engine goes away: the rule errors, the alert keeps its state for the grace (5 s)
    prom.stop();
    let rules = daemon
        .wait_json("/api/v1/rules", Duration::from_secs(20), |v| {
            last_error(v, "LiveHigh").contains("unavailable")
        })
        .await;
    let first_error = Instant::now();
    let error = last_error(&rules, "LiveHigh");
    assert!(error.contains("datasource engine unavailable"), "{error}");
    let alerts = daemon.get_json("/api/v1/alerts").await;
    assert_eq!(
        alerts_in(&alerts, "LiveHigh", "firing"),
        1,
        "still firing within the grace: {alerts}"
    );
    assert_eq!(
        daemon
            .metric("tocsin_datasource_up{datasource=\"engine\"}")
            .await,
        0.0
    );
    // after the grace the alert resolves, and the rule says why
    let rules = daemon
        .wait_json("/api/v1/rules", Duration::from_secs(30), |v| {
            last_error(v, "LiveHigh").contains("alerts resolved")
        })
        .await;
    assert!(
        first_error.elapsed() >= Duration::from_secs(3),
        "resolved {:?} after the first error, before the 5s grace",
        first_error.elapsed()
    );
    assert!(
        last_error(&rules, "LiveHigh").contains("longer than datasource_error_for 5s"),
        "{}",
        last_error(&rules, "LiveHigh")
    );
    let alerts = daemon.get_json("/api/v1/alerts").await;
    assert_eq!(alerts_in(&alerts, "LiveHigh", "firing"), 0, "{alerts}");
    // the shipped meta-alert, after its `for: 1m`
    let meta = daemon
        .wait_json("/api/v1/alerts", Duration::from_secs(120), |v| {
            alerts_in(v, "TocsinDatasourceDown", "firing") == 1
        })
        .await;
    let a = meta["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == "TocsinDatasourceDown")
        .unwrap()
        .clone();
    assert_eq!(a["labels"]["datasource"], "engine", "{a}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_on_victoria_metrics_fires() {
    let Some(bin) = installed("victoria-metrics", "victoria-metrics") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let vm = victoria_metrics(&bin, dir.path()).await;
    // a value of 3 from a minute ago to two minutes ahead, every 5 s
    let now = now_ms();
    let mut text = String::new();
    let mut t = now - 60_000;
    while t <= now + 120_000 {
        text.push_str(&format!("demo_live{{job=\"vm\"}} 3 {t}\n"));
        t += 5_000;
    }
    vm_import(&vm, text).await;
    let daemon = Daemon::in_dir(dir.path())
        .file("rules.yml", RULES)
        .config(&tocsin_config(&vm.url(), "5m"))
        .start();
    daemon.wait_ready().await;
    let alert = firing_live_high(&daemon).await;
    assert_eq!(alert["labels"]["job"], "vm", "{alert}");
    assert_eq!(alert["annotations"]["summary"], "value 3", "{alert}");
    assert_eq!(
        daemon
            .metric("tocsin_datasource_up{datasource=\"engine\"}")
            .await,
        1.0
    );
    assert!(
        daemon
            .metric("tocsin_datasource_queries_total{datasource=\"engine\",result=\"ok\"}")
            .await
            >= 1.0
    );
}

/// The shadow records of `/api/v1/notifications` (`status=shadow`) for `alertname`.
fn shadow_of(v: &Value, alertname: &str) -> Vec<Value> {
    v["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["status"] == "shadow" && n["alerts"][0]["labels"]["alertname"] == alertname)
        .cloned()
        .collect()
}

/// Shadow mode on groups evaluated by a remote engine: with `tocsin run --dry-run`, and with
/// a rule's `dry_run: true` beside an ordinary rule, the alerts fire from VictoriaMetrics'
/// data, the notifications they would send are recorded as `shadow`, and the webhook gets
/// nothing from them: the ordinary rule's notification, queued in the same tick through the
/// same integration, is the marker that the shadow one was not sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_mode_on_a_remote_group_records_and_delivers_nothing() {
    use crate::common::{Answer, WebhookSink};
    let Some(bin) = installed("victoria-metrics", "victoria-metrics") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let vm = victoria_metrics(&bin, dir.path()).await;
    let now = now_ms();
    let text: String = (-12..=24)
        .map(|i| format!("demo_live{{job=\"vm\"}} 3 {}\n", now + i * 5_000))
        .collect();
    vm_import(&vm, text).await;
    let hook = WebhookSink::start(Answer::Status(200)).await;
    let notify = format!(
        "route: {{ receiver: ops, group_by: [alertname], group_wait: 0s, group_interval: 1s, \
         repeat_interval: 1h }}\nreceivers:\n  - name: ops\n    webhook: {{ url: \"{}\" }}\n",
        hook.url()
    );
    let config = format!("{}{notify}", tocsin_config(&vm.url(), "5m")).replace(
        "rule_files: [\"tocsin:self\", rules.yml]",
        "rule_files: [rules.yml]",
    );
    // the whole daemon in shadow mode
    let dry_dir = tempfile::tempdir().unwrap();
    let dry = Daemon::in_dir(dry_dir.path())
        .file("rules.yml", RULES)
        .config(&config)
        .arg("--dry-run")
        .start();
    // one rule in shadow mode beside an ordinary one, both on the engine
    let shadow_rules = format!(
        "{RULES}      - alert: LiveShadow\n        expr: demo_live > 1\n        dry_run: true\n"
    );
    let live_dir = tempfile::tempdir().unwrap();
    let live = Daemon::in_dir(live_dir.path())
        .file("rules.yml", &shadow_rules)
        .config(&config)
        .start();
    dry.wait_ready().await;
    live.wait_ready().await;

    // --dry-run: the alert fires from the remote data, its notification is a shadow record
    let alert = firing_live_high(&dry).await;
    assert_eq!(alert["labels"]["job"], "vm", "{alert}");
    let recorded = dry
        .wait_json(
            "/api/v1/notifications?status=shadow",
            Duration::from_secs(30),
            |v| !shadow_of(v, "LiveHigh").is_empty(),
        )
        .await;
    let n = &shadow_of(&recorded, "LiveHigh")[0];
    assert_eq!(n["integration"], "ops/webhook", "{n}");
    assert_eq!(n["alerts"][0]["status"], "firing", "{n}");
    assert_eq!(n["alerts"][0]["labels"]["job"], "vm", "{n}");
    assert!(
        n["subject"]
            .as_str()
            .is_some_and(|s| s.starts_with("[FIRING:1] LiveHigh")),
        "{n}"
    );
    assert!(
        dry.metric("tocsin_notifications_shadow_total{receiver=\"ops\"}")
            .await
            >= 1.0
    );
    assert_eq!(dry.metric("tocsin_notification_outbox_depth").await, 0.0);
    assert!(
        dry.metric("tocsin_datasource_queries_total{datasource=\"engine\",result=\"ok\"}")
            .await
            >= 1.0
    );

    // dry_run: true on one rule: the ordinary rule's notification reaches the webhook, the
    // shadow rule's is recorded and never sent
    hook.wait_for("LiveHigh from the ordinary rule", |h| {
        h.body["groupLabels"]["alertname"] == "LiveHigh"
    })
    .await;
    let recorded = live
        .wait_json(
            "/api/v1/notifications?status=shadow",
            Duration::from_secs(30),
            |v| !shadow_of(v, "LiveShadow").is_empty(),
        )
        .await;
    assert!(shadow_of(&recorded, "LiveHigh").is_empty(), "{recorded}");
    let rules = live.get_json("/api/v1/rules").await;
    let shadow_rule = rules["data"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "LiveShadow")
        .unwrap()
        .clone();
    assert_eq!(shadow_rule["dryRun"], true, "{shadow_rule}");
    assert_eq!(shadow_rule["state"], "firing", "{shadow_rule}");

    // nothing from either shadow reached the webhook: every request there is the ordinary
    // rule's, from the daemon not in dry-run
    let hits = hook.bodies();
    assert!(!hits.is_empty());
    for body in &hits {
        assert_eq!(body["groupLabels"]["alertname"], "LiveHigh", "{body}");
        assert_eq!(
            body["externalURL"],
            live.url("").trim_end_matches('/'),
            "{body}"
        );
    }
}

// ------------------------------------------------------------------------------------ replay

/// Replayed rules: an incident alert with a `for`, over a 15 s series.
const REPLAY_RULES: &str = "groups:\n  - name: history\n    interval: 15s\n    rules:\n      \
                            - alert: Incident\n        expr: demo_errors > 1\n        for: 1m\n      \
                            - record: job:demo_errors:max\n        expr: max by (job) (demo_errors)\n";

/// Two hours of `demo_errors{job="app"}` every 15 s from `h0` (ms): 0, and 5 from 60 m to 70 m.
fn history(h0: i64) -> Vec<(i64, f64)> {
    (0..=480)
        .map(|i| {
            let t = h0 + i * 15_000;
            let v = if (h0 + 3_600_000..h0 + 4_200_000).contains(&t) {
                5.0
            } else {
                0.0
            };
            (t, v)
        })
        .collect()
}

/// The replay's transitions as (kind, ms) with the timeline's JSON.
fn replay_transitions(dir: &Path, url: &str, h0: i64, mode: &str) -> (Vec<(String, i64)>, String) {
    let secs = |ms: i64| (ms / 1000).to_string();
    let out = Command::new(BIN)
        .current_dir(dir)
        .args(["replay", "--rules", "rules.yml", "--datasource", url])
        .args([
            "--datasource-mode",
            mode,
            "--step",
            "15s",
            "--format",
            "json",
        ])
        .args([
            "--from",
            &secs(h0 + 1_800_000),
            "--to",
            &secs(h0 + 5_400_000),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "replay {mode}: {stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["totals"]["failed"], 0, "{}", v["errors"]);
    let t = v["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["kind"].as_str().unwrap().to_string(),
                t["at_ms"].as_i64().unwrap(),
            )
        })
        .collect();
    (t, stderr)
}

/// What the replay must find: pending at the first sample of the incident, firing a minute
/// later (`for: 1m`), resolved at the first sample after it.
fn expected(h0: i64) -> Vec<(String, i64)> {
    vec![
        ("pending".into(), h0 + 3_600_000),
        ("firing".into(), h0 + 3_660_000),
        ("resolved".into(), h0 + 4_200_000),
    ]
}

/// The start of the history: three hours ago, on a whole hour.
fn history_start() -> i64 {
    let h = 3_600_000;
    (now_ms() - 3 * h).div_euclid(h) * h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_over_victoria_metrics_history_finds_the_incident_in_both_modes() {
    let Some(bin) = installed("victoria-metrics", "victoria-metrics") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let vm = victoria_metrics(&bin, dir.path()).await;
    let h0 = history_start();
    let text: String = history(h0)
        .into_iter()
        .map(|(t, v)| format!("demo_errors{{job=\"app\"}} {v} {t}\n"))
        .collect();
    vm_import(&vm, text).await;
    std::fs::write(dir.path().join("rules.yml"), REPLAY_RULES).unwrap();
    let url = vm.url();
    let d = dir.path().to_path_buf();
    let (range, stderr) =
        tokio::task::spawn_blocking(move || replay_transitions(&d, &url, h0, "range"))
            .await
            .unwrap();
    assert!(!stderr.contains("range queries failed"), "{stderr}");
    assert_eq!(range, expected(h0), "{stderr}");
    let url = vm.url();
    let d = dir.path().to_path_buf();
    let (instant, _) =
        tokio::task::spawn_blocking(move || replay_transitions(&d, &url, h0, "instant"))
            .await
            .unwrap();
    assert_eq!(instant, range);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_over_prometheus_history_finds_the_incident_in_both_modes() {
    let (Some(bin), Some(promtool)) = (on_path("prometheus"), on_path("promtool")) else {
        println!("skipping: prometheus or promtool not installed (apt install prometheus)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let h0 = history_start();
    // OpenMetrics with second timestamps, made into TSDB blocks by promtool
    let mut om = String::from("# TYPE demo_errors gauge\n");
    for (t, v) in history(h0) {
        om.push_str(&format!("demo_errors{{job=\"app\"}} {v} {}\n", t / 1000));
    }
    om.push_str("# EOF\n");
    std::fs::write(dir.path().join("history.om"), om).unwrap();
    let made = Command::new(&promtool)
        .current_dir(dir.path())
        .args([
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            "history.om",
            "prom-data",
        ])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "promtool: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let prom = prometheus(&bin, dir.path(), "prom-data", None).await;
    std::fs::write(dir.path().join("rules.yml"), REPLAY_RULES).unwrap();
    let url = prom.url();
    let d = dir.path().to_path_buf();
    let (range, stderr) =
        tokio::task::spawn_blocking(move || replay_transitions(&d, &url, h0, "range"))
            .await
            .unwrap();
    assert!(!stderr.contains("range queries failed"), "{stderr}");
    assert_eq!(range, expected(h0), "{stderr}");
    let url = prom.url();
    let d = dir.path().to_path_buf();
    let (instant, _) =
        tokio::task::spawn_blocking(move || replay_transitions(&d, &url, h0, "instant"))
            .await
            .unwrap();
    assert_eq!(instant, range);
}

// ------------------------------------------------------------------------------------ limits

/// The client against servers that misbehave: each fails within the timeout with the right
/// kind (unavailable: the grace runs; a query error: the rule's own), nothing panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_huge_garbage_and_refusing_engines_fail_with_their_kind() {
    use crate::common::Reply;
    use tocsin::rules::source::SourceError;
    let target = FakeTarget::start().await;
    let ds = |path: &str| {
        let mut d = tocsin::config::datasource::from_url(&target.url(path)).unwrap();
        d.timeout = Duration::from_millis(500);
        d.response_size_limit = 1 << 20;
        tocsin::datasource::Client::new(d, tokio::runtime::Handle::current(), None)
    };
    let vector = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
    let huge = format!(
        r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
        vec![r#"{"metric":{"a":"b"},"value":[1,"1"]}"#; 40_000].join(",")
    );
    let cases: Vec<(&str, Reply, &str, &str)> = vec![
        ("/ok/", Reply::json(200, vector), "ok", ""),
        (
            "/hang/",
            Reply::hang(),
            "unavailable",
            "timeout after 500ms",
        ),
        (
            "/huge/",
            Reply::json(200, &huge),
            "query",
            "exceeds response_size_limit",
        ),
        (
            "/html/",
            Reply::text("<html>login</html>"),
            "unavailable",
            "not the Prometheus API",
        ),
        (
            "/bad/",
            Reply::json(
                400,
                r#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#,
            ),
            "query",
            "bad_data: parse error at char 3",
        ),
        (
            "/down/",
            Reply::json(
                503,
                r#"{"status":"error","errorType":"unavailable","error":"tsdb not ready"}"#,
            ),
            "unavailable",
            "tsdb not ready",
        ),
        (
            "/matrix/",
            Reply::json(
                200,
                r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
            ),
            "query",
            "must give a vector or a scalar, got a matrix",
        ),
    ];
    for (prefix, reply, kind, message) in cases {
        target.route(&format!("{prefix}api/v1/query"), reply);
        let started = Instant::now();
        let got = ds(prefix).query("up", 1_000).await;
        assert!(started.elapsed() < Duration::from_secs(3), "{prefix}");
        let (k, text) = match &got {
            Ok(_) => ("ok", String::new()),
            Err(e @ SourceError::Query { .. }) => ("query", e.to_string()),
            Err(e @ SourceError::Unavailable { .. }) => ("unavailable", e.to_string()),
        };
        assert_eq!(k, kind, "{prefix}: {got:?}");
        assert!(text.contains(message), "{prefix}: {text}");
    }
    // nothing listening
    let mut d = tocsin::config::datasource::from_url(&format!("http://{}", free_addr())).unwrap();
    d.timeout = Duration::from_millis(500);
    let c = tocsin::datasource::Client::new(d, tokio::runtime::Handle::current(), None);
    assert!(matches!(
        c.query("up", 0).await,
        Err(SourceError::Unavailable { .. })
    ));
}

/// Instant queries (small answers, one per rule and evaluation) ask for the answer as it is;
/// range queries (replay, megabytes) accept gzip.
#[tokio::test]
async fn instant_queries_ask_for_uncompressed_answers_and_range_queries_accept_gzip() {
    use std::sync::{Arc, Mutex};
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let record = record.clone();
        async move {
            let accept = req
                .headers()
                .get("accept-encoding")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            let path = req.uri().path().to_string();
            let result = if path.ends_with("query_range") {
                "matrix"
            } else {
                "vector"
            };
            record.lock().unwrap().push((path, accept));
            (
                [("content-type", "application/json")],
                format!(r#"{{"status":"success","data":{{"resultType":"{result}","result":[]}}}}"#),
            )
        }
    });
    let addr = crate::common::serve(app).await;
    let d = tocsin::config::datasource::from_url(&format!("http://{addr}")).unwrap();
    let c = tocsin::datasource::Client::new(d, tokio::runtime::Handle::current(), None);
    c.query("up", 1_000).await.unwrap();
    c.query_range("up", 0, 60_000, 15_000).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0], ("/api/v1/query".into(), "identity".into()));
    assert_eq!(seen[1].0, "/api/v1/query_range");
    assert!(seen[1].1.contains("gzip"), "{seen:?}");
}

/// README's topology "tocsin + VictoriaMetrics as storage" from its example,
/// `fixtures/examples/datasource-victoriametrics.yml` with its rules file, as shipped but for the
/// addresses (VictoriaMetrics on the test's port, answering the `prom` datasource too; the webhook
/// a loopback sink) and a store flushed every second: tocsin's own series reach VictoriaMetrics by
/// remote write with the example's `replica` label, and every rule of both remote groups
/// evaluates there without an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_topology_runs_on_victoria_metrics() {
    use crate::common::{Answer, WebhookSink};
    let Some(bin) = installed("victoria-metrics", "victoria-metrics") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let vm = victoria_metrics(&bin, dir.path()).await;
    let sink = WebhookSink::start(Answer::Status(200)).await;
    let examples = crate::common::project_dir().join("fixtures/examples");
    let mut yaml =
        std::fs::read_to_string(examples.join("datasource-victoriametrics.yml")).unwrap();
    for (from, to) in [
        ("http://127.0.0.1:8428", vm.url()),
        ("http://127.0.0.1:9090", vm.url()),
        ("http://127.0.0.1:9099/hook", sink.url().to_string()),
    ] {
        assert!(yaml.contains(from), "the example no longer names {from}");
        yaml = yaml.replace(from, &to);
    }
    yaml.push_str("storage: { flush_interval: 1s }\n");
    let rules =
        std::fs::read_to_string(examples.join("datasource-victoriametrics.rules.yml")).unwrap();
    let daemon = Daemon::in_dir(dir.path())
        .file("datasource-victoriametrics.rules.yml", &rules)
        .config(&yaml)
        .env("VM_PASSWORD", "x")
        .start();
    daemon.wait_ready().await;
    let query = format!(
        "{}/api/v1/query?query=count(%7B__name__%3D~%22tocsin_.*%22%2Creplica%3D%22a%22%7D)",
        vm.url()
    );
    let written = Deadline::within(
        "tocsin's own series in VictoriaMetrics",
        Duration::from_secs(60),
    )
    .until_some(async || {
        let body = reqwest::get(&query).await.ok()?.text().await.ok()?;
        let v: Value = serde_json::from_str(&body).ok()?;
        let n: f64 = v["data"]["result"][0]["value"][1].as_str()?.parse().ok()?;
        (n > 0.0).then_some(n)
    })
    .await;
    assert!(written >= 10.0, "{written} series");
    // both remote groups evaluated every rule (their interval is 30 s) and none failed
    let remote = |v: &Value| -> Vec<Value> {
        v["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|g| g["name"] == "node" || g["name"] == "prometheus-itself")
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect()
    };
    let v = daemon
        .wait_json("/api/v1/rules", Duration::from_secs(90), |v| {
            let rules = remote(v);
            rules.len() >= 3 && rules.iter().all(|r| r["health"] != "unknown")
        })
        .await;
    for r in remote(&v) {
        assert_eq!(r["health"], "ok", "{r}");
    }
    assert_eq!(
        daemon
            .metric("tocsin_datasource_up{datasource=\"vm\"}")
            .await,
        1.0
    );
}

// ------------------------------------------------------------------------------------- check

#[test]
fn the_example_configuration_checks_and_unknown_datasources_and_remote_scripts_do_not() {
    let root = crate::common::project_dir();
    let ok = Command::new(BIN)
        .current_dir(&root)
        .env("VM_PASSWORD", "x")
        .args(["check", "fixtures/examples/datasource-victoriametrics.yml"])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );
    // without the password: the secret is named
    let unset = Command::new(BIN)
        .current_dir(&root)
        .env_remove("VM_PASSWORD")
        .args(["check", "fixtures/examples/datasource-victoriametrics.yml"])
        .output()
        .unwrap();
    assert_eq!(unset.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&unset.stderr).contains(
            "datasources: datasource vm: basic_auth.password_env names VM_PASSWORD, which is not set"
        ),
        "{}",
        String::from_utf8_lossy(&unset.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tocsin.yml"),
        "datasources:\n  - { name: vm, type: prometheus, url: 'http://127.0.0.1:8428' }\nrule_files: [r.yml]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("r.yml"),
        "groups:\n  - name: a\n    datasource: vmm\n    rules:\n      - alert: A\n        expr: up == 0\n  \
         - name: b\n    datasource: vm\n    rules:\n      - alert: B\n        script: 'true'\n",
    )
    .unwrap();
    let bad = Command::new(BIN)
        .current_dir(dir.path())
        .args(["check", "tocsin.yml"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("script rules cannot run in a group on datasource \"vm\""),
        "{stderr}"
    );
    // the script error stops the load first; alone, the unknown name is reported at its line
    std::fs::write(
        dir.path().join("r.yml"),
        "groups:\n  - name: a\n    datasource: vmm\n    rules:\n      - alert: A\n        expr: up == 0\n",
    )
    .unwrap();
    let bad = Command::new(BIN)
        .current_dir(dir.path())
        .args(["check", "tocsin.yml"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("r.yml:3:17: group \"a\": datasource: datasource \"vmm\" is not configured (configured: vm)"),
        "{stderr}"
    );
}

/// An engine's warnings and partial responses reach the rule's status and the log; the alert
/// fires from its answer as from any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warnings_and_partial_responses_show_in_the_rule_status() {
    use crate::common::Reply;
    let engine = FakeTarget::start().await;
    engine.route(
        "/api/v1/query",
        Reply::json(
            200,
            r#"{"status":"success","isPartial":true,"warnings":["vmstorage-2 did not answer"],
                "data":{"resultType":"vector","result":[{"metric":{"job":"x"},"value":[1,"4"]}]}}"#,
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::in_dir(dir.path())
        .file("rules.yml", RULES)
        .config(&tocsin_config(engine.base(), "5m"))
        .start();
    daemon.wait_ready().await;
    let rules = daemon
        .wait_json("/api/v1/rules", Duration::from_secs(30), |v| {
            v["data"]["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().into_iter().flatten())
                .any(|r| r["name"] == "LiveHigh" && r["state"] == "firing")
        })
        .await;
    let group = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "remote")
        .unwrap();
    assert_eq!(group["datasource"], "engine");
    let rule = &group["rules"][0];
    assert_eq!(
        rule["warnings"],
        serde_json::json!([
            "vmstorage-2 did not answer",
            "partial response: some storage nodes did not answer"
        ]),
        "{rule}"
    );
    assert_eq!(rule["lastError"], "", "{rule}");
    assert!(engine.requests("/api/v1/query") >= 1);
}
