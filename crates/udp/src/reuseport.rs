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
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spread {
    /// A fresh random number per datagram, modulo the group size: even spread whatever the sources.
    Random,
    /// The socket whose thread runs on the CPU that runs the receive path (the NIC queue's interrupt or,
    /// on loopback, the sender's CPU): `cpus[i]` is the CPU of socket `i`. A datagram received on a CPU
    /// no socket is listed for goes to a random socket.
    Cpu(Vec<u32>),
}

/// Most sockets [`Spread::Cpu`] maps one by one: two instructions each, within the kernel's 4,096
/// instructions per classic BPF program.
pub const MAX_CPU_SOCKETS: usize = 2000;

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    jump(code, k, 0, 0)
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// The load of an ancillary word (SKF_AD_OFF is negative: the offset is its two's complement, as in C).
fn load_ancillary(word: libc::c_int) -> libc::sock_filter {
    stmt(
        libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
        (libc::SKF_AD_OFF + word) as u32,
    )
}

/// The program for a group of `sockets` sockets:
/// - `Random`: `ld rand; mod #sockets; ret a`;
/// - `Cpu(cpus)`: `ld cpu; jeq #cpus[0], ret #0; jeq #cpus[1], ret #1; ...`, then the random program for
///   a CPU not listed. Listed CPUs beyond [`MAX_CPU_SOCKETS`] or `sockets` are left out.
pub fn program(spread: &Spread, sockets: u32) -> Vec<libc::sock_filter> {
    let random = [
        load_ancillary(libc::SKF_AD_RANDOM),
        stmt(libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K, sockets.max(1)),
        stmt(libc::BPF_RET | libc::BPF_A, 0),
    ];
    let mut filter = Vec::new();
    if let Spread::Cpu(cpus) = spread {
        filter.push(load_ancillary(libc::SKF_AD_CPU));
        let mapped = cpus.len().min(sockets as usize).min(MAX_CPU_SOCKETS);
        for (socket, &cpu) in cpus[..mapped].iter().enumerate() {
            // Equal: fall through to the return; else skip it.
            filter.push(jump(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, cpu, 0, 1));
            filter.push(stmt(libc::BPF_RET | libc::BPF_K, socket as u32));
        }
    }
    filter.extend_from_slice(&random);
    filter
}

/// Attaches the [`program`] for `sockets` sockets to the reuseport group of `socket` (any bound member:
/// the program belongs to the group). Replaces any program attached before.
pub fn attach_reuseport_spread(
    socket: &impl AsRawFd,
    spread: &Spread,
    sockets: u32,
) -> io::Result<()> {
    let mut filter = program(spread, sockets);
    let fprog = libc::sock_fprog {
        len: filter.len() as libc::c_ushort,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: `fprog` points at `filter`, `len` instructions (at most 3 + 2 x MAX_CPU_SOCKETS, well within
    // u16) that live until the call returns; the kernel copies (and checks) the program during the call
    // and keeps no pointer to our memory. The option length is the size of `fprog`, the struct the kernel
    // reads.
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
        let p = program(&Spread::Random, 4);
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].code, 0x20);
        assert_eq!(p[0].k, 0xffff_f038);
        assert_eq!((p[1].code, p[1].k), (0x94, 4));
        assert_eq!(p[2].code, 0x16);
        assert_eq!(
            program(&Spread::Random, 0)[1].k,
            1,
            "never a modulo by zero"
        );
    }

    #[test]
    fn the_cpu_program_maps_each_listed_cpu_to_its_socket_then_falls_back_to_random() {
        let p = program(&Spread::Cpu(vec![4, 7]), 2);
        assert_eq!(p.len(), 1 + 2 * 2 + 3);
        assert_eq!((p[0].code, p[0].k), (0x20, 0xffff_f024));
        assert_eq!((p[1].code, p[1].k, p[1].jt, p[1].jf), (0x15, 4, 0, 1));
        assert_eq!((p[2].code, p[2].k), (0x06, 0));
        assert_eq!((p[3].k, p[4].k), (7, 1));
        assert_eq!(p[5].k, 0xffff_f038, "unlisted CPUs: random");
        assert_eq!(program(&Spread::Cpu(vec![1, 2, 3]), 2).len(), 1 + 2 * 2 + 3);
    }

    /// Pins the calling thread to `cpu`; false when it may not run there.
    fn pin_to(cpu: usize) -> bool {
        // SAFETY: an all-zero cpu_set_t is the empty set; CPU_SET writes within it (cpu < CPU_SETSIZE is
        // checked first), and sched_setaffinity reads `size_of::<cpu_set_t>()` bytes of it.
        unsafe {
            if cpu >= libc::CPU_SETSIZE as usize {
                return false;
            }
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) == 0
        }
    }

    #[test]
    fn cpu_spread_sends_a_loopback_sender_to_the_socket_of_its_cpu() {
        let first = crate::bind_udp("127.0.0.1:0".parse().unwrap(), true, None).unwrap();
        let addr = first.local_addr().unwrap();
        let second = crate::bind_udp(addr, true, None).unwrap();
        // Socket 0 for CPU 0, socket 1 for CPU 1; on loopback the receive path runs on the sender's CPU.
        attach_reuseport_spread(&first, &Spread::Cpu(vec![0, 1]), 2).unwrap();
        let sent = 50;
        let pinned = std::thread::spawn(move || {
            if !pin_to(1) {
                return false;
            }
            let client = UdpSocket::bind("127.0.0.1:0").unwrap();
            for _ in 0..sent {
                client.send_to(b"x", addr).unwrap();
            }
            true
        })
        .join()
        .unwrap();
        if !pinned {
            eprintln!("skipped: this process may not run on CPU 1");
            return;
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
        assert_eq!(counts, [0, sent], "every datagram on CPU 1's socket");
    }

    #[test]
    fn random_spread_lands_one_source_on_every_socket() {
        let first = crate::bind_udp("127.0.0.1:0".parse().unwrap(), true, None).unwrap();
        let addr = first.local_addr().unwrap();
        let second = crate::bind_udp(addr, true, None).unwrap();
        attach_reuseport_spread(&first, &Spread::Random, 2).unwrap();
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
