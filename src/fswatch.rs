//! A file watcher whose events arrive in batches: notify's platform watcher (inotify here) and
//! one thread that sleeps until an event comes, gathers the events that follow until `quiet`
//! passes without one (or [`MOST`] after the batch's first event, so a file written without pause
//! cannot hold back a change beside it), and hands the batch to a handler. Used by the rule
//! watcher ([`super::reload`]) and `tocsin test --watch`.
//!
//! Written here instead of taking notify-debouncer-full, whose thread wakes every quarter of its
//! timeout whether anything happened or not: at 300 ms, 13 wake-ups a second, measured at ~14%
//! of the daemon's CPU beside vmalert at 100 remote rules (`perf`, `benches/vmalert.py`). This
//! thread blocks while nothing changes. It also gives raw events (no merging of renames and no
//! file-id cache), which is all the watchers here read: paths and kinds.
//!
//! Invariants:
//! - bounded: at most [`QUEUED`] events wait between the platform watcher and the thread and at
//!   most [`MAX_BATCH`] are in a batch; beyond either, events are dropped and the batch ends with
//!   one rescan event (the flag the kernel's own queue overflow carries), so a handler that
//!   honours `need_rescan` loses nothing;
//! - the handler runs on the watcher's thread, one batch at a time, never after the
//!   [`Debouncer`] is dropped and its last batch is handed over; the thread ends by itself when
//!   the platform watcher (and with it the channel's sender) is gone, and is never joined, so
//!   a handler may drop the `Debouncer` it belongs to;
//! - the thread reads the monotonic clock only to bound a batch ([`MOST`]); no time leaves it.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use notify::event::Flag;
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};

/// The longest a batch gathers after its first event, however busy the directory.
pub const MOST: Duration = Duration::from_secs(2);

/// The most events waiting for the watcher's thread.
pub const QUEUED: usize = 4096;

/// The most events in one batch.
pub const MAX_BATCH: usize = 4096;

/// What a handler receives: the events (or the platform watcher's errors) in arrival order.
pub type Batch = Vec<notify::Result<Event>>;

/// A platform file watcher with a debouncing thread; stops watching when dropped.
pub struct Debouncer {
    watcher: RecommendedWatcher,
}

impl std::fmt::Debug for Debouncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Debouncer").finish_non_exhaustive()
    }
}

impl Debouncer {
    /// Starts the platform watcher and the thread that hands `handler` a batch once `quiet`
    /// passes without an event. Nothing is watched until [`Debouncer::watch`].
    pub fn new<F>(quiet: Duration, handler: F) -> notify::Result<Debouncer>
    where
        F: FnMut(Batch) + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel::<notify::Result<Event>>(QUEUED);
        let overflow = Arc::new(AtomicBool::new(false));
        let dropped = overflow.clone();
        let watcher = notify::recommended_watcher(move |event| forward(&tx, &dropped, event))?;
        std::thread::Builder::new()
            .name("tocsin-file-watch".into())
            .spawn(move || gather(&rx, &overflow, quiet, MAX_BATCH, handler))
            .map_err(notify::Error::io)?;
        Ok(Debouncer { watcher })
    }

    pub fn watch(&mut self, path: &Path, mode: RecursiveMode) -> notify::Result<()> {
        self.watcher.watch(path, mode)
    }

    pub fn unwatch(&mut self, path: &Path) -> notify::Result<()> {
        self.watcher.unwatch(path)
    }
}

/// What the platform watcher's thread does with an event: queues it without ever blocking; a
/// full queue is a lost event, which the next batch reports as a rescan.
fn forward(
    tx: &mpsc::SyncSender<notify::Result<Event>>,
    overflow: &AtomicBool,
    event: notify::Result<Event>,
) {
    if let Err(mpsc::TrySendError::Full(_)) = tx.try_send(event) {
        overflow.store(true, Ordering::Release);
    }
}

/// The watcher thread: one batch per burst of events, until the sender is gone.
fn gather<F: FnMut(Batch)>(
    rx: &mpsc::Receiver<notify::Result<Event>>,
    overflow: &AtomicBool,
    quiet: Duration,
    max_batch: usize,
    mut handler: F,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        let deadline = Instant::now() + MOST;
        let mut open = true;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match rx.recv_timeout(quiet.min(left)) {
                Ok(event) if batch.len() < max_batch => batch.push(event),
                Ok(_) => overflow.store(true, Ordering::Release),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        if overflow.swap(false, Ordering::AcqRel) {
            batch.push(Ok(Event::new(EventKind::Other).set_flag(Flag::Rescan)));
        }
        handler(batch);
        if !open {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    /// The bound on waiting for a batch: far above `quiet`, so only a lost batch fails.
    const WAIT: Duration = Duration::from_secs(20);

    fn paths(batch: &Batch) -> BTreeSet<PathBuf> {
        batch
            .iter()
            .filter_map(|e| e.as_ref().ok())
            .flat_map(|e| e.paths.iter().cloned())
            .collect()
    }

    #[test]
    fn a_burst_of_changes_is_one_batch_and_a_later_change_another() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = mpsc::channel();
        let mut d = Debouncer::new(Duration::from_millis(200), move |b| {
            let _ = tx.send(b);
        })
        .unwrap();
        d.watch(dir.path(), RecursiveMode::NonRecursive).unwrap();
        let names: Vec<PathBuf> = (0..3)
            .map(|i| dir.path().join(format!("{i}.yml")))
            .collect();
        for n in &names {
            std::fs::write(n, "x").unwrap();
        }
        let mut seen = BTreeSet::new();
        // the three writes, microseconds apart, come in one batch (a batch may end only after
        // 200 ms without an event); more batches would each need such a pause
        let first = rx.recv_timeout(WAIT).unwrap();
        seen.extend(paths(&first));
        assert_eq!(seen, names.iter().cloned().collect(), "{first:?}");
        assert!(first.iter().all(|e| !e.as_ref().unwrap().need_rescan()));

        let later = dir.path().join("later.yml");
        std::fs::write(&later, "y").unwrap();
        let mut next = BTreeSet::new();
        while !next.contains(&later) {
            next.extend(paths(&rx.recv_timeout(WAIT).unwrap()));
        }
    }

    /// `n` events forwarded as the platform watcher's thread does into a queue of `capacity`,
    /// whose sender is then gone, and the overflow flag.
    fn forwarded(n: usize, capacity: usize) -> (mpsc::Receiver<notify::Result<Event>>, AtomicBool) {
        let (tx, rx) = mpsc::sync_channel(capacity);
        let overflow = AtomicBool::new(false);
        for i in 0..n {
            let event = Event::new(EventKind::Any).add_path(PathBuf::from(format!("/r/{i}.yml")));
            forward(&tx, &overflow, Ok(event));
        }
        (rx, overflow)
    }

    /// The batches the watcher's thread hands over for what `rx` holds.
    fn gathered(
        rx: &mpsc::Receiver<notify::Result<Event>>,
        overflow: &AtomicBool,
        max_batch: usize,
    ) -> Vec<Batch> {
        let mut batches = Vec::new();
        gather(rx, overflow, Duration::from_millis(100), max_batch, |b| {
            batches.push(b)
        });
        batches
    }

    fn is_rescan(e: &notify::Result<Event>) -> bool {
        e.as_ref().unwrap().need_rescan()
    }

    #[test]
    fn events_beyond_a_batch_are_dropped_and_the_batch_asks_for_a_rescan() {
        let (rx, overflow) = forwarded(50, QUEUED);
        let batches = gathered(&rx, &overflow, 8);
        assert_eq!(batches.len(), 1, "{batches:?}");
        let batch = &batches[0];
        assert_eq!(batch.len(), 9, "{batch:?}");
        assert!(!batch[..8].iter().any(is_rescan));
        assert!(is_rescan(&batch[8]), "{batch:?}");
    }

    #[test]
    fn a_full_queue_is_reported_as_a_rescan() {
        // 20 events into a queue of 16: the 16 that fitted and a rescan for the 4 lost
        let (rx, overflow) = forwarded(20, 16);
        let batches = gathered(&rx, &overflow, MAX_BATCH);
        assert_eq!(batches.len(), 1, "{batches:?}");
        let batch = &batches[0];
        assert_eq!(batch.len(), 17, "{batch:?}");
        assert!(!batch[..16].iter().any(is_rescan));
        assert!(is_rescan(&batch[16]), "{batch:?}");
        assert!(!overflow.load(Ordering::Acquire), "reported once");
    }

    #[test]
    fn after_the_debouncer_is_dropped_its_thread_ends_and_the_handler_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = mpsc::channel::<Batch>();
        let mut d = Debouncer::new(Duration::from_millis(100), move |b| {
            let _ = tx.send(b);
        })
        .unwrap();
        d.watch(dir.path(), RecursiveMode::NonRecursive).unwrap();
        drop(d);
        std::fs::write(dir.path().join("a"), "x").unwrap();
        // the handler (and its sender) is dropped when the thread ends: the channel disconnects
        loop {
            match rx.recv_timeout(WAIT) {
                Ok(_) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("the watcher thread did not end"),
            }
        }
    }
}
