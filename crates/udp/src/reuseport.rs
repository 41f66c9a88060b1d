//! Choosing the receiving socket of an `SO_REUSEPORT` group with a classic BPF program.
//!
//! By default the kernel picks the socket of a reuseport group by hashing the datagram's 4-tuple, so all
//! the datagrams of one client socket (a SIP edge proxy or SBC sending from one port) land on one socket.
//! A program attached with `SO_ATTACH_REUSEPORT_CBPF` returns the index of the socket instead: the index
//! is the socket's position in the group, which is the order the sockets were bound in (as long as none
//! leaves the group). An index at or beyond the group's size falls back to the 4-tuple hash.

use std::io;
use std::mem::size_of;
use std::os::fd::AsRawFd;

/// `SO_ATTACH_REUSEPORT_CBPF` from the kernel's asm-generic/socket.h (Linux 4.5+); the libc crate only
/// exports it for Android.
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;

/// How the kernel picks a socket of the group for each datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spread {
    /// A fresh random number per datagram, modulo the group size: even spread whatever the sources.
    Random,
    /// The CPU that runs the receive path (the NIC queue's interrupt or, on loopback, the sender's
    /// CPU), modulo the group size: keeps a datagram on the CPU that received it.
    Cpu,
}

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

/// The program: `ld <ancillary word>; mod #sockets; ret a`.
pub fn program(spread: Spread, sockets: u32) -> [libc::sock_filter; 3] {
    let ancillary = match spread {
        Spread::Random => libc::SKF_AD_RANDOM,
        Spread::Cpu => libc::SKF_AD_CPU,
    };
    // SKF_AD_OFF is negative: the load offset is its two's complement, as in C.
    let offset = (libc::SKF_AD_OFF + ancillary) as u32;
    [
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, offset),
        stmt(libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K, sockets.max(1)),
        stmt(libc::BPF_RET | libc::BPF_A, 0),
    ]
}

/// Attaches the [`program`] for `sockets` sockets to the reuseport group of `socket` (any bound member:
/// the program belongs to the group). Replaces any program attached before.
pub fn attach_reuseport_spread(
    socket: &impl AsRawFd,
    spread: Spread,
    sockets: u32,
) -> io::Result<()> {
    let mut filter = program(spread, sockets);
    let fprog = libc::sock_fprog {
        len: filter.len() as libc::c_ushort,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: `fprog` points at `filter`, `len` instructions that live until the call returns; the kernel
    // copies (and checks) the program during the call and keeps no pointer to our memory. The option
    // length is the size of `fprog`, the struct the kernel reads.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_REUSEPORT_CBPF,
            (&fprog as *const libc::sock_fprog).cast(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    #[test]
    fn the_program_loads_the_ancillary_word_and_takes_it_modulo_the_group() {
        let p = program(Spread::Random, 4);
        assert_eq!(p[0].code, 0x20);
        assert_eq!(p[0].k, 0xffff_f038);
        assert_eq!((p[1].code, p[1].k), (0x94, 4));
        assert_eq!(p[2].code, 0x16);
        assert_eq!(program(Spread::Cpu, 0)[1].k, 1, "never a modulo by zero");
    }

    #[test]
    fn random_spread_lands_one_source_on_every_socket() {
        let first = crate::bind_udp("127.0.0.1:0".parse().unwrap(), true, None).unwrap();
        let addr = first.local_addr().unwrap();
        let second = crate::bind_udp(addr, true, None).unwrap();
        attach_reuseport_spread(&first, Spread::Random, 2).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sent = 400;
        for _ in 0..sent {
            client.send_to(b"x", addr).unwrap();
        }
        let mut counts = [0u32; 2];
        let mut buf = [0u8; 8];
        for (i, s) in [&first, &second].into_iter().enumerate() {
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            while s.recv(&mut buf).is_ok() {
                counts[i] += 1;
            }
        }
        assert_eq!(counts[0] + counts[1], sent, "{counts:?}");
        assert!(counts[0] > sent / 4 && counts[1] > sent / 4, "{counts:?}");
    }
}
