//! `tocsin check`: validate a configuration, rule files and templates. A configuration gets the
//! daemon's own checks ([`Config::preflight`]: secrets in this process's environment, secret
//! files, rule file patterns), so what passes here starts with `tocsin run`.

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::Outcome;
use tocsin::config::{Config, DEFAULT_CONFIG_FILE};

pub(crate) fn check(paths: Vec<PathBuf>) -> Result<Outcome> {
    use tocsin::rules::{RuleErrors, load_files};
    let paths = if paths.is_empty() {
        vec![PathBuf::from(DEFAULT_CONFIG_FILE)]
    } else {
        paths
    };
    let env: std::collections::HashMap<String, String> = std::env::vars().collect();
    let mut failed = false;
    let mut rule_files: Vec<PathBuf> = Vec::new();
    let mut default_interval = 15_000;
    // the datasources of the configurations given: a group's `datasource:` must name one (with
    // rule files alone, the names cannot be checked)
    let mut datasources: Option<Vec<String>> = None;
    // the configuration's store, when it exists: rules' label names are compared with its series'
    let mut store_path: Option<PathBuf> = None;
    for path in paths {
        if path.is_dir() {
            let found = tocsin::rules::rule_files_in(&path)
                .with_context(|| format!("cannot read directory {}", path.display()))?;
            rule_files.extend(found);
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let top = |key: &str| text.lines().any(|l| l.starts_with(key));
        if top("tests:") && top("rule_files:") {
            eprintln!(
                "{}: a rule unit-test file (rule_files and tests), not checked here: run it with `tocsin test {}`",
                path.display(),
                path.display()
            );
            failed = true;
            continue;
        }
        if top("groups:") {
            rule_files.push(path);
            continue;
        }
        match Config::from_yaml(&text, &path) {
            Ok(cfg) => {
                match cfg.notify_plan() {
                    Some(plan) => println!(
                        "{}: notifications: {} receivers, {} inhibition rules",
                        path.display(),
                        plan.receivers.len(),
                        plan.routing.inhibitor.len()
                    ),
                    None => println!(
                        "{}: warning: no route: alerts are tracked but no notification is sent",
                        path.display()
                    ),
                }
                default_interval = cfg.evaluation.interval.value.as_millis();
                store_path = Some(cfg.storage.path.clone());
                datasources
                    .get_or_insert_with(Vec::new)
                    .extend(cfg.datasource_names());
                // the daemon's own start-up check, in the environment the daemon will have
                match cfg.preflight(Some(&path), &env) {
                    Ok(files) => {
                        rule_files.extend(files);
                        println!("{}: ok ({} targets)", path.display(), cfg.targets.len());
                    }
                    Err(e) => {
                        eprintln!("{e}");
                        failed = true;
                    }
                }
            }
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    if !rule_files.is_empty() {
        let scripts = tocsin::promql::rhai::ScriptEngine::new();
        let loaded =
            load_files(&rule_files, default_interval, &scripts).and_then(
                |set| match &datasources {
                    Some(known) => set.check_datasources(known).map(|()| set),
                    None => Ok(set),
                },
            );
        match loaded {
            Ok(set) => {
                for f in &set.files {
                    let n: usize = set
                        .groups
                        .iter()
                        .filter(|g| &g.file == f)
                        .map(|g| g.rules.len())
                        .sum();
                    println!("{}: ok ({n} rules)", f.display());
                }
                if let Some(store) = store_path.filter(|p| p.is_file()) {
                    warn_unknown_labels(&set, &store);
                }
            }
            Err(RuleErrors(errors)) => {
                for e in errors {
                    eprintln!("{e}");
                }
                failed = true;
            }
        }
    }
    Ok(if failed {
        Outcome::CheckFailed
    } else {
        Outcome::Ok
    })
}

/// Warns (on stdout; the check still passes) about each label name a rule uses that no series
/// of the store at `path` carries, with the nearest name. The store is opened read-only: safe
/// beside a running daemon. A store that cannot be opened is reported and skipped.
fn warn_unknown_labels(rules: &tocsin::rules::RuleSet, path: &std::path::Path) {
    let names = tocsin::store::Store::open_read_only(path).and_then(|s| s.label_names());
    match names {
        Ok(names) => {
            for mut w in tocsin::rules::labelcheck::unknown_labels(rules, &names) {
                // the file was read a moment ago to load it; reading it again to point at the
                // label costs nothing measurable
                if let Ok(text) = std::fs::read_to_string(&w.file) {
                    w.locate(&text);
                }
                println!("{w}");
            }
        }
        Err(e) => println!(
            "{}: warning: cannot read the store's label names: {e}",
            path.display()
        ),
    }
}
