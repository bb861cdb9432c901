//! The notification pipeline end to end through the real binary: `tocsin run` scrapes a target
//! the test controls (`demo_condition{cond="…"}` turned on and off through its `/metrics`),
//! evaluates an alert rule every second, and delivers to receivers the test starts on 127.0.0.1:
//! webhook servers recording every request (answering 200, 500, 400 or never), and the scripted
//! SMTP server of `common.rs`. Crashes are real (`kill -9` of the child), the store is the real
//! SQLite file, shared by the runs of one test.
//!
//! No assertion follows a fixed sleep: every wait polls with a deadline. A test that must show
//! something did *not* happen waits for a marker instead: a notification of another group that
//! became due after the event in question, sent through the same integration. Rows of one
//! integration are delivered in order, so anything queued before the marker arrives before it.

use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::common::{
    Answer, BIN, DEMO_RULES, Daemon, DaemonBuilder, Deadline, FakeTarget, Hit, Script, WAIT,
    WebhookSink, free_addr, metric_value, smtp_server,
};

/// The variable `server.api_token_env` names in every test config.
const TOKEN_VAR: &str = "TOCSIN_NOTIFY_TEST_TOKEN";
const TOKEN: &str = "s3cret";

/// `tocsin run -c tocsin.yml` in `dir`, with the API token.
fn daemon(dir: &Path) -> DaemonBuilder {
    Daemon::in_dir(dir)
        .config_path("tocsin.yml")
        .env(TOKEN_VAR, TOKEN)
}

/// `tocsin_notifications_total{integration, result}` (0 while absent).
async fn notifications(d: &Daemon, integration: &str, result: &str) -> f64 {
    d.metric(&notifications_series(integration, result)).await
}

async fn wait_notifications(d: &Daemon, integration: &str, result: &str, at_least: f64) -> f64 {
    d.wait_metric(&notifications_series(integration, result), at_least, WAIT)
        .await
}

fn notifications_series(integration: &str, result: &str) -> String {
    format!("tocsin_notifications_total{{integration=\"{integration}\",result=\"{result}\"}}")
}

/// Waits until the alert of `cond` is firing (`/api/v1/alerts`).
async fn wait_firing(d: &Daemon, cond: &str) {
    d.wait_json("/api/v1/alerts", WAIT, |v| {
        v["data"]["alerts"].as_array().is_some_and(|alerts| {
            alerts
                .iter()
                .any(|a| a["labels"]["cond"] == cond && a["state"] == "firing")
        })
    })
    .await;
}

/// Writes `tocsin.yml` (scrape, evaluation and flush every second; the target; the API token
/// variable; `notify`: the route and receivers sections) and the rule file into `dir`.
fn write_config(dir: &Path, target: &FakeTarget, notify: &str) {
    let yaml = format!(
        "storage: {{ flush_interval: 1s }}\n\
         scrape: {{ interval: 1s, timeout: 1s }}\n\
         evaluation: {{ interval: 1s }}\n\
         rule_files: [rules.yml]\n\
         targets:\n  - name: svc\n    metrics: {}/metrics\n\
         server: {{ api_token_env: {TOKEN_VAR} }}\n\
         {notify}",
        target.base()
    );
    std::fs::write(dir.join("tocsin.yml"), yaml).unwrap();
    std::fs::write(dir.join("rules.yml"), DEMO_RULES).unwrap();
}

/// The route: everything to `receiver`, one group per `cond`, quick timings.
fn route(receiver: &str, group_wait: &str) -> String {
    format!(
        "route: {{ receiver: {receiver}, group_by: [alertname, cond], group_wait: {group_wait}, \
         group_interval: 1s, repeat_interval: 1h }}\n"
    )
}

/// A route to receiver `ops`, a webhook to `url` with these extra settings.
fn webhook_to(url: &str, group_wait: &str, extra: &str) -> String {
    format!(
        "{}receivers:\n  - name: ops\n    webhook: {{ url: \"{url}\"{extra} }}\n",
        route("ops", group_wait)
    )
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn assert_unique(keys: &[String]) {
    let mut sorted = keys.to_vec();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), keys.len(), "a key delivered twice: {keys:?}");
}

// ---------------------------------------------------------------------------------------------
// the tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_gets_one_firing_and_one_resolved_notification_in_alertmanager_shape() {
    let target = FakeTarget::with_conditions(&["a", "b"]).await;
    let hook = WebhookSink::start(Answer::Status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &target, &webhook_to(hook.url(), "1s", ""));
    let d = daemon(dir.path()).start();

    target.set_conditions(&[("a", true)]);
    let firing = hook
        .wait_for("the firing notification", |h| h.is("a", "firing"))
        .await;
    let p = &firing.body;
    assert_eq!(p["version"], "4");
    assert_eq!(p["receiver"], "ops");
    assert_eq!(p["status"], "firing");
    assert_eq!(p["externalURL"], d.base.as_str());
    assert_eq!(
        p["groupLabels"],
        json!({"alertname": "DemoCondition", "cond": "a"})
    );
    let group_key = p["groupKey"].as_str().unwrap().to_string();
    assert!(
        group_key.contains("alertname=\"DemoCondition\"") && group_key.contains("cond=\"a\""),
        "{group_key}"
    );
    let alerts = p["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{p}");
    assert_eq!(alerts[0]["status"], "firing");
    assert_eq!(alerts[0]["labels"]["alertname"], "DemoCondition");
    assert_eq!(alerts[0]["labels"]["cond"], "a");
    assert_eq!(alerts[0]["labels"]["job"], "svc");
    assert_eq!(alerts[0]["labels"]["severity"], "page");
    assert_eq!(alerts[0]["annotations"]["summary"], "condition a is on");
    assert_eq!(alerts[0]["endsAt"], "0001-01-01T00:00:00Z");
    assert!(
        !firing.key().is_empty(),
        "the idempotency key header is set"
    );

    target.set_conditions(&[("a", false)]);
    let resolved = hook
        .wait_for("the resolved notification", |h| h.is("a", "resolved"))
        .await;
    assert_eq!(resolved.body["groupKey"], group_key.as_str());
    assert_eq!(resolved.body["alerts"][0]["status"], "resolved");
    assert_ne!(resolved.body["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    assert_ne!(
        resolved.key(),
        firing.key(),
        "another group state, another key"
    );

    // marker: b's group becomes due after anything a's group could still send
    target.set_conditions(&[("b", true)]);
    hook.wait_for("b's notification", |h| h.cond() == "b").await;
    assert_eq!(
        hook.seen(),
        pairs(&[("a", "firing"), ("a", "resolved"), ("b", "firing")])
    );
    wait_notifications(&d, "ops/webhook", "delivered", 3.0).await;
    assert_eq!(notifications(&d, "ops/webhook", "delivered").await, 3.0);
    assert_eq!(notifications(&d, "ops/webhook", "retried").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_says_what_fires_then_what_resolved() {
    let target = FakeTarget::with_conditions(&["a"]).await;
    let (smtp, mails) = smtp_server(Script::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let notify = format!(
        "{}receivers:\n  - name: mail\n    email: {{ to: [ops@example.org], from: tocsin@example.org, \
         smarthost: \"{smtp}\", tls: none, send_resolved: true }}\n",
        route("mail", "1s")
    );
    write_config(dir.path(), &target, &notify);
    let d = daemon(dir.path()).start();

    target.set_conditions(&[("a", true)]);
    Deadline::within("the firing mail", WAIT)
        .until(|| !mails.lock().unwrap().is_empty())
        .await;
    target.set_conditions(&[("a", false)]);
    Deadline::within("the resolved mail", WAIT)
        .until(|| mails.lock().unwrap().len() >= 2)
        .await;
    let mails = mails.lock().unwrap().clone();
    let (firing, resolved) = (&mails[0].data, &mails[1].data);
    assert_eq!(mails[0].rcpt, vec!["<ops@example.org>"]);
    assert_eq!(mails[0].from, "<tocsin@example.org>");
    for want in [
        "Subject: [FIRING:1] DemoCondition (a)\n",
        "X-Tocsin-Idempotency-Key: ",
        "Why: first notification",
        "New (1)",
        "Summary: condition a is on",
    ] {
        assert!(firing.contains(want), "{want:?} missing in:\n{firing}");
    }
    assert!(!firing.contains("Resolved ("), "{firing}");
    for want in [
        "Subject: [RESOLVED] DemoCondition (a)\n",
        "Why: all resolved",
        "Resolved (1)",
    ] {
        assert!(resolved.contains(want), "{want:?} missing in:\n{resolved}");
    }
    let key = |data: &str| {
        data.lines()
            .find_map(|l| l.strip_prefix("X-Tocsin-Idempotency-Key: "))
            .map(str::to_string)
    };
    assert_ne!(key(firing), key(resolved));
    wait_notifications(&d, "mail/email", "delivered", 2.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_few_seconds_of_500_then_everything_delivered_once_in_order() {
    let target = FakeTarget::with_conditions(&["a", "b"]).await;
    let hook = WebhookSink::start(Answer::Status(500)).await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &target, &webhook_to(hook.url(), "0s", ""));
    let d = daemon(dir.path()).start();

    // a and b fire in one scrape: two groups flushed in one tick, a's row first
    target.set_conditions(&[("a", true), ("b", true)]);
    wait_notifications(&d, "ops/webhook", "retried", 1.0).await;
    target.set_conditions(&[("a", false)]);
    // a firing (retrying), b firing and a resolved waiting behind it
    d.wait_metric("tocsin_notification_outbox_depth", 3.0, WAIT)
        .await;
    hook.answer(Answer::Status(200));

    // marker: b resolves after the outage; its notification comes after everything above
    hook.wait_for("a's resolution", |h| h.is("a", "resolved") && h.delivered())
        .await;
    target.set_conditions(&[("b", false)]);
    hook.wait_for("b's resolution", |h| h.is("b", "resolved"))
        .await;

    let hits = hook.hits();
    let failed: Vec<&Hit> = hits.iter().filter(|h| h.answered == Some(500)).collect();
    assert!(!failed.is_empty());
    let first = &failed[0].key();
    assert!(
        failed
            .iter()
            .all(|h| &h.key() == first && h.is("a", "firing")),
        "only the first notification was tried during the outage: later ones waited behind it"
    );
    let delivered: Vec<&Hit> = hits.iter().filter(|h| h.delivered()).collect();
    let order: Vec<(String, String)> = delivered
        .iter()
        .map(|h| (h.cond().to_string(), h.status().to_string()))
        .collect();
    assert_eq!(
        order,
        pairs(&[
            ("a", "firing"),
            ("b", "firing"),
            ("a", "resolved"),
            ("b", "resolved")
        ])
    );
    assert_eq!(
        &delivered[0].key(),
        first,
        "the retried notification, same key"
    );
    let keys: Vec<String> = delivered.iter().map(|h| h.key()).collect();
    assert_unique(&keys);
    let retried = notifications(&d, "ops/webhook", "retried").await;
    assert_eq!(retried, failed.len() as f64);
    assert!(
        retried < 5.0,
        "the breaker never opened: {retried} failures"
    );
    wait_notifications(&d, "ops/webhook", "delivered", 4.0).await;
    assert_eq!(notifications(&d, "ops/webhook", "failed").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_is_not_retried_and_goes_to_the_fallback() {
    let target = FakeTarget::with_conditions(&["a", "b"]).await;
    let ops = WebhookSink::start(Answer::Status(200)).await;
    ops.answer_for("a", Answer::Status(400));
    let pager = WebhookSink::start(Answer::Status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let notify = format!(
        "{}receivers:\n  - name: ops\n    webhook: {{ url: \"{}\" }}\n    fallback: pager\n  \
         - name: pager\n    webhook: {{ url: \"{}\" }}\n",
        route("ops", "1s"),
        ops.url(),
        pager.url()
    );
    write_config(dir.path(), &target, &notify);
    let d = daemon(dir.path()).start();

    target.set_conditions(&[("a", true)]);
    let fallback = pager
        .wait_for("the fallback notification", |h| h.is("a", "firing"))
        .await;
    let refused = ops.hits()[0].clone();
    assert_eq!(refused.answered, Some(400));
    assert!(refused.is("a", "firing"));
    assert_eq!(fallback.body["receiver"], "pager");
    assert_eq!(fallback.body["alerts"], refused.body["alerts"]);
    assert_eq!(fallback.key(), format!("{}/fallback", refused.key()));

    // marker: b's notification goes through the same integration; a retry of a would come first
    target.set_conditions(&[("b", true)]);
    ops.wait_for("b's notification", |h| h.cond() == "b").await;
    assert_eq!(ops.seen(), pairs(&[("a", "firing"), ("b", "firing")]));
    assert_eq!(pager.hits().len(), 1);
    wait_notifications(&d, "ops/webhook", "delivered", 1.0).await;
    assert_eq!(notifications(&d, "ops/webhook", "failed").await, 1.0);
    assert_eq!(notifications(&d, "ops/webhook", "retried").await, 0.0);
    assert_eq!(notifications(&d, "pager/webhook", "delivered").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_a_notification_in_the_outbox_sends_it_once_after_restart() {
    let target = FakeTarget::with_conditions(&["a", "b"]).await;
    let port = free_addr();
    let url = format!("http://{port}/hook");
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &target, &webhook_to(&url, "1s", ""));
    let mut d = daemon(dir.path()).start();

    target.set_conditions(&[("a", true)]);
    // queued and tried: nothing listens, so it stays in the outbox
    wait_notifications(&d, "ops/webhook", "retried", 1.0).await;
    d.kill_9();
    let queued = {
        let store =
            tocsin::store::Store::open_read_only(&dir.path().join("data/tocsin.db")).unwrap();
        store.outbox_due(i64::MAX, 100).unwrap()
    };
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0].receiver, "ops/webhook");
    assert!(queued[0].attempts >= 1);

    let hook = WebhookSink::start_on(port, Answer::Status(200)).await;
    let d = d.start_again();
    let sent = hook
        .wait_for("the queued notification", |h| h.is("a", "firing"))
        .await;
    assert_eq!(sent.key(), queued[0].idempotency_key);
    // marker: b's group becomes due after a's group waited again and consulted the log
    target.set_conditions(&[("b", true)]);
    hook.wait_for("b's notification", |h| h.cond() == "b").await;
    assert_eq!(hook.seen(), pairs(&[("a", "firing"), ("b", "firing")]));
    wait_notifications(&d, "ops/webhook", "delivered", 2.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_a_request_is_in_flight_resends_it_with_the_same_key() {
    let target = FakeTarget::with_conditions(&["a", "b"]).await;
    let hook = WebhookSink::start(Answer::Hold).await;
    let dir = tempfile::tempdir().unwrap();
    // a timeout longer than the test: the request is in flight when the daemon dies
    write_config(
        dir.path(),
        &target,
        &webhook_to(hook.url(), "1s", ", timeout: 60s"),
    );
    let mut d = daemon(dir.path()).start();

    target.set_conditions(&[("a", true)]);
    let held = hook
        .wait_for("the first request", |h| h.is("a", "firing"))
        .await;
    assert_eq!(held.answered, None);
    d.kill_9();

    hook.answer(Answer::Status(200));
    let d = d.start_again();
    let again = hook
        .wait_for("the second delivery", |h| {
            h.is("a", "firing") && h.delivered()
        })
        .await;
    assert_eq!(
        again.key(),
        held.key(),
        "the same group state, the same key"
    );
    assert_eq!(again.body, held.body);
    // marker: b's group becomes due after a's group waited again and consulted the log
    target.set_conditions(&[("b", true)]);
    hook.wait_for("b's notification", |h| h.cond() == "b").await;
    assert_eq!(
        hook.seen(),
        pairs(&[("a", "firing"), ("a", "firing"), ("b", "firing")]),
        "only the request in flight is repeated"
    );
    let keys: Vec<String> = hook
        .hits()
        .into_iter()
        .filter(Hit::delivered)
        .map(|h| h.key())
        .collect();
    assert_unique(&keys);
    wait_notifications(&d, "ops/webhook", "delivered", 2.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_added_while_the_group_waits_suppresses_it() {
    let target = FakeTarget::with_conditions(&["a", "b"]).await;
    let hook = WebhookSink::start(Answer::Status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &target, &webhook_to(hook.url(), "3s", ""));
    let d = daemon(dir.path()).start();

    target.set_conditions(&[("a", true)]);
    wait_firing(&d, "a").await;
    // a's group now waits 3 s: silence it
    let client = reqwest::Client::new();
    let silences = d.url("/api/v1/silences");
    let resp = client
        .post(&silences)
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(
            json!({"matchers": ["cond=\"a\""], "endsAt": "2999-01-01T00:00:00Z",
                   "createdBy": "test", "comment": "maintenance"})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    let id = v["data"]["silenceID"].as_str().unwrap().to_string();
    assert!(
        hook.hits().is_empty(),
        "the silence came before the group's flush"
    );

    // marker: b fires after the silence, so its group is due after a's would have been
    target.set_conditions(&[("b", true)]);
    hook.wait_for("b's notification", |h| h.cond() == "b").await;
    assert_eq!(
        hook.seen(),
        pairs(&[("b", "firing")]),
        "nothing for the silenced alert"
    );

    // the silence was all that held a back
    let resp = client
        .delete(format!("{silences}/{id}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    hook.wait_for("a's notification after the silence", |h| h.cond() == "a")
        .await;
    assert_eq!(hook.seen(), pairs(&[("b", "firing"), ("a", "firing")]));
}

#[test]
fn route_test_prints_receivers_and_check_names_an_undefined_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tocsin.yml");
    let notify = |pager_route: &str| {
        format!(
            "route:\n  receiver: ops\n  group_by: [alertname]\n  routes:\n    \
             - {{ matchers: ['severity=\"page\"'], receiver: {pager_route}, continue: true }}\n    \
             - {{ matchers: ['team=\"db\"'], receiver: db }}\n\
             receivers:\n  \
             - {{ name: ops, webhook: {{ url: \"http://127.0.0.1:1/hook\" }} }}\n  \
             - {{ name: pager, webhook: {{ url: \"http://127.0.0.1:1/hook\" }} }}\n  \
             - {{ name: db, email: {{ to: [db@example.org], from: tocsin@example.org, \
             smarthost: \"127.0.0.1:25\", tls: none }} }}\n"
        )
    };
    std::fs::write(&config, notify("pager")).unwrap();
    let route_test = |args: &[&str]| {
        Command::new(BIN)
            .arg("route-test")
            .arg("-c")
            .arg(&config)
            .args(args)
            .output()
            .unwrap()
    };
    let cases: &[(&[&str], &str)] = &[
        // no child matches: the root's receiver
        (&["alertname=Down"], "ops"),
        // the first match continues, but the next sibling does not match
        (&["alertname=Down", "severity=page"], "pager"),
        // continue: both children
        (&["severity=page", "team=db"], "pager,db"),
        (&["team=db"], "db"),
        // quoted values, as amtool accepts them
        (&["severity=\"page\""], "pager"),
    ];
    for (labels, want) in cases {
        let out = route_test(labels);
        assert_eq!(out.status.code(), Some(0), "{labels:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{want}\n"),
            "{labels:?}"
        );
    }
    let ok = route_test(&["severity=page", "team=db", "--verify-receivers", "pager,db"]);
    assert_eq!(ok.status.code(), Some(0));
    let wrong = route_test(&["severity=page", "--verify-receivers", "ops"]);
    assert_eq!(wrong.status.code(), Some(1));
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(err.contains("want receivers ops, got pager"), "{err}");
    let bad = route_test(&["severity"]);
    assert_eq!(bad.status.code(), Some(2));

    let out = Command::new(BIN)
        .arg("check")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&config, notify("nobody")).unwrap();
    let out = Command::new(BIN)
        .arg("check")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:", config.display()))
            && err.contains("route.routes[0].receiver: undefined receiver \"nobody\""),
        "{err}"
    );
}

/// POST /-/reload with the token: (status, body).
async fn reload(d: &Daemon) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(d.url("/-/reload"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn a_reload_swaps_receivers_and_a_broken_config_keeps_the_old_ones() {
    let target = FakeTarget::with_conditions(&["a", "b", "c"]).await;
    let first = WebhookSink::start(Answer::Status(200)).await;
    let second = WebhookSink::start(Answer::Status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &target, &webhook_to(first.url(), "0s", ""));
    let d = daemon(dir.path()).start();
    target.set_conditions(&[("a", true)]);
    first
        .wait_for("a at the first receiver", |h| h.cond() == "a")
        .await;

    // a broken edit: refused with the error, the old routing stays
    write_config(
        dir.path(),
        &target,
        &format!(
            "{}receivers:\n  - name: other\n    webhook: {{ url: \"{}\" }}\n",
            route("ops", "0s"),
            second.url()
        ),
    );
    let (status, body) = reload(&d).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("undefined receiver \\\"ops\\\""), "{body}");
    target.set_conditions(&[("a", true), ("b", true)]);
    first
        .wait_for("b at the first receiver", |h| h.cond() == "b")
        .await;

    // a good edit: the next group goes to the second receiver
    write_config(dir.path(), &target, &webhook_to(second.url(), "0s", ""));
    let (status, body) = reload(&d).await;
    assert_eq!(status, 200, "{body}");
    target.set_conditions(&[("a", true), ("b", true), ("c", true)]);
    second
        .wait_for("c at the second receiver", |h| h.cond() == "c")
        .await;
    assert!(
        !first.seen().iter().any(|(c, _)| c == "c"),
        "{:?}",
        first.seen()
    );
}

/// A receiver whose URL is in a file (`url_file`): a new URL written to the file goes in at the
/// next reload, though tocsin.yml did not change.
#[tokio::test]
async fn a_reload_applies_a_new_url_in_a_receivers_url_file() {
    let target = FakeTarget::with_conditions(&["a", "b"]).await;
    let first = WebhookSink::start(Answer::Status(200)).await;
    let second = WebhookSink::start(Answer::Status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let url_file = dir.path().join("hook-url");
    std::fs::write(&url_file, format!("{}\n", first.url())).unwrap();
    write_config(
        dir.path(),
        &target,
        &format!(
            "{}receivers:\n  - name: ops\n    webhook: {{ url_file: \"{}\" }}\n",
            route("ops", "0s"),
            url_file.display()
        ),
    );
    let d = daemon(dir.path()).start();
    target.set_conditions(&[("a", true)]);
    first
        .wait_for("a at the first receiver", |h| h.cond() == "a")
        .await;
    std::fs::write(&url_file, format!("{}\n", second.url())).unwrap();
    let (status, body) = reload(&d).await;
    assert_eq!(status, 200, "{body}");
    target.set_conditions(&[("a", true), ("b", true)]);
    second
        .wait_for("b at the second receiver", |h| h.cond() == "b")
        .await;
    assert!(
        !first.seen().iter().any(|(c, _)| c == "b"),
        "{:?}",
        first.seen()
    );
}

#[tokio::test]
async fn dry_run_records_shadow_notifications_and_sends_nothing() {
    let target = FakeTarget::with_conditions(&["a"]).await;
    let hook = WebhookSink::start(Answer::Status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &target, &webhook_to(hook.url(), "0s", ""));
    let d = daemon(dir.path()).arg("--dry-run").start();
    let shadow = |status: &'static str| {
        let d = &d;
        async move {
            let text = reqwest::Client::new()
                .get(d.url("/api/v1/notifications?status=shadow"))
                .bearer_auth(TOKEN)
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let v: serde_json::Value = serde_json::from_str(&text).ok()?;
            v["data"]
                .as_array()?
                .iter()
                .find(|n| n["alerts"][0]["status"] == status)
                .cloned()
        }
    };
    target.set_conditions(&[("a", true)]);
    let firing = Deadline::within("a shadow firing notification", WAIT)
        .until_some(async || shadow("firing").await)
        .await;
    assert_eq!(firing["integration"], "ops/webhook");
    assert_eq!(firing["receiver"], "ops");
    assert_eq!(firing["subject"], "[FIRING:1] DemoCondition (a)");
    assert_eq!(firing["alerts"][0]["labels"]["cond"], "a");
    target.set_conditions(&[("a", false)]);
    Deadline::within("a shadow resolved notification", WAIT)
        .until_some(async || shadow("resolved").await)
        .await;
    assert!(hook.seen().is_empty(), "{:?}", hook.seen());
    let text = d.get_text("/metrics").await.unwrap_or_default();
    assert_eq!(
        metric_value(&text, "tocsin_notifications_shadow_total{receiver=\"ops\"}"),
        2.0,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_webhook_never_shows_the_secrets_in_its_url() {
    let target = FakeTarget::with_conditions(&["a"]).await;
    // answers 500: retried, its URL in the outbox, the API and the logs' context
    let refusing = WebhookSink::start(Answer::Status(500)).await;
    let secrets = [
        "PASSWORD1",
        "SECRETPATH1",
        "SECRETQUERY1",
        "PASSWORD2",
        "SECRETPATH2",
        "SECRETQUERY2",
    ];
    let refused_url = format!(
        "http://user:PASSWORD1@{}/services/T0/SECRETPATH1?token=SECRETQUERY1",
        refusing.addr()
    );
    // nothing listens there: a connect error, reqwest's error chain in the message; the URL
    // comes from the environment (url_env)
    let down_url = format!(
        "http://user:PASSWORD2@{}/services/T0/SECRETPATH2?token=SECRETQUERY2",
        free_addr()
    );
    let dir = tempfile::tempdir().unwrap();
    let notify = format!(
        "log: {{ level: debug }}\n\
         route:\n  receiver: refused\n  group_by: [alertname, cond]\n  group_wait: 1s\n  \
         group_interval: 1s\n  repeat_interval: 1h\n  routes:\n    \
         - {{ receiver: refused, continue: true }}\n    - {{ receiver: down }}\n\
         receivers:\n  - name: refused\n    webhook: {{ url: \"{refused_url}\" }}\n  \
         - name: down\n    webhook: {{ url_env: TOCSIN_DOWN_URL }}\n"
    );
    write_config(dir.path(), &target, &notify);
    let d = daemon(dir.path()).env("TOCSIN_DOWN_URL", &down_url).start();

    target.set_conditions(&[("a", true)]);
    refusing
        .wait_for("the refused notification", |h| h.is("a", "firing"))
        .await;
    wait_notifications(&d, "refused/webhook", "retried", 1.0).await;
    wait_notifications(&d, "down/webhook", "retried", 1.0).await;

    let mut seen = Vec::new();
    for path in [
        "/api/v1/notifications",
        "/api/v1/status",
        "/api/v1/alerts",
        "/api/v1/rules",
        "/status",
        "/metrics",
    ] {
        let body = d.get_text(path).await.unwrap_or_default();
        assert!(!body.is_empty(), "{path} answered");
        seen.push((path.to_string(), body));
    }
    let logs = format!("{}{}", d.stdout(), d.stderr());
    seen.push(("the logs".to_string(), logs.clone()));
    for (what, text) in &seen {
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} in {what}:\n{text}");
        }
    }
    // both failures were logged, the connect error naming its URL in the redacted form
    assert!(logs.contains("webhook returned http 500"), "{logs}");
    assert!(
        logs.contains("http://<redacted>@127.0.0.1:")
            && logs.contains("/services/<redacted>?token=<redacted>"),
        "{logs}"
    );
}
