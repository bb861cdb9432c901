//! tocsin watching itself, in-process: its own metrics stored as `job="tocsin"`, the shipped
//! `tocsin:self` rules, and notifications that go out while the store cannot write (a full disk,
//! simulated with SQLite's `max_page_count`: SQLITE_FULL, what a full disk gives).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tocsin::clock::{Clock, ManualClock};
use tocsin::config::Config;
use tocsin::daemon::{Daemon, DaemonOptions};

use crate::common::{Answer, Deadline, FakeTarget, WebhookSink, free_addr};

/// The alert name of a webhook request's group (`group_by: [alertname]`).
fn alertname(h: &crate::common::Hit) -> &str {
    h.body["groupLabels"]["alertname"].as_str().unwrap_or("")
}

/// 300 series with long labels: the flush that writes them needs new pages of the file, so it
/// fails once the file may not grow.
fn filler() -> String {
    (0..300)
        .map(|i| format!("filler{{i=\"{i:0>80}\"}} 1\n"))
        .collect()
}

/// With the store unable to write: a user alert's firing notification is delivered (from
/// memory), and so is the shipped TocsinStoreCannotWrite alert, which fires from the
/// self-ingested metrics in the in-memory head. Once the store can write again, both are in the
/// notification history as delivered and in the notification log, and nothing was delivered
/// twice. Time runs 40 times faster than the wall clock (a manual clock the test advances), so
/// the shipped `for: 1m` passes in a few seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_go_out_while_the_store_cannot_write_and_are_recorded_once_it_can() {
    let dir = tempfile::tempdir().unwrap();
    let hook = WebhookSink::start(Answer::Reply(200, "ok")).await;
    let target = FakeTarget::start().await;
    target.set_metrics("x 0\n");
    let listen = free_addr().to_string();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(
        dir.path().join("rules/user.yml"),
        "groups:\n  - name: user\n    rules:\n      - alert: UserAlert\n        expr: x > 0\n",
    )
    .unwrap();
    let config = format!(
        "storage: {{ path: \"{}\", flush_interval: 200ms }}\n\
         scrape: {{ interval: 500ms }}\n\
         evaluation: {{ interval: 1s }}\n\
         rule_files: [\"tocsin:self\", rules/user.yml]\n\
         targets:\n  - name: svc\n    metrics: {}\n\
         route: {{ receiver: ops, group_by: [alertname], group_wait: 0s, group_interval: 1s, repeat_interval: 24h }}\n\
         receivers:\n  - name: ops\n    webhook: {{ url: \"{}\" }}\n\
         server: {{ listen: \"{listen}\" }}\n",
        dir.path().join("data/tocsin.db").display(),
        target.url("/metrics"),
        hook.url(),
    );
    let path = dir.path().join("tocsin.yml");
    std::fs::write(&path, config).unwrap();
    let cfg = Config::load(&path).unwrap();
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let driver = {
        let clock = clock.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                clock.advance(2_000);
            }
        })
    };
    let opts = DaemonOptions {
        source: Some(path),
        ..DaemonOptions::default()
    };
    let daemon = Daemon::start(cfg, clock.clone() as Arc<dyn Clock>, opts)
        .await
        .unwrap();
    let store = daemon.store().clone();

    // the shipped rules and the user's are loaded; a write succeeded
    Deadline::within("rules loaded and a store write", Duration::from_secs(20))
        .until(|| {
            daemon.rules().rules().rule_count() >= 8
                && store.write_health().last_success_ms.is_some()
        })
        .await;

    // the disk fills up: every write from now on fails (the first failed batch is retried
    // first by every later write, and it needs new pages)
    {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.simulate_full_disk(true))
            .await
            .unwrap()
            .unwrap();
    }
    target.set_metrics(&format!("x 0\n{}", filler()));
    Deadline::within("a store write failing", Duration::from_secs(20))
        .until(|| store.write_health().failures > 0)
        .await;

    // an alert fires while nothing can be written: its notification is delivered
    target.set_metrics(&format!("x 1\n{}", filler()));
    let user = hook
        .wait_for("UserAlert firing", |h| {
            alertname(h) == "UserAlert" && h.status() == "firing"
        })
        .await;
    // and tocsin's own alert about its store, from the self-ingested metrics
    let own = hook
        .wait_for("TocsinStoreCannotWrite firing", |h| {
            alertname(h) == "TocsinStoreCannotWrite" && h.status() == "firing"
        })
        .await;
    assert_eq!(own.body["commonLabels"]["severity"], "page");
    assert_eq!(own.body["commonLabels"]["job"], "tocsin");
    let failed_so_far = store.write_health().failures;
    assert!(failed_so_far > 1, "the store still cannot write");
    {
        // nothing of it reached the file yet
        let store = store.clone();
        let sent = tokio::task::spawn_blocking(move || store.sent(100, None))
            .await
            .unwrap()
            .unwrap();
        assert!(
            sent.iter().all(|r| r.idempotency_key != user.key()),
            "{sent:?}"
        );
    }

    // the disk has room again
    {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.simulate_full_disk(false))
            .await
            .unwrap()
            .unwrap();
    }
    let delivered_rows = Deadline::within("the history written", Duration::from_secs(20))
        .until_some(async || {
            let store = store.clone();
            let (sent, depth) = tokio::task::spawn_blocking(move || {
                (
                    store.sent(100, Some("delivered")).unwrap(),
                    store.outbox_depth().unwrap(),
                )
            })
            .await
            .unwrap();
            let has = |k: &str| sent.iter().any(|r| r.idempotency_key == k);
            (has(&user.key()) && has(&own.key()) && depth == 0).then_some(sent)
        })
        .await;
    let nflog = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.nflog().unwrap())
            .await
            .unwrap()
    };
    for name in ["UserAlert", "TocsinStoreCannotWrite"] {
        assert!(
            nflog.iter().any(|(r, g, _)| r == "ops" && g.contains(name)),
            "{name} in the notification log: {nflog:?}"
        );
    }

    // a barrier: the user alert resolves; its notification comes after anything still queued
    // for the same integration, so a duplicate would have arrived before it
    target.set_metrics("x 0\n");
    hook.wait_for("UserAlert resolved", |h| {
        alertname(h) == "UserAlert" && h.status() == "resolved"
    })
    .await;
    let mut by_key: HashMap<String, usize> = HashMap::new();
    for h in hook.hits() {
        *by_key.entry(h.key()).or_default() += 1;
    }
    assert!(
        by_key.values().all(|&n| n == 1),
        "a notification was delivered twice: {by_key:?}"
    );
    let firing_user = hook
        .hits()
        .iter()
        .filter(|h| alertname(h) == "UserAlert" && h.status() == "firing")
        .count();
    assert_eq!(
        firing_user, 1,
        "the firing notification is not queued again every tick"
    );
    let mut rows: HashMap<&str, usize> = HashMap::new();
    for r in &delivered_rows {
        *rows.entry(&r.idempotency_key).or_default() += 1;
    }
    assert!(rows.values().all(|&n| n == 1), "{delivered_rows:?}");

    driver.abort();
    daemon.shutdown().await;
}

/// `tocsin check` accepts the reserved `tocsin:self` entry as `run` does (both through
/// `Config::preflight` and `rules::load_files`; the built-in file, not on disk, gets no line of
/// its own in the output).
#[test]
fn check_accepts_the_reserved_self_rules_entry() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tocsin.yml"),
        "rule_files: [\"tocsin:self\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(crate::common::BIN)
        .args(["check", "tocsin.yml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("tocsin.yml: ok"), "{text}");
}

/// Makes `store` unable to write: the file may not grow, and a flush that needs new pages failed
/// (every later write retries it first, so fails too).
fn fill(store: &tocsin::store::Store, t: i64) {
    use tocsin::labels::Labels;
    store.simulate_full_disk(true).unwrap();
    let ids = store.series_refs(
        (0..300)
            .map(|i| {
                Labels::from_pairs([
                    ("__name__".to_string(), "filler".to_string()),
                    ("i".to_string(), format!("{i:0>80}")),
                ])
            })
            .collect(),
    );
    store.append(&ids.iter().map(|&id| (id, t, 1.0)).collect::<Vec<_>>());
    assert!(store.flush(t).is_err());
}

fn entry(receiver: &str, key: &str, t: i64) -> tocsin::store::OutboxEntry {
    tocsin::store::OutboxEntry {
        receiver: receiver.into(),
        group_key: format!("{{}}:{{alertname=\"{key}\"}}"),
        idempotency_key: key.into(),
        payload: "{}".into(),
        created: t,
        log_entry: format!("{{\"k\":\"{key}\"}}"),
        log_receiver: "ops".into(),
    }
}

/// The store's side: a failed commit's notifications are due from memory (negative ids), their
/// outcomes are kept with them, and the batch is written with those outcomes: delivered ones to
/// the history (never queued), the others queued with their attempts; an outcome reported after
/// the batch was written goes to its row.
#[test]
fn a_failed_commits_notifications_are_due_from_memory_and_written_with_their_outcomes() {
    use tocsin::store::{EvaluationRows, Store};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.db"), Default::default()).unwrap();
    fill(&store, 1_000);
    let rows = EvaluationRows {
        outbox: vec![
            entry("ops/webhook", "a", 2_000),
            entry("ops/webhook", "b", 2_000),
            entry("ops/email", "c", 2_000),
        ],
        ..Default::default()
    };
    assert!(store.commit_evaluation(rows).is_err());
    let due = store.outbox_due(2_000, 500).unwrap();
    assert_eq!(due.len(), 3);
    assert!(due.iter().all(|r| r.id < 0), "{due:?}");
    assert_eq!(store.outbox_summary().unwrap(), (3, Some(2_000)));
    let id = |key: &str| due.iter().find(|r| r.idempotency_key == key).unwrap().id;
    // a delivered from memory, b retried later, c not attempted yet
    store.outbox_delivered(id("a"), 2_100).unwrap();
    store.outbox_retry(id("b"), 9_000, "503").unwrap();
    let again = store.outbox_due(2_200, 500).unwrap();
    let keys: Vec<&str> = again.iter().map(|r| r.idempotency_key.as_str()).collect();
    // b waits for its retry; c's integration is due
    assert_eq!(keys, ["c"], "{again:?}");
    assert_eq!(store.outbox_summary().unwrap().0, 2);

    // room again: the next write writes the batch with the outcomes
    store.simulate_full_disk(false).unwrap();
    store.flush(3_000).unwrap();
    let sent = store.sent(10, Some("delivered")).unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].idempotency_key.as_str(), sent[0].at), ("a", 2_100));
    let queued = store.outbox_due(10_000, 500).unwrap();
    let mut keys: Vec<(&str, u32)> = queued
        .iter()
        .map(|r| (r.idempotency_key.as_str(), r.attempts))
        .collect();
    keys.sort();
    assert_eq!(keys, [("b", 1), ("c", 0)], "a is not queued again");
    assert!(queued.iter().all(|r| r.id > 0));
    assert_eq!(
        store.nflog().unwrap().len(),
        3,
        "every log entry is written"
    );
    // c was handed out under its memory id before the write: its outcome goes to its row
    store.outbox_delivered(id("c"), 3_500).unwrap();
    let keys: Vec<String> = store
        .outbox_due(10_000, 500)
        .unwrap()
        .into_iter()
        .map(|r| r.idempotency_key)
        .collect();
    assert_eq!(keys, ["b"]);
    assert_eq!(store.sent(10, Some("delivered")).unwrap().len(), 2);
    let health = store.write_health();
    assert_eq!(health.failures, 2);
    assert_eq!(health.last_success_ms, Some(3_000));
}
