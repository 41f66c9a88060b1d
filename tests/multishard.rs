//! Thread-per-core over loopback: several shards share one address and port (SO_REUSEPORT); the kernel picks a
//! shard per 4-tuple, so many client sockets reach every shard, and most requests are handed to the shard that
//! owns their AoR. Seen from outside, the instance must behave like one registrar.
//!
//! Which shard received a request cannot be observed per request; instead each test uses many source sockets
//! (the chance that 12 sockets all hash to one of 2 shards is 2^-11) and then checks, in the per-shard counters
//! logged at shutdown, that every shard received datagrams and that requests were handed off.

mod common;

use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::{stop, unique, usable_cores, Client, Req, Response, Server, ShardStopLine};

/// Shards for these tests: every usable CPU, at most 4; None (skip) on a single-CPU machine, where
/// `--cores 2` is refused by design.
fn shards_or_skip(test: &str) -> Option<usize> {
    let shards = usable_cores().min(4);
    if shards < 2 {
        eprintln!("{test}: skipped: needs 2 usable CPUs, this process has {shards}");
        return None;
    }
    Some(shards)
}

fn start(shards: usize, extra: &[&str]) -> Server {
    start_with_env(shards, extra, &[])
}

fn start_with_env(shards: usize, extra: &[&str], env: &[(&str, &str)]) -> Server {
    let n = shards.to_string();
    let mut args = vec!["--cores", n.as_str()];
    args.extend_from_slice(extra);
    let server = Server::start_with_env("127.0.0.1:0", &args, env);
    // The reader thread reports the address just before it stores the line: wait for the line itself.
    let deadline = Instant::now() + Duration::from_secs(2);
    let shows_map =
        |log: &str| log.contains(&format!("shards={shards} ")) && log.contains("shard-cpus=0->cpu");
    while !shows_map(&server.log_text()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        shows_map(&server.log_text()),
        "start-up line must show the shard -> CPU map:\n{}",
        server.log_text()
    );
    server
}

fn clients(server: &Server, n: usize) -> Vec<Client> {
    (0..n).map(|_| server.client()).collect()
}

/// A REGISTER for `user` sent from `client` (its own Via), on the registration `call_id` with `cseq`.
fn register_from(client: &Client, user: &str, call_id: &str, cseq: u32) -> Req {
    let mut req = Req::register(client, user, "example.com").cseq(cseq);
    req.call_id = call_id.to_string();
    req.from_tag = format!("ft-{call_id}");
    req
}

fn uris(resp: &Response) -> BTreeSet<String> {
    resp.contacts().into_iter().map(|(uri, _)| uri).collect()
}

fn sum(lines: &[ShardStopLine], key: &str) -> u64 {
    lines.iter().map(|l| l.get(key)).sum()
}

/// Every shard received datagrams, some requests crossed shards, and every handoff was applied.
fn assert_traffic_crossed_shards(lines: &[ShardStopLine]) {
    for l in lines {
        assert!(
            l.get("datagrams_in") > 0,
            "shard {} received nothing: {lines:?}",
            l.shard
        );
    }
    assert!(sum(lines, "handed_off") > 0, "no handoff: {lines:?}");
    assert_eq!(
        sum(lines, "handed_off"),
        sum(lines, "from_peers"),
        "every handed-off request reaches its owner: {lines:?}"
    );
}

#[test]
fn each_aor_lives_on_one_shard_and_any_source_port_fetches_it_whole() {
    let Some(shards) = shards_or_skip("each_aor_lives_on_one_shard") else {
        return;
    };
    let server = start(shards, &[]);
    let cl = clients(&server, 24);
    let aors = 30;
    let mut expected = Vec::new();
    for i in 0..aors {
        let user = format!("ms{i}-{}", unique());
        // Two contacts per AoR, registered from two different source ports (different Call-IDs).
        let mut want = BTreeSet::new();
        for (k, client) in [&cl[i % cl.len()], &cl[(i + 5) % cl.len()]]
            .into_iter()
            .enumerate()
        {
            let uri = format!("sip:{user}-{k}@{}", client.local);
            let req = Req::register(client, &user, "example.com")
                .contact(&format!("<{uri}>"))
                .expires("600");
            let resp = client.request(&req.build());
            assert_eq!(resp.status, 200, "{}", resp.raw);
            want.insert(uri);
            assert_eq!(uris(&resp), want, "{}", resp.raw);
        }
        expected.push((user, want));
    }
    // Fetch every AoR from 6 source ports: the same, complete answer whichever shard receives the fetch.
    for (i, (user, want)) in expected.iter().enumerate() {
        for k in 0..6 {
            let client = &cl[(i + 4 * k) % cl.len()];
            let fetch = Req::register(client, user, "example.com");
            let resp = client.request(&fetch.build());
            assert_eq!(resp.status, 200, "{}", resp.raw);
            assert_eq!(&uris(&resp), want, "fetch of {user} from {}", client.local);
        }
    }
    let lines = stop(server, shards);
    // An AoR whose bindings were on two shards would be counted twice (and fetches would have differed).
    assert_eq!(
        sum(&lines, "bindings"),
        2 * aors as u64,
        "bindings per shard must add up to the bindings registered: {lines:?}"
    );
    assert_traffic_crossed_shards(&lines);
}

/// One registration's life, each step sent from the next source port: (status, contacts) per step.
fn cseq_and_star_scenario(server: &Server) -> Vec<(u16, BTreeSet<String>)> {
    let cl = clients(server, 12);
    let user = format!("carol-{}", unique());
    let call_id = format!("carol-call-{}", unique());
    let contact = |k: &str| format!("<sip:{user}-{k}@127.0.0.1:5999>");
    let steps: Vec<(u32, Vec<String>, Option<&str>)> = vec![
        (1, vec![contact("a")], Some("600")), // new binding
        (2, vec![contact("b")], Some("600")), // second binding, same Call-ID, higher CSeq
        (1, vec![contact("b")], Some("900")), // b again with a lower CSeq than b's: out of order, refused
        (2, vec![], None), // fetch (no Contact) with the same Call-ID: both bindings
        (1, vec!["*".into()], Some("0")), // `*` with a lower CSeq: refused, nothing removed
        (3, vec![], None), // fetch: still both
        (5, vec!["*".into()], Some("0")), // `*` with a higher CSeq: everything removed
        (6, vec![], None), // fetch: empty
        (4, vec![contact("d")], Some("600")), // no binding left to compare with: accepted
    ];
    steps
        .into_iter()
        .enumerate()
        .map(|(i, (cseq, contacts, expires))| {
            let client = &cl[i % cl.len()];
            let mut req = register_from(client, &user, &call_id, cseq);
            for c in &contacts {
                req = req.contact(c);
            }
            if let Some(e) = expires {
                req = req.expires(e);
            }
            let resp = client.request(&req.build());
            // Without the run-specific user name, so that runs on different instances compare equal.
            let contacts = uris(&resp)
                .iter()
                .map(|u| u.replace(&user, "carol"))
                .collect();
            (resp.status, contacts)
        })
        .collect()
}

#[test]
fn cseq_order_and_star_behave_as_on_one_shard() {
    let Some(shards) = shards_or_skip("cseq_order_and_star") else {
        return;
    };
    let one = Server::start(&["--cores", "1"]);
    let reference = cseq_and_star_scenario(&one);
    drop(one);
    // The single-shard reference itself follows RFC 3261 §10.3 steps 6-7.
    let statuses: Vec<u16> = reference.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses[0], 200);
    assert_eq!(statuses[1], 200);
    assert_eq!(statuses[2] / 100, 4, "lower CSeq refused: {reference:?}");
    assert_eq!(reference[3].1.len(), 2, "{reference:?}");
    assert_eq!(
        statuses[4] / 100,
        4,
        "`*` with lower CSeq refused: {reference:?}"
    );
    assert_eq!(reference[5].1.len(), 2, "{reference:?}");
    assert_eq!(statuses[6], 200);
    assert!(reference[6].1.is_empty() && reference[7].1.is_empty());
    assert_eq!(statuses[8], 200);

    let server = start(shards, &[]);
    // Repeat it a few times so that consecutive steps surely land on different shards.
    for _ in 0..3 {
        assert_eq!(cseq_and_star_scenario(&server), reference);
    }
    let lines = stop(server, shards);
    assert_traffic_crossed_shards(&lines);
}

#[test]
fn replies_leave_from_the_listen_port_whichever_shard_answers() {
    let Some(shards) = shards_or_skip("replies_leave_from_the_listen_port") else {
        return;
    };
    let server = start(shards, &[]);
    let cl = clients(&server, 16);
    let mut buf = vec![0u8; 65_536];
    for (i, client) in cl.iter().enumerate() {
        for k in 0..8 {
            let user = format!("port{i}x{k}-{}", unique());
            let req = Req::register(client, &user, "example.com")
                .contact(&format!("<sip:{user}@{}>", client.local));
            let options =
                Req::register(client, &user, "example.com").method("OPTIONS", "sip:example.com");
            for datagram in [req.build(), options.build()] {
                client.send(&datagram);
                // A raw receive: Client::recv would skip a datagram from any other address.
                let socket: &UdpSocket = &client.socket;
                socket
                    .set_read_timeout(Some(common::REPLY_TIMEOUT))
                    .expect("timeout");
                let (n, from) = socket.recv_from(&mut buf).expect("a reply");
                assert_eq!(
                    from,
                    server.addr,
                    "reply from another address:\n{}",
                    String::from_utf8_lossy(&buf[..n])
                );
                let resp = Response::parse(&buf[..n]).expect("a SIP response");
                assert_eq!(resp.status, 200, "{}", resp.raw);
            }
        }
    }
    let lines = stop(server, shards);
    assert_traffic_crossed_shards(&lines);
}

#[test]
fn garbage_on_every_shard_leaves_all_of_them_serving() {
    let Some(shards) = shards_or_skip("garbage_on_every_shard") else {
        return;
    };
    let mut server = start(shards, &[]);
    let cl = clients(&server, 12);
    let garbage: Vec<Vec<u8>> = vec![
        b"\0\x01\x02\xff garbage".to_vec(),
        Vec::new(),
        vec![b'A'; 10_000], // over --max-datagram
        b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx\r\nTo: <<<\r\n\r\n"
            .to_vec(),
        b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9\r\nCSeq: 1 REG".to_vec(),
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx\r\n\r\n".to_vec(),
        b"REGISTER sip:example.com SIP/2.0\r\nContent-Length: 99999999999999999999\r\n\r\n".to_vec(),
    ];
    for client in &cl {
        for g in &garbage {
            client.send(g);
        }
    }
    // Whatever came back (some garbage earns a 400), drain it, then every source port must still register.
    std::thread::sleep(common::SILENCE_TIMEOUT);
    for client in &cl {
        while client.recv(Duration::from_millis(20)).is_some() {}
    }
    for client in &cl {
        let user = format!("alive-{}", unique());
        let req = Req::register(client, &user, "example.com")
            .contact(&format!("<sip:{user}@{}>", client.local));
        let resp = client.request(&req.build());
        assert_eq!(resp.status, 200, "after garbage: {}", resp.raw);
    }
    assert!(server.is_running());
    let lines = stop(server, shards);
    assert_traffic_crossed_shards(&lines);
    assert!(
        sum(&lines, "oversized") >= cl.len() as u64,
        "every oversized datagram is counted: {lines:?}"
    );
}

#[test]
fn a_full_handoff_queue_answers_503_with_retry_after_never_silence() {
    let Some(shards) = shards_or_skip("a_full_handoff_queue") else {
        return;
    };
    // A one-slot queue, and bursts from many source ports: owners fall behind, receivers must answer 503.
    let server = start(shards, &["--handoff-queue", "1", "--retry-after", "7"]);
    let per_client = 150;
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let client = server.client();
            std::thread::spawn(move || {
                let mut branches = BTreeSet::new();
                for k in 0..per_client {
                    let user = format!("bp{t}x{k}-{}", unique());
                    let req = Req::register(&client, &user, "example.com")
                        .contact(&format!("<sip:{user}@{}>", client.local));
                    branches.insert(req.branch().to_string());
                    client.send(&req.build());
                }
                let (mut ok, mut busy) = (0u64, 0u64);
                while !branches.is_empty() {
                    let Some(raw) = client.recv(common::REPLY_TIMEOUT) else {
                        panic!("{} requests got no answer at all", branches.len());
                    };
                    let resp = Response::parse(&raw).expect("a SIP response");
                    let via = resp.header("Via").unwrap_or_default().to_string();
                    let branch = via
                        .split(";branch=")
                        .nth(1)
                        .and_then(|b| b.split(';').next())
                        .unwrap_or_default()
                        .to_string();
                    assert!(branches.remove(&branch), "unexpected answer:\n{}", resp.raw);
                    match resp.status {
                        200 => ok += 1,
                        503 => {
                            assert_eq!(resp.header("Retry-After"), Some("7"), "{}", resp.raw);
                            busy += 1;
                        }
                        other => panic!("status {other}:\n{}", resp.raw),
                    }
                }
                (ok, busy)
            })
        })
        .collect();
    let (mut ok, mut busy) = (0, 0);
    for t in threads {
        let (o, b) = t.join().expect("client thread");
        ok += o;
        busy += b;
    }
    let lines = stop(server, shards);
    assert_eq!(ok + busy, 8 * per_client as u64);
    // Every 503 the clients saw is a counted back-pressure 503, and the other requests were applied.
    assert_eq!(sum(&lines, "overloaded_503"), busy, "{lines:?}");
    assert_eq!(sum(&lines, "bindings"), ok, "{lines:?}");
    // Whether owners fall behind depends on scheduling; the contract above holds either way.
    eprintln!("back-pressure: {ok} applied, {busy} answered 503 by the receiving shard");
}

#[test]
fn core_flags_are_checked_against_the_usable_cpus() {
    let usable = usable_cores();
    for argv in [
        vec!["--cores".to_string(), "0".to_string()],
        vec!["--cores".to_string(), (usable + 1).to_string()],
        vec!["--cpu-list".to_string(), "1023".to_string()],
        vec![
            "--cpu-list".to_string(),
            "0".into(),
            "--cores".into(),
            "2".into(),
        ],
        vec!["--cpu-list".to_string(), "2-1".to_string()],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_corereg"))
            .args(["--listen", "127.0.0.1:0"])
            .args(&argv)
            .output()
            .expect("run corereg");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{argv:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The branch of a response's top Via (each test request has its own).
fn branch_of(resp: &Response) -> String {
    let via = resp.header("Via").unwrap_or_default();
    via.split(";branch=")
        .nth(1)
        .and_then(|b| b.split(';').next())
        .unwrap_or_default()
        .to_string()
}

/// Sends `reqs` from `client`, at most `window` unanswered at once, retransmitting what is unanswered after
/// 500 ms (as a SIP client would; loopback rarely loses a datagram), and returns each request's response
/// in the order of `reqs`.
fn send_windowed(client: &Client, reqs: &[Req], window: usize) -> Vec<Response> {
    let mut answers: Vec<Option<Response>> = vec![None; reqs.len()];
    let index: std::collections::HashMap<String, usize> = reqs
        .iter()
        .enumerate()
        .map(|(i, r)| (r.branch().to_string(), i))
        .collect();
    let (mut next, mut done) = (0, 0);
    let mut outstanding: BTreeSet<usize> = BTreeSet::new();
    let mut retransmits = 0;
    while done < reqs.len() {
        while outstanding.len() < window && next < reqs.len() {
            client.send(&reqs[next].build());
            outstanding.insert(next);
            next += 1;
        }
        match client.recv(Duration::from_millis(500)) {
            Some(raw) => {
                let resp = Response::parse(&raw).expect("a SIP response");
                let Some(&i) = index.get(&branch_of(&resp)) else {
                    panic!("answer to no request of ours:\n{}", resp.raw);
                };
                if outstanding.remove(&i) {
                    answers[i] = Some(resp);
                    done += 1;
                }
            }
            None => {
                retransmits += 1;
                assert!(
                    retransmits < 20,
                    "{} requests never answered",
                    outstanding.len()
                );
                for &i in &outstanding {
                    client.send(&reqs[i].build());
                }
            }
        }
    }
    answers.into_iter().map(|a| a.expect("answered")).collect()
}

/// Registers one contact for each of `users` from `client` and checks every answer is a 200 listing it.
fn register_users(client: &Client, users: &[String]) {
    let reqs: Vec<Req> = users
        .iter()
        .map(|user| {
            Req::register(client, user, "example.com")
                .contact(&format!("<sip:{user}@{}>", client.local))
                .expires("600")
        })
        .collect();
    for (user, resp) in users.iter().zip(send_windowed(client, &reqs, 64)) {
        assert_eq!(resp.status, 200, "{user}: {}", resp.raw);
        let want = format!("sip:{user}@{}", client.local);
        assert!(uris(&resp).contains(&want), "{user}: {}", resp.raw);
    }
}

/// Fetches (a REGISTER without Contact) each of `users` from `client`, `window` at a time: each lists
/// exactly the contact `contact_of(user)`.
fn assert_lookups_agree(
    client: &Client,
    users: &[String],
    window: usize,
    contact_of: impl Fn(&str) -> String,
) {
    let reqs: Vec<Req> = users
        .iter()
        .map(|user| Req::register(client, user, "example.com"))
        .collect();
    for (user, resp) in users.iter().zip(send_windowed(client, &reqs, window)) {
        assert_eq!(resp.status, 200, "{user}: {}", resp.raw);
        let want: BTreeSet<String> = [contact_of(user)].into();
        assert_eq!(uris(&resp), want, "fetch of {user} from {}", client.local);
    }
}

/// `datagrams_in` of each shard is within 40-60 % of the total.
fn assert_spread_60_40(lines: &[ShardStopLine]) {
    let total = sum(lines, "datagrams_in");
    for l in lines {
        let share = l.get("datagrams_in") as f64 / total as f64;
        assert!(
            (0.4..=0.6).contains(&share),
            "shard {} took {:.1} % of {total} datagrams: {lines:?}",
            l.shard,
            share * 100.0
        );
    }
}

#[test]
fn one_source_spreads_over_two_shards_and_every_register_lands_on_its_owner() {
    if shards_or_skip("one_source_spreads").is_none() {
        return;
    }
    // The default --receive-spread (random): one client socket, as one SBC or SIPp, reaches both shards.
    let server = start(2, &[]);
    let source = server.client();
    let users: Vec<String> = (0..3000).map(|i| format!("one{i}-{}", unique())).collect();
    register_users(&source, &users);
    // Lookups agree from the same source (each fetch lands on either shard) and from another one.
    let contact = |user: &str| format!("sip:{user}@{}", source.local);
    assert_lookups_agree(&source, &users[..500], 64, contact);
    assert_lookups_agree(&server.client(), &users[500..1000], 64, contact);
    let lines = stop(server, 2);
    assert_spread_60_40(&lines);
    assert_traffic_crossed_shards(&lines);
    assert_eq!(sum(&lines, "bindings"), users.len() as u64, "{lines:?}");
    assert_eq!(sum(&lines, "overloaded_503"), 0, "{lines:?}");
    // Handed over in batches, and a doorbell rung at most once per batch.
    assert!(
        sum(&lines, "doorbell_rings") <= sum(&lines, "handoff_batches")
            && sum(&lines, "handoff_batches") <= sum(&lines, "handed_off"),
        "{lines:?}"
    );
}

#[test]
fn with_flow_spread_one_source_stays_on_one_shard() {
    if shards_or_skip("with_flow_spread").is_none() {
        return;
    }
    let server = start(2, &["--receive-spread", "flow"]);
    let source = server.client();
    let users: Vec<String> = (0..200).map(|i| format!("flow{i}-{}", unique())).collect();
    register_users(&source, &users);
    let lines = stop(server, 2);
    let busy: Vec<u64> = lines.iter().map(|l| l.get("datagrams_in")).collect();
    assert!(busy.contains(&0), "one 4-tuple, one shard: {lines:?}");
    assert_eq!(sum(&lines, "bindings"), users.len() as u64, "{lines:?}");
}

#[test]
fn many_sources_on_two_shards_all_register_and_lookups_agree() {
    if shards_or_skip("many_sources").is_none() {
        return;
    }
    let server = start(2, &[]);
    let sources = clients(&server, 16);
    let threads: Vec<_> = sources
        .into_iter()
        .enumerate()
        .map(|(s, client)| {
            std::thread::spawn(move || {
                let users: Vec<String> = (0..150)
                    .map(|i| format!("many{s}x{i}-{}", unique()))
                    .collect();
                register_users(&client, &users);
                let contact = |user: &str| format!("sip:{user}@{}", client.local);
                assert_lookups_agree(&client, &users, 64, contact);
                users.len() as u64
            })
        })
        .collect();
    let registered: u64 = threads.into_iter().map(|t| t.join().expect("client")).sum();
    let lines = stop(server, 2);
    assert_spread_60_40(&lines);
    assert_traffic_crossed_shards(&lines);
    assert_eq!(sum(&lines, "bindings"), registered, "{lines:?}");
    assert_eq!(sum(&lines, "overloaded_503"), 0, "{lines:?}");
}

/// Every shard's `bindings` counter through the HTTP API (`GET /v1/stats`).
fn bindings_per_shard(server: &Server) -> Vec<u64> {
    let url = format!("http://{}/v1/stats", server.api.expect("the API runs"));
    let text = ureq::get(&url)
        .call()
        .expect("GET /v1/stats")
        .into_string()
        .expect("body");
    let json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    json["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .map(|s| s["bindings"].as_u64().expect("bindings"))
        .collect()
}

/// Sends `req` until an answer comes (each try may land on either shard), at most `tries` times 100 ms.
fn request_until_answered(client: &Client, req: &Req, tries: usize) -> Option<Response> {
    for _ in 0..tries {
        client.send(&req.build());
        let deadline = Instant::now() + Duration::from_millis(100);
        while let Some(raw) = client.recv(deadline.saturating_duration_since(Instant::now())) {
            let resp = Response::parse(&raw).expect("a SIP response");
            if branch_of(&resp) == req.branch() {
                return Some(resp);
            }
        }
    }
    None
}

/// Registers `n` users from `setup`, one by one, and tells which shard owns each (by watching the shards'
/// binding counts): (shard 0's, shard 1's), each at least a sixth of them.
fn register_and_find_owners(
    server: &Server,
    setup: &Client,
    n: usize,
) -> (Vec<String>, Vec<String>) {
    let (mut own0, mut own1) = (Vec::new(), Vec::new());
    let mut before = bindings_per_shard(server);
    for i in 0..n {
        let user = format!("owned{i}-{}", unique());
        let req = Req::register(setup, &user, "example.com")
            .contact(&format!("<sip:{user}@{}>", setup.local))
            .expires("600");
        let resp = setup.request(&req.build());
        assert_eq!(resp.status, 200, "{}\n{}", resp.raw, server.log_text());
        let after = bindings_per_shard(server);
        if after[0] > before[0] {
            own0.push(user);
        } else {
            assert!(after[1] > before[1], "{before:?} -> {after:?}");
            own1.push(user);
        }
        before = after;
    }
    assert!(
        own0.len() >= n / 6 && own1.len() >= n / 6,
        "{} / {}",
        own0.len(),
        own1.len()
    );
    (own0, own1)
}

/// The stall hook's file for this test, not yet created, and the `COREREG_TEST_STALL` value for `shard`.
fn stall_hook(shard: usize) -> (std::path::PathBuf, String) {
    let flag =
        std::env::temp_dir().join(format!("corereg-stall-{}-{}", std::process::id(), unique()));
    let _ = std::fs::remove_file(&flag);
    let hook = format!("{shard}:{}", flag.display());
    (flag, hook)
}

/// Requests handed to an owner that is stopping are answered, never dropped: the owner's inbox holds
/// requests from its peer when the process is told to stop (the owner is stalled, so it cannot apply them),
/// and once it runs again it answers each of them 503 + Retry-After before it lets go of its inbox.
#[test]
fn requests_handed_to_a_stopping_owner_are_answered_503() {
    if shards_or_skip("handed_to_a_stopping_owner").is_none() {
        return;
    }
    if !cfg!(debug_assertions) {
        eprintln!(
            "handed_to_a_stopping_owner: skipped: the stall hook exists in debug builds only"
        );
        return;
    }
    let (flag, hook) = stall_hook(1);
    let mut server = start_with_env(2, &["--retry-after", "7"], &[("COREREG_TEST_STALL", &hook)]);
    let setup = server.client();
    let (_, own1) = register_and_find_owners(&server, &setup, 40);
    std::fs::write(&flag, b"stall").expect("create the stall file");
    std::thread::sleep(Duration::from_millis(200));
    // One refresh per AoR of the stalled shard, sent once: about half land on shard 0 and wait in shard
    // 1's inbox, the others in shard 1's socket.
    let during = server.client();
    let reqs: Vec<Req> = own1
        .iter()
        .map(|user| {
            Req::register(&during, user, "example.com")
                .contact(&format!("<sip:{user}@{}>", setup.local))
                .expires("600")
        })
        .collect();
    for req in &reqs {
        during.send(&req.build());
    }
    std::thread::sleep(Duration::from_millis(100));
    server.signal_term();
    // Shard 0 stops; shard 1 is still stuck with its inbox full of shard 0's batches.
    std::thread::sleep(Duration::from_millis(400));
    std::fs::remove_file(&flag).expect("remove the stall file");
    let status = server
        .wait_exit(Duration::from_secs(5))
        .expect("the process stops once the stall ends");
    assert!(status.success(), "{status:?}\n{}", server.log_text());
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut lines = common::shard_stop_lines(&server.log_text());
    while lines.len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        lines = common::shard_stop_lines(&server.log_text());
    }
    assert_eq!(lines.len(), 2, "{}", server.log_text());
    let stopping = &lines[1];
    let handed = lines[0].get("handed_off");
    assert!(handed > 0, "nothing was handed over: {lines:?}");
    assert_eq!(lines[0].get("overloaded_503"), 0, "{lines:?}");

    // Every request a shard took from its socket is answered exactly once: 200 when shard 1 applied it
    // before it saw the stop, 503 + Retry-After otherwise.
    let mut answers = std::collections::HashMap::new();
    while let Some(raw) = during.recv(Duration::from_millis(300)) {
        let resp = Response::parse(&raw).expect("a SIP response");
        assert!(
            resp.status == 200 || (resp.status == 503 && resp.header("Retry-After") == Some("7")),
            "{}",
            resp.raw
        );
        assert!(
            answers.insert(branch_of(&resp), resp.status).is_none(),
            "one answer per request"
        );
    }
    let received: u64 = sum(&lines, "datagrams_in");
    let answered = answers.len() as u64;
    let refused = answers.values().filter(|&&s| s == 503).count() as u64;
    assert_eq!(
        refused,
        stopping.get("stopping_503") + lines[0].get("peer_closed_503"),
        "{lines:?}"
    );
    assert!(
        stopping.get("stopping_503") > 0,
        "the stopping owner answered its inbox: {lines:?}"
    );
    assert_eq!(sum(&lines, "handoff_lost"), 0, "{lines:?}");
    // The set-up's 40 REGISTERs and the refreshes the shards took from their sockets.
    assert_eq!(answered + 40, received, "{lines:?}");
}

/// A shard that stalls (debug builds: `COREREG_TEST_STALL=SHARD:FILE` blocks the shard's thread while the
/// file exists) must not take its peer down: the peer keeps answering its own AoRs at once and answers the
/// stalled shard's AoRs 503 + Retry-After once the stalled shard's inbox is full; afterwards both serve.
#[test]
fn a_stalled_shard_is_shed_with_503_while_its_peer_serves_its_own_aors() {
    if shards_or_skip("a_stalled_shard").is_none() {
        return;
    }
    if !cfg!(debug_assertions) {
        eprintln!("a_stalled_shard: skipped: the stall hook exists in debug builds only");
        return;
    }
    let (flag, hook) = stall_hook(1);
    let server = start_with_env(
        2,
        &["--handoff-queue", "4", "--retry-after", "9"],
        &[("COREREG_TEST_STALL", &hook)],
    );
    let setup = server.client();
    let (own0, own1) = register_and_find_owners(&server, &setup, 60);

    std::fs::write(&flag, b"stall").expect("create the stall file");
    // The shard looks every 10 ms; then it is stuck until the file goes.
    std::thread::sleep(Duration::from_millis(200));
    let during = server.client();
    let stalled_at = Instant::now();
    for user in &own0 {
        let req = Req::register(&during, user, "example.com");
        let resp = request_until_answered(&during, &req, 30).unwrap_or_else(|| {
            panic!("shard 0 did not answer its own AoR {user} during the stall")
        });
        assert_eq!(resp.status, 200, "{user}: {}", resp.raw);
        assert_eq!(uris(&resp).len(), 1, "{}", resp.raw);
    }
    let mut shed = 0;
    for user in &own1 {
        let req = Req::register(&during, user, "example.com");
        // The first few fill the stalled shard's inbox (answered after the stall); retries find it full.
        let resp = request_until_answered(&during, &req, 30)
            .unwrap_or_else(|| panic!("no 503 for the stalled shard's AoR {user}"));
        assert_eq!(
            resp.status, 503,
            "{user} answered during the stall: {}",
            resp.raw
        );
        assert_eq!(resp.header("Retry-After"), Some("9"), "{}", resp.raw);
        shed += 1;
    }
    let stalled_for = stalled_at.elapsed();
    std::fs::remove_file(&flag).expect("remove the stall file");
    assert_eq!(shed, own1.len());

    // Once the stall ends both shards serve again: every AoR answers 200 with its binding.
    let after = server.client();
    let contact = |user: &str| format!("sip:{user}@{}", setup.local);
    std::thread::sleep(Duration::from_millis(100));
    // One at a time: the inboxes hold 4 datagrams, a burst would be shed.
    assert_lookups_agree(&after, &own0, 1, contact);
    assert_lookups_agree(&after, &own1, 1, contact);
    let lines = stop(server, 2);
    assert!(
        sum(&lines, "overloaded_503") >= own1.len() as u64,
        "{lines:?}"
    );
    assert_eq!(sum(&lines, "bindings"), 60, "{lines:?}");
    eprintln!("stalled shard: {shed} of its AoRs shed with 503 by its peer in {stalled_for:?}");
}
