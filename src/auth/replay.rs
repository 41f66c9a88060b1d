//! Per-shard replay window: the last accepted nonce-count of each recently used nonce.
//!
//! A captured REGISTER carries a valid nonce and response; replaying it must fail. Each accepted
//! `(nonce, nc)` raises the nonce's high-water mark, and a request whose nc is not above it is a replay.
//!
//! Memory is fixed: a set-associative table (`WAYS` entries per bucket) of 64-bit nonce hashes. When a
//! bucket is full, its oldest nonce is evicted and the bucket remembers how far it has forgotten. A nonce
//! that is not in its bucket is accepted only if it is newer than everything that bucket forgot: otherwise
//! it may be one we evicted, so the client is re-challenged (`stale=true`, invisible to the user) instead of
//! risking a replay. An undersized window therefore costs extra round trips, never security.
//!
//! "Newer" is measured two ways ([`Issuer`]):
//! - nonces this shard issued itself carry its challenge counter, so they are ordered exactly: a nonce is
//!   forgotten only when a nonce issued *after* it was evicted from its bucket. Under any load, a nonce
//!   answered while its bucket still holds nonces older than it is accepted at once; in particular the
//!   nonces issued in the second the window started are accepted (a restart is when every phone comes
//!   back at once);
//! - nonces from elsewhere (a process sharing the key file, or this one before a restart) are ordered by
//!   their issue second, and those issued at or before the window's creation are never trusted as unseen.
//!
//! Nonces are bound to the AoR, and an AoR is owned by exactly one shard, so a per-shard window sees
//! every use of a nonce as long as authentication runs on the owner shard. Processes sharing a key do
//! not share windows: a nonce could be replayed once to another process, within the nonce TTL.

/// Entries per bucket, searched linearly.
const WAYS: usize = 8;
/// Smallest and largest accepted capacities (entries; 32 bytes each).
pub const MIN_CAPACITY: usize = WAYS;
pub const MAX_CAPACITY: usize = 1 << 20;
/// Default per-shard capacity: 2 MiB; every nonce answered within the last ~65,000 first uses is remembered
/// exactly (at 200 new nonces/s, the whole 300 s nonce TTL).
pub const DEFAULT_CAPACITY: usize = 1 << 16;

/// Who issued a nonce, and so how the window orders it against the nonces it forgot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Issuer {
    /// This shard: `seq` counts its challenges from 1, in issue order.
    Own { seq: u64 },
    /// Another process sharing the key, or this shard before a restart: only the issue second is known.
    Foreign,
}

#[derive(Clone, Copy, Default)]
struct Entry {
    /// 64-bit keyed hash of the nonce; 0 marks an empty slot (a real 0 hash is remapped to 1).
    tag: u64,
    issued_s: u64,
    /// Issue order of an own nonce (from 1); 0 for a foreign one.
    seq: u64,
    last_nc: u32,
}

#[derive(Clone, Copy, Default)]
struct Bucket {
    /// Foreign nonces issued at or before this second may have been evicted.
    foreign_forgotten_up_to_s: u64,
    /// Own nonces with a `seq` at or below this may have been evicted (0: none was).
    own_forgotten_up_to: u64,
    ways: [Entry; WAYS],
}

impl Bucket {
    fn forgot(&self, issued_s: u64, issuer: Issuer) -> bool {
        match issuer {
            Issuer::Own { seq } => seq <= self.own_forgotten_up_to,
            Issuer::Foreign => issued_s <= self.foreign_forgotten_up_to_s,
        }
    }

    /// A free slot, else the slot of the oldest nonce (the likeliest to be stale anyway), whose eviction
    /// is remembered.
    fn make_room(&mut self, evictions: &mut u64) -> usize {
        if let Some(i) = self.ways.iter().position(|e| e.tag == 0) {
            return i;
        }
        let (i, victim) = self
            .ways
            .iter()
            .enumerate()
            .min_by_key(|(_, e)| (e.issued_s, e.seq))
            .map_or((0, Entry::default()), |(i, e)| (i, *e));
        if victim.seq == 0 {
            self.foreign_forgotten_up_to_s = self.foreign_forgotten_up_to_s.max(victim.issued_s);
        } else {
            self.own_forgotten_up_to = self.own_forgotten_up_to.max(victim.seq);
        }
        *evictions += 1;
        i
    }
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
    /// [`MIN_CAPACITY`]..=[`MAX_CAPACITY`]). `now_s` is the creation time: foreign nonces issued at or
    /// before it are treated as possibly already used.
    #[must_use]
    pub fn new(capacity: usize, now_s: u64) -> Self {
        let capacity = capacity
            .clamp(MIN_CAPACITY, MAX_CAPACITY)
            .next_power_of_two();
        let n_buckets = capacity / WAYS;
        let bucket = Bucket {
            foreign_forgotten_up_to_s: now_s,
            own_forgotten_up_to: 0,
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

    /// Records a use of `nonce` (issued at `issued_s` by `issuer`, both from the nonce itself) with
    /// nonce-count `nc`. Call only after the response was verified, or anyone could burn a client's
    /// nonce-counts.
    pub fn accept(
        &mut self,
        nonce: &[u8],
        issued_s: u64,
        issuer: Issuer,
        nc: u32,
    ) -> ReplayVerdict {
        let verdict = self.accept_inner(nonce, issued_s, issuer, nc);
        match verdict {
            ReplayVerdict::Accepted => self.stats.accepted += 1,
            ReplayVerdict::Replayed => self.stats.replayed += 1,
            ReplayVerdict::Forgotten => self.stats.forgotten += 1,
        }
        verdict
    }

    fn accept_inner(
        &mut self,
        nonce: &[u8],
        issued_s: u64,
        issuer: Issuer,
        nc: u32,
    ) -> ReplayVerdict {
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
        if bucket.forgot(issued_s, issuer) {
            return ReplayVerdict::Forgotten;
        }
        let slot = bucket.make_room(&mut self.stats.evictions);
        bucket.ways[slot] = Entry {
            tag,
            issued_s,
            seq: match issuer {
                Issuer::Own { seq } => seq.max(1),
                Issuer::Foreign => 0,
            },
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
        assert_eq!(
            w.accept(b"n1", T0 + 1, Issuer::Foreign, 1),
            ReplayVerdict::Accepted
        );
        assert_eq!(
            w.accept(b"n1", T0 + 1, Issuer::Foreign, 1),
            ReplayVerdict::Replayed
        );
        assert_eq!(
            w.accept(b"n1", T0 + 1, Issuer::Foreign, 2),
            ReplayVerdict::Accepted
        );
        // Gaps are fine (a lost request), going back is not.
        assert_eq!(
            w.accept(b"n1", T0 + 1, Issuer::Foreign, 5),
            ReplayVerdict::Accepted
        );
        assert_eq!(
            w.accept(b"n1", T0 + 1, Issuer::Foreign, 4),
            ReplayVerdict::Replayed
        );
        // Other nonces are independent.
        assert_eq!(
            w.accept(b"n2", T0 + 1, Issuer::Foreign, 1),
            ReplayVerdict::Accepted
        );
        assert_eq!(
            w.accept(b"n3", T0 + 1, Issuer::Foreign, 0),
            ReplayVerdict::Replayed
        );
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
        assert_eq!(
            w.accept(b"old", T0, Issuer::Foreign, 1),
            ReplayVerdict::Forgotten
        );
        assert_eq!(
            w.accept(b"old", T0 - 10, Issuer::Foreign, 9),
            ReplayVerdict::Forgotten
        );
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
                w.accept(&nonce, T0 + 1 + i, Issuer::Foreign, 1),
                ReplayVerdict::Accepted,
                "nonce {i}"
            );
        }
        assert_eq!(w.stats().evictions, n - WAYS as u64);
        for i in 0..n {
            let nonce = i.to_be_bytes();
            let v = w.accept(&nonce, T0 + 1 + i, Issuer::Foreign, 1);
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
        assert_eq!(
            w.accept(b"new", T0 + 1 + n, Issuer::Foreign, 1),
            ReplayVerdict::Accepted
        );
    }

    #[test]
    fn own_nonces_from_the_start_up_second_are_accepted_once() {
        let mut w = ReplayWindow::new(64, T0);
        assert_eq!(
            w.accept(b"a", T0, Issuer::Own { seq: 1 }, 1),
            ReplayVerdict::Accepted
        );
        assert_eq!(
            w.accept(b"a", T0, Issuer::Own { seq: 1 }, 1),
            ReplayVerdict::Replayed
        );
        assert_eq!(
            w.accept(b"a", T0, Issuer::Own { seq: 1 }, 2),
            ReplayVerdict::Accepted
        );
        // The same second from elsewhere is not trusted.
        assert_eq!(
            w.accept(b"b", T0, Issuer::Foreign, 1),
            ReplayVerdict::Forgotten
        );
    }

    #[test]
    fn eviction_never_allows_a_replay_of_own_nonces() {
        let mut w = ReplayWindow::new(1, T0);
        let n = 4 * WAYS as u64;
        for seq in 1..=n {
            let issuer = Issuer::Own { seq };
            assert_eq!(
                w.accept(&seq.to_be_bytes(), T0, issuer, 1),
                ReplayVerdict::Accepted
            );
        }
        for seq in 1..=n {
            let v = w.accept(&seq.to_be_bytes(), T0, Issuer::Own { seq }, 1);
            let expected = if seq > n - WAYS as u64 {
                ReplayVerdict::Replayed
            } else {
                ReplayVerdict::Forgotten
            };
            assert_eq!(v, expected, "seq {seq}");
        }
        // A nonce issued after everything forgotten is still accepted.
        let next = Issuer::Own { seq: n + 1 };
        assert_eq!(w.accept(b"new", T0, next, 1), ReplayVerdict::Accepted);
    }

    /// Many clients answering their challenges out of order, far more nonces than the window holds, all
    /// in one second: almost none is re-challenged, because a nonce is forgotten only when a newer one
    /// was evicted from its bucket. That takes a bucket filling up with nonces issued after it while
    /// it is pending: with 2,000 in flight in a 65,536-entry window it happens about once in 4 million
    /// answers (0.15 per run, 2 at worst over 40 runs); the bound leaves room for the random hash.
    #[test]
    fn a_busy_second_re_challenges_almost_nobody() {
        let mut w = ReplayWindow::new(DEFAULT_CAPACITY, T0);
        let in_flight = 2_000u64;
        let total = 10 * DEFAULT_CAPACITY as u64;
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut pending: Vec<u64> = (1..=in_flight).collect();
        let mut next = in_flight + 1;
        let mut answered = 0u64;
        while answered < total {
            // xorshift: which pending challenge is answered next.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x % pending.len() as u64) as usize;
            let seq = pending.swap_remove(i);
            let v = w.accept(&seq.to_le_bytes(), T0, Issuer::Own { seq }, 1);
            assert_ne!(v, ReplayVerdict::Replayed, "seq {seq}");
            answered += 1;
            pending.push(next);
            next += 1;
        }
        assert!(w.stats().evictions > total / 2);
        assert!(
            w.stats().forgotten <= total / 100_000,
            "{} of {total} re-challenged",
            w.stats().forgotten
        );
    }

    #[test]
    fn capacity_is_clamped_and_rounded() {
        assert_eq!(ReplayWindow::new(0, T0).capacity(), MIN_CAPACITY);
        assert_eq!(ReplayWindow::new(100, T0).capacity(), 128);
        assert_eq!(ReplayWindow::new(usize::MAX, T0).capacity(), MAX_CAPACITY);
    }
}
