//! The load generator's UDP settings over [`corereg_udp`], which does the batched I/O.
//!
//! std's `UdpSocket` sends one datagram per syscall; at hundreds of thousands of packets per second
//! the syscall entry cost matters, so a worker fills a batch and hands it to the kernel at once.
//! Requests leave with UDP GSO when the kernel has it ([`gso_path`]): equal-sized requests to one
//! destination leave as one super-datagram that the kernel splits, so the IP stack (and, on
//! loopback, the delivery the sender pays for) is walked once per run instead of once per request.
//! Measured on loopback this halves the generator's CPU per REGISTER. Replies are still received
//! one datagram per `recvmmsg` entry: UDP_GRO on our socket coalesces nothing on loopback when the
//! registrar answers with separate datagrams (no GRO engine on `lo`), so it is not used.

use std::io;
use std::net::{SocketAddr, UdpSocket};

use corereg_udp::{RecvBatch, SendBatch, SendPath};

/// Largest datagram we keep. Responses listing many bindings can be large; anything longer is
/// truncated by the kernel and then fails to parse, which is counted, not fatal.
pub const MAX_DATAGRAM: usize = 8192;

/// Socket receive/send buffer we ask for: large, so bursts of replies are not dropped while a
/// worker is busy building requests (the same reason SIPp needs `-buff_size`).
const SOCKET_BUFFER_BYTES: usize = 8 * 1024 * 1024;

/// Binds a UDP socket with our buffer sizes, optionally with `SO_REUSEPORT` so that several threads
/// can share one address. IPv4 only.
pub fn bind_udp(addr: SocketAddr, reuse_port: bool) -> io::Result<UdpSocket> {
    corereg_udp::bind_udp(addr, reuse_port, Some(SOCKET_BUFFER_BYTES))
}

/// Room for `capacity` requests or replies of up to [`MAX_DATAGRAM`] bytes each.
pub fn send_batch(capacity: usize) -> SendBatch {
    SendBatch::new(capacity, MAX_DATAGRAM)
}

/// Receive buffers for `capacity` datagrams of up to [`MAX_DATAGRAM`] bytes each.
pub fn recv_batch(capacity: usize) -> RecvBatch {
    RecvBatch::new(capacity, MAX_DATAGRAM)
}

/// The GSO send path for a connected socket: segments up to its path MTU (at most
/// [`MAX_DATAGRAM`]), [`corereg_udp::GSO_MAX_SEGMENTS`] per send. An error when the kernel does not
/// know UDP_SEGMENT; a kernel that refuses it per send makes the batch fall back by itself.
pub fn gso_path(socket: &UdpSocket) -> io::Result<SendPath> {
    corereg_udp::gso_supported(socket)?;
    Ok(SendPath::Gso {
        max_segment: corereg_udp::gso_max_segment(socket).min(MAX_DATAGRAM),
        max_segments: corereg_udp::GSO_MAX_SEGMENTS,
    })
}
