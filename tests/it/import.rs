//! `tocsin import`: Alertmanager and Prometheus configurations, written in the shapes of their
//! documentation examples (`fixtures/import/`), converted into configurations tocsin validates;
//! routing compared alert by alert with the real `amtool config routes test` (Debian's
//! prometheus-alertmanager 0.25), the Prometheus input checked with the real `promtool`; every
//! unsupported field reported with its line and column, and exit 1.

use std::path::{Path, PathBuf};
use std::process::Command;

use tocsin::config::Config;
use tocsin::config::import::{Effect, MAX_INPUT_BYTES, Source, import_file, import_str};

use crate::common::*;

fn fixture(name: &str) -> PathBuf {
    project_dir().join("fixtures/import").join(name)
}

/// `tocsin import FILE`: exit code, stdout, stderr.
fn run_import(file: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(BIN).arg("import").arg(file).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn have(tool: &str) -> bool {
    let found = Command::new(tool).arg("--version").output().is_ok();
    if !found {
        eprintln!("skipping: {tool} not found (apt install prometheus prometheus-alertmanager)");
    }
    found
}

/// For each label set, the receivers amtool finds in `input` and tocsin's `route-test` in the
/// converted configuration `converted`, which must be the same.
fn assert_routes_agree(input: &Path, converted: &Path, label_sets: &[&[&str]]) {
    for labels in label_sets {
        let am = Command::new("amtool")
            .args(["config", "routes", "test"])
            .arg(format!("--config.file={}", input.display()))
            .args(*labels)
            .env("HOME", converted.parent().unwrap())
            .output()
            .unwrap();
        assert!(
            am.status.success(),
            "amtool failed: {}",
            String::from_utf8_lossy(&am.stderr)
        );
        let ours = Command::new(BIN)
            .arg("route-test")
            .arg("-c")
            .arg(converted)
            .args(*labels)
            .output()
            .unwrap();
        assert!(
            ours.status.success(),
            "route-test failed: {}",
            String::from_utf8_lossy(&ours.stderr)
        );
        let am = String::from_utf8_lossy(&am.stdout).trim().to_string();
        let ours = String::from_utf8_lossy(&ours.stdout).trim().to_string();
        assert!(!am.is_empty(), "amtool routed {labels:?} nowhere");
        assert_eq!(ours, am, "receivers for {labels:?}");
    }
}

/// Converts `name`, writes the output to a temporary directory, checks that tocsin's validation
/// accepts it; returns the conversion and the written file.
fn convert_and_validate(name: &str, dir: &Path) -> (tocsin::config::import::Conversion, PathBuf) {
    let conversion = import_file(&fixture(name)).unwrap();
    let out = dir.join("tocsin.yml");
    std::fs::write(&out, &conversion.yaml).unwrap();
    if let Err(e) = Config::from_yaml(&conversion.yaml, &out) {
        panic!(
            "converted {name} does not validate:\n{e}\n---\n{}",
            conversion.yaml
        );
    }
    (conversion, out)
}

#[test]
fn the_documentation_example_routes_every_alert_where_alertmanager_does() {
    let dir = tempfile::tempdir().unwrap();
    let (conversion, converted) = convert_and_validate("alertmanager-simple.yml", dir.path());
    assert_eq!(conversion.source, Source::Alertmanager);
    // the pagers (pagerduty), the templates and the inline password are reported, not exact
    assert!(!conversion.exact());
    let dropped: Vec<&str> = conversion
        .findings
        .iter()
        .filter(|f| f.effect == Effect::Dropped)
        .map(|f| f.field.as_str())
        .collect();
    assert_eq!(
        dropped,
        [
            "templates",
            "receivers[1].pagerduty_configs",
            "receivers[3].pagerduty_configs",
            "receivers[4].pagerduty_configs"
        ]
    );
    let password = conversion
        .findings
        .iter()
        .find(|f| f.field == "global.smtp_auth_password")
        .unwrap();
    assert_eq!((password.line, password.effect), (8, Effect::Changed));
    assert!(password.message.contains("TOCSIN_SMTP_PASSWORD"));
    // global SMTP settings reach every email receiver; a comma-separated `to` becomes a list
    let cfg = Config::from_yaml(&conversion.yaml, &converted).unwrap();
    let y_mails = cfg
        .receivers
        .iter()
        .find(|r| r.name.value == "team-Y-mails")
        .unwrap();
    let email = y_mails.email.as_ref().unwrap();
    assert_eq!(
        email.to.value,
        ["team-Y+alerts@example.org", "team-Y-lead@example.org"]
    );
    assert_eq!(email.smarthost.value, "mail.example.org:587");
    assert_eq!(email.from, "alertmanager@example.org");
    assert_eq!(email.password_env.as_deref(), Some("TOCSIN_SMTP_PASSWORD"));
    // `tocsin check` accepts it once the variable the password moved to is set, and says so before
    let check = |env: &[(&str, &str)]| {
        Command::new(BIN)
            .arg("check")
            .arg(&converted)
            .env_remove("TOCSIN_SMTP_PASSWORD")
            .envs(env.iter().copied())
            .output()
            .unwrap()
    };
    let without = check(&[]);
    assert_eq!(without.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&without.stderr).contains("TOCSIN_SMTP_PASSWORD"));
    assert!(check(&[("TOCSIN_SMTP_PASSWORD", "x")]).status.success());
    // deterministic: the same input prints the same text
    assert_eq!(
        import_file(&fixture("alertmanager-simple.yml"))
            .unwrap()
            .yaml,
        conversion.yaml
    );
    if !have("amtool") {
        return;
    }
    assert_routes_agree(
        &fixture("alertmanager-simple.yml"),
        &converted,
        &[
            &["alertname=Disk"],
            &["service=foo1"],
            &["service=baz", "severity=critical"],
            &["service=foo3", "severity=critical"],
            &["service=files"],
            &["service=files", "severity=critical"],
            &["service=database"],
            &["service=database", "owner=team-X"],
            &["service=database", "owner=team-Y", "severity=critical"],
            &["service=database", "owner=team-Z"],
        ],
    );
}

#[test]
fn old_forms_time_intervals_and_continue_convert_exactly_and_route_alike() {
    let dir = tempfile::tempdir().unwrap();
    let (conversion, converted) = convert_and_validate("alertmanager-exact.yml", dir.path());
    assert!(
        conversion.exact(),
        "findings: {:?}\n{}",
        conversion.findings,
        conversion.yaml
    );
    // match/match_re became matchers, in the quoted form
    assert!(
        conversion
            .yaml
            .contains(r#"matchers: ['team=~"frontend|web"', 'env=~"prod.*"']"#)
    );
    assert!(
        conversion
            .yaml
            .contains(r#"source_matchers: ['severity="critical"']"#)
    );
    assert!(!conversion.yaml.contains("match_re"));
    // a child of a muted route stays unmuted, as in Alertmanager
    let cfg = Config::from_yaml(&conversion.yaml, &converted).unwrap();
    let route = &cfg.route.as_ref().unwrap().value;
    let frontend = &route.routes[2];
    assert!(
        frontend.value.routes[0]
            .value
            .mute_time_intervals
            .as_ref()
            .unwrap()
            .is_empty()
    );
    // both interval sections arrive as time_intervals
    let names: Vec<&str> = cfg
        .time_intervals
        .iter()
        .map(|t| t.name.value.as_str())
        .collect();
    assert_eq!(names, ["business-hours", "offhours"]);
    let (code, stdout, _) = run_import(&fixture("alertmanager-exact.yml"));
    assert_eq!(code, Some(0));
    assert_eq!(stdout, conversion.yaml);
    if !have("amtool") {
        return;
    }
    assert_routes_agree(
        &fixture("alertmanager-exact.yml"),
        &converted,
        &[
            &["alertname=Anything"],
            &["severity=page"],
            &["severity=page", "service=payments"],
            &["severity=page", "service=payments-v2"],
            &["team=web", "env=production"],
            &["team=web", "env=staging"],
            &["team=frontend", "env=prod", "severity=info"],
            &[
                "team=frontend",
                "env=prod",
                "severity=info",
                "alertname=Watchdog",
            ],
            &["team=batch", "env=prod"],
            &["team=batch", "env=dev"],
        ],
    );
}

#[test]
fn the_prometheus_example_becomes_one_target_per_address_with_prometheus_labels() {
    let input = fixture("prometheus.yml");
    if have("promtool") {
        let out = Command::new("promtool")
            .args(["check", "config"])
            .arg(&input)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let conversion = import_file(&input).unwrap();
    assert_eq!(conversion.source, Source::Prometheus);
    // beside prometheus.yml, so rule_files resolve as Prometheus resolved them
    let beside = fixture("tocsin.yml");
    let cfg = Config::from_yaml(&conversion.yaml, &beside)
        .unwrap_or_else(|e| panic!("{e}\n{}", conversion.yaml));
    let rule_files = cfg
        .preflight(Some(&beside), &Default::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rule_files.len(), 2);
    assert_eq!(cfg.scrape.interval.value.to_string(), "15s");
    assert_eq!(cfg.evaluation.interval.value.to_string(), "30s");
    let targets = cfg.build_targets(&Default::default()).unwrap();
    let seen: Vec<(String, String, String)> = targets
        .iter()
        .map(|t| {
            let url = t.metrics.clone().unwrap();
            let labels = tocsin::ingest::metrics_base_labels(t, &url);
            (
                url.to_string(),
                labels.to_string(),
                format!("{}/{}", t.interval, t.timeout),
            )
        })
        .collect();
    let want = |url: &str, labels: &str, timing: &str| {
        (url.to_string(), labels.to_string(), timing.to_string())
    };
    assert_eq!(
        seen,
        [
            want(
                "http://localhost:9090/metrics",
                r#"{app="prometheus", instance="localhost:9090", job="prometheus"}"#,
                "15s/10s"
            ),
            want(
                "http://node1.example.org:9100/metrics",
                r#"{dc="fra", instance="node1.example.org:9100", job="node"}"#,
                "30s/10s"
            ),
            want(
                "http://node2.example.org:9100/metrics",
                r#"{dc="fra", instance="node2.example.org:9100", job="node"}"#,
                "30s/10s"
            ),
            want(
                "http://10.0.0.7:9100/metrics",
                r#"{dc="ber", instance="10.0.0.7:9100", job="node", rack="r12"}"#,
                "30s/10s"
            ),
            want(
                "http://127.0.0.1:9115/probe?module=http_2xx&target=https%3A%2F%2Fexample.org",
                r#"{instance="127.0.0.1:9115", job="blackbox"}"#,
                "15s/5s"
            ),
            // no port: Prometheus 2 adds the scheme's, as tocsin's instance does
            want(
                "https://api.example.org/internal/metrics",
                r#"{instance="api.example.org:443", job="payments-api"}"#,
                "15s/10s"
            ),
        ]
    );
    // `tocsin check` accepts it saved beside the rule files (secret paths are from the working directory)
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    for f in ["first_rules.yml", "node.rules.yml"] {
        std::fs::copy(fixture("rules").join(f), dir.path().join("rules").join(f)).unwrap();
    }
    let saved = dir.path().join("tocsin.yml");
    std::fs::write(&saved, &conversion.yaml).unwrap();
    let check = Command::new(BIN)
        .arg("check")
        .arg(&saved)
        .current_dir(project_dir())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let api = targets.iter().find(|t| t.job == "payments-api").unwrap();
    assert_eq!((api.sample_limit, api.label_limits.label_limit), (5000, 40));
    assert!(api.bearer_token.is_some());
    // external labels are kept (tocsin has them), file_sd and relabelling converted (the
    // discovering job is a target of its own); the alertmanagers are reported
    let reported: Vec<(&str, Effect)> = conversion
        .findings
        .iter()
        .filter(|f| f.effect != Effect::Note)
        .map(|f| (f.field.as_str(), f.effect))
        .collect();
    assert_eq!(reported, [("alerting.alertmanagers", Effect::Dropped)]);
    let jobs = cfg
        .build_sd_jobs(&Default::default(), &fixture(""))
        .unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].template.name, "discovered");
    assert_eq!(jobs[0].sources[0].1.mechanism(), "file");
}

/// `file_sd_configs`, `http_sd_configs`, `dns_sd_configs` and `relabel_configs` in the shapes
/// of Prometheus's documentation become tocsin's, relabelling the same targets the same way;
/// what tocsin lacks (hashmod, MX records, other mechanisms) is reported.
#[test]
fn prometheus_discovery_and_relabelling_are_converted() {
    let text = r#"scrape_configs:
  - job_name: nodes
    metrics_path: /probe
    params: {module: [http_2xx]}
    file_sd_configs:
      - files: ['sd/*.json', 'sd/extra.yml']
        refresh_interval: 2m
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: 127.0.0.1:9115
      - source_labels: [env]
        regex: dev
        action: drop
      - action: labelmap
        regex: __meta_(.+)_name
  - job_name: web
    http_sd_configs:
      - url: http://cmdb.example.org/sd
        refresh_interval: 30s
        authorization: {credentials_file: /run/secrets/sd}
        basic_auth: {username: u, password: pw}
  - job_name: dns
    dns_sd_configs:
      - names: [_prometheus._tcp.example.org]
      - names: [node.example.org]
        type: A
        port: 9100
      - names: [example.org]
        type: MX
    relabel_configs:
      - source_labels: [__address__]
        modulus: 4
        target_label: __tmp_hash
        action: hashmod
  - job_name: k8s
    kubernetes_sd_configs: [{role: pod}]
"#;
    let c = import_str(text, Path::new("prometheus.yml")).unwrap();
    let got: Vec<(&str, Effect)> = c
        .findings
        .iter()
        .filter(|f| f.effect != Effect::Note)
        .map(|f| (f.field.as_str(), f.effect))
        .collect();
    assert_eq!(
        got,
        [
            (
                "scrape_configs[1].http_sd_configs[0].basic_auth.password",
                Effect::Changed
            ),
            ("scrape_configs[2].dns_sd_configs[2].type", Effect::Dropped),
            (
                "scrape_configs[2].relabel_configs[0].modulus",
                Effect::Dropped
            ),
            ("scrape_configs[2].relabel_configs[0]", Effect::Dropped),
            ("scrape_configs[3].kubernetes_sd_configs", Effect::Dropped),
        ],
        "{}",
        c.yaml
    );
    assert!(!c.yaml.contains("pw"), "{}", c.yaml);
    let cfg = Config::from_yaml(&c.yaml, Path::new("/etc/tocsin/tocsin.yml")).unwrap_or_else(|e| {
        panic!(
            "{e}
{}",
            c.yaml
        )
    });
    let env = [("TOCSIN_WEB_SD_PASSWORD".to_string(), "pw".to_string())].into();
    let dir = tempfile::tempdir().unwrap();
    let cfg_text = c.yaml.replace(
        "/run/secrets/sd",
        &dir.path().join("t").display().to_string(),
    );
    std::fs::write(
        dir.path().join("t"),
        "token
",
    )
    .unwrap();
    let cfg2 = Config::from_yaml(&cfg_text, Path::new("/etc/tocsin/tocsin.yml")).unwrap();
    let jobs = cfg2.build_sd_jobs(&env, Path::new("/etc/tocsin")).unwrap();
    let mechanisms: Vec<(String, Vec<&str>)> = jobs
        .iter()
        .map(|j| {
            (
                j.template.name.clone(),
                j.sources.iter().map(|s| s.1.mechanism()).collect(),
            )
        })
        .collect();
    assert_eq!(
        mechanisms,
        [
            ("nodes".to_string(), vec!["file"]),
            ("web".into(), vec!["http"]),
            ("dns".into(), vec!["dns", "dns"]),
        ]
    );
    drop(cfg);
    // the blackbox pattern relabels as in Prometheus: the address becomes the target parameter
    // and the instance, the exporter the address; a dev target is dropped
    let groups = tocsin::ingest::sd::parse_groups(
        br#"[{"targets": ["example.org:443"], "labels": {"__meta_dc_name": "fra"}},
             {"targets": ["dev.example.org:443"], "labels": {"env": "dev"}}]"#,
        true,
        "sd/a.json",
    )
    .unwrap();
    let targets = tocsin::ingest::sd::targets_of(&jobs[0], &groups);
    assert_eq!(targets.len(), 1);
    let t = &targets[0];
    assert_eq!(
        t.metrics.as_ref().unwrap().as_str(),
        "http://127.0.0.1:9115/probe?module=http_2xx&target=example.org%3A443"
    );
    assert_eq!(t.instance.as_deref(), Some("example.org:443"));
    assert_eq!(t.labels.get("dc").map(String::as_str), Some("fra"));
}

#[test]
fn prometheus_defaults_are_written_out_where_tocsin_has_others() {
    let text = "scrape_configs:\n  - job_name: fast\n    scrape_interval: 5s\n    static_configs: [{targets: ['127.0.0.1:9100']}]\n";
    let c = import_str(text, Path::new("prometheus.yml")).unwrap();
    assert!(c.exact(), "{:?}", c.findings);
    let cfg = Config::from_yaml(&c.yaml, Path::new("tocsin.yml")).unwrap();
    // Prometheus's 1m, not tocsin's 15s; a job faster than the 10s timeout gets its interval
    assert_eq!(cfg.scrape.interval.value.to_string(), "1m");
    assert_eq!(cfg.evaluation.interval.value.to_string(), "1m");
    let t = &cfg.build_targets(&Default::default()).unwrap()[0];
    assert_eq!(
        (t.interval.to_string(), t.timeout.to_string()),
        ("5s".into(), "5s".into())
    );
    // an explicit global timeout above a job's interval is capped by Prometheus, so by the output too
    let text = "global: {scrape_timeout: 20s, scrape_interval: 30s}\nscrape_configs:\n  - job_name: fast\n    scrape_interval: 5s\n    static_configs: [{targets: ['127.0.0.1:9100']}]\n";
    let c = import_str(text, Path::new("prometheus.yml")).unwrap();
    let cfg = Config::from_yaml(&c.yaml, Path::new("tocsin.yml"))
        .unwrap_or_else(|e| panic!("{e}\n{}", c.yaml));
    let t = &cfg.build_targets(&Default::default()).unwrap()[0];
    assert_eq!(t.timeout.to_string(), "5s");
}

#[test]
fn unsupported_fields_are_reported_with_their_line_and_column_and_exit_1() {
    let input = fixture("alertmanager-unsupported.yml");
    let (code, stdout, stderr) = run_import(&input);
    assert_eq!(code, Some(1), "{stderr}");
    let lines: Vec<String> = stderr
        .lines()
        .map(|l| l.replacen(&input.display().to_string(), "F", 1))
        .collect();
    assert_eq!(
        lines,
        [
            "F:2:3: global.slack_api_url: note: only used by integrations tocsin does not have",
            "F:5:3: route.groupby: dropped: unknown field",
            "F:11:5: receivers[0].slack_configs: dropped: tocsin has no slack integration: a webhook receiver to a bridge can replace it",
            "F:17:11: receivers[1].webhook_configs[0].http_config.basic_auth: dropped: tocsin's webhook sends no Authorization header; sign requests with secret_env instead, or keep a token in the URL with url_file",
            "F:20:9: receivers[1].webhook_configs[1]: dropped: a tocsin receiver has one webhook integration; split the receiver and route to each with continue",
        ]
    );
    // the output is still printed, says it is not exact, and validates
    assert!(stdout.contains("# not exact: 0 field(s) changed and 4 dropped"));
    Config::from_yaml(&stdout, Path::new("tocsin.yml")).unwrap();
    // the password in the dropped basic_auth is never printed
    assert!(!stdout.contains("not-a-real-password") && !stderr.contains("not-a-real-password"));
}

#[test]
fn hostile_or_foreign_inputs_fail_with_a_reason_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "deep.yml",
            format!("route: {}{}", "[".repeat(10_000), "]".repeat(10_000)),
            "deep.yml:",
        ),
        (
            "big.yml",
            format!(
                "route: {{receiver: a}}\n#{}\n",
                "x".repeat(MAX_INPUT_BYTES as usize)
            ),
            "larger than the limit",
        ),
        (
            "laughs.yml",
            {
                let mut s = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
                for i in 1..12 {
                    s.push_str(&format!(
                        "a{i}: &a{i} [{}]\n",
                        vec![
                            format!(
                                "*a{}",
                                if i == 1 {
                                    String::new()
                                } else {
                                    (i - 1).to_string()
                                }
                            );
                            10
                        ]
                        .join(", ")
                    ));
                }
                s.push_str("route: {receiver: x}\n");
                s
            },
            "laughs.yml",
        ),
        (
            "rules.yml",
            "groups: []\n".into(),
            "neither an Alertmanager configuration",
        ),
        ("broken.yml", "route: [\n".into(), "broken.yml:"),
    ];
    for (name, text, want) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let (code, stdout, stderr) = run_import(&path);
        assert_eq!(code, Some(2), "{name}: {stderr}");
        assert!(stdout.is_empty(), "{name}");
        assert!(stderr.contains(want), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
}

#[test]
fn an_output_tocsin_would_refuse_is_never_exact() {
    // Alertmanager refuses these too, but the conversion must not claim they are fine
    let text = "route: {receiver: a}\nreceivers:\n  - name: a\n    email_configs: [{to: x@example.org, from: y@example.org, smarthost: mail.example.org}]\n";
    let c = import_str(text, Path::new("alertmanager.yml")).unwrap();
    assert!(!c.exact());
    let f = c.findings.last().unwrap();
    assert_eq!((f.line, f.col, f.effect), (1, 1, Effect::Changed));
    assert!(f.message.contains("expected host:port"), "{}", f.message);
}

/// An input, a line its output holds, and its findings as field and effect.
type Case = (
    &'static str,
    &'static str,
    &'static [(&'static str, Effect)],
);

#[test]
fn each_field_is_converted_or_reported_as_its_effect() {
    // (input, what the output holds, the findings as field: effect)
    let cases: &[Case] = &[
        // a webhook's URL file is read from alertmanager.yml's directory by Alertmanager
        (
            "route: {receiver: a}\nreceivers: [{name: a, webhook_configs: [{url_file: hook-url, timeout: 5s}]}]\n",
            "url_file: conf/hook-url",
            &[("receivers[0].webhook_configs[0].url_file", Effect::Note)],
        ),
        (
            "route: {receiver: a}\nreceivers: [{name: a, webhook_configs: [{url: 'http://x/', http_config: {bearer_token: tok3n}}]}]\n",
            "url: 'http://x/'",
            &[(
                "receivers[0].webhook_configs[0].http_config.bearer_token",
                Effect::Dropped,
            )],
        ),
        (
            "route: {receiver: a}\nreceivers: [{name: a, email_configs: [{to: a@x.org, from: b@x.org, smarthost: 'x.org:25', require_tls: false, headers: {Subject: hi}}]}]\n",
            "smarthost: 'x.org:25'",
            &[
                ("receivers[0].email_configs[0].require_tls", Effect::Changed),
                (
                    "receivers[0].email_configs[0].headers.Subject",
                    Effect::Dropped,
                ),
            ],
        ),
        (
            "route: {receiver: a, group_by: ['...'], routes: [{receiver: a, match: {'a b': 'x\"y'}}]}\nreceivers: [{name: a}]\n",
            r#"matchers: ['"a b"="x\"y"']"#,
            &[],
        ),
        (
            "global: {resolve_timeout: 1h}\nroute: {receiver: a}\nreceivers: [{name: a}]\n",
            "receiver: a",
            &[("global.resolve_timeout", Effect::Changed)],
        ),
        (
            "route: {receiver: a}\nreceivers: [{name: a}]\ntime_intervals: [{name: t, time_intervals: [{weekdays: [monday], location: Local}]}]\n",
            "weekdays: [monday]",
            &[(
                "time_intervals[0].time_intervals[0].location",
                Effect::Changed,
            )],
        ),
        (
            "scrape_configs: [{job_name: j, authorization: {credentials: s3cret}, honor_labels: true, static_configs: [{targets: ['h:1'], labels: {instance: other}}]}]\n",
            "bearer_token_env: TOCSIN_J_BEARER_TOKEN",
            &[
                (
                    "scrape_configs[0].authorization.credentials",
                    Effect::Changed,
                ),
                ("scrape_configs[0].honor_labels", Effect::Changed),
            ],
        ),
        (
            "scrape_configs: [{job_name: j, static_configs: [{targets: ['h:1'], labels: {__metrics_path__: /m, __scheme__: https, __meta_x: y}}]}]\n",
            "metrics: 'https://h:1/m'",
            &[(
                "scrape_configs[0].static_configs[0].labels.__meta_x",
                Effect::Note,
            )],
        ),
        (
            "global: {scrape_interval: 10s, body_size_limit: 1MB, sample_limit: 0}\nscrape_configs: [{job_name: j, basic_auth: {username: u}, static_configs: [{targets: ['h:1']}]}]\n",
            "body_size_limit: 1048576",
            &[("scrape_configs[0].basic_auth", Effect::Dropped)],
        ),
    ];
    for (input, holds, want) in cases {
        let c = import_str(input, Path::new("conf/in.yml")).unwrap();
        assert!(c.yaml.contains(holds), "{input}\n---\n{}", c.yaml);
        let got: Vec<(&str, Effect)> = c
            .findings
            .iter()
            .map(|f| (f.field.as_str(), f.effect))
            .collect();
        assert_eq!(&got, want, "{input}");
        assert!(
            !c.yaml.contains("s3cret") && !c.yaml.contains("tok3n"),
            "{}",
            c.yaml
        );
        Config::from_yaml(&c.yaml, Path::new("tocsin.yml"))
            .unwrap_or_else(|e| panic!("{input}: {e}\n{}", c.yaml));
    }
}
