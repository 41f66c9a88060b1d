//! SIP/SIPS URIs (RFC 3261 §19.1): parsing, comparison (§19.1.4) and AoR canonicalisation (§10.3 step 5).
//!
//! Nothing here allocates.

use super::charclass::{Class, ALNUM, HNV, HOST_LABEL, IPV6, PARAM, PASSWORD, USER};
use super::header::{span, Params};
use arrayvec::ArrayVec;
use memchr::memchr;
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

/// `s` is 1*(`class` char / escaped) (RFC 3261 §25.1 classes; escapes `%HH` are checked here). An invalid `%` sequence is BadEscape, any other stray byte Malformed.
fn check_escaped(s: &[u8], class: Class) -> Result<(), UriError> {
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if b == b'%' {
            match (s.get(i + 1), s.get(i + 2)) {
                (Some(h), Some(l)) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => i += 3,
                _ => return Err(UriError::BadEscape),
            }
        } else if class.has(b) {
            i += 1;
        } else {
            return Err(UriError::Malformed);
        }
    }
    Ok(())
}

/// Host (`[IPv6]`, IPv4 or hostname) at the start of `s`, and the text after it. Used by Via too.
///
/// A hostname or IPv4 address is the longest run of alphanumerics, `-` and `.`; it must be dot-separated
/// labels of alphanumerics and `-`, none empty, none starting or ending with `-`; one trailing dot (a fully
/// qualified name) is allowed. Checked in one pass: a `-` may not follow a label start, a `.` must follow an
/// alphanumeric, and the run must end after an alphanumeric or after such a trailing dot.
pub(crate) fn take_host(s: &[u8]) -> Option<(&[u8], &[u8])> {
    if s.first() == Some(&b'[') {
        let close = memchr(b']', s)?;
        let inside = &s[1..close];
        if inside.is_empty() || span(inside, IPV6) != inside.len() || !inside.contains(&b':') {
            return None;
        }
        return Some(s.split_at(close + 1));
    }
    // Label by label: the first byte must be alphanumeric, the rest of the label is a table scan over
    // alphanumerics and `-`, and must not end with `-`; then a `.` starts the next label, anything else
    // ends the host. After a `.`, a non-alphanumeric ends the host (the one trailing dot) unless it is `-`
    // or `.` (an empty label or one starting with `-`).
    let mut n = 0;
    loop {
        match s.get(n) {
            Some(&b) if ALNUM.has(b) => n += 1,
            Some(b'-' | b'.') => return None,
            _ if n > 0 => return Some(s.split_at(n)),
            _ => return None,
        }
        while s.get(n).is_some_and(|&b| HOST_LABEL.has(b)) {
            n += 1;
        }
        if s[n - 1] == b'-' {
            return None;
        }
        match s.get(n) {
            Some(b'.') => n += 1,
            _ => return Some(s.split_at(n)),
        }
    }
}

/// The decimal digits at the start of `s` as a port, and the text after them: the same as
/// `port_from_digits` on the whole leading digit run, in one pass. None without a digit, with more than 5,
/// or with a value above 65535.
#[inline]
pub(crate) fn take_port(s: &[u8]) -> Option<(u16, &[u8])> {
    let mut v = 0u32;
    let mut n = 0;
    while let Some(&b) = s.get(n) {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        if n == 5 {
            return None;
        }
        v = v * 10 + u32::from(d);
        n += 1;
    }
    if n == 0 {
        return None;
    }
    Some((u16::try_from(v).ok()?, &s[n..]))
}

/// 1 to 5 decimal digits that fit in a u16.
pub(crate) fn port_from_digits(d: &[u8]) -> Option<u16> {
    if d.is_empty() || d.len() > 5 || !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = d
        .iter()
        .fold(0u32, |acc, &b| acc * 10 + u32::from(b - b'0'));
    u16::try_from(v).ok()
}

/// Parse a sip:/sips: URI. Other schemes (tel:, http:, ...) -> UnsupportedScheme (the caller answers 416).
#[inline]
pub fn parse_uri(text: &[u8]) -> Result<SipUri<'_>, UriError> {
    match parse_uri_fast(text) {
        Some(uri) => Ok(uri),
        None => parse_uri_general(text),
    }
}

/// The common case in one pass: `sip:`/`sips:` (any case), an optional user without escapes or password,
/// a host, an optional port, and `;name[=value]` parameters without escapes; no `?headers`. `None` for
/// anything else (including every error), which `parse_uri_general` then handles; for the URIs accepted
/// here both give the same result.
#[inline]
fn parse_uri_fast(text: &[u8]) -> Option<SipUri<'_>> {
    if text.len() > MAX_URI_BYTES {
        return None;
    }
    let is = |b: u8, lower: u8| b | 0x20 == lower; // exact for letters
    let (scheme, rest) = match text {
        [s, i, p, b':', rest @ ..] if is(*s, b's') && is(*i, b'i') && is(*p, b'p') => {
            (Scheme::Sip, rest)
        }
        [s, i, p, s2, b':', rest @ ..]
            if is(*s, b's') && is(*i, b'i') && is(*p, b'p') && is(*s2, b's') =>
        {
            (Scheme::Sips, rest)
        }
        _ => return None,
    };
    // USER has neither `@`, `:` nor `%`: the run stops at the `@` of a plain user, or there is no `@` at all
    // (else: password, escapes or an error, left to the general path).
    let u = span(rest, USER);
    let (user, rest) = match rest.get(u) {
        Some(b'@') if u > 0 => (Some(&rest[..u]), &rest[u + 1..]),
        Some(b'@') => return None,
        None => (None, rest),
        Some(_) if memchr(b'@', &rest[u..]).is_some() => return None,
        Some(_) => (None, rest),
    };
    let (host, rest) = take_host(rest)?;
    let (port, params) = match rest.split_first() {
        Some((b':', p)) => {
            let (port, params) = take_port(p)?;
            (Some(port), params)
        }
        _ => (None, rest),
    };
    // *(";" 1*PARAM ["=" 1*PARAM]) to the end.
    let mut i = 0;
    while params.get(i) == Some(&b';') {
        i += 1;
        let n = span(&params[i..], PARAM);
        if n == 0 {
            return None;
        }
        i += n;
        if params.get(i) == Some(&b'=') {
            i += 1;
            let n = span(&params[i..], PARAM);
            if n == 0 {
                return None;
            }
            i += n;
        }
    }
    if i != params.len() {
        return None;
    }
    Some(SipUri {
        scheme,
        user,
        password: None,
        host,
        port,
        params: Params { raw: params },
        headers: &[],
    })
}

/// Every URI, every error (the reference implementation of `parse_uri`).
fn parse_uri_general(text: &[u8]) -> Result<SipUri<'_>, UriError> {
    if text.len() > MAX_URI_BYTES {
        return Err(UriError::TooLong);
    }
    let colon = memchr(b':', text).ok_or(UriError::Malformed)?;
    let scheme = &text[..colon];
    let scheme_ok = !scheme.is_empty()
        && scheme[0].is_ascii_alphabetic()
        && scheme
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return Err(UriError::Malformed);
    }
    let scheme = if scheme.eq_ignore_ascii_case(b"sip") {
        Scheme::Sip
    } else if scheme.eq_ignore_ascii_case(b"sips") {
        Scheme::Sips
    } else {
        return Err(UriError::UnsupportedScheme);
    };
    let rest = &text[colon + 1..];

    // userinfo: neither user nor password may hold an unescaped `@`, so the first one ends it.
    let (user, password, rest) = match memchr(b'@', rest) {
        Some(at) => {
            let userinfo = &rest[..at];
            let (user, password) = match memchr(b':', userinfo) {
                Some(c) => (&userinfo[..c], Some(&userinfo[c + 1..])),
                None => (userinfo, None),
            };
            if user.is_empty() {
                return Err(UriError::Malformed);
            }
            check_escaped(user, USER)?;
            if let Some(p) = password {
                check_escaped(p, PASSWORD)?;
            }
            (Some(user), password, &rest[at + 1..])
        }
        None => (None, None, rest),
    };

    let (host, rest) = take_host(rest).ok_or(UriError::Malformed)?;
    let (port, rest) = match rest.strip_prefix(b":") {
        Some(p) => {
            let n = p.iter().take_while(|b| b.is_ascii_digit()).count();
            (
                Some(port_from_digits(&p[..n]).ok_or(UriError::Malformed)?),
                &p[n..],
            )
        }
        None => (None, rest),
    };

    let (params, headers) = match memchr(b'?', rest) {
        Some(q) => (&rest[..q], &rest[q + 1..]),
        None => (rest, &[][..]),
    };
    if !params.is_empty() {
        if params[0] != b';' {
            return Err(UriError::Malformed);
        }
        for p in params[1..].split(|&b| b == b';') {
            let (name, value) = match memchr(b'=', p) {
                Some(e) => (&p[..e], Some(&p[e + 1..])),
                None => (p, None),
            };
            if name.is_empty() || value == Some(&[][..]) {
                return Err(UriError::Malformed);
            }
            check_escaped(name, PARAM)?;
            if let Some(v) = value {
                check_escaped(v, PARAM)?;
            }
        }
    }
    if rest.get(params.len()) == Some(&b'?') {
        for h in headers.split(|&b| b == b'&') {
            let e = memchr(b'=', h).ok_or(UriError::Malformed)?;
            if e == 0 {
                return Err(UriError::Malformed);
            }
            check_escaped(&h[..e], HNV)?;
            check_escaped(&h[e + 1..], HNV)?;
        }
    }
    Ok(SipUri {
        scheme,
        user,
        password,
        host,
        port,
        params: Params { raw: params },
        headers,
    })
}

// ---------------------------------------------------------------------------------------------
// Comparison

/// Bytes of `s` with `%HH` escapes decoded (an invalid escape is kept as it is).
fn unescaped(s: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let b = *s.get(i)?;
        if b == b'%' {
            if let (Some(h), Some(l)) = (s.get(i + 1).and_then(hex), s.get(i + 2).and_then(hex)) {
                i += 3;
                return Some(h << 4 | l);
            }
        }
        i += 1;
        Some(b)
    })
}

fn hex(b: &u8) -> Option<u8> {
    (*b as char).to_digit(16).map(|d| d as u8)
}

/// Equality after unescaping; `fold` lower-cases ASCII first (case-insensitive components).
fn eq_unescaped(a: &[u8], b: &[u8], fold: bool) -> bool {
    if memchr(b'%', a).is_none() && memchr(b'%', b).is_none() {
        // Nothing to unescape: a plain comparison.
        return if fold {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        };
    }
    let f = move |c: u8| if fold { c.to_ascii_lowercase() } else { c };
    unescaped(a).map(f).eq(unescaped(b).map(f))
}

fn opt_eq(a: Option<&[u8]>, b: Option<&[u8]>, fold: bool) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => eq_unescaped(a, b, fold),
        _ => false,
    }
}

/// First URI parameter whose (unescaped) name matches `name` case-insensitively.
fn find_param<'a>(params: &Params<'a>, name: &[u8]) -> Option<Option<&'a [u8]>> {
    params
        .iter()
        .find(|(n, _)| eq_unescaped(n, name, true))
        .map(|(_, v)| v)
}

/// Parameters that make URIs differ when present in only one of them (§19.1.4).
fn must_be_in_both(name: &[u8]) -> bool {
    [&b"user"[..], b"ttl", b"method", b"maddr", b"transport"]
        .iter()
        .any(|p| eq_unescaped(name, p, true))
}

/// `?h=v&...` headers as (name, value) pairs.
fn uri_headers(h: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
    h.split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| match memchr(b'=', p) {
            Some(e) => (&p[..e], &p[e + 1..]),
            None => (p, &[][..]),
        })
}

/// Every header of `a` is in `b` (name case-insensitive, value case-sensitive, both unescaped).
fn headers_within(a: &[u8], b: &[u8]) -> bool {
    uri_headers(a).all(|(an, av)| {
        uri_headers(b).any(|(bn, bv)| eq_unescaped(an, bn, true) && eq_unescaped(av, bv, false))
    })
}

/// URI equality per RFC 3261 §19.1.4: scheme, user and password case-sensitive after unescaping, host
/// case-insensitive, ports compared explicitly (absent != 5060), user/ttl/method/maddr/transport params must
/// match when present in either, other params only when present in both, headers must match.
pub fn uri_eq(a: &SipUri<'_>, b: &SipUri<'_>) -> bool {
    if a.scheme != b.scheme
        || !opt_eq(a.user, b.user, false)
        || !opt_eq(a.password, b.password, false)
        || !a.host.eq_ignore_ascii_case(b.host)
        || a.port != b.port
    {
        return false;
    }
    // A repeated parameter is compared by its first occurrence (as `find_param` finds it on both sides).
    let params_match = a.params.iter().enumerate().all(|(i, (name, va))| {
        let repeated = a
            .params
            .iter()
            .take(i)
            .any(|(earlier, _)| eq_unescaped(earlier, name, true));
        repeated
            || match find_param(&b.params, name) {
                Some(vb) => opt_eq(va, vb, true),
                None => !must_be_in_both(name),
            }
    });
    let b_specials_in_a = b
        .params
        .iter()
        .all(|(name, _)| !must_be_in_both(name) || find_param(&a.params, name).is_some());
    params_match
        && b_specials_in_a
        && uri_headers(a.headers).count() == uri_headers(b.headers).count()
        && headers_within(a.headers, b.headers)
        && headers_within(b.headers, a.headers)
}

// ---------------------------------------------------------------------------------------------
// Canonical AoR

/// Fixed buffer for a canonical AoR (no allocation on the hot path; not zero-filled either, which would cost a
/// 512-byte memset per REGISTER).
#[derive(Default)]
pub struct AorBuf {
    buf: ArrayVec<u8, MAX_URI_BYTES>,
}

impl AorBuf {
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    fn push(&mut self, b: u8) -> Result<(), UriError> {
        self.buf.try_push(b).map_err(|_| UriError::TooLong)
    }

    fn extend(&mut self, bytes: impl IntoIterator<Item = u8>) -> Result<(), UriError> {
        bytes.into_iter().try_for_each(|b| self.push(b))
    }
}

/// Canonical AoR (§10.3 step 5): `sip:` or `sips:`, the unescaped user, `@`, the lower-cased host, `:port`
/// when present; every parameter and header removed. A URI without user yields `scheme:host[:port]`.
/// On error `out` is left empty.
pub fn canonical_aor(uri: &SipUri<'_>, out: &mut AorBuf) -> Result<(), UriError> {
    out.buf.clear();
    let result = write_aor(uri, out);
    if result.is_err() {
        out.buf.clear();
    }
    result
}

fn write_aor(uri: &SipUri<'_>, out: &mut AorBuf) -> Result<(), UriError> {
    let user = uri.user.unwrap_or(&[]);
    if memchr(b'%', user).is_some() {
        return write_aor_unescaping(uri, out);
    }
    // No escapes: the AoR is made of slices; its length is known before writing.
    let scheme: &[u8] = match uri.scheme {
        Scheme::Sip => b"sip:",
        Scheme::Sips => b"sips:",
    };
    let mut digits = itoa::Buffer::new();
    let port = uri.port.map_or(&b""[..], |p| digits.format(p).as_bytes());
    let len = scheme.len()
        + uri.user.map_or(0, |u| u.len() + 1)
        + uri.host.len()
        + if uri.port.is_some() {
            port.len() + 1
        } else {
            0
        };
    if len > MAX_URI_BYTES {
        return Err(UriError::TooLong);
    }
    // Cannot fail: `len` bytes fit (checked above).
    let mut put = |bytes: &[u8]| {
        out.buf
            .try_extend_from_slice(bytes)
            .map_err(|_| UriError::TooLong)
    };
    put(scheme)?;
    if let Some(u) = uri.user {
        put(u)?;
        put(b"@")?;
    }
    let host_at = out.buf.len();
    out.buf
        .try_extend_from_slice(uri.host)
        .map_err(|_| UriError::TooLong)?;
    out.buf[host_at..].make_ascii_lowercase();
    if uri.port.is_some() {
        out.buf
            .try_extend_from_slice(b":")
            .and_then(|()| out.buf.try_extend_from_slice(port))
            .map_err(|_| UriError::TooLong)?;
    }
    debug_assert_eq!(out.buf.len(), len);
    Ok(())
}

/// `write_aor` for a user with `%HH` escapes (decoded byte by byte).
fn write_aor_unescaping(uri: &SipUri<'_>, out: &mut AorBuf) -> Result<(), UriError> {
    out.extend(match uri.scheme {
        Scheme::Sip => b"sip:".iter().copied(),
        Scheme::Sips => b"sips:".iter().copied(),
    })?;
    if let Some(user) = uri.user {
        out.extend(unescaped(user))?;
        out.push(b'@')?;
    }
    out.extend(uri.host.iter().map(u8::to_ascii_lowercase))?;
    if let Some(port) = uri.port {
        out.push(b':')?;
        let mut digits = itoa::Buffer::new();
        out.extend(digits.format(port).bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> SipUri<'_> {
        parse_uri(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn aor(s: &str) -> Vec<u8> {
        let mut out = AorBuf::default();
        canonical_aor(&p(s), &mut out).unwrap();
        out.as_bytes().to_vec()
    }

    #[test]
    fn parses_components() {
        let u = p("sips:alice:secret@Atlanta.COM:5061;transport=tcp;lr?subject=project%20x&priority=urgent");
        assert_eq!(u.scheme, Scheme::Sips);
        assert_eq!(u.user, Some(&b"alice"[..]));
        assert_eq!(u.password, Some(&b"secret"[..]));
        assert_eq!(u.host, b"Atlanta.COM");
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.params.get(b"transport"), Some(Some(&b"tcp"[..])));
        assert_eq!(u.params.get(b"lr"), Some(None));
        assert_eq!(u.headers, b"subject=project%20x&priority=urgent");

        let u = p("SIP:example.com");
        assert_eq!(
            (u.scheme, u.user, u.host, u.port),
            (Scheme::Sip, None, &b"example.com"[..], None)
        );
        assert!(u.params.raw.is_empty() && u.headers.is_empty());

        let u = p("sip:[2001:db8::1]:5070;maddr=[2001:db8::2]");
        assert_eq!((u.host, u.port), (&b"[2001:db8::1]"[..], Some(5070)));
        assert_eq!(u.params.get(b"maddr"), Some(Some(&b"[2001:db8::2]"[..])));

        let u = p("sip:192.0.2.4:0");
        assert_eq!((u.host, u.port), (&b"192.0.2.4"[..], Some(0)));
        assert_eq!(p("sip:h:65535").port, Some(65535));
        assert_eq!(p("sip:example.com.").host, b"example.com.");
    }

    #[test]
    fn parses_rfc4475_users() {
        // semiuri: `;` belongs to the user part before the `@`.
        let u = p("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user, Some(&b"user;par=u%40example.net"[..]));
        assert_eq!(u.host, b"example.com");
        assert!(u.params.raw.is_empty());
        // intmeth: every legal user and password character.
        let u = p("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com");
        assert_eq!(
            u.user,
            Some(&b"1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"[..])
        );
        assert_eq!(
            u.password,
            Some(&b"&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"[..])
        );
        // esc01: escaped params.
        let u = p("sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31");
        assert_eq!(u.params.iter().count(), 2);
        // regescrt: escaped header kept.
        assert_eq!(
            p("sip:user@example.com?Route=%3Csip:sip.example.com%3E").headers,
            b"Route=%3Csip:sip.example.com%3E"
        );
        assert_eq!(p("sip:%00@host5.example.com").user, Some(&b"%00"[..]));
    }

    #[test]
    fn errors() {
        use UriError::*;
        for (text, err) in [
            ("tel:+1-201-555-0123", UnsupportedScheme),
            (
                "nobodyKnowsThisScheme:totallyopaquecontent",
                UnsupportedScheme,
            ),
            ("soap.beep://192.0.2.103:3002", UnsupportedScheme),
            ("http://www.example.com", UnsupportedScheme),
            ("sip", Malformed),
            (":x", Malformed),
            ("1sip:x", Malformed),
            ("sip:", Malformed),
            ("sip:@host", Malformed),
            ("sip:user@", Malformed),
            ("sip:user@host:", Malformed),
            ("sip:user@host:65536", Malformed),
            ("sip:user@host:5060x", Malformed),
            ("sip:user@ho st", Malformed),
            ("sip:user@host;", Malformed),
            ("sip:user@host;a=", Malformed),
            ("sip:user@host;a=b c", Malformed),
            ("sip:user@host?", Malformed),
            ("sip:user@host?a", Malformed),
            ("sip:user@host?=b", Malformed),
            ("sip:user@[2001:db8::1", Malformed),
            ("sip:user@[]", Malformed),
            ("sip:user@[zz::1]", Malformed),
            ("sip:user@-host.com", Malformed),
            ("sip:user@host..com", Malformed),
            ("sip:us er@host", Malformed),
            ("sip:us\0er@host", Malformed),
            ("sip:user@host>", Malformed),
            ("sip:us%4@host", BadEscape),
            ("sip:us%zz@host", BadEscape),
            ("sip:u:p%@host", BadEscape),
            ("sip:host;a=%", BadEscape),
            ("sip:host?a=%g0", BadEscape),
        ] {
            assert_eq!(parse_uri(text.as_bytes()).unwrap_err(), err, "{text}");
        }
        let long = format!("sip:{}@example.com", "a".repeat(MAX_URI_BYTES));
        assert_eq!(parse_uri(long.as_bytes()).unwrap_err(), TooLong);
    }

    /// RFC 3261 §19.1.4, the equivalent pairs.
    #[test]
    fn rfc3261_equal_examples() {
        for (a, b) in [
            (
                "sip:%61lice@atlanta.com;transport=TCP",
                "sip:alice@AtLanTa.CoM;Transport=tcp",
            ),
            ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
            ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
            (
                "sip:carol@chicago.com;newparam=5",
                "sip:carol@chicago.com;security=on",
            ),
            (
                "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
                "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
            ),
            (
                "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
                "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
            ),
        ] {
            assert!(uri_eq(&p(a), &p(b)), "{a} == {b}");
            assert!(uri_eq(&p(b), &p(a)), "{b} == {a}");
        }
    }

    /// RFC 3261 §19.1.4, the non-equivalent pairs.
    #[test]
    fn rfc3261_not_equal_examples() {
        for (a, b) in [
            (
                "SIP:ALICE@AtLanTa.CoM;Transport=udp",
                "sip:alice@AtLanTa.CoM;Transport=UDP",
            ),
            ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
            ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
            (
                "sip:bob@biloxi.com",
                "sip:bob@biloxi.com:6000;transport=tcp",
            ),
            (
                "sip:carol@chicago.com",
                "sip:carol@chicago.com?Subject=next%20meeting",
            ),
            ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
            // Not transitive: both equal sip:carol@chicago.com, but not each other.
            (
                "sip:carol@chicago.com;security=on",
                "sip:carol@chicago.com;security=off",
            ),
        ] {
            assert!(!uri_eq(&p(a), &p(b)), "{a} != {b}");
            assert!(!uri_eq(&p(b), &p(a)), "{b} != {a}");
        }
    }

    #[test]
    fn eq_other_rules() {
        let ne = |a: &str, b: &str| !uri_eq(&p(a), &p(b)) && !uri_eq(&p(b), &p(a));
        assert!(ne("sip:a@h", "sips:a@h"));
        assert!(ne("sip:a@h", "sip:h"));
        assert!(ne("sip:a:pw@h", "sip:a@h"));
        assert!(ne("sip:a:pw@h", "sip:a:PW@h"));
        assert!(ne("sip:a@h", "sip:a@h;user=phone"));
        assert!(ne("sip:a@h", "sip:a@h;ttl=1"));
        assert!(ne("sip:a@h", "sip:a@h;method=INVITE"));
        assert!(ne("sip:a@h", "sip:a@h;maddr=239.255.255.1"));
        assert!(ne("sip:a@h;lr", "sip:a@h;lr=on"));
        assert!(ne("sip:a@h?x=1", "sip:a@h?x=1&x=1"));
        assert!(ne("sip:a@h?subject=A", "sip:a@h?subject=a"));
        assert!(uri_eq(&p("sip:a@h;%6C%72"), &p("sip:a@h;lr")));
        assert!(uri_eq(&p("sip:a@h;lr"), &p("sip:a@h;LR")));
        assert!(uri_eq(&p("sip:a@h;user=phone"), &p("sip:a@h;USER=Phone")));
        assert!(uri_eq(&p("sip:a@h?Subject=x"), &p("sip:a@h?subject=x")));
        // escnull: escaped nulls are distinct users.
        assert!(ne(
            "sip:%00@host5.example.com",
            "sip:%00%00@host5.example.com"
        ));
        assert!(uri_eq(&p("sip:%00@h"), &p("sip:%00@H")));
        // A repeated parameter counts once, by its first occurrence; equality stays reflexive.
        assert!(uri_eq(&p("sip:a@h;x=1;x=2"), &p("sip:a@h;x=1;x=2")));
        assert!(uri_eq(&p("sip:a@h;x=1;x=2"), &p("sip:a@h;x=1")));
        assert!(ne("sip:a@h;x=2;x=1", "sip:a@h;x=1"));
    }

    #[test]
    fn canonical_aors() {
        assert_eq!(aor("sip:alice@Atlanta.COM"), b"sip:alice@atlanta.com");
        assert_eq!(
            aor("sip:%61lice@atlanta.com;transport=TCP?x=y"),
            b"sip:alice@atlanta.com"
        );
        assert_eq!(
            aor("SIPS:Alice:pw@atlanta.com:5061;lr"),
            b"sips:Alice@atlanta.com:5061"
        );
        assert_eq!(aor("sip:example.com:5060"), b"sip:example.com:5060");
        assert_eq!(aor("sip:[2001:DB8::1]"), b"sip:[2001:db8::1]");
        assert_eq!(
            aor("sip:user;par=u%40example.net@example.com"),
            b"sip:user;par=u@example.net@example.com"
        );
        // escnull: `%00` decodes to a NUL byte, and the two contacts stay distinct.
        assert_eq!(
            aor("sip:null-%00-null@example.com"),
            b"sip:null-\0-null@example.com"
        );
        assert_eq!(
            aor("sip:%00@host5.example.com"),
            b"sip:\0@host5.example.com"
        );
        assert_eq!(
            aor("sip:%00%00@host5.example.com"),
            b"sip:\0\0@host5.example.com"
        );
    }

    #[test]
    fn canonical_aor_too_long() {
        let host = "h".repeat(MAX_URI_BYTES);
        let uri = SipUri {
            scheme: Scheme::Sip,
            user: None,
            password: None,
            host: host.as_bytes(),
            port: None,
            params: Params::default(),
            headers: b"",
        };
        let mut out = AorBuf::default();
        assert_eq!(canonical_aor(&uri, &mut out), Err(UriError::TooLong));
        assert!(out.as_bytes().is_empty());
        // The longest parseable URI always fits.
        let longest = format!("sip:{}@h:65535", "a".repeat(MAX_URI_BYTES - 12));
        assert_eq!(longest.len(), MAX_URI_BYTES);
        assert_eq!(aor(&longest).len(), MAX_URI_BYTES);
    }

    /// The single-pass `take_host` against the original span + split formulation.
    fn take_host_reference(s: &[u8]) -> Option<(&[u8], &[u8])> {
        if s.first() == Some(&b'[') {
            return take_host(s);
        }
        let n = s
            .iter()
            .take_while(|&&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            .count();
        let host = &s[..n];
        let labels = host
            .strip_suffix(b".")
            .filter(|h| !h.is_empty())
            .unwrap_or(host);
        let bad_label = |l: &[u8]| l.is_empty() || l[0] == b'-' || l[l.len() - 1] == b'-';
        if labels.split(|&b| b == b'.').any(bad_label) {
            return None;
        }
        Some(s.split_at(n))
    }

    /// Every string over `alphabet` up to `max_len` bytes.
    fn all_strings(alphabet: &[u8], max_len: usize) -> Vec<Vec<u8>> {
        let mut out = vec![vec![]];
        let mut layer = vec![vec![]];
        for _ in 0..max_len {
            let mut next = vec![];
            for s in &layer {
                for &c in alphabet {
                    let mut t: Vec<u8> = s.clone();
                    t.push(c);
                    next.push(t);
                }
            }
            out.extend(next.iter().cloned());
            layer = next;
        }
        out
    }

    #[test]
    fn take_port_matches_port_from_digits() {
        for s in all_strings(b"09;", 7) {
            let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
            let want = port_from_digits(&s[..n]).map(|p| (p, &s[n..]));
            assert_eq!(take_port(&s), want, "{}", String::from_utf8_lossy(&s));
        }
        for (text, want) in [
            (&b"65535"[..], Some(65535)),
            (b"65536", None),
            (b"00080", Some(80)),
            (b"000080", None),
        ] {
            assert_eq!(take_port(text).map(|(p, _)| p), want);
        }
    }

    #[test]
    fn take_host_matches_reference() {
        for s in all_strings(b"a1-.:;", 6) {
            assert_eq!(
                take_host(&s),
                take_host_reference(&s),
                "{:?}",
                String::from_utf8_lossy(&s)
            );
        }
    }

    fn same(a: &Result<SipUri<'_>, UriError>, b: &Result<SipUri<'_>, UriError>) -> bool {
        match (a, b) {
            (Ok(a), Ok(b)) => {
                a.scheme == b.scheme
                    && a.user == b.user
                    && a.password == b.password
                    && a.host == b.host
                    && a.port == b.port
                    && a.params.raw == b.params.raw
                    && a.headers == b.headers
            }
            (Err(a), Err(b)) => a == b,
            _ => false,
        }
    }

    #[test]
    fn fast_path_matches_general_parser() {
        // Short strings over the delimiters, after each scheme spelling.
        let mut cases: Vec<Vec<u8>> = vec![];
        for prefix in [&b"sip:"[..], b"SIPS:", b"sIp:", b"sipx:", b"si:"] {
            for s in all_strings(b"a1-.:;=@%?", 5) {
                cases.push([prefix, &s[..]].concat());
            }
        }
        // Pseudo-random longer ones built from URI pieces.
        let pieces: [&[u8]; 24] = [
            b"sip:",
            b"sips:",
            b"SIP:",
            b"user",
            b"@",
            b":",
            b"5060",
            b"99999",
            b"example.com",
            b"-",
            b".",
            b";transport=udp",
            b";lr",
            b";=",
            b";a=",
            b"?",
            b"h=v",
            b"&",
            b"%41",
            b"%4",
            b"[2001:db8::1]",
            b"pw",
            b"u;x=1",
            b"\x80",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200_000 {
            let mut uri = vec![];
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut r = seed;
            for _ in 0..(r % 7 + 1) {
                r /= 7;
                uri.extend_from_slice(pieces[(r % 24) as usize]);
                r /= 24;
            }
            cases.push(uri);
        }
        for common in [
            &b"sip:u1@example.com"[..],
            b"sip:u1@192.0.2.7:5060;transport=udp",
            b"sip:example.com",
            b"SIP:registrar.example.com:5060;lr",
        ] {
            assert!(parse_uri_fast(common).is_some());
        }
        cases.push(vec![b'a'; MAX_URI_BYTES + 1]);
        cases.push([&b"sip:"[..], &vec![b'a'; MAX_URI_BYTES]].concat());
        for c in &cases {
            let general = parse_uri_general(c);
            assert!(
                same(&parse_uri(c), &general),
                "{:?}",
                String::from_utf8_lossy(c)
            );
            if let Some(fast) = parse_uri_fast(c) {
                assert!(
                    same(&Ok(fast), &general),
                    "{:?}",
                    String::from_utf8_lossy(c)
                );
                let (mut a, mut b) = (AorBuf::default(), AorBuf::default());
                let ra = canonical_aor(&fast, &mut a);
                b.buf.clear();
                let rb = write_aor_unescaping(&fast, &mut b);
                assert_eq!(ra, rb);
                if rb.is_ok() {
                    assert_eq!(a.as_bytes(), b.as_bytes());
                }
            }
        }
    }
}
