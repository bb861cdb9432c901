//! An HA pair of tocsin daemons delivering straight to one webhook and one mailbox (no
//! Alertmanager in between): the idempotency key names the group state, the same on both
//! replicas, so a receiver can keep one of the two notifications.
//!
//! Both daemons (each its own store, `external_labels: {replica: a|b}`) evaluate the same rule
//! group on one remote engine, Debian's real `victoria-metrics`, with a `query_offset` that keeps
//! every query clear of the engine's latency window: at each (wall-clock aligned) evaluation slot
//! both ask the same question about the same settled data, so both see the alert fire, and
//! resolve, at the same slot. The series is written after both daemons run, with the change a few
//! seconds ahead. What the test proves:
//! - the firing notification of each replica carries the same `Idempotency-Key` (webhook) and
//!   `X-Tocsin-Idempotency-Key` (email), and so does the resolved one;
//! - the resolved notification (a changed group state) has another key than the firing one;
//! - each replica's `external_labels` are in its webhook JSON and its email.
//!
//! Without the binary on the PATH the test prints `skipping: …` and passes.

use std::time::Duration;

use serde_json::Value;

use crate::common::installed;
use crate::common::{Answer, Daemon, Deadline, Hit, Script, WebhookSink, smtp_server};
use crate::datasource::{now_ms, victoria_metrics, vm_import};

const WAIT: Duration = Duration::from_secs(60);

/// The group evaluates every 3 s: an evaluation on a loaded machine stays within its budget
/// (the interval), so neither replica skips the slot where the alert fires or resolves.
const RULES: &str = "groups:\n  - name: ha\n    datasource: engine\n    interval: 3s\n    rules:\n      \
                     - alert: HaHigh\n        expr: demo_ha > 1\n        \
                     annotations: { summary: 'value {{ $value }}' }\n";

/// One replica's tocsin.yml: the engine with a 5 s `query_offset`, one receiver with a webhook
/// and an email, grouped by alertname, sent at once.
fn tocsin_yml(replica: &str, engine: &str, hook: &str, smtp: &str) -> String {
    format!(
        "evaluation: {{ interval: 1s }}\nexternal_labels: {{ replica: {replica} }}\n\
         datasources:\n  - {{ name: engine, type: prometheus, url: \"{engine}\", timeout: 2s, query_offset: 5s }}\n\
         rule_files: [rules.yml]\n\
         route: {{ receiver: ops, group_by: [alertname], group_wait: 0s, group_interval: 1s, repeat_interval: 1h }}\n\
         receivers:\n  - name: ops\n    webhook: {{ url: \"{hook}\", send_resolved: true }}\n    \
         email: {{ to: [ops@example.org], from: tocsin@example.org, smarthost: \"{smtp}\", tls: none, send_resolved: true }}\n"
    )
}

/// Whether `daemon` has evaluated the group at least once.
async fn evaluated(daemon: &Daemon) {
    daemon
        .wait_json("/api/v1/rules", WAIT, |v| {
            v["data"]["groups"][0]["rules"][0]["health"] == "ok"
        })
        .await;
}

fn replica(h: &Hit) -> String {
    h.body["alerts"][0]["labels"]["replica"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The request of `replica` with status `status` (`firing`, `resolved`).
fn hit<'a>(hits: &'a [Hit], replica_name: &str, status: &str) -> &'a Hit {
    hits.iter()
        .find(|h| replica(h) == replica_name && h.status() == status)
        .unwrap_or_else(|| panic!("no {status} request from replica {replica_name}"))
}

fn mail_key(data: &str) -> String {
    data.lines()
        .find_map(|l| l.strip_prefix("X-Tocsin-Idempotency-Key: "))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_replicas_give_one_group_state_the_same_idempotency_key() {
    let Some(bin) = installed("victoria-metrics", "victoria-metrics") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let vm = victoria_metrics(&bin, dir.path()).await;
    let hook = WebhookSink::start(Answer::Status(200)).await;
    let (smtp, mails) = smtp_server(Script::default()).await;
    let smtp = smtp.to_string();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Daemon::in_dir(dir_a.path())
        .file("rules.yml", RULES)
        .config(&tocsin_yml("a", &vm.url(), hook.url(), &smtp))
        .start();
    let b = Daemon::in_dir(dir_b.path())
        .file("rules.yml", RULES)
        .config(&tocsin_yml("b", &vm.url(), hook.url(), &smtp))
        .start();
    a.wait_ready().await;
    b.wait_ready().await;
    evaluated(&a).await;
    evaluated(&b).await;

    // demo_ha: 0, then 3 for 21 s from 8 s ahead, then 0 again; every second, written now
    let now = now_ms();
    let (fire, resolve) = (now + 8_000, now + 29_000);
    let text: String = (now - 60_000..now + 90_000)
        .step_by(1_000)
        .map(|t| {
            let v = if (fire..resolve).contains(&t) { 3 } else { 0 };
            format!("demo_ha{{job=\"vm\"}} {v} {t}\n")
        })
        .collect();
    vm_import(&vm, text).await;

    Deadline::within("a firing and a resolved request from each replica", WAIT)
        .until(|| {
            let hits = hook.hits();
            ["a", "b"].iter().all(|r| {
                ["firing", "resolved"]
                    .iter()
                    .all(|s| hits.iter().any(|h| replica(h) == *r && h.status() == *s))
            })
        })
        .await;
    let hits = hook.hits();
    let (fa, fb) = (hit(&hits, "a", "firing"), hit(&hits, "b", "firing"));
    let (ra, rb) = (hit(&hits, "a", "resolved"), hit(&hits, "b", "resolved"));
    // each replica's alert, with its external label
    for (h, r) in [(fa, "a"), (fb, "b"), (ra, "a"), (rb, "b")] {
        let alert: &Value = &h.body["alerts"][0];
        assert_eq!(alert["labels"]["replica"], r, "{}", h.body);
        assert_eq!(alert["labels"]["alertname"], "HaHigh", "{}", h.body);
        assert_eq!(alert["labels"]["job"], "vm", "{}", h.body);
    }
    // the same alert times on both (the same slots), so the same keys
    assert_eq!(
        fa.body["alerts"][0]["startsAt"],
        fb.body["alerts"][0]["startsAt"]
    );
    assert_eq!(
        ra.body["alerts"][0]["endsAt"],
        rb.body["alerts"][0]["endsAt"]
    );
    assert!(!fa.key().is_empty());
    assert_eq!(fa.key(), fb.key(), "one firing state, one key");
    assert_eq!(ra.key(), rb.key(), "one resolved state, one key");
    assert_ne!(fa.key(), ra.key(), "a changed state, another key");
    // nothing else was sent: one firing and one resolved request from each
    assert_eq!(hits.len(), 4, "{:#?}", hook.seen());

    // the emails: the same keys in their header, each replica's label in its body
    Deadline::within("four mails", WAIT)
        .until(|| mails.lock().unwrap().len() >= 4)
        .await;
    let mails = mails.lock().unwrap().clone();
    for m in &mails {
        let key = mail_key(&m.data);
        assert!(
            key == fa.key() || key == ra.key(),
            "mail key {key:?} is neither the firing nor the resolved one:\n{}",
            m.data
        );
    }
    for r in ["a", "b"] {
        let ours: Vec<_> = mails
            .iter()
            .filter(|m| {
                m.data.contains(&format!("replica=\"{r}\""))
                    || m.data.contains(&format!("replica=3D\"{r}\""))
            })
            .collect();
        assert_eq!(ours.len(), 2, "two mails name replica {r}");
        let keys: Vec<String> = ours.iter().map(|m| mail_key(&m.data)).collect();
        assert!(
            keys.contains(&fa.key()) && keys.contains(&ra.key()),
            "{keys:?}"
        );
    }
}
