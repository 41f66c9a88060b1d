//! The load generator against its own responder in verifying challenge mode: every REGISTER is
//! challenged (401, SHA-256 and MD5 offered), the loadgen answers with digest credentials, and the
//! responder recomputes the digest with the known password and answers 403 on any mismatch.

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_corereg-loadgen");

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind an ephemeral port");
    s.local_addr().expect("local addr").port()
}

fn responder(port: u16, algorithms: &str) -> Killed {
    let child = Command::new(BIN)
        .args([
            "responder",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--challenge",
            "--algorithms",
            algorithms,
            "--verify-password",
            "pw-{user}",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("start responder");
    std::thread::sleep(Duration::from_millis(200));
    Killed(child)
}

fn run_loadgen(port: u16, password_args: &[&str], json: &std::path::Path) -> i32 {
    let status = Command::new(BIN)
        .args([
            "run",
            "--target",
            &format!("127.0.0.1:{port}"),
            "--users",
            "300",
            "--count",
            "900",
            "--concurrency",
            "64",
            "--t1-ms",
            "50",
            "--timeout-ms",
            "3000",
            "--quiet",
            "--json",
        ])
        .arg(json)
        .args(password_args)
        .status()
        .expect("run loadgen");
    status.code().unwrap_or(-1)
}

fn read_json(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("json report written");
    serde_json::from_str(&text).expect("valid json")
}

#[test]
fn digest_answers_are_accepted_sha256_and_md5() {
    for algorithms in ["SHA-256,MD5", "MD5"] {
        let port = free_port();
        let _r = responder(port, algorithms);
        let json = std::env::temp_dir().join(format!("lg-digest-{port}.json"));
        let code = run_loadgen(port, &["--password-pattern", "pw-{user}"], &json);
        let r = read_json(&json);
        assert_eq!(code, 0, "{algorithms}: {r}");
        assert_eq!(r["succeeded"], 900, "{r}");
        assert_eq!(r["failed"], 0, "{r}");
        // The nonce is cached per user: one challenge per user, not per REGISTER.
        assert_eq!(r["challenges"], 300, "{r}");
    }
}

#[test]
fn passwords_from_csv_are_used() {
    let port = free_port();
    let _r = responder(port, "SHA-256");
    let csv = std::env::temp_dir().join(format!("lg-pw-{port}.csv"));
    let lines: String = (0..300).map(|n| format!("u{n},pw-u{n}\n")).collect();
    std::fs::write(&csv, lines).expect("write csv");
    let json = std::env::temp_dir().join(format!("lg-csv-{port}.json"));
    let code = run_loadgen(
        port,
        &["--passwords", csv.to_str().expect("utf8 path")],
        &json,
    );
    let r = read_json(&json);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["succeeded"], 900, "{r}");
}

#[test]
fn wrong_password_fails_with_nonzero_exit() {
    let port = free_port();
    let _r = responder(port, "SHA-256,MD5");
    let json = std::env::temp_dir().join(format!("lg-bad-{port}.json"));
    let code = run_loadgen(port, &["--password-pattern", "wrong"], &json);
    let r = read_json(&json);
    assert_eq!(code, 2, "{r}");
    assert_eq!(r["succeeded"], 0, "{r}");
    assert_eq!(r["failed_by_status"]["403"], 900, "{r}");
}

#[test]
fn unanswered_requests_time_out_and_are_counted() {
    // Nobody listens on this port: every transaction retransmits and then times out (timer F).
    let port = free_port();
    let json = std::env::temp_dir().join(format!("lg-timeout-{port}.json"));
    let status = Command::new(BIN)
        .args([
            "run",
            "--target",
            &format!("127.0.0.1:{port}"),
            "--users",
            "20",
            "--count",
            "20",
            "--t1-ms",
            "20",
            "--t2-ms",
            "80",
            "--timeout-ms",
            "400",
            "--quiet",
            "--max-failure-rate",
            "1.0",
            "--json",
        ])
        .arg(&json)
        .status()
        .expect("run loadgen");
    assert!(status.success());
    let r = read_json(&json);
    assert_eq!(r["timeouts"], 20, "{r}");
    // 20, 40, 80, 80, 80... ms: at least 4 retransmissions each before 400 ms.
    assert!(r["retransmissions"].as_u64().unwrap_or(0) >= 80, "{r}");
}

#[test]
fn gso_and_plain_send_paths_agree_and_are_reported() {
    let port = free_port();
    let _r = responder(port, "SHA-256,MD5");
    for (extra, want_path) in [
        (&["--tick-us", "200"][..], "udp-gso"),
        (&["--no-gso"][..], "sendmmsg"),
    ] {
        let json = std::env::temp_dir().join(format!("lg-path-{port}-{want_path}.json"));
        let mut args = vec!["--password-pattern", "pw-{user}"];
        args.extend_from_slice(extra);
        let code = run_loadgen(port, &args, &json);
        let r = read_json(&json);
        assert_eq!(code, 0, "{r}");
        assert_eq!(r["succeeded"], 900, "{r}");
        assert_eq!(r["challenges"], 300, "{r}");
        if want_path == "udp-gso" && !r["gso_fallback"].is_null() {
            // A kernel without UDP GSO: the fallback must be the plain path, and say why.
            assert_eq!(r["send_path"], "sendmmsg", "{r}");
            continue;
        }
        assert_eq!(r["send_path"], want_path, "{r}");
        assert!(r["gso_fallback"].is_null(), "{r}");
        if want_path == "udp-gso" {
            assert!(
                r["gso_segments_per_send"].as_f64().unwrap_or(0.0) > 1.0,
                "{r}"
            );
        }
    }
}
