//! The SQLite file: schema, durable writes and disk reads. The only code in tocsin that touches SQLite.
//!
//! Tables: `series` (stable id per label set), `chunks` (compressed chunks; rowid in append order,
//! indexed by `(block, series_id, mint)`, so writes land at the tail and retention deletes a prefix),
//! `wal` (one row per flush with the samples not yet in a chunk), `notes` (the text that goes with a
//! series' last sample, e.g. a health check's failure), `targets` (when each target was first watched),
//! `alerts` (each rule's alert states), `rule_evals` (the last 20 evaluations per rule),
//! `rule_transitions` (the last 100 alert state transitions per rule), `outbox`, `nflog`, `silences`, `rw_queue` (samples waiting for remote write: a copy of the `wal`
//! row, written in its transaction) and `rw_cursor` (how far each remote write entry has sent).
//! WAL journal mode, `synchronous=NORMAL`: a committed flush survives a process crash (kill -9);
//! an OS crash or power loss may lose the last flushes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
use super::head::{ClosedChunk, SeriesRef, block_of};
use crate::labels::Labels;

/// `PRAGMA application_id` of a tocsin store ("tocs"): refuses to reuse another program's database.
const APPLICATION_ID: i64 = 0x746f_6373;
/// Schema version in `PRAGMA user_version`. 2: `wal` rows may be in wal.rs's grouped layout
/// (a version-1 tocsin refuses such a store as newer instead of failing on its rows); version-1
/// stores, raw rows only, open and are upgraded in place. 3: `chunks` rows may be decimal chunks
/// (chunk/dec.rs), which a version-2 tocsin would report as corrupt: it refuses the store instead.
const SCHEMA_VERSION: i64 = 3;

/// `PRAGMA auto_vacuum` value of incremental vacuum: free pages stay in the file until
/// `PRAGMA incremental_vacuum` returns them.
const AUTO_VACUUM_INCREMENTAL: i64 = 2;

/// Free pages a flush returns to the file system at most, after retention deleted blocks (16 MiB
/// at SQLite's 4 KiB pages): bounds the flush's extra work (incremental vacuum moves pages from
/// the end of the file into the holes) while a large deletion is given back over a few flushes.
pub(crate) const VACUUM_PAGES_PER_FLUSH: i64 = 4096;

/// Size the `-wal` file is truncated to after a checkpoint resets it (`PRAGMA
/// journal_size_limit`): a flush of 100k series writes a few MB, so a burst (a start-up's new
/// series, a long read holding the checkpoint back) does not leave a large file behind.
const JOURNAL_SIZE_LIMIT: i64 = 32 << 20;

/// The tables of the first schema: every tocsin store has them (later tables are created by
/// `CREATE TABLE IF NOT EXISTS` when an older store is opened).
const CORE_TABLES: [&str; 3] = ["series", "chunks", "wal"];

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    labels TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    block INTEGER NOT NULL,
    series_id INTEGER NOT NULL,
    mint INTEGER NOT NULL,
    maxt INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_block_series ON chunks (block, series_id, mint);
CREATE TABLE IF NOT EXISTS wal (
    id INTEGER PRIMARY KEY,
    mint INTEGER NOT NULL,
    maxt INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS notes (
    series_id INTEGER PRIMARY KEY,
    t INTEGER NOT NULL,
    text TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS targets (
    name TEXT PRIMARY KEY,
    first_seen INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
    rule_key TEXT NOT NULL,
    fingerprint INTEGER NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (rule_key, fingerprint)
);
CREATE TABLE IF NOT EXISTS rule_evals (
    id INTEGER PRIMARY KEY,
    rule_key TEXT NOT NULL,
    t INTEGER NOT NULL,
    duration REAL NOT NULL,
    results INTEGER NOT NULL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS rule_evals_by_key ON rule_evals (rule_key, t);
CREATE TABLE IF NOT EXISTS rule_transitions (
    id INTEGER PRIMARY KEY,
    rule_key TEXT NOT NULL,
    t INTEGER NOT NULL,
    fingerprint INTEGER NOT NULL,
    labels TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    flapping INTEGER
);
CREATE INDEX IF NOT EXISTS rule_transitions_by_key ON rule_transitions (rule_key, id);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    receiver TEXT NOT NULL,
    group_key TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    payload TEXT NOT NULL,
    created INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt INTEGER NOT NULL,
    last_error TEXT,
    failed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (failed, next_attempt);
CREATE TABLE IF NOT EXISTS silences (
    id TEXT PRIMARY KEY,
    silence TEXT NOT NULL,
    ends_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sent (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    integration TEXT NOT NULL,
    group_key TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS nflog (
    receiver TEXT NOT NULL,
    group_key TEXT NOT NULL,
    entry TEXT NOT NULL,
    PRIMARY KEY (receiver, group_key)
);
CREATE TABLE IF NOT EXISTS rw_queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind INTEGER NOT NULL,
    mint INTEGER NOT NULL,
    maxt INTEGER NOT NULL,
    samples INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS rw_cursor (
    remote TEXT PRIMARY KEY,
    row INTEGER NOT NULL,
    done INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS series_labels (
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    series_id INTEGER NOT NULL,
    PRIMARY KEY (name, value, series_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS series_ends (
    series_id INTEGER PRIMARY KEY,
    maxt INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS series_ends_by_maxt ON series_ends (maxt);
CREATE TABLE IF NOT EXISTS store_meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
";

/// Rows kept in `sent`, the history of delivered, failed and shadow notifications.
pub const SENT_KEPT: i64 = 1000;

/// Keeps the newest 20 evaluations of rule `?1` in `rule_evals` (and any as old as the 20th:
/// [`Db::rule_evals`] reads 20), by the time of the 20th, one index search, where a `NOT IN` the
/// newest 20 built the list at every evaluation (1.8 → 1.0 ms a cycle of 100 rules, insert and
/// commit included).
///
/// Written so that SQLite never re-prepares it: SQLite marks a statement to be compiled again at
/// every bind of a parameter that its `LIMIT` reads, or that an `ORDER BY` query compares a
/// column to (in case the value changes the plan), which at every rule's evaluation was ~7% of
/// the daemon's CPU beside vmalert at 100 remote rules (`perf`). So the count is a literal and
/// the key goes through a `CAST`, which hides the parameter from the planner's look-ahead and
/// keeps the plan (a search of `rule_evals_by_key`).
const PRUNE_RULE_EVALS: &str = "DELETE FROM rule_evals WHERE rule_key = ?1 AND t <
    (SELECT t FROM rule_evals WHERE rule_key = CAST(?1 AS TEXT) ORDER BY t DESC LIMIT 1 OFFSET 19)";

/// Keeps the newest [`SENT_KEPT`] rows of the notification history.
fn prune_sent(tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
    tx.prepare_cached("DELETE FROM sent WHERE id <= (SELECT MAX(id) FROM sent) - ?1")?
        .execute([SENT_KEPT])?;
    Ok(())
}

/// The chunks of series `?2` in block `?1` that overlap `?3..=?4`, in time order (a search of
/// `chunks_by_block_series`). The keys go through a `CAST` so that SQLite does not re-prepare the
/// statement at each bind (see [`PRUNE_RULE_EVALS`]): a 5-minute read of 10k series from disk
/// (`benches/store.rs`) took 270 ms with plain keys, 136 ms with these.
const READ_CHUNKS: &str = "SELECT mint, data FROM chunks
    WHERE block = CAST(?1 AS INTEGER) AND series_id = CAST(?2 AS INTEGER) AND maxt >= ?3 AND mint <= ?4
    ORDER BY mint";

/// Keeps the newest 100 alert state transitions of rule `?1` in `rule_transitions` (by the id of
/// the 100th, and written never to be re-prepared, as [`PRUNE_RULE_EVALS`]).
const PRUNE_RULE_TRANSITIONS: &str = "DELETE FROM rule_transitions WHERE rule_key = ?1 AND id <
    (SELECT id FROM rule_transitions WHERE rule_key = CAST(?1 AS TEXT) ORDER BY id DESC LIMIT 1 OFFSET 99)";

/// The stored form of a label set: a JSON array of `[name, value]` pairs.
fn labels_json(labels: &Labels, out: &mut String) {
    let pairs: Vec<(&str, &str)> = labels.iter().collect();
    out.push_str(&serde_json::to_string(&pairs).expect("labels serialize"));
}

/// Everything one flush makes durable, in one transaction.
#[derive(Default)]
pub(crate) struct FlushBatch {
    pub new_series: Vec<(SeriesRef, Arc<Labels>)>,
    /// the raw records: written in wal.rs's compact form
    pub wal: Option<super::wal::WalBatch>,
    /// samples in `wal`
    pub wal_samples: usize,
    /// a checkpoint (every open chunk, `wal::CheckpointWriter`): written instead of the `wal`
    /// row, whose samples it holds, and every row before it is deleted
    pub checkpoint: Vec<super::wal::CheckpointRow>,
    pub chunks: Vec<ClosedChunk>,
    pub notes: Vec<(SeriesRef, i64, String)>,
    /// which WAL rows are in chunks now and are deleted
    pub wal_trim: WalTrim,
    /// rule states to replace, in the same transaction as the samples the evaluation wrote
    pub rules: Vec<super::RuleStateRow>,
    /// notifications to queue and the notification-log entries they imply, same transaction;
    /// each with what the sender did with it while the batch waited in memory
    pub outbox: Vec<QueuedEntry>,
    /// shadow notifications (dry run): recorded in `sent`, never queued
    pub shadow: Vec<super::OutboxEntry>,
    /// remote write: the `wal` row is also queued in `rw_queue` as this kind (0: not queued)
    pub rw_kind: u8,
    /// series leaving memory with their last sample time (`series_ends`, for pruning)
    pub ends: Vec<(SeriesRef, i64)>,
    /// series back in memory: their recorded end is void
    pub revived: Vec<SeriesRef>,
}

/// An outbox entry of a batch, with what happened to it while the batch could not be written
/// (the sender delivers such entries from memory: see [`super::Store::outbox_due`]).
#[derive(Debug, Default)]
pub(crate) struct QueuedEntry {
    pub entry: super::OutboxEntry,
    /// 0 until the batch's first write fails; then negative, the row id the sender sees
    pub mem_id: i64,
    pub attempts: u32,
    /// next attempt (ms); 0: at `created`
    pub next_attempt: i64,
    pub last_error: Option<String>,
    /// delivered from memory at this time: written to the history, never queued
    pub delivered: Option<i64>,
    /// failed permanently from memory at this time: written as a failed row
    pub failed: Option<i64>,
}

/// Which `wal` rows a batch deletes: a flush deletes those whose samples are all in chunks; an
/// evaluation's commit writes no chunk and deletes nothing.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) enum WalTrim {
    #[default]
    Keep,
    /// rows whose samples all lie before this (the oldest open chunk's start)
    Before(i64),
    /// no open chunk anywhere: every sample is in a chunk
    All,
}

/// A write-ahead row: its first sample's time and its bytes (shared while opening walks them).
pub(crate) type WalRow = (i64, Arc<Vec<u8>>);

pub(crate) struct Db {
    conn: Connection,
    path: PathBuf,
    /// retention deleted chunks and their free pages are not all returned yet (see
    /// [`Db::vacuum_step`]); also set at open when half the file is free pages (a third is usual
    /// after a clean stop of a short run: the trimmed `wal` rows, which the next rows reuse)
    vacuum_pending: bool,
}

/// Prepared statements kept per connection: more than this file's `prepare_cached` sites, so
/// none is prepared twice. rusqlite keeps 16 by default, fewer than a flush and a rule
/// evaluation use between them: each cycle evicted and prepared some again (~1% of the CPU
/// beside vmalert at 100 rules under perf).
const STATEMENT_CACHE: usize = 80;

fn open_err(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    }
}

impl Db {
    /// Opens the file; `read_only` never creates or changes it (a reader beside a running
    /// daemon: SQLite's WAL mode gives it a consistent snapshot per statement).
    pub fn open(path: &Path, read_only: bool) -> Result<Db, StoreError> {
        let conn = if read_only {
            if !path.exists() {
                return Err(StoreError::Missing {
                    path: path.to_path_buf(),
                });
            }
            Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .map_err(open_err(path))?
        } else {
            // the data directory exists: `Store::open` created it to take the write lock first
            // a 0-byte file is not a store tocsin left (its first open writes the header in
            // the same step): a truncated or wrongly created file is refused, never re-initialised
            if std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0) {
                return Err(StoreError::Corrupt {
                    path: path.to_path_buf(),
                    detail: "the file is empty (0 bytes); move it away to start a new store".into(),
                });
            }
            Connection::open(path).map_err(open_err(path))?
        };
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // the first statement reads the header: a file that is not SQLite fails here, clearly,
        // and is never overwritten
        let app_id: i64 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(open_err(path))?;
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(open_err(path))?;
        if app_id != APPLICATION_ID && (app_id != 0 || tables != 0) {
            return Err(StoreError::Foreign {
                path: path.to_path_buf(),
            });
        }
        if app_id == APPLICATION_ID {
            // tocsin's own store: the tables every version has wrote must all be there; one
            // missing (a damaged file, a hand edit) would be re-created empty below and old
            // chunks attributed to new, unrelated series ids
            for table in CORE_TABLES {
                let found: i64 = conn
                    .query_row(
                        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                        [table],
                        |r| r.get(0),
                    )
                    .map_err(open_err(path))?;
                if found == 0 {
                    return Err(StoreError::Corrupt {
                        path: path.to_path_buf(),
                        detail: format!("table {table} is missing"),
                    });
                }
            }
        }
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(open_err(path))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path: path.to_path_buf(),
                version,
            });
        }
        if read_only {
            // versions 1 and 2 differ only in their `wal` rows being raw and their chunks all XOR,
            // which wal.rs and chunk.rs still read
            if !(1..=SCHEMA_VERSION).contains(&version) {
                return Err(StoreError::Corrupt {
                    path: path.to_path_buf(),
                    detail: format!("schema version {version}, expected {SCHEMA_VERSION}"),
                });
            }
            return Ok(Db {
                conn,
                path: path.to_path_buf(),
                vacuum_pending: false,
            });
        }
        // before the first table: a new file is created with incremental vacuum (on a file with
        // tables this does nothing until the VACUUM below)
        conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL")
            .map_err(open_err(path))?;
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA application_id={APPLICATION_ID};
             PRAGMA user_version={SCHEMA_VERSION}; {SCHEMA}"
        ))
        .map_err(open_err(path))?;
        // a damaged page in the schema or a table of alerting state (alert states, outbox,
        // silences, notification log, meta) shows up now, not at the first notification. The
        // time-series tables are not checked whole: at a million series and two hours they are
        // gigabytes, which `quick_check` read for 1.6 s at every start; a damaged page of theirs
        // is reported when it is read
        let tables: Vec<String> = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table'
                 AND name NOT IN ('chunks', 'wal', 'rw_queue', 'series', 'series_labels')
                 AND name NOT LIKE 'sqlite_%'",
            )
            .and_then(|mut stmt| stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>())
            .map_err(open_err(path))?;
        for table in tables {
            let check: String = conn
                .query_row(&format!("PRAGMA quick_check(\"{table}\")"), [], |r| {
                    r.get(0)
                })
                .map_err(open_err(path))?;
            if check != "ok" {
                return Err(StoreError::Corrupt {
                    path: path.to_path_buf(),
                    detail: format!("table {table}: {check}"),
                });
            }
        }
        let auto_vacuum: i64 = conn
            .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
            .map_err(open_err(path))?;
        if auto_vacuum != AUTO_VACUUM_INCREMENTAL {
            // a store created before incremental vacuum: one VACUUM rewrites it with the new
            // mode. VACUUM is one transaction: a crash during it leaves the file as it was (still
            // without the mode), and the next open converts it again
            let started = std::time::Instant::now();
            tracing::info!(path = %path.display(), "converting the store to incremental vacuum, once");
            conn.execute_batch("VACUUM").map_err(open_err(path))?;
            tracing::info!(seconds = started.elapsed().as_secs_f64(), "store converted");
        }
        conn.execute_batch(&format!("PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}"))
            .map_err(open_err(path))?;
        let (pages, free): (i64, i64) = conn
            .query_row(
                "SELECT * FROM pragma_page_count, pragma_freelist_count",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(open_err(path))?;
        // a store written before the newest chunk end was recorded: recorded once, now
        let recorded: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM store_meta WHERE key = 'newest_chunk_t')",
                [],
                |r| r.get(0),
            )
            .map_err(open_err(path))?;
        if !recorded {
            conn.execute(
                "INSERT INTO store_meta (key, value)
                 SELECT 'newest_chunk_t', max(maxt) FROM chunks
                 WHERE block = (SELECT max(block) FROM chunks) HAVING max(maxt) IS NOT NULL",
                [],
            )
            .map_err(open_err(path))?;
        }
        Ok(Db {
            conn,
            path: path.to_path_buf(),
            vacuum_pending: free * 2 > pages,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// For each series, the end of its newest chunk in blocks from `since_block` on, by id.
    pub fn chunk_maxt_since(&self, since_block: i64) -> Result<Vec<(SeriesRef, i64)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT series_id, max(maxt) FROM chunks WHERE block >= ?1 GROUP BY series_id",
        )?;
        let rows = stmt.query_map([since_block], |r| {
            Ok((r.get::<_, i64>(0)? as SeriesRef, r.get::<_, i64>(1)?))
        })?;
        let mut out: Vec<(SeriesRef, i64)> = rows.collect::<Result<_, _>>()?;
        out.sort_unstable();
        Ok(out)
    }

    /// The WAL rows in write order: (mint, data). `each` sees every row as soon as it is read
    /// (opening the store walks them for their series meanwhile).
    pub fn wal_batches(
        &self,
        mut each: impl FnMut(&Arc<Vec<u8>>),
    ) -> Result<Vec<WalRow>, StoreError> {
        // each row's bytes are read straight into its buffer: a `SELECT data` first assembles a
        // row (megabytes at a million series) in SQLite's memory, through its page cache, and
        // then it is copied again
        let mut stmt = self.conn.prepare("SELECT id, mint FROM wal ORDER BY id")?;
        let rows: Vec<(i64, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        rows.into_iter()
            .map(|(id, mint)| {
                let blob = self
                    .conn
                    .blob_open(rusqlite::MAIN_DB, "wal", "data", id, true)?;
                let mut data = vec![0u8; blob.len()];
                blob.read_at_exact(&mut data, 0)?;
                let data = Arc::new(data);
                each(&data);
                Ok((mint, data))
            })
            .collect()
    }

    pub fn notes(&self) -> Result<Vec<(SeriesRef, i64, String)>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT series_id, t, text FROM notes")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, i64>(0)? as SeriesRef, r.get(1)?, r.get(2)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The first and last sample time in chunks and write-ahead rows, None when the file holds
    /// no sample. Reads only the first block's index entries and [`Db::newest_sample`]'s.
    pub fn sample_range(&self) -> Result<Option<(i64, i64)>, StoreError> {
        let cmin: Option<i64> = self.conn.query_row(
            "SELECT min(mint) FROM chunks WHERE block = (SELECT min(block) FROM chunks)",
            [],
            |r| r.get(0),
        )?;
        let wmin: Option<i64> = self
            .conn
            .query_row("SELECT min(mint) FROM wal", [], |r| r.get(0))?;
        let min = cmin.into_iter().chain(wmin).min();
        Ok(min.zip(self.newest_sample()?))
    }

    /// The last sample time in chunks and write-ahead rows (what `open` needs, without
    /// [`Db::sample_range`]'s scan of the first block): the newest chunk end as the flushes
    /// recorded it (every chunk row of the last block, not in the index, took 1.1 s to read at a
    /// million series), read from the rows for a store written before that record.
    pub fn newest_sample(&self) -> Result<Option<i64>, StoreError> {
        let cmax = match self.block_range()? {
            None => None,
            Some(_) => match self.meta_value("newest_chunk_t")? {
                Some(t) => Some(t),
                None => self.conn.query_row(
                    "SELECT max(maxt) FROM chunks WHERE block = (SELECT max(block) FROM chunks)",
                    [],
                    |r| r.get(0),
                )?,
            },
        };
        let wmax: Option<i64> = self
            .conn
            .query_row("SELECT max(maxt) FROM wal", [], |r| r.get(0))?;
        Ok(cmax.into_iter().chain(wmax).max())
    }

    /// A `store_meta` value; None when absent, or without the table (a read-only open of a
    /// store an older tocsin wrote has none).
    fn meta_value(&self, key: &str) -> Result<Option<i64>, StoreError> {
        let has_meta: bool = self.conn.query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'store_meta'",
            [],
            |r| r.get(0),
        )?;
        if !has_meta {
            return Ok(None);
        }
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM store_meta WHERE key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?)
    }

    /// When each target was first watched (ms), without recording anything (read-only stores).
    pub fn targets_first_seen(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT name, first_seen FROM targets")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Writes `batch` in one transaction. Returns, for each outbox entry the sender saw in
    /// memory and that is queued now, its memory id and its row id.
    pub fn flush(&mut self, batch: &FlushBatch) -> Result<Vec<(i64, i64)>, StoreError> {
        let mut moved = Vec::new();
        let tx = self.conn.transaction()?;
        {
            let mut ins_series =
                tx.prepare_cached("INSERT INTO series (id, labels) VALUES (?1, ?2)")?;
            // one reused buffer: 100k new series at startup would otherwise be 100k strings at once
            let mut text = String::new();
            let mut ins_label = tx.prepare_cached(
                "INSERT OR IGNORE INTO series_labels (name, value, series_id) VALUES (?1, ?2, ?3)",
            )?;
            for (id, labels) in &batch.new_series {
                text.clear();
                labels_json(labels, &mut text);
                ins_series.execute(params![i64::from(*id), text])?;
                for (k, v) in labels.iter() {
                    ins_label.execute(params![k, v, i64::from(*id)])?;
                }
            }
            let mut del_end = tx.prepare_cached("DELETE FROM series_ends WHERE series_id = ?1")?;
            for id in &batch.revived {
                del_end.execute([i64::from(*id)])?;
            }
            let mut ins_end = tx.prepare_cached(
                "INSERT INTO series_ends (series_id, maxt) VALUES (?1, ?2)
                 ON CONFLICT (series_id) DO UPDATE SET maxt = excluded.maxt",
            )?;
            for (id, maxt) in &batch.ends {
                ins_end.execute(params![i64::from(*id), maxt])?;
            }
            let mut ins_chunk = tx.prepare_cached(
                "INSERT INTO chunks (block, series_id, mint, maxt, data) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for c in &batch.chunks {
                // stored in the smaller of its XOR and decimal forms (chunk.rs), here and not at
                // the cut: every series of a scrape cuts at once, and this is outside the head lock
                ins_chunk.execute(params![
                    block_of(c.mint),
                    i64::from(c.series),
                    c.mint,
                    c.maxt,
                    &*super::chunk::seal(&c.data)
                ])?;
            }
            if let Some(newest) = batch.chunks.iter().map(|c| c.maxt).max() {
                // what `sample_range` reads instead of every chunk row of the last block
                tx.prepare_cached(
                    "INSERT INTO store_meta (key, value) VALUES ('newest_chunk_t', ?1)
                     ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
                )?
                .execute([newest])?;
            }
            if let Some(wal) = batch
                .wal
                .as_ref()
                .filter(|_| batch.checkpoint.is_empty() || batch.rw_kind != 0)
            {
                // the compact form is made here, outside the head lock (see wal.rs); remote write
                // queues the same bytes
                let data = wal.encode();
                let (mint, maxt) = (wal.mint, wal.maxt);
                if batch.checkpoint.is_empty() {
                    tx.prepare_cached("INSERT INTO wal (mint, maxt, data) VALUES (?1, ?2, ?3)")?
                        .execute(params![mint, maxt, &data])?;
                }
                if batch.rw_kind != 0 {
                    tx.prepare_cached(
                        "INSERT INTO rw_queue (kind, mint, maxt, samples, data) VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?
                    .execute(params![batch.rw_kind, mint, maxt, batch.wal_samples as i64, &data])?;
                }
            }
            let mut first_checkpoint_row = None;
            for row in &batch.checkpoint {
                tx.prepare_cached("INSERT INTO wal (mint, maxt, data) VALUES (?1, ?2, ?3)")?
                    .execute(params![row.mint, row.maxt, &row.data])?;
                first_checkpoint_row.get_or_insert(tx.last_insert_rowid());
            }
            if let Some(first) = first_checkpoint_row {
                // their samples are in the checkpoint or in chunks
                tx.prepare_cached("DELETE FROM wal WHERE id < ?1")?
                    .execute([first])?;
            }
            let mut ins_note = tx.prepare_cached(
                "INSERT INTO notes (series_id, t, text) VALUES (?1, ?2, ?3)
                 ON CONFLICT (series_id) DO UPDATE SET t = excluded.t, text = excluded.text",
            )?;
            for (id, t, text) in &batch.notes {
                ins_note.execute(params![i64::from(*id), t, text])?;
            }
            for r in &batch.rules {
                tx.prepare_cached("DELETE FROM alerts WHERE rule_key = ?1")?
                    .execute([&r.rule_key])?;
                let mut ins = tx.prepare_cached(
                    "INSERT INTO alerts (rule_key, fingerprint, state) VALUES (?1, ?2, ?3)",
                )?;
                for (fp, state) in &r.alerts {
                    ins.execute(params![&r.rule_key, *fp as i64, state])?;
                }
                if let Some(e) = &r.eval {
                    tx.prepare_cached(
                        "INSERT INTO rule_evals (rule_key, t, duration, results, error) VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?
                    .execute(params![&r.rule_key, e.t, e.duration_s, e.results as i64, e.error])?;
                    tx.prepare_cached(PRUNE_RULE_EVALS)?
                        .execute([&r.rule_key])?;
                }
                if !r.transitions.is_empty() {
                    let mut ins = tx.prepare_cached(
                        "INSERT INTO rule_transitions (rule_key, t, fingerprint, labels, from_state, to_state, flapping)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )?;
                    for tr in &r.transitions {
                        ins.execute(params![
                            &r.rule_key,
                            tr.t,
                            tr.fingerprint as i64,
                            &tr.labels,
                            &tr.from,
                            &tr.to,
                            tr.flapping
                        ])?;
                    }
                    tx.prepare_cached(PRUNE_RULE_TRANSITIONS)?
                        .execute([&r.rule_key])?;
                }
            }
            for q in &batch.outbox {
                let o = &q.entry;
                if !o.log_entry.is_empty() {
                    tx.prepare_cached(
                        "INSERT INTO nflog (receiver, group_key, entry) VALUES (?1, ?2, ?3)
                         ON CONFLICT (receiver, group_key) DO UPDATE SET entry = excluded.entry",
                    )?
                    .execute(params![
                        &o.log_receiver,
                        &o.group_key,
                        &o.log_entry
                    ])?;
                }
                if let Some(at) = q.delivered {
                    tx.prepare_cached(
                        "INSERT INTO sent (at, integration, group_key, idempotency_key, status, payload)
                         VALUES (?1, ?2, ?3, ?4, 'delivered', ?5)",
                    )?
                    .execute(params![at, &o.receiver, &o.group_key, &o.idempotency_key, &o.payload])?;
                    prune_sent(&tx)?;
                    continue;
                }
                tx.prepare_cached(
                    "INSERT INTO outbox (receiver, group_key, idempotency_key, payload, created, next_attempt, attempts, last_error, failed)
                     VALUES (?1, ?2, ?3, ?4, ?5, max(?5, ?6), ?7, ?8, ?9)",
                )?
                .execute(params![
                    &o.receiver,
                    &o.group_key,
                    &o.idempotency_key,
                    &o.payload,
                    o.created,
                    q.next_attempt,
                    q.attempts,
                    &q.last_error,
                    q.failed.is_some()
                ])?;
                if let Some(at) = q.failed {
                    tx.prepare_cached(
                        "INSERT INTO sent (at, integration, group_key, idempotency_key, status, error, payload)
                         VALUES (?1, ?2, ?3, ?4, 'failed', ?5, ?6)",
                    )?
                    .execute(params![at, &o.receiver, &o.group_key, &o.idempotency_key, &q.last_error, &o.payload])?;
                    prune_sent(&tx)?;
                } else if q.mem_id != 0 {
                    moved.push((q.mem_id, tx.last_insert_rowid()));
                }
            }
            for o in &batch.shadow {
                tx.prepare_cached(
                    "INSERT INTO sent (at, integration, group_key, idempotency_key, status, payload)
                     VALUES (?1, ?2, ?3, ?4, 'shadow', ?5)",
                )?
                .execute(params![o.created, &o.receiver, &o.group_key, &o.idempotency_key, &o.payload])?;
            }
            if !batch.shadow.is_empty() {
                prune_sent(&tx)?;
            }
            match batch.wal_trim {
                WalTrim::Keep => 0,
                WalTrim::Before(w) => tx.execute("DELETE FROM wal WHERE maxt < ?1", [w])?,
                WalTrim::All => tx.execute("DELETE FROM wal", [])?,
            };
        }
        tx.commit()?;
        Ok(moved)
    }

    /// The first and last block on disk (two index seeks), to bound per-block reads. Two
    /// subqueries: SQLite answers a lone `min()` or `max()` from the index, but a query with both
    /// scans every row (a million series, two hours: ~0.5 s, paid by every read from disk and by
    /// every series that came back, one at a time).
    pub fn block_range(&self) -> Result<Option<(i64, i64)>, StoreError> {
        let (first, last): (Option<i64>, Option<i64>) = self
            .conn
            .prepare_cached(
                "SELECT (SELECT min(block) FROM chunks), (SELECT max(block) FROM chunks)",
            )?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(first.zip(last))
    }

    /// Appends samples of `series` in [mint, maxt] from chunks on disk that end before `before`;
    /// `blocks` is [`Db::block_range`].
    pub fn read_chunks(
        &self,
        series: SeriesRef,
        (mint, maxt): (i64, i64),
        before: i64,
        blocks: Option<(i64, i64)>,
        out: &mut Vec<(i64, f64)>,
    ) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare_cached(READ_CHUNKS)?;
        let hi = maxt.min(before.saturating_sub(1));
        if hi < mint {
            return Ok(());
        }
        let Some((first, last)) = blocks else {
            return Ok(());
        };
        // one point seek per block on disk inside the range
        for block in block_of(mint).max(first)..=block_of(hi).min(last) {
            let mut rows = stmt.query(params![block, i64::from(series), mint, hi])?;
            while let Some(row) = rows.next()? {
                let cmint: i64 = row.get(0)?;
                let data: Vec<u8> = row.get(1)?;
                super::chunk::decode_range(&data, mint, hi, out).map_err(|e| {
                    StoreError::Corrupt {
                        path: self.path.clone(),
                        detail: format!("chunk of series {series} at {cmint}: {e}"),
                    }
                })?;
            }
        }
        Ok(())
    }

    /// Deletes blocks older than `first_kept_block`; returns the number of chunks deleted. Their
    /// pages become free pages, returned to the file system by the next [`Db::vacuum_step`]s.
    pub fn delete_blocks_before(&mut self, first_kept_block: i64) -> Result<usize, StoreError> {
        let deleted = self
            .conn
            .execute("DELETE FROM chunks WHERE block < ?1", [first_kept_block])?;
        self.vacuum_pending |= deleted > 0;
        Ok(deleted)
    }

    /// After retention deleted blocks: returns up to [`VACUUM_PAGES_PER_FLUSH`] free pages to the
    /// file system (`PRAGMA incremental_vacuum`; the file shrinks at the next checkpoint), until
    /// none are left. Otherwise nothing: the free pages that trimming `wal` rows leaves on every
    /// flush are reused by the next flush's rows, and vacuuming them would only move pages about.
    /// Returns the pages freed.
    pub fn vacuum_step(&mut self) -> Result<i64, StoreError> {
        if !self.vacuum_pending {
            return Ok(0);
        }
        let free: i64 = self
            .conn
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
        let n = free.min(VACUUM_PAGES_PER_FLUSH);
        if n > 0 {
            // the pragma frees one page per step (each returns a row): stepped to the end
            let mut stmt = self
                .conn
                .prepare(&format!("PRAGMA incremental_vacuum({n})"))?;
            let mut rows = stmt.query([])?;
            while rows.next()?.is_some() {}
        }
        self.vacuum_pending = free > n;
        Ok(n)
    }

    /// When `name` was first watched; records `now` if never.
    pub fn target_first_seen(&self, name: &str, now: i64) -> Result<i64, StoreError> {
        self.conn.execute(
            "INSERT INTO targets (name, first_seen) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
            params![name, now],
        )?;
        Ok(self.conn.query_row(
            "SELECT first_seen FROM targets WHERE name = ?1",
            [name],
            |r| r.get(0),
        )?)
    }

    /// Bytes on disk: the database file plus its WAL file.
    pub fn size_bytes(&self) -> u64 {
        let wal = PathBuf::from(format!("{}-wal", self.path.display()));
        [self.path.as_path(), wal.as_path()]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Sizes of the chunk data and the number of samples they hold, for the disk-per-sample figure.
    pub fn chunk_stats(&self) -> Result<(u64, u64), StoreError> {
        let mut stmt = self.conn.prepare("SELECT data FROM chunks")?;
        let mut rows = stmt.query([])?;
        let (mut bytes, mut samples) = (0u64, 0u64);
        while let Some(row) = rows.next()? {
            let data: Vec<u8> = row.get(0)?;
            bytes += data.len() as u64;
            samples += u64::from(super::chunk::sample_count(&data));
        }
        Ok((bytes, samples))
    }

    /// Runs a passive WAL checkpoint so the `-wal` file does not grow without bound.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .optional()?;
        Ok(())
    }
}

impl Db {
    /// Every persisted alert state, by rule key: `(fingerprint, state json)`.
    pub fn rule_states(&self) -> Result<Vec<(String, u64, String)>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT rule_key, fingerprint, state FROM alerts ORDER BY rule_key, fingerprint",
        )?;
        let rows = st.query_map([], |r| {
            Ok((r.get(0)?, r.get::<_, i64>(1)? as u64, r.get(2)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The last evaluations of a rule, newest first.
    pub fn rule_evals(&self, rule_key: &str) -> Result<Vec<super::RuleEval>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT t, duration, results, error FROM rule_evals WHERE rule_key = ?1
             ORDER BY t DESC, id DESC LIMIT 20",
        )?;
        let rows = st.query_map([rule_key], |r| {
            Ok(super::RuleEval {
                t: r.get(0)?,
                duration_s: r.get(1)?,
                results: r.get::<_, i64>(2)? as usize,
                error: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl Db {
    /// The last alert state transitions of a rule, newest first.
    pub fn rule_transitions(
        &self,
        rule_key: &str,
    ) -> Result<Vec<super::RuleTransition>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT t, fingerprint, labels, from_state, to_state, flapping FROM rule_transitions
             WHERE rule_key = CAST(?1 AS TEXT) ORDER BY id DESC",
        )?;
        let rows = st.query_map([rule_key], |r| {
            Ok(super::RuleTransition {
                t: r.get(0)?,
                fingerprint: r.get::<_, i64>(1)? as u64,
                labels: r.get(2)?,
                from: r.get(3)?,
                to: r.get(4)?,
                flapping: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl Db {
    pub fn outbox_due(&self, now: i64, limit: usize) -> Result<Vec<super::OutboxRow>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, receiver, group_key, idempotency_key, payload, created, attempts, next_attempt
             FROM (SELECT *, row_number() OVER (PARTITION BY receiver ORDER BY id) AS nth
                   FROM outbox WHERE failed = 0 AND receiver IN
                     (SELECT receiver FROM outbox WHERE failed = 0 AND next_attempt <= ?1))
             WHERE nth <= ?2 ORDER BY id",
        )?;
        let rows = st.query_map(params![now, limit as i64], |r| {
            Ok(super::OutboxRow {
                id: r.get(0)?,
                receiver: r.get(1)?,
                group_key: r.get(2)?,
                idempotency_key: r.get(3)?,
                payload: r.get(4)?,
                created: r.get(5)?,
                attempts: r.get::<_, i64>(6)? as u32,
                next_attempt: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn outbox_insert(&self, o: &super::OutboxEntry) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO outbox (receiver, group_key, idempotency_key, payload, created, next_attempt)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            )?
            .execute(params![&o.receiver, &o.group_key, &o.idempotency_key, &o.payload, o.created])?;
        Ok(())
    }

    pub fn outbox_delivered(&mut self, id: i64, now: i64) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.prepare_cached(
            "INSERT INTO sent (at, integration, group_key, idempotency_key, status, payload)
             SELECT ?2, receiver, group_key, idempotency_key, 'delivered', payload FROM outbox WHERE id = ?1",
        )?
        .execute(params![id, now])?;
        tx.prepare_cached("DELETE FROM outbox WHERE id = ?1")?
            .execute([id])?;
        prune_sent(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// The newest rows of the notification history, newest first; `status` filters.
    pub fn sent(
        &self,
        limit: usize,
        status: Option<&str>,
    ) -> Result<Vec<super::SentRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, at, integration, group_key, idempotency_key, status, error, payload FROM sent
             WHERE ?1 IS NULL OR status = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![status, limit as i64], |r| {
            Ok(super::SentRow {
                id: r.get(0)?,
                at: r.get(1)?,
                integration: r.get(2)?,
                group_key: r.get(3)?,
                idempotency_key: r.get(4)?,
                status: r.get(5)?,
                error: r.get(6)?,
                payload: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn outbox_retry(&self, id: i64, next_attempt: i64, error: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt = ?2, last_error = ?3 WHERE id = ?1",
            )?
            .execute(params![id, next_attempt, error])?;
        Ok(())
    }

    pub fn outbox_failed(&mut self, id: i64, error: &str, now: i64) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.prepare_cached(
            "UPDATE outbox SET attempts = attempts + 1, failed = 1, last_error = ?2 WHERE id = ?1",
        )?
        .execute(params![id, error])?;
        tx.prepare_cached(
            "INSERT INTO sent (at, integration, group_key, idempotency_key, status, error, payload)
             SELECT ?3, receiver, group_key, idempotency_key, 'failed', ?2, payload FROM outbox WHERE id = ?1",
        )?
        .execute(params![id, error, now])?;
        prune_sent(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// Pending (not failed) outbox rows and the creation time of the oldest.
    pub fn outbox_summary(&self) -> Result<(u64, Option<i64>), StoreError> {
        Ok(self.conn.query_row(
            "SELECT count(*), min(created) FROM outbox WHERE failed = 0",
            [],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
        )?)
    }

    /// Simulates a full disk (`pages`: the file may not grow) or lifts it (`None`): SQLite's
    /// `max_page_count`, which fails a write that needs a new page with SQLITE_FULL, as a full
    /// disk does. Free pages are vacuumed away first, so the next write that grows the file fails.
    pub fn limit_pages(&self, full: bool) -> Result<(), StoreError> {
        if full {
            self.conn.execute_batch("VACUUM")?;
            let pages: i64 = self.conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            self.conn
                .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
        } else {
            self.conn
                .query_row("PRAGMA max_page_count = 4294967294", [], |_| Ok(()))?;
        }
        Ok(())
    }

    pub fn nflog(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT receiver, group_key, entry FROM nflog")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl Db {
    pub fn put_silence(&self, id: &str, json: &str, ends_at: i64) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO silences (id, silence, ends_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET silence = excluded.silence, ends_at = excluded.ends_at",
            )?
            .execute(params![id, json, ends_at])?;
        Ok(())
    }

    pub fn silences(&self) -> Result<Vec<String>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT silence FROM silences ORDER BY id")?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes silences that ended before `before` (kept a while for the API, as Alertmanager).
    pub fn delete_silences_before(&self, before: i64) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM silences WHERE ends_at < ?1", [before])?;
        Ok(())
    }
}

/// A queued remote write row as stored: the encoded batch of a `wal` row.
pub(crate) struct RwBlob {
    pub id: i64,
    pub kind: u8,
    pub data: Vec<u8>,
}

/// Remote write's queue: `rw_queue` rows (copies of `wal` rows, written in their transaction)
/// and each remote write entry's position in them (`rw_cursor`).
impl Db {
    /// Keeps a position for each of `remotes` and none for others: a new entry starts after
    /// the last row ever queued (it sends what is written from now on). Deletes the rows every
    /// entry has sent, every row when there is none.
    pub fn rw_configure(&mut self, remotes: &[String]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        let last: i64 = tx
            .query_row(
                "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'rw_queue'), 0)",
                [],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        let existing: Vec<String> = {
            let mut st = tx.prepare("SELECT remote FROM rw_cursor")?;
            st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?
        };
        for name in &existing {
            if !remotes.contains(name) {
                tx.execute("DELETE FROM rw_cursor WHERE remote = ?1", [name])?;
            }
        }
        for name in remotes {
            tx.execute(
                "INSERT INTO rw_cursor (remote, row, done) VALUES (?1, ?2, ?3) ON CONFLICT (remote) DO NOTHING",
                params![name, last, i64::MAX],
            )?;
        }
        Self::rw_trim(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// Deletes the rows every remote write entry is past.
    fn rw_trim(tx: &rusqlite::Connection) -> Result<(), StoreError> {
        tx.prepare_cached(
            "DELETE FROM rw_queue WHERE id < coalesce((SELECT min(row) FROM rw_cursor), 9223372036854775807)",
        )?
        .execute([])?;
        Ok(())
    }

    /// `remote`'s position: (row, samples of it sent).
    pub fn rw_position(&self, remote: &str) -> Result<Option<(i64, i64)>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT row, done FROM rw_cursor WHERE remote = ?1")?
            .query_row([remote], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    /// Records `remote`'s position; when it finished its row, deletes what every entry sent.
    pub fn rw_set_position(
        &mut self,
        remote: &str,
        row: i64,
        done: i64,
        finished: bool,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.prepare_cached("UPDATE rw_cursor SET row = ?2, done = ?3 WHERE remote = ?1")?
            .execute(params![remote, row, done])?;
        if finished {
            Self::rw_trim(&tx)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The first queued row with id ≥ `from` whose kind is in `kinds`.
    /// Overwrites a queued row's bytes with garbage (tests: a damaged file).
    #[cfg(test)]
    pub fn damage_rw_row(&self, id: i64) {
        self.conn
            .execute("UPDATE rw_queue SET data = x'ff00ff' WHERE id = ?1", [id])
            .expect("update");
    }

    pub fn rw_row(&self, from: i64, kinds: u8) -> Result<Option<RwBlob>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id, kind, data FROM rw_queue WHERE id >= ?1 AND (kind & ?2) != 0
                 ORDER BY id LIMIT 1",
            )?
            .query_row(params![from, kinds], |r| {
                Ok(RwBlob {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    data: r.get(2)?,
                })
            })
            .optional()?)
    }

    /// The queued rows with id ≥ `from` whose kind is in `kinds`: (id, samples, maxt), in order.
    pub fn rw_rows(&self, from: i64, kinds: u8) -> Result<Vec<(i64, i64, i64)>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, samples, maxt FROM rw_queue WHERE id >= ?1 AND (kind & ?2) != 0 ORDER BY id",
        )?;
        let rows = st.query_map(params![from, kinds], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The labels of series `id` as the file has them (a series no longer in memory).
    pub fn series_labels(&self, id: SeriesRef) -> Result<Option<Labels>, StoreError> {
        let text: Option<String> = self
            .conn
            .prepare_cached("SELECT labels FROM series WHERE id = ?1")?
            .query_row([i64::from(id)], |r| r.get(0))
            .optional()?;
        let Some(text) = text else {
            return Ok(None);
        };
        Ok(Some(self.parse_labels(i64::from(id), &text)?))
    }

    /// The labels of `ids` (ascending), each given to `f`; ids the file lacks are skipped. Many
    /// ids are read by one scan of `series` in id order (a million series at start-up: one
    /// statement, not a million), a few by their rows.
    pub fn series_labels_many(
        &self,
        ids: &[SeriesRef],
        mut f: impl FnMut(SeriesRef, Labels),
    ) -> Result<(), StoreError> {
        let (Some(&first), Some(&last)) = (ids.first(), ids.last()) else {
            return Ok(());
        };
        if ids.len() < 4_096 {
            for &id in ids {
                if let Some(l) = self.series_labels(id)? {
                    f(id, l);
                }
            }
            return Ok(());
        }
        let mut stmt = self
            .conn
            .prepare("SELECT id, labels FROM series WHERE id BETWEEN ?1 AND ?2 ORDER BY id")?;
        let mut rows = stmt.query([i64::from(first), i64::from(last)])?;
        let mut wanted = ids.iter().copied().peekable();
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            while wanted.next_if(|&w| i64::from(w) < id).is_some() {}
            if wanted.next_if(|&w| i64::from(w) == id).is_none() {
                continue;
            }
            let text = row.get_ref(1)?.as_str().map_err(|e| StoreError::Corrupt {
                path: self.path.clone(),
                detail: format!("series {id}: labels: {e}"),
            })?;
            f(id as SeriesRef, self.parse_labels(id, text)?);
            if wanted.peek().is_none() {
                break;
            }
        }
        Ok(())
    }

    /// Bytes of queued remote write data (the blobs), for the disk-cost figure.
    pub fn rw_queue_bytes(&self) -> Result<u64, StoreError> {
        Ok(self.conn.query_row(
            "SELECT coalesce(sum(length(data)), 0) FROM rw_queue",
            [],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }
}

/// Candidate lists at most this long are checked against each series' labels instead of narrowed
/// further by the label index: a few thousand row lookups cost less than reading a posting
/// list of a label like `instance` with a value per series.
const VERIFY_DIRECTLY: usize = 4096;

/// Series on disk: lookups for series that are not in memory, the label index, pruning.
impl Db {
    /// The label names of the label index, each once, sorted, at most `limit`: a skip scan, one
    /// index seek a name (not a row a series). None of an older store without the index (a
    /// read-only open does not build it).
    pub fn label_names(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        let has_index: bool = self.conn.query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'series_labels'",
            [],
            |r| r.get(0),
        )?;
        if !has_index {
            return Ok(Vec::new());
        }
        let mut stmt = self.conn.prepare_cached(
            "WITH RECURSIVE n(name) AS (
                 SELECT min(name) FROM series_labels
                 UNION ALL
                 SELECT (SELECT min(name) FROM series_labels WHERE name > n.name) FROM n
                 WHERE n.name IS NOT NULL LIMIT ?1
             )
             SELECT name FROM n WHERE name IS NOT NULL",
        )?;
        let rows = stmt.query_map([limit as i64], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The highest series id the file ever held (rows pruned since included), 0 for none.
    pub fn max_series_id(&self) -> Result<SeriesRef, StoreError> {
        let rows: Option<i64> = self
            .conn
            .query_row("SELECT max(id) FROM series", [], |r| r.get(0))?;
        // a read-only open of a store an older tocsin wrote has no `store_meta` (nor pruned ids)
        let meta = self.meta_value("max_series_id")?;
        Ok(rows.into_iter().chain(meta).max().unwrap_or(0) as SeriesRef)
    }

    /// How many series the file holds.
    pub fn series_count(&self) -> Result<u64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM series", [], |r| r.get::<_, i64>(0))?
            as u64)
    }

    fn parse_labels(&self, id: i64, text: &str) -> Result<Labels, StoreError> {
        // as written: sorted, and without escapes borrowed straight from the text (a million
        // series at start-up); else copied and sorted
        if let Ok(pairs) = serde_json::from_str::<Vec<(&str, &str)>>(text)
            && let Some(labels) = Labels::from_sorted(&pairs)
        {
            return Ok(labels);
        }
        let pairs: Vec<(String, String)> =
            serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
                path: self.path.clone(),
                detail: format!("series {id}: labels {text:?}: {e}"),
            })?;
        Ok(Labels::from_pairs(pairs))
    }

    /// The id of the series with exactly these labels, if the file has it (the `labels`
    /// column's unique index: one seek).
    pub fn series_id_of(&self, labels: &Labels) -> Result<Option<SeriesRef>, StoreError> {
        let mut text = String::new();
        labels_json(labels, &mut text);
        Ok(self
            .conn
            .prepare_cached("SELECT id FROM series WHERE labels = ?1")?
            .query_row([text], |r| r.get::<_, i64>(0))
            .optional()?
            .map(|id| id as SeriesRef))
    }

    /// The end of the newest chunk of `series`, searching blocks newest first (one index seek
    /// each; a series that comes back after a while is found in the last blocks).
    pub fn last_chunk_maxt(
        &self,
        series: SeriesRef,
        blocks: Option<(i64, i64)>,
    ) -> Result<Option<i64>, StoreError> {
        let Some((first, last)) = blocks else {
            return Ok(None);
        };
        let mut stmt = self
            .conn
            .prepare_cached("SELECT max(maxt) FROM chunks WHERE block = ?1 AND series_id = ?2")?;
        for block in (first..=last).rev() {
            let maxt: Option<i64> =
                stmt.query_row(params![block, i64::from(series)], |r| r.get(0))?;
            if maxt.is_some() {
                return Ok(maxt);
            }
        }
        Ok(None)
    }

    /// Whether the label index is there (a read-only open of a store an older tocsin wrote may
    /// lack it: then lookups scan the `series` table).
    fn has_label_index(&self) -> Result<bool, StoreError> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'series_labels'",
            [],
            |r| r.get::<_, i64>(0),
        )? > 0)
    }

    /// Fills the label index of a store written before it existed (one pass over `series`, at
    /// the first writable open).
    pub fn backfill_label_index(&mut self) -> Result<usize, StoreError> {
        let missing: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM series) AND NOT EXISTS (SELECT 1 FROM series_labels)",
            [],
            |r| r.get(0),
        )?;
        if !missing {
            return Ok(0);
        }
        let tx = self.conn.transaction()?;
        let mut n = 0;
        {
            let mut rows = tx.prepare("SELECT id, labels FROM series")?;
            let mut ins = tx.prepare(
                "INSERT OR IGNORE INTO series_labels (name, value, series_id) VALUES (?1, ?2, ?3)",
            )?;
            let mut it = rows.query([])?;
            while let Some(row) = it.next()? {
                let id: i64 = row.get(0)?;
                let text: String = row.get(1)?;
                let pairs: Vec<(String, String)> =
                    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                        path: self.path.clone(),
                        detail: format!("series {id}: labels {text:?}: {e}"),
                    })?;
                for (k, v) in pairs {
                    ins.execute(params![k, v, id])?;
                }
                n += 1;
            }
        }
        tx.commit()?;
        Ok(n)
    }

    /// Ids of series carrying label `name` with a value `keep` accepts, ascending.
    fn ids_with_label(&self, m: &crate::labels::Matcher) -> Result<Vec<SeriesRef>, StoreError> {
        let mut ids = Vec::new();
        if m.op == crate::labels::MatchOp::Equal {
            let mut stmt = self.conn.prepare_cached(
                "SELECT series_id FROM series_labels WHERE name = ?1 AND value = ?2",
            )?;
            let mut rows = stmt.query(params![&m.name, &m.value])?;
            while let Some(row) = rows.next()? {
                ids.push(row.get::<_, i64>(0)? as SeriesRef);
            }
            return Ok(ids);
        }
        let mut stmt = self
            .conn
            .prepare_cached("SELECT value, series_id FROM series_labels WHERE name = ?1")?;
        let mut rows = stmt.query([&m.name])?;
        // rows come grouped by value: decide each value once
        let mut last: Option<(String, bool)> = None;
        while let Some(row) = rows.next()? {
            let value = row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
            let keep = match &last {
                Some((v, keep)) if v == value => *keep,
                _ => {
                    let keep = m.matches(value);
                    last = Some((value.to_string(), keep));
                    keep
                }
            };
            if keep {
                ids.push(row.get::<_, i64>(1)? as SeriesRef);
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// Series on disk matching every matcher, except those `skip` names (the ones in memory),
    /// with their labels, ascending by id. Narrows by the label index (equality matchers first)
    /// until few candidates are left, then checks each candidate's labels.
    pub fn select_series(
        &self,
        matchers: &[crate::labels::Matcher],
        skip: &dyn Fn(SeriesRef) -> bool,
    ) -> Result<Vec<(SeriesRef, Labels)>, StoreError> {
        let mut out = Vec::new();
        self.visit_series(matchers, skip, &mut |id, labels| {
            out.push((id, labels));
            Ok(())
        })?;
        Ok(out)
    }

    /// [`Db::select_series`] without collecting: `f` gets each matching series in turn, so a
    /// reader that keeps few of them (the metadata API) holds only the candidates' ids.
    pub fn visit_series(
        &self,
        matchers: &[crate::labels::Matcher],
        skip: &dyn Fn(SeriesRef) -> bool,
        f: &mut dyn FnMut(SeriesRef, Labels) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut narrowing: Vec<&crate::labels::Matcher> =
            matchers.iter().filter(|m| !m.matches_empty()).collect();
        narrowing.sort_by_key(|m| m.op != crate::labels::MatchOp::Equal);
        if narrowing.is_empty() || !self.has_label_index()? {
            // nothing narrows (or no index): every row
            let mut stmt = self
                .conn
                .prepare("SELECT id, labels FROM series ORDER BY id")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let id: i64 = row.get(0)?;
                if skip(id as SeriesRef) {
                    continue;
                }
                let labels = self
                    .parse_labels(id, row.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?)?;
                if matchers.iter().all(|m| m.matches_labels(&labels)) {
                    f(id as SeriesRef, labels)?;
                }
            }
            return Ok(());
        }
        let mut candidates: Option<Vec<SeriesRef>> = None;
        for m in narrowing {
            if candidates
                .as_ref()
                .is_some_and(|c| c.len() <= VERIFY_DIRECTLY)
            {
                break;
            }
            let mut ids = self.ids_with_label(m)?;
            if let Some(prev) = candidates {
                ids.retain(|id| prev.binary_search(id).is_ok());
            }
            candidates = Some(ids);
        }
        for id in candidates.unwrap_or_default() {
            if skip(id) {
                continue;
            }
            if let Some(labels) = self.series_labels(id)?
                && matchers.iter().all(|m| m.matches_labels(&labels))
            {
                f(id, labels)?;
            }
        }
        Ok(())
    }

    /// Deletes the series whose recorded end lies before `before` and that `keep` does not
    /// keep (those in memory): their rows, label index rows, notes and recorded ends. Returns
    /// the ids deleted. The highest id is remembered first, so no id is ever given again.
    pub fn prune_series(
        &mut self,
        before: i64,
        keep: &dyn Fn(SeriesRef) -> bool,
    ) -> Result<Vec<SeriesRef>, StoreError> {
        let ids: Vec<SeriesRef> = {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT series_id FROM series_ends WHERE maxt < ?1")?;
            let rows = stmt.query_map([before], |r| r.get::<_, i64>(0))?;
            let mut ids = Vec::new();
            for id in rows {
                let id = id? as SeriesRef;
                if !keep(id) {
                    ids.push(id);
                }
            }
            ids
        };
        if ids.is_empty() {
            return Ok(ids);
        }
        let max = self.max_series_id()?;
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO store_meta (key, value) VALUES ('max_series_id', ?1)
             ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
            [i64::from(max)],
        )?;
        {
            let mut get = tx.prepare_cached("SELECT labels FROM series WHERE id = ?1")?;
            let mut del_label = tx.prepare_cached(
                "DELETE FROM series_labels WHERE name = ?1 AND value = ?2 AND series_id = ?3",
            )?;
            let mut del_series = tx.prepare_cached("DELETE FROM series WHERE id = ?1")?;
            let mut del_note = tx.prepare_cached("DELETE FROM notes WHERE series_id = ?1")?;
            let mut del_end = tx.prepare_cached("DELETE FROM series_ends WHERE series_id = ?1")?;
            for &id in &ids {
                let id = i64::from(id);
                let text: Option<String> = get.query_row([id], |r| r.get(0)).optional()?;
                if let Some(text) = text {
                    let pairs: Vec<(String, String)> =
                        serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                            path: self.path.clone(),
                            detail: format!("series {id}: labels {text:?}: {e}"),
                        })?;
                    for (k, v) in pairs {
                        del_label.execute(params![k, v, id])?;
                    }
                }
                del_series.execute([id])?;
                del_note.execute([id])?;
                del_end.execute([id])?;
            }
        }
        tx.commit()?;
        Ok(ids)
    }

    /// The oldest sample time in the write-ahead rows, None when there are none.
    pub fn wal_mint(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT min(mint) FROM wal", [], |r| r.get(0))?)
    }
}

/// Reads for the metadata API (`/api/v1/labels`, `/api/v1/label/<name>/values`, `/api/v1/series`).
impl Db {
    /// The recorded last sample time of a series that left memory (`series_ends`), None when
    /// none is recorded (the series is in memory, or was at a crash).
    pub fn series_end(&self, series: SeriesRef) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT maxt FROM series_ends WHERE series_id = ?1")?
            .query_row([i64::from(series)], |r| r.get(0))
            .optional()?)
    }

    /// Whether chunks on disk hold a sample of `series` in [mint, maxt] before `before`: blocks
    /// oldest first, stopping at the first sample found (one index seek a block until then).
    pub fn has_sample_in(
        &self,
        series: SeriesRef,
        (mint, maxt): (i64, i64),
        before: i64,
        blocks: Option<(i64, i64)>,
    ) -> Result<bool, StoreError> {
        let hi = maxt.min(before.saturating_sub(1));
        let Some((first, last)) = blocks else {
            return Ok(false);
        };
        if hi < mint {
            return Ok(false);
        }
        let mut stmt = self.conn.prepare_cached(READ_CHUNKS)?;
        let mut buf = Vec::new();
        for block in block_of(mint).max(first)..=block_of(hi).min(last) {
            let mut rows = stmt.query(params![block, i64::from(series), mint, hi])?;
            while let Some(row) = rows.next()? {
                let cmint: i64 = row.get(0)?;
                let data = row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
                super::chunk::decode_range(data, mint, hi, &mut buf).map_err(|e| {
                    StoreError::Corrupt {
                        path: self.path.clone(),
                        detail: format!("chunk of series {series} at {cmint}: {e}"),
                    }
                })?;
                if !buf.is_empty() {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// The values label `name` takes in the label index, each once, sorted, at most `limit`: a
    /// skip scan (one index seek a value, not a row a series), as [`Db::label_names`].
    pub fn label_values(&self, name: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        if !self.has_label_index()? {
            return Ok(Vec::new());
        }
        let mut stmt = self.conn.prepare_cached(
            "WITH RECURSIVE v(value) AS (
                 SELECT min(value) FROM series_labels WHERE name = ?1
                 UNION ALL
                 SELECT (SELECT min(value) FROM series_labels WHERE name = ?1 AND value > v.value)
                 FROM v WHERE v.value IS NOT NULL LIMIT ?2
             )
             SELECT value FROM v WHERE value IS NOT NULL",
        )?;
        let rows = stmt.query_map(params![name, limit as i64], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{RuleEval, RuleStateRow, RuleTransition};
    use rusqlite::StatementStatus;

    /// The statement cache holds every statement this file prepares cached, so none is
    /// evicted and prepared again between two uses.
    #[test]
    fn every_cached_statement_fits_the_statement_cache() {
        let sites = include_str!("db.rs")
            .matches(concat!("prepare_", "cached("))
            .count();
        assert!(sites > 40, "{sites}");
        assert!(
            sites <= STATEMENT_CACHE,
            "{sites} prepare_cached sites, a cache of {STATEMENT_CACHE}"
        );
    }

    /// One flush of an evaluation at `t` of each rule of `keys`, each with one transition.
    fn evaluate(db: &mut Db, keys: &[&str], t: i64) {
        let rules = keys
            .iter()
            .map(|key| RuleStateRow {
                rule_key: key.to_string(),
                eval: Some(RuleEval {
                    t,
                    duration_s: 0.0,
                    results: 0,
                    error: None,
                }),
                transitions: vec![RuleTransition {
                    t,
                    fingerprint: 1,
                    labels: "{}".into(),
                    from: "inactive".into(),
                    to: "pending".into(),
                    flapping: None,
                }],
                ..Default::default()
            })
            .collect();
        db.flush(&FlushBatch {
            rules,
            ..Default::default()
        })
        .unwrap();
    }

    #[test]
    fn a_rule_keeps_its_newest_20_evaluations_and_100_transitions() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(&dir.path().join("t.db"), false).unwrap();
        for t in 0..130 {
            evaluate(&mut db, &["a", "b"], t);
        }
        for key in ["a", "b"] {
            let evals = db.rule_evals(key).unwrap();
            let ts: Vec<i64> = evals.iter().map(|e| e.t).collect();
            assert_eq!(ts, (110..130).rev().collect::<Vec<_>>());
            let trs = db.rule_transitions(key).unwrap();
            assert_eq!(trs.len(), 100);
            assert_eq!((trs[0].t, trs[99].t), (129, 30));
            let stored: i64 = db
                .conn
                .query_row(
                    "SELECT count(*) FROM rule_evals WHERE rule_key = ?1",
                    [key],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(stored, 20);
        }
    }

    fn stmt_params(sql: &str) -> usize {
        (1..=4).filter(|i| sql.contains(&format!("?{i}"))).count()
    }

    #[test]
    fn pruning_rule_history_and_reading_chunks_never_re_prepare_their_statements() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(&dir.path().join("t.db"), false).unwrap();
        for t in 0..3 {
            evaluate(&mut db, &["g/a/1", "g/b/2"], t);
        }
        // a read of two series over three blocks: six runs
        let mut out = Vec::new();
        for series in [1, 2] {
            db.read_chunks(
                series,
                (0, 3 * super::super::head::BLOCK_MS - 1),
                i64::MAX,
                Some((0, 2)),
                &mut out,
            )
            .unwrap();
        }
        for sql in [PRUNE_RULE_EVALS, PRUNE_RULE_TRANSITIONS, READ_CHUNKS] {
            let stmt = db.conn.prepare_cached(sql).unwrap();
            assert_eq!(stmt.get_status(StatementStatus::RePrepare), 0, "{sql}");
            assert_eq!(stmt.get_status(StatementStatus::Run), 6, "{sql}");
            // and the subquery still searches the index, in its order (no sort)
            let plan: Vec<String> = db
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map(
                    rusqlite::params_from_iter(["1"; 4].iter().take(stmt_params(sql))),
                    |r| r.get(3),
                )
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(plan.iter().any(|p| p.contains(" INDEX ")), "{plan:?}");
            assert!(!plan.iter().any(|p| p.contains("TEMP B-TREE")), "{plan:?}");
        }
    }
}
