//! What an operator reads: the error of a failed start, the log lines of a SIGHUP reload and of a shutdown,
//! and the output of the helper commands, each from the real binary.

mod common;

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{workdir, write_file, KillOnDrop, Req, Server};
use corereg::auth::credentials::CredentialStore;
use corereg::sip::digest::{ha1_hex, Algorithm};

const DOMAIN: &str = "example.com";

fn corereg() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_corereg"));
    command.env_remove("RUST_LOG").stdin(Stdio::null());
    command
}

/// Polls the server log for `needle` (bounded); returns the first line holding it.
fn wait_for_line(server: &Server, needle: &str, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    loop {
        let log = server.log_text();
        if let Some(line) = log.lines().find(|l| l.contains(needle)) {
            return Some(line.to_string());
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The message of a log line: what follows tracing's `corereg: ` target prefix.
fn message(line: &str) -> &str {
    line.split_once("corereg: ").map_or(line, |(_, m)| m)
}

#[test]
fn a_port_in_use_is_reported_once_with_its_address() {
    // Bound without SO_REUSEPORT: corereg's socket (with it) cannot join.
    let holder = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = holder.local_addr().expect("addr").to_string();
    let child = corereg()
        .args([
            "--listen",
            &addr,
            "--cores",
            "1",
            "--log",
            "info",
            "--http",
            "none",
            "--data-dir",
            "none",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn corereg");
    let mut child = KillOnDrop(child);
    let status = child.wait_within("corereg on a port in use", Duration::from_secs(20));
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.0.stderr.as_mut().expect("stderr"), &mut stderr)
        .expect("read stderr");
    assert!(!status.success(), "started on a port in use:\n{stderr}");
    let in_use = std::io::Error::from_raw_os_error(libc::EADDRINUSE).to_string();
    let line = stderr
        .lines()
        .find(|l| l.contains(&in_use))
        .unwrap_or_else(|| panic!("no {in_use:?} in:\n{stderr}"));
    assert_eq!(
        stderr.matches(&in_use).count(),
        1,
        "the OS error must be said once:\n{stderr}"
    );
    assert!(line.contains(&addr), "the address must be named: {line}");
    drop(holder);
}

#[test]
fn ha1_csv_prints_a_complete_users_file() {
    let output = corereg()
        .args(["ha1", "alice", DOMAIN, "secret", "--csv"])
        .output()
        .expect("run corereg ha1");
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).expect("utf-8");
    let dir = workdir("ha1-csv");
    let path = dir.join("users.csv");
    write_file(&path, &text);
    let store = CredentialStore::load(&path, None)
        .unwrap_or_else(|e| panic!("the printed file must load: {e}\n{text}"));
    assert_eq!(store.len(), 1, "{text}");
    let alice = store
        .lookup(DOMAIN.as_bytes(), b"alice")
        .expect("alice in her realm");
    for alg in [Algorithm::Md5, Algorithm::Sha256] {
        assert_eq!(
            alice.ha1(alg).map(|h| h.expose_hex().to_vec()),
            Some(ha1_hex(alg, "alice", DOMAIN, "secret").into_bytes()),
            "{alg:?}"
        );
    }
    // And the server takes it.
    let mut server = common::digest::start_auth_server(1, DOMAIN, &path, &[]);
    assert!(
        server.log_text().contains("users=1"),
        "{}",
        server.log_text()
    );
    let _ = server.terminate(Duration::from_secs(5));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_sighup_reload_line_reads_as_one_sentence() {
    let dir = workdir("sighup-line");
    let credentials = dir.join("users.csv");
    write_file(&credentials, "username,password\nalice,secret\n");
    let server = common::digest::start_auth_server(1, DOMAIN, &credentials, &[]);
    write_file(
        &credentials,
        "username,password\nalice,secret\nbob,hunter2\n",
    );
    // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet (the Server owns it).
    let rc = unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGHUP) };
    assert_eq!(rc, 0, "kill -HUP");
    let line = wait_for_line(
        &server,
        "SIGHUP: credentials reloaded",
        Duration::from_secs(5),
    )
    .unwrap_or_else(|| panic!("no reload line:\n{}", server.log_text()));
    let message = message(&line);
    assert!(
        message.contains("users=2 (was 1), generation 1, in force on every shard within 200ms"),
        "{message}"
    );
    assert!(!message.contains("  "), "stray spaces: {message:?}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn shutdown_counters_are_key_value_lines() {
    let dir = workdir("stop-lines");
    let credentials = dir.join("users.csv");
    write_file(&credentials, "username,password\nalice,secret\n");
    let mut server = common::digest::start_auth_server(1, DOMAIN, &credentials, &[]);
    // One REGISTER without credentials: challenged.
    let client = server.client();
    let r = client.request(&Req::register(&client, "alice", DOMAIN).build());
    assert_eq!(r.status, 401, "{}", r.raw);
    let status = server
        .terminate(Duration::from_secs(5))
        .expect("stops within 5 s of SIGTERM");
    assert!(status.success(), "{status:?}:\n{}", server.log_text());
    let line = |what: &str| {
        wait_for_line(&server, &format!("shard 0 {what}:"), Duration::from_secs(5))
            .map(|l| message(&l).to_string())
            .unwrap_or_else(|| panic!("no `shard 0 {what}:` line:\n{}", server.log_text()))
    };
    let stopped = line("stopped");
    let registrar = line("registrar");
    let auth = line("auth");
    for l in [&stopped, &registrar, &auth] {
        assert!(
            !l.contains(['{', '(', '"']),
            "not key=value pairs (a Debug struct?): {l}"
        );
    }
    assert!(
        stopped.contains(" datagrams_in=1 handed_off=0 from_peers=0 ")
            && stopped.contains(" replies_out=1 "),
        "{stopped}"
    );
    assert!(
        registrar.starts_with("shard 0 registrar: requests=1 registers_ok=0 replies_4xx=1 "),
        "{registrar}"
    );
    assert!(
        auth.starts_with("shard 0 auth: accepted=0 no_credentials=1 "),
        "{auth}"
    );
    // The multi-shard tests' parser reads the first line.
    let parsed = common::shard_stop_lines(&server.log_text());
    assert_eq!(parsed.len(), 1);
    assert_eq!(parsed[0].get("bindings"), 0);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
