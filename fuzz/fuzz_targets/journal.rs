//! Loading a journal file of arbitrary content (after a valid header: a segment or a snapshot), then
//! restoring it into a registrar. Nothing may panic or allocate without bound; whatever loads must leave the
//! registrar's store and expiry wheel consistent (`check_invariants`).

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use corereg::journal::format::{FileHeader, FileKind};
use corereg::journal::load::{load_dir, Loaded};
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
    if load_dir(dir, &|_| true, &mut loaded).is_err() {
        return;
    }
    for damage in &loaded.set_aside {
        assert!(damage.offset <= file.len() as u64);
    }
    let now = Now::from_secs(T0);
    let mut registrar = Registrar::new(RegistrarConfig::default(), now);
    restore(&loaded, &mut registrar, now);
    registrar
        .check_invariants(now)
        .expect("a restored registrar is consistent");
});
