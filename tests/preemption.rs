//! The executor's latency preemption as patched in `vendor/glommio-ng` (vendor/README.md): a deadline read
//! from the clock at the yield points instead of a kernel timeout armed every turn, and a turn that always
//! makes progress, however short the deadline.
//!
//! Both run executors the way a shard does: a task queue with `Latency::Matters` beside the default one.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use glommio::{Latency, LocalExecutorBuilder, Shares};

/// Runs `body` on an executor of its own thread; fails the test if it has not finished within `limit`
/// (an executor that stopped making progress never returns).
fn run_within<T, F>(
    limit: Duration,
    preempt: Duration,
    body: impl FnOnce() -> F + Send + 'static,
) -> T
where
    T: Send + 'static,
    F: std::future::Future<Output = T>,
{
    let (tx, rx) = mpsc::channel();
    let worker = thread::spawn(move || {
        let ex = LocalExecutorBuilder::default()
            .preempt_timer(preempt)
            .make()
            .expect("executor starts (is `ulimit -l` at least 512 KiB per executor?)");
        let out = ex.run(async move { body().await });
        let _ = tx.send(out);
    });
    let out = rx
        .recv_timeout(limit)
        .expect("the executor stopped making progress with runnable tasks");
    worker.join().expect("executor thread");
    out
}

/// A task queue that stays busy gives way at its latency deadline: the timer of a task in another queue
/// fires while it still runs. Without a working deadline nothing preempts it (no I/O completes), so the
/// spinning task only sees the flag when its own cap ends the test.
#[test]
fn a_busy_latency_queue_gives_way_at_its_deadline() {
    let cap = Duration::from_secs(20);
    let (seen_while_busy, yields) = run_within(
        cap + Duration::from_secs(10),
        Duration::from_millis(100),
        move || async move {
            let fired = Rc::new(Cell::new(false));
            let busy = glommio::executor().create_task_queue(
                Shares::default(),
                Latency::Matters(Duration::from_millis(1)),
                "busy",
            );
            let timer = {
                let fired = fired.clone();
                glommio::spawn_local(async move {
                    glommio::timer::sleep(Duration::from_millis(5)).await;
                    fired.set(true);
                })
            };
            let spinner = {
                let fired = fired.clone();
                glommio::spawn_local_into(
                    async move {
                        let start = Instant::now();
                        let mut yields = 0u64;
                        while !fired.get() && start.elapsed() < cap {
                            let slice = Instant::now();
                            while slice.elapsed() < Duration::from_micros(50) {
                                std::hint::spin_loop();
                            }
                            if glommio::executor().need_preempt() {
                                yields += 1;
                            }
                            glommio::executor().yield_if_needed().await;
                        }
                        (fired.get(), yields)
                    },
                    busy,
                )
                .expect("spawn into the busy queue")
            };
            let out = spinner.await;
            timer.await;
            out
        },
    );
    assert!(
        seen_while_busy,
        "the timer fired only after the busy queue gave up on its own: its latency deadline never preempted it"
    );
    assert!(yields > 0, "the busy queue never saw need_preempt()");
}

/// With a deadline that has always passed by the time the executor runs its queues, every turn still runs
/// a task: spawned tasks complete instead of the executor parking (or spinning) with them runnable.
#[test]
fn runnable_work_survives_a_deadline_that_has_always_passed() {
    let done = run_within(Duration::from_secs(60), Duration::from_nanos(1), || async {
        let short = glommio::executor().create_task_queue(
            Shares::default(),
            Latency::Matters(Duration::from_nanos(1)),
            "short",
        );
        let mut done = 0u32;
        for i in 0..1_000u32 {
            let a = glommio::spawn_local(async move { i }).await;
            let b = glommio::spawn_local_into(async move { i + 1 }, short)
                .expect("spawn into the short queue")
                .await;
            assert_eq!((a, b), (i, i + 1));
            done += 1;
        }
        done
    });
    assert_eq!(done, 1_000);
}

/// A preemption period too long to add to the clock means "never preempt on time", not a panic.
#[test]
fn an_endless_preemption_period_runs_tasks() {
    let sum = run_within(Duration::from_secs(60), Duration::MAX, || async {
        let mut sum = 0u32;
        for i in 0..100u32 {
            sum += glommio::spawn_local(async move { i }).await;
            glommio::executor().yield_if_needed().await;
        }
        sum
    });
    assert_eq!(sum, (0..100).sum::<u32>());
}
