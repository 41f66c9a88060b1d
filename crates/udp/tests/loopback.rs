//! The batch types and socket helpers over real loopback sockets.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use corereg_udp::{
    bind_udp, connect, gso_max_segment, gso_supported, wait_readable, RecvBatch, SendBatch,
    SendOutcome, SendPath, GSO_DEFAULT_MAX_SEGMENT, GSO_MAX_SEGMENTS,
};

fn localhost() -> SocketAddr {
    SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0)
}

fn pair() -> (UdpSocket, UdpSocket) {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    (a, b)
}

/// Socket buffers large enough for a test's whole batch (the default one drops part of it on loopback).
const BUFFER_BYTES: Option<usize> = Some(8 << 20);

/// A sender connected to a receiver, both bound as the load generator binds them.
fn connected_pair() -> (UdpSocket, UdpSocket) {
    let rx = bind_udp(localhost(), false, BUFFER_BYTES).expect("bind rx");
    let tx = bind_udp(localhost(), false, BUFFER_BYTES).expect("bind tx");
    connect(&tx, rx.local_addr().expect("addr")).expect("connect");
    (tx, rx)
}

/// Datagram `i` of a test batch: lengths vary so that runs, a shorter last segment and singletons all
/// occur.
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

fn push_payload(batch: &mut SendBatch, i: usize, to: Option<SocketAddr>) {
    let p = payload(i);
    assert!(batch.push_with(to, |buf| {
        buf[..p.len()].copy_from_slice(&p);
        Some(p.len())
    }));
}

/// Receives on `rx` until `n` datagrams came or 5 s passed; sorted.
fn collect(rx: &UdpSocket, n: usize) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut recv = RecvBatch::new(256, 8192);
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < n && Instant::now() < deadline {
        wait_readable(rx, Duration::from_millis(10));
        recv.recv(rx).expect("recvmmsg");
        got.extend(recv.iter().map(|r| r.datagram.to_vec()));
    }
    got.sort();
    got
}

fn send_and_collect(
    batch: &mut SendBatch,
    tx: &UdpSocket,
    rx: &UdpSocket,
    n: usize,
) -> Vec<Vec<u8>> {
    for i in 0..n {
        push_payload(batch, i, None);
    }
    assert_eq!(
        batch.send_all(tx),
        SendOutcome {
            sent: n,
            dropped: 0
        }
    );
    assert!(batch.is_empty(), "send_all clears the batch");
    collect(rx, n)
}

fn want(which: impl Iterator<Item = usize>) -> Vec<Vec<u8>> {
    let mut want: Vec<Vec<u8>> = which.map(payload).collect();
    want.sort();
    want
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
    assert_eq!(batch.recv(&rx).unwrap(), 4);
    for i in 0..4u8 {
        let r = batch.get(usize::from(i)).unwrap();
        assert_eq!(r.datagram, vec![b'a' + i; 3 + usize::from(i)].as_slice());
        assert_eq!(r.source, Some(tx.local_addr().unwrap()));
        assert!(!r.truncated);
    }
    assert!(batch.get(4).is_none());
    assert_eq!(batch.recv(&rx).unwrap(), 1);
    assert_eq!(batch.get(0).unwrap().datagram, b"eeeeeee");
    assert!(batch.get(1).is_none(), "only what the last call filled");
    assert_eq!(batch.recv(&rx).unwrap(), 0, "empty queue: EAGAIN is Ok(0)");
    assert!(batch.get(0).is_none());
    assert!(batch.is_empty());
}

#[test]
fn a_datagram_longer_than_its_slot_is_cut_and_flagged() {
    let (rx, tx) = pair();
    tx.send_to(&[b'x'; 100], rx.local_addr().unwrap()).unwrap();
    tx.send_to(b"short", rx.local_addr().unwrap()).unwrap();
    let mut batch = RecvBatch::new(8, 33);
    assert_eq!(batch.recv(&rx).unwrap(), 2);
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
    let (a1, a2) = (c1.local_addr().unwrap(), c2.local_addr().unwrap());
    let mut out = SendBatch::new(2, 16);
    assert!(out.push(b"one", Some(a1)));
    assert!(out.push(b"two!", Some(a2)));
    assert!(!out.push(b"three", Some(a1)), "capacity 2: full");
    assert_eq!(out.len(), 2);
    assert_eq!(out.get(1).unwrap(), (&b"two!"[..], Some(a2)));
    assert_eq!(out.send_from(&server, 0).unwrap(), 2);
    assert_eq!(out.send_from(&server, 2).unwrap(), 0, "nothing left from 2");
    out.clear();
    assert!(out.is_empty());
    assert!(out.get(0).is_none());
    assert!(out.push(b"three", Some(a1)));
    assert_eq!(out.send_from(&server, 0).unwrap(), 1);
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
}

#[test]
fn send_from_sends_what_is_left_from_an_index() {
    let (server, client) = pair();
    let to = client.local_addr().unwrap();
    let mut out = SendBatch::new(4, 16);
    for d in [&b"a"[..], b"bb", b"ccc"] {
        assert!(out.push(d, Some(to)));
    }
    assert_eq!(out.send_from(&server, 1).unwrap(), 2);
    let mut buf = [0u8; 16];
    let (n, _) = client.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"bb");
    let (n, _) = client.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"ccc");
    assert_eq!(out.len(), 3, "send_from leaves the batch as it is");
}

#[test]
fn gso_delivers_every_datagram_intact() {
    let (tx, rx) = connected_pair();
    if gso_supported(&tx).is_err() {
        eprintln!("kernel without UDP GSO: nothing to test");
        return;
    }
    let n = 200;
    let mut batch = SendBatch::new(n, 8192);
    batch.set_path(SendPath::Gso {
        max_segment: gso_max_segment(&tx),
        max_segments: GSO_MAX_SEGMENTS,
    });
    let got = send_and_collect(&mut batch, &tx, &rx, n);
    assert_same(&got, &want(0..n));
    assert_eq!(batch.gso_fallback(), None);
    let (sends, carried) = batch.gso_stats();
    assert!(
        sends > 0 && carried > sends,
        "{sends} GSO sends carried {carried}"
    );
}

#[test]
fn refused_gso_falls_back_to_sendmmsg() {
    let (tx, rx) = connected_pair();
    let n = 300;
    let mut batch = SendBatch::new(n, 8192);
    // More segments per send than any kernel accepts (UDP_MAX_SEGMENTS is 64 or 128): the first GSO
    // send fails with EINVAL and the batch must still arrive, datagram by datagram.
    batch.set_path(SendPath::Gso {
        max_segment: gso_max_segment(&tx),
        max_segments: 1000,
    });
    let got = send_and_collect(&mut batch, &tx, &rx, n);
    assert_same(&got, &want(0..n));
    assert!(batch.gso_fallback().is_some());
    assert_eq!(*batch.path(), SendPath::Sendmmsg);
}

/// Per-datagram destinations with GSO (the shard's kind of batch on the load generator's path): runs are
/// grouped by destination, so each receiver gets exactly its own datagrams.
#[test]
fn gso_runs_go_to_their_own_destination() {
    let tx = bind_udp(localhost(), false, BUFFER_BYTES).unwrap();
    if gso_supported(&tx).is_err() {
        eprintln!("kernel without UDP GSO: nothing to test");
        return;
    }
    let rx1 = bind_udp(localhost(), false, BUFFER_BYTES).unwrap();
    let rx2 = bind_udp(localhost(), false, BUFFER_BYTES).unwrap();
    let (a1, a2) = (rx1.local_addr().unwrap(), rx2.local_addr().unwrap());
    let n = 150;
    let mut batch = SendBatch::new(n, 2048);
    // Unconnected: the MTU is unknown, segments are capped at an Ethernet MTU's payload.
    assert_eq!(gso_max_segment(&tx), GSO_DEFAULT_MAX_SEGMENT);
    batch.set_path(SendPath::Gso {
        max_segment: gso_max_segment(&tx),
        max_segments: GSO_MAX_SEGMENTS,
    });
    for i in 0..n {
        push_payload(&mut batch, i, Some(if i % 3 == 0 { a1 } else { a2 }));
    }
    assert_eq!(
        batch.send_all(&tx),
        SendOutcome {
            sent: n,
            dropped: 0
        }
    );
    assert_same(&collect(&rx1, n / 3), &want((0..n).filter(|i| i % 3 == 0)));
    assert_same(
        &collect(&rx2, n - n / 3),
        &want((0..n).filter(|i| i % 3 != 0)),
    );
    assert_eq!(batch.gso_fallback(), None);
    let (sends, carried) = batch.gso_stats();
    assert!(
        sends > 0 && carried > sends,
        "{sends} GSO sends carried {carried}"
    );
}

/// Copied and in-place datagrams share one batch: a copy may be longer than the room `push_with` offers
/// (the buffer grows), a fill that declines queues nothing, a fill's length is cut to its room.
#[test]
fn copies_and_in_place_datagrams_share_one_batch() {
    let (tx, rx) = connected_pair();
    let mut batch = SendBatch::new(4, 8);
    assert!(batch.push(b"a copy longer than eight bytes", None));
    assert!(!batch.push_with(None, |_| None), "a fill that declines");
    assert!(batch.push_with(None, |buf| {
        assert_eq!(buf.len(), 8);
        buf[..5].copy_from_slice(b"fill!");
        Some(5)
    }));
    assert!(batch.push_with(None, |buf| {
        buf.fill(b'z');
        Some(100)
    }));
    assert_eq!(batch.len(), 3);
    assert_eq!(batch.get(0).unwrap().0, b"a copy longer than eight bytes");
    assert_eq!(batch.get(1).unwrap(), (&b"fill!"[..], None));
    assert_eq!(batch.get(2).unwrap().0, b"zzzzzzzz", "cut to the room");
    assert_eq!(
        batch.send_all(&tx),
        SendOutcome {
            sent: 3,
            dropped: 0
        }
    );
    let mut recv = RecvBatch::new(8, 64);
    assert_eq!(recv.recv(&rx).unwrap(), 3);
    let got: Vec<&[u8]> = recv.iter().map(|r| r.datagram).collect();
    assert_eq!(
        got,
        [
            &b"a copy longer than eight bytes"[..],
            b"fill!",
            b"zzzzzzzz"
        ]
    );
    assert!(recv
        .iter()
        .all(|r| r.source == Some(tx.local_addr().unwrap())));
}

#[test]
fn an_empty_batch_receives_nothing() {
    let (rx, tx) = pair();
    tx.send_to(b"queued", rx.local_addr().unwrap()).unwrap();
    let mut empty = RecvBatch::default();
    assert_eq!(empty.capacity(), 0);
    assert_eq!(empty.recv(&rx).unwrap(), 0);
    assert!(empty.get(0).is_none());
    let mut batch = RecvBatch::new(1, 16);
    assert_eq!(batch.recv(&rx).unwrap(), 1, "the datagram is still queued");
}

#[test]
fn wait_readable_says_whether_a_datagram_is_queued() {
    let (rx, tx) = pair();
    let started = Instant::now();
    assert!(!wait_readable(&rx, Duration::from_millis(20)));
    assert!(started.elapsed() >= Duration::from_millis(15));
    tx.send_to(b"x", rx.local_addr().unwrap()).unwrap();
    assert!(wait_readable(&rx, Duration::from_secs(5)));
}

#[test]
fn reuse_port_lets_sockets_share_an_address() {
    let first = bind_udp(localhost(), true, Some(1 << 20)).unwrap();
    let addr = first.local_addr().unwrap();
    let second = bind_udp(addr, true, Some(1 << 20)).unwrap();
    assert_eq!(second.local_addr().unwrap(), addr);
    assert!(bind_udp(addr, false, None).is_err());
    assert!(
        bind_udp("[::1]:0".parse().unwrap(), false, None).is_err(),
        "IPv4 only"
    );
}

/// Compares received datagrams by count and each one's first bytes and length (a failure prints little).
fn assert_same(got: &[Vec<u8>], want: &[Vec<u8>]) {
    let brief = |v: &[Vec<u8>]| -> Vec<String> {
        v.iter()
            .map(|d| {
                format!(
                    "{}:{}",
                    String::from_utf8_lossy(&d[..d.len().min(13)]),
                    d.len()
                )
            })
            .collect()
    };
    assert_eq!(brief(got), brief(want));
    assert!(got == want, "same lengths and names, different bytes");
}
