//! An HA pair of tocsin daemons in front of an Alertmanager cluster, with Debian's real
//! `prometheus-alertmanager` 0.25: two instances clustered over gossip on loopback (each its own
//! storage in a temp dir, a short settle, a 2 s peer timeout, `resolve_timeout: 5s`), a webhook
//! receiver behind them ([`WebhookSink`]), and two tocsin daemons (each its own data dir) that
//! scrape the same target and evaluate the same rule, each with `external_labels: {replica: a|b}`
//! dropped for Alertmanager by `alert_relabel_configs`, and `resend_delay: 1s`.
//!
//! What it proves, in order:
//! 1. the webhook behind the cluster gets exactly one firing notification for the alert both
//!    replicas send to both Alertmanagers;
//! 2. with one tocsin killed (SIGKILL), the alert stays firing in Alertmanager for longer than
//!    its `resolve_timeout` and the `endsAt` horizon (4 × 1 s): no resolved notification;
//! 3. the resolution reaches the webhook exactly once;
//! 4. with one Alertmanager killed, a new firing still reaches the webhook (the surviving
//!    tocsin's queue for the dead one retries without holding the other back).
//!
//! And README's example of the topology, `fixtures/examples/ha-pair-alertmanager.yml`, run as
//! shipped but for its addresses and a 1 s `resend_delay`: one notification for both replicas.
//!
//! "Exactly once" is judged after the surviving daemons have delivered enough resends to both
//! Alertmanagers to cover the cluster's group interval and peer timeout: a condition on
//! counters, not a sleep. The cluster's `group_interval` (10 s) is longer than its peer timeout
//! (2 s) on purpose: Alertmanager's second instance decides to send a flush it started a peer
//! timeout earlier, so with a group interval shorter than the peer timeout it sends a stale
//! "firing" after the first instance sent the resolution (Alertmanager's own HA behaviour, seen
//! here with a 1 s group interval and a 3 s peer timeout; not tocsin's doing).
//! Without the binary on the PATH the test prints `skipping: …` and passes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::{Answer, Daemon, Deadline, FakeTarget, WebhookSink, free_addr, installed};

/// The bound on the whole test.
const BOUND: Duration = Duration::from_secs(150);
/// The bound on one wait.
const WAIT: Duration = Duration::from_secs(30);
/// Deliveries to each Alertmanager (one a second, `resend_delay: 1s`) that cover a group
/// interval and the cluster's peer timeout (10 s + 2 s), Alertmanager's `resolve_timeout` (5 s)
/// and the `endsAt` horizon (4 s).
const QUIET_DELIVERIES: f64 = 13.0;

/// An Alertmanager this test started; dropping it kills it by its PID (through `Child`) and,
/// when the test is failing, prints the end of its log.
struct Am {
    name: String,
    child: Child,
    log: PathBuf,
    base: String,
}

impl Am {
    fn start(bin: &Path, dir: &Path, name: &str, web: &str, cluster: &str, peer: &str) -> Am {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let args = [
            "--config.file=alertmanager.yml".to_string(),
            format!("--storage.path={name}-data"),
            format!("--web.listen-address={web}"),
            format!("--cluster.listen-address={cluster}"),
            format!("--cluster.advertise-address={cluster}"),
            format!("--cluster.peer={peer}"),
            "--cluster.settle-timeout=2s".into(),
            "--cluster.pushpull-interval=1s".into(),
            "--cluster.gossip-interval=50ms".into(),
            "--cluster.peer-timeout=2s".into(),
            "--cluster.reconnect-timeout=1m".into(),
            "--log.level=info".into(),
        ];
        let child = Command::new(bin)
            .args(&args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap();
        Am {
            name: name.to_string(),
            child,
            log,
            base: format!("http://{web}"),
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    async fn get(&self, path: &str) -> Option<Value> {
        let text = reqwest::get(format!("{}{path}", self.base))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Whether this Alertmanager is ready and sees `peers` cluster members.
    async fn clustered(&self, peers: usize) -> bool {
        self.get("/api/v2/status").await.is_some_and(|s| {
            s["cluster"]["status"] == "ready"
                && s["cluster"]["peers"].as_array().map(Vec::len) == Some(peers)
        })
    }

    /// The alerts this Alertmanager holds (`/api/v2/alerts`, active and not).
    async fn alerts(&self) -> Vec<Value> {
        self.get("/api/v2/alerts")
            .await
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }
}

impl Drop for Am {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!("--- {} log (last lines) ---", self.name);
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// tocsin.yml of one replica: the target, the rule, the receiver with both Alertmanagers.
fn tocsin_yml(replica: &str, target: &str, ams: [&str; 2]) -> String {
    format!(
        "storage: {{ flush_interval: 1s }}\n\
         scrape: {{ interval: 1s, timeout: 1s }}\n\
         evaluation: {{ interval: 1s }}\n\
         external_labels: {{ replica: {replica} }}\n\
         rule_files: [rules.yml]\n\
         targets:\n  - name: svc\n    metrics: {target}\n\
         route: {{ receiver: am }}\n\
         receivers:\n\
         \x20 - name: am\n\
         \x20   alertmanager:\n\
         \x20     urls: [\"{}\", \"{}\"]\n\
         \x20     resend_delay: 1s\n\
         \x20     timeout: 2s\n\
         \x20     alert_relabel_configs: [{{ action: labeldrop, regex: replica }}]\n",
        ams[0], ams[1]
    )
}

const RULES: &str = "groups:\n  - name: ha\n    rules:\n      - alert: ConditionOn\n        \
                     expr: demo_condition == 1\n        labels: { severity: page }\n        \
                     annotations: { summary: \"condition {{ $labels.cond }} on\" }\n";

/// The series of delivered notifications to the `i`th Alertmanager of `receiver` (`am` in this
/// file's configurations, `alertmanager` in the example's).
fn delivered(receiver: &str, i: usize) -> String {
    format!(
        "tocsin_notifications_total{{integration=\"{receiver}/alertmanager[{i}]\",result=\"delivered\"}}"
    )
}

/// `(status, alertname)` of every notification the webhook got, in arrival order.
fn notifications(sink: &WebhookSink) -> Vec<String> {
    sink.bodies()
        .iter()
        .map(|b| b["status"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Waits until each daemon has delivered [`QUIET_DELIVERIES`] more notifications to each
/// Alertmanager than now: the window in which a duplicate or an auto-resolution would show.
async fn quiet(daemons: &[&Daemon]) {
    let mut from = Vec::new();
    for d in daemons {
        for i in [0, 1] {
            from.push((d, i, d.metric(&delivered("am", i)).await));
        }
    }
    for (d, i, n) in from {
        d.wait_metric(&delivered("am", i), n + QUIET_DELIVERIES, WAIT)
            .await;
    }
}

/// One line per notification: status, the Alertmanager it came from, and per alert its times
/// and the replica that sent it last (its generator URL), for failure messages.
fn summary(sink: &WebhookSink) -> String {
    let mut out = String::new();
    for b in sink.bodies() {
        out.push_str(&format!("{} from {}:", b["status"], b["externalURL"]));
        for a in b["alerts"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                " [{} {} .. {} by {}]",
                a["status"], a["startsAt"], a["endsAt"], a["generatorURL"]
            ));
        }
        out.push('\n');
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ha_pair_behind_an_alertmanager_cluster_notifies_once_and_survives_losing_one_of_each() {
    let Some(am_bin) = installed("prometheus-alertmanager", "prometheus-alertmanager") else {
        return;
    };
    tokio::time::timeout(BOUND, ha_pair(&am_bin))
        .await
        .unwrap_or_else(|_| panic!("the HA run took longer than {BOUND:?}"));
}

/// Two Alertmanagers clustered over gossip on loopback, with their data in `dir`, notifying
/// `sink` (grouped by alertname, 1 s group wait, 10 s group interval, 5 s `resolve_timeout`);
/// returns once each sees the other.
async fn cluster(am_bin: &Path, dir: &Path, sink: &WebhookSink) -> (Am, Am) {
    std::fs::write(
        dir.join("alertmanager.yml"),
        format!(
            "global: {{ resolve_timeout: 5s }}\n\
             route: {{ receiver: hook, group_by: [alertname], group_wait: 1s, \
             group_interval: 10s, repeat_interval: 1h }}\n\
             receivers:\n  - name: hook\n    webhook_configs:\n      \
             - {{ url: \"{}\", send_resolved: true }}\n",
            sink.url()
        ),
    )
    .unwrap();
    let [web1, web2, c1, c2] =
        [free_addr(), free_addr(), free_addr(), free_addr()].map(|a| a.to_string());
    let am1 = Am::start(am_bin, dir, "am1", &web1, &c1, &c2);
    let am2 = Am::start(am_bin, dir, "am2", &web2, &c2, &c1);
    let start = Deadline::within("both alertmanagers up and clustered", WAIT)
        .every(Duration::from_millis(200));
    while !(am1.clustered(2).await && am2.clustered(2).await) {
        start.tick().await;
    }
    (am1, am2)
}

async fn ha_pair(am_bin: &Path) {
    let target = FakeTarget::with_conditions(&["a"]).await;
    let sink = WebhookSink::start(Answer::Status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut am1, am2) = cluster(am_bin, dir.path(), &sink).await;

    let ams = [am1.base.as_str(), am2.base.as_str()];
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = Daemon::in_dir(dir_a.path())
        .file("rules.yml", RULES)
        .config(&tocsin_yml("a", &target.url("/metrics"), ams))
        .start();
    let b = Daemon::in_dir(dir_b.path())
        .file("rules.yml", RULES)
        .config(&tocsin_yml("b", &target.url("/metrics"), ams))
        .start();
    a.wait_ready().await;
    b.wait_ready().await;

    // 1. on: both replicas send to both Alertmanagers; the webhook hears it once
    target.set_conditions(&[("a", true)]);
    let first = sink
        .wait_for("the firing notification", |h| h.status() == "firing")
        .await;
    let alert = &first.body["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "ConditionOn");
    assert!(
        alert["labels"].get("replica").is_none(),
        "the replica label is dropped for alertmanager: {alert}"
    );
    assert_eq!(alert["labels"]["severity"], "page");
    // both replicas delivered to both Alertmanagers for longer than the peer timeout
    quiet(&[&a, &b]).await;
    assert_eq!(
        notifications(&sink),
        ["firing"],
        "one notification for the pair"
    );

    // 2. one tocsin dies: the other keeps the alert firing past resolve_timeout and the horizon
    a.kill_9();
    quiet(&[&b]).await;
    assert_eq!(
        notifications(&sink),
        ["firing"],
        "no resolution while a replica runs"
    );
    for am in [&am1, &am2] {
        let alerts = am.alerts().await;
        assert_eq!(alerts.len(), 1, "{}: {alerts:?}", am.name);
        assert_eq!(alerts[0]["status"]["state"], "active", "{}", am.name);
    }

    // 3. off: resolved once
    target.set_conditions(&[("a", false)]);
    sink.wait_for("the resolved notification", |h| h.status() == "resolved")
        .await;
    quiet(&[&b]).await;
    assert_eq!(
        notifications(&sink),
        ["firing", "resolved"],
        "{}",
        summary(&sink)
    );
    let resolved = sink.bodies()[1].clone();
    assert!(
        resolved["alerts"][0]["labels"].get("replica").is_none(),
        "{resolved}"
    );

    // 4. one Alertmanager dies: a new firing still reaches the webhook through the other
    am1.kill();
    target.set_conditions(&[("a", true)]);
    let deadline = Deadline::within("a second firing notification through am2", WAIT);
    deadline
        .until(|| notifications(&sink) == ["firing", "resolved", "firing"])
        .await;
    // the queue for the dead one retries and holds nothing back
    let n = b.metric(&delivered("am", 1)).await;
    b.wait_metric(&delivered("am", 1), n + 3.0, WAIT).await;
    let retried = b
        .metric("tocsin_notifications_total{integration=\"am/alertmanager[0]\",result=\"retried\"}")
        .await;
    assert!(retried >= 1.0, "the dead alertmanager's queue retries");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The `endsAt` of the resolved alert in a request to the fake Alertmanager, if it holds one.
/// With `resend_delay: 1m` a firing alert's `endsAt` lies 4 minutes after its evaluation; a
/// resolved one's is its resolve time, in the past.
fn resolution(h: &crate::common::Hit) -> Option<String> {
    if h.path != "/api/v2/alerts" {
        return None;
    }
    h.body.as_array()?.iter().find_map(|a| {
        let ends = a["endsAt"].as_str()?;
        let ms = chrono::DateTime::parse_from_rfc3339(ends)
            .ok()?
            .timestamp_millis();
        (ms < now_ms() + 60_000).then(|| ends.to_string())
    })
}

/// A resolution queued while the Alertmanager answers 503 survives `kill -9`: after the restart
/// the same resolution (its `endsAt` the resolve time, not a later one) is delivered. The fake
/// Alertmanager is a [`WebhookSink`] recording `POST /api/v2/alerts` with its headers: the bearer
/// token goes with every request. With `resend_delay: 1m` the restarted pipeline would not
/// forward the resolution again for a minute (the durable notification log says it was queued):
/// what arrives within the wait is the outbox row queued before the kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolution_queued_while_alertmanager_is_down_survives_a_kill_9() {
    let target = FakeTarget::with_conditions(&["a"]).await;
    let am = WebhookSink::start(Answer::Status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let yml = format!(
        "storage: {{ flush_interval: 1s }}\n\
         scrape: {{ interval: 1s, timeout: 1s }}\n\
         evaluation: {{ interval: 1s }}\n\
         external_labels: {{ replica: a }}\n\
         rule_files: [rules.yml]\n\
         targets:\n  - name: svc\n    metrics: {}\n\
         route: {{ receiver: am }}\n\
         receivers:\n  - name: am\n    alertmanager: {{ urls: [\"http://{}\"], resend_delay: 1m, \
         bearer_token_env: AM_TOKEN }}\n",
        target.url("/metrics"),
        am.addr()
    );
    let mut d = Daemon::in_dir(dir.path())
        .file("rules.yml", RULES)
        .env("AM_TOKEN", "sesame")
        .config(&yml)
        .start();
    d.wait_ready().await;
    target.set_conditions(&[("a", true)]);
    let first = am
        .wait_for("the firing alert", |h| h.path == "/api/v2/alerts")
        .await;
    assert_eq!(first.header("authorization"), "Bearer sesame");
    let alert = &first.body[0];
    assert_eq!(
        alert["labels"]["replica"], "a",
        "external labels go out: {alert}"
    );
    assert_eq!(alert["labels"]["alertname"], "ConditionOn");
    assert!(resolution(&first).is_none(), "firing: {alert}");

    // the Alertmanager fails; the resolution is tried, kept, and the daemon dies
    am.answer(Answer::Status(503));
    target.set_conditions(&[("a", false)]);
    let failed = am
        .wait_for("the resolution, refused", |h| {
            resolution(h).is_some() && !h.delivered()
        })
        .await;
    let ends = resolution(&failed).unwrap();
    d.kill_9();

    // back up, both of them: the queued resolution goes out, with its own resolve time
    am.answer(Answer::Status(200));
    let d = d.start_again();
    d.wait_ready().await;
    let delivered = am
        .wait_for("the resolution, delivered after the restart", |h| {
            resolution(h).is_some() && h.delivered()
        })
        .await;
    assert_eq!(resolution(&delivered), Some(ends));
}

/// README's topology "HA pair + Alertmanager cluster" from its example,
/// `fixtures/examples/ha-pair-alertmanager.yml`, as shipped but for the addresses (the target,
/// the two Alertmanagers, the rule file's path, the loopback listener), `replica: b` for the
/// second replica and a 1 s `resend_delay`, so the window in which a duplicate would show is
/// seconds, not minutes. The seed rules' `ScaiDNSWebhookEventsFailing` (no `for`) fires on both
/// replicas at the example's 15 s intervals; the cluster notifies the webhook once, without the
/// `replica` label the example drops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_ha_pair_notifies_once_through_the_cluster() {
    let Some(am_bin) = installed("prometheus-alertmanager", "prometheus-alertmanager") else {
        return;
    };
    tokio::time::timeout(BOUND, example_ha_pair(&am_bin))
        .await
        .unwrap_or_else(|_| panic!("the example HA run took longer than {BOUND:?}"));
}

async fn example_ha_pair(am_bin: &Path) {
    let target = std::sync::Arc::new(FakeTarget::start().await);
    // a webhook event fails every 100 ms: the counter rises between any two scrapes
    let t = target.clone();
    let _failing = tokio::spawn(async move {
        for n in 0u64.. {
            t.set_metrics(&format!(
                "# TYPE scaidns_webhook_events_total counter\n\
                 scaidns_webhook_events_total{{event_type=\"record.created\",status=\"error\"}} {n}\n"
            ));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let sink = WebhookSink::start(Answer::Status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let (am1, am2) = cluster(am_bin, dir.path(), &sink).await;

    let root = crate::common::project_dir();
    let example =
        std::fs::read_to_string(root.join("fixtures/examples/ha-pair-alertmanager.yml")).unwrap();
    let rules = root.join("rules/scaidns.yml");
    let replica = |name: &str| {
        let mut yaml = example.clone();
        for (from, to) in [
            (
                "http://10.0.0.20:8000/metrics".to_string(),
                target.url("/metrics"),
            ),
            (
                "http://10.0.0.20:8000/health/ready".to_string(),
                target.url("/health"),
            ),
            (
                "[\"http://10.0.0.31:9093\", \"http://10.0.0.32:9093\"]".to_string(),
                format!("[\"{}\", \"{}\"]", am1.base, am2.base),
            ),
            (
                "../../rules/scaidns.yml".to_string(),
                rules.display().to_string(),
            ),
            (
                "resend_delay: 1m".to_string(),
                "resend_delay: 1s".to_string(),
            ),
            (
                "external_labels: { replica: a }".to_string(),
                format!("external_labels: {{ replica: {name} }}"),
            ),
            // the daemon listens where the test says (TOCSIN_LISTEN), on loopback
            (
                "server: { listen: 0.0.0.0:9477 }".to_string(),
                String::new(),
            ),
        ] {
            assert!(yaml.contains(&from), "the example no longer has {from}");
            yaml = yaml.replace(&from, &to);
        }
        yaml
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Daemon::in_dir(dir_a.path())
        .config(&replica("a"))
        .env("AM_TOKEN", "x")
        .start();
    let b = Daemon::in_dir(dir_b.path())
        .config(&replica("b"))
        .env("AM_TOKEN", "x")
        .start();
    a.wait_ready().await;
    b.wait_ready().await;

    // two scrapes 15 s apart, then an evaluation at 15 s: up to ~45 s
    Deadline::within("the firing notification", Duration::from_secs(90))
        .until(|| sink.hits().iter().any(|h| h.status() == "firing"))
        .await;
    let first = sink.bodies()[0].clone();
    let alert = &first["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "ScaiDNSWebhookEventsFailing");
    assert!(
        alert["labels"].get("replica").is_none(),
        "the example drops the replica label: {alert}"
    );
    // both replicas went on delivering to both Alertmanagers for longer than the peer timeout
    // and the group interval: still the one notification. A firing alert is resent at the
    // evaluations after `resend_delay`, here every 15 s: two more deliveries to each are 30 s,
    // over the 10 s group interval and the 2 s peer timeout in which a duplicate would come
    for d in [&a, &b] {
        for i in [0, 1] {
            let n = d.metric(&delivered("alertmanager", i)).await;
            d.wait_metric(
                &delivered("alertmanager", i),
                n + 2.0,
                Duration::from_secs(60),
            )
            .await;
        }
    }
    let got: Vec<String> = sink
        .bodies()
        .iter()
        .flat_map(|b| {
            b["alerts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| format!("{} {}", b["status"], a["labels"]["alertname"]))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        got.iter()
            .filter(|g| g.contains("ScaiDNSWebhookEventsFailing"))
            .count(),
        1,
        "{}",
        summary(&sink)
    );
}
