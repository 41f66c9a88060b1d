//! BENCHMARK ONLY: the stateless stub answers every request with a bare `200 OK`.
//!
//! It copies the Via, From, To, Call-ID and CSeq lines (long or compact names) by a quick line scan and
//! does nothing else: no parsing beyond line starts, no registrar, no state. Run under the same I/O shell
//! as the registrar, it measures the floor the registrar's own work is added to (see ARCHITECTURE.md, "The shell").

use std::net::SocketAddr;

use super::udp::DatagramHandler;
use crate::registrar::Now;

/// The stub as a core for [`super::udp::recv_loop`]: stateless, so a unit struct.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stub;

impl DatagramHandler for Stub {
    fn on_datagram(
        &mut self,
        datagram: &[u8],
        _source: SocketAddr,
        _now: Now,
        out: &mut Vec<u8>,
    ) -> bool {
        answer(datagram, out)
    }
}

/// Header names copied into the reply, lower-case, with the colon, long and compact forms.
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

/// Writes the stub's reply for `datagram` into `out` (cleared first). Returns false when nothing must be
/// sent: a response (starts with "SIP/"), an ACK, or something with no Via line to answer to.
#[must_use]
pub fn answer(datagram: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    if datagram.starts_with(b"SIP/") || datagram.starts_with(b"ACK ") {
        return false;
    }
    out.extend_from_slice(b"SIP/2.0 200 OK\r\n");
    let mut has_via = false;
    // The request line is skipped: header lines start after the first LF; the header section ends at an
    // empty line. Folded continuation lines are not copied (the stub is for well-formed benchmark traffic).
    let mut lines = datagram.split(|&b| b == b'\n').skip(1);
    for line in lines.by_ref() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if is_copied(line) {
            has_via |= matches!(line.first(), Some(b'v' | b'V'));
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
    }
    if !has_via {
        out.clear();
        return false;
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    true
}

fn is_copied(line: &[u8]) -> bool {
    // Compare the name up to and including the colon, case-insensitively, tolerating SP/HTAB before it.
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    let name = line[..colon].trim_ascii_end();
    COPIED
        .iter()
        .any(|c| c.len() == name.len() + 1 && c[..name.len()].eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_the_dialog_headers_only() {
        let req = b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\n\
            Max-Forwards: 70\r\nf: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: x\r\n\
            CSeq : 1 REGISTER\r\nContact: <sip:a@1.2.3.4>\r\nContent-Length: 0\r\n\r\n";
        let mut out = Vec::new();
        assert!(answer(req, &mut out));
        assert_eq!(
            out,
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\nf: <sip:a@example.com>;tag=1\r\n\
            To: <sip:a@example.com>\r\nCall-ID: x\r\nCSeq : 1 REGISTER\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn responses_acks_and_garbage_are_not_answered() {
        let mut out = Vec::new();
        assert!(!answer(b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n", &mut out));
        assert!(!answer(b"ACK sip:a SIP/2.0\r\nVia: x\r\n\r\n", &mut out));
        assert!(!answer(b"\0\0\0\0", &mut out));
        assert!(!answer(b"", &mut out));
        assert!(out.is_empty());
    }
}
