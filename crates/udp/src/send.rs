//! [`SendBatch`]: datagrams queued in one reused buffer, sent with `sendmmsg`, optionally as UDP GSO runs.

use std::cmp::Reverse;
use std::fmt;
use std::io;
use std::mem::{align_of, size_of};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;

use socket2::SockAddr;

use crate::socket::GSO_MAX_BYTES;
use crate::sys;

/// How [`SendBatch::send_all`] sends: one `sendmmsg` entry per datagram, or UDP generic segmentation
/// offload: one entry per run of equal-sized datagrams to the same destination, carrying a UDP_SEGMENT
/// cmsg, so the route lookup and the trip through the IP stack happen once per run (on loopback the
/// receiving socket splits the run back into datagrams). The load generator's requests leave this way;
/// measured on loopback it halves the generator's CPU per REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendPath {
    Sendmmsg,
    /// `max_segment`: largest segment (path MTU, see [`crate::gso_max_segment`]); `max_segments`: most
    /// datagrams per send (see [`crate::GSO_MAX_SEGMENTS`]).
    Gso {
        max_segment: usize,
        max_segments: usize,
    },
}

/// What one [`SendBatch::send_all`] did with the queued datagrams.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SendOutcome {
    /// Handed to the kernel.
    pub sent: usize,
    /// Refused by the kernel (full buffer, ICMP error from the destination, ...) and dropped.
    pub dropped: usize,
}

/// `cmsg` room for one UDP_SEGMENT option (a u16): header plus an aligned payload, in u64 words.
const CMSG_WORDS: usize = 4;
const SEGMENT_CMSG_SPACE: usize =
    // SAFETY: CMSG_SPACE is a pure size computation.
    unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as usize;
const SEGMENT_CMSG_LEN: usize =
    // SAFETY: CMSG_LEN is a pure size computation.
    unsafe { libc::CMSG_LEN(size_of::<u16>() as u32) } as usize;
const _: () = assert!(
    SEGMENT_CMSG_SPACE <= CMSG_WORDS * size_of::<u64>()
        && align_of::<libc::cmsghdr>() <= align_of::<u64>()
);

/// One queued datagram: where its bytes are in the buffer, and where it goes.
#[derive(Clone, Copy, Debug)]
struct Entry {
    start: usize,
    len: usize,
    dest: Option<SocketAddr>,
}

/// Up to `capacity` datagrams queued for one `sendmmsg`: their bytes back to back in one buffer, each
/// with its own destination or none (a connected socket's peer). Buffers are allocated once and reused:
/// queueing and sending allocate nothing once the buffer has grown to the largest batch it holds. The
/// kernel's headers hold raw pointers into the buffers, so they are set again before every call.
pub struct SendBatch {
    /// Room each `push_with` offers its closure.
    datagram_bytes: usize,
    /// The queued datagrams' bytes, from 0 to `used`. Its length only grows, so that `push_with` can
    /// hand out room without zeroing it each time.
    bytes: Vec<u8>,
    used: usize,
    entries: Vec<Entry>,
    // Scratch of the system calls, one element per datagram or per header (at most `capacity`).
    /// Datagram indices in the order they are laid out (sorted by destination and length for GSO).
    order: Vec<u32>,
    /// Per position in `order`: the datagram's bytes.
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    /// Per header: its destination, its first position in `order`, how many datagrams it carries, and
    /// its UDP_SEGMENT cmsg when it carries more than one.
    names: Vec<SockAddr>,
    firsts: Vec<usize>,
    counts: Vec<usize>,
    cmsgs: Vec<[u64; CMSG_WORDS]>,
    path: SendPath,
    /// Why GSO was turned off by a send the kernel refused (EINVAL/EIO), if it was.
    gso_fallback: Option<String>,
    /// GSO sends issued and the datagrams they carried.
    gso_sends: u64,
    gso_datagrams: u64,
}

// SAFETY: the raw pointers inside `iovs` and `hdrs` only ever point into this batch's own heap buffers,
// and they are set again before each system call; nothing is shared with another thread.
unsafe impl Send for SendBatch {}

impl fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendBatch")
            .field("capacity", &self.capacity())
            .field("datagrams", &self.entries.len())
            .field("bytes", &self.used)
            .field("path", &self.path)
            .finish()
    }
}

impl SendBatch {
    /// Room for `capacity` datagrams (at least 1). `datagram_bytes` is the room [`SendBatch::push_with`]
    /// offers its closure, and the buffer's initial size per datagram; [`SendBatch::push`] takes longer
    /// datagrams (the buffer grows). Sends with [`SendPath::Sendmmsg`] until [`SendBatch::set_path`].
    pub fn new(capacity: usize, datagram_bytes: usize) -> Self {
        let capacity = capacity.max(1);
        let unspecified = SockAddr::from(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
        SendBatch {
            datagram_bytes,
            bytes: vec![0; capacity * datagram_bytes],
            used: 0,
            entries: Vec::with_capacity(capacity),
            order: Vec::with_capacity(capacity),
            iovs: vec![sys::EMPTY_IOVEC; capacity],
            hdrs: vec![sys::zeroed_mmsghdr(); capacity],
            names: vec![unspecified; capacity],
            firsts: vec![0; capacity],
            counts: vec![0; capacity],
            cmsgs: vec![[0; CMSG_WORDS]; capacity],
            path: SendPath::Sendmmsg,
            gso_fallback: None,
            gso_sends: 0,
            gso_datagrams: 0,
        }
    }

    /// Chooses how [`SendBatch::send_all`] sends. GSO segments are capped at `max_segment` bytes;
    /// longer datagrams go out one per `sendmmsg` entry.
    pub fn set_path(&mut self, path: SendPath) {
        self.path = path;
    }

    /// How [`SendBatch::send_all`] sends now ([`SendPath::Sendmmsg`] after a GSO fallback).
    pub fn path(&self) -> &SendPath {
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

    /// Most datagrams the batch holds.
    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Room each [`SendBatch::push_with`] offers.
    pub fn datagram_bytes(&self) -> usize {
        self.datagram_bytes
    }

    /// Datagrams queued.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.entries.len() == self.capacity()
    }

    /// Queues a copy of `datagram` for `to` (None: the connected peer). False when the batch is full.
    pub fn push(&mut self, datagram: &[u8], to: Option<SocketAddr>) -> bool {
        if self.is_full() {
            return false;
        }
        let start = self.used;
        let end = start + datagram.len();
        if self.bytes.len() < end {
            self.bytes.resize(end, 0);
        }
        self.bytes[start..end].copy_from_slice(datagram);
        self.queue(start, datagram.len(), to);
        true
    }

    /// Queues a datagram for `to` (None: the connected peer) that `fill` writes in place into the
    /// `datagram_bytes` it is given, returning its length. False, with nothing queued, when the batch is
    /// full or `fill` returns None (the datagram did not fit). A length past the room is cut to it.
    pub fn push_with(
        &mut self,
        to: Option<SocketAddr>,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> bool {
        if self.is_full() {
            return false;
        }
        let start = self.used;
        let end = start + self.datagram_bytes;
        if self.bytes.len() < end {
            self.bytes.resize(end, 0);
        }
        let Some(len) = fill(&mut self.bytes[start..end]) else {
            return false;
        };
        self.queue(start, len.min(self.datagram_bytes), to);
        true
    }

    fn queue(&mut self, start: usize, len: usize, dest: Option<SocketAddr>) {
        self.used = start + len;
        self.entries.push(Entry { start, len, dest });
    }

    /// Datagram `i`: its bytes and destination.
    pub fn get(&self, i: usize) -> Option<(&[u8], Option<SocketAddr>)> {
        let e = self.entries.get(i)?;
        Some((&self.bytes[e.start..e.start + e.len], e.dest))
    }

    /// Forgets every queued datagram (keeps the buffers).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.used = 0;
    }

    /// Sends queued datagrams from datagram `from` on, one `sendmmsg` entry each whatever the path,
    /// with one non-blocking call; the batch is left as it is. Returns how many the kernel took: a full
    /// send buffer stops the call early, and one that takes none (EAGAIN) gives Ok(0). A datagram the
    /// kernel refuses for another reason is an `Err` for the first one sent. An interrupted call is
    /// retried.
    pub fn send_from(&mut self, socket: &impl AsRawFd, from: usize) -> io::Result<usize> {
        let n = self.len().saturating_sub(from).min(self.capacity());
        if n == 0 {
            return Ok(0);
        }
        self.identity_order();
        let headers = self.plan_plain(from, from + n);
        self.point_headers(headers);
        loop {
            // SAFETY: `point_headers` set the first `n` headers to point at iovecs, bytes and addresses
            // owned by this batch, live and unchanged across the call; the kernel only reads them.
            let ret = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    self.hdrs.as_mut_ptr(),
                    n as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            match sys::count(ret) {
                Ok(sent) => return Ok(sent.min(n)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends every queued datagram along the batch's [`SendPath`] (waiting for room if the socket is
    /// blocking), then clears the batch. Datagrams the kernel refuses (full buffer, an error from the
    /// destination) are dropped and counted: UDP may lose packets anyway and retransmissions cover it. A
    /// pending ICMP error reported by a call (ECONNREFUSED, which clears it) gets the entry one more try.
    ///
    /// With [`SendPath::Gso`], a send the kernel refuses with EINVAL or EIO (no UDP GSO on this path)
    /// switches the batch to plain `sendmmsg` for good and resends what is left that way;
    /// [`SendBatch::gso_fallback`] says why.
    pub fn send_all(&mut self, socket: &impl AsRawFd) -> SendOutcome {
        let total = self.len();
        let mut outcome = SendOutcome::default();
        if total == 0 {
            return outcome;
        }
        let mut headers = match self.path {
            SendPath::Gso {
                max_segment,
                max_segments,
            } if total > 1 => self.plan_gso(max_segment, max_segments),
            _ => {
                self.identity_order();
                self.plan_plain(0, total)
            }
        };
        self.point_headers(headers);
        let mut h = 0;
        let mut refused_retried = false;
        while h < headers {
            // SAFETY: `point_headers` set headers `h..headers` to point at iovecs, bytes, addresses and
            // cmsgs owned by this batch, live and unchanged across the call; the kernel only reads them.
            let ret = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    self.hdrs.as_mut_ptr().wrapping_add(h),
                    (headers - h) as libc::c_uint,
                    0,
                )
            };
            let err = match sys::count(ret) {
                Ok(0) => io::Error::from(io::ErrorKind::WriteZero),
                Ok(sent) => {
                    let sent = sent.min(headers - h);
                    for &n in &self.counts[h..h + sent] {
                        outcome.sent += n;
                        if n > 1 {
                            self.gso_sends += 1;
                            self.gso_datagrams += n as u64;
                        }
                    }
                    h += sent;
                    continue;
                }
                Err(e) => e,
            };
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            let n = self.counts[h];
            let errno = err.raw_os_error().unwrap_or(0);
            if n > 1 && (errno == libc::EINVAL || errno == libc::EIO) {
                // The kernel or the route refuses UDP GSO: plain sendmmsg from now on, and what is left
                // of this batch (from header h on, in the order laid out) goes that way now.
                self.gso_fallback = Some(format!("UDP GSO refused by the kernel ({err})"));
                self.path = SendPath::Sendmmsg;
                headers = self.plan_plain(self.firsts[h], total);
                self.point_headers(headers);
                h = 0;
                refused_retried = false;
                continue;
            }
            if errno == libc::ECONNREFUSED && !refused_retried {
                // A pending ICMP error from an earlier send was reported (and cleared) by this call:
                // nothing of this entry left, try it once more.
                refused_retried = true;
                continue;
            }
            // ENOBUFS/EAGAIN/ECONNREFUSED (ICMP from a dead destination): skip this entry.
            outcome.dropped += n;
            h += 1;
        }
        self.clear();
        outcome
    }

    fn identity_order(&mut self) {
        self.order.clear();
        self.order.extend(0..self.entries.len() as u32);
    }

    /// Plans one header per datagram for positions `k0..k1` of `order`. Returns the header count.
    fn plan_plain(&mut self, k0: usize, k1: usize) -> usize {
        for (h, k) in (k0..k1).enumerate() {
            self.firsts[h] = k;
            self.counts[h] = 1;
        }
        k1 - k0
    }

    /// GSO plan: datagrams sorted by (destination, length descending); each header takes a run of
    /// equal-length datagrams to one destination (plus, as the kernel allows, one shorter last segment)
    /// of at most `max_segments` and [`GSO_MAX_BYTES`]. Datagrams longer than `max_segment` go alone.
    /// Returns the header count.
    fn plan_gso(&mut self, max_segment: usize, max_segments: usize) -> usize {
        let total = self.entries.len();
        self.identity_order();
        let entries = &self.entries;
        self.order.sort_unstable_by_key(|&i| {
            let e = &entries[i as usize];
            (e.dest, Reverse(e.len), i)
        });
        let mut headers = 0;
        let mut k = 0;
        while k < total {
            let first = entries[self.order[k] as usize];
            let seg = first.len;
            let mut n = 1;
            if seg > 0 && seg <= max_segment {
                let max_n = max_segments.min(GSO_MAX_BYTES / seg);
                while n < max_n && k + n < total {
                    let e = &entries[self.order[k + n] as usize];
                    if e.dest != first.dest || e.len > seg || e.len == 0 {
                        break;
                    }
                    n += 1;
                    if e.len < seg {
                        break; // a shorter segment can only be the last one
                    }
                }
            }
            self.firsts[headers] = k;
            self.counts[headers] = n;
            headers += 1;
            k += n;
        }
        headers
    }

    /// Sets the first `headers` headers (and the iovecs, addresses and cmsgs they point at) as planned
    /// in `firsts`/`counts` over `order`.
    fn point_headers(&mut self, headers: usize) {
        let Some(last) = headers.checked_sub(1) else {
            return;
        };
        let (k0, k1) = (self.firsts[0], self.firsts[last] + self.counts[last]);
        // Everything the headers point at is written first; the pointers are taken after, from the
        // vectors' `as_ptr`/`as_mut_ptr` (or shared references), so no later write invalidates them.
        let bytes = self.bytes.as_ptr();
        for k in k0..k1 {
            let e = &self.entries[self.order[k] as usize];
            self.iovs[k] = libc::iovec {
                iov_base: bytes.wrapping_add(e.start).cast_mut().cast(),
                iov_len: e.len,
            };
        }
        for h in 0..headers {
            if let Some(to) = self.entries[self.order[self.firsts[h]] as usize].dest {
                self.names[h] = SockAddr::from(to);
            }
        }
        let iovs = self.iovs.as_mut_ptr();
        let cmsgs = self.cmsgs.as_mut_ptr();
        for h in 0..headers {
            let (k, n) = (self.firsts[h], self.counts[h]);
            let first = self.entries[self.order[k] as usize];
            let name = match first.dest {
                Some(_) => (
                    self.names[h].as_ptr().cast_mut().cast(),
                    self.names[h].len(),
                ),
                None => (std::ptr::null_mut(), 0),
            };
            let hdr = &mut self.hdrs[h];
            sys::point(hdr, (iovs.wrapping_add(k), n), name);
            if n > 1 {
                let control = cmsgs.wrapping_add(h);
                write_segment_cmsg(control, first.len as u16);
                hdr.msg_hdr.msg_control = control.cast();
                hdr.msg_hdr.msg_controllen = SEGMENT_CMSG_SPACE as _;
            }
        }
    }
}

/// Writes a UDP_SEGMENT cmsg of `segment` bytes into `control`, one element of `SendBatch::cmsgs`.
fn write_segment_cmsg(control: *mut [u64; CMSG_WORDS], segment: u16) {
    let c = control.cast::<libc::cmsghdr>();
    // SAFETY: `control` points at one element of `SendBatch::cmsgs`, valid for writes and not borrowed
    // while the headers are set. It is 8-aligned and holds SEGMENT_CMSG_SPACE bytes (checked above, as is
    // cmsghdr's alignment); the header goes at its start, where CMSG_FIRSTHDR puts it, and the u16 at
    // CMSG_DATA, within CMSG_LEN(2) bytes of it.
    unsafe {
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = libc::UDP_SEGMENT;
        (*c).cmsg_len = SEGMENT_CMSG_LEN as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), segment);
    }
}
