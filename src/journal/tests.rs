//! The journal against the registrar: what is written is what loads, damage keeps a prefix and never a
//! wrong binding.

use std::collections::BTreeMap;
use std::path::Path;

use super::format::{push_records, FileHeader, FileKind, HEADER_BYTES, MAX_FRAME_BYTES};
use super::load::{load_dir, LoadReport, Loaded};
use super::*;
use crate::registrar::{Now, Registrar, RegistrarConfig};

const T0: u64 = 1_000_000;

fn config(seed: HashSeed) -> RegistrarConfig {
    RegistrarConfig {
        hash_seed: seed,
        expires_range_pct: 20,
        ..RegistrarConfig::default()
    }
}

fn register(reg: &mut Registrar, user: &str, cseq: u32, expires: u32, now_s: u64) -> u16 {
    let contact = format!("<sip:{user}@192.0.2.1>");
    register_contact(reg, user, &contact, cseq, expires, now_s)
}

fn register_contact(
    reg: &mut Registrar,
    user: &str,
    contact: &str,
    cseq: u32,
    expires: u32,
    now_s: u64,
) -> u16 {
    let msg = format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-{user}-{cseq}\r\n\
         From: <sip:{user}@example.com>;tag=1\r\nTo: <sip:{user}@example.com>\r\nCall-ID: c-{user}\r\n\
         CSeq: {cseq} REGISTER\r\nContact: {contact}\r\nExpires: {expires}\r\nContent-Length: 0\r\n\r\n"
    );
    let mut out = Vec::new();
    let source = "192.0.2.1:5060".parse().expect("addr");
    match reg.handle(msg.as_bytes(), source, Now::from_secs(now_s), &mut out) {
        crate::registrar::Outcome::Reply { status, .. } => status,
        other => panic!("{other:?}"),
    }
}

/// Every binding: AoR -> (id, contact, expiry, CSeq).
type State = BTreeMap<String, Vec<(u32, String, u64, u32)>>;

fn state(reg: &Registrar) -> State {
    let store = reg.store();
    let mut map = BTreeMap::new();
    for rec in store.aors() {
        let name = String::from_utf8_lossy(store.aor_name(rec).unwrap_or_default()).into_owned();
        let mut list: Vec<_> = store
            .bindings_of(rec)
            .map(|(idx, b)| {
                (
                    idx,
                    String::from_utf8_lossy(b.contact()).into_owned(),
                    b.expires_at_s,
                    b.cseq,
                )
            })
            .collect();
        list.sort();
        map.insert(name, list);
    }
    map
}

/// A segment file holding each batch as one frame; returns the offsets where each frame ends.
fn write_segment(dir: &Path, base: u64, batches: &[Vec<u8>]) -> Vec<u64> {
    std::fs::create_dir_all(dir).expect("dir");
    let mut bytes = FileHeader {
        kind: FileKind::Segment,
        shard: 0,
        shards: 1,
        base_seq: base,
    }
    .encode()
    .to_vec();
    let mut ends = Vec::new();
    for b in batches {
        push_records(&mut bytes, b, MAX_FRAME_BYTES);
        ends.push(bytes.len() as u64);
    }
    std::fs::write(segment_path(dir, base), bytes).expect("write");
    ends
}

fn load(dir: &Path) -> Loaded {
    let mut loaded = Loaded::default();
    loaded.read(dir, &|_| true).expect("loads");
    loaded
}

/// `dirs` replayed into a new registrar (shard `shard` of `shards`), as start-up does.
fn replayed(
    dirs: &[&Path],
    keep: &dyn Fn(&[u8]) -> bool,
    seed: HashSeed,
    (shard, shards): (usize, usize),
    now_s: u64,
) -> (Registrar, RestoreReport, LoadReport) {
    let now = Now::from_secs(now_s);
    let mut reg = Registrar::new(config(seed), now);
    reg.set_partition(shard, shards);
    let mut report = LoadReport::default();
    let mut replay = reg.replay(0, now);
    for dir in dirs {
        load_dir(dir, keep, &mut report, &mut replay).expect("loads");
    }
    let restored = replay.finish(report.last_seq, now);
    reg.check_invariants(now).expect("invariants");
    (reg, restored, report)
}

/// `dir` restored both ways (merged per AoR, then restored; and replayed as start-up does): both must give
/// the same bindings under the same ids and the same counts. Returns the replayed registrar.
fn restored(dir: &Path, seed: HashSeed, now_s: u64) -> Registrar {
    let loaded = load(dir);
    let mut reference = Registrar::new(config(seed), Now::from_secs(now_s));
    let expected = restore(&loaded, &mut reference, Now::from_secs(now_s));
    reference
        .check_invariants(Now::from_secs(now_s))
        .expect("invariants");
    let (reg, report, read) = replayed(&[dir], &|_| true, seed, (0, 1), now_s);
    assert_eq!(state(&reg), state(&reference), "replayed against merged");
    assert_eq!(report, expected);
    assert_eq!(reg.last_seq(), reference.last_seq());
    assert_eq!(read.set_aside, loaded.report.set_aside);
    reg
}

/// Writes a snapshot of `reg` into `dir` page by page as a running shard does, calling `between` after each
/// page for one turn of changes; those go to the segment after the snapshot. Returns the snapshot's base and
/// bytes.
fn snapshot_amid_changes(
    dir: &Path,
    reg: &mut Registrar,
    mut between: impl FnMut(&mut Registrar) -> Vec<u8>,
) -> (u64, Vec<u8>) {
    let _ = reg.take_changes(Vec::new());
    let base = reg.last_seq();
    let mut snap = FileHeader {
        kind: FileKind::Snapshot,
        shard: 0,
        shards: 1,
        base_seq: base,
    }
    .encode()
    .to_vec();
    let mut segment = Vec::new();
    let mut cursor = Some(0);
    while let Some(from) = cursor {
        let mut page = Vec::new();
        cursor = snapshot_page(reg, from, &mut page);
        push_records(&mut snap, &page, MAX_FRAME_BYTES);
        segment.push(between(reg));
    }
    format::push_end(&mut snap);
    std::fs::write(snapshot_path(dir, base), &snap).expect("snap");
    write_segment(dir, base + 1, &segment);
    (base, snap)
}

/// A registrar that made some history (registrations, refreshes, removals), each turn's changes as one
/// batch, and the registrar's state after each batch.
fn history(seed: HashSeed) -> (Vec<Vec<u8>>, Vec<State>) {
    let mut reg = Registrar::new(config(seed), Now::from_secs(T0));
    let mut batches = Vec::new();
    let mut states = Vec::new();
    for turn in 0..12u32 {
        for u in 0..5u32 {
            let user = format!("u{}", (turn * 3 + u) % 9);
            let expires = if (turn + u) % 7 == 0 { 0 } else { 600 + turn };
            let _ = register(&mut reg, &user, 10 + turn, expires, T0 + u64::from(turn));
        }
        batches.push(reg.take_changes(Vec::new()).into_bytes());
        states.push(state(&reg));
    }
    (batches, states)
}

#[test]
fn a_segment_loads_back_into_the_same_bindings_and_the_log_goes_on() {
    let dir = tempfile::tempdir().expect("tmp");
    let seed = HashSeed([1, 2, 3, 4]);
    let (batches, states) = history(seed);
    write_segment(dir.path(), 1, &batches);
    let loaded = load(dir.path());
    assert!(
        loaded.report.set_aside.is_empty(),
        "{:?}",
        loaded.report.set_aside
    );
    let reg = restored(dir.path(), seed, T0 + 20);
    assert_eq!(&state(&reg), states.last().expect("states"));
    assert_eq!(reg.last_seq(), loaded.report.last_seq);
    assert!(loaded.report.last_seq > 40);
}

#[test]
fn any_cut_or_flipped_byte_loads_a_prefix_of_the_history_never_anything_else() {
    let dir = tempfile::tempdir().expect("tmp");
    let seed = HashSeed([5, 6, 7, 8]);
    let (batches, states) = history(seed);
    let ends = write_segment(dir.path(), 1, &batches);
    let path = segment_path(dir.path(), 1);
    let good = std::fs::read(&path).expect("read");
    let empty = BTreeMap::new();
    let expect = |kept: usize| if kept == 0 { &empty } else { &states[kept - 1] };
    // Every cut point in steps, and flips across the file.
    for cut in (HEADER_BYTES..good.len()).step_by(7) {
        std::fs::write(&path, &good[..cut]).expect("write");
        let loaded = load(dir.path());
        let kept = ends.iter().filter(|&&e| e <= cut as u64).count();
        assert_eq!(
            &state(&restored(dir.path(), seed, T0 + 20)),
            expect(kept),
            "cut {cut}"
        );
        let boundary = cut == HEADER_BYTES || ends.contains(&(cut as u64));
        assert_eq!(loaded.report.set_aside.is_empty(), boundary, "cut {cut}");
    }
    for at in (HEADER_BYTES..good.len()).step_by(13) {
        let mut bad = good.clone();
        bad[at] ^= 0x10;
        std::fs::write(&path, &bad).expect("write");
        let loaded = load(dir.path());
        let kept = ends.iter().filter(|&&e| e <= at as u64).count();
        assert_eq!(
            &state(&restored(dir.path(), seed, T0 + 20)),
            expect(kept),
            "flip at {at}"
        );
        assert_eq!(loaded.report.set_aside.len(), 1);
    }
}

#[test]
fn damage_is_moved_aside_and_the_good_prefix_stays_in_place() {
    let dir = tempfile::tempdir().expect("tmp");
    let seed = HashSeed([9, 9, 9, 9]);
    let (batches, states) = history(seed);
    let ends = write_segment(dir.path(), 1, &batches);
    let path = segment_path(dir.path(), 1);
    let mut bytes = std::fs::read(&path).expect("read");
    let middle = (ends[5] + 12) as usize;
    bytes[middle] ^= 0xff;
    std::fs::write(&path, &bytes).expect("write");
    let loaded = load(dir.path());
    assert_eq!(loaded.report.set_aside.len(), 1);
    let aside = &loaded.report.set_aside[0];
    assert_eq!(aside.offset, ends[5]);
    assert_eq!(aside.bytes, bytes.len() as u64 - ends[5]);
    // The frames after the damaged one still read: counted as lost.
    assert!(aside.records_after > 0, "{aside:?}");
    let moved = aside.apply().expect("set aside");
    assert_eq!(std::fs::metadata(&path).expect("meta").len(), ends[5]);
    assert_eq!(
        std::fs::read(&moved).expect("moved"),
        bytes[ends[5] as usize..]
    );
    // Loading again finds no damage and the same state.
    let again = load(dir.path());
    assert!(again.report.set_aside.is_empty());
    assert_eq!(state(&restored(dir.path(), seed, T0 + 20)), states[5]);
}

#[test]
fn empty_and_headerless_files_are_set_aside_and_an_unknown_version_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(segment_path(dir.path(), 1), b"").expect("write");
    let loaded = load(dir.path());
    assert_eq!(loaded.report.set_aside.len(), 1);
    assert_eq!(loaded.binding_count(), 0);
    loaded.report.set_aside[0].apply().expect("aside");
    assert!(load::list(dir.path()).expect("list").is_empty());

    let mut header = FileHeader {
        kind: FileKind::Segment,
        shard: 0,
        shards: 1,
        base_seq: 1,
    }
    .encode();
    header[8] = 9;
    let crc = crc32fast::hash(&header[..28]);
    header[28..32].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(segment_path(dir.path(), 1), header).expect("write");
    let err = Loaded::default()
        .read(dir.path(), &|_| true)
        .expect_err("refused");
    let text = err.to_string();
    assert!(text.contains("seg-00000000000000000001.log"), "{text}");
    assert!(text.contains("version 9"), "{text}");
}

#[test]
fn a_gap_between_segments_stops_the_load_there() {
    let dir = tempfile::tempdir().expect("tmp");
    let seed = HashSeed([3, 1, 4, 1]);
    let (batches, states) = history(seed);
    // Batches 0..4 in one segment, 6.. in another: batch 5's records are missing.
    write_segment(dir.path(), 1, &batches[..5]);
    let after: u64 = batches[..6]
        .iter()
        .map(|b| crate::registrar::changes::records(b).count() as u64)
        .sum();
    write_segment(dir.path(), after + 1, &batches[6..]);
    let loaded = load(dir.path());
    assert_eq!(
        loaded.report.set_aside.len(),
        1,
        "{:?}",
        loaded.report.set_aside
    );
    assert!(loaded.report.set_aside[0].reason.contains("missing"));
    assert_eq!(state(&restored(dir.path(), seed, T0 + 20)), states[4]);
}

#[test]
fn a_snapshot_written_while_changes_go_on_loads_with_the_segment_after_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let seed = HashSeed([2, 7, 1, 8]);
    let mut reg = Registrar::new(config(seed), Now::from_secs(T0));
    for u in 0..600 {
        register(&mut reg, &format!("s{u}"), 1, 3600, T0);
    }
    let _ = reg.take_changes(Vec::new());
    // The snapshot, page by page, with changes between the pages (which go to the next segment).
    let mut turn = 0u32;
    let (base, snap) = snapshot_amid_changes(dir.path(), &mut reg, |reg| {
        // Remove some, refresh some, add some, across pages already written and not yet.
        for k in 0..20u32 {
            let u = (turn * 37 + k * 13) % 700;
            let expires = if k % 3 == 0 { 0 } else { 1800 };
            register(reg, &format!("s{u}"), 2 + turn, expires, T0 + 1);
        }
        turn += 1;
        reg.take_changes(Vec::new()).into_bytes()
    });
    let loaded = load(dir.path());
    assert!(
        loaded.report.set_aside.is_empty(),
        "{:?}",
        loaded.report.set_aside
    );
    let back = restored(dir.path(), seed, T0 + 2);
    assert_eq!(state(&back), state(&reg));
    assert_eq!(back.last_seq(), reg.last_seq());
    // Cut short (no end frame): loads what it holds, and says so.
    std::fs::write(snapshot_path(dir.path(), base), &snap[..snap.len() - 8]).expect("snap");
    let loaded = load(dir.path());
    assert_eq!(loaded.report.set_aside.len(), 1);
    assert!(
        loaded.report.set_aside[0].reason.contains("end"),
        "{:?}",
        loaded.report.set_aside
    );
}

/// Random histories (several contacts per AoR, refreshes, removals of one contact and of all, short
/// expiries), with a snapshot written page by page amid them or none: replaying the journal gives what the
/// registrar held, minus what expired meanwhile, and the same as the merged reading.
#[test]
fn replaying_random_histories_gives_the_live_bindings() {
    for case in 0..32u64 {
        let dir = tempfile::tempdir().expect("tmp");
        let seed = HashSeed([case, 11, 12, 13]);
        let mut reg = Registrar::new(config(seed), Now::from_secs(T0));
        let mut rng = case.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut cseq = [1u32; 24];
        let mut now_s = T0;
        let mut turn = |reg: &mut Registrar, next: &mut dyn FnMut(u64) -> u64, now_s: u64| {
            for _ in 0..8 {
                let u = next(24) as usize;
                let contact = match next(6) {
                    0 => "*".to_string(),
                    c => format!("<sip:u{u}-{c}@192.0.2.{c}>"),
                };
                let expires = match (contact.as_str(), next(5)) {
                    ("*", _) | (_, 0) => 0,
                    // The shortest a registrar grants (--min-expires): expires after a few turns.
                    (_, 1) => 60,
                    _ => 600,
                };
                cseq[u] += 1;
                let status =
                    register_contact(reg, &format!("u{u}"), &contact, cseq[u], expires, now_s);
                assert_eq!(status, 200);
            }
            reg.take_changes(Vec::new()).into_bytes()
        };
        let before: Vec<_> = (0..6)
            .map(|_| {
                now_s += 15;
                turn(&mut reg, &mut next, now_s)
            })
            .collect();
        write_segment(dir.path(), 1, &before);
        if next(4) != 0 {
            snapshot_amid_changes(dir.path(), &mut reg, |reg| {
                now_s += 15;
                turn(reg, &mut next, now_s)
            });
        }
        let load_s = now_s + 1;
        let back = restored(dir.path(), seed, load_s);
        let mut live = state(&reg);
        for list in live.values_mut() {
            list.retain(|&(_, _, expires_at_s, _)| expires_at_s > load_s);
        }
        live.retain(|_, list| !list.is_empty());
        assert_eq!(state(&back), live, "case {case}");
        assert_eq!(back.last_seq(), reg.last_seq(), "case {case}");
    }
}

#[test]
fn blocking_snapshots_replace_older_files_and_load_back() {
    let dir = tempfile::tempdir().expect("tmp");
    let seed = HashSeed([4, 4, 4, 4]);
    let (batches, _) = history(seed);
    write_segment(dir.path(), 1, &batches);
    let reg = restored(dir.path(), seed, T0 + 20);
    write_snapshot_blocking(dir.path(), 0, 1, &reg).expect("snapshot");
    let files = load::list(dir.path()).expect("list");
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].kind, FileKind::Snapshot);
    let again = restored(dir.path(), seed, T0 + 20);
    assert_eq!(state(&again), state(&reg));
    assert_eq!(again.last_seq(), reg.last_seq());
}

#[test]
fn expired_while_down_is_dropped_and_the_next_registration_is_spread() {
    let dir = tempfile::tempdir().expect("tmp");
    let seed = HashSeed([6, 6, 6, 6]);
    let mut reg = Registrar::new(config(seed), Now::from_secs(T0));
    register(&mut reg, "short", 1, 60, T0);
    register(&mut reg, "long", 2, 3600, T0);
    write_segment(dir.path(), 1, &[reg.take_changes(Vec::new()).into_bytes()]);
    let (mut back, report, _) = replayed(&[dir.path()], &|_| true, seed, (0, 1), T0 + 120);
    assert_eq!((report.restored, report.expired), (1, 1));
    assert_eq!(back.spread_pending(), 1);
    let s = state(&back);
    assert!(s.contains_key("sip:long@example.com") && !s.contains_key("sip:short@example.com"));
    // The expiry wheel was rebuilt: "long" is armed (the wheel may look early, never late).
    let due = back.next_timeout().expect("armed");
    assert!((T0 + 120..=T0 + 3600).contains(&due), "{due}");
    // Its next registration gets at most 20% less than asked, at least 80%; the one after, all of it.
    assert_eq!(register(&mut back, "short", 2, 1000, T0 + 130), 200);
    let granted = state(&back)["sip:short@example.com"][0].2 - (T0 + 130);
    assert!((800..=1000).contains(&granted), "{granted}");
    assert_eq!(back.spread_pending(), 0);
    // CSeq checks hold across the restore: an older CSeq for the Call-ID is refused; the last REGISTER's
    // retransmission (its CSeq, from its source) is answered as one, and changes nothing.
    assert_eq!(register(&mut back, "long", 1, 3600, T0 + 130), 400);
    let _ = back.take_changes(Vec::new());
    let before = state(&back);
    assert_eq!(register(&mut back, "long", 2, 3600, T0 + 130), 200);
    assert_eq!(state(&back), before);
    assert!(back.take_changes(Vec::new()).as_bytes().is_empty());
    assert_eq!(register(&mut back, "long", 3, 3600, T0 + 130), 200);
}

#[test]
fn repartitioned_shards_each_keep_their_own_aors_and_all_of_them_together() {
    let root = tempfile::tempdir().expect("tmp");
    let seed = HashSeed([8, 8, 8, 8]);
    // Two shards' worth of history, each shard with its own AoRs and its own sequence numbers.
    let mut all = BTreeMap::new();
    for shard in 0..2usize {
        let mut reg = Registrar::new(config(seed), Now::from_secs(T0));
        reg.set_partition(shard, 2);
        for u in 0..200 {
            let aor = format!("sip:r{u}@example.com");
            let owner = crate::registrar::query::owner_of(seed, aor.as_bytes(), 2);
            if owner == shard {
                register(&mut reg, &format!("r{u}"), 1, 3600, T0);
            }
        }
        let dir = shard_dir(root.path(), shard, 2);
        write_segment(&dir, 1, &[reg.take_changes(Vec::new()).into_bytes()]);
        for (aor, b) in state(&reg) {
            all.insert(
                aor,
                b.into_iter()
                    .map(|(_, c, e, q)| (c, e, q))
                    .collect::<Vec<_>>(),
            );
        }
    }
    assert_eq!(all.len(), 200);
    let layout = Some(Layout { shards: 2, seed });
    for shards in [1usize, 3] {
        let mut union = BTreeMap::new();
        for shard in 0..shards {
            let plan = plan(root.path(), layout, shard, shards).expect("plan");
            assert!(plan.repartition);
            let keep = |aor: &[u8]| crate::registrar::query::owner_of(seed, aor, shards) == shard;
            let dirs: Vec<&Path> = plan.dirs.iter().map(|d| d.as_path()).collect();
            let (reg, _, _) = replayed(&dirs, &keep, seed, (shard, shards), T0 + 1);
            for (aor, b) in state(&reg) {
                let owner = crate::registrar::query::owner_of(seed, aor.as_bytes(), shards);
                assert_eq!(owner, shard, "{aor}");
                let prev = union.insert(
                    aor,
                    b.into_iter()
                        .map(|(_, c, e, q)| (c, e, q))
                        .collect::<Vec<_>>(),
                );
                assert!(prev.is_none());
            }
        }
        assert_eq!(union, all, "{shards} shards");
    }
}

#[test]
fn the_layout_file_round_trips_and_other_versions_are_refused() {
    let root = tempfile::tempdir().expect("tmp");
    let layout = Layout {
        shards: 3,
        seed: HashSeed([1, u64::MAX, 0, 42]),
    };
    layout.store(root.path()).expect("store");
    let dir = DataDir::open(root.path()).expect("open");
    assert_eq!(dir.previous, Some(layout));
    assert_eq!(dir.seed(), layout.seed);
    // A second process cannot take the same directory.
    let err = DataDir::open(root.path()).expect_err("locked");
    assert!(matches!(err, JournalError::Locked { .. }), "{err}");
    drop(dir);
    let text = std::fs::read_to_string(root.path().join("LAYOUT")).expect("read");
    std::fs::write(
        root.path().join("LAYOUT"),
        text.replace("version 1", "version 2"),
    )
    .expect("write");
    let err = DataDir::open(root.path()).expect_err("refused");
    assert!(
        err.to_string().contains("LAYOUT") && err.to_string().contains("version 2"),
        "{err}"
    );
}

#[test]
fn a_crafted_journal_cannot_overfill_an_aor_or_bind_for_ever() {
    use crate::registrar::changes::{BindingFields, ChangeKind, ChangeLog};
    let dir = tempfile::tempdir().expect("tmp");
    let seed = HashSeed([7, 7, 7, 7]);
    let mut log = ChangeLog::default();
    let source = "192.0.2.1:5060".parse().expect("addr");
    for id in 0..2000u32 {
        let contact = format!("<sip:c{id}@192.0.2.1>");
        let fields = BindingFields {
            id,
            // One that would never expire.
            expires_at_s: if id == 0 { u64::MAX } else { T0 + 3600 },
            updated_at_s: T0,
            cseq: 1,
            q: None,
            reg_id: None,
            source,
            contact: contact.as_bytes(),
            call_id: b"crafted",
            path: b"",
            instance: b"",
            user_agent: b"",
        };
        log.record(
            ChangeKind::Registered,
            b"sip:victim@example.com",
            T0,
            &fields,
        );
    }
    write_segment(dir.path(), 1, &[log.take(Vec::new()).into_bytes()]);
    let started = std::time::Instant::now();
    let loaded = load(dir.path());
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(loaded.binding_count(), 256);
    assert_eq!(loaded.dropped, 2000 - 256);
    let mut reference = Registrar::new(config(seed), Now::from_secs(T0 + 10));
    let expected = restore(&loaded, &mut reference, Now::from_secs(T0 + 10));
    let started = std::time::Instant::now();
    let (reg, report, _) = replayed(&[dir.path()], &|_| true, seed, (0, 1), T0 + 10);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(report, expected);
    assert_eq!(report.dropped, 2000 - 256);
    // --max-contacts (10) holds after a restore too.
    assert_eq!(report.restored, 10);
    assert_eq!(report.refused, 256 - 10);
    let longest = T0 + 10 + u64::from(RegistrarConfig::default().max_expires_s);
    assert!(reg.store().iter().all(|(_, b)| b.expires_at_s <= longest));
}
