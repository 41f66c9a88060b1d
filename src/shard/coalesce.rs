//! Receive coalescing (`--coalesce-us`, `--coalesce-datagrams`): at moderate rates a shard that has just
//! emptied its socket waits a little before it looks again, so that one wake-up takes several datagrams.
//!
//! A shard whose socket is empty sleeps until the next datagram arrives, and waking a sleeping thread costs
//! far more than a REGISTER (a cold cache, the scheduler, and on a VM an exit to the hypervisor: ~28 µs of
//! CPU on the VM this project is measured on, against ~3 µs for the REGISTER itself). Below saturation a
//! shard therefore pays a wake-up per datagram, or per clump of them, and N shards pay N times as many as one
//! shard for the same traffic. The same trade as a NIC's interrupt coalescing (`ethtool -C rx-usecs
//! rx-frames`): after a drain that emptied the socket, the receive loop sleeps for the time the measured
//! arrival rate needs to bring `datagrams` more, at most `max_hold`, then takes what came in one batch.
//!
//! - Under load the socket never empties, so nothing is held; near saturation the hold is short
//!   (`datagrams / rate`).
//! - At rates too low to bring two datagrams within `max_hold` nothing is held either: a hold that ends on an
//!   empty socket would add a wake-up instead of saving one.
//! - A held shard counts as awake for its peers: they do not ring its doorbell, and it applies what they
//!   handed it when the hold ends. So a handed-over request waits at most two holds (its receiver's and its
//!   owner's), a request its receiver owns at most one.
//!
//! Pure: the receive loop passes the time in and sleeps for what [`Coalesce::hold`] says.

use std::time::{Duration, Instant};

/// How long the arrival rate is counted over before it is updated.
const RATE_WINDOW: Duration = Duration::from_millis(50);

/// A hold shorter than this is not worth a timer.
const MIN_HOLD: Duration = Duration::from_micros(20);

/// Datagrams a hold must be expected to bring at least (a hold that brings one saves no wake-up).
const MIN_EXPECTED_DATAGRAMS: u64 = 2;

/// `--coalesce-us` and `--coalesce-datagrams`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoalesceConfig {
    /// The longest hold; zero turns coalescing off.
    pub max_hold: Duration,
    /// Datagrams a hold waits for, at the measured rate.
    pub datagrams: u32,
}

impl CoalesceConfig {
    pub const OFF: CoalesceConfig = CoalesceConfig {
        max_hold: Duration::ZERO,
        datagrams: 1,
    };
}

/// One shard's arrival rate and the holds it calls for.
#[derive(Debug)]
pub struct Coalesce {
    cfg: CoalesceConfig,
    window_start: Option<Instant>,
    window_datagrams: u64,
    /// Datagrams per second over the last full window (0 before the first).
    rate_per_s: u64,
    /// Chances to hold passed up after holds that found the socket still empty (see [`Coalesce::held`]).
    skip: u32,
    left: u32,
}

/// Longest run of chances to hold passed up after holds that found nothing.
const MAX_HOLD_SKIP: u32 = 16;

impl Coalesce {
    pub fn new(cfg: CoalesceConfig) -> Coalesce {
        Coalesce {
            cfg,
            window_start: None,
            window_datagrams: 0,
            rate_per_s: 0,
            skip: 0,
            left: 0,
        }
    }

    /// Counts `datagrams` taken from the socket at `now`.
    pub fn received(&mut self, datagrams: usize, now: Instant) {
        let start = *self.window_start.get_or_insert(now);
        self.window_datagrams += datagrams as u64;
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= RATE_WINDOW {
            let elapsed_us = elapsed.as_micros().max(1);
            let rate = u128::from(self.window_datagrams) * 1_000_000 / elapsed_us;
            self.rate_per_s = u64::try_from(rate).unwrap_or(u64::MAX);
            self.window_start = Some(now);
            self.window_datagrams = 0;
        }
    }

    /// The measured rate, datagrams per second (0 until a window has passed).
    pub fn rate_per_s(&self) -> u64 {
        self.rate_per_s
    }

    /// How long to wait before looking at a socket just found empty, at `now`; None: look at once (wait for
    /// the socket as usual).
    ///
    /// A rate last measured before a silence is still used until the next datagram closes its window: the
    /// first hold after the silence may then end on an empty socket, once.
    ///
    /// Traffic that comes in clumps further apart than the hold (clients sending on timer ticks) leaves the
    /// socket empty when the hold ends: such a hold adds a wake-up instead of saving one. After a hold that
    /// found nothing the next 1, 2, 4 ... up to 16 chances go without one; a hold that found datagrams
    /// resets that.
    pub fn hold(&mut self, now: Instant) -> Option<Duration> {
        if self.cfg.max_hold.is_zero() || self.rate_per_s == 0 {
            return None;
        }
        if self.left > 0 {
            self.left -= 1;
            return None;
        }
        // A window left open for much longer than it should be means the traffic stopped: no hold.
        if let Some(start) = self.window_start {
            if now.saturating_duration_since(start) > RATE_WINDOW * 2 {
                return None;
            }
        }
        let wanted_us = u64::from(self.cfg.datagrams) * 1_000_000 / self.rate_per_s;
        let hold = Duration::from_micros(wanted_us).min(self.cfg.max_hold);
        let expected = u128::from(self.rate_per_s) * hold.as_micros() / 1_000_000;
        if hold < MIN_HOLD || expected < u128::from(MIN_EXPECTED_DATAGRAMS) {
            return None;
        }
        Some(hold)
    }

    /// After a hold: whether the socket had datagrams when it ended.
    pub fn held(&mut self, found: bool) {
        if found {
            self.skip = 0;
        } else {
            self.skip = (self.skip * 2).clamp(1, MAX_HOLD_SKIP);
        }
        self.left = self.skip;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ON: CoalesceConfig = CoalesceConfig {
        max_hold: Duration::from_millis(2),
        datagrams: 16,
    };

    /// Feeds `rate_per_s` evenly for `for_ms` from `start`, one datagram at a time; returns the end time.
    fn feed(c: &mut Coalesce, start: Instant, rate_per_s: u64, for_ms: u64) -> Instant {
        let gap = Duration::from_nanos(1_000_000_000 / rate_per_s);
        let mut t = start;
        let end = start + Duration::from_millis(for_ms);
        while t < end {
            c.received(1, t);
            t += gap;
        }
        t
    }

    #[test]
    fn nothing_is_held_before_a_rate_is_known_or_when_off() {
        let t0 = Instant::now();
        let mut c = Coalesce::new(ON);
        c.received(100, t0);
        assert_eq!(c.hold(t0), None, "no full window yet");
        let mut off = Coalesce::new(CoalesceConfig::OFF);
        let t = feed(&mut off, t0, 10_000, 200);
        assert!(off.rate_per_s() > 0);
        assert_eq!(off.hold(t), None, "--coalesce-us 0 never holds");
    }

    #[test]
    fn the_hold_brings_the_wanted_datagrams_at_the_measured_rate() {
        let t0 = Instant::now();
        let mut c = Coalesce::new(ON);
        let t = feed(&mut c, t0, 40_000, 200);
        let rate = c.rate_per_s();
        assert!((39_000..=41_000).contains(&rate), "rate {rate}");
        // 16 datagrams at 40,000/s: 400 µs.
        let hold = c.hold(t).expect("a hold at 40,000/s");
        assert!(
            (Duration::from_micros(390)..=Duration::from_micros(410)).contains(&hold),
            "{hold:?}"
        );
    }

    #[test]
    fn the_hold_is_capped_and_skipped_when_it_would_bring_too_little() {
        let t0 = Instant::now();
        // 5,000/s: 16 datagrams would take 3.2 ms; capped at 2 ms (10 datagrams).
        let mut c = Coalesce::new(ON);
        let t = feed(&mut c, t0, 5_000, 200);
        assert_eq!(c.hold(t), Some(Duration::from_millis(2)));
        // 500/s: 2 ms brings one datagram; not worth it.
        let mut c = Coalesce::new(ON);
        let t = feed(&mut c, t0, 500, 200);
        assert!(c.rate_per_s() > 0);
        assert_eq!(c.hold(t), None);
        // Near saturation the hold is under the timer's floor.
        let mut c = Coalesce::new(ON);
        let t = feed(&mut c, t0, 2_000_000, 100);
        assert_eq!(c.hold(t), None, "16 datagrams at 2M/s: 8 µs");
    }

    #[test]
    fn holds_that_find_nothing_back_off_and_one_that_finds_resets() {
        let t0 = Instant::now();
        let mut c = Coalesce::new(ON);
        let t = feed(&mut c, t0, 10_000, 200);
        let mut passed_up_after_a_miss = || {
            assert!(c.hold(t).is_some());
            c.held(false);
            let mut n = 0;
            while c.hold(t).is_none() {
                n += 1;
            }
            n
        };
        let passed: Vec<u32> = (0..7).map(|_| passed_up_after_a_miss()).collect();
        assert_eq!(passed, [1, 2, 4, 8, 16, 16, 16]);
        c.held(true);
        assert!(c.hold(t).is_some(), "a hold that found datagrams resets");
    }

    #[test]
    fn a_silence_ends_the_holds() {
        let t0 = Instant::now();
        let mut c = Coalesce::new(ON);
        let t = feed(&mut c, t0, 10_000, 200);
        assert!(c.hold(t).is_some());
        c.held(true);
        assert_eq!(c.hold(t + Duration::from_millis(500)), None);
        // The next datagram after the silence closes the window with the low rate it saw.
        c.received(1, t + Duration::from_millis(500));
        assert!(c.rate_per_s() < 1_000, "rate {}", c.rate_per_s());
        assert_eq!(c.hold(t + Duration::from_millis(500)), None);
    }
}
