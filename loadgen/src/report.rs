//! Counting and reporting: per-interval statistics sent by workers, their aggregation into the
//! final report and per-second time series, and the report's arithmetic (rates, failure rate,
//! latency percentiles from an HDR histogram).

use std::collections::BTreeMap;
use std::io::Write;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are recorded in microseconds, up to 10 minutes, 3 significant digits.
pub const LATENCY_MAX_US: u64 = 600_000_000;

pub fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts; a failure here is a programming error.
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("constant histogram bounds are valid")
}

#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct ActionCounts {
    pub succeeded: u64,
    pub failed: u64,
}

/// Counters a worker accumulates between two flushes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counters {
    /// Logical operations started (a challenged REGISTER and its authenticated retry are one).
    pub attempted: u64,
    pub succeeded: u64,
    /// Final non-2xx responses by status code.
    pub failed_by_status: BTreeMap<u16, u64>,
    pub timeouts: u64,
    pub retransmissions: u64,
    pub challenges: u64,
    /// Responses that matched no live transaction (late, duplicate, foreign) or did not parse.
    pub unmatched: u64,
    pub garbage: u64,
    /// Datagrams the kernel refused to send (buffer full); timer E resends them.
    pub send_drops: u64,
    /// Datagrams handed to the kernel, GSO sends among the sendmmsg entries, and the datagrams
    /// those GSO sends carried.
    pub datagrams_sent: u64,
    pub gso_sends: u64,
    pub gso_datagrams: u64,
    pub register: ActionCounts,
    pub refresh: ActionCounts,
    pub unregister: ActionCounts,
}

impl Counters {
    pub fn failed(&self) -> u64 {
        self.failed_by_status.values().sum()
    }

    pub fn completed(&self) -> u64 {
        self.succeeded + self.failed() + self.timeouts
    }

    pub fn merge(&mut self, o: &Counters) {
        self.attempted += o.attempted;
        self.succeeded += o.succeeded;
        for (k, v) in &o.failed_by_status {
            *self.failed_by_status.entry(*k).or_default() += v;
        }
        self.timeouts += o.timeouts;
        self.retransmissions += o.retransmissions;
        self.challenges += o.challenges;
        self.unmatched += o.unmatched;
        self.garbage += o.garbage;
        self.send_drops += o.send_drops;
        self.datagrams_sent += o.datagrams_sent;
        self.gso_sends += o.gso_sends;
        self.gso_datagrams += o.gso_datagrams;
        for (a, b) in [
            (&mut self.register, &o.register),
            (&mut self.refresh, &o.refresh),
            (&mut self.unregister, &o.unregister),
        ] {
            a.succeeded += b.succeeded;
            a.failed += b.failed;
        }
    }

    /// Failures (non-2xx finals and timeouts) over completed operations. An operation that never
    /// completed is neither; if nothing completed but something was attempted, everything failed.
    pub fn failure_rate(&self) -> f64 {
        let done = self.completed();
        if done == 0 {
            return if self.attempted > 0 { 1.0 } else { 0.0 };
        }
        (self.failed() + self.timeouts) as f64 / done as f64
    }
}

/// One worker's statistics for one second of the run.
pub struct Interval {
    pub worker: usize,
    /// Whole seconds since the run started: the bucket these stats belong to.
    pub second: u64,
    pub counters: Counters,
    pub latency_us: Histogram<u64>,
    pub in_flight: u64,
    /// When the worker's latest operation completed (ns since the run started).
    pub last_completion_ns: u64,
    /// Set when GSO was asked for but this worker sends with plain sendmmsg: why.
    pub gso_fallback: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p99_9: u64,
    pub max: u64,
    pub mean: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p99_9: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub target: String,
    pub scenario: String,
    pub users: u64,
    pub threads: usize,
    pub mode: String,
    pub offered_rate_per_s: Option<f64>,
    pub concurrency: Option<usize>,
    pub elapsed_s: f64,
    pub attempted: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub failed_by_status: BTreeMap<String, u64>,
    pub timeouts: u64,
    pub retransmissions: u64,
    pub challenges: u64,
    pub unmatched_responses: u64,
    pub garbage_responses: u64,
    pub send_drops: u64,
    /// How requests left: "udp-gso" (runs of equal-sized datagrams per send, UDP_SEGMENT) or
    /// "sendmmsg" (one entry per datagram).
    pub send_path: String,
    /// Why GSO is not used although it was asked for (unsupported: EINVAL/EIO/ENOPROTOOPT).
    pub gso_fallback: Option<String>,
    /// Datagrams per GSO send, on average (0 without GSO).
    pub gso_segments_per_send: f64,
    pub registrations_per_s: f64,
    pub failure_rate: f64,
    pub latency_us: Percentiles,
    pub by_action: BTreeMap<String, ActionCounts>,
    /// CPU time of this process (user + system, all threads) during the run.
    pub cpu_s: f64,
    pub cpu_us_per_transaction: f64,
}

/// Per-second row of the time series.
#[derive(Debug, Default, Clone, Serialize)]
pub struct SecondRow {
    pub second: u64,
    pub attempted: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub timeouts: u64,
    pub retransmissions: u64,
    pub p50_us: u64,
    pub p99_us: u64,
}

/// Merges worker intervals into totals and a time series.
pub struct Aggregate {
    pub totals: Counters,
    /// First GSO fallback reason reported by any worker.
    pub gso_fallback: Option<String>,
    pub latency_us: Histogram<u64>,
    seconds: BTreeMap<u64, (Counters, Histogram<u64>)>,
}

impl Default for Aggregate {
    fn default() -> Self {
        Aggregate {
            totals: Counters::default(),
            gso_fallback: None,
            latency_us: new_histogram(),
            seconds: BTreeMap::new(),
        }
    }
}

impl Aggregate {
    pub fn add(&mut self, iv: &Interval) {
        self.totals.merge(&iv.counters);
        if self.gso_fallback.is_none() {
            self.gso_fallback.clone_from(&iv.gso_fallback);
        }
        // Same bounds on both sides: add cannot fail; ignore the impossible error.
        let _ = self.latency_us.add(&iv.latency_us);
        let slot = self
            .seconds
            .entry(iv.second)
            .or_insert_with(|| (Counters::default(), new_histogram()));
        slot.0.merge(&iv.counters);
        let _ = slot.1.add(&iv.latency_us);
    }

    pub fn rows(&self) -> Vec<SecondRow> {
        self.seconds
            .iter()
            .map(|(s, (c, h))| SecondRow {
                second: *s,
                attempted: c.attempted,
                succeeded: c.succeeded,
                failed: c.failed(),
                timeouts: c.timeouts,
                retransmissions: c.retransmissions,
                p50_us: if h.is_empty() {
                    0
                } else {
                    h.value_at_quantile(0.5)
                },
                p99_us: if h.is_empty() {
                    0
                } else {
                    h.value_at_quantile(0.99)
                },
            })
            .collect()
    }
}

/// Successes per second of wall time; zero for a zero-length run.
pub fn rate_per_s(count: u64, elapsed_s: f64) -> f64 {
    if elapsed_s > 0.0 {
        count as f64 / elapsed_s
    } else {
        0.0
    }
}

pub fn write_csv(rows: &[SecondRow], out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "second,attempted,succeeded,failed,timeouts,retransmissions,p50_us,p99_us"
    )?;
    for r in rows {
        writeln!(
            out,
            "{},{},{},{},{},{},{},{}",
            r.second,
            r.attempted,
            r.succeeded,
            r.failed,
            r.timeouts,
            r.retransmissions,
            r.p50_us,
            r.p99_us
        )?;
    }
    Ok(())
}

pub fn print_human(r: &Report, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "target {}  scenario {}  users {}  threads {}  mode {}",
        r.target, r.scenario, r.users, r.threads, r.mode
    )?;
    writeln!(
        out,
        "attempted {}  succeeded {}  failed {}  timeouts {}  retransmissions {}  challenges {}",
        r.attempted, r.succeeded, r.failed, r.timeouts, r.retransmissions, r.challenges
    )?;
    if !r.failed_by_status.is_empty() {
        let parts: Vec<String> = r
            .failed_by_status
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        writeln!(out, "failed by status: {}", parts.join(", "))?;
    }
    if r.unmatched_responses + r.garbage_responses + r.send_drops > 0 {
        writeln!(
            out,
            "unmatched responses {}  unparsable {}  send drops {}",
            r.unmatched_responses, r.garbage_responses, r.send_drops
        )?;
    }
    match &r.gso_fallback {
        Some(why) => writeln!(out, "send path {} ({why})", r.send_path)?,
        None if r.send_path == "udp-gso" => writeln!(
            out,
            "send path udp-gso, {:.1} datagrams per GSO send",
            r.gso_segments_per_send
        )?,
        None => writeln!(out, "send path {}", r.send_path)?,
    }
    writeln!(
        out,
        "elapsed {:.3} s  registrations/s {:.0}  failure rate {:.4}%",
        r.elapsed_s,
        r.registrations_per_s,
        r.failure_rate * 100.0
    )?;
    let l = &r.latency_us;
    writeln!(
        out,
        "latency us: p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {:.1}",
        l.p50, l.p90, l.p99, l.p99_9, l.max, l.mean
    )?;
    writeln!(
        out,
        "loadgen cpu {:.3} s  = {:.2} us per transaction",
        r.cpu_s, r.cpu_us_per_transaction
    )
}

/// User + system CPU seconds of this process so far.
pub fn process_cpu_s() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    let Ok(ru) = getrusage(UsageWho::RUSAGE_SELF) else {
        return 0.0;
    };
    let tv = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    tv(ru.user_time()) + tv(ru.system_time())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_rate_arithmetic() {
        let mut c = Counters {
            attempted: 1000,
            succeeded: 970,
            timeouts: 10,
            ..Counters::default()
        };
        c.failed_by_status.insert(403, 15);
        c.failed_by_status.insert(500, 5);
        assert_eq!(c.failed(), 20);
        assert_eq!(c.completed(), 1000);
        assert!((c.failure_rate() - 0.03).abs() < 1e-12);
        assert_eq!(Counters::default().failure_rate(), 0.0);
        let stuck = Counters {
            attempted: 5,
            ..Counters::default()
        };
        assert_eq!(stuck.failure_rate(), 1.0);
    }

    #[test]
    fn merge_adds_everything() {
        let mut a = Counters {
            attempted: 1,
            succeeded: 1,
            ..Counters::default()
        };
        a.failed_by_status.insert(401, 2);
        let mut b = a.clone();
        b.retransmissions = 3;
        b.register.succeeded = 4;
        a.merge(&b);
        assert_eq!(a.attempted, 2);
        assert_eq!(a.failed_by_status.get(&401), Some(&4));
        assert_eq!(a.retransmissions, 3);
        assert_eq!(a.register.succeeded, 4);
    }

    #[test]
    fn percentiles_of_uniform_latencies() {
        let mut h = new_histogram();
        for v in 1..=10_000u64 {
            h.record(v).expect("in range");
        }
        let p = Percentiles::of(&h);
        // 3 significant digits: within 0.1%.
        let close = |a: u64, b: u64| (a as f64 - b as f64).abs() <= b as f64 * 0.001 + 1.0;
        assert!(close(p.p50, 5_000), "{}", p.p50);
        assert!(close(p.p90, 9_000), "{}", p.p90);
        assert!(close(p.p99, 9_900), "{}", p.p99);
        assert!(close(p.p99_9, 9_990), "{}", p.p99_9);
        assert!(close(p.max, 10_000), "{}", p.max);
        assert!((p.mean - 5000.5).abs() < 5.0);
        assert_eq!(Percentiles::of(&new_histogram()), Percentiles::default());
    }

    #[test]
    fn rates_and_time_series() {
        assert_eq!(rate_per_s(50_000, 2.0), 25_000.0);
        assert_eq!(rate_per_s(10, 0.0), 0.0);
        let mut agg = Aggregate::default();
        for (second, n) in [(0u64, 10u64), (1, 20), (1, 5), (2, 7)] {
            let mut h = new_histogram();
            for v in 0..n {
                h.record(100 + v).expect("in range");
            }
            agg.add(&Interval {
                worker: 0,
                second,
                counters: Counters {
                    attempted: n,
                    succeeded: n,
                    ..Counters::default()
                },
                latency_us: h,
                in_flight: 0,
                last_completion_ns: 0,
                gso_fallback: None,
            });
        }
        assert_eq!(agg.totals.succeeded, 42);
        assert_eq!(agg.latency_us.len(), 42);
        let rows = agg.rows();
        assert_eq!(
            rows.iter().map(|r| r.succeeded).collect::<Vec<_>>(),
            [10, 25, 7]
        );
        let mut csv = Vec::new();
        write_csv(&rows, &mut csv).expect("vec write");
        let text = String::from_utf8(csv).expect("utf8");
        assert_eq!(text.lines().count(), 4);
        assert!(text
            .lines()
            .nth(2)
            .is_some_and(|l| l.starts_with("1,25,25,0,0,0,")));
    }
}
