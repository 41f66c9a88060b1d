//! The glommio UDP shell that feeds datagrams to the core.
//!
//! A *shard* is one thread running one glommio `LocalExecutor` (optionally pinned to a CPU) that owns one UDP
//! socket and one core (the [`Registrar`], or the benchmark-only stateless stub). Two tasks run in it:
//! - [`udp::recv_loop`]: receive a datagram, hand it to the core, send the reply back to its source;
//! - [`timer::expiry_loop`]: sleep until the core's next deadline (at most 1 s), expire in bounded batches.
//!
//! Sockets are created and bound by [`bind_udp`] on the starting thread, before any shard runs, so that the
//! bound address (port 0 = ephemeral) is known and errors surface before start-up completes. Every socket has
//! SO_REUSEPORT: the thread-per-core shell binds N sockets to the same address, one per shard, and the kernel
//! spreads flows over them; [`spawn`] already takes the shard id and CPU for that.
//!
//! Shutdown: the owner flips a [`Stop`] flag; each shard notices within [`STOP_POLL`], cancels its tasks and
//! returns its counters. Every shard reports its exit (normal, error or panic) on a channel so the owner never
//! waits on a dead shard.

pub mod stub;
pub mod timer;
pub mod udp;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use glommio::{LocalExecutorBuilder, Placement};
use socket2::{Domain, Protocol, Socket, Type};
use thiserror::Error;

use crate::registrar::{Now, Registrar, RegistrarConfig, Stats};

/// How often a shard checks its stop flag: bounds shutdown latency, costs one timer wake-up per period.
pub const STOP_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Error)]
pub enum ShardError {
    #[error("cannot create the UDP socket for {addr}: {source}")]
    Socket {
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
    /// Receive buffer size is this + 1, so that a longer datagram shows up as `len > max` to the core.
    pub max_datagram_bytes: usize,
}

/// Counters a shard returns when it stops.
#[derive(Clone, Debug, Default)]
pub struct ShardReport {
    pub id: usize,
    pub datagrams_in: u64,
    pub replies_out: u64,
    pub send_errors: u64,
    pub oversized: u64,
    /// The registrar's own counters (None for the stub).
    pub registrar: Option<Stats>,
    pub bindings: usize,
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
        socket,
        mode,
        max_datagram_bytes,
        ..
    } = spec;
    let socket = Rc::new(glommio::net::UdpSocket::from(socket));
    // Ready is sent before the loops are first polled; datagrams arriving meanwhile wait in the socket buffer.
    let _ = events.send(Event::Ready(id));
    let counters = Rc::new(RefCell::new(ShardReport {
        id,
        ..ShardReport::default()
    }));
    let mut report = match mode {
        Mode::Registrar(config) => {
            let registrar = Rc::new(RefCell::new(Registrar::new(config, now())));
            let recv = udp::recv_loop(
                id,
                socket,
                registrar.clone(),
                max_datagram_bytes,
                counters.clone(),
            );
            let expiry = glommio::spawn_local(timer::expiry_loop(registrar.clone()));
            let result = run_until_stopped(&stop, recv).await;
            expiry.cancel().await;
            result?;
            let mut report = counters.borrow().clone();
            let registrar = registrar.borrow();
            report.registrar = Some(registrar.stats().clone());
            report.bindings = registrar.binding_count();
            report
        }
        Mode::StatelessStub => {
            let core = Rc::new(RefCell::new(stub::Stub));
            let recv = udp::recv_loop(id, socket, core, max_datagram_bytes, counters.clone());
            run_until_stopped(&stop, recv).await?;
            counters.borrow().clone()
        }
    };
    report.id = id;
    Ok(report)
}

/// Runs `recv` until a stop is requested (then cancels it) or until it ends by itself (a fatal socket error).
async fn run_until_stopped<F>(stop: &Stop, recv: F) -> Result<(), ShardError>
where
    F: std::future::Future<Output = Result<(), ShardError>> + 'static,
{
    let ended: Rc<RefCell<Option<Result<(), ShardError>>>> = Rc::default();
    let task = {
        let ended = ended.clone();
        glommio::spawn_local(async move {
            let result = recv.await;
            *ended.borrow_mut() = Some(result);
        })
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

/// Wall-clock now, as the core wants it. A clock before 1970 reads as 0 rather than panicking.
pub fn now() -> Now {
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Now { unix_ms }
}
