//! Cycles of one REGISTER in the core with the caches and branch predictors as a serving shard finds them:
//! after a sleep (the shard parks between datagrams) and a UDP round trip over loopback (the kernel's
//! receive path runs on the same core just before the registrar does). The stateless stub's handler runs
//! the same way, interleaved, so the two figures come from one run.
//!
//! `cargo build --release --example cold_handle && target/release/examples/cold_handle [requests] [gap_us]`
//!
//! The registrar is preloaded with one binding for each of `requests` users; each measured REGISTER is a
//! second device of one of them (another Contact and Call-ID), as in `benches/sipp_pairs.sh`. The TSC is
//! read around the handler only (no syscall inside the window). Requests take turns in three modes, so one
//! run splits a REGISTER's cost: cold as served; with the code (and the registrar's own structures) warmed
//! by a REGISTER of another user just before; with the code and the measured AoR's data warmed by a query
//! of that AoR. The machine's noise moves whole runs by 2x: compare figures of one run, not across runs.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use corereg::registrar::{Now, Outcome, Registrar, RegistrarConfig};
use corereg::sip::stateless;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../tests/support/sample_register.rs"]
mod sample;
use sample::{device_register, sample_register};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let requests: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let gap = Duration::from_micros(args.next().and_then(|a| a.parse().ok()).unwrap_or(100));
    let source: SocketAddr = "192.0.2.7:5060".parse().expect("addr");
    let now = Now::from_secs(1_700_000_000);
    let mut reg = Registrar::new(RegistrarConfig::default(), now);
    let mut out = Vec::with_capacity(2048);
    for u in 0..=requests {
        let _ = reg.handle(&sample_register(u, 1), source, now, &mut out);
    }
    let msgs: Vec<Vec<u8>> = (0..requests).map(|u| device_register(u, 1, 1)).collect();
    let mut kernel = Kernel::new()?;
    let modes = [Warm::Nothing, Warm::Code, Warm::CodeAndAor];
    let mut core_cycles: [Vec<u64>; 3] = Default::default();
    let mut stub_cycles = Vec::new();
    let (mut ok, mut warmed) = (0u32, 0u32);
    for (i, m) in msgs.iter().enumerate() {
        for turn in 0..2 {
            let m = kernel.park_and_receive(m, gap)?;
            if (i + turn) % 2 == 1 {
                let (_, c) = timed(|| {
                    out.clear();
                    stateless::answer_ok(m, &mut out)
                });
                stub_cycles.push(c);
                continue;
            }
            let mode = i % modes.len();
            let warm_up = match modes[mode] {
                Warm::Nothing => None,
                Warm::Code => Some(sample_register(requests, i as u32 + 2)),
                Warm::CodeAndAor => Some(query(i as u32)),
            };
            if let Some(w) = warm_up {
                let o = reg.handle(&w, source, now, &mut out);
                warmed += u32::from(matches!(o, Outcome::Reply { status: 200, .. }));
            }
            let (outcome, c) = timed(|| reg.handle(m, source, now, &mut out));
            ok += u32::from(matches!(outcome, Outcome::Reply { status: 200, .. }));
            core_cycles[mode].push(c);
        }
    }
    println!(
        "{requests} second-device REGISTERs ({ok} answered 200, {warmed} warm-ups answered 200), gap {} us; \
         cycles per datagram:",
        gap.as_micros()
    );
    report("stub", &mut stub_cycles);
    for (mode, cycles) in modes.iter().zip(core_cycles.iter_mut()) {
        report(mode.label(), cycles);
    }
    Ok(())
}

/// What runs just before a measured REGISTER, after the kernel's turn: one mode per request, in turn.
#[derive(Clone, Copy, Debug)]
enum Warm {
    Nothing,
    /// A refresh of a spare user: the same code, other data.
    Code,
    /// A query (no Contact) of the measured AoR: the code, the AoR's table line, record and bindings.
    CodeAndAor,
}

impl Warm {
    fn label(self) -> &'static str {
        match self {
            Warm::Nothing => "core, cold",
            Warm::Code => "core, code warmed",
            Warm::CodeAndAor => "core, code and AoR warmed",
        }
    }
}

/// A REGISTER without Contact (a query) for user `u`'s AoR.
fn query(u: u32) -> Vec<u8> {
    format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKq{u};rport\r\n\
         From: <sip:u{u}@example.com>;tag=q1\r\n\
         To: <sip:u{u}@example.com>\r\n\
         Call-ID: query-{u}\r\n\
         CSeq: 1 REGISTER\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// What runs on a shard's core between two datagrams: a park (sleep) and the kernel's UDP path.
struct Kernel {
    tx: UdpSocket,
    rx: UdpSocket,
    buf: Vec<u8>,
}

impl Kernel {
    fn new() -> std::io::Result<Self> {
        let rx = UdpSocket::bind("127.0.0.1:0")?;
        let tx = UdpSocket::bind("127.0.0.1:0")?;
        tx.connect(rx.local_addr()?)?;
        Ok(Kernel {
            tx,
            rx,
            buf: vec![0; 65536],
        })
    }

    /// Sleeps, then passes `datagram` through the kernel: the bytes the handler reads are the ones just
    /// received (cached, as in a shard), not the long-ago built copy.
    fn park_and_receive(&mut self, datagram: &[u8], gap: Duration) -> std::io::Result<&[u8]> {
        std::thread::sleep(gap);
        self.tx.send(datagram)?;
        let (n, _) = self.rx.recv_from(&mut self.buf)?;
        Ok(&self.buf[..n])
    }
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let start = tsc();
    let v = std::hint::black_box(f());
    (v, tsc().saturating_sub(start))
}

#[cfg(target_arch = "x86_64")]
fn tsc() -> u64 {
    // SAFETY: lfence and rdtsc have no preconditions on x86_64.
    unsafe {
        core::arch::x86_64::_mm_lfence();
        let t = core::arch::x86_64::_rdtsc();
        core::arch::x86_64::_mm_lfence();
        t
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn tsc() -> u64 {
    let t = std::time::Instant::now();
    std::hint::black_box(t).elapsed().as_nanos() as u64
}

/// Median, mean and tail: the mean is what a shard's CPU time adds up to, and the slowest tenth of the
/// REGISTERs (the AoR's data fetched from memory) holds a large share of it.
fn report(what: &str, v: &mut [u64]) {
    v.sort_unstable();
    let p = |q: usize| v.get(v.len() * q / 100).copied().unwrap_or(0);
    let total: u64 = v.iter().sum();
    let mean = total / (v.len().max(1) as u64);
    println!(
        "  {what:<27} median {} mean {mean} p90 {} p99 {}",
        p(50),
        p(90),
        p(99)
    );
}
