//! Pieces shared by the batch types: zeroed C structs, message headers, system call results.

use std::io;

/// An all-zero `mmsghdr`: no buffers, no address, no control data.
pub(crate) fn zeroed_mmsghdr() -> libc::mmsghdr {
    // SAFETY: mmsghdr is a plain C struct (integers and raw pointers) for which all-zero is valid.
    unsafe { std::mem::zeroed() }
}

/// An all-zero `sockaddr_storage` (family AF_UNSPEC).
pub(crate) fn zeroed_sockaddr_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is a plain C struct of integers for which all-zero is valid.
    unsafe { std::mem::zeroed() }
}

/// An iovec describing nothing.
pub(crate) const EMPTY_IOVEC: libc::iovec = libc::iovec {
    iov_base: std::ptr::null_mut(),
    iov_len: 0,
};

/// Points one message header at `iovlen` iovecs from `iov` and at a socket address (null for
/// none), with no control data and cleared flags and length.
pub(crate) fn point(
    hdr: &mut libc::mmsghdr,
    (iov, iovlen): (*mut libc::iovec, usize),
    (name, name_len): (*mut libc::c_void, libc::socklen_t),
) {
    hdr.msg_hdr.msg_iov = iov;
    hdr.msg_hdr.msg_iovlen = iovlen as _;
    hdr.msg_hdr.msg_name = name;
    hdr.msg_hdr.msg_namelen = name_len;
    hdr.msg_hdr.msg_control = std::ptr::null_mut();
    hdr.msg_hdr.msg_controllen = 0;
    hdr.msg_hdr.msg_flags = 0;
    hdr.msg_len = 0;
}

/// A `recvmmsg`/`sendmmsg` result: the message count, or the error (`errno`).
pub(crate) fn count(ret: libc::c_int) -> io::Result<usize> {
    if ret >= 0 {
        Ok(ret as usize)
    } else {
        Err(io::Error::last_os_error())
    }
}
