//! `tocsin test --watch` with the real binary: a rule file edited so its test fails is rerun and
//! reported failing, fixed and reported passing; a test file that does not read the edited
//! rule file is not rerun; Ctrl-C ends the watch with the last run's exit code.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{BIN, Deadline};

const RULES: &str = r#"groups:
  - name: g
    rules:
      - alert: High
        expr: x > 1
"#;

const TEST: &str = r#"rule_files: [../rules/r.yml]
evaluation_interval: 1m
tests:
  - input_series:
      - series: 'x{job="a"}'
        values: "5x10"
    alert_rule_test:
      - eval_time: 5m
        alertname: High
        exp_alerts:
          - exp_labels: { alertname: High, job: a }
"#;

const OTHER_RULES: &str = r#"groups:
  - name: other
    rules:
      - record: y:sum
        expr: sum(y)
"#;

const OTHER_TEST: &str = r#"rule_files: [../rules/other.yml]
tests:
  - input_series:
      - series: 'y'
        values: "1x5"
    promql_expr_test:
      - expr: y:sum
        eval_time: 2m
        exp_samples:
          - labels: 'y:sum'
            value: 1
"#;

/// The watching child, killed by its PID when dropped.
struct Watching(Child);

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Writes `text` to a new file beside `path` and renames it over `path`: an editor's atomic save.
fn save_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("yml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn a_rule_file_edit_reruns_only_the_tests_that_load_it_until_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let (rules, tests) = (dir.path().join("rules"), dir.path().join("tests"));
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::create_dir_all(&tests).unwrap();
    std::fs::write(rules.join("r.yml"), RULES).unwrap();
    std::fs::write(rules.join("other.yml"), OTHER_RULES).unwrap();
    std::fs::write(tests.join("r_test.yml"), TEST).unwrap();
    std::fs::write(tests.join("other_test.yml"), OTHER_TEST).unwrap();
    let (stdout, stderr) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let child = Command::new(BIN)
        .args(["test", "--watch"])
        .arg(&tests)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let mut watching = Watching(child);
    let out = || std::fs::read_to_string(&stdout).unwrap_or_default();
    let err = || std::fs::read_to_string(&stderr).unwrap_or_default();

    // the first run: both files pass, and the watch has begun
    Deadline::within("the first run", Duration::from_secs(30))
        .until(|| out().matches("SUCCESS").count() == 2 && err().contains("watching 2 test files"))
        .await;
    assert!(!out().contains("FAILED"), "{}", out());

    // the rule no longer fires: its test fails, the other file is not rerun
    save_atomically(&rules.join("r.yml"), &RULES.replace("x > 1", "x > 10"));
    Deadline::within("the failing rerun", Duration::from_secs(30))
        .until(|| out().contains("FAILED"))
        .await;
    let text = out();
    let rerun = &text[text
        .find("--- change: rerunning 1 of 2 test files")
        .unwrap_or_else(|| panic!("no rerun line in:\n{text}\nstderr:\n{}", err()))..];
    assert!(rerun.contains("r_test.yml"), "{rerun}");
    assert!(!rerun.contains("other_test.yml"), "{rerun}");
    assert!(
        rerun.contains("High"),
        "the failure names the alert: {rerun}"
    );

    // fixed in place (no rename): the test passes again
    std::fs::write(rules.join("r.yml"), RULES).unwrap();
    Deadline::within("the passing rerun", Duration::from_secs(30))
        .until(|| {
            let t = out();
            t.rfind("SUCCESS") > t.rfind("FAILED")
        })
        .await;
    assert!(!out().contains("other_test.yml\n  FAILED"), "{}", out());

    // Ctrl-C: a clean exit with the last run's code (passed)
    let pid = watching.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Deadline::within("the exit after Ctrl-C", Duration::from_secs(20));
    let status = deadline
        .until_some(async || watching.0.try_wait().unwrap())
        .await;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", err());
    assert!(err().contains("stopped watching"), "{}", err());
}
