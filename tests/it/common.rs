//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use tocsin::labels::{Labels, MatchOp, Matcher};
use tocsin::store::{Store, StoreOptions};

/// `../shared` beside the project, if present (CI always has it).
pub fn shared_dir() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared");
    p.is_dir().then_some(p)
}

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

pub fn name_is(name: &str) -> Vec<Matcher> {
    vec![Matcher::equal("__name__", name)]
}

pub fn matcher(op: MatchOp, name: &str, value: &str) -> Matcher {
    Matcher::new(op, name, value).unwrap()
}

pub fn open_store(dir: &tempfile::TempDir) -> Store {
    Store::open(&dir.path().join("tocsin.db"), StoreOptions::default()).unwrap()
}

pub fn open_store_with(dir: &tempfile::TempDir, opts: StoreOptions) -> Store {
    Store::open(&dir.path().join("tocsin.db"), opts).unwrap()
}

/// All samples of the one series matching `matchers` in [mint, maxt].
pub fn samples_of(store: &Store, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<(i64, f64)> {
    let mut got = store.select(matchers, mint, maxt).unwrap();
    assert!(got.len() <= 1, "expected one series, got {}", got.len());
    got.pop().map(|s| s.samples).unwrap_or_default()
}
