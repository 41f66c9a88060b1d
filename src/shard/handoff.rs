//! Cross-shard handoff: every AoR has one owning shard, but the kernel spreads datagrams over the shards'
//! SO_REUSEPORT sockets by 4-tuple, so most REGISTERs arrive on a shard that does not own their AoR.
//!
//! The receiving shard's core ([`Registrar::set_partition`]) answers everything stateless itself and, for a
//! REGISTER whose AoR another shard owns (hash of the canonical AoR with the process-wide seed, mod shards),
//! returns `Outcome::HandOff { owner }` without touching state; the shell then copies the datagram
//! into a [`Handoff`] and `try_send`s it over a bounded glommio `shared_channel` (one SPSC queue per ordered
//! pair of shards). The owner re-parses and applies it in its own registrar, and replies from its own socket:
//! it is bound to the same address and port, so the phone cannot tell which shard answered.
//!
//! Never blocking, never dropping silently: when the owner's queue is full the receiver answers 503 with
//! Retry-After itself ([`Registrar::reject_overloaded`], stateless) and counts it.
//!
//! Ordering: requests of one AoR are applied in the order the owner takes them. A client that waits for each
//! answer before its next request (as RFC 3261 registrations do, one transaction at a time per Call-ID) sees
//! them applied in order whichever shards receive them.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use glommio::channels::shared_channel::{
    self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};
use glommio::net::UdpSocket;
use glommio::GlommioError;

use super::changes::ChangeFeed;
use super::udp::{send_reply, DatagramHandler, REPLY_CAPACITY};
use super::{now, ShardReport};
use crate::registrar::{Now, Outcome, Registrar};

/// One request handed to its owner: the datagram's bytes and where it came from, nothing else (the owner
/// re-parses: borrowed parse results cannot cross threads, and a parse costs less than carrying offsets).
#[derive(Debug)]
pub struct Handoff {
    pub datagram: Box<[u8]>,
    pub source: SocketAddr,
}

/// One shard's ends of the channel mesh, created on the starting thread (they are `Send`) and connected
/// inside the shard's executor.
#[derive(Debug, Default)]
pub struct Links {
    /// Indexed by destination shard; None at this shard's own index.
    pub senders: Vec<Option<SharedSender<Handoff>>>,
    /// (source shard, its queue to this shard).
    pub receivers: Vec<(usize, SharedReceiver<Handoff>)>,
}

/// The mesh for `shards` shards: one bounded queue of `capacity` per ordered pair, so each queue has one
/// producer and one consumer (glommio's shared channels are SPSC). Element `i` is shard `i`'s ends.
pub fn mesh(shards: usize, capacity: usize) -> Vec<Links> {
    let mut links: Vec<Links> = (0..shards)
        .map(|_| Links {
            senders: (0..shards).map(|_| None).collect(),
            receivers: Vec::with_capacity(shards.saturating_sub(1)),
        })
        .collect();
    for from in 0..shards {
        for to in 0..shards {
            if from == to {
                continue;
            }
            let (tx, rx) = shared_channel::new_bounded(capacity);
            links[from].senders[to] = Some(tx);
            links[to].receivers.push((from, rx));
        }
    }
    links
}

/// A shard's connected ends.
pub struct Connected {
    pub senders: Vec<Option<ConnectedSender<Handoff>>>,
    pub receivers: Vec<(usize, ConnectedReceiver<Handoff>)>,
}

impl Links {
    /// Connects every end; returns once every peer has connected its side too (that is when a sender learns
    /// how to wake its consumer). All connections progress concurrently, as separate tasks: connecting them
    /// one by one would deadlock (shard 0 waiting for shard 1's receiver while shard 1 waits for shard 0's).
    /// A peer that dies before connecting drops its ends, which releases the wait.
    pub async fn connect(self) -> Connected {
        let senders: Vec<_> = self
            .senders
            .into_iter()
            .map(|s| s.map(|s| glommio::spawn_local(s.connect())))
            .collect();
        let receivers: Vec<_> = self
            .receivers
            .into_iter()
            .map(|(peer, r)| (peer, glommio::spawn_local(r.connect())))
            .collect();
        let mut connected = Connected {
            senders: Vec::with_capacity(senders.len()),
            receivers: Vec::with_capacity(receivers.len()),
        };
        for (to, task) in senders.into_iter().enumerate() {
            connected.senders.push(match task {
                Some(task) => {
                    let sender = task.await;
                    tracing::trace!(to, "handoff sender connected");
                    Some(sender)
                }
                None => None,
            });
        }
        for (peer, task) in receivers {
            connected.receivers.push((peer, task.await));
            tracing::trace!(peer, "handoff receiver connected");
        }
        connected
    }
}

/// The registrar as the receive loop's core on a multi-shard instance: applies what this shard owns (and
/// everything without an owner: OPTIONS, garbage, ...), hands the rest to its owner.
pub struct Router {
    pub id: usize,
    pub registrar: Rc<RefCell<Registrar>>,
    /// Indexed by shard (None at `id`); its length is the shard count.
    pub peers: Vec<Option<ConnectedSender<Handoff>>>,
    pub counters: Rc<RefCell<ShardReport>>,
    pub feed: Rc<RefCell<ChangeFeed>>,
}

impl DatagramHandler for Router {
    fn end_of_turn(&mut self) {
        self.feed
            .borrow_mut()
            .publish(&mut self.registrar.borrow_mut());
    }

    fn hold_reply(&mut self, reply: &[u8], to: SocketAddr) -> bool {
        let seq = self.registrar.borrow().last_seq();
        self.feed.borrow().hold(reply, to, seq)
    }

    fn on_datagram(
        &mut self,
        datagram: &[u8],
        source: SocketAddr,
        now: Now,
        out: &mut Vec<u8>,
    ) -> bool {
        // The core answers what it can here and names the owner of anything else (one parse either way).
        let outcome = self
            .registrar
            .borrow_mut()
            .handle(datagram, source, now, out);
        let owner = match outcome {
            Outcome::Reply { .. } => return true,
            Outcome::Silent(_) => return false,
            Outcome::HandOff { owner } => owner,
        };
        let Some(peer) = self.peers.get(owner).and_then(Option::as_ref) else {
            // The partition and the mesh are built from the same shard count: unreachable.
            debug_assert!(false, "no queue to shard {owner}");
            return false;
        };
        let handoff = Handoff {
            datagram: datagram.into(),
            source,
        };
        match peer.try_send(handoff) {
            Ok(()) => {
                self.counters.borrow_mut().handed_off += 1;
                false
            }
            Err(e) => {
                // Full queue: the owner is behind. Closed: the owner is stopping (the process is going down).
                // Either way answer 503 + Retry-After now rather than wait or drop: the phone retries later.
                {
                    let mut c = self.counters.borrow_mut();
                    if matches!(e, GlommioError::Closed(_)) {
                        c.peer_closed_503 += 1;
                    } else {
                        c.overloaded_503 += 1;
                    }
                }
                tracing::debug!(shard = self.id, ?owner, %source, "owner's queue refused the request: 503");
                let outcome = self
                    .registrar
                    .borrow_mut()
                    .reject_overloaded(datagram, source, now, out);
                matches!(outcome, Outcome::Reply { .. })
            }
        }
    }
}

/// Applies the requests a peer hands to this shard, and answers them from this shard's socket. Ends when the
/// peer closes its end (it is stopping), or when its task is cancelled.
pub async fn inbound_loop(
    shard: usize,
    peer: usize,
    queue: ConnectedReceiver<Handoff>,
    registrar: Rc<RefCell<Registrar>>,
    socket: Rc<UdpSocket>,
    counters: Rc<RefCell<ShardReport>>,
    feed: Rc<RefCell<ChangeFeed>>,
) {
    let mut out = Vec::with_capacity(REPLY_CAPACITY);
    while let Some(request) = queue.recv().await {
        counters.borrow_mut().from_peers += 1;
        // The borrow ends before the await: the socket loop and the expiry task share the registrar.
        let reply = {
            let mut registrar = registrar.borrow_mut();
            let reply = registrar.on_datagram(&request.datagram, request.source, now(), &mut out);
            let mut feed = feed.borrow_mut();
            feed.publish(&mut registrar);
            // A reply whose changes are not written yet leaves once they are (the journal sends it).
            reply && !feed.hold(&out, request.source, registrar.last_seq())
        };
        if reply {
            send_reply(shard, &socket, &out, request.source, &counters).await;
        }
    }
    tracing::debug!(shard, peer, "handoff queue closed by its sender");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mesh_has_one_queue_per_ordered_pair() {
        let links = mesh(3, 4);
        for (id, l) in links.iter().enumerate() {
            assert_eq!(l.senders.len(), 3);
            for (to, s) in l.senders.iter().enumerate() {
                assert_eq!(s.is_some(), to != id);
            }
            let mut from: Vec<usize> = l.receivers.iter().map(|(p, _)| *p).collect();
            from.sort_unstable();
            assert_eq!(from, (0..3).filter(|&p| p != id).collect::<Vec<_>>());
        }
        assert!(mesh(1, 4)[0].receivers.is_empty());
    }
}
