//! Client responses: the status and the few fields a client acts on, borrowed from the datagram.
//!
//! Responses are framed by the same parser as requests ([`parse`](crate::parse)), so a response
//! is read by the rules the registrar applies to what it receives; input bytes come from the network
//! and garbage yields an error, never a panic.

use std::mem::MaybeUninit;

use thiserror::Error;

use crate::header::{parse_contact, parse_cseq, parse_via, split_list, ContactValue};
use crate::parse::{
    parse_message_into, FramingError, HeaderName, Message, ParseLimits, StartLine, MAX_HEADERS,
};

/// Why a datagram is not a response a client can use.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum ResponseError {
    #[error("not a SIP message: {0}")]
    Framing(#[from] FramingError),
    #[error("a request, not a response")]
    NotAResponse,
    #[error("message ends before the header section ends")]
    Truncated,
}

/// Most challenges kept from one response; more would be a hostile or broken server.
pub const MAX_CHALLENGES: usize = 4;

/// The fields of a response a client acts on, borrowed from the datagram.
#[derive(Debug, Default)]
pub struct Response<'a> {
    pub status: u16,
    /// `branch` of the top Via: identifies the client transaction.
    pub branch: Option<&'a [u8]>,
    /// The CSeq number.
    pub cseq: Option<u32>,
    /// `WWW-Authenticate` values (the first [`MAX_CHALLENGES`]).
    pub www_authenticate: [&'a [u8]; MAX_CHALLENGES],
    pub www_count: usize,
    /// `Proxy-Authenticate` values (the first [`MAX_CHALLENGES`]).
    pub proxy_authenticate: [&'a [u8]; MAX_CHALLENGES],
    pub proxy_count: usize,
}

impl<'a> Response<'a> {
    /// The challenges to answer: the `WWW-Authenticate` ones, else the `Proxy-Authenticate` ones
    /// (see [`Challenge::pick_strongest`](crate::digest::Challenge::pick_strongest)).
    pub fn challenges(&self) -> &[&'a [u8]] {
        if self.www_count > 0 {
            &self.www_authenticate[..self.www_count]
        } else {
            &self.proxy_authenticate[..self.proxy_count]
        }
    }
}

/// Framing limits for a response: no limit beyond the datagram's own size and the parser's header
/// capacity ([`MAX_HEADERS`]).
const LIMITS: ParseLimits = ParseLimits {
    max_message_bytes: usize::MAX,
    max_headers: MAX_HEADERS,
    max_line_bytes: usize::MAX,
};

/// Frames `datagram` into `slot`, requiring the empty line that ends the header section.
fn frame<'a, 'm>(
    datagram: &'a [u8],
    slot: &'m mut MaybeUninit<Message<'a>>,
) -> Result<&'m Message<'a>, ResponseError> {
    let msg = parse_message_into(datagram, &LIMITS, slot)?;
    if !header_section_complete(datagram, msg) {
        return Err(ResponseError::Truncated);
    }
    Ok(msg)
}

/// Whether the header section of `msg`, framed from `datagram`, ended with its empty line (the framer
/// also takes a datagram that stops after a header line): the body, a slice of the datagram, then
/// follows two line ends.
fn header_section_complete(datagram: &[u8], msg: &Message<'_>) -> bool {
    let body_start = (msg.body.as_ptr() as usize).wrapping_sub(datagram.as_ptr() as usize);
    datagram
        .get(..body_start)
        .is_some_and(|head| head.ends_with(b"\n\n") || head.ends_with(b"\n\r\n"))
}

/// Parses a response's status and the headers a client uses.
pub fn parse_response(datagram: &[u8]) -> Result<Response<'_>, ResponseError> {
    let mut slot = MaybeUninit::uninit();
    let msg = frame(datagram, &mut slot)?;
    let StartLine::Response { code } = msg.start else {
        return Err(ResponseError::NotAResponse);
    };
    let mut resp = Response {
        status: code,
        branch: msg.first(HeaderName::Via).and_then(top_branch),
        cseq: msg
            .first(HeaderName::CSeq)
            .and_then(|v| parse_cseq(v).ok())
            .map(|(n, _)| n),
        ..Response::default()
    };
    for h in msg.headers().filter(|h| h.name == HeaderName::Other) {
        if h.raw_name.eq_ignore_ascii_case(b"WWW-Authenticate") {
            if resp.www_count < MAX_CHALLENGES {
                resp.www_authenticate[resp.www_count] = h.value;
                resp.www_count += 1;
            }
        } else if h.raw_name.eq_ignore_ascii_case(b"Proxy-Authenticate")
            && resp.proxy_count < MAX_CHALLENGES
        {
            resp.proxy_authenticate[resp.proxy_count] = h.value;
            resp.proxy_count += 1;
        }
    }
    Ok(resp)
}

/// The `branch` of the first via-parm of a Via header value.
fn top_branch(value: &[u8]) -> Option<&[u8]> {
    let first = split_list(value).next()?.ok()?;
    parse_via(first).ok()?.branch()
}

/// The URIs of the Contacts a message lists (a 200 to a REGISTER: the bindings of the AoR); none
/// when the datagram cannot be framed.
pub fn contact_uris(datagram: &[u8]) -> Vec<&[u8]> {
    let mut slot = MaybeUninit::uninit();
    let Ok(msg) = frame(datagram, &mut slot) else {
        return Vec::new();
    };
    msg.all(HeaderName::Contact)
        .flat_map(split_list)
        .filter_map(|element| match parse_contact(element.ok()?) {
            Ok(ContactValue::Addr(na)) => Some(na.uri),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::request::parse_branch;
    use crate::digest::Challenge;

    #[test]
    fn parses_response_fields() {
        let msg = b"SIP/2.0 401 Unauthorized\r\nv: SIP/2.0/UDP 127.0.0.1:5080;rport=5080;branch=z9hG4bK-lg.1.2.3\r\nVia: SIP/2.0/UDP x;branch=other\r\nCSeq: 12 REGISTER\r\nWWW-Authenticate: Digest realm=\"r\", nonce=\"n\"\r\nWWW-Authenticate: Digest realm=\"r\", nonce=\"m\", algorithm=SHA-256\r\nContent-Length: 0\r\n\r\n";
        let r = parse_response(msg).expect("valid");
        assert_eq!(r.status, 401);
        assert_eq!(r.branch, Some(&b"z9hG4bK-lg.1.2.3"[..]));
        assert_eq!(r.cseq, Some(12));
        assert_eq!(r.challenges().len(), 2);
        let c = Challenge::pick_strongest(r.challenges().iter().copied()).expect("supported");
        assert_eq!(c.nonce, b"m");
        let msg = b"SIP/2.0 407 Proxy Authentication Required\r\nVia: SIP/2.0/UDP h;branch=b1, SIP/2.0/UDP g;branch=b2\r\nproxy-authenticate: Digest nonce=\"p\"\r\n\r\n";
        let r = parse_response(msg).expect("valid");
        assert_eq!((r.status, r.branch, r.cseq), (407, Some(&b"b1"[..]), None));
        assert_eq!(r.challenges(), [&b"Digest nonce=\"p\""[..]]);
    }

    #[test]
    fn requests_and_truncated_responses_are_refused() {
        let valid = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-lg.1.2.3\r\nCSeq: 1 REGISTER\r\nContact: <sip:a@b>\r\n\r\n";
        assert!(parse_response(valid).is_ok());
        assert!(parse_response(b"SIP/2.0 200 OK\n\n").is_ok());
        assert_eq!(
            parse_response(&valid[..valid.len() - 2]).err(),
            Some(ResponseError::Truncated)
        );
        assert_eq!(
            parse_response(b"SIP/2.0 200 OK\r\n").err(),
            Some(ResponseError::Truncated)
        );
        assert_eq!(
            parse_response(b"REGISTER sip:a SIP/2.0\r\n\r\n").err(),
            Some(ResponseError::NotAResponse)
        );
        assert_eq!(
            parse_response(b"SIP/2.0 abc OK\r\n\r\n").err(),
            Some(ResponseError::Framing(FramingError::Garbage))
        );
        assert_eq!(
            parse_response(b"").err(),
            Some(ResponseError::Framing(FramingError::Empty))
        );
    }

    #[test]
    fn lists_contacts() {
        let msg = b"SIP/2.0 200 OK\r\nContact: <sip:a@h:1>;expires=60, <sip:b@h:2>;expires=30\r\nm: <sip:c@h>\r\n\r\n";
        assert_eq!(
            contact_uris(msg),
            [&b"sip:a@h:1"[..], b"sip:b@h:2", b"sip:c@h"]
        );
        assert!(contact_uris(b"SIP/2.0 200 OK\r\n\r\n").is_empty());
        assert!(contact_uris(b"SIP/2.0 200 OK\r\nContact: <sip:a@b>\r\n").is_empty());
    }

    #[test]
    fn garbage_never_panics() {
        let samples: &[&[u8]] = &[
            b"",
            b"SIP/2.0",
            b"SIP/2.0 ",
            b"SIP/2.0 20",
            b"SIP/2.0 200",
            b"SIP/2.0 abc OK\r\n\r\n",
            b"SIP/2.0 099 x\r\n\r\n",
            b"SIP/2.0 200 OK\r\nVia",
            b"SIP/2.0 200 OK\r\nVia: ;;;;branch\r\nCSeq: 99999999999 R\r\n\r\n",
            b"SIP/2.0 200 OK\r\n:\r\n:::\r\n\r\n",
            b"\xff\xff\xff\r\n\r\n",
            b"SIP/2.0 200 OK\r\nContact: <<<>\r\n\r\n",
        ];
        for s in samples {
            let _ = parse_response(s);
            let _ = contact_uris(s);
        }
        // Every prefix of a valid response, then pseudo-random bytes.
        let valid = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-lg.1.2.3\r\nCSeq: 1 REGISTER\r\nContact: <sip:a@b>\r\n\r\n";
        for i in 0..valid.len() {
            let _ = parse_response(&valid[..i]);
            let _ = contact_uris(&valid[..i]);
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut buf = [0u8; 300];
        for _ in 0..5000 {
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = b"SIP/2.0 401\r\n:;=,\"<>Via branchz9hG4bK-lg.0123 "[(x % 45) as usize];
            }
            let n = (x % 300) as usize;
            if let Ok(r) = parse_response(&buf[..n]) {
                let _ = r.branch.and_then(parse_branch);
                let _ = Challenge::pick_strongest(r.challenges().iter().copied());
            }
            let _ = contact_uris(&buf[..n]);
        }
    }
}
