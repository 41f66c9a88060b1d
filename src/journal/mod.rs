//! The journal: every binding change a shard makes, on disk, so that a restart (or a crash, or a power cut)
//! loses nothing that was acknowledged.
//!
//! # The data directory
//!
//! ```text
//! DIR/lock                         held (flock) by the running corereg: one process per directory
//! DIR/LAYOUT                       shard count and AoR hash seed of the data below (text, versioned)
//! DIR/shard-<i>-of-<n>/            one per shard
//!     seg-<base>.log               segment: the changes from sequence number <base> on (20 digits)
//!     snap-<base>.snap             snapshot: the live bindings, every change up to <base> included
//!     *.corrupt-<k>                damaged parts set aside at start-up (never read again)
//! ```
//!
//! Each file starts with a header and holds CRC-framed payloads ([`format`]); a payload is change records
//! in the change stream's format ([`crate::registrar::changes`]). A shard appends each turn's changes as
//! one frame to its current segment. A snapshot is written while the shard serves, AoR page by AoR page,
//! each entry carrying the shard's sequence number when its page was read; it starts at the first sequence
//! number of a new segment, so once it is complete every older segment and snapshot can go.
//!
//! # Loading
//!
//! The newest snapshot, then the segments in order: a change is applied to an AoR when its sequence number
//! is above the AoR's version (the snapshot entry's number, or the last change applied), so the changes made
//! while the snapshot was written are applied once. The sequence numbers must follow one another: the first
//! damaged frame (bad CRC, cut short, a length over the bound, a record that does not decode, a gap) ends
//! what is loaded; the rest of that file, and any later file that does not continue without a gap, is moved
//! aside ([`load::SetAside`]). A file of another format version stops start-up with its name.
//!
//! The AoR hash seed (which also picks each AoR's shard) is kept in `LAYOUT`, so a restart with the same
//! shard count finds every AoR in its shard's directory. With another count, each shard reads every old
//! directory and keeps the AoRs it now owns, writes a snapshot, and once all have, `LAYOUT` is rewritten
//! and the old directories removed: a crash half-way leaves the old layout in force.

pub mod format;
pub mod load;

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::registrar::bindings::HashSeed;
use crate::registrar::changes::{encode_record, records, ChangeKind};
use crate::registrar::{Now, Registrar};
use format::{FileHeader, FileKind};

pub const SEGMENT_PREFIX: &str = "seg-";
pub const SEGMENT_SUFFIX: &str = ".log";
pub const SNAPSHOT_PREFIX: &str = "snap-";
pub const SNAPSHOT_SUFFIX: &str = ".snap";
const LAYOUT_FILE: &str = "LAYOUT";
const LOCK_FILE: &str = "lock";
const LAYOUT_MAGIC: &str = "corereg journal layout";
/// The `LAYOUT` format this build reads and writes.
pub const LAYOUT_VERSION: u32 = 1;
/// AoRs per snapshot page: the bound of one step of a snapshot (the shard serves between pages).
pub const SNAPSHOT_PAGE_AORS: usize = 256;

#[derive(Debug, Error)]
pub enum JournalError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    UnknownVersion { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    BadLayout { path: PathBuf, message: String },
    #[error(
        "data directory {path} is in use by another corereg process (its lock file is held); give each \
         process its own --data-dir"
    )]
    Locked { path: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_owned(),
        source,
    }
}

/// fsyncs a directory, so that the files created, renamed or removed in it stay so after a power cut.
pub fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// The directory of shard `shard` of `shards`.
pub fn shard_dir(root: &Path, shard: usize, shards: usize) -> PathBuf {
    root.join(format!("shard-{shard}-of-{shards}"))
}

pub fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{SEGMENT_PREFIX}{base:020}{SEGMENT_SUFFIX}"))
}

pub fn snapshot_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{SNAPSHOT_PREFIX}{base:020}{SNAPSHOT_SUFFIX}"))
}

/// What `LAYOUT` says: the shard count and the hash seed the data was written with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub shards: usize,
    pub seed: HashSeed,
}

impl Layout {
    fn encode(&self) -> String {
        let [a, b, c, d] = self.seed.0;
        format!(
            "{LAYOUT_MAGIC}\nversion {LAYOUT_VERSION}\nshards {}\nseed {a:016x}{b:016x}{c:016x}{d:016x}\n",
            self.shards
        )
    }

    fn decode(path: &Path, text: &str) -> Result<Layout, JournalError> {
        let bad = |message: String| JournalError::BadLayout {
            path: path.to_owned(),
            message,
        };
        let mut lines = text.lines();
        if lines.next() != Some(LAYOUT_MAGIC) {
            return Err(bad(format!(
                "not a corereg layout file (first line is not {LAYOUT_MAGIC:?})"
            )));
        }
        let mut field = |name: &str| {
            lines
                .next()
                .and_then(|l| l.strip_prefix(name))
                .and_then(|l| l.strip_prefix(' '))
                .map(str::trim)
                .ok_or_else(|| bad(format!("no {name:?} line")))
        };
        let version = field("version")?;
        if version != LAYOUT_VERSION.to_string() {
            return Err(JournalError::UnknownVersion {
                path: path.to_owned(),
                message: format!(
                    "journal layout version {version}, this build reads version {LAYOUT_VERSION} only: use the \
                     corereg release that wrote it, or move the data directory away"
                ),
            });
        }
        let shards: usize = field("shards")?
            .parse()
            .ok()
            .filter(|&n| (1..=crate::config::MAX_CPU).contains(&n))
            .ok_or_else(|| bad("bad shard count".into()))?;
        let hex = field("seed")?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("the seed is not 64 hex digits".into()));
        }
        let mut seed = [0u64; 4];
        for (i, s) in seed.iter_mut().enumerate() {
            *s = u64::from_str_radix(&hex[i * 16..i * 16 + 16], 16)
                .map_err(|e| bad(format!("seed: {e}")))?;
        }
        Ok(Layout {
            shards,
            seed: HashSeed(seed),
        })
    }

    /// Writes `LAYOUT` atomically (a new file, synced, renamed over the old one, the directory synced).
    pub fn store(&self, root: &Path) -> Result<(), JournalError> {
        let path = root.join(LAYOUT_FILE);
        let tmp = root.join(format!("{LAYOUT_FILE}.tmp"));
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(self.encode().as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
        sync_dir(root)
    }
}

/// The data directory, locked for this process while it lives.
#[derive(Debug)]
pub struct DataDir {
    pub root: PathBuf,
    /// `LAYOUT` as found (None: a new directory).
    pub previous: Option<Layout>,
    _lock: nix::fcntl::Flock<File>,
}

impl DataDir {
    /// Creates the directory when missing (mode 0700), takes its lock, reads `LAYOUT`.
    pub fn open(root: &Path) -> Result<DataDir, JournalError> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(io_err(root))?;
        // Absolute from here on: glommio opens files and directories relative to no directory of ours.
        let root = &std::fs::canonicalize(root).map_err(io_err(root))?;
        let lock_path = root.join(LOCK_FILE);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        let lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|_| JournalError::Locked {
                path: root.to_owned(),
            })?;
        let layout_path = root.join(LAYOUT_FILE);
        let previous = match File::open(&layout_path) {
            Ok(mut f) => {
                let mut text = String::new();
                // A layout file is a few lines: never read more than a page of it.
                Read::by_ref(&mut f)
                    .take(4096)
                    .read_to_string(&mut text)
                    .map_err(io_err(&layout_path))?;
                Some(Layout::decode(&layout_path, &text)?)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&layout_path)(e)),
        };
        Ok(DataDir {
            root: root.to_owned(),
            previous,
            _lock: lock,
        })
    }

    /// The hash seed to run with: the data's, or a new one for a new directory.
    pub fn seed(&self) -> HashSeed {
        self.previous.map_or_else(HashSeed::random, |l| l.seed)
    }
}

/// The shard directories under `root` of any shard count (for a directory whose `LAYOUT` is missing).
pub fn all_shard_dirs(root: &Path) -> Result<Vec<PathBuf>, JournalError> {
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(root).map_err(io_err(root))? {
        let entry = entry.map_err(io_err(root))?;
        let name = entry.file_name();
        if name.to_str().is_some_and(|n| {
            n.strip_prefix("shard-")
                .and_then(|n| n.split_once("-of-"))
                .is_some_and(|(i, n)| i.parse::<usize>().is_ok() && n.parse::<usize>().is_ok())
        }) && entry.path().is_dir()
        {
            dirs.push(entry.path());
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// Where a shard's start-up reads from.
#[derive(Debug)]
pub struct LoadPlan {
    /// Directories to read.
    pub dirs: Vec<PathBuf>,
    /// True when the data is re-partitioned (another shard count, or no `LAYOUT`): keep only the AoRs this
    /// shard owns, write a snapshot, and switch the layout once every shard has.
    pub repartition: bool,
}

/// What shard `shard` of `shards` loads, given the layout found.
pub fn plan(
    root: &Path,
    previous: Option<Layout>,
    shard: usize,
    shards: usize,
) -> Result<LoadPlan, JournalError> {
    Ok(match previous {
        Some(l) if l.shards == shards => LoadPlan {
            dirs: vec![shard_dir(root, shard, shards)],
            repartition: false,
        },
        Some(l) => LoadPlan {
            dirs: (0..l.shards)
                .map(|i| shard_dir(root, i, l.shards))
                .collect(),
            repartition: true,
        },
        None => LoadPlan {
            dirs: all_shard_dirs(root)?,
            repartition: true,
        },
    })
}

/// What restoring the journal into a registrar did.
pub use crate::registrar::replay::ReplayReport as RestoreReport;

/// Restores what [`load::Loaded`] gathered into `registrar` (a fresh one), then continues its change log
/// after the last sequence number loaded. The plain way, one AoR at a time: start-up replays the journal
/// instead ([`Registrar::replay`]); this is its reference.
pub fn restore(loaded: &load::Loaded, registrar: &mut Registrar, now: Now) -> RestoreReport {
    use crate::registrar::RestoreOutcome;
    let mut report = RestoreReport {
        dropped: usize::try_from(loaded.dropped).unwrap_or(usize::MAX),
        ..RestoreReport::default()
    };
    registrar.reserve_restore(loaded.aors.len());
    let mut fields = Vec::new();
    for (aor, state) in &loaded.aors {
        fields.clear();
        fields.extend(
            state
                .bindings
                .iter()
                .filter_map(|(_, rec)| records(rec).next()?.ok().map(|c| c.binding)),
        );
        registrar.restore_aor(aor, &fields, now, |outcome| match outcome {
            RestoreOutcome::Restored => report.restored += 1,
            RestoreOutcome::Renumbered => {
                report.restored += 1;
                report.renumbered += 1;
            }
            RestoreOutcome::Expired => report.expired += 1,
            RestoreOutcome::NotOwned => report.not_owned += 1,
            RestoreOutcome::Refused => report.refused += 1,
        });
    }
    registrar.finish_restore(loaded.report.last_seq);
    report
}

/// Encodes one page of a snapshot: the bindings of at most [`SNAPSHOT_PAGE_AORS`] AoRs from arena cursor
/// `from`, each as a `registered` record carrying the registrar's current sequence number. Returns the next
/// cursor (None: the last page).
pub fn snapshot_page(registrar: &Registrar, from: usize, out: &mut Vec<u8>) -> Option<usize> {
    let store = registrar.store();
    let seq = registrar.last_seq();
    let mut aors = store.aors_from(from);
    for _ in 0..SNAPSHOT_PAGE_AORS {
        let rec = aors.next()?;
        let name = store.aor_name(rec).unwrap_or_default();
        for (idx, b) in store.bindings_of(rec) {
            encode_record(
                out,
                ChangeKind::Registered,
                seq,
                name,
                b.updated_at_s,
                &b.fields(idx),
            );
        }
    }
    aors.next().map(|rec| rec as usize)
}

/// Writes a complete snapshot of `registrar` into `dir` with blocking I/O (start-up only), then removes
/// every other segment and snapshot of `dir`. Returns its size in bytes.
pub fn write_snapshot_blocking(
    dir: &Path,
    shard: usize,
    shards: usize,
    registrar: &Registrar,
) -> Result<u64, JournalError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let base = registrar.last_seq();
    let path = snapshot_path(dir, base);
    let tmp = path.with_extension("snap.tmp");
    let mut file =
        std::io::BufWriter::with_capacity(1 << 20, File::create(&tmp).map_err(io_err(&tmp))?);
    let header = FileHeader {
        kind: FileKind::Snapshot,
        shard: shard as u32,
        shards: shards as u32,
        base_seq: base,
    };
    file.write_all(&header.encode()).map_err(io_err(&tmp))?;
    let mut bytes = format::HEADER_BYTES as u64;
    let mut page = Vec::new();
    let mut frame = Vec::new();
    let mut cursor = Some(0);
    while let Some(from) = cursor {
        page.clear();
        frame.clear();
        cursor = snapshot_page(registrar, from, &mut page);
        format::push_records(&mut frame, &page, format::MAX_FRAME_BYTES);
        file.write_all(&frame).map_err(io_err(&tmp))?;
        bytes += frame.len() as u64;
    }
    frame.clear();
    format::push_end(&mut frame);
    file.write_all(&frame).map_err(io_err(&tmp))?;
    bytes += frame.len() as u64;
    let file = file
        .into_inner()
        .map_err(|e| io_err(&tmp)(e.into_error()))?;
    file.sync_all().map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    sync_dir(dir)?;
    remove_older(dir, &path)?;
    Ok(bytes)
}

/// Removes every segment and snapshot of `dir` but `keep` (and segments from `keep`'s base on, when `keep`
/// is a segment... only snapshots and segments before it are removed).
pub fn remove_older(dir: &Path, keep: &Path) -> Result<(), JournalError> {
    let keep_base = load::list(dir)?
        .into_iter()
        .find(|e| e.path == keep)
        .map_or(0, |e| e.base);
    for e in load::list(dir)? {
        let older = match e.kind {
            FileKind::Snapshot => e.path != keep,
            // Segments whose changes the snapshot holds: those before its base + 1.
            FileKind::Segment => e.base <= keep_base,
        };
        if older {
            std::fs::remove_file(&e.path).map_err(io_err(&e.path))?;
        }
    }
    sync_dir(dir)
}

/// Removes the journal files of a retired shard directory (after a re-partition), and the directory when
/// nothing else is left in it (parts set aside stay, for an operator to look at).
pub fn retire_dir(dir: &Path) -> Result<(), JournalError> {
    for e in load::list(dir)? {
        std::fs::remove_file(&e.path).map_err(io_err(&e.path))?;
    }
    let _ = std::fs::remove_file(dir.join("lock"));
    // Fails when something is left: that is fine.
    let _ = std::fs::remove_dir(dir);
    if let Some(root) = dir.parent() {
        sync_dir(root)?;
    }
    Ok(())
}

/// Removes what a snapshot cut short by a stop or a crash left (`*.tmp`): never read, never complete.
pub fn remove_temporaries(dir: &Path) -> Result<(), JournalError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.ends_with(".tmp"))
        {
            std::fs::remove_file(entry.path()).map_err(io_err(&entry.path()))?;
        }
    }
    Ok(())
}

/// Removes every journal file of `dir` (a leftover of a re-partition that did not complete: the old layout
/// is still in force, so these files hold nothing acknowledged).
pub fn clear_dir(dir: &Path) -> Result<(), JournalError> {
    for e in load::list(dir)? {
        std::fs::remove_file(&e.path).map_err(io_err(&e.path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
