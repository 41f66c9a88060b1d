//! The event hub: the change stream of every shard, merged, numbered, kept for a while and fanned out to
//! subscribers. It runs on a plain thread, never in a shard.
//!
//! Each change that reaches the hub gets an event id (1, 2, 3, … across all shards, in arrival order; a
//! shard's own changes keep their order). The shards never wake the hub: it takes what they sent every few
//! milliseconds ([`HubConfig::gather`]), so its cost grows with the batches, not with the changes, and
//! subscribers receive events in bursts they can write in one go. Events are kept as the shards encoded
//! them and turned into [`Event`]s only for a subscriber, so a hub nobody listens to costs little. The hub
//! keeps at least the last `window` events, so a subscriber that
//! reconnects with the id of the last event it saw resumes right after it, while the hub still holds it;
//! otherwise it is told that it missed events. Each subscriber has a bounded queue: one that falls behind
//! is cut off (its last message says so) and never slows the hub, let alone a shard. When a shard's
//! sequence numbers jump (its channel to the hub was full and it dropped a batch), subscribers are told
//! that changes were lost.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

pub use crate::registrar::changes::BindingView;
use crate::registrar::changes::{Change, ChangeBatch, ChangeKind};
use crate::shard::changes::ShardChanges;

/// One binding change, owned, as subscribers receive it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The hub's number for it: rises by one per event.
    pub id: u64,
    pub shard: usize,
    /// The shard's sequence number (also the AoR's version).
    pub seq: u64,
    pub kind: ChangeKind,
    /// When the change happened, Unix seconds.
    pub at_s: u64,
    pub aor: String,
    pub binding: BindingView,
    /// The event as the event stream sends it (its SSE frame), written once by the first stream that sends
    /// it and copied by the others ([`crate::api::server`]).
    pub sse: std::sync::OnceLock<String>,
}

impl Event {
    fn from_change(id: u64, shard: usize, c: &Change<'_>) -> Self {
        Event {
            id,
            shard,
            seq: c.seq,
            kind: c.kind,
            at_s: c.at_s,
            aor: String::from_utf8_lossy(c.aor).into_owned(),
            binding: c.binding.to_view(),
            sse: std::sync::OnceLock::new(),
        }
    }
}

/// What a subscriber receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Event(Arc<Event>),
    /// Changes of `shard` were lost before the hub saw them (its channel to the hub was full): what the
    /// subscriber knows of that shard's AoRs may be stale.
    Lost {
        shard: usize,
        changes: u64,
    },
    /// The last message: the subscriber fell more than its queue behind and is cut off.
    CutOff,
}

/// A subscriber's end: its messages, in order. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    messages: mpsc::Receiver<Message>,
}

impl Subscription {
    /// The next message, waiting for it; None once the hub is gone or after [`Message::CutOff`].
    pub async fn next(&mut self) -> Option<Message> {
        self.messages.recv().await
    }

    /// The next message from a plain thread (never from an async task), waiting for it.
    pub fn blocking_next(&mut self) -> Option<Message> {
        self.messages.blocking_recv()
    }

    /// The next message when one is already queued.
    pub fn try_next(&mut self) -> Option<Message> {
        self.messages.try_recv().ok()
    }

    /// Every message already queued.
    pub fn drain(&mut self) -> Vec<Message> {
        std::iter::from_fn(|| self.try_next()).collect()
    }
}

/// Why a subscription cannot resume where it asked to.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum ResumeError {
    /// The events after `after` are no longer held (the oldest held is `oldest`, or none is held).
    #[error("events after {after} are no longer held (oldest held: {oldest:?}); start again from a snapshot")]
    TooOld { after: u64, oldest: Option<u64> },
    /// `after` is beyond the last event.
    #[error("event {after} does not exist yet (last: {last})")]
    InFuture { after: u64, last: u64 },
}

/// The hub's limits.
#[derive(Clone, Copy, Debug)]
pub struct HubConfig {
    /// Events kept for resuming subscribers.
    pub window: usize,
    /// Messages a subscriber's queue holds before it is cut off.
    pub subscriber_queue: usize,
    /// Subscribers at once; more are refused.
    pub max_subscribers: usize,
    /// How long the shards' changes gather before the hub takes them; when it finds none, it waits twice
    /// as long next time, up to [`IDLE_GATHERS`] times this.
    pub gather: Duration,
}

/// How many times [`HubConfig::gather`] an idle hub waits at most between two looks.
pub const IDLE_GATHERS: u32 = 8;

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            window: 100_000,
            subscriber_queue: 10_000,
            max_subscribers: 64,
            gather: Duration::from_millis(10),
        }
    }
}

/// A shard's batch as the hub keeps it for resuming subscribers: the encoded changes, numbered from
/// `first_id`.
#[derive(Debug)]
struct Held {
    shard: usize,
    first_id: u64,
    /// How many of the batch's records are events (a record that did not decode ends the batch).
    count: u64,
    batch: ChangeBatch,
}

impl Held {
    /// The held events with ids above `after`.
    fn events_after(&self, after: u64) -> impl Iterator<Item = Arc<Event>> + '_ {
        let skip = after.saturating_sub(self.first_id - 1).min(self.count);
        let count = usize::try_from(self.count).unwrap_or(usize::MAX);
        let skip = usize::try_from(skip).unwrap_or(usize::MAX);
        self.batch
            .iter()
            .take(count)
            .enumerate()
            .skip(skip)
            .filter_map(move |(i, change)| {
                let change = change.ok()?;
                Some(Arc::new(Event::from_change(
                    self.first_id + i as u64,
                    self.shard,
                    &change,
                )))
            })
    }
}

/// Why a subscription was refused.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum SubscribeError {
    #[error(transparent)]
    Resume(#[from] ResumeError),
    #[error("too many subscribers (at most {0})")]
    TooMany(usize),
}

/// The hub's state; [`run`] drives it from the shards' channel.
pub struct Hub {
    cfg: HubConfig,
    /// The batches holding the last events, oldest first.
    window: VecDeque<Held>,
    /// Events in `window`.
    held: u64,
    last_id: u64,
    /// The last sequence number seen from each shard.
    shard_seq: Vec<u64>,
    /// Each subscriber's queue (closed once its [`Subscription`] is dropped).
    subscribers: Vec<mpsc::Sender<Message>>,
    /// Messages for the subscribers, sent by [`Hub::flush`]: each subscriber then gets a look's messages
    /// back to back, and its stream wakes once for them rather than once per event.
    outbox: Vec<Message>,
    /// Changes the shards dropped before the hub saw them.
    pub lost: u64,
    /// Subscribers cut off for falling behind.
    pub cut_off: u64,
}

impl Hub {
    pub fn new(cfg: HubConfig, shards: usize) -> Self {
        Hub {
            cfg,
            window: VecDeque::new(),
            held: 0,
            last_id: 0,
            shard_seq: vec![0; shards],
            subscribers: Vec::new(),
            outbox: Vec::new(),
            lost: 0,
            cut_off: 0,
        }
    }

    /// The id of the last event (0: none yet).
    pub fn last_id(&self) -> u64 {
        self.last_id
    }

    /// A new subscriber: it receives every event after `after` (the hub's last when None).
    pub fn subscribe(&mut self, after: Option<u64>) -> Result<Subscription, SubscribeError> {
        // Subscribers that went away since the last event.
        self.subscribers.retain(|tx| !tx.is_closed());
        if self.subscribers.len() >= self.cfg.max_subscribers {
            return Err(SubscribeError::TooMany(self.cfg.max_subscribers));
        }
        let after = after.unwrap_or(self.last_id);
        if after > self.last_id {
            return Err(ResumeError::InFuture {
                after,
                last: self.last_id,
            }
            .into());
        }
        let oldest = self.window.front().map(|h| h.first_id);
        let first_held = oldest.unwrap_or(self.last_id + 1);
        if after + 1 < first_held {
            return Err(ResumeError::TooOld { after, oldest }.into());
        }
        // More to replay than the queue holds: as if it had fallen behind at once.
        if self.last_id - after >= self.queue_capacity() as u64 {
            return Err(ResumeError::TooOld { after, oldest }.into());
        }
        let (tx, rx) = mpsc::channel(self.queue_capacity());
        let missed = self
            .window
            .iter()
            .filter(|h| h.first_id + h.count > after + 1)
            .flat_map(|h| h.events_after(after));
        for event in missed {
            let _ = tx.try_send(Message::Event(event));
        }
        self.subscribers.push(tx);
        Ok(Subscription { messages: rx })
    }

    /// Takes one shard's batch: numbers its changes, keeps them, and readies them for every subscriber
    /// (sent by the next [`Hub::flush`]).
    pub fn ingest(&mut self, changes: ShardChanges) {
        let ShardChanges { shard, batch } = changes;
        if shard >= self.shard_seq.len() {
            self.shard_seq.resize(shard + 1, 0);
        }
        let first_id = self.last_id + 1;
        let log = tracing::enabled!(tracing::Level::DEBUG);
        for change in batch.iter() {
            let change = match change {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(shard, "undecodable change batch: {e}");
                    break;
                }
            };
            let expected = self.shard_seq[shard] + 1;
            if change.seq > expected {
                let missing = change.seq - expected;
                self.lost += missing;
                self.post(Message::Lost {
                    shard,
                    changes: missing,
                });
            }
            self.shard_seq[shard] = change.seq;
            self.last_id += 1;
            if log {
                log_change(shard, &change);
            }
            if !self.subscribers.is_empty() {
                let event = Arc::new(Event::from_change(self.last_id, shard, &change));
                self.post(Message::Event(event));
            }
        }
        let count = self.last_id + 1 - first_id;
        self.hold(Held {
            shard,
            first_id,
            count,
            batch,
        });
    }

    /// Keeps a batch, and lets the oldest go while the rest hold at least `window` events.
    fn hold(&mut self, held: Held) {
        let window = self.cfg.window as u64;
        if held.count == 0 || window == 0 {
            return;
        }
        self.held += held.count;
        self.window.push_back(held);
        while let Some(front) = self.window.front() {
            if self.held - front.count < window {
                break;
            }
            self.held -= front.count;
            self.window.pop_front();
        }
    }

    fn post(&mut self, message: Message) {
        if !self.subscribers.is_empty() {
            self.outbox.push(message);
        }
    }

    /// Sends every message readied since the last flush to every subscriber, in order; a subscriber whose
    /// queue is full gets the cut-off notice instead and is dropped.
    pub fn flush(&mut self) {
        if self.outbox.is_empty() {
            return;
        }
        // The last slot of each queue is kept for the cut-off notice.
        let room = self.queue_capacity() - 1;
        let outbox = std::mem::take(&mut self.outbox);
        let mut cut = 0;
        self.subscribers.retain(|tx| {
            for message in &outbox {
                if queued(tx) >= room {
                    if tx.try_send(Message::CutOff).is_ok() {
                        cut += 1;
                    }
                    return false;
                }
                if tx.try_send(message.clone()).is_err() {
                    return false;
                }
            }
            true
        });
        self.cut_off += cut;
        self.outbox = outbox;
        self.outbox.clear();
    }

    fn queue_capacity(&self) -> usize {
        self.cfg.subscriber_queue.max(2)
    }

    /// The hub's figures.
    pub fn stats(&self) -> HubStats {
        HubStats {
            last_id: self.last_id,
            held: usize::try_from(self.held).unwrap_or(usize::MAX),
            subscribers: self.subscribers.iter().filter(|tx| !tx.is_closed()).count(),
            lost: self.lost,
            cut_off: self.cut_off,
        }
    }
}

/// The debug log's line for one change.
fn log_change(shard: usize, change: &Change<'_>) {
    tracing::debug!(
        shard,
        seq = change.seq,
        kind = change.kind.as_str(),
        aor = %String::from_utf8_lossy(change.aor).escape_debug(),
        contact = %String::from_utf8_lossy(change.binding.contact).escape_debug(),
        "binding change"
    );
}

/// Messages waiting in a subscriber's queue.
fn queued(tx: &mpsc::Sender<Message>) -> usize {
    tx.max_capacity() - tx.capacity()
}

/// The hub's figures, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HubStats {
    /// The id of the last event.
    pub last_id: u64,
    /// Events held for resuming subscribers.
    pub held: usize,
    pub subscribers: usize,
    /// Changes the shards dropped before the hub saw them.
    pub lost: u64,
    /// Subscribers cut off for falling behind.
    pub cut_off: u64,
}

/// Runs the hub until every shard's sender is gone: every [`HubConfig::gather`] (longer while nothing
/// comes) it takes the batches waiting in `changes`, then answers the waiting `requests`. It sleeps between
/// looks instead of blocking on a channel: a shard's send then never has a sleeping hub to wake, and the
/// hub spends one timer wake-up per look, not a channel's spin-then-park.
pub fn run(mut hub: Hub, changes: Receiver<ShardChanges>, requests: Receiver<Request>) {
    let gather = hub.cfg.gather.max(Duration::from_micros(100));
    let mut wait = gather;
    loop {
        let Ok(taken) = drain(&mut hub, &changes) else {
            return;
        };
        let Ok(asked) = answer(&mut hub, &requests, &changes) else {
            return;
        };
        wait = if taken + asked > 0 {
            gather
        } else {
            (wait * 2).min(gather * IDLE_GATHERS)
        };
        std::thread::sleep(wait);
    }
}

/// Answers every request waiting; how many there were. Before each answer it takes the changes waiting:
/// everything a shard sent before a request was made is in the channel once the request is received, so
/// the answer (a barrier, a subscription's start, the figures) counts it.
fn answer(
    hub: &mut Hub,
    requests: &Receiver<Request>,
    changes: &Receiver<ShardChanges>,
) -> Result<usize, ()> {
    let mut asked = 0;
    while let Ok(request) = requests.try_recv() {
        asked += 1;
        drain(hub, changes)?;
        match request {
            Request::Subscribe { after, reply } => {
                let _ = reply.send(hub.subscribe(after));
            }
            Request::Barrier { reply } => {
                let _ = reply.send(hub.last_id());
            }
            Request::Stats { reply } => {
                let _ = reply.send(hub.stats());
            }
        }
    }
    Ok(asked)
}

/// Takes every batch waiting; how many there were, or Err once every shard's sender is gone and nothing
/// is left.
fn drain(hub: &mut Hub, changes: &Receiver<ShardChanges>) -> Result<usize, ()> {
    let mut taken = 0;
    loop {
        match changes.try_recv() {
            Ok(batch) => {
                hub.ingest(batch);
                taken += 1;
            }
            Err(crossbeam_channel::TryRecvError::Empty) => {
                hub.flush();
                return Ok(taken);
            }
            Err(crossbeam_channel::TryRecvError::Disconnected) => {
                hub.flush();
                return Err(());
            }
        }
    }
}

/// What another thread (the HTTP API) asks of the hub.
#[derive(Debug)]
pub enum Request {
    /// A subscription: every event after `after` (the last event when None).
    Subscribe {
        after: Option<u64>,
        reply: oneshot::Sender<Result<Subscription, SubscribeError>>,
    },
    /// The id of the last event once every change already sent to the hub has been taken: an event about
    /// a change a shard published before this request has an id at most this.
    Barrier {
        reply: oneshot::Sender<u64>,
    },
    Stats {
        reply: oneshot::Sender<HubStats>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registrar::testing::TestShard as Shard;
    use crossbeam_channel::Sender;

    fn hub(window: usize, queue: usize) -> (Hub, Sender<ShardChanges>, Receiver<ShardChanges>) {
        let cfg = HubConfig {
            window,
            subscriber_queue: queue,
            max_subscribers: 2,
            ..HubConfig::default()
        };
        let (tx, rx) = crossbeam_channel::bounded(16);
        (Hub::new(cfg, 2), tx, rx)
    }

    fn pump(hub: &mut Hub, rx: &Receiver<ShardChanges>) {
        while let Ok(batch) = rx.try_recv() {
            hub.ingest(batch);
        }
        hub.flush();
    }

    fn events(sub: &mut Subscription) -> Vec<(u64, ChangeKind, String)> {
        sub.drain()
            .into_iter()
            .map(|m| match m {
                Message::Event(e) => (e.id, e.kind, e.aor.clone()),
                other => panic!("not an event: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn events_of_every_shard_arrive_numbered_with_their_fields() {
        let (mut hub, tx, rx) = hub(10, 10);
        let mut live = hub.subscribe(None).expect("subscribed");
        let (mut a, mut b) = (Shard::new(0, tx.clone()), Shard::new(1, tx));
        a.register("alice", 60);
        b.register("bob", 60);
        a.register("alice", 61);
        a.register("alice", 0);
        pump(&mut hub, &rx);
        let got: Vec<_> = live.drain();
        let Message::Event(first) = &got[0] else {
            panic!("{got:?}")
        };
        assert_eq!((first.id, first.shard, first.seq), (1, 0, 1));
        assert_eq!(first.binding.contact, "sip:alice@192.0.2.1");
        assert_eq!(first.binding.call_id, "c-alice");
        assert_eq!(first.binding.expires_at_s, 1060);
        assert_eq!(
            first.binding.source,
            "192.0.2.1:5060".parse().expect("addr")
        );
        let kinds: Vec<_> = got
            .iter()
            .map(|m| match m {
                Message::Event(e) => (e.id, e.kind, e.aor.as_str(), e.seq),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                (1, ChangeKind::Registered, "sip:alice@example.com", 1),
                (2, ChangeKind::Registered, "sip:bob@example.com", 1),
                (3, ChangeKind::Refreshed, "sip:alice@example.com", 2),
                (4, ChangeKind::Unregistered, "sip:alice@example.com", 3),
            ]
        );
    }

    #[test]
    fn a_subscriber_resumes_after_its_last_event_while_the_window_holds_it() {
        let (mut hub, tx, rx) = hub(3, 10);
        let mut a = Shard::new(0, tx);
        for user in ["u1", "u2", "u3", "u4", "u5"] {
            a.register(user, 60);
        }
        pump(&mut hub, &rx);
        let mut resumed = hub.subscribe(Some(3)).expect("4 and 5 are held");
        assert_eq!(
            events(&mut resumed),
            [
                (4, ChangeKind::Registered, "sip:u4@example.com".to_string()),
                (5, ChangeKind::Registered, "sip:u5@example.com".to_string()),
            ]
        );
        assert!(hub.subscribe(Some(5)).is_ok(), "nothing missed");
        assert_eq!(
            hub.subscribe(Some(1)).err(),
            Some(SubscribeError::Resume(ResumeError::TooOld {
                after: 1,
                oldest: Some(3)
            }))
        );
        assert!(matches!(
            hub.subscribe(Some(9)),
            Err(SubscribeError::Resume(ResumeError::InFuture {
                after: 9,
                last: 5
            }))
        ));
    }

    #[test]
    fn events_nobody_listened_to_are_replayed_from_within_batches_with_their_ids() {
        let (mut hub, tx, rx) = hub(4, 10);
        let mut a = Shard::new(0, tx);
        for batch in [["u1", "u2", "u3"], ["u4", "u5", "u6"], ["u7", "u8", "u9"]] {
            for user in batch {
                a.register_unpublished(user, 60);
            }
            a.publish();
        }
        pump(&mut hub, &rx);
        // The window keeps whole batches: at least 4 events, here the last two batches.
        assert_eq!(hub.stats().held, 6);
        let mut resumed = hub.subscribe(Some(4)).expect("5 and on are held");
        let got: Vec<_> = events(&mut resumed)
            .into_iter()
            .map(|(id, _, aor)| (id, aor))
            .collect();
        let want: Vec<_> = (5..=9)
            .map(|n| (n, format!("sip:u{n}@example.com")))
            .collect();
        assert_eq!(got, want);
        assert!(matches!(
            hub.subscribe(Some(2)),
            Err(SubscribeError::Resume(ResumeError::TooOld {
                after: 2,
                oldest: Some(4)
            }))
        ));
    }

    #[test]
    fn a_resume_with_more_to_replay_than_the_queue_holds_is_refused() {
        let (mut hub, tx, rx) = hub(100, 4);
        let mut a = Shard::new(0, tx);
        for user in ["u1", "u2", "u3", "u4", "u5", "u6"] {
            a.register(user, 60);
        }
        pump(&mut hub, &rx);
        assert!(hub.subscribe(Some(3)).is_ok(), "3 to replay");
        assert!(matches!(
            hub.subscribe(Some(2)),
            Err(SubscribeError::Resume(ResumeError::TooOld { after: 2, .. }))
        ));
    }

    #[test]
    fn a_slow_subscriber_is_cut_off_with_a_notice_and_the_others_go_on() {
        let (mut hub, tx, rx) = hub(0, 3);
        let mut slow = hub.subscribe(None).expect("subscribed");
        let mut fast = hub.subscribe(None).expect("subscribed");
        assert!(matches!(
            hub.subscribe(None),
            Err(SubscribeError::TooMany(2))
        ));
        let mut a = Shard::new(0, tx);
        for user in ["u1", "u2", "u3", "u4"] {
            a.register(user, 60);
            pump(&mut hub, &rx);
            assert_eq!(events(&mut fast).len(), 1);
        }
        let got: Vec<_> = slow.drain();
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(matches!(got[0], Message::Event(_)));
        assert_eq!(got[2], Message::CutOff);
        assert_eq!(hub.cut_off, 1);
        assert!(slow.try_next().is_none(), "nothing after the notice");
        drop((slow, fast));
        assert!(
            hub.subscribe(None).is_ok(),
            "the slots of gone subscribers are free again"
        );
    }

    #[test]
    fn changes_a_shard_dropped_are_reported_as_lost() {
        let (mut hub, tx, rx) = hub(10, 10);
        let mut live = hub.subscribe(None).expect("subscribed");
        let (small_tx, small_rx) = crossbeam_channel::bounded(1);
        let mut a = Shard::new(0, small_tx);
        a.register("u1", 60);
        a.register("u2", 60); // the channel is full: dropped
        hub.ingest(small_rx.try_recv().expect("first batch"));
        a.register("u3", 60);
        hub.ingest(small_rx.try_recv().expect("third batch"));
        hub.flush();
        drop((tx, rx));
        let got: Vec<_> = live.drain();
        assert!(matches!(&got[0], Message::Event(e) if e.seq == 1));
        assert_eq!(
            got[1],
            Message::Lost {
                shard: 0,
                changes: 1
            }
        );
        assert!(matches!(&got[2], Message::Event(e) if e.seq == 3));
        assert_eq!(hub.lost, 1);
    }
}
