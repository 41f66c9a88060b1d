//! A shard's registrants: the accounts whose AoR the shard owns, each a sans-IO
//! [`Registrant`](corereg_registrant::Registrant), driven by one task.
//!
//! The task binds its own UDP socket on an ephemeral port (the registrants' Via names it): the responses
//! come back to that socket, so to this shard, whatever the kernel's `SO_REUSEPORT` choice among the
//! listening sockets would have been. It matches each response to its registrant by Call-ID, sends what
//! the registrants ask, sleeps until the earliest timer (at most [`TICK`], so that commands and the stop
//! flag are seen), and publishes a snapshot of the states for the API.
//!
//! Host names (a `registrar` or `proxy` that is not an IP literal) are resolved off the shard
//! (`spawn_blocking`) and cached for [`RESOLVE_TTL`]; a name that does not resolve drops the datagram,
//! which the registrant then sees as a timeout.
//!
//! On stop, every registrant that may hold a binding unREGISTERs; the task ends when all are answered or
//! after the shutdown timeout.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corereg_registrant::account::Target;
use corereg_registrant::{Effect, Registrant, State};
use glommio::net::UdpSocket;

use super::Stop;
use crate::registrants::{Command, Entry, Info, ShardRegistrants, StateEvent};
use crate::sip::parse::{parse_message, HeaderName, ParseLimits, MAX_HEADERS};

/// Longest sleep: commands and the stop flag are seen within it.
pub const TICK: Duration = Duration::from_millis(100);
/// How long a resolved name (or a failure to resolve it) is kept.
pub const RESOLVE_TTL: Duration = Duration::from_secs(60);
/// The listing (`GET /v1/registrants`) is rewritten at most this often.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(100);
/// Registrants whose timers are handled in one turn before the task yields.
const BATCH: usize = 1024;

struct Slot {
    at: corereg_registrant::source::Location,
    registrant: Registrant,
    /// Removed from the source: dropped once its unREGISTER is done.
    removed: bool,
}

struct Table {
    shard: usize,
    settings: Arc<corereg_registrant::Settings>,
    seed: u64,
    slots: Vec<Slot>,
    by_key: HashMap<String, usize>,
    by_call_id: HashMap<String, usize>,
    dirty: bool,
}

impl Table {
    fn rebuild_index(&mut self) {
        self.by_key.clear();
        self.by_call_id.clear();
        for (i, s) in self.slots.iter().enumerate() {
            // A removed registrant still takes the responses to its unREGISTER, but no command.
            if !s.removed {
                self.by_key.insert(s.registrant.account().key(), i);
            }
            self.by_call_id.insert(s.registrant.call_id().to_owned(), i);
        }
    }

    fn apply(&mut self, command: Command, now_ms: u64, out: &mut Vec<Tagged>) {
        self.dirty = true;
        match command {
            Command::Upsert(entry) => {
                let Entry { at, account } = *entry;
                let key = account.key();
                let seed = self.seed ^ self.slots.len() as u64 ^ now_ms;
                let mut registrant = Registrant::new(account, self.settings.clone(), seed);
                match self.by_key.get(&key) {
                    Some(&i) if registrant.enabled() => {
                        // The row changed and stays enabled: the new registrant REGISTERs at once (same
                        // AoR, contact and registrar, so the upstream updates the binding); the old one
                        // is forgotten.
                        drive(&mut registrant, out, |r, o| r.enable(now_ms, o));
                        self.slots[i] = Slot {
                            at,
                            registrant,
                            removed: false,
                        };
                    }
                    Some(&i) => {
                        // Now disabled: the old one unREGISTERs (kept until answered), the new one waits.
                        self.slots[i].removed = true;
                        drive(&mut self.slots[i].registrant, out, |r, o| {
                            r.disable(now_ms, o)
                        });
                        self.slots.push(Slot {
                            at,
                            registrant,
                            removed: false,
                        });
                    }
                    None => {
                        registrant.start(now_ms);
                        let i = self.slots.len();
                        self.by_key.insert(key, i);
                        self.by_call_id.insert(registrant.call_id().to_owned(), i);
                        self.slots.push(Slot {
                            at,
                            registrant,
                            removed: false,
                        });
                        return;
                    }
                }
                self.rebuild_index();
            }
            Command::Remove(key) => {
                if let Some(&i) = self.by_key.get(&key) {
                    self.slots[i].removed = true;
                    drive(&mut self.slots[i].registrant, out, |r, o| {
                        r.disable(now_ms, o)
                    });
                }
            }
            Command::Batch(commands) => {
                for c in commands {
                    self.apply(c, now_ms, out);
                }
            }
            Command::SetEnabled { key, enabled } => {
                if let Some(&i) = self.by_key.get(&key) {
                    drive(&mut self.slots[i].registrant, out, |r, o| {
                        if enabled {
                            r.enable(now_ms, o);
                        } else {
                            r.disable(now_ms, o);
                        }
                    });
                }
            }
        }
    }

    /// Drops the removed registrants that are done.
    fn collect(&mut self) {
        let before = self.slots.len();
        self.slots
            .retain(|s| !(s.removed && s.registrant.is_idle()));
        if self.slots.len() != before {
            self.rebuild_index();
            self.dirty = true;
        }
    }

    fn next_timeout(&self) -> Option<u64> {
        self.slots
            .iter()
            .filter_map(|s| s.registrant.next_timeout())
            .min()
    }

    fn snapshot(&self) -> Vec<Info> {
        self.slots
            .iter()
            .filter(|s| !s.removed)
            .map(|s| {
                let r = &s.registrant;
                let a = r.account();
                Info {
                    key: a.key(),
                    source: s.at.to_string(),
                    shard: self.shard,
                    aor: a.aor.clone(),
                    registrar: a.registrar.clone(),
                    proxy: a.proxy.clone(),
                    third_party_registrant: a.third_party_registrant.clone(),
                    username: a.username.clone(),
                    binding_uri: a.binding_uri.clone(),
                    binding_params: a.binding_params.clone(),
                    expiry: a.expiry,
                    enabled: r.enabled(),
                    state: r.state().code(),
                    state_name: r.state().name(),
                    last_status: r.last_status(),
                    next_register: r.next_register_ms().map(|t| t / 1000),
                    registered_until: r.registered_until_ms().map(|t| t / 1000),
                }
            })
            .collect()
    }
}

fn now_ms() -> u64 {
    super::now().unix_ms
}

/// The Call-ID of a datagram, when it frames.
fn call_id_of(datagram: &[u8], max: usize) -> Option<&[u8]> {
    let limits = ParseLimits {
        max_message_bytes: max,
        max_headers: MAX_HEADERS,
        max_line_bytes: max,
    };
    let msg = parse_message(datagram, &limits).ok()?;
    msg.first(HeaderName::CallId).map(<[u8]>::trim_ascii)
}

/// An effect and the registrant that asked for it: (AoR, key).
type Tagged = ((String, String), Effect);

/// Runs `f` on `r`, tagging the effects it asks for with its AoR and key.
fn drive(
    r: &mut Registrant,
    out: &mut Vec<Tagged>,
    f: impl FnOnce(&mut Registrant, &mut Vec<Effect>),
) {
    let mut effects = Vec::new();
    f(r, &mut effects);
    if !effects.is_empty() {
        let tag = (r.account().aor.clone(), r.account().key());
        out.extend(effects.into_iter().map(|e| (tag.clone(), e)));
    }
}

/// Sends the datagrams among `out` and logs the state changes; clears `out`.
async fn flush(
    shard: usize,
    socket: &UdpSocket,
    events: &tokio::sync::broadcast::Sender<Arc<StateEvent>>,
    out: &mut Vec<Tagged>,
    resolved: &mut HashMap<Target, (Option<SocketAddr>, Instant)>,
) -> bool {
    let mut changed = false;
    for ((aor, key), effect) in out.drain(..) {
        match effect {
            Effect::Send { to, datagram } => {
                let addr = match &to {
                    Target::Addr(a) => Some(*a),
                    Target::Name { host, port } => match resolved.get(&to) {
                        Some((addr, at)) if at.elapsed() < RESOLVE_TTL => *addr,
                        _ => {
                            let (h, p) = (host.clone(), *port);
                            // An address of the socket's family (IPv4 or IPv6), which it can reach.
                            let v4 = socket.local_addr().map_or(true, |a| a.is_ipv4());
                            let addr = glommio::executor()
                                .spawn_blocking(move || {
                                    std::net::ToSocketAddrs::to_socket_addrs(&(h.as_str(), p))
                                        .ok()
                                        .and_then(|mut a| a.find(|a| a.is_ipv4() == v4))
                                })
                                .await;
                            if addr.is_none() {
                                tracing::warn!(shard, "registrant {aor}: cannot resolve {to}");
                            }
                            resolved.insert(to.clone(), (addr, Instant::now()));
                            addr
                        }
                    },
                };
                if let Some(addr) = addr {
                    if let Err(e) = socket.send_to(&datagram, addr).await {
                        tracing::debug!(shard, "registrant {aor}: send to {addr} failed: {e}");
                    }
                }
            }
            Effect::State { from, to, status } => {
                changed = true;
                // No subscriber is no error; a slow one is told what it missed.
                let _ = events.send(Arc::new(StateEvent {
                    at_ms: now_ms(),
                    shard,
                    key,
                    aor: aor.clone(),
                    from: from.code(),
                    to: to.code(),
                    state_name: to.name(),
                    status,
                }));
                let status = status.map(|s| format!(", status {s}")).unwrap_or_default();
                // The routine steps (registering, authenticating, registered: every refresh passes
                // through them) at debug; failures and unregistrations at info.
                if matches!(
                    to,
                    State::NotRegistered
                        | State::RegisterTimeout
                        | State::InternalError
                        | State::WrongCredentials
                        | State::RegistrarError
                ) {
                    tracing::info!(
                        shard,
                        "registrant {aor}: state {} -> {} ({}){status}",
                        from.code(),
                        to.code(),
                        to.name()
                    );
                } else {
                    tracing::debug!(
                        shard,
                        "registrant {aor}: state {} -> {} ({}){status}",
                        from.code(),
                        to.code(),
                        to.name()
                    );
                }
            }
        }
    }
    changed
}

/// Runs the shard's registrants until a stop, then unregisters them (bounded by the shutdown timeout).
pub async fn registrant_loop(shard: usize, part: ShardRegistrants, stop: Stop) {
    let ShardRegistrants {
        initial,
        commands,
        snapshot,
        mut settings,
        bind_ip,
        shutdown_timeout,
        seed,
        events,
    } = part;
    let socket = match UdpSocket::bind(SocketAddr::new(bind_ip, 0)) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(shard, "registrants: cannot bind a UDP socket on {bind_ip}: {e}; no registrant runs on this shard");
            return;
        }
    };
    let local = match socket.local_addr() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(shard, "registrants: no local address: {e}");
            return;
        }
    };
    settings.via_sent_by = local.to_string();
    let max_response = settings.max_response_bytes;
    let mut table = Table {
        shard,
        settings: Arc::new(settings),
        seed,
        slots: Vec::new(),
        by_key: HashMap::new(),
        by_call_id: HashMap::new(),
        dirty: true,
    };
    let mut out = Vec::new();
    let start = now_ms();
    for command in initial {
        table.apply(command, start, &mut out);
    }
    if !table.slots.is_empty() {
        tracing::info!(
            shard,
            "registrants: {} on this shard, sending from {local}",
            table.slots.len()
        );
    }
    let mut resolved = HashMap::new();
    let mut buf = vec![0u8; max_response + 1];
    let mut shutdown_deadline: Option<u64> = None;
    let mut last_publish: Option<Instant> = None;
    loop {
        let now = now_ms();
        while let Ok(command) = commands.try_recv() {
            if shutdown_deadline.is_none() {
                table.apply(command, now, &mut out);
            }
        }
        if stop.is_requested() && shutdown_deadline.is_none() {
            for s in &mut table.slots {
                drive(&mut s.registrant, &mut out, |r, o| r.shutdown(now, o));
            }
            shutdown_deadline = Some(now + shutdown_timeout.as_millis() as u64);
        }
        // Timers due, a batch at a time.
        let mut handled = 0;
        for i in 0..table.slots.len() {
            let r = &mut table.slots[i].registrant;
            if r.next_timeout().is_some_and(|t| t <= now) {
                drive(r, &mut out, |r, o| r.handle_timeout(now, o));
                handled += 1;
                if handled % BATCH == 0 {
                    table.dirty |= flush(shard, &socket, &events, &mut out, &mut resolved).await;
                    glommio::yield_if_needed().await;
                }
            }
        }
        if !out.is_empty() {
            table.dirty |= flush(shard, &socket, &events, &mut out, &mut resolved).await;
        }
        table.collect();
        // Every change of what is listed comes with a state change or a command; the list is written
        // at most every PUBLISH_EVERY (a busy start-up changes states hundreds of times a second).
        if table.dirty && last_publish.is_none_or(|t| t.elapsed() >= PUBLISH_EVERY) {
            *snapshot.lock().unwrap_or_else(|p| p.into_inner()) = table.snapshot();
            table.dirty = false;
            last_publish = Some(Instant::now());
        }
        if let Some(deadline) = shutdown_deadline {
            let pending = table
                .slots
                .iter()
                .filter(|s| !s.registrant.is_idle())
                .count();
            if pending == 0 {
                break;
            }
            if now >= deadline {
                tracing::warn!(
                    shard,
                    "registrants: {pending} unREGISTERs unanswered at the shutdown timeout"
                );
                break;
            }
        }
        let wait = table
            .next_timeout()
            .map_or(TICK, |t| Duration::from_millis(t.saturating_sub(now)))
            .clamp(Duration::from_millis(1), TICK);
        // A change not yet listed is listed at the next look.
        let wait = if table.dirty {
            wait.min(PUBLISH_EVERY)
        } else {
            wait
        };
        if let Err(e) = socket.set_read_timeout(Some(wait)) {
            tracing::debug!(shard, "registrants: set_read_timeout: {e}");
        }
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) => {
                let datagram = &buf[..n];
                let Some(i) = call_id_of(datagram, max_response)
                    .and_then(|c| std::str::from_utf8(c).ok())
                    .and_then(|c| table.by_call_id.get(c).copied())
                else {
                    tracing::trace!(shard, "registrants: datagram from {from} for no registrant");
                    continue;
                };
                let mut disposition = None;
                drive(&mut table.slots[i].registrant, &mut out, |r, o| {
                    disposition = Some(r.handle_response(datagram, now_ms(), o));
                });
                tracing::trace!(shard, "registrants: response from {from}: {disposition:?}");
                table.dirty |= flush(shard, &socket, &events, &mut out, &mut resolved).await;
            }
            Err(glommio::GlommioError::TimedOut(_)) => {}
            Err(e) => {
                tracing::debug!(shard, "registrants: receive failed: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    *snapshot.lock().unwrap_or_else(|p| p.into_inner()) = table.snapshot();
}
