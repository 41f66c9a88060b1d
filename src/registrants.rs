//! The registrants outside the shards: the source loaded (and reloaded), each account given to the shard
//! that owns it (the hash of its AoR, as for REGISTERs), and the management the HTTP API and `corereg
//! ctl` use: list, reload all or some, enable, disable (written back to a SQLite source).
//!
//! Each shard runs its registrants in [`crate::shard::registrants`]; this side talks to it through a
//! bounded command queue and reads the snapshot of states the shard publishes. Nothing here runs on a
//! shard: loading a source and writing a SQLite row are blocking I/O.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use corereg_registrant::account::Target;
use corereg_registrant::source::{write_state, BadRow, LoadLimits, Location, SourceError, Spec};
use corereg_registrant::{Account, Settings as MachineSettings};
use serde::Serialize;
use thiserror::Error;

use crate::config::RegistrantSettings;
use crate::registrar::bindings::HashSeed;
use crate::registrar::query::owner_of;
use crate::sip::uri::{canonical_aor, parse_uri, AorBuf};

/// Commands one shard's queue holds before [`Service`] reports it busy.
pub const COMMAND_QUEUE: usize = 64;
/// State changes kept for the subscribers of `GET /v1/registrants/events`: one that falls further
/// behind is told how many it missed.
pub const EVENTS_BUFFER: usize = 4096;
/// Subscribers of `GET /v1/registrants/events` at once.
pub const MAX_EVENT_SUBSCRIBERS: usize = 64;

/// A registrant's state change, as its event stream carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StateEvent {
    /// Unix milliseconds.
    pub at_ms: u64,
    pub shard: usize,
    pub key: String,
    pub aor: String,
    pub from: u8,
    pub to: u8,
    pub state_name: &'static str,
    /// The final status that caused it (408: a timeout).
    pub status: Option<u16>,
}

/// One row, checked, with where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub at: Location,
    pub account: Account,
}

/// What a shard is asked to do with its registrants.
#[derive(Debug)]
pub enum Command {
    /// Add the entry, or replace the registrant with the same key when its row changed.
    Upsert(Box<Entry>),
    /// Unregister and drop the registrant with this key.
    Remove(String),
    /// Enable (REGISTER now) or disable (unREGISTER now) the registrant with this key.
    SetEnabled { key: String, enabled: bool },
    /// Several at once: what one reload or one enable/disable asks of a shard is one command.
    Batch(Vec<Command>),
}

/// One registrant as listed: its row (without the password), its state and its timers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Info {
    /// `aor|binding_URI|registrar`: what makes a row unique.
    pub key: String,
    /// Where the row is: `line N` or `id N`.
    pub source: String,
    pub shard: usize,
    pub aor: String,
    pub registrar: String,
    pub proxy: Option<String>,
    pub third_party_registrant: Option<String>,
    pub username: Option<String>,
    pub binding_uri: String,
    pub binding_params: String,
    pub expiry: Option<u32>,
    pub enabled: bool,
    /// OpenSIPS's state number (0..9) and name.
    pub state: u8,
    pub state_name: &'static str,
    /// The last final status (408: the last REGISTER went unanswered).
    pub last_status: Option<u16>,
    /// When the next REGISTER (first, refresh or retry) goes out, Unix seconds.
    pub next_register: Option<u64>,
    /// When the binding granted by the last 200 expires, Unix seconds.
    pub registered_until: Option<u64>,
}

/// One follower of the state changes.
pub struct Subscription {
    pub events: tokio::sync::broadcast::Receiver<Arc<StateEvent>>,
    /// Turns true when the process stops.
    pub closed: tokio::sync::watch::Receiver<bool>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// A shard's published list.
pub type Snapshot = Arc<Mutex<Vec<Info>>>;

/// What one shard needs to run its registrants.
#[derive(Debug)]
pub struct ShardRegistrants {
    /// The shard's part of the source at start-up.
    pub initial: Vec<Command>,
    pub commands: crossbeam_channel::Receiver<Command>,
    pub snapshot: Snapshot,
    /// The machine's settings; the shard fills in its Via from the socket it binds.
    pub settings: MachineSettings,
    /// Address the shard's client socket binds (port: ephemeral).
    pub bind_ip: IpAddr,
    pub shutdown_timeout: Duration,
    /// Random per process: the Call-IDs, tags and branches derive from it.
    pub seed: u64,
    /// Where state changes go (never waited on).
    pub events: tokio::sync::broadcast::Sender<Arc<StateEvent>>,
}

/// Which registrants a management request is about; empty: all.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct Filter {
    pub aor: Option<String>,
    pub contact: Option<String>,
    pub registrar: Option<String>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.aor.is_none() && self.contact.is_none() && self.registrar.is_none()
    }

    pub fn matches(&self, a: &Account) -> bool {
        self.aor
            .as_ref()
            .is_none_or(|v| v.eq_ignore_ascii_case(&a.aor))
            && self
                .contact
                .as_ref()
                .is_none_or(|v| v.eq_ignore_ascii_case(&a.binding_uri))
            && self
                .registrar
                .as_ref()
                .is_none_or(|v| v.eq_ignore_ascii_case(&a.registrar))
    }
}

#[derive(Debug, Error)]
pub enum ServiceError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("shard {0} has too many registrant commands queued; try again")]
    Busy(usize),
    #[error("shard {0} has stopped")]
    Stopped(usize),
}

/// The result of a reload.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReloadReport {
    pub loaded: usize,
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
    /// The rows left out, with their line or id.
    pub bad_rows: Vec<String>,
}

struct ShardLink {
    commands: crossbeam_channel::Sender<Command>,
    snapshot: Snapshot,
}

/// What [`Service::start`] gives: the service, each shard's part, and the rows left out.
pub type Started = (Arc<Service>, Vec<ShardRegistrants>, Vec<BadRow>);

/// The registrants of every shard, managed from outside the shards.
pub struct Service {
    spec: Spec,
    limits: LoadLimits,
    seed: HashSeed,
    shards: Vec<ShardLink>,
    /// The rows each shard was given last (by key), to tell what a reload changes.
    given: Mutex<Vec<Entry>>,
    events: tokio::sync::broadcast::Sender<Arc<StateEvent>>,
    subscribers: Arc<tokio::sync::Semaphore>,
    /// True once the process stops: the event streams end (the API then stops without waiting on them).
    closed: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("source", &self.spec.to_string())
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Loads the source and prepares each shard's part. The bad rows are returned for the start-up log.
    pub fn start(
        settings: &RegistrantSettings,
        source: &str,
        listen: SocketAddr,
        shards: usize,
        seed: HashSeed,
    ) -> Result<Started, ServiceError> {
        let spec = Spec::parse(source)?;
        let limits = LoadLimits {
            max_rows: settings.max_rows,
            max_expiry_s: crate::config::MAX_REGISTRANT_SECONDS * 7,
            ..LoadLimits::default()
        };
        let loaded = spec.load(&limits)?;
        let machine = MachineSettings {
            start_spread_s: settings.spread_s,
            default_expiry_s: settings.default_expiry_s,
            max_expiry_s: limits.max_expiry_s,
            refresh_margin_s: settings.refresh_margin_s,
            retry_min_s: settings.retry_min_s,
            retry_max_s: settings.retry_max_s,
            user_agent: format!("corereg/{}", env!("CARGO_PKG_VERSION")),
            ..MachineSettings::default()
        };
        let first_target = loaded.accounts.iter().find_map(|(_, a)| match a.target() {
            Target::Addr(addr) => Some(addr),
            Target::Name { .. } => None,
        });
        let bind_ip = bind_ip(settings.address, listen.ip(), first_target);
        let mut bytes = [0u8; 8];
        let _ = getrandom::getrandom(&mut bytes);
        let process_seed = u64::from_le_bytes(bytes);
        let (events, _) = tokio::sync::broadcast::channel(EVENTS_BUFFER);
        let mut links = Vec::with_capacity(shards);
        let mut parts = Vec::with_capacity(shards);
        for _ in 0..shards {
            let (tx, rx) = crossbeam_channel::bounded(COMMAND_QUEUE);
            let snapshot: Snapshot = Arc::default();
            links.push(ShardLink {
                commands: tx,
                snapshot: snapshot.clone(),
            });
            parts.push(ShardRegistrants {
                initial: Vec::new(),
                commands: rx,
                snapshot,
                settings: machine.clone(),
                bind_ip,
                shutdown_timeout: Duration::from_secs(u64::from(settings.shutdown_timeout_s)),
                seed: process_seed,
                events: events.clone(),
            });
        }
        let service = Arc::new(Service {
            spec,
            limits,
            seed,
            shards: links,
            given: Mutex::new(Vec::new()),
            events,
            subscribers: Arc::new(tokio::sync::Semaphore::new(MAX_EVENT_SUBSCRIBERS)),
            closed: tokio::sync::watch::Sender::new(false),
        });
        // The first load goes through the queues: nothing else is queued yet, and each shard takes its
        // part before it starts (the queue holds what does not fit until the shard drains it).
        let entries: Vec<Entry> = loaded
            .accounts
            .into_iter()
            .map(|(at, account)| Entry { at, account })
            .collect();
        let mut initial: Vec<Vec<Command>> = (0..shards).map(|_| Vec::new()).collect();
        for e in &entries {
            initial[service.owner(&e.account)].push(Command::Upsert(Box::new(e.clone())));
        }
        *service.given.lock().unwrap_or_else(|p| p.into_inner()) = entries;
        for (part, commands) in parts.iter_mut().zip(initial) {
            part.initial = commands;
        }
        Ok((service, parts, loaded.bad))
    }

    /// The shard owning `account`: the hash of its canonical AoR, as for REGISTERs.
    pub fn owner(&self, account: &Account) -> usize {
        let mut buf = AorBuf::default();
        let canonical = parse_uri(account.aor.as_bytes())
            .ok()
            .and_then(|u| canonical_aor(&u, &mut buf).ok())
            .map(|()| buf.as_bytes());
        owner_of(
            self.seed,
            canonical.unwrap_or(account.aor.as_bytes()),
            self.shards.len(),
        )
    }

    /// A subscription to the state changes; None when [`MAX_EVENT_SUBSCRIBERS`] already follow them.
    pub fn subscribe(&self) -> Option<Subscription> {
        let permit = self.subscribers.clone().try_acquire_owned().ok()?;
        Some(Subscription {
            events: self.events.subscribe(),
            closed: self.closed.subscribe(),
            _permit: permit,
        })
    }

    /// The state changes from now on, for the binding change stream (`GET /v1/events`), whose own
    /// subscriber limit applies.
    pub fn follow(&self) -> tokio::sync::broadcast::Receiver<Arc<StateEvent>> {
        self.events.subscribe()
    }

    /// Ends the event streams (the process is stopping).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// How many registrants are in each state (0..9).
    pub fn state_counts(&self) -> [u64; 10] {
        let mut counts = [0u64; 10];
        for shard in &self.shards {
            for info in shard
                .snapshot
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
            {
                if let Some(c) = counts.get_mut(usize::from(info.state)) {
                    *c += 1;
                }
            }
        }
        counts
    }

    /// Every registrant matching `filter`, in shard order then source order.
    pub fn list(&self, filter: &Filter) -> Vec<Info> {
        let given = self.given.lock().unwrap_or_else(|p| p.into_inner());
        let keep: HashSet<String> = given
            .iter()
            .filter(|e| filter.matches(&e.account))
            .map(|e| e.account.key())
            .collect();
        drop(given);
        self.shards
            .iter()
            .flat_map(|s| s.snapshot.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .filter(|i| keep.contains(&i.key))
            .collect()
    }

    /// Reads the source again and applies its rows that match `filter` (all when empty): new rows are
    /// added, changed rows replaced, vanished rows unregistered and dropped.
    pub fn reload(&self, filter: &Filter) -> Result<ReloadReport, ServiceError> {
        let loaded = self.spec.load(&self.limits)?;
        let mut report = ReloadReport {
            bad_rows: loaded.bad.iter().map(ToString::to_string).collect(),
            ..ReloadReport::default()
        };
        let mut given = self.given.lock().unwrap_or_else(|p| p.into_inner());
        let mut batches: Vec<Vec<Command>> = self.shards.iter().map(|_| Vec::new()).collect();
        let fresh: Vec<Entry> = loaded
            .accounts
            .into_iter()
            .map(|(at, account)| Entry { at, account })
            .collect();
        let mut next: Vec<Entry> = Vec::with_capacity(fresh.len());
        // Rows outside the filter keep what the shards have.
        for old in given.iter() {
            if !filter.matches(&old.account) {
                next.push(old.clone());
            }
        }
        let old_by_key: HashMap<String, &Entry> =
            given.iter().map(|o| (o.account.key(), o)).collect();
        let fresh_keys: HashSet<String> = fresh
            .iter()
            .filter(|e| filter.matches(&e.account))
            .map(|e| e.account.key())
            .collect();
        for e in &fresh {
            if !filter.matches(&e.account) {
                continue;
            }
            report.loaded += 1;
            let key = e.account.key();
            match old_by_key.get(&key) {
                Some(old) if *old == e => {}
                Some(_) => {
                    report.changed += 1;
                    batches[self.owner(&e.account)].push(Command::Upsert(Box::new(e.clone())));
                }
                None => {
                    report.added += 1;
                    batches[self.owner(&e.account)].push(Command::Upsert(Box::new(e.clone())));
                }
            }
            next.push(e.clone());
        }
        for old in given.iter().filter(|o| filter.matches(&o.account)) {
            let key = old.account.key();
            if !fresh_keys.contains(&key) {
                report.removed += 1;
                batches[self.owner(&old.account)].push(Command::Remove(key));
            }
        }
        self.send_batches(batches)?;
        *given = next;
        Ok(report)
    }

    /// Enables or disables every registrant matching `filter`, and writes `state` back when the source is
    /// SQLite. Returns the keys affected.
    pub fn set_enabled(&self, filter: &Filter, enabled: bool) -> Result<Vec<String>, ServiceError> {
        let mut given = self.given.lock().unwrap_or_else(|p| p.into_inner());
        let mut batches: Vec<Vec<Command>> = self.shards.iter().map(|_| Vec::new()).collect();
        for e in given.iter().filter(|e| filter.matches(&e.account)) {
            batches[self.owner(&e.account)].push(Command::SetEnabled {
                key: e.account.key(),
                enabled,
            });
        }
        self.send_batches(batches)?;
        let mut keys = Vec::new();
        for e in given.iter_mut().filter(|e| filter.matches(&e.account)) {
            let key = e.account.key();
            e.account.enabled = enabled;
            if let (Spec::Sqlite(path), Location::Id(id)) = (&self.spec, e.at) {
                if let Err(err) = write_state(path, id, enabled) {
                    tracing::warn!(
                        "registrant {}: state not written back: {err}",
                        e.account.aor
                    );
                }
            }
            keys.push(key);
        }
        Ok(keys)
    }

    /// One command per shard that has any. All or nothing: every queue is checked for room first (the
    /// lock on `given` keeps other senders out; a shard only takes commands out meanwhile).
    fn send_batches(&self, batches: Vec<Vec<Command>>) -> Result<(), ServiceError> {
        for (shard, batch) in batches.iter().enumerate() {
            if !batch.is_empty() && self.shards[shard].commands.is_full() {
                return Err(ServiceError::Busy(shard));
            }
        }
        for (shard, batch) in batches.into_iter().enumerate() {
            if !batch.is_empty() {
                self.send(shard, Command::Batch(batch))?;
            }
        }
        Ok(())
    }

    fn send(&self, shard: usize, command: Command) -> Result<(), ServiceError> {
        self.shards[shard]
            .commands
            .try_send(command)
            .map_err(|e| match e {
                crossbeam_channel::TrySendError::Full(_) => ServiceError::Busy(shard),
                crossbeam_channel::TrySendError::Disconnected(_) => ServiceError::Stopped(shard),
            })
    }
}

/// The address the registrants' sockets bind: `--registrant-address`, else the listen address, else
/// (listening on every address) the one the kernel would send from towards `target` (a connected UDP
/// socket sends nothing), else loopback.
fn bind_ip(flag: Option<IpAddr>, listen: IpAddr, target: Option<SocketAddr>) -> IpAddr {
    if let Some(ip) = flag {
        return ip;
    }
    if !listen.is_unspecified() {
        return listen;
    }
    let routed = target.and_then(|t| {
        let any: SocketAddr = if t.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let s = UdpSocket::bind(any).ok()?;
        s.connect(t).ok()?;
        s.local_addr().ok().map(|a| a.ip())
    });
    routed.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_ip_prefers_the_flag_then_the_listen_address_then_the_route() {
        let lo: IpAddr = "127.0.0.1".parse().expect("ip");
        let other: IpAddr = "127.0.0.2".parse().expect("ip");
        let any: IpAddr = "0.0.0.0".parse().expect("ip");
        assert_eq!(bind_ip(Some(other), lo, None), other);
        assert_eq!(bind_ip(None, other, None), other);
        assert_eq!(
            bind_ip(None, any, Some("127.0.0.3:5060".parse().expect("addr"))),
            "127.0.0.1".parse::<IpAddr>().expect("ip")
        );
        assert_eq!(bind_ip(None, any, None), lo);
    }
}
