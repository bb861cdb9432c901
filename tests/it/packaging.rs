//! What ships beside the code: `--version`, the committed configuration reference, the example
//! configurations under `fixtures/examples/`.

use std::process::Command;

use crate::common::{BIN, project_dir};

#[test]
fn version_names_the_release_and_the_commit() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let want = regex::Regex::new(r"^tocsin \d+\.\d+\.\d+ \(([0-9a-f]{12}|unknown)\)\n$").unwrap();
    assert!(want.is_match(&text), "unexpected --version output {text:?}");
    assert!(text.starts_with(&format!("tocsin {} (", env!("CARGO_PKG_VERSION"))));
    assert!(text.contains(&format!("({})", tocsin::GIT_HASH)));
}

#[test]
fn committed_config_reference_matches_the_doc_comments() {
    let out = Command::new(BIN).arg("config-reference").output().unwrap();
    assert!(
        out.status.success(),
        "tocsin config-reference failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = String::from_utf8(out.stdout).unwrap();
    let path = project_dir().join(tocsin::config::reference::COMMITTED_PATH);
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if generated != committed {
        let (g, c): (Vec<&str>, Vec<&str>) =
            (generated.lines().collect(), committed.lines().collect());
        let n = (0..g.len().max(c.len()))
            .find(|&i| g.get(i) != c.get(i))
            .unwrap_or(g.len());
        let (want, got) = (
            g.get(n).copied().unwrap_or("<end of file>"),
            c.get(n).copied().unwrap_or("<end of file>"),
        );
        let n = n + 1;
        panic!(
            "{} is out of date with the config types' doc comments (first difference at line {n}:\n  \
             generated: {want}\n  committed: {got})\nregenerate it with: {}",
            tocsin::config::reference::COMMITTED_PATH,
            tocsin::config::reference::REGENERATE
        );
    }
}

/// The seed systems with an example under `fixtures/examples/<system>/tocsin.yml`.
const EXAMPLES: &[&str] = &[
    "scaidns",
    "scaisend",
    "pdns-connector",
    "cdn",
    "status-server",
];

#[test]
fn every_example_config_and_its_rules_pass_check() {
    let root = project_dir();
    let dir = root.join("fixtures/examples");
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("tocsin.yml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    let mut want: Vec<String> = EXAMPLES.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(found, want, "an example per seed system, and no other");
    for system in EXAMPLES {
        let config = format!("fixtures/examples/{system}/tocsin.yml");
        // as the examples' comments say: run from the repository root, with the secrets the
        // daemon needs set (check reads the environment the daemon will have)
        let out = Command::new(BIN)
            .args(["check", &config])
            .current_dir(&root)
            .env("SMTP_PASSWORD", "x")
            .env("WEBHOOK_SECRET", "x")
            .env("TOCSIN_API_TOKEN", "x")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "tocsin check {config} failed:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // the shipped rule file was found and loaded, and notifications are configured
        assert!(
            stdout.contains(&format!("rules/{system}.yml: ok (")),
            "{config}: rules/{system}.yml not checked:\n{stdout}"
        );
        assert!(
            stdout.contains(&format!("{config}: notifications: ")),
            "{config}: no route:\n{stdout}"
        );
    }
}

/// The topology examples of README's "When one machine is not enough" and the receiver recipes,
/// each a `tocsin.yml` at `fixtures/examples/<name>`, with the secrets its comment names.
const TOPOLOGIES: &[(&str, &[&str])] = &[
    ("ha-pair-alertmanager.yml", &["AM_TOKEN"]),
    // the webhook recipes for chat and paging services (README: "Receivers")
    ("recipes/slack.yml", &["SLACK_WEBHOOK_URL"]),
    ("recipes/teams.yml", &["TEAMS_WEBHOOK_URL"]),
    ("recipes/discord.yml", &["DISCORD_WEBHOOK_URL"]),
    ("recipes/mattermost.yml", &["MATTERMOST_WEBHOOK_URL"]),
    ("recipes/ntfy.yml", &["NTFY_URL"]),
    ("recipes/pagerduty.yml", &["PAGERDUTY_ROUTING_KEY"]),
];

#[test]
fn every_topology_example_passes_check() {
    let root = project_dir();
    for (file, secrets) in TOPOLOGIES {
        let config = format!("fixtures/examples/{file}");
        let out = Command::new(BIN)
            .args(["check", &config])
            .current_dir(&root)
            .envs(secrets.iter().map(|s| {
                let value = if s.ends_with("_URL") {
                    "https://hooks.example/x/KEY"
                } else {
                    "x"
                };
                (s, value)
            }))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "tocsin check {config} failed:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!("{config}: notifications: ")),
            "{config}: no route:\n{stdout}"
        );
    }
}
