//! `file_sd`: target groups from JSON or YAML files, read on a blocking thread, bounded by
//! [`super::MAX_SD_BYTES`] per file (regular files only: a FIFO or device is refused before it is
//! opened), watched through their directories (atomic saves replace the inode) and re-read
//! every `refresh_interval`.
//!
//! A read after a change is repeated until two agree ([`settled`]).
//!
//! Each file's groups get `__meta_filepath`. A file that cannot be read or parsed fails the whole
//! refresh, so the source keeps its last good list; a pattern that matches no file gives no
//! targets (Prometheus's behaviour: files may come later).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::RecursiveMode;
use tokio::sync::mpsc;

use crate::fswatch::{Batch, Debouncer};

use super::{Group, MAX_SD_BYTES, SdError};

/// How long a burst of file events waits before the re-read: an editor's save or a writer in
/// parts is seen as one change.
pub const SETTLE: Duration = Duration::from_millis(300);

/// The most reads [`settled`] makes of a changed file set before it takes the last one.
pub const SETTLE_READS: usize = 5;

/// Reads with `read` until two reads `settle` apart agree (the same groups, or the same error),
/// at most `max_reads` times, and returns the last: a file written in parts is not taken while
/// it is cut at a group boundary (valid, and shorter). The waits are tokio sleeps (paused time
/// in tests).
pub async fn settled<F, Fut>(
    mut read: F,
    settle: Duration,
    max_reads: usize,
) -> Result<Vec<Group>, SdError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<Group>, SdError>>,
{
    let same = |a: &Result<Vec<Group>, SdError>, b: &Result<Vec<Group>, SdError>| match (a, b) {
        (Ok(a), Ok(b)) => a == b,
        (Err(a), Err(b)) => a.to_string() == b.to_string(),
        _ => false,
    };
    let mut last = read().await;
    for _ in 1..max_reads.max(1) {
        tokio::time::sleep(settle).await;
        let next = read().await;
        if same(&last, &next) {
            return next;
        }
        last = next;
    }
    last
}

/// Reads every file the patterns match now (blocking).
pub fn refresh(patterns: &[PathBuf]) -> Result<Vec<Group>, SdError> {
    let mut out = Vec::new();
    let mut count = 0usize;
    for path in expand(patterns)? {
        let shown = path.display().to_string();
        let io = |message: String| SdError::Io {
            at: shown.clone(),
            message,
        };
        let meta = std::fs::metadata(&path).map_err(|e| io(e.to_string()))?;
        if !meta.is_file() {
            return Err(io("not a regular file".into()));
        }
        if meta.len() > MAX_SD_BYTES {
            return Err(SdError::Limit {
                at: shown,
                message: format!("larger than the limit of {MAX_SD_BYTES} bytes"),
            });
        }
        let mut bytes = Vec::new();
        std::fs::File::open(&path)
            .and_then(|f| f.take(MAX_SD_BYTES + 1).read_to_end(&mut bytes))
            .map_err(|e| io(e.to_string()))?;
        let json = path.extension().is_some_and(|e| e == "json");
        let groups = super::parse_groups(&bytes, json, &shown)?;
        count += groups.iter().map(|g| g.targets.len()).sum::<usize>();
        if count > super::MAX_SD_TARGETS {
            return Err(SdError::Limit {
                at: shown,
                message: format!(
                    "the files give more than the limit of {} targets",
                    super::MAX_SD_TARGETS
                ),
            });
        }
        out.extend(groups.into_iter().map(|mut g| {
            g.labels.insert("__meta_filepath".into(), shown.clone());
            g
        }));
    }
    Ok(out)
}

/// The files the patterns match, sorted (wildcards in the file name only).
fn expand(patterns: &[PathBuf]) -> Result<Vec<PathBuf>, SdError> {
    let mut out = Vec::new();
    for p in patterns {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !name.contains(['*', '?', '[']) {
            if p.exists() {
                out.push(p.clone());
            }
            continue;
        }
        let dir = p.parent().unwrap_or(Path::new("."));
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|f| {
                f.file_name()
                    .is_some_and(|n| crate::rules::load::glob_match(&name, &n.to_string_lossy()))
                    && f.is_file()
            })
            .collect();
        found.sort();
        out.extend(found);
    }
    out.dedup();
    Ok(out)
}

/// Watches the directories of `patterns` (not recursively) and sends on `wake` at each debounced
/// batch of events (dropped while one is pending); `None` when no directory can be watched (the
/// periodic refresh still runs). Stops when dropped.
pub fn watch(patterns: &[PathBuf], wake: mpsc::Sender<()>) -> Option<Debouncer> {
    // any event but a read, a rescan (lost events) or a watcher error re-reads the files
    let mut debouncer = Debouncer::new(crate::daemon::reload::DEBOUNCE, move |batch: Batch| {
        if batch.iter().any(|e| e.as_ref().map_or(true, |e| !e.kind.is_access())) {
            let _ = wake.try_send(());
        }
    })
    .map_err(|e| tracing::warn!(error = %e, "cannot watch file_sd files; they are re-read every refresh_interval"))
    .ok()?;
    let dirs: std::collections::BTreeSet<PathBuf> = patterns
        .iter()
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect();
    let mut watching = 0;
    for d in dirs {
        match debouncer.watch(&d, RecursiveMode::NonRecursive) {
            Ok(()) => watching += 1,
            Err(e) => {
                tracing::warn!(dir = %d.display(), error = %e, "cannot watch a file_sd directory; it is re-read every refresh_interval")
            }
        }
    }
    (watching > 0).then_some(debouncer)
}
