//! Hostile and broken datagrams: each gets its answer (or silence when nobody can be answered), never creates
//! a binding, and the process keeps serving valid REGISTERs afterwards.

mod common;

use common::{assert_still_serving, Client, Req, Server, REPLY_TIMEOUT, SILENCE_TIMEOUT};

/// What a hostile datagram may get back.
#[derive(Debug)]
enum Expect {
    /// One of these statuses.
    Status(&'static [u16]),
    /// One of these statuses, or no answer at all.
    StatusOrSilence(&'static [u16]),
    /// No answer.
    Silence,
}

fn check(server: &Server, client: &Client, name: &str, datagram: &[u8], expect: Expect) {
    client.send(datagram);
    let wait = match expect {
        Expect::Status(_) => REPLY_TIMEOUT,
        _ => SILENCE_TIMEOUT.max(std::time::Duration::from_millis(500)),
    };
    let answer = client.recv(wait).map(|raw| {
        common::Response::parse(&raw).unwrap_or_else(|| {
            panic!(
                "{name}: unparsable answer:\n{}",
                String::from_utf8_lossy(&raw)
            )
        })
    });
    match (&expect, &answer) {
        (Expect::Status(ok) | Expect::StatusOrSilence(ok), Some(resp)) => {
            assert!(
                ok.contains(&resp.status),
                "{name}: expected {expect:?}, got:\n{}",
                resp.raw
            )
        }
        (Expect::StatusOrSilence(_) | Expect::Silence, None) => {}
        (Expect::Status(_), None) => panic!("{name}: expected {expect:?}, got no answer"),
        (Expect::Silence, Some(resp)) => panic!("{name}: expected silence, got:\n{}", resp.raw),
    }
    assert_still_serving(server, name);
}

/// A REGISTER whose header lines are given verbatim (after the request line).
fn raw_register(client: &Client, lines: &[&str], body: &str) -> Vec<u8> {
    let n = common::unique();
    let mut s = "REGISTER sip:example.com SIP/2.0\r\n".to_string();
    s += &format!(
        "Via: SIP/2.0/UDP {};branch=z9hG4bK-mal-{n}\r\n",
        client.local
    );
    for l in lines {
        s += l;
        s += "\r\n";
    }
    s += "\r\n";
    s += body;
    s.into_bytes()
}

/// Fetches `sip:user@example.com` and asserts it has no binding.
fn assert_no_binding(client: &Client, user: &str) {
    let resp = client.request(&Req::register(client, user, "example.com").build());
    assert_eq!(resp.status, 200, "{}", resp.raw);
    assert!(
        resp.contacts().is_empty(),
        "a rejected request created a binding for {user}:\n{}",
        resp.raw
    );
}

#[test]
fn truncated_garbage_and_nul_datagrams() {
    let server = Server::start(&[]);
    let client = server.client();
    let full = Req::register(&client, "trunc", "example.com")
        .contact(&format!("<sip:trunc@{}>", client.local))
        .build();
    // Cut in the middle of the header section: no empty line ends it.
    check(
        &server,
        &client,
        "truncated",
        &full[..full.len() / 2],
        Expect::StatusOrSilence(&[400]),
    );
    check(
        &server,
        &client,
        "garbage",
        b"hello, this is not SIP at all\r\n\r\n",
        Expect::StatusOrSilence(&[400]),
    );
    check(
        &server,
        &client,
        "binary garbage",
        &[0xff, 0xfe, 0x80, 0x01, 0x0d, 0x0a, 0x0d, 0x0a],
        Expect::Silence,
    );
    check(
        &server,
        &client,
        "NUL-filled",
        &[0u8; 1000],
        Expect::Silence,
    );
    check(&server, &client, "empty datagram", b"", Expect::Silence);
    check(
        &server,
        &client,
        "only CRLFs (keep-alive)",
        b"\r\n\r\n",
        Expect::Silence,
    );
    assert_no_binding(&client, "trunc");
}

#[test]
fn oversized_datagrams_and_lines() {
    let server = Server::start(&[
        "--max-datagram",
        "2048",
        "--max-line",
        "512",
        "--max-headers",
        "20",
    ]);
    let client = server.client();
    let contact = format!("<sip:big@{}>", client.local);

    let mut padded = Req::register(&client, "big", "example.com").contact(&contact);
    padded.extra.push(format!("X-Padding: {}", "a".repeat(400)));
    padded.extra.push(format!("X-Padding: {}", "b".repeat(400)));
    padded.extra.push(format!("X-Padding: {}", "c".repeat(400)));
    padded.extra.push(format!("X-Padding: {}", "d".repeat(400)));
    padded.extra.push(format!("X-Padding: {}", "e".repeat(400)));
    let datagram = padded.build();
    assert!(datagram.len() > 2048);
    check(
        &server,
        &client,
        "datagram > --max-datagram",
        &datagram,
        Expect::StatusOrSilence(&[400, 413, 513]),
    );
    assert_no_binding(&client, "big");

    let long_line = Req::register(&client, "big", "example.com")
        .contact(&contact)
        .header(&format!("X-Long: {}", "x".repeat(1000)))
        .build();
    assert!(long_line.len() < 2048);
    check(
        &server,
        &client,
        "line > --max-line",
        &long_line,
        Expect::StatusOrSilence(&[400, 413, 513]),
    );
    assert_no_binding(&client, "big");

    let mut many = Req::register(&client, "big", "example.com").contact(&contact);
    for i in 0..30 {
        many.extra.push(format!("X-H{i}: {i}"));
    }
    check(
        &server,
        &client,
        "headers > --max-headers",
        &many.build(),
        Expect::StatusOrSilence(&[400, 413, 513]),
    );
    assert_no_binding(&client, "big");
}

#[test]
fn duplicate_and_conflicting_headers_get_400() {
    let server = Server::start(&[]);
    let client = server.client();
    let contact = format!("Contact: <sip:dup@{}>", client.local);
    let common_lines = |extra: &[&str]| -> Vec<String> {
        let mut v = vec![
            "Max-Forwards: 70".to_string(),
            "From: <sip:dup@example.com>;tag=1".to_string(),
            "To: <sip:dup@example.com>".to_string(),
            contact.clone(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let cases: [(&str, Vec<String>, &str); 4] = [
        (
            "two Call-IDs",
            common_lines(&[
                "Call-ID: a@x",
                "Call-ID: b@x",
                "CSeq: 1 REGISTER",
                "Content-Length: 0",
            ]),
            "",
        ),
        (
            "two CSeqs",
            common_lines(&[
                "Call-ID: c@x",
                "CSeq: 1 REGISTER",
                "CSeq: 2 REGISTER",
                "Content-Length: 0",
            ]),
            "",
        ),
        (
            "Content-Length larger than the body",
            common_lines(&["Call-ID: d@x", "CSeq: 1 REGISTER", "Content-Length: 50"]),
            "short",
        ),
        (
            "two Content-Lengths",
            common_lines(&[
                "Call-ID: e@x",
                "CSeq: 1 REGISTER",
                "Content-Length: 0",
                "Content-Length: 5",
            ]),
            "",
        ),
    ];
    for (name, lines, body) in cases {
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        check(
            &server,
            &client,
            name,
            &raw_register(&client, &lines, body),
            Expect::Status(&[400]),
        );
        assert_no_binding(&client, "dup");
    }
    // Missing mandatory headers: no Call-ID, no CSeq.
    let missing = raw_register(
        &client,
        &[
            "From: <sip:dup@example.com>;tag=1",
            "To: <sip:dup@example.com>",
        ],
        "",
    );
    check(
        &server,
        &client,
        "no Call-ID/CSeq",
        &missing,
        Expect::Status(&[400]),
    );
    assert_no_binding(&client, "dup");
}

#[test]
fn a_burst_of_hostile_datagrams_does_not_stop_the_process() {
    let mut server = Server::start(&[]);
    let client = server.client();
    // Pseudo-random bytes (xorshift, fixed seed: reproducible), some prefixed with a plausible start line.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..300 {
        let len = (i * 37) % 1500;
        let mut d = if i % 3 == 0 {
            b"REGISTER sip:example.com SIP/2.0\r\n".to_vec()
        } else {
            Vec::new()
        };
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            d.push((x & 0xff) as u8);
        }
        client.send(&d);
    }
    // Drain whatever came back (statuses are not checked here: only survival).
    while client.recv(SILENCE_TIMEOUT).is_some() {}
    assert!(
        server.is_running(),
        "process died; log:\n{}",
        server.log_text()
    );
    assert_still_serving(&server, "300 random datagrams");
}
