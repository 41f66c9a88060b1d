//! corereg's start-up: flags, logging, resource checks, one pinned shard per CPU (sockets bound and the handoff
//! mesh built before any starts), and a clean stop of every shard on SIGINT/SIGTERM. With `--auth required`:
//! the nonce key and the credentials loaded once and shared by every shard, and the credentials reloaded on
//! SIGHUP. Also the helper commands `corereg ha1`, `corereg gen-nonce-key` and `corereg ctl` (the HTTP API's
//! client, in `ctl`).
//! Everything that handles datagrams lives in the library (`corereg::shard` and the core it drives).

#![forbid(unsafe_code)]

mod ctl;

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};
use nix::sys::signal::{SigSet, Signal};
use tracing_subscriber::EnvFilter;

use corereg::api::metrics::ApiMetrics;
use corereg::api::server::{self, ApiContext, ApiServer};
use corereg::api::webhook;
use corereg::auth::credentials::{self, CredentialStore};
use corereg::auth::nonce::NonceKey;
use corereg::auth::{AuthConfig, Authenticator};
use corereg::config::{Args, AuthMode, Command, Config};
use corereg::events;
use corereg::journal;
use corereg::registrar::bindings::HashSeed;
use corereg::shard::journal::{JournalSpec, StartupSync};
use corereg::shard::mesh::{self, Links as HandoffLinks};
use corereg::shard::reload::{CredentialsFeed, RELOAD_POLL};
use corereg::shard::{self, Event, Mode, ShardAuth, ShardSpec, Stop};
use corereg::sip::digest::{ha1_hex, Algorithm};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// glommio refuses to start an executor below this much locked memory (its io_uring buffers), per executor.
const MEMLOCK_PER_EXECUTOR_BYTES: u64 = 512 * 1024;

fn main() -> ExitCode {
    let mut args = Args::parse();
    if let Some(command) = args.command.take() {
        return run_command(command);
    }
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
            eprintln!("error: {}", one_line(&e));
            return ExitCode::from(2);
        }
    };
    // The key and users files are configuration too: an unreadable or invalid one is a usage error.
    let auth = match prepare_auth(&config) {
        Ok(auth) => auth,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            return ExitCode::from(2);
        }
    };
    if let Err(e) = init_tracing(&config.log) {
        eprintln!("error: {}", one_line(&e));
        return ExitCode::from(2);
    }
    if config.auth.mode == AuthMode::Off && config.auth.credentials.is_some() {
        tracing::warn!("--credentials is given but --auth is off: REGISTERs are NOT authenticated");
    }
    if let Some(warning) = config.open_registration_warning() {
        tracing::warn!("{warning}");
    }
    match run(config, cpus, auth) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // stderr already carries the log; one line is enough.
            tracing::error!("{}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, `context: cause: root cause`, each text once. The library's errors
/// name their cause in their own message and also return it as `source()` (so that `{e}` alone says it
/// all); anyhow's `{e:#}` would print such a cause twice ("Address already in use (os error 98): Address
/// already in use (os error 98)"). A cause whose text the line already holds is skipped.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
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

/// `corereg ha1`, `corereg gen-nonce-key` and `corereg ctl`: print to stdout, errors to stderr.
fn run_command(command: Command) -> ExitCode {
    let result = match command {
        Command::Ctl(args) => return ctl::main(args),
        Command::Ha1 {
            user,
            realm,
            password,
            toml,
            csv,
        } => print_ha1(&user, &realm, password, toml, csv),
        Command::GenNonceKey => NonceKey::generate_hex()
            .map(|hex| println!("{hex}"))
            .context("cannot generate a nonce key"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

fn print_ha1(user: &str, realm: &str, password: String, toml: bool, csv: bool) -> Result<()> {
    let password = if password == "-" {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        password
    };
    if toml {
        print!("{}", credentials::ha1_entry_toml(user, realm, &password));
    } else if csv {
        print!("{}", credentials::ha1_entry_csv(user, realm, &password));
    } else {
        println!(
            "MD5      {}",
            ha1_hex(Algorithm::Md5, user, realm, &password)
        );
        println!(
            "SHA-256  {}",
            ha1_hex(Algorithm::Sha256, user, realm, &password)
        );
    }
    Ok(())
}

/// What every shard's authenticator is built from, loaded once at start-up.
struct PreparedAuth {
    config: AuthConfig,
    /// One key for every shard: a nonce issued by one shard must verify on the shard owning the AoR.
    key: NonceKey,
    key_source: String,
    feed: CredentialsFeed,
    reloader: Reloader,
}

/// Re-reads the credentials file on SIGHUP and publishes it to the shards.
#[derive(Clone)]
struct Reloader {
    path: PathBuf,
    default_realm: Option<String>,
    feed: CredentialsFeed,
}

impl Reloader {
    fn load(&self) -> Result<Arc<CredentialStore>, credentials::CredentialsError> {
        CredentialStore::load(&self.path, self.default_realm.as_deref())
    }

    /// One log line per reload, never a secret. A file that does not load leaves the previous users in force.
    fn reload(&self) {
        let (_, old) = self.feed.current();
        match self.load() {
            Ok(store) => {
                let users = store.len();
                let generation = self.feed.publish(store);
                tracing::info!(
                    "SIGHUP: credentials reloaded from {}: users={users} (was {}), generation {generation}, \
                     in force on every shard within {RELOAD_POLL:?}",
                    self.path.display(),
                    old.len()
                );
            }
            Err(e) => tracing::error!(
                "SIGHUP: credentials reload failed, keeping the previous {} users: {e}",
                old.len()
            ),
        }
    }
}

fn prepare_auth(config: &Config) -> Result<Option<PreparedAuth>> {
    if config.auth.mode == AuthMode::Off {
        return Ok(None);
    }
    let Some(path) = config.auth.credentials.clone() else {
        // Config::validate refuses this; kept as an error rather than a panic.
        bail!("--auth required needs --credentials FILE");
    };
    let (key, key_source) = match &config.auth.nonce_key_file {
        Some(file) => (
            // Display only: these errors already name their cause inline, a chain would repeat it.
            NonceKey::load(file).map_err(|e| anyhow!("cannot use --nonce-key-file: {e}"))?,
            format!("file:{}", file.display()),
        ),
        None => (
            NonceKey::generate().context("cannot generate a nonce key")?,
            "random".to_string(),
        ),
    };
    let default_realm = config.default_credentials_realm();
    let reloader = Reloader {
        path,
        default_realm,
        feed: CredentialsFeed::new(Arc::new(CredentialStore::empty())),
    };
    let store = reloader
        .load()
        .map_err(|e| anyhow!("cannot load the --credentials file: {e}"))?;
    let feed = CredentialsFeed::new(store);
    Ok(Some(PreparedAuth {
        config: config.auth_config(),
        key,
        key_source,
        reloader: Reloader {
            feed: feed.clone(),
            ..reloader
        },
        feed,
    }))
}

/// Runs one shard per entry of `cpus` (shard i pinned to `cpus[i]`) until a signal or a shard's exit.
fn run(config: Config, cpus: Vec<usize>, auth: Option<PreparedAuth>) -> Result<()> {
    // Signals are blocked before any thread starts, so every thread inherits the mask and only the signal
    // thread (sigwait) ever receives SIGINT/SIGTERM/SIGHUP.
    let signals = block_handled_signals()?;
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
    // The journal's directory, locked for this process; its hash seed (which places every AoR on its shard)
    // is the one the data was written with.
    let data_dir = match (&config.journal.data_dir, config.stateless_stub) {
        (Some(dir), false) => Some(
            journal::DataDir::open(dir)
                .with_context(|| format!("cannot use --data-dir {}", dir.display()))?,
        ),
        _ => None,
    };
    // With every socket in the group (index i = shard i, the bind order), choose how datagrams spread.
    let pinned: Vec<Option<usize>> = cpus.iter().copied().map(Some).collect();
    shard::steer::spread_receive(&sockets[0], config.receive_spread, &pinned)?;
    // One base config for all: every shard (and the API) must route AoRs with the same hash seed.
    let mut registrar_configs = config.registrar_configs(shards);
    if let Some(dir) = &data_dir {
        let seed = dir.seed();
        for c in &mut registrar_configs {
            c.hash_seed = seed;
        }
    }
    let seed = registrar_configs[0].hash_seed;
    let startup_sync = Arc::new(StartupSync::new(shards));
    let modes: Vec<Mode> = if config.stateless_stub {
        vec![Mode::StatelessStub; shards]
    } else {
        registrar_configs.into_iter().map(Mode::Registrar).collect()
    };
    let mut links: Vec<Option<HandoffLinks>> = if shards > 1 && !config.stateless_stub {
        mesh::mesh(shards, config.handoff_queue)
            .context("cannot create the handoff mesh's doorbells")?
            .into_iter()
            .map(Some)
            .collect()
    } else {
        (0..shards).map(|_| None).collect()
    };

    // Every authenticator starts its replay window now (see corereg::auth::replay).
    let started_s = shard::now().unix_s();

    let (registrants, mut registrant_parts) = prepare_registrants(&config, bound, shards, seed)?;
    let mut api = prepare_api(&config, shards, seed, registrants.clone())?;
    let mut inboxes = std::mem::take(&mut api.inboxes);

    let stop = Stop::default();
    let (events_tx, events) = mpsc::channel();
    let mut handles = Vec::with_capacity(shards);
    for (id, ((socket, mode), cpu)) in sockets.into_iter().zip(modes).zip(&cpus).enumerate() {
        let spec = ShardSpec {
            id,
            cpu: Some(*cpu),
            socket,
            mode,
            recv: shard::udp::RecvConfig {
                max_datagram_bytes: config.max_datagram_bytes,
                batch: config.recv_batch,
                coalesce: shard::coalesce::CoalesceConfig {
                    max_hold: std::time::Duration::from_micros(config.coalesce_us),
                    datagrams: config.coalesce_datagrams,
                },
            },
            links: links.get_mut(id).and_then(Option::take),
            auth: auth.as_ref().map(|a| ShardAuth {
                authenticator: Authenticator::new(
                    a.config,
                    a.key.clone(),
                    a.feed.current().1,
                    started_s,
                ),
                feed: a.feed.clone(),
            }),
            api: inboxes.get_mut(id).and_then(Option::take),
            changes: api.changes.clone(),
            registrants: registrant_parts.get_mut(id).and_then(Option::take),
            journal: data_dir.as_ref().map(|dir| JournalSpec {
                root: dir.root.clone(),
                previous: dir.previous,
                seed,
                shards,
                settings: config.journal.clone(),
                sync: startup_sync.clone(),
            }),
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
    // The shards hold the change stream's senders now: the hub stops when they do.
    api.changes = None;
    spawn_signal_thread(
        signals,
        events_tx,
        auth.as_ref().map(|a| a.reloader.clone()),
        registrants.clone(),
    )?;

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
    api.ready.store(true, std::sync::atomic::Ordering::Release);
    log_startup(&config, bound, &cpus, auth.as_ref());

    let first = events.recv().context("all shards vanished")?;
    // The API goes first: nothing asks a shard that is stopping. The registrants' event streams end
    // first, so that the API does not wait on them.
    if let Some(service) = &registrants {
        service.close();
    }
    drop(api);
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

/// The registrants' service (None without `--registrants`) and each shard's part.
type PreparedRegistrants = (
    Option<Arc<corereg::registrants::Service>>,
    Vec<Option<corereg::registrants::ShardRegistrants>>,
);

/// Loads the registrants' source (when `--registrants` is given) and splits it among the shards. A
/// source that cannot be read stops start-up; a bad row is logged and skipped.
fn prepare_registrants(
    config: &Config,
    listen: std::net::SocketAddr,
    shards: usize,
    seed: HashSeed,
) -> Result<PreparedRegistrants> {
    let Some(source) = &config.registrants.source else {
        return Ok((None, (0..shards).map(|_| None).collect()));
    };
    if config.stateless_stub {
        tracing::warn!("--registrants ignored: the stateless stub runs no registrants");
        return Ok((None, (0..shards).map(|_| None).collect()));
    }
    let (service, parts, bad) =
        corereg::registrants::Service::start(&config.registrants, source, listen, shards, seed)
            .map_err(|e| anyhow!("cannot load --registrants: {e}"))?;
    for row in &bad {
        tracing::warn!("--registrants {source}: {row}: row skipped");
    }
    let count: usize = parts.iter().map(|p| p.initial.len()).sum();
    tracing::info!(
        "registrants: {count} loaded from {source} ({} rows skipped), first REGISTERs spread over {} s",
        bad.len(),
        config.registrants.spread_s
    );
    Ok((Some(service), parts.into_iter().map(Some).collect()))
}

/// The HTTP API, the event hub and the webhook, as started before the shards.
struct PreparedApi {
    /// Each shard's end of its API queue (None without the API), taken by the shard specs.
    inboxes: Vec<Option<shard::api::ShardInbox>>,
    /// Where the shards hand their changes (None: nobody listens).
    changes: Option<crossbeam_channel::Sender<shard::changes::ShardChanges>>,
    ready: Arc<std::sync::atomic::AtomicBool>,
    server: Option<ApiServer>,
    webhook: Option<Webhook>,
}

/// The webhook's thread and its stop flag.
struct Webhook {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// How many change batches may wait for the event hub before a shard drops one (and the hub reports it),
/// per shard: the hub takes them every `--events-gather-ms` (at most 8 times that when it was idle).
const CHANGE_BATCHES_QUEUED_PER_SHARD: usize = 2048;

/// Starts the event hub (when anything listens to it: the API or the webhook), the webhook and the HTTP API,
/// before the shards: a port that is taken or a token file that cannot be read stops start-up here.
fn prepare_api(
    config: &Config,
    shards: usize,
    seed: HashSeed,
    registrants: Option<Arc<corereg::registrants::Service>>,
) -> Result<PreparedApi> {
    let settings = &config.api;
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut prepared = PreparedApi {
        inboxes: (0..shards).map(|_| None).collect(),
        changes: None,
        ready: ready.clone(),
        server: None,
        webhook: None,
    };
    let webhook_config = config.webhook_config();
    if settings.listen.is_none() && webhook_config.is_none() {
        return Ok(prepared);
    }
    if config.stateless_stub {
        tracing::info!("HTTP API and webhook off: the stateless stub has no bindings");
        return Ok(prepared);
    }
    let token = match &settings.token_file {
        Some(path) => Some(read_token(path)?),
        None => None,
    };
    let (changes_tx, changes_rx) =
        crossbeam_channel::bounded(CHANGE_BATCHES_QUEUED_PER_SHARD * shards);
    let (hub_tx, hub_rx) = crossbeam_channel::bounded(1024);
    let hub = events::Hub::new(
        events::HubConfig {
            window: settings.events_window,
            subscriber_queue: settings.events_subscriber_queue,
            max_subscribers: settings.events_max_subscribers,
            gather: Duration::from_millis(settings.events_gather_ms as u64),
        },
        shards,
    );
    std::thread::Builder::new()
        .name("corereg-events".into())
        .spawn(move || events::run(hub, changes_rx, hub_rx))
        .context("cannot start the event hub's thread")?;
    prepared.changes = Some(changes_tx);
    let webhook_counters = match webhook_config {
        Some(cfg) => {
            let counters = Arc::new(webhook::WebhookCounters::default());
            prepared.webhook = Some(start_webhook(cfg, hub_tx.clone(), counters.clone())?);
            Some(counters)
        }
        None => None,
    };
    let Some(listen) = settings.listen else {
        return Ok(prepared);
    };
    let mut clients = Vec::with_capacity(shards);
    for (id, slot) in prepared.inboxes.iter_mut().enumerate() {
        let (client, inbox) = shard::api::channel(id, settings.shard_queue)
            .context("cannot create a shard's API queue")?;
        clients.push(client);
        *slot = Some(inbox);
    }
    let ctx = ApiContext {
        shards: clients,
        hub: hub_tx,
        seed,
        domains: config.domains.clone(),
        token,
        run_id: run_id(),
        ready,
        metrics: ApiMetrics::default(),
        webhook: webhook_counters,
        snapshots: Arc::new(tokio::sync::Semaphore::new(server::MAX_SNAPSHOTS)),
        registrants,
    };
    let limits = server::ServeLimits {
        threads: settings.threads,
        max_connections: settings.max_connections,
        header_timeout: Duration::from_secs(settings.header_timeout_s as u64),
    };
    let server = server::start(listen, limits, ctx)?;
    tracing::info!(
        "HTTP API on http://{} ({}; docs/api.md)",
        server.addr,
        if settings.token_file.is_some() {
            "bearer token required"
        } else {
            "loopback, no token"
        }
    );
    prepared.server = Some(server);
    Ok(prepared)
}

fn start_webhook(
    cfg: webhook::WebhookConfig,
    hub: crossbeam_channel::Sender<events::Request>,
    counters: Arc<webhook::WebhookCounters>,
) -> Result<Webhook> {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let url = cfg.url.clone();
    let thread = std::thread::Builder::new()
        .name("corereg-webhook".into())
        .spawn(move || {
            webhook::run(cfg, hub, counters, move || {
                flag.load(std::sync::atomic::Ordering::Acquire)
            })
        })
        .context("cannot start the webhook's thread")?;
    tracing::info!("webhook: binding change events are POSTed to {url}");
    Ok(Webhook {
        stop,
        thread: Some(thread),
    })
}

/// The bearer token: the file's first line, trimmed; an empty or unreadable file is an error naming the flag.
fn read_token(path: &std::path::Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --http-token-file {}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                "--http-token-file {} can be read by other users (mode {:o}): chmod 600 it",
                path.display(),
                meta.permissions().mode() & 0o777
            );
        }
    }
    if token.is_empty() {
        bail!(
            "--http-token-file {}: the first line (the token) is empty",
            path.display()
        );
    }
    Ok(token)
}

/// A random id for this run: event ids carry it, so that an id of an earlier run is never taken for one of
/// this run.
fn run_id() -> String {
    let mut bytes = [0u8; 4];
    if getrandom::getrandom(&mut bytes).is_err() {
        let now = shard::now().unix_ms;
        bytes = (now as u32).to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn log_startup(
    config: &Config,
    bound: std::net::SocketAddr,
    cpus: &[usize],
    auth: Option<&PreparedAuth>,
) {
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
    // Names and counts only: never a password, HA1 or key.
    let auth = match auth {
        None => "auth=off".to_string(),
        Some(a) => {
            let (realms, open) = config.auth_realms();
            let mut realms = realms.join(",");
            if open {
                // Every domain served: unmapped To hosts are their own realm.
                realms += if realms.is_empty() {
                    "<To host>"
                } else {
                    ",<To host>"
                };
            }
            format!(
                "auth=required realms={realms} users={} nonce-ttl={}s nonce-key={} auth-max-failures={}/{}s \
                 auth-cooldown={}s auth-algorithms={}",
                a.feed.current().1.len(),
                config.auth.nonce_ttl_s,
                a.key_source,
                config.auth.max_failures,
                config.auth.failure_window_s,
                config.auth.cooldown_s,
                config
                    .auth
                    .algorithms
                    .0
                    .iter()
                    .map(|alg| alg.name())
                    .collect::<Vec<_>>()
                    .join(","),
            )
        }
    };
    let journal = match (&config.journal.data_dir, config.stateless_stub) {
        (Some(dir), false) => format!(
            "data-dir={} fsync={} expires-range={}%",
            dir.display(),
            config.journal.fsync,
            config.expires_range_pct
        ),
        _ => "data-dir=none".to_string(),
    };
    // ONE line, parsed by the integration tests ("listening on udp ADDR", "shards=N", "users=N"): keep those
    // phrases.
    tracing::info!(
        "corereg {} listening on udp {bound} mode={mode} shards={} shard-cpus={map} receive-spread={} \
         handoff-queue={} domains={domains} expires={}/{}/{}s(min/default/max) max-contacts={} over-limit={} \
         max-bindings={} max-datagram={}B recv-batch={} max-headers={} max-line={}B retry-after={}s {journal} {auth}",
        env!("CARGO_PKG_VERSION"),
        cpus.len(),
        config.receive_spread,
        config.handoff_queue,
        config.min_expires_s,
        config.default_expires_s,
        config.max_expires_s,
        config.max_contacts,
        config.over_limit,
        config.max_bindings,
        config.max_datagram_bytes,
        config.recv_batch,
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
            // `shard N stopped: ... handed_off=N ... bindings=N` is parsed by the multi-shard tests.
            Ok(report) => {
                for line in report.log_lines() {
                    tracing::info!("{line}");
                }
            }
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

/// SIGINT/SIGTERM stop; SIGHUP reloads the credentials (and is harmless without --auth: it would otherwise
/// terminate the process, as the default action does).
/// SIGXFSZ is blocked too and never waited for: a journal write past the file size limit then fails with
/// EFBIG (answered like a full disk) instead of killing the process.
fn block_handled_signals() -> Result<SigSet> {
    let mut set = SigSet::empty();
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(sig);
    }
    let mut blocked = set;
    blocked.add(Signal::SIGXFSZ);
    blocked.thread_block().context("pthread_sigmask failed")?;
    Ok(set)
}

/// A plain thread waits for signals. SIGHUP reloads the credentials right here (file I/O off the shards);
/// SIGINT/SIGTERM are reported, and a second one while stopping forces the exit.
fn spawn_signal_thread(
    set: SigSet,
    events: mpsc::Sender<Event>,
    reloader: Option<Reloader>,
    registrants: Option<Arc<corereg::registrants::Service>>,
) -> Result<()> {
    std::thread::Builder::new()
        .name("corereg-signals".into())
        .spawn(move || {
            let mut seen = 0;
            loop {
                let Ok(sig) = set.wait() else {
                    continue;
                };
                if sig == Signal::SIGHUP {
                    match (&reloader, &registrants) {
                        (Some(r), _) => r.reload(),
                        (None, Some(_)) => {}
                        (None, None) => tracing::info!("SIGHUP: nothing to reload (--auth off)"),
                    }
                    if let Some(service) = &registrants {
                        reload_registrants(service);
                    }
                    continue;
                }
                seen += 1;
                if seen > 1 {
                    eprintln!("second signal {}: exiting now", sig as i32);
                    std::process::exit(130);
                }
                if events.send(Event::Signal(sig as i32)).is_err() {
                    return;
                }
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

/// SIGHUP: the registrants' source read again; a source that does not load leaves the registrants as
/// they were.
fn reload_registrants(service: &corereg::registrants::Service) {
    match service.reload(&corereg::registrants::Filter::default()) {
        Ok(report) => {
            for row in &report.bad_rows {
                tracing::warn!("SIGHUP: registrants: {row}: row skipped");
            }
            tracing::info!(
                "SIGHUP: registrants reloaded: {} rows, {} added, {} changed, {} removed, {} skipped",
                report.loaded,
                report.added,
                report.changed,
                report.removed,
                report.bad_rows.len()
            );
        }
        Err(e) => {
            tracing::error!("SIGHUP: registrants reload failed, keeping the previous ones: {e}")
        }
    }
}

/// glommio panics deep inside executor start-up when RLIMIT_MEMLOCK is too low; check first, raise the soft
/// limit up to the hard one when that suffices, and otherwise say what to change.
fn ensure_memlock(executors: usize) -> Result<()> {
    let need = MEMLOCK_PER_EXECUTOR_BYTES * executors as u64;
    let (soft, hard) =
        getrlimit(Resource::RLIMIT_MEMLOCK).context("getrlimit(RLIMIT_MEMLOCK) failed")?;
    if soft == RLIM_INFINITY || soft >= need {
        return Ok(());
    }
    if (hard == RLIM_INFINITY || hard >= need)
        && setrlimit(Resource::RLIMIT_MEMLOCK, need, hard).is_ok()
    {
        tracing::debug!("raised RLIMIT_MEMLOCK soft limit from {soft} to {need} bytes");
        return Ok(());
    }
    bail!(
        "locked-memory limit too low: RLIMIT_MEMLOCK is {} KiB (hard {} KiB), corereg needs at least {} KiB \
         ({} KiB per executor, for io_uring). Raise it: `ulimit -l {}` (or higher/unlimited) in the shell that \
         starts corereg, `LimitMEMLOCK={}K` (or infinity) in its systemd unit, or `--ulimit memlock=-1` for docker",
        soft / 1024,
        hard / 1024,
        need / 1024,
        MEMLOCK_PER_EXECUTOR_BYTES / 1024,
        need / 1024,
        need / 1024,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot bind {addr}: {source}")]
    struct BindError {
        addr: &'static str,
        source: std::io::Error,
    }

    #[test]
    fn one_line_names_each_cause_once() {
        let os = || std::io::Error::from(nix::errno::Errno::EADDRINUSE);
        let e = anyhow::Error::from(BindError {
            addr: "127.0.0.1:5060",
            source: os(),
        });
        let line = one_line(&e);
        assert_eq!(line, format!("cannot bind 127.0.0.1:5060: {}", os()));
        assert_eq!(line.matches(&os().to_string()).count(), 1, "{line}");
        // Context that does not repeat its cause keeps the whole chain.
        let e = anyhow::Error::from(os()).context("cannot read the CPU affinity mask");
        assert_eq!(
            one_line(&e),
            format!("cannot read the CPU affinity mask: {}", os())
        );
    }
}
