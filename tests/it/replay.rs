//! `tocsin replay` through the real binary: a live daemon's run replayed and compared with what
//! it sent, a day of stored samples replayed with the shipped ScaiDNS rules, `--compare`, and the
//! faults (no data in the range, no store, broken rules, a store a daemon is writing).
//!
//! No assertion follows a fixed sleep: the live daemon is watched with bounded polling loops.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{
    Answer, BIN, Daemon, Deadline, FakeTarget, WebhookSink, free_addr, project_dir,
};
use tocsin::labels::Labels;
use tocsin::store::{Store, StoreOptions};

/// Bound on every wait: generous next to the 1 s scrape, evaluation and group intervals.
const DEADLINE: Duration = Duration::from_secs(20);

fn replay_cmd(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("replay")
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ---------------------------------------------------------------------------------------------
// live, then replay

/// The transitions the daemon logged (JSON lines): `(rule, kind)` with kind as replay names it.
fn transitions(d: &Daemon) -> Vec<(String, String)> {
    d.stdout()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "alert transition")
        .map(|v| {
            let f = &v["fields"];
            let kind = match (f["from"].as_str().unwrap(), f["to"].as_str().unwrap()) {
                (_, "pending") => "pending",
                (_, "firing") => "firing",
                ("firing", "inactive") => "resolved",
                _ => "cleared",
            };
            (f["rule"].as_str().unwrap().to_string(), kind.to_string())
        })
        .collect()
}

/// `DemoCondition` with `for: 1s`: a pending state before it fires.
const LIVE_RULES: &str = include_str!("../../fixtures/it/demo-rules-for-1s.yml");

fn ms_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn secs(ms: i64) -> String {
    format!("{:.3}", ms as f64 / 1000.0)
}

/// The daemon runs with a 1 s scrape, evaluation and group interval and `group_wait: 0s`; the
/// condition goes on until the webhook gets the firing notification, then off until it gets
/// the resolution. Replayed over the same period with the same config, the timeline has the
/// same transitions and the same notifications (receiver, status, alerts).
///
/// Inherent difference, compared with a tolerance: at an evaluation time the replay sees every
/// sample stamped up to it, the live daemon only what it had ingested by then, so a replayed
/// transition can come earlier, by the ingestion delay of one scrape (never later). Times are
/// compared on the alert's `startsAt`/`endsAt` (evaluation times) in the webhook payloads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_of_a_live_run_matches_what_the_daemon_sent() {
    let dir = tempfile::tempdir().unwrap();
    let target = FakeTarget::with_conditions(&["a"]).await;
    let target_url = target.base();
    let hook = WebhookSink::start(Answer::Reply(200, "ok")).await;
    let hook_url = hook.url();
    let listen = free_addr();
    let config = format!(
        "storage: {{ flush_interval: 1s }}\n\
             scrape: {{ interval: 1s, timeout: 1s }}\n\
             evaluation: {{ interval: 1s }}\n\
             rule_files: [rules.yml]\n\
             targets:\n  - name: svc\n    metrics: {target_url}/metrics\n\
             server: {{ listen: \"{listen}\" }}\n\
             route: {{ receiver: ops, group_by: [alertname, cond], group_wait: 0s, \
             group_interval: 1s, repeat_interval: 1h }}\n\
             receivers:\n  - name: ops\n    webhook: {{ url: \"{hook_url}\" }}\n"
    );

    let from = ms_now();
    let mut daemon = Daemon::in_dir(dir.path())
        .file("rules.yml", LIVE_RULES)
        .config(&config)
        .listen(listen)
        .arg("--log-format")
        .arg("json")
        .start();

    // a few scrapes with the condition off, then on until the firing notification arrives
    let scrapes = || target.requests("/metrics");
    let has = |status: &str| hook.hits().iter().any(|h| h.status() == status);
    Deadline::within("three scrapes", DEADLINE)
        .until(|| scrapes() >= 3)
        .await;
    target.set_conditions(&[("a", true)]);
    Deadline::within("the firing notification", DEADLINE)
        .until(|| has("firing"))
        .await;

    // fault: replay beside the running daemon reads what it has flushed, read-only
    let beside = replay_cmd(
        dir.path(),
        &[
            "--config",
            "tocsin.yml",
            "--from",
            &secs(from),
            "--to",
            "now",
            "--format",
            "json",
        ],
    );
    assert!(beside.status.success(), "{}", text(&beside.stderr));
    let v: Value = serde_json::from_slice(&beside.stdout).unwrap();
    assert!(
        v["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["alertname"] == "DemoCondition" && t["kind"] == "firing"),
        "{v}"
    );

    target.set_conditions(&[("a", false)]);
    Deadline::within("the resolved notification", DEADLINE)
        .until(|| has("resolved"))
        .await;
    let seen = scrapes();
    Deadline::within("two more scrapes", DEADLINE)
        .until(|| scrapes() >= seen + 2)
        .await;
    daemon.terminate().await;
    let to = ms_now();

    let started = Instant::now();
    let out = replay_cmd(
        dir.path(),
        &[
            "--config",
            "tocsin.yml",
            "--from",
            &secs(from),
            "--to",
            &secs(to),
            "--format",
            "json",
        ],
    );
    eprintln!(
        "replay of {:.1}s of live data: {:?}\n{}",
        (to - from) as f64 / 1000.0,
        started.elapsed(),
        text(&out.stderr)
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let replayed: Value = serde_json::from_slice(&out.stdout).unwrap();

    // transitions: the same sequence
    let live_transitions = transitions(&daemon);
    let replay_transitions: Vec<(String, String)> = replayed["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["alertname"].as_str().unwrap().to_string(),
                t["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        live_transitions,
        [
            ("DemoCondition".to_string(), "pending".to_string()),
            ("DemoCondition".to_string(), "firing".to_string()),
            ("DemoCondition".to_string(), "resolved".to_string()),
        ]
    );
    assert_eq!(replay_transitions, live_transitions, "{replayed:#}");

    // notifications: the same receiver, status and alerts, in the same order
    let live: Vec<Value> = hook.bodies();
    let summary = |receiver: &str, status: &str, alerts: &[Value], name_in_labels: bool| {
        let mut names: Vec<String> = alerts
            .iter()
            .map(|a| {
                let name = if name_in_labels {
                    a["labels"]["alertname"].as_str()
                } else {
                    a["alertname"].as_str()
                };
                format!(
                    "{} cond={} {}",
                    name.unwrap_or(""),
                    a["labels"]["cond"].as_str().unwrap_or(""),
                    a["status"].as_str().unwrap_or("")
                )
            })
            .collect();
        names.sort();
        format!("{receiver} {status} [{}]", names.join(", "))
    };
    let live_sent: Vec<String> = live
        .iter()
        .map(|h| {
            summary(
                h["receiver"].as_str().unwrap(),
                h["status"].as_str().unwrap(),
                h["alerts"].as_array().unwrap(),
                true,
            )
        })
        .collect();
    let replay_sent: Vec<String> = replayed["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            summary(
                n["receiver"].as_str().unwrap(),
                n["status"].as_str().unwrap(),
                n["alerts"].as_array().unwrap(),
                false,
            )
        })
        .collect();
    assert_eq!(
        live_sent,
        [
            "ops firing [DemoCondition cond=a firing]",
            "ops resolved [DemoCondition cond=a resolved]",
        ]
    );
    assert_eq!(replay_sent, live_sent, "{replayed:#}");
    assert_eq!(replayed["totals"]["notifications"]["ops"], 2);

    // times: the replay's firing and resolved evaluations against the alert's startsAt (the
    // firing time, as Prometheus sends it) and endsAt as the daemon sent them: equal, or
    // earlier by at most the ingestion of one scrape
    let at = |kind: &str| -> i64 {
        replayed["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["kind"] == kind)
            .unwrap()["at_ms"]
            .as_i64()
            .unwrap()
    };
    let resolved = live.iter().find(|h| h["status"] == "resolved").unwrap();
    let alert = &resolved["alerts"][0];
    let live_start = tocsin::timefmt::parse_time(alert["startsAt"].as_str().unwrap()).unwrap();
    let live_end = tocsin::timefmt::parse_time(alert["endsAt"].as_str().unwrap()).unwrap();
    for (what, live_t, replay_t) in [
        ("firing", live_start, at("firing")),
        ("resolved", live_end, at("resolved")),
    ] {
        let early = live_t - replay_t;
        assert!(
            (0..=2_000).contains(&early),
            "{what}: live at {live_t}, replayed at {replay_t}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// a day of stored samples

/// 2026-12-04T00:00:00Z
const DAY: i64 = 1_796_342_400_000;
const STEP: i64 = 15_000;
/// The incident: 5xx responses from 12:00 to 12:20.
const INCIDENT: (i64, i64) = (DAY + 12 * 3_600_000, DAY + 12 * 3_600_000 + 20 * 60_000);

/// Writes a day of one ScaiDNS instance at 15 s resolution through the store API: request
/// counters (100 2xx per scrape; 10 5xx per scrape during the incident), `up`, the readiness
/// probe and one readiness check, flushed every hour as the daemon would.
fn write_day(path: &Path) {
    write_samples(path, DAY, DAY + 86_400_000);
}

/// [`write_day`]'s samples in [from, to).
fn write_samples(path: &Path, from: i64, to: i64) {
    let store = Store::open(path, StoreOptions::default()).unwrap();
    let base = [
        ("job", "scaidns"),
        ("instance", "dns1:8000"),
        ("service", "scaidns"),
    ];
    let with = |extra: &[(&str, &str)]| Labels::from_pairs(base.iter().chain(extra).copied());
    let ids = store.series_refs(vec![
        with(&[
            ("__name__", "scaidns_http_requests_total"),
            ("status", "200"),
        ]),
        with(&[
            ("__name__", "scaidns_http_requests_total"),
            ("status", "500"),
        ]),
        with(&[("__name__", "up")]),
        with(&[("__name__", "probe_http_status_code"), ("probe", "health")]),
        with(&[
            ("__name__", "health_check_ok"),
            ("probe", "health"),
            ("check", "database"),
        ]),
    ]);
    let (mut ok, mut errors) = (0.0, 0.0);
    let mut t = from;
    while t < to {
        ok += 100.0;
        if (INCIDENT.0..INCIDENT.1).contains(&t) {
            errors += 10.0;
        }
        store.append(&[
            (ids[0], t, ok),
            (ids[1], t, errors),
            (ids[2], t, 1.0),
            (ids[3], t, 200.0),
            (ids[4], t, 1.0),
        ]);
        if (t - DAY) % 3_600_000 == 0 {
            store.flush(t).unwrap();
        }
        t += STEP;
    }
    store.close(t).unwrap();
}

fn rfc(ms: i64) -> String {
    tocsin::timefmt::format_rfc3339(ms)
}

/// The evaluations-per-second figure `tocsin replay` prints on stderr.
fn rate_line(stderr: &str) -> String {
    stderr
        .lines()
        .find(|l| l.starts_with("replayed "))
        .unwrap_or("")
        .to_string()
}

/// A day of samples with the shipped `rules/scaidns.yml` (four groups at 15 s: 23,040 group
/// evaluations): the replay finishes, finds the incident (the 5xx ratio alert fires within its
/// `for` after the start and resolves once the 5 m rate window has passed the end), notifies
/// the built-in receiver, and `--compare` with a raised threshold reports the alert as only in
/// the first rules.
#[test]
fn replay_of_a_day_finds_the_incident_and_compare_finds_a_threshold_change() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("day.db");
    let started = Instant::now();
    write_day(&db);
    eprintln!("wrote a day of 5 series at 15 s in {:?}", started.elapsed());
    let rules = project_dir().join("rules/scaidns.yml");
    let (rules_s, db_s) = (rules.to_str().unwrap(), db.to_str().unwrap());
    let (from, to) = (rfc(DAY), rfc(DAY + 86_400_000 - 1));

    let started = Instant::now();
    let out = replay_cmd(
        dir.path(),
        &[
            "--db", db_s, "--rules", rules_s, "--from", &from, "--to", &to, "--format", "json",
        ],
    );
    let wall = started.elapsed();
    let stderr = text(&out.stderr);
    eprintln!("replay of a day: {wall:?} wall; {}", rate_line(&stderr));
    assert!(out.status.success(), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["totals"]["evaluations"], 4 * 5760, "{}", v["totals"]);
    assert_eq!(v["totals"]["failed"], 0, "{}", v["errors"]);
    let of = |kind: &str| -> Vec<i64> {
        v["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["alertname"] == "ScaiDNSHigh5xxRatio" && t["kind"] == kind)
            .map(|t| t["at_ms"].as_i64().unwrap())
            .collect()
    };
    let (firing, resolved) = (of("firing"), of("resolved"));
    assert_eq!(firing.len(), 1, "{}", v["transitions"]);
    assert_eq!(resolved.len(), 1, "{}", v["transitions"]);
    // pending at the first evaluation after 12:00:15 (two samples for rate), firing 1m later
    assert!(
        (INCIDENT.0 + 60_000..=INCIDENT.0 + 60_000 + 2 * STEP).contains(&firing[0]),
        "fired at {}",
        rfc(firing[0])
    );
    // resolved when the 5m window no longer holds an increase of the 5xx counter
    assert!(
        (INCIDENT.1..=INCIDENT.1 + 5 * 60_000 + STEP).contains(&resolved[0]),
        "resolved at {}",
        rfc(resolved[0])
    );
    // no other alert fires on a healthy day
    let others: Vec<&Value> = v["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["alertname"] != "ScaiDNSHigh5xxRatio")
        .collect();
    assert!(others.is_empty(), "{others:?}");
    // the built-in routing: `default`, 30 s group wait
    let first = &v["notifications"][0];
    assert_eq!(first["receiver"], "default");
    assert_eq!(first["subject"], "[FIRING:1] ScaiDNSHigh5xxRatio");
    assert_eq!(first["at_ms"].as_i64().unwrap(), firing[0] + 30_000);
    assert!(
        v["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["status"] == "resolved"),
        "{}",
        v["notifications"]
    );

    // text output (the incident's hours): the timeline lines and totals
    let (hour_from, hour_to) = (rfc(INCIDENT.0 - 3_600_000), rfc(INCIDENT.0 + 3_600_000 - 1));
    let out = replay_cmd(
        dir.path(),
        &[
            "--db", db_s, "--rules", rules_s, "--from", &hour_from, "--to", &hour_to,
        ],
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "{}  firing    ScaiDNSHigh5xxRatio {{instance=\"dns1:8000\", job=\"scaidns\", severity=\"page\", system=\"scaidns\"}}",
            rfc(firing[0])
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "{}  notify    default  [FIRING:1] ScaiDNSHigh5xxRatio",
            rfc(firing[0] + 30_000)
        )),
        "{stdout}"
    );
    assert!(stdout.contains("1920 group evaluations"), "{stdout}");
    assert!(stdout.contains("notifications: default "), "{stdout}");

    // --compare: the threshold raised to 50% never fires
    let raised = dir.path().join("raised.yml");
    std::fs::write(
        &raised,
        std::fs::read_to_string(&rules)
            .unwrap()
            .replacen("> 0.005", "> 0.5", 1),
    )
    .unwrap();
    let out = replay_cmd(
        dir.path(),
        &[
            "--db",
            db_s,
            "--rules",
            rules_s,
            "--from",
            &rfc(INCIDENT.0 - 3_600_000),
            "--to",
            &rfc(INCIDENT.1 + 3_600_000),
            "--compare",
            raised.to_str().unwrap(),
        ],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("only in a  ScaiDNSHigh5xxRatio {instance=\"dns1:8000\""),
        "{stdout}"
    );
    assert!(stdout.contains("b: never fired"), "{stdout}");
    assert!(stdout.contains("1 alerts differ"), "{stdout}");
    // the same rules on both sides: no difference, exit 0
    let out = replay_cmd(
        dir.path(),
        &[
            "--db",
            db_s,
            "--rules",
            rules_s,
            "--from",
            &rfc(INCIDENT.0),
            "--to",
            &rfc(INCIDENT.1),
            "--compare",
            rules_s,
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("0 alerts differ"));
}

/// The same rule file at two paths (another directory, another name) evaluates at the same
/// slots, so `--compare` finds nothing: a group's schedule follows its name, not its file.
#[test]
fn compare_of_one_rule_file_at_two_paths_reports_no_difference() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("incident.db");
    let (from, to) = (INCIDENT.0 - 3_600_000, INCIDENT.1 + 3_600_000);
    write_samples(&db, from, to);
    let shipped =
        std::fs::read_to_string(crate::common::project_dir().join("rules/scaidns.yml")).unwrap();
    let (a, b) = (
        dir.path().join("a/scaidns.yml"),
        dir.path().join("b/c/moved.yml"),
    );
    for p in [&a, &b] {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, &shipped).unwrap();
    }
    let args = |format: &'static str| {
        let mut v = vec![
            "--db".to_string(),
            db.to_str().unwrap().to_string(),
            "--rules".into(),
            a.to_str().unwrap().into(),
            "--compare".into(),
            b.to_str().unwrap().into(),
            "--from".into(),
            rfc(from),
            "--to".into(),
            rfc(to - 1),
        ];
        if !format.is_empty() {
            v.extend(["--format".to_string(), format.to_string()]);
        }
        v
    };
    let run = |format| {
        let args = args(format);
        replay_cmd(
            dir.path(),
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    };
    let out = run("json");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["differences"],
        serde_json::json!([]),
        "{}",
        v["differences"]
    );
    // not vacuous: the incident fired in both, at the same evaluation
    let fired = |side: &str| -> Vec<i64> {
        v[side]["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["kind"] == "firing")
            .map(|t| t["at_ms"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(fired("a_timeline").len(), 1, "{}", v["a_timeline"]);
    assert_eq!(fired("a_timeline"), fired("b_timeline"));
    assert_eq!(v["a_timeline"]["totals"], v["b_timeline"]["totals"]);

    let out = run("");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("0 alerts differ (1 fired in a, 1 in b)"),
        "{stdout}"
    );
}

// ---------------------------------------------------------------------------------------------
// faults

#[test]
fn replay_faults_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    {
        let store = Store::open(&db, StoreOptions::default()).unwrap();
        let id = store.series_ref(Labels::from_pairs([("__name__", "up"), ("job", "a")]));
        store.append(&[(id, DAY, 1.0), (id, DAY + STEP, 1.0)]);
        store.close(DAY + STEP).unwrap();
    }
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: g\n    rules:\n      - alert: Down\n        expr: up == 0\n",
    )
    .unwrap();
    let (db_s, rules_s) = (db.to_str().unwrap(), rules.to_str().unwrap());

    // a range without samples: exit 1, the range and what the store holds
    let out = replay_cmd(
        dir.path(),
        &[
            "--db",
            db_s,
            "--rules",
            rules_s,
            "--from",
            "2020-01-01T00:00:00Z",
            "--to",
            "2020-01-02T00:00:00Z",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim(),
        format!(
            "error: {db_s}: no samples between 2020-01-01T00:00:00Z and 2020-01-02T00:00:00Z: \
             the store holds samples from {} to {}",
            rfc(DAY),
            rfc(DAY + STEP)
        )
    );

    // no store: exit 2, the path named, nothing created
    let missing = dir.path().join("missing.db");
    let out = replay_cmd(
        dir.path(),
        &[
            "--db",
            missing.to_str().unwrap(),
            "--rules",
            rules_s,
            "--from",
            "0",
            "--to",
            "now",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains(&format!("no store at {}", missing.display())));
    assert!(!missing.exists());

    // broken rules: exit 1, every error with file:line:col, before the store is opened
    let broken = dir.path().join("broken.yml");
    std::fs::write(
        &broken,
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up ==\n      - alert: B\n        expr: rate(up)\n",
    )
    .unwrap();
    let out = replay_cmd(
        dir.path(),
        &[
            "--db",
            missing.to_str().unwrap(),
            "--rules",
            broken.to_str().unwrap(),
            "--from",
            "0",
            "--to",
            "now",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let b = broken.display().to_string();
    assert!(stderr.contains(&format!("{b}:5:")), "{stderr}");
    assert!(stderr.contains(&format!("{b}:7:")), "{stderr}");

    // a bad time: usage error
    let out = replay_cmd(
        dir.path(),
        &["--db", db_s, "--rules", rules_s, "--from", "yesterday"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--from"),
        "{}",
        text(&out.stderr)
    );
}
