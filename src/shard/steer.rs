//! Which shard's socket receives a datagram (`--receive-spread`).
//!
//! Every shard's socket is bound to the same address with `SO_REUSEPORT`. Left alone, the kernel picks the
//! socket by hashing the datagram's 4-tuple, so one client socket (a carrier's SBC, an edge proxy, a load
//! generator) always lands on one shard, which then does all the receiving while its peers idle. A classic
//! BPF program attached to the group ([`corereg_udp::attach_reuseport_spread`]) picks the socket instead:
//!
//! - `random`: a random shard per datagram. The receive work (the kernel's UDP path, the parse) spreads
//!   evenly whatever the sources; a datagram lands on its AoR's owner 1 time in N and is otherwise handed
//!   over ([`super::mesh`]). This is the default.
//! - `cpu`: the shard pinned to the CPU that runs the kernel's receive path, which is the CPU of the NIC
//!   queue's interrupt (so it spreads only as far as the NIC's RSS does, which hashes the same 4-tuple), or
//!   on loopback the *sender's* CPU; a datagram received on a CPU that runs no shard goes to a random one.
//!   Useful when several NIC queues are steered to the shards' CPUs and the sources are many.
//! - `flow`: the kernel's 4-tuple hash, as without a program.
//!
//! A datagram of a source that spreads may be answered by any shard; replies leave every shard from the
//! same address and port, so a client cannot tell. Ordering per AoR is unchanged: the owner applies its
//! AoRs' requests in the order it takes them, and a client waits for an answer before it sends the next
//! request of a registration.

use std::net::SocketAddr;

use socket2::Socket;

use super::ShardError;
use crate::config::ReceiveSpread;

/// Attaches the `spread` program to the reuseport group `first` belongs to, once the socket of every shard
/// is bound (the program returns an index into the group, and the group's order is the bind order: shard
/// `i`'s socket, pinned to `cpus[i]`, when known). Nothing to do for one shard or `flow`.
pub fn spread_receive(
    first: &Socket,
    spread: ReceiveSpread,
    cpus: &[Option<usize>],
) -> Result<(), ShardError> {
    let shards = cpus.len();
    let how = match spread {
        _ if shards < 2 => return Ok(()),
        ReceiveSpread::Flow => return Ok(()),
        ReceiveSpread::Random => corereg_udp::Spread::Random,
        ReceiveSpread::Cpu => {
            // A shard that is not pinned has no CPU to be found by: then spread at random.
            let pinned: Option<Vec<u32>> = cpus
                .iter()
                .map(|cpu| cpu.and_then(|c| u32::try_from(c).ok()))
                .collect();
            match pinned {
                Some(cpus) if cpus.len() <= corereg_udp::MAX_CPU_SOCKETS => {
                    corereg_udp::Spread::Cpu(cpus)
                }
                _ => {
                    tracing::warn!(
                        "--receive-spread cpu needs every shard pinned (at most {} shards): spreading at random",
                        corereg_udp::MAX_CPU_SOCKETS
                    );
                    corereg_udp::Spread::Random
                }
            }
        }
    };
    let sockets = u32::try_from(shards).unwrap_or(u32::MAX);
    corereg_udp::attach_reuseport_spread(first, &how, sockets).map_err(|source| {
        let addr = super::local_addr(first).unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
        ShardError::Spread { addr, source }
    })?;
    tracing::debug!(shards, %spread, "reuseport program attached");
    Ok(())
}
