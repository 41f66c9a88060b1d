//! UDP sockets and batched datagram I/O (`sendmmsg` / `recvmmsg`) over raw file descriptors.
//!
//! std's `UdpSocket` sends one datagram per syscall; at hundreds of thousands of packets per second
//! the syscall entry cost matters, so a worker fills a batch and hands it to the kernel at once.

use std::io;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;

/// Largest datagram we keep. Responses listing many bindings can be large; anything longer is
/// truncated by the kernel and then fails to parse, which is counted, not fatal.
pub const MAX_DATAGRAM: usize = 8192;

/// Socket receive/send buffer we ask for: large, so bursts of replies are not dropped while a
/// worker is busy building requests (the same reason SIPp needs `-buff_size`).
const SOCKET_BUFFER_BYTES: libc::c_int = 8 * 1024 * 1024;

/// Binds a UDP socket, optionally with `SO_REUSEPORT` so several threads can share one address.
pub fn bind_udp(addr: SocketAddr, reuse_port: bool) -> io::Result<UdpSocket> {
    let SocketAddr::V4(v4) = addr else {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "only IPv4 addresses are supported",
        ));
    };
    // SAFETY: plain socket(2) call; the fd is owned by the UdpSocket created below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid socket that nothing else owns.
    let socket = unsafe { <UdpSocket as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    if reuse_port {
        set_int_option(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    }
    // Best effort: the kernel caps these at rmem_max/wmem_max; a smaller buffer still works.
    let _ = set_int_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, SOCKET_BUFFER_BYTES);
    let _ = set_int_option(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, SOCKET_BUFFER_BYTES);
    let sa = to_sockaddr_in(&v4);
    // SAFETY: sa is a valid sockaddr_in and the length matches it.
    let rc = unsafe {
        libc::bind(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

fn set_int_option(fd: i32, level: i32, name: i32, value: libc::c_int) -> io::Result<()> {
    // SAFETY: value lives across the call and the length is its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub fn to_sockaddr_in(addr: &SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(addr.ip().octets()),
        },
        sin_zero: [0; 8],
    }
}

pub fn from_sockaddr_in(sa: &libc::sockaddr_in) -> SocketAddrV4 {
    SocketAddrV4::new(
        std::net::Ipv4Addr::from(sa.sin_addr.s_addr.to_ne_bytes()),
        u16::from_be(sa.sin_port),
    )
}

/// A fixed set of datagram buffers plus the kernel headers that point into them. The headers hold
/// raw pointers into `buffers`, so they are rebuilt before every syscall rather than kept across
/// moves of the struct.
pub struct Batch {
    buffers: Vec<[u8; MAX_DATAGRAM]>,
    lengths: Vec<usize>,
    addrs: Vec<libc::sockaddr_in>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
    len: usize,
}

// SAFETY: the raw pointers inside `iovecs`/`headers` only ever point into this Batch's own
// heap buffers (rebuilt before each syscall), so moving the Batch to another thread is sound.
unsafe impl Send for Batch {}

impl Batch {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let zero_addr = to_sockaddr_in(&SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0));
        Batch {
            buffers: vec![[0u8; MAX_DATAGRAM]; capacity],
            lengths: vec![0; capacity],
            addrs: vec![zero_addr; capacity],
            iovecs: Vec::with_capacity(capacity),
            // SAFETY: mmsghdr is a plain C struct for which all-zero is a valid value.
            headers: vec![unsafe { std::mem::zeroed() }; capacity],
            len: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.buffers.len()
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_full(&self) -> bool {
        self.len == self.buffers.len()
    }

    /// Appends one datagram written by `fill` into the next free buffer; returns false when full or
    /// when `fill` reports it could not write (returns None).
    pub fn push_with(
        &mut self,
        dest: Option<SocketAddrV4>,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> bool {
        if self.is_full() {
            return false;
        }
        let i = self.len;
        let Some(n) = fill(&mut self.buffers[i]) else {
            return false;
        };
        self.lengths[i] = n.min(MAX_DATAGRAM);
        if let Some(d) = dest {
            self.addrs[i] = to_sockaddr_in(&d);
        }
        self.len += 1;
        true
    }

    /// Received datagram `i` and its source.
    pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddrV4)> {
        if i >= self.len {
            return None;
        }
        let data = self.buffers[i].get(..self.lengths[i])?;
        Some((data, from_sockaddr_in(&self.addrs[i])))
    }

    fn prepare(&mut self, count: usize, with_addrs: bool, receiving: bool) {
        self.iovecs.clear();
        for i in 0..count {
            let len = if receiving {
                MAX_DATAGRAM
            } else {
                self.lengths[i]
            };
            self.iovecs.push(libc::iovec {
                iov_base: self.buffers[i].as_mut_ptr().cast(),
                iov_len: len,
            });
        }
        for i in 0..count {
            let h = &mut self.headers[i];
            h.msg_hdr.msg_iov = &mut self.iovecs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
            if with_addrs {
                h.msg_hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_in).cast();
                h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            } else {
                h.msg_hdr.msg_name = std::ptr::null_mut();
                h.msg_hdr.msg_namelen = 0;
            }
            h.msg_len = 0;
        }
    }

    /// Sends every queued datagram (to the connected peer unless `with_addrs`). Datagrams the
    /// kernel refuses (full buffer) are dropped and counted: UDP may lose packets anyway and the
    /// retransmission timer covers it. Returns (sent, dropped).
    pub fn send_all(&mut self, sock: &UdpSocket, with_addrs: bool) -> (usize, usize) {
        let total = self.len;
        let mut sent = 0;
        let mut dropped = 0;
        self.prepare(total, with_addrs, false);
        while sent + dropped < total {
            let start = sent + dropped;
            // SAFETY: headers[start..total] point at live iovecs/buffers/addrs prepared above.
            let rc = unsafe {
                libc::sendmmsg(
                    sock.as_raw_fd(),
                    self.headers.as_mut_ptr().add(start),
                    (total - start) as u32,
                    0,
                )
            };
            if rc > 0 {
                sent += rc as usize;
                continue;
            }
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // ENOBUFS/EAGAIN/ECONNREFUSED (ICMP from a dead target): skip this datagram.
            dropped += 1;
        }
        self.len = 0;
        (sent, dropped)
    }

    /// Receives up to `capacity` datagrams without blocking. Returns how many arrived.
    pub fn recv(&mut self, sock: &UdpSocket, with_addrs: bool) -> usize {
        let cap = self.capacity();
        self.prepare(cap, with_addrs, true);
        loop {
            // SAFETY: all `cap` headers point at live buffers prepared above.
            let rc = unsafe {
                libc::recvmmsg(
                    sock.as_raw_fd(),
                    self.headers.as_mut_ptr(),
                    cap as u32,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if rc >= 0 {
                let n = rc as usize;
                for i in 0..n {
                    self.lengths[i] = (self.headers[i].msg_len as usize).min(MAX_DATAGRAM);
                }
                self.len = n;
                return n;
            }
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // EAGAIN: nothing there. ECONNREFUSED: an ICMP error from the target, nothing to read.
            self.len = 0;
            return 0;
        }
    }
}

/// Waits until `sock` is readable or `timeout_ns` passes. Nanosecond precision (ppoll) because
/// open-loop pacing at tens of thousands per second needs sub-millisecond sleeps.
pub fn wait_readable(sock: &UdpSocket, timeout_ns: u64) {
    let mut pfd = libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ts = libc::timespec {
        tv_sec: (timeout_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (timeout_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: one valid pollfd, valid timespec, no signal mask.
    unsafe {
        libc::ppoll(&mut pfd, 1, &ts, std::ptr::null());
    }
}

/// Connects a UDP socket so sends need no address and only the target's replies are received.
pub fn connect(sock: &UdpSocket, target: SocketAddr) -> io::Result<()> {
    sock.connect(target)
}
