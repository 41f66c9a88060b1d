//! Reading a shard's journal back: the newest snapshot, then the segments after it, record by record into
//! a [`Sink`] (at start-up, the registrar itself: [`Replay`]); damage found on the way is noted, to be set
//! aside ([`SetAside::apply`]).
//!
//! Loading only reads: several shards may load the same directory at once (after a change of shard count).
//! What it found damaged is moved aside afterwards, by one of them.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::format::{FileHeader, FileKind, FrameReader, HeaderError, ReadError, HEADER_BYTES};
use super::{JournalError, SEGMENT_PREFIX, SEGMENT_SUFFIX, SNAPSHOT_PREFIX, SNAPSHOT_SUFFIX};
use crate::registrar::changes::{records, Change};
use crate::registrar::register::MAX_CONTACTS_PER_AOR;
use crate::registrar::replay::Replay;

/// Where the records read go, in file order: each snapshot entry, then each change of the segments.
pub trait Sink {
    /// `raw` is the record as stored (the bytes `change` was decoded from).
    fn apply(&mut self, change: &Change<'_>, raw: &[u8], snapshot: bool);
}

impl Sink for Replay<'_> {
    fn apply(&mut self, change: &Change<'_>, _raw: &[u8], snapshot: bool) {
        Replay::apply(self, change, snapshot);
    }
}

/// What reading found, whatever the records went into.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// The highest sequence number read (0: none).
    pub last_seq: u64,
    /// Records (and snapshot entries) read.
    pub records: u64,
    /// Damage found, to be moved aside.
    pub set_aside: Vec<SetAside>,
    /// Files read, with their bytes.
    pub files: usize,
    pub bytes: u64,
}

/// An AoR's state as the journal tells it: its version (the sequence number of the last change applied to
/// it) and its bindings, each by its id with its last record.
#[derive(Debug, Default)]
pub struct AorState {
    pub version: u64,
    pub bindings: Vec<(u32, Box<[u8]>)>,
}

/// The journal merged per AoR in a map: the reference reading, with the same rules as [`Replay`] written
/// the plain way (the tests and the fuzz target check the replay against it; `super::restore` puts it into
/// a registrar).
#[derive(Debug, Default)]
pub struct Loaded {
    pub aors: hashbrown::HashMap<Box<[u8]>, AorState, ahash::RandomState>,
    /// Records dropped because their AoR already held the most bindings an AoR can.
    pub dropped: u64,
    pub report: LoadReport,
}

impl Loaded {
    /// Reads one shard directory in (see [`load_dir`]).
    pub fn read(&mut self, dir: &Path, keep: &dyn Fn(&[u8]) -> bool) -> Result<(), JournalError> {
        let mut report = std::mem::take(&mut self.report);
        let result = load_dir(dir, keep, &mut report, self);
        self.report = report;
        result
    }

    /// Bindings loaded (expired ones included).
    pub fn binding_count(&self) -> usize {
        self.aors.values().map(|a| a.bindings.len()).sum()
    }

    /// Every binding loaded, decoded: the AoR and the record.
    pub fn bindings(&self) -> impl Iterator<Item = (&[u8], Change<'_>)> + '_ {
        self.aors.iter().flat_map(|(aor, state)| {
            state.bindings.iter().filter_map(move |(_, rec)| {
                let change = records(rec).next()?.ok()?;
                Some((&aor[..], change))
            })
        })
    }
}

impl Sink for Loaded {
    fn apply(&mut self, c: &Change<'_>, raw: &[u8], snapshot: bool) {
        let state = self.aors.entry_ref(c.aor).or_default();
        // A snapshot entry carries the sequence number its AoR was read at (several entries may share it);
        // a change applies only when it is newer than what the AoR already reflects.
        if snapshot {
            state.version = state.version.max(c.seq);
        } else if c.seq <= state.version {
            return;
        } else {
            state.version = c.seq;
        }
        let id = c.binding.id;
        let slot = state.bindings.iter().position(|(i, _)| *i == id);
        match (c.kind.is_removal(), slot) {
            (false, Some(i)) => state.bindings[i].1 = raw.into(),
            // An AoR never holds more than this: a file that says otherwise is crafted, and each record
            // then costs a bounded search.
            (false, None) if state.bindings.len() >= MAX_CONTACTS_PER_AOR => self.dropped += 1,
            (false, None) => state.bindings.push((id, raw.into())),
            (true, Some(i)) => {
                state.bindings.swap_remove(i);
            }
            (true, None) => {}
        }
    }
}

/// About how many records the journal files in `dirs` hold (from their sizes: a record takes ~200 bytes),
/// to size the AoR index before loading. Unreadable directories count as empty.
pub fn estimate_records(dirs: &[PathBuf]) -> usize {
    let bytes: u64 = dirs
        .iter()
        .filter_map(|d| list(d).ok())
        .flatten()
        .filter_map(|e| std::fs::metadata(&e.path).ok())
        .map(|m| m.len())
        .sum();
    usize::try_from(bytes / 200).unwrap_or(usize::MAX)
}

/// A part of a file found damaged: from `offset` to its end (0: the whole file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAside {
    pub path: PathBuf,
    pub offset: u64,
    pub bytes: u64,
    /// Records that still read whole in the part (lost with it).
    pub records_after: u64,
    pub reason: String,
}

impl SetAside {
    /// Moves the part aside, beside the file, as `<file>.corrupt-<n>`; the file keeps its good prefix. Logs
    /// a warning saying what was lost.
    pub fn apply(&self) -> Result<PathBuf, JournalError> {
        let io = |source| JournalError::Io {
            path: self.path.clone(),
            source,
        };
        let aside = free_name(&self.path);
        if self.offset == 0 {
            std::fs::rename(&self.path, &aside).map_err(io)?;
        } else {
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&self.path)
                .map_err(io)?;
            file.seek(SeekFrom::Start(self.offset)).map_err(io)?;
            let mut rest = Vec::new();
            Read::read_to_end(&mut file, &mut rest).map_err(io)?;
            let mut out = File::create(&aside).map_err(io)?;
            out.write_all(&rest).map_err(io)?;
            out.sync_all().map_err(io)?;
            file.set_len(self.offset).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        if let Some(dir) = self.path.parent() {
            super::sync_dir(dir)?;
        }
        tracing::warn!(
            file = %self.path.display(),
            offset = self.offset,
            bytes = self.bytes,
            records_lost = self.records_after,
            moved_to = %aside.display(),
            "journal damaged ({}): kept the {} bytes before it, set {} bytes aside; {} records in them \
             still read whole and are lost, besides the damaged one(s)",
            self.reason,
            self.offset,
            self.bytes,
            self.records_after,
        );
        Ok(aside)
    }
}

/// `<file>.corrupt-<n>` with the first n not taken.
fn free_name(path: &Path) -> PathBuf {
    let mut n = 1u32;
    loop {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".corrupt-{n}"));
        let candidate = PathBuf::from(name);
        if !candidate.exists() || n == u32::MAX {
            return candidate;
        }
        n += 1;
    }
}

/// A journal file found in a directory, by its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: PathBuf,
    pub kind: FileKind,
    pub base: u64,
}

/// The segments and snapshots of a directory, each list in base order. Other files are ignored.
pub fn list(dir: &Path) -> Result<Vec<Entry>, JournalError> {
    let io = |source| JournalError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(io(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let parsed = parse_name(name, SEGMENT_PREFIX, SEGMENT_SUFFIX)
            .map(|b| (FileKind::Segment, b))
            .or_else(|| {
                parse_name(name, SNAPSHOT_PREFIX, SNAPSHOT_SUFFIX).map(|b| (FileKind::Snapshot, b))
            });
        if let Some((kind, base)) = parsed {
            found.push(Entry {
                path: entry.path(),
                kind,
                base,
            });
        }
    }
    found.sort_by_key(|e| (e.kind as u8, e.base));
    Ok(found)
}

fn parse_name(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Loads one shard directory into `sink`, keeping the AoRs `keep` accepts. Damage is noted in
/// `into.set_aside`; a file of an unknown format version is an error (it may be a newer corereg's).
pub fn load_dir(
    dir: &Path,
    keep: &dyn Fn(&[u8]) -> bool,
    into: &mut LoadReport,
    sink: &mut dyn Sink,
) -> Result<(), JournalError> {
    let entries = list(dir)?;
    let (snapshots, segments): (Vec<_>, Vec<_>) = entries
        .into_iter()
        .partition(|e| e.kind == FileKind::Snapshot);
    // The newest snapshot whose header reads; older ones are left for the writer to delete.
    let mut last: Option<u64> = None;
    for snap in snapshots.iter().rev() {
        let Some(header) = open_header(snap, into)? else {
            continue;
        };
        if header.kind != FileKind::Snapshot {
            note_whole(into, &snap.path, "not a snapshot");
            continue;
        }
        read_frames(&snap.path, true, &mut None, keep, into, sink)?;
        last = Some(header.base_seq);
        break;
    }
    let mut gap = false;
    for seg in &segments {
        if gap {
            note_whole(into, &seg.path, "after a gap in the sequence numbers");
            continue;
        }
        let Some(header) = open_header(seg, into)? else {
            continue;
        };
        if header.kind != FileKind::Segment || header.base_seq != seg.base {
            note_whole(into, &seg.path, "header does not match the file name");
            continue;
        }
        if let Some(l) = last {
            if header.base_seq > l + 1 {
                gap = true;
                note_whole(
                    into,
                    &seg.path,
                    &format!(
                        "sequence numbers {} to {} are missing",
                        l + 1,
                        header.base_seq - 1
                    ),
                );
                continue;
            }
        } else {
            last = Some(header.base_seq.saturating_sub(1));
        }
        read_frames(&seg.path, false, &mut last, keep, into, sink)?;
    }
    Ok(())
}

fn note_whole(into: &mut LoadReport, path: &Path, reason: &str) {
    let bytes = std::fs::metadata(path).map_or(0, |m| m.len());
    let records_after = count_records(path, HEADER_BYTES as u64, false);
    into.set_aside.push(SetAside {
        path: path.to_owned(),
        offset: 0,
        bytes,
        records_after,
        reason: reason.to_owned(),
    });
}

/// The file's header; None (and noted) when damaged; an error when of an unknown version.
fn open_header(entry: &Entry, into: &mut LoadReport) -> Result<Option<FileHeader>, JournalError> {
    let mut head = [0u8; HEADER_BYTES];
    let read = File::open(&entry.path).and_then(|mut f| {
        let mut n = 0;
        while n < HEADER_BYTES {
            match f.read(&mut head[n..])? {
                0 => break,
                k => n += k,
            }
        }
        Ok(n)
    });
    let n = read.map_err(|source| JournalError::Io {
        path: entry.path.clone(),
        source,
    })?;
    match FileHeader::decode(&head[..n]) {
        Ok(h) => Ok(Some(h)),
        Err(e @ HeaderError::UnknownVersion(_)) => Err(JournalError::UnknownVersion {
            path: entry.path.clone(),
            message: e.to_string(),
        }),
        Err(e) => {
            note_whole(into, &entry.path, &e.to_string());
            Ok(None)
        }
    }
}

/// Reads a file's frames, applying their records. A segment's records must follow `last` without a gap
/// (`last` is updated); a snapshot's are taken as they come and must end with the end frame.
fn read_frames(
    path: &Path,
    snapshot: bool,
    last: &mut Option<u64>,
    keep: &dyn Fn(&[u8]) -> bool,
    into: &mut LoadReport,
    sink: &mut dyn Sink,
) -> Result<(), JournalError> {
    let io = |source| JournalError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    file.seek(SeekFrom::Start(HEADER_BYTES as u64))
        .map_err(io)?;
    into.files += 1;
    into.bytes += len;
    let mut reader = FrameReader::new(BufReader::with_capacity(1 << 20, file), HEADER_BYTES as u64);
    let mut ended = false;
    let end = loop {
        let frame_start = reader.offset;
        let payload = match reader.next_frame() {
            None => {
                break if snapshot && !ended {
                    Err("snapshot cut short (no end frame)".to_string())
                } else {
                    Ok(())
                }
            }
            Some(Ok(p)) => p,
            Some(Err(ReadError::Io(source))) => return Err(io(source)),
            Some(Err(ReadError::Frame(e))) => break Err(e.to_string()),
        };
        if ended {
            break Err("data after the end of the snapshot".to_string());
        }
        if payload.is_empty() {
            // The end of a snapshot; in a segment, an empty frame means nothing.
            ended |= snapshot;
            continue;
        }
        // Check the whole frame before applying any of it: a frame is one write.
        let mut expect = last.map(|l| l + 1);
        let mut bad = None;
        let mut decoded = Vec::with_capacity(64);
        let mut at = 0;
        for rec in records(payload) {
            let c = match rec {
                Err(e) => {
                    bad = Some(e.to_string());
                    break;
                }
                Ok(c) => c,
            };
            let rec_len =
                4 + u32::from_le_bytes(payload[at..at + 4].try_into().unwrap_or_default()) as usize;
            let range = at..at + rec_len;
            at += rec_len;
            if !snapshot {
                match expect {
                    Some(next) if c.seq > next => {
                        bad = Some(format!("sequence number {} where {next} was due", c.seq));
                        break;
                    }
                    Some(next) if c.seq == next => expect = Some(next + 1),
                    Some(_) => {}
                    None => expect = Some(c.seq + 1),
                }
            }
            decoded.push((c, range));
        }
        if let Some(reason) = bad {
            // The damage starts at the frame.
            reader.offset = frame_start;
            break Err(reason);
        }
        for (c, range) in decoded {
            if !snapshot {
                match *last {
                    Some(l) if c.seq <= l => continue,
                    _ => *last = Some(c.seq),
                }
            }
            into.records += 1;
            into.last_seq = into.last_seq.max(c.seq);
            if keep(c.aor) {
                sink.apply(&c, &payload[range], snapshot);
            }
        }
    };
    if let Err(reason) = end {
        let offset = reader.offset;
        into.set_aside.push(SetAside {
            path: path.to_owned(),
            offset,
            bytes: len.saturating_sub(offset),
            records_after: count_records(path, offset, true),
            reason,
        });
    }
    Ok(())
}

/// Records in the frames that still read whole from `offset` on (past the damaged frame first when
/// `skip_damaged` and its declared length fits the file): how much a warning says was lost. Best effort.
fn count_records(path: &Path, offset: u64, skip_damaged: bool) -> u64 {
    let Ok(mut file) = File::open(path) else {
        return 0;
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let mut at = offset;
    if skip_damaged {
        let mut head = [0u8; 8];
        if file.seek(SeekFrom::Start(at)).is_err() || file.read_exact(&mut head).is_err() {
            return 0;
        }
        let declared = u64::from(u32::from_le_bytes([head[0], head[1], head[2], head[3]]));
        at = at.saturating_add(8).saturating_add(declared);
        if at >= len {
            return 0;
        }
    }
    if file.seek(SeekFrom::Start(at)).is_err() {
        return 0;
    }
    let mut reader = FrameReader::new(BufReader::new(file), at);
    let mut count = 0;
    while let Some(Ok(p)) = reader.next_frame() {
        count += records(p).flatten().count() as u64;
    }
    count
}
