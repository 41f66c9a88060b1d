//! `--find-capacity`: the highest offered rate a target holds for a trial's duration with the
//! failure rate and p99 latency under their bounds (RFC 7502 §6: throughput found by trials at
//! fixed rates). The rate doubles until a trial fails, then bisects between the last passing and
//! the first failing rate until they are within the requested precision.

use serde::Serialize;

#[derive(Debug, Clone, Copy)]
pub struct Criteria {
    pub max_failure_rate: f64,
    pub max_p99_us: u64,
    /// The achieved rate must be at least this fraction of the offered one: a loadgen or target
    /// that cannot keep up is not "holding" the rate even if nothing failed.
    pub min_achieved_fraction: f64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Trial {
    pub offered_rate_per_s: f64,
    pub achieved_rate_per_s: f64,
    pub failure_rate: f64,
    pub p99_us: u64,
    pub passed: bool,
}

impl Criteria {
    pub fn judge(&self, offered: f64, achieved: f64, failure_rate: f64, p99_us: u64) -> Trial {
        let passed = failure_rate <= self.max_failure_rate
            && p99_us <= self.max_p99_us
            && achieved >= offered * self.min_achieved_fraction;
        Trial {
            offered_rate_per_s: offered,
            achieved_rate_per_s: achieved,
            failure_rate,
            p99_us,
            passed,
        }
    }
}

/// The search state, separate from running trials so it is tested without a network.
#[derive(Debug, Clone)]
pub struct Search {
    pub best_pass: Option<f64>,
    pub first_fail: Option<f64>,
    pub precision: f64,
    pub max_rate: f64,
}

impl Search {
    pub fn new(precision: f64, max_rate: f64) -> Self {
        Search {
            best_pass: None,
            first_fail: None,
            precision: precision.clamp(0.001, 0.5),
            max_rate,
        }
    }

    /// Records a trial and returns the next rate to try, or None when the search is done.
    pub fn next(&mut self, trial: &Trial) -> Option<f64> {
        let r = trial.offered_rate_per_s;
        if trial.passed {
            self.best_pass = Some(self.best_pass.map_or(r, |b| b.max(r)));
        } else {
            self.first_fail = Some(self.first_fail.map_or(r, |f| f.min(r)));
        }
        match (self.best_pass, self.first_fail) {
            (Some(lo), None) => {
                let next = (lo * 2.0).min(self.max_rate);
                (next > lo).then_some(next)
            }
            (None, Some(hi)) => {
                let next = hi / 2.0;
                (next >= 1.0).then_some(next)
            }
            (Some(lo), Some(hi)) => {
                if hi - lo <= hi * self.precision {
                    None
                } else {
                    Some((lo + hi) / 2.0)
                }
            }
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_known_capacity() {
        let criteria = Criteria {
            max_failure_rate: 0.001,
            max_p99_us: 10_000,
            min_achieved_fraction: 0.97,
        };
        // Simulated target that holds 37_000/s.
        let mut s = Search::new(0.02, 1e7);
        let mut rate = Some(1000.0);
        let mut trials = 0;
        while let Some(r) = rate {
            let fail = if r <= 37_000.0 { 0.0 } else { 0.2 };
            let t = criteria.judge(r, r.min(37_000.0), fail, 500);
            rate = s.next(&t);
            trials += 1;
            assert!(trials < 50);
        }
        let best = s.best_pass.expect("found");
        assert!((36_000.0..=37_000.0).contains(&best), "{best}");
    }

    #[test]
    fn judge_applies_every_bound() {
        let c = Criteria {
            max_failure_rate: 0.01,
            max_p99_us: 1000,
            min_achieved_fraction: 0.95,
        };
        assert!(c.judge(100.0, 99.0, 0.0, 10).passed);
        assert!(!c.judge(100.0, 90.0, 0.0, 10).passed);
        assert!(!c.judge(100.0, 100.0, 0.02, 10).passed);
        assert!(!c.judge(100.0, 100.0, 0.0, 1001).passed);
    }
}
