//! Batched receive (`--recv-batch`): a burst queues datagrams on the shard's socket, the shard drains them
//! with `recvmmsg` and answers with `sendmmsg`. Every request still gets its own, correct answer, at its own
//! source; garbage and oversized datagrams inside a batch are answered or counted as when received alone.

mod common;

use std::collections::HashSet;
use std::net::UdpSocket;
use std::time::Duration;

use common::{stop, Client, Req, Response, Server, ShardStopLine};

/// Small enough for any socket buffer (the server asks for 4 MiB; capped at the default 208 KiB rmem_max, which
/// the kernel doubles, it still holds it), large enough that the shard falls behind and drains.
const BURST: usize = 200;

/// Sends `BURST` REGISTERs of distinct users (with a too-long datagram and a garbage line among them) from
/// two client sockets as fast as it can, reading the answers on other threads so that no client buffer
/// overflows. Returns the Call-IDs answered 200 per client and the server's stop line.
fn burst(batch: &str) -> (usize, ShardStopLine) {
    let server = Server::start(&[
        "--cores",
        "1",
        "--recv-batch",
        batch,
        "--max-datagram",
        "2000",
    ]);
    let clients = [Client::new(server.addr), Client::new(server.addr)];
    let readers: Vec<_> = clients
        .iter()
        .map(|c| {
            let socket: UdpSocket = c.socket.try_clone().expect("clone");
            let server_addr = server.addr;
            std::thread::spawn(move || {
                let mut answered = HashSet::new();
                let mut bad_requests = 0;
                let mut buf = vec![0u8; 65_536];
                socket
                    .set_read_timeout(Some(Duration::from_millis(1500)))
                    .expect("timeout");
                while let Ok((n, from)) = socket.recv_from(&mut buf) {
                    assert_eq!(from, server_addr, "answered from the server's address");
                    let resp = Response::parse(&buf[..n]).expect("parsable answer");
                    match resp.status {
                        200 => {
                            let call_id = resp.header("Call-ID").expect("Call-ID").to_string();
                            assert!(answered.insert(call_id), "one answer per request");
                        }
                        400 => bad_requests += 1,
                        other => panic!("unexpected {other}: {}", resp.raw),
                    }
                }
                (answered, bad_requests)
            })
        })
        .collect();
    let mut sent: Vec<HashSet<String>> = vec![HashSet::new(), HashSet::new()];
    for i in 0..BURST {
        let k = i % 2;
        let client = &clients[k];
        let user = format!("burst{i}-{}", common::unique());
        let req = Req::register(client, &user, "example.com")
            .contact(&format!("<sip:{user}@{}>", client.local));
        client.send(&req.build());
        sent[k].insert(req.call_id.clone());
        if i == BURST / 3 {
            client.send(&[b'A'; 3000]); // over --max-datagram: counted, not answered
        }
        if i == BURST / 2 {
            // Answerable garbage: a Via to reply to, a broken To: 400.
            client.send(
                format!(
                    "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bKbad\r\n\
                     To: <<<\r\nFrom: <sip:x@example.com>;tag=1\r\nCall-ID: bad\r\nCSeq: 1 REGISTER\r\n\r\n",
                    client.local
                )
                .as_bytes(),
            );
        }
    }
    let mut answered_total = 0;
    let mut bad_total = 0;
    for (k, reader) in readers.into_iter().enumerate() {
        let (answered, bad) = reader.join().expect("reader");
        assert_eq!(
            answered, sent[k],
            "client {k}: every REGISTER answered 200, to its sender"
        );
        answered_total += answered.len();
        bad_total += bad;
    }
    assert_eq!(bad_total, 1, "the broken To is answered 400 once");
    (answered_total, stop(server, 1).remove(0))
}

#[test]
fn a_burst_is_drained_in_batches_and_every_request_answered() {
    let (answered, line) = burst("16");
    assert_eq!(answered, BURST);
    assert_eq!(line.get("datagrams_in"), BURST as u64 + 2);
    assert_eq!(line.get("replies_out"), BURST as u64 + 1);
    assert_eq!(line.get("oversized"), 1, "{line:?}");
    assert!(
        line.get("batched_in") > 0 && line.get("recv_batches") > 0,
        "a burst queues datagrams, and the shard drains them in batches: {line:?}"
    );
    assert!(line.get("batched_in") <= line.get("recv_batches") * 16);
}

#[test]
fn recv_batch_1_never_batches_and_answers_the_same() {
    let (answered, line) = burst("1");
    assert_eq!(answered, BURST);
    assert_eq!(line.get("replies_out"), BURST as u64 + 1);
    assert_eq!(line.get("oversized"), 1);
    assert_eq!(line.get("batched_in"), 0, "{line:?}");
    assert_eq!(line.get("recv_batches"), 0);
}

/// Requests [`paced`] sends: at ~4,000/s, enough for the coalescing to hold (it needs at least two datagrams
/// per `--coalesce-us` per shard), over about half a second.
const PACED: usize = 2000;

/// Sends `PACED` REGISTERs of distinct users from one client socket, one every 250 µs (a steady rate well
/// below saturation, where a shard would otherwise sleep between datagrams), reading the answers on another
/// thread. Checks that every request is answered 200 at its sender, and returns the shards' stop lines.
fn paced(shards: usize, extra: &[&str]) -> Vec<ShardStopLine> {
    let n = shards.to_string();
    let mut args = vec!["--cores", n.as_str(), "--data-dir", "none"];
    args.extend_from_slice(extra);
    let server = Server::start(&args);
    let client = Client::new(server.addr);
    let socket: UdpSocket = client.socket.try_clone().expect("clone");
    let reader = std::thread::spawn(move || {
        let mut answered = HashSet::new();
        let mut buf = vec![0u8; 65_536];
        socket
            .set_read_timeout(Some(Duration::from_millis(1500)))
            .expect("timeout");
        while let Ok((n, _)) = socket.recv_from(&mut buf) {
            let resp = Response::parse(&buf[..n]).expect("parsable answer");
            assert_eq!(resp.status, 200, "{}", resp.raw);
            let call_id = resp.header("Call-ID").expect("Call-ID").to_string();
            assert!(answered.insert(call_id), "one answer per request");
        }
        answered
    });
    let mut sent = HashSet::new();
    let gap = Duration::from_micros(250);
    let start = std::time::Instant::now();
    for i in 0..PACED {
        // Paced by the clock, not by sleeps: a late wake-up sends what is due, as a real source would.
        let due = start + gap * i as u32;
        if let Some(wait) = due.checked_duration_since(std::time::Instant::now()) {
            std::thread::sleep(wait);
        }
        let user = format!("paced{i}-{}", common::unique());
        let req = Req::register(&client, &user, "example.com")
            .contact(&format!("<sip:{user}@{}>", client.local));
        client.send(&req.build());
        sent.insert(req.call_id.clone());
    }
    let answered = reader.join().expect("reader");
    assert_eq!(answered, sent, "every REGISTER answered 200, once");
    let lines = stop(server, shards);
    let bindings: u64 = lines.iter().map(|l| l.get("bindings")).sum();
    assert_eq!(bindings, PACED as u64, "{lines:?}");
    lines
}

#[test]
fn coalescing_takes_a_steady_rate_in_batches_and_answers_everything() {
    let line = paced(1, &["--coalesce-us", "5000", "--coalesce-datagrams", "16"]).remove(0);
    assert!(line.get("coalesce_holds") > 0, "{line:?}");
    // Held for ~16 datagrams (at most 5 ms, ~20 at this rate), most datagrams come out of recvmmsg batches.
    assert!(
        line.get("batched_in") * 2 >= line.get("datagrams_in"),
        "{line:?}"
    );
    assert!(
        line.get("recv_batches") * 4 <= line.get("datagrams_in"),
        "{line:?}"
    );
}

#[test]
fn coalesce_us_0_never_holds_and_answers_the_same() {
    let line = paced(1, &["--coalesce-us", "0"]).remove(0);
    assert_eq!(line.get("coalesce_holds"), 0, "{line:?}");
    assert_eq!(line.get("datagrams_in"), PACED as u64);
}

#[test]
fn coalescing_on_two_shards_holds_on_each_and_hands_over_everything() {
    if common::usable_cores() < 2 {
        eprintln!("coalescing_on_two_shards: skipped: needs 2 usable CPUs");
        return;
    }
    // The default spread (random) feeds both shards from the one client socket; each holds, and what it
    // hands over waits in its owner's inbox until the owner's hold ends (no doorbell needed).
    let lines = paced(2, &["--coalesce-us", "5000", "--coalesce-datagrams", "16"]);
    for l in &lines {
        assert!(l.get("coalesce_holds") > 0, "shard {}: {lines:?}", l.shard);
    }
    let handed: u64 = lines.iter().map(|l| l.get("handed_off")).sum();
    let from_peers: u64 = lines.iter().map(|l| l.get("from_peers")).sum();
    assert!(handed > 0 && handed == from_peers, "{lines:?}");
    let rings: u64 = lines.iter().map(|l| l.get("doorbell_rings")).sum();
    let batches: u64 = lines.iter().map(|l| l.get("handoff_batches")).sum();
    assert!(
        rings <= batches && batches * 2 <= handed,
        "batched handover: {lines:?}"
    );
}
