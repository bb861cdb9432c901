//! "Did you mean": a misspelt field of any file gets the nearest expected one, and a rule label
//! no stored series carries gets the nearest label name of the store, as a warning from
//! `tocsin check` (with the configuration's store) and from the daemon's rule load.

use std::process::Command;
use std::time::Duration;

use crate::common::{BIN, Daemon, Deadline, labels};

const T0: i64 = 1_700_000_000_000;

/// A store at `dir/data/tocsin.db` with `up{job, instance}` and `node_load1{job, instance, cpu}`.
fn store_with_series(dir: &std::path::Path) {
    let path = dir.join("data/tocsin.db");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let store = tocsin::store::Store::open(&path, Default::default()).unwrap();
    let up = store.series_ref(labels(&[
        ("__name__", "up"),
        ("instance", "a:9100"),
        ("job", "node"),
    ]));
    let load = store.series_ref(labels(&[
        ("__name__", "node_load1"),
        ("cpu", "0"),
        ("instance", "a:9100"),
        ("job", "node"),
    ]));
    store.append(&[(up, T0, 1.0), (load, T0, 0.5)]);
    store.close(T0 + 1000).unwrap();
}

const RULES: &str = r#"groups:
  - name: node
    rules:
      - alert: Down
        expr: up{instnace="a:9100"} == 0
      - record: job:load
        expr: sum by (jobs) (node_load1)
      - alert: Tagged
        expr: label_replace(up, "zone", "z", "", "") and on (zone) up
"#;

#[test]
fn check_warns_about_labels_no_stored_series_has_and_still_passes() {
    let dir = tempfile::tempdir().unwrap();
    store_with_series(dir.path());
    std::fs::write(dir.path().join("rules.yml"), RULES).unwrap();
    std::fs::write(
        dir.path().join("tocsin.yml"),
        "storage: { path: data/tocsin.db }\nrule_files: [rules.yml]\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "tocsin.yml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let warnings: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("warning: group"))
        .collect();
    assert_eq!(
        warnings,
        vec![
            r#"rules.yml:5:18: warning: group "node", rule "Down": label `instnace` is not on any series; did you mean `instance`?"#,
            r#"rules.yml:7:23: warning: group "node", rule "job:load": label `jobs` is not on any series; did you mean `job`?"#,
        ],
        "{stdout}"
    );

    // no store at the configured path: no label warnings, no error
    std::fs::remove_dir_all(dir.path().join("data")).unwrap();
    let out = Command::new(BIN)
        .args(["check", "tocsin.yml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("not on any series"));
}

#[tokio::test]
async fn the_daemon_warns_at_rule_load_about_labels_no_stored_series_has() {
    let dir = tempfile::tempdir().unwrap();
    store_with_series(dir.path());
    let mut daemon = Daemon::in_dir(dir.path())
        .file("rules.yml", RULES)
        .config(
            "storage: { path: data/tocsin.db }\nscrape: { self_metrics: false }\nrule_files: [rules.yml]\n",
        )
        .start();
    daemon.wait_ready().await;
    Deadline::within("the label warnings in the log", Duration::from_secs(20))
        .until(|| {
            let log = daemon.stdout();
            log.contains("did you mean `instance`?") && log.contains("did you mean `job`?")
        })
        .await;
    let log = daemon.stdout();
    assert!(log.contains("label=instnace"), "{log}");
    // a label the rules make themselves is known
    assert!(!log.contains("label=zone"), "{log}");
    daemon.terminate().await;
}

#[test]
fn a_misspelt_field_gets_the_nearest_expected_name_in_every_file_kind() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "tocsin.yml",
            "route: { receiver: a, group_wiat: 30s }\nreceivers: [{ name: a }]\n",
            "did you mean `group_wait`?",
        ),
        (
            "rules.yml",
            "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        keep_firing_fr: 5m\n",
            "did you mean `keep_firing_for`?",
        ),
        ("logs.yml", "log: { format: jsn }\n", "did you mean `json`?"),
    ];
    for (name, text, want) in cases {
        std::fs::write(dir.path().join(name), text).unwrap();
        let out = Command::new(BIN)
            .args(["check", name])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains(want), "{name}: {stderr}");
    }
    // a rule test file, through `tocsin test`
    std::fs::write(
        dir.path().join("t_test.yml"),
        "rule_files: []\ntests:\n  - input_series: []\n    alert_rule_tests: []\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["test", "t_test.yml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("did you mean `alert_rule_test`?"),
        "{stdout}"
    );
}
