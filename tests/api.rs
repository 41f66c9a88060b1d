//! The HTTP API against the real binary: register over SIP, read, delete and follow the bindings over HTTP.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Client, Req, Server};
use serde_json::Value;

const DOMAIN: &str = "example.com";

fn api(server: &Server) -> SocketAddr {
    server.api.expect("the test server runs the HTTP API")
}

fn get(server: &Server, path: &str) -> (u16, Value) {
    call(server, "GET", path)
}

fn call(server: &Server, method: &str, path: &str) -> (u16, Value) {
    common::http(api(server), method, path)
}

/// Registers `contacts` (each a Contact header value) for `user` in one REGISTER with `extra` headers.
fn register(client: &Client, user: &str, contacts: &[&str], extra: &[&str]) -> Req {
    let mut req = Req::register(client, user, DOMAIN);
    for c in contacts {
        req = req.contact(c);
    }
    for h in extra {
        req = req.header(h);
    }
    let r = client.request(&req.build());
    assert_eq!(r.status, 200, "{}", r.raw);
    req
}

/// A fetch over SIP: the AoR's contacts as the registrar's 200 lists them.
fn sip_fetch(client: &Client, user: &str) -> Vec<String> {
    let r = client.request(&Req::register(client, user, DOMAIN).build());
    assert_eq!(r.status, 200, "{}", r.raw);
    r.contacts().into_iter().map(|(uri, _)| uri).collect()
}

#[test]
fn lookup_returns_every_field_ordered_grouped_and_selected() {
    let server = Server::start(&["--domain", DOMAIN]);
    let client = server.client();
    register(
        &client,
        "alice",
        &[
            "<sip:alice@192.0.2.1:5062>;q=0.5",
            "<sip:alice@192.0.2.2:5064>;q=1.0;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\";reg-id=1",
        ],
        &["Path: <sip:edge.example.net;lr>", "User-Agent: test-ua/1"],
    );

    let (status, body) = get(&server, "/v1/aors/sip%3Aalice%40example.com");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["aor"], "sip:alice@example.com");
    let bindings = body["bindings"].as_array().expect("bindings");
    assert_eq!(bindings.len(), 2);
    let first = &bindings[0];
    assert_eq!(
        first["contact"], "sip:alice@192.0.2.2:5064",
        "highest q first: {body}"
    );
    assert_eq!(first["q"], 1.0);
    assert_eq!(first["path"], "<sip:edge.example.net;lr>");
    assert_eq!(first["source"]["address"], "127.0.0.1");
    assert_eq!(first["source"]["port"], client.local.port());
    assert_eq!(first["source"]["transport"], "udp");
    assert_eq!(
        first["instance"],
        "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"
    );
    assert_eq!(first["reg_id"], 1);
    assert_eq!(first["user_agent"], "test-ua/1");
    assert_eq!(first["cseq"], 1);
    let expires = first["expires"].as_u64().expect("expires");
    assert!((3590..=3600).contains(&expires), "{expires}");
    assert!(first["call_id"].as_str().is_some_and(|c| !c.is_empty()));
    assert_eq!(bindings[1]["q"], 0.5);

    // Without the scheme, and grouped by q.
    let (status, grouped) = get(&server, "/v1/aors/alice%40EXAMPLE.com?group=q");
    assert_eq!(status, 200, "{grouped}");
    let groups = grouped["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0]["q"], 1.0);
    assert_eq!(
        groups[1]["bindings"][0]["contact"],
        "sip:alice@192.0.2.1:5062"
    );

    let (status, picked) = get(
        &server,
        "/v1/aors/alice%40example.com?fields=contact,path,source",
    );
    assert_eq!(status, 200);
    let keys: Vec<&String> = picked["bindings"][0]
        .as_object()
        .expect("obj")
        .keys()
        .collect();
    assert_eq!(keys, ["contact", "path", "source"]);

    // Errors are JSON 4xx.
    let (status, body) = get(&server, "/v1/aors/bob%40example.com");
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().is_some());
    let (status, body) = get(&server, "/v1/aors/alice%40other.example");
    assert_eq!(status, 404, "not a served domain: {body}");
    let (status, body) = get(&server, "/v1/aors/%3Cnot%20a%20uri%3E");
    assert_eq!(status, 400, "{body}");
    let (status, body) = get(&server, "/v1/aors/alice%40example.com?fields=nope");
    assert_eq!(status, 400, "{body}");
    let (status, body) = get(&server, "/v1/aors/alice%40example.com?group=z");
    assert_eq!(status, 400, "{body}");
    let (status, body) = get(&server, "/v1/nothing");
    assert_eq!(status, 404, "{body}");
    let (status, body) = get(&server, "/v1/aors?limit=0");
    assert_eq!(status, 400, "{body}");
    let (status, body) = get(&server, "/v1/aors?cursor=x");
    assert_eq!(status, 400, "{body}");
    let (status, _) = get(&server, "/healthz");
    assert_eq!(status, 200);

    // Whatever the input, the answer is a JSON 4xx.
    let long = "a".repeat(5000);
    for (method, path, want) in [
        ("GET", format!("/v1/aors/{long}%40example.com"), 400),
        ("GET", "/v1/aors/%FF%FE%40example.com".to_string(), 400),
        ("GET", "/v1/aors/%40".to_string(), 400),
        ("GET", "/v1/events?snapshot=yes".to_string(), 400),
        ("GET", "/v1/aors?limit=-1".to_string(), 400),
        ("POST", "/v1/aors/alice%40example.com".to_string(), 405),
        ("PUT", "/metrics".to_string(), 405),
    ] {
        let (status, body) = call(&server, method, &path);
        assert_eq!(
            status,
            want,
            "{method} {}: {body}",
            &path[..path.len().min(60)]
        );
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{method} {path}: {body}"
        );
    }
    // The registrar still serves.
    assert_eq!(sip_fetch(&client, "alice").len(), 2);
}

#[test]
fn delete_over_http_is_what_a_sip_fetch_sees_on_every_shard() {
    let server = Server::start(&["--domain", DOMAIN, "--cores", "2"]);
    let client = server.client();
    let users: Vec<String> = (0..12).map(|i| format!("u{i}")).collect();
    for user in &users {
        register(
            &client,
            user,
            &[
                &format!("<sip:{user}@192.0.2.1>"),
                &format!("<sip:{user}@192.0.2.2>"),
            ],
            &[],
        );
    }
    // Paging finds every AoR once, on both shards.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    for _ in 0..50 {
        let (status, page) = get(&server, &format!("/v1/aors?limit=5&prefix=sip:u{cursor}"));
        assert_eq!(status, 200, "{page}");
        for a in page["aors"].as_array().expect("aors") {
            assert_eq!(a["bindings"], 2);
            seen.push(a["aor"].as_str().expect("aor").to_string());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    seen.sort();
    let mut want: Vec<String> = users.iter().map(|u| format!("sip:{u}@{DOMAIN}")).collect();
    want.sort();
    assert_eq!(seen, want);

    for user in &users[..6] {
        let (status, body) = call(&server, "DELETE", &format!("/v1/aors/{user}%40{DOMAIN}"));
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["deleted"], 2);
        assert!(
            sip_fetch(&client, user).is_empty(),
            "{user} still registered"
        );
        let (status, _) = call(&server, "DELETE", &format!("/v1/aors/{user}%40{DOMAIN}"));
        assert_eq!(status, 404, "deleted twice");
    }
    for user in &users[6..] {
        let (_, body) = get(&server, &format!("/v1/aors/{user}%40{DOMAIN}"));
        let id = body["bindings"][0]["id"].as_u64().expect("id");
        let keep = body["bindings"][1]["contact"]
            .as_str()
            .expect("contact")
            .to_string();
        let (status, body) = call(
            &server,
            "DELETE",
            &format!("/v1/aors/{user}%40{DOMAIN}/bindings/{id}"),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["deleted"], 1);
        assert_eq!(sip_fetch(&client, user), [keep]);
    }
    let (status, body) = call(&server, "DELETE", "/v1/aors/u7%40example.com/bindings/x");
    assert_eq!(status, 400, "{body}");
}

/// An SSE stream read on a thread: each event as (name, id, data).
struct Events {
    rx: mpsc::Receiver<(String, String, Value)>,
}

type Sse = (String, String, Value);

impl Events {
    fn open(server: &Server, query: &str, last_id: Option<&str>) -> Result<Events, (u16, Value)> {
        let url = format!("http://{}/v1/events{query}", api(server));
        let mut request = ureq::get(&url);
        if let Some(id) = last_id {
            request = request.set("Last-Event-ID", id);
        }
        let response = match request.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(status, r)) => {
                return Err((
                    status,
                    serde_json::from_str(&r.into_string().unwrap_or_default())
                        .unwrap_or(Value::Null),
                ))
            }
            Err(e) => panic!("{url}: {e}"),
        };
        let (tx, rx) = mpsc::channel();
        let reader = BufReader::new(response.into_reader());
        std::thread::spawn(move || {
            let (mut name, mut id, mut data) = (String::new(), String::new(), String::new());
            for line in reader.lines() {
                let Ok(line) = line else { return };
                if line.is_empty() {
                    if !data.is_empty() {
                        let value = serde_json::from_str(&data).expect("event data is JSON");
                        if tx.send((name.clone(), id.clone(), value)).is_err() {
                            return;
                        }
                    }
                    (name, data) = (String::new(), String::new());
                } else if let Some(v) = line.strip_prefix("event: ") {
                    name = v.to_string();
                } else if let Some(v) = line.strip_prefix("id: ") {
                    id = v.to_string();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                }
            }
        });
        Ok(Events { rx })
    }

    fn next(&self, within: Duration) -> Option<Sse> {
        self.rx.recv_timeout(within).ok()
    }

    /// The next `n` events, or a panic naming what came.
    fn take(&self, n: usize) -> Vec<Sse> {
        let mut got = Vec::new();
        while got.len() < n {
            match self.next(Duration::from_secs(10)) {
                Some(e) => got.push(e),
                None => panic!("{} of {n} events came: {got:?}", got.len()),
            }
        }
        got
    }
}

#[test]
fn events_arrive_in_order_resume_and_start_from_a_snapshot() {
    let server = Server::start(&["--domain", DOMAIN, "--min-expires", "1", "--cores", "2"]);
    let client = server.client();
    // Before anyone listens: only a snapshot shows it.
    register(&client, "early", &["<sip:early@192.0.2.9>"], &[]);

    let live = Events::open(&server, "", None).expect("subscribed");
    std::thread::sleep(Duration::from_millis(200));
    let req = register(&client, "alice", &["<sip:alice@192.0.2.1>"], &[]);
    let refresh = req.next().contact("<sip:alice@192.0.2.1>");
    assert_eq!(client.request(&refresh.build()).status, 200);
    let unregister = refresh.next().contact("<sip:alice@192.0.2.1>").expires("0");
    assert_eq!(client.request(&unregister.build()).status, 200);
    register(&client, "bob", &["<sip:bob@192.0.2.2>;expires=1"], &[]);
    register(&client, "carol", &["<sip:carol@192.0.2.3>"], &[]);
    let (status, _) = call(&server, "DELETE", "/v1/aors/carol%40example.com");
    assert_eq!(status, 200);

    let got = live.take(6);
    let kinds: Vec<(&str, &str)> = got
        .iter()
        .map(|(name, _, d)| (name.as_str(), d["aor"].as_str().unwrap_or("")))
        .collect();
    // bob's expiry comes a second or two later, after carol's deletion.
    assert_eq!(
        kinds,
        [
            ("registered", "sip:alice@example.com"),
            ("refreshed", "sip:alice@example.com"),
            ("unregistered", "sip:alice@example.com"),
            ("registered", "sip:bob@example.com"),
            ("registered", "sip:carol@example.com"),
            ("deleted", "sip:carol@example.com"),
        ]
    );
    let expired = live.take(1);
    assert_eq!(expired[0].0, "expired");
    assert_eq!(expired[0].2["aor"], "sip:bob@example.com");
    let all: Vec<&Sse> = got.iter().chain(&expired).collect();
    // Event ids rise by one; each shard's seq rises; the data carries Kazoo's reg_success fields.
    let numbers: Vec<u64> = all
        .iter()
        .map(|(_, _, d)| d["id"].as_u64().expect("id"))
        .collect();
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
    for shard in 0..2 {
        let seqs: Vec<u64> = all
            .iter()
            .filter(|(_, _, d)| d["shard"] == shard)
            .map(|(_, _, d)| d["seq"].as_u64().expect("seq"))
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[1] > w[0]),
            "shard {shard}: {seqs:?}"
        );
    }
    let first = &all[0].2;
    assert_eq!(first["user"], "alice");
    assert_eq!(first["host"], "example.com");
    assert_eq!(first["binding"]["contact"], "sip:alice@192.0.2.1");
    assert_eq!(first["binding"]["source"]["port"], client.local.port());
    assert!(first["binding"]["expires"].as_u64().is_some());
    assert!(
        all[0].1.ends_with(&format!("-{}", numbers[0])),
        "SSE id {}",
        all[0].1
    );

    // Resume after the second event: the rest again, nothing before.
    let resumed = Events::open(&server, "", Some(&all[1].1)).expect("resumed");
    let again = resumed.take(5);
    assert_eq!(again[0].2["id"], numbers[2]);
    assert_eq!(again[4].0, "expired");
    // An id of another run is refused clearly.
    let (status, body) = Events::open(&server, "", Some("00000000-3"))
        .err()
        .expect("refused");
    assert_eq!(status, 410, "{body}");
    assert!(body["error"].as_str().expect("error").contains("snapshot"));

    // A snapshot: every AoR once (early, and dave registered now), then the changes after it.
    register(&client, "dave", &["<sip:dave@192.0.2.4>"], &[]);
    let snap = Events::open(&server, "?snapshot=true", None).expect("snapshot");
    let mut snapshot = Vec::new();
    loop {
        let (name, _, data) = snap.take(1).remove(0);
        match name.as_str() {
            "snapshot" => snapshot.push(data["aor"].as_str().expect("aor").to_string()),
            "snapshot-end" => {
                assert_eq!(data["aors"], 2);
                break;
            }
            other => panic!("{other} before snapshot-end"),
        }
    }
    snapshot.sort();
    assert_eq!(snapshot, ["sip:dave@example.com", "sip:early@example.com"]);
    register(&client, "erin", &["<sip:erin@192.0.2.5>"], &[]);
    let after = snap.take(1);
    assert_eq!(
        (after[0].0.as_str(), &after[0].2["aor"]),
        ("registered", &Value::from("sip:erin@example.com"))
    );
    assert!(
        snap.next(Duration::from_millis(300)).is_none(),
        "no duplicate"
    );

    // A snapshot holds its slot only while it is read: more streams than the limit, each open, all start.
    let mut open = Vec::new();
    for _ in 0..6 {
        let stream =
            Events::open(&server, "?snapshot=true", None).expect("a snapshot slot is free");
        let names: Vec<String> = stream
            .take(4)
            .into_iter()
            .map(|(name, _, _)| name)
            .collect();
        assert_eq!(names, ["snapshot", "snapshot", "snapshot", "snapshot-end"]);
        open.push(stream);
    }
}

#[test]
fn a_subscriber_that_does_not_read_is_cut_off_and_registrations_go_on() {
    let server = Server::start(&["--domain", DOMAIN, "--events-subscriber-queue", "16"]);
    // Subscribe and never read: its TCP window fills, then its queue.
    let url = format!("http://{}/v1/events", api(&server));
    let mut stream = std::net::TcpStream::connect(api(&server)).expect("connect");
    std::io::Write::write_all(
        &mut stream,
        format!("GET {url} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
    .expect("request");
    std::thread::sleep(Duration::from_millis(200));
    let client = server.client();
    let started = Instant::now();
    let mut ok = 0;
    for i in 0..30_000 {
        let req = Req::register(&client, &format!("user{i}"), DOMAIN).contact(&format!(
            "<sip:user{i}@192.0.2.1;x-pad={}>",
            "p".repeat(200)
        ));
        client.send(&req.build());
        if client
            .recv(Duration::from_secs(2))
            .is_some_and(|r| r.starts_with(b"SIP/2.0 200"))
        {
            ok += 1;
        }
    }
    assert_eq!(
        ok, 30_000,
        "every REGISTER answered 200 while a subscriber stalled"
    );
    let (_, stats) = get(&server, "/v1/stats");
    assert_eq!(stats["events"]["cut_off"], 1, "{stats}");
    assert_eq!(stats["events"]["subscribers"], 0, "{stats}");
    // Reading now: the stream ends with the cut-off notice.
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut text = Vec::new();
    let _ = stream.take(64 << 20).read_to_end(&mut text);
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.contains("event: cut-off"),
        "no cut-off notice ({} bytes)",
        text.len()
    );
    eprintln!(
        "30,000 REGISTERs in {:?} with a stalled subscriber",
        started.elapsed()
    );
}

#[test]
fn metrics_parse_as_prometheus_text() {
    let server = Server::start(&["--domain", DOMAIN]);
    let client = server.client();
    register(&client, "alice", &["<sip:alice@192.0.2.1>"], &[]);
    let bad = Req::register(&client, "alice", "other.example").contact("<sip:a@192.0.2.1>");
    assert_eq!(client.request(&bad.build()).status, 404);
    let url = format!("http://{}/metrics", api(&server));
    let text = ureq::get(&url)
        .call()
        .expect("scrape")
        .into_string()
        .expect("text");
    let mut samples = std::collections::HashMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            assert!(
                line.is_empty()
                    || line.starts_with("# HELP ")
                    || line.starts_with("# TYPE ")
                    || line == "# EOF",
                "{line}"
            );
            continue;
        }
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {line}"));
        samples.insert(name.to_string(), value);
    }
    // Summed over the shards (the test server runs one per CPU).
    let sum = |prefix: &str, suffix: &str| -> f64 {
        samples
            .iter()
            .filter(|(k, _)| k.starts_with(prefix) && k.ends_with(suffix))
            .map(|(_, v)| v)
            .sum()
    };
    assert_eq!(sum("corereg_bindings{", ""), 1.0);
    assert_eq!(sum("corereg_sip_replies_total{", "status=\"200\"}"), 1.0);
    assert_eq!(sum("corereg_sip_replies_total{", "status=\"404\"}"), 1.0);
    assert!(samples["corereg_events_total"] >= 1.0);
    assert!(samples.contains_key("corereg_api_request_duration_seconds_count"));
    assert!(samples.contains_key("corereg_shard_overloaded_503_total{shard=\"0\"}"));
}

#[test]
fn a_non_loopback_api_needs_a_token_and_checks_it() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_corereg"))
        .args(["--listen", "127.0.0.1:0", "--http", "0.0.0.0:0"])
        .output()
        .expect("run corereg");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--http-token-file"), "{stderr}");

    let dir = common::workdir("api-token");
    let token_file = dir.join("token");
    common::write_file(&token_file, "s3cret-token\n");
    let token_arg = token_file.to_str().expect("path");
    let server = Server::start(&["--http", "127.0.0.1:0", "--http-token-file", token_arg]);
    let url = format!("http://{}/v1/stats", api(&server));
    for header in [
        None,
        Some("Bearer wrong"),
        Some("Bearer s3cret-tokeN"),
        Some("s3cret-token"),
    ] {
        let mut request = ureq::get(&url);
        if let Some(h) = header {
            request = request.set("Authorization", h);
        }
        match request.call() {
            Err(ureq::Error::Status(401, r)) => {
                assert!(r
                    .header("WWW-Authenticate")
                    .is_some_and(|h| h.starts_with("Bearer")));
            }
            other => panic!("{header:?}: {:?}", other.map(|r| r.status())),
        }
    }
    let ok = ureq::get(&url)
        .set("Authorization", "Bearer s3cret-token")
        .call()
        .expect("token accepted");
    assert_eq!(ok.status(), 200);
}

#[test]
fn idle_connections_are_closed_and_cannot_hold_the_connection_limit() {
    let server = Server::start(&[
        "--http-max-connections",
        "2",
        "--http-header-timeout-s",
        "1",
    ]);
    // Two clients that connect and send nothing (one a byte short of a request line) take both slots.
    let idle: Vec<_> = (0..2)
        .map(|_| std::net::TcpStream::connect(api(&server)).expect("connect"))
        .collect();
    std::io::Write::write_all(&mut &idle[1], b"GET /healthz HTTP/1.1\r\nHost: x\r").expect("write");
    let started = Instant::now();
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    let url = format!("http://{}/healthz", api(&server));
    let status = agent.get(&url).call().expect("served within 10 s").status();
    assert_eq!(status, 200);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(10),
        "served once an idle connection was closed, after {waited:?}"
    );
    for mut stream in idle {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut rest = Vec::new();
        let read = stream.read_to_end(&mut rest);
        assert!(
            read.is_ok() || read.is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "the server closed the idle connection"
        );
    }
}

/// A minimal HTTP endpoint: answers every POST with 200 and hands each body over.
fn endpoint() -> (SocketAddr, mpsc::Receiver<Value>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut length = 0;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let lower = line.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let _ = tx.send(serde_json::from_slice(&body).expect("JSON body"));
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                    if std::io::Write::write_all(reader.get_mut(), ok).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, rx)
}

#[test]
fn the_webhook_posts_every_change_even_without_the_http_api() {
    let (addr, posts) = endpoint();
    let url = format!("http://{addr}/hook");
    let server = Server::start(&["--domain", DOMAIN, "--http", "none", "--webhook", &url]);
    assert!(server.api.is_none());
    let client = server.client();
    std::thread::sleep(Duration::from_millis(300));
    let req = register(&client, "alice", &["<sip:alice@192.0.2.1>"], &[]);
    let unregister = req.next().contact("<sip:alice@192.0.2.1>").expires("0");
    assert_eq!(client.request(&unregister.build()).status, 200);
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while events.len() < 2 && Instant::now() < deadline {
        if let Ok(body) = posts.recv_timeout(Duration::from_millis(200)) {
            events.extend(body["events"].as_array().expect("events").clone());
        }
    }
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds, ["registered", "unregistered"], "{events:?}");
    assert_eq!(events[0]["aor"], "sip:alice@example.com");
    assert_eq!(events[0]["binding"]["contact"], "sip:alice@192.0.2.1");
}

fn ctl(server: &Server, args: &[&str]) -> (Option<i32>, String, String) {
    let api = format!("http://{}", api(server));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_corereg"))
        .arg("ctl")
        .args(["--api", &api])
        .args(args)
        .output()
        .expect("run corereg ctl");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ctl_looks_up_lists_deletes_and_reports() {
    let server = Server::start(&["--domain", DOMAIN]);
    let client = server.client();
    register(
        &client,
        "alice",
        &["<sip:alice@192.0.2.1:5062>;q=0.5"],
        &["Path: <sip:edge.example.net;lr>"],
    );
    let (code, out, err) = ctl(&server, &["lookup", "alice@example.com"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("sip:alice@example.com"), "{out}");
    assert!(out.contains("sip:alice@192.0.2.1:5062"), "{out}");
    assert!(out.contains("q=0.5"), "{out}");
    assert!(out.contains("edge.example.net"), "{out}");
    let (code, out, _) = ctl(&server, &["--json", "lookup", "alice@example.com"]);
    assert_eq!(code, Some(0));
    let json: Value = serde_json::from_str(&out).expect("--json prints the API's JSON");
    assert_eq!(json["bindings"][0]["q"], 0.5);
    let (code, out, _) = ctl(&server, &["list"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("sip:alice@example.com"), "{out}");
    let (code, out, _) = ctl(&server, &["stats"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("shard 0"), "{out}");
    let (code, out, err) = ctl(&server, &["delete", "alice@example.com"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("deleted 1"), "{out}");
    let (code, out, err) = ctl(&server, &["lookup", "alice@example.com"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(format!("{out}{err}").contains("no bindings"), "{out}{err}");
    assert!(sip_fetch(&client, "alice").is_empty());
}
