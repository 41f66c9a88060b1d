//! The shard's end of the HTTP API: reads and deletes asked by plain threads, answered between turns of work.
//!
//! A client ([`ShardClient`], cheap to clone, `Send`) puts a [`Request`] on the shard's bounded queue and
//! waits for the answer on a oneshot channel, asynchronously; it never blocks the shard, and a full queue is
//! an error it gets at once ([`ApiError::Busy`]). The shard runs [`api_loop`]: it answers every queued
//! request (each read bounded: one AoR, or one page), then sleeps on a wake-up socket. A client writes one
//! byte to that socket only when the shard said it would sleep (an `armed` flag), so a busy shard takes
//! requests in batches without a syscall per request, and an idle one costs nothing.

use std::cell::RefCell;
use std::net::UdpSocket;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use socket2::{Domain, Protocol, Socket, Type};
use thiserror::Error;
use tokio::sync::oneshot;

use super::changes::ChangeFeed;
use super::{now, ShardReport};
use crate::events::BindingView;
use crate::registrar::query::{AorPage, StatePage};
use crate::registrar::Registrar;

/// Most AoR records one page request scans (bounds the time a list request holds the shard).
pub const MAX_PAGE_SCAN: usize = 4096;
/// Most AoRs (with their bindings) in one state page.
pub const MAX_STATE_PAGE: usize = 1024;
/// Requests answered before the loop yields to the shard's other tasks.
const BATCH: usize = 64;

/// What a plain thread asks a shard.
#[derive(Debug)]
pub enum Request {
    /// The bindings of an AoR (canonical form), None when it has none.
    Lookup {
        aor: Vec<u8>,
        reply: oneshot::Sender<Option<Vec<BindingView>>>,
    },
    /// AoRs starting with `prefix`, from cursor `from`: at most `limit`, scanning at most
    /// [`MAX_PAGE_SCAN`] records.
    Page {
        prefix: Vec<u8>,
        from: usize,
        limit: usize,
        reply: oneshot::Sender<AorPage>,
    },
    /// At most `limit` (capped at [`MAX_STATE_PAGE`]) AoRs with their bindings from cursor `from`, with the
    /// sequence number of the last change they reflect. Every change up to it has been handed to the change
    /// stream before the answer is sent.
    State {
        from: usize,
        limit: usize,
        reply: oneshot::Sender<StatePage>,
    },
    /// Removes the AoR's bindings (or one of them): how many went, answered once the removal is written
    /// to the journal (when there is one).
    Delete {
        aor: Vec<u8>,
        binding: Option<u32>,
        reply: oneshot::Sender<Result<usize, NotWritten>>,
    },
    /// The shard's counters now.
    Stats { reply: oneshot::Sender<ShardStats> },
}

/// A shard's counters while it runs.
#[derive(Clone, Debug, Default)]
pub struct ShardStats {
    pub report: ShardReport,
    pub aors: usize,
}

/// A delete was applied but the journal could not write it within [`DELETE_WRITE_WAIT`] (it keeps trying).
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
#[error("{deleted} binding(s) deleted, but not yet written to the journal (it cannot write; see the log)")]
pub struct NotWritten {
    pub deleted: usize,
}

/// How long a delete waits for the journal to write it before it is answered [`NotWritten`].
pub const DELETE_WRITE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum ApiError {
    #[error("shard {0} has too many API requests queued")]
    Busy(usize),
    #[error("shard {0} is not running")]
    Gone(usize),
}

/// Sends requests to one shard, from any thread.
#[derive(Clone, Debug)]
pub struct ShardClient {
    shard: usize,
    queue: Sender<Request>,
    armed: Arc<AtomicBool>,
    wake: Arc<UdpSocket>,
}

/// The shard's side: its queue and wake-up socket, moved into the shard.
#[derive(Debug)]
pub struct ShardInbox {
    queue: Receiver<Request>,
    armed: Arc<AtomicBool>,
    wake: Socket,
}

/// A shard's API channel of `capacity` requests: the client for the API threads, the inbox for the shard.
pub fn channel(shard: usize, capacity: usize) -> std::io::Result<(ShardClient, ShardInbox)> {
    let (queue_tx, queue_rx) = crossbeam_channel::bounded(capacity.max(1));
    // Two loopback UDP sockets connected to each other: the client writes a byte, the shard's executor waits
    // for it like for any datagram (glommio's sockets are IP sockets). Connected, each receives only from the
    // other, so no other local process can wake the shard. The shard's end stays blocking (glommio reads it
    // with MSG_DONTWAIT and falls back to io_uring); the client's end never blocks an API thread.
    let loopback: std::net::SocketAddr = (std::net::Ipv4Addr::LOCALHOST, 0).into();
    let shard_end = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    shard_end.bind(&loopback.into())?;
    let client_end = UdpSocket::bind(loopback)?;
    client_end.connect(super::local_addr(&shard_end)?)?;
    shard_end.connect(&client_end.local_addr()?.into())?;
    client_end.set_nonblocking(true)?;
    let armed = Arc::new(AtomicBool::new(false));
    let client = ShardClient {
        shard,
        queue: queue_tx,
        armed: armed.clone(),
        wake: Arc::new(client_end),
    };
    let inbox = ShardInbox {
        queue: queue_rx,
        armed,
        wake: shard_end,
    };
    Ok((client, inbox))
}

impl ShardClient {
    pub fn shard(&self) -> usize {
        self.shard
    }

    /// Queues a request and wakes the shard if it sleeps. Never blocks.
    pub fn send(&self, request: Request) -> Result<(), ApiError> {
        self.queue.try_send(request).map_err(|e| match e {
            TrySendError::Full(_) => ApiError::Busy(self.shard),
            TrySendError::Disconnected(_) => ApiError::Gone(self.shard),
        })?;
        // SeqCst with the shard's store-then-check: either the shard sees this request before it sleeps,
        // or this sees it armed and wakes it.
        if self.armed.swap(false, Ordering::SeqCst) {
            // A full socket buffer means a wake-up is already pending: nothing lost.
            let _ = self.wake.send(&[1]);
        }
        Ok(())
    }

    /// Sends a request made with a fresh oneshot and waits for its answer.
    pub async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> Result<T, ApiError> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx))?;
        rx.await.map_err(|_| ApiError::Gone(self.shard))
    }
}

/// What the API loop works on.
pub struct ApiState {
    pub registrar: Rc<RefCell<Registrar>>,
    pub feed: Rc<RefCell<ChangeFeed>>,
    pub counters: Rc<RefCell<ShardReport>>,
}

/// Answers API requests until cancelled.
pub async fn api_loop(inbox: ShardInbox, state: ApiState) {
    let ShardInbox { queue, armed, wake } = inbox;
    let wake = glommio::net::UdpSocket::from(wake);
    let mut byte = [0u8; 16];
    loop {
        let mut answered = 0;
        while let Ok(request) = queue.try_recv() {
            answer(&state, request).await;
            answered += 1;
            if answered % BATCH == 0 {
                glommio::executor().yield_task_queue_now().await;
            }
        }
        armed.store(true, Ordering::SeqCst);
        if !queue.is_empty() {
            armed.store(false, Ordering::SeqCst);
            continue;
        }
        if let Err(e) = wake.recv(&mut byte).await {
            tracing::warn!("API wake-up socket failed: {e}; API requests to this shard stop");
            return;
        }
    }
}

/// Applies a delete, then waits until the journal (if any) has written it: an operator's delete is
/// acknowledged as durably as a REGISTER's 200.
async fn delete(state: &ApiState, aor: &[u8], binding: Option<u32>) -> Result<usize, NotWritten> {
    let (deleted, seq) = {
        let mut registrar = state.registrar.borrow_mut();
        let deleted = registrar.delete(aor, binding, now());
        state.feed.borrow_mut().publish(&mut registrar);
        (deleted, registrar.last_seq())
    };
    let journal = state.feed.borrow().journal().cloned();
    match journal {
        Some(journal) if deleted > 0 => {
            if journal.flush(seq, DELETE_WRITE_WAIT).await {
                Ok(deleted)
            } else {
                Err(NotWritten { deleted })
            }
        }
        _ => Ok(deleted),
    }
}

async fn answer(state: &ApiState, request: Request) {
    // A client that stopped waiting dropped its receiver: the answer is simply not delivered.
    match request {
        Request::Lookup { aor, reply } => {
            let _ = reply.send(state.registrar.borrow().lookup(&aor));
        }
        Request::Page {
            prefix,
            from,
            limit,
            reply,
        } => {
            let page = state
                .registrar
                .borrow()
                .aor_page(&prefix, from, limit, MAX_PAGE_SCAN);
            let _ = reply.send(page);
        }
        Request::State { from, limit, reply } => {
            let mut registrar = state.registrar.borrow_mut();
            state.feed.borrow_mut().publish(&mut registrar);
            let _ = reply.send(registrar.state_page(from, limit.min(MAX_STATE_PAGE)));
        }
        Request::Delete {
            aor,
            binding,
            reply,
        } => {
            let _ = reply.send(delete(state, &aor, binding).await);
        }
        Request::Stats { reply } => {
            let mut registrar = state.registrar.borrow_mut();
            let feed = state.feed.borrow();
            let mut report = state.counters.borrow().clone();
            report.changes_published = feed.published;
            report.changes_dropped = feed.dropped;
            report.auth = registrar.authenticator_mut().map(|a| a.stats());
            report.registrar = Some(registrar.stats().clone());
            report.bindings = registrar.binding_count();
            report.journal = feed.journal().map(|j| j.stats());
            let stats = ShardStats {
                report,
                aors: registrar.aor_count(),
            };
            let _ = reply.send(stats);
        }
    }
}
