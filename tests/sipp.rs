//! SIPp (a real, independent SIP client) against the real binary: every scenario in tests/sipp/ must complete
//! all its calls. SIPp is required: install it with `apt-get install -y sip-tester` (scripts/test.sh does).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{files_report, free_udp_port, require_program, workdir, KillOnDrop, Server};

/// Calls per scenario (each call uses its own AoR: user name + call number).
const CALLS: &str = "5";
/// Wall-clock bound for one SIPp run (SIPp's own -timeout is shorter, this is the backstop).
const RUN_LIMIT: Duration = Duration::from_secs(40);

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name)
}

fn run_scenario(file: &str, server_args: &[&str]) {
    require_program("sipp", &["-v"], "sip-tester");
    let server = Server::start(server_args);
    let workdir = workdir("sipp");
    let child = Command::new("sipp")
        .current_dir(&workdir)
        .arg("-sf")
        .arg(scenario(file))
        .arg(server.addr.to_string())
        .args(["-i", "127.0.0.1", "-p", &free_udp_port().to_string()])
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
    let status = KillOnDrop(child).wait_within(&format!("{file}: sipp"), RUN_LIMIT);
    if !status.success() {
        let report = files_report(&workdir, |_| true, 4000);
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
