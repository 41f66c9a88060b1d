//! The SIP toolkit of corereg: the wire format (framing, header values, URIs, the response writer) and
//! digest authentication maths, shared by the registrar and the load generator.
//!
//! Everything on the request path borrows from the datagram: parsing a REGISTER allocates nothing.
//! - [`parse`]: framing (start line, header lines with folding, body) into a [`parse::Message`];
//! - [`header`]: typed, lazy parsers for header values (Contact, Via, CSeq, name-addr, params, ...);
//! - [`uri`]: SIP URI parsing, comparison (RFC 3261 §19.1.4) and AoR canonicalisation (§10.3 step 5);
//! - [`response`]: writes a response into a caller-owned buffer;
//! - [`digest`]: digest authentication (RFC 7616, RFC 8760): HA1 and response computation, `Authorization`
//!   and challenge parsing, constant-time verification;
//! - [`client`]: the client side: REGISTERs and binding queries written, responses and their
//!   challenges read;
//! - [`stateless`]: the stateless responder, the floor benchmarks measure against and a digest server
//!   for clients;
//! - [`scan`]: the byte-scanning kernels (SSE2, SWAR) behind the parsers and the response writer.
//!
//! # Unsafe code
//!
//! The crate denies `unsafe_code`. Two modules allow it: [`scan`], for the SSE2 intrinsics, and the part
//! of [`parse`] that keeps a [`parse::Message`]'s header slots uninitialised until written; besides them,
//! the volatile wipe of a secret in [`digest`].

#![deny(unsafe_code)]

pub(crate) mod charclass;
pub mod client;
pub mod digest;
pub mod header;
pub mod parse;
pub mod response;
#[allow(unsafe_code)]
pub mod scan;
pub mod stateless;
pub mod uri;
