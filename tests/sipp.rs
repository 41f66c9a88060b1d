//! SIPp (a real, independent SIP client) against the real binary: every scenario in tests/sipp/ must complete
//! all its calls. SIPp is required: install it with `apt-get install -y sip-tester` (scripts/test.sh does).

mod common;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Server;

/// Calls per scenario (each call uses its own AoR: user name + call number).
const CALLS: &str = "5";
/// Wall-clock bound for one SIPp run (SIPp's own -timeout is shorter, this is the backstop).
const RUN_LIMIT: Duration = Duration::from_secs(40);

/// Kills SIPp when the test ends early (panic or timeout).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name)
}

fn sipp_binary() -> &'static str {
    match Command::new("sipp").arg("-v").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(_) => "sipp",
        Err(e) => panic!(
            "SIPp is required for the interop tests but `sipp` cannot be run ({e}). Install it: \
             `apt-get update && apt-get install -y sip-tester` (scripts/test.sh does this when run as root)"
        ),
    }
}

/// A currently free UDP port on loopback for SIPp's own socket (SIPp would otherwise try 5060 and up).
fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free port")
        .port()
}

fn run_scenario(file: &str, server_args: &[&str]) {
    let sipp = sipp_binary();
    let server = Server::start(server_args);
    let workdir = std::env::temp_dir().join(format!(
        "corereg-sipp-{}-{}",
        std::process::id(),
        common::unique()
    ));
    std::fs::create_dir_all(&workdir).expect("sipp work dir");
    let child = Command::new(sipp)
        .current_dir(&workdir)
        .arg("-sf")
        .arg(scenario(file))
        .arg(server.addr.to_string())
        .args(["-i", "127.0.0.1", "-p", &free_port().to_string()])
        .args([
            "-m",
            CALLS,
            "-r",
            "50",
            "-nostdin",
            "-timeout",
            "20s",
            "-timeout_error",
        ])
        .args([
            "-recv_timeout",
            "5000",
            "-trace_err",
            "-trace_msg",
            "-trace_logs",
        ])
        .stdin(Stdio::null())
        // Files, not pipes: SIPp prints its screen periodically and nobody drains a pipe while it runs.
        .stdout(std::fs::File::create(workdir.join("sipp.stdout")).expect("stdout file"))
        .stderr(std::fs::File::create(workdir.join("sipp.stderr")).expect("stderr file"))
        .spawn()
        .expect("spawn sipp");
    let mut guard = Guard(child);
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = guard.0.try_wait().expect("wait sipp") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "{file}: sipp still running after {RUN_LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    if !status.success() {
        let mut report = String::new();
        if let Ok(entries) = std::fs::read_dir(&workdir) {
            for entry in entries.flatten() {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                let tail: String = text
                    .chars()
                    .rev()
                    .take(4000)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                report += &format!("\n--- {} (tail)\n{tail}", entry.path().display());
            }
        }
        panic!(
            "{file}: sipp exited with {status:?} (a call failed or timed out)\n{report}\n\
             --- corereg log\n{}",
            server.log_text()
        );
    }
    let _ = std::fs::remove_dir_all(&workdir);
}

#[test]
fn sipp_register() {
    run_scenario("register.xml", &[]);
}

#[test]
fn sipp_refresh() {
    run_scenario("refresh.xml", &[]);
}

#[test]
fn sipp_fetch() {
    run_scenario("fetch.xml", &[]);
}

#[test]
fn sipp_unregister() {
    run_scenario("unregister.xml", &[]);
}

#[test]
fn sipp_unregister_all() {
    run_scenario("unregister-all.xml", &[]);
}

#[test]
fn sipp_423_then_retry_with_min_expires() {
    run_scenario("min-expires.xml", &["--min-expires", "90"]);
}
