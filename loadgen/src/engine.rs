//! Runs one load phase: splits users, rate and count across worker threads, collects their
//! per-second statistics, shows live progress on a terminal, and builds the report.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::report::{self, Aggregate, Percentiles, Report};
use crate::scheduler::{OpenLoop, Pacing};
use crate::worker::{RunConfig, Share, Worker};

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("cannot open a socket towards the target: {0}")]
    Socket(#[from] std::io::Error),
    #[error("more threads ({threads}) than users ({users})")]
    TooManyThreads { threads: usize, users: u64 },
    #[error("a worker thread panicked")]
    WorkerPanicked,
}

/// How the load is offered and when it stops.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub threads: usize,
    /// Open loop at this total rate, or closed loop when None.
    pub rate_per_s: Option<f64>,
    pub ramp_ns: u64,
    /// Closed loop: total requests in flight.
    pub concurrency: usize,
    pub count: Option<u64>,
    pub duration_ns: Option<u64>,
    pub progress: bool,
}

pub struct Outcome {
    pub report: Report,
    pub aggregate: Aggregate,
}

/// Splits `total` into `parts` near-equal shares; the first `total % parts` get one more.
pub fn split(total: u64, parts: usize, i: usize) -> u64 {
    let parts = parts.max(1) as u64;
    total / parts + u64::from((i as u64) < total % parts)
}

pub fn run(cfg: &RunConfig, plan: &Plan) -> Result<Outcome, EngineError> {
    let threads = plan.threads.max(1);
    if threads as u64 > cfg.users {
        return Err(EngineError::TooManyThreads {
            threads,
            users: cfg.users,
        });
    }
    let cfg = Arc::new(cfg.clone());
    let clock = Instant::now();
    let mut workers = Vec::with_capacity(threads);
    let mut first_user = 0u64;
    for i in 0..threads {
        let users = split(cfg.users, threads, i);
        let pacing = match plan.rate_per_s {
            Some(r) => Pacing::Open(OpenLoop::new(r / threads as f64, plan.ramp_ns)),
            None => Pacing::Closed {
                max_in_flight: split(plan.concurrency.max(threads) as u64, threads, i) as usize,
            },
        };
        let share = Share {
            index: i,
            first_user: first_user as u32,
            users: users as u32,
            pacing,
            quota: plan.count.map(|c| split(c, threads, i)),
            duration_ns: plan.duration_ns,
        };
        first_user += users;
        workers.push(Worker::new(cfg.clone(), share, clock)?);
    }

    let cpu_before = report::process_cpu_s();
    let (tx, rx) = mpsc::channel();
    let mut agg = Aggregate::default();
    let mut end_ns = 0u64;
    let joined = std::thread::scope(|scope| {
        let handles: Vec<_> = workers
            .into_iter()
            .enumerate()
            .map(|(i, w)| {
                let tx = tx.clone();
                std::thread::Builder::new()
                    .name(format!("loadgen-{i}"))
                    .spawn_scoped(scope, move || w.run(tx))
            })
            .collect();
        drop(tx);
        let mut in_flight = vec![0u64; threads];
        let mut last_print = Instant::now();
        let mut printed = false;
        let mut last_ok = 0u64;
        loop {
            match rx.recv_timeout(Duration::from_millis(250)) {
                Ok(iv) => {
                    if let Some(slot) = in_flight.get_mut(iv.worker) {
                        *slot = iv.in_flight;
                    }
                    end_ns = end_ns.max(iv.last_completion_ns);
                    agg.add(&iv);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if plan.progress && last_print.elapsed() >= Duration::from_secs(1) {
                let dt = last_print.elapsed().as_secs_f64();
                last_print = Instant::now();
                let t = &agg.totals;
                let p99 = if agg.latency_us.is_empty() {
                    0
                } else {
                    agg.latency_us.value_at_quantile(0.99)
                };
                let mut err = std::io::stderr().lock();
                let _ = write!(
                    err,
                    "\r[{:>5.0}s] {:>8.0}/s  ok {:>10}  failed {:>7}  timeouts {:>7}  in flight {:>6}  p99 {:>7} us ",
                    clock.elapsed().as_secs_f64(),
                    (t.succeeded - last_ok) as f64 / dt,
                    t.succeeded,
                    t.failed(),
                    t.timeouts,
                    in_flight.iter().sum::<u64>(),
                    p99
                );
                let _ = err.flush();
                last_ok = t.succeeded;
                printed = true;
            }
        }
        if printed {
            eprintln!();
        }
        handles
            .into_iter()
            .all(|h| h.map(|h| h.join().is_ok()).unwrap_or(false))
    });
    if !joined {
        return Err(EngineError::WorkerPanicked);
    }
    let cpu_s = report::process_cpu_s() - cpu_before;
    let wall_s = clock.elapsed().as_secs_f64();
    // Rate over the time the load was actually answered: the last completion, not the time spent
    // waiting out timer F for lost requests.
    let elapsed_s = if end_ns > 0 {
        end_ns as f64 / 1e9
    } else {
        wall_s
    };
    let report = build_report(cfg.as_ref(), plan, &agg, elapsed_s, cpu_s);
    Ok(Outcome {
        report,
        aggregate: agg,
    })
}

pub fn build_report(
    cfg: &RunConfig,
    plan: &Plan,
    agg: &Aggregate,
    elapsed_s: f64,
    cpu_s: f64,
) -> Report {
    let t = &agg.totals;
    let mut by_action = BTreeMap::new();
    by_action.insert("register".to_string(), t.register);
    by_action.insert("refresh".to_string(), t.refresh);
    by_action.insert("unregister".to_string(), t.unregister);
    let transactions = t.completed();
    Report {
        target: cfg.target.to_string(),
        scenario: cfg.scenario.name().to_string(),
        users: cfg.users,
        threads: plan.threads,
        mode: if plan.rate_per_s.is_some() {
            "open".into()
        } else {
            "closed".into()
        },
        offered_rate_per_s: plan.rate_per_s,
        concurrency: plan.rate_per_s.is_none().then_some(plan.concurrency),
        elapsed_s,
        attempted: t.attempted,
        succeeded: t.succeeded,
        failed: t.failed(),
        failed_by_status: t
            .failed_by_status
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
        timeouts: t.timeouts,
        retransmissions: t.retransmissions,
        challenges: t.challenges,
        unmatched_responses: t.unmatched,
        garbage_responses: t.garbage,
        send_drops: t.send_drops,
        send_path: if cfg.gso && agg.gso_fallback.is_none() {
            "udp-gso".into()
        } else {
            "sendmmsg".into()
        },
        gso_fallback: agg.gso_fallback.clone(),
        gso_segments_per_send: if t.gso_sends > 0 {
            t.gso_datagrams as f64 / t.gso_sends as f64
        } else {
            0.0
        },
        registrations_per_s: report::rate_per_s(t.succeeded, elapsed_s),
        failure_rate: t.failure_rate(),
        latency_us: Percentiles::of(&agg.latency_us),
        by_action,
        cpu_s,
        cpu_us_per_transaction: if transactions > 0 {
            cpu_s * 1e6 / transactions as f64
        } else {
            0.0
        },
    }
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn split_is_exact() {
        for (total, parts) in [(10u64, 3usize), (7, 7), (100_000, 4), (5, 1)] {
            let sum: u64 = (0..parts).map(|i| split(total, parts, i)).sum();
            assert_eq!(sum, total);
        }
        assert_eq!(split(10, 3, 0), 4);
        assert_eq!(split(10, 3, 2), 3);
    }
}
