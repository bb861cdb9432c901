//! An in-memory [`Storage`]: series in a sorted map, for PromQL conformance tests and rule unit
//! tests (`tocsin test`), where data is synthetic and small.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{QueryError, Storage};
use crate::labels::{Labels, Matcher};
use crate::store::SeriesSamples;

/// Series kept in memory, each a sorted list of samples (a later sample at the same time
/// replaces the earlier one).
#[derive(Default, Debug, Clone)]
pub struct MemStorage {
    series: BTreeMap<Arc<Labels>, Vec<(i64, f64)>>,
}

impl MemStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one sample (staleness markers included: see [`crate::store::chunk::STALE_NAN_BITS`]).
    pub fn add(&mut self, labels: &Labels, t: i64, v: f64) {
        let points = match self.series.get_mut(labels) {
            Some(p) => p,
            None => self.series.entry(Arc::new(labels.clone())).or_default(),
        };
        match points.binary_search_by_key(&t, |p| p.0) {
            Ok(i) => points[i].1 = v,
            Err(i) => points.insert(i, (t, v)),
        }
    }

    /// Drops every series.
    pub fn clear(&mut self) {
        self.series.clear();
    }

    /// Number of series held.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

impl Storage for MemStorage {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, QueryError> {
        let mut out = Vec::new();
        for (labels, points) in &self.series {
            if !matchers.iter().all(|m| m.matches_labels(labels)) {
                continue;
            }
            let lo = points.partition_point(|p| p.0 < mint);
            let hi = points.partition_point(|p| p.0 <= maxt);
            if lo < hi {
                out.push(SeriesSamples {
                    labels: labels.clone(),
                    samples: points[lo..hi].to_vec(),
                });
            }
        }
        Ok(out)
    }
}
