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

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::json;
use tokio::net::TcpListener;

use tocsin::notify::webhook::IDEMPOTENCY_HEADER;

use crate::common::{Deadline, Script, free_addr, smtp_server};

const BIN: &str = env!("CARGO_BIN_EXE_tocsin");
/// The variable `server.api_token_env` names in every test config.
const TOKEN_VAR: &str = "TOCSIN_NOTIFY_TEST_TOKEN";
const TOKEN: &str = "s3cret";
/// Bound on every wait: generous next to the 1 s scrape, evaluation and group intervals.
const DEADLINE: Duration = Duration::from_secs(15);

const RULES: &str = r#"groups:
  - name: demo
    interval: 1s
    rules:
      - alert: DemoCondition
        expr: demo_condition == 1
        for: 0s
        labels: { severity: page }
        annotations: { summary: "condition {{ $labels.cond }} is on" }
"#;

// ---------------------------------------------------------------------------------------------
// the scraped target

type Conditions = Arc<Mutex<Vec<(String, bool)>>>;

/// The scraped service: `/metrics` serves `demo_condition{cond="…"}` 1 or 0, as the test sets.
struct Target {
    base: String,
    conditions: Conditions,
}

impl Target {
    /// Serves every condition in `conds`, all off.
    async fn start(conds: &[&str]) -> Target {
        let conditions: Conditions = Arc::new(Mutex::new(
            conds.iter().map(|c| (c.to_string(), false)).collect(),
        ));
        let app = axum::Router::new()
            .route("/metrics", get(exposition))
            .with_state(conditions.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Target {
            base: format!("http://{addr}"),
            conditions,
        }
    }

    /// Sets conditions in one step: a scrape sees all of them or none.
    fn set(&self, changes: &[(&str, bool)]) {
        let mut conditions = self.conditions.lock().unwrap();
        for (cond, on) in changes {
            let slot = conditions
                .iter_mut()
                .find(|(c, _)| c == cond)
                .expect("a condition the target serves");
            slot.1 = *on;
        }
    }
}

async fn exposition(State(conditions): State<Conditions>) -> String {
    let mut out = String::from("# TYPE demo_condition gauge\n");
    for (cond, on) in conditions.lock().unwrap().iter() {
        out.push_str(&format!(
            "demo_condition{{cond=\"{cond}\"}} {}\n",
            u8::from(*on)
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// the webhook receiver

/// How the webhook receiver answers a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Status(u16),
    /// record the request, then never answer (the connection stays open)
    Hold,
}

/// One request the webhook receiver got.
#[derive(Debug, Clone)]
struct Hit {
    /// the `Idempotency-Key` header
    key: String,
    body: serde_json::Value,
    /// the status it answered; None when it held the request
    answered: Option<u16>,
}

impl Hit {
    /// `firing` or `resolved`
    fn status(&self) -> &str {
        self.body["status"].as_str().unwrap_or("")
    }

    /// The `cond` label of the group (every group here holds one alert: grouped by `cond`).
    fn cond(&self) -> &str {
        self.body["groupLabels"]["cond"].as_str().unwrap_or("")
    }

    fn delivered(&self) -> bool {
        self.answered.is_some_and(|s| (200..300).contains(&s))
    }

    fn is(&self, cond: &str, status: &str) -> bool {
        self.cond() == cond && self.status() == status
    }
}

struct HookState {
    hits: Mutex<Vec<Hit>>,
    /// the answer for every request, unless `by_cond` has one for the group's `cond`
    default: Mutex<Answer>,
    by_cond: Mutex<HashMap<String, Answer>>,
}

/// An HTTP server recording every `POST /hook`, answering as it is told.
struct Hook {
    url: String,
    state: Arc<HookState>,
}

impl Hook {
    async fn start(answer: Answer) -> Hook {
        Hook::serve(TcpListener::bind("127.0.0.1:0").await.unwrap(), answer)
    }

    /// Listens on `addr` (a port released earlier; retried while the kernel still holds it).
    async fn start_on(addr: SocketAddr, answer: Answer) -> Hook {
        let deadline = wait_bound(format!("binding {addr} again"));
        loop {
            if let Ok(listener) = TcpListener::bind(addr).await {
                return Hook::serve(listener, answer);
            }
            deadline.tick().await;
        }
    }

    fn serve(listener: TcpListener, answer: Answer) -> Hook {
        let state = Arc::new(HookState {
            hits: Mutex::default(),
            default: Mutex::new(answer),
            by_cond: Mutex::default(),
        });
        let app = axum::Router::new()
            .route("/hook", post(record))
            .with_state(state.clone());
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Hook {
            url: format!("http://{addr}/hook"),
            state,
        }
    }

    fn answer(&self, answer: Answer) {
        *self.state.default.lock().unwrap() = answer;
    }

    fn answer_for(&self, cond: &str, answer: Answer) {
        self.state
            .by_cond
            .lock()
            .unwrap()
            .insert(cond.to_string(), answer);
    }

    fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().unwrap().clone()
    }

    /// Waits for a request that satisfies `ok` and returns the first such.
    async fn wait_for(&self, what: &str, ok: impl Fn(&Hit) -> bool) -> Hit {
        let deadline = wait_bound(format!("{what} at {}", self.url));
        loop {
            if let Some(hit) = self.hits().into_iter().find(|h| ok(h)) {
                return hit;
            }
            deadline.tick().await;
        }
    }

    /// `(cond, status)` of every request, in arrival order.
    fn seen(&self) -> Vec<(String, String)> {
        self.hits()
            .iter()
            .map(|h| (h.cond().to_string(), h.status().to_string()))
            .collect()
    }
}

async fn record(State(s): State<Arc<HookState>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let key = headers
        .get(IDEMPOTENCY_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let cond = body["groupLabels"]["cond"].as_str().unwrap_or_default();
    let answer = s
        .by_cond
        .lock()
        .unwrap()
        .get(cond)
        .copied()
        .unwrap_or(*s.default.lock().unwrap());
    let answered = match answer {
        Answer::Status(code) => Some(code),
        Answer::Hold => None,
    };
    s.hits.lock().unwrap().push(Hit {
        key,
        body,
        answered,
    });
    match answer {
        Answer::Status(code) => StatusCode::from_u16(code).unwrap(),
        Answer::Hold => std::future::pending().await,
    }
}

// ---------------------------------------------------------------------------------------------
// the daemon

/// A polling bound of [`DEADLINE`], polled every 50 ms.
fn wait_bound(what: impl Into<String>) -> Deadline {
    Deadline::new(what, DEADLINE, Duration::from_millis(50))
}

static DAEMONS: AtomicUsize = AtomicUsize::new(0);

/// `tocsin run -c tocsin.yml` in a directory; its output goes to a file printed if the test fails.
struct Daemon {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Daemon {
    fn start(dir: &Path) -> Daemon {
        Daemon::start_with(dir, &[])
    }

    fn start_with(dir: &Path, extra: &[&str]) -> Daemon {
        let port = free_addr().port();
        let log = dir.join(format!(
            "daemon-{}.log",
            DAEMONS.fetch_add(1, Ordering::SeqCst)
        ));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .args(["run", "-c", "tocsin.yml"])
            .args(extra)
            .current_dir(dir)
            .env("TOCSIN_LISTEN", format!("127.0.0.1:{port}"))
            .env("TOCSIN_LOG_LEVEL", "info")
            .env("NO_COLOR", "1")
            .env(TOKEN_VAR, TOKEN)
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap();
        Daemon {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// SIGKILL: no shutdown, no final flush.
    fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    async fn get(&self, path: &str) -> Option<String> {
        reqwest::get(format!("{}{path}", self.base))
            .await
            .ok()?
            .text()
            .await
            .ok()
    }

    /// `tocsin_notifications_total{integration, result}` (0 while absent).
    async fn notifications(&self, integration: &str, result: &str) -> f64 {
        let text = self.get("/metrics").await.unwrap_or_default();
        metric(
            &text,
            &format!(
                "tocsin_notifications_total{{integration=\"{integration}\",result=\"{result}\"}}"
            ),
        )
    }

    async fn wait_notifications(&self, integration: &str, result: &str, at_least: f64) -> f64 {
        let deadline = wait_bound(format!(
            "{integration} {result} notifications reaching {at_least}"
        ));
        loop {
            let n = self.notifications(integration, result).await;
            if n >= at_least {
                return n;
            }
            deadline.tick().await;
        }
    }

    async fn wait_outbox_depth(&self, at_least: f64) {
        let deadline = wait_bound(format!("outbox depth reaching {at_least}"));
        loop {
            let text = self.get("/metrics").await.unwrap_or_default();
            if metric(&text, "tocsin_notification_outbox_depth") >= at_least {
                return;
            }
            deadline.tick().await;
        }
    }

    /// Waits until the alert of `cond` is firing (`/api/v1/alerts`).
    async fn wait_firing(&self, cond: &str) {
        let deadline = wait_bound(format!("alert {cond} firing"));
        loop {
            let v: serde_json::Value = self
                .get("/api/v1/alerts")
                .await
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            let firing = v["data"]["alerts"].as_array().is_some_and(|alerts| {
                alerts
                    .iter()
                    .any(|a| a["labels"]["cond"] == cond && a["state"] == "firing")
            });
            if firing {
                return;
            }
            deadline.tick().await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- {} ---\n{log}", self.log.display());
        }
    }
}

/// The value of the sample named exactly `series` in a text exposition, 0 when absent.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Writes `tocsin.yml` (scrape, evaluation and flush every second; the target; the API token
/// variable; `notify`: the route and receivers sections) and the rule file into `dir`.
fn write_config(dir: &Path, target: &Target, notify: &str) {
    let yaml = format!(
        "storage: {{ flush_interval: 1s }}\n\
         scrape: {{ interval: 1s, timeout: 1s }}\n\
         evaluation: {{ interval: 1s }}\n\
         rule_files: [rules.yml]\n\
         targets:\n  - name: svc\n    metrics: {}/metrics\n\
         server: {{ api_token_env: {TOKEN_VAR} }}\n\
         {notify}",
        target.base
    );
    std::fs::write(dir.join("tocsin.yml"), yaml).unwrap();
    std::fs::write(dir.join("rules.yml"), RULES).unwrap();
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
    let target = Target::start(&["a", "b"]).await;
    let hook = Hook::start(Answer::Status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &target, &webhook_to(&hook.url, "1s", ""));
    let d = Daemon::start(dir.path());

    target.set(&[("a", true)]);
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
    assert!(!firing.key.is_empty(), "the idempotency key header is set");

    target.set(&[("a", false)]);
    let resolved = hook
        .wait_for("the resolved notification", |h| h.is("a", "resolved"))
        .await;
    assert_eq!(resolved.body["groupKey"], group_key.as_str());
    assert_eq!(resolved.body["alerts"][0]["status"], "resolved");
    assert_ne!(resolved.body["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    assert_ne!(resolved.key, firing.key, "another group state, another key");

    // marker: b's group becomes due after anything a's group could still send
    target.set(&[("b", true)]);
    hook.wait_for("b's notification", |h| h.cond() == "b").await;
    assert_eq!(
        hook.seen(),
        pairs(&[("a", "firing"), ("a", "resolved"), ("b", "firing")])
    );
    d.wait_notifications("ops/webhook", "delivered", 3.0).await;
    assert_eq!(d.notifications("ops/webhook", "delivered").await, 3.0);
    assert_eq!(d.notifications("ops/webhook", "retried").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_says_what_fires_then_what_resolved() {
    let target = Target::start(&["a"]).await;
    let (smtp, mails) = smtp_server(Script::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let notify = format!(
        "{}receivers:\n  - name: mail\n    email: {{ to: [ops@example.org], from: tocsin@example.org, \
         smarthost: \"{smtp}\", tls: none, send_resolved: true }}\n",
        route("mail", "1s")
    );
    write_config(dir.path(), &target, &notify);
    let d = Daemon::start(dir.path());

    target.set(&[("a", true)]);
    let deadline = wait_bound("the firing mail");
    while mails.lock().unwrap().is_empty() {
        deadline.tick().await;
    }
    target.set(&[("a", false)]);
    let deadline = wait_bound("the resolved mail");
    while mails.lock().unwrap().len() < 2 {
        deadline.tick().await;
    }
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
    d.wait_notifications("mail/email", "delivered", 2.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_few_seconds_of_500_then_everything_delivered_once_in_order() {
    let target = Target::start(&["a", "b"]).await;
    let hook = Hook::start(Answer::Status(500)).await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &target, &webhook_to(&hook.url, "0s", ""));
    let d = Daemon::start(dir.path());

    // a and b fire in one scrape: two groups flushed in one tick, a's row first
    target.set(&[("a", true), ("b", true)]);
    d.wait_notifications("ops/webhook", "retried", 1.0).await;
    target.set(&[("a", false)]);
    // a firing (retrying), b firing and a resolved waiting behind it
    d.wait_outbox_depth(3.0).await;
    hook.answer(Answer::Status(200));

    // marker: b resolves after the outage; its notification comes after everything above
    hook.wait_for("a's resolution", |h| h.is("a", "resolved") && h.delivered())
        .await;
    target.set(&[("b", false)]);
    hook.wait_for("b's resolution", |h| h.is("b", "resolved"))
        .await;

    let hits = hook.hits();
    let failed: Vec<&Hit> = hits.iter().filter(|h| h.answered == Some(500)).collect();
    assert!(!failed.is_empty());
    let first = &failed[0].key;
    assert!(
        failed
            .iter()
            .all(|h| &h.key == first && h.is("a", "firing")),
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
        &delivered[0].key, first,
        "the retried notification, same key"
    );
    let keys: Vec<String> = delivered.iter().map(|h| h.key.clone()).collect();
    assert_unique(&keys);
    let retried = d.notifications("ops/webhook", "retried").await;
    assert_eq!(retried, failed.len() as f64);
    assert!(
        retried < 5.0,
        "the breaker never opened: {retried} failures"
    );
    d.wait_notifications("ops/webhook", "delivered", 4.0).await;
    assert_eq!(d.notifications("ops/webhook", "failed").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_is_not_retried_and_goes_to_the_fallback() {
    let target = Target::start(&["a", "b"]).await;
    let ops = Hook::start(Answer::Status(200)).await;
    ops.answer_for("a", Answer::Status(400));
    let pager = Hook::start(Answer::Status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let notify = format!(
        "{}receivers:\n  - name: ops\n    webhook: {{ url: \"{}\" }}\n    fallback: pager\n  \
         - name: pager\n    webhook: {{ url: \"{}\" }}\n",
        route("ops", "1s"),
        ops.url,
        pager.url
    );
    write_config(dir.path(), &target, &notify);
    let d = Daemon::start(dir.path());

    target.set(&[("a", true)]);
    let fallback = pager
        .wait_for("the fallback notification", |h| h.is("a", "firing"))
        .await;
    let refused = ops.hits()[0].clone();
    assert_eq!(refused.answered, Some(400));
    assert!(refused.is("a", "firing"));
    assert_eq!(fallback.body["receiver"], "pager");
    assert_eq!(fallback.body["alerts"], refused.body["alerts"]);
    assert_eq!(fallback.key, format!("{}/fallback", refused.key));

    // marker: b's notification goes through the same integration; a retry of a would come first
    target.set(&[("b", true)]);
    ops.wait_for("b's notification", |h| h.cond() == "b").await;
    assert_eq!(ops.seen(), pairs(&[("a", "firing"), ("b", "firing")]));
    assert_eq!(pager.hits().len(), 1);
    d.wait_notifications("ops/webhook", "delivered", 1.0).await;
    assert_eq!(d.notifications("ops/webhook", "failed").await, 1.0);
    assert_eq!(d.notifications("ops/webhook", "retried").await, 0.0);
    assert_eq!(d.notifications("pager/webhook", "delivered").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_a_notification_in_the_outbox_sends_it_once_after_restart() {
    let target = Target::start(&["a", "b"]).await;
    let port = free_addr();
    let url = format!("http://{port}/hook");
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &target, &webhook_to(&url, "1s", ""));
    let d = Daemon::start(dir.path());

    target.set(&[("a", true)]);
    // queued and tried: nothing listens, so it stays in the outbox
    d.wait_notifications("ops/webhook", "retried", 1.0).await;
    d.kill_9();
    let queued = {
        let store =
            tocsin::store::Store::open_read_only(&dir.path().join("data/tocsin.db")).unwrap();
        store.outbox_due(i64::MAX, 100).unwrap()
    };
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0].receiver, "ops/webhook");
    assert!(queued[0].attempts >= 1);

    let hook = Hook::start_on(port, Answer::Status(200)).await;
    let d = Daemon::start(dir.path());
    let sent = hook
        .wait_for("the queued notification", |h| h.is("a", "firing"))
        .await;
    assert_eq!(sent.key, queued[0].idempotency_key);
    // marker: b's group becomes due after a's group waited again and consulted the log
    target.set(&[("b", true)]);
    hook.wait_for("b's notification", |h| h.cond() == "b").await;
    assert_eq!(hook.seen(), pairs(&[("a", "firing"), ("b", "firing")]));
    d.wait_notifications("ops/webhook", "delivered", 2.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_a_request_is_in_flight_resends_it_with_the_same_key() {
    let target = Target::start(&["a", "b"]).await;
    let hook = Hook::start(Answer::Hold).await;
    let dir = tempfile::tempdir().unwrap();
    // a timeout longer than the test: the request is in flight when the daemon dies
    write_config(
        dir.path(),
        &target,
        &webhook_to(&hook.url, "1s", ", timeout: 60s"),
    );
    let d = Daemon::start(dir.path());

    target.set(&[("a", true)]);
    let held = hook
        .wait_for("the first request", |h| h.is("a", "firing"))
        .await;
    assert_eq!(held.answered, None);
    d.kill_9();

    hook.answer(Answer::Status(200));
    let d = Daemon::start(dir.path());
    let again = hook
        .wait_for("the second delivery", |h| {
            h.is("a", "firing") && h.delivered()
        })
        .await;
    assert_eq!(again.key, held.key, "the same group state, the same key");
    assert_eq!(again.body, held.body);
    // marker: b's group becomes due after a's group waited again and consulted the log
    target.set(&[("b", true)]);
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
        .map(|h| h.key)
        .collect();
    assert_unique(&keys);
    d.wait_notifications("ops/webhook", "delivered", 2.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_added_while_the_group_waits_suppresses_it() {
    let target = Target::start(&["a", "b"]).await;
    let hook = Hook::start(Answer::Status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &target, &webhook_to(&hook.url, "3s", ""));
    let d = Daemon::start(dir.path());

    target.set(&[("a", true)]);
    d.wait_firing("a").await;
    // a's group now waits 3 s: silence it
    let client = reqwest::Client::new();
    let silences = format!("{}/api/v1/silences", d.base);
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
    target.set(&[("b", true)]);
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
        .post(format!("{}/-/reload", d.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn a_reload_swaps_receivers_and_a_broken_config_keeps_the_old_ones() {
    let target = Target::start(&["a", "b", "c"]).await;
    let first = Hook::start(Answer::Status(200)).await;
    let second = Hook::start(Answer::Status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &target, &webhook_to(&first.url, "0s", ""));
    let d = Daemon::start(dir.path());
    target.set(&[("a", true)]);
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
            second.url
        ),
    );
    let (status, body) = reload(&d).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("undefined receiver \\\"ops\\\""), "{body}");
    target.set(&[("a", true), ("b", true)]);
    first
        .wait_for("b at the first receiver", |h| h.cond() == "b")
        .await;

    // a good edit: the next group goes to the second receiver
    write_config(dir.path(), &target, &webhook_to(&second.url, "0s", ""));
    let (status, body) = reload(&d).await;
    assert_eq!(status, 200, "{body}");
    target.set(&[("a", true), ("b", true), ("c", true)]);
    second
        .wait_for("c at the second receiver", |h| h.cond() == "c")
        .await;
    assert!(
        !first.seen().iter().any(|(c, _)| c == "c"),
        "{:?}",
        first.seen()
    );
}

#[tokio::test]
async fn dry_run_records_shadow_notifications_and_sends_nothing() {
    let target = Target::start(&["a"]).await;
    let hook = Hook::start(Answer::Status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &target, &webhook_to(&hook.url, "0s", ""));
    let d = Daemon::start_with(dir.path(), &["--dry-run"]);
    let shadow = |status: &'static str| {
        let d = &d;
        async move {
            let text = reqwest::Client::new()
                .get(format!("{}/api/v1/notifications?status=shadow", d.base))
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
    target.set(&[("a", true)]);
    let deadline = wait_bound("a shadow firing notification".to_string());
    let firing = loop {
        if let Some(n) = shadow("firing").await {
            break n;
        }
        deadline.tick().await;
    };
    assert_eq!(firing["integration"], "ops/webhook");
    assert_eq!(firing["receiver"], "ops");
    assert_eq!(firing["subject"], "[FIRING:1] DemoCondition (a)");
    assert_eq!(firing["alerts"][0]["labels"]["cond"], "a");
    target.set(&[("a", false)]);
    let deadline = wait_bound("a shadow resolved notification".to_string());
    while shadow("resolved").await.is_none() {
        deadline.tick().await;
    }
    assert!(hook.seen().is_empty(), "{:?}", hook.seen());
    let text = d.get("/metrics").await.unwrap_or_default();
    assert_eq!(
        metric(&text, "tocsin_notifications_shadow_total{receiver=\"ops\"}"),
        2.0,
        "{text}"
    );
}
