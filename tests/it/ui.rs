//! The web UI in a real browser: headless Chromium driven through `chromedriver` over the W3C
//! WebDriver HTTP protocol (a small client below, on reqwest), against the real binary (or, for
//! the panels whose API is not served yet, against the UI's routes beside a stub API in the
//! Prometheus shapes it is written for). Without `chromium` and `chromedriver` on the PATH the
//! browser tests print `skipping: …` and pass.
//!
//! No assertion follows a fixed sleep: every wait polls with a deadline. "Nothing was sent for the
//! silenced alert" is shown with a marker: another group that fired after the silence, with the
//! same group_wait, reaches the webhook; the silenced group would have been due before it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::get;
use serde_json::{Value, json};

use crate::common::{
    Answer, DEMO_RULES, Daemon, Deadline, FakeTarget, WebhookSink, free_addr, on_path, serve,
};

const TOKEN_VAR: &str = "TOCSIN_UI_TEST_TOKEN";
const TOKEN: &str = "ui-s3cret";
/// Bound on every wait (browser start included), generous next to 1 s scrapes and evaluations.
const DEADLINE: Duration = Duration::from_secs(30);
/// Poll interval of the waits: a WebDriver call costs more than a request to the daemon.
const POLL: Duration = Duration::from_millis(100);
/// The key W3C WebDriver names an element reference by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

// ---------------------------------------------------------------------------------------------
// the browser: chromedriver and a tiny W3C WebDriver client

/// The browser and its driver, or None (after printing why) when they are not installed.
fn browser_tools() -> Option<(PathBuf, PathBuf)> {
    let chromium = on_path("chromium").or_else(|| on_path("chromium-browser"));
    match (chromium, on_path("chromedriver")) {
        (Some(browser), Some(driver)) => Some((browser, driver)),
        _ => {
            println!(
                "skipping: chromium/chromedriver not installed (apt install chromium chromium-driver)"
            );
            None
        }
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// A chromedriver this test started, with one browser session. Dropping it ends the session
/// (chromedriver closes the browser) and kills the chromedriver's process group, which holds
/// the browser processes it started, by that id.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    log: PathBuf,
}

/// A WebDriver error: the protocol's error code (`no such element`, `stale element reference` …).
struct WdError {
    code: String,
    message: String,
}

impl std::fmt::Display for WdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl Browser {
    async fn start(browser: &Path, driver: &Path, dir: &Path) -> Browser {
        Browser::start_with_env(browser, driver, dir, &[]).await
    }

    /// [`Browser::start`] with `env` set for chromedriver and the browser it starts (`TZ`).
    async fn start_with_env(
        browser: &Path,
        driver: &Path,
        dir: &Path,
        env: &[(&str, &str)],
    ) -> Browser {
        let addr = free_addr();
        let log = dir.join("chromedriver.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = {
            use std::os::unix::process::CommandExt;
            Command::new(driver)
                .arg(format!("--port={}", addr.port()))
                .arg("--allowed-ips=127.0.0.1")
                .envs(env.iter().copied())
                .stdout(Stdio::from(out.try_clone().unwrap()))
                .stderr(Stdio::from(out))
                // its own process group: the browsers it starts are in it too
                .process_group(0)
                .spawn()
                .unwrap()
        };
        let mut me = Browser {
            driver: child,
            base: format!("http://{addr}"),
            session: String::new(),
            http: reqwest::Client::new(),
            log,
        };
        let deadline = Deadline::within("chromedriver ready", DEADLINE).every(POLL);
        loop {
            if let Ok(v) = me.call(reqwest::Method::GET, "/status", None).await
                && v["ready"] == true
            {
                break;
            }
            deadline.tick().await;
        }
        let mut args = vec![
            "--headless",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1400,900",
            "--no-first-run",
        ];
        if running_as_root() {
            args.push("--no-sandbox");
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": browser.to_str().unwrap(), "args": args},
        }}});
        let v = me
            .call(reqwest::Method::POST, "/session", Some(caps))
            .await
            .unwrap_or_else(|e| panic!("cannot start a browser session: {e}"));
        me.session = v["sessionId"].as_str().unwrap().to_string();
        me
    }

    /// One WebDriver command: its `value`, or the protocol error.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, WdError> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let resp = req.send().await.map_err(|e| WdError {
            code: "transport".into(),
            message: e.to_string(),
        })?;
        let text = resp.text().await.unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or_default();
        let value = v["value"].clone();
        match value["error"].as_str() {
            Some(code) => Err(WdError {
                code: code.to_string(),
                message: value["message"].as_str().unwrap_or_default().to_string(),
            }),
            None => Ok(value),
        }
    }

    async fn session_call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let body = (method != reqwest::Method::GET).then_some(body);
        self.call(method, &path, body)
            .await
            .unwrap_or_else(|e| panic!("webdriver {path}: {e}"))
    }

    async fn navigate(&self, url: &str) {
        self.session_call(reqwest::Method::POST, "/url", json!({"url": url}))
            .await;
    }

    async fn find(&self, css: &str) -> Result<String, WdError> {
        let path = format!("/session/{}/element", self.session);
        let v = self
            .call(
                reqwest::Method::POST,
                &path,
                Some(json!({"using": "css selector", "value": css})),
            )
            .await?;
        Ok(v[ELEMENT].as_str().unwrap_or_default().to_string())
    }

    /// Waits until an element matches `css`.
    async fn wait_for(&self, css: &str) {
        let deadline = Deadline::within(format!("an element {css}"), DEADLINE).every(POLL);
        while self.find(css).await.is_err() {
            deadline.tick().await;
        }
    }

    /// Finds and acts on an element, again while the page re-renders under it (it refreshes
    /// its panels every second, so a found element may be replaced before the action).
    async fn on_element(&self, css: &str, action: &str, body: Value) {
        let deadline = Deadline::within(format!("{action} on {css}"), DEADLINE).every(POLL);
        loop {
            let result = match self.find(css).await {
                Ok(id) => {
                    let path = format!("/session/{}/element/{id}/{action}", self.session);
                    self.call(reqwest::Method::POST, &path, Some(body.clone()))
                        .await
                        .map(drop)
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => return,
                Err(e)
                    if matches!(
                        e.code.as_str(),
                        "no such element" | "stale element reference" | "element not interactable"
                    ) => {}
                Err(e) => panic!("{action} on {css}: {e}"),
            }
            deadline.tick().await;
        }
    }

    async fn click(&self, css: &str) {
        self.on_element(css, "click", json!({})).await;
    }

    /// Replaces the text of an input.
    async fn fill(&self, css: &str, text: &str) {
        self.on_element(css, "clear", json!({})).await;
        self.on_element(css, "value", json!({"text": text})).await;
    }

    async fn script(&self, script: &str, args: Value) -> Value {
        self.session_call(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
    }

    /// The text content of the first element matching `css` ("" when none does).
    async fn text(&self, css: &str) -> String {
        self.script(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';",
            json!([css]),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// A PNG of the viewport.
    async fn screenshot(&self) -> Vec<u8> {
        let v = self
            .session_call(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        base64_decode(v.as_str().expect("screenshot as base64"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // end the session (chromedriver closes its browser), then the driver's process group
        if !self.session.is_empty() {
            let addr = self.base.trim_start_matches("http://").to_string();
            let request = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n",
                self.session
            );
            if let Ok(mut conn) = std::net::TcpStream::connect(&addr) {
                use std::io::{Read, Write};
                let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = conn.write_all(request.as_bytes());
                let _ = conn.read_to_end(&mut Vec::new());
            }
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- {} ---\n{log}", self.log.display());
        }
    }
}

/// Standard base64 (WebDriver's screenshot encoding).
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let digits: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .map(value)
        .collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, d)| n | u32::from(*d) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// Where CI keeps the screenshots: `target/ui-artifacts/` (created).
fn artifact(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::common::project_dir().join("target"));
    let dir = target.join("ui-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn save_screenshot(png: &[u8], name: &str) {
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "the screenshot is a PNG"
    );
    let path = artifact(name);
    std::fs::write(&path, png).unwrap();
    println!("screenshot: {}", path.display());
}

// ---------------------------------------------------------------------------------------------
// the alert rows

/// The CSS selector of the alert row of `cond`.
fn alert_row(cond: &str) -> String {
    format!("tr.alert[data-key*='cond=\"{cond}\"']")
}

// ---------------------------------------------------------------------------------------------
// the tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_bundle_is_served_with_content_types_and_a_csp_without_inline_script() {
    let addr = serve(tocsin::ui::routes()).await;

    let mut bodies = Vec::new();
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/style.css", "text/css; charset=utf-8"),
    ] {
        let resp = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        };
        assert_eq!(header("content-type"), content_type, "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        let csp = header("content-security-policy");
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        bodies.push(resp.text().await.unwrap());
    }
    let (html, js) = (&bodies[0], &bodies[1]);
    // every script is a file of the bundle; nothing comes from another origin
    for tag in html.split("<script").skip(1) {
        assert!(
            tag.starts_with(" src=\"/ui/"),
            "inline or foreign script: {tag}"
        );
        assert!(tag.contains("></script>"), "a script with a body: {tag}");
    }
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert!(
        !html.contains("style=\""),
        "inline styles are refused by the CSP"
    );
    // the page is built from DOM nodes: data from the API is never parsed as HTML
    assert!(!js.contains("innerHTML") && !js.contains("outerHTML") && !js.contains("eval("));

    let resp = reqwest::get(format!("http://{addr}/ui/missing.js"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_created_in_the_browser_marks_the_alert_and_keeps_it_from_the_webhook() {
    let Some((chromium, chromedriver)) = browser_tools() else {
        return;
    };
    let target = FakeTarget::with_conditions(&["a", "b"]).await;
    let hook = WebhookSink::start(Answer::Status(200)).await;
    let hook_url = hook.url();
    let target_base = target.base();
    let dir = tempfile::tempdir().unwrap();
    // a's and b's groups each wait 8 s: the silence comes within a's wait, b fires after the
    // silence, so b's group is due after a's would have been
    let config = format!(
        "storage: {{ flush_interval: 1s }}\n\
         scrape: {{ interval: 1s, timeout: 1s }}\n\
         evaluation: {{ interval: 1s }}\n\
         rule_files: [rules.yml]\n\
         targets:\n  - name: svc\n    metrics: {target_base}/metrics\n\
         server: {{ api_token_env: {TOKEN_VAR} }}\n\
         route: {{ receiver: ops, group_by: [alertname, cond], group_wait: 8s, \
         group_interval: 1s, repeat_interval: 1h }}\n\
         receivers:\n  - name: ops\n    webhook: {{ url: \"{hook_url}\" }}\n"
    );
    let d = Daemon::in_dir(dir.path())
        .file("rules.yml", DEMO_RULES)
        .config(&config)
        .env(TOKEN_VAR, TOKEN)
        .start();
    let browser = Browser::start(&chromium, &chromedriver, dir.path()).await;

    // load: the page comes up and reads the API (nothing fires yet)
    d.wait_ready().await;
    browser.navigate(&format!("{}/?refresh=1", d.base)).await;
    browser.wait_for("#alerts-body .empty").await;
    assert_eq!(
        browser.script("return document.title", json!([])).await,
        "tocsin"
    );
    assert!(
        browser
            .text("#alerts-body")
            .await
            .contains("nothing pending or firing")
    );

    // the alert fires and shows up, with its labels and annotation
    target.set_conditions(&[("a", true)]);
    browser
        .wait_for(&format!("{}.firing", alert_row("a")))
        .await;
    let row = browser.text(&alert_row("a")).await;
    for want in [
        "firing",
        "DemoCondition",
        "severity=page",
        "job=svc",
        "condition a is on",
    ] {
        assert!(
            row.contains(want),
            "{want:?} missing in the alert row: {row}"
        );
    }

    // silence it from its row: matchers prefilled from its labels; the token is asked for
    browser
        .click(&format!("{} button.silence", alert_row("a")))
        .await;
    browser.wait_for("#silence-dialog[open]").await;
    let matchers = browser
        .script(
            "return document.querySelector('#silence-form textarea[name=matchers]').value",
            json!([]),
        )
        .await;
    let matchers = matchers.as_str().unwrap();
    for want in [
        "alertname=\"DemoCondition\"",
        "cond=\"a\"",
        "severity=\"page\"",
    ] {
        assert!(matchers.contains(want), "{want} not prefilled: {matchers}");
    }
    browser
        .fill("#silence-form input[name=duration]", "1h")
        .await;
    browser
        .fill("#silence-form input[name=author]", "ui-test")
        .await;
    browser
        .fill("#silence-form input[name=comment]", "maintenance")
        .await;
    browser.click("#silence-submit").await;
    browser.wait_for("#token-dialog[open]").await;
    browser.fill("#token-form input[name=token]", TOKEN).await;
    browser.click("#token-submit").await;

    // the alert list shows it silenced, the daemon has the silence
    browser
        .wait_for(&format!("{} .badge.silenced", alert_row("a")))
        .await;
    assert!(
        hook.seen().is_empty(),
        "the silence came before the group's flush: {:?}",
        hook.seen()
    );
    let silences = d.get_json("/api/v1/silences").await;
    let list = silences["data"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{silences}");
    assert_eq!(list[0]["createdBy"], "ui-test");
    assert_eq!(list[0]["comment"], "maintenance");
    assert_eq!(list[0]["status"]["state"], "active");
    assert!(
        list[0]["matchers"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "cond", "value": "a", "isRegex": false, "isEqual": true})),
        "{silences}"
    );
    let token = browser
        .script(
            "return sessionStorage.getItem('tocsin.apiToken')",
            json!([]),
        )
        .await;
    assert_eq!(token, TOKEN, "the token is kept for the session");
    browser.click("a[data-tab=silences]").await;
    browser.wait_for("#silences-body tr.silence.active").await;
    assert!(browser.text("#silences-body").await.contains("ui-test"));
    browser.click("a[data-tab=alerts]").await;

    // marker: b fires after the silence; its group is due after a's would have been
    target.set_conditions(&[("b", true)]);
    Deadline::within("b's notification", DEADLINE)
        .every(POLL)
        .until(|| !hook.seen().is_empty())
        .await;
    assert_eq!(
        hook.seen(),
        vec![("b".to_string(), "firing".to_string())],
        "nothing for the silenced alert"
    );
    browser
        .wait_for(&format!("{}.firing", alert_row("b")))
        .await;
    assert!(
        browser
            .find(&format!("{} .badge.silenced", alert_row("b")))
            .await
            .is_err(),
        "b is not silenced"
    );

    save_screenshot(&browser.screenshot().await, "alerts.png");

    // the other panels, from the real API: rules, targets, and the notification history with b's
    // delivery (and nothing for the silenced a)
    let rules = browser.text("#rules-body").await;
    assert!(rules.contains("DemoCondition"), "{rules}");
    let targets = browser.text("#targets-body").await;
    assert!(targets.contains(target_base), "{targets}");
    browser.click("a[data-tab=notifications]").await;
    browser
        .wait_for("#notifications-body tr.notification.delivered")
        .await;
    let history = browser.text("#notifications-body").await;
    assert!(
        history.contains("[FIRING:1] DemoCondition (b)"),
        "{history}"
    );
    assert!(!history.contains("DemoCondition (a)"), "{history}");
    save_screenshot(&browser.screenshot().await, "notifications.png");
}

/// A route answering `v` as JSON.
fn fixed(v: Value) -> axum::routing::MethodRouter {
    get(move || {
        let v = v.clone();
        async move { axum::Json(v) }
    })
}

type Queries = Arc<Mutex<Vec<std::collections::HashMap<String, String>>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panels_draw_rules_targets_and_sparklines_from_prometheus_shaped_answers() {
    let Some((chromium, chromedriver)) = browser_tools() else {
        return;
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let now_s = now_ms / 1000;
    let at = |ago_s: i64| tocsin::timefmt::format_rfc3339(now_ms - ago_s * 1000);
    let alert = |instance: &str| {
        json!({"labels": {"alertname": "DiskFull", "instance": instance, "severity": "page"},
               "annotations": {"summary": format!("disk of {instance} full")},
               "state": "firing", "activeAt": at(300), "firedAt": at(300), "value": "0.97",
               "group": "disk"})
    };
    let evals = |errors: bool| {
        (0..20)
            .map(|i| {
                json!({"t": now_s - 20 + i, "duration_s": 0.002,
                       "results": if errors { 0 } else { 1 },
                       "error": if errors && i == 19 { "many-to-many matching not allowed" } else { "" }})
            })
            .collect::<Vec<_>>()
    };
    let rules = json!({"status": "success", "data": {"groups": [{"name": "disk", "file": "rules/disk.yml",
    "rules": [
        {"name": "DiskFull", "query": "disk_used_ratio > 0.95", "type": "alerting", "health": "ok",
         "state": "firing", "lastError": "", "lastEvaluation": at(1),
         "alerts": [alert("db1"), alert("db2")], "evaluations": evals(false)},
        {"name": "LoadHigh", "query": "load1 > on() group_left load_limit", "type": "alerting",
         "health": "err", "state": "inactive", "lastError": "many-to-many matching not allowed",
         "lastEvaluation": at(1), "alerts": [], "evaluations": evals(true)},
    ]}]}});
    let targets = json!({"status": "success", "data": {"activeTargets": [
        {"labels": {"job": "db", "instance": "db1:9100"}, "scrapeUrl": "http://db1:9100/metrics",
         "health": "down", "lastError": "connection refused", "lastScrape": at(2)},
        {"labels": {"job": "db", "instance": "db2:9100"}, "scrapeUrl": "http://db2:9100/metrics",
         "health": "up", "lastError": "", "lastScrape": at(3)},
    ]}});
    let silences = json!({"status": "success", "data": [
        {"id": "s-1", "matchers": [{"name": "instance", "value": "db2|db3", "isRegex": true, "isEqual": true}],
         "startsAt": at(60), "endsAt": at(-3600), "createdBy": "ops", "comment": "reindex",
         "status": {"state": "active"}},
    ]});
    // the expression's series over the hour: db1 climbing to 0.97, db2 flat
    let series = |instance: &str, value: &dyn Fn(i64) -> f64| {
        json!({"metric": {"instance": instance},
               "values": (0..=60).map(|i| json!([now_s - 3600 + i * 60, value(i).to_string()])).collect::<Vec<_>>()})
    };
    let matrix = json!({"status": "success", "data": {"resultType": "matrix", "result": [
        series("db2", &|_| 0.5),
        series("db1", &|i| 0.9 + i as f64 * 0.07 / 60.0),
    ]}});
    let queries: Queries = Arc::default();
    let app: axum::Router = tocsin::ui::routes()
        .route(
            "/api/v1/alerts",
            fixed(json!({"status": "success", "data": {"alerts": [alert("db1"), alert("db2")]}})),
        )
        .route("/api/v1/rules", fixed(rules))
        .route("/api/v1/targets", fixed(targets))
        .route("/api/v1/silences", fixed(silences))
        .route(
            "/api/v1/query_range",
            get({
                let queries = queries.clone();
                move |axum::extract::Query(q): axum::extract::Query<
                    std::collections::HashMap<String, String>,
                >| {
                    queries.lock().unwrap().push(q);
                    let matrix = matrix.clone();
                    async move { axum::Json(matrix) }
                }
            }),
        );
    let addr = serve(app).await;
    let dir = tempfile::tempdir().unwrap();
    let browser = Browser::start(&chromium, &chromedriver, dir.path()).await;
    browser.navigate(&format!("http://{addr}/")).await;

    // alerts: db1's sparkline is its own series of the rule's query over the last hour;
    // db2 is silenced by the regex silence, db1 is not
    let db1 = "tr.alert[data-key*='instance=\"db1\"']";
    let db2 = "tr.alert[data-key*='instance=\"db2\"']";
    browser
        .wait_for(&format!("{db1} .spark svg.sparkline polyline"))
        .await;
    let title = browser.text(&format!("{db1} .spark svg title")).await;
    assert!(title.starts_with("disk_used_ratio > 0.95"), "{title}");
    assert!(
        title.contains("last 0.97"),
        "db1's series, not db2's: {title}"
    );
    {
        let q = queries.lock().unwrap();
        assert_eq!(q[0]["query"], "disk_used_ratio > 0.95");
        let start: i64 = q[0]["start"].parse().unwrap();
        let end: i64 = q[0]["end"].parse().unwrap();
        assert_eq!(end - start, 3600, "the last hour");
        assert!((end - now_s).abs() < 60, "ending now: {end} vs {now_s}");
        assert_eq!(q[0]["step"], "60");
    }
    assert!(
        browser
            .find(&format!("{db2} .badge.silenced"))
            .await
            .is_ok()
    );
    assert!(
        browser
            .find(&format!("{db1} .badge.silenced"))
            .await
            .is_err()
    );

    // rules: state, health, error, and the last evaluations saying why one does not fire
    browser.click("a[data-tab=rules]").await;
    browser.wait_for("#rules tr.rule[data-rule=LoadHigh]").await;
    let load = browser.text("#rules tr.rule[data-rule=LoadHigh]").await;
    for want in [
        "inactive",
        "err",
        "many-to-many matching not allowed",
        "why not firing",
    ] {
        assert!(load.contains(want), "{want:?} missing: {load}");
    }
    let strip = browser
        .script(
            "const r = document.querySelector('#rules tr.rule[data-rule=LoadHigh]'); \
             return [r.querySelectorAll('.ev').length, r.querySelectorAll('.ev.ev-error').length, \
                     r.querySelectorAll('.ev.ev-hit').length]",
            json!([]),
        )
        .await;
    assert_eq!(
        strip,
        json!([20, 1, 0]),
        "20 evaluations, the last one failed"
    );
    let disk = browser.text("#rules tr.rule[data-rule=DiskFull]").await;
    assert!(
        disk.contains("firing") && disk.contains("2 alerts"),
        "{disk}"
    );
    assert!(!disk.contains("why not firing"), "{disk}");

    // targets: down first with its error
    browser.click("a[data-tab=targets]").await;
    browser.wait_for("#targets tr.target.down").await;
    let down = browser.text("#targets tr.target.down").await;
    assert!(
        down.contains("http://db1:9100/metrics") && down.contains("connection refused"),
        "{down}"
    );
    assert!(browser.find("#targets tr.target.up").await.is_ok());

    // silences: the active one with its matcher as text
    browser.click("a[data-tab=silences]").await;
    let silence = browser.text("#silences tr.silence.active").await;
    assert!(
        silence.contains("instance=~\"db2|db3\"") && silence.contains("reindex"),
        "{silence}"
    );

    browser.click("a[data-tab=rules]").await;
    browser
        .click("#rules tr.rule[data-rule=LoadHigh] summary")
        .await;
    // the opened evaluations stay open when the panel is drawn again
    let updated = "return document.getElementById('updated').dataset.at";
    let before = browser.script(updated, json!([])).await;
    browser.click("#refresh").await;
    let deadline = Deadline::within("a refresh", DEADLINE).every(POLL);
    while browser.script(updated, json!([])).await == before {
        deadline.tick().await;
    }
    assert!(
        browser
            .find("#rules tr.rule[data-rule=LoadHigh] details[open]")
            .await
            .is_ok()
    );
    save_screenshot(&browser.screenshot().await, "rules.png");

    // every panel at a desktop and a phone size: the page never scrolls sideways
    for (width, height) in [(1280, 800), (390, 844)] {
        browser.viewport(width, height).await;
        for tab in ["alerts", "rules", "targets", "silences", "notifications"] {
            browser.click(&format!("a[data-tab={tab}]")).await;
            browser.wait_for(&format!("#{tab}:not([hidden])")).await;
            assert!(
                !browser.overflows_horizontally().await,
                "{tab} at {width}x{height}"
            );
            save_screenshot(
                &browser.screenshot().await,
                &format!("panel-{tab}-{width}.png"),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// issue 14: the UI finish

/// Milliseconds since the epoch now (the stub APIs answer around the browser's clock).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

impl Browser {
    /// Resizes the browser's window so that its viewport is `width`×`height` CSS pixels (the
    /// window's frame, if any, is measured first and added).
    async fn viewport(&self, width: i64, height: i64) {
        let rect = |w: i64, h: i64| json!({"width": w, "height": h});
        self.session_call(reqwest::Method::POST, "/window/rect", rect(width, height))
            .await;
        let inner = self
            .script("return [window.innerWidth, window.innerHeight]", json!([]))
            .await;
        let (iw, ih) = (inner[0].as_i64().unwrap(), inner[1].as_i64().unwrap());
        if (iw, ih) != (width, height) {
            self.session_call(
                reqwest::Method::POST,
                "/window/rect",
                rect(2 * width - iw, 2 * height - ih),
            )
            .await;
        }
    }

    /// Whether the page is wider than its viewport (a horizontal scrollbar on the page itself).
    async fn overflows_horizontally(&self) -> bool {
        self.script(
            "return document.documentElement.scrollWidth > window.innerWidth + 1",
            json!([]),
        )
        .await
            == json!(true)
    }
}

/// One firing `Short` alert of instance `i`, as `/api/v1/alerts` shows it.
fn short_alert(i: &str, at: &str) -> Value {
    json!({"labels": {"alertname": "Short", "instance": i, "severity": "page"},
           "annotations": {"summary": format!("{i} is short of history")},
           "state": "firing", "activeAt": at, "firedAt": at, "value": "1", "group": "short"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sparklines_over_short_histories_show_every_point_and_the_value_range() {
    let Some((chromium, chromedriver)) = browser_tools() else {
        return;
    };
    let now_s = now_ms() / 1000;
    let at = tocsin::timefmt::format_rfc3339((now_s - 240) * 1000);
    // the query's series: one point, two, five rising, five flat; each ends at the last step
    let last = now_s - now_s % 60;
    let series = |i: &str, values: &[f64]| {
        let n = values.len() as i64;
        json!({"metric": {"instance": i}, "values": values.iter().enumerate()
            .map(|(k, v)| json!([last - (n - 1 - k as i64) * 60, v.to_string()]))
            .collect::<Vec<_>>()})
    };
    let matrix = json!({"status": "success", "data": {"resultType": "matrix", "result": [
        series("one", &[0.42]),
        series("two", &[3.0, 7.0]),
        series("five", &[0.9, 0.93, 0.95, 0.96, 0.97]),
        series("flat", &[0.5; 5]),
        // Prometheus's special values are skipped, not drawn as NaN
        {"metric": {"instance": "odd"}, "values": [
            [last - 120, "NaN"], [last - 60, "+Inf"], [last, "2"]]},
    ]}});
    let instances = ["one", "two", "five", "flat", "odd"];
    let rules = json!({"status": "success", "data": {"groups": [{"name": "short", "file": "rules/short.yml",
        "rules": [{"name": "Short", "query": "short_ratio > 0", "type": "alerting", "health": "ok",
                   "state": "firing", "lastError": "", "lastEvaluation": at.clone(),
                   "alerts": [], "evaluations": []}]}]}});
    let app: axum::Router = tocsin::ui::routes()
        .route(
            "/api/v1/alerts",
            fixed(json!({"status": "success", "data": {"alerts":
                instances.iter().map(|i| short_alert(i, &at)).collect::<Vec<_>>()}})),
        )
        .route("/api/v1/rules", fixed(rules))
        .route(
            "/api/v1/targets",
            fixed(json!({"status": "success", "data": {"activeTargets": []}})),
        )
        .route(
            "/api/v1/silences",
            fixed(json!({"status": "success", "data": []})),
        )
        .route("/api/v1/query_range", fixed(matrix));
    let addr = serve(app).await;
    let dir = tempfile::tempdir().unwrap();
    let browser = Browser::start(&chromium, &chromedriver, dir.path()).await;
    browser.viewport(1280, 800).await;
    browser.navigate(&format!("http://{addr}/")).await;
    let row = |i: &str| format!("tr.alert[data-key*='instance=\"{i}\"']");
    for i in instances {
        browser.wait_for(&format!("{} .spark svg", row(i))).await;
    }
    save_screenshot(&browser.screenshot().await, "sparkline-short-1280.png");

    // every point is drawn as a mark, whatever the number of points
    let marks = browser
        .script(
            "return arguments[0].map((i) => document.querySelectorAll(\
             `tr.alert[data-key*='instance=\"${i}\"'] .spark svg circle.point`).length)",
            json!([instances]),
        )
        .await;
    assert_eq!(marks, json!([1, 2, 5, 5, 1]), "a mark per (finite) point");
    // the short series spread over the sparkline's width, not squeezed into the hour's last pixels
    let spread = browser
        .script(
            "const xs = [...document.querySelectorAll(\
             `tr.alert[data-key*='instance=\"five\"'] .spark svg circle.point`)].map((c) => Number(c.getAttribute('cx'))); \
             const w = Number(document.querySelector(`tr.alert[data-key*='instance=\"five\"'] .spark svg`).getAttribute('width')); \
             return (Math.max(...xs) - Math.min(...xs)) / w",
            json!([]),
        )
        .await;
    assert!(
        spread.as_f64().unwrap() > 0.5,
        "five points over four minutes use most of the width: {spread}"
    );
    // nothing is NaN, flat series included
    let svgs = browser
        .script(
            "return [...document.querySelectorAll('.spark svg')].map((s) => s.outerHTML).join('\\n')",
            json!([]),
        )
        .await;
    assert!(!svgs.as_str().unwrap().contains("NaN"), "{svgs}");
    // the value range and the time covered are written out
    let label = |i: &str| format!("{} .spark .spark-label", row(i));
    let five = browser.text(&label("five")).await;
    assert!(five.contains("0.9") && five.contains("0.97"), "{five}");
    assert!(five.contains("4m"), "the 4 minutes covered: {five}");
    let two = browser.text(&label("two")).await;
    assert!(two.contains('3') && two.contains('7'), "{two}");
    let flat = browser.text(&label("flat")).await;
    assert!(flat.contains("0.5") && flat.contains("flat"), "{flat}");
    let one = browser.text(&label("one")).await;
    assert!(
        one.contains("0.42") && one.contains("1 point"),
        "a single point says so: {one}"
    );
    let odd = browser.text(&label("odd")).await;
    assert_eq!(odd, "2 · 1 point");
    let flat_ys = browser
        .script(
            "return [...document.querySelectorAll(\
             `tr.alert[data-key*='instance=\"flat\"'] .spark svg circle.point`)].map((c) => c.getAttribute('cy'))",
            json!([]),
        )
        .await;
    let ys: Vec<&Value> = flat_ys.as_array().unwrap().iter().collect();
    assert!(
        ys.windows(2).all(|w| w[0] == w[1]),
        "flat is level: {flat_ys}"
    );

    // 390×844: the page itself does not scroll sideways (tables scroll in their panel)
    browser.viewport(390, 844).await;
    save_screenshot(&browser.screenshot().await, "sparkline-short-390.png");
    assert!(!browser.overflows_horizontally().await);
}

/// A rule with a `for:` so that its alert goes inactive → pending → firing → resolved.
const TIMELINE_RULES: &str = r#"groups:
  - name: timeline
    interval: 1s
    rules:
      - alert: SlowCondition
        expr: demo_condition == 1
        for: 2s
        labels: { severity: ticket }
        annotations: { summary: "condition {{ $labels.cond }} held 2s" }
"#;

/// The zone the browser of the time test runs in: not UTC, with a half-hour offset, so a time
/// printed in UTC or without the zone's offset cannot pass.
const BROWSER_ZONE: &str = "Asia/Kolkata";

/// Every `<time>` on the page (all panels): its text, and the time of day its `datetime`
/// attribute is in [`BROWSER_ZONE`] (`HH:MM:SS`, computed by the browser independently).
async fn printed_times(browser: &Browser) -> Vec<(String, String)> {
    let v = browser
        .script(
            "return [...document.querySelectorAll('time')].map((t) => [t.textContent, \
             new Date(t.getAttribute('datetime')).toLocaleTimeString('en-GB', \
             {timeZone: arguments[0], hour12: false})])",
            json!([BROWSER_ZONE]),
        )
        .await;
    serde_json::from_value(v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn degraded_health_notifications_off_zoned_times_and_the_rule_timeline_in_the_browser() {
    let Some((chromium, chromedriver)) = browser_tools() else {
        return;
    };
    let target = FakeTarget::with_conditions(&["a"]).await;
    // the seeds' readiness shape: 503, one check of two failing
    target.set_health(503, crate::common::HEALTH_DEGRADED);
    let base = target.base().to_string();
    let dir = tempfile::tempdir().unwrap();
    // no `route`: notifications are off
    let config = format!(
        "storage: {{ flush_interval: 1s }}\n\
         scrape: {{ interval: 1s, timeout: 1s }}\n\
         evaluation: {{ interval: 1s }}\n\
         rule_files: [rules.yml]\n\
         targets:\n  - name: svc\n    metrics: {base}/metrics\n    health: {base}/health\n"
    );
    let d = Daemon::in_dir(dir.path())
        .file("rules.yml", TIMELINE_RULES)
        .config(&config)
        .start();
    let browser = Browser::start_with_env(
        &chromium,
        &chromedriver,
        dir.path(),
        &[("TZ", BROWSER_ZONE)],
    )
    .await;
    browser.viewport(1280, 800).await;
    d.wait_ready().await;
    browser.navigate(&format!("{}/?refresh=1", d.base)).await;

    // 2. the health endpoint answered with a failing check: degraded (amber), not down, with
    // the failing check named; the API says so too
    browser.click("a[data-tab=targets]").await;
    let health_row = "#targets tr.target[data-kind=health]";
    browser.wait_for(&format!("{health_row}.degraded")).await;
    assert_eq!(
        browser.text(&format!("{health_row} .badge")).await,
        "degraded"
    );
    assert!(
        browser.find("#targets tr.target.down").await.is_err(),
        "nothing is shown as down"
    );
    let failing = browser.text(&format!("{health_row} .check.failing")).await;
    assert_eq!(failing, "pdns: connection refused");
    assert_eq!(
        browser
            .text(&format!("{health_row} .check.ok[data-check=database]"))
            .await,
        "database: ok"
    );
    let targets = d.get_json("/api/v1/targets").await;
    let health = targets["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == "health")
        .unwrap()
        .clone();
    assert_eq!(health["degraded"], true, "{health}");
    save_screenshot(&browser.screenshot().await, "targets-degraded-1280.png");
    browser.viewport(390, 844).await;
    save_screenshot(&browser.screenshot().await, "targets-degraded-390.png");
    assert!(!browser.overflows_horizontally().await);
    browser.viewport(1280, 800).await;

    // 3. no route: "notifications are off" with the hint, not "no notifications yet"
    browser.click("a[data-tab=notifications]").await;
    browser
        .wait_for("#notifications-body .notifications-off")
        .await;
    let off = browser.text("#notifications-body").await;
    assert!(off.contains("Notifications are off"), "{off}");
    assert!(
        off.contains("no route") && off.contains("tocsin.yml"),
        "{off}"
    );
    assert!(!off.contains("no notifications yet"), "{off}");
    save_screenshot(&browser.screenshot().await, "notifications-off.png");

    // the alert goes pending, then firing
    target.set_conditions(&[("a", true)]);
    d.wait_json("/api/v1/alerts", DEADLINE, |v| {
        v["data"]["alerts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["state"] == "firing"))
    })
    .await;
    browser.click("a[data-tab=alerts]").await;
    browser
        .wait_for(&format!("{}.firing time", alert_row("a")))
        .await;

    // 4. every time the page prints is 24-hour with the browser's zone, and is the right time
    // in that zone
    let zone = browser
        .script(
            "return [new Date().getTimezoneOffset(), \
             new Intl.DateTimeFormat(undefined, {timeZoneName: 'short'}).formatToParts(new Date())\
             .find((p) => p.type === 'timeZoneName').value]",
            json!([]),
        )
        .await;
    assert_eq!(
        zone[0], -330,
        "the browser runs in {BROWSER_ZONE}, UTC+5:30"
    );
    let zone_name = zone[1].as_str().unwrap().to_string();
    assert_ne!(zone_name, "UTC");
    let times = printed_times(&browser).await;
    assert!(
        times.len() >= 4,
        "updated, alert since, rule and target times: {times:?}"
    );
    for (text, expected) in &times {
        let clock = text.rsplit_once(' ').map(|(rest, z)| {
            assert_eq!(z, zone_name, "{text}");
            rest.rsplit(' ').next().unwrap()
        });
        assert_eq!(clock, Some(expected.as_str()), "{text}");
    }
    let page = browser
        .script("return document.body.innerText", json!([]))
        .await;
    let page = page.as_str().unwrap();
    assert!(
        !page.contains(" AM") && !page.contains(" PM"),
        "no 12-hour time: {page}"
    );
    let titles = browser
        .script(
            "return [...document.querySelectorAll('.ev, time')].map((e) => e.title)",
            json!([]),
        )
        .await;
    for t in titles.as_array().unwrap() {
        let t = t.as_str().unwrap();
        let iso = t
            .as_bytes()
            .windows(3)
            .any(|w| w[0].is_ascii_digit() && w[1] == b'T' && w[2].is_ascii_digit());
        assert!(
            t.contains(&format!(" {zone_name}")) && !iso,
            "a tooltip in the same form: {t}"
        );
    }
    save_screenshot(&browser.screenshot().await, "alerts-24h-zone.png");

    // the condition ends: resolved
    target.set_conditions(&[("a", false)]);
    d.wait_json("/api/v1/rules", DEADLINE, |v| {
        v["data"]["groups"][0]["rules"][0]["transitions"]
            .as_array()
            .is_some_and(|t| t.first().is_some_and(|x| x["to"] == "inactive"))
    })
    .await;

    // 6. the rule's timeline: inactive → pending → firing → resolved, each with its time
    browser.click("a[data-tab=rules]").await;
    let rule = "#rules tr.rule[data-rule=SlowCondition]";
    browser
        .wait_for(&format!(
            "{rule} details.timeline li.change[data-to=resolved]"
        ))
        .await;
    browser
        .click(&format!("{rule} details.timeline summary"))
        .await;
    browser
        .wait_for(&format!("{rule} details.timeline[open]"))
        .await;
    let changes = browser
        .script(
            "return [...document.querySelectorAll(arguments[0])].map((li) => \
             [li.dataset.to, li.querySelector('time').textContent, li.textContent])",
            json!([format!("{rule} li.change")]),
        )
        .await;
    let changes = changes.as_array().unwrap();
    let kinds: Vec<&str> = changes.iter().map(|c| c[0].as_str().unwrap()).collect();
    assert_eq!(kinds, ["pending", "firing", "resolved"], "{changes:?}");
    assert!(
        changes[0][2].as_str().unwrap().contains("inactive →"),
        "{changes:?}"
    );
    assert!(
        changes[2][2].as_str().unwrap().contains("firing →"),
        "{changes:?}"
    );
    assert!(
        changes[0][2].as_str().unwrap().contains("cond=\"a\""),
        "the alert's labels: {changes:?}"
    );
    let summary = browser
        .text(&format!("{rule} details.timeline summary"))
        .await;
    assert!(
        summary.starts_with("resolved") && summary.contains("3 changes"),
        "{summary}"
    );
    // the timeline stays open across refreshes
    let updated = "return document.getElementById('updated').querySelector('time').dateTime";
    let before = browser.script(updated, json!([])).await;
    let deadline = Deadline::within("a refresh", DEADLINE).every(POLL);
    while browser.script(updated, json!([])).await == before {
        deadline.tick().await;
    }
    assert!(
        browser
            .find(&format!("{rule} details.timeline[open]"))
            .await
            .is_ok()
    );
    save_screenshot(&browser.screenshot().await, "rule-timeline-1280.png");
    browser.viewport(390, 844).await;
    save_screenshot(&browser.screenshot().await, "rule-timeline-390.png");
    assert!(!browser.overflows_horizontally().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_screen_without_rules_says_where_rules_come_from() {
    let Some((chromium, chromedriver)) = browser_tools() else {
        return;
    };
    let target = FakeTarget::start().await;
    let hook = WebhookSink::start(Answer::Status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    // no rule_files; a route, so notifications are on and none has been sent yet
    let config = format!(
        "scrape: {{ interval: 1s, timeout: 1s }}\n\
         targets:\n  - name: svc\n    metrics: {}/metrics\n\
         route: {{ receiver: ops }}\n\
         receivers:\n  - name: ops\n    webhook: {{ url: \"{}\" }}\n",
        target.base(),
        hook.url()
    );
    let d = Daemon::in_dir(dir.path()).config(&config).start();
    let browser = Browser::start(&chromium, &chromedriver, dir.path()).await;
    browser.viewport(1280, 800).await;
    d.wait_ready().await;
    browser.navigate(&format!("{}/?refresh=1", d.base)).await;

    // 5. the alerts panel (the first screen) and the rules panel explain, instead of an empty table
    browser.wait_for("#alerts-body .no-rules").await;
    let first = browser.text("#alerts-body").await;
    for want in [
        "No rules loaded",
        "has no rule_files",
        "rule_files: [tocsin:self, rules/*.yml]",
        "rules/ directory",
        "tocsin check tocsin.yml rules/",
        "Rules and alerts",
    ] {
        assert!(first.contains(want), "{want:?} missing: {first}");
    }
    assert!(!first.contains("nothing pending or firing"), "{first}");
    assert!(browser.find("#alerts-body table").await.is_err());
    let href = browser
        .script(
            "return document.querySelector('#alerts-body a.doc-link').getAttribute('href')",
            json!([]),
        )
        .await;
    assert_eq!(href, "/ui/docs/rules");
    let docs = reqwest::get(d.url("/ui/docs/rules")).await.unwrap();
    assert_eq!(docs.status(), 200);
    let docs = docs.text().await.unwrap();
    assert!(
        docs.starts_with("## Rules and alerts") && docs.contains("rule_files"),
        "{docs}"
    );
    assert!(!docs.contains("## Notifications"), "one section: {docs}");
    save_screenshot(&browser.screenshot().await, "empty-first-screen-1280.png");
    browser.viewport(390, 844).await;
    save_screenshot(&browser.screenshot().await, "empty-first-screen-390.png");
    assert!(!browser.overflows_horizontally().await);
    browser.viewport(1280, 800).await;
    browser.click("a[data-tab=rules]").await;
    browser.wait_for("#rules-body .no-rules").await;

    // with a route and nothing sent: "no notifications yet", not "off"
    browser.click("a[data-tab=notifications]").await;
    browser.wait_for("#notifications-body .empty").await;
    let history = browser.text("#notifications-body").await;
    assert!(history.contains("no notifications yet"), "{history}");
    assert!(
        browser
            .find("#notifications-body .notifications-off")
            .await
            .is_err()
    );
}
