//! Timer wheel costs with a realistic population: 1M armed bindings spread over an hour.
//! Run: `cargo bench --bench wheel`.

use std::time::{Duration, Instant};

use corereg::registrar::wheel::TimerWheel;
use criterion::{black_box, criterion_group, criterion_main, Criterion};

const ARMED: u32 = 1_000_000;
const START_S: u64 = 1_700_000_000;

/// A cheap deterministic id scramble so accesses miss the cache like a real registrar's would.
fn scramble(i: u64) -> u32 {
    ((i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % u64::from(ARMED)) as u32
}

fn populated() -> TimerWheel {
    let mut wheel = TimerWheel::with_capacity(START_S, ARMED as usize + 1);
    for id in 0..ARMED {
        wheel.schedule(id, START_S + 60 + u64::from(id) % 3_600);
    }
    wheel
}

fn bench(c: &mut Criterion) {
    let mut wheel = populated();
    c.bench_function("schedule+cancel (1M armed)", |b| {
        b.iter(|| {
            wheel.schedule(black_box(ARMED), START_S + 3_600);
            wheel.cancel(black_box(ARMED));
        })
    });
    let mut i = 0u64;
    c.bench_function("re-arm random id (1M armed)", |b| {
        b.iter(|| {
            i += 1;
            wheel.schedule(scramble(i), START_S + 3_000 + i % 1_200);
        })
    });
    c.bench_function("next_deadline (1M armed)", |b| {
        b.iter(|| black_box(wheel.next_deadline()))
    });
    // Per expired id, including the cascades from level 1: drain 1M timers in batches of 1024.
    c.bench_function("advance: expire 1M over 1 h, per 1M", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut out = Vec::with_capacity(1024);
            for _ in 0..iters {
                let mut wheel = populated();
                let start = Instant::now();
                let mut expired = 0usize;
                for now_s in START_S..START_S + 3_700 {
                    loop {
                        out.clear();
                        let more = wheel.advance(now_s, &mut out, 1024);
                        expired += out.len();
                        if !more {
                            break;
                        }
                    }
                }
                total += start.elapsed();
                assert_eq!(expired, ARMED as usize);
            }
            total
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
