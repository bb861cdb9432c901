//! Reloading targets without a restart, and service discovery (`file_sd`, `http_sd`, `dns_sd`)
//! with relabelling: the daemon in-process (`tocsin::daemon::Daemon`), real files, real HTTP
//! servers on loopback, a real dnsmasq.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tocsin::clock::SystemClock;
use tocsin::config::Config;
use tocsin::daemon::{Daemon, DaemonOptions, Running};
use tocsin::labels::Matcher;

use crate::common::{Deadline, FakeTarget, free_addr, metric_value};

const WITHIN: Duration = Duration::from_secs(20);

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

fn header(dir: &Path, listen: &str) -> String {
    format!(
        "storage: {{ path: {}/data/tocsin.db }}\nserver: {{ listen: \"{listen}\" }}\nscrape: {{ self_metrics: false }}\n",
        dir.display()
    )
}

async fn get_json(base: &str, path: &str) -> Value {
    let text = reqwest::get(format!("{base}{path}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&text).unwrap_or_default()
}

async fn post_reload(base: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{base}/-/reload"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The samples of `up` for `job`, oldest first.
fn up_samples(daemon: &Running, job: &str) -> Vec<(i64, f64)> {
    daemon
        .store()
        .select(
            &[Matcher::equal("__name__", "up"), Matcher::equal("job", job)],
            0,
            i64::MAX,
        )
        .unwrap()
        .into_iter()
        .flat_map(|s| s.samples)
        .collect()
}

fn stale_markers(samples: &[(i64, f64)]) -> usize {
    samples
        .iter()
        .filter(|(_, v)| tocsin::store::is_stale(*v))
        .count()
}

/// The names of the targets `/api/v1/targets` lists, with their `instance`.
async fn target_instances(base: &str) -> Vec<(String, String)> {
    let v = get_json(base, "/api/v1/targets").await;
    let mut out: Vec<(String, String)> = v["data"]["activeTargets"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|t| {
            (
                t["scrapePool"].as_str().unwrap_or("").to_string(),
                t["labels"]["instance"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Waits until the status page's last target set update satisfies `ok`; returns it.
async fn wait_target_set(base: &str, ok: impl Fn(&Value) -> bool) -> Value {
    Deadline::within("the target set update", WITHIN)
        .until_some(async || {
            let v = get_json(base, "/api/v1/status").await;
            let set = v["data"]["targetSet"].clone();
            ok(&set).then_some(set)
        })
        .await
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|x| x.as_str().unwrap_or("").to_string())
        .collect()
}

/// A reload through the API keeps an unchanged target running (its scrapes go on, no
/// staleness marker), stops a removed one (its series end with a staleness marker), starts an
/// added one, and reports a changed `server.listen` as needing a restart; a broken tocsin.yml
/// changes nothing and is reported with its line and column; an edit of tocsin.yml alone
/// (no API call) reloads a changed interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_unchanged_targets_ends_removed_ones_and_starts_added_ones() {
    let dir = tempfile::tempdir().unwrap();
    let listen = free_addr().to_string();
    let (a, b, c) = (
        FakeTarget::start().await,
        FakeTarget::start().await,
        FakeTarget::start().await,
    );
    let target = |name: &str, t: &FakeTarget, interval: &str| {
        format!(
            "  - name: {name}\n    metrics: {}\n    interval: {interval}\n",
            t.url("/metrics")
        )
    };
    let cfg_path = dir.path().join("tocsin.yml");
    let head = header(dir.path(), &listen);
    std::fs::write(
        &cfg_path,
        format!(
            "{head}targets:\n{}{}",
            target("a", &a, "200ms"),
            target("b", &b, "200ms")
        ),
    )
    .unwrap();
    let daemon = start(dir.path()).await;
    let base = format!("http://{}", daemon.addr());
    Deadline::within("a and b scraped", WITHIN)
        .until(|| a.requests("/metrics") >= 3 && b.requests("/metrics") >= 3)
        .await;

    // b removed, c added, a unchanged; the listen address changed (needs a restart)
    let moved = free_addr().to_string();
    std::fs::write(
        &cfg_path,
        format!(
            "{}targets:\n{}{}",
            header(dir.path(), &moved),
            target("a", &a, "200ms"),
            target("c", &c, "200ms")
        ),
    )
    .unwrap();
    let (status, outcome) = post_reload(&base).await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(
        names(&outcome["needs_restart"]),
        ["server.listen"],
        "{outcome}"
    );
    let set = wait_target_set(&base, |s| names(&s["added"]) == ["c"]).await;
    assert_eq!(names(&set["removed"]), ["b"], "{set}");
    assert!(names(&set["changed"]).is_empty(), "{set}");
    assert_eq!(set["unchanged"], 1, "{set}");

    // the removed target's series end with a staleness marker, and it is scraped no more
    Deadline::within("b's up series marked stale", WITHIN)
        .until(|| {
            up_samples(&daemon, "b")
                .last()
                .is_some_and(|s| tocsin::store::is_stale(s.1))
        })
        .await;
    let b_done = b.requests("/metrics");
    // a goes on, with no staleness marker; c starts
    let a_before = a.requests("/metrics");
    Deadline::within("a scraped on and c started", WITHIN)
        .until(|| a.requests("/metrics") >= a_before + 5 && c.requests("/metrics") >= 3)
        .await;
    assert_eq!(stale_markers(&up_samples(&daemon, "a")), 0);
    assert!(b.requests("/metrics") <= b_done + 1, "b is still scraped");
    let status_page = get_json(&base, "/api/v1/status").await;
    let last = status_page["data"]["reloads"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["cause"], "api");
    assert_eq!(names(&last["needsRestart"]), ["server.listen"]);

    // a broken tocsin.yml changes nothing and names its line and column
    std::fs::write(
        &cfg_path,
        format!("{head}targets:\n  - name: a\n    metrics: [\n"),
    )
    .unwrap();
    let (status, outcome) = post_reload(&base).await;
    assert_eq!(status, 500, "{outcome}");
    let text = outcome.to_string();
    assert!(text.contains("tocsin.yml:"), "{text}");
    assert!(
        regex::Regex::new(r"tocsin\.yml:\d+:\d+")
            .unwrap()
            .is_match(&text),
        "{text}"
    );
    let a_before = a.requests("/metrics");
    let c_before = c.requests("/metrics");
    Deadline::within("a and c scraped on after the failed reload", WITHIN)
        .until(|| a.requests("/metrics") >= a_before + 3 && c.requests("/metrics") >= c_before + 3)
        .await;
    assert_eq!(
        target_instances(&base).await.len(),
        2,
        "the failed reload changed the targets"
    );

    // an edit of tocsin.yml alone reloads it (settled like rule files): a's interval changes
    std::fs::write(
        &cfg_path,
        format!(
            "{head}targets:\n{}{}",
            target("a", &a, "300ms"),
            target("c", &c, "200ms")
        ),
    )
    .unwrap();
    let set = wait_target_set(&base, |s| names(&s["changed"]) == ["a"]).await;
    assert_eq!(set["unchanged"], 1, "{set}");
    let v = get_json(&base, "/api/v1/status").await;
    let last = v["data"]["reloads"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["cause"], "file", "{v}");
    // a changed setting keeps the target's labels: its series go on without a marker
    let a_before = a.requests("/metrics");
    Deadline::within("a scraped at its new interval", WITHIN)
        .until(|| a.requests("/metrics") >= a_before + 3)
        .await;
    assert_eq!(stale_markers(&up_samples(&daemon, "a")), 0);
    daemon.shutdown().await;
}

/// `file_sd`: targets come and go with the file, relabelled (`__meta_filepath`, `keep`,
/// `labelmap`, the instance); a broken file keeps the last good targets and is counted and
/// shown; a target gone from the file gets a staleness marker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sd_targets_follow_their_file_and_a_broken_file_keeps_the_last_good_ones() {
    let dir = tempfile::tempdir().unwrap();
    let listen = free_addr().to_string();
    let (one, two) = (FakeTarget::start().await, FakeTarget::start().await);
    let addr = |t: &FakeTarget| t.base().trim_start_matches("http://").to_string();
    std::fs::create_dir(dir.path().join("sd")).unwrap();
    let sd_file = dir.path().join("sd/nodes.json");
    let write = |groups: &str| {
        // written whole and renamed in, as a deploy tool does
        let tmp = dir.path().join("sd/.nodes.json.tmp");
        std::fs::write(&tmp, groups).unwrap();
        std::fs::rename(&tmp, &sd_file).unwrap();
    };
    write(&format!(
        r#"[{{"targets": ["{}"], "labels": {{"env": "prod", "__meta_x_rack": "r1"}}}},
            {{"targets": ["{}"], "labels": {{"env": "dev"}}}}]"#,
        addr(&one),
        addr(&two)
    ));
    std::fs::write(
        dir.path().join("tocsin.yml"),
        format!(
            "{}targets:\n  - name: nodes\n    interval: 200ms\n    file_sd: [{{ files: [sd/*.json], refresh_interval: 10m }}]\n    relabel_configs:\n      - {{ source_labels: [env], regex: prod|staging, action: keep }}\n      - {{ action: labelmap, regex: '__meta_x_(.+)' }}\n      - {{ source_labels: [__meta_filepath], regex: '.*/(.*)\\.json', target_label: file }}\n",
            header(dir.path(), &listen)
        ),
    )
    .unwrap();
    let daemon = start(dir.path()).await;
    let base = format!("http://{}", daemon.addr());
    Deadline::within("the prod target scraped", WITHIN)
        .until(|| one.requests("/metrics") >= 2)
        .await;
    assert_eq!(
        two.requests("/metrics"),
        0,
        "the dev target was not dropped"
    );
    assert_eq!(
        target_instances(&base).await,
        [(format!("nodes/{}", addr(&one)), addr(&one))]
    );
    // the address `keep` dropped is listed with its labels before relabelling, as Prometheus does
    let dropped: Value = serde_json::from_str(
        &reqwest::get(format!("{base}/api/v1/targets?state=dropped"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    let data = &dropped["data"];
    assert_eq!(
        data["activeTargets"].as_array().map(Vec::len),
        Some(0),
        "{data}"
    );
    assert_eq!(
        data["droppedTargets"].as_array().map(Vec::len),
        Some(1),
        "{data}"
    );
    let d = &data["droppedTargets"][0];
    assert_eq!(d["scrapePool"], "nodes");
    assert_eq!(d["discoveredLabels"]["__address__"], addr(&two));
    assert_eq!(d["discoveredLabels"]["env"], "dev");
    assert_eq!(d["discoveredLabels"]["__metrics_path__"], "/metrics");
    assert_eq!(data["droppedTargetCounts"]["nodes"], 1);
    let up = daemon.store().series(&[Matcher::equal("__name__", "up")]);
    let labels = up[0]
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>();
    assert_eq!(
        labels,
        [
            "__name__=up".to_string(),
            "env=prod".into(),
            "file=nodes".into(),
            format!("instance={}", addr(&one)),
            "job=nodes".into(),
            "rack=r1".into(),
        ]
    );

    // the dev target moves to prod: it is discovered from the changed file
    write(&format!(
        r#"[{{"targets": ["{}", "{}"], "labels": {{"env": "prod"}}}}]"#,
        addr(&one),
        addr(&two)
    ));
    Deadline::within("the second target scraped", WITHIN)
        .until(|| two.requests("/metrics") >= 2)
        .await;

    // a broken file: the targets stay, the failure is counted and shown
    write(r#"[{"targets": ["#);
    let v = Deadline::within("the broken file reported", WITHIN)
        .until_some(async || {
            let v = get_json(&base, "/api/v1/status").await;
            let d = v["data"]["discovery"][0].clone();
            d["lastError"].as_str().is_some().then_some(d)
        })
        .await;
    assert_eq!(v["mechanism"], "file");
    assert!(
        v["lastError"].as_str().unwrap().contains("nodes.json"),
        "{v}"
    );
    assert_eq!(v["targets"], 2, "{v}");
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metric_value(
            &metrics,
            "tocsin_sd_refresh_failures_total{mechanism=\"file\"}"
        ) >= 1.0,
        "{metrics}"
    );
    let (one_before, two_before) = (one.requests("/metrics"), two.requests("/metrics"));
    Deadline::within("both scraped on", WITHIN)
        .until(|| {
            one.requests("/metrics") >= one_before + 2 && two.requests("/metrics") >= two_before + 2
        })
        .await;

    // the second target leaves the file: its series end
    write(&format!(
        r#"[{{"targets": ["{}"], "labels": {{"env": "prod"}}}}]"#,
        addr(&one)
    ));
    let instance = addr(&two);
    Deadline::within("the removed target's up marked stale", WITHIN)
        .until(|| {
            daemon
                .store()
                .select(
                    &[
                        Matcher::equal("__name__", "up"),
                        Matcher::equal("instance", &instance),
                    ],
                    0,
                    i64::MAX,
                )
                .unwrap()
                .iter()
                .any(|s| {
                    s.samples
                        .last()
                        .is_some_and(|x| tocsin::store::is_stale(x.1))
                })
        })
        .await;
    let v = get_json(&base, "/api/v1/status").await;
    assert!(v["data"]["discovery"][0]["lastError"].is_null(), "{v}");
    daemon.shutdown().await;
}

/// What the HTTP SD server answers next.
type Answer = Arc<Mutex<(u16, &'static str, String)>>;

async fn http_sd_server(answer: Answer) -> std::net::SocketAddr {
    use axum::response::IntoResponse;
    let app = axum::Router::new().route(
        "/sd",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let answer = answer.clone();
            async move {
                if headers.get("authorization").and_then(|v| v.to_str().ok())
                    != Some("Bearer sd-token")
                {
                    return (axum::http::StatusCode::UNAUTHORIZED, "no token").into_response();
                }
                let (status, ct, body) = answer.lock().unwrap().clone();
                if status == 0 {
                    // never answers: the fetch's timeout must end it
                    std::future::pending::<()>().await;
                }
                (
                    axum::http::StatusCode::from_u16(status).unwrap(),
                    [("content-type", ct)],
                    body,
                )
                    .into_response()
            }
        }),
    );
    crate::common::serve(app).await
}

/// `http_sd`: the list is fetched with the token and refreshed; a 500, a wrong content type, an
/// answer over the size limit, garbage and an endpoint that never answers keep the last good
/// list (each counted); `__meta_url` is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sd_refreshes_and_keeps_the_last_good_list_when_the_endpoint_fails() {
    let dir = tempfile::tempdir().unwrap();
    let listen = free_addr().to_string();
    let one = FakeTarget::start().await;
    let two = FakeTarget::start().await;
    let addr = |t: &FakeTarget| t.base().trim_start_matches("http://").to_string();
    let answer: Answer = Arc::new(Mutex::new((
        200,
        "application/json",
        format!(
            r#"[{{"targets": ["{}"], "labels": {{"zone": "a"}}}}]"#,
            addr(&one)
        ),
    )));
    let sd = http_sd_server(answer.clone()).await;
    std::fs::write(
        dir.path().join("tocsin.yml"),
        format!(
            "{}targets:\n  - name: web\n    interval: 200ms\n    http_sd: [{{ url: 'http://{sd}/sd', refresh_interval: 1s, timeout: 1s, bearer_token_env: SD_TOKEN }}]\n    relabel_configs:\n      - {{ source_labels: [__meta_url], regex: '.*/(sd)', target_label: from }}\n",
            header(dir.path(), &listen)
        ),
    )
    .unwrap();
    let path = dir.path().join("tocsin.yml");
    let cfg = Config::load(&path).unwrap();
    let opts = DaemonOptions {
        source: Some(path),
        env: [("SD_TOKEN".to_string(), "sd-token".to_string())].into(),
        ..DaemonOptions::default()
    };
    let daemon = Daemon::start(cfg, Arc::new(SystemClock), opts)
        .await
        .unwrap();
    let base = format!("http://{}", daemon.addr());
    Deadline::within("the discovered target scraped", WITHIN)
        .until(|| one.requests("/metrics") >= 2)
        .await;
    let up = daemon.store().series(&[Matcher::equal("__name__", "up")]);
    assert_eq!(up[0].get("zone"), Some("a"));
    assert_eq!(up[0].get("from"), Some("sd"));

    let failures = async || {
        let text = reqwest::get(format!("{base}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        metric_value(
            &text,
            "tocsin_sd_refresh_failures_total{mechanism=\"http\"}",
        )
    };
    let huge = format!(
        "[{{\"targets\": [\"a:1\"], \"labels\": {{\"x\": \"{}\"}}}}]",
        "y".repeat(5 << 20)
    );
    for (status, ct, body, reason) in [
        (500, "application/json", "[]".to_string(), "status 500"),
        (200, "text/plain", "[]".to_string(), "content type"),
        (200, "application/json", huge, "limit"),
        (
            200,
            "application/json",
            "{\"nope\": 1}".to_string(),
            "invalid type",
        ),
        (0, "application/json", "[]".to_string(), "timed out"),
    ] {
        let before = failures().await;
        *answer.lock().unwrap() = (status, ct, body);
        let v = Deadline::within(format!("a refresh failing with {reason}"), WITHIN)
            .until_some(async || {
                let v = get_json(&base, "/api/v1/status").await;
                let d = v["data"]["discovery"][0].clone();
                d["lastError"]
                    .as_str()
                    .is_some_and(|e| e.contains(reason))
                    .then_some(d)
            })
            .await;
        assert_eq!(v["targets"], 1, "{v}");
        assert!(failures().await > before);
        let scraped = one.requests("/metrics");
        Deadline::within("the last good target scraped on", WITHIN)
            .until(|| one.requests("/metrics") >= scraped + 2)
            .await;
    }
    // the endpoint recovers with another list: the first target's series end
    *answer.lock().unwrap() = (
        200,
        "application/json; charset=utf-8",
        format!(r#"[{{"targets": ["{}"]}}]"#, addr(&two)),
    );
    Deadline::within("the new target scraped", WITHIN)
        .until(|| two.requests("/metrics") >= 2)
        .await;
    Deadline::within("the old target's up marked stale", WITHIN)
        .until(|| {
            up_samples(&daemon, "web")
                .iter()
                .any(|s| tocsin::store::is_stale(s.1))
        })
        .await;
    daemon.shutdown().await;
}

/// A dnsmasq on a loopback port, stopped (by its pid) when dropped.
struct Dnsmasq {
    child: Child,
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// dnsmasq answering `node.sd.test` (A 127.0.0.1) and `_metrics._tcp.sd.test` (SRV to
/// `localhost:<srv_port>` and `other.sd.test:9`); None (with the reason printed) when absent.
fn dnsmasq(srv_port: u16) -> Option<Dnsmasq> {
    const BIN: &str = "/usr/sbin/dnsmasq";
    if !Path::new(BIN).exists() {
        println!("skipping: {BIN} absent (apt-get install dnsmasq-base)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 node.sd.test\n").unwrap();
    let addr = free_addr();
    let child = Command::new(BIN)
        .args([
            "--no-daemon",
            "--port",
            &addr.port().to_string(),
            "--listen-address",
            "127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--addn-hosts",
            hosts.to_str().unwrap(),
            &format!("--srv-host=_metrics._tcp.sd.test,localhost,{srv_port}"),
            "--srv-host=_metrics._tcp.sd.test,other.sd.test,9",
            "--pid-file",
            "--user",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    Some(Dnsmasq {
        child,
        addr,
        _dir: dir,
    })
}

/// `dns_sd` against a real dnsmasq: `A` records with a port become scraped targets, `SRV`
/// records give their target and port with `__meta_dns_*` labels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_sd_finds_a_and_srv_targets_in_a_real_dnsmasq() {
    let target = FakeTarget::start().await;
    let port: u16 = target.base().rsplit(':').next().unwrap().parse().unwrap();
    let Some(dns) = dnsmasq(port) else { return };
    let dir = tempfile::tempdir().unwrap();
    let listen = free_addr().to_string();
    std::fs::write(
        dir.path().join("tocsin.yml"),
        format!(
            "{}targets:\n  - name: a\n    interval: 200ms\n    dns_sd: [{{ names: [node.sd.test], type: A, port: {port}, refresh_interval: 1s, nameserver: '{}' }}]\n    relabel_configs:\n      - {{ source_labels: [__meta_dns_name], target_label: dns_name }}\n  - name: srv\n    interval: 1m\n    dns_sd: [{{ names: [_metrics._tcp.sd.test], refresh_interval: 1s, nameserver: '{}' }}]\n    relabel_configs:\n      - {{ source_labels: [__meta_dns_srv_record_target], regex: 'other\\..*', action: drop }}\n      - {{ source_labels: [__meta_dns_srv_record_port], target_label: srv_port }}\n",
            header(dir.path(), &listen),
            dns.addr,
            dns.addr
        ),
    )
    .unwrap();
    let daemon = start(dir.path()).await;
    let base = format!("http://{}", daemon.addr());
    Deadline::within("the A record's target scraped", WITHIN)
        .until(|| target.requests("/metrics") >= 2)
        .await;
    let up = daemon
        .store()
        .series(&[Matcher::equal("__name__", "up"), Matcher::equal("job", "a")]);
    assert_eq!(
        up[0].get("instance"),
        Some(format!("127.0.0.1:{port}").as_str())
    );
    assert_eq!(up[0].get("dns_name"), Some("node.sd.test"));
    let instances = Deadline::within("the SRV target listed", WITHIN)
        .until_some(async || {
            let t = target_instances(&base).await;
            (t.len() == 2).then_some(t)
        })
        .await;
    assert_eq!(
        instances,
        [
            (format!("a/127.0.0.1:{port}"), format!("127.0.0.1:{port}")),
            (format!("srv/localhost:{port}"), format!("localhost:{port}")),
        ]
    );
    let v = get_json(&base, "/api/v1/targets").await;
    let srv = v["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["scrapePool"] == format!("srv/localhost:{port}"))
        .unwrap()
        .clone();
    assert_eq!(srv["labels"]["srv_port"], port.to_string(), "{srv}");
    daemon.shutdown().await;
}
