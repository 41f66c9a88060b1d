//! SIP wire format: a zero-copy parser and a response writer.
//!
//! Everything here borrows from the datagram: parsing a REGISTER allocates nothing.
//! - [`charclass`]: the grammar's byte classes, as bits of one table;
//! - [`parse`]: framing (start line, header lines with folding, body) into a [`parse::Message`];
//! - [`header`]: typed, lazy parsers for header values (Contact, Via, CSeq, name-addr, params, ...);
//! - [`uri`]: SIP URI parsing, comparison (RFC 3261 §19.1.4) and AoR canonicalisation (§10.3 step 5);
//! - [`response`]: writes a response into a caller-owned buffer;
//! - [`simd`]: the request path's SSE2/SWAR constants, kept out of the constant pool.

pub(crate) mod charclass;
pub mod header;
pub mod parse;
pub mod response;
pub(crate) mod simd;
pub mod uri;
