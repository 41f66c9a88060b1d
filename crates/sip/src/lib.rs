//! SIP wire format for corereg: a zero-copy parser, the response writer and digest authentication maths.
//!
//! Everything here borrows from the datagram: parsing a REGISTER allocates nothing.
//! - [`parse`]: framing (start line, header lines with folding, body) into a [`parse::Message`];
//! - [`header`]: typed, lazy parsers for header values (Contact, Via, CSeq, name-addr, params, ...);
//! - [`uri`]: SIP URI parsing, comparison (RFC 3261 §19.1.4) and AoR canonicalisation (§10.3 step 5);
//! - [`response`]: writes a response into a caller-owned buffer;
//! - [`digest`]: digest authentication (RFC 7616, RFC 8760): HA1 and response computation, `Authorization`
//!   parsing and constant-time verification;
//! - [`simd`]: the request path's SSE2/SWAR constants, kept out of the constant pool.

pub(crate) mod charclass;
pub mod digest;
pub mod header;
pub mod parse;
pub mod response;
pub mod simd;
pub mod uri;
