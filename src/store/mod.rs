//! The time-series store: an in-memory head over one SQLite file.
//!
//! Writes: [`Store::append`] puts samples into each series' open chunk (Gorilla-compressed, in
//! memory) and into a write-ahead batch. [`Store::flush`], called by the scheduler every
//! `storage.flush_interval`, writes in one transaction the new series, the batch (one `wal` row),
//! and the chunks cut since the last flush, then deletes the `wal` rows whose samples are all in
//! chunks. After a crash, [`Store::open`] replays the `wal` rows over the chunks: everything
//! flushed is back. [`Store::close`] cuts every open chunk, so a clean restart replays nothing.
//!
//! A rule evaluation is committed on its own: [`Store::commit_evaluation`] appends the recorded
//! series and writes them (their own `wal` row), the alert states, evaluation records,
//! transitions, outbox rows with their notification-log entries and shadow notifications in one
//! transaction. It cuts, trims and deletes nothing: chunks, the head window, retention and the
//! SQLite checkpoint stay with the scheduler's periodic flush. Flushes and commits take the file
//! lock before they snapshot memory, so they reach the file in the order they snapshot (a
//! flush's `wal` trim never removes a row whose samples its chunks do not hold).
//!
//! Reads: [`Store::select`] (range read by label matchers) and [`Store::latest`] (instant lookup
//! with lookback, staleness-aware) read memory first and the file only for older data.
//!
//! Every method may block (locks, SQLite): call from a blocking thread (`spawn_blocking`), never
//! directly on the async runtime. Time is always an argument; the store never reads the clock.

pub mod chunk;
mod db;
mod head;
mod idtable;
mod meta;
mod rwqueue;
mod wal;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

pub use head::{
    AppendStats, BLOCK_MS, SAMPLES_PER_CHUNK, STALENESS_MS, SeriesRef, block_of, is_stale,
};
pub use meta::Capped;
pub use rwqueue::{RW_RULES, RW_SCRAPED, RwPosition, RwQueued, RwRow};

use crate::labels::{Labels, Matcher};
use db::{Db, FlushBatch, QueuedEntry, WalTrim};
use head::{ClosedChunk, Head, ReplayPart};
use wal::WalBatch;

/// Occurs when the store cannot open its file or a read or write fails.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be created (permissions, a file in the way).
    #[error("cannot create data directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// SQLite could not open the file or it is not a database (never silently replaced).
    #[error("cannot open store {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// The file is a SQLite database of another program.
    #[error("cannot open store {path}: it is a database of another program, not tocsin's")]
    Foreign { path: PathBuf },
    /// The file was written by a newer tocsin.
    #[error("cannot open store {path}: schema version {version} is newer than this tocsin")]
    NewerSchema { path: PathBuf, version: i64 },
    /// Damaged contents: a failed integrity check, undecodable labels, chunk or WAL batch.
    #[error("store {path} is corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    /// A store opened for reading does not exist.
    #[error("no store at {path}")]
    Missing { path: PathBuf },
    /// Another process (a second `tocsin run` on the same `storage.path`) holds the store's
    /// write lock: two daemons on one store would each send every notification.
    #[error(
        "store {path} is in use by another tocsin{holder} (lock file {lock}); stop it or give this one another storage.path"
    )]
    Locked {
        path: PathBuf,
        lock: String,
        /// ` (pid N)` when the holder wrote its pid, else empty
        holder: String,
    },
    /// The lock file beside the store could not be created or written.
    #[error("cannot lock store {path}: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A read or write failed after opening (disk full, I/O error).
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A read was told to stop before it ended (the metadata API's request timed out or its
    /// client went away).
    #[error("store read stopped: its request ended")]
    Stopped,
}

/// Takes the exclusive write lock of the store at `path`: an advisory lock (`flock`) on
/// `<path>.lock`, held by the returned file until it is dropped (also when the process dies,
/// kill -9 included: the kernel releases it). The holder's pid is written into the file for the
/// error message of the next one. Read-only opens take no lock, so `tocsin query` and `replay`
/// work beside a running daemon.
fn lock_store(path: &Path) -> Result<std::fs::File, StoreError> {
    use std::io::{Read, Seek, Write};
    let lock_path = PathBuf::from(format!("{}.lock", path.display()));
    let io = |source| StoreError::Lock {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            // at most a line: the holder writes only its pid
            let _ = (&file).take(32).read_to_string(&mut pid);
            let pid = pid.trim();
            return Err(StoreError::Locked {
                path: path.to_path_buf(),
                lock: lock_path.display().to_string(),
                holder: if pid.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {pid})")
                },
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(file)
}

/// How the store keeps data.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// recent data kept in memory per series besides the open chunk, in ms (see [`Store::set_head_window`])
    pub head_window_ms: i64,
    /// data older than this (ms) is deleted, in whole blocks
    pub retention_ms: i64,
    /// a flush writes a checkpoint (every open chunk whole, replacing the write-ahead rows
    /// before it) once the rows since the last that are still stored (not yet all in chunks)
    /// hold this many samples a series in memory…
    pub checkpoint_samples_per_series: usize,
    /// …and at least this many samples (below it a crashed start replays them in well under a
    /// second, and the checkpoint's writes would cost more than they save)
    pub checkpoint_min_samples: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            head_window_ms: 0,
            retention_ms: 15 * 24 * 3_600_000,
            checkpoint_samples_per_series: 32,
            checkpoint_min_samples: 16 << 20,
        }
    }
}

/// What [`Store::select_each`] calls per series: its labels and samples, ascending in time.
pub type SeriesVisitor<'a> = dyn FnMut(&Arc<Labels>, &[(i64, f64)]) + 'a;

/// One series and its samples, ascending in time.
#[derive(Debug, Clone)]
pub struct SeriesSamples {
    pub labels: Arc<Labels>,
    pub samples: Vec<(i64, f64)>,
}

/// One evaluation of a rule, as kept in the store (the last 20 per rule).
#[derive(Debug, Clone, PartialEq)]
pub struct RuleEval {
    pub t: i64,
    pub duration_s: f64,
    pub results: usize,
    pub error: Option<String>,
}

/// One change of an alert's state, as kept in the store (the last 100 per rule).
#[derive(Debug, Clone, PartialEq)]
pub struct RuleTransition {
    /// evaluation time of the change (ms)
    pub t: i64,
    pub fingerprint: u64,
    /// the alert's labels as text (`{a="b"}`)
    pub labels: String,
    /// `inactive`, `pending` or `firing`
    pub from: String,
    pub to: String,
    /// Some(true) when the alert started flapping, Some(false) when it stopped
    pub flapping: Option<bool>,
}

/// A rule's whole alert state after an evaluation (replacing what was stored), the
/// evaluation's record and its alert state transitions. Alert states are opaque JSON to the store.
#[derive(Debug, Clone, Default)]
pub struct RuleStateRow {
    pub rule_key: String,
    pub alerts: Vec<(u64, String)>,
    pub eval: Option<RuleEval>,
    /// appended to the rule's transition history (oldest first)
    pub transitions: Vec<RuleTransition>,
}

/// A notification to queue, with the notification-log entry that records it as sent: both are
/// written in the evaluation's transaction, beside the alert states that caused them.
#[derive(Debug, Clone, Default)]
pub struct OutboxEntry {
    pub receiver: String,
    pub group_key: String,
    pub idempotency_key: String,
    /// the notification, serialized by the notifier
    pub payload: String,
    pub created: i64,
    /// the notification log's new entry for (`log_receiver`, group key), serialized by the
    /// notifier; empty: no log entry (a fallback)
    pub log_entry: String,
    /// the receiver the log entry is for (`receiver` is one of its integrations)
    pub log_receiver: String,
}

/// What one rule evaluation makes durable, in one transaction ([`Store::commit_evaluation`]).
#[derive(Debug, Clone, Default)]
pub struct EvaluationRows {
    /// recorded series and `ALERTS` at the evaluation time, appended to the head and written as
    /// one `wal` row
    pub samples: Vec<(Labels, i64, f64)>,
    /// each rule's alert states (replacing what was stored), evaluation record and transitions
    pub rules: Vec<RuleStateRow>,
    /// notifications to queue, each with its notification-log entry
    pub outbox: Vec<OutboxEntry>,
    /// shadow (dry-run) notifications: recorded in the history as `shadow`, never queued
    pub shadow: Vec<OutboxEntry>,
}

/// One row of the notification history (`sent`): a delivery, a permanent failure or a shadow
/// (dry-run) notification.
#[derive(Debug, Clone, PartialEq)]
pub struct SentRow {
    pub id: i64,
    /// ms since the epoch
    pub at: i64,
    /// `receiver/kind`
    pub integration: String,
    pub group_key: String,
    pub idempotency_key: String,
    /// `delivered`, `failed` or `shadow`
    pub status: String,
    pub error: Option<String>,
    /// the notification as queued (`Notification::to_json`)
    pub payload: String,
}

/// A queued notification.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub id: i64,
    pub receiver: String,
    pub group_key: String,
    pub idempotency_key: String,
    pub payload: String,
    pub created: i64,
    pub attempts: u32,
    pub next_attempt: i64,
}

/// What one flush wrote.
#[derive(Debug, Default, Clone, Copy)]
pub struct FlushStats {
    pub samples: usize,
    pub chunks: usize,
    pub series: usize,
    /// series that left memory (idle past the head window and the staleness period)
    pub series_dropped: usize,
    /// series deleted from the file (retention removed their last chunk)
    pub series_pruned: usize,
    pub seconds: f64,
}

/// Heap bytes the head holds, part by part, estimated from capacities (hash tables as
/// hashbrown lays them out: a bucket and a control byte per slot): `benches/memory.rs` prints
/// them beside the exact live bytes a counting allocator sees.
#[derive(Debug, Default, Clone, Copy)]
pub struct HeadMemory {
    /// the id → series map (its slots: each series' struct, open chunk state included)
    pub series_map: usize,
    /// the label set → id map
    pub label_lookup: usize,
    /// the label sets (each `Arc`'s allocation and the packed text)
    pub labels: usize,
    /// label name → value → ids, with the names, values and lists
    pub postings: usize,
    /// open chunks' buffers (capacity, not only the bytes written)
    pub open_chunks: usize,
    /// closed chunks still in memory and their deques
    pub closed_chunks: usize,
}

/// Sizes for self-metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct StoreStats {
    pub series: usize,
    pub head_chunk_bytes: usize,
    pub disk_bytes: u64,
}

#[derive(Default)]
struct Pending {
    wal: WalBatch,
    notes: Vec<(SeriesRef, i64, String)>,
    /// flushes and commits that failed, oldest first, retried before the next write
    failed: Vec<FlushBatch>,
    /// the last memory id given to an outbox entry of a failed batch (-1, -2, …)
    last_mem_id: i64,
    /// memory id → outbox row id of entries the sender saw in memory and that were written
    /// queued since: an outcome the sender reports under the memory id goes to the row. Entries
    /// leave when their outcome comes; at most the notifications queued while writes failed.
    moved: HashMap<i64, i64>,
    /// the write-ahead rows since the last checkpoint that are still stored (as far as this
    /// process knows): each one's newest sample and samples, the checkpoint's measure
    wal_rows: std::collections::VecDeque<(i64, usize)>,
}

/// Writes the store failed and when one last succeeded, for the self-metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteHealth {
    /// flushes and commits that failed since the store opened
    pub failures: u64,
    /// the time (ms) of the last write that succeeded: a flush's `now`, an evaluation's time;
    /// None before the first
    pub last_success_ms: Option<i64>,
}

pub struct Store {
    head: RwLock<Head>,
    pending: Mutex<Pending>,
    db: Mutex<Db>,
    notes: RwLock<HashMap<SeriesRef, (i64, String)>>,
    opts: StoreOptions,
    /// current head window in ms: the configured one, raised by readers that need more
    head_window_ms: AtomicI64,
    /// the exclusive write lock (`<path>.lock`), held while the store is open for writing
    _lock: Option<std::fs::File>,
    write_failures: AtomicU64,
    /// ms; i64::MIN before the first successful write
    last_write_ok_ms: AtomicI64,
    /// which writes are queued for remote write ([`RW_SCRAPED`], [`RW_RULES`]; 0: none)
    rw_kinds: AtomicU8,
    /// counts writes that queued samples for remote write: the senders wait on it
    rw_written: tokio::sync::watch::Sender<u64>,
}

/// The most label names [`Store::label_names`] reads from disk: far beyond any real store (a
/// name is a label key, not a value), a bound on a damaged or hostile file.
pub const MAX_LABEL_NAMES: usize = 100_000;

/// Write-ahead rows of at least this many bytes are replayed on several threads (below it, the
/// threads would cost more than they save).
const PARALLEL_REPLAY_BYTES: usize = 4 << 20;

/// The most threads write-ahead replay uses (one a core up to this).
const MAX_REPLAY_THREADS: usize = 4;

/// The most bytes of one checkpoint row (a blob is at most a gigabyte; a checkpoint of a
/// million series is ~100 MB).
const CHECKPOINT_ROW_BYTES: usize = 64 << 20;

/// How many samples ahead [`Store::append`] asks for the memory of the series it appends to
/// ([`head::Head::prefetch`]: its open chunk); its entry, twice as far ahead
/// ([`head::Head::prefetch_entry`]).
const APPEND_PREFETCH: usize = 16;

/// Label sets the store's open reads and parses before handing them to the thread that puts
/// them in the head.
const LABEL_BATCH: usize = 4096;

/// Series a replay thread rebuilds at a time, row after row: their open chunks (a few hundred
/// bytes each) stay in a core's cache.
const REPLAY_BLOCK: usize = 2048;

impl Store {
    /// Opens (or creates) the store at `path` and replays what was flushed but not yet in chunks.
    pub fn open(path: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
        Self::open_with(path, opts, false)
    }

    /// Opens an existing store for reading only (`tocsin query`, replay): nothing in the file
    /// changes, so it is safe beside a running daemon. Samples the daemon has not flushed yet
    /// are not visible.
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        Self::open_with(path, StoreOptions::default(), true)
    }

    fn open_with(path: &Path, opts: StoreOptions, read_only: bool) -> Result<Store, StoreError> {
        let lock = if read_only {
            None
        } else {
            Some(lock_store(path)?)
        };
        let mut db = Db::open(path, read_only)?;
        if !read_only {
            let n = db.backfill_label_index()?;
            if n > 0 {
                tracing::info!(series = n, "built the label index of an older store");
            }
        }
        let head = Self::load_head(&db, path, opts.head_window_ms, !read_only)?;
        let notes = db
            .notes()?
            .into_iter()
            .map(|(id, t, s)| (id, (t, s)))
            .collect();
        Ok(Store {
            head: RwLock::new(head),
            pending: Mutex::new(Pending::default()),
            db: Mutex::new(db),
            notes: RwLock::new(notes),
            head_window_ms: AtomicI64::new(opts.head_window_ms),
            opts,
            _lock: lock,
            write_failures: AtomicU64::new(0),
            last_write_ok_ms: AtomicI64::new(i64::MIN),
            rw_kinds: AtomicU8::new(0),
            rw_written: tokio::sync::watch::Sender::new(0),
        })
    }

    /// The head at open: only the series with samples in the write-ahead rows and, for a writer
    /// (`recent`), those with a sample within the head window and the staleness period before the
    /// newest sample on disk; not every series the file holds (at 600k churned series that was
    /// 389 MB and 2.7 s for `tocsin query`). A reader (`tocsin query`, replay) loads only the
    /// write-ahead rows' series: it appends nothing, and finds the rest on disk. The others are
    /// looked up on disk when a reader's range reaches before the head's horizon, and come back
    /// under their id when they get samples again.
    fn load_head(
        db: &Db,
        path: &Path,
        head_window_ms: i64,
        recent: bool,
    ) -> Result<Head, StoreError> {
        let started = Instant::now();
        let mut head = Head::default();
        let max_id = db.max_series_id()?;
        head.set_next_id(max_id.saturating_add(1));
        let corrupt = |e: wal::WalError| StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: e.to_string(),
        };
        // the rows are read on this thread while another walks each one for its series ids (a
        // bit each: ids are dense and at most `max_id`; one past it names a series the file
        // lacks, whose samples cannot be placed): at a million series a crash leaves ~120 rows
        // of a million groups, ~1 s to walk after ~1.5 s to read
        let mark = move |in_wal: &mut [u64], id: SeriesRef| {
            if id <= max_id {
                in_wal[id as usize >> 6] |= 1 << (id & 63);
            }
        };
        let (batches, in_wal) = std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::channel::<Arc<Vec<u8>>>();
            let walker = scope.spawn(move || {
                let mut in_wal = vec![0u64; (max_id as usize >> 6) + 1];
                let mut failed = None;
                for row in rx {
                    if failed.is_some() {
                        continue;
                    }
                    let walked = match wal::Groups::new(&row) {
                        Ok(Some(mut groups)) => {
                            groups.try_for_each(|g| g.map(|(id, _)| mark(&mut in_wal, id)))
                        }
                        // a row of the raw layout: its ids are marked once it is decoded below
                        Ok(None) => Ok(()),
                        Err(e) => Err(e),
                    };
                    failed = walked.err();
                }
                failed.map_or(Ok(in_wal), Err)
            });
            let batches = db.wal_batches(|row| {
                // the walker only ends early by panicking, which the join passes on
                let _ = tx.send(row.clone());
            });
            drop(tx);
            let in_wal = walker
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            (batches, in_wal)
        });
        let batches = batches?;
        let mut in_wal = in_wal.map_err(corrupt)?;
        let read_wal = started.elapsed();
        // rows of the grouped layout are replayed series by series straight from their bytes;
        // a store with raw rows (written before that layout) is decoded whole, as it was
        let mut grouped = Vec::with_capacity(batches.len());
        for (_, data) in &batches {
            match wal::Groups::new(data).map_err(corrupt)? {
                Some(g) => grouped.push(g),
                None => {
                    grouped.clear();
                    break;
                }
            }
        }
        let raw: Vec<Vec<(SeriesRef, i64, f64)>> = if grouped.len() == batches.len() {
            Vec::new()
        } else {
            batches
                .iter()
                .map(|(_, data)| wal::decode(data).map_err(corrupt))
                .collect::<Result<_, _>>()?
        };
        for samples in &raw {
            for &(id, _, _) in samples {
                mark(&mut in_wal, id);
            }
        }
        let newest = db.newest_sample()?;
        // series whose last sample is this recent are loaded; older ones stay on disk
        let cutoff = match newest {
            None => i64::MIN,
            Some(n) if recent => n.saturating_sub(STALENESS_MS + head_window_ms.max(0)),
            Some(n) => n.saturating_add(1),
        };
        let first_wal_block = batches.iter().map(|(mint, _)| block_of(*mint)).min();
        let since = match first_wal_block {
            Some(b) => cutoff.min(b * BLOCK_MS),
            None => cutoff,
        };
        // the end of each series' newest chunk from the first block either needs on: the recent
        // series are loaded, and a write-ahead row's samples up to it are already in chunks
        let first_block = match (first_wal_block, recent && since != i64::MIN) {
            (Some(b), true) => Some(b.min(block_of(since))),
            (Some(b), false) => Some(b),
            (None, true) => Some(block_of(since)),
            (None, false) => None,
        };
        let maxts = match first_block {
            Some(b) => db.chunk_maxt_since(b)?,
            None => Vec::new(),
        };
        let wal_ids = in_wal.iter().enumerate().flat_map(|(word, &bits)| {
            let mut bits = bits;
            std::iter::from_fn(move || {
                (bits != 0).then(|| {
                    let id = (word as u64 * 64 + u64::from(bits.trailing_zeros())) as SeriesRef;
                    bits &= bits - 1;
                    id
                })
            })
        });
        // both ascending: the union, each with its newest chunk's end if it has one
        let mut ids: Vec<(SeriesRef, Option<i64>)> = Vec::new();
        let mut wal_ids = wal_ids.peekable();
        let mut chunked = maxts.iter().copied().peekable();
        loop {
            let (id, maxt) = match (wal_ids.peek().copied(), chunked.peek().copied()) {
                (None, None) => break,
                (Some(w), Some((c, maxt))) if c <= w => {
                    chunked.next();
                    if c == w {
                        wal_ids.next();
                    } else if !(recent && maxt >= cutoff) {
                        continue;
                    }
                    (c, Some(maxt))
                }
                (None, Some((c, maxt))) => {
                    chunked.next();
                    if !(recent && maxt >= cutoff) {
                        continue;
                    }
                    (c, Some(maxt))
                }
                (Some(w), _) => {
                    wal_ids.next();
                    (w, None)
                }
            };
            ids.push((id, maxt));
        }
        drop(maxts);
        // the write-ahead rows' series are rebuilt apart, on other threads, while the labels
        // load on this one (the two were 6 s and 4 s of a crashed million-series start)
        let nobody = Arc::new(Labels::default());
        let mut slots: Vec<(SeriesRef, head::MemSeries)> = if grouped.is_empty() {
            Vec::new()
        } else {
            ids.iter()
                .filter(|&&(id, _)| in_wal[id as usize >> 6] & (1 << (id & 63)) != 0)
                .map(|&(id, maxt)| (id, head::MemSeries::detached(nobody.clone(), maxt)))
                .collect()
        };
        drop(in_wal);
        let only_ids: Vec<SeriesRef> = ids.iter().map(|&(id, _)| id).collect();
        head.reserve(ids.len());
        let (labels, replayed) = std::thread::scope(|scope| {
            let replay = (!grouped.is_empty()).then(|| {
                let (slots, grouped) = (&mut slots, &grouped);
                scope.spawn(move || {
                    let started = Instant::now();
                    Self::replay_grouped(slots, grouped).map(|r| (r, started.elapsed()))
                })
            });
            // this thread reads and parses the label sets, another puts them in the head (at a
            // million series ~2.2 and ~1.6 s of CPU)
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<(SeriesRef, Labels)>>(16);
            let (head, ids) = (&mut head, &ids);
            let inserter = scope.spawn(move || {
                for batch in rx {
                    for (id, labels) in batch {
                        let maxt = ids
                            .binary_search_by_key(&id, |&(i, _)| i)
                            .ok()
                            .and_then(|k| ids[k].1);
                        head.insert(id, Arc::new(labels), i64::MAX);
                        if let Some(t) = maxt {
                            head.set_last_t(id, t);
                        }
                        // its recorded end (from before a restart) is void while it is in memory
                        head.revived.push(id);
                    }
                }
            });
            let mut batch = Vec::with_capacity(LABEL_BATCH);
            let labels = db.series_labels_many(&only_ids, |id, labels| {
                batch.push((id, labels));
                if batch.len() == LABEL_BATCH {
                    // the inserter only ends early by panicking, which the join passes on
                    let _ = tx.send(std::mem::replace(
                        &mut batch,
                        Vec::with_capacity(LABEL_BATCH),
                    ));
                }
            });
            if !batch.is_empty() {
                let _ = tx.send(batch);
            }
            drop(tx);
            inserter
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            let replayed =
                replay.map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
            (labels, replayed)
        });
        labels?;
        drop((ids, only_ids));
        if db.series_count()? > head.series_count() as u64 {
            head.raise_horizon(cutoff);
        }
        let loaded = started.elapsed();
        if !batches.is_empty() {
            let mut stats = AppendStats::default();
            for samples in raw {
                for (id, t, v) in samples {
                    head.append(id, t, v, &mut stats);
                }
            }
            let mut replay_seconds = (started.elapsed() - loaded).as_secs_f64();
            if let Some(replayed) = replayed {
                let ((mut cut, part_stats), took) = replayed.map_err(corrupt)?;
                stats.add(part_stats);
                replay_seconds = took.as_secs_f64();
                // a series the file has no labels for was rebuilt for nothing: its samples
                // cannot be placed (as when replay met an id not in memory)
                let mut lost: Vec<SeriesRef> = Vec::new();
                for (id, series) in slots {
                    let samples = series.open.len();
                    if !head.adopt(id, series) {
                        lost.push(id);
                        stats.appended -= samples;
                        stats.unknown_series += samples;
                    }
                }
                if !lost.is_empty() {
                    cut.retain(|c| {
                        let keep = lost.binary_search(&c.series).is_err();
                        if !keep {
                            let n = usize::from(chunk::sample_count(&c.data));
                            stats.appended -= n;
                            stats.unknown_series += n;
                        }
                        keep
                    });
                }
                head.finish_replay(cut);
            }
            tracing::info!(
                batches = batches.len(),
                samples = stats.appended,
                seconds = replay_seconds,
                "replayed write-ahead batches"
            );
        }
        tracing::info!(
            series = head.series_count(),
            horizon = head.horizon(),
            seconds = started.elapsed().as_secs_f64(),
            series_seconds = loaded.as_secs_f64(),
            wal_read_seconds = read_wal.as_secs_f64(),
            "loaded the head"
        );
        Ok(head)
    }

    /// Replays grouped write-ahead rows into `series` (ascending ids; those of the rows), each
    /// series' samples in write order. Nothing is decoded ahead: memory stays the rows' bytes.
    /// Past [`PARALLEL_REPLAY_BYTES`] of rows the series are split into runs of consecutive ids,
    /// one a core (at most [`MAX_REPLAY_THREADS`]): each run's thread reads every row from its
    /// first id on and owns its series, so no lock is taken and a series' samples keep their
    /// order ([`Store::replay_part`]). Returns the chunks cut and the counts.
    fn replay_grouped(
        series: &mut [(SeriesRef, head::MemSeries)],
        rows: &[wal::Groups<'_>],
    ) -> Result<(Vec<ClosedChunk>, AppendStats), wal::WalError> {
        let bytes: usize = rows.iter().map(wal::Groups::byte_len).sum();
        let threads = if bytes < PARALLEL_REPLAY_BYTES {
            1
        } else {
            // a core is left to the label load, which runs beside and is the longer (at a
            // million series, 3.2 s alone; 5 s beside a replay on both of 2 cores)
            std::thread::available_parallelism()
                .map_or(1, std::num::NonZero::get)
                .saturating_sub(1)
                .clamp(1, MAX_REPLAY_THREADS)
        };
        Self::replay_grouped_with(series, rows, threads, REPLAY_BLOCK)
    }

    /// [`Store::replay_grouped`] on `threads` threads in blocks of `block` series.
    fn replay_grouped_with(
        series: &mut [(SeriesRef, head::MemSeries)],
        rows: &[wal::Groups<'_>],
        threads: usize,
        block: usize,
    ) -> Result<(Vec<ClosedChunk>, AppendStats), wal::WalError> {
        let per = series.len().div_ceil(threads.max(1)).max(1);
        let mut parts: Vec<ReplayPart<'_>> = series.chunks_mut(per).map(ReplayPart::new).collect();
        if parts.is_empty() {
            // no series to rebuild: every sample is counted as unknown
            parts.push(ReplayPart::new(&mut []));
        }
        // part k replays the ids from its first (part 0: from the lowest) to part k + 1's first
        let bounds: Vec<(Option<SeriesRef>, Option<SeriesRef>)> = (0..parts.len())
            .map(|k| {
                let from = if k == 0 { None } else { parts[k].first_id() };
                (from, parts.get(k + 1).and_then(ReplayPart::first_id))
            })
            .collect();
        let results: Vec<Result<(Vec<ClosedChunk>, AppendStats), wal::WalError>> =
            if parts.len() == 1 {
                let part = parts.pop().expect("one part");
                vec![Self::replay_part(rows, bounds[0], part, block)]
            } else {
                std::thread::scope(|scope| {
                    let handles: Vec<_> = parts
                        .into_iter()
                        .zip(bounds)
                        .map(|(part, bound)| {
                            scope.spawn(move || Self::replay_part(rows, bound, part, block))
                        })
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                        .collect()
                })
            };
        let mut cut = Vec::new();
        let mut stats = AppendStats::default();
        for result in results {
            let (part_cut, part_stats) = result?;
            cut.extend(part_cut);
            stats.add(part_stats);
        }
        Ok((cut, stats))
    }

    /// One run of [`Store::replay_grouped`]: the groups with ids in `[from, to)` of every row, in
    /// blocks of `block` series ([`REPLAY_BLOCK`]): each row's groups for the block, row after row, so the
    /// block's open chunks stay in the cache and each row is read front to back (walking all rows
    /// side by side, series by series, read ~70 places in memory a series).
    fn replay_part(
        rows: &[wal::Groups<'_>],
        (from, to): (Option<SeriesRef>, Option<SeriesRef>),
        mut part: ReplayPart<'_>,
        block: usize,
    ) -> Result<(Vec<ClosedChunk>, AppendStats), wal::WalError> {
        let mut rows: Vec<(i64, std::iter::Peekable<wal::Groups<'_>>)> = rows
            .iter()
            .map(|g| (g.base(), g.clone().peekable()))
            .collect();
        if let Some(from) = from {
            for (_, row) in &mut rows {
                while row
                    .next_if(|g| matches!(g, Ok((i, _)) if *i < from))
                    .is_some()
                {}
            }
        }
        let n = part.len();
        let mut start = 0;
        let mut pool = Vec::new();
        loop {
            let end = (start + block.max(1)).min(n);
            part.lend(start..end, &mut pool);
            // the block takes the ids below the next block's first (the last: below `to`)
            let below = if end < n { Some(part.id_at(end)) } else { to };
            for (base, row) in rows.iter_mut() {
                let mut at = start;
                while let Some((id, bytes)) = row
                    .next_if(|g| matches!(g, Ok((i, _)) if below.is_none_or(|b| *i < b)))
                    .transpose()?
                {
                    while at < end && part.id_at(at) < id {
                        at += 1;
                    }
                    // a checkpoint's open chunk (absolute times) is taken whole when it can be
                    if *base == 0 && chunk::sample_count(bytes) > 1 && part.resume_at(at, id, bytes)
                    {
                        continue;
                    }
                    part.append_at(at, id, |push| wal::decode_group(*base, id, bytes, push))?;
                }
                if let Some(Err(_)) = row.peek() {
                    return Err(row.next().and_then(Result::err).expect("peeked"));
                }
            }
            part.compact(start..end, &mut pool);
            if end >= n {
                return Ok(part.finish());
            }
            start = end;
        }
    }

    /// Every label name a series of the store carries, in memory or on disk, sorted, at most
    /// [`MAX_LABEL_NAMES`] from disk: what `tocsin check` and the rule load compare rules' label
    /// names with (`rules::labelcheck`).
    pub fn label_names(&self) -> Result<std::collections::BTreeSet<String>, StoreError> {
        let mut names: std::collections::BTreeSet<String> = self
            .head
            .read()
            .expect("head lock")
            .label_names()
            .map(str::to_string)
            .collect();
        names.extend(
            self.db
                .lock()
                .expect("db lock")
                .label_names(MAX_LABEL_NAMES)?,
        );
        Ok(names)
    }

    /// Keeps at least `ms` of recent data per series in memory (the rule engine sets its longest
    /// range window here); never below the configured `head_window`. Takes effect at the next flush.
    pub fn set_head_window(&self, ms: i64) {
        self.head_window_ms
            .store(ms.max(self.opts.head_window_ms), Ordering::Relaxed);
    }

    /// The id of the series with these labels, created if new.
    pub fn series_ref(&self, labels: Labels) -> SeriesRef {
        self.series_refs(vec![labels])[0]
    }

    /// Ids for many label sets under one lock (a scrape's new series). A series that left
    /// memory comes back under its id on disk, so its history joins up; a series the file never
    /// held gets a new id. When the file cannot be read the id is 0, which no series has: its
    /// samples are dropped (counted as out of order) rather than given a second id.
    pub fn series_refs(&self, labels: Vec<Labels>) -> Vec<SeriesRef> {
        {
            let head = self.head.read().expect("head lock");
            let found: Option<Vec<SeriesRef>> = labels.iter().map(|l| head.lookup(l)).collect();
            if let Some(ids) = found {
                return ids;
            }
        }
        {
            // while every series of the file is in memory, a miss is a new series: no file
            // lookup, so scrapes never wait for a flush's write (a flush changes `complete`
            // only under this lock)
            let mut head = self.head.write().expect("head lock");
            if head.complete() {
                return labels.into_iter().map(|l| head.get_or_create(l)).collect();
            }
        }
        // the file lock first (the order every writer takes them)
        let db = self.db.lock().expect("db lock");
        let mut head = self.head.write().expect("head lock");
        labels
            .into_iter()
            .map(|l| match Self::resolve(&db, &mut head, l) {
                Ok(id) => id,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot look a series up in the store");
                    0
                }
            })
            .collect()
    }

    /// The id of `labels`: in memory, else on disk (brought back into memory under its id), else
    /// a new series. Called with the file lock and the head's write lock held.
    fn resolve(db: &Db, head: &mut Head, labels: Labels) -> Result<SeriesRef, StoreError> {
        if let Some(id) = head.lookup(&labels) {
            return Ok(id);
        }
        if !head.complete()
            && let Some(id) = db.series_id_of(&labels)?
        {
            Self::revive(db, head, id, Arc::new(labels))?;
            return Ok(id);
        }
        Ok(head.get_or_create(labels))
    }

    /// Brings series `id` back into memory from disk: appends resume after its newest chunk.
    fn revive(
        db: &Db,
        head: &mut Head,
        id: SeriesRef,
        labels: Arc<Labels>,
    ) -> Result<(), StoreError> {
        let last = db.last_chunk_maxt(id, db.block_range()?)?;
        head.insert(id, labels, i64::MAX);
        if let Some(t) = last {
            head.set_last_t(id, t);
        }
        head.revived.push(id);
        Ok(())
    }

    /// The labels of a series.
    pub fn labels(&self, id: SeriesRef) -> Option<Arc<Labels>> {
        self.head.read().expect("head lock").labels(id).cloned()
    }

    /// Appends samples (any order of series; each series' samples must be increasing in time).
    pub fn append(&self, samples: &[(SeriesRef, i64, f64)]) -> AppendStats {
        let mut stats = AppendStats::default();
        let mut unknown = Vec::new();
        {
            let mut head = self.head.write().expect("head lock");
            let mut pending = self.pending.lock().expect("pending lock");
            for (i, &(id, t, v)) in samples.iter().enumerate() {
                if let Some(&(ahead, ..)) = samples.get(i + 2 * APPEND_PREFETCH) {
                    head.prefetch_entry(ahead);
                }
                if let Some(&(ahead, ..)) = samples.get(i + APPEND_PREFETCH) {
                    head.prefetch(ahead);
                }
                let before = (stats.appended, stats.unknown_series);
                head.append(id, t, v, &mut stats);
                if stats.appended > before.0 {
                    pending.wal.push(id, t, v);
                } else if stats.unknown_series > before.1 {
                    unknown.push((id, t, v));
                }
            }
        }
        if !unknown.is_empty() {
            // ids that left memory since the caller got them (a scrape cache's): back from
            // disk under the file lock, taken before the head's as every writer does
            stats.unknown_series = 0;
            let db = self.db.lock().expect("db lock");
            let mut head = self.head.write().expect("head lock");
            let mut pending = self.pending.lock().expect("pending lock");
            for &(id, t, v) in &unknown {
                if !head.contains(id) && id != 0 {
                    let labels = db.series_labels(id);
                    match labels {
                        Ok(Some(labels)) => {
                            if let Err(e) = Self::revive(&db, &mut head, id, Arc::new(labels)) {
                                tracing::warn!(series = id, error = %e, "cannot bring a series back from the store");
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(series = id, error = %e, "cannot bring a series back from the store");
                        }
                    }
                }
                let before = stats.appended;
                head.append(id, t, v, &mut stats);
                if stats.appended > before {
                    pending.wal.push(id, t, v);
                }
            }
            // a series neither in memory nor on disk (pruned, or a failed lookup): dropped
            stats.out_of_order += std::mem::take(&mut stats.unknown_series);
        }
        stats
    }

    /// Keeps `text` with the series' latest sample (e.g. a failed health check's reason).
    pub fn set_note(&self, id: SeriesRef, t: i64, text: &str) {
        let mut notes = self.notes.write().expect("notes lock");
        if notes.get(&id).is_some_and(|(_, old)| old == text) {
            return;
        }
        notes.insert(id, (t, text.to_string()));
        self.pending
            .lock()
            .expect("pending lock")
            .notes
            .push((id, t, text.to_string()));
    }

    /// The note kept with a series, if any.
    pub fn note(&self, labels: &Labels) -> Option<String> {
        let id = self.head.read().expect("head lock").lookup(labels)?;
        self.notes
            .read()
            .expect("notes lock")
            .get(&id)
            .map(|(_, s)| s.clone())
    }

    /// Makes everything appended so far durable, trims memory to the head window, and applies
    /// retention. `now` is the scheduler's time in ms.
    pub fn flush(&self, now: i64) -> Result<FlushStats, StoreError> {
        let started = Instant::now();
        let idle_cutoff;
        let idle;
        // how long a checkpoint held the head lock and its bytes, if this flush writes one
        let mut checkpoint_took = None;
        // the file lock first: see the module doc (writes reach the file in snapshot order)
        let mut db = self.db.lock().expect("db lock");
        let batches = {
            let mut head = self.head.write().expect("head lock");
            let mut pending = self.pending.lock().expect("pending lock");
            let window = self.head_window_ms.load(Ordering::Relaxed);
            head.maintain(now, now - window);
            // series idle past the head window and the staleness period: their open chunks are
            // cut into this flush, and they leave memory once it is written
            idle_cutoff = now.saturating_sub(window.max(0) + STALENESS_MS);
            idle = head.collect_idle(idle_cutoff);
            let new_series = std::mem::take(&mut head.new_series)
                .into_iter()
                .filter_map(|id| head.labels(id).map(|l| (id, l.clone())))
                .collect();
            let wal = std::mem::take(&mut pending.wal);
            // the next batch is likely this one's size: room for it at its first sample, not
            // grown by doubling (copies, and up to twice the bytes at the peak when every
            // series cuts; not at once: this batch's bytes are still being written)
            pending.wal.room = wal.buf.len() + wal.buf.len() / 8;
            let wal_trim = match head.open_low_watermark() {
                Some(w) => WalTrim::Before(w),
                None => WalTrim::All,
            };
            // what a crash would replay after this flush: the rows it keeps (at a 1 s scrape
            // every series cuts together every 2 minutes and the rows go with the chunks)
            if !wal.is_empty() {
                pending.wal_rows.push_back((wal.maxt, wal.count));
            }
            match wal_trim {
                WalTrim::Before(w) => pending.wal_rows.retain(|&(maxt, _)| maxt >= w),
                _ => pending.wal_rows.clear(),
            }
            let kept: usize = pending.wal_rows.iter().map(|&(_, n)| n).sum();
            let due = self
                .opts
                .checkpoint_samples_per_series
                .saturating_mul(head.series_count())
                .max(self.opts.checkpoint_min_samples);
            let checkpoint = if kept >= due && kept > 0 {
                pending.wal_rows.clear();
                // an older one that waits to be written is void: this one holds all it holds
                for b in &mut pending.failed {
                    b.checkpoint = Vec::new();
                }
                let copied = Instant::now();
                let rows = head.checkpoint(CHECKPOINT_ROW_BYTES);
                let bytes: usize = rows.iter().map(|r| r.data.len()).sum();
                checkpoint_took = Some((copied.elapsed(), bytes));
                rows
            } else {
                Vec::new()
            };
            let fresh = FlushBatch {
                checkpoint,
                new_series,
                wal_samples: wal.count,
                wal: (!wal.is_empty()).then_some(wal),
                chunks: std::mem::take(&mut head.cut),
                notes: std::mem::take(&mut pending.notes),
                wal_trim,
                ends: idle.clone(),
                revived: std::mem::take(&mut head.revived),
                rw_kind: self.rw_kinds.load(Ordering::Relaxed) & RW_SCRAPED,
                ..Default::default()
            };
            let mut all = std::mem::take(&mut pending.failed);
            all.push(fresh);
            all
        };
        let mut stats = self.write(&mut db, batches, Some(now))?;
        if let Some((took, bytes)) = checkpoint_took {
            tracing::info!(
                bytes,
                copy_seconds = took.as_secs_f64(),
                "wrote a checkpoint of the open chunks"
            );
        }
        {
            // everything cut and every series row is on disk now: idle series may leave memory
            // (one that got a sample meanwhile stays, and its end just written is void)
            let mut head = self.head.write().expect("head lock");
            let dropped = head.drop_idle(&idle, idle_cutoff);
            if dropped < idle.len() {
                let stayed: Vec<SeriesRef> = idle
                    .iter()
                    .map(|&(id, _)| id)
                    .filter(|&id| head.contains(id))
                    .collect();
                head.revived.extend(stayed);
            }
            stats.series_dropped = dropped;
        }
        let first_kept = block_of(now - self.opts.retention_ms);
        db.delete_blocks_before(first_kept)?;
        // series whose last chunk retention deleted, unless memory or the write-ahead rows still
        // hold samples of them
        let prune_before = db
            .wal_mint()?
            .map_or(first_kept * BLOCK_MS, |w| w.min(first_kept * BLOCK_MS));
        let pruned = {
            let head = self.head.read().expect("head lock");
            db.prune_series(prune_before, &|id| head.contains(id))?
        };
        if !pruned.is_empty() {
            let mut notes = self.notes.write().expect("notes lock");
            for id in &pruned {
                notes.remove(id);
            }
            stats.series_pruned = pruned.len();
        }
        db.vacuum_step()?;
        db.checkpoint()?;
        stats.seconds = started.elapsed().as_secs_f64();
        Ok(stats)
    }

    /// Makes one rule evaluation durable: appends its samples (recorded series, `ALERTS`) and
    /// writes them with its alert states, evaluation records, transitions, outbox rows and
    /// their notification-log entries, and shadow notifications, in one transaction. So after a
    /// crash an alert's state and the notification it caused are both there or both not.
    /// Nothing else: no chunk, trim, retention or checkpoint (the periodic [`Store::flush`]).
    /// On an error everything is kept and written first by the next flush or commit.
    pub fn commit_evaluation(&self, rows: EvaluationRows) -> Result<FlushStats, StoreError> {
        let started = Instant::now();
        let at = rows
            .rules
            .iter()
            .filter_map(|r| r.eval.as_ref().map(|e| e.t))
            .chain(rows.samples.iter().map(|s| s.1))
            .max();
        let mut db = self.db.lock().expect("db lock");
        let batches = {
            let mut head = self.head.write().expect("head lock");
            let mut pending = self.pending.lock().expect("pending lock");
            let mut wal = WalBatch::default();
            let mut stats = AppendStats::default();
            for (labels, t, v) in rows.samples {
                let id = match Self::resolve(&db, &mut head, labels) {
                    Ok(id) => id,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot look a series up in the store");
                        continue;
                    }
                };
                let before = stats.appended;
                head.append(id, t, v, &mut stats);
                if stats.appended > before {
                    wal.push(id, t, v);
                }
            }
            if !wal.is_empty() {
                pending.wal_rows.push_back((wal.maxt, wal.count));
            }
            // series rows before the wal row that names them (scrapes' new series come along)
            let new_series = std::mem::take(&mut head.new_series)
                .into_iter()
                .filter_map(|id| head.labels(id).map(|l| (id, l.clone())))
                .collect();
            let fresh = FlushBatch {
                new_series,
                wal_samples: wal.count,
                wal: (!wal.is_empty()).then_some(wal),
                rules: rows.rules,
                outbox: rows
                    .outbox
                    .into_iter()
                    .map(|entry| QueuedEntry {
                        entry,
                        ..Default::default()
                    })
                    .collect(),
                shadow: rows.shadow,
                rw_kind: self.rw_kinds.load(Ordering::Relaxed) & RW_RULES,
                ..Default::default()
            };
            let mut all = std::mem::take(&mut pending.failed);
            all.push(fresh);
            all
        };
        let mut stats = self.write(&mut db, batches, at)?;
        stats.seconds = started.elapsed().as_secs_f64();
        Ok(stats)
    }

    /// Writes batches oldest first, one transaction each; on an error keeps the unwritten ones
    /// for the next flush or commit, so nothing is dropped because the disk was full a while.
    /// Their outbox entries get memory ids then: the sender delivers them from memory
    /// ([`Store::outbox_due`]) until they are written. `at` is the write's time (ms), if known.
    fn write(
        &self,
        db: &mut Db,
        mut batches: Vec<FlushBatch>,
        at: Option<i64>,
    ) -> Result<FlushStats, StoreError> {
        let mut stats = FlushStats::default();
        for (written, batch) in batches.iter().enumerate() {
            match db.flush(batch) {
                Ok(moved) => {
                    if !moved.is_empty() {
                        self.pending
                            .lock()
                            .expect("pending lock")
                            .moved
                            .extend(moved);
                    }
                }
                Err(e) => {
                    batches.drain(..written);
                    let mut pending = self.pending.lock().expect("pending lock");
                    for q in batches.iter_mut().flat_map(|b| b.outbox.iter_mut()) {
                        if q.mem_id == 0 {
                            pending.last_mem_id -= 1;
                            q.mem_id = pending.last_mem_id;
                        }
                    }
                    pending.failed = batches;
                    self.write_failures.fetch_add(1, Ordering::Relaxed);
                    return Err(e);
                }
            }
            if batch.rw_kind != 0 && batch.wal.is_some() {
                self.rw_written.send_modify(|n| *n += 1);
            }
            stats.samples += batch.wal_samples;
            stats.chunks += batch.chunks.len();
            stats.series += batch.new_series.len();
        }
        if let Some(at) = at {
            self.last_write_ok_ms.fetch_max(at, Ordering::Relaxed);
        }
        Ok(stats)
    }

    /// Failed writes and the time of the last successful one.
    pub fn write_health(&self) -> WriteHealth {
        let last = self.last_write_ok_ms.load(Ordering::Relaxed);
        WriteHealth {
            failures: self.write_failures.load(Ordering::Relaxed),
            last_success_ms: (last != i64::MIN).then_some(last),
        }
    }

    /// Test support: makes every write that needs a new page of the file fail with SQLITE_FULL,
    /// what a full disk gives (`full`), or lifts that. Not for production use.
    #[doc(hidden)]
    pub fn simulate_full_disk(&self, full: bool) -> Result<(), StoreError> {
        self.db.lock().expect("db lock").limit_pages(full)
    }

    /// Applies `f` to the entry with memory id `id` of a batch still waiting in memory; false
    /// when none has it.
    fn in_memory(&self, id: i64, f: impl FnOnce(&mut QueuedEntry)) -> bool {
        let mut pending = self.pending.lock().expect("pending lock");
        match pending
            .failed
            .iter_mut()
            .flat_map(|b| b.outbox.iter_mut())
            .find(|q| q.mem_id == id)
        {
            Some(q) => {
                f(q);
                true
            }
            None => false,
        }
    }

    /// The row a memory id was written as, forgetting the mapping.
    fn moved_row(&self, id: i64) -> Option<i64> {
        self.pending.lock().expect("pending lock").moved.remove(&id)
    }

    /// Cuts every open chunk and flushes: after this the file holds everything and no WAL rows.
    pub fn close(&self, now: i64) -> Result<FlushStats, StoreError> {
        self.head.write().expect("head lock").cut_all();
        let stats = self.flush(now)?;
        // each series' end, so retention can prune the ones that never come back after a restart
        let ends: Vec<(SeriesRef, i64)> = {
            let head = self.head.read().expect("head lock");
            head.series
                .iter()
                .filter(|(_, s)| s.last_t != head::NO_SAMPLE)
                .map(|(id, s)| (id, s.last_t))
                .collect()
        };
        let mut db = self.db.lock().expect("db lock");
        self.write(
            &mut db,
            vec![FlushBatch {
                ends,
                ..Default::default()
            }],
            None,
        )?;
        Ok(stats)
    }

    /// The newest `limit` rows of the notification history, newest first, optionally only
    /// those with `status` (`delivered`, `failed`, `shadow`).
    pub fn sent(&self, limit: usize, status: Option<&str>) -> Result<Vec<SentRow>, StoreError> {
        self.db.lock().expect("db lock").sent(limit, status)
    }

    /// Queued notifications of every receiver that has one due at `now`, oldest first, due or
    /// not: a receiver's rows go out in order, so a row not yet due holds back the later ones.
    /// At most `limit` rows per receiver (its oldest), so one receiver's backlog cannot crowd
    /// out the others.
    ///
    /// Besides the file's rows, the notifications of evaluations whose commit failed (a full
    /// disk) and that wait in memory, after the file's: their ids are negative, and the outcome
    /// methods ([`Store::outbox_delivered`], …) record it in memory, so the batch is written with
    /// it (a delivered notification goes to the history, not the outbox) when the store can
    /// write again; or on the row, if it was written meanwhile.
    pub fn outbox_due(&self, now: i64, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        let db = self.db.lock().expect("db lock");
        let mut rows = db.outbox_due(now, limit)?;
        let pending = self.pending.lock().expect("pending lock");
        let memory: Vec<OutboxRow> = pending
            .failed
            .iter()
            .flat_map(|b| b.outbox.iter())
            .filter(|q| q.mem_id < 0 && q.delivered.is_none() && q.failed.is_none())
            .map(|q| OutboxRow {
                id: q.mem_id,
                receiver: q.entry.receiver.clone(),
                group_key: q.entry.group_key.clone(),
                idempotency_key: q.entry.idempotency_key.clone(),
                payload: q.entry.payload.clone(),
                created: q.entry.created,
                attempts: q.attempts,
                next_attempt: q.next_attempt.max(q.entry.created),
            })
            .collect();
        drop(pending);
        drop(db);
        if memory.is_empty() {
            return Ok(rows);
        }
        // a receiver's rows go out in order: the file's first, then memory's; a receiver is
        // due when any of its rows is
        let due: std::collections::HashSet<&str> = rows
            .iter()
            .chain(&memory)
            .filter(|r| r.next_attempt <= now)
            .map(|r| r.receiver.as_str())
            .collect();
        let mut count: HashMap<String, usize> = HashMap::new();
        for r in &rows {
            *count.entry(r.receiver.clone()).or_default() += 1;
        }
        let due: std::collections::HashSet<String> = due.into_iter().map(String::from).collect();
        for r in memory {
            let n = count.entry(r.receiver.clone()).or_default();
            if due.contains(&r.receiver) && *n < limit {
                *n += 1;
                rows.push(r);
            }
        }
        Ok(rows)
    }

    /// Queues a notification at once (a fallback after a permanent failure; no log entry).
    pub fn outbox_insert(&self, entry: &OutboxEntry) -> Result<(), StoreError> {
        self.db.lock().expect("db lock").outbox_insert(entry)
    }

    /// Removes a delivered notification.
    /// (A negative id: a notification in memory, see [`Store::outbox_due`].)
    pub fn outbox_delivered(&self, id: i64, now: i64) -> Result<(), StoreError> {
        let mut db = self.db.lock().expect("db lock");
        if id >= 0 {
            return db.outbox_delivered(id, now);
        }
        if self.in_memory(id, |q| q.delivered = Some(now)) {
            return Ok(());
        }
        match self.moved_row(id) {
            Some(row) => db.outbox_delivered(row, now),
            None => Ok(()),
        }
    }

    /// Schedules another attempt.
    pub fn outbox_retry(&self, id: i64, next_attempt: i64, error: &str) -> Result<(), StoreError> {
        let db = self.db.lock().expect("db lock");
        if id >= 0 {
            return db.outbox_retry(id, next_attempt, error);
        }
        let found = self.in_memory(id, |q| {
            q.attempts += 1;
            q.next_attempt = next_attempt;
            q.last_error = Some(error.to_string());
        });
        if found {
            return Ok(());
        }
        match self.moved_row(id) {
            Some(row) => db.outbox_retry(row, next_attempt, error),
            None => Ok(()),
        }
    }

    /// Gives up on a notification (kept, marked failed, for inspection).
    pub fn outbox_failed(&self, id: i64, error: &str, now: i64) -> Result<(), StoreError> {
        let mut db = self.db.lock().expect("db lock");
        if id >= 0 {
            return db.outbox_failed(id, error, now);
        }
        let found = self.in_memory(id, |q| {
            q.attempts += 1;
            q.failed = Some(now);
            q.last_error = Some(error.to_string());
        });
        if found {
            return Ok(());
        }
        match self.moved_row(id) {
            Some(row) => db.outbox_failed(row, error, now),
            None => Ok(()),
        }
    }

    /// Notifications waiting to be delivered (those waiting in memory included).
    pub fn outbox_depth(&self) -> Result<u64, StoreError> {
        Ok(self.outbox_summary()?.0)
    }

    /// Notifications waiting to be delivered (those waiting in memory included) and the
    /// creation time (ms) of the oldest.
    pub fn outbox_summary(&self) -> Result<(u64, Option<i64>), StoreError> {
        let db = self.db.lock().expect("db lock");
        let (mut depth, mut oldest) = db.outbox_summary()?;
        let pending = self.pending.lock().expect("pending lock");
        for q in pending.failed.iter().flat_map(|b| b.outbox.iter()) {
            if q.delivered.is_none() && q.failed.is_none() {
                depth += 1;
                oldest = Some(oldest.map_or(q.entry.created, |o| o.min(q.entry.created)));
            }
        }
        Ok((depth, oldest))
    }

    /// Writes (creates or replaces) a silence, durably at once.
    pub fn put_silence(&self, id: &str, json: &str, ends_at: i64) -> Result<(), StoreError> {
        self.db
            .lock()
            .expect("db lock")
            .put_silence(id, json, ends_at)
    }

    /// Every stored silence (JSON), dropping those that ended before `forget_before`.
    /// Every stored silence, without forgetting any (for a read-only store: `tocsin replay`).
    pub fn stored_silences(&self) -> Result<Vec<String>, StoreError> {
        self.db.lock().expect("db lock").silences()
    }

    pub fn silences(&self, forget_before: i64) -> Result<Vec<String>, StoreError> {
        let db = self.db.lock().expect("db lock");
        db.delete_silences_before(forget_before)?;
        db.silences()
    }

    /// The notification log: `(receiver, group key, entry)`.
    pub fn nflog(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        self.db.lock().expect("db lock").nflog()
    }

    /// Every persisted alert state: `(rule key, fingerprint, state json)`.
    pub fn rule_states(&self) -> Result<Vec<(String, u64, String)>, StoreError> {
        self.db.lock().expect("db lock").rule_states()
    }

    /// The last evaluations of a rule (at most 20), newest first.
    pub fn rule_evals(&self, rule_key: &str) -> Result<Vec<RuleEval>, StoreError> {
        self.db.lock().expect("db lock").rule_evals(rule_key)
    }

    /// The last alert state transitions of a rule (at most 100), newest first.
    pub fn rule_transitions(&self, rule_key: &str) -> Result<Vec<RuleTransition>, StoreError> {
        self.db.lock().expect("db lock").rule_transitions(rule_key)
    }

    /// Ids of the series in memory matching all matchers.
    pub fn select_ids(&self, matchers: &[Matcher]) -> Vec<SeriesRef> {
        self.head.read().expect("head lock").select_ids(matchers)
    }

    /// Label sets of the series in memory (the live ones) matching all matchers.
    pub fn series(&self, matchers: &[Matcher]) -> Vec<Arc<Labels>> {
        let head = self.head.read().expect("head lock");
        head.select_ids(matchers)
            .into_iter()
            .filter_map(|id| head.labels(id).cloned())
            .collect()
    }

    /// Label sets of the series matching all matchers: those in memory, and those on disk with
    /// any sample in [mint, maxt] (ms, inclusive).
    pub fn series_between(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Arc<Labels>>, StoreError> {
        let (mut out, ids, horizon) = {
            let head = self.head.read().expect("head lock");
            let ids = head.select_ids(matchers);
            let labels: Vec<Arc<Labels>> = ids
                .iter()
                .filter_map(|&id| head.labels(id).cloned())
                .collect();
            (labels, ids, head.horizon())
        };
        if mint < horizon {
            for s in self.read_disk_only(matchers, &ids, mint, maxt.min(horizon - 1))? {
                out.push(s.labels);
            }
        }
        Ok(out)
    }

    /// Samples in [mint, maxt] (ms, inclusive) of every series matching the matchers; series
    /// without samples in the range are left out. Staleness markers are included as stored
    /// (see [`is_stale`]). Series that left memory are read from disk when the range reaches
    /// before the head's horizon.
    pub fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StoreError> {
        let (ids, horizon) = {
            let head = self.head.read().expect("head lock");
            (head.select_ids(matchers), head.horizon())
        };
        let mut out = self.read_ids(&ids, mint, maxt)?;
        if mint < horizon {
            out.extend(self.read_disk_only(matchers, &ids, mint, maxt.min(horizon - 1))?);
        }
        Ok(out)
    }

    /// Series on disk matching the matchers that were not in memory (`in_memory`, ascending),
    /// with their samples in [mint, maxt]; those without any are left out.
    fn read_disk_only(
        &self,
        matchers: &[Matcher],
        in_memory: &[SeriesRef],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StoreError> {
        if maxt < mint {
            return Ok(Vec::new());
        }
        let db = self.db.lock().expect("db lock");
        let found = db.select_series(matchers, &|id| in_memory.binary_search(&id).is_ok())?;
        let blocks = db.block_range()?;
        let mut out = Vec::new();
        for (id, labels) in found {
            let mut samples = Vec::new();
            db.read_chunks(id, (mint, maxt), i64::MAX, blocks, &mut samples)?;
            if !samples.is_empty() {
                out.push(SeriesSamples {
                    labels: Arc::new(labels),
                    samples,
                });
            }
        }
        Ok(out)
    }

    /// Calls `f` with each matching series' samples in [mint, maxt] (staleness markers included),
    /// reusing one buffer: what streaming readers (range functions over 100k series) use instead
    /// of [`Store::select`]. Series held in memory come first, under the head's read lock (keep
    /// `f` short); series that need the file follow. Series without samples are skipped.
    pub fn select_each(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        f: &mut SeriesVisitor<'_>,
    ) -> Result<(), StoreError> {
        let mut need_disk = Vec::new();
        let (ids, horizon) = {
            let head = self.head.read().expect("head lock");
            let mut buf = Vec::new();
            let ids = head.select_ids(matchers);
            for &id in &ids {
                let Some(labels) = head.labels(id) else {
                    continue;
                };
                buf.clear();
                let mem_since = head.read(id, mint, maxt, &mut buf);
                if mint < mem_since {
                    need_disk.push(id);
                } else if !buf.is_empty() {
                    f(labels, &buf);
                }
            }
            (ids, head.horizon())
        };
        for s in self.read_ids(&need_disk, mint, maxt)? {
            f(&s.labels, &s.samples);
        }
        if mint < horizon {
            for s in self.read_disk_only(matchers, &ids, mint, maxt.min(horizon - 1))? {
                f(&s.labels, &s.samples);
            }
        }
        Ok(())
    }

    /// Samples in [mint, maxt] of the given series: memory first, the file for older data.
    fn read_ids(
        &self,
        ids: &[SeriesRef],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        let mut need_disk = Vec::new();
        {
            let head = self.head.read().expect("head lock");
            for &id in ids {
                let Some(labels) = head.labels(id).cloned() else {
                    continue;
                };
                let mut samples = Vec::new();
                let mem_since = head.read(id, mint, maxt, &mut samples);
                if mint < mem_since {
                    need_disk.push((out.len(), id, mem_since));
                }
                out.push(SeriesSamples { labels, samples });
            }
        }
        if !need_disk.is_empty() {
            let db = self.db.lock().expect("db lock");
            let blocks = db.block_range()?;
            for (idx, id, mem_since) in need_disk {
                let mut older = Vec::new();
                db.read_chunks(id, (mint, maxt), mem_since, blocks, &mut older)?;
                if !older.is_empty() {
                    let s = &mut out[idx].samples;
                    older.append(s);
                    *s = older;
                }
            }
        }
        out.retain(|s| !s.samples.is_empty());
        Ok(out)
    }

    /// For each matching series, its newest sample in (t - lookback, t], unless that sample is a
    /// staleness marker (the series ended): Prometheus's instant-vector selection.
    /// At the head of time (the usual evaluation) this reads only each series' last sample.
    pub fn latest(
        &self,
        matchers: &[Matcher],
        t: i64,
        lookback: i64,
    ) -> Result<Vec<(Arc<Labels>, i64, f64)>, StoreError> {
        let mut out = Vec::new();
        let mut slow = Vec::new();
        let (ids, horizon) = {
            let head = self.head.read().expect("head lock");
            let ids = head.select_ids(matchers);
            for &id in &ids {
                match head.latest_from_open(id, t, lookback) {
                    Some(Some((st, v))) => {
                        if !is_stale(v) {
                            out.push((head.labels(id).expect("selected").clone(), st, v));
                        }
                    }
                    Some(None) => {}
                    None => slow.push(id),
                }
            }
            (ids, head.horizon())
        };
        let mut older = self.read_ids(&slow, t - lookback + 1, t)?;
        if t - lookback + 1 < horizon {
            // series that left memory with a last sample inside the lookback
            older.extend(self.read_disk_only(
                matchers,
                &ids,
                t - lookback + 1,
                t.min(horizon - 1),
            )?);
        }
        for s in older {
            let &(st, v) = s.samples.last().expect("empty series are dropped");
            if !is_stale(v) {
                out.push((s.labels, st, v));
            }
        }
        Ok(out)
    }

    /// The first and last sample time on disk (chunks and flushed write-ahead rows), None for
    /// a store without samples. Cheap: two index seeks and the first and last block's rows.
    pub fn sample_range(&self) -> Result<Option<(i64, i64)>, StoreError> {
        self.db.lock().expect("db lock").sample_range()
    }

    /// When each target was first watched (ms), as [`Store::target_first_seen`] recorded it;
    /// reads only, so it works on a read-only store.
    pub fn targets_first_seen(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.db.lock().expect("db lock").targets_first_seen()
    }

    /// When target `name` was first watched (ms); records `now` the first time.
    pub fn target_first_seen(&self, name: &str, now: i64) -> Result<i64, StoreError> {
        self.db
            .lock()
            .expect("db lock")
            .target_first_seen(name, now)
    }

    pub fn stats(&self) -> StoreStats {
        // the head lock is released before the file lock: writers take the file lock first
        let (series, head_chunk_bytes) = {
            let head = self.head.read().expect("head lock");
            (head.series_count(), head.chunk_bytes())
        };
        StoreStats {
            series,
            head_chunk_bytes,
            disk_bytes: self.db.lock().expect("db lock").size_bytes(),
        }
    }

    /// The head's heap bytes by part (see [`HeadMemory`]).
    pub fn head_memory(&self) -> HeadMemory {
        self.head.read().expect("head lock").memory()
    }

    /// Bytes of chunk data on disk and the samples they hold.
    pub fn chunk_stats(&self) -> Result<(u64, u64), StoreError> {
        self.db.lock().expect("db lock").chunk_stats()
    }

    pub fn path(&self) -> PathBuf {
        self.db.lock().expect("db lock").path().to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replay on several threads, in blocks of any size, rebuilds what appending every row's
    /// samples in write order does: the same open chunks, cut chunks and counts, with ids the
    /// run lacks counted as unknown and chunks cut mid-replay.
    #[test]
    fn replay_in_parts_and_blocks_rebuilds_what_appending_in_write_order_does() {
        // 40 series with gaps in their ids, rows naming two ids no series has (3 and 200)
        let ids: Vec<SeriesRef> = (0..40).map(|k| 5 + 2 * k).collect();
        let mut rows = Vec::new();
        let mut t = 1_700_000_000_000i64;
        for r in 0..12i64 {
            let mut b = wal::WalBatch::default();
            for s in 0..3 {
                t += 1000;
                for (k, &id) in ids.iter().enumerate() {
                    let k = k as i64;
                    // series come and go between rows
                    if (k + r) % 5 == 0 {
                        continue;
                    }
                    // 1 to 3 samples a series a row (3 scrapes a flush, some skipped): over 120
                    // samples a series, so chunks are cut during the replay
                    if s > 0 && (k + s) % 3 == 0 {
                        continue;
                    }
                    for x in 0..8 {
                        b.push(id, t + x * 10, (k * 100 + r * 7 + s + x) as f64 * 0.5);
                    }
                }
                b.push(3, t, 1.0);
                b.push(200, t, 2.0);
            }
            rows.push(wal::encode(&b.buf));
        }
        let groups: Vec<wal::Groups<'_>> = rows
            .iter()
            .map(|r| wal::Groups::new(r).unwrap().expect("grouped"))
            .collect();
        let nobody = Arc::new(Labels::default());
        let fresh = || -> Vec<(SeriesRef, head::MemSeries)> {
            ids.iter()
                .map(|&id| (id, head::MemSeries::detached(nobody.clone(), None)))
                .collect()
        };
        // the reference: every row's samples in write order, one at a time
        let mut want_series = fresh();
        let (want_cut, want_stats) = {
            let mut part = ReplayPart::new(&mut want_series);
            for row in &rows {
                for (id, t, v) in wal::decode(row).unwrap() {
                    let i = ids.binary_search(&id).unwrap_or(ids.len());
                    part.append_at(i, id, |push| push(t, v));
                }
            }
            part.finish()
        };
        assert!(
            want_cut.len() >= ids.len(),
            "chunks were cut: {}",
            want_cut.len()
        );
        assert_eq!(want_stats.unknown_series, 2 * 12 * 3);
        let key = |c: &ClosedChunk| (c.series, c.mint, c.maxt, c.data.to_vec());
        let mut want_chunks: Vec<_> = want_cut.iter().map(key).collect();
        want_chunks.sort();
        for (threads, block) in [(1, 2048), (1, 1), (2, 3), (3, 7), (4, 1), (8, 64)] {
            let mut series = fresh();
            let (cut, stats) =
                Store::replay_grouped_with(&mut series, &groups, threads, block).unwrap();
            assert_eq!(stats, want_stats, "threads {threads}, block {block}");
            let mut chunks: Vec<_> = cut.iter().map(key).collect();
            chunks.sort();
            assert_eq!(chunks, want_chunks, "threads {threads}, block {block}");
            for ((id, got), (_, want)) in series.iter().zip(&want_series) {
                assert_eq!(got.open.bytes(), want.open.bytes(), "series {id}");
                assert_eq!((got.last_t, got.mem_since), (want.last_t, want.mem_since));
            }
        }
    }

    /// A damaged row fails the replay whichever part meets the damage.
    #[test]
    fn damage_in_any_part_fails_the_replay() {
        let mut b = wal::WalBatch::default();
        for id in 1..=50 {
            b.push(id, 1_000, 1.0);
        }
        let mut row = wal::encode(&b.buf);
        row.truncate(row.len() - 5);
        let groups = vec![wal::Groups::new(&row).unwrap().expect("grouped")];
        let nobody = Arc::new(Labels::default());
        for threads in [1, 2, 4] {
            let mut series: Vec<_> = (1..=50)
                .map(|id| (id, head::MemSeries::detached(nobody.clone(), None)))
                .collect();
            assert!(Store::replay_grouped_with(&mut series, &groups, threads, 4).is_err());
        }
    }
}
