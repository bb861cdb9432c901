//! `tocsin test`: rule unit tests in promtool's format.

mod watch;

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::Outcome;

pub(crate) fn parse_compat(s: &str) -> Result<tocsin::promql::Compat, String> {
    match s {
        "2" => Ok(tocsin::promql::Compat::Prometheus2),
        "3" => Ok(tocsin::promql::Compat::Prometheus3),
        other => Err(format!("expected 2 or 3, got {other:?}")),
    }
}

/// Each directory given becomes its rule test files (`*_test.yml`, `*_test.yaml`, not hidden),
/// in name order; files are kept as given. A directory without test files is an error.
fn expand_dirs(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if !p.is_dir() {
            out.push(p.clone());
            continue;
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir(p)
            .with_context(|| format!("cannot read directory {}", p.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|f| {
                let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
                !name.starts_with('.')
                    && (name.ends_with("_test.yml") || name.ends_with("_test.yaml"))
                    && f.is_file()
            })
            .collect();
        if found.is_empty() {
            bail!(
                "{}: no rule test files (*_test.yml) in this directory",
                p.display()
            );
        }
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

pub(crate) fn test(
    files: &[PathBuf],
    run: Option<&str>,
    junit: Option<PathBuf>,
    compat: tocsin::promql::Compat,
    watch: bool,
) -> Result<Outcome> {
    let run = run
        .map(regex::Regex::new)
        .transpose()
        .context("invalid --run regex")?;
    if files.is_empty() {
        bail!("no test files given");
    }
    if watch {
        return watch::watch(files, run.as_ref(), junit.as_deref(), compat);
    }
    let files = expand_dirs(files)?;
    run_and_print(&files, run.as_ref(), junit.as_deref(), compat)
}

/// Runs `files` and prints their reports in order (promtool's layout); writes the JUnit report
/// when asked.
fn run_and_print(
    files: &[PathBuf],
    run: Option<&regex::Regex>,
    junit: Option<&Path>,
    compat: tocsin::promql::Compat,
) -> Result<Outcome> {
    use tocsin::rules::unittest::{junit_xml, run_files};
    let mut failed = false;
    let mut reports = Vec::new();
    // files (and their groups) run in parallel; the output is printed afterwards, in order
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let results = run_files(files, run, compat, threads);
    let mut out = std::io::stdout().lock();
    for (f, result) in files.iter().zip(results) {
        let _ = writeln!(out, "Unit Testing:  {}", f.display());
        match result {
            Ok(r) => {
                for g in &r.groups {
                    for msg in &g.skipped {
                        let _ = writeln!(out, "  skipped in {}: {msg}", g.name);
                    }
                }
                if r.passed() {
                    let _ = writeln!(out, "  SUCCESS");
                } else {
                    failed = true;
                    let _ = writeln!(out, "  FAILED:");
                    for g in r.groups.iter().filter(|g| !g.failures.is_empty()) {
                        for msg in &g.failures {
                            let _ = writeln!(out, "    in {}: {msg}", g.name);
                        }
                    }
                }
                reports.push(Ok(r));
            }
            Err(e) => {
                failed = true;
                let _ = writeln!(out, "  FAILED:\n{e}");
                reports.push(Err((f.clone(), e.to_string())));
            }
        }
        let _ = writeln!(out);
    }
    let _ = out.flush();
    if let Some(path) = junit {
        std::fs::write(path, junit_xml(&reports))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(if failed {
        Outcome::CheckFailed
    } else {
        Outcome::Ok
    })
}
