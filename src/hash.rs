//! Hashing string keys on hot paths (the scrape cache's series texts, PromQL's label-set keys).

/// A hasher for string keys: one xxh3 call over the bytes. A target can only make its own series
/// collide, which costs it lookups, never correctness (the map compares keys).
#[derive(Default, Clone, Copy)]
pub struct BuildOneShot;

pub struct OneShot(u64);

impl std::hash::BuildHasher for BuildOneShot {
    type Hasher = OneShot;
    fn build_hasher(&self) -> OneShot {
        OneShot(0)
    }
}

impl std::hash::Hasher for OneShot {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }
    fn write_u8(&mut self, i: u8) {
        // `str`'s Hash appends a 0xff terminator: mix it in without another pass
        self.0 = self.0.rotate_left(8) ^ u64::from(i);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// [`BuildOneShot`] from a seed drawn once a process, for maps whose keys come from every target
/// at once (the store head's label sets and postings): what one target sends cannot be chosen
/// offline to collide with another's keys. xxh3 instead of the standard SipHash: loading a
/// million series at start-up hashed each label set and label twice with SipHash, ~1 s of ~5.
#[derive(Clone, Copy)]
pub struct BuildSeeded(u64);

impl Default for BuildSeeded {
    fn default() -> Self {
        static SEED: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| {
            use std::hash::BuildHasher;
            std::collections::hash_map::RandomState::new().hash_one(0x746f_6373_696e_u64)
        });
        BuildSeeded(*SEED)
    }
}

impl std::hash::BuildHasher for BuildSeeded {
    type Hasher = OneShot;
    fn build_hasher(&self) -> OneShot {
        OneShot(self.0)
    }
}
