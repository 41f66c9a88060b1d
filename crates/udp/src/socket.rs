//! Socket helpers: bind, connect, the UDP GSO probes, and waiting for a datagram.

use std::io;
use std::mem::size_of;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{Domain, Socket, Type};

/// Most bytes one UDP GSO send may carry: the IPv4 UDP length field (65535) minus the UDP header,
/// with margin.
pub const GSO_MAX_BYTES: usize = 65_000;
/// Most segments per GSO send. The kernel's UDP_MAX_SEGMENTS is 64 on older kernels (128 since 6.x);
/// 64 is accepted everywhere.
pub const GSO_MAX_SEGMENTS: usize = 64;
/// Segment size cap when the path MTU is unknown (unconnected socket): a 1500-byte Ethernet MTU minus
/// the IPv4 and UDP headers. A larger segment would need IP fragmentation, which GSO refuses.
pub const GSO_DEFAULT_MAX_SEGMENT: usize = 1472;

/// Binds a UDP socket (close-on-exec), with `SO_REUSEPORT` when `reuse_port` so that several threads
/// can share one address, and asks for `buffer_bytes` of receive and send buffer when given (best
/// effort: the kernel caps them at rmem_max/wmem_max, and a smaller buffer still works). IPv4 only.
pub fn bind_udp(
    addr: SocketAddr,
    reuse_port: bool,
    buffer_bytes: Option<usize>,
) -> io::Result<UdpSocket> {
    if !addr.is_ipv4() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "only IPv4 addresses are supported",
        ));
    }
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, None)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if let Some(bytes) = buffer_bytes {
        let _ = socket.set_recv_buffer_size(bytes);
        let _ = socket.set_send_buffer_size(bytes);
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Connects a UDP socket so that sends need no address and only the target's datagrams are received.
pub fn connect(socket: &UdpSocket, target: SocketAddr) -> io::Result<()> {
    socket.connect(target)
}

/// Reads an int socket option.
fn int_option(socket: &impl AsRawFd, level: libc::c_int, name: libc::c_int) -> io::Result<usize> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes, and `len` holds `value`'s size: getsockopt writes
    // at most that many bytes.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(value).unwrap_or(0))
}

/// Whether the kernel knows UDP_SEGMENT on this socket (getsockopt fails with ENOPROTOOPT on kernels
/// before 4.18). Support can still be refused per send (EIO without checksum offload);
/// [`crate::SendBatch::send_all`] then falls back by itself.
pub fn gso_supported(socket: &impl AsRawFd) -> io::Result<()> {
    int_option(socket, libc::SOL_UDP, libc::UDP_SEGMENT).map(|_| ())
}

/// Largest GSO segment for a connected socket: the path MTU (IP_MTU) minus the IPv4 and UDP headers,
/// at most [`GSO_MAX_BYTES`]; [`GSO_DEFAULT_MAX_SEGMENT`] when the MTU is unknown (unconnected).
pub fn gso_max_segment(socket: &impl AsRawFd) -> usize {
    match int_option(socket, libc::IPPROTO_IP, libc::IP_MTU) {
        Ok(mtu) if mtu > 28 => (mtu - 28).min(GSO_MAX_BYTES),
        _ => GSO_DEFAULT_MAX_SEGMENT,
    }
}

/// Waits until `socket` is readable or `timeout` passes; true when it is readable. Nanosecond
/// precision (ppoll), because open-loop pacing at tens of thousands per second needs sub-millisecond
/// sleeps. An interrupted or failed wait returns false early.
pub fn wait_readable(socket: &impl AsRawFd, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: one valid pollfd (count 1), a valid timespec, and no signal mask (null).
    let rc = unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
    rc > 0 && pfd.revents & libc::POLLIN != 0
}
