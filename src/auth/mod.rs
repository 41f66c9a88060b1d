//! Digest authentication (RFC 7616).

pub mod credentials;
pub mod digest;
pub mod guard;
pub mod nonce;
pub mod replay;
