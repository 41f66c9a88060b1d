//! `query`: asks the registrar which contacts each AoR has (REGISTER without Contact, RFC 3261
//! §10.2.3), so a load run's effect is checked through the registrar, not the loadgen's counts.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use corereg_sip::client::request::write_query;
use corereg_sip::client::response::{contact_uris, parse_response};

pub struct QueryResult {
    pub users: u64,
    /// Users whose 200 lists at least one contact.
    pub bound: u64,
    pub contacts: u64,
    /// Users with no 2xx answer at all.
    pub unanswered: u64,
}

/// Queries users `first..first+count` one at a time (a check, not a load), retrying each up to
/// three times.
pub fn query(
    target: SocketAddr,
    domain: &[u8],
    names: impl Iterator<Item = Vec<u8>>,
    timeout: Duration,
) -> std::io::Result<QueryResult> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.connect(target)?;
    let local = sock.local_addr()?;
    let host = local.ip().to_string();
    let mut res = QueryResult {
        users: 0,
        bound: 0,
        contacts: 0,
        unanswered: 0,
    };
    let mut buf = [0u8; 2048];
    let mut rbuf = vec![0u8; crate::net::MAX_DATAGRAM];
    for (i, name) in names.enumerate() {
        res.users += 1;
        let tag = (i as u64) << 8 | 0x5a;
        let Some(n) = write_query(&mut buf, domain, &name, host.as_bytes(), local.port(), tag)
        else {
            res.unanswered += 1;
            continue;
        };
        let mut answered = false;
        'tries: for _ in 0..3 {
            // Refused sends (no listener) show up as unanswered users.
            let _ = sock.send(&buf[..n]);
            let deadline = Instant::now() + timeout;
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
                let Ok(len) = sock.recv(&mut rbuf) else {
                    break;
                };
                let msg = &rbuf[..len];
                let Ok(resp) = parse_response(msg) else {
                    continue;
                };
                let ours = resp.branch.is_some_and(|b| {
                    b.strip_prefix(b"z9hG4bK-q")
                        .is_some_and(|h| h == format!("{tag:x}").as_bytes())
                });
                if !ours || resp.status < 200 {
                    continue;
                }
                if (200..300).contains(&resp.status) {
                    answered = true;
                    let c = contact_uris(msg).len() as u64;
                    res.contacts += c;
                    res.bound += u64::from(c > 0);
                }
                break 'tries;
            }
        }
        if !answered {
            res.unanswered += 1;
        }
    }
    Ok(res)
}
