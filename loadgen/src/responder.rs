//! The stateless UDP responder, serving the SIP toolkit's [`corereg_sip::stateless`] answers: a bare
//! `200 OK` to everything (the same floor as `corereg --stateless-stub`), or in `--challenge` mode a
//! `401` digest challenge first and, with `--verify-password`, `403` to a wrong answer. It keeps no
//! bindings; it exists to measure the load generator's own ceiling (and SIPp's) against a target that
//! costs almost nothing, and to test digest answers.

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use corereg_sip::client::request::Writer;
use corereg_sip::digest::Algorithm;
use corereg_sip::stateless::{self, DigestPolicy, Outcome, PasswordLookup};

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
            let mut outcome = None;
            send.push_with(received.source, |buf| {
                let (len, o) = answer(cfg, received.datagram, nonce_counter, buf)?;
                outcome = Some(o);
                Some(len)
            });
            let counter = match outcome {
                Some(Outcome::Ok) => &stats.ok,
                Some(Outcome::Challenged) => &stats.challenged,
                Some(Outcome::Rejected) => &stats.rejected,
                None => &stats.ignored,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        send.send_all(sock);
    }
}

/// Builds the answer to one request into `buf`: the length and what was answered, or None (nothing
/// sent) for responses, garbage, requests missing the headers a response copies, and answers that do not
/// fit.
pub fn answer(
    cfg: &ResponderConfig,
    req: &[u8],
    nonce_counter: u64,
    buf: &mut [u8],
) -> Option<(usize, Outcome)> {
    let Some(algorithms) = cfg.challenge.as_deref() else {
        let mut w = Writer::new(buf);
        return stateless::answer_ok(req, &mut w)
            .then(|| w.finish())
            .flatten()
            .map(|n| (n, Outcome::Ok));
    };
    let policy = DigestPolicy {
        challenge: algorithms,
        realm: cfg.realm.as_bytes(),
    };
    let lookup = cfg
        .verify_password
        .as_deref()
        .map(|pattern| move |user: &[u8]| passwords::expand(pattern, user));
    let lookup_dyn = lookup.as_ref().map(|f| f as PasswordLookup<'_>);
    stateless::answer_digest(req, &policy, nonce_counter, lookup_dyn, buf)
}

/// Parses `host:port` for the listen address (IPv4 only, like the rest of the tool).
pub fn parse_listen(s: &str) -> Option<SocketAddr> {
    s.parse::<SocketAddrV4>().ok().map(SocketAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use corereg_sip::client::response::parse_response;

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
    fn without_a_challenge_it_answers_the_bare_ok() {
        let mut buf = [0u8; 2048];
        let (n, o) = answer(&cfg(false, false), REQ, 1, &mut buf).expect("answered");
        assert_eq!(o, Outcome::Ok);
        let mut floor = Vec::new();
        assert!(stateless::answer_ok(REQ, &mut floor));
        assert_eq!(&buf[..n], floor.as_slice());
        let r = parse_response(&buf[..n]).expect("parses");
        assert_eq!((r.status, r.cseq), (200, Some(1)));
        // Too small a buffer: no answer rather than a truncated one.
        assert!(answer(&cfg(false, false), REQ, 1, &mut buf[..50]).is_none());
        assert!(answer(&cfg(false, false), b"SIP/2.0 200 OK\r\n\r\n", 1, &mut buf).is_none());
    }

    #[test]
    fn with_a_challenge_it_challenges_and_verifies_by_the_password_pattern() {
        let mut buf = [0u8; 2048];
        let (n, o) = answer(&cfg(true, true), REQ, 0xabc, &mut buf).expect("answered");
        assert_eq!(o, Outcome::Challenged);
        assert_eq!(
            parse_response(&buf[..n])
                .expect("parses")
                .challenges()
                .len(),
            2
        );
        let wrong = String::from_utf8_lossy(REQ).replace(
            "Content-Length",
            "Authorization: Digest username=\"u1\", realm=\"lg\", nonce=\"abc\", uri=\"sip:example.com\", response=\"00000000000000000000000000000000\", qop=auth, nc=00000001, cnonce=\"c\"\r\nContent-Length",
        );
        let (_, o) = answer(&cfg(true, true), wrong.as_bytes(), 1, &mut buf).expect("answered");
        assert_eq!(o, Outcome::Rejected);
        let (_, o) = answer(&cfg(true, false), wrong.as_bytes(), 1, &mut buf).expect("answered");
        assert_eq!(o, Outcome::Ok);
    }
}
