//! Batched UDP I/O on a socket's raw fd: `recvmmsg` to drain queued datagrams, `sendmmsg` for their replies.
//!
//! glommio's `UdpSocket` moves one datagram per call (a `recvmsg` tried first, then io_uring when the socket
//! is empty; a `sendmsg` per reply). When datagrams queue up faster than the shard answers, the receive loop
//! ([`super::udp::recv_loop`]) drains the queue with these instead: one system call for up to `capacity`
//! datagrams, and one for their replies. Written on `libc` directly because no maintained crate offers
//! `recvmmsg`/`sendmmsg` over caller-owned, reused buffers (nix's wrappers allocate per call), and this runs
//! once per batch on the hot path. Both calls are non-blocking: an empty queue or a full send buffer returns
//! at once, and the caller falls back to glommio's waiting calls.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
use std::os::fd::RawFd;

use socket2::SockAddr;

/// One received datagram of a [`RecvBatch`].
#[derive(Debug)]
pub struct Received<'a> {
    pub datagram: &'a [u8],
    /// None for an address family other than IPv4/IPv6 (cannot happen on a UDP/IP socket).
    pub source: Option<SocketAddr>,
    /// The kernel cut the datagram to the buffer (MSG_TRUNC): it was longer than `slot_bytes`.
    pub truncated: bool,
}

/// Receive buffers for up to `capacity` datagrams of up to `slot_bytes` each, allocated once.
pub struct RecvBatch {
    slot_bytes: usize,
    bufs: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    /// Datagrams the last [`RecvBatch::recv`] filled.
    filled: usize,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("capacity", &self.capacity())
            .field("slot_bytes", &self.slot_bytes)
            .field("filled", &self.filled)
            .finish()
    }
}

impl RecvBatch {
    /// `capacity` datagrams (at least 1) of `slot_bytes` (at least 1) each.
    pub fn new(capacity: usize, slot_bytes: usize) -> Self {
        let capacity = capacity.max(1);
        let slot_bytes = slot_bytes.max(1);
        RecvBatch {
            slot_bytes,
            bufs: vec![0; capacity * slot_bytes],
            // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs for which all-zero is valid.
            addrs: (0..capacity).map(|_| unsafe { zeroed() }).collect(),
            iovs: (0..capacity).map(|_| unsafe { zeroed() }).collect(),
            hdrs: (0..capacity).map(|_| unsafe { zeroed() }).collect(),
            filled: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Receives what is queued on `fd`, up to the capacity, without waiting. Ok(0) when nothing is queued
    /// (EAGAIN). The datagrams are then read with [`RecvBatch::get`].
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.filled = 0;
        let n = self.capacity();
        // The pointers are set before every call: they point into this struct's own heap buffers, which
        // never move or grow after `new`.
        for (i, ((hdr, iov), addr)) in self
            .hdrs
            .iter_mut()
            .zip(self.iovs.iter_mut())
            .zip(self.addrs.iter_mut())
            .enumerate()
        {
            let buf = self.bufs[i * self.slot_bytes..].as_mut_ptr().cast();
            let name = (addr as *mut libc::sockaddr_storage).cast();
            let name_len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            point(hdr, iov, (buf, self.slot_bytes), (name, name_len));
        }
        // SAFETY: `hdrs` holds `n` initialised headers whose buffers are valid for writes of the given sizes.
        let got = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        self.filled = nonblocking(got)?.min(n);
        Ok(self.filled)
    }

    /// Datagram `i` of the last receive (`i < filled`).
    pub fn get(&self, i: usize) -> Option<Received<'_>> {
        if i >= self.filled {
            return None;
        }
        let hdr = &self.hdrs[i];
        let len = (hdr.msg_len as usize).min(self.slot_bytes);
        let start = i * self.slot_bytes;
        // SAFETY: the kernel wrote `msg_namelen` bytes of a socket address into this storage.
        let addr = unsafe { SockAddr::new(self.addrs[i], hdr.msg_hdr.msg_namelen) };
        Some(Received {
            datagram: &self.bufs[start..start + len],
            source: addr.as_socket(),
            truncated: hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
        })
    }
}

/// Replies collected for one `sendmmsg`: their bytes back to back, and where each goes.
pub struct SendBatch {
    bytes: Vec<u8>,
    /// (end offset in `bytes`, destination) per reply.
    replies: Vec<(usize, SockAddr)>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch")
            .field("replies", &self.replies.len())
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl SendBatch {
    /// Room for `capacity` replies of about `reply_bytes` each (more bytes are allowed: the buffer grows).
    pub fn new(capacity: usize, reply_bytes: usize) -> Self {
        let capacity = capacity.max(1);
        SendBatch {
            bytes: Vec::with_capacity(capacity * reply_bytes),
            replies: Vec::with_capacity(capacity),
            // SAFETY: iovec and mmsghdr are plain C structs for which all-zero is valid.
            iovs: (0..capacity).map(|_| unsafe { zeroed() }).collect(),
            hdrs: (0..capacity).map(|_| unsafe { zeroed() }).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.replies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.replies.is_empty()
    }

    /// Queues `reply` for `to`.
    pub fn push(&mut self, reply: &[u8], to: SocketAddr) {
        self.bytes.extend_from_slice(reply);
        self.replies.push((self.bytes.len(), SockAddr::from(to)));
    }

    /// Reply `i`: its bytes and destination.
    pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        let (end, to) = self.replies.get(i)?;
        let start = i.checked_sub(1).map_or(0, |p| self.replies[p].0);
        Some((&self.bytes[start..*end], to.as_socket()?))
    }

    /// Sends queued replies from reply `from` on, without waiting, as far as the socket takes them.
    /// Returns how many were handed to the kernel (a send buffer that is full stops the call early: EAGAIN
    /// gives Ok(0)). Replies the kernel refused for another reason are an `Err` for the first of them.
    pub fn send_from(&mut self, fd: RawFd, from: usize) -> io::Result<usize> {
        let pending = self.replies.len().saturating_sub(from);
        let n = pending.min(self.hdrs.len());
        if n == 0 {
            return Ok(0);
        }
        for (k, (hdr, iov)) in self
            .hdrs
            .iter_mut()
            .zip(self.iovs.iter_mut())
            .take(n)
            .enumerate()
        {
            let i = from + k;
            let start = i.checked_sub(1).map_or(0, |p| self.replies[p].0);
            let (end, to) = &self.replies[i];
            let buf = self.bytes[start..].as_ptr() as *mut libc::c_void;
            let name = to.as_ptr() as *mut libc::c_void;
            point(hdr, iov, (buf, end - start), (name, to.len()));
        }
        // SAFETY: the first `n` headers point at live bytes and addresses of this batch; the kernel only
        // reads them.
        let sent = unsafe {
            libc::sendmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        Ok(nonblocking(sent)?.min(n))
    }

    /// Forgets every queued reply (keeps the buffers).
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.replies.clear();
    }
}

/// A non-blocking `recvmmsg`/`sendmmsg` result: the message count, 0 for EAGAIN, else the error.
fn nonblocking(ret: libc::c_int) -> io::Result<usize> {
    if ret >= 0 {
        return Ok(ret as usize);
    }
    let e = io::Error::last_os_error();
    match e.kind() {
        io::ErrorKind::WouldBlock => Ok(0),
        _ => Err(e),
    }
}

/// Points one message header at one buffer (`iov` describes it) and one socket address, with no control
/// data and cleared flags and length.
fn point(
    hdr: &mut libc::mmsghdr,
    iov: &mut libc::iovec,
    (buf, len): (*mut libc::c_void, usize),
    (name, name_len): (*mut libc::c_void, libc::socklen_t),
) {
    iov.iov_base = buf;
    iov.iov_len = len;
    hdr.msg_hdr.msg_name = name;
    hdr.msg_hdr.msg_namelen = name_len;
    hdr.msg_hdr.msg_iov = iov;
    hdr.msg_hdr.msg_iovlen = 1;
    hdr.msg_hdr.msg_control = std::ptr::null_mut();
    hdr.msg_hdr.msg_controllen = 0;
    hdr.msg_hdr.msg_flags = 0;
    hdr.msg_len = 0;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    fn pair() -> (UdpSocket, UdpSocket) {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        (a, b)
    }

    #[test]
    fn receives_every_queued_datagram_in_order_with_its_source() {
        let (rx, tx) = pair();
        let to = rx.local_addr().unwrap();
        for i in 0..5u8 {
            tx.send_to(&vec![b'a' + i; 3 + usize::from(i)], to).unwrap();
        }
        let mut batch = RecvBatch::new(4, 64);
        // Loopback delivers synchronously: all five are queued. A batch of 4 takes 4, the next call the fifth.
        assert_eq!(batch.recv(rx.as_raw_fd()).unwrap(), 4);
        for i in 0..4u8 {
            let r = batch.get(usize::from(i)).unwrap();
            assert_eq!(r.datagram, vec![b'a' + i; 3 + usize::from(i)].as_slice());
            assert_eq!(r.source, Some(tx.local_addr().unwrap()));
            assert!(!r.truncated);
        }
        assert!(batch.get(4).is_none());
        assert_eq!(batch.recv(rx.as_raw_fd()).unwrap(), 1);
        assert_eq!(batch.get(0).unwrap().datagram, b"eeeeeee");
        assert!(batch.get(1).is_none(), "only what the last call filled");
        assert_eq!(
            batch.recv(rx.as_raw_fd()).unwrap(),
            0,
            "empty queue: EAGAIN is Ok(0)"
        );
        assert!(batch.get(0).is_none());
    }

    #[test]
    fn a_datagram_longer_than_its_slot_is_cut_and_flagged() {
        let (rx, tx) = pair();
        tx.send_to(&[b'x'; 100], rx.local_addr().unwrap()).unwrap();
        tx.send_to(b"short", rx.local_addr().unwrap()).unwrap();
        let mut batch = RecvBatch::new(8, 33);
        assert_eq!(batch.recv(rx.as_raw_fd()).unwrap(), 2);
        let long = batch.get(0).unwrap();
        assert_eq!(long.datagram.len(), 33);
        assert!(long.truncated);
        let short = batch.get(1).unwrap();
        assert_eq!(short.datagram, b"short");
        assert!(!short.truncated);
    }

    #[test]
    fn sends_each_reply_to_its_own_destination() {
        let (server, c1) = pair();
        let c2 = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut out = SendBatch::new(2, 16);
        out.push(b"one", c1.local_addr().unwrap());
        out.push(b"two!", c2.local_addr().unwrap());
        out.push(b"three", c1.local_addr().unwrap());
        assert_eq!(out.len(), 3);
        assert_eq!(
            out.get(1).unwrap(),
            (&b"two!"[..], c2.local_addr().unwrap())
        );
        // Capacity 2: the first call sends two, the second the rest.
        assert_eq!(out.send_from(server.as_raw_fd(), 0).unwrap(), 2);
        assert_eq!(out.send_from(server.as_raw_fd(), 2).unwrap(), 1);
        assert_eq!(out.send_from(server.as_raw_fd(), 3).unwrap(), 0);
        let mut buf = [0u8; 16];
        let (n, from) = c1.recv_from(&mut buf).unwrap();
        assert_eq!(
            (&buf[..n], from),
            (&b"one"[..], server.local_addr().unwrap())
        );
        let (n, _) = c1.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"three");
        let (n, _) = c2.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"two!");
        out.clear();
        assert!(out.is_empty());
        assert!(out.get(0).is_none());
    }
}
