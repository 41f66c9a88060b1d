//! Real SIP clients from Debian against the real binary over loopback: sipsak 0.9.8 (package `sipsak`) and
//! baresip 1.0 headless (package `baresip-core`), configured the way an operator would. Each test checks the
//! client's own verdict (sipsak's exit status, baresip's registration line) AND the registrar's state: an
//! authenticated REGISTER without Contact (a fetch) lists the client's contact, or nothing when the client
//! had to fail.
//!
//! These tests pin the cells of the client compatibility table (docs/authentication.md) for both
//! clients under the three challenge orders `--auth-algorithms md5` (the default), `sha-256,md5` and `md5,sha-256`; SIPp's row is
//! pinned in tests/auth.rs. A missing client fails the test with the package to install; nothing is
//! skipped.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::digest::{fetch, start_auth_server, users_csv};
use common::{
    fetch_unauthenticated, require_program, unique, workdir, write_file, KillOnDrop, Server,
};

/// sipsak resolves the host of its target URI before sending anything, even to an outbound proxy, so its
/// tests serve a domain that needs no resolver: the loopback address itself.
const SIPSAK_DOMAIN: &str = "127.0.0.1";
/// baresip sends everything to its outbound proxy (corereg's port) and never resolves the domain.
const BARESIP_DOMAIN: &str = "example.com";
/// How long a client may take to register (or to give up); both answer in milliseconds on loopback.
const CLIENT_LIMIT: Duration = Duration::from_secs(6);
/// Where Debian's baresip-core installs baresip's modules.
const BARESIP_MODULES: &str = "/usr/lib/baresip/modules";

/// One shard is enough here, and leaves the other CPUs to the tests running alongside.
const CORES: usize = 1;

/// A users file with one user, and a server requiring digest authentication with `extra` flags.
fn start_with_user(dir: &Path, domain: &str, user: &str, password: &str, extra: &[&str]) -> Server {
    let credentials = dir.join("users.csv");
    write_file(
        &credentials,
        &users_csv(&[(user.to_string(), password.to_string())]),
    );
    start_auth_server(CORES, domain, &credentials, extra)
}

/// The start-up line names the challenges offered, in order (`auth-algorithms=MD5,SHA-256`).
fn assert_offers(server: &Server, algorithms: &str) {
    let log = server.log_text();
    let offered = log
        .split("auth-algorithms=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next());
    assert_eq!(offered, Some(algorithms), "start-up line:\n{log}");
}

// ---------------------------------------------------------------------------------------------------------
// sipsak

fn require_sipsak() {
    require_program("sipsak", &["--version"], "sipsak");
}

/// What one sipsak run did.
struct SipsakRun {
    status: ExitStatus,
    /// stdout and stderr, for assertions and failure reports.
    output: String,
}

/// `sipsak -U` (usrloc mode: one REGISTER, answered challenge included) of `user@domain` through
/// corereg, with `contact` as its Contact, and credentials when `password` is given.
fn sipsak_register(
    server: &Server,
    dir: &Path,
    domain: &str,
    user: &str,
    password: Option<&str>,
    contact: &str,
) -> SipsakRun {
    require_sipsak();
    let out_path = dir.join(format!("sipsak-{}.out", unique()));
    let out = std::fs::File::create(&out_path).expect("sipsak output file");
    let mut cmd = Command::new("sipsak");
    cmd.arg("-U")
        .args(["-s", &format!("sip:{user}@{domain}")])
        // Outbound proxy: corereg's loopback port.
        .args(["-p", &server.addr.to_string()])
        .args(["-C", contact])
        // sipsak's default expiry (15 s) is under corereg's --min-expires, which answers 423.
        .args(["-x", "600"])
        // No warning about the Via sipsak leaves out in usrloc mode; one level of detail for reports.
        .args(["-i", "-vv"]);
    if let Some(password) = password {
        // sipsak 0.9.8 derives the digest username from the URI as "user@" unless -u names it.
        cmd.args(["-u", user, "-a", password]);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("clone output file"))
        .stderr(out)
        .spawn()
        .expect("spawn sipsak");
    let status = KillOnDrop(child).wait_within("sipsak", CLIENT_LIMIT);
    SipsakRun {
        status,
        output: std::fs::read_to_string(&out_path).unwrap_or_default(),
    }
}

/// A contact URI unique to this run, so that a fetch cannot mistake another binding for sipsak's.
fn sipsak_contact(user: &str) -> String {
    format!("sip:{user}-sipsak-{}@127.0.0.1:5999", unique())
}

#[test]
fn sipsak_registers_against_the_default_md5_challenge() {
    require_sipsak();
    let dir = workdir("interop-sipsak");
    let server = start_with_user(&dir, SIPSAK_DOMAIN, "alice", "wonderland", &[]);
    assert_offers(&server, "MD5");
    let contact = sipsak_contact("alice");
    let run = sipsak_register(
        &server,
        &dir,
        SIPSAK_DOMAIN,
        "alice",
        Some("wonderland"),
        &contact,
    );
    assert!(
        run.status.success(),
        "sipsak exited with {:?}:\n{}\n--- corereg log\n{}",
        run.status,
        run.output,
        server.log_text()
    );
    assert_eq!(
        fetch(&server, SIPSAK_DOMAIN, "alice", "wonderland"),
        vec![contact],
        "sipsak's binding; its output:\n{}",
        run.output
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sipsak_with_a_wrong_password_fails_and_binds_nothing() {
    require_sipsak();
    let dir = workdir("interop-sipsak-wrong");
    let server = start_with_user(&dir, SIPSAK_DOMAIN, "alice", "wonderland", &[]);
    let run = sipsak_register(
        &server,
        &dir,
        SIPSAK_DOMAIN,
        "alice",
        Some("wonderlandx"),
        &sipsak_contact("alice"),
    );
    assert!(
        !run.status.success(),
        "sipsak should fail with a wrong password:\n{}",
        run.output
    );
    assert!(
        run.output.contains("authorization failed"),
        "sipsak should fail on the second 401:\n{}",
        run.output
    );
    assert!(fetch(&server, SIPSAK_DOMAIN, "alice", "wonderland").is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sipsak_registers_without_authentication() {
    require_sipsak();
    let dir = workdir("interop-sipsak-open");
    let server = Server::start(&["--cores", "1", "--domain", SIPSAK_DOMAIN]);
    let contact = sipsak_contact("bob");
    let run = sipsak_register(&server, &dir, SIPSAK_DOMAIN, "bob", None, &contact);
    assert!(
        run.status.success(),
        "sipsak exited with {:?}:\n{}\n--- corereg log\n{}",
        run.status,
        run.output,
        server.log_text()
    );
    assert_eq!(
        fetch_unauthenticated(&server, SIPSAK_DOMAIN, "bob"),
        vec![contact]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sipsak_fails_when_sha256_is_offered_first() {
    require_sipsak();
    let dir = workdir("interop-sipsak-sha");
    let server = start_with_user(
        &dir,
        SIPSAK_DOMAIN,
        "alice",
        "wonderland",
        &["--auth-algorithms", "sha-256,md5"],
    );
    let run = sipsak_register(
        &server,
        &dir,
        SIPSAK_DOMAIN,
        "alice",
        Some("wonderland"),
        &sipsak_contact("alice"),
    );
    // sipsak answers the first challenge only, and knows MD5 only.
    assert!(!run.status.success(), "{}", run.output);
    assert!(
        run.output.contains("unsupported authentication algorithm"),
        "{}",
        run.output
    );
    assert!(fetch(&server, SIPSAK_DOMAIN, "alice", "wonderland").is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sipsak_registers_when_md5_is_offered_before_sha256() {
    require_sipsak();
    let dir = workdir("interop-sipsak-md5-first");
    let server = start_with_user(
        &dir,
        SIPSAK_DOMAIN,
        "alice",
        "wonderland",
        &["--auth-algorithms", "md5,sha-256"],
    );
    assert_offers(&server, "MD5,SHA-256");
    let contact = sipsak_contact("alice");
    let run = sipsak_register(
        &server,
        &dir,
        SIPSAK_DOMAIN,
        "alice",
        Some("wonderland"),
        &contact,
    );
    assert!(run.status.success(), "{}", run.output);
    assert_eq!(
        fetch(&server, SIPSAK_DOMAIN, "alice", "wonderland"),
        vec![contact]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------------------
// baresip

fn require_baresip() {
    require_program("baresip", &["-h"], "baresip-core");
}

/// A headless baresip with one account, registering through corereg; killed when dropped.
struct Baresip {
    child: KillOnDrop,
    lines: mpsc::Receiver<String>,
    /// Every line printed so far (ANSI colours removed).
    seen: Vec<String>,
    aor: String,
}

/// How baresip's registration ended.
#[derive(Debug, PartialEq)]
enum Registration {
    /// "alice@example.com: {0/UDP/v4} 200 OK (corereg/0.1.0) [1 binding]"
    Ok,
    /// Any other verdict line, e.g. "reg: sip:alice@example.com: Register: Function not implemented".
    Failed(String),
}

impl Baresip {
    /// Writes `config` (SIP over UDP on an ephemeral loopback port, the account module, nothing for media)
    /// and `accounts` in `dir`, and starts `baresip -f dir -s` (`-s`: SIP trace, to read its Contact).
    fn start(server: &Server, dir: &Path, user: &str, password: &str) -> Baresip {
        require_baresip();
        let conf = dir.join("baresip");
        std::fs::create_dir_all(&conf).expect("baresip config dir");
        write_file(
            &conf.join("config"),
            &format!(
                "poll_method\t\tepoll\n\
                 sip_listen\t\t127.0.0.1:0\n\
                 net_interface\t\t127.0.0.1\n\
                 module_path\t\t{BARESIP_MODULES}\n\
                 module_app\t\taccount.so\n"
            ),
        );
        let aor = format!("{user}@{BARESIP_DOMAIN}");
        write_file(
            &conf.join("accounts"),
            &format!(
                "<sip:{aor}>;auth_pass={password};outbound=\"sip:{}\";regint=600\n",
                server.addr
            ),
        );
        let mut child = Command::new("baresip")
            .arg("-f")
            .arg(&conf)
            // -t: quits by itself after 30 s, should the test process die without killing it.
            .args(["-s", "-t", "30"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn baresip");
        let (tx, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(strip_ansi(&line)).is_err() {
                        break;
                    }
                }
            });
        }
        Baresip {
            child: KillOnDrop(child),
            lines,
            seen: Vec::new(),
            aor,
        }
    }

    /// Waits (bounded) for the verdict on the first registration.
    fn registration(&mut self) -> Registration {
        let deadline = Instant::now() + CLIENT_LIMIT;
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| {
                    panic!(
                        "baresip gave no verdict on its registration within {CLIENT_LIMIT:?}:\n{}",
                        self.output()
                    )
                });
            let line = match self.lines.recv_timeout(left) {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Timeout) => continue, // reported above
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                    "baresip exited ({:?}) before a verdict on its registration:\n{}",
                    self.child.0.try_wait(),
                    self.output()
                ),
            };
            self.seen.push(line.clone());
            if line.starts_with(&format!("{}: ", self.aor)) {
                return if line.contains(" 200 OK ") {
                    Registration::Ok
                } else {
                    Registration::Failed(line)
                };
            }
            if line.starts_with(&format!("reg: sip:{}: ", self.aor)) {
                return Registration::Failed(line);
            }
        }
    }

    /// The Contact URI of baresip's first REGISTER (from its SIP trace).
    fn contact(&self) -> String {
        self.seen
            .iter()
            .find_map(|l| {
                let rest = l.strip_prefix("Contact: <")?;
                Some(rest[..rest.find('>')?].to_string())
            })
            .unwrap_or_else(|| panic!("no Contact in baresip's trace:\n{}", self.output()))
    }

    /// SIGTERM, as an operator stops it; waits for the exit (baresip unregisters first).
    fn stop(mut self) -> String {
        self.child.terminate();
        self.child
            .wait_within("baresip after SIGTERM", CLIENT_LIMIT);
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.seen.push(line);
        }
        self.output()
    }

    fn output(&self) -> String {
        self.seen.join("\n")
    }
}

/// Removes ANSI colour sequences (`ESC [ ... m`), which baresip puts around its trace and errors.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// baresip's config and accounts files, for failure reports.
fn baresip_files(dir: &Path) -> String {
    common::files_report(&dir.join("baresip"), |_| true, 2000)
}

#[test]
fn baresip_registers_against_the_default_md5_challenge_and_unregisters_on_sigterm() {
    require_baresip();
    let dir = workdir("interop-baresip");
    let server = start_with_user(&dir, BARESIP_DOMAIN, "alice", "wonderland", &[]);
    assert_offers(&server, "MD5");
    let mut baresip = Baresip::start(&server, &dir, "alice", "wonderland");
    let verdict = baresip.registration();
    assert_eq!(
        verdict,
        Registration::Ok,
        "baresip:\n{}\n{}\n--- corereg log\n{}",
        baresip.output(),
        baresip_files(&dir),
        server.log_text()
    );
    let contact = baresip.contact();
    assert!(
        contact.starts_with("sip:alice") && contact.contains("@127.0.0.1:"),
        "baresip's contact: {contact}"
    );
    assert_eq!(
        fetch(&server, BARESIP_DOMAIN, "alice", "wonderland"),
        vec![contact],
        "baresip's binding"
    );
    // Stopped, baresip removes its binding (an authenticated REGISTER with expires=0).
    let output = baresip.stop();
    assert_eq!(
        fetch(&server, BARESIP_DOMAIN, "alice", "wonderland"),
        Vec::<String>::new(),
        "baresip should unregister when stopped:\n{output}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// baresip 1.0 (libre) refuses a 401 carrying any challenge it does not know, whatever its place.
fn assert_baresip_refuses(algorithms: &str) {
    require_baresip();
    let dir = workdir("interop-baresip-sha");
    let server = start_with_user(
        &dir,
        BARESIP_DOMAIN,
        "alice",
        "wonderland",
        &["--auth-algorithms", algorithms],
    );
    let mut baresip = Baresip::start(&server, &dir, "alice", "wonderland");
    match baresip.registration() {
        Registration::Failed(line) => assert!(
            line.contains("Function not implemented"),
            "{line}\n{}",
            baresip.output()
        ),
        Registration::Ok => panic!(
            "baresip registered against --auth-algorithms {algorithms}:\n{}",
            baresip.output()
        ),
    }
    assert!(
        !baresip.output().contains("Authorization: Digest"),
        "baresip should not answer:\n{}",
        baresip.output()
    );
    assert!(fetch(&server, BARESIP_DOMAIN, "alice", "wonderland").is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn baresip_fails_when_sha256_is_offered_first() {
    assert_baresip_refuses("sha-256,md5");
}

#[test]
fn baresip_fails_when_sha256_is_offered_after_md5() {
    assert_baresip_refuses("md5,sha-256");
}
