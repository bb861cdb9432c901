//! The daemon started in-process through the library (`tocsin::daemon::Daemon`): behaviour that
//! needs the whole wiring but not a separate process.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tocsin::clock::SystemClock;
use tocsin::config::Config;
use tocsin::daemon::{Daemon, DaemonOptions, Running};

use crate::common::{Answer, Deadline, WebhookSink, free_addr};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/reload");

/// Writes fixture `name` to `to`, with the listen address and data directory filled in.
fn install(name: &str, to: &Path, dir: &Path, listen: &str) {
    let text = std::fs::read_to_string(Path::new(FIXTURES).join(name)).unwrap();
    let text = text
        .replace("LISTEN", listen)
        .replace("DATA", &dir.join("data").display().to_string());
    std::fs::write(to, text).unwrap();
}

async fn start(dir: &Path) -> Running {
    let path = dir.join("tocsin.yml");
    let cfg = Config::load(&path).unwrap();
    let opts = DaemonOptions {
        source: Some(path),
        ..DaemonOptions::default()
    };
    Daemon::start(cfg, Arc::new(SystemClock), opts)
        .await
        .unwrap()
}

/// The names of the rules the daemon's API lists.
async fn rule_names(base: &str) -> Vec<String> {
    let text = reqwest::get(format!("{base}/api/v1/rules"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut names: Vec<String> = v["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter())
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_valid_rules_and_an_undefined_receiver_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let listen = free_addr().to_string();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    let rules = dir.path().join("rules/reload.yml");
    install(
        "tocsin.yml",
        &dir.path().join("tocsin.yml"),
        dir.path(),
        &listen,
    );
    install("rules-one.yml", &rules, dir.path(), &listen);
    let daemon = start(dir.path()).await;
    let base = format!("http://{}", daemon.addr());
    let loaded = Deadline::new(
        "first rule load",
        Duration::from_secs(20),
        Duration::from_millis(50),
    );
    while rule_names(&base).await != ["First"] {
        loaded.tick().await;
    }

    // valid new rules, and a configuration whose route names an undefined receiver
    install("rules-two.yml", &rules, dir.path(), &listen);
    install(
        "tocsin-undefined-receiver.yml",
        &dir.path().join("tocsin.yml"),
        dir.path(),
        &listen,
    );
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{base}/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    let body = resp.text().await.unwrap();
    assert!(body.contains("pager"), "{body}");
    // neither the rules nor the routing changed
    assert_eq!(rule_names(&base).await, ["First"]);
    assert_eq!(daemon.rules().rules().rule_count(), 1);

    // the same rules with the receiver fixed go in
    install(
        "tocsin.yml",
        &dir.path().join("tocsin.yml"),
        dir.path(),
        &listen,
    );
    let resp = client
        .post(format!("{base}/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    assert_eq!(rule_names(&base).await, ["First", "Second"]);

    // a second daemon on the same store is refused before it sends anything
    let mut second = Config::load(&dir.path().join("tocsin.yml")).unwrap();
    second.server.listen.value = free_addr().to_string();
    let err = Daemon::start(second, Arc::new(SystemClock), DaemonOptions::default())
        .await
        .err()
        .expect("a second daemon on one store must be refused");
    assert!(
        err.to_string().contains("in use by another tocsin"),
        "{err}"
    );
    daemon.shutdown().await;
}

/// A firing alert whose rule disappears (its file emptied) is resolved at the reload and the
/// receiver hears `resolved`, with the firing time as `startsAt` and the reload as `endsAt`:
/// the incident does not stay open forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firing_alert_whose_rule_is_removed_is_resolved_at_the_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let hook = WebhookSink::start(Answer::Reply(200, "ok")).await;
    let listen = free_addr().to_string();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    let rules = dir.path().join("rules/reload.yml");
    install("rules-one.yml", &rules, dir.path(), &listen);
    let config = format!(
        "storage: {{ path: \"{}\" }}\n\
         evaluation: {{ interval: 1s }}\n\
         rule_files: [rules/*.yml]\n\
         route: {{ receiver: ops, group_wait: 0s, group_interval: 1s, repeat_interval: 1h }}\n\
         receivers:\n  - name: ops\n    webhook: {{ url: \"{}\" }}\n\
         server: {{ listen: \"{listen}\" }}\n",
        dir.path().join("data/tocsin.db").display(),
        hook.url(),
    );
    std::fs::write(dir.path().join("tocsin.yml"), config).unwrap();
    let daemon = start(dir.path()).await;
    let base = format!("http://{}", daemon.addr());
    let has = |status: &str| hook.hits().iter().any(|h| h.status() == status);
    Deadline::within("the firing notification", Duration::from_secs(20))
        .until(|| has("firing"))
        .await;

    std::fs::write(&rules, "").unwrap();
    let resp = reqwest::Client::new()
        .post(format!("{base}/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    assert!(rule_names(&base).await.is_empty());
    Deadline::within("the resolved notification", Duration::from_secs(20))
        .until(|| has("resolved"))
        .await;

    let hits = hook.hits();
    let firing = &hits.iter().find(|h| h.status() == "firing").unwrap().body["alerts"][0];
    let resolved = &hits.iter().find(|h| h.status() == "resolved").unwrap().body["alerts"][0];
    assert_eq!(resolved["labels"]["alertname"], "First");
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["fingerprint"], firing["fingerprint"]);
    assert_eq!(resolved["startsAt"], firing["startsAt"]);
    assert_ne!(resolved["endsAt"], "0001-01-01T00:00:00Z");
    // resolved once: no second resolution for it
    tokio::time::sleep(Duration::from_secs(3)).await;
    let resolutions = hook
        .hits()
        .iter()
        .filter(|h| h.status() == "resolved")
        .count();
    assert_eq!(resolutions, 1);
    daemon.shutdown().await;
}

/// Without a write token, a listener others can reach is refused (anyone could create silences
/// and reload) unless the operator opts out explicitly; loopback needs no token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_listener_without_a_write_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let listen = "0.0.0.0:0";
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    install(
        "tocsin.yml",
        &dir.path().join("tocsin.yml"),
        dir.path(),
        listen,
    );
    install(
        "rules-one.yml",
        &dir.path().join("rules/reload.yml"),
        dir.path(),
        listen,
    );
    let cfg = Config::load(&dir.path().join("tocsin.yml")).unwrap();
    let err = Daemon::start(cfg.clone(), Arc::new(SystemClock), DaemonOptions::default())
        .await
        .err()
        .expect("an open listener without a token must be refused");
    assert!(err.to_string().contains("--allow-open-writes"), "{err}");
    let opts = DaemonOptions {
        allow_open_writes: true,
        ..DaemonOptions::default()
    };
    let daemon = Daemon::start(cfg, Arc::new(SystemClock), opts)
        .await
        .unwrap();
    daemon.shutdown().await;
}

/// A daemon writing `rules/reload.yml` (from `rules`) with a webhook receiver; `group_interval`
/// sets when a resolution follows a firing notification.
fn write_webhook_config(dir: &Path, hook: &WebhookSink, listen: &str, group_interval: &str) {
    let config = format!(
        "storage: {{ path: \"{}\" }}\n\
         evaluation: {{ interval: 1s }}\n\
         rule_files: [rules/*.yml]\n\
         route: {{ receiver: ops, group_wait: 0s, group_interval: {group_interval}, repeat_interval: 1h }}\n\
         receivers:\n  - name: ops\n    webhook: {{ url: \"{}\" }}\n\
         server: {{ listen: \"{listen}\" }}\n",
        dir.join("data/tocsin.db").display(),
        hook.url(),
    );
    std::fs::write(dir.join("tocsin.yml"), config).unwrap();
}

fn statuses(hook: &WebhookSink) -> Vec<String> {
    hook.hits().iter().map(|h| h.status().to_string()).collect()
}

/// The incident of a rule removed while the daemon was down is closed when it starts again:
/// the stored firing alert whose rule no longer loads is resolved at the first load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_removed_while_the_daemon_was_down_is_resolved_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let hook = WebhookSink::start(Answer::Reply(200, "ok")).await;
    let listen = free_addr().to_string();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    let rules = dir.path().join("rules/reload.yml");
    install("rules-one.yml", &rules, dir.path(), &listen);
    write_webhook_config(dir.path(), &hook, &listen, "1s");
    let daemon = start(dir.path()).await;
    Deadline::within("the firing notification", Duration::from_secs(20))
        .until(|| statuses(&hook).contains(&"firing".to_string()))
        .await;
    daemon.shutdown().await;

    std::fs::write(&rules, "").unwrap();
    let daemon = start(dir.path()).await;
    Deadline::within("the resolved notification", Duration::from_secs(20))
        .until(|| statuses(&hook).contains(&"resolved".to_string()))
        .await;
    let hits = hook.hits();
    let firing = &hits.iter().find(|h| h.status() == "firing").unwrap().body["alerts"][0];
    let resolved = &hits.iter().find(|h| h.status() == "resolved").unwrap().body["alerts"][0];
    assert_eq!(resolved["labels"]["alertname"], "First");
    assert_eq!(resolved["fingerprint"], firing["fingerprint"]);
    assert_eq!(resolved["startsAt"], firing["startsAt"]);
    daemon.shutdown().await;
}

/// An alert a reload retired, whose resolution was not sent yet when the daemon stopped, is
/// still resolved at the receiver after the restart (the retired alert is in the store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_retired_just_before_a_restart_is_resolved_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let hook = WebhookSink::start(Answer::Reply(200, "ok")).await;
    let listen = free_addr().to_string();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    let rules = dir.path().join("rules/reload.yml");
    install("rules-one.yml", &rules, dir.path(), &listen);
    // the resolution waits for the group interval after the firing notification
    write_webhook_config(dir.path(), &hook, &listen, "20s");
    let daemon = start(dir.path()).await;
    let base = format!("http://{}", daemon.addr());
    Deadline::within("the firing notification", Duration::from_secs(20))
        .until(|| statuses(&hook).contains(&"firing".to_string()))
        .await;
    std::fs::write(&rules, "").unwrap();
    let resp = reqwest::Client::new()
        .post(format!("{base}/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    daemon.shutdown().await;
    assert_eq!(
        statuses(&hook),
        ["firing"],
        "the resolution must still be due when the daemon stops"
    );

    // a shorter group interval after the restart: the new aggregation group flushes at once
    write_webhook_config(dir.path(), &hook, &listen, "1s");
    let daemon = start(dir.path()).await;
    Deadline::within("the resolved notification", Duration::from_secs(20))
        .until(|| statuses(&hook).contains(&"resolved".to_string()))
        .await;
    let hits = hook.hits();
    let resolved = &hits.iter().find(|h| h.status() == "resolved").unwrap().body["alerts"][0];
    assert_eq!(resolved["labels"]["alertname"], "First");
    daemon.shutdown().await;
}

/// Editing a firing rule's expression gives it a new key; it keeps its alert state (as
/// Prometheus copies state by name on a reload), so the receiver hears neither `resolved` nor a
/// second `firing`, and the alert keeps its active time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_firing_rule_keeps_its_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let hook = WebhookSink::start(Answer::Reply(200, "ok")).await;
    let listen = free_addr().to_string();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    let rules = dir.path().join("rules/reload.yml");
    install("rules-one.yml", &rules, dir.path(), &listen);
    write_webhook_config(dir.path(), &hook, &listen, "1s");
    let daemon = start(dir.path()).await;
    let base = format!("http://{}", daemon.addr());
    Deadline::within("the firing notification", Duration::from_secs(20))
        .until(|| statuses(&hook).contains(&"firing".to_string()))
        .await;
    let alerts = |base: String| async move {
        let v: serde_json::Value = reqwest::get(format!("{base}/api/v1/alerts"))
            .await
            .unwrap()
            .text()
            .await
            .map(|t| serde_json::from_str(&t).unwrap())
            .unwrap();
        v["data"]["alerts"].as_array().cloned().unwrap_or_default()
    };
    let before = alerts(base.clone()).await;
    assert_eq!(before.len(), 1, "{before:?}");

    let edited = std::fs::read_to_string(&rules)
        .unwrap()
        .replace("expr: vector(1)", "expr: vector(1) > 0");
    assert!(edited.contains("vector(1) > 0"));
    std::fs::write(&rules, edited).unwrap();
    let resp = reqwest::Client::new()
        .post(format!("{base}/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    // two evaluations of the edited rule, and the pipeline ticks that follow them
    let evaluated = Deadline::within("the edited rule evaluated twice", Duration::from_secs(20));
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let v: serde_json::Value = reqwest::get(format!("{base}/api/v1/rules"))
            .await
            .unwrap()
            .text()
            .await
            .map(|t| serde_json::from_str(&t).unwrap())
            .unwrap();
        let rule = &v["data"]["groups"][0]["rules"][0];
        if rule["query"] == "vector(1) > 0" {
            let t = rule["lastEvaluation"].as_str().unwrap().to_string();
            if !t.starts_with("0001") && !seen.contains(&t) {
                seen.push(t);
            }
        }
        evaluated.tick().await;
    }
    let after = alerts(base.clone()).await;
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0]["state"], "firing");
    assert_eq!(after[0]["activeAt"], before[0]["activeAt"]);
    assert_eq!(statuses(&hook), ["firing"]);
    daemon.shutdown().await;
}
