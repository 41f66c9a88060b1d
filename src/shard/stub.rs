//! BENCHMARK ONLY: the stateless stub answers every request with a bare `200 OK`.
//!
//! It is the toolkit's stateless responder ([`crate::sip::stateless::answer_ok`], the same one
//! `corereg-loadgen responder` serves) under the registrar's own I/O shell: no registrar, no state, so it
//! measures the floor the registrar's work is added to (see ARCHITECTURE.md, "The shell").

use std::net::SocketAddr;

use super::udp::DatagramHandler;
use crate::registrar::Now;
use crate::sip::stateless;

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
        out.clear();
        stateless::answer_ok(datagram, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stub_answers_requests_and_ignores_responses_from_a_dirty_buffer() {
        let req = b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\n\
            From: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: x\r\nCSeq: 1 REGISTER\r\n\r\n";
        let source: SocketAddr = "1.2.3.4:5060".parse().expect("addr");
        let mut out = b"left over".to_vec();
        assert!(Stub.on_datagram(req, source, Now::from_secs(1), &mut out));
        assert!(out.starts_with(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\n"));
        assert!(out.ends_with(b"CSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"));
        assert!(!Stub.on_datagram(
            b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n",
            source,
            Now::from_secs(1),
            &mut out
        ));
    }
}
