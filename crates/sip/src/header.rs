//! Typed, lazy parsers for header values. All borrow from the value slice; none allocates.
//!
//! LWS is any run of SP, HTAB, CR and LF: values may hold folded lines (CRLF and whitespace), as the framer
//! ([`parse`](crate::parse)) leaves them. Parameter names compare case-insensitively.

use memchr::{memchr, memchr2, memchr3};

use super::charclass::{Class, ADDR_SPEC, PARAM_CHAR, SCHEME, TOKEN};
use super::scan::span_uri_text;
use thiserror::Error;

#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("malformed header value")]
    Malformed,
    #[error("unterminated quoted string")]
    UnterminatedQuote,
    #[error("missing angle bracket")]
    UnbalancedAngle,
    #[error("number out of range")]
    NumberOutOfRange,
    #[error("too many list elements")]
    TooMany,
}

// ---------------------------------------------------------------------------------------------
// Character classes (`charclass`), LWS and spans.

/// SP, HTAB, CR and LF as a bit set over bytes 0..=32.
const LWS_BITS: u64 = 1 << b' ' | 1 << b'\t' | 1 << b'\r' | 1 << b'\n';

#[inline(always)]
pub(crate) fn is_lws(b: u8) -> bool {
    b <= b' ' && (LWS_BITS >> b) & 1 != 0
}

/// `s` without leading LWS.
#[inline]
pub(crate) fn skip_lws(s: &[u8]) -> &[u8] {
    let mut i = 0;
    while i < s.len() && is_lws(s[i]) {
        i += 1;
    }
    &s[i..]
}

/// `s` without leading and trailing LWS.
#[inline]
pub(crate) fn trim_lws(s: &[u8]) -> &[u8] {
    let s = skip_lws(s);
    let mut n = s.len();
    while n > 0 && is_lws(s[n - 1]) {
        n -= 1;
    }
    &s[..n]
}

/// Length of the prefix of `s` whose bytes are all in `table` (unrolled by four: one bounds test per four
/// bytes).
#[inline]
pub(crate) fn span(s: &[u8], class: Class) -> usize {
    let mut i = 0;
    while let Some(c) = s.get(i..i + 4) {
        if !class.has(c[0]) {
            return i;
        }
        if !class.has(c[1]) {
            return i + 1;
        }
        if !class.has(c[2]) {
            return i + 2;
        }
        if !class.has(c[3]) {
            return i + 3;
        }
        i += 4;
    }
    while i < s.len() && class.has(s[i]) {
        i += 1;
    }
    i
}

/// `s` starts with `"`: the length of the quoted string including both quotes. A backslash escapes the
/// next byte (RFC 3261 `quoted-pair`).
fn quoted_len(s: &[u8]) -> Result<usize, HeaderError> {
    debug_assert_eq!(s.first(), Some(&b'"'));
    let mut i = 1;
    while let Some(j) = s.get(i..).and_then(|rest| memchr2(b'"', b'\\', rest)) {
        if s[i + j] == b'"' {
            return Ok(i + j + 1);
        }
        i += j + 2; // skip the escaped byte
    }
    Err(HeaderError::UnterminatedQuote)
}

// ---------------------------------------------------------------------------------------------
// Parameters

/// `;name[=value]` parameters after a URI or header value, parsed on demand.
#[derive(Clone, Copy, Debug, Default)]
pub struct Params<'a> {
    /// Raw text starting at the first `;` (or empty).
    pub raw: &'a [u8],
}

/// One parameter and the text after it.
type ParamStep<'a> = (&'a [u8], Option<&'a [u8]>, &'a [u8]);

/// Parse the parameter at the start of `s` (`LWS ; LWS name [LWS = LWS value]`).
/// `Ok(None)` when only LWS is left.
///
/// Fast path for the common `;name`, `;name=value` without LWS or quotes, followed by `;` or the end:
/// two table-driven spans, no LWS skipping. Everything else (including every error) goes to
/// `next_param_general`, which gives the same result for the inputs the fast path accepts.
#[inline(always)]
fn next_param(s: &[u8]) -> Result<Option<ParamStep<'_>>, HeaderError> {
    match s {
        [] => return Ok(None),
        [b';', rest @ ..] => {
            let n = span(rest, PARAM_CHAR);
            if n > 0 {
                let (name, after) = rest.split_at(n);
                match after {
                    [] | [b';', ..] => return Ok(Some((name, None, after))),
                    [b'=', v @ ..] => {
                        let m = span(v, PARAM_CHAR);
                        if m > 0 {
                            let (value, after) = v.split_at(m);
                            return Ok(Some((name, Some(value), after)));
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
    next_param_general(s)
}

#[inline(never)]
fn next_param_general(s: &[u8]) -> Result<Option<ParamStep<'_>>, HeaderError> {
    let s = skip_lws(s);
    let Some((&first, s)) = s.split_first() else {
        return Ok(None);
    };
    if first != b';' {
        return Err(HeaderError::Malformed);
    }
    let s = skip_lws(s);
    let n = span(s, PARAM_CHAR);
    if n == 0 {
        return Err(HeaderError::Malformed);
    }
    let (name, rest) = s.split_at(n);
    let after_name = skip_lws(rest);
    let Some(after_eq) = after_name.strip_prefix(b"=") else {
        return Ok(Some((name, None, rest)));
    };
    let v = skip_lws(after_eq);
    if v.first() == Some(&b'"') {
        let q = quoted_len(v)?;
        return Ok(Some((name, Some(&v[1..q - 1]), &v[q..])));
    }
    let n = span(v, PARAM_CHAR);
    if n == 0 {
        return Err(HeaderError::Malformed);
    }
    Ok(Some((name, Some(&v[..n]), &v[n..])))
}

/// What the Via's response needs from its parameters, noted by [`validate_params`] on its way.
#[derive(Clone, Copy, Debug, Default)]
struct ParamFacts<'a> {
    /// A `received` parameter is present (any case, with or without a value).
    has_received: bool,
    /// The name of the first `rport` parameter without a value.
    bare_rport: Option<&'a [u8]>,
}

/// Check that `s` is exactly `*(LWS ";" LWS param)` followed by optional LWS. One loop for every
/// parameter list, Via's or not (Via's facts cost a length compare per parameter elsewhere): one copy of
/// the code to fetch when a REGISTER starts with cold caches.
fn validate_params(mut s: &[u8]) -> Result<ParamFacts<'_>, HeaderError> {
    let mut facts = ParamFacts::default();
    while let Some((name, value, rest)) = next_param(s)? {
        if name.eq_ignore_ascii_case(b"received") {
            facts.has_received = true;
        } else if value.is_none()
            && facts.bare_rport.is_none()
            && name.eq_ignore_ascii_case(b"rport")
        {
            facts.bare_rport = Some(name);
        }
        s = rest;
    }
    Ok(facts)
}

impl<'a> Params<'a> {
    /// Value of the named parameter: `Some(Some(v))` with `name=v` (quotes removed when quoted, escapes
    /// inside the quoted string left as they are), `Some(None)` for a bare `name`, `None` when absent.
    #[inline]
    pub fn get(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
    /// Every parameter, in order, as (name, value) with the same value rules as `get`.
    /// Iteration stops at the first malformed parameter.
    pub fn iter(&self) -> ParamIter<'a> {
        ParamIter { rest: self.raw }
    }
}

pub struct ParamIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);
    fn next(&mut self) -> Option<Self::Item> {
        match next_param(self.rest) {
            Ok(Some((name, value, rest))) => {
                self.rest = rest;
                Some((name, value))
            }
            _ => {
                self.rest = &[];
                None
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// name-addr / addr-spec

/// `[display-name] <uri> *(;param)` or `addr-spec *(;param)` (RFC 3261 §20.10 rules: without angle
/// brackets, `;params` belong to the header, not to the URI, and the URI cannot contain `,` `?` `;`).
#[derive(Clone, Copy, Debug)]
pub struct NameAddr<'a> {
    /// Display name without quotes (escapes untouched); None when absent.
    pub display: Option<&'a [u8]>,
    /// The URI text only (without `<` `>`).
    pub uri: &'a [u8],
    /// Header parameters after the URI (`;tag=..`, `;expires=..`, `;q=..`, ...).
    pub params: Params<'a>,
}

/// `s` starts with `<`: the URI inside and the text after `>`.
fn angle_uri(s: &[u8]) -> Result<(&[u8], &[u8]), HeaderError> {
    debug_assert_eq!(s.first(), Some(&b'<'));
    let gt = memchr(b'>', s).ok_or(HeaderError::UnbalancedAngle)?;
    Ok((&s[1..gt], &s[gt + 1..]))
}

/// A URI as it may appear in a header: `scheme ":" ...` with no space, control or delimiter characters.
fn check_uri_text(uri: &[u8]) -> Result<(), HeaderError> {
    check_scheme(uri)?;
    if span_uri_text(uri) != uri.len() {
        return Err(HeaderError::Malformed);
    }
    Ok(())
}

/// `uri` starts with `scheme ":"`.
#[inline(always)]
fn check_scheme(uri: &[u8]) -> Result<(), HeaderError> {
    // `sip:` (any case) first: the usual scheme, one comparison.
    if let [s, i, p, b':', ..] = uri {
        if (*s | 0x20) == b's' && (*i | 0x20) == b'i' && (*p | 0x20) == b'p' {
            return Ok(());
        }
    }
    let scheme_len = span(uri, SCHEME);
    let scheme_ok =
        scheme_len > 0 && uri[0].is_ascii_alphabetic() && uri.get(scheme_len) == Some(&b':');
    if !scheme_ok {
        return Err(HeaderError::Malformed);
    }
    Ok(())
}

/// Characters allowed in an unquoted display name: token characters, LWS between tokens, and (liberally)
/// UTF-8 bytes, which real user agents send unquoted.
#[inline]
fn is_display_char(b: u8) -> bool {
    TOKEN.has(b) || is_lws(b) || b >= 0x80
}

/// A name-addr without display name: `uri` and its header params `after` (checked here).
#[inline]
fn bare_name_addr<'a>(uri: &'a [u8], after: &'a [u8]) -> Result<NameAddr<'a>, HeaderError> {
    validate_params(after)?;
    Ok(NameAddr {
        display: None,
        uri,
        params: Params {
            raw: skip_lws(after),
        },
    })
}

/// Parse one name-addr / addr-spec with its header parameters (From, To, one Contact, one Path entry).
pub fn parse_name_addr(value: &[u8]) -> Result<NameAddr<'_>, HeaderError> {
    let v = trim_lws(value);
    // Fast path: `<uri>` with no display name. One span over URI_TEXT finds the `>` and checks the URI
    // text at once (`>` is not URI_TEXT, so the span stops at the first `>` exactly as `angle_uri` does).
    if let [b'<', inner @ ..] = v {
        let n = span_uri_text(inner);
        if let [b'>', after @ ..] = &inner[n..] {
            let uri = &inner[..n];
            check_scheme(uri)?;
            return bare_name_addr(uri, after);
        }
    }
    // Fast path: an addr-spec `sip:...` (any case) up to `;`, LWS or the end. ADDR_SPEC is URI_TEXT without
    // `;` `,` `?`, so one span both finds the end `parse_name_addr_general` would find and does its checks.
    if let [p0, p1, p2, b':', ..] = v {
        if (p0 | 0x20) == b's' && (p1 | 0x20) == b'i' && (p2 | 0x20) == b'p' {
            let n = span(v, ADDR_SPEC);
            let (uri, after) = v.split_at(n);
            if matches!(
                after.first(),
                None | Some(b';' | b' ' | b'\t' | b'\r' | b'\n')
            ) {
                return bare_name_addr(uri, after);
            }
        }
    }
    parse_name_addr_general(v)
}

/// `parse_name_addr` for everything but `<uri>...` (`v` already trimmed).
fn parse_name_addr_general(v: &[u8]) -> Result<NameAddr<'_>, HeaderError> {
    let (display, uri, after) = match v.first() {
        None => return Err(HeaderError::Malformed),
        Some(b'"') => {
            let q = quoted_len(v)?;
            let rest = skip_lws(&v[q..]);
            if rest.first() != Some(&b'<') {
                return Err(HeaderError::Malformed);
            }
            let (uri, after) = angle_uri(rest)?;
            (Some(&v[1..q - 1]), uri, after)
        }
        Some(_) => {
            let d = v.iter().take_while(|&&b| is_display_char(b)).count();
            if v.get(d) == Some(&b'<') {
                let display = trim_lws(&v[..d]);
                let (uri, after) = angle_uri(&v[d..])?;
                ((!display.is_empty()).then_some(display), uri, after)
            } else {
                // addr-spec: the URI ends at the first `;` (header parameters) or LWS.
                let end = v
                    .iter()
                    .position(|&b| b == b';' || is_lws(b))
                    .unwrap_or(v.len());
                let uri = &v[..end];
                if uri.iter().any(|&b| b == b'?' || b == b',') {
                    return Err(HeaderError::Malformed);
                }
                (None, uri, &v[end..])
            }
        }
    };
    check_uri_text(uri)?;
    validate_params(after)?;
    Ok(NameAddr {
        display,
        uri,
        params: Params {
            raw: skip_lws(after),
        },
    })
}

// ---------------------------------------------------------------------------------------------
// Lists and Contact

/// One element of a Contact header value.
#[derive(Clone, Copy, Debug)]
pub enum ContactValue<'a> {
    /// `Contact: *`
    Star,
    Addr(NameAddr<'a>),
}

/// Most elements `split_list` yields from one header value; one more is `Err(TooMany)`. Bounds the work a
/// single header line can cause (a datagram of commas would otherwise be thousands of empty elements).
pub const MAX_LIST_ELEMENTS: usize = 128;

/// Split a comma-separated list header value (Contact, Path, Via, Require, Supported) into elements,
/// honouring quoted strings and `<...>` so commas inside them do not split.
/// An empty value has no element; empty elements (`a,,b`, `a,`) are yielded as empty slices so that
/// typed parsers reject them.
#[inline]
pub fn split_list(value: &[u8]) -> ListIter<'_> {
    let v = trim_lws(value);
    ListIter {
        rest: v,
        done: v.is_empty(),
        yielded: 0,
    }
}

/// Fast path for the usual one-element list value: without `,` and `"` there is nothing to split and no
/// quoted string to skip, so the trimmed value is its only element, the one `split_list` yields after up to
/// three `memchr` scans. The one difference: an unbalanced `<` is an error in `split_list`, while here the
/// element parser sees it (and refuses it: `<` is not valid in a Via, and a name-addr needs its `>`).
pub fn sole_element(value: &[u8]) -> Option<&[u8]> {
    let v = trim_lws(value);
    (!v.is_empty() && memchr2(b',', b'"', v).is_none()).then_some(v)
}

pub struct ListIter<'a> {
    rest: &'a [u8],
    done: bool,
    /// Elements returned so far (bounded by MAX_LIST_ELEMENTS).
    yielded: usize,
}

impl<'a> Iterator for ListIter<'a> {
    /// Each element trimmed of LWS; `Err` for an unterminated quote or `<`, or past MAX_LIST_ELEMENTS
    /// (then iteration stops).
    type Item = Result<&'a [u8], HeaderError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.yielded == MAX_LIST_ELEMENTS {
            return self.fail(HeaderError::TooMany);
        }
        self.yielded += 1;
        let s = self.rest;
        let mut i = 0;
        while let Some(j) = memchr3(b',', b'"', b'<', &s[i..]) {
            i += j;
            match s[i] {
                b',' => {
                    self.rest = &s[i + 1..];
                    return Some(Ok(trim_lws(&s[..i])));
                }
                b'"' => match quoted_len(&s[i..]) {
                    Ok(n) => i += n,
                    Err(e) => return self.fail(e),
                },
                _ => match memchr(b'>', &s[i..]) {
                    Some(n) => i += n + 1,
                    None => return self.fail(HeaderError::UnbalancedAngle),
                },
            }
        }
        self.done = true;
        Some(Ok(trim_lws(s)))
    }
}

impl<'a> ListIter<'a> {
    fn fail(&mut self, e: HeaderError) -> Option<Result<&'a [u8], HeaderError>> {
        self.done = true;
        Some(Err(e))
    }
}

/// Parse one Contact list element (from `split_list`): `*` or a name-addr.
pub fn parse_contact(element: &[u8]) -> Result<ContactValue<'_>, HeaderError> {
    let e = trim_lws(element);
    if e == b"*" {
        return Ok(ContactValue::Star);
    }
    parse_name_addr(e).map(ContactValue::Addr)
}

// ---------------------------------------------------------------------------------------------
// Numbers

/// Decimal digits (already checked to be non-empty ASCII digits) to u32.
fn digits_to_u32(d: &[u8]) -> Result<u32, HeaderError> {
    d.iter().try_fold(0u32, |acc, &b| {
        acc.checked_mul(10)
            .and_then(|a| a.checked_add(u32::from(b - b'0')))
            .ok_or(HeaderError::NumberOutOfRange)
    })
}

/// CSeq: `number LWS method`. The number must fit in 32 bits (RFC 3261 §8.1.1.5, RFC 4475 scalar02).
pub fn parse_cseq(value: &[u8]) -> Result<(u32, &[u8]), HeaderError> {
    let v = trim_lws(value);
    // Fast path: `<digits> REGISTER`, the CSeq of every REGISTER (same result as the general path below).
    if let Some(digits) = v.strip_suffix(b" REGISTER") {
        if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) {
            return Ok((digits_to_u32(digits)?, &v[v.len() - 8..]));
        }
    }
    parse_cseq_general(v)
}

/// `parse_cseq` for any method and spacing (`v` already trimmed).
fn parse_cseq_general(v: &[u8]) -> Result<(u32, &[u8]), HeaderError> {
    let n = v.iter().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 {
        return Err(HeaderError::Malformed);
    }
    let rest = &v[n..];
    let method = skip_lws(rest);
    if method.len() == rest.len() || method.is_empty() || span(method, TOKEN) != method.len() {
        return Err(HeaderError::Malformed);
    }
    Ok((digits_to_u32(&v[..n])?, method))
}

/// A non-negative decimal that fits in u32 (Expires, Content-Length, Max-Forwards, expires param).
/// Expires values above u32::MAX are NumberOutOfRange; callers cap them.
#[inline]
pub fn parse_u32(value: &[u8]) -> Result<u32, HeaderError> {
    let v = trim_lws(value);
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return Err(HeaderError::Malformed);
    }
    digits_to_u32(v)
}

/// q-value (`0`, `0.5`, `1.000`) in thousandths, 0..=1000 (RFC 3261 §20.10 qvalue grammar).
pub fn parse_qvalue(value: &[u8]) -> Result<u16, HeaderError> {
    let v = trim_lws(value);
    let (int, frac) = match v.split_first() {
        Some((&i @ (b'0' | b'1'), rest)) => match rest.split_first() {
            None => (i, &[][..]),
            Some((b'.', frac)) if frac.len() <= 3 => (i, frac),
            _ => return Err(HeaderError::Malformed),
        },
        _ => return Err(HeaderError::Malformed),
    };
    if int == b'1' {
        return if frac.iter().all(|&b| b == b'0') {
            Ok(1000)
        } else {
            Err(HeaderError::Malformed)
        };
    }
    let mut thousandths = 0u16;
    for k in 0..3 {
        let digit = match frac.get(k) {
            None => 0,
            Some(b) if b.is_ascii_digit() => u16::from(b - b'0'),
            Some(_) => return Err(HeaderError::Malformed),
        };
        thousandths = thousandths * 10 + digit;
    }
    Ok(thousandths)
}

// ---------------------------------------------------------------------------------------------
// Via

/// One Via element (`SIP/2.0/UDP host[:port];params`).
#[derive(Clone, Copy, Debug)]
pub struct Via<'a> {
    /// Transport token as written (UDP, TCP, TLS, SCTP, WS, ...).
    pub transport: &'a [u8],
    pub host: &'a [u8],
    pub port: Option<u16>,
    pub params: Params<'a>,
    /// A `received` parameter is present (any case, with or without a value).
    pub has_received: bool,
    /// The name of the first `rport` parameter without a value, as a subslice of the element (the
    /// response's top Via gives it the source port there). Both facts come from the parse's own pass over
    /// the parameters, so the response writer needs no second pass.
    pub bare_rport: Option<&'a [u8]>,
}

impl<'a> Via<'a> {
    pub fn branch(&self) -> Option<&'a [u8]> {
        self.params.get(b"branch").flatten()
    }
}

/// A non-empty token at the start of `s` and the text after it.
fn take_token(s: &[u8]) -> Result<(&[u8], &[u8]), HeaderError> {
    match span(s, TOKEN) {
        0 => Err(HeaderError::Malformed),
        n => Ok(s.split_at(n)),
    }
}

/// `SWS "/" SWS` at the start of `s`; the text after it.
fn take_slash(s: &[u8]) -> Result<&[u8], HeaderError> {
    skip_lws(s)
        .strip_prefix(b"/")
        .map(skip_lws)
        .ok_or(HeaderError::Malformed)
}

/// `sent-protocol` (`SIP / version / transport`, LWS allowed around the slashes): the transport and the
/// text after it.
fn sent_protocol(s: &[u8]) -> Result<(&[u8], &[u8]), HeaderError> {
    let (protocol, s) = take_token(s)?;
    if !protocol.eq_ignore_ascii_case(b"SIP") {
        return Err(HeaderError::Malformed);
    }
    let (_version, s) = take_token(take_slash(s)?)?;
    take_token(take_slash(s)?)
}

/// Parse one Via element (after `split_list`).
///
/// `sent-protocol LWS sent-by *(SEMI via-params)` with LWS allowed around `/` and `:`. The protocol name
/// must be `SIP` (any case); the version is only checked to be a token, so that a request with an
/// unsupported version (RFC 4475 badvers) can still be answered with 505 along its Via.
pub fn parse_via(element: &[u8]) -> Result<Via<'_>, HeaderError> {
    let s = trim_lws(element);
    let (transport, s) = match s {
        // Fast path: `SIP/2.0/` without LWS (the protocol and version tokens end at the `/`).
        [p0, p1, p2, b'/', b'2', b'.', b'0', b'/', rest @ ..]
            if (p0 | 0x20) == b's' && (p1 | 0x20) == b'i' && (p2 | 0x20) == b'p' =>
        {
            take_token(skip_lws(rest))?
        }
        _ => sent_protocol(s)?,
    };
    let sent_by = skip_lws(s);
    if sent_by.len() == s.len() {
        return Err(HeaderError::Malformed);
    }
    let (host, s) = super::uri::take_host(sent_by).ok_or(HeaderError::Malformed)?;
    let (port, s) = match skip_lws(s).strip_prefix(b":") {
        Some(p) => {
            let (port, rest) = super::uri::take_port(skip_lws(p)).ok_or(HeaderError::Malformed)?;
            (Some(port), rest)
        }
        None => (None, s),
    };
    let ParamFacts {
        has_received,
        bare_rport,
    } = validate_params(s)?;
    Ok(Via {
        transport,
        host,
        port,
        params: Params { raw: skip_lws(s) },
        has_received,
        bare_rport,
    })
}

/// Case-insensitive option-tag membership in a comma-separated list value (Require, Supported).
#[inline]
pub fn has_option_tag(list_value: &[u8], tag: &[u8]) -> bool {
    split_list(list_value)
        .flatten()
        .any(|t| t.eq_ignore_ascii_case(tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// `sole_element` gives the element `split_list` gives; where `split_list` fails instead (an
        /// unbalanced `<`), the Via and name-addr parsers refuse the element.
        #[test]
        fn sole_element_agrees_with_split_list(
            v in proptest::collection::vec(
                proptest::sample::select(b"<>;=sip:a@b.c/2.0UDP \t\r\n*,\"".to_vec()), 0..24)
        ) {
            if let Some(element) = sole_element(&v) {
                let split: Vec<_> = split_list(&v).collect();
                match split.as_slice() {
                    [Ok(e)] => proptest::prop_assert_eq!(*e, element),
                    [Err(_)] => {
                        proptest::prop_assert!(parse_via(element).is_err());
                        proptest::prop_assert!(parse_name_addr(element).is_err());
                    }
                    other => proptest::prop_assert!(false, "split_list gave {:?}", other),
                }
            }
        }
    }

    /// The `<digits> REGISTER` fast path of `parse_cseq` agrees with the general grammar.
    #[test]
    fn cseq_fast_path_matches_general_path() {
        for v in [
            &b"1 REGISTER"[..],
            b"4294967295 REGISTER",
            b"4294967296 REGISTER",
            b"00012 REGISTER",
            b" REGISTER",
            b"x1 REGISTER",
            b"1x REGISTER",
            b"1  REGISTER",
            b"1\tREGISTER",
            b" 7 REGISTER ",
            b"1 REGISTERS",
            b"1 register",
            b"REGISTER",
            b"1 INVITE",
        ] {
            let general = parse_cseq_general(trim_lws(v));
            assert_eq!(parse_cseq(v), general, "{}", String::from_utf8_lossy(v));
        }
    }

    fn params(raw: &[u8]) -> Params<'_> {
        Params { raw }
    }

    #[test]
    fn params_get_and_iter() {
        let p = params(b";tag=abc ; LR;expires = 60;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\"");
        assert_eq!(p.get(b"tag"), Some(Some(&b"abc"[..])));
        assert_eq!(p.get(b"lr"), Some(None));
        assert_eq!(p.get(b"Expires"), Some(Some(&b"60"[..])));
        assert_eq!(
            p.get(b"+sip.instance"),
            Some(Some(
                &b"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"[..]
            ))
        );
        assert_eq!(p.get(b"missing"), None);
        let names: Vec<&[u8]> = p.iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            vec![&b"tag"[..], b"LR", b"expires", b"+sip.instance"]
        );
    }

    #[test]
    fn params_quoted_value_keeps_escapes_and_commas() {
        let p = params(br#";x="a\"b, c;d";y=1"#);
        assert_eq!(p.get(b"x"), Some(Some(&br#"a\"b, c;d"#[..])));
        assert_eq!(p.get(b"y"), Some(Some(&b"1"[..])));
    }

    #[test]
    fn params_ipv6_values_and_folding() {
        let p = params(b";received=[2001:db8::1];\r\n  maddr = 2001:db8::2");
        assert_eq!(p.get(b"received"), Some(Some(&b"[2001:db8::1]"[..])));
        assert_eq!(p.get(b"maddr"), Some(Some(&b"2001:db8::2"[..])));
    }

    #[test]
    fn params_iteration_stops_at_garbage() {
        let p = params(b";a=1 junk;b=2");
        assert_eq!(p.iter().count(), 1);
        assert_eq!(p.get(b"b"), None);
        assert_eq!(params(b";;a").iter().count(), 0);
        assert_eq!(params(b";a=\"open").iter().count(), 0);
        assert_eq!(params(b"").iter().count(), 0);
        let checked = |s: &'static [u8]| validate_params(s).map(|_| ());
        assert_eq!(checked(b";a=\"open"), Err(HeaderError::UnterminatedQuote));
        assert_eq!(checked(b";a="), Err(HeaderError::Malformed));
        assert_eq!(checked(b"x"), Err(HeaderError::Malformed));
        assert_eq!(checked(b"  "), Ok(()));
    }

    #[test]
    fn via_param_facts() {
        let text: &[u8] = b";rport=5 ; RPORT;branch=z;rport;Received=\"x\"";
        let facts = validate_params(text).unwrap();
        assert!(facts.has_received);
        // The first bare rport, as a subslice of the text (not the valued one, not the later one).
        let rport = facts.bare_rport.unwrap();
        assert_eq!(rport, b"RPORT");
        assert_eq!(rport.as_ptr() as usize - text.as_ptr() as usize, 11);
        let none = validate_params(b";received;rport=1;branch=z").unwrap();
        assert!(none.has_received && none.bare_rport.is_none());
        let neither = validate_params(b";receivedx;rports").unwrap();
        assert!(!neither.has_received && neither.bare_rport.is_none());
        let via = parse_via(b"SIP/2.0/UDP h;rport;received=1.2.3.4").unwrap();
        assert!(via.has_received);
        assert_eq!(via.bare_rport, Some(&b"rport"[..]));
    }

    #[test]
    fn name_addr_with_quoted_display() {
        let na = parse_name_addr(br#" "J Rosenberg \\\""  <sip:jdrosen@example.com>;tag=98asjd8 "#)
            .unwrap();
        assert_eq!(na.display, Some(&br#"J Rosenberg \\\""#[..]));
        assert_eq!(na.uri, b"sip:jdrosen@example.com");
        assert_eq!(na.params.get(b"tag"), Some(Some(&b"98asjd8"[..])));
    }

    #[test]
    fn name_addr_with_token_display_and_no_space() {
        let na = parse_name_addr(b"caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(na.display, Some(&b"caller"[..]));
        assert_eq!(na.uri, b"sip:caller@example.com");
        let na = parse_name_addr(b"A. G. Bell <sip:a.g.bell@example.com>").unwrap();
        assert_eq!(na.display, Some(&b"A. G. Bell"[..]));
        let na = parse_name_addr(b"<sip:a@b;lr>").unwrap();
        assert_eq!(na.display, None);
        assert_eq!(na.uri, b"sip:a@b;lr");
        assert!(na.params.raw.is_empty());
    }

    #[test]
    fn name_addr_folded_params() {
        let na = parse_name_addr(b"\"x\" <sip:a@b>\r\n  ;\r\n  tag = 98asjd8").unwrap();
        assert_eq!(na.params.get(b"tag"), Some(Some(&b"98asjd8"[..])));
    }

    #[test]
    fn addr_spec_params_belong_to_header() {
        // RFC 4475 cparam01: unknownparam is a contact-param, not a URI param.
        let na = parse_name_addr(b"sip:+19725552222@gw1.example.net;unknownparam").unwrap();
        assert_eq!(na.uri, b"sip:+19725552222@gw1.example.net");
        assert_eq!(na.params.get(b"unknownparam"), Some(None));
        // cparam02: inside <> it stays a URI param.
        let na = parse_name_addr(b"<sip:+19725552222@gw1.example.net;unknownparam>").unwrap();
        assert_eq!(na.uri, b"sip:+19725552222@gw1.example.net;unknownparam");
        assert_eq!(na.params.get(b"unknownparam"), None);
        let na = parse_name_addr(b" sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n")
            .unwrap();
        assert_eq!(na.uri, b"sip:vivekg@chair-dnrc.example.com");
        assert_eq!(na.params.get(b"tag"), Some(Some(&b"1918181833n"[..])));
    }

    /// The `<uri>` and `sip:` fast paths give what the general parser gives.
    #[test]
    fn name_addr_fast_paths_match_general() {
        type Key<'a> = Result<(Option<&'a [u8]>, &'a [u8], &'a [u8]), HeaderError>;
        fn key(r: Result<NameAddr<'_>, HeaderError>) -> Key<'_> {
            r.map(|na| (na.display, na.uri, na.params.raw))
        }
        let parts: [&[u8]; 14] = [
            b"<sip:a@b>",
            b"sip:a@b",
            b"SIP:",
            b"<",
            b">",
            b"a@b",
            b";",
            b"x=1",
            b" ",
            b"?",
            b",",
            b"\"",
            b"\r\n ",
            b"tel:1",
        ];
        let mut inputs: Vec<Vec<u8>> = vec![vec![]];
        for _ in 0..4 {
            let mut next = vec![];
            for s in &inputs {
                for p in parts {
                    let mut t = s.clone();
                    t.extend_from_slice(p);
                    next.push(t);
                }
            }
            inputs.extend(next);
            inputs.sort();
            inputs.dedup();
        }
        for s in &inputs {
            assert_eq!(
                key(parse_name_addr(s)),
                key(parse_name_addr_general(trim_lws(s))),
                "{}",
                String::from_utf8_lossy(s)
            );
        }
    }

    #[test]
    fn name_addr_errors() {
        // RFC 4475 regbadct: `?` in an addr-spec needs <>.
        assert_eq!(
            parse_name_addr(b"sip:user@example.com?Route=%3Csip:sip.example.com%3E").unwrap_err(),
            HeaderError::Malformed
        );
        // quotbal: unterminated quote.
        assert_eq!(
            parse_name_addr(b"\"Mr. J. User <sip:j.user@example.com>").unwrap_err(),
            HeaderError::UnterminatedQuote
        );
        // baddn: unquoted display name with a comma.
        assert_eq!(
            parse_name_addr(b"Bell, Alexander <sip:a.g.bell@example.com>;tag=43").unwrap_err(),
            HeaderError::Malformed
        );
        // badaspec: spaces inside <>.
        assert_eq!(
            parse_name_addr(b"\"Watson, Thomas\" < sip:t.watson@example.org >").unwrap_err(),
            HeaderError::Malformed
        );
        assert_eq!(
            parse_name_addr(b"<sip:a@b").unwrap_err(),
            HeaderError::UnbalancedAngle
        );
        assert_eq!(
            parse_name_addr(b"\"x\" sip:a@b").unwrap_err(),
            HeaderError::Malformed
        );
        assert_eq!(parse_name_addr(b"").unwrap_err(), HeaderError::Malformed);
        assert_eq!(parse_name_addr(b"<>").unwrap_err(), HeaderError::Malformed);
        assert_eq!(
            parse_name_addr(b"<sip:a@b>;;;;").unwrap_err(),
            HeaderError::Malformed
        );
        assert_eq!(
            parse_name_addr(b"<sip:a@b> junk").unwrap_err(),
            HeaderError::Malformed
        );
        assert_eq!(
            parse_name_addr(b"<sip:a@b>;q=\"0.5").unwrap_err(),
            HeaderError::UnterminatedQuote
        );
        assert_eq!(
            parse_name_addr(b"sip:a@b,sip:c@d").unwrap_err(),
            HeaderError::Malformed
        );
        assert_eq!(
            parse_name_addr(b"user@host").unwrap_err(),
            HeaderError::Malformed
        );
        // Other schemes are fine here; `uri::parse_uri` decides about them.
        assert_eq!(
            parse_name_addr(b"isbn:2983792873").unwrap().uri,
            b"isbn:2983792873"
        );
    }

    #[test]
    fn split_list_honours_quotes_and_angles() {
        let v = b"\"a, b\" <sip:x@y;p=1,2>;q=0.5 , <sip:z@w>,sip:q@r";
        let items: Vec<_> = split_list(v).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            items,
            vec![
                &b"\"a, b\" <sip:x@y;p=1,2>;q=0.5"[..],
                b"<sip:z@w>",
                b"sip:q@r"
            ]
        );
        assert_eq!(split_list(b"").count(), 0);
        assert_eq!(split_list(b"  \r\n ").count(), 0);
        let items: Vec<_> = split_list(b"a,,b,").collect::<Result<_, _>>().unwrap();
        assert_eq!(items, vec![&b"a"[..], b"", b"b", b""]);
        let mut it = split_list(b"a, \"open, b");
        assert_eq!(it.next(), Some(Ok(&b"a"[..])));
        assert_eq!(it.next(), Some(Err(HeaderError::UnterminatedQuote)));
        assert_eq!(it.next(), None);
        let mut it = split_list(b"<sip:a, b");
        assert_eq!(it.next(), Some(Err(HeaderError::UnbalancedAngle)));
        assert_eq!(it.next(), None);
    }

    #[test]
    fn split_list_is_bounded() {
        let at_limit = vec![b','; MAX_LIST_ELEMENTS - 1];
        assert!(split_list(&at_limit).all(|e| e == Ok(&b""[..])));
        assert_eq!(split_list(&at_limit).count(), MAX_LIST_ELEMENTS);
        let over = vec![b','; MAX_LIST_ELEMENTS];
        let mut it = split_list(&over).skip(MAX_LIST_ELEMENTS);
        assert_eq!(it.next(), Some(Err(HeaderError::TooMany)));
        assert_eq!(it.next(), None);
    }

    #[test]
    fn contact_star_and_addr() {
        assert!(matches!(parse_contact(b" * "), Ok(ContactValue::Star)));
        assert!(matches!(
            parse_contact(b"*;expires=0"),
            Err(HeaderError::Malformed)
        ));
        match parse_contact(b"<sip:a@b>;expires=60;q=0.7").unwrap() {
            ContactValue::Addr(na) => {
                assert_eq!(na.params.get(b"expires"), Some(Some(&b"60"[..])));
                assert_eq!(
                    parse_qvalue(na.params.get(b"q").flatten().unwrap()),
                    Ok(700)
                );
            }
            ContactValue::Star => panic!("not a star"),
        }
    }

    #[test]
    fn cseq() {
        assert_eq!(parse_cseq(b"1 REGISTER"), Ok((1, &b"REGISTER"[..])));
        assert_eq!(parse_cseq(b"0009\r\n  INVITE"), Ok((9, &b"INVITE"[..])));
        assert_eq!(
            parse_cseq(b"4294967295 REGISTER"),
            Ok((u32::MAX, &b"REGISTER"[..]))
        );
        // RFC 4475 scalar02.
        assert_eq!(
            parse_cseq(b"36893488147419103232 REGISTER"),
            Err(HeaderError::NumberOutOfRange)
        );
        assert_eq!(
            parse_cseq(b"4294967296 REGISTER"),
            Err(HeaderError::NumberOutOfRange)
        );
        assert_eq!(parse_cseq(b"1REGISTER"), Err(HeaderError::Malformed));
        assert_eq!(parse_cseq(b"1 "), Err(HeaderError::Malformed));
        assert_eq!(parse_cseq(b"REGISTER"), Err(HeaderError::Malformed));
        assert_eq!(parse_cseq(b"-1 REGISTER"), Err(HeaderError::Malformed));
        assert_eq!(parse_cseq(b"1 REGISTER x"), Err(HeaderError::Malformed));
    }

    #[test]
    fn u32_values() {
        assert_eq!(parse_u32(b" 3600 "), Ok(3600));
        assert_eq!(parse_u32(b"0068"), Ok(68));
        assert_eq!(parse_u32(b"4294967295"), Ok(u32::MAX));
        assert_eq!(parse_u32(b"4294967296"), Err(HeaderError::NumberOutOfRange));
        assert_eq!(parse_u32(&[b'1'; 100]), Err(HeaderError::NumberOutOfRange));
        assert_eq!(parse_u32(b"-999"), Err(HeaderError::Malformed));
        assert_eq!(parse_u32(b"+1"), Err(HeaderError::Malformed));
        assert_eq!(parse_u32(b"1 2"), Err(HeaderError::Malformed));
        assert_eq!(parse_u32(b""), Err(HeaderError::Malformed));
    }

    #[test]
    fn qvalues() {
        for (text, q) in [
            (&b"0"[..], 0),
            (b"0.", 0),
            (b"0.5", 500),
            (b"0.05", 50),
            (b"0.001", 1),
            (b"0.999", 999),
            (b"1", 1000),
            (b"1.", 1000),
            (b"1.000", 1000),
            (b" 0.7 ", 700),
        ] {
            assert_eq!(
                parse_qvalue(text),
                Ok(q),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
        for text in [
            &b"1.001"[..],
            b"0.1234",
            b"2",
            b"0.a",
            b".5",
            b"",
            b"01",
            b"1.0000",
            b"0,5",
        ] {
            assert_eq!(
                parse_qvalue(text),
                Err(HeaderError::Malformed),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn via_plain_and_with_lws() {
        let v = parse_via(b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776;rport").unwrap();
        assert_eq!(v.transport, b"UDP");
        assert_eq!(v.host, b"192.0.2.1");
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.branch(), Some(&b"z9hG4bK776"[..]));
        assert_eq!(v.params.get(b"rport"), Some(None));

        let v = parse_via(b"SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(
            (v.transport, v.host, v.port),
            (&b"UDP"[..], &b"192.0.2.2"[..], None)
        );
        assert_eq!(v.branch(), Some(&b"390skdjuw"[..]));

        let v = parse_via(
            b"SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8",
        )
        .unwrap();
        assert_eq!(
            (v.transport, v.host),
            (&b"TCP"[..], &b"spindle.example.com"[..])
        );
        assert_eq!(v.branch(), Some(&b"z9hG4bK9ikj8"[..]));

        let v =
            parse_via(b"sip/2.0/TLS [2001:db8::9] : 5061 ;branch=z9hG4bKx;received=[2001:db8::1]")
                .unwrap();
        assert_eq!(
            (v.transport, v.host, v.port),
            (&b"TLS"[..], &b"[2001:db8::9]"[..], Some(5061))
        );
        assert_eq!(v.params.get(b"received"), Some(Some(&b"[2001:db8::1]"[..])));

        // An unsupported version still parses (badvers: the 505 goes along this Via).
        assert_eq!(
            parse_via(b"SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw")
                .unwrap()
                .host,
            b"c.example.com"
        );
    }

    #[test]
    fn via_errors() {
        for bad in [
            &b"SIP/2.0/UDP 192.0.2.15;;"[..], // badinv01
            b";",
            b"",
            b"SIP/2.0 192.0.2.1",
            b"SIP/2.0/UDP",
            b"SIP/2.0/UDP192.0.2.1",
            b"HTTP/1.1/TCP host",
            b"SIP/2.0/UDP host:",
            b"SIP/2.0/UDP host:65536",
            b"SIP/2.0/UDP host:123456",
            b"SIP/2.0/UDP [2001:db8::1",
            b"SIP/2.0/UDP []",
            b"SIP/2.0/UDP host junk",
            b"SIP/2.0/UDP ho$t",
        ] {
            assert!(parse_via(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(
            parse_via(b"SIP/2.0/UDP h;branch=\"x").unwrap_err(),
            HeaderError::UnterminatedQuote
        );
    }

    #[test]
    fn option_tags() {
        assert!(has_option_tag(b"path, GRUU ,outbound", b"gruu"));
        assert!(!has_option_tag(b"path, gruu", b"outbound"));
        assert!(!has_option_tag(b"", b"path"));
    }
}
