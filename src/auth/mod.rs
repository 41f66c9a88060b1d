//! Digest authentication (RFC 7616).

pub mod digest;
pub mod nonce;
pub mod replay;
