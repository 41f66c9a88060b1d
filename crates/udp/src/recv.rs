//! [`RecvBatch`]: `recvmmsg` into buffers allocated once and reused.

use std::fmt;
use std::io;
use std::mem::size_of;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use socket2::SockAddr;

use crate::sys;

/// One received datagram of a [`RecvBatch`].
#[derive(Debug)]
pub struct Received<'a> {
    pub datagram: &'a [u8],
    /// None for an address family other than IPv4/IPv6 (cannot happen on a UDP/IP socket).
    pub source: Option<SocketAddr>,
    /// The kernel cut the datagram to its buffer (MSG_TRUNC): it was longer than `slot_bytes`.
    pub truncated: bool,
}

/// Receive buffers for up to `capacity` datagrams of up to `slot_bytes` each, with their source
/// addresses and the kernel's message headers, allocated once. The headers hold raw pointers into the
/// buffers, so they are set again before every call rather than kept across moves of the batch.
pub struct RecvBatch {
    slot_bytes: usize,
    bufs: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    /// Datagrams the last [`RecvBatch::recv`] filled.
    filled: usize,
}

// SAFETY: the raw pointers inside `iovs` and `hdrs` only ever point into this batch's own heap buffers,
// and they are set again before each system call; nothing is shared with another thread.
unsafe impl Send for RecvBatch {}

impl fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvBatch")
            .field("capacity", &self.capacity())
            .field("slot_bytes", &self.slot_bytes)
            .field("filled", &self.filled)
            .finish()
    }
}

/// A batch with no buffers (allocates nothing; receives nothing): a placeholder while the real one is
/// taken out, e.g. with `std::mem::take`, so that its datagrams can be read while their owner changes.
impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch {
            slot_bytes: 0,
            bufs: Vec::new(),
            addrs: Vec::new(),
            iovs: Vec::new(),
            hdrs: Vec::new(),
            filled: 0,
        }
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
            addrs: vec![sys::zeroed_sockaddr_storage(); capacity],
            iovs: vec![sys::EMPTY_IOVEC; capacity],
            hdrs: vec![sys::zeroed_mmsghdr(); capacity],
            filled: 0,
        }
    }

    /// Most datagrams one [`RecvBatch::recv`] takes.
    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Bytes kept per datagram; a longer one is cut and flagged [`Received::truncated`].
    pub fn slot_bytes(&self) -> usize {
        self.slot_bytes
    }

    /// Datagrams the last receive filled.
    pub fn len(&self) -> usize {
        self.filled
    }

    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    /// Receives what is queued on `socket`, up to the capacity, without waiting. Ok(0) when nothing is
    /// queued (EAGAIN); an interrupted call is retried. Other errors (e.g. ECONNREFUSED on a connected
    /// socket after an ICMP error) are returned. The datagrams are then read with [`RecvBatch::get`].
    pub fn recv(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
        self.filled = 0;
        let n = self.capacity();
        if n == 0 {
            return Ok(0);
        }
        // The buffer and address pointers are derived from the vectors' `as_mut_ptr` (no reference to them
        // is made until the call returns), into heap buffers that never move or grow after `new`; the
        // iovecs' pointer is taken after they are written.
        let bufs = self.bufs.as_mut_ptr();
        let addrs = self.addrs.as_mut_ptr();
        for (i, iov) in self.iovs.iter_mut().enumerate() {
            iov.iov_base = bufs.wrapping_add(i * self.slot_bytes).cast();
            iov.iov_len = self.slot_bytes;
        }
        let iovs = self.iovs.as_mut_ptr();
        let name_len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        for (i, hdr) in self.hdrs.iter_mut().enumerate() {
            let name = addrs.wrapping_add(i).cast();
            sys::point(hdr, (iovs.wrapping_add(i), 1), (name, name_len));
        }
        let got = loop {
            // SAFETY: `hdrs` holds `n` headers, each pointing at one iovec that describes a distinct
            // `slot_bytes` slice of `bufs` and at one `sockaddr_storage` of `addrs` with its size; all are
            // owned by `self`, live across the call, and valid for the kernel's writes.
            let ret = unsafe {
                libc::recvmmsg(
                    socket.as_raw_fd(),
                    self.hdrs.as_mut_ptr(),
                    n as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            match sys::count(ret) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
                other => break other?,
            }
        };
        self.filled = got.min(n);
        Ok(self.filled)
    }

    /// Datagram `i` of the last receive (`i < len()`).
    pub fn get(&self, i: usize) -> Option<Received<'_>> {
        if i >= self.filled {
            return None;
        }
        let hdr = &self.hdrs[i];
        let len = (hdr.msg_len as usize).min(self.slot_bytes);
        let start = i * self.slot_bytes;
        let name_len = hdr
            .msg_hdr
            .msg_namelen
            .min(size_of::<libc::sockaddr_storage>() as _);
        // SAFETY: the kernel wrote a socket address of `msg_namelen` bytes into this storage (clamped to
        // its size; `SockAddr` reads only the family's own struct from it).
        let addr = unsafe { SockAddr::new(self.addrs[i], name_len) };
        Some(Received {
            datagram: &self.bufs[start..start + len],
            source: addr.as_socket(),
            truncated: hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
        })
    }

    /// The datagrams of the last receive, in order.
    pub fn iter(&self) -> impl Iterator<Item = Received<'_>> {
        (0..self.filled).filter_map(|i| self.get(i))
    }
}
