//! corereg's start-up: flags, logging, resource checks, one pinned shard per CPU (sockets bound and the handoff
//! mesh built before any starts), and a clean stop of every shard on SIGINT/SIGTERM.
//! Everything that handles datagrams lives in the library (`corereg::shard` and the core it drives).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::mpsc;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use tracing_subscriber::EnvFilter;

use corereg::config::{Args, Config};
use corereg::shard::handoff::{self, Links as HandoffLinks};
use corereg::shard::{self, Event, Mode, ShardSpec, Stop};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// glommio refuses to start an executor below this much locked memory (its io_uring buffers), per executor.
const MEMLOCK_PER_EXECUTOR_BYTES: u64 = 512 * 1024;

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match Config::from_args(args) {
        Ok(config) => config,
        Err(e) => {
            // Same shape and exit status as clap's own usage errors.
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // Which CPUs the shards get is configuration too: a CPU that is not usable is a usage error (status 2).
    let cpus = match shard::usable_cpus() {
        Ok(usable) => config.shard_cpus(&usable).map_err(anyhow::Error::from),
        Err(e) => Err(anyhow::Error::from(e).context("cannot read the CPU affinity mask")),
    };
    let cpus = match cpus {
        Ok(cpus) => cpus,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = init_tracing(&config.log) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    match run(config, cpus) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // stderr already carries the log; one line is enough.
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(filter: &str) -> Result<()> {
    // RUST_LOG, when set, wins over --log (the usual convention for tracing-based programs).
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.is_empty() => {
            EnvFilter::try_new(&env).with_context(|| format!("invalid RUST_LOG {env:?}"))?
        }
        _ => EnvFilter::try_new(filter)
            .with_context(|| format!("invalid --log filter {filter:?}"))?,
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    Ok(())
}

/// Runs one shard per entry of `cpus` (shard i pinned to `cpus[i]`) until a signal or a shard's exit.
fn run(config: Config, cpus: Vec<usize>) -> Result<()> {
    // Signals are blocked before any thread starts, so every thread inherits the mask and only the signal
    // thread (sigwait) ever receives SIGINT/SIGTERM.
    let signals = block_termination_signals()?;
    let shards = cpus.len();
    ensure_memlock(shards)?;

    // All sockets are bound before any shard starts: the first one fixes the port (port 0 = ephemeral), the
    // others join it through SO_REUSEPORT.
    let first = shard::bind_udp(config.listen, config.socket_buffer_bytes)?;
    let bound = shard::local_addr(&first).context("cannot read the bound address")?;
    let mut sockets = vec![first];
    for _ in 1..shards {
        sockets.push(shard::bind_udp(bound, config.socket_buffer_bytes)?);
    }
    let modes: Vec<Mode> = if config.stateless_stub {
        vec![Mode::StatelessStub; shards]
    } else {
        // One base config for all: every shard must route AoRs with the same hash seed.
        config
            .registrar_configs(shards)
            .into_iter()
            .map(Mode::Registrar)
            .collect()
    };
    let mut links: Vec<Option<HandoffLinks>> = if shards > 1 && !config.stateless_stub {
        handoff::mesh(shards, config.handoff_queue)
            .into_iter()
            .map(Some)
            .collect()
    } else {
        (0..shards).map(|_| None).collect()
    };

    let stop = Stop::default();
    let (events_tx, events) = mpsc::channel();
    let mut handles = Vec::with_capacity(shards);
    for (id, ((socket, mode), cpu)) in sockets.into_iter().zip(modes).zip(&cpus).enumerate() {
        let spec = ShardSpec {
            id,
            cpu: Some(*cpu),
            socket,
            mode,
            max_datagram_bytes: config.max_datagram_bytes,
            links: links.get_mut(id).and_then(Option::take),
        };
        match shard::spawn(spec, stop.clone(), events_tx.clone()) {
            Ok(handle) => handles.push(handle),
            Err(e) => {
                stop.request();
                // The shards already started wait for this one's channel ends; dropping them (with `links`
                // and the unstarted specs) releases them, then they see the stop flag.
                drop(links);
                stop_all(handles)?;
                return Err(e.into());
            }
        }
    }
    drop(links);
    spawn_signal_thread(signals, events_tx)?;

    // Start-up completes when every shard serves; a shard that dies first reports its error.
    let mut ready = 0;
    while ready < shards {
        match events.recv().context("all shards vanished")? {
            Event::Ready(_) => ready += 1,
            Event::Exited(_) | Event::Signal(_) => {
                stop.request();
                return stop_all(handles).and_then(|()| bail!("stopped before start-up completed"));
            }
        }
    }
    log_startup(&config, bound, &cpus);

    let first = events.recv().context("all shards vanished")?;
    stop.request();
    match first {
        Event::Signal(sig) => tracing::info!("signal {sig} received, stopping"),
        other => tracing::error!("shard stopped unexpectedly ({other:?}), stopping"),
    }
    let result = stop_all(std::mem::take(&mut handles));
    if let Event::Exited(id) = first {
        result?;
        bail!("shard {id} stopped on its own");
    }
    result
}

fn log_startup(config: &Config, bound: std::net::SocketAddr, cpus: &[usize]) {
    let mode = if config.stateless_stub {
        "STATELESS STUB (benchmark only, no registrar)"
    } else {
        "registrar"
    };
    let domains = if config.domains.is_empty() {
        "*".to_string()
    } else {
        config.domains.join(",")
    };
    // The shard -> CPU map, e.g. "0->cpu2,1->cpu3".
    let map = cpus
        .iter()
        .enumerate()
        .map(|(shard, cpu)| format!("{shard}->cpu{cpu}"))
        .collect::<Vec<_>>()
        .join(",");
    // ONE line, parsed by the integration tests ("listening on udp ADDR", "shards=N"): keep those phrases.
    tracing::info!(
        "corereg {} listening on udp {bound} mode={mode} shards={} shard-cpus={map} handoff-queue={} \
         domains={domains} expires={}/{}/{}s(min/default/max) max-contacts={} over-limit={} max-bindings={} \
         max-datagram={}B max-headers={} max-line={}B retry-after={}s",
        env!("CARGO_PKG_VERSION"),
        cpus.len(),
        config.handoff_queue,
        config.min_expires_s,
        config.default_expires_s,
        config.max_expires_s,
        config.max_contacts,
        config.over_limit.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default(),
        config.max_bindings,
        config.max_datagram_bytes,
        config.max_headers,
        config.max_line_bytes,
        config.retry_after_s,
    );
}

/// Joins every shard (they have been asked to stop) and logs their counters; the first error wins.
fn stop_all(handles: Vec<shard::ShardHandle>) -> Result<()> {
    let mut first_error = None;
    for handle in handles {
        match handle.join() {
            // One line per shard, parsed by the multi-shard tests ("shard N stopped:", "bindings=N").
            Ok(r) => tracing::info!(
                "shard {} stopped: cpu={} datagrams_in={} handed_off={} from_peers={} overloaded_503={} \
                 peer_closed_503={} replies_out={} send_errors={} oversized={} bindings={} registrar={:?}",
                r.id,
                r.cpu.map_or_else(|| "-".to_string(), |c| c.to_string()),
                r.datagrams_in,
                r.handed_off,
                r.from_peers,
                r.overloaded_503,
                r.peer_closed_503,
                r.replies_out,
                r.send_errors,
                r.oversized,
                r.bindings,
                r.registrar
            ),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

fn block_termination_signals() -> Result<libc::sigset_t> {
    // SAFETY: plain libc calls on a local, zero-initialised sigset_t (a valid starting state for sigemptyset).
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            bail!(
                "pthread_sigmask failed: {}",
                std::io::Error::from_raw_os_error(rc)
            );
        }
        Ok(set)
    }
}

/// A plain thread waits for SIGINT/SIGTERM and reports them; a second signal while stopping forces the exit.
fn spawn_signal_thread(set: libc::sigset_t, events: mpsc::Sender<Event>) -> Result<()> {
    std::thread::Builder::new()
        .name("corereg-signals".into())
        .spawn(move || {
            let mut seen = 0;
            loop {
                let mut sig: libc::c_int = 0;
                // SAFETY: `set` is an initialised sigset_t owned by this thread; `sig` is a valid out-pointer.
                let rc = unsafe { libc::sigwait(&set, &mut sig) };
                if rc != 0 {
                    continue;
                }
                seen += 1;
                if seen > 1 {
                    eprintln!("second signal {sig}: exiting now");
                    std::process::exit(130);
                }
                if events.send(Event::Signal(sig)).is_err() {
                    return;
                }
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

/// glommio panics deep inside executor start-up when RLIMIT_MEMLOCK is too low; check first, raise the soft
/// limit up to the hard one when that suffices, and otherwise say what to change.
fn ensure_memlock(executors: usize) -> Result<()> {
    let need = MEMLOCK_PER_EXECUTOR_BYTES * executors as u64;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the valid, local `limit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        bail!(
            "getrlimit(RLIMIT_MEMLOCK) failed: {}",
            std::io::Error::last_os_error()
        );
    }
    if limit.rlim_cur == libc::RLIM_INFINITY || limit.rlim_cur >= need {
        return Ok(());
    }
    if limit.rlim_max == libc::RLIM_INFINITY || limit.rlim_max >= need {
        let raised = libc::rlimit {
            rlim_cur: need,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the valid, local `raised`.
        if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raised) } == 0 {
            tracing::debug!(
                "raised RLIMIT_MEMLOCK soft limit from {} to {need} bytes",
                limit.rlim_cur
            );
            return Ok(());
        }
    }
    bail!(
        "locked-memory limit too low: RLIMIT_MEMLOCK is {} KiB (hard {} KiB), corereg needs at least {} KiB \
         ({} KiB per executor, for io_uring). Raise it: `ulimit -l {}` (or higher/unlimited) in the shell that \
         starts corereg, `LimitMEMLOCK={}K` (or infinity) in its systemd unit, or `--ulimit memlock=-1` for docker",
        limit.rlim_cur / 1024,
        limit.rlim_max / 1024,
        need / 1024,
        MEMLOCK_PER_EXECUTOR_BYTES / 1024,
        need / 1024,
        need / 1024,
    );
}
