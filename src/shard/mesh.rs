//! The handoff mesh: one bounded inbox per shard, shared by every other shard, carrying batches of datagrams.
//!
//! A shard that receives REGISTERs for AoRs another shard owns gathers them, during one turn of its receive
//! loop, into one [`Batch`] per owner ([`Outbound::offer`]): the datagrams' bytes back to back in one buffer
//! and their sources beside them, so nothing is allocated per message. At the end of the turn it pushes
//! each batch once onto the owner's inbox ([`Outbound::flush`]), and rings the owner's doorbell only when
//! the owner said it would sleep (its `armed` flag, the pattern of [`super::api`]): a busy owner takes the
//! batches on its next look without any system call on either side. The owner applies a whole batch and
//! returns the emptied buffer to the shard that filled it, through that shard's bounded pool of spares
//! ([`Inbox::recycle`]); a full pool frees it.
//!
//! Capacity is counted in datagrams (`--handoff-queue` per inbox), not batches: a sender reserves room for
//! each datagram before it takes it ([`Outbound::offer`] fails when the owner already has that many queued or
//! being gathered for it), and the owner releases the room once it applied them. The receiver answers a
//! refused datagram with 503 and Retry-After at once, as before. The reservation is taken a few datagrams at
//! a time ([`CREDIT_CHUNK`]) and what a turn did not use is given back at its end, so the shared counter
//! is touched a few times per turn, not per message.
//!
//! Memory is linear in the shard count: per shard one inbox of `--handoff-queue` slots (a slot is one
//! batch's handle, [`SLOT_BYTES`]), one pool of at most [`MAX_SPARES`] spare batches, two loopback sockets
//! for the doorbell; batch buffers are sized by the traffic (a turn takes at most `--recv-batch` datagrams)
//! and a buffer that grew past [`MAX_SPARE_BYTES`] is freed rather than pooled.
//!
//! Ordering: one sender's batches to one owner are taken in the order they were pushed (the inbox is FIFO),
//! and a batch is applied in order, so a client that waits for each answer before its next request sees its
//! requests applied in order, whichever shards receive them.

use std::cell::Cell;
use std::future::poll_fn;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use socket2::{Domain, Protocol, Socket, Type};

/// Datagrams of room a sender reserves on an owner's inbox at a time.
pub const CREDIT_CHUNK: usize = 8;
/// Spare batches a shard keeps for reuse (its pool is shared by the owners returning them).
pub const MAX_SPARES: usize = 64;
/// A batch whose buffer grew beyond this is freed after use instead of going back to the pool.
pub const MAX_SPARE_BYTES: usize = 64 * 1024;
/// Bytes of one inbox or pool slot: a [`Batch`] handle and the channel's per-slot stamp.
pub const SLOT_BYTES: usize = std::mem::size_of::<Batch>() + std::mem::size_of::<usize>();

/// Datagrams handed to one owner by one shard in one turn, back to back.
#[derive(Debug, Default)]
pub struct Batch {
    /// The shard that filled it (where it returns once applied).
    from: usize,
    bytes: Vec<u8>,
    /// Each datagram's end offset in `bytes` and its source.
    entries: Vec<(u32, SocketAddr)>,
}

impl Batch {
    fn new(from: usize) -> Batch {
        Batch {
            from,
            ..Batch::default()
        }
    }

    /// Appends a datagram; false (nothing appended) past 4 GiB, which a turn cannot reach.
    pub fn push(&mut self, datagram: &[u8], source: SocketAddr) -> bool {
        let Ok(end) = u32::try_from(self.bytes.len() + datagram.len()) else {
            return false;
        };
        self.bytes.extend_from_slice(datagram);
        self.entries.push((end, source));
        true
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The datagrams and their sources, in the order they were pushed.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> + '_ {
        let mut start = 0usize;
        self.entries.iter().map(move |&(end, source)| {
            let end = end as usize;
            let datagram = &self.bytes[start..end];
            start = end;
            (datagram, source)
        })
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.entries.clear();
    }
}

/// A value alone on its cache line (64 B on x86-64 and most ARM cores), so that writes to it do not slow
/// readers of its neighbours.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Padded<T>(T);

/// The part of a shard's inbox every shard sees: where batches go, the room left, the doorbell.
#[derive(Debug)]
struct Door {
    queue: Sender<Batch>,
    /// Datagrams reserved: queued, being applied, or being gathered by a sender. On a cache line of its own:
    /// senders reserve a few datagrams at a time, the owner releases per batch.
    pending: Padded<AtomicUsize>,
    capacity: usize,
    /// Set by the owner just before it sleeps; the first sender to see it set clears it and rings. Read by
    /// every sender after every push: on its own cache line, written only when it changes.
    armed: Padded<AtomicBool>,
    /// Cleared when the owner stops taking batches.
    open: AtomicBool,
    /// The senders' end of the doorbell (a connected loopback socket, non-blocking).
    bell: UdpSocket,
    /// The shard's pool of spare batches, refilled by the owners that applied its batches.
    spares: Sender<Batch>,
}

impl Door {
    /// Reserves room for up to `want` datagrams; how many it got (0: the inbox is full).
    fn reserve(&self, want: usize) -> usize {
        let mut pending = self.pending.0.load(Ordering::Relaxed);
        loop {
            let room = self.capacity.saturating_sub(pending);
            let take = want.min(room);
            if take == 0 {
                return 0;
            }
            match self.pending.0.compare_exchange_weak(
                pending,
                pending + take,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return take,
                Err(now) => pending = now,
            }
        }
    }

    fn release(&self, n: usize) {
        if n > 0 {
            self.pending.0.fetch_sub(n, Ordering::AcqRel);
        }
    }

    fn ring_if_armed(&self) -> bool {
        // Push-then-check against the owner's store-then-check (both with a full fence between): either the
        // owner sees the batch before it sleeps, or this sees it armed and rings. The swap, a write, only
        // when it is armed.
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.armed.0.load(Ordering::Relaxed) && self.armed.0.swap(false, Ordering::SeqCst) {
            // A full socket buffer means rings are already pending: nothing is lost.
            let _ = self.bell.send(&[1]);
            return true;
        }
        false
    }
}

/// One shard's ends of the mesh, built on the starting thread ([`mesh`]) and moved into the shard.
#[derive(Debug)]
pub struct Links {
    pub id: usize,
    /// Every shard's door, indexed by shard (this shard's own included, unused for sending).
    doors: Vec<Arc<Door>>,
    inbox: Receiver<Batch>,
    bell: Socket,
    spares: Receiver<Batch>,
}

impl Links {
    /// The shard count.
    pub fn shards(&self) -> usize {
        self.doors.len()
    }

    /// Splits into the sending side (for the receive loop) and the taking side (for the inbound loop).
    pub fn split(self) -> (Outbound, Inbox) {
        let Links {
            id,
            doors,
            inbox,
            bell,
            spares,
        } = self;
        let shards = doors.len();
        let outbound = Outbound {
            id,
            doors: doors.clone(),
            gathering: (0..shards).map(|_| None).collect(),
            credits: vec![0; shards],
            touched: Vec::with_capacity(shards),
            spares,
        };
        let inbox = Inbox {
            door: doors[id].clone(),
            doors,
            queue: inbox,
            bell: Some(bell),
        };
        (outbound, inbox)
    }
}

/// The mesh for `shards` shards, each inbox holding up to `capacity` datagrams. Element `i` is shard `i`'s.
pub fn mesh(shards: usize, capacity: usize) -> std::io::Result<Vec<Links>> {
    let capacity = capacity.max(1);
    let spares_per_shard = MAX_SPARES.min(2 * shards.saturating_sub(1)).max(1);
    let mut doors = Vec::with_capacity(shards);
    let mut ends = Vec::with_capacity(shards);
    for _ in 0..shards {
        // Each batch in an inbox holds at least one reserved datagram, so `capacity` slots never fill.
        let (queue, inbox) = crossbeam_channel::bounded(capacity);
        let (spares_tx, spares_rx) = crossbeam_channel::bounded(spares_per_shard);
        let (bell, owner_bell) = doorbell()?;
        doors.push(Arc::new(Door {
            queue,
            pending: Padded(AtomicUsize::new(0)),
            capacity,
            armed: Padded(AtomicBool::new(false)),
            open: AtomicBool::new(true),
            bell,
            spares: spares_tx,
        }));
        ends.push((inbox, owner_bell, spares_rx));
    }
    Ok(ends
        .into_iter()
        .enumerate()
        .map(|(id, (inbox, bell, spares))| Links {
            id,
            doors: doors.clone(),
            inbox,
            bell,
            spares,
        })
        .collect())
}

/// Bytes the mesh allocates up front for `shards` shards of `capacity` datagrams each (inbox and pool
/// slots; batch buffers come on top, sized by the traffic).
pub fn preallocated_bytes(shards: usize, capacity: usize) -> usize {
    let spares = MAX_SPARES.min(2 * shards.saturating_sub(1)).max(1);
    shards * (capacity.max(1) + spares) * SLOT_BYTES
}

/// Two loopback UDP sockets connected to each other: senders write a byte to the first, the owner's
/// executor waits on the second like on any datagram. Connected, the owner's end receives only from the
/// senders' end, so no other local process can ring it. The owner's end stays blocking (glommio reads it
/// with MSG_DONTWAIT and falls back to io_uring); the senders' end never blocks a shard.
fn doorbell() -> std::io::Result<(UdpSocket, Socket)> {
    let loopback: SocketAddr = (std::net::Ipv4Addr::LOCALHOST, 0).into();
    let owner_end = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    owner_end.bind(&loopback.into())?;
    let senders_end = UdpSocket::bind(loopback)?;
    senders_end.connect(super::local_addr(&owner_end)?)?;
    owner_end.connect(&senders_end.local_addr()?.into())?;
    senders_end.set_nonblocking(true)?;
    Ok((senders_end, owner_end))
}

/// Why a datagram was not taken for its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The owner's inbox holds `--handoff-queue` datagrams already: it is behind.
    Full,
    /// The owner stopped taking batches (the process is stopping).
    Closed,
}

/// What one end of turn handed over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flushed {
    pub batches: usize,
    pub datagrams: usize,
    /// Doorbells rung (owners that had said they would sleep).
    pub rings: usize,
    /// Datagrams whose owner let go of its inbox during the turn (only while the process stops): given back
    /// to the caller of [`Outbound::flush`] to answer.
    pub refused: usize,
}

/// The sending side, owned by the shard's receive loop.
#[derive(Debug)]
pub struct Outbound {
    id: usize,
    doors: Vec<Arc<Door>>,
    /// The batch being gathered for each owner this turn.
    gathering: Vec<Option<Batch>>,
    /// Room reserved on each owner's inbox and not used yet.
    credits: Vec<usize>,
    /// Owners with a batch being gathered, in first-use order.
    touched: Vec<usize>,
    /// This shard's spare batches.
    spares: Receiver<Batch>,
}

impl Outbound {
    pub fn shards(&self) -> usize {
        self.doors.len()
    }

    /// Takes a copy of `datagram` for `owner`, to be handed over at the end of the turn.
    pub fn offer(
        &mut self,
        owner: usize,
        datagram: &[u8],
        source: SocketAddr,
    ) -> Result<(), Refused> {
        let Some(door) = self.doors.get(owner).filter(|_| owner != self.id) else {
            // The partition and the mesh come from the same shard count: unreachable.
            debug_assert!(false, "no inbox for shard {owner}");
            return Err(Refused::Closed);
        };
        if !door.open.load(Ordering::Acquire) {
            return Err(Refused::Closed);
        }
        if self.credits[owner] == 0 {
            let got = door.reserve(CREDIT_CHUNK);
            if got == 0 {
                return Err(Refused::Full);
            }
            self.credits[owner] = got;
        }
        let batch = match &mut self.gathering[owner] {
            Some(batch) => batch,
            slot @ None => {
                let batch = self
                    .spares
                    .try_recv()
                    .unwrap_or_else(|_| Batch::new(self.id));
                self.touched.push(owner);
                slot.insert(batch)
            }
        };
        if !batch.push(datagram, source) {
            return Err(Refused::Full);
        }
        self.credits[owner] -= 1;
        Ok(())
    }

    /// Ends the turn: pushes each gathered batch onto its owner's inbox, rings the owners that sleep, and
    /// gives back the room reserved but not used. The datagrams of a batch its owner can no longer take (it
    /// let go of its inbox during the turn: the process is stopping) go to `refused`, one by one, for the
    /// caller to answer itself; the batch is then kept as a spare.
    pub fn flush(&mut self, mut refused: impl FnMut(&[u8], SocketAddr)) -> Flushed {
        let mut flushed = Flushed::default();
        for owner in self.touched.drain(..) {
            let door = &self.doors[owner];
            door.release(std::mem::take(&mut self.credits[owner]));
            let Some(batch) = self.gathering[owner].take() else {
                continue;
            };
            let n = batch.len();
            match door.queue.try_send(batch) {
                Ok(()) => {
                    flushed.batches += 1;
                    flushed.datagrams += n;
                    flushed.rings += usize::from(door.ring_if_armed());
                }
                Err(TrySendError::Full(mut batch) | TrySendError::Disconnected(mut batch)) => {
                    // Full cannot happen (every queued batch holds reserved room); disconnected: the owner
                    // stopped during this turn, after this shard had reserved room on its inbox.
                    door.release(n);
                    flushed.refused += n;
                    for (datagram, source) in batch.iter() {
                        refused(datagram, source);
                    }
                    batch.clear();
                    // A full pool frees it.
                    let _ = self.doors[self.id].spares.try_send(batch);
                }
            }
        }
        flushed
    }
}

impl Drop for Outbound {
    fn drop(&mut self) {
        // Room reserved but never used goes back (a shard stopping mid-turn).
        for (owner, credits) in self.credits.iter_mut().enumerate() {
            self.doors[owner].release(std::mem::take(credits));
        }
    }
}

impl Outbound {
    /// The shard runs a turn of work: senders need not ring it (it looks at its inbox at the end of each
    /// turn), and batches already queued get the inbound loop going without any system call.
    pub fn awake(&self, wake: &Wake) {
        wake.idle.set(false);
        let door = &self.doors[self.id];
        if door.armed.0.load(Ordering::Relaxed) {
            door.armed.0.store(false, Ordering::Relaxed);
        }
        if !door.queue.is_empty() {
            wake.kick();
        }
    }

    /// The shard's receive loop is about to wait: from now on senders ring the doorbell. SeqCst with the
    /// senders' push-then-swap: either a batch pushed meanwhile is seen here, or its sender sees the flag.
    pub fn about_to_wait(&self, wake: &Wake) {
        wake.idle.set(true);
        let door = &self.doors[self.id];
        door.armed.0.store(true, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
        if !door.queue.is_empty() {
            door.armed.0.store(false, Ordering::SeqCst);
            wake.kick();
        }
    }
}

/// How a shard's own tasks tell its inbound loop that batches wait (no system call: a local wake-up), and
/// whether the shard's receive loop is waiting for its socket. Shared within one shard only.
#[derive(Default)]
pub struct Wake {
    kicked: Cell<bool>,
    waker: Cell<Option<Waker>>,
    idle: Cell<bool>,
}

impl std::fmt::Debug for Wake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wake")
            .field("kicked", &self.kicked.get())
            .field("idle", &self.idle.get())
            .finish()
    }
}

impl Wake {
    /// Wakes the inbound loop (or makes its next wait return at once).
    pub fn kick(&self) {
        self.kicked.set(true);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// Waits for a kick.
    pub async fn kicked(&self) {
        poll_fn(|cx| {
            if self.kicked.replace(false) {
                Poll::Ready(())
            } else {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }

    /// Whether the receive loop waits for its socket (then the inbound loop arms the doorbell itself).
    pub fn is_idle(&self) -> bool {
        self.idle.get()
    }
}

/// The taking side, owned by the shard's inbound loop.
#[derive(Debug)]
pub struct Inbox {
    door: Arc<Door>,
    doors: Vec<Arc<Door>>,
    queue: Receiver<Batch>,
    bell: Option<Socket>,
}

impl Inbox {
    /// The next batch, if any.
    pub fn try_take(&self) -> Option<Batch> {
        self.queue.try_recv().ok()
    }

    /// Once a batch is applied: frees its room and returns its buffer to the shard that filled it.
    pub fn recycle(&self, mut batch: Batch) {
        self.door.release(batch.len());
        if batch.bytes.capacity() > MAX_SPARE_BYTES {
            return;
        }
        batch.clear();
        if let Some(door) = self.doors.get(batch.from) {
            // A full pool frees it.
            let _ = door.spares.try_send(batch);
        }
    }

    /// The owner stops taking batches: from now on senders answer 503 themselves ([`Refused::Closed`]).
    /// Batches already queued, or being gathered by a sender that saw the inbox open, still arrive.
    pub fn close(&self) {
        self.door.open.store(false, Ordering::Release);
    }

    /// Datagrams queued, being applied, or reserved by senders still gathering: 0 once a closed inbox
    /// will receive nothing more.
    pub fn reserved(&self) -> usize {
        self.door.pending.0.load(Ordering::Acquire)
    }

    /// Says the owner is about to sleep; false when a batch arrived meanwhile (then it must not sleep).
    pub fn arm(&self) -> bool {
        self.door.armed.0.store(true, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.queue.is_empty() {
            return true;
        }
        self.door.armed.0.store(false, Ordering::SeqCst);
        false
    }

    /// The owner's end of the doorbell (taken once, by the inbound loop).
    pub fn take_bell(&mut self) -> Option<Socket> {
        self.bell.take()
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        // Senders answer 503 from now on; a batch pushed after this is dropped with the channel (the shard
        // answers what was queued before it lets go: [`super::handoff::refuse_queued`]).
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn no_refusal(datagram: &[u8], source: SocketAddr) {
        panic!("refused {datagram:?} from {source}");
    }

    #[test]
    fn a_turn_becomes_one_batch_per_owner_in_order() {
        let mut links = mesh(3, 16).unwrap().into_iter();
        let (mut out0, _in0) = links.next().unwrap().split();
        let (_out1, in1) = links.next().unwrap().split();
        let (_out2, in2) = links.next().unwrap().split();
        out0.offer(1, b"a", src(1)).unwrap();
        out0.offer(2, b"bb", src(2)).unwrap();
        out0.offer(1, b"ccc", src(3)).unwrap();
        assert!(
            in1.try_take().is_none(),
            "nothing moves before the turn ends"
        );
        let flushed = out0.flush(no_refusal);
        assert_eq!((flushed.batches, flushed.datagrams), (2, 3));
        let batch = in1.try_take().unwrap();
        let got: Vec<_> = batch.iter().map(|(d, s)| (d.to_vec(), s)).collect();
        assert_eq!(
            got,
            vec![(b"a".to_vec(), src(1)), (b"ccc".to_vec(), src(3))]
        );
        assert!(in1.try_take().is_none());
        assert_eq!(in2.try_take().unwrap().len(), 1);
    }

    #[test]
    fn capacity_is_counted_in_datagrams_and_freed_once_applied() {
        let mut links = mesh(2, 5).unwrap().into_iter();
        let (mut out0, _in0) = links.next().unwrap().split();
        let (_out1, in1) = links.next().unwrap().split();
        for i in 0..5 {
            out0.offer(1, b"x", src(i)).unwrap();
        }
        assert_eq!(out0.offer(1, b"x", src(9)), Err(Refused::Full));
        out0.flush(no_refusal);
        assert_eq!(out0.offer(1, b"x", src(9)), Err(Refused::Full));
        let batch = in1.try_take().unwrap();
        assert_eq!(batch.len(), 5);
        in1.recycle(batch);
        out0.offer(1, b"y", src(9)).unwrap();
        out0.flush(no_refusal);
        // The buffer came back to its sender's pool and was reused.
        let batch = in1.try_take().unwrap();
        assert!(batch.bytes.capacity() >= 5);
        assert_eq!(batch.iter().next().unwrap().0, b"y");
    }

    #[test]
    fn unused_room_goes_back_at_the_end_of_the_turn() {
        let mut links = mesh(3, 10).unwrap().into_iter();
        let (mut out0, _in0) = links.next().unwrap().split();
        let (_out1, in1) = links.next().unwrap().split();
        let (mut out2, _in2) = links.next().unwrap().split();
        out0.offer(1, b"x", src(1)).unwrap();
        out2.offer(1, b"x", src(2)).unwrap();
        out0.flush(no_refusal);
        out2.flush(no_refusal);
        assert_eq!(in1.door.pending.0.load(Ordering::Relaxed), 2);
        for _ in 0..8 {
            out0.offer(1, b"x", src(1)).unwrap();
        }
        assert_eq!(out2.offer(1, b"x", src(2)), Err(Refused::Full));
    }

    #[test]
    fn a_sleeping_owner_is_rung_once_and_a_busy_one_never() {
        let mut links = mesh(2, 64).unwrap().into_iter();
        let (mut out0, _in0) = links.next().unwrap().split();
        let (_out1, mut in1) = links.next().unwrap().split();
        let bell: UdpSocket = in1.take_bell().unwrap().into();
        bell.set_nonblocking(true).unwrap();
        out0.offer(1, b"x", src(1)).unwrap();
        assert_eq!(out0.flush(no_refusal).rings, 0, "not armed: busy");
        assert!(!in1.arm(), "a batch is queued: no sleep");
        in1.recycle(in1.try_take().unwrap());
        assert!(in1.arm());
        for _ in 0..3 {
            out0.offer(1, b"x", src(1)).unwrap();
            out0.flush(no_refusal);
        }
        let mut buf = [0u8; 8];
        assert_eq!(bell.recv(&mut buf).unwrap(), 1);
        assert!(bell.recv(&mut buf).is_err(), "one ring for three batches");
    }

    #[test]
    fn a_stopped_owner_refuses_at_once() {
        let mut links = mesh(2, 4).unwrap().into_iter();
        let (mut out0, _in0) = links.next().unwrap().split();
        let (_out1, in1) = links.next().unwrap().split();
        drop(in1);
        assert_eq!(out0.offer(1, b"x", src(1)), Err(Refused::Closed));
    }

    #[test]
    fn a_closed_inbox_still_delivers_what_was_gathered_and_counts_it_until_taken() {
        let mut links = mesh(2, 64).unwrap().into_iter();
        let (mut out0, _in0) = links.next().unwrap().split();
        let (_out1, in1) = links.next().unwrap().split();
        // A turn under way when the owner closes: offered before, flushed after.
        out0.offer(1, b"a", src(1)).unwrap();
        out0.offer(1, b"b", src(2)).unwrap();
        in1.close();
        assert_eq!(out0.offer(1, b"c", src(3)), Err(Refused::Closed));
        assert!(in1.reserved() >= 2, "the sender's room is still reserved");
        let flushed = out0.flush(|_, _| panic!("nothing is refused"));
        assert_eq!((flushed.batches, flushed.refused), (1, 0));
        assert_eq!(in1.reserved(), 2, "unused room went back at the flush");
        let batch = in1.try_take().expect("the gathered batch arrives");
        assert_eq!(batch.len(), 2);
        in1.recycle(batch);
        assert_eq!(in1.reserved(), 0, "nothing more can come");
    }

    #[test]
    fn a_batch_its_owner_let_go_of_mid_turn_comes_back_to_be_answered() {
        let mut links = mesh(2, 64).unwrap().into_iter();
        let (mut out0, in0) = links.next().unwrap().split();
        let (_out1, in1) = links.next().unwrap().split();
        // Offered while the owner still took batches; the owner lets go before the turn ends.
        out0.offer(1, b"a", src(1)).unwrap();
        out0.offer(1, b"bb", src(2)).unwrap();
        drop(in1);
        let mut refused = Vec::new();
        let flushed = out0.flush(|datagram, source| refused.push((datagram.to_vec(), source)));
        assert_eq!((flushed.batches, flushed.refused), (0, 2));
        assert_eq!(
            refused,
            vec![(b"a".to_vec(), src(1)), (b"bb".to_vec(), src(2))],
            "every datagram comes back, in order, with its source"
        );
        assert_eq!(
            out0.spares.len(),
            1,
            "the emptied batch went back to the pool"
        );
        assert_eq!(out0.offer(1, b"c", src(3)), Err(Refused::Closed));
        assert!(in0.try_take().is_none());
    }

    #[test]
    fn the_mesh_is_linear_in_the_shard_count() {
        // The figures the tuning guide states: 64 B a slot, 0.5 MiB for 2 shards of 4096, 32.5 MiB for 128.
        if cfg!(target_pointer_width = "64") {
            assert_eq!(SLOT_BYTES, 64);
            assert_eq!(preallocated_bytes(2, 4096), 2 * 4098 * 64);
            assert_eq!(preallocated_bytes(64, 4096), 64 * (4096 + 64) * 64);
            assert_eq!(preallocated_bytes(128, 4096), 128 * (4096 + 64) * 64);
        }
        let two = preallocated_bytes(2, 4096);
        let many = preallocated_bytes(128, 4096);
        assert!(
            many <= 64 * two + 128 * MAX_SPARES * SLOT_BYTES,
            "{two} {many}"
        );
    }
}
