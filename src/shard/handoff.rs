//! Cross-shard handoff: every AoR has one owning shard, but datagrams arrive on any shard's socket (spread
//! at random, or by the sender's 4-tuple: [`super::steer`]), so most REGISTERs arrive on a shard that does
//! not own their AoR.
//!
//! The receiving shard's core ([`Registrar::set_partition`]) answers everything stateless itself and, for a
//! REGISTER whose AoR another shard owns (hash of the canonical AoR with the process-wide seed, mod shards),
//! returns `Outcome::HandOff { owner }` without touching state; the [`Router`] then copies the datagram into
//! the batch it gathers for that owner this turn, and hands the turn's batches over at its end
//! ([`super::mesh`]). The owner's [`inbound_loop`] re-parses and applies a whole batch in its own registrar,
//! and sends the batch's replies with one `sendmmsg` from its own socket: it is bound to the same address and
//! port, so the phone cannot tell which shard answered.
//!
//! Never blocking, never dropping silently: when the owner's inbox is full (`--handoff-queue` datagrams) the
//! receiver answers 503 with Retry-After itself ([`Registrar::reject_overloaded`], stateless) and counts it.
//!
//! Ordering: requests of one AoR are applied in the order the owner takes them. A client that waits for each
//! answer before its next request (as RFC 3261 registrations do, one transaction at a time per Call-ID) sees
//! them applied in order whichever shards receive them.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use corereg_udp::SendBatch;
use glommio::net::UdpSocket;

use super::changes::ChangeFeed;
use super::mesh::{Inbox, Outbound, Refused, Wake};
use super::udp::{send_batch, DatagramHandler, REPLY_CAPACITY};
use super::{now, ShardReport};
use crate::registrar::{Now, Outcome, Registrar};

/// The registrar as the receive loop's core on a multi-shard instance: applies what this shard owns (and
/// everything without an owner: OPTIONS, garbage, ...), gathers the rest for its owner.
pub struct Router {
    pub id: usize,
    pub registrar: Rc<RefCell<Registrar>>,
    pub outbound: Outbound,
    /// Shared with this shard's inbound loop.
    pub wake: Rc<Wake>,
    pub counters: Rc<RefCell<ShardReport>>,
    pub feed: Rc<RefCell<ChangeFeed>>,
    /// Replies made at the end of a turn, for the receive loop to send ([`DatagramHandler::take_late`]).
    pub late: Vec<(Vec<u8>, SocketAddr)>,
}

impl DatagramHandler for Router {
    fn about_to_wait(&mut self) {
        self.outbound.about_to_wait(&self.wake);
    }

    fn end_of_turn(&mut self) {
        self.outbound.awake(&self.wake);
        // An owner that let go of its inbox during this turn (the process is stopping) hands its requests
        // back: answered 503 + Retry-After here, as those refused at the offer are.
        let (registrar, late) = (&self.registrar, &mut self.late);
        let mut unanswerable = 0u64;
        let flushed = self.outbound.flush(|datagram, source| {
            let mut out = Vec::new();
            let outcome =
                registrar
                    .borrow_mut()
                    .reject_overloaded(datagram, source, now(), &mut out);
            if matches!(outcome, Outcome::Reply { .. }) {
                late.push((out, source));
            } else {
                unanswerable += 1;
            }
        });
        if flushed.batches > 0 {
            let mut c = self.counters.borrow_mut();
            c.handoff_batches += flushed.batches as u64;
            c.doorbell_rings += flushed.rings as u64;
        }
        if flushed.refused > 0 {
            let mut c = self.counters.borrow_mut();
            c.peer_closed_503 += flushed.refused as u64 - unanswerable;
            c.handoff_lost += unanswerable;
            tracing::debug!(
                shard = self.id,
                refused = flushed.refused,
                "an owner stopped during the turn: its requests are answered 503 here"
            );
        }
        self.feed
            .borrow_mut()
            .publish(&mut self.registrar.borrow_mut());
    }

    fn take_late(&mut self) -> Vec<(Vec<u8>, SocketAddr)> {
        std::mem::take(&mut self.late)
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
        // The first datagram after a wait: the shard is awake, peers need not ring it for this turn.
        if self.wake.is_idle() {
            self.outbound.awake(&self.wake);
        }
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
        let refused = match self.outbound.offer(owner, datagram, source) {
            Ok(()) => {
                self.counters.borrow_mut().handed_off += 1;
                return false;
            }
            Err(refused) => refused,
        };
        // Full: the owner is behind. Closed: the owner is stopping (the process is going down). Either way
        // answer 503 + Retry-After now rather than wait or drop: the phone retries later.
        {
            let mut c = self.counters.borrow_mut();
            match refused {
                Refused::Closed => c.peer_closed_503 += 1,
                Refused::Full => c.overloaded_503 += 1,
            }
        }
        tracing::debug!(shard = self.id, owner, %source, ?refused, "owner's inbox refused the request: 503");
        let outcome = self
            .registrar
            .borrow_mut()
            .reject_overloaded(datagram, source, now, out);
        matches!(outcome, Outcome::Reply { .. })
    }
}

/// What the inbound loop takes batches from: the shard's inbox, the owner's end of its doorbell, and the
/// process' stop flag (from which on it applies nothing more).
pub struct Taking {
    pub inbox: Rc<Inbox>,
    pub bell: Option<socket2::Socket>,
    pub stop: super::Stop,
}

/// Replies sent per `sendmmsg` by the inbound loop (a larger batch is answered in several).
const INBOUND_SEND_BATCH: usize = 64;

/// Applies the batches other shards hand to this one, a whole batch at a time, and answers each batch with
/// `sendmmsg` from this shard's socket. Between batches it waits for a kick: from the receive loop, which
/// looks at the inbox after each turn of work (no system call while the shard is busy), or from the
/// doorbell, which senders ring only once the shard said it would sleep ([`Outbound::about_to_wait`],
/// [`Inbox::arm`]). Runs until its task is cancelled.
pub async fn inbound_loop(
    shard: usize,
    Taking { inbox, bell, stop }: Taking,
    wake: Rc<Wake>,
    registrar: Rc<RefCell<Registrar>>,
    socket: Rc<UdpSocket>,
    counters: Rc<RefCell<ShardReport>>,
    feed: Rc<RefCell<ChangeFeed>>,
) {
    // Cancelled with this loop (dropped at its end).
    let _doorbell = bell.map(|bell| {
        let bell = UdpSocket::from(bell);
        let wake = wake.clone();
        glommio::spawn_local(async move {
            let mut ring = [0u8; 64];
            loop {
                if let Err(e) = bell.recv(&mut ring).await {
                    tracing::warn!(
                        shard,
                        "handoff doorbell failed: {e}; handed requests now wait for this shard's own traffic"
                    );
                    return;
                }
                wake.kick();
            }
        })
    });
    let mut out = Vec::with_capacity(REPLY_CAPACITY);
    let mut outbox = SendBatch::new(INBOUND_SEND_BATCH, REPLY_CAPACITY);
    loop {
        // Replies of consecutive batches share a sendmmsg: with many shards a batch may hold one request.
        outbox.clear();
        // Once the process is told to stop, nothing more is applied: the shard answers what is left 503
        // when its tasks are cancelled ([`refuse_queued`]), and the phones retry after the restart.
        while !stop.is_requested() {
            let Some(batch) = inbox.try_take() else {
                break;
            };
            counters.borrow_mut().from_peers += batch.len() as u64;
            let now = now();
            for (datagram, source) in batch.iter() {
                // The borrow ends before any await: the socket loop and the expiry task share the registrar.
                let reply = {
                    let mut registrar = registrar.borrow_mut();
                    let reply = registrar.on_datagram(datagram, source, now, &mut out);
                    // A reply whose changes are not written yet leaves once they are (the journal sends
                    // it); the batch's changes reach the journal with the publish below, before any await.
                    reply && !feed.borrow().hold(&out, source, registrar.last_seq())
                };
                if reply {
                    queue_reply(shard, &socket, &mut outbox, &out, source, &counters).await;
                }
            }
            inbox.recycle(batch);
            feed.borrow_mut().publish(&mut registrar.borrow_mut());
            if glommio::executor().need_preempt() {
                // Nothing waits behind a yield: what is answered leaves first.
                send_batch(shard, &socket, &mut outbox, &counters).await;
                outbox.clear();
                glommio::executor().yield_if_needed().await;
            }
        }
        send_batch(shard, &socket, &mut outbox, &counters).await;
        if stop.is_requested() {
            // Cancelled within the stop poll; the batches left are answered then.
            std::future::pending::<()>().await;
        }
        // While the receive loop waits for its socket, only the doorbell brings new batches in time.
        if wake.is_idle() && !inbox.arm() {
            continue;
        }
        wake.kicked().await;
    }
}

/// Adds `reply` to `outbox`, sending what it holds first when it is full.
async fn queue_reply(
    shard: usize,
    socket: &UdpSocket,
    outbox: &mut SendBatch,
    reply: &[u8],
    to: SocketAddr,
    counters: &RefCell<ShardReport>,
) {
    if outbox.is_full() {
        send_batch(shard, socket, outbox, counters).await;
        outbox.clear();
    }
    let queued = outbox.push(reply, Some(to));
    debug_assert!(queued, "the outbox was just emptied");
}

/// How long a stopping shard keeps answering batches its peers were still gathering when it closed its inbox
/// (a turn takes well under a millisecond; a peer that stalls longer than this gets its batch back when it
/// hands it over, and answers it 503 itself).
pub const CLOSING_GRACE: Duration = Duration::from_millis(50);

/// At the stop, once the shard's serving tasks are cancelled: closes the inbox, so that peers answer 503
/// themselves from now on, and answers 503 + Retry-After (stateless, nothing applied) to every request
/// handed over but not applied yet, including those of turns its peers finish within `grace`. Without this
/// they would be dropped with the inbox and their clients would wait for a retransmission to time out.
/// Returns how many it answered.
pub async fn refuse_queued(
    shard: usize,
    inbox: &Inbox,
    registrar: &RefCell<Registrar>,
    socket: &UdpSocket,
    counters: &RefCell<ShardReport>,
    grace: Duration,
) -> u64 {
    inbox.close();
    let deadline = std::time::Instant::now() + grace;
    let mut out = Vec::with_capacity(REPLY_CAPACITY);
    let mut outbox = SendBatch::new(INBOUND_SEND_BATCH, REPLY_CAPACITY);
    let mut refused = 0;
    loop {
        while let Some(batch) = inbox.try_take() {
            let now = now();
            for (datagram, source) in batch.iter() {
                let outcome = registrar
                    .borrow_mut()
                    .reject_overloaded(datagram, source, now, &mut out);
                if !matches!(outcome, Outcome::Reply { .. }) {
                    continue;
                }
                refused += 1;
                queue_reply(shard, socket, &mut outbox, &out, source, counters).await;
            }
            inbox.recycle(batch);
        }
        send_batch(shard, socket, &mut outbox, counters).await;
        outbox.clear();
        // Room still reserved: a peer is finishing a turn that offered to this shard before it closed (or a
        // batch taken by the cancelled inbound loop never gave its room back: then the grace runs out).
        if inbox.reserved() == 0 || std::time::Instant::now() >= deadline {
            break;
        }
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    counters.borrow_mut().stopping_503 += refused;
    refused
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registrar::RegistrarConfig;
    use crate::shard::mesh::mesh;

    fn register(user: &str) -> Vec<u8> {
        format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK-{user}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@example.com>;tag=f\r\nTo: <sip:{user}@example.com>\r\n\
             Call-ID: cid-{user}\r\nCSeq: 1 REGISTER\r\nContact: <sip:{user}@192.0.2.10:5062>\r\n\
             Expires: 600\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    /// A request handed to an owner that lets go of its inbox before the turn ends (the process stops, and
    /// this shard's turn outlasted the owner's grace) is answered 503 + Retry-After by this shard, once.
    #[test]
    fn a_request_for_an_owner_that_stopped_mid_turn_is_answered_503_by_the_receiver() {
        let mut links = mesh(2, 64).unwrap().into_iter();
        let (outbound, _inbox0) = links.next().unwrap().split();
        let (_out1, inbox1) = links.next().unwrap().split();
        let cfg = RegistrarConfig {
            retry_after_s: 9,
            ..RegistrarConfig::default()
        };
        let now = Now::from_secs(1_700_000_000);
        let mut registrar = Registrar::new(cfg, now);
        registrar.set_partition(0, 2);
        let counters = Rc::new(RefCell::new(ShardReport::default()));
        let mut router = Router {
            id: 0,
            registrar: Rc::new(RefCell::new(registrar)),
            outbound,
            wake: Rc::new(Wake::default()),
            counters: counters.clone(),
            feed: Rc::new(RefCell::new(ChangeFeed::new(0, None))),
            late: Vec::new(),
        };
        let source: SocketAddr = "192.0.2.10:5062".parse().unwrap();
        let mut out = Vec::new();
        // The first user shard 1 owns: handed over, nothing answered yet.
        let user = (0..1000)
            .map(|i| format!("u{i}"))
            .find(|user| {
                let mut probe = router.registrar.borrow_mut();
                matches!(
                    probe.handle(&register(user), source, now, &mut out),
                    Outcome::HandOff { owner: 1 }
                )
            })
            .expect("a user owned by shard 1");
        assert!(!router.on_datagram(&register(&user), source, now, &mut out));
        assert_eq!(counters.borrow().handed_off, 1);

        drop(inbox1);
        router.end_of_turn();
        let late = router.take_late();
        assert_eq!(late.len(), 1, "one answer for the one request");
        let (reply, to) = &late[0];
        assert_eq!(*to, source);
        let text = String::from_utf8_lossy(reply);
        assert!(text.starts_with("SIP/2.0 503 "), "{text}");
        assert!(text.contains("\r\nRetry-After: 9\r\n"), "{text}");
        assert!(
            text.contains("branch=z9hG4bK-"),
            "the reply matches its request: {text}"
        );
        let c = counters.borrow();
        assert_eq!((c.peer_closed_503, c.handoff_lost), (1, 0));
        drop(c);
        assert!(router.take_late().is_empty(), "answered once");
    }
}
