//! The journal against the real binary: what got a 200 survives `kill -9` and restarts, damaged files keep
//! their good prefix, other shard counts re-partition, a failing disk gives 503 and recovers.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{usable_cores, workdir, Client, Req, Server};

const DOMAIN: &str = "example.com";

fn start(dir: &Path, extra: &[&str]) -> Server {
    let dir = dir.to_str().expect("utf-8 path");
    let mut args = vec!["--data-dir", dir];
    args.extend_from_slice(extra);
    Server::start(&args)
}

fn kill9(server: &mut Server) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9");
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.is_running() {
        assert!(Instant::now() < deadline, "corereg survived SIGKILL");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One phone: its registration (for the next CSeq) and what the registrar granted.
struct Phone {
    req: Req,
    contact: String,
    expires: Option<u64>,
    granted_at: Instant,
}

fn register(client: &Client, user: &str, expires: u32) -> Phone {
    let contact = format!("<sip:{user}@192.0.2.7:5060>");
    let req = Req::register(client, user, DOMAIN)
        .contact(&contact)
        .expires(&expires.to_string());
    let resp = client.request(&req.build());
    assert_eq!(resp.status, 200, "{}", resp.raw);
    let granted = resp.contacts().first().and_then(|c| c.1);
    Phone {
        req,
        contact: format!("sip:{user}@192.0.2.7:5060"),
        expires: granted,
        granted_at: Instant::now(),
    }
}

/// The AoR's bindings as a fetch (a REGISTER without Contact) shows them.
fn fetch(client: &Client, phone: &mut Phone) -> Vec<(String, Option<u64>)> {
    let next = phone.req.next();
    let resp = client.request(&next.build());
    assert_eq!(resp.status, 200, "{}", resp.raw);
    phone.req = next;
    resp.contacts()
}

/// Journal files of every shard directory under `dir`: (path, size).
fn journal_files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut files = Vec::new();
    for shard in std::fs::read_dir(dir).expect("read dir").flatten() {
        if !shard.path().is_dir() {
            continue;
        }
        for f in std::fs::read_dir(shard.path())
            .expect("read shard dir")
            .flatten()
        {
            files.push((f.path(), f.metadata().map_or(0, |m| m.len())));
        }
    }
    files.sort();
    files
}

fn segments(dir: &Path) -> Vec<(PathBuf, u64)> {
    journal_files(dir)
        .into_iter()
        .filter(|(p, _)| p.extension().is_some_and(|e| e == "log"))
        .collect()
}

/// Where a segment's data ends (it is followed by the zeros the segment was extended with).
fn data_end(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
}

fn corrupt_files(dir: &Path) -> Vec<PathBuf> {
    journal_files(dir)
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.to_string_lossy().contains(".corrupt-"))
        .collect()
}

#[test]
fn every_acknowledged_binding_survives_kill_9_with_its_remaining_expiry_and_cseq() {
    let dir = workdir("persist-kill9");
    let mut server = start(&dir, &["--cores", "1"]);
    let client = server.client();
    let mut phones = BTreeMap::new();
    for i in 0..150u32 {
        let user = format!("p{i}");
        phones.insert(user.clone(), register(&client, &user, 600 + i * 10));
    }
    // Some leave again: unregistered AoRs stay gone.
    let gone: Vec<String> = (0..150).step_by(7).map(|i| format!("p{i}")).collect();
    for user in &gone {
        let phone = phones.get_mut(user).expect("phone");
        let req = phone
            .req
            .next()
            .contact(&format!("<{}>", phone.contact))
            .expires("0");
        let resp = client.request(&req.build());
        assert_eq!(resp.status, 200);
        assert!(resp.contacts().is_empty(), "{}", resp.raw);
        phone.req = req;
    }
    // p1 refreshes; its 200 is "lost" in the crash, so it retransmits that REGISTER after the restart.
    let p1 = phones.get_mut("p1").expect("p1");
    let refresh = p1
        .req
        .next()
        .contact(&format!("<{}>", p1.contact))
        .expires("600");
    let last_register = refresh.build();
    let resp = client.request(&last_register);
    assert_eq!(resp.status, 200);
    p1.expires = resp.contacts().first().and_then(|c| c.1);
    p1.granted_at = Instant::now();
    p1.req = refresh;
    kill9(&mut server);
    assert!(
        !segments(&dir).is_empty(),
        "no journal in {}",
        dir.display()
    );

    let client_before = client;
    let server = start(&dir, &["--cores", "1"]);
    let log = server.log_text();
    assert!(log.contains("journal loaded"), "{log}");
    // The journal's counters are in /metrics.
    let url = format!("http://{}/metrics", server.api.expect("API"));
    let metrics = ureq::get(&url)
        .call()
        .expect("metrics")
        .into_string()
        .expect("text");
    assert!(metrics.contains("journal_commits"), "{metrics}");
    let client = server.client();
    for (user, phone) in &mut phones {
        let contacts = fetch(&client, phone);
        if gone.contains(user) {
            assert!(contacts.is_empty(), "{user} came back: {contacts:?}");
            continue;
        }
        assert_eq!(contacts.len(), 1, "{user}: {contacts:?}");
        assert_eq!(contacts[0].0, phone.contact);
        let granted = phone.expires.expect("granted expiry");
        let elapsed = phone.granted_at.elapsed().as_secs();
        let left = contacts[0].1.expect("remaining expiry");
        assert!(
            left <= granted && left + elapsed + 2 >= granted,
            "{user}: {left} s left of {granted} after {elapsed} s"
        );
    }
    // The retransmission of p1's last REGISTER from its own socket is that REGISTER: answered 200 with its
    // binding, not refused as a reused CSeq.
    let old_socket = Client {
        socket: client_before.socket.try_clone().expect("socket"),
        server: client.server,
        local: client_before.local,
    };
    let resp = old_socket.request(&last_register);
    assert_eq!(resp.status, 200, "{}", resp.raw);
    assert_eq!(resp.contacts().len(), 1, "{}", resp.raw);
    // CSeq checks hold across the restart: an older CSeq of the same Call-ID is refused, and so is the
    // same CSeq from another source.
    let phone = phones.get("p1").expect("p1");
    let mut stale = phone.req.clone();
    stale.cseq = 1;
    stale.via = format!("SIP/2.0/UDP {};branch=z9hG4bK-stale", client.local);
    let stale = stale
        .contact(&format!("<{}>", phone.contact))
        .expires("600");
    assert_eq!(client.request(&stale.build()).status, 400);
    assert_eq!(client.request(&last_register).status, 400);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_torn_tail_a_flipped_byte_and_an_empty_file_keep_the_good_prefix() {
    let dir = workdir("persist-damage");
    let mut server = start(&dir, &["--cores", "1"]);
    let client = server.client();
    let mut phones: Vec<Phone> = (0..40)
        .map(|i| register(&client, &format!("d{i}"), 3600))
        .collect();
    kill9(&mut server);
    let segs = segments(&dir);
    assert_eq!(segs.len(), 1, "{segs:?}");
    let (seg, _) = segs[0].clone();

    // A torn tail: the last 5 bytes of data gone (the zeros the segment was extended with too). The last
    // registration is lost (its frame is cut), the rest stay.
    let bytes = std::fs::read(&seg).expect("read");
    let end = data_end(&bytes);
    std::fs::write(&seg, &bytes[..end - 5]).expect("truncate");
    // And an empty segment after it, as a crash right after creating one leaves.
    let shard_dir = seg.parent().expect("shard dir").to_owned();
    std::fs::write(shard_dir.join("seg-00000000000000099999.log"), b"").expect("empty");
    let mut server = start(&dir, &["--cores", "1"]);
    let log = server.log_text();
    assert!(log.contains("journal damaged"), "{log}");
    assert_eq!(corrupt_files(&dir).len(), 2, "{:?}", journal_files(&dir));
    let client = server.client();
    for (i, phone) in phones.iter_mut().enumerate() {
        let contacts = fetch(&client, phone);
        if i < 39 {
            assert_eq!(contacts.len(), 1, "d{i}: {contacts:?}");
        } else {
            assert!(
                contacts.is_empty(),
                "the torn registration came back: {contacts:?}"
            );
        }
    }
    kill9(&mut server);

    // A flipped byte in the middle of the first segment: what follows it is set aside, never misread.
    let segs = segments(&dir);
    let (first, _) = segs[0].clone();
    let mut bytes = std::fs::read(&first).expect("read");
    let middle = data_end(&bytes) / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(&first, &bytes).expect("flip");
    let server = start(&dir, &["--cores", "1"]);
    assert!(server.log_text().contains("journal damaged"));
    let client = server.client();
    let mut kept = 0;
    for (i, phone) in phones.iter_mut().enumerate().take(39) {
        let contacts = fetch(&client, phone);
        match contacts.as_slice() {
            [] => {}
            [(uri, _)] => {
                assert_eq!(uri, &phone.contact, "d{i}");
                kept += 1;
            }
            other => panic!("d{i}: {other:?}"),
        }
    }
    assert!(kept > 0 && kept < 39, "kept {kept} of 39");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_journal_of_an_unknown_version_stops_start_up_naming_the_file() {
    let dir = workdir("persist-version");
    let mut server = start(&dir, &["--cores", "1"]);
    register(&server.client(), "v1", 3600);
    kill9(&mut server);
    let (seg, _) = segments(&dir)[0].clone();
    let mut bytes = std::fs::read(&seg).expect("read");
    bytes[8] = 7; // format version 7, with a header CRC that matches
    let crc = crc32fast_hash(&bytes[..28]);
    bytes[28..32].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&seg, &bytes).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_corereg"))
        .args(["--listen", "127.0.0.1:0", "--http", "none", "--cores", "1"])
        .args(["--data-dir", dir.to_str().expect("utf-8")])
        .stdin(Stdio::null())
        .output()
        .expect("run corereg");
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let name = seg
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(text.contains(&name) && text.contains("version 7"), "{text}");
    // Nothing was set aside: the file may be a newer corereg's.
    assert!(corrupt_files(&dir).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// CRC-32 (IEEE), as the journal's headers use.
fn crc32fast_hash(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn two_shards_to_one_and_back_keep_every_binding() {
    if usable_cores() < 2 {
        eprintln!("skipped: needs two usable CPUs");
        return;
    }
    let dir = workdir("persist-shards");
    let mut server = start(&dir, &["--cores", "2"]);
    let client = server.client();
    let mut phones: Vec<Phone> = (0..60)
        .map(|i| register(&client, &format!("m{i}"), 3600))
        .collect();
    kill9(&mut server);
    for cores in ["1", "2"] {
        let mut server = start(&dir, &["--cores", cores]);
        let client = server.client();
        for (i, phone) in phones.iter_mut().enumerate() {
            let contacts = fetch(&client, phone);
            assert_eq!(contacts.len(), 1, "m{i} with {cores} shards: {contacts:?}");
            assert_eq!(contacts[0].0, phone.contact);
        }
        let layout = std::fs::read_to_string(dir.join("LAYOUT")).expect("layout");
        assert!(layout.contains(&format!("shards {cores}")), "{layout}");
        let dirs: Vec<_> = std::fs::read_dir(&dir)
            .expect("dir")
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            dirs.iter().all(|d| d.ends_with(&format!("-of-{cores}"))),
            "old shard directories left: {dirs:?}"
        );
        kill9(&mut server);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_second_process_cannot_take_the_same_data_dir() {
    let dir = workdir("persist-lock");
    let _server = start(&dir, &["--cores", "1"]);
    let out = Command::new(env!("CARGO_BIN_EXE_corereg"))
        .args(["--listen", "127.0.0.1:0", "--http", "none", "--cores", "1"])
        .args(["--data-dir", dir.to_str().expect("utf-8")])
        .stdin(Stdio::null())
        .output()
        .expect("run corereg");
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("in use by another corereg"), "{text}");
}

#[test]
fn a_write_error_answers_503_loses_nothing_acknowledged_and_recovers() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        eprintln!("skipped: prlimit (util-linux) is not installed");
        return;
    }
    let dir = workdir("persist-full");
    let mut server = start(&dir, &["--cores", "1", "--retry-after", "1"]);
    let client = server.client();
    let pid = server.pid().to_string();
    // Files may not grow past 48 KiB from now on: the segment soon cannot.
    let limit = |spec: &str| {
        let status = Command::new("prlimit")
            .args(["--pid", &pid, &format!("--fsize={spec}")])
            .status()
            .expect("prlimit");
        assert!(status.success());
    };
    // Two AoRs for the operator's deletes below, registered while the disk takes writes.
    let to_delete: Vec<Req> = ["d0", "d1"]
        .into_iter()
        .map(|user| {
            let req = Req::register(&client, user, DOMAIN)
                .contact(&format!("<sip:{user}@192.0.2.9>"))
                .expires("3600");
            assert_eq!(client.request(&req.build()).status, 200);
            req
        })
        .collect();
    limit("49152:unlimited");
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    let mut silent = 0;
    for i in 0..600u32 {
        let user = format!("f{i}");
        let req = Req::register(&client, &user, DOMAIN)
            .contact(&format!("<sip:{user}@192.0.2.9>"))
            .expires("3600");
        client.send(&req.build());
        match client.recv(Duration::from_millis(300)) {
            Some(raw) => {
                let resp = common::Response::parse(&raw).expect("parsable");
                match resp.status {
                    200 => acknowledged.push(req),
                    503 => {
                        assert!(resp.header("Retry-After").is_some());
                        refused += 1;
                    }
                    other => panic!("unexpected {other}"),
                }
            }
            // The registration whose write failed: held, not acknowledged.
            None => silent += 1,
        }
        if refused >= 5 {
            break;
        }
    }
    assert!(
        refused >= 5,
        "no 503 after {} registrations",
        acknowledged.len()
    );
    assert!(silent <= 2, "{silent} registrations went unanswered");
    assert!(server.is_running());
    // An operator's delete is answered only once written: now it cannot be, and says so.
    let gone = &to_delete[0];
    let api = server.api.expect("api");
    let path = format!(
        "/v1/aors/{}",
        gone.aor.replace(':', "%3A").replace('@', "%40")
    );
    let (status, body) = common::http(api, "DELETE", &path);
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("not yet written")),
        "{body}"
    );
    // Space returns: registrations are accepted again.
    limit("unlimited:unlimited");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let req = Req::register(&client, "after", DOMAIN)
            .contact("<sip:after@192.0.2.9>")
            .expires("3600");
        let resp = client.request(&req.build());
        if resp.status == 200 {
            acknowledged.push(req);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {} after the limit was lifted",
            resp.status
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Held replies left once written; drain them.
    while client.recv(Duration::from_millis(200)).is_some() {}
    kill9(&mut server);
    let server = start(&dir, &["--cores", "1"]);
    let client = server.client();
    for req in &acknowledged {
        let resp = client.request(&req.next().build());
        assert_eq!(resp.status, 200);
        assert_eq!(resp.contacts().len(), 1, "{} lost: {}", req.aor, resp.raw);
    }
    // The delete was written once space returned: the AoR stays gone.
    let (status, _) = common::http(server.api.expect("api"), "GET", &path);
    assert_eq!(status, 404, "{} came back", gone.aor);
    // A delete on a healthy disk is answered once written, and survives kill -9 at once.
    let second = &to_delete[1];
    let second_path = format!(
        "/v1/aors/{}",
        second.aor.replace(':', "%3A").replace('@', "%40")
    );
    let mut server = server;
    let (status, body) = common::http(server.api.expect("api"), "DELETE", &second_path);
    assert_eq!(status, 200, "{body}");
    kill9(&mut server);
    let server = start(&dir, &["--cores", "1"]);
    let (status, _) = common::http(server.api.expect("api"), "GET", &second_path);
    assert_eq!(status, 404, "{} came back after kill -9", second.aor);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn snapshots_keep_the_journal_bounded_while_serving_and_load_back() {
    let dir = workdir("persist-snapshot");
    let args = [
        "--cores",
        "1",
        "--journal-segment-bytes",
        "65536",
        "--snapshot-ratio",
        "1",
    ];
    let mut server = start(&dir, &args);
    let client = server.client();
    let mut phones: Vec<Phone> = (0..20)
        .map(|i| register(&client, &format!("s{i}"), 3600))
        .collect();
    // Refresh them over and over: the changes far outgrow the live data.
    for round in 0..100u32 {
        let reqs: Vec<Req> = phones
            .iter()
            .map(|p| {
                p.req
                    .next()
                    .contact(&format!("<{}>", p.contact))
                    .expires(&(1800 + round).to_string())
            })
            .collect();
        for r in &reqs {
            client.send(&r.build());
        }
        for _ in &reqs {
            let raw = client.recv(Duration::from_secs(5)).expect("reply");
            let resp = common::Response::parse(&raw).expect("parsable");
            assert_eq!(resp.status, 200, "{}", resp.raw);
        }
        for (p, r) in phones.iter_mut().zip(reqs) {
            p.req = r;
        }
    }
    let total: u64 = journal_files(&dir).iter().map(|(_, n)| n).sum();
    assert!(
        journal_files(&dir)
            .iter()
            .any(|(p, _)| p.extension().is_some_and(|e| e == "snap")
                && !p.to_string_lossy().contains("snap-00000000000000000000")),
        "no snapshot while serving: {:?}",
        journal_files(&dir)
    );
    // 2,000 refreshes of ~300 bytes each were written; a bounded journal keeps a few segments' worth.
    assert!(
        total < 4 * 65536 + 65536,
        "{total} bytes: {:?}",
        journal_files(&dir)
    );
    kill9(&mut server);
    let server = start(&dir, &args);
    assert!(
        !server.log_text().contains("journal damaged"),
        "{}",
        server.log_text()
    );
    let client = server.client();
    for phone in &mut phones {
        let contacts = fetch(&client, phone);
        assert_eq!(contacts.len(), 1, "{contacts:?}");
        let left = contacts[0].1.expect("expiry");
        assert!((1800..=1899).contains(&left), "{left}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_registration() {
    let dir = workdir("persist-load");
    let cores = if usable_cores() >= 2 { "2" } else { "1" };
    let mut server = start(&dir, &["--cores", cores]);
    let addr = server.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let client = Client::new(addr);
                let mut acknowledged = Vec::new();
                let mut i = 0u32;
                // Pipelined: 16 in flight per client, so commits group several registrations.
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let batch: Vec<Req> = (0..16)
                        .map(|k| {
                            let user = format!("l{t}x{}", i + k);
                            Req::register(&client, &user, DOMAIN)
                                .contact(&format!("<sip:{user}@192.0.2.3>"))
                                .expires("3600")
                        })
                        .collect();
                    i += 16;
                    for r in &batch {
                        client.send(&r.build());
                    }
                    for _ in &batch {
                        let Some(raw) = client.recv(Duration::from_millis(500)) else {
                            break;
                        };
                        let Some(resp) = common::Response::parse(&raw) else {
                            continue;
                        };
                        if resp.status == 200 {
                            let call_id = resp.header("Call-ID").unwrap_or_default().to_string();
                            if let Some(r) = batch.iter().find(|r| r.call_id == call_id) {
                                acknowledged.push(r.clone());
                            }
                        }
                    }
                }
                acknowledged
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    kill9(&mut server);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acknowledged: Vec<Req> = senders
        .into_iter()
        .flat_map(|s| s.join().expect("sender"))
        .collect();
    assert!(
        acknowledged.len() > 50,
        "only {} acknowledged",
        acknowledged.len()
    );
    let server = start(&dir, &["--cores", cores]);
    let client = server.client();
    for req in &acknowledged {
        let resp = client.request(&req.next().build());
        assert_eq!(resp.status, 200);
        assert_eq!(resp.contacts().len(), 1, "{} lost: {}", req.aor, resp.raw);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_default_data_dir_beside_where_corereg_runs_keeps_bindings() {
    let cwd = workdir("persist-default");
    let mut server = Server::start_in(&cwd, &["--cores", "1"]);
    let mut phone = register(&server.client(), "default", 3600);
    kill9(&mut server);
    assert!(cwd.join("corereg-data").join("LAYOUT").exists());
    let server = Server::start_in(&cwd, &["--cores", "1"]);
    assert_eq!(fetch(&server.client(), &mut phone).len(), 1);
    let _ = std::fs::remove_dir_all(&cwd);
}

#[test]
fn every_registration_the_loadgen_got_a_200_for_survives_kill_9_mid_run() {
    let loadgen = common::loadgen_binary();
    let dir = workdir("persist-loadgen");
    let cores = if usable_cores() >= 2 { "2" } else { "1" };
    let mut server = start(&dir, &["--cores", cores]);
    let json = dir.join("loadgen.json");
    let mut run = Command::new(&loadgen)
        .args(["run", "--target", &server.addr.to_string()])
        .args(["--users", "200000", "--concurrency", "200"])
        .args(["--duration", "2", "--timeout-ms", "1000", "--quiet"])
        .arg("--json")
        .arg(&json)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start corereg-loadgen");
    std::thread::sleep(Duration::from_millis(700));
    kill9(&mut server);
    let _ = run.wait().expect("loadgen exits");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("loadgen json")).expect("json");
    let succeeded = report["succeeded"].as_u64().expect("succeeded");
    assert!(
        succeeded > 100,
        "only {succeeded} registrations before the kill: {report}"
    );
    let server = start(&dir, &["--cores", cores]);
    let url = format!("http://{}/v1/stats", server.api.expect("API"));
    let stats: serde_json::Value = ureq::get(&url)
        .call()
        .expect("stats")
        .into_json()
        .expect("json");
    let bindings: u64 = stats["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .map(|s| s["bindings"].as_u64().expect("bindings"))
        .sum();
    // Each loadgen user registers one binding once: every 200 it got is one binding restored (and a
    // registration whose 200 was lost in flight may be there too).
    assert!(
        bindings >= succeeded,
        "{bindings} bindings restored, {succeeded} acknowledged"
    );
    let attempted = report["attempted"].as_u64().expect("attempted");
    assert!(
        bindings <= attempted,
        "{bindings} bindings, {attempted} attempted"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The journal's commit count from /metrics.
fn commits(server: &Server) -> u64 {
    let url = format!("http://{}/metrics", server.api.expect("API"));
    let text = ureq::get(&url)
        .call()
        .expect("metrics")
        .into_string()
        .expect("text");
    text.lines()
        .filter(|l| l.starts_with("corereg_journal_commits"))
        .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn fsync_delay_gathers_changes_that_arrive_meanwhile_into_one_commit() {
    let dir = workdir("persist-delay");
    let server = start(&dir, &["--cores", "1", "--fsync-delay", "20000"]);
    let before = commits(&server);
    // Ten phones register 1 ms apart, each without waiting for the others' answers: a commit that waits
    // 20 ms for more takes them together.
    let clients: Vec<Client> = (0..10).map(|_| server.client()).collect();
    for (i, client) in clients.iter().enumerate() {
        let req = Req::register(client, &format!("d{i}"), DOMAIN)
            .contact(&format!("<sip:d{i}@192.0.2.7:5060>"))
            .expires("600");
        client.send(&req.build());
        std::thread::sleep(Duration::from_millis(1));
    }
    for client in &clients {
        let raw = client.recv(Duration::from_secs(5)).expect("a 200");
        assert!(
            raw.starts_with(b"SIP/2.0 200"),
            "{}",
            String::from_utf8_lossy(&raw)
        );
    }
    let took = commits(&server) - before;
    assert!((1..=4).contains(&took), "{took} commits for 10 changes");
    let _ = std::fs::remove_dir_all(&dir);
}
