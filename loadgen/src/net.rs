//! UDP sockets and batched datagram I/O (`sendmmsg` / `recvmmsg`) over raw file descriptors.
//!
//! std's `UdpSocket` sends one datagram per syscall; at hundreds of thousands of packets per second
//! the syscall entry cost matters, so a worker fills a batch and hands it to the kernel at once.
//! The load generator's sends go further with UDP GSO (`SendPath::Gso`): equal-sized requests to
//! one destination leave as one super-datagram that the kernel splits, so the IP stack (and, on
//! loopback, the delivery the sender pays for) is walked once per run instead of once per request.
//! Measured on loopback this halves the generator's CPU per REGISTER. Replies are still received
//! one datagram per `recvmmsg` entry: UDP_GRO on our socket coalesces nothing on loopback when the
//! registrar answers with separate datagrams (no GRO engine on `lo`), so it is not used.

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

/// Most bytes one UDP GSO send may carry: the IPv4 UDP length field (65535) minus the UDP header,
/// with margin.
const GSO_MAX_BYTES: usize = 65_000;
/// Most segments per GSO send. The kernel's UDP_MAX_SEGMENTS is 64 on older kernels (128 since
/// 6.x); 64 is accepted everywhere.
pub const GSO_MAX_SEGMENTS: usize = 64;
/// Segment size cap when the path MTU is unknown (unconnected socket): a 1500-byte Ethernet MTU
/// minus the IPv4 and UDP headers. A larger segment would need IP fragmentation, which GSO refuses.
pub const GSO_DEFAULT_MAX_SEGMENT: usize = 1472;
/// `cmsg` space for one u16 (UDP_SEGMENT) or int (UDP_GRO): header plus an aligned payload.
const CMSG_BUF: usize = 32;

/// How a batch leaves: one `sendmmsg` entry per datagram, or UDP generic segmentation offload
/// (one `sendmmsg` entry per run of equal-sized datagrams to the same destination, carrying a
/// UDP_SEGMENT cmsg: one route lookup and one trip through the IP stack per run; on loopback the
/// receiving socket splits it back into datagrams).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendPath {
    Sendmmsg,
    /// `max_segment`: largest segment (path MTU); `max_segments`: most datagrams per send.
    Gso {
        max_segment: usize,
        max_segments: usize,
    },
}

/// Whether the kernel knows UDP_SEGMENT on this socket (getsockopt fails with ENOPROTOOPT on
/// kernels before 4.18). Support can still be refused per send (EIO without checksum offload);
/// `Batch::send_all` then falls back by itself.
pub fn gso_supported(sock: &UdpSocket) -> io::Result<()> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value/len are valid for writes and len holds value's size.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Largest GSO segment for a connected socket: the path MTU (IP_MTU) minus IPv4 and UDP headers,
/// capped at what one GSO send may carry.
pub fn gso_max_segment(sock: &UdpSocket) -> usize {
    let mut mtu: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: mtu/len are valid for writes and len holds mtu's size.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU,
            (&mut mtu as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 || mtu <= 28 {
        return GSO_DEFAULT_MAX_SEGMENT;
    }
    (mtu as usize - 28).min(MAX_DATAGRAM)
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
    /// GSO: per header, how many datagrams it carries, and its UDP_SEGMENT cmsg.
    counts: Vec<usize>,
    cmsgs: Vec<[u64; CMSG_BUF / 8]>,
    /// GSO: datagram indices sorted by (destination, length).
    order: Vec<u32>,
    len: usize,
    path: SendPath,
    /// Why GSO was turned off by a send the kernel refused (EINVAL/EIO), if it was.
    gso_fallback: Option<String>,
    /// GSO sends issued and datagrams they carried (for reports and tests).
    gso_sends: u64,
    gso_datagrams: u64,
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
            counts: vec![0; capacity],
            cmsgs: vec![[0u64; CMSG_BUF / 8]; capacity],
            order: Vec::with_capacity(capacity),
            len: 0,
            path: SendPath::Sendmmsg,
            gso_fallback: None,
            gso_sends: 0,
            gso_datagrams: 0,
        }
    }

    /// A batch with no buffers (allocates nothing): a placeholder while the real one is borrowed.
    pub fn empty() -> Self {
        Batch {
            buffers: Vec::new(),
            lengths: Vec::new(),
            addrs: Vec::new(),
            iovecs: Vec::new(),
            headers: Vec::new(),
            counts: Vec::new(),
            cmsgs: Vec::new(),
            order: Vec::new(),
            len: 0,
            path: SendPath::Sendmmsg,
            gso_fallback: None,
            gso_sends: 0,
            gso_datagrams: 0,
        }
    }

    /// Chooses how `send_all` sends. GSO segments are capped at `max_segment` bytes (path MTU);
    /// longer datagrams go out one per `sendmmsg` entry as before.
    pub fn set_path(&mut self, path: SendPath) {
        self.path = path;
    }

    #[cfg(test)]
    fn path_for_test(&self) -> &SendPath {
        &self.path
    }

    /// Why GSO was switched off during sending (the kernel refused it), if it was.
    pub fn gso_fallback(&self) -> Option<&str> {
        self.gso_fallback.as_deref()
    }

    /// (GSO sends, datagrams they carried) so far.
    pub fn gso_stats(&self) -> (u64, u64) {
        (self.gso_sends, self.gso_datagrams)
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
            self.counts[i] = 1;
        }
    }

    /// GSO layout: datagrams sorted by (destination, length descending); each header takes a run
    /// of equal-length datagrams to one destination (plus, as the kernel allows, one shorter last
    /// segment), as several iovecs and a UDP_SEGMENT cmsg of that length. Returns the header count.
    fn prepare_gso(
        &mut self,
        total: usize,
        with_addrs: bool,
        max_segment: usize,
        max_segments: usize,
    ) -> usize {
        let dest_key =
            |a: &libc::sockaddr_in| ((a.sin_addr.s_addr as u64) << 16) | a.sin_port as u64;
        self.order.clear();
        self.order.extend(0..total as u32);
        {
            let (lengths, addrs) = (&self.lengths, &self.addrs);
            self.order.sort_unstable_by_key(|&i| {
                let i = i as usize;
                let dest = if with_addrs { dest_key(&addrs[i]) } else { 0 };
                (dest, std::cmp::Reverse(lengths[i]), i)
            });
        }
        self.iovecs.clear();
        for k in 0..total {
            let i = self.order[k] as usize;
            self.iovecs.push(libc::iovec {
                iov_base: self.buffers[i].as_mut_ptr().cast(),
                iov_len: self.lengths[i],
            });
        }
        let mut headers = 0;
        let mut k = 0;
        while k < total {
            let first = self.order[k] as usize;
            let seg = self.lengths[first];
            let dest = dest_key(&self.addrs[first]);
            let same_dest = |j: usize| !with_addrs || dest_key(&self.addrs[j]) == dest;
            let mut n = 1;
            if seg > 0 && seg <= max_segment {
                let max_n = max_segments.min(GSO_MAX_BYTES / seg);
                while n < max_n && k + n < total {
                    let j = self.order[k + n] as usize;
                    if !same_dest(j) || self.lengths[j] > seg || self.lengths[j] == 0 {
                        break;
                    }
                    n += 1;
                    if self.lengths[j] < seg {
                        break; // a shorter segment can only be the last one
                    }
                }
            }
            let h = &mut self.headers[headers];
            h.msg_hdr.msg_iov = &mut self.iovecs[k];
            h.msg_hdr.msg_iovlen = n as _;
            h.msg_hdr.msg_flags = 0;
            if with_addrs {
                h.msg_hdr.msg_name = (&mut self.addrs[first] as *mut libc::sockaddr_in).cast();
                h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            } else {
                h.msg_hdr.msg_name = std::ptr::null_mut();
                h.msg_hdr.msg_namelen = 0;
            }
            if n > 1 {
                let buf = &mut self.cmsgs[headers];
                h.msg_hdr.msg_control = buf.as_mut_ptr().cast();
                // SAFETY: CMSG_SPACE is a pure size computation.
                let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) };
                h.msg_hdr.msg_controllen = space as _;
                // SAFETY: msg_control points at CMSG_BUF (>= space) aligned bytes owned by self;
                // CMSG_FIRSTHDR therefore returns a valid header inside it.
                unsafe {
                    let c = libc::CMSG_FIRSTHDR(&h.msg_hdr);
                    (*c).cmsg_level = libc::SOL_UDP;
                    (*c).cmsg_type = libc::UDP_SEGMENT;
                    (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), seg as u16);
                }
            } else {
                h.msg_hdr.msg_control = std::ptr::null_mut();
                h.msg_hdr.msg_controllen = 0;
            }
            h.msg_len = 0;
            self.counts[headers] = n;
            headers += 1;
            k += n;
        }
        headers
    }

    /// Sends every queued datagram (to the connected peer unless `with_addrs`). Datagrams the
    /// kernel refuses (full buffer) are dropped and counted: UDP may lose packets anyway and the
    /// retransmission timer covers it. Returns (sent, dropped).
    ///
    /// With `SendPath::Gso`, a send the kernel refuses with EINVAL or EIO (no UDP GSO on this
    /// path) switches the batch to plain `sendmmsg` for good and resends; `gso_fallback` says why.
    pub fn send_all(&mut self, sock: &UdpSocket, with_addrs: bool) -> (usize, usize) {
        let total = self.len;
        let mut sent = 0;
        let mut dropped = 0;
        let headers = match self.path {
            SendPath::Gso {
                max_segment,
                max_segments,
            } if total > 1 => self.prepare_gso(total, with_addrs, max_segment, max_segments),
            _ => {
                self.prepare(total, with_addrs, false);
                total
            }
        };
        let mut h = 0;
        let mut refused_retried = false;
        while h < headers {
            // SAFETY: headers[h..headers] point at live iovecs/buffers/addrs/cmsgs prepared above.
            let rc = unsafe {
                libc::sendmmsg(
                    sock.as_raw_fd(),
                    self.headers.as_mut_ptr().add(h),
                    (headers - h) as u32,
                    0,
                )
            };
            if rc > 0 {
                for j in h..h + rc as usize {
                    let n = self.counts[j];
                    sent += n;
                    if n > 1 {
                        self.gso_sends += 1;
                        self.gso_datagrams += n as u64;
                    }
                }
                h += rc as usize;
                continue;
            }
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            let n = self.counts[h];
            let errno = err.raw_os_error().unwrap_or(0);
            if n > 1 && (errno == libc::EINVAL || errno == libc::EIO) {
                // The kernel or the route refuses UDP GSO: plain sendmmsg from now on, and
                // resend what is left of this batch that way.
                self.gso_fallback = Some(format!("UDP GSO refused by the kernel ({err})"));
                self.path = SendPath::Sendmmsg;
                let remaining: Vec<u32> = (h..headers)
                    .flat_map(|j| {
                        let start = self.headers[j].msg_hdr.msg_iov as usize;
                        let base = self.iovecs.as_ptr() as usize;
                        let first = (start - base) / std::mem::size_of::<libc::iovec>();
                        first..first + self.counts[j]
                    })
                    .map(|k| self.order[k])
                    .collect();
                let (s, d) = self.resend_plain(sock, with_addrs, &remaining);
                sent += s;
                dropped += d;
                break;
            }
            if errno == libc::ECONNREFUSED && !refused_retried {
                // A pending ICMP error from an earlier send was reported (and cleared) by this
                // call: nothing of this entry left, try it once more.
                refused_retried = true;
                continue;
            }
            // ENOBUFS/EAGAIN/ECONNREFUSED (ICMP from a dead target): skip this entry.
            dropped += n;
            h += 1;
        }
        self.len = 0;
        (sent, dropped)
    }

    /// Sends datagrams `which` one per sendmmsg entry (the GSO fallback).
    fn resend_plain(
        &mut self,
        sock: &UdpSocket,
        with_addrs: bool,
        which: &[u32],
    ) -> (usize, usize) {
        // Move the remaining datagrams to the front so `prepare` can lay them out.
        let mut kept = Vec::with_capacity(which.len());
        for &i in which {
            kept.push((
                self.buffers[i as usize],
                self.lengths[i as usize],
                self.addrs[i as usize],
            ));
        }
        for (slot, (buf, len, addr)) in kept.into_iter().enumerate() {
            self.buffers[slot] = buf;
            self.lengths[slot] = len;
            self.addrs[slot] = addr;
        }
        self.len = which.len();
        self.send_all(sock, with_addrs)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn pair() -> (UdpSocket, UdpSocket) {
        let any = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0);
        let rx = bind_udp(any, false).expect("bind rx");
        let tx = bind_udp(any, false).expect("bind tx");
        connect(&tx, rx.local_addr().expect("addr")).expect("connect");
        (tx, rx)
    }

    /// Datagram `i` of a test batch: lengths vary so runs, a shorter last segment and singletons
    /// all occur.
    fn payload(i: usize) -> Vec<u8> {
        let len = match i % 7 {
            0 => 1200,
            1..=3 => 400,
            4 => 399,
            5 => 37,
            _ => 400,
        };
        let mut v = format!("datagram {i:04} ").into_bytes();
        v.resize(len, b'a' + (i % 26) as u8);
        v
    }

    fn send_and_collect(
        batch: &mut Batch,
        tx: &UdpSocket,
        rx: &UdpSocket,
        n: usize,
    ) -> Vec<Vec<u8>> {
        for i in 0..n {
            let p = payload(i);
            assert!(batch.push_with(None, |buf| {
                buf[..p.len()].copy_from_slice(&p);
                Some(p.len())
            }));
        }
        let (sent, dropped) = batch.send_all(tx, false);
        assert_eq!((sent, dropped), (n, 0));
        let mut got = Vec::new();
        let mut recv = Batch::new(256);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while got.len() < n && std::time::Instant::now() < deadline {
            wait_readable(rx, 10_000_000);
            let k = recv.recv(rx, true);
            for i in 0..k {
                got.push(recv.get(i).expect("received").0.to_vec());
            }
        }
        got.sort();
        got
    }

    #[test]
    fn gso_delivers_every_datagram_intact() {
        let (tx, rx) = pair();
        if gso_supported(&tx).is_err() {
            eprintln!("kernel without UDP GSO: nothing to test");
            return;
        }
        let n = 200;
        let mut batch = Batch::new(n);
        batch.set_path(SendPath::Gso {
            max_segment: gso_max_segment(&tx),
            max_segments: GSO_MAX_SEGMENTS,
        });
        let got = send_and_collect(&mut batch, &tx, &rx, n);
        let mut want: Vec<Vec<u8>> = (0..n).map(payload).collect();
        want.sort();
        assert_eq!(got, want);
        assert_eq!(batch.gso_fallback(), None);
        let (sends, carried) = batch.gso_stats();
        assert!(
            sends > 0 && carried > sends,
            "{sends} GSO sends carried {carried}"
        );
    }

    #[test]
    fn refused_gso_falls_back_to_sendmmsg() {
        let (tx, rx) = pair();
        let n = 300;
        let mut batch = Batch::new(n);
        // More segments per send than any kernel accepts (UDP_MAX_SEGMENTS is 64 or 128): the
        // first GSO send fails with EINVAL and the batch must still arrive, datagram by datagram.
        batch.set_path(SendPath::Gso {
            max_segment: gso_max_segment(&tx),
            max_segments: 1000,
        });
        let got = send_and_collect(&mut batch, &tx, &rx, n);
        let mut want: Vec<Vec<u8>> = (0..n).map(payload).collect();
        want.sort();
        assert_eq!(got, want);
        assert!(batch.gso_fallback().is_some());
        assert_eq!(*batch.path_for_test(), SendPath::Sendmmsg);
    }
}
