//! Core cost per REGISTER: parse + §10.3 handling + response writing, no I/O.
//! `cargo bench --bench register`

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use corereg::registrar::{Now, Outcome, Registrar, RegistrarConfig};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};

// The allocator the registrar ships with (no allocation happens on the refresh path; this keeps the
// initial-REGISTER figure comparable with the binary).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../tests/support/sample_register.rs"]
mod sample;
use sample::{device_register, sample_register as register};

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

/// Bytes written between two timed REGISTERs by the cold benchmark: beyond the L2 (512 KiB per core
/// here), part of the shared L3. A shard serving a moderate rate sleeps between datagrams while the kernel
/// and other processes run, and finds its code and data evicted like this.
const EVICT_BYTES: usize = 4 << 20;

/// One REGISTER at a time with the caches cold: a second device of one of 100k registered AoRs (the
/// SIPp phase of `benches/e2e.sh`: compare with the first binding, insert, a 200 listing two bindings).
/// Before each timed REGISTER (not timed) the previous iteration's second device is unregistered, so every
/// AoR has one binding when it is picked, and `EVICT_BYTES` of unrelated memory are written. This measures
/// the cache misses of the request path more than its instructions. `COLD_USERS` and `COLD_EVICT_KB` in
/// the environment change the AoR count and the eviction.
fn bench_cold(c: &mut Criterion) {
    let source: SocketAddr = "192.0.2.7:5060".parse().expect("addr");
    let mut out = Vec::with_capacity(2048);
    let users: u32 = env_or("COLD_USERS", 100_000);
    let evict_bytes = env_or("COLD_EVICT_KB", EVICT_BYTES / 1024) * 1024;
    let cfg = RegistrarConfig {
        reserve_arenas: true,
        ..RegistrarConfig::default()
    };
    let mut reg = Registrar::new(cfg, Now::from_secs(T0));
    for u in 0..users {
        let _ = reg.handle(&register(u, 1), source, Now::from_secs(T0), &mut out);
    }
    let mut evict = vec![0u8; evict_bytes];
    let mut n = 0u32;
    let mut previous: Option<u32> = None;
    c.bench_function("handle_second_device_cold", |b| {
        // Set-up and timing per request by hand: the set-up needs the registrar too.
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                if let Some(user) = previous.take() {
                    let bye = String::from_utf8_lossy(&device_register(user, 1, 2))
                        .replace("expires=3600", "expires=0")
                        .into_bytes();
                    let r = reg.handle(&bye, source, Now::from_secs(T0 + 2), &mut out);
                    assert!(matches!(r, Outcome::Reply { status: 200, .. }));
                }
                // A scattered walk over the users (multiplicative hashing).
                n += 1;
                let user = n.wrapping_mul(2_654_435_761) % users;
                previous = Some(user);
                let req = device_register(user, 1, 1);
                for line in evict.chunks_mut(64) {
                    line[0] = line[0].wrapping_add(1);
                }
                black_box(&evict);
                let start = Instant::now();
                let r = reg.handle(&req, source, Now::from_secs(T0 + 2), &mut out);
                timed += start.elapsed();
                assert!(matches!(r, Outcome::Reply { status: 200, .. }));
            }
            timed
        })
    });
    assert_eq!(
        reg.binding_count(),
        users as usize + usize::from(previous.is_some())
    );
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

criterion_group!(benches, bench, bench_cold);
criterion_main!(benches);
