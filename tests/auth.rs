//! Digest authentication end to end: the real binary with `--auth required` over loopback, driven by SIPp
//! (an independent MD5 implementation), by the bundled load generator, and by a scripted UDP client that
//! computes its digests with `corereg::sip::digest` (for what SIPp cannot script: stale nonces, replays,
//! SIGHUP reloads). Bindings are always checked through the registrar itself: an authenticated REGISTER
//! without Contact returns the AoR's bindings (RFC 3261 §10.3 step 8).
//!
//! No test waits after start-up: a phone answering a challenge in the second the registrar started must be
//! accepted the first time (after a restart every phone comes back at once).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::digest::{
    authorization, challenge_of, challenges, next_with, register_with, users_csv,
};
use common::{
    files_report, free_udp_port, loadgen_binary, require_program, workdir, write_file, Client,
    KillOnDrop, Req, Server,
};
use corereg::sip::digest::Algorithm;

const DOMAIN: &str = "example.com";
/// Wall-clock bound for one SIPp or loadgen run.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// At most two shards: exercises the handoff (nonces issued and checked on different shards) without
/// taking every CPU of a shared machine.
fn cores() -> usize {
    common::usable_cores().min(2)
}

/// Starts `corereg --domain example.com --auth required --credentials FILE <extra>`.
fn start_auth_server(credentials: &Path, extra: &[&str]) -> Server {
    common::digest::start_auth_server(cores(), DOMAIN, credentials, extra)
}

// ---------------------------------------------------------------------------------------------------------
// The scripted digest client (tests/common/digest.rs), for this file's one domain.

/// The contacts bound to `user`'s AoR.
fn fetch(server: &Server, user: &str, password: &str) -> Vec<String> {
    common::digest::fetch(server, DOMAIN, user, password)
}

/// Registers `user` with a contact of its own; returns the contact URI.
fn register_ok(server: &Server, user: &str, password: &str) -> String {
    let client = server.client();
    let contact = format!("sip:{user}@{}", client.local);
    let req = Req::register(&client, user, DOMAIN).contact(&format!("<{contact}>"));
    let (r, _) = register_with(&client, &req, user, password);
    assert_eq!(
        r.status,
        200,
        "{user} should register:\n{}\nlog:\n{}",
        r.raw,
        server.log_text()
    );
    contact
}

// ---------------------------------------------------------------------------------------------------------
// SIPp.

/// SIPp is required: the tests fail, naming its package, when it is missing.
fn require_sipp() {
    require_program("sipp", &["-v"], "sip-tester");
}

/// SIPp 3.6 reads only the FIRST WWW-Authenticate header of a 401 and aborts the call ("authentication must
/// use MD5 or AKAv1-MD5") when it is SHA-256. MD5 alone is corereg's default; these tests say so explicitly
/// so that they keep testing SIPp whatever the default.
const MD5_ONLY: [&str; 2] = ["--auth-algorithms", "md5"];

/// Runs register-auth.xml once per line of `users` (user, password as given to SIPp);
/// returns SIPp's exit status and its output files for failure reports.
fn run_sipp(target: SocketAddr, users: &[(String, String)], dir: &Path) -> (bool, String) {
    let mut inf = String::from("SEQUENTIAL\n");
    for (user, password) in users {
        inf += &format!("{user};[authentication username={user} password={password}];{DOMAIN};\n");
    }
    let inf_path = dir.join("users.inf");
    write_file(&inf_path, &inf);
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/register-auth.xml");
    let port = free_udp_port();
    let child = Command::new("sipp")
        .current_dir(dir)
        .arg("-sf")
        .arg(&scenario)
        .arg("-inf")
        .arg(&inf_path)
        .arg(target.to_string())
        .args(["-i", "127.0.0.1", "-p", &port.to_string()])
        .args(["-m", &users.len().to_string(), "-r", "100", "-l", "20"])
        .args(["-nostdin", "-timeout", "30s", "-timeout_error"])
        .args(["-recv_timeout", "5000", "-trace_err"])
        // SIPp's digest uri defaults to "sip:<remote ip>:<port>"; corereg requires the Request-URI
        // (RFC 7616 §3.4), which the scenario sets to sip:<domain>.
        .args(["-auth_uri", DOMAIN])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("sipp.stdout")).expect("stdout file"))
        .stderr(std::fs::File::create(dir.join("sipp.stderr")).expect("stderr file"))
        .spawn()
        .expect("spawn sipp");
    let status = KillOnDrop(child).wait_within("sipp", RUN_LIMIT);
    let report = files_report(
        dir,
        |name| name.ends_with(".log") || name.starts_with("sipp."),
        3000,
    );
    (status.success(), report)
}

#[test]
fn sipp_md5_registers_every_user_of_a_csv_file() {
    require_sipp();
    let dir = workdir("auth-sipp");
    let users: Vec<(String, String)> = (0..60)
        .map(|n| (format!("s{n:04}"), format!("pw-s{n:04}")))
        .collect();
    let credentials = dir.join("users.csv");
    write_file(&credentials, &users_csv(&users));
    let server = start_auth_server(&credentials, &MD5_ONLY);
    assert!(
        server
            .log_text()
            .contains("auth=required realms=example.com users=60"),
        "start-up line:\n{}",
        server.log_text()
    );
    let (ok, report) = run_sipp(server.addr, &users, &dir);
    assert!(
        ok,
        "sipp failed to register with digest\n{report}\n--- corereg log\n{}",
        server.log_text()
    );
    for (user, password) in &users {
        let contacts = fetch(&server, user, password);
        assert_eq!(contacts.len(), 1, "{user}: {contacts:?}");
        assert!(
            contacts[0].starts_with(&format!("sip:{user}@127.0.0.1:")),
            "{user}: {contacts:?} is not SIPp's contact"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIPp 3.6 answers the first challenge of a 401 only, and MD5 ones only: it registers when MD5 is offered
/// first and gives up when SHA-256 is (the client compatibility table in docs/authentication.md).
#[test]
fn sipp_registers_when_md5_is_offered_first_and_gives_up_when_sha256_is() {
    require_sipp();
    for (algorithms, registers) in [("md5,sha-256", true), ("sha-256,md5", false)] {
        let dir = workdir("auth-sipp-order");
        let users = vec![("o1".to_string(), "pw-o1".to_string())];
        let credentials = dir.join("users.csv");
        write_file(&credentials, &users_csv(&users));
        let server = start_auth_server(&credentials, &["--auth-algorithms", algorithms]);
        let (ok, report) = run_sipp(server.addr, &users, &dir);
        assert_eq!(
            ok,
            registers,
            "sipp against --auth-algorithms {algorithms}\n{report}\n--- corereg log\n{}",
            server.log_text()
        );
        if !registers {
            assert!(
                report.contains("authentication must use MD5"),
                "sipp should refuse the SHA-256 challenge:\n{report}"
            );
        }
        let contacts = fetch(&server, "o1", "pw-o1");
        assert_eq!(
            contacts.len(),
            usize::from(registers),
            "{algorithms}: {contacts:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn wrong_password_gets_401_and_binds_nothing() {
    require_sipp();
    let dir = workdir("auth-wrong");
    let credentials = dir.join("users.csv");
    write_file(
        &credentials,
        &users_csv(&[
            ("alice".into(), "wonderland".into()),
            ("w0".into(), "right".into()),
        ]),
    );
    let server = start_auth_server(&credentials, &MD5_ONLY);

    // SIPp with a wrong password: its answer is challenged again instead of the 200 it expects.
    let (ok, report) = run_sipp(server.addr, &[("w0".into(), "wrong".into())], &dir);
    assert!(!ok, "sipp should fail with a wrong password\n{report}");
    assert!(
        report.contains("received 'SIP/2.0 401"),
        "sipp should fail on a second 401:\n{report}"
    );

    // Scripted: 401 again, not stale (the user must be asked), nothing bound.
    let client = server.client();
    let req = Req::register(&client, "alice", DOMAIN).contact("<sip:alice@192.0.2.1>");
    let (r, _) = register_with(&client, &req, "alice", "guess");
    assert_eq!(r.status, 401, "wrong password:\n{}", r.raw);
    assert!(challenges(&r).iter().all(|c| !c.stale), "{}", r.raw);
    assert!(fetch(&server, "alice", "wonderland").is_empty());
    assert!(fetch(&server, "w0", "right").is_empty());

    // A valid user answering for someone else's AoR: 403.
    let client = server.client();
    let req = Req::register(&client, "w0", DOMAIN).contact("<sip:w0@192.0.2.1>");
    let (r, _) = register_with(&client, &req, "alice", "wonderland");
    assert_eq!(r.status, 403, "not the owner:\n{}", r.raw);
    assert!(fetch(&server, "w0", "right").is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn repeated_failures_put_the_user_in_a_cool_down() {
    let dir = workdir("auth-guard");
    let credentials = dir.join("users.csv");
    write_file(
        &credentials,
        &users_csv(&[("mallory".into(), "secret".into())]),
    );
    let server = start_auth_server(
        &credentials,
        &["--auth-max-failures", "3", "--auth-cooldown", "60"],
    );
    let client = server.client();
    let req = Req::register(&client, "mallory", DOMAIN).contact("<sip:m@192.0.2.1>");
    let mut statuses = Vec::new();
    for attempt in 0..5 {
        let first = client.request(&req.next().build());
        if first.status != 401 {
            statuses.push(first.status);
            continue;
        }
        let c = challenge_of(&first, Algorithm::Md5);
        let answer = next_with(
            &req,
            &authorization(&req.ruri, "mallory", &format!("guess{attempt}"), &c, 1),
        );
        statuses.push(client.request(&answer.build()).status);
    }
    // The attempt reaching the limit still gets 401; then the user and the source address are in a
    // cool-down: 403 at once, without a challenge or any digest work.
    assert_eq!(statuses, vec![401, 401, 401, 403, 403]);
    // Even the right password waits for the cool-down.
    let r = client.request(&req.next().build());
    assert_eq!(r.status, 403, "{}", r.raw);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Wrong answers in alice's name from one address put alice in a cool-down at that address only: her own
/// phone, at another address, registers with the right password meanwhile.
#[test]
fn failures_from_one_address_never_lock_out_the_right_password_from_another() {
    let dir = workdir("guard-scope");
    let credentials = dir.join("users.csv");
    write_file(
        &credentials,
        &users_csv(&[("alice".into(), "wonderland".into())]),
    );
    let server = start_auth_server(
        &credentials,
        &["--auth-max-failures", "3", "--auth-cooldown", "60"],
    );
    let attacker = Client::at(server.addr, "127.0.0.2");
    let req = Req::register(&attacker, "alice", DOMAIN).contact("<sip:x@192.0.2.66>");
    for attempt in 0..3 {
        let (r, _) = register_with(&attacker, &req.next(), "alice", &format!("guess{attempt}"));
        assert_eq!(r.status, 401, "{}", r.raw);
    }
    // The attacker's address is now in a cool-down, for alice too.
    let r = attacker.request(&req.next().build());
    assert_eq!(r.status, 403, "{}", r.raw);
    // Alice's phone at another address registers.
    let phone = Client::at(server.addr, "127.0.0.3");
    let mine = Req::register(&phone, "alice", DOMAIN).contact("<sip:alice@192.0.2.1>");
    let (r, _) = register_with(&phone, &mine, "alice", "wonderland");
    assert_eq!(r.status, 200, "{}\nlog:\n{}", r.raw, server.log_text());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn expired_nonce_gets_stale_and_the_retry_succeeds() {
    let dir = workdir("auth-stale");
    let credentials = dir.join("users.csv");
    write_file(
        &credentials,
        &users_csv(&[("bob".into(), "builder".into())]),
    );
    let server = start_auth_server(&credentials, &["--nonce-ttl", "1"]);
    let client = server.client();
    let req = Req::register(&client, "bob", DOMAIN).contact("<sip:bob@192.0.2.2>");
    let first = client.request(&req.build());
    let old = challenge_of(&first, Algorithm::Md5);
    // Older than the TTL (age is counted in whole seconds and must exceed 1).
    std::thread::sleep(Duration::from_millis(2500));
    let late = next_with(&req, &authorization(&req.ruri, "bob", "builder", &old, 1));
    let r = client.request(&late.build());
    assert_eq!(r.status, 401, "stale nonce:\n{}", r.raw);
    let fresh = challenge_of(&r, Algorithm::Md5);
    assert!(
        fresh.stale,
        "the right password with an old nonce gets stale=true:\n{}",
        r.raw
    );
    assert_ne!(fresh.nonce, old.nonce);
    // The UA retries at once with the new nonce, without asking its user.
    let retry = next_with(
        &late,
        &authorization(&req.ruri, "bob", "builder", &fresh, 1),
    );
    let r = client.request(&retry.build());
    assert_eq!(r.status, 200, "retry with the fresh nonce:\n{}", r.raw);
    // The binding is there: asked at once (a fetch needs its own fresh nonce, well within the 1 s TTL).
    assert_eq!(
        fetch(&server, "bob", "builder"),
        vec!["sip:bob@192.0.2.2".to_string()]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn replayed_authorization_is_refused() {
    let dir = workdir("auth-replay");
    let credentials = dir.join("users.csv");
    write_file(
        &credentials,
        &users_csv(&[("carol".into(), "c4r0l".into())]),
    );
    // SHA-256 end to end: offered first when the operator turns it on.
    let server = start_auth_server(&credentials, &["--auth-algorithms", "sha-256,md5"]);
    let client = server.client();
    let req = Req::register(&client, "carol", DOMAIN).contact("<sip:carol@192.0.2.3>");
    let first = client.request(&req.build());
    let c = challenge_of(&first, Algorithm::Sha256);
    let creds = authorization(&req.ruri, "carol", "c4r0l", &c, 1);
    let accepted = next_with(&req, &creds);
    assert_eq!(client.request(&accepted.build()).status, 200);
    // A retransmission of the accepted request (same branch, same CSeq) gets its 200 again.
    assert_eq!(client.request(&accepted.build()).status, 200);

    // A captured Authorization (same nonce, same nc) on a new request (new CSeq, another contact).
    let mut replay = accepted.next();
    replay.contacts = vec!["<sip:attacker@198.51.100.7>".into()];
    let replay = replay.header(&creds);
    let r = client.request(&replay.build());
    assert_eq!(r.status, 401, "replay must be refused:\n{}", r.raw);
    assert!(
        challenges(&r).iter().all(|c| c.stale),
        "a replay gets stale=true:\n{}",
        r.raw
    );
    assert_eq!(
        fetch(&server, "carol", "c4r0l"),
        vec!["sip:carol@192.0.2.3".to_string()]
    );

    // The legitimate UA's next request with the next nonce-count is accepted.
    let mut refresh = accepted.next();
    refresh.contacts = accepted.contacts.clone();
    let refresh = refresh.header(&authorization(&req.ruri, "carol", "c4r0l", &c, 2));
    assert_eq!(client.request(&refresh.build()).status, 200);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A REGISTER carrying any Authorization header and the Call-ID and CSeq of a live binding, sent from another
/// socket, must not be answered from state: it is verified like any other and gets 401, disclosing nothing.
#[test]
fn junk_authorization_with_a_live_call_id_and_cseq_discloses_nothing() {
    let dir = workdir("junk-auth");
    let credentials = dir.join("users.csv");
    write_file(&credentials, &users_csv(&[("dave".into(), "d4ve".into())]));
    let server = start_auth_server(&credentials, &[]);
    let victim = server.client();
    let req = Req::register(&victim, "dave", DOMAIN).contact("<sip:dave@192.0.2.4>");
    let (r, accepted) = register_with(&victim, &req, "dave", "d4ve");
    assert_eq!(r.status, 200, "{}", r.raw);
    // A second device registered later: the attacker would see it too.
    register_ok(&server, "dave", "d4ve");

    let attacker = server.client();
    let mut forged = Req::register(&attacker, "dave", DOMAIN).header("Authorization: x");
    forged.call_id = accepted.call_id.clone();
    forged.cseq = accepted.cseq;
    for (what, forged) in [
        ("another socket", forged.clone()),
        ("the accepted request's branch", {
            let mut f = forged.clone();
            f.via = format!(
                "SIP/2.0/UDP {};branch={}",
                attacker.local,
                accepted.branch()
            );
            f
        }),
    ] {
        let r = attacker.request(&forged.build());
        assert_eq!(r.status, 401, "junk Authorization from {what}:\n{}", r.raw);
        assert!(r.contacts().is_empty(), "contacts disclosed:\n{}", r.raw);
    }
    // The accepted request itself, replayed from the attacker's socket: verified, refused as a replay.
    let r = attacker.request(&accepted.build());
    assert_eq!(r.status, 401, "{}", r.raw);
    assert!(r.contacts().is_empty(), "contacts disclosed:\n{}", r.raw);
    // The victim's own retransmission still gets its 200.
    assert_eq!(victim.request(&accepted.build()).status, 200);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Polls the server log for `needle` (bounded).
fn wait_for_log(server: &Server, needle: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if server.log_text().contains(needle) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn sighup(server: &Server) {
    // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet (the Server owns it).
    let rc = unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGHUP) };
    assert_eq!(rc, 0, "kill -HUP");
}

#[test]
fn sighup_reloads_credentials_and_keeps_bindings() {
    let dir = workdir("auth-sighup");
    let credentials = dir.join("users.toml");
    let alice = "[[user]]\nusername = \"alice\"\npassword = \"wonderland\"\n";
    write_file(&credentials, alice);
    let server = start_auth_server(&credentials, &[]);
    let alice_contact = register_ok(&server, "alice", "wonderland");

    // dave is not in the file yet: his right password is still refused.
    let client = server.client();
    let req = Req::register(&client, "dave", DOMAIN).contact("<sip:dave@192.0.2.4>");
    let (r, _) = register_with(&client, &req, "dave", "d4ve");
    assert_eq!(r.status, 401, "unknown user:\n{}", r.raw);

    // Add him and reload.
    write_file(
        &credentials,
        &format!("{alice}[[user]]\nusername = \"dave\"\npassword = \"d4ve\"\n"),
    );
    sighup(&server);
    assert!(
        wait_for_log(&server, "users=2 (was 1)", Duration::from_secs(5)),
        "no reload line:\n{}",
        server.log_text()
    );
    // In force on every shard within the poll interval.
    let deadline = Instant::now() + Duration::from_secs(3);
    let dave_contact = loop {
        let client = server.client();
        let contact = format!("sip:dave@{}", client.local);
        let req = Req::register(&client, "dave", DOMAIN).contact(&format!("<{contact}>"));
        let (r, _) = register_with(&client, &req, "dave", "d4ve");
        if r.status == 200 {
            break contact;
        }
        assert!(
            Instant::now() < deadline,
            "dave still refused after the reload:\n{}",
            r.raw
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        fetch(&server, "alice", "wonderland"),
        vec![alice_contact.clone()]
    );
    assert_eq!(fetch(&server, "dave", "d4ve"), vec![dave_contact]);

    // A broken file is refused with its line number; the users loaded before stay in force.
    write_file(
        &credentials,
        &format!("{alice}[[user]]\nusername = \"eve\"\n"),
    );
    sighup(&server);
    assert!(
        wait_for_log(
            &server,
            "credentials reload failed, keeping the previous 2 users",
            Duration::from_secs(5)
        ),
        "no reload failure line:\n{}",
        server.log_text()
    );
    assert!(
        server.log_text().contains("line 4"),
        "{}",
        server.log_text()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(fetch(&server, "dave", "d4ve").len(), 1);
    assert_eq!(fetch(&server, "alice", "wonderland"), vec![alice_contact]);
    // Secrets never reach the log.
    let log = server.log_text();
    assert!(
        !log.contains("wonderland") && !log.contains("d4ve"),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------------------
// The load generator's digest mode.

#[test]
fn loadgen_digest_mode_registers_every_user() {
    const USERS: usize = 300;
    let loadgen = loadgen_binary();
    let dir = workdir("auth-loadgen");
    let users: Vec<(String, String)> = (0..USERS)
        .map(|n| (format!("lg{n}"), format!("pw-lg{n}")))
        .collect();
    let credentials = dir.join("users.csv");
    write_file(&credentials, &users_csv(&users));
    let server = start_auth_server(&credentials, &[]);
    let json = dir.join("loadgen.json");
    let child = Command::new(&loadgen)
        .args([
            "run",
            "--target",
            &server.addr.to_string(),
            "--scenario",
            "register",
        ])
        .args(["--users", &USERS.to_string(), "--count", &USERS.to_string()])
        .args([
            "--prefix",
            "lg",
            "--domain",
            DOMAIN,
            "--password-pattern",
            "pw-{user}",
        ])
        .args([
            "--concurrency",
            "50",
            "--t1-ms",
            "100",
            "--timeout-ms",
            "5000",
            "--quiet",
        ])
        .arg("--json")
        .arg(&json)
        .stdin(Stdio::null())
        .spawn()
        .expect("run corereg-loadgen");
    let status = KillOnDrop(child).wait_within("corereg-loadgen", RUN_LIMIT);
    let report = std::fs::read_to_string(&json).unwrap_or_default();
    assert!(
        status.success(),
        "loadgen failed: {report}\n{}",
        server.log_text()
    );
    assert!(
        report.contains(&format!("\"succeeded\": {USERS},")),
        "loadgen did not register every user: {report}"
    );
    assert!(
        !report.contains("\"challenges\": 0,"),
        "the loadgen was never challenged: {report}"
    );
    for (user, password) in &users {
        let contacts = fetch(&server, user, password);
        assert_eq!(contacts.len(), 1, "{user}: {contacts:?}");
        assert!(
            contacts[0].starts_with(&format!("sip:{user}@127.0.0.1:")),
            "{user}: {contacts:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
