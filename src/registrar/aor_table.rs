//! The AoR index: AoR hash -> record index, open addressing with linear probing over 8-byte buckets.
//!
//! Written here rather than using hashbrown (hot path, see the guide): hashbrown keeps its control bytes
//! and its slots in different cache lines, so looking up an AoR whose table part is not cached costs two
//! dependent memory misses, and neither line can be requested early. Here a bucket holds a 32-bit hash
//! tag next to the record index, so one probe reads one line, and [`AorTable::prefetch`] can request that
//! line as soon as the AoR is hashed, while the rest of the REGISTER is still being parsed. At a moderate
//! rate a shard's caches are cold between datagrams, and these misses are most of a REGISTER's cost.
//!
//! The load factor stays at or below 1/2 (expected probes for a miss: 2.5), deletion shifts the following
//! entries back (no tombstones, so probe lengths never degrade), and the table grows by doubling. Every
//! key's home bucket is recomputed from its tag, so growth and deletion need no access to the records.

use super::prefetch::prefetch_read;

/// A record index, or [`EMPTY`].
type Rec = u32;
const EMPTY: Rec = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(8))]
struct Bucket {
    /// The upper 32 bits of the key's hash. Its low bits pick the home bucket.
    tag: u32,
    rec: Rec,
}
const _: () = assert!(std::mem::size_of::<Bucket>() == 8);

const FREE: Bucket = Bucket { tag: 0, rec: EMPTY };

/// Smallest table (buckets): 8 buckets fill one cache line.
const MIN_BUCKETS: usize = 8;

#[derive(Debug)]
pub struct AorTable {
    buckets: Box<[Bucket]>,
    /// `buckets.len() - 1` (the length is a power of two).
    mask: usize,
    len: usize,
}

impl Default for AorTable {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

fn tag_of(hash: u64) -> u32 {
    (hash >> 32) as u32
}

impl AorTable {
    /// A table that holds `capacity` keys without growing.
    pub fn with_capacity(capacity: usize) -> Self {
        let buckets = capacity
            .saturating_mul(2)
            .max(MIN_BUCKETS)
            .checked_next_power_of_two()
            .unwrap_or(1 << (usize::BITS - 1));
        AorTable {
            buckets: vec![FREE; buckets].into_boxed_slice(),
            mask: buckets - 1,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keys the table holds without growing.
    pub fn capacity(&self) -> usize {
        self.buckets.len() / 2
    }

    fn home(&self, tag: u32) -> usize {
        tag as usize & self.mask
    }

    /// Asks the CPU to start loading the line where a lookup of `hash` begins. A hint only: no effect on
    /// results, and nothing on targets without a prefetch instruction.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        let bucket = &self.buckets[self.home(tag_of(hash))];
        prefetch_read(bucket);
    }

    /// The records stored under `hash`'s tag, in probe order: the candidates a lookup compares. Ends at the
    /// probe run's empty bucket (and stays ended).
    #[inline]
    pub fn candidates(&self, hash: u64) -> impl Iterator<Item = u32> + '_ {
        let tag = tag_of(hash);
        let mut pos = self.home(tag);
        std::iter::from_fn(move || loop {
            let b = self.buckets[pos];
            if b.rec == EMPTY {
                return None;
            }
            pos = (pos + 1) & self.mask;
            if b.tag == tag {
                return Some(b.rec);
            }
        })
    }

    /// The record of the key with `hash` for which `is_key(record)` holds.
    #[inline]
    pub fn find(&self, hash: u64, mut is_key: impl FnMut(u32) -> bool) -> Option<u32> {
        self.candidates(hash).find(|&rec| is_key(rec))
    }

    /// Adds `rec` under `hash`; the caller knows the key is not in the table. Growing allocates; a table
    /// made with enough capacity never grows.
    pub fn insert_unique(&mut self, hash: u64, rec: u32) {
        debug_assert_ne!(rec, EMPTY, "record index reserved for empty buckets");
        if (self.len + 1) * 2 > self.buckets.len() {
            self.grow();
        }
        self.place(Bucket {
            tag: tag_of(hash),
            rec,
        });
        self.len += 1;
    }

    fn place(&mut self, b: Bucket) {
        let mut pos = self.home(b.tag);
        while self.buckets[pos].rec != EMPTY {
            pos = (pos + 1) & self.mask;
        }
        self.buckets[pos] = b;
    }

    fn grow(&mut self) {
        let doubled = (self.buckets.len() * 2).max(MIN_BUCKETS);
        let old = std::mem::replace(&mut self.buckets, vec![FREE; doubled].into_boxed_slice());
        self.mask = doubled - 1;
        for b in old.iter().filter(|b| b.rec != EMPTY) {
            self.place(*b);
        }
    }

    /// Removes record `rec`, stored under `hash`. Returns whether it was there.
    pub fn remove(&mut self, hash: u64, rec: u32) -> bool {
        let tag = tag_of(hash);
        let mut pos = self.home(tag);
        loop {
            let b = self.buckets[pos];
            if b.rec == EMPTY {
                return false;
            }
            if b.rec == rec {
                debug_assert_eq!(b.tag, tag, "record stored under another hash");
                break;
            }
            pos = (pos + 1) & self.mask;
        }
        self.close_hole(pos);
        self.len -= 1;
        true
    }

    /// Backward-shift deletion: moves each following entry of the probe run into the hole when the hole
    /// lies on its probe path, so every key stays reachable from its home bucket without tombstones.
    fn close_hole(&mut self, mut hole: usize) {
        let mut pos = hole;
        loop {
            pos = (pos + 1) & self.mask;
            let b = self.buckets[pos];
            if b.rec == EMPTY {
                self.buckets[hole] = FREE;
                return;
            }
            let home = self.home(b.tag);
            // `b` may fill the hole when the hole is on its way from home to pos (cyclically).
            if pos.wrapping_sub(home) & self.mask >= pos.wrapping_sub(hole) & self.mask {
                self.buckets[hole] = b;
                hole = pos;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// Checks the structural invariants: the count, and every key reachable from its home bucket.
    fn check(t: &AorTable) {
        let stored: Vec<(usize, Bucket)> = t
            .buckets
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, b)| b.rec != EMPTY)
            .collect();
        assert_eq!(stored.len(), t.len);
        assert!(t.len * 2 <= t.buckets.len());
        for (pos, b) in stored {
            let mut p = t.home(b.tag);
            while p != pos {
                assert_ne!(t.buckets[p].rec, EMPTY, "gap between home and entry");
                p = (p + 1) & t.mask;
            }
        }
    }

    #[test]
    fn insert_find_remove_with_colliding_hashes() {
        let mut t = AorTable::default();
        // Same home bucket (equal low tag bits), different tags; and two records under one full hash.
        let h = |tag: u64| tag << 32;
        t.insert_unique(h(0x10), 1);
        t.insert_unique(h(0x20), 2);
        t.insert_unique(h(0x10), 3);
        check(&t);
        assert_eq!(t.find(h(0x10), |r| r == 3), Some(3));
        assert_eq!(t.find(h(0x10), |r| r == 1), Some(1));
        assert_eq!(t.find(h(0x20), |_| true), Some(2));
        assert_eq!(t.find(h(0x30), |_| true), None);
        assert!(t.remove(h(0x10), 1));
        check(&t);
        assert_eq!(t.find(h(0x10), |r| r == 1), None);
        assert_eq!(t.find(h(0x10), |r| r == 3), Some(3));
        assert!(!t.remove(h(0x10), 1));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn reserved_table_does_not_grow_and_wraps_around() {
        let mut t = AorTable::with_capacity(4);
        let cap = t.capacity();
        assert_eq!(cap, 4);
        // All homed at the last bucket: the run wraps to the start.
        let last = t.mask as u64;
        for r in 0..4 {
            t.insert_unique(last << 32, r);
        }
        check(&t);
        assert_eq!(t.capacity(), cap);
        assert!(t.remove(last << 32, 0));
        check(&t);
        for r in 1..4 {
            assert_eq!(t.find(last << 32, |x| x == r), Some(r));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// Random inserts and removes with few distinct tags (long probe runs, wrap-around, growth) agree
        /// with a HashMap model.
        #[test]
        fn agrees_with_a_map(ops in proptest::collection::vec((any::<bool>(), 0u32..40, 0u64..12), 1..300)) {
            let mut t = AorTable::default();
            let mut model: HashMap<u32, u64> = HashMap::new();
            for (insert, rec, tag) in ops {
                let hash = (tag.wrapping_mul(0x9e37_79b9) << 32) | u64::from(rec);
                match (insert, model.get(&rec).copied()) {
                    (true, None) => {
                        t.insert_unique(hash, rec);
                        model.insert(rec, hash);
                    }
                    (false, Some(h)) => {
                        prop_assert!(t.remove(h, rec));
                        model.remove(&rec);
                    }
                    (false, None) => prop_assert!(!t.remove(hash, rec)),
                    (true, Some(_)) => {}
                }
                check(&t);
            }
            for (&rec, &hash) in &model {
                prop_assert_eq!(t.find(hash, |r| r == rec), Some(rec));
            }
            prop_assert_eq!(t.len(), model.len());
        }
    }
}
