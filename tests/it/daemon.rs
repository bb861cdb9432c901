//! The real binary: `run` (default config, a scraped target, SIGTERM and kill -9), `check`, `scrape`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use tocsin::labels::MatchOp;

const RULES: &str = include_str!("../../fixtures/it/svc-rules.yml");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_builtin_default_serves_health_and_watches_itself() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::in_dir(dir.path()).start();
    let live = d.wait_ready().await;
    assert_eq!(live["status"], "ok");
    let ready = d
        .wait_json("/health/ready", Duration::from_secs(5), |_| true)
        .await;
    assert_eq!(ready["checks"]["store"], "ok");
    assert_eq!(ready["checks"]["scrape_loop"], "ok");
    let status = d
        .wait_json("/status", Duration::from_secs(5), |_| true)
        .await;
    let kinds: Vec<&str> = status["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["target"] == "tocsin")
        .map(|t| t["kind"].as_str().unwrap())
        .collect();
    // its own metrics are stored in-process (job="tocsin"), not scraped over HTTP
    assert_eq!(kinds, vec!["health"]);
    let stored = d
        .wait_json(
            "/api/v1/query?query=tocsin_samples_ingested_total%7Bjob%3D%22tocsin%22%7D",
            Duration::from_secs(10),
            |v| {
                v["data"]["result"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty())
            },
        )
        .await;
    assert_eq!(stored["data"]["result"][0]["metric"]["job"], "tocsin");
    // and the built-in self-alert rules are loaded
    let rules = d
        .wait_json("/api/v1/rules", Duration::from_secs(10), |v| {
            v.to_string().contains("TocsinStoreCannotWrite")
        })
        .await;
    assert!(
        rules.to_string().contains("TocsinStoreCannotWrite"),
        "{rules}"
    );
    // each evaluation of a group is observed in its duration histogram
    d.wait_metric(
        r#"tocsin_rule_group_duration_seconds_count{group="tocsin-self"}"#,
        1.0,
        Duration::from_secs(30),
    )
    .await;
    let metrics = reqwest::get(d.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tocsin_samples_ingested_total"),
        "{metrics}"
    );
    // what Prometheus users' dashboards read of every exporter: process_* and a build_info
    for name in [
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_start_time_seconds ",
        "process_open_fds ",
        "tocsin_build_info{",
    ] {
        assert!(
            metrics.lines().any(|l| l.starts_with(name)),
            "{name} missing: {metrics}"
        );
    }
    assert!(metrics.ends_with("# EOF\n"), "{metrics}");
    assert!(d.terminate().await.success());
    assert!(
        dir.path().join("data/tocsin.db").exists(),
        "the default store is ./data/tocsin.db"
    );
}

/// SQLite maps the store's `-shm` file; when its file system fills up or turns read-only, touching
/// that memory raises SIGBUS, which by default kills the process without a word. The daemon says
/// why it stops, naming the store, and exits with 74.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_error_exits_with_a_clear_message_naming_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::in_dir(dir.path()).start();
    d.wait_ready().await;
    let status = d.signal_and_wait("BUS").await;
    assert_eq!(
        status.code(),
        Some(tocsin::sys::BUS_ERROR_EXIT_CODE),
        "{status:?}"
    );
    let stderr = d.stderr();
    assert!(
        stderr.contains("bus error (SIGBUS)") && stderr.contains("data/tocsin.db"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_daemon_while_an_api_query_runs() {
    // ~45 million steps, under the 50 million limit however the subqueries' steps align (each
    // range holds 1000 or 1001 steps, 45 or 46 at the outer one; [49s:1s] could reach 50.1
    // million and be refused with 422): a minute or more of one core in a debug build
    const LONG: &str =
        "count_over_time(count_over_time(count_over_time(vector(1)[1000s:1s])[1000s:1s])[45s:1s])";
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::in_dir(dir.path()).start();
    d.wait_ready().await;
    let params = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("query", LONG)
        .append_pair("timeout", "1h")
        .finish();
    let url = d.url(&format!("/api/v1/query?{params}"));
    let query = tokio::spawn(async move {
        let resp = reqwest::Client::new().get(url).send().await?;
        let code = resp.status().as_u16();
        Ok::<_, reqwest::Error>((code, resp.text().await?))
    });
    // time for the query to start; one that has not started yet is refused all the same
    tokio::time::sleep(Duration::from_millis(500)).await;
    // before, shutdown waited for the evaluation's blocking thread to its end
    assert!(d.terminate().await.success());
    match query.await.unwrap() {
        Ok((code, body)) => {
            assert_eq!(code, 503, "{body}");
            assert!(body.contains("the daemon is shutting down"), "{body}");
        }
        // the connection closed before the request was read
        Err(e) => assert!(!e.is_timeout(), "{e}"),
    }
}

/// A target whose `pdns` health check fails (503).
async fn degraded_target() -> FakeTarget {
    let target = FakeTarget::start().await;
    target.set_health(503, HEALTH_DEGRADED);
    target
}

/// The daemon scraping `target` as `svc` every second, flushing every second.
fn svc_daemon(dir: &Path, target: &FakeTarget) -> DaemonBuilder {
    let base = target.base();
    Daemon::in_dir(dir).config(&format!(
        "storage: {{ flush_interval: 1s }}\nscrape: {{ interval: 1s, timeout: 1s }}\ntargets:\n  - name: svc\n    metrics: {base}/metrics\n    health: {base}/health\n"
    ))
}

fn scraped_up(v: &serde_json::Value, kind: &str) -> bool {
    v["targets"].as_array().is_some_and(|ts| {
        ts.iter()
            .any(|t| t["target"] == "svc" && t["kind"] == kind && !t["last_scrape_ms"].is_null())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraped_samples_survive_sigterm_and_restart() {
    let target = degraded_target().await;
    let dir = tempfile::tempdir().unwrap();
    let mut d = svc_daemon(dir.path(), &target).start();
    let status = d
        .wait_json("/status", Duration::from_secs(30), |v| {
            scraped_up(v, "metrics") && scraped_up(v, "health")
        })
        .await;
    let health = status["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == "health")
        .unwrap();
    assert_eq!(health["up"], false);
    assert_eq!(
        health["last_error"],
        "HTTP status 503; pdns: connection refused"
    );
    assert!(d.terminate().await.success());

    let store =
        tocsin::store::Store::open(&dir.path().join("data/tocsin.db"), Default::default()).unwrap();
    let all = store
        .select(&[matcher(MatchOp::Equal, "job", "svc")], 0, i64::MAX)
        .unwrap();
    let names: std::collections::BTreeSet<String> = all
        .iter()
        .map(|s| s.labels.metric_name().unwrap().to_string())
        .collect();
    for want in [
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "http_requests_total",
        "health_check_ok",
        "probe_http_status_code",
    ] {
        assert!(names.contains(want), "{want} missing from {names:?}");
    }
    let up = store
        .select(
            &[
                matcher(MatchOp::Equal, "__name__", "up"),
                matcher(MatchOp::Equal, "probe", ""),
            ],
            0,
            i64::MAX,
        )
        .unwrap();
    assert!(
        up[0].samples.iter().all(|s| s.1 == 1.0),
        "the metrics endpoint was up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushed_samples_survive_kill_9() {
    let target = degraded_target().await;
    let dir = tempfile::tempdir().unwrap();
    let mut d = svc_daemon(dir.path(), &target).start();
    let first = d
        .wait_json("/status", Duration::from_secs(30), |v| {
            scraped_up(v, "metrics")
        })
        .await;
    let scraped_at = first["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == "metrics")
        .unwrap()["last_scrape_ms"]
        .as_i64()
        .unwrap();
    // wait for a flush after that scrape, then kill without warning
    d.wait_json("/status", Duration::from_secs(30), |v| {
        v["store"]["last_flush_ms"]
            .as_i64()
            .is_some_and(|f| f > scraped_at)
    })
    .await;
    d.kill_9();
    let store =
        tocsin::store::Store::open(&dir.path().join("data/tocsin.db"), Default::default()).unwrap();
    let got = store
        .select(
            &[matcher(MatchOp::Equal, "__name__", "http_requests_total")],
            0,
            i64::MAX,
        )
        .unwrap();
    assert_eq!(got.len(), 2);
    assert!(
        got[0].samples.iter().any(|s| s.0 == scraped_at),
        "the flushed scrape at {scraped_at} is on disk"
    );
}

#[test]
fn run_refuses_a_corrupt_store() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(
        dir.path().join("data/tocsin.db"),
        b"not sqlite at all".repeat(100),
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("run")
        .current_dir(dir.path())
        .env("TOCSIN_LISTEN", free_addr().to_string())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot open store data/tocsin.db"), "{err}");
}

#[test]
fn check_reports_every_error_with_location() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yml");
    std::fs::write(&path, "targets:\n  - name: a\n    metrics: http://x/m\n    timeout: 1m\n  - name: a\n    health: http://x/h\n").unwrap();
    let out = Command::new(BIN).arg("check").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yml:4:14: targets[0].timeout"), "{err}");
    assert!(
        err.contains("bad.yml:5:11: targets[1].name: duplicate target name"),
        "{err}"
    );

    std::fs::write(&path, "scrape:\n  interval: 15s\n  typo_field: 1\n").unwrap();
    let out = Command::new(BIN).arg("check").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.yml:3:"));

    let good = project_dir().join("fixtures/config/design-example.yml");
    let out = Command::new(BIN)
        .arg("check")
        .arg(&good)
        .env("SMTP_PASSWORD", "x")
        .env("WEBHOOK_SECRET", "x")
        .env("TOCSIN_API_TOKEN", "x")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = Command::new(BIN)
        .arg("check")
        .arg(dir.path().join("missing.yml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: cannot read"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_command_prints_samples_or_the_failing_line() {
    let target = FakeTarget::start().await;
    target.route("/malformed", Reply::text(MALFORMED));
    target.route("/500", Reply::text("boom").status(500));
    let run = |path: &str| {
        let url = target.url(path);
        tokio::task::spawn_blocking(move || {
            Command::new(BIN).args(["scrape", &url]).output().unwrap()
        })
    };
    let out = run("/metrics").await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("http_requests_total{method=\"get\",status=\"500\"} 3\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("job:request_rate:5m{job=\"other\"} 2.5\n"),
        "{stdout}"
    );
    let out = run("/malformed").await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 3"));
    let out = run("/500").await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP status 500"));
}

/// The daemon scraping `target` as `svc` and evaluating `rules/svc.yml`, every second.
fn rules_daemon(dir: &Path, target: &FakeTarget) -> DaemonBuilder {
    let base = target.base();
    Daemon::in_dir(dir)
        .file("rules/svc.yml", RULES)
        .config(&format!(
            "storage: {{ flush_interval: 1s }}\nscrape: {{ interval: 1s, timeout: 1s }}\nevaluation: {{ interval: 1s }}\nrule_files: [rules/*.yml]\ntargets:\n  - name: svc\n    metrics: {base}/metrics\n    health: {base}/health\n"
        ))
}

fn alert<'a>(v: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    v["data"]["alerts"]
        .as_array()?
        .iter()
        .find(|a| a["labels"]["alertname"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_fire_and_keep_their_state_across_kill_9() {
    let target = degraded_target().await;
    let dir = tempfile::tempdir().unwrap();
    let mut d = rules_daemon(dir.path(), &target).start();
    let before = d
        .wait_json("/api/v1/alerts", Duration::from_secs(30), |v| {
            alert(v, "SvcUp").is_some_and(|a| a["state"] == "firing")
                && alert(v, "SvcUpLong").is_some_and(|a| a["state"] == "pending")
                && alert(v, "CheckFailing").is_some()
        })
        .await;
    let failing = alert(&before, "CheckFailing").unwrap();
    assert_eq!(failing["labels"]["check"], "pdns");
    assert_eq!(
        failing["annotations"]["summary"],
        "pdns: connection refused"
    );
    assert_eq!(
        alert(&before, "SvcUp").unwrap()["annotations"]["summary"],
        "svc is up"
    );
    let pending_since = alert(&before, "SvcUpLong").unwrap()["activeAt"].clone();
    // the API shows an evaluation's states just before its flush: kill only once the store has
    // one (its ALERTS series is committed in the same transaction as the alert states)
    let db = dir.path().join("data/tocsin.db");
    Deadline::within(
        "the pending state never reached the store",
        Duration::from_secs(30),
    )
    .until(|| {
        Command::new(BIN)
            .args([
                "query",
                r#"ALERTS{alertname="SvcUpLong", alertstate="pending"}"#,
                "--db",
            ])
            .arg(&db)
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("SvcUpLong"))
    })
    .await;

    d.kill_9();
    let d = d.start_again();
    // the first answer after the restart already has the old states: firing stays firing,
    // pending keeps when it became active
    let after = d
        .wait_json("/api/v1/alerts", Duration::from_secs(30), |v| {
            alert(v, "SvcUp").is_some()
        })
        .await;
    assert_eq!(alert(&after, "SvcUp").unwrap()["state"], "firing");
    let long = alert(&after, "SvcUpLong").unwrap();
    assert_eq!(long["state"], "pending");
    assert_eq!(long["activeAt"], pending_since);

    // the recording rule wrote its series back to the store
    let out = Command::new(BIN)
        .args(["query", "svc:up", "--db"])
        .arg(dir.path().join("data/tocsin.db"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(r#"svc:up{job="svc"} 1"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_rule_file_keeps_the_old_rules_and_a_fixed_one_is_picked_up() {
    let target = degraded_target().await;
    let dir = tempfile::tempdir().unwrap();
    let d = rules_daemon(dir.path(), &target).start();
    let url = d.url("/api/v1/alerts");
    d.wait_json("/api/v1/alerts", Duration::from_secs(30), |v| {
        alert(v, "SvcUp").is_some()
    })
    .await;

    // broken: the reload fails with the location, the old rules keep running
    std::fs::write(
        dir.path().join("rules/svc.yml"),
        "groups:\n  - name: svc\n    rules:\n      - alert: Broken\n        expr: up ==\n",
    )
    .unwrap();
    let resp = reqwest::Client::new()
        .post(d.url("/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    let body: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    let errors = body["errors"].to_string();
    assert!(errors.contains("svc.yml:5:"), "{errors}");
    assert!(errors.contains(r#"rule \"Broken\""#), "{errors}");
    let metrics = reqwest::get(d.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tocsin_rule_reload_success 0"),
        "{metrics}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&reqwest::get(&url).await.unwrap().text().await.unwrap()).unwrap();
    assert!(alert(&v, "SvcUp").is_some(), "old rules still evaluated");

    // fixed, with a new alert: the file watcher reloads on its own (atomic save)
    let tmp = dir.path().join("rules/svc.yml.tmp");
    std::fs::write(
        &tmp,
        RULES.replace("alert: SvcUpLong", "alert: SvcUpRenamed"),
    )
    .unwrap();
    std::fs::rename(&tmp, dir.path().join("rules/svc.yml")).unwrap();
    let v = d
        .wait_json("/api/v1/alerts", Duration::from_secs(30), |v| {
            alert(v, "SvcUpRenamed").is_some()
        })
        .await;
    assert!(
        alert(&v, "SvcUpLong").is_none(),
        "the removed rule's alerts are gone"
    );
    assert_eq!(
        alert(&v, "SvcUp").unwrap()["state"],
        "firing",
        "an unchanged rule keeps its state"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silences_api_needs_the_token_and_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::in_dir(dir.path())
        .config("server: { api_token_env: TEST_TOCSIN_TOKEN }\n")
        .env("TEST_TOCSIN_TOKEN", "s3cret")
        .start();
    d.wait_ready().await;
    let client = reqwest::Client::new();
    let url = d.url("/api/v1/silences");
    let body = r#"{"matchers":["alertname=\"Down\""],"endsAt":"2999-01-01T00:00:00Z","createdBy":"ops","comment":"maintenance"}"#;
    let post = |token: Option<&str>, body: &str| {
        let mut r = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(post(None, body).await.unwrap().status(), 401);
    assert_eq!(post(Some("wrong"), body).await.unwrap().status(), 401);
    for bad in [
        "{not json",
        r#"{"matchers":["alertname=\"Down\""],"endsAt":"2999-01-01T00:00:00Z","createdBy":"ops","typo":1}"#,
        r#"{"matchers":["noop"],"endsAt":"2999-01-01T00:00:00Z","createdBy":"ops"}"#,
        r#"{"matchers":["a=~\".*\""],"endsAt":"2999-01-01T00:00:00Z","createdBy":"ops"}"#,
        r#"{"matchers":["a=\"b\""],"endsAt":"yesterday","createdBy":"ops"}"#,
    ] {
        let resp = post(Some("s3cret"), bad).await.unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
    }
    let huge = format!(
        r#"{{"matchers":["a=\"{}\""],"endsAt":"2999-01-01T00:00:00Z","createdBy":"ops"}}"#,
        "x".repeat(100_000)
    );
    assert_eq!(post(Some("s3cret"), &huge).await.unwrap().status(), 413);
    let resp = post(Some("s3cret"), body).await.unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    let id = v["data"]["silenceID"].as_str().unwrap().to_string();
    let list: serde_json::Value =
        serde_json::from_str(&client.get(&url).send().await.unwrap().text().await.unwrap())
            .unwrap();
    assert_eq!(list["data"][0]["status"]["state"], "active");
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        1,
        "bad requests changed nothing"
    );
    let del = client
        .delete(format!("{url}/{id}"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 200);
    let list: serde_json::Value =
        serde_json::from_str(&client.get(&url).send().await.unwrap().text().await.unwrap())
            .unwrap();
    assert_eq!(list["data"][0]["status"]["state"], "expired");
    // reload is a write too
    let r = client.post(d.url("/-/reload")).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

/// `tocsin silence` with amtool's verbs and flags against a running daemon: `add -a -d
/// --comment`, `add --end`, `query` filtering by matchers (`-q`, `-o json`, `--expired`),
/// `expire`, and `import` of `query -o json` output (new ids, expired ones skipped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_command_speaks_amtool() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::in_dir(dir.path()).start();
    d.wait_ready().await;
    let silence = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("silence")
            .args(args)
            .args(["--url", &d.base])
            .current_dir(dir.path())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, db_id, err) = silence(&[
        "add",
        "-a",
        "alice",
        "-d",
        "2h",
        "--comment",
        "db maintenance",
        "alertname=Down",
        "instance=~db.*",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!db_id.is_empty());
    let (code, web_id, err) = silence(&[
        "add",
        "--end",
        "2999-01-01T00:00:00Z",
        "--comment",
        "web",
        "alertname=Slow",
    ]);
    assert_eq!(code, Some(0), "{err}");

    // filters: a silence's matchers read as labels must satisfy every filter matcher
    let (_, ids, _) = silence(&["query", "-q"]);
    assert_eq!(ids.lines().count(), 2, "{ids}");
    let (_, ids, _) = silence(&["query", "-q", "alertname=Down"]);
    assert_eq!(ids, db_id);
    let (_, ids, _) = silence(&["query", "-q", "alertname=~Down|Slow", "instance=~db.*"]);
    assert_eq!(ids, db_id);
    let (_, ids, _) = silence(&["query", "-q", "alertname=Other"]);
    assert_eq!(ids, "");
    let (code, json, err) = silence(&["query", "-o", "json", "alertname=Down"]);
    assert_eq!(code, Some(0), "{err}");
    let list: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(list[0]["createdBy"], "alice");
    assert_eq!(list[0]["comment"], "db maintenance");
    let (_, text, _) = silence(&["list"]);
    assert!(
        text.contains(&web_id) && text.contains("until 2999-01-01"),
        "{text}"
    );
    let export = dir.path().join("silences.json");
    let (_, all, _) = silence(&["query", "-o", "json"]);
    std::fs::write(&export, &all).unwrap();

    // expire: gone from the default listing, there with --expired
    let (code, out, err) = silence(&["expire", &db_id]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, format!("expired {db_id}"));
    let (_, ids, _) = silence(&["query", "-q"]);
    assert_eq!(ids, web_id);
    let (_, ids, _) = silence(&["query", "-q", "--expired"]);
    assert_eq!(ids.lines().count(), 2, "{ids}");
    let (code, _, err) = silence(&["expire", "no-such-id"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no-such-id"), "{err}");

    // import the export: both come back under new ids
    let (code, out, err) = silence(&["import", export.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    let new_ids: Vec<&str> = out.lines().collect();
    assert_eq!(new_ids.len(), 2, "{out}");
    assert!(!new_ids.contains(&db_id.as_str()) && !new_ids.contains(&web_id.as_str()));
    let (_, ids, _) = silence(&["query", "-q", "alertname=Down"]);
    assert_eq!(ids.lines().count(), 1, "{ids}");
    assert_ne!(ids, db_id);
    // an import of something that is not an array says so
    std::fs::write(&export, "{}").unwrap();
    let (code, _, err) = silence(&["import", export.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(err.contains("expected a JSON array"), "{err}");
}
