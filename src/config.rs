//! Flags and TOML configuration.
//!
//! Every setting exists both as a command-line flag ([`Args`]) and as a kebab-case key in the TOML file given by
//! `--config FILE` ([`FileConfig`]). Precedence: command line, then file, then the defaults below. The merged,
//! validated result is a [`Config`]; [`Config::registrar_config`] hands the core its part.

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
    /// Requests one shard may have queued for another before the sender answers 503: about a millisecond of
    /// a busy shard's work, so a short stall is absorbed but a stuck owner is noticed quickly.
    pub const HANDOFF_QUEUE: usize = 1024;
    /// Datagrams a shard takes from its socket per `recvmmsg` when they queue up (and replies per `sendmmsg`).
    pub const RECV_BATCH: usize = 32;
    /// Digest nonce lifetime: long enough for a phone to answer its challenge and re-use the nonce for a
    /// few refreshes, short enough that a captured nonce soon goes stale.
    pub const NONCE_TTL_S: u64 = 300;
    /// Failed authentications tolerated per user (and per source address) within the window.
    pub const AUTH_MAX_FAILURES: u32 = 10;
    pub const AUTH_FAILURE_WINDOW_S: u64 = 60;
    pub const AUTH_COOLDOWN_S: u64 = 300;
}

/// Longest `--nonce-ttl`, `--auth-failure-window` and `--auth-cooldown` accepted: a day. Longer values are
/// almost certainly a unit mistake (milliseconds for seconds).
pub const MAX_AUTH_SECONDS: u64 = 86_400;

/// Largest UDP payload that can exist (IPv4: 65535 - 20 - 8); a larger `--max-datagram` would be meaningless.
const MAX_UDP_PAYLOAD_BYTES: usize = 65_507;

/// Command-line flags. Every field is optional so that the merge can tell "not given" from "given the default".
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

    /// UDP address to listen on; port 0 binds an ephemeral port (logged at start-up). [default: 0.0.0.0:5060]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Domain served (repeatable); requests for other domains get 404. None: every domain is served.
    #[arg(long = "domain", value_name = "DOMAIN")]
    pub domains: Vec<String>,

    /// Expiry granted when the REGISTER gives none, in seconds. [default: 3600]
    #[arg(long, value_name = "S")]
    pub default_expires: Option<u32>,

    /// Shortest expiry accepted (shorter non-zero ones get 423 with Min-Expires), in seconds. [default: 60]
    #[arg(long, value_name = "S")]
    pub min_expires: Option<u32>,

    /// Longest expiry granted (longer ones are shortened), in seconds. [default: 86400]
    #[arg(long, value_name = "S")]
    pub max_expires: Option<u32>,

    /// Contacts one address-of-record may hold. [default: 10]
    #[arg(long, value_name = "N")]
    pub max_contacts: Option<usize>,

    /// Contacts one REGISTER may carry; more get 400. [default: 32]
    #[arg(long, value_name = "N")]
    pub max_contacts_per_request: Option<usize>,

    /// Bytes one binding may store: its contact URI, Call-ID, Path, +sip.instance, User-Agent and AoR. A
    /// REGISTER that would store more gets 413. [default: 2048]
    #[arg(long, value_name = "BYTES")]
    pub max_binding_bytes: Option<usize>,

    /// What happens when a REGISTER would exceed --max-contacts. [default: reject503]
    #[arg(long, value_enum, value_name = "POLICY")]
    pub over_limit: Option<OverLimitPolicy>,

    /// Bindings held in all; beyond it new bindings get 503. [default: 1000000]
    #[arg(long, value_name = "N")]
    pub max_bindings: Option<usize>,

    /// Largest datagram accepted, in bytes; larger ones are refused. [default: 8192]
    #[arg(long, value_name = "BYTES")]
    pub max_datagram: Option<usize>,

    /// Most header lines accepted in one message. [default: 64]
    #[arg(long, value_name = "N")]
    pub max_headers: Option<usize>,

    /// Longest header line accepted, in bytes. [default: 2048]
    #[arg(long, value_name = "BYTES")]
    pub max_line: Option<usize>,

    /// Seconds sent in Retry-After with 503 responses. [default: 5]
    #[arg(long, value_name = "S")]
    pub retry_after: Option<u32>,

    /// Log filter (tracing EnvFilter syntax, e.g. "info" or "corereg=debug"); RUST_LOG overrides it. [default: info]
    #[arg(long, value_name = "FILTER")]
    pub log: Option<String>,

    /// BENCHMARK ONLY: answer every request with a bare 200 OK (Via/From/To/Call-ID/CSeq copied), no registrar
    /// logic. Measures the I/O floor of this shell.
    #[arg(long)]
    pub stateless_stub: bool,

    /// Shards to run, one pinned executor each, on the first N CPUs this process may use (or on the CPUs of
    /// --cpu-list, which must then list exactly N). [default: every CPU this process may use]
    #[arg(long, value_name = "N")]
    pub cores: Option<usize>,

    /// Exact CPUs to pin the shards to, one shard per CPU: a list of CPUs and ranges such as "0-3,6". Every CPU
    /// must be online and allowed to this process. [default: the first --cores CPUs]
    #[arg(long, value_name = "CPUS", value_parser = CpuList::parse)]
    pub cpu_list: Option<CpuList>,

    /// Capacity of each bounded queue between two shards (requests handed to the shard owning their AoR);
    /// when an owner's queue is full the receiving shard answers 503 with Retry-After. [default: 1024]
    #[arg(long, value_name = "N")]
    pub handoff_queue: Option<usize>,

    /// When datagrams queue up on a shard's socket, take up to N per system call (`recvmmsg`) and send their
    /// replies with one `sendmmsg`; 1 turns batching off. A shard that waited for its datagram never
    /// batches, so this changes nothing at low rates. Costs N x (--max-datagram + 1) bytes per shard.
    /// [default: 32]
    #[arg(long, value_name = "N")]
    pub recv_batch: Option<usize>,

    /// Digest authentication of REGISTER (RFC 7616): `off`, or `required` (every REGISTER must carry valid
    /// credentials; needs --credentials). [default: off]
    #[arg(long, value_enum, value_name = "MODE")]
    pub auth: Option<AuthMode>,

    /// Users file, `.toml` or `.csv` (formats in the README); re-read on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub credentials: Option<PathBuf>,

    /// Digest realm of a served domain, as DOMAIN=REALM (repeatable). Domains not listed use themselves.
    #[arg(long = "realm", value_name = "DOMAIN=REALM", value_parser = RealmMapping::parse)]
    pub realms: Vec<RealmMapping>,

    /// Seconds a nonce stays fresh; older ones get a new challenge with stale=true. [default: 300]
    #[arg(long, value_name = "S")]
    pub nonce_ttl: Option<u64>,

    /// Failed authentications per user (and per source address) tolerated within --auth-failure-window; the
    /// next attempts get 403 for --auth-cooldown. 0 disables the limit. [default: 10]
    #[arg(long, value_name = "N")]
    pub auth_max_failures: Option<u32>,

    /// Window over which failures are counted, in seconds. [default: 60]
    #[arg(long, value_name = "S")]
    pub auth_failure_window: Option<u64>,

    /// How long a user or address that exceeded --auth-max-failures is refused, in seconds. [default: 300]
    #[arg(long, value_name = "S")]
    pub auth_cooldown: Option<u64>,

    /// Digest challenges offered, in order: `md5`, `sha-256,md5` (RFC 8760: strongest first), `md5,sha-256`
    /// or `sha-256`. Deployed UAs fail on SHA-256: baresip on a 401 that carries any SHA-256 challenge,
    /// sipsak and SIPp when it comes first; so MD5 alone is the default. [default: md5]
    #[arg(long, value_name = "LIST", value_parser = parse_algorithms)]
    pub auth_algorithms: Option<AlgorithmList>,

    /// File holding the nonce key in hex (`corereg gen-nonce-key > FILE`): processes sharing it accept each
    /// other's nonces. [default: a random key per process, shared by its shards]
    #[arg(long, value_name = "FILE")]
    pub nonce_key_file: Option<PathBuf>,
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
        /// Print a ready-to-paste line of users.csv (header `username,realm,password,ha1_md5,ha1_sha256,aors`).
        #[arg(long)]
        csv: bool,
    },
    /// Print a new random nonce key in hex, the content of a --nonce-key-file.
    #[command(alias = "nonce-key")]
    GenNonceKey,
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
}

/// A parsed `--cpu-list` (a newtype: clap would take a bare `Vec` for a repeated flag).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

impl CpuList {
    fn parse(text: &str) -> Result<Self, String> {
        parse_cpu_list(text).map(CpuList)
    }
}

/// The TOML form of `cpu-list`: the flag's string ("0-3,6") or an array of CPU numbers.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum CpuListValue {
    Text(String),
    Cpus(Vec<usize>),
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

/// Largest `--handoff-queue`: each queue is allocated up front, and N shards have N * (N - 1) of them.
pub const MAX_HANDOFF_QUEUE: usize = 1 << 20;

/// Largest `--recv-batch`: `recvmmsg` takes at most UIO_MAXIOV (1024) messages per call.
pub const MAX_RECV_BATCH: usize = 1024;

/// The TOML file: same names as the flags, all optional. Unknown keys are an error (a typo must not be ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    /// `domain = ["a.example", "b.example"]` (or `domains`).
    #[serde(alias = "domains")]
    pub domain: Option<Vec<String>>,
    pub default_expires: Option<u32>,
    pub min_expires: Option<u32>,
    pub max_expires: Option<u32>,
    pub max_contacts: Option<usize>,
    pub max_contacts_per_request: Option<usize>,
    pub max_binding_bytes: Option<usize>,
    pub over_limit: Option<OverLimitPolicy>,
    pub max_bindings: Option<usize>,
    pub max_datagram: Option<usize>,
    pub max_headers: Option<usize>,
    pub max_line: Option<usize>,
    pub retry_after: Option<u32>,
    pub log: Option<String>,
    pub stateless_stub: Option<bool>,
    pub cores: Option<usize>,
    /// `cpu-list = "0-3,6"` or `cpu-list = [0, 1, 2, 3, 6]`.
    pub cpu_list: Option<CpuListValue>,
    pub handoff_queue: Option<usize>,
    pub recv_batch: Option<usize>,
    pub auth: Option<AuthMode>,
    pub credentials: Option<PathBuf>,
    /// `realm = ["example.com=Example", ...]` (or `realms`), the flag's DOMAIN=REALM form.
    #[serde(alias = "realms")]
    pub realm: Option<Vec<String>>,
    pub nonce_ttl: Option<u64>,
    pub auth_max_failures: Option<u32>,
    pub auth_failure_window: Option<u64>,
    pub auth_cooldown: Option<u64>,
    /// `auth-algorithms = "md5,sha-256"`
    pub auth_algorithms: Option<String>,
    pub nonce_key_file: Option<PathBuf>,
}

/// Digest authentication settings (`--auth` and friends), merged.
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

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            mode: AuthMode::Off,
            credentials: None,
            realms: Vec::new(),
            nonce_ttl_s: defaults::NONCE_TTL_S,
            max_failures: defaults::AUTH_MAX_FAILURES,
            failure_window_s: defaults::AUTH_FAILURE_WINDOW_S,
            cooldown_s: defaults::AUTH_COOLDOWN_S,
            algorithms: AlgorithmList(vec![Algorithm::Md5]),
            nonce_key_file: None,
        }
    }
}

/// The merged, validated configuration.
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
    pub socket_buffer_bytes: usize,
    pub auth: AuthSettings,
}

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

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: defaults::LISTEN,
            domains: Vec::new(),
            default_expires_s: defaults::DEFAULT_EXPIRES_S,
            min_expires_s: defaults::MIN_EXPIRES_S,
            max_expires_s: defaults::MAX_EXPIRES_S,
            max_contacts: defaults::MAX_CONTACTS,
            max_contacts_per_request: defaults::MAX_CONTACTS_PER_REQUEST,
            max_binding_bytes: defaults::MAX_BINDING_BYTES,
            over_limit: defaults::OVER_LIMIT,
            max_bindings: defaults::MAX_BINDINGS,
            max_datagram_bytes: defaults::MAX_DATAGRAM_BYTES,
            max_headers: defaults::MAX_HEADERS,
            max_line_bytes: defaults::MAX_LINE_BYTES,
            retry_after_s: defaults::RETRY_AFTER_S,
            log: defaults::LOG.to_string(),
            stateless_stub: false,
            cores: None,
            cpu_list: Vec::new(),
            handoff_queue: defaults::HANDOFF_QUEUE,
            recv_batch: defaults::RECV_BATCH,
            socket_buffer_bytes: defaults::SOCKET_BUFFER_BYTES,
            auth: AuthSettings::default(),
        }
    }
}

impl FileConfig {
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
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        Self::merge(args, file)
    }

    /// Command line beats file beats defaults; then validation.
    pub fn merge(args: Args, file: FileConfig) -> Result<Self, ConfigError> {
        let d = Config::default();
        let domains = if !args.domains.is_empty() {
            args.domains
        } else {
            file.domain.unwrap_or_default()
        };
        let cpu_list = match (args.cpu_list, file.cpu_list) {
            (Some(CpuList(cpus)), _) => cpus,
            (None, Some(CpuListValue::Text(text))) => {
                parse_cpu_list(&text).map_err(|e| ConfigError::Invalid(format!("cpu-list: {e}")))?
            }
            (None, Some(CpuListValue::Cpus(cpus))) => {
                // Same rules as the flag: render and re-parse rather than duplicate them.
                let text = cpus.iter().map(usize::to_string).collect::<Vec<_>>();
                parse_cpu_list(&text.join(","))
                    .map_err(|e| ConfigError::Invalid(format!("cpu-list: {e}")))?
            }
            (None, None) => Vec::new(),
        };
        let realms = if !args.realms.is_empty() {
            args.realms
        } else {
            file.realm
                .unwrap_or_default()
                .iter()
                .map(|text| RealmMapping::parse(text))
                .collect::<Result<_, _>>()
                .map_err(|e| ConfigError::Invalid(format!("realm: {e}")))?
        };
        let da = AuthSettings::default();
        let auth = AuthSettings {
            mode: args.auth.or(file.auth).unwrap_or(da.mode),
            credentials: args.credentials.or(file.credentials),
            realms,
            nonce_ttl_s: args.nonce_ttl.or(file.nonce_ttl).unwrap_or(da.nonce_ttl_s),
            max_failures: args
                .auth_max_failures
                .or(file.auth_max_failures)
                .unwrap_or(da.max_failures),
            failure_window_s: args
                .auth_failure_window
                .or(file.auth_failure_window)
                .unwrap_or(da.failure_window_s),
            cooldown_s: args
                .auth_cooldown
                .or(file.auth_cooldown)
                .unwrap_or(da.cooldown_s),
            algorithms: match (args.auth_algorithms, file.auth_algorithms) {
                (Some(list), _) => list,
                (None, Some(text)) => parse_algorithms(&text)
                    .map_err(|e| ConfigError::Invalid(format!("auth-algorithms: {e}")))?,
                (None, None) => da.algorithms,
            },
            nonce_key_file: args.nonce_key_file.or(file.nonce_key_file),
        };
        let config = Config {
            listen: args.listen.or(file.listen).unwrap_or(d.listen),
            domains: domains
                .into_iter()
                .map(|s| s.trim().to_ascii_lowercase())
                .collect(),
            default_expires_s: args
                .default_expires
                .or(file.default_expires)
                .unwrap_or(d.default_expires_s),
            min_expires_s: args
                .min_expires
                .or(file.min_expires)
                .unwrap_or(d.min_expires_s),
            max_expires_s: args
                .max_expires
                .or(file.max_expires)
                .unwrap_or(d.max_expires_s),
            max_contacts: args
                .max_contacts
                .or(file.max_contacts)
                .unwrap_or(d.max_contacts),
            max_contacts_per_request: args
                .max_contacts_per_request
                .or(file.max_contacts_per_request)
                .unwrap_or(d.max_contacts_per_request),
            max_binding_bytes: args
                .max_binding_bytes
                .or(file.max_binding_bytes)
                .unwrap_or(d.max_binding_bytes),
            over_limit: args.over_limit.or(file.over_limit).unwrap_or(d.over_limit),
            max_bindings: args
                .max_bindings
                .or(file.max_bindings)
                .unwrap_or(d.max_bindings),
            max_datagram_bytes: args
                .max_datagram
                .or(file.max_datagram)
                .unwrap_or(d.max_datagram_bytes),
            max_headers: args
                .max_headers
                .or(file.max_headers)
                .unwrap_or(d.max_headers),
            max_line_bytes: args.max_line.or(file.max_line).unwrap_or(d.max_line_bytes),
            retry_after_s: args
                .retry_after
                .or(file.retry_after)
                .unwrap_or(d.retry_after_s),
            log: args.log.or(file.log).unwrap_or(d.log),
            // A flag can only switch the stub on; the file may too.
            stateless_stub: args.stateless_stub || file.stateless_stub.unwrap_or(false),
            cores: args.cores.or(file.cores),
            cpu_list,
            handoff_queue: args
                .handoff_queue
                .or(file.handoff_queue)
                .unwrap_or(d.handoff_queue),
            recv_batch: args.recv_batch.or(file.recv_batch).unwrap_or(d.recv_batch),
            socket_buffer_bytes: d.socket_buffer_bytes,
            auth,
        };
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
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
        self.validate_auth()
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
            ..RegistrarConfig::default()
        }
    }
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

    /// The example file in README.md ("Configuration file") is valid and sets every key it shows.
    #[test]
    fn the_readme_example_file_parses() {
        let readme = include_str!("../README.md");
        let start = readme
            .find("    # corereg.toml")
            .expect("README has the example file");
        let example: String = readme[start..]
            .lines()
            .take_while(|l| l.starts_with("    "))
            .map(|l| format!("{}\n", &l[4..]))
            .collect();
        let file = FileConfig::parse(&example).expect("the README example parses");
        assert_eq!(file.recv_batch, Some(32));
        assert_eq!(file.handoff_queue, Some(1024));
        assert!(file.credentials.is_some());
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

/// The digest algorithms to challenge with, in order (one or two, distinct).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlgorithmList(pub Vec<Algorithm>);

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
