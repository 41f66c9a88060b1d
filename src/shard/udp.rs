//! The receive loop: one datagram in, at most one reply out, to the datagram's source.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use glommio::net::UdpSocket;

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

/// Receives forever; returns only on a persistent socket error. Runs until its task is cancelled.
///
/// The receive buffer holds `max_datagram_bytes + 1` bytes: the kernel truncates a longer datagram to the
/// buffer, so the core sees `len > max_datagram_bytes` and can refuse it (it cannot tell by how much).
pub async fn recv_loop<H: DatagramHandler>(
    shard: usize,
    socket: Rc<UdpSocket>,
    core: Rc<RefCell<H>>,
    max_datagram_bytes: usize,
    counters: Rc<RefCell<ShardReport>>,
) -> Result<(), ShardError> {
    let mut buf = vec![0u8; max_datagram_bytes + 1];
    let mut out = Vec::with_capacity(REPLY_CAPACITY);
    let mut consecutive_errors = 0u32;
    loop {
        let (len, source) = match socket.recv_from(&mut buf).await {
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
        let reply = core
            .borrow_mut()
            .on_datagram(datagram, source, now(), &mut out);
        if !reply {
            continue;
        }
        send_reply(shard, &socket, &out, source, &counters).await;
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
