//! The registrant against real upstreams: corereg A registers its accounts to corereg B running with
//! `--auth required`; a socket that never answers; one that answers 503.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::digest::{start_auth_server, users_csv};
use common::{workdir, write_file, Server};
use serde_json::Value;

const DOMAIN: &str = "example.com";

fn call(api: SocketAddr, method: &str, path: &str) -> (u16, Value) {
    common::http(api, method, path)
}

/// The state of A's registrant for `aor` (None: not listed).
fn state(a: &Server, aor: &str) -> Option<(u64, Value)> {
    let (status, body) = call(
        a.api.expect("api"),
        "GET",
        &format!("/v1/registrants?aor={}", enc(aor)),
    );
    assert_eq!(status, 200, "{body}");
    let r = body["registrants"].as_array()?.first()?.clone();
    Some((r["state"].as_u64()?, r))
}

fn enc(s: &str) -> String {
    s.replace(':', "%3A").replace('@', "%40")
}

/// Waits until A's registrant for `aor` is in state `want`.
fn wait_state(a: &Server, aor: &str, want: u64, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let now = state(a, aor);
        if let Some((s, r)) = &now {
            if *s == want {
                return r.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "{aor}: state {want} not reached within {within:?}: {now:?}\nA's log:\n{}",
            a.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The contacts B holds for `aor`.
fn bindings(b: &Server, aor: &str) -> Vec<String> {
    let (status, body) = call(
        b.api.expect("api"),
        "GET",
        &format!("/v1/aors/{}", enc(aor)),
    );
    if status == 404 {
        return Vec::new();
    }
    assert_eq!(status, 200, "{body}");
    body["bindings"]
        .as_array()
        .expect("bindings")
        .iter()
        .map(|b| b["contact"].as_str().expect("contact").to_string())
        .collect()
}

fn wait_bindings(b: &Server, aor: &str, want: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = bindings(b, aor);
        if now.len() == want {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "{aor}: {want} bindings expected, B has {now:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Follows an event stream (`/v1/registrants/events`, or `/v1/events` where they join the binding
/// changes): each `registrant` event's JSON data, in order.
fn follow_events(api: SocketAddr, path: &str) -> std::sync::mpsc::Receiver<Value> {
    use std::io::BufRead;
    let response = ureq::get(&format!("http://{api}{path}"))
        .call()
        .expect("subscribe");
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut name = String::new();
        for line in std::io::BufReader::new(response.into_reader()).lines() {
            let Ok(line) = line else { return };
            if let Some(n) = line.strip_prefix("event: ") {
                name = n.to_string();
            } else if let Some(data) = line.strip_prefix("data: ") {
                if name == "registrant"
                    && tx.send(serde_json::from_str(data).expect("json")).is_err()
                {
                    return;
                }
            }
        }
    });
    rx
}

/// The first `n` (from, to, status) changes of `aor` a stream gives within 5 s.
fn changes_of(
    events: &std::sync::mpsc::Receiver<Value>,
    aor: &str,
    n: usize,
) -> Vec<(Option<u64>, Option<u64>, Option<u64>)> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen.len() < n && Instant::now() < deadline {
        if let Ok(e) = events.recv_timeout(Duration::from_millis(100)) {
            if e["aor"] == aor {
                seen.push((e["from"].as_u64(), e["to"].as_u64(), e["status"].as_u64()));
            }
        }
    }
    seen
}

fn row(user: &str, password: &str, proxy: SocketAddr) -> String {
    format!(
        "[[registrant]]\nregistrar = \"sip:{DOMAIN}\"\nproxy = \"sip:{proxy}\"\naor = \"sip:{user}@{DOMAIN}\"\n\
binding_URI = \"sip:{user}@127.0.0.1:5999\"\nusername = \"{user}\"\npassword = \"{password}\"\nexpiry = 300\n\n"
    )
}

/// A UDP upstream that answers every request with `status` (None: never answers), until dropped.
struct Upstream {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    received: Arc<std::sync::atomic::AtomicUsize>,
}

impl Upstream {
    fn start(status: Option<u16>) -> Upstream {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let addr = socket.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (s, r) = (stop.clone(), received.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while !s.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                r.fetch_add(1, Ordering::Relaxed);
                let Some(status) = status else { continue };
                let text = String::from_utf8_lossy(&buf[..n]);
                let mut reply = format!("SIP/2.0 {status} Service Unavailable\r\n");
                for line in text.split("\r\n") {
                    let name = line.split(':').next().unwrap_or("").to_ascii_lowercase();
                    if ["via", "from", "to", "call-id", "cseq"].contains(&name.as_str()) {
                        reply += line;
                        reply += "\r\n";
                    }
                }
                reply += "Content-Length: 0\r\n\r\n";
                let _ = socket.send_to(reply.as_bytes(), from);
            }
        });
        Upstream {
            addr,
            stop,
            received,
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn start_b(dir: &Path) -> Server {
    let credentials = dir.join("users.csv");
    write_file(
        &credentials,
        &users_csv(&[
            ("trunk1".into(), "pw1".into()),
            ("trunk2".into(), "pw2".into()),
            ("trunk5".into(), "pw5".into()),
        ]),
    );
    start_auth_server(1, DOMAIN, &credentials, &[])
}

#[test]
fn registers_to_an_authenticating_corereg_disables_reloads_and_unregisters_at_shutdown() {
    let dir = workdir("registrant");
    let b = start_b(&dir);
    let registrants = dir.join("registrants.toml");
    write_file(
        &registrants,
        &(row("trunk1", "pw1", b.addr) + &row("trunk2", "not-the-password", b.addr)),
    );
    let mut a = Server::start(&[
        "--cores",
        "2",
        "--registrants",
        registrants.to_str().expect("utf-8"),
        "--registrant-spread",
        "1",
    ]);
    let r = wait_state(&a, "sip:trunk1@example.com", 3, Duration::from_secs(10));
    assert_eq!(r["last_status"], 200);
    assert_eq!(r["state_name"], "REGISTERED_STATE");
    assert!(r["next_register"].as_u64().is_some());
    assert!(r.get("password").is_none(), "never listed");
    assert_eq!(
        wait_bindings(&b, "sip:trunk1@example.com", 1),
        ["sip:trunk1@127.0.0.1:5999"]
    );
    // Wrong password: WRONG_CREDENTIALS, nothing bound.
    let r = wait_state(&a, "sip:trunk2@example.com", 6, Duration::from_secs(10));
    assert_eq!(r["last_status"], 401);
    assert!(bindings(&b, "sip:trunk2@example.com").is_empty());
    assert!(
        !a.log_text().contains("not-the-password"),
        "passwords are never logged"
    );

    // Counted by state in /metrics.
    let metrics = ureq::get(&format!("http://{}/metrics", a.api.expect("api")))
        .call()
        .expect("metrics")
        .into_string()
        .expect("text");
    assert!(
        metrics.contains("corereg_registrants{state=\"3\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("corereg_registrants{state=\"6\"} 1"),
        "{metrics}"
    );

    // Filters.
    let (_, all) = call(a.api.expect("api"), "GET", "/v1/registrants");
    assert_eq!(all["count"], 2);
    let (_, none) = call(
        a.api.expect("api"),
        "GET",
        "/v1/registrants?registrar=sip%3Aother",
    );
    assert_eq!(none["count"], 0);
    let (_, by_contact) = call(
        a.api.expect("api"),
        "GET",
        "/v1/registrants?contact=sip%3Atrunk1%40127.0.0.1%3A5999",
    );
    assert_eq!(by_contact["count"], 1);

    // The state changes, as events.
    let events = follow_events(a.api.expect("api"), "/v1/registrants/events");
    let changes = follow_events(a.api.expect("api"), "/v1/events");

    // Disable removes the binding on B; enable brings it back.
    let (status, body) = call(
        a.api.expect("api"),
        "POST",
        "/v1/registrants/disable?aor=sip%3Atrunk1%40example.com",
    );
    assert_eq!(status, 200, "{body}");
    wait_state(&a, "sip:trunk1@example.com", 0, Duration::from_secs(5));
    wait_bindings(&b, "sip:trunk1@example.com", 0);
    let (status, _) = call(a.api.expect("api"), "POST", "/v1/registrants/disable");
    assert_eq!(status, 400, "a filter is required");
    let (status, body) = call(
        a.api.expect("api"),
        "POST",
        "/v1/registrants/enable?aor=sip%3Atrunk1%40example.com",
    );
    assert_eq!(status, 200, "{body}");
    wait_state(&a, "sip:trunk1@example.com", 3, Duration::from_secs(5));
    wait_bindings(&b, "sip:trunk1@example.com", 1);
    let seen = changes_of(&events, "sip:trunk1@example.com", 4);
    assert_eq!(
        changes_of(&changes, "sip:trunk1@example.com", 4),
        seen,
        "the binding change stream carries the same state changes"
    );
    assert_eq!(
        seen,
        [
            (Some(3), Some(8), None),
            (Some(8), Some(0), Some(200)),
            (Some(0), Some(1), None),
            (Some(1), Some(3), Some(200)),
        ],
        "disable, then enable (the credentials cached: no new challenge)"
    );

    // A row added to the source is picked up by a reload.
    // trunk5 reaches B by a host name (`localhost`), which the shell resolves.
    write_file(
        &registrants,
        &(row("trunk1", "pw1", b.addr)
            + &row("trunk2", "not-the-password", b.addr)
            + &row("trunk5", "pw5", b.addr).replace(
                &format!("proxy = \"sip:{}\"", b.addr),
                &format!("proxy = \"sip:localhost:{}\"", b.addr.port()),
            )),
    );
    let (status, report) = call(a.api.expect("api"), "POST", "/v1/registrants/reload");
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["added"], 1, "{report}");
    assert_eq!(report["changed"], 0, "{report}");
    let r = wait_state(&a, "sip:trunk5@example.com", 3, Duration::from_secs(10));
    assert_eq!(r["proxy"], format!("sip:localhost:{}", b.addr.port()));
    wait_bindings(&b, "sip:trunk5@example.com", 1);

    // The same from a terminal.
    let ctl = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_corereg"))
            .args(["ctl", "--api", &format!("http://{}", a.api.expect("api"))])
            .args(args)
            .output()
            .expect("corereg ctl");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let listed = ctl(&["registrants", "--aor", "sip:trunk5@example.com"]);
    assert!(
        listed.starts_with("sip:trunk5@example.com state=3 (REGISTERED_STATE) last=200 next=in "),
        "{listed}"
    );
    assert_eq!(
        ctl(&["registrants", "disable", "--aor", "sip:trunk5@example.com"]).trim(),
        "disabled 1 registrant(s)"
    );
    wait_bindings(&b, "sip:trunk5@example.com", 0);
    assert_eq!(
        ctl(&["registrants", "enable", "--aor", "sip:trunk5@example.com"]).trim(),
        "enabled 1 registrant(s)"
    );
    wait_bindings(&b, "sip:trunk5@example.com", 1);
    assert!(ctl(&["registrants", "reload"])
        .starts_with("reloaded: 3 rows, 0 added, 0 changed, 0 removed"));

    // Shutdown unregisters what is registered.
    let status = a.terminate(Duration::from_secs(10)).expect("A exits");
    assert!(status.success(), "{status:?}\n{}", a.log_text());
    wait_bindings(&b, "sip:trunk1@example.com", 0);
    wait_bindings(&b, "sip:trunk5@example.com", 0);
}

#[test]
fn a_silent_upstream_times_out_and_one_answering_503_is_a_registrar_error() {
    let dir = workdir("registrant-failures");
    let silent = Upstream::start(None);
    let busy = Upstream::start(Some(503));
    let registrants = dir.join("registrants.csv");
    write_file(
        &registrants,
        &format!(
            "registrar,proxy,aor,binding_URI,username,password,expiry,state\n\
sip:{DOMAIN},sip:{},sip:silent@{DOMAIN},sip:silent@127.0.0.1:5999,silent,pw,300,0\n\
sip:{},,sip:busy@{DOMAIN},sip:busy@127.0.0.1:5999,,,300,0\n\
sip:{},,sip:off@{DOMAIN},sip:off@127.0.0.1:5999,,,300,1\n\
not-a-uri,,sip:bad@{DOMAIN},sip:bad@127.0.0.1:5999,,,300,0\n",
            silent.addr, busy.addr, busy.addr
        ),
    );
    let mut a = Server::start(&[
        "--registrants",
        registrants.to_str().expect("utf-8"),
        "--registrant-spread",
        "0",
        "--registrant-shutdown-timeout",
        "1",
        "--registrant-retry-min",
        "1",
    ]);
    assert!(
        a.log_text()
            .contains("line 5: column registrar is not a usable SIP URI"),
        "the bad row is reported with its line:\n{}",
        a.log_text()
    );
    let r = wait_state(&a, "sip:busy@example.com", 7, Duration::from_secs(10));
    assert_eq!(r["last_status"], 503);
    let (s, r) = state(&a, "sip:off@example.com").expect("listed");
    assert_eq!((s, r["enabled"].as_bool()), (0, Some(false)));
    // Registering (retransmitting) until Timer F, then REGISTER_TIMEOUT and a retry scheduled.
    assert_eq!(state(&a, "sip:silent@example.com").expect("listed").0, 1);
    let r = wait_state(&a, "sip:silent@example.com", 4, Duration::from_secs(40));
    assert_eq!(r["last_status"], 408);
    assert!(
        r["next_register"].as_u64().is_some(),
        "a retry is scheduled: {r}"
    );
    let sent = silent.received.load(Ordering::Relaxed);
    assert!(
        (9..=12).contains(&sent),
        "Timer E retransmissions: {sent} datagrams"
    );
    // The retry (1 s later here): REGISTERING again, a new REGISTER sent.
    wait_state(&a, "sip:silent@example.com", 1, Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(2);
    while silent.received.load(Ordering::Relaxed) == sent && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        silent.received.load(Ordering::Relaxed) > sent,
        "the retry was sent"
    );
    // The 503 is retried too (1 s, 2 s, 4 s, ...), and answered 503 again.
    assert!(busy.received.load(Ordering::Relaxed) >= 2, "503 retried");
    // The shutdown's unREGISTER to the silent upstream is bounded by the timeout.
    let started = Instant::now();
    let status = a.terminate(Duration::from_secs(10)).expect("A exits");
    assert!(status.success());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// An OpenSIPS `registrant` table in SQLite, NULLs included: registered to B; disabling writes `state`
/// back; a row edited to `state = 1` and reloaded unregisters; a removed row unregisters.
#[test]
fn an_opensips_sqlite_table_registers_and_state_is_written_back() {
    let dir = workdir("registrant-sqlite");
    let b = start_b(&dir);
    let db = dir.join("opensips.sqlite");
    let conn = rusqlite::Connection::open(&db).expect("create");
    conn.execute_batch(
        "CREATE TABLE registrant (
            id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
            registrar CHAR(255) DEFAULT '' NOT NULL,
            proxy CHAR(255) DEFAULT NULL,
            aor CHAR(255) DEFAULT '' NOT NULL,
            third_party_registrant CHAR(255) DEFAULT NULL,
            username CHAR(64) DEFAULT NULL,
            password CHAR(64) DEFAULT NULL,
            binding_URI CHAR(255) DEFAULT '' NOT NULL,
            binding_params CHAR(64) DEFAULT NULL,
            expiry INTEGER DEFAULT NULL,
            forced_socket CHAR(64) DEFAULT NULL,
            cluster_shtag CHAR(64) DEFAULT NULL,
            state INTEGER DEFAULT 0 NOT NULL,
            CONSTRAINT registrant_registrant_idx UNIQUE (aor, binding_URI, registrar));",
    )
    .expect("schema");
    for user in ["trunk1", "trunk2"] {
        let password = if user == "trunk1" { "pw1" } else { "pw2" };
        conn.execute(
            "INSERT INTO registrant (registrar, proxy, aor, username, password, binding_URI) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            [
                format!("sip:{DOMAIN}"),
                format!("sip:{}", b.addr),
                format!("sip:{user}@{DOMAIN}"),
                user.to_string(),
                password.to_string(),
                format!("sip:{user}@127.0.0.1:5999"),
            ],
        )
        .expect("row");
    }
    let source = format!("sqlite:{}", db.display());
    let a = Server::start(&["--registrants", &source, "--registrant-spread", "0"]);
    for aor in ["sip:trunk1@example.com", "sip:trunk2@example.com"] {
        let r = wait_state(&a, aor, 3, Duration::from_secs(10));
        assert_eq!(r["expiry"], Value::Null, "NULL expiry: the default");
        wait_bindings(&b, aor, 1);
    }
    let api = a.api.expect("api");
    let (status, body) = call(
        api,
        "POST",
        "/v1/registrants/disable?aor=sip%3Atrunk1%40example.com",
    );
    assert_eq!(status, 200, "{body}");
    wait_bindings(&b, "sip:trunk1@example.com", 0);
    let written: i64 = conn
        .query_row(
            "SELECT state FROM registrant WHERE aor = 'sip:trunk1@example.com'",
            [],
            |r| r.get(0),
        )
        .expect("state");
    assert_eq!(written, 1, "written back");
    let (status, _) = call(
        api,
        "POST",
        "/v1/registrants/enable?aor=sip%3Atrunk1%40example.com",
    );
    assert_eq!(status, 200);
    wait_bindings(&b, "sip:trunk1@example.com", 1);
    // Edited in the table: trunk2 disabled; then trunk1's row deleted.
    conn.execute(
        "UPDATE registrant SET state = 1 WHERE aor = 'sip:trunk2@example.com'",
        [],
    )
    .expect("update");
    let (_, report) = call(api, "POST", "/v1/registrants/reload");
    assert_eq!(report["changed"], 1, "{report}");
    wait_bindings(&b, "sip:trunk2@example.com", 0);
    assert_eq!(
        wait_state(&a, "sip:trunk2@example.com", 0, Duration::from_secs(5))["enabled"],
        false
    );
    conn.execute(
        "DELETE FROM registrant WHERE aor = 'sip:trunk1@example.com'",
        [],
    )
    .expect("delete");
    let (_, report) = call(
        api,
        "POST",
        "/v1/registrants/reload?aor=sip%3Atrunk1%40example.com",
    );
    assert_eq!(report["removed"], 1, "{report}");
    wait_bindings(&b, "sip:trunk1@example.com", 0);
    assert!(state(&a, "sip:trunk1@example.com").is_none());
    // SIGHUP reloads too: a row inserted registers.
    conn.execute(
        "INSERT INTO registrant (registrar, proxy, aor, username, password, binding_URI) VALUES (?1, ?2, ?3, 'trunk5', 'pw5', ?4)",
        [
            format!("sip:{DOMAIN}"),
            format!("sip:{}", b.addr),
            format!("sip:trunk5@{DOMAIN}"),
            "sip:trunk5@127.0.0.1:5999".to_string(),
        ],
    )
    .expect("insert");
    // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
    unsafe { libc::kill(a.pid() as libc::pid_t, libc::SIGHUP) };
    wait_state(&a, "sip:trunk5@example.com", 3, Duration::from_secs(10));
    wait_bindings(&b, "sip:trunk5@example.com", 1);
    assert!(
        a.log_text().contains(
            "SIGHUP: registrants reloaded: 2 rows, 1 added, 0 changed, 0 removed, 0 skipped"
        ),
        "{}",
        a.log_text()
    );
}
