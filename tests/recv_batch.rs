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
