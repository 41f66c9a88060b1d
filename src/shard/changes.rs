//! The shard's end of the change stream: after each turn of work (a datagram or a batch of them, a request a
//! peer handed over, a batch of expiries) the shard takes the changes its registrar recorded and hands them,
//! as one batch, to whoever listens (the event hub) over a bounded channel.
//!
//! A shard never waits for a listener: when the channel is full, the batch is dropped and counted, and the
//! listener sees the gap in the sequence numbers. Without a listener the batches are dropped at once, so the
//! registrar's buffer never holds more than one turn's changes.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use crossbeam_channel::{Sender, TrySendError};

use super::journal::Journal;
use super::udp::DatagramHandler;
use crate::registrar::changes::ChangeBatch;
use crate::registrar::{Now, Registrar};

/// One shard's batch of changes.
#[derive(Debug)]
pub struct ShardChanges {
    pub shard: usize,
    pub batch: ChangeBatch,
}

/// Capacity of a change batch's buffer kept for the next turn; a larger one (after a burst) is let go.
const SPARE_KEEP_BYTES: usize = 64 * 1024;

/// Hands a shard's changes on. Shared by the shard's tasks (receive loop, handoffs, expiry).
#[derive(Debug)]
pub struct ChangeFeed {
    shard: usize,
    sink: Option<Sender<ShardChanges>>,
    spare: Vec<u8>,
    /// The shard's journal (None: `--data-dir none`): every batch is appended to it first.
    journal: Option<Rc<Journal>>,
    /// Changes handed on.
    pub published: u64,
    /// Changes dropped because the listener's channel was full.
    pub dropped: u64,
}

impl ChangeFeed {
    pub fn new(shard: usize, sink: Option<Sender<ShardChanges>>) -> Self {
        ChangeFeed {
            shard,
            sink,
            spare: Vec::new(),
            journal: None,
            published: 0,
            dropped: 0,
        }
    }

    /// Appends every batch to `journal` before handing it on.
    pub fn set_journal(&mut self, journal: Option<Rc<Journal>>) {
        self.journal = journal;
    }

    pub fn journal(&self) -> Option<&Rc<Journal>> {
        self.journal.as_ref()
    }

    /// Whether `reply`, written after the registrar's change `seq`, must wait for the journal (then the
    /// journal keeps it and sends it once written; see [`Journal::hold`]).
    pub fn hold(&self, reply: &[u8], to: SocketAddr, seq: u64) -> bool {
        self.journal
            .as_ref()
            .is_some_and(|j| j.hold(reply, to, seq))
    }

    /// Takes the registrar's pending changes, appends them to the journal, and hands them on (or drops them,
    /// without a listener).
    pub fn publish(&mut self, registrar: &mut Registrar) {
        if registrar.store().changes().pending() == 0 {
            return;
        }
        let batch = registrar.take_changes(std::mem::take(&mut self.spare));
        let count = batch.len() as u64;
        if let Some(journal) = &self.journal {
            let last = registrar.last_seq();
            journal.append(batch.as_bytes(), last + 1 - count, last);
        }
        let Some(sink) = &self.sink else {
            self.keep_spare(batch.into_bytes());
            return;
        };
        let sent = ShardChanges {
            shard: self.shard,
            batch,
        };
        match sink.try_send(sent) {
            Ok(()) => self.published += count,
            Err(TrySendError::Full(back) | TrySendError::Disconnected(back)) => {
                self.dropped += count;
                self.keep_spare(back.batch.into_bytes());
            }
        }
    }

    fn keep_spare(&mut self, buf: Vec<u8>) {
        if buf.capacity() <= SPARE_KEEP_BYTES {
            self.spare = buf;
        }
    }
}

/// The registrar as the receive loop's core when it owns every AoR (one shard), publishing its changes after
/// each turn.
pub struct Publishing {
    pub registrar: Rc<RefCell<Registrar>>,
    pub feed: Rc<RefCell<ChangeFeed>>,
}

impl DatagramHandler for Publishing {
    fn on_datagram(
        &mut self,
        datagram: &[u8],
        source: SocketAddr,
        now: Now,
        out: &mut Vec<u8>,
    ) -> bool {
        self.registrar
            .borrow_mut()
            .on_datagram(datagram, source, now, out)
    }

    fn end_of_turn(&mut self) {
        self.feed
            .borrow_mut()
            .publish(&mut self.registrar.borrow_mut());
    }

    fn hold_reply(&mut self, reply: &[u8], to: SocketAddr) -> bool {
        let seq = self.registrar.borrow().last_seq();
        self.feed.borrow().hold(reply, to, seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registrar::changes::ChangeKind;
    use crate::registrar::{testing, RegistrarConfig};

    fn register(reg: &mut Registrar, user: &str) {
        let contact = format!("<sip:{user}@192.0.2.1>");
        let _ = testing::handle(reg, &testing::register_message(user, 1, &contact, 60, ""));
    }

    #[test]
    fn changes_reach_the_listener_in_order_and_a_full_channel_drops_and_counts() {
        let mut reg = Registrar::new(RegistrarConfig::default(), Now::from_secs(1000));
        let (tx, rx) = crossbeam_channel::bounded(1);
        let mut feed = ChangeFeed::new(3, Some(tx));
        feed.publish(&mut reg);
        assert!(rx.try_recv().is_err(), "no change, no batch");
        register(&mut reg, "alice");
        register(&mut reg, "bob");
        feed.publish(&mut reg);
        let got = rx.try_recv().expect("a batch");
        assert_eq!(got.shard, 3);
        let seqs: Vec<_> = got
            .batch
            .iter()
            .map(|c| c.map(|c| (c.seq, c.kind, c.aor.to_vec())))
            .collect::<Result<_, _>>()
            .expect("decodes");
        assert_eq!(
            seqs,
            [
                (1, ChangeKind::Registered, b"sip:alice@example.com".to_vec()),
                (2, ChangeKind::Registered, b"sip:bob@example.com".to_vec())
            ]
        );
        register(&mut reg, "carol");
        feed.publish(&mut reg);
        register(&mut reg, "dave");
        feed.publish(&mut reg);
        assert_eq!((feed.published, feed.dropped), (3, 1));
        assert_eq!(reg.store().changes().pending(), 0, "nothing piles up");
        assert_eq!(
            reg.store().changes().next_seq(),
            5,
            "the dropped change used its number"
        );
    }

    #[test]
    fn without_a_listener_nothing_piles_up() {
        let mut reg = Registrar::new(RegistrarConfig::default(), Now::from_secs(1000));
        let mut feed = ChangeFeed::new(0, None);
        register(&mut reg, "alice");
        feed.publish(&mut reg);
        assert_eq!(reg.store().changes().pending(), 0);
        assert_eq!((feed.published, feed.dropped), (0, 0));
    }
}
