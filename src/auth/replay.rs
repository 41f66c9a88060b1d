//! Per-shard replay window: the last accepted nonce-count of each recently used nonce.
//!
//! A captured REGISTER carries a valid nonce and response; replaying it must fail. Each accepted
//! `(nonce, nc)` raises the nonce's high-water mark, and a request whose nc is not above it is a replay.
//!
//! Memory is fixed: a set-associative table (`WAYS` entries per bucket) of 64-bit nonce hashes.
//! When a bucket is full its entry with the oldest nonce is evicted and the bucket remembers the
//! newest issue time it has forgotten (`forgotten_up_to_s`). A nonce that is not in its bucket is only
//! accepted if it was issued after that mark: otherwise it may be one we evicted, so the client is
//! re-challenged (`stale=true`, invisible to the user) instead of risking a replay. An undersized window
//! therefore costs extra round trips, never security. The mark starts at the window's creation time,
//! so nonces issued before a restart (by a process sharing the key file) are never trusted as unseen.
//!
//! Nonces are bound to the AoR, and an AoR is owned by exactly one shard, so a per-shard window sees
//! every use of a nonce as long as authentication runs on the owner shard. Processes sharing a key do
//! not share windows: a nonce could be replayed once to another process, within the nonce TTL.

/// Entries per bucket: one cache line-ish group searched linearly.
const WAYS: usize = 8;
/// Smallest and largest accepted capacities (entries; 25 bytes each).
pub const MIN_CAPACITY: usize = WAYS;
pub const MAX_CAPACITY: usize = 1 << 20;
/// Default per-shard capacity: ~1.6 MB; enough for ~200 fresh nonces/s kept for a 300 s TTL.
pub const DEFAULT_CAPACITY: usize = 1 << 16;

#[derive(Clone, Copy, Default)]
struct Entry {
    /// 64-bit keyed hash of the nonce; 0 marks an empty slot (a real 0 hash is remapped to 1).
    tag: u64,
    issued_s: u64,
    last_nc: u32,
}

#[derive(Clone, Copy, Default)]
struct Bucket {
    forgotten_up_to_s: u64,
    ways: [Entry; WAYS],
}

/// Outcome of [`ReplayWindow::accept`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum ReplayVerdict {
    /// First use of this nc for this nonce (nc is above every earlier one): proceed.
    Accepted,
    /// The nc was already used (or is 0): reject.
    Replayed,
    /// We cannot tell (the nonce's entry may have been evicted): re-challenge with `stale=true`.
    Forgotten,
}

/// Counters, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    pub accepted: u64,
    pub replayed: u64,
    pub forgotten: u64,
    pub evictions: u64,
}

/// Fixed-capacity map of nonce hash -> last accepted nc.
pub struct ReplayWindow {
    buckets: Box<[Bucket]>,
    bucket_mask: usize,
    /// Keyed per window so clients cannot craft nonces colliding in one bucket (they cannot craft
    /// nonces at all without the MAC key, but this keeps the argument local).
    hasher: ahash::RandomState,
    stats: ReplayStats,
}

impl core::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("capacity", &self.capacity())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl ReplayWindow {
    /// A window holding about `capacity` nonces (rounded up to a power of two, clamped to
    /// [`MIN_CAPACITY`]..=[`MAX_CAPACITY`]). `now_s` is the creation time: nonces issued at or before
    /// it are treated as possibly already used.
    #[must_use]
    pub fn new(capacity: usize, now_s: u64) -> Self {
        let capacity = capacity
            .clamp(MIN_CAPACITY, MAX_CAPACITY)
            .next_power_of_two();
        let n_buckets = capacity / WAYS;
        let bucket = Bucket {
            forgotten_up_to_s: now_s,
            ways: [Entry::default(); WAYS],
        };
        Self {
            buckets: vec![bucket; n_buckets].into_boxed_slice(),
            bucket_mask: n_buckets - 1,
            hasher: ahash::RandomState::new(),
            stats: ReplayStats::default(),
        }
    }

    /// Number of entries the window can hold.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.buckets.len() * WAYS
    }

    #[must_use]
    pub fn stats(&self) -> ReplayStats {
        self.stats
    }

    /// Records a use of `nonce` (issued at `issued_s`, from the nonce itself) with nonce-count `nc`.
    /// Call only after the response was verified, or anyone could burn a client's nonce-counts.
    pub fn accept(&mut self, nonce: &[u8], issued_s: u64, nc: u32) -> ReplayVerdict {
        let verdict = self.accept_inner(nonce, issued_s, nc);
        match verdict {
            ReplayVerdict::Accepted => self.stats.accepted += 1,
            ReplayVerdict::Replayed => self.stats.replayed += 1,
            ReplayVerdict::Forgotten => self.stats.forgotten += 1,
        }
        verdict
    }

    fn accept_inner(&mut self, nonce: &[u8], issued_s: u64, nc: u32) -> ReplayVerdict {
        // nc counts from 1 (RFC 7616 §3.4); 0 can only be a forgery or a broken client.
        if nc == 0 {
            return ReplayVerdict::Replayed;
        }
        let tag = self.hasher.hash_one(nonce).max(1);
        // Low bits pick the bucket; the full tag is compared within it.
        let bucket = &mut self.buckets[(tag as usize) & self.bucket_mask];
        if let Some(e) = bucket.ways.iter_mut().find(|e| e.tag == tag) {
            if nc <= e.last_nc {
                return ReplayVerdict::Replayed;
            }
            e.last_nc = nc;
            return ReplayVerdict::Accepted;
        }
        if issued_s <= bucket.forgotten_up_to_s {
            return ReplayVerdict::Forgotten;
        }
        // Free slot, else evict the oldest nonce (the likeliest to be stale anyway).
        let slot = match bucket.ways.iter().position(|e| e.tag == 0) {
            Some(i) => i,
            None => {
                let (i, victim) = bucket
                    .ways
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, e)| e.issued_s)
                    .map_or((0, 0), |(i, e)| (i, e.issued_s));
                bucket.forgotten_up_to_s = bucket.forgotten_up_to_s.max(victim);
                self.stats.evictions += 1;
                i
            }
        };
        bucket.ways[slot] = Entry {
            tag,
            issued_s,
            last_nc: nc,
        };
        ReplayVerdict::Accepted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000;

    #[test]
    fn nc_must_increase() {
        let mut w = ReplayWindow::new(64, T0);
        assert_eq!(w.accept(b"n1", T0 + 1, 1), ReplayVerdict::Accepted);
        assert_eq!(w.accept(b"n1", T0 + 1, 1), ReplayVerdict::Replayed);
        assert_eq!(w.accept(b"n1", T0 + 1, 2), ReplayVerdict::Accepted);
        // Gaps are fine (a lost request), going back is not.
        assert_eq!(w.accept(b"n1", T0 + 1, 5), ReplayVerdict::Accepted);
        assert_eq!(w.accept(b"n1", T0 + 1, 4), ReplayVerdict::Replayed);
        // Other nonces are independent.
        assert_eq!(w.accept(b"n2", T0 + 1, 1), ReplayVerdict::Accepted);
        assert_eq!(w.accept(b"n3", T0 + 1, 0), ReplayVerdict::Replayed);
        assert_eq!(
            w.stats(),
            ReplayStats {
                accepted: 4,
                replayed: 3,
                forgotten: 0,
                evictions: 0
            }
        );
    }

    #[test]
    fn nonces_from_before_creation_are_not_trusted() {
        let mut w = ReplayWindow::new(64, T0);
        assert_eq!(w.accept(b"old", T0, 1), ReplayVerdict::Forgotten);
        assert_eq!(w.accept(b"old", T0 - 10, 9), ReplayVerdict::Forgotten);
    }

    #[test]
    fn eviction_never_allows_a_replay() {
        // Smallest window: one bucket of WAYS entries, so every nonce competes for it.
        let mut w = ReplayWindow::new(1, T0);
        assert_eq!(w.capacity(), WAYS);
        let n = 4 * WAYS as u64;
        for i in 0..n {
            let nonce = i.to_be_bytes();
            assert_eq!(
                w.accept(&nonce, T0 + 1 + i, 1),
                ReplayVerdict::Accepted,
                "nonce {i}"
            );
        }
        assert_eq!(w.stats().evictions, n - WAYS as u64);
        for i in 0..n {
            let nonce = i.to_be_bytes();
            let v = w.accept(&nonce, T0 + 1 + i, 1);
            assert_ne!(
                v,
                ReplayVerdict::Accepted,
                "nonce {i} replayed after eviction"
            );
            // The newest ones are still remembered precisely.
            if i >= n - WAYS as u64 {
                assert_eq!(v, ReplayVerdict::Replayed);
            } else {
                assert_eq!(v, ReplayVerdict::Forgotten);
            }
        }
        // A nonce newer than everything forgotten is still accepted.
        assert_eq!(w.accept(b"new", T0 + 1 + n, 1), ReplayVerdict::Accepted);
    }

    #[test]
    fn capacity_is_clamped_and_rounded() {
        assert_eq!(ReplayWindow::new(0, T0).capacity(), MIN_CAPACITY);
        assert_eq!(ReplayWindow::new(100, T0).capacity(), 128);
        assert_eq!(ReplayWindow::new(usize::MAX, T0).capacity(), MAX_CAPACITY);
    }
}
