//! `tocsin test --watch`: runs the tests once, then reruns the affected test files whenever a
//! file changes: a test file that changed reruns itself, a rule file (or a test's `config`)
//! reruns every test file that reads it (`unittest::test_inputs`, `unittest::affected_tests`);
//! a new test file in a watched directory runs. Until Ctrl-C.
//!
//! The watcher is the rule loader's: notify with `fswatch`, directories watched
//! non-recursively (so an editor's atomic save, a write to a new file renamed over the old one,
//! is seen), events coalesced for [`DEBOUNCE`]. Bounded: changed paths wait in one set of at
//! most [`MAX_PENDING`] (more means "rerun everything"), the waker is a channel of one, and at
//! most [`MAX_WATCHED_DIRS`] directories are watched. Ctrl-C (SIGINT) ends the watch after the
//! run in progress; the exit code is the last run's (0 all passed, 1 a test failed).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use anyhow::{Context, Result, bail};
use notify::RecursiveMode;

use tocsin::fswatch::{Batch, Debouncer};
use tocsin::rules::unittest::{affected_tests, test_inputs};

use super::{Outcome, expand_dirs, run_and_print};

/// Events closer than this are one change (the daemon's rule watcher uses the same).
const DEBOUNCE: std::time::Duration = tocsin::daemon::reload::DEBOUNCE;

/// The most changed paths kept between two runs; beyond it every test file reruns.
const MAX_PENDING: usize = 4096;

/// The most directories watched at once.
const MAX_WATCHED_DIRS: usize = 1024;

/// What the watcher's thread and the Ctrl-C thread hand the loop.
#[derive(Default)]
struct Pending {
    paths: BTreeSet<PathBuf>,
    /// more than [`MAX_PENDING`] paths changed, or the watcher reported an error
    everything: bool,
}

pub(super) fn watch(
    given: &[PathBuf],
    run: Option<&regex::Regex>,
    junit: Option<&Path>,
    compat: tocsin::promql::Compat,
) -> Result<Outcome> {
    let absolute = |p: &PathBuf| {
        std::path::absolute(p)
            .map(|a| lexical(&a))
            .with_context(|| format!("cannot resolve {}", p.display()))
    };
    let given: Vec<PathBuf> = given.iter().map(absolute).collect::<Result<_>>()?;
    let mut tests = expand_dirs(&given)?;

    let pending = Arc::new(Mutex::new(Pending::default()));
    let stop = Arc::new(AtomicBool::new(false));
    // a channel of one: a wake-up already queued covers every later change
    let (wake, woken) = mpsc::sync_channel::<()>(1);
    // before the first run, so a Ctrl-C during it ends the watch as cleanly as a later one
    spawn_ctrl_c(stop.clone(), wake.clone())?;
    let mut outcome = run_and_print(&tests, run, junit, compat)?;

    let mut debouncer = {
        let pending = pending.clone();
        let wake = wake.clone();
        Debouncer::new(DEBOUNCE, move |batch: Batch| {
            let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
            for event in batch {
                match event {
                    Ok(event) if !event.need_rescan() => {
                        for path in event.paths {
                            if p.paths.len() >= MAX_PENDING {
                                p.everything = true;
                                break;
                            }
                            p.paths.insert(path);
                        }
                    }
                    // an error or lost events: rerun everything
                    _ => p.everything = true,
                }
            }
            drop(p);
            let _ = wake.try_send(());
        })
        .context("cannot start the file watcher")?
    };

    let mut inputs: Vec<(PathBuf, Vec<PathBuf>)> = with_inputs(&tests);
    let mut watched: BTreeSet<PathBuf> = BTreeSet::new();
    rewatch(&mut debouncer, &mut watched, &given, &inputs)?;
    eprintln!(
        "watching {} test files and the rule files they load; Ctrl-C to stop",
        tests.len()
    );

    loop {
        if stop.load(Ordering::SeqCst) || woken.recv().is_err() || stop.load(Ordering::SeqCst) {
            break;
        }
        let Pending { paths, everything } =
            std::mem::take(&mut *pending.lock().unwrap_or_else(|e| e.into_inner()));
        // test files added to or removed from the directories given
        let now = match expand_dirs(&given) {
            Ok(now) => now,
            Err(e) => {
                eprintln!("error: {e:#}");
                continue;
            }
        };
        let added: BTreeSet<PathBuf> = now.iter().filter(|t| !tests.contains(t)).cloned().collect();
        tests = now;
        // what each test reads, before and after the change (a rule file renamed away still
        // affects the tests that read it)
        let before = std::mem::replace(&mut inputs, with_inputs(&tests));
        let mut both = inputs.clone();
        for (test, old) in before {
            if let Some((_, new)) = both.iter_mut().find(|(t, _)| *t == test) {
                new.extend(old);
            }
        }
        let rerun: Vec<PathBuf> = if everything {
            tests.clone()
        } else {
            let mut changed = paths;
            changed.extend(added);
            affected_tests(&both, &changed)
        };
        rewatch(&mut debouncer, &mut watched, &given, &inputs)?;
        if rerun.is_empty() {
            continue;
        }
        println!(
            "--- {}: rerunning {} of {} test files",
            if everything { "changes" } else { "change" },
            rerun.len(),
            tests.len()
        );
        outcome = run_and_print(&rerun, run, junit, compat)?;
    }
    eprintln!("stopped watching");
    Ok(outcome)
}

/// Each test file with the files it reads, `..` resolved (`rule_files: [../rules/a.yml]`), as
/// the watcher names them.
fn with_inputs(tests: &[PathBuf]) -> Vec<(PathBuf, Vec<PathBuf>)> {
    tests
        .iter()
        .map(|t| {
            (
                t.clone(),
                test_inputs(t).iter().map(|p| lexical(p)).collect(),
            )
        })
        .collect()
}

/// `path` with `.` and `..` components resolved without reading the file system.
fn lexical(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Watches the directories of the given paths, the test files and their inputs (each once,
/// non-recursively; a directory that does not exist yet is skipped and tried again after the
/// next change).
fn rewatch(
    debouncer: &mut Debouncer,
    watched: &mut BTreeSet<PathBuf>,
    given: &[PathBuf],
    inputs: &[(PathBuf, Vec<PathBuf>)],
) -> Result<()> {
    let mut dirs: BTreeSet<PathBuf> = given
        .iter()
        .filter_map(|p| {
            if p.is_dir() {
                Some(p.clone())
            } else {
                p.parent().map(Path::to_path_buf)
            }
        })
        .collect();
    for (test, files) in inputs {
        dirs.extend(
            std::iter::once(test)
                .chain(files)
                .filter_map(|f| f.parent().map(Path::to_path_buf)),
        );
    }
    for dir in dirs.difference(&watched.clone()) {
        if !dir.is_dir() {
            continue;
        }
        if watched.len() >= MAX_WATCHED_DIRS {
            bail!("more than {MAX_WATCHED_DIRS} directories to watch");
        }
        debouncer
            .watch(dir, RecursiveMode::NonRecursive)
            .with_context(|| format!("cannot watch {}", dir.display()))?;
        watched.insert(dir.clone());
    }
    Ok(())
}

/// Sets `stop` and wakes the loop on Ctrl-C (SIGINT). The handler is installed before this
/// returns, so an early Ctrl-C is not the default action (an abrupt exit).
fn spawn_ctrl_c(stop: Arc<AtomicBool>, wake: mpsc::SyncSender<()>) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("cannot start the signal handler")?;
    let mut sigint = rt
        .block_on(async {
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        })
        .context("cannot handle Ctrl-C")?;
    std::thread::spawn(move || {
        rt.block_on(sigint.recv());
        stop.store(true, Ordering::SeqCst);
        // the loop may be running tests: it sees `stop` at its next wake-up, this one or the
        // one already queued
        let _ = wake.try_send(());
    });
    Ok(())
}
