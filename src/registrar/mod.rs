//! The registrar: a pure, synchronous RFC 3261 §10.3 state machine.
//!
//! CONTRACT (used by the shell; keep these names and meanings):
//! - `Registrar::new(RegistrarConfig, now)`; `handle(datagram, source, now, out) -> Outcome` writes the
//!   response (if any) into `out` (cleared first) and returns what happened; no I/O, no clock, no threads.
//! - `next_timeout()` is the Unix second at which `handle_timeout` must next be called (None: nothing armed);
//!   `handle_timeout(now)` expires due bindings in bounded batches and returns true when more are due
//!   (call again after yielding).
//! - `Now` is wall-clock time as milliseconds since the Unix epoch, supplied by the caller (tests use a fake).

pub mod bindings;
pub mod wheel;

use std::net::SocketAddr;

use crate::sip::parse::ParseLimits;

/// Wall-clock time supplied by the shell: milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Now {
    pub unix_ms: u64,
}

impl Now {
    pub fn from_secs(unix_s: u64) -> Self {
        Now { unix_ms: unix_s * 1000 }
    }
    pub fn unix_s(self) -> u64 {
        self.unix_ms / 1000
    }
}

/// What to do when a REGISTER would take an AoR over `max_contacts_per_aor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OverLimitPolicy {
    /// 403 Forbidden (nothing changes).
    Reject403,
    /// 503 Service Unavailable with Retry-After (nothing changes).
    Reject503,
    /// Remove the bindings that expire soonest to make room (Kamailio's/OpenSIPS' "overwrite oldest").
    EvictOldest,
}

#[derive(Clone, Debug)]
pub struct RegistrarConfig {
    /// Domains served (lower-case); empty = every domain (§10.3 step 1).
    pub domains: Vec<String>,
    pub default_expires_s: u32,
    pub min_expires_s: u32,
    pub max_expires_s: u32,
    pub max_contacts_per_aor: usize,
    pub over_limit: OverLimitPolicy,
    /// Bindings this registrar (shard) may hold in all; over it new bindings get 503.
    pub max_bindings: usize,
    /// Seconds sent in Retry-After with 503s.
    pub retry_after_s: u32,
    pub parse: ParseLimits,
    /// Value of the Server header (empty: none).
    pub server_name: String,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            domains: Vec::new(),
            default_expires_s: 3600,
            min_expires_s: 60,
            max_expires_s: 86400,
            max_contacts_per_aor: 10,
            over_limit: OverLimitPolicy::Reject503,
            max_bindings: 1_000_000,
            retry_after_s: 5,
            parse: ParseLimits::default(),
            server_name: concat!("corereg/", env!("CARGO_PKG_VERSION")).to_string(),
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
}

/// Counters (per registrar / shard).
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub requests: u64,
    pub registers_ok: u64,
    pub replies_4xx: u64,
    pub replies_5xx: u64,
    pub dropped: u64,
    pub expired: u64,
}

pub struct Registrar {
    _p: (),
}

impl Registrar {
    pub fn new(_config: RegistrarConfig, _now: Now) -> Self {
        todo!()
    }

    #[must_use]
    pub fn handle(&mut self, _datagram: &[u8], _source: SocketAddr, _now: Now, out: &mut Vec<u8>) -> Outcome {
        out.clear();
        todo!()
    }

    pub fn next_timeout(&self) -> Option<u64> {
        todo!()
    }

    #[must_use]
    pub fn handle_timeout(&mut self, _now: Now) -> bool {
        todo!()
    }

    pub fn stats(&self) -> &Stats {
        todo!()
    }

    /// Number of live bindings.
    pub fn binding_count(&self) -> usize {
        todo!()
    }
}
