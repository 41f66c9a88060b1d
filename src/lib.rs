//! corereg: a carrier-grade SIP registrar.
//!
//! The crate is split in a pure, synchronous core and a thin I/O shell:
//! - [`sip`]: zero-copy SIP message parsing (borrowed slices) and the response writer;
//! - [`registrar`]: the RFC 3261 §10.3 state machine, bindings and the expiry wheel (no I/O, no clock);
//! - [`auth`]: digest authentication (RFC 7616) pieces: credentials, nonces, response verification;
//! - [`shard`]: the glommio UDP shell that feeds datagrams to the core;
//! - [`config`]: flags and TOML configuration;
//! - [`events`]: the event hub, the change stream of every shard merged for subscribers;
//! - [`registrants`]: the accounts corereg registers upstream (the shell of `corereg-registrant`).
//!
//! # Unsafe code
//!
//! The crate denies `unsafe_code`; one module allows it, the registrar's read-prefetch hint (an x86_64
//! intrinsic). Raw socket I/O lives in the `corereg-udp` crate, byte scanning in `corereg-sip`'s `scan`.

#![deny(unsafe_code)]

pub mod api;
pub mod auth;
pub mod config;
pub mod events;
pub mod journal;
pub mod registrants;
pub mod registrar;
pub mod shard;

/// The SIP toolkit ([`corereg_sip`]): parsing, URIs, the response writer, digest maths.
pub use corereg_sip as sip;
