//! Core cost per REGISTER: parse + §10.3 handling + response writing, no I/O.
//! `cargo bench --bench register`

use std::net::SocketAddr;

use corereg::registrar::{Now, Outcome, Registrar, RegistrarConfig};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};

// The allocator the registrar ships with (no allocation happens on the refresh path; this keeps the
// initial-REGISTER figure comparable with the binary).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../tests/support/sample_register.rs"]
mod sample;
use sample::sample_register as register;

const T0: u64 = 1_700_000_000;

fn bench(c: &mut Criterion) {
    let source: SocketAddr = "192.0.2.7:5060".parse().expect("addr");
    let mut out = Vec::with_capacity(2048);

    // Refresh of one of 100k registered AoRs: the steady-state path.
    let users = 100_000u32;
    let mut reg = Registrar::new(RegistrarConfig::default(), Now::from_secs(T0));
    for u in 0..users {
        let _ = reg.handle(&register(u, 1), source, Now::from_secs(T0), &mut out);
    }
    // Each iteration refreshes one of 100k AoRs with a higher CSeq (message built outside the timing).
    let mut seq = 3u32;
    c.bench_function("handle_refresh", |b| {
        b.iter_batched_ref(
            || {
                seq += 1;
                register(seq % users, seq)
            },
            |req| {
                let r = reg.handle(req, source, Now::from_secs(T0 + 2), &mut out);
                debug_assert!(matches!(r, Outcome::Reply { status: 200, .. }));
                black_box(r)
            },
            BatchSize::SmallInput,
        )
    });

    // The same refresh over 1,000 AoRs: the table stays in cache, so this is the core's compute cost alone.
    let hot_users = 1_000u32;
    let mut hot = Registrar::new(RegistrarConfig::default(), Now::from_secs(T0));
    for u in 0..hot_users {
        let _ = hot.handle(&register(u, 1), source, Now::from_secs(T0), &mut out);
    }
    let mut hot_seq = 3u32;
    c.bench_function("handle_refresh_1k_aors", |b| {
        b.iter_batched_ref(
            || {
                hot_seq += 1;
                register(hot_seq % hot_users, hot_seq)
            },
            |req| black_box(hot.handle(req, source, Now::from_secs(T0 + 2), &mut out)),
            BatchSize::SmallInput,
        )
    });

    c.bench_function("handle_initial_register", |b| {
        let mut fresh = Registrar::new(
            RegistrarConfig {
                max_bindings: usize::MAX,
                ..Default::default()
            },
            Now::from_secs(T0),
        );
        let mut n = 0u32;
        b.iter_batched_ref(
            || {
                n += 1;
                register(n, 1)
            },
            |req| black_box(fresh.handle(req, source, Now::from_secs(T0), &mut out)),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
