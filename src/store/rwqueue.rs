//! Remote write's durable queue (the outbox pattern for samples).
//!
//! When remote write is on ([`Store::rw_configure`]), every write that makes samples durable (a
//! flush's `wal` row, an evaluation commit's `wal` row) also queues the same encoded batch in
//! `rw_queue`, in the same transaction: a sample is either in the store and queued, or in
//! neither. Each remote write entry keeps a position in `rw_cursor` (a row and how many of its
//! samples were sent), written after each accepted request, so a restart resumes where the
//! last acknowledged request ended: nothing lost, nothing reordered per series, and at most the
//! request in flight at the crash sent twice (the same samples, the same values).
//!
//! Why a copy and not the `wal` rows themselves: `wal` rows are deleted as soon as their
//! samples are in chunks (seconds to minutes), their ids are reused after the table empties
//! (no AUTOINCREMENT), they do not say whether samples were scraped or recorded, and keeping
//! them for a dead receiver would make every start replay the whole backlog into memory.
//! Reading back from chunks by time is not correct either: samples arrive late (slow scrapes,
//! pushes with old timestamps, long evaluations), so "everything after the last sent time" would
//! miss them. The copy costs the `wal` row's bytes again (~11-12 bytes a sample) while it waits,
//! and is deleted once every entry has sent it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{SeriesRef, Store, StoreError, wal};
use crate::labels::Labels;

/// Queue kind of a flush's samples: scrapes, probes, pushes, tocsin's own metrics.
pub const RW_SCRAPED: u8 = 1;
/// Queue kind of an evaluation commit's samples: recording rules, `ALERTS`.
pub const RW_RULES: u8 = 2;

/// A remote write entry's place in the queue: row `row`, of which `done` samples were sent
/// (`u64::MAX`: all of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RwPosition {
    pub row: i64,
    pub done: u64,
}

/// One queued batch, decoded: its samples in write order and the labels of their series.
#[derive(Debug, Clone)]
pub struct RwRow {
    pub id: i64,
    /// [`RW_SCRAPED`] or [`RW_RULES`]
    pub kind: u8,
    pub samples: Vec<(SeriesRef, i64, f64)>,
    /// every series of `samples` whose labels are known (from memory, else from the file)
    pub labels: HashMap<SeriesRef, Arc<Labels>>,
    /// the row's bytes did not decode (a damaged file): no samples, and the sender goes past it
    /// with a counted drop instead of stopping at it for ever
    pub damaged: bool,
}

/// A queued row not yet read: its id, samples and newest sample time (ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RwQueued {
    pub id: i64,
    pub samples: u64,
    pub maxt: i64,
}

impl Store {
    /// Turns remote write's queue on for the writes of `kinds` ([`RW_SCRAPED`] | [`RW_RULES`];
    /// 0 turns it off) and keeps a position for each of `remotes` (entries no longer configured
    /// lose theirs; a new one starts with what is written from now on).
    pub fn rw_configure(&self, remotes: &[String], kinds: u8) -> Result<(), StoreError> {
        let mut db = self.db.lock().expect("db lock");
        db.rw_configure(remotes)?;
        self.rw_kinds.store(
            if remotes.is_empty() { 0 } else { kinds },
            Ordering::Relaxed,
        );
        Ok(())
    }

    /// Changes each time a write queues samples for remote write: a sender waits on it.
    pub fn rw_subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.rw_written.subscribe()
    }

    /// `remote`'s position (None: not configured).
    pub fn rw_position(&self, remote: &str) -> Result<Option<RwPosition>, StoreError> {
        Ok(self
            .db
            .lock()
            .expect("db lock")
            .rw_position(remote)?
            .map(|(row, done)| RwPosition {
                row,
                // stored as i64::MAX: the whole row
                done: if done == i64::MAX {
                    u64::MAX
                } else {
                    u64::try_from(done).unwrap_or(0)
                },
            }))
    }

    /// Records that `remote` sent everything up to `pos` (durably, before the next request).
    pub fn rw_ack(&self, remote: &str, pos: RwPosition) -> Result<(), StoreError> {
        let finished = pos.done == u64::MAX;
        let done = i64::try_from(pos.done).unwrap_or(i64::MAX);
        self.db
            .lock()
            .expect("db lock")
            .rw_set_position(remote, pos.row, done, finished)
    }

    /// The queued rows of `kinds` after `pos` (its own row included while unfinished), oldest
    /// first: for the backlog's size and age, without reading their data.
    pub fn rw_backlog(&self, pos: RwPosition, kinds: u8) -> Result<Vec<RwQueued>, StoreError> {
        let from = if pos.done == u64::MAX {
            pos.row + 1
        } else {
            pos.row
        };
        let rows = self.db.lock().expect("db lock").rw_rows(from, kinds)?;
        Ok(rows
            .into_iter()
            .map(|(id, samples, maxt)| {
                let samples = u64::try_from(samples).unwrap_or(0);
                RwQueued {
                    id,
                    samples: if id == pos.row {
                        samples.saturating_sub(pos.done)
                    } else {
                        samples
                    },
                    maxt,
                }
            })
            .collect())
    }

    /// The row to send from at `pos`: its own while unfinished, else the next of `kinds`;
    /// decoded, with its series' labels. None: nothing queued.
    pub fn rw_next(&self, pos: RwPosition, kinds: u8) -> Result<Option<RwRow>, StoreError> {
        let from = if pos.done == u64::MAX {
            pos.row + 1
        } else {
            pos.row
        };
        let db = self.db.lock().expect("db lock");
        let Some(super::db::RwBlob { id, kind, data }) = db.rw_row(from, kinds)? else {
            return Ok(None);
        };
        let Ok(samples) = wal::decode(&data) else {
            return Ok(Some(RwRow {
                id,
                kind,
                samples: Vec::new(),
                labels: HashMap::new(),
                damaged: true,
            }));
        };
        let mut labels: HashMap<SeriesRef, Arc<Labels>> = HashMap::new();
        let mut missing = Vec::new();
        {
            let head = self.head.read().expect("head lock");
            for &(sid, _, _) in &samples {
                if labels.contains_key(&sid) {
                    continue;
                }
                match head.labels(sid) {
                    Some(l) => {
                        labels.insert(sid, l.clone());
                    }
                    None => missing.push(sid),
                }
            }
        }
        missing.sort_unstable();
        missing.dedup();
        for sid in missing {
            if let Some(l) = db.series_labels(sid)? {
                labels.insert(sid, Arc::new(l));
            }
        }
        Ok(Some(RwRow {
            id,
            kind,
            samples,
            labels,
            damaged: false,
        }))
    }

    /// Bytes of data waiting in the remote write queue.
    pub fn rw_queue_bytes(&self) -> Result<u64, StoreError> {
        self.db.lock().expect("db lock").rw_queue_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{EvaluationRows, StoreOptions};

    fn labels(name: &str) -> Labels {
        Labels::from_pairs(vec![("__name__".to_string(), name.to_string())])
    }

    /// Every sample from `pos` on, as the sender reads them: (name, t, v), and the end position.
    fn drain(
        store: &Store,
        mut pos: RwPosition,
        kinds: u8,
    ) -> (Vec<(String, i64, f64)>, RwPosition) {
        let mut out = Vec::new();
        while let Some(row) = store.rw_next(pos, kinds).unwrap() {
            let start = if row.id == pos.row {
                pos.done as usize
            } else {
                0
            };
            for &(id, t, v) in &row.samples[start..] {
                out.push((row.labels[&id].get("__name__").unwrap().to_string(), t, v));
            }
            pos = RwPosition {
                row: row.id,
                done: u64::MAX,
            };
        }
        (out, pos)
    }

    #[test]
    fn a_damaged_row_is_read_as_damaged_and_the_rows_after_it_still_come() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db"), StoreOptions::default()).unwrap();
        store.rw_configure(&["vm".into()], RW_SCRAPED).unwrap();
        let start = store.rw_position("vm").unwrap().unwrap();
        let a = store.series_ref(labels("a"));
        for t in [1_000, 2_000, 3_000] {
            store.append(&[(a, t, t as f64)]);
            store.flush(t).unwrap();
        }
        let rows: Vec<i64> = store
            .rw_backlog(start, RW_SCRAPED)
            .unwrap()
            .iter()
            .map(|q| q.id)
            .collect();
        assert_eq!(rows.len(), 3);
        store.db.lock().unwrap().damage_rw_row(rows[1]);
        let mut pos = start;
        let mut seen = Vec::new();
        while let Some(row) = store.rw_next(pos, RW_SCRAPED).unwrap() {
            seen.push((row.id, row.damaged, row.samples.len()));
            pos = RwPosition {
                row: row.id,
                done: u64::MAX,
            };
        }
        assert_eq!(
            seen,
            vec![(rows[0], false, 1), (rows[1], true, 0), (rows[2], false, 1)]
        );
    }

    #[test]
    fn flushed_and_committed_samples_are_queued_in_order_and_survive_a_restart() {
        queued_in_order_across_a_restart(StoreOptions::default());
        // a flush that writes a checkpoint instead of its write-ahead row still queues the row
        queued_in_order_across_a_restart(StoreOptions {
            checkpoint_samples_per_series: 0,
            checkpoint_min_samples: 0,
            ..StoreOptions::default()
        });
    }

    fn queued_in_order_across_a_restart(opts: StoreOptions) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = Store::open(&path, opts).unwrap();
        // before remote write is on, nothing is queued
        let a = store.series_ref(labels("a"));
        store.append(&[(a, 1_000, 1.0)]);
        store.flush(1_000).unwrap();
        store
            .rw_configure(&["vm".into()], RW_SCRAPED | RW_RULES)
            .unwrap();
        let start = store.rw_position("vm").unwrap().unwrap();
        let woke = store.rw_subscribe();
        store.append(&[(a, 2_000, 2.0)]);
        store.flush(2_000).unwrap();
        assert!(woke.has_changed().unwrap());
        store
            .commit_evaluation(EvaluationRows {
                samples: vec![(labels("rec"), 2_500, 7.0)],
                ..Default::default()
            })
            .unwrap();
        store.append(&[(a, 3_000, 3.0)]);
        store.flush(3_000).unwrap();
        let (got, _) = drain(&store, start, RW_SCRAPED | RW_RULES);
        assert_eq!(
            got,
            vec![
                ("a".into(), 2_000, 2.0),
                ("rec".into(), 2_500, 7.0),
                ("a".into(), 3_000, 3.0)
            ]
        );
        // only the scraped kind
        let (got, _) = drain(&store, start, RW_SCRAPED);
        assert_eq!(got.len(), 2);
        // a partly sent row is resumed after a restart where the position says
        let first = store
            .rw_next(start, RW_SCRAPED | RW_RULES)
            .unwrap()
            .unwrap();
        store
            .rw_ack(
                "vm",
                RwPosition {
                    row: first.id,
                    done: u64::MAX,
                },
            )
            .unwrap();
        drop(store);
        let store = Store::open(&path, opts).unwrap();
        store
            .rw_configure(&["vm".into()], RW_SCRAPED | RW_RULES)
            .unwrap();
        let pos = store.rw_position("vm").unwrap().unwrap();
        assert_eq!(pos.row, first.id);
        let (got, _) = drain(&store, pos, RW_SCRAPED | RW_RULES);
        assert_eq!(
            got,
            vec![("rec".into(), 2_500, 7.0), ("a".into(), 3_000, 3.0)]
        );
        let backlog = store.rw_backlog(pos, RW_SCRAPED | RW_RULES).unwrap();
        assert_eq!(
            backlog
                .iter()
                .map(|q| (q.samples, q.maxt))
                .collect::<Vec<_>>(),
            vec![(1, 2_500), (1, 3_000)]
        );
    }

    #[test]
    fn rows_every_entry_sent_are_deleted_and_a_removed_entry_holds_nothing_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db"), StoreOptions::default()).unwrap();
        store
            .rw_configure(&["a".into(), "b".into()], RW_SCRAPED)
            .unwrap();
        let x = store.series_ref(labels("x"));
        for t in 1..=3 {
            store.append(&[(x, t * 1000, t as f64)]);
            store.flush(t * 1000).unwrap();
        }
        let pos = store.rw_position("a").unwrap().unwrap();
        let rows = store.rw_backlog(pos, RW_SCRAPED).unwrap();
        assert_eq!(rows.len(), 3);
        let last = RwPosition {
            row: rows[2].id,
            done: u64::MAX,
        };
        store.rw_ack("a", last).unwrap();
        // b has sent nothing: every row stays
        assert_eq!(store.rw_backlog(pos, RW_SCRAPED).unwrap().len(), 3);
        assert!(store.rw_queue_bytes().unwrap() > 0);
        // b leaves the configuration: a's position is all that counts
        store.rw_configure(&["a".into()], RW_SCRAPED).unwrap();
        assert_eq!(store.rw_backlog(pos, RW_SCRAPED).unwrap().len(), 1);
        assert!(store.rw_backlog(last, RW_SCRAPED).unwrap().is_empty());
        // no entry: nothing queued and nothing kept
        store.rw_configure(&[], RW_SCRAPED).unwrap();
        store.append(&[(x, 9_000, 9.0)]);
        store.flush(9_000).unwrap();
        assert_eq!(store.rw_queue_bytes().unwrap(), 0);
    }
}
