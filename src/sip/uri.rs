//! SIP/SIPS URIs (RFC 3261 §19.1): parsing, comparison (§19.1.4) and AoR canonicalisation (§10.3 step 5).
//!
//! CONTRACT (used by the registrar; keep these names and meanings). Nothing here allocates.

use super::header::Params;
use thiserror::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Sip,
    Sips,
}

#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum UriError {
    #[error("not a sip: or sips: URI")]
    UnsupportedScheme,
    #[error("malformed URI")]
    Malformed,
    #[error("bad escape sequence")]
    BadEscape,
    #[error("URI too long")]
    TooLong,
}

/// Longest URI accepted anywhere (bytes). Canonical AoRs fit in an [`AorBuf`] of this size.
pub const MAX_URI_BYTES: usize = 512;

#[derive(Clone, Copy, Debug)]
pub struct SipUri<'a> {
    pub scheme: Scheme,
    /// Raw (still escaped) user part, without `:password`; None when the URI has no `@`.
    pub user: Option<&'a [u8]>,
    pub password: Option<&'a [u8]>,
    /// Host as written (IPv6 references keep their brackets).
    pub host: &'a [u8],
    pub port: Option<u16>,
    /// `;name=value` URI parameters (transport, user, ttl, method, maddr, lr, ...), starting at `;`.
    pub params: Params<'a>,
    /// `?h=v&...` headers part without the `?`, empty when absent.
    pub headers: &'a [u8],
}

/// Parse a sip:/sips: URI. Other schemes (tel:, http:, ...) -> UnsupportedScheme (the caller answers 416).
pub fn parse_uri(_text: &[u8]) -> Result<SipUri<'_>, UriError> {
    todo!()
}

/// URI equality per RFC 3261 §19.1.4: scheme, user and password case-sensitive after unescaping, host
/// case-insensitive, ports compared explicitly (absent != 5060), user/ttl/method/maddr/transport params must
/// match when present in either, other params only when present in both, headers must match.
pub fn uri_eq(_a: &SipUri<'_>, _b: &SipUri<'_>) -> bool {
    todo!()
}

/// Fixed buffer for a canonical AoR (no allocation on the hot path).
pub struct AorBuf {
    buf: [u8; MAX_URI_BYTES],
    len: usize,
}

impl Default for AorBuf {
    fn default() -> Self {
        AorBuf {
            buf: [0; MAX_URI_BYTES],
            len: 0,
        }
    }
}

impl AorBuf {
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Canonical AoR (§10.3 step 5): `sip:` or `sips:`, the unescaped user, `@`, the lower-cased host, `:port`
/// when present; every parameter and header removed. A URI without user yields `scheme:host[:port]`.
pub fn canonical_aor(_uri: &SipUri<'_>, _out: &mut AorBuf) -> Result<(), UriError> {
    let _ = (&_out.buf, _out.len);
    todo!()
}
