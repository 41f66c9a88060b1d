//! A fixed workload for profilers (callgrind, perf): register N AoRs, then refresh each of them R times.
//! `cargo build --release --example refresh_loop && valgrind --tool=callgrind target/release/examples/refresh_loop 20000 3`
//!
//! With a third argument `second-device`, every round after the first registers a second device per AoR
//! (another Contact and Call-ID, CSeq 1) instead of refreshing: the insert path that SIPp exercises in
//! `benches/e2e.sh` after the loadgen phase (compare, insert, a 200 listing two bindings).
//!
//! With `THRASH_KB=N` in the environment, the loop writes N KiB of unrelated memory between two REGISTERs,
//! evicting the caches as a sleeping shard's neighbours do at a moderate rate. Under callgrind with a
//! cache model (`--cache-sim=yes --LL=524288,8,64`, an L2-sized last level) the misses inside
//! `Registrar::handle` are then the cold-cache cost of one REGISTER: code lines (I1 misses) and data
//! lines (LL misses) fetched from further away.

use std::net::SocketAddr;

use corereg::registrar::{Now, Outcome, Registrar, RegistrarConfig};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../tests/support/sample_register.rs"]
mod sample;
use sample::{device_register, sample_register as register};

fn main() {
    let mut args = std::env::args().skip(1);
    let users: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let rounds: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let second_device = args.next().as_deref() == Some("second-device");
    let source: SocketAddr = "192.0.2.7:5060".parse().expect("addr");
    let now = Now::from_secs(1_700_000_000);
    let mut reg = Registrar::new(RegistrarConfig::default(), now);
    let mut out = Vec::with_capacity(2048);
    let thrash_kb: usize = std::env::var("THRASH_KB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut thrash = vec![0u8; thrash_kb * 1024];
    let mut ok = 0u64;
    for round in 0..=rounds {
        let msgs: Vec<Vec<u8>> = (0..users)
            .map(|u| match (second_device, round) {
                (true, 1..) => device_register(u, round, 1),
                _ => register(u, round + 1),
            })
            .collect();
        for m in &msgs {
            evict(&mut thrash);
            if let Outcome::Reply { status: 200, .. } =
                handle_one(&mut reg, m, source, now, &mut out)
            {
                ok += 1;
            }
        }
    }
    println!(
        "{ok} REGISTERs answered 200, {} bindings",
        reg.binding_count()
    );
}

/// One request, never inlined: the profilers' anchor (`handle_one` inclusive) even when LTO inlines
/// `Registrar::handle` into the loop.
#[inline(never)]
fn handle_one(
    reg: &mut Registrar,
    m: &[u8],
    source: SocketAddr,
    now: Now,
    out: &mut Vec<u8>,
) -> Outcome {
    reg.handle(m, source, now, out)
}

/// Writes one byte per cache line of `buf` (a no-op when empty).
fn evict(buf: &mut [u8]) {
    for line in buf.chunks_mut(64) {
        line[0] = line[0].wrapping_add(1);
    }
    std::hint::black_box(&*buf);
}
