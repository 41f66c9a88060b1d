//! Flags and TOML configuration.
//!
//! Every setting exists both as a command-line flag ([`Args`]) and as a kebab-case key in the TOML file given by
//! `--config FILE` ([`FileConfig`]). Precedence: command line, then file, then the defaults below. The merged,
//! validated result is a [`Config`]; [`Config::registrar_config`] hands the core its part.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Deserialize;
use thiserror::Error;

use crate::registrar::{OverLimitPolicy, RegistrarConfig};
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
    pub const OVER_LIMIT: OverLimitPolicy = OverLimitPolicy::Reject503;
    pub const MAX_BINDINGS: usize = 1_000_000;
    pub const MAX_DATAGRAM_BYTES: usize = 8192;
    pub const MAX_HEADERS: usize = 64;
    pub const MAX_LINE_BYTES: usize = 2048;
    pub const RETRY_AFTER_S: u32 = 5;
    pub const LOG: &str = "info";
    /// Kernel socket buffers: large enough to absorb a burst of registrations while the shard is busy.
    pub const SOCKET_BUFFER_BYTES: usize = 4 << 20;
}

/// Largest UDP payload that can exist (IPv4: 65535 - 20 - 8); a larger `--max-datagram` would be meaningless.
const MAX_UDP_PAYLOAD_BYTES: usize = 65_507;

/// Command-line flags. Every field is optional so that the merge can tell "not given" from "given the default".
#[derive(Debug, Default, Parser)]
#[command(name = "corereg", version, about = "Carrier-grade SIP registrar (UDP)")]
pub struct Args {
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

    /// CPUs to pin shards to, e.g. "2"; today one shard runs, pinned to the first CPU listed (thread-per-core
    /// with one shard per listed CPU comes next). Not given: the shard is not pinned.
    #[arg(long, value_name = "CPUS", value_delimiter = ',')]
    pub cpu_list: Vec<usize>,
}

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
    pub over_limit: Option<OverLimitPolicy>,
    pub max_bindings: Option<usize>,
    pub max_datagram: Option<usize>,
    pub max_headers: Option<usize>,
    pub max_line: Option<usize>,
    pub retry_after: Option<u32>,
    pub log: Option<String>,
    pub stateless_stub: Option<bool>,
    pub cpu_list: Option<Vec<usize>>,
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
    pub over_limit: OverLimitPolicy,
    pub max_bindings: usize,
    pub max_datagram_bytes: usize,
    pub max_headers: usize,
    pub max_line_bytes: usize,
    pub retry_after_s: u32,
    pub log: String,
    pub stateless_stub: bool,
    pub cpu_list: Vec<usize>,
    pub socket_buffer_bytes: usize,
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

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: defaults::LISTEN,
            domains: Vec::new(),
            default_expires_s: defaults::DEFAULT_EXPIRES_S,
            min_expires_s: defaults::MIN_EXPIRES_S,
            max_expires_s: defaults::MAX_EXPIRES_S,
            max_contacts: defaults::MAX_CONTACTS,
            over_limit: defaults::OVER_LIMIT,
            max_bindings: defaults::MAX_BINDINGS,
            max_datagram_bytes: defaults::MAX_DATAGRAM_BYTES,
            max_headers: defaults::MAX_HEADERS,
            max_line_bytes: defaults::MAX_LINE_BYTES,
            retry_after_s: defaults::RETRY_AFTER_S,
            log: defaults::LOG.to_string(),
            stateless_stub: false,
            cpu_list: Vec::new(),
            socket_buffer_bytes: defaults::SOCKET_BUFFER_BYTES,
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
        let cpu_list = if !args.cpu_list.is_empty() {
            args.cpu_list
        } else {
            file.cpu_list.unwrap_or_default()
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
            cpu_list,
            socket_buffer_bytes: d.socket_buffer_bytes,
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
            ("--max-bindings", self.max_bindings),
            ("--max-datagram", self.max_datagram_bytes),
            ("--max-headers", self.max_headers),
            ("--max-line", self.max_line_bytes),
        ] {
            if value == 0 {
                return invalid(format!("{name} must be > 0"));
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
        if self.cpu_list.len() > 1 {
            // Until thread-per-core lands, several CPUs would silently be ignored: refuse instead.
            return invalid(format!(
                "--cpu-list: one shard runs today, give at most one CPU (got {:?})",
                self.cpu_list
            ));
        }
        Ok(())
    }

    pub fn parse_limits(&self) -> ParseLimits {
        ParseLimits {
            max_message_bytes: self.max_datagram_bytes,
            max_headers: self.max_headers,
            max_line_bytes: self.max_line_bytes,
        }
    }

    pub fn registrar_config(&self) -> RegistrarConfig {
        RegistrarConfig {
            domains: self.domains.clone(),
            default_expires_s: self.default_expires_s,
            min_expires_s: self.min_expires_s,
            max_expires_s: self.max_expires_s,
            max_contacts_per_aor: self.max_contacts,
            over_limit: self.over_limit,
            max_bindings: self.max_bindings,
            retry_after_s: self.retry_after_s,
            parse: self.parse_limits(),
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
            &["--cpu-list", "0,1"][..],
        ] {
            assert!(
                Config::merge(args(argv), FileConfig::default()).is_err(),
                "{argv:?} should be refused"
            );
        }
    }
}
