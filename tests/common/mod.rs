//! Shared helpers for the process-level tests: run the real `corereg` binary on a loopback ephemeral port,
//! talk to it over UDP with timeouts, and read its responses.
#![allow(dead_code)] // each test crate uses a different subset

pub mod digest;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the binary may take to log its start-up line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long to wait for an answer that must come.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(3);
/// How long to wait before concluding that no answer will come.
pub const SILENCE_TIMEOUT: Duration = Duration::from_millis(300);

/// The running binary. Dropping it kills the process (tests never leak servers, even when they panic).
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// The HTTP API's address (each test server gets an ephemeral port unless its args name `--http`).
    pub api: Option<SocketAddr>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `corereg --listen 127.0.0.1:0 <args>` and waits for its "listening on udp ADDR" line.
    pub fn start(args: &[&str]) -> Server {
        Server::start_at("127.0.0.1:0", args)
    }

    /// Starts `corereg --listen LISTEN <args>` and waits for its "listening on udp ADDR" line.
    pub fn start_at(listen: &str, args: &[&str]) -> Server {
        Server::start_with(listen, args, None, &[])
    }

    /// Starts `corereg --listen 127.0.0.1:0 <args>` in directory `cwd`; without `--data-dir` in `args` it
    /// keeps the default data directory (`./corereg-data` in `cwd`).
    pub fn start_in(cwd: &Path, args: &[&str]) -> Server {
        Server::start_with("127.0.0.1:0", args, Some(cwd), &[])
    }

    /// Starts `corereg --listen LISTEN <args>` with extra environment variables.
    pub fn start_with_env(listen: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_with(listen, args, None, env)
    }

    fn start_with(listen: &str, args: &[&str], cwd: Option<&Path>, env: &[(&str, &str)]) -> Server {
        let http: &[&str] = if args.iter().any(|a| a.starts_with("--http")) {
            &[]
        } else {
            &["--http", "127.0.0.1:0"]
        };
        // Memory only unless the test gives a data directory (the default one would be shared by every test).
        let data: &[&str] = if cwd.is_some() || args.iter().any(|a| a.starts_with("--data-dir")) {
            &[]
        } else {
            &["--data-dir", "none"]
        };
        let mut command = Command::new(env!("CARGO_BIN_EXE_corereg"));
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        let mut child = command
            .args(["--listen", listen, "--log", "info"])
            .args(http)
            .args(data)
            .args(args)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn corereg");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        // Both streams are drained for the process' whole life (a full pipe would block the server).
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let log = log.clone();
            let addr_tx = addr_tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    // Logged before the start-up address is handed over, so a test that reads the log as
                    // soon as `start` returns sees the start-up line.
                    let addr = parse_listening(&line);
                    log.lock().expect("log lock").push(line);
                    if let Some(addr) = addr {
                        let _ = addr_tx.send(addr);
                    }
                }
            });
        }
        let mut server = Server {
            child,
            addr: "0.0.0.0:0".parse().expect("addr"),
            api: None,
            log,
        };
        match addr_rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(addr) => {
                server.addr = addr;
                // Logged before the UDP line, so it is in the log by now.
                server.api = server.log_text().lines().find_map(parse_api);
            }
            Err(_) => panic!(
                "corereg did not log its start-up line within {STARTUP_TIMEOUT:?}; status {:?}; log:\n{}",
                server.child.try_wait(),
                server.log_text()
            ),
        }
        server
    }

    /// The process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    /// The process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        self.signal_term();
        self.wait_exit(within)
    }

    /// Sends SIGTERM only (a second one forces the exit: use [`Server::wait_exit`] after it).
    pub fn signal_term(&self) {
        // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
    }

    /// Waits (bounded) for the exit status.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn client(&self) -> Client {
        Client::new(self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// "... HTTP API on http://127.0.0.1:40124 ..." -> the address.
fn parse_api(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("HTTP API on http://")? + "HTTP API on http://".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// "... listening on udp 127.0.0.1:40123 ..." -> the address.
fn parse_listening(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening on udp ")? + "listening on udp ".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// A UDP client on its own ephemeral loopback port.
pub struct Client {
    pub socket: UdpSocket,
    pub server: SocketAddr,
    pub local: SocketAddr,
}

impl Client {
    pub fn new(server: SocketAddr) -> Client {
        Client::at(server, "127.0.0.1")
    }

    /// A client on an ephemeral port of loopback address `ip` (the whole 127.0.0.0/8 is loopback).
    pub fn at(server: SocketAddr, ip: &str) -> Client {
        let socket = UdpSocket::bind((ip, 0)).expect("bind client");
        let local = socket.local_addr().expect("client addr");
        Client {
            socket,
            server,
            local,
        }
    }

    pub fn send(&self, datagram: &[u8]) {
        self.socket.send_to(datagram, self.server).expect("send_to");
    }

    /// The next datagram from the server, or None after `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65_536];
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            self.socket
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("timeout");
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) if from == self.server => return Some(buf[..n].to_vec()),
                Ok(_) => continue, // not from the server under test
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None
                }
                Err(e) => panic!("recv_from: {e}"),
            }
        }
    }

    /// Sends and expects a parsable response within REPLY_TIMEOUT.
    pub fn request(&self, datagram: &[u8]) -> Response {
        self.send(datagram);
        let raw = self.recv(REPLY_TIMEOUT).unwrap_or_else(|| {
            panic!(
                "no response within {REPLY_TIMEOUT:?} to:\n{}",
                String::from_utf8_lossy(datagram)
            )
        });
        Response::parse(&raw)
            .unwrap_or_else(|| panic!("unparsable response:\n{}", String::from_utf8_lossy(&raw)))
    }

    /// Sends and expects no answer within SILENCE_TIMEOUT; returns the unexpected answer otherwise.
    pub fn expect_silence(&self, datagram: &[u8]) -> Result<(), Response> {
        self.send(datagram);
        match self.recv(SILENCE_TIMEOUT) {
            None => Ok(()),
            Some(raw) => Err(Response::parse(&raw).unwrap_or_else(|| Response::unparsable(&raw))),
        }
    }
}

/// A SIP response, read just enough for the tests.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    /// (name as sent, value), in order; folded lines unfolded.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub raw: String,
}

/// Compact header forms (RFC 3261 §7.3.3), lower-case.
fn long_name(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    match lower.as_str() {
        "v" => "via",
        "f" => "from",
        "t" => "to",
        "i" => "call-id",
        "m" => "contact",
        "l" => "content-length",
        "k" => "supported",
        "c" => "content-type",
        "e" => "content-encoding",
        "s" => "subject",
        _ => return lower,
    }
    .to_string()
}

impl Response {
    pub fn parse(raw: &[u8]) -> Option<Response> {
        let text = String::from_utf8_lossy(raw).into_owned();
        let (head, body) = match text.find("\r\n\r\n") {
            Some(i) => (&text[..i], raw.get(i + 4..).unwrap_or_default().to_vec()),
            None => (text.as_str(), Vec::new()),
        };
        let mut lines = head.split("\r\n");
        let status_line = lines.next()?;
        let rest = status_line.strip_prefix("SIP/2.0 ")?;
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let status = code.parse().ok()?;
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in lines {
            if line.starts_with(' ') || line.starts_with('\t') {
                let last = headers.last_mut()?;
                last.1.push(' ');
                last.1.push_str(line.trim());
                continue;
            }
            let (name, value) = line.split_once(':')?;
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
        Some(Response {
            status,
            reason: reason.to_string(),
            headers,
            body,
            raw: text,
        })
    }

    fn unparsable(raw: &[u8]) -> Response {
        Response {
            status: 0,
            reason: String::new(),
            headers: Vec::new(),
            body: Vec::new(),
            raw: String::from_utf8_lossy(raw).into_owned(),
        }
    }

    /// Every value of header `name` (long or compact form, any case), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        let want = long_name(name);
        self.headers
            .iter()
            .filter(|(n, _)| long_name(n) == want)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).into_iter().next()
    }

    /// Comma-separated list values of every `name` header (commas inside <>, quotes are not separators).
    pub fn list(&self, name: &str) -> Vec<String> {
        self.header_all(name)
            .into_iter()
            .flat_map(split_list)
            .collect()
    }

    /// The Contact values as (URI, expires param).
    pub fn contacts(&self) -> Vec<(String, Option<u64>)> {
        self.list("Contact")
            .into_iter()
            .map(|c| {
                let (uri, params) = match (c.find('<'), c.find('>')) {
                    (Some(a), Some(b)) if a < b => {
                        (c[a + 1..b].to_string(), c[b + 1..].to_string())
                    }
                    _ => match c.split_once(';') {
                        Some((u, p)) => (u.to_string(), format!(";{p}")),
                        None => (c.clone(), String::new()),
                    },
                };
                let expires = params.split(';').find_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    k.trim()
                        .eq_ignore_ascii_case("expires")
                        .then(|| v.trim().parse().ok())
                        .flatten()
                });
                (uri, expires)
            })
            .collect()
    }

    /// The tag parameter of To, if any.
    pub fn to_tag(&self) -> Option<String> {
        let to = self.header("To")?;
        let after = match to.find('>') {
            Some(i) => &to[i..],
            None => to,
        };
        after.split(';').skip(1).find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("tag")
                .then(|| v.trim().to_string())
        })
    }
}

fn split_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0);
    let bytes = value.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b'<' if !quoted => depth += 1,
            b'>' if !quoted => depth -= 1,
            b',' if !quoted && depth == 0 => {
                out.push(value[start..i].trim().to_string());
                start = i + 1;
            }
            _ => {}
        }
    }
    let last = value[start..].trim();
    if !last.is_empty() {
        out.push(last.to_string());
    }
    out
}

static UNIQUE: AtomicU64 = AtomicU64::new(1);

/// A process-unique token (branches, tags, Call-IDs).
pub fn unique() -> u64 {
    UNIQUE.fetch_add(1, Ordering::Relaxed)
}

/// A REGISTER (or other request) builder with sane defaults; `build()` gives the bytes.
#[derive(Clone, Debug)]
pub struct Req {
    pub method: String,
    pub ruri: String,
    pub aor: String,
    pub via: String,
    pub call_id: String,
    pub from_tag: String,
    pub cseq: u32,
    pub cseq_method: Option<String>,
    pub contacts: Vec<String>,
    pub expires: Option<String>,
    pub extra: Vec<String>,
    pub body: String,
}

impl Req {
    /// A REGISTER for `user@domain` from `client`, without Contact (a fetch) until `contact()` adds one.
    pub fn register(client: &Client, user: &str, domain: &str) -> Req {
        let n = unique();
        Req {
            method: "REGISTER".into(),
            ruri: format!("sip:{domain}"),
            aor: format!("sip:{user}@{domain}"),
            via: format!("SIP/2.0/UDP {};branch=z9hG4bK-test-{n}", client.local),
            call_id: format!("call-{n}-{}@test", std::process::id()),
            from_tag: format!("ft{n}"),
            cseq: 1,
            cseq_method: None,
            contacts: Vec::new(),
            expires: None,
            extra: Vec::new(),
            body: String::new(),
        }
    }

    pub fn method(mut self, method: &str, ruri: &str) -> Req {
        self.method = method.into();
        self.ruri = ruri.into();
        self
    }

    pub fn contact(mut self, value: &str) -> Req {
        self.contacts.push(value.into());
        self
    }

    pub fn expires(mut self, value: &str) -> Req {
        self.expires = Some(value.into());
        self
    }

    pub fn header(mut self, line: &str) -> Req {
        self.extra.push(line.into());
        self
    }

    pub fn cseq(mut self, cseq: u32) -> Req {
        self.cseq = cseq;
        self
    }

    /// The next request of the same registration (same Call-ID, CSeq + 1, fresh branch).
    pub fn next(&self) -> Req {
        let mut r = self.clone();
        r.cseq += 1;
        r.via = match self.via.split_once(";branch=") {
            Some((sent_by, _)) => format!("{sent_by};branch=z9hG4bK-test-{}", unique()),
            None => self.via.clone(),
        };
        r.contacts.clear();
        r.expires = None;
        r.extra.clear();
        r
    }

    pub fn branch(&self) -> &str {
        self.via.split_once(";branch=").map_or("", |(_, b)| b)
    }

    pub fn build(&self) -> Vec<u8> {
        let mut s = format!("{} {} SIP/2.0\r\n", self.method, self.ruri);
        s += &format!("Via: {}\r\n", self.via);
        s += "Max-Forwards: 70\r\n";
        s += &format!("From: <{}>;tag={}\r\n", self.aor, self.from_tag);
        s += &format!("To: <{}>\r\n", self.aor);
        s += &format!("Call-ID: {}\r\n", self.call_id);
        s += &format!(
            "CSeq: {} {}\r\n",
            self.cseq,
            self.cseq_method.as_deref().unwrap_or(&self.method)
        );
        for c in &self.contacts {
            s += &format!("Contact: {c}\r\n");
        }
        if let Some(e) = &self.expires {
            s += &format!("Expires: {e}\r\n");
        }
        for h in &self.extra {
            s += h;
            s += "\r\n";
        }
        s += &format!("Content-Length: {}\r\n\r\n{}", self.body.len(), self.body);
        s.into_bytes()
    }
}

/// Asserts the process still registers a fresh binding (used after every hostile datagram).
pub fn assert_still_serving(server: &Server, context: &str) {
    let client = server.client();
    let contact = format!("<sip:alive@{}>", client.local);
    let req =
        Req::register(&client, &format!("alive{}", unique()), "example.com").contact(&contact);
    client.send(&req.build());
    let Some(raw) = client.recv(REPLY_TIMEOUT) else {
        panic!(
            "no answer to a valid REGISTER after {context}; log:\n{}",
            server.log_text()
        )
    };
    let resp = Response::parse(&raw).unwrap_or_else(|| Response::unparsable(&raw));
    assert_eq!(
        resp.status, 200,
        "valid REGISTER after {context} got:\n{}",
        resp.raw
    );
}

/// The contacts bound to `user@domain` on a server without `--auth required`: a REGISTER without Contact.
/// (With authentication: `digest::fetch`.)
pub fn fetch_unauthenticated(server: &Server, domain: &str, user: &str) -> Vec<String> {
    let client = server.client();
    let r = client.request(&Req::register(&client, user, domain).build());
    assert_eq!(
        r.status,
        200,
        "fetch of {user}@{domain}'s bindings:\n{}\nlog:\n{}",
        r.raw,
        server.log_text()
    );
    r.contacts().into_iter().map(|(uri, _)| uri).collect()
}

/// Path of the RFC 4475 corpus, vendored in `tests/data/rfc4475/` (see its README for the origin).
pub fn rfc4475_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/rfc4475"))
}

/// CPUs this test process may use (the affinity mask): `corereg --cores N` accepts at most this many.
pub fn usable_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// One "shard N stopped: key=value ..." line of the shutdown log, as numbers (non-numeric values skipped).
#[derive(Clone, Debug, Default)]
pub struct ShardStopLine {
    pub shard: usize,
    pub values: std::collections::HashMap<String, u64>,
}

impl ShardStopLine {
    /// The counter `key`; panics when the line lacks it (the log format is part of the contract).
    pub fn get(&self, key: &str) -> u64 {
        *self
            .values
            .get(key)
            .unwrap_or_else(|| panic!("shard {} stop line has no {key}=: {self:?}", self.shard))
    }
}

/// Every shard's stop line in a server log, in shard order.
pub fn shard_stop_lines(log: &str) -> Vec<ShardStopLine> {
    let mut lines: Vec<ShardStopLine> = log
        .lines()
        .filter_map(|line| {
            let rest = &line[line.find("shard ")? + "shard ".len()..];
            let (id, rest) = rest.split_once(" stopped:")?;
            let values = rest
                .split_whitespace()
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.to_string(), v.parse().ok()?))
                })
                .collect();
            Some(ShardStopLine {
                shard: id.parse().ok()?,
                values,
            })
        })
        .collect();
    lines.sort_by_key(|l| l.shard);
    lines
}

/// `COREREG_LOADGEN` if set, else `cargo build -p corereg-loadgen` (same profile) next to corereg.
pub fn loadgen_binary() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("COREREG_LOADGEN") {
        return std::path::PathBuf::from(p);
    }
    let corereg = std::path::PathBuf::from(env!("CARGO_BIN_EXE_corereg"));
    let dir = corereg
        .parent()
        .expect("the corereg binary lives in target/<profile>")
        .to_path_buf();
    let release = dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = std::process::Command::new(cargo);
    build
        .args(["build", "-p", "corereg-loadgen"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if release {
        build.arg("--release");
    }
    let status = build.status().expect("run cargo build -p corereg-loadgen");
    assert!(status.success(), "building corereg-loadgen failed");
    let bin = dir.join("corereg-loadgen");
    assert!(bin.exists(), "{} not found after building", bin.display());
    bin
}

/// SIGTERM, a clean exit, and one stop line per shard (read once the log pipes delivered them).
pub fn stop(mut server: Server, shards: usize) -> Vec<ShardStopLine> {
    let status = server
        .terminate(Duration::from_secs(5))
        .expect("every shard stops within 5 s of SIGTERM");
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        server.log_text()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let lines = shard_stop_lines(&server.log_text());
        if lines.len() == shards {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "expected {shards} shard stop lines; log:\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------------------
// External programs (SIPp, sipsak, baresip, the loadgen) and their files.

/// A child process killed (and reaped) when the test ends, even by panicking.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl KillOnDrop {
    /// Waits up to `limit` for the exit status; panics naming `what` when it is still running then.
    pub fn wait_within(&mut self, what: &str, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().expect("wait for child") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{what} still running after {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM (the way an operator stops a client).
    pub fn terminate(&self) {
        // SAFETY: kill(2) on the pid of our own child, which is not reaped before this guard drops.
        let rc = unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill -TERM {}", self.0.id());
    }
}

/// Panics unless `program` can be run (`program probe...`, output discarded), naming the Debian package
/// that provides it: the interop tests never skip silently.
pub fn require_program(program: &str, probe: &[&str], package: &str) {
    if let Err(e) = Command::new(program)
        .args(probe)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        panic!(
            "`{program}` is required for the interop tests but cannot be run ({e}). Install it: \
             `apt-get update && apt-get install -y {package}` (scripts/test.sh does this when run as root)"
        );
    }
}

/// A fresh directory for one test's files: `<tmp>/corereg-<name>-<pid>-<n>`.
pub fn workdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "corereg-{name}-{}-{}",
        std::process::id(),
        unique()
    ));
    std::fs::create_dir_all(&dir).expect("work dir");
    dir
}

pub fn write_file(path: &Path, text: &str) {
    let mut f = std::fs::File::create(path).expect("create file");
    f.write_all(text.as_bytes()).expect("write file");
}

/// A currently free UDP port on loopback, for programs that cannot bind port 0 themselves.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free port")
        .port()
}

/// The last `max` characters of `text`.
pub fn tail(text: &str, max: usize) -> String {
    let skip = text.chars().count().saturating_sub(max);
    text.chars().skip(skip).collect()
}

/// The tail of every file in `dir` whose name `keep` accepts, for failure reports.
pub fn files_report(dir: &Path, keep: impl Fn(&str) -> bool, max: usize) -> String {
    let mut report = String::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return report;
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        let name = path
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned());
        if keep(&name) {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            report += &format!("\n--- {} (tail)\n{}", path.display(), tail(&text, max));
        }
    }
    report
}

/// An HTTP request to corereg's API at `api`: the status and the body as JSON (a string when it is not).
pub fn http(api: SocketAddr, method: &str, path: &str) -> (u16, serde_json::Value) {
    let url = format!("http://{api}{path}");
    let response = match ureq::request(method, &url).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = response.status();
    let text = response.into_string().expect("body");
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, json)
}
