//! Loading a journal file of arbitrary content (after a valid header: a segment or a snapshot) into a
//! registrar, both as start-up does (replayed record by record) and the reference way (merged per AoR, then
//! restored). Nothing may panic or allocate without bound; each registrar's store and expiry wheel must be
//! consistent (`check_invariants`), and both ways must restore the same bindings.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use corereg::journal::format::{FileHeader, FileKind};
use corereg::journal::load::{load_dir, LoadReport, Loaded};
use corereg::journal::{restore, segment_path, snapshot_path};
use corereg::registrar::{Now, Registrar, RegistrarConfig};
use libfuzzer_sys::fuzz_target;

const T0: u64 = 1_800_000_000;

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("corereg-fuzz-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("fuzz work directory");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let dir = dir();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let _ = std::fs::remove_file(entry.path());
    }
    let kind = if selector & 1 == 0 {
        FileKind::Segment
    } else {
        FileKind::Snapshot
    };
    let base = u64::from(selector >> 1);
    let mut file = FileHeader {
        kind,
        shard: 0,
        shards: 1,
        base_seq: base,
    }
    .encode()
    .to_vec();
    file.extend_from_slice(body);
    let path = match kind {
        FileKind::Segment => segment_path(dir, base),
        FileKind::Snapshot => snapshot_path(dir, base),
    };
    std::fs::write(&path, &file).expect("write");
    let mut loaded = Loaded::default();
    if loaded.read(dir, &|_| true).is_err() {
        return;
    }
    for damage in &loaded.report.set_aside {
        assert!(damage.offset <= file.len() as u64);
    }
    let now = Now::from_secs(T0);
    let mut reference = Registrar::new(RegistrarConfig::default(), now);
    let expected = restore(&loaded, &mut reference, now);
    reference
        .check_invariants(now)
        .expect("a restored registrar is consistent");

    let mut registrar = Registrar::new(RegistrarConfig::default(), now);
    let mut read = LoadReport::default();
    let mut replay = registrar.replay(0, now);
    load_dir(dir, &|_| true, &mut read, &mut replay).expect("loaded once already");
    let report = replay.finish(read.last_seq, now);
    registrar
        .check_invariants(now)
        .expect("a replayed registrar is consistent");
    assert_eq!(read.set_aside, loaded.report.set_aside);
    assert_eq!(registrar.last_seq(), reference.last_seq());
    // A record the store refuses, or an AoR over --max-contacts, may leave the two ways with different
    // (equally valid) choices; otherwise they agree binding for binding.
    if expected.refused == 0 && report.refused == 0 {
        assert_eq!(
            (report.restored, report.expired, report.dropped),
            (expected.restored, expected.expired, expected.dropped)
        );
        assert_eq!(bindings(&registrar), bindings(&reference));
    }
});

/// Every binding, without its slot: (AoR, contact, expiry, CSeq, Call-ID), sorted.
fn bindings(reg: &Registrar) -> Vec<(Vec<u8>, Vec<u8>, u64, u32, Vec<u8>)> {
    let store = reg.store();
    let mut all: Vec<_> = store
        .aors()
        .flat_map(|aor| {
            let name = store.aor_name(aor).unwrap_or_default().to_vec();
            store.bindings_of(aor).map(move |(_, b)| {
                (
                    name.clone(),
                    b.contact().to_vec(),
                    b.expires_at_s,
                    b.cseq,
                    b.call_id().to_vec(),
                )
            })
        })
        .collect();
    all.sort();
    all
}
