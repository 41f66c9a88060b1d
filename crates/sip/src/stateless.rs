//! The stateless responder: answers requests without keeping anything, for benchmarks and for testing
//! clients. It is the floor a registrar's own work is measured against, and a digest server for clients.
//!
//! Two answers, one module:
//! - [`answer_ok`]: a bare `200 OK` copying the Via, From, To, Call-ID and CSeq lines (long or compact
//!   names) by a quick line scan, and nothing else: no parsing beyond line starts. `corereg
//!   --stateless-stub` and `corereg-loadgen responder` without a challenge both answer with it, so both
//!   measure the same floor.
//! - [`answer_digest`]: parses the request, challenges one without credentials with a `401` (one
//!   `WWW-Authenticate` per algorithm offered) and, given a password lookup, verifies an answer (`200` or
//!   `403`). Its `200` lists the Contact with its expiry and tags the To.
//!
//! Responses (a start line with `SIP/`), ACKs and datagrams with no Via line get no answer; an answer
//! that does not fit the caller's buffer is not sent rather than truncated.

use crate::client::request::Writer;
use crate::digest::{self, Algorithm};
use crate::header::parse_name_addr;
use crate::parse::{parse_message, HeaderName, ParseLimits, StartLine};

/// Where an answer is written: a growable buffer or a bounded [`Writer`].
pub trait Sink {
    /// Appends `bytes`.
    fn append(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    #[inline]
    fn append(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Sink for Writer<'_> {
    #[inline]
    fn append(&mut self, bytes: &[u8]) {
        self.put(bytes);
    }
}

/// Header names copied into the bare `200 OK`, lower-case, with the colon, long and compact forms.
const COPIED: [&[u8]; 9] = [
    b"via:",
    b"v:",
    b"from:",
    b"f:",
    b"to:",
    b"t:",
    b"call-id:",
    b"i:",
    b"cseq:",
];

/// Writes the bare `200 OK` for `datagram` into `out`, whose previous content the caller has cleared or
/// does not send. Returns false when nothing must be sent: a response, an ACK, or no Via line; what was
/// written to `out` is then garbage. Folded continuation lines are not copied (the floor is for
/// well-formed benchmark traffic).
#[must_use]
pub fn answer_ok(datagram: &[u8], out: &mut impl Sink) -> bool {
    if datagram.starts_with(b"SIP/") || datagram.starts_with(b"ACK ") {
        return false;
    }
    out.append(b"SIP/2.0 200 OK\r\n");
    let mut has_via = false;
    // The request line is skipped: header lines start after the first LF; the header section ends at an
    // empty line.
    for line in datagram.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if is_copied(line) {
            has_via |= matches!(line.first(), Some(b'v' | b'V'));
            out.append(line);
            out.append(b"\r\n");
        }
    }
    out.append(b"Content-Length: 0\r\n\r\n");
    has_via
}

fn is_copied(line: &[u8]) -> bool {
    // The name up to and including the colon, case-insensitively, tolerating SP/HTAB before the colon.
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    let name = line[..colon].trim_ascii_end();
    COPIED
        .iter()
        .any(|c| c.len() == name.len() + 1 && c[..name.len()].eq_ignore_ascii_case(name))
}

/// What [`answer_digest`] answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `200 OK`.
    Ok,
    /// `401` with a challenge per algorithm.
    Challenged,
    /// `403`: the digest answer did not verify.
    Rejected,
}

/// The digest responder's policy.
#[derive(Debug, Clone, Copy)]
pub struct DigestPolicy<'a> {
    /// Algorithms offered in a `401`, in order; empty: every request gets `200`.
    pub challenge: &'a [Algorithm],
    /// The realm of the challenges, and the one an answer must name.
    pub realm: &'a [u8],
}

/// Gives the password of a user name, to verify a digest answer with.
pub type PasswordLookup<'a> = &'a dyn Fn(&[u8]) -> Vec<u8>;

/// Most Via header lines copied into an answer.
pub const MAX_VIAS: usize = 8;

/// The tag added to a To that has none.
const TO_TAG: &[u8] = b";tag=lgr";

/// Answers one request by `policy` into `buf`: `None` (nothing sent) for responses, garbage, requests
/// missing a header a response must copy, and answers that do not fit. `nonce` is the challenge's nonce
/// (any value the caller makes unique). `password_of(username)` gives the password to verify an answer
/// with; no lookup accepts any answer.
pub fn answer_digest(
    req: &[u8],
    policy: &DigestPolicy<'_>,
    nonce: u64,
    password_of: Option<PasswordLookup<'_>>,
    buf: &mut [u8],
) -> Option<(usize, Outcome)> {
    let msg = parse_message(req, &ParseLimits::default()).ok()?;
    let StartLine::Request {
        method_raw: method,
        uri,
        ..
    } = msg.start
    else {
        return None;
    };
    if msg.count(HeaderName::Via) == 0 {
        return None;
    }
    let from = msg.first(HeaderName::From)?;
    let to = msg.first(HeaderName::To)?;
    let call_id = msg.first(HeaderName::CallId)?;
    let cseq = msg.first(HeaderName::CSeq)?;

    let outcome = match (
        policy.challenge.is_empty(),
        msg.first(HeaderName::Authorization),
    ) {
        (true, _) => Outcome::Ok,
        (false, None) => Outcome::Challenged,
        (false, Some(auth)) => match password_of {
            Some(lookup) if !verify(auth, method, uri, policy.realm, lookup) => Outcome::Rejected,
            _ => Outcome::Ok,
        },
    };

    let mut w = Writer::new(buf);
    w.put(match outcome {
        Outcome::Ok => b"SIP/2.0 200 OK\r\n".as_slice(),
        Outcome::Challenged => b"SIP/2.0 401 Unauthorized\r\n",
        Outcome::Rejected => b"SIP/2.0 403 Forbidden\r\n",
    });
    for via in msg.all(HeaderName::Via).take(MAX_VIAS) {
        w.put(b"Via: ").put(via).put(b"\r\n");
    }
    w.put(b"From: ").put(from).put(b"\r\nTo: ").put(to);
    if !has_param(to, b"tag") {
        w.put(TO_TAG);
    }
    w.put(b"\r\nCall-ID: ")
        .put(call_id)
        .put(b"\r\nCSeq: ")
        .put(cseq)
        .put(b"\r\n");
    match outcome {
        Outcome::Ok => {
            if let Some(c) = msg.first(HeaderName::Contact) {
                w.put(b"Contact: ").put(c);
                if !has_param(c, b"expires") {
                    let expires = msg.first(HeaderName::Expires).unwrap_or(b"3600");
                    w.put(b";expires=").put(expires);
                }
                w.put(b"\r\n");
            }
        }
        Outcome::Challenged => {
            for alg in policy.challenge {
                w.put(b"WWW-Authenticate: Digest realm=\"")
                    .put_quoted(policy.realm)
                    .put(b"\", nonce=\"")
                    .put_hex(nonce)
                    .put(b"\", qop=\"auth\", algorithm=")
                    .put(alg.name().as_bytes())
                    .put(b"\r\n");
            }
        }
        Outcome::Rejected => {}
    }
    w.put(b"Content-Length: 0\r\n\r\n");
    Some((w.finish()?, outcome))
}

/// Whether a name-addr header value carries the header parameter `name`.
fn has_param(value: &[u8], name: &[u8]) -> bool {
    parse_name_addr(value).is_ok_and(|na| na.params.get(name).is_some())
}

/// Checks the digest answer in `auth` against the password `password_of` gives its user, for `realm`
/// and the Request-URI; anything missing or malformed fails.
fn verify(
    auth: &[u8],
    method: &[u8],
    req_uri: &[u8],
    realm: &[u8],
    password_of: PasswordLookup<'_>,
) -> bool {
    let Ok(creds) = digest::parse_authorization(auth) else {
        return false;
    };
    if !creds.realm.eq_unescaped(realm) || !creds.uri.eq_unescaped(req_uri) {
        return false;
    }
    let mut user_buf = [0u8; digest::MAX_VALUE_LEN];
    let username = creds.username.unescape(&mut user_buf);
    let password = password_of(username);
    let ha1 = digest::Ha1::from_password(creds.algorithm, username, realm, &password);
    digest::verify(&ha1, &creds, method)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::response::parse_response;
    use crate::digest::Challenge;

    const REQ: &[u8] = b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5;branch=z9hG4bK-lg.1.2.3\r\nFrom: <sip:u1@example.com>;tag=a\r\nTo: <sip:u1@example.com>\r\nCall-ID: c1\r\nCSeq: 1 REGISTER\r\nContact: <sip:u1@127.0.0.1:5>\r\nExpires: 60\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn the_bare_ok_copies_the_dialog_headers_only() {
        let req = b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\n\
            Max-Forwards: 70\r\nf: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: x\r\n\
            CSeq : 1 REGISTER\r\nContact: <sip:a@1.2.3.4>\r\nContent-Length: 0\r\n\r\n";
        let want: &[u8] = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\nf: <sip:a@example.com>;tag=1\r\n\
            To: <sip:a@example.com>\r\nCall-ID: x\r\nCSeq : 1 REGISTER\r\nContent-Length: 0\r\n\r\n";
        let mut out = Vec::new();
        assert!(answer_ok(req, &mut out));
        assert_eq!(out, want);
        // The same bytes through a bounded writer; one too small reports the overflow.
        let mut buf = [0u8; 512];
        let mut w = Writer::new(&mut buf);
        assert!(answer_ok(req, &mut w));
        let n = w.finish().expect("fits");
        assert_eq!(&buf[..n], want);
        let mut small = [0u8; 40];
        let mut w = Writer::new(&mut small);
        assert!(answer_ok(req, &mut w));
        assert_eq!(w.finish(), None);
    }

    #[test]
    fn the_bare_ok_ignores_responses_acks_and_garbage() {
        for junk in [
            &b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n"[..],
            b"ACK sip:a SIP/2.0\r\nVia: x\r\n\r\n",
            b"\0\0\0\0",
            b"",
        ] {
            assert!(!answer_ok(junk, &mut Vec::new()));
        }
    }

    fn policy(challenge: bool) -> DigestPolicy<'static> {
        DigestPolicy {
            challenge: if challenge {
                &[Algorithm::Sha256, Algorithm::Md5]
            } else {
                &[]
            },
            realm: b"lg",
        }
    }

    fn pattern(user: &[u8]) -> Vec<u8> {
        [b"pw-", user].concat()
    }

    #[test]
    fn the_digest_answer_is_200_copying_headers_without_a_challenge() {
        let mut buf = [0u8; 2048];
        let (n, o) = answer_digest(REQ, &policy(false), 1, None, &mut buf).expect("answered");
        assert_eq!(o, Outcome::Ok);
        let r = parse_response(&buf[..n]).expect("parses");
        assert_eq!(r.status, 200);
        assert_eq!(r.branch, Some(&b"z9hG4bK-lg.1.2.3"[..]));
        assert_eq!(r.cseq, Some(1));
        let text = std::str::from_utf8(&buf[..n]).expect("ascii");
        assert!(text.contains("To: <sip:u1@example.com>;tag=lgr\r\n"));
        assert!(text.contains("Contact: <sip:u1@127.0.0.1:5>;expires=60\r\n"));
    }

    #[test]
    fn the_digest_answer_challenges_then_verifies() {
        let p = policy(true);
        let lookup: PasswordLookup<'_> = &pattern;
        let mut buf = [0u8; 2048];
        let (n, o) = answer_digest(REQ, &p, 0xabc, Some(lookup), &mut buf).expect("answered");
        assert_eq!(o, Outcome::Challenged);
        let r = parse_response(&buf[..n]).expect("parses");
        let ch = Challenge::pick_strongest(r.challenges().iter().copied()).expect("ok");
        assert_eq!(ch.algorithm, Algorithm::Sha256);
        for (password, want) in [(&b"pw-u1"[..], Outcome::Ok), (b"wrong", Outcome::Rejected)] {
            let ha1 = digest::Ha1::from_password(ch.algorithm, b"u1", &ch.realm, password);
            let resp = digest::expected_response(
                ch.algorithm,
                ha1.expose_hex(),
                b"REGISTER",
                b"sip:example.com",
                &ch.nonce,
                b"00000001",
                b"cn",
                Some(b"auth"),
            )
            .expect("qop=auth");
            let auth = format!(
                "Authorization: Digest username=\"u1\", realm=\"lg\", nonce=\"{}\", uri=\"sip:example.com\", response=\"{}\", algorithm=SHA-256, qop=auth, nc=00000001, cnonce=\"cn\"\r\n",
                String::from_utf8_lossy(&ch.nonce),
                resp.as_str()
            );
            let text =
                String::from_utf8_lossy(REQ).replace("Content-Length", &(auth + "Content-Length"));
            let (_, o) =
                answer_digest(text.as_bytes(), &p, 2, Some(lookup), &mut buf).expect("answered");
            assert_eq!(o, want);
        }
    }

    #[test]
    fn the_digest_answer_ignores_garbage_without_panic() {
        let p = policy(true);
        let lookup: PasswordLookup<'_> = &pattern;
        let mut buf = [0u8; 512];
        for i in 0..REQ.len() {
            let _ = answer_digest(&REQ[..i], &p, 1, Some(lookup), &mut buf);
        }
        for junk in [
            &b""[..],
            b"\r\n\r\n",
            b"SIP/2.0 200 OK\r\n\r\n",
            b"X Y SIP/2.0\r\n\r\n",
        ] {
            assert!(answer_digest(junk, &p, 1, Some(lookup), &mut buf).is_none());
        }
        // Too small a buffer: no answer rather than a truncated one.
        assert!(answer_digest(REQ, &p, 1, Some(lookup), &mut buf[..50]).is_none());
    }
}
