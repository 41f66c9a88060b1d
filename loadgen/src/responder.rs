//! A minimal stateless UDP responder: answers every request with 200 (copying Via, From, To,
//! Call-ID, CSeq and Contact), or first with a 401 digest challenge in `--challenge` mode. It keeps
//! no bindings; it exists to measure the load generator's own ceiling (and SIPp's) against a target
//! that costs almost nothing, and to test digest answers when `--verify-password` is set.

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use corereg_sip::client::request::Writer;
use corereg_sip::digest::{self, Algorithm, Ha1, MAX_VALUE_LEN};
use corereg_sip::header::parse_name_addr;
use corereg_sip::parse::{parse_message, HeaderName, ParseLimits, StartLine};

use crate::net;
use crate::passwords;

#[derive(Debug, Clone)]
pub struct ResponderConfig {
    pub listen: SocketAddr,
    pub threads: usize,
    /// Challenge requests without credentials with one 401 offering these algorithms, in order.
    pub challenge: Option<Vec<Algorithm>>,
    pub realm: String,
    /// When set, check the digest answer against this password pattern and answer 403 on mismatch.
    pub verify_password: Option<String>,
    pub batch: usize,
}

/// Counters, for tests and for the exit summary.
#[derive(Debug, Default)]
pub struct ResponderStats {
    pub requests: AtomicU64,
    pub ok: AtomicU64,
    pub challenged: AtomicU64,
    pub rejected: AtomicU64,
    pub ignored: AtomicU64,
}

/// Binds every thread's socket (SO_REUSEPORT on one address), then serves until `stop` is set.
pub fn serve(
    cfg: &ResponderConfig,
    stats: Arc<ResponderStats>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<()> {
    let threads = cfg.threads.max(1);
    let mut sockets = Vec::with_capacity(threads);
    for _ in 0..threads {
        sockets.push(net::bind_udp(cfg.listen, true)?);
    }
    std::thread::scope(|scope| {
        for (i, sock) in sockets.into_iter().enumerate() {
            let stats = stats.clone();
            let stop = stop.clone();
            let _ = std::thread::Builder::new()
                .name(format!("responder-{i}"))
                .spawn_scoped(scope, move || serve_socket(cfg, &sock, i, &stats, &stop));
        }
    });
    Ok(())
}

fn serve_socket(
    cfg: &ResponderConfig,
    sock: &UdpSocket,
    thread: usize,
    stats: &ResponderStats,
    stop: &AtomicBool,
) {
    let mut recv = net::recv_batch(cfg.batch);
    let mut send = net::send_batch(cfg.batch);
    let mut nonce_counter: u64 = (thread as u64) << 48;
    while !stop.load(Ordering::Relaxed) {
        let n = recv.recv(sock).unwrap_or(0);
        if n == 0 {
            corereg_udp::wait_readable(sock, Duration::from_millis(100));
            continue;
        }
        stats.requests.fetch_add(n as u64, Ordering::Relaxed);
        for received in recv.iter() {
            nonce_counter += 1;
            let mut outcome = Outcome::Ignored;
            send.push_with(received.source, |buf| {
                let (len, o) = answer(cfg, received.datagram, nonce_counter, buf)?;
                outcome = o;
                Some(len)
            });
            let counter = match outcome {
                Outcome::Ok => &stats.ok,
                Outcome::Challenged => &stats.challenged,
                Outcome::Rejected => &stats.rejected,
                Outcome::Ignored => &stats.ignored,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        send.send_all(sock);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Challenged,
    Rejected,
    Ignored,
}

/// Most Via header lines copied into an answer.
const MAX_VIAS: usize = 8;

/// Builds the answer to one request into `buf`. None (nothing sent) for responses, garbage, or
/// requests missing the headers a response must copy.
pub fn answer(
    cfg: &ResponderConfig,
    req: &[u8],
    nonce_counter: u64,
    buf: &mut [u8],
) -> Option<(usize, Outcome)> {
    let msg = parse_message(req, &ParseLimits::default()).ok()?;
    // Responses are not ours to answer; nor is a request whose start line is broken.
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
    let contact = msg.first(HeaderName::Contact);
    let expires = msg.first(HeaderName::Expires);
    let authorization = msg.first(HeaderName::Authorization);

    let outcome = match (&cfg.challenge, authorization) {
        (Some(_), None) => Outcome::Challenged,
        (Some(_), Some(auth)) => match &cfg.verify_password {
            Some(pattern) if !verify(auth, method, uri, &cfg.realm, pattern) => Outcome::Rejected,
            _ => Outcome::Ok,
        },
        (None, _) => Outcome::Ok,
    };

    let mut w = Writer::new(buf);
    w.put(match outcome {
        Outcome::Ok => b"SIP/2.0 200 OK\r\n".as_slice(),
        Outcome::Challenged => b"SIP/2.0 401 Unauthorized\r\n",
        _ => b"SIP/2.0 403 Forbidden\r\n",
    });
    for via in msg.all(HeaderName::Via).take(MAX_VIAS) {
        w.put(b"Via: ").put(via).put(b"\r\n");
    }
    w.put(b"From: ").put(from).put(b"\r\nTo: ").put(to);
    if !has_param(to, b"tag") {
        w.put(b";tag=lgr");
    }
    w.put(b"\r\nCall-ID: ")
        .put(call_id)
        .put(b"\r\nCSeq: ")
        .put(cseq)
        .put(b"\r\n");
    match outcome {
        Outcome::Ok => {
            if let Some(c) = contact {
                w.put(b"Contact: ").put(c);
                if !has_param(c, b"expires") {
                    w.put(b";expires=").put(expires.unwrap_or(b"3600"));
                }
                w.put(b"\r\n");
            }
        }
        Outcome::Challenged => {
            for alg in cfg.challenge.as_deref().unwrap_or(&[]) {
                w.put(b"WWW-Authenticate: Digest realm=\"")
                    .put_quoted(cfg.realm.as_bytes())
                    .put(b"\", nonce=\"")
                    .put_hex(nonce_counter)
                    .put(b"\", qop=\"auth\", algorithm=")
                    .put(alg.name().as_bytes())
                    .put(b"\r\n");
            }
        }
        _ => {}
    }
    w.put(b"Content-Length: 0\r\n\r\n");
    Some((w.finish()?, outcome))
}

/// Whether a name-addr header value carries the header parameter `name`.
fn has_param(value: &[u8], name: &[u8]) -> bool {
    parse_name_addr(value).is_ok_and(|na| na.params.get(name).is_some())
}

/// Checks the digest answer against the password the pattern gives its user, for our realm and
/// the Request-URI; anything missing or malformed fails verification.
fn verify(auth: &[u8], method: &[u8], req_uri: &[u8], realm: &str, pattern: &str) -> bool {
    let Ok(creds) = digest::parse_authorization(auth) else {
        return false;
    };
    if !creds.realm.eq_unescaped(realm.as_bytes()) || !creds.uri.eq_unescaped(req_uri) {
        return false;
    }
    let mut user_buf = [0u8; MAX_VALUE_LEN];
    let username = creds.username.unescape(&mut user_buf);
    let password = passwords::expand(pattern, username);
    let ha1 = Ha1::from_password(creds.algorithm, username, realm.as_bytes(), &password);
    digest::verify(&ha1, &creds, method)
}

/// Parses `host:port` for the listen address (IPv4 only, like the rest of the tool).
pub fn parse_listen(s: &str) -> Option<SocketAddr> {
    s.parse::<SocketAddrV4>().ok().map(SocketAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use corereg_sip::client::response::parse_response;
    use corereg_sip::digest::Challenge;

    fn cfg(challenge: bool, verify: bool) -> ResponderConfig {
        ResponderConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            threads: 1,
            challenge: challenge.then(|| vec![Algorithm::Sha256, Algorithm::Md5]),
            realm: "lg".into(),
            verify_password: verify.then(|| "pw-{user}".into()),
            batch: 8,
        }
    }

    const REQ: &[u8] = b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5;branch=z9hG4bK-lg.1.2.3\r\nFrom: <sip:u1@example.com>;tag=a\r\nTo: <sip:u1@example.com>\r\nCall-ID: c1\r\nCSeq: 1 REGISTER\r\nContact: <sip:u1@127.0.0.1:5>\r\nExpires: 60\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn answers_200_copying_headers() {
        let mut buf = [0u8; 2048];
        let (n, o) = answer(&cfg(false, false), REQ, 1, &mut buf).expect("answered");
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
    fn challenges_then_verifies() {
        let c = cfg(true, true);
        let mut buf = [0u8; 2048];
        let (n, o) = answer(&c, REQ, 0xabc, &mut buf).expect("answered");
        assert_eq!(o, Outcome::Challenged);
        let r = parse_response(&buf[..n]).expect("parses");
        let ch = Challenge::pick_strongest(r.challenges().iter().copied()).expect("ok");
        assert_eq!(ch.algorithm, Algorithm::Sha256);
        for (password, want) in [(&b"pw-u1"[..], Outcome::Ok), (b"wrong", Outcome::Rejected)] {
            let ha1 = Ha1::from_password(ch.algorithm, b"u1", &ch.realm, password);
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
            let (_, o) = answer(&c, text.as_bytes(), 2, &mut buf).expect("answered");
            assert_eq!(o, want);
        }
    }

    #[test]
    fn garbage_is_ignored_without_panic() {
        let c = cfg(true, true);
        let mut buf = [0u8; 512];
        for i in 0..REQ.len() {
            let _ = answer(&c, &REQ[..i], 1, &mut buf);
        }
        for junk in [
            &b""[..],
            b"\r\n\r\n",
            b"SIP/2.0 200 OK\r\n\r\n",
            b"X Y SIP/2.0\r\n\r\n",
        ] {
            assert!(answer(&c, junk, 1, &mut buf).is_none());
        }
        // Too small a buffer: no answer rather than a truncated one.
        assert!(answer(&c, REQ, 1, &mut buf[..50]).is_none());
    }
}
