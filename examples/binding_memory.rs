//! Resident bytes per binding at scale: registers N AoRs (one 60-byte contact, 40-byte Call-ID each)
//! into one registrar and reports RSS growth per binding next to the string bytes stored.
//! `cargo run --release --example binding_memory -- 1000000 [reserved] [worst]`
//! `worst`: every binding as large as the default `max_binding_bytes` allows (a padded Path), the most
//! memory an attacker can make each binding take.

use std::net::SocketAddr;

use corereg::registrar::{Now, Outcome, Registrar, RegistrarConfig};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let source: SocketAddr = "192.0.2.7:5060".parse().expect("addr");
    // `reserved` as the second argument: the arenas reserved for n bindings up front, as the server does.
    let reserve_arenas = std::env::args().skip(2).any(|a| a == "reserved");
    let worst = std::env::args().skip(2).any(|a| a == "worst");
    let cfg = RegistrarConfig {
        max_bindings: n as usize,
        parse: corereg::sip::parse::ParseLimits {
            max_line_bytes: 4096,
            ..Default::default()
        },
        reserve_arenas,
        ..RegistrarConfig::default()
    };
    let now = Now::from_secs(1_700_000_000);
    let mut out = Vec::with_capacity(2048);
    let mut msg = Vec::with_capacity(1024);
    let before = rss_bytes();
    let mut reg = Registrar::new(cfg, now);
    for u in 0..n {
        msg.clear();
        // Contact URI: exactly 60 bytes; Call-ID: exactly 40 bytes.
        let contact = format!("sip:user{u:010}@198.51.100.77:50600;transport=udp;ob;x=12");
        let contact = &contact[..60];
        let mut path = String::new();
        if worst {
            // Everything the binding stores: AoR, Call-ID (40), contact (60), Path: pad the Path to the limit.
            let aor_len = format!("sip:user{u}@example.com").len();
            let limit = RegistrarConfig::default().max_binding_bytes;
            let head = "<sip:edge.example.net;lr;pad=";
            let pad = limit - aor_len - 40 - 60 - head.len() - 1;
            path = format!("Path: {head}{}>\r\n", "p".repeat(pad));
        }
        let call_id = format!("{u:010}-8f2c6e1a9b7d4c3e5f60718293a4b5c6");
        let call_id = &call_id[..40];
        msg.extend_from_slice(
            format!(
                "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.77:50600;branch=z9hG4bK{u}\r\n\
                 From: <sip:user{u}@example.com>;tag=1\r\nTo: <sip:user{u}@example.com>\r\nCall-ID: {call_id}\r\n\
                 CSeq: 1 REGISTER\r\nContact: <{contact}>\r\n{path}Content-Length: 0\r\n\r\n"
            )
            .as_bytes(),
        );
        let r = reg.handle(&msg, source, now, &mut out);
        if !matches!(r, Outcome::Reply { status: 200, .. }) {
            eprintln!("registration {u} failed: {r:?}");
            std::process::exit(1);
        }
    }
    let after = rss_bytes();
    let strings = reg.store().string_bytes() as f64 / f64::from(n);
    let per = (after.saturating_sub(before)) as f64 / f64::from(n);
    println!(
        "bindings={} rss_growth_bytes={} per_binding={per:.1} strings_per_binding={strings:.1} overhead_per_binding={:.1}",
        reg.binding_count(),
        after.saturating_sub(before),
        per - strings
    );
}
