//! The head's series by id: pages of [`PAGE`] consecutive ids, each page found by its number in
//! a small map.
//!
//! Why not one hash map of every series: a scrape appends its series in id order (ids are handed
//! out densely in the order a target first shows them), and each append looked its series up
//! in a map of ~100-byte entries. Under perf at 100k series, half of `Store::append`'s time was
//! the load of that entry (the map kept runs of 64 ids in consecutive buckets, but every run
//! started at a random place). Here the entry's address comes from the page map alone, which is
//! small enough to stay in the cache (1,563 pages at 100k series), so an append can ask for the
//! entry before it needs it ([`IdTable::prefetch`]) and then for the chunk the entry points to.
//! Pages hold no keys, tags or empty buckets: dense ids cost the entries alone, where the map
//! kept ~25% of its buckets empty. A page goes when its last series leaves, so ids that came and
//! went (churn) cost nothing once their page empties; a page kept by one series of 64 costs 63
//! empty slots (~6 KB), the bounded price of sparse survivors.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::SeriesRef;

/// Ids a page holds.
pub(crate) const PAGE: usize = 64;

struct Page<V> {
    /// slots in use
    live: u32,
    slots: [Option<V>; PAGE],
}

/// Hashes a page number: one multiply, so dense page numbers spread over the map (and its tags).
#[derive(Default)]
pub(crate) struct PageHasher(u64);

impl Hasher for PageHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, i: u32) {
        self.0 = u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Values by series id (see the module's doc).
pub(crate) struct IdTable<V> {
    pages: HashMap<u32, Box<Page<V>>, BuildHasherDefault<PageHasher>>,
    len: usize,
}

impl<V> Default for IdTable<V> {
    fn default() -> Self {
        IdTable {
            pages: HashMap::default(),
            len: 0,
        }
    }
}

impl<V> std::fmt::Debug for IdTable<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdTable")
            .field("len", &self.len)
            .field("pages", &self.pages.len())
            .finish()
    }
}

#[inline]
fn split(id: SeriesRef) -> (u32, usize) {
    (id / PAGE as u32, id as usize % PAGE)
}

impl<V> IdTable<V> {
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    pub fn get(&self, id: &SeriesRef) -> Option<&V> {
        let (page, slot) = split(*id);
        self.pages.get(&page)?.slots[slot].as_ref()
    }

    #[inline]
    pub fn get_mut(&mut self, id: &SeriesRef) -> Option<&mut V> {
        let (page, slot) = split(*id);
        self.pages.get_mut(&page)?.slots[slot].as_mut()
    }

    pub fn contains_key(&self, id: &SeriesRef) -> bool {
        self.get(id).is_some()
    }

    /// Puts `v` under `id`, returning what was there.
    pub fn insert(&mut self, id: SeriesRef, v: V) -> Option<V> {
        let (page, slot) = split(id);
        let page = self.pages.entry(page).or_insert_with(|| {
            Box::new(Page {
                live: 0,
                slots: std::array::from_fn(|_| None),
            })
        });
        let old = page.slots[slot].replace(v);
        if old.is_none() {
            page.live += 1;
            self.len += 1;
        }
        old
    }

    /// Takes `id` out; its page goes with its last value.
    pub fn remove(&mut self, id: &SeriesRef) -> Option<V> {
        let (number, slot) = split(*id);
        let page = self.pages.get_mut(&number)?;
        let old = page.slots[slot].take()?;
        page.live -= 1;
        self.len -= 1;
        if page.live == 0 {
            self.pages.remove(&number);
        }
        Some(old)
    }

    /// Room in the page map for `n` more values' pages (at most: ids are dense at start-up).
    pub fn reserve(&mut self, n: usize) {
        self.pages.reserve(n.div_ceil(PAGE));
    }

    /// Gives back the page map's room beyond twice its pages (after a wave of churn).
    pub fn shrink(&mut self) {
        if self.pages.capacity() > 2 * self.pages.len() + 64 {
            self.pages.shrink_to_fit();
        }
    }

    /// Bytes on the heap: the page map's table and the pages.
    pub fn heap_bytes(&self) -> usize {
        super::head::table_bytes(self.pages.capacity(), size_of::<(u32, Box<Page<V>>)>())
            + self.pages.len() * size_of::<Page<V>>()
    }

    /// Asks the processor for the entry of `id` without waiting (its first two cache lines): an
    /// append a few samples later finds it loaded. Finds the page, not the entry: nothing but the
    /// page map (in the cache) is read.
    #[inline]
    pub fn prefetch(&self, id: SeriesRef) {
        let (page, slot) = split(id);
        if let Some(page) = self.pages.get(&page) {
            let at: *const Option<V> = &page.slots[slot];
            crate::sys::prefetch(at.cast::<u8>());
            crate::sys::prefetch(at.cast::<u8>().wrapping_add(64));
        }
    }

    /// Every id and value, ids ascending within a page, pages in no order.
    pub fn iter(&self) -> impl Iterator<Item = (SeriesRef, &V)> {
        self.pages.iter().flat_map(|(&number, page)| {
            page.slots.iter().enumerate().filter_map(move |(slot, v)| {
                v.as_ref().map(|v| (number * PAGE as u32 + slot as u32, v))
            })
        })
    }

    /// [`IdTable::iter`] with the values mutable.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (SeriesRef, &mut V)> {
        self.pages.iter_mut().flat_map(|(&number, page)| {
            page.slots
                .iter_mut()
                .enumerate()
                .filter_map(move |(slot, v)| {
                    v.as_mut().map(|v| (number * PAGE as u32 + slot as u32, v))
                })
        })
    }

    pub fn keys(&self) -> impl Iterator<Item = SeriesRef> + '_ {
        self.iter().map(|(id, _)| id)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }
}

impl<V> std::ops::Index<&SeriesRef> for IdTable<V> {
    type Output = V;

    fn index(&self, id: &SeriesRef) -> &V {
        self.get(id).expect("no value under this id")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::chunk::tests::XorShift;
    use std::collections::BTreeMap;

    /// Random inserts and removes (dense runs, far ids, whole pages emptied) agree with a
    /// `BTreeMap` at every step: lookups, length, iteration, and no page outlives its values.
    #[test]
    fn it_holds_what_a_map_holds_and_lets_empty_pages_go() {
        let mut rng = XorShift(0x1d7ab1e);
        let mut table: IdTable<u64> = IdTable::default();
        let mut want: BTreeMap<SeriesRef, u64> = BTreeMap::new();
        for step in 0..20_000u64 {
            let id = match rng.below(4) {
                0 => rng.below(200) as SeriesRef,
                1 => 1_000 + rng.below(130) as SeriesRef,
                2 => u32::MAX - rng.below(70) as SeriesRef,
                _ => rng.below(1 << 20) as SeriesRef,
            };
            if rng.below(3) == 0 {
                assert_eq!(table.remove(&id), want.remove(&id), "remove {id}");
            } else {
                assert_eq!(table.insert(id, step), want.insert(id, step), "insert {id}");
            }
            assert_eq!(table.get(&id), want.get(&id));
            assert_eq!(table.len(), want.len());
            if step % 1_000 == 0 {
                let mut got: Vec<(SeriesRef, u64)> = table.iter().map(|(i, &v)| (i, v)).collect();
                got.sort_unstable();
                assert_eq!(got, want.iter().map(|(&i, &v)| (i, v)).collect::<Vec<_>>());
                for (_, v) in table.iter_mut() {
                    *v += 1;
                }
                for v in want.values_mut() {
                    *v += 1;
                }
                let pages: std::collections::BTreeSet<u32> =
                    want.keys().map(|&i| i / PAGE as u32).collect();
                assert_eq!(table.pages.len(), pages.len(), "an empty page was kept");
            }
        }
        for id in want.keys().copied().collect::<Vec<_>>() {
            assert!(table.remove(&id).is_some());
        }
        assert!(table.is_empty() && table.pages.is_empty());
        assert_eq!(table.get(&u32::MAX), None);
    }
}
