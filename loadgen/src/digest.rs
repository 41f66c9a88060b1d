//! HTTP Digest authentication as a client (RFC 7616 / RFC 3261 §22): parsing challenges from
//! `WWW-Authenticate` / `Proxy-Authenticate` and computing the `response` value.

use md5::Md5;
use sha2::{Digest as _, Sha256};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ChallengeError {
    #[error("challenge scheme is not Digest")]
    NotDigest,
    #[error("challenge has no nonce")]
    NoNonce,
    #[error("unsupported digest algorithm")]
    UnsupportedAlgorithm,
    #[error("malformed challenge parameters")]
    Malformed,
}

/// The algorithms this client can answer, ordered weakest first so `max` picks the strongest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    fn parse(s: &[u8]) -> Option<Algorithm> {
        if s.eq_ignore_ascii_case(b"MD5") {
            Some(Algorithm::Md5)
        } else if s.eq_ignore_ascii_case(b"SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    /// Lower-case hex of the hash of the concatenated parts, appended to `out`.
    pub fn hex_hash(self, parts: &[&[u8]], out: &mut Vec<u8>) {
        match self {
            Algorithm::Md5 => {
                let mut h = Md5::new();
                for p in parts {
                    h.update(p);
                }
                push_hex(&h.finalize(), out);
            }
            Algorithm::Sha256 => {
                let mut h = Sha256::new();
                for p in parts {
                    h.update(p);
                }
                push_hex(&h.finalize(), out);
            }
        }
    }
}

fn push_hex(bytes: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 15) as usize]);
    }
}

/// One parsed Digest challenge, owning its strings: it is cached per user and reused for many
/// requests (incrementing the nonce count), so it must outlive the datagram it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: Vec<u8>,
    pub nonce: Vec<u8>,
    pub opaque: Option<Vec<u8>>,
    pub algorithm: Algorithm,
    /// Whether `qop=auth` was offered; without it we answer in RFC 2069 compatibility mode.
    pub qop_auth: bool,
    pub stale: bool,
}

impl Challenge {
    /// Parses the value of one `WWW-Authenticate` header (`Digest realm="..", nonce="..", ...`).
    pub fn parse(value: &[u8]) -> Result<Challenge, ChallengeError> {
        let value = trim(value);
        let (scheme, rest) = split_token(value);
        if !scheme.eq_ignore_ascii_case(b"Digest") {
            return Err(ChallengeError::NotDigest);
        }
        let mut realm = Vec::new();
        let mut nonce = None;
        let mut opaque = None;
        let mut algorithm = Some(Algorithm::Md5); // RFC 7616: absent means MD5
        let mut qop_auth = false;
        let mut stale = false;
        for param in Params::new(rest) {
            let (name, val) = param.map_err(|_| ChallengeError::Malformed)?;
            match name.to_ascii_lowercase().as_slice() {
                b"realm" => realm = val,
                b"nonce" => nonce = Some(val),
                b"opaque" => opaque = Some(val),
                b"algorithm" => algorithm = Algorithm::parse(&val),
                b"qop" => {
                    qop_auth = val
                        .split(|&b| b == b',')
                        .any(|q| trim(q).eq_ignore_ascii_case(b"auth"))
                }
                b"stale" => stale = val.eq_ignore_ascii_case(b"true"),
                _ => {}
            }
        }
        Ok(Challenge {
            realm,
            nonce: nonce.ok_or(ChallengeError::NoNonce)?,
            opaque,
            algorithm: algorithm.ok_or(ChallengeError::UnsupportedAlgorithm)?,
            qop_auth,
            stale,
        })
    }

    /// Among several challenges (one per header), the one with the strongest algorithm we support:
    /// RFC 7616 §3.7 lets a server offer several, the client picks the first it prefers.
    pub fn pick_strongest<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Option<Challenge> {
        values
            .into_iter()
            .filter_map(|v| Challenge::parse(v).ok())
            .reduce(|best, c| {
                if c.algorithm > best.algorithm {
                    c
                } else {
                    best
                }
            })
    }
}

/// Inputs of one digest response computation.
pub struct ResponseInput<'a> {
    pub algorithm: Algorithm,
    pub username: &'a [u8],
    pub realm: &'a [u8],
    pub password: &'a [u8],
    pub method: &'a [u8],
    pub uri: &'a [u8],
    pub nonce: &'a [u8],
    /// `Some((nc, cnonce))` for qop=auth, None for RFC 2069 mode.
    pub qop_auth: Option<(u32, &'a [u8])>,
}

/// HA1 = H(username:realm:password); callers cache it per user since it does not change.
pub fn ha1(alg: Algorithm, username: &[u8], realm: &[u8], password: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    alg.hex_hash(&[username, b":", realm, b":", password], &mut out);
    out
}

/// HA2 = H(method:uri) for qop=auth (or no qop).
pub fn ha2(alg: Algorithm, method: &[u8], uri: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    alg.hex_hash(&[method, b":", uri], &mut out);
    out
}

/// The nonce count as the 8 hex digits the protocol requires.
pub fn nc_hex(nc: u32) -> [u8; 8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'0'; 8];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = HEX[((nc >> (28 - 4 * i)) & 15) as usize];
    }
    out
}

/// response = H(HA1:nonce:nc:cnonce:qop:HA2), or H(HA1:nonce:HA2) without qop.
pub fn response_from_parts(
    alg: Algorithm,
    ha1: &[u8],
    nonce: &[u8],
    qop_auth: Option<(u32, &[u8])>,
    ha2: &[u8],
    out: &mut Vec<u8>,
) {
    match qop_auth {
        Some((nc, cnonce)) => {
            let nc = nc_hex(nc);
            alg.hex_hash(
                &[ha1, b":", nonce, b":", &nc, b":", cnonce, b":auth:", ha2],
                out,
            );
        }
        None => alg.hex_hash(&[ha1, b":", nonce, b":", ha2], out),
    }
}

/// Full computation from the inputs (used by the verifying responder and tests).
pub fn response(input: &ResponseInput<'_>) -> Vec<u8> {
    let h1 = ha1(input.algorithm, input.username, input.realm, input.password);
    let h2 = ha2(input.algorithm, input.method, input.uri);
    let mut out = Vec::with_capacity(64);
    response_from_parts(
        input.algorithm,
        &h1,
        input.nonce,
        input.qop_auth,
        &h2,
        &mut out,
    );
    out
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    s.get(start..end.max(start)).unwrap_or(&[])
}

fn split_token(s: &[u8]) -> (&[u8], &[u8]) {
    match s.iter().position(|b| b.is_ascii_whitespace()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, &[]),
    }
}

/// Iterator over `name=value` / `name="quoted value"` pairs separated by commas. Owned values
/// because quoted strings may contain escapes.
pub struct Params<'a> {
    rest: &'a [u8],
}

impl<'a> Params<'a> {
    pub fn new(rest: &'a [u8]) -> Self {
        Params { rest }
    }
}

impl<'a> Iterator for Params<'a> {
    type Item = Result<(&'a [u8], Vec<u8>), ()>;

    fn next(&mut self) -> Option<Self::Item> {
        let s = self.rest;
        let mut i = 0;
        while i < s.len() && (s[i].is_ascii_whitespace() || s[i] == b',') {
            i += 1;
        }
        if i >= s.len() {
            self.rest = &[];
            return None;
        }
        let name_start = i;
        while i < s.len() && s[i] != b'=' && s[i] != b',' && !s[i].is_ascii_whitespace() {
            i += 1;
        }
        let name = &s[name_start..i];
        while i < s.len() && s[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= s.len() || s[i] != b'=' {
            // A bare token without a value: malformed for digest purposes.
            self.rest = &[];
            return Some(Err(()));
        }
        i += 1;
        while i < s.len() && s[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = Vec::new();
        if i < s.len() && s[i] == b'"' {
            i += 1;
            let mut closed = false;
            while i < s.len() {
                match s[i] {
                    b'\\' if i + 1 < s.len() => {
                        value.push(s[i + 1]);
                        i += 2;
                    }
                    b'"' => {
                        closed = true;
                        i += 1;
                        break;
                    }
                    b => {
                        value.push(b);
                        i += 1;
                    }
                }
            }
            if !closed {
                self.rest = &[];
                return Some(Err(()));
            }
        } else {
            let start = i;
            while i < s.len() && s[i] != b',' && !s[i].is_ascii_whitespace() {
                i += 1;
            }
            value.extend_from_slice(&s[start..i]);
        }
        self.rest = s.get(i..).unwrap_or(&[]);
        Some(Ok((name, value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7616 §3.9.1: user Mufasa, password "Circle of Life", GET /dir/index.html.
    fn rfc7616_input(alg: Algorithm) -> ResponseInput<'static> {
        ResponseInput {
            algorithm: alg,
            username: b"Mufasa",
            realm: b"http-auth@example.org",
            password: b"Circle of Life",
            method: b"GET",
            uri: b"/dir/index.html",
            nonce: b"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            qop_auth: Some((1, b"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")),
        }
    }

    #[test]
    fn rfc7616_md5_example() {
        assert_eq!(
            response(&rfc7616_input(Algorithm::Md5)),
            b"8ca523f5e9506fed4657c9700eebdbec".to_vec()
        );
    }

    #[test]
    fn rfc7616_sha256_example() {
        assert_eq!(
            response(&rfc7616_input(Algorithm::Sha256)),
            b"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1".to_vec()
        );
    }

    #[test]
    fn rfc2617_no_qop_md5() {
        // RFC 2069-style computation, checked against `printf ... | md5sum` composition.
        let mut i = rfc7616_input(Algorithm::Md5);
        i.qop_auth = None;
        let h1 = ha1(Algorithm::Md5, i.username, i.realm, i.password);
        let h2 = ha2(Algorithm::Md5, i.method, i.uri);
        let mut expect = Vec::new();
        Algorithm::Md5.hex_hash(&[&h1, b":", i.nonce, b":", &h2], &mut expect);
        assert_eq!(response(&i), expect);
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
        assert_eq!(
            c.opaque.as_deref(),
            Some(&b"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"[..])
        );
        assert!(!c.stale);
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
    }

    #[test]
    fn rejects_bad_challenges_without_panicking() {
        assert_eq!(
            Challenge::parse(b"Basic realm=\"x\""),
            Err(ChallengeError::NotDigest)
        );
        assert_eq!(
            Challenge::parse(b"Digest realm=\"x\""),
            Err(ChallengeError::NoNonce)
        );
        assert_eq!(
            Challenge::parse(b"Digest nonce=\"x\", algorithm=SHA-512"),
            Err(ChallengeError::UnsupportedAlgorithm)
        );
        assert!(Challenge::parse(b"Digest nonce=\"unterminated").is_err());
        for junk in [
            &b""[..],
            b"Digest",
            b"Digest ,,,,",
            b"Digest =",
            b"Digest a=\"\\",
            b"\xff\xfe",
        ] {
            let _ = Challenge::parse(junk);
        }
    }

    #[test]
    fn quoted_escapes_are_unescaped() {
        let c = Challenge::parse(br#"Digest realm="a\"b", nonce="n""#).expect("valid");
        assert_eq!(c.realm, b"a\"b");
    }
}
