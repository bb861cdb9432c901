//! Side by side with the real peer: the same target, the same rule file
//! (`fixtures/peer/rules.yml`: `for: 5s`, templated labels and annotations) and the same route
//! timing go to tocsin (the real binary) and to Prometheus 2.42 + Alertmanager 0.25 (Debian's
//! `prometheus` and `prometheus-alertmanager`, started by the test on free 127.0.0.1 ports with
//! their data in a temp dir, stopped by PID when the test ends, failing or not). The test flips
//! the target's `demo_condition{cond="a"}` on, waits for the firing notification on both
//! webhooks, flips it off, waits for the resolved one on both, and compares what arrived:
//!
//! - the sequence of notifications (firing, then resolved) and, per notification, `status`,
//!   the alert's labels and annotations: equal. No label is left out of the comparison: the
//!   Prometheus job is named as tocsin's target (`svc`), so `job` and `instance`
//!   (`host:port` of the URL on both sides) agree, and the Prometheus config sets no external
//!   labels;
//! - `startsAt`: the firing time on both sides (at least `for` − one interval after the target
//!   turned the condition on; the pending time would be less), the two within two intervals
//!   (scrape and evaluation phases differ);
//! - `endsAt`: for a firing alert, compared as Alertmanager reads it (zero, or a time after the
//!   notification: "not ended"; Alertmanager forwards Prometheus's `ValidUntil`, tocsin writes
//!   Go's zero time); for the resolved alert, the resolve time, after the target turned the
//!   condition off, the two within two intervals;
//! - the payload's shape: the same top-level keys with the same JSON types, the same keys and
//!   types per alert (Alertmanager's webhook version 4); `version`, `groupKey`, `receiver`,
//!   `truncatedAlerts`, `groupLabels`, `commonLabels` and `commonAnnotations` equal. Left out of
//!   the value comparison: `externalURL` (each side's own address), `generatorURL` (Prometheus
//!   links its graph page for the expression, tocsin its alerts API) and `fingerprint` (16 hex
//!   digits on both sides, but tocsin's own label hash rather than Prometheus's FNV-1a).
//!
//! Without the two binaries on the PATH the test prints `skipping: …` and passes (CI installs
//! them with apt). Every wait is a bounded poll; the whole test is bounded by [`BOUND`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::common::{
    Answer, Daemon, Deadline, FakeTarget, Hit, WebhookSink, free_addr, on_path, project_dir,
};

/// The rule file both sides load.
const RULES: &str = "fixtures/peer/rules.yml";
/// The rule's `for:` and the scrape/evaluation/group interval, in ms.
const FOR_MS: i64 = 5_000;
const INTERVAL_MS: i64 = 1_000;
/// The bound on the whole test (start-up included).
const BOUND: Duration = Duration::from_secs(60);
/// The bound on the start of the three processes (Prometheus replays an empty WAL, quickly).
const START: Duration = Duration::from_secs(25);
/// The bound on one notification reaching both webhooks.
const NOTIFY: Duration = Duration::from_secs(15);

/// A peer process this test started; dropping it kills it by its PID (through `Child`) and,
/// when the test is failing, prints its log.
struct Peer {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Peer {
    fn start(name: &'static str, bin: &Path, args: &[String], dir: &Path) -> Peer {
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
        Peer { name, child, log }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// RFC 3339 (any precision) to Unix ms.
fn ms(rfc3339: &Value) -> i64 {
    let s = rfc3339.as_str().expect("a time string");
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .timestamp_millis()
}

/// Alertmanager's reading of `endsAt` (`types.Alert.Resolved`): the alert has ended when the
/// time is set (not Go's zero time) and is not after `at`.
fn ended(ends_at: &Value, at: i64) -> bool {
    let t = ms(ends_at);
    t > 0 && t <= at
}

/// The JSON type of `v`, for the shape comparison.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `key -> type` of every member of an object.
fn shape(v: &Value) -> BTreeMap<String, &'static str> {
    v.as_object()
        .expect("an object")
        .iter()
        .map(|(k, v)| (k.clone(), kind(v)))
        .collect()
}

/// Whether a JSON object maps strings to strings (labels, annotations).
fn string_map(v: &Value) -> bool {
    v.as_object()
        .is_some_and(|m| m.values().all(|v| v.is_string()))
}

async fn get_json(url: &str) -> Option<Value> {
    let text = reqwest::get(url).await.ok()?.text().await.ok()?;
    serde_json::from_str(&text).ok()
}

async fn ready(url: &str) -> bool {
    reqwest::get(url)
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// Whether an instant query for `demo_condition` on the API at `base` returns one series with
/// value `want` (Prometheus's and tocsin's `/api/v1/query` have the same shape).
async fn sees(base: &str, want: &str) -> bool {
    let Some(v) = get_json(&format!("{base}/api/v1/query?query=demo_condition")).await else {
        return false;
    };
    v["data"]["result"]
        .as_array()
        .is_some_and(|r| r.len() == 1 && r[0]["value"][1] == want)
}

/// The notifications of one side up to and including the first resolved one.
fn sequence(sink: &WebhookSink) -> Vec<Hit> {
    let mut out = Vec::new();
    for hit in sink.hits() {
        let resolved = hit.status() == "resolved";
        out.push(hit);
        if resolved {
            break;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tocsin_and_prometheus_with_alertmanager_send_the_same_notifications() {
    let (Some(prometheus), Some(alertmanager)) =
        (on_path("prometheus"), on_path("prometheus-alertmanager"))
    else {
        println!(
            "skipping: prometheus and prometheus-alertmanager not installed \
             (apt install prometheus prometheus-alertmanager)"
        );
        return;
    };
    tokio::time::timeout(BOUND, side_by_side(&prometheus, &alertmanager))
        .await
        .unwrap_or_else(|_| panic!("the side-by-side run took longer than {BOUND:?}"));
}

async fn side_by_side(prometheus: &Path, alertmanager: &Path) {
    let rules = project_dir().join(RULES);
    let target = FakeTarget::with_conditions(&["a"]).await;
    let am_hook = WebhookSink::start(Answer::Status(200)).await;
    let our_hook = WebhookSink::start(Answer::Status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let (prom_addr, am_addr) = (free_addr(), free_addr());
    let target_addr = target.base().trim_start_matches("http://");

    // Alertmanager: one route, one webhook, the route timing tocsin gets too
    let route = "group_by: [alertname, cond], group_wait: 0s, group_interval: 1s, \
                 repeat_interval: 1h";
    std::fs::write(
        dir.path().join("alertmanager.yml"),
        format!(
            "route: {{ receiver: hook, {route} }}\n\
             receivers:\n  - name: hook\n    webhook_configs:\n      \
             - {{ url: \"{}\", send_resolved: true }}\n",
            am_hook.url()
        ),
    )
    .unwrap();
    let _am = Peer::start(
        "alertmanager",
        alertmanager,
        &[
            "--config.file=alertmanager.yml".into(),
            "--storage.path=am-data".into(),
            format!("--web.listen-address={am_addr}"),
            // no cluster port (it would listen on every interface)
            "--cluster.listen-address=".into(),
            "--log.level=warn".into(),
        ],
        dir.path(),
    );

    // Prometheus: scrape the target as job `svc` (tocsin's target name), the rule file,
    // alerts to that Alertmanager
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global: {{ scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s }}\n\
             rule_files: [\"{}\"]\n\
             alerting:\n  alertmanagers:\n    - static_configs: [{{ targets: [\"{am_addr}\"] }}]\n\
             scrape_configs:\n  - job_name: svc\n    \
             static_configs: [{{ targets: [\"{target_addr}\"] }}]\n",
            rules.display()
        ),
    )
    .unwrap();
    let _prom = Peer::start(
        "prometheus",
        prometheus,
        &[
            "--config.file=prometheus.yml".into(),
            "--storage.tsdb.path=prom-data".into(),
            format!("--web.listen-address={prom_addr}"),
            "--log.level=warn".into(),
        ],
        dir.path(),
    );

    // tocsin: the same target, rule file and route timing
    let ours = tempfile::tempdir().unwrap();
    let d = Daemon::in_dir(ours.path())
        .file("rules.yml", &std::fs::read_to_string(&rules).unwrap())
        .config(&format!(
            "storage: {{ flush_interval: 1s }}\n\
             scrape: {{ interval: 1s, timeout: 1s }}\n\
             evaluation: {{ interval: 1s }}\n\
             rule_files: [rules.yml]\n\
             targets:\n  - name: svc\n    metrics: {}\n\
             route: {{ receiver: hook, {route} }}\n\
             receivers:\n  - name: hook\n    webhook: {{ url: \"{}\" }}\n",
            target.url("/metrics"),
            our_hook.url()
        ))
        .start();

    // all three up, and both sides have scraped the condition (off)
    let (prom, am) = (format!("http://{prom_addr}"), format!("http://{am_addr}"));
    let start = Deadline::within("prometheus, alertmanager and tocsin up", START)
        .every(Duration::from_millis(200));
    loop {
        if ready(&format!("{am}/-/ready")).await
            && sees(&prom, "0").await
            && sees(&d.base, "0").await
        {
            break;
        }
        start.tick().await;
    }

    // on: both fire
    let on_at = now_ms();
    target.set_conditions(&[("a", true)]);
    let firing = Deadline::within("the firing notification on both webhooks", NOTIFY);
    firing
        .until(|| {
            [&am_hook, &our_hook]
                .iter()
                .all(|s| s.hits().iter().any(|h| h.status() == "firing"))
        })
        .await;
    let firing_seen_at = now_ms();

    // off: both resolve
    let off_at = now_ms();
    target.set_conditions(&[("a", false)]);
    let resolved = Deadline::within("the resolved notification on both webhooks", NOTIFY);
    resolved
        .until(|| {
            [&am_hook, &our_hook]
                .iter()
                .all(|s| s.hits().iter().any(|h| h.status() == "resolved"))
        })
        .await;

    let theirs = sequence(&am_hook);
    let mine = sequence(&our_hook);
    for (side, seq) in [("alertmanager", &theirs), ("tocsin", &mine)] {
        println!("--- {side} ---");
        for h in seq.iter() {
            println!("{}", h.body);
        }
    }

    // the same sequence
    let statuses =
        |seq: &[Hit]| -> Vec<String> { seq.iter().map(|h| h.status().to_string()).collect() };
    assert_eq!(statuses(&theirs), ["firing", "resolved"], "alertmanager");
    assert_eq!(statuses(&mine), statuses(&theirs), "tocsin vs alertmanager");

    for (n, (t, m)) in theirs.iter().zip(&mine).enumerate() {
        let (tb, mb) = (&t.body, &m.body);
        let what = format!("notification {n} ({})", t.status());
        // the shape: Alertmanager's webhook v4, key for key, type for type
        assert_eq!(shape(mb), shape(tb), "{what}: top-level keys and types");
        for key in ["groupLabels", "commonLabels", "commonAnnotations"] {
            assert!(
                string_map(&tb[key]) && string_map(&mb[key]),
                "{what}: {key}"
            );
        }
        assert_eq!(mb["version"], tb["version"], "{what}: version");
        assert_eq!(mb["groupKey"], tb["groupKey"], "{what}: groupKey");
        assert_eq!(
            mb["truncatedAlerts"], tb["truncatedAlerts"],
            "{what}: truncatedAlerts"
        );
        assert_eq!(mb["status"], tb["status"], "{what}: status");
        assert_eq!(mb["receiver"], tb["receiver"], "{what}: receiver");
        assert_eq!(mb["groupLabels"], tb["groupLabels"], "{what}: groupLabels");
        assert_eq!(
            mb["commonLabels"], tb["commonLabels"],
            "{what}: commonLabels"
        );
        assert_eq!(
            mb["commonAnnotations"], tb["commonAnnotations"],
            "{what}: commonAnnotations"
        );
        let (ta, ma) = (&tb["alerts"], &mb["alerts"]);
        assert_eq!(
            ta.as_array().unwrap().len(),
            1,
            "{what}: alertmanager: {tb}"
        );
        assert_eq!(ma.as_array().unwrap().len(), 1, "{what}: tocsin: {mb}");
        let (ta, ma) = (&ta[0], &ma[0]);
        assert_eq!(shape(ma), shape(ta), "{what}: alert keys and types");
        assert!(string_map(&ta["labels"]) && string_map(&ma["labels"]));
        assert!(string_map(&ta["annotations"]) && string_map(&ma["annotations"]));
        assert_eq!(ma["status"], ta["status"], "{what}: alert status");
        assert_eq!(ma["labels"], ta["labels"], "{what}: labels");
        assert_eq!(ma["annotations"], ta["annotations"], "{what}: annotations");
        // a fingerprint is 16 lowercase hex digits on both sides; the values differ (tocsin's own
        // label hash, not Prometheus's FNV-1a), as do generatorURL (Prometheus links the
        // expression's graph, tocsin its alerts API) and externalURL (each its own address)
        for a in [ta, ma] {
            let fp = a["fingerprint"].as_str().unwrap();
            assert!(
                fp.len() == 16
                    && fp
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "{what}: fingerprint {fp}"
            );
        }

        // startsAt: the firing time on both sides, not the pending time
        let (ts, ms_) = (ms(&ta["startsAt"]), ms(&ma["startsAt"]));
        for (side, starts) in [("alertmanager", ts), ("tocsin", ms_)] {
            assert!(
                starts - on_at >= FOR_MS - INTERVAL_MS,
                "{what}: {side}'s startsAt is {} ms after the condition turned on: \
                 the pending time, not the firing time",
                starts - on_at
            );
        }
        assert!(
            (ts - ms_).abs() <= 2 * INTERVAL_MS,
            "{what}: startsAt {} (alertmanager) vs {} (tocsin)",
            ta["startsAt"],
            ma["startsAt"]
        );

        // endsAt
        if t.status() == "firing" {
            // as Alertmanager reads it: not ended when the notification went out
            assert!(!ended(&ta["endsAt"], firing_seen_at), "{what}: {ta}");
            assert!(!ended(&ma["endsAt"], firing_seen_at), "{what}: {ma}");
        } else {
            let (te, me) = (ms(&ta["endsAt"]), ms(&ma["endsAt"]));
            for (side, ends) in [("alertmanager", te), ("tocsin", me)] {
                assert!(
                    ends >= off_at,
                    "{what}: {side}'s endsAt is before the condition turned off"
                );
            }
            assert!(
                (te - me).abs() <= 2 * INTERVAL_MS,
                "{what}: endsAt {} (alertmanager) vs {} (tocsin)",
                ta["endsAt"],
                ma["endsAt"]
            );
        }
    }
    // one alert, one start: the resolved notification repeats the firing one's startsAt
    for seq in [&theirs, &mine] {
        assert_eq!(
            seq[0].body["alerts"][0]["startsAt"],
            seq[1].body["alerts"][0]["startsAt"]
        );
    }
}
