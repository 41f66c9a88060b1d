//! The shard's journal writer: each turn's binding changes become one frame of the shard's current
//! segment; the replies of that turn wait until the frame is written (and, with `--fsync always`,
//! fdatasync'ed). One task per shard ([`commit_loop`]) writes whatever arrived while the previous write
//! was in flight with one write and one fdatasync (group commit), through glommio's file API on the shard's
//! own executor: no thread is shared, nothing is locked.
//!
//! - Start-up ([`start`]): load the shard's journal (or, after a change of shard count, every old shard's),
//!   restore it into the registrar, set damage aside, and open a new segment after the last sequence number
//!   loaded. The shard reports ready only after this.
//! - Replies: [`Journal::hold`] keeps a reply while any change recorded before it is not yet written; the
//!   commit loop sends it once it is.
//! - Errors: a failed write (full disk, file size limit) is retried from the same offset, with back-off;
//!   meanwhile the registrar answers REGISTERs that would change bindings with 503, and replies already
//!   held wait. A failed fdatasync makes the data since the last good one suspect: it is written again into
//!   a new segment.
//! - Snapshots: when the segments hold more than `--snapshot-ratio` times the live data, the loop starts a
//!   new segment and a snapshot task writes the live bindings page by page while the shard serves; once
//!   complete and durable, older segments and snapshots are removed.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use corereg_udp::SendBatch;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::io::{BufferedFile, Directory, OpenOptions};
use glommio::net::UdpSocket;

use super::udp::{send_batch, REPLY_CAPACITY};
use super::ShardReport;
use crate::config::{FsyncMode, JournalSettings};
use crate::journal::format::{self, FileHeader, FileKind, MAX_FRAME_BYTES};
use crate::journal::load::{estimate_records, load_dir, LoadReport};
use crate::journal::{self, JournalError, Layout, RestoreReport};
use crate::registrar::bindings::HashSeed;
use crate::registrar::query::owner_of;
use crate::registrar::Registrar;

/// What a shard needs to run its journal; built by `main`.
#[derive(Debug)]
pub struct JournalSpec {
    pub root: PathBuf,
    /// `LAYOUT` as found at start-up (None: a new directory).
    pub previous: Option<Layout>,
    pub seed: HashSeed,
    pub shards: usize,
    pub settings: JournalSettings,
    /// Start-up steps every shard takes together (re-partitioning).
    pub sync: Arc<StartupSync>,
}

/// A barrier for the shards' start-up that a failing shard releases: then every shard's wait fails, so
/// none waits for one that will never come.
#[derive(Debug)]
pub struct StartupSync {
    state: Mutex<SyncState>,
    cv: Condvar,
    parties: usize,
}

#[derive(Debug, Default)]
struct SyncState {
    arrived: usize,
    generation: u64,
    failed: bool,
}

impl StartupSync {
    pub fn new(parties: usize) -> Self {
        StartupSync {
            state: Mutex::new(SyncState::default()),
            cv: Condvar::new(),
            parties: parties.max(1),
        }
    }

    /// Waits for every shard; Ok(true) for exactly one of them (the leader); Err when a shard failed.
    pub fn wait(&self) -> Result<bool, PeerFailed> {
        let mut s = self.state.lock().map_err(|_| PeerFailed)?;
        if s.failed {
            return Err(PeerFailed);
        }
        s.arrived += 1;
        if s.arrived == self.parties {
            s.arrived = 0;
            s.generation += 1;
            self.cv.notify_all();
            return Ok(true);
        }
        let generation = s.generation;
        while s.generation == generation && !s.failed {
            s = self.cv.wait(s).map_err(|_| PeerFailed)?;
        }
        if s.failed {
            Err(PeerFailed)
        } else {
            Ok(false)
        }
    }

    /// This shard failed its start-up: every wait, now and later, fails.
    pub fn fail(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.failed = true;
        }
        self.cv.notify_all();
    }
}

/// Another shard failed its start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerFailed;

fn stopped_peer(_: PeerFailed) -> JournalError {
    JournalError::Io {
        path: PathBuf::new(),
        source: std::io::Error::other("another shard failed its start-up"),
    }
}

/// What start-up loaded.
#[derive(Debug)]
pub struct Started {
    pub report: RestoreReport,
    pub loaded_records: u64,
    pub loaded_bytes: u64,
    /// The shard's directory, and the base of the segment to open.
    pub dir: PathBuf,
    pub next_seq: u64,
    pub snapshot_bytes: u64,
    pub took: Duration,
}

/// Loads and restores this shard's bindings (blocking: before the shard serves).
pub fn start(
    spec: &JournalSpec,
    shard: usize,
    registrar: &mut Registrar,
) -> Result<Started, JournalError> {
    let result = start_inner(spec, shard, registrar);
    if result.is_err() {
        spec.sync.fail();
    }
    result
}

fn start_inner(
    spec: &JournalSpec,
    shard: usize,
    registrar: &mut Registrar,
) -> Result<Started, JournalError> {
    let begun = Instant::now();
    let shards = spec.shards;
    let plan = journal::plan(&spec.root, spec.previous, shard, shards)?;
    let seed = spec.seed;
    let keep_all = |_: &[u8]| true;
    let keep_owned = |aor: &[u8]| owner_of(seed, aor, shards) == shard;
    // Ownership is checked even in the shard's own directory: a file moved there from another shard's
    // cannot put an AoR on a shard that does not own it.
    let keep: &dyn Fn(&[u8]) -> bool = if plan.repartition || shards > 1 {
        &keep_owned
    } else {
        &keep_all
    };
    if shards > 1 {
        registrar.set_partition(shard, shards);
    }
    let mut loaded = LoadReport::default();
    let mut replay = registrar.replay(estimate_records(&plan.dirs), super::now());
    for dir in &plan.dirs {
        load_dir(dir, keep, &mut loaded, &mut replay)?;
    }
    let report = replay.finish(loaded.last_seq, super::now());
    let dir = journal::shard_dir(&spec.root, shard, shards);
    let mut snapshot_bytes = 0;
    if plan.repartition {
        // Every shard has read the old directories before any new one is cleared (with no LAYOUT, an old
        // directory may have a new one's name).
        spec.sync.wait().map_err(stopped_peer)?;
        journal::clear_dir(&dir)?;
        journal::remove_temporaries(&dir)?;
        snapshot_bytes = journal::write_snapshot_blocking(&dir, shard, shards, registrar)?;
        if spec.sync.wait().map_err(stopped_peer)? {
            for damage in &loaded.set_aside {
                if let Err(e) = damage.apply() {
                    tracing::warn!("cannot set a damaged journal part aside: {e}");
                }
            }
            Layout { shards, seed }.store(&spec.root)?;
            let current: Vec<_> = (0..shards)
                .map(|i| journal::shard_dir(&spec.root, i, shards))
                .collect();
            for old in plan.dirs.iter().filter(|d| !current.contains(d)) {
                journal::retire_dir(old)?;
            }
            if let Some(prev) = spec.previous {
                tracing::info!(
                    from = prev.shards,
                    to = shards,
                    "journal re-partitioned to the new shard count"
                );
            }
        }
        spec.sync.wait().map_err(stopped_peer)?;
    } else {
        for damage in &loaded.set_aside {
            damage.apply()?;
        }
        journal::remove_temporaries(&dir)?;
        std::fs::create_dir_all(&dir).map_err(|source| JournalError::Io {
            path: dir.clone(),
            source,
        })?;
        // A directory that cannot be written is a start-up error, not a 503 for every change later.
        let probe = dir.join("probe.tmp");
        std::fs::write(&probe, b"")
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|source| JournalError::Io {
                path: probe.clone(),
                source,
            })?;
        if report.renumbered > 0 {
            // Ids in the journal and in the store no longer agree: start afresh from a snapshot.
            snapshot_bytes = journal::write_snapshot_blocking(&dir, shard, shards, registrar)?;
        }
    }
    Ok(Started {
        report,
        loaded_records: loaded.records,
        loaded_bytes: loaded.bytes,
        dir,
        next_seq: registrar.last_seq() + 1,
        snapshot_bytes,
        took: begun.elapsed(),
    })
}

/// Counters of a shard's journal (logged when the shard stops).
#[derive(Clone, Debug, Default)]
pub struct JournalStats {
    /// Writes of one or more turns' changes.
    pub commits: u64,
    pub bytes_written: u64,
    pub fsyncs: u64,
    /// Writes and fdatasyncs that failed (each retried).
    pub write_errors: u64,
    pub replies_held: u64,
    /// Replies dropped because --journal-max-held were already held.
    pub replies_dropped: u64,
    pub segments_started: u64,
    pub snapshots: u64,
    pub snapshot_errors: u64,
}

impl JournalStats {
    pub fn counters(&self) -> [(&'static str, u64); 9] {
        let JournalStats {
            commits,
            bytes_written,
            fsyncs,
            write_errors,
            replies_held,
            replies_dropped,
            segments_started,
            snapshots,
            snapshot_errors,
        } = *self;
        [
            ("commits", commits),
            ("bytes_written", bytes_written),
            ("fsyncs", fsyncs),
            ("write_errors", write_errors),
            ("replies_held", replies_held),
            ("replies_dropped", replies_dropped),
            ("segments_started", segments_started),
            ("snapshots", snapshots),
            ("snapshot_errors", snapshot_errors),
        ]
    }
}

/// A reply waiting for its changes to be written.
#[derive(Debug)]
struct Held {
    reply: Vec<u8>,
    to: SocketAddr,
    seq: u64,
}

/// A shard's journal, shared by its tasks.
#[derive(Debug)]
pub struct Journal {
    shard: usize,
    shards: usize,
    dir: PathBuf,
    settings: JournalSettings,
    state: RefCell<State>,
    /// Rung when changes arrive while none were pending.
    doorbell: LocalSender<()>,
    bell: RefCell<Option<LocalReceiver<()>>>,
    /// The highest sequence number whose replies may leave.
    durable: Cell<u64>,
}

#[derive(Debug)]
struct State {
    /// Frames not yet written, and the sequence numbers they hold.
    pending: Vec<u8>,
    pending_first: u64,
    pending_last: u64,
    spare: Vec<u8>,
    held: VecDeque<Held>,
    free_replies: Vec<Vec<u8>>,
    stats: JournalStats,
    /// Records and bytes of records written (the average record size estimates the live data).
    records_written: u64,
    record_bytes_written: u64,
    /// Segment bytes written since the last snapshot (what a snapshot lets go).
    since_snapshot: u64,
    snapshot_running: bool,
}

/// Replies one sendmmsg releases at most.
const RELEASE_BATCH: usize = 64;
/// Replies kept for reuse, at most.
const FREE_REPLIES: usize = 1024;
/// Back-off between retries of a failed write: from the first to the last, doubling.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_LAST: Duration = Duration::from_secs(1);

impl Journal {
    pub fn new(
        shard: usize,
        shards: usize,
        started: &Started,
        settings: JournalSettings,
    ) -> Rc<Self> {
        let (doorbell, bell) = local_channel::new_bounded(1);
        Rc::new(Journal {
            shard,
            shards,
            dir: started.dir.clone(),
            settings,
            state: RefCell::new(State {
                pending: Vec::new(),
                pending_first: started.next_seq,
                pending_last: started.next_seq - 1,
                spare: Vec::new(),
                held: VecDeque::new(),
                free_replies: Vec::new(),
                stats: JournalStats::default(),
                records_written: 0,
                record_bytes_written: 0,
                since_snapshot: 0,
                snapshot_running: false,
            }),
            doorbell,
            bell: RefCell::new(Some(bell)),
            durable: Cell::new(started.next_seq - 1),
        })
    }

    pub fn stats(&self) -> JournalStats {
        self.state.borrow().stats.clone()
    }

    /// Appends one turn's records (sequence numbers `first..=last`) to what the next write takes.
    pub fn append(&self, records: &[u8], first: u64, last: u64) {
        if records.is_empty() {
            return;
        }
        let mut s = self.state.borrow_mut();
        let was_empty = s.pending.is_empty();
        if was_empty {
            s.pending_first = first;
        }
        s.pending_last = last;
        s.records_written += last + 1 - first;
        s.record_bytes_written += records.len() as u64;
        format::push_records(&mut s.pending, records, MAX_FRAME_BYTES);
        drop(s);
        if was_empty {
            // Full: already rung and not yet taken.
            let _ = self.doorbell.try_send(());
        }
    }

    /// Keeps `reply` until every change up to `seq` is written; false when nothing is pending (send it
    /// now). A reply over --journal-max-held is dropped (true: do not send it; the client retransmits).
    /// Only success replies wait: a refusal changed nothing (and a 503 must leave while writes fail).
    pub fn hold(&self, reply: &[u8], to: SocketAddr, seq: u64) -> bool {
        if seq <= self.durable.get() || !reply.starts_with(b"SIP/2.0 2") {
            return false;
        }
        let mut s = self.state.borrow_mut();
        if s.held.len() >= self.settings.max_held {
            s.stats.replies_dropped += 1;
            return true;
        }
        let mut buf = s.free_replies.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(reply);
        s.held.push_back(Held {
            reply: buf,
            to,
            seq,
        });
        s.stats.replies_held += 1;
        true
    }

    /// Waits (at most `limit`) until every change recorded up to `seq` is written (a clean stop writes what
    /// the last turns recorded; an API delete is answered once written); whether it is.
    pub async fn flush(&self, seq: u64, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.durable.get() < seq && Instant::now() < deadline {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        self.durable.get() >= seq
    }

    /// Enough is pending for a commit not to wait for more (see `--fsync-delay`).
    fn pending_enough(&self) -> bool {
        self.state.borrow().pending.len() >= GROUP_ENOUGH_BYTES
    }

    fn take_pending(&self) -> Option<(Vec<u8>, u64, u64)> {
        let mut s = self.state.borrow_mut();
        if s.pending.is_empty() {
            return None;
        }
        let spare = std::mem::take(&mut s.spare);
        let buf = std::mem::replace(&mut s.pending, spare);
        Some((buf, s.pending_first, s.pending_last))
    }

    /// A failed write's data goes back in front of what arrived since.
    fn put_back(&self, mut buf: Vec<u8>, first: u64) {
        let mut s = self.state.borrow_mut();
        buf.extend_from_slice(&s.pending);
        if s.pending.is_empty() {
            s.pending_last = s.pending_last.max(first);
        }
        s.pending = buf;
        s.pending_first = first;
    }

    fn recycle(&self, mut buf: Vec<u8>) {
        buf.clear();
        if buf.capacity() <= 1 << 20 {
            self.state.borrow_mut().spare = buf;
        }
    }

    /// The replies whose changes are now written.
    fn release(&self, durable: u64) -> Vec<Held> {
        self.durable.set(durable);
        let mut s = self.state.borrow_mut();
        let n = s.held.iter().take_while(|h| h.seq <= durable).count();
        s.held.drain(..n).collect()
    }

    fn reuse_reply(&self, buf: Vec<u8>) {
        let mut s = self.state.borrow_mut();
        if s.free_replies.len() < FREE_REPLIES {
            s.free_replies.push(buf);
        }
    }

    fn header(&self, kind: FileKind, base_seq: u64) -> [u8; format::HEADER_BYTES] {
        FileHeader {
            kind,
            shard: self.shard as u32,
            shards: self.shards as u32,
            base_seq,
        }
        .encode()
    }
}

fn io(e: impl Into<std::io::Error>) -> std::io::Error {
    e.into()
}

/// The segment being written.
struct Segment {
    file: BufferedFile,
    path: PathBuf,
    /// Where the next frame goes.
    pos: u64,
    /// The file is zeros from `pos` up to here: frames written below it change no metadata, so their
    /// fdatasync writes data only (the file system does not commit its journal for each).
    zeroed: u64,
}

/// Pending bytes (about 300 changes) past which a commit does not wait for more: its write and fdatasync
/// already cost well under a microsecond per change.
const GROUP_ENOUGH_BYTES: usize = 64 << 10;

/// Bytes a segment is extended with at a time, as zeros ahead of its frames (at most a quarter of
/// --journal-segment-bytes).
const ZERO_AHEAD: u64 = 1 << 20;

/// Extends the segment with zeros so that `end` lies within them.
async fn zero_ahead(seg: &mut Segment, end: u64, segment_bytes: u64) -> std::io::Result<()> {
    if end <= seg.zeroed {
        return Ok(());
    }
    let upto = end.max(seg.zeroed + ZERO_AHEAD.min(segment_bytes / 4));
    let from = seg.zeroed.max(seg.pos);
    write_all(&seg.file, vec![0u8; (upto - from) as usize], from).await?;
    seg.zeroed = upto;
    Ok(())
}

async fn open_segment(j: &Journal, base: u64) -> std::io::Result<Segment> {
    let path = journal::segment_path(&j.dir, base);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .buffered_open(&path)
        .await
        .map_err(io)?;
    let header = j.header(FileKind::Segment, base).to_vec();
    write_all(&file, header, 0).await?;
    let mut segment = Segment {
        file,
        path,
        pos: format::HEADER_BYTES as u64,
        zeroed: format::HEADER_BYTES as u64,
    };
    zero_ahead(
        &mut segment,
        format::HEADER_BYTES as u64 + 1,
        j.settings.segment_bytes,
    )
    .await?;
    segment.file.fdatasync().await.map_err(io)?;
    sync_dir(&j.dir).await?;
    j.state.borrow_mut().stats.segments_started += 1;
    Ok(segment)
}

async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let d = Directory::open(dir).await.map_err(io)?;
    d.sync().await.map_err(io)?;
    d.close().await.map_err(io)
}

/// Writes all of `data` at `pos` (a short write is continued).
async fn write_all(file: &BufferedFile, data: Vec<u8>, pos: u64) -> std::io::Result<()> {
    let mut done = 0usize;
    while done < data.len() {
        let chunk = if done == 0 {
            data.clone()
        } else {
            data[done..].to_vec()
        };
        let n = file.write_at(chunk, pos + done as u64).await.map_err(io)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                "the journal write made no progress",
            ));
        }
        done += n;
    }
    Ok(())
}

/// The shard's commit loop: runs until its task is cancelled. `socket` sends the replies held.
pub async fn commit_loop(
    j: Rc<Journal>,
    registrar: Rc<RefCell<Registrar>>,
    socket: Rc<UdpSocket>,
    counters: Rc<RefCell<ShardReport>>,
) {
    let Some(bell) = j.bell.borrow_mut().take() else {
        return;
    };
    let mut backoff = RETRY_FIRST;
    let mut segment: Option<Segment> = None;
    let mut last_sync = Instant::now();
    let mut unsynced = false;
    let interval = Duration::from_millis(j.settings.fsync_interval_ms);
    let delay = Duration::from_micros(j.settings.fsync_delay_us);
    // The replies a commit releases leave by sendmmsg, a batch at a time.
    let mut outbox = SendBatch::new(RELEASE_BATCH, REPLY_CAPACITY);
    loop {
        // Wait for changes (or, with --fsync interval, for the next fdatasync due).
        if j.state.borrow().pending.is_empty() {
            if j.settings.fsync == FsyncMode::Interval && unsynced {
                let left = interval.saturating_sub(last_sync.elapsed());
                let sleep =
                    std::pin::pin!(glommio::timer::sleep(left.max(Duration::from_millis(1))));
                let rung = std::pin::pin!(bell.recv());
                let timed_out = matches!(
                    futures_util::future::select(rung, sleep).await,
                    futures_util::future::Either::Right(_)
                );
                if timed_out {
                    if let Some(seg) = &segment {
                        match seg.file.fdatasync().await {
                            Ok(()) => j.state.borrow_mut().stats.fsyncs += 1,
                            Err(e) => {
                                j.state.borrow_mut().stats.write_errors += 1;
                                tracing::error!(shard = j.shard, "journal fdatasync failed: {e}");
                            }
                        }
                    }
                    last_sync = Instant::now();
                    unsynced = false;
                    continue;
                }
            } else if bell.recv().await.is_none() {
                return;
            }
        }
        if j.settings.fsync == FsyncMode::Always && !delay.is_zero() && !j.pending_enough() {
            // Let more changes join this commit (--fsync-delay).
            glommio::timer::sleep(delay).await;
        }
        let Some((buf, first, last)) = j.take_pending() else {
            continue;
        };
        let result = commit(&j, &mut segment, &buf, first).await;
        match result {
            Ok(()) => {
                let written = buf.len() as u64;
                {
                    let mut s = j.state.borrow_mut();
                    s.stats.commits += 1;
                    s.stats.bytes_written += written;
                    s.since_snapshot += written;
                }
                j.recycle(buf);
                let next_base = last + 1;
                match j.settings.fsync {
                    FsyncMode::Always => {}
                    FsyncMode::Interval => {
                        unsynced = true;
                        if last_sync.elapsed() >= interval {
                            if let Some(seg) = &segment {
                                if seg.file.fdatasync().await.is_ok() {
                                    j.state.borrow_mut().stats.fsyncs += 1;
                                }
                            }
                            last_sync = Instant::now();
                            unsynced = false;
                        }
                    }
                    FsyncMode::Off => {}
                }
                if !registrar.borrow().is_accepting_changes() {
                    registrar.borrow_mut().set_accepting_changes(true);
                    tracing::warn!(shard = j.shard, "journal writes again: accepting changes");
                }
                backoff = RETRY_FIRST;
                let shard = j.shard;
                outbox.clear();
                for h in j.release(last) {
                    if outbox.is_full() {
                        send_batch(shard, &socket, &mut outbox, &counters).await;
                        outbox.clear();
                    }
                    outbox.push(&h.reply, Some(h.to));
                    j.reuse_reply(h.reply);
                }
                if !outbox.is_empty() {
                    send_batch(shard, &socket, &mut outbox, &counters).await;
                }
                if segment
                    .as_ref()
                    .is_some_and(|s| s.pos >= j.settings.segment_bytes)
                {
                    // The next commit starts a new segment.
                    close_segment(&j, &mut segment).await;
                }
                if snapshot_due(&j, &registrar) {
                    // The snapshot starts where the next segment does: every older segment goes once it is
                    // complete.
                    close_segment(&j, &mut segment).await;
                    start_snapshot(&j, &registrar, next_base - 1);
                }
            }
            Err(e) => {
                j.state.borrow_mut().stats.write_errors += 1;
                if registrar.borrow().is_accepting_changes() {
                    tracing::error!(
                        shard = j.shard,
                        "journal write failed: {e}; refusing changes (503) until it writes again"
                    );
                    registrar.borrow_mut().set_accepting_changes(false);
                } else {
                    tracing::debug!(shard = j.shard, "journal write failed again: {e}");
                }
                j.put_back(buf, first);
                glommio::timer::sleep(backoff).await;
                backoff = (backoff * 2).min(RETRY_LAST);
            }
        }
    }
}

/// Writes one batch of frames (sequence numbers from `first`) into the current segment, opening one when
/// needed; fdatasyncs with `--fsync always`. After a failed fdatasync the segment is abandoned: the data may
/// not have reached the disk, so it is written again into a new segment.
async fn commit(
    j: &Journal,
    segment: &mut Option<Segment>,
    buf: &[u8],
    first: u64,
) -> std::io::Result<()> {
    if segment.is_none() {
        *segment = Some(open_segment(j, first).await?);
    }
    let Some(seg) = segment.as_mut() else {
        return Ok(());
    };
    zero_ahead(seg, seg.pos + buf.len() as u64, j.settings.segment_bytes).await?;
    // Out of room (a full disk, a file size limit): nothing acknowledged depends on it, retried in place.
    write_all(&seg.file, buf.to_vec(), seg.pos).await?;
    if j.settings.fsync == FsyncMode::Always {
        j.state.borrow_mut().stats.fsyncs += 1;
        if let Err(e) = seg.file.fdatasync().await {
            // The data may not have reached the device, and the kernel may have dropped it: written again,
            // into a new segment.
            tracing::error!(shard = j.shard, file = %seg.path.display(), "fdatasync failed: {e}; the changes go to a new segment");
            *segment = None;
            return Err(io(e));
        }
    }
    seg.pos += buf.len() as u64;
    Ok(())
}

/// Closes the current segment (fdatasync'ed first unless `--fsync off`: with `--fsync interval` its last
/// writes may not be yet).
async fn close_segment(j: &Journal, segment: &mut Option<Segment>) {
    let Some(seg) = segment.take() else {
        return;
    };
    if j.settings.fsync == FsyncMode::Interval {
        match seg.file.fdatasync().await {
            Ok(()) => j.state.borrow_mut().stats.fsyncs += 1,
            Err(e) => {
                j.state.borrow_mut().stats.write_errors += 1;
                tracing::error!(shard = j.shard, file = %seg.path.display(), "fdatasync failed: {e}");
            }
        }
    }
    if let Err(e) = seg.file.close().await {
        tracing::debug!(shard = j.shard, "closing a journal segment: {e}");
    }
}

/// Whether the segments written since the last snapshot exceed --snapshot-ratio times the live data
/// (estimated from the bindings held and the average record written), or one segment per unit of the ratio
/// when the live data is smaller than a segment.
fn snapshot_due(j: &Journal, registrar: &RefCell<Registrar>) -> bool {
    let s = j.state.borrow();
    if s.snapshot_running || s.records_written == 0 {
        return false;
    }
    let avg = s.record_bytes_written / s.records_written;
    let live = (registrar.borrow().binding_count() as u64).saturating_mul(avg);
    let limit = live
        .max(j.settings.segment_bytes)
        .saturating_mul(u64::from(j.settings.snapshot_ratio));
    s.since_snapshot > limit
}

/// Starts a snapshot task at `base` (every change up to `base` is in the segments before the next one).
fn start_snapshot(j: &Rc<Journal>, registrar: &Rc<RefCell<Registrar>>, base: u64) {
    {
        let mut s = j.state.borrow_mut();
        s.snapshot_running = true;
        s.since_snapshot = 0;
    }
    tracing::debug!(shard = j.shard, base, "journal snapshot starting");
    glommio::spawn_local(snapshot_task(j.clone(), registrar.clone(), base)).detach();
}

/// Writes a snapshot starting at `base` page by page, yielding between pages; completes it once every change
/// it reflects is written, then removes what it replaces.
async fn snapshot_task(j: Rc<Journal>, registrar: Rc<RefCell<Registrar>>, base: u64) {
    let result = write_snapshot(&j, &registrar, base).await;
    let mut s = j.state.borrow_mut();
    s.snapshot_running = false;
    match result {
        Ok(bytes) => {
            s.stats.snapshots += 1;
            tracing::debug!(shard = j.shard, base, bytes, "journal snapshot complete");
        }
        Err(e) => {
            s.stats.snapshot_errors += 1;
            tracing::warn!(shard = j.shard, base, "journal snapshot failed: {e}");
        }
    }
}

async fn write_snapshot(
    j: &Journal,
    registrar: &RefCell<Registrar>,
    base: u64,
) -> Result<u64, std::io::Error> {
    let path = journal::snapshot_path(&j.dir, base);
    let tmp = path.with_extension("snap.tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .buffered_open(&tmp)
        .await
        .map_err(io)?;
    let mut pos = 0u64;
    let header = j.header(FileKind::Snapshot, base).to_vec();
    pos += header.len() as u64;
    let written = async {
        write_all(&file, header, 0).await?;
        let mut cursor = Some(0);
        let mut page = Vec::new();
        let mut max_seq = base;
        while let Some(from) = cursor {
            page.clear();
            let mut frame = Vec::new();
            {
                let registrar = registrar.borrow();
                max_seq = max_seq.max(registrar.last_seq());
                cursor = journal::snapshot_page(&registrar, from, &mut page);
            }
            format::push_records(&mut frame, &page, MAX_FRAME_BYTES);
            let len = frame.len() as u64;
            write_all(&file, frame, pos).await?;
            pos += len;
            glommio::executor().yield_task_queue_now().await;
        }
        let mut end = Vec::new();
        format::push_end(&mut end);
        let len = end.len() as u64;
        write_all(&file, end, pos).await?;
        pos += len;
        file.fdatasync().await.map_err(io)?;
        // Valid only once every change it reflects is written too.
        while j.durable.get() < max_seq {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        Ok::<(), std::io::Error>(())
    }
    .await;
    if let Err(e) = written {
        let _ = file.remove().await;
        let _ = file.close().await;
        return Err(e);
    }
    file.rename(&path).await.map_err(io)?;
    file.close().await.map_err(io)?;
    sync_dir(&j.dir).await?;
    // Unlinking a few 64 MiB segments and syncing the directory can take milliseconds: off the shard's
    // thread, on its executor's blocking pool.
    let (dir, keep) = (j.dir.clone(), path.clone());
    glommio::executor()
        .spawn_blocking(move || journal::remove_older(&dir, &keep))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_up_sync_names_one_leader_and_a_failure_releases_everyone() {
        let sync = Arc::new(StartupSync::new(3));
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let sync = sync.clone();
                std::thread::spawn(move || sync.wait())
            })
            .collect();
        let results: Vec<_> = waiters
            .into_iter()
            .map(|w| w.join().expect("join"))
            .collect();
        assert_eq!(results.iter().filter(|r| **r == Ok(true)).count(), 1);
        assert_eq!(results.iter().filter(|r| **r == Ok(false)).count(), 2);
        // One shard fails while the others wait: they are released with an error, never stuck.
        let waiting: Vec<_> = (0..2)
            .map(|_| {
                let sync = sync.clone();
                std::thread::spawn(move || sync.wait())
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20));
        sync.fail();
        for w in waiting {
            assert_eq!(w.join().expect("join"), Err(PeerFailed));
        }
        assert_eq!(sync.wait(), Err(PeerFailed));
    }
}
