//! The receive loop: one datagram in, at most one reply out, to the datagram's source.
//!
//! Datagrams are received one at a time through glommio (which waits on io_uring when the socket is empty).
//! When one arrives without waiting, others are likely queued behind it: the loop then drains the socket
//! with `recvmmsg`, a batch per system call, and sends the batch's replies with one `sendmmsg`
//! ([`corereg_udp`]'s batches, on the glommio socket's fd), until the queue is empty. A receive that had
//! to wait does not try, so a shard that keeps up with evenly spaced datagrams runs as without batching;
//! one that did not wait pays one `recvmmsg`, which may find nothing. Clumped arrivals (clients that send
//! on timer ticks, as SIPp does) are batched even at moderate rates; see README.md, "Batched receive".

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;

use corereg_udp::{RecvBatch, SendBatch};
use glommio::net::UdpSocket;

use super::coalesce::{Coalesce, CoalesceConfig};
use super::{now, ShardError, ShardReport};
use crate::registrar::{Now, Outcome, Registrar};

/// A core the receive loop can drive: writes its reply into `out` and says whether to send it.
pub trait DatagramHandler {
    fn on_datagram(
        &mut self,
        datagram: &[u8],
        source: SocketAddr,
        now: Now,
        out: &mut Vec<u8>,
    ) -> bool;

    /// Called after each turn of work (a datagram, or a batch of them): a core that records changes hands
    /// them on here.
    fn end_of_turn(&mut self) {}

    /// Replies the core made at the end of a turn, to send now (empty but for requests handed to an owner
    /// that stopped during the turn).
    fn take_late(&mut self) -> Vec<(Vec<u8>, SocketAddr)> {
        Vec::new()
    }

    /// Called with each reply before it is sent: true when the core keeps it to send later itself (its
    /// changes are not yet written to the journal).
    fn hold_reply(&mut self, _reply: &[u8], _to: SocketAddr) -> bool {
        false
    }

    /// Called when the receive loop finds its socket empty and is about to wait: the shard may sleep next.
    fn about_to_wait(&mut self) {}
}

impl DatagramHandler for Registrar {
    fn on_datagram(
        &mut self,
        datagram: &[u8],
        source: SocketAddr,
        now: Now,
        out: &mut Vec<u8>,
    ) -> bool {
        match self.handle(datagram, source, now, out) {
            Outcome::Reply { status, .. } => {
                tracing::trace!(%source, status, "reply");
                true
            }
            Outcome::Silent(why) => {
                tracing::trace!(%source, ?why, "no reply");
                false
            }
            // Only a partitioned registrar hands off, and only the Router drives one.
            Outcome::HandOff { owner } => {
                debug_assert!(false, "hand-off to shard {owner} without a router");
                false
            }
        }
    }
}

/// Consecutive receive errors after which the socket is considered broken (each one is logged).
const MAX_CONSECUTIVE_RECV_ERRORS: u32 = 100;

/// Typical response size; the buffer grows (once) if a core writes more.
pub const REPLY_CAPACITY: usize = 2048;

/// How a shard receives: the datagram size limit and the batch size (`--max-datagram`, `--recv-batch`).
#[derive(Clone, Copy, Debug)]
pub struct RecvConfig {
    /// Receive buffers hold this + 1 bytes, so that a longer datagram shows up as `len > max` to the core.
    pub max_datagram_bytes: usize,
    /// Datagrams per `recvmmsg` when they queue up; 1: never batch.
    pub batch: usize,
    /// How long a shard that emptied its socket may wait before it looks again ([`super::coalesce`]).
    pub coalesce: CoalesceConfig,
}

/// Receives forever; returns only on a persistent socket error. Runs until its task is cancelled.
///
/// The receive buffer holds `max_datagram_bytes + 1` bytes: the kernel truncates a longer datagram to the
/// buffer, so the core sees `len > max_datagram_bytes` and can refuse it (it cannot tell by how much).
pub async fn recv_loop<H: DatagramHandler>(
    shard: usize,
    socket: Rc<UdpSocket>,
    core: Rc<RefCell<H>>,
    cfg: RecvConfig,
    counters: Rc<RefCell<ShardReport>>,
) -> Result<(), ShardError> {
    let max_datagram_bytes = cfg.max_datagram_bytes;
    let mut buf = vec![0u8; max_datagram_bytes + 1];
    let mut out = Vec::with_capacity(REPLY_CAPACITY);
    let mut batches = (cfg.batch > 1).then(|| {
        (
            RecvBatch::new(cfg.batch, max_datagram_bytes + 1),
            SendBatch::new(cfg.batch, REPLY_CAPACITY),
        )
    });
    let mut backoff = DrainBackoff::default();
    let mut coalesce = Coalesce::new(cfg.coalesce);
    let mut held = false;
    let mut consecutive_errors = 0u32;
    loop {
        // Whether the receive had to wait: if it did not, the socket had a datagram queued already.
        let mut waited = false;
        let received = {
            let mut recv = pin!(socket.recv_from(&mut buf));
            poll_fn(|cx| {
                let polled = recv.as_mut().poll(cx);
                if polled.is_pending() && !waited {
                    core.borrow_mut().about_to_wait();
                }
                waited |= polled.is_pending();
                polled
            })
            .await
        };
        if std::mem::take(&mut held) {
            coalesce.held(!waited);
        }
        let (len, source) = match received {
            Ok(received) => {
                consecutive_errors = 0;
                received
            }
            Err(e) => {
                consecutive_errors += 1;
                tracing::warn!(shard, "recv_from failed: {e}");
                if consecutive_errors >= MAX_CONSECUTIVE_RECV_ERRORS {
                    return Err(ShardError::Io {
                        shard,
                        source: e.into(),
                    });
                }
                continue;
            }
        };
        // glommio's receive returns at once while the socket has data, so without this the loop would never
        // give way under sustained load: requests handed over by peers, expiry and the stop check would wait
        // until the socket drains. Cheap (two loads) unless the executor's preempt timer has fired.
        glommio::executor().yield_if_needed().await;
        let datagram = &buf[..len];
        {
            let mut c = counters.borrow_mut();
            c.datagrams_in += 1;
            if len > max_datagram_bytes {
                c.oversized += 1;
            }
        }
        // The borrow ends before the await below: the expiry task may run while the reply is in flight.
        let (reply, late) = {
            let mut core = core.borrow_mut();
            let reply = core.on_datagram(datagram, source, now(), &mut out);
            core.end_of_turn();
            (reply && !core.hold_reply(&out, source), core.take_late())
        };
        if reply {
            send_reply(shard, &socket, &out, source, &counters).await;
        }
        if !late.is_empty() {
            send_late(shard, &socket, late, &counters).await;
        }
        // Whether the socket is now likely empty: the receive had to wait for this datagram, or a drain
        // came back short.
        let mut emptied = waited;
        let mut taken = 1;
        if let Some(batch) = batches.as_mut().filter(|_| !waited) {
            if backoff.should_try() {
                let drained = drain(shard, &socket, &core, cfg, batch, &mut out, &counters).await;
                backoff.drained(drained);
                taken += drained;
                emptied = true;
            }
        }
        let at = std::time::Instant::now();
        coalesce.received(taken, at);
        // Only a socket found empty is a chance to hold (and counts against the back-off).
        if let Some(hold) = emptied.then(|| coalesce.hold(at)).flatten() {
            counters.borrow_mut().coalesce_holds += 1;
            glommio::timer::sleep(hold).await;
            held = true;
        }
    }
}

/// Longest run of non-waiting receives [`DrainBackoff`] lets pass without a drain.
const MAX_DRAIN_SKIP: u32 = 16;

/// Whether a receive that did not wait is followed by a drain. At once while drains find datagrams; after
/// one that found none, the next 1, then 2, 4, ... up to [`MAX_DRAIN_SKIP`] such receives go without, so
/// that traffic whose datagrams arrive one at a time (each just after the previous one was taken) rarely
/// pays an empty `recvmmsg`. A drain that finds datagrams resets it.
#[derive(Debug, Default)]
struct DrainBackoff {
    skip: u32,
    left: u32,
}

impl DrainBackoff {
    fn should_try(&mut self) -> bool {
        if self.left > 0 {
            self.left -= 1;
            return false;
        }
        true
    }

    /// After a drain that took `datagrams` from the socket.
    fn drained(&mut self, datagrams: usize) {
        if datagrams > 0 {
            self.skip = 0;
        } else {
            self.skip = (self.skip * 2).clamp(1, MAX_DRAIN_SKIP);
        }
        self.left = self.skip;
    }
}

/// Takes the datagrams queued on the socket, a batch per `recvmmsg`, and answers each batch with one
/// `sendmmsg`, until a batch comes back short of full (the queue was empty at that moment: the caller's
/// waiting receive takes over). A receive error ends the drain (the caller's receive reports it). Returns
/// how many datagrams it took.
async fn drain<H: DatagramHandler>(
    shard: usize,
    socket: &UdpSocket,
    core: &RefCell<H>,
    cfg: RecvConfig,
    (inbox, outbox): &mut (RecvBatch, SendBatch),
    out: &mut Vec<u8>,
    counters: &RefCell<ShardReport>,
) -> usize {
    let mut taken = 0;
    loop {
        let n = match inbox.recv(socket) {
            Ok(0) => return taken,
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(shard, "recvmmsg failed: {e}");
                return taken;
            }
        };
        taken += n;
        {
            let mut c = counters.borrow_mut();
            c.datagrams_in += n as u64;
            c.batched_in += n as u64;
            c.recv_batches += 1;
        }
        outbox.clear();
        let now = now();
        for received in inbox.iter() {
            if received.datagram.len() > cfg.max_datagram_bytes {
                counters.borrow_mut().oversized += 1;
            }
            // A UDP/IP socket only receives from IPv4/IPv6 sources; anything else has nowhere to be answered.
            let Some(source) = received.source else {
                continue;
            };
            let mut c = core.borrow_mut();
            if c.on_datagram(received.datagram, source, now, out) && !c.hold_reply(out, source) {
                // The outbox holds as many replies as the inbox datagrams: it cannot be full here.
                let queued = outbox.push(out, Some(source));
                debug_assert!(queued);
            }
        }
        core.borrow_mut().end_of_turn();
        let late = core.borrow_mut().take_late();
        send_batch(shard, socket, outbox, counters).await;
        if !late.is_empty() {
            send_late(shard, socket, late, counters).await;
        }
        glommio::executor().yield_if_needed().await;
        if n < inbox.capacity() {
            return taken;
        }
    }
}

/// Sends a batch's replies with `sendmmsg`. A full send buffer (nothing taken) falls back to glommio's send
/// for the next reply, which waits for room; a reply the kernel refuses is counted and skipped, like
/// [`send_reply`]'s.
pub(super) async fn send_batch(
    shard: usize,
    socket: &UdpSocket,
    outbox: &mut SendBatch,
    counters: &RefCell<ShardReport>,
) {
    let mut sent = 0;
    while sent < outbox.len() {
        match outbox.send_from(socket, sent) {
            Ok(0) => {
                if let Some((reply, Some(to))) = outbox.get(sent) {
                    send_reply(shard, socket, reply, to, counters).await;
                }
                sent += 1;
            }
            Ok(k) => {
                counters.borrow_mut().replies_out += k as u64;
                sent += k;
            }
            Err(e) => {
                counters.borrow_mut().send_errors += 1;
                tracing::debug!(shard, "sendmmsg failed for a reply: {e}");
                sent += 1;
            }
        }
    }
}

/// Sends the replies a core made at the end of a turn ([`DatagramHandler::take_late`]), one by one: only a
/// stopping process makes any.
async fn send_late(
    shard: usize,
    socket: &UdpSocket,
    late: Vec<(Vec<u8>, SocketAddr)>,
    counters: &RefCell<ShardReport>,
) {
    for (reply, to) in late {
        send_reply(shard, socket, &reply, to, counters).await;
    }
}

/// Sends one reply and counts it. A reply that cannot leave (unreachable source, full buffer) is lost like any
/// UDP packet, and the client retransmits: counted and logged at debug, never fatal for the shard.
pub async fn send_reply(
    shard: usize,
    socket: &UdpSocket,
    reply: &[u8],
    to: SocketAddr,
    counters: &RefCell<ShardReport>,
) {
    match socket.send_to(reply, to).await {
        Ok(_) => counters.borrow_mut().replies_out += 1,
        Err(e) => {
            counters.borrow_mut().send_errors += 1;
            tracing::debug!(shard, %to, "send_to failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drains_go_on_while_they_find_datagrams() {
        let mut b = DrainBackoff::default();
        for _ in 0..5 {
            assert!(b.should_try());
            b.drained(3);
        }
    }

    #[test]
    fn empty_drains_back_off_doubling_up_to_the_cap_and_a_find_resets() {
        let mut b = DrainBackoff::default();
        // An empty drain, then the receives that go without one until the next attempt.
        let mut skipped_after_empty = || {
            b.drained(0);
            let mut n = 0;
            while !b.should_try() {
                n += 1;
            }
            n
        };
        let skipped: Vec<u32> = (0..7).map(|_| skipped_after_empty()).collect();
        assert_eq!(skipped, [1, 2, 4, 8, 16, 16, 16]);
        b.drained(5);
        assert!(
            b.should_try(),
            "a drain that found datagrams resets the back-off"
        );
        b.drained(0);
        assert!(!b.should_try(), "and the next empty one starts again at 1");
        assert!(b.should_try());
    }
}
