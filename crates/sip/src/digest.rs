//! Digest authentication maths (RFC 7616, RFC 8760 for SIP): the hashes, HA1 and `response`, the
//! parsers of `Authorization` credentials and of `WWW-Authenticate` / `Proxy-Authenticate` challenges, and
//! constant-time verification.
//!
//! A server parses credentials with [`parse_authorization`] and checks them with [`verify`] against the
//! user's [`Ha1`]; it writes its challenges' quoted strings with [`push_quoted_content`]. A client parses
//! challenges with [`Challenge::parse`] (or [`Challenge::pick_strongest`] among several), keeps
//! [`Ha1::from_password`] and [`ha2`] for the challenge, and computes each request's `response` with
//! [`response_from_ha2`] and the nonce count [`nc_hex`].
//!
//! Everything here is pure and allocation-free on the verify path: the parser returns slices borrowed
//! from the header value, hashes are computed into fixed arrays, and the final comparison is
//! constant-time (`subtle`) so the time taken does not reveal how many leading bytes of a guessed
//! response were right.
//!
//! Only `qop=auth` and the plain (non `-sess`) algorithms are supported: they are what SIP user agents
//! implement (RFC 8760 adds SHA-256 and SHA-512/256 to SIP; SHA-512/256 is left for later).

use core::fmt;

use md5::Md5;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

/// Longest `Authorization` header value we parse. Real ones are ~300 bytes; anything much larger is
/// an attack or a bug, and bounding it bounds the work done per request.
pub const MAX_HEADER_LEN: usize = 4096;
/// Longest single parameter value (quoted content or token), in bytes.
pub const MAX_VALUE_LEN: usize = 512;
/// Most parameters accepted in one header value (known and unknown together).
pub const MAX_PARAMS: usize = 32;
/// Length of the longest hex digest we produce (SHA-256: 32 bytes = 64 hex digits).
pub const MAX_HEX_LEN: usize = 64;

/// Hash algorithm named in a challenge or in credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `MD5` (RFC 2617; still what most deployed phones use).
    Md5,
    /// `SHA-256` (RFC 7616, RFC 8760).
    Sha256,
}

impl Algorithm {
    /// Every supported algorithm, in the order challenges are offered (strongest first, RFC 7616 §3.7).
    pub const ALL: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Md5];

    /// Parses the `algorithm=` token, case-insensitively. `-sess` variants are not supported.
    #[must_use]
    pub fn from_token(token: &[u8]) -> Option<Self> {
        if token.eq_ignore_ascii_case(b"MD5") {
            Some(Self::Md5)
        } else if token.eq_ignore_ascii_case(b"SHA-256") {
            Some(Self::Sha256)
        } else {
            None
        }
    }

    /// The token as written in challenges.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Sha256 => "SHA-256",
        }
    }

    /// Rank among the supported algorithms, higher for a stronger one.
    const fn strength(self) -> u8 {
        match self {
            Self::Md5 => 0,
            Self::Sha256 => 1,
        }
    }

    /// Raw digest length in bytes.
    #[must_use]
    pub const fn digest_len(self) -> usize {
        match self {
            Self::Md5 => 16,
            Self::Sha256 => 32,
        }
    }

    /// Hex digest length in characters.
    #[must_use]
    pub const fn hex_len(self) -> usize {
        self.digest_len() * 2
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One running hash of either algorithm; an enum rather than `dyn` so it lives on the stack.
#[derive(Clone)]
enum Hasher {
    Md5(Md5),
    Sha256(Sha256),
}

impl Hasher {
    fn new(alg: Algorithm) -> Self {
        match alg {
            Algorithm::Md5 => Self::Md5(Md5::new()),
            Algorithm::Sha256 => Self::Sha256(Sha256::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Self::Md5(h) => h.update(data),
            Self::Sha256(h) => h.update(data),
        }
    }

    /// Feeds `parts` joined by `:`, the separator every digest formula uses.
    fn update_joined(&mut self, parts: &[&[u8]]) {
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                self.update(b":");
            }
            self.update(part);
        }
    }

    /// Returns the raw digest in the first `alg.digest_len()` bytes of a 32-byte array.
    fn finish(self) -> RawDigest {
        let mut raw = RawDigest {
            bytes: [0; 32],
            len: 0,
        };
        match self {
            Self::Md5(h) => {
                raw.bytes[..16].copy_from_slice(&h.finalize());
                raw.len = 16;
            }
            Self::Sha256(h) => {
                raw.bytes.copy_from_slice(&h.finalize());
                raw.len = 32;
            }
        }
        raw
    }
}

#[derive(Clone, Copy)]
struct RawDigest {
    bytes: [u8; 32],
    len: u8,
}

impl RawDigest {
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    fn to_hex(self) -> HexDigest {
        let mut hex = HexDigest {
            bytes: [0; MAX_HEX_LEN],
            len: 0,
        };
        let n = hex_encode(self.as_bytes(), &mut hex.bytes);
        // n <= 64 by construction (raw digests are at most 32 bytes).
        hex.len = n as u8;
        hex
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Lower-case hex of `raw` into `out`; returns the number of characters written.
fn hex_encode(raw: &[u8], out: &mut [u8]) -> usize {
    let mut n = 0;
    for (byte, pair) in raw.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = HEX_DIGITS[usize::from(byte >> 4)];
        pair[1] = HEX_DIGITS[usize::from(byte & 0x0f)];
        n += 2;
    }
    n
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes hex (either case) into `out`; `None` unless `hex` is exactly `2 * out.len()` hex digits.
fn hex_decode(hex: &[u8], out: &mut [u8]) -> Option<()> {
    if hex.len() != out.len() * 2 {
        return None;
    }
    for (pair, byte) in hex.chunks_exact(2).zip(out.iter_mut()) {
        *byte = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
    }
    Some(())
}

/// A lower-case hex digest (an `H(...)` value: HA1, HA2 or a `response`), stored inline.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HexDigest {
    bytes: [u8; MAX_HEX_LEN],
    len: u8,
}

impl HexDigest {
    /// The hex characters (32 for MD5, 64 for SHA-256).
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The hex characters as `&str` (always ASCII).
    #[must_use]
    pub fn as_str(&self) -> &str {
        // Only HEX_DIGITS are ever written, so this cannot fail; fall back to "" rather than panic.
        core::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

impl fmt::Debug for HexDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only responses and HA2 live in this type (HA1 has its own, redacted one): safe to print.
        f.write_str(self.as_str())
    }
}

/// `HA1 = H(username:realm:password)` in lower-case hex: a password equivalent, hence a secret.
///
/// Its `Debug` output is redacted and its bytes are overwritten on drop (best effort: copies made
/// by moves are not tracked).
// No PartialEq on purpose: comparisons of secrets must go through `subtle`.
#[derive(Clone)]
pub struct Ha1 {
    alg: Algorithm,
    hex: [u8; MAX_HEX_LEN],
}

impl Ha1 {
    /// Derives HA1 from a password.
    #[must_use]
    pub fn from_password(alg: Algorithm, username: &[u8], realm: &[u8], password: &[u8]) -> Self {
        let mut h = Hasher::new(alg);
        h.update_joined(&[username, realm, password]);
        let hex = h.finish().to_hex();
        Self {
            alg,
            hex: hex.bytes,
        }
    }

    /// Parses a stored hex HA1 (either case); `None` unless it is exactly `alg.hex_len()` hex digits.
    #[must_use]
    pub fn from_hex(alg: Algorithm, hex: &[u8]) -> Option<Self> {
        if hex.len() != alg.hex_len() || !hex.iter().all(|c| hex_value(*c).is_some()) {
            return None;
        }
        let mut out = [0u8; MAX_HEX_LEN];
        for (o, c) in out.iter_mut().zip(hex) {
            *o = c.to_ascii_lowercase();
        }
        Some(Self { alg, hex: out })
    }

    /// The algorithm this HA1 was computed with.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The lower-case hex characters. Handle with care: this is a password equivalent.
    #[must_use]
    pub fn expose_hex(&self) -> &[u8] {
        &self.hex[..self.alg.hex_len()]
    }
}

impl fmt::Debug for Ha1 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ha1({}, <redacted>)", self.alg)
    }
}

impl Drop for Ha1 {
    fn drop(&mut self) {
        wipe::zero(&mut self.hex);
    }
}

/// Overwriting a secret in a way the compiler keeps.
#[allow(unsafe_code)]
mod wipe {
    /// Sets every byte of `bytes` to 0 with volatile stores, which the compiler cannot drop as dead.
    pub(super) fn zero(bytes: &mut [u8]) {
        for b in bytes.iter_mut() {
            // SAFETY: `b` is a valid, aligned, exclusive reference to a u8.
            unsafe { core::ptr::write_volatile(b, 0) };
        }
    }
}

/// `HA1` as a lower-case hex `String`: the function behind `corereg ha1 <user> <realm> <password>`.
#[must_use]
pub fn ha1_hex(alg: Algorithm, username: &str, realm: &str, password: &str) -> String {
    let ha1 = Ha1::from_password(
        alg,
        username.as_bytes(),
        realm.as_bytes(),
        password.as_bytes(),
    );
    String::from_utf8_lossy(ha1.expose_hex()).into_owned()
}

fn compute_response(
    alg: Algorithm,
    ha1_hex: &[u8],
    method: &[u8],
    uri: &[u8],
    nonce: &[u8],
    qop_auth: Option<(&[u8], &[u8])>,
) -> RawDigest {
    response_digest(alg, ha1_hex, nonce, qop_auth, &ha2(alg, method, uri))
}

/// `response` from HA1 and HA2 (raw).
fn response_digest(
    alg: Algorithm,
    ha1_hex: &[u8],
    nonce: &[u8],
    qop_auth: Option<(&[u8], &[u8])>,
    ha2: &HexDigest,
) -> RawDigest {
    let mut h = Hasher::new(alg);
    match qop_auth {
        // response = H(HA1:nonce:nc:cnonce:qop:HA2)  (RFC 7616 §3.4.1)
        Some((nc, cnonce)) => {
            h.update_joined(&[ha1_hex, nonce, nc, cnonce, b"auth", ha2.as_bytes()])
        }
        // response = H(HA1:nonce:HA2)  (RFC 2069 compatibility, no qop)
        None => h.update_joined(&[ha1_hex, nonce, ha2.as_bytes()]),
    }
    h.finish()
}

/// `HA2 = H(method:uri)` in lower-case hex, for `qop=auth` and for the RFC 2069 form (`auth-int` would
/// add `H(body)`; not supported). The same for every request a client sends to one Request-URI.
#[must_use]
pub fn ha2(alg: Algorithm, method: &[u8], uri: &[u8]) -> HexDigest {
    let mut h = Hasher::new(alg);
    h.update_joined(&[method, uri]);
    h.finish().to_hex()
}

/// The `response=` value from HA1 (its hex, as [`Ha1::expose_hex`] gives it) and [`ha2`]: what a client
/// computes for each request that answers a challenge.
///
/// `qop_auth` is `Some((nc, cnonce))` for `qop=auth`, `nc` the 8 hex digits of the nonce count
/// ([`nc_hex`]); `None` for the RFC 2069 form, for a challenge that offered no qop.
#[must_use]
pub fn response_from_ha2(
    alg: Algorithm,
    ha1_hex: &[u8],
    nonce: &[u8],
    qop_auth: Option<(&[u8], &[u8])>,
    ha2: &HexDigest,
) -> HexDigest {
    response_digest(alg, ha1_hex, nonce, qop_auth, ha2).to_hex()
}

/// A nonce count as the 8 lower-case hex digits of the `nc` parameter (RFC 7616 §3.4).
#[must_use]
pub fn nc_hex(nc: u32) -> [u8; 8] {
    let mut out = [0u8; 8];
    hex_encode(&nc.to_be_bytes(), &mut out);
    out
}

/// The expected `response=` value, in lower-case hex.
///
/// `qop` is `Some(b"auth")` for RFC 7616 clients (then `nc` and `cnonce` are used) or `None` for the
/// RFC 2069 form (then they are ignored). Any other qop yields `None`.
#[allow(clippy::too_many_arguments)] // mirrors the RFC formula's inputs one to one
#[must_use]
pub fn expected_response(
    alg: Algorithm,
    ha1_hex: &[u8],
    method: &[u8],
    uri: &[u8],
    nonce: &[u8],
    nc: &[u8],
    cnonce: &[u8],
    qop: Option<&[u8]>,
) -> Option<HexDigest> {
    let qop_auth = match qop {
        None => None,
        Some(q) if q.eq_ignore_ascii_case(b"auth") => Some((nc, cnonce)),
        Some(_) => return None,
    };
    Some(compute_response(alg, ha1_hex, method, uri, nonce, qop_auth).to_hex())
}

/// Why a header value could not be used as digest credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DigestParseError {
    #[error("header value longer than {MAX_HEADER_LEN} bytes")]
    TooLong,
    #[error("scheme is not Digest")]
    NotDigest,
    #[error("malformed parameter list at byte {0}")]
    Syntax(usize),
    #[error("unterminated quoted string")]
    Unterminated,
    #[error("parameter value longer than {MAX_VALUE_LEN} bytes")]
    ValueTooLong,
    #[error("more than {MAX_PARAMS} parameters")]
    TooManyParams,
    #[error("parameter {0} given twice")]
    Duplicate(&'static str),
    #[error("required parameter {0} missing")]
    Missing(&'static str),
    #[error("unsupported algorithm")]
    UnsupportedAlgorithm,
}

/// A parameter value as it appeared in the header: the content of a quoted string (escapes not yet
/// removed) or a token. Most values contain no escapes, so the raw slice is usually the value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Value<'a> {
    raw: &'a [u8],
    escaped: bool,
}

impl<'a> Value<'a> {
    /// The bytes between the quotes (or the token), escapes still in place.
    #[must_use]
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Whether the quoted string contained `\` escapes (then [`Value::raw`] is not the value).
    #[must_use]
    pub fn is_escaped(&self) -> bool {
        self.escaped
    }

    /// The value with escapes removed, borrowing `buf` only when there were escapes.
    #[inline]
    #[must_use]
    pub fn unescape<'b>(&self, buf: &'b mut [u8; MAX_VALUE_LEN]) -> &'b [u8]
    where
        'a: 'b,
    {
        if !self.escaped {
            return self.raw;
        }
        // raw.len() <= MAX_VALUE_LEN, so the zip never cuts the value short.
        let mut n = 0;
        for (slot, c) in buf.iter_mut().zip(self.unescaped_bytes()) {
            *slot = c;
            n += 1;
        }
        &buf[..n]
    }

    /// The value with escapes removed, as an owned vector.
    #[must_use]
    pub fn to_unescaped_vec(&self) -> Vec<u8> {
        if !self.escaped {
            return self.raw.to_vec();
        }
        self.unescaped_bytes().collect()
    }

    /// Whether the unescaped value equals `other`, without a buffer.
    #[inline]
    #[must_use]
    pub fn eq_unescaped(&self, other: &[u8]) -> bool {
        if !self.escaped {
            return self.raw == other;
        }
        self.unescaped_bytes().eq(other.iter().copied())
    }

    /// The bytes of the value, each `\x` pair as `x`.
    fn unescaped_bytes(&self) -> impl Iterator<Item = u8> + 'a {
        let mut iter = self.raw.iter();
        core::iter::from_fn(move || {
            let &c = iter.next()?;
            // The parser guarantees a byte follows every backslash; be defensive anyway.
            Some(if c == b'\\' {
                iter.next().copied().unwrap_or(c)
            } else {
                c
            })
        })
    }
}

impl fmt::Debug for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.raw))
    }
}

/// Parsed `Authorization: Digest ...` credentials, borrowing from the header value.
///
/// Unknown parameters are ignored (RFC 7616 §3.4: "MUST ignore"). `response` is a client proof,
/// not a secret, but `Debug` still leaves it out as it is useless in logs.
#[derive(Clone, Copy)]
pub struct DigestCredentials<'a> {
    pub username: Value<'a>,
    pub realm: Value<'a>,
    pub nonce: Value<'a>,
    pub uri: Value<'a>,
    pub response: Value<'a>,
    /// `MD5` when the client omitted it (RFC 7616 §3.4).
    pub algorithm: Algorithm,
    pub cnonce: Option<Value<'a>>,
    pub opaque: Option<Value<'a>>,
    pub qop: Option<Value<'a>>,
    /// The raw `nc` (8 hex digits when present); see [`DigestCredentials::nonce_count`].
    pub nc: Option<Value<'a>>,
}

impl fmt::Debug for DigestCredentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestCredentials")
            .field("username", &self.username)
            .field("realm", &self.realm)
            .field("nonce", &self.nonce)
            .field("uri", &self.uri)
            .field("algorithm", &self.algorithm)
            .field("qop", &self.qop)
            .field("nc", &self.nc)
            .finish_non_exhaustive()
    }
}

impl<'a> DigestCredentials<'a> {
    /// `nc` as a number: exactly 8 hex digits (RFC 7616 §3.4), else `None`.
    #[must_use]
    pub fn nonce_count(&self) -> Option<u32> {
        let nc = self.nc?;
        if nc.escaped || nc.raw.len() != 8 {
            return None;
        }
        let mut bytes = [0u8; 4];
        hex_decode(nc.raw, &mut bytes)?;
        Some(u32::from_be_bytes(bytes))
    }

    /// Whether `qop=auth` was given (the only qop we offer).
    #[inline]
    #[must_use]
    pub fn is_qop_auth(&self) -> bool {
        self.qop
            .is_some_and(|q| q.raw.eq_ignore_ascii_case(b"auth"))
    }
}

fn is_ws(c: u8) -> bool {
    // Header values may still carry folded lines (CRLF followed by whitespace).
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// RFC 3261 token characters.
fn is_token(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&c)
}

fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && is_ws(s[i]) {
        i += 1;
    }
    i
}

fn take_token(s: &[u8], start: usize) -> usize {
    let mut i = start;
    while i < s.len() && is_token(s[i]) {
        i += 1;
    }
    i
}

fn set<'a>(
    slot: &mut Option<Value<'a>>,
    name: &'static str,
    v: Value<'a>,
) -> Result<(), DigestParseError> {
    if slot.replace(v).is_some() {
        return Err(DigestParseError::Duplicate(name));
    }
    Ok(())
}

/// The auth-params of a `Digest` header value (RFC 7235 §2.1, RFC 3261 §25.1): `name=token` or
/// `name="quoted string"`, separated by commas, with linear whitespace around `=` and `,` and empty list
/// elements (`,,`) tolerated, as the RFC 7230 #rule allows.
struct AuthParams<'a> {
    s: &'a [u8],
    /// Where the next parameter (or the separators before it) starts.
    i: usize,
    /// Parameters read so far.
    count: usize,
}

impl<'a> AuthParams<'a> {
    /// The parameters of `value`, which must start with the `Digest` scheme (any case, after optional
    /// whitespace) followed by whitespace or the end.
    fn of_digest(value: &'a [u8]) -> Result<Self, DigestParseError> {
        if value.len() > MAX_HEADER_LEN {
            return Err(DigestParseError::TooLong);
        }
        let s = value;
        let i = skip_ws(s, 0);
        let scheme_end = take_token(s, i);
        if !s[i..scheme_end].eq_ignore_ascii_case(b"Digest") {
            return Err(DigestParseError::NotDigest);
        }
        // The scheme must be followed by whitespace (or be the whole value, then params are missing).
        if scheme_end < s.len() && !is_ws(s[scheme_end]) {
            return Err(DigestParseError::NotDigest);
        }
        Ok(AuthParams {
            s,
            i: scheme_end,
            count: 0,
        })
    }

    /// The next parameter's name and value; `Ok(None)` at the end of the value.
    #[inline]
    fn next_param(&mut self) -> Result<Option<(&'a [u8], Value<'a>)>, DigestParseError> {
        let s = self.s;
        let mut i = self.i;
        loop {
            i = skip_ws(s, i);
            if i >= s.len() {
                self.i = i;
                return Ok(None);
            }
            if s[i] != b',' {
                break;
            }
            i += 1;
        }
        self.count += 1;
        if self.count > MAX_PARAMS {
            return Err(DigestParseError::TooManyParams);
        }
        let name_start = i;
        let name_end = take_token(s, i);
        if name_end == name_start {
            return Err(DigestParseError::Syntax(i));
        }
        let name = &s[name_start..name_end];
        i = skip_ws(s, name_end);
        if i >= s.len() || s[i] != b'=' {
            return Err(DigestParseError::Syntax(i));
        }
        i = skip_ws(s, i + 1);
        let v = if i < s.len() && s[i] == b'"' {
            let start = i + 1;
            let mut j = start;
            let mut escaped = false;
            loop {
                match s.get(j) {
                    None => return Err(DigestParseError::Unterminated),
                    Some(b'"') => break,
                    Some(b'\\') => {
                        if j + 1 >= s.len() {
                            return Err(DigestParseError::Unterminated);
                        }
                        escaped = true;
                        j += 2;
                    }
                    Some(_) => j += 1,
                }
            }
            i = j + 1;
            Value {
                raw: &s[start..j],
                escaped,
            }
        } else {
            let end = take_token(s, i);
            if end == i {
                return Err(DigestParseError::Syntax(i));
            }
            let v = Value {
                raw: &s[i..end],
                escaped: false,
            };
            i = end;
            v
        };
        if v.raw.len() > MAX_VALUE_LEN {
            return Err(DigestParseError::ValueTooLong);
        }
        // After a parameter: end, or a comma (whitespace allowed before it).
        i = skip_ws(s, i);
        if i < s.len() {
            if s[i] != b',' {
                return Err(DigestParseError::Syntax(i));
            }
            i += 1;
        }
        self.i = i;
        Ok(Some((name, v)))
    }
}

/// Parses an `Authorization` (or `Proxy-Authorization`) header value with the Digest scheme.
///
/// Accepts quoted and token forms for every parameter, `\` escapes in quoted strings,
/// case-insensitive scheme and parameter names, and linear whitespace around `=` and `,`.
/// Does not allocate.
pub fn parse_authorization(value: &[u8]) -> Result<DigestCredentials<'_>, DigestParseError> {
    let mut params = AuthParams::of_digest(value)?;
    let (mut username, mut realm, mut nonce, mut uri, mut response) =
        (None, None, None, None, None);
    let (mut algorithm, mut cnonce, mut opaque, mut qop, mut nc) = (None, None, None, None, None);
    while let Some((name, v)) = params.next_param()? {
        let lname = |n: &[u8]| name.eq_ignore_ascii_case(n);
        if lname(b"username") {
            set(&mut username, "username", v)?;
        } else if lname(b"realm") {
            set(&mut realm, "realm", v)?;
        } else if lname(b"nonce") {
            set(&mut nonce, "nonce", v)?;
        } else if lname(b"uri") {
            set(&mut uri, "uri", v)?;
        } else if lname(b"response") {
            set(&mut response, "response", v)?;
        } else if lname(b"algorithm") {
            set(&mut algorithm, "algorithm", v)?;
        } else if lname(b"cnonce") {
            set(&mut cnonce, "cnonce", v)?;
        } else if lname(b"opaque") {
            set(&mut opaque, "opaque", v)?;
        } else if lname(b"qop") {
            set(&mut qop, "qop", v)?;
        } else if lname(b"nc") {
            set(&mut nc, "nc", v)?;
        }
        // Unknown parameters (userhash, auth-param extensions) are ignored.
    }

    let algorithm = algorithm_param(algorithm)?;
    Ok(DigestCredentials {
        username: username.ok_or(DigestParseError::Missing("username"))?,
        realm: realm.ok_or(DigestParseError::Missing("realm"))?,
        nonce: nonce.ok_or(DigestParseError::Missing("nonce"))?,
        uri: uri.ok_or(DigestParseError::Missing("uri"))?,
        response: response.ok_or(DigestParseError::Missing("response"))?,
        algorithm,
        cnonce,
        opaque,
        qop,
        nc,
    })
}

/// Checks the client's `response` against the one computed from `ha1` (constant-time compare).
///
/// Returns `false` (never panics) for anything malformed: an HA1 of another algorithm, a qop other
/// than `auth`, `qop=auth` without `nc`/`cnonce`, a response that is not hex of the right length.
#[must_use]
pub fn verify(ha1: &Ha1, creds: &DigestCredentials<'_>, method: &[u8]) -> bool {
    let alg = creds.algorithm;
    if ha1.algorithm() != alg {
        return false;
    }
    let mut claimed = [0u8; 32];
    let claimed = &mut claimed[..alg.digest_len()];
    if creds.response.escaped || hex_decode(creds.response.raw, claimed).is_none() {
        return false;
    }
    let qop_auth = match creds.qop {
        None => None,
        Some(_) if creds.is_qop_auth() => match (creds.nc, creds.cnonce) {
            (Some(nc), Some(cnonce)) => Some((nc, cnonce)),
            _ => return false,
        },
        Some(_) => return false,
    };
    let (uri, nonce) = (creds.uri, creds.nonce);
    let any_escaped = uri.escaped
        || nonce.escaped
        || qop_auth.is_some_and(|(nc, cnonce)| nc.escaped || cnonce.escaped);
    let expected = if any_escaped {
        // Values hashed are the unescaped ones. Escapes are rare (never in our nonces), so the
        // buffers are only paid for here.
        let mut bufs = [[0u8; MAX_VALUE_LEN]; 4];
        let [uri_buf, nonce_buf, nc_buf, cnonce_buf] = &mut bufs;
        let qop_auth =
            qop_auth.map(|(nc, cnonce)| (nc.unescape(nc_buf), cnonce.unescape(cnonce_buf)));
        compute_response(
            alg,
            ha1.expose_hex(),
            method,
            uri.unescape(uri_buf),
            nonce.unescape(nonce_buf),
            qop_auth,
        )
    } else {
        let qop_auth = qop_auth.map(|(nc, cnonce)| (nc.raw, cnonce.raw));
        compute_response(alg, ha1.expose_hex(), method, uri.raw, nonce.raw, qop_auth)
    };
    bool::from(expected.as_bytes().ct_eq(claimed))
}

/// One `Digest` challenge of a `WWW-Authenticate` or `Proxy-Authenticate` header value (RFC 7616 §3.3), as
/// a client keeps it: owned and unescaped, so that it outlives the datagram and answers many requests
/// (with the nonce count going up) until the server sends a new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Empty when the challenge names none.
    pub realm: Vec<u8>,
    pub nonce: Vec<u8>,
    pub opaque: Option<Vec<u8>>,
    /// `MD5` when the challenge names none (RFC 7616 §3.3).
    pub algorithm: Algorithm,
    /// Whether `auth` is among the offered qop values; without it the answer takes the RFC 2069 form.
    pub qop_auth: bool,
    /// `stale=true`: the credentials were right, only the nonce was old.
    pub stale: bool,
}

impl Challenge {
    /// Parses one challenge header value (`Digest realm="..", nonce="..", ...`), with the parameter
    /// syntax of [`parse_authorization`]. A nonce is required and a parameter may not come twice;
    /// unknown parameters (`domain`, `userhash`, extensions) are ignored.
    pub fn parse(value: &[u8]) -> Result<Challenge, DigestParseError> {
        let mut params = AuthParams::of_digest(value)?;
        let (mut realm, mut nonce, mut opaque, mut algorithm, mut qop, mut stale) =
            (None, None, None, None, None, None);
        while let Some((name, v)) = params.next_param()? {
            let lname = |n: &[u8]| name.eq_ignore_ascii_case(n);
            if lname(b"realm") {
                set(&mut realm, "realm", v)?;
            } else if lname(b"nonce") {
                set(&mut nonce, "nonce", v)?;
            } else if lname(b"opaque") {
                set(&mut opaque, "opaque", v)?;
            } else if lname(b"algorithm") {
                set(&mut algorithm, "algorithm", v)?;
            } else if lname(b"qop") {
                set(&mut qop, "qop", v)?;
            } else if lname(b"stale") {
                set(&mut stale, "stale", v)?;
            }
        }
        let algorithm = algorithm_param(algorithm)?;
        // `qop-options` is a quoted, comma-separated list: `qop="auth,auth-int"`.
        let qop_auth = qop.is_some_and(|q| {
            q.to_unescaped_vec()
                .split(|&c| c == b',')
                .any(|option| trim_ws(option).eq_ignore_ascii_case(b"auth"))
        });
        Ok(Challenge {
            realm: realm.map(|v| v.to_unescaped_vec()).unwrap_or_default(),
            nonce: nonce
                .ok_or(DigestParseError::Missing("nonce"))?
                .to_unescaped_vec(),
            opaque: opaque.map(|v| v.to_unescaped_vec()),
            algorithm,
            qop_auth,
            stale: stale.is_some_and(|v| v.raw.eq_ignore_ascii_case(b"true")),
        })
    }

    /// Among the challenges of a response (one a header value), the first of the strongest algorithm
    /// this crate supports (RFC 7616 §3.7: a server may offer several, the client picks the one it
    /// prefers). Values that do not parse are passed over.
    pub fn pick_strongest<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Option<Challenge> {
        values
            .into_iter()
            .filter_map(|v| Challenge::parse(v).ok())
            .reduce(|best, c| {
                if c.algorithm.strength() > best.algorithm.strength() {
                    c
                } else {
                    best
                }
            })
    }
}

/// The `algorithm` parameter's value: `MD5` when absent (RFC 7616 §3.3, §3.4).
fn algorithm_param(v: Option<Value<'_>>) -> Result<Algorithm, DigestParseError> {
    match v {
        None => Ok(Algorithm::Md5),
        Some(v) => Algorithm::from_token(v.raw).ok_or(DigestParseError::UnsupportedAlgorithm),
    }
}

/// `s` without leading and trailing whitespace (folded line breaks included).
fn trim_ws(s: &[u8]) -> &[u8] {
    let start = skip_ws(s, 0);
    let mut end = s.len();
    while end > start && is_ws(s[end - 1]) {
        end -= 1;
    }
    &s[start..end]
}

/// Appends `s` as the content of a quoted string, escaping `"` and `\` and dropping control
/// characters (which could otherwise end the header line).
pub fn push_quoted_content(out: &mut Vec<u8>, s: &[u8]) {
    quoted_content(s, |piece| out.extend_from_slice(piece));
}

/// `s` as the content of a quoted string, in pieces for `put` to append in order: the runs of `s` that
/// need nothing, `\"` and `\\` for the bytes to escape; control characters are dropped (they could
/// otherwise end the header line).
pub fn quoted_content(s: &[u8], mut put: impl FnMut(&[u8])) {
    let mut start = 0;
    for (i, &c) in s.iter().enumerate() {
        let escape = matches!(c, b'"' | b'\\');
        if escape || c < 0x20 || c == 0x7f {
            put(&s[start..i]);
            if escape {
                put(&[b'\\', c]);
            }
            start = i + 1;
        }
    }
    put(&s[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7616 §3.9.1.
    const USER: &str = "Mufasa";
    const PASS: &str = "Circle of Life";
    const REALM: &str = "http-auth@example.org";
    const NONCE: &[u8] = b"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
    const URI: &[u8] = b"/dir/index.html";
    const CNONCE: &[u8] = b"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
    const MD5_RESPONSE: &str = "8ca523f5e9506fed4657c9700eebdbec";
    const SHA256_RESPONSE: &str =
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1";

    fn rfc_response(alg: Algorithm) -> HexDigest {
        let ha1 = ha1_hex(alg, USER, REALM, PASS);
        expected_response(
            alg,
            ha1.as_bytes(),
            b"GET",
            URI,
            NONCE,
            b"00000001",
            CNONCE,
            Some(b"auth"),
        )
        .expect("qop=auth is supported")
    }

    #[test]
    fn rfc7616_md5_example() {
        assert_eq!(rfc_response(Algorithm::Md5).as_str(), MD5_RESPONSE);
    }

    #[test]
    fn rfc7616_sha256_example() {
        assert_eq!(rfc_response(Algorithm::Sha256).as_str(), SHA256_RESPONSE);
    }

    #[test]
    fn ha1_known_values() {
        // RFC 2617 §3.5's classic example realm, cross-checked with `printf ... | md5sum`.
        assert_eq!(
            ha1_hex(
                Algorithm::Md5,
                "Mufasa",
                "testrealm@host.com",
                "Circle Of Life"
            ),
            "939e7578ed9e3c518a452acee763bce9"
        );
        assert_eq!(ha1_hex(Algorithm::Sha256, USER, REALM, PASS).len(), 64);
    }

    fn rfc_header(alg: &str, response: &str) -> String {
        format!(
            "Digest username=\"Mufasa\",\n  realm=\"http-auth@example.org\",\n  uri=\"/dir/index.html\",\n  \
             algorithm={alg},\n  nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\",\n  nc=00000001,\n  \
             cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\",\n  qop=auth,\n  \
             response=\"{response}\",\n  opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
        )
    }

    #[test]
    fn parse_and_verify_rfc_headers() {
        for (alg, name, resp) in [
            (Algorithm::Md5, "MD5", MD5_RESPONSE),
            (Algorithm::Sha256, "SHA-256", SHA256_RESPONSE),
        ] {
            let h = rfc_header(name, resp);
            let c = parse_authorization(h.as_bytes()).expect("parses");
            assert_eq!(c.username.raw(), b"Mufasa");
            assert_eq!(c.realm.raw(), REALM.as_bytes());
            assert_eq!(c.nonce.raw(), NONCE);
            assert_eq!(c.uri.raw(), URI);
            assert_eq!(c.algorithm, alg);
            assert_eq!(c.nonce_count(), Some(1));
            assert!(c.is_qop_auth());
            assert_eq!(c.opaque.map(|o| o.raw().len()), Some(44));
            let ha1 = Ha1::from_password(alg, USER.as_bytes(), REALM.as_bytes(), PASS.as_bytes());
            assert!(verify(&ha1, &c, b"GET"));
            assert!(!verify(&ha1, &c, b"POST"));
            let wrong =
                Ha1::from_password(alg, USER.as_bytes(), REALM.as_bytes(), b"circle of life");
            assert!(!verify(&wrong, &c, b"GET"));
        }
    }

    #[test]
    fn verify_accepts_uppercase_hex_and_rejects_bad_lengths() {
        let upper = rfc_header("MD5", &MD5_RESPONSE.to_ascii_uppercase());
        let c = parse_authorization(upper.as_bytes()).unwrap();
        let ha1 = Ha1::from_password(
            Algorithm::Md5,
            USER.as_bytes(),
            REALM.as_bytes(),
            PASS.as_bytes(),
        );
        assert!(verify(&ha1, &c, b"GET"));
        let short = rfc_header("MD5", &MD5_RESPONSE[..31]);
        assert!(!verify(
            &ha1,
            &parse_authorization(short.as_bytes()).unwrap(),
            b"GET"
        ));
        let nothex = rfc_header("MD5", &MD5_RESPONSE.replace('8', "g"));
        assert!(!verify(
            &ha1,
            &parse_authorization(nothex.as_bytes()).unwrap(),
            b"GET"
        ));
        // HA1 of the other algorithm never verifies.
        let sha = Ha1::from_password(
            Algorithm::Sha256,
            USER.as_bytes(),
            REALM.as_bytes(),
            PASS.as_bytes(),
        );
        assert!(!verify(&sha, &c, b"GET"));
    }

    #[test]
    fn rfc2069_form_without_qop() {
        let ha1 = Ha1::from_password(Algorithm::Md5, b"u", b"r", b"p");
        let resp = expected_response(
            Algorithm::Md5,
            ha1.expose_hex(),
            b"REGISTER",
            b"sip:r",
            b"n",
            b"",
            b"",
            None,
        )
        .unwrap();
        let h = format!(
            "Digest username=u, realm=r, nonce=n, uri=\"sip:r\", response=\"{}\"",
            resp.as_str()
        );
        let c = parse_authorization(h.as_bytes()).unwrap();
        assert_eq!(c.algorithm, Algorithm::Md5);
        assert!(verify(&ha1, &c, b"REGISTER"));
        assert!(expected_response(
            Algorithm::Md5,
            b"",
            b"",
            b"",
            b"",
            b"",
            b"",
            Some(b"auth-int")
        )
        .is_none());
    }

    #[test]
    fn escapes_are_removed_before_hashing() {
        let ha1 = Ha1::from_password(Algorithm::Md5, b"a\"b", b"r", b"p");
        let resp = expected_response(
            Algorithm::Md5,
            ha1.expose_hex(),
            b"REGISTER",
            b"sip:r",
            b"n",
            b"00000001",
            b"c\\d",
            Some(b"auth"),
        )
        .unwrap();
        let h = format!(
            "DIGEST USERNAME=\"a\\\"b\" , Realm = \"r\",nonce=\"n\",uri=\"sip:r\",QOP=auth,NC=00000001,\
             cnonce=\"c\\\\d\",response=\"{}\"",
            resp.as_str()
        );
        let c = parse_authorization(h.as_bytes()).unwrap();
        assert!(c.username.is_escaped());
        let mut buf = [0u8; MAX_VALUE_LEN];
        assert_eq!(c.username.unescape(&mut buf), b"a\"b");
        assert!(c.username.eq_unescaped(b"a\"b"));
        assert!(!c.username.eq_unescaped(b"a\\\"b"));
        assert!(!c.username.eq_unescaped(b"a\""));
        assert!(!c.username.eq_unescaped(b"a\"bc"));
        assert!(c.realm.eq_unescaped(b"r") && !c.realm.eq_unescaped(b"R"));
        assert!(verify(&ha1, &c, b"REGISTER"));
    }

    #[test]
    fn parse_errors() {
        use DigestParseError as E;
        let p = |s: &str| parse_authorization(s.as_bytes()).err();
        assert_eq!(p("Basic dXNlcjpwYXNz"), Some(E::NotDigest));
        assert_eq!(p("Digestusername=\"a\""), Some(E::NotDigest));
        assert_eq!(p(""), Some(E::NotDigest));
        assert_eq!(p("Digest"), Some(E::Missing("username")));
        assert_eq!(p("Digest username=\"a"), Some(E::Unterminated));
        assert_eq!(p("Digest username=\"a\\"), Some(E::Unterminated));
        assert_eq!(p("Digest username"), Some(E::Syntax(15)));
        assert_eq!(p("Digest username="), Some(E::Syntax(16)));
        assert_eq!(p("Digest username=\"a\" realm=\"b\""), Some(E::Syntax(20)));
        assert_eq!(
            p("Digest username=a, username=b"),
            Some(E::Duplicate("username"))
        );
        assert_eq!(
            p("Digest username=a,realm=r,nonce=n,uri=u,response=x,algorithm=SHA-512"),
            Some(E::UnsupportedAlgorithm)
        );
        assert_eq!(
            p("Digest realm=r,nonce=n,uri=u,response=x"),
            Some(E::Missing("username"))
        );
        let long = format!("Digest username=\"{}\"", "a".repeat(MAX_VALUE_LEN + 1));
        assert_eq!(p(&long), Some(E::ValueTooLong));
        let huge = format!("Digest username=\"{}\"", "a".repeat(MAX_HEADER_LEN));
        assert_eq!(p(&huge), Some(E::TooLong));
        let many = format!("Digest {}", "x=1,".repeat(MAX_PARAMS + 1));
        assert_eq!(p(&many), Some(E::TooManyParams));
    }

    #[test]
    fn tolerant_forms() {
        let c = parse_authorization(
            b"  digest  ,username=a ,, realm=r,nonce=n,uri=u,response=x,future=\"ignored\",",
        )
        .unwrap();
        assert_eq!(c.username.raw(), b"a");
        assert_eq!(c.nc, None);
        assert_eq!(c.nonce_count(), None);
        let c =
            parse_authorization(b"Digest username=a,realm=r,nonce=n,uri=u,response=x,nc=0000000g")
                .unwrap();
        assert_eq!(c.nonce_count(), None);
        let c =
            parse_authorization(b"Digest username=a,realm=r,nonce=n,uri=u,response=x,nc=FFFFFFFF")
                .unwrap();
        assert_eq!(c.nonce_count(), Some(u32::MAX));
    }

    #[test]
    fn secrets_are_redacted() {
        let ha1 = Ha1::from_password(Algorithm::Md5, b"u", b"r", b"p");
        let shown = format!("{ha1:?}");
        assert!(!shown.contains(core::str::from_utf8(ha1.expose_hex()).unwrap()));
        assert!(shown.contains("redacted"));
        assert!(Ha1::from_hex(Algorithm::Md5, &[b'A'; 32]).is_some());
        assert!(Ha1::from_hex(Algorithm::Md5, &[b'A'; 64]).is_none());
        assert!(Ha1::from_hex(Algorithm::Sha256, &[b'z'; 64]).is_none());
    }

    #[test]
    fn quoted_content_escaping() {
        let mut out = Vec::new();
        push_quoted_content(&mut out, b"a\"b\\c\r\nd");
        assert_eq!(out, b"a\\\"b\\\\cd");
    }

    // ---- client side ------------------------------------------------------------------------

    /// What a client computes for each request: HA1 and HA2 kept, the response from them.
    fn client_response(alg: Algorithm, qop_auth: Option<(&[u8], &[u8])>) -> HexDigest {
        let ha1 = Ha1::from_password(alg, USER.as_bytes(), REALM.as_bytes(), PASS.as_bytes());
        let ha2 = ha2(alg, b"GET", URI);
        response_from_ha2(alg, ha1.expose_hex(), NONCE, qop_auth, &ha2)
    }

    #[test]
    fn client_response_matches_rfc7616_examples() {
        let nc = nc_hex(1);
        let qop = Some((&nc[..], CNONCE));
        assert_eq!(client_response(Algorithm::Md5, qop).as_str(), MD5_RESPONSE);
        assert_eq!(
            client_response(Algorithm::Sha256, qop).as_str(),
            SHA256_RESPONSE
        );
        // Without qop, the RFC 2069 form, as the server computes it.
        let ha1 = ha1_hex(Algorithm::Md5, USER, REALM, PASS);
        let server = expected_response(
            Algorithm::Md5,
            ha1.as_bytes(),
            b"GET",
            URI,
            NONCE,
            b"",
            b"",
            None,
        )
        .unwrap();
        assert_eq!(client_response(Algorithm::Md5, None), server);
    }

    #[test]
    fn nc_is_eight_hex_digits() {
        assert_eq!(&nc_hex(1), b"00000001");
        assert_eq!(&nc_hex(0x1a2b), b"00001a2b");
        assert_eq!(&nc_hex(u32::MAX), b"ffffffff");
    }

    #[test]
    fn parses_rfc7616_challenge() {
        let c = Challenge::parse(
            br#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#,
        )
        .expect("valid challenge");
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert!(c.qop_auth);
        assert_eq!(c.realm, b"http-auth@example.org");
        assert_eq!(c.nonce, NONCE);
        assert_eq!(
            c.opaque.as_deref(),
            Some(&b"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"[..])
        );
        assert!(!c.stale);
        let c = Challenge::parse(b"digest NONCE=n, qop=auth-int, stale=TRUE").unwrap();
        assert_eq!(c.algorithm, Algorithm::Md5);
        assert!(!c.qop_auth && c.stale && c.realm.is_empty() && c.opaque.is_none());
    }

    #[test]
    fn parses_the_challenges_this_crate_writes() {
        let mut line = b"Digest realm=\"".to_vec();
        push_quoted_content(&mut line, b"a \"quoted\" \\ realm");
        line.extend_from_slice(
            b"\", nonce=\"n\", opaque=\"o\", algorithm=SHA-256, qop=\"auth\", stale=true",
        );
        let c = Challenge::parse(&line).unwrap();
        assert_eq!(c.realm, b"a \"quoted\" \\ realm");
        assert_eq!(
            (c.nonce.as_slice(), c.opaque.as_deref()),
            (&b"n"[..], Some(&b"o"[..]))
        );
        assert!(c.qop_auth && c.stale);
    }

    #[test]
    fn picks_sha256_over_md5_in_any_order() {
        let md5 = &br#"Digest realm="r", nonce="n1", qop="auth", algorithm=MD5"#[..];
        let sha = &br#"Digest realm="r", nonce="n2", qop="auth", algorithm=SHA-256"#[..];
        let other = &br#"Digest realm="r", nonce="n3", algorithm=SHA-512-256"#[..];
        for order in [[md5, sha, other], [sha, other, md5], [other, md5, sha]] {
            let c = Challenge::pick_strongest(order).expect("one supported");
            assert_eq!(c.algorithm, Algorithm::Sha256);
            assert_eq!(c.nonce, b"n2");
        }
        let c = Challenge::pick_strongest([&br#"Digest realm="r", nonce="x""#[..]]).expect("md5");
        assert_eq!(c.algorithm, Algorithm::Md5);
        assert!(!c.qop_auth);
        // The first of equally strong ones.
        let first = &br#"Digest realm="r", nonce="a""#[..];
        let second = &br#"Digest realm="r", nonce="b""#[..];
        assert_eq!(
            Challenge::pick_strongest([first, second]).unwrap().nonce,
            b"a"
        );
        assert_eq!(Challenge::pick_strongest([other]), None);
    }

    #[test]
    fn rejects_bad_challenges_without_panicking() {
        use DigestParseError as E;
        assert_eq!(Challenge::parse(b"Basic realm=\"x\""), Err(E::NotDigest));
        assert_eq!(
            Challenge::parse(b"Digest realm=\"x\""),
            Err(E::Missing("nonce"))
        );
        assert_eq!(
            Challenge::parse(b"Digest nonce=\"x\", algorithm=SHA-512"),
            Err(E::UnsupportedAlgorithm)
        );
        assert_eq!(
            Challenge::parse(b"Digest nonce=\"unterminated"),
            Err(E::Unterminated)
        );
        assert_eq!(
            Challenge::parse(b"Digest nonce=a, nonce=b"),
            Err(E::Duplicate("nonce"))
        );
        for junk in [
            &b""[..],
            b"Digest",
            b"Digest ,,,,",
            b"Digest =",
            b"Digest a=\"\\",
            b"\xff\xfe",
        ] {
            assert!(Challenge::parse(junk).is_err());
        }
    }

    #[test]
    fn quoted_escapes_are_unescaped() {
        let c = Challenge::parse(br#"Digest realm="a\"b", nonce="n\\""#).expect("valid");
        assert_eq!(c.realm, b"a\"b");
        assert_eq!(c.nonce, b"n\\");
    }

    #[test]
    fn quoted_content_pieces() {
        let mut pieces = Vec::new();
        quoted_content(b"plain", |p| pieces.push(p.to_vec()));
        assert_eq!(pieces, [b"plain".to_vec()]);
        let mut out = Vec::new();
        quoted_content(b"\"a\\\x7f", |p| out.extend_from_slice(p));
        assert_eq!(out, b"\\\"a\\\\");
    }
}
