//! Metadata reads: the series, label names and label values of the series matching selectors
//! with a sample in a time range, as Prometheus's `/api/v1/series`, `/api/v1/labels` and
//! `/api/v1/label/<name>/values` answer them (`server/meta.rs`).
//!
//! Both places a series can be are read: the head (series in memory), and the file for series
//! that left memory, when the range reaches before the head's horizon. A series counts when it
//! has a sample in [mint, maxt] (staleness markers included, as Prometheus's blocks count them);
//! Prometheus is coarser (a series counts when a block or the head it is in overlaps the range),
//! so for a range that cuts through a series' gaps tocsin answers fewer.
//!
//! Bounded: the answer keeps at most `limit` + 1 items however many series match (the smallest,
//! so the first `limit` in sorted order are exact and `truncated` says whether more exist); a
//! series on disk is held only while it is looked at (the candidates are ids, 4 bytes each).

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{SeriesRef, Store, StoreError};
use crate::labels::{Labels, Matcher};

/// What a metadata read returns: at most the `limit` asked for, sorted, and whether more
/// matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capped<T> {
    pub items: Vec<T>,
    /// more than `limit` items matched: the rest were left out
    pub truncated: bool,
}

/// Keeps the `limit + 1` smallest items given to it, deduplicated: enough to answer the first
/// `limit` in order and to know whether there were more, in memory bounded by `limit`.
struct Smallest<T: Ord> {
    set: BTreeSet<T>,
    limit: usize,
}

impl<T: Ord> Smallest<T> {
    fn new(limit: usize) -> Self {
        Smallest {
            set: BTreeSet::new(),
            limit,
        }
    }

    /// Whether `v` would be kept (not a duplicate, and among the smallest): checked before
    /// building an owned item.
    fn wants<Q>(&self, v: &Q) -> bool
    where
        T: std::borrow::Borrow<Q>,
        Q: Ord + ?Sized,
    {
        if self.set.contains(v) {
            return false;
        }
        self.set.len() <= self.limit || self.set.last().is_some_and(|last| v < last.borrow())
    }

    fn insert(&mut self, v: T) {
        if self.set.insert(v) && self.set.len() > self.limit.saturating_add(1) {
            self.set.pop_last();
        }
    }

    fn finish(self) -> Capped<T> {
        let truncated = self.set.len() > self.limit;
        Capped {
            items: self.set.into_iter().take(self.limit).collect(),
            truncated,
        }
    }
}

/// Times are kept a quarter of i64 from its ends, so the range arithmetic cannot overflow
/// (Prometheus's own bounds are ±292 million years).
fn clamp(t: i64) -> i64 {
    t.clamp(i64::MIN / 4, i64::MAX / 4)
}

/// What a visit of the series in a range asks its collector about one series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Visit {
    /// would it add anything (asked before the series' samples are looked at, which cost more
    /// than its labels): false skips it
    Wants,
    /// it has a sample in the range: take what it adds
    Take,
}

/// The collector a visit calls with each series and what it asks; returns whether the series
/// is (or was) wanted.
type Visitor<'a> = dyn FnMut(&Labels, Visit) -> bool + 'a;

/// How one series of the head is judged against a time range.
enum InRange {
    Yes,
    No,
    /// memory holds no sample in the range, but the file may before this time
    OnDisk(i64),
}

impl Store {
    /// Label sets of the series matching any of `sets` (each a conjunction of matchers; none:
    /// every series) with a sample in [mint, maxt] (ms, inclusive), sorted as Prometheus sorts
    /// series, the first `limit`.
    pub fn series_matching(
        &self,
        sets: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
        limit: usize,
        stop: &dyn Fn() -> bool,
    ) -> Result<Capped<Arc<Labels>>, StoreError> {
        let mut out: Smallest<Arc<Labels>> = Smallest::new(limit);
        self.visit_in_range(sets, (mint, maxt), stop, &mut |labels, visit| {
            let wanted = out.wants(labels);
            if wanted && visit == Visit::Take {
                out.insert(Arc::new(labels.clone()));
            }
            wanted
        })?;
        Ok(out.finish())
    }

    /// The label names (`__name__` included) of the series [`Store::series_matching`] selects,
    /// each once, sorted, the first `limit`. With no selector and a range that holds the whole
    /// file, the file's part is read from the label index alone (one seek a name).
    pub fn label_names_matching(
        &self,
        sets: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
        limit: usize,
        stop: &dyn Fn() -> bool,
    ) -> Result<Capped<String>, StoreError> {
        let mut out: Smallest<String> = Smallest::new(limit);
        let mut take = |labels: &Labels, visit: Visit| {
            let mut wanted = false;
            for (name, _) in labels.iter() {
                if out.wants(name) {
                    wanted = true;
                    match visit {
                        Visit::Wants => break,
                        Visit::Take => out.insert(name.to_string()),
                    }
                }
            }
            wanted
        };
        if sets.is_empty() && self.range_holds_the_file(mint, maxt)? {
            self.visit_head_in_range(&[], (mint, maxt), stop, &mut take)?;
            let names = self
                .db
                .lock()
                .expect("db lock")
                .label_names(limit.saturating_add(1))?;
            for name in names {
                if out.wants(name.as_str()) {
                    out.insert(name);
                }
            }
        } else {
            self.visit_in_range(sets, (mint, maxt), stop, &mut take)?;
        }
        Ok(out.finish())
    }

    /// The values label `name` takes on the series [`Store::series_matching`] selects, each
    /// once, sorted, the first `limit`. With no selector and a range that holds the whole file,
    /// the file's part is read from the label index alone (one seek a value).
    pub fn label_values_matching(
        &self,
        name: &str,
        sets: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
        limit: usize,
        stop: &dyn Fn() -> bool,
    ) -> Result<Capped<String>, StoreError> {
        let mut out: Smallest<String> = Smallest::new(limit);
        let mut take = |labels: &Labels, visit: Visit| {
            let Some(v) = labels.get(name) else {
                return false;
            };
            let wanted = out.wants(v);
            if wanted && visit == Visit::Take {
                out.insert(v.to_string());
            }
            wanted
        };
        if sets.is_empty() && self.range_holds_the_file(mint, maxt)? {
            let has =
                [Matcher::new(crate::labels::MatchOp::NotEqual, name, "").expect("not a regex")];
            self.visit_head_in_range(&has, (mint, maxt), stop, &mut take)?;
            let values = self
                .db
                .lock()
                .expect("db lock")
                .label_values(name, limit.saturating_add(1))?;
            for v in values {
                if out.wants(v.as_str()) {
                    out.insert(v);
                }
            }
        } else if sets.is_empty() {
            // only series carrying the label can give a value: narrow by it
            let has = vec![
                Matcher::new(crate::labels::MatchOp::NotEqual, name, "").expect("not a regex"),
            ];
            self.visit_in_range(&[has], (mint, maxt), stop, &mut take)?;
        } else {
            self.visit_in_range(sets, (mint, maxt), stop, &mut take)?;
        }
        Ok(out.finish())
    }

    /// Whether every series of the file (the label index holds them all, those in memory too)
    /// has a sample inside [mint, maxt], so the index alone answers: the range starts at or
    /// before the file's first sample and has no end (the API's default). A range with an end
    /// is judged series by series, since a series in memory may have samples only after it.
    fn range_holds_the_file(&self, mint: i64, maxt: i64) -> Result<bool, StoreError> {
        if clamp(maxt) < i64::MAX / 4 {
            return Ok(false);
        }
        Ok(match self.sample_range()? {
            Some((first, _)) => mint <= first,
            None => true,
        })
    }

    /// Calls `f` with the labels of every series matching any of `sets` (none: every series)
    /// with a sample in [mint, maxt] ([`Visit::Take`]), after asking whether it would add
    /// anything ([`Visit::Wants`]: a label name every series has is found in the first, and the
    /// others' samples are never read for it); a series matching several sets may come more
    /// than once.
    fn visit_in_range(
        &self,
        sets: &[Vec<Matcher>],
        (mint, maxt): (i64, i64),
        stop: &dyn Fn() -> bool,
        f: &mut Visitor<'_>,
    ) -> Result<(), StoreError> {
        let (mint, maxt) = (clamp(mint), clamp(maxt));
        if maxt < mint {
            return Ok(());
        }
        let all = [Vec::new()];
        let sets = if sets.is_empty() { &all[..] } else { sets };
        for set in sets {
            let (in_memory, horizon) = self.visit_head_in_range(set, (mint, maxt), stop, f)?;
            let hi = maxt.min(horizon.saturating_sub(1));
            if mint > hi {
                continue;
            }
            // series that left memory: no sample at or after the horizon
            let db = self.db.lock().expect("db lock");
            let blocks = db.block_range()?;
            let skip = |id: SeriesRef| in_memory.binary_search(&id).is_ok();
            db.visit_series(set, &skip, &mut |id, labels| {
                if stop() {
                    return Err(StoreError::Stopped);
                }
                if !f(&labels, Visit::Wants) {
                    return Ok(());
                }
                let found = match db.series_end(id)? {
                    Some(end) if end < mint => false,
                    Some(end) if end <= hi => true,
                    _ => db.has_sample_in(id, (mint, hi), i64::MAX, blocks)?,
                };
                if found {
                    f(&labels, Visit::Take);
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// The head's part of [`Store::visit_in_range`] for one set of matchers: `f` gets the series
    /// in memory with a sample in [mint, maxt] (the file is read for those whose older samples
    /// are only there). Returns the ids of the matching series in memory (ascending) and the
    /// horizon, for the file's part.
    fn visit_head_in_range(
        &self,
        set: &[Matcher],
        (mint, maxt): (i64, i64),
        stop: &dyn Fn() -> bool,
        f: &mut Visitor<'_>,
    ) -> Result<(Vec<SeriesRef>, i64), StoreError> {
        let (mint, maxt) = (clamp(mint), clamp(maxt));
        if maxt < mint {
            return Ok((Vec::new(), self.head.read().expect("head lock").horizon()));
        }
        let mut older = Vec::new();
        let (ids, horizon) = {
            let head = self.head.read().expect("head lock");
            let ids = head.select_ids(set);
            let mut buf = Vec::new();
            for (n, &id) in ids.iter().enumerate() {
                if n % 1024 == 1023 && stop() {
                    return Err(StoreError::Stopped);
                }
                let Some(labels) = head.labels(id) else {
                    continue;
                };
                if !f(labels, Visit::Wants) {
                    continue;
                }
                // the open chunk holds the newest samples: when its last one is at or before
                // maxt it decides alone (in the range, or every sample is older than mint)
                let judged = match head.latest_from_open(id, maxt, maxt - mint + 1) {
                    Some(Some(_)) => InRange::Yes,
                    Some(None) => InRange::No,
                    None => {
                        buf.clear();
                        let mem_since = head.read(id, mint, maxt, &mut buf);
                        if !buf.is_empty() {
                            InRange::Yes
                        } else if mint < mem_since {
                            InRange::OnDisk(mem_since)
                        } else {
                            InRange::No
                        }
                    }
                };
                match judged {
                    InRange::Yes => {
                        f(labels, Visit::Take);
                    }
                    InRange::No => {}
                    InRange::OnDisk(before) => older.push((id, labels.clone(), before)),
                }
            }
            (ids, head.horizon())
        };
        if !older.is_empty() {
            let db = self.db.lock().expect("db lock");
            let blocks = db.block_range()?;
            for (id, labels, before) in older {
                if stop() {
                    return Err(StoreError::Stopped);
                }
                if db.has_sample_in(id, (mint, maxt), before, blocks)? {
                    f(&labels, Visit::Take);
                }
            }
        }
        Ok((ids, horizon))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::MatchOp;
    use crate::store::{STALENESS_MS, StoreOptions};

    const H: i64 = 3_600_000;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    fn eq(name: &str, value: &str) -> Matcher {
        Matcher::equal(name, value)
    }

    fn re(name: &str, value: &str) -> Matcher {
        Matcher::new(MatchOp::Regex, name, value).unwrap()
    }

    fn names(c: &Capped<Arc<Labels>>) -> Vec<String> {
        c.items.iter().map(|l| l.to_string()).collect()
    }

    /// A store with `old{job="a",zone="x"}` sampled in [0, 10 min] that left memory (on disk
    /// only) and `live{job="b"}` sampled in [2 h, 2 h + 10 min] (in memory).
    fn store(dir: &std::path::Path) -> Store {
        let s = Store::open(&dir.join("t.db"), StoreOptions::default()).unwrap();
        let old = s.series_ref(labels(&[("__name__", "old"), ("job", "a"), ("zone", "x")]));
        for t in (0..=600_000).step_by(15_000) {
            s.append(&[(old, t, 1.0)]);
        }
        let live = s.series_ref(labels(&[("__name__", "live"), ("job", "b")]));
        for t in (2 * H..=2 * H + 600_000).step_by(15_000) {
            s.append(&[(live, t, 2.0)]);
        }
        // `old` is idle past the staleness period: it leaves memory
        s.flush(2 * H + 600_000).unwrap();
        s.flush(2 * H + 600_000 + STALENESS_MS).unwrap();
        assert_eq!(
            s.series(&[eq("__name__", "old")]).len(),
            0,
            "old left memory"
        );
        assert_eq!(s.series(&[eq("__name__", "live")]).len(), 1);
        s
    }

    #[test]
    fn series_come_from_memory_and_disk_inside_the_range_only() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let all = |mint, maxt| names(&s.series_matching(&[], mint, maxt, 100, &|| false).unwrap());
        let both = [
            "live{job=\"b\"}".to_string(),
            "old{job=\"a\", zone=\"x\"}".to_string(),
        ];
        assert_eq!(all(i64::MIN / 4, i64::MAX / 4), both, "head and disk");
        assert_eq!(all(0, 600_000), both[1..], "disk only");
        assert_eq!(all(2 * H, 3 * H), both[..1], "head only");
        assert_eq!(all(600_001, 2 * H - 1), Vec::<String>::new(), "the gap");
        assert_eq!(all(600_000, 600_000), both[1..], "inclusive end");
        assert_eq!(
            all(2 * H + 600_000, i64::MAX / 4),
            both[..1],
            "inclusive start"
        );
        // matchers narrow both parts
        let one = s
            .series_matching(
                &[vec![eq("job", "a")]],
                i64::MIN / 4,
                i64::MAX / 4,
                100,
                &|| false,
            )
            .unwrap();
        assert_eq!(names(&one), both[1..]);
        // several sets are a union, each series once
        let union = s
            .series_matching(
                &[vec![eq("job", "a")], vec![re("__name__", ".+")]],
                i64::MIN / 4,
                i64::MAX / 4,
                100,
                &|| false,
            )
            .unwrap();
        assert_eq!(names(&union), both);
    }

    #[test]
    fn a_limit_keeps_the_first_in_order_and_says_it_cut() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let (lo, hi) = (i64::MIN / 4, i64::MAX / 4);
        let one = s.series_matching(&[], lo, hi, 1, &|| false).unwrap();
        assert_eq!(names(&one), ["live{job=\"b\"}"]);
        assert!(one.truncated);
        let two = s.series_matching(&[], lo, hi, 2, &|| false).unwrap();
        assert!(!two.truncated, "exactly the limit is not a cut");
        let n = s.label_names_matching(&[], lo, hi, 2, &|| false).unwrap();
        assert_eq!(n.items, ["__name__", "job"]);
        assert!(n.truncated);
        let v = s
            .label_values_matching("job", &[], 0, 600_000, 1, &|| false)
            .unwrap();
        assert_eq!((v.items, v.truncated), (vec!["a".to_string()], false));
        let none = s.series_matching(&[], lo, hi, 0, &|| false).unwrap();
        assert!(none.items.is_empty() && none.truncated);
    }

    #[test]
    fn label_names_and_values_follow_the_range_and_the_matchers() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let (lo, hi) = (i64::MIN / 4, i64::MAX / 4);
        let names = |sets: &[Vec<Matcher>], mint, maxt| {
            s.label_names_matching(sets, mint, maxt, 100, &|| false)
                .unwrap()
                .items
        };
        let values = |name, sets: &[Vec<Matcher>], mint, maxt| {
            s.label_values_matching(name, sets, mint, maxt, 100, &|| false)
                .unwrap()
                .items
        };
        // the whole range: the index's fast path for the file's part
        assert_eq!(names(&[], lo, hi), ["__name__", "job", "zone"]);
        assert_eq!(values("__name__", &[], lo, hi), ["live", "old"]);
        assert_eq!(values("job", &[], lo, hi), ["a", "b"]);
        assert_eq!(values("nope", &[], lo, hi), Vec::<String>::new());
        // head only, disk only
        assert_eq!(names(&[], 2 * H, hi), ["__name__", "job"]);
        assert_eq!(names(&[], lo, 600_000), ["__name__", "job", "zone"]);
        assert_eq!(values("__name__", &[], 2 * H, hi), ["live"]);
        assert_eq!(values("__name__", &[], 0, 10), ["old"]);
        assert_eq!(values("zone", &[], 2 * H, hi), Vec::<String>::new());
        // matchers
        let b = [vec![eq("job", "b")]];
        assert_eq!(names(&b, lo, hi), ["__name__", "job"]);
        assert_eq!(values("__name__", &b, lo, hi), ["live"]);
        assert_eq!(values("__name__", &b, 0, 600_000), Vec::<String>::new());
    }

    #[test]
    fn a_head_series_whose_range_part_is_on_disk_is_found_there() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.db"), StoreOptions::default()).unwrap();
        let id = s.series_ref(labels(&[("__name__", "m")]));
        // two hours of samples: their chunks are cut, written and dropped from memory (no head
        // window), while the series stays (not idle); then one sample in memory
        for t in (0..2 * H).step_by(60_000) {
            s.append(&[(id, t, 1.0)]);
        }
        s.flush(2 * H).unwrap();
        s.append(&[(id, 2 * H + 60_000, 1.0)]);
        assert_eq!(s.series(&[]).len(), 1, "still in memory");
        let found = |mint, maxt| {
            s.series_matching(&[], mint, maxt, 10, &|| false)
                .unwrap()
                .items
                .len()
        };
        assert_eq!(found(0, 60_000), 1, "an early sample, on disk");
        assert_eq!(found(2 * H - 60_000, 2 * H), 1, "the last sample on disk");
        assert_eq!(found(2 * H + 60_000, 3 * H), 1, "the sample in memory");
        assert_eq!(found(2 * H, 2 * H + 59_999), 0, "between disk and memory");
        assert_eq!(found(2 * H + 60_001, 3 * H), 0, "after the last sample");
        assert_eq!(found(-H, -1), 0, "before the first");
        assert_eq!(found(30_000, 30_001), 0, "between two samples");
    }

    #[test]
    fn the_label_index_answers_only_for_a_range_without_end() {
        // nothing left memory, everything is flushed: the index holds every series
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.db"), StoreOptions::default()).unwrap();
        let id = s.series_ref(labels(&[("__name__", "m"), ("job", "a")]));
        for t in (H..H + 60_000).step_by(15_000) {
            s.append(&[(id, t, 1.0)]);
        }
        s.flush(H + 60_000).unwrap();
        let values = |mint, maxt| {
            s.label_values_matching("job", &[], mint, maxt, 10, &|| false)
                .unwrap()
                .items
        };
        let names = |mint, maxt| {
            s.label_names_matching(&[], mint, maxt, 10, &|| false)
                .unwrap()
                .items
        };
        assert_eq!(values(0, 1_000), Vec::<String>::new(), "before the samples");
        assert_eq!(names(0, 1_000), Vec::<String>::new());
        assert_eq!(values(0, i64::MAX), ["a"]);
        assert_eq!(names(i64::MIN, i64::MAX), ["__name__", "job"]);
        assert_eq!(
            values(H + 60_001, i64::MAX),
            Vec::<String>::new(),
            "after them"
        );
    }

    #[test]
    fn a_read_told_to_stop_stops_with_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let (lo, hi) = (i64::MIN / 4, 0);
        // the disk part (the range is before the horizon) asks at each series
        let stopped = s.series_matching(&[], lo, hi, 10, &|| true);
        assert!(matches!(stopped, Err(StoreError::Stopped)), "{stopped:?}");
        let stopped = s.label_values_matching("job", &[], lo, hi, 10, &|| true);
        assert!(matches!(stopped, Err(StoreError::Stopped)), "{stopped:?}");
        assert_eq!(
            s.series_matching(&[], lo, hi, 10, &|| false)
                .unwrap()
                .items
                .len(),
            1
        );
    }

    #[test]
    fn extreme_and_inverted_ranges_answer_without_overflow() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        for (mint, maxt, n) in [(i64::MIN, i64::MAX, 2), (i64::MAX, i64::MIN, 0), (5, 4, 0)] {
            assert_eq!(
                s.series_matching(&[], mint, maxt, 10, &|| false)
                    .unwrap()
                    .items
                    .len(),
                n
            );
            let names = s
                .label_names_matching(&[], mint, maxt, 10, &|| false)
                .unwrap();
            assert_eq!(names.items.is_empty(), n == 0);
            let values = s
                .label_values_matching("job", &[], mint, maxt, 10, &|| false)
                .unwrap();
            assert_eq!(values.items.len(), n);
        }
    }

    #[test]
    fn the_smallest_keeps_limit_plus_one_in_order() {
        let mut s: Smallest<String> = Smallest::new(2);
        for v in ["d", "b", "b", "e", "a", "c"] {
            if s.wants(v) {
                s.insert(v.to_string());
            }
        }
        assert_eq!(s.set.len(), 3);
        let c = s.finish();
        assert_eq!(c.items, ["a", "b"]);
        assert!(c.truncated);
    }
}

#[cfg(test)]
mod measure {
    use super::*;
    use crate::store::{STALENESS_MS, StoreOptions};

    /// Times the three reads over 50,000 series in memory and 50,000 that left memory (a debug
    /// build's figures: `cargo test --lib store::meta::measure -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn time_the_reads_over_100k_series() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.db"), StoreOptions::default()).unwrap();
        let h = 3_600_000;
        let mk = |generation: &str, i: usize| {
            Labels::from_pairs([
                ("__name__", format!("m_{}", i % 100)),
                ("gen", generation.to_string()),
                ("idx", i.to_string()),
                ("job", format!("j{}", i % 10)),
            ])
        };
        let old = s.series_refs((0..50_000).map(|i| mk("old", i)).collect());
        for t in [0, 15_000] {
            let batch: Vec<_> = old.iter().map(|&id| (id, t, 1.0)).collect();
            s.append(&batch);
        }
        let live = s.series_refs((0..50_000).map(|i| mk("live", i)).collect());
        for t in [2 * h, 2 * h + 15_000] {
            let batch: Vec<_> = live.iter().map(|&id| (id, t, 1.0)).collect();
            s.append(&batch);
        }
        s.flush(2 * h + 15_000).unwrap();
        s.flush(2 * h + 15_000 + STALENESS_MS).unwrap();
        assert_eq!(s.series(&[]).len(), 50_000);
        let time = |what: &str, f: &dyn Fn() -> usize| {
            let started = std::time::Instant::now();
            let n = f();
            eprintln!("{what}: {n} items in {:?}", started.elapsed());
        };
        let (lo, hi) = (i64::MIN, i64::MAX);
        let job = vec![Matcher::equal("job", "j3")];
        time("names, all time", &|| {
            s.label_names_matching(&[], lo, hi, 100_000, &|| false)
                .unwrap()
                .items
                .len()
        });
        time("names, last hour", &|| {
            s.label_names_matching(&[], 2 * h, 3 * h, 100_000, &|| false)
                .unwrap()
                .items
                .len()
        });
        time("names, 3 h with end", &|| {
            s.label_names_matching(&[], 0, 3 * h, 100_000, &|| false)
                .unwrap()
                .items
                .len()
        });
        time("__name__ values, all time", &|| {
            s.label_values_matching("__name__", &[], lo, hi, 100_000, &|| false)
                .unwrap()
                .items
                .len()
        });
        time("__name__ values, 3 h with end", &|| {
            s.label_values_matching("__name__", &[], 0, 3 * h, 100_000, &|| false)
                .unwrap()
                .items
                .len()
        });
        time("idx values, 3 h with end", &|| {
            s.label_values_matching("idx", &[], 0, 3 * h, 100_000, &|| false)
                .unwrap()
                .items
                .len()
        });
        time("series job=j3, 3 h", &|| {
            s.series_matching(std::slice::from_ref(&job), 0, 3 * h, 100_000, &|| false)
                .unwrap()
                .items
                .len()
        });
        time("series job=j3, limit 10", &|| {
            s.series_matching(std::slice::from_ref(&job), 0, 3 * h, 10, &|| false)
                .unwrap()
                .items
                .len()
        });
    }
}
