//! The test harness shared by every module: the binary, bounded polling, a fake scrape target,
//! a webhook sink, the daemon launcher, store helpers and a scripted SMTP server.
//!
//! Servers are real HTTP servers on 127.0.0.1 (port 0), one per test. Waiting is always a
//! condition polled under a [`Deadline`]: a bound that fails the test, never a sleep followed
//! by an assertion.
#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use tocsin::labels::{Labels, MatchOp, Matcher};
use tocsin::notify::webhook::IDEMPOTENCY_HEADER;
use tocsin::store::{Store, StoreOptions};

// ---------------------------------------------------------------------------------------------
// the binary and the project

/// The `tocsin` binary cargo built for this test run.
pub const BIN: &str = env!("CARGO_BIN_EXE_tocsin");

/// The project directory (where `Cargo.toml`, `fixtures/` and `rules/` are).
pub fn project_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The text exposition the fake target serves at `/metrics` unless told otherwise: two
/// `http_requests_total` series, a recording-rule-looking series with an exported `job`, a gauge.
pub const EXPOSITION: &str = include_str!("../../fixtures/it/exposition.txt");

/// The `DemoCondition` rule group: fires (`for: 0s`) while `demo_condition{cond}` is 1.
pub const DEMO_RULES: &str = include_str!("../../fixtures/it/demo-rules.yml");

/// An exposition whose third line is broken (an unterminated label value).
pub const MALFORMED: &str = "ok_metric 1\nother_metric{a=\"b\"} 2\nbroken{a=\"unterminated} 3\n";

/// A health body whose checks all pass.
pub const HEALTH_OK: &str = r#"{"status":"ok","checks":{"database":"ok","pdns":"ok"}}"#;

/// A health body with the `pdns` check failing (served with 503).
pub const HEALTH_DEGRADED: &str =
    r#"{"status":"degraded","checks":{"database":"ok","pdns":"connection refused"}}"#;

// ---------------------------------------------------------------------------------------------
// waiting

/// The default bound of the harness's waits: generous next to the 1 s scrape, evaluation and
/// group intervals the daemon tests configure.
pub const WAIT: Duration = Duration::from_secs(15);

/// The bound on a daemon's start (the first test of a run may wait for a cold disk).
pub const STARTUP: Duration = Duration::from_secs(30);

/// `name` found in a directory of `PATH`.
pub fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The engine `name` on `PATH`, or None after printing that the test is skipped and the Debian
/// `package` that ships it (CI installs them all).
pub fn installed(name: &str, package: &str) -> Option<PathBuf> {
    let bin = on_path(name);
    if bin.is_none() {
        println!("skipping: {name} not installed (apt install {package})");
    }
    bin
}

/// A loopback address nothing listens on (bound, then released): a port for a daemon or server
/// the test starts, or a receiver that is down.
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A bound on a polling loop: `tick` waits one poll interval, or panics once `within` has
/// passed since the deadline was made (a bound, not a timing assertion).
pub struct Deadline {
    start: Instant,
    what: String,
    within: Duration,
    poll: Duration,
}

impl Deadline {
    pub fn new(what: impl Into<String>, within: Duration, poll: Duration) -> Deadline {
        Deadline {
            start: Instant::now(),
            what: what.into(),
            within,
            poll,
        }
    }

    /// A bound of `within`, polled every 50 ms.
    pub fn within(what: impl Into<String>, within: Duration) -> Deadline {
        Deadline::new(what, within, Duration::from_millis(50))
    }

    /// The same bound, polled every `poll` (for checks that cost more than a request).
    pub fn every(self, poll: Duration) -> Deadline {
        Deadline { poll, ..self }
    }

    pub async fn tick(&self) {
        assert!(
            self.start.elapsed() < self.within,
            "{}: not within {:?}",
            self.what,
            self.within
        );
        tokio::time::sleep(self.poll).await;
    }

    /// Polls `ok` until it holds.
    pub async fn until(&self, mut ok: impl FnMut() -> bool) {
        while !ok() {
            self.tick().await;
        }
    }

    /// Polls `probe` until it returns something, and returns that.
    pub async fn until_some<T>(&self, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
        loop {
            if let Some(found) = probe().await {
                return found;
            }
            self.tick().await;
        }
    }
}

/// The value of the sample named exactly `series` (name and labels as exposed) in a text
/// exposition; 0 when absent.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

// ---------------------------------------------------------------------------------------------
// HTTP servers

/// Serves `app` on a fresh 127.0.0.1 port for the rest of the test; returns the address.
pub async fn serve(app: axum::Router) -> SocketAddr {
    serve_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), app)
}

fn serve_on(listener: TcpListener, app: axum::Router) -> SocketAddr {
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// One canned answer of the [`FakeTarget`].
#[derive(Debug, Clone)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
    /// never answer (the connection stays open)
    hang: bool,
}

impl Reply {
    /// 200 with a `text/plain` body.
    pub fn text(body: impl Into<String>) -> Reply {
        Reply {
            status: 200,
            headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
            body: Bytes::from(body.into()),
            hang: false,
        }
    }

    /// `status` with an `application/json` body.
    pub fn json(status: u16, body: &str) -> Reply {
        Reply::text(body)
            .status(status)
            .header("content-type", "application/json")
    }

    /// 200 with an `application/octet-stream` body.
    pub fn bytes(body: Vec<u8>) -> Reply {
        Reply {
            body: Bytes::from(body),
            ..Reply::text("").header("content-type", "application/octet-stream")
        }
    }

    /// A request that is never answered.
    pub fn hang() -> Reply {
        Reply {
            hang: true,
            ..Reply::text("")
        }
    }

    pub fn status(self, status: u16) -> Reply {
        Reply { status, ..self }
    }

    /// Sets header `name` (replacing a value it had).
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// A scraped service: answers every path from a table the test sets, counts the requests of
/// every path, and answers 404 to a path it has no reply for.
pub struct FakeTarget {
    base: String,
    state: Arc<TargetState>,
}

#[derive(Default)]
struct TargetState {
    replies: Mutex<HashMap<String, Reply>>,
    requests: Mutex<HashMap<String, usize>>,
    /// `demo_condition{cond}` and whether it is on, when `/metrics` is built from conditions
    conditions: Mutex<Vec<(String, bool)>>,
}

impl FakeTarget {
    /// `/metrics` serves [`EXPOSITION`], `/health` [`HEALTH_OK`].
    pub async fn start() -> FakeTarget {
        let state = Arc::new(TargetState::default());
        let app = axum::Router::new()
            .fallback(answer_from_table)
            .with_state(state.clone());
        let addr = serve(app).await;
        let target = FakeTarget {
            base: format!("http://{addr}"),
            state,
        };
        target.set_metrics(EXPOSITION);
        target.set_health(200, HEALTH_OK);
        target
    }

    /// `/metrics` serves `demo_condition{cond="…"}` 1 or 0 for every condition in `conds`, all
    /// off until [`FakeTarget::set_conditions`].
    pub async fn with_conditions(conds: &[&str]) -> FakeTarget {
        let target = FakeTarget::start().await;
        *target.state.conditions.lock().unwrap() =
            conds.iter().map(|c| (c.to_string(), false)).collect();
        target.set_conditions(&[]);
        target
    }

    /// `http://127.0.0.1:<port>`
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Answers `path` with `reply` from now on.
    pub fn route(&self, path: &str, reply: Reply) {
        self.state
            .replies
            .lock()
            .unwrap()
            .insert(path.to_string(), reply);
    }

    pub fn set_metrics(&self, text: &str) {
        self.route("/metrics", Reply::text(text));
    }

    pub fn set_health(&self, status: u16, json: &str) {
        self.route("/health", Reply::json(status, json));
    }

    /// Turns conditions on and off in one step: a scrape sees all of the changes or none.
    pub fn set_conditions(&self, changes: &[(&str, bool)]) {
        let mut conditions = self.state.conditions.lock().unwrap();
        for (cond, on) in changes {
            let slot = conditions
                .iter_mut()
                .find(|(c, _)| c == cond)
                .expect("a condition the target serves");
            slot.1 = *on;
        }
        let mut text = String::from("# TYPE demo_condition gauge\n");
        for (cond, on) in conditions.iter() {
            text.push_str(&format!(
                "demo_condition{{cond=\"{cond}\"}} {}\n",
                u8::from(*on)
            ));
        }
        // still under the conditions lock: concurrent changes publish in order
        self.set_metrics(&text);
    }

    /// How many requests `path` got (answered or not).
    pub fn requests(&self, path: &str) -> usize {
        self.state
            .requests
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

async fn answer_from_table(State(state): State<Arc<TargetState>>, uri: Uri) -> Response {
    let path = uri.path().to_string();
    *state
        .requests
        .lock()
        .unwrap()
        .entry(path.clone())
        .or_default() += 1;
    let reply = state.replies.lock().unwrap().get(&path).cloned();
    let Some(reply) = reply else {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::empty())
            .unwrap();
    };
    if reply.hang {
        std::future::pending::<()>().await;
    }
    let mut response = Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        response = response.header(name, value);
    }
    response.body(Body::from(reply.body)).unwrap()
}

/// How the [`WebhookSink`] answers a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// this status, empty body
    Status(u16),
    /// this status and body
    Reply(u16, &'static str),
    /// record the request, then never answer (the connection stays open)
    Hold,
}

impl Answer {
    fn status(self) -> Option<u16> {
        match self {
            Answer::Status(code) | Answer::Reply(code, _) => Some(code),
            Answer::Hold => None,
        }
    }
}

/// One request the [`WebhookSink`] got.
#[derive(Debug, Clone)]
pub struct Hit {
    pub path: String,
    pub headers: HeaderMap,
    /// the body as sent
    pub raw: Bytes,
    /// the body as JSON (`Null` when it is not JSON)
    pub body: Value,
    /// the status it answered; None when it held the request
    pub answered: Option<u16>,
}

impl Hit {
    /// The idempotency key header (empty when absent).
    pub fn key(&self) -> String {
        self.header(IDEMPOTENCY_HEADER)
    }

    /// Header `name` (empty when absent).
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }

    /// `firing` or `resolved`
    pub fn status(&self) -> &str {
        self.body["status"].as_str().unwrap_or("")
    }

    /// The `cond` group label (the daemon tests group by `cond`: one alert per group).
    pub fn cond(&self) -> &str {
        self.body["groupLabels"]["cond"].as_str().unwrap_or("")
    }

    pub fn delivered(&self) -> bool {
        self.answered.is_some_and(|s| (200..300).contains(&s))
    }

    pub fn is(&self, cond: &str, status: &str) -> bool {
        self.cond() == cond && self.status() == status
    }
}

/// A webhook receiver: records every request (any path; [`WebhookSink::url`] names `/hook`)
/// with its headers and body, and answers as it is told: one answer for every request, or
/// another for the groups of one `cond`.
pub struct WebhookSink {
    addr: SocketAddr,
    url: String,
    state: Arc<SinkState>,
}

struct SinkState {
    hits: Mutex<Vec<Hit>>,
    /// the answer for every request, unless `by_cond` has one for the group's `cond`
    default: Mutex<Answer>,
    by_cond: Mutex<HashMap<String, Answer>>,
}

impl WebhookSink {
    pub async fn start(answer: Answer) -> WebhookSink {
        WebhookSink::listen(TcpListener::bind("127.0.0.1:0").await.unwrap(), answer)
    }

    /// Listens on `addr` (a port released earlier; retried while the kernel still holds it).
    pub async fn start_on(addr: SocketAddr, answer: Answer) -> WebhookSink {
        let deadline = Deadline::within(format!("binding {addr} again"), WAIT);
        let listener = deadline
            .until_some(async || TcpListener::bind(addr).await.ok())
            .await;
        WebhookSink::listen(listener, answer)
    }

    fn listen(listener: TcpListener, answer: Answer) -> WebhookSink {
        let state = Arc::new(SinkState {
            hits: Mutex::default(),
            default: Mutex::new(answer),
            by_cond: Mutex::default(),
        });
        let app = axum::Router::new()
            .fallback(record)
            .with_state(state.clone());
        let addr = serve_on(listener, app);
        WebhookSink {
            addr,
            url: format!("http://{addr}/hook"),
            state,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>/hook`
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How every request is answered from now on.
    pub fn answer(&self, answer: Answer) {
        *self.state.default.lock().unwrap() = answer;
    }

    /// How the requests for the group of `cond` are answered from now on.
    pub fn answer_for(&self, cond: &str, answer: Answer) {
        self.state
            .by_cond
            .lock()
            .unwrap()
            .insert(cond.to_string(), answer);
    }

    /// Every request so far, in arrival order.
    pub fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().unwrap().clone()
    }

    /// The JSON body of every request so far, in arrival order.
    pub fn bodies(&self) -> Vec<Value> {
        self.hits().into_iter().map(|h| h.body).collect()
    }

    /// `(cond, status)` of every request, in arrival order.
    pub fn seen(&self) -> Vec<(String, String)> {
        self.hits()
            .iter()
            .map(|h| (h.cond().to_string(), h.status().to_string()))
            .collect()
    }

    /// Waits (bounded by [`WAIT`]) for a request that satisfies `ok`; returns the first such.
    pub async fn wait_for(&self, what: &str, ok: impl Fn(&Hit) -> bool) -> Hit {
        let deadline = Deadline::within(format!("{what} at {}", self.url), WAIT);
        deadline
            .until_some(async || self.hits().into_iter().find(|h| ok(h)))
            .await
    }
}

async fn record(
    State(s): State<Arc<SinkState>>,
    uri: Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&raw).unwrap_or_default();
    let cond = body["groupLabels"]["cond"].as_str().unwrap_or_default();
    let answer = s
        .by_cond
        .lock()
        .unwrap()
        .get(cond)
        .copied()
        .unwrap_or(*s.default.lock().unwrap());
    s.hits.lock().unwrap().push(Hit {
        path: uri.path().to_string(),
        headers,
        raw,
        body,
        answered: answer.status(),
    });
    let (code, text) = match answer {
        Answer::Status(code) => (code, ""),
        Answer::Reply(code, text) => (code, text),
        Answer::Hold => std::future::pending().await,
    };
    Response::builder()
        .status(code)
        .body(Body::from(text))
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// the daemon

/// How to start `tocsin run` in a directory (see [`Daemon::in_dir`]). The directory is the
/// working directory, so the default store `./data/tocsin.db` stays there across restarts.
#[derive(Debug, Clone)]
pub struct DaemonBuilder {
    dir: PathBuf,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    listen: Option<SocketAddr>,
}

impl DaemonBuilder {
    /// Writes `yaml` to `tocsin.yml` in the directory (now) and runs with `--config tocsin.yml`.
    pub fn config(self, yaml: &str) -> DaemonBuilder {
        self.file("tocsin.yml", yaml).config_path("tocsin.yml")
    }

    /// Runs with `--config path` (relative to the directory); without a config the daemon
    /// reads `./tocsin.yml` if present, else its built-in default.
    pub fn config_path(self, path: impl AsRef<Path>) -> DaemonBuilder {
        self.arg("--config").arg(path.as_ref())
    }

    /// Writes `text` to `rel` in the directory now (creating its parent directories).
    pub fn file(self, rel: &str, text: &str) -> DaemonBuilder {
        let path = self.dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self
    }

    /// An argument after `run` (`--dry-run`, `--log-format json`).
    pub fn arg(mut self, arg: impl Into<OsString>) -> DaemonBuilder {
        self.args.push(arg.into());
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> DaemonBuilder {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// Listens on `addr` (default: a free port picked at each start).
    pub fn listen(self, addr: SocketAddr) -> DaemonBuilder {
        DaemonBuilder {
            listen: Some(addr),
            ..self
        }
    }

    /// Spawns the daemon (it is not ready yet: see [`Daemon::wait_ready`]).
    pub fn start(self) -> Daemon {
        let addr = self.listen.unwrap_or_else(free_addr);
        let logs = tempfile::tempdir().unwrap();
        let stdout = logs.path().join("stdout.log");
        let stderr = logs.path().join("stderr.log");
        let child = Command::new(BIN)
            .arg("run")
            .args(&self.args)
            .current_dir(&self.dir)
            .env("TOCSIN_LISTEN", addr.to_string())
            .env("TOCSIN_LOG_LEVEL", "info")
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Daemon {
            child,
            base: format!("http://{addr}"),
            stdout,
            stderr,
            _logs: logs,
            builder: self,
        }
    }
}

/// A `tocsin run` child process. Dropping it kills the child (by its PID, through `Child`) and,
/// when the test is failing, prints its output.
pub struct Daemon {
    child: Child,
    /// `http://127.0.0.1:<port>`
    pub base: String,
    stdout: PathBuf,
    stderr: PathBuf,
    /// holds the log files
    _logs: tempfile::TempDir,
    /// what started it, for [`Daemon::start_again`]
    builder: DaemonBuilder,
}

impl Daemon {
    /// A daemon running in `dir`, with `TOCSIN_LISTEN` on a free port, log level info.
    pub fn in_dir(dir: &Path) -> DaemonBuilder {
        DaemonBuilder {
            dir: dir.to_path_buf(),
            args: Vec::new(),
            env: Vec::new(),
            listen: None,
        }
    }

    /// Starts another daemon with the same settings in the same directory (the same store);
    /// this one must have stopped.
    pub fn start_again(&mut self) -> Daemon {
        assert!(
            self.child.try_wait().unwrap().is_some(),
            "the first daemon is still running"
        );
        self.builder.clone().start()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Waits (bounded by [`STARTUP`]) until the daemon serves its API: `/health/live` answers
    /// from the first moment, the rest once the store is open and every loop runs (until then
    /// `/api/v1/openapi.json`, open to all, is a 503). Returns `/health/live`'s answer.
    pub async fn wait_ready(&self) -> Value {
        let live = self
            .wait_json("/health/live", STARTUP, |v| v["status"] == "ok")
            .await;
        self.wait_json("/api/v1/openapi.json", STARTUP, |v| {
            v["openapi"].is_string()
        })
        .await;
        live
    }

    /// Polls `GET path` until its JSON body satisfies `ok`; returns that body.
    pub async fn wait_json(
        &self,
        path: &str,
        within: Duration,
        ok: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Deadline::within(format!("{path} reaching the expected state"), within);
        deadline
            .until_some(async || {
                let v: Value = serde_json::from_str(&self.get_text(path).await?).ok()?;
                ok(&v).then_some(v)
            })
            .await
    }

    /// `GET path`: the body, None when the request failed.
    pub async fn get_text(&self, path: &str) -> Option<String> {
        reqwest::get(self.url(path)).await.ok()?.text().await.ok()
    }

    /// `GET path` as JSON (`Null` when the request failed or the body is not JSON).
    pub async fn get_json(&self, path: &str) -> Value {
        let text = self.get_text(path).await.unwrap_or_default();
        serde_json::from_str(&text).unwrap_or_default()
    }

    /// The sample `series` of `/metrics` (name and labels as exposed), 0 while absent.
    pub async fn metric(&self, series: &str) -> f64 {
        metric_value(&self.get_text("/metrics").await.unwrap_or_default(), series)
    }

    /// Waits until the sample `series` of `/metrics` reaches `at_least`; returns its value.
    pub async fn wait_metric(&self, series: &str, at_least: f64, within: Duration) -> f64 {
        let deadline = Deadline::within(format!("{series} reaching {at_least}"), within);
        deadline
            .until_some(async || {
                let n = self.metric(series).await;
                (n >= at_least).then_some(n)
            })
            .await
    }

    /// SIGKILL: no shutdown, no final flush.
    pub fn kill_9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM (the store is flushed on the way out), then waits for the exit (bounded by 20 s).
    pub async fn terminate(&mut self) -> ExitStatus {
        self.signal_and_wait("TERM").await
    }

    /// Sends the signal `name` (`TERM`, `BUS`, ...) with `kill`, then waits for the exit (bounded
    /// by 20 s).
    pub async fn signal_and_wait(&mut self, name: &str) -> ExitStatus {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args([format!("-{name}").as_str(), &pid])
                .status()
                .unwrap()
                .success()
        );
        let child = &mut self.child;
        Deadline::within(
            format!("daemon stopping on SIG{name}"),
            Duration::from_secs(20),
        )
        .until_some(async || child.try_wait().unwrap())
        .await
    }

    /// What the daemon wrote to stdout (its log) so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// What the daemon wrote to stderr (fatal errors) so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- daemon {} stdout ---\n{}--- stderr ---\n{}",
                self.base,
                self.stdout(),
                self.stderr()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// store and labels

/// `../shared` beside the project, if present (CI always has it).
pub fn shared_dir() -> Option<PathBuf> {
    let p = project_dir().join("../shared");
    p.is_dir().then_some(p)
}

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

pub fn name_is(name: &str) -> Vec<Matcher> {
    vec![Matcher::equal("__name__", name)]
}

pub fn matcher(op: MatchOp, name: &str, value: &str) -> Matcher {
    Matcher::new(op, name, value).unwrap()
}

pub fn open_store(dir: &tempfile::TempDir) -> Store {
    Store::open(&dir.path().join("tocsin.db"), StoreOptions::default()).unwrap()
}

pub fn open_store_with(dir: &tempfile::TempDir, opts: StoreOptions) -> Store {
    Store::open(&dir.path().join("tocsin.db"), opts).unwrap()
}

/// All samples of the one series matching `matchers` in [mint, maxt].
pub fn samples_of(store: &Store, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<(i64, f64)> {
    let mut got = store.select(matchers, mint, maxt).unwrap();
    assert!(got.len() <= 1, "expected one series, got {}", got.len());
    got.pop().map(|s| s.samples).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// a scripted SMTP server (plain SMTP on 127.0.0.1: TLS would need certificates)

/// What the scripted SMTP server does differently from a server that accepts everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Script {
    /// the reply to AUTH (default `235` accepted)
    pub auth_reply: Option<&'static str>,
    /// the reply to MAIL FROM (default `250`)
    pub mail_reply: Option<&'static str>,
    /// close the connection after the first line of message data
    pub drop_in_data: bool,
}

/// One accepted message.
#[derive(Debug, Clone, Default)]
pub struct Mail {
    pub auth: Option<String>,
    pub from: String,
    pub rcpt: Vec<String>,
    pub data: String,
}

/// A minimal SMTP server on 127.0.0.1 (one task per connection) recording accepted messages.
/// It offers 8BITMIME and AUTH PLAIN, never STARTTLS.
pub async fn smtp_server(script: Script) -> (SocketAddr, Arc<Mutex<Vec<Mail>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
    let sink = mails.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(smtp_session(socket, script, sink.clone()));
        }
    });
    (addr, mails)
}

async fn smtp_session(
    socket: tokio::net::TcpStream,
    script: Script,
    mails: Arc<Mutex<Vec<Mail>>>,
) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"220 test.local ESMTP\r\n").await?;
    let mut mail = Mail::default();
    while let Some(line) = lines.next_line().await? {
        let upper = line.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            "250-test.local\r\n250-8BITMIME\r\n250-AUTH PLAIN\r\n250 SIZE 10000000".into()
        } else if upper.starts_with("AUTH") {
            mail.auth = Some(line.clone());
            script.auth_reply.unwrap_or("235 2.7.0 accepted").into()
        } else if upper.starts_with("MAIL FROM:") {
            mail.from = line[10..].trim().to_string();
            script.mail_reply.unwrap_or("250 2.1.0 ok").into()
        } else if upper.starts_with("RCPT TO:") {
            mail.rcpt.push(line[8..].trim().to_string());
            "250 2.1.5 ok".into()
        } else if upper == "DATA" {
            write.write_all(b"354 go ahead\r\n").await?;
            let mut data = String::new();
            while let Some(l) = lines.next_line().await? {
                if script.drop_in_data {
                    // hang up with the message half sent
                    return Ok(());
                }
                if l == "." {
                    break;
                }
                data.push_str(&l);
                data.push('\n');
            }
            mail.data = data;
            mails.lock().unwrap().push(std::mem::take(&mut mail));
            "250 2.0.0 queued".into()
        } else if upper == "QUIT" {
            write.write_all(b"221 2.0.0 bye\r\n").await?;
            return Ok(());
        } else if upper == "RSET" || upper == "NOOP" {
            "250 ok".into()
        } else {
            "502 5.5.2 not implemented".into()
        };
        write.write_all(format!("{reply}\r\n").as_bytes()).await?;
    }
    Ok(())
}

/// A scrape scheduler running the targets of `yaml` (a tocsin.yml) on a store in a temporary
/// directory, read by `clock`; [`RunningScheduler::stop`] ends its tasks.
pub struct RunningScheduler {
    pub store: Arc<Store>,
    pub status: Arc<tocsin::ingest::scheduler::StatusBoard>,
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: tokio::task::JoinSet<()>,
    _dir: tempfile::TempDir,
}

pub fn start_scheduler(yaml: &str, clock: Arc<dyn tocsin::clock::Clock>) -> RunningScheduler {
    let targets = tocsin::config::Config::from_yaml(yaml, Path::new("t.yml"))
        .unwrap()
        .build_targets(&Default::default())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open_store(&dir));
    let status = Arc::new(tocsin::ingest::scheduler::StatusBoard::default());
    let scheduler = tocsin::ingest::scheduler::Scheduler {
        store: store.clone(),
        clock,
        metrics: Arc::new(tocsin::selfmetrics::SelfMetrics::new(0.0)),
        status: status.clone(),
        client: tocsin::ingest::client(),
        heartbeats: Default::default(),
    };
    let (shutdown, rx) = tokio::sync::watch::channel(false);
    let tasks = scheduler.spawn(targets, Duration::from_secs(3600), rx);
    RunningScheduler {
        store,
        status,
        shutdown,
        tasks,
        _dir: dir,
    }
}

impl RunningScheduler {
    /// Stops every task and waits for them to end.
    pub async fn stop(mut self) {
        self.shutdown.send(true).unwrap();
        while self.tasks.join_next().await.is_some() {}
    }
}
