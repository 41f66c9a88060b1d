//! Start-up time with a large journal: registers N AoRs (one binding each, a 60-byte contact and a 40-byte
//! Call-ID, as `binding_memory` does), writes their changes as a segment (one frame per 64 changes, as a
//! loaded shard writes them) and, separately, as a snapshot; then times loading each back into a new
//! registrar, as a shard does before it reports ready.
//! `cargo run --release --example journal_startup -- 1000000 [DIR]` (DIR: where to write; default a
//! temporary directory, removed after).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use corereg::journal::format::{self, FileHeader, FileKind};
use corereg::journal::load::{load_dir, LoadReport};
use corereg::journal::{segment_path, write_snapshot_blocking};
use corereg::registrar::{Now, Outcome, Registrar, RegistrarConfig};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const T0: u64 = 1_800_000_000;

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let base = std::env::args().nth(2).map(PathBuf::from);
    let tmp = base.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("corereg-journal-startup-{}", std::process::id()))
    });
    let seg_dir = tmp.join("segments");
    let snap_dir = tmp.join("snapshot");
    std::fs::create_dir_all(&seg_dir).expect("dir");
    let cfg = RegistrarConfig {
        max_bindings: n as usize,
        reserve_arenas: true,
        ..RegistrarConfig::default()
    };
    let source: SocketAddr = "192.0.2.7:5060".parse().expect("addr");
    let mut reg = Registrar::new(cfg.clone(), Now::from_secs(T0));
    let mut out = Vec::new();
    let mut segment = FileHeader {
        kind: FileKind::Segment,
        shard: 0,
        shards: 1,
        base_seq: 1,
    }
    .encode()
    .to_vec();
    let started = Instant::now();
    for i in 0..n {
        let msg = format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bK-{i:08}\r\n\
             From: <sip:user{i:08}@example.com>;tag=1\r\nTo: <sip:user{i:08}@example.com>\r\n\
             Call-ID: {i:08}-0123456789abcdef0123456789ab\r\nCSeq: 1 REGISTER\r\n\
             Contact: <sip:user{i:08}@192.0.2.7:5060;transport=udp;ob;x=0123456789>\r\n\
             Expires: 3600\r\nContent-Length: 0\r\n\r\n"
        );
        let outcome = reg.handle(msg.as_bytes(), source, Now::from_secs(T0), &mut out);
        assert!(
            matches!(outcome, Outcome::Reply { status: 200, .. }),
            "{outcome:?}"
        );
        if i % 64 == 63 || i + 1 == n {
            let batch = reg.take_changes(Vec::new());
            format::push_records(&mut segment, batch.as_bytes(), format::MAX_FRAME_BYTES);
        }
    }
    std::fs::write(segment_path(&seg_dir, 1), &segment).expect("write segment");
    let snap_bytes = write_snapshot_blocking(&snap_dir, 0, 1, &reg).expect("snapshot");
    println!(
        "{n} bindings registered in {:.2} s; segment {} bytes ({:.0} B per binding), snapshot {} bytes",
        started.elapsed().as_secs_f64(),
        segment.len(),
        segment.len() as f64 / f64::from(n),
        snap_bytes
    );
    drop(reg);
    for (what, dir) in [("segment", &seg_dir), ("snapshot", &snap_dir)] {
        // Cold page cache would measure the disk; this measures corereg's own work on cached files. As a
        // shard starts: a registrar with its arenas reserved, the journal replayed into it record by record.
        let t = Instant::now();
        let now = Now::from_secs(T0 + 10);
        let mut back = Registrar::new(cfg.clone(), now);
        let made = t.elapsed();
        let mut read = LoadReport::default();
        let mut replay = back.replay(n as usize, now);
        load_dir(dir, &|_| true, &mut read, &mut replay).expect("load");
        let report = replay.finish(read.last_seq, now);
        let total = t.elapsed();
        println!(
            "from the {what}: {:.3} s ({:.3} s of it making the registrar); {} bindings restored",
            total.as_secs_f64(),
            made.as_secs_f64(),
            report.restored
        );
        assert_eq!(report.restored, n as usize);
        drop(back);
    }
    if base.is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
