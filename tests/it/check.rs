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
