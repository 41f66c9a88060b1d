//! The registrar: a pure, synchronous RFC 3261 §10.3 state machine. It does no I/O, reads no clock and
//! starts no thread: the caller brings the datagrams and the time.
//!
//! # Use
//! - [`Registrar::new`] takes a [`RegistrarConfig`] and the current time. [`Registrar::handle`] takes one
//!   datagram, its source address and the time, writes the response (if any) into `out`, which it clears
//!   first, and returns the [`Outcome`]: a reply to send, nothing to send, or the shard to hand it to.
//! - Expiry: [`Registrar::next_timeout`] is the Unix second at which [`Registrar::handle_timeout`] is next
//!   due (None: no binding to expire). `handle_timeout(now)` removes due bindings in bounded batches and
//!   returns true while more are due: yield to other work, then call it again.
//! - Several shards: build each shard's registrar from clones of one config (they then share the AoR hash
//!   seed) and call [`Registrar::set_partition`]. A REGISTER for an AoR another shard owns then comes back
//!   as [`Outcome::HandOff`] with nothing changed, for the caller to pass to the owner's `handle`;
//!   [`Registrar::reject_overloaded`] answers 503 when the owner cannot take it.
//! - Authentication: [`Registrar::set_authenticator`] makes every REGISTER need digest credentials.
//! - [`Now`] is wall-clock time in milliseconds since the Unix epoch (tests pass a fake clock).

pub mod aor_table;
mod arena;
pub mod bindings;
pub mod changes;
mod date;
mod invariants;
#[allow(unsafe_code)]
mod prefetch;
pub mod query;
pub mod register;
pub mod replay;
mod reply;
mod validate;
pub mod wheel;

use std::net::SocketAddr;

use bindings::{BindingStore, HashSeed, TxnKey};
use changes::{ChangeBatch, ChangeKind};
use date::DateCache;
use register::{Refusal, RegisterRequest, State};
use validate::{Basics, Checks, Malformed};
use wheel::TimerWheel;

use crate::auth::{AuthDecision, AuthRequest, Authenticator, MAX_AUTHORIZATIONS};
use crate::sip::header::{has_option_tag, split_list, NameAddr};
use crate::sip::parse::{
    parse_message, FramingError, HeaderName, Message, Method, ParseLimits, StartLine,
    StartLineError,
};
use crate::sip::response::{ResponseWriter, ViaFacts};
use crate::sip::uri::{canonical_aor, parse_uri, AorBuf, SipUri, UriError};
/// Wall-clock time supplied by the shell: milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Now {
    pub unix_ms: u64,
}

impl Now {
    pub fn from_secs(unix_s: u64) -> Self {
        Now {
            unix_ms: unix_s * 1000,
        }
    }
    pub fn unix_s(self) -> u64 {
        self.unix_ms / 1000
    }
}

/// A REGISTER's AoR worked out from its To: the To URI and the AoR's hash (the AoR itself is written into an
/// [`AorBuf`]), or the status to refuse the request with (400 or 404).
type AorLookup<'a> = Result<(SipUri<'a>, u64), u16>;

/// What [`Registrar::validate_looking_ahead`] found: the checks' result and the AoR lookup, or the shard that
/// owns the AoR of a REGISTER this shard does not own.
enum Looked<'a> {
    Owned(Result<Basics<'a>, Malformed>, Option<AorLookup<'a>>),
    Elsewhere(usize),
}

/// What to do when a REGISTER would take an AoR over `max_contacts_per_aor`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum OverLimitPolicy {
    /// 403 Forbidden (nothing changes).
    Reject403,
    /// 503 Service Unavailable with Retry-After (nothing changes).
    Reject503,
    /// Remove the bindings that expire soonest to make room (Kamailio's/OpenSIPS' "overwrite oldest").
    EvictOldest,
}

/// The name of the flag's value (`reject503`).
impl std::fmt::Display for OverLimitPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OverLimitPolicy::Reject403 => "reject403",
            OverLimitPolicy::Reject503 => "reject503",
            OverLimitPolicy::EvictOldest => "evict-oldest",
        })
    }
}

#[derive(Clone, Debug)]
pub struct RegistrarConfig {
    /// Domains served (lower-case); empty = every domain (§10.3 step 1).
    pub domains: Vec<String>,
    pub default_expires_s: u32,
    pub min_expires_s: u32,
    pub max_expires_s: u32,
    pub max_contacts_per_aor: usize,
    /// Contacts accepted in one REGISTER (at most `register::MAX_CONTACTS_PER_REQUEST`).
    pub max_contacts_per_request: usize,
    /// Bytes one binding may store (contact URI, Call-ID, Path, instance, User-Agent, and its AoR's name):
    /// bounds memory per binding whatever the requests (at most `register::MAX_BINDING_BYTES`).
    pub max_binding_bytes: usize,
    pub over_limit: OverLimitPolicy,
    /// Bindings this registrar (shard) may hold in all; over it new bindings get 503.
    pub max_bindings: usize,
    /// Seconds sent in Retry-After with 503s.
    pub retry_after_s: u32,
    pub parse: ParseLimits,
    /// Value of the Server header (empty: none).
    pub server_name: String,
    /// AoR hash seed, shared by every shard of a process (it also picks the owning shard).
    pub hash_seed: HashSeed,
    /// Digest realm per served domain (lower-case domain, realm); a domain not listed uses itself.
    pub realms: Vec<(String, String)>,
    /// Reserve the binding, AoR and timer arenas for `max_bindings` up front. The reservation is address
    /// space (pages are touched as bindings arrive), and it means a shard never copies an arena while it
    /// serves: growing a 100k-binding arena costs a multi-megabyte copy plus fresh page faults in the
    /// middle of traffic. The server sets it; tests that
    /// build thousands of registrars leave it off.
    pub reserve_arenas: bool,
    /// Percent by which the expiry of the next registration of an AoR whose bindings expired while the
    /// registrar was down is shortened at random (0 to this), so that the refreshes of phones that all
    /// re-registered together after a restart spread out (Kamailio's `expires_range`). 0: off.
    pub expires_range_pct: u32,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            domains: Vec::new(),
            default_expires_s: 3600,
            min_expires_s: 60,
            max_expires_s: 86400,
            max_contacts_per_aor: 10,
            max_contacts_per_request: 32,
            max_binding_bytes: 2048,
            over_limit: OverLimitPolicy::Reject503,
            max_bindings: 1_000_000,
            retry_after_s: 5,
            parse: ParseLimits::default(),
            server_name: concat!("corereg/", env!("CARGO_PKG_VERSION")).to_string(),
            hash_seed: HashSeed::random(),
            realms: Vec::new(),
            reserve_arenas: false,
            expires_range_pct: 0,
        }
    }
}

/// Why nothing was sent back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Silence {
    /// A SIP response (never answered).
    Response,
    /// ACK (never answered).
    Ack,
    /// Not even the header section could be framed, or no Via to answer to.
    Unanswerable,
}

/// The result of one `handle` call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `out` holds a response with this status code.
    Reply { status: u16, bindings_changed: bool },
    /// Nothing to send.
    Silent(Silence),
    /// A REGISTER whose AoR another shard owns (see `Registrar::set_partition`): hand the datagram to
    /// shard `owner`, which answers it. Nothing was changed here and `out` is empty.
    HandOff { owner: usize },
}

/// Which of the process's shards this registrar is, for AoR ownership (`owner = hash(AoR) mod shards`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Partition {
    shard: usize,
    shards: usize,
}

impl Partition {
    /// The owning shard of an AoR hash when it is not this one.
    fn owner_elsewhere(self, aor_hash: u64) -> Option<usize> {
        if self.shards <= 1 {
            return None;
        }
        let owner = (aor_hash % self.shards as u64) as usize;
        (owner != self.shard).then_some(owner)
    }
}

/// Counters (per registrar / shard).
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Calls of [`Registrar::handle`]. In a partitioned registrar a request handed to its owner is counted
    /// by both: once by the shard that received it and once by the owner.
    pub requests: u64,
    /// REGISTERs applied (bindings added, refreshed, removed or fetched): 200 OK.
    pub registers_ok: u64,
    /// 4xx responses written.
    pub replies_4xx: u64,
    /// 5xx responses written, including the 503s of [`Registrar::reject_overloaded`].
    pub replies_5xx: u64,
    /// Datagrams answered with nothing: responses, ACKs, and what cannot be answered.
    pub dropped: u64,
    /// Bindings removed because they expired.
    pub expired: u64,
    /// Bindings removed by an operator ([`Registrar::delete`]).
    pub deleted: u64,
    /// Every reply written, by status code.
    pub replies: StatusCounts,
}

/// The status codes the registrar answers with.
pub const STATUS_CODES: [u16; 16] = [
    200, 400, 401, 403, 404, 405, 413, 414, 416, 420, 423, 439, 501, 503, 505, 513,
];

/// Replies counted by status code ([`STATUS_CODES`]; any other code is counted apart).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatusCounts([u64; STATUS_CODES.len() + 1]);

impl StatusCounts {
    /// Counts one reply with `status`.
    pub fn count(&mut self, status: u16) {
        let slot = STATUS_CODES
            .iter()
            .position(|&s| s == status)
            .unwrap_or(STATUS_CODES.len());
        self.0[slot] += 1;
    }

    /// Each status code with its count; None stands for every other code.
    pub fn iter(&self) -> impl Iterator<Item = (Option<u16>, u64)> + '_ {
        let codes = STATUS_CODES.iter().map(|&s| Some(s)).chain([None]);
        codes.zip(self.0.iter().copied())
    }
}

impl Stats {
    /// Every counter with its name, in declaration order (for `key=value` logs).
    #[must_use]
    pub fn counters(&self) -> [(&'static str, u64); 7] {
        // Destructured without `..`: a new counter does not compile until it is listed here.
        let Stats {
            requests,
            registers_ok,
            replies_4xx,
            replies_5xx,
            dropped,
            expired,
            deleted,
            replies: _,
        } = *self;
        [
            ("requests", requests),
            ("registers_ok", registers_ok),
            ("replies_4xx", replies_4xx),
            ("replies_5xx", replies_5xx),
            ("dropped", dropped),
            ("expired", expired),
            ("deleted", deleted),
        ]
    }
}

/// One request being answered: the parsed message, where it came from, and when.
#[derive(Clone, Copy)]
struct Exchange<'x, 'm> {
    msg: &'x Message<'m>,
    source: SocketAddr,
    now: Now,
    /// The top via-parm's facts once validation has parsed it (the reply's Via needs them).
    top_via: Option<ViaFacts<'m>>,
}

impl<'x, 'm> Exchange<'x, 'm> {
    /// A request not validated (yet): the reply parses its top Via itself.
    fn unvalidated(msg: &'x Message<'m>, source: SocketAddr, now: Now) -> Self {
        Exchange {
            msg,
            source,
            now,
            top_via: None,
        }
    }
}

/// Option tags this registrar implements (RFC 3327 Path, RFC 5626 outbound).
const SUPPORTED: &[u8] = b"path, outbound";
const ALLOW: &[u8] = b"REGISTER, OPTIONS";
/// Expired bindings removed per `handle_timeout` call before yielding back to the shell.
const EXPIRY_BATCH: usize = 1024;

pub struct Registrar {
    cfg: RegistrarConfig,
    store: BindingStore,
    wheel: TimerWheel,
    stats: Stats,
    date: DateCache,
    /// Scratch space reused across requests (no allocation once warm).
    expired: Vec<u32>,
    path: Vec<u8>,
    tag_hasher: ahash::RandomState,
    /// Digest authentication (RFC 3261 §10.3 steps 3-4); None: every REGISTER is accepted.
    auth: Option<Authenticator>,
    partition: Partition,
    /// AoR hashes whose bindings expired while the registrar was down (see
    /// [`RegistrarConfig::expires_range_pct`]); each spreads its next registration once. Forgotten after
    /// `spread_until_s` (by then every such phone has registered again).
    spread: std::collections::HashSet<u64>,
    spread_until_s: u64,
    /// False while the journal cannot write: REGISTERs that would change bindings get 503.
    accepting_changes: bool,
}

/// What [`Registrar::restore_aor`] did with a binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreOutcome {
    /// Restored under its id.
    Restored,
    /// Restored under another id (its own was taken).
    Renumbered,
    /// Expired while the registrar was down: dropped, and its AoR's next registration is spread.
    Expired,
    /// Another shard owns its AoR.
    NotOwned,
    /// The store is full, or refuses the binding's fields.
    Refused,
}

impl Registrar {
    pub fn new(cfg: RegistrarConfig, now: Now) -> Self {
        let (store, wheel) = if cfg.reserve_arenas {
            (
                BindingStore::with_reserved(cfg.hash_seed, cfg.max_bindings),
                TimerWheel::with_reserved(now.unix_s(), cfg.max_bindings),
            )
        } else {
            (
                BindingStore::new(cfg.hash_seed, cfg.max_bindings),
                TimerWheel::new(now.unix_s()),
            )
        };
        Registrar {
            store,
            wheel,
            stats: Stats::default(),
            date: DateCache::new(),
            expired: Vec::with_capacity(EXPIRY_BATCH),
            path: Vec::with_capacity(256),
            // Fixed seeds: the To-tag of a response must be the same on every shard and after restarts so
            // retransmissions get identical answers.
            tag_hasher: ahash::RandomState::with_seeds(
                0x636f_7265,
                0x7265_6721,
                0x7461_6773,
                0x5349_5032,
            ),
            auth: None,
            partition: Partition {
                shard: 0,
                shards: 1,
            },
            spread: std::collections::HashSet::new(),
            spread_until_s: 0,
            accepting_changes: true,
            cfg,
        }
    }

    /// Restores the bindings of one AoR read back from the journal (the reference reading, see
    /// `crate::journal::restore`; start-up uses [`Registrar::replay`]), before the registrar serves (after
    /// [`Registrar::set_partition`]): keeps those this shard owns that have not expired by `now`, arms their
    /// expiry, records no change. `outcome` is told what became of each, in order. Call
    /// [`Registrar::finish_restore`] once every AoR is in.
    pub fn restore_aor(
        &mut self,
        aor: &[u8],
        bindings: &[changes::BindingFields<'_>],
        now: Now,
        mut outcome: impl FnMut(RestoreOutcome),
    ) {
        let hash = self.store.hash_aor(aor);
        if self.partition.owner_elsewhere(hash).is_some() {
            bindings
                .iter()
                .for_each(|_| outcome(RestoreOutcome::NotOwned));
            return;
        }
        let now_s = now.unix_s();
        // Never longer than a registration could be granted now (a clock set back, a crafted file).
        let longest = now_s.saturating_add(u64::from(self.cfg.max_expires_s));
        let max_contacts = self
            .cfg
            .max_contacts_per_aor
            .min(register::MAX_CONTACTS_PER_AOR);
        let mut held = self
            .store
            .find_aor(hash, aor)
            .map_or(0, |rec| self.store.binding_count_of(rec));
        for fields in bindings {
            let fields = changes::BindingFields {
                expires_at_s: fields.expires_at_s.min(longest),
                ..*fields
            };
            if fields.expires_at_s <= now_s {
                if self.cfg.expires_range_pct > 0 {
                    self.spread.insert(hash);
                    self.spread_until_s = now_s + u64::from(self.cfg.max_expires_s);
                }
                outcome(RestoreOutcome::Expired);
                continue;
            }
            if held >= max_contacts {
                outcome(RestoreOutcome::Refused);
                continue;
            }
            match self.store.restore(hash, aor, &fields) {
                Ok((idx, renumbered)) => {
                    held += 1;
                    self.wheel.schedule(idx, fields.expires_at_s);
                    outcome(if renumbered {
                        RestoreOutcome::Renumbered
                    } else {
                        RestoreOutcome::Restored
                    });
                }
                Err(e) => {
                    tracing::warn!(aor = %String::from_utf8_lossy(aor), "binding not restored: {e}");
                    outcome(RestoreOutcome::Refused);
                }
            }
        }
    }

    /// Before a restore: room for about `aors` AoRs in the index.
    pub fn reserve_restore(&mut self, aors: usize) {
        self.store.reserve_aors(aors);
    }

    /// Ends the restore: the change log goes on after `last_seq` (the last sequence number in the journal).
    pub fn finish_restore(&mut self, last_seq: u64) {
        self.store.finish_restore(last_seq);
    }

    /// While false, REGISTERs that would add, refresh or remove bindings are answered 503 with Retry-After
    /// (the journal cannot write); fetches are still answered.
    pub fn set_accepting_changes(&mut self, accepting: bool) {
        self.accepting_changes = accepting;
    }

    pub fn is_accepting_changes(&self) -> bool {
        self.accepting_changes
    }

    /// AoRs whose next registration is still to be spread.
    pub fn spread_pending(&self) -> usize {
        self.spread.len()
    }

    /// Shortens `expires_s` by a pseudo-random 0..=`expires_range_pct` percent (never under
    /// `--min-expires`), when this AoR's bindings expired while the registrar was down.
    fn spread_expires(&mut self, aor_hash: u64, now_s: u64, contacts: &mut register::Contacts<'_>) {
        if self.spread.is_empty() {
            return;
        }
        if now_s >= self.spread_until_s {
            self.spread = std::collections::HashSet::new();
            return;
        }
        if !self.spread.remove(&aor_hash) {
            return;
        }
        let pct = u64::from(self.cfg.expires_range_pct.min(100));
        let min = self.cfg.min_expires_s;
        let mut salt = self.tag_hasher.hash_one((aor_hash, now_s));
        contacts.map_expires(|e| {
            salt = salt.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15;
            let range = u64::from(e) * pct / 100;
            let cut = if range == 0 { 0 } else { salt % (range + 1) };
            (u64::from(e) - cut).max(u64::from(min.min(e))) as u32
        });
    }

    pub fn config(&self) -> &RegistrarConfig {
        &self.cfg
    }

    /// Require digest authentication for every REGISTER (`--auth required`), or not (None).
    pub fn set_authenticator(&mut self, auth: Option<Authenticator>) {
        self.auth = auth;
    }

    /// Make this registrar shard `shard` of `shards`: REGISTERs for AoRs owned by another shard are answered
    /// with `Outcome::HandOff` as soon as the AoR is known (the checks before To's), and the owner runs every
    /// check on them.
    pub fn set_partition(&mut self, shard: usize, shards: usize) {
        debug_assert!(shard < shards.max(1));
        self.partition = Partition {
            shard,
            shards: shards.max(1),
        };
    }

    /// The authenticator, e.g. to swap credentials on SIGHUP.
    pub fn authenticator_mut(&mut self) -> Option<&mut Authenticator> {
        self.auth.as_mut()
    }

    /// Handle one datagram from `source`. The response (if any) is written into `out`.
    #[must_use]
    pub fn handle(
        &mut self,
        datagram: &[u8],
        source: SocketAddr,
        now: Now,
        out: &mut Vec<u8>,
    ) -> Outcome {
        out.clear();
        self.stats.requests += 1;
        let outcome = self.dispatch(datagram, source, now, out);
        if let Outcome::Reply { status, .. } = outcome {
            self.stats.replies.count(status);
        }
        match outcome {
            Outcome::Reply { status, .. } if (400..500).contains(&status) => {
                self.stats.replies_4xx += 1
            }
            Outcome::Reply { status, .. } if status >= 500 => self.stats.replies_5xx += 1,
            Outcome::Silent(_) => self.stats.dropped += 1,
            Outcome::Reply { .. } | Outcome::HandOff { .. } => {}
        }
        outcome
    }

    fn dispatch(
        &mut self,
        datagram: &[u8],
        source: SocketAddr,
        now: Now,
        out: &mut Vec<u8>,
    ) -> Outcome {
        // A Message holds a fixed header array (~1.6 KiB): build it in this frame and borrow it.
        let mut slot = std::mem::MaybeUninit::uninit();
        let parsed = crate::sip::parse::parse_message_into(datagram, &self.cfg.parse, &mut slot);
        let msg: &Message<'_> = match parsed {
            Ok(msg) => msg,
            Err(FramingError::TooLarge) => return self.too_large(datagram, source, now, out),
            Err(e) => {
                tracing::debug!(%source, error = %e, "unframeable datagram dropped");
                return Outcome::Silent(Silence::Unanswerable);
            }
        };
        let ex = Exchange::unvalidated(msg, source, now);
        let (method, method_raw, uri) = match msg.start {
            StartLine::Response { .. } => return Outcome::Silent(Silence::Response),
            StartLine::Request {
                method: Method::Ack,
                ..
            } => return Outcome::Silent(Silence::Ack),
            StartLine::Request {
                method,
                method_raw,
                uri,
            } => (method, method_raw, uri),
            StartLine::Invalid(e) => {
                if msg.count(HeaderName::Via) == 0 {
                    return Outcome::Silent(Silence::Unanswerable);
                }
                let status = match e {
                    StartLineError::BadVersion => 505,
                    StartLineError::UriTooLong => 414,
                    StartLineError::Malformed => 400,
                };
                return self.reply(status, ex, out);
            }
        };
        if msg.count(HeaderName::Via) == 0 {
            return Outcome::Silent(Silence::Unanswerable);
        }
        let is_register = method == Method::Register;
        let mut aor = AorBuf::default();
        let (validated, to_aor) =
            match self.validate_looking_ahead(msg, method_raw, is_register, &mut aor) {
                Looked::Owned(validated, to_aor) => (validated, to_aor),
                Looked::Elsewhere(owner) => return Outcome::HandOff { owner },
            };
        let basics = match validated {
            Ok(b) => b,
            Err(why) => {
                tracing::debug!(%source, ?why, "malformed request");
                return self.reply(400, ex, out);
            }
        };
        let ex = Exchange {
            top_via: Some(basics.top_via),
            ..ex
        };
        // RFC 3261 §8.2.1: method inspection first.
        match method {
            Method::Register | Method::Options => {}
            Method::Other => return self.reply_allow(501, ex, out),
            _ => return self.reply_allow(405, ex, out),
        }
        // §8.2.2: Request-URI, then Require.
        let ruri = match parse_uri(uri) {
            Ok(u) => u,
            Err(UriError::UnsupportedScheme) => return self.reply(416, ex, out),
            Err(_) => return self.reply(400, ex, out),
        };
        if let Some(status) = self.check_require(ex, out) {
            return status;
        }
        match method {
            Method::Register => {
                if !self.serves(ruri.host) {
                    return self.reply(404, ex, out);
                }
                let Some(to_aor) = to_aor else {
                    debug_assert!(false, "validation passed without parsing To");
                    return self.reply(400, ex, out);
                };
                self.register(ex, &basics, to_aor, &aor, out)
            }
            _ => self.reply_allow(200, ex, out),
        }
    }

    /// §10.3 step 1 (and step 5's domain part): no `--domain` means every domain is served.
    fn serves(&self, host: &[u8]) -> bool {
        self.cfg.domains.is_empty()
            || self
                .cfg
                .domains
                .iter()
                .any(|d| d.as_bytes().eq_ignore_ascii_case(host))
    }

    /// §10.3 step 2 / §8.2.2.3: 420 listing every Require tag we do not implement.
    fn check_require(&mut self, ex: Exchange<'_, '_>, out: &mut Vec<u8>) -> Option<Outcome> {
        let msg = ex.msg;
        let unsupported = |tag: &[u8]| !has_option_tag(SUPPORTED, tag);
        let any = msg
            .all(HeaderName::Require)
            .flat_map(split_list)
            .flatten()
            .any(|t| !t.is_empty() && unsupported(t));
        if !any {
            return None;
        }
        let mut w = self.writer(420, ex, out);
        let buf = w.buf();
        buf.extend_from_slice(b"Unsupported: ");
        let mut first = true;
        for tag in msg.all(HeaderName::Require).flat_map(split_list).flatten() {
            if !tag.is_empty() && unsupported(tag) {
                if !first {
                    buf.extend_from_slice(b", ");
                }
                buf.extend_from_slice(tag);
                first = false;
            }
        }
        buf.extend_from_slice(b"\r\n");
        w.finish();
        Some(Outcome::Reply {
            status: 420,
            bindings_changed: false,
        })
    }

    /// Validates the request (RFC 3261 §8.2) and, for a REGISTER, looks ahead: once To is parsed the AoR is
    /// worked out and its lookup started (step 1 of [`BindingStore::prefetch_aor`]), once the Vias are checked
    /// step 2 runs, so that the lookup's memory loads overlap with the checks. The AoR (or the status to refuse
    /// it with) waits until `register` checks it; None when the request is not a REGISTER or To did not parse.
    ///
    /// A REGISTER whose AoR another shard owns goes there as soon as its AoR is known: the owner runs every
    /// check again anyway (it parses the datagram afresh), so the rest of them here would be done twice. The
    /// owner works the AoR out from the same bytes with the same code, so it finds itself the owner and
    /// answers whatever the request deserves, a refusal included.
    fn validate_looking_ahead<'a>(
        &self,
        msg: &Message<'a>,
        method_raw: &[u8],
        is_register: bool,
        aor: &mut AorBuf,
    ) -> Looked<'a> {
        let checks = match Checks::begin(msg) {
            Ok(checks) => checks,
            Err(why) => return Looked::Owned(Err(why), None),
        };
        let to_aor = match checks.to() {
            Some(to) if is_register => Some(self.start_aor_lookup(to, aor)),
            _ => None,
        };
        if let Some(Ok((_, hash))) = &to_aor {
            if let Some(owner) = self.partition.owner_elsewhere(*hash) {
                return Looked::Elsewhere(owner);
            }
            self.store.prefetch_aor(*hash);
        }
        let top = match checks.vias() {
            Ok(top) => top,
            Err(why) => return Looked::Owned(Err(why), to_aor),
        };
        if let Some(Ok((_, hash))) = &to_aor {
            self.store.prefetch_records(*hash);
        }
        Looked::Owned(checks.finish(top, method_raw), to_aor)
    }

    /// §10.3 step 5: the AoR is the canonical To URI; it must be a SIP URI of a domain we serve. Written into
    /// `aor`; returns the To URI and the AoR's hash, or the status to refuse with (400 or 404). The caller
    /// starts the AoR's lookup when this shard owns it (step 1 of [`BindingStore::prefetch_aor`]): its table
    /// line is likely not cached.
    fn start_aor_lookup<'a>(&self, to: &NameAddr<'a>, aor: &mut AorBuf) -> AorLookup<'a> {
        let to_uri = parse_uri(to.uri).map_err(|_| 400u16)?;
        if !self.serves(to_uri.host) {
            return Err(404);
        }
        canonical_aor(&to_uri, aor).map_err(|_| 400u16)?;
        let hash = self.store.hash_aor(aor.as_bytes());
        Ok((to_uri, hash))
    }

    fn register(
        &mut self,
        ex: Exchange<'_, '_>,
        basics: &Basics<'_>,
        to_aor: AorLookup<'_>,
        aor: &AorBuf,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let Exchange {
            msg, source, now, ..
        } = ex;
        let (to_uri, aor_hash) = match to_aor {
            Ok(found) => found,
            Err(status) => return self.reply(status, ex, out),
        };
        // Thread-per-core: the AoR's state (and its replay window) lives on its owning shard, and a REGISTER
        // another shard owns left in `validate_looking_ahead`.
        debug_assert!(self.partition.owner_elsewhere(aor_hash).is_none());
        // Step 3 of the lookup: the records (step 2, during validation) have had the rest of validation
        // to arrive; the first binding gets the Contacts' parsing.
        self.store.prefetch_heads(aor_hash);
        let txn = self
            .store
            .transaction_key(basics.top_via_parm, msg.all(HeaderName::Authorization));
        if self.auth.is_some() {
            let to_user = to_uri.user.unwrap_or(b"");
            let authenticated =
                self.authenticate(ex, basics, txn, aor.as_bytes(), to_uri.host, to_user, out);
            if let Some(outcome) = authenticated {
                return outcome;
            }
        }
        let mut contacts = register::Contacts::default();
        if let Err(refusal) = register::collect_contacts(
            msg.all(HeaderName::Contact),
            msg.first(HeaderName::Expires),
            &self.cfg,
            &mut contacts,
        ) {
            return self.refuse(refusal, ex, out, aor.as_bytes());
        }
        if contacts.any_outbound() && !first_hop_supports_outbound(msg) {
            if msg
                .all(HeaderName::Supported)
                .any(|v| has_option_tag(v, b"outbound"))
            {
                return self.refuse(Refusal::FirstHopLacksOutbound, ex, out, aor.as_bytes());
            }
            contacts.ignore_reg_ids();
        }
        let aor = aor.as_bytes();
        let now_s = now.unix_s();
        if !contacts.is_empty() && !self.accepting_changes {
            return self.refuse(Refusal::Unavailable, ex, out, aor);
        }
        self.spread_expires(aor_hash, now_s, &mut contacts);
        let mut state = State {
            store: &mut self.store,
            wheel: &mut self.wheel,
            cfg: &self.cfg,
        };
        let (expired, rec) = register::purge_expired(&mut state, aor_hash, aor, now_s);
        self.stats.expired += expired;
        self.path.clear();
        for (i, p) in msg.all(HeaderName::Path).enumerate() {
            if i > 0 {
                self.path.extend_from_slice(b", ");
            }
            self.path.extend_from_slice(p);
        }
        let user_agent = msg.first(HeaderName::UserAgent).unwrap_or(b"");
        let shared_bytes = aor.len() + basics.call_id.len() + self.path.len() + user_agent.len();
        if contacts.as_slice().iter().any(|c| {
            c.expires_s > 0 && shared_bytes + c.stored_bytes() > self.cfg.max_binding_bytes
        }) {
            return self.refuse(Refusal::BindingTooLarge, ex, out, aor);
        }
        let req = RegisterRequest {
            aor,
            aor_hash,
            call_id: basics.call_id,
            cseq: basics.cseq,
            txn,
            path: &self.path,
            user_agent,
            source,
            now_s,
        };
        let applied = if contacts.is_empty() {
            Ok(register::Applied {
                aor: rec,
                ..Default::default()
            })
        } else {
            register::apply(&mut state, &req, rec, &contacts)
        };
        match applied {
            Ok(applied) => {
                self.stats.registers_ok += 1;
                self.write_ok(ex, out, applied.aor, applied.outbound);
                Outcome::Reply {
                    status: 200,
                    bindings_changed: applied.changed,
                }
            }
            Err(Refusal::Retransmission) => {
                self.write_ok(ex, out, rec, false);
                Outcome::Reply {
                    status: 200,
                    bindings_changed: false,
                }
            }
            Err(refusal) => self.refuse(refusal, ex, out, aor),
        }
    }

    /// §10.3 steps 3-4. None: authenticated, go on; Some: the 401/403 (or a retransmission's 200) is written.
    /// Out of line: inlined, its ~1,000 instructions (base64, nonce MAC, digest) sat between the blocks
    /// of `register` that every REGISTER runs, spreading them over more cache lines when auth is off.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn authenticate(
        &mut self,
        ex: Exchange<'_, '_>,
        basics: &Basics<'_>,
        txn: TxnKey,
        aor: &[u8],
        host: &[u8],
        to_user: &[u8],
        out: &mut Vec<u8>,
    ) -> Option<Outcome> {
        let Exchange {
            msg, source, now, ..
        } = ex;
        let mut values: [&[u8]; MAX_AUTHORIZATIONS] = [b""; MAX_AUTHORIZATIONS];
        let mut n = 0;
        for v in msg.all(HeaderName::Authorization).take(MAX_AUTHORIZATIONS) {
            values[n] = v;
            n += 1;
        }
        let aor_hash = self.store.hash_aor(aor);
        // A retransmission of a REGISTER that was already accepted carries an Authorization whose nonce
        // count is now used: the server transaction would resend its 200, so do that (no state changes).
        // Only the same request qualifies: same Call-ID, CSeq, top via-parm and Authorization values (the
        // transaction key) from the same source, so the 200 goes back to whoever sent the accepted one.
        // Anything else is verified first.
        if n > 0 && self.is_retransmission(aor_hash, aor, basics, txn, source, now) {
            let rec = self.store.find_aor(aor_hash, aor);
            self.write_ok(ex, out, rec, false);
            return Some(Outcome::Reply {
                status: 200,
                bindings_changed: false,
            });
        }
        let mut realm_buf = [0u8; crate::sip::uri::MAX_URI_BYTES];
        let realm = realm_for(&self.cfg.realms, host, &mut realm_buf);
        let request_uri = match msg.start {
            StartLine::Request { uri, .. } => Some(uri),
            _ => None,
        };
        let to_tag = self.to_tag(msg);
        let auth = self.auth.as_mut()?;
        let req = AuthRequest {
            method: b"REGISTER",
            request_uri,
            aor,
            to_user,
            realm,
            source: source.ip(),
            authorizations: &values[..n],
        };
        match auth.check(req, now.unix_s()) {
            AuthDecision::Accept { .. } => None,
            AuthDecision::Challenge { stale } => {
                let mut w = ResponseWriter::start(out, 401);
                w.dialog_headers(msg, source, &to_tag, ex.top_via);
                // No Date or Server: a 401 goes to whatever address the request claims, so it carries
                // only what the UA needs to answer (see "Size of a challenge" in docs/authentication.md).
                auth.write_challenges(realm, aor, source.ip(), now.unix_s(), stale, w.buf());
                w.finish();
                Some(Outcome::Reply {
                    status: 401,
                    bindings_changed: false,
                })
            }
            AuthDecision::Forbidden(why) => {
                tracing::debug!(%source, ?why, aor = %String::from_utf8_lossy(aor), "REGISTER forbidden");
                Some(self.reply(403, ex, out))
            }
        }
    }

    /// A live binding of this AoR was set by this very request (same Call-ID, CSeq and transaction key,
    /// from the same source): it was already applied.
    fn is_retransmission(
        &self,
        aor_hash: u64,
        aor: &[u8],
        basics: &Basics<'_>,
        txn: TxnKey,
        source: SocketAddr,
        now: Now,
    ) -> bool {
        let Some(rec) = self.store.find_aor(aor_hash, aor) else {
            return false;
        };
        self.store.bindings_of(rec).any(|(_, b)| {
            bindings::same_transaction(b.txn, txn)
                && b.cseq == basics.cseq
                && b.source == source
                && b.call_id() == basics.call_id
                && b.expires_at_s > now.unix_s()
        })
    }

    /// A datagram over the size limit: answer 513 when its head still names whom to answer.
    fn too_large(
        &mut self,
        datagram: &[u8],
        source: SocketAddr,
        now: Now,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let limits = self.cfg.parse;
        let head = &datagram[..datagram.len().min(limits.max_message_bytes)];
        let parsed = parse_message(head, &limits);
        let Ok(msg) = &parsed else {
            return Outcome::Silent(Silence::Unanswerable);
        };
        match msg.start {
            StartLine::Request {
                method: Method::Ack,
                ..
            }
            | StartLine::Response { .. } => Outcome::Silent(Silence::Unanswerable),
            _ if msg.count(HeaderName::Via) == 0 => Outcome::Silent(Silence::Unanswerable),
            _ => self.reply(513, Exchange::unvalidated(msg, source, now), out),
        }
    }

    /// Answer 503 with Retry-After without touching any state: used by a receiving shard when the owner's
    /// queue is full (back-pressure). Silent when the datagram cannot be answered.
    #[must_use]
    pub fn reject_overloaded(
        &mut self,
        datagram: &[u8],
        source: SocketAddr,
        now: Now,
        out: &mut Vec<u8>,
    ) -> Outcome {
        out.clear();
        let parsed = parse_message(datagram, &self.cfg.parse);
        let Ok(msg) = &parsed else {
            return Outcome::Silent(Silence::Unanswerable);
        };
        if !matches!(msg.start, StartLine::Request { .. }) || msg.count(HeaderName::Via) == 0 {
            return Outcome::Silent(Silence::Unanswerable);
        }
        if matches!(
            msg.start,
            StartLine::Request {
                method: Method::Ack,
                ..
            }
        ) {
            return Outcome::Silent(Silence::Ack);
        }
        let retry_after = self.cfg.retry_after_s;
        let mut w = self.writer(503, Exchange::unvalidated(msg, source, now), out);
        w.header_u64(b"Retry-After", u64::from(retry_after));
        w.finish();
        self.stats.replies_5xx += 1;
        self.stats.replies.count(503);
        Outcome::Reply {
            status: 503,
            bindings_changed: false,
        }
    }

    /// Unix second at which `handle_timeout` must next run (None: no binding armed).
    pub fn next_timeout(&self) -> Option<u64> {
        self.wheel.next_deadline()
    }

    /// Remove bindings whose expiry has come; bounded work per call. Returns true when more are due.
    #[must_use]
    pub fn handle_timeout(&mut self, now: Now) -> bool {
        let now_s = now.unix_s();
        self.expired.clear();
        let more = self.wheel.advance(now_s, &mut self.expired, EXPIRY_BATCH);
        for &idx in &self.expired {
            match self.store.get(idx) {
                Some(b) if b.expires_at_s <= now_s => {
                    self.store.remove(idx, ChangeKind::Expired, now_s);
                    self.stats.expired += 1;
                }
                // Refreshed since it was armed: arm it again for its new expiry.
                Some(b) => {
                    let at = b.expires_at_s;
                    self.wheel.schedule(idx, at);
                }
                None => {}
            }
        }
        more
    }

    /// The binding changes made since the last call (in order, each once; see [`changes`]), leaving `spare`
    /// as the next buffer. The shell calls it after each turn of its loop.
    pub fn take_changes(&mut self, spare: Vec<u8>) -> ChangeBatch {
        self.store.take_changes(spare)
    }

    /// Removes the AoR's bindings, or only the one whose id is `binding` (an operator's delete: recorded as
    /// `deleted`). Returns how many went; 0 when the AoR (or that binding of it) does not exist. `aor` is the
    /// canonical AoR (see [`crate::sip::uri::canonical_aor`]).
    pub fn delete(&mut self, aor: &[u8], binding: Option<u32>, now: Now) -> usize {
        let hash = self.store.hash_aor(aor);
        let Some(rec) = self.store.find_aor(hash, aor) else {
            return 0;
        };
        let mut doomed = register::Idxs::new();
        let ids = self.store.bindings_of(rec).map(|(idx, _)| idx);
        let chosen = ids.filter(|&idx| binding.is_none_or(|id| id == idx));
        doomed.extend(chosen.take(register::MAX_CONTACTS_PER_AOR));
        for &idx in &doomed {
            self.wheel.cancel(idx);
            self.store.remove(idx, ChangeKind::Deleted, now.unix_s());
        }
        self.stats.deleted += doomed.len() as u64;
        doomed.len()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Number of live bindings.
    pub fn binding_count(&self) -> usize {
        self.store.len()
    }

    /// Bindings the binding, AoR and timer arenas all hold without reallocating (the AoR index grows by
    /// doubling: see `BindingStore::with_reserved`).
    pub fn reserved_capacity(&self) -> usize {
        self.store
            .binding_capacity()
            .min(self.store.aor_capacity())
            .min(self.wheel.id_capacity())
    }

    /// Read access to the bindings (lookups, tests, the memory report).
    pub fn store(&self) -> &BindingStore {
        &self.store
    }
}

/// RFC 5626 §6: outbound processing applies when the registrar is the first hop (one via-parm), or when the
/// first Path URI carries `ob` (the edge proxy supports outbound and keeps the flow).
fn first_hop_supports_outbound(msg: &Message<'_>) -> bool {
    let via_parms = msg
        .all(HeaderName::Via)
        .flat_map(split_list)
        .take(2)
        .count();
    if via_parms <= 1 {
        return true;
    }
    let first_path = msg
        .all(HeaderName::Path)
        .flat_map(split_list)
        .next()
        .and_then(Result::ok);
    first_path
        .and_then(|p| crate::sip::header::parse_name_addr(p).ok())
        .and_then(|na| parse_uri(na.uri).ok())
        .is_some_and(|uri| uri.params.get(b"ob").is_some())
}

/// The digest realm for a served domain: the configured one, else the lower-cased host itself.
fn realm_for<'b>(realms: &'b [(String, String)], host: &[u8], buf: &'b mut [u8]) -> &'b [u8] {
    if let Some((_, realm)) = realms
        .iter()
        .find(|(d, _)| d.as_bytes().eq_ignore_ascii_case(host))
    {
        return realm.as_bytes();
    }
    let len = host.len().min(buf.len());
    for (dst, src) in buf.iter_mut().zip(&host[..len]) {
        *dst = src.to_ascii_lowercase();
    }
    &buf[..len]
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
