//! Batched UDP I/O on Linux, shared by corereg's shards and its load generator.
//!
//! std's and glommio's UDP sockets move one datagram per system call. At hundreds of thousands of
//! datagrams per second the per-call cost matters, so both users move datagrams a batch at a time:
//!
//! - [`RecvBatch`]: `recvmmsg` into buffers allocated once and reused, each datagram with its source
//!   address and whether the kernel cut it (MSG_TRUNC). Never waits: an empty socket gives `Ok(0)`.
//! - [`SendBatch`]: datagrams queued back to back in one reused buffer, copied in ([`SendBatch::push`])
//!   or written in place by a closure ([`SendBatch::push_with`]), each with its own destination or none
//!   (connected socket). [`SendBatch::send_from`] hands them to the kernel with one non-blocking
//!   `sendmmsg` and lets the caller decide about the rest; [`SendBatch::send_all`] sends everything,
//!   counting what the kernel refuses, and can use UDP generic segmentation offload ([`SendPath::Gso`]).
//! - [`attach_reuseport_spread`]: a classic BPF program that picks the socket of an `SO_REUSEPORT`
//!   group at random or by the receiving CPU instead of by the 4-tuple hash.
//! - Socket helpers: [`bind_udp`] (SO_REUSEPORT, buffer sizes), [`connect`], the GSO probes
//!   [`gso_supported`] and [`gso_max_segment`], and a nanosecond [`wait_readable`].
//!
//! Both batch types take any socket as `&impl AsRawFd` (std's or glommio's). They are written on
//! `libc` directly because no maintained crate offers `recvmmsg`/`sendmmsg` over caller-owned, reused
//! buffers (nix's wrappers allocate per call), and these run once per batch on hot paths. This crate
//! holds the project's batched-UDP and raw-socket `unsafe`; each block says why it is sound.

#![deny(unsafe_op_in_unsafe_fn)]

mod recv;
mod reuseport;
mod send;
mod socket;
mod sys;

pub use recv::{Received, RecvBatch};
pub use reuseport::{
    attach_reuseport_spread, program as reuseport_program, Spread, MAX_CPU_SOCKETS,
};
pub use send::{SendBatch, SendOutcome, SendPath};
pub use socket::{
    bind_udp, connect, gso_max_segment, gso_supported, wait_readable, GSO_DEFAULT_MAX_SEGMENT,
    GSO_MAX_BYTES, GSO_MAX_SEGMENTS,
};
