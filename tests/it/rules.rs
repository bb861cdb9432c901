//! `tocsin check` and `tocsin test` on the shipped rules, on the peer's promtool tests and on
//! promtool's own test data (good files pass, bad ones fail, as with promtool).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{BIN, project_dir, shared_dir};

fn tocsin(args: &[&str], files: &[PathBuf], cwd: &Path) -> (bool, String) {
    let out = Command::new(BIN)
        .args(args)
        .args(files)
        .current_dir(cwd)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn shipped_rules_check_and_pass_their_tests() {
    let rules = project_dir().join("rules");
    let (ok, out) = tocsin(&["check"], std::slice::from_ref(&rules), &project_dir());
    assert!(ok, "{out}");
    let mut tests: Vec<PathBuf> = std::fs::read_dir(&rules)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with("_test.yml"))
        .collect();
    tests.sort();
    assert!(!tests.is_empty(), "every shipped rule file has a test file");
    // the directory means its test files, in name order
    let (ok, out) = tocsin(&["test"], std::slice::from_ref(&rules), &project_dir());
    assert!(ok, "{out}");
    let tested: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("Unit Testing:"))
        .map(str::trim)
        .collect();
    let expected: Vec<String> = tests.iter().map(|t| t.display().to_string()).collect();
    assert_eq!(tested, expected, "{out}");
    // a directory without test files is an error, not an empty success
    let empty = tempfile::tempdir().unwrap();
    let (ok, out) = tocsin(&["test"], &[empty.path().to_path_buf()], &project_dir());
    assert!(!ok && out.contains("no rule test files"), "{out}");
}

#[test]
fn peer_promtool_tests_pass_unchanged() {
    let Some(shared) = shared_dir() else {
        eprintln!("skipping peer rule tests: ../shared not found");
        return;
    };
    let dir = shared.join("peer/tests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    let (ok, out) = tocsin(&["test"], &files, &dir);
    assert!(ok, "{out}");
}

#[test]
fn promtool_test_data_passes_and_fails_as_with_promtool() {
    let Some(shared) = shared_dir() else {
        eprintln!("skipping promtool conformance: ../shared not found");
        return;
    };
    let dir = shared.join("conformance/prometheus/promtool");
    let cases: &[(&str, &[&str], bool)] = &[
        ("unittest.yml", &[], true),
        ("at-modifier-test.yml", &[], true),
        ("negative-offset-test.yml", &[], true),
        ("start-time-test.yml", &[], true),
        ("long-period.yml", &[], true),
        ("no-test-group-interval.yml", &[], true),
        ("rules_run.yml", &["--run", "correct"], true),
        ("rules_run_fuzzy.yml", &["--run", "correct"], true),
        ("rules_run.yml", &[], false),
        ("rules_run_fuzzy.yml", &[], false),
        ("rules_run_no_fuzzy.yml", &[], false),
        ("bad-input-series.yml", &[], false),
        ("bad-promql.yml", &[], false),
        ("bad-rules-error-test.yml", &[], false),
        ("bad-rules-syntax-test.yml", &[], false),
        ("failing.yml", &[], false),
    ];
    let mut wrong = Vec::new();
    for (file, flags, should_pass) in cases {
        let mut args = vec!["test", "--promql-compat", "3"];
        args.extend_from_slice(flags);
        let (ok, out) = tocsin(&args, &[dir.join(file)], &dir);
        println!(
            "promtool conformance: {file} {flags:?}: {}",
            if ok { "pass" } else { "fail" }
        );
        if ok != *should_pass {
            wrong.push(format!(
                "{file} {flags:?}: expected {}, got:\n{out}",
                if *should_pass { "pass" } else { "fail" }
            ));
        }
    }
    // check: the rule files promtool accepts load, the bad ones are rejected with a location
    let (ok, out) = tocsin(&["check"], &[dir.join("rules.yml")], &dir);
    if !ok {
        wrong.push(format!("check rules.yml: {out}"));
    }
    for bad in ["rules-bad.yml", "bad-rules-syntax.yml"] {
        let (ok, out) = tocsin(&["check"], &[dir.join(bad)], &dir);
        if ok || !out.contains(&format!("{bad}:")) {
            wrong.push(format!("check {bad} should fail naming the file: {out}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

/// Rule groups that name a `datasource:` are unit-tested over the test file's input series,
/// as promtool tests any group: no configuration declares the names, none is needed, and a
/// wrong expectation fails as for any other group.
#[test]
fn groups_on_a_datasource_are_tested_over_the_input_series() {
    let root = project_dir();
    let example = root.join("fixtures/examples/datasource-victoriametrics.rules_test.yml");
    // from a directory without any tocsin.yml
    let elsewhere = tempfile::tempdir().unwrap();
    let (ok, out) = tocsin(&["test"], std::slice::from_ref(&example), elsewhere.path());
    assert!(ok, "{out}");
    assert!(out.contains("SUCCESS"), "{out}");
    // the same file with a wrong expectation: the group is really evaluated
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        root.join("fixtures/examples/datasource-victoriametrics.rules.yml"),
        dir.path().join("datasource-victoriametrics.rules.yml"),
    )
    .unwrap();
    let wrong = std::fs::read_to_string(&example)
        .unwrap()
        .replace("instance: \"host1:9100\" }", "instance: \"host2:9100\" }");
    std::fs::write(dir.path().join("wrong_test.yml"), wrong).unwrap();
    let (ok, out) = tocsin(&["test", "wrong_test.yml"], &[], dir.path());
    assert!(!ok, "{out}");
    assert!(
        out.contains("alertname: InstanceDown") && out.contains("host1:9100"),
        "the failure names the alert the group raised: {out}"
    );
}
