//! `tocsin check` refuses what `tocsin run` cannot run, with the same messages (the real binary).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{BIN, free_addr};

/// Runs the binary with `args`, without `unset` in its environment; killed (and the test failed)
/// after 30 s, so a hang fails instead of blocking the suite.
fn tocsin(args: &[&str], dir: &Path, unset: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for v in unset {
        cmd.env_remove(v);
    }
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(30) {
            child.kill().unwrap();
            panic!("tocsin {args:?} did not finish within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn write_config(dir: &Path, body: &str) {
    let text = format!(
        "server: {{ listen: \"{}\" }}\nstorage: {{ path: {}/data/t.db }}\n{body}",
        free_addr(),
        dir.display()
    );
    std::fs::write(dir.join("tocsin.yml"), text).unwrap();
}

#[test]
fn check_and_run_both_refuse_unset_env_secrets() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "route: { receiver: mail }\nreceivers:\n  - name: mail\n    email: { to: [a@example.com], from: t@example.com, smarthost: 'smtp.example.com:587', username: u, password_env: TOCSIN_IT_SMTP_PASSWORD }\n",
    );
    let want = "names TOCSIN_IT_SMTP_PASSWORD, which is not set in this environment";
    let check = tocsin(
        &["check", "tocsin.yml"],
        dir.path(),
        &["TOCSIN_IT_SMTP_PASSWORD"],
    );
    let err = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(1), "{err}");
    assert!(err.contains(want), "{err}");
    let run = tocsin(
        &["run", "--config", "tocsin.yml"],
        dir.path(),
        &["TOCSIN_IT_SMTP_PASSWORD"],
    );
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{err}");
    assert!(err.contains(want), "{err}");
}

#[cfg(unix)]
#[test]
fn check_refuses_a_fifo_or_device_secret_file_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("secret.fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    write_config(
        dir.path(),
        &format!(
            "targets:\n  - name: svc\n    metrics: http://127.0.0.1:1/metrics\n    bearer_token_file: /dev/zero\n\
             route: {{ receiver: hook }}\nreceivers:\n  - name: hook\n    webhook: {{ url: 'http://127.0.0.1:1/', secret_file: {} }}\n",
            fifo.display()
        ),
    );
    let out = tocsin(&["check", "tocsin.yml"], dir.path(), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("/dev/zero is a device, not a regular file"),
        "{err}"
    );
    assert!(
        err.contains("secret.fifo is a fifo, not a regular file"),
        "{err}"
    );
}

#[test]
fn a_rule_pattern_matching_nothing_fails_check_and_run() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "rule_files:\n  - rulez/*.yml\n");
    let want = "tocsin.yml:4:5: rule_files[0]: pattern \"rulez/*.yml\" matches no file";
    let check = tocsin(&["check", "tocsin.yml"], dir.path(), &[]);
    let err = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(1), "{err}");
    assert!(err.contains(want), "{err}");
    let run = tocsin(&["run", "--config", "tocsin.yml"], dir.path(), &[]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{err}");
    assert!(err.contains(want), "{err}");
}

#[test]
fn check_points_rule_tests_to_tocsin_test_and_loads_a_file_reached_twice_once() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(
        rules.join("a.yml"),
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n",
    )
    .unwrap();
    std::fs::write(
        rules.join("a_test.yml"),
        "rule_files: [a.yml]\ntests:\n  - input_series: []\n",
    )
    .unwrap();
    let out = tocsin(&["check", "rules", "rules/a.yml"], dir.path(), &[]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(!stderr.contains("duplicate group"), "{stderr}");
    assert_eq!(stdout.matches("ok (1 rules)").count(), 1, "{stdout}");
    let out = tocsin(&["check", "rules/a_test.yml"], dir.path(), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("run it with `tocsin test rules/a_test.yml`"),
        "{err}"
    );
}

/// Every class of validation error `tocsin check` reports (the top-level scalar sections, targets,
/// receivers, routes, inhibition rules, time intervals), in one file: each has the line and
/// column of what it is about, none `0:0`.
#[test]
fn every_validation_error_names_a_real_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(
        crate::common::project_dir().join("fixtures/it/every-validation-error.yml"),
    )
    .unwrap();
    std::fs::write(dir.path().join("tocsin.yml"), &text).unwrap();
    let out = tocsin(&["check", "tocsin.yml"], dir.path(), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let lines = text.lines().count() as u64;
    let mut fields = Vec::new();
    for line in err.lines().filter(|l| !l.trim().is_empty()) {
        let mut parts = line.splitn(4, ':');
        let (file, l, c, rest) = (
            parts.next().unwrap(),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        assert_eq!(file, "tocsin.yml", "{line}");
        let (l, c): (u64, u64) = (l.parse().unwrap(), c.parse().unwrap());
        assert!((1..=lines).contains(&l) && c >= 1, "no position: {line}");
        fields.push(rest.trim().split(": ").next().unwrap().to_string());
    }
    for want in [
        "evaluation.promql_compat",
        "evaluation.interval",
        "server.listen",
        "scrape.interval",
        "scrape.timeout",
        "storage.retention",
        "storage.flush_interval",
        "targets[0].name",
        "targets[0].metrics",
        "targets[1].interval",
        "targets[1].timeout",
        "targets[1].labels",
        "targets[1].bearer_token_env",
        "targets[1].health_json[0].field",
        "targets[2]",
        "receivers[0] (\"ops\").webhook.url",
        "receivers[1] (\"ops\").webhook",
        "receivers[2].name",
        "receivers[2] (\" \").email.smarthost",
        "receivers[3] (\"m\").email.tls",
        "receivers[4] (\"am\").alertmanager.urls[0]",
        "receivers[4] (\"am\").alertmanager.resend_delay",
        "receivers[4] (\"am\").alertmanager.alert_relabel_configs[0].regex",
        "external_labels",
        "external_labels.replica",
        "receivers[1].fallback",
        "route.receiver",
        "route.routes[0].matchers[0]",
        "route.routes[0].mute_time_intervals[0]",
        "inhibit_rules[0].source_matchers[0]",
        "time_intervals[0].time_intervals[0].times[0]",
    ] {
        assert!(
            fields.iter().any(|f| f == want),
            "{want} not reported:\n{err}"
        );
    }
}

/// An unknown function in an expression or a template is reported at its own line and column
/// in the file (inside plain, quoted and block strings alike), not at the start of the string,
/// with the nearest known name.
#[test]
fn an_unknown_function_is_pointed_at_with_the_nearest_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("r.yml"),
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: |\n          sum(\n            rte(x[5m])\n          ) > 0\n      \
         - alert: B\n        expr: \"sum(rate(x[5m])) + rte(y[1m])\"\n        labels: {a: \"{{ humanze 1 }}\"}\n        \
         annotations:\n          summary: |\n            first line\n            {{ $labels.x | toUpperr }}\n      \
         - alert: C\n        expr: nosuchthing(up)\n",
    )
    .unwrap();
    let out = tocsin(&["check", "r.yml"], dir.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines,
        [
            "r.yml:7:13: group \"g\", rule \"A\": expr: unknown function with name 'rte', did you mean rate?",
            "r.yml:10:35: group \"g\", rule \"B\": expr: unknown function with name 'rte', did you mean rate?",
            "r.yml:11:25: group \"g\", rule \"B\": labels.a: template: 1:3: function \"humanze\" not defined, did you mean humanize?",
            "r.yml:15:28: group \"g\", rule \"B\": annotations.summary: template: 2:3: function \"toUpperr\" not defined, did you mean toUpper?",
            // nothing near: no suggestion
            "r.yml:17:15: group \"g\", rule \"C\": expr: unknown function with name 'nosuchthing'",
        ],
        "{err}"
    );
}
