//! The store against a real SQLite file: durability across restarts, chunking, reads, retention, bad files.

use crate::common::*;
use tocsin::labels::MatchOp;
use tocsin::store::{BLOCK_MS, SAMPLES_PER_CHUNK, Store, StoreOptions, chunk::stale_nan};

const T0: i64 = 1_700_000_000_000 - 1_700_000_000_000 % BLOCK_MS; // a block boundary

fn counter(store: &Store, job: &str, from: i64, n: usize, step: i64) {
    let id = store.series_ref(labels(&[("__name__", "requests_total"), ("job", job)]));
    let batch: Vec<_> = (0..n)
        .map(|i| (id, from + i as i64 * step, i as f64 * 1.5))
        .collect();
    let stats = store.append(&batch);
    assert_eq!(stats.appended, n);
}

#[test]
fn appended_samples_are_read_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    counter(&store, "a", T0, 300, 1000);
    let got = samples_of(&store, &name_is("requests_total"), T0, T0 + 299_000);
    assert_eq!(got.len(), 300);
    assert_eq!(got[0], (T0, 0.0));
    assert_eq!(got[299], (T0 + 299_000, 299.0 * 1.5));
    // the range is inclusive at both ends
    let got = samples_of(&store, &name_is("requests_total"), T0 + 10_000, T0 + 12_000);
    assert_eq!(
        got.iter().map(|s| s.0 - T0).collect::<Vec<_>>(),
        vec![10_000, 11_000, 12_000]
    );
}

#[test]
fn flushed_samples_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open_store(&dir);
        // more than a chunk, so both closed chunks and the open chunk's WAL rows are involved
        counter(&store, "a", T0, SAMPLES_PER_CHUNK * 2 + 17, 1000);
        store.flush(T0 + 300_000).unwrap();
        // dropped without close(): as after kill -9, only the flush is on disk
    }
    let store = open_store(&dir);
    let got = samples_of(&store, &name_is("requests_total"), T0, T0 + 1_000_000);
    assert_eq!(got.len(), SAMPLES_PER_CHUNK * 2 + 17);
    assert!(
        got.windows(2).all(|w| w[0].0 < w[1].0),
        "no sample is replayed twice"
    );
    // appends continue after the replayed data
    counter(&store, "a", T0 + 1_000_000, 5, 1000);
    assert_eq!(
        samples_of(&store, &name_is("requests_total"), T0, T0 + 2_000_000).len(),
        SAMPLES_PER_CHUNK * 2 + 22
    );
}

#[test]
fn a_crash_replays_every_series_of_many_write_ahead_rows_in_order() {
    // 60 series over 60 flushes of 3 scrapes each: series start and stop at different rows, so
    // rows hold different series; 180 scrapes cut chunks before the crash (their samples are
    // both in chunks and in rows still needed by other series) and the replay cuts none twice
    let rows = crash_and_replay(StoreOptions::default());
    assert_eq!(rows, 19, "the rows since the oldest open chunk began");
}

#[test]
fn a_crash_replays_a_checkpoint_and_the_rows_after_it() {
    // the same with a checkpoint (every open chunk, replacing the rows before it) at every
    // flush, and every 20 samples a series: open chunks, chunks cut after a checkpoint, series
    // that stopped before one or started after one all come back as they were appended
    let every_flush = StoreOptions {
        checkpoint_samples_per_series: 0,
        checkpoint_min_samples: 0,
        ..StoreOptions::default()
    };
    assert_eq!(
        crash_and_replay(every_flush),
        1,
        "one checkpoint row, no other"
    );
    let now_and_then = StoreOptions {
        checkpoint_samples_per_series: 20,
        checkpoint_min_samples: 0,
        ..StoreOptions::default()
    };
    let rows = crash_and_replay(now_and_then);
    assert!(
        (2..=10).contains(&rows),
        "{rows} rows: a checkpoint and the rows after it"
    );
}

/// Writes 60 series over 60 flushes, drops the store as a crash does, reopens it and checks that
/// every sample is back, once and in order; returns the write-ahead rows the crash left.
fn crash_and_replay(opts: StoreOptions) -> i64 {
    let dir = tempfile::tempdir().unwrap();
    let mut want: std::collections::BTreeMap<String, Vec<(i64, f64)>> = Default::default();
    {
        let store = open_store_with(&dir, opts);
        let ids: Vec<_> = (0..60)
            .map(|k| {
                store.series_ref(labels(&[
                    ("__name__", "replayed"),
                    ("series", &format!("s{k:02}")),
                ]))
            })
            .collect();
        for flush in 0..60i64 {
            for scrape in 0..3i64 {
                let t = T0 + (flush * 3 + scrape) * 10_000;
                let mut batch = Vec::new();
                for (k, &id) in ids.iter().enumerate() {
                    let k = k as i64;
                    if flush < k % 7 || flush > 50 + k % 9 {
                        continue;
                    }
                    let v = (k * 1000 + flush * 3 + scrape) as f64 * 0.25;
                    batch.push((id, t, v));
                    want.entry(format!("s{k:02}")).or_default().push((t, v));
                }
                store.append(&batch);
            }
            store.flush(T0 + flush * 30_000 + 29_000).unwrap();
        }
        // dropped without close(): as after kill -9
    }
    let rows: i64 = rusqlite::Connection::open(dir.path().join("tocsin.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM wal", [], |r| r.get(0))
        .unwrap();
    let store = open_store_with(&dir, opts);
    for (series, samples) in &want {
        let got = samples_of(
            &store,
            &[matcher(MatchOp::Equal, "series", series)],
            T0,
            T0 + 10_000_000,
        );
        assert_eq!(&got, samples, "{series}");
    }
    // and appends continue after the replayed samples
    let id = store.series_ref(labels(&[("__name__", "replayed"), ("series", "s00")]));
    assert_eq!(store.append(&[(id, T0 + 5_000_000, 1.0)]).appended, 1);
    rows
}

#[test]
fn the_sample_range_covers_chunks_and_write_ahead_rows_also_in_a_store_without_its_record() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open_store(&dir);
        assert_eq!(store.sample_range().unwrap(), None);
        // two series, 300 samples at 1 s: chunks cut at 120, the rest in write-ahead rows
        counter(&store, "a", T0 + 5_000, 300, 1000);
        counter(&store, "b", T0, 130, 1000);
        store.flush(T0 + 400_000).unwrap();
        assert_eq!(
            store.sample_range().unwrap(),
            Some((T0, T0 + 5_000 + 299_000))
        );
        store.close(T0 + 400_000).unwrap();
        assert_eq!(
            store.sample_range().unwrap(),
            Some((T0, T0 + 5_000 + 299_000))
        );
    }
    // as a store written before the newest chunk end was recorded
    rusqlite::Connection::open(dir.path().join("tocsin.db"))
        .unwrap()
        .execute("DELETE FROM store_meta WHERE key = 'newest_chunk_t'", [])
        .unwrap();
    let reader = Store::open_read_only(&dir.path().join("tocsin.db")).unwrap();
    assert_eq!(
        reader.sample_range().unwrap(),
        Some((T0, T0 + 304_000)),
        "read from the chunk rows"
    );
    drop(reader);
    let store = open_store(&dir);
    assert_eq!(store.sample_range().unwrap(), Some((T0, T0 + 304_000)));
    let recorded: i64 = rusqlite::Connection::open(dir.path().join("tocsin.db"))
        .unwrap()
        .query_row(
            "SELECT value FROM store_meta WHERE key = 'newest_chunk_t'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(recorded, T0 + 304_000, "recorded again at a writable open");
}

#[test]
fn replay_after_repeated_crashes_does_not_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3i64 {
        let store = open_store(&dir);
        counter(&store, "a", T0 + round * 200_000, 150, 1000);
        store.flush(T0 + round * 200_000 + 150_000).unwrap();
    }
    let store = open_store(&dir);
    let got = samples_of(&store, &name_is("requests_total"), T0, T0 + 1_000_000);
    assert_eq!(got.len(), 450);
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
}

#[test]
fn close_writes_everything_into_chunks() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open_store(&dir);
        counter(&store, "a", T0, 50, 15_000);
        counter(&store, "b", T0, 10, 15_000);
        store.close(T0 + 50 * 15_000).unwrap();
        let (bytes, samples) = store.chunk_stats().unwrap();
        assert_eq!(samples, 60);
        assert!(bytes > 0);
    }
    let store = open_store(&dir);
    // b ended ten minutes before a: it stays on disk, but is found there
    assert_eq!(
        store
            .series_between(&[matcher(MatchOp::Regex, "job", "a|b")], T0, T0 + BLOCK_MS)
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        samples_of(
            &store,
            &[matcher(MatchOp::Equal, "job", "b")],
            T0,
            T0 + 10_000_000
        )
        .len(),
        10
    );
}

#[test]
fn unflushed_samples_are_the_only_loss_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open_store(&dir);
        counter(&store, "a", T0, 10, 1000);
        store.flush(T0 + 10_000).unwrap();
        counter(&store, "a", T0 + 10_000, 10, 1000);
        // no flush: these ten are lost, the first ten are not
    }
    let store = open_store(&dir);
    assert_eq!(
        samples_of(&store, &name_is("requests_total"), T0, T0 + 100_000).len(),
        10
    );
}

#[test]
fn old_data_is_read_from_disk_after_leaving_the_head_window() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        head_window_ms: 60_000,
        ..StoreOptions::default()
    };
    let store = open_store_with(&dir, opts);
    // two hours at 15 s: crosses a block boundary and many chunk cuts
    counter(&store, "a", T0 + 1000, 480, 15_000);
    store.flush(T0 + 480 * 15_000).unwrap();
    let stats = store.stats();
    let (_, disk_samples) = store.chunk_stats().unwrap();
    // memory holds the last minute plus the open chunk, not the two hours on disk (stored
    // sealed, so compared with the two hours as open XOR chunks)
    let mut two_hours = tocsin::store::chunk::ChunkEncoder::new();
    for i in 0..480 {
        two_hours
            .push(T0 + 1000 + i * 15_000, i as f64 * 1.5)
            .unwrap();
    }
    assert!(
        stats.head_chunk_bytes * 3 < two_hours.byte_len(),
        "{stats:?} vs {}",
        two_hours.byte_len()
    );
    assert!(disk_samples >= 480 - 120, "{disk_samples} samples on disk");
    let got = samples_of(&store, &name_is("requests_total"), T0, T0 + 10 * BLOCK_MS);
    assert_eq!(got.len(), 480);
    assert!(got.windows(2).all(|w| w[1].0 - w[0].0 == 15_000));
    // the values come back exactly from sealed (decimal) chunks on disk
    assert!(got.iter().enumerate().all(|(i, s)| s.1 == i as f64 * 1.5));
    // a read straddling disk and memory
    let got = samples_of(
        &store,
        &name_is("requests_total"),
        T0 + 1000 + 470 * 15_000,
        T0 + 1000 + 479 * 15_000,
    );
    assert_eq!(got.len(), 10);
}

#[test]
fn retention_drops_whole_old_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        head_window_ms: 60_000,
        retention_ms: 2 * BLOCK_MS,

        ..StoreOptions::default()
    };
    let store = open_store_with(&dir, opts);
    counter(&store, "a", T0, 4 * 240, 15_000); // four hours
    store.flush(T0 + 4 * BLOCK_MS).unwrap();
    let got = samples_of(&store, &name_is("requests_total"), T0, T0 + 5 * BLOCK_MS);
    // blocks 0 and 1 are gone; blocks 2 and 3 remain (the cutoff is block-aligned)
    assert_eq!(got.first().map(|s| s.0), Some(T0 + 2 * BLOCK_MS));
    assert_eq!(got.len(), 2 * 240);
}

#[test]
fn latest_respects_lookback_and_staleness() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    let a = store.series_ref(labels(&[("__name__", "up"), ("job", "a")]));
    let b = store.series_ref(labels(&[("__name__", "up"), ("job", "b")]));
    store.append(&[
        (a, T0, 1.0),
        (b, T0, 1.0),
        (a, T0 + 15_000, 0.0),
        (b, T0 + 15_000, stale_nan()),
    ]);
    let got = store.latest(&name_is("up"), T0 + 20_000, 300_000).unwrap();
    assert_eq!(got.len(), 1, "the stale series is gone");
    assert_eq!(got[0].0.get("job"), Some("a"));
    assert_eq!((got[0].1, got[0].2), (T0 + 15_000, 0.0));
    // outside the lookback nothing is returned
    assert!(
        store
            .latest(&name_is("up"), T0 + 15_000 + 300_000, 300_000)
            .unwrap()
            .is_empty()
    );
    // before the stale marker the series was alive
    assert_eq!(
        store
            .latest(&name_is("up"), T0 + 10_000, 300_000)
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn out_of_order_and_duplicate_samples_are_counted_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    let a = store.series_ref(labels(&[("__name__", "x")]));
    let stats = store.append(&[
        (a, T0 + 2000, 1.0),
        (a, T0 + 1000, 2.0),
        (a, T0 + 2000, 1.0),
        (a, T0 + 2000, 3.0),
    ]);
    assert_eq!(
        (stats.appended, stats.out_of_order, stats.duplicates),
        (1, 2, 1)
    );
    assert_eq!(
        samples_of(&store, &name_is("x"), T0, T0 + 10_000),
        vec![(T0 + 2000, 1.0)]
    );
}

#[test]
fn matchers_select_by_equality_regex_and_absence() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    for (status, path) in [("200", "/a"), ("500", "/a"), ("503", "/b"), ("404", "")] {
        let id = store.series_ref(labels(&[
            ("__name__", "http_requests_total"),
            ("status", status),
            ("path", path),
        ]));
        store.append(&[(id, T0, 1.0)]);
    }
    let count = |m: Vec<tocsin::labels::Matcher>| store.select(&m, T0, T0).unwrap().len();
    assert_eq!(count(vec![matcher(MatchOp::Regex, "status", "5..")]), 2);
    assert_eq!(count(vec![matcher(MatchOp::NotRegex, "status", "5..")]), 2);
    assert_eq!(count(vec![matcher(MatchOp::Equal, "path", "")]), 1);
    assert_eq!(
        count(vec![
            matcher(MatchOp::NotEqual, "path", "/a"),
            matcher(MatchOp::Regex, "status", "5.*")
        ]),
        1
    );
    assert_eq!(
        count(vec![matcher(
            MatchOp::Equal,
            "__name__",
            "http_requests_total"
        )]),
        4
    );
    assert_eq!(count(vec![matcher(MatchOp::Equal, "__name__", "nope")]), 0);
}

#[test]
fn series_ids_are_stable_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let l = labels(&[("__name__", "x"), ("job", "a")]);
    let first = {
        let store = open_store(&dir);
        store.series_ref(labels(&[("__name__", "y")]));
        let id = store.series_ref(l.clone());
        store.flush(T0).unwrap();
        id
    };
    let store = open_store(&dir);
    assert_eq!(store.series_ref(l), first);
}

#[test]
fn notes_persist_with_their_series() {
    let dir = tempfile::tempdir().unwrap();
    let l = labels(&[("__name__", "health_check_ok"), ("check", "pdns")]);
    {
        let store = open_store(&dir);
        let id = store.series_ref(l.clone());
        store.append(&[(id, T0, 0.0)]);
        store.set_note(id, T0, "connection refused");
        store.flush(T0).unwrap();
    }
    let store = open_store(&dir);
    assert_eq!(store.note(&l).as_deref(), Some("connection refused"));
}

#[test]
fn target_first_seen_is_recorded_once() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open_store(&dir);
        assert_eq!(store.target_first_seen("scaidns", T0).unwrap(), T0);
    }
    let store = open_store(&dir);
    assert_eq!(store.target_first_seen("scaidns", T0 + 60_000).unwrap(), T0);
}

#[test]
fn a_corrupt_file_is_an_error_and_is_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tocsin.db");
    let garbage = b"this is not a database, it is a grocery list\n".repeat(200);
    std::fs::write(&path, &garbage).unwrap();
    let err = Store::open(&path, StoreOptions::default())
        .err()
        .expect("open must fail");
    let msg = err.to_string();
    assert!(
        msg.contains("cannot open store") && msg.contains("tocsin.db"),
        "{msg}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), garbage, "no silent reset");
}

#[test]
fn another_programs_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        .unwrap();
    drop(conn);
    let err = Store::open(&path, StoreOptions::default())
        .err()
        .expect("open must fail");
    assert!(err.to_string().contains("another program"), "{err}");
}

#[test]
fn an_unwritable_data_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    // a file where the directory should be: fails even when running as root
    let blocker = dir.path().join("data");
    std::fs::write(&blocker, b"").unwrap();
    let err = Store::open(&blocker.join("tocsin.db"), StoreOptions::default())
        .err()
        .expect("open must fail");
    assert!(
        err.to_string().contains("cannot create data directory"),
        "{err}"
    );
}

#[test]
fn readers_can_raise_the_head_window() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let lean = open_store(&a);
    let wide = open_store(&b);
    wide.set_head_window(3_600_000);
    for store in [&lean, &wide] {
        counter(store, "a", T0 + 1000, 240, 15_000); // one hour
        store.flush(T0 + 240 * 15_000).unwrap();
    }
    let (lean_bytes, wide_bytes) = (lean.stats().head_chunk_bytes, wide.stats().head_chunk_bytes);
    assert!(
        wide_bytes > lean_bytes,
        "wide {wide_bytes} lean {lean_bytes}"
    );
    // both read the whole hour, from memory or from the file
    for store in [&lean, &wide] {
        assert_eq!(
            samples_of(store, &name_is("requests_total"), T0, T0 + BLOCK_MS).len(),
            240
        );
    }
}

#[test]
fn rule_states_replace_and_only_the_last_20_evaluations_are_kept() {
    use tocsin::store::{EvaluationRows, RuleEval, RuleStateRow};
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    for i in 0..25 {
        let rules = vec![RuleStateRow {
            rule_key: "g/A/1".into(),
            alerts: if i < 24 {
                vec![(7, format!("state {i}")), (8, "x".into())]
            } else {
                vec![(7, "last".into())]
            },
            eval: Some(RuleEval {
                t: i * 1000,
                duration_s: 0.001,
                results: i as usize,
                error: (i == 24).then(|| "boom".to_string()),
            }),
            ..Default::default()
        }];
        store
            .commit_evaluation(EvaluationRows {
                rules,
                ..Default::default()
            })
            .unwrap();
    }
    drop(store);
    let store = open_store(&dir);
    assert_eq!(
        store.rule_states().unwrap(),
        vec![("g/A/1".to_string(), 7, "last".to_string())]
    );
    let evals = store.rule_evals("g/A/1").unwrap();
    assert_eq!(evals.len(), 20);
    assert_eq!(evals[0].t, 24_000, "newest first");
    assert_eq!(evals[0].error.as_deref(), Some("boom"));
    assert_eq!(evals[19].t, 5_000);
}

#[test]
fn outbox_rows_are_durable_and_retried_or_failed() {
    use tocsin::store::{EvaluationRows, OutboxEntry};
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    let mut outbox = Vec::new();
    for (i, r) in ["ops", "oncall"].iter().enumerate() {
        outbox.push(OutboxEntry {
            receiver: r.to_string(),
            group_key: "{}:{}".into(),
            idempotency_key: format!("k{i}"),
            payload: "{}".into(),
            created: 1000,
            log_entry: format!("sent {i}"),
            log_receiver: r.to_string(),
        });
    }
    // nothing is visible before the commit that makes it durable
    assert!(store.outbox_due(5000, 10).unwrap().is_empty());
    store
        .commit_evaluation(EvaluationRows {
            outbox,
            ..Default::default()
        })
        .unwrap();
    drop(store);
    let store = open_store(&dir);
    let due = store.outbox_due(1000, 10).unwrap();
    assert_eq!(due.len(), 2);
    assert_eq!(store.nflog().unwrap().len(), 2);
    store
        .outbox_retry(due[0].id, 3000, "connection refused")
        .unwrap();
    store.outbox_failed(due[1].id, "HTTP 400", 7).unwrap();
    assert!(
        store.outbox_due(2999, 10).unwrap().is_empty(),
        "nothing due"
    );
    let again = store.outbox_due(3000, 10).unwrap();
    assert_eq!(
        (
            again.len(),
            again[0].attempts,
            again[0].idempotency_key.as_str()
        ),
        (1, 1, "k0")
    );
    assert_eq!(store.outbox_depth().unwrap(), 1);
    store.outbox_delivered(again[0].id, 8).unwrap();
    // both outcomes are in the history, newest first
    let sent = store.sent(10, None).unwrap();
    assert_eq!(
        sent.iter()
            .map(|r| (r.status.as_str(), r.at))
            .collect::<Vec<_>>(),
        vec![("delivered", 8), ("failed", 7)]
    );
    assert_eq!(sent[1].error.as_deref(), Some("HTTP 400"));
    assert_eq!(store.sent(10, Some("failed")).unwrap().len(), 1);
    assert_eq!(store.outbox_depth().unwrap(), 0);
}

#[test]
fn outbox_due_limits_rows_per_receiver_so_one_backlog_does_not_hide_others() {
    use tocsin::store::OutboxEntry;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    // a dead receiver's backlog queued first, then one row for another receiver
    let entry = |receiver: &str, i: usize| OutboxEntry {
        receiver: receiver.to_string(),
        group_key: "{}:{}".into(),
        idempotency_key: format!("{receiver}{i}"),
        payload: "{}".into(),
        created: 1000,
        log_entry: String::new(),
        log_receiver: String::new(),
    };
    for i in 0..5 {
        store.outbox_insert(&entry("dead", i)).unwrap();
    }
    store.outbox_insert(&entry("live", 0)).unwrap();
    let due = store.outbox_due(1000, 3).unwrap();
    assert_eq!(
        due.iter()
            .map(|r| r.idempotency_key.as_str())
            .collect::<Vec<_>>(),
        ["dead0", "dead1", "dead2", "live0"],
        "the oldest 3 of each receiver, in id order"
    );
}

#[test]
fn rule_transitions_are_written_with_the_flush_and_only_the_last_100_are_kept() {
    use tocsin::store::{EvaluationRows, RuleStateRow, RuleTransition};
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    let tr = |i: i64| RuleTransition {
        t: i * 1000,
        fingerprint: 7,
        labels: format!("{{n=\"{i}\"}}"),
        from: "pending".into(),
        to: "firing".into(),
        flapping: (i == 119).then_some(true),
    };
    let rows = |i: i64| EvaluationRows {
        rules: vec![RuleStateRow {
            rule_key: "g/A/1".into(),
            transitions: vec![tr(i)],
            ..Default::default()
        }],
        ..Default::default()
    };
    let first = rows(0);
    assert!(
        store.rule_transitions("g/A/1").unwrap().is_empty(),
        "in the batch, not yet committed"
    );
    store.commit_evaluation(first).unwrap();
    assert_eq!(store.rule_transitions("g/A/1").unwrap(), vec![tr(0)]);
    for i in 1..120 {
        store.commit_evaluation(rows(i)).unwrap();
    }
    drop(store);
    let store = open_store(&dir);
    let kept = store.rule_transitions("g/A/1").unwrap();
    assert_eq!(kept.len(), 100);
    assert_eq!(kept[0], tr(119), "newest first");
    assert_eq!(kept[99], tr(20));
    assert!(store.rule_transitions("other").unwrap().is_empty());
}

/// One writer per store: a second open for writing is refused with a clear error naming the
/// holder's pid and the lock file, read-only opens work beside the writer, and the lock goes
/// with the writer.
#[test]
fn a_second_writer_is_refused_and_readers_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data/tocsin.db");
    let first = Store::open(&path, StoreOptions::default()).unwrap();
    let err = Store::open(&path, StoreOptions::default())
        .err()
        .expect("a second writer must be refused");
    let text = err.to_string();
    assert!(
        text.contains("in use by another tocsin")
            && text.contains(&format!("(pid {})", std::process::id()))
            && text.contains("tocsin.db.lock"),
        "{text}"
    );
    assert!(Store::open_read_only(&path).is_ok());
    drop(first);
    assert!(Store::open(&path, StoreOptions::default()).is_ok());
}

/// Damaged stores are refused with the reason, never silently reset: an empty file, and a
/// tocsin store missing one of its core tables (re-creating it would attribute old chunks to
/// new, unrelated series).
#[test]
fn damaged_stores_are_refused_not_reset() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let err = Store::open(&empty, StoreOptions::default())
        .err()
        .expect("empty file refused");
    assert!(err.to_string().contains("the file is empty"), "{err}");
    assert_eq!(
        std::fs::metadata(&empty).unwrap().len(),
        0,
        "the file was touched"
    );

    let path = dir.path().join("tocsin.db");
    drop(Store::open(&path, StoreOptions::default()).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("DROP TABLE series")
        .unwrap();
    let err = Store::open(&path, StoreOptions::default())
        .err()
        .expect("missing table refused");
    assert!(err.to_string().contains("table series is missing"), "{err}");
    let err = Store::open_read_only(&path)
        .err()
        .expect("also when reading");
    assert!(err.to_string().contains("table series is missing"), "{err}");
}

/// `n` series `churn{pod="p<i>"}`, each with three samples 15 s apart from `from`.
fn churned(store: &Store, from: i64, first: usize, n: usize) {
    let ids = store.series_refs(
        (first..first + n)
            .map(|i| labels(&[("__name__", "churn"), ("pod", &format!("p{i}"))]))
            .collect(),
    );
    let batch: Vec<_> = ids
        .iter()
        .flat_map(|&id| (0..3).map(move |k| (id, from + k * 15_000, k as f64)))
        .collect();
    assert_eq!(store.append(&batch).appended, 3 * n);
}

fn count_series(
    store: &Store,
    matchers: &[tocsin::labels::Matcher],
    mint: i64,
    maxt: i64,
) -> usize {
    store.select(matchers, mint, maxt).unwrap().len()
}

#[test]
fn idle_series_leave_the_head_and_their_history_stays_readable() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    churned(&store, T0, 0, 500);
    counter(&store, "live", T0, 60, 15_000);
    store.flush(T0 + 60_000).unwrap();
    assert_eq!(store.stats().series, 501, "not idle yet: all in memory");
    // fifteen minutes later only the live series is still appended to
    counter(&store, "live", T0 + 60 * 15_000, 1, 15_000);
    let stats = store.flush(T0 + 15 * 60_000).unwrap();
    assert_eq!(stats.series_dropped, 500);
    assert_eq!(store.stats().series, 1, "the idle series left the head");
    assert_eq!(store.series(&name_is("churn")).len(), 0);
    // their samples are still there for a range that covers them, by any matcher
    let all = store.select(&name_is("churn"), T0, T0 + 60_000).unwrap();
    assert_eq!(all.len(), 500);
    assert!(all.iter().all(|s| s.samples.len() == 3));
    let one = [matcher(MatchOp::Equal, "pod", "p42")];
    assert_eq!(
        samples_of(&store, &one, T0, T0 + 60_000),
        vec![(T0, 0.0), (T0 + 15_000, 1.0), (T0 + 30_000, 2.0)]
    );
    let re = [
        matcher(MatchOp::Regex, "pod", "p4[0-9]"),
        matcher(MatchOp::NotEqual, "pod", "p40"),
    ];
    assert_eq!(count_series(&store, &re, T0, T0 + 60_000), 9);
    // an instant lookup inside their lifetime finds them, one after it does not
    assert_eq!(
        store
            .latest(&name_is("churn"), T0 + 40_000, 300_000)
            .unwrap()
            .len(),
        500
    );
    assert_eq!(
        store
            .latest(&name_is("churn"), T0 + 15 * 60_000, 300_000)
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        store
            .series_between(&name_is("churn"), T0, T0 + 60_000)
            .unwrap()
            .len(),
        500
    );
    assert_eq!(
        store
            .series_between(&name_is("churn"), T0 + 60_000, T0 + 15 * 60_000)
            .unwrap()
            .len(),
        0,
        "no sample in that range"
    );
    // the live series is whole, memory and disk together
    assert_eq!(
        samples_of(
            &store,
            &[matcher(MatchOp::Equal, "job", "live")],
            T0,
            T0 + BLOCK_MS
        )
        .len(),
        61
    );
}

#[test]
fn a_series_that_comes_back_keeps_its_id_and_its_history_joins() {
    let dir = tempfile::tempdir().unwrap();
    let l = labels(&[("__name__", "requests_total"), ("job", "back")]);
    let (old_id, cached) = {
        let store = open_store(&dir);
        let id = store.series_ref(l.clone());
        let cached = store.series_ref(labels(&[("__name__", "cached")]));
        store.append(&[(id, T0, 1.0), (id, T0 + 15_000, 2.0), (cached, T0, 7.0)]);
        store.flush(T0 + 20 * 60_000).unwrap();
        assert_eq!(store.stats().series, 0);
        // by its labels (a new scrape cache): the old id, and appends continue after its chunk
        assert_eq!(store.series_ref(l.clone()), id);
        let stats = store.append(&[(id, T0 + 15_000, 2.0), (id, T0 + 21 * 60_000, 3.0)]);
        assert_eq!(stats.appended, 1, "{stats:?}");
        assert_eq!(stats.duplicates + stats.out_of_order, 1, "{stats:?}");
        // by an id a scrape cache kept from before: brought back from disk, not dropped
        let stats = store.append(&[(cached, T0 + 21 * 60_000, 8.0)]);
        assert_eq!(stats.appended, 1, "{stats:?}");
        assert_eq!(
            samples_of(
                &store,
                &[matcher(MatchOp::Equal, "job", "back")],
                T0,
                T0 + BLOCK_MS
            ),
            vec![(T0, 1.0), (T0 + 15_000, 2.0), (T0 + 21 * 60_000, 3.0)]
        );
        assert_eq!(
            samples_of(&store, &name_is("cached"), T0, T0 + BLOCK_MS).len(),
            2
        );
        store.flush(T0 + 22 * 60_000).unwrap();
        (id, cached)
    };
    // after a crash (no close), the same again from the file
    let store = open_store(&dir);
    assert_eq!(store.series_ref(l), old_id);
    assert_eq!(store.series_ref(labels(&[("__name__", "cached")])), cached);
    assert_eq!(
        samples_of(
            &store,
            &[matcher(MatchOp::Equal, "job", "back")],
            T0,
            T0 + BLOCK_MS
        )
        .len(),
        3
    );
    // a new series never takes an id the file used
    let fresh = store.series_ref(labels(&[("__name__", "fresh")]));
    assert!(fresh > old_id.max(cached));
}

#[test]
fn retention_prunes_series_whose_last_chunk_it_deleted_and_never_reuses_their_ids() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        head_window_ms: 0,
        retention_ms: BLOCK_MS,

        ..StoreOptions::default()
    };
    let top = {
        let store = open_store_with(&dir, opts);
        churned(&store, T0, 0, 50);
        counter(&store, "live", T0, 1, 15_000);
        store.flush(T0 + 30 * 60_000).unwrap();
        assert_eq!(store.stats().series, 0);
        // the highest id belongs to a series that will be pruned
        let top = store.series_ref(labels(&[("__name__", "churn"), ("pod", "last")]));
        store.append(&[(top, T0 + 31 * 60_000, 1.0)]);
        // the live series goes on every 15 s for three hours, flushed every ten minutes
        let mut pruned = 0;
        for step in 0..18i64 {
            let from = T0 + 15_000 + step * 600_000;
            counter(&store, "live", from, 40, 15_000);
            let stats = store.flush(from + 600_000 - 15_000).unwrap();
            pruned += stats.series_pruned;
            if step == 8 {
                // at 1 h 30: block 0 is still kept, and its series with it
                assert_eq!(pruned, 0);
                assert_eq!(
                    store
                        .series_between(&name_is("churn"), T0, T0 + BLOCK_MS)
                        .unwrap()
                        .len(),
                    51
                );
            }
        }
        assert_eq!(
            pruned, 51,
            "retention deleted block 0 at 2 h, and their rows with it"
        );
        assert!(
            store
                .series_between(&name_is("churn"), i64::MIN, i64::MAX)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store
                .series_between(
                    &[matcher(MatchOp::Equal, "job", "live")],
                    i64::MIN,
                    i64::MAX
                )
                .unwrap()
                .len(),
            1,
            "a series in memory is never pruned"
        );
        // the label index lost them too
        assert_eq!(
            count_series(
                &store,
                &[matcher(MatchOp::Regex, "pod", ".+")],
                T0,
                T0 + 4 * BLOCK_MS
            ),
            0
        );
        top
    };
    let store = open_store_with(&dir, opts);
    let again = store.series_ref(labels(&[("__name__", "churn"), ("pod", "last")]));
    assert!(
        again > top,
        "a pruned id is not given again: {again} <= {top}"
    );
    assert_eq!(
        samples_of(
            &store,
            &[matcher(MatchOp::Equal, "pod", "last")],
            T0,
            T0 + 4 * BLOCK_MS
        ),
        vec![]
    );
}

#[test]
fn open_loads_only_the_series_with_recent_samples() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open_store(&dir);
        churned(&store, T0, 0, 400);
        store.flush(T0 + 10 * 60_000).unwrap();
        churned(&store, T0 + 20 * 60_000, 400, 10);
        store.close(T0 + 21 * 60_000).unwrap();
    }
    let reader = Store::open_read_only(&dir.path().join("tocsin.db")).unwrap();
    assert_eq!(
        reader.stats().series,
        0,
        "a reader loads only the series of WAL rows (none after a clean close)"
    );
    let writer = open_store(&dir);
    assert_eq!(writer.stats().series, 10, "a writer loads the last ten");
    for store in [writer, reader] {
        assert_eq!(
            count_series(&store, &name_is("churn"), T0, T0 + BLOCK_MS),
            410
        );
        assert_eq!(
            store
                .latest(&name_is("churn"), T0 + 20 * 60_000 + 30_000, 300_000)
                .unwrap()
                .len(),
            10
        );
    }
    // after a crash, the series of the write-ahead rows are loaded whatever their age
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open_store(&dir);
        churned(&store, T0, 0, 30);
        store.flush(T0 + 60_000).unwrap();
        churned(&store, T0 + 20 * 60_000, 30, 5);
        store.flush(T0 + 20 * 60_000 + 60_000).unwrap();
    }
    let store = open_store(&dir);
    assert_eq!(
        count_series(&store, &name_is("churn"), T0, T0 + BLOCK_MS),
        35
    );
    assert!(store.stats().series >= 5);
    assert_eq!(
        store
            .select(&name_is("churn"), T0, T0 + BLOCK_MS)
            .unwrap()
            .iter()
            .map(|s| s.samples.len())
            .sum::<usize>(),
        105
    );
}

/// Each series' sorted label pairs and its samples as `(t ms, value bits)`, sorted by labels.
type SeriesBits = Vec<(Vec<(String, String)>, Vec<(i64, u64)>)>;

/// The series in `fixtures/store/v1-raw-wal.expected.json`.
fn raw_wal_fixture_expected() -> SeriesBits {
    let text =
        std::fs::read_to_string(project_dir().join("fixtures/store/v1-raw-wal.expected.json"))
            .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut out: Vec<_> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let mut labels: Vec<(String, String)> = s["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            labels.sort();
            let samples = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                    let v: f64 = p[1].as_str().unwrap().parse().unwrap();
                    (t, v.to_bits())
                })
                .collect();
            (labels, samples)
        })
        .collect();
    out.sort();
    out
}

/// The same, read from a store (stale markers left out, as the range query leaves them out).
fn raw_wal_fixture_read(store: &Store) -> SeriesBits {
    let at = 1_796_516_731_000;
    let m = [matcher(MatchOp::Regex, "__name__", "fixture_.*")];
    let mut out: Vec<_> = store
        .select(&m, at - 60_000, at)
        .unwrap()
        .into_iter()
        .map(|s| {
            let mut labels: Vec<(String, String)> = s
                .labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            labels.sort();
            let samples = s
                .samples
                .iter()
                .filter(|(_, v)| !tocsin::store::is_stale(*v))
                .map(|&(t, v)| (t, v.to_bits()))
                .collect();
            (labels, samples)
        })
        .collect();
    out.sort();
    out
}

fn pragma(path: &std::path::Path, name: &str) -> i64 {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
        .unwrap()
}

#[test]
fn a_store_of_the_previous_version_replays_its_raw_wal_rows_and_is_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tocsin.db");
    std::fs::copy(project_dir().join("fixtures/store/v1-raw-wal.db"), &path).unwrap();
    let expected = raw_wal_fixture_expected();
    assert_eq!(
        expected.len(),
        22,
        "20 counters, the gauge, the vanishing series"
    );
    // a reader beside a daemon of the previous version: nothing changes in the file
    assert_eq!(
        raw_wal_fixture_read(&Store::open_read_only(&path).unwrap()),
        expected
    );
    assert_eq!(pragma(&path, "user_version"), 1);
    let vanishing = name_is("fixture_vanishing");
    {
        let store = Store::open(&path, StoreOptions::default()).unwrap();
        assert_eq!(raw_wal_fixture_read(&store), expected);
        // the staleness marker came back bit for bit
        let v = samples_of(&store, &vanishing, 0, i64::MAX);
        assert_eq!(v.len(), 5, "{v:?}");
        assert!(tocsin::store::is_stale(v[4].1));
        // new samples go to a row in the grouped layout, beside the raw ones
        let id = store.series_ref(labels(&[("__name__", "fixture_after")]));
        let t = 1_796_516_740_000;
        store.append(&[(id, t, 1.0), (id, t + 1000, f64::NAN)]);
        store.flush(t + 2000).unwrap();
        // dropped without close: the next open replays both layouts
    }
    assert_eq!(pragma(&path, "user_version"), 3);
    assert_eq!(pragma(&path, "auto_vacuum"), 2, "incremental");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let layouts: Vec<bool> = conn
        .prepare("SELECT data FROM wal ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|d| d.unwrap().starts_with(&[0x80, 0x00]))
        .collect();
    assert_eq!(layouts.last(), Some(&true), "the new row is grouped");
    assert!(layouts.iter().filter(|g| !**g).count() >= 5, "{layouts:?}");
    drop(conn);
    let store = Store::open(&path, StoreOptions::default()).unwrap();
    assert_eq!(raw_wal_fixture_read(&store), expected);
    assert_eq!(samples_of(&store, &vanishing, 0, i64::MAX).len(), 5);
    let after = samples_of(&store, &name_is("fixture_after"), 0, i64::MAX);
    assert_eq!(after.len(), 2);
    assert!(after[1].1.is_nan());
}

#[test]
fn a_damaged_wal_row_is_a_corrupt_store_naming_the_damage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tocsin.db");
    {
        let store = Store::open(&path, StoreOptions::default()).unwrap();
        counter(&store, "a", T0, 10, 1000);
        store.flush(T0 + 10_000).unwrap();
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    let data: Vec<u8> = conn
        .query_row("SELECT data FROM wal", [], |r| r.get(0))
        .unwrap();
    assert!(data.starts_with(&[0x80, 0x00]));
    conn.execute("UPDATE wal SET data = ?1", [&data[..data.len() - 3]])
        .unwrap();
    drop(conn);
    let err = Store::open(&path, StoreOptions::default())
        .err()
        .expect("damage refused");
    assert!(err.to_string().contains("corrupt wal batch"), "{err}");
}

#[test]
fn retention_returns_the_space_of_deleted_blocks_to_the_file_system() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tocsin.db");
    let opts = StoreOptions {
        head_window_ms: 0,
        retention_ms: 2 * BLOCK_MS,
        ..StoreOptions::default()
    };
    let store = open_store_with(&dir, opts);
    // 300 series, six hours at 15 s: 432k samples, several MB of chunks
    let ids: Vec<_> = (0..300)
        .map(|i| store.series_ref(labels(&[("__name__", "g"), ("i", &i.to_string())])))
        .collect();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for step in 0..6 * 240i64 {
        let t = T0 + step * 15_000;
        let batch: Vec<_> = ids
            .iter()
            .map(|&id| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (id, t, (x >> 11) as f64)
            })
            .collect();
        store.append(&batch);
        if step % 240 == 239 {
            store.flush(t).unwrap();
        }
    }
    let size = || std::fs::metadata(&path).unwrap().len();
    let before = size();
    assert!(before > 2 << 20, "{before} bytes");
    // two hours later: retention keeps blocks 6 and 7 only, and every older chunk goes
    let mut flushes = 0;
    let mut last = T0 + 6 * BLOCK_MS;
    loop {
        last += 5_000;
        store.flush(last + 2 * BLOCK_MS).unwrap();
        flushes += 1;
        if pragma(&path, "freelist_count") == 0 || flushes == 20 {
            break;
        }
    }
    let after = size();
    eprintln!(
        "retention: file {before} bytes before, {after} after {flushes} flushes, \
         {} free pages",
        pragma(&path, "freelist_count")
    );
    assert_eq!(pragma(&path, "freelist_count"), 0);
    assert!(
        after * 4 < before,
        "the file shrank from {before} to {after} bytes"
    );
    drop(store);
    // the space stays returned across a restart
    let store = open_store_with(&dir, opts);
    assert!(
        store
            .select(&name_is("g"), T0, T0 + 10 * BLOCK_MS)
            .unwrap()
            .iter()
            .all(|s| s.samples.is_empty()),
        "everything was past retention"
    );
}

#[test]
fn a_checkpoint_is_written_only_while_the_rows_kept_hold_enough_samples() {
    // one series at 1 s, flushed every 5 s for 10 minutes: its chunk is cut every 120 samples
    // and the rows before go with it, so at most ~125 samples are ever kept in rows
    let checkpoints = |per_series: usize| {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions {
            checkpoint_samples_per_series: per_series,
            checkpoint_min_samples: 0,
            ..StoreOptions::default()
        };
        let store = open_store_with(&dir, opts);
        let id = store.series_ref(labels(&[("__name__", "up")]));
        for k in 0..600 {
            store.append(&[(id, T0 + 1000 + k * 1000, k as f64)]);
            if k % 5 == 4 {
                store.flush(T0 + 1000 + k * 1000).unwrap();
            }
        }
        drop(store);
        let conn = rusqlite::Connection::open(dir.path().join("tocsin.db")).unwrap();
        let mut stmt = conn.prepare("SELECT data FROM wal").unwrap();
        let rows: Vec<Vec<u8>> = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        // a checkpoint row's times are absolute: its base, the fourth byte, is zigzag(0)
        rows.iter().filter(|r| r.get(3) == Some(&0)).count()
    };
    assert_eq!(checkpoints(130), 0, "the cuts keep the rows short");
    assert_eq!(
        checkpoints(20),
        1,
        "a checkpoint replaces the rows once they hold 20"
    );
}
