//! Brute-force limiter: too many failed authentications for one user from one source address, or from one
//! source address whatever the users, within a window put that user at that address, or that address, in a
//! cool-down, during which its requests get 403 without any digest work.
//!
//! A user's failures are counted per source address: wrong answers sent from one address never lock out the
//! right password sent from another (anyone could otherwise keep a user locked out by sending a few wrong
//! answers in its name). An address that guesses at many users trips the address table.
//!
//! Memory is fixed: two set-associative tables (user at address, address) of small counters, keyed by a
//! seeded hash. Eviction prefers idle entries and never drops a cool-down while an idle entry exists.
//! The tables are per shard: a user is counted on the shard owning its AoRs (all of them for the
//! usual one-AoR user), but an address spreading attempts over AoRs of every shard gets up to
//! `max_failures` per shard.

use std::net::IpAddr;

/// Entries per bucket, searched linearly.
const WAYS: usize = 4;
/// Largest table capacity accepted (entries; 32 bytes each).
pub const MAX_CAPACITY: usize = 1 << 20;

/// Limits for [`Guard`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuardConfig {
    /// Failures tolerated within `window_s` per user at one address, and per address; the next attempt is
    /// refused. 0 disables the guard.
    pub max_failures: u32,
    /// Length of the counting window, from the first failure in it.
    pub window_s: u64,
    /// How long a tripped user or address is refused.
    pub cooldown_s: u64,
    /// Entries per table (users at addresses, and addresses), rounded up to a power of two.
    pub capacity: usize,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            max_failures: 10,
            window_s: 60,
            cooldown_s: 300,
            capacity: 4096,
        }
    }
}

/// Counters, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuardStats {
    /// Failed attempts recorded.
    pub failures: u64,
    /// Cool-downs started, per table.
    pub users_blocked: u64,
    pub sources_blocked: u64,
    /// Requests refused because of a cool-down.
    pub refused: u64,
    /// Entries dropped to make room (a sign the capacity is too small or of a spray attack).
    pub evictions: u64,
}

#[derive(Clone, Copy, Default)]
struct Slot {
    /// Keyed hash of the user or address; 0 = empty.
    tag: u64,
    window_start_s: u64,
    blocked_until_s: u64,
    failures: u32,
}

impl Slot {
    fn blocked(&self, now_s: u64) -> bool {
        now_s < self.blocked_until_s
    }
}

struct Table {
    slots: Box<[Slot]>,
    bucket_mask: usize,
}

impl Table {
    fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(WAYS, MAX_CAPACITY).next_power_of_two();
        Self {
            slots: vec![Slot::default(); capacity].into_boxed_slice(),
            bucket_mask: capacity / WAYS - 1,
        }
    }

    fn bucket(&mut self, tag: u64) -> &mut [Slot] {
        let start = ((tag as usize) & self.bucket_mask) * WAYS;
        &mut self.slots[start..start + WAYS]
    }

    fn find(&mut self, tag: u64) -> Option<&mut Slot> {
        self.bucket(tag).iter_mut().find(|s| s.tag == tag)
    }

    fn is_blocked(&mut self, tag: u64, now_s: u64) -> bool {
        self.find(tag).is_some_and(|s| s.blocked(now_s))
    }

    /// Records a failure; returns true if it started a cool-down.
    fn fail(&mut self, tag: u64, now_s: u64, cfg: &GuardConfig, evictions: &mut u64) -> bool {
        let bucket = self.bucket(tag);
        let i = match bucket.iter().position(|s| s.tag == tag) {
            Some(i) => i,
            None => {
                // Victim: an empty slot, else an idle (not blocked) one with the oldest window,
                // else the cool-down that ends first.
                let i = bucket
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, s)| {
                        (
                            s.tag != 0,
                            s.blocked(now_s),
                            s.blocked_until_s,
                            s.window_start_s,
                        )
                    })
                    .map_or(0, |(i, _)| i);
                if bucket[i].tag != 0 {
                    *evictions += 1;
                }
                bucket[i] = Slot {
                    tag,
                    window_start_s: now_s,
                    blocked_until_s: 0,
                    failures: 0,
                };
                i
            }
        };
        let slot = &mut bucket[i];
        if slot.blocked(now_s) {
            return false;
        }
        if now_s.saturating_sub(slot.window_start_s) >= cfg.window_s {
            slot.window_start_s = now_s;
            slot.failures = 0;
        }
        slot.failures = slot.failures.saturating_add(1);
        if slot.failures >= cfg.max_failures {
            slot.blocked_until_s = now_s.saturating_add(cfg.cooldown_s);
            slot.failures = 0;
            return true;
        }
        false
    }

    fn clear(&mut self, tag: u64) {
        if let Some(s) = self.find(tag) {
            *s = Slot::default();
        }
    }
}

/// Failure counters per user and per source address.
pub struct Guard {
    config: GuardConfig,
    users: Table,
    sources: Table,
    hasher: ahash::RandomState,
    stats: GuardStats,
}

impl core::fmt::Debug for Guard {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Guard")
            .field("config", &self.config)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Guard {
    #[must_use]
    pub fn new(config: GuardConfig) -> Self {
        Self {
            config,
            users: Table::new(config.capacity),
            sources: Table::new(config.capacity),
            hasher: ahash::RandomState::new(),
            stats: GuardStats::default(),
        }
    }

    #[must_use]
    pub fn config(&self) -> &GuardConfig {
        &self.config
    }

    #[must_use]
    pub fn stats(&self) -> GuardStats {
        self.stats
    }

    fn user_tag(&self, realm: &[u8], username: &[u8], source: IpAddr) -> u64 {
        // Length-prefixed so (realm "ab", user "c") and (realm "a", user "bc") differ.
        self.hasher
            .hash_one((realm, username, source.to_canonical()))
            .max(1)
    }

    fn source_tag(&self, source: IpAddr) -> u64 {
        self.hasher.hash_one(source.to_canonical()).max(1)
    }

    fn enabled(&self) -> bool {
        self.config.max_failures > 0
    }

    /// Whether `source` is in a cool-down (counted as a refusal if so).
    #[must_use]
    pub fn source_blocked(&mut self, source: IpAddr, now_s: u64) -> bool {
        let blocked = self.enabled() && self.sources.is_blocked(self.source_tag(source), now_s);
        self.stats.refused += u64::from(blocked);
        blocked
    }

    /// Whether the user is in a cool-down at `source` (counted as a refusal if so).
    #[must_use]
    pub fn user_blocked(
        &mut self,
        realm: &[u8],
        username: &[u8],
        source: IpAddr,
        now_s: u64,
    ) -> bool {
        let blocked = self.enabled()
            && self
                .users
                .is_blocked(self.user_tag(realm, username, source), now_s);
        self.stats.refused += u64::from(blocked);
        blocked
    }

    /// Records a failed attempt by `username` from `source`; returns true if either is now blocked.
    pub fn record_failure(
        &mut self,
        realm: &[u8],
        username: &[u8],
        source: IpAddr,
        now_s: u64,
    ) -> bool {
        if !self.enabled() {
            return false;
        }
        self.stats.failures += 1;
        let (user_tag, source_tag) = (
            self.user_tag(realm, username, source),
            self.source_tag(source),
        );
        let user = self
            .users
            .fail(user_tag, now_s, &self.config, &mut self.stats.evictions);
        let src = self
            .sources
            .fail(source_tag, now_s, &self.config, &mut self.stats.evictions);
        self.stats.users_blocked += u64::from(user);
        self.stats.sources_blocked += u64::from(src);
        user || src
    }

    /// Forgets the user's failures at `source` after a success. The address's own are kept: one good
    /// client behind an address must not wipe an attacker's count at the same address.
    pub fn record_success(&mut self, realm: &[u8], username: &[u8], source: IpAddr) {
        if self.enabled() {
            let tag = self.user_tag(realm, username, source);
            self.users.clear(tag);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000;
    const R: &[u8] = b"example.com";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn guard(max: u32) -> Guard {
        Guard::new(GuardConfig {
            max_failures: max,
            window_s: 60,
            cooldown_s: 300,
            capacity: 64,
        })
    }

    #[test]
    fn user_trips_at_one_address_and_recovers() {
        let mut g = guard(3);
        let at = ip("192.0.2.9");
        for _ in 0..2 {
            assert!(!g.record_failure(R, b"alice", at, T0));
            assert!(!g.user_blocked(R, b"alice", at, T0));
        }
        assert!(g.record_failure(R, b"alice", at, T0 + 1));
        assert!(g.user_blocked(R, b"alice", at, T0 + 1));
        assert!(g.user_blocked(R, b"alice", at, T0 + 300));
        assert!(!g.user_blocked(R, b"alice", at, T0 + 301), "cool-down over");
        // Another address, user or realm is not affected.
        assert!(!g.user_blocked(R, b"alice", ip("192.0.2.10"), T0 + 1));
        assert!(!g.user_blocked(R, b"bob", at, T0 + 1));
        assert!(!g.user_blocked(b"other", b"alice", at, T0 + 1));
        let s = g.stats();
        assert_eq!((s.failures, s.users_blocked, s.refused), (3, 1, 2));
    }

    #[test]
    fn failures_from_many_addresses_never_lock_a_user_out_elsewhere() {
        let mut g = guard(3);
        for i in 0..100u8 {
            g.record_failure(R, b"alice", IpAddr::from([198, 51, 100, i]), T0);
        }
        assert!(!g.user_blocked(R, b"alice", ip("192.0.2.1"), T0 + 1));
        assert_eq!(g.stats().users_blocked, 0);
    }

    #[test]
    fn source_trips_across_users() {
        let mut g = guard(3);
        let src = ip("198.51.100.7");
        assert!(!g.record_failure(R, b"a", src, T0));
        assert!(!g.record_failure(R, b"b", src, T0));
        assert!(g.record_failure(R, b"c", src, T0));
        assert!(g.source_blocked(src, T0 + 10));
        // The IPv4-mapped form is the same source.
        assert!(g.source_blocked(ip("::ffff:198.51.100.7"), T0 + 10));
        assert!(!g.source_blocked(ip("198.51.100.8"), T0 + 10));
        assert!(!g.user_blocked(R, b"a", src, T0 + 10));
    }

    #[test]
    fn window_expiry_and_success_reset() {
        let mut g = guard(3);
        let src = ip("192.0.2.1");
        g.record_failure(R, b"alice", src, T0);
        g.record_failure(R, b"alice", src, T0 + 1);
        // Window (60 s from the first failure) over: counting restarts.
        assert!(!g.record_failure(R, b"alice", src, T0 + 60));
        assert!(!g.record_failure(R, b"alice", src, T0 + 61));
        // A success clears the user's count at that address (the address's own count stays, so use the
        // user at a second address to see it).
        let other = ip("192.0.2.2");
        g.record_failure(R, b"alice", other, T0 + 61);
        g.record_failure(R, b"alice", other, T0 + 61);
        g.record_success(R, b"alice", other);
        g.record_failure(R, b"alice", other, T0 + 62);
        g.record_failure(R, b"alice", other, T0 + 62);
        assert!(
            !g.user_blocked(R, b"alice", other, T0 + 62),
            "two failures since the success"
        );
        assert!(
            g.source_blocked(other, T0 + 62),
            "the address counts all four"
        );
    }

    #[test]
    fn disabled_guard_never_blocks() {
        let mut g = guard(0);
        for _ in 0..100 {
            assert!(!g.record_failure(R, b"a", ip("192.0.2.1"), T0));
        }
        assert!(
            !g.user_blocked(R, b"a", ip("192.0.2.1"), T0) && !g.source_blocked(ip("192.0.2.1"), T0)
        );
    }

    #[test]
    fn bounded_and_keeps_cooldowns_under_spray() {
        let mut g = Guard::new(GuardConfig {
            max_failures: 2,
            window_s: 60,
            cooldown_s: 300,
            capacity: 8,
        });
        let attacker = ip("203.0.113.1");
        g.record_failure(R, b"victim", attacker, T0);
        assert!(g.record_failure(R, b"victim", attacker, T0));
        // Spray many one-off failures from other users and addresses.
        for i in 0..1000u32 {
            let name = format!("u{i}");
            let src = IpAddr::from(i.to_be_bytes());
            g.record_failure(R, name.as_bytes(), src, T0 + 1);
        }
        assert!(g.stats().evictions > 0);
        assert!(
            g.user_blocked(R, b"victim", attacker, T0 + 2),
            "cool-down survived the spray"
        );
        assert!(g.source_blocked(attacker, T0 + 2));
        assert_eq!(g.users.slots.len(), 8);
    }
}
