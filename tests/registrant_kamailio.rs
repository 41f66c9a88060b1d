//! The registrant against Kamailio (the Debian package, 5.6) as an authenticating registrar: digest with
//! qop=auth, state 3, refreshes; a wrong password ends in state 6.

mod common;

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_udp_port, require_program, workdir, write_file, Server};
use serde_json::Value;

/// Kamailio's modules, where Debian installs them.
const MODULES: &str = "/usr/lib/x86_64-linux-gnu/kamailio/modules/";

/// A registrar that challenges every REGISTER (realm: the To domain, qop=auth) and accepts the password
/// `secret` for any user; expiries down to 5 s.
fn config(port: u16) -> String {
    format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
children=1
listen=udp:127.0.0.1:{port}
auto_aliases=no
dns=no
rev_dns=no
disable_tcp=yes
disable_sctp=yes
mpath="{MODULES}"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
loadmodule "kex.so"
modparam("usrloc", "db_mode", 0)
modparam("registrar", "min_expires", 5)
request_route {{
    if (is_method("REGISTER")) {{
        if (!pv_www_authenticate("$td", "secret", "0")) {{
            www_challenge("$td", "1");
            exit;
        }}
        if (!save("location")) {{
            sl_reply_error();
        }}
        exit;
    }}
    sl_send_reply("404", "Not here");
    exit;
}}
"#
    )
}

/// Kamailio in a process group of its own: it forks its workers, which outlive a killed main process, so
/// dropping it kills the whole group.
struct Kamailio(Child);

impl Drop for Kamailio {
    fn drop(&mut self) {
        let group = libc::pid_t::try_from(self.0.id()).expect("pid fits pid_t");
        // SAFETY: kill takes plain integers; the group is the one this test started (process_group(0)).
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

fn start_kamailio(dir: &std::path::Path) -> (Kamailio, SocketAddr) {
    require_program("kamailio", &["-v"], "kamailio");
    let port = free_udp_port();
    let cfg = dir.join("kamailio.cfg");
    write_file(&cfg, &config(port));
    let child = Command::new("kamailio")
        .args([
            "-f",
            cfg.to_str().expect("utf-8"),
            "-DD",
            "-E",
            "-m",
            "32",
            "-M",
            "8",
        ])
        .args([
            "-Y",
            dir.to_str().expect("utf-8"),
            "-w",
            dir.to_str().expect("utf-8"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn kamailio");
    let kamailio = Kamailio(child);
    // Listening once it answers an OPTIONS (404 here).
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    probe
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let deadline = Instant::now() + Duration::from_secs(10);
    let options = format!(
        "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;rport;branch=z9hG4bK-probe\r\n\
From: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:probe@127.0.0.1>\r\nCall-ID: probe\r\nCSeq: 1 OPTIONS\r\n\
Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    loop {
        let _ = probe.send_to(options.as_bytes(), addr);
        let mut buf = [0u8; 2048];
        if probe.recv_from(&mut buf).is_ok() {
            return (kamailio, addr);
        }
        assert!(
            Instant::now() < deadline,
            "kamailio did not start on {addr}"
        );
    }
}

fn registrant(a: &Server, aor: &str) -> Value {
    let url = format!(
        "http://{}/v1/registrants?aor={}",
        a.api.expect("api"),
        aor.replace(':', "%3A").replace('@', "%40")
    );
    let body: Value = serde_json::from_str(
        &ureq::get(&url)
            .call()
            .expect("GET")
            .into_string()
            .expect("body"),
    )
    .expect("json");
    body["registrants"][0].clone()
}

fn wait_for(a: &Server, aor: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let r = registrant(a, aor);
        if done(&r) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{aor}: not reached within {within:?}: {r}\nlog:\n{}",
            a.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn registers_to_kamailio_with_digest_and_refreshes() {
    let dir = workdir("registrant-kamailio");
    let (_kamailio, addr) = start_kamailio(&dir);
    let registrants = dir.join("registrants.csv");
    write_file(
        &registrants,
        &format!(
            "registrar,aor,binding_URI,username,password,expiry\n\
sip:{addr},sip:k1@example.com,sip:k1@127.0.0.1:5999,k1,secret,10\n\
sip:{addr},sip:k2@example.com,sip:k2@127.0.0.1:5999,k2,wrong,10\n"
        ),
    );
    let a = Server::start(&[
        "--registrants",
        registrants.to_str().expect("utf-8"),
        "--registrant-spread",
        "0",
    ]);
    let first = wait_for(&a, "sip:k1@example.com", Duration::from_secs(10), |r| {
        r["state"] == 3
    });
    assert_eq!(first["last_status"], 200);
    let until = first["registered_until"].as_u64().expect("granted");
    // Granted 10 s: refreshed 5 s later (half the expiry, under the 60 s margin), still registered.
    let refreshed = wait_for(&a, "sip:k1@example.com", Duration::from_secs(15), |r| {
        r["state"] == 3 && r["registered_until"].as_u64().is_some_and(|u| u > until)
    });
    assert_eq!(refreshed["last_status"], 200);
    // Kamailio answers 200 only to a REGISTER whose digest it verified (it challenges every other).
    // Kamailio challenges the wrong password again with a new nonce each time: given up after three.
    let wrong = wait_for(&a, "sip:k2@example.com", Duration::from_secs(10), |r| {
        r["state"] == 6
    });
    assert_eq!(wrong["last_status"], 401);
}
