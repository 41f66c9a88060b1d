//! Flags and TOML configuration.
//!
//! Every setting is declared once, in the `settings!` list below: its name (the `--flag` and the kebab-case
//! key of the TOML file given by `--config FILE`), its type, its default and its help. From that list come
//! [`Settings`], which the file deserialises into and whose `Default` holds every default, and the flags of
//! [`Args`], each an `Option` that [`Args::overlay`] lays over the settings when given, with the default in
//! its help. Precedence: command line, then file, then defaults. [`Config`] is the validated result in the
//! shapes the server uses; [`Config::registrar_config`] hands the core its part.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};
use serde::Deserialize;
use thiserror::Error;

use crate::auth::guard::GuardConfig;
use crate::auth::AuthConfig;
use crate::registrar::register::{
    MAX_BINDING_BYTES, MAX_CONTACTS_PER_AOR, MAX_CONTACTS_PER_REQUEST,
};
use crate::registrar::{OverLimitPolicy, RegistrarConfig};
use crate::sip::digest::Algorithm;
use crate::sip::parse::{ParseLimits, MAX_HEADERS};

/// Defaults, in one place so the help text, the README and the code agree.
pub mod defaults {
    use super::AuthMode;
    use crate::registrar::OverLimitPolicy;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    pub const LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 5060);
    pub const DEFAULT_EXPIRES_S: u32 = 3600;
    pub const MIN_EXPIRES_S: u32 = 60;
    pub const MAX_EXPIRES_S: u32 = 86400;
    pub const MAX_CONTACTS: usize = 10;
    pub const MAX_CONTACTS_PER_REQUEST: usize = 32;
    /// Fits a phone with RFC 8599 push parameters (a ~200-byte token), an instance id, a long User-Agent
    /// and four Path hops, with room to spare; a normal binding stores ~150.
    pub const MAX_BINDING_BYTES: usize = 2048;
    pub const OVER_LIMIT: OverLimitPolicy = OverLimitPolicy::Reject503;
    pub const MAX_BINDINGS: usize = 1_000_000;
    pub const MAX_DATAGRAM_BYTES: usize = 8192;
    pub const MAX_HEADERS: usize = 64;
    pub const MAX_LINE_BYTES: usize = 2048;
    pub const RETRY_AFTER_S: u32 = 5;
    pub const LOG: &str = "info";
    /// Kernel socket buffers: large enough to absorb a burst of registrations while the shard is busy.
    pub const SOCKET_BUFFER_BYTES: usize = 4 << 20;
    /// Requests other shards may have queued for one shard (its inbox, counted in datagrams) before a sender
    /// answers 503: a few milliseconds of a busy shard's work, so bursts of thousands of requests in flight
    /// are absorbed but a stuck owner is noticed quickly. 64 B of slot per datagram, allocated up front.
    pub const HANDOFF_QUEUE: usize = 4096;
    /// Datagrams a shard takes from its socket per `recvmmsg` when they queue up (and replies per `sendmmsg`).
    pub const RECV_BATCH: usize = 32;
    /// Receive coalescing: a shard that emptied its socket waits at most this long before it looks again,
    /// for about `COALESCE_DATAGRAMS` more at the measured rate: a REGISTER waits at most 2 ms more (4 ms
    /// when handed over), far inside SIP's timers (T1 = 500 ms), while one wake-up takes many datagrams.
    pub const COALESCE_US: u64 = 2000;
    pub const COALESCE_DATAGRAMS: u32 = 16;
    /// One client socket (an SBC, a proxy, SIPp) spreads over every shard.
    pub const RECEIVE_SPREAD: super::ReceiveSpread = super::ReceiveSpread::Random;
    pub const AUTH: AuthMode = AuthMode::Off;
    /// Digest nonce lifetime: long enough for a phone to answer its challenge and re-use the nonce for a
    /// few refreshes, short enough that a captured nonce soon goes stale.
    pub const NONCE_TTL_S: u64 = 300;
    /// Failed authentications tolerated per user (and per source address) within the window.
    pub const AUTH_MAX_FAILURES: u32 = 10;
    pub const AUTH_FAILURE_WINDOW_S: u64 = 60;
    pub const AUTH_COOLDOWN_S: u64 = 300;
    /// MD5 alone: deployed phones fail on SHA-256 challenges (see `--auth-algorithms`).
    pub const AUTH_ALGORITHMS: &str = "md5";
    /// The HTTP API: loopback only, so nothing is exposed until an operator chooses to (with a token).
    pub const HTTP: &str = "127.0.0.1:8080";
    pub const HTTP_THREADS: usize = 2;
    pub const HTTP_MAX_CONNECTIONS: usize = 256;
    /// API requests one shard may have queued; more get 503 at once.
    pub const API_QUEUE: usize = 1024;
    /// Events kept for subscribers that reconnect: at ~400 bytes each, 100,000 hold ~40 MB.
    pub const EVENTS_WINDOW: usize = 100_000;
    pub const EVENTS_SUBSCRIBER_QUEUE: usize = 10_000;
    pub const EVENTS_MAX_SUBSCRIBERS: usize = 64;
    pub const EVENTS_GATHER_MS: usize = 10;
    pub const HTTP_HEADER_TIMEOUT_S: usize = 30;
    pub const WEBHOOK_BATCH: usize = 100;
    /// The registrants' start-up window, as OpenSIPS's `timer_interval`.
    pub const REGISTRANT_SPREAD_S: u32 = 100;
    /// As OpenSIPS's `default_expires`.
    pub const REGISTRANT_DEFAULT_EXPIRY_S: u32 = 3600;
    pub const REGISTRANT_REFRESH_MARGIN_S: u32 = 60;
    pub const REGISTRANT_RETRY_MIN_S: u32 = 30;
    pub const REGISTRANT_RETRY_MAX_S: u32 = 900;
    pub const REGISTRANT_SHUTDOWN_TIMEOUT_S: u32 = 5;
    pub const REGISTRANT_MAX_ROWS: usize = 100_000;
    /// The journal's directory, relative to where corereg runs (so the README's run command keeps its
    /// bindings across restarts with nothing to set up).
    pub const DATA_DIR: &str = "./corereg-data";
    pub const FSYNC: super::FsyncMode = super::FsyncMode::Always;
    pub const FSYNC_INTERVAL_MS: u64 = 200;
    /// No wait before a commit: each commit takes what arrived while the previous one ran.
    pub const FSYNC_DELAY_US: u64 = 0;
    /// A segment is closed and a new one started past this size.
    pub const JOURNAL_SEGMENT_BYTES: u64 = 64 << 20;
    /// A snapshot is taken when the segments hold more than this many times the live data.
    pub const SNAPSHOT_RATIO: u32 = 4;
    /// Replies one shard may hold while their changes are being written; beyond it a reply is dropped (the
    /// client retransmits, and is answered from the state once written).
    pub const JOURNAL_MAX_HELD: usize = 65_536;
    /// Kamailio's usual `expires_range`.
    pub const EXPIRES_RANGE_PCT: u32 = 10;
}

/// `--fsync`: when a change counts as written, hence when its 200 OK leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum FsyncMode {
    /// Group commit: one write and one fdatasync for every change that arrived meanwhile, the replies after
    /// it. Survives a power cut.
    Always,
    /// Write, reply, and fdatasync every --fsync-interval: a power cut loses up to that interval.
    Interval,
    /// Write and reply, never fdatasync: survives a crash of the process, not of the machine.
    Off,
}

impl fmt::Display for FsyncMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FsyncMode::Always => "always",
            FsyncMode::Interval => "interval",
            FsyncMode::Off => "off",
        })
    }
}

/// Longest `--nonce-ttl`, `--auth-failure-window` and `--auth-cooldown` accepted: a day. Longer values are
/// almost certainly a unit mistake (milliseconds for seconds).
pub const MAX_AUTH_SECONDS: u64 = 86_400;

/// Largest UDP payload that can exist (IPv4: 65535 - 20 - 8); a larger `--max-datagram` would be meaningless.
const MAX_UDP_PAYLOAD_BYTES: usize = 65_507;

/// Declares the settings: for each, its documentation (also the flag's help), any serde attributes (aliases
/// of its TOML key), its flag's clap attributes, then `name: Type = default, flag: FlagType`, where the name
/// is both the flag and the TOML key (kebab-case) and the flag's type is an `Option` (`bool` for a switch,
/// which can only switch on). Optional: `via: f` converts a given flag value into the setting's type, and
/// `shown: "text"` is the default shown in the help when the default value cannot say it (None, empty).
///
/// It generates [`Settings`] with its `Default`, [`Args`] (the command line) and [`Args::overlay`].
macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])+
        $(#[serde($($serde:tt)+)])?
        #[arg($($arg:tt)*)]
        $name:ident: $ty:ty = $default:expr,
        flag: $flag:ty $(, via: $via:expr)? $(, shown: $shown:expr)?;
    )+) => {
        /// Every setting, named like its flag: the TOML file given by `--config` deserialises into it (a key
        /// it does not give keeps its default; an unknown key is an error, so a typo is not ignored), then
        /// [`Args::overlay`] lays the flags given over it, and [`Config::merge`] validates the result.
        #[derive(Clone, Debug, PartialEq, Deserialize)]
        #[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
        pub struct Settings {
            $(
                $(#[doc = $doc])+
                $(#[serde($($serde)+)])?
                pub $name: $ty,
            )+
        }

        /// Every default, for the help text too (`[default: ...]`).
        impl Default for Settings {
            fn default() -> Self {
                Settings {
                    $($name: $default,)+
                }
            }
        }

        /// The command line: a helper command, or `--config` and the settings' flags, each None (false for a
        /// switch) unless given.
        #[derive(Debug, Default, Parser)]
        #[command(
            name = "corereg",
            version,
            about = "Carrier-grade SIP registrar (UDP)",
            args_conflicts_with_subcommands = true
        )]
        pub struct Args {
            /// A helper command instead of running the registrar.
            #[command(subcommand)]
            pub command: Option<Command>,

            /// TOML configuration file (kebab-case keys named like the flags); flags given here override it.
            #[arg(long, value_name = "FILE")]
            pub config: Option<PathBuf>,

            $(
                #[arg(
                    long,
                    help = help_text(
                        &[$($doc),+],
                        None::<&str>$(.or(Some($shown)))?,
                        <$ty as ShowDefault>::show(&$default),
                    ),
                    $($arg)*
                )]
                pub $name: $flag,
            )+
        }

        impl Args {
            /// Lays the flags given over `settings` (the file's, or the defaults): the one step that makes the
            /// command line win.
            pub fn overlay(self, settings: &mut Settings) {
                $(
                    if let Some(value) = Given::given(self.$name) {
                        $(let value = $via(value);)?
                        settings.$name = value;
                    }
                )+
            }
        }
    };
}

settings! {
    /// UDP address to listen on; port 0 binds an ephemeral port (logged at start-up).
    #[arg(value_name = "ADDR")]
    listen: SocketAddr = defaults::LISTEN, flag: Option<SocketAddr>;

    /// Domain served (repeatable; in the file `domain = ["a.example", "b.example"]`, or `domains`); requests
    /// for other domains get 404. None: every domain is served.
    #[serde(alias = "domains")]
    #[arg(value_name = "DOMAIN")]
    domain: Vec<String> = Vec::new(), flag: Option<Vec<String>>;

    /// Expiry granted when the REGISTER gives none, in seconds.
    #[arg(value_name = "S")]
    default_expires: u32 = defaults::DEFAULT_EXPIRES_S, flag: Option<u32>;

    /// Shortest expiry accepted (shorter non-zero ones get 423 with Min-Expires), in seconds.
    #[arg(value_name = "S")]
    min_expires: u32 = defaults::MIN_EXPIRES_S, flag: Option<u32>;

    /// Longest expiry granted (longer ones are shortened), in seconds.
    #[arg(value_name = "S")]
    max_expires: u32 = defaults::MAX_EXPIRES_S, flag: Option<u32>;

    /// Contacts one address-of-record may hold.
    #[arg(value_name = "N")]
    max_contacts: usize = defaults::MAX_CONTACTS, flag: Option<usize>;

    /// Contacts one REGISTER may carry; more get 400.
    #[arg(value_name = "N")]
    max_contacts_per_request: usize = defaults::MAX_CONTACTS_PER_REQUEST, flag: Option<usize>;

    /// Bytes one binding may store: its contact URI, Call-ID, Path, +sip.instance, User-Agent and AoR. A
    /// REGISTER that would store more gets 413.
    #[arg(value_name = "BYTES")]
    max_binding_bytes: usize = defaults::MAX_BINDING_BYTES, flag: Option<usize>;

    /// What happens when a REGISTER would exceed --max-contacts.
    #[arg(value_enum, value_name = "POLICY")]
    over_limit: OverLimitPolicy = defaults::OVER_LIMIT, flag: Option<OverLimitPolicy>;

    /// Bindings held in all; beyond it new bindings get 503.
    #[arg(value_name = "N")]
    max_bindings: usize = defaults::MAX_BINDINGS, flag: Option<usize>;

    /// Largest datagram accepted, in bytes; larger ones are refused.
    #[arg(value_name = "BYTES")]
    max_datagram: usize = defaults::MAX_DATAGRAM_BYTES, flag: Option<usize>;

    /// Most header lines accepted in one message.
    #[arg(value_name = "N")]
    max_headers: usize = defaults::MAX_HEADERS, flag: Option<usize>;

    /// Longest header line accepted, in bytes.
    #[arg(value_name = "BYTES")]
    max_line: usize = defaults::MAX_LINE_BYTES, flag: Option<usize>;

    /// Seconds sent in Retry-After with 503 responses.
    #[arg(value_name = "S")]
    retry_after: u32 = defaults::RETRY_AFTER_S, flag: Option<u32>;

    /// Log filter (tracing EnvFilter syntax, e.g. "info" or "corereg=debug"); RUST_LOG overrides it.
    #[arg(value_name = "FILTER")]
    log: String = defaults::LOG.to_string(), flag: Option<String>;

    /// BENCHMARK ONLY: answer every request with a bare 200 OK (Via/From/To/Call-ID/CSeq copied), no registrar
    /// logic. Measures the I/O floor of this shell.
    #[arg()]
    stateless_stub: bool = false, flag: bool;

    /// Shards to run, one pinned executor each, on the first N CPUs this process may use (or on the CPUs of
    /// --cpu-list, which must then list exactly N).
    #[arg(value_name = "N")]
    cores: Option<usize> = None, flag: Option<usize>, via: Some,
        shown: "every CPU this process may use";

    /// Exact CPUs to pin the shards to, one shard per CPU: a list of CPUs and ranges such as "0-3,6" (in the
    /// file also an array, [0, 1, 2, 3, 6]). Every CPU must be online and allowed to this process.
    #[arg(value_name = "CPUS", value_parser = CpuList::parse)]
    cpu_list: Option<CpuListValue> = None, flag: Option<CpuList>, via: CpuListValue::given,
        shown: "the first --cores CPUs";

    /// Requests, counted in datagrams, that other shards may have handed to one shard (the owner of their AoR)
    /// and it has not applied yet: its inbox. When the owner's inbox is full the receiving shard answers 503
    /// with Retry-After.
    #[arg(value_name = "N")]
    handoff_queue: usize = defaults::HANDOFF_QUEUE, flag: Option<usize>;

    /// When datagrams queue up on a shard's socket, take up to N per system call (`recvmmsg`) and send their
    /// replies with one `sendmmsg`; 1 turns batching off. A shard that waited for its datagram never
    /// batches, so this changes nothing at low rates. Costs N x (--max-datagram + 1) bytes per shard.
    #[arg(value_name = "N")]
    recv_batch: usize = defaults::RECV_BATCH, flag: Option<usize>;

    /// Receive coalescing: a shard that has just emptied its socket waits up to US microseconds before it
    /// looks again, long enough for about --coalesce-datagrams more at the rate it measures, so that one
    /// wake-up serves many datagrams. Under load the socket never empties and nothing waits; at low rates
    /// (under two datagrams per US) nothing waits either. A surge that starts during a wait queues in the
    /// socket buffer until it ends. 0 turns it off.
    #[arg(value_name = "US")]
    coalesce_us: u64 = defaults::COALESCE_US, flag: Option<u64>;

    /// Datagrams a coalescing wait aims to gather (see --coalesce-us).
    #[arg(value_name = "N")]
    coalesce_datagrams: u32 = defaults::COALESCE_DATAGRAMS, flag: Option<u32>;

    /// How the kernel picks the shard whose socket receives a datagram: `random` (a random shard per
    /// datagram, so even one client socket spreads over every shard), `cpu` (the shard pinned to the CPU
    /// that runs the kernel's receive path; random for a CPU without a shard) or `flow` (a hash of the
    /// 4-tuple: one client socket always lands on the same shard).
    #[arg(value_enum, value_name = "HOW")]
    receive_spread: ReceiveSpread = defaults::RECEIVE_SPREAD, flag: Option<ReceiveSpread>;

    /// Digest authentication of REGISTER (RFC 7616): `off`, or `required` (every REGISTER must carry valid
    /// credentials; needs --credentials).
    #[arg(value_enum, value_name = "MODE")]
    auth: AuthMode = defaults::AUTH, flag: Option<AuthMode>;

    /// Users file, `.toml` or `.csv` (formats in docs/authentication.md); re-read on SIGHUP.
    #[arg(value_name = "FILE")]
    credentials: Option<PathBuf> = None, flag: Option<PathBuf>, via: Some;

    /// Digest realm of a served domain, as DOMAIN=REALM (repeatable; in the file `realm = ["a=b"]`, or
    /// `realms`). Domains not listed use themselves.
    #[serde(alias = "realms")]
    #[arg(value_name = "DOMAIN=REALM", value_parser = RealmMapping::parse)]
    realm: Vec<String> = Vec::new(), flag: Option<Vec<RealmMapping>>, via: RealmMapping::texts;

    /// Seconds a nonce stays fresh; older ones get a new challenge with stale=true.
    #[arg(value_name = "S")]
    nonce_ttl: u64 = defaults::NONCE_TTL_S, flag: Option<u64>;

    /// Failed authentications per user (and per source address) tolerated within --auth-failure-window; the
    /// next attempts get 403 for --auth-cooldown. 0 disables the limit.
    #[arg(value_name = "N")]
    auth_max_failures: u32 = defaults::AUTH_MAX_FAILURES, flag: Option<u32>;

    /// Window over which failures are counted, in seconds.
    #[arg(value_name = "S")]
    auth_failure_window: u64 = defaults::AUTH_FAILURE_WINDOW_S, flag: Option<u64>;

    /// How long a user or address that exceeded --auth-max-failures is refused, in seconds.
    #[arg(value_name = "S")]
    auth_cooldown: u64 = defaults::AUTH_COOLDOWN_S, flag: Option<u64>;

    /// Digest challenges offered, in order: `md5`, `sha-256,md5` (RFC 8760: strongest first), `md5,sha-256`
    /// or `sha-256`. Deployed UAs fail on SHA-256: baresip on a 401 that carries any SHA-256 challenge,
    /// sipsak and SIPp when it comes first; so MD5 alone is the default.
    #[arg(value_name = "LIST", value_parser = parse_algorithms)]
    auth_algorithms: String = defaults::AUTH_ALGORITHMS.to_string(), flag: Option<AlgorithmList>,
        via: AlgorithmList::text;

    /// File holding the nonce key in hex (`corereg gen-nonce-key > FILE`): processes sharing it accept each
    /// other's nonces.
    #[arg(value_name = "FILE")]
    nonce_key_file: Option<PathBuf> = None, flag: Option<PathBuf>, via: Some,
        shown: "a random key per process, shared by its shards";

    /// Address of the HTTP API (lookup, change events, management, metrics; see docs/api.md), or `none`.
    /// Any address other than loopback needs --http-token-file.
    #[arg(value_name = "ADDR|none")]
    http: String = defaults::HTTP.to_string(), flag: Option<String>;

    /// File whose first line is the API's bearer token; every API request must then carry
    /// `Authorization: Bearer <token>`.
    #[arg(value_name = "FILE")]
    http_token_file: Option<PathBuf> = None, flag: Option<PathBuf>, via: Some,
        shown: "none: no token, loopback only";

    /// Threads serving the HTTP API (never a shard's).
    #[arg(value_name = "N")]
    http_threads: usize = defaults::HTTP_THREADS, flag: Option<usize>;

    /// HTTP connections open at once; more wait to be accepted.
    #[arg(value_name = "N")]
    http_max_connections: usize = defaults::HTTP_MAX_CONNECTIONS, flag: Option<usize>;

    /// Seconds an HTTP client may take to send a request's headers, idle keep-alive included; then the
    /// connection is closed (event streams, once answered, are not affected).
    #[arg(value_name = "S")]
    http_header_timeout_s: usize = defaults::HTTP_HEADER_TIMEOUT_S, flag: Option<usize>;

    /// API requests queued per shard; beyond it the API answers 503 at once.
    #[arg(value_name = "N")]
    api_queue: usize = defaults::API_QUEUE, flag: Option<usize>;

    /// Binding change events kept so that a subscriber that reconnects (Last-Event-ID) resumes without a gap.
    #[arg(value_name = "N")]
    events_window: usize = defaults::EVENTS_WINDOW, flag: Option<usize>;

    /// Events a subscriber (an event stream, the webhook) may fall behind before it is cut off.
    #[arg(value_name = "N")]
    events_subscriber_queue: usize = defaults::EVENTS_SUBSCRIBER_QUEUE, flag: Option<usize>;

    /// Event subscribers at once; more are refused with 503.
    #[arg(value_name = "N")]
    events_max_subscribers: usize = defaults::EVENTS_MAX_SUBSCRIBERS, flag: Option<usize>;

    /// Milliseconds the event hub lets the shards' changes gather before taking them, so that a shard never
    /// wakes it and subscribers receive them in batches (when idle, it looks up to 8 times less often).
    #[arg(value_name = "MS")]
    events_gather_ms: usize = defaults::EVENTS_GATHER_MS, flag: Option<usize>;

    /// POST every binding change event to this http:// URL (JSON batches, retried with back-off).
    #[arg(value_name = "URL")]
    webhook: Option<String> = None, flag: Option<String>, via: Some, shown: "no webhook";

    /// Events per webhook request, at most.
    #[arg(value_name = "N")]
    webhook_batch: usize = defaults::WEBHOOK_BATCH, flag: Option<usize>;

    /// Accounts corereg registers to upstream registrars (OpenSIPS's `registrant` columns): a `.toml` or
    /// `.csv` file, or `sqlite:PATH` (table `registrant`). See docs/registrant.md.
    #[arg(value_name = "FILE|sqlite:PATH")]
    registrants: Option<String> = None, flag: Option<String>, via: Some, shown: "no registrants";

    /// Local address of the registrants' sockets (and their Via). Default: the --listen address, or when
    /// that is unspecified, the address the kernel routes from towards the first registrar.
    #[arg(value_name = "IP")]
    registrant_address: Option<std::net::IpAddr> = None, flag: Option<std::net::IpAddr>, via: Some,
        shown: "from --listen";

    /// Window over which the registrants' first REGISTERs are spread at start-up, in seconds.
    #[arg(value_name = "S")]
    registrant_spread: u32 = defaults::REGISTRANT_SPREAD_S, flag: Option<u32>;

    /// Expiry a registrant asks for when its `expiry` column is NULL or 0, in seconds.
    #[arg(value_name = "S")]
    registrant_default_expiry: u32 = defaults::REGISTRANT_DEFAULT_EXPIRY_S, flag: Option<u32>;

    /// A registrant refreshes this long before its granted expiry (at most half of it), in seconds.
    #[arg(value_name = "S")]
    registrant_refresh_margin: u32 = defaults::REGISTRANT_REFRESH_MARGIN_S, flag: Option<u32>;

    /// First retry delay after a registrant's failure (doubling with each failure in a row), in seconds.
    #[arg(value_name = "S")]
    registrant_retry_min: u32 = defaults::REGISTRANT_RETRY_MIN_S, flag: Option<u32>;

    /// Longest retry delay of a registrant, in seconds.
    #[arg(value_name = "S")]
    registrant_retry_max: u32 = defaults::REGISTRANT_RETRY_MAX_S, flag: Option<u32>;

    /// How long shutdown waits for the registrants' unREGISTERs to be answered, in seconds.
    #[arg(value_name = "S")]
    registrant_shutdown_timeout: u32 = defaults::REGISTRANT_SHUTDOWN_TIMEOUT_S, flag: Option<u32>;

    /// Rows a registrant source may hold.
    #[arg(value_name = "N")]
    registrant_max_rows: usize = defaults::REGISTRANT_MAX_ROWS, flag: Option<usize>;
    /// Directory of the journal (the bindings kept across restarts; see docs/persistence.md), created when
    /// missing; `none`: memory only, a restart forgets every binding.
    #[arg(value_name = "DIR|none")]
    data_dir: String = defaults::DATA_DIR.to_string(), flag: Option<String>;

    /// When a change counts as written, so when its 200 OK leaves: `always` (group commit: write and
    /// fdatasync first; survives a power cut), `interval` (write, fdatasync every --fsync-interval), `off`
    /// (write only; survives a crash of the process, not of the machine).
    #[arg(value_name = "MODE")]
    fsync: FsyncMode = defaults::FSYNC, flag: Option<FsyncMode>;

    /// With --fsync interval: milliseconds between two fdatasyncs (what a power cut may lose).
    #[arg(value_name = "MS")]
    fsync_interval: u64 = defaults::FSYNC_INTERVAL_MS, flag: Option<u64>;

    /// With --fsync always: microseconds a commit waits for more changes before it writes, unless 64 KiB
    /// are already pending (fewer, larger commits: less CPU per REGISTER at moderate rates, for that much
    /// more latency). 0: no wait.
    #[arg(value_name = "US")]
    fsync_delay: u64 = defaults::FSYNC_DELAY_US, flag: Option<u64>;

    /// Bytes of a journal segment before the next one is started.
    #[arg(value_name = "BYTES")]
    journal_segment_bytes: u64 = defaults::JOURNAL_SEGMENT_BYTES, flag: Option<u64>;

    /// A snapshot is written when a shard's segments hold more than this many times its live bindings'
    /// bytes: the journal stays under about (ratio + 2) times the live data.
    #[arg(value_name = "K")]
    snapshot_ratio: u32 = defaults::SNAPSHOT_RATIO, flag: Option<u32>;

    /// Replies a shard holds while their changes are written; more are dropped (the client retransmits).
    #[arg(value_name = "N")]
    journal_max_held: usize = defaults::JOURNAL_MAX_HELD, flag: Option<usize>;

    /// When bindings expired while corereg was down, their AoRs' next registrations get an expiry shortened
    /// at random by up to this percent, so that their refreshes spread out (0: off).
    #[arg(value_name = "PERCENT")]
    expires_range: u32 = defaults::EXPIRES_RANGE_PCT, flag: Option<u32>;
}

/// The TOML file's contents: the file deserialises straight into [`Settings`].
pub type FileConfig = Settings;

/// A flag's value when it was given on the command line.
trait Given {
    type Value;
    fn given(self) -> Option<Self::Value>;
}

impl<T> Given for Option<T> {
    type Value = T;
    fn given(self) -> Option<T> {
        self
    }
}

/// A switch (`--stateless-stub`) only switches on: absent, the file's value stands.
impl Given for bool {
    type Value = bool;
    fn given(self) -> Option<bool> {
        self.then_some(true)
    }
}

/// How a default reads in the help (`[default: ...]`); None: said by the flag's `shown` text, or nothing to
/// say (an empty list, a switch).
trait ShowDefault {
    fn show(&self) -> Option<String>;
}

macro_rules! show_default {
    (display: $($t:ty),+) => {
        $(impl ShowDefault for $t {
            fn show(&self) -> Option<String> {
                Some(self.to_string())
            }
        })+
    };
    (none: $($t:ty),+) => {
        $(impl<T> ShowDefault for $t {
            fn show(&self) -> Option<String> {
                None
            }
        })+
    };
}

show_default!(display: SocketAddr, String, u32, u64, usize, OverLimitPolicy, AuthMode, FsyncMode, ReceiveSpread);
show_default!(none: Option<T>, Vec<T>);

impl ShowDefault for bool {
    fn show(&self) -> Option<String> {
        None
    }
}

/// A flag's help: its documentation on one line, then the default (`shown` when given, else the value's).
fn help_text(doc: &[&str], shown: Option<&str>, value: Option<String>) -> String {
    let mut text = doc
        .iter()
        .map(|line| line.trim())
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if let Some(default) = shown.map(str::to_string).or(value) {
        text += &format!(" [default: {default}]");
    }
    text
}

/// Helper commands (`corereg <command>`); without one, corereg runs the registrar.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print HA1 = H(user:realm:password) for MD5 and SHA-256, to store in the credentials file instead of the
    /// password.
    Ha1 {
        user: String,
        realm: String,
        /// The password; `-` reads one line from standard input (keeps it out of `ps` and shell history).
        password: String,
        /// Print a ready-to-paste `[[user]]` entry of users.toml.
        #[arg(long, conflicts_with = "csv")]
        toml: bool,
        /// Print a users.csv: the header `username,realm,password,ha1_md5,ha1_sha256,aors` and the user's line
        /// (to add the user to an existing file, append the second line).
        #[arg(long)]
        csv: bool,
    },
    /// Print a new random nonce key in hex, the content of a --nonce-key-file.
    #[command(alias = "nonce-key")]
    GenNonceKey,
    /// Query and manage a running corereg through its HTTP API (see docs/api.md).
    Ctl(CtlArgs),
}

/// `corereg ctl`'s default `--api`: the HTTP API's default address.
pub const CTL_API: &str = "http://127.0.0.1:8080";

/// `corereg ctl`'s default `--timeout`, seconds.
pub const CTL_TIMEOUT_S: u64 = 30;

/// `corereg ctl`: where the API is, how to authenticate, how to print; then what to do.
#[derive(Debug, clap::Args)]
pub struct CtlArgs {
    /// The HTTP API's base URL (http:// only).
    #[arg(long, value_name = "URL", default_value = CTL_API, global = true)]
    pub api: String,
    /// A file whose first line is the API's bearer token (the server's --http-token-file).
    #[arg(long, value_name = "FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// Print the API's JSON as is (for `events`: one object per line, with its "event" name) instead of
    /// readable text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Seconds to wait for connecting and for each answer (`events`: for connecting only).
    #[arg(long, value_name = "S", default_value_t = CTL_TIMEOUT_S, global = true,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// What `corereg ctl` does.
#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Print an AoR's live bindings, highest q first.
    Lookup {
        /// The AoR, e.g. sip:alice@example.com (`sip:` may be left out).
        aor: String,
        /// Group the bindings by q (parallel-then-serial forking).
        #[arg(long)]
        group_q: bool,
        /// Only these binding fields, comma-separated: id, contact, q, expires, expires_at, path, source,
        /// instance, reg_id, call_id, cseq, user_agent, updated_at.
        #[arg(long, value_name = "LIST")]
        fields: Option<String>,
    },
    /// Print the registered AoRs with their binding counts, a page at a time.
    List {
        /// Only the AoRs that start with this (canonical form, `sip:` included).
        #[arg(long, value_name = "P")]
        prefix: Option<String>,
        /// AoRs per page, 1 to 1000 (the API's default: 100).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1000))]
        limit: Option<u16>,
        /// Follow the pages to the last one.
        #[arg(long)]
        all: bool,
    },
    /// Remove an AoR's bindings, or one of them.
    Delete {
        /// The AoR, e.g. sip:alice@example.com.
        aor: String,
        /// Only the binding with this id (as `lookup` shows it).
        #[arg(long, value_name = "ID")]
        binding: Option<u32>,
    },
    /// Follow the binding change events until interrupted.
    Events {
        /// Start with the current state: every AoR's bindings, then the changes.
        #[arg(long, conflicts_with = "last_event_id")]
        snapshot: bool,
        /// Resume right after this event (its SSE id, as a reconnecting client sends it).
        #[arg(long, value_name = "ID")]
        last_event_id: Option<String>,
    },
    /// Print every shard's counters.
    Stats,
    /// The accounts corereg registers upstream: list them with their state (default), or reload, enable
    /// or disable those the filters name (enable and disable need one).
    Registrants {
        /// list, reload (read the source again), enable (REGISTER now), disable (unREGISTER now).
        #[arg(value_enum, default_value = "list")]
        action: RegistrantsAction,
        /// Only the registrant(s) of this AoR, e.g. sip:trunk1@example.net.
        #[arg(long, value_name = "URI")]
        aor: Option<String>,
        /// Only the registrant(s) whose binding_URI is this.
        #[arg(long, value_name = "URI")]
        contact: Option<String>,
        /// Only the registrant(s) of this registrar URI.
        #[arg(long, value_name = "URI")]
        registrar: Option<String>,
    },
}

/// What `corereg ctl registrants` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RegistrantsAction {
    List,
    Reload,
    Enable,
    Disable,
}

/// `--receive-spread`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReceiveSpread {
    #[default]
    Random,
    Cpu,
    Flow,
}

impl ReceiveSpread {
    pub fn name(self) -> &'static str {
        match self {
            ReceiveSpread::Random => "random",
            ReceiveSpread::Cpu => "cpu",
            ReceiveSpread::Flow => "flow",
        }
    }
}

impl fmt::Display for ReceiveSpread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `--auth`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMode {
    #[default]
    Off,
    Required,
}

impl AuthMode {
    pub fn name(self) -> &'static str {
        match self {
            AuthMode::Off => "off",
            AuthMode::Required => "required",
        }
    }
}

impl fmt::Display for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One `--realm DOMAIN=REALM`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealmMapping {
    /// Lower-case.
    pub domain: String,
    pub realm: String,
}

impl RealmMapping {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (domain, realm) = text
            .split_once('=')
            .ok_or_else(|| format!("{text:?} is not DOMAIN=REALM"))?;
        let (domain, realm) = (domain.trim(), realm.trim());
        if domain.is_empty() || domain.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err(format!("{domain:?} in {text:?} is not a domain name"));
        }
        // The realm is sent in a quoted-string and compared byte for byte with the client's: refuse what
        // cannot round-trip cleanly rather than fail every authentication later.
        if realm.is_empty()
            || realm.len() > crate::auth::credentials::MAX_FIELD_LEN
            || realm
                .bytes()
                .any(|b| b.is_ascii_control() || b == b'"' || b == b'\\')
        {
            return Err(format!(
                "realm {realm:?} in {text:?} must be 1 to {} characters without quotes, backslashes or \
                 control characters",
                crate::auth::credentials::MAX_FIELD_LEN
            ));
        }
        Ok(RealmMapping {
            domain: domain.to_ascii_lowercase(),
            realm: realm.to_string(),
        })
    }

    /// `--realm` flags as the setting holds them (DOMAIN=REALM texts, parsed again with the file's).
    fn texts(mappings: Vec<RealmMapping>) -> Vec<String> {
        mappings.iter().map(RealmMapping::to_string).collect()
    }
}

impl fmt::Display for RealmMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.domain, self.realm)
    }
}

/// A parsed `--cpu-list` (a newtype: clap would take a bare `Vec` for a repeated flag).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

impl CpuList {
    fn parse(text: &str) -> Result<Self, String> {
        parse_cpu_list(text).map(CpuList)
    }
}

/// The `cpu-list` setting: the flag's string ("0-3,6") or, in the file, an array of CPU numbers. Parsed and
/// checked by [`Config::merge`].
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum CpuListValue {
    Text(String),
    Cpus(Vec<usize>),
}

impl CpuListValue {
    /// A `--cpu-list` flag as the setting holds it.
    fn given(list: CpuList) -> Option<Self> {
        Some(CpuListValue::Cpus(list.0))
    }

    /// The CPUs, in order, under the rules of [`parse_cpu_list`].
    fn cpus(&self) -> Result<Vec<usize>, String> {
        match self {
            CpuListValue::Text(text) => parse_cpu_list(text),
            // Same rules as the text: render and re-parse rather than duplicate them.
            CpuListValue::Cpus(cpus) => {
                let text = cpus.iter().map(usize::to_string).collect::<Vec<_>>();
                parse_cpu_list(&text.join(","))
            }
        }
    }
}

/// Parses "0-3,6" into [0, 1, 2, 3, 6]: comma-separated CPUs and inclusive ranges, no duplicates, in the
/// order given (shard i is pinned to the i-th CPU).
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for item in text.split(',').map(str::trim) {
        let number = |s: &str| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| format!("{s:?} in {text:?} is not a CPU number"))
        };
        let (first, last) = match item.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => {
                let cpu = number(item)?;
                (cpu, cpu)
            }
        };
        if first > last {
            return Err(format!("range {item:?} in {text:?} is reversed"));
        }
        if last >= MAX_CPU {
            return Err(format!(
                "CPU {last} in {text:?} is out of range (< {MAX_CPU})"
            ));
        }
        for cpu in first..=last {
            if cpus.contains(&cpu) {
                return Err(format!("CPU {cpu} is listed twice in {text:?}"));
            }
            cpus.push(cpu);
        }
    }
    Ok(cpus)
}

/// Highest CPU number + 1 accepted in a CPU list: the size of the kernel's `cpu_set_t` (CPU_SETSIZE).
pub const MAX_CPU: usize = 1024;

/// Largest `--handoff-queue`: each shard's inbox is allocated up front (64 B per datagram of capacity).
pub const MAX_HANDOFF_QUEUE: usize = 1 << 20;

/// `--http`: an address, or `none`.
pub fn parse_http(text: &str) -> Result<Option<SocketAddr>, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| format!("{text:?} is neither an address such as 127.0.0.1:8080 nor `none`"))
}

/// Largest `--recv-batch`: `recvmmsg` takes at most UIO_MAXIOV (1024) messages per call.
pub const MAX_RECV_BATCH: usize = 1024;

/// Longest `--coalesce-us`: 20 ms. A wait starts from the rate of the last 50 ms; a surge that begins during
/// it queues in the socket buffer (4 MiB, ~1,800 datagrams on loopback), which 20 ms at 90,000/s fills.
pub const MAX_COALESCE_US: u64 = 20_000;

/// Largest `--coalesce-datagrams`: what a shard's socket buffer holds with room to spare.
pub const MAX_COALESCE_DATAGRAMS: u32 = 1024;

/// Digest authentication settings (`--auth` and friends), validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthSettings {
    pub mode: AuthMode,
    pub credentials: Option<PathBuf>,
    pub realms: Vec<RealmMapping>,
    pub nonce_ttl_s: u64,
    pub max_failures: u32,
    pub failure_window_s: u64,
    pub cooldown_s: u64,
    pub algorithms: AlgorithmList,
    pub nonce_key_file: Option<PathBuf>,
}

/// The validated configuration, in the shapes the server uses: lists parsed, domains lower-cased, units
/// in the names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub listen: SocketAddr,
    /// Lower-case; empty = every domain.
    pub domains: Vec<String>,
    pub default_expires_s: u32,
    pub min_expires_s: u32,
    pub max_expires_s: u32,
    pub max_contacts: usize,
    pub max_contacts_per_request: usize,
    pub max_binding_bytes: usize,
    pub over_limit: OverLimitPolicy,
    pub max_bindings: usize,
    pub max_datagram_bytes: usize,
    pub max_headers: usize,
    pub max_line_bytes: usize,
    pub retry_after_s: u32,
    pub log: String,
    pub stateless_stub: bool,
    /// `--cores` as given (None: one shard per usable CPU, or per `--cpu-list` entry).
    pub cores: Option<usize>,
    /// `--cpu-list` as given, in order (empty: not given).
    pub cpu_list: Vec<usize>,
    pub handoff_queue: usize,
    pub recv_batch: usize,
    /// `--coalesce-us`.
    pub coalesce_us: u64,
    pub coalesce_datagrams: u32,
    pub receive_spread: ReceiveSpread,
    /// Not a setting: [`defaults::SOCKET_BUFFER_BYTES`].
    pub socket_buffer_bytes: usize,
    pub auth: AuthSettings,
    pub api: ApiSettings,
    pub registrants: RegistrantSettings,
    pub journal: JournalSettings,
    /// `--expires-range`, percent.
    pub expires_range_pct: u32,
}

/// The journal's settings (`--data-dir` and friends), validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalSettings {
    /// None: `--data-dir none`.
    pub data_dir: Option<PathBuf>,
    pub fsync: FsyncMode,
    pub fsync_interval_ms: u64,
    /// `--fsync-delay`, microseconds.
    pub fsync_delay_us: u64,
    pub segment_bytes: u64,
    pub snapshot_ratio: u32,
    pub max_held: usize,
}

/// Bounds of the journal's settings: beyond these a value is a mistake, not a tuning.
pub const MIN_JOURNAL_SEGMENT_BYTES: u64 = 64 << 10;
pub const MAX_JOURNAL_SEGMENT_BYTES: u64 = 1 << 30;
pub const MAX_SNAPSHOT_RATIO: u32 = 100;
pub const MAX_FSYNC_INTERVAL_MS: u64 = 60_000;
/// A longer wait would only add latency: past ~20 ms a commit holds what any rate brings.
pub const MAX_FSYNC_DELAY_US: u64 = 20_000;
pub const MAX_EXPIRES_RANGE_PCT: u32 = 90;

/// The registrants' settings (`--registrants` and friends), validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrantSettings {
    /// `FILE` or `sqlite:PATH`; None: no registrants.
    pub source: Option<String>,
    pub address: Option<std::net::IpAddr>,
    pub spread_s: u32,
    pub default_expiry_s: u32,
    pub refresh_margin_s: u32,
    pub retry_min_s: u32,
    pub retry_max_s: u32,
    pub shutdown_timeout_s: u32,
    pub max_rows: usize,
}

/// Longest registrant delays accepted (`--registrant-*` seconds): a day.
pub const MAX_REGISTRANT_SECONDS: u32 = 86_400;

/// The HTTP API's settings (`--http` and friends), validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiSettings {
    /// None: `--http none`.
    pub listen: Option<SocketAddr>,
    pub token_file: Option<PathBuf>,
    pub threads: usize,
    pub max_connections: usize,
    pub header_timeout_s: usize,
    pub shard_queue: usize,
    pub events_window: usize,
    pub events_subscriber_queue: usize,
    pub events_max_subscribers: usize,
    pub events_gather_ms: usize,
    pub webhook: Option<String>,
    pub webhook_batch: usize,
}

/// Largest `--http-threads`, `--http-max-connections`, `--api-queue`, `--events-*` and `--webhook-batch`
/// values: beyond these a value is a mistake, not a tuning.
pub const MAX_API_THREADS: usize = 64;
pub const MAX_API_LIMIT: usize = 10_000_000;

/// Largest `--http-header-timeout-s`.
pub const MAX_HTTP_HEADER_TIMEOUT_S: usize = 3600;

/// Largest `--events-gather-ms`: events are meant to be seen within a second.
pub const MAX_EVENTS_GATHER_MS: usize = 1000;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Summarises a CPU set for messages: [0, 1, 2, 5] -> "0-2,5".
pub fn format_cpu_list(cpus: &[usize]) -> String {
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

/// The defaults, unvalidated (they are valid: see the tests).
impl Default for Config {
    fn default() -> Self {
        Config::from_settings(Settings::default()).expect("the default settings convert")
    }
}

impl Settings {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// The TOML text of a configuration file; its errors name the line.
    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
}

impl Config {
    /// The start-up warning for a registrar anyone can write to: authentication off on an address other
    /// than loopback. None when authentication is on or only this host can reach it.
    pub fn open_registration_warning(&self) -> Option<String> {
        if self.auth.mode != AuthMode::Off || self.listen.ip().is_loopback() {
            return None;
        }
        Some(format!(
            "--auth is off and corereg listens on {}, which is not a loopback address: anyone who reaches it \
             can bind any address-of-record to any contact. Use --auth required with --credentials, or a \
             loopback --listen behind an authenticating proxy",
            self.listen
        ))
    }

    /// Reads `--config` (when given), merges and validates.
    pub fn from_args(args: Args) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => Settings::load(path)?,
            None => Settings::default(),
        };
        Self::merge(args, file)
    }

    /// The flags given overlay the file's settings (or the defaults); then validation.
    pub fn merge(args: Args, file: Settings) -> Result<Self, ConfigError> {
        let mut settings = file;
        args.overlay(&mut settings);
        let config = Self::from_settings(settings)?;
        config.validate()?;
        Ok(config)
    }

    /// Parses the lists of `settings` (CPUs, realms, algorithms) and names the values by their units;
    /// does not validate.
    fn from_settings(settings: Settings) -> Result<Self, ConfigError> {
        // Without `..`: a new setting does not compile until it is given its place here.
        let Settings {
            listen,
            domain,
            default_expires,
            min_expires,
            max_expires,
            max_contacts,
            max_contacts_per_request,
            max_binding_bytes,
            over_limit,
            max_bindings,
            max_datagram,
            max_headers,
            max_line,
            retry_after,
            log,
            stateless_stub,
            cores,
            cpu_list,
            handoff_queue,
            recv_batch,
            coalesce_us,
            coalesce_datagrams,
            receive_spread,
            auth,
            credentials,
            realm,
            nonce_ttl,
            auth_max_failures,
            auth_failure_window,
            auth_cooldown,
            auth_algorithms,
            nonce_key_file,
            http,
            http_token_file,
            http_threads,
            http_max_connections,
            http_header_timeout_s,
            api_queue,
            events_window,
            events_subscriber_queue,
            events_max_subscribers,
            events_gather_ms,
            webhook,
            webhook_batch,
            registrants,
            registrant_address,
            registrant_spread,
            registrant_default_expiry,
            registrant_refresh_margin,
            registrant_retry_min,
            registrant_retry_max,
            registrant_shutdown_timeout,
            registrant_max_rows,
            data_dir,
            fsync,
            fsync_interval,
            fsync_delay,
            journal_segment_bytes,
            snapshot_ratio,
            journal_max_held,
            expires_range,
        } = settings;
        let invalid =
            |key: &'static str| move |e: String| ConfigError::Invalid(format!("{key}: {e}"));
        Ok(Config {
            listen,
            domains: domain
                .iter()
                .map(|d| d.trim().to_ascii_lowercase())
                .collect(),
            default_expires_s: default_expires,
            min_expires_s: min_expires,
            max_expires_s: max_expires,
            max_contacts,
            max_contacts_per_request,
            max_binding_bytes,
            over_limit,
            max_bindings,
            max_datagram_bytes: max_datagram,
            max_headers,
            max_line_bytes: max_line,
            retry_after_s: retry_after,
            log,
            stateless_stub,
            cores,
            cpu_list: match cpu_list {
                Some(list) => list.cpus().map_err(invalid("cpu-list"))?,
                None => Vec::new(),
            },
            handoff_queue,
            recv_batch,
            coalesce_us,
            coalesce_datagrams,
            receive_spread,
            socket_buffer_bytes: defaults::SOCKET_BUFFER_BYTES,
            auth: AuthSettings {
                mode: auth,
                credentials,
                realms: realm
                    .iter()
                    .map(|text| RealmMapping::parse(text))
                    .collect::<Result<_, _>>()
                    .map_err(invalid("realm"))?,
                nonce_ttl_s: nonce_ttl,
                max_failures: auth_max_failures,
                failure_window_s: auth_failure_window,
                cooldown_s: auth_cooldown,
                algorithms: parse_algorithms(&auth_algorithms)
                    .map_err(invalid("auth-algorithms"))?,
                nonce_key_file,
            },
            api: ApiSettings {
                listen: parse_http(&http).map_err(invalid("http"))?,
                token_file: http_token_file,
                threads: http_threads,
                max_connections: http_max_connections,
                header_timeout_s: http_header_timeout_s,
                shard_queue: api_queue,
                events_window,
                events_subscriber_queue,
                events_max_subscribers,
                events_gather_ms,
                webhook,
                webhook_batch,
            },
            registrants: RegistrantSettings {
                source: registrants,
                address: registrant_address,
                spread_s: registrant_spread,
                default_expiry_s: registrant_default_expiry,
                refresh_margin_s: registrant_refresh_margin,
                retry_min_s: registrant_retry_min,
                retry_max_s: registrant_retry_max,
                shutdown_timeout_s: registrant_shutdown_timeout,
                max_rows: registrant_max_rows,
            },
            journal: JournalSettings {
                data_dir: match data_dir.trim() {
                    d if d.eq_ignore_ascii_case("none") => None,
                    d => Some(PathBuf::from(d)),
                },
                fsync,
                fsync_interval_ms: fsync_interval,
                fsync_delay_us: fsync_delay,
                segment_bytes: journal_segment_bytes,
                snapshot_ratio,
                max_held: journal_max_held,
            },
            expires_range_pct: expires_range,
        })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        let r = &self.registrants;
        for (name, value) in [
            ("--registrant-spread", r.spread_s),
            ("--registrant-default-expiry", r.default_expiry_s),
            ("--registrant-refresh-margin", r.refresh_margin_s),
            ("--registrant-retry-min", r.retry_min_s),
            ("--registrant-retry-max", r.retry_max_s),
            ("--registrant-shutdown-timeout", r.shutdown_timeout_s),
        ] {
            if value > MAX_REGISTRANT_SECONDS {
                return invalid(format!(
                    "{name} must be <= {MAX_REGISTRANT_SECONDS}, got {value}"
                ));
            }
        }
        if r.default_expiry_s == 0 || r.retry_min_s == 0 || r.max_rows == 0 {
            return invalid(
                "--registrant-default-expiry, --registrant-retry-min and --registrant-max-rows must be > 0"
                    .into(),
            );
        }
        if r.retry_min_s > r.retry_max_s {
            return invalid(format!(
                "--registrant-retry-min ({}) must be <= --registrant-retry-max ({})",
                r.retry_min_s, r.retry_max_s
            ));
        }
        if self.min_expires_s == 0 {
            return invalid("--min-expires must be > 0".into());
        }
        if !(self.min_expires_s <= self.default_expires_s
            && self.default_expires_s <= self.max_expires_s)
        {
            return invalid(format!(
                "expiry limits must satisfy --min-expires <= --default-expires <= --max-expires, got {} <= {} <= {}",
                self.min_expires_s, self.default_expires_s, self.max_expires_s
            ));
        }
        for (name, value) in [
            ("--max-contacts", self.max_contacts),
            ("--max-contacts-per-request", self.max_contacts_per_request),
            ("--max-binding-bytes", self.max_binding_bytes),
            ("--max-bindings", self.max_bindings),
            ("--max-datagram", self.max_datagram_bytes),
            ("--max-headers", self.max_headers),
            ("--max-line", self.max_line_bytes),
        ] {
            if value == 0 {
                return invalid(format!("{name} must be > 0"));
            }
        }
        // The core plans a REGISTER in fixed-size arrays (no allocation per request): these are their sizes.
        for (name, value, cap) in [
            ("--max-contacts", self.max_contacts, MAX_CONTACTS_PER_AOR),
            (
                "--max-contacts-per-request",
                self.max_contacts_per_request,
                MAX_CONTACTS_PER_REQUEST,
            ),
            (
                "--max-binding-bytes",
                self.max_binding_bytes,
                MAX_BINDING_BYTES,
            ),
        ] {
            if value > cap {
                return invalid(format!("{name} must be <= {cap}, got {value}"));
            }
        }
        if self.max_datagram_bytes > MAX_UDP_PAYLOAD_BYTES {
            return invalid(format!(
                "--max-datagram must be <= {MAX_UDP_PAYLOAD_BYTES} (the largest UDP payload), got {}",
                self.max_datagram_bytes
            ));
        }
        if self.max_headers > MAX_HEADERS {
            return invalid(format!(
                "--max-headers must be <= {MAX_HEADERS}, got {}",
                self.max_headers
            ));
        }
        if self.retry_after_s == 0 {
            return invalid("--retry-after must be > 0".into());
        }
        if let Some(bad) = self
            .domains
            .iter()
            .find(|d| d.is_empty() || d.bytes().any(|b| b.is_ascii_whitespace()))
        {
            return invalid(format!("--domain {bad:?} is not a domain name"));
        }
        if self.cores == Some(0) {
            return invalid("--cores must be > 0".into());
        }
        if let Some(cores) = self.cores {
            if !self.cpu_list.is_empty() && self.cpu_list.len() != cores {
                return invalid(format!(
                    "--cores {cores} and --cpu-list {} ({} CPUs) disagree: give one, or make them match",
                    format_cpu_list(&self.cpu_list),
                    self.cpu_list.len()
                ));
            }
        }
        if !(1..=MAX_HANDOFF_QUEUE).contains(&self.handoff_queue) {
            return invalid(format!(
                "--handoff-queue must be in 1..={MAX_HANDOFF_QUEUE}, got {}",
                self.handoff_queue
            ));
        }
        if !(1..=MAX_RECV_BATCH).contains(&self.recv_batch) {
            return invalid(format!(
                "--recv-batch must be in 1..={MAX_RECV_BATCH}, got {}",
                self.recv_batch
            ));
        }
        if self.coalesce_us > MAX_COALESCE_US {
            return invalid(format!(
                "--coalesce-us must be at most {MAX_COALESCE_US}, got {}",
                self.coalesce_us
            ));
        }
        if !(1..=MAX_COALESCE_DATAGRAMS).contains(&self.coalesce_datagrams) {
            return invalid(format!(
                "--coalesce-datagrams must be in 1..={MAX_COALESCE_DATAGRAMS}, got {}",
                self.coalesce_datagrams
            ));
        }
        self.validate_auth()?;
        self.validate_api()?;
        self.validate_journal()
    }

    fn validate_journal(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        let j = &self.journal;
        if j.data_dir
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            return invalid("--data-dir must be a directory or `none`".into());
        }
        if !(MIN_JOURNAL_SEGMENT_BYTES..=MAX_JOURNAL_SEGMENT_BYTES).contains(&j.segment_bytes) {
            return invalid(format!(
                "--journal-segment-bytes must be in {MIN_JOURNAL_SEGMENT_BYTES}..={MAX_JOURNAL_SEGMENT_BYTES}, got {}",
                j.segment_bytes
            ));
        }
        if !(1..=MAX_SNAPSHOT_RATIO).contains(&j.snapshot_ratio) {
            return invalid(format!(
                "--snapshot-ratio must be in 1..={MAX_SNAPSHOT_RATIO}, got {}",
                j.snapshot_ratio
            ));
        }
        if !(1..=MAX_FSYNC_INTERVAL_MS).contains(&j.fsync_interval_ms) {
            return invalid(format!(
                "--fsync-interval must be in 1..={MAX_FSYNC_INTERVAL_MS} ms, got {}",
                j.fsync_interval_ms
            ));
        }
        if j.fsync_delay_us > MAX_FSYNC_DELAY_US {
            return invalid(format!(
                "--fsync-delay must be at most {MAX_FSYNC_DELAY_US} us, got {}",
                j.fsync_delay_us
            ));
        }
        if !(1..=MAX_API_LIMIT).contains(&j.max_held) {
            return invalid(format!(
                "--journal-max-held must be in 1..={MAX_API_LIMIT}, got {}",
                j.max_held
            ));
        }
        if self.expires_range_pct > MAX_EXPIRES_RANGE_PCT {
            return invalid(format!(
                "--expires-range must be at most {MAX_EXPIRES_RANGE_PCT} (percent), got {}",
                self.expires_range_pct
            ));
        }
        Ok(())
    }

    fn validate_api(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        let a = &self.api;
        if let Some(addr) = a.listen {
            if !addr.ip().is_loopback() && a.token_file.is_none() {
                return invalid(format!(
                    "--http {addr} is not a loopback address: it needs --http-token-file FILE (a bearer token), \
                     or listen on 127.0.0.1"
                ));
            }
        }
        if !(1..=MAX_API_THREADS).contains(&a.threads) {
            return invalid(format!(
                "--http-threads must be in 1..={MAX_API_THREADS}, got {}",
                a.threads
            ));
        }
        if !(1..=MAX_HTTP_HEADER_TIMEOUT_S).contains(&a.header_timeout_s) {
            return invalid(format!(
                "--http-header-timeout-s must be in 1..={MAX_HTTP_HEADER_TIMEOUT_S}, got {}",
                a.header_timeout_s
            ));
        }
        if !(1..=MAX_EVENTS_GATHER_MS).contains(&a.events_gather_ms) {
            return invalid(format!(
                "--events-gather-ms must be in 1..={MAX_EVENTS_GATHER_MS}, got {}",
                a.events_gather_ms
            ));
        }
        for (name, value, min) in [
            ("--http-max-connections", a.max_connections, 1),
            ("--api-queue", a.shard_queue, 1),
            ("--events-window", a.events_window, 0),
            ("--events-subscriber-queue", a.events_subscriber_queue, 2),
            ("--events-max-subscribers", a.events_max_subscribers, 1),
        ] {
            if !(min..=MAX_API_LIMIT).contains(&value) {
                return invalid(format!(
                    "{name} must be in {min}..={MAX_API_LIMIT}, got {value}"
                ));
            }
        }
        if let Some(cfg) = self.webhook_config() {
            if let Err(e) = cfg.validate() {
                return invalid(e.to_string());
            }
        }
        Ok(())
    }

    fn validate_auth(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        let a = &self.auth;
        for (name, value) in [
            ("--nonce-ttl", a.nonce_ttl_s),
            ("--auth-failure-window", a.failure_window_s),
            ("--auth-cooldown", a.cooldown_s),
        ] {
            if !(1..=MAX_AUTH_SECONDS).contains(&value) {
                return invalid(format!(
                    "{name} must be in 1..={MAX_AUTH_SECONDS} seconds, got {value}"
                ));
            }
        }
        for (i, m) in a.realms.iter().enumerate() {
            if a.realms[..i].iter().any(|o| o.domain == m.domain) {
                return invalid(format!("--realm: domain {:?} is mapped twice", m.domain));
            }
            // A realm for a domain that is not served can never be used: most likely a typo.
            if !self.domains.is_empty() && !self.domains.contains(&m.domain) {
                return invalid(format!(
                    "--realm {}={}: {:?} is not a served --domain ({})",
                    m.domain,
                    m.realm,
                    m.domain,
                    self.domains.join(",")
                ));
            }
        }
        if a.mode == AuthMode::Required {
            if a.credentials.is_none() {
                return invalid(
                    "--auth required needs --credentials FILE (a .toml or .csv users file)".into(),
                );
            }
            if self.stateless_stub {
                return invalid(
                    "--auth required and --stateless-stub exclude each other (the stub has no registrar)"
                        .into(),
                );
            }
        }
        Ok(())
    }

    /// The webhook's settings, when `--webhook` is given.
    pub fn webhook_config(&self) -> Option<crate::api::webhook::WebhookConfig> {
        let url = self.api.webhook.clone()?;
        Some(crate::api::webhook::WebhookConfig {
            batch: self.api.webhook_batch,
            ..crate::api::webhook::WebhookConfig::new(url)
        })
    }

    /// The realms REGISTERs can be authenticated in, distinct, in order: each served domain's (its --realm,
    /// else the domain itself), then realms mapped for domains when every domain is served. `open` is true
    /// when every domain is served, so unmapped To hosts are realms too.
    pub fn auth_realms(&self) -> (Vec<String>, bool) {
        let mut realms: Vec<String> = Vec::new();
        let mut add = |r: &str| {
            if !realms.iter().any(|x| x == r) {
                realms.push(r.to_string());
            }
        };
        for domain in &self.domains {
            match self.auth.realms.iter().find(|m| &m.domain == domain) {
                Some(m) => add(&m.realm),
                None => add(domain),
            }
        }
        if self.domains.is_empty() {
            for m in &self.auth.realms {
                add(&m.realm);
            }
        }
        (realms, self.domains.is_empty())
    }

    /// The realm given to credentials entries that name none: the only realm served, when there is exactly
    /// one (one --domain, or every --domain mapped to the same --realm); otherwise entries must name theirs.
    pub fn default_credentials_realm(&self) -> Option<String> {
        match self.auth_realms() {
            (realms, false) if realms.len() == 1 => realms.into_iter().next(),
            _ => None,
        }
    }

    /// The authenticator settings of every shard.
    pub fn auth_config(&self) -> AuthConfig {
        let base = AuthConfig {
            nonce_ttl_s: self.auth.nonce_ttl_s,
            guard: GuardConfig {
                max_failures: self.auth.max_failures,
                window_s: self.auth.failure_window_s,
                cooldown_s: self.auth.cooldown_s,
                ..GuardConfig::default()
            },
            ..AuthConfig::default()
        };
        // The list was validated when parsed (one or two distinct algorithms).
        base.with_algorithms(&self.auth.algorithms.0)
            .unwrap_or(base)
    }

    /// The CPU of each shard, in shard order, out of `usable` (the CPUs this process may run on, see
    /// `shard::usable_cpus`): `--cpu-list` as given, else the first `--cores` usable CPUs, else all of them.
    /// Asking for a CPU that is not usable, or for more shards than usable CPUs, is an error: two pinned
    /// shards on one CPU would only take turns, and a CPU outside the affinity mask cannot be pinned to.
    pub fn shard_cpus(&self, usable: &[usize]) -> Result<Vec<usize>, ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        if usable.is_empty() {
            return invalid("no usable CPU found (sched_getaffinity)".into());
        }
        if !self.cpu_list.is_empty() {
            if let Some(bad) = self.cpu_list.iter().find(|cpu| !usable.contains(cpu)) {
                return invalid(format!(
                    "--cpu-list: CPU {bad} is not online or not allowed to this process (usable: {})",
                    format_cpu_list(usable)
                ));
            }
            return Ok(self.cpu_list.clone());
        }
        match self.cores {
            Some(cores) if cores > usable.len() => invalid(format!(
                "--cores {cores}: only {} CPUs are usable ({})",
                usable.len(),
                format_cpu_list(usable)
            )),
            Some(cores) => Ok(usable[..cores].to_vec()),
            None => Ok(usable.to_vec()),
        }
    }

    pub fn parse_limits(&self) -> ParseLimits {
        ParseLimits {
            max_message_bytes: self.max_datagram_bytes,
            max_headers: self.max_headers,
            max_line_bytes: self.max_line_bytes,
        }
    }

    /// One registrar configuration per shard, all cloned from ONE base so that they share the AoR hash seed
    /// (drawn at random by each `registrar_config` call): the seed picks every AoR's owning shard, so two
    /// seeds would send one AoR to two owners. `--max-bindings` is the process' total, split evenly (rounded
    /// up): the AoR hash spreads bindings evenly, so a shard fills up about when the process does.
    pub fn registrar_configs(&self, shards: usize) -> Vec<RegistrarConfig> {
        let base = self.registrar_config();
        let per_shard = self.max_bindings.div_ceil(shards.max(1));
        (0..shards)
            .map(|_| RegistrarConfig {
                max_bindings: per_shard,
                ..base.clone()
            })
            .collect()
    }

    /// The core's configuration for a single registrar holding every binding. Each call draws a new hash
    /// seed: for several shards use [`Config::registrar_configs`].
    pub fn registrar_config(&self) -> RegistrarConfig {
        RegistrarConfig {
            domains: self.domains.clone(),
            default_expires_s: self.default_expires_s,
            min_expires_s: self.min_expires_s,
            max_expires_s: self.max_expires_s,
            max_contacts_per_aor: self.max_contacts,
            max_contacts_per_request: self.max_contacts_per_request,
            max_binding_bytes: self.max_binding_bytes,
            over_limit: self.over_limit,
            max_bindings: self.max_bindings,
            retry_after_s: self.retry_after_s,
            parse: self.parse_limits(),
            realms: self
                .auth
                .realms
                .iter()
                .map(|m| (m.domain.clone(), m.realm.clone()))
                .collect(),
            reserve_arenas: true,
            expires_range_pct: self.expires_range_pct,
            ..RegistrarConfig::default()
        }
    }
}

/// The digest algorithms to challenge with, in order (one or two, distinct).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlgorithmList(pub Vec<Algorithm>);

impl AlgorithmList {
    /// An `--auth-algorithms` flag as the setting holds it (its text, parsed again with the file's).
    fn text(list: AlgorithmList) -> String {
        list.to_string()
    }
}

/// As the flag takes it: `sha-256,md5`.
impl fmt::Display for AlgorithmList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, alg) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(&alg.name().to_ascii_lowercase())?;
        }
        Ok(())
    }
}

fn parse_algorithms(text: &str) -> Result<AlgorithmList, String> {
    let mut list = Vec::new();
    for token in text.split(',').map(str::trim) {
        let alg = Algorithm::from_token(token.as_bytes()).ok_or_else(|| {
            format!("unknown digest algorithm {token:?} (use sha-256 and/or md5)")
        })?;
        if list.contains(&alg) {
            return Err(format!("{token:?} is listed twice"));
        }
        list.push(alg);
    }
    if list.is_empty() || list.len() > 2 {
        return Err("give one or two algorithms, e.g. sha-256,md5".into());
    }
    Ok(AlgorithmList(list))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(argv: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("corereg").chain(argv.iter().copied()))
            .expect("valid argv")
    }

    #[test]
    fn defaults_match_the_registrar_defaults() {
        let c = Config::merge(args(&[]), FileConfig::default()).expect("defaults are valid");
        assert_eq!(c, Config::default());
        let r = c.registrar_config();
        let d = RegistrarConfig::default();
        assert_eq!(
            (
                r.default_expires_s,
                r.min_expires_s,
                r.max_expires_s,
                r.max_contacts_per_aor,
                r.max_bindings
            ),
            (
                d.default_expires_s,
                d.min_expires_s,
                d.max_expires_s,
                d.max_contacts_per_aor,
                d.max_bindings
            )
        );
        assert_eq!(r.parse, ParseLimits::default());
    }

    #[test]
    fn cli_beats_file_beats_defaults() {
        let file = FileConfig::parse(
            r#"
            listen = "127.0.0.1:5070"
            domain = ["Example.COM"]
            min-expires = 30
            max-expires = 7200
            over-limit = "evict-oldest"
            "#,
        )
        .expect("valid toml");
        let c = Config::merge(args(&["--min-expires", "120", "--retry-after", "9"]), file)
            .expect("valid");
        assert_eq!(c.listen, "127.0.0.1:5070".parse().unwrap());
        assert_eq!(c.domains, vec!["example.com".to_string()]);
        assert_eq!(c.min_expires_s, 120);
        assert_eq!(c.max_expires_s, 7200);
        assert_eq!(c.default_expires_s, 3600);
        assert_eq!(c.over_limit, OverLimitPolicy::EvictOldest);
        assert_eq!(c.retry_after_s, 9);
    }

    #[test]
    fn cli_domains_replace_file_domains() {
        let file = FileConfig::parse(r#"domain = ["a.example"]"#).unwrap();
        let c = Config::merge(
            args(&["--domain", "b.example", "--domain", "c.example"]),
            file,
        )
        .unwrap();
        assert_eq!(c.domains, vec!["b.example", "c.example"]);
    }

    #[test]
    fn unknown_file_keys_are_errors() {
        assert!(FileConfig::parse("max-expire = 5").is_err());
    }

    #[test]
    fn over_limit_values_parse_on_the_command_line() {
        for (flag, want) in [
            ("reject503", OverLimitPolicy::Reject503),
            ("reject403", OverLimitPolicy::Reject403),
            ("evict-oldest", OverLimitPolicy::EvictOldest),
        ] {
            assert_eq!(args(&["--over-limit", flag]).over_limit, Some(want));
        }
    }

    #[test]
    fn inconsistent_limits_are_refused() {
        for argv in [
            &["--min-expires", "100", "--default-expires", "50"][..],
            &["--default-expires", "100000"][..],
            &["--min-expires", "0"][..],
            &["--max-contacts", "0"][..],
            &["--max-datagram", "0"][..],
            &["--max-datagram", "70000"][..],
            &["--max-headers", "1000"][..],
            &["--cores", "0"][..],
            &["--cores", "2", "--cpu-list", "0-2"][..],
            &["--handoff-queue", "0"][..],
            &["--recv-batch", "0"][..],
            &["--recv-batch", "1025"][..],
            &["--coalesce-us", "20001"][..],
            &["--coalesce-datagrams", "0"][..],
            &["--coalesce-datagrams", "1025"][..],
            &["--fsync-interval", "0"][..],
            &["--fsync-delay", "20001"][..],
            &["--snapshot-ratio", "0"][..],
            &["--journal-segment-bytes", "1000"][..],
        ] {
            assert!(
                Config::merge(args(argv), FileConfig::default()).is_err(),
                "{argv:?} should be refused"
            );
        }
    }

    #[test]
    fn cpu_lists_parse_ranges_in_order() {
        assert_eq!(parse_cpu_list("0-3,6"), Ok(vec![0, 1, 2, 3, 6]));
        assert_eq!(parse_cpu_list("5, 2"), Ok(vec![5, 2]));
        assert_eq!(parse_cpu_list("7"), Ok(vec![7]));
        for bad in ["", "a", "1-", "3-1", "1,1", "0-2,2", "-1", "1024", "1,,2"] {
            assert!(parse_cpu_list(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(
            args(&["--cpu-list", "2-3"]).cpu_list,
            Some(CpuList(vec![2, 3]))
        );
        assert!(Args::try_parse_from(["corereg", "--cpu-list", "x"]).is_err());
        assert_eq!(format_cpu_list(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
    }

    #[test]
    fn cpu_list_in_the_file_as_text_or_array() {
        for text in [r#"cpu-list = "1-2""#, "cpu-list = [1, 2]"] {
            let c = Config::merge(args(&[]), FileConfig::parse(text).unwrap()).unwrap();
            assert_eq!(c.cpu_list, vec![1, 2], "{text}");
        }
        assert!(Config::merge(args(&[]), FileConfig::parse("cpu-list = [1, 1]").unwrap()).is_err());
    }

    #[test]
    fn shard_cpus_come_from_the_list_the_count_or_all_usable() {
        let usable = [0, 1, 2, 3];
        let cpus = |argv: &[&str]| {
            Config::merge(args(argv), FileConfig::default())
                .unwrap()
                .shard_cpus(&usable)
        };
        assert_eq!(cpus(&[]).unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(cpus(&["--cores", "2"]).unwrap(), vec![0, 1]);
        assert_eq!(cpus(&["--cpu-list", "3,1"]).unwrap(), vec![3, 1]);
        assert_eq!(
            cpus(&["--cores", "2", "--cpu-list", "2-3"]).unwrap(),
            vec![2, 3]
        );
        assert!(cpus(&["--cores", "5"]).is_err());
        assert!(cpus(&["--cpu-list", "0,4"]).is_err());
        assert!(Config::default().shard_cpus(&[]).is_err());
    }

    #[test]
    fn shards_share_one_hash_seed_and_split_max_bindings() {
        let c = Config::merge(args(&["--max-bindings", "1001"]), FileConfig::default()).unwrap();
        let configs = c.registrar_configs(2);
        assert_eq!(configs.len(), 2);
        assert_eq!(configs[0].hash_seed.0, configs[1].hash_seed.0);
        assert!(configs.iter().all(|r| r.max_bindings == 501));
        assert_eq!(c.handoff_queue, defaults::HANDOFF_QUEUE);
        assert_eq!(c.recv_batch, defaults::RECV_BATCH);
    }

    /// README's flag table (`| `--flag VALUE` | default | meaning |`): each flag and its default cell.
    fn readme_flag_table() -> Vec<(String, String)> {
        include_str!("../README.md")
            .lines()
            .filter_map(|line| {
                let mut cells = line.strip_prefix("| `--")?.split(" | ");
                let flag = cells.next()?.split([' ', '`']).next()?.to_string();
                Some((flag, cells.next()?.trim().to_string()))
            })
            .collect()
    }

    #[test]
    fn the_readme_flag_table_lists_every_flag_with_the_default_the_help_shows() {
        use clap::CommandFactory;
        let table = readme_flag_table();
        let command = Args::command();
        let flags: Vec<_> = command
            .get_arguments()
            .filter_map(|a| Some((a.get_long()?, a.get_help()?.to_string())))
            .filter(|(long, _)| !["help", "version"].contains(long))
            .collect();
        assert!(flags.len() > 20, "the flags were found: {flags:?}");
        for (long, help) in &flags {
            let Some((_, cell)) = table.iter().find(|(flag, _)| flag == long) else {
                panic!("README's flag table has no row for --{long}");
            };
            // A default the help shows as a value must be README's, in backticks; a default said in words
            // (no default value, "every usable CPU") is README's to word.
            let shown = help
                .rsplit_once("[default: ")
                .and_then(|(_, rest)| rest.strip_suffix(']'));
            if let Some(shown) = shown.filter(|s| !s.contains(' ')) {
                assert_eq!(
                    cell,
                    &format!("`{shown}`"),
                    "README's default for --{long} differs from the help's"
                );
            } else {
                assert!(
                    !cell.starts_with('`'),
                    "README gives --{long} the default {cell}, the help none as a value"
                );
            }
        }
        for (flag, _) in &table {
            assert!(
                flags.iter().any(|(long, _)| long == flag),
                "README's flag table lists --{flag}, which corereg does not have"
            );
        }
    }

    /// The example file of README.md: the first ```toml block after a heading that names "Configuration",
    /// within that heading's section.
    fn readme_example_file() -> String {
        let readme = include_str!("../README.md");
        let mut lines = readme.lines();
        let level = lines
            .by_ref()
            .find_map(|l| {
                let hashes = l.len() - l.trim_start_matches('#').len();
                (hashes > 0 && l.to_ascii_lowercase().contains("configuration")).then_some(hashes)
            })
            .expect("README.md has a heading naming \"Configuration\"");
        let mut example = String::new();
        let mut inside = false;
        for line in lines {
            if inside {
                if line.trim_start().starts_with("```") {
                    return example;
                }
                example += line;
                example.push('\n');
            } else if line.trim() == "```toml" {
                inside = true;
            } else {
                let hashes = line.len() - line.trim_start_matches('#').len();
                assert!(
                    hashes == 0 || hashes > level || line.starts_with("#!"),
                    "no ```toml block in the README's configuration section"
                );
            }
        }
        panic!("README.md's configuration example is not closed");
    }

    /// The example file in README.md parses, validates and starts on a 2-CPU machine: it names no file
    /// that does not exist there, and its commented-out alternatives (`# key = value`) are keys too.
    #[test]
    fn the_readme_example_file_parses_and_validates_on_two_cpus() {
        let example = readme_example_file();
        let file = FileConfig::parse(&example).expect("the README example parses");
        assert_eq!(file.recv_batch, 32);
        assert_eq!(file.handoff_queue, 4096);
        let c = Config::merge(args(&[]), file).expect("the README example validates");
        c.shard_cpus(&[0, 1]).expect("the example runs on 2 CPUs");
        for (flag, path) in [
            ("credentials", &c.auth.credentials),
            ("nonce-key-file", &c.auth.nonce_key_file),
        ] {
            if let Some(path) = path {
                assert!(
                    path.exists(),
                    "the example's {flag} {} does not exist",
                    path.display()
                );
            }
        }
        if c.auth.mode == AuthMode::Required {
            assert!(c.auth.credentials.is_some());
        }
        // Commented-out settings are documented alternatives: each must name a real key with a valid value.
        let mut alternatives = 0;
        for line in example.lines() {
            let Some(setting) = line.strip_prefix("# ") else {
                continue;
            };
            let Some((key, value)) = setting.split_once(" = ") else {
                continue;
            };
            let value = value.split("  #").next().unwrap_or(value);
            let text = format!("{key} = {value}");
            FileConfig::parse(&text).unwrap_or_else(|e| panic!("README alternative {text:?}: {e}"));
            alternatives += 1;
        }
        assert!(
            alternatives > 0,
            "the example shows alternatives:\n{example}"
        );
    }

    /// Every setting's flag, as `--name`: the flags of [`Args`] but `--config`, `--help` and `--version`.
    fn setting_flags() -> Vec<String> {
        use clap::CommandFactory;
        Args::command()
            .get_arguments()
            .filter_map(|a| a.get_long())
            .filter(|l| !["config", "help", "version"].contains(l))
            .map(str::to_string)
            .collect()
    }

    /// A file setting every key to a value other than its default, and a command line giving every flag a
    /// third value: the flags win everywhere, and absent flags leave the file alone.
    #[test]
    fn every_flag_overlays_its_file_key() {
        let file_text = r#"
            listen = "127.0.0.1:5070"
            domain = ["a.example", "b.example"]
            default-expires = 1800
            min-expires = 30
            max-expires = 7200
            max-contacts = 5
            max-contacts-per-request = 8
            max-binding-bytes = 1024
            over-limit = "evict-oldest"
            max-bindings = 500
            max-datagram = 4096
            max-headers = 32
            max-line = 1024
            retry-after = 7
            log = "warn"
            stateless-stub = true
            cores = 2
            cpu-list = [0, 1]
            handoff-queue = 64
            recv-batch = 8
            coalesce-us = 500
            coalesce-datagrams = 8
            receive-spread = "cpu"
            auth = "required"
            credentials = "file-users.csv"
            realm = ["a.example=A"]
            nonce-ttl = 60
            auth-max-failures = 3
            auth-failure-window = 30
            auth-cooldown = 120
            auth-algorithms = "sha-256,md5"
            nonce-key-file = "file.key"
            http = "127.0.0.1:9080"
            http-token-file = "file.token"
            http-threads = 3
            http-max-connections = 10
            http-header-timeout-s = 12
            api-queue = 20
            events-window = 30
            events-subscriber-queue = 40
            events-max-subscribers = 5
            events-gather-ms = 9
            webhook = "http://127.0.0.1:1/file"
            webhook-batch = 6
            registrants = "file.toml"
            registrant-address = "127.0.0.2"
            registrant-spread = 10
            registrant-default-expiry = 600
            registrant-refresh-margin = 20
            registrant-retry-min = 5
            registrant-retry-max = 50
            registrant-shutdown-timeout = 2
            registrant-max-rows = 10
            data-dir = "file-data"
            fsync = "interval"
            fsync-interval = 50
            fsync-delay = 700
            journal-segment-bytes = 1000000
            snapshot-ratio = 3
            journal-max-held = 100
            expires-range = 20
        "#;
        let file = FileConfig::parse(file_text).expect("valid toml");
        let keys = file_text.lines().filter(|l| l.contains(" = ")).count();
        assert_eq!(keys, setting_flags().len(), "the file sets every key");
        let argv = [
            "--listen",
            "127.0.0.1:5080",
            "--domain",
            "c.example",
            "--default-expires",
            "900",
            "--min-expires",
            "20",
            "--max-expires",
            "3000",
            "--max-contacts",
            "4",
            "--max-contacts-per-request",
            "6",
            "--max-binding-bytes",
            "512",
            "--over-limit",
            "reject403",
            "--max-bindings",
            "400",
            "--max-datagram",
            "2048",
            "--max-headers",
            "16",
            "--max-line",
            "512",
            "--retry-after",
            "3",
            "--log",
            "debug",
            "--stateless-stub",
            "--cores",
            "1",
            "--cpu-list",
            "1",
            "--handoff-queue",
            "32",
            "--recv-batch",
            "4",
            "--coalesce-us",
            "0",
            "--coalesce-datagrams",
            "4",
            "--receive-spread",
            "flow",
            "--auth",
            "off",
            "--credentials",
            "flag-users.csv",
            "--realm",
            "c.example=C",
            "--nonce-ttl",
            "90",
            "--auth-max-failures",
            "2",
            "--auth-failure-window",
            "20",
            "--auth-cooldown",
            "100",
            "--auth-algorithms",
            "sha-256",
            "--nonce-key-file",
            "flag.key",
            "--http",
            "none",
            "--http-token-file",
            "flag.token",
            "--http-threads",
            "4",
            "--http-max-connections",
            "11",
            "--http-header-timeout-s",
            "13",
            "--api-queue",
            "21",
            "--events-window",
            "31",
            "--events-subscriber-queue",
            "41",
            "--events-max-subscribers",
            "6",
            "--events-gather-ms",
            "8",
            "--webhook",
            "http://127.0.0.1:1/flag",
            "--webhook-batch",
            "7",
            "--registrants",
            "sqlite:flag.db",
            "--registrant-address",
            "127.0.0.3",
            "--registrant-spread",
            "11",
            "--registrant-default-expiry",
            "601",
            "--registrant-refresh-margin",
            "21",
            "--registrant-retry-min",
            "6",
            "--registrant-retry-max",
            "51",
            "--registrant-shutdown-timeout",
            "3",
            "--registrant-max-rows",
            "11",
            "--data-dir",
            "none",
            "--fsync",
            "off",
            "--fsync-interval",
            "60",
            "--fsync-delay",
            "800",
            "--journal-segment-bytes",
            "2000000",
            "--snapshot-ratio",
            "5",
            "--journal-max-held",
            "200",
            "--expires-range",
            "30",
        ];
        let flags = argv.iter().filter(|a| a.starts_with("--")).count();
        assert_eq!(
            flags,
            setting_flags().len(),
            "the command line gives every flag"
        );
        // Every field overwritten: the result no longer depends on what lay below.
        let mut over_file = file.clone();
        args(&argv).overlay(&mut over_file);
        let mut over_defaults = FileConfig::default();
        args(&argv).overlay(&mut over_defaults);
        assert_eq!(over_file, over_defaults);
        assert_eq!(over_file.realm, vec!["c.example=C".to_string()]);
        assert_eq!(over_file.cpu_list, Some(CpuListValue::Cpus(vec![1])));
        assert_eq!(over_file.auth_algorithms, "sha-256");
        let c = Config::merge(args(&argv), file.clone()).expect("valid");
        assert_eq!(
            (c.listen.port(), c.cores, c.cpu_list.clone()),
            (5080, Some(1), vec![1])
        );
        assert_eq!(c.auth.algorithms, AlgorithmList(vec![Algorithm::Sha256]));
        assert_eq!(c.api.listen, None);
        assert_eq!(
            (c.api.threads, c.api.events_window, c.api.webhook_batch),
            (4, 31, 7)
        );
        // No flag: the file stands as written.
        let mut untouched = file.clone();
        args(&[]).overlay(&mut untouched);
        assert_eq!(untouched, file);
        assert_ne!(file, FileConfig::default());
    }

    /// Each flag is a key of the file under the same name, and the help shows the defaults of
    /// [`Settings::default`], which come from [`defaults`].
    #[test]
    fn flags_and_file_keys_share_names_and_the_help_shows_the_defaults() {
        for flag in setting_flags() {
            if let Err(e) = FileConfig::parse(&format!("{flag} = 0")) {
                assert!(
                    !e.to_string().contains("unknown field"),
                    "--{flag} is not a file key: {e}"
                );
            }
        }
        use clap::CommandFactory;
        let help = Args::command().render_long_help().to_string();
        for shown in [
            format!("[default: {}]", defaults::LISTEN),
            format!("[default: {}]", defaults::DEFAULT_EXPIRES_S),
            format!("[default: {}]", defaults::MAX_BINDINGS),
            format!("[default: {}]", defaults::HANDOFF_QUEUE),
            format!("[default: {}]", defaults::LOG),
            format!("[default: {}]", defaults::AUTH_ALGORITHMS),
            "[default: reject503]".to_string(),
            "[default: off]".to_string(),
            "[default: every CPU this process may use]".to_string(),
        ] {
            assert!(help.contains(&shown), "{shown} not in the help:\n{help}");
        }
        assert_eq!(
            help.matches("[default: ").count(),
            setting_flags().len() - 4,
            "every flag but --domain, --stateless-stub, --credentials and --realm shows its default:\n{help}"
        );
        let d = Settings::default();
        assert_eq!(
            (d.listen, d.recv_batch, d.auth),
            (defaults::LISTEN, defaults::RECV_BATCH, defaults::AUTH)
        );
    }

    /// Errors in a file name the line; a list that parses as TOML but not as a setting names its key.
    #[test]
    fn file_errors_name_the_line_or_the_key() {
        let e =
            FileConfig::parse("listen = \"127.0.0.1:5060\"\nmax-expires = \"long\"\n").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        let e = FileConfig::parse("\n\nmax-expire = 5\n").unwrap_err();
        assert!(
            e.to_string().contains("line 3") && e.to_string().contains("max-expire"),
            "{e}"
        );
        for (text, key) in [
            ("cpu-list = \"1-0\"", "cpu-list"),
            ("realm = [\"x\"]", "realm"),
            ("auth-algorithms = \"sha-1\"", "auth-algorithms"),
        ] {
            let e = Config::merge(args(&[]), FileConfig::parse(text).unwrap()).unwrap_err();
            assert!(e.to_string().contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn recv_batch_comes_from_the_flag_then_the_file() {
        let file = FileConfig::parse("recv-batch = 4").unwrap();
        let c = Config::merge(args(&[]), file).unwrap();
        assert_eq!(c.recv_batch, 4);
        let file = FileConfig::parse("recv-batch = 4").unwrap();
        let c = Config::merge(args(&["--recv-batch", "1"]), file).unwrap();
        assert_eq!(c.recv_batch, 1);
    }

    #[test]
    fn auth_flags_merge_and_feed_the_authenticator_and_registrar() {
        let file = FileConfig::parse(
            r#"
            auth = "required"
            credentials = "/etc/corereg/users.csv"
            realm = ["example.com=Example Corp"]
            nonce-ttl = 120
            auth-max-failures = 5
            "#,
        )
        .expect("valid toml");
        let c = Config::merge(
            args(&[
                "--domain",
                "Example.com",
                "--domain",
                "b.example",
                "--auth-cooldown",
                "30",
            ]),
            file,
        )
        .expect("valid");
        assert_eq!(c.auth.mode, AuthMode::Required);
        assert_eq!(
            c.auth.credentials.as_deref(),
            Some(Path::new("/etc/corereg/users.csv"))
        );
        let a = c.auth_config();
        assert_eq!(a.nonce_ttl_s, 120);
        assert_eq!(a.guard.max_failures, 5);
        assert_eq!(a.guard.window_s, defaults::AUTH_FAILURE_WINDOW_S);
        assert_eq!(a.guard.cooldown_s, 30);
        assert_eq!(
            c.registrar_config().realms,
            vec![("example.com".to_string(), "Example Corp".to_string())]
        );
        assert_eq!(
            c.auth_realms(),
            (
                vec!["Example Corp".to_string(), "b.example".to_string()],
                false
            )
        );
        // Two realms: entries must name theirs.
        assert_eq!(c.default_credentials_realm(), None);
    }

    #[test]
    fn the_only_served_realm_is_the_credentials_default() {
        let c = Config::merge(args(&["--domain", "example.com"]), FileConfig::default()).unwrap();
        assert_eq!(
            c.default_credentials_realm().as_deref(),
            Some("example.com")
        );
        let c = Config::merge(
            args(&["--domain", "a.example", "--realm", "a.example=corp"]),
            FileConfig::default(),
        )
        .unwrap();
        assert_eq!(c.default_credentials_realm().as_deref(), Some("corp"));
        // Every domain served: the To host is the realm, no default.
        assert_eq!(Config::default().default_credentials_realm(), None);
        assert_eq!(Config::default().auth.mode, AuthMode::Off);
    }

    #[test]
    fn inconsistent_auth_settings_are_refused() {
        for argv in [
            &["--auth", "required"][..],
            &[
                "--auth",
                "required",
                "--credentials",
                "u.csv",
                "--stateless-stub",
            ][..],
            &["--nonce-ttl", "0"][..],
            &["--nonce-ttl", "100000"][..],
            &["--auth-failure-window", "0"][..],
            &["--auth-cooldown", "0"][..],
            &["--domain", "a.example", "--realm", "b.example=x"][..],
            &["--realm", "a.example=x", "--realm", "A.example=y"][..],
        ] {
            assert!(
                Config::merge(args(argv), FileConfig::default()).is_err(),
                "{argv:?} should be refused"
            );
        }
        for bad in [
            "noequals",
            "=realm",
            "a.example=",
            "a.example=x\"y",
            "a b=c",
        ] {
            assert!(
                RealmMapping::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
        assert!(Args::try_parse_from(["corereg", "--auth", "maybe"]).is_err());
        assert!(FileConfig::parse(r#"auth = "sometimes""#).is_err());
        let bad_file = FileConfig::parse(r#"realm = ["nope"]"#).unwrap();
        assert!(Config::merge(args(&[]), bad_file).is_err());
        assert!(Config::merge(
            args(&["--auth", "required", "--credentials", "u.toml"]),
            FileConfig::default()
        )
        .is_ok());
    }

    #[test]
    fn helper_commands_parse_and_exclude_registrar_flags() {
        let a = args(&["ha1", "alice", "example.com", "secret", "--toml"]);
        match a.command {
            Some(Command::Ha1 {
                user,
                realm,
                password,
                toml,
                csv,
            }) => {
                assert_eq!(
                    (user.as_str(), realm.as_str(), password.as_str()),
                    ("alice", "example.com", "secret")
                );
                assert!(toml && !csv);
            }
            other => panic!("expected ha1, got {other:?}"),
        }
        assert!(matches!(
            args(&["gen-nonce-key"]).command,
            Some(Command::GenNonceKey)
        ));
        assert!(matches!(
            args(&["nonce-key"]).command,
            Some(Command::GenNonceKey)
        ));
        assert!(
            Args::try_parse_from(["corereg", "--listen", "127.0.0.1:1", "gen-nonce-key"]).is_err()
        );
        assert!(
            Args::try_parse_from(["corereg", "ha1", "a", "b", "c", "--toml", "--csv"]).is_err()
        );
        assert!(args(&[]).command.is_none());
    }
}

#[cfg(test)]
mod algorithm_list_tests {
    use super::*;

    #[test]
    fn algorithm_lists_parse_in_order_and_reject_nonsense() {
        assert_eq!(
            parse_algorithms("sha-256,md5"),
            Ok(AlgorithmList(vec![Algorithm::Sha256, Algorithm::Md5]))
        );
        assert_eq!(
            parse_algorithms("MD5"),
            Ok(AlgorithmList(vec![Algorithm::Md5]))
        );
        assert_eq!(
            parse_algorithms(" md5 , SHA-256 "),
            Ok(AlgorithmList(vec![Algorithm::Md5, Algorithm::Sha256]))
        );
        assert!(parse_algorithms("").is_err());
        assert!(parse_algorithms("md5,md5").is_err());
        assert!(parse_algorithms("sha-512").is_err());
        assert!(parse_algorithms("md5,sha-256,md5").is_err());
    }
}

#[cfg(test)]
mod contact_limit_tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["corereg"];
        argv.extend_from_slice(args);
        let args = Args::try_parse_from(argv).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        Config::from_args(args)
    }

    #[test]
    fn contact_limits_reach_the_registrar_and_are_bounded_by_the_core() {
        let c = parse(&["--max-contacts-per-request", "5"]).expect("valid");
        assert_eq!(c.registrar_config().max_contacts_per_request, 5);
        assert!(parse(&["--max-contacts-per-request", "65"]).is_err());
        assert!(parse(&["--max-contacts-per-request", "0"]).is_err());
        assert!(parse(&["--max-contacts", "257"]).is_err());
        assert!(parse(&["--max-contacts", "256"]).is_ok());
    }

    #[test]
    fn open_registration_warns_off_loopback_only() {
        let warn = parse(&[]).expect("defaults").open_registration_warning();
        assert!(warn.is_some_and(|w| w.contains("0.0.0.0:5060") && w.contains("--auth")));
        for listen in ["127.0.0.1:5060", "[::1]:5060"] {
            let c = parse(&["--listen", listen]).expect("valid");
            assert_eq!(c.open_registration_warning(), None, "{listen}");
        }
        let c = parse(&[
            "--listen",
            "192.0.2.1:5060",
            "--auth",
            "required",
            "--credentials",
            "u.csv",
        ])
        .expect("valid");
        assert_eq!(c.open_registration_warning(), None);
    }

    #[test]
    fn binding_bytes_limit_reaches_the_registrar_and_is_bounded() {
        assert_eq!(
            parse(&[])
                .expect("defaults")
                .registrar_config()
                .max_binding_bytes,
            defaults::MAX_BINDING_BYTES
        );
        let c = parse(&["--max-binding-bytes", "512"]).expect("valid");
        assert_eq!(c.registrar_config().max_binding_bytes, 512);
        let e = parse(&["--max-binding-bytes", "0"]).expect_err("zero");
        assert!(e.to_string().contains("--max-binding-bytes"), "{e}");
        let e = parse(&["--max-binding-bytes", "65536"]).expect_err("over the core's limit");
        assert!(e.to_string().contains("--max-binding-bytes"), "{e}");
    }
}
