//! `tocsin test` with `notification_test`: the real binary on the fixtures in
//! `fixtures/notify/` (a custom config with two receivers and a child route; group_wait; the
//! failure messages for a wrong subject and an unexpected notification; the JUnit report).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{BIN, project_dir};

/// Runs `tocsin test` in the project directory; (exit 0, stdout and stderr).
fn tocsin_test(args: &[&str], file: &Path) -> (bool, String) {
    let out = Command::new(BIN)
        .arg("test")
        .args(args)
        .arg(file)
        .current_dir(project_dir())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from("fixtures/notify").join(name)
}

#[test]
fn correct_expectations_pass_with_a_custom_config_child_route_and_group_wait() {
    // pass_test.yml asserts nothing in [0, 1m] and (1m30s, 2m] although an alert fires at 1m
    // and another at 2m (group_wait 30s), then ops (webhook and email) and oncall (child route,
    // webhook only) each with their notification, and the resolution to oncall
    let (ok, out) = tocsin_test(&[], &fixture("pass_test.yml"));
    assert!(ok, "{out}");
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn a_wrong_subject_fails_naming_what_was_sent() {
    let (ok, out) = tocsin_test(&["--run", "^wrong subject$"], &fixture("fail_test.yml"));
    assert!(!ok, "{out}");
    let want = "    in wrong subject: notification_test: time: 1m30s, sent in [0s, 1m30s],
        exp:
          0: receiver: ops, subject: \"[FIRING:2] QueueSlow\"
        got:
          0: receiver: ops, subject: \"[FIRING:1] QueueSlow\", status: firing, alerts: 1, at: 1m30s
        exp 0 vs got 0: subject is \"[FIRING:1] QueueSlow\"";
    assert!(out.contains(want), "{out}");
}

#[test]
fn an_unexpected_notification_fails() {
    let (ok, out) = tocsin_test(
        &["--run", "^unexpected notification$"],
        &fixture("fail_test.yml"),
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("0: receiver: oncall, no email, status: firing, alerts: 1, at: 1m30s"),
        "{out}"
    );
    assert!(
        out.contains("got 0: not expected (ignore_extra: true on the entry allows more)"),
        "{out}"
    );
    assert!(!out.contains("exp 0"), "the expected one matched: {out}");
}

#[test]
fn nothing_is_sent_before_group_wait() {
    let (ok, out) = tocsin_test(&["--run", "before group_wait"], &fixture("fail_test.yml"));
    assert!(!ok, "{out}");
    assert!(out.contains("sent in [0s, 1m],"), "{out}");
    assert!(
        out.contains("got:[]\n        exp 0: nothing was sent to receiver \"ops\""),
        "{out}"
    );
}

#[test]
fn junit_report_carries_notification_failures() {
    let dir = tempfile::tempdir().unwrap();
    let xml = dir.path().join("junit.xml");
    let (ok, out) = tocsin_test(
        &["--junit", xml.to_str().unwrap()],
        &fixture("fail_test.yml"),
    );
    assert!(!ok, "{out}");
    let xml = std::fs::read_to_string(xml).unwrap();
    assert!(xml.contains("tests=\"3\" failures=\"3\""), "{xml}");
    assert!(
        xml.contains(
            "<testcase name=\"wrong subject\"><failure message=\"notification_test: time: 1m30s"
        ),
        "{xml}"
    );
    assert!(
        xml.contains("subject is &quot;[FIRING:1] QueueSlow&quot;"),
        "{xml}"
    );
}

#[test]
fn every_shipped_rule_test_asserts_a_notification() {
    // `shipped_rules_check_and_pass_their_tests` (rules.rs) runs them; this checks they say
    // something about notifications: a receiver, an email subject, a body line and a webhook field
    let mut missing = Vec::new();
    let mut files = 0;
    for entry in std::fs::read_dir(project_dir().join("rules"))
        .unwrap()
        .flatten()
    {
        let path = entry.path();
        if !path.to_string_lossy().ends_with("_test.yml") {
            continue;
        }
        files += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        let doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        let complete = doc["tests"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["notification_test"].as_array().into_iter().flatten())
            .flat_map(|n| n["exp_notifications"].as_array().into_iter().flatten())
            .any(|e| {
                e["receiver"].is_string()
                    && e["subject"].is_string()
                    && e["body_contains"].as_array().is_some_and(|b| !b.is_empty())
                    && e["webhook"].as_object().is_some_and(|w| !w.is_empty())
            });
        if !complete {
            missing.push(path.display().to_string());
        }
    }
    assert!(files >= 5, "the shipped rule tests are in rules/");
    assert!(
        missing.is_empty(),
        "no notification_test asserting receiver, subject, body and webhook in {missing:?}"
    );
}
