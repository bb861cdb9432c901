//! Alertmanager's own CLI, `amtool` (Debian's prometheus-alertmanager 0.25), against tocsin's
//! `/api/v2/`: silences added, queried, expired and imported; alerts queried with the active,
//! silenced and inhibited filters and by receiver. Skips with a printed reason without amtool.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::*;

const CONFIG: &str = r#"
evaluation: { interval: 1s }
rule_files: [rules.yml]
route:
  receiver: ops
  group_by: [alertname]
  group_wait: 1h
  routes:
    - matchers: ['severity="critical"']
      receiver: pager
receivers:
  - name: ops
    webhook: { url: "http://127.0.0.1:9/unused" }
  - name: pager
    webhook: { url: "http://127.0.0.1:9/unused" }
inhibit_rules:
  - source_matchers: ['severity="critical"']
    target_matchers: ['severity="warning"']
"#;

const RULES: &str = r#"
groups:
  - name: g
    interval: 1s
    rules:
      - alert: Down
        expr: vector(1)
        labels: { severity: critical }
        annotations: { summary: "it is down" }
      - alert: Noise
        expr: vector(1)
        labels: { severity: warning }
"#;

/// Runs amtool against `base` (HOME in `home`, so no user configuration is read): exit code,
/// stdout, stderr.
fn amtool(home: &Path, base: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new("amtool")
        .arg(format!("--alertmanager.url={base}"))
        .args(args)
        .env("HOME", home)
        .env("USER", "tester")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn json(out: &str) -> Vec<Value> {
    serde_json::from_str::<Value>(out)
        .unwrap_or_else(|e| panic!("not json ({e}): {out}"))
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn names(alerts: &[Value]) -> Vec<String> {
    let mut n: Vec<String> = alerts
        .iter()
        .map(|a| a["labels"]["alertname"].as_str().unwrap_or("").to_string())
        .collect();
    n.sort();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amtool_manages_silences_and_queries_alerts() {
    if Command::new("amtool").arg("--version").output().is_err() {
        eprintln!("skipping: amtool not found (apt install prometheus-alertmanager)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::in_dir(dir.path())
        .file("rules.yml", RULES)
        .config(CONFIG)
        .start();
    d.wait_ready().await;
    let base = d.base.clone();
    let home = dir.path();
    // both alerts fire; Noise is inhibited by Down
    d.wait_json("/api/v2/alerts", Duration::from_secs(20), |v| {
        v.as_array().is_some_and(|a| a.len() == 2)
    })
    .await;

    // amtool alert query: active only by default (Noise is inhibited)
    let (code, out, err) = amtool(home, &base, &["alert", "query", "-o", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let active = json(&out);
    assert_eq!(names(&active), ["Down"], "{out}");
    assert_eq!(active[0]["receivers"][0]["name"], "pager");
    assert_eq!(active[0]["annotations"]["summary"], "it is down");
    assert_eq!(active[0]["status"]["state"], "active");
    // a state flag selects that state only, as with Alertmanager
    let (_, out, _) = amtool(home, &base, &["alert", "query", "-i", "-o", "json"]);
    assert_eq!(names(&json(&out)), ["Noise"], "{out}");
    let (_, out, _) = amtool(home, &base, &["alert", "query", "-a", "-i", "-o", "json"]);
    let inhibited = json(&out);
    assert_eq!(names(&inhibited), ["Down", "Noise"], "{out}");
    let noise = inhibited
        .iter()
        .find(|a| a["labels"]["alertname"] == "Noise")
        .unwrap();
    assert_eq!(noise["status"]["state"], "suppressed");
    assert_eq!(noise["status"]["inhibitedBy"][0], active[0]["fingerprint"]);
    let (_, out, _) = amtool(
        home,
        &base,
        &["alert", "query", "-i", "-r", "ops", "-o", "json"],
    );
    assert_eq!(names(&json(&out)), ["Noise"], "{out}");
    let (code, out, err) = amtool(home, &base, &["alert", "query", "alertname=Down"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Down") && out.contains("it is down"), "{out}");

    // silences: add, query, the alert is silenced, expire, import
    let (code, out, err) = amtool(
        home,
        &base,
        &[
            "silence",
            "add",
            "alertname=Down",
            "-a",
            "alice",
            "-c",
            "maintenance",
            "-d",
            "2h",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let id = out.trim().to_string();
    assert!(!id.is_empty());
    let (code, out, err) = amtool(home, &base, &["silence", "query", "-o", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let silences = json(&out);
    assert_eq!(silences.len(), 1, "{out}");
    assert_eq!(silences[0]["id"], id.as_str());
    assert_eq!(silences[0]["createdBy"], "alice");
    assert_eq!(silences[0]["status"]["state"], "active");
    let (_, out, _) = amtool(home, &base, &["silence", "query", "-q", "alertname=Down"]);
    assert_eq!(out.trim(), id);
    let (_, out, _) = amtool(home, &base, &["silence", "query", "-q", "alertname=Other"]);
    assert_eq!(out.trim(), "");
    let (_, out, _) = amtool(home, &base, &["alert", "query", "-o", "json"]);
    assert!(
        json(&out).is_empty(),
        "a silenced alert is not active: {out}"
    );
    let (_, out, _) = amtool(home, &base, &["alert", "query", "-s", "-o", "json"]);
    let silenced = json(&out);
    assert_eq!(names(&silenced), ["Down"], "{out}");
    assert_eq!(silenced[0]["status"]["silencedBy"][0], id.as_str());
    let export = dir.path().join("silences.json");
    let (_, out, _) = amtool(home, &base, &["silence", "query", "-o", "json"]);
    std::fs::write(&export, out).unwrap();

    let (code, _, err) = amtool(home, &base, &["silence", "expire", &id]);
    assert_eq!(code, Some(0), "{err}");
    let (_, out, _) = amtool(home, &base, &["silence", "query", "-q"]);
    assert_eq!(out.trim(), "", "expired silences are not listed by default");
    let (_, out, _) = amtool(home, &base, &["silence", "query", "--expired", "-q"]);
    assert_eq!(out.trim(), id);
    let (code, _, err) = amtool(home, &base, &["silence", "expire", "no-such-id"]);
    assert_ne!(code, Some(0), "{err}");

    let (code, out, err) = amtool(
        home,
        &base,
        &["silence", "import", export.to_str().unwrap()],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let (_, out, _) = amtool(home, &base, &["silence", "query", "-q"]);
    let ids: Vec<&str> = out.lines().collect();
    assert_eq!(ids.len(), 1, "{out}");
    assert_ne!(ids[0], id, "an import creates a new silence");

    // one silence by id, and the receivers
    let one: Value = serde_json::from_str(
        &d.get_text(&format!("/api/v2/silence/{}", ids[0]))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(one["createdBy"], "alice");
    let receivers = d.get_json("/api/v2/receivers").await;
    assert_eq!(
        receivers,
        serde_json::json!([{"name": "ops"}, {"name": "pager"}])
    );
    let groups = d.get_json("/api/v2/alerts/groups").await;
    let groups = groups.as_array().unwrap();
    assert!(
        groups
            .iter()
            .any(|g| g["receiver"]["name"] == "pager" && g["labels"]["alertname"] == "Down"),
        "{groups:?}"
    );

    // a bad filter is Alertmanager's 400 with the message as a JSON string
    let resp = reqwest::get(d.url("/api/v2/alerts?filter=%7B%7B"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert!(
        body.as_str().is_some_and(|m| m.contains("bad matcher")),
        "{body}"
    );
    let resp = reqwest::get(d.url("/api/v2/alerts?active=maybe"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // the load balancer checks Prometheus and Alertmanager users point at them
    let resp = reqwest::get(d.url("/-/healthy")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "tocsin is Healthy.\n");
    let resp = reqwest::get(d.url("/-/ready")).await.unwrap();
    assert_eq!(resp.status(), 200);
}

/// `amtool alert add` posts to `POST /api/v2/alerts`: the alert goes through the same pipeline
/// as tocsin's own (routed, grouped, sent to the webhook), shows in both APIs, and resolves when
/// a post gives it an end. A bad post is refused whole with Alertmanager's error shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posted_alerts_go_through_the_pipeline() {
    if Command::new("amtool").arg("--version").output().is_err() {
        eprintln!("skipping: amtool not found (apt install prometheus-alertmanager)");
        return;
    }
    let sink = WebhookSink::start(Answer::Status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "evaluation: {{ interval: 1s }}\nrule_files: [rules.yml]\n\
         route:\n  receiver: ops\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\n\
         receivers:\n  - name: ops\n    webhook: {{ url: \"{}\" }}\n",
        sink.url()
    );
    let d = Daemon::in_dir(dir.path())
        .file(
            "rules.yml",
            "groups:\n  - name: g\n    interval: 1s\n    rules:\n      - alert: Never\n        expr: vector(1) == 0\n",
        )
        .config(&config)
        .start();
    d.wait_ready().await;
    let home = dir.path();
    let (code, _, err) = amtool(
        home,
        &d.base,
        &[
            "alert",
            "add",
            "BackupFailed",
            "host=db1",
            "--annotation=summary=nightly backup failed",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let hit = sink
        .wait_for("the posted alert, firing", |h| h.status() == "firing")
        .await;
    assert_eq!(hit.body["alerts"][0]["labels"]["alertname"], "BackupFailed");
    assert_eq!(hit.body["alerts"][0]["labels"]["host"], "db1");
    assert_eq!(
        hit.body["alerts"][0]["annotations"]["summary"],
        "nightly backup failed"
    );
    // both APIs list it
    let (code, out, err) = amtool(home, &d.base, &["alert", "query", "-o", "json"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(names(&json(&out)), ["BackupFailed"], "{out}");
    let v1 = d.get_json("/api/v1/alerts").await;
    assert_eq!(
        v1["data"]["alerts"][0]["labels"]["alertname"], "BackupFailed",
        "{v1}"
    );

    // a post with an end in the past resolves it
    let client = reqwest::Client::new();
    let resolve = serde_json::json!([{
        "labels": {"alertname": "BackupFailed", "host": "db1"},
        "endsAt": "2000-01-01T00:00:00Z",
    }]);
    let resp = client
        .post(d.url("/api/v2/alerts"))
        .header("content-type", "application/json")
        .body(resolve.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    sink.wait_for("the posted alert, resolved", |h| h.status() == "resolved")
        .await;
    let (_, out, _) = amtool(home, &d.base, &["alert", "query", "-o", "json"]);
    assert!(json(&out).is_empty(), "{out}");

    // refused whole, naming the alert: no labels; an end before the start; not JSON
    for (body, want) in [
        (
            r#"[{"labels":{"alertname":"Ok"}},{"labels":{}}]"#,
            "alert 1: at least one label pair required",
        ),
        (
            r#"[{"labels":{"a":"b"},"startsAt":"2030-01-01T00:00:00Z","endsAt":"2029-01-01T00:00:00Z"}]"#,
            "alert 0: start time must be before end time",
        ),
        ("[{", "invalid alerts"),
    ] {
        let resp = client
            .post(d.url("/api/v2/alerts"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{body}");
        let msg: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
        assert!(msg.as_str().unwrap().contains(want), "{msg}");
    }
    let (_, out, _) = amtool(home, &d.base, &["alert", "query", "-o", "json"]);
    assert!(
        json(&out).is_empty(),
        "nothing of a refused post is taken: {out}"
    );
}
