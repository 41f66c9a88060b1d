//! RFC 3261 §17.1.2 non-INVITE client transaction timers over UDP: timer E (retransmit after T1,
//! doubling up to T2) and timer F (give up after 64*T1). Both are configurable so tests can
//! shorten them.
//!
//! Entries are never removed when a transaction completes: each carries the user's transaction
//! generation, and the worker ignores an entry whose generation is no longer current. That keeps
//! arming and completion O(1) with no lookup.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

#[derive(Debug, Clone, Copy)]
pub struct TimerConfig {
    pub t1_ns: u64,
    pub t2_ns: u64,
    pub timeout_ns: u64,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1_ns: 500_000_000,
            t2_ns: 4_000_000_000,
            timeout_ns: 64 * 500_000_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Due {
    pub due_ns: u64,
    pub user: u32,
    pub generation: u32,
    /// The interval that elapsed before this firing; the next one is twice that (capped at T2).
    pub interval_ns: u64,
}

/// What the worker must do with a fired timer of a live transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fired {
    Retransmit,
    Timeout,
}

pub struct Timers {
    pub config: TimerConfig,
    /// First retransmissions: every entry has the same delay, so arrival order is due order and a
    /// FIFO suffices for the common case (most transactions never get past this queue).
    first: VecDeque<Due>,
    /// Later retransmissions and timeouts, rare under a healthy target.
    later: BinaryHeap<Reverse<Due>>,
}

impl Timers {
    pub fn new(config: TimerConfig) -> Self {
        Timers {
            config,
            first: VecDeque::new(),
            later: BinaryHeap::new(),
        }
    }

    /// Arms timer E for a transaction whose first request left at `sent_ns`.
    pub fn arm(&mut self, sent_ns: u64, user: u32, generation: u32) {
        let interval = self.config.t1_ns.min(self.config.timeout_ns);
        self.first.push_back(Due {
            due_ns: sent_ns + interval,
            user,
            generation,
            interval_ns: interval,
        });
    }

    /// After a retransmission at `now_ns`, schedules the next firing: doubled interval capped at
    /// T2, but never later than the transaction's deadline (timer F).
    pub fn rearm(&mut self, now_ns: u64, fired: &Due, deadline_ns: u64) {
        let interval = (fired.interval_ns.saturating_mul(2)).min(self.config.t2_ns);
        self.later.push(Reverse(Due {
            due_ns: now_ns.saturating_add(interval).min(deadline_ns),
            user: fired.user,
            generation: fired.generation,
            interval_ns: interval,
        }));
    }

    /// Pops the earliest entry due at or before `now_ns`.
    pub fn pop_due(&mut self, now_ns: u64) -> Option<Due> {
        let a = self.first.front().map(|d| d.due_ns);
        let b = self.later.peek().map(|Reverse(d)| d.due_ns);
        match (a, b) {
            (Some(x), Some(y)) if y < x => {
                (y <= now_ns).then(|| self.later.pop().map(|Reverse(d)| d))?
            }
            (Some(x), _) => (x <= now_ns).then(|| self.first.pop_front())?,
            (None, Some(y)) => (y <= now_ns).then(|| self.later.pop().map(|Reverse(d)| d))?,
            (None, None) => None,
        }
    }

    pub fn next_due_ns(&self) -> Option<u64> {
        let a = self.first.front().map(|d| d.due_ns);
        let b = self.later.peek().map(|Reverse(d)| d.due_ns);
        match (a, b) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        }
    }

    /// Decides what a fired timer of a live transaction means at `now_ns`.
    pub fn classify(&self, now_ns: u64, tx_started_ns: u64) -> Fired {
        if now_ns >= tx_started_ns.saturating_add(self.config.timeout_ns) {
            Fired::Timeout
        } else {
            Fired::Retransmit
        }
    }

    pub fn deadline_ns(&self, tx_started_ns: u64) -> u64 {
        tx_started_ns.saturating_add(self.config.timeout_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn timer_e_doubles_to_t2_then_timer_f_fires() {
        let mut t = Timers::new(TimerConfig::default());
        t.arm(0, 1, 1);
        let mut fired_at = Vec::new();
        let now = loop {
            let now = t.next_due_ns().expect("armed");
            let d = t.pop_due(now).expect("due");
            match t.classify(now, 0) {
                Fired::Retransmit => {
                    fired_at.push(now / MS);
                    t.rearm(now, &d, t.deadline_ns(0));
                }
                Fired::Timeout => break now,
            }
        };
        // 500, 1000, 2000, 4000 ms intervals, then every 4 s until 32 s.
        assert_eq!(
            fired_at,
            vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
        );
        assert_eq!(now, 32_000 * MS);
        assert_eq!(t.next_due_ns(), None);
    }

    #[test]
    fn pops_in_due_order_across_queues() {
        let mut t = Timers::new(TimerConfig {
            t1_ns: 10,
            t2_ns: 40,
            timeout_ns: 1000,
        });
        t.arm(0, 1, 0); // due 10
        let d = t.pop_due(10).expect("due");
        t.rearm(10, &d, 1000); // due 30
        t.arm(15, 2, 0); // due 25
        t.arm(25, 3, 0); // due 35
        assert_eq!(t.pop_due(24), None);
        let order: Vec<u32> = std::iter::from_fn(|| t.pop_due(100))
            .map(|d| d.user)
            .collect();
        assert_eq!(order, vec![2, 1, 3]);
    }

    #[test]
    fn short_timeout_caps_first_firing() {
        let mut t = Timers::new(TimerConfig {
            t1_ns: 500,
            t2_ns: 4000,
            timeout_ns: 100,
        });
        t.arm(0, 9, 0);
        assert_eq!(t.next_due_ns(), Some(100));
        assert_eq!(t.classify(100, 0), Fired::Timeout);
    }
}
