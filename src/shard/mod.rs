//! The glommio UDP shell that feeds datagrams to the core: thread-per-core.
//!
//! A *shard* is one thread running one glommio `LocalExecutor`, pinned to its CPU, that owns one UDP socket
//! and one core (the [`Registrar`], or the benchmark-only stateless stub). Every shard's socket is bound to the
//! same address and port with SO_REUSEPORT; the kernel picks a socket per datagram at random, by CPU or by
//! 4-tuple ([`steer`]).
//! Every AoR belongs to exactly one shard (hash of the AoR with one process-wide seed, modulo the shard
//! count), which alone holds its bindings, expiry timers and counters: nothing on the REGISTER path is shared
//! mutable state. Tasks of a registrar shard (they share the registrar through `Rc<RefCell<_>>`, never
//! borrowed across an `.await`):
//! - [`udp::recv_loop`]: receive a datagram; apply it when this shard owns it (or nobody does), else hand it
//!   to its owner ([`handoff::Router`]); send the reply back to its source. When datagrams have queued up,
//!   drain them a batch at a time ([`corereg_udp`]: `recvmmsg`, and `sendmmsg` for the replies);
//! - [`handoff::inbound_loop`]: apply the batches of requests peers handed over, reply from this socket with
//!   `sendmmsg` ([`mesh`]: one bounded inbox per shard, a doorbell rung only when the shard sleeps);
//! - [`timer::expiry_loop`]: sleep until the core's next deadline (at most 1 s), expire in bounded batches;
//! - [`reload::credentials_loop`] (with `--auth required`): pick up credentials reloaded on SIGHUP.
//!
//! After each turn of work, each of these hands the binding changes the registrar recorded to the change
//! stream's listener ([`changes::ChangeFeed`]), without ever waiting for it.
//!
//! Sockets are created and bound by [`bind_udp`] on the starting thread, before any shard runs, so that the
//! bound address (port 0 = ephemeral) is known and errors surface before start-up completes.
//!
//! Shutdown: the owner flips a [`Stop`] flag; each shard notices within [`STOP_POLL`], cancels its tasks,
//! answers 503 + Retry-After to the requests its peers handed it and it did not apply
//! ([`handoff::refuse_queued`]; from the flag on it applies no more of them) and returns its counters. Every shard reports its exit (normal, error or panic) on a channel so the owner never
//! waits on a dead shard.

pub mod api;
pub mod changes;
pub mod coalesce;
pub mod handoff;
pub mod journal;
pub mod mesh;
pub mod registrants;
pub mod reload;
pub mod steer;
pub mod stub;
pub mod timer;
pub mod udp;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use glommio::{Latency, LocalExecutorBuilder, Placement, Shares};
use nix::sched::{sched_getaffinity, CpuSet};
use nix::time::{clock_gettime, ClockId};
use nix::unistd::Pid;
use socket2::{Domain, Protocol, Socket, Type};
use thiserror::Error;

use crate::auth::{AuthStats, Authenticator};
use crate::registrar::{Now, Registrar, RegistrarConfig, Stats};
use changes::ChangeFeed;

/// How long a busy shard runs its tasks before it polls the reactor: the reactor is what wakes a shard's
/// handoff loops when a peer queued requests while the shard was busy (glommio only rings a *sleeping*
/// peer), so this bounds the added latency of a handoff under sustained load. glommio's default is 100 ms.
///
/// It is the latency of the shard's *serving* task queue (`Latency::Matters`), which every serving task
/// runs in, not the executor's own preempt timer: glommio preempts at this period whenever that queue has
/// work. The patched glommio (`vendor/README.md`) checks it against the clock at its yield points instead of
/// arming a kernel timer every turn, and no longer parks an executor whose thread was descheduled past it
/// with tasks still runnable (glommio/glommio#53). The executor keeps glommio's default timer, the period
/// of its other task queues.
pub const PREEMPT_AFTER: Duration = Duration::from_millis(1);

/// How long a stopping shard waits for its journal to write what its last turns recorded.
pub const JOURNAL_FLUSH_ON_STOP: Duration = Duration::from_secs(2);

/// How often a shard checks its stop flag: bounds shutdown latency, costs one timer wake-up per period.
pub const STOP_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Error)]
pub enum ShardError {
    #[error("cannot create the UDP socket for {addr}: {source}")]
    Socket {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot attach the --receive-spread program to the sockets of {addr}: {source}")]
    Spread {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the executor of shard {shard}: {message}")]
    Executor { shard: usize, message: String },
    #[error("cannot start the thread of shard {shard}: {source}")]
    Thread {
        shard: usize,
        source: std::io::Error,
    },
    #[error("shard {shard}: UDP socket failed: {source}")]
    Io {
        shard: usize,
        source: std::io::Error,
    },
    #[error("shard {shard} panicked")]
    Panicked { shard: usize },
    #[error("shard {shard}: journal: {source}")]
    Journal {
        shard: usize,
        source: crate::journal::JournalError,
    },
}

/// What a shard runs.
#[derive(Clone, Debug)]
pub enum Mode {
    Registrar(RegistrarConfig),
    /// Benchmark only: see [`stub`].
    StatelessStub,
}

/// Everything one shard needs; built by the starting thread.
#[derive(Debug)]
pub struct ShardSpec {
    pub id: usize,
    /// CPU to pin the executor to (None: not pinned).
    pub cpu: Option<usize>,
    /// Bound by [`bind_udp`]; moved into the shard, which converts it to a glommio socket.
    pub socket: Socket,
    pub mode: Mode,
    /// Datagram size limit and receive batching.
    pub recv: udp::RecvConfig,
    /// This shard's ends of the handoff mesh ([`mesh::mesh`]); None with one shard or the stub.
    pub links: Option<mesh::Links>,
    /// Digest authentication (`--auth required`): this shard's own authenticator (all shards' share the
    /// nonce key and the credentials) and the feed of credentials reloaded on SIGHUP. Registrar mode only.
    pub auth: Option<ShardAuth>,
    /// Where the HTTP API's requests arrive ([`api::channel`]); None without the API. Registrar mode only.
    pub api: Option<api::ShardInbox>,
    /// Where the shard hands its binding changes (the event hub); None: nobody listens.
    pub changes: Option<crossbeam_channel::Sender<changes::ShardChanges>>,
    /// The accounts this shard registers upstream ([`registrants`]); None: no `--registrants`.
    pub registrants: Option<crate::registrants::ShardRegistrants>,
    /// The journal (`--data-dir`); None: memory only. Registrar mode only.
    pub journal: Option<journal::JournalSpec>,
}

/// A shard's digest authentication.
#[derive(Debug)]
pub struct ShardAuth {
    pub authenticator: Authenticator,
    pub feed: reload::CredentialsFeed,
}

/// Counters a shard returns when it stops, logged by the binary as `key=value` lines (see
/// [`ShardReport::log_lines`]).
///
/// Summing over the shards: `datagrams_in` counts every datagram once (on the shard whose socket received
/// it). A request handed to the shard owning its AoR is counted on both shards: as `handed_off` on the
/// receiver and as `from_peers` on the owner (the two sums are equal once every shard has stopped), and in
/// both registrars' `requests`. Requests the process answered or dropped = sum of `requests` minus sum of
/// `handed_off`.
#[derive(Clone, Debug, Default)]
pub struct ShardReport {
    pub id: usize,
    /// The CPU the shard was pinned to (None: not pinned).
    pub cpu: Option<usize>,
    /// Datagrams read from this shard's socket.
    pub datagrams_in: u64,
    /// Replies sent from this shard's socket (to its own datagrams and to those handed to it).
    pub replies_out: u64,
    /// Replies the socket refused to send.
    pub send_errors: u64,
    /// Of `datagrams_in`, those larger than `--max-datagram` (refused).
    pub oversized: u64,
    /// Of `datagrams_in`, those taken by `recvmmsg` from a queue that had built up (see [`udp`]).
    pub batched_in: u64,
    /// `recvmmsg` calls that returned datagrams.
    pub recv_batches: u64,
    /// Times the shard found its socket empty and waited a little before looking again (`--coalesce-us`).
    pub coalesce_holds: u64,
    /// Requests received here and handed to their owning shard (which counts them in its `from_peers`).
    pub handed_off: u64,
    /// Requests other shards handed to this one because it owns their AoR (counted as `handed_off` there).
    pub from_peers: u64,
    /// Batches of handed-off requests this shard pushed onto its peers' inboxes (one per owner per turn).
    pub handoff_batches: u64,
    /// Doorbells this shard rang: batches pushed to a peer that had said it would sleep.
    pub doorbell_rings: u64,
    /// 503s sent because the owner's handoff queue was full (back-pressure).
    pub overloaded_503: u64,
    /// 503s sent because the owner had already stopped, or let go of its inbox during this shard's turn
    /// (only while the process stops).
    pub peer_closed_503: u64,
    /// 503s this shard sent, as it stopped, to requests handed to it and not yet applied.
    pub stopping_503: u64,
    /// Requests this shard gathered for an owner that let go of its inbox before they arrived and could not
    /// answer itself (no 503 can be built for them): unanswered. 0 in practice: only requests with an owner
    /// are handed over, and those can be answered.
    pub handoff_lost: u64,
    /// The registrar's own counters (None for the stub).
    pub registrar: Option<Stats>,
    /// The authenticator's counters (None without `--auth required`).
    pub auth: Option<AuthStats>,
    /// Binding changes handed to the change stream's listener.
    pub changes_published: u64,
    /// Binding changes dropped because the listener's channel was full.
    pub changes_dropped: u64,
    /// Bindings held when the shard stopped.
    pub bindings: usize,
    /// The journal's counters (None with `--data-dir none`).
    pub journal: Option<journal::JournalStats>,
}

impl ShardReport {
    /// The shard's own counters with their names, in the order they are logged.
    pub fn counters(&self) -> [(&'static str, u64); 18] {
        [
            ("datagrams_in", self.datagrams_in),
            ("handed_off", self.handed_off),
            ("from_peers", self.from_peers),
            ("handoff_batches", self.handoff_batches),
            ("doorbell_rings", self.doorbell_rings),
            ("overloaded_503", self.overloaded_503),
            ("peer_closed_503", self.peer_closed_503),
            ("stopping_503", self.stopping_503),
            ("handoff_lost", self.handoff_lost),
            ("replies_out", self.replies_out),
            ("send_errors", self.send_errors),
            ("oversized", self.oversized),
            ("batched_in", self.batched_in),
            ("recv_batches", self.recv_batches),
            ("coalesce_holds", self.coalesce_holds),
            ("changes_published", self.changes_published),
            ("changes_dropped", self.changes_dropped),
            ("bindings", self.bindings as u64),
        ]
    }

    /// The lines logged when the shard stops, each `shard N <what>: key=value ...`:
    /// `shard N stopped: cpu=C <the shard's counters>`, then `shard N registrar: ...` (not for the stub)
    /// and `shard N auth: ...` (with `--auth required`). The field docs of [`ShardReport`], [`Stats`] and
    /// [`AuthStats`] say what each counter means.
    pub fn log_lines(&self) -> Vec<String> {
        fn line(id: usize, what: &str, first: Option<String>, counters: &[(&str, u64)]) -> String {
            let mut text = format!("shard {id} {what}:");
            for kv in first
                .into_iter()
                .chain(counters.iter().map(|(k, v)| format!("{k}={v}")))
            {
                text.push(' ');
                text.push_str(&kv);
            }
            text
        }
        let cpu = format!(
            "cpu={}",
            self.cpu.map_or_else(|| "-".into(), |c| c.to_string())
        );
        let mut lines = vec![line(self.id, "stopped", Some(cpu), &self.counters())];
        if let Some(stats) = &self.registrar {
            lines.push(line(self.id, "registrar", None, &stats.counters()));
        }
        if let Some(stats) = &self.auth {
            lines.push(line(self.id, "auth", None, &stats.counters()));
        }
        if let Some(stats) = &self.journal {
            lines.push(line(self.id, "journal", None, &stats.counters()));
        }
        lines
    }
}

/// A shared stop flag (between the signal-handling thread and the shards).
#[derive(Clone, Debug, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    pub fn request(&self) {
        self.0.store(true, Ordering::Release);
    }
    pub fn is_requested(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// What shards (and the signal thread of `main`) tell the starting thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The shard's executor runs and its socket is being served.
    Ready(usize),
    /// The shard's thread ended (normally, with an error, or by panicking): join it to learn which.
    Exited(usize),
    /// A termination signal arrived (sent by `main`'s signal thread).
    Signal(i32),
}

/// A running shard.
pub struct ShardHandle {
    pub id: usize,
    thread: std::thread::JoinHandle<Result<ShardReport, ShardError>>,
}

impl ShardHandle {
    /// Waits for the shard's thread; a panic becomes [`ShardError::Panicked`].
    pub fn join(self) -> Result<ShardReport, ShardError> {
        let id = self.id;
        self.thread
            .join()
            .unwrap_or(Err(ShardError::Panicked { shard: id }))
    }
}

/// Creates a UDP socket bound to `addr` with SO_REUSEPORT (so N shards can bind the same address) and
/// `buffer_bytes` kernel buffers (the kernel may cap them at net.core.rmem_max / wmem_max).
///
/// The socket stays in blocking mode on purpose: glommio issues its fast-path syscalls with MSG_DONTWAIT
/// and falls back to io_uring, which on a non-blocking fd would complete with EAGAIN instead of waiting.
pub fn bind_udp(addr: SocketAddr, buffer_bytes: usize) -> Result<Socket, ShardError> {
    let err = |source| ShardError::Socket { addr, source };
    let socket =
        Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
    socket.set_reuse_port(true).map_err(err)?;
    // Best effort: a smaller buffer than asked is not fatal, only worse under bursts.
    if let Err(e) = socket.set_recv_buffer_size(buffer_bytes) {
        tracing::warn!("cannot set SO_RCVBUF to {buffer_bytes}: {e}");
    }
    if let Err(e) = socket.set_send_buffer_size(buffer_bytes) {
        tracing::warn!("cannot set SO_SNDBUF to {buffer_bytes}: {e}");
    }
    socket.bind(&addr.into()).map_err(err)?;
    Ok(socket)
}

/// The address a socket is bound to (with the port the kernel chose for port 0).
pub fn local_addr(socket: &Socket) -> Result<SocketAddr, std::io::Error> {
    socket.local_addr()?.as_socket().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "socket has no IP address")
    })
}

/// Starts a shard on its own thread. It sends [`Event::Ready`] once serving and [`Event::Exited`] when it ends
/// for any reason.
pub fn spawn(
    spec: ShardSpec,
    stop: Stop,
    events: mpsc::Sender<Event>,
) -> Result<ShardHandle, ShardError> {
    let id = spec.id;
    let thread = std::thread::Builder::new()
        .name(format!("corereg-shard{id}"))
        .spawn(move || {
            // Reports the exit even when the shard panics (the guard drops while unwinding).
            let exit = ExitNotice {
                id,
                events: events.clone(),
            };
            let result = run(spec, stop, events);
            drop(exit);
            result
        })
        .map_err(|source| ShardError::Thread { shard: id, source })?;
    Ok(ShardHandle { id, thread })
}

struct ExitNotice {
    id: usize,
    events: mpsc::Sender<Event>,
}

impl Drop for ExitNotice {
    fn drop(&mut self) {
        // The receiver may be gone when the process is already stopping: nothing left to tell.
        let _ = self.events.send(Event::Exited(self.id));
    }
}

fn run(
    spec: ShardSpec,
    stop: Stop,
    events: mpsc::Sender<Event>,
) -> Result<ShardReport, ShardError> {
    let id = spec.id;
    let placement = match spec.cpu {
        Some(cpu) => Placement::Fixed(cpu),
        None => Placement::Unbound,
    };
    let executor = LocalExecutorBuilder::new(placement)
        .name(&format!("shard{id}"))
        .make()
        .map_err(|e| ShardError::Executor {
            shard: id,
            message: e.to_string(),
        })?;
    executor.run(serve(spec, stop, events))
}

/// The shard's body, inside its executor.
async fn serve(
    spec: ShardSpec,
    stop: Stop,
    events: mpsc::Sender<Event>,
) -> Result<ShardReport, ShardError> {
    let ShardSpec {
        id,
        cpu,
        socket,
        mode,
        recv,
        links,
        auth,
        api,
        changes,
        registrants,
        journal: journal_spec,
    } = spec;
    tracing::debug!(shard = id, "executor running");
    let socket = Rc::new(glommio::net::UdpSocket::from(socket));
    let counters = Rc::new(RefCell::new(ShardReport {
        id,
        cpu,
        ..ShardReport::default()
    }));
    let mut report = match mode {
        Mode::Registrar(config) => {
            let mut core = Registrar::new(config, now());
            // Load before anything serves: the shard reports ready only after this.
            let journal = match &journal_spec {
                Some(spec) => {
                    let started = journal::start(spec, id, &mut core)
                        .map_err(|source| ShardError::Journal { shard: id, source })?;
                    let r = &started.report;
                    if r.dropped > 0 || r.refused > 0 {
                        tracing::warn!(
                            shard = id,
                            dropped = r.dropped,
                            refused = r.refused,
                            "journal: some bindings were not restored (over an AoR's limit, the store \
                             full, or fields the store refuses)"
                        );
                    }
                    tracing::info!(
                        shard = id,
                        bindings = r.restored,
                        expired_while_down = r.expired,
                        not_owned = r.not_owned,
                        refused = r.refused,
                        records = started.loaded_records,
                        bytes = started.loaded_bytes,
                        next_seq = started.next_seq,
                        took_ms = started.took.as_millis() as u64,
                        "journal loaded"
                    );
                    Some(journal::Journal::new(
                        id,
                        spec.shards,
                        &started,
                        spec.settings.clone(),
                    ))
                }
                None => None,
            };
            let feed = auth.map(
                |ShardAuth {
                     authenticator,
                     feed,
                 }| {
                    core.set_authenticator(Some(authenticator));
                    feed
                },
            );
            let registrar = Rc::new(RefCell::new(core));
            let mut change_feed = ChangeFeed::new(id, changes);
            change_feed.set_journal(journal.clone());
            let changes = Rc::new(RefCell::new(change_feed));
            let core = changes::Publishing {
                registrar: registrar.clone(),
                feed: changes.clone(),
            };
            let commits = journal.as_ref().map(|j| {
                glommio::spawn_local(journal::commit_loop(
                    j.clone(),
                    registrar.clone(),
                    socket.clone(),
                    counters.clone(),
                ))
            });
            // The inbox outlives the serving tasks: what is queued in it is answered once they are cancelled.
            let mesh = links.filter(|l| l.shards() > 1).map(|links| {
                let shards = links.shards();
                let (outbound, mut inbox) = links.split();
                let bell = inbox.take_bell();
                Mesh {
                    shards,
                    outbound,
                    inbox: Rc::new(inbox),
                    bell,
                }
            });
            let inbox = mesh.as_ref().map(|m| m.inbox.clone());
            let body = serve_registrar(
                id,
                socket.clone(),
                core,
                mesh.map(|m| (m, stop.clone())),
                recv,
                counters.clone(),
                events,
            );
            // Cancelled when dropped, with the rest of the shard's tasks.
            let reload = feed.map(|feed| {
                glommio::spawn_local(reload::credentials_loop(id, registrar.clone(), feed))
            });
            let api = api.map(|inbox| {
                let state = api::ApiState {
                    registrar: registrar.clone(),
                    feed: changes.clone(),
                    counters: counters.clone(),
                };
                glommio::spawn_local(api::api_loop(inbox, state))
            });
            // Not cancelled at the stop: it sees the flag itself and unregisters, bounded by its timeout.
            let registrants = registrants.map(|part| {
                glommio::spawn_local(registrants::registrant_loop(id, part, stop.clone()))
            });
            let served = run_until_stopped(id, &stop, body).await;
            if let Some(inbox) = inbox {
                let refused = handoff::refuse_queued(
                    id,
                    &inbox,
                    &registrar,
                    &socket,
                    &counters,
                    handoff::CLOSING_GRACE,
                )
                .await;
                if refused > 0 {
                    tracing::info!(
                        shard = id,
                        refused,
                        "requests handed over but not applied answered 503 at the stop"
                    );
                }
            }
            if let Some(task) = registrants {
                task.await;
            }
            drop((reload, api));
            if let Some(j) = &journal {
                // What the last turns recorded (replies held, deletes, expiries) is written before the
                // commit loop goes.
                let last = {
                    let mut registrar = registrar.borrow_mut();
                    changes.borrow_mut().publish(&mut registrar);
                    registrar.last_seq()
                };
                let _ = j.flush(last, JOURNAL_FLUSH_ON_STOP).await;
            }
            drop(commits);
            served?;
            let mut report = counters.borrow().clone();
            let mut registrar = registrar.borrow_mut();
            let mut changes = changes.borrow_mut();
            changes.publish(&mut registrar);
            report.changes_published = changes.published;
            report.changes_dropped = changes.dropped;
            report.auth = registrar.authenticator_mut().map(|a| a.stats());
            report.registrar = Some(registrar.stats().clone());
            report.bindings = registrar.binding_count();
            report.journal = journal.map(|j| j.stats());
            report
        }
        Mode::StatelessStub => {
            // The stub has no state, so no owner: every shard answers what it receives. (Configuration
            // refuses --auth with the stub; an authenticator given anyway is simply unused.)
            drop((links, auth, api, changes, registrants, journal_spec));
            // Ready is sent before the loop is first polled; datagrams arriving meanwhile wait in the buffer.
            let _ = events.send(Event::Ready(id));
            let core = Rc::new(RefCell::new(stub::Stub));
            let body = udp::recv_loop(id, socket, core, recv, counters.clone());
            run_until_stopped(id, &stop, body).await?;
            counters.borrow().clone()
        }
    };
    report.id = id;
    Ok(report)
}

/// A shard's ends of the handoff mesh, when there are several shards.
struct Mesh {
    shards: usize,
    outbound: mesh::Outbound,
    inbox: Rc<mesh::Inbox>,
    /// The owner's end of the doorbell.
    bell: Option<socket2::Socket>,
}

/// A registrar shard: report Ready, then serve until cancelled (or a fatal socket error). Cancelling this
/// future drops the inbound and expiry tasks, which cancels them.
async fn serve_registrar(
    id: usize,
    socket: Rc<glommio::net::UdpSocket>,
    core: changes::Publishing,
    mesh: Option<(Mesh, Stop)>,
    recv: udp::RecvConfig,
    counters: Rc<RefCell<ShardReport>>,
    events: mpsc::Sender<Event>,
) -> Result<(), ShardError> {
    let changes::Publishing { registrar, feed } = core;
    // The mesh was built before any shard started: any shard can hand any request to its owner at once.
    let _ = events.send(Event::Ready(id));
    let expiry = glommio::spawn_local(timer::expiry_loop(registrar.clone(), feed.clone()));
    #[cfg(debug_assertions)]
    let stall = test_stall::spawn(id);
    let result = match mesh {
        Some((
            Mesh {
                shards,
                outbound,
                inbox,
                bell,
            },
            stop,
        )) => {
            registrar.borrow_mut().set_partition(id, shards);
            let wake = Rc::new(mesh::Wake::default());
            let inbound = glommio::spawn_local(handoff::inbound_loop(
                id,
                handoff::Taking { inbox, bell, stop },
                wake.clone(),
                registrar.clone(),
                socket.clone(),
                counters.clone(),
                feed.clone(),
            ));
            let router = handoff::Router {
                id,
                registrar,
                outbound,
                wake,
                counters: counters.clone(),
                feed,
                late: Vec::new(),
            };
            let result =
                udp::recv_loop(id, socket, Rc::new(RefCell::new(router)), recv, counters).await;
            drop(inbound);
            result
        }
        None => {
            // One shard owns everything: skip the owner lookup (a parse) altogether.
            let core = changes::Publishing { registrar, feed };
            udp::recv_loop(id, socket, Rc::new(RefCell::new(core)), recv, counters).await
        }
    };
    #[cfg(debug_assertions)]
    drop(stall);
    drop(expiry);
    result
}

/// Debug builds only, for the integration tests: stalls a shard's whole thread while a file exists, as a
/// shard stuck in a long computation or descheduled would be. `COREREG_TEST_STALL=SHARD:PATH` names the
/// shard and the file; the shard looks for the file every 10 ms. Release builds ignore the variable.
#[cfg(debug_assertions)]
mod test_stall {
    use std::path::PathBuf;
    use std::time::Duration;

    pub fn spawn(id: usize) -> Option<glommio::Task<()>> {
        let value = std::env::var("COREREG_TEST_STALL").ok()?;
        let (shard, path) = value.split_once(':')?;
        if shard.parse::<usize>().ok()? != id {
            return None;
        }
        let path = PathBuf::from(path);
        tracing::warn!(shard = id, path = %path.display(), "test stall hook armed (COREREG_TEST_STALL)");
        Some(glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(Duration::from_millis(10)).await;
                while path.exists() {
                    // Blocks the executor on purpose: nothing else on this shard runs meanwhile.
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }))
    }
}

/// Runs `recv` until a stop is requested (then cancels it) or until it ends by itself (a fatal socket error).
/// The stop flag is polled rather than signalled: it is written by a plain thread, and a glommio executor
/// can only be woken from outside by a channel; one timer wake-up per [`STOP_POLL`] costs nothing.
///
/// `recv` runs in the shard's serving task queue (see [`PREEMPT_AFTER`]), and so do the tasks it spawns.
async fn run_until_stopped<F>(id: usize, stop: &Stop, recv: F) -> Result<(), ShardError>
where
    F: std::future::Future<Output = Result<(), ShardError>> + 'static,
{
    let ended: Rc<RefCell<Option<Result<(), ShardError>>>> = Rc::default();
    let serving = glommio::executor().create_task_queue(
        Shares::default(),
        Latency::Matters(PREEMPT_AFTER),
        "serving",
    );
    let task = {
        let ended = ended.clone();
        glommio::spawn_local_into(
            async move {
                let result = recv.await;
                *ended.borrow_mut() = Some(result);
            },
            serving,
        )
        .map_err(|e| ShardError::Executor {
            shard: id,
            message: format!("cannot spawn the serving task: {e}"),
        })?
    };
    loop {
        if let Some(result) = ended.borrow_mut().take() {
            return result;
        }
        if stop.is_requested() {
            task.cancel().await;
            return Ok(());
        }
        glommio::timer::sleep(STOP_POLL).await;
    }
}

/// The CPUs this process may run on (its affinity mask, which only holds online CPUs): shards are pinned to
/// these. Containers and `taskset` narrow it, so it is the right set rather than every CPU of the machine.
pub fn usable_cpus() -> std::io::Result<Vec<usize>> {
    let set = sched_getaffinity(Pid::from_raw(0))?;
    Ok((0..CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect())
}

/// Wall-clock now, as the core wants it. A clock before 1970 reads as 0 rather than panicking.
///
/// Read once per datagram, so it uses `CLOCK_REALTIME_COARSE`: the kernel's last tick (a few ms old), one
/// memory read in the vDSO instead of a TSC/pvclock read, and the core only needs whole seconds (expiry,
/// `Date`). Falls back to the precise clock if the coarse one is unavailable.
pub fn now() -> Now {
    let coarse = clock_gettime(ClockId::CLOCK_REALTIME_COARSE).ok();
    let unix_ms = if let Some(ts) = coarse.filter(|ts| ts.tv_sec() >= 0) {
        (ts.tv_sec() as u64) * 1000 + (ts.tv_nsec() as u64) / 1_000_000
    } else {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    };
    Now { unix_ms }
}

#[cfg(test)]
mod report_tests {
    use super::*;

    #[test]
    fn stop_lines_are_key_value_pairs_named_like_the_fields() {
        let report = ShardReport {
            id: 1,
            cpu: Some(3),
            datagrams_in: 10,
            handed_off: 4,
            from_peers: 2,
            bindings: 7,
            registrar: Some(Stats {
                requests: 12,
                registers_ok: 6,
                ..Stats::default()
            }),
            auth: Some(AuthStats {
                accepted: 5,
                ..AuthStats::default()
            }),
            ..ShardReport::default()
        };
        let lines = report.log_lines();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(
            lines[0],
            "shard 1 stopped: cpu=3 datagrams_in=10 handed_off=4 from_peers=2 handoff_batches=0 doorbell_rings=0 \
             overloaded_503=0 \
             peer_closed_503=0 stopping_503=0 handoff_lost=0 replies_out=0 send_errors=0 oversized=0 batched_in=0 recv_batches=0 \
             coalesce_holds=0 changes_published=0 changes_dropped=0 bindings=7"
        );
        assert!(
            lines[1].starts_with("shard 1 registrar: requests=12 registers_ok=6 replies_4xx=0 "),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].starts_with("shard 1 auth: accepted=5 no_credentials=0 "),
            "{}",
            lines[2]
        );
        for line in &lines {
            assert!(!line.contains(['{', '(', '"']), "not key=value: {line}");
        }
        let stub = ShardReport::default().log_lines();
        assert_eq!(stub.len(), 1);
        assert!(
            stub[0].starts_with("shard 0 stopped: cpu=- datagrams_in=0 "),
            "{}",
            stub[0]
        );
    }
}

#[cfg(test)]
mod now_tests {
    use super::*;

    #[test]
    fn coarse_now_agrees_with_the_precise_clock_to_a_tick() {
        let precise = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let coarse = now().unix_ms;
        // The coarse clock lags by at most one kernel tick (<= 10 ms at HZ=100); allow scheduling slack.
        assert!(
            precise.abs_diff(coarse) < 100,
            "precise {precise} ms, coarse {coarse} ms"
        );
    }
}
