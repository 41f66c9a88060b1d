//! When to start the next transaction. Open loop: a fixed rate (optionally ramped linearly from
//! zero) independent of how fast the target answers, so a slow target shows up as latency and
//! failures instead of silently lowering the offered load. Closed loop: a cap on requests in flight.
//!
//! Time is injected (nanoseconds since the run started) so the arithmetic is tested exactly.

/// Open-loop pacing: how many transactions should have started by time `t`.
#[derive(Debug, Clone, Copy)]
pub struct OpenLoop {
    rate_per_s: f64,
    ramp_ns: u64,
}

impl OpenLoop {
    pub fn new(rate_per_s: f64, ramp_ns: u64) -> Self {
        OpenLoop {
            rate_per_s: rate_per_s.max(0.0),
            ramp_ns,
        }
    }

    /// Integral of the rate from 0 to `t_ns`: during the ramp the rate grows linearly
    /// (area of a triangle), then it is flat.
    pub fn due_by(&self, t_ns: u64) -> u64 {
        let t = t_ns as f64 / 1e9;
        let ramp = self.ramp_ns as f64 / 1e9;
        let due = if t < ramp {
            self.rate_per_s * t * t / (2.0 * ramp)
        } else {
            self.rate_per_s * (ramp / 2.0 + (t - ramp))
        };
        due as u64
    }

    /// Earliest time at which `due_by` reaches `n` (when to wake up for the next send).
    pub fn time_of(&self, n: u64) -> u64 {
        if self.rate_per_s <= 0.0 {
            return u64::MAX;
        }
        let n = n as f64;
        let ramp = self.ramp_ns as f64 / 1e9;
        let ramp_area = self.rate_per_s * ramp / 2.0;
        let t = if n < ramp_area {
            (2.0 * ramp * n / self.rate_per_s).sqrt()
        } else {
            ramp + (n - ramp_area) / self.rate_per_s
        };
        (t * 1e9).ceil().min(u64::MAX as f64) as u64
    }
}

/// What the worker may start now.
#[derive(Debug, Clone, Copy)]
pub enum Pacing {
    Open(OpenLoop),
    Closed { max_in_flight: usize },
}

impl Pacing {
    /// Number of new transactions allowed now: the open loop's backlog, or the closed loop's free
    /// slots. `started` counts transactions started so far; `in_flight` those not yet finished.
    pub fn allowed(&self, now_ns: u64, started: u64, in_flight: usize) -> u64 {
        match self {
            Pacing::Open(o) => o.due_by(now_ns).saturating_sub(started),
            Pacing::Closed { max_in_flight } => max_in_flight.saturating_sub(in_flight) as u64,
        }
    }

    /// When the next start becomes due (open loop only; closed loop waits for responses).
    pub fn next_due_ns(&self, started: u64) -> Option<u64> {
        match self {
            Pacing::Open(o) => Some(o.time_of(started + 1)),
            Pacing::Closed { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn flat_rate_is_held() {
        let o = OpenLoop::new(50_000.0, 0);
        assert_eq!(o.due_by(0), 0);
        assert_eq!(o.due_by(S), 50_000);
        assert_eq!(o.due_by(10 * S), 500_000);
        // Every 1 ms window holds 50 +- 1.
        for ms in 0..2000u64 {
            let n = o.due_by((ms + 1) * 1_000_000) - o.due_by(ms * 1_000_000);
            assert!((49..=51).contains(&n), "window {ms}: {n}");
        }
    }

    #[test]
    fn ramp_reaches_rate_and_holds_it() {
        let o = OpenLoop::new(10_000.0, 2 * S);
        // Area of the ramp triangle: 10k/s * 2 s / 2.
        assert_eq!(o.due_by(2 * S), 10_000);
        // Halfway through the ramp the instantaneous rate is half.
        let rate_mid = o.due_by(S + S / 100) - o.due_by(S);
        assert!((49..=51).contains(&rate_mid), "{rate_mid}");
        let rate_after = o.due_by(3 * S + S / 100) - o.due_by(3 * S);
        assert!((99..=101).contains(&rate_after), "{rate_after}");
    }

    #[test]
    fn time_of_inverts_due_by() {
        for o in [OpenLoop::new(50_000.0, 0), OpenLoop::new(7_000.0, 3 * S)] {
            for n in [1u64, 2, 10, 999, 10_000, 123_456] {
                let t = o.time_of(n);
                assert!(o.due_by(t) >= n, "n={n} t={t}");
                assert!(o.due_by(t.saturating_sub(1000)) <= n, "n={n}");
            }
        }
        assert_eq!(OpenLoop::new(0.0, 0).time_of(1), u64::MAX);
    }

    #[test]
    fn pacing_counts_backlog_and_slots() {
        let p = Pacing::Open(OpenLoop::new(1000.0, 0));
        assert_eq!(p.allowed(S, 900, 0), 100);
        assert_eq!(p.allowed(S, 1200, 0), 0);
        let c = Pacing::Closed { max_in_flight: 64 };
        assert_eq!(c.allowed(0, 0, 10), 54);
        assert_eq!(c.allowed(0, 0, 100), 0);
        assert_eq!(c.next_due_ns(5), None);
    }
}
