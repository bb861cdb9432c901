//! `tocsin check`: validate a configuration, rule files and templates.

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::Outcome;
use tocsin::config::{Config, DEFAULT_CONFIG_FILE};

pub(crate) fn check(paths: Vec<PathBuf>) -> Result<Outcome> {
    use tocsin::rules::{RuleErrors, expand_globs, load_files};
    let paths = if paths.is_empty() {
        vec![PathBuf::from(DEFAULT_CONFIG_FILE)]
    } else {
        paths
    };
    let mut failed = false;
    let mut rule_files: Vec<PathBuf> = Vec::new();
    let mut default_interval = 15_000;
    for path in paths {
        if path.is_dir() {
            let found = tocsin::rules::rule_files_in(&path)
                .with_context(|| format!("cannot read directory {}", path.display()))?;
            rule_files.extend(found);
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let is_rules = text.lines().any(|l| l.starts_with("groups:"));
        if is_rules {
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
                default_interval = cfg.evaluation.interval.as_millis();
                let base = path.parent().map(PathBuf::from).unwrap_or_default();
                match expand_globs(&cfg.rule_files, &base) {
                    Ok(files) => rule_files.extend(files),
                    Err(e) => {
                        eprintln!("{e}");
                        failed = true;
                    }
                }
                println!("{}: ok ({} targets)", path.display(), cfg.targets.len());
            }
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    if !rule_files.is_empty() {
        let scripts = tocsin::promql::rhai::ScriptEngine::new();
        match load_files(&rule_files, default_interval, &scripts) {
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
